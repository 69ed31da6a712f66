//! The subcommands: each turns its arguments into engine options, runs, prints, and returns an exit code.

use std::io::IsTerminal;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{Duration as ChronoDuration, Utc};
use imapfleet_imap::Endpoint;
use imapfleet_sync::engine::{sync_account, NoProgress, Progress, SyncOptions};
use imapfleet_sync::identity::IdentityConfig;
use imapfleet_sync::mapping::MappingOptions;
use imapfleet_sync::verify::verify_account;

use crate::args::{GenerateArgs, PairArgs, SyncArgs, VerifyArgs};
use crate::progress::Bar;
use crate::settings::{Settings, SideValues, UsageError};

/// Both endpoints and the engine options shared by `sync` and `verify`.
fn pair_options(settings: &Settings, pair: &PairArgs) -> Result<(Endpoint, Endpoint, SyncOptions)> {
    let (ep1, v1) = settings.endpoint(1, pair.side1.values(), pair.timeout)?;
    let (ep2, v2) = settings.endpoint(2, pair.side2.values(), pair.timeout)?;
    let mut opts = SyncOptions::default();
    opts.mapping = mapping_options(pair)?;
    if !pair.useheader.is_empty() {
        opts.identity = IdentityConfig { headers: pair.useheader.clone() };
    }
    apply_side_overrides(&mut opts, &v1, &v2);
    if let Some(n) = pair.connections.or(settings.number("connections")?.map(|n| n as usize)) {
        if n == 0 {
            return Err(UsageError("--connections must be at least 1".into()).into());
        }
        opts.connections = n;
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
        let Some((a, b)) = spec.split_once('=') else {
            return Err(UsageError(format!("--f1f2 {spec:?}: expected \"host1 folder=host2 folder\"")).into());
        };
        f1f2.push((a.to_string(), b.to_string()));
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
    opts.plan.max_size = a.maxsize;
    opts.plan.not_before = a.maxage.map(days_ago).transpose()?;
    opts.plan.not_after = a.minage.map(days_ago).transpose()?;

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
    if let Some(path) = &a.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.exit_code())
}

pub async fn verify(settings: &Settings, a: VerifyArgs) -> Result<i32> {
    let (ep1, ep2, opts) = pair_options(settings, &a.pair)?;
    let report = verify_account(&ep1, &ep2, &opts).await?;
    println!("{report}");
    if let Some(path) = &a.report_json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(if report.ok { 0 } else { imapfleet_sync::report::ErrorClass::Incomplete.exit_code() })
}

pub async fn generate(settings: &Settings, a: GenerateArgs) -> Result<i32> {
    let (ep, _) = settings.endpoint(1, a.side.values(), a.timeout)?;
    let summary = crate::progress::generate(&ep, &a).await?;
    println!("{summary}");
    Ok(0)
}
