//! The engine: hands each event to the detectors that declared its
//! category, in time order, applies allow-lists, and reads history from the
//! lake for warm-up and backfill.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use pipewatch_schema::Category;

use super::config::{CommonParams, DetectConfig, EngineParams, ParamError};
use super::registry::{BuiltDetector, build_detectors};
use super::row::{DETECTOR_COLUMNS, rows_from_batch};
use super::{EventRow, Finding, FindingScope, Phase};
use crate::query::{QueryError, QueryService};

/// Errors of a detection run.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The configuration cannot work.
    #[error(transparent)]
    Params(#[from] ParamError),
    /// Reading history from the lake failed.
    #[error("reading the lake: {0}")]
    Query(#[from] QueryError),
}

/// What a warm-up or backfill went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DetectRun {
    /// Events replayed to learn baselines.
    pub learned: u64,
    /// Events scored.
    pub scored: u64,
    /// Findings reported (before grouping into alerts).
    pub findings: u64,
}

/// The detectors with their routing by category.
#[derive(Debug)]
pub struct Engine {
    detectors: Vec<BuiltDetector>,
    by_category: HashMap<Category, Vec<usize>>,
    params: EngineParams,
}

impl Engine {
    /// Checks the configuration and builds every enabled detector.
    pub fn new(config: &DetectConfig) -> Result<Self, ParamError> {
        let detectors = build_detectors(config)?;
        let mut by_category: HashMap<Category, Vec<usize>> = HashMap::new();
        for (index, built) in detectors.iter().enumerate() {
            for category in built.detector.categories() {
                by_category.entry(*category).or_default().push(index);
            }
        }
        Ok(Engine {
            detectors,
            by_category,
            params: config.detect.clone(),
        })
    }

    /// The engine settings in force.
    pub fn params(&self) -> &EngineParams {
        &self.params
    }

    /// Names of the detectors that run.
    pub fn detector_names(&self) -> Vec<&'static str> {
        self.detectors.iter().map(|d| d.kind.name()).collect()
    }

    /// Folds `rows` into the baselines without judging them.
    pub fn learn(&mut self, rows: &mut [EventRow]) {
        let mut sink = Vec::new();
        self.run(rows, Phase::Learn, &mut sink);
    }

    /// Judges `rows` (any order; they are sorted by time here) and returns
    /// the findings not covered by an allow-list.
    pub fn score(&mut self, rows: &mut [EventRow]) -> Vec<Finding> {
        let mut findings = Vec::new();
        self.run(rows, Phase::Score, &mut findings);
        findings
    }

    /// Judges one committed batch of the `events` table: the live path's
    /// entry point, the same scoring as backfill.
    pub fn score_batch(
        &mut self,
        batch: &datafusion::arrow::record_batch::RecordBatch,
    ) -> Vec<Finding> {
        let mut rows = rows_from_batch(batch);
        self.score(&mut rows)
    }

    fn run(&mut self, rows: &mut [EventRow], phase: Phase, out: &mut Vec<Finding>) {
        rows.sort_by(|a, b| {
            a.event_time
                .cmp(&b.event_time)
                .then_with(|| a.event_id.cmp(&b.event_id))
        });
        let mut found = Vec::new();
        for row in rows.iter() {
            let Some(indices) = self.by_category.get(&row.category) else {
                continue;
            };
            for &index in indices {
                let built = &mut self.detectors[index];
                found.clear();
                built.detector.observe(row, phase, &mut found);
                if phase == Phase::Score {
                    let common = CommonParams {
                        enabled: true,
                        allow: &built.allow,
                    };
                    out.extend(found.drain(..).filter(|f| !common.allows(&f.entity)).map(
                        |mut f| {
                            if f.scope == FindingScope::default() {
                                f.scope = FindingScope::of(row);
                            }
                            f
                        },
                    ));
                }
            }
        }
    }

    /// Warms the baselines up with the learning window before `until`.
    pub async fn warm_up(
        &mut self,
        service: &QueryService,
        until: DateTime<Utc>,
    ) -> Result<DetectRun, DetectError> {
        let from = until - chrono::Duration::days(i64::from(self.params.learning_window_days));
        let mut run = DetectRun::default();
        let sql = history_sql(Some(from), Some(until));
        let batch_events = self.params.batch_events;
        read_history(service, &sql, batch_events, |rows| {
            run.learned += rows.len() as u64;
            self.learn(rows);
        })
        .await?;
        Ok(run)
    }

    /// Warms the baselines up with the learning window that ends at the
    /// newest stored event: what the live service does at start, so a lake
    /// whose history stopped a while ago still gives baselines. Returns the
    /// run and the end of the window (now for an empty lake).
    pub async fn warm_up_to_latest(
        &mut self,
        service: &QueryService,
    ) -> Result<(DetectRun, DateTime<Utc>), DetectError> {
        let latest = latest_event_time(service).await?;
        // Just past the newest event, so it is learned too.
        let until = latest.map_or_else(Utc::now, |t| t + chrono::Duration::microseconds(1));
        let run = self.warm_up(service, until).await?;
        Ok((run, until))
    }

    /// Scores everything from `since` on (all history when `None`), batch
    /// by batch, after warming up on the learning window before it. Each
    /// batch's findings go to `on_findings` as soon as they are known.
    pub async fn backfill(
        &mut self,
        service: &QueryService,
        since: Option<DateTime<Utc>>,
        mut on_findings: impl FnMut(&[Finding], &DetectRun),
    ) -> Result<DetectRun, DetectError> {
        let mut run = match since {
            Some(since) => self.warm_up(service, since).await?,
            None => DetectRun::default(),
        };
        let sql = history_sql(since, None);
        let batch_events = self.params.batch_events;
        read_history(service, &sql, batch_events, |rows| {
            run.scored += rows.len() as u64;
            let findings = self.score(rows);
            run.findings += findings.len() as u64;
            on_findings(&findings, &run);
        })
        .await?;
        Ok(run)
    }
}

/// The newest `event_time` in the lake, if it holds any event.
async fn latest_event_time(service: &QueryService) -> Result<Option<DateTime<Utc>>, DetectError> {
    use datafusion::arrow::array::{Array, TimestampMicrosecondArray};
    let output = service
        .query("SELECT max(event_time) AS latest FROM events")
        .await?;
    Ok(output.batches.first().and_then(|batch| {
        let column = batch.column(0);
        let times = column
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()?;
        (!times.is_empty() && times.is_valid(0))
            .then(|| DateTime::from_timestamp_micros(times.value(0)))
            .flatten()
    }))
}

/// The history query: detector columns, time-ordered, optionally bounded.
fn history_sql(from: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> String {
    let mut conditions = Vec::new();
    if let Some(from) = from {
        conditions.push(format!("event_time >= TIMESTAMP '{}'", from.to_rfc3339()));
    }
    if let Some(until) = until {
        conditions.push(format!("event_time < TIMESTAMP '{}'", until.to_rfc3339()));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {} FROM events{filter} ORDER BY event_time, event_id",
        DETECTOR_COLUMNS.join(", ")
    )
}

/// Streams `sql` and hands its rows over in chunks of about `batch_events`.
async fn read_history(
    service: &QueryService,
    sql: &str,
    batch_events: usize,
    mut on_rows: impl FnMut(&mut [EventRow]),
) -> Result<(), DetectError> {
    let mut stream = service.stream(sql).await?;
    let mut pending: Vec<EventRow> = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        pending.extend(rows_from_batch(&batch));
        if pending.len() >= batch_events {
            on_rows(&mut pending);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        on_rows(&mut pending);
    }
    Ok(())
}
