//! `imapfleet`: the one binary. Parses arguments, merges settings, and hands off to the engine.
//! This is the only place where `anyhow` is used and where errors become exit codes.

mod args;
mod commands;
mod fleet_cmd;
mod progress;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::settings::{Settings, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("imapfleet: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            if let Some(u) = e.downcast_ref::<UsageError>() {
                eprintln!("imapfleet: usage: {u}");
                return ExitCode::from(imapfleet_sync::report::ErrorClass::Usage.exit_code() as u8);
            }
            eprintln!("imapfleet: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load(cli.config.as_deref(), &long_options())?;
    match cli.command {
        Command::Sync(a) => commands::sync(&settings, a).await,
        Command::Verify(a) => commands::verify(&settings, a).await,
        Command::Generate(a) => commands::generate(&settings, a).await,
        Command::Dispatch(a) => fleet_cmd::dispatch(&settings, a).await,
        Command::Worker(a) => fleet_cmd::worker(&settings, a).await,
        Command::Status(a) => fleet_cmd::status(&settings, a).await,
        Command::Run(a) => fleet_cmd::run(&settings, a).await,
    }
}

/// Every long option name of every subcommand (`dry`, `delete2`, ...).
fn long_options() -> Vec<String> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let mut names: Vec<String> = cmd
        .get_subcommands()
        .chain([&cmd])
        .flat_map(|c| c.get_arguments())
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Logs go to stderr; the level comes from `--log`, else `RUST_LOG`, else `info` for our crates.
fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| {
            EnvFilter::new(
                "warn,imapfleet=info,imapfleet_fleet=info,imapfleet_sync=info,imapfleet_imap=warn",
            )
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: a log redirected to a file gets no escape codes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
