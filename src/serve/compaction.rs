//! Background compaction for `pipewatch serve`: every `interval` the lake
//! is looked over and quiet partitions' small files are merged, one
//! partition at a time, until shutdown asks it to stop.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pipewatch_ingest::lake::{CompactionPolicy, Compactor};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts the loop; it ends after the partition in hand once `stop` turns true.
pub(crate) fn start(
    data_dir: PathBuf,
    policy: CompactionPolicy,
    interval: Duration,
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
                Compactor::new(&dir, policy).compact_all(|| flag.load(Ordering::Acquire), |_, _| {})
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
                Ok(Ok(report)) if report.files_merged > 0 => tracing::info!(
                    partitions = report.partitions,
                    files_merged = report.files_merged,
                    files_written = report.files_written,
                    rows = report.rows,
                    bytes_before = report.bytes_before,
                    bytes_after = report.bytes_after,
                    "compacted the lake"
                ),
                Ok(Ok(_)) => {}
                // A failed merge leaves its journal; the next pass or start settles it.
                Ok(Err(e)) => tracing::error!(error = %e, "compaction failed; retrying next pass"),
                Err(e) => tracing::error!(error = %e, "the compaction task failed"),
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
