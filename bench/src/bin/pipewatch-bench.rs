//! The pipewatch side of `bench/run`: a long-running query process that
//! times each statement the harness sends it (as the server would run it),
//! lake growing, the resource detector's feature vectors for a peer model,
//! and the detection backfill. Answers are JSON, one per line.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use futures::StreamExt;
use pipewatch_analytics::detect::{DetectConfig, Engine, EventRow, rows_from_batch};
use pipewatch_analytics::{QueryLimits, QueryService};
use serde::{Deserialize, Serialize};

// The allocator of the `pipewatch` binary, so queries are timed as the
// server runs them.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(about = "pipewatch's side of the comparison benchmarks (see bench/run)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads `{"sql": "..."}` lines on stdin and answers each with its
    /// time, row count and any error, on stdout.
    Queries {
        /// The data directory holding the lake.
        #[arg(long)]
        data_dir: PathBuf,
        /// Memory a query may use, in MiB.
        #[arg(long, default_value_t = 8192)]
        memory_mib: usize,
        /// Seconds before a query is cancelled.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
        /// Reads every day's files even under an `event_time` bound.
        #[arg(long)]
        without_date_pruning: bool,
        /// Keeps DataFusion's own per-session footer cache instead of the
        /// process-wide one.
        #[arg(long)]
        without_footer_cache: bool,
    },
    /// Grows a lake to at least `events` events with copies of itself
    /// moved later in time or renamed as more organisations.
    Grow {
        /// The lake to copy.
        #[arg(long)]
        from: PathBuf,
        /// Where the grown lake goes (created).
        #[arg(long)]
        to: PathBuf,
        /// Events the grown lake holds at least.
        #[arg(long)]
        events: u64,
    },
    /// Runs the resource detector alone over the lake's job records (timed)
    /// and writes the feature vectors it judged, with its verdicts and the
    /// labelled incidents they belong to, for a peer model to score.
    Resources {
        /// The data directory holding the lake.
        #[arg(long)]
        data_dir: PathBuf,
        /// The labels file written by `pipewatch generate`.
        #[arg(long)]
        labels: PathBuf,
        /// The Parquet file of feature vectors to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Scores every event of the lake in time order with every detector
    /// enabled (a backfill) and prints the rate.
    Detect {
        /// The data directory holding the lake.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Deserialize)]
struct QueryRequest {
    sql: String,
}

#[derive(Debug, Serialize)]
struct QueryAnswer {
    seconds: f64,
    rows: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct DetectAnswer {
    events: u64,
    findings: u64,
    seconds: f64,
    cpu_seconds: f64,
}

/// Room for a whole lake's sorted history in the harness's own reads.
fn harness_limits() -> QueryLimits {
    QueryLimits {
        memory_bytes: 8 << 30,
        ..QueryLimits::default()
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Queries {
            data_dir,
            memory_mib,
            timeout_secs,
            without_date_pruning,
            without_footer_cache,
        } => {
            if without_footer_cache {
                pipewatch_analytics::query::use_stock_footer_cache();
            }
            let limits = QueryLimits {
                memory_bytes: memory_mib.saturating_mul(1024 * 1024),
                timeout: Duration::from_secs(timeout_secs),
                max_rows: usize::MAX,
            };
            runtime.block_on(serve_queries(data_dir, limits, !without_date_pruning))
        }
        Command::Grow { from, to, events } => {
            let written = pipewatch_bench::grow_lake(&from, &to, events)
                .map_err(|e| anyhow::anyhow!("cannot grow {}: {e}", from.display()))?;
            println!("{}", serde_json::json!({ "events": written }));
            Ok(())
        }
        Command::Resources {
            data_dir,
            labels,
            out,
        } => runtime.block_on(resources(data_dir, labels, out)),
        Command::Detect { data_dir } => runtime.block_on(backfill(data_dir)),
    }
}

async fn serve_queries(
    data_dir: PathBuf,
    limits: QueryLimits,
    date_pruning: bool,
) -> anyhow::Result<()> {
    let mut service = QueryService::open(&data_dir, limits)
        .await
        .with_context(|| format!("cannot open the lake at {}", data_dir.display()))?;
    if !date_pruning {
        service = service.without_date_pruning();
    }
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.context("cannot read a request")?;
        if line.trim().is_empty() {
            continue;
        }
        let request: QueryRequest =
            serde_json::from_str(&line).with_context(|| format!("bad request: {line}"))?;
        let started = Instant::now();
        let answer = match service.query(&request.sql).await {
            Ok(output) => QueryAnswer {
                seconds: started.elapsed().as_secs_f64(),
                rows: output.rows,
                error: None,
            },
            Err(error) => QueryAnswer {
                seconds: started.elapsed().as_secs_f64(),
                rows: 0,
                error: Some(error.to_string()),
            },
        };
        serde_json::to_writer(&mut stdout, &answer)?;
        writeln!(stdout)?;
        stdout.flush()?;
    }
    Ok(())
}

/// `pipewatch detect --backfill` over the whole lake: every detector, every
/// event in time order, reading included, timed in wall and process CPU.
async fn backfill(data_dir: PathBuf) -> anyhow::Result<()> {
    let cpu = cpu_time::ProcessTime::now();
    let started = Instant::now();
    let service = QueryService::open_for_history(&data_dir, QueryLimits::default())
        .await
        .with_context(|| format!("cannot open the lake at {}", data_dir.display()))?;
    let mut engine = Engine::new(&DetectConfig::default())
        .map_err(|e| anyhow::anyhow!("default detection settings: {e}"))?;
    let run = engine
        .backfill(&service, None, |_, _| {})
        .await
        .context("backfill")?;
    let answer = DetectAnswer {
        events: run.scored,
        findings: run.findings,
        seconds: started.elapsed().as_secs_f64(),
        cpu_seconds: cpu.elapsed().as_secs_f64(),
    };
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}

#[derive(Debug, Serialize)]
struct ResourcesAnswer {
    records: usize,
    vectors: usize,
    flagged: usize,
    score_seconds: f64,
    score_cpu_seconds: f64,
    incidents: usize,
}

async fn resources(data_dir: PathBuf, labels: PathBuf, out: PathBuf) -> anyhow::Result<()> {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Float64Builder, Int64Builder, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};
    use pipewatch_analytics::detect::Phase;
    use pipewatch_analytics::detect::detectors::resource_anomaly;
    use pipewatch_analytics::eval::{Labels, resolve};

    let service = QueryService::open(&data_dir, harness_limits())
        .await
        .with_context(|| format!("cannot open the lake at {}", data_dir.display()))?;
    let bytes =
        std::fs::read(&labels).with_context(|| format!("cannot read {}", labels.display()))?;
    let labels: Labels = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a labels file", labels.display()))?;
    let resolved = resolve(&service, &labels).await?;
    let mut stream = service
        .stream(
            "SELECT * FROM events WHERE category = 'pipeline_job' ORDER BY event_time, event_id",
        )
        .await?;
    let mut rows: Vec<EventRow> = Vec::new();
    while let Some(batch) = stream.next().await {
        rows.extend(rows_from_batch(&batch?));
    }

    let mut detector = resource_anomaly::build(resource_anomaly::Params::default());
    let mut findings = Vec::new();
    let cpu = cpu_time::ProcessTime::now();
    let started = Instant::now();
    for row in &rows {
        detector.observe(row, Phase::Score, &mut findings);
    }
    let score_seconds = started.elapsed().as_secs_f64();
    let score_cpu_seconds = cpu.elapsed().as_secs_f64();
    let flagged: HashMap<&str, f64> = findings
        .iter()
        .filter_map(|f| f.evidence.first().map(|id| (id.as_str(), f.score)))
        .collect();

    let mut event_id = StringBuilder::new();
    let mut job = StringBuilder::new();
    let mut time = Int64Builder::new();
    let mut features: Vec<Float64Builder> = (0..4).map(|_| Float64Builder::new()).collect();
    let mut score = Float64Builder::new();
    let mut incident = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut incidents = std::collections::HashSet::new();
    for row in &rows {
        let Some((key, x)) = resource_anomaly::job_features(row) else {
            continue;
        };
        event_id.append_value(&row.event_id);
        job.append_value(key);
        time.append_value(row.event_time.timestamp_micros());
        for (i, builder) in features.iter_mut().enumerate() {
            builder.append_option(x.get(i).copied());
        }
        score.append_option(flagged.get(row.event_id.as_str()).copied());
        let of = resolved.incidents_of(std::slice::from_ref(&row.event_id));
        match of.first().and_then(|&i| labels.incidents.get(i)) {
            Some(found) => {
                incidents.insert(found.id.clone());
                incident.append_value(&found.id);
                kind.append_value(&found.kind);
            }
            None => {
                incident.append_null();
                kind.append_null();
            }
        }
    }
    let mut fields = vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("job", DataType::Utf8, false),
        Field::new("event_time_us", DataType::Int64, false),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(job.finish()),
        Arc::new(time.finish()),
    ];
    for (i, mut builder) in features.into_iter().enumerate() {
        fields.push(Field::new(format!("x{i}"), DataType::Float64, true));
        columns.push(Arc::new(builder.finish()));
    }
    fields.push(Field::new("pipewatch_score", DataType::Float64, true));
    columns.push(Arc::new(score.finish()));
    fields.push(Field::new("incident", DataType::Utf8, true));
    columns.push(Arc::new(incident.finish()));
    fields.push(Field::new("incident_kind", DataType::Utf8, true));
    columns.push(Arc::new(kind.finish()));
    let batch = arrow::record_batch::RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let file =
        std::fs::File::create(&out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)?;
    writer.write(&batch)?;
    writer.close()?;
    let answer = ResourcesAnswer {
        records: rows.len(),
        vectors: batch.num_rows(),
        flagged: flagged.len(),
        score_seconds,
        score_cpu_seconds,
        incidents: incidents.len(),
    };
    println!("{}", serde_json::to_string(&answer)?);
    Ok(())
}
