//! `pipewatch compact`: merges each partition's small files into larger,
//! time-sorted ones, so scans open fewer files and compress better. Safe
//! beside running writers and readers; `serve` also does it in the background.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pipewatch_ingest::lake::{CompactionPolicy, CompactionReport, Compactor, recover_compactions};

use super::DataDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Rows a merged file holds at most; files holding half this or more
    /// are left as they are. Merging holds one file's rows in memory.
    #[arg(long, default_value_t = CompactionPolicy::default().target_rows)]
    target_rows: usize,
    /// Leave partitions that received a file within this many minutes.
    #[arg(long, default_value_t = 0)]
    quiet_minutes: u64,
    /// Print what would be merged, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data_dir = &args.data.data_dir;
    anyhow::ensure!(
        args.target_rows >= 2,
        "--target-rows must be at least 2, not {}",
        args.target_rows
    );
    if !data_dir.exists() {
        anyhow::bail!("no data directory at {}", data_dir.display());
    }
    let settled = recover_compactions(data_dir).context("cannot settle earlier compactions")?;
    if settled > 0 {
        eprintln!("finished {settled} compaction(s) an interrupted process left");
    }
    let compactor = Compactor::new(
        data_dir,
        CompactionPolicy {
            target_rows: args.target_rows,
            quiet: Duration::from_secs(args.quiet_minutes * 60),
        },
    );
    let plans = compactor.plan().context("cannot plan the compaction")?;
    let files: usize = plans.iter().map(|p| p.files()).sum();
    if plans.is_empty() {
        println!("nothing to compact: no partition has two or more small files");
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        for plan in &plans {
            println!(
                "{}: {} files ({} rows, {}) into {}",
                plan.partition.relative(),
                plan.files(),
                plan.rows,
                megabytes(plan.bytes),
                plan.groups.len()
            );
        }
        println!(
            "would merge {files} files in {} partitions; run without --dry-run to do it",
            plans.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let progress = super::progress_bar(
        files as u64,
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files merged {msg}",
    );
    let mut total = CompactionReport::default();
    for plan in &plans {
        progress.set_message(plan.partition.relative());
        let report = compactor
            .compact(plan)
            .with_context(|| format!("cannot compact {}", plan.partition.relative()))?;
        progress.inc(plan.files() as u64);
        total.add(&report);
    }
    progress.finish_and_clear();
    println!(
        "compacted {} partitions: {} files into {} ({} rows), {} -> {}",
        total.partitions,
        total.files_merged,
        total.files_written,
        total.rows,
        megabytes(total.bytes_before),
        megabytes(total.bytes_after)
    );
    if total.duplicates_dropped > 0 {
        println!(
            "dropped {} rows stored twice by writers racing on the same events",
            total.duplicates_dropped
        );
    }
    if total.busy > 0 {
        println!(
            "left {} partitions another process is compacting",
            total.busy
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
