//! The embedded backend: one redb database per account pair under a state directory
//! (`--statedir`, `$IMAPFLEET_STATE_DIR`, default `$XDG_STATE_HOME/imapfleet`, else
//! `~/.local/state/imapfleet`, else `./.imapfleet-state`).
//!
//! - A file `<account id>.redb` per account pair, created on first use (mode 0600, directory 0700:
//!   it holds folder names and message metadata, no credentials).
//! - redb holds an exclusive lock on an open file: a second process syncing the same account at the
//!   same time gets [`StateError::Busy`] (two concurrent runs of one account would both APPEND).
//! - Every commit is durable when it returns (fsync, about 1 ms here): an intent written before an
//!   APPEND survives a `kill -9` and a power cut.
//! - A file that cannot be opened as a database (corrupt, another format) is moved aside as
//!   `<name>.redb.broken-<unix time>` and started afresh: the state is only an accelerator.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use redb::{Database, DatabaseError, Durability, ReadableTable, TableDefinition};

use super::{check_fence, StateError, StoredFolder, SyncStateStore};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
const INTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("intents");
const CACHES: TableDefinition<&str, &[u8]> = TableDefinition::new("caches");
const FENCES: TableDefinition<&str, u64> = TableDefinition::new("fences");

/// State files in a directory, one redb database per account.
pub struct FileState {
    dir: PathBuf,
    dbs: Mutex<HashMap<String, Arc<Database>>>,
}

impl std::fmt::Debug for FileState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileState").field("dir", &self.dir).finish()
    }
}

fn backend(e: impl std::fmt::Display) -> StateError {
    StateError::Backend(e.to_string())
}

impl FileState {
    /// Use (and create, 0700) `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Result<FileState, StateError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| backend(format!("creating {}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(FileState {
            dir,
            dbs: Mutex::new(HashMap::new()),
        })
    }

    /// The default directory: `$XDG_STATE_HOME/imapfleet`, else `~/.local/state/imapfleet`, else
    /// `./.imapfleet-state`.
    pub fn default_dir() -> PathBuf {
        if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return PathBuf::from(x).join("imapfleet");
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/state/imapfleet"),
            None => PathBuf::from(".imapfleet-state"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of an account.
    pub fn path(&self, account: &str) -> PathBuf {
        let safe: String = account
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.redb"))
    }

    fn db(&self, account: &str) -> Result<Arc<Database>, StateError> {
        let mut dbs = self.dbs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = dbs.get(account) {
            return Ok(db.clone());
        }
        let path = self.path(account);
        let db = match Database::create(&path) {
            Ok(db) => db,
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StateError::Busy(format!(
                    "{} is open in another process (another run of this account?)",
                    path.display()
                )))
            }
            Err(e) => {
                let aside =
                    path.with_extension(format!("redb.broken-{}", chrono::Utc::now().timestamp()));
                tracing::warn!(file = %path.display(), error = %e, "sync state unreadable; moved aside, starting afresh");
                std::fs::rename(&path, &aside).map_err(|e2| {
                    backend(format!("{}: {e}; moving it aside: {e2}", path.display()))
                })?;
                Database::create(&path).map_err(|e| backend(format!("{}: {e}", path.display())))?
            }
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        // Create the tables once, so that read transactions find them.
        let tx = db.begin_write().map_err(backend)?;
        tx.open_table(RECORDS).map_err(backend)?;
        tx.open_table(INTENTS).map_err(backend)?;
        tx.open_table(CACHES).map_err(backend)?;
        tx.open_table(FENCES).map_err(backend)?;
        tx.commit().map_err(backend)?;
        let db = Arc::new(db);
        dbs.insert(account.to_string(), db.clone());
        Ok(db)
    }

    /// Run `f` on the account's database off the async threads (redb is blocking: file I/O, fsync).
    async fn with_db<T: Send + 'static>(
        &self,
        account: &str,
        f: impl FnOnce(&Database) -> Result<T, StateError> + Send + 'static,
    ) -> Result<T, StateError> {
        let db = self.db(account)?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }
}

/// A write transaction that checks and advances the pair's fence, then runs `f`.
fn fenced_write(
    db: &Database,
    pair: &str,
    fence: u64,
    f: impl FnOnce(&redb::WriteTransaction) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let mut tx = db.begin_write().map_err(backend)?;
    tx.set_durability(Durability::Immediate);
    {
        let mut fences = tx.open_table(FENCES).map_err(backend)?;
        let newest = fences
            .get(pair)
            .map_err(backend)?
            .map(|v| v.value())
            .unwrap_or(0);
        let next = check_fence(pair, newest, fence)?;
        fences.insert(pair, next).map_err(backend)?;
    }
    f(&tx)?;
    tx.commit().map_err(backend)
}

#[async_trait]
impl SyncStateStore for FileState {
    async fn load(&self, account: &str) -> Result<HashMap<String, StoredFolder>, StateError> {
        self.with_db(account, |db| {
            let tx = db.begin_read().map_err(backend)?;
            let mut out: HashMap<String, StoredFolder> = HashMap::new();
            let records = tx.open_table(RECORDS).map_err(backend)?;
            for row in records.iter().map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                out.entry(k.value().to_string()).or_default().record = Some(v.value().to_vec());
            }
            let intents = tx.open_table(INTENTS).map_err(backend)?;
            for row in intents.iter().map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                out.entry(k.value().to_string()).or_default().intents = Some(v.value().to_vec());
            }
            let fences = tx.open_table(FENCES).map_err(backend)?;
            for row in fences.iter().map_err(backend)? {
                let (k, v) = row.map_err(backend)?;
                out.entry(k.value().to_string()).or_default().fence = v.value();
            }
            Ok(out)
        })
        .await
    }

    async fn load_cache(&self, account: &str, pair: &str) -> Result<Option<Vec<u8>>, StateError> {
        let pair = pair.to_string();
        self.with_db(account, move |db| {
            let tx = db.begin_read().map_err(backend)?;
            let caches = tx.open_table(CACHES).map_err(backend)?;
            let v = caches.get(pair.as_str()).map_err(backend)?;
            Ok(v.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn put_intents(
        &self,
        account: &str,
        pair: &str,
        intents: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let pair = pair.to_string();
        let intents = intents.map(<[u8]>::to_vec);
        self.with_db(account, move |db| {
            fenced_write(db, &pair, fence, |tx| {
                let mut t = tx.open_table(INTENTS).map_err(backend)?;
                match &intents {
                    Some(v) => {
                        t.insert(pair.as_str(), v.as_slice()).map_err(backend)?;
                    }
                    None => {
                        t.remove(pair.as_str()).map_err(backend)?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn save(
        &self,
        account: &str,
        pair: &str,
        record: &[u8],
        cache: Option<&[u8]>,
        fence: u64,
    ) -> Result<(), StateError> {
        let pair = pair.to_string();
        let record = record.to_vec();
        let cache = cache.map(<[u8]>::to_vec);
        self.with_db(account, move |db| {
            fenced_write(db, &pair, fence, |tx| {
                let p = pair.as_str();
                tx.open_table(RECORDS)
                    .map_err(backend)?
                    .insert(p, record.as_slice())
                    .map_err(backend)?;
                tx.open_table(INTENTS)
                    .map_err(backend)?
                    .remove(p)
                    .map_err(backend)?;
                let mut caches = tx.open_table(CACHES).map_err(backend)?;
                match &cache {
                    Some(c) => {
                        caches.insert(p, c.as_slice()).map_err(backend)?;
                    }
                    None => {
                        caches.remove(p).map_err(backend)?;
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn wipe(&self, account: &str) -> Result<(), StateError> {
        self.with_db(account, |db| {
            let mut tx = db.begin_write().map_err(backend)?;
            tx.set_durability(Durability::Immediate);
            for t in [RECORDS, INTENTS, CACHES] {
                tx.open_table(t)
                    .map_err(backend)?
                    .retain(|_, _| false)
                    .map_err(backend)?;
            }
            tx.open_table(FENCES)
                .map_err(backend)?
                .retain(|_, _| false)
                .map_err(backend)?;
            tx.commit().map_err(backend)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_keeps_the_contract_and_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!("imapfleet-state-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let s = FileState::new(&dir).unwrap();
            super::super::exercise_store(&s, "acct-a").await;
            s.save("acct-b", "p", b"kept", Some(b"cache"), 4)
                .await
                .unwrap();
        }
        // A new process (here: a new FileState once the old one is dropped) finds the data.
        let s = FileState::new(&dir).unwrap();
        let got = s.load_pair("acct-b", "p").await.unwrap();
        assert_eq!(got.record.as_deref(), Some(&b"kept"[..]));
        assert_eq!(got.fence, 4);
        // While this one holds the file, a second holder is refused.
        let other = FileState::new(&dir).unwrap();
        let err = other.load("acct-b").await.unwrap_err();
        assert!(matches!(err, StateError::Busy(_)), "{err}");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unreadable_file_is_moved_aside() {
        let dir = std::env::temp_dir().join(format!("imapfleet-state-bad-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = FileState::new(&dir).unwrap();
        std::fs::write(s.path("acct"), b"this is not a database").unwrap();
        assert!(s.load("acct").await.unwrap().is_empty());
        s.save("acct", "p", b"r", None, 0).await.unwrap();
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.contains(".broken-")), "{names:?}");
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
