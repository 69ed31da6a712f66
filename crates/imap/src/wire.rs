//! Pure pieces of the wire protocol: quoting, sets, dates, SASL strings, and small parsers for the
//! responses imap-proto parses too loosely (LIST names) or not at all (NAMESPACE). No I/O here.

use std::borrow::Cow;
use std::collections::BTreeSet;

use async_imap::extensions::append::CommandPart;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

use crate::{ImapError, MailboxEntry, Namespace, Namespaces, Result, SpecialUse};

// ---------------------------------------------------------------------------------------------
// Arguments

/// A mailbox name as an IMAP astring argument: a quoted string (escapes for `"` and `\`), or a
/// literal when it holds 8-bit bytes. CR, LF and NUL cannot be sent at all.
pub(crate) fn mailbox_arg(raw_name: &str) -> Result<CommandPart<'_>> {
    if raw_name.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ImapError::Invalid(format!(
            "mailbox name {raw_name:?} contains CR, LF or NUL"
        )));
    }
    Ok(CommandPart::string(raw_name.as_bytes()))
}

/// Does a mailbox name in a server response (as imap-proto hands it over: a quoted string keeps
/// its `\\` escapes) name the mailbox we asked about with `requested` (the raw name we sent)?
/// INBOX is case-insensitive (RFC 3501 5.1), every other name is compared exactly.
pub(crate) fn same_mailbox(requested: &str, reported: &str) -> bool {
    if requested.eq_ignore_ascii_case("INBOX") {
        return reported.eq_ignore_ascii_case("INBOX");
    }
    if reported == requested {
        return true;
    }
    let mut unescaped = String::with_capacity(reported.len());
    let mut chars = reported.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => unescaped.extend(chars.next()),
            c => unescaped.push(c),
        }
    }
    unescaped == requested
}

/// A quoted string for plain ASCII-safe values (no CR/LF/NUL, 7-bit), else `None`.
pub(crate) fn quoted(value: &str) -> Option<String> {
    if value
        .bytes()
        .all(|b| (0x01..0x80).contains(&b) && b != b'\r' && b != b'\n')
    {
        let mut q = String::with_capacity(value.len() + 2);
        q.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        Some(q)
    } else {
        None
    }
}

/// A flag as it may be sent in APPEND/STORE: `\Atom` or `atom`. `\Recent` is never sent.
pub(crate) fn check_flag(flag: &str) -> Result<()> {
    let body = flag.strip_prefix('\\').unwrap_or(flag);
    let ok = !body.is_empty()
        && body.bytes().all(|b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'"' | b'\\' | b']' | b'%' | b'*')
        });
    if ok {
        Ok(())
    } else {
        Err(ImapError::Invalid(format!(
            "flag {flag:?} is not an IMAP atom"
        )))
    }
}

/// `(f1 f2 ...)` without `\Recent`; validates every flag.
pub(crate) fn flag_list(flags: &[String]) -> Result<String> {
    let mut out = Vec::with_capacity(flags.len());
    for f in flags {
        if f.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        check_flag(f)?;
        out.push(f.as_str());
    }
    Ok(format!("({})", out.join(" ")))
}

/// A header field name for `HEADER.FIELDS`: an atom of printable characters without `:`.
pub(crate) fn check_header_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| {
            (0x21..0x7f).contains(&b)
                && !matches!(
                    b,
                    b'(' | b')' | b'{' | b'"' | b'\\' | b']' | b'%' | b'*' | b':'
                )
        });
    if ok {
        Ok(())
    } else {
        Err(ImapError::Invalid(format!(
            "header name {name:?} cannot be sent"
        )))
    }
}

/// A raw argument (search criteria) must not hold CR or LF.
pub(crate) fn check_line(what: &str, value: &str) -> Result<()> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        Err(ImapError::Invalid(format!("{what} contains CR, LF or NUL")))
    } else {
        Ok(())
    }
}

/// Text part helper.
pub(crate) fn text<'a>(s: impl Into<Cow<'a, str>>) -> CommandPart<'a> {
    CommandPart::text(s)
}

// ---------------------------------------------------------------------------------------------
// Sets

/// Compress UIDs into a sequence set: `1:3,7,9:10` (sorted, duplicates removed).
pub(crate) fn uid_set(uids: &[u32]) -> String {
    let sorted: BTreeSet<u32> = uids.iter().copied().collect();
    let mut out = String::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while let Some(&n) = iter.peek() {
            if end.checked_add(1) == Some(n) {
                end = n;
                iter.next();
            } else {
                break;
            }
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
    }
    out
}

/// A parsed sequence set; `*` counts as the largest possible UID, so `n:*` means "n and above"
/// (servers answer `4:*` with the last message even when its UID is below 4: that one is not in
/// the set as the caller meant it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UidSet(Vec<(u32, u32)>);

impl UidSet {
    pub(crate) fn parse(s: &str) -> Result<UidSet> {
        let bad = || ImapError::Invalid(format!("{s:?} is not a UID set"));
        let num = |t: &str| -> Result<u32> {
            if t == "*" {
                Ok(u32::MAX)
            } else if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                t.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(bad)
            } else {
                Err(bad())
            }
        };
        let mut ranges = Vec::new();
        for part in s.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => {
                    let n = num(part)?;
                    (n, n)
                }
            };
            ranges.push((a.min(b), a.max(b)));
        }
        Ok(UidSet(ranges))
    }

    pub(crate) fn contains(&self, uid: u32) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&uid))
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `"dd-Mon-yyyy hh:mm:ss +zzzz"` (quotes included) for APPEND.
pub(crate) fn format_internaldate(d: &DateTime<FixedOffset>) -> Result<String> {
    use chrono::{Datelike, Timelike};
    let year = d.year();
    if !(0..=9999).contains(&year) {
        return Err(ImapError::Invalid(format!(
            "date {d} cannot be sent as an INTERNALDATE"
        )));
    }
    let off = d.offset().local_minus_utc();
    let sign = if off < 0 { '-' } else { '+' };
    let off = off.abs();
    Ok(format!(
        "\"{:02}-{}-{:04} {:02}:{:02}:{:02} {}{:02}{:02}\"",
        d.day(),
        MONTHS[d.month0() as usize],
        year,
        d.hour(),
        d.minute(),
        d.second(),
        sign,
        off / 3600,
        (off % 3600) / 60
    ))
}

/// Parse an INTERNALDATE (`dd-Mon-yyyy hh:mm:ss +zzzz`, the day may be space-padded or one digit).
pub(crate) fn parse_internaldate(s: &str) -> Option<DateTime<FixedOffset>> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let rest = rest.trim_start();
    let (time, zone) = rest.split_once(' ')?;
    let mut dp = date.split('-');
    let day: u32 = dp.next()?.trim().parse().ok()?;
    let mon = dp.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as u32 + 1;
    let year_s = dp.next()?;
    if dp.next().is_some() || year_s.len() != 4 {
        return None;
    }
    let year: i32 = year_s.parse().ok()?;
    let mut tp = time.split(':');
    let h: u32 = tp.next()?.parse().ok()?;
    let m: u32 = tp.next()?.parse().ok()?;
    let sec: u32 = tp.next()?.parse().ok()?;
    if tp.next().is_some() {
        return None;
    }
    let zone = zone.trim();
    let zb = zone.as_bytes();
    if zb.len() != 5 || !(zb[0] == b'+' || zb[0] == b'-') || !zb[1..].iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let zh: i32 = zone[1..3].parse().ok()?;
    let zm: i32 = zone[3..5].parse().ok()?;
    if zm >= 60 {
        return None;
    }
    let mut off = zh * 3600 + zm * 60;
    if zb[0] == b'-' {
        off = -off;
    }
    let tz = FixedOffset::east_opt(off)?;
    let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(h, m, sec)?;
    tz.from_local_datetime(&naive).single()
}

// ---------------------------------------------------------------------------------------------
// SASL

/// SASL PLAIN message: `authzid NUL authcid NUL password`. Without an admin identity the
/// authorization identity is empty and `user` authenticates; with one, `authuser` authenticates
/// and acts as `user`.
pub(crate) fn sasl_plain(user: &str, authuser: Option<&str>, password: &str) -> Vec<u8> {
    let (authzid, authcid) = match authuser {
        Some(admin) => (user, admin),
        None => ("", user),
    };
    let mut v = Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
    v.extend_from_slice(authzid.as_bytes());
    v.push(0);
    v.extend_from_slice(authcid.as_bytes());
    v.push(0);
    v.extend_from_slice(password.as_bytes());
    v
}

/// XOAUTH2 initial response: `user=<u>\x01auth=Bearer <token>\x01\x01`.
pub(crate) fn xoauth2(user: &str, token: &str) -> Vec<u8> {
    format!("user={user}\x01auth=Bearer {token}\x01\x01").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Response codes

/// Split `[CODE] text` into the code (without brackets) and the text. Used both on imap-proto's
/// text for codes it does not know (`[OVERQUOTA]`, `[LIMIT]`, `[CANNOT]`...) and on async-imap's
/// `Error::No` strings.
pub(crate) fn split_code(text: &str) -> (Option<String>, String) {
    let t = text.trim_start();
    if let Some(rest) = t.strip_prefix('[') {
        // The code ends at the first ']' outside a quoted string.
        let mut in_quote = false;
        let mut escaped = false;
        for (i, c) in rest.char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' if in_quote => escaped = true,
                '"' => in_quote = !in_quote,
                ']' if !in_quote => {
                    let code = rest[..i].to_string();
                    let text = rest[i + 1..].trim_start().to_string();
                    return (Some(code), text);
                }
                _ => {}
            }
        }
    }
    (None, text.to_string())
}

// ---------------------------------------------------------------------------------------------
// A tiny tokenizer for response lines (LIST, NAMESPACE)

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    Open,
    Close,
    Nil,
    Atom(Vec<u8>),
    /// A quoted string (unescaped) or a literal.
    Str(Vec<u8>),
}

pub(crate) struct Lexer<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Lexer<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Lexer { buf, pos: 0 }
    }

    fn err(&self, what: &str) -> String {
        format!(
            "{what} at byte {} of {:?}",
            self.pos,
            String::from_utf8_lossy(&self.buf[..self.buf.len().min(300)])
        )
    }

    pub(crate) fn skip_spaces(&mut self) {
        while self.buf.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    /// The rest of the line, without CRLF.
    pub(crate) fn rest_of_line(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        let rest = rest
            .strip_suffix(b"\r\n")
            .or_else(|| rest.strip_suffix(b"\n"))
            .unwrap_or(rest);
        self.pos = self.buf.len();
        rest
    }

    pub(crate) fn next_tok(&mut self) -> Result<Tok, String> {
        self.skip_spaces();
        let Some(c) = self.peek() else {
            return Err(self.err("unexpected end"));
        };
        match c {
            b'(' => {
                self.pos += 1;
                Ok(Tok::Open)
            }
            b')' => {
                self.pos += 1;
                Ok(Tok::Close)
            }
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.peek() {
                        None | Some(b'\r') | Some(b'\n') => {
                            return Err(self.err("unterminated quoted string"))
                        }
                        Some(b'\\') => {
                            let Some(n) = self.buf.get(self.pos + 1).copied() else {
                                return Err(self.err("unterminated quoted string"));
                            };
                            out.push(n);
                            self.pos += 2;
                        }
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Tok::Str(out));
                        }
                        Some(b) => {
                            out.push(b);
                            self.pos += 1;
                        }
                    }
                }
            }
            b'{' | b'~' => {
                let start = self.pos;
                let mut p = self.pos + if c == b'~' { 1 } else { 0 };
                if self.buf.get(p) != Some(&b'{') {
                    return self.atom();
                }
                p += 1;
                let ds = p;
                while self.buf.get(p).is_some_and(u8::is_ascii_digit) {
                    p += 1;
                }
                let digits = &self.buf[ds..p];
                if self.buf.get(p) == Some(&b'+') {
                    p += 1;
                }
                if digits.is_empty() || self.buf.get(p..p + 3) != Some(b"}\r\n") {
                    self.pos = start;
                    return self.atom();
                }
                let n: usize = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| self.err("bad literal length"))?;
                let body_start = p + 3;
                let body = self
                    .buf
                    .get(body_start..body_start + n)
                    .ok_or_else(|| self.err("truncated literal"))?;
                self.pos = body_start + n;
                Ok(Tok::Str(body.to_vec()))
            }
            _ => self.atom(),
        }
    }

    fn atom(&mut self) -> Result<Tok, String> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'(' | b')' | b'\r' | b'\n' | b'"') {
                break;
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.err("empty token"));
        }
        let a = self.buf[start..self.pos].to_vec();
        if a.eq_ignore_ascii_case(b"NIL") {
            Ok(Tok::Nil)
        } else {
            Ok(Tok::Atom(a))
        }
    }

    pub(crate) fn expect_word(&mut self, word: &str) -> Result<(), String> {
        self.skip_spaces();
        let end = self.pos + word.len();
        match self.buf.get(self.pos..end) {
            Some(w) if w.eq_ignore_ascii_case(word.as_bytes()) => {
                self.pos = end;
                Ok(())
            }
            _ => Err(self.err(&format!("expected {word}"))),
        }
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Parse one `* LIST (attrs) delim name` line from its exact bytes. The name keeps its wire form
/// (quoted strings unescaped, literals as they are, atoms such as `[Archive]` or `x]y` verbatim; a
/// bare word holding TABs, as Exchange sends, is taken up to the end of the line).
pub(crate) fn parse_list_line(line: &[u8]) -> Result<MailboxEntry, String> {
    let mut lx = Lexer::new(line);
    lx.expect_word("*")?;
    lx.skip_spaces();
    // LIST or LSUB or XLIST
    match lx.next_tok()? {
        Tok::Atom(w)
            if w.eq_ignore_ascii_case(b"LIST")
                || w.eq_ignore_ascii_case(b"XLIST")
                || w.eq_ignore_ascii_case(b"LSUB") => {}
        other => return Err(format!("not a LIST line: {other:?}")),
    }
    if lx.next_tok()? != Tok::Open {
        return Err("LIST: expected attribute list".into());
    }
    let mut attributes = Vec::new();
    loop {
        match lx.next_tok()? {
            Tok::Close => break,
            Tok::Atom(a) | Tok::Str(a) => attributes.push(lossy(&a)),
            Tok::Nil => attributes.push("NIL".into()),
            Tok::Open => return Err("LIST: nested attribute list".into()),
        }
    }
    let delimiter = match lx.next_tok()? {
        Tok::Nil => None,
        Tok::Str(d) | Tok::Atom(d) => {
            let d = lossy(&d);
            let mut chars = d.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => return Err(format!("LIST: bad delimiter {d:?}")),
            }
        }
        other => return Err(format!("LIST: bad delimiter {other:?}")),
    };
    lx.skip_spaces();
    let raw: Vec<u8> = match lx.peek() {
        Some(b'"') | Some(b'{') | Some(b'~') => match lx.next_tok()? {
            Tok::Str(s) => s,
            Tok::Atom(a) => a,
            other => return Err(format!("LIST: bad name {other:?}")),
        },
        Some(_) => {
            // Atom (or a bare word a lax server did not quote): up to the end of the line, minus
            // any extended data ` ("CHILDINFO" ...)`.
            let rest = lx.rest_of_line();
            let cut = rest
                .windows(3)
                .position(|w| w == b" (\"")
                .unwrap_or(rest.len());
            let name = &rest[..cut];
            if name.eq_ignore_ascii_case(b"NIL") {
                return Err("LIST: NIL name".into());
            }
            name.to_vec()
        }
        None => return Err("LIST: missing name".into()),
    };
    if raw.is_empty() {
        return Err("LIST: empty name".into());
    }
    let raw_name = match String::from_utf8(raw) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "LIST name is not UTF-8; using a lossy form: {:?}",
                String::from_utf8_lossy(e.as_bytes())
            );
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    Ok(entry_from(raw_name, delimiter, attributes))
}

pub(crate) fn entry_from(
    raw_name: String,
    delimiter: Option<char>,
    attributes: Vec<String>,
) -> MailboxEntry {
    let has = |a: &str| attributes.iter().any(|x| x.eq_ignore_ascii_case(a));
    let noselect = has("\\Noselect") || has("\\NonExistent");
    let has_children = has("\\HasChildren");
    let special_use = [
        ("\\All", SpecialUse::All),
        ("\\Archive", SpecialUse::Archive),
        ("\\Drafts", SpecialUse::Drafts),
        ("\\Flagged", SpecialUse::Flagged),
        ("\\Junk", SpecialUse::Junk),
        ("\\Sent", SpecialUse::Sent),
        ("\\Trash", SpecialUse::Trash),
    ]
    .iter()
    .find(|(a, _)| has(a))
    .map(|(_, s)| *s);
    let name = crate::mutf7::decode(&raw_name).unwrap_or_else(|| raw_name.clone());
    MailboxEntry {
        raw_name,
        name,
        delimiter,
        noselect,
        has_children,
        special_use,
        attributes,
    }
}

/// Parse `* NAMESPACE <personal> <other> <shared>` (RFC 2342) from its exact bytes.
pub(crate) fn parse_namespace_line(line: &[u8]) -> Result<Namespaces, String> {
    let mut lx = Lexer::new(line);
    lx.expect_word("*")?;
    lx.expect_word("NAMESPACE")?;
    let mut groups: Vec<Vec<Namespace>> = Vec::new();
    for _ in 0..3 {
        match lx.next_tok()? {
            Tok::Nil => groups.push(Vec::new()),
            Tok::Open => {
                let mut list = Vec::new();
                loop {
                    match lx.next_tok()? {
                        Tok::Close => break,
                        Tok::Open => {
                            let prefix = match lx.next_tok()? {
                                Tok::Str(s) | Tok::Atom(s) => lossy(&s),
                                other => return Err(format!("NAMESPACE: bad prefix {other:?}")),
                            };
                            let delimiter = match lx.next_tok()? {
                                Tok::Nil => None,
                                Tok::Str(d) | Tok::Atom(d) => lossy(&d).chars().next(),
                                other => return Err(format!("NAMESPACE: bad delimiter {other:?}")),
                            };
                            // Extensions: skip balanced tokens up to the closing parenthesis.
                            let mut depth = 0usize;
                            loop {
                                match lx.next_tok()? {
                                    Tok::Open => depth += 1,
                                    Tok::Close if depth == 0 => break,
                                    Tok::Close => depth -= 1,
                                    _ => {}
                                }
                            }
                            list.push(Namespace { prefix, delimiter });
                        }
                        other => return Err(format!("NAMESPACE: unexpected {other:?}")),
                    }
                }
                groups.push(list);
            }
            other => return Err(format!("NAMESPACE: unexpected {other:?}")),
        }
    }
    let mut g = groups.into_iter();
    Ok(Namespaces {
        personal: g.next().unwrap_or_default(),
        other: g.next().unwrap_or_default(),
        shared: g.next().unwrap_or_default(),
    })
}

/// `UID <n>` inside a FETCH line imap-proto could not parse.
pub(crate) fn uid_in_fetch_line(line: &[u8]) -> Option<u32> {
    let s = String::from_utf8_lossy(line);
    let upper = s.to_ascii_uppercase();
    let mut words = upper.split([' ', '(', ')']);
    while let Some(w) = words.next() {
        if w == "UID" {
            return words.next()?.parse().ok();
        }
    }
    None
}

/// `* <n> FETCH` line?
pub(crate) fn is_fetch_line(line: &[u8]) -> bool {
    let s = String::from_utf8_lossy(&line[..line.len().min(40)]).to_ascii_uppercase();
    let mut w = s.split(' ');
    w.next() == Some("*")
        && w.next()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        && w.next().is_some_and(|f| f.starts_with("FETCH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_the_mailbox_asked_about() {
        // INBOX in any case (Exchange answers "Inbox"), other names exactly, escapes undone.
        for reported in ["INBOX", "Inbox", "inbox", "iNbOx"] {
            assert!(same_mailbox("INBOX", reported));
            assert!(same_mailbox("inbox", reported));
        }
        assert!(same_mailbox("Sent Items", "Sent Items"));
        assert!(same_mailbox("a\"b\\c", "a\\\"b\\\\c"));
        assert!(same_mailbox("&AOk-t&AOk-", "&AOk-t&AOk-"));
        assert!(!same_mailbox("INBOX", "INBOX.Sent"));
        assert!(
            !same_mailbox("Sent", "sent"),
            "only INBOX is case-insensitive"
        );
        assert!(!same_mailbox("Archive", "Archive/2019"));
    }

    #[test]
    fn quoting() {
        assert_eq!(quoted("INBOX").as_deref(), Some("\"INBOX\""));
        assert_eq!(
            quoted(r#"quo"te\back"#).as_deref(),
            Some(r#""quo\"te\\back""#)
        );
        assert_eq!(quoted("{5}").as_deref(), Some("\"{5}\""));
        assert_eq!(quoted("a b (c) *").as_deref(), Some("\"a b (c) *\""));
        assert_eq!(quoted("Test§Test"), None);
        assert_eq!(quoted("a\r\nb"), None);
        assert_eq!(quoted("tab\there").as_deref(), Some("\"tab\there\""));
        match mailbox_arg("x]y").unwrap() {
            CommandPart::Text(t) => assert_eq!(&*t, b"\"x]y\""),
            other => panic!("{other:?}"),
        }
        match mailbox_arg("Entwürfe").unwrap() {
            CommandPart::Literal(t) => assert_eq!(&*t, "Entwürfe".as_bytes()),
            other => panic!("{other:?}"),
        }
        assert!(mailbox_arg("a\nb").is_err());
    }

    #[test]
    fn flags() {
        assert_eq!(
            flag_list(&["\\Seen".into(), "\\Recent".into(), "$Label1".into()]).unwrap(),
            "(\\Seen $Label1)"
        );
        assert_eq!(flag_list(&[]).unwrap(), "()");
        assert!(flag_list(&["a b".into()]).is_err());
        assert!(flag_list(&["(x".into()]).is_err());
        assert!(flag_list(&["".into()]).is_err());
        assert!(flag_list(&["\\".into()]).is_err());
        assert!(check_flag("TEST:FLAG211").is_ok());
        assert!(check_flag("example.com").is_ok());
    }

    #[test]
    fn sets() {
        assert_eq!(uid_set(&[5, 1, 2, 3, 7, 9, 10, 3]), "1:3,5,7,9:10");
        assert_eq!(
            uid_set(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
        assert_eq!(
            uid_set(&[2147483646, 2147483647, 2147483648]),
            "2147483646:2147483648"
        );
        let s = UidSet::parse("4:*").unwrap();
        assert!(!s.contains(3));
        assert!(s.contains(4));
        assert!(s.contains(u32::MAX));
        let s = UidSet::parse("1:3,7,10:9").unwrap();
        assert!(s.contains(2) && s.contains(7) && s.contains(9) && s.contains(10));
        assert!(!s.contains(8));
        assert!(UidSet::parse("").is_err());
        assert!(UidSet::parse("1:x").is_err());
        assert!(UidSet::parse("0").is_err());
    }

    #[test]
    fn dates() {
        let d = parse_internaldate(" 4-Aug-2018 06:46:54 +0900").unwrap();
        assert_eq!(d.to_rfc3339(), "2018-08-04T06:46:54+09:00");
        assert_eq!(
            format_internaldate(&d).unwrap(),
            "\"04-Aug-2018 06:46:54 +0900\""
        );
        let d = parse_internaldate("03-Aug-2018 21:46:54 +0000").unwrap();
        assert_eq!(
            d.timestamp(),
            parse_internaldate("04-Aug-2018 06:46:54 +0900")
                .unwrap()
                .timestamp()
        );
        let d = parse_internaldate("31-Dec-1999 23:59:59 -0330").unwrap();
        assert_eq!(
            format_internaldate(&d).unwrap(),
            "\"31-Dec-1999 23:59:59 -0330\""
        );
        assert_eq!(
            parse_internaldate("4-aug-2018 06:46:54 +0900")
                .map(|d| d.to_rfc3339())
                .as_deref(),
            Some("2018-08-04T06:46:54+09:00")
        );
        assert!(parse_internaldate("32-Aug-2018 06:46:54 +0900").is_none());
        assert!(parse_internaldate("04-Aug-2018 06:46:54").is_none());
        assert!(parse_internaldate("04-Foo-2018 06:46:54 +0900").is_none());
        assert!(parse_internaldate("04-Aug-18 06:46:54 +0900").is_none());
    }

    #[test]
    fn sasl() {
        assert_eq!(
            sasl_plain("user0001", None, "secret"),
            b"\0user0001\0secret"
        );
        assert_eq!(
            sasl_plain("user0001", Some("admin"), "adminsecret"),
            b"user0001\0admin\0adminsecret"
        );
        assert_eq!(
            xoauth2("me@example.com", "tok"),
            b"user=me@example.com\x01auth=Bearer tok\x01\x01"
        );
    }

    #[test]
    fn codes() {
        assert_eq!(
            split_code("[OVERQUOTA] Quota exceeded (mailbox for user is full)"),
            (
                Some("OVERQUOTA".into()),
                "Quota exceeded (mailbox for user is full)".into()
            )
        );
        assert_eq!(
            split_code("Request is throttled."),
            (None, "Request is throttled.".into())
        );
        let (c, t) = split_code("[Error=\"a ] b\" X=1] AUTHENTICATE completed.");
        assert_eq!(c.as_deref(), Some("Error=\"a ] b\" X=1"));
        assert_eq!(t, "AUTHENTICATE completed.");
        assert_eq!(split_code("[LIMIT]"), (Some("LIMIT".into()), String::new()));
    }

    #[test]
    fn list_lines() {
        let e = parse_list_line(b"* LIST (\\HasChildren) \".\" [Archive]\r\n").unwrap();
        assert_eq!(e.raw_name, "[Archive]");
        assert_eq!(e.delimiter, Some('.'));
        assert!(e.has_children);
        let e = parse_list_line(b"* LIST (\\HasNoChildren) \".\" x]y\r\n").unwrap();
        assert_eq!(e.raw_name, "x]y");
        let e = parse_list_line(b"* LIST (\\HasNoChildren) \".\" Proj[2023\r\n").unwrap();
        assert_eq!(e.raw_name, "Proj[2023");
        let e =
            parse_list_line(b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n").unwrap();
        assert_eq!(e.raw_name, "Sent Items");
        assert_eq!(e.special_use, Some(SpecialUse::Sent));
        let e = parse_list_line(b"* LIST () \"/\" \"a\\\"b\\\\c\"\r\n").unwrap();
        assert_eq!(e.raw_name, "a\"b\\c");
        let e = parse_list_line(b"* LIST () \"\\\\\" {8}\r\na\\\"b\\\\cd\r\n").unwrap();
        assert_eq!(e.raw_name, "a\\\"b\\\\cd");
        assert_eq!(e.delimiter, Some('\\'));
        let e = parse_list_line(b"* LIST (\\Noselect \\HasChildren) \"/\" Clients\r\n").unwrap();
        assert!(e.noselect);
        let e = parse_list_line(b"* LIST (\\NonExistent) NIL Gone\r\n").unwrap();
        assert!(e.noselect);
        assert_eq!(e.delimiter, None);
        let e = parse_list_line(b"* LIST (\\HasNoChildren) \".\" Entw&APw-rfe\r\n").unwrap();
        assert_eq!(e.name, "Entwürfe");
        assert_eq!(e.raw_name, "Entw&APw-rfe");
        let e = parse_list_line(b"* LIST (\\HasNoChildren) \".\" &AOk\r\n").unwrap();
        assert_eq!(e.name, "&AOk");
        let e = parse_list_line(b"* LIST (\\HasNoChildren) \"/\" INBOX/Da\tOggetto\tRicevuto\tDimensione\tCategorie\t\r\n").unwrap();
        assert_eq!(
            e.raw_name,
            "INBOX/Da\tOggetto\tRicevuto\tDimensione\tCategorie\t"
        );
        let e = parse_list_line(
            b"* LIST (\\Subscribed) \"/\" INBOX (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
        )
        .unwrap();
        assert_eq!(e.raw_name, "INBOX");
        let e =
            parse_list_line(b"* LIST (\\HasNoChildren) \".\" &BBAEMQQy-&-&BDMENAQ1-\r\n").unwrap();
        assert_eq!(e.name, "Абв&где");
        assert!(parse_list_line(b"* LIST (\\HasNoChildren) \".\"\r\n").is_err());
    }

    #[test]
    fn namespace_lines() {
        let n = parse_namespace_line(b"* NAMESPACE ((\"\" \".\")) NIL NIL\r\n").unwrap();
        assert_eq!(
            n.personal,
            vec![Namespace {
                prefix: "".into(),
                delimiter: Some('.')
            }]
        );
        assert!(n.other.is_empty() && n.shared.is_empty());
        let n = parse_namespace_line(
            b"* NAMESPACE ((\"INBOX.\" \".\")) ((\"#Users/\" \"/\" \"X-PARAM\" (\"A\" \"B\"))) ((\"#shared\\\\\" \"\\\\\")(\"#pub\" NIL))\r\n",
        )
        .unwrap();
        assert_eq!(n.personal[0].prefix, "INBOX.");
        assert_eq!(n.other[0].prefix, "#Users/");
        assert_eq!(n.other[0].delimiter, Some('/'));
        assert_eq!(n.shared[0].prefix, "#shared\\");
        assert_eq!(n.shared[0].delimiter, Some('\\'));
        assert_eq!(n.shared[1].delimiter, None);
        assert!(parse_namespace_line(b"* NAMESPACE ((\"\" \".\"))\r\n").is_err());
    }

    #[test]
    fn fetch_lines() {
        assert!(is_fetch_line(b"* 11487 FETCH (UID 19436 )\r\n"));
        assert!(!is_fetch_line(b"* 3 EXISTS\r\n"));
        assert_eq!(
            uid_in_fetch_line(b"* 11487 FETCH (UID 19436 )\r\n"),
            Some(19436)
        );
        assert_eq!(uid_in_fetch_line(b"* 1 FETCH (FLAGS (\\Seen))\r\n"), None);
    }
}
