//! Keep a lease alive while work runs under it, and say at once when it is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Lease, LockError, LockManager};

/// A renewal heartbeat for one lease: renews every `ttl / 3`; [`LeaseKeeper::lost`] fires when a
/// renewal is refused (the lease is no longer ours) or when no renewal has succeeded for `3/4 ttl`
/// (the backend is unreachable and the lease is about to expire, so another worker may take it).
/// Whoever writes under the lease stops as soon as it fires; state writes still check the fence.
///
/// Dropping the keeper stops the heartbeat and releases the lease in the background (when a tokio
/// runtime is there); [`LeaseKeeper::release`] does it in the foreground.
pub struct LeaseKeeper {
    lease: Lease,
    manager: Arc<dyn LockManager>,
    lost: CancellationToken,
    stop: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("key", &self.lease.key)
            .field("fence", &self.lease.fence)
            .field("lost", &self.lost.is_cancelled())
            .finish()
    }
}

impl LeaseKeeper {
    /// Start the heartbeat of a lease just acquired with `ttl`. Needs a tokio runtime.
    pub fn spawn(manager: Arc<dyn LockManager>, lease: Lease, ttl: Duration) -> Self {
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let task = tokio::spawn(heartbeat(
            manager.clone(),
            lease.clone(),
            ttl,
            lost.clone(),
            stop.clone(),
        ));
        LeaseKeeper {
            lease,
            manager,
            lost,
            stop,
            task: Some(task),
        }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    pub fn fence(&self) -> u64 {
        self.lease.fence
    }

    /// Cancelled when the lease is lost: `select!` on `lost().cancelled()` around the work.
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }

    /// `Err(Lost)` once the lease is lost: call before every write.
    pub fn check(&self) -> Result<(), LockError> {
        if self.is_lost() {
            Err(LockError::Lost {
                key: self.lease.key.clone(),
            })
        } else {
            Ok(())
        }
    }

    /// Stop the heartbeat and give the lease up (if still ours).
    pub async fn release(mut self) -> Result<(), LockError> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.manager.release(&self.lease).await
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            // Not released explicitly (an error path, a panic): release in the background so the
            // key does not stay taken for a whole ttl.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let manager = self.manager.clone();
                let lease = self.lease.clone();
                rt.spawn(async move {
                    let _ = task.await;
                    if let Err(e) = manager.release(&lease).await {
                        tracing::debug!(key = %lease.key, error = %e, "background lease release failed; it expires by itself");
                    }
                });
            }
        }
    }
}

async fn heartbeat(
    manager: Arc<dyn LockManager>,
    lease: Lease,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) {
    let interval = (ttl / 3).max(Duration::from_millis(1));
    let give_up = ttl * 3 / 4;
    // The lease was taken just before the keeper was spawned.
    let mut last_ok = Instant::now();
    let mut pause = interval;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        let started = Instant::now();
        let budget = (last_ok + give_up)
            .saturating_duration_since(started)
            .max(Duration::from_millis(1));
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(budget, manager.renew(&lease, ttl)) => r,
        };
        match outcome {
            Ok(Ok(())) => {
                last_ok = started;
                pause = interval;
                continue;
            }
            Ok(Err(LockError::Lost { .. })) => {
                tracing::warn!(key = %lease.key, fence = lease.fence, "lease lost: renewal refused");
                lost.cancel();
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(key = %lease.key, error = %e, "lease renewal failed; retrying");
            }
            Err(_) => {
                tracing::warn!(key = %lease.key, "lease renewal timed out; retrying");
            }
        }
        if Instant::now() >= last_ok + give_up {
            tracing::warn!(key = %lease.key, fence = lease.fence, "lease lost: no renewal for 3/4 of its ttl");
            lost.cancel();
            return;
        }
        pause = (interval / 4).max(Duration::from_millis(1));
    }
}
