//! imapfleet patch: commands with literals (LITERAL+ aware), MULTIAPPEND with APPENDUID, and a
//! readable rendering of tagged NO/BAD responses.
//!
//! - [`Connection::run_command_parts`] sends a command made of text and literals: with LITERAL+
//!   (RFC 7888) the whole command goes out in one write with `{n+}` literals; without it, each
//!   `{n}` waits for the server's `+` and each literal is written together with the text that
//!   follows it (its CRLF included), so no small trailing write waits on a delayed ACK.
//! - [`Session::append_multi`] is APPEND of one or several messages (MULTIAPPEND, RFC 3502) in one
//!   command and hands back the `[APPENDUID uidvalidity uid-set]` of UIDPLUS (RFC 4315).

use std::borrow::Cow;
use std::fmt;

#[cfg(feature = "runtime-async-std")]
use async_std::io::{Read, Write, WriteExt};
use futures_util::TryStreamExt;
use imap_proto::rfc4315::UidSetMember;
use imap_proto::{Capability, RequestId, Response, ResponseCode};
#[cfg(feature = "runtime-tokio")]
use tokio::io::{AsyncRead as Read, AsyncWrite as Write, AsyncWriteExt};

use crate::client::{Connection, Session};
use crate::error::{Error, Result};
use crate::parse::handle_unilateral;
use crate::types::ResponseData;

/// One piece of a command line. `Debug` shows only lengths (a part may hold a password).
#[derive(Clone, PartialEq, Eq)]
pub enum CommandPart<'a> {
    /// Bytes sent as they are: atoms, quoted strings, spaces, parentheses.
    Text(Cow<'a, [u8]>),
    /// A literal: `{n}` CRLF (then the server's `+`) or `{n+}` CRLF with LITERAL+, then the bytes.
    Literal(Cow<'a, [u8]>),
}

impl fmt::Debug for CommandPart<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandPart::Text(t) => write!(f, "Text({} bytes)", t.len()),
            CommandPart::Literal(l) => write!(f, "Literal({} bytes)", l.len()),
        }
    }
}

impl<'a> CommandPart<'a> {
    /// Text part from a string.
    pub fn text(s: impl Into<Cow<'a, str>>) -> Self {
        match s.into() {
            Cow::Borrowed(s) => CommandPart::Text(Cow::Borrowed(s.as_bytes())),
            Cow::Owned(s) => CommandPart::Text(Cow::Owned(s.into_bytes())),
        }
    }

    /// An IMAP string argument: a quoted string (with `\` and `"` escaped) when every byte is
    /// 7-bit and neither CR, LF nor NUL, else a literal.
    pub fn string(value: &'a [u8]) -> Self {
        if value
            .iter()
            .all(|b| (0x01..0x80).contains(b) && *b != b'\r' && *b != b'\n')
        {
            let mut q = Vec::with_capacity(value.len() + 2);
            q.push(b'"');
            for b in value {
                if *b == b'"' || *b == b'\\' {
                    q.push(b'\\');
                }
                q.push(*b);
            }
            q.push(b'"');
            CommandPart::Text(Cow::Owned(q))
        } else {
            CommandPart::Literal(Cow::Borrowed(value))
        }
    }
}

/// One message of an APPEND.
#[derive(Clone, Copy)]
pub struct AppendMessage<'a> {
    /// Flag list with its parentheses, e.g. `(\Seen $Label1)`; `None` sends no flag list.
    pub flags: Option<&'a str>,
    /// INTERNALDATE as a quoted date-time, e.g. `"03-Dec-2019 10:11:12 +0100"`.
    pub internaldate: Option<&'a str>,
    /// The message, sent as a literal, byte for byte.
    pub content: &'a [u8],
}

impl fmt::Debug for AppendMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendMessage")
            .field("flags", &self.flags)
            .field("internaldate", &self.internaldate)
            .field("content_len", &self.content.len())
            .finish()
    }
}

/// `[APPENDUID uidvalidity uid-set]` of a tagged OK (RFC 4315).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendUid {
    /// UIDVALIDITY of the target mailbox.
    pub uid_validity: u32,
    /// The UIDs as the server wrote them (single UIDs and ranges), in message order.
    pub uids: Vec<UidSetMember>,
}

impl AppendUid {
    /// The UIDs one by one, or `None` when the set holds more than `max` UIDs (a ridiculous range
    /// must not be expanded).
    pub fn expand(&self, max: usize) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        for m in &self.uids {
            match m {
                UidSetMember::Uid(u) => out.push(*u),
                UidSetMember::UidRange(r) => {
                    let (a, b) = (*r.start(), *r.end());
                    let n = (a.max(b) - a.min(b)) as usize + 1;
                    if out.len() + n > max {
                        return None;
                    }
                    // RFC 4315: "3:1" means 1, 2, 3 in ascending order as well.
                    out.extend(a.min(b)..=a.max(b));
                }
            }
            if out.len() > max {
                return None;
            }
        }
        Some(out)
    }
}

/// Render a response code back to its IMAP text, without brackets (`TRYCREATE`,
/// `APPENDUID 38505 3955`, ...).
pub fn response_code_text(code: &ResponseCode<'_>) -> String {
    fn set(s: &[UidSetMember]) -> String {
        s.iter()
            .map(|m| match m {
                UidSetMember::Uid(u) => u.to_string(),
                UidSetMember::UidRange(r) => format!("{}:{}", r.start(), r.end()),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
    match code {
        ResponseCode::Alert => "ALERT".into(),
        ResponseCode::BadCharset(None) => "BADCHARSET".into(),
        ResponseCode::BadCharset(Some(v)) => format!("BADCHARSET ({})", v.join(" ")),
        ResponseCode::Capabilities(c) => {
            let atoms: Vec<String> = c
                .iter()
                .map(|c| match c {
                    Capability::Imap4rev1 => "IMAP4rev1".to_string(),
                    Capability::Auth(a) => format!("AUTH={a}"),
                    Capability::Atom(a) => a.to_string(),
                })
                .collect();
            format!("CAPABILITY {}", atoms.join(" "))
        }
        ResponseCode::HighestModSeq(n) => format!("HIGHESTMODSEQ {n}"),
        ResponseCode::Parse => "PARSE".into(),
        ResponseCode::PermanentFlags(f) => format!("PERMANENTFLAGS ({})", f.join(" ")),
        ResponseCode::ReadOnly => "READ-ONLY".into(),
        ResponseCode::ReadWrite => "READ-WRITE".into(),
        ResponseCode::TryCreate => "TRYCREATE".into(),
        ResponseCode::UidNext(n) => format!("UIDNEXT {n}"),
        ResponseCode::UidValidity(n) => format!("UIDVALIDITY {n}"),
        ResponseCode::Unseen(n) => format!("UNSEEN {n}"),
        ResponseCode::AppendUid(v, s) => format!("APPENDUID {v} {}", set(s)),
        ResponseCode::CopyUid(v, a, b) => format!("COPYUID {v} {} {}", set(a), set(b)),
        ResponseCode::UidNotSticky => "UIDNOTSTICKY".into(),
        ResponseCode::MetadataLongEntries(n) => format!("METADATA LONGENTRIES {n}"),
        ResponseCode::MetadataMaxSize(n) => format!("METADATA MAXSIZE {n}"),
        ResponseCode::MetadataTooMany => "METADATA TOOMANY".into(),
        ResponseCode::MetadataNoPrivate => "METADATA NOPRIVATE".into(),
        other => format!("{other:?}"),
    }
}

/// `[CODE] text` as the server wrote it (codes imap-proto does not know, such as `[OVERQUOTA]`,
/// stay at the start of the text and come out the same way).
pub fn format_outcome(code: Option<&ResponseCode<'_>>, information: Option<&str>) -> String {
    match code {
        Some(c) => format!("[{}] {}", response_code_text(c), information.unwrap_or("")),
        None => information.unwrap_or("").to_string(),
    }
}

impl<T: Read + Write + Unpin + fmt::Debug + Send> Connection<T> {
    /// Send a tagged command made of `parts` (the tag and the final CRLF are added). Literals are
    /// `{n+}` when `literal_plus` (one write for the whole command), else `{n}` with a wait for the
    /// server's continuation before each literal.
    ///
    /// When the server refuses the command before a literal (a tagged NO/BAD instead of `+`), the
    /// rest is not sent; that tagged response and any untagged ones read meanwhile are put back and
    /// come out of the next reads, so the caller reads the outcome as usual.
    pub async fn run_command_parts(
        &mut self,
        parts: &[CommandPart<'_>],
        literal_plus: bool,
    ) -> Result<RequestId> {
        let id = self
            .request_ids
            .next()
            .unwrap_or_else(|| RequestId("x".into())); // never None
        log::trace!("run_command_parts: tag {:?}, {:?}", id, parts);
        let mut buf: Vec<u8> = Vec::with_capacity(
            64 + parts
                .iter()
                .map(|p| match p {
                    CommandPart::Text(t) | CommandPart::Literal(t) => t.len() + 16,
                })
                .sum::<usize>(),
        );
        buf.extend_from_slice(id.0.as_bytes());
        buf.push(b' ');
        let mut held: Vec<ResponseData> = Vec::new();
        for part in parts {
            match part {
                CommandPart::Text(t) => buf.extend_from_slice(t),
                CommandPart::Literal(l) if literal_plus => {
                    buf.extend_from_slice(format!("{{{}+}}\r\n", l.len()).as_bytes());
                    buf.extend_from_slice(l);
                }
                CommandPart::Literal(l) => {
                    buf.extend_from_slice(format!("{{{}}}\r\n", l.len()).as_bytes());
                    let sent = self.write_and_flush(&buf).await;
                    buf.clear();
                    if let Err(e) = sent {
                        return Err(e.into());
                    }
                    loop {
                        match self.stream.next_fresh().await {
                            Ok(Some(res)) => match res.parsed() {
                                Response::Continue(_) => break,
                                Response::Done { tag, .. } if *tag == id => {
                                    held.push(res);
                                    self.stream.push_pending(held);
                                    return Ok(id);
                                }
                                _ => held.push(res),
                            },
                            Ok(None) => {
                                self.stream.push_pending(held);
                                return Err(Error::ConnectionLost);
                            }
                            Err(e) => {
                                self.stream.push_pending(held);
                                return Err(e.into());
                            }
                        }
                    }
                    buf.extend_from_slice(l);
                }
            }
        }
        buf.extend_from_slice(b"\r\n");
        self.stream.push_pending(held);
        self.write_and_flush(&buf).await?;
        Ok(id)
    }

    async fn write_and_flush(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.stream.as_mut().write_all(buf).await?;
        self.stream.flush().await
    }

    /// Responses set aside because imap-proto could not parse them (complete untagged lines, in
    /// order), since the last call.
    pub fn take_unparsed(&mut self) -> Vec<Vec<u8>> {
        self.stream.take_unparsed()
    }

    /// Bytes (and put-back responses) received but not handed out yet.
    pub fn buffered_len(&self) -> usize {
        self.stream.buffered_len()
    }
}

impl<T: Read + Write + Unpin + fmt::Debug + Send> Session<T> {
    /// APPEND `messages` to `mailbox` in one command (MULTIAPPEND when there are several: the server
    /// must offer it). `mailbox` is sent as a quoted string, or a literal when it holds 8-bit bytes.
    /// Returns the tagged OK's APPENDUID when there is one. An empty `messages` sends nothing.
    pub async fn append_multi(
        &mut self,
        mailbox: &str,
        messages: &[AppendMessage<'_>],
        literal_plus: bool,
    ) -> Result<Option<AppendUid>> {
        if messages.is_empty() {
            return Ok(None);
        }
        let mut parts = vec![
            CommandPart::text("APPEND "),
            CommandPart::string(mailbox.as_bytes()),
        ];
        for m in messages {
            if let Some(f) = m.flags {
                parts.push(CommandPart::text(" "));
                parts.push(CommandPart::text(f));
            }
            if let Some(d) = m.internaldate {
                parts.push(CommandPart::text(" "));
                parts.push(CommandPart::text(d));
            }
            parts.push(CommandPart::text(" "));
            parts.push(CommandPart::Literal(Cow::Borrowed(m.content)));
        }
        let id = self.conn.run_command_parts(&parts, literal_plus).await?;
        loop {
            let Some(res) = self.conn.stream.try_next().await? else {
                return Err(Error::ConnectionLost);
            };
            if let Response::Done {
                tag,
                status,
                outcome,
            } = res.parsed()
                && *tag == id
            {
                self.conn.check_status_ok(
                    status,
                    outcome.code.as_ref(),
                    outcome.information.as_deref(),
                )?;
                if let Some(ResponseCode::AppendUid(v, uids)) = &outcome.code {
                    return Ok(Some(AppendUid {
                        uid_validity: *v,
                        uids: uids.clone(),
                    }));
                }
                return Ok(None);
            }
            handle_unilateral(res, self.unsolicited_responses_tx.clone());
        }
    }
}
