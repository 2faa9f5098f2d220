//! `pipewatch metrics`: the hardening metrics per org or repository over a
//! window ending at the newest event, as a table with trends or as JSON;
//! `--detail NAME` prints a drill-down's rows instead.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use pipewatch_analytics::metrics::{self, MetricsError, Scope, Window, render_json, render_table};
use pipewatch_analytics::query::OutputFormat;
use pipewatch_analytics::{QueryLimits, QueryService, render};

use super::DataDir;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum By {
    Org,
    Repo,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// What each value is computed for.
    #[arg(long, value_enum, default_value = "org")]
    by: By,
    /// How far back from the newest event to look: 12h, 30d, 2w (whole days).
    #[arg(long, default_value = "30d")]
    window: Window,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Print the rows of a drill-down instead (persistent_runners_with_secrets).
    #[arg(long, value_name = "NAME")]
    detail: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let scope = match args.by {
        By::Org => Scope::Org,
        By::Repo => Scope::Repo,
    };
    let detail = match &args.detail {
        Some(name) => {
            Some(metrics::detail(name).ok_or_else(|| MetricsError::unknown_detail(name))?)
        }
        None => None,
    };
    let runtime = super::runtime()?;
    let text = runtime.block_on(async {
        let service = QueryService::open(&args.data.data_dir, QueryLimits::default())
            .await
            .context("cannot open the lake")?;
        if let Some(detail) = detail {
            let output = metrics::run_detail(&service, detail, args.window).await?;
            let format = match args.output {
                Output::Table => OutputFormat::Table,
                Output::Json => OutputFormat::Json,
            };
            return anyhow::Ok(render(&output, format)?);
        }
        let report = metrics::run_metrics(&service, scope, args.window).await?;
        anyhow::Ok(match args.output {
            Output::Table => render_table(&report),
            Output::Json => serde_json::to_string_pretty(&render_json(&report))?,
        })
    })?;
    // A closed pipe (`| head`) is the reader's choice, not an error.
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write the metrics")
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
