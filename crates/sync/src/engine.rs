//! The executor: runs the plan for every folder pair of one account.
//!
//! Shape of a run ([`sync_account`]):
//! 1. connect host1 and host2 (errors are classified and end the account),
//! 2. NAMESPACE + LIST on both sides, [`map_folders`],
//! 3. CREATE the missing host2 folders, parents first,
//! 4. a small pool of workers, each owning one host1 and one host2 session, takes folders from a
//!    queue; per folder it reads both sides' metadata, plans ([`plan_folder`]) and executes
//!    ([`folder`]): bodies fetched from host1 in bounded batches, APPENDed to host2 while the next
//!    batch is being fetched, flags replaced in groups.
//!
//! Safety properties the code relies on:
//! - host1 is only ever EXAMINEd and read with `BODY.PEEK`: never modified.
//! - After a lost connection the folder is *re-planned* from fresh metadata, never resumed from
//!   memory: whatever reached host2 before the drop is matched and not appended again.
//! - Memory is bounded: a batch holds at most `batch_messages` / `batch_bytes` (one oversized message
//!   alone), and a shared byte budget ([`SyncOptions::in_flight_bytes`]) caps the bodies held by all
//!   workers together.

mod allmail;
mod api;
mod batch;
mod deletions;
mod delta;
mod finish;
mod folder;
mod folders2;
mod intents;
mod pass;
mod refine;
mod refused;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imapfleet_imap::{Endpoint, ImapError, Session};
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use crate::identity::IdentityConfig;
use crate::mapping::{map_folders, FolderMap, FolderPair, MappingOptions, SideFacts};
use crate::plan::PlanOptions;
use crate::report::{AccountReport, ErrorClass, FolderReport, SyncError};

pub use api::{prepare_account, sync_folder_slice, Prepared, SliceBudget, SliceOutcome};
pub use batch::{batches, flag_fallbacks, group_by_flags, uid_set};
pub use folders2::FolderDeletion;

/// Everything that shapes one account sync. `Default` gives imapsync's defaults.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    pub identity: IdentityConfig,
    pub mapping: MappingOptions,
    pub plan: PlanOptions,
    /// `--sep1` / `--sep2`: override the hierarchy separator of a side.
    pub sep1: Option<char>,
    pub sep2: Option<char>,
    /// `--prefix1` / `--prefix2`: override the personal namespace prefix of a side.
    pub prefix1: Option<String>,
    pub prefix2: Option<String>,
    /// Plan and count, write nothing to host2.
    pub dry_run: bool,
    /// Stop after creating folders.
    pub just_folders: bool,
    /// Stop after logging in to both sides.
    pub just_login: bool,
    /// Sessions per side = folders synced in parallel (default 4).
    pub connections: usize,
    /// Most messages per FETCH / APPEND batch.
    pub batch_messages: usize,
    /// Most bytes per batch (a larger single message gets a batch of its own).
    pub batch_bytes: usize,
    /// Bytes of message bodies held in memory by all workers together (fetched, not yet appended).
    /// A batch larger than this budget waits until it can take the whole budget.
    pub in_flight_bytes: usize,
    /// Reconnections allowed per folder after a lost connection (or a server asking to slow down).
    pub max_reconnects: u32,
    /// Further login attempts when a server turns a connection away for now (a busy greeting such
    /// as `421 Server is busy`, `* BYE`, a refused or dropped connection, `NO [LIMIT]`, a throttling
    /// `NO`): after the first failure wait `connect_retry_base`, then twice as long each time (at
    /// most `max_backoff`). Credentials refused are never retried. Default 3 (`--connect-retries`).
    pub connect_retries: u32,
    /// First wait of the connect retries, and the pause after a throttling refusal that names no
    /// time of its own (default 1 s).
    pub connect_retry_base: std::time::Duration,
    /// Longest wait honoured when a server names its own backoff ("Suggested Backoff Time: N
    /// milliseconds"), and the cap of the doubling waits (default 15 min, `--max-backoff`).
    pub max_backoff: std::time::Duration,
    /// Copy at most this budget per folder and leave the rest for a later call (the fleet's slices).
    pub slice: Option<SliceBudget>,
    /// Saved sync state (`None`: every folder is read in full, nothing is saved). See
    /// [`crate::state`].
    pub state: Option<crate::state::StateHandle>,
    /// With saved state: when a pass finds the APPEND intents of an interrupted batch (a killed
    /// run, a lost connection) and not all of them on host2, how long after the intents were
    /// written it waits before trusting that the rest never will land (a server may still be
    /// storing a batch it had fully received when its client died). Default 2 s. See
    /// `engine::intents`.
    pub intent_grace: std::time::Duration,
    /// `--force-delete`: carry out `--delete2` even when its safety guard refuses
    /// ([`crate::plan::delete2_guard`]: host1 folder empty, too large a share of host2's folder).
    pub force_delete: bool,
    /// `--delete2-max-percent`: the share of a host2 folder one pass may delete (default 50).
    pub delete2_max_percent: u32,
    /// `--delete2-trash`: `--delete2` moves the messages to host2's Trash instead of expunging them.
    pub delete2_trash: bool,
    /// `--delete2-chunk`: most UIDs per deletion command (default 250).
    pub delete2_chunk: usize,
    /// `--copy-all-folder`: copy host1's `\All` folder (Gmail's All Mail) in full. By default it
    /// is synced after the other folders and contributes only the messages none of them holds.
    pub copy_all_folder: bool,
    /// `--delete1`: move semantics: host1 messages confirmed on host2 are flagged `\Deleted` and
    /// expunged (UID EXPUNGE). Never together with `--delete2`.
    pub delete1: bool,
    /// `--expunge1`: expunge each host1 folder (what its user flagged `\Deleted`) before reading it.
    pub expunge1: bool,
    /// `--delete2folders`: delete host2 folders no host1 folder maps to (after the sync).
    pub delete2_folders: Option<FolderDeletion>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            identity: IdentityConfig::default(),
            mapping: MappingOptions::default(),
            plan: PlanOptions::default(),
            sep1: None,
            sep2: None,
            prefix1: None,
            prefix2: None,
            dry_run: false,
            just_folders: false,
            just_login: false,
            connections: 4,
            batch_messages: 100,
            batch_bytes: 2 << 20,
            in_flight_bytes: 12 << 20,
            max_reconnects: 3,
            connect_retries: 3,
            connect_retry_base: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(15 * 60),
            slice: None,
            state: None,
            intent_grace: std::time::Duration::from_secs(2),
            force_delete: false,
            delete2_max_percent: crate::plan::DEFAULT_DELETE2_MAX_PERCENT,
            delete2_trash: false,
            delete2_chunk: deletions::DEFAULT_DELETE2_CHUNK,
            copy_all_folder: false,
            delete1: false,
            expunge1: false,
            delete2_folders: None,
        }
    }
}

/// Progress events of a sync (called from the worker tasks; keep them cheap).
/// Every method has an empty default, so an implementation picks what it needs.
pub trait Progress: Send + Sync {
    /// The folder pairs are known (after mapping).
    fn totals_known(&self, _folders: usize) {}
    /// A folder pair starts.
    fn folder_started(&self, _name1: &str, _name2: &str) {}
    /// A folder is planned: `to_copy` messages of `bytes` bytes will be appended.
    fn folder_planned(&self, _name1: &str, _to_copy: usize, _bytes: u64) {}
    /// One message reached host2 (in a dry run: would have).
    fn message_copied(&self, _name1: &str, _uid1: u32, _bytes: u64) {}
    /// A folder pair is done (successfully or not).
    fn folder_finished(&self, _report: &FolderReport) {}
}

/// Progress that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Host1,
    Host2,
}

impl Side {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Side::Host1 => "host1",
            Side::Host2 => "host2",
        }
    }
}

/// One logged-in session on each side.
pub(crate) struct Pair {
    pub(crate) s1: Session,
    pub(crate) s2: Session,
}

impl Pair {
    pub(crate) async fn logout(self) {
        tokio::join!(self.s1.logout(), self.s2.logout());
    }
}

/// Turn a connect/login failure into the account-level error class of its side.
pub(crate) fn connect_error(side: Side, err: &ImapError) -> SyncError {
    let class = match (side, err) {
        (Side::Host1, ImapError::Auth { .. }) => ErrorClass::AuthHost1,
        (Side::Host2, ImapError::Auth { .. }) => ErrorClass::AuthHost2,
        (Side::Host1, _) => ErrorClass::ConnectHost1,
        (Side::Host2, _) => ErrorClass::ConnectHost2,
    };
    SyncError::account(class, format!("{}: {err}", side.label()))
}

/// Connect and log in to host1. When host1 offers `UTF8=ACCEPT` (RFC 6855) it is enabled: such a
/// server may hide messages with raw UTF-8 headers from clients that did not enable it, and for a
/// reader that copies bytes as they are, UTF-8 costs nothing (host2 is never switched to UTF-8).
async fn connect_host1(ep1: &Endpoint) -> Result<Session, ImapError> {
    let mut s = Session::connect(ep1).await?;
    if s.capabilities().has("UTF8=ACCEPT") {
        match s.enable(&["UTF8=ACCEPT"]).await {
            Ok(on) => debug!(enabled = ?on, "host1: ENABLE UTF8=ACCEPT"),
            Err(e) if e.is_connection() => return Err(e),
            Err(e) => {
                warn!(error = %e, "host1 refused ENABLE UTF8=ACCEPT; messages it hides from non-UTF-8 clients will be missing")
            }
        }
    }
    Ok(s)
}

/// Both sides' raw connect errors (host1's first).
type ConnectErrors = Vec<(Side, ImapError)>;

async fn connect_pair_once(ep1: &Endpoint, ep2: &Endpoint) -> Result<Pair, ConnectErrors> {
    let (r1, r2) = tokio::join!(connect_host1(ep1), Session::connect(ep2));
    match (r1, r2) {
        (Ok(s1), Ok(s2)) => Ok(Pair { s1, s2 }),
        (Err(e1), Err(e2)) => Err(vec![(Side::Host1, e1), (Side::Host2, e2)]),
        (Err(e1), Ok(s2)) => {
            s2.logout().await;
            Err(vec![(Side::Host1, e1)])
        }
        (Ok(s1), Err(e2)) => {
            s1.logout().await;
            Err(vec![(Side::Host2, e2)])
        }
    }
}

fn connect_errors(errs: &ConnectErrors) -> Vec<SyncError> {
    errs.iter()
        .map(|(side, e)| connect_error(*side, e))
        .collect()
}

/// Connect and log in to both sides at once. On failure the other session is logged out and the
/// errors of both sides are returned (host1's first). One attempt: see [`connect_pair_patient`].
pub(crate) async fn connect_pair(ep1: &Endpoint, ep2: &Endpoint) -> Result<Pair, Vec<SyncError>> {
    connect_pair_once(ep1, ep2)
        .await
        .map_err(|e| connect_errors(&e))
}

/// A refusal after which logging in again later may work: the connection failed or was turned
/// away (busy greeting, BYE, timeout), or the login got a NO that is not about the credentials
/// (`Session::connect` reports those as `ImapError::No`: `[LIMIT]`, `[UNAVAILABLE]`, throttling).
fn transient_connect_error(e: &ImapError) -> bool {
    e.is_connection() || matches!(e, ImapError::No { .. })
}

/// The wait before connect retry number `attempt` (0-based): the server's own backoff hint when
/// it gave one, else `connect_retry_base` doubled per attempt; never more than `max_backoff`.
pub(crate) fn retry_wait(opts: &SyncOptions, attempt: u32, hint: Option<Duration>) -> Duration {
    let doubled = opts
        .connect_retry_base
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
    hint.unwrap_or(doubled).min(opts.max_backoff)
}

/// [`connect_pair`] that waits and tries again (`opts.connect_retries` times) while the failures
/// are transient ([`transient_connect_error`]) on every side that failed.
pub(crate) async fn connect_pair_patient(
    ep1: &Endpoint,
    ep2: &Endpoint,
    opts: &SyncOptions,
) -> Result<Pair, Vec<SyncError>> {
    let mut attempt = 0;
    loop {
        let errs = match connect_pair_once(ep1, ep2).await {
            Ok(p) => return Ok(p),
            Err(errs) => errs,
        };
        let transient = errs.iter().all(|(_, e)| transient_connect_error(e));
        if !transient || attempt >= opts.connect_retries {
            return Err(connect_errors(&errs));
        }
        let hint = errs.iter().filter_map(|(_, e)| e.backoff_hint()).max();
        let wait = retry_wait(opts, attempt, hint);
        for (side, e) in &errs {
            warn!(side = side.label(), error = %e, attempt = attempt + 1, "connection turned away; trying again in {wait:?}");
        }
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

/// NAMESPACE + LIST on both sides and the folder mapping. Returns host2's facts too (separator),
/// and, with saved state, every folder's STATUS when the servers offer LIST-STATUS.
pub(crate) async fn map_account(
    pair: &mut Pair,
    opts: &SyncOptions,
) -> Result<(FolderMap, SideFacts, delta::Statuses), SyncError> {
    let side_err = |side: Side| {
        move |e: ImapError| {
            let class = if side == Side::Host1 {
                ErrorClass::ConnectHost1
            } else {
                ErrorClass::ConnectHost2
            };
            SyncError::account(class, format!("{}: listing folders: {e}", side.label()))
        }
    };
    let mut statuses = delta::Statuses::default();
    let ns1 = pair.s1.namespaces().await.map_err(side_err(Side::Host1))?;
    let list1 = if opts.state.is_some() {
        let (l, s) = pair
            .s1
            .list_with_status()
            .await
            .map_err(side_err(Side::Host1))?;
        statuses.one = s;
        l
    } else {
        pair.s1.list().await.map_err(side_err(Side::Host1))?
    };
    let ns2 = pair.s2.namespaces().await.map_err(side_err(Side::Host2))?;
    let list2 = if opts.state.is_some() {
        let (l, s) = pair
            .s2
            .list_with_status()
            .await
            .map_err(side_err(Side::Host2))?;
        statuses.two = s;
        l
    } else {
        pair.s2.list().await.map_err(side_err(Side::Host2))?
    };
    let h1 = SideFacts::from_server(&ns1, list1, opts.sep1, opts.prefix1.clone());
    let h2 = SideFacts::from_server(&ns2, list2, opts.sep2, opts.prefix2.clone());
    let map = map_folders(&h1, &h2, &opts.mapping)
        .map_err(|e| SyncError::account(ErrorClass::Usage, e.to_string()))?;
    for (name2, sources) in map.merged_targets() {
        warn!(
            to = %name2,
            from = ?sources,
            "several host1 folders map into one host2 folder: their messages are merged there{}",
            if opts.plan.delete2 || opts.plan.delete2_duplicates {
                "; --delete2 leaves that folder alone"
            } else {
                ""
            }
        );
    }
    if opts.delete2_folders.is_some() {
        statuses.host1 = Some(h1);
    }
    Ok((map, h2, statuses))
}

/// "Already exists" answers to CREATE are success for us (another run, or a race, created it).
fn is_already_exists(err: &ImapError) -> bool {
    match err {
        ImapError::No { code, text, .. } => {
            code.as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("ALREADYEXISTS"))
                || text.to_ascii_lowercase().contains("exist")
        }
        _ => false,
    }
}

/// Outcome of the CREATE phase.
#[derive(Debug, Default)]
struct Creates {
    /// raw host2 names created (or, in a dry run, to be created).
    created: Vec<String>,
    /// raw host2 name -> the server's refusal.
    failed: HashMap<String, String>,
}

/// CREATE `map.creates` in order on host2. A refused CREATE is remembered (the pairs needing that
/// folder get a Create error); the others go on. A lost connection is retried with a new session.
async fn create_folders(
    pair: &mut Option<Pair>,
    ep1: &Endpoint,
    ep2: &Endpoint,
    map: &FolderMap,
    opts: &SyncOptions,
) -> Creates {
    let mut out = Creates::default();
    if opts.dry_run {
        out.created = map.creates.clone();
        return out;
    }
    let mut reconnects = 0;
    for raw in &map.creates {
        loop {
            let Some(p) = pair.as_mut() else {
                out.failed
                    .insert(raw.clone(), "no connection to host2".into());
                break;
            };
            match p.s2.create(raw).await {
                Ok(()) => {
                    info!(folder = %raw, "created on host2");
                    out.created.push(raw.clone());
                }
                Err(e) if is_already_exists(&e) => {}
                Err(e) if e.is_connection() && reconnects < opts.max_reconnects => {
                    reconnects += 1;
                    warn!(folder = %raw, error = %e, "connection lost during CREATE, reconnecting");
                    *pair = connect_pair(ep1, ep2).await.ok();
                    continue;
                }
                Err(e) => {
                    warn!(folder = %raw, error = %e, "CREATE refused");
                    out.failed.insert(raw.clone(), e.to_string());
                }
            }
            break;
        }
    }
    out
}

/// One folder pair waiting for a worker.
pub(crate) struct Job {
    pub(crate) index: usize,
    pub(crate) pair: FolderPair,
}

/// What the workers share.
pub(crate) struct Ctx<'a> {
    pub(crate) ep1: &'a Endpoint,
    pub(crate) ep2: &'a Endpoint,
    pub(crate) opts: &'a SyncOptions,
    pub(crate) progress: &'a dyn Progress,
    queue: Mutex<VecDeque<Job>>,
    /// host2 raw names whose CREATE was refused, with the server's words.
    create_failed: HashMap<String, String>,
    /// host2 raw names created by this run.
    created: Vec<String>,
    /// Shared byte budget (in KiB permits) for bodies held in memory.
    pub(crate) budget: Semaphore,
    pub(crate) budget_kib: u32,
    /// The account's saved sync state, when the run has one.
    pub(crate) state: Option<delta::AccountState>,
    /// host1's `\All` folder, when the account has one and it is deduplicated.
    pub(crate) allmail: Option<allmail::AllFolder>,
    /// New sessions log in one at a time (see [`worker`]).
    pub(crate) logins: tokio::sync::Mutex<()>,
    /// An extra worker could not log in: no further one tries in this run.
    pub(crate) pool_full: std::sync::atomic::AtomicBool,
}

impl Ctx<'_> {
    fn next_job(&self) -> Option<Job> {
        self.queue.lock().ok()?.pop_front()
    }

    fn has_jobs(&self) -> bool {
        self.queue.lock().is_ok_and(|q| !q.is_empty())
    }
}

/// Results of one worker: (job index, report, errors).
type Done = Vec<(usize, FolderReport, Vec<SyncError>)>;

/// A worker: takes folders from the queue until it is empty. The first worker starts with the
/// account's first pair of sessions (or, in a second phase, connects through [`run_folder`]);
/// every other one logs in *before* it takes a folder, so that a worker the servers turn away
/// holds no folder that nobody would then process. Extra workers log in one at a time: a server
/// limiting connections per user then counts the sessions already open (Dovecot checks
/// `mail_max_userip_connections` racily: parallel logins all get in), and after the first refusal
/// no further one tries in this run (the others do the work).
async fn worker(ctx: &Ctx<'_>, mut sessions: Option<Pair>, primary: bool) -> Done {
    use std::sync::atomic::Ordering;
    let mut done = Vec::new();
    if sessions.is_none() && !primary {
        let gate = ctx.logins.lock().await;
        if !ctx.has_jobs() || ctx.pool_full.load(Ordering::SeqCst) {
            return done;
        }
        match connect_pair(ctx.ep1, ctx.ep2).await {
            Ok(p) => sessions = Some(p),
            Err(errs) => {
                ctx.pool_full.store(true, Ordering::SeqCst);
                let why: Vec<String> = errs.iter().map(|e| e.message.clone()).collect();
                warn!(reason = %why.join("; "), "extra worker cannot log in; continuing with fewer connections");
                return done;
            }
        }
        drop(gate);
    }
    while let Some(job) = ctx.next_job() {
        // Without sessions (lost, or a second phase) run_folder connects, patiently, and reports.
        let (rep, errs) = run_folder(ctx, &mut sessions, &job).await;
        ctx.progress.folder_finished(&rep);
        done.push((job.index, rep, errs));
    }
    if let Some(p) = sessions {
        p.logout().await;
    }
    done
}

/// Sync one folder pair, reconnecting and re-planning after a lost connection.
async fn run_folder(
    ctx: &Ctx<'_>,
    sessions: &mut Option<Pair>,
    job: &Job,
) -> (FolderReport, Vec<SyncError>) {
    let started = Instant::now();
    let pair = &job.pair;
    ctx.progress.folder_started(&pair.name1, &pair.name2);
    let mut rep = FolderReport {
        name1: pair.name1.clone(),
        name2: pair.name2.clone(),
        created: pair.create && ctx.created.contains(&pair.raw2),
        ..FolderReport::default()
    };
    if let Some(why) = ctx.create_failed.get(&pair.raw2) {
        let err = SyncError::folder(
            ErrorClass::Create,
            &pair.name1,
            format!("host2 CREATE {:?}: {why}", pair.name2),
        );
        rep.errors = 1;
        rep.elapsed_secs = started.elapsed().as_secs_f64();
        return (rep, vec![err]);
    }
    let errors;
    loop {
        let Some(p) = sessions.as_mut() else {
            errors = match connect_pair_patient(ctx.ep1, ctx.ep2, ctx.opts).await {
                Ok(p) => {
                    *sessions = Some(p);
                    continue;
                }
                Err(errs) => errs
                    .into_iter()
                    .map(|e| SyncError {
                        folder: Some(pair.name1.clone()),
                        ..e
                    })
                    .collect(),
            };
            break;
        };
        let mut attempt_errors = Vec::new();
        match pass::sync_folder(ctx, p, job, &mut rep, &mut attempt_errors).await {
            Ok(()) => {
                errors = attempt_errors;
                break;
            }
            Err(folder::Fail::Folder(e)) => {
                attempt_errors.push(e);
                errors = attempt_errors;
                break;
            }
            Err(folder::Fail::Connection { side, err }) => {
                // The session is unusable; the other one may be fine but a fresh pair is simplest.
                *sessions = None;
                if rep.reconnects >= ctx.opts.max_reconnects {
                    attempt_errors.push(SyncError::folder(
                        if side == Side::Host1 {
                            ErrorClass::ConnectHost1
                        } else {
                            ErrorClass::ConnectHost2
                        },
                        &pair.name1,
                        format!(
                            "{}: {err} (gave up after {} reconnections)",
                            side.label(),
                            rep.reconnects
                        ),
                    ));
                    errors = attempt_errors;
                    break;
                }
                rep.reconnects += 1;
                if err.is_throttle() {
                    // The server asked us to slow down: pause this folder's work (the other
                    // accounts and workers go on), then reconnect and re-plan, which finds what
                    // reached host2 before the refusal instead of sending it again.
                    rep.throttled += 1;
                    let wait = retry_wait(ctx.opts, rep.reconnects - 1, err.backoff_hint());
                    warn!(folder = %pair.name1, side = side.label(), error = %err, "server asks to slow down; pausing {wait:?}, then reconnecting and re-planning");
                    tokio::time::sleep(wait).await;
                } else {
                    warn!(folder = %pair.name1, side = side.label(), error = %err, "connection lost; reconnecting and re-planning");
                }
            }
        }
    }
    rep.errors = errors.len() as u64;
    rep.elapsed_secs = started.elapsed().as_secs_f64();
    (rep, errors)
}

/// The shared body budget in KiB permits: `in_flight_bytes`, at least one batch, at least 1 MiB.
pub(crate) fn budget_kib(opts: &SyncOptions) -> u32 {
    let bytes = opts.in_flight_bytes.max(opts.batch_bytes).max(1 << 20);
    // tokio's semaphore holds at most usize::MAX >> 3 permits; stay far below.
    u32::try_from(bytes / 1024).unwrap_or(u32::MAX >> 4)
}

/// Sync one account from `ep1` (host1, read-only) to `ep2` (host2). Never fails: every problem is a
/// classified error in the report (see [`AccountReport::exit_code`]).
pub async fn sync_account(
    ep1: &Endpoint,
    ep2: &Endpoint,
    opts: &SyncOptions,
    progress: Arc<dyn Progress>,
) -> AccountReport {
    let started = Instant::now();
    let mut report = AccountReport {
        user1: ep1.user.clone(),
        user2: ep2.user.clone(),
        host1: ep1.addr(),
        host2: ep2.addr(),
        started: chrono::Local::now().to_rfc3339(),
        dry_run: opts.dry_run,
        ..AccountReport::default()
    };
    let (before1, before2) = (
        imapfleet_imap::stats::commands(ep1),
        imapfleet_imap::stats::commands(ep2),
    );
    run_account(ep1, ep2, opts, progress.as_ref(), &mut report).await;
    report.commands1 =
        imapfleet_imap::stats::since(&before1, &imapfleet_imap::stats::commands(ep1));
    report.commands2 =
        imapfleet_imap::stats::since(&before2, &imapfleet_imap::stats::commands(ep2));
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.finish_totals();
    info!(verdict = %report.verdict(), "account done");
    report
}

async fn run_account(
    ep1: &Endpoint,
    ep2: &Endpoint,
    opts: &SyncOptions,
    progress: &dyn Progress,
    report: &mut AccountReport,
) {
    let mut pair = match connect_pair_patient(ep1, ep2, opts).await {
        Ok(p) => p,
        Err(errs) => {
            report.errors = errs;
            return;
        }
    };
    info!(user1 = %ep1.user, user2 = %ep2.user, "logged in to both sides");
    if opts.just_login {
        pair.logout().await;
        return;
    }
    let (map, h2, statuses) = match map_account(&mut pair, opts).await {
        Ok(m) => m,
        Err(e) => {
            report.errors.push(e);
            pair.logout().await;
            return;
        }
    };
    progress.totals_known(map.pairs.len());
    let mut first = Some(pair);
    let creates = create_folders(&mut first, ep1, ep2, &map, opts).await;
    report.created_folders = creates.created.clone();
    if opts.just_folders {
        for (raw, why) in &creates.failed {
            report.errors.push(SyncError::account(
                ErrorClass::Create,
                format!("host2 CREATE {raw:?}: {why}"),
            ));
        }
        if let Some(p) = first {
            p.logout().await;
        }
        return;
    }
    let budget_kib = budget_kib(opts);
    let state = match delta::AccountState::open(opts, ep1, ep2).await {
        Ok(s) => s,
        Err(e) => {
            report.errors.push(e);
            if let Some(p) = first {
                p.logout().await;
            }
            return;
        }
    };
    // With saved state, folders unchanged since the last pass are done already (no SELECT).
    let (jobs, unchanged) = match &state {
        Some(st) => delta::plan_jobs(st, first.as_mut(), &map, &statuses, opts, progress).await,
        None => (largest_first(first.as_mut(), &map).await, Vec::new()),
    };
    let allmail = allmail::AllFolder::for_pairs(&map.pairs, opts);
    // host1's \All folder goes after every other folder (see `allmail`).
    let (later, jobs): (VecDeque<Job>, VecDeque<Job>) = jobs
        .into_iter()
        .partition(|j| allmail.is_some() && allmail::is_all(&j.pair));
    let n_jobs = jobs.len();
    let ctx = Ctx {
        ep1,
        ep2,
        opts,
        progress,
        queue: Mutex::new(jobs),
        create_failed: creates.failed,
        created: creates.created,
        budget: Semaphore::new(budget_kib as usize),
        budget_kib,
        state,
        allmail,
        logins: tokio::sync::Mutex::new(()),
        pool_full: std::sync::atomic::AtomicBool::new(false),
    };
    let n_workers = opts.connections.max(1).min(n_jobs.max(1));
    // All workers run concurrently in this task: the work is I/O-bound (the servers do the heavy
    // lifting), and borrowing the context avoids 'static requirements on sessions.
    let workers =
        (0..n_workers).map(|i| worker(&ctx, if i == 0 { first.take() } else { None }, i == 0));
    let mut results: Vec<(usize, FolderReport, Vec<SyncError>)> =
        futures::future::join_all(workers)
            .await
            .into_iter()
            .flatten()
            .collect();
    if !later.is_empty() {
        let n = later.len().min(opts.connections.max(1));
        if let Ok(mut q) = ctx.queue.lock() {
            q.extend(later);
        }
        ctx.pool_full
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let workers = (0..n).map(|i| worker(&ctx, first.take(), i == 0));
        results.extend(
            futures::future::join_all(workers)
                .await
                .into_iter()
                .flatten(),
        );
    }
    results.extend(unchanged);
    collect_results(report, &map, results);
    if let Some(h1) = &statuses.host1 {
        folders2::delete_folders(ep2, h1, &h2, opts, report).await;
    }
}

/// The jobs, largest host1 folder first (by STATUS MESSAGES), so the biggest folder does not start
/// last and become the tail of the run (longest-processing-time-first scheduling). Cheap: one STATUS
/// per folder. A folder whose STATUS fails is queued last; its EXAMINE will report the problem.
async fn largest_first(pair: Option<&mut Pair>, map: &FolderMap) -> VecDeque<Job> {
    let mut sized: Vec<(u32, Job)> = Vec::with_capacity(map.pairs.len());
    let mut session = pair.map(|p| &mut p.s1);
    for (index, fp) in map.pairs.iter().enumerate() {
        let messages = match session.as_mut() {
            Some(s) => match s.status(&fp.raw1).await {
                Ok(st) => st.messages.unwrap_or(0),
                Err(e) => {
                    debug!(folder = %fp.name1, error = %e, "STATUS failed; queued last");
                    if e.is_connection() {
                        session = None;
                    }
                    0
                }
            },
            None => 0,
        };
        sized.push((
            messages,
            Job {
                index,
                pair: fp.clone(),
            },
        ));
    }
    // Stable: equal sizes keep host1 order.
    sized.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    sized.into_iter().map(|(_, j)| j).collect()
}

/// Put the workers' results back in host1 folder order; a folder no worker processed is reported.
fn collect_results(
    report: &mut AccountReport,
    map: &FolderMap,
    mut results: Vec<(usize, FolderReport, Vec<SyncError>)>,
) {
    results.sort_by_key(|(i, _, _)| *i);
    let mut by_index = results.into_iter().peekable();
    for (i, pair) in map.pairs.iter().enumerate() {
        match by_index.next_if(|(j, _, _)| *j == i) {
            Some((_, rep, errs)) => {
                report.folders.push(rep);
                report.errors.extend(errs);
            }
            None => {
                report.folders.push(FolderReport {
                    name1: pair.name1.clone(),
                    name2: pair.name2.clone(),
                    errors: 1,
                    ..FolderReport::default()
                });
                report.errors.push(SyncError::folder(
                    ErrorClass::Incomplete,
                    &pair.name1,
                    "folder not processed (no usable connection)",
                ));
            }
        }
    }
}

#[cfg(test)]
mod connect_tests {
    use super::*;

    #[test]
    fn retry_waits_double_follow_hints_and_are_capped() {
        let opts = SyncOptions {
            connect_retry_base: Duration::from_millis(300),
            max_backoff: Duration::from_secs(5),
            ..SyncOptions::default()
        };
        let waits: Vec<u128> = (0..6)
            .map(|a| retry_wait(&opts, a, None).as_millis())
            .collect();
        assert_eq!(waits, vec![300, 600, 1200, 2400, 4800, 5000]);
        // The server's own hint wins over the doubling, within the cap.
        assert_eq!(
            retry_wait(&opts, 0, Some(Duration::from_millis(1750))),
            Duration::from_millis(1750)
        );
        assert_eq!(
            retry_wait(&opts, 3, Some(Duration::from_secs(299))),
            Duration::from_secs(5)
        );
        // Far attempts neither overflow nor exceed the cap.
        assert_eq!(retry_wait(&opts, 40, None), Duration::from_secs(5));
        assert_eq!(retry_wait(&opts, u32::MAX, None), Duration::from_secs(5));
    }

    #[test]
    fn only_refusals_that_may_pass_are_retried() {
        let busy = ImapError::Connect {
            addr: "h:143".into(),
            source: std::io::Error::other("not an IMAP greeting: 421 Server is busy"),
        };
        let bye = ImapError::ConnectionLost {
            command: "greeting".into(),
            detail: "BYE Too many connections".into(),
        };
        let timeout = ImapError::Timeout {
            command: "greeting".into(),
            secs: 60,
        };
        let limit = ImapError::No {
            command: "LOGIN".into(),
            code: Some("LIMIT".into()),
            text: "Maximum number of connections from user+IP exceeded".into(),
        };
        for e in [&busy, &bye, &timeout, &limit] {
            assert!(transient_connect_error(e), "{e}");
        }
        let auth = ImapError::Auth {
            user: "u".into(),
            reason: "NO [AUTHENTICATIONFAILED] Authentication failed.".into(),
        };
        let tls = ImapError::Tls {
            addr: "h:143".into(),
            reason: "certificate expired".into(),
        };
        for e in [&auth, &tls] {
            assert!(!transient_connect_error(e), "{e}");
        }
    }
}
