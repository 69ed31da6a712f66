//! The main job on the project's own generated mailbox: one run gives a deep-identical host2, a second
//! run copies nothing, host1 is untouched, and a dry run changes nothing.

use std::sync::Arc;

use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{count, lab, snapshot};

/// Fill host1 with the small preset; returns (all messages, messages not flagged `\Deleted`).
/// Messages flagged `\Deleted` on host1 (pending expunge) are not copied by default (see docs/CLI.md).
async fn fill_generated(ep: &imapfleet_imap::Endpoint) -> (usize, usize) {
    let mut s = imapfleet_imap::Session::connect(ep)
        .await
        .expect("connect host1");
    let spec = imapfleet_mailgen::MailboxSpec::small();
    let all: usize = spec.generate().map(|f| f.messages.len()).sum();
    let live: usize = spec
        .generate()
        .map(|f| {
            f.messages
                .iter()
                .filter(|m| !m.flags.iter().any(|f| f == "\\Deleted"))
                .count()
        })
        .sum();
    assert!(
        live < all,
        "the small preset should hold some \\Deleted messages"
    );
    imapfleet_mailgen::fill(&mut s, '.', spec.generate())
        .await
        .expect("fill host1");
    s.logout().await;
    (all, live)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_mailbox_is_deep_identical_after_one_run_and_the_rerun_copies_nothing() {
    let Some(lab) = lab() else { return };
    let user = "user0010";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    let (generated, live) = fill_generated(&ep1).await;
    let before = snapshot(&ep1).await;
    assert_eq!(count(&before), generated, "host1 holds what was generated");

    let opts = SyncOptions::default();
    let first = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(first.exit_code(), 0, "first run:\n{first}");
    assert_eq!(
        first.totals.transferred as usize, live,
        "every message copied once:\n{first}"
    );
    assert_eq!(first.totals.errors, 0);

    let v = verify_account(&ep1, &ep2, &opts).await.expect("verify");
    assert!(v.ok, "host2 differs from host1 after the first run:\n{v}");

    let second = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(second.exit_code(), 0, "second run:\n{second}");
    assert_eq!(
        second.totals.transferred, 0,
        "the re-run appended something:\n{second}"
    );
    assert_eq!(
        second.totals.flags_updated, 0,
        "the re-run changed flags:\n{second}"
    );
    let v = verify_account(&ep1, &ep2, &opts).await.expect("verify");
    assert!(v.ok, "host2 differs after the re-run:\n{v}");
    assert_eq!(
        count(&snapshot(&ep2).await),
        live,
        "host2 has exactly host1's live messages"
    );

    // host1 was only read: same UIDs, same flags (no \Seen added by fetching bodies).
    assert_eq!(
        snapshot(&ep1).await,
        before,
        "host1 changed during the sync"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_on_either_side() {
    let Some(lab) = lab() else { return };
    let user = "user0011";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    let (_, live) = fill_generated(&ep1).await;
    let before1 = snapshot(&ep1).await;
    let before2 = snapshot(&ep2).await;

    let opts = SyncOptions {
        dry_run: true,
        ..SyncOptions::default()
    };
    let r = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.totals.errors, 0, "{r}");
    assert!(r.dry_run);
    assert_eq!(
        r.totals.transferred as usize, live,
        "the dry run says what it would copy:\n{r}"
    );
    assert_eq!(snapshot(&ep1).await, before1, "dry run changed host1");
    assert_eq!(
        snapshot(&ep2).await,
        before2,
        "dry run changed host2 (folders or messages)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_changed_on_host2_are_brought_back_to_host1s() {
    let Some(lab) = lab() else { return };
    let user = "user0012";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    fill_generated(&ep1).await;
    let opts = SyncOptions::default();
    let first = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(first.exit_code(), 0, "{first}");

    // A user flags everything in host2's INBOX and removes \Seen.
    let mut s2 = imapfleet_imap::Session::connect(&ep2).await.unwrap();
    let info = s2.select("INBOX", false).await.unwrap();
    assert!(info.exists > 0, "the generated INBOX is not empty");
    let uids: Vec<u32> = imapfleet_tests::selected_uids(&mut s2).await;
    s2.uid_store(
        &uids,
        imapfleet_imap::StoreMode::Replace,
        &["\\Flagged".to_string(), "Changed".to_string()],
    )
    .await
    .unwrap();
    s2.logout().await;
    let v = verify_account(&ep1, &ep2, &opts).await.unwrap();
    assert!(!v.ok, "verify must notice changed flags:\n{v}");

    let second = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(second.exit_code(), 0, "{second}");
    assert_eq!(second.totals.transferred, 0, "{second}");
    assert!(
        second.totals.flags_updated as usize >= uids.len(),
        "{second}"
    );
    let v = verify_account(&ep1, &ep2, &opts).await.unwrap();
    assert!(v.ok, "flags not restored:\n{v}");
}
