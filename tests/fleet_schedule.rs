//! Scheduled passes through the built binary: `imapfleet dispatch --every/--cron` with a worker
//! process on RabbitMQ and Redis, against the Dovecot lab.
//!
//! Needs the lab (`IMAPFLEET_LAB=1`) and RabbitMQ + Redis (`IMAPFLEET_SERVICES=1`); otherwise the
//! tests print SKIP. Users user0050..user0054 belong to these tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use imapfleet_fleet::batch::{parse_batch, BatchFormat};
use imapfleet_fleet::lock::{LeaseKeeper, LockManager, RedisLocks};
use imapfleet_fleet::state::RedisState;
use imapfleet_fleet::task::{AccountRef, FolderSpec, FolderTask, ProcessSealer};
use imapfleet_mailgen::MailboxSpec;
use imapfleet_sync::engine::SyncOptions;
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{bin, count, fill_host1_with, lab, small_spec, snapshot, Lab};
use serde_json::Value;

/// Accounts synced freely, and the one whose first pass the test holds (its INBOX lease taken).
const FREE_USERS: [&str; 3] = ["user0050", "user0051", "user0052"];
const HELD_USER: &str = "user0053";
/// The account of the SIGTERM test (nothing is ever enqueued for it).
const IDLE_USER: &str = "user0054";

fn services() -> bool {
    if std::env::var("IMAPFLEET_SERVICES").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("SKIP: IMAPFLEET_SERVICES is not 1 (RabbitMQ and Redis: scripts/services.sh start)");
    false
}

fn redis_url() -> String {
    std::env::var("IMAPFLEET_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Exact counts: no duplicate or header-less message, nothing flagged \Deleted.
fn spec(seed: u64, folders: usize, messages: usize) -> MailboxSpec {
    MailboxSpec {
        no_message_id_per_mille: 0,
        duplicate_id_per_mille: 0,
        exact_duplicate_per_mille: 0,
        ..small_spec(seed, folders, messages)
    }
}

async fn fill(lab: &Lab, user: &str, sp: &MailboxSpec) -> usize {
    lab.fresh(user);
    fill_host1_with(&lab.endpoint(1, user), sp, |mut f| {
        for m in &mut f.messages {
            m.flags.retain(|f| f != "\\Deleted");
        }
        f
    })
    .await;
    count(&snapshot(&lab.endpoint(1, user)).await)
}

fn defaults(lab: &Lab) -> String {
    format!(
        "--port1 {} --port2 {} --cafile1 {ca} --cafile2 {ca}",
        lab.host1_port,
        lab.host2_port,
        ca = lab.ca.display()
    )
}

fn batch_text(lab: &Lab, users: &[&str]) -> String {
    users
        .iter()
        .map(|u| {
            format!(
                "127.0.0.1;{u};{pw};127.0.0.1;{u};{pw};\n",
                pw = lab.password
            )
        })
        .collect()
}

/// The lease key a worker takes first for `user`'s host2 INBOX (built as the dispatcher builds
/// the account's tasks).
fn inbox_pair_key(lab: &Lab, user: &str) -> String {
    let b = parse_batch(
        &batch_text(lab, &[user]),
        BatchFormat::Imapsync,
        &defaults(lab),
    );
    assert!(b.is_clean(), "{:?}", b.errors);
    let account = AccountRef::from_batch(
        "any",
        0,
        &b.accounts[0],
        60,
        &ProcessSealer::default(),
        chrono::Utc::now(),
    )
    .expect("account ref");
    let inbox = FolderSpec {
        raw1: "INBOX".into(),
        name1: "INBOX".into(),
        raw2: "INBOX".into(),
        name2: "INBOX".into(),
        create: false,
        merged: false,
    };
    FolderTask {
        account,
        index: 0,
        folder: inbox,
        slice: 0,
        created: false,
        create_failed: None,
    }
    .lock_keys()
    .0
}

/// A fleet under test: its own queue, sealing key, scratch directory and processes.
struct Fleet {
    dir: PathBuf,
    key: String,
    queue: String,
    children: Vec<Child>,
}

impl Fleet {
    fn new(name: &str) -> Fleet {
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .expect("random key");
        let dir = std::env::temp_dir().join(format!("imapfleet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Fleet {
            dir,
            key: b.iter().map(|x| format!("{x:02x}")).collect(),
            queue: format!("imapfleet.test.{name}.{}.{}", std::process::id(), nanos()),
            children: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("IMAPFLEET_SECRET_KEY", &self.key)
            .env("IMAPFLEET_QUEUE", &self.queue)
            .env("IMAPFLEET_STATE_TTL", "2d")
            .env("RUST_LOG", "warn,imapfleet=info,imapfleet_fleet=info")
            .env_remove("IMAPFLEET_CONFIG");
        c
    }

    fn start_worker(&mut self) {
        let log = std::fs::File::create(self.dir.join("worker.log")).unwrap();
        let c = self
            .cmd(&[
                "worker",
                "--concurrency",
                "4",
                "--metrics-addr",
                "off",
                "--lease-ttl",
                "5",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a worker");
        self.children.push(c);
    }

    fn status_json(&self, job: &str) -> Value {
        let o = self
            .cmd(&["status", job, "--json", "--wait", "--wait-timeout", "120"])
            .output()
            .expect("status");
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "status JSON of {job}: {e}\n{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
    }

    fn status_text(&self, job: &str) -> String {
        let o = self.cmd(&["status", job]).output().expect("status");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    async fn cleanup(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        use imapfleet_fleet::queue::{AmqpConfig, AmqpQueue};
        if let Ok(q) = AmqpQueue::connect(AmqpConfig::new(self.queue.clone())).await {
            let _ = q.delete_queues(&[]).await;
            q.shutdown().await;
        }
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics server");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `pass N job ID (NAME): E account(s) enqueued, S skipped` line of the scheduler.
#[derive(Debug, Clone)]
struct Pass {
    n: u32,
    job: String,
    enqueued: usize,
    skipped: usize,
}

fn parse_pass(line: &str) -> Option<Pass> {
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.first() != Some(&"pass") || w.get(2) != Some(&"job") {
        return None;
    }
    let enq = w.iter().position(|x| *x == "enqueued,")?;
    Some(Pass {
        n: w[1].parse().ok()?,
        job: w[3].to_string(),
        enqueued: w[enq - 2].parse().ok()?,
        skipped: w[enq + 1].parse().ok()?,
    })
}

async fn check_identical(lab: &Lab, user: &str, live: usize) {
    let (ep1, ep2) = (lab.endpoint(1, user), lab.endpoint(2, user));
    let v = verify_account(&ep1, &ep2, &SyncOptions::default())
        .await
        .expect("verify");
    assert!(v.ok, "{user}: host2 differs from host1:\n{v}");
    assert_eq!(
        count(&snapshot(&ep2).await),
        live,
        "{user}: exactly host1's messages on host2, no duplicate"
    );
}

fn account<'a>(view: &'a Value, user: &str) -> &'a Value {
    view["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .find(|a| a["user1"] == user)
        .unwrap_or_else(|| panic!("{user} not in {view:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pass_skips_an_account_whose_previous_pass_still_runs_and_the_next_are_deltas() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    let started = Instant::now();
    let mut live = Vec::new();
    for (i, u) in FREE_USERS.iter().enumerate() {
        live.push(fill(&lab, u, &spec(4100 + i as u64, 3, 24)).await);
    }
    let held_live = fill(&lab, HELD_USER, &spec(4200, 1, 12)).await;

    // Hold the held account's host2 INBOX lease: its first pass cannot finish.
    let locks: Arc<dyn LockManager> = Arc::new(
        RedisLocks::connect(&redis_url(), None)
            .await
            .expect("Redis"),
    );
    let ttl = Duration::from_secs(10);
    let lease = locks
        .acquire_within(
            &inbox_pair_key(&lab, HELD_USER),
            ttl,
            Duration::from_secs(30),
        )
        .await
        .expect("lock backend")
        .expect("the INBOX lease");
    let keeper = LeaseKeeper::spawn(locks.clone(), lease, ttl);

    let mut fleet = Fleet::new("schedule");
    let schedule = format!("sched-{}-{}", std::process::id(), nanos() % 1_000_000);
    let mut users: Vec<&str> = FREE_USERS.to_vec();
    users.push(HELD_USER);
    let batch = fleet.dir.join("nightly.txt");
    std::fs::write(&batch, batch_text(&lab, &users)).unwrap();
    fleet.start_worker();

    let port = free_port();
    let mut d = fleet
        .cmd(&[
            "dispatch", "--every", "5s", "--passes", "3", "--job", &schedule,
        ])
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .arg("--accounts")
        .arg(&batch)
        .arg(format!("--defaults={}", defaults(&lab)))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(fleet.dir.join("dispatch.log")).unwrap())
        .spawn()
        .expect("imapfleet dispatch --every");
    let out = BufReader::new(d.stdout.take().unwrap());
    let mut passes: Vec<Pass> = Vec::new();
    let mut printed = String::new();
    let mut skipped_metric = None;
    for line in out.lines() {
        let line = line.expect("dispatcher output");
        printed.push_str(&line);
        printed.push('\n');
        if let Some(p) = parse_pass(&line) {
            if p.n == 2 {
                // Between passes 2 and 3 the dispatcher serves its metrics.
                let m = http_get(port, "/metrics");
                skipped_metric = imapfleet_fleet::metrics::sample(
                    &m,
                    "imapfleet_accounts_skipped_total",
                    &[("schedule", &schedule)],
                );
            }
            passes.push(p);
        }
    }
    let st = d.wait().expect("dispatcher exit");
    let log = std::fs::read_to_string(fleet.dir.join("dispatch.log")).unwrap_or_default();
    assert!(st.success(), "dispatcher: {st}\n{printed}\n{log}");
    assert_eq!(
        passes.iter().map(|p| p.n).collect::<Vec<_>>(),
        [1, 2, 3],
        "{printed}"
    );
    assert_eq!((passes[0].enqueued, passes[0].skipped), (4, 0), "{printed}");
    // By the third tick the free accounts' earlier passes are over: only the held one is left out.
    assert_eq!((passes[2].enqueued, passes[2].skipped), (3, 1), "{printed}");
    for p in &passes[1..] {
        assert!(p.skipped >= 1, "the held account is skipped: {printed}");
        assert!(
            printed.contains("skipped: previous pass still running"),
            "{printed}"
        );
    }
    assert_eq!(
        skipped_metric,
        Some(1.0),
        "after pass 2: one account skipped"
    );
    assert!(!log.contains(&fleet.key), "the key in the dispatcher's log");

    // Each pass is its own job, named after the schedule. The held account's first pass is
    // still running; the others' are done.
    let v = fleet
        .cmd(&["status", &passes[0].job, "--json"])
        .output()
        .unwrap();
    let view1: Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(view1["job"]["name"], format!("{schedule}-pass1"));
    assert_eq!(account(&view1, HELD_USER)["status"], "running", "{view1:#}");
    for (i, u) in FREE_USERS.iter().enumerate() {
        let a = account(&view1, u);
        assert_eq!(a["status"], "done", "{a:#}");
        assert_eq!(a["totals"]["transferred"].as_u64(), Some(live[i] as u64));
    }

    for p in &passes[1..] {
        let view = fleet.status_json(&p.job);
        let held = account(&view, HELD_USER);
        assert_eq!(held["status"], "skipped", "{held:#}");
        let why = held["skipped"].as_str().expect("the reason");
        assert!(
            why.starts_with("previous pass still running") && why.contains(&passes[0].job),
            "{why}"
        );
        // The free accounts' later passes are deltas: nothing copied again.
        for (i, u) in FREE_USERS.iter().enumerate() {
            let a = account(&view, u);
            if a["status"] == "skipped" {
                // Only when pass 1 was still at work at the tick (a slow machine).
                continue;
            }
            assert_eq!(a["status"], "done", "{a:#}");
            assert_eq!(a["totals"]["transferred"].as_u64(), Some(0), "{a:#}");
            assert_eq!(
                a["totals"]["skipped"].as_u64(),
                Some(live[i] as u64),
                "{a:#}"
            );
        }
        assert!(view["by_status"]["skipped"].as_u64().unwrap() >= 1);
    }
    let human = fleet.status_text(&passes[1].job);
    assert!(
        human.contains("skipped: previous pass still running")
            && human.contains(" skipped")
            && human.contains("account(s) skipped: previous pass still running"),
        "{human}"
    );
    // `status <schedule>` shows the newest pass.
    let newest = fleet.status_text(&schedule);
    assert!(newest.contains(&format!("({schedule}-pass3)")), "{newest}");

    // Job state expires (IMAPFLEET_STATE_TTL=2d, refreshed by the worker's writes too).
    let state = RedisState::connect(&redis_url(), None)
        .await
        .expect("Redis");
    for p in &passes {
        let left = state
            .time_to_live(&p.job)
            .await
            .unwrap()
            .expect("job state has a TTL");
        assert!(
            left <= Duration::from_secs(2 * 86_400) && left > Duration::from_secs(2 * 86_400 - 600),
            "{left:?}"
        );
    }

    // Let the held pass finish: its account is then taken by the next pass, as a delta.
    keeper.release().await.expect("release");
    let view1 = fleet.status_json(&passes[0].job);
    let held = account(&view1, HELD_USER);
    assert_eq!(held["status"], "done", "{held:#}");
    assert_eq!(
        held["totals"]["transferred"].as_u64(),
        Some(held_live as u64)
    );
    let o = fleet
        .cmd(&[
            "dispatch", "--every", "1s", "--passes", "1", "--job", &schedule,
        ])
        .arg("--accounts")
        .arg(&batch)
        .arg(format!("--defaults={}", defaults(&lab)))
        .output()
        .expect("dispatch pass 4");
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{text}");
    let p4 = text.lines().find_map(parse_pass).expect("a pass line");
    assert_eq!((p4.n, p4.enqueued, p4.skipped), (4, 4, 0), "{text}");
    let view4 = fleet.status_json(&p4.job);
    assert_eq!(view4["by_status"]["done"].as_u64(), Some(4), "{view4:#}");
    assert_eq!(
        view4["totals"]["transferred"].as_u64(),
        Some(0),
        "{view4:#}"
    );

    for (i, u) in FREE_USERS.iter().enumerate() {
        check_identical(&lab, u, live[i]).await;
    }
    check_identical(&lab, HELD_USER, held_live).await;
    fleet.cleanup().await;
    eprintln!("schedule test: {:.1}s", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_cron_scheduler_between_ticks() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    let mut fleet = Fleet::new("schedule-term");
    let batch = fleet.dir.join("b.txt");
    std::fs::write(&batch, batch_text(&lab, &[IDLE_USER])).unwrap();
    let port = free_port();
    // New Year's midnight: no pass starts during the test.
    let mut d = fleet
        .cmd(&["dispatch", "--cron", "0 0 1 1 *", "--job"])
        .arg(format!("term-{}", nanos()))
        .arg(format!("--metrics-addr=127.0.0.1:{port}"))
        .arg("--accounts")
        .arg(&batch)
        .arg(format!("--defaults={}", defaults(&lab)))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(fleet.dir.join("dispatch.log")).unwrap())
        .spawn()
        .expect("imapfleet dispatch --cron");
    // Ready once it serves /readyz; the next pass is announced in the metrics.
    let deadline = Instant::now() + Duration::from_secs(30);
    let next = loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let m = http_get(port, "/metrics");
            if let Some(v) =
                imapfleet_fleet::metrics::sample(&m, "imapfleet_next_pass_timestamp_seconds", &[])
            {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "the scheduler never came up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let now = chrono::Utc::now().timestamp() as f64;
    assert!(
        next > now && next <= now + 366.0 * 86_400.0,
        "next {next} now {now}"
    );
    let st = Command::new("kill")
        .args(["-TERM", &d.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = d.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    d.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let log = std::fs::read_to_string(fleet.dir.join("dispatch.log")).unwrap_or_default();
    assert_eq!(code, Some(0), "{out}\n{log}");
    assert!(!out.contains("pass "), "no pass was started: {out}");
    assert!(log.contains("scheduler stopped"), "{log}");
    fleet.children.clear();
    fleet.cleanup().await;
}

#[test]
fn every_and_cron_together_is_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("imapfleet-sched-usage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let b = dir.join("b.txt");
    std::fs::write(&b, "h1;u;p;h2;u;p;\n").unwrap();
    let run = |args: &[&str]| {
        let o = Command::new(bin())
            .arg("dispatch")
            .args(args)
            .arg("--accounts")
            .arg(&b)
            // Nothing must be reached.
            .env("IMAPFLEET_AMQP_URL", "amqp://127.0.0.1:1/%2f")
            .env("IMAPFLEET_REDIS_URL", "redis://127.0.0.1:1/")
            .env("IMAPFLEET_SECRET_KEY", "00".repeat(32))
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--every", "24h", "--cron", "0 2 * * *"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--every") && err.contains("--cron"), "{err}");
    let (code, err) = run(&["--every", "soon"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--cron", "0 25 * * *"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["--passes", "2"]);
    assert_eq!(code, Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
