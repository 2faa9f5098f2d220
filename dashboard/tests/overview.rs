//! The overview reads daily rollups of the lake rather than scanning it,
//! and its figures follow the lake: new events show up after a background
//! rebuild, while the previous figures keep being served meanwhile.

mod support;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use pipewatch_dashboard::DashboardSettings;
use pipewatch_ingest::lake::LakeWriter;
use pipewatch_schema::{Category, Event};
use reqwest::StatusCode;
use support::start;

fn events(source: &str, count: usize, hour: u32) -> Vec<Event> {
    (0..count)
        .map(|n| {
            let mut event = Event::new(
                source,
                format!("{source}-{hour}-{n}"),
                Utc.with_ymd_and_hms(2026, 10, 12, hour, n as u32, 0)
                    .single()
                    .expect("time"),
                Category::PipelineJob,
                "workflow_job.completed",
                serde_json::json!({}),
            );
            event.outcome = "success".into();
            event.repo = Some("acme/api".into());
            event.org = Some("acme".into());
            event
        })
        .collect()
}

/// The events column of the overview's ingest-health row for `source`.
fn ingest_count(page: &str, source: &str) -> Option<u64> {
    let row = format!("<tr><td>{source}</td><td class=\"num\">");
    let start = page.find(&row)? + row.len();
    page[start..].split('<').next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_follows_the_lake_through_its_rollups() {
    let site = start(DashboardSettings::default()).await;
    let mut writer = LakeWriter::open(&site.data_dir).expect("lake");
    writer
        .commit(events("github_webhook", 3, 8))
        .expect("first commit");
    let mut vera = site.signed_in("vera").await;
    let (status, _, settings) = site
        .get(&mut site.signed_in("ada").await, "/admin/settings")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        settings.contains("not built yet"),
        "built on first use: {settings}"
    );
    let (status, _, page) = site.get(&mut vera, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ingest_count(&page, "github_webhook"), Some(3), "{page}");
    assert!(
        page.contains("Figures as of"),
        "the page says how fresh it is"
    );

    writer
        .commit(events("gitlab_webhook", 5, 9))
        .expect("second commit");
    writer
        .commit(events("github_webhook", 2, 10))
        .expect("third commit");
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let (status, _, page) = site.get(&mut vera, "/").await;
        assert_eq!(status, StatusCode::OK, "served while the rollups rebuild");
        if ingest_count(&page, "gitlab_webhook") == Some(5) || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(ingest_count(&page, "gitlab_webhook"), Some(5), "{page}");
    assert_eq!(ingest_count(&page, "github_webhook"), Some(5), "{page}");

    // The ingestion page counts from the same rollups.
    let (_, _, ingestion) = site.get(&mut vera, "/ingestion").await;
    assert!(
        ingestion.contains("gitlab_webhook") && ingestion.contains(">5<"),
        "{ingestion}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_the_kafka_lag_of_the_ingest_in_its_process() {
    let metrics = std::sync::Arc::new(pipewatch_ingest::metrics::IngestMetrics::default());
    let site = start(DashboardSettings {
        ingest: pipewatch_dashboard::LiveIngest(Some(metrics.clone())),
        ..DashboardSettings::default()
    })
    .await;
    let mut vera = site.signed_in("vera").await;
    let (_, _, page) = site.get(&mut vera, "/").await;
    assert!(
        page.contains("No Kafka partition has reported yet"),
        "{page}"
    );

    metrics.set_kafka_lag("ci-events", 0, 1_200);
    metrics.set_kafka_lag("ci-events", 1, 34);
    metrics.set_kafka_lag("ci-events", 0, 1_000);
    let (_, _, page) = site.get(&mut vera, "/").await;
    assert!(page.contains("Kafka consumer lag: 1034 messages"), "{page}");
    for row in [
        "<tr><td>ci-events</td><td class=\"num\">0</td><td class=\"num\">1000</td>",
        "<tr><td>ci-events</td><td class=\"num\">1</td><td class=\"num\">34</td>",
    ] {
        assert!(page.contains(row), "{row} in {page}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn with_warm_rollups_they_are_built_before_anyone_asks() {
    let site = start(DashboardSettings {
        warm_rollups: true,
        ..DashboardSettings::default()
    })
    .await;
    let mut ada = site.signed_in("ada").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let settings = loop {
        let (status, _, page) = site.get(&mut ada, "/admin/settings").await;
        assert_eq!(status, StatusCode::OK);
        if page.contains("Daily rollups</th><td>built") || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        settings.contains("Daily rollups</th><td>built"),
        "no page asked for them: {settings}"
    );
}
