//! Alert delivery against loopback servers that behave like Slack,
//! PagerDuty and webhook receivers: faults and retries, `Retry-After`,
//! pacing and digests, refused requests, status follow-ups, and payloads
//! within the providers' limits.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pipewatch_analytics::alerts::{AlertFilter, AlertStatus, AlertStore};
use pipewatch_analytics::detect::{Explanation, Finding, FindingScope};
use pipewatch_analytics::notify::{
    NoObserver, Notifier, NotifyConfig, Routing, Scrub, control_db, dedup_key, notifications,
    verify_webhook,
};
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_schema::{Category, Severity};
use rand::Rng;
use serde_json::Value;
use support::provider::{Behavior, Provider, Received};

const WEBHOOK_SECRET: &str = "webhook-signing-secret";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";

/// Resolves secret references the way the configuration does, from a map.
fn routing(toml_text: &str, secrets: &[(&str, String)]) -> Arc<Routing> {
    let config: NotifyConfig = toml::from_str(toml_text).expect("notify config parses");
    let secrets: HashMap<String, String> = secrets
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Arc::new(
        config
            .resolve("http://pipewatch.test", &|reference| {
                secrets
                    .get(reference)
                    .cloned()
                    .ok_or_else(|| format!("{reference} is not set"))
            })
            .expect("notify config resolves"),
    )
}

fn no_scrub() -> Scrub {
    Arc::new(|_| {})
}

fn finding(detector: &'static str, n: usize, severity: Severity) -> Finding {
    Finding {
        detector,
        severity,
        score: 5.0 + n as f64 / 1000.0,
        event_time: Utc::now(),
        entity: format!("acme/service-{n}"),
        title: format!("Alert number {n} about acme/service-{n}"),
        explanation: Explanation {
            expected: "no such change in 30 days".into(),
            observed: format!("change {n}"),
            unusual: "first in 30 days".into(),
        },
        evidence: vec![format!("event-{n}")],
        scope: FindingScope {
            category: Some(Category::ConfigChange),
            organisation: Some("acme".into()),
            repository: Some(format!("acme/service-{n}")),
        },
    }
}

/// Stores `count` alerts (numbered from `from`) with routing, as the live
/// path does, and returns their ids.
fn raise(dir: &Path, routing: &Arc<Routing>, from: usize, count: usize) -> Vec<String> {
    let mut store = AlertStore::open(dir)
        .expect("alert store")
        .with_routing(routing.clone());
    let findings: Vec<Finding> = (from..from + count)
        .map(|n| finding("protection_weakened", n, Severity::High))
        .collect();
    let summary = store
        .record(&findings, chrono::Duration::minutes(60), Utc::now())
        .expect("alerts stored");
    assert_eq!(summary.new as usize, count);
    let ids: HashSet<String> = findings.iter().map(|f| f.entity.clone()).collect();
    store
        .list(&AlertFilter::default())
        .expect("alerts listed")
        .into_iter()
        .filter(|a| ids.contains(&a.entity))
        .map(|a| a.alert_id)
        .collect()
}

/// Waits until nothing in the outbox is pending.
fn wait_until_settled(dir: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let records = notifications(dir).expect("outbox readable");
        if !records.is_empty() && records.iter().all(|r| r.status != "pending") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the outbox did not settle: {} pending of {}",
            records.iter().filter(|r| r.status == "pending").count(),
            records.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start(dir: &Path, routing: &Arc<Routing>) -> Notifier {
    Notifier::start(
        &control_db(dir),
        routing.clone(),
        no_scrub(),
        Arc::new(NoObserver),
    )
    .expect("notifier starts")
}

fn webhook_alert_ids(request: &Received) -> Vec<String> {
    request.json()["alerts"]
        .as_array()
        .map(|alerts| {
            alerts
                .iter()
                .filter_map(|a| a["alert_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn sql(dir: &Path, query: &str) -> Vec<Value> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let service = QueryService::open(dir, QueryLimits::default())
            .await
            .expect("query service");
        let output = service.query(query).await.expect("query runs");
        let mut writer = datafusion::arrow::json::ArrayWriter::new(Vec::new());
        for batch in &output.batches {
            writer.write(batch).expect("json");
        }
        writer.finish().expect("json");
        let bytes = writer.into_inner();
        if bytes.is_empty() {
            return Vec::new();
        }
        serde_json::from_slice(&bytes).expect("json rows")
    })
}

#[test]
fn a_thousand_alerts_through_a_thirty_percent_fault_rate_arrive_with_none_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    // 30% of requests fail: server errors, 429s, dropped connections and
    // answers slower than the client waits, in equal parts.
    let provider = Provider::start(|_, _| {
        let mut rng = rand::rng();
        if rng.random::<f64>() >= 0.30 {
            return Behavior::status(200, "ok");
        }
        match rng.random_range(0..5) {
            0 => Behavior::status(500, "internal error"),
            1 => Behavior::status(503, "unavailable"),
            2 => Behavior::rate_limited("0"),
            3 => Behavior::Drop,
            _ => Behavior::Slow(Duration::from_millis(500)),
        }
    });
    let routing = routing(
        r#"
request_timeout_ms = 200
retry_initial_ms = 10
retry_max_secs = 1
max_attempts = 30
[[destinations]]
kind = "webhook"
name = "soar"
url = "URL"
secret = "env:SECRET"
per_minute = 6000000
burst = 5000
[[routes]]
name = "everything"
min_severity = "low"
destinations = ["soar"]
"#
        .replace("URL", &provider.url("/hook"))
        .as_str(),
        &[("env:SECRET", WEBHOOK_SECRET.to_owned())],
    );
    let alerts = raise(dir.path(), &routing, 0, 1000);
    assert_eq!(alerts.len(), 1000);
    let started = Instant::now();
    let notifier = start(dir.path(), &routing);
    wait_until_settled(dir.path(), Duration::from_secs(300));
    notifier.shutdown();

    let received = provider.received();
    let faults = received.iter().filter(|r| !r.behavior.accepted()).count();
    let arrived: HashSet<String> = provider
        .accepted()
        .iter()
        .flat_map(webhook_alert_ids)
        .collect();
    let lost: Vec<&String> = alerts.iter().filter(|a| !arrived.contains(*a)).collect();
    let records = notifications(dir.path()).expect("outbox");
    let failed = records.iter().filter(|r| r.status == "failed").count();
    eprintln!(
        "fault injection: {} alerts, {} requests, {} faults ({:.1}%), {} lost, {} failed, {:.1}s",
        alerts.len(),
        received.len(),
        faults,
        100.0 * faults as f64 / received.len() as f64,
        lost.len(),
        failed,
        started.elapsed().as_secs_f64()
    );
    assert!(faults > 200, "the fault rate was applied: {faults} faults");
    assert!(
        lost.is_empty(),
        "{} alerts never arrived: {lost:?}",
        lost.len()
    );
    assert_eq!(failed, 0);
    // A retry after a fault repeats the same delivery id, so a receiver
    // can drop the copy an answer lost on the way back left behind.
    let mut ids_per_delivery: HashMap<String, HashSet<String>> = HashMap::new();
    for request in &received {
        let delivery = request
            .header("X-Pipewatch-Delivery")
            .expect("delivery id")
            .to_owned();
        ids_per_delivery
            .entry(delivery)
            .or_default()
            .extend(webhook_alert_ids(request));
    }
    assert_eq!(ids_per_delivery.len(), 1000);
    assert!(ids_per_delivery.values().all(|ids| ids.len() == 1));
}

#[test]
fn retry_after_is_respected_and_holds_the_destination_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = Provider::start(|n, _| {
        if n == 0 {
            Behavior::rate_limited("2")
        } else {
            Behavior::status(202, r#"{"status":"success","message":"Event processed"}"#)
        }
    });
    let routing = routing(
        &format!(
            r#"
retry_initial_ms = 10
[[destinations]]
kind = "pagerduty"
name = "pager"
routing_key = "env:PD"
events_url = "{}"
[[routes]]
name = "high"
min_severity = "high"
destinations = ["pager"]
"#,
            provider.url("/v2/enqueue")
        ),
        &[("env:PD", ROUTING_KEY.to_owned())],
    );
    let alerts = raise(dir.path(), &routing, 0, 2);
    let notifier = start(dir.path(), &routing);
    wait_until_settled(dir.path(), Duration::from_secs(30));
    notifier.shutdown();

    let received = provider.received();
    assert_eq!(received.len(), 3, "one 429, then both alerts");
    let held = received[1].at.duration_since(received[0].at);
    assert!(
        held >= Duration::from_millis(1950),
        "the retry came {held:?} after a 429 with Retry-After: 2"
    );
    // The first request was retried with the same dedup key.
    assert_eq!(
        received[0].json()["dedup_key"],
        received[1].json()["dedup_key"]
    );
    let incidents = provider.incidents();
    let expected: HashSet<String> = alerts.iter().map(|a| dedup_key(a)).collect();
    assert_eq!(incidents, expected);
}

#[test]
fn the_pace_is_kept_and_a_storm_is_folded_into_digests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = Provider::answering(200, "ok");
    let routing = routing(
        r#"
[[destinations]]
kind = "slack"
name = "security"
webhook_url = "env:SLACK"
per_minute = 120
burst = 2
[[routes]]
name = "all"
destinations = ["security"]
"#,
        &[("env:SLACK", provider.url("/services/T000/B000/XXXX"))],
    );
    let notifier = start(dir.path(), &routing);
    // Two alerts fit in the burst and go out one by one.
    let first = raise(dir.path(), &routing, 0, 2);
    notifier.handle().wake();
    provider.wait_for(Duration::from_secs(10), "the first two messages", |r| {
        r.len() == 2
    });
    // A storm of 60 alerts: far more than the pace allows.
    let storm = raise(dir.path(), &routing, 100, 60);
    notifier.handle().wake();
    wait_until_settled(dir.path(), Duration::from_secs(30));
    notifier.shutdown();

    let received = provider.received();
    // Every alert is announced: alone, or counted in a digest's header.
    let mut announced = 0;
    for request in &received {
        let message = request.json();
        let header = message["blocks"][0]["text"]["text"]
            .as_str()
            .expect("a header block")
            .to_owned();
        match header.split_once(" pipewatch alerts") {
            Some((count, _)) => announced += count.parse::<usize>().expect("digest count"),
            None => announced += 1,
        }
    }
    assert_eq!(announced, first.len() + storm.len());
    assert!(
        received.len() <= 6,
        "the storm was folded, not sent alert by alert: {} messages",
        received.len()
    );
    // Never more than the burst plus the pace allows in any window.
    for (i, a) in received.iter().enumerate() {
        for b in &received[i + 1..] {
            let window = b.at.duration_since(a.at).as_secs_f64();
            let between = received
                .iter()
                .filter(|r| r.at >= a.at && r.at <= b.at)
                .count();
            assert!(
                between as f64 <= 2.0 + window * 2.0 + 0.05,
                "{between} messages in {window:.2}s at 2/s with a burst of 2"
            );
        }
    }
    let folded = notifications(dir.path())
        .expect("outbox")
        .iter()
        .filter(|r| r.status == "folded")
        .count();
    assert!(folded >= 55, "{folded} notifications folded");
}

#[test]
fn a_refused_request_is_not_retried_and_the_failure_shows_in_sql() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provider = Provider::answering(400, "invalid_payload");
    let routing = routing(
        r#"
retry_initial_ms = 10
[[destinations]]
kind = "slack"
name = "security"
webhook_url = "env:SLACK"
[[routes]]
name = "all"
destinations = ["security"]
"#,
        &[("env:SLACK", provider.url("/services/T000/B000/XXXX"))],
    );
    raise(dir.path(), &routing, 0, 1);
    let notifier = start(dir.path(), &routing);
    wait_until_settled(dir.path(), Duration::from_secs(30));
    // Long enough for a retry to have happened, had there been one.
    std::thread::sleep(Duration::from_millis(300));
    notifier.shutdown();
    assert_eq!(provider.received().len(), 1);
    let rows = sql(
        dir.path(),
        "SELECT destination, action, status, attempts, response_status, last_error FROM notifications",
    );
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["status"], "failed");
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["response_status"], 400);
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_payload")),
        "{row}"
    );
}

#[test]
fn acknowledging_and_resolving_follow_the_alert_to_pagerduty_and_webhooks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pagerduty = Provider::answering(202, r#"{"status":"success"}"#);
    let webhook = Provider::answering(204, "");
    let routing = routing(
        &format!(
            r#"
[[destinations]]
kind = "pagerduty"
name = "pager"
routing_key = "env:PD"
events_url = "{}"
[[destinations]]
kind = "webhook"
name = "soar"
url = "{}"
secret = "env:HOOK"
[[routes]]
name = "high"
min_severity = "high"
destinations = ["pager", "soar"]
"#,
            pagerduty.url("/v2/enqueue"),
            webhook.url("/pipewatch")
        ),
        &[
            ("env:PD", ROUTING_KEY.to_owned()),
            ("env:HOOK", WEBHOOK_SECRET.to_owned()),
        ],
    );
    let alert = raise(dir.path(), &routing, 7, 1).remove(0);
    let notifier = start(dir.path(), &routing);
    pagerduty.wait_for(Duration::from_secs(10), "the trigger", |r| r.len() == 1);
    // Status changes come from another process (the CLI) through the database.
    let mut store = AlertStore::open(dir.path()).expect("store");
    store
        .change_status(
            &alert,
            AlertStatus::Acknowledged,
            "ana",
            None,
            None,
            Utc::now(),
        )
        .expect("ack");
    store
        .change_status(
            &alert,
            AlertStatus::Resolved,
            "ana",
            Some("fixed"),
            None,
            Utc::now(),
        )
        .expect("resolve");
    pagerduty.wait_for(Duration::from_secs(10), "acknowledge and resolve", |r| {
        r.len() == 3
    });
    webhook.wait_for(Duration::from_secs(10), "three webhook calls", |r| {
        r.len() == 3
    });
    notifier.shutdown();

    let actions: Vec<(String, String)> = pagerduty
        .received()
        .iter()
        .map(|r| {
            let e = r.json();
            (
                e["event_action"].as_str().unwrap_or_default().to_owned(),
                e["dedup_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let key = dedup_key(&alert);
    assert_eq!(
        actions,
        vec![
            ("trigger".to_owned(), key.clone()),
            ("acknowledge".to_owned(), key.clone()),
            ("resolve".to_owned(), key)
        ]
    );
    let events: Vec<String> = webhook
        .received()
        .iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        events,
        ["alert.triggered", "alert.acknowledged", "alert.resolved"]
    );
}

#[test]
fn payloads_keep_to_the_providers_limits_and_webhooks_are_signed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let slack = Provider::answering(200, "ok");
    let pagerduty = Provider::answering(202, r#"{"status":"success"}"#);
    let webhook = Provider::answering(200, "");
    let routing = routing(
        &format!(
            r#"
dashboard_url = "https://pipewatch.example.com/"
[[destinations]]
kind = "slack"
name = "security"
webhook_url = "env:SLACK"
[[destinations]]
kind = "pagerduty"
name = "pager"
routing_key = "env:PD"
events_url = "{}"
[[destinations]]
kind = "webhook"
name = "soar"
url = "{}"
secret = "env:HOOK"
[[routes]]
name = "all"
min_severity = "info"
destinations = ["security", "pager", "soar"]
"#,
            pagerduty.url("/v2/enqueue"),
            webhook.url("/pipewatch")
        ),
        &[
            ("env:SLACK", slack.url("/services/T000/B000/XXXX")),
            ("env:PD", ROUTING_KEY.to_owned()),
            ("env:HOOK", WEBHOOK_SECRET.to_owned()),
        ],
    );
    // An alert with very long text and a lot of evidence.
    let mut store = AlertStore::open(dir.path())
        .expect("store")
        .with_routing(routing.clone());
    let mut long = finding("secret_bulk_read", 1, Severity::Critical);
    long.title = format!("A <very> long & title {}", "x".repeat(3000));
    long.explanation.observed = "y".repeat(6000);
    long.evidence = (0..400).map(|i| format!("evidence-{i}")).collect();
    store
        .record(&[long], chrono::Duration::minutes(60), Utc::now())
        .expect("stored");
    let alert = store
        .list(&AlertFilter::default())
        .expect("listed")
        .remove(0);
    let notifier = start(dir.path(), &routing);
    wait_until_settled(dir.path(), Duration::from_secs(30));
    notifier.shutdown();

    let message = slack.received()[0].json();
    assert!(message["text"].as_str().is_some_and(|t| !t.is_empty()));
    let blocks = message["blocks"].as_array().expect("blocks");
    assert!(blocks.len() <= 50);
    for block in blocks {
        match block["type"].as_str() {
            Some("header") => {
                assert_eq!(block["text"]["type"], "plain_text");
                assert!(
                    block["text"]["text"]
                        .as_str()
                        .expect("text")
                        .chars()
                        .count()
                        <= 150
                );
            }
            Some("section") => {
                if let Some(text) = block["text"]["text"].as_str() {
                    assert!(text.chars().count() <= 3000);
                    assert!(!text.contains("<very>"), "mrkdwn is escaped: {text}");
                }
                for field in block["fields"].as_array().into_iter().flatten() {
                    assert!(field["text"].as_str().expect("field").chars().count() <= 2000);
                }
                assert!(block["fields"].as_array().is_none_or(|f| f.len() <= 10));
            }
            Some("actions") => assert_eq!(
                block["elements"][0]["url"],
                format!("https://pipewatch.example.com/alerts/{}", alert.alert_id)
            ),
            Some("context") => {}
            other => panic!("unexpected block {other:?}"),
        }
    }

    let event = pagerduty.received()[0].json();
    assert_eq!(event["routing_key"], ROUTING_KEY);
    assert_eq!(event["event_action"], "trigger");
    assert_eq!(event["dedup_key"], dedup_key(&alert.alert_id));
    assert!(event["dedup_key"].as_str().expect("key").len() <= 255);
    assert!(
        event["payload"]["summary"]
            .as_str()
            .expect("summary")
            .chars()
            .count()
            <= 1024
    );
    assert_eq!(event["payload"]["severity"], "critical");
    assert!(
        event["payload"]["source"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(event["payload"]["timestamp"].as_str().is_some());
    assert_eq!(event["payload"]["custom_details"]["evidence_total"], 400);
    assert!(pagerduty.received()[0].body.len() < 512 * 1024);

    let call = &webhook.received()[0];
    let body = call.json();
    assert_eq!(body["schema"], "pipewatch.notification/v1");
    assert_eq!(body["event"], "alert.triggered");
    assert_eq!(body["alerts"][0]["alert_id"], alert.alert_id.as_str());
    assert_eq!(body["alerts"][0]["repository"], "acme/service-1");
    let timestamp = call.header("X-Pipewatch-Timestamp").expect("timestamp");
    let signature = call.header("X-Pipewatch-Signature").expect("signature");
    assert_eq!(
        verify_webhook(
            WEBHOOK_SECRET.as_bytes(),
            timestamp,
            &call.body,
            signature,
            Utc::now(),
            300
        ),
        Ok(())
    );
    assert!(
        verify_webhook(
            b"another secret",
            timestamp,
            &call.body,
            signature,
            Utc::now(),
            300
        )
        .is_err()
    );
}

#[test]
fn a_grouping_route_sends_alerts_of_its_window_as_one_digest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let webhook = Provider::answering(200, "");
    let routing = routing(
        &format!(
            r#"
[[destinations]]
kind = "webhook"
name = "soar"
url = "{}"
secret = "env:HOOK"
[[routes]]
name = "batched"
destinations = ["soar"]
group_window_secs = 2
"#,
            webhook.url("/pipewatch")
        ),
        &[("env:HOOK", WEBHOOK_SECRET.to_owned())],
    );
    let notifier = start(dir.path(), &routing);
    let started = Instant::now();
    let mut alerts = raise(dir.path(), &routing, 0, 1);
    std::thread::sleep(Duration::from_millis(500));
    alerts.extend(raise(dir.path(), &routing, 1, 2));
    webhook.wait_for(Duration::from_secs(10), "the digest", |r| !r.is_empty());
    let waited = started.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    notifier.shutdown();

    let received = webhook.received();
    assert_eq!(received.len(), 1, "one message for the window");
    assert!(
        waited >= Duration::from_millis(1900),
        "sent after {waited:?}"
    );
    let body = received[0].json();
    assert_eq!(body["event"], "alerts.digest");
    let mut carried = webhook_alert_ids(&received[0]);
    carried.sort();
    alerts.sort();
    assert_eq!(carried, alerts);
}

#[test]
fn a_route_with_a_minimum_interval_holds_later_alerts_and_sends_them_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let webhook = Provider::answering(200, "");
    let routing = routing(
        &format!(
            r#"
[[destinations]]
kind = "webhook"
name = "soar"
url = "{}"
secret = "env:HOOK"
[[routes]]
name = "hourly"
destinations = ["soar"]
min_interval_secs = 2
"#,
            webhook.url("/pipewatch")
        ),
        &[("env:HOOK", WEBHOOK_SECRET.to_owned())],
    );
    let notifier = start(dir.path(), &routing);
    let first = raise(dir.path(), &routing, 0, 1);
    notifier.handle().wake();
    webhook.wait_for(Duration::from_secs(10), "the first alert", |r| r.len() == 1);
    let mut later = raise(dir.path(), &routing, 1, 3);
    notifier.handle().wake();
    webhook.wait_for(Duration::from_secs(10), "the held alerts", |r| r.len() == 2);
    std::thread::sleep(Duration::from_millis(300));
    notifier.shutdown();

    let received = webhook.received();
    assert_eq!(received.len(), 2, "the held alerts left as one message");
    assert_eq!(webhook_alert_ids(&received[0]), first);
    let gap = received[1].at.duration_since(received[0].at);
    assert!(
        gap >= Duration::from_millis(1900),
        "held for {gap:?} of 2 s"
    );
    assert_eq!(received[1].json()["event"], "alerts.digest");
    let mut carried = webhook_alert_ids(&received[1]);
    carried.sort();
    later.sort();
    assert_eq!(carried, later);
}
