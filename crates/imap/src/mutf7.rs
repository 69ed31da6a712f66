//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//!
//! Hand-written rather than taken from `utf7-imap`: that crate decodes lossily (invalid input is passed
//! through silently) and cannot tell a canonical encoding from a non-canonical one, and this layer must
//! refuse to send a non-canonical name (Dovecot answers `NO Mailbox name is not valid mUTF-7`).

/// Encode a UTF-8 name to its canonical modified UTF-7 form.
pub fn encode(name: &str) -> String {
    todo!("{name}")
}

/// Decode a modified UTF-7 name. `None` when it is not valid mUTF-7.
pub fn decode(raw: &str) -> Option<String> {
    todo!("{raw}")
}

/// True when `raw` is valid mUTF-7 *and* is exactly what [`encode`] would produce for its decoding.
pub fn is_canonical(raw: &str) -> bool {
    decode(raw).map(|d| encode(&d) == raw).unwrap_or(false)
}
