//! What travels on the queue: versioned, serde, and free of clear passwords.
//!
//! A [`Job`] is one batch. Each account of it becomes an [`AccountTask`]: log in to both sides, map
//! the folders, create the host2 folders, and fan out one [`FolderTask`] per folder pair. A folder
//! task copies one bounded slice ([`SliceBudget`]) and, when copies are left, publishes its own
//! continuation (`slice + 1`) before acknowledging: no delivery is held longer than one slice. The
//! engine re-plans every slice from fresh metadata, so the continuation needs no checkpoint beyond
//! its slice number: what earlier slices appended is matched on host2 and not copied again.
//!
//! Passwords are sealed by a [`Sealer`] (the operator's key, or a reference into the process) and
//! opened only by the worker that logs in.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security};
use imapfleet_sync::engine::SyncOptions;
use imapfleet_sync::identity::IdentityConfig;
use imapfleet_sync::mapping::{FolderPair, MappingOptions};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::{AccountOptions, BatchAccount, SideSpec};

/// Version of the task format; a worker refuses a task of another version.
pub const TASK_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("task format: {0}")]
    Format(String),
    #[error("task version {found}, this worker reads version {TASK_VERSION}")]
    Version { found: u32 },
    #[error("credentials: {0}")]
    Seal(String),
}

/// Seals passwords for the queue and opens them in the worker. Neither side may log its input.
pub trait Sealer: Send + Sync {
    fn seal(&self, plain: &Secret) -> Result<String, TaskError>;
    fn open(&self, sealed: &str) -> Result<Secret, TaskError>;
}

/// Keeps the passwords in this process and seals each as a reference (`ref:N`) to it: for the
/// embedded `run`, where the queue never leaves the process. Nothing secret is in a task.
#[derive(Debug, Default)]
pub struct ProcessSealer {
    secrets: std::sync::Mutex<Vec<Secret>>,
}

impl Sealer for ProcessSealer {
    fn seal(&self, plain: &Secret) -> Result<String, TaskError> {
        let mut s = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        s.push(plain.clone());
        Ok(format!("ref:{}", s.len() - 1))
    }

    fn open(&self, sealed: &str) -> Result<Secret, TaskError> {
        let i: usize = sealed
            .strip_prefix("ref:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| TaskError::Seal("not a reference of this process".into()))?;
        let s = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        s.get(i)
            .cloned()
            .ok_or_else(|| TaskError::Seal("unknown reference".into()))
    }
}

/// One batch run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Accounts enqueued.
    pub accounts: usize,
}

impl Job {
    /// A new job with a fresh id (`<UTC time>-<random>`); `name` defaults to the id.
    pub fn new(name: Option<&str>, accounts: usize) -> Job {
        let now = Utc::now();
        let mut rnd = [0u8; 4];
        // Without randomness the clock alone still makes a usable id.
        let _ = getrandom::fill(&mut rnd);
        let id = format!("{}-{}", now.format("%Y%m%dT%H%M%S"), hex::encode(rnd));
        Job {
            name: name.map_or_else(|| id.clone(), str::to_string),
            id,
            created: now.to_rfc3339(),
            accounts,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecuritySpec {
    Tls,
    StartTls,
    Plain,
}

/// How to reach one side, with the password sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSpec {
    pub host: String,
    pub port: u16,
    pub security: SecuritySpec,
    pub user: String,
    pub authuser: Option<String>,
    /// `LOGIN`, `PLAIN`, or `None` (PLAIN when offered, else LOGIN).
    pub authmech: Option<String>,
    pub sealed_password: String,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub timeout_secs: u64,
}

impl EndpointSpec {
    pub fn from_side(
        side: &SideSpec,
        timeout_secs: u64,
        sealer: &dyn Sealer,
    ) -> Result<Self, TaskError> {
        Ok(EndpointSpec {
            host: side.host.clone(),
            port: side.effective_port(),
            security: match side.security.unwrap_or(Security::StartTls) {
                Security::Tls => SecuritySpec::Tls,
                Security::StartTls => SecuritySpec::StartTls,
                Security::Plain => SecuritySpec::Plain,
            },
            user: side.user.clone(),
            authuser: side.authuser.clone(),
            authmech: side.authmech.clone(),
            sealed_password: sealer.seal(&side.password)?,
            ca_file: side.cafile.clone(),
            insecure: side.insecure,
            timeout_secs,
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The engine's endpoint, password opened.
    pub fn endpoint(&self, label: &str, sealer: &dyn Sealer) -> Result<Endpoint, TaskError> {
        let auth = match self.authmech.as_deref() {
            Some("LOGIN") => AuthMethod::Login,
            Some("PLAIN") => AuthMethod::Plain,
            None if self.authuser.is_some() => AuthMethod::Plain,
            None => AuthMethod::Auto,
            Some(m) => return Err(TaskError::Format(format!("authmech {m:?}"))),
        };
        Ok(Endpoint {
            label: label.to_string(),
            host: self.host.clone(),
            port: self.port,
            security: match self.security {
                SecuritySpec::Tls => Security::Tls,
                SecuritySpec::StartTls => Security::StartTls,
                SecuritySpec::Plain => Security::Plain,
            },
            user: self.user.clone(),
            authuser: self.authuser.clone(),
            password: sealer.open(&self.sealed_password)?,
            auth,
            ca_file: self.ca_file.clone(),
            insecure: self.insecure,
            timeout: Duration::from_secs(self.timeout_secs.max(1)),
        })
    }
}

/// The engine options of one account, as sent (ages already turned into instants at dispatch, so
/// every slice of the account agrees).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncSpec {
    pub folders: Vec<String>,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub f1f2: Vec<(String, String)>,
    pub regextrans2: Vec<String>,
    pub subfolder2: Option<String>,
    pub automap: bool,
    pub useheader: Vec<String>,
    pub max_size: Option<u32>,
    /// RFC 3339.
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    pub copy_deleted: bool,
    pub resync_flags: bool,
    pub dry_run: bool,
    pub just_folders: bool,
    pub just_login: bool,
    pub sep1: Option<char>,
    pub sep2: Option<char>,
    pub prefix1: Option<String>,
    pub prefix2: Option<String>,
}

fn days_before(now: DateTime<Utc>, days: f64) -> String {
    let secs = (days * 86_400.0).round() as i64;
    (now - chrono::Duration::seconds(secs))
        .fixed_offset()
        .to_rfc3339()
}

impl SyncSpec {
    pub fn from_account(a: &BatchAccount, now: DateTime<Utc>) -> SyncSpec {
        let o: &AccountOptions = &a.options;
        SyncSpec {
            folders: o.folders.clone(),
            include: o.include.clone(),
            exclude: o.exclude.clone(),
            f1f2: o.f1f2.clone(),
            regextrans2: o.regextrans2.clone(),
            subfolder2: o.subfolder2.clone(),
            automap: o.automap,
            useheader: o.useheader.clone(),
            max_size: o.maxsize,
            not_before: o.maxage.map(|d| days_before(now, d)),
            not_after: o.minage.map(|d| days_before(now, d)),
            copy_deleted: o.copydeleted,
            resync_flags: !o.noresyncflags,
            dry_run: o.dry,
            just_folders: o.justfolders,
            just_login: o.justlogin,
            sep1: a.side1.sep,
            sep2: a.side2.sep,
            prefix1: a.side1.prefix.clone(),
            prefix2: a.side2.prefix.clone(),
        }
    }

    /// The engine's options.
    pub fn options(&self) -> Result<SyncOptions, TaskError> {
        let instant = |s: &Option<String>| -> Result<Option<DateTime<FixedOffset>>, TaskError> {
            s.as_deref()
                .map(|t| {
                    DateTime::parse_from_rfc3339(t)
                        .map_err(|e| TaskError::Format(format!("date {t:?}: {e}")))
                })
                .transpose()
        };
        let mut o = SyncOptions {
            mapping: MappingOptions {
                folders: self.folders.clone(),
                include: self.include.clone(),
                exclude: self.exclude.clone(),
                f1f2: self.f1f2.clone(),
                regextrans2: self.regextrans2.clone(),
                subfolder2: self.subfolder2.clone(),
                automap: self.automap,
            },
            sep1: self.sep1,
            sep2: self.sep2,
            prefix1: self.prefix1.clone(),
            prefix2: self.prefix2.clone(),
            dry_run: self.dry_run,
            just_folders: self.just_folders,
            just_login: self.just_login,
            ..SyncOptions::default()
        };
        if !self.useheader.is_empty() {
            o.identity = IdentityConfig {
                headers: self.useheader.clone(),
            };
        }
        o.plan.max_size = self.max_size;
        o.plan.not_before = instant(&self.not_before)?;
        o.plan.not_after = instant(&self.not_after)?;
        o.plan.copy_deleted = self.copy_deleted;
        o.plan.resync_flags = self.resync_flags;
        Ok(o)
    }
}

/// One account of a job, as every task of it carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountRef {
    pub job: String,
    /// Unique in the job: `a` and the account's position, 1-based (`a00001`).
    pub account: String,
    /// Line of the batch file.
    pub line: usize,
    pub ep1: EndpointSpec,
    pub ep2: EndpointSpec,
    pub sync: SyncSpec,
}

impl AccountRef {
    pub fn id_for(index: usize) -> String {
        format!("a{:05}", index + 1)
    }

    /// Build from a checked batch line; the passwords are sealed here.
    pub fn from_batch(
        job: &str,
        index: usize,
        a: &BatchAccount,
        default_timeout: u64,
        sealer: &dyn Sealer,
        now: DateTime<Utc>,
    ) -> Result<AccountRef, TaskError> {
        let timeout = a.options.timeout.unwrap_or(default_timeout);
        Ok(AccountRef {
            job: job.to_string(),
            account: Self::id_for(index),
            line: a.line,
            ep1: EndpointSpec::from_side(&a.side1, timeout, sealer)?,
            ep2: EndpointSpec::from_side(&a.side2, timeout, sealer)?,
            sync: SyncSpec::from_account(a, now),
        })
    }

    /// Both endpoints, passwords opened.
    pub fn endpoints(&self, sealer: &dyn Sealer) -> Result<(Endpoint, Endpoint), TaskError> {
        Ok((
            self.ep1.endpoint("host1", sealer)?,
            self.ep2.endpoint("host2", sealer)?,
        ))
    }
}

/// One folder pair, as the mapping gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSpec {
    pub raw1: String,
    pub name1: String,
    pub raw2: String,
    pub name2: String,
    /// host2 did not have it at mapping time (the account task created it, or in a dry run would).
    pub create: bool,
    /// Another host1 folder maps to the same host2 folder: no `--delete2` here
    /// ([`FolderPair::merged`]). Absent in tasks of older versions: false.
    #[serde(default)]
    pub merged: bool,
}

impl FolderSpec {
    pub fn from_pair(p: &FolderPair) -> FolderSpec {
        FolderSpec {
            raw1: p.raw1.clone(),
            name1: p.name1.clone(),
            raw2: p.raw2.clone(),
            name2: p.name2.clone(),
            create: p.create,
            merged: p.merged,
        }
    }

    pub fn pair(&self) -> FolderPair {
        FolderPair {
            raw1: self.raw1.clone(),
            name1: self.name1.clone(),
            name2: self.name2.clone(),
            raw2: self.raw2.clone(),
            create: self.create,
            special_use: None,
            merged: self.merged,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountTask {
    pub account: AccountRef,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderTask {
    pub account: AccountRef,
    /// Position of the folder in the account's folder list (its key in the state).
    pub index: usize,
    pub folder: FolderSpec,
    /// 0 for the first slice; a continuation carries the next number.
    pub slice: u32,
    /// The account task created the host2 folder.
    pub created: bool,
    /// host2 refused to CREATE the folder (the server's words).
    pub create_failed: Option<String>,
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

impl FolderTask {
    /// The lease keys a run of this folder takes: (account pair, host2 folder) and the host2 folder
    /// alone (several host1 folders, or accounts, may write into one). Users and folder names are
    /// hashed: keys are short and carry no personal data.
    pub fn lock_keys(&self) -> (String, String) {
        let (e1, e2) = (&self.account.ep1, &self.account.ep2);
        let p1 = e1.port.to_string();
        let p2 = e2.port.to_string();
        let pair = digest(&[
            &e1.host.to_ascii_lowercase(),
            &p1,
            &e1.user,
            &e2.host.to_ascii_lowercase(),
            &p2,
            &e2.user,
            &self.folder.raw2,
        ]);
        let folder2 = digest(&[
            &e2.host.to_ascii_lowercase(),
            &p2,
            &e2.user,
            &self.folder.raw2,
        ]);
        (format!("pair:{pair}"), format!("folder2:{folder2}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    Account(AccountTask),
    Folder(FolderTask),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    task: Task,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

impl Task {
    pub fn account(&self) -> &AccountRef {
        match self {
            Task::Account(t) => &t.account,
            Task::Folder(t) => &t.account,
        }
    }

    /// JSON with the version.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&Envelope {
            version: TASK_VERSION,
            task: self.clone(),
        })
        .unwrap_or_default()
    }

    pub fn decode(body: &[u8]) -> Result<Task, TaskError> {
        let v: VersionOnly =
            serde_json::from_slice(body).map_err(|e| TaskError::Format(e.to_string()))?;
        if v.version != TASK_VERSION {
            return Err(TaskError::Version { found: v.version });
        }
        let env: Envelope =
            serde_json::from_slice(body).map_err(|e| TaskError::Format(e.to_string()))?;
        Ok(env.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{parse_batch, BatchFormat};

    /// A test double: "sealed" is the reversed text with a prefix (never the clear text).
    struct Reverse;
    impl Sealer for Reverse {
        fn seal(&self, plain: &Secret) -> Result<String, TaskError> {
            Ok(format!(
                "rev:{}",
                plain.expose().chars().rev().collect::<String>()
            ))
        }
        fn open(&self, sealed: &str) -> Result<Secret, TaskError> {
            let s = sealed
                .strip_prefix("rev:")
                .ok_or_else(|| TaskError::Seal("bad".into()))?;
            Ok(Secret::new(s.chars().rev().collect::<String>()))
        }
    }

    fn account() -> AccountRef {
        let b = parse_batch(
            "h1;alice;Pa55-w0rd;h2;alice2;Other-pw;--ssl1 --exclude ^Junk --maxage 10 --cafile2 /ca.pem;",
            BatchFormat::Imapsync,
            "",
        );
        assert!(b.is_clean());
        AccountRef::from_batch("job1", 0, &b.accounts[0], 120, &Reverse, Utc::now()).unwrap()
    }

    #[test]
    fn tasks_round_trip_with_version_and_no_clear_password() {
        let a = account();
        assert_eq!(a.account, "a00001");
        let t = Task::Folder(FolderTask {
            account: a.clone(),
            index: 3,
            folder: FolderSpec {
                raw1: "Sent".into(),
                name1: "Sent".into(),
                raw2: "Sent".into(),
                name2: "Sent".into(),
                create: true,
                merged: false,
            },
            slice: 2,
            created: true,
            create_failed: None,
        });
        let body = t.encode();
        let text = String::from_utf8(body.clone()).unwrap();
        assert!(text.contains("\"version\":1"), "{text}");
        assert!(
            !text.contains("Pa55-w0rd") && !text.contains("Other-pw"),
            "{text}"
        );
        assert_eq!(Task::decode(&body).unwrap(), t);
        let (ep1, ep2) = a.endpoints(&Reverse).unwrap();
        assert_eq!(ep1.password.expose(), "Pa55-w0rd");
        assert_eq!((ep1.security, ep1.port), (Security::Tls, 993));
        assert_eq!(
            ep2.ca_file.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        let opts = a.sync.options().unwrap();
        assert_eq!(opts.mapping.exclude, vec!["^Junk"]);
        assert!(opts.plan.not_before.is_some());
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let t = Task::Account(AccountTask { account: account() });
        let mut v: serde_json::Value = serde_json::from_slice(&t.encode()).unwrap();
        v["version"] = 2.into();
        let body = serde_json::to_vec(&v).unwrap();
        assert!(matches!(
            Task::decode(&body),
            Err(TaskError::Version { found: 2 })
        ));
        assert!(matches!(Task::decode(b"{nope"), Err(TaskError::Format(_))));
    }

    #[test]
    fn lock_keys_separate_pairs_and_share_host2_folders() {
        let a = account();
        let mk = |user1: &str, raw2: &str| {
            let mut acc = a.clone();
            acc.ep1.user = user1.into();
            FolderTask {
                account: acc,
                index: 0,
                folder: FolderSpec {
                    raw1: "X".into(),
                    name1: "X".into(),
                    raw2: raw2.into(),
                    name2: raw2.into(),
                    create: false,
                    merged: false,
                },
                slice: 0,
                created: false,
                create_failed: None,
            }
            .lock_keys()
        };
        let (p1, f1) = mk("alice", "INBOX");
        let (p2, f2) = mk("bob", "INBOX");
        let (p3, f3) = mk("alice", "Sent");
        assert_ne!(p1, p2);
        assert_eq!(
            f1, f2,
            "two host1 accounts into one host2 folder share its lock"
        );
        assert_ne!(p1, p3);
        assert_ne!(f1, f3);
        assert!(!p1.contains("alice") && !f1.contains("INBOX"));
    }

    #[test]
    fn process_sealer_keeps_secrets_in_the_process() {
        let s = ProcessSealer::default();
        let r = s.seal(&Secret::new("hunter2")).unwrap();
        assert!(!r.contains("hunter2"));
        assert_eq!(s.open(&r).unwrap().expose(), "hunter2");
        assert!(s.open("ref:99").is_err());
        assert!(s.open("hunter2").is_err());
    }
}
