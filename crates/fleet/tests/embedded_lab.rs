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
        live.push(
            sp.generate()
                .map(|f| {
                    f.messages
                        .iter()
                        .filter(|m| !m.flags.iter().any(|f| f == "\\Deleted"))
                        .count()
                })
                .sum::<usize>(),
        );
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
