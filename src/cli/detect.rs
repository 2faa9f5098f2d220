//! `pipewatch detect`: runs every enabled detector over stored history
//! (after warming baselines up on the learning window before `--since`),
//! groups findings into alerts in the control database, and prints the top
//! ones. Running it again over the same history adds nothing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use pipewatch_analytics::alerts::{AlertFilter, AlertStatus, AlertStore, RecordSummary};
use pipewatch_analytics::detect::{DetectConfig, DetectRun, Engine};
use pipewatch_analytics::notify::Routing;
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_schema::Severity;

use super::DataDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Score events from this time on (RFC 3339, a date, or an age like 7d);
    /// baselines learn from the window before it. Default: all history.
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Detection settings (`[detect]`, `[detectors.<name>]`) in TOML.
    #[arg(long, env = "PIPEWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Alerts to print afterwards (open, severity medium or higher).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Queue the alerts this run raises for the `[notify]` routes of
    /// `--config`; a running `pipewatch serve` delivers them. Off by
    /// default, so a backfill over old history pages nobody.
    #[arg(long, requires = "config")]
    notify: bool,
}

/// What one detection run did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetectOutcome {
    pub(crate) run: DetectRun,
    pub(crate) recorded: RecordSummary,
}

/// Reads `--since`: RFC 3339, `YYYY-MM-DD` (midnight UTC) or an age (`36h`, `7d`, `2w`).
pub(crate) fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let amount: i64 = number.parse().map_err(|_| {
        format!("`{text}` is not a time: use RFC 3339, YYYY-MM-DD, or an age like 7d")
    })?;
    let hours = match unit {
        "h" => amount,
        "d" => amount * 24,
        "w" => amount * 24 * 7,
        _ => return Err(format!("`{text}`: an age ends in h, d or w")),
    };
    Ok(Utc::now() - chrono::Duration::hours(hours))
}

/// Runs detection over the lake in `data_dir` and records the alerts.
pub(crate) async fn detect(
    data_dir: &Path,
    since: Option<DateTime<Utc>>,
    config: &DetectConfig,
    routing: Option<Arc<Routing>>,
    progress: bool,
) -> anyhow::Result<DetectOutcome> {
    let service = QueryService::open_for_history(data_dir, QueryLimits::default())
        .await
        .context("cannot open the lake")?;
    let mut store = AlertStore::open(data_dir).context("cannot open the alert store")?;
    if let Some(routing) = routing {
        store = store.with_routing(routing);
    }
    let mut engine = Engine::new(config).context("invalid detection configuration")?;
    let total = count_events(&service, since).await?;
    let bar = if progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} events ({per_sec}, {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message("detecting");
    let window = chrono::Duration::minutes(i64::from(engine.params().group_window_minutes));
    let mut recorded = RecordSummary::default();
    let mut failure = None;
    let run = engine
        .backfill(&service, since, |findings, run| {
            bar.set_position(run.scored);
            if failure.is_some() {
                return;
            }
            // Each batch's alerts are committed before the next batch is read,
            // so an interrupted run keeps what it found and a re-run adds the rest.
            match store.record(findings, window, Utc::now()) {
                Ok(summary) => {
                    recorded.new += summary.new;
                    recorded.grouped += summary.grouped;
                    recorded.known += summary.known;
                }
                Err(e) => failure = Some(e),
            }
        })
        .await
        .context("detection failed")?;
    bar.finish_and_clear();
    if let Some(e) = failure {
        return Err(e).context("cannot record alerts");
    }
    store
        .expire_suppressions(Utc::now())
        .context("cannot expire suppressions")?;
    Ok(DetectOutcome { run, recorded })
}

async fn count_events(service: &QueryService, since: Option<DateTime<Utc>>) -> anyhow::Result<u64> {
    let filter = since
        .map(|t| format!(" WHERE event_time >= TIMESTAMP '{}'", t.to_rfc3339()))
        .unwrap_or_default();
    service
        .count(&format!("SELECT count(*) FROM events{filter}"))
        .await
        .context("cannot count events")
}

/// The run's figures in one paragraph.
pub(crate) fn summary_text(outcome: &DetectOutcome) -> String {
    format!(
        "{} events scored ({} replayed to learn baselines), {} findings: {} new alerts, {} grouped into existing alerts, {} already recorded",
        outcome.run.scored,
        outcome.run.learned,
        outcome.run.findings,
        outcome.recorded.new,
        outcome.recorded.grouped,
        outcome.recorded.known
    )
}

/// The most severe open alerts, explained.
pub(crate) fn top_alerts_text(data_dir: &Path, limit: usize) -> anyhow::Result<String> {
    let store = AlertStore::open(data_dir).context("cannot open the alert store")?;
    let alerts = store
        .list(&AlertFilter {
            status: Some(AlertStatus::Open),
            min_severity: Some(Severity::Medium),
            limit: Some(limit),
            ..AlertFilter::default()
        })
        .context("cannot list alerts")?;
    Ok(super::alerts::explained(&alerts))
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let full = crate::config::Config::load_or_default(args.config.as_deref())?;
    let routing = if args.notify {
        let routing = full.routing()?;
        anyhow::ensure!(
            !routing.is_empty(),
            "--notify: the configuration has no [[notify.routes]]"
        );
        Some(Arc::new(routing))
    } else {
        None
    };
    let runtime = super::runtime()?;
    let outcome = runtime.block_on(detect(
        &args.data.data_dir,
        args.since,
        &full.detection,
        routing,
        true,
    ))?;
    println!("{}", summary_text(&outcome));
    if args.notify {
        println!(
            "new alerts are queued for delivery; `pipewatch serve` with this configuration sends them"
        );
    }
    if args.top > 0 {
        println!("\n{}", top_alerts_text(&args.data.data_dir, args.top)?);
    }
    Ok(ExitCode::SUCCESS)
}
