//! The lake writer: partitions, ordering, file settings, replays that
//! store nothing twice, and leftovers of an interrupted write.

use std::fs::File;

use chrono::{TimeZone, Utc};
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use pipewatch_ingest::LakeWriter;
use pipewatch_schema::{Category, DataFilePath, Event};

fn event(i: i64, category: Category) -> Event {
    // Deliberately out of order in time, spread over two days.
    let time = Utc
        .timestamp_opt(1_760_000_000 + ((i * 7919) % 100) * 1800, 0)
        .single()
        .expect("time");
    Event::new(
        "test",
        format!("n-{i}"),
        time,
        category,
        "x",
        serde_json::json!({"i": i}),
    )
}

fn parquet_files(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .collect();
    files.sort();
    files
}

#[test]
fn events_land_in_category_and_day_partitions_sorted_by_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lake = LakeWriter::open(dir.path()).expect("lake");
    let events: Vec<Event> = (0..100)
        .map(|i| {
            event(
                i,
                if i % 2 == 0 {
                    Category::PipelineJob
                } else {
                    Category::SecretAccess
                },
            )
        })
        .collect();
    let report = lake.commit(events).expect("commit");
    assert_eq!(report.written, 100);
    assert_eq!(report.duplicates, 0);
    for relative in &report.files {
        let parsed = DataFilePath::parse(relative).expect("lake path");
        assert!(matches!(
            parsed.partition.category,
            Category::PipelineJob | Category::SecretAccess
        ));
    }
    for path in parquet_files(dir.path()) {
        let reader = SerializedFileReader::new(File::open(&path).expect("open")).expect("parquet");
        let meta = reader.metadata();
        let row_group = meta.row_group(0);
        let id = row_group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "event_id")
            .expect("event_id column");
        assert!(matches!(id.compression(), Compression::ZSTD(_)));
        assert!(
            id.bloom_filter_offset().is_some(),
            "bloom filter on event_id"
        );
        assert!(row_group.sorting_columns().is_some(), "declared sort order");
        // Times inside the file are ascending.
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            File::open(&path).expect("open"),
        )
        .expect("reader");
        for batch in builder.build().expect("batches") {
            let batch = batch.expect("batch");
            let times = batch
                .column_by_name("event_time")
                .expect("event_time")
                .as_any()
                .downcast_ref::<arrow_array::TimestampMicrosecondArray>()
                .expect("timestamps")
                .values()
                .to_vec();
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "{}", path.display());
        }
    }
}

#[test]
fn replaying_the_same_events_stores_nothing_twice() {
    let dir = tempfile::tempdir().expect("temp dir");
    let events: Vec<Event> = (0..50).map(|i| event(i, Category::Deployment)).collect();
    let first = LakeWriter::open(dir.path())
        .expect("lake")
        .commit(events.clone())
        .expect("commit");
    assert_eq!(first.written, 50);
    let files_before = parquet_files(dir.path());

    // A new writer (a restart) sees what is stored.
    let mut again = events.clone();
    again.extend(events.iter().take(5).cloned()); // repeated inside one batch too
    again.push(event(1000, Category::Deployment));
    let second = LakeWriter::open(dir.path())
        .expect("lake")
        .commit(again)
        .expect("commit");
    assert_eq!(second.written, 1);
    assert_eq!(second.duplicates, 55);
    assert_eq!(parquet_files(dir.path()).len(), files_before.len() + 1);
}

#[test]
fn leftovers_of_an_interrupted_write_are_removed_at_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    LakeWriter::open(dir.path())
        .expect("lake")
        .commit(vec![event(1, Category::Auth)])
        .expect("commit");
    let partition = parquet_files(dir.path())[0]
        .parent()
        .expect("partition")
        .to_owned();
    let leftover = partition.join("123-abc.parquet.inprogress");
    std::fs::write(&leftover, b"PAR1 half a file").expect("write leftover");
    // A writer that died (no such process) and one still running (pid 1)
    // sharing the data directory.
    let dead_writer = partition.join("124-abc.parquet.4294967295.inprogress");
    let live_writer = partition.join("125-abc.parquet.1.inprogress");
    std::fs::write(&dead_writer, b"PAR1 half a file").expect("write leftover");
    std::fs::write(&live_writer, b"PAR1 being written").expect("write temporary");
    LakeWriter::open(dir.path()).expect("reopen");
    assert!(!leftover.exists());
    assert!(!dead_writer.exists());
    assert!(
        live_writer.exists(),
        "another running writer's file was removed"
    );
    assert_eq!(parquet_files(dir.path()).len(), 1);
}

#[test]
fn events_another_writer_committed_meanwhile_are_not_stored_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut first = LakeWriter::open(dir.path()).expect("lake");
    let mut second = LakeWriter::open(dir.path()).expect("lake");
    first
        .commit(vec![event(1, Category::Auth)])
        .expect("commit");
    // The second writer has read this partition before the first wrote more.
    second
        .commit(vec![event(2, Category::Auth)])
        .expect("commit");
    first
        .commit(vec![event(3, Category::Auth)])
        .expect("commit");
    let replay = second
        .commit(vec![event(1, Category::Auth), event(3, Category::Auth)])
        .expect("commit");
    assert_eq!(replay.written, 0);
    assert_eq!(replay.duplicates, 2);
}
