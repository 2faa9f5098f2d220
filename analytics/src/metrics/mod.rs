//! Hardening metrics as named SQL: the closed registry ([`METRICS`],
//! [`DETAILS`]) of one `.sql` file per metric under `metrics/sql/`, and the
//! runner that turns each query's daily rows (`day`, `org`, `repo`, plus the
//! columns its [`MetricKind`] names) into a value and a daily series per
//! scope over a window ending at the newest event in the lake.

mod render;
mod rollup;
mod run;

use std::fmt;
use std::str::FromStr;

pub use render::{render_json, render_table};
pub use rollup::{EVENT_COUNTS, Rollups, Summary};
pub use run::{MetricValue, MetricsReport, SeriesPoint, format_day, run_detail, run_metrics};

use crate::query::QueryError;

/// How a metric's rows become a value. Every metric query reads only
/// `events` and its views and returns `day` (DATE or `YYYY-MM-DD` text),
/// `org` and `repo`, plus the columns named per kind below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Columns `numerator`, `denominator` (doubles):
    /// `sum(numerator) / sum(denominator)`, a share in `[0, 1]`.
    Ratio,
    /// Columns `numerator`, `denominator`, `open`:
    /// `sum(numerator) / sum(denominator)` where each row is one
    /// observation (denominator 1) or an observation still open
    /// (denominator 0, `open` 1): a mean of non-negative values, with the
    /// number of open observations reported next to it.
    Mean,
    /// Column `key`: `count(DISTINCT key)`, how many different things were
    /// seen (over the window, not the sum of the days).
    DistinctCount,
    /// Columns `key` and the named ones: `count(DISTINCT key)` for each
    /// combination of the named columns:
    /// a table of its own, not a single value.
    Breakdown(&'static [&'static str]),
}

impl MetricKind {
    /// The values a correct result can take, inclusive (`None`: unbounded).
    pub fn valid_range(self) -> (f64, Option<f64>) {
        match self {
            MetricKind::Ratio => (0.0, Some(1.0)),
            MetricKind::Mean | MetricKind::DistinctCount | MetricKind::Breakdown(_) => (0.0, None),
        }
    }

    /// The breakdown columns (empty unless [`MetricKind::Breakdown`]).
    pub fn breakdown(self) -> &'static [&'static str] {
        match self {
            MetricKind::Breakdown(columns) => columns,
            _ => &[],
        }
    }

    /// Short name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Ratio => "ratio",
            MetricKind::Mean => "mean",
            MetricKind::DistinctCount => "distinct_count",
            MetricKind::Breakdown(_) => "breakdown",
        }
    }
}

/// What good looks like for a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// The value should be at least this.
    AtLeast(f64),
    /// The value should be at most this.
    AtMost(f64),
}

impl Target {
    /// The threshold.
    pub fn value(self) -> f64 {
        match self {
            Target::AtLeast(v) | Target::AtMost(v) => v,
        }
    }

    /// Whether `value` meets the target.
    pub fn is_met(self, value: f64) -> bool {
        match self {
            Target::AtLeast(t) => value >= t,
            Target::AtMost(t) => value <= t,
        }
    }

    /// `at_least` or `at_most`, for JSON output.
    pub fn direction(self) -> &'static str {
        match self {
            Target::AtLeast(_) => "at_least",
            Target::AtMost(_) => "at_most",
        }
    }
}

/// One hardening metric: a named query and how to read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    /// Stable identifier (also the `.sql` file's name).
    pub name: &'static str,
    /// Human title.
    pub title: &'static str,
    /// What one unit of the value is (`share`, `hours`, `keys`, `findings`).
    pub unit: &'static str,
    /// One sentence on what is measured.
    pub description: &'static str,
    /// How rows become a value.
    pub kind: MetricKind,
    /// What good looks like, where that is meaningful.
    pub target: Option<Target>,
    /// The query (its columns: see [`MetricKind`]).
    pub sql: &'static str,
}

/// A drill-down: a named query listing the rows behind a metric. It
/// returns a `day` column (for the window) and whatever columns help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detail {
    /// Stable identifier (also the `.sql` file's name).
    pub name: &'static str,
    /// Human title.
    pub title: &'static str,
    /// The metric it explains.
    pub metric: &'static str,
    /// One sentence on what is listed.
    pub description: &'static str,
    /// `ORDER BY` applied to the result (columns of the query).
    pub order_by: &'static str,
    /// The query.
    pub sql: &'static str,
}

/// Every metric, in display order.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "ephemeral_runner_share",
        title: "Jobs on ephemeral runners",
        unit: "share",
        description: "Completed jobs on single-use runners / completed jobs whose runner ephemerality is known.",
        kind: MetricKind::Ratio,
        target: Some(Target::AtLeast(0.9)),
        sql: include_str!("sql/ephemeral_runner_share.sql"),
    },
    Metric {
        name: "oidc_auth_share",
        title: "Cloud and secret-store authentications via OIDC",
        unit: "share",
        description: "CloudTrail, Vault and Kubernetes authentications and secret accesses made with OIDC / those with a known identity kind.",
        kind: MetricKind::Ratio,
        target: Some(Target::AtLeast(0.8)),
        sql: include_str!("sql/oidc_auth_share.sql"),
    },
    Metric {
        name: "static_keys_in_use",
        title: "Static keys in use",
        unit: "keys",
        description: "Distinct long-lived static credentials seen acting.",
        kind: MetricKind::DistinctCount,
        target: Some(Target::AtMost(0.0)),
        sql: include_str!("sql/static_keys_in_use.sql"),
    },
    Metric {
        name: "secret_rotation_mttr_hours",
        title: "Mean time to rotate an exposed secret",
        unit: "hours",
        description: "Mean hours from a secret-scanner finding to the next secret write in the same repository; unmatched exposures are open.",
        kind: MetricKind::Mean,
        target: Some(Target::AtMost(24.0)),
        sql: include_str!("sql/secret_rotation_mttr_hours.sql"),
    },
    Metric {
        name: "policy_compliance_rate",
        title: "Policy evaluations passing",
        unit: "share",
        description: "Policy results with outcome success / all with a verdict (success, failure, warning, denied).",
        kind: MetricKind::Ratio,
        target: Some(Target::AtLeast(0.95)),
        sql: include_str!("sql/policy_compliance_rate.sql"),
    },
    Metric {
        name: "progressive_delivery_share",
        title: "Deployments rolled out progressively",
        unit: "share",
        description: "Deployments with strategy canary or blue_green / deployments with a known strategy.",
        kind: MetricKind::Ratio,
        target: Some(Target::AtLeast(0.5)),
        sql: include_str!("sql/progressive_delivery_share.sql"),
    },
    Metric {
        name: "approved_deployments_share",
        title: "Production deployments with an approval",
        unit: "share",
        description: "Production-like deployments with an approval on the same run or environment and revision / all production-like deployments.",
        kind: MetricKind::Ratio,
        target: Some(Target::AtLeast(1.0)),
        sql: include_str!("sql/approved_deployments_share.sql"),
    },
    Metric {
        name: "protected_branch_deployment_share",
        title: "Deployments from the default branch",
        unit: "share",
        description: "Deployments whose ref is the default branch / deployments where that is known.",
        kind: MetricKind::Ratio,
        target: Some(Target::AtLeast(0.95)),
        sql: include_str!("sql/protected_branch_deployment_share.sql"),
    },
    Metric {
        name: "findings_by_severity",
        title: "Scanner findings by severity and tool",
        unit: "findings",
        description: "Distinct scanner findings (repository, tool, rule, location) seen, by severity and tool.",
        kind: MetricKind::Breakdown(&["severity", "tool_name"]),
        target: None,
        sql: include_str!("sql/findings_by_severity.sql"),
    },
];

/// Every drill-down.
pub const DETAILS: &[Detail] = &[Detail {
    name: "persistent_runners_with_secrets",
    title: "Jobs on persistent runners in runs that touched secrets",
    metric: "ephemeral_runner_share",
    description: "Jobs on runners known to be persistent whose pipeline run (same repository and run id) also accessed a secret store.",
    order_by: "day DESC, repo, run_id, job_id",
    sql: include_str!("sql/persistent_runners_with_secrets.sql"),
}];

/// The metric called `name`.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The drill-down called `name`.
pub fn detail(name: &str) -> Option<&'static Detail> {
    DETAILS.iter().find(|d| d.name == name)
}

/// What the value of a metric is computed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scope {
    /// One value per organisation (`org`).
    #[default]
    Org,
    /// One value per repository (`repo`).
    Repo,
}

impl Scope {
    /// The metric query's column the scope is read from.
    pub fn column(self) -> &'static str {
        match self {
            Scope::Org => "org",
            Scope::Repo => "repo",
        }
    }
}

/// Scope label for rows whose org or repository the sources do not say.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// How far back from the newest event the metrics look. Metric rows are
/// daily, so a window covers whole days: the day of the newest event and
/// the days before it, as many as the window spans (rounded up; `12h` is
/// the newest day alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    seconds: u64,
}

impl Window {
    /// A window of `days` days.
    pub fn days(days: u32) -> Self {
        Window {
            seconds: u64::from(days.max(1)) * 86_400,
        }
    }

    /// Number of whole days covered (at least one).
    pub fn day_count(self) -> u32 {
        let days = self.seconds.div_ceil(86_400).max(1);
        u32::try_from(days).unwrap_or(u32::MAX)
    }
}

impl Default for Window {
    fn default() -> Self {
        Window::days(30)
    }
}

impl FromStr for Window {
    type Err = MetricsError;

    /// Parses `30d`, `12h`, `2w`: a positive whole number and a unit.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || MetricsError::BadWindow(text.to_owned());
        let text_trimmed = text.trim();
        let split = text_trimmed
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(bad)?;
        let (number, unit) = text_trimmed.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let unit_seconds: u64 = match unit {
            "h" => 3_600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(bad()),
        };
        let seconds = number.checked_mul(unit_seconds).ok_or_else(bad)?;
        // More than ~100 years is a typo, not a window.
        if seconds == 0 || seconds > 36_600 * 86_400 {
            return Err(bad());
        }
        Ok(Window { seconds })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.seconds;
        if s.is_multiple_of(7 * 86_400) {
            write!(f, "{}w", s / (7 * 86_400))
        } else if s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else {
            write!(f, "{}h", s / 3_600)
        }
    }
}

/// Errors of the metrics runner. Messages are meant for the analyst.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A `--window` that is not a number followed by h, d or w.
    #[error(
        "invalid window `{0}`: use a positive whole number followed by h, d or w (12h, 30d, 2w)"
    )]
    BadWindow(String),
    /// A metric or drill-down name that is not registered.
    #[error("unknown {what} `{name}`; known: {known}")]
    Unknown {
        what: &'static str,
        name: String,
        known: String,
    },
    /// The query of a metric failed.
    #[error("metric `{metric}`: {source}")]
    Query {
        metric: &'static str,
        #[source]
        source: QueryError,
    },
    /// A metric query returned something the runner cannot read.
    #[error("metric `{metric}`: {problem}")]
    Shape {
        metric: &'static str,
        problem: String,
    },
}

impl MetricsError {
    /// The error for an unknown drill-down name.
    pub fn unknown_detail(name: &str) -> Self {
        MetricsError::Unknown {
            what: "drill-down",
            name: name.to_owned(),
            known: DETAILS
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_hours_days_and_weeks() {
        let parse = |s: &str| s.parse::<Window>();
        assert_eq!(parse("30d").expect("30d").day_count(), 30);
        assert_eq!(parse("2w").expect("2w").day_count(), 14);
        assert_eq!(parse("12h").expect("12h").day_count(), 1);
        assert_eq!(parse("36h").expect("36h").day_count(), 2);
        assert_eq!(parse("30d").expect("30d").to_string(), "30d");
        assert_eq!(parse("2w").expect("2w").to_string(), "2w");
        assert_eq!(parse("12h").expect("12h").to_string(), "12h");
        assert_eq!(Window::default(), Window::days(30));
        for bad in [
            "",
            "30",
            "d",
            "0d",
            "-3d",
            "3 d",
            "3x",
            "1.5d",
            "30days",
            "99999999w",
        ] {
            let error = parse(bad).expect_err(bad);
            assert!(error.to_string().contains("12h, 30d, 2w"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_registry_is_closed_and_consistent() {
        let mut names: Vec<&str> = METRICS
            .iter()
            .map(|m| m.name)
            .chain(DETAILS.iter().map(|d| d.name))
            .collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count, "names are unique");
        for m in METRICS {
            // The file the query comes from starts with the metric's name.
            assert!(m.sql.starts_with(&format!("-- {} (", m.name)), "{}", m.name);
            assert!(!m.sql.trim_end().ends_with(';'), "{}", m.name);
            if let Some(target) = m.target {
                let (low, high) = m.kind.valid_range();
                assert!(target.value() >= low, "{}", m.name);
                assert!(high.is_none_or(|h| target.value() <= h), "{}", m.name);
            }
        }
        for d in DETAILS {
            assert!(d.sql.starts_with(&format!("-- {} (", d.name)), "{}", d.name);
            assert!(metric(d.metric).is_some(), "{}", d.name);
        }
    }

    #[test]
    fn targets_know_their_direction() {
        assert!(Target::AtLeast(0.9).is_met(0.95));
        assert!(!Target::AtLeast(0.9).is_met(0.5));
        assert!(Target::AtMost(24.0).is_met(3.0));
        assert!(!Target::AtMost(0.0).is_met(2.0));
    }
}
