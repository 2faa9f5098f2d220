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
