//! `pipewatch ingest`: files, folders or stdin into the lake, with a
//! progress bar on a terminal and a summary per format.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pipewatch_ingest::source::file;
use pipewatch_ingest::{Format, IngestError, IngestSummary, Ingestor};

use super::DataDir;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    data: DataDir,
    /// Force a format instead of detecting it (see `pipewatch formats`).
    #[arg(long, value_parser = parse_format)]
    format: Option<Format>,
    /// Events held in memory: once this many are queued, the days and
    /// categories holding the most are committed to the lake.
    #[arg(long, env = "PIPEWATCH_BATCH_EVENTS", default_value_t = pipewatch_ingest::pipeline::DEFAULT_BATCH_EVENTS)]
    batch_events: usize,
    /// Threads decoding the pieces of a large file (default: one per core,
    /// at most 4); 1 decodes on the thread that commits, using the least CPU
    /// per event.
    #[arg(long, env = "PIPEWATCH_DECODE_THREADS", value_parser = clap::value_parser!(u16).range(1..))]
    decode_threads: Option<u16>,
    /// Files, directories (read recursively) or `-` for standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn parse_format(name: &str) -> Result<Format, String> {
    Format::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Format::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format `{name}`; one of: {}", names.join(", "))
    })
}

/// What an ingest run did, for the caller to print.
pub(crate) struct Outcome {
    pub(crate) summary: IngestSummary,
    pub(crate) unreadable: Vec<file::Unreadable>,
}

/// Ingests `paths` into `data_dir`; shared with `pipewatch demo`.
pub(crate) fn ingest_paths(
    data_dir: &std::path::Path,
    format: Option<Format>,
    paths: &[PathBuf],
    batch_events: usize,
    decode_threads: Option<u16>,
) -> anyhow::Result<Outcome> {
    let (files, mut unreadable) = file::expand(paths);
    let mut ingestor = Ingestor::open(data_dir)
        .with_context(|| format!("cannot open the data directory {}", data_dir.display()))?
        .with_batch_events(batch_events);
    if let Some(threads) = decode_threads {
        ingestor = ingestor.with_decode_threads(threads.into());
    }
    let total_bytes: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let progress = super::progress_bar(
        total_bytes,
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
    );
    for path in &files {
        let opened = match file::open(path) {
            Ok(opened) => opened,
            Err(problem) => {
                unreadable.push(problem);
                continue;
            }
        };
        progress.set_message(opened.origin.clone());
        // The bar counts bytes as stored, so a compressed file advances as
        // its compressed bytes are read.
        let start = progress.position();
        let stream = match opened.stream() {
            Ok(stream) => stream,
            Err(error) => {
                unreadable.push(file::Unreadable {
                    origin: opened.origin.clone(),
                    reason: error.to_string(),
                });
                continue;
            }
        };
        let result = ingestor.ingest_stream(format, stream, |_| {
            progress.set_position(start + opened.stored_read());
        });
        match result {
            Ok(_) => {}
            // What came before the failure is queued; the next file goes on.
            Err(IngestError::Read {
                kept_bytes, source, ..
            }) => unreadable.push(file::Unreadable {
                origin: opened.origin.clone(),
                reason: if kept_bytes == 0 {
                    source.to_string()
                } else {
                    format!("{source}; the records of its first {kept_bytes} bytes were stored")
                },
            }),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("cannot store what {} holds", opened.origin));
            }
        }
        progress.set_position(start + opened.stored_bytes.unwrap_or_else(|| opened.stored_read()));
    }
    let summary = ingestor.finish().context("cannot commit to the lake")?;
    progress.finish_and_clear();
    Ok(Outcome {
        summary,
        unreadable,
    })
}

/// Prints the per-format summary.
pub(crate) fn print_summary(outcome: &Outcome) {
    println!(
        "{:<16} {:>7} {:>10} {:>11} {:>14}",
        "format", "inputs", "accepted", "duplicates", "dead-lettered"
    );
    for (format, t) in &outcome.summary.formats {
        println!(
            "{:<16} {:>7} {:>10} {:>11} {:>14}",
            format, t.inputs, t.accepted, t.duplicates, t.dead_lettered
        );
    }
    let t = outcome.summary.total();
    println!(
        "{:<16} {:>7} {:>10} {:>11} {:>14}",
        "total", t.inputs, t.accepted, t.duplicates, t.dead_lettered
    );
    for problem in &outcome.unreadable {
        eprintln!(
            "warning: cannot read {}: {}",
            problem.origin, problem.reason
        );
    }
    if t.dead_lettered > 0 {
        eprintln!(
            "note: {} records went to the dead-letter store; query them with \
             `pipewatch sql \"SELECT * FROM dead_letters\"`",
            t.dead_lettered
        );
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let outcome = ingest_paths(
        &args.data.data_dir,
        args.format,
        &args.paths,
        args.batch_events,
        args.decode_threads,
    )?;
    print_summary(&outcome);
    let total = outcome.summary.total();
    // Failing only when nothing could be read keeps partial imports useful:
    // bad records are in the dead-letter store, named and counted.
    if total.inputs == 0 {
        eprintln!("error: nothing could be read");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
