//! Fleet-wide limits: concurrent IMAP connections per host and per account, and optional
//! messages/s and bytes/s per host, shared by every worker through Redis (or in-process).
//!
//! Connection slots: one sorted set per scope (`<prefix>:conn:host:<host>`,
//! `<prefix>:conn:acct:<host>/<user>`) whose members are holder ids scored by their expiry time
//! (Redis server time, ms). A Lua script drops expired members, checks every cap and adds the holder
//! to every set, all or nothing. A [`ConnectionPermit`] renews its expiry every `ttl / 3` while held
//! and is released when dropped; a holder killed with `kill -9` ages out after `ttl`.
//!
//! Rates: a token bucket per host and kind in a Redis hash (Lua, Redis time), in "debt" form: a
//! take always succeeds and says how long to wait before going on, so one round trip per take and
//! takes larger than the burst still work.
//!
//! Being refused a slot is not an error of the account: [`ConnectionLimits::acquire`] waits (with
//! backoff) up to a deadline, and a [`LimitError::Busy`] means "try again later".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::lock::random_token;
use crate::lock::redis::redis_connect;
use crate::queue::amqp::redact_url;

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("limits backend: {0}")]
    Backend(String),
    /// No slot within the wait: the fleet is at its cap for this host or account. Back off and
    /// retry; the account has not failed.
    #[error("no connection slot for {scope} within {waited:?} (fleet-wide cap reached)")]
    Busy { scope: String, waited: Duration },
}

/// One slot key and its cap (0: no cap, only counted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: String,
    pub cap: u32,
}

/// Where slots and buckets live.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Add `holder` to every slot, or to none if any is at its cap (a holder already in a slot does
    /// not count twice). `true` when taken.
    async fn try_take(
        &self,
        slots: &[Slot],
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, LimitError>;
    /// Push the holder's expiry out to `ttl` from now (re-adding it if it had aged out).
    async fn renew(&self, keys: &[String], holder: &str, ttl: Duration) -> Result<(), LimitError>;
    async fn release(&self, keys: &[String], holder: &str) -> Result<(), LimitError>;
    /// Live holders of a slot.
    async fn count(&self, key: &str) -> Result<u32, LimitError>;
    /// Token bucket `key` refilling at `rate`/s up to `burst`: take `cost` and return how long to
    /// wait before using it (zero when the bucket had enough).
    async fn take_tokens(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        cost: f64,
    ) -> Result<Duration, LimitError>;
}

// ---------------------------------------------------------------------------------------------
// In-process store
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct MemState {
    slots: HashMap<String, HashMap<String, Instant>>,
    buckets: HashMap<String, (f64, Instant)>,
}

/// In-process store (single-machine runs and tests), on tokio's clock.
#[derive(Debug, Clone, Default)]
pub struct MemoryLimitStore {
    state: Arc<Mutex<MemState>>,
}

impl MemoryLimitStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl LimitStore for MemoryLimitStore {
    async fn try_take(
        &self,
        slots: &[Slot],
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, LimitError> {
        let now = Instant::now();
        let mut s = self.lock();
        for slot in slots {
            let set = s.slots.entry(slot.key.clone()).or_default();
            set.retain(|_, exp| *exp > now);
            if slot.cap > 0 && set.len() >= slot.cap as usize && !set.contains_key(holder) {
                return Ok(false);
            }
        }
        for slot in slots {
            s.slots
                .entry(slot.key.clone())
                .or_default()
                .insert(holder.to_string(), now + ttl);
        }
        Ok(true)
    }

    async fn renew(&self, keys: &[String], holder: &str, ttl: Duration) -> Result<(), LimitError> {
        let now = Instant::now();
        let mut s = self.lock();
        for k in keys {
            s.slots
                .entry(k.clone())
                .or_default()
                .insert(holder.to_string(), now + ttl);
        }
        Ok(())
    }

    async fn release(&self, keys: &[String], holder: &str) -> Result<(), LimitError> {
        let mut s = self.lock();
        for k in keys {
            if let Some(set) = s.slots.get_mut(k) {
                set.remove(holder);
                if set.is_empty() {
                    s.slots.remove(k);
                }
            }
        }
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u32, LimitError> {
        let now = Instant::now();
        let s = self.lock();
        Ok(s.slots
            .get(key)
            .map(|set| set.values().filter(|e| **e > now).count() as u32)
            .unwrap_or(0))
    }

    async fn take_tokens(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        cost: f64,
    ) -> Result<Duration, LimitError> {
        if rate <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let now = Instant::now();
        let mut s = self.lock();
        let (tokens, ts) = s.buckets.get(key).copied().unwrap_or((burst, now));
        let refilled = (tokens + now.duration_since(ts).as_secs_f64() * rate).min(burst);
        let left = refilled - cost;
        s.buckets.insert(key.to_string(), (left, now));
        Ok(debt_wait(left, rate))
    }
}

fn debt_wait(left: f64, rate: f64) -> Duration {
    if left >= 0.0 {
        Duration::ZERO
    } else {
        Duration::from_secs_f64((-left / rate).min(86_400.0))
    }
}

// ---------------------------------------------------------------------------------------------
// Redis store
// ---------------------------------------------------------------------------------------------

const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i, k in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  local cap = tonumber(ARGV[i + 2])
  if cap > 0 and redis.call('ZCARD', k) >= cap and not redis.call('ZSCORE', k, ARGV[1]) then
    return 0
  end
end
for i, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + ttl, ARGV[1])
  redis.call('PEXPIRE', k, ttl * 2)
end
return 1
";

const RENEW: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
for i, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + ttl, ARGV[1])
  if redis.call('PTTL', k) < ttl * 2 then redis.call('PEXPIRE', k, ttl * 2) end
end
return 1
";

const COUNT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
";

// Token bucket in debt form. ARGV: rate per s, burst, cost. Returns the wait in ms.
const TOKENS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local left = tokens - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(left), 'ts', now)
local idle = math.ceil((burst - left) / rate * 1000) + 1000
redis.call('PEXPIRE', KEYS[1], idle)
if left >= 0 then return 0 end
return math.ceil(-left / rate * 1000)
";

/// Slots and buckets in Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimitStore {
    conn: ConnectionManager,
    take: Arc<redis::Script>,
    renew: Arc<redis::Script>,
    count: Arc<redis::Script>,
    tokens: Arc<redis::Script>,
}

impl std::fmt::Debug for RedisLimitStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimitStore").finish_non_exhaustive()
    }
}

fn backend(e: redis::RedisError) -> LimitError {
    LimitError::Backend(redact_url(&format!("Redis: {e}")))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisLimitStore {
    pub async fn connect(url: &str) -> Result<Self, LimitError> {
        Ok(Self::with_connection(
            redis_connect(url).await.map_err(LimitError::Backend)?,
        ))
    }

    pub fn with_connection(conn: ConnectionManager) -> Self {
        RedisLimitStore {
            conn,
            take: Arc::new(redis::Script::new(TAKE)),
            renew: Arc::new(redis::Script::new(RENEW)),
            count: Arc::new(redis::Script::new(COUNT)),
            tokens: Arc::new(redis::Script::new(TOKENS)),
        }
    }
}

#[async_trait]
impl LimitStore for RedisLimitStore {
    async fn try_take(
        &self,
        slots: &[Slot],
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, LimitError> {
        if slots.is_empty() {
            return Ok(true);
        }
        let mut inv = self.take.prepare_invoke();
        for s in slots {
            inv.key(&s.key);
        }
        inv.arg(holder).arg(ms(ttl));
        for s in slots {
            inv.arg(s.cap);
        }
        let mut conn = self.conn.clone();
        let r: i64 = inv.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(r == 1)
    }

    async fn renew(&self, keys: &[String], holder: &str, ttl: Duration) -> Result<(), LimitError> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut inv = self.renew.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        inv.arg(holder).arg(ms(ttl));
        let mut conn = self.conn.clone();
        let _: i64 = inv.invoke_async(&mut conn).await.map_err(backend)?;
        Ok(())
    }

    async fn release(&self, keys: &[String], holder: &str) -> Result<(), LimitError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("ZREM").arg(k).arg(holder).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await.map_err(backend)
    }

    async fn count(&self, key: &str) -> Result<u32, LimitError> {
        let mut conn = self.conn.clone();
        let n: u32 = self
            .count
            .key(key)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(n)
    }

    async fn take_tokens(
        &self,
        key: &str,
        rate: f64,
        burst: f64,
        cost: f64,
    ) -> Result<Duration, LimitError> {
        if rate <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let mut conn = self.conn.clone();
        let wait_ms: u64 = self
            .tokens
            .key(key)
            .arg(rate)
            .arg(burst)
            .arg(cost)
            .invoke_async(&mut conn)
            .await
            .map_err(backend)?;
        Ok(Duration::from_millis(wait_ms))
    }
}

// ---------------------------------------------------------------------------------------------
// Connection caps
// ---------------------------------------------------------------------------------------------

/// Caps for one host (overrides of the defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCaps {
    /// Concurrent connections to the host from the whole fleet.
    pub per_host: Option<u32>,
    /// Concurrent connections of one account on the host (Gmail: 15).
    pub per_account: Option<u32>,
}

/// The caps; 0 means no cap (connections are still counted).
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub per_host: u32,
    pub per_account: u32,
    /// Per-host overrides, by lower-case host name.
    pub hosts: HashMap<String, HostCaps>,
    /// A permit not renewed for this long is dropped (its holder died).
    pub ttl: Duration,
    /// Key prefix in Redis.
    pub prefix: String,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            per_host: 0,
            // Dovecot's mail_max_userip_connections default is 10.
            per_account: 10,
            hosts: HashMap::new(),
            ttl: Duration::from_secs(60),
            prefix: "imapfleet".into(),
        }
    }
}

impl LimitsConfig {
    pub fn with_host(mut self, host: &str, caps: HostCaps) -> Self {
        self.hosts.insert(host.to_ascii_lowercase(), caps);
        self
    }

    fn caps(&self, host: &str) -> (u32, u32) {
        let o = self.hosts.get(host).copied().unwrap_or_default();
        (
            o.per_host.unwrap_or(self.per_host),
            o.per_account.unwrap_or(self.per_account),
        )
    }

    pub fn host_key(&self, host: &str) -> String {
        format!("{}:conn:host:{}", self.prefix, host.to_ascii_lowercase())
    }

    pub fn account_key(&self, host: &str, user: &str) -> String {
        format!(
            "{}:conn:acct:{}/{}",
            self.prefix,
            host.to_ascii_lowercase(),
            user
        )
    }
}

/// Fleet-wide connection caps. Cheap to clone.
#[derive(Clone)]
pub struct ConnectionLimits {
    store: Arc<dyn LimitStore>,
    cfg: Arc<LimitsConfig>,
}

impl std::fmt::Debug for ConnectionLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimits")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl ConnectionLimits {
    pub fn new(store: Arc<dyn LimitStore>, cfg: LimitsConfig) -> Self {
        ConnectionLimits {
            store,
            cfg: Arc::new(cfg),
        }
    }

    /// In-process limits.
    pub fn in_memory(cfg: LimitsConfig) -> Self {
        Self::new(Arc::new(MemoryLimitStore::new()), cfg)
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.cfg
    }

    fn slots(&self, host: &str, user: &str) -> Vec<Slot> {
        let host = host.to_ascii_lowercase();
        let (per_host, per_account) = self.cfg.caps(&host);
        vec![
            Slot {
                key: self.cfg.host_key(&host),
                cap: per_host,
            },
            Slot {
                key: self.cfg.account_key(&host, user),
                cap: per_account,
            },
        ]
    }

    /// A slot for one connection of `user` to `host`, if both caps allow it now.
    pub async fn try_acquire(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<ConnectionPermit>, LimitError> {
        let slots = self.slots(host, user);
        let holder = random_token().map_err(LimitError::Backend)?;
        if !self.store.try_take(&slots, &holder, self.cfg.ttl).await? {
            return Ok(None);
        }
        Ok(Some(ConnectionPermit::start(
            self.store.clone(),
            slots.into_iter().map(|s| s.key).collect(),
            holder,
            self.cfg.ttl,
            host.to_ascii_lowercase(),
        )))
    }

    /// Wait for a slot (polling with backoff from 50 ms up to 2 s) for at most `wait`;
    /// [`LimitError::Busy`] then.
    pub async fn acquire(
        &self,
        host: &str,
        user: &str,
        wait: Duration,
    ) -> Result<ConnectionPermit, LimitError> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(50);
        loop {
            if let Some(p) = self.try_acquire(host, user).await? {
                return Ok(p);
            }
            let waited = start.elapsed();
            if waited >= wait {
                return Err(LimitError::Busy {
                    scope: format!("{user} on {host}"),
                    waited,
                });
            }
            // A little jitter so waiting workers do not poll in lockstep.
            let jitter = Duration::from_millis(u64::from(getrandom::u32().unwrap_or(0) % 50));
            tokio::time::sleep((pause + jitter).min(wait - waited)).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// Connections open to `host` across the fleet.
    pub async fn open_on_host(&self, host: &str) -> Result<u32, LimitError> {
        self.store.count(&self.cfg.host_key(host)).await
    }

    /// Connections open for `user` on `host` across the fleet.
    pub async fn open_for_account(&self, host: &str, user: &str) -> Result<u32, LimitError> {
        self.store.count(&self.cfg.account_key(host, user)).await
    }
}

/// One connection slot, held until dropped (or [`ConnectionPermit::release`]d). Renews itself every
/// `ttl / 3` in the background; dropping it releases the slot in the background.
pub struct ConnectionPermit {
    store: Arc<dyn LimitStore>,
    keys: Vec<String>,
    holder: String,
    host: String,
    stop: CancellationToken,
    released: bool,
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl ConnectionPermit {
    fn start(
        store: Arc<dyn LimitStore>,
        keys: Vec<String>,
        holder: String,
        ttl: Duration,
        host: String,
    ) -> Self {
        let stop = CancellationToken::new();
        {
            let (store, keys, holder, stop) =
                (store.clone(), keys.clone(), holder.clone(), stop.clone());
            tokio::spawn(async move {
                let every = (ttl / 3).max(Duration::from_millis(10));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = store.renew(&keys, &holder, ttl).await {
                        tracing::warn!(error = %e, "connection permit renewal failed");
                    }
                }
            });
        }
        ConnectionPermit {
            store,
            keys,
            holder,
            host,
            stop,
            released: false,
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Give the slot back now and wait for the store to confirm.
    pub async fn release(mut self) -> Result<(), LimitError> {
        self.released = true;
        self.stop.cancel();
        self.store.release(&self.keys, &self.holder).await
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.stop.cancel();
        if self.released {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (store, keys, holder) = (
                self.store.clone(),
                std::mem::take(&mut self.keys),
                std::mem::take(&mut self.holder),
            );
            rt.spawn(async move {
                if let Err(e) = store.release(&keys, &holder).await {
                    tracing::debug!(error = %e, "connection permit release failed; it ages out");
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rates
// ---------------------------------------------------------------------------------------------

/// Optional fleet-wide rates per host: messages/s and bytes/s (0: unlimited). The burst is one
/// second's worth.
#[derive(Clone)]
pub struct RateLimits {
    store: Arc<dyn LimitStore>,
    prefix: String,
    pub messages_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("messages_per_sec", &self.messages_per_sec)
            .field("bytes_per_sec", &self.bytes_per_sec)
            .finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(
        store: Arc<dyn LimitStore>,
        prefix: &str,
        messages_per_sec: f64,
        bytes_per_sec: f64,
    ) -> Self {
        RateLimits {
            store,
            prefix: prefix.to_string(),
            messages_per_sec,
            bytes_per_sec,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.messages_per_sec <= 0.0 && self.bytes_per_sec <= 0.0
    }

    /// Account for `messages` and `bytes` about to be sent to `host`, and return how long the
    /// caller should wait first (the longer of the two buckets).
    pub async fn reserve(
        &self,
        host: &str,
        messages: u64,
        bytes: u64,
    ) -> Result<Duration, LimitError> {
        let host = host.to_ascii_lowercase();
        let mut wait = Duration::ZERO;
        if self.messages_per_sec > 0.0 && messages > 0 {
            let key = format!("{}:rate:msgs:{host}", self.prefix);
            let r = self.messages_per_sec;
            wait = wait.max(self.store.take_tokens(&key, r, r, messages as f64).await?);
        }
        if self.bytes_per_sec > 0.0 && bytes > 0 {
            let key = format!("{}:rate:bytes:{host}", self.prefix);
            let r = self.bytes_per_sec;
            wait = wait.max(self.store.take_tokens(&key, r, r, bytes as f64).await?);
        }
        Ok(wait)
    }

    /// [`RateLimits::reserve`] and sleep for the wait.
    pub async fn throttle(&self, host: &str, messages: u64, bytes: u64) -> Result<(), LimitError> {
        if self.is_unlimited() {
            return Ok(());
        }
        let wait = self.reserve(host, messages, bytes).await?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Server refusals for too many connections
// ---------------------------------------------------------------------------------------------

/// Class recorded for a task given up after servers kept refusing it for too many connections
/// (the fleet's own class, beside the engine's).
pub const CONNECTION_LIMIT_CLASS: &str = "connection_limit";

/// How long a task keeps coming back when a server refuses it for too many connections
/// (`NO [LIMIT]`): such a refusal is back-pressure, not a failure, so the task is put back after a
/// pause (not counted as an attempt) -- but not for ever: a server that never lets the account in
/// (a cap of 0, another client holding every slot) ends the task with [`CONNECTION_LIMIT_CLASS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitBackoff {
    /// Pause after the first refusal; it doubles with each refusal after that.
    pub base: Duration,
    /// Longest single pause.
    pub max_pause: Duration,
    /// Give up at a refusal that comes this long (or longer) after the task's first one.
    pub max_wait: Duration,
    /// Give up at the refusal after this many (0: no count, only `max_wait`).
    pub max_refusals: u32,
}

impl Default for LimitBackoff {
    fn default() -> Self {
        LimitBackoff {
            base: Duration::from_secs(2),
            max_pause: Duration::from_secs(60),
            max_wait: Duration::from_secs(30 * 60),
            max_refusals: 100,
        }
    }
}

/// What to do with a task a server just refused for too many connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Put it back for this long (before jitter); it is not an attempt.
    Wait(Duration),
    /// The bounded wait is used up: fail the task with [`CONNECTION_LIMIT_CLASS`].
    GiveUp,
}

impl LimitBackoff {
    /// The rule. `refusals`: refusals of this task before this one (0 at the first);
    /// `waited`: time since the first of them (zero at the first).
    ///
    /// The pause is `base * 2^refusals`, at most `max_pause`, and never past the end of
    /// `max_wait`, so the last pause ends at the deadline and the refusal after it gives up.
    pub fn decide(&self, refusals: u32, waited: Duration) -> LimitDecision {
        if self.max_refusals > 0 && refusals >= self.max_refusals {
            return LimitDecision::GiveUp;
        }
        if refusals > 0 && waited >= self.max_wait {
            return LimitDecision::GiveUp;
        }
        let pause = self
            .base
            .saturating_mul(1u32 << refusals.min(20))
            .min(self.max_pause)
            .min(self.max_wait.saturating_sub(waited));
        if pause.is_zero() {
            // Nothing left to wait (max_wait 0): give up at once rather than spin.
            return LimitDecision::GiveUp;
        }
        LimitDecision::Wait(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_host: u32, per_account: u32) -> ConnectionLimits {
        ConnectionLimits::in_memory(LimitsConfig {
            per_host,
            per_account,
            ttl: Duration::from_secs(6),
            ..LimitsConfig::default()
        })
    }

    #[tokio::test]
    async fn caps_per_account_and_per_host() {
        let l = limits(3, 2);
        let a1 = l
            .try_acquire("imap.example", "alice")
            .await
            .unwrap()
            .unwrap();
        let _a2 = l
            .try_acquire("IMAP.example", "alice")
            .await
            .unwrap()
            .unwrap();
        assert!(
            l.try_acquire("imap.example", "alice")
                .await
                .unwrap()
                .is_none(),
            "account cap"
        );
        let b1 = l.try_acquire("imap.example", "bob").await.unwrap().unwrap();
        assert!(
            l.try_acquire("imap.example", "carol")
                .await
                .unwrap()
                .is_none(),
            "host cap"
        );
        assert!(
            l.try_acquire("other.example", "alice")
                .await
                .unwrap()
                .is_some(),
            "other host"
        );
        assert_eq!(l.open_on_host("imap.example").await.unwrap(), 3);
        assert_eq!(
            l.open_for_account("imap.example", "alice").await.unwrap(),
            2
        );
        a1.release().await.unwrap();
        assert_eq!(
            l.open_for_account("imap.example", "alice").await.unwrap(),
            1
        );
        drop(b1); // released in the background
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(l.open_on_host("imap.example").await.unwrap(), 1);
        let _c = l
            .try_acquire("imap.example", "carol")
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn host_overrides_and_zero_means_uncapped() {
        let l = ConnectionLimits::in_memory(
            LimitsConfig {
                per_host: 0,
                per_account: 1,
                ..LimitsConfig::default()
            }
            .with_host(
                "imap.gmail.com",
                HostCaps {
                    per_host: None,
                    per_account: Some(15),
                },
            ),
        );
        let mut held = Vec::new();
        for _ in 0..15 {
            held.push(l.try_acquire("imap.gmail.com", "u").await.unwrap().unwrap());
        }
        assert!(l
            .try_acquire("imap.gmail.com", "u")
            .await
            .unwrap()
            .is_none());
        let _x = l
            .try_acquire("dovecot.example", "u")
            .await
            .unwrap()
            .unwrap();
        assert!(l
            .try_acquire("dovecot.example", "u")
            .await
            .unwrap()
            .is_none());
        assert_eq!(l.open_on_host("imap.gmail.com").await.unwrap(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_vanished_holder_ages_out_and_a_live_one_does_not() {
        let store = Arc::new(MemoryLimitStore::new());
        let l = ConnectionLimits::new(
            store.clone(),
            LimitsConfig {
                per_account: 1,
                ttl: Duration::from_secs(6),
                ..LimitsConfig::default()
            },
        );
        // A live permit keeps renewing past its ttl.
        let live = l.try_acquire("h", "alice").await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert!(l.try_acquire("h", "alice").await.unwrap().is_none());
        drop(live);
        tokio::time::sleep(Duration::from_millis(1)).await;
        // A holder that died without releasing (no heartbeat): its slot ages out after the ttl.
        let slots = l.slots("h", "bob");
        assert!(store
            .try_take(&slots, "dead-holder", Duration::from_secs(6))
            .await
            .unwrap());
        assert!(l.try_acquire("h", "bob").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert!(l.try_acquire("h", "bob").await.unwrap().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_then_reports_busy() {
        let l = limits(0, 1);
        let p = l.try_acquire("h", "u").await.unwrap().unwrap();
        let e = l
            .acquire("h", "u", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(e, LimitError::Busy { .. }), "{e}");
        let l2 = l.clone();
        let waiter =
            tokio::spawn(async move { l2.acquire("h", "u", Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_secs(3)).await;
        p.release().await.unwrap();
        assert!(waiter.await.unwrap().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_paces() {
        let r = RateLimits::new(Arc::new(MemoryLimitStore::new()), "t", 10.0, 0.0);
        // A full bucket (one second's worth) passes at once; the rest is paced at 10/s.
        assert_eq!(r.reserve("h", 10, 0).await.unwrap(), Duration::ZERO);
        let w = r.reserve("h", 5, 0).await.unwrap();
        assert!((w.as_secs_f64() - 0.5).abs() < 0.01, "{w:?}");
        let start = Instant::now();
        for _ in 0..20 {
            r.throttle("h", 1, 0).await.unwrap();
        }
        // 5 in debt + 20 more at 10/s: about 2.5 s.
        let took = start.elapsed().as_secs_f64();
        assert!((2.3..2.7).contains(&took), "{took}");
        assert!(RateLimits::new(Arc::new(MemoryLimitStore::new()), "t", 0.0, 0.0).is_unlimited());
    }

    fn rule() -> LimitBackoff {
        LimitBackoff {
            base: Duration::from_secs(2),
            max_pause: Duration::from_secs(60),
            max_wait: Duration::from_secs(300),
            max_refusals: 0,
        }
    }

    #[test]
    fn limit_pauses_double_up_to_the_cap() {
        let r = rule();
        let s = Duration::from_secs;
        assert_eq!(r.decide(0, Duration::ZERO), LimitDecision::Wait(s(2)));
        assert_eq!(r.decide(1, s(2)), LimitDecision::Wait(s(4)));
        assert_eq!(r.decide(2, s(6)), LimitDecision::Wait(s(8)));
        assert_eq!(r.decide(4, s(30)), LimitDecision::Wait(s(32)));
        assert_eq!(r.decide(5, s(62)), LimitDecision::Wait(s(60)), "capped");
        assert_eq!(
            r.decide(40, s(100)),
            LimitDecision::Wait(s(60)),
            "no overflow"
        );
    }

    #[test]
    fn limit_wait_ends_at_max_wait() {
        let r = rule();
        let s = Duration::from_secs;
        // The last pause is cut to end at the deadline...
        assert_eq!(r.decide(7, s(280)), LimitDecision::Wait(s(20)));
        // ...and the refusal after it gives up.
        assert_eq!(r.decide(8, s(300)), LimitDecision::GiveUp);
        assert_eq!(r.decide(8, s(4000)), LimitDecision::GiveUp);
        // A first refusal always waits, whatever the clock says (no earlier refusal to count from).
        assert_eq!(r.decide(0, Duration::ZERO), LimitDecision::Wait(s(2)));
        // Walk the whole schedule: bounded, total wait = max_wait.
        let (mut refusals, mut waited) = (0u32, Duration::ZERO);
        while let LimitDecision::Wait(p) = r.decide(refusals, waited) {
            refusals += 1;
            waited += p;
            assert!(refusals < 100, "unbounded");
        }
        assert_eq!(waited, s(300));
        assert_eq!(refusals, 9, "2+4+8+16+32+60+60+60+58");
    }

    #[test]
    fn limit_refusal_count_bounds_too() {
        let r = LimitBackoff {
            max_refusals: 3,
            max_wait: Duration::from_secs(3600),
            ..rule()
        };
        for n in 0..3 {
            assert!(matches!(
                r.decide(n, Duration::from_secs(u64::from(n))),
                LimitDecision::Wait(_)
            ));
        }
        assert_eq!(r.decide(3, Duration::from_secs(3)), LimitDecision::GiveUp);
        // max_wait 0: nothing to wait for, the first refusal gives up.
        let r = LimitBackoff {
            max_wait: Duration::ZERO,
            ..rule()
        };
        assert_eq!(r.decide(0, Duration::ZERO), LimitDecision::GiveUp);
        assert!(matches!(
            LimitBackoff::default().decide(0, Duration::ZERO),
            LimitDecision::Wait(_)
        ));
    }
}
