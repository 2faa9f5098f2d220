//! Online detection: the detectors score every committed batch from the
//! intake's feed and the alerts are stored before the next batch is taken.
//! Baselines are warmed up from the lake before intake opens and rebuilt
//! from the learning window in the background.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use pipewatch_analytics::alerts::AlertStore;
use pipewatch_analytics::detect::{DetectConfig, DetectRun, Engine, Finding};
use pipewatch_analytics::notify::NotifierHandle;
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_ingest::intake::CommittedBatch;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The detection side's Prometheus metrics.
#[derive(Debug)]
pub(crate) struct DetectionMetrics {
    batches: Counter,
    events: Counter,
    findings: Family<DetectorLabel, Counter>,
    alerts: Family<OutcomeLabel, Counter>,
    commit_to_alert: Histogram,
    rebuilds: Counter,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DetectorLabel {
    detector: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl DetectionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = DetectionMetrics {
            batches: Counter::default(),
            events: Counter::default(),
            findings: Family::default(),
            alerts: Family::default(),
            commit_to_alert: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            rebuilds: Counter::default(),
        };
        let sub = registry.sub_registry_with_prefix("pipewatch_detect");
        sub.register(
            "batches",
            "Committed batches scored",
            metrics.batches.clone(),
        );
        sub.register("events", "Events scored", metrics.events.clone());
        sub.register(
            "findings",
            "Findings reported, per detector",
            metrics.findings.clone(),
        );
        sub.register(
            "alerts",
            "Findings recorded as new alerts, grouped into open alerts, or already known",
            metrics.alerts.clone(),
        );
        sub.register(
            "commit_to_alert_seconds",
            "From a batch's lake commit to its alerts being stored",
            metrics.commit_to_alert.clone(),
        );
        sub.register(
            "baseline_rebuilds",
            "Baselines rebuilt from the lake's learning window",
            metrics.rebuilds.clone(),
        );
        Arc::new(metrics)
    }
}

/// Builds the detectors and learns their baselines from the lake's
/// learning window, which ends at the newest stored event.
pub(crate) async fn warmed_engine(
    data_dir: &Path,
    config: &DetectConfig,
) -> anyhow::Result<(Engine, DetectRun)> {
    let service = QueryService::open_for_history(data_dir, QueryLimits::default())
        .await
        .context("cannot open the lake")?;
    let mut engine = Engine::new(config).context("invalid detection configuration")?;
    let (run, _) = engine
        .warm_up_to_latest(&service)
        .await
        .context("cannot learn baselines from the lake")?;
    Ok((engine, run))
}

/// The online detection loop and what it needs.
#[derive(Debug)]
pub(crate) struct OnlineDetection {
    pub(crate) engine: Engine,
    pub(crate) store: AlertStore,
    /// Woken when alerts were queued for delivery.
    pub(crate) notifier: Option<NotifierHandle>,
    pub(crate) config: DetectConfig,
    pub(crate) data_dir: PathBuf,
    pub(crate) refresh: Duration,
    pub(crate) metrics: Arc<DetectionMetrics>,
}

impl OnlineDetection {
    /// Scores batches until the feed closes (the intake has shut down and
    /// every committed batch has been scored).
    pub(crate) async fn run(mut self, mut feed: mpsc::Receiver<CommittedBatch>) {
        let mut refresh =
            tokio::time::interval_at(tokio::time::Instant::now() + self.refresh, self.refresh);
        let mut rebuilding: Option<JoinHandle<anyhow::Result<(Engine, DetectRun)>>> = None;
        // Batches scored while a rebuild reads the lake; the new engine
        // learns them before it takes over.
        let mut scored_meanwhile: Vec<CommittedBatch> = Vec::new();
        loop {
            tokio::select! {
                batch = feed.recv() => {
                    let Some(batch) = batch else { break };
                    self.score(&batch);
                    if rebuilding.is_some() {
                        scored_meanwhile.push(batch);
                    }
                }
                _ = refresh.tick(), if rebuilding.is_none() => {
                    let data_dir = self.data_dir.clone();
                    let config = self.config.clone();
                    rebuilding = Some(tokio::spawn(async move {
                        warmed_engine(&data_dir, &config).await
                    }));
                }
                rebuilt = async {
                    match rebuilding.as_mut() {
                        Some(handle) => handle.await,
                        None => std::future::pending().await,
                    }
                } => {
                    rebuilding = None;
                    match rebuilt {
                        Ok(Ok((mut engine, run))) => {
                            for batch in scored_meanwhile.drain(..) {
                                let mut rows = pipewatch_analytics::detect::rows_from_batch(&batch.batch);
                                engine.learn(&mut rows);
                            }
                            self.engine = engine;
                            self.metrics.rebuilds.inc();
                            tracing::info!(learned = run.learned, "baselines rebuilt from the learning window");
                        }
                        Ok(Err(e)) => {
                            scored_meanwhile.clear();
                            tracing::warn!(error = format!("{e:#}"), "baseline rebuild failed; keeping the current baselines");
                        }
                        Err(e) => {
                            scored_meanwhile.clear();
                            tracing::error!(error = %e, "baseline rebuild panicked; keeping the current baselines");
                        }
                    }
                }
            }
        }
        if let Some(handle) = rebuilding {
            handle.abort();
        }
    }

    fn score(&mut self, batch: &CommittedBatch) {
        let _span = tracing::info_span!(
            "score_batch",
            partition = %batch.partition.relative(),
            rows = batch.batch.num_rows()
        )
        .entered();
        // Scoring and the SQLite write are short CPU and disk work; keep
        // them off the reactor's other tasks.
        let findings: Vec<Finding> =
            tokio::task::block_in_place(|| self.engine.score_batch(&batch.batch));
        self.metrics.batches.inc();
        self.metrics.events.inc_by(batch.batch.num_rows() as u64);
        for finding in &findings {
            self.metrics
                .findings
                .get_or_create(&DetectorLabel {
                    detector: finding.detector.to_owned(),
                })
                .inc();
        }
        if !findings.is_empty() {
            let window =
                chrono::Duration::minutes(i64::from(self.engine.params().group_window_minutes));
            let recorded =
                tokio::task::block_in_place(|| self.store.record(&findings, window, Utc::now()));
            match recorded {
                Ok(summary) => {
                    for (outcome, count) in [
                        ("new", summary.new),
                        ("grouped", summary.grouped),
                        ("known", summary.known),
                    ] {
                        self.metrics
                            .alerts
                            .get_or_create(&OutcomeLabel { outcome })
                            .inc_by(count);
                    }
                    if let Some(notifier) = &self.notifier {
                        notifier.wake();
                    }
                    if summary.new > 0 {
                        tracing::info!(
                            new = summary.new,
                            grouped = summary.grouped,
                            "alerts raised"
                        );
                    }
                }
                // The events are in the lake; `pipewatch detect --since`
                // recovers the alerts idempotently.
                Err(e) => tracing::error!(
                    error = %e,
                    partition = %batch.partition.relative(),
                    "cannot store alerts for a committed batch; run `pipewatch detect --since` to recover them"
                ),
            }
        }
        self.metrics
            .commit_to_alert
            .observe(batch.committed_at.elapsed().as_secs_f64());
    }
}
