//! Fill one mailbox with generated mail over IMAP (plain TCP; for the lab and benchmarks).
//!
//! ```text
//! cargo run --release -p imapfleet-mailgen --example fill -- \
//!     --host 127.0.0.1 --port 1143 --user user0100 --password-env LAB_PASSWORD \
//!     [--preset bench|small] [--seed 1] [--sep .] [--batch 100] [--tls]
//! ```
//! The separator comes from NAMESPACE (or LIST) unless `--sep` is given. Prints one line:
//! messages, bytes, folders, seconds.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use imapfleet_imap::{AuthMethod, Endpoint, Secret, Security, Session};
use imapfleet_mailgen::{fill_with, FillOptions, MailboxSpec};

struct Args {
    host: String,
    port: u16,
    user: String,
    password_env: String,
    preset: String,
    seed: u64,
    sep: Option<char>,
    batch: usize,
    tls: bool,
}

fn parse() -> Result<Args> {
    let mut a = Args {
        host: "127.0.0.1".into(),
        port: 143,
        user: String::new(),
        password_env: "IMAP_PASSWORD".into(),
        preset: "small".into(),
        seed: 1,
        sep: None,
        batch: 100,
        tls: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--host" => a.host = val()?,
            "--port" => a.port = val()?.parse().context("--port")?,
            "--user" => a.user = val()?,
            "--password-env" => a.password_env = val()?,
            "--preset" => a.preset = val()?,
            "--seed" => a.seed = val()?.parse().context("--seed")?,
            "--sep" => a.sep = val()?.chars().next(),
            "--batch" => a.batch = val()?.parse().context("--batch")?,
            "--tls" => a.tls = true,
            "-h" | "--help" => {
                println!(
                    "fill --host H --port P --user U --password-env VAR [--preset bench|small] [--seed N] [--sep C] [--batch N] [--tls]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if a.user.is_empty() {
        bail!("--user is required");
    }
    Ok(a)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let a = parse()?;
    let spec = match a.preset.as_str() {
        "small" => MailboxSpec::small(),
        "bench" => MailboxSpec::bench(),
        other => bail!("--preset {other:?}: expected small or bench"),
    }
    .with_seed(a.seed);
    let password = std::env::var(&a.password_env)
        .with_context(|| format!("${} is not set", a.password_env))?;
    let ep = Endpoint {
        label: "host1".into(),
        host: a.host.clone(),
        port: a.port,
        security: if a.tls {
            Security::StartTls
        } else {
            Security::Plain
        },
        user: a.user.clone(),
        authuser: None,
        password: Secret::new(password),
        auth: AuthMethod::Auto,
        ca_file: None,
        insecure: a.tls,
        timeout: Duration::from_secs(300),
    };
    let started = Instant::now();
    let mut session = Session::connect(&ep)
        .await
        .with_context(|| format!("connecting to {}", ep.addr()))?;
    let sep = match a.sep {
        Some(c) => c,
        None => {
            let ns = session.namespaces().await?;
            match ns.personal.first().and_then(|n| n.delimiter) {
                Some(c) => c,
                None => session
                    .list()
                    .await?
                    .iter()
                    .find_map(|e| e.delimiter)
                    .unwrap_or('.'),
            }
        }
    };
    let opts = FillOptions {
        batch_messages: a.batch,
        ..FillOptions::default()
    };
    let stats = fill_with(&mut session, sep, spec.generate(), &opts).await?;
    session.logout().await;
    println!(
        "filled {}@{}: {} messages, {} bytes, {} folders created, {} APPEND commands, {:.2} s",
        a.user,
        ep.addr(),
        stats.messages,
        stats.bytes,
        stats.folders_created,
        stats.append_commands,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
