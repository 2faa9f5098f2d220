//! A query service keeps answering while compaction replaces the files it
//! listed: a scan that finds a listed file gone lists the lake again.

use pipewatch_analytics::QueryService;
use pipewatch_schema::{Category, PartitionPath};

#[path = "support/lake.rs"]
mod support_lake;
use support_lake::{at, lake};

#[path = "support/jobs.rs"]
mod support_jobs;
use support_jobs::job;

async fn ids(service: &QueryService) -> Vec<String> {
    let out = service
        .query("SELECT source_event_id FROM events ORDER BY 1")
        .await
        .expect("the query answers although its listed file is gone");
    let json = pipewatch_analytics::render(&out, pipewatch_analytics::query::OutputFormat::Json)
        .expect("renders");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).expect("json");
    rows.iter()
        .map(|r| r["source_event_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_file_merged_away_after_listing_is_not_an_error() {
    let (dir, service) = lake(&[
        job("a", "2026-10-05T10:00:00Z"),
        job("b", "2026-10-06T10:00:00Z"),
        job("c", "2026-10-06T11:00:00Z"),
    ])
    .await;
    assert_eq!(ids(&service).await, ["a", "b", "c"]);

    // As compaction does: the day's rows move to a new file, the old one goes.
    let day = PartitionPath::new(
        Category::PipelineJob,
        at("2026-10-06T00:00:00Z").date_naive(),
    );
    let folder = dir.path().join(day.relative());
    std::fs::rename(folder.join("x.parquet"), folder.join("c-merged.parquet"))
        .expect("replace the day's file");

    assert_eq!(ids(&service).await, ["a", "b", "c"]);
}
