//! Lease locks with fencing tokens: a trait and two backends (Redis, in-process).
//!
//! A lease is held for `ttl` unless renewed; it can be lost (expiry, Redis flushed, clock jump). Every
//! lease carries a fencing token that grows with each acquisition of the same key, and every state
//! write checks that its token is still the newest: a worker that lost its lease cannot write.

use std::time::Duration;

use async_trait::async_trait;

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
}
