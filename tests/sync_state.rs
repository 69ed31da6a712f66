//! Saved sync state on the real lab: a re-run after no change sends no SELECT on either side; a
//! delta pass gives the same host2 as a full comparison; lost or stale state falls back to header
//! identity with the same result and no duplicate.
//!
//! Users: user0220..user0225.

use std::collections::BTreeMap;
use std::sync::Arc;

use imapfleet_imap::{Endpoint, Session, StoreMode};
use imapfleet_mailgen::MailboxSpec;
use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
use imapfleet_sync::report::AccountReport;
use imapfleet_sync::state::file::FileState;
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{
    count, fill_host1_with, lab, small_spec as spec, snapshot, state_dir, with_state,
};

async fn fill(ep: &Endpoint, spec: &MailboxSpec) {
    fill_host1_with(ep, spec, |f| f).await;
}

async fn run(ep1: &Endpoint, ep2: &Endpoint, opts: &SyncOptions) -> AccountReport {
    let r = sync_account(ep1, ep2, opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    r
}

/// Messages of a spec not flagged `\Deleted` (those are not copied).
fn live(spec: &MailboxSpec) -> u64 {
    spec.live_messages() as u64
}

/// SELECTs, EXAMINEs and FETCHes in a report's command counts, per side.
fn reads(r: &AccountReport) -> [(u64, u64); 2] {
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    [&r.commands1, &r.commands2]
        .map(|m| (get(m, "SELECT") + get(m, "EXAMINE"), get(m, "UID FETCH")))
}

/// Change host1 like users do between two passes: `new` messages appended (another seed), the
/// flags of `reflag` messages replaced, `delete` messages expunged (chosen deterministically).
async fn change_host1(ep1: &Endpoint, seed: u64, new: usize, reflag: usize, delete: usize) {
    let mut s = Session::connect(ep1).await.expect("connect host1");
    let folders: Vec<String> = s
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|f| !f.noselect)
        .map(|f| f.raw_name)
        .collect();
    let (mut reflag_left, mut delete_left) = (reflag, delete);
    for (i, raw) in folders.iter().enumerate() {
        let info = s.select(raw, false).await.unwrap();
        if info.exists == 0 {
            continue;
        }
        let uids: Vec<u32> = s
            .fetch_meta("1:*", &["Message-Id".to_string()])
            .await
            .unwrap()
            .into_iter()
            .filter(|m| !m.flags.iter().any(|f| f == "\\Deleted"))
            .map(|m| m.uid)
            .collect();
        // Spread over the folders: half of what is left here, all of it in the last folder.
        let last = i + 1 == folders.len();
        let take = |left: usize| if last { left } else { left.div_ceil(2) };
        let n_del = take(delete_left).min(uids.len() / 3);
        let n_flag = take(reflag_left).min(uids.len() - n_del);
        let (del, rest) = uids.split_at(n_del);
        let flag = &rest[..n_flag];
        if !flag.is_empty() {
            s.uid_store(
                flag,
                StoreMode::Replace,
                &["\\Flagged".to_string(), "Changed".to_string()],
            )
            .await
            .unwrap();
        }
        if !del.is_empty() {
            s.uid_store(del, StoreMode::Add, &["\\Deleted".to_string()])
                .await
                .unwrap();
            s.expunge(del).await.unwrap();
        }
        reflag_left -= n_flag;
        delete_left -= n_del;
    }
    assert_eq!(
        (reflag_left, delete_left),
        (0, 0),
        "host1 is big enough for the changes"
    );
    s.logout().await;
    if new > 0 {
        fill(ep1, &spec(seed, 3, new)).await;
    }
}

/// host2's messages per folder as comparable content: (Message-Id header bytes, flags, size),
/// sorted; UIDs left out.
async fn content(ep: &Endpoint) -> BTreeMap<String, Vec<(Vec<u8>, Vec<String>, u32)>> {
    let mut s = Session::connect(ep).await.unwrap();
    let mut out = BTreeMap::new();
    for f in s.list().await.unwrap() {
        if f.noselect {
            continue;
        }
        let info = s.select(&f.raw_name, true).await.unwrap();
        let mut v = Vec::new();
        if info.exists > 0 {
            for m in s
                .fetch_meta("1:*", &["Message-Id".to_string(), "Subject".to_string()])
                .await
                .unwrap()
            {
                let mut flags: Vec<String> = m
                    .flags
                    .into_iter()
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .collect();
                flags.sort();
                v.push((m.headers, flags, m.size));
            }
        }
        v.sort();
        out.insert(f.name, v);
    }
    s.logout().await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_no_change_sends_no_select_and_a_change_reads_one_folder() {
    let Some(lab) = lab() else { return };
    let user = "user0220";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    fill(&ep1, &MailboxSpec::small()).await;
    let dir = state_dir("norerun");
    let opts = with_state(&dir);

    let first = run(&ep1, &ep2, &opts).await;
    assert!(first.totals.transferred > 0);
    let n = first.folders.len();
    let again = run(&ep1, &ep2, &opts).await;
    assert_eq!(again.totals.transferred, 0);
    assert_eq!(
        again.folders.iter().filter(|f| f.unchanged).count(),
        n,
        "every folder is skipped:\n{again}"
    );
    assert_eq!(
        reads(&again),
        [(0, 0), (0, 0)],
        "no SELECT/EXAMINE/FETCH on either side: {:?} {:?}",
        again.commands1,
        again.commands2
    );
    assert_eq!(again.totals.skipped, first.totals.transferred);
    assert_eq!(again.totals.host1_messages, first.totals.host1_messages);
    assert_eq!(again.totals.skipped_deleted, first.totals.skipped_deleted);

    // One message re-flagged on host1: that folder alone is read again, as a delta.
    let mut s = Session::connect(&ep1).await.unwrap();
    s.select("INBOX", false).await.unwrap();
    let uid = s.fetch_meta("1:*", &[]).await.unwrap()[0].uid;
    s.uid_store(&[uid], StoreMode::Add, &["$Label1".to_string()])
        .await
        .unwrap();
    s.logout().await;
    let third = run(&ep1, &ep2, &opts).await;
    assert_eq!(third.totals.flags_updated, 1, "{third}");
    let changed: Vec<&str> = third
        .folders
        .iter()
        .filter(|f| !f.unchanged)
        .map(|f| f.name1.as_str())
        .collect();
    assert_eq!(changed, ["INBOX"], "{third}");
    assert!(third.folders.iter().any(|f| f.delta_read));
    let [(sel1, _), (sel2, _)] = reads(&third);
    assert_eq!(
        (sel1, sel2),
        (1, 1),
        "{:?} {:?}",
        third.commands1,
        third.commands2
    );
    let v = verify_account(&ep1, &ep2, &SyncOptions::default())
        .await
        .unwrap();
    assert!(v.ok, "{v}");
    // And the pass after that is free again (the state was saved after the STORE).
    let fourth = run(&ep1, &ep2, &opts).await;
    assert_eq!(reads(&fourth), [(0, 0), (0, 0)], "{fourth}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_pass_gives_the_same_host2_as_a_full_comparison() {
    let Some(lab) = lab() else { return };
    let (ud, uf) = ("user0221", "user0222");
    let base = spec(7, 4, 700);
    let dir = state_dir("delta-vs-full");
    let delta_opts = with_state(&dir);
    let full_opts = SyncOptions::default();
    for (user, opts) in [(ud, &delta_opts), (uf, &full_opts)] {
        lab.fresh(user);
        let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
        fill(&ep1, &base).await;
        run(&ep1, &ep2, opts).await;
        run(&ep1, &ep2, opts).await;
        change_host1(&ep1, 8, 100, 250, 40).await;
    }
    let (e1d, e2d) = (lab.endpoint(1, ud), lab.endpoint(2, ud));
    let (e1f, e2f) = (lab.endpoint(1, uf), lab.endpoint(2, uf));
    let delta = run(&e1d, &e2d, &delta_opts).await;
    let full = run(&e1f, &e2f, &full_opts).await;
    assert!(
        delta.folders.iter().all(|f| f.delta_read || f.unchanged),
        "every folder read as a delta:\n{delta}"
    );
    assert!(!full.folders.iter().any(|f| f.delta_read || f.unchanged));
    let new = live(&spec(8, 3, 100));
    assert_eq!(delta.totals.transferred, new, "{delta}");
    assert_eq!(full.totals.transferred, new, "{full}");
    assert_eq!(delta.totals.flags_updated, full.totals.flags_updated);
    assert_eq!(delta.totals.flags_updated, 250, "{delta}");
    assert_eq!(delta.totals.only_on_host2, full.totals.only_on_host2);
    assert_eq!(
        delta.totals.only_on_host2, 40,
        "expunged on host1, kept on host2"
    );
    // The delta pass read only what changed: host1 sent no whole-folder header FETCH for the
    // 700 - 40 messages it had, only FLAGS/SEARCH and the 100 new ones.
    assert_eq!(content(&e2d).await, content(&e2f).await, "same host2");
    let v = verify_account(&e1d, &e2d, &full_opts).await.unwrap();
    assert!(v.ok, "{v}");
    // And both re-runs agree that nothing is left to do.
    let again = run(&e1d, &e2d, &delta_opts).await;
    assert_eq!(again.totals.transferred + again.totals.flags_updated, 0);
    assert!(again.folders.iter().all(|f| f.unchanged), "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_or_stale_state_falls_back_to_identity_without_duplicates() {
    let Some(lab) = lab() else { return };
    let user = "user0223";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    fill(&ep1, &spec(11, 3, 200)).await;
    let dir = state_dir("lost");
    let opts = with_state(&dir);
    run(&ep1, &ep2, &opts).await;
    // Keep the state of this pass aside, then change host1 and sync again.
    let store = FileState::new(&dir).unwrap();
    let account = imapfleet_sync::state::account_id(&ep1, &ep2);
    let file = store.path(&account);
    drop(store);
    let old = std::fs::read(&file).expect("state file after the first pass");
    change_host1(&ep1, 12, 30, 20, 10).await;
    run(&ep1, &ep2, &opts).await;
    let expected = count(&snapshot(&ep2).await);

    // Stale: the state of two passes ago comes back (a restored backup, a lagging replica).
    drop(opts);
    std::fs::write(&file, &old).unwrap();
    let opts = with_state(&dir);
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.totals.transferred, 0, "stale state copied again:\n{r}");
    assert_eq!(count(&snapshot(&ep2).await), expected);

    // Lost: the state directory is deleted, host1 changes again.
    drop(opts);
    std::fs::remove_dir_all(&dir).unwrap();
    change_host1(&ep1, 13, 15, 5, 0).await;
    let opts = with_state(&dir);
    let r = run(&ep1, &ep2, &opts).await;
    let new = live(&spec(13, 3, 15));
    assert_eq!(r.totals.transferred, new, "{r}");
    assert!(!r.folders.iter().any(|f| f.delta_read || f.unchanged));
    assert_eq!(count(&snapshot(&ep2).await) as u64, expected as u64 + new);
    let v = verify_account(&ep1, &ep2, &SyncOptions::default())
        .await
        .unwrap();
    assert!(v.ok, "{v}");
    let again = run(&ep1, &ep2, &opts).await;
    assert!(again.folders.iter().all(|f| f.unchanged), "{again}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `doveadm mailbox update --uid-validity N` on one folder of host `host`.
fn set_uidvalidity(lab: &imapfleet_tests::Lab, host: u8, user: &str, folder: &str, n: u32) {
    let out = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(lab.conf(host))
        .args(["mailbox", "update", "-u", user, "--uid-validity"])
        .arg(n.to_string())
        .arg(folder)
        .output()
        .expect("run doveadm");
    assert!(
        out.status.success(),
        "doveadm: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Recreate a host2 folder with the same messages in reverse order: every UID now names another
/// message than in the old epoch (and the UIDVALIDITY is new).
async fn recreate_reversed(ep: &Endpoint, raw: &str) {
    let mut s = Session::connect(ep).await.unwrap();
    s.select(raw, true).await.unwrap();
    let metas = s.fetch_meta("1:*", &[]).await.unwrap();
    let uids: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    let bodies = s.fetch_bodies(&uids).await.unwrap();
    s.select("INBOX", true).await.unwrap();
    s.delete(raw).await.unwrap();
    s.create(raw).await.unwrap();
    for (m, (_, body)) in metas.iter().zip(&bodies).rev() {
        let flags: Vec<String> = m
            .flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .cloned()
            .collect();
        s.append(
            raw,
            &[imapfleet_imap::AppendRequest {
                flags,
                internaldate: m.internaldate,
                body,
            }],
        )
        .await
        .unwrap();
    }
    s.logout().await;
}

fn searches(m: &BTreeMap<String, u64>) -> u64 {
    m.get("UID SEARCH").copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_uidvalidity_on_either_side_drops_the_saved_folder() {
    let Some(lab) = lab() else { return };
    let user = "user0224";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    fill(&ep1, &spec(21, 4, 120)).await;
    let dir = state_dir("uidvalidity");
    let opts = with_state(&dir);
    run(&ep1, &ep2, &opts).await;
    let expected = count(&snapshot(&ep2).await);

    // host1's INBOX gets a new UIDVALIDITY: read in full (no delta SEARCH), nothing copied.
    set_uidvalidity(&lab, 1, user, "INBOX", 1_000_001);
    let r = run(&ep1, &ep2, &opts).await;
    let inbox = r.folders.iter().find(|f| f.name1 == "INBOX").unwrap();
    assert!(!inbox.unchanged, "{r}");
    assert_eq!(
        searches(&r.commands1),
        0,
        "host1 read in full: {:?}",
        r.commands1
    );
    assert_eq!(r.totals.transferred + r.totals.flags_updated, 0, "{r}");
    assert!(r
        .folders
        .iter()
        .filter(|f| f.name1 != "INBOX")
        .all(|f| f.unchanged));

    // host2's INBOX too.
    set_uidvalidity(&lab, 2, user, "INBOX", 2_000_002);
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(
        searches(&r.commands2),
        0,
        "host2 read in full: {:?}",
        r.commands2
    );
    assert_eq!(r.totals.transferred + r.totals.flags_updated, 0, "{r}");
    assert_eq!(count(&snapshot(&ep2).await), expected);
    let again = run(&ep1, &ep2, &opts).await;
    assert!(again.folders.iter().all(|f| f.unchanged), "{again}");

    // A host2 folder recreated in reverse order: each old UID now names another message. Flags
    // changed on host1 meanwhile must land on the right messages (a STORE on an old-epoch UID
    // would hit the wrong one, and verify would see it).
    let leaf2 = "Projects/2024/Q1";
    recreate_reversed(&ep2, leaf2).await;
    let mut s = Session::connect(&ep1).await.unwrap();
    let info = s.select("Projects.2024.Q1", false).await.unwrap();
    assert!(info.exists >= 4, "the leaf folder has messages");
    let uids: Vec<u32> = s
        .fetch_meta("1:*", &[])
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .take(3)
        .collect();
    s.uid_store(
        &uids,
        StoreMode::Replace,
        &["\\Answered".to_string(), "Epoch".to_string()],
    )
    .await
    .unwrap();
    s.logout().await;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.totals.transferred, 0, "{r}");
    assert_eq!(r.totals.flags_updated, 3, "{r}");
    let v = verify_account(&ep1, &ep2, &SyncOptions::default())
        .await
        .unwrap();
    assert!(v.ok, "{v}");
    assert_eq!(count(&snapshot(&ep2).await), expected);
    let _ = std::fs::remove_dir_all(&dir);
}
