//! Redis lease locks.
//!
//! Keys (with a configurable prefix, default `imapfleet`):
//! - `<prefix>:lock:<key>`: the holder's random token, with a `PX` expiry of the lease's ttl.
//! - `<prefix>:lock:<key>:fence`: the fencing counter, `INCR`ed at every acquisition, never expired
//!   (an expired counter would restart at 1 and make old fences look new again).
//!
//! Acquisition is one Lua script (`SET NX PX` then `INCR`), so a lease never exists without its fence.
//! Release and renewal compare the token first (Lua compare-and-delete, compare-and-`PEXPIRE`), so a
//! holder whose lease expired and was taken over cannot touch the new holder's key. Redis expires keys
//! by its wall clock, not a monotonic one: a clock jump can end a lease early, which is what the fence
//! is for. A holder killed with `kill -9` leaves its key to expire after the ttl.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{random_token, Lease, LockError, LockManager};
use crate::queue::amqp::redact_url;

/// Environment variable with the Redis URL.
pub const REDIS_URL_ENV: &str = "IMAPFLEET_REDIS_URL";
/// Redis URL when the environment says nothing.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// The Redis URL from `IMAPFLEET_REDIS_URL`, or the local default.
pub fn redis_url_from_env() -> String {
    std::env::var(REDIS_URL_ENV)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_string())
}

/// A reconnecting, multiplexed Redis connection with short timeouts (a lease heartbeat must notice
/// an unreachable Redis well within a ttl). Errors never carry the URL's password.
pub async fn redis_connect(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url)
        .map_err(|e| redact_url(&format!("Redis URL {}: {e}", redact_url(url))))?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    tokio::time::timeout(
        Duration::from_secs(10),
        ConnectionManager::new_with_config(client, config),
    )
    .await
    .map_err(|_| format!("Redis connect to {}: timed out", redact_url(url)))?
    .map_err(|e| redact_url(&format!("Redis connect to {}: {e}", redact_url(url))))
}

const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Lease locks in Redis. Cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisLocks {
    conn: ConnectionManager,
    prefix: String,
    acquire: std::sync::Arc<redis::Script>,
    renew: std::sync::Arc<redis::Script>,
    release: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for RedisLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLocks")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn backend(e: redis::RedisError) -> LockError {
    LockError::Backend(redact_url(&format!("Redis: {e}")))
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisLocks {
    /// Connect to `url`; keys start with `prefix` (`None`: `imapfleet`).
    pub async fn connect(url: &str, prefix: Option<&str>) -> Result<Self, LockError> {
        let conn = redis_connect(url).await.map_err(LockError::Backend)?;
        Ok(Self::with_connection(conn, prefix))
    }

    /// Use an existing connection (shared with the state store or the limits).
    pub fn with_connection(conn: ConnectionManager, prefix: Option<&str>) -> Self {
        RedisLocks {
            conn,
            prefix: prefix.unwrap_or("imapfleet").to_string(),
            acquire: std::sync::Arc::new(redis::Script::new(ACQUIRE)),
            renew: std::sync::Arc::new(redis::Script::new(RENEW)),
            release: std::sync::Arc::new(redis::Script::new(RELEASE)),
        }
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:lock:{key}", self.prefix)
    }

    fn fence_key(&self, key: &str) -> String {
        format!("{}:lock:{key}:fence", self.prefix)
    }

    /// Delete the lock and fence keys of `key` (tests and operators' cleanup; breaks fencing for it).
    pub async fn purge(&self, key: &str) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.lock_key(key))
            .arg(self.fence_key(key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl LockManager for RedisLocks {
    async fn try_acquire(&self, key: &str, ttl: Duration) -> Result<Option<Lease>, LockError> {
        let token = random_token().map_err(LockError::Backend)?;
        let mut conn = self.conn.clone();
        let fence: u64 = self
            .acquire
            .key(self.lock_key(key))
            .key(self.fence_key(key))
            .arg(&token)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        if fence == 0 {
            return Ok(None);
        }
        Ok(Some(Lease {
            key: key.to_string(),
            token,
            fence,
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let n: i64 = self
            .renew
            .key(self.lock_key(&lease.key))
            .arg(&lease.token)
            .arg(ttl_ms(ttl))
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        if n == 1 {
            Ok(())
        } else {
            Err(LockError::Lost {
                key: lease.key.clone(),
            })
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LockError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .release
            .key(self.lock_key(&lease.key))
            .arg(&lease.token)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn is_current(&self, key: &str, fence: u64) -> Result<bool, LockError> {
        let mut conn = self.conn.clone();
        let cur: Option<u64> = redis::cmd("GET")
            .arg(self.fence_key(key))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(cur == Some(fence))
    }

    async fn is_held(&self, lease: &Lease) -> Result<bool, LockError> {
        let mut conn = self.conn.clone();
        let (token, fence): (Option<String>, Option<u64>) = redis::pipe()
            .cmd("GET")
            .arg(self.lock_key(&lease.key))
            .cmd("GET")
            .arg(self.fence_key(&lease.key))
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(token.as_deref() == Some(lease.token.as_str()) && fence == Some(lease.fence))
    }
}
