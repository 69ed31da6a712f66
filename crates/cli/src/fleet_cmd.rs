//! The fleet's subcommands: `dispatch`, `worker`, `status` (RabbitMQ + Redis) and `run` (everything in
//! this process).
//!
//! Settings (command line, then `IMAPFLEET_*`, then the config file): `amqp_url`, `redis_url`, `queue`
//! (task queue name, default `imapfleet.tasks`), `metrics_addr`, `batch_defaults`, `timeout`; the key
//! sealing passwords from `IMAPFLEET_SECRET_KEY` or `IMAPFLEET_SECRET_KEY_FILE`.

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
use imapfleet_fleet::state::{class_by_name, AccountStatus, JobView, RedisState, StateStore};
use imapfleet_fleet::worker::{Worker, WorkerConfig};
use imapfleet_sync::report::ErrorClass;
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
        .with_context(|| format!("reading {}", a.accounts.display()))?;
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

async fn connect_state(settings: &Settings) -> Result<RedisState> {
    RedisState::connect(&redis_url(settings), None)
        .await
        .context("connecting to Redis")
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
    let batch = load_batch(settings, &a.batch)?;
    let accounts = checked(&batch, &a.batch)?;
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
        .filter(|a| a.status != AccountStatus::Done)
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
    println!(
        "job {} ({}), created {}: {} account(s): {} done, {} failed, {} running, {} pending",
        view.job.id,
        view.job.name,
        view.job.created,
        view.accounts.len(),
        s.get("done").unwrap_or(&0),
        s.get("failed").unwrap_or(&0),
        s.get("running").unwrap_or(&0),
        s.get("pending").unwrap_or(&0),
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
        "totals: {} messages copied ({}), {} already there, {} flags updated, {} errors",
        t.transferred,
        human_bytes(t.bytes),
        t.skipped,
        t.flags_updated,
        t.errors
    );
}

pub async fn status(settings: &Settings, a: StatusArgs) -> Result<i32> {
    let state = connect_state(settings).await?;
    let jobs = state.jobs().await?;
    let job = match &a.job {
        Some(j) => jobs
            .iter()
            .rev()
            .find(|x| x.id == *j || x.name == *j)
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

pub async fn run(settings: &Settings, a: RunArgs) -> Result<i32> {
    let batch = load_batch(settings, &a.batch)?;
    let accounts = checked(&batch, &a.batch)?;
    let cfg = EmbeddedConfig {
        workers: a
            .workers
            .or(settings.number("workers")?.map(|n| n as usize))
            .unwrap_or(4)
            .max(1),
        worker: worker_config(settings, &a.work)?,
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
    if let Some(path) = &a.report_json {
        let json = serde_json::to_string_pretty(&view)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if view.finished() {
        job_exit_code(&view)
    } else {
        1
    })
}
