//! Turns redacted events into committed Parquet files, one per partition
//! touched by a batch, named after their content so that writing the same
//! batch again names the same file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arrow_array::{Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{DEFAULT_PAGE_SIZE, EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use pipewatch_schema::{
    DataFilePath, Event, EventBatchBuilder, EventId, PartitionPath, file_schema,
};
use sha2::{Digest, Sha256};

use super::atomic::{clean_leftovers, commit_with};
use super::index::EventIdIndex;
use crate::IngestError;

/// Rows per Parquet row group: large enough for good compression, small
/// enough that statistics prune well.
const ROW_GROUP_ROWS: usize = 64 * 1024;

/// zstd level of `raw` in merged files. Compaction runs off the ingest
/// path, so it spends more CPU for smaller files; zstd decodes as fast at
/// any level.
const COMPACTED_RAW_ZSTD_LEVEL: i32 = 7;

/// Page size of `raw` in merged files. Each page is compressed on its own,
/// so larger pages let zstd find the repeats between records further
/// apart: at 4 MiB, level 7 stores `raw` a little smaller than level 9 did
/// on 1 MiB pages, for about a sixth less CPU per merge (8 MiB saved
/// little more). A lookup of one row decompresses one such page of `raw`.
const COMPACTED_RAW_PAGE_BYTES: usize = 4 << 20;

/// Id columns an analyst looks rows up by.
const BLOOM_FILTER_COLUMNS: [&str; 4] = [
    "event_id",
    "source_event_id",
    "cicd_pipeline_run_id",
    "trace_id",
];

/// Columns whose value no other row of a file shares.
const UNIQUE_ID_COLUMNS: [&str; 3] = ["event_id", "source_event_id", "span_id"];

/// Columns whose dictionary-encoded pages are already compact: a few
/// hundred distinct values per file at most (names, run ids, the kinds and
/// outcomes queries filter on), or small numbers. zstd shrank them by about
/// a tenth more than LZ4 did, a fraction of a percent of a file, but a zstd
/// chunk costs a compressor and a decompressor context each time it is
/// written or read, which scans of many files paid for on every chunk.
const LZ4_COLUMNS: [&str; 19] = [
    "source",
    "action",
    "outcome",
    "org",
    "repo",
    "actor",
    "actor_kind",
    "target_type",
    "identity_kind",
    "cicd_pipeline_run_id",
    "cicd_pipeline_task_name",
    "cicd_worker_id",
    "runner_hosting",
    "runner_ephemeral",
    "cpu_seconds",
    "egress_destination",
    "target_name",
    "user_agent_original",
    "vcs_ref_is_default",
];

/// Writer settings shared by every lake file: zstd (LZ4 for
/// `LZ4_COLUMNS`), page-level statistics, bloom filters on the id
/// columns, declared sort order by `event_time`.
pub fn writer_properties() -> WriterProperties {
    lake_properties(ZstdLevel::default(), DEFAULT_PAGE_SIZE)
}

/// [`writer_properties`] with `raw` compressed harder in larger pages, for
/// merged files.
pub(crate) fn compacted_properties() -> WriterProperties {
    let level = ZstdLevel::try_new(COMPACTED_RAW_ZSTD_LEVEL).unwrap_or_default();
    lake_properties(level, COMPACTED_RAW_PAGE_BYTES)
}

/// `properties` fitted to one file of `rows` rows, whose columns hold
/// values only where `batches` do. Each flat column that holds
/// no value in `batches` is written uncompressed and without a bloom
/// filter: such a chunk is a few bytes of levels either way, but each
/// compressed chunk costs a fresh zstd context, and most columns of a
/// category's file are empty (about 60 % of a freshly ingested lake's
/// chunks). Bloom filters are sized for a row group of the file instead of
/// the writer's default of a million values, which each filter allocated
/// and then folded down.
pub fn fitted_to_rows(
    properties: &WriterProperties,
    batches: &[RecordBatch],
    rows: usize,
) -> WriterProperties {
    let schema = file_schema();
    let empty = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, field)| !field.data_type().is_nested())
        .filter(|(i, _)| {
            batches.iter().all(|batch| {
                batch
                    .columns()
                    .get(*i)
                    .is_some_and(|column| column.null_count() == column.len())
            })
        })
        .map(|(_, field)| ColumnPath::from(field.name().as_str()));
    let largest_row_group = rows.clamp(1, ROW_GROUP_ROWS);
    let sized = BLOOM_FILTER_COLUMNS.into_iter().fold(
        properties.clone().into_builder(),
        |builder, name| {
            builder.set_column_bloom_filter_max_ndv(name.into(), largest_row_group as u64)
        },
    );
    empty
        .fold(sized, |builder, column| {
            builder
                .set_column_compression(column.clone(), Compression::UNCOMPRESSED)
                .set_column_bloom_filter_enabled(column, false)
        })
        .build()
}

fn lake_properties(raw_level: ZstdLevel, raw_page_bytes: usize) -> WriterProperties {
    let schema = file_schema();
    let event_time = schema.index_of("event_time").unwrap_or(3);
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: event_time as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_created_by(concat!("pipewatch ", env!("CARGO_PKG_VERSION")).to_owned());
    for id_column in BLOOM_FILTER_COLUMNS {
        builder = builder
            .set_column_bloom_filter_enabled(id_column.into(), true)
            .set_column_bloom_filter_fpp(id_column.into(), 0.01);
    }
    // Ids unique to their row gain nothing from a dictionary but its
    // indices: without one, files came out about 3 % smaller.
    for unique_column in UNIQUE_ID_COLUMNS {
        builder = builder.set_column_dictionary_enabled(unique_column.into(), false);
    }
    for column in LZ4_COLUMNS {
        builder = builder.set_column_compression(column.into(), Compression::LZ4_RAW);
    }
    // The raw record is large free text: dictionary encoding only costs there.
    builder
        .set_column_compression("raw".into(), Compression::ZSTD(raw_level))
        .set_column_dictionary_enabled("raw".into(), false)
        .set_column_data_page_size_limit("raw".into(), raw_page_bytes)
        .set_column_statistics_enabled("raw".into(), EnabledStatistics::None)
        .build()
}

/// What one commit stored.
#[derive(Debug, Default, Clone)]
pub struct CommitReport {
    /// Events written.
    pub written: usize,
    /// Events skipped because their id was already stored (or repeated in the batch).
    pub duplicates: usize,
    /// Files committed, relative to the data directory.
    pub files: Vec<String>,
    /// Written and duplicate counts per `source`.
    pub per_source: BTreeMap<String, (usize, usize)>,
    /// Ids of the events skipped as duplicates.
    pub duplicate_ids: Vec<EventId>,
    /// What was written, per partition, in [`file_schema`] order: the feed
    /// of committed batches hands these to the detectors.
    pub batches: Vec<(PartitionPath, RecordBatch)>,
}

/// Writes batches of events into the lake under a data directory.
#[derive(Debug)]
pub struct LakeWriter {
    root: PathBuf,
    index: EventIdIndex,
    properties: WriterProperties,
}

impl LakeWriter {
    /// Opens the lake under `data_dir`, removing what an interrupted
    /// writer left behind.
    pub fn open(data_dir: &Path) -> Result<Self, IngestError> {
        std::fs::create_dir_all(data_dir).map_err(|e| IngestError::io(data_dir, e))?;
        let removed = clean_leftovers(&data_dir.join(pipewatch_schema::EVENTS_DIR))?;
        if removed > 0 {
            tracing::warn!(removed, "removed files left by an interrupted write");
        }
        let settled = super::compact::recover_compactions(data_dir)?;
        if settled > 0 {
            tracing::warn!(settled, "settled compactions an interrupted process left");
        }
        Ok(LakeWriter {
            root: data_dir.to_owned(),
            index: EventIdIndex::default(),
            properties: writer_properties(),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.root
    }

    /// Commits events: groups them by partition, drops ids already stored,
    /// sorts by time and writes one file per partition. Each file is
    /// durable when this returns.
    pub fn commit(&mut self, events: Vec<Event>) -> Result<CommitReport, IngestError> {
        self.commit_named(&events, None)
    }

    /// Like [`commit`](Self::commit), but files are named `<stem>` instead
    /// of after their content. Sources that replay by position (Kafka
    /// offset ranges) name files after the position, so a replay of the
    /// same range rewrites the same file.
    pub fn commit_named(
        &mut self,
        events: &[Event],
        stem: Option<&str>,
    ) -> Result<CommitReport, IngestError> {
        let mut report = CommitReport::default();
        // Events are large: grouping and sorting references moves a pointer
        // where moving the event would copy a kilobyte.
        let mut partitions: BTreeMap<PartitionPath, Vec<&Event>> = BTreeMap::new();
        for event in events {
            let partition = PartitionPath::new(event.category, event.event_time.date_naive());
            partitions.entry(partition).or_default().push(event);
        }
        for (partition, mut events) in partitions {
            let stored = self.index.partition(&self.root, partition)?;
            events.retain(|e| {
                let fresh = stored.insert(e.event_id.as_str().to_owned());
                let counts = match report.per_source.get_mut(&e.source) {
                    Some(counts) => counts,
                    None => report.per_source.entry(e.source.clone()).or_default(),
                };
                if fresh {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                    report.duplicates += 1;
                    report.duplicate_ids.push(e.event_id.clone());
                }
                fresh
            });
            if events.is_empty() {
                continue;
            }
            events.sort_by(|a, b| {
                a.event_time
                    .cmp(&b.event_time)
                    .then_with(|| a.event_id.cmp(&b.event_id))
            });
            let written = write_partition(&self.root, &self.properties, partition, &events, stem);
            let (file, batches) = match written {
                Ok(written) => written,
                Err(e) => {
                    // Forget the ids we optimistically recorded: they are not on disk.
                    for event in &events {
                        self.index.forget(partition, event.event_id.as_str());
                        if let Some(counts) = report.per_source.get_mut(&event.source) {
                            counts.0 = counts.0.saturating_sub(1);
                        }
                    }
                    return Err(e);
                }
            };
            self.index.note_file(partition, &file);
            report.written += events.len();
            report.files.push(file);
            report
                .batches
                .extend(batches.into_iter().map(|batch| (partition, batch)));
        }
        Ok(report)
    }
}

fn write_partition(
    root: &Path,
    properties: &WriterProperties,
    partition: PartitionPath,
    events: &[&Event],
    stem: Option<&str>,
) -> Result<(String, Vec<RecordBatch>), IngestError> {
    let stem = match stem {
        Some(stem) => stem.to_owned(),
        None => {
            let mut hasher = Sha256::new();
            for event in events {
                hasher.update(event.event_id.as_str().as_bytes());
            }
            let digest = hex::encode(&hasher.finalize()[..12]);
            let first = events
                .first()
                .map(|e| e.event_time.format("%H%M%S").to_string())
                .unwrap_or_default();
            format!("{first}-{digest}")
        }
    };
    let path = DataFilePath::new(partition, stem)?;
    let target = root.join(path.relative());

    let mut batches = Vec::with_capacity(events.len() / ROW_GROUP_ROWS + 1);
    for chunk in events.chunks(ROW_GROUP_ROWS) {
        let raw_bytes = chunk.iter().map(|e| e.raw.json_len()).sum();
        let mut builder = EventBatchBuilder::with_capacity(chunk.len(), raw_bytes);
        for event in chunk {
            builder.append(event)?;
        }
        batches.push(builder.finish()?);
    }
    commit_with(&target, |file| {
        let parquet = |e: parquet::errors::ParquetError| {
            IngestError::Parquet(format!("{}: {e}", target.display()))
        };
        let properties = fitted_to_rows(properties, &batches, events.len());
        let mut writer =
            ArrowWriter::try_new(&mut *file, file_schema(), Some(properties)).map_err(parquet)?;
        for batch in &batches {
            writer.write(batch).map_err(parquet)?;
        }
        writer.close().map_err(parquet)?;
        Ok(())
    })?;
    Ok((path.relative(), batches))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_files_compress_only_raw_harder_and_in_larger_pages() {
        let ingested = writer_properties();
        let merged = compacted_properties();
        let raw = ColumnPath::from("raw");
        assert_eq!(
            merged.compression(&raw),
            Compression::ZSTD(ZstdLevel::try_new(COMPACTED_RAW_ZSTD_LEVEL).expect("valid level"))
        );
        assert_ne!(merged.compression(&raw), ingested.compression(&raw));
        assert_eq!(merged.column_data_page_size_limit(&raw), 4 << 20);
        assert_eq!(
            ingested.column_data_page_size_limit(&raw),
            DEFAULT_PAGE_SIZE
        );
        for other in ["event_id", "actor", "event_time"].map(ColumnPath::from) {
            assert_eq!(merged.compression(&other), ingested.compression(&other));
            assert_eq!(
                merged.column_data_page_size_limit(&other),
                ingested.column_data_page_size_limit(&other)
            );
        }
    }
}
