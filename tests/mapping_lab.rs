//! Folder mapping against real servers with different layouts: host1 Maildir++ (".", no prefix),
//! host2 LAYOUT=fs ("/"), host3 Courier-like ("." under "INBOX.").

use std::sync::Arc;

use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{append_raw, lab, snapshot};

fn msg(id: &str) -> Vec<u8> {
    format!("From: a@example.com\r\nSubject: {id}\r\nMessage-Id: <{id}@example.com>\r\n\r\nhello {id}\r\n").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separator_and_prefix_are_translated_both_ways() {
    let Some(lab) = lab() else { return };
    let user = "user0040";
    lab.fresh(user);
    lab.wipe(3, user);
    let (ep1, ep2, ep3) = (
        lab.endpoint(1, user),
        lab.endpoint(2, user),
        lab.endpoint(3, user),
    );
    append_raw(&ep1, "INBOX", &[msg("m0")]).await;
    append_raw(&ep1, "Clients", &[msg("m1")]).await;
    append_raw(&ep1, "Clients.Acme", &[msg("m2")]).await;
    append_raw(&ep1, "Éléments envoyés", &[msg("m3")]).await;

    // host1 (".", no prefix) -> host3 ("." under "INBOX.")
    let opts = SyncOptions::default();
    let r = sync_account(&ep1, &ep3, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let s3 = snapshot(&ep3).await;
    for want in [
        "INBOX",
        "INBOX.Clients",
        "INBOX.Clients.Acme",
        "INBOX.Éléments envoyés",
    ] {
        assert_eq!(
            s3.get(want).map(Vec::len),
            Some(1),
            "{want} on host3: {s3:?}"
        );
    }
    assert!(verify_account(&ep1, &ep3, &opts).await.unwrap().ok);

    // host3 ("INBOX." prefix) -> host2 ("/", no prefix): the prefix goes, the separator changes.
    let r = sync_account(&ep3, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let s2 = snapshot(&ep2).await;
    for want in ["INBOX", "Clients", "Clients/Acme", "Éléments envoyés"] {
        assert_eq!(
            s2.get(want).map(Vec::len),
            Some(1),
            "{want} on host2: {s2:?}"
        );
    }
    assert!(
        !s2.keys().any(|k| k.starts_with("INBOX/")),
        "prefix leaked into host2: {s2:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automap_puts_localized_special_folders_onto_host2s() {
    let Some(lab) = lab() else { return };
    let user = "user0041";
    lab.fresh(user);
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    append_raw(&ep1, "Gesendete Elemente", &[msg("s1")]).await;
    append_raw(&ep1, "Deleted Items", &[msg("t1")]).await;
    // host2 already has its special-use folders (the lab declares \Sent on "Sent", \Trash on "Trash").
    append_raw(&ep2, "Sent", &[]).await;
    append_raw(&ep2, "Trash", &[]).await;

    let mut opts = SyncOptions::default();
    opts.mapping.automap = true;
    let r = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let s2 = snapshot(&ep2).await;
    assert_eq!(s2.get("Sent").map(Vec::len), Some(1), "{s2:?}");
    assert_eq!(s2.get("Trash").map(Vec::len), Some(1), "{s2:?}");
    assert!(!s2.contains_key("Gesendete Elemente"), "{s2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slash_inside_a_host1_name_is_replaced_not_dropped() {
    let Some(lab) = lab() else { return };
    let user = "user0042";
    lab.fresh(user);
    lab.wipe(3, user);
    // host3 is Maildir++ with "." too, so it cannot hold "/" either; use host2 -> host1 instead:
    // a host2 (/) folder named "v1.2" has a "." that is host1's separator.
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    append_raw(&ep2, "Releases", &[msg("r0")]).await;
    append_raw(&ep2, "Releases/v1.2", &[msg("r1")]).await;
    let r = sync_account(&ep2, &ep1, &SyncOptions::default(), Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 0, "{r}");
    let s1 = snapshot(&ep1).await;
    assert_eq!(
        s1.get("Releases.v1_2").map(Vec::len),
        Some(1),
        "documented rule: '.' inside a name becomes '_': {s1:?}"
    );
}
