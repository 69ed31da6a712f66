//! The worker: takes tasks from the queue and carries them out, keeping nothing locally.
//!
//! - **Account task**: under a lease on the account, log in to both sides, map, create the host2
//!   folders ([`prepare_account`]), record the folder list, publish one folder task per pair, ack.
//!   A redelivered account task that was already prepared publishes the unfinished folders again
//!   (a duplicate folder task is harmless: it waits for the folder's lease and finds nothing to do).
//!   With saved sync state ([`WorkerConfig::sync_state`]) the folders it proves unchanged on both
//!   sides (STATUS / LIST-STATUS, no SELECT) are recorded done without a folder task.
//! - **Folder task**: take the leases on (account pair, host2 folder) and on the host2 folder alone,
//!   keep them renewed, run one slice ([`sync_folder_slice`]); stop at once if a lease is lost.
//!   Record the slice under the pair lease's fence, publish the continuation when copies are left,
//!   then ack. Nothing is acknowledged before its state is written.
//!
//! Failures: a server refusing more connections (`NO [LIMIT]`, "too many connections") backs off
//! and goes back to the queue without counting an attempt (a deferral, [`Delivery::defer`]), with
//! a growing pause, for a bounded time ([`LimitBackoff`]: `limit_max_wait` since the first refusal
//! in a row, at most `limit_max_refusals` refusals); then the account or folder fails with the
//! class `connection_limit` (naming the host and the user) and the task is dead-lettered with that
//! error. A full fleet-wide connection slot (the fleet's own cap) waits without bound: that is the
//! fleet throttling itself. A lost connection or an unreachable
//! server is retried with exponential backoff and, after `max_attempts`, recorded as the account's
//! or folder's error (and dead-lettered); authentication and other refusals are final at once.
//! On shutdown no new task is taken; a slice in progress gets `shutdown_grace` to finish, then it is
//! abandoned and requeued (the engine re-plans, so a half-done slice is never copied twice).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use imapfleet_sync::engine::{prepare_account, sync_folder_slice, NoProgress, SliceBudget};
use imapfleet_sync::report::{ErrorClass, SyncError};
use imapfleet_sync::state::{StateHandle, SyncStateStore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::limits::{
    ConnectionLimits, ConnectionPermit, LimitBackoff, LimitDecision, LimitError,
    CONNECTION_LIMIT_CLASS,
};
use crate::lock::{LeaseKeeper, LockManager};
use crate::metrics::{ConnectionGuard, Metrics};
use crate::queue::{Delivery, TaskQueue};
use crate::state::{AccountRecord, ErrorRecord, Fence, FolderState, StateStore};
use crate::task::{AccountTask, FolderSpec, FolderTask, Sealer, Task};

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks worked on at once by this process.
    pub concurrency: usize,
    /// Budget of one folder slice: bytes and messages appended.
    pub slice_bytes: u64,
    pub slice_messages: usize,
    /// Lease time-to-live (renewed every third of it).
    pub lease_ttl: Duration,
    /// How long to wait for a taken folder lease before putting the task back.
    pub lock_wait: Duration,
    /// Deliveries of a task before its failure is final (keep equal to the queue's).
    pub max_attempts: u32,
    /// Exponential backoff of retries: base doubling per attempt, capped.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Backoff after a server's refusal for too many connections (doubling per refusal in a row,
    /// capped at 60 s).
    pub limit_backoff: Duration,
    /// Give up on a task that servers keep refusing for too many connections once this long has
    /// passed since the first refusal in a row (default 30 min, `IMAPFLEET_LIMIT_MAX_WAIT` in
    /// seconds)...
    pub limit_max_wait: Duration,
    /// ...or at the refusal after this many (0: no count; default 100,
    /// `IMAPFLEET_LIMIT_MAX_REFUSALS`).
    pub limit_max_refusals: u32,
    /// After shutdown is asked, how long a slice in progress may still run.
    pub shutdown_grace: Duration,
    /// Append one JSON line per folder run (lease key, fence, start and end in ms since the epoch).
    pub run_log: Option<PathBuf>,
    /// How long to wait for a fleet-wide connection slot before putting the task back.
    pub slot_wait: Duration,
    /// The engine's saved sync state (`None`: every folder is read in full at every pass). With
    /// it, the account task skips the folders the state proves unchanged (no folder task), and a
    /// folder slice reads a changed folder as a delta, writing under its host2 folder lease's
    /// fence.
    pub sync_state: Option<SyncStore>,
}

/// A saved-sync-state store shared by a worker's tasks (Redis for `worker`, the state
/// directory's files for `run`).
#[derive(Clone)]
pub struct SyncStore(pub Arc<dyn SyncStateStore>);

impl std::fmt::Debug for SyncStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncStore")
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 4,
            slice_bytes: 64 << 20,
            slice_messages: 5_000,
            lease_ttl: Duration::from_secs(30),
            lock_wait: Duration::from_secs(5),
            max_attempts: 5,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            limit_backoff: Duration::from_secs(2),
            limit_max_wait: env_number("IMAPFLEET_LIMIT_MAX_WAIT")
                .map_or(LimitBackoff::default().max_wait, Duration::from_secs),
            limit_max_refusals: env_number("IMAPFLEET_LIMIT_MAX_REFUSALS")
                .map_or(LimitBackoff::default().max_refusals, |n| {
                    u32::try_from(n).unwrap_or(u32::MAX)
                }),
            shutdown_grace: Duration::from_secs(30),
            run_log: None,
            slot_wait: Duration::from_secs(10),
            sync_state: None,
        }
    }
}

/// A whole number from the environment (`None` when unset; a warning when not a number).
fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            warn!(variable = name, value = %v, "not a whole number; using the default");
            None
        }
    }
}

/// The delivery being worked on: its attempts, and its deferrals for connection limits.
#[derive(Debug, Clone, Copy, Default)]
struct Try {
    attempt: u32,
    /// Refusals for too many connections in a row before this delivery.
    refusals: u32,
    /// Since the first of them.
    waited: Duration,
}

/// What to do with a delivery after its task ran.
#[derive(Debug)]
enum Outcome {
    Ack,
    /// Back to the queue without counting an attempt, after a pause.
    Requeue(Duration),
    /// A server refused more connections: back after the pause, counted as a deferral.
    Defer(Duration),
    /// A failure that may pass: again after `delay` (the queue counts the attempt).
    Retry {
        delay: Duration,
        error: String,
    },
    /// Given up: recorded in the state; straight to the dead-letter queue.
    Dead {
        error: String,
    },
}

/// A worker process's task loop (any number of them share one queue).
pub struct Worker {
    queue: Arc<dyn TaskQueue>,
    locks: Arc<dyn LockManager>,
    state: Arc<dyn StateStore>,
    sealer: Arc<dyn Sealer>,
    metrics: Metrics,
    cfg: WorkerConfig,
    limits: Option<ConnectionLimits>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("cfg", &self.cfg).finish()
    }
}

/// A server's refusal because of too many connections (Dovecot `NO [LIMIT]` or its BYE, Gmail's
/// "Too many simultaneous connections", Exchange's "User is authenticated but not connected"... the
/// usual wordings).
pub fn is_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("[limit]")
        || m.contains("maximum number of connections")
        || m.contains("too many connections")
        || m.contains("too many simultaneous connections")
        || m.contains("too many concurrent")
}

/// Which side (1 or 2) an error is about: by its class, else by the engine's `host1:` / `host2:`
/// prefix; host1 when neither says.
fn limit_side(e: &SyncError) -> u8 {
    match e.class {
        ErrorClass::AuthHost2 | ErrorClass::ConnectHost2 => 2,
        ErrorClass::AuthHost1 | ErrorClass::ConnectHost1 => 1,
        _ if e.message.starts_with("host2") => 2,
        _ => 1,
    }
}

fn is_transient_class(c: ErrorClass) -> bool {
    matches!(c, ErrorClass::ConnectHost1 | ErrorClass::ConnectHost2)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::fill(&mut b);
    let frac = f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX);
    // 75 % .. 125 %
    d.mul_f64(0.75 + frac / 2.0)
}

impl Worker {
    pub fn new(
        queue: Arc<dyn TaskQueue>,
        locks: Arc<dyn LockManager>,
        state: Arc<dyn StateStore>,
        sealer: Arc<dyn Sealer>,
        metrics: Metrics,
        cfg: WorkerConfig,
    ) -> Worker {
        Worker {
            queue,
            locks,
            state,
            sealer,
            metrics,
            cfg,
            limits: None,
        }
    }

    /// Take a fleet-wide connection slot (per host, per account) before each login.
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Worker {
        self.limits = Some(limits);
        self
    }

    /// Slots for one session on each side; `Err(outcome)` when the fleet is at a cap (back off,
    /// not a failure) or the limits backend fails.
    async fn slots(
        &self,
        job: &str,
        eps: [&imapfleet_imap::Endpoint; 2],
        attempt: u32,
    ) -> Result<Vec<ConnectionPermit>, Outcome> {
        let Some(limits) = &self.limits else {
            return Ok(Vec::new());
        };
        let mut permits = Vec::new();
        for ep in eps {
            match limits
                .acquire(&ep.addr(), &ep.user, self.cfg.slot_wait)
                .await
            {
                Ok(p) => permits.push(p),
                Err(LimitError::Busy { .. }) => {
                    self.metrics.limit_backoffs.with_label_values(&[job]).inc();
                    debug!(job, host = %ep.addr(), "fleet-wide connection cap reached; backing off");
                    return Err(Outcome::Requeue(self.limit_pause(attempt)));
                }
                Err(e) => {
                    return Err(Outcome::Retry {
                        delay: self.backoff(attempt),
                        error: format!("limits: {e}"),
                    })
                }
            }
        }
        Ok(permits)
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << attempt.min(16));
        jitter(exp.min(self.cfg.backoff_max))
    }

    /// Pause of the fleet's own connection cap (a full slot): unbounded, doubling per attempt.
    fn limit_pause(&self, attempt: u32) -> Duration {
        let exp = self
            .cfg
            .limit_backoff
            .saturating_mul(1u32 << attempt.min(5));
        jitter(exp.min(Duration::from_secs(60)))
    }

    fn limit_rule(&self) -> LimitBackoff {
        LimitBackoff {
            base: self.cfg.limit_backoff,
            max_wait: self.cfg.limit_max_wait,
            max_refusals: self.cfg.limit_max_refusals,
            ..LimitBackoff::default()
        }
    }

    /// A server refused a login of `user` on `host` for too many connections (`why`): back off
    /// (a deferral, not an attempt), or -- the bounded wait used up -- the error to record.
    fn on_limit(
        &self,
        job: &str,
        host: &str,
        user: &str,
        why: &str,
        tr: Try,
    ) -> Result<Outcome, ErrorRecord> {
        self.metrics.limit_backoffs.with_label_values(&[job]).inc();
        match self.limit_rule().decide(tr.refusals, tr.waited) {
            LimitDecision::Wait(pause) => {
                let pause = jitter(pause);
                info!(
                    job,
                    host,
                    user,
                    refusals = tr.refusals + 1,
                    pause_ms = pause.as_millis() as u64,
                    "server refuses more connections; backing off"
                );
                Ok(Outcome::Defer(pause))
            }
            LimitDecision::GiveUp => {
                let message = format!(
                    "connection limit: {host} kept refusing connections for {user} ({} refusals over {} s); last error: {why}",
                    tr.refusals + 1,
                    tr.waited.as_secs()
                );
                warn!(
                    job,
                    host,
                    user,
                    refusals = tr.refusals + 1,
                    waited_s = tr.waited.as_secs(),
                    "server keeps refusing more connections; giving up"
                );
                Err(ErrorRecord {
                    class: CONNECTION_LIMIT_CLASS.to_string(),
                    folder: None,
                    uid: None,
                    message,
                })
            }
        }
    }

    /// Take and carry out tasks until `stop` fires or the queue closes; returns when every task in
    /// progress is settled.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut loops = Vec::new();
        for n in 0..self.cfg.concurrency.max(1) {
            let me = self.clone();
            let stop = stop.clone();
            loops.push(tokio::spawn(async move { me.consume(n, stop).await }));
        }
        // The queue's depth as this worker sees it (for dashboards and autoscaling).
        let me = self.clone();
        let gauge_stop = stop.clone();
        let gauges = tokio::spawn(async move {
            loop {
                if let Ok(d) = me.queue.depth().await {
                    me.metrics
                        .queue_depth
                        .set(i64::try_from(d).unwrap_or(i64::MAX));
                }
                if let Ok(d) = me.queue.dead_letters().await {
                    me.metrics
                        .dead_letters
                        .set(i64::try_from(d).unwrap_or(i64::MAX));
                }
                tokio::select! {
                    _ = gauge_stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        });
        for l in loops {
            let _ = l.await;
        }
        gauges.abort();
    }

    async fn consume(&self, n: usize, stop: CancellationToken) {
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => break,
                d = self.queue.next() => d,
            };
            match next {
                Ok(Some(d)) => self.handle(d, &stop).await,
                Ok(None) => break,
                Err(e) => {
                    warn!(consumer = n, error = %e, "queue: cannot take a task; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        debug!(consumer = n, "consumer stopped");
    }

    /// One delivery, settled whatever happens.
    async fn handle(&self, d: Box<dyn Delivery>, stop: &CancellationToken) {
        let attempt = d.attempt();
        let tr = Try {
            attempt,
            refusals: d.deferrals(),
            waited: d.deferred_since_ms().map_or(Duration::ZERO, |t| {
                Duration::from_millis(
                    u64::try_from(now_ms())
                        .unwrap_or(u64::MAX)
                        .saturating_sub(t),
                )
            }),
        };
        let task = match Task::decode(d.body()) {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "unreadable task");
                let r = if attempt + 1 >= self.cfg.max_attempts {
                    self.metrics
                        .dead_lettered
                        .with_label_values(&["unknown"])
                        .inc();
                    d.retry(Duration::ZERO, &e.to_string()).await
                } else {
                    d.retry(self.backoff(attempt), &e.to_string()).await
                };
                if let Err(e) = r {
                    warn!(error = %e, "queue: cannot settle an unreadable task");
                }
                return;
            }
        };
        let job = task.account().job.clone();
        let kind = match &task {
            Task::Account(_) => "account",
            Task::Folder(_) => "folder",
        };
        let in_flight = self
            .metrics
            .tasks_in_flight
            .with_label_values(&[job.as_str()]);
        in_flight.inc();
        let grace = self.cfg.shutdown_grace;
        let work = async {
            match &task {
                Task::Account(t) => self.account_task(t, tr).await,
                Task::Folder(t) => self.folder_task(t, tr).await,
            }
        };
        let outcome = tokio::select! {
            o = work => o,
            _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                info!(job = %job, kind, "shutting down: task in progress put back");
                Outcome::Requeue(Duration::ZERO)
            }
        };
        in_flight.dec();
        let settled = match outcome {
            Outcome::Ack => {
                self.metrics
                    .tasks_done
                    .with_label_values(&[job.as_str(), kind])
                    .inc();
                d.ack().await
            }
            Outcome::Requeue(pause) => {
                if !pause.is_zero() {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                d.requeue().await
            }
            Outcome::Defer(pause) => d.defer(pause).await,
            Outcome::Retry { delay, error } => {
                self.metrics
                    .retries
                    .with_label_values(&[job.as_str()])
                    .inc();
                d.retry(delay, &error).await
            }
            Outcome::Dead { error } => {
                self.metrics
                    .dead_lettered
                    .with_label_values(&[job.as_str()])
                    .inc();
                d.dead_letter(&error).await
            }
        };
        if let Err(e) = settled {
            // Not settled: the broker hands it out again (at-least-once); the work is idempotent.
            warn!(job = %job, kind, error = %e, "queue: cannot settle the delivery");
        }
    }

    fn count_errors(&self, job: &str, errors: &[SyncError]) {
        for e in errors {
            self.metrics
                .errors
                .with_label_values(&[job, e.class.name()])
                .inc();
        }
    }

    async fn lease(&self, job: &str, key: &str) -> Result<Option<LeaseKeeper>, String> {
        let ttl = self.cfg.lease_ttl;
        let first = self
            .locks
            .try_acquire(key, ttl)
            .await
            .map_err(|e| e.to_string())?;
        let lease = match first {
            Some(l) => l,
            None => {
                self.metrics.lock_waits.with_label_values(&[job]).inc();
                match self
                    .locks
                    .acquire_within(key, ttl, self.cfg.lock_wait)
                    .await
                    .map_err(|e| e.to_string())?
                {
                    Some(l) => l,
                    None => return Ok(None),
                }
            }
        };
        Ok(Some(LeaseKeeper::spawn(self.locks.clone(), lease, ttl)))
    }

    async fn release(keepers: Vec<LeaseKeeper>) {
        for k in keepers {
            if let Err(e) = k.release().await {
                debug!(error = %e, "lease release failed; it expires by itself");
            }
        }
    }

    // -----------------------------------------------------------------------------------------

    async fn account_task(&self, t: &AccountTask, tr: Try) -> Outcome {
        let attempt = tr.attempt;
        let a = &t.account;
        let job = a.job.as_str();
        let key = format!("account:{}:{}", a.job, a.account);
        let keeper = match self.lease(job, &key).await {
            Ok(Some(k)) => k,
            Ok(None) => return Outcome::Requeue(Duration::from_millis(500)),
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("lock: {e}"),
                }
            }
        };
        let fence = Fence(keeper.fence());
        let outcome = self.account_locked(t, tr, fence, &keeper).await;
        Self::release(vec![keeper]).await;
        outcome
    }

    async fn account_locked(
        &self,
        t: &AccountTask,
        tr: Try,
        fence: Fence,
        keeper: &LeaseKeeper,
    ) -> Outcome {
        let attempt = tr.attempt;
        let a = &t.account;
        let job = a.job.as_str();
        let mut rec = match self.state.account(job, &a.account).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                warn!(job, account = %a.account, "task of an unknown job or account: dropped");
                return Outcome::Ack;
            }
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("state: {e}"),
                }
            }
        };
        if !rec.errors.is_empty() {
            return Outcome::Ack;
        }
        if rec.prepared {
            // Redelivered after the fan-out began: publish the unfinished folders again.
            return match self.fan_out(t, &rec).await {
                Ok(()) => Outcome::Ack,
                Err(e) => Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: e,
                },
            };
        }
        if rec.started.is_none() {
            rec.started = Some(chrono::Local::now().to_rfc3339());
        }
        if let Err(e) = self.state.put_account(job, &rec, fence).await {
            return Outcome::Retry {
                delay: self.backoff(attempt),
                error: format!("state: {e}"),
            };
        }
        let (ep1, ep2) = match a.endpoints(&*self.sealer) {
            Ok(x) => x,
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: e.to_string(),
                }
            }
        };
        let mut opts = match a.sync.options() {
            Ok(o) => o,
            Err(e) => {
                return self
                    .account_final(
                        job,
                        rec,
                        vec![SyncError::account(ErrorClass::Usage, e.to_string())],
                        fence,
                        None,
                    )
                    .await
            }
        };
        // The account task only reads the saved state (which folders are unchanged): no fence.
        opts.state = self
            .cfg
            .sync_state
            .as_ref()
            .map(|s| StateHandle::new(s.0.clone(), 0));
        let _permits = match self.slots(job, [&ep1, &ep2], attempt).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        let prepared = {
            let _conns = ConnectionGuard::open(&self.metrics, &[ep1.addr(), ep2.addr()]);
            let lost = keeper.lost();
            tokio::select! {
                p = prepare_account(&ep1, &ep2, &opts) => p,
                _ = lost.cancelled() => {
                    self.metrics.lease_losses.with_label_values(&[job]).inc();
                    return Outcome::Requeue(Duration::ZERO);
                }
            }
        };
        match prepared {
            Err(errs) => {
                let why: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
                let why = why.join("; ");
                if let Some(e) = errs.iter().find(|e| is_limit(&e.message)) {
                    let ep = if limit_side(e) == 2 { &ep2 } else { &ep1 };
                    return match self.on_limit(job, &ep.addr(), &ep.user, &e.message, tr) {
                        Ok(o) => o,
                        Err(given_up) => {
                            let error = given_up.message.clone();
                            self.account_final_records(job, rec, vec![given_up], fence, Some(error))
                                .await
                        }
                    };
                }
                let transient = errs.iter().all(|e| is_transient_class(e.class));
                if transient && attempt + 1 < self.cfg.max_attempts {
                    rec.retries += 1;
                    let _ = self.state.put_account(job, &rec, fence).await;
                    warn!(job, account = %a.account, attempt, error = %why, "account: cannot connect; will retry");
                    return Outcome::Retry {
                        delay: self.backoff(attempt),
                        error: why,
                    };
                }
                let dead = transient.then_some(why);
                self.account_final(job, rec, errs, fence, dead).await
            }
            Ok(p) => {
                rec.prepared = true;
                rec.folders = p.pairs.iter().map(FolderSpec::from_pair).collect();
                rec.created = p.created;
                rec.create_failed = p.create_failed;
                // Folders unchanged since the last pass are done now, before the fan-out (which
                // leaves done folders out): no folder task, no login, no SELECT for them.
                if let Err(e) = self.record_unchanged(t, &rec, &p.unchanged, fence).await {
                    return Outcome::Retry {
                        delay: self.backoff(attempt),
                        error: e,
                    };
                }
                if let Err(e) = self.state.put_account(job, &rec, fence).await {
                    return Outcome::Retry {
                        delay: self.backoff(attempt),
                        error: format!("state: {e}"),
                    };
                }
                info!(job, account = %a.account, folders = rec.folders.len(), unchanged = p.unchanged.len(), "account prepared");
                match self.fan_out(t, &rec).await {
                    Ok(()) => Outcome::Ack,
                    Err(e) => Outcome::Retry {
                        delay: self.backoff(attempt),
                        error: e,
                    },
                }
            }
        }
    }

    /// Record the account's final errors; `dead` when it was given up after its attempts.
    async fn account_final(
        &self,
        job: &str,
        rec: AccountRecord,
        errs: Vec<SyncError>,
        fence: Fence,
        dead: Option<String>,
    ) -> Outcome {
        let records = errs.iter().map(ErrorRecord::from).collect();
        self.account_final_records(job, rec, records, fence, dead)
            .await
    }

    async fn account_final_records(
        &self,
        job: &str,
        mut rec: AccountRecord,
        errs: Vec<ErrorRecord>,
        fence: Fence,
        dead: Option<String>,
    ) -> Outcome {
        rec.errors = errs;
        if let Err(e) = self.state.put_account(job, &rec, fence).await {
            return Outcome::Retry {
                delay: self.backoff(0),
                error: format!("state: {e}"),
            };
        }
        for e in &rec.errors {
            self.metrics
                .errors
                .with_label_values(&[job, e.class.as_str()])
                .inc();
        }
        let classes: Vec<&str> = rec.errors.iter().map(|e| e.class.as_str()).collect();
        warn!(job, account = %rec.account, classes = %classes.join(","), "account failed");
        match dead {
            Some(error) => Outcome::Dead { error },
            None => Outcome::Ack,
        }
    }

    /// Record the folders the saved state proved unchanged as done: the counts of the pass that
    /// left them so (their skipped-folder reports), no slice (`slices` 0), written under the
    /// account lease's fence (no folder task of this job has written them yet: the fan-out comes
    /// after).
    async fn record_unchanged(
        &self,
        t: &AccountTask,
        rec: &AccountRecord,
        unchanged: &[(usize, imapfleet_sync::report::FolderReport)],
        fence: Fence,
    ) -> Result<(), String> {
        let a = &t.account;
        let job = a.job.as_str();
        for (i, report) in unchanged {
            let Some(spec) = rec.folders.get(*i) else {
                continue;
            };
            let mut st = FolderState::new(spec, false);
            st.merge_slice(report, &[]);
            st.slices = 0;
            st.done = true;
            self.state
                .put_folder(job, &a.account, *i, &st, fence)
                .await
                .map_err(|e| format!("state: {e}"))?;
            self.metrics
                .messages_skipped
                .with_label_values(&[job])
                .inc_by(st.counts.skipped);
            debug!(job, account = %a.account, folder = %spec.name1, "unchanged since the last pass: done without a folder task");
        }
        Ok(())
    }

    /// Publish a folder task for every folder of `rec` not done yet.
    async fn fan_out(&self, t: &AccountTask, rec: &AccountRecord) -> Result<(), String> {
        let a = &t.account;
        for (i, f) in rec.folders.iter().enumerate() {
            match self.state.folder(&a.job, &a.account, i).await {
                Ok(Some(st)) if st.done => continue,
                Ok(_) => {}
                Err(e) => return Err(format!("state: {e}")),
            }
            let ft = FolderTask {
                account: a.clone(),
                index: i,
                folder: f.clone(),
                slice: 0,
                created: rec.created.contains(&f.raw2),
                create_failed: rec
                    .create_failed
                    .iter()
                    .find(|(raw, _)| *raw == f.raw2)
                    .map(|(_, why)| why.clone()),
            };
            self.queue
                .publish(&Task::Folder(ft).encode())
                .await
                .map_err(|e| format!("queue: {e}"))?;
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------

    async fn folder_task(&self, t: &FolderTask, tr: Try) -> Outcome {
        let attempt = tr.attempt;
        let a = &t.account;
        let job = a.job.as_str();
        match self.state.folder(job, &a.account, t.index).await {
            Ok(Some(st)) if st.done => return Outcome::Ack,
            Ok(_) => {}
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("state: {e}"),
                }
            }
        }
        let (k_pair, k_folder) = t.lock_keys();
        let k1 = match self.lease(job, &k_pair).await {
            Ok(Some(k)) => k,
            Ok(None) => return Outcome::Requeue(Duration::from_millis(200)),
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("lock: {e}"),
                }
            }
        };
        let k2 = match self.lease(job, &k_folder).await {
            Ok(Some(k)) => k,
            Ok(None) => {
                Self::release(vec![k1]).await;
                return Outcome::Requeue(Duration::from_millis(200));
            }
            Err(e) => {
                Self::release(vec![k1]).await;
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("lock: {e}"),
                };
            }
        };
        let outcome = self.folder_locked(t, tr, &k1, &k2).await;
        Self::release(vec![k1, k2]).await;
        outcome
    }

    async fn leases_current(&self, keepers: [&LeaseKeeper; 2]) -> bool {
        for k in keepers {
            if k.is_lost() {
                return false;
            }
            match self.locks.is_current(&k.lease().key, k.fence()).await {
                Ok(true) => {}
                _ => return false,
            }
        }
        true
    }

    async fn folder_locked(
        &self,
        t: &FolderTask,
        tr: Try,
        k1: &LeaseKeeper,
        k2: &LeaseKeeper,
    ) -> Outcome {
        let attempt = tr.attempt;
        let a = &t.account;
        let job = a.job.as_str();
        let fence = Fence(k1.fence());
        // Under the lease: another run may have finished the folder meanwhile.
        let prev = match self.state.folder(job, &a.account, t.index).await {
            Ok(Some(st)) if st.done => return Outcome::Ack,
            Ok(p) => p,
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("state: {e}"),
                }
            }
        };
        let (ep1, ep2) = match a.endpoints(&*self.sealer) {
            Ok(x) => x,
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: e.to_string(),
                }
            }
        };
        let mut opts = match a.sync.options() {
            Ok(o) => o,
            Err(e) => {
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: e.to_string(),
                }
            }
        };
        opts.connections = 1;
        // State writes carry the fence of the host2 folder's lease: a worker that lost it (a
        // newer lease took over) cannot write the pair's state or APPEND intents any more.
        opts.state = self
            .cfg
            .sync_state
            .as_ref()
            .map(|s| StateHandle::new(s.0.clone(), k2.fence()));
        opts.slice = Some(SliceBudget::new(
            self.cfg.slice_bytes,
            self.cfg.slice_messages,
        ));
        let pair = t.folder.pair();
        let _permits = match self.slots(job, [&ep1, &ep2], attempt).await {
            Ok(p) => p,
            Err(o) => return o,
        };
        let started = Instant::now();
        let start_ms = now_ms();
        let first = prev.as_ref().is_none_or(|p| p.slices == 0);
        let out = {
            let _conns = ConnectionGuard::open(&self.metrics, &[ep1.addr(), ep2.addr()]);
            let (l1, l2) = (k1.lost(), k2.lost());
            tokio::select! {
                o = sync_folder_slice(&ep1, &ep2, &opts, &pair, t.created && first, t.create_failed.as_deref(), &NoProgress) => Some(o),
                _ = l1.cancelled() => None,
                _ = l2.cancelled() => None,
            }
        };
        self.log_run(
            &k1.lease().key,
            k1.fence(),
            &k2.lease().key,
            k2.fence(),
            start_ms,
        );
        let Some(out) = out else {
            self.metrics.lease_losses.with_label_values(&[job]).inc();
            warn!(job, account = %a.account, folder = %t.folder.name1, "lease lost mid-slice: stopped, task put back");
            return Outcome::Requeue(Duration::ZERO);
        };
        if !self.leases_current([k1, k2]).await {
            self.metrics.lease_losses.with_label_values(&[job]).inc();
            warn!(job, account = %a.account, folder = %t.folder.name1, "lease lost: slice not recorded, task put back");
            return Outcome::Requeue(Duration::ZERO);
        }
        let r = &out.report;
        let limit_err = (!r.synced)
            .then(|| out.errors.iter().find(|e| is_limit(&e.message)))
            .flatten();
        let limit = limit_err.is_some();
        let transient = !r.synced
            && (limit
                || out.errors.is_empty()
                || out.errors.iter().all(|e| is_transient_class(e.class)));
        let mut st = prev.unwrap_or_else(|| FolderState::new(&t.folder, t.created));
        let limit_decision = limit_err.map(|e| {
            let ep = if limit_side(e) == 2 { &ep2 } else { &ep1 };
            self.on_limit(job, &ep.addr(), &ep.user, &e.message, tr)
        });
        let (outcome, more) = if let Some(Err(given_up)) = limit_decision {
            // Refused for too long: the folder ends failed, the task goes to the dead letters.
            st.merge_partial(r);
            let error = given_up.message.clone();
            self.metrics
                .errors
                .with_label_values(&[job, CONNECTION_LIMIT_CLASS])
                .inc();
            st.errors.push(ErrorRecord {
                folder: Some(t.folder.name1.clone()),
                ..given_up
            });
            st.done = true;
            (Outcome::Dead { error }, false)
        } else if let Some(Ok(defer)) = limit_decision {
            // Keep what the attempt did; the next attempt re-plans and goes on.
            st.merge_partial(r);
            (defer, false)
        } else if transient && attempt + 1 < self.cfg.max_attempts {
            st.merge_partial(r);
            let why: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
            let why = if why.is_empty() {
                "folder not processed".to_string()
            } else {
                why.join("; ")
            };
            warn!(job, account = %a.account, folder = %t.folder.name1, attempt, error = %why, "slice failed; will retry");
            (
                Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: why,
                },
                false,
            )
        } else {
            st.merge_slice(r, &out.errors);
            let more = r.synced && out.deferred > 0;
            st.done = !more;
            self.count_errors(job, &out.errors);
            if transient {
                let why: Vec<String> = out.errors.iter().map(|e| e.to_string()).collect();
                (
                    Outcome::Dead {
                        error: why.join("; "),
                    },
                    false,
                )
            } else {
                (Outcome::Ack, more)
            }
        };
        if let Err(e) = self
            .state
            .put_folder(job, &a.account, t.index, &st, fence)
            .await
        {
            if matches!(e, crate::state::StateError::Stale { .. }) {
                self.metrics.lease_losses.with_label_values(&[job]).inc();
                return Outcome::Requeue(Duration::ZERO);
            }
            return Outcome::Retry {
                delay: self.backoff(attempt),
                error: format!("state: {e}"),
            };
        }
        self.metrics
            .messages_copied
            .with_label_values(&[job])
            .inc_by(r.transferred);
        self.metrics
            .bytes_copied
            .with_label_values(&[job])
            .inc_by(r.bytes);
        self.metrics
            .flags_updated
            .with_label_values(&[job])
            .inc_by(r.flags_updated);
        if st.done {
            self.metrics
                .messages_skipped
                .with_label_values(&[job])
                .inc_by(st.counts.skipped);
        }
        self.metrics.observe_folder_task(job, started.elapsed());
        debug!(job, account = %a.account, folder = %t.folder.name1, slice = t.slice, copied = r.transferred, more, "slice recorded");
        if more {
            let next = FolderTask {
                slice: t.slice + 1,
                ..t.clone()
            };
            if let Err(e) = self.queue.publish(&Task::Folder(next).encode()).await {
                // Recorded but not continued: redelivery runs the next slice.
                return Outcome::Retry {
                    delay: self.backoff(attempt),
                    error: format!("queue: {e}"),
                };
            }
        }
        outcome
    }

    fn log_run(&self, key1: &str, fence1: u64, key2: &str, fence2: u64, start_ms: u128) {
        let Some(path) = &self.cfg.run_log else {
            return;
        };
        let line = serde_json::json!({
            "pair_key": key1, "pair_fence": fence1, "folder_key": key2, "folder_fence": fence2,
            "start_ms": start_ms as u64, "end_ms": now_ms() as u64, "pid": std::process::id(),
        });
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = r {
            warn!(error = %e, "cannot append to the run log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{parse_batch, BatchFormat};
    use crate::dispatcher::Dispatcher;
    use crate::lock::MemoryLocks;
    use crate::queue::MemoryQueue;
    use crate::state::{AccountStatus, MemoryState};
    use crate::task::ProcessSealer;

    struct Rig {
        queue: MemoryQueue,
        state: Arc<MemoryState>,
        sealer: Arc<ProcessSealer>,
        metrics: Metrics,
    }

    fn rig(max_attempts: u32) -> Rig {
        Rig {
            queue: MemoryQueue::new(max_attempts),
            state: Arc::new(MemoryState::new()),
            sealer: Arc::new(ProcessSealer::default()),
            metrics: Metrics::new(),
        }
    }

    fn cfg(max_attempts: u32) -> WorkerConfig {
        WorkerConfig {
            concurrency: 2,
            max_attempts,
            backoff_base: Duration::from_millis(1),
            backoff_max: Duration::from_millis(5),
            ..WorkerConfig::default()
        }
    }

    /// Run a worker until the queue is idle.
    async fn drain(r: &Rig, cfg: WorkerConfig) {
        let w = Arc::new(Worker::new(
            Arc::new(r.queue.clone()),
            Arc::new(MemoryLocks::new()),
            r.state.clone(),
            r.sealer.clone(),
            r.metrics.clone(),
            cfg,
        ));
        let stop = CancellationToken::new();
        let h = tokio::spawn(w.run(stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !r.queue.is_idle() {
            assert!(Instant::now() < deadline, "queue never idle");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.cancel();
        h.await.unwrap();
    }

    #[tokio::test]
    async fn an_unreadable_task_is_dead_lettered_after_its_attempts() {
        let r = rig(3);
        r.queue.publish(b"{not a task").await.unwrap();
        drain(&r, cfg(3)).await;
        let dead = r.queue.take_dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].attempts, 3);
        assert!(dead[0].error.contains("task format"), "{}", dead[0].error);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retried_then_the_account_fails_as_connect() {
        let r = rig(3);
        // Nothing listens on port 1.
        let b = parse_batch(
            "127.0.0.1;u;pw;127.0.0.1;u;pw;--port1 1 --port2 1 --timeout 2;",
            BatchFormat::Imapsync,
            "",
        );
        let d = Dispatcher::new(
            Arc::new(r.queue.clone()),
            r.state.clone(),
            r.sealer.clone(),
            r.metrics.clone(),
        );
        let job = d.dispatch(&b.accounts, Some("t"), 5).await.unwrap();
        drain(&r, cfg(3)).await;
        let v = d.status(&job.id).await.unwrap();
        let a = &v.accounts[0];
        assert_eq!(a.status, AccountStatus::Failed, "{a:?}");
        assert_eq!(a.error_class.as_deref(), Some("connect_host1"));
        let rec = r.state.account(&job.id, &a.account).await.unwrap().unwrap();
        assert_eq!(rec.retries, 2, "two retries before the last attempt");
        assert_eq!(
            r.queue.take_dead_letters().len(),
            1,
            "given up: dead-lettered"
        );
        let m = r.metrics.render();
        use crate::metrics::sample;
        assert_eq!(
            sample(
                &m,
                "imapfleet_task_retries_total",
                &[(crate::metrics::JOB_LABEL, &job.id)]
            ),
            Some(2.0)
        );
        assert_eq!(
            sample(
                &m,
                "imapfleet_dead_lettered_total",
                &[(crate::metrics::JOB_LABEL, &job.id)]
            ),
            Some(1.0)
        );
        assert_eq!(
            sample(&m, "imapfleet_errors_total", &[("class", "connect_host1")]),
            Some(1.0)
        );
        assert!(!m.contains("pw"), "{m}");
    }

    #[tokio::test]
    async fn a_folder_task_of_a_done_folder_is_acknowledged_without_connecting() {
        let r = rig(3);
        let b = parse_batch(
            "127.0.0.1;u;pw;127.0.0.1;u;pw;--port1 1 --port2 1;",
            BatchFormat::Imapsync,
            "",
        );
        let d = Dispatcher::new(
            Arc::new(r.queue.clone()),
            r.state.clone(),
            r.sealer.clone(),
            r.metrics.clone(),
        );
        let job = d.dispatch(&b.accounts, None, 5).await.unwrap();
        // Drop the account task: publish a folder task by hand.
        let acc = {
            let del = r.queue.next().await.unwrap().unwrap();
            let Task::Account(t) = Task::decode(del.body()).unwrap() else {
                panic!()
            };
            del.ack().await.unwrap();
            t.account
        };
        let spec = FolderSpec {
            raw1: "INBOX".into(),
            name1: "INBOX".into(),
            raw2: "INBOX".into(),
            name2: "INBOX".into(),
            create: false,
            merged: false,
        };
        let mut st = FolderState::new(&spec, false);
        st.done = true;
        r.state
            .put_folder(&job.id, &acc.account, 0, &st, Fence(1))
            .await
            .unwrap();
        let ft = FolderTask {
            account: acc,
            index: 0,
            folder: spec,
            slice: 3,
            created: false,
            create_failed: None,
        };
        r.queue.publish(&Task::Folder(ft).encode()).await.unwrap();
        drain(&r, cfg(3)).await;
        assert!(r.queue.take_dead_letters().is_empty());
        let m = r.metrics.render();
        assert_eq!(
            crate::metrics::sample(&m, "imapfleet_tasks_total", &[("kind", "folder")]),
            Some(1.0)
        );
        assert_eq!(
            crate::metrics::sample(&m, "imapfleet_task_retries_total", &[]),
            None
        );
    }

    #[test]
    fn limit_refusals_are_recognised() {
        assert!(is_limit(
            "host1: authentication failed for u: NO [LIMIT] Too many"
        ));
        assert!(is_limit(
            "connection lost during LOGIN: BYE Maximum number of connections from user+IP exceeded"
        ));
        assert!(is_limit("Too many simultaneous connections. (Failure)"));
        assert!(!is_limit(
            "authentication failed for u: NO [AUTHENTICATIONFAILED] Authentication failed."
        ));
    }

    /// A server that greets and answers every login with `NO [LIMIT]`; counts the logins.
    async fn limit_server() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let logins = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = logins.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = l.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"* OK [CAPABILITY IMAP4rev1] fake\r\n").await;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let mut it = line.split_whitespace();
                        let tag = it.next().unwrap_or("*").to_string();
                        let verb = it.next().unwrap_or("").to_ascii_uppercase();
                        let answer = match verb.as_str() {
                            "CAPABILITY" => format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"),
                            "LOGIN" | "AUTHENTICATE" => {
                                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                format!("{tag} NO [LIMIT] Too many connections from this user\r\n")
                            }
                            "LOGOUT" => format!("* BYE bye\r\n{tag} OK done\r\n"),
                            _ => format!("{tag} BAD what\r\n"),
                        };
                        if w.write_all(answer.as_bytes()).await.is_err() || verb == "LOGOUT" {
                            break;
                        }
                    }
                });
            }
        });
        (port, logins)
    }

    #[tokio::test]
    async fn a_server_that_keeps_refusing_for_its_limit_fails_the_account_after_a_bounded_wait() {
        let (port, logins) = limit_server().await;
        let r = rig(3);
        let b = parse_batch(
            &format!(
                "127.0.0.1;alice;pw-Zq9;127.0.0.1;alice;pw-Zq9;--port1 {port} --port2 {port} --notls1 --notls2 --timeout 5;"
            ),
            BatchFormat::Imapsync,
            "",
        );
        assert!(b.is_clean(), "{:?}", b.errors);
        let d = Dispatcher::new(
            Arc::new(r.queue.clone()),
            r.state.clone(),
            r.sealer.clone(),
            r.metrics.clone(),
        );
        let job = d.dispatch(&b.accounts, Some("t"), 5).await.unwrap();
        let started = Instant::now();
        drain(
            &r,
            WorkerConfig {
                limit_backoff: Duration::from_millis(20),
                limit_max_wait: Duration::from_millis(400),
                limit_max_refusals: 0,
                ..cfg(3)
            },
        )
        .await;
        let took = started.elapsed();
        let v = d.status(&job.id).await.unwrap();
        let a = &v.accounts[0];
        assert_eq!(a.status, AccountStatus::Failed, "{a:?}");
        assert_eq!(a.error_class.as_deref(), Some(CONNECTION_LIMIT_CLASS));
        let rec = r.state.account(&job.id, &a.account).await.unwrap().unwrap();
        let msg = &rec.errors[0].message;
        assert!(
            msg.contains(&format!("127.0.0.1:{port}"))
                && msg.contains("alice")
                && msg.contains("[LIMIT]"),
            "names the host, the user and the server's words: {msg}"
        );
        assert_eq!(rec.retries, 0, "refusals are not attempts");
        // Pauses 20, 40, 80, 160 ms, then cut to the 400 ms deadline: several refusals, bounded.
        // Each try logs in to both sides (this one server) at once: two refusals per try.
        let n = logins.load(std::sync::atomic::Ordering::SeqCst) / 2;
        assert!((4..=8).contains(&n), "{n} tries");
        assert!(took >= Duration::from_millis(300), "waited: {took:?}");
        assert!(took < Duration::from_secs(10), "bounded: {took:?}");
        let dead = r.queue.take_dead_letters();
        assert_eq!(dead.len(), 1, "given up: dead-lettered");
        assert_eq!(dead[0].attempts, 1, "on its first attempt");
        assert!(
            dead[0].error.starts_with("connection limit: "),
            "{}",
            dead[0].error
        );
        let m = r.metrics.render();
        use crate::metrics::sample;
        assert_eq!(
            sample(&m, "imapfleet_limit_backoffs_total", &[]),
            Some(n as f64),
            "every refusal counted"
        );
        assert_eq!(
            sample(
                &m,
                "imapfleet_errors_total",
                &[("class", CONNECTION_LIMIT_CLASS)]
            ),
            Some(1.0)
        );
        assert_eq!(sample(&m, "imapfleet_dead_lettered_total", &[]), Some(1.0));
        assert_eq!(sample(&m, "imapfleet_task_retries_total", &[]), None);
        assert!(!m.contains("pw-Zq9") && !dead[0].error.contains("pw-Zq9"));
    }

    #[tokio::test]
    async fn the_refusal_count_bounds_the_limit_wait_too() {
        let (port, logins) = limit_server().await;
        let r = rig(3);
        let b = parse_batch(
            &format!(
                "127.0.0.1;bob;pw;127.0.0.1;bob;pw;--port1 {port} --port2 {port} --notls1 --notls2 --timeout 5;"
            ),
            BatchFormat::Imapsync,
            "",
        );
        let d = Dispatcher::new(
            Arc::new(r.queue.clone()),
            r.state.clone(),
            r.sealer.clone(),
            r.metrics.clone(),
        );
        let job = d.dispatch(&b.accounts, None, 5).await.unwrap();
        drain(
            &r,
            WorkerConfig {
                limit_backoff: Duration::from_millis(5),
                limit_max_wait: Duration::from_secs(3600),
                limit_max_refusals: 3,
                ..cfg(3)
            },
        )
        .await;
        let v = d.status(&job.id).await.unwrap();
        assert_eq!(
            v.accounts[0].error_class.as_deref(),
            Some(CONNECTION_LIMIT_CLASS)
        );
        // Three refusals waited out, the fourth gives up (two logins per try: both sides).
        assert_eq!(logins.load(std::sync::atomic::Ordering::SeqCst), 2 * 4);
        assert_eq!(r.queue.take_dead_letters().len(), 1);
    }
}
