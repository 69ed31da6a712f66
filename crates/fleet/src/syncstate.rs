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

use async_trait::async_trait;
use imapfleet_sync::state::{StateError, StoredFolder, SyncStateStore};

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

#[cfg(test)]
mod tests {
    use super::*;

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
