//! The dispatcher: a checked batch becomes a job of account tasks; `status` reads the job back.
//! [`Dispatcher::dispatch_pass`] is one pass of a schedule ([`crate::schedule`]): a job named
//! `<schedule>-pass<N>` that leaves out (records as skipped, does not enqueue) every account whose
//! previous pass is still pending or running.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use tracing::{info, warn};

use crate::batch::{Batch, BatchAccount, BatchError};
use crate::metrics::Metrics;
use crate::queue::{QueueError, TaskQueue};
use crate::schedule::{self, Decision};
use crate::state::{AccountRecord, AccountStatus, JobView, StateError, StateStore};
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

/// An earlier pass as the skip rule reads it: job id, job name, (account identity, status).
type SeenPass = (String, String, Vec<(String, AccountStatus)>);

/// What one scheduled pass did.
#[derive(Debug, Clone)]
pub struct PassOutcome {
    pub job: Job,
    /// The pass number (the job is named `<schedule>-pass<N>`).
    pub pass: u32,
    /// Account tasks enqueued.
    pub enqueued: usize,
    /// Accounts left out: (account id in this job, batch line, why).
    pub skipped: Vec<(String, usize, String)>,
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
        let (refs, records) = self.build(&job, accounts, default_timeout)?;
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

    /// One pass of the schedule `schedule`: a new job `<schedule>-pass<N>` (N one more than the
    /// highest pass in the state) of `accounts`, where an account whose previous pass (the newest
    /// earlier pass that did not skip it) is still pending or running is recorded as skipped, with
    /// the reason, and not enqueued ([`schedule::decide`]).
    pub async fn dispatch_pass(
        &self,
        accounts: &[BatchAccount],
        schedule_name: &str,
        default_timeout: u64,
    ) -> Result<PassOutcome, DispatchError> {
        let mut earlier: Vec<(u32, Job)> = self
            .state
            .jobs()
            .await?
            .into_iter()
            .filter_map(|j| schedule::pass_number(schedule_name, &j.name).map(|n| (n, j)))
            .collect();
        earlier.sort_by_key(|p| std::cmp::Reverse(p.0));
        let pass = earlier.first().map_or(1, |(n, _)| n.saturating_add(1));
        let job = Job::new(
            Some(&schedule::pass_name(schedule_name, pass)),
            accounts.len(),
        );
        let (refs, mut records) = self.build(&job, accounts, default_timeout)?;

        // Earlier passes, newest first, read only as far back as some account needs.
        let ids: Vec<String> = records.iter().map(schedule::account_identity).collect();
        let mut seen: Vec<SeenPass> = Vec::new();
        let mut resolved: HashMap<&str, bool> = ids.iter().map(|i| (i.as_str(), false)).collect();
        for (_, j) in &earlier {
            if resolved.values().all(|r| *r) {
                break;
            }
            let Some(view) = self.state.view(&j.id).await? else {
                continue;
            };
            let statuses: Vec<(String, AccountStatus)> = view
                .accounts
                .iter()
                .map(|a| {
                    let rec = AccountRecord {
                        user1: a.user1.clone(),
                        host1: a.host1.clone(),
                        user2: a.user2.clone(),
                        host2: a.host2.clone(),
                        ..AccountRecord::default()
                    };
                    (schedule::account_identity(&rec), a.status)
                })
                .collect();
            for (id, st) in &statuses {
                if *st != AccountStatus::Skipped {
                    if let Some(r) = resolved.get_mut(id.as_str()) {
                        *r = true;
                    }
                }
            }
            seen.push((j.id.clone(), j.name.clone(), statuses));
        }
        let mut skipped = Vec::new();
        for (rec, id) in records.iter_mut().zip(&ids) {
            let prev = schedule::previous_pass(
                id,
                seen.iter()
                    .map(|(j, n, s)| (j.as_str(), n.as_str(), s.as_slice())),
            );
            if let Decision::Skip(why) = schedule::decide(prev.as_ref()) {
                warn!(job = %job.id, name = %job.name, account = %rec.account, line = rec.line, reason = %why, "account skipped");
                skipped.push((rec.account.clone(), rec.line, why.clone()));
                rec.skipped = Some(why);
            }
        }
        self.state.create_job(&job, &records).await?;
        let mut enqueued = 0;
        for (r, rec) in refs.into_iter().zip(&records) {
            if rec.skipped.is_some() {
                continue;
            }
            self.queue
                .publish(&Task::Account(AccountTask { account: r }).encode())
                .await?;
            enqueued += 1;
        }
        self.metrics
            .passes
            .with_label_values(&[schedule_name])
            .inc();
        self.metrics
            .accounts_skipped
            .with_label_values(&[schedule_name])
            .inc_by(skipped.len() as u64);
        info!(job = %job.id, name = %job.name, pass, enqueued, skipped = skipped.len(), "scheduled pass enqueued");
        self.refresh_queue_metrics().await;
        Ok(PassOutcome {
            job,
            pass,
            enqueued,
            skipped,
        })
    }

    /// Every account's task (passwords sealed) and its first record.
    fn build(
        &self,
        job: &Job,
        accounts: &[BatchAccount],
        default_timeout: u64,
    ) -> Result<(Vec<AccountRef>, Vec<AccountRecord>), DispatchError> {
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
        Ok((refs, records))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{parse_batch, BatchFormat};
    use crate::queue::MemoryQueue;
    use crate::state::{ErrorRecord, Fence, MemoryState};
    use crate::task::ProcessSealer;

    fn rig() -> (Dispatcher, Arc<MemoryQueue>, Arc<MemoryState>, Metrics) {
        let queue = Arc::new(MemoryQueue::new(3));
        let state = Arc::new(MemoryState::new());
        let metrics = Metrics::new();
        let d = Dispatcher::new(
            queue.clone(),
            state.clone(),
            Arc::new(ProcessSealer::default()),
            metrics.clone(),
        );
        (d, queue, state, metrics)
    }

    async fn finish(state: &MemoryState, job: &str, account: &str, failed: bool) {
        let mut r = state.account(job, account).await.unwrap().unwrap();
        r.started = Some("now".into());
        r.prepared = true;
        if failed {
            r.errors.push(ErrorRecord {
                class: "auth_host1".into(),
                folder: None,
                uid: None,
                message: "no".into(),
            });
        }
        state.put_account(job, &r, Fence(1)).await.unwrap();
    }

    #[tokio::test]
    async fn a_pass_skips_the_accounts_whose_previous_pass_still_runs() {
        let (d, queue, state, metrics) = rig();
        let b = parse_batch(
            "h1;alice;pw;h2;alice;pw;\nh1;bob;pw;h2;bob;pw;\n",
            BatchFormat::Imapsync,
            "",
        );
        assert!(b.is_clean());
        let p1 = d.dispatch_pass(&b.accounts, "nightly", 60).await.unwrap();
        assert_eq!((p1.pass, p1.job.name.as_str()), (1, "nightly-pass1"));
        assert_eq!((p1.enqueued, p1.skipped.len()), (2, 0));
        assert_eq!(queue.depth().await.unwrap(), 2);

        // Alice's first pass is done, Bob's still pending: pass 2 leaves Bob out.
        finish(&state, &p1.job.id, "a00001", false).await;
        let p2 = d.dispatch_pass(&b.accounts, "nightly", 60).await.unwrap();
        assert_eq!((p2.pass, p2.job.name.as_str()), (2, "nightly-pass2"));
        assert_eq!(p2.enqueued, 1);
        assert_eq!(p2.skipped.len(), 1);
        assert_eq!(p2.skipped[0].0, "a00002");
        assert!(
            p2.skipped[0].2.contains("previous pass still running")
                && p2.skipped[0].2.contains("nightly-pass1"),
            "{:?}",
            p2.skipped
        );
        assert_eq!(queue.depth().await.unwrap(), 3, "one more task");
        let v = state.view(&p2.job.id).await.unwrap().unwrap();
        assert_eq!(v.accounts[1].status, AccountStatus::Skipped);
        assert_eq!(v.accounts[0].status, AccountStatus::Pending);
        assert_eq!(v.by_status["skipped"], 1);

        // Bob's pass 1 failed (over), Alice's pass 2 still pending: pass 3 takes Bob, skips Alice;
        // Bob's previous pass is pass 1 (pass 2 skipped him).
        finish(&state, &p1.job.id, "a00002", true).await;
        let p3 = d.dispatch_pass(&b.accounts, "nightly", 60).await.unwrap();
        assert_eq!(p3.pass, 3);
        assert_eq!(p3.enqueued, 1);
        assert_eq!(p3.skipped.len(), 1);
        assert_eq!(p3.skipped[0].0, "a00001");
        assert!(
            p3.skipped[0].2.contains("nightly-pass2"),
            "{:?}",
            p3.skipped
        );

        // Another schedule's passes are its own.
        let other = d.dispatch_pass(&b.accounts, "weekly", 60).await.unwrap();
        assert_eq!((other.pass, other.enqueued), (1, 2));

        let text = metrics.render();
        assert_eq!(
            crate::metrics::sample(
                &text,
                "imapfleet_accounts_skipped_total",
                &[("schedule", "nightly")]
            ),
            Some(2.0)
        );
        assert_eq!(
            crate::metrics::sample(
                &text,
                "imapfleet_scheduled_passes_total",
                &[("schedule", "nightly")]
            ),
            Some(3.0)
        );
    }
}
