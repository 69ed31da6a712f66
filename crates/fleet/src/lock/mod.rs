//! Lease locks with fencing tokens: a trait and two backends (Redis, in-process).
//!
//! A lease is held for `ttl` unless renewed; it can be lost (expiry, Redis flushed, clock jump). Every
//! lease carries a fencing token that grows with each acquisition of the same key, and every state
//! write checks that its token is still the newest: a worker that lost its lease cannot write.

use std::time::Duration;

use async_trait::async_trait;

pub mod host;
mod keeper;
pub mod memory;
pub mod redis;

pub use self::redis::RedisLocks;
pub use keeper::LeaseKeeper;
pub use memory::MemoryLocks;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("lock backend: {0}")]
    Backend(String),
    /// The lease is no longer ours (expired or taken over).
    #[error("lease on {key} lost")]
    Lost { key: String },
}

/// A held lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub key: String,
    /// Random value identifying this holder (compare-and-delete on release).
    pub token: String,
    /// Monotonic per key: a newer lease always has a larger fence.
    pub fence: u64,
}

#[async_trait]
pub trait LockManager: Send + Sync {
    /// Take the lease on `key` if free; `None` when someone else holds it.
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, LockError>;
    /// Extend our lease; `Err(Lost)` if it is no longer ours.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), LockError>;
    /// Give it up (only if still ours).
    async fn release(&self, lease: &Lease) -> Result<(), LockError>;
    /// True when `fence` is still the newest fencing token issued for `key`.
    async fn is_current(&self, key: &str, fence: u64) -> Result<bool, LockError>;

    /// True when `lease` is still held (ours and not expired). Backends answer exactly; the default
    /// only checks the fence.
    async fn is_held(&self, lease: &Lease) -> Result<bool, LockError> {
        self.is_current(&lease.key, lease.fence).await
    }

    /// [`LockManager::try_acquire`] until it succeeds or `wait` has passed (`None` then), polling
    /// with a growing pause (10 ms doubling up to 500 ms).
    async fn acquire_within(
        &self,
        key: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>, LockError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(10);
        loop {
            if let Some(lease) = self.try_acquire(key, ttl).await? {
                return Ok(Some(lease));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }
}

/// A random token: 128 bits from the OS, hex.
pub(crate) fn random_token() -> Result<String, String> {
    let mut buf = [0u8; 16];
    getrandom::fill(&mut buf).map_err(|e| format!("no randomness from the OS: {e}"))?;
    Ok(hex::encode(buf))
}
