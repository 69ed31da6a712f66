//! The pure per-folder plan: given both sides' message metadata and folder facts, decide what to
//! APPEND, which flags to STORE and what would be deleted. No I/O; this is where the sync rules live.
//!
//! Rules (the tests in this module and the property tests pin them down):
//! - Messages are matched by identity key as multisets: host1 holding n copies of a key and host2 m
//!   copies means max(n - m, 0) copies to append. Within a key, pairs prefer equal size, then equal
//!   INTERNALDATE instant.
//! - `\Recent` is never sent; flags host2 cannot keep (not in PERMANENTFLAGS, keywords without `\*`)
//!   are dropped from the copy and reported.
//! - On a re-run, flags of paired host2 messages are replaced by host1's (unless `resync_flags` is off).
//! - Deletions are only listed when asked for (`delete2`).
//!
//! Decisions this module makes (each one has a test):
//! - Pairing inside one key runs in tiers, strongest first: equal size + INTERNALDATE instant +
//!   flags, size + date, size + flags, size, date + flags, date, flags, anything. Flags are the last
//!   tie-breaker, only to avoid needless STOREs; a re-plan after executing a plan then finds the
//!   same pairs (the property tests check it). Host1 messages are taken in UID order, host2
//!   candidates in UID order: the plan is deterministic and independent of input order.
//! - A UID listed twice (a server repeating a FETCH line) counts once.
//! - A host1 message flagged `\Deleted` is not copied (`SkipReason::DeletedOnHost1`): the user
//!   deleted it and only has not expunged yet. `copy_deleted` copies it, flag included.
//! - Skipped host1 messages (too big, outside the age window, `\Deleted`) are out of scope: never
//!   copied and their pair's flags are not touched, but they still pair with their host2 copies,
//!   so those are never deleted by `delete2`.
//! - `delete2` only deletes host2 messages that pass the same size and age window: with
//!   `--maxage 7`, host2 mail older than 7 days is outside the run and kept.
//! - `\Recent` is never sent and is not reported as dropped (it is session state, not a stored flag).
//! - A backslash flag other than the five of RFC 3501 (`\Seen \Answered \Flagged \Deleted
//!   \Draft`) is sent only if host2 lists it; a flag that is not a valid IMAP atom is dropped.
//! - A host1 message whose key is in `skip_keys` is out of scope (`SkipReason::InOtherFolder`),
//!   like the other skips: the executor passes the keys of every other host1 folder when it plans
//!   host1's `\All` folder (Gmail's "All Mail"), which then contributes only the messages no other
//!   folder holds (archived mail), never a second copy of labelled mail.
//! - `delete2` deletions are what the plan lists; whether they may be carried out is
//!   [`delete2_guard`]'s call (host1 folder suddenly empty, or too large a share of host2's
//!   folder: nothing is deleted unless forced).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, FixedOffset};

use crate::identity::IdentityKey;

/// One message as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgInfo {
    pub uid: u32,
    pub key: IdentityKey,
    pub flags: Vec<String>,
    pub internaldate: Option<DateTime<FixedOffset>>,
    pub size: u32,
}

/// One side of a folder pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderSide {
    pub uidvalidity: Option<u32>,
    /// PERMANENTFLAGS (None = not sent: all of `flags` are permanent).
    pub permanent_flags: Option<Vec<String>>,
    /// FLAGS from SELECT.
    pub flags: Vec<String>,
    pub messages: Vec<MsgInfo>,
}

/// Knobs of the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    /// Bring paired host2 messages' flags to host1's (default true; `--noresyncflags` turns off).
    pub resync_flags: bool,
    /// List host2 messages absent from host1 for deletion (`--delete2`).
    pub delete2: bool,
    /// List host2's extra copies of a message for deletion (`--delete2duplicates`): per identity
    /// key, host2 keeps as many copies as host1 has (at least one).
    pub delete2_duplicates: bool,
    /// Skip host1 messages larger than this many bytes (`--maxsize`).
    pub max_size: Option<u32>,
    /// Only messages with INTERNALDATE at or after this instant (`--maxage`).
    pub not_before: Option<DateTime<FixedOffset>>,
    /// Only messages with INTERNALDATE at or before this instant (`--minage`).
    pub not_after: Option<DateTime<FixedOffset>>,
    /// Also copy host1 messages flagged `\Deleted` (with the flag); default false: they are skipped.
    pub copy_deleted: bool,
    /// host1 messages with one of these keys are out of scope ([`SkipReason::InOtherFolder`]).
    /// Set by the executor for host1's `\All` folder only: the keys of every other host1 folder.
    pub skip_keys: Option<Arc<BTreeSet<IdentityKey>>>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            resync_flags: true,
            delete2: false,
            delete2_duplicates: false,
            max_size: None,
            not_before: None,
            not_after: None,
            copy_deleted: false,
            skip_keys: None,
        }
    }
}

/// Append one host1 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyAction {
    pub uid1: u32,
    /// Flags to send with APPEND (already filtered for host2).
    pub flags: Vec<String>,
    /// Flags host1 has that host2 cannot store (reported).
    pub dropped_flags: Vec<String>,
    pub internaldate: Option<DateTime<FixedOffset>>,
    pub size: u32,
}

/// Replace the flags of one host2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagAction {
    pub uid1: u32,
    pub uid2: u32,
    /// The complete new flag set for host2 (replace semantics).
    pub flags: Vec<String>,
    pub dropped_flags: Vec<String>,
}

/// Why a host1 message is not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    TooBig {
        size: u32,
        max: u32,
    },
    TooOld,
    TooNew,
    /// Flagged `\Deleted` on host1 (deleted but not yet expunged there).
    DeletedOnHost1,
    /// In host1's `\All` folder and also in another host1 folder, which copies it.
    InOtherFolder,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub uid1: u32,
    pub reason: SkipReason,
}

/// The plan for one folder pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPlan {
    pub copies: Vec<CopyAction>,
    pub flag_updates: Vec<FlagAction>,
    /// host2 UIDs that `--delete2` would remove.
    pub deletions2: Vec<u32>,
    pub skipped: Vec<Skip>,
    /// Pairs (uid1, uid2) already present on both sides.
    pub matched: Vec<(u32, u32)>,
    /// host2 messages with no host1 counterpart (kept unless delete2).
    pub only_on_host2: usize,
}

impl FolderPlan {
    /// Nothing to do?
    pub fn is_empty(&self) -> bool {
        self.copies.is_empty() && self.flag_updates.is_empty() && self.deletions2.is_empty()
    }
}

/// Compute the plan. Pure and deterministic.
pub fn plan_folder(host1: &FolderSide, host2: &FolderSide, opts: &PlanOptions) -> FolderPlan {
    let filter = FlagFilter::for_host2(host2);
    let mut interner = FlagSetInterner::default();
    let h1 = prepare_side(&host1.messages, &mut interner, |m| filter.filter(&m.flags));
    let h2 = prepare_side(&host2.messages, &mut interner, |m| {
        filter.storable_on_host2(&m.flags)
    });
    let skips: Vec<Option<SkipReason>> = h1.iter().map(|p| skip_reason(p.msg, opts)).collect();
    let pairs = pair_messages(&h1, &h2, &skips);

    let mut plan = FolderPlan::default();
    let mut paired2 = vec![false; h2.len()];
    for ((p1, pair), skip) in h1.iter().zip(&pairs).zip(skips) {
        match (*pair, skip) {
            (Some(j), skip) => {
                paired2[j] = true;
                let p2 = &h2[j];
                plan.matched.push((p1.msg.uid, p2.msg.uid));
                if skip.is_none() && opts.resync_flags && p1.flag_set != p2.flag_set {
                    plan.flag_updates.push(FlagAction {
                        uid1: p1.msg.uid,
                        uid2: p2.msg.uid,
                        flags: p1.flags.kept.clone(),
                        dropped_flags: p1.flags.dropped.clone(),
                    });
                }
            }
            (None, Some(reason)) => plan.skipped.push(Skip {
                uid1: p1.msg.uid,
                reason,
            }),
            (None, None) => plan.copies.push(CopyAction {
                uid1: p1.msg.uid,
                flags: p1.flags.kept.clone(),
                dropped_flags: p1.flags.dropped.clone(),
                internaldate: p1.msg.internaldate,
                size: p1.msg.size,
            }),
        }
    }
    for (p2, _) in h2.iter().zip(&paired2).filter(|(_, paired)| !**paired) {
        plan.only_on_host2 += 1;
        if opts.delete2 && window_skip(p2.msg, opts).is_none() {
            plan.deletions2.push(p2.msg.uid);
        }
    }
    if opts.delete2_duplicates && !opts.delete2 {
        plan.deletions2 = duplicates2(&h2, &paired2, opts);
    }
    plan
}

/// `--delete2duplicates`: host2's unpaired copies of a key host2 holds more than once, keeping as
/// many copies as host1 has, and at least one (the lowest UID) when host1 has none. Inside the
/// run's size and age window only, like `delete2`. Ascending UIDs.
fn duplicates2(h2: &[Prepared], paired2: &[bool], opts: &PlanOptions) -> Vec<u32> {
    let mut by_key: BTreeMap<&IdentityKey, (usize, Vec<usize>)> = BTreeMap::new();
    for (j, p) in h2.iter().enumerate() {
        let e = by_key.entry(&p.msg.key).or_default();
        if paired2[j] {
            e.0 += 1;
        } else {
            e.1.push(j);
        }
    }
    let mut out = Vec::new();
    for (paired, unpaired) in by_key.into_values() {
        // h2 is in UID order, so `unpaired` is too: the first one stays when host1 has no copy.
        let keep = usize::from(paired == 0);
        out.extend(
            unpaired
                .into_iter()
                .skip(keep)
                .filter(|&j| window_skip(h2[j].msg, opts).is_none())
                .map(|j| h2[j].msg.uid),
        );
    }
    out.sort_unstable();
    out
}

// ---------------------------------------------------------------------------------------------
// Flags

/// The five system flags of RFC 3501 that may be stored (`\Recent` is session state).
const STORABLE_SYSTEM_FLAGS: [&str; 5] =
    ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// Which flags host2 can keep in one folder, from its PERMANENTFLAGS (or FLAGS when none was sent).
///
/// Rules: `\Recent` is never sent. With PERMANENTFLAGS, a system flag must be listed and a keyword
/// must be listed or `\*` present. Without PERMANENTFLAGS, FLAGS plays that role; if FLAGS is empty
/// too, every keyword and the five RFC 3501 system flags are allowed. Comparison is
/// case-insensitive. A flag that is not a valid IMAP atom is never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagFilter {
    /// Lower-cased allowed flags; `None` = no list, allow everything storable.
    listed: Option<Vec<String>>,
    /// `\*` present: any new keyword may be created.
    any_keyword: bool,
}

/// Flags split into what host2 gets and what is dropped (reported).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilteredFlags {
    /// Flags to send, host1 spelling, duplicates (case-insensitive) removed, order kept.
    pub kept: Vec<String>,
    /// Flags host2 cannot store (never `\Recent`).
    pub dropped: Vec<String>,
}

impl FlagFilter {
    /// The filter for host2's folder described by `side`.
    pub fn for_host2(side: &FolderSide) -> FlagFilter {
        let list = match &side.permanent_flags {
            Some(perm) => Some(perm),
            None if side.flags.is_empty() => None,
            None => Some(&side.flags),
        };
        match list {
            Some(list) => FlagFilter {
                any_keyword: list.iter().any(|f| f == "\\*"),
                listed: Some(list.iter().map(|f| f.to_ascii_lowercase()).collect()),
            },
            None => FlagFilter {
                listed: None,
                any_keyword: true,
            },
        }
    }

    /// Can host2 store `flag`?
    pub fn allows(&self, flag: &str) -> bool {
        if !is_valid_flag(flag) || is_recent(flag) {
            return false;
        }
        let lower = flag.to_ascii_lowercase();
        let listed = self.listed.as_ref().map(|l| l.contains(&lower));
        if flag.starts_with('\\') {
            listed.unwrap_or_else(|| {
                STORABLE_SYSTEM_FLAGS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(flag))
            })
        } else {
            self.any_keyword || listed.unwrap_or(true)
        }
    }

    /// Split host1's flags into those to send and those to report as dropped.
    pub fn filter(&self, flags: &[String]) -> FilteredFlags {
        let mut out = FilteredFlags::default();
        for flag in flags.iter().filter(|f| !is_recent(f)) {
            let bucket = if self.allows(flag) {
                &mut out.kept
            } else {
                &mut out.dropped
            };
            if !bucket.iter().any(|f| f.eq_ignore_ascii_case(flag)) {
                bucket.push(flag.clone());
            }
        }
        out
    }

    /// The part of a host2 message's flags that takes part in comparisons: what host2 can store.
    fn storable_on_host2(&self, flags: &[String]) -> FilteredFlags {
        FilteredFlags {
            kept: flags.iter().filter(|f| self.allows(f)).cloned().collect(),
            dropped: Vec::new(),
        }
    }
}

fn is_recent(flag: &str) -> bool {
    flag.eq_ignore_ascii_case("\\Recent")
}

/// `flag-keyword = atom`, `flag-extension = "\" atom` (RFC 3501); `\*` is not a flag.
fn is_valid_flag(flag: &str) -> bool {
    let atom = flag.strip_prefix('\\').unwrap_or(flag);
    !atom.is_empty() && atom.bytes().all(is_atom_char)
}

fn is_atom_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !b"(){%*\"\\]".contains(&b)
}

// ---------------------------------------------------------------------------------------------
// Pairing

/// One message with what pairing needs, precomputed.
struct Prepared<'a> {
    msg: &'a MsgInfo,
    /// host1: kept/dropped for host2; host2: the storable flags.
    flags: FilteredFlags,
    /// Interned case-insensitive set of `flags.kept`: equal ids = equal flag sets.
    flag_set: usize,
    /// INTERNALDATE as an instant (seconds, nanoseconds), whatever zone the server wrote it in.
    instant: Option<(i64, u32)>,
}

/// Gives each distinct case-insensitive flag set a small number.
#[derive(Default)]
struct FlagSetInterner {
    ids: HashMap<Vec<String>, usize>,
}

impl FlagSetInterner {
    fn id(&mut self, flags: &[String]) -> usize {
        let mut set: Vec<String> = flags.iter().map(|f| f.to_ascii_lowercase()).collect();
        set.sort();
        set.dedup();
        let next = self.ids.len();
        *self.ids.entry(set).or_insert(next)
    }
}

/// Sort by UID, drop repeated UIDs (first kept), precompute flags and instants.
fn prepare_side<'a>(
    messages: &'a [MsgInfo],
    interner: &mut FlagSetInterner,
    flags_of: impl Fn(&MsgInfo) -> FilteredFlags,
) -> Vec<Prepared<'a>> {
    let mut sorted: Vec<&MsgInfo> = messages.iter().collect();
    sorted.sort_by_key(|m| m.uid); // stable: the first listing of a UID stays first
    sorted.dedup_by_key(|m| m.uid);
    sorted
        .into_iter()
        .map(|msg| {
            let flags = flags_of(msg);
            let flag_set = interner.id(&flags.kept);
            let instant = msg
                .internaldate
                .map(|d| (d.timestamp(), d.timestamp_subsec_nanos()));
            Prepared {
                msg,
                flags,
                flag_set,
                instant,
            }
        })
        .collect()
}

/// Which attributes must be equal for a pair in one tier.
#[derive(Clone, Copy)]
struct Tier {
    size: bool,
    date: bool,
    flags: bool,
}

const fn tier(size: bool, date: bool, flags: bool) -> Tier {
    Tier { size, date, flags }
}

/// Strongest first; see the module doc.
const TIERS: [Tier; 8] = [
    tier(true, true, true),
    tier(true, true, false),
    tier(true, false, true),
    tier(true, false, false),
    tier(false, true, true),
    tier(false, true, false),
    tier(false, false, true),
    tier(false, false, false),
];

type TierKey = (Option<u32>, Option<(i64, u32)>, Option<usize>);

/// The attributes of `p` a tier compares; `None` when the tier needs a date `p` lacks.
fn tier_key(p: &Prepared, t: Tier) -> Option<TierKey> {
    let date = if t.date { Some(p.instant?) } else { None };
    Some((
        t.size.then_some(p.msg.size),
        date,
        t.flags.then_some(p.flag_set),
    ))
}

/// For each host1 message (index into `h1`), the index of its host2 partner.
///
/// Messages in scope (not skipped) pair first, through all tiers; skipped ones then take what is
/// left. Otherwise a skipped message could take the copy just made of an in-scope one, and the
/// next run would copy that one again.
fn pair_messages(
    h1: &[Prepared],
    h2: &[Prepared],
    skips: &[Option<SkipReason>],
) -> Vec<Option<usize>> {
    // Per key: host1 in-scope indices, host1 skipped indices, host2 indices (all in UID order).
    let mut groups: BTreeMap<&IdentityKey, [Vec<usize>; 3]> = BTreeMap::new();
    for (i, p) in h1.iter().enumerate() {
        groups.entry(&p.msg.key).or_default()[usize::from(skips[i].is_some())].push(i);
    }
    for (j, p) in h2.iter().enumerate() {
        if let Some(group) = groups.get_mut(&p.msg.key) {
            group[2].push(j);
        }
    }
    let mut pairs = vec![None; h1.len()];
    let mut taken2 = vec![false; h2.len()];
    for [in_scope, skipped, twos] in groups.values() {
        if twos.is_empty() {
            continue;
        }
        // The common case, one message on each side: nothing to choose between.
        if let ([i], [], [j]) | ([], [i], [j]) =
            (in_scope.as_slice(), skipped.as_slice(), twos.as_slice())
        {
            pairs[*i] = Some(*j);
            taken2[*j] = true;
            continue;
        }
        for ones in [in_scope, skipped] {
            for t in TIERS {
                pair_in_tier(t, ones, twos, h1, h2, &mut pairs, &mut taken2);
            }
        }
    }
    pairs
}

/// Pair still-unpaired messages of one key whose tier attributes are equal, in UID order.
fn pair_in_tier(
    t: Tier,
    ones: &[usize],
    twos: &[usize],
    h1: &[Prepared],
    h2: &[Prepared],
    pairs: &mut [Option<usize>],
    taken2: &mut [bool],
) {
    let mut free: HashMap<TierKey, VecDeque<usize>> = HashMap::new();
    for &j in twos.iter().filter(|&&j| !taken2[j]) {
        if let Some(k) = tier_key(&h2[j], t) {
            free.entry(k).or_default().push_back(j);
        }
    }
    for &i in ones {
        if pairs[i].is_some() {
            continue;
        }
        let partner = tier_key(&h1[i], t)
            .and_then(|k| free.get_mut(&k))
            .and_then(|q| q.pop_front());
        if let Some(j) = partner {
            pairs[i] = Some(j);
            taken2[j] = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Skips

/// Why a host1 message is out of this run's scope, if it is.
fn skip_reason(m: &MsgInfo, opts: &PlanOptions) -> Option<SkipReason> {
    if opts.skip_keys.as_ref().is_some_and(|k| k.contains(&m.key)) {
        return Some(SkipReason::InOtherFolder);
    }
    if !opts.copy_deleted && m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")) {
        return Some(SkipReason::DeletedOnHost1);
    }
    window_skip(m, opts)
}

/// The size and age window, shared by host1 copies and host2 deletions. Dates compare as instants
/// (chrono orders `DateTime<FixedOffset>` by UTC); a message without INTERNALDATE is never too old.
fn window_skip(m: &MsgInfo, opts: &PlanOptions) -> Option<SkipReason> {
    if let Some(max) = opts.max_size.filter(|&max| m.size > max) {
        return Some(SkipReason::TooBig { size: m.size, max });
    }
    let date = m.internaldate?;
    if opts.not_before.is_some_and(|limit| date < limit) {
        return Some(SkipReason::TooOld);
    }
    if opts.not_after.is_some_and(|limit| date > limit) {
        return Some(SkipReason::TooNew);
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Deletion guard

/// Default of [`delete2_guard`]'s share: a plan may delete at most half of a host2 folder.
pub const DEFAULT_DELETE2_MAX_PERCENT: u32 = 50;

/// Why `delete2` deletions are not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteRefusal {
    /// host1's folder lists no message at all while host2's copy has some: more likely a broken
    /// or re-created source folder than a user who emptied it.
    Host1Empty { would_delete: usize },
    /// The plan would delete more than `max_percent` % of host2's folder.
    TooMany {
        would_delete: usize,
        host2_messages: usize,
        max_percent: u32,
    },
}

impl std::fmt::Display for DeleteRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeleteRefusal::Host1Empty { would_delete } => write!(
                f,
                "host1's folder lists no message: {would_delete} host2 messages kept (--force-delete to delete them)"
            ),
            DeleteRefusal::TooMany {
                would_delete,
                host2_messages,
                max_percent,
            } => write!(
                f,
                "would delete {would_delete} of {host2_messages} host2 messages, more than {max_percent} %: nothing deleted (--force-delete to delete them)"
            ),
        }
    }
}

/// The safety guard of `delete2`: may `plan.deletions2` be carried out? `None` = yes.
///
/// Rules: nothing to delete passes; a host1 folder that lists zero messages refuses; deleting more
/// than `max_percent` % of host2's messages (counted once per UID) refuses. `--force-delete` is the
/// caller's business (it skips the guard).
pub fn delete2_guard(
    plan: &FolderPlan,
    host1: &FolderSide,
    host2: &FolderSide,
    max_percent: u32,
) -> Option<DeleteRefusal> {
    let would_delete = plan.deletions2.len();
    if would_delete == 0 {
        return None;
    }
    if host1.messages.is_empty() {
        return Some(DeleteRefusal::Host1Empty { would_delete });
    }
    let host2_messages = host2
        .messages
        .iter()
        .map(|m| m.uid)
        .collect::<BTreeSet<u32>>()
        .len();
    // would_delete / host2_messages > max_percent / 100, in integers.
    if (would_delete as u64) * 100 > u64::from(max_percent) * host2_messages as u64 {
        return Some(DeleteRefusal::TooMany {
            would_delete,
            host2_messages,
            max_percent,
        });
    }
    None
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
