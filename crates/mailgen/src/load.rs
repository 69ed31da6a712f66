//! Load generated folders into a mailbox over IMAP: CREATE (parents first), then batched APPEND.

use std::collections::HashSet;

use imapfleet_imap::{mutf7, AppendRequest, ImapError, Session};

use crate::GenFolder;

/// How [`fill_with`] batches.
#[derive(Debug, Clone)]
pub struct FillOptions {
    /// At most this many messages per APPEND command (MULTIAPPEND).
    pub batch_messages: usize,
    /// At most about this many bytes per APPEND command (a larger message goes alone).
    pub batch_bytes: usize,
}

impl Default for FillOptions {
    fn default() -> Self {
        FillOptions {
            batch_messages: 100,
            batch_bytes: 8 << 20,
        }
    }
}

/// What [`fill`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillStats {
    /// CREATE commands that succeeded (or found the folder already there).
    pub folders_created: usize,
    pub messages: usize,
    pub bytes: u64,
    pub append_commands: usize,
}

fn is_inbox(path: &[String]) -> bool {
    path.len() == 1 && path[0].eq_ignore_ascii_case("INBOX")
}

/// The raw (mUTF-7) name of a folder path with the server's separator.
pub fn raw_name(path: &[String], sep: char) -> Result<String, ImapError> {
    if is_inbox(path) {
        return Ok("INBOX".to_string());
    }
    if path.is_empty() {
        return Err(ImapError::Invalid("empty folder path".into()));
    }
    for c in path {
        if c.is_empty() || c.contains(sep) || c.contains(['\r', '\n']) {
            return Err(ImapError::Invalid(format!(
                "folder component {c:?} cannot be used with separator {sep:?}"
            )));
        }
    }
    Ok(mutf7::encode(&path.join(&sep.to_string())))
}

fn already_exists(e: &ImapError) -> bool {
    match e {
        ImapError::No { code, text, .. } => {
            code.as_deref()
                .map(|c| c.eq_ignore_ascii_case("ALREADYEXISTS"))
                .unwrap_or(false)
                || text.to_ascii_lowercase().contains("exists")
        }
        _ => false,
    }
}

/// CREATE every folder (and its parents, parents first; INBOX is never created), then APPEND its
/// messages with their flags and INTERNALDATEs in batches ([`FillOptions::default`]). Folders are
/// consumed one at a time, so a lazy [`crate::Folders`] keeps only one folder in memory.
pub async fn fill(
    session: &mut Session,
    sep: char,
    folders: impl IntoIterator<Item = GenFolder>,
) -> Result<FillStats, ImapError> {
    fill_with(session, sep, folders, &FillOptions::default()).await
}

/// [`fill`] with explicit batching.
pub async fn fill_with(
    session: &mut Session,
    sep: char,
    folders: impl IntoIterator<Item = GenFolder>,
    opts: &FillOptions,
) -> Result<FillStats, ImapError> {
    let mut stats = FillStats::default();
    let mut created: HashSet<Vec<String>> = HashSet::new();
    for folder in folders {
        for depth in 1..=folder.path.len() {
            let prefix = folder.path[..depth].to_vec();
            if is_inbox(&prefix) || created.contains(&prefix) {
                continue;
            }
            let raw = raw_name(&prefix, sep)?;
            match session.create(&raw).await {
                Ok(()) => stats.folders_created += 1,
                Err(e) if already_exists(&e) => stats.folders_created += 1,
                Err(e) => return Err(e),
            }
            created.insert(prefix);
        }
        let raw = raw_name(&folder.path, sep)?;
        let mut start = 0;
        while start < folder.messages.len() {
            let mut end = start;
            let mut bytes = 0usize;
            while end < folder.messages.len()
                && end - start < opts.batch_messages.max(1)
                && (end == start || bytes + folder.messages[end].bytes.len() <= opts.batch_bytes)
            {
                bytes += folder.messages[end].bytes.len();
                end += 1;
            }
            let batch: Vec<AppendRequest<'_>> = folder.messages[start..end]
                .iter()
                .map(|m| AppendRequest {
                    flags: m.flags.clone(),
                    internaldate: Some(m.internaldate),
                    body: &m.bytes,
                })
                .collect();
            session.append(&raw, &batch).await?;
            stats.append_commands += 1;
            stats.messages += end - start;
            stats.bytes += bytes as u64;
            start = end;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_names_refuse_separator_in_component() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(raw_name(&p(&["INBOX"]), '.').unwrap(), "INBOX");
        assert_eq!(raw_name(&p(&["inbox"]), '/').unwrap(), "INBOX");
        assert!(raw_name(&p(&["a.b"]), '.').is_err());
        assert!(raw_name(&p(&["a/b"]), '/').is_err());
        assert!(raw_name(&[], '/').is_err());
    }
}
