//! Page speed: every dashboard page fetched over loopback HTTP by a
//! signed-in client, on the demo organisation's lake and on that lake grown
//! to ten million events. p50/p95 per page are printed beside criterion's
//! mean, with the goal (200 ms on the demo, 1 s at ten million). The peer:
//! the overview's figures computed straight from the lake, as they would
//! be without the daily rollups, side by side with the rollups.
//!
//! The grown lake is kept under `target/bench-lakes/` between runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use pipewatch_analytics::metrics::{Rollups, Scope, Window};
use pipewatch_analytics::query::lake_version;
use pipewatch_analytics::{QueryLimits, QueryService, run_metrics};
use pipewatch_bench::{Corpus, demo_lake, grow_lake, measuring, percentile_ms};
use pipewatch_dashboard::sessions::{SessionLimits, SessionStore};
use pipewatch_dashboard::users::{Role, UserStore};
use pipewatch_dashboard::{DashboardSettings, standalone};

/// A served dashboard and a signed-in client for it.
struct Served {
    runtime: tokio::runtime::Runtime,
    base: String,
    cookie: String,
    client: reqwest::Client,
}

impl Served {
    fn start(lake: &Path) -> Served {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut users = UserStore::open(lake).expect("user store");
        if !users
            .list()
            .expect("users")
            .iter()
            .any(|u| u.name == "bench")
        {
            users
                .add(
                    "bench",
                    Role::Admin,
                    "bench-password-1234",
                    chrono::Utc::now(),
                )
                .expect("bench user");
        }
        let session = SessionStore::open(lake, SessionLimits::default())
            .expect("sessions")
            .create("bench", Role::Admin, None, None, chrono::Utc::now())
            .expect("session");
        let app = standalone(lake, DashboardSettings::default()).expect("dashboard");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("listener");
        let address = listener.local_addr().expect("address");
        runtime.spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Served {
            runtime,
            base: format!("http://{address}"),
            cookie: format!("pipewatch-session={}", session.token),
            client: reqwest::Client::new(),
        }
    }

    /// Fetches `path`; anything but 200 ends the benchmark.
    fn get(&self, path: &str) -> Duration {
        self.runtime.block_on(async {
            let started = Instant::now();
            let response = self
                .client
                .get(format!("{}{path}", self.base))
                .header("cookie", &self.cookie)
                .send()
                .await
                .unwrap_or_else(|e| panic!("GET {path}: {e}"));
            let status = response.status();
            let body = response.bytes().await.expect("body");
            let took = started.elapsed();
            assert_eq!(status, reqwest::StatusCode::OK, "GET {path}");
            std::hint::black_box(body);
            took
        })
    }
}

/// A repository, a secret and an alert of the lake, for the pages about one.
fn pages(lake: &Path, runtime: &tokio::runtime::Runtime) -> Vec<(String, String)> {
    let (repo, secret) = runtime.block_on(async {
        let service = QueryService::open(lake, QueryLimits::default())
            .await
            .expect("lake");
        let first = |sql: &'static str| {
            let service = &service;
            async move {
                let out = service.query(sql).await.expect(sql);
                out.batches
                    .iter()
                    .find(|b| b.num_rows() > 0)
                    .and_then(|b| {
                        arrow::array::cast::as_string_array(b.column(0))
                            .iter()
                            .next()
                            .flatten()
                            .map(str::to_owned)
                    })
                    .unwrap_or_default()
            }
        };
        (
            first("SELECT repo FROM events WHERE repo IS NOT NULL GROUP BY repo ORDER BY count(*) DESC LIMIT 1").await,
            first("SELECT target_name FROM secret_access WHERE target_name IS NOT NULL GROUP BY target_name ORDER BY count(*) DESC LIMIT 1").await,
        )
    });
    let alert = pipewatch_analytics::alerts::AlertStore::open(lake)
        .expect("alerts")
        .list(&Default::default())
        .expect("alerts")
        .first()
        .map(|a| a.alert_id.clone())
        .unwrap_or_default();
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    [
        ("overview", "/".to_owned()),
        ("alerts", "/alerts".to_owned()),
        ("alert", format!("/alerts/{}", encode(&alert))),
        ("repos", "/repos".to_owned()),
        ("repo", format!("/repo?name={}", encode(&repo))),
        ("secrets", "/secrets".to_owned()),
        ("secret", format!("/secrets?name={}", encode(&secret))),
        ("ingestion", "/ingestion".to_owned()),
        ("sql", "/sql".to_owned()),
        ("audit", "/audit".to_owned()),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_owned(), path))
    .collect()
}

fn bench_pages(c: &mut Criterion, label: &str, lake: &Path, events: u64, goal_ms: f64) {
    let served = Served::start(lake);
    let pages = pages(lake, &served.runtime);
    // First views: the lake is opened and the rollups are built.
    let mut first = Vec::new();
    for (name, path) in &pages {
        first.push((name.clone(), served.get(path)));
    }

    let mut group = c.benchmark_group(format!("dashboard_pages_{label}"));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let mut latencies: Vec<(String, Vec<Duration>)> = Vec::new();
    for (name, path) in &pages {
        let mut seen = Vec::new();
        group.bench_function(name.as_str(), |b| {
            b.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let took = served.get(path);
                    seen.push(took);
                    total += took;
                }
                total
            });
        });
        seen.sort();
        latencies.push((name.clone(), seen));
    }
    group.finish();

    println!("\ndashboard pages, {label} lake ({events} events), goal p95 < {goal_ms} ms:");
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>12}  goal",
        "page", "p50 ms", "p95 ms", "max ms", "first view"
    );
    for ((name, seen), (_, first_view)) in latencies.iter().zip(&first) {
        let p95 = percentile_ms(seen, 95.0);
        println!(
            "{name:<10} {:>10.1} {:>10.1} {:>10.1} {:>10.1}ms  {}",
            percentile_ms(seen, 50.0),
            p95,
            percentile_ms(seen, 100.0),
            first_view.as_secs_f64() * 1e3,
            if p95 < goal_ms { "met" } else { "MISSED" }
        );
    }
    drop(served);
    overview_figures(c, label, lake);
}

/// The overview's figures from the lake (the peer) and from the rollups.
fn overview_figures(c: &mut Criterion, label: &str, lake: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let limits = QueryLimits {
        max_rows: usize::MAX,
        timeout: Duration::from_secs(3_600),
        ..QueryLimits::default()
    };
    let service = runtime
        .block_on(QueryService::open(lake, limits))
        .expect("lake");
    let built = Instant::now();
    let rollups = runtime
        .block_on(Rollups::build(&service, lake_version(lake)))
        .expect("rollups");
    let build_time = built.elapsed();
    let mut group = c.benchmark_group(format!("overview_figures_{label}"));
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    let mut means = Vec::new();
    for source in ["lake", "rollups"] {
        let mut total_time = Duration::ZERO;
        let mut runs = 0u32;
        group.bench_function(source, |b| {
            b.iter_custom(|iterations| {
                let started = Instant::now();
                for _ in 0..iterations {
                    let report = runtime.block_on(async {
                        if source == "lake" {
                            run_metrics(&service, Scope::Org, Window::days(30)).await
                        } else {
                            rollups.report(Scope::Org, Window::days(30)).await
                        }
                    });
                    std::hint::black_box(report.expect("figures"));
                }
                let took = started.elapsed();
                total_time += took;
                runs += u32::try_from(iterations).unwrap_or(u32::MAX);
                took
            });
        });
        means.push(total_time / runs.max(1));
    }
    group.finish();
    if let [lake_mean, rollup_mean] = means[..] {
        println!(
            "overview figures, {label}: from the lake {:.1} ms, from the rollups {:.1} ms \
             (ratio {:.1}x); building the rollups took {:.1} ms",
            lake_mean.as_secs_f64() * 1e3,
            rollup_mean.as_secs_f64() * 1e3,
            lake_mean.as_secs_f64() / rollup_mean.as_secs_f64().max(1e-9),
            build_time.as_secs_f64() * 1e3,
        );
    }
}

fn lakes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-lakes")
}

fn dashboard(c: &mut Criterion) {
    let full = measuring();
    let scratch = tempfile::tempdir().expect("scratch dir");
    let demo = tempfile::tempdir().expect("demo lake");
    // `cargo test --benches` runs once: two days, grown to four copies.
    let days = if full { 14 } else { 2 };
    let corpus = Corpus::generate(scratch.path(), days).expect("corpus");
    let demo_events = demo_lake(&corpus, demo.path()).expect("demo lake");
    bench_pages(c, "demo", demo.path(), demo_events, 200.0);

    let target: u64 = if full { 10_000_000 } else { demo_events * 4 };
    let grown = lakes_dir().join(format!("pages-{target}"));
    let done = grown.join("complete");
    let events = match std::fs::read_to_string(&done) {
        Ok(text) if full => text.trim().parse().unwrap_or(0),
        _ => 0,
    };
    let events = if events > 0 {
        events
    } else {
        let _ = std::fs::remove_dir_all(&grown);
        let started = Instant::now();
        let written = grow_lake(demo.path(), &grown, target).expect("grown lake");
        std::fs::write(&done, written.to_string()).expect("marker");
        println!(
            "grew the lake to {written} events in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        written
    };
    let label = if full { "10m" } else { "grown" };
    bench_pages(c, label, &grown, events, 1_000.0);
}

criterion_group!(benches, dashboard);
criterion_main!(benches);
