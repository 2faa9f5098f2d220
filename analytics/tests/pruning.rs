//! Queries bounded in time read only the days they ask for: the `date`
//! partitions outside an `event_time` bound are skipped without being
//! opened (shown with a day whose file is unreadable), and the answers are
//! the same as without pruning.

use pipewatch_analytics::QueryService;
use pipewatch_schema::{Category, PartitionPath};

#[path = "support/lake.rs"]
mod support_lake;
use support_lake::{at, lake};

#[path = "support/jobs.rs"]
mod support_jobs;
use support_jobs::job;

/// Three days of jobs; the first day's file is then made unreadable, so
/// any query that opens it fails.
async fn lake_with_a_broken_first_day() -> (tempfile::TempDir, QueryService) {
    let events = [
        job("a", "2026-10-05T10:00:00Z"),
        job("b", "2026-10-06T23:59:59Z"),
        job("c", "2026-10-07T00:00:00Z"),
        job("d", "2026-10-07T12:00:00Z"),
    ];
    let (dir, service) = lake(&events).await;
    let first = PartitionPath::new(
        Category::PipelineJob,
        at("2026-10-05T00:00:00Z").date_naive(),
    );
    std::fs::write(
        dir.path().join(first.relative()).join("x.parquet"),
        b"not parquet",
    )
    .expect("overwrite");
    (dir, service)
}

async fn count(service: &QueryService, condition: &str) -> Result<u64, String> {
    service
        .count(&format!("SELECT count(*) FROM events WHERE {condition}"))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn an_unbounded_query_reads_every_day() {
    let (_dir, service) = lake_with_a_broken_first_day().await;
    assert!(
        count(&service, "true").await.is_err(),
        "the broken day is read"
    );
}

#[tokio::test]
async fn time_bounds_skip_the_days_outside_them() {
    let (_dir, service) = lake_with_a_broken_first_day().await;
    let cases = [
        ("event_time >= TIMESTAMP '2026-10-06T00:00:00Z'", 3),
        ("event_time > TIMESTAMP '2026-10-06T23:59:59Z'", 2),
        ("TIMESTAMP '2026-10-07T00:00:00Z' <= event_time", 2),
        (
            "event_time BETWEEN TIMESTAMP '2026-10-06T00:00:00Z' AND TIMESTAMP '2026-10-06T23:59:59Z'",
            1,
        ),
        ("event_time = TIMESTAMP '2026-10-07T12:00:00Z'", 1),
        (
            "event_time >= TIMESTAMP '2026-10-06T00:00:00Z' AND event_time < TIMESTAMP '2026-10-07T00:00:00Z'",
            1,
        ),
        ("event_time >= '2026-10-06T12:00:00Z'", 3),
    ];
    for (condition, expected) in cases {
        assert_eq!(
            count(&service, condition).await,
            Ok(expected),
            "{condition}"
        );
    }
}

#[tokio::test]
async fn an_upper_bound_keeps_its_whole_last_day() {
    let (_dir, service) = lake_with_a_broken_first_day().await;
    // The first day is still needed here, so the broken file is read.
    assert!(
        count(&service, "event_time <= TIMESTAMP '2026-10-05T12:00:00Z'")
            .await
            .is_err()
    );
    let (_dir, service) = lake(&[
        job("a", "2026-10-05T10:00:00Z"),
        job("b", "2026-10-05T23:00:00Z"),
    ])
    .await;
    assert_eq!(
        count(&service, "event_time < TIMESTAMP '2026-10-05T23:30:00Z'").await,
        Ok(2)
    );
}

#[tokio::test]
async fn without_date_pruning_every_day_is_read() {
    let (_dir, service) = lake_with_a_broken_first_day().await;
    let service = service.without_date_pruning();
    assert!(
        count(&service, "event_time >= TIMESTAMP '2026-10-06T00:00:00Z'")
            .await
            .is_err()
    );
}
