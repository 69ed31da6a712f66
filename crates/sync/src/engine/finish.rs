//! The end of a folder pass, and what it may do to host1: `--expunge1` before reading,
//! `--delete1` after copying, and saving what the pass saw.
//!
//! `--delete1` (move semantics) marks host1 messages `\Deleted` and expunges them only once they
//! are *confirmed* on host2: paired, in a plan made on host2 as it is after the copies (read back
//! from the server, not assumed from what was sent). Messages out of the run's scope (filters,
//! `\Deleted`, other folders' mail in `\All`) are never touched; a refused or unconfirmed copy
//! stays on host1. Without UIDPLUS on host1 the messages are only marked: a plain EXPUNGE would
//! also remove what the user had flagged `\Deleted` there.
//!
//! `--expunge1` expunges host1's folder before reading it (the messages its user flagged
//! `\Deleted`, which are not copied by default), then selects it again so that the status saved for
//! the next pass is taken before the reads.

use std::collections::HashSet;

use imapfleet_imap::{SelectInfo, Session, StoreMode};
use tracing::{debug, info};

use super::delta::{self, side_status, PairState};
use super::folder::{fail, read_side, Fail};
use super::{Ctx, Pair, Side, SyncOptions};
use crate::mapping::FolderPair;
use crate::plan::{plan_folder, FolderPlan, FolderSide, PlanOptions};
use crate::report::{ErrorClass, FolderReport, SyncError};
use crate::state::cache::MessageCache;
use crate::state::SideStatus;

/// Most UIDs per STORE / EXPUNGE on host1.
const UIDS_PER_COMMAND: usize = 250;

/// Does this run write to host1 (so host1 is SELECTed, not EXAMINEd)?
pub(crate) fn writes_host1(opts: &SyncOptions) -> bool {
    (opts.delete1 || opts.expunge1) && !opts.dry_run
}

/// `--expunge1` on the just-selected host1 folder: expunge what is flagged `\Deleted`, then
/// select again. Returns the (new) SELECT answer and how many messages went.
pub(crate) async fn expunge1(
    s1: &mut Session,
    pair: &FolderPair,
    info: SelectInfo,
    opts: &SyncOptions,
) -> Result<(SelectInfo, u64), Fail> {
    if !opts.expunge1 || opts.dry_run || info.exists == 0 {
        return Ok((info, 0));
    }
    let name1 = pair.name1.as_str();
    let uids = s1.uid_search("DELETED").await.map_err(fail(
        Side::Host1,
        ErrorClass::Fetch,
        name1,
        "UID SEARCH DELETED",
    ))?;
    if uids.is_empty() {
        return Ok((info, 0));
    }
    // Without UIDPLUS this is a plain EXPUNGE: exactly "every message flagged \Deleted", which is
    // what --expunge1 asks for.
    for chunk in uids.chunks(UIDS_PER_COMMAND) {
        s1.expunge(chunk)
            .await
            .map_err(fail(Side::Host1, ErrorClass::Delete, name1, "EXPUNGE"))?;
    }
    info!(
        folder = name1,
        expunged = uids.len(),
        "host1 expunged (--expunge1)"
    );
    let again = s1.select(&pair.raw1, false).await.map_err(fail(
        Side::Host1,
        ErrorClass::Select,
        name1,
        "SELECT",
    ))?;
    Ok((again, uids.len() as u64))
}

/// What a dry run would do to host1.
pub(crate) fn dry_run_host1(
    plan: &FolderPlan,
    side1: &FolderSide,
    opts: &SyncOptions,
    rep: &mut FolderReport,
) {
    if opts.expunge1 {
        rep.expunged1 = side1
            .messages
            .iter()
            .filter(|m| m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")))
            .count() as u64;
    }
    if opts.delete1 {
        // Already there, plus what would be copied.
        rep.deleted1 = (confirmed(plan).len() + plan.copies.len()) as u64;
    }
}

/// host1 UIDs the plan pairs with a host2 message and that are in the run's scope.
fn confirmed(plan: &FolderPlan) -> Vec<u32> {
    let skipped: HashSet<u32> = plan.skipped.iter().map(|s| s.uid1).collect();
    let mut v: Vec<u32> = plan
        .matched
        .iter()
        .map(|(u1, _)| *u1)
        .filter(|u| !skipped.contains(u))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Mark `uids` `\Deleted` on host1 and expunge exactly them (UIDPLUS). Returns how many went.
async fn delete1(
    s1: &mut Session,
    uids: &[u32],
    folder: &str,
    errs: &mut Vec<SyncError>,
) -> Result<u64, Fail> {
    let uidplus = s1.capabilities().has("UIDPLUS");
    let deleted_flag = ["\\Deleted".to_string()];
    let mut done = 0u64;
    for chunk in uids.chunks(UIDS_PER_COMMAND) {
        if let Err(e) = s1.uid_store(chunk, StoreMode::Add, &deleted_flag).await {
            if e.is_connection() || e.is_throttle() {
                return Err(Fail::Connection {
                    side: Side::Host1,
                    err: e,
                });
            }
            errs.push(SyncError::folder(
                ErrorClass::Delete,
                folder,
                format!(
                    "--delete1: host1 refused to flag {} messages \\Deleted: {e}",
                    chunk.len()
                ),
            ));
            continue;
        }
        if !uidplus {
            continue;
        }
        match s1.expunge(chunk).await {
            Ok(()) => done += chunk.len() as u64,
            Err(e) if e.is_connection() || e.is_throttle() => {
                return Err(Fail::Connection {
                    side: Side::Host1,
                    err: e,
                })
            }
            Err(e) => errs.push(SyncError::folder(
                ErrorClass::Delete,
                folder,
                format!(
                    "--delete1: host1 refused to expunge {} messages: {e}",
                    chunk.len()
                ),
            )),
        }
    }
    if !uidplus {
        errs.push(SyncError::folder(
            ErrorClass::Delete,
            folder,
            format!(
                "--delete1: host1 lacks UIDPLUS (UID EXPUNGE): {} messages copied and flagged \\Deleted, \
                 not expunged (a plain EXPUNGE would also remove what its user flagged \\Deleted)",
                uids.len()
            ),
        ));
    }
    if done > 0 {
        info!(folder, deleted = done, "deleted on host1 (--delete1)");
    }
    Ok(done)
}

/// A side as it is now, after this pass wrote to it: STATUS first, then everything that changed
/// since this pass's SELECT (`since`) read back. Without a usable SELECT status, a full read.
async fn read_back(
    s: &mut Session,
    side: Side,
    raw: &str,
    before: &FolderSide,
    since: Option<SideStatus>,
    opts: &SyncOptions,
    folder: &str,
) -> Result<(Option<SideStatus>, FolderSide), Fail> {
    let now =
        s.delta_status(raw)
            .await
            .map_err(fail(side, ErrorClass::Select, folder, "STATUS"))?;
    let now = SideStatus::from_status(&now);
    let exists = now.map_or(1, |n| n.messages);
    let messages = match since {
        Some(since) => {
            delta::read_changes(
                s,
                side,
                &before.messages,
                &since,
                exists,
                &opts.identity,
                folder,
            )
            .await?
        }
        None => read_side(s, side, exists, &opts.identity, folder).await?,
    };
    Ok((
        now,
        FolderSide {
            messages,
            ..before.clone()
        },
    ))
}

/// A plan on the sides as they are, refined like the pass's own plan.
async fn replan(
    p: &mut Pair,
    side1: &FolderSide,
    side2: &FolderSide,
    plan_opts: &PlanOptions,
    folder: &str,
) -> Result<FolderPlan, Fail> {
    let refined = super::refine::for_planning(&mut p.s1, &mut p.s2, side1, side2, folder).await?;
    let (a, b) = refined.as_ref().map_or((side1, side2), |(a, b)| (a, b));
    Ok(plan_folder(a, b, plan_opts))
}

/// What a pass saw, for [`finish`].
pub(crate) struct Seen<'a> {
    pub(crate) pair: &'a FolderPair,
    pub(crate) ps: &'a PairState,
    pub(crate) info1: SelectInfo,
    pub(crate) side1: FolderSide,
    pub(crate) info2: Option<SelectInfo>,
    pub(crate) side2: FolderSide,
    pub(crate) plan_opts: &'a PlanOptions,
    /// The pass wrote to host2 (flags, copies, deletions).
    pub(crate) wrote2: bool,
}

/// After the copies: `--delete1` on what host2 now confirms, then the saved state (each side the
/// pass wrote to is read back first, see [`super::delta`]).
pub(crate) async fn finish(
    ctx: &Ctx<'_>,
    p: &mut Pair,
    seen: Seen<'_>,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<(), Fail> {
    let opts = ctx.opts;
    let state = ctx.state.as_ref().filter(|s| !s.is_off());
    let Seen {
        pair,
        ps,
        info1,
        side1,
        info2,
        side2,
        plan_opts,
        wrote2,
    } = seen;
    let name1 = pair.name1.as_str();
    let Some(info2) = info2 else {
        return Ok(());
    };
    if state.is_none() && !opts.delete1 {
        return Ok(());
    }
    let sel1 = side_status(&info1);
    let sel2 = side_status(&info2);
    let (rec2, side2) = if wrote2 {
        read_back(
            &mut p.s2,
            Side::Host2,
            &pair.raw2,
            &side2,
            sel2,
            opts,
            name1,
        )
        .await?
    } else {
        (sel2, side2)
    };
    let mut plan = replan(p, &side1, &side2, plan_opts, name1).await?;
    let (mut rec1, mut side1) = (sel1, side1);
    if opts.delete1 {
        let uids = confirmed(&plan);
        if !uids.is_empty() {
            let n = delete1(&mut p.s1, &uids, name1, errs).await?;
            rep.deleted1 += n;
            (rec1, side1) = read_back(
                &mut p.s1,
                Side::Host1,
                &pair.raw1,
                &side1,
                sel1,
                opts,
                name1,
            )
            .await?;
            plan = replan(p, &side1, &side2, plan_opts, name1).await?;
        }
    }
    let Some(st) = state else {
        return Ok(());
    };
    let (Some(rec1), Some(rec2)) = (rec1, rec2) else {
        debug!(
            folder = name1,
            "no UIDVALIDITY/UIDNEXT/MESSAGES from the server: nothing saved"
        );
        return Ok(());
    };
    let clean = plan.is_empty();
    if !clean {
        debug!(
            folder = name1,
            copies = plan.copies.len(),
            flags = plan.flag_updates.len(),
            deletions = plan.deletions2.len(),
            "work left for the next pass"
        );
    }
    let counts = delta::recorded_counts(&side1, &side2, &plan);
    let record = delta::record(st, pair, rec1, Some(rec2), clean, counts);
    let cache = MessageCache {
        map: plan.matched.clone(),
        side1,
        side2,
    };
    st.save(&ps.key, &record, &cache).await;
    debug!(folder = name1, clean, "sync state saved");
    Ok(())
}
