//! Background compaction for `pipewatch serve`: every `interval` the lake
//! is looked over and quiet partitions' small files are merged, one
//! partition at a time, until shutdown asks it to stop; `/metrics` counts
//! what each pass did.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pipewatch_ingest::lake::{CompactionPolicy, CompactionReport, Compactor};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What compaction has done since the process started.
#[derive(Debug)]
pub(crate) struct CompactionMetrics {
    passes: Family<OutcomeLabel, Counter>,
    files_merged: Counter,
    files_written: Counter,
    bytes_merged: Counter,
    bytes_written: Counter,
    last_success: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

impl CompactionMetrics {
    pub(crate) fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = CompactionMetrics {
            passes: Family::default(),
            files_merged: Counter::default(),
            files_written: Counter::default(),
            bytes_merged: Counter::default(),
            bytes_written: Counter::default(),
            last_success: Gauge::default(),
        };
        let sub = registry.sub_registry_with_prefix("pipewatch_compaction");
        sub.register(
            "passes",
            "Passes over the lake, by outcome (ok or failed)",
            metrics.passes.clone(),
        );
        sub.register(
            "files_merged",
            "Small files merged away",
            metrics.files_merged.clone(),
        );
        sub.register(
            "files_written",
            "Merged files written in their place",
            metrics.files_written.clone(),
        );
        sub.register(
            "merged_bytes",
            "Bytes of the files merged away",
            metrics.bytes_merged.clone(),
        );
        sub.register(
            "written_bytes",
            "Bytes of the merged files written",
            metrics.bytes_written.clone(),
        );
        sub.register(
            "last_success_timestamp_seconds",
            "When the last pass that finished without an error ended (Unix time)",
            metrics.last_success.clone(),
        );
        Arc::new(metrics)
    }

    fn passed(&self, report: &CompactionReport) {
        self.passes
            .get_or_create(&OutcomeLabel { outcome: "ok" })
            .inc();
        self.files_merged.inc_by(report.files_merged as u64);
        self.files_written.inc_by(report.files_written as u64);
        self.bytes_merged.inc_by(report.bytes_before);
        self.bytes_written.inc_by(report.bytes_after);
        self.last_success.set(chrono::Utc::now().timestamp());
    }

    fn failed(&self) {
        self.passes
            .get_or_create(&OutcomeLabel { outcome: "failed" })
            .inc();
    }
}

/// Starts the loop; it ends after the partition in hand once `stop` turns true.
pub(crate) fn start(
    data_dir: PathBuf,
    policy: CompactionPolicy,
    interval: Duration,
    metrics: Arc<CompactionMetrics>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stopping = Arc::new(AtomicBool::new(false));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                () = stopped(&mut stop) => break,
            }
            let (dir, flag) = (data_dir.clone(), stopping.clone());
            let pass = tokio::task::spawn_blocking(move || {
                Compactor::new(&dir, policy).compact_all(|| flag.load(Ordering::Acquire))
            });
            tokio::pin!(pass);
            let finished = tokio::select! {
                finished = &mut pass => finished,
                () = stopped(&mut stop) => {
                    stopping.store(true, Ordering::Release);
                    pass.await
                }
            };
            match finished {
                Ok(Ok(report)) => {
                    metrics.passed(&report);
                    if report.files_merged > 0 {
                        tracing::info!(
                            partitions = report.partitions,
                            files_merged = report.files_merged,
                            files_written = report.files_written,
                            rows = report.rows,
                            bytes_before = report.bytes_before,
                            bytes_after = report.bytes_after,
                            "compacted the lake"
                        );
                    }
                }
                // A failed merge leaves its journal; the next pass or start settles it.
                Ok(Err(e)) => {
                    metrics.failed();
                    tracing::error!(error = %e, "compaction failed; retrying next pass");
                }
                Err(e) => {
                    metrics.failed();
                    tracing::error!(error = %e, "the compaction task failed");
                }
            }
            if stopping.load(Ordering::Acquire) || *stop.borrow() {
                break;
            }
        }
    })
}

/// Resolves once shutdown is asked for (or the sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; only the moment matters.
    let _ = stop.wait_for(|stop| *stop).await;
}
