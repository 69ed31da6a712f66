//! `--delete2folders`: delete the host2 folders that no host1 folder maps to, after the folders
//! are synced (imapsync's behaviour), restricted by `--delete2foldersonly` / `--delete2foldersbutnot`
//! regexes on host2's decoded names.
//!
//! What is never deleted: INBOX; a folder some host1 folder maps to, whether or not this run syncs
//! it (`--folder`, `--include`, `--exclude` only choose what is synced, not what host1 has); a
//! parent of such a folder. Children go before their parents.
//!
//! Safety guard, like `--delete2`'s: deleting more than `--delete2-max-percent` of host2's folders
//! (INBOX not counted), or any folder while host1 lists nothing but INBOX, deletes nothing unless
//! `--force-delete`; the refusal is an error of class `delete`. `--dry` lists what would go.

use std::collections::BTreeSet;

use imapfleet_imap::{Endpoint, Session};
use regex::Regex;
use tracing::{info, warn};

use super::SyncOptions;
use crate::mapping::{map_folders, MappingOptions, SideFacts};
use crate::report::{AccountReport, ErrorClass, SyncError};

/// The regexes of `--delete2folders`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderDeletion {
    /// `--delete2foldersonly`: only host2 folders matching one of these (decoded names).
    pub only: Vec<String>,
    /// `--delete2foldersbutnot`: never host2 folders matching one of these.
    pub but_not: Vec<String>,
}

impl FolderDeletion {
    /// Are the regexes valid? (Checked before the sync starts: a bad one is a usage error.)
    pub fn validate(&self) -> Result<(), String> {
        compile(&self.only, "--delete2foldersonly").map_err(|e| e.message)?;
        compile(&self.but_not, "--delete2foldersbutnot").map_err(|e| e.message)?;
        Ok(())
    }
}

fn compile(list: &[String], option: &str) -> Result<Vec<Regex>, SyncError> {
    list.iter()
        .map(|r| {
            Regex::new(r)
                .map_err(|e| SyncError::account(ErrorClass::Usage, format!("{option} {r:?}: {e}")))
        })
        .collect()
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// The host2 folders to delete (raw names, children first), and the number of host2 folders the
/// share is taken of. Pure.
pub(crate) fn folders_to_delete(
    h1: &SideFacts,
    h2: &SideFacts,
    mapping: &MappingOptions,
    rules: &FolderDeletion,
) -> Result<(Vec<(String, String)>, usize), SyncError> {
    let only = compile(&rules.only, "--delete2foldersonly")?;
    let but_not = compile(&rules.but_not, "--delete2foldersbutnot")?;
    // Every host1 folder counts, not only the selected ones.
    let all = MappingOptions {
        folders: Vec::new(),
        include: Vec::new(),
        exclude: Vec::new(),
        ..mapping.clone()
    };
    let map = map_folders(h1, h2, &all)
        .map_err(|e| SyncError::account(ErrorClass::Usage, e.to_string()))?;
    let sep = h2.sep();
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for raw in map.pairs.iter().map(|p| &p.raw2).chain(&map.creates) {
        // The folder and all its parents.
        let mut cut = raw.as_str();
        keep.insert(cut.to_string());
        while let Some(i) = cut.rfind(sep) {
            cut = &cut[..i];
            keep.insert(cut.to_string());
        }
    }
    let listed: Vec<_> = h2.folders.iter().filter(|f| !is_inbox(&f.name)).collect();
    let mut out: Vec<(String, String)> = listed
        .iter()
        .filter(|f| !keep.contains(&f.raw_name))
        .filter(|f| only.is_empty() || only.iter().any(|r| r.is_match(&f.name)))
        .filter(|f| !but_not.iter().any(|r| r.is_match(&f.name)))
        .map(|f| (f.raw_name.clone(), f.name.clone()))
        .collect();
    // Children before parents.
    out.sort_by_key(|(raw, _)| std::cmp::Reverse(raw.matches(sep).count()));
    Ok((out, listed.len()))
}

/// Carry out `--delete2folders` for the account (a session of its own on host2).
pub(crate) async fn delete_folders(
    ep2: &Endpoint,
    h1: &SideFacts,
    h2: &SideFacts,
    opts: &SyncOptions,
    report: &mut AccountReport,
) {
    let Some(rules) = &opts.delete2_folders else {
        return;
    };
    let (doomed, total) = match folders_to_delete(h1, h2, &opts.mapping, rules) {
        Ok(x) => x,
        Err(e) => {
            report.errors.push(e);
            return;
        }
    };
    if doomed.is_empty() {
        return;
    }
    let host1_only_inbox = h1
        .folders
        .iter()
        .filter(|f| !f.noselect)
        .all(|f| is_inbox(&f.name));
    let too_many = doomed.len() as u64 * 100 > u64::from(opts.delete2_max_percent) * total as u64;
    if !opts.force_delete && (host1_only_inbox || too_many) {
        let why = if host1_only_inbox {
            "host1 lists no folder but INBOX".to_string()
        } else {
            format!(
                "would delete {} of {total} host2 folders, more than {} %",
                doomed.len(),
                opts.delete2_max_percent
            )
        };
        warn!("--delete2folders: {why}: nothing deleted");
        report.errors.push(SyncError::account(
            ErrorClass::Delete,
            format!("--delete2folders: {why}: nothing deleted (--force-delete to delete them)"),
        ));
        return;
    }
    if opts.dry_run {
        report.deleted_folders2 = doomed.into_iter().map(|(_, name)| name).collect();
        return;
    }
    let mut s = match Session::connect(ep2).await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(SyncError::account(
                ErrorClass::Delete,
                format!("--delete2folders: host2: {e}"),
            ));
            return;
        }
    };
    for (raw, name) in doomed {
        match s.delete(&raw).await {
            Ok(()) => {
                info!(folder = %name, "deleted on host2 (--delete2folders)");
                report.deleted_folders2.push(name);
            }
            Err(e) => report.errors.push(SyncError::account(
                ErrorClass::Delete,
                format!("--delete2folders: host2 refused to delete {name:?}: {e}"),
            )),
        }
    }
    s.logout().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapfleet_imap::{Namespace, Namespaces};

    fn facts(sep: char, names: &[&str]) -> SideFacts {
        let ns = Namespaces {
            personal: vec![Namespace {
                prefix: String::new(),
                delimiter: Some(sep),
            }],
            ..Namespaces::default()
        };
        let folders = names
            .iter()
            .map(|n| imapfleet_imap::MailboxEntry {
                raw_name: n.to_string(),
                name: n.to_string(),
                delimiter: Some(sep),
                noselect: false,
                has_children: false,
                special_use: None,
                attributes: vec![],
            })
            .collect();
        SideFacts::from_server(&ns, folders, None, None)
    }

    fn names(v: &[(String, String)]) -> Vec<&str> {
        v.iter().map(|(_, n)| n.as_str()).collect()
    }

    #[test]
    fn only_unmapped_folders_children_first_never_inbox_or_parents() {
        let h1 = facts('.', &["INBOX", "Work.2024", "Sent"]);
        let h2 = facts(
            '/',
            &[
                "INBOX",
                "Work",
                "Work/2024",
                "Sent",
                "Old",
                "Old/Deep",
                "Inbox2",
            ],
        );
        let rules = FolderDeletion::default();
        let (doomed, total) =
            folders_to_delete(&h1, &h2, &MappingOptions::default(), &rules).unwrap();
        assert_eq!(names(&doomed), ["Old/Deep", "Old", "Inbox2"]);
        assert_eq!(total, 6);
        // --folder does not make the other host1 folders' targets deletable.
        let only_inbox = MappingOptions {
            folders: vec!["INBOX".into()],
            ..MappingOptions::default()
        };
        let (doomed, _) = folders_to_delete(&h1, &h2, &only_inbox, &rules).unwrap();
        assert_eq!(names(&doomed), ["Old/Deep", "Old", "Inbox2"]);
        // The regexes.
        let only = FolderDeletion {
            only: vec!["^Old".into()],
            but_not: vec!["Deep$".into()],
        };
        let (doomed, _) = folders_to_delete(&h1, &h2, &MappingOptions::default(), &only).unwrap();
        assert_eq!(names(&doomed), ["Old"]);
        let bad = FolderDeletion {
            only: vec!["(".into()],
            but_not: vec![],
        };
        assert!(folders_to_delete(&h1, &h2, &MappingOptions::default(), &bad).is_err());
    }
}
