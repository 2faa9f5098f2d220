//! A lake written straight from events, as the ingest writer lays it out:
//! `<tmp>/events/category=<c>/date=<d>/x.parquet` (file schema, partition
//! keys only in the path).

use std::collections::BTreeMap;
use std::fs::File;

use chrono::{DateTime, Utc};
use datafusion::parquet::arrow::ArrowWriter;
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_schema::{Event, EventBatchBuilder, PartitionPath, file_schema};

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("fixture time")
        .with_timezone(&Utc)
}

/// Writes the events into a fresh lake and opens it.
pub(crate) async fn lake(events: &[Event]) -> (tempfile::TempDir, QueryService) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut partitions: BTreeMap<PartitionPath, Vec<&Event>> = BTreeMap::new();
    for e in events {
        let partition = PartitionPath::new(e.category, e.event_time.date_naive());
        partitions.entry(partition).or_default().push(e);
    }
    for (partition, events) in partitions {
        let folder = dir.path().join(partition.relative());
        std::fs::create_dir_all(&folder).expect("partition folder");
        let mut builder = EventBatchBuilder::new();
        for e in events {
            builder.append(e).expect("append");
        }
        let batch = builder.finish().expect("batch");
        let file = File::create(folder.join("x.parquet")).expect("file");
        let mut writer = ArrowWriter::try_new(file, file_schema(), None).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }
    let service = QueryService::open(dir.path(), QueryLimits::default())
        .await
        .expect("opens");
    (dir, service)
}
