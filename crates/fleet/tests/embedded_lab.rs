//! `run_embedded` against the Dovecot lab (scripts/lab.sh): a few small accounts, small slices so
//! that folders take several continuations, one account with a wrong password.
//! Needs `IMAPFLEET_LAB=1` (the lab must answer then); otherwise prints SKIP.

use std::path::PathBuf;
use std::time::Duration;

use imapfleet_fleet::batch::{parse_batch, BatchFormat};
use imapfleet_fleet::limits::LimitsConfig;
use imapfleet_fleet::metrics::{sample, Metrics};
use imapfleet_fleet::run::{run_embedded, EmbeddedConfig};
use imapfleet_fleet::state::AccountStatus;
use imapfleet_fleet::worker::WorkerConfig;
use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security, Session};
use imapfleet_mailgen::MailboxSpec;
use imapfleet_sync::engine::SyncOptions;
use imapfleet_sync::verify::verify_account;
use tokio_util::sync::CancellationToken;

const ACCOUNTS: usize = 4;
const FIRST_USER: usize = 280;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lab_dir() -> Option<PathBuf> {
    if std::env::var("IMAPFLEET_LAB").as_deref() != Ok("1") {
        eprintln!("SKIP: IMAPFLEET_LAB is not 1 (the Dovecot lab)");
        return None;
    }
    let dir =
        PathBuf::from(std::env::var("LAB_DIR").unwrap_or_else(|_| "/dev/shm/imapfleet-lab".into()));
    for port in [1143, 2143] {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .expect("IMAPFLEET_LAB=1 but the lab does not answer");
    }
    Some(dir)
}

fn endpoint(dir: &std::path::Path, host: u8, user: &str) -> Endpoint {
    Endpoint {
        label: format!("host{host}"),
        host: "127.0.0.1".into(),
        port: if host == 1 { 1143 } else { 2143 },
        security: Security::StartTls,
        user: user.into(),
        authuser: None,
        password: Secret::new("secret"),
        auth: AuthMethod::Auto,
        ca_file: Some(dir.join("tls/ca.pem")),
        insecure: false,
        timeout: Duration::from_secs(60),
    }
}

fn wipe(dir: &std::path::Path, host: u8, user: &str) {
    let st = std::process::Command::new(root().join("scripts/lab.sh"))
        .args(["wipe", &host.to_string(), user])
        .env("IMAPFLEET_LAB_DIR", dir)
        .status()
        .expect("scripts/lab.sh wipe");
    assert!(st.success());
}

fn spec(seed: u64) -> MailboxSpec {
    MailboxSpec {
        folders: 4,
        messages: 24,
        target_bytes: 240_000,
        big_messages: 0,
        ..MailboxSpec::small()
    }
    .with_seed(seed)
}

/// Messages in every selectable folder.
async fn count(ep: &Endpoint) -> usize {
    let mut s = Session::connect(ep).await.expect("connect");
    let mut n = 0;
    for f in s.list().await.expect("LIST") {
        if !f.noselect {
            n += s.select(&f.raw_name, true).await.expect("EXAMINE").exists as usize;
        }
    }
    s.logout().await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_copies_every_account_in_slices_and_fails_a_wrong_password() {
    let Some(dir) = lab_dir() else { return };
    let ca = dir.join("tls/ca.pem");
    let mut lines = String::from("# embedded lab test\n");
    let mut live = Vec::new();
    for i in 0..ACCOUNTS {
        let user = format!("user{:04}", FIRST_USER + i);
        wipe(&dir, 1, &user);
        wipe(&dir, 2, &user);
        let sp = spec(100 + i as u64);
        let mut s = Session::connect(&endpoint(&dir, 1, &user))
            .await
            .expect("connect host1");
        imapfleet_mailgen::fill(&mut s, '.', sp.generate())
            .await
            .expect("fill");
        s.logout().await;
        live.push(sp.live_messages());
        lines.push_str(&format!(
            "127.0.0.1;{user};secret;127.0.0.1;{user};secret;\n"
        ));
    }
    let bad_user = format!("user{:04}", FIRST_USER + ACCOUNTS);
    lines.push_str(&format!(
        "127.0.0.1;{bad_user};wrong-Pa55;127.0.0.1;{bad_user};secret;\n"
    ));
    let defaults = format!(
        "--port1 1143 --port2 2143 --cafile1 {} --cafile2 {}",
        ca.display(),
        ca.display()
    );
    let batch = parse_batch(&lines, BatchFormat::Imapsync, &defaults);
    assert!(batch.is_clean(), "{:?}", batch.errors);

    let cfg = EmbeddedConfig {
        workers: 3,
        worker: WorkerConfig {
            slice_messages: 4,
            max_attempts: 3,
            backoff_base: Duration::from_millis(100),
            slot_wait: Duration::from_millis(300),
            limit_backoff: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
        job_name: Some("embedded-lab".into()),
        // One session per account and side at a time: the workers queue up for slots.
        limits: LimitsConfig {
            per_account: 1,
            ..LimitsConfig::default()
        },
        ..EmbeddedConfig::default()
    };
    let metrics = Metrics::new();
    let view = tokio::time::timeout(
        Duration::from_secs(300),
        run_embedded(
            &batch.accounts,
            &cfg,
            metrics.clone(),
            CancellationToken::new(),
            &|_| {},
        ),
    )
    .await
    .expect("the run ends")
    .expect("run");

    assert_eq!(view.accounts.len(), ACCOUNTS + 1);
    let bad = &view.accounts[ACCOUNTS];
    assert_eq!(bad.status, AccountStatus::Failed, "{bad:?}");
    assert_eq!(bad.error_class.as_deref(), Some("auth_host1"));
    let text = serde_json::to_string(&view).unwrap();
    assert!(
        !text.contains("wrong-Pa55") && !text.contains("\"secret\""),
        "a password in the report"
    );

    let mut transferred = 0;
    for (i, a) in view.accounts[..ACCOUNTS].iter().enumerate() {
        assert_eq!(a.status, AccountStatus::Done, "{a:#?}");
        assert_eq!(a.totals.transferred as usize, live[i], "{a:#?}");
        assert!(
            a.folders.iter().any(|f| f.slices > 1),
            "small slices: some folder took several"
        );
        transferred += a.totals.transferred;
        let (ep1, ep2) = (endpoint(&dir, 1, &a.user1), endpoint(&dir, 2, &a.user2));
        let v = verify_account(&ep1, &ep2, &SyncOptions::default())
            .await
            .expect("verify");
        assert!(v.ok, "{}: host2 differs:\n{v}", a.user1);
        assert_eq!(
            count(&ep2).await,
            live[i],
            "{}: no duplicate on host2",
            a.user2
        );
    }
    let m = metrics.render();
    assert_eq!(
        sample(
            &m,
            "imapfleet_messages_copied_total",
            &[("imapfleet_job", &view.job.id)]
        ),
        Some(transferred as f64)
    );
    assert_eq!(view.totals.transferred, transferred);
    assert_eq!(
        sample(&m, "imapfleet_errors_total", &[("class", "auth_host1")]),
        Some(1.0)
    );
    assert_eq!(sample(&m, "imapfleet_tasks_in_flight", &[]), Some(0.0));
    assert_eq!(
        sample(&m, "imapfleet_imap_connections_open", &[]),
        Some(0.0)
    );
}

/// Accounts of the nightly-pass test (lab users user0600..user0602).
const NIGHTLY_ACCOUNTS: usize = 3;
const NIGHTLY_FIRST_USER: usize = 600;

/// SELECT/EXAMINE, UID FETCH and APPEND sent for each of `eps` since `before` (this process).
fn reads_since(
    eps: &[Endpoint],
    before: &[std::collections::BTreeMap<String, u64>],
) -> Vec<(String, u64, u64, u64)> {
    eps.iter()
        .zip(before)
        .map(|(ep, b)| {
            let d = imapfleet_imap::stats::since(b, &imapfleet_imap::stats::commands(ep));
            let get = |k: &str| d.get(k).copied().unwrap_or(0);
            (
                imapfleet_imap::stats::login_key(ep),
                get("SELECT") + get("EXAMINE"),
                get("UID FETCH"),
                get("APPEND"),
            )
        })
        .collect()
}

fn snapshot(eps: &[Endpoint]) -> Vec<std::collections::BTreeMap<String, u64>> {
    eps.iter().map(imapfleet_imap::stats::commands).collect()
}

/// `run_embedded` once, with the saved sync state in `store`; fresh metrics, returned.
async fn nightly_pass(
    accounts: &[imapfleet_fleet::batch::BatchAccount],
    store: &std::sync::Arc<dyn imapfleet_sync::state::SyncStateStore>,
    name: &str,
) -> (imapfleet_fleet::state::JobView, String) {
    let cfg = EmbeddedConfig {
        workers: 3,
        worker: WorkerConfig {
            slice_messages: 4,
            max_attempts: 3,
            backoff_base: Duration::from_millis(100),
            sync_state: Some(imapfleet_fleet::worker::SyncStore(store.clone())),
            ..WorkerConfig::default()
        },
        job_name: Some(name.into()),
        ..EmbeddedConfig::default()
    };
    let metrics = Metrics::new();
    let view = tokio::time::timeout(
        Duration::from_secs(300),
        run_embedded(
            accounts,
            &cfg,
            metrics.clone(),
            CancellationToken::new(),
            &|_| {},
        ),
    )
    .await
    .expect("the run ends")
    .expect("run");
    (view, metrics.render())
}

fn folder_tasks(m: &str) -> f64 {
    sample(m, "imapfleet_tasks_total", &[("kind", "folder")]).unwrap_or(0.0)
}

/// Nightly passes of one batch with the saved state in the state directory's files (what
/// `imapfleet run` uses), each `run_embedded` a new "process" (new locks, fences from 1 again):
/// after no change no folder task runs and no SELECT is sent; after one new message in one folder
/// only that folder gets a task; with the state wiped every folder is read again, with the same
/// result and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_nightly_passes_skip_unchanged_folders_and_survive_a_wiped_state() {
    let Some(dir) = lab_dir() else { return };
    let ca = dir.join("tls/ca.pem");
    let users: Vec<String> = (0..NIGHTLY_ACCOUNTS)
        .map(|i| format!("user{:04}", NIGHTLY_FIRST_USER + i))
        .collect();
    let mut lines = String::new();
    let mut live = Vec::new();
    for (i, user) in users.iter().enumerate() {
        wipe(&dir, 1, user);
        wipe(&dir, 2, user);
        let sp = spec(600 + i as u64);
        let mut s = Session::connect(&endpoint(&dir, 1, user))
            .await
            .expect("connect host1");
        imapfleet_mailgen::fill(&mut s, '.', sp.generate())
            .await
            .expect("fill");
        s.logout().await;
        live.push(sp.live_messages());
        lines.push_str(&format!(
            "127.0.0.1;{user};secret;127.0.0.1;{user};secret;\n"
        ));
    }
    let defaults = format!(
        "--port1 1143 --port2 2143 --cafile1 {} --cafile2 {}",
        ca.display(),
        ca.display()
    );
    let batch = parse_batch(&lines, BatchFormat::Imapsync, &defaults);
    assert!(batch.is_clean(), "{:?}", batch.errors);
    let state_dir = tempfile::tempdir().expect("state dir");
    let store: std::sync::Arc<dyn imapfleet_sync::state::SyncStateStore> = std::sync::Arc::new(
        imapfleet_sync::state::file::FileState::new(state_dir.path()).expect("state dir"),
    );
    let eps: Vec<Endpoint> = users
        .iter()
        .flat_map(|u| [endpoint(&dir, 1, u), endpoint(&dir, 2, u)])
        .collect();
    let check = |view: &imapfleet_fleet::state::JobView, live: Vec<usize>| {
        let view = view.clone();
        let dir = dir.clone();
        async move {
            for (i, a) in view.accounts.iter().enumerate() {
                assert_eq!(a.status, AccountStatus::Done, "{a:#?}");
                assert_eq!(a.totals.missing_on_host2, 0, "{a:#?}");
                let (ep1, ep2) = (endpoint(&dir, 1, &a.user1), endpoint(&dir, 2, &a.user2));
                let v = verify_account(&ep1, &ep2, &SyncOptions::default())
                    .await
                    .expect("verify");
                assert!(v.ok, "{}: host2 differs:\n{v}", a.user1);
                assert_eq!(count(&ep2).await, live[i], "{}: no duplicate", a.user2);
            }
        }
    };

    // 1. First pass: everything copied, the state written.
    let t = std::time::Instant::now();
    let (view, m) = nightly_pass(&batch.accounts, &store, "nightly-1").await;
    eprintln!("nightly pass 1: {:.2} s", t.elapsed().as_secs_f64());
    check(&view, live.clone()).await;
    assert_eq!(view.totals.transferred as usize, live.iter().sum::<usize>());
    let n_folders: usize = view.accounts.iter().map(|a| a.folders.len()).sum();
    assert!(n_folders >= NIGHTLY_ACCOUNTS * 4, "{n_folders} folders");
    assert!(
        folder_tasks(&m) as usize >= n_folders,
        "a folder task (and its continuations) per folder:\n{m}"
    );

    // 2. No change: every folder done by the account task, no folder task, no SELECT at all.
    let before = snapshot(&eps);
    let t = std::time::Instant::now();
    let (view, m) = nightly_pass(&batch.accounts, &store, "nightly-2").await;
    eprintln!(
        "nightly pass 2 (no change): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    for r in reads_since(&eps, &before) {
        assert_eq!(
            (r.1, r.2, r.3),
            (0, 0, 0),
            "no SELECT, FETCH or APPEND: {r:?}"
        );
    }
    assert_eq!(folder_tasks(&m), 0.0, "no folder task:\n{m}");
    assert_eq!(
        sample(&m, "imapfleet_tasks_total", &[("kind", "account")]),
        Some(NIGHTLY_ACCOUNTS as f64)
    );
    assert_eq!(view.totals.transferred, 0);
    assert_eq!(view.totals.folders as usize, n_folders);
    assert_eq!(view.totals.folders_synced as usize, n_folders);
    for (i, a) in view.accounts.iter().enumerate() {
        for f in &a.folders {
            assert!(f.done && f.slices == 0, "unchanged, no slice: {f:?}");
        }
        // Reported as the last pass left it: every live message already on host2.
        assert_eq!(a.totals.skipped as usize, live[i], "{a:#?}");
    }
    check(&view, live.clone()).await;

    // 3. One new message in one folder of the first account: only that folder gets a task.
    let ep1 = endpoint(&dir, 1, &users[0]);
    let mut s = Session::connect(&ep1).await.expect("connect host1");
    let changed = s
        .list()
        .await
        .expect("LIST")
        .into_iter()
        .find(|f| !f.noselect && !f.raw_name.eq_ignore_ascii_case("INBOX"))
        .expect("a folder besides INBOX")
        .raw_name;
    let body = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: nightly\r\nMessage-ID: <nightly-600@example.com>\r\n\r\nnew since the last pass\r\n";
    s.append(
        &changed,
        &[imapfleet_imap::AppendRequest {
            flags: vec![],
            internaldate: None,
            body,
        }],
    )
    .await
    .expect("APPEND on host1");
    s.logout().await;
    let mut live3 = live.clone();
    live3[0] += 1;
    let before = snapshot(&eps);
    let t = std::time::Instant::now();
    let (view, m) = nightly_pass(&batch.accounts, &store, "nightly-3").await;
    eprintln!(
        "nightly pass 3 (one folder changed): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(folder_tasks(&m), 1.0, "one folder task:\n{m}");
    assert_eq!(view.totals.transferred, 1);
    let ran: Vec<(String, u32)> = view
        .accounts
        .iter()
        .flat_map(|a| a.folders.iter().filter(|f| f.slices > 0))
        .map(|f| (f.name1.clone(), f.slices))
        .collect();
    assert_eq!(ran.len(), 1, "{ran:?}");
    assert_eq!(view.accounts[0].totals.transferred, 1);
    let reads = reads_since(&eps, &before);
    // users[0] host1, host2: one EXAMINE / SELECT of that folder each, one APPEND on host2.
    assert_eq!((reads[0].1, reads[1].1), (1, 1), "{reads:?}");
    assert_eq!(reads[1].3, 1, "{reads:?}");
    for r in &reads[2..] {
        assert_eq!(
            (r.1, r.2, r.3),
            (0, 0, 0),
            "other accounts untouched: {r:?}"
        );
    }
    check(&view, live3.clone()).await;

    // 4. The state wiped (lost): every folder is read in full again, same result, no duplicate.
    for u in &users {
        let (e1, e2) = (endpoint(&dir, 1, u), endpoint(&dir, 2, u));
        store
            .wipe(&imapfleet_sync::state::account_id(&e1, &e2))
            .await
            .expect("wipe");
    }
    let (view, m) = nightly_pass(&batch.accounts, &store, "nightly-4").await;
    assert_eq!(
        folder_tasks(&m) as usize,
        n_folders,
        "every folder read:\n{m}"
    );
    assert_eq!(view.totals.transferred, 0);
    check(&view, live3.clone()).await;

    // 5. ... and the state is back: no folder task again.
    let before = snapshot(&eps);
    let (view, m) = nightly_pass(&batch.accounts, &store, "nightly-5").await;
    assert_eq!(folder_tasks(&m), 0.0, "{m}");
    for r in reads_since(&eps, &before) {
        assert_eq!(r.1, 0, "no SELECT: {r:?}");
    }
    check(&view, live3).await;
}
