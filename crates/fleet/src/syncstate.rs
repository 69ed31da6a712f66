//! The fleet's backend of the engine's saved sync state ([`imapfleet_sync::state`]) in Redis, so
//! that any worker can run the delta pass of any account.
//!
//! Keys per account (the `{…}` hash tag keeps both on one Redis Cluster slot):
//! - `<prefix>:sync:{<account id>}:pairs`, a hash: `r:<pair>` the folder record, `i:<pair>` the
//!   pending APPEND intents, `f:<pair>` the newest fencing token that wrote the pair;
//! - `<prefix>:sync:{<account id>}:cache`, a hash: `<pair>` the message cache (binary, about 60
//!   bytes a message), read only for folders that changed.
//!
//! Writes are Lua check-and-set scripts: refused (`Stale`) when the fence is smaller than the
//! newest, atomic with the fence update. Losing all of it (FLUSHALL, a new Redis) only costs full
//! reads: the engine falls back to header identity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use imapfleet_sync::state::{check_fence, StateError, StoredFolder, SyncStateStore};

/// KEYS[1] pairs hash; ARGV pair, fence, has intents (0/1), intents.
const PUT_INTENTS: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], 'f:' .. ARGV[1]) or '0')
if tonumber(ARGV[2]) < cur then return cur + 1 end
redis.call('HSET', KEYS[1], 'f:' .. ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'i:' .. ARGV[1], ARGV[4])
else
  redis.call('HDEL', KEYS[1], 'i:' .. ARGV[1])
end
return 0
";

/// KEYS[1] pairs hash, KEYS[2] cache hash; ARGV pair, fence, record, has cache (0/1), cache.
const SAVE: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], 'f:' .. ARGV[1]) or '0')
if tonumber(ARGV[2]) < cur then return cur + 1 end
redis.call('HSET', KEYS[1], 'f:' .. ARGV[1], ARGV[2], 'r:' .. ARGV[1], ARGV[3])
redis.call('HDEL', KEYS[1], 'i:' .. ARGV[1])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return 0
";

/// Saved sync state in Redis.
#[derive(Clone)]
pub struct RedisSyncState {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    put_intents: std::sync::Arc<redis::Script>,
    save: std::sync::Arc<redis::Script>,
}

impl std::fmt::Debug for RedisSyncState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSyncState")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn backend(e: redis::RedisError) -> StateError {
    StateError::Backend(e.to_string())
}

impl RedisSyncState {
    /// Connect to `url` (`redis://host:port/db`); keys start with `prefix` (default `imapfleet`).
    pub async fn connect(url: &str, prefix: Option<&str>) -> Result<RedisSyncState, StateError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let conn = client.get_connection_manager().await.map_err(backend)?;
        Ok(Self::with_connection(conn, prefix))
    }

    /// Over an existing connection manager (shared with the fleet's other Redis users).
    pub fn with_connection(
        conn: redis::aio::ConnectionManager,
        prefix: Option<&str>,
    ) -> RedisSyncState {
        RedisSyncState {
            conn,
            prefix: prefix.unwrap_or("imapfleet").to_string(),
            put_intents: std::sync::Arc::new(redis::Script::new(PUT_INTENTS)),
            save: std::sync::Arc::new(redis::Script::new(SAVE)),
        }
    }

    fn pairs_key(&self, account: &str) -> String {
        format!("{}:sync:{{{account}}}:pairs", self.prefix)
    }

    fn cache_key(&self, account: &str) -> String {
        format!("{}:sync:{{{account}}}:cache", self.prefix)
    }

    fn stale(pair: &str, fence: u64, r: u64) -> Result<(), StateError> {
        if r == 0 {
            Ok(())
        } else {
            Err(StateError::Stale {
                record: pair.to_string(),
                fence,
                newest: r - 1,
            })
        }
    }
}

#[async_trait]
impl SyncStateStore for RedisSyncState {
    async fn load(&self, account: &str) -> Result<HashMap<String, StoredFolder>, StateError> {
        let mut c = self.conn.clone();
        let all: HashMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.pairs_key(account))
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        let mut out: HashMap<String, StoredFolder> = HashMap::new();
        for (field, value) in all {
            let Some((kind, pair)) = field.split_once(':') else {
                continue;
            };
            let e = out.entry(pair.to_string()).or_default();
            match kind {
                "r" => e.record = Some(value),
                "i" => e.intents = Some(value),
                "f" => {
                    e.fence = String::from_utf8_lossy(&value).parse().map_err(|_| {
                        StateError::Backend(format!("fence of {pair:?} is not a number"))
                    })?
                }
                _ => {}
            }
        }
        Ok(out)
    }

    async fn load_cache(&self, account: &str, pair: &str) -> Result<Option<Vec<u8>>, StateError> {
        let mut c = self.conn.clone();
        redis::cmd("HGET")
            .arg(self.cache_key(account))
            .arg(pair)
            .query_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn put_intents(
        &self,
        account: &str,
        pair: &str,
        intents: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let r: u64 = self
            .put_intents
            .key(self.pairs_key(account))
            .arg(pair)
            .arg(fence)
            .arg(if intents.is_some() { "1" } else { "0" })
            .arg(intents.unwrap_or(b""))
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        Self::stale(pair, fence, r)
    }

    async fn save(
        &self,
        account: &str,
        pair: &str,
        record: &[u8],
        cache: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let r: u64 = self
            .save
            .key(self.pairs_key(account))
            .key(self.cache_key(account))
            .arg(pair)
            .arg(fence)
            .arg(record)
            .arg(if cache.is_some() { "1" } else { "0" })
            .arg(cache.unwrap_or(b""))
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        Self::stale(pair, fence, r)
    }

    async fn wipe(&self, account: &str) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let _: u64 = redis::cmd("DEL")
            .arg(self.pairs_key(account))
            .arg(self.cache_key(account))
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// A store fenced in this process only, for `imapfleet run` (embedded): its lease locks live in
/// the process, so their fencing tokens start again at 1 at every run, and a durable store (the
/// state directory's files) would refuse them after the first run. This wrapper keeps the newest
/// token per pair in memory and refuses a smaller one ([`StateError::Stale`]) itself, and writes
/// the inner store with token 0, as `imapfleet sync` does, so that `sync` and `run` can share one
/// state directory. Across processes the file backend's own lock keeps one process per account
/// (a second one gets [`StateError::Busy`]).
pub struct ProcessFenced {
    inner: Arc<dyn SyncStateStore>,
    /// Newest token per (account, pair); the mutex is held across the check and the write.
    newest: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u64>>>>,
}

impl std::fmt::Debug for ProcessFenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessFenced").finish_non_exhaustive()
    }
}

impl ProcessFenced {
    pub fn new(inner: Arc<dyn SyncStateStore>) -> ProcessFenced {
        ProcessFenced {
            inner,
            newest: Mutex::new(HashMap::new()),
        }
    }

    fn key(account: &str, pair: &str) -> String {
        format!("{account}\0{pair}")
    }

    fn slot(&self, account: &str, pair: &str) -> Arc<tokio::sync::Mutex<u64>> {
        let mut m = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(Self::key(account, pair)).or_default().clone()
    }

    /// The newest token this process wrote `pair` with (0: none).
    async fn newest(&self, account: &str, pair: &str) -> u64 {
        let slot = {
            let m = self.newest.lock().unwrap_or_else(|e| e.into_inner());
            m.get(&Self::key(account, pair)).cloned()
        };
        match slot {
            Some(s) => *s.lock().await,
            None => 0,
        }
    }
}

#[async_trait]
impl SyncStateStore for ProcessFenced {
    /// The inner store's pairs, each with the newest token of this process.
    async fn load(&self, account: &str) -> Result<HashMap<String, StoredFolder>, StateError> {
        let mut all = self.inner.load(account).await?;
        for (pair, f) in all.iter_mut() {
            f.fence = f.fence.max(self.newest(account, pair).await);
        }
        Ok(all)
    }

    async fn load_pair(&self, account: &str, pair: &str) -> Result<StoredFolder, StateError> {
        let mut f = self.inner.load_pair(account, pair).await?;
        f.fence = f.fence.max(self.newest(account, pair).await);
        Ok(f)
    }

    async fn load_cache(&self, account: &str, pair: &str) -> Result<Option<Vec<u8>>, StateError> {
        self.inner.load_cache(account, pair).await
    }

    async fn put_intents(
        &self,
        account: &str,
        pair: &str,
        intents: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let slot = self.slot(account, pair);
        let mut newest = slot.lock().await;
        check_fence(pair, *newest, fence)?;
        self.inner.put_intents(account, pair, intents, 0).await?;
        *newest = fence;
        Ok(())
    }

    async fn save(
        &self,
        account: &str,
        pair: &str,
        record: &[u8],
        cache: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let slot = self.slot(account, pair);
        let mut newest = slot.lock().await;
        check_fence(pair, *newest, fence)?;
        self.inner.save(account, pair, record, cache, 0).await?;
        *newest = fence;
        Ok(())
    }

    /// Forgets the account, its tokens included (a wiped account starts over at token 0).
    async fn wipe(&self, account: &str) -> Result<(), StateError> {
        self.inner.wipe(account).await?;
        let prefix = Self::key(account, "");
        self.newest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens restart at 1 in every process: the wrapper fences within the process, and a store
    /// written by an earlier process (any token) never refuses a later one.
    #[tokio::test]
    async fn process_fenced_refuses_a_stale_token_in_the_process_only() {
        let inner: Arc<dyn SyncStateStore> = Arc::new(imapfleet_sync::state::MemoryState::new());
        // An earlier process wrote up to token 7 (the inner store sees 0).
        let earlier = ProcessFenced::new(inner.clone());
        earlier.save("a", "p", b"r1", None, 7).await.unwrap();
        assert_eq!(inner.load_pair("a", "p").await.unwrap().fence, 0);
        assert_eq!(earlier.load_pair("a", "p").await.unwrap().fence, 7);
        // This process starts again at 1.
        let now = ProcessFenced::new(inner.clone());
        now.put_intents("a", "p", Some(b"i"), 1).await.unwrap();
        now.save("a", "p", b"r2", None, 2).await.unwrap();
        assert_eq!(
            inner.load_pair("a", "p").await.unwrap().record.as_deref(),
            Some(&b"r2"[..])
        );
        // A worker whose lease was taken over (token 1 < 2) writes nothing.
        let e = now.save("a", "p", b"old", None, 1).await.unwrap_err();
        assert!(
            matches!(
                e,
                StateError::Stale {
                    fence: 1,
                    newest: 2,
                    ..
                }
            ),
            "{e}"
        );
        let e = now.put_intents("a", "p", Some(b"x"), 1).await.unwrap_err();
        assert!(matches!(e, StateError::Stale { .. }), "{e}");
        assert_eq!(
            inner.load_pair("a", "p").await.unwrap().record.as_deref(),
            Some(&b"r2"[..])
        );
        assert_eq!(inner.load_pair("a", "p").await.unwrap().intents, None);
        // Other pairs have their own tokens; the contract of a store holds through the wrapper.
        now.save("a", "q", b"r", None, 1).await.unwrap();
        imapfleet_sync::state::exercise_store(&ProcessFenced::new(inner), "other").await;
    }

    #[tokio::test]
    async fn redis_sync_state_keeps_the_contract() {
        if std::env::var("IMAPFLEET_SERVICES").as_deref() != Ok("1") {
            eprintln!("SKIP: IMAPFLEET_SERVICES is not 1 (Redis)");
            return;
        }
        let url = std::env::var("IMAPFLEET_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        let store = RedisSyncState::connect(&url, Some("imapfleet-test"))
            .await
            .expect("Redis");
        let account = format!("syncstate-test-{}", std::process::id());
        imapfleet_sync::state::exercise_store(&store, &account).await;
        // Binary caches come back byte for byte.
        let blob: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        store
            .save(&account, "p", b"{}", Some(&blob), 0)
            .await
            .unwrap();
        assert_eq!(store.load_cache(&account, "p").await.unwrap(), Some(blob));
        store.wipe(&account).await.unwrap();
    }
}
