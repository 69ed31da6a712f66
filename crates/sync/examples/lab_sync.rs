//! Run one account sync (and optionally the deep verify) against the lab, printing the report,
//! the wall time and the peak RSS. For measuring the engine without the CLI.
//!
//! cargo run --release -p imapfleet-sync --example lab_sync -- USER1 USER2 [--verify] [--dry] [--connections N]
//! (host1 127.0.0.1:1143, host2 127.0.0.1:2143, password "secret", plain: loopback only)

use std::sync::Arc;
use std::time::{Duration, Instant};

use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security};
use imapfleet_sync::engine::{sync_account, NoProgress, SyncOptions};
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

/// Peak resident set size of this process, from /proc (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: lab_sync USER1 USER2 [--verify] [--dry] [--connections N]");
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
    let report = sync_account(&ep1, &ep2, &opts, Arc::new(NoProgress)).await;
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
