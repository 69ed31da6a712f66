//! Modified UTF-7 mailbox names (RFC 3501 §5.1.3).
//!
//! Hand-written rather than taken from `utf7-imap`: that crate decodes lossily (invalid input is passed
//! through silently) and cannot tell a canonical encoding from a non-canonical one, and this layer must
//! refuse to send a non-canonical name (Dovecot answers `NO Mailbox name is not valid mUTF-7`).
//!
//! Rules enforced by [`decode`] (the same as Dovecot's `imap_utf7_to_utf8`):
//! - only printable US-ASCII (0x20..=0x7E) may appear outside a shift sequence;
//! - `&-` is a literal `&`; any other `&` starts a base64 run (alphabet `A-Za-z0-9+,`, no padding)
//!   that must end with `-`;
//! - the run must decode to a whole number of UTF-16 code units, with zero padding bits;
//! - surrogates must pair up inside the run;
//! - a run must not encode a printable US-ASCII character (it must represent itself);
//! - a run must not directly follow another run (`&AOk-&AOk-` is `&AOkA6Q-` written twice as long).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::IMAP_MUTF7,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

fn is_direct(c: char) -> bool {
    (' '..='~').contains(&c)
}

fn is_b64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b','
}

fn flush_run(out: &mut String, run: &mut Vec<u16>) {
    if run.is_empty() {
        return;
    }
    let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
    out.push('&');
    out.push_str(&ENGINE.encode(bytes));
    out.push('-');
    run.clear();
}

/// Encode a UTF-8 name to its canonical modified UTF-7 form.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut run: Vec<u16> = Vec::new();
    for c in name.chars() {
        if is_direct(c) {
            flush_run(&mut out, &mut run);
            if c == '&' {
                out.push_str("&-");
            } else {
                out.push(c);
            }
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush_run(&mut out, &mut run);
    out
}

/// Decode a modified UTF-7 name. `None` when it is not valid mUTF-7.
pub fn decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    // True right after a base64 run ended: another run may not start here.
    let mut after_run = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'&' {
            if bytes.get(i + 1) == Some(&b'-') {
                out.push('&');
                i += 2;
                after_run = false;
                continue;
            }
            if after_run {
                return None;
            }
            let start = i + 1;
            let mut end = start;
            while end < bytes.len() && is_b64_char(bytes[end]) {
                end += 1;
            }
            // Unterminated, or ended by something that is not '-'.
            if bytes.get(end) != Some(&b'-') {
                return None;
            }
            let decoded = ENGINE.decode(&bytes[start..end]).ok()?;
            if decoded.is_empty() || decoded.len() % 2 != 0 {
                return None;
            }
            let units = decoded
                .chunks_exact(2)
                .map(|p| u16::from_be_bytes([p[0], p[1]]));
            for c in char::decode_utf16(units) {
                let c = c.ok()?;
                if is_direct(c) {
                    return None;
                }
                out.push(c);
            }
            i = end + 1;
            after_run = true;
        } else if (0x20..=0x7e).contains(&b) {
            out.push(b as char);
            i += 1;
            after_run = false;
        } else {
            return None;
        }
    }
    Some(out)
}

/// True when `raw` is valid mUTF-7 *and* is exactly what [`encode`] would produce for its decoding.
pub fn is_canonical(raw: &str) -> bool {
    decode(raw).map(|d| encode(&d) == raw).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_examples() {
        assert_eq!(
            encode("~peter/mail/台北/日本語"),
            "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
        );
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").as_deref(),
            Some("~peter/mail/台北/日本語")
        );
        assert_eq!(encode("R&D"), "R&-D");
        assert_eq!(decode("R&-D").as_deref(), Some("R&D"));
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("abc®D"), "abc&AK4-D");
        assert_eq!(decode("abc&AK4-D").as_deref(), Some("abc®D"));
        assert_eq!(encode("&"), "&-");
        assert_eq!(encode("&&"), "&-&-");
        assert_eq!(encode(""), "");
        assert_eq!(encode("INBOX"), "INBOX");
    }

    #[test]
    fn shift_then_ampersand_then_shift() {
        // From the cases: "Абв&где" is listed as &BBAEMQQy-&-&BDMENAQ1-.
        assert_eq!(encode("Абв&где"), "&BBAEMQQy-&-&BDMENAQ1-");
        assert_eq!(decode("&BBAEMQQy-&-&BDMENAQ1-").as_deref(), Some("Абв&где"));
        assert!(is_canonical("&BBAEMQQy-&-&BDMENAQ1-"));
    }

    #[test]
    fn non_bmp_and_controls() {
        let s = "mail 😀 tab\there";
        let e = encode(s);
        assert_eq!(decode(&e).as_deref(), Some(s));
        assert!(e.is_ascii());
        assert_eq!(encode("😀"), "&2D3eAA-");
        assert_eq!(encode("\t"), "&AAk-");
        assert_eq!(decode("&AAk-").as_deref(), Some("\t"));
    }

    #[test]
    fn rejects_invalid() {
        // Non-canonical: the '&' of "Абв&где" encoded inside the run (Dovecot refuses it too).
        assert_eq!(decode("&BBAEMQQyACYEMwQ0BDU-"), None);
        assert!(!is_canonical("&BBAEMQQyACYEMwQ0BDU-"));
        // Unterminated shift.
        assert_eq!(decode("&AOk"), None);
        assert_eq!(decode("abc&"), None);
        // Ended by something other than '-'.
        assert_eq!(decode("&AOk x"), None);
        // Bad base64: '/' is not in the modified alphabet, '=' padding not allowed.
        assert_eq!(decode("&U/BTFw-"), None);
        assert_eq!(decode("&AOk=-"), None);
        // Encoded printable ASCII ("A").
        assert_eq!(decode("&AEE-"), None);
        // Non-zero padding bits: "&AOl-" would be 0x00E9 with a stray bit.
        assert_eq!(decode("&AOl-"), None);
        // Odd number of bytes (one byte, not a UTF-16 unit).
        assert_eq!(decode("&AA-"), None);
        // Impossible base64 length.
        assert_eq!(decode("&A-"), None);
        // Unpaired surrogates: lone high, lone low, reversed.
        assert_eq!(decode("&2D0-"), None);
        assert_eq!(decode("&3gA-"), None);
        assert_eq!(decode("&3gDYPQ-"), None);
        // Two runs back to back.
        assert_eq!(decode("&AOk-&AOk-"), None);
        assert_eq!(decode("&AOkA6Q-").as_deref(), Some("éé"));
        // Raw 8-bit, raw controls.
        assert_eq!(decode("Entwürfe"), None);
        assert_eq!(decode("a\tb"), None);
        assert_eq!(decode("a\x7fb"), None);
        // "&-" after a run is fine, and a run after "&-" too.
        assert_eq!(decode("&AOk-&-&AOk-").as_deref(), Some("é&é"));
    }

    #[test]
    fn canonical() {
        assert!(is_canonical("INBOX"));
        assert!(is_canonical("[Archive].2019"));
        assert!(is_canonical("x]y"));
        assert!(!is_canonical("Entwürfe"));
        assert!(!is_canonical("&AOk"));
    }

    proptest! {
        #[test]
        fn roundtrip(s in any::<String>()) {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&e), Some(s.clone()));
            prop_assert!(is_canonical(&e));
        }

        #[test]
        fn roundtrip_mixed(parts in proptest::collection::vec(
            prop_oneof![
                "[ -~]{0,4}",
                "[&]{1,2}",
                "[\u{80}-\u{7ff}]{1,3}",
                "[\u{4e00}-\u{4e20}]{1,3}",
                "[\u{1f600}-\u{1f640}]{1,2}",
                "[\t\u{0}\u{7f}]{1,2}",
            ], 0..8)) {
            let s: String = parts.concat();
            let e = encode(&s);
            prop_assert_eq!(decode(&e), Some(s.clone()));
            prop_assert!(is_canonical(&e));
        }

        #[test]
        fn decode_never_panics(s in "[ -~]{0,24}") {
            if let Some(d) = decode(&s) {
                // Whatever decodes, re-encodes to the same bytes (strict decode => canonical).
                prop_assert_eq!(encode(&d), s);
            }
        }
    }
}
