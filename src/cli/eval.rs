//! `pipewatch eval`: scores the stored alerts against a labels file from
//! `pipewatch generate` — recall per incident kind, precision, and false
//! alerts per 10,000 benign events at a minimum severity.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pipewatch_analytics::alerts::{AlertFilter, AlertStore};
use pipewatch_analytics::eval::{self, Labels, ScoredAlert};
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_schema::Severity;

use super::DataDir;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// The labels file `pipewatch generate` wrote.
    #[arg(long)]
    labels: PathBuf,
    /// Alerts below this severity are not counted.
    #[arg(long, default_value = "medium", value_parser = |s: &str| Severity::parse(s).ok_or_else(|| format!("`{s}`: use info, low, medium, high or critical")))]
    min_severity: Severity,
    /// How to print the result.
    #[arg(long, value_enum, default_value = "table")]
    output: Output,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.labels)
        .with_context(|| format!("cannot read the labels {}", args.labels.display()))?;
    let labels: Labels = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a labels file", args.labels.display()))?;
    if !args
        .data
        .data_dir
        .join(pipewatch_analytics::alerts::CONTROL_DB)
        .exists()
    {
        anyhow::bail!(
            "no alerts in {}: run `pipewatch detect --data-dir {}` first",
            args.data.data_dir.display(),
            args.data.data_dir.display()
        );
    }
    let store = AlertStore::open(&args.data.data_dir).context("cannot open the alert store")?;
    let alerts: Vec<ScoredAlert> = store
        .list(&AlertFilter::default())
        .context("cannot list alerts")?
        .into_iter()
        .map(|a| ScoredAlert {
            alert_id: a.alert_id,
            detector: a.detector,
            severity: a.severity,
            entity: a.entity,
            title: a.title,
            evidence: a.evidence_event_ids,
        })
        .collect();
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let service = QueryService::open(&args.data.data_dir, QueryLimits::default())
            .await
            .context("cannot open the lake")?;
        let resolved = eval::resolve(&service, &labels)
            .await
            .context("cannot find the labelled evidence in the lake")?;
        anyhow::Ok(eval::evaluate(
            &labels,
            &resolved,
            &alerts,
            args.min_severity,
        ))
    })?;
    match args.output {
        Output::Table => println!("{}", report.render()),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(ExitCode::SUCCESS)
}
