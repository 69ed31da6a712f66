//! `imapfleet run`: the dispatcher and N workers in one process, on the in-process queue, locks and
//! state (no RabbitMQ, no Redis). Same tasks, same code paths as the fleet.
//!
//! The saved sync state (`worker.sync_state`; the CLI gives the state directory's files, the same
//! as `imapfleet sync`, so that each run is a delta of the last one) outlives the process while its
//! lease locks do not: their fencing tokens start again at 1 at every run, so the store is fenced
//! in the process ([`ProcessFenced`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::batch::BatchAccount;
use crate::dispatcher::{DispatchError, Dispatcher};
use crate::limits::{ConnectionLimits, LimitsConfig};
use crate::lock::MemoryLocks;
use crate::metrics::Metrics;
use crate::queue::MemoryQueue;
use crate::state::{JobView, MemoryState};
use crate::syncstate::ProcessFenced;
use crate::task::ProcessSealer;
use crate::worker::{SyncStore, Worker, WorkerConfig};

#[derive(Debug, Clone)]
pub struct EmbeddedConfig {
    /// Tasks worked on at once.
    pub workers: usize,
    pub worker: WorkerConfig,
    pub job_name: Option<String>,
    /// Per-command timeout (seconds) for accounts that set none.
    pub default_timeout: u64,
    /// How often the job's progress is looked at.
    pub poll: Duration,
    /// Connection caps per host and per account (in-process).
    pub limits: LimitsConfig,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            workers: 4,
            worker: WorkerConfig::default(),
            job_name: None,
            default_timeout: 120,
            poll: Duration::from_millis(100),
            limits: LimitsConfig::default(),
        }
    }
}

/// Run `accounts` to the end (or until `stop` fires) and return the job's final state.
/// `on_progress` is called at every poll with the current state.
pub async fn run_embedded(
    accounts: &[BatchAccount],
    cfg: &EmbeddedConfig,
    metrics: Metrics,
    stop: CancellationToken,
    on_progress: &(dyn Fn(&JobView) + Send + Sync),
) -> Result<JobView, DispatchError> {
    let queue = MemoryQueue::new(cfg.worker.max_attempts);
    let locks = Arc::new(MemoryLocks::new());
    let state = Arc::new(MemoryState::new());
    let sealer = Arc::new(ProcessSealer::default());
    let dispatcher = Dispatcher::new(
        Arc::new(queue.clone()),
        state.clone(),
        sealer.clone(),
        metrics.clone(),
    );
    let job = dispatcher
        .dispatch(accounts, cfg.job_name.as_deref(), cfg.default_timeout)
        .await?;
    let wcfg = WorkerConfig {
        concurrency: cfg.workers.max(1),
        sync_state: cfg
            .worker
            .sync_state
            .as_ref()
            .map(|s| SyncStore(Arc::new(ProcessFenced::new(s.0.clone())))),
        ..cfg.worker.clone()
    };
    let worker = Arc::new(
        Worker::new(
            Arc::new(queue.clone()),
            locks,
            state.clone(),
            sealer,
            metrics,
            wcfg,
        )
        .with_limits(ConnectionLimits::in_memory(cfg.limits.clone())),
    );
    let worker_stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(worker_stop.clone()));
    let view = loop {
        let view = dispatcher.status(&job.id).await?;
        on_progress(&view);
        // Finished: every account final and nothing left in the queue (a duplicate task may
        // still be on its way to finding nothing to do).
        if view.finished() && queue.is_idle() {
            break view;
        }
        tokio::select! {
            _ = stop.cancelled() => {
                info!(job = %job.id, "stopping before the end");
                worker_stop.cancel();
                let _ = running.await;
                return dispatcher.status(&job.id).await;
            }
            _ = tokio::time::sleep(cfg.poll) => {}
        }
    };
    worker_stop.cancel();
    queue.close_now();
    let _ = running.await;
    Ok(view)
}
