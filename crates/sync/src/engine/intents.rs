//! Crash safety of APPEND (issue 4, item 4). APPEND is not idempotent: a message sent twice is
//! stored twice. With saved state, every APPEND batch is announced first:
//!
//! 1. Before a batch is sent, its *intents* are written durably ([`IntentLog::record`]): each
//!    message's host1 UID and identity key, with host2's UIDVALIDITY and UIDNEXT as this pass
//!    selected the folder (whatever the batch stores lands at or above that UIDNEXT). One write
//!    per batch: the next batch's intents replace them, and the pass's saved record clears them.
//!    A write refused for a stale fence (another run owns the folder now) stops the folder before
//!    the APPEND is sent.
//! 2. A pass that finds intents pending (the process was killed, or the connection was lost, with
//!    a batch in flight) never trusts saved host2 metadata that could miss the batch: host2 is read
//!    from the saved state plus everything at or above the intents' UIDNEXT, or in full when the
//!    UIDVALIDITY changed or the UIDNEXT is unknown ([`delta_covers`]). The plan then pairs what
//!    landed by header identity and copies only the rest ([`resolve`] counts and logs it).
//! 3. A server may still be completing a batch it had fully received when its client died. So
//!    when some intents have not landed and the intents are younger than
//!    [`super::SyncOptions::intent_grace`], the pass waits out the rest of that grace, then reads
//!    host2 at or above the intents' UIDNEXT again before planning.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use imapfleet_imap::{SelectInfo, Session};
use tracing::{debug, info};

use super::delta::AccountState;
use super::folder::{fail, read_meta, Fail};
use super::{Ctx, Side};
use crate::plan::{FolderSide, MsgInfo};
use crate::report::{ErrorClass, FolderReport};
use crate::state::{Intent, Intents, SideStatus};

/// Most UIDs per header re-fetch while resolving.
const UIDS_PER_FETCH: usize = 500;

/// The intents of one APPEND batch: `select2` is host2's (UIDVALIDITY, UIDNEXT) as this pass
/// selected the folder, `items` the batch's (host1 UID, identity key) in sending order.
pub(crate) fn batch_intents(
    select2: (Option<u32>, Option<u32>),
    items: impl IntoIterator<Item = (u32, String)>,
    now: DateTime<Utc>,
) -> Intents {
    Intents {
        uidvalidity2: select2.0,
        uidnext2: select2.1,
        items: items
            .into_iter()
            .map(|(uid1, key)| Intent { uid1, key })
            .collect(),
        written: now.to_rfc3339(),
    }
}

/// Pending intents that mean something: at least one message.
pub(crate) fn pending(intents: Option<&Intents>) -> Option<&Intents> {
    intents.filter(|i| !i.items.is_empty())
}

/// Can host2 be read as a delta from the saved status `since` when `intents` are pending? Only
/// when the delta read (everything at or above `since.uidnext`, see
/// [`super::delta::read_changes`]) includes every UID the batch may have created: same
/// UIDVALIDITY epoch for the record, the intents and the folder now, and a known intents UIDNEXT
/// not below the saved one.
pub(crate) fn delta_covers(
    since: &SideStatus,
    intents: &Intents,
    uidvalidity_now: Option<u32>,
) -> bool {
    intents.uidvalidity2 == Some(since.uidvalidity)
        && uidvalidity_now == intents.uidvalidity2
        && intents.uidnext2.is_some_and(|n| n >= since.uidnext)
}

/// The lowest host2 UID a pending batch may have stored: its UIDNEXT when the epoch is the same,
/// `None` (anywhere) when the UIDVALIDITY changed or the UIDNEXT is unknown.
pub(crate) fn landing_floor(intents: &Intents, uidvalidity_now: Option<u32>) -> Option<u32> {
    match (intents.uidvalidity2, intents.uidnext2) {
        (Some(v), Some(n)) if uidvalidity_now == Some(v) => Some(n),
        _ => None,
    }
}

/// How many intents are on host2: their keys matched, as a multiset, against the host2 messages
/// at or above `floor` (all of them without a floor).
pub(crate) fn landed(intents: &Intents, side2: &[MsgInfo], floor: Option<u32>) -> usize {
    let mut have: HashMap<&str, usize> = HashMap::new();
    for m in side2.iter().filter(|m| floor.is_none_or(|f| m.uid >= f)) {
        *have.entry(m.key.0.as_str()).or_default() += 1;
    }
    intents
        .items
        .iter()
        .filter(|i| match have.get_mut(i.key.as_str()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}

/// What is left of the grace of intents written at `written` (RFC 3339): a batch the server had
/// fully received may still be stored until then. Unreadable or future timestamps get the whole
/// grace (clocks of fleet workers may differ).
pub(crate) fn grace_left(written: &str, now: DateTime<Utc>, grace: Duration) -> Duration {
    let Ok(at) = DateTime::parse_from_rfc3339(written) else {
        return grace;
    };
    match (now - at.with_timezone(&Utc)).to_std() {
        Ok(age) => grace.saturating_sub(age),
        Err(_) => grace,
    }
}

/// `side2` with every message at or above `floor` (all with `None`) replaced by `fresh`, in UID
/// order.
pub(crate) fn merge_from(side2: &mut Vec<MsgInfo>, floor: Option<u32>, fresh: Vec<MsgInfo>) {
    let mut by_uid: BTreeMap<u32, MsgInfo> = std::mem::take(side2)
        .into_iter()
        .filter(|m| floor.is_some_and(|f| m.uid < f))
        .map(|m| (m.uid, m))
        .collect();
    for m in fresh {
        by_uid.insert(m.uid, m);
    }
    *side2 = by_uid.into_values().collect();
}

/// Writes a folder pass's intents, batch by batch.
pub(crate) struct IntentLog<'a> {
    pub(crate) st: &'a AccountState,
    /// The pair's key in the store.
    pub(crate) key: &'a str,
    /// host2's (UIDVALIDITY, UIDNEXT) at this pass's SELECT.
    pub(crate) select2: (Option<u32>, Option<u32>),
    /// host1 UID -> identity key (header identity, as host2's read will compute it).
    pub(crate) keys: HashMap<u32, String>,
}

impl IntentLog<'_> {
    /// Durably record the batch of host1 UIDs `uids` before it is appended. A stale fence is the
    /// folder's error: nothing may be appended.
    pub(crate) async fn record(
        &self,
        uids: impl IntoIterator<Item = u32>,
        folder: &str,
    ) -> Result<(), Fail> {
        let items = uids.into_iter().map(|u| {
            let key = self.keys.get(&u).cloned().unwrap_or_default();
            (u, key)
        });
        let intents = batch_intents(self.select2, items, Utc::now());
        self.st.put_intents(self.key, Some(&intents), folder).await
    }
}

/// Resolve intents found pending when the folder was read: count those already on host2 (the plan
/// pairs them by identity and copies only the rest), and when some are missing while the intents
/// are still within the grace, wait it out and read host2's possible landing zone again.
pub(crate) async fn resolve(
    ctx: &Ctx<'_>,
    s2: &mut Session,
    intents: &Intents,
    info2: &SelectInfo,
    side2: &mut FolderSide,
    rep: &mut FolderReport,
    folder: &str,
) -> Result<(), Fail> {
    let total = intents.items.len();
    let floor = landing_floor(intents, info2.uidvalidity);
    let mut found = landed(intents, &side2.messages, floor);
    if found < total && !ctx.opts.dry_run {
        let wait = grace_left(&intents.written, Utc::now(), ctx.opts.intent_grace);
        if !wait.is_zero() {
            info!(
                folder,
                pending = total,
                landed = found,
                "interrupted APPEND batch is recent; waiting {wait:?} in case host2 is still storing it"
            );
            tokio::time::sleep(wait).await;
            s2.noop()
                .await
                .map_err(fail(Side::Host2, ErrorClass::Fetch, folder, "NOOP"))?;
            let fresh = read_from(s2, floor, ctx, folder).await?;
            merge_from(&mut side2.messages, floor, fresh);
            found = landed(intents, &side2.messages, floor);
        }
    }
    info!(
        folder,
        pending = total,
        landed = found,
        to_append_again = total - found,
        "pending APPEND intents of an interrupted pass resolved on host2"
    );
    rep.intents_pending += total as u64;
    rep.intents_landed += found as u64;
    Ok(())
}

/// host2's messages at or above `floor` (all without), read now.
async fn read_from(
    s2: &mut Session,
    floor: Option<u32>,
    ctx: &Ctx<'_>,
    folder: &str,
) -> Result<Vec<MsgInfo>, Fail> {
    let criteria = match floor {
        Some(f) => format!("UID {f}:*"),
        None => "ALL".to_string(),
    };
    let mut uids: Vec<u32> = s2
        .uid_search(&criteria)
        .await
        .map_err(fail(Side::Host2, ErrorClass::Fetch, folder, "UID SEARCH"))?
        .into_iter()
        // `n:*` names the highest UID even when it is below n.
        .filter(|u| floor.is_none_or(|f| *u >= f))
        .collect();
    uids.sort_unstable();
    debug!(
        folder,
        n = uids.len(),
        "host2 messages in the intents' landing zone"
    );
    let mut out = Vec::with_capacity(uids.len());
    for chunk in uids.chunks(UIDS_PER_FETCH) {
        out.extend(
            read_meta(
                s2,
                Side::Host2,
                &super::uid_set(chunk),
                &ctx.opts.identity,
                folder,
            )
            .await?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityKey;

    fn msg(uid: u32, key: &str) -> MsgInfo {
        MsgInfo {
            uid,
            key: IdentityKey(key.into()),
            flags: Vec::new(),
            internaldate: None,
            size: 10,
        }
    }

    fn intents(v: Option<u32>, n: Option<u32>, keys: &[&str]) -> Intents {
        batch_intents(
            (v, n),
            keys.iter()
                .enumerate()
                .map(|(i, k)| (i as u32 + 1, k.to_string())),
            Utc::now(),
        )
    }

    fn since(v: u32, n: u32) -> SideStatus {
        SideStatus {
            uidvalidity: v,
            uidnext: n,
            messages: n - 1,
            highestmodseq: Some(5),
        }
    }

    #[test]
    fn batch_intents_keep_uids_keys_and_host2_status() {
        let i = batch_intents(
            (Some(7), Some(40)),
            [(3, "a".to_string()), (9, "b".to_string())],
            Utc::now(),
        );
        assert_eq!((i.uidvalidity2, i.uidnext2), (Some(7), Some(40)));
        assert_eq!(
            i.items,
            vec![
                Intent {
                    uid1: 3,
                    key: "a".into()
                },
                Intent {
                    uid1: 9,
                    key: "b".into()
                }
            ]
        );
        assert_eq!(Intents::decode(&i.encode()), Some(i.clone()));
        assert!(pending(Some(&i)).is_some());
        assert!(pending(Some(&Intents::default())).is_none());
        assert!(pending(None).is_none());
    }

    #[test]
    fn a_delta_read_is_trusted_only_when_it_covers_the_landing_zone() {
        let i = intents(Some(7), Some(40), &["a"]);
        // Saved at UIDNEXT 30, batch announced at 40: reading >= 30 covers >= 40.
        assert!(delta_covers(&since(7, 30), &i, Some(7)));
        assert!(delta_covers(&since(7, 40), &i, Some(7)));
        // A saved UIDNEXT above the intents' (should not happen): >= 41 would miss UID 40.
        assert!(!delta_covers(&since(7, 41), &i, Some(7)));
        // Another epoch on either side, or no UIDNEXT: read host2 in full.
        assert!(!delta_covers(&since(7, 30), &i, Some(8)));
        assert!(!delta_covers(&since(6, 30), &i, Some(7)));
        assert!(!delta_covers(
            &since(7, 30),
            &intents(Some(7), None, &["a"]),
            Some(7)
        ));
        assert!(!delta_covers(
            &since(7, 30),
            &intents(None, Some(40), &["a"]),
            Some(7)
        ));
    }

    #[test]
    fn landed_intents_are_counted_by_key_at_or_above_the_floor() {
        let i = intents(Some(7), Some(40), &["a", "b", "c", "c"]);
        let floor = landing_floor(&i, Some(7));
        assert_eq!(floor, Some(40));
        // "a" below the floor is an older message of the same identity: not this batch's.
        let side2 = vec![msg(5, "a"), msg(40, "b"), msg(41, "c"), msg(42, "x")];
        assert_eq!(landed(&i, &side2, floor), 2);
        // Multiset: two intents of key "c" need two messages.
        let side2 = vec![msg(40, "c"), msg(41, "c"), msg(43, "a"), msg(44, "b")];
        assert_eq!(landed(&i, &side2, floor), 4);
        assert_eq!(landed(&i, &[], floor), 0);
        // Another epoch now: no floor, every message counts.
        assert_eq!(landing_floor(&i, Some(8)), None);
        assert_eq!(landed(&i, &[msg(1, "a"), msg(2, "b")], None), 2);
        assert_eq!(
            landing_floor(&intents(Some(7), None, &["a"]), Some(7)),
            None
        );
    }

    #[test]
    fn the_grace_counts_from_the_intents_write() {
        let grace = Duration::from_secs(2);
        let now = Utc::now();
        let at = |ms: i64| (now - chrono::Duration::milliseconds(ms)).to_rfc3339();
        assert_eq!(
            grace_left(&at(500), now, grace),
            Duration::from_millis(1500)
        );
        assert_eq!(grace_left(&at(2500), now, grace), Duration::ZERO);
        // Future (clock skew) or unreadable: the whole grace.
        assert_eq!(grace_left(&at(-1000), now, grace), grace);
        assert_eq!(grace_left("yesterday", now, grace), grace);
        assert_eq!(grace_left(&at(0), now, Duration::ZERO), Duration::ZERO);
    }

    fn endpoint(host: &str) -> imapfleet_imap::Endpoint {
        imapfleet_imap::Endpoint {
            label: host.into(),
            host: host.into(),
            port: 143,
            security: imapfleet_imap::Security::StartTls,
            user: "alice".into(),
            authuser: None,
            password: imapfleet_imap::Secret::new("pw".to_string()),
            auth: imapfleet_imap::AuthMethod::Auto,
            ca_file: None,
            insecure: false,
            timeout: Duration::from_secs(5),
        }
    }

    fn pair() -> crate::mapping::FolderPair {
        crate::mapping::FolderPair {
            raw1: "INBOX".into(),
            name1: "INBOX".into(),
            raw2: "INBOX".into(),
            name2: "INBOX".into(),
            create: false,
            special_use: None,
            merged: false,
        }
    }

    /// An account state on `store` writing with `fence`.
    fn account(store: &std::sync::Arc<crate::state::MemoryState>, fence: u64) -> AccountState {
        let opts = super::super::SyncOptions {
            state: Some(crate::state::StateHandle::new(store.clone(), fence)),
            ..Default::default()
        };
        AccountState::for_slice(&opts, &endpoint("h1"), &endpoint("h2")).expect("state on")
    }

    #[tokio::test]
    async fn intents_are_written_before_a_batch_and_seen_by_a_retry_until_the_save() {
        use crate::state::SyncStateStore;
        let store = std::sync::Arc::new(crate::state::MemoryState::new());
        let st = account(&store, 4);
        let fp = pair();
        let key = crate::state::pair_key(&fp);
        let log = IntentLog {
            st: &st,
            key: &key,
            select2: (Some(7), Some(40)),
            keys: [(3, "k3".to_string()), (4, "k4".to_string())].into(),
        };
        assert!(log.record([3, 4], "INBOX").await.is_ok());
        // Durable in the store (one write for the batch)...
        let stored = store.load_pair(&st.account, &key).await.unwrap();
        let written = Intents::decode(stored.intents.as_deref().unwrap()).unwrap();
        assert_eq!(
            (written.uidvalidity2, written.uidnext2),
            (Some(7), Some(40))
        );
        let keys: Vec<(u32, &str)> = written
            .items
            .iter()
            .map(|i| (i.uid1, i.key.as_str()))
            .collect();
        assert_eq!(keys, vec![(3, "k3"), (4, "k4")]);
        assert_eq!(stored.fence, 4);
        // ... and seen by this run's next attempt at the folder (after a lost connection).
        let ps = st.pair(&fp).await;
        assert_eq!(ps.intents.as_ref(), Some(&written));
        assert!(st.skippable(&ps, &fp, &Default::default()).is_none());
        // The pass's save clears them, in the store and for the run.
        let rec = crate::state::FolderRecord {
            version: crate::state::FORMAT_VERSION,
            ..Default::default()
        };
        st.save(&key, &rec, &crate::state::cache::MessageCache::default())
            .await;
        assert_eq!(
            store.load_pair(&st.account, &key).await.unwrap().intents,
            None
        );
        assert_eq!(st.pair(&fp).await.intents, None);
    }

    #[tokio::test]
    async fn a_stale_fence_stops_the_folder_before_append() {
        use crate::state::SyncStateStore;
        let store = std::sync::Arc::new(crate::state::MemoryState::new());
        let newer = account(&store, 9);
        let fp = pair();
        let key = crate::state::pair_key(&fp);
        let log = |st| IntentLog {
            st,
            key: &key,
            select2: (Some(1), Some(2)),
            keys: HashMap::new(),
        };
        assert!(log(&newer).record([1], "INBOX").await.is_ok());
        let older = account(&store, 5);
        match log(&older).record([2], "INBOX").await {
            Err(Fail::Folder(e)) => {
                assert_eq!(e.class, ErrorClass::Incomplete);
                assert!(e.message.contains("stopped before APPEND"), "{e}");
            }
            Err(Fail::Connection { .. }) => panic!("a stale fence is not a connection problem"),
            Ok(()) => panic!("a stale fence must refuse the intents"),
        }
        // The newer run's intents are untouched, and the state is still on for the older run
        // (a stale fence is not a backend failure).
        let stored = store.load_pair(&older.account, &key).await.unwrap();
        let kept = Intents::decode(stored.intents.as_deref().unwrap()).unwrap();
        assert_eq!(kept.items[0].uid1, 1);
        assert!(!older.is_off());
    }

    #[test]
    fn a_re_read_replaces_the_landing_zone_only() {
        let mut side2 = vec![msg(3, "a"), msg(40, "stale"), msg(41, "b")];
        merge_from(&mut side2, Some(40), vec![msg(41, "b"), msg(42, "c")]);
        let uids: Vec<(u32, &str)> = side2.iter().map(|m| (m.uid, m.key.0.as_str())).collect();
        assert_eq!(uids, vec![(3, "a"), (41, "b"), (42, "c")]);
        merge_from(&mut side2, None, vec![msg(9, "z")]);
        assert_eq!(side2, vec![msg(9, "z")]);
    }
}
