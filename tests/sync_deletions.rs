//! The deletion options on the real lab, with saved state: `--delete2` and its two guards
//! (host1 folder empty, too large a share) with `--force-delete` and `--dry`, `--delete2duplicates`,
//! `--delete2folders` with `--delete2foldersonly/--delete2foldersbutnot`, `--delete1` (only what
//! host2 confirms), `--expunge1`, and `--delete1 --delete2` refused.
//!
//! Users: user0226..user0232.

use std::sync::Arc;

use imapfleet_imap::{Endpoint, Session, StoreMode};
use imapfleet_mailgen::MailboxSpec;
use imapfleet_sync::engine::{sync_account, FolderDeletion, NoProgress, SyncOptions};
use imapfleet_sync::report::{AccountReport, ErrorClass};
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{
    append_raw, bin, count, fill_host1_with, lab, small_spec, snapshot, state_dir, with_state,
    Snapshot,
};

/// No \Deleted-flagged, duplicate or header-less messages: counts stay exact.
fn spec(seed: u64, folders: usize, messages: usize) -> MailboxSpec {
    MailboxSpec {
        no_message_id_per_mille: 0,
        duplicate_id_per_mille: 0,
        exact_duplicate_per_mille: 0,
        ..small_spec(seed, folders, messages)
    }
}

async fn fill(ep: &Endpoint, spec: &MailboxSpec) {
    fill_host1_with(ep, spec, |mut f| {
        for m in &mut f.messages {
            m.flags.retain(|f| f != "\\Deleted");
        }
        f
    })
    .await;
}

async fn run(ep1: &Endpoint, ep2: &Endpoint, opts: &SyncOptions) -> AccountReport {
    sync_account(ep1, ep2, opts, Arc::new(NoProgress)).await
}

fn msg(tag: &str, i: usize) -> Vec<u8> {
    imapfleet_tests::message(tag, i)
}

fn in_folder(s: &Snapshot, name: &str) -> usize {
    s.get(name).map_or(0, Vec::len)
}

/// Expunge the first `n` messages of a host1 folder (`n = usize::MAX`: all).
async fn expunge_first(ep1: &Endpoint, raw: &str, n: usize) {
    let mut s = Session::connect(ep1).await.unwrap();
    s.select(raw, false).await.unwrap();
    let uids: Vec<u32> = s
        .fetch_meta("1:*", &[])
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .take(n)
        .collect();
    s.uid_store(&uids, StoreMode::Add, &["\\Deleted".to_string()])
        .await
        .unwrap();
    s.expunge(&uids).await.unwrap();
    s.logout().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete2_with_saved_state_and_both_guards() {
    let Some(lab) = lab() else { return };
    let user = "user0226";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    fill(&ep1, &spec(31, 3, 60)).await;
    let dir = state_dir("delete2");
    let mut opts = with_state(&dir);
    assert_eq!(run(&ep1, &ep2, &opts).await.exit_code(), 0);
    let inbox1 = in_folder(&snapshot(&ep1).await, "INBOX");

    // A user adds 3 messages to host2's INBOX: kept without --delete2, deleted with it.
    append_raw(
        &ep2,
        "INBOX",
        &(0..3).map(|i| msg("own", i)).collect::<Vec<_>>(),
    )
    .await;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(in_folder(&snapshot(&ep2).await, "INBOX"), inbox1 + 3);
    opts.plan.delete2 = true;
    let dry = run(
        &ep1,
        &ep2,
        &SyncOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await;
    assert_eq!(
        dry.totals.deleted2, 3,
        "the dry run says what would go:\n{dry}"
    );
    assert_eq!(
        in_folder(&snapshot(&ep2).await, "INBOX"),
        inbox1 + 3,
        "dry run deleted"
    );
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.deleted2, 3, "{r}");
    assert_eq!(in_folder(&snapshot(&ep2).await, "INBOX"), inbox1);
    let again = run(&ep1, &ep2, &opts).await;
    assert!(again.folders.iter().all(|f| f.unchanged), "{again}");

    // Guard 1: a host1 folder that suddenly lists no message deletes nothing...
    expunge_first(&ep1, "INBOX", usize::MAX).await;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.totals.deleted2, 0, "{r}");
    assert!(
        r.errors.iter().any(|e| e.class == ErrorClass::Delete),
        "{r}"
    );
    assert_eq!(in_folder(&snapshot(&ep2).await, "INBOX"), inbox1);
    // ... unless forced.
    opts.force_delete = true;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.totals.deleted2 as usize, inbox1, "{r}");
    assert_eq!(in_folder(&snapshot(&ep2).await, "INBOX"), 0);
    opts.force_delete = false;

    // Guard 2: more than half of a host2 folder deletes nothing (the share is configurable).
    let other = snapshot(&ep1)
        .await
        .into_iter()
        .filter(|(n, v)| n != "INBOX" && v.len() >= 4)
        .max_by_key(|(_, v)| v.len())
        .expect("a folder with messages");
    let n = other.1.len();
    expunge_first(&ep1, &imapfleet_imap::mutf7::encode(&other.0), n * 3 / 4).await;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.totals.deleted2, 0, "{r}");
    assert!(
        r.errors.iter().any(|e| e.class == ErrorClass::Delete),
        "{r}"
    );
    opts.delete2_max_percent = 80;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.deleted2 as usize, n * 3 / 4, "{r}");
    let v = verify_account(&ep1, &ep2, &SyncOptions::default())
        .await
        .unwrap();
    assert!(v.ok, "{v}");
    assert_eq!(
        v.folders.iter().map(|f| f.extra_on_host2).sum::<u64>(),
        0,
        "{v}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete2duplicates_keeps_one_copy_and_host2s_own_mail() {
    let Some(lab) = lab() else { return };
    let user = "user0227";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    append_raw(
        &ep1,
        "INBOX",
        &(0..5).map(|i| msg("m", i)).collect::<Vec<_>>(),
    )
    .await;
    let dir = state_dir("dups2");
    let mut opts = with_state(&dir);
    assert_eq!(run(&ep1, &ep2, &opts).await.exit_code(), 0);
    // host2 gets a second copy of m0 and m1, and two copies of a message of its own.
    append_raw(
        &ep2,
        "INBOX",
        &[msg("m", 0), msg("m", 1), msg("own", 0), msg("own", 0)],
    )
    .await;
    opts.plan.delete2_duplicates = true;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.deleted2, 3, "{r}");
    assert_eq!(
        in_folder(&snapshot(&ep2).await, "INBOX"),
        6,
        "5 + one own copy"
    );
    let again = run(&ep1, &ep2, &opts).await;
    assert_eq!(
        again.totals.deleted2 + again.totals.transferred,
        0,
        "{again}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete2folders_deletes_unmapped_folders_only() {
    let Some(lab) = lab() else { return };
    let user = "user0228";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    fill(&ep1, &spec(41, 4, 40)).await;
    let opts = SyncOptions::default();
    assert_eq!(run(&ep1, &ep2, &opts).await.exit_code(), 0);
    for f in ["Old", "Old/Deep", "Keep me"] {
        append_raw(&ep2, f, &[msg(f, 1)]).await;
    }
    let folders2 = |s: &Snapshot| s.keys().cloned().collect::<Vec<_>>();
    let before = folders2(&snapshot(&ep2).await);
    let rules = FolderDeletion {
        only: vec![],
        but_not: vec!["^Keep".into()],
    };
    let del = SyncOptions {
        delete2_folders: Some(rules.clone()),
        // Syncing one folder must not make the others' host2 folders deletable.
        mapping: imapfleet_sync::mapping::MappingOptions {
            folders: vec!["INBOX".into()],
            ..Default::default()
        },
        delete2_max_percent: 100,
        ..SyncOptions::default()
    };
    let dry = run(
        &ep1,
        &ep2,
        &SyncOptions {
            dry_run: true,
            ..del.clone()
        },
    )
    .await;
    assert_eq!(dry.deleted_folders2, ["Old/Deep", "Old"], "{dry}");
    assert_eq!(
        folders2(&snapshot(&ep2).await),
        before,
        "the dry run deleted"
    );
    // The share guard: 2 of host2's 6 folders (INBOX not counted) is more than 25 %.
    let guarded = run(
        &ep1,
        &ep2,
        &SyncOptions {
            delete2_max_percent: 25,
            ..del.clone()
        },
    )
    .await;
    assert!(guarded.deleted_folders2.is_empty(), "{guarded}");
    assert!(
        guarded.errors.iter().any(|e| e.class == ErrorClass::Delete),
        "{guarded}"
    );
    let r = run(&ep1, &ep2, &del).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.deleted_folders2, ["Old/Deep", "Old"], "{r}");
    let after = folders2(&snapshot(&ep2).await);
    let expected: Vec<String> = before
        .into_iter()
        .filter(|f| f != "Old" && f != "Old/Deep")
        .collect();
    assert_eq!(
        after, expected,
        "INBOX, the mapped folders and 'Keep me' stay"
    );
    // --delete2foldersonly narrows it further: nothing matches now.
    let only = SyncOptions {
        delete2_folders: Some(FolderDeletion {
            only: vec!["^Old".into()],
            but_not: vec![],
        }),
        ..del
    };
    assert!(run(&ep1, &ep2, &only).await.deleted_folders2.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete1_moves_only_what_host2_confirms_and_expunge1_expunges_first() {
    let Some(lab) = lab() else { return };
    let user = "user0229";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    let mut big = msg("big", 0);
    big.extend(std::iter::repeat_n(b'x', 20_000));
    big.extend_from_slice(b"\r\n");
    let small: Vec<Vec<u8>> = (0..6).map(|i| msg("mv", i)).collect();
    append_raw(&ep1, "INBOX", &small).await;
    append_raw(&ep1, "INBOX", &[big]).await;
    // One message flagged \Deleted by host1's user: not copied, not touched by --delete1.
    let mut s = Session::connect(&ep1).await.unwrap();
    s.select("INBOX", false).await.unwrap();
    let uids: Vec<u32> = imapfleet_tests::selected_uids(&mut s).await;
    s.uid_store(&uids[..1], StoreMode::Add, &["\\Deleted".to_string()])
        .await
        .unwrap();
    s.logout().await;
    let dir = state_dir("delete1");
    let opts = SyncOptions {
        delete1: true,
        // The big message is out of scope: never copied, so never deleted from host1.
        plan: imapfleet_sync::plan::PlanOptions {
            max_size: Some(10_000),
            ..Default::default()
        },
        ..with_state(&dir)
    };
    let dry = run(
        &ep1,
        &ep2,
        &SyncOptions {
            dry_run: true,
            ..opts.clone()
        },
    )
    .await;
    assert_eq!(dry.totals.deleted1, 5, "{dry}");
    assert_eq!(count(&snapshot(&ep1).await), 7, "dry run touched host1");
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.transferred, 5, "{r}");
    assert_eq!(r.totals.deleted1, 5, "{r}");
    let left = snapshot(&ep1).await;
    assert_eq!(
        in_folder(&left, "INBOX"),
        2,
        "the big one and the \\Deleted one stay"
    );
    assert_eq!(in_folder(&snapshot(&ep2).await, "INBOX"), 5);
    // New mail is moved on the next pass; the pass after that has nothing to do.
    append_raw(&ep1, "INBOX", &[msg("mv", 10)]).await;
    let r = run(&ep1, &ep2, &opts).await;
    assert_eq!((r.totals.transferred, r.totals.deleted1), (1, 1), "{r}");
    let again = run(&ep1, &ep2, &opts).await;
    assert!(again.folders.iter().all(|f| f.unchanged), "{again}");

    // --expunge1: the \Deleted one goes first (and is not copied).
    let r = run(
        &ep1,
        &ep2,
        &SyncOptions {
            expunge1: true,
            ..opts.clone()
        },
    )
    .await;
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.expunged1, 1, "{r}");
    assert_eq!(
        in_folder(&snapshot(&ep1).await, "INBOX"),
        1,
        "only the big one is left"
    );
    assert_eq!(in_folder(&snapshot(&ep2).await, "INBOX"), 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn delete1_with_delete2_is_a_usage_error() {
    let out = std::process::Command::new(bin())
        .args([
            "sync",
            "--host1",
            "h1",
            "--user1",
            "u",
            "--host2",
            "h2",
            "--user2",
            "u",
            "--delete1",
            "--delete2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = std::process::Command::new(bin())
        .args([
            "sync",
            "--host1",
            "h1",
            "--user1",
            "u",
            "--host2",
            "h2",
            "--user2",
            "u",
            "--force-delete",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--force-delete alone: {out:?}");
}

/// Two host1 folders mapped into one host2 folder: each source's plan sees the other's messages
/// as "only on host2". --delete2 (even forced) and --delete2duplicates must leave that folder
/// alone, say so, and never lose a message host1 has; the other folders still get deletions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete2_never_deletes_in_a_folder_several_host1_folders_map_into() {
    let Some(lab) = lab() else { return };
    let user = "user0232";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    append_raw(
        &ep1,
        "A",
        &(0..4).map(|i| msg("merge-a", i)).collect::<Vec<_>>(),
    )
    .await;
    append_raw(
        &ep1,
        "B",
        &(0..3).map(|i| msg("merge-b", i)).collect::<Vec<_>>(),
    )
    .await;
    append_raw(
        &ep1,
        "C",
        &(0..2).map(|i| msg("merge-c", i)).collect::<Vec<_>>(),
    )
    .await;
    // host2's own message in the separate folder C: --delete2 may remove that one.
    append_raw(&ep2, "C", &[msg("own-c", 0)]).await;
    for state in [false, true] {
        let dir = state_dir("delete2-merged");
        let mut opts = if state {
            with_state(&dir)
        } else {
            SyncOptions::default()
        };
        opts.mapping.f1f2 = vec![("A".into(), "Merged".into()), ("B".into(), "Merged".into())];
        opts.plan.delete2 = true;
        opts.plan.delete2_duplicates = true;
        opts.force_delete = true;
        for pass in 0..2 {
            let r = run(&ep1, &ep2, &opts).await;
            let snap = snapshot(&ep2).await;
            assert_eq!(
                in_folder(&snap, "Merged"),
                7,
                "state {state} pass {pass}: both sources kept:\n{r}"
            );
            assert_eq!(in_folder(&snap, "C"), 2, "C's own message deleted:\n{r}");
            let refusal = r.errors.iter().find(|e| {
                e.class == ErrorClass::Delete && e.message.contains("several host1 folders")
            });
            if pass == 0 && !state {
                // The first pass: host2's own message in C goes. Whether one source's plan saw
                // the other's copies depends on the order the folders ran in.
                assert_eq!(r.totals.deleted2, 1, "{r}");
            } else {
                assert_eq!(r.totals.deleted2, 0, "state {state} pass {pass}:\n{r}");
                assert!(
                    refusal.is_some(),
                    "state {state} pass {pass}: the refusal is told:\n{r}"
                );
                assert_ne!(
                    r.exit_code(),
                    0,
                    "a refused deletion is not a clean run:\n{r}"
                );
            }
        }
        let v = verify_account(&ep1, &ep2, &opts).await.unwrap();
        assert!(v.ok, "every host1 message is on host2:\n{v}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
