//! Message identity: which host1 message is which host2 message, from headers alone.
//!
//! Default key (imapsync's): the normalised `Message-Id` plus the `Received` lines, hashed. `--useheader`
//! replaces the header list. A message with none of the chosen headers is keyed by a stable digest of its
//! whole header block (so it is copied, and never duplicated on a re-run).
//!
//! # What "normalised" means
//!
//! A key must survive everything a server may legitimately do to the bytes it stores, or a re-run
//! copies the message a second time. What servers do, and how the key absorbs it:
//!
//! * Line endings: Dovecot serves a maildir file holding bare LF with CRLF. Lines are split on LF and
//!   any CR is treated as whitespace, so LF and CRLF give the same key.
//! * Folding: a header may be re-folded (`Received:` over two lines or one). Lines are unfolded
//!   (RFC 5322 §2.2.3) and every run of whitespace becomes one space; leading/trailing space is
//!   dropped. Field names are compared case-insensitively (`MESSAGE-ID` = `Message-Id`).
//! * 8-bit bytes: headers are bytes, not UTF-8 (Latin-1 subjects exist). Nothing is decoded. Cyrus
//!   rewrites every 8-bit header byte to `X` (its `munge8bit`), and Dovecot serves a NUL as 0x80, so
//!   every byte >= 0x80 and every NUL is folded to `X` before hashing: a key computed on the original
//!   and on the munged copy agree. (Two messages that differ *only* in which 8-bit bytes their
//!   identity headers hold would share a key; the planner's multiset matching still copies both.)
//! * `Message-Id`: all whitespace inside is removed (a msg-id holds none; re-folding may insert some),
//!   angle brackets are kept, the local part stays case-sensitive, the domain after the last `@` is
//!   lower-cased (domains are case-insensitive).
//!
//! Keys from fields and keys from a full header block never collide: each hash input starts with its
//! own domain tag. A field whose value is empty after normalisation counts as absent (an empty
//! `Message-Id:` would otherwise give every such message the same key).
//!
//! # When headers are not enough
//!
//! Two different messages may share every header (automated notices without `Message-Id`, sent
//! the same second): the multiset matching copies both, but when host2 already holds some of them
//! the headers cannot tell *which*. [`ambiguous_keys`] names the keys where that matters (held by
//! both sides, more than once on one of them); the executor then fetches those messages' bodies
//! and re-keys them with [`refine_with_body`], whose body digest absorbs the same server rewrites
//! as the header key (line endings, 8-bit bytes).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A stable identity digest (hex SHA-256 of the normalised identity headers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IdentityKey(pub String);

/// Which headers make up a message's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Header names, case-insensitive (default `Message-Id`, `Received`).
    pub headers: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            headers: vec!["Message-Id".into(), "Received".into()],
        }
    }
}

/// Result of keying a message from the header fields fetched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keyed {
    Key(IdentityKey),
    /// None of the identity headers is present: fetch the whole header block and call [`key_from_full_header`].
    NeedFullHeader,
}

/// Domain tag of keys made from selected header fields.
const FIELDS_DOMAIN: &[u8] = b"imapfleet-identity-v1/fields\n";
/// Domain tag of keys made from the whole header block.
const FULL_HEADER_DOMAIN: &[u8] = b"imapfleet-identity-v1/full-header\n";
/// Marks a header line that is not a `name: value` field, so it can never read as one.
const NAMELESS_LINE_MARK: u8 = 0x01;

/// Key a message from the raw bytes of `BODY[HEADER.FIELDS (<cfg.headers>)]`.
///
/// Only the configured fields are used, even if the server sent more. They enter the key in the
/// order of `cfg.headers`; repeated fields (several `Received`) in the order the message has them.
pub fn key_from_fields(fields: &[u8], cfg: &IdentityConfig) -> Keyed {
    let parsed = parse_header_block(fields);
    let mut input = FIELDS_DOMAIN.to_vec();
    let mut any = false;
    for wanted in unique_lowercase(&cfg.headers) {
        for field in parsed
            .iter()
            .filter(|f| f.name.as_deref() == Some(wanted.as_slice()))
        {
            let value = normalise_value(&wanted, &field.value);
            if value.is_empty() {
                continue;
            }
            any = true;
            push_field(&mut input, &wanted, &value);
        }
    }
    if any {
        Keyed::Key(digest(&input))
    } else {
        Keyed::NeedFullHeader
    }
}

/// Key a message from its whole header block (`BODY[HEADER]`): the fallback when no identity header exists.
///
/// Every line of the block counts, in order, normalised as described in the module doc. Anything
/// after the blank line that ends the header block is ignored. A message with no header at all gets
/// the key of the empty block (all such messages share it; the planner copies each of them).
pub fn key_from_full_header(header: &[u8]) -> IdentityKey {
    let mut input = FULL_HEADER_DOMAIN.to_vec();
    for line in parse_header_block(header) {
        match &line.name {
            Some(name) => push_field(&mut input, name, &normalise_value(name, &line.value)),
            None => {
                input.push(NAMELESS_LINE_MARK);
                input.extend_from_slice(&collapse_whitespace(&line.value));
                input.push(b'\n');
            }
        }
    }
    digest(&input)
}

/// One unfolded header line: a field (`name` lower-cased) or a line without a colon (`name` None).
#[derive(Debug)]
struct HeaderLine {
    name: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// Split a header block into unfolded lines. Stops at the first empty line (end of the header).
fn parse_header_block(block: &[u8]) -> Vec<HeaderLine> {
    let mut lines: Vec<HeaderLine> = Vec::new();
    for raw in block.split(|&b| b == b'\n') {
        let line = trim_trailing_cr(raw);
        if line.is_empty() {
            break;
        }
        let is_continuation = matches!(line[0], b' ' | b'\t');
        match lines.last_mut() {
            // Unfolding: a line starting with whitespace continues the previous one.
            Some(prev) if is_continuation => {
                prev.value.push(b' ');
                prev.value.extend_from_slice(line);
            }
            _ => lines.push(split_field(line)),
        }
    }
    lines
}

fn trim_trailing_cr(line: &[u8]) -> &[u8] {
    let end = line.iter().rposition(|&b| b != b'\r').map_or(0, |i| i + 1);
    &line[..end]
}

/// `Name : value` -> (lower-cased `name`, `value`); a line without a colon keeps no name.
fn split_field(line: &[u8]) -> HeaderLine {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            let name = fold_bytes(trim_whitespace(&line[..colon])).to_ascii_lowercase();
            HeaderLine {
                name: Some(name),
                value: line[colon + 1..].to_vec(),
            }
        }
        None => HeaderLine {
            name: None,
            value: line.to_vec(),
        },
    }
}

/// Normalise one field value; `Message-Id` gets its stricter rule.
fn normalise_value(name: &[u8], value: &[u8]) -> Vec<u8> {
    if name == b"message-id" {
        normalise_message_id(value)
    } else {
        collapse_whitespace(value)
    }
}

/// Drop all whitespace, keep the brackets, lower-case the domain after the last `@`.
fn normalise_message_id(value: &[u8]) -> Vec<u8> {
    let mut id: Vec<u8> = fold_bytes(value)
        .into_iter()
        .filter(|b| !is_whitespace(*b))
        .collect();
    if let Some(at) = id.iter().rposition(|&b| b == b'@') {
        id[at..].make_ascii_lowercase();
    }
    id
}

/// Fold 8-bit bytes, turn every whitespace run into one space, trim both ends.
fn collapse_whitespace(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut pending_space = false;
    for b in fold_bytes(value) {
        if is_whitespace(b) {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(b' ');
                pending_space = false;
            }
            out.push(b);
        }
    }
    out
}

/// Map each byte a server may rewrite (8-bit bytes, NUL) to `X`; see the module doc.
fn fold_bytes(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| if b >= 0x80 || b == 0 { b'X' } else { b })
        .collect()
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_whitespace(*b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_whitespace(*b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// Whitespace for identity purposes; a stray CR counts (bare-CR and CRLF conversions).
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c)
}

/// Lower-cased header names, first occurrence kept.
fn unique_lowercase(names: &[String]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for name in names {
        let lower = fold_bytes(trim_whitespace(name.as_bytes())).to_ascii_lowercase();
        if !lower.is_empty() && !out.contains(&lower) {
            out.push(lower);
        }
    }
    out
}

/// `name:value\n`: unambiguous, since a name never holds `:` and a value never holds `\n`.
fn push_field(input: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    input.extend_from_slice(name);
    input.push(b':');
    input.extend_from_slice(value);
    input.push(b'\n');
}

fn digest(input: &[u8]) -> IdentityKey {
    IdentityKey(hex::encode(Sha256::digest(input)))
}

/// Domain tag of keys refined with a body digest.
const BODY_DOMAIN: &[u8] = b"imapfleet-identity-v1/with-body\n";

/// `key` refined by the message's body (everything after the blank line ending the header; the
/// whole message when it has none). The body is normalised like header values are protected: CR
/// bytes are dropped (bare LF served as CRLF), 8-bit bytes and NUL are folded to `X` (Cyrus'
/// munge8bit, Dovecot's NUL as 0x80), trailing spaces and tabs of each line and trailing empty
/// lines are ignored. Equal messages keep equal refined keys; bodies that differ otherwise differ.
pub fn refine_with_body(key: &IdentityKey, message: &[u8]) -> IdentityKey {
    let mut h = Sha256::new();
    h.update(BODY_DOMAIN);
    h.update(key.0.as_bytes());
    h.update(b"\n");
    let body = body_of(message);
    let mut pending_newlines = 0usize;
    for raw in body.split(|&b| b == b'\n') {
        let line: Vec<u8> = fold_bytes(raw)
            .into_iter()
            .filter(|&b| b != b'\r')
            .collect();
        let end = line
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        if end == 0 {
            pending_newlines += 1;
            continue;
        }
        for _ in 0..pending_newlines {
            h.update(b"\n");
        }
        pending_newlines = 1;
        h.update(&line[..end]);
    }
    IdentityKey(hex::encode(h.finalize()))
}

/// The part of a message after its header block (after the first empty line).
fn body_of(message: &[u8]) -> &[u8] {
    let mut start = 0;
    for line in message.split_inclusive(|&b| b == b'\n') {
        start += line.len();
        if trim_trailing_cr(line.strip_suffix(b"\n").unwrap_or(line)).is_empty() {
            return &message[start..];
        }
    }
    message
}

/// Keys that headers alone cannot pair: present on both sides and held more than once on at least
/// one of them. Only these need [`refine_with_body`]; every other key pairs unambiguously.
pub fn ambiguous_keys<'a>(
    host1: impl IntoIterator<Item = &'a IdentityKey>,
    host2: impl IntoIterator<Item = &'a IdentityKey>,
) -> std::collections::BTreeSet<IdentityKey> {
    use std::collections::BTreeMap;
    let mut counts: BTreeMap<&IdentityKey, (usize, usize)> = BTreeMap::new();
    for k in host1 {
        counts.entry(k).or_default().0 += 1;
    }
    for k in host2 {
        counts.entry(k).or_default().1 += 1;
    }
    counts
        .into_iter()
        .filter(|(_, (a, b))| *a > 0 && *b > 0 && (*a > 1 || *b > 1))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The `Message-ID` of a message, for reports: the field value with whitespace trimmed, bytes
/// decoded lossily (reports are text); `None` when the header block has none.
pub fn message_id_of(message: &[u8]) -> Option<String> {
    parse_header_block(message)
        .into_iter()
        .find(|l| l.name.as_deref() == Some(b"message-id".as_slice()))
        .map(|l| String::from_utf8_lossy(trim_whitespace(&l.value)).into_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(fields: &[u8]) -> IdentityKey {
        match key_from_fields(fields, &IdentityConfig::default()) {
            Keyed::Key(k) => k,
            Keyed::NeedFullHeader => {
                panic!("expected a key for {:?}", String::from_utf8_lossy(fields))
            }
        }
    }

    const BASIC: &[u8] = b"Message-Id: <abc.123@example.com>\r\n\
Received: from a.example.org by b.example.net; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
Received: from c.example.org by a.example.org; Mon, 1 Jan 2024 09:59:00 +0000\r\n\r\n";

    #[test]
    fn key_is_hex_sha256() {
        let k = key(BASIC);
        assert_eq!(k.0.len(), 64);
        assert!(k
            .0
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }

    #[test]
    fn folded_and_unfolded_headers_agree() {
        let folded = b"Message-Id:\r\n <abc.123@example.com>\r\n\
Received: from a.example.org\r\n\tby b.example.net;\r\n  Mon, 1 Jan 2024 10:00:00 +0000\r\n\
Received: from c.example.org by a.example.org; Mon, 1 Jan 2024 09:59:00 +0000   \r\n\r\n";
        assert_eq!(key(folded), key(BASIC));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let upper = String::from_utf8_lossy(BASIC)
            .replace("Message-Id", "MESSAGE-ID")
            .replace("Received", "received");
        assert_eq!(key(upper.as_bytes()), key(BASIC));
        let cfg = IdentityConfig {
            headers: vec!["message-id".into(), "RECEIVED".into()],
        };
        assert_eq!(key_from_fields(BASIC, &cfg), Keyed::Key(key(BASIC)));
    }

    #[test]
    fn lf_and_crlf_agree() {
        let lf: Vec<u8> = BASIC.iter().copied().filter(|&b| b != b'\r').collect();
        assert_eq!(key(&lf), key(BASIC));
        let full_crlf = b"From: a@example.com\r\nSubject: hi\r\n there\r\n\r\n";
        let full_lf = b"From: a@example.com\nSubject: hi\n there\n\n";
        assert_eq!(
            key_from_full_header(full_crlf),
            key_from_full_header(full_lf)
        );
    }

    #[test]
    fn received_order_matters() {
        let swapped = b"Message-Id: <abc.123@example.com>\r\n\
Received: from c.example.org by a.example.org; Mon, 1 Jan 2024 09:59:00 +0000\r\n\
Received: from a.example.org by b.example.net; Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n";
        assert_ne!(key(swapped), key(BASIC));
    }

    #[test]
    fn message_id_position_among_fields_does_not_matter() {
        let moved =
            b"Received: from a.example.org by b.example.net; Mon, 1 Jan 2024 10:00:00 +0000\r\n\
Received: from c.example.org by a.example.org; Mon, 1 Jan 2024 09:59:00 +0000\r\n\
Message-Id: <abc.123@example.com>\r\n\r\n";
        assert_eq!(key(moved), key(BASIC));
    }

    #[test]
    fn message_id_local_part_is_case_sensitive_domain_is_not() {
        let a = key(b"Message-Id: <Abc@example.com>\r\n");
        assert_ne!(a, key(b"Message-Id: <abc@example.com>\r\n"));
        assert_eq!(a, key(b"Message-Id: <Abc@EXAMPLE.Com>\r\n"));
        assert_eq!(a, key(b"Message-Id:    <Abc@example.com>   \r\n"));
        // Brackets are kept: a bare id is a different id.
        assert_ne!(a, key(b"Message-Id: Abc@example.com\r\n"));
    }

    #[test]
    fn missing_message_id_falls_back_to_received() {
        let only_received = b"Received: from a by b; Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n";
        assert!(matches!(
            key_from_fields(only_received, &IdentityConfig::default()),
            Keyed::Key(_)
        ));
    }

    #[test]
    fn no_identity_header_needs_full_header() {
        let cfg = IdentityConfig::default();
        assert_eq!(key_from_fields(b"", &cfg), Keyed::NeedFullHeader);
        assert_eq!(key_from_fields(b"\r\n", &cfg), Keyed::NeedFullHeader);
        assert_eq!(
            key_from_fields(b"Message-Id:   \r\n\r\n", &cfg),
            Keyed::NeedFullHeader
        );
        // Fields the server sent but we did not ask for do not count.
        assert_eq!(
            key_from_fields(b"Subject: hello\r\n\r\n", &cfg),
            Keyed::NeedFullHeader
        );
    }

    #[test]
    fn useheader_replaces_the_list() {
        let cfg = IdentityConfig {
            headers: vec!["Subject".into(), "Date".into()],
        };
        let block =
            b"Subject: hello\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-Id: <x@y>\r\n\r\n";
        let other_id =
            b"Subject: hello\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-Id: <z@y>\r\n\r\n";
        assert_eq!(
            key_from_fields(block, &cfg),
            key_from_fields(other_id, &cfg)
        );
        assert_eq!(
            key_from_fields(b"Message-Id: <x@y>\r\n", &cfg),
            Keyed::NeedFullHeader
        );
    }

    #[test]
    fn eight_bit_bytes_are_keyed_without_decoding() {
        let latin1 = b"Subject: caf\xe9\r\nFrom: Ren\xe9 <r@example.com>\r\n\r\n";
        let utf8 = "Subject: café\r\nFrom: René <r@example.com>\r\n\r\n";
        let k1 = key_from_full_header(latin1);
        assert_eq!(k1, key_from_full_header(latin1), "stable");
        assert_ne!(
            k1,
            key_from_full_header(utf8.as_bytes()),
            "Latin-1 and UTF-8 spellings differ"
        );
        // Cyrus' munge8bit turns each 8-bit byte into `X`: the key survives it.
        assert_eq!(
            k1,
            key_from_full_header(b"Subject: cafX\r\nFrom: RenX <r@example.com>\r\n\r\n")
        );
        let invalid_utf8 =
            b"Message-Id: <\xff\xfe@example.com>\r\nReceived: from \xc3\x28 by x\r\n\r\n";
        assert!(matches!(
            key_from_fields(invalid_utf8, &IdentityConfig::default()),
            Keyed::Key(_)
        ));
    }

    #[test]
    fn nul_served_as_0x80_keeps_the_key() {
        assert_eq!(
            key_from_full_header(b"Subject: a\x00b\r\n"),
            key_from_full_header(b"Subject: a\x80b\r\n")
        );
    }

    #[test]
    fn full_header_ignores_body_and_trailing_whitespace() {
        let a = key_from_full_header(b"From: a@example.com\r\nSubject: x  \r\n\r\nbody one\r\n");
        let b = key_from_full_header(b"From: a@example.com\r\nSubject: x\r\n\r\nbody two\r\n");
        assert_eq!(a, b);
        assert_ne!(
            a,
            key_from_full_header(b"From: a@example.com\r\nSubject: y\r\n\r\n")
        );
    }

    #[test]
    fn full_header_of_headerless_message_is_stable() {
        assert_eq!(
            key_from_full_header(b"\r\nonly a body\r\n"),
            key_from_full_header(b"")
        );
        assert_eq!(key_from_full_header(b"\r\n"), key_from_full_header(b"\n"));
    }

    #[test]
    fn full_header_keeps_lines_without_colon_distinct() {
        let odd = key_from_full_header(b"From a@example.com Mon Jan  1\r\nSubject: x\r\n");
        assert_ne!(odd, key_from_full_header(b"Subject: x\r\n"));
        assert_ne!(
            key_from_full_header(b"abc\r\n"),
            key_from_full_header(b"abc:\r\n")
        );
    }

    #[test]
    fn body_refinement_tells_same_header_messages_apart() {
        let k = key_from_full_header(b"From: a@example.com\r\nSubject: notice\r\n");
        let green = b"From: a@example.com\r\nSubject: notice\r\n\r\nStatus: green\r\n";
        let amber = b"From: a@example.com\r\nSubject: notice\r\n\r\nStatus: amber\r\n";
        assert_eq!(green.len(), amber.len());
        assert_ne!(refine_with_body(&k, green), refine_with_body(&k, amber));
        assert_ne!(refine_with_body(&k, green), k);
        // The same key with another header key stays apart.
        let other = IdentityKey("other".into());
        assert_ne!(refine_with_body(&k, green), refine_with_body(&other, green));
    }

    #[test]
    fn body_refinement_survives_server_rewrites() {
        let k = IdentityKey("k".into());
        let crlf = b"Subject: x\r\n\r\nLine one\r\nCaf\xc3\xa9 \t\r\n\r\n";
        let lf = b"Subject: x\n\nLine one\nCaf\xc3\xa9\n";
        let munged = b"Subject: x\r\n\r\nLine one\r\nCafXX\r\n\r\n\r\n";
        let nul = b"Subject: x\r\n\r\na\x00b\r\n";
        let nul80 = b"Subject: x\r\n\r\na\x80b\r\n";
        let r = refine_with_body(&k, crlf);
        assert_eq!(r, refine_with_body(&k, lf), "bare LF served as CRLF");
        assert_eq!(r, refine_with_body(&k, munged), "8-bit bytes munged to X");
        assert_eq!(refine_with_body(&k, nul), refine_with_body(&k, nul80));
        // Inner blank lines and leading space count.
        assert_ne!(
            refine_with_body(&k, b"S: x\r\n\r\na\r\n\r\nb\r\n"),
            refine_with_body(&k, b"S: x\r\n\r\na\r\nb\r\n")
        );
        assert_ne!(
            refine_with_body(&k, b"S: x\r\n\r\n a\r\n"),
            refine_with_body(&k, b"S: x\r\n\r\na\r\n")
        );
        // Header-less message (starts with the blank line) and one with no blank line at all.
        assert_eq!(
            refine_with_body(&k, b"\r\nonly a body\r\n"),
            refine_with_body(&k, b"\nonly a body")
        );
        assert_ne!(
            refine_with_body(&k, b"no blank line"),
            refine_with_body(&k, b"other text")
        );
    }

    #[test]
    fn ambiguous_keys_need_both_sides_and_a_repeat() {
        let k = |s: &str| IdentityKey(s.into());
        let one = [k("a"), k("b"), k("b"), k("c"), k("d"), k("d")];
        let two = [k("a"), k("b"), k("c"), k("c"), k("e"), k("e")];
        let got: Vec<String> = ambiguous_keys(&one, &two)
            .into_iter()
            .map(|k| k.0)
            .collect();
        // a: once each side; d: only host1; e: only host2.
        assert_eq!(got, vec!["b", "c"]);
        assert!(ambiguous_keys(&[k("x"), k("x")], &[]).is_empty());
    }

    #[test]
    fn message_id_for_reports() {
        assert_eq!(
            message_id_of(b"Subject: a\r\nMessage-ID:\r\n  <br31-2@example.com> \r\n\r\nbody"),
            Some("<br31-2@example.com>".into())
        );
        assert_eq!(
            message_id_of(b"Subject: a\r\n\r\nMessage-ID: <in-body@x>\r\n"),
            None
        );
        assert_eq!(
            message_id_of(b"message-id: <\xe9@x>\r\n"),
            Some("<\u{fffd}@x>".into())
        );
    }

    #[test]
    fn fields_and_full_header_keys_never_collide() {
        let block = b"Message-Id: <abc@example.com>\r\n\r\n";
        assert_ne!(key(block), key_from_full_header(block));
    }
}
