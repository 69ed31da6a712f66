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
    /// Skip host1 messages larger than this many bytes (`--maxsize`).
    pub max_size: Option<u32>,
    /// Only messages with INTERNALDATE at or after this instant (`--maxage`).
    pub not_before: Option<DateTime<FixedOffset>>,
    /// Only messages with INTERNALDATE at or before this instant (`--minage`).
    pub not_after: Option<DateTime<FixedOffset>>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { resync_flags: true, delete2: false, max_size: None, not_before: None, not_after: None }
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
    TooBig { size: u32, max: u32 },
    TooOld,
    TooNew,
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
    todo!("{host1:?}{host2:?}{opts:?}")
}
