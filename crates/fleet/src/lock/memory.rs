//! In-process lease locks: same semantics as Redis (expiry after `ttl`, random tokens, a fence per
//! key that only grows), on tokio's clock so tests can pause time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{random_token, Lease, LockError, LockManager};

#[derive(Debug)]
struct Held {
    token: String,
    fence: u64,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, Held>,
    /// Last fence issued per key (kept after release, as the Redis counter is).
    fences: HashMap<String, u64>,
}

/// In-process locks. Clones share the same table.
#[derive(Debug, Clone, Default)]
pub struct MemoryLocks {
    state: Arc<Mutex<State>>,
}

impl MemoryLocks {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forget every lease (as if the Redis holding them were flushed); fences stay.
    pub fn drop_all_leases(&self) {
        self.lock().held.clear();
    }
}

fn live<'a>(s: &'a State, key: &str, now: Instant) -> Option<&'a Held> {
    s.held.get(key).filter(|h| h.expires > now)
}

#[async_trait]
impl LockManager for MemoryLocks {
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        let token = random_token().map_err(LockError::Backend)?;
        let now = Instant::now();
        let mut s = self.lock();
        if live(&s, key, now).is_some() {
            return Ok(None);
        }
        let fence = s.fences.get(key).copied().unwrap_or(0) + 1;
        s.fences.insert(key.to_string(), fence);
        s.held.insert(
            key.to_string(),
            Held {
                token: token.clone(),
                fence,
                expires: now + ttl,
            },
        );
        Ok(Some(Lease {
            key: key.to_string(),
            token,
            fence,
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), LockError> {
        let now = Instant::now();
        let mut s = self.lock();
        match s.held.get_mut(&lease.key) {
            Some(h) if h.token == lease.token && h.expires > now => {
                h.expires = now + ttl;
                Ok(())
            }
            _ => Err(LockError::Lost {
                key: lease.key.clone(),
            }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let mut s = self.lock();
        if s.held
            .get(&lease.key)
            .is_some_and(|h| h.token == lease.token)
        {
            s.held.remove(&lease.key);
        }
        Ok(())
    }

    async fn is_current(&self, key: &str, fence: u64) -> Result<bool, LockError> {
        Ok(self.lock().fences.get(key) == Some(&fence))
    }

    async fn is_held(&self, lease: &Lease) -> Result<bool, LockError> {
        let s = self.lock();
        Ok(live(&s, &lease.key, Instant::now())
            .is_some_and(|h| h.token == lease.token && h.fence == lease.fence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::LeaseKeeper;

    const TTL: Duration = Duration::from_secs(30);

    #[tokio::test]
    async fn exclusive_until_released_and_fence_grows() {
        let locks = MemoryLocks::new();
        let a = locks.try_acquire("k", TTL).await.unwrap().expect("free");
        assert!(locks.try_acquire("k", TTL).await.unwrap().is_none());
        assert!(locks.try_acquire("other", TTL).await.unwrap().is_some());
        assert!(locks.is_current("k", a.fence).await.unwrap());
        assert!(locks.is_held(&a).await.unwrap());
        locks.release(&a).await.unwrap();
        assert!(!locks.is_held(&a).await.unwrap());
        let b = locks
            .try_acquire("k", TTL)
            .await
            .unwrap()
            .expect("free again");
        assert!(b.fence > a.fence);
        assert_ne!(a.token, b.token);
        assert!(!locks.is_current("k", a.fence).await.unwrap());
        assert!(locks.is_current("k", b.fence).await.unwrap());
        // A stale holder can neither renew nor release the new lease.
        assert!(matches!(
            locks.renew(&a, TTL).await,
            Err(LockError::Lost { .. })
        ));
        locks.release(&a).await.unwrap();
        assert!(locks.is_held(&b).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn expires_without_renewal_and_renewal_extends() {
        let locks = MemoryLocks::new();
        let ttl = Duration::from_secs(3);
        let a = locks.try_acquire("k", ttl).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        locks.renew(&a, ttl).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            locks.try_acquire("k", ttl).await.unwrap().is_none(),
            "renewed"
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!locks.is_held(&a).await.unwrap());
        assert!(matches!(
            locks.renew(&a, ttl).await,
            Err(LockError::Lost { .. })
        ));
        let b = locks.try_acquire("k", ttl).await.unwrap().expect("expired");
        assert!(b.fence > a.fence);
    }

    #[tokio::test(start_paused = true)]
    async fn keeper_renews_and_signals_loss() {
        let locks = MemoryLocks::new();
        let ttl = Duration::from_secs(3);
        let lease = locks.try_acquire("k", ttl).await.unwrap().unwrap();
        let keeper = LeaseKeeper::spawn(Arc::new(locks.clone()), lease.clone(), ttl);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(!keeper.is_lost(), "heartbeat keeps it");
        assert!(locks.try_acquire("k", ttl).await.unwrap().is_none());
        // Someone wipes the lease: the next heartbeat notices.
        locks.drop_all_leases();
        let lost = keeper.lost();
        tokio::time::timeout(ttl, lost.cancelled())
            .await
            .expect("loss signalled within a ttl");
        assert!(keeper.is_lost());
        assert!(keeper.check().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn keeper_release_frees_the_key() {
        let locks = MemoryLocks::new();
        let lease = locks.try_acquire("k", TTL).await.unwrap().unwrap();
        let keeper = LeaseKeeper::spawn(Arc::new(locks.clone()), lease, TTL);
        keeper.release().await.unwrap();
        assert!(locks.try_acquire("k", TTL).await.unwrap().is_some());
    }
}
