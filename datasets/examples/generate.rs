//! Generates the demo dataset without the main binary:
//! `cargo run -p pipewatch-datasets --example generate -- OUT_DIR [DAYS] [SEED] [SCALE]`.

use std::path::PathBuf;

use pipewatch_datasets::{GenerateOptions, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().unwrap_or_else(|| "demo-data".to_owned()));
    let mut options = GenerateOptions::default();
    if let Some(days) = args.next() {
        options.days = days.parse()?;
    }
    if let Some(seed) = args.next() {
        options.seed = seed.parse()?;
    }
    if let Some(scale) = args.next() {
        options.scale = scale.parse()?;
    }
    let summary = generate(&options, &out)?;
    let mut small = (0, 0);
    for (path, records) in &summary.files {
        if path.starts_with("sarif") || path.starts_with("conftest") {
            small = (small.0 + 1, small.1 + records);
        } else {
            println!("{records:>8}  {}", path.display());
        }
    }
    println!("{:>8}  sarif/ and conftest/ ({} files)", small.1, small.0);
    println!(
        "{} files, {} records, {} incidents",
        summary.files.len(),
        summary.events_approx,
        summary.incidents
    );
    Ok(())
}
