//! Alert-to-request latency on loopback: alerts are stored (with their
//! outbox rows, as the live path does) at a steady 20 per second, and a
//! loopback webhook receiver notes when each one's signed request arrives.
//! Side by side, the same receiver gets the same body from a bare HTTP
//! POST: the floor any notifier pays. Reports p50, p99 and max of both and
//! their ratio. 30 s of alerts under `cargo bench`, 2 s under `cargo test`.

#[path = "../../analytics/tests/support/provider.rs"]
#[allow(unreachable_pub)]
mod provider;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use pipewatch_analytics::alerts::{AlertFilter, AlertStore};
use pipewatch_analytics::detect::{Explanation, Finding, FindingScope};
use pipewatch_analytics::notify::{NoObserver, Notifier, NotifyConfig, control_db};
use pipewatch_bench::{measuring, percentile_ms};
use pipewatch_schema::{Category, Severity};
use provider::{Behavior, Provider};

const RATE: u32 = 20;

fn finding(n: usize) -> Finding {
    Finding {
        detector: "protection_weakened",
        severity: Severity::High,
        score: 9.0,
        event_time: Utc::now(),
        entity: format!("acme/repo-{n}"),
        title: format!("Branch protection removed on acme/repo-{n}"),
        explanation: Explanation {
            expected: "no protection removed in 30 days".into(),
            observed: "main lost its protection".into(),
            unusual: "first in 30 days".into(),
        },
        evidence: vec![format!("evidence-{n}")],
        scope: FindingScope {
            category: Some(Category::ConfigChange),
            organisation: Some("acme".into()),
            repository: Some(format!("acme/repo-{n}")),
        },
    }
}

fn report(name: &str, mut latencies: Vec<Duration>) -> f64 {
    latencies.sort();
    let p99 = percentile_ms(&latencies, 99.0);
    println!(
        "{name:<28} n={:<5} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
        latencies.len(),
        percentile_ms(&latencies, 50.0),
        p99,
        percentile_ms(&latencies, 100.0)
    );
    p99
}

fn main() {
    let seconds = if measuring() { 30 } else { 2 };
    let alerts = (RATE * seconds) as usize;
    let receiver = Provider::start(|_, _| Behavior::status(200, ""));
    let dir = tempfile::tempdir().expect("scratch");
    let config: NotifyConfig = toml::from_str(&format!(
        r#"
[[destinations]]
kind = "webhook"
name = "receiver"
url = "{}"
secret = "env:SECRET"
per_minute = 60000
burst = 100
[[routes]]
name = "all"
destinations = ["receiver"]
"#,
        receiver.url("/pipewatch")
    ))
    .expect("config");
    let routing = Arc::new(
        config
            .resolve("http://127.0.0.1:8080", &|_| Ok("bench-secret".into()))
            .expect("routing"),
    );
    let mut store = AlertStore::open(dir.path())
        .expect("store")
        .with_routing(routing.clone());
    let notifier = Notifier::start(
        &control_db(dir.path()),
        routing,
        Arc::new(|_| {}),
        Arc::new(NoObserver),
    )
    .expect("notifier");
    let wake = notifier.handle();

    // pipewatch: store the alert (the outbox row goes in the same
    // transaction), wake the deliverer, wait for the request to land.
    let mut stored_at: HashMap<String, Instant> = HashMap::new();
    let tick = Duration::from_secs(1) / RATE;
    let mut next = Instant::now();
    for n in 0..alerts {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += tick;
        store
            .record(&[finding(n)], chrono::Duration::minutes(60), Utc::now())
            .expect("alert stored");
        let at = Instant::now();
        wake.wake();
        stored_at.insert(format!("acme/repo-{n}"), at);
    }
    receiver.wait_for(Duration::from_secs(60), "every alert", |r| {
        r.len() >= alerts
    });
    notifier.shutdown();
    let by_entity: HashMap<String, String> = store
        .list(&AlertFilter::default())
        .expect("alerts")
        .into_iter()
        .map(|a| (a.alert_id, a.entity))
        .collect();
    let received = receiver.received();
    let pipewatch: Vec<Duration> = received
        .iter()
        .filter_map(|r| {
            let body = r.json();
            let id = body["alerts"][0]["alert_id"].as_str()?.to_owned();
            let stored = stored_at.get(by_entity.get(&id)?)?;
            Some(r.at.duration_since(*stored))
        })
        .collect();
    assert_eq!(pipewatch.len(), alerts, "every alert arrived once");

    // The peer: a bare POST of a body of the same size, same pace.
    let body = received[0].body.clone();
    let client = reqwest::blocking::Client::new();
    let peer_receiver = Provider::start(|_, _| Behavior::status(200, ""));
    let mut sent_at = Vec::new();
    let mut next = Instant::now();
    for _ in 0..alerts {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += tick;
        sent_at.push(Instant::now());
        client
            .post(peer_receiver.url("/pipewatch"))
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .expect("bare post");
    }
    let bare: Vec<Duration> = peer_receiver
        .received()
        .iter()
        .zip(&sent_at)
        .map(|(r, sent)| r.at.duration_since(*sent))
        .collect();

    println!("alert-to-request latency on loopback, {alerts} alerts at {RATE}/s:");
    let ours = report("pipewatch (store → request)", pipewatch);
    let floor = report("bare HTTP POST (peer)", bare);
    println!(
        "p99 ratio pipewatch / bare POST: {:.1}",
        ours / floor.max(1e-6)
    );
}
