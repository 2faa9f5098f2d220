//! Which event ids each partition already holds, loaded from the Parquet
//! files on first touch, so replays and re-ingests store nothing twice.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use arrow_array::{Array, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use pipewatch_schema::PartitionPath;

use crate::IngestError;

/// Event ids per partition.
#[derive(Debug, Default)]
pub(crate) struct EventIdIndex {
    partitions: HashMap<PartitionPath, HashSet<String>>,
}

impl EventIdIndex {
    /// The ids stored in `partition`, read from disk the first time.
    pub(crate) fn partition(
        &mut self,
        root: &Path,
        partition: PartitionPath,
    ) -> Result<&mut HashSet<String>, IngestError> {
        match self.partitions.entry(partition) {
            std::collections::hash_map::Entry::Occupied(entry) => Ok(entry.into_mut()),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let ids = read_partition_ids(&root.join(partition.relative()))?;
                Ok(entry.insert(ids))
            }
        }
    }
}

fn read_partition_ids(dir: &Path) -> Result<HashSet<String>, IngestError> {
    let mut ids = HashSet::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(IngestError::io(dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| IngestError::io(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "parquet") {
            read_file_ids(&path, &mut ids)?;
        }
    }
    Ok(ids)
}

fn read_file_ids(path: &Path, ids: &mut HashSet<String>) -> Result<(), IngestError> {
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
