//! The subcommands: each turns its arguments into engine options, runs, prints, and returns an exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{Duration as ChronoDuration, Utc};
use imapfleet_imap::{Endpoint, Session};
use imapfleet_mailgen::{corpus_messages, fill, GenFolder, GenMessage, MailboxSpec};
use imapfleet_sync::engine::{sync_account, NoProgress, Progress, SyncOptions};
use imapfleet_sync::identity::IdentityConfig;
use imapfleet_sync::mapping::MappingOptions;
use imapfleet_sync::state::{file::FileState, StateHandle};
use imapfleet_sync::verify::verify_account;

use crate::args::{GenerateArgs, PairArgs, SyncArgs, VerifyArgs};
use crate::progress::Bar;
use crate::settings::{Settings, SideValues, UsageError};

/// Both endpoints and the engine options shared by `sync` and `verify`.
fn pair_options(settings: &Settings, pair: &PairArgs) -> Result<(Endpoint, Endpoint, SyncOptions)> {
    let (ep1, v1) = settings.endpoint(1, pair.side1.values(), pair.timeout)?;
    let (ep2, v2) = settings.endpoint(2, pair.side2.values(), pair.timeout)?;
    let mut opts = SyncOptions {
        mapping: mapping_options(pair)?,
        ..SyncOptions::default()
    };
    if !pair.useheader.is_empty() {
        opts.identity = IdentityConfig {
            headers: pair.useheader.clone(),
        };
    }
    apply_side_overrides(&mut opts, &v1, &v2);
    if let Some(n) = pair
        .connections
        .or(settings.number("connections")?.map(|n| n as usize))
    {
        if n == 0 {
            return Err(UsageError("--connections must be at least 1".into()).into());
        }
        opts.connections = n;
    }
    if let Some(n) = pair
        .connect_retries
        .map(u64::from)
        .or(settings.number("connect_retries")?)
    {
        opts.connect_retries = u32::try_from(n)
            .map_err(|_| UsageError(format!("--connect-retries {n} is too large")))?;
    }
    if let Some(secs) = pair.max_backoff.or(settings.number("max_backoff")?) {
        opts.max_backoff = std::time::Duration::from_secs(secs);
    }
    Ok((ep1, ep2, opts))
}

fn apply_side_overrides(opts: &mut SyncOptions, v1: &SideValues, v2: &SideValues) {
    opts.sep1 = v1.sep;
    opts.sep2 = v2.sep;
    opts.prefix1 = v1.prefix.clone();
    opts.prefix2 = v2.prefix.clone();
}

fn mapping_options(pair: &PairArgs) -> Result<MappingOptions> {
    let mut f1f2 = Vec::new();
    for spec in &pair.f1f2 {
        // Both names non-empty: "INBOX=" would map INBOX nowhere, "=X" maps nothing.
        let (a, b) = imapfleet_sync::mapping::parse_f1f2(spec).map_err(|_| {
            UsageError(format!(
                "--f1f2 {spec:?}: expected \"host1 folder=host2 folder\", both names non-empty"
            ))
        })?;
        f1f2.push((a, b));
    }
    Ok(MappingOptions {
        folders: pair.folder.clone(),
        include: pair.include.clone(),
        exclude: pair.exclude.clone(),
        f1f2,
        regextrans2: pair.regextrans2.clone(),
        subfolder2: pair.subfolder2.clone(),
        automap: pair.automap,
    })
}

/// Days (possibly fractional) before now, as an instant in UTC.
fn days_ago(days: f64) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    if !(days.is_finite() && days >= 0.0) {
        return Err(UsageError(format!("{days} is not a number of days")).into());
    }
    let secs = (days * 86_400.0).round() as i64;
    Ok((Utc::now() - ChronoDuration::seconds(secs)).fixed_offset())
}

pub async fn sync(settings: &Settings, a: SyncArgs) -> Result<i32> {
    let (ep1, ep2, mut opts) = pair_options(settings, &a.pair)?;
    opts.dry_run = a.dry;
    opts.just_login = a.justlogin;
    opts.just_folders = a.justfolders;
    opts.plan.resync_flags = !a.noresyncflags;
    opts.plan.copy_deleted = a.copydeleted;
    opts.plan.delete2 = a.delete2;
    opts.force_delete = a.force_delete;
    if let Some(p) = a.delete2_max_percent {
        opts.delete2_max_percent = p;
    }
    opts.delete2_trash = a.delete2_trash;
    if let Some(n) = a.delete2_chunk {
        opts.delete2_chunk = n as usize;
    }
    opts.copy_all_folder = a.copy_all_folder;
    opts.plan.delete2_duplicates = a.delete2duplicates;
    opts.delete1 = a.delete1;
    opts.expunge1 = a.expunge1;
    if a.delete2folders {
        let rules = imapfleet_sync::engine::FolderDeletion {
            only: a.delete2foldersonly.clone(),
            but_not: a.delete2foldersbutnot.clone(),
        };
        rules.validate().map_err(UsageError)?;
        opts.delete2_folders = Some(rules);
    }
    if a.force_delete && !(a.delete2 || a.delete2duplicates || a.delete2folders) {
        return Err(UsageError(
            "--force-delete needs --delete2, --delete2duplicates or --delete2folders".into(),
        )
        .into());
    }
    opts.plan.max_size = a.maxsize;
    opts.plan.not_before = a.maxage.map(days_ago).transpose()?;
    opts.plan.not_after = a.minage.map(days_ago).transpose()?;
    opts.state = state_handle(settings, &a);
    // The report file is opened before the migration, not found unwritable after it.
    let report_file = a
        .report_json
        .as_ref()
        .map(|path| {
            std::fs::File::create(path)
                .map_err(|e| UsageError(format!("--report-json {}: {e}", path.display())))
        })
        .transpose()?;
    // One process at a time writes into a host2 account from this machine: two would both
    // copy what they find missing (a dry run writes nothing and needs no guard).
    let _guard = if opts.dry_run {
        None
    } else {
        Some(
            imapfleet_fleet::lock::host::try_guard(
                &imapfleet_fleet::lock::host::default_dir(),
                &ep2.host,
                ep2.port,
                &ep2.user,
            )
            .map_err(|e| UsageError(e.to_string()))?,
        )
    };

    let show_bar = !a.quiet && std::io::stderr().is_terminal();
    let bar = show_bar.then(|| Arc::new(Bar::new()));
    let progress: Arc<dyn Progress> = match &bar {
        Some(b) => b.clone(),
        None => Arc::new(NoProgress),
    };
    let report = sync_account(&ep1, &ep2, &opts, progress).await;
    if let Some(b) = bar {
        b.finish();
    }
    println!("{report}");
    if let (Some(path), Some(mut file)) = (&a.report_json, report_file) {
        use std::io::Write;
        let json = serde_json::to_string_pretty(&report)?;
        file.write_all(json.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.exit_code())
}

/// The saved sync state: `--statedir`, else the `statedir` setting, else `$IMAPFLEET_STATE_DIR`,
/// else the default directory; none with `--nostate`. A directory that cannot be used only costs
/// full reads (warned).
fn state_handle(settings: &Settings, a: &SyncArgs) -> Option<StateHandle> {
    if a.nostate {
        return None;
    }
    let dir = a
        .statedir
        .clone()
        .or_else(|| settings.string("statedir").map(PathBuf::from))
        .or_else(|| {
            std::env::var_os("IMAPFLEET_STATE_DIR")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(FileState::default_dir);
    match FileState::new(&dir) {
        Ok(store) => Some(StateHandle::new(Arc::new(store), 0)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot use the state directory; comparing every folder in full");
            None
        }
    }
}

pub async fn verify(settings: &Settings, a: VerifyArgs) -> Result<i32> {
    let (ep1, ep2, opts) = pair_options(settings, &a.pair)?;
    let report = match verify_account(&ep1, &ep2, &opts).await {
        Ok(r) => r,
        Err(e) => {
            // The same exit codes as `sync` (auth 10/11, connect 12/13, usage 2 ...).
            eprintln!("imapfleet: verify: {e}");
            return Ok(e.sync_error().class.exit_code());
        }
    };
    println!("{report}");
    if let Some(path) = &a.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.ok {
        0
    } else {
        imapfleet_sync::report::ErrorClass::Incomplete.exit_code()
    })
}

pub async fn generate(settings: &Settings, a: GenerateArgs) -> Result<i32> {
    let (ep, v) = settings.endpoint(1, a.side.values(), a.timeout)?;
    let spec = match a.preset.as_str() {
        "small" => MailboxSpec::small(),
        "bench" => MailboxSpec::bench(),
        other => {
            return Err(UsageError(format!("--preset {other:?}: expected small or bench")).into())
        }
    }
    .with_seed(a.seed);
    let mut session = Session::connect(&ep)
        .await
        .with_context(|| format!("connecting to {}", ep.addr()))?;
    let ns = session.namespaces().await?;
    let personal = ns.personal.first();
    let sep = v.sep.or(personal.and_then(|n| n.delimiter)).unwrap_or('.');
    let prefix = v
        .prefix
        .clone()
        .or(personal.map(|n| n.prefix.clone()))
        .unwrap_or_default();
    let under_prefix = |mut f: GenFolder| {
        let is_inbox = f.path.len() == 1 && f.path[0].eq_ignore_ascii_case("INBOX");
        let head: Vec<String> = prefix
            .split(sep)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        if !is_inbox && !head.is_empty() {
            f.path = head.into_iter().chain(f.path).collect();
        }
        f
    };
    let mut stats = fill(&mut session, sep, spec.generate().map(under_prefix)).await?;
    if let Some(dir) = &a.corpus {
        let corpus = corpus_folders(dir);
        if corpus.is_empty() {
            return Err(UsageError(format!(
                "--corpus {}: no messages found (MANIFEST.tsv?)",
                dir.display()
            ))
            .into());
        }
        let more = fill(&mut session, sep, corpus.into_iter().map(under_prefix)).await?;
        stats.messages += more.messages;
        stats.bytes += more.bytes;
        stats.folders_created += more.folders_created;
    }
    session.logout().await;
    println!(
        "generated {} messages ({:.1} MB) in {} folders for {} on {}",
        stats.messages,
        stats.bytes as f64 / 1e6,
        stats.folders_created + 1,
        ep.user,
        ep.addr()
    );
    Ok(0)
}

/// The corpus as folders `corpus/<project>`, messages as they are, no flags, fixed dates.
fn corpus_folders(dir: &std::path::Path) -> Vec<GenFolder> {
    let base =
        chrono::DateTime::parse_from_rfc3339("2020-01-01T00:00:00+00:00").expect("constant date");
    let mut by_project: std::collections::BTreeMap<String, Vec<GenMessage>> = Default::default();
    for (i, (path, bytes)) in corpus_messages(dir).into_iter().enumerate() {
        let project = path.split('/').next().unwrap_or("misc").to_string();
        let internaldate = base + ChronoDuration::minutes(i as i64);
        by_project.entry(project).or_default().push(GenMessage {
            bytes,
            flags: vec![],
            internaldate,
        });
    }
    by_project
        .into_iter()
        .map(|(project, messages)| GenFolder {
            path: vec!["corpus".into(), project],
            messages,
        })
        .collect()
}
