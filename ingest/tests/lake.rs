//! The lake writer: partitions, ordering, file settings, replays that
//! store nothing twice, leftovers of an interrupted write, and compaction
//! (merged files, crashes halfway through, partitions left alone).

use std::fs::File;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use chrono::{TimeZone, Utc};
use parquet::basic::Compression;
use parquet::file::metadata::{ColumnChunkMetaData, RowGroupMetaData};
use parquet::file::reader::{FileReader, SerializedFileReader};
use pipewatch_ingest::LakeWriter;
use pipewatch_ingest::lake::{COMPACTION_DIR, CompactionPolicy, Compactor};
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

fn column_named<'a>(group: &'a RowGroupMetaData, name: &str) -> &'a ColumnChunkMetaData {
    group
        .columns()
        .iter()
        .find(|c| c.column_path().string() == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn events_land_in_category_and_day_partitions_sorted_by_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lake = LakeWriter::open(dir.path()).expect("lake");
    let events: Vec<Event> = (0..100)
        .map(|i| {
            let mut event = event(
                i,
                if i % 2 == 0 {
                    Category::PipelineJob
                } else {
                    Category::SecretAccess
                },
            );
            event.actor = Some(format!("actor-{}", i % 5));
            event
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
        let id = column_named(row_group, "event_id");
        assert!(matches!(id.compression(), Compression::ZSTD(_)));
        assert!(
            id.bloom_filter_offset().is_some(),
            "bloom filter on event_id"
        );
        // A column none of the file's events fill goes without a codec or filter.
        let trace_id = column_named(row_group, "trace_id");
        assert_eq!(trace_id.compression(), Compression::UNCOMPRESSED);
        assert!(
            trace_id.bloom_filter_offset().is_none(),
            "no bloom filter on an empty id column"
        );
        // Columns of a few values per file are dictionary-encoded and
        // compressed with LZ4, which needs no context to set up.
        for name in ["actor", "source"] {
            let column = column_named(row_group, name);
            assert_eq!(column.compression(), Compression::LZ4_RAW, "{name}");
            assert!(
                column.dictionary_page_offset().is_some(),
                "{name} dictionary"
            );
        }
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
            let actors = batch
                .column_by_name("actor")
                .expect("actor")
                .as_string::<i32>();
            assert_eq!(actors.null_count(), 0);
            assert!(actors.iter().flatten().all(|a| a.starts_with("actor-")));
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

/// A lake whose partitions each hold several small files: `commits`
/// commits of `per_commit` events each, all of one category, over two days.
fn fragmented_lake(commits: i64, per_commit: i64) -> (tempfile::TempDir, Vec<Event>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lake = LakeWriter::open(dir.path()).expect("lake");
    let mut all = Vec::new();
    for c in 0..commits {
        let events: Vec<Event> = (c * per_commit..(c + 1) * per_commit)
            .map(|i| event(i, Category::PipelineJob))
            .collect();
        all.extend(events.clone());
        lake.commit(events).expect("commit");
    }
    (dir, all)
}

fn now() -> CompactionPolicy {
    CompactionPolicy {
        quiet: std::time::Duration::ZERO,
        ..CompactionPolicy::default()
    }
}

/// `(event_id, event_time)` of every row of every file, file by file.
fn rows_per_file(root: &std::path::Path) -> Vec<Vec<(String, i64)>> {
    use arrow_array::{Array, StringArray, TimestampMicrosecondArray};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    parquet_files(&root.join("events"))
        .iter()
        .map(|path| {
            let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("open"))
                .expect("parquet")
                .build()
                .expect("reader");
            let mut rows = Vec::new();
            for batch in reader {
                let batch = batch.expect("batch");
                let ids = batch
                    .column_by_name("event_id")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
                    .expect("ids");
                let times = batch
                    .column_by_name("event_time")
                    .and_then(|c| {
                        c.as_any()
                            .downcast_ref::<TimestampMicrosecondArray>()
                            .cloned()
                    })
                    .expect("times");
                for i in 0..ids.len() {
                    rows.push((ids.value(i).to_owned(), times.value(i)));
                }
            }
            rows
        })
        .collect()
}

fn sorted_ids(root: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = rows_per_file(root)
        .into_iter()
        .flatten()
        .map(|(id, _)| id)
        .collect();
    ids.sort();
    ids
}

fn journals(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join(COMPACTION_DIR)).map_or(0, |d| d.count())
}

#[test]
fn compaction_merges_a_partitions_small_files_into_one_sorted_file() {
    let (dir, events) = fragmented_lake(6, 20);
    let before = parquet_files(dir.path()).len();
    let days: std::collections::BTreeSet<_> =
        events.iter().map(|e| e.event_time.date_naive()).collect();
    assert!(
        before >= 2 * days.len(),
        "{before} files over {} days",
        days.len()
    );
    let mut expected: Vec<String> = events
        .iter()
        .map(|e| e.event_id.as_str().to_owned())
        .collect();
    expected.sort();

    let compactor = Compactor::new(dir.path(), now());
    let plans = compactor.plan().expect("plan");
    assert_eq!(plans.len(), days.len(), "one plan per day");
    let report = compactor.compact_all(|| false).expect("compacts");

    assert_eq!(report.partitions, days.len());
    assert_eq!(report.files_merged, before);
    assert_eq!(report.files_written, days.len());
    assert_eq!(report.rows, events.len());
    assert_eq!(report.duplicates_dropped, 0);
    assert!(report.bytes_after > 0 && report.bytes_before > 0);
    let files = rows_per_file(dir.path());
    assert_eq!(files.len(), days.len(), "one file per day is left");
    for rows in &files {
        assert!(
            rows.windows(2).all(|w| w[0].1 <= w[1].1),
            "a merged file is sorted by time"
        );
    }
    assert_eq!(sorted_ids(dir.path()), expected, "every event once");
    assert_eq!(journals(dir.path()), 0, "no journal is left behind");

    // Merged files keep the lake's file settings.
    let path = &parquet_files(dir.path())[0];
    let reader = SerializedFileReader::new(File::open(path).expect("open")).expect("parquet");
    let group = reader.metadata().row_group(0);
    assert!(group.sorting_columns().is_some(), "declared sorted by time");
    assert!(matches!(
        group.column(0).compression(),
        Compression::ZSTD(_)
    ));
    assert_eq!(
        column_named(group, "trace_id").compression(),
        Compression::UNCOMPRESSED,
        "a column no merged event fills goes without a codec"
    );

    let again = compactor.compact_all(|| false).expect("compacts");
    assert_eq!(
        again.files_merged, 0,
        "a compacted lake has nothing to merge"
    );
}

#[test]
fn a_replay_after_compaction_stores_nothing_twice() {
    let (dir, events) = fragmented_lake(4, 25);
    Compactor::new(dir.path(), now())
        .compact_all(|| false)
        .expect("compacts");
    let mut lake = LakeWriter::open(dir.path()).expect("reopen");
    let report = lake.commit(events.clone()).expect("replay");
    assert_eq!(report.written, 0);
    assert_eq!(report.duplicates, events.len());
    assert_eq!(sorted_ids(dir.path()).len(), events.len());
}

#[test]
fn a_compaction_cut_short_after_its_merged_file_is_finished_at_the_next_open() {
    let (dir, events) = fragmented_lake(4, 25);
    let compactor = Compactor::new(dir.path(), now());
    for plan in compactor.plan().expect("plan") {
        compactor.merge_without_removing(&plan).expect("merges");
    }
    // Both the merged files and their sources are there, as after a crash.
    assert_eq!(sorted_ids(dir.path()).len(), 2 * events.len());
    assert!(journals(dir.path()) > 0);

    LakeWriter::open(dir.path()).expect("reopen settles the journal");
    assert_eq!(
        sorted_ids(dir.path()).len(),
        events.len(),
        "every event once"
    );
    assert!(
        parquet_files(dir.path()).iter().all(|p| p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("c-"))),
        "only merged files are left"
    );
    assert_eq!(journals(dir.path()), 0);
}

#[test]
fn a_compaction_cut_short_before_its_merged_file_keeps_the_sources() {
    let (dir, events) = fragmented_lake(4, 25);
    let before = parquet_files(dir.path());
    let compactor = Compactor::new(dir.path(), now());
    for plan in compactor.plan().expect("plan") {
        compactor.merge_without_removing(&plan).expect("merges");
    }
    // The crash came before any merged file was renamed into place.
    for path in parquet_files(dir.path()) {
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("c-"))
        {
            std::fs::remove_file(path).expect("remove");
        }
    }

    LakeWriter::open(dir.path()).expect("reopen settles the journal");
    assert_eq!(
        parquet_files(dir.path()),
        before,
        "the sources are untouched"
    );
    assert_eq!(sorted_ids(dir.path()).len(), events.len());
    assert_eq!(journals(dir.path()), 0);
    let report = compactor.compact_all(|| false).expect("compacts");
    assert_eq!(
        report.files_merged,
        before.len(),
        "the next pass merges them"
    );
}

#[test]
fn busy_large_and_recently_written_partitions_are_left_alone() {
    let (dir, _) = fragmented_lake(5, 20);
    let before = parquet_files(dir.path());

    let recent = Compactor::new(dir.path(), CompactionPolicy::default());
    assert!(recent.plan().expect("plan").is_empty(), "written just now");

    // Files holding half the target or more are already large enough.
    let large = Compactor::new(
        dir.path(),
        CompactionPolicy {
            target_rows: 2,
            ..now()
        },
    );
    assert!(large.plan().expect("plan").is_empty());

    // Merged files hold at most the target.
    let bounded = Compactor::new(
        dir.path(),
        CompactionPolicy {
            target_rows: 30,
            ..now()
        },
    );
    for plan in bounded.plan().expect("plan") {
        assert!(plan.groups.iter().all(|g| g.len() >= 2));
        assert!(plan.rows <= 30 * plan.groups.len());
    }

    // A partition another live process is compacting is skipped.
    let compactor = Compactor::new(dir.path(), now());
    let plans = compactor.plan().expect("plan");
    let journal_dir = dir.path().join(COMPACTION_DIR);
    std::fs::create_dir_all(&journal_dir).expect("journal dir");
    let partition = plans[0].partition;
    let journal = serde_json::json!({
        "pid": 1,
        "partition": partition.relative(),
        "merges": [],
    });
    std::fs::write(
        journal_dir.join(format!(
            "{}.{}.json",
            partition.category.as_str(),
            partition.date.format("%Y-%m-%d")
        )),
        journal.to_string(),
    )
    .expect("journal");
    let report = compactor.compact(&plans[0]).expect("compacts");
    assert_eq!(report.busy, 1);
    assert_eq!(report.files_merged, 0);
    assert_eq!(parquet_files(dir.path()), before);
}

#[test]
fn a_plan_another_compaction_carried_out_first_changes_nothing() {
    let (dir, events) = fragmented_lake(4, 25);
    let compactor = Compactor::new(dir.path(), now());
    let stale = compactor.plan().expect("plan");
    compactor
        .compact_all(|| false)
        .expect("the first process compacts");
    let after = parquet_files(dir.path());
    for plan in &stale {
        let report = compactor
            .compact(plan)
            .expect("a stale plan is not an error");
        assert_eq!(report.files_merged, 0);
        assert_eq!(report.busy, 1);
    }
    assert_eq!(parquet_files(dir.path()), after);
    assert_eq!(sorted_ids(dir.path()).len(), events.len());
    assert_eq!(journals(dir.path()), 0);
}
