//! Shared fixtures for pipewatch's benchmarks: a realistic native corpus
//! produced by the demo generator, loaded once into memory.

use std::path::Path;

use pipewatch_datasets::{GenerateOptions, generate};
use pipewatch_ingest::source::file;

/// One native input held in memory.
#[derive(Debug)]
pub struct CorpusFile {
    pub origin: String,
    pub bytes: Vec<u8>,
}

/// A generated organisation's native files, decompressed in memory.
#[derive(Debug)]
pub struct Corpus {
    pub files: Vec<CorpusFile>,
    /// Bytes of native input (decompressed).
    pub bytes: u64,
}

impl Corpus {
    /// Generates `days` of activity into `scratch` and loads it.
    pub fn generate(scratch: &Path, days: u32) -> Result<Corpus, String> {
        let options = GenerateOptions {
            days,
            ..GenerateOptions::default()
        };
        generate(&options, scratch).map_err(|e| e.to_string())?;
        let (paths, problems) = file::expand(&[scratch.to_owned()]);
        if let Some(problem) = problems.first() {
            return Err(format!("{}: {}", problem.origin, problem.reason));
        }
        let mut files = Vec::new();
        let mut bytes = 0;
        for path in paths {
            if path.file_name().is_some_and(|n| n == "labels.json") {
                continue;
            }
            let read = file::read(&path).map_err(|p| format!("{}: {}", p.origin, p.reason))?;
            bytes += read.bytes.len() as u64;
            files.push(CorpusFile {
                origin: read.origin,
                bytes: read.bytes,
            });
        }
        Ok(Corpus { files, bytes })
    }
}

/// Events of a generated organisation as detectors see them, in time order,
/// read back from a lake the corpus was ingested into.
pub fn detector_rows(
    corpus: &Corpus,
    lake: &Path,
) -> Result<Vec<pipewatch_analytics::detect::EventRow>, String> {
    use futures::StreamExt;
    let mut ingestor = pipewatch_ingest::Ingestor::open(lake).map_err(|e| e.to_string())?;
    for file in &corpus.files {
        ingestor
            .ingest(
                None,
                &pipewatch_ingest::Input::new(&file.origin, &file.bytes),
            )
            .map_err(|e| e.to_string())?;
    }
    ingestor.finish().map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let service = pipewatch_analytics::QueryService::open(lake, Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut stream = service
            .stream("SELECT * FROM events ORDER BY event_time, event_id")
            .await
            .map_err(|e| e.to_string())?;
        let mut rows = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|e| e.to_string())?;
            rows.extend(pipewatch_analytics::detect::rows_from_batch(&batch));
        }
        Ok(rows)
    })
}

/// `rows` repeated until there are `target` of them: each copy is the same
/// organisation's activity moved later by the span of the original, with
/// fresh event ids, so baselines keep learning as over more weeks.
pub fn repeat_history(
    rows: &[pipewatch_analytics::detect::EventRow],
    target: usize,
) -> Vec<pipewatch_analytics::detect::EventRow> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Vec::new();
    };
    let span = last.event_time - first.event_time + chrono::Duration::days(1);
    let mut out = Vec::with_capacity(target);
    let mut copy = 0i32;
    while out.len() < target {
        for row in rows {
            if out.len() == target {
                break;
            }
            let mut row = row.clone();
            if copy > 0 {
                row.event_time += span * copy;
                row.event_id = format!("{}-{copy}", row.event_id);
            }
            out.push(row);
        }
        copy += 1;
    }
    out
}

/// The JSON records (one per line) of the corpus files whose name contains
/// `name`, e.g. `workflow_job` or `vault_audit`.
pub fn records(corpus: &Corpus, name: &str) -> Vec<serde_json::Value> {
    corpus
        .files
        .iter()
        .filter(|f| f.origin.contains(name))
        .flat_map(|f| f.bytes.split(|b| *b == b'\n'))
        .filter_map(|line| serde_json::from_slice(line).ok())
        .collect()
}

/// `count` records made from `templates` in turn, each made unique by
/// rewriting the id at the JSON `pointer` (a number is shifted, a string
/// suffixed), serialized one per element.
pub fn unique_records(
    templates: &[serde_json::Value],
    count: usize,
    pointer: &str,
    run: u64,
) -> Vec<Vec<u8>> {
    if templates.is_empty() {
        return Vec::new();
    }
    (0..count)
        .map(|n| {
            let mut record = templates[n % templates.len()].clone();
            if let Some(id) = record.pointer_mut(pointer) {
                *id = match &*id {
                    serde_json::Value::Number(number) => serde_json::Value::from(
                        number.as_u64().unwrap_or(0) % 1_000_000_000
                            + (run * 100_000_000 + n as u64 + 1) * 1_000_000_000,
                    ),
                    other => serde_json::Value::String(format!(
                        "{}-{run}-{n}",
                        other.as_str().unwrap_or("id")
                    )),
                };
            }
            serde_json::to_vec(&record).unwrap_or_default()
        })
        .collect()
}

/// Percentile `p` (0..=100) of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[std::time::Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Whether criterion (or a plain bench main) runs for measurement
/// (`cargo bench`) rather than once as a smoke test (`cargo test`).
pub fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}
