//! The metrics runner: wraps each registered query in an aggregate over the
//! window (per scope and day, and per scope over the whole window), runs it
//! through the read-only [`QueryService`], and assembles values and daily
//! series.

use std::collections::BTreeMap;

use datafusion::arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;

use super::{
    DETAILS, Detail, METRICS, Metric, MetricKind, MetricsError, Scope, UNATTRIBUTED, Window,
};
use crate::query::{QueryOutput, QueryService};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One day of a metric's series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesPoint {
    /// Days since 1970-01-01 (see [`format_day`]).
    pub day: i32,
    /// The day's value; `None` when a ratio or mean had nothing to divide.
    pub value: Option<f64>,
}

/// A metric's value for one scope (and breakdown row) over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The metric.
    pub metric: &'static Metric,
    /// The org or repository; `None` when the metric had no rows at all.
    pub scope: Option<String>,
    /// Breakdown column values (empty unless a breakdown metric).
    pub breakdown: Vec<(&'static str, String)>,
    /// Sum of the numerators (distinct count for counting kinds).
    pub numerator: f64,
    /// Sum of the denominators (`None` for counting kinds).
    pub denominator: Option<f64>,
    /// The current value; `None` when a ratio or mean had nothing to divide.
    pub value: Option<f64>,
    /// Observations still open (means only).
    pub open: Option<u64>,
    /// One point per day of the window, oldest first.
    pub series: Vec<SeriesPoint>,
}

/// Every metric's values for one run.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsReport {
    /// What values are computed for.
    pub scope: Scope,
    /// The window asked for.
    pub window: Window,
    /// Time of the newest event in the lake, microseconds since the epoch
    /// (`None`: the lake is empty).
    pub newest_event_micros: Option<i64>,
    /// First day of the window (days since the epoch).
    pub first_day: i32,
    /// Last day of the window: the day of the newest event.
    pub last_day: i32,
    /// Values, metric by metric in registry order.
    pub values: Vec<MetricValue>,
    /// Each drill-down with its number of rows in the window.
    pub details: Vec<(&'static Detail, usize)>,
}

/// Formats days since 1970-01-01 as `YYYY-MM-DD` (proleptic Gregorian).
pub fn format_day(days: i32) -> String {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Formats microseconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn format_micros(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let secs = micros.rem_euclid(MICROS_PER_DAY) / 1_000_000;
    let day = i32::try_from(days).map_or_else(|_| "?".to_owned(), format_day);
    format!(
        "{day}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Runs every registered metric for `scope` over `window`, which ends at
/// the day of the newest event in the lake.
pub async fn run_metrics(
    service: &QueryService,
    scope: Scope,
    window: Window,
) -> Result<MetricsReport, MetricsError> {
    let newest = newest_event(service).await?;
    report(service, Rows::Lake, newest, scope, window).await
}

/// Where a run reads each metric's daily rows from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// The metric's own query over the lake.
    Lake,
    /// The metric's rollup table (see [`super::rollup`]).
    Rollups,
}

pub(crate) async fn report(
    service: &QueryService,
    rows: Rows,
    newest: Option<i64>,
    scope: Scope,
    window: Window,
) -> Result<MetricsReport, MetricsError> {
    let last_day = newest.map_or(0, day_of);
    let days = i32::try_from(window.day_count()).unwrap_or(i32::MAX);
    let first_day = last_day.saturating_sub(days - 1);
    let mut report = MetricsReport {
        scope,
        window,
        newest_event_micros: newest,
        first_day,
        last_day,
        values: Vec::new(),
        details: Vec::new(),
    };
    if newest.is_none() {
        return Ok(report);
    }
    for metric in METRICS {
        let values = run_metric(service, rows, metric, scope, first_day, last_day).await?;
        report.values.extend(values);
    }
    for detail in DETAILS {
        let sql = match rows {
            Rows::Lake => format!(
                "SELECT count(*) AS n FROM ({}) AS w",
                detail_sql(detail, first_day, last_day, false)
            ),
            Rows::Rollups => format!(
                "SELECT CAST(coalesce(sum(d.n), 0) AS BIGINT) AS n FROM {} AS d WHERE {}",
                super::rollup::detail_table(detail),
                window_filter("d", first_day, last_day)
            ),
        };
        let output = query(service, detail.name, &sql).await?;
        let rows = match output.batches.first() {
            Some(batch) => int_column(batch, "n", detail.name)?
                .first()
                .copied()
                .flatten()
                .unwrap_or(0),
            None => 0,
        };
        report
            .details
            .push((detail, usize::try_from(rows).unwrap_or(0)));
    }
    Ok(report)
}

/// Runs a drill-down over `window` (ending at the newest event) and returns
/// its rows, ordered as the registry says.
pub async fn run_detail(
    service: &QueryService,
    detail: &'static Detail,
    window: Window,
) -> Result<QueryOutput, MetricsError> {
    let last_day = newest_event(service).await?.map_or(0, day_of);
    let days = i32::try_from(window.day_count()).unwrap_or(i32::MAX);
    let first_day = last_day.saturating_sub(days - 1);
    query(
        service,
        detail.name,
        &detail_sql(detail, first_day, last_day, true),
    )
    .await
}

fn day_of(micros: i64) -> i32 {
    i32::try_from(micros.div_euclid(MICROS_PER_DAY)).unwrap_or(i32::MAX)
}

pub(crate) async fn query(
    service: &QueryService,
    name: &'static str,
    sql: &str,
) -> Result<QueryOutput, MetricsError> {
    service
        .query(sql)
        .await
        .map_err(|source| MetricsError::Query {
            metric: name,
            source,
        })
}

pub(crate) async fn newest_event(service: &QueryService) -> Result<Option<i64>, MetricsError> {
    let output = query(
        service,
        "newest event",
        "SELECT CAST(max(event_time) AS BIGINT) AS newest FROM events",
    )
    .await?;
    Ok(match output.batches.first() {
        Some(batch) => int_column(batch, "newest", "newest event")?
            .first()
            .copied()
            .flatten(),
        None => None,
    })
}

/// The query text without a trailing semicolon, on lines of its own so a
/// trailing `--` comment cannot swallow the wrapper.
pub(crate) fn body(sql: &str) -> &str {
    sql.trim().trim_end_matches(';').trim_end()
}

pub(crate) fn window_filter(alias: &str, first_day: i32, last_day: i32) -> String {
    format!(
        "CAST({alias}.day AS DATE) BETWEEN DATE '{}' AND DATE '{}'",
        format_day(first_day),
        format_day(last_day)
    )
}

fn detail_sql(detail: &Detail, first_day: i32, last_day: i32, ordered: bool) -> String {
    let order = if ordered {
        format!("\nORDER BY {}", detail.order_by)
    } else {
        String::new()
    };
    format!(
        "SELECT * FROM (\n{}\n) AS d\nWHERE {}{order}",
        body(detail.sql),
        window_filter("d", first_day, last_day)
    )
}

/// The aggregate over a metric's rows: per scope (and breakdown) and, when
/// `daily`, per day too.
pub(crate) fn aggregate_sql(
    metric: &Metric,
    rows: Rows,
    scope: Scope,
    first_day: i32,
    last_day: i32,
    daily: bool,
) -> String {
    let source = match rows {
        Rows::Lake => body(metric.sql).to_owned(),
        Rows::Rollups => format!("SELECT * FROM {}", super::rollup::metric_table(metric)),
    };
    let mut keys: Vec<(String, &str)> = Vec::new();
    if daily {
        keys.push(("CAST(m.day AS DATE)".to_owned(), "day"));
    }
    keys.push((
        format!(
            "coalesce(CAST(m.{} AS VARCHAR), '{UNATTRIBUTED}')",
            scope.column()
        ),
        "scope",
    ));
    for column in metric.kind.breakdown() {
        keys.push((
            format!("coalesce(CAST(m.{column} AS VARCHAR), 'unknown')"),
            column,
        ));
    }
    let aggregates = match metric.kind {
        MetricKind::Ratio => {
            "sum(CAST(m.numerator AS DOUBLE)) AS numerator, \
             sum(CAST(m.denominator AS DOUBLE)) AS denominator"
        }
        MetricKind::Mean => {
            "sum(CAST(m.numerator AS DOUBLE)) AS numerator, \
             sum(CAST(m.denominator AS DOUBLE)) AS denominator, \
             sum(CAST(m.open AS BIGINT)) AS open"
        }
        MetricKind::DistinctCount | MetricKind::Breakdown(_) => {
            "CAST(count(DISTINCT m.key) AS DOUBLE) AS numerator"
        }
    };
    let select: Vec<String> = keys
        .iter()
        .map(|(expr, alias)| format!("{expr} AS {alias}"))
        .collect();
    let group: Vec<&str> = keys.iter().map(|(expr, _)| expr.as_str()).collect();
    format!(
        "SELECT {}, {aggregates}\nFROM (\n{}\n) AS m\nWHERE {}\nGROUP BY {}",
        select.join(", "),
        source,
        window_filter("m", first_day, last_day),
        group.join(", ")
    )
}

/// Sums read back from an aggregate row.
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    numerator: f64,
    denominator: f64,
    open: i64,
}

impl Sums {
    fn value(self, kind: MetricKind) -> Option<f64> {
        match kind {
            MetricKind::Ratio | MetricKind::Mean => {
                (self.denominator > 0.0).then(|| self.numerator / self.denominator)
            }
            MetricKind::DistinctCount | MetricKind::Breakdown(_) => Some(self.numerator),
        }
    }
}

/// Scope and breakdown values identifying one output row.
type RowKey = (String, Vec<String>);

async fn run_metric(
    service: &QueryService,
    rows: Rows,
    metric: &'static Metric,
    scope: Scope,
    first_day: i32,
    last_day: i32,
) -> Result<Vec<MetricValue>, MetricsError> {
    let kind = metric.kind;
    let totals_sql = aggregate_sql(metric, rows, scope, first_day, last_day, false);
    let daily_sql = aggregate_sql(metric, rows, scope, first_day, last_day, true);
    let totals = read_sums(
        metric,
        &query(service, metric.name, &totals_sql).await?,
        false,
    )?;
    let daily = read_sums(
        metric,
        &query(service, metric.name, &daily_sql).await?,
        true,
    )?;

    let mut per_day: BTreeMap<RowKey, BTreeMap<i32, Sums>> = BTreeMap::new();
    for (key, day, sums) in daily {
        if let Some(day) = day {
            per_day.entry(key).or_default().insert(day, sums);
        }
    }
    let mut values: Vec<MetricValue> = totals
        .into_iter()
        .map(|((scope, breakdown), _, sums)| {
            let days = per_day.remove(&(scope.clone(), breakdown.clone()));
            let series = (first_day..=last_day)
                .map(|day| {
                    let value = match days.as_ref().and_then(|d| d.get(&day)) {
                        Some(sums) => sums.value(kind),
                        // Nothing seen that day: zero things counted, nothing to divide.
                        None => match kind {
                            MetricKind::DistinctCount | MetricKind::Breakdown(_) => Some(0.0),
                            MetricKind::Ratio | MetricKind::Mean => None,
                        },
                    };
                    SeriesPoint { day, value }
                })
                .collect();
            let counting = matches!(kind, MetricKind::DistinctCount | MetricKind::Breakdown(_));
            MetricValue {
                metric,
                scope: Some(scope),
                breakdown: kind.breakdown().iter().copied().zip(breakdown).collect(),
                numerator: sums.numerator,
                denominator: (!counting).then_some(sums.denominator),
                value: sums.value(kind),
                open: (kind == MetricKind::Mean).then(|| u64::try_from(sums.open).unwrap_or(0)),
                series,
            }
        })
        .collect();
    values.sort_by(|a, b| {
        order(a)
            .cmp(&order(b))
            .then_with(|| {
                // Larger breakdown rows first; scopes stay grouped by the key above.
                b.numerator.total_cmp(&a.numerator)
            })
            .then_with(|| a.breakdown.cmp(&b.breakdown))
    });
    if values.is_empty() {
        values.push(MetricValue {
            metric,
            scope: None,
            breakdown: Vec::new(),
            numerator: 0.0,
            denominator: None,
            value: match kind {
                MetricKind::DistinctCount | MetricKind::Breakdown(_) => Some(0.0),
                MetricKind::Ratio | MetricKind::Mean => None,
            },
            open: None,
            series: (first_day..=last_day)
                .map(|day| SeriesPoint { day, value: None })
                .collect(),
        });
    }
    Ok(values)
}

/// Sort key: named scopes alphabetically, the unattributed rest last.
fn order(value: &MetricValue) -> (bool, String) {
    let scope = value.scope.clone().unwrap_or_default();
    (scope == UNATTRIBUTED, scope)
}

type SumsRow = (RowKey, Option<i32>, Sums);

fn read_sums(
    metric: &'static Metric,
    output: &QueryOutput,
    daily: bool,
) -> Result<Vec<SumsRow>, MetricsError> {
    let name = metric.name;
    let mut rows = Vec::with_capacity(output.rows);
    for batch in &output.batches {
        let scopes = text_column(batch, "scope", name)?;
        let breakdowns = metric
            .kind
            .breakdown()
            .iter()
            .map(|column| text_column(batch, column, name))
            .collect::<Result<Vec<_>, _>>()?;
        let numerators = float_column(batch, "numerator", name)?;
        let denominators = match metric.kind {
            MetricKind::Ratio | MetricKind::Mean => Some(float_column(batch, "denominator", name)?),
            _ => None,
        };
        let open = match metric.kind {
            MetricKind::Mean => Some(int_column(batch, "open", name)?),
            _ => None,
        };
        let days = if daily {
            Some(date_column(batch, "day", name)?)
        } else {
            None
        };
        for i in 0..batch.num_rows() {
            let scope = scopes[i].clone().unwrap_or_else(|| UNATTRIBUTED.to_owned());
            let breakdown = breakdowns
                .iter()
                .map(|values| values[i].clone().unwrap_or_else(|| "unknown".to_owned()))
                .collect();
            let sums = Sums {
                numerator: numerators[i].unwrap_or(0.0),
                denominator: denominators.as_ref().and_then(|d| d[i]).unwrap_or(0.0),
                open: open.as_ref().and_then(|o| o[i]).unwrap_or(0),
            };
            if !sums.numerator.is_finite() || !sums.denominator.is_finite() {
                return Err(MetricsError::Shape {
                    metric: name,
                    problem: "numerator or denominator is not a finite number".to_owned(),
                });
            }
            let day = days.as_ref().and_then(|d| d[i]);
            rows.push(((scope, breakdown), day, sums));
        }
    }
    Ok(rows)
}

fn cast_column(
    batch: &RecordBatch,
    column: &str,
    to: &DataType,
    metric: &'static str,
) -> Result<ArrayRef, MetricsError> {
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| MetricsError::Shape {
            metric,
            problem: format!("the query returns no column `{column}`"),
        })?;
    cast(array, to).map_err(|e| MetricsError::Shape {
        metric,
        problem: format!("column `{column}` is not {to}: {e}"),
    })
}

fn downcast<'a, T: 'static>(
    array: &'a ArrayRef,
    column: &str,
    metric: &'static str,
) -> Result<&'a T, MetricsError> {
    array
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| MetricsError::Shape {
            metric,
            problem: format!("column `{column}` has an unexpected type"),
        })
}

fn text_column(
    batch: &RecordBatch,
    column: &str,
    metric: &'static str,
) -> Result<Vec<Option<String>>, MetricsError> {
    let array = cast_column(batch, column, &DataType::Utf8, metric)?;
    let values = downcast::<StringArray>(&array, column, metric)?;
    Ok(values.iter().map(|v| v.map(str::to_owned)).collect())
}

fn float_column(
    batch: &RecordBatch,
    column: &str,
    metric: &'static str,
) -> Result<Vec<Option<f64>>, MetricsError> {
    let array = cast_column(batch, column, &DataType::Float64, metric)?;
    Ok(downcast::<Float64Array>(&array, column, metric)?
        .iter()
        .collect())
}

fn int_column(
    batch: &RecordBatch,
    column: &str,
    metric: &'static str,
) -> Result<Vec<Option<i64>>, MetricsError> {
    let array = cast_column(batch, column, &DataType::Int64, metric)?;
    Ok(downcast::<Int64Array>(&array, column, metric)?
        .iter()
        .collect())
}

fn date_column(
    batch: &RecordBatch,
    column: &str,
    metric: &'static str,
) -> Result<Vec<Option<i32>>, MetricsError> {
    let array = cast_column(batch, column, &DataType::Date32, metric)?;
    Ok(downcast::<Date32Array>(&array, column, metric)?
        .iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format_as_calendar_dates() {
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(format_day(-1), "1969-12-31");
        assert_eq!(format_day(11_016), "2000-02-29");
        assert_eq!(format_day(20_745), "2026-10-19");
        assert_eq!(format_micros(1_792_368_127_000_000), "2026-10-19T00:02:07Z");
    }

    #[test]
    fn the_aggregate_filters_the_window_and_groups_by_scope() {
        let metric = super::super::metric("oidc_auth_share").expect("registered");
        let sql = aggregate_sql(metric, Rows::Lake, Scope::Repo, 20_740, 20_745, true);
        assert!(
            sql.contains("BETWEEN DATE '2026-10-14' AND DATE '2026-10-19'"),
            "{sql}"
        );
        assert!(sql.contains("CAST(m.repo AS VARCHAR)"), "{sql}");
        assert!(sql.contains("GROUP BY CAST(m.day AS DATE), "), "{sql}");
    }
}
