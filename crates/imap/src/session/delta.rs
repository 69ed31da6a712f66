//! Commands of delta passes (saved sync state): LIST with the STATUS of every folder in one round
//! trip (LIST-STATUS, RFC 5819), the flags changed since a modification sequence (CONDSTORE,
//! RFC 7162 `CHANGEDSINCE`), and a STATUS-line parser shared by both.
//!
//! STATUS lines are parsed from their exact bytes (like LIST lines), so names imap-proto would not
//! take as atoms (`[Archive]`, `x]y`) still get their status.

use std::collections::{BTreeMap, HashMap};

use async_imap::imap_proto::{MailboxDatum, Response};

use super::{FetchCollector, Session, Untagged};
use crate::wire::{self, text, Lexer, Tok};
use crate::{ImapError, MailboxEntry, Result, StatusInfo};

/// The STATUS items a delta pass compares (no UNSEEN: it costs some servers a scan).
fn delta_status_items(condstore: bool) -> &'static str {
    if condstore {
        "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ"
    } else {
        "MESSAGES UIDNEXT UIDVALIDITY"
    }
}

/// `* STATUS <mailbox> (<item> <number> ...)` from its exact bytes: the mailbox as sent (quoted
/// strings unescaped) and the numbers. Unknown items are skipped.
pub(crate) fn parse_status_line(line: &[u8]) -> std::result::Result<(String, StatusInfo), String> {
    let mut lx = Lexer::new(line);
    lx.expect_word("*")?;
    lx.expect_word("STATUS")?;
    let name = match lx.next_tok()? {
        Tok::Str(s) | Tok::Atom(s) => String::from_utf8_lossy(&s).into_owned(),
        other => return Err(format!("STATUS: bad mailbox {other:?}")),
    };
    if lx.next_tok()? != Tok::Open {
        return Err("STATUS: expected an attribute list".into());
    }
    let mut info = StatusInfo::default();
    loop {
        let item = match lx.next_tok()? {
            Tok::Close => break,
            Tok::Atom(a) => String::from_utf8_lossy(&a).to_ascii_uppercase(),
            other => return Err(format!("STATUS: unexpected {other:?}")),
        };
        let value = match lx.next_tok()? {
            Tok::Atom(v) => String::from_utf8_lossy(&v).into_owned(),
            other => return Err(format!("STATUS: {item} without a number: {other:?}")),
        };
        let n: u64 = value
            .parse()
            .map_err(|_| format!("STATUS: {item} {value:?} is not a number"))?;
        let small = || u32::try_from(n).map_err(|_| format!("STATUS: {item} {n} too large"));
        match item.as_str() {
            "MESSAGES" => info.messages = Some(small()?),
            "UIDNEXT" => info.uidnext = Some(small()?),
            "UIDVALIDITY" => info.uidvalidity = Some(small()?),
            "UNSEEN" => info.unseen = Some(small()?),
            "HIGHESTMODSEQ" => info.highestmodseq = Some(n),
            _ => {}
        }
    }
    Ok((name, info))
}

/// The name a STATUS line gives and a listed name are the same mailbox (INBOX in any case).
fn same_name(listed: &str, reported: &str) -> bool {
    listed == reported
        || (listed.eq_ignore_ascii_case("INBOX") && reported.eq_ignore_ascii_case("INBOX"))
}

impl Session {
    /// Does the server offer CONDSTORE (HIGHESTMODSEQ, `CHANGEDSINCE`)?
    pub fn has_condstore(&self) -> bool {
        self.caps.has("CONDSTORE")
    }

    /// Does the server offer LIST-STATUS (RFC 5819)?
    pub fn has_list_status(&self) -> bool {
        self.caps.has("LIST-STATUS")
    }

    /// `LIST "" "*" RETURN ([SPECIAL-USE] STATUS (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ]))`
    /// when the server offers LIST-STATUS: the folders as [`Session::list`] gives them, and the
    /// status of each selectable one by its raw name. Without LIST-STATUS: a plain
    /// [`Session::list`] and an empty map (ask [`Session::status`] folder by folder).
    pub async fn list_with_status(
        &mut self,
    ) -> Result<(Vec<MailboxEntry>, HashMap<String, StatusInfo>)> {
        if !self.has_list_status() {
            return Ok((self.list().await?, HashMap::new()));
        }
        let special = if self.caps.has("SPECIAL-USE") {
            "SPECIAL-USE "
        } else {
            ""
        };
        let cmd = format!(
            "LIST \"\" \"*\" RETURN ({special}STATUS ({}))",
            delta_status_items(self.has_condstore())
        );
        let utf8 = self.utf8;
        let mut entries: Vec<MailboxEntry> = Vec::new();
        let mut statuses: Vec<(String, StatusInfo)> = Vec::new();
        self.exec("LIST", &[text(cmd)], |u| {
            let (line, is_list) = match u {
                Untagged::Parsed(r) => match r.parsed() {
                    Response::MailboxData(MailboxDatum::List(_)) => (r.raw(), true),
                    Response::MailboxData(MailboxDatum::Status { .. }) => (r.raw(), false),
                    _ => return Ok(()),
                },
                Untagged::Unparsed(l) if l.starts_with(b"* LIST ") => (l, true),
                Untagged::Unparsed(l) if l.starts_with(b"* STATUS ") => (l, false),
                Untagged::Unparsed(_) => return Ok(()),
            };
            if is_list {
                let mut e = wire::parse_list_line(line).map_err(|detail| ImapError::Protocol {
                    command: "LIST".into(),
                    detail,
                })?;
                if utf8 {
                    e.name = e.raw_name.clone();
                }
                entries.push(e);
            } else {
                let s = parse_status_line(line).map_err(|detail| ImapError::Protocol {
                    command: "LIST".into(),
                    detail,
                })?;
                statuses.push(s);
            }
            Ok(())
        })
        .await?;
        let mut by_name = HashMap::new();
        for (reported, info) in statuses {
            match entries.iter().find(|e| same_name(&e.raw_name, &reported)) {
                Some(e) => {
                    by_name.insert(e.raw_name.clone(), info);
                }
                None => {
                    tracing::debug!(endpoint = %self.endpoint.label, "STATUS of unlisted {reported:?} ignored")
                }
            }
        }
        Ok((entries, by_name))
    }

    /// STATUS of `raw_name` with the items a delta pass compares (MESSAGES UIDNEXT UIDVALIDITY,
    /// and HIGHESTMODSEQ with CONDSTORE).
    pub async fn delta_status(&mut self, raw_name: &str) -> Result<StatusInfo> {
        let items = format!(" ({})", delta_status_items(self.has_condstore()));
        let parts = [text("STATUS "), wire::mailbox_arg(raw_name)?, text(items)];
        let mut found: Option<StatusInfo> = None;
        let mut other = None;
        self.exec("STATUS", &parts, |u| {
            let line = match u {
                Untagged::Parsed(r) => match r.parsed() {
                    Response::MailboxData(MailboxDatum::Status { .. }) => r.raw(),
                    _ => return Ok(()),
                },
                Untagged::Unparsed(l) if l.starts_with(b"* STATUS ") => l,
                Untagged::Unparsed(_) => return Ok(()),
            };
            let (name, info) = parse_status_line(line).map_err(|detail| ImapError::Protocol {
                command: "STATUS".into(),
                detail,
            })?;
            if same_name(raw_name, &name) {
                found = Some(info);
            } else {
                other = Some(name);
            }
            Ok(())
        })
        .await?;
        found.ok_or_else(|| ImapError::Protocol {
            command: "STATUS".into(),
            detail: format!(
                "no STATUS response for {raw_name:?}{}",
                other
                    .map(|o| format!(" (only for {o:?})"))
                    .unwrap_or_default()
            ),
        })
    }

    /// `UID FETCH <uid_set> (UID FLAGS)`, with `(CHANGEDSINCE <m>)` when `changed_since` is given
    /// (CONDSTORE: only messages whose flags changed after modification sequence `m`), on the
    /// selected mailbox. Flags by UID, only UIDs inside `uid_set`. A FETCH line that cannot be parsed
    /// fails the call: a caller must never take "not listed" for "unchanged" by accident.
    pub async fn fetch_flags(
        &mut self,
        uid_set: &str,
        changed_since: Option<u64>,
    ) -> Result<Vec<(u32, Vec<String>)>> {
        let set = wire::UidSet::parse(uid_set)?;
        let cmd = match changed_since {
            Some(m) => format!("UID FETCH {uid_set} (UID FLAGS) (CHANGEDSINCE {m})"),
            None => format!("UID FETCH {uid_set} (UID FLAGS)"),
        };
        let label = self.endpoint.label.clone();
        let mut col = FetchCollector::default();
        self.exec("UID FETCH", &[text(cmd)], |u| col.on(u, &label))
            .await?;
        let (parts, unparsed) = col.finish();
        let bad: Vec<u32> = unparsed.into_iter().filter(|u| set.contains(*u)).collect();
        if !bad.is_empty() {
            return Err(ImapError::Protocol {
                command: "UID FETCH".into(),
                detail: format!("FLAGS of UIDs {} cannot be parsed", wire::uid_set(&bad)),
            });
        }
        let mut out: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for p in parts {
            if let (Some(uid), Some(flags)) = (p.uid, p.flags) {
                if set.contains(uid) {
                    out.insert(uid, flags);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let (n, i) = parse_status_line(
            b"* STATUS \"Sent Items\" (MESSAGES 12 UIDNEXT 40 UIDVALIDITY 1700000000 HIGHESTMODSEQ 99)\r\n",
        )
        .unwrap();
        assert_eq!(n, "Sent Items");
        assert_eq!(i.messages, Some(12));
        assert_eq!(i.uidnext, Some(40));
        assert_eq!(i.uidvalidity, Some(1_700_000_000));
        assert_eq!(i.highestmodseq, Some(99));
        let (n, i) = parse_status_line(b"* STATUS [Archive] (MESSAGES 0 UIDNEXT 1)\r\n").unwrap();
        assert_eq!(n, "[Archive]");
        assert_eq!(i.messages, Some(0));
        assert_eq!(i.highestmodseq, None);
        let (n, _) = parse_status_line(b"* STATUS x]y (MESSAGES 1)\r\n").unwrap();
        assert_eq!(n, "x]y");
        let (n, _) = parse_status_line(b"* STATUS \"a\\\"b\" (MESSAGES 1)\r\n").unwrap();
        assert_eq!(n, "a\"b");
        let (n, i) =
            parse_status_line(b"* STATUS {5}\r\nab cd (X-UNKNOWN 3 MESSAGES 2)\r\n").unwrap();
        assert_eq!(n, "ab cd");
        assert_eq!(i.messages, Some(2));
        assert!(parse_status_line(b"* STATUS INBOX (MESSAGES x)\r\n").is_err());
        assert!(parse_status_line(b"* STATUS INBOX\r\n").is_err());
    }

    #[test]
    fn inbox_status_matches_in_any_case() {
        assert!(same_name("INBOX", "Inbox"));
        assert!(same_name("Sent", "Sent"));
        assert!(!same_name("Sent", "sent"));
    }
}
