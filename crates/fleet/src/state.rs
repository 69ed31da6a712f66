//! Progress of jobs: per account and per folder, behind a trait with two backends (in-process and
//! Redis, one hash per job).
//!
//! Records:
//! - [`Job`]: the batch (id, name, created, accounts);
//! - [`AccountRecord`]: who (users and hosts, never passwords), whether the account task has run
//!   (the folder list it fanned out, the host2 folders it created) and its own errors (login...);
//! - [`FolderState`]: one folder pair across its slices: counts (actions add up, observations are
//!   the latest slice's), errors, done.
//!
//! The status of an account ([`AccountStatus`]) is derived from these when read. Writes that belong
//! to a run under a lease carry its fencing token: a record remembers the largest fence that wrote
//! it and refuses a smaller one ([`StateError::Stale`]), atomically (a Lua check-and-set in Redis).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use imapfleet_sync::report::{ErrorClass, FolderReport, SyncError};
use serde::{Deserialize, Serialize};

use crate::task::{FolderSpec, Job};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state backend: {0}")]
    Backend(String),
    /// A newer lease wrote this record: the writer lost its lease.
    #[error("stale fencing token {fence} for {record} (newest {newest})")]
    Stale {
        record: String,
        fence: u64,
        newest: u64,
    },
    #[error("state record {0}: {1}")]
    Corrupt(String, String),
}

/// Pending (not started), running, done (every folder synced, nothing missing, no error), failed;
/// skipped: a scheduled pass left the account out because its previous pass still ran
/// ([`crate::schedule`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Pending,
    Running,
    Done,
    Failed,
    Skipped,
}

impl AccountStatus {
    pub fn name(self) -> &'static str {
        match self {
            AccountStatus::Pending => "pending",
            AccountStatus::Running => "running",
            AccountStatus::Done => "done",
            AccountStatus::Failed => "failed",
            AccountStatus::Skipped => "skipped",
        }
    }

    /// Nothing more will happen to the account in this job (a skipped account is never enqueued).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AccountStatus::Done | AccountStatus::Failed | AccountStatus::Skipped
        )
    }
}

/// A counted error as stored (the class by its name: the engine's classes, plus the fleet's own
/// `internal`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub class: String,
    pub folder: Option<String>,
    pub uid: Option<u32>,
    pub message: String,
}

impl From<&SyncError> for ErrorRecord {
    fn from(e: &SyncError) -> Self {
        ErrorRecord {
            class: e.class.name().to_string(),
            folder: e.folder.clone(),
            uid: e.uid,
            message: e.message.clone(),
        }
    }
}

const CLASSES: [ErrorClass; 12] = [
    ErrorClass::Usage,
    ErrorClass::AuthHost1,
    ErrorClass::AuthHost2,
    ErrorClass::ConnectHost1,
    ErrorClass::ConnectHost2,
    ErrorClass::Select,
    ErrorClass::Create,
    ErrorClass::Fetch,
    ErrorClass::Append,
    ErrorClass::Flags,
    ErrorClass::Quota,
    ErrorClass::Incomplete,
];

/// The engine's class of a stored name (`None` for the fleet's own classes).
pub fn class_by_name(name: &str) -> Option<ErrorClass> {
    CLASSES.iter().copied().find(|c| c.name() == name)
}

/// Precedence of a stored class name (lower is more important; unknown names last but one).
fn precedence(name: &str) -> u8 {
    class_by_name(name).map_or(12, ErrorClass::precedence)
}

/// Counts of one folder (or, summed, of an account or a job), as in the engine's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub folders: u64,
    pub folders_synced: u64,
    pub host1_messages: u64,
    pub host2_messages: u64,
    pub transferred: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub skipped_filters: u64,
    pub flags_updated: u64,
    pub duplicates_host1: u64,
    pub vanished_host1: u64,
    pub flags_dropped: u64,
    pub missing_on_host2: u64,
    pub only_on_host2: u64,
    pub errors: u64,
    pub reconnects: u64,
    pub elapsed_secs: f64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.folders += o.folders;
        self.folders_synced += o.folders_synced;
        self.host1_messages += o.host1_messages;
        self.host2_messages += o.host2_messages;
        self.transferred += o.transferred;
        self.bytes += o.bytes;
        self.skipped += o.skipped;
        self.skipped_filters += o.skipped_filters;
        self.flags_updated += o.flags_updated;
        self.duplicates_host1 += o.duplicates_host1;
        self.vanished_host1 += o.vanished_host1;
        self.flags_dropped += o.flags_dropped;
        self.missing_on_host2 += o.missing_on_host2;
        self.only_on_host2 += o.only_on_host2;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
        self.elapsed_secs += o.elapsed_secs;
    }
}

/// One folder pair of an account across its slices.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FolderState {
    pub name1: String,
    pub name2: String,
    /// Slices recorded.
    pub slices: u32,
    /// No more slice will run (synced to the end, or given up with an error).
    pub done: bool,
    /// The last slice processed the folder (selected, planned, executed).
    pub synced: bool,
    /// The account task created the host2 folder.
    pub created: bool,
    pub counts: Counts,
    pub errors: Vec<ErrorRecord>,
}

impl FolderState {
    pub fn new(spec: &FolderSpec, created: bool) -> FolderState {
        FolderState {
            name1: spec.name1.clone(),
            name2: spec.name2.clone(),
            created,
            ..FolderState::default()
        }
    }

    /// Add one slice: what it did adds up (copies, bytes, flags, vanished, reconnects, time), what it
    /// saw replaces (host1 messages, missing...). `skipped` counts what was on host2 before the
    /// folder's first slice, so earlier slices' copies are taken out of the latest plan's matches.
    pub fn merge_slice(&mut self, r: &FolderReport, errors: &[SyncError]) {
        let c = &mut self.counts;
        let copied_before = c.transferred;
        c.folders = 1;
        c.folders_synced = u64::from(r.synced);
        c.host1_messages = r.host1_messages;
        if self.slices == 0 {
            c.host2_messages = r.host2_messages;
        }
        c.transferred += r.transferred;
        c.bytes += r.bytes;
        c.skipped = r.skipped.saturating_sub(copied_before);
        c.skipped_filters = r.skipped_filters;
        c.flags_updated += r.flags_updated;
        c.duplicates_host1 = r.duplicates_host1;
        c.vanished_host1 += r.vanished_host1;
        c.flags_dropped += r.flags_dropped;
        // A dry run's "missing" is what it would copy: not a shortfall that fails the account.
        c.missing_on_host2 = if r.dry_run { 0 } else { r.missing_on_host2 };
        c.only_on_host2 = r.only_on_host2;
        c.errors += errors.len() as u64;
        c.reconnects += u64::from(r.reconnects);
        c.elapsed_secs += r.elapsed_secs;
        self.synced = r.synced;
        self.errors.extend(errors.iter().map(ErrorRecord::from));
        self.slices += 1;
    }
}

impl FolderState {
    /// Add what an unfinished attempt did (it stopped early and will be retried): its actions only.
    pub fn merge_partial(&mut self, r: &FolderReport) {
        let c = &mut self.counts;
        c.transferred += r.transferred;
        c.bytes += r.bytes;
        c.flags_updated += r.flags_updated;
        c.flags_dropped += r.flags_dropped;
        c.vanished_host1 += r.vanished_host1;
        c.reconnects += u64::from(r.reconnects);
        c.elapsed_secs += r.elapsed_secs;
    }
}

/// An account of a job: who, and what its account task did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub account: String,
    /// Line of the batch file.
    pub line: usize,
    pub user1: String,
    pub host1: String,
    pub user2: String,
    pub host2: String,
    /// RFC 3339, when the account task first ran.
    pub started: Option<String>,
    /// The account task fanned out its folder tasks.
    pub prepared: bool,
    /// The folder pairs fanned out (for a redelivered account task to publish them again).
    pub folders: Vec<FolderSpec>,
    /// host2 folders created (raw names).
    pub created: Vec<String>,
    /// host2 folders whose CREATE was refused, with the server's words.
    pub create_failed: Vec<(String, String)>,
    /// Errors of the account itself (login, mapping), final.
    pub errors: Vec<ErrorRecord>,
    /// Attempts of the account task that failed and were retried.
    pub retries: u32,
    /// A scheduled pass left the account out (never enqueued in this job): why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// An account as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccountView {
    pub account: String,
    pub line: usize,
    pub user1: String,
    pub host1: String,
    pub user2: String,
    pub host2: String,
    pub status: AccountStatus,
    /// The most important error class (failed accounts).
    pub error_class: Option<String>,
    pub started: Option<String>,
    pub folders_total: usize,
    pub folders_done: usize,
    pub totals: Counts,
    pub folders: Vec<FolderState>,
    pub errors: Vec<ErrorRecord>,
    /// Why a scheduled pass left the account out (status `skipped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl AccountView {
    pub fn build(rec: &AccountRecord, folders: &BTreeMap<usize, FolderState>) -> AccountView {
        let states: Vec<FolderState> = (0..rec.folders.len())
            .map(|i| {
                folders
                    .get(&i)
                    .cloned()
                    .unwrap_or_else(|| FolderState::new(&rec.folders[i], false))
            })
            .collect();
        let mut totals = Counts::default();
        for f in &states {
            totals.add(&f.counts);
        }
        totals.folders = states.len() as u64;
        let mut errors = rec.errors.clone();
        errors.extend(states.iter().flat_map(|f| f.errors.iter().cloned()));
        totals.errors = errors.len() as u64;
        let done = states.iter().filter(|f| f.done).count();
        let worst = errors
            .iter()
            .map(|e| e.class.clone())
            .min_by_key(|c| precedence(c));
        let status = if rec.skipped.is_some() {
            AccountStatus::Skipped
        } else if !rec.errors.is_empty() {
            AccountStatus::Failed
        } else if !rec.prepared {
            if rec.started.is_some() {
                AccountStatus::Running
            } else {
                AccountStatus::Pending
            }
        } else if done < states.len() {
            AccountStatus::Running
        } else if worst.is_some() || totals.missing_on_host2 > 0 {
            AccountStatus::Failed
        } else {
            AccountStatus::Done
        };
        let error_class = match status {
            AccountStatus::Failed => {
                worst.or_else(|| Some(ErrorClass::Incomplete.name().to_string()))
            }
            _ => None,
        };
        AccountView {
            account: rec.account.clone(),
            line: rec.line,
            user1: rec.user1.clone(),
            host1: rec.host1.clone(),
            user2: rec.user2.clone(),
            host2: rec.host2.clone(),
            status,
            error_class,
            started: rec.started.clone(),
            folders_total: states.len(),
            folders_done: done,
            totals,
            folders: states,
            errors,
            skipped: rec.skipped.clone(),
        }
    }
}

/// Everything about a job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobView {
    pub job: Job,
    pub accounts: Vec<AccountView>,
    /// Accounts per status.
    pub by_status: BTreeMap<String, usize>,
    pub totals: Counts,
}

impl JobView {
    pub fn build(
        job: Job,
        records: Vec<AccountRecord>,
        folders: HashMap<String, BTreeMap<usize, FolderState>>,
    ) -> JobView {
        let empty = BTreeMap::new();
        let mut accounts: Vec<AccountView> = records
            .iter()
            .map(|r| AccountView::build(r, folders.get(&r.account).unwrap_or(&empty)))
            .collect();
        accounts.sort_by(|a, b| a.account.cmp(&b.account));
        let mut by_status = BTreeMap::new();
        for s in ["pending", "running", "done", "failed", "skipped"] {
            by_status.insert(s.to_string(), 0);
        }
        let mut totals = Counts::default();
        for a in &accounts {
            *by_status.entry(a.status.name().to_string()).or_insert(0) += 1;
            totals.add(&a.totals);
        }
        JobView {
            job,
            accounts,
            by_status,
            totals,
        }
    }

    /// Every account done or failed.
    pub fn finished(&self) -> bool {
        self.accounts.iter().all(|a| a.status.is_final())
    }
}

/// A fence that guards a write: the lease's fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence(pub u64);

/// Where jobs' progress lives.
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Create the job and its accounts (all pending). Creating an existing job again is an error.
    async fn create_job(&self, job: &Job, accounts: &[AccountRecord]) -> Result<(), StateError>;
    /// Jobs, oldest first.
    async fn jobs(&self) -> Result<Vec<Job>, StateError>;
    async fn job(&self, job: &str) -> Result<Option<Job>, StateError>;
    async fn account(&self, job: &str, account: &str) -> Result<Option<AccountRecord>, StateError>;
    /// Write an account record under `fence` (refused if a larger fence wrote it).
    async fn put_account(
        &self,
        job: &str,
        rec: &AccountRecord,
        fence: Fence,
    ) -> Result<(), StateError>;
    async fn folder(
        &self,
        job: &str,
        account: &str,
        index: usize,
    ) -> Result<Option<FolderState>, StateError>;
    /// Write a folder's state under `fence` (refused if a larger fence wrote it).
    async fn put_folder(
        &self,
        job: &str,
        account: &str,
        index: usize,
        st: &FolderState,
        fence: Fence,
    ) -> Result<(), StateError>;
    /// The whole job, with every account's status derived.
    async fn view(&self, job: &str) -> Result<Option<JobView>, StateError>;
}

fn account_field(account: &str) -> String {
    format!("acct:{account}")
}

fn folder_field(account: &str, index: usize) -> String {
    format!("folder:{account}:{index}")
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, s: &str) -> Result<T, StateError> {
    serde_json::from_str(s).map_err(|e| StateError::Corrupt(what.to_string(), e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Split a job hash's fields into records.
fn view_of(job: Job, fields: &HashMap<String, String>) -> Result<JobView, StateError> {
    let mut records = Vec::new();
    let mut folders: HashMap<String, BTreeMap<usize, FolderState>> = HashMap::new();
    for (k, v) in fields {
        if let Some(_a) = k.strip_prefix("acct:") {
            records.push(decode::<AccountRecord>(k, v)?);
        } else if let Some(rest) = k.strip_prefix("folder:") {
            let Some((a, i)) = rest.rsplit_once(':') else {
                continue;
            };
            let Ok(i) = i.parse::<usize>() else { continue };
            folders
                .entry(a.to_string())
                .or_default()
                .insert(i, decode(k, v)?);
        }
    }
    Ok(JobView::build(job, records, folders))
}

// ---------------------------------------------------------------------------------------------
// In-process

#[derive(Debug, Default)]
struct MemJob {
    job: Option<Job>,
    fields: HashMap<String, String>,
    fences: HashMap<String, u64>,
}

/// The in-process state store (`imapfleet run`, tests).
#[derive(Debug, Default)]
pub struct MemoryState {
    jobs: Mutex<Vec<(String, MemJob)>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, job: &str, f: impl FnOnce(&mut MemJob) -> R) -> Option<R> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.iter_mut().find(|(id, _)| id == job).map(|(_, j)| f(j))
    }

    fn put(&self, job: &str, field: String, value: String, fence: Fence) -> Result<(), StateError> {
        self.with(job, |j| {
            let newest = j.fences.get(&field).copied().unwrap_or(0);
            if fence.0 < newest {
                return Err(StateError::Stale {
                    record: field,
                    fence: fence.0,
                    newest,
                });
            }
            j.fences.insert(field.clone(), fence.0);
            j.fields.insert(field, value);
            Ok(())
        })
        .unwrap_or_else(|| Err(StateError::Backend(format!("no job {job}"))))
    }
}

#[async_trait]
impl StateStore for MemoryState {
    async fn create_job(&self, job: &Job, accounts: &[AccountRecord]) -> Result<(), StateError> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.iter().any(|(id, _)| *id == job.id) {
            return Err(StateError::Backend(format!("job {} exists", job.id)));
        }
        let mut j = MemJob {
            job: Some(job.clone()),
            ..MemJob::default()
        };
        for a in accounts {
            j.fields.insert(account_field(&a.account), encode(a));
        }
        jobs.push((job.id.clone(), j));
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<Job>, StateError> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        Ok(jobs.iter().filter_map(|(_, j)| j.job.clone()).collect())
    }

    async fn job(&self, job: &str) -> Result<Option<Job>, StateError> {
        Ok(self.with(job, |j| j.job.clone()).flatten())
    }

    async fn account(&self, job: &str, account: &str) -> Result<Option<AccountRecord>, StateError> {
        let field = account_field(account);
        match self.with(job, |j| j.fields.get(&field).cloned()).flatten() {
            Some(v) => Ok(Some(decode(&field, &v)?)),
            None => Ok(None),
        }
    }

    async fn put_account(
        &self,
        job: &str,
        rec: &AccountRecord,
        fence: Fence,
    ) -> Result<(), StateError> {
        self.put(job, account_field(&rec.account), encode(rec), fence)
    }

    async fn folder(
        &self,
        job: &str,
        account: &str,
        index: usize,
    ) -> Result<Option<FolderState>, StateError> {
        let field = folder_field(account, index);
        match self.with(job, |j| j.fields.get(&field).cloned()).flatten() {
            Some(v) => Ok(Some(decode(&field, &v)?)),
            None => Ok(None),
        }
    }

    async fn put_folder(
        &self,
        job: &str,
        account: &str,
        index: usize,
        st: &FolderState,
        fence: Fence,
    ) -> Result<(), StateError> {
        self.put(job, folder_field(account, index), encode(st), fence)
    }

    async fn view(&self, job: &str) -> Result<Option<JobView>, StateError> {
        let got = self.with(job, |j| (j.job.clone(), j.fields.clone()));
        match got {
            Some((Some(job), fields)) => Ok(Some(view_of(job, &fields)?)),
            _ => Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Redis

/// Check-and-set under a fence: KEYS[1] the job hash; ARGV field, value, fence, TTL in seconds
/// (0: none). The fence of a field lives beside it (`fence:<field>`); a smaller fence is refused
/// (returns the newest fence + 1 so that 0 stays "written"). A write refreshes the hash's TTL.
const FENCED_SET: &str = r"
local cur = tonumber(redis.call('HGET', KEYS[1], 'fence:' .. ARGV[1]) or '0')
local fence = tonumber(ARGV[3])
if fence < cur then return cur + 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'fence:' .. ARGV[1], ARGV[3])
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
return 0
";

/// How long a job's state is kept in Redis after its last write, by default: 30 days.
pub const DEFAULT_JOB_TTL: Duration = Duration::from_secs(30 * 86_400);

/// A job's index entry is written just before its hash: an entry without a hash younger than this
/// may be a job being created.
const INDEX_GRACE: Duration = Duration::from_secs(600);

/// True when a job created at `created` (RFC 3339) is older than `age` at `now` (unknown: false).
fn older_than(created: &str, age: Duration, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Ok(created) = chrono::DateTime::parse_from_rfc3339(created) else {
        return false;
    };
    let Ok(age) = chrono::Duration::from_std(age) else {
        return false;
    };
    created.with_timezone(&chrono::Utc) + age < now
}

/// Jobs and their progress in Redis: `imapfleet:jobs` (hash: id -> job JSON) and one hash per job
/// `imapfleet:job:<id>` with a field per account (`acct:<id>`) and per folder (`folder:<acct>:<n>`).
///
/// Job hashes expire `ttl` after their last write (default [`DEFAULT_JOB_TTL`]; every write
/// refreshes it). The index is a plain hash (Redis 7.0 has no per-field expiry): the entries of
/// jobs whose hash has expired are left out of [`jobs`] and dropped when a job is created.
///
/// [`jobs`]: StateStore::jobs
#[derive(Clone)]
pub struct RedisState {
    conn: redis::aio::ConnectionManager,
    prefix: String,
    script: std::sync::Arc<redis::Script>,
    ttl: Option<Duration>,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Longest wait for one job-state reply (see [`RedisState::connect`]).
pub const STATE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

fn backend(e: redis::RedisError) -> StateError {
    StateError::Backend(e.to_string())
}

impl RedisState {
    /// Connect to `url` (`redis://host:port/db`); keys start with `prefix` (default `imapfleet`).
    pub async fn connect(url: &str, prefix: Option<&str>) -> Result<RedisState, StateError> {
        let client = redis::Client::open(url).map_err(backend)?;
        // A job's hash holds every account and folder record: 14 MB for 1,000 accounts x 20
        // folders, which Redis takes over a second to send; the client's default 500 ms response
        // timeout would fail `status` on exactly the jobs it matters for.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(STATE_RESPONSE_TIMEOUT));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(backend)?;
        Ok(RedisState {
            conn,
            prefix: prefix.unwrap_or("imapfleet").to_string(),
            script: std::sync::Arc::new(redis::Script::new(FENCED_SET)),
            ttl: Some(DEFAULT_JOB_TTL),
        })
    }

    /// Keep each job's state `ttl` after its last write (`None`: for ever). Whole seconds, at
    /// least one.
    pub fn with_ttl(mut self, ttl: Option<Duration>) -> RedisState {
        self.ttl = ttl.map(|t| t.max(Duration::from_secs(1)));
        self
    }

    fn ttl_secs(&self) -> u64 {
        self.ttl.map_or(0, |t| t.as_secs().max(1))
    }

    /// Index entries (of `all`: id -> job JSON) whose job hash is gone (expired), past the grace
    /// of a job being created.
    async fn expired_entries(
        &self,
        all: &HashMap<String, String>,
    ) -> Result<Vec<String>, StateError> {
        let now = chrono::Utc::now();
        let candidates: Vec<&String> = all
            .iter()
            .filter(|(_, v)| {
                decode::<Job>("job", v).is_ok_and(|j| older_than(&j.created, INDEX_GRACE, now))
            })
            .map(|(k, _)| k)
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for k in &candidates {
            pipe.cmd("EXISTS").arg(self.job_key(k));
        }
        let mut c = self.conn.clone();
        let exists: Vec<bool> = pipe.query_async(&mut c).await.map_err(backend)?;
        Ok(candidates
            .into_iter()
            .zip(exists)
            .filter(|(_, e)| !e)
            .map(|(k, _)| k.clone())
            .collect())
    }

    /// The time left before `job`'s state expires: `None` when it has no TTL or does not exist.
    pub async fn time_to_live(&self, job: &str) -> Result<Option<Duration>, StateError> {
        let mut c = self.conn.clone();
        let secs: i64 = redis::cmd("TTL")
            .arg(self.job_key(job))
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok((secs >= 0).then(|| Duration::from_secs(secs as u64)))
    }

    fn jobs_key(&self) -> String {
        format!("{}:jobs", self.prefix)
    }

    fn job_key(&self, job: &str) -> String {
        format!("{}:job:{job}", self.prefix)
    }

    async fn hget(&self, key: &str, field: &str) -> Result<Option<String>, StateError> {
        let mut c = self.conn.clone();
        redis::cmd("HGET")
            .arg(key)
            .arg(field)
            .query_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn fenced_set(
        &self,
        job: &str,
        field: String,
        value: String,
        fence: Fence,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let r: u64 = self
            .script
            .key(self.job_key(job))
            .arg(&field)
            .arg(value)
            .arg(fence.0)
            .arg(self.ttl_secs())
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        if r == 0 {
            Ok(())
        } else {
            Err(StateError::Stale {
                record: field,
                fence: fence.0,
                newest: r - 1,
            })
        }
    }
}

#[async_trait]
impl StateStore for RedisState {
    async fn create_job(&self, job: &Job, accounts: &[AccountRecord]) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let fresh: bool = redis::cmd("HSETNX")
            .arg(self.jobs_key())
            .arg(&job.id)
            .arg(encode(job))
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        if !fresh {
            return Err(StateError::Backend(format!("job {} exists", job.id)));
        }
        for chunk in accounts.chunks(200) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg(self.job_key(&job.id));
            for a in chunk {
                cmd.arg(account_field(&a.account)).arg(encode(a));
            }
            let _: u64 = cmd.query_async(&mut c).await.map_err(backend)?;
        }
        if self.ttl.is_some() {
            if !accounts.is_empty() {
                let _: bool = redis::cmd("EXPIRE")
                    .arg(self.job_key(&job.id))
                    .arg(self.ttl_secs())
                    .query_async(&mut c)
                    .await
                    .map_err(backend)?;
            }
            // Drop the index entries of jobs whose state has expired.
            let all: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(self.jobs_key())
                .query_async(&mut c)
                .await
                .map_err(backend)?;
            let old = self.expired_entries(&all).await?;
            if !old.is_empty() {
                let _: u64 = redis::cmd("HDEL")
                    .arg(self.jobs_key())
                    .arg(&old)
                    .query_async(&mut c)
                    .await
                    .map_err(backend)?;
            }
        }
        Ok(())
    }

    async fn jobs(&self) -> Result<Vec<Job>, StateError> {
        let mut c = self.conn.clone();
        let all: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.jobs_key())
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        let expired = self.expired_entries(&all).await?;
        let mut jobs = Vec::new();
        for (k, v) in all {
            if expired.contains(&k) {
                continue;
            }
            jobs.push(decode::<Job>(&k, &v)?);
        }
        jobs.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(jobs)
    }

    async fn job(&self, job: &str) -> Result<Option<Job>, StateError> {
        match self.hget(&self.jobs_key(), job).await? {
            Some(v) => Ok(Some(decode(job, &v)?)),
            None => Ok(None),
        }
    }

    async fn account(&self, job: &str, account: &str) -> Result<Option<AccountRecord>, StateError> {
        let field = account_field(account);
        match self.hget(&self.job_key(job), &field).await? {
            Some(v) => Ok(Some(decode(&field, &v)?)),
            None => Ok(None),
        }
    }

    async fn put_account(
        &self,
        job: &str,
        rec: &AccountRecord,
        fence: Fence,
    ) -> Result<(), StateError> {
        self.fenced_set(job, account_field(&rec.account), encode(rec), fence)
            .await
    }

    async fn folder(
        &self,
        job: &str,
        account: &str,
        index: usize,
    ) -> Result<Option<FolderState>, StateError> {
        let field = folder_field(account, index);
        match self.hget(&self.job_key(job), &field).await? {
            Some(v) => Ok(Some(decode(&field, &v)?)),
            None => Ok(None),
        }
    }

    async fn put_folder(
        &self,
        job: &str,
        account: &str,
        index: usize,
        st: &FolderState,
        fence: Fence,
    ) -> Result<(), StateError> {
        self.fenced_set(job, folder_field(account, index), encode(st), fence)
            .await
    }

    async fn view(&self, job: &str) -> Result<Option<JobView>, StateError> {
        let Some(j) = self.job(job).await? else {
            return Ok(None);
        };
        let mut c = self.conn.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.job_key(job))
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(Some(view_of(j, &fields)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: "j1".into(),
            name: "test".into(),
            created: "2024-01-01T00:00:00+00:00".into(),
            accounts: 2,
        }
    }

    fn rec(a: &str) -> AccountRecord {
        AccountRecord {
            account: a.into(),
            user1: "u".into(),
            host1: "h1:143".into(),
            user2: "u".into(),
            host2: "h2:143".into(),
            ..AccountRecord::default()
        }
    }

    fn spec(n: &str) -> FolderSpec {
        FolderSpec {
            raw1: n.into(),
            name1: n.into(),
            raw2: n.into(),
            name2: n.into(),
            create: false,
            merged: false,
        }
    }

    pub(crate) async fn exercise(store: &dyn StateStore, job: Job) {
        let id = job.id.clone();
        store
            .create_job(&job, &[rec("a00001"), rec("a00002")])
            .await
            .unwrap();
        assert!(
            store.create_job(&job, &[]).await.is_err(),
            "a job is created once"
        );
        assert!(store.jobs().await.unwrap().iter().any(|j| j.id == id));
        let v = store.view(&id).await.unwrap().unwrap();
        assert_eq!(v.by_status["pending"], 2);

        let mut r = store.account(&id, "a00001").await.unwrap().unwrap();
        r.prepared = true;
        r.started = Some("now".into());
        r.folders = vec![spec("INBOX"), spec("Sent")];
        store.put_account(&id, &r, Fence(1)).await.unwrap();
        let v = store.view(&id).await.unwrap().unwrap();
        assert_eq!(v.accounts[0].status, AccountStatus::Running);
        assert_eq!(v.accounts[0].folders_total, 2);

        // Folder 0 in two slices; a stale writer is refused.
        let rep = FolderReport {
            synced: true,
            host1_messages: 10,
            transferred: 4,
            bytes: 400,
            missing_on_host2: 6,
            ..FolderReport::default()
        };
        let mut st = FolderState::new(&spec("INBOX"), true);
        st.merge_slice(&rep, &[]);
        store
            .put_folder(&id, "a00001", 0, &st, Fence(5))
            .await
            .unwrap();
        let rep2 = FolderReport {
            synced: true,
            host1_messages: 10,
            transferred: 6,
            bytes: 600,
            skipped: 4,
            ..FolderReport::default()
        };
        let mut st = store.folder(&id, "a00001", 0).await.unwrap().unwrap();
        st.merge_slice(&rep2, &[]);
        st.done = true;
        let err = store
            .put_folder(&id, "a00001", 0, &st, Fence(4))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Stale {
                    fence: 4,
                    newest: 5,
                    ..
                }
            ),
            "{err}"
        );
        store
            .put_folder(&id, "a00001", 0, &st, Fence(5))
            .await
            .unwrap();
        let got = store.folder(&id, "a00001", 0).await.unwrap().unwrap();
        assert_eq!(got.counts.transferred, 10);
        assert_eq!(got.counts.bytes, 1000);
        assert_eq!(
            got.counts.skipped, 0,
            "the slice's matches were earlier slices' copies"
        );
        assert_eq!(got.counts.missing_on_host2, 0);
        assert_eq!(got.slices, 2);

        let v = store.view(&id).await.unwrap().unwrap();
        assert_eq!(
            v.accounts[0].status,
            AccountStatus::Running,
            "Sent is not done"
        );
        let mut sent = FolderState::new(&spec("Sent"), false);
        sent.merge_slice(
            &FolderReport {
                synced: true,
                ..FolderReport::default()
            },
            &[],
        );
        sent.done = true;
        store
            .put_folder(&id, "a00001", 1, &sent, Fence(1))
            .await
            .unwrap();
        let v = store.view(&id).await.unwrap().unwrap();
        assert_eq!(
            v.accounts[0].status,
            AccountStatus::Done,
            "{:?}",
            v.accounts[0]
        );
        assert_eq!(v.accounts[0].totals.transferred, 10);

        // An account whose login failed.
        let mut r = store.account(&id, "a00002").await.unwrap().unwrap();
        r.errors.push(ErrorRecord::from(&SyncError::account(
            ErrorClass::AuthHost1,
            "no",
        )));
        store.put_account(&id, &r, Fence(1)).await.unwrap();
        let v = store.view(&id).await.unwrap().unwrap();
        assert_eq!(v.accounts[1].status, AccountStatus::Failed);
        assert_eq!(v.accounts[1].error_class.as_deref(), Some("auth_host1"));
        assert!(v.finished());
        assert_eq!(v.by_status["done"], 1);
        assert_eq!(v.by_status["failed"], 1);
        assert_eq!(v.totals.transferred, 10);
    }

    #[tokio::test]
    async fn memory_store() {
        exercise(&MemoryState::new(), job()).await;
    }

    #[tokio::test]
    async fn redis_store() {
        if std::env::var("IMAPFLEET_SERVICES").as_deref() != Ok("1") {
            eprintln!("SKIP: IMAPFLEET_SERVICES is not 1 (Redis)");
            return;
        }
        let url = std::env::var("IMAPFLEET_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        let store = RedisState::connect(&url, Some("imapfleet-test"))
            .await
            .expect("Redis");
        let mut j = job();
        j.id = crate::task::Job::new(None, 2).id;
        exercise(&store, j.clone()).await;
        // Job hashes expire: 30 days by default, refreshed by every write.
        let left = store.time_to_live(&j.id).await.unwrap().expect("a TTL");
        assert!(
            left > DEFAULT_JOB_TTL - Duration::from_secs(60) && left <= DEFAULT_JOB_TTL,
            "{left:?}"
        );
        let short = store.clone().with_ttl(Some(Duration::from_secs(100)));
        let mut j2 = job();
        j2.id = crate::task::Job::new(None, 1).id;
        short.create_job(&j2, &[rec("a00001")]).await.unwrap();
        let left = short.time_to_live(&j2.id).await.unwrap().expect("a TTL");
        assert!(
            left <= Duration::from_secs(100) && left > Duration::from_secs(90),
            "{left:?}"
        );
        // A fenced write refreshes it to the store's TTL.
        let r = short.account(&j2.id, "a00001").await.unwrap().unwrap();
        store.put_account(&j2.id, &r, Fence(1)).await.unwrap();
        let left = store.time_to_live(&j2.id).await.unwrap().expect("a TTL");
        assert!(
            left > Duration::from_secs(100),
            "refreshed on write: {left:?}"
        );
        // Without a TTL, none is set.
        let forever = store.clone().with_ttl(None);
        let mut j3 = job();
        j3.id = crate::task::Job::new(None, 1).id;
        forever.create_job(&j3, &[rec("a00001")]).await.unwrap();
        assert_eq!(forever.time_to_live(&j3.id).await.unwrap(), None);
        // A job whose hash expired is not listed, and its index entry goes at the next creation.
        let mut old = job();
        old.id = crate::task::Job::new(None, 1).id;
        old.created = "2020-01-01T00:00:00+00:00".into();
        forever.create_job(&old, &[rec("a00001")]).await.unwrap();
        assert!(store.jobs().await.unwrap().iter().any(|x| x.id == old.id));
        let mut c = store.conn.clone();
        let _: u64 = redis::cmd("DEL")
            .arg(store.job_key(&old.id))
            .arg(store.job_key(&j3.id))
            .query_async(&mut c)
            .await
            .unwrap();
        assert!(!store.jobs().await.unwrap().iter().any(|x| x.id == old.id));
        let mut j4 = job();
        j4.id = crate::task::Job::new(None, 1).id;
        store.create_job(&j4, &[rec("a00001")]).await.unwrap();
        let index: Option<String> = redis::cmd("HGET")
            .arg(store.jobs_key())
            .arg(&old.id)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(index, None, "pruned from the index");
    }

    #[test]
    fn ages_by_creation_time() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-31T00:00:01+00:00")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let ttl = Duration::from_secs(30 * 86_400);
        assert!(older_than("2026-03-01T00:00:00+00:00", ttl, now));
        assert!(!older_than("2026-03-01T00:00:02+00:00", ttl, now));
        assert!(!older_than("not a date", ttl, now), "unknown: kept");
    }

    #[test]
    fn a_skipped_account_is_final_and_not_failed() {
        let mut r = rec("a");
        r.skipped = Some("previous pass still running (n-pass1 j1: running)".into());
        let v = AccountView::build(&r, &BTreeMap::new());
        assert_eq!(v.status, AccountStatus::Skipped);
        assert!(v.status.is_final());
        assert_eq!(v.error_class, None);
        let jv = JobView::build(job(), vec![r, rec("b")], HashMap::new());
        assert_eq!(jv.by_status["skipped"], 1);
        assert_eq!(jv.by_status["pending"], 1);
        assert!(!jv.finished());
        let json = serde_json::to_value(&jv).unwrap();
        assert_eq!(json["accounts"][0]["status"], "skipped");
        assert!(json["accounts"][0]["skipped"]
            .as_str()
            .unwrap()
            .contains("still running"));
        assert!(json["accounts"][1].get("skipped").is_none());
    }

    #[test]
    fn missing_messages_without_errors_fail_as_incomplete() {
        let mut r = rec("a");
        r.prepared = true;
        r.folders = vec![spec("INBOX")];
        let mut st = FolderState::new(&spec("INBOX"), false);
        st.merge_slice(
            &FolderReport {
                synced: true,
                missing_on_host2: 1,
                ..FolderReport::default()
            },
            &[],
        );
        st.done = true;
        let v = AccountView::build(&r, &[(0, st)].into_iter().collect());
        assert_eq!(v.status, AccountStatus::Failed);
        assert_eq!(v.error_class.as_deref(), Some("incomplete"));
    }

    #[test]
    fn a_dry_run_is_done_with_what_it_would_copy_counted() {
        let mut r = rec("a");
        r.prepared = true;
        r.folders = vec![spec("INBOX")];
        let mut st = FolderState::new(&spec("INBOX"), false);
        st.merge_slice(
            &FolderReport {
                synced: true,
                dry_run: true,
                transferred: 5,
                missing_on_host2: 5,
                ..FolderReport::default()
            },
            &[],
        );
        st.done = true;
        let v = AccountView::build(&r, &[(0, st)].into_iter().collect());
        assert_eq!(v.status, AccountStatus::Done, "{v:?}");
        assert_eq!(v.error_class, None);
        assert_eq!(v.totals.transferred, 5, "what it would copy");
    }
}
