//! Run one account sync (and optionally the deep verify) against the lab, printing the report,
//! the wall time and the peak RSS. For measuring the engine without the CLI.
//!
//! cargo run --release -p imapfleet-sync --example lab_sync -- USER1 USER2 [--verify] [--dry] [--timing] [--connections N]
//! (host1 127.0.0.1:1143, host2 127.0.0.1:2143, password "secret", plain: loopback only)

use std::sync::Arc;
use std::time::{Duration, Instant};

use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security};
use imapfleet_sync::engine::{sync_account, NoProgress, Progress, SyncOptions};
use imapfleet_sync::report::FolderReport;
use imapfleet_sync::verify::verify_account;

fn endpoint(label: &str, port: u16, user: &str) -> Endpoint {
    Endpoint {
        label: label.into(),
        host: "127.0.0.1".into(),
        port,
        security: Security::Plain,
        user: user.into(),
        authuser: None,
        password: Secret::new("secret"),
        auth: AuthMethod::Auto,
        ca_file: None,
        insecure: false,
        timeout: Duration::from_secs(120),
    }
}

/// Prints folder events with the time since start (`--timing`).
struct Timing(Instant);

impl Progress for Timing {
    fn folder_started(&self, name1: &str, _: &str) {
        eprintln!("{:8.3} start  {name1}", self.0.elapsed().as_secs_f64());
    }
    fn folder_planned(&self, name1: &str, to_copy: usize, bytes: u64) {
        eprintln!(
            "{:8.3} plan   {name1}: {to_copy} messages, {bytes} bytes",
            self.0.elapsed().as_secs_f64()
        );
    }
    fn folder_finished(&self, r: &FolderReport) {
        eprintln!(
            "{:8.3} done   {} ({:.3} s)",
            self.0.elapsed().as_secs_f64(),
            r.name1,
            r.elapsed_secs
        );
    }
}

/// Peak resident set size of this process, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    // RUST_LOG=imapfleet_sync=debug,imapfleet_imap=debug for details (never secrets).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: lab_sync USER1 USER2 [--verify] [--dry] [--timing] [--connections N]");
        std::process::exit(2);
    }
    let mut opts = SyncOptions {
        dry_run: args.iter().any(|a| a == "--dry"),
        ..SyncOptions::default()
    };
    if let Some(i) = args.iter().position(|a| a == "--connections") {
        opts.connections = args.get(i + 1).and_then(|n| n.parse().ok()).unwrap_or(4);
    }
    let (ep1, ep2) = (
        endpoint("host1", 1143, &args[0]),
        endpoint("host2", 2143, &args[1]),
    );
    let t = Instant::now();
    let progress: Arc<dyn Progress> = if args.iter().any(|a| a == "--timing") {
        Arc::new(Timing(t))
    } else {
        Arc::new(NoProgress)
    };
    let report = sync_account(&ep1, &ep2, &opts, progress).await;
    let sync_secs = t.elapsed().as_secs_f64();
    println!("{report}");
    println!(
        "sync wall time {sync_secs:.3} s, peak RSS {} KiB",
        peak_rss_kib().unwrap_or(0)
    );
    if args.iter().any(|a| a == "--verify") {
        let t = Instant::now();
        match verify_account(&ep1, &ep2, &opts).await {
            Ok(v) => println!("{v}\nverify wall time {:.3} s", t.elapsed().as_secs_f64()),
            Err(e) => println!("verify failed: {e}"),
        }
        println!("peak RSS {} KiB", peak_rss_kib().unwrap_or(0));
    }
    std::process::exit(report.exit_code());
}
