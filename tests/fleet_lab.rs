//! The fleet through the built binary: `imapfleet dispatch` + separate `imapfleet worker` processes on
//! RabbitMQ and Redis, and `imapfleet run` (embedded), against the Dovecot lab.
//!
//! Needs the lab (`IMAPFLEET_LAB=1`) and, for the dispatch test, RabbitMQ and Redis
//! (`IMAPFLEET_SERVICES=1`, `scripts/services.sh start`); otherwise the tests print SKIP.
//! Users user0240..user0260 and user0400..user0511 belong to these tests.

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

/// Accounts of the dispatch test (plus one with a wrong password: user0500).
const FLEET_ACCOUNTS: usize = 100;
const FLEET_FIRST_USER: usize = 400;
/// Accounts seeded / verified at once.
const PARALLEL: usize = 8;
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
/// The accounts of the connection-limit test: one waited for, one given up on.
const LIMIT_USERS: [usize; 2] = [510, 511];
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

/// A tiny mailbox for the 100-account test: 3 folders (INBOX included), 9 messages of 2-8 kB.
fn tiny_spec(seed: u64) -> MailboxSpec {
    MailboxSpec {
        folders: 3,
        messages: 9,
        target_bytes: 45_000,
        min_message_bytes: 2 * 1024,
        max_message_bytes: 8 * 1024,
        big_messages: 0,
        ..MailboxSpec::small()
    }
    .with_seed(seed)
}

/// Messages of a spec that are not flagged \Deleted (what a default sync copies).
fn live_messages(sp: &MailboxSpec) -> usize {
    sp.live_messages()
}

/// Wipe both sides of `users` and fill host1; returns each one's live (not \Deleted) message count.
async fn prepare(lab: &Lab, users: &[String], seed0: u64) -> Vec<usize> {
    prepare_with(lab, users, seed0, spec).await
}

/// [`prepare`] with another mailbox spec, [`PARALLEL`] accounts at a time.
async fn prepare_with(
    lab: &Lab,
    users: &[String],
    seed0: u64,
    spec: fn(u64) -> MailboxSpec,
) -> Vec<usize> {
    // Wipes are a script each (doveadm kick + rm): a few threads.
    tokio::task::block_in_place(|| {
        std::thread::scope(|s| {
            for chunk in users.chunks(users.len().div_ceil(PARALLEL).max(1)) {
                s.spawn(move || chunk.iter().for_each(|u| lab.fresh(u)));
            }
        })
    });
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for (i, u) in users.iter().enumerate() {
        let (ep, sp, slots) = (lab.endpoint(1, u), spec(seed0 + i as u64), slots.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            let mut s = Session::connect(&ep).await.expect("connect host1");
            imapfleet_mailgen::fill(&mut s, '.', sp.generate())
                .await
                .expect("fill host1");
            s.logout().await;
            (i, live_messages(&sp))
        });
    }
    let mut live = vec![0; users.len()];
    while let Some(r) = set.join_next().await {
        let (i, n) = r.expect("a fill task panicked");
        live[i] = n;
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

/// Every account deep-identical (verify) and exactly host1's live messages on host2 (no duplicate),
/// [`PARALLEL`] accounts at a time. Returns the messages on host2 in all.
async fn check_copies(lab: &Lab, users: &[String], live: &[usize]) -> usize {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut set = tokio::task::JoinSet::new();
    for (u, n) in users.iter().zip(live) {
        let (u, n, slots) = (u.clone(), *n, slots.clone());
        let (ep1, ep2) = (lab.endpoint(1, &u), lab.endpoint(2, &u));
        set.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("semaphore");
            let v = verify_account(&ep1, &ep2, &SyncOptions::default())
                .await
                .map_err(|e| format!("{u}: verify: {e}"))?;
            if !v.ok {
                return Err(format!("{u}: host2 differs from host1:\n{v}"));
            }
            let on2 = count(&ep2).await;
            if on2 != n {
                return Err(format!(
                    "{u}: host2 holds {on2} messages, host1 {n} live ones (a duplicate or a loss)"
                ));
            }
            Ok(on2)
        });
    }
    let mut total = 0;
    let mut bad = Vec::new();
    while let Some(r) = set.join_next().await {
        match r.expect("a check task panicked") {
            Ok(n) => total += n,
            Err(e) => bad.push(e),
        }
    }
    assert!(
        bad.is_empty(),
        "{} account(s) wrong:\n{}",
        bad.len(),
        bad.join("\n")
    );
    total
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
    /// More environment for every command.
    env: Vec<(String, String)>,
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
            env: Vec::new(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .env("IMAPFLEET_SECRET_KEY", &self.key)
            .env("IMAPFLEET_QUEUE", &self.queue)
            .env("RUST_LOG", "warn,imapfleet_fleet=info")
            .env_remove("IMAPFLEET_CONFIG");
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    /// `imapfleet dispatch`; returns the job id.
    fn dispatch(&self, lab: &Lab, batch: &Path, job: &str) -> String {
        self.dispatch_out(lab, batch, job).0
    }

    /// `imapfleet dispatch`; returns the job id and what the command printed.
    fn dispatch_out(&self, lab: &Lab, batch: &Path, job: &str) -> (String, String) {
        self.dispatch_with(&defaults(lab), batch, job)
    }

    /// `imapfleet dispatch` with these `--defaults`.
    fn dispatch_with(&self, defaults: &str, batch: &Path, job: &str) -> (String, String) {
        let o = self
            .cmd(&["dispatch", "--job", job, "--accounts"])
            .arg(batch)
            .arg(format!("--defaults={defaults}"))
            .output()
            .expect("imapfleet dispatch");
        let out = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}");
        let id = out
            .split_whitespace()
            .skip_while(|w| *w != "job")
            .nth(1)
            .expect("job id in the output")
            .to_string();
        (id, out)
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

/// Up to `n` task bodies waiting in the fleet's queue, read without taking them: held unacked by one
/// consumer (prefetch > n), then put back.
async fn queued_bodies(queue: &str, n: usize) -> Vec<Vec<u8>> {
    use imapfleet_fleet::queue::{AmqpConfig, AmqpQueue, Delivery, TaskQueue};
    let prefetch = u16::try_from(n + 16).unwrap_or(u16::MAX);
    let q = AmqpQueue::connect(AmqpConfig::new(queue.to_string()).with_prefetch(prefetch))
        .await
        .expect("connect to RabbitMQ");
    let mut held: Vec<Box<dyn Delivery>> = Vec::new();
    while held.len() < n {
        match tokio::time::timeout(Duration::from_secs(10), q.next()).await {
            Ok(Ok(Some(d))) => held.push(d),
            Ok(other) => panic!("reading the queue: {:?}", other.err()),
            Err(_) => break,
        }
    }
    let bodies = held.iter().map(|d| d.body().to_vec()).collect();
    for d in held {
        d.requeue().await.expect("put a task back");
    }
    q.shutdown().await;
    bodies
}

/// Command lines of every process that holds one of `needles`.
fn cmdlines_holding(needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut seen = 0;
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        seen += 1;
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if needles.iter().any(|n| line.contains(n)) {
            hits.push(format!("{}: {line}", name.to_string_lossy()));
        }
    }
    assert!(seen > 3, "could not read /proc/*/cmdline");
    hits
}

/// The workers' metrics, once every worker has settled everything (a counter is incremented just
/// after the state write that `status` reads, so a scrape right at the end may miss the last one).
fn settled_metrics(fleet: &Fleet, copied: u64, job: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<String> = (0..fleet.workers.len()).map(|n| fleet.metrics(n)).collect();
        let in_flight: f64 = all
            .iter()
            .map(|m| metric(m, "imapfleet_tasks_in_flight", &[]))
            .sum();
        let m_copied: f64 = all
            .iter()
            .map(|m| metric(m, "imapfleet_messages_copied_total", &[(JOB, job)]))
            .sum();
        if (in_flight == 0.0 && m_copied as u64 == copied) || Instant::now() > deadline {
            return all;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The label of the job id on the metrics.
const JOB: &str = imapfleet_fleet::metrics::JOB_LABEL;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_and_three_worker_processes_copy_every_account_once() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    let t0 = Instant::now();
    let users: Vec<String> = (0..FLEET_ACCOUNTS)
        .map(|i| user(FLEET_FIRST_USER + i))
        .collect();
    let wrong = user(FLEET_FIRST_USER + FLEET_ACCOUNTS);
    let mut all_users = users.clone();
    all_users.push(wrong.clone());
    let mut live = prepare_with(&lab, &all_users, 3000, tiny_spec).await;
    live.pop();
    let seeded = t0.elapsed();
    eprintln!("fleet test: seeded in {:.1} s", seeded.as_secs_f64());
    let mut fleet = Fleet::new("fleet");
    let batch = batch_file(&fleet.dir, "batch.txt", &lab, &users, Some(&wrong));
    let t1 = Instant::now();
    let (job, dispatch_out) = fleet.dispatch_out(&lab, &batch, "fleet-test");

    // RabbitMQ holds the account tasks with their passwords sealed, never in the clear.
    let bodies = queued_bodies(&fleet.queue, FLEET_ACCOUNTS + 1).await;
    assert_eq!(bodies.len(), FLEET_ACCOUNTS + 1, "one task per account");
    for b in &bodies {
        let b = String::from_utf8_lossy(b);
        assert!(b.contains("\"sealed_password\""), "not a task body: {b}");
        assert!(
            !b.contains(WRONG_PASSWORD)
                && !b.contains(&format!("\"{}\"", lab.password))
                && !b.contains(&fleet.key),
            "a secret in a queued task: {b}"
        );
    }

    for _ in 0..WORKERS {
        fleet.start_worker(&[
            "--concurrency",
            "2",
            "--slice-messages",
            "2",
            "--max-attempts",
            "3",
        ]);
    }
    let (view, code) = fleet.wait_job(&job);
    let ran = t1.elapsed();
    eprintln!("fleet test: the job ended after {:.1} s", ran.as_secs_f64());
    // One account failed (auth), so the exit code is host1's authentication class.
    assert_eq!(code, Some(10), "{view:#}");
    let accounts = view["accounts"].as_array().expect("accounts");
    assert_eq!(accounts.len(), FLEET_ACCOUNTS + 1);
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    // Sums of the per-account reports, counter by counter.
    let (mut copied, mut bytes, mut skipped, mut flags, mut slices) = (0, 0, 0, 0, 0);
    for (i, a) in accounts[..FLEET_ACCOUNTS].iter().enumerate() {
        assert_eq!(a["status"], "done", "{a:#}");
        assert_eq!(a["user1"], users[i].as_str());
        assert_eq!(n(&a["totals"]["transferred"]), live[i] as u64, "{a:#}");
        assert_eq!(n(&a["totals"]["missing_on_host2"]), 0, "{a:#}");
        assert_eq!(n(&a["totals"]["errors"]), 0, "{a:#}");
        copied += n(&a["totals"]["transferred"]);
        bytes += n(&a["totals"]["bytes"]);
        skipped += n(&a["totals"]["skipped"]);
        flags += n(&a["totals"]["flags_updated"]);
        slices += a["folders"]
            .as_array()
            .expect("folders")
            .iter()
            .map(|f| n(&f["slices"]))
            .sum::<u64>();
    }
    assert_eq!(copied, live.iter().sum::<usize>() as u64);
    assert!(
        slices > 3 * FLEET_ACCOUNTS as u64,
        "small slices: some folders took several ({slices} slices)"
    );
    let bad = &accounts[FLEET_ACCOUNTS];
    assert_eq!(bad["user1"], wrong.as_str());
    assert_eq!(bad["status"], "failed");
    assert_eq!(bad["error_class"], "auth_host1");
    assert_eq!(n(&bad["totals"]["transferred"]), 0);
    assert_eq!(n(&view["totals"]["transferred"]), copied);
    assert_eq!(n(&view["totals"]["bytes"]), bytes);
    assert_eq!(n(&view["totals"]["skipped"]), skipped);
    assert_eq!(n(&view["totals"]["flags_updated"]), flags);
    assert_eq!(n(&view["by_status"]["done"]), FLEET_ACCOUNTS as u64);
    assert_eq!(n(&view["by_status"]["failed"]), 1);

    // The human status says the same, account by account.
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
    for (a, u) in accounts.iter().zip(&all_users) {
        let line = human
            .lines()
            .find(|l| {
                l.contains(&format!(" {u}@127.0.0.1:{} -> ", lab.host1_port))
                    && l.contains(&format!(" -> {u}@127.0.0.1:{} ", lab.host2_port))
            })
            .unwrap_or_else(|| panic!("no line for {u} in:\n{human}"));
        let status = a["status"].as_str().unwrap();
        let copied_here = n(&a["totals"]["transferred"]);
        assert!(
            line.contains(&format!("  {status}"))
                && line.contains(&format!(" copied {copied_here} (")),
            "{u}: the JSON says {status}, {copied_here} copied; the human status says: {line}"
        );
    }

    // The workers' metrics add up, counter by counter, to the reports.
    let all = settled_metrics(&fleet, copied, &job);
    let sum = |name: &str, labels: &[(&str, &str)]| -> u64 {
        all.iter().map(|m| metric(m, name, labels)).sum::<f64>() as u64
    };
    let j = [(JOB, job.as_str())];
    assert_eq!(sum("imapfleet_messages_copied_total", &j), copied, "copied");
    assert_eq!(sum("imapfleet_bytes_copied_total", &j), bytes, "bytes");
    assert_eq!(
        sum("imapfleet_messages_skipped_total", &j),
        skipped,
        "skipped"
    );
    assert_eq!(sum("imapfleet_flags_updated_total", &j), flags, "flags");
    assert_eq!(
        sum("imapfleet_tasks_total", &[(JOB, &job), ("kind", "account")]),
        FLEET_ACCOUNTS as u64 + 1,
        "account tasks"
    );
    assert_eq!(
        sum("imapfleet_tasks_total", &[(JOB, &job), ("kind", "folder")]),
        slices,
        "folder tasks settled = slices recorded"
    );
    assert_eq!(
        sum("imapfleet_folder_task_duration_seconds_count", &j),
        slices,
        "one duration per slice"
    );
    assert_eq!(sum("imapfleet_errors_total", &j), 1, "one error in all");
    assert_eq!(
        sum(
            "imapfleet_errors_total",
            &[(JOB, &job), ("class", "auth_host1")]
        ),
        1
    );
    assert_eq!(sum("imapfleet_task_retries_total", &j), 0, "no retry");
    assert_eq!(sum("imapfleet_dead_lettered_total", &j), 0, "nothing dead");
    assert_eq!(sum("imapfleet_tasks_in_flight", &[]), 0);
    assert_eq!(sum("imapfleet_imap_connections_open", &[]), 0);
    for m in &all {
        assert!(
            !m.contains(WRONG_PASSWORD) && !m.contains(&fleet.key),
            "a secret in the metrics"
        );
        assert!(
            !m.lines()
                .any(|l| l.contains("{job=") || l.contains(",job=")),
            "a `job` label (Prometheus's scrape job) in the metrics"
        );
    }

    // No password or key on any command line, while the workers still run.
    let hits = cmdlines_holding(&[WRONG_PASSWORD, &fleet.key]);
    assert!(hits.is_empty(), "a secret on a command line: {hits:?}");

    // SIGTERM: each worker stops cleanly; nothing secret in their logs or our commands' output.
    fleet.stop();
    let worker_logs = fleet.logs();
    assert!(
        worker_logs.contains("account failed") && worker_logs.contains("auth_host1"),
        "the worker logs say which account failed and why:\n{worker_logs}"
    );
    let logs = format!("{worker_logs}{dispatch_out}{human}");
    assert!(
        !logs.contains(WRONG_PASSWORD) && !logs.contains(&fleet.key),
        "a secret in a worker log or a command's output"
    );

    let t2 = Instant::now();
    let on_host2 = check_copies(&lab, &users, &live).await;
    assert_eq!(
        on_host2 as u64, copied,
        "what is on host2 is what was copied"
    );
    let checked = t2.elapsed();
    fleet.cleanup().await;
    println!(
        "fleet test: {} accounts ({copied} messages, {bytes} bytes, {slices} slices): seeded in {:.1} s, \
         dispatch + {WORKERS} workers to the end in {:.1} s, verified in {:.1} s; wall time {:.1} s",
        FLEET_ACCOUNTS + 1,
        seeded.as_secs_f64(),
        ran.as_secs_f64(),
        checked.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
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
        if metric(&m, "imapfleet_messages_copied_total", &[(JOB, &job)]) >= 30.0 {
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

/// `scripts/lab.sh ARGS`, its standard output.
fn lab_sh(args: &[&str]) -> String {
    let o = Command::new(imapfleet_tests::root().join("scripts/lab.sh"))
        .args(args)
        .output()
        .expect("scripts/lab.sh");
    assert!(o.status.success(), "lab.sh {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A worker refused with `NO [LIMIT]` (Dovecot's mail_max_userip_connections) backs off through the
/// broker's delay queues and finishes once the server lets it in; a server that keeps refusing is
/// given up on after IMAPFLEET_LIMIT_MAX_WAIT: `connection_limit`, host and user named, dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_at_its_connection_limit_is_waited_for_then_given_up_on() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    // host1: a lab-host1 instance that lets each user in once at a time.
    let mut fleet = Fleet::new("limit");
    let ov = fleet.dir.join("one-connection.conf");
    std::fs::write(
        &ov,
        "protocol imap {\n  mail_max_userip_connections = 1\n}\n",
    )
    .unwrap();
    let port: u16 = lab_sh(&["profile", "lab-host1", ov.to_str().unwrap()])
        .trim()
        .parse()
        .expect("profile port");
    let ep1 = |u: &str| Endpoint {
        port,
        ..lab.endpoint(1, u)
    };
    let users: Vec<String> = LIMIT_USERS.iter().map(|n| user(*n)).collect();
    let mut live = Vec::new();
    for (i, u) in users.iter().enumerate() {
        lab_sh(&["wipe", &port.to_string(), u]);
        lab.wipe(2, u);
        let sp = tiny_spec(4000 + i as u64);
        let mut s = Session::connect(&ep1(u)).await.expect("connect host1");
        imapfleet_mailgen::fill(&mut s, '.', sp.generate())
            .await
            .expect("fill");
        s.logout().await;
        live.push(live_messages(&sp));
    }
    let defaults = format!(
        "--port1 {port} --port2 {} --cafile1 {ca} --cafile2 {ca}",
        lab.host2_port,
        ca = lab.ca.display()
    );
    // Refusals at about 0, 2 and 6 s: the third one is past the 6 s and gives up.
    fleet
        .env
        .push(("IMAPFLEET_LIMIT_MAX_WAIT".into(), "6".into()));
    fleet.start_worker(&["--concurrency", "1", "--slice-messages", "5"]);
    let backoffs = |fleet: &Fleet, job: &str| {
        metric(
            &fleet.metrics(0),
            "imapfleet_limit_backoffs_total",
            &[(JOB, job)],
        )
    };
    let wait_backoffs = |fleet: &Fleet, job: &str, n: f64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while backoffs(fleet, job) < n {
            assert!(Instant::now() < deadline, "no {n} limit refusals");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // 1. Held while another session of the user is open; finishes once it is closed.
    let hold = Session::connect(&ep1(&users[0]))
        .await
        .expect("hold a session");
    let batch = batch_file(&fleet.dir, "a.txt", &lab, &users[..1], None);
    let (job, _) = fleet.dispatch_with(&defaults, &batch, "limit-a");
    wait_backoffs(&fleet, &job, 2.0);
    let o = fleet.cmd(&["status", &job, "--json"]).output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).expect("status JSON");
    let status = v["accounts"][0]["status"].as_str().unwrap().to_string();
    assert!(
        status == "pending" || status == "running",
        "refused for its limit, the account is waiting, not failed: {v:#}"
    );
    hold.logout().await;
    let (view, code) = fleet.wait_job(&job);
    assert_eq!(code, Some(0), "{view:#}");
    assert_eq!(view["accounts"][0]["status"], "done", "{view:#}");
    assert_eq!(
        view["accounts"][0]["totals"]["transferred"].as_u64(),
        Some(live[0] as u64)
    );
    let v = verify_account(
        &ep1(&users[0]),
        &lab.endpoint(2, &users[0]),
        &SyncOptions::default(),
    )
    .await
    .expect("verify");
    assert!(v.ok, "{v}");
    assert_eq!(count(&lab.endpoint(2, &users[0])).await, live[0]);
    let m = fleet.metrics(0);
    assert_eq!(
        metric(&m, "imapfleet_task_retries_total", &[(JOB, &job)]),
        0.0,
        "refusals are not attempts"
    );
    assert_eq!(
        metric(&m, "imapfleet_dead_lettered_total", &[(JOB, &job)]),
        0.0
    );

    // 2. Refused for longer than IMAPFLEET_LIMIT_MAX_WAIT: failed as connection_limit, dead-lettered.
    let hold = Session::connect(&ep1(&users[1]))
        .await
        .expect("hold a session");
    let batch = batch_file(&fleet.dir, "b.txt", &lab, &users[1..], None);
    let (job, _) = fleet.dispatch_with(&defaults, &batch, "limit-b");
    let started = Instant::now();
    let (view, code) = fleet.wait_job(&job);
    let took = started.elapsed();
    hold.logout().await;
    assert_ne!(code, Some(0), "{view:#}");
    let a = &view["accounts"][0];
    assert_eq!(a["status"], "failed", "{a:#}");
    assert_eq!(a["error_class"], "connection_limit", "{a:#}");
    let why = a["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        why.contains(&format!("127.0.0.1:{port}")) && why.contains(&users[1]),
        "the error names the host and the user: {why}"
    );
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(60),
        "given up after about 6 s: {took:?}"
    );
    assert!(backoffs(&fleet, &job) >= 3.0);
    assert_eq!(
        metric(
            &fleet.metrics(0),
            "imapfleet_errors_total",
            &[(JOB, &job), ("class", "connection_limit")]
        ),
        1.0
    );
    use imapfleet_fleet::queue::{AmqpConfig, AmqpQueue, TaskQueue};
    let q = AmqpQueue::connect(AmqpConfig::new(fleet.queue.clone()))
        .await
        .expect("connect to RabbitMQ");
    let dead = q.dead_letter_list(10).await.expect("dead letters");
    q.shutdown().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(
        dead[0].error.starts_with("connection limit: ") && dead[0].error.contains(&users[1]),
        "{}",
        dead[0].error
    );
    assert_eq!(
        count(&lab.endpoint(2, &users[1])).await,
        0,
        "nothing copied"
    );
    fleet.stop();
    fleet.cleanup().await;
}

/// The accounts of the nightly-pass test (user0610..user0613).
const NIGHTLY_USERS: std::ops::Range<usize> = 610..614;

/// Sessions and SELECT/EXAMINE commands in Dovecot's raw log of `user` on the profile instance at
/// `port` (every session of the user since its last `lab.sh wipe PORT USER`).
fn rawlog(lab: &Lab, port: u16, user: &str) -> (usize, usize) {
    let dir = lab.dir.join(format!("p{port}/rawlog/{user}"));
    let mut sessions = 0;
    let mut selects = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("rawlog entry").path();
        if p.extension().and_then(|x| x.to_str()) != Some("in") {
            continue;
        }
        sessions += 1;
        let bytes = std::fs::read(&p).expect("read rawlog");
        // "<timestamp> <tag> <COMMAND> ..."
        selects += String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|l| {
                let w: Vec<&str> = l.split_whitespace().take(3).collect();
                w.len() == 3
                    && (w[2].eq_ignore_ascii_case("SELECT") || w[2].eq_ignore_ascii_case("EXAMINE"))
            })
            .count();
    }
    (sessions, selects)
}

/// Every user's raw log on both sides, once it stopped growing (Dovecot writes it as it goes).
fn rawlogs(lab: &Lab, ports: [u16; 2], users: &[String]) -> Vec<[(usize, usize); 2]> {
    let read = || -> Vec<[(usize, usize); 2]> {
        users
            .iter()
            .map(|u| [rawlog(lab, ports[0], u), rawlog(lab, ports[1], u)])
            .collect()
    };
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = read();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Folder and account tasks the workers finished for `job`, once none is in flight.
fn tasks_done(fleet: &Fleet, job: &str, accounts: usize) -> (f64, f64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all: Vec<String> = (0..fleet.workers.len()).map(|n| fleet.metrics(n)).collect();
        let sum = |name: &str, labels: &[(&str, &str)]| -> f64 {
            all.iter().map(|m| metric(m, name, labels)).sum()
        };
        let in_flight = sum("imapfleet_tasks_in_flight", &[]);
        let acc = sum("imapfleet_tasks_total", &[(JOB, job), ("kind", "account")]);
        let fold = sum("imapfleet_tasks_total", &[(JOB, job), ("kind", "folder")]);
        if (in_flight == 0.0 && acc as usize == accounts) || Instant::now() > deadline {
            return (acc, fold);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Nightly passes through dispatch + worker processes, with the saved sync state in Redis:
/// after no change, no folder task and no SELECT on either side (Dovecot's raw logs: one session
/// per side and account, the account task's); after a new message in one folder of one account,
/// only that folder gets a task; with the sync state deleted from Redis, every folder is read
/// again with the same result and no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_passes_through_the_fleet_skip_unchanged_folders() {
    let Some(lab) = lab() else { return };
    if !services() {
        return;
    }
    // Profile instances keep raw logs of every session (the main lab instances do not).
    let p1: u16 = lab_sh(&["profile", "lab-host1"])
        .trim()
        .parse()
        .expect("profile port");
    let p2: u16 = lab_sh(&["profile", "lab-host2"])
        .trim()
        .parse()
        .expect("profile port");
    let ep = |host: u8, u: &str| Endpoint {
        port: if host == 1 { p1 } else { p2 },
        ..lab.endpoint(host, u)
    };
    let users: Vec<String> = NIGHTLY_USERS.map(user).collect();
    let redis_url =
        std::env::var("IMAPFLEET_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let sync_state = imapfleet_fleet::syncstate::RedisSyncState::connect(&redis_url, None)
        .await
        .expect("Redis");
    let wipe_sync_state = || async {
        use imapfleet_sync::state::SyncStateStore;
        for u in &users {
            let id = imapfleet_sync::state::account_id(&ep(1, u), &ep(2, u));
            sync_state
                .wipe(&id)
                .await
                .expect("delete the sync state keys");
        }
    };
    let mut live = Vec::new();
    for (i, u) in users.iter().enumerate() {
        lab_sh(&["wipe", &p1.to_string(), u]);
        lab_sh(&["wipe", &p2.to_string(), u]);
        let sp = spec(6100 + i as u64);
        let mut s = Session::connect(&ep(1, u)).await.expect("connect host1");
        imapfleet_mailgen::fill(&mut s, '.', sp.generate())
            .await
            .expect("fill");
        s.logout().await;
        live.push(live_messages(&sp));
    }
    wipe_sync_state().await;
    let defaults = format!(
        "--port1 {p1} --port2 {p2} --cafile1 {ca} --cafile2 {ca}",
        ca = lab.ca.display()
    );
    let mut fleet = Fleet::new("nightly");
    let batch = batch_file(&fleet.dir, "batch.txt", &lab, &users, None);
    for _ in 0..2 {
        fleet.start_worker(&["--concurrency", "2", "--slice-messages", "5"]);
    }
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"));
    let check = |live: Vec<usize>| {
        let users = users.clone();
        async move {
            for (u, want) in users.iter().zip(live) {
                let v = verify_account(&ep(1, u), &ep(2, u), &SyncOptions::default())
                    .await
                    .expect("verify");
                assert!(v.ok, "{u}: host2 differs:\n{v}");
                assert_eq!(count(&ep(2, u)).await, want, "{u}: a duplicate or a loss");
            }
        }
    };
    // One pass: dispatch, wait; the job view, the folder tasks it took, the wall time.
    let pass = |fleet: &Fleet, name: &str| {
        let t = Instant::now();
        let job = fleet.dispatch_with(&defaults, &batch, name).0;
        let (view, code) = fleet.wait_job(&job);
        let took = t.elapsed();
        assert_eq!(code, Some(0), "{view:#}");
        let (acc, fold) = tasks_done(fleet, &job, users.len());
        assert_eq!(acc as usize, users.len());
        eprintln!(
            "nightly {name}: {:.2} s, {fold} folder tasks",
            took.as_secs_f64()
        );
        (view, fold)
    };
    // Folders of each account that ran a slice in this pass.
    let sliced = |view: &Value| -> Vec<Vec<String>> {
        view["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .map(|a| {
                assert_eq!(a["status"], "done", "{a:#}");
                assert_eq!(n(&a["totals"]["missing_on_host2"]), 0, "{a:#}");
                a["folders"]
                    .as_array()
                    .expect("folders")
                    .iter()
                    .filter(|f| n(&f["slices"]) > 0)
                    .map(|f| f["name1"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect()
    };

    // 1. First pass: everything copied.
    let (view, fold1) = pass(&fleet, "nightly-1");
    let n_folders: usize = view["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["folders"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        sliced(&view).iter().map(Vec::len).sum::<usize>(),
        n_folders,
        "every folder ran"
    );
    assert!(fold1 as usize >= n_folders);
    assert_eq!(
        n(&view["totals"]["transferred"]) as usize,
        live.iter().sum::<usize>()
    );
    check(live.clone()).await;

    // 2. No change: no folder task, no SELECT; one session per side and account.
    let before = rawlogs(&lab, [p1, p2], &users);
    let (view, fold) = pass(&fleet, "nightly-2");
    let after = rawlogs(&lab, [p1, p2], &users);
    assert_eq!(fold, 0.0, "no folder task");
    assert!(sliced(&view).iter().all(Vec::is_empty), "{view:#}");
    assert_eq!(n(&view["totals"]["transferred"]), 0);
    assert_eq!(n(&view["totals"]["folders_synced"]) as usize, n_folders);
    for (i, u) in users.iter().enumerate() {
        for side in 0..2 {
            let (b, a) = (before[i][side], after[i][side]);
            assert_eq!(a.1, b.1, "{u} host{}: no SELECT/EXAMINE", side + 1);
            assert_eq!(a.0, b.0 + 1, "{u} host{}: one session", side + 1);
        }
    }
    check(live.clone()).await;

    // 3. One new message in one folder of the first account: only that folder gets a task.
    let mut s = Session::connect(&ep(1, &users[0]))
        .await
        .expect("connect host1");
    let changed = s
        .list()
        .await
        .expect("LIST")
        .into_iter()
        .find(|f| !f.noselect && !f.raw_name.eq_ignore_ascii_case("INBOX"))
        .expect("a folder besides INBOX");
    let body = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: nightly\r\nMessage-ID: <nightly-610@example.com>\r\n\r\nnew since the last pass\r\n";
    s.append(
        &changed.raw_name,
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
    let before = rawlogs(&lab, [p1, p2], &users);
    let (view, fold) = pass(&fleet, "nightly-3");
    let after = rawlogs(&lab, [p1, p2], &users);
    assert_eq!(fold, 1.0, "one folder task");
    let ran = sliced(&view);
    assert_eq!(ran[0], vec![changed.name.clone()], "{view:#}");
    assert!(ran[1..].iter().all(Vec::is_empty), "{ran:?}");
    assert_eq!(n(&view["totals"]["transferred"]), 1);
    for side in 0..2 {
        assert_eq!(
            after[0][side].1,
            before[0][side].1 + 1,
            "host{}: the changed folder selected once",
            side + 1
        );
    }
    for i in 1..users.len() {
        assert_eq!(
            after[i],
            [
                (before[i][0].0 + 1, before[i][0].1),
                (before[i][1].0 + 1, before[i][1].1)
            ]
        );
    }
    check(live3.clone()).await;

    // 4. The sync state deleted from Redis: every folder read in full, nothing copied twice.
    wipe_sync_state().await;
    let (view, fold) = pass(&fleet, "nightly-4");
    assert_eq!(fold as usize, n_folders, "every folder read again");
    assert_eq!(sliced(&view).iter().map(Vec::len).sum::<usize>(), n_folders);
    assert_eq!(n(&view["totals"]["transferred"]), 0, "{view:#}");
    check(live3.clone()).await;

    // 5. ... and rebuilt by that pass: no folder task again.
    let (view, fold) = pass(&fleet, "nightly-5");
    assert_eq!(fold, 0.0);
    assert!(sliced(&view).iter().all(Vec::is_empty), "{view:#}");
    check(live3).await;
    fleet.stop();
    fleet.cleanup().await;
}

/// `imapfleet run --statedir DIR`: the embedded run keeps the saved sync state in the state
/// directory's files (as `sync` does), so the next run of the batch skips every unchanged folder
/// (no slice); `--nostate` compares every folder in full again, with the same result.
/// Users user0620..user0621.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_run_with_a_state_dir_skips_unchanged_folders_on_the_next_run() {
    let Some(lab) = lab() else { return };
    let users: Vec<String> = (620..622).map(user).collect();
    let live = prepare(&lab, &users, 6200).await;
    let dir = scratch("run-state");
    let state = dir.join("state");
    let batch = batch_file(&dir, "batch.txt", &lab, &users, None);
    let report = dir.join("report.json");
    let run = |extra: &[&str]| -> Value {
        let o = Command::new(bin())
            .args(["run", "--workers", "3", "--slice-messages", "5", "--quiet"])
            .args(extra)
            .arg("--accounts")
            .arg(&batch)
            .arg(format!("--defaults={}", defaults(&lab)))
            .arg("--report-json")
            .arg(&report)
            .env_remove("IMAPFLEET_CONFIG")
            .output()
            .expect("imapfleet run");
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON report")
    };
    // Slices per folder, every account done.
    let slices = |r: &Value| -> Vec<u64> {
        r["accounts"]
            .as_array()
            .expect("accounts")
            .iter()
            .flat_map(|a| {
                assert_eq!(a["status"], "done", "{a:#}");
                a["folders"].as_array().expect("folders").clone()
            })
            .map(|f| f["slices"].as_u64().expect("slices"))
            .collect()
    };
    let state_arg = state.to_str().unwrap();
    let r = run(&["--statedir", state_arg]);
    assert!(slices(&r).iter().all(|n| *n > 0), "{r:#}");
    assert_eq!(
        r["totals"]["transferred"].as_u64(),
        Some(live.iter().sum::<usize>() as u64)
    );
    let files = std::fs::read_dir(&state)
        .expect("the state directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "redb"))
        })
        .count();
    assert_eq!(files, users.len(), "one state file per account");
    check_copies(&lab, &users, &live).await;

    // The next run: every folder unchanged, none sliced, all of it reported as there.
    let r = run(&["--statedir", state_arg]);
    assert!(slices(&r).iter().all(|n| *n == 0), "{r:#}");
    assert_eq!(r["totals"]["transferred"].as_u64(), Some(0), "{r:#}");
    assert_eq!(
        r["totals"]["skipped"].as_u64(),
        Some(live.iter().sum::<usize>() as u64)
    );
    // Without the state: every folder compared in full, nothing copied twice.
    let r = run(&["--nostate"]);
    assert!(slices(&r).iter().all(|n| *n > 0), "{r:#}");
    assert_eq!(r["totals"]["transferred"].as_u64(), Some(0), "{r:#}");
    check_copies(&lab, &users, &live).await;
}
