//! imapfleet patch: tests of the leniency rules added in the workspace (see VENDORED.md).
//!
//! The rule: wherever the grammar has a parenthesized list or a response code, any run of SP
//! after "(" / "[", before ")" / "]", and between list elements parses exactly like the single-SP
//! form. TAB is never padding. Responses without resp-text parse with empty information.

use crate::{Response, ResponseCode};

fn parse_all(input: &[u8]) -> Response<'_> {
    match Response::parse(input) {
        Ok((rest, r)) => {
            assert!(
                rest.is_empty(),
                "{:?}: left {:?}",
                String::from_utf8_lossy(input),
                String::from_utf8_lossy(rest)
            );
            r
        }
        Err(e) => panic!("{:?}: {e:?}", String::from_utf8_lossy(input)),
    }
}

/// Byte offsets of "(" and ")" outside quoted strings and literals.
fn paren_positions(input: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let (mut open, mut close) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'"' => {
                i += 1;
                while i < input.len() && input[i] != b'"' {
                    if input[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'{' => {
                // {n}\r\n then n bytes
                let end = input[i..].iter().position(|b| *b == b'}').map(|p| i + p);
                if let Some(end) = end {
                    if let Some(n) = std::str::from_utf8(&input[i + 1..end])
                        .ok()
                        .and_then(|n| n.parse::<usize>().ok())
                    {
                        i = end + 2 + n;
                    }
                }
            }
            b'(' => open.push(i),
            b')' => close.push(i),
            _ => {}
        }
        i += 1;
    }
    (open, close)
}

fn insert_spaces(input: &[u8], at: &[usize], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() + at.len() * n);
    for (i, b) in input.iter().enumerate() {
        if at.contains(&i) {
            out.extend(std::iter::repeat_n(b' ', n));
        }
        out.push(*b);
    }
    out
}

const LISTS: &[&[u8]] = &[
    b"* STATUS \"Sent Items\" (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1 UNSEEN 0)\r\n",
    b"* STATUS blurdybloop ()\r\n",
    b"* FLAGS (\\Answered \\Flagged $Junk NonJunk \\*)\r\n",
    b"* FLAGS ()\r\n",
    b"* OK [PERMANENTFLAGS ($MDNSent \\Deleted \\*)] Limited\r\n",
    b"* LIST (\\HasChildren \\Noselect) \".\" \"INBOX.Archive\"\r\n",
    b"* LSUB (\\HasNoChildren) \"/\" Drafts\r\n",
    b"* 12 FETCH (UID 4827313 FLAGS (\\Seen $Label7) RFC822.SIZE 44827 MODSEQ (90060115) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" X-GM-LABELS (\\Important \"Work stuff\"))\r\n",
    b"* 3 FETCH (UID 9 BODY[HEADER.FIELDS (MESSAGE-ID RECEIVED)] {4}\r\nab\r\n FLAGS ())\r\n",
    b"* 7 FETCH (ENVELOPE (\"Wed, 17 Jul 1996 02:23:25 -0700\" \"Hi\" ((\"Terry\" NIL \"gray\" \"example.org\")) NIL NIL ((NIL NIL \"imap\" \"example.com\")) NIL NIL NIL \"<B27397-0100000@example.com>\"))\r\n",
    b"* 8 FETCH (BODYSTRUCTURE (\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"FORMAT\" \"flowed\") NIL NIL \"7BIT\" 3028 92))\r\n",
    b"* QUOTA \"\" (STORAGE 10 512 MESSAGE 3 1000)\r\n",
    b"* ID (\"name\" \"Dovecot\" \"version\" \"2.3.19\")\r\n",
];

#[test]
fn padding_inside_parentheses_parses_like_the_canonical_form() {
    for canonical in LISTS {
        let want = parse_all(canonical);
        let (open, close) = paren_positions(canonical);
        let after_open: Vec<usize> = open.iter().map(|p| p + 1).collect();
        for n in 1..=3 {
            for at in after_open.iter().chain(close.iter()) {
                let padded = insert_spaces(canonical, &[*at], n);
                assert_eq!(parse_all(&padded), want, "{:?}", String::from_utf8_lossy(&padded));
            }
            let everywhere: Vec<usize> = after_open.iter().chain(close.iter()).copied().collect();
            let padded = insert_spaces(canonical, &everywhere, n);
            assert_eq!(parse_all(&padded), want, "{:?}", String::from_utf8_lossy(&padded));
        }
    }
}

#[test]
fn runs_of_spaces_between_list_elements() {
    let pairs: &[(&[u8], &[u8])] = &[
        (b"* FLAGS (\\Seen  \\Answered   $Fwd)\r\n", b"* FLAGS (\\Seen \\Answered $Fwd)\r\n"),
        (
            b"* STATUS INBOX (MESSAGES 1   UIDNEXT 2  UIDVALIDITY 7)\r\n",
            b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 7)\r\n",
        ),
        (
            b"* 11487 FETCH (UID 19436  FLAGS (\\Seen  \\Flagged)   RFC822.SIZE 10)\r\n",
            b"* 11487 FETCH (UID 19436 FLAGS (\\Seen \\Flagged) RFC822.SIZE 10)\r\n",
        ),
        (
            b"* LIST (\\HasNoChildren  \\Sent) \"/\" Sent\r\n",
            b"* LIST (\\HasNoChildren \\Sent) \"/\" Sent\r\n",
        ),
        (
            b"* CAPABILITY IMAP4rev1  UIDPLUS   MOVE\r\n",
            b"* CAPABILITY IMAP4rev1 UIDPLUS MOVE\r\n",
        ),
        (
            b"* OK [CAPABILITY IMAP4rev1  LITERAL+] ready\r\n",
            b"* OK [CAPABILITY IMAP4rev1 LITERAL+] ready\r\n",
        ),
        (b"* SEARCH 2  84   882\r\n", b"* SEARCH 2 84 882\r\n"),
        (
            b"* ENABLED  CONDSTORE  UTF8=ACCEPT\r\n",
            b"* ENABLED CONDSTORE UTF8=ACCEPT\r\n",
        ),
    ];
    for (padded, canonical) in pairs {
        assert_eq!(
            parse_all(padded),
            parse_all(canonical),
            "{:?}",
            String::from_utf8_lossy(padded)
        );
    }
}

#[test]
fn padding_inside_response_code_brackets() {
    let codes: &[&str] = &[
        "UIDNEXT 4",
        "UIDVALIDITY 3857529045",
        "UNSEEN 12",
        "APPENDUID 38505 3955:3957",
        "COPYUID 38505 304,319:320 3956:3958",
        "HIGHESTMODSEQ 715194045007",
        "PERMANENTFLAGS (\\Seen \\*)",
        "CAPABILITY IMAP4rev1 UIDPLUS MOVE",
        "READ-WRITE",
        "TRYCREATE",
        "ALERT",
    ];
    for code in codes {
        for prefix in ["* OK", "* NO", "A12 OK", "A12 NO"] {
            let canonical = format!("{prefix} [{code}] text\r\n");
            let want = parse_all(canonical.as_bytes());
            // The canonical form must have parsed the code, or the test proves nothing.
            let has_code = match &want {
                Response::Data { outcome, .. } | Response::Done { outcome, .. } => {
                    outcome.code.is_some()
                }
                _ => false,
            };
            assert!(has_code, "{canonical:?} -> {want:?}");
            for (a, b) in [(1, 0), (0, 1), (2, 3)] {
                let padded = format!(
                    "{prefix} [{}{code}{}] text\r\n",
                    " ".repeat(a),
                    " ".repeat(b)
                );
                assert_eq!(parse_all(padded.as_bytes()), want, "{padded:?}");
            }
        }
    }
}

#[test]
fn tab_is_not_padding() {
    assert!(Response::parse(b"* FLAGS (\\Seen\t)\r\n").is_err());
    assert!(Response::parse(b"* STATUS INBOX (\tMESSAGES 1)\r\n").is_err());
}

#[test]
fn status_responses_without_text() {
    // Gmail's `* OK [HIGHESTMODSEQ n]` and every other status response that omits resp-text.
    for input in [
        &b"* OK [HIGHESTMODSEQ 4587]\r\n"[..],
        b"* OK [UIDNEXT 4]\r\n",
        b"* OK [UIDVALIDITY 1]\r\n",
        b"* OK [PERMANENTFLAGS ()]\r\n",
        b"* NO [ALERT]\r\n",
        b"* OK\r\n",
        b"* BYE\r\n",
        b"* PREAUTH [CAPABILITY IMAP4rev1]\r\n",
        b"A1 OK [READ-WRITE]\r\n",
        b"A1 OK [APPENDUID 1 2]\r\n",
        b"A1 NO\r\n",
        b"A1 BAD\r\n",
        b"+\r\n",
    ] {
        match parse_all(input) {
            Response::Data { outcome, .. }
            | Response::Done { outcome, .. }
            | Response::Continue(outcome) => {
                assert_eq!(outcome.information, None, "{:?}", String::from_utf8_lossy(input))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn codes_that_are_not_atoms_stay_in_the_text() {
    // Exchange's proxy dump in an OK code: not a parse error, the code text is kept.
    let input = b"A7 OK [Error=\"Cross Server access is not allowed\" Proxy=X:1993:SSL] AUTHENTICATE completed.\r\n";
    match parse_all(input) {
        Response::Done { outcome, .. } => {
            assert_eq!(outcome.code, None::<ResponseCode<'_>>);
            let info = outcome.information.expect("text");
            assert!(info.starts_with("[Error=\"Cross Server"), "{info}");
            assert!(info.ends_with("AUTHENTICATE completed."), "{info}");
        }
        other => panic!("{other:?}"),
    }
}
