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
//!   remove every message a user flagged `\Deleted` on host2 (BR-37): nothing is deleted there.

use imapfleet_imap::{ImapError, Session, StoreMode};
use tracing::{info, warn};

use super::folder::Fail;
use super::{Side, SyncOptions};
use crate::plan::{delete2_guard, FolderPlan, FolderSide};
use crate::report::{ErrorClass, FolderReport, SyncError};

/// Most UIDs per STORE / EXPUNGE command (Exchange drops the session on much larger sets).
const UIDS_PER_COMMAND: usize = 250;

/// What `--delete2` may do with this plan: the UIDs to delete (all of the plan's, or none with
/// the reason as a report error).
fn allowed(
    plan: &FolderPlan,
    side1: &FolderSide,
    side2: &FolderSide,
    opts: &SyncOptions,
    folder: &str,
) -> Result<Vec<u32>, SyncError> {
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
pub(crate) async fn delete2(
    s2: &mut Session,
    plan: &FolderPlan,
    (side1, side2): (&FolderSide, &FolderSide),
    opts: &SyncOptions,
    folder: &str,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<u64, Fail> {
    if !opts.plan.delete2 || plan.deletions2.is_empty() {
        return Ok(0);
    }
    let uids = match allowed(plan, side1, side2, opts, folder) {
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
    for chunk in uids.chunks(UIDS_PER_COMMAND) {
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
