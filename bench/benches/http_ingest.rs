//! HTTP ingest with acknowledgements on: GitHub `workflow_job` webhooks
//! posted over loopback to pipewatch's HTTP source (decode, redact, lake
//! commit before the 2xx) and, in the same run, to a null-sink handler on
//! the same stack (axum on hyper over Tokio, body read and answered, nothing
//! stored): the framework's ceiling. Batch sizes 1 (signed `/ingest/github`,
//! as GitHub sends) and 100 (NDJSON to `/ingest/github_webhook`), 32
//! requests in flight. Prints events/s, MB/s and p50/p99 time to 2xx, and
//! pipewatch's share of the ceiling.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use pipewatch_bench::{Corpus, measuring, percentile_ms, records, unique_records};
use pipewatch_ingest::Redactor;
use pipewatch_ingest::intake::{Intake, IntakeSettings};
use pipewatch_ingest::metrics::IngestMetrics;
use pipewatch_ingest::source::http::{HttpSource, HttpSourceConfig};
use pipewatch_ingest::source::secret::SecretRef;
use sha2::Sha256;

const IN_FLIGHT: usize = 32;
const SECRET: &str = "bench-webhook-secret";
const TOKEN: &str = "bench-ingest-token";

/// One prepared request.
struct Body {
    bytes: Bytes,
    signature: String,
    events: usize,
}

/// What every iteration of one configuration measured.
#[derive(Default)]
struct Tally {
    events: usize,
    bytes: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

type Tallies = Arc<Mutex<BTreeMap<(usize, &'static str), Tally>>>;

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Requests of `batch` events each, unique across the whole run.
fn bodies(templates: &[serde_json::Value], batch: usize, requests: usize, run: u64) -> Vec<Body> {
    let records = unique_records(templates, batch * requests, "/workflow_job/id", run);
    records
        .chunks(batch)
        .map(|chunk| {
            let bytes = Bytes::from(chunk.join(&b'\n'));
            Body {
                signature: sign(&bytes),
                bytes,
                events: chunk.len(),
            }
        })
        .collect()
}

async fn serve(router: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// Sends `bodies` with `IN_FLIGHT` in flight; returns the elapsed time and
/// each request's time to its 2xx.
async fn drive(
    client: &reqwest::Client,
    address: std::net::SocketAddr,
    batch: usize,
    bodies: &[Body],
) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let latencies: Vec<Duration> = futures::stream::iter(bodies)
        .map(|body| async move {
            let sent = Instant::now();
            let request = if batch == 1 {
                client
                    .post(format!("http://{address}/ingest/github"))
                    .header("X-GitHub-Event", "workflow_job")
                    .header("X-Hub-Signature-256", &body.signature)
            } else {
                client
                    .post(format!("http://{address}/ingest/github_webhook"))
                    .bearer_auth(TOKEN)
            };
            let response = request
                .body(body.bytes.clone())
                .send()
                .await
                .expect("request sent");
            assert!(
                response.status().is_success(),
                "{}",
                response.text().await.unwrap_or_default()
            );
            sent.elapsed()
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    (started.elapsed(), latencies)
}

fn http_ingest(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch");
    let corpus = Corpus::generate(&scratch.path().join("native"), 2).expect("corpus");
    let templates: Vec<serde_json::Value> = records(&corpus, "workflow_job")
        .into_iter()
        .filter(|r| r.get("workflow_job").is_some())
        .collect();
    assert!(
        !templates.is_empty(),
        "the corpus has workflow_job webhooks"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let lake = scratch.path().join("lake");
    let (pipewatch, null_sink, intake) = runtime.block_on(async {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = IngestMetrics::register(&mut registry);
        let intake =
            Intake::start(&lake, IntakeSettings::default(), metrics.clone(), None).expect("intake");
        let redactor = Arc::new(Redactor::for_data_dir(&lake).expect("redactor"));
        let secrets_dir = scratch.path().join("secrets");
        std::fs::create_dir_all(&secrets_dir).expect("secrets dir");
        std::fs::write(secrets_dir.join("github"), SECRET).expect("secret");
        std::fs::write(secrets_dir.join("token"), TOKEN).expect("token");
        let reference = |name: &str| {
            SecretRef::try_from(format!("file:{}", secrets_dir.join(name).display()))
                .expect("secret reference")
        };
        let config = HttpSourceConfig {
            github_secrets: vec![reference("github")],
            ingest_tokens: vec![reference("token")],
            ..HttpSourceConfig::default()
        };
        let source = HttpSource::new(&config, &lake, intake.handle(), redactor, metrics)
            .expect("http source");
        let pipewatch = serve(source.router()).await;
        let null = Router::new()
            .route("/ingest/github", post(null_sink))
            .route("/ingest/{format}", post(null_sink));
        (pipewatch, serve(null).await, intake)
    });

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("client");
    let tallies: Tallies = Arc::default();
    let mut run = 0u64;
    let mut group = c.benchmark_group("http_ingest");
    group.sample_size(10);
    if measuring() {
        group.measurement_time(Duration::from_secs(20));
    }
    for batch in [1usize, 100] {
        let requests = if batch == 1 { 400 } else { 40 };
        group.throughput(Throughput::Elements((batch * requests) as u64));
        for (name, address) in [("pipewatch", pipewatch), ("null_sink", null_sink)] {
            let tallies = tallies.clone();
            group.bench_function(format!("{name}/batch_{batch}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        run += 1;
                        let prepared = bodies(&templates, batch, requests, run);
                        let (elapsed, latencies) =
                            runtime.block_on(drive(&client, address, batch, &prepared));
                        total += elapsed;
                        let mut tallies = tallies.lock().expect("lock");
                        let tally = tallies.entry((batch, name)).or_default();
                        tally.events += prepared.iter().map(|b| b.events).sum::<usize>();
                        tally.bytes += prepared.iter().map(|b| b.bytes.len()).sum::<usize>();
                        tally.elapsed += elapsed;
                        tally.latencies.extend(latencies);
                    }
                    total
                });
            });
        }
    }
    group.finish();
    report(&tallies.lock().expect("lock"));
    drop(runtime);
    intake.close();
}

async fn null_sink(body: Bytes) -> axum::Json<serde_json::Value> {
    let events = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    axum::Json(serde_json::json!({ "accepted": events, "duplicates": 0, "dead_lettered": 0 }))
}

fn report(tallies: &BTreeMap<(usize, &'static str), Tally>) {
    println!("\nHTTP ingest, {IN_FLIGHT} requests in flight, acknowledged after the lake commit:");
    println!(
        "{:<24} {:>12} {:>10} {:>10} {:>10}",
        "", "events/s", "MB/s", "p50 ms", "p99 ms"
    );
    for batch in [1usize, 100] {
        let mut rate = BTreeMap::new();
        for name in ["pipewatch", "null_sink"] {
            let Some(tally) = tallies.get(&(batch, name)) else {
                continue;
            };
            let seconds = tally.elapsed.as_secs_f64().max(f64::EPSILON);
            let mut latencies = tally.latencies.clone();
            latencies.sort();
            let events_per_second = tally.events as f64 / seconds;
            rate.insert(name, events_per_second);
            println!(
                "{:<24} {:>12.0} {:>10.2} {:>10.2} {:>10.2}",
                format!("{name} batch {batch}"),
                events_per_second,
                tally.bytes as f64 / seconds / 1e6,
                percentile_ms(&latencies, 50.0),
                percentile_ms(&latencies, 99.0),
            );
        }
        if let (Some(ours), Some(ceiling)) = (rate.get("pipewatch"), rate.get("null_sink")) {
            println!(
                "{:<24} {:>12.3}",
                format!("ratio batch {batch}"),
                ours / ceiling
            );
        }
    }
}

criterion_group!(benches, http_ingest);
criterion_main!(benches);
