//! The dispatcher: a checked batch becomes a job of account tasks; `status` reads the job back.

use std::sync::Arc;

use chrono::Utc;
use tracing::info;

use crate::batch::{Batch, BatchAccount, BatchError};
use crate::metrics::Metrics;
use crate::queue::{QueueError, TaskQueue};
use crate::state::{AccountRecord, JobView, StateError, StateStore};
use crate::task::{AccountRef, AccountTask, Job, Sealer, Task, TaskError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the batch has {} bad line(s); nothing was enqueued", .0.len())]
    Batch(Vec<BatchError>),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("no job {0}")]
    NoJob(String),
}

/// The accounts to enqueue: all of them when the batch is clean; with `skip_bad_lines`, the good
/// ones (the bad lines are the caller's to report); otherwise every error, and nothing.
pub fn accepted(batch: &Batch, skip_bad_lines: bool) -> Result<&[BatchAccount], DispatchError> {
    let fatal = batch.errors.iter().any(|e| e.line == 0);
    if batch.errors.is_empty() || (skip_bad_lines && !fatal && !batch.accounts.is_empty()) {
        Ok(&batch.accounts)
    } else {
        Err(DispatchError::Batch(batch.errors.clone()))
    }
}

pub struct Dispatcher {
    queue: Arc<dyn TaskQueue>,
    state: Arc<dyn StateStore>,
    sealer: Arc<dyn Sealer>,
    metrics: Metrics,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatcher")
    }
}

impl Dispatcher {
    pub fn new(
        queue: Arc<dyn TaskQueue>,
        state: Arc<dyn StateStore>,
        sealer: Arc<dyn Sealer>,
        metrics: Metrics,
    ) -> Dispatcher {
        Dispatcher {
            queue,
            state,
            sealer,
            metrics,
        }
    }

    /// Create a job of `accounts` and enqueue one account task each. Every task is built (and its
    /// passwords sealed) before the job is recorded, so a sealing failure enqueues nothing.
    pub async fn dispatch(
        &self,
        accounts: &[BatchAccount],
        name: Option<&str>,
        default_timeout: u64,
    ) -> Result<Job, DispatchError> {
        let job = Job::new(name, accounts.len());
        let now = Utc::now();
        let mut refs = Vec::with_capacity(accounts.len());
        for (i, a) in accounts.iter().enumerate() {
            refs.push(AccountRef::from_batch(
                &job.id,
                i,
                a,
                default_timeout,
                &*self.sealer,
                now,
            )?);
        }
        let records: Vec<AccountRecord> = refs
            .iter()
            .map(|r| AccountRecord {
                account: r.account.clone(),
                line: r.line,
                user1: r.ep1.user.clone(),
                host1: r.ep1.addr(),
                user2: r.ep2.user.clone(),
                host2: r.ep2.addr(),
                ..AccountRecord::default()
            })
            .collect();
        self.state.create_job(&job, &records).await?;
        for r in refs {
            self.queue
                .publish(&Task::Account(AccountTask { account: r }).encode())
                .await?;
        }
        info!(job = %job.id, name = %job.name, accounts = job.accounts, "job enqueued");
        self.refresh_queue_metrics().await;
        Ok(job)
    }

    /// The job's state, and the metrics that show it (queue depth, accounts by status).
    pub async fn status(&self, job: &str) -> Result<JobView, DispatchError> {
        let view = self
            .state
            .view(job)
            .await?
            .ok_or_else(|| DispatchError::NoJob(job.to_string()))?;
        for (status, n) in &view.by_status {
            self.metrics
                .accounts
                .with_label_values(&[job, status.as_str()])
                .set(*n as i64);
        }
        self.refresh_queue_metrics().await;
        Ok(view)
    }

    pub async fn refresh_queue_metrics(&self) {
        if let Ok(d) = self.queue.depth().await {
            self.metrics.queue_depth.set(d as i64);
        }
        if let Ok(d) = self.queue.dead_letters().await {
            self.metrics.dead_letters.set(d as i64);
        }
    }
}
