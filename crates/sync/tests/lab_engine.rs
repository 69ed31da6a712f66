//! The executor against the lab's two Dovecot instances: edge messages, tiny batches (pipelining,
//! an oversized message alone in its batch), several connections, a connection killed mid-sync.
//!
//! Needs the lab (`scripts/lab.sh start`). Without `IMAPFLEET_LAB=1` these tests print a skip note and
//! pass; with it the lab must answer. Users user0201.. are reserved for these tests.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use imapfleet_imap::{AppendRequest, AuthMethod, Endpoint, Secret, Security, Session};
use imapfleet_sync::engine::{sync_account, NoProgress, Progress, SyncOptions};
use imapfleet_sync::verify::verify_account;

const LAB_DIR: &str = "/dev/shm/imapfleet-lab";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lab_required() -> Option<()> {
    if std::env::var("IMAPFLEET_LAB").as_deref() != Ok("1") {
        eprintln!("SKIP: set IMAPFLEET_LAB=1 (and run scripts/lab.sh start) to run the lab tests");
        return None;
    }
    Some(())
}

fn endpoint(host: u8, user: &str) -> Endpoint {
    Endpoint {
        label: format!("host{host}"),
        host: "127.0.0.1".into(),
        port: if host == 1 { 1143 } else { 2143 },
        security: Security::Plain,
        user: user.into(),
        authuser: None,
        password: Secret::new("secret"),
        auth: AuthMethod::Auto,
        ca_file: None,
        insecure: false,
        timeout: Duration::from_secs(60),
    }
}

fn wipe(user: &str) {
    for host in ["1", "2"] {
        let ok = Command::new(root().join("scripts/lab.sh"))
            .args(["wipe", host, user])
            .status()
            .expect("lab.sh wipe");
        assert!(ok.success(), "wipe {user} on host{host}");
    }
}

fn message(i: usize, extra_headers: &str, body_len: usize) -> Vec<u8> {
    let mut m = format!(
        "From: a{i}@example.org\r\nTo: b@example.org\r\nSubject: test {i}\r\n{extra_headers}Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let line = b"0123456789 abcdefghijklmnopqrstuvwxyz 0123456789 ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n";
    while m.len() < body_len {
        m.extend_from_slice(line);
    }
    m
}

/// Fill host1: INBOX and two folders, with plain, header-less, duplicate, flagged and big messages.
async fn fill(ep1: &Endpoint) -> usize {
    let mut s = Session::connect(ep1).await.expect("connect host1");
    for f in ["Work", "Work.Deep", "Empty"] {
        s.create(f).await.expect("create");
    }
    let date = DateTime::parse_from_rfc3339("2019-12-03T10:11:12+01:00").ok();
    let flags = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut n = 0;
    for (folder, count) in [("INBOX", 12usize), ("Work", 7), ("Work.Deep", 3)] {
        let msgs: Vec<Vec<u8>> = (0..count)
            .map(|i| match i {
                // no Message-Id / Received: keyed by the whole header block
                0 => message(1000 + i, "", 300),
                // a 200 kB message: bigger than the test's batch_bytes, gets a batch of its own
                1 => message(i, &format!("Message-Id: <big{i}@{folder}>\r\n"), 200_000),
                _ => message(
                    i,
                    &format!("Message-Id: <m{i}@{folder}>\r\n"),
                    500 + 100 * i,
                ),
            })
            .collect();
        for (i, body) in msgs.iter().enumerate() {
            let f = match i % 4 {
                0 => flags(&["\\Seen"]),
                1 => flags(&["\\Seen", "\\Flagged", "$Label1"]),
                2 => flags(&["\\Answered", "\\Draft", "NonJunk"]),
                _ => vec![],
            };
            s.append(
                folder,
                &[AppendRequest {
                    flags: f,
                    internaldate: date,
                    body,
                }],
            )
            .await
            .expect("append");
            n += 1;
        }
        // an exact duplicate on host1: both copies must end up on host2
        s.append(
            folder,
            &[AppendRequest {
                flags: vec![],
                internaldate: date,
                body: &msgs[2],
            }],
        )
        .await
        .expect("dup");
        n += 1;
    }
    s.logout().await;
    n
}

/// host1's (uid, flags) per folder: must not change.
async fn host1_state(ep1: &Endpoint) -> Vec<(String, Vec<(u32, Vec<String>)>)> {
    let mut s = Session::connect(ep1).await.expect("connect");
    let mut out = Vec::new();
    for f in ["INBOX", "Work", "Work.Deep", "Empty"] {
        let info = s.select(f, true).await.expect("examine");
        let metas = if info.exists == 0 {
            vec![]
        } else {
            s.fetch_meta("1:*", &[]).await.expect("fetch")
        };
        out.push((
            f.to_string(),
            metas.into_iter().map(|m| (m.uid, m.flags)).collect(),
        ));
    }
    s.logout().await;
    out
}

fn small_batches() -> SyncOptions {
    SyncOptions {
        connections: 2,
        batch_messages: 3,
        batch_bytes: 20_000,
        in_flight_bytes: 64 << 10,
        ..SyncOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_batches_copy_everything_once_and_rerun_is_empty() {
    let Some(()) = lab_required() else { return };
    let user = "user0201";
    wipe(user);
    let (ep1, ep2) = (endpoint(1, user), endpoint(2, user));
    let n = fill(&ep1).await;
    let before = host1_state(&ep1).await;
    let opts = small_batches();

    let dry = sync_account(
        &ep1,
        &ep2,
        &SyncOptions {
            dry_run: true,
            ..opts.clone()
        },
        Arc::new(NoProgress),
    )
    .await;
    assert_eq!(dry.totals.transferred as usize, n, "{dry}");
    assert!(dry.errors.is_empty(), "{dry}");

    let r = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    println!("{r}");
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.transferred as usize, n, "{r}");
    assert_eq!(r.totals.duplicates_host1, 3, "{r}");
    let v = verify_account(&ep1, &ep2, &opts).await.expect("verify");
    println!("{v}");
    assert!(v.ok, "{v}");

    let again = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
    assert_eq!(again.exit_code(), 0, "{again}");
    assert_eq!(again.totals.transferred, 0, "{again}");
    assert_eq!(again.totals.flags_updated, 0, "{again}");
    assert_eq!(again.totals.skipped as usize, n, "{again}");
    assert_eq!(host1_state(&ep1).await, before, "host1 changed");
}

/// Kicks the user off host2 once, after the first copied message.
struct KickOnce {
    user: String,
    done: AtomicBool,
    copied: AtomicU64,
}

impl Progress for KickOnce {
    fn message_copied(&self, _: &str, _: u32, _: u64) {
        self.copied.fetch_add(1, Ordering::Relaxed);
        if !self.done.swap(true, Ordering::SeqCst) {
            let conf = format!("{LAB_DIR}/host2/dovecot.conf");
            let _ = Command::new("doveadm")
                .args(["-c", &conf, "kick", &self.user])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connection_is_reconnected_without_duplicates() {
    let Some(()) = lab_required() else { return };
    let user = "user0202";
    wipe(user);
    let (ep1, ep2) = (endpoint(1, user), endpoint(2, user));
    let n = fill(&ep1).await;
    let opts = SyncOptions {
        connections: 1,
        ..small_batches()
    };
    let progress = Arc::new(KickOnce {
        user: user.into(),
        done: AtomicBool::new(false),
        copied: AtomicU64::new(0),
    });
    let r = sync_account(&ep1, &ep2, &opts, progress.clone()).await;
    println!("{r}");
    assert!(r.totals.reconnects >= 1, "the kick was not noticed:\n{r}");
    assert_eq!(r.exit_code(), 0, "{r}");
    let v = verify_account(&ep1, &ep2, &opts).await.expect("verify");
    assert!(v.ok, "{v}");
    let extra: u64 = v.folders.iter().map(|f| f.extra_on_host2).sum();
    assert_eq!(extra, 0, "a message was appended twice:\n{v}");
    let on2: u64 = v.folders.iter().map(|f| f.host2_messages).sum();
    assert_eq!(on2 as usize, n, "{v}");
}

/// Expunges one host1 INBOX message (by UID, with doveadm) right after INBOX is planned, before its
/// bodies are fetched: the message vanished between listing and fetch.
struct ExpungeAfterPlan {
    user: String,
    uid: u32,
}

impl Progress for ExpungeAfterPlan {
    fn folder_planned(&self, name1: &str, _: usize, _: u64) {
        if name1 == "INBOX" {
            let conf = format!("{LAB_DIR}/host1/dovecot.conf");
            let uid = self.uid.to_string();
            let ok = Command::new("doveadm")
                .args([
                    "-c", &conf, "expunge", "-u", &self.user, "mailbox", "INBOX", "uid", &uid,
                ])
                .status()
                .expect("doveadm expunge");
            assert!(ok.success());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_vanished_before_fetch_is_counted_not_an_error() {
    let Some(()) = lab_required() else { return };
    let user = "user0203";
    wipe(user);
    let (ep1, ep2) = (endpoint(1, user), endpoint(2, user));
    let n = fill(&ep1).await;
    let opts = small_batches();
    let progress = Arc::new(ExpungeAfterPlan {
        user: user.into(),
        uid: 5,
    });
    let r = sync_account(&ep1, &ep2, &opts, progress).await;
    println!("{r}");
    assert_eq!(r.exit_code(), 0, "{r}");
    assert_eq!(r.totals.vanished_host1, 1, "{r}");
    assert_eq!(r.totals.transferred as usize, n - 1, "{r}");
    let v = verify_account(&ep1, &ep2, &opts).await.expect("verify");
    assert!(v.ok, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_failures_are_classified_and_passwords_never_reported() {
    let Some(()) = lab_required() else { return };
    let user = "user0204";
    let opts = SyncOptions {
        just_login: true,
        ..SyncOptions::default()
    };
    let ok = sync_account(
        &endpoint(1, user),
        &endpoint(2, user),
        &opts,
        Arc::new(NoProgress),
    )
    .await;
    assert_eq!(ok.exit_code(), 0, "{ok}");

    let mut bad1 = endpoint(1, user);
    bad1.password = Secret::new("wrong-pass-1");
    let r = sync_account(&bad1, &endpoint(2, user), &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 10, "{r}");

    let mut bad2 = endpoint(2, user);
    bad2.password = Secret::new("wrong-pass-2");
    let r = sync_account(
        &endpoint(1, user),
        &bad2,
        &SyncOptions::default(),
        Arc::new(NoProgress),
    )
    .await;
    assert_eq!(r.exit_code(), 11, "{r}");
    let json = serde_json::to_string(&r).expect("json");
    let text = format!("{r}\n{json}\n{r:?}");
    assert!(
        !text.contains("wrong-pass-2") && !text.contains("secret"),
        "a password leaked:\n{text}"
    );

    let mut closed = endpoint(2, user);
    closed.port = 9; // nothing listens there
    let r = sync_account(&endpoint(1, user), &closed, &opts, Arc::new(NoProgress)).await;
    assert_eq!(r.exit_code(), 13, "{r}");
}
