//! `--delete2`: remove from host2 the messages the plan found there and not on host1.
//!
//! Safety, in this order:
//! - the plan only lists host2 messages inside the run's size and age window that no host1
//!   message (not even a skipped one) pairs with;
//! - [`delete2_guard`] refuses when host1's folder lists nothing at all or when the plan would
//!   delete more than `SyncOptions::delete2_max_percent` of host2's folder; `--force-delete`
//!   passes anyway. A refusal deletes nothing in that folder and is reported (class `delete`);
//! - exactly the planned UIDs are removed: `UID STORE +FLAGS.SILENT (\Deleted)` then `UID EXPUNGE`
//!   of the same set (UIDPLUS). A server without UIDPLUS only has `EXPUNGE`, which would also
//!   remove every message a user flagged `\Deleted` on host2 (BR-37): nothing is deleted there;
//! - each command names at most `SyncOptions::delete2_chunk` UIDs (default 250): one command over a
//!   huge set makes Exchange drop the session (BR-49). No progress needs saving: after a lost
//!   connection the folder is re-planned from host2's fresh state, the chunks already done are gone
//!   from it, and the next command is the first of what is left;
//! - `--delete2-trash` moves the messages to host2's Trash instead (its special-use `\Trash`
//!   folder, else a folder with a known trash name; with none nothing is deleted): one `UID MOVE`
//!   per chunk (RFC 6851, atomic on the server). Without MOVE: `\Deleted` first, then `UID COPY` to
//!   the Trash, then `UID EXPUNGE` (UIDPLUS needed), so that after an interruption a message is
//!   either unflagged (copy it) or flagged and maybe copied already: a flagged message whose
//!   identity the Trash holds is not copied again. The Trash folder itself is left alone.

use std::collections::HashSet;

use imapfleet_imap::{ImapError, MailboxEntry, Session, SpecialUse, StoreMode};
use tracing::{debug, info, warn};

use super::folder::{read_side, Fail};
use super::{Side, SyncOptions};
use crate::mapping::FolderPair;
use crate::plan::{delete2_guard, FolderPlan, FolderSide};
use crate::report::{ErrorClass, FolderReport, SyncError};

/// Default of `SyncOptions::delete2_chunk`: most UIDs per STORE / EXPUNGE / MOVE / COPY command
/// (Exchange drops the session on much larger sets).
pub const DEFAULT_DELETE2_CHUNK: usize = 250;

/// What `--delete2` may do with this plan: the UIDs to delete (all of the plan's, or none with
/// the reason as a report error).
fn allowed(
    plan: &FolderPlan,
    side1: &FolderSide,
    side2: &FolderSide,
    opts: &SyncOptions,
    folder: &str,
    pair: &FolderPair,
) -> Result<Vec<u32>, SyncError> {
    if pair.merged && !plan.deletions2.is_empty() {
        // Not even with --force-delete: the other source's messages are in this plan's
        // "only on host2", and deleting them loses mail that host1 still has.
        return Err(SyncError::folder(
            ErrorClass::Delete,
            folder,
            format!(
                "--delete2: several host1 folders map into host2 folder {:?}; a plan of one of \
                 them cannot tell the others' messages from deleted ones: {} messages kept \
                 (map them apart with --f1f2/--regextrans2 to delete in them)",
                pair.name2,
                plan.deletions2.len()
            ),
        ));
    }
    if plan.deletions2.is_empty() || opts.force_delete {
        return Ok(plan.deletions2.clone());
    }
    match delete2_guard(plan, side1, side2, opts.delete2_max_percent) {
        None => Ok(plan.deletions2.clone()),
        Some(why) => Err(SyncError::folder(
            ErrorClass::Delete,
            folder,
            format!("--delete2: {why}"),
        )),
    }
}

/// Carry out the plan's deletions on host2 (whose folder is selected read-write); `sides` are the
/// plan's inputs (host1, host2). In a dry run only count what would go. Returns how many messages
/// were deleted.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn delete2(
    s2: &mut Session,
    plan: &FolderPlan,
    (side1, side2): (&FolderSide, &FolderSide),
    opts: &SyncOptions,
    folder: &str,
    pair: &FolderPair,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<u64, Fail> {
    if !(opts.plan.delete2 || opts.plan.delete2_duplicates) || plan.deletions2.is_empty() {
        return Ok(0);
    }
    let raw2 = pair.raw2.as_str();
    let uids = match allowed(plan, side1, side2, opts, folder, pair) {
        Ok(u) => u,
        Err(e) => {
            warn!(folder, "{}", e.message);
            errs.push(e);
            return Ok(0);
        }
    };
    if opts.dry_run {
        rep.deleted2 += uids.len() as u64;
        return Ok(0);
    }
    if opts.delete2_trash {
        return to_trash(s2, &uids, side2, opts, folder, raw2, rep, errs).await;
    }
    if !s2.capabilities().has("UIDPLUS") {
        errs.push(SyncError::folder(
            ErrorClass::Delete,
            folder,
            format!(
                "--delete2: host2 lacks UIDPLUS (UID EXPUNGE); a plain EXPUNGE would also remove \
                 messages flagged \\Deleted by host2's user: {} messages kept",
                uids.len()
            ),
        ));
        return Ok(0);
    }
    let conn = |e: ImapError| Fail::Connection {
        side: Side::Host2,
        err: e,
    };
    let mut deleted = 0u64;
    for chunk in uids.chunks(opts.delete2_chunk.max(1)) {
        let flagged = s2
            .uid_store(chunk, StoreMode::Add, &["\\Deleted".to_string()])
            .await;
        let done = match flagged {
            Ok(()) => match s2.expunge(chunk).await {
                // Not expunged after all: take the flag off again, so that these messages do not
                // linger as "deleted" in the user's client.
                Err(e) if !(e.is_connection() || e.is_throttle()) => {
                    let undo = s2
                        .uid_store(chunk, StoreMode::Remove, &["\\Deleted".to_string()])
                        .await;
                    undo.map_err(conn)?;
                    Err(e)
                }
                other => other,
            },
            Err(e) => Err(e),
        };
        match done {
            Ok(()) => deleted += chunk.len() as u64,
            Err(e) if e.is_connection() || e.is_throttle() => return Err(conn(e)),
            Err(e) => errs.push(SyncError::folder(
                ErrorClass::Delete,
                folder,
                format!(
                    "--delete2: host2 refused to delete {} messages: {e}",
                    chunk.len()
                ),
            )),
        }
    }
    rep.deleted2 += deleted;
    if deleted > 0 {
        info!(folder, deleted, "deleted on host2 (--delete2)");
    }
    Ok(deleted)
}

/// host2's Trash: the `\Trash` special-use folder, else one whose last name component is a known
/// trash name ("Trash", "Deleted Items", "Papierkorb", ...). Never a `\Noselect` one.
fn find_trash(list: &[MailboxEntry]) -> Option<&MailboxEntry> {
    let selectable = || list.iter().filter(|e| !e.noselect);
    selectable()
        .find(|e| e.special_use == Some(SpecialUse::Trash))
        .or_else(|| {
            selectable().find(|e| {
                let last = match e.delimiter {
                    Some(d) => e.name.rsplit(d).next().unwrap_or(&e.name),
                    None => &e.name,
                };
                crate::mapping::localized::class_of(last) == Some(SpecialUse::Trash)
            })
        })
}

/// `--delete2-trash`: move `uids` (of the folder `raw2`, selected read-write) to host2's Trash.
#[allow(clippy::too_many_arguments)]
async fn to_trash(
    s2: &mut Session,
    uids: &[u32],
    side2: &FolderSide,
    opts: &SyncOptions,
    folder: &str,
    raw2: &str,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<u64, Fail> {
    let conn = |e: ImapError| Fail::Connection {
        side: Side::Host2,
        err: e,
    };
    let refused = |what: String| SyncError::folder(ErrorClass::Delete, folder, what);
    let list = match s2.list().await {
        Ok(l) => l,
        Err(e) if e.is_connection() || e.is_throttle() => return Err(conn(e)),
        Err(e) => {
            errs.push(refused(format!("--delete2-trash: host2 LIST: {e}")));
            return Ok(0);
        }
    };
    let trash = match find_trash(&list) {
        Some(t) if t.raw_name == raw2 => {
            debug!(folder, "--delete2-trash leaves the Trash itself alone");
            return Ok(0);
        }
        Some(t) => t.raw_name.clone(),
        None => {
            errs.push(refused(format!(
                "--delete2-trash: host2 has no Trash folder (special-use \\Trash or a known name): {} messages kept",
                uids.len()
            )));
            return Ok(0);
        }
    };
    let chunk = opts.delete2_chunk.max(1);
    let caps = s2.capabilities().clone();
    let mut moved = 0u64;
    let result = if caps.has("MOVE") {
        async {
            for c in uids.chunks(chunk) {
                s2.uid_move(c, &trash).await?;
                moved += c.len() as u64;
            }
            Ok(())
        }
        .await
    } else if caps.has("UIDPLUS") {
        copy_to_trash(s2, uids, side2, opts, folder, raw2, &trash, &mut moved).await
    } else {
        errs.push(refused(format!(
            "--delete2-trash: host2 has neither MOVE nor UIDPLUS (UID EXPUNGE): {} messages kept",
            uids.len()
        )));
        return Ok(0);
    };
    rep.deleted2 += moved;
    if moved > 0 {
        info!(folder, moved, trash = %trash, "moved to host2's Trash (--delete2-trash)");
    }
    match result {
        Ok(()) => Ok(moved),
        Err(e) if e.is_connection() || e.is_throttle() => Err(conn(e)),
        Err(e) => {
            warn!(folder, error = %e, "--delete2-trash refused");
            errs.push(refused(format!(
                "--delete2-trash: host2 refused to move {} messages to {trash:?}: {e}",
                uids.len() as u64 - moved
            )));
            Ok(moved)
        }
    }
}

/// MOVE without MOVE: `\Deleted`, COPY, UID EXPUNGE per chunk (see the module doc).
#[allow(clippy::too_many_arguments)]
async fn copy_to_trash(
    s2: &mut Session,
    uids: &[u32],
    side2: &FolderSide,
    opts: &SyncOptions,
    folder: &str,
    raw2: &str,
    trash: &str,
    moved: &mut u64,
) -> Result<(), ImapError> {
    // What the Trash holds already, by identity; then back to the folder, read-write.
    let info = s2.select(trash, true).await?;
    let in_trash: HashSet<_> =
        match read_side(s2, Side::Host2, info.exists, &opts.identity, folder).await {
            Ok(msgs) => msgs.into_iter().map(|m| m.key).collect(),
            Err(Fail::Connection { err, .. }) => return Err(err),
            Err(Fail::Folder(e)) => return Err(ImapError::Invalid(e.message)),
        };
    s2.select(raw2, false).await?;
    let deleted = ["\\Deleted".to_string()];
    for c in uids.chunks(opts.delete2_chunk.max(1)) {
        let to_copy: Vec<u32> = c
            .iter()
            .copied()
            .filter(|u| {
                side2.messages.iter().find(|m| m.uid == *u).is_none_or(|m| {
                    let flagged = m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"));
                    !(flagged && in_trash.contains(&m.key))
                })
            })
            .collect();
        s2.uid_store(c, StoreMode::Add, &deleted).await?;
        s2.uid_copy(&to_copy, trash).await?;
        s2.expunge(c).await?;
        *moved += c.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, special: Option<SpecialUse>) -> MailboxEntry {
        MailboxEntry {
            raw_name: name.into(),
            name: name.into(),
            delimiter: Some('/'),
            noselect: false,
            has_children: false,
            special_use: special,
            attributes: Vec::new(),
        }
    }

    #[test]
    fn the_trash_is_the_special_use_folder_else_a_known_name() {
        let list = vec![
            entry("INBOX", None),
            entry("Deleted Items", None),
            entry("Bin", Some(SpecialUse::Trash)),
        ];
        assert_eq!(find_trash(&list).map(|e| e.name.as_str()), Some("Bin"));
        for name in [
            "INBOX/Deleted Items",
            "Papierkorb",
            "INBOX/Trash",
            "Corbeille",
        ] {
            let list = vec![entry("INBOX", None), entry(name, None)];
            assert_eq!(find_trash(&list).map(|e| e.name.as_str()), Some(name));
        }
        let list = vec![
            entry("INBOX", None),
            entry("Old", None),
            entry("Trash Talk", None),
        ];
        assert!(find_trash(&list).is_none());
        let mut gone = entry("Trash", Some(SpecialUse::Trash));
        gone.noselect = true;
        assert!(
            find_trash(&[gone]).is_none(),
            "a \\Noselect Trash cannot take messages"
        );
    }
}
