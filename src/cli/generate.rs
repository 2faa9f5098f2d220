//! `pipewatch generate`: a realistic organisation's CI/CD life in native
//! formats, with injected incidents listed in `labels.json`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use pipewatch_datasets::{GenerateOptions, generate};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Folder to write the native files and labels.json into.
    #[arg(long)]
    out: PathBuf,
    /// Days of activity.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Random seed; the same seed gives byte-identical output.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Size of the organisation relative to the default (40 people).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = GenerateOptions {
        days: args.days,
        seed: args.seed,
        scale: args.scale,
        ..GenerateOptions::default()
    };
    let summary = generate(&options, &args.out)
        .with_context(|| format!("cannot generate into {}", args.out.display()))?;
    for (path, records) in &summary.files {
        println!("{records:>9}  {}", path.display());
    }
    println!(
        "{} files, about {} events, {} labelled incidents in {}",
        summary.files.len(),
        summary.events_approx,
        summary.incidents,
        args.out.join("labels.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
