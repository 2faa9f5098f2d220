//! Kafka consume-and-commit: a topic of Vault audit records (JSON, one per
//! message, 4 partitions) read by pipewatch's Kafka source — decode,
//! redact, lake commit, offset commit — and, in the same run, by
//! `kcat -C -e` reading the same topic to its end (librdkafka's own speed,
//! nothing decoded or stored). Prints events/s of both and the ratio.
//! 1,000,000 events under `cargo bench`; 20,000 as a smoke run under
//! `cargo test`. Needs a broker (`PIPEWATCH_TEST_KAFKA_BOOTSTRAP`, else one
//! is started with deploy/kafka/kafka.sh) and kcat on the PATH.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pipewatch_bench::{Corpus, measuring, records, unique_records};
use pipewatch_ingest::Redactor;
use pipewatch_ingest::intake::{Intake, IntakeSettings};
use pipewatch_ingest::metrics::{IngestMetrics, SourceLabels};
use pipewatch_ingest::source::kafka::{KafkaSource, KafkaSourceConfig, KafkaTopicConfig};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

fn bootstrap() -> String {
    for variable in [
        "PIPEWATCH_BENCH_KAFKA_BOOTSTRAP",
        "PIPEWATCH_TEST_KAFKA_BOOTSTRAP",
    ] {
        if let Ok(bootstrap) = std::env::var(variable) {
            return bootstrap;
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("deploy/kafka/kafka.sh"))
        .args(["start", "--port", "19592", "--dir"])
        .arg(root.join("target/kafka-bench"))
        .output()
        .expect("deploy/kafka/kafka.sh runs");
    assert!(
        out.status.success(),
        "the Kafka broker did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bootstrap=").map(str::to_owned))
        .expect("bootstrap address printed")
}

fn fill_topic(bootstrap: &str, topic: &str, messages: &[Vec<u8>]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let created = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(topic, 4, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))
    .expect("create topic");
    for result in created {
        result.expect("topic created");
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .expect("producer");
    for (n, payload) in messages.iter().enumerate() {
        let key = n.to_string();
        let mut record = BaseRecord::to(topic).payload(payload).key(&key);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, returned)) => {
                    producer.poll(Duration::from_millis(10));
                    record = returned;
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(300))
        .expect("every message delivered");
}

/// pipewatch reads the whole topic with a new group into a fresh lake;
/// the time until every event is committed to the lake.
fn pipewatch_pass(bootstrap: &str, topic: &str, events: u64, group: &str) -> Duration {
    let lake = tempfile::tempdir().expect("lake");
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = IngestMetrics::register(&mut registry);
    let intake = Intake::start(
        lake.path(),
        IntakeSettings::default(),
        metrics.clone(),
        None,
    )
    .expect("intake");
    let redactor = Arc::new(Redactor::for_data_dir(lake.path()).expect("redactor"));
    let config = KafkaSourceConfig {
        brokers: bootstrap.to_owned(),
        group_id: group.to_owned(),
        topics: vec![KafkaTopicConfig {
            name: topic.to_owned(),
            format: "vault_audit".into(),
        }],
        dead_letter_topic: String::new(),
        ..KafkaSourceConfig::default()
    };
    let started = Instant::now();
    let source = KafkaSource::start(&config, intake.handle(), redactor, metrics.clone())
        .expect("kafka source");
    let committed = metrics.committed.get_or_create(&SourceLabels {
        source: "kafka".into(),
        format: "vault_audit".into(),
    });
    let deadline = started + Duration::from_secs(1800);
    while committed.get() < events {
        assert!(
            Instant::now() < deadline,
            "pipewatch did not finish the topic"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // Stopping commits the last offsets; that belongs to the pass.
    source.stop();
    let elapsed = started.elapsed();
    intake.close();
    elapsed
}

/// kcat reads every partition from the beginning to the end.
fn kcat_pass(bootstrap: &str, topic: &str, events: u64) -> Duration {
    let started = Instant::now();
    let out = Command::new("kcat")
        .args([
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
        ])
        .args(["-f", "%o\\n"])
        .output()
        .expect("kcat is installed (apt install kcat)");
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = out.stdout.iter().filter(|b| **b == b'\n').count() as u64;
    assert_eq!(read, events, "kcat read the whole topic");
    elapsed
}

fn kafka_consume(c: &mut Criterion) {
    let events: usize = if measuring() { 1_000_000 } else { 20_000 };
    let bootstrap = bootstrap();
    let scratch = tempfile::tempdir().expect("scratch");
    let corpus = Corpus::generate(&scratch.path().join("native"), 2).expect("corpus");
    let templates = records(&corpus, "vault");
    assert!(!templates.is_empty(), "the corpus has Vault audit lines");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let topic = format!("bench-vault-{nanos}");
    let messages = unique_records(&templates, events, "/request/id", 1);
    let bytes: usize = messages.iter().map(Vec::len).sum();
    fill_topic(&bootstrap, &topic, &messages);
    drop(messages);

    let mut pipewatch = Vec::new();
    let mut kcat = Vec::new();
    let mut group = c.benchmark_group("kafka_consume");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events as u64));
    let mut pass = 0;
    group.bench_function("pipewatch_consume_commit", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    pass += 1;
                    let took = pipewatch_pass(
                        &bootstrap,
                        &topic,
                        events as u64,
                        &format!("{topic}-{pass}"),
                    );
                    pipewatch.push(took);
                    took
                })
                .sum()
        });
    });
    group.bench_function("kcat_consume", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let took = kcat_pass(&bootstrap, &topic, events as u64);
                    kcat.push(took);
                    took
                })
                .sum()
        });
    });
    group.finish();

    let rate = |runs: &[Duration]| {
        let total: Duration = runs.iter().sum();
        (events * runs.len()) as f64 / total.as_secs_f64().max(f64::EPSILON)
    };
    let (ours, peer) = (rate(&pipewatch), rate(&kcat));
    println!(
        "\nKafka, {events} Vault audit events ({:.1} MB) in 4 partitions:",
        bytes as f64 / 1e6
    );
    println!("pipewatch consume + lake commit + offset commit: {ours:>10.0} events/s");
    println!("kcat -C -e (read only):                          {peer:>10.0} events/s");
    println!(
        "ratio:                                           {:>10.3}",
        ours / peer
    );
}

criterion_group!(benches, kafka_consume);
criterion_main!(benches);
