//! Command-line surface: one module per subcommand, this file declares
//! the arguments and dispatches.

mod alerts;
mod compact;
mod demo;
mod detect;
mod eval;
mod formats;
mod generate;
mod ingest;
mod metrics;
mod serve;
mod sql;
mod tokens;
mod users;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Watches CI/CD pipelines for security teams.
#[derive(Debug, Parser)]
#[command(name = "pipewatch", version, about, long_about = None)]
pub(crate) struct Cli {
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    command: Command,
}

/// The data directory shared by every command.
#[derive(Debug, clap::Args)]
pub(crate) struct DataDir {
    /// Where the lake, dead letters and state live.
    #[arg(long, env = "PIPEWATCH_DATA_DIR", default_value = "./pipewatch-data")]
    pub(crate) data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import native event files (or `-` for stdin) into the lake.
    Ingest(ingest::Args),
    /// Run a read-only SQL query over the lake.
    Sql(sql::Args),
    /// Merge each partition's small files into larger, time-sorted ones.
    Compact(compact::Args),
    /// List the native formats pipewatch reads.
    Formats,
    /// Write a realistic organisation's CI/CD events, with labelled incidents, in native formats.
    Generate(generate::Args),
    /// Ingest the demo organisation and show what it holds.
    Demo(demo::Args),
    /// Print the hardening metrics.
    Metrics(metrics::Args),
    /// Run the detectors over stored history and record alerts.
    Detect(detect::Args),
    /// List alerts and change their status.
    Alerts(alerts::Args),
    /// Score the alerts against a labels file from `pipewatch generate`.
    Eval(eval::Args),
    /// Run the service: receive events over HTTP, commit them, detect online.
    Serve(serve::Args),
    /// Manage the local users of the dashboard and their roles.
    Users(users::Args),
    /// Manage API tokens for scripts and notebooks.
    Tokens(tokens::Args),
}

/// A progress bar of `len` steps drawn with `template` on a terminal's
/// stderr, and hidden when stderr is a pipe or a file.
pub(crate) fn progress_bar(len: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Sets up logging to stderr; `RUST_LOG` overrides the verbosity flags.
pub(crate) fn init_logging(verbose: u8) {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(verbose))
        .with_writer(std::io::stderr)
        .init();
}

/// What is logged to stderr: `RUST_LOG`, else by the verbosity flags.
pub(crate) fn log_filter(verbose: u8) -> tracing_subscriber::EnvFilter {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default))
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        // The service sets up its own logging, with OTLP export when configured.
        Command::Serve(args) => serve::run(args, cli.verbose),
        command => {
            init_logging(cli.verbose);
            run_command(command)
        }
    }
}

fn run_command(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Ingest(args) => ingest::run(args),
        Command::Sql(args) => sql::run(args),
        Command::Compact(args) => compact::run(args),
        Command::Formats => formats::run(),
        Command::Generate(args) => generate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Detect(args) => detect::run(args),
        Command::Alerts(args) => alerts::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Serve(args) => serve::run(args, 0),
        Command::Users(args) => users::run(args),
        Command::Tokens(args) => tokens::run(args),
    }
}

/// A small Tokio runtime for commands that query.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
