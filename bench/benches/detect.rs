//! Detection speed: backfill throughput over a million events (events/s on
//! one core, every detector enabled) and the latency of scoring one batch
//! of 1,000 events against warm baselines (p50/p99 printed beside
//! criterion's mean), the figure the live path's one-second budget rests on.
//!
//! The million events are the generated organisation's two weeks, repeated
//! later in time, so baselines keep growing as they would over months.

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use pipewatch_analytics::detect::{DetectConfig, Engine, EventRow};
use pipewatch_bench::{Corpus, detector_rows, repeat_history};

/// `cargo test --benches` runs each benchmark once: keep that run small.
fn is_full_run() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn engine() -> Engine {
    Engine::new(&DetectConfig::default()).expect("default detection config")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn detection(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let lake = tempfile::tempdir().expect("lake dir");
    let corpus = Corpus::generate(scratch.path(), 14).expect("corpus");
    let base = detector_rows(&corpus, lake.path()).expect("rows");
    let target = if is_full_run() { 1_000_000 } else { 100_000 };
    let history = repeat_history(&base, target);

    let mut group = c.benchmark_group("detect_backfill");
    group.sample_size(10);
    group.throughput(Throughput::Elements(history.len() as u64));
    group.bench_function("events", |b| {
        b.iter_batched(
            || history.clone(),
            |mut rows| engine().score(&mut rows).len(),
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // Warm baselines on all but the last 200 batches, then time each batch.
    let batch = 1_000;
    let batches = 200.min(history.len() / batch / 2);
    let split = history.len() - batches * batch;
    let mut warm = engine();
    warm.learn(&mut history[..split].to_vec());
    let mut latencies = Vec::with_capacity(batches);
    let mut group = c.benchmark_group("detect_live");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    let mut next = split;
    group.bench_function("score_batch_1k", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                if next + batch > history.len() {
                    next = split;
                }
                let mut rows: Vec<EventRow> = history[next..next + batch].to_vec();
                next += batch;
                let started = Instant::now();
                std::hint::black_box(warm.score(&mut rows));
                let took = started.elapsed();
                latencies.push(took);
                total += took;
            }
            total
        });
    });
    group.finish();
    latencies.sort();
    println!(
        "detect_live/score_batch_1k over {} batches: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

criterion_group!(benches, detection);
criterion_main!(benches);
