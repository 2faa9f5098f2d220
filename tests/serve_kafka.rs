//! End-to-end tests of `pipewatch serve`'s Kafka source against a real
//! Apache Kafka broker (KRaft, started by `deploy/kafka/kafka.sh`), with
//! librdkafka's own producer and consumer on the other side: ordinary flow
//! with a dead-letter topic, `kill -9` in the middle of a 100k-event stream,
//! and two processes sharing one consumer group.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;
use support::{Server, count, real_events};

/// The broker's bootstrap address: `PIPEWATCH_TEST_KAFKA_BOOTSTRAP` (set by
/// `scripts/test-all`, which starts and stops the broker), or a broker this
/// test binary starts with the project's script (and leaves running for
/// the next run; `deploy/kafka/kafka.sh stop --dir target/kafka-test`).
fn kafka() -> &'static str {
    static BOOTSTRAP: OnceLock<String> = OnceLock::new();
    BOOTSTRAP.get_or_init(|| {
        if let Ok(bootstrap) = std::env::var("PIPEWATCH_TEST_KAFKA_BOOTSTRAP") {
            return bootstrap;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(root.join("deploy/kafka/kafka.sh"))
            .args(["start", "--port", "19392", "--dir"])
            .arg(root.join("target/kafka-test"))
            .output()
            .expect("deploy/kafka/kafka.sh runs");
        assert!(
            out.status.success(),
            "the Kafka broker did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix("bootstrap="))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no bootstrap address in {text}"))
    })
}

/// A topic name no other test or run uses.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{}-{nanos}", std::process::id())
}

fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics(&[topic], &AdminOptions::new()))
        .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// A Vault audit response line whose request id is unique to `n`.
fn vault_line(template: &Value, run: &str, n: usize) -> Vec<u8> {
    let mut line = template.clone();
    line["request"]["id"] = Value::String(format!("{run}-{n:08}"));
    let time = chrono::DateTime::parse_from_rfc3339("2026-11-20T08:00:00Z").expect("time")
        + chrono::Duration::milliseconds(i64::try_from(n).unwrap_or(0) * 7);
    line["time"] = Value::String(time.to_rfc3339());
    serde_json::to_vec(&line).expect("serializes")
}

fn vault_template() -> Value {
    let sample =
        std::fs::read_to_string(real_events().join("vault-audit/vault_audit.file-device.log"))
            .expect("vault sample");
    sample
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "response")
        .expect("a response line")
}

/// Produces `messages` with librdkafka's producer, keyed so they spread
/// over the partitions.
fn produce(topic: &str, messages: impl IntoIterator<Item = Vec<u8>>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (n, payload) in messages.into_iter().enumerate() {
        let key = n.to_string();
        let mut record = BaseRecord::to(topic).payload(&payload).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    // Queue full: let deliveries drain, then retry.
                    producer.poll(Duration::from_millis(50));
                    record = returned;
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every message delivered");
}

fn kafka_config(topic: &str, group: &str, extra: &str) -> String {
    format!(
        r#"
[online]
enabled = false

[[sources]]
kind = "kafka"
brokers = "{brokers}"
group_id = "{group}"
topics = [{{ name = "{topic}", format = "vault_audit" }}]
linger_ms = 100
{extra}
"#,
        brokers = kafka()
    )
}

fn wait_for_count(lake: &Path, expected: u64, within: Duration) -> u64 {
    support::wait_for_count(lake, "SELECT count(*) AS n FROM events", expected, within)
}

fn metric(server: &Server, series: &str) -> f64 {
    support::metric_sum(server, series)
}

#[test]
fn records_flow_to_the_lake_and_bad_ones_to_the_dead_letter_topic() {
    let topic = unique("flow");
    let dead = unique("flow-dead");
    create_topic(&topic, 3);
    let template = vault_template();
    let mut messages: Vec<Vec<u8>> = (0..500).map(|n| vault_line(&template, &topic, n)).collect();
    for n in 0..5 {
        messages.insert(n * 100, format!("not json {n} {{").into_bytes());
    }
    produce(&topic, messages);

    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let config = kafka_config(
        &topic,
        &unique("group"),
        &format!("dead_letter_topic = \"{dead}\""),
    );
    std::fs::create_dir_all(&lake).expect("lake dir");
    pipewatch_dashboard::users::UserStore::open(&lake)
        .and_then(|mut users| {
            users.add(
                "demo",
                pipewatch_dashboard::users::Role::Viewer,
                "kafka-lag-viewer-1",
                chrono::Utc::now(),
            )
        })
        .expect("a dashboard user");
    let server = Server::start(&lake, &config, &[]);
    assert_eq!(wait_for_count(&lake, 500, Duration::from_secs(120)), 500);

    // Every partition's lag reaches zero once its offsets are committed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "pipewatch_ingest_kafka_lag_messages{") > 0.0
        || metric(
            &server,
            "pipewatch_ingest_committed_events_total{source=\"kafka\"",
        ) < 500.0
    {
        assert!(Instant::now() < deadline, "lag did not reach zero");
        std::thread::sleep(Duration::from_millis(250));
    }
    // The overview shows the same lag, partition by partition.
    let address = server.url("");
    let session = support::demo::dashboard_session(&address, "kafka-lag-viewer-1");
    let row = format!("<tr><td>{topic}</td><td class=\"num\">");
    // Lag is reported with the consumer's periodic statistics.
    let deadline = Instant::now() + Duration::from_secs(30);
    let overview = loop {
        let page = support::demo::dashboard_page(&session, &address, "/");
        if page.matches(&row).count() == 3 || Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(
        overview.matches(&row).count(),
        3,
        "one row per partition: {overview}"
    );
    assert!(
        overview.contains("Kafka consumer lag: 0 messages"),
        "{overview}"
    );
    assert!(server.stop().success());
    assert_eq!(
        count(
            &lake,
            "SELECT count(*) AS n FROM dead_letters WHERE reason = 'syntax'"
        ),
        5
    );

    // The dead-letter topic holds the five originals with the reason in headers.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[dead.as_str()]).expect("subscribe");
    let mut copies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while copies.len() < 5 && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let headers = message.headers().expect("headers");
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            copies.push((
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
                header("pipewatch-reason"),
                header("pipewatch-source-topic"),
            ));
        }
    }
    assert_eq!(copies.len(), 5, "{copies:?}");
    for (payload, reason, source_topic) in copies {
        assert!(payload.starts_with("not json"), "{payload}");
        assert_eq!(reason.as_deref(), Some("syntax"));
        assert_eq!(source_topic.as_deref(), Some(topic.as_str()));
    }
}

#[test]
fn kill_9_during_a_100k_stream_loses_nothing_and_stores_nothing_twice() {
    const EVENTS: usize = 100_000;
    let topic = unique("crash");
    create_topic(&topic, 4);
    let template = vault_template();
    let producer_topic = topic.clone();
    let producing = std::thread::spawn(move || {
        produce(
            &producer_topic,
            (0..EVENTS).map(|n| vault_line(&template, &producer_topic, n)),
        );
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let config = kafka_config(&topic, &unique("group"), "batch_records = 2000");
    // Kill at moments that vary from run to run; the seed is printed to replay one.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.subsec_nanos());
    println!("kill schedule seed {seed}");
    let mut state = u64::from(seed) | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut kills = 0;
    for _ in 0..4 {
        let server = Server::start(&lake, &config, &[]);
        std::thread::sleep(Duration::from_millis(300 + next() % 2500));
        server.kill9();
        kills += 1;
    }
    producing.join().expect("producer");
    let server = Server::start(&lake, &config, &[]);
    let stored = wait_for_count(&lake, EVENTS as u64, Duration::from_secs(600));
    assert!(server.stop().success());
    assert_eq!(kills, 4);
    assert_eq!(stored, EVENTS as u64);
    assert_eq!(
        count(&lake, "SELECT count(*) AS n FROM events"),
        EVENTS as u64
    );
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT event_id) AS n FROM events"),
        EVENTS as u64
    );
    let ids: HashSet<String> =
        support::sql(&lake, "SELECT DISTINCT source_event_id AS id FROM events")
            .into_iter()
            .filter_map(|row| row["id"].as_str().map(str::to_owned))
            .collect();
    assert_eq!(ids.len(), EVENTS);
}

#[test]
fn two_processes_in_one_group_share_the_partitions() {
    let topic = unique("shared");
    create_topic(&topic, 6);
    let template = vault_template();
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = dir.path().join("lake");
    let config = kafka_config(&topic, &unique("group"), "");
    let first = Server::start(&lake, &config, &[]);
    let second = Server::start(&lake, &config, &[]);
    let assigned = "pipewatch_ingest_kafka_assigned_partitions";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (metric(&first, assigned), metric(&second, assigned));
        if a > 0.0 && b > 0.0 && a + b == 6.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the group did not spread the partitions"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    produce(&topic, (0..3000).map(|n| vault_line(&template, &topic, n)));
    assert_eq!(wait_for_count(&lake, 3000, Duration::from_secs(120)), 3000);
    let series = "pipewatch_ingest_committed_events_total{source=\"kafka\"";
    let (by_first, by_second) = (metric(&first, series), metric(&second, series));
    assert!(
        by_first > 0.0 && by_second > 0.0,
        "one process did all the work: {by_first} + {by_second}"
    );
    assert_eq!(by_first + by_second, 3000.0);

    // One leaves; the other takes its partitions over and nothing is lost.
    assert!(first.stop().success());
    produce(
        &topic,
        (3000..4000).map(|n| vault_line(&template, &topic, n)),
    );
    assert_eq!(wait_for_count(&lake, 4000, Duration::from_secs(120)), 4000);
    assert!(second.stop().success());
    assert_eq!(
        count(&lake, "SELECT count(DISTINCT event_id) AS n FROM events"),
        4000
    );
    assert_eq!(count(&lake, "SELECT count(*) AS n FROM events"), 4000);
}
