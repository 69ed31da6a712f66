//! Saved sync state: what the last pass saw of each folder pair, so that the next pass can skip an
//! unchanged folder (STATUS only) or read only what changed.
//!
//! Per folder pair the state holds
//! - a [`FolderRecord`]: both sides' UIDVALIDITY, UIDNEXT, MESSAGES and HIGHESTMODSEQ as the pass
//!   recorded them, whether that pass left the folder complete ("clean"), and its counts;
//! - a message cache ([`cache::MessageCache`]): both sides' message metadata (UID, identity key,
//!   flags, INTERNALDATE, size) and the host1-UID -> host2-UID map of the pairs, so that a delta
//!   pass can hand the planner exactly what a full read would;
//! - the pending APPEND intents ([`Intents`]) of a batch in flight (crash safety).
//!
//! The state is an accelerator, never the source of truth. Missing, stale, corrupt or wiped state
//! makes the engine read the folder in full and match by header identity, with the same result.
//! What makes it safe to trust (see docs/ARCHITECTURE.md): a side's status is always recorded
//! *before* the reads that the cache reflects, so any change the cache missed shows as a different
//! status at the next pass.
//!
//! Backends implement [`SyncStateStore`], a small fenced key-value interface (bytes in, bytes
//! out; the encoding lives here): [`file::FileState`] (redb, one file per account under a state
//! directory), [`MemoryState`] (tests), and the fleet's Redis backend (`imapfleet_fleet::syncstate`).
//! Every write carries a fencing token (`0` = none, single-machine runs); a record remembers the
//! largest token that wrote it and refuses a smaller one ([`StateError::Stale`]).

pub mod cache;
pub mod file;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use imapfleet_imap::{Endpoint, StatusInfo};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::IdentityConfig;
use crate::mapping::FolderPair;
use crate::plan::PlanOptions;

/// Version of the records' format; a record of another version is ignored (full read).
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("sync state backend: {0}")]
    Backend(String),
    /// Another process holds the state of this account (a concurrent run of the same account).
    #[error("sync state busy: {0}")]
    Busy(String),
    /// A write with a fencing token older than the newest one that wrote the record.
    #[error("stale fencing token {fence} for {record} (newest {newest})")]
    Stale {
        record: String,
        fence: u64,
        newest: u64,
    },
}

/// What a backend holds for one folder pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFolder {
    /// The encoded [`FolderRecord`].
    pub record: Option<Vec<u8>>,
    /// The encoded [`Intents`] of an APPEND batch in flight.
    pub intents: Option<Vec<u8>>,
    /// Newest fencing token that wrote this pair.
    pub fence: u64,
}

/// A fenced key-value store of folder-pair state, per account. `account` and `pair` are opaque
/// strings ([`account_id`], [`pair_key`]). Every write of a pair is refused with
/// [`StateError::Stale`] when `fence` is smaller than the newest fence that wrote it, and records
/// `fence` otherwise, atomically.
#[async_trait]
pub trait SyncStateStore: Send + Sync {
    /// Every pair of the account: records and intents (not the message caches).
    async fn load(&self, account: &str) -> Result<HashMap<String, StoredFolder>, StateError>;
    /// One pair (default: from [`SyncStateStore::load`]).
    async fn load_pair(&self, account: &str, pair: &str) -> Result<StoredFolder, StateError> {
        Ok(self.load(account).await?.remove(pair).unwrap_or_default())
    }
    /// The message cache of a pair.
    async fn load_cache(&self, account: &str, pair: &str) -> Result<Option<Vec<u8>>, StateError>;
    /// Replace the pending intents of a pair (`None` clears them). Must be durable when it returns.
    async fn put_intents(
        &self,
        account: &str,
        pair: &str,
        intents: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError>;
    /// Write a pair's record and message cache (`None`: delete the cache) and clear its intents,
    /// in one atomic step.
    async fn save(
        &self,
        account: &str,
        pair: &str,
        record: &[u8],
        cache: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError>;
    /// Forget everything about the account.
    async fn wipe(&self, account: &str) -> Result<(), StateError>;
}

/// The state an engine run uses: a store and the fencing token of its writes.
#[derive(Clone)]
pub struct StateHandle {
    pub store: Arc<dyn SyncStateStore>,
    /// Fencing token of this run's writes (the fleet's lease token; 0 for single-machine runs).
    pub fence: u64,
}

impl std::fmt::Debug for StateHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateHandle")
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl StateHandle {
    pub fn new(store: Arc<dyn SyncStateStore>, fence: u64) -> Self {
        StateHandle { store, fence }
    }
}

/// The id of an account pair in a store: hex SHA-256 (first 128 bits) of both logins. The same
/// for the command line and the fleet.
pub fn account_id(ep1: &Endpoint, ep2: &Endpoint) -> String {
    let mut h = Sha256::new();
    for part in [
        ep1.host.as_str(),
        &ep1.port.to_string(),
        &ep1.user,
        ep2.host.as_str(),
        &ep2.port.to_string(),
        &ep2.user,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The key of a folder pair in a store: both raw names, unambiguously joined.
pub fn pair_key(pair: &FolderPair) -> String {
    format!("{}:{}{}", pair.raw1.len(), pair.raw1, pair.raw2)
}

/// One side of a folder as a pass recorded it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideStatus {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
    /// `None`: the server has no CONDSTORE (flag changes cannot be seen from STATUS).
    pub highestmodseq: Option<u64>,
}

impl SideStatus {
    /// From a STATUS answer; `None` when an item the comparison needs is missing.
    pub fn from_status(s: &StatusInfo) -> Option<SideStatus> {
        Some(SideStatus {
            uidvalidity: s.uidvalidity?,
            uidnext: s.uidnext?,
            messages: s.messages?,
            highestmodseq: s.highestmodseq,
        })
    }

    /// Is the folder provably unchanged since this was recorded? Needs HIGHESTMODSEQ on both: without
    /// it a flag change is invisible to STATUS.
    pub fn unchanged(&self, now: &StatusInfo) -> bool {
        self.highestmodseq.is_some()
            && now.highestmodseq == self.highestmodseq
            && now.uidvalidity == Some(self.uidvalidity)
            && now.uidnext == Some(self.uidnext)
            && now.messages == Some(self.messages)
    }
}

/// Counts of the pass that wrote a record, to report an unchanged folder like a full pass would.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCounts {
    pub host1_messages: u64,
    pub host2_messages: u64,
    pub matched: u64,
    pub skipped_filters: u64,
    pub skipped_deleted: u64,
    pub duplicates_host1: u64,
    pub only_on_host2: u64,
}

/// What a pass recorded about one folder pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRecord {
    pub version: u32,
    /// Decoded names, for people reading the store.
    pub name1: String,
    pub name2: String,
    pub side1: SideStatus,
    /// `None`: the host2 folder was not read (it did not exist in a dry run).
    pub side2: Option<SideStatus>,
    /// [`identity_fingerprint`] of the keys in the cache.
    pub identity: String,
    /// [`plan_fingerprint`] of the options the pass planned with.
    pub plan: String,
    /// The pass left nothing to do: every planned action was carried out without error, nothing
    /// missing, nothing deferred. Only a clean record lets an unchanged folder be skipped.
    pub clean: bool,
    pub counts: RecordedCounts,
    /// RFC 3339, when written.
    pub updated: String,
}

impl FolderRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` when the bytes are not a record of this version (treated as no record).
    pub fn decode(bytes: &[u8]) -> Option<FolderRecord> {
        serde_json::from_slice::<FolderRecord>(bytes)
            .ok()
            .filter(|r| r.version == FORMAT_VERSION)
    }
}

/// One message of an APPEND batch in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub uid1: u32,
    /// Identity key (hex SHA-256 of the identity headers).
    pub key: String,
}

/// The APPEND batch in flight of a folder pair, written before the APPEND is sent and cleared once
/// its result is known.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intents {
    /// host2's UIDVALIDITY and UIDNEXT before the batch: the batch, if it landed, is above.
    pub uidvalidity2: Option<u32>,
    pub uidnext2: Option<u32>,
    pub items: Vec<Intent>,
    /// RFC 3339, when written.
    pub written: String,
}

impl Intents {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<Intents> {
        serde_json::from_slice(bytes).ok()
    }
}

/// Fingerprint of what identity keys depend on: a cache made with other identity headers is useless.
pub fn identity_fingerprint(cfg: &IdentityConfig) -> String {
    let mut names: Vec<String> = cfg.headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    names.dedup();
    format!("v1:{}", names.join(","))
}

/// Fingerprint of the plan options that decide what a plan contains. A record written under other
/// options cannot vouch that the folder needs nothing. `--minage` makes every record unusable for
/// skipping (messages enter its window as time passes); `--maxage` does not (they only leave it).
pub fn plan_fingerprint(p: &PlanOptions) -> String {
    format!(
        "v1:resync={}:delete2={}:dups2={}:deleted={}:maxsize={:?}:maxage={}:minage={}",
        p.resync_flags,
        p.delete2,
        p.delete2_duplicates,
        p.copy_deleted,
        p.max_size,
        p.not_before.is_some(),
        p.not_after.map(|d| d.timestamp()).unwrap_or(0),
    )
}

// ---------------------------------------------------------------------------------------------
// In-memory backend (tests, and a process that wants state only for its own lifetime)

#[derive(Default)]
struct MemAccount {
    pairs: HashMap<String, StoredFolder>,
    caches: HashMap<String, Vec<u8>>,
}

/// State in process memory.
#[derive(Default)]
pub struct MemoryState {
    accounts: Mutex<BTreeMap<String, MemAccount>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The fence rule shared by the backends: `Ok(new newest)` or `Stale`.
pub fn check_fence(record: &str, newest: u64, fence: u64) -> Result<u64, StateError> {
    if fence < newest {
        Err(StateError::Stale {
            record: record.to_string(),
            fence,
            newest,
        })
    } else {
        Ok(fence)
    }
}

#[async_trait]
impl SyncStateStore for MemoryState {
    async fn load(&self, account: &str) -> Result<HashMap<String, StoredFolder>, StateError> {
        let a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(a.get(account).map(|m| m.pairs.clone()).unwrap_or_default())
    }

    async fn load_cache(&self, account: &str, pair: &str) -> Result<Option<Vec<u8>>, StateError> {
        let a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        Ok(a.get(account).and_then(|m| m.caches.get(pair).cloned()))
    }

    async fn put_intents(
        &self,
        account: &str,
        pair: &str,
        intents: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let p = a
            .entry(account.to_string())
            .or_default()
            .pairs
            .entry(pair.to_string())
            .or_default();
        p.fence = check_fence(pair, p.fence, fence)?;
        p.intents = intents.map(<[u8]>::to_vec);
        Ok(())
    }

    async fn save(
        &self,
        account: &str,
        pair: &str,
        record: &[u8],
        cache: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let acct = a.entry(account.to_string()).or_default();
        let p = acct.pairs.entry(pair.to_string()).or_default();
        p.fence = check_fence(pair, p.fence, fence)?;
        p.record = Some(record.to_vec());
        p.intents = None;
        match cache {
            Some(c) => {
                acct.caches.insert(pair.to_string(), c.to_vec());
            }
            None => {
                acct.caches.remove(pair);
            }
        }
        Ok(())
    }

    async fn wipe(&self, account: &str) -> Result<(), StateError> {
        let mut a = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        a.remove(account);
        Ok(())
    }
}

/// The contract every backend keeps, for the backends' tests (memory, file, Redis): fenced writes,
/// intents cleared by a save, caches written and removed, wipe.
pub async fn exercise_store(store: &dyn SyncStateStore, account: &str) {
    store.wipe(account).await.expect("wipe");
    assert!(store.load(account).await.unwrap().is_empty());
    let pair = "5:INBOXINBOX";
    store
        .put_intents(account, pair, Some(b"intents-1"), 3)
        .await
        .expect("intents");
    let got = store.load_pair(account, pair).await.unwrap();
    assert_eq!(got.intents.as_deref(), Some(&b"intents-1"[..]));
    assert_eq!(got.fence, 3);
    assert!(got.record.is_none());
    let err = store
        .save(account, pair, b"record-old", Some(b"cache"), 2)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StateError::Stale {
                fence: 2,
                newest: 3,
                ..
            }
        ),
        "{err}"
    );
    let err = store.put_intents(account, pair, None, 0).await.unwrap_err();
    assert!(matches!(err, StateError::Stale { .. }), "{err}");
    store
        .save(account, pair, b"record-1", Some(b"cache-1"), 3)
        .await
        .expect("save");
    let got = store.load_pair(account, pair).await.unwrap();
    assert_eq!(got.record.as_deref(), Some(&b"record-1"[..]));
    assert_eq!(got.intents, None, "a save clears the intents");
    assert_eq!(
        store.load_cache(account, pair).await.unwrap().as_deref(),
        Some(&b"cache-1"[..])
    );
    store
        .save(account, "4:SentSent", b"record-2", None, 7)
        .await
        .expect("save another pair");
    let all = store.load(account).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all["4:SentSent"].fence, 7);
    assert_eq!(all[pair].fence, 3, "fences are per pair");
    store
        .save(account, pair, b"record-3", None, 3)
        .await
        .expect("same fence writes again");
    assert_eq!(store.load_cache(account, pair).await.unwrap(), None);
    store.wipe(account).await.unwrap();
    assert!(store.load(account).await.unwrap().is_empty());
    assert_eq!(store.load_cache(account, pair).await.unwrap(), None);
    store
        .save(account, pair, b"after-wipe", None, 0)
        .await
        .expect("a wiped account starts over at fence 0");
    store.wipe(account).await.unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_keeps_the_contract() {
        exercise_store(&MemoryState::new(), "acct").await;
    }

    #[test]
    fn side_status_needs_modseq_to_vouch() {
        let rec = SideStatus {
            uidvalidity: 7,
            uidnext: 10,
            messages: 9,
            highestmodseq: Some(33),
        };
        let now = StatusInfo {
            messages: Some(9),
            uidnext: Some(10),
            uidvalidity: Some(7),
            unseen: None,
            highestmodseq: Some(33),
        };
        assert!(rec.unchanged(&now));
        for changed in [
            StatusInfo {
                messages: Some(8),
                ..now.clone()
            },
            StatusInfo {
                uidnext: Some(11),
                ..now.clone()
            },
            StatusInfo {
                uidvalidity: Some(8),
                ..now.clone()
            },
            StatusInfo {
                highestmodseq: Some(34),
                ..now.clone()
            },
            StatusInfo {
                highestmodseq: None,
                ..now.clone()
            },
        ] {
            assert!(!rec.unchanged(&changed), "{changed:?}");
        }
        let no_condstore = SideStatus {
            highestmodseq: None,
            ..rec
        };
        assert!(!no_condstore.unchanged(&StatusInfo {
            highestmodseq: None,
            ..now
        }));
    }

    #[test]
    fn records_round_trip_and_other_versions_are_ignored() {
        let r = FolderRecord {
            version: FORMAT_VERSION,
            name1: "INBOX".into(),
            clean: true,
            ..FolderRecord::default()
        };
        assert_eq!(FolderRecord::decode(&r.encode()), Some(r.clone()));
        let old = FolderRecord { version: 0, ..r };
        assert_eq!(FolderRecord::decode(&old.encode()), None);
        assert_eq!(FolderRecord::decode(b"garbage"), None);
    }

    #[test]
    fn pair_keys_are_unambiguous() {
        let p = |a: &str, b: &str| FolderPair {
            raw1: a.into(),
            name1: a.into(),
            raw2: b.into(),
            name2: b.into(),
            create: false,
            special_use: None,
            merged: false,
        };
        assert_ne!(pair_key(&p("ab", "c")), pair_key(&p("a", "bc")));
    }
}
