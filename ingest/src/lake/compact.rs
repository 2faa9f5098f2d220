//! Compaction: a partition's small files are merged into larger,
//! time-sorted ones. Each merge is journaled first, so a crash between
//! committing the merged file and removing its sources is finished (or
//! undone) by [`recover_compactions`] before anyone writes again.

use std::collections::{BTreeSet, HashSet};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use arrow_ord::sort::{SortColumn, lexsort_to_indices};
use arrow_select::concat::concat_batches;
use arrow_select::filter::filter_record_batch;
use arrow_select::take::take_record_batch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::statistics::Statistics;
use pipewatch_schema::{EVENTS_DIR, PartitionPath, file_schema};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::atomic::{commit_with, in_progress_path_of, process_gone, sync_dir};
use super::writer::{compacted_properties, fitted_to_rows};
use crate::IngestError;

/// Directory under the data directory holding one journal per partition
/// being compacted.
pub const COMPACTION_DIR: &str = "compaction";

/// Which files are merged, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Files holding at least half this many rows are left as they are;
    /// a merged file holds at most this many (it is built in memory).
    pub target_rows: usize,
    /// Partitions that received a file more recently than this are left
    /// for later, so a day still being written is not rewritten each time.
    pub quiet: Duration,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            target_rows: 1_000_000,
            quiet: Duration::from_secs(15 * 60),
        }
    }
}

/// What compaction did (or, for a plan, will do).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionReport {
    /// Partitions whose files were merged.
    pub partitions: usize,
    /// Files merged away.
    pub files_merged: usize,
    /// Merged files written in their place.
    pub files_written: usize,
    /// Rows in the merged files.
    pub rows: usize,
    /// Rows dropped because their event id was already stored in another
    /// source file (two writers racing on the same event).
    pub duplicates_dropped: usize,
    /// Bytes of the files merged away.
    pub bytes_before: u64,
    /// Bytes of the files written.
    pub bytes_after: u64,
    /// Partitions left alone because another process is compacting them
    /// (or just did).
    pub busy: usize,
}

impl CompactionReport {
    /// Adds another report's figures to this one.
    pub fn add(&mut self, other: &CompactionReport) {
        self.partitions += other.partitions;
        self.files_merged += other.files_merged;
        self.files_written += other.files_written;
        self.rows += other.rows;
        self.duplicates_dropped += other.duplicates_dropped;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
        self.busy += other.busy;
    }
}

/// The merges planned for one partition.
#[derive(Debug, Clone)]
pub struct PartitionPlan {
    /// The partition.
    pub partition: PartitionPath,
    /// Groups of file names (in the partition's directory), each merged into one file.
    pub groups: Vec<Vec<String>>,
    /// Rows the groups hold.
    pub rows: usize,
    /// Bytes the groups' files take.
    pub bytes: u64,
}

impl PartitionPlan {
    /// Files this plan merges away.
    pub fn files(&self) -> usize {
        self.groups.iter().map(Vec::len).sum()
    }
}

/// Merges small files of the lake under one data directory.
#[derive(Debug, Clone)]
pub struct Compactor {
    root: PathBuf,
    policy: CompactionPolicy,
}

struct Candidate {
    name: String,
    rows: usize,
    bytes: u64,
    first_time: i64,
}

/// Journals this process holds. A journal naming this process's id but
/// missing here was left by an earlier process that had the same id (the
/// first process of a container always does).
static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A journal this process took; dropping it lets recovery settle the
/// journal if it is still on disk (the work it describes failed).
struct Lease {
    journal: Journal,
    path: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        held().remove(&self.path);
    }
}

/// The merges of one partition, written down before the first merged file
/// is committed. Holding the journal is what lets a process compact the
/// partition: it is created exclusively.
#[derive(Debug, Serialize, Deserialize)]
struct Journal {
    pid: u32,
    partition: String,
    merges: Vec<Merge>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Merge {
    target: String,
    sources: Vec<String>,
}

impl Compactor {
    /// A compactor for the lake under `data_dir`.
    pub fn new(data_dir: &Path, policy: CompactionPolicy) -> Self {
        Compactor {
            root: data_dir.to_owned(),
            policy,
        }
    }

    /// The merges worth doing now, one plan per partition, oldest day first.
    pub fn plan(&self) -> Result<Vec<PartitionPlan>, IngestError> {
        let mut plans = Vec::new();
        for partition in partitions(&self.root)? {
            if let Some(plan) = self.plan_partition(partition)? {
                plans.push(plan);
            }
        }
        plans.sort_by_key(|p| (p.partition.date, p.partition.category));
        Ok(plans)
    }

    fn plan_partition(
        &self,
        partition: PartitionPath,
    ) -> Result<Option<PartitionPlan>, IngestError> {
        let dir = self.root.join(partition.relative());
        let mut files = Vec::new();
        let mut newest = SystemTime::UNIX_EPOCH;
        let entries = std::fs::read_dir(&dir).map_err(|e| IngestError::io(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| IngestError::io(&dir, e))?;
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "parquet") {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                // Merged away by another process since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(IngestError::io(&path, e)),
            };
            newest = newest.max(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH));
            files.push((path, meta.len()));
        }
        // Decided from the listing alone, so a pass over a compacted lake
        // reads no footers.
        let recent = newest.elapsed().map_or(true, |age| age < self.policy.quiet);
        if recent || files.len() < 2 {
            return Ok(None);
        }
        let mut candidates = Vec::new();
        for (path, bytes) in files {
            if let Some(candidate) = self.candidate(&path, bytes)? {
                candidates.push(candidate);
            }
        }
        if candidates.len() < 2 {
            return Ok(None);
        }
        candidates.sort_by(|a, b| {
            a.first_time
                .cmp(&b.first_time)
                .then_with(|| a.name.cmp(&b.name))
        });
        let mut plan = PartitionPlan {
            partition,
            groups: Vec::new(),
            rows: 0,
            bytes: 0,
        };
        let mut group: Vec<&Candidate> = Vec::new();
        let mut group_rows = 0;
        let close = |group: &mut Vec<&Candidate>, plan: &mut PartitionPlan| {
            if group.len() >= 2 {
                plan.rows += group.iter().map(|c| c.rows).sum::<usize>();
                plan.bytes += group.iter().map(|c| c.bytes).sum::<u64>();
                plan.groups
                    .push(group.iter().map(|c| c.name.clone()).collect());
            }
            group.clear();
        };
        for candidate in &candidates {
            if !group.is_empty() && group_rows + candidate.rows > self.policy.target_rows {
                close(&mut group, &mut plan);
                group_rows = 0;
            }
            group_rows += candidate.rows;
            group.push(candidate);
        }
        close(&mut group, &mut plan);
        Ok((!plan.groups.is_empty()).then_some(plan))
    }

    /// A file worth merging: small, and written with the current schema
    /// (files of an older schema are left as they were written).
    fn candidate(&self, path: &Path, bytes: u64) -> Result<Option<Candidate>, IngestError> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IngestError::io(path, e)),
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| IngestError::Parquet(format!("{}: {e}", path.display())))?;
        let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
        if rows.saturating_mul(2) >= self.policy.target_rows {
            return Ok(None);
        }
        let expected = file_schema();
        let same_schema = builder.schema().fields().len() == expected.fields().len()
            && builder
                .schema()
                .fields()
                .iter()
                .zip(expected.fields())
                .all(|(a, b)| {
                    a.name() == b.name()
                        && a.data_type() == b.data_type()
                        && a.is_nullable() == b.is_nullable()
                });
        if !same_schema {
            tracing::info!(file = %path.display(), "left uncompacted: written with another schema");
            return Ok(None);
        }
        let time_column = expected.index_of("event_time").unwrap_or(3);
        let first_time = builder
            .metadata()
            .row_groups()
            .first()
            .and_then(|group| match group.column(time_column).statistics() {
                Some(Statistics::Int64(s)) => s.min_opt().copied(),
                _ => None,
            })
            .unwrap_or(i64::MIN);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| IngestError::Config(format!("{} is not a UTF-8 name", path.display())))?
            .to_owned();
        Ok(Some(Candidate {
            name,
            rows,
            bytes,
            first_time,
        }))
    }

    /// Carries out one partition's plan: journals it, commits every merged
    /// file, then removes the files they replace. A partition another
    /// process is compacting is left alone (counted as `busy`).
    pub fn compact(&self, plan: &PartitionPlan) -> Result<CompactionReport, IngestError> {
        let Some(lease) = self.begin(plan)? else {
            return Ok(CompactionReport {
                busy: 1,
                ..CompactionReport::default()
            });
        };
        let report = self.write_merges(plan, &lease.journal)?;
        finish(&self.root, &lease.journal, &lease.path)?;
        Ok(report)
    }

    /// Plans and compacts every partition; `stop` is asked between partitions.
    pub fn compact_all(
        &self,
        mut stop: impl FnMut() -> bool,
    ) -> Result<CompactionReport, IngestError> {
        let mut total = CompactionReport::default();
        for plan in self.plan()? {
            if stop() {
                break;
            }
            total.add(&self.compact(&plan)?);
        }
        Ok(total)
    }

    /// Journals the plan and commits the merged files without removing
    /// their sources: the first half of [`compact`](Self::compact), which
    /// [`recover_compactions`] finishes after a crash.
    #[doc(hidden)]
    pub fn merge_without_removing(&self, plan: &PartitionPlan) -> Result<(), IngestError> {
        if let Some(lease) = self.begin(plan)? {
            self.write_merges(plan, &lease.journal)?;
        }
        Ok(())
    }

    /// Takes the partition's journal, or `None` while another live
    /// process holds it.
    fn begin(&self, plan: &PartitionPlan) -> Result<Option<Lease>, IngestError> {
        let dir = self.root.join(COMPACTION_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| IngestError::io(&dir, e))?;
        let path = dir.join(journal_name(plan.partition));
        let journal = Journal {
            pid: std::process::id(),
            partition: plan.partition.relative(),
            merges: plan
                .groups
                .iter()
                .map(|sources| Merge {
                    target: merged_name(sources),
                    sources: sources.clone(),
                })
                .collect(),
        };
        let text = serde_json::to_vec_pretty(&journal)
            .map_err(|e| IngestError::Config(format!("cannot encode a journal: {e}")))?;
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    file.write_all(&text)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| IngestError::io(&path, e))?;
                    sync_dir(&dir)?;
                    // Another process may have merged these files between
                    // the plan and the journal: then the plan is stale.
                    let partition_dir = self.root.join(plan.partition.relative());
                    let stale = plan
                        .groups
                        .iter()
                        .flatten()
                        .any(|name| !partition_dir.join(name).exists());
                    if stale {
                        remove_if_present(&path)?;
                        return Ok(None);
                    }
                    held().insert(path.clone());
                    return Ok(Some(Lease { journal, path }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !recover_journal(&self.root, &path)? {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(IngestError::io(&path, e)),
            }
        }
        Ok(None)
    }

    fn write_merges(
        &self,
        plan: &PartitionPlan,
        journal: &Journal,
    ) -> Result<CompactionReport, IngestError> {
        let dir = self.root.join(plan.partition.relative());
        let properties = compacted_properties();
        let mut report = CompactionReport {
            partitions: 1,
            ..CompactionReport::default()
        };
        for merge in &journal.merges {
            let mut batches = Vec::new();
            for source in &merge.sources {
                let path = dir.join(source);
                report.bytes_before += std::fs::metadata(&path)
                    .map_err(|e| IngestError::io(&path, e))?
                    .len();
                batches.extend(read_file(&path)?);
            }
            let (merged, dropped) = sort_and_dedup(&batches)?;
            let target = dir.join(&merge.target);
            commit_with(&target, |file| {
                let parquet = |e: parquet::errors::ParquetError| {
                    IngestError::Parquet(format!("{}: {e}", target.display()))
                };
                let properties = fitted_to_rows(
                    &properties,
                    std::slice::from_ref(&merged),
                    merged.num_rows(),
                );
                let mut writer = ArrowWriter::try_new(&mut *file, file_schema(), Some(properties))
                    .map_err(parquet)?;
                writer.write(&merged).map_err(parquet)?;
                writer.close().map_err(parquet)?;
                Ok(())
            })?;
            report.bytes_after += std::fs::metadata(&target)
                .map_err(|e| IngestError::io(&target, e))?
                .len();
            report.files_merged += merge.sources.len();
            report.files_written += 1;
            report.rows += merged.num_rows();
            report.duplicates_dropped += dropped;
        }
        Ok(report)
    }
}

/// Finishes or undoes compactions a crashed process left journaled:
/// sources of merged files that were committed are removed, so are the
/// temporary files of merged files that were not, and every other file
/// stays as it was. Journals of live processes are left alone. Returns how
/// many journals were settled.
pub fn recover_compactions(data_dir: &Path) -> Result<usize, IngestError> {
    let dir = data_dir.join(COMPACTION_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(IngestError::io(&dir, e)),
    };
    let mut settled = 0;
    for entry in entries {
        let path = entry.map_err(|e| IngestError::io(&dir, e))?.path();
        if path.extension().is_some_and(|x| x == "json") && recover_journal(data_dir, &path)? {
            settled += 1;
        }
    }
    Ok(settled)
}

/// Settles one journal if its process is gone; `false` while it lives.
fn recover_journal(root: &Path, path: &Path) -> Result<bool, IngestError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(IngestError::io(path, e)),
    };
    match serde_json::from_slice::<Journal>(&text) {
        Ok(journal) => {
            let live = if journal.pid == std::process::id() {
                held().contains(path)
            } else {
                !process_gone(journal.pid, path)
            };
            if live {
                return Ok(false);
            }
            tracing::warn!(partition = %journal.partition, "finishing a compaction an earlier process left");
            finish(root, &journal, path)?;
        }
        // The journal is written before any merged file, so a torn one
        // means nothing was merged yet.
        Err(_) => remove_if_present(path)?,
    }
    Ok(true)
}

/// Removes the sources of every committed merged file of `journal` and
/// what its process left of the merged files it did not commit, then the
/// journal itself (at `path`).
fn finish(root: &Path, journal: &Journal, path: &Path) -> Result<(), IngestError> {
    let dir = root.join(&journal.partition);
    for merge in &journal.merges {
        let target = dir.join(&merge.target);
        remove_if_present(&in_progress_path_of(&target, journal.pid))?;
        if !target.exists() {
            continue;
        }
        for source in &merge.sources {
            remove_if_present(&dir.join(source))?;
        }
    }
    if dir.exists() {
        sync_dir(&dir)?;
    }
    remove_if_present(path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), IngestError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(IngestError::io(path, e)),
        _ => Ok(()),
    }
}

fn journal_name(partition: PartitionPath) -> String {
    format!(
        "{}.{}.json",
        partition.category.as_str(),
        partition.date.format("%Y-%m-%d")
    )
}

/// `c-<hash of the source names>.parquet`: a name no writer chooses, the
/// same for the same sources.
fn merged_name(sources: &[String]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        hasher.update(source.as_bytes());
        hasher.update([0]);
    }
    format!("c-{}.parquet", hex::encode(&hasher.finalize()[..12]))
}

/// The partitions present under the data directory.
fn partitions(root: &Path) -> Result<Vec<PartitionPath>, IngestError> {
    let events = root.join(EVENTS_DIR);
    let mut found = Vec::new();
    let categories = match std::fs::read_dir(&events) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(IngestError::io(&events, e)),
    };
    for category in categories {
        let category = category.map_err(|e| IngestError::io(&events, e))?.path();
        let Ok(dates) = std::fs::read_dir(&category) else {
            continue;
        };
        for date in dates {
            let date = date.map_err(|e| IngestError::io(&category, e))?.path();
            let relative = date
                .strip_prefix(root)
                .ok()
                .and_then(|p| p.to_str())
                .map(|p| p.replace(std::path::MAIN_SEPARATOR, "/"));
            if let Some(partition) = relative.and_then(|r| PartitionPath::parse(&r).ok()) {
                found.push(partition);
            }
        }
    }
    Ok(found)
}

fn read_file(path: &Path) -> Result<Vec<RecordBatch>, IngestError> {
    let parquet =
        |e: parquet::errors::ParquetError| IngestError::Parquet(format!("{}: {e}", path.display()));
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(parquet)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(parquet)?;
    let schema = file_schema();
    reader
        .map(|batch| {
            let batch =
                batch.map_err(|e| IngestError::Parquet(format!("{}: {e}", path.display())))?;
            // The file's own schema may carry other metadata; the columns are checked equal.
            RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| IngestError::Parquet(format!("{}: {e}", path.display())))
        })
        .collect()
}

/// One batch sorted by `(event_time, event_id)` with repeated event ids
/// dropped, and how many were dropped.
fn sort_and_dedup(batches: &[RecordBatch]) -> Result<(RecordBatch, usize), IngestError> {
    let arrow = |e: arrow_schema::ArrowError| IngestError::Parquet(format!("merging: {e}"));
    let schema = file_schema();
    let all = concat_batches(&schema, batches).map_err(arrow)?;
    let column = |name: &str| {
        all.column_by_name(name)
            .cloned()
            .ok_or_else(|| IngestError::Parquet(format!("merging: no {name} column")))
    };
    let (time, id) = (column("event_time")?, column("event_id")?);
    let order = lexsort_to_indices(
        &[
            SortColumn {
                values: time,
                options: None,
            },
            SortColumn {
                values: id,
                options: None,
            },
        ],
        None,
    )
    .map_err(arrow)?;
    let sorted = take_record_batch(&all, &order).map_err(arrow)?;
    let ids = sorted
        .column_by_name("event_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| IngestError::Parquet("merging: event_id is not text".into()))?;
    let mut seen = HashSet::with_capacity(ids.len());
    let keep: BooleanArray = (0..ids.len())
        .map(|i| Some(ids.is_null(i) || seen.insert(ids.value(i))))
        .collect();
    let dropped = keep.false_count();
    if dropped == 0 {
        return Ok((sorted, 0));
    }
    let kept = filter_record_batch(&sorted, &keep).map_err(arrow)?;
    Ok((kept, dropped))
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use chrono::{TimeZone, Utc};
    use pipewatch_schema::{Category, Event, EventBatchBuilder};

    use super::*;

    /// A batch of one event per `(second, source id)`, each keeping its id in `raw`.
    fn batch(rows: &[(i64, &str)]) -> RecordBatch {
        let mut builder = EventBatchBuilder::new();
        for &(second, id) in rows {
            let time = Utc
                .timestamp_opt(1_760_000_000 + second, 0)
                .single()
                .expect("time");
            let raw = serde_json::json!({ "id": id });
            let event = Event::new("test", id, time, Category::PipelineJob, "x", raw);
            builder.append(&event).expect("append");
        }
        builder.finish().expect("batch")
    }

    fn texts(batch: &RecordBatch, name: &str) -> Vec<String> {
        let column = batch.column_by_name(name).expect("column");
        column
            .as_string::<i32>()
            .iter()
            .map(|v| v.expect("value").to_owned())
            .collect()
    }

    #[test]
    fn merged_rows_come_sorted_by_time_once_each_with_their_own_values() {
        // Event "a" was stored by two writers racing.
        let first = batch(&[(30, "c"), (10, "a"), (20, "b")]);
        let second = batch(&[(15, "d"), (10, "a"), (40, "e")]);
        let (merged, dropped) = sort_and_dedup(&[first, second]).expect("merges");
        assert_eq!(dropped, 1);
        assert_eq!(texts(&merged, "source_event_id"), ["a", "d", "b", "c", "e"]);
        let raws: Vec<String> = texts(&merged, "raw");
        for (id, raw) in texts(&merged, "source_event_id").iter().zip(&raws) {
            let value: serde_json::Value = serde_json::from_str(raw).expect("raw is JSON");
            assert_eq!(value["id"], id.as_str(), "raw follows its row");
        }
        assert_eq!(merged.schema(), file_schema());

        let (nothing, dropped) = sort_and_dedup(&[]).expect("merges");
        assert_eq!((nothing.num_rows(), dropped), (0, 0));
    }
}
