//! The fleet's subcommands: `dispatch`, `worker`, `status` (RabbitMQ + Redis) and `run` (everything in
//! this process).
//!
//! Settings (command line, then `IMAPFLEET_*`, then the config file): `amqp_url`, `redis_url`, `queue`
//! (task queue name, default `imapfleet.tasks`), `metrics_addr`, `batch_defaults`, `timeout`,
//! `state_ttl` (how long a job's state stays in Redis after its last write: a duration such as
//! `30d`, or seconds; `off` keeps it for ever; default 30 days); the key sealing passwords from
//! `IMAPFLEET_SECRET_KEY` or `IMAPFLEET_SECRET_KEY_FILE`.
//!
//! `dispatch --every D` / `--cron EXPR` is the long-running scheduler: a pass of the batch at each
//! tick ([`imapfleet_fleet::schedule`]), until SIGTERM/SIGINT (between passes) or `--passes N`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use imapfleet_fleet::batch::{read_batch, Batch};
use imapfleet_fleet::crypto::SecretKey;
use imapfleet_fleet::dispatcher::{accepted, DispatchError, Dispatcher};
use imapfleet_fleet::limits::{ConnectionLimits, LimitsConfig, RedisLimitStore};
use imapfleet_fleet::lock::RedisLocks;
use imapfleet_fleet::metrics::Metrics;
use imapfleet_fleet::queue::{AmqpConfig, AmqpQueue};
use imapfleet_fleet::run::{run_embedded, EmbeddedConfig};
use imapfleet_fleet::schedule::{self, Schedule};
use imapfleet_fleet::state::{class_by_name, AccountStatus, JobView, RedisState, StateStore};
use imapfleet_fleet::syncstate::RedisSyncState;
use imapfleet_fleet::worker::{SyncStore, Worker, WorkerConfig};
use imapfleet_sync::report::ErrorClass;
use imapfleet_sync::state::file::FileState;
use tokio_util::sync::CancellationToken;

use crate::args::{BatchArgs, DispatchArgs, RunArgs, StatusArgs, WorkArgs, WorkerArgs};
use crate::settings::{Settings, UsageError};

const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
const DEFAULT_QUEUE: &str = "imapfleet.tasks";

fn redis_url(settings: &Settings) -> String {
    settings
        .string("redis_url")
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

fn amqp_url(settings: &Settings) -> String {
    settings
        .string("amqp_url")
        .unwrap_or_else(|| imapfleet_fleet::queue::amqp::DEFAULT_AMQP_URL.to_string())
}

fn queue_name(settings: &Settings) -> String {
    settings
        .string("queue")
        .unwrap_or_else(|| DEFAULT_QUEUE.to_string())
}

/// Where to serve metrics; `None` when turned off.
fn metrics_addr(settings: &Settings, work: &WorkArgs, default: Option<&str>) -> Option<String> {
    let addr = work
        .metrics_addr
        .clone()
        .or_else(|| settings.string("metrics_addr"));
    match addr.as_deref() {
        Some("off" | "none" | "") => None,
        Some(a) => Some(a.to_string()),
        None => default.map(str::to_string),
    }
}

/// Read and check the batch; print every problem to stderr with its line.
fn load_batch(settings: &Settings, a: &BatchArgs) -> Result<Batch> {
    let defaults = a
        .defaults
        .clone()
        .or_else(|| settings.string("batch_defaults"))
        .unwrap_or_default();
    let batch = read_batch(&a.accounts, &defaults)
        .map_err(|e| UsageError(format!("--accounts {}: {e}", a.accounts.display())))?;
    for e in &batch.errors {
        eprintln!("imapfleet: {}: {e}", a.accounts.display());
    }
    Ok(batch)
}

fn checked<'a>(
    batch: &'a Batch,
    a: &BatchArgs,
) -> Result<&'a [imapfleet_fleet::batch::BatchAccount]> {
    match accepted(batch, a.skip_bad_lines) {
        Ok(accounts) => {
            if !batch.errors.is_empty() {
                eprintln!(
                    "imapfleet: skipping {} bad line(s), going on with {} account(s)",
                    batch.errors.len(),
                    accounts.len()
                );
            }
            Ok(accounts)
        }
        Err(DispatchError::Batch(errs)) => Err(UsageError(format!(
            "{}: {} bad line(s), nothing enqueued (fix them, or --skip-bad-lines)",
            a.accounts.display(),
            errs.len()
        ))
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn default_timeout(settings: &Settings, a: &BatchArgs) -> Result<u64> {
    Ok(match a.timeout {
        Some(t) => t,
        None => settings.number("timeout")?.unwrap_or(120),
    })
}

fn worker_config(settings: &Settings, w: &WorkArgs) -> Result<WorkerConfig> {
    let mut cfg = WorkerConfig::default();
    if let Some(b) = w.slice_bytes.or(settings.number("slice_bytes")?) {
        cfg.slice_bytes = b.max(1);
    }
    if let Some(m) = w
        .slice_messages
        .or(settings.number("slice_messages")?.map(|n| n as usize))
    {
        cfg.slice_messages = m.max(1);
    }
    if let Some(n) = w
        .max_attempts
        .or(settings.number("max_attempts")?.map(|n| n as u32))
    {
        cfg.max_attempts = n.max(1);
    }
    cfg.run_log = w.run_log.clone();
    if let Some(t) = w.lease_ttl.or(settings.number("lease_ttl")?) {
        cfg.lease_ttl = Duration::from_secs(t.max(1));
    }
    Ok(cfg)
}

/// Connection caps: `max_connections_per_host` (default none) and `max_connections_per_account`
/// (default 10, Dovecot's mail_max_userip_connections).
fn limits_config(settings: &Settings) -> Result<LimitsConfig> {
    let mut cfg = LimitsConfig::default();
    if let Some(n) = settings.number("max_connections_per_host")? {
        cfg.per_host = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = settings.number("max_connections_per_account")? {
        cfg.per_account = u32::try_from(n).unwrap_or(u32::MAX);
    }
    Ok(cfg)
}

fn secret_key() -> Result<Arc<SecretKey>> {
    let key =
        SecretKey::from_env_or_file(None).map_err(|e| UsageError(format!("secret key: {e}")))?;
    Ok(Arc::new(key))
}

async fn connect_queue(settings: &Settings, prefetch: u16, max_attempts: u32) -> Result<AmqpQueue> {
    let cfg = AmqpConfig::new(queue_name(settings))
        .with_url(amqp_url(settings))
        .with_prefetch(prefetch.max(1))
        .with_max_attempts(max_attempts);
    AmqpQueue::connect(cfg)
        .await
        .context("connecting to RabbitMQ")
}

/// `state_ttl`: a humantime duration or a number of seconds; `off`, `none` or `0`: no expiry.
fn state_ttl(settings: &Settings) -> Result<Option<Duration>> {
    let Some(text) = settings.string("state_ttl") else {
        return Ok(Some(imapfleet_fleet::state::DEFAULT_JOB_TTL));
    };
    let t = text.trim();
    if matches!(t, "off" | "none" | "0" | "") {
        return Ok(None);
    }
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Some(Duration::from_secs(secs)));
    }
    schedule::parse_duration(t)
        .map(Some)
        .map_err(|e| UsageError(format!("setting state_ttl: {e}")).into())
}

async fn connect_state(settings: &Settings) -> Result<RedisState> {
    let ttl = state_ttl(settings)?;
    Ok(RedisState::connect(&redis_url(settings), None)
        .await
        .context("connecting to Redis")?
        .with_ttl(ttl))
}

/// SIGTERM or SIGINT cancels the token.
fn on_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::warn!("cannot listen for signals");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: finishing the tasks in progress"),
            _ = int.recv() => tracing::info!("SIGINT: finishing the tasks in progress"),
        }
        stop.cancel();
    });
}

async fn serve_metrics(
    addr: Option<String>,
    metrics: &Metrics,
    ready: Arc<AtomicBool>,
    stop: CancellationToken,
) -> Result<()> {
    if let Some(addr) = addr {
        let bound = imapfleet_fleet::http::serve(&addr, metrics.clone(), ready, stop)
            .await
            .with_context(|| format!("serving metrics on {addr}"))?;
        tracing::info!(addr = %bound, "metrics on /metrics, health on /healthz and /readyz");
    }
    Ok(())
}

pub async fn dispatch(settings: &Settings, a: DispatchArgs) -> Result<i32> {
    let plan = match (&a.every, &a.cron) {
        (Some(e), None) => Some(Schedule::every(e).map_err(|e| UsageError(e.to_string()))?),
        (None, Some(c)) => Some(Schedule::cron(c).map_err(|e| UsageError(e.to_string()))?),
        (None, None) => None,
        (Some(_), Some(_)) => bail!(UsageError("--every and --cron exclude each other".into())),
    };
    if plan.is_none() && (a.passes.is_some() || a.metrics_addr.is_some()) {
        bail!(UsageError(
            "--passes and --metrics-addr go with --every or --cron".into()
        ));
    }
    let batch = load_batch(settings, &a.batch)?;
    let accounts = checked(&batch, &a.batch)?;
    if let (Some(plan), false) = (plan, a.check) {
        return scheduled(settings, &a, plan).await;
    }
    if a.check {
        println!(
            "{}: {} account(s), no error",
            a.batch.accounts.display(),
            accounts.len()
        );
        return Ok(0);
    }
    let timeout = default_timeout(settings, &a.batch)?;
    let key = secret_key()?;
    let state = Arc::new(connect_state(settings).await?);
    let queue = connect_queue(settings, 1, WorkerConfig::default().max_attempts).await?;
    let queue = Arc::new(queue);
    let d = Dispatcher::new(queue.clone(), state, key, Metrics::new());
    let job = d
        .dispatch(accounts, a.batch.job.as_deref(), timeout)
        .await?;
    queue.shutdown().await;
    println!(
        "job {} ({}): {} account(s) enqueued",
        job.id, job.name, job.accounts
    );
    Ok(0)
}

/// The name of a schedule's passes: `--job`, else the batch file's name without its extension.
fn schedule_name(a: &DispatchArgs) -> String {
    a.batch.job.clone().unwrap_or_else(|| {
        a.batch
            .accounts
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "schedule".to_string())
    })
}

/// Sleep until `at` (wall clock, in steps of at most a minute so a clock change is followed);
/// false when stopped first.
async fn sleep_until(at: chrono::DateTime<chrono::Local>, stop: &CancellationToken) -> bool {
    loop {
        let left = (at - chrono::Local::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        if left.is_zero() {
            return !stop.is_cancelled();
        }
        tokio::select! {
            _ = tokio::time::sleep(left.min(Duration::from_secs(60))) => {}
            _ = stop.cancelled() => return false,
        }
    }
}

/// `dispatch --every/--cron`: a pass at each tick until stopped or `--passes` are done. A pass
/// that cannot be enqueued (broker or Redis away) is logged and the next tick tries again; three
/// in a row end the scheduler with an error.
async fn scheduled(settings: &Settings, a: &DispatchArgs, plan: Schedule) -> Result<i32> {
    let name = schedule_name(a);
    let timeout = default_timeout(settings, &a.batch)?;
    let key = secret_key()?;
    let stop = CancellationToken::new();
    on_signals(stop.clone());
    let metrics = Metrics::new();
    let http_stop = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(false));
    let addr = a
        .metrics_addr
        .clone()
        .filter(|x| !matches!(x.as_str(), "off" | "none" | ""));
    serve_metrics(addr, &metrics, ready.clone(), http_stop.clone()).await?;
    let state = Arc::new(connect_state(settings).await?);
    let queue = Arc::new(connect_queue(settings, 1, WorkerConfig::default().max_attempts).await?);
    let d = Dispatcher::new(queue.clone(), state, key, metrics.clone());
    ready.store(true, Ordering::SeqCst);
    tracing::info!(schedule = %name, when = %plan.describe(), passes = ?a.passes, "scheduler started");
    let mut previous: Option<chrono::DateTime<chrono::Local>> = None;
    let (mut done, mut failures) = (0u32, 0u32);
    let result = loop {
        if stop.is_cancelled() {
            break Ok(0);
        }
        let Some(next) = plan.next_tick(previous.as_ref(), &chrono::Local::now()) else {
            tracing::info!(schedule = %name, "the cron expression matches no later time");
            break Ok(0);
        };
        metrics
            .next_pass
            .with_label_values(&[name.as_str()])
            .set(next.timestamp());
        tracing::info!(schedule = %name, at = %next.to_rfc3339(), "next pass");
        if !sleep_until(next, &stop).await {
            break Ok(0);
        }
        previous = Some(next);
        // The batch is read again: it may have been edited since the last pass.
        let batch = match load_batch(settings, &a.batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(schedule = %name, error = %format!("{e:#}"), "batch unreadable: no pass this time");
                continue;
            }
        };
        let accounts = match checked(&batch, &a.batch) {
            Ok(x) => x,
            Err(e) => {
                tracing::error!(schedule = %name, error = %e, "batch has bad lines: no pass this time");
                continue;
            }
        };
        match d.dispatch_pass(accounts, &name, timeout).await {
            Ok(p) => {
                failures = 0;
                println!(
                    "pass {} job {} ({}): {} account(s) enqueued, {} skipped (previous pass still running)",
                    p.pass,
                    p.job.id,
                    p.job.name,
                    p.enqueued,
                    p.skipped.len()
                );
                for (account, line, why) in &p.skipped {
                    println!("  {account} line {line}: skipped: {why}");
                }
            }
            Err(e) => {
                failures += 1;
                tracing::error!(schedule = %name, error = %e, failures, "pass not enqueued");
                if failures >= 3 {
                    break Err(anyhow::Error::from(e).context("three passes in a row failed"));
                }
            }
        }
        done += 1;
        if a.passes.is_some_and(|n| done >= n) {
            break Ok(0);
        }
    };
    ready.store(false, Ordering::SeqCst);
    queue.shutdown().await;
    http_stop.cancel();
    tracing::info!(schedule = %name, passes = done, "scheduler stopped");
    result
}

pub async fn worker(settings: &Settings, a: WorkerArgs) -> Result<i32> {
    let mut cfg = worker_config(settings, &a.work)?;
    cfg.concurrency = a
        .concurrency
        .or(settings.number("concurrency")?.map(|n| n as usize))
        .unwrap_or(cfg.concurrency)
        .max(1);
    let metrics = Metrics::new();
    let ready = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    on_signals(stop.clone());
    let http_stop = CancellationToken::new();
    serve_metrics(
        metrics_addr(settings, &a.work, Some(imapfleet_fleet::http::DEFAULT_ADDR)),
        &metrics,
        ready.clone(),
        http_stop.clone(),
    )
    .await?;
    let key = secret_key()?;
    let state = Arc::new(connect_state(settings).await?);
    let locks = Arc::new(
        RedisLocks::connect(&redis_url(settings), None)
            .await
            .context("connecting to Redis (locks)")?,
    );
    let prefetch = u16::try_from(cfg.concurrency).unwrap_or(u16::MAX);
    let queue = Arc::new(connect_queue(settings, prefetch, cfg.max_attempts).await?);
    let limit_store = RedisLimitStore::connect(&redis_url(settings))
        .await
        .context("connecting to Redis (limits)")?;
    // The saved sync state beside the job state: each pass is a delta of the last one.
    if !a.nostate {
        let store = RedisSyncState::connect(&redis_url(settings), None)
            .await
            .context("connecting to Redis (sync state)")?;
        cfg.sync_state = Some(SyncStore(Arc::new(store)));
    }
    let limits = ConnectionLimits::new(Arc::new(limit_store), limits_config(settings)?);
    let w =
        Arc::new(Worker::new(queue.clone(), locks, state, key, metrics, cfg).with_limits(limits));
    ready.store(true, Ordering::SeqCst);
    tracing::info!(pid = std::process::id(), "worker started");
    w.run(stop).await;
    ready.store(false, Ordering::SeqCst);
    queue.shutdown().await;
    http_stop.cancel();
    tracing::info!("worker stopped");
    Ok(0)
}

/// Exit code of a finished job: 0 when every account is done, else the code of the most important
/// class among the failed ones.
fn job_exit_code(view: &JobView) -> i32 {
    view.accounts
        .iter()
        .filter(|a| !matches!(a.status, AccountStatus::Done | AccountStatus::Skipped))
        .map(|a| match a.error_class.as_deref().and_then(class_by_name) {
            Some(c) => (c.precedence(), c.exit_code()),
            None if a.status == AccountStatus::Failed => (12, 1),
            None => (13, ErrorClass::Incomplete.exit_code()),
        })
        .min()
        .map_or(0, |(_, code)| code)
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MB", b as f64 / 1e6)
    } else if b >= 1 << 10 {
        format!("{:.1} kB", b as f64 / 1e3)
    } else {
        format!("{b} B")
    }
}

fn print_view(view: &JobView) {
    let s = &view.by_status;
    let skipped = *s.get("skipped").unwrap_or(&0);
    println!(
        "job {} ({}), created {}: {} account(s): {} done, {} failed, {} running, {} pending{}",
        view.job.id,
        view.job.name,
        view.job.created,
        view.accounts.len(),
        s.get("done").unwrap_or(&0),
        s.get("failed").unwrap_or(&0),
        s.get("running").unwrap_or(&0),
        s.get("pending").unwrap_or(&0),
        if skipped > 0 {
            format!(", {skipped} skipped")
        } else {
            String::new()
        }
    );
    for a in &view.accounts {
        let class = a
            .error_class
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        println!(
            "  {} line {:<4} {}@{} -> {}@{}  {}{}  folders {}/{}  copied {} ({}), skipped {}, errors {}",
            a.account,
            a.line,
            a.user1,
            a.host1,
            a.user2,
            a.host2,
            a.status.name(),
            class,
            a.folders_done,
            a.folders_total,
            a.totals.transferred,
            human_bytes(a.totals.bytes),
            a.totals.skipped,
            a.totals.errors,
        );
        if let Some(why) = &a.skipped {
            println!("      skipped: {why}");
        }
        if a.status == AccountStatus::Failed {
            for e in a.errors.iter().take(3) {
                let folder = e
                    .folder
                    .as_deref()
                    .map(|f| format!(" folder {f:?}"))
                    .unwrap_or_default();
                println!("      [{}]{folder}: {}", e.class, e.message);
            }
        }
    }
    let t = &view.totals;
    println!(
        "totals: {} messages copied ({}), {} already there, {} flags updated, {} errors{}",
        t.transferred,
        human_bytes(t.bytes),
        t.skipped,
        t.flags_updated,
        t.errors,
        if skipped > 0 {
            format!("; {skipped} account(s) skipped: previous pass still running")
        } else {
            String::new()
        }
    );
}

pub async fn status(settings: &Settings, a: StatusArgs) -> Result<i32> {
    let state = connect_state(settings).await?;
    let jobs = state.jobs().await?;
    let job = match &a.job {
        // A job by id or name, else the newest pass of a schedule of that name.
        Some(j) => jobs
            .iter()
            .rev()
            .find(|x| x.id == *j || x.name == *j)
            .or_else(|| {
                jobs.iter()
                    .filter_map(|x| schedule::pass_number(j, &x.name).map(|n| (n, x)))
                    .max_by_key(|(n, _)| *n)
                    .map(|(_, x)| x)
            })
            .cloned()
            .ok_or_else(|| UsageError(format!("no job {j:?}")))?,
        None => match jobs.last() {
            Some(j) => j.clone(),
            None => bail!(UsageError("no job yet".into())),
        },
    };
    let started = Instant::now();
    let view = loop {
        let view = state
            .view(&job.id)
            .await?
            .ok_or_else(|| UsageError(format!("no job {}", job.id)))?;
        if !a.wait || view.finished() {
            break view;
        }
        if a.wait_timeout
            .is_some_and(|t| started.elapsed() > Duration::from_secs(t))
        {
            eprintln!(
                "imapfleet: job {} not finished after {}s",
                job.id,
                a.wait_timeout.unwrap_or(0)
            );
            if a.json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print_view(&view);
            }
            return Ok(1);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print_view(&view);
    }
    Ok(if view.finished() {
        job_exit_code(&view)
    } else {
        0
    })
}

/// `run`'s saved sync state, found as `sync` finds it (one state directory for both): `--statedir`,
/// else the `statedir` setting, else `$IMAPFLEET_STATE_DIR`, else the default directory; none with
/// `--nostate`. A directory that cannot be used only costs full reads (warned).
fn run_sync_state(settings: &Settings, a: &RunArgs) -> Option<SyncStore> {
    if a.nostate {
        return None;
    }
    let dir = a
        .statedir
        .clone()
        .or_else(|| settings.string("statedir").map(std::path::PathBuf::from))
        .or_else(|| {
            std::env::var_os("IMAPFLEET_STATE_DIR")
                .filter(|v| !v.is_empty())
                .map(std::path::PathBuf::from)
        })
        .unwrap_or_else(FileState::default_dir);
    match FileState::new(&dir) {
        Ok(store) => Some(SyncStore(Arc::new(store))),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot use the state directory; comparing every folder in full");
            None
        }
    }
}

/// The machine-wide guards of every host2 account the batch writes into (dry lines write
/// nothing): another `run` or `sync` of one of them on this machine would copy the same messages
/// a second time. Busy accounts are all named, and nothing starts.
fn account_guards(
    accounts: &[imapfleet_fleet::batch::BatchAccount],
) -> Result<Vec<imapfleet_fleet::lock::host::AccountGuard>> {
    use imapfleet_fleet::lock::host::{default_dir, guard_path, try_guard, GuardError};
    let dir = default_dir();
    let mut guards = Vec::new();
    let mut held = std::collections::HashSet::new();
    let mut busy = Vec::new();
    for acc in accounts.iter().filter(|a| !a.options.dry) {
        let s2 = &acc.side2;
        // Several lines into one host2 account (two sources merged): one guard, held once
        // (a second lock of the same file from this process would be refused).
        if !held.insert(guard_path(&dir, &s2.host, s2.effective_port(), &s2.user)) {
            continue;
        }
        match try_guard(&dir, &s2.host, s2.effective_port(), &s2.user) {
            Ok(g) => guards.push(g),
            Err(GuardError::Busy { .. }) => busy.push(format!(
                "line {}: {}@{}:{}",
                acc.line,
                s2.user,
                s2.host,
                s2.effective_port()
            )),
            Err(e) => return Err(UsageError(e.to_string()).into()),
        }
    }
    if !busy.is_empty() {
        return Err(UsageError(format!(
            "another imapfleet process on this machine is syncing into {}; nothing started",
            busy.join(", ")
        ))
        .into());
    }
    Ok(guards)
}

pub async fn run(settings: &Settings, a: RunArgs) -> Result<i32> {
    let batch = load_batch(settings, &a.batch)?;
    let accounts = checked(&batch, &a.batch)?;
    let _guards = account_guards(accounts)?;
    let mut worker = worker_config(settings, &a.work)?;
    worker.sync_state = run_sync_state(settings, &a);
    let cfg = EmbeddedConfig {
        workers: a
            .workers
            .or(settings.number("workers")?.map(|n| n as usize))
            .unwrap_or(4)
            .max(1),
        worker,
        job_name: a.batch.job.clone(),
        default_timeout: default_timeout(settings, &a.batch)?,
        limits: limits_config(settings)?,
        ..EmbeddedConfig::default()
    };
    let metrics = Metrics::new();
    let http_stop = CancellationToken::new();
    let ready = Arc::new(AtomicBool::new(true));
    serve_metrics(
        metrics_addr(settings, &a.work, None),
        &metrics,
        ready,
        http_stop.clone(),
    )
    .await?;
    let stop = CancellationToken::new();
    on_signals(stop.clone());
    let show = !a.quiet && std::io::stderr().is_terminal();
    let last = std::sync::Mutex::new(String::new());
    let progress = move |v: &JobView| {
        if !show {
            return;
        }
        let s = &v.by_status;
        let line = format!(
            "\r{} accounts: {} done, {} failed, {} running, {} pending; {} messages copied   ",
            v.accounts.len(),
            s.get("done").unwrap_or(&0),
            s.get("failed").unwrap_or(&0),
            s.get("running").unwrap_or(&0),
            s.get("pending").unwrap_or(&0),
            v.totals.transferred
        );
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if *l != line {
            eprint!("{line}");
            *l = line;
        }
    };
    let view = run_embedded(accounts, &cfg, metrics, stop, &progress).await?;
    if show {
        eprintln!();
    }
    http_stop.cancel();
    print_view(&view);
    // Lines skipped with --skip-bad-lines were not migrated: the report lists them and the run
    // is not a success, whatever the other accounts did.
    let skipped: Vec<serde_json::Value> = batch
        .errors
        .iter()
        .map(|e| serde_json::json!({ "line": e.line, "reason": e.reason }))
        .collect();
    if !skipped.is_empty() {
        eprintln!(
            "imapfleet: {} bad line(s) of {} skipped, not migrated: {}",
            skipped.len(),
            a.batch.accounts.display(),
            batch
                .errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if let Some(path) = &a.report_json {
        let mut json = serde_json::to_value(&view)?;
        if let Some(obj) = json.as_object_mut() {
            obj.insert(
                "skipped_lines".into(),
                serde_json::Value::Array(skipped.clone()),
            );
        }
        let json = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let code = if view.finished() {
        job_exit_code(&view)
    } else {
        1
    };
    Ok(if code == 0 && !skipped.is_empty() {
        imapfleet_sync::report::ErrorClass::Usage.exit_code()
    } else {
        code
    })
}
