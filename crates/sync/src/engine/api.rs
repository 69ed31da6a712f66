//! The engine in pieces, for callers that spread one account over many tasks (the fleet):
//!
//! - [`prepare_account`]: log in to both sides, map the folders, CREATE the missing host2 folders,
//!   and hand back the folder pairs;
//! - [`sync_folder_slice`]: one folder pair, at most one budgeted slice of its copies
//!   ([`SliceBudget`]). A folder is re-planned from fresh metadata at every slice, so a continuation
//!   simply calls it again: whatever earlier slices appended is matched and not copied twice.
//!
//! Both wrap the same code as [`super::sync_account`]; nothing here keeps state between calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use imapfleet_imap::Endpoint;
use tokio::sync::Semaphore;
use tracing::info;

use super::{budget_kib, connect_pair, create_folders, map_account, run_folder, Ctx, Job, Pair};
use super::{Progress, SyncOptions};
use crate::mapping::FolderPair;
use crate::plan::CopyAction;
use crate::report::{ErrorClass, FolderReport, SyncError};

/// How much one folder slice may copy: the first copies of the plan up to `max_bytes` and
/// `max_messages` (always at least one message, however large). The rest is deferred to the next
/// slice; [`SliceBudget::deferred`] tells how many copies were left after the last plan.
#[derive(Debug, Clone, Default)]
pub struct SliceBudget {
    pub max_bytes: u64,
    pub max_messages: usize,
    deferred: Arc<AtomicU64>,
}

impl SliceBudget {
    pub fn new(max_bytes: u64, max_messages: usize) -> Self {
        SliceBudget {
            max_bytes,
            max_messages,
            deferred: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Copies of the latest plan that this slice left for a later one.
    pub fn deferred(&self) -> u64 {
        self.deferred.load(Ordering::SeqCst)
    }

    /// The prefix of `copies` this slice carries out; remembers how many are deferred.
    fn cut<'a>(&self, copies: &'a [CopyAction]) -> &'a [CopyAction] {
        let mut bytes = 0u64;
        let mut n = 0usize;
        for c in copies {
            let size = u64::from(c.size);
            if n > 0 && (n >= self.max_messages.max(1) || bytes + size > self.max_bytes) {
                break;
            }
            bytes += size;
            n += 1;
        }
        self.deferred
            .store((copies.len() - n) as u64, Ordering::SeqCst);
        &copies[..n]
    }
}

/// The copies a folder attempt carries out: all of them, or the slice's share.
pub(crate) fn slice_copies<'a>(opts: &SyncOptions, copies: &'a [CopyAction]) -> &'a [CopyAction] {
    match &opts.slice {
        Some(b) => b.cut(copies),
        None => copies,
    }
}

/// An account after [`prepare_account`].
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// Folder pairs to sync, in host1 order.
    pub pairs: Vec<FolderPair>,
    /// host2 folders (raw names) created now (in a dry run: to be created).
    pub created: Vec<String>,
    /// host2 folders (raw names) whose CREATE was refused, with the server's words. The pairs
    /// writing into them cannot be synced (a folder slice reports a `Create` error for them).
    pub create_failed: Vec<(String, String)>,
    /// With saved state (`opts.state`): the pairs (index into `pairs`) that the state proves
    /// unchanged on both sides since the last pass, by the fast path's rule (the same as
    /// [`super::sync_account`]'s: a clean record of the same options, no intent pending, both
    /// sides' STATUS -- from LIST-STATUS where offered -- equal to the record, HIGHESTMODSEQ
    /// included), each with the report a skipped folder gets. They need no slice. No SELECT was
    /// sent for them.
    pub unchanged: Vec<(usize, FolderReport)>,
}

/// Log in to both sides, map the folders, create the missing host2 folders (parents first).
/// Login and mapping failures are the account's errors (classified as in [`super::sync_account`]).
/// With `opts.just_login` the pairs are empty; with `opts.just_folders` they are too, and refused
/// CREATEs are errors. With `opts.state`, the folders the saved state proves unchanged are told
/// apart ([`Prepared::unchanged`]) from the statuses of the listing (or one STATUS per side), so
/// that an unchanged account costs its logins, the listing and nothing else; the state is only
/// read here (busy state -- another process syncs the account -- is the account's error, as in
/// [`super::sync_account`]; any other state failure only means no folder is skipped).
pub async fn prepare_account(
    ep1: &Endpoint,
    ep2: &Endpoint,
    opts: &SyncOptions,
) -> Result<Prepared, Vec<SyncError>> {
    let mut pair = connect_pair(ep1, ep2).await?;
    info!(user1 = %ep1.user, user2 = %ep2.user, "logged in to both sides");
    if opts.just_login {
        pair.logout().await;
        return Ok(Prepared::default());
    }
    let (map, _h2, statuses) = match map_account(&mut pair, opts).await {
        Ok(m) => m,
        Err(e) => {
            pair.logout().await;
            return Err(vec![e]);
        }
    };
    let mut first = Some(pair);
    let creates = create_folders(&mut first, ep1, ep2, &map, opts).await;
    let unchanged = if opts.just_folders {
        Vec::new()
    } else {
        match unchanged_pairs(first.as_mut(), ep1, ep2, &map, &statuses, opts).await {
            Ok(u) => u,
            Err(e) => {
                if let Some(p) = first {
                    p.logout().await;
                }
                return Err(vec![e]);
            }
        }
    };
    if let Some(p) = first {
        p.logout().await;
    }
    let mut failed: Vec<(String, String)> = creates.failed.into_iter().collect();
    failed.sort();
    if opts.just_folders {
        if !failed.is_empty() {
            return Err(failed
                .iter()
                .map(|(raw, why)| {
                    SyncError::account(ErrorClass::Create, format!("host2 CREATE {raw:?}: {why}"))
                })
                .collect());
        }
        return Ok(Prepared {
            pairs: Vec::new(),
            created: creates.created,
            create_failed: Vec::new(),
            unchanged: Vec::new(),
        });
    }
    Ok(Prepared {
        pairs: map.pairs,
        created: creates.created,
        create_failed: failed,
        unchanged,
    })
}

/// The pairs of `map` that the saved state proves unchanged (the engine's fast path,
/// [`super::delta::plan_jobs`]), with their reports; none without `opts.state` or without a
/// session to ask STATUS on.
async fn unchanged_pairs(
    first: Option<&mut Pair>,
    ep1: &Endpoint,
    ep2: &Endpoint,
    map: &crate::mapping::FolderMap,
    statuses: &super::delta::Statuses,
    opts: &SyncOptions,
) -> Result<Vec<(usize, FolderReport)>, SyncError> {
    let Some(st) = super::delta::AccountState::open(opts, ep1, ep2).await? else {
        return Ok(Vec::new());
    };
    let (_changed, skipped) =
        super::delta::plan_jobs(&st, first, map, statuses, opts, &super::NoProgress).await;
    Ok(skipped
        .into_iter()
        .map(|(index, report, _)| (index, report))
        .collect())
}

/// What one folder slice did.
#[derive(Debug, Clone, Default)]
pub struct SliceOutcome {
    /// Counts of this slice alone (`transferred`, `bytes`... are this slice's actions).
    pub report: FolderReport,
    /// Errors of this slice (folder- and message-level; a failed login is a folder error here).
    pub errors: Vec<SyncError>,
    /// Copies left for the next slice (0: the folder is done, as far as this plan saw).
    pub deferred: u64,
}

/// Sync one folder pair with fresh sessions, at most `opts.slice`'s budget of copies (all of them
/// when `opts.slice` is `None`). Reconnects and re-plans after a lost connection like
/// [`super::sync_account`]. `create_failed` is host2's refusal to CREATE the target, if the
/// preparation saw one; `created` says the preparation created the target (for the report).
pub async fn sync_folder_slice(
    ep1: &Endpoint,
    ep2: &Endpoint,
    opts: &SyncOptions,
    pair: &FolderPair,
    created: bool,
    create_failed: Option<&str>,
    progress: &dyn Progress,
) -> SliceOutcome {
    let started = Instant::now();
    let kib = budget_kib(opts);
    let ctx = Ctx {
        ep1,
        ep2,
        opts,
        progress,
        queue: Mutex::new(VecDeque::new()),
        create_failed: create_failed
            .map(|why| [(pair.raw2.clone(), why.to_string())].into_iter().collect())
            .unwrap_or_default(),
        created: if created {
            vec![pair.raw2.clone()]
        } else {
            Vec::new()
        },
        budget: Semaphore::new(kib as usize),
        budget_kib: kib,
        state: super::delta::AccountState::for_slice(opts, ep1, ep2),
        // A slice knows only its pair: for host1's \All folder the pass maps the account again.
        allmail: None,
        logins: tokio::sync::Mutex::new(()),
        pool_full: std::sync::atomic::AtomicBool::new(false),
    };
    let job = Job {
        index: 0,
        pair: pair.clone(),
    };
    let mut sessions: Option<Pair> = None;
    let (mut report, errors) = run_folder(&ctx, &mut sessions, &job).await;
    if let Some(p) = sessions {
        p.logout().await;
    }
    let deferred = if report.synced {
        opts.slice.as_ref().map_or(0, SliceBudget::deferred)
    } else {
        0
    };
    report.elapsed_secs = started.elapsed().as_secs_f64();
    progress.folder_finished(&report);
    SliceOutcome {
        report,
        errors,
        deferred,
    }
}
