//! Which event ids each partition already holds, read from its Parquet
//! files, so replays and re-ingests store nothing twice. Files that other
//! writers sharing the data directory commit meanwhile are read on the next
//! touch of the partition.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::path::Path;

use ahash::AHashSet;
use arrow_array::{Array, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipewatch_schema::PartitionPath;

use crate::IngestError;

/// Event ids per partition, and the files they were read from.
#[derive(Debug, Default)]
pub(crate) struct EventIdIndex {
    partitions: HashMap<PartitionPath, PartitionIds>,
}

#[derive(Debug, Default)]
struct PartitionIds {
    // Ids are looked up once per event written; aHash is several times
    // cheaper than SipHash here and still keyed per process.
    ids: AHashSet<String>,
    files: HashSet<OsString>,
}

impl EventIdIndex {
    /// The ids stored in `partition`, including those of files committed
    /// since the last look.
    pub(crate) fn partition(
        &mut self,
        root: &Path,
        partition: PartitionPath,
    ) -> Result<&mut AHashSet<String>, IngestError> {
        let known = self.partitions.entry(partition).or_default();
        read_new_files(&root.join(partition.relative()), known)?;
        Ok(&mut known.ids)
    }

    /// Drops an id recorded for a write that failed.
    pub(crate) fn forget(&mut self, partition: PartitionPath, event_id: &str) {
        if let Some(known) = self.partitions.get_mut(&partition) {
            known.ids.remove(event_id);
        }
    }

    /// Records that this writer committed `file` into `partition`; its ids
    /// are already in the index.
    pub(crate) fn note_file(&mut self, partition: PartitionPath, file: &str) {
        if let Some(name) = Path::new(file).file_name() {
            self.partitions
                .entry(partition)
                .or_default()
                .files
                .insert(name.to_owned());
        }
    }
}

fn read_new_files(dir: &Path, known: &mut PartitionIds) -> Result<(), IngestError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IngestError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "parquet")
            && !known.files.contains(&entry.file_name())
        {
            read_file_ids(&path, &mut known.ids)?;
            known.files.insert(entry.file_name());
        }
    }
    Ok(())
}

fn read_file_ids(path: &Path, ids: &mut AHashSet<String>) -> Result<(), IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let parquet =
        |e: parquet::errors::ParquetError| IngestError::Parquet(format!("{}: {e}", path.display()));
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    let mask = ProjectionMask::columns(builder.parquet_schema(), ["event_id"]);
    let reader = builder.with_projection(mask).build().map_err(parquet)?;
    for batch in reader {
        let batch = batch.map_err(|e| IngestError::Parquet(format!("{}: {e}", path.display())))?;
        let Some(column) = batch.column_by_name("event_id") else {
            continue;
        };
        if let Some(strings) = column.as_any().downcast_ref::<StringArray>() {
            for i in 0..strings.len() {
                if strings.is_valid(i) {
                    ids.insert(strings.value(i).to_owned());
                }
            }
        }
    }
    Ok(())
}
