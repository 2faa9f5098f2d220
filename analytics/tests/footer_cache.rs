//! The footers and column statistics of the lake's files are read once per
//! process and kept for every query service opened later, and a file
//! rewritten since is read again rather than answered from its old footer
//! or statistics. Alone in its binary so the process-wide counts belong to
//! this test.

use pipewatch_analytics::query::{cached_file_statistics, cached_footers};
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_schema::{Category, PartitionPath};

#[path = "support/lake.rs"]
mod support_lake;
use support_lake::{at, lake};

#[path = "support/jobs.rs"]
mod support_jobs;
use support_jobs::job;

/// Events in the lake, counted by reading them (a bare `count(*)` may be
/// answered from file statistics alone).
async fn total(service: &QueryService) -> u64 {
    service
        .count("SELECT count(DISTINCT source_event_id) FROM events")
        .await
        .expect("counts")
}

#[tokio::test]
async fn footers_are_read_once_and_rewritten_files_again() {
    assert_eq!(cached_footers(), 0, "nothing is cached before a query");
    assert_eq!(cached_file_statistics(), 0);
    let (dir, first) = lake(&[
        job("a", "2026-10-05T10:00:00Z"),
        job("b", "2026-10-06T10:00:00Z"),
        job("c", "2026-10-07T10:00:00Z"),
    ])
    .await;
    assert_eq!(total(&first).await, 3);
    assert_eq!(cached_footers(), 3, "one footer per file");
    assert_eq!(cached_file_statistics(), 3, "statistics per file");

    let reopened = QueryService::open(dir.path(), QueryLimits::default())
        .await
        .expect("reopens");
    assert_eq!(total(&reopened).await, 3);
    assert_eq!(cached_footers(), 3, "a reopened service reuses them");
    assert_eq!(cached_file_statistics(), 3);

    // The second day's file is replaced by one holding three events.
    let (bigger, _) = lake(&[
        job("d", "2026-10-06T01:00:00Z"),
        job("e", "2026-10-06T02:00:00Z"),
        job("f", "2026-10-06T03:00:00Z"),
    ])
    .await;
    let day = PartitionPath::new(
        Category::PipelineJob,
        at("2026-10-06T00:00:00Z").date_naive(),
    );
    std::fs::copy(
        bigger.path().join(day.relative()).join("x.parquet"),
        dir.path().join(day.relative()).join("x.parquet"),
    )
    .expect("replace the day's file");
    let after = QueryService::open(dir.path(), QueryLimits::default())
        .await
        .expect("reopens");
    assert_eq!(
        after
            .count("SELECT count(*) FROM events")
            .await
            .expect("counts"),
        5,
        "a count answered from statistics sees the rewritten file's"
    );
    assert_eq!(total(&after).await, 5, "the rewritten file is read anew");
    let ids = after
        .query("SELECT source_event_id FROM events WHERE date = '2026-10-06' ORDER BY 1")
        .await
        .expect("reads the day");
    assert_eq!(ids.rows, 3);
}
