//! The fleet through the built binary: `imapfleet dispatch` + separate `imapfleet worker` processes on
//! RabbitMQ and Redis, and `imapfleet run` (embedded), against the Dovecot lab.
//!
//! Needs the lab (`IMAPFLEET_LAB=1`) and, for the dispatch test, RabbitMQ and Redis
//! (`IMAPFLEET_SERVICES=1`, `scripts/services.sh start`); otherwise the tests print SKIP.
//! Users user0200..user0279 belong to these tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use imapfleet_imap::{Endpoint, Session};
use imapfleet_mailgen::MailboxSpec;
use imapfleet_sync::engine::SyncOptions;
use imapfleet_sync::verify::verify_account;
use imapfleet_tests::{bin, lab, Lab};
use serde_json::Value;

/// Accounts of the dispatch test (plus one with a wrong password).
const FLEET_ACCOUNTS: usize = 20;
const FLEET_FIRST_USER: usize = 200;
/// Worker processes of the dispatch test.
const WORKERS: usize = 3;
/// Accounts of the embedded `run` test.
const RUN_ACCOUNTS: usize = 8;
const RUN_FIRST_USER: usize = 240;
/// Accounts of the test dispatching one batch twice at once.
const TWICE_ACCOUNTS: usize = 6;
const TWICE_FIRST_USER: usize = 250;
/// The account of the kill -9 test.
const KILL_USER: usize = 260;
/// A password that must never show up anywhere.
const WRONG_PASSWORD: &str = "Wr0ng-Pa55-7c1e";

fn services() -> bool {
    if std::env::var("IMAPFLEET_SERVICES").as_deref() == Ok("1") {
        return true;
    }
    eprintln!("SKIP: IMAPFLEET_SERVICES is not 1 (RabbitMQ and Redis: scripts/services.sh start)");
    false
}

fn user(n: usize) -> String {
    format!("user{n:04}")
}

/// A small mailbox: 4 folders, 24 messages (some flagged \Deleted, left out by default).
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

/// Wipe both sides of `users` and fill host1; returns each one's live (not \Deleted) message count.
async fn prepare(lab: &Lab, users: &[String], seed0: u64) -> Vec<usize> {
    let mut live = Vec::new();
    for (i, u) in users.iter().enumerate() {
        lab.fresh(u);
        let sp = spec(seed0 + i as u64);
        let mut s = Session::connect(&lab.endpoint(1, u))
            .await
            .expect("connect host1");
        imapfleet_mailgen::fill(&mut s, '.', sp.generate())
            .await
            .expect("fill host1");
        s.logout().await;
        live.push(
            sp.generate()
                .map(|f| {
                    f.messages
                        .iter()
                        .filter(|m| !m.flags.iter().any(|f| f == "\\Deleted"))
                        .count()
                })
                .sum(),
        );
    }
    live
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

/// Every account deep-identical (verify) and exactly host1's live messages on host2 (no duplicate).
async fn check_copies(lab: &Lab, users: &[String], live: &[usize]) {
    for (u, n) in users.iter().zip(live) {
        let (ep1, ep2) = (lab.endpoint(1, u), lab.endpoint(2, u));
        let v = verify_account(&ep1, &ep2, &SyncOptions::default())
            .await
            .expect("verify");
        assert!(v.ok, "{u}: host2 differs from host1:\n{v}");
        assert_eq!(
            count(&ep2).await,
            *n,
            "{u}: host2 holds exactly host1's live messages"
        );
    }
}

fn batch_file(dir: &Path, name: &str, lab: &Lab, users: &[String], wrong: Option<&str>) -> PathBuf {
    let mut text = String::from("# fleet test batch\r\n\r\n");
    for u in users {
        text.push_str(&format!(
            "127.0.0.1;{u};{pw};127.0.0.1;{u};{pw};\r\n",
            pw = lab.password
        ));
    }
    if let Some(u) = wrong {
        text.push_str(&format!(
            "127.0.0.1;{u};{WRONG_PASSWORD};127.0.0.1;{u};{};\r\n",
            lab.password
        ));
    }
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write batch");
    p
}

fn defaults(lab: &Lab) -> String {
    format!(
        "--port1 {} --port2 {} --cafile1 {ca} --cafile2 {ca}",
        lab.host1_port,
        lab.host2_port,
        ca = lab.ca.display()
    )
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("imapfleet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
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

/// Sum of a metric's samples whose labels include all of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (m, lab) = series.split_once('{').unwrap_or((series, ""));
            (m == name
                && labels
                    .iter()
                    .all(|(k, v)| lab.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

fn wait_ready(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("a worker exited early: {st}");
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok()
            && http_get(port, "/readyz").starts_with("HTTP/1.1 200")
        {
            return;
        }
        assert!(Instant::now() < deadline, "worker on :{port} never ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sigterm(child: &Child) {
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("worker {} did not stop after SIGTERM", child.id());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_malformed_batch_is_refused_with_line_numbers_and_nothing_runs() {
    let dir = scratch("malformed");
    let bad = dir.join("bad.txt");
    std::fs::write(
        &bad,
        "# two good, three bad\nh1;u1;p1;h2;u1;p1;\nh1;u2;p2;h2\nh1;u3;p3;h2;u3;p3;--port1 70000;\nh1;u4;p;h2;u4;p;--nosuchoption;\nh1;u1;p1;h2;u1;p1;\n",
    )
    .unwrap();
    for cmd in ["dispatch", "run"] {
        let o = Command::new(bin())
            .args([cmd, "--accounts"])
            .arg(&bad)
            // Nothing must be reached: a broker URL that would fail loudly.
            .env("IMAPFLEET_AMQP_URL", "amqp://127.0.0.1:1/%2f")
            .env("IMAPFLEET_REDIS_URL", "redis://127.0.0.1:1/")
            .env("IMAPFLEET_SECRET_KEY", "00".repeat(32))
            .output()
            .expect("run imapfleet");
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {t}");
        for want in [
            "line 3: 4 fields",
            "line 4: ",
            "not a port",
            "line 5: ",
            "--nosuchoption",
            "line 6: duplicate",
        ] {
            assert!(t.contains(want), "{cmd}: expected {want:?} in:\n{t}");
        }
        assert!(t.contains("nothing enqueued"), "{t}");
        assert!(
            !t.contains("p1;") && !t.contains("p3"),
            "no password in the errors:\n{t}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_writes_a_report_that_matches_the_mailboxes() {
    let Some(lab) = lab() else { return };
    let users: Vec<String> = (0..RUN_ACCOUNTS)
        .map(|i| user(RUN_FIRST_USER + i))
        .collect();
    let live = prepare(&lab, &users, 500).await;
    let dir = scratch("run");
    let batch = batch_file(&dir, "batch.txt", &lab, &users, None);
    let report = dir.join("report.json");
    let o = Command::new(bin())
        .args([
            "run",
            "--workers",
            "4",
            "--slice-messages",
            "5",
            "--quiet",
            "--job",
            "embedded",
            "--accounts",
        ])
        .arg(&batch)
        .arg(format!("--defaults={}", defaults(&lab)))
        .arg("--report-json")
        .arg(&report)
        .output()
        .expect("imapfleet run");
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "{RUN_ACCOUNTS} account(s): {RUN_ACCOUNTS} done, 0 failed"
        )),
        "{out}"
    );
    let r: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report");
    let accounts = r["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), RUN_ACCOUNTS);
    for (i, a) in accounts.iter().enumerate() {
        assert_eq!(a["status"], "done", "{a:#}");
        assert_eq!(a["user1"], users[i].as_str());
        assert_eq!(
            a["totals"]["transferred"].as_u64(),
            Some(live[i] as u64),
            "{a:#}"
        );
        assert_eq!(a["totals"]["missing_on_host2"].as_u64(), Some(0));
    }
    assert_eq!(
        r["totals"]["transferred"].as_u64(),
        Some(live.iter().sum::<usize>() as u64)
    );
    check_copies(&lab, &users, &live).await;

    // A second run copies nothing and says all of it was there.
    let o = Command::new(bin())
        .args(["run", "--quiet", "--accounts"])
        .arg(&batch)
        .arg(format!("--defaults={}", defaults(&lab)))
        .arg("--report-json")
        .arg(&report)
        .output()
        .expect("imapfleet run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["totals"]["transferred"].as_u64(), Some(0), "{r:#}");
    assert_eq!(
        r["totals"]["skipped"].as_u64(),
        Some(live.iter().sum::<usize>() as u64)
    );
    check_copies(&lab, &users, &live).await;
}

/// A fleet under test: its own queue on the broker, a fresh sealing key, worker processes.
struct Fleet {
    dir: PathBuf,
    key: String,
    queue: String,
    workers: Vec<(Child, u16)>,
}

impl Fleet {
    fn new(name: &str) -> Fleet {
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .expect("random key");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        Fleet {
            dir: scratch(name),
            key: b.iter().map(|x| format!("{x:02x}")).collect(),
            queue: format!("imapfleet.test.{name}.{}.{nanos}", std::process::id()),
            workers: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("IMAPFLEET_SECRET_KEY", &self.key)
            .env("IMAPFLEET_QUEUE", &self.queue)
            .env("RUST_LOG", "warn,imapfleet_fleet=info")
            .env_remove("IMAPFLEET_CONFIG");
        c
    }

    /// `imapfleet dispatch`; returns the job id.
    fn dispatch(&self, lab: &Lab, batch: &Path, job: &str) -> String {
        let o = self
            .cmd(&["dispatch", "--job", job, "--accounts"])
            .arg(batch)
            .arg(format!("--defaults={}", defaults(lab)))
            .output()
            .expect("imapfleet dispatch");
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}");
        out.split_whitespace()
            .skip_while(|w| *w != "job")
            .nth(1)
            .expect("job id in the output")
            .to_string()
    }

    /// Start a worker serving metrics on a free port, and wait until it is ready.
    fn start_worker(&mut self, extra: &[&str]) -> usize {
        let n = self.workers.len();
        let port = free_port();
        let log = std::fs::File::create(self.dir.join(format!("worker{n}.log"))).unwrap();
        let mut c = self.cmd(&["worker"]);
        c.args(extra)
            .arg(format!("--metrics-addr=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = c.spawn().expect("start a worker");
        wait_ready(port, &mut child);
        self.workers.push((child, port));
        n
    }

    /// `status JOB --json --wait`: the job's state and the exit code.
    fn wait_job(&self, job: &str) -> (Value, Option<i32>) {
        let o = self
            .cmd(&["status", job, "--json", "--wait", "--wait-timeout", "300"])
            .output()
            .expect("status");
        let v = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", text(&o)));
        (v, o.status.code())
    }

    fn metrics(&self, n: usize) -> String {
        http_get(self.workers[n].1, "/metrics")
    }

    fn logs(&self) -> String {
        (0..self.workers.len())
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("worker{n}.log"))).unwrap_or_default()
            })
            .collect()
    }

    /// SIGTERM every worker still running; each must exit 0.
    fn stop(&mut self) {
        for (child, _) in &mut self.workers {
            if child.try_wait().ok().flatten().is_none() {
                sigterm(child);
            }
        }
        for (child, _) in &mut self.workers {
            let st = wait_exit(child, Duration::from_secs(60));
            assert!(st.success() || st.code().is_none(), "worker exit: {st}");
        }
    }

    async fn cleanup(&mut self) {
        for (child, _) in &mut self.workers {
            let _ = child.kill();
            let _ = child.wait();
        }
        use imapfleet_fleet::queue::{AmqpConfig, AmqpQueue};
        if let Ok(q) = AmqpQueue::connect(AmqpConfig::new(self.queue.clone())).await {
            let _ = q.delete_queues(&[]).await;
            q.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_and_three_worker_processes_copy_every_account_once() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    let users: Vec<String> = (0..FLEET_ACCOUNTS)
        .map(|i| user(FLEET_FIRST_USER + i))
        .collect();
    let wrong = user(FLEET_FIRST_USER + FLEET_ACCOUNTS);
    lab.fresh(&wrong);
    let live = prepare(&lab, &users, 300).await;
    let mut fleet = Fleet::new("fleet");
    let batch = batch_file(&fleet.dir, "batch.txt", &lab, &users, Some(&wrong));
    let job = fleet.dispatch(&lab, &batch, "fleet-test");
    for _ in 0..WORKERS {
        fleet.start_worker(&[
            "--concurrency",
            "2",
            "--slice-messages",
            "5",
            "--max-attempts",
            "3",
        ]);
    }

    let (view, code) = fleet.wait_job(&job);
    // One account failed (auth), so the exit code is host1's authentication class.
    assert_eq!(code, Some(10), "{view:#}");
    let accounts = view["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), FLEET_ACCOUNTS + 1);
    let mut copied = 0u64;
    for (i, a) in accounts[..FLEET_ACCOUNTS].iter().enumerate() {
        assert_eq!(a["status"], "done", "{a:#}");
        assert_eq!(a["user1"], users[i].as_str());
        assert_eq!(
            a["totals"]["transferred"].as_u64(),
            Some(live[i] as u64),
            "{a:#}"
        );
        copied += live[i] as u64;
    }
    let bad = &accounts[FLEET_ACCOUNTS];
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["error_class"], "auth_host1");
    assert_eq!(view["totals"]["transferred"].as_u64(), Some(copied));
    assert_eq!(
        view["by_status"]["done"].as_u64(),
        Some(FLEET_ACCOUNTS as u64)
    );

    // The human status says the same.
    let human = text(
        &fleet
            .cmd(&["status", &job])
            .output()
            .expect("imapfleet status"),
    );
    assert!(
        human.contains(&format!(
            "{} account(s): {FLEET_ACCOUNTS} done, 1 failed, 0 running, 0 pending",
            FLEET_ACCOUNTS + 1
        )),
        "{human}"
    );
    assert!(
        human.contains(&format!("totals: {copied} messages copied")),
        "{human}"
    );

    // The workers' metrics add up to what was copied.
    let (mut m_copied, mut m_bytes, mut m_auth, mut m_tasks) = (0.0, 0.0, 0.0, 0.0);
    for n in 0..WORKERS {
        let m = fleet.metrics(n);
        assert!(
            !m.contains(WRONG_PASSWORD) && !m.contains(&fleet.key),
            "a secret in the metrics"
        );
        m_copied += metric(&m, "imapfleet_messages_copied_total", &[("job", &job)]);
        m_bytes += metric(&m, "imapfleet_bytes_copied_total", &[("job", &job)]);
        m_auth += metric(
            &m,
            "imapfleet_errors_total",
            &[("job", &job), ("class", "auth_host1")],
        );
        m_tasks += metric(
            &m,
            "imapfleet_tasks_total",
            &[("job", &job), ("kind", "account")],
        );
        assert_eq!(metric(&m, "imapfleet_tasks_in_flight", &[]), 0.0);
    }
    assert_eq!(m_copied as u64, copied);
    assert_eq!(m_bytes as u64, view["totals"]["bytes"].as_u64().unwrap());
    assert_eq!(m_auth, 1.0);
    assert_eq!(m_tasks as usize, FLEET_ACCOUNTS + 1);

    // No password or key on any command line.
    for (child, _) in &fleet.workers {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(WRONG_PASSWORD) && !cmdline.contains(&fleet.key));
    }

    // SIGTERM: each worker stops cleanly; nothing secret in their logs.
    fleet.stop();
    let logs = fleet.logs();
    assert!(
        !logs.contains(WRONG_PASSWORD) && !logs.contains(&fleet.key),
        "a secret in a worker log"
    );

    check_copies(&lab, &users, &live).await;
    fleet.cleanup().await;
}

/// One line of a worker's run log.
#[derive(Debug, Clone)]
struct Run {
    pair: String,
    folder: String,
    pair_fence: u64,
    folder_fence: u64,
    start: u64,
    end: u64,
    pid: u64,
}

fn run_log(path: &Path) -> Vec<Run> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("run log line");
            Run {
                pair: v["pair_key"].as_str().unwrap().to_string(),
                folder: v["folder_key"].as_str().unwrap().to_string(),
                pair_fence: v["pair_fence"].as_u64().unwrap(),
                folder_fence: v["folder_fence"].as_u64().unwrap(),
                start: v["start_ms"].as_u64().unwrap(),
                end: v["end_ms"].as_u64().unwrap(),
                pid: v["pid"].as_u64().unwrap(),
            }
        })
        .collect()
}

/// Runs of one lock key never overlap, and their fences grow with time.
fn assert_no_overlap(runs: &[Run], key: impl Fn(&Run) -> (&str, u64)) {
    let mut by_key: std::collections::HashMap<&str, Vec<(u64, u64, u64)>> = Default::default();
    for r in runs {
        let (k, fence) = key(r);
        by_key.entry(k).or_default().push((r.start, r.end, fence));
    }
    for (k, mut v) in by_key {
        v.sort();
        for w in v.windows(2) {
            assert!(
                w[1].0 >= w[0].1,
                "two runs overlap on {k}: {:?} and {:?}",
                w[0],
                w[1]
            );
            assert!(
                w[1].2 > w[0].2,
                "fence did not grow on {k}: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_dispatched_twice_at_once_never_overlaps_on_a_folder() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    let users: Vec<String> = (0..TWICE_ACCOUNTS)
        .map(|i| user(TWICE_FIRST_USER + i))
        .collect();
    let live = prepare(&lab, &users, 700).await;
    let mut fleet = Fleet::new("twice");
    let batch = batch_file(&fleet.dir, "batch.txt", &lab, &users, None);
    let log = fleet.dir.join("runs.jsonl");
    let log_arg = format!("--run-log={}", log.display());
    for _ in 0..WORKERS {
        fleet.start_worker(&["--concurrency", "3", "--slice-messages", "3", &log_arg]);
    }
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| fleet.dispatch(&lab, &batch, "twice-a"));
        let b = s.spawn(|| fleet.dispatch(&lab, &batch, "twice-b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut total = 0;
    for job in [&a, &b] {
        let (view, code) = fleet.wait_job(job);
        assert_eq!(code, Some(0), "{view:#}");
        assert_eq!(
            view["by_status"]["done"].as_u64(),
            Some(TWICE_ACCOUNTS as u64),
            "{view:#}"
        );
        total += view["totals"]["transferred"].as_u64().unwrap();
    }
    // Each message was copied by one of the two jobs, once.
    assert_eq!(total, live.iter().sum::<usize>() as u64);
    let runs = run_log(&log);
    assert!(runs.len() >= 2 * TWICE_ACCOUNTS * 4, "{} runs", runs.len());
    assert_no_overlap(&runs, |r| (r.pair.as_str(), r.pair_fence));
    assert_no_overlap(&runs, |r| (r.folder.as_str(), r.folder_fence));
    fleet.stop();
    check_copies(&lab, &users, &live).await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_folder_loses_and_duplicates_nothing() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    let u = user(KILL_USER);
    lab.fresh(&u);
    // One big folder: 300 messages, copied 10 per slice.
    let sp = MailboxSpec {
        folders: 1,
        messages: 300,
        target_bytes: 3_000_000,
        big_messages: 0,
        ..MailboxSpec::small()
    }
    .with_seed(900);
    {
        let mut s = Session::connect(&lab.endpoint(1, &u))
            .await
            .expect("connect host1");
        imapfleet_mailgen::fill(&mut s, '.', sp.generate())
            .await
            .expect("fill");
        s.logout().await;
    }
    let live: usize = sp
        .generate()
        .map(|f| {
            f.messages
                .iter()
                .filter(|m| !m.flags.iter().any(|f| f == "\\Deleted"))
                .count()
        })
        .sum();
    let mut fleet = Fleet::new("kill");
    let batch = batch_file(
        &fleet.dir,
        "batch.txt",
        &lab,
        std::slice::from_ref(&u),
        None,
    );
    let log = fleet.dir.join("runs.jsonl");
    let log_arg = format!("--run-log={}", log.display());
    let args = [
        "--concurrency",
        "1",
        "--slice-messages",
        "10",
        "--lease-ttl",
        "4",
        &log_arg,
    ];
    let job = fleet.dispatch(&lab, &batch, "kill");
    fleet.start_worker(&args);
    // Let it copy a few slices, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let m = fleet.metrics(0);
        if metric(&m, "imapfleet_messages_copied_total", &[("job", &job)]) >= 30.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the first worker copies nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    fleet.workers[0].0.kill().expect("kill -9");
    let _ = fleet.workers[0].0.wait();
    fleet.start_worker(&args);
    let (view, code) = fleet.wait_job(&job);
    assert_eq!(code, Some(0), "{view:#}");
    let a = &view["accounts"][0];
    assert_eq!(a["status"], "done", "{a:#}");
    let pids: std::collections::HashSet<u64> = run_log(&log).iter().map(|r| r.pid).collect();
    assert_eq!(pids.len(), 2, "both workers ran slices");
    fleet.stop();
    check_copies(&lab, std::slice::from_ref(&u), &[live]).await;
    fleet.cleanup().await;
}
