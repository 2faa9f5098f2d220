//! `pipewatch sql`: one read-only query over the lake, printed as a
//! table, CSV or JSON.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pipewatch_analytics::query::OutputFormat;
use pipewatch_analytics::{QueryLimits, QueryService, render};

use super::DataDir;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
    /// Memory a query may use, in MiB.
    #[arg(long, env = "PIPEWATCH_SQL_MEMORY_MIB", default_value_t = 2048)]
    memory_mib: usize,
    /// Seconds before a query is cancelled.
    #[arg(long, env = "PIPEWATCH_SQL_TIMEOUT_SECS", default_value_t = 60)]
    timeout_secs: u64,
    /// Rows a result may have.
    #[arg(long, env = "PIPEWATCH_SQL_MAX_ROWS", default_value_t = 100_000)]
    max_rows: usize,
    /// The query. Tables: events, pipeline_runs, pipeline_jobs, secret_access,
    /// deployments, audit_log, findings, policy_results, egress, attestations.
    query: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let limits = QueryLimits {
        memory_bytes: args.memory_mib.saturating_mul(1024 * 1024),
        timeout: Duration::from_secs(args.timeout_secs),
        max_rows: args.max_rows,
    };
    let format = match args.output {
        Output::Table => OutputFormat::Table,
        Output::Csv => OutputFormat::Csv,
        Output::Json => OutputFormat::Json,
    };
    let runtime = super::runtime()?;
    let text = runtime.block_on(async {
        let service = QueryService::open(&args.data.data_dir, limits)
            .await
            .context("cannot open the lake")?;
        let output = service.query(&args.query).await?;
        anyhow::Ok(render(&output, format)?)
    })?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
