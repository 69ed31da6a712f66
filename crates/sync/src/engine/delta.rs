//! Saved state in the executor: which folders a pass may skip, reading only what changed since the
//! last pass, and writing what this pass saw.
//!
//! The rule that makes the saved state safe to trust: a side's status (UIDVALIDITY, UIDNEXT,
//! MESSAGES, HIGHESTMODSEQ) is always taken *before* the reads that the saved messages reflect.
//! Any change the saved messages miss happened after that status, so the next STATUS differs and
//! the folder is read again. Concretely:
//! - a side this pass did not write: the status is SELECT's, the messages are the reads after it;
//! - a side this pass wrote (APPEND, STORE, EXPUNGE): after the writes, STATUS first, then
//!   everything that changed since this pass's SELECT is read again ([`read_changes`]) and folded
//!   in. What the server holds, not what we believe we did, is saved.
//!
//! A folder is skipped (no SELECT) only when its record is *clean* (the pass that wrote it left
//! nothing to do: a re-plan on the final reads was empty), was written under the same identity
//! headers and plan options, has no APPEND intent pending, and both sides' STATUS equal the
//! record, HIGHESTMODSEQ included (without CONDSTORE a flag change is invisible to STATUS, so such
//! a folder is always read: new UIDs plus a FLAGS scan).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use imapfleet_imap::{Endpoint, SelectInfo, Session, StatusInfo};
use tracing::{debug, warn};

use super::folder::{fail, read_meta, Fail};
use super::{Job, Pair, Progress, Side, SyncOptions};
use crate::identity::IdentityConfig;
use crate::mapping::{FolderMap, FolderPair};
use crate::plan::{FolderPlan, FolderSide, MsgInfo, SkipReason};
use crate::report::{ErrorClass, FolderReport, SyncError};
use crate::state::cache::MessageCache;
use crate::state::{
    account_id, identity_fingerprint, pair_key, plan_fingerprint, FolderRecord, Intents,
    RecordedCounts, SideStatus, StateError, StateHandle, StoredFolder, FORMAT_VERSION,
};

/// What the listing found besides the mapping: every folder's status from LIST-STATUS (raw name
/// -> status) per side, and host1's facts when `--delete2folders` needs them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Statuses {
    pub(crate) one: HashMap<String, StatusInfo>,
    pub(crate) two: HashMap<String, StatusInfo>,
    pub(crate) host1: Option<crate::mapping::SideFacts>,
}

/// The saved state of one account during a run.
pub(crate) struct AccountState {
    pub(crate) handle: StateHandle,
    pub(crate) account: String,
    /// Every pair's stored record and intents, when loaded for the whole account.
    stored: Mutex<Option<HashMap<String, StoredFolder>>>,
    /// Pairs whose fast path was already evaluated (and found changed) by the account's planning.
    checked: Mutex<HashSet<String>>,
    /// host2's UIDVALIDITY and UIDNEXT at this pass's SELECT, per pair (for the intents).
    select2: Mutex<HashMap<String, Select2>>,
    /// The intents this run wrote (`None`: cleared by a save), per pair: they supersede what was
    /// loaded, so that a retry after a lost connection resolves its own interrupted batch.
    intents_now: Mutex<HashMap<String, Option<Intents>>>,
    /// Set after a backend failure: the rest of the run neither reads nor writes state.
    off: AtomicBool,
    /// Fingerprints of this run's options.
    identity_fp: String,
    plan_fp: String,
}

/// host2's UIDVALIDITY and UIDNEXT when this pass selected the folder.
type Select2 = (Option<u32>, Option<u32>);

/// The state of one pair as an attempt found it.
#[derive(Debug, Clone, Default)]
pub(crate) struct PairState {
    pub(crate) key: String,
    pub(crate) record: Option<FolderRecord>,
    pub(crate) intents: Option<Intents>,
}

impl AccountState {
    fn new(handle: StateHandle, ep1: &Endpoint, ep2: &Endpoint, opts: &SyncOptions) -> Self {
        AccountState {
            handle,
            account: account_id(ep1, ep2),
            stored: Mutex::new(None),
            checked: Mutex::new(HashSet::new()),
            select2: Mutex::new(HashMap::new()),
            intents_now: Mutex::new(HashMap::new()),
            off: AtomicBool::new(false),
            identity_fp: identity_fingerprint(&opts.identity),
            plan_fp: run_fingerprint(opts),
        }
    }

    /// The account's state with every pair loaded, or `Ok(None)` without state. A store that is
    /// busy (another process syncs this account) is the account's error; any other failure only
    /// costs full reads (warned).
    pub(crate) async fn open(
        opts: &SyncOptions,
        ep1: &Endpoint,
        ep2: &Endpoint,
    ) -> Result<Option<AccountState>, SyncError> {
        let Some(handle) = opts.state.clone() else {
            return Ok(None);
        };
        let st = AccountState::new(handle, ep1, ep2, opts);
        match st.handle.store.load(&st.account).await {
            Ok(all) => {
                *st.stored.lock().unwrap_or_else(|e| e.into_inner()) = Some(all);
                Ok(Some(st))
            }
            Err(StateError::Busy(why)) => Err(SyncError::account(
                ErrorClass::Usage,
                format!("another run of this account is in progress: {why}"),
            )),
            Err(e) => {
                warn!(error = %e, "sync state unavailable; reading every folder in full");
                Ok(None)
            }
        }
    }

    /// For one folder slice: pairs are loaded one at a time.
    pub(crate) fn for_slice(
        opts: &SyncOptions,
        ep1: &Endpoint,
        ep2: &Endpoint,
    ) -> Option<AccountState> {
        Some(AccountState::new(opts.state.clone()?, ep1, ep2, opts))
    }

    pub(crate) fn is_off(&self) -> bool {
        self.off.load(Ordering::Relaxed)
    }

    fn turn_off(&self, what: &str, e: &StateError) {
        if !self.off.swap(true, Ordering::Relaxed) {
            warn!(error = %e, "sync state: {what} failed; going on without saved state");
        }
    }

    /// The stored state of `pair` (empty when there is none, or the store fails).
    pub(crate) async fn pair(&self, pair: &FolderPair) -> PairState {
        let key = pair_key(pair);
        if self.is_off() {
            return PairState {
                key,
                ..PairState::default()
            };
        }
        let preloaded = self
            .stored
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|m| m.get(&key).cloned().unwrap_or_default());
        let stored = match preloaded {
            Some(s) => s,
            None => match self.handle.store.load_pair(&self.account, &key).await {
                Ok(s) => s,
                Err(e) => {
                    self.turn_off("reading", &e);
                    StoredFolder::default()
                }
            },
        };
        let written = self
            .intents_now
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        PairState {
            record: stored.record.as_deref().and_then(FolderRecord::decode),
            intents: match written {
                Some(now) => now,
                None => stored.intents.as_deref().and_then(Intents::decode),
            },
            key,
        }
    }

    /// The message cache of a pair, if it is usable with this run's identity headers.
    pub(crate) async fn cache(&self, ps: &PairState) -> Option<MessageCache> {
        let rec = ps.record.as_ref()?;
        if self.is_off() || rec.identity != self.identity_fp {
            return None;
        }
        match self.handle.store.load_cache(&self.account, &ps.key).await {
            Ok(bytes) => bytes.as_deref().and_then(MessageCache::decode),
            Err(e) => {
                self.turn_off("reading a message cache", &e);
                None
            }
        }
    }

    /// Can a folder with this record be skipped when both sides are unchanged?
    pub(crate) fn skippable<'r>(
        &self,
        ps: &'r PairState,
        pair: &FolderPair,
        opts: &SyncOptions,
    ) -> Option<&'r FolderRecord> {
        let rec = ps.record.as_ref()?;
        let ok = rec.version == FORMAT_VERSION
            && rec.clean
            && rec.identity == self.identity_fp
            && rec.plan == self.plan_fp
            && rec.side2.is_some()
            && ps.intents.is_none()
            && !pair.create
            && opts.plan.not_after.is_none()
            // host1's \All folder is planned with the other folders' keys: it is always read.
            && (opts.copy_all_folder || !super::allmail::is_all(pair));
        ok.then_some(rec)
    }

    pub(crate) fn mark_checked(&self, key: &str) {
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string());
    }

    pub(crate) fn was_checked(&self, key: &str) -> bool {
        self.checked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    pub(crate) fn set_select2(&self, key: &str, info: &SelectInfo) {
        self.select2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), (info.uidvalidity, info.uidnext));
    }

    pub(crate) fn select2(&self, key: &str) -> (Option<u32>, Option<u32>) {
        self.select2
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
            .unwrap_or((None, None))
    }

    /// Write the intents of the APPEND batch about to be sent (`None` clears). A stale fence means
    /// another run owns this folder now: nothing may be appended.
    pub(crate) async fn put_intents(
        &self,
        key: &str,
        intents: Option<&Intents>,
        folder: &str,
    ) -> Result<(), Fail> {
        if self.is_off() {
            return Ok(());
        }
        let bytes = intents.map(Intents::encode);
        match self
            .handle
            .store
            .put_intents(&self.account, key, bytes.as_deref(), self.handle.fence)
            .await
        {
            Ok(()) => {
                self.remember_intents(key, intents.cloned());
                Ok(())
            }
            Err(e @ StateError::Stale { .. }) => Err(Fail::Folder(SyncError::folder(
                ErrorClass::Incomplete,
                folder,
                format!("{e}: another run owns this folder now; stopped before APPEND"),
            ))),
            Err(e) => {
                self.turn_off("recording APPEND intents", &e);
                Ok(())
            }
        }
    }

    fn remember_intents(&self, key: &str, intents: Option<Intents>) {
        self.intents_now
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), intents);
    }

    /// Save a folder pair's record and cache (which clears its intents). Failures are warned (the
    /// state is an accelerator).
    pub(crate) async fn save(&self, key: &str, rec: &FolderRecord, cache: &MessageCache) {
        if self.is_off() {
            return;
        }
        let bytes = cache.encode();
        if bytes.is_none() {
            debug!(folder = %rec.name1, "message cache not encodable; saving the record only");
        }
        match self
            .handle
            .store
            .save(
                &self.account,
                key,
                &rec.encode(),
                bytes.as_deref(),
                self.handle.fence,
            )
            .await
        {
            Ok(()) => self.remember_intents(key, None),
            Err(e) => match e {
                StateError::Stale { .. } => {
                    warn!(folder = %rec.name1, error = %e, "sync state not saved: another run owns this folder")
                }
                e => self.turn_off("saving", &e),
            },
        }
    }

    pub(crate) fn identity_fp(&self) -> &str {
        &self.identity_fp
    }

    pub(crate) fn plan_fp(&self) -> &str {
        &self.plan_fp
    }
}

/// Fingerprint of everything that decides whether a folder needs work: the plan options and the
/// engine's own deletion options.
pub(crate) fn run_fingerprint(opts: &SyncOptions) -> String {
    format!(
        "{}:delete1={}:expunge1={}",
        plan_fingerprint(&opts.plan),
        opts.delete1,
        opts.expunge1
    )
}

/// The status a SELECT gives, as a record side (`None` without UIDVALIDITY or UIDNEXT).
pub(crate) fn side_status(info: &SelectInfo) -> Option<SideStatus> {
    Some(SideStatus {
        uidvalidity: info.uidvalidity?,
        uidnext: info.uidnext?,
        messages: info.exists,
        highestmodseq: info.highestmodseq,
    })
}

/// The report of a folder skipped by the fast path, from its record.
pub(crate) fn unchanged_report(rep: &mut FolderReport, rec: &FolderRecord, st2: &StatusInfo) {
    let c = &rec.counts;
    rep.synced = true;
    rep.unchanged = true;
    rep.host1_messages = c.host1_messages;
    rep.host2_messages = u64::from(st2.messages.unwrap_or(0));
    rep.skipped = c.matched;
    rep.skipped_filters = c.skipped_filters;
    rep.skipped_deleted = c.skipped_deleted;
    rep.duplicates_host1 = c.duplicates_host1;
    rep.only_on_host2 = c.only_on_host2;
    rep.missing_on_host2 = 0;
}

/// The STATUS of both sides of a pair for the fast path: from LIST-STATUS, else one STATUS each.
/// `None` when a side cannot tell (the folder is then read).
pub(crate) async fn pair_statuses(
    p: &mut Pair,
    pair: &FolderPair,
    known: Option<&Statuses>,
) -> Result<Option<(StatusInfo, StatusInfo)>, Fail> {
    let s1 = match known.and_then(|k| k.one.get(&pair.raw1)) {
        Some(s) => s.clone(),
        None => p.s1.delta_status(&pair.raw1).await.map_err(fail(
            Side::Host1,
            ErrorClass::Select,
            &pair.name1,
            "STATUS",
        ))?,
    };
    let s2 = match known.and_then(|k| k.two.get(&pair.raw2)) {
        Some(s) => s.clone(),
        None => p.s2.delta_status(&pair.raw2).await.map_err(fail(
            Side::Host2,
            ErrorClass::Select,
            &pair.name1,
            "STATUS",
        ))?,
    };
    Ok(Some((s1, s2)))
}

/// The account's folders split into jobs to run and folders the fast path skips (their reports).
/// Jobs come largest host1 folder first. Statuses come from LIST-STATUS, else one STATUS per
/// folder and side on the first session pair (a folder whose STATUS fails is simply run).
pub(crate) async fn plan_jobs(
    st: &AccountState,
    first: Option<&mut Pair>,
    map: &FolderMap,
    statuses: &Statuses,
    opts: &SyncOptions,
    progress: &dyn Progress,
) -> (VecDeque<Job>, Vec<(usize, FolderReport, Vec<SyncError>)>) {
    let mut sized: Vec<(u32, Job)> = Vec::new();
    let mut skipped = Vec::new();
    let mut session = first;
    for (index, fp) in map.pairs.iter().enumerate() {
        let ps = st.pair(fp).await;
        let mut size = statuses
            .one
            .get(&fp.raw1)
            .and_then(|s| s.messages)
            .unwrap_or(0);
        if let Some(rec) = st.skippable(&ps, fp, opts) {
            let got = match session.as_deref_mut() {
                Some(p) => pair_statuses(p, fp, Some(statuses)).await,
                None => Ok(None),
            };
            match got {
                Ok(Some((s1, s2))) => {
                    size = s1.messages.unwrap_or(size);
                    let same2 = rec.side2.as_ref().is_some_and(|r| r.unchanged(&s2));
                    if rec.side1.unchanged(&s1) && same2 {
                        progress.folder_started(&fp.name1, &fp.name2);
                        let mut rep = FolderReport {
                            name1: fp.name1.clone(),
                            name2: fp.name2.clone(),
                            ..FolderReport::default()
                        };
                        unchanged_report(&mut rep, rec, &s2);
                        progress.folder_finished(&rep);
                        debug!(folder = %fp.name1, "unchanged since the last pass: skipped");
                        skipped.push((index, rep, Vec::new()));
                        continue;
                    }
                }
                Ok(None) => {}
                Err(Fail::Connection { .. }) => session = None,
                Err(Fail::Folder(e)) => {
                    debug!(folder = %fp.name1, error = %e, "STATUS failed; the folder is read")
                }
            }
        }
        st.mark_checked(&ps.key);
        sized.push((
            size,
            Job {
                index,
                pair: fp.clone(),
            },
        ));
    }
    sized.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    (sized.into_iter().map(|(_, j)| j).collect(), skipped)
}

/// Read what changed on the selected mailbox since `since` (a status this or an earlier pass
/// recorded), on top of `base` (the messages as they were then): flags changed since its
/// HIGHESTMODSEQ (all flags without CONDSTORE), the UIDs still there (UID SEARCH), and the
/// metadata of every message at or above its UIDNEXT (or missing from `base`). The result is what a
/// full read would give, in UID order.
pub(crate) async fn read_changes(
    s: &mut Session,
    side: Side,
    base: &[MsgInfo],
    since: &SideStatus,
    exists: u32,
    cfg: &IdentityConfig,
    folder: &str,
) -> Result<Vec<MsgInfo>, Fail> {
    if exists == 0 {
        return Ok(Vec::new());
    }
    let modseq = since.highestmodseq.filter(|_| s.has_condstore());
    let flags = s.fetch_flags("1:*", modseq).await.map_err(fail(
        side,
        ErrorClass::Fetch,
        folder,
        "FETCH flags",
    ))?;
    let present: HashSet<u32> = s
        .uid_search("ALL")
        .await
        .map_err(fail(side, ErrorClass::Fetch, folder, "UID SEARCH"))?
        .into_iter()
        .collect();
    let mut by_uid: BTreeMap<u32, MsgInfo> = base
        .iter()
        .filter(|m| m.uid < since.uidnext && present.contains(&m.uid))
        .map(|m| (m.uid, m.clone()))
        .collect();
    for (uid, f) in flags {
        if let Some(m) = by_uid.get_mut(&uid) {
            m.flags = f;
        }
    }
    let mut unknown: Vec<u32> = present
        .iter()
        .copied()
        .filter(|u| *u < since.uidnext && !by_uid.contains_key(u))
        .collect();
    unknown.sort_unstable();
    if !unknown.is_empty() {
        debug!(
            folder,
            side = side.label(),
            n = unknown.len(),
            "UIDs below the recorded UIDNEXT missing from the saved state; reading them"
        );
        for chunk in unknown.chunks(500) {
            for m in read_meta(s, side, &super::uid_set(chunk), cfg, folder).await? {
                by_uid.insert(m.uid, m);
            }
        }
    }
    for m in read_meta(s, side, &format!("{}:*", since.uidnext.max(1)), cfg, folder).await? {
        by_uid.insert(m.uid, m);
    }
    Ok(by_uid.into_values().collect())
}

/// What the record of a finished pass says it saw: counts from the re-plan on the final reads.
pub(crate) fn recorded_counts(
    side1: &FolderSide,
    side2: &FolderSide,
    replan: &FolderPlan,
) -> RecordedCounts {
    let deleted = replan
        .skipped
        .iter()
        .filter(|k| k.reason == SkipReason::DeletedOnHost1)
        .count();
    RecordedCounts {
        host1_messages: side1.messages.len() as u64,
        host2_messages: side2.messages.len() as u64,
        matched: replan.matched.len() as u64,
        skipped_filters: (replan.skipped.len() - deleted) as u64,
        skipped_deleted: deleted as u64,
        duplicates_host1: super::folder::duplicates(&side1.messages),
        only_on_host2: replan.only_on_host2 as u64,
    }
}

/// The record of a pass.
pub(crate) fn record(
    st: &AccountState,
    pair: &FolderPair,
    side1: SideStatus,
    side2: Option<SideStatus>,
    clean: bool,
    counts: RecordedCounts,
) -> FolderRecord {
    FolderRecord {
        version: FORMAT_VERSION,
        name1: pair.name1.clone(),
        name2: pair.name2.clone(),
        side1,
        side2,
        identity: st.identity_fp().to_string(),
        plan: st.plan_fp().to_string(),
        clean,
        counts,
        updated: chrono::Utc::now().to_rfc3339(),
    }
}
