//! End-to-end alert delivery through the real binary: `alerts test-route`
//! against loopback Slack and PagerDuty endpoints, and `pipewatch serve`
//! announcing detector alerts, killed with SIGKILL in the middle of its
//! fan-out and restarted, without losing a notification or opening a
//! second PagerDuty incident, and without a raw secret in any payload.

mod support;

#[path = "../analytics/tests/support/provider.rs"]
mod provider;

use std::collections::HashMap;
use std::time::Duration;

use provider::{Behavior, Provider};
use reqwest::StatusCode;
use serde_json::json;
use support::{Server, metric_sum, pipewatch, sql};

const INGEST_TOKEN: &str = "ingest-bearer-token";
const ROUTING_KEY: &str = "R0UTINGKEY0123456789abcdef012345";
/// A GitHub token shaped secret that leaks into an audit event.
const LEAKED_TOKEN: &str = "ghp_Xq3T9vLmR2kP8sWn4YbZ7cJd1FhG6tA0eUoI";

fn notify_config(pagerduty: &Provider) -> String {
    format!(
        r#"
[[sources]]
kind = "http"
ingest_tokens = ["env:TEST_INGEST_TOKEN"]

[notify]
dashboard_url = "https://pipewatch.example.com"
retry_initial_ms = 50

[[notify.destinations]]
kind = "slack"
name = "security-slack"
webhook_url = "env:TEST_SLACK_WEBHOOK"
per_minute = 600
burst = 20

[[notify.destinations]]
kind = "pagerduty"
name = "oncall"
routing_key = "env:TEST_PD_ROUTING_KEY"
events_url = "{}"

[[notify.routes]]
name = "weakened-protection"
min_severity = "low"
categories = ["config_change"]
destinations = ["security-slack", "oncall"]
"#,
        pagerduty.url("/v2/enqueue")
    )
}

fn env(slack: &Provider) -> Vec<(&'static str, String)> {
    vec![
        ("TEST_INGEST_TOKEN", INGEST_TOKEN.to_owned()),
        (
            "TEST_SLACK_WEBHOOK",
            slack.url("/services/T0000/B0000/XXXXXXXX"),
        ),
        ("TEST_PD_ROUTING_KEY", ROUTING_KEY.to_owned()),
    ]
}

#[test]
fn test_route_sends_a_marked_test_and_reports_each_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    let slack = Provider::answering(200, "ok");
    let pagerduty = Provider::answering(
        202,
        r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
    );
    let config = dir.path().join("pipewatch.toml");
    std::fs::write(&config, notify_config(&pagerduty)).expect("config");
    let mut cmd = pipewatch();
    cmd.args(["alerts", "test-route", "weakened-protection", "--config"])
        .arg(&config);
    for (key, value) in env(&slack) {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("pipewatch runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("security-slack (slack): test message: 200 accepted: ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("oncall (pagerduty): test message: 202 accepted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("oncall (pagerduty): resolve test incident: 202"),
        "{stdout}"
    );

    let message = slack.received()[0].json();
    assert!(
        message["text"]
            .as_str()
            .is_some_and(|t| t.contains("[TEST]")),
        "{message}"
    );
    let events: Vec<serde_json::Value> = pagerduty.received().iter().map(|r| r.json()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_action"], "trigger");
    assert_eq!(events[0]["routing_key"], ROUTING_KEY);
    assert_eq!(events[0]["payload"]["severity"], "info");
    assert_eq!(events[1]["event_action"], "resolve");
    assert_eq!(events[0]["dedup_key"], events[1]["dedup_key"]);

    // A destination that refuses: the answer is shown and the exit code says so.
    let gone = Provider::answering(404, "no_service");
    std::fs::write(&config, notify_config(&pagerduty)).expect("config");
    let mut cmd = pipewatch();
    cmd.args(["alerts", "test-route", "weakened-protection", "--config"])
        .arg(&config);
    for (key, value) in env(&gone) {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("pipewatch runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("404 refused: no_service"), "{stdout}");

    // An unknown route is named, with the known ones.
    let mut cmd = pipewatch();
    cmd.args(["alerts", "test-route", "nope", "--config"])
        .arg(&config);
    for (key, value) in env(&slack) {
        cmd.env(key, value);
    }
    let output = cmd.output().expect("pipewatch runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("`nope`") && stderr.contains("weakened-protection"),
        "{stderr}"
    );
}

fn removals(count: usize) -> String {
    let now_ms = chrono::Utc::now().timestamp_millis();
    (0..count)
        .map(|n| {
            json!({
                "@timestamp": now_ms,
                "_document_id": format!("notify-test-removal-{n}"),
                "action": "protected_branch.destroy",
                "actor": format!("deployer {LEAKED_TOKEN}"),
                "org": "example-org",
                "repo": format!("example-org/service-{n}"),
                "name": "main",
            })
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_kill_during_fan_out_loses_nothing_and_opens_no_extra_incident() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    // Both providers take their time, so the kill lands mid-delivery.
    let slow = || {
        Provider::start(|_, _| {
            std::thread::sleep(Duration::from_millis(300));
            Behavior::status(202, r#"{"status":"success"}"#)
        })
    };
    let slack = slow();
    let pagerduty = slow();
    let config = notify_config(&pagerduty);
    let env = env(&slack);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let server = Server::start(&lake, &config, &env);
    let response = reqwest::blocking::Client::new()
        .post(server.url("/ingest/github_audit"))
        .bearer_auth(INGEST_TOKEN)
        .body(removals(6))
        .send()
        .expect("request sent");
    assert_eq!(response.status(), StatusCode::OK);
    pagerduty.wait_for(Duration::from_secs(60), "the fan-out to start", |r| {
        r.len() >= 2
    });
    server.kill9();
    let before_restart = pagerduty.received().len();
    assert!(before_restart < 6, "the kill came before the fan-out ended");

    let server = Server::start(&lake, &config, &env);
    pagerduty.wait_for(Duration::from_secs(60), "every incident", |_| {
        pagerduty.incidents().len() >= 6
    });
    slack.wait_for(Duration::from_secs(60), "every Slack message", |r| {
        let ids: std::collections::HashSet<String> =
            r.iter().filter_map(|m| slack_alert_id(&m.json())).collect();
        ids.len() >= 6
    });
    // Anything still due would go out now.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(server.stop().success());

    let alerts: Vec<String> = sql(&lake, "SELECT alert_id FROM alerts ORDER BY alert_id")
        .iter()
        .filter_map(|row| row["alert_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(alerts.len(), 6);
    // One PagerDuty incident per alert, never a second one.
    let expected: std::collections::HashSet<String> =
        alerts.iter().map(|a| pipewatch_dedup_key(a)).collect();
    assert_eq!(pagerduty.incidents(), expected);
    // Slack has no dedup key: a send interrupted by the kill may be
    // repeated, at most once per destination.
    let mut per_alert: HashMap<String, usize> = HashMap::new();
    for message in slack.received() {
        if let Some(id) = slack_alert_id(&message.json()) {
            *per_alert.entry(id).or_default() += 1;
        }
    }
    assert_eq!(per_alert.len(), 6);
    let repeats: usize = per_alert.values().map(|n| n - 1).sum();
    assert!(
        repeats <= 1,
        "{repeats} repeated Slack posts: {per_alert:?}"
    );
    let pd_repeats = pagerduty.received().len() - 6;
    assert!(pd_repeats <= 1, "{pd_repeats} repeated PagerDuty events");
    eprintln!(
        "kill -9 during fan-out: {before_restart} PagerDuty event(s) before the kill, {} incidents after restart, {pd_repeats} repeated event(s); {repeats} repeated Slack post(s)",
        pagerduty.incidents().len()
    );

    // The leaked token went to the lake redacted, and to no provider.
    for request in slack.received().iter().chain(pagerduty.received().iter()) {
        assert!(!request.text().contains(LEAKED_TOKEN), "{}", request.text());
    }
    let delivered = sql(
        &lake,
        "SELECT destination, count(*) AS n FROM notifications \
         WHERE action = 'trigger' AND status = 'delivered' GROUP BY destination ORDER BY destination",
    );
    assert_eq!(
        delivered,
        vec![
            json!({"destination": "oncall", "n": 6}),
            json!({"destination": "security-slack", "n": 6})
        ]
    );
}

fn pipewatch_dedup_key(alert_id: &str) -> String {
    format!("pipewatch/{alert_id}")
}

/// The alert id quoted in a Slack message's context block.
fn slack_alert_id(message: &serde_json::Value) -> Option<String> {
    let blocks = message["blocks"].as_array()?;
    let context = blocks.iter().find(|b| b["type"] == "context")?;
    let text = context["elements"][0]["text"].as_str()?;
    let start = text.find("alert `")? + "alert `".len();
    let rest = &text[start..];
    Some(rest[..rest.find('`')?].to_owned())
}

#[test]
fn detect_queues_backfilled_alerts_only_when_asked_and_serve_delivers_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let events = dir.path().join("audit.ndjson");
    std::fs::write(&events, removals(2)).expect("events");
    let slack = Provider::answering(200, "ok");
    let pagerduty = Provider::answering(202, r#"{"status":"success"}"#);
    let config = dir.path().join("pipewatch.toml");
    std::fs::write(&config, notify_config(&pagerduty)).expect("config");
    let run = |args: &[&str]| {
        let mut cmd = pipewatch();
        cmd.args(args).arg("--data-dir").arg(&lake);
        for (key, value) in env(&slack) {
            cmd.env(key, value);
        }
        let output = cmd.output().expect("pipewatch runs");
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    run(&[
        "ingest",
        "--format",
        "github_audit",
        events.to_str().expect("utf-8 path"),
    ]);
    run(&["detect"]);
    let queued = |lake: &std::path::Path| {
        sql(lake, "SELECT count(*) AS n FROM notifications")[0]["n"]
            .as_u64()
            .unwrap_or_default()
    };
    assert_eq!(queued(&lake), 0, "a plain backfill pages nobody");

    // Raised again from an empty control database, this time queued.
    std::fs::remove_file(lake.join("control.sqlite")).expect("forget the alerts");
    run(&[
        "detect",
        "--notify",
        "--config",
        config.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(queued(&lake), 4, "two alerts, each to Slack and PagerDuty");
    assert!(slack.received().is_empty(), "detect only queues");

    let env = env(&slack);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start(
        &lake,
        &std::fs::read_to_string(&config).expect("config"),
        &env,
    );
    pagerduty.wait_for(Duration::from_secs(30), "both incidents", |r| r.len() >= 2);
    slack.wait_for(Duration::from_secs(30), "both messages", |r| r.len() >= 2);
    // The outcome is counted right after the provider answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric_sum(&server, "pipewatch_notify_attempts_total") < 4.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "deliveries are counted in /metrics"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stop().success());
    assert_eq!(pagerduty.incidents().len(), 2);
}
