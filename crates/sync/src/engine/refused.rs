//! What to do when host2 refuses a message or some of its flags.
//!
//! Two kinds of refusal need opposite answers:
//! - the message itself is refused (too large: `NO [TOOBIG]`, `NO [LIMIT]`, "larger than the
//!   maximum size"): no other flag set can help, so it is reported once, with its size and
//!   Message-ID, and never sent again in this pass ([`is_size_refusal`]); a server that announces
//!   `APPENDLIMIT=n` (RFC 7889) gets no message larger than n at all ([`appendlimit`]);
//! - some flag is refused (Dovecot: `BAD ... Invalid system flag`, `NO [CANNOT] Keyword length too
//!   long`; iCloud: `BAD Parse Error` for any keyword): the message goes with fewer flags and the
//!   others are then added with `STORE`, one at a time where needed ([`add_flags`],
//!   [`replace_flags`]), so only the flags host2 really refuses are lost, and they are named.

use imapfleet_imap::{Capabilities, ImapError, Session, StoreMode};

use super::batch::split_keywords;

/// host2 refused the message for its size; fewer flags will not help.
pub(crate) fn is_size_refusal(err: &ImapError) -> bool {
    match err {
        ImapError::No { code, text, .. } => {
            let code = code.as_deref().unwrap_or("").to_ascii_uppercase();
            let text = text.to_ascii_lowercase();
            code.starts_with("TOOBIG")
                || code == "LIMIT"
                || text.contains("too large")
                || text.contains("too big")
                || text.contains("larger than")
                || (text.contains("size") && (text.contains("exceed") || text.contains("maximum")))
        }
        _ => false,
    }
}

/// The largest message host2 accepts, from `APPENDLIMIT=n` in its capabilities (RFC 7889). A
/// bare `APPENDLIMIT` (limits per mailbox, in STATUS) gives `None`.
pub(crate) fn appendlimit(caps: &Capabilities) -> Option<u64> {
    caps.atoms.iter().find_map(|a| {
        let (name, n) = a.split_once('=')?;
        name.eq_ignore_ascii_case("APPENDLIMIT")
            .then(|| n.parse().ok())
            .flatten()
    })
}

/// `UID STORE uids +FLAGS (flags)`: all at once, and when that is refused, one flag at a time.
/// Returns the flags host2 refused (empty: all stored). A lost connection is the error.
pub(crate) async fn add_flags(
    s2: &mut Session,
    uids: &[u32],
    flags: &[String],
) -> Result<Vec<String>, ImapError> {
    if flags.is_empty() || uids.is_empty() {
        return Ok(Vec::new());
    }
    match s2.uid_store(uids, StoreMode::Add, flags).await {
        Ok(()) => return Ok(Vec::new()),
        Err(e) if e.is_connection() || e.is_throttle() => return Err(e),
        Err(_) if flags.len() == 1 => return Ok(flags.to_vec()),
        Err(_) => {}
    }
    let mut refused = Vec::new();
    for f in flags {
        match s2
            .uid_store(uids, StoreMode::Add, std::slice::from_ref(f))
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_connection() || e.is_throttle() => return Err(e),
            Err(_) => refused.push(f.clone()),
        }
    }
    Ok(refused)
}

/// After host2 refused `UID STORE uids FLAGS (flags)`: make the messages' flags as close to
/// `flags` as host2 allows. The backslash flags replace the old set (falling back to the standard
/// five, then to none), then the keywords and any backslash flag left out are added with
/// [`add_flags`]. Returns the flags not stored.
pub(crate) async fn replace_flags(
    s2: &mut Session,
    uids: &[u32],
    flags: &[String],
) -> Result<Vec<String>, ImapError> {
    let (system, _) = split_keywords(flags);
    let mut bases = vec![system];
    bases.extend(super::batch::append_fallbacks(&bases[0]));
    for base in bases {
        match s2.uid_store(uids, StoreMode::Replace, &base).await {
            Ok(()) => {
                let rest = super::batch::removed_flags(flags, &base);
                return add_flags(s2, uids, &rest).await;
            }
            Err(e) if e.is_connection() || e.is_throttle() => return Err(e),
            Err(_) => {}
        }
    }
    Ok(flags.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(code: Option<&str>, text: &str) -> ImapError {
        ImapError::No {
            command: "APPEND".into(),
            code: code.map(String::from),
            text: text.into(),
        }
    }

    #[test]
    fn size_refusals_of_the_servers_we_know() {
        // Dovecot 2.3 with quota_max_mail_size (BR-31), Gmail, maddy, Exchange, RFC 7889's code.
        assert!(is_size_refusal(&no(
            Some("LIMIT"),
            "Mail size is larger than the maximum size allowed by server configuration"
        )));
        assert!(is_size_refusal(&no(Some("TOOBIG"), "Message too large")));
        assert!(is_size_refusal(&no(None, "[TOOBIG] Message too big")));
        assert!(is_size_refusal(&no(
            None,
            "APPEND failed: message size exceeds fixed limit"
        )));
        assert!(is_size_refusal(&no(
            None,
            "Message exceeds the maximum size"
        )));
        // Flag problems, quota and BAD are not.
        assert!(!is_size_refusal(&no(
            Some("CANNOT"),
            "Keyword length too long"
        )));
        assert!(!is_size_refusal(&no(Some("OVERQUOTA"), "Quota exceeded")));
        assert!(!is_size_refusal(&ImapError::Bad {
            command: "APPEND".into(),
            text: "Invalid system flag \\INDEXED".into()
        }));
    }

    #[test]
    fn appendlimit_from_capabilities() {
        let caps = |v: &[&str]| Capabilities {
            atoms: v.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(
            appendlimit(&caps(&["IMAP4REV1", "APPENDLIMIT=35882577"])),
            Some(35882577)
        );
        assert_eq!(appendlimit(&caps(&["appendlimit=10"])), Some(10));
        assert_eq!(appendlimit(&caps(&["APPENDLIMIT", "UIDPLUS"])), None);
        assert_eq!(appendlimit(&caps(&["APPENDLIMIT=x"])), None);
        assert_eq!(appendlimit(&caps(&[])), None);
    }
}
