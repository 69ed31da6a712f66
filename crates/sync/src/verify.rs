//! Deep verification: per folder, the multiset of body SHA-256s, flags and INTERNALDATE instants.
//!
//! Independent of the planner and of identity headers: every message body is fetched
//! (`BODY.PEEK[]`, streamed in bounded batches, hashed, then dropped) on both sides. For each
//! folder pair (same mapping as the sync) the multisets of digests are compared; for each digest,
//! the multisets of flag sets and of INTERNALDATE instants.
//!
//! Flags are compared case-insensitively as sets, without `\Recent`, and without the flags host2
//! cannot store (its PERMANENTFLAGS), because a faithful copy cannot carry those.
//! Note: messages the sync left out on purpose (`--maxsize`, `--maxage`...) show up as missing.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Mutex;

use tokio::sync::Semaphore;

use imapfleet_imap::{Endpoint, ImapError, MessageMeta, SelectInfo, Session};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::engine::{batches, budget_kib, connect_pair, map_account, Pair, Side, SyncOptions};
use crate::mapping::FolderPair;
use crate::report::SyncError;

/// How many example lines a folder keeps in `details`.
const DETAILS_KEPT: usize = 20;

/// Verification of one folder pair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FolderVerify {
    pub name1: String,
    pub name2: String,
    pub host1_messages: u64,
    pub host2_messages: u64,
    /// host1 messages (by body digest, counted with multiplicity) absent from host2.
    pub missing_on_host2: u64,
    /// host2 messages absent from host1 (allowed; reported).
    pub extra_on_host2: u64,
    /// host1 messages flagged `\Deleted` (pending expunge): out of scope, as for the sync, unless
    /// `copy_deleted` is set. Counted, not compared.
    pub deleted_on_host1: u64,
    /// Messages present on both sides whose flag sets differ.
    pub flag_mismatches: u64,
    /// Messages present on both sides whose INTERNALDATE instants differ.
    pub date_mismatches: u64,
    /// The folder could not be verified (the server's words).
    pub error: Option<String>,
    /// A few examples of what differs (host1 UIDs, digests).
    pub details: Vec<String>,
}

impl FolderVerify {
    pub fn ok(&self) -> bool {
        self.error.is_none()
            && self.missing_on_host2 == 0
            && self.flag_mismatches == 0
            && self.date_mismatches == 0
    }
}

/// Verification of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub folders: Vec<FolderVerify>,
    /// Every host1 message is on host2 with the same flags and date (extra host2 messages allowed).
    pub ok: bool,
}

/// Why verification could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Connecting or logging in failed (class says which side).
    #[error("{0}")]
    Login(SyncError),
    /// Listing or mapping the folders failed.
    #[error("{0}")]
    Listing(SyncError),
}

impl VerifyError {
    /// The classified error (for the exit code).
    pub fn sync_error(&self) -> &SyncError {
        match self {
            VerifyError::Login(e) | VerifyError::Listing(e) => e,
        }
    }
}

/// Verify every folder pair of the account (same mapping as [`crate::engine::sync_account`]).
/// Read-only on host1 (EXAMINE, `BODY.PEEK`); host2 is SELECTed (to learn its true PERMANENTFLAGS;
/// EXAMINE reports none) but never written.
pub async fn verify_account(
    ep1: &Endpoint,
    ep2: &Endpoint,
    opts: &SyncOptions,
) -> Result<VerifyReport, VerifyError> {
    let mut pair = connect_pair(ep1, ep2)
        .await
        .map_err(|mut errs| VerifyError::Login(errs.remove(0)))?;
    let (map, _, _) = match map_account(&mut pair, opts).await {
        Ok(m) => m,
        Err(e) => {
            pair.logout().await;
            return Err(VerifyError::Listing(e));
        }
    };
    let queue: Mutex<VecDeque<(usize, FolderPair)>> =
        Mutex::new(map.pairs.iter().cloned().enumerate().collect());
    let n_workers = opts.connections.max(1).min(map.pairs.len().max(1));
    let budget_kib = budget_kib(opts);
    let ctx = VCtx {
        ep1,
        ep2,
        opts,
        queue,
        budget: Semaphore::new(budget_kib as usize),
        budget_kib,
    };
    let mut first = Some(pair);
    let workers =
        (0..n_workers).map(|i| vworker(&ctx, if i == 0 { first.take() } else { None }, i == 0));
    let mut results: Vec<(usize, FolderVerify)> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    results.sort_by_key(|(i, _)| *i);
    let mut by_index = results.into_iter().peekable();
    let mut folders = Vec::with_capacity(map.pairs.len());
    for (i, p) in map.pairs.iter().enumerate() {
        match by_index.next_if(|(j, _)| *j == i) {
            Some((_, v)) => folders.push(v),
            // A folder nobody could take (all connections refused) is a failure, not a silent pass.
            None => folders.push(FolderVerify {
                name1: p.name1.clone(),
                name2: p.name2.clone(),
                error: Some("not verified: no usable connection".into()),
                ..FolderVerify::default()
            }),
        }
    }
    let ok = folders.iter().all(FolderVerify::ok);
    info!(ok, folders = folders.len(), "verification done");
    Ok(VerifyReport { folders, ok })
}

struct VCtx<'a> {
    ep1: &'a Endpoint,
    ep2: &'a Endpoint,
    opts: &'a SyncOptions,
    queue: Mutex<VecDeque<(usize, FolderPair)>>,
    /// Shared byte budget (KiB permits) for bodies held by all workers, as in the sync.
    budget: Semaphore,
    budget_kib: u32,
}

impl VCtx<'_> {
    fn next(&self) -> Option<(usize, FolderPair)> {
        self.queue.lock().ok()?.pop_front()
    }
}

async fn vworker(
    ctx: &VCtx<'_>,
    mut sessions: Option<Pair>,
    primary: bool,
) -> Vec<(usize, FolderVerify)> {
    let mut done = Vec::new();
    if !primary && sessions.is_none() {
        // An extra worker logs in before it takes a folder: one that took a folder and then could
        // not log in would have to hand it back, and the others may have finished by then (the
        // folder would go unverified). The primary, already logged in, does all the work alone
        // when the server allows no more connections.
        match connect_pair(ctx.ep1, ctx.ep2).await {
            Ok(p) => sessions = Some(p),
            Err(_) => {
                warn!("extra verify worker cannot log in; continuing with fewer connections");
                return done;
            }
        }
    }
    while let Some((i, fp)) = ctx.next() {
        let mut fv = FolderVerify {
            name1: fp.name1.clone(),
            name2: fp.name2.clone(),
            ..FolderVerify::default()
        };
        let mut reconnects = 0;
        loop {
            let p = match sessions.as_mut() {
                Some(p) => p,
                None => match connect_pair(ctx.ep1, ctx.ep2).await {
                    Ok(p) => sessions.insert(p),
                    Err(errs) => {
                        fv.error = Some(
                            errs.iter()
                                .map(|e| e.message.clone())
                                .collect::<Vec<_>>()
                                .join("; "),
                        );
                        break;
                    }
                },
            };
            match verify_folder(p, &fp, ctx).await {
                Ok(v) => {
                    fv = v;
                    break;
                }
                Err(VFail::Connection(side, e)) if reconnects < ctx.opts.max_reconnects => {
                    reconnects += 1;
                    warn!(folder = %fp.name1, side = side.label(), error = %e, "connection lost during verify; retrying");
                    sessions = None;
                }
                Err(VFail::Connection(side, e)) => {
                    sessions = None;
                    fv.error = Some(format!("{}: {e}", side.label()));
                    break;
                }
                Err(VFail::Refused(msg)) => {
                    fv.error = Some(msg);
                    break;
                }
            }
        }
        done.push((i, fv));
    }
    if let Some(p) = sessions {
        p.logout().await;
    }
    done
}

enum VFail {
    Connection(Side, ImapError),
    Refused(String),
}

fn vfail(side: Side, what: &'static str) -> impl FnOnce(ImapError) -> VFail {
    move |e| {
        if e.is_connection() {
            VFail::Connection(side, e)
        } else {
            VFail::Refused(format!("{} {what}: {e}", side.label()))
        }
    }
}

/// What is compared for one message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    flags: BTreeSet<String>,
    /// INTERNALDATE as a Unix instant (zones differ between servers).
    date: Option<i64>,
    uid: u32,
}

type Digest32 = [u8; 32];

/// Which flags host2 can keep, from its SELECT: PERMANENTFLAGS (or FLAGS when absent); `\*` allows
/// any keyword.
#[derive(Debug, Clone)]
pub(crate) struct Storable {
    system: Vec<String>,
    any_keyword: bool,
    keywords: Vec<String>,
}

impl Storable {
    pub(crate) fn from_select(info: &SelectInfo) -> Storable {
        let list = info.permanent_flags.as_ref().unwrap_or(&info.flags);
        let any_keyword = list.iter().any(|f| f == "\\*");
        let (system, keywords): (Vec<String>, Vec<String>) = list
            .iter()
            .filter(|f| *f != "\\*")
            .map(|f| f.to_ascii_lowercase())
            .partition(|f| f.starts_with('\\'));
        Storable {
            system,
            any_keyword,
            keywords,
        }
    }

    /// The comparable form of a flag list: lower-cased, without `\Recent` and unstorable flags.
    pub(crate) fn normalise(&self, flags: &[String]) -> BTreeSet<String> {
        flags
            .iter()
            .map(|f| f.to_ascii_lowercase())
            .filter(|f| f != "\\recent")
            .filter(|f| {
                if f.starts_with('\\') {
                    self.system.contains(f)
                } else {
                    self.any_keyword || self.keywords.contains(f)
                }
            })
            .collect()
    }
}

async fn verify_folder(
    p: &mut Pair,
    fp: &FolderPair,
    ctx: &VCtx<'_>,
) -> Result<FolderVerify, VFail> {
    let mut fv = FolderVerify {
        name1: fp.name1.clone(),
        name2: fp.name2.clone(),
        ..FolderVerify::default()
    };
    let info1 =
        p.s1.select(&fp.raw1, true)
            .await
            .map_err(vfail(Side::Host1, "EXAMINE"))?;
    let info2 = if fp.create {
        None // host2 folder does not exist: everything is missing
    } else {
        Some(
            p.s2.select(&fp.raw2, false)
                .await
                .map_err(vfail(Side::Host2, "SELECT"))?,
        )
    };
    let storable = info2.as_ref().map(Storable::from_select);
    let Pair { s1, s2 } = p;
    // host1 messages the sync leaves out by default (flagged \Deleted) are left out here too.
    let skip_deleted = !ctx.opts.plan.copy_deleted;
    let mut deleted1 = 0u64;
    let h1 = digest_side(
        s1,
        Side::Host1,
        info1.exists,
        ctx,
        storable.as_ref(),
        skip_deleted.then_some(&mut deleted1),
    );
    let h2 = async {
        match &info2 {
            Some(i) => digest_side(s2, Side::Host2, i.exists, ctx, storable.as_ref(), None).await,
            None => Ok(Vec::new()),
        }
    };
    let (d1, d2) = tokio::join!(h1, h2);
    let (d1, d2) = (d1?, d2?);
    fv.deleted_on_host1 = deleted1;
    fv.host1_messages = d1.len() as u64;
    fv.host2_messages = d2.len() as u64;
    compare(&mut fv, d1, d2);
    if info2.is_none() {
        fv.details
            .insert(0, format!("host2 folder {:?} does not exist", fp.name2));
    }
    Ok(fv)
}

/// Digest, normalised flags and date of every message of the selected folder. Bodies are fetched
/// in bounded batches and dropped right after hashing. With `skip_deleted`, messages flagged
/// `\Deleted` are left out and counted there.
async fn digest_side(
    s: &mut Session,
    side: Side,
    exists: u32,
    ctx: &VCtx<'_>,
    storable: Option<&Storable>,
    skip_deleted: Option<&mut u64>,
) -> Result<Vec<(Digest32, Seen)>, VFail> {
    if exists == 0 {
        return Ok(Vec::new());
    }
    // One small header keeps the metadata FETCH cheap; only flags, date and size matter here.
    let mut metas: Vec<MessageMeta> = s
        .fetch_meta("1:*", &["Message-Id".to_string()])
        .await
        .map_err(vfail(side, "FETCH metadata"))?;
    if let Some(count) = skip_deleted {
        let before = metas.len();
        metas.retain(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted")));
        *count = (before - metas.len()) as u64;
    }
    let sizes: Vec<u64> = metas.iter().map(|m| u64::from(m.size)).collect();
    let opts = ctx.opts;
    let batch_bytes = u64::try_from(opts.batch_bytes).unwrap_or(u64::MAX);
    let mut out = Vec::with_capacity(metas.len());
    for r in batches(&sizes, opts.batch_messages, batch_bytes) {
        let estimate: u64 = sizes[r.clone()].iter().sum();
        let kib = estimate.div_ceil(1024).clamp(1, u64::from(ctx.budget_kib));
        // Held until this batch is hashed and dropped.
        let _permit = ctx
            .budget
            .acquire_many(u32::try_from(kib).unwrap_or(ctx.budget_kib))
            .await
            .ok();
        let uids: Vec<u32> = metas[r.clone()].iter().map(|m| m.uid).collect();
        let bodies = s
            .fetch_bodies(&uids)
            .await
            .map_err(vfail(side, "FETCH bodies"))?;
        let by_uid: HashMap<u32, &MessageMeta> = metas[r].iter().map(|m| (m.uid, m)).collect();
        for (uid, body) in bodies {
            // A message expunged meanwhile is simply absent; an unknown UID is ignored.
            let Some(meta) = by_uid.get(&uid) else {
                continue;
            };
            let digest: Digest32 = Sha256::digest(&body).into();
            let flags = match storable {
                Some(st) => st.normalise(&meta.flags),
                None => meta
                    .flags
                    .iter()
                    .map(|f| f.to_ascii_lowercase())
                    .filter(|f| f != "\\recent")
                    .collect(),
            };
            out.push((
                digest,
                Seen {
                    flags,
                    date: meta.internaldate.map(|d| d.timestamp()),
                    uid,
                },
            ));
        }
    }
    Ok(out)
}

/// Multiset difference size |a - b| (a and b sorted).
fn multiset_minus<T: Ord>(a: &[T], b: &[T]) -> Vec<usize> {
    // Returns the indices in `a` left unmatched by a merge walk.
    let (mut i, mut j, mut left) = (0, 0, Vec::new());
    while i < a.len() {
        if j >= b.len() || a[i] < b[j] {
            left.push(i);
            i += 1;
        } else if a[i] > b[j] {
            j += 1;
        } else {
            i += 1;
            j += 1;
        }
    }
    left
}

fn short(d: &Digest32) -> String {
    hex::encode(&d[..6])
}

/// Compare the two sides of a folder into `fv`'s counters and examples.
fn compare(fv: &mut FolderVerify, d1: Vec<(Digest32, Seen)>, d2: Vec<(Digest32, Seen)>) {
    let mut by1: HashMap<Digest32, Vec<Seen>> = HashMap::new();
    let mut by2: HashMap<Digest32, Vec<Seen>> = HashMap::new();
    for (d, s) in d1 {
        by1.entry(d).or_default().push(s);
    }
    for (d, s) in d2 {
        by2.entry(d).or_default().push(s);
    }
    let mut keys1: Vec<&Digest32> = by1.keys().collect();
    keys1.sort();
    let empty = Vec::new();
    for d in keys1 {
        let v1 = &by1[d];
        let v2 = by2.get(d).unwrap_or(&empty);
        let missing = v1.len().saturating_sub(v2.len());
        fv.missing_on_host2 += missing as u64;
        if missing > 0 {
            let uids: Vec<u32> = v1.iter().map(|s| s.uid).collect();
            note(
                fv,
                format!(
                    "missing on host2: body {} ({missing} of host1 uids {uids:?})",
                    short(d)
                ),
            );
        }
        if v2.is_empty() {
            continue;
        }
        // Flags: multiset of flag sets; unmatched host1 sets beyond the missing copies are mismatches.
        let mut f1: Vec<&BTreeSet<String>> = v1.iter().map(|s| &s.flags).collect();
        let mut f2: Vec<&BTreeSet<String>> = v2.iter().map(|s| &s.flags).collect();
        f1.sort();
        f2.sort();
        let bad_flags = multiset_minus(&f1, &f2);
        let n = bad_flags.len().saturating_sub(missing);
        if n > 0 {
            fv.flag_mismatches += n as u64;
            let h2: Vec<&BTreeSet<String>> = f2.clone();
            note(
                fv,
                format!(
                    "flags differ: body {}: host1 {:?} vs host2 {h2:?}",
                    short(d),
                    f1[bad_flags[0]]
                ),
            );
        }
        let mut t1: Vec<Option<i64>> = v1.iter().map(|s| s.date).collect();
        let mut t2: Vec<Option<i64>> = v2.iter().map(|s| s.date).collect();
        t1.sort();
        t2.sort();
        let bad_dates = multiset_minus(&t1, &t2);
        let n = bad_dates.len().saturating_sub(missing);
        if n > 0 {
            fv.date_mismatches += n as u64;
            note(
                fv,
                format!(
                    "INTERNALDATE differs: body {}: host1 {:?} vs host2 {t2:?}",
                    short(d),
                    t1[bad_dates[0]]
                ),
            );
        }
    }
    for (d, v2) in &by2 {
        let n1 = by1.get(d).map_or(0, Vec::len);
        fv.extra_on_host2 += v2.len().saturating_sub(n1) as u64;
    }
}

fn note(fv: &mut FolderVerify, line: String) {
    if fv.details.len() < DETAILS_KEPT {
        fv.details.push(line);
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "++++ Verification (body SHA-256, flags, INTERNALDATE)")?;
        let mut totals = FolderVerify::default();
        for v in &self.folders {
            writeln!(
                f,
                "{} {:?} -> {:?}: host1 {}, host2 {}, missing {}, extra {}, flag mismatches {}, date mismatches {}",
                if v.ok() { "OK    " } else { "FAILED" },
                v.name1,
                v.name2,
                v.host1_messages,
                v.host2_messages,
                v.missing_on_host2,
                v.extra_on_host2,
                v.flag_mismatches,
                v.date_mismatches,
            )?;
            if v.deleted_on_host1 > 0 {
                writeln!(f, "    {} host1 messages flagged \\Deleted left out (--copydeleted includes them)", v.deleted_on_host1)?;
            }
            if let Some(e) = &v.error {
                writeln!(f, "    error: {e}")?;
            }
            for d in &v.details {
                writeln!(f, "    {d}")?;
            }
            totals.host1_messages += v.host1_messages;
            totals.host2_messages += v.host2_messages;
            totals.missing_on_host2 += v.missing_on_host2;
            totals.extra_on_host2 += v.extra_on_host2;
            totals.deleted_on_host1 += v.deleted_on_host1;
            totals.flag_mismatches += v.flag_mismatches;
            totals.date_mismatches += v.date_mismatches;
        }
        let failed = self.folders.iter().filter(|v| !v.ok()).count();
        write!(
            f,
            "Verify {}: {} folders ({failed} failed), host1 {} messages, host2 {}, missing on host2 {}, extra on host2 {}, flag mismatches {}, date mismatches {}, \\Deleted on host1 left out {}",
            if self.ok { "OK" } else { "FAILED" },
            self.folders.len(),
            totals.host1_messages,
            totals.host2_messages,
            totals.missing_on_host2,
            totals.extra_on_host2,
            totals.flag_mismatches,
            totals.date_mismatches,
            totals.deleted_on_host1,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(flags: &[&str], date: i64, uid: u32) -> Seen {
        Seen {
            flags: flags.iter().map(|s| s.to_string()).collect(),
            date: Some(date),
            uid,
        }
    }

    fn fv() -> FolderVerify {
        FolderVerify::default()
    }

    #[test]
    fn identical_sides_are_ok() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let mut v = fv();
        compare(
            &mut v,
            vec![(a, seen(&["\\seen"], 5, 1)), (b, seen(&[], 6, 2))],
            vec![(b, seen(&[], 6, 9)), (a, seen(&["\\seen"], 5, 8))],
        );
        assert!(v.ok(), "{v:?}");
        assert_eq!(v.extra_on_host2, 0);
    }

    #[test]
    fn counts_missing_extra_and_mismatches() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let c = [3u8; 32];
        let mut v = fv();
        compare(
            &mut v,
            vec![
                (a, seen(&["\\seen"], 5, 1)),
                (a, seen(&[], 5, 2)),
                (b, seen(&["\\flagged"], 6, 3)),
            ],
            vec![
                (a, seen(&["\\seen"], 5, 7)),
                (b, seen(&[], 7, 8)),
                (c, seen(&[], 1, 9)),
            ],
        );
        assert_eq!(v.missing_on_host2, 1, "{v:?}");
        assert_eq!(v.extra_on_host2, 1);
        assert_eq!(v.flag_mismatches, 1);
        assert_eq!(v.date_mismatches, 1);
        assert!(!v.ok());
    }

    #[test]
    fn storable_filters_flags() {
        let info = SelectInfo {
            permanent_flags: Some(vec!["\\Seen".into(), "\\Flagged".into(), "\\*".into()]),
            ..SelectInfo::default()
        };
        let st = Storable::from_select(&info);
        let got = st.normalise(&[
            "\\SEEN".into(),
            "\\Recent".into(),
            "\\Indexed".into(),
            "$Label1".into(),
        ]);
        assert_eq!(
            got,
            ["$label1", "\\seen"]
                .iter()
                .map(|s| s.to_string())
                .collect()
        );
        let no_kw = Storable::from_select(&SelectInfo {
            flags: vec!["\\Seen".into()],
            ..SelectInfo::default()
        });
        assert!(no_kw.normalise(&["$x".into()]).is_empty());
    }

    #[test]
    fn report_json_shape() {
        let r = VerifyReport {
            folders: vec![FolderVerify {
                name1: "INBOX".into(),
                ..fv()
            }],
            ok: true,
        };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["ok"], true);
        assert_eq!(j["folders"][0]["missing_on_host2"], 0);
        assert!(r.to_string().contains("Verify OK"));
    }
}
