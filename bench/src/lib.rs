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

/// Ingests `corpus` into a lake at `lake`; returns the events stored.
pub fn ingest_corpus(corpus: &Corpus, lake: &Path) -> Result<u64, String> {
    let mut ingestor = pipewatch_ingest::Ingestor::open(lake).map_err(|e| e.to_string())?;
    for file in &corpus.files {
        ingestor
            .ingest(
                None,
                &pipewatch_ingest::Input::new(&file.origin, &file.bytes),
            )
            .map_err(|e| e.to_string())?;
    }
    let summary = ingestor.finish().map_err(|e| e.to_string())?;
    Ok(summary.total().accepted as u64)
}

/// Events of a generated organisation as detectors see them, in time order,
/// read back from a lake the corpus was ingested into.
pub fn detector_rows(
    corpus: &Corpus,
    lake: &Path,
) -> Result<Vec<pipewatch_analytics::detect::EventRow>, String> {
    use futures::StreamExt;
    ingest_corpus(corpus, lake)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let service = pipewatch_analytics::QueryService::open_for_history(lake, Default::default())
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

/// Ingests `corpus` into a lake at `lake`, runs detection over it (alerts
/// in the control database, as `pipewatch demo` leaves them) and returns
/// the number of events stored.
pub fn demo_lake(corpus: &Corpus, lake: &Path) -> Result<u64, String> {
    let events = ingest_corpus(corpus, lake)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        use pipewatch_analytics::detect::{DetectConfig, Engine};
        let service = pipewatch_analytics::QueryService::open_for_history(lake, Default::default())
            .await
            .map_err(|e| e.to_string())?;
        let mut store =
            pipewatch_analytics::alerts::AlertStore::open(lake).map_err(|e| e.to_string())?;
        let mut engine = Engine::new(&DetectConfig::default()).map_err(|e| e.to_string())?;
        let window = chrono::Duration::minutes(i64::from(engine.params().group_window_minutes));
        let mut failure = None;
        engine
            .backfill(&service, None, |findings, _| {
                if let Err(e) = store.record(findings, window, chrono::Utc::now()) {
                    failure.get_or_insert(e.to_string());
                }
            })
            .await
            .map_err(|e| e.to_string())?;
        failure.map_or(Ok(()), Err)
    })?;
    Ok(events)
}

/// How many copies of an organisation's span are laid side by side in
/// time when a lake is grown; the rest become more organisations.
const GROWN_SPANS: u32 = 6;

/// Writes a lake at `out` holding at least `target` events: the lake at
/// `base` copied over and over, each copy moved later by a multiple of the
/// base's span (six spans in all) or renamed as another organisation (its
/// orgs and repositories prefixed), with fresh event ids. One file per
/// partition, as compaction leaves a lake. The control database (alerts,
/// users) is copied as it is. Returns the number of events written.
pub fn grow_lake(base: &Path, out: &Path, target: u64) -> Result<u64, String> {
    use std::collections::BTreeMap;

    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use pipewatch_schema::{DataFilePath, PartitionPath};

    let mut partitions: BTreeMap<PartitionPath, Vec<arrow::record_batch::RecordBatch>> =
        BTreeMap::new();
    let mut pending = vec![base.join(pipewatch_schema::EVENTS_DIR)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "parquet") {
                continue;
            }
            let relative = path
                .strip_prefix(base)
                .map_err(|e| e.to_string())?
                .to_string_lossy()
                .replace('\\', "/");
            let file = DataFilePath::parse(&relative).map_err(|e| e.to_string())?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(&path).map_err(|e| e.to_string())?,
            )
            .and_then(|b| b.build())
            .map_err(|e| format!("{}: {e}", path.display()))?;
            let batches = partitions.entry(file.partition).or_default();
            for batch in reader {
                batches.push(batch.map_err(|e| e.to_string())?);
            }
        }
    }
    let base_events: u64 = partitions
        .values()
        .flatten()
        .map(|b| b.num_rows() as u64)
        .sum();
    if base_events == 0 {
        return Err(format!("no events in {}", base.display()));
    }
    let (Some(first), Some(last)) = (
        partitions.keys().map(|p| p.date).min(),
        partitions.keys().map(|p| p.date).max(),
    ) else {
        return Err("no partitions".into());
    };
    let span_days = (last - first).num_days() + 1;
    let copies = target.div_ceil(base_events).max(1);
    let per_span = copies.div_ceil(u64::from(GROWN_SPANS));
    let mut written = 0u64;
    for shift in 0..GROWN_SPANS {
        let first_copy = u64::from(shift) * per_span;
        let last_copy = (first_copy + per_span).min(copies);
        if first_copy >= last_copy {
            break;
        }
        for (partition, batches) in &partitions {
            let date = partition.date + chrono::Duration::days(span_days * i64::from(shift));
            let target_partition = PartitionPath::new(partition.category, date);
            let file = DataFilePath::new(target_partition, "grown").map_err(|e| e.to_string())?;
            let path = out.join(file.relative());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
            }
            let handle = std::fs::File::create(&path).map_err(|e| e.to_string())?;
            let schema = batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| "empty partition".to_owned())?;
            // Copies leave empty the columns their source leaves empty, so
            // the source's batches decide the file's settings, as they do
            // for a file `pipewatch ingest` writes.
            let source_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let properties = pipewatch_ingest::lake::fitted_to_rows(
                &pipewatch_ingest::lake::writer_properties(),
                batches,
                source_rows * (last_copy - first_copy) as usize,
            );
            let mut writer = ArrowWriter::try_new(handle, schema, Some(properties))
                .map_err(|e| e.to_string())?;
            for copy in first_copy..last_copy {
                let organisation = copy - first_copy;
                for batch in batches {
                    let moved = moved_copy(batch, shift, span_days, copy, organisation)?;
                    written += moved.num_rows() as u64;
                    writer.write(&moved).map_err(|e| e.to_string())?;
                }
            }
            writer.close().map_err(|e| e.to_string())?;
        }
    }
    let control = base.join(pipewatch_analytics::alerts::CONTROL_DB);
    if control.exists() {
        std::fs::copy(&control, out.join(pipewatch_analytics::alerts::CONTROL_DB))
            .map_err(|e| e.to_string())?;
    }
    Ok(written)
}

/// One copy of `batch`: times moved `shift` spans later, ids suffixed with
/// the copy, orgs and repositories prefixed with the organisation (none
/// for the first, so the base organisation stays as it was).
fn moved_copy(
    batch: &arrow::record_batch::RecordBatch,
    shift: u32,
    span_days: i64,
    copy: u64,
    organisation: u64,
) -> Result<arrow::record_batch::RecordBatch, String> {
    use std::sync::Arc;

    use arrow::array::{Array, ArrayRef, StringArray, TimestampMicrosecondArray};

    let schema = batch.schema();
    let offset = i64::from(shift) * span_days * 86_400_000_000;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let strings = column.as_any().downcast_ref::<StringArray>();
        let replaced: ArrayRef = match (field.name().as_str(), strings) {
            ("event_time", _) => {
                let times = column
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .ok_or("event_time is not a timestamp in microseconds")?;
                let moved: TimestampMicrosecondArray =
                    times.iter().map(|t| t.map(|t| t + offset)).collect();
                Arc::new(moved.with_timezone_opt(times.timezone().map(str::to_owned)))
            }
            ("event_id", Some(ids)) if copy > 0 => Arc::new(
                ids.iter()
                    .map(|id| id.map(|id| format!("{id}-{copy}")))
                    .collect::<StringArray>(),
            ),
            ("org" | "repo", Some(names)) if organisation > 0 => Arc::new(
                names
                    .iter()
                    .map(|name| name.map(|name| format!("o{organisation}-{name}")))
                    .collect::<StringArray>(),
            ),
            _ => column.clone(),
        };
        columns.push(replaced);
    }
    arrow::record_batch::RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}
