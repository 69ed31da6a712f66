//! One pass over one folder pair: skip it if nothing changed (saved state), else read both sides
//! (in full, or only what changed since the saved state), plan, execute, and save what the pass saw.
//!
//! The planner always gets the complete picture of both sides, whether it came from a full read
//! or from the saved state plus the changes ([`super::delta`]): same inputs, same plan.

use imapfleet_imap::SelectInfo;
use tracing::{debug, info};

use super::delta::{self, PairState};
use super::folder::{
    assumed_new_folder_side, copy_messages, duplicates, fail, folder_side, host2_side,
    message_errors, read_side, update_flags, Fail,
};
use super::{Ctx, Job, Pair, Side};
use crate::identity::IdentityConfig;
use crate::plan::{plan_folder, FolderSide, MsgInfo, SkipReason};
use crate::report::{ErrorClass, FolderReport, SyncError};
use crate::state::cache::MessageCache;
use crate::state::SideStatus;

/// How a side was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    Full,
    /// Saved state plus what changed since.
    Delta,
}

/// Read the selected side: only the changes when the saved side is of the same UIDVALIDITY epoch,
/// else everything. A saved side of another epoch is dropped: its UIDs mean nothing now.
async fn read_side_saved(
    s: &mut imapfleet_imap::Session,
    side: Side,
    info: &SelectInfo,
    saved: Option<(&FolderSide, &SideStatus)>,
    cfg: &IdentityConfig,
    folder: &str,
) -> Result<(Vec<MsgInfo>, Read), Fail> {
    if let Some((cached, since)) = saved {
        if info.uidvalidity == Some(since.uidvalidity) && cached.uidvalidity == info.uidvalidity {
            let msgs =
                delta::read_changes(s, side, &cached.messages, since, info.exists, cfg, folder)
                    .await?;
            return Ok((msgs, Read::Delta));
        }
        info!(
            folder,
            side = side.label(),
            was = since.uidvalidity,
            now = ?info.uidvalidity,
            "UIDVALIDITY changed: saved state dropped, reading the folder in full"
        );
    }
    Ok((
        read_side(s, side, info.exists, cfg, folder).await?,
        Read::Full,
    ))
}

/// One attempt at syncing a folder pair. Counters that describe actions taken (transferred, bytes,
/// flags updated, vanished) accumulate across attempts; counters describing the state are
/// overwritten by the latest attempt.
pub(crate) async fn sync_folder(
    ctx: &Ctx<'_>,
    p: &mut Pair,
    job: &Job,
    rep: &mut FolderReport,
    errs: &mut Vec<SyncError>,
) -> Result<(), Fail> {
    let opts = ctx.opts;
    let pair = &job.pair;
    let name1 = pair.name1.as_str();
    let carried = rep.transferred;
    let state = ctx.state.as_ref().filter(|s| !s.is_off());
    let ps: PairState = match state {
        Some(st) => st.pair(pair).await,
        None => PairState::default(),
    };

    // Fast path: both sides' STATUS equal a clean record: nothing to do, no SELECT.
    if let Some(st) = state {
        if let Some(rec) = st
            .skippable(&ps, pair, opts)
            .filter(|_| !st.was_checked(&ps.key))
        {
            if let Some((s1, s2)) = delta::pair_statuses(p, pair, None).await? {
                let same2 = rec.side2.as_ref().is_some_and(|r| r.unchanged(&s2));
                if rec.side1.unchanged(&s1) && same2 {
                    delta::unchanged_report(rep, rec, &s2);
                    debug!(folder = name1, "unchanged since the last pass: skipped");
                    return Ok(());
                }
            }
        }
    }
    // host1's \All folder plans with the keys of the other folders (read before it is selected).
    let plan_opts = super::allmail::plan_options(ctx, p, job).await?;
    let saved: Option<MessageCache> = match (state, &ps.record) {
        (Some(st), Some(_)) => st.cache(&ps).await,
        _ => None,
    };
    let rec = ps.record.as_ref();
    // APPEND intents of an interrupted batch: host2 must be read so that whatever it stored is seen.
    let pending = super::intents::pending(ps.intents.as_ref());

    // Both sides are read at once (two sessions). host1 is only ever EXAMINEd: read-only, no
    // \Recent or \Seen changes. In a dry run host2 is EXAMINEd too, and a folder still to be
    // created has no host2 side yet.
    let Pair { s1, s2 } = &mut *p;
    let saved1 = saved.as_ref().zip(rec).map(|(c, r)| (&c.side1, &r.side1));
    let saved2 = saved
        .as_ref()
        .zip(rec.and_then(|r| r.side2.as_ref()))
        .map(|(c, r)| (&c.side2, r));
    let read1 = async {
        // SELECTed only when --delete1/--expunge1 ask to write there.
        let write1 = super::finish::writes_host1(opts);
        let info = s1.select(&pair.raw1, !write1).await.map_err(fail(
            Side::Host1,
            ErrorClass::Select,
            name1,
            if write1 { "SELECT" } else { "EXAMINE" },
        ))?;
        let (info, expunged) = super::finish::expunge1(s1, pair, info, opts).await?;
        let (msgs, how) =
            read_side_saved(s1, Side::Host1, &info, saved1, &opts.identity, name1).await?;
        Ok::<_, Fail>((info, msgs, how, expunged))
    };
    let read2 = async {
        if opts.dry_run && pair.create {
            return Ok::<_, Fail>(None);
        }
        let what = if opts.dry_run { "EXAMINE" } else { "SELECT" };
        let info = s2.select(&pair.raw2, opts.dry_run).await.map_err(fail(
            Side::Host2,
            ErrorClass::Select,
            name1,
            what,
        ))?;
        let saved2 = saved2.filter(|(_, since)| {
            let ok =
                pending.is_none_or(|i| super::intents::delta_covers(since, i, info.uidvalidity));
            if !ok {
                debug!(
                    folder = name1,
                    "pending APPEND intents outside the saved host2 state: host2 read in full"
                );
            }
            ok
        });
        let (msgs, how) =
            read_side_saved(s2, Side::Host2, &info, saved2, &opts.identity, name1).await?;
        Ok(Some((info, msgs, how)))
    };
    let (r1, r2) = tokio::join!(read1, read2);
    let (info1, msgs1, how1, expunged1) = r1?;
    rep.expunged1 += expunged1;
    rep.host1_messages = u64::from(info1.exists);
    // Pessimistic until the plan says otherwise: if host2 failed, these are unaccounted for.
    rep.missing_on_host2 = u64::from(info1.exists);
    let (mut side2, info2, how2) = match r2? {
        Some((info2, msgs2, how2)) => {
            if rep.reconnects == 0 {
                rep.host2_messages = u64::from(info2.exists);
            }
            (host2_side(&info2, msgs2), Some(info2), Some(how2))
        }
        None => (assumed_new_folder_side(), None, None),
    };
    rep.delta_read = how1 == Read::Delta || how2 == Some(Read::Delta);
    if let (Some(i), Some(info2)) = (pending, &info2) {
        super::intents::resolve(ctx, &mut p.s2, i, info2, &mut side2, rep, name1).await?;
    }
    if let (Some(st), Some(info2)) = (state, &info2) {
        st.set_select2(&ps.key, info2);
    }
    let side1 = folder_side(&info1, msgs1);
    if let Some(a) = &ctx.allmail {
        a.record(pair, &side1);
    }
    // Keys that headers cannot pair are refined with body digests, for planning only.
    let refined = super::refine::for_planning(&mut p.s1, &mut p.s2, &side1, &side2, name1).await?;
    let (plan1, plan2) = refined.as_ref().map_or((&side1, &side2), |(a, b)| (a, b));
    let plan = plan_folder(plan1, plan2, &plan_opts);
    rep.host1_messages = side1.messages.len() as u64;
    rep.duplicates_host1 = duplicates(&side1.messages);
    rep.skipped = (plan.matched.len() as u64).saturating_sub(carried);
    let count = |r: SkipReason| plan.skipped.iter().filter(|k| k.reason == r).count();
    let deleted = count(SkipReason::DeletedOnHost1);
    let elsewhere = count(SkipReason::InOtherFolder);
    rep.skipped_deleted = deleted as u64;
    rep.skipped_elsewhere = elsewhere as u64;
    rep.skipped_filters = (plan.skipped.len() - deleted - elsewhere) as u64;
    rep.only_on_host2 = plan.only_on_host2 as u64;
    let to_copy_bytes: u64 = plan.copies.iter().map(|c| u64::from(c.size)).sum();
    ctx.progress
        .folder_planned(name1, plan.copies.len(), to_copy_bytes);
    debug!(
        folder = name1,
        copies = plan.copies.len(),
        flag_updates = plan.flag_updates.len(),
        matched = plan.matched.len(),
        delta = rep.delta_read,
        "planned"
    );

    if opts.dry_run {
        // Count what would be done; write nothing (not even the saved state).
        rep.dry_run = true;
        rep.transferred = plan.copies.len() as u64;
        rep.bytes = to_copy_bytes;
        rep.flags_updated = plan.flag_updates.len() as u64;
        rep.flags_dropped = plan
            .copies
            .iter()
            .filter(|c| !c.dropped_flags.is_empty())
            .count() as u64;
        rep.missing_on_host2 = plan.copies.len() as u64;
        for c in &plan.copies {
            ctx.progress
                .message_copied(name1, c.uid1, u64::from(c.size));
        }
        super::deletions::delete2(
            &mut p.s2,
            &plan,
            (plan1, plan2),
            opts,
            name1,
            pair,
            rep,
            errs,
        )
        .await?;
        super::finish::dry_run_host1(&plan, plan1, opts, rep);
        rep.synced = true;
        return Ok(());
    }

    update_flags(&mut p.s2, name1, &plan.flag_updates, rep, errs).await?;
    let errors_before = message_errors(errs);
    let copies = super::api::slice_copies(opts, &plan.copies);
    // With saved state, each APPEND batch is announced (host1 UID, identity key) before it is sent.
    let log = match (state, &info2) {
        (Some(st), Some(_)) if !copies.is_empty() => {
            let wanted: std::collections::HashSet<u32> = copies.iter().map(|c| c.uid1).collect();
            Some(super::intents::IntentLog {
                st,
                key: &ps.key,
                select2: st.select2(&ps.key),
                keys: side1
                    .messages
                    .iter()
                    .filter(|m| wanted.contains(&m.uid))
                    .map(|m| (m.uid, m.key.0.clone()))
                    .collect(),
            })
        }
        _ => None,
    };
    let (appended, vanished) = copy_messages(ctx, p, pair, copies, log.as_ref(), rep, errs).await?;
    rep.vanished_host1 += vanished;
    let missing = (copies.len() as u64).saturating_sub(appended + vanished);
    rep.missing_on_host2 = missing + (plan.copies.len() - copies.len()) as u64;
    let explained = (message_errors(errs) - errors_before) as u64;
    if missing > explained {
        errs.push(SyncError::folder(
            ErrorClass::Incomplete,
            name1,
            format!(
                "{} host1 messages not on host2 with no error to explain it",
                missing - explained
            ),
        ));
    }
    let deleted2 = super::deletions::delete2(
        &mut p.s2,
        &plan,
        (plan1, plan2),
        opts,
        name1,
        pair,
        rep,
        errs,
    )
    .await?;
    rep.synced = true;
    info!(folder = name1, to = %pair.name2, transferred = appended, vanished, missing, deleted2, "folder synced");

    // --delete1 on what host2 now confirms, then save what this pass saw (the sides it wrote to
    // are read back first: see `delta`).
    let wrote2 = !plan.flag_updates.is_empty() || !copies.is_empty() || deleted2 > 0;
    let seen = super::finish::Seen {
        pair,
        ps: &ps,
        info1,
        side1,
        info2,
        side2,
        plan_opts: &plan_opts,
        wrote2,
    };
    super::finish::finish(ctx, p, seen, rep, errs).await
}
