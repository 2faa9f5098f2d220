//! Printing a [`MetricsReport`]: an aligned table with a 14-day sparkline
//! per metric and scope (breakdowns as tables of their own, drill-downs
//! listed under them), or a JSON array of value objects.

use serde_json::{Value, json};

use super::run::format_micros;
use super::{MetricKind, MetricValue, MetricsReport, Scope, format_day};

/// Days shown in the table's trend column.
const TREND_DAYS: usize = 14;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const NO_DATA: char = '·';

/// The report as JSON: an array of
/// `{metric, scope, value, numerator, denominator, target, series:[{day, value}], …}`.
pub fn render_json(report: &MetricsReport) -> Value {
    let values = report.values.iter().map(|v| {
        let mut object = json!({
            "metric": v.metric.name,
            "title": v.metric.title,
            "kind": v.metric.kind.as_str(),
            "unit": v.metric.unit,
            "scope": v.scope,
            "value": v.value,
            "numerator": v.numerator,
            "denominator": v.denominator,
            "target": v.metric.target.map(|t| t.value()),
            "target_direction": v.metric.target.map(|t| t.direction()),
            "meets_target": v.metric.target.zip(v.value).map(|(t, value)| t.is_met(value)),
            "series": v.series.iter().map(|p| json!({
                "day": format_day(p.day),
                "value": p.value,
            })).collect::<Vec<_>>(),
        });
        if let Value::Object(map) = &mut object {
            if let MetricKind::Breakdown(_) = v.metric.kind {
                let breakdown: serde_json::Map<String, Value> = v
                    .breakdown
                    .iter()
                    .map(|(k, value)| ((*k).to_owned(), Value::from(value.as_str())))
                    .collect();
                map.insert("breakdown".to_owned(), Value::Object(breakdown));
            }
            if let Some(open) = v.open {
                map.insert("open".to_owned(), Value::from(open));
            }
        }
        object
    });
    Value::Array(values.collect())
}

/// The report as an aligned text table.
pub fn render_table(report: &MetricsReport) -> String {
    let Some(newest) = report.newest_event_micros else {
        return "The lake holds no events yet: nothing to measure.".to_owned();
    };
    let by = match report.scope {
        Scope::Org => "org",
        Scope::Repo => "repo",
    };
    let mut out = format!(
        "Hardening metrics by {by}, window {} ({} .. {}, ending at the newest event {})\n\n",
        report.window,
        format_day(report.first_day),
        format_day(report.last_day),
        format_micros(newest),
    );
    let trend_days = TREND_DAYS.min(report.values.first().map_or(0, |v| v.series.len()));
    let trend_header = format!("LAST {trend_days} DAYS");

    let mut rows = vec![vec![
        "METRIC".to_owned(),
        by.to_ascii_uppercase(),
        "VALUE".to_owned(),
        "TARGET".to_owned(),
        "BASIS".to_owned(),
        trend_header.clone(),
    ]];
    for v in report
        .values
        .iter()
        .filter(|v| v.metric.kind.breakdown().is_empty())
    {
        rows.push(vec![
            v.metric.name.to_owned(),
            scope_text(v),
            value_text(v),
            target_text(v),
            basis_text(v),
            sparkline(v),
        ]);
    }
    out.push_str(&align(&rows));

    let mut breakdowns: Vec<&'static str> = Vec::new();
    for v in &report.values {
        if !v.metric.kind.breakdown().is_empty() && !breakdowns.contains(&v.metric.name) {
            breakdowns.push(v.metric.name);
        }
    }
    for name in breakdowns {
        let values: Vec<&MetricValue> = report
            .values
            .iter()
            .filter(|v| v.metric.name == name)
            .collect();
        let Some(first) = values.first() else {
            continue;
        };
        let metric = first.metric;
        out.push_str(&format!(
            "\n{} — {} ({} in the window)\n",
            metric.name, metric.title, metric.unit
        ));
        let mut header = vec![by.to_ascii_uppercase()];
        header.extend(
            metric
                .kind
                .breakdown()
                .iter()
                .map(|c| c.to_ascii_uppercase()),
        );
        header.push(metric.unit.to_ascii_uppercase());
        header.push(trend_header.clone());
        let mut rows = vec![header];
        for v in values {
            let mut row = vec![scope_text(v)];
            let columns = metric.kind.breakdown();
            row.extend(columns.iter().map(|c| {
                v.breakdown
                    .iter()
                    .find(|(k, _)| k == c)
                    .map_or_else(|| "-".to_owned(), |(_, value)| value.clone())
            }));
            row.push(value_text(v));
            row.push(sparkline(v));
            rows.push(row);
        }
        out.push_str(&align(&rows));
    }

    if !report.details.is_empty() {
        out.push('\n');
        for (detail, rows) in &report.details {
            out.push_str(&format!(
                "drill-down {}: {rows} row(s) in the window — {}\n  pipewatch metrics --detail {} --window {}\n",
                detail.name, detail.title, detail.name, report.window
            ));
        }
    }
    out.trim_end().to_owned()
}

fn scope_text(v: &MetricValue) -> String {
    v.scope.clone().unwrap_or_else(|| "(no data)".to_owned())
}

fn number(value: f64, kind: MetricKind) -> String {
    match kind {
        MetricKind::Ratio => format!("{value:.3}"),
        MetricKind::Mean => format!("{value:.1}"),
        MetricKind::DistinctCount | MetricKind::Breakdown(_) => format!("{value:.0}"),
    }
}

fn value_text(v: &MetricValue) -> String {
    match v.value {
        Some(value) => {
            let text = number(value, v.metric.kind);
            if v.metric.kind == MetricKind::Mean {
                format!("{text} {}", v.metric.unit)
            } else {
                text
            }
        }
        None => "-".to_owned(),
    }
}

fn target_text(v: &MetricValue) -> String {
    let Some(target) = v.metric.target else {
        return String::new();
    };
    let sign = match target {
        super::Target::AtLeast(_) => '≥',
        super::Target::AtMost(_) => '≤',
    };
    let mark = match v.value {
        Some(value) if target.is_met(value) => " ok",
        Some(_) => " MISS",
        None => "",
    };
    format!("{sign} {}{mark}", number(target.value(), v.metric.kind))
}

fn basis_text(v: &MetricValue) -> String {
    match v.metric.kind {
        MetricKind::Ratio => format!("{:.0}/{:.0}", v.numerator, v.denominator.unwrap_or(0.0)),
        MetricKind::Mean => format!(
            "{:.0} closed, {} open",
            v.denominator.unwrap_or(0.0),
            v.open.unwrap_or(0)
        ),
        MetricKind::DistinctCount | MetricKind::Breakdown(_) => String::new(),
    }
}

/// The last [`TREND_DAYS`] of the series as bars: shares on an absolute
/// 0..1 scale, everything else relative to the largest day shown.
fn sparkline(v: &MetricValue) -> String {
    let start = v.series.len().saturating_sub(TREND_DAYS);
    let shown = &v.series[start..];
    let max = match v.metric.kind {
        MetricKind::Ratio => 1.0,
        _ => shown.iter().filter_map(|p| p.value).fold(0.0_f64, f64::max),
    };
    shown
        .iter()
        .map(|p| match p.value {
            None => NO_DATA,
            Some(value) if max <= 0.0 => {
                if value > 0.0 {
                    BARS[BARS.len() - 1]
                } else {
                    BARS[0]
                }
            }
            Some(value) => {
                let level = (value / max).clamp(0.0, 1.0) * (BARS.len() - 1) as f64;
                // `level` is within 0..=7 after the clamp.
                BARS[(level.round() as usize).min(BARS.len() - 1)]
            }
        })
        .collect()
}

/// Left-aligns columns separated by two spaces (widths in characters).
fn align(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c].saturating_sub(cell.chars().count()) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{SeriesPoint, metric};
    use super::*;

    fn value(name: &str, series: &[Option<f64>]) -> MetricValue {
        MetricValue {
            metric: metric(name).expect("registered"),
            scope: Some("acme".to_owned()),
            breakdown: Vec::new(),
            numerator: 3.0,
            denominator: Some(4.0),
            value: Some(0.75),
            open: None,
            series: series
                .iter()
                .enumerate()
                .map(|(i, v)| SeriesPoint {
                    day: i32::try_from(i).unwrap_or(0),
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn sparklines_show_the_last_fourteen_days_and_gaps() {
        let mut series = vec![Some(0.0); 20];
        series[19] = Some(1.0);
        series[18] = None;
        series[17] = Some(0.5);
        let line = sparkline(&value("oidc_auth_share", &series));
        assert_eq!(line.chars().count(), 14);
        assert!(line.ends_with("▅·█"), "{line}");
        assert!(line.starts_with("▁▁▁"), "{line}");
    }

    #[test]
    fn counts_scale_to_their_largest_day() {
        let line = sparkline(&value(
            "static_keys_in_use",
            &[Some(0.0), Some(2.0), Some(4.0)],
        ));
        assert_eq!(line, "▁▅█");
    }

    #[test]
    fn table_rows_show_value_target_and_basis() {
        let v = value("oidc_auth_share", &[Some(0.75)]);
        assert_eq!(value_text(&v), "0.750");
        assert_eq!(target_text(&v), "≥ 0.800 MISS");
        assert_eq!(basis_text(&v), "3/4");
    }
}
