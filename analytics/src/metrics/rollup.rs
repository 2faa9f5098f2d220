//! Daily rollups: every metric's rows summed per day and scope, each
//! drill-down's rows counted per day, and events counted per source and
//! hour, built from the lake in one pass so pages read thousands of rows
//! instead of scanning millions.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::run::{Rows, body, newest_event, query, report};
use super::{
    DETAILS, Detail, METRICS, Metric, MetricKind, MetricsError, MetricsReport, Scope, Window,
};
use crate::query::{LakeVersion, QueryError, QueryService};

/// Events per `source`, `category` and `hour` (hours since the epoch):
/// columns `source`, `category`, `hour`, `events`.
pub const EVENT_COUNTS: &str = "rollup_event_counts";

const EVENT_COUNTS_SQL: &str = "SELECT source, category, \
     CAST(floor(date_part('epoch', event_time) / 3600) AS BIGINT) AS hour, \
     count(*) AS events \
     FROM events GROUP BY source, category, hour";

pub(crate) fn metric_table(metric: &Metric) -> String {
    format!("rollup_metric_{}", metric.name)
}

pub(crate) fn detail_table(detail: &Detail) -> String {
    format!("rollup_detail_{}", detail.name)
}

/// A metric's rows reduced to what its window aggregate reads: sums per
/// day and scope for ratios and means (sums of sums are sums), the
/// distinct keys per day and scope for counts (a distinct count over a
/// window cannot be summed from daily counts).
fn metric_rollup_sql(metric: &Metric) -> String {
    let breakdown: String = metric
        .kind
        .breakdown()
        .iter()
        .map(|column| format!(", m.{column}"))
        .collect();
    let keys = format!("CAST(m.day AS DATE) AS day, m.org, m.repo{breakdown}");
    let group = format!("CAST(m.day AS DATE), m.org, m.repo{breakdown}");
    let rows = body(metric.sql);
    match metric.kind {
        MetricKind::Ratio => format!(
            "SELECT {keys}, sum(CAST(m.numerator AS DOUBLE)) AS numerator, \
             sum(CAST(m.denominator AS DOUBLE)) AS denominator\nFROM (\n{rows}\n) AS m\nGROUP BY {group}"
        ),
        MetricKind::Mean => format!(
            "SELECT {keys}, sum(CAST(m.numerator AS DOUBLE)) AS numerator, \
             sum(CAST(m.denominator AS DOUBLE)) AS denominator, \
             sum(CAST(m.open AS BIGINT)) AS open\nFROM (\n{rows}\n) AS m\nGROUP BY {group}"
        ),
        MetricKind::DistinctCount | MetricKind::Breakdown(_) => {
            format!("SELECT DISTINCT {keys}, m.key\nFROM (\n{rows}\n) AS m")
        }
    }
}

fn detail_rollup_sql(detail: &Detail) -> String {
    format!(
        "SELECT CAST(d.day AS DATE) AS day, count(*) AS n\nFROM (\n{}\n) AS d\nGROUP BY CAST(d.day AS DATE)",
        body(detail.sql)
    )
}

/// A caller's own summary of the lake, built and kept with the rollups:
/// `sql` over the lake, readable as `table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub table: &'static str,
    pub sql: &'static str,
}

/// The rollups of one version of the lake, queried in memory.
pub struct Rollups {
    service: QueryService,
    newest_event_micros: Option<i64>,
    lake_version: LakeVersion,
    built_at: DateTime<Utc>,
    took: Duration,
}

impl std::fmt::Debug for Rollups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rollups")
            .field("lake_version", &self.lake_version)
            .field("built_at", &self.built_at)
            .field("took", &self.took)
            .finish_non_exhaustive()
    }
}

impl Rollups {
    /// Builds every rollup from `lake`, which must allow results as large
    /// as a metric's distinct keys (its row limit applies to each rollup).
    /// `version` is the lake's version read before `lake` was opened, so a
    /// file committed meanwhile makes the rollups look stale, never fresh.
    pub async fn build(lake: &QueryService, version: LakeVersion) -> Result<Self, MetricsError> {
        Self::build_with(lake, version, &[]).await
    }

    /// [`Rollups::build`], plus the caller's `summaries`.
    pub async fn build_with(
        lake: &QueryService,
        version: LakeVersion,
        summaries: &[Summary],
    ) -> Result<Self, MetricsError> {
        let started = Instant::now();
        let newest = newest_event(lake).await?;
        let in_memory = |source: QueryError| MetricsError::Query {
            metric: "rollups",
            source,
        };
        let mut service = QueryService::in_memory(lake.limits()).map_err(in_memory)?;
        for metric in METRICS {
            let out = query(lake, metric.name, &metric_rollup_sql(metric)).await?;
            service
                .add_batches(&metric_table(metric), out.schema, out.batches)
                .map_err(in_memory)?;
        }
        for detail in DETAILS {
            let out = query(lake, detail.name, &detail_rollup_sql(detail)).await?;
            service
                .add_batches(&detail_table(detail), out.schema, out.batches)
                .map_err(in_memory)?;
        }
        let counts = query(lake, "event counts", EVENT_COUNTS_SQL).await?;
        service
            .add_batches(EVENT_COUNTS, counts.schema, counts.batches)
            .map_err(in_memory)?;
        for summary in summaries {
            let out = query(lake, summary.table, summary.sql).await?;
            service
                .add_batches(summary.table, out.schema, out.batches)
                .map_err(in_memory)?;
        }
        Ok(Rollups {
            service,
            newest_event_micros: newest,
            lake_version: version,
            built_at: Utc::now(),
            took: started.elapsed(),
        })
    }

    /// Every metric for `scope` over `window`, as [`super::run_metrics`]
    /// computes it from the lake.
    pub async fn report(
        &self,
        scope: Scope,
        window: Window,
    ) -> Result<MetricsReport, MetricsError> {
        report(
            &self.service,
            Rows::Rollups,
            self.newest_event_micros,
            scope,
            window,
        )
        .await
    }

    /// The rollup tables, for queries of their own ([`EVENT_COUNTS`]).
    pub fn service(&self) -> &QueryService {
        &self.service
    }

    /// The lake version the rollups were built from.
    pub fn lake_version(&self) -> LakeVersion {
        self.lake_version
    }

    /// When the build finished.
    pub fn built_at(&self) -> DateTime<Utc> {
        self.built_at
    }

    /// How long the build took.
    pub fn took(&self) -> Duration {
        self.took
    }

    /// Time of the newest event in the lake when built.
    pub fn newest_event_micros(&self) -> Option<i64> {
        self.newest_event_micros
    }
}
