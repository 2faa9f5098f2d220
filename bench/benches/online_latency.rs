//! Online detection latency: events arrive at a steady 5,000 events/s
//! through the intake (grouped into lake commits as `pipewatch serve` does),
//! every committed batch is scored by all detectors warmed on the lake's
//! history, and alerts are stored in the control database. Reports the
//! time from each batch's lake commit to its alerts being stored: p50, p99,
//! max. 60 s of load under `cargo bench`, 5 s under `cargo test`.

use std::time::{Duration, Instant};

use chrono::Utc;
use pipewatch_analytics::alerts::AlertStore;
use pipewatch_analytics::detect::{DetectConfig, Engine};
use pipewatch_analytics::{QueryLimits, QueryService};
use pipewatch_bench::{Corpus, measuring, percentile_ms};
use pipewatch_ingest::intake::{Intake, IntakeSettings, Submission};
use pipewatch_ingest::metrics::IngestMetrics;
use pipewatch_ingest::{Input, LakeWriter};
use pipewatch_schema::{Event, EventId};

const RATE: usize = 5_000;
const TICK: Duration = Duration::from_millis(20);

fn main() {
    let seconds = if measuring() { 60 } else { 5 };
    let scratch = tempfile::tempdir().expect("scratch");
    let corpus = Corpus::generate(&scratch.path().join("native"), 14).expect("corpus");
    let mut events: Vec<Event> = corpus
        .files
        .iter()
        .flat_map(|f| {
            pipewatch_ingest::decoders::decode(None, &Input::new(&f.origin, &f.bytes))
                .1
                .events
        })
        .collect();
    events.sort_by_key(|e| e.event_time);
    let live = events.split_off(events.len() / 2);

    // The first half is history: baselines learn from it.
    let lake = scratch.path().join("lake");
    let mut writer = LakeWriter::open(&lake).expect("lake");
    for chunk in events.chunks(50_000) {
        writer.commit(chunk.to_vec()).expect("history committed");
    }
    drop(writer);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut engine = Engine::new(&DetectConfig::default()).expect("engine");
    let learned = runtime.block_on(async {
        let service = QueryService::open(&lake, QueryLimits::default())
            .await
            .expect("lake");
        engine.warm_up_to_latest(&service).await.expect("warm up").0
    });

    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = IngestMetrics::register(&mut registry);
    let (feed_tx, mut feed) = tokio::sync::mpsc::channel(64);
    let intake =
        Intake::start(&lake, IntakeSettings::default(), metrics, Some(feed_tx)).expect("intake");
    let mut store = AlertStore::open(&lake).expect("alert store");
    let window = chrono::Duration::minutes(i64::from(engine.params().group_window_minutes));
    let detection = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let mut alerts = 0u64;
        let mut scored = 0usize;
        while let Some(batch) = feed.blocking_recv() {
            let findings = engine.score_batch(&batch.batch);
            if !findings.is_empty() {
                alerts += store
                    .record(&findings, window, Utc::now())
                    .expect("alerts stored")
                    .new;
            }
            scored += batch.batch.num_rows();
            latencies.push(batch.committed_at.elapsed());
        }
        (latencies, alerts, scored)
    });

    // The live half, replayed (shifted later, with fresh ids) until the
    // load has run for `seconds`.
    let span = match (live.first(), live.last()) {
        (Some(first), Some(last)) => last.event_time - first.event_time + chrono::Duration::days(1),
        _ => chrono::Duration::days(1),
    };
    let total = RATE * seconds;
    let per_tick = RATE * TICK.as_millis() as usize / 1000;
    let handle = intake.handle();
    let started = Instant::now();
    let mut acks = Vec::new();
    let mut sent = 0;
    let mut copy = 0i32;
    let mut source = live.iter().cycle().enumerate();
    while sent < total {
        let mut chunk = Vec::with_capacity(per_tick);
        for (n, event) in source.by_ref().take(per_tick) {
            copy = i32::try_from(n / live.len()).unwrap_or(i32::MAX);
            let mut event = event.clone();
            if copy > 0 {
                event.event_time += span * copy;
                event.source_event_id = format!("{}~{copy}", event.source_event_id);
                event.event_id = EventId::derive(&event.source, &event.source_event_id);
            }
            chunk.push(event);
        }
        sent += chunk.len();
        let submission = Submission {
            source: "bench",
            events: chunk,
            dead_letters: Vec::new(),
            file_stem: None,
        };
        acks.push(
            handle
                .submit(submission)
                .expect("the intake keeps up with 5k events/s"),
        );
        let due = TICK * u32::try_from(acks.len()).unwrap_or(u32::MAX);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let offered = started.elapsed();
    for ack in acks {
        ack.blocking_recv()
            .expect("acknowledged")
            .expect("committed");
    }
    drop(handle);
    intake.close();
    let (mut latencies, alerts, scored) = detection.join().expect("detection thread");
    latencies.sort();
    println!(
        "\nOnline detection at {RATE} events/s for {seconds} s ({} detectors, baselines from {} events, {copy} replays of the live half):",
        pipewatch_analytics::detect::DetectorKind::ALL.len(),
        learned.learned
    );
    println!(
        "offered {sent} events in {:.1} s ({:.0} events/s); scored {scored} in {} committed batches; {alerts} alerts raised",
        offered.as_secs_f64(),
        sent as f64 / offered.as_secs_f64(),
        latencies.len()
    );
    println!(
        "commit -> alerts stored: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile_ms(&latencies, 50.0),
        percentile_ms(&latencies, 99.0),
        percentile_ms(&latencies, 100.0)
    );
}
