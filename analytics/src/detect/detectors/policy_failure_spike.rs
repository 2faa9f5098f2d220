//! Failed policy checks (Conftest, OPA decisions, admission controllers)
//! rising well above a repository's own failure rate: the failing rules of
//! its last few checks against what its earlier checks failed, as a Poisson
//! tail.
//!
//! # Baseline / Cold start
//!
//! Per repository (for results that name none, such as Conftest output, the
//! directory of the checked file stands in) it keeps the checks and failing
//! rules older than the recent window, plus the recent window itself; across
//! the organisation it keeps the same two totals, which serve as the prior
//! for repositories with short histories. A repository with fewer than
//! `min_history_checks` finished checks is only learned.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::stats::{format_log10_probability, log10_poisson_upper_tail, severity_for_tail};
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "policy_failure_spike";

/// Evidence events kept per check of the recent window.
const EVIDENCE_PER_CHECK: usize = 8;

/// Parameters of [`PolicyFailureSpike`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Repositories (or checked directories) never reported.
    pub allow: Vec<String>,
    /// Finished checks a repository needs before it is judged.
    pub min_history_checks: u32,
    /// Checks in the recent window judged together (the current one included).
    pub window_checks: usize,
    /// Checks older than this, in hours, leave the recent window.
    pub window_hours: u32,
    /// Weight, in checks, of the organisation's failure rate when
    /// estimating a repository's own rate (shrinks short histories).
    pub prior_checks: f64,
    /// Floor on the expected failing rules per check, so a spotless history
    /// does not make a single failure look impossible.
    pub min_rate: f64,
    /// Fewest failing rules in the window that can be reported.
    pub min_failures: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history_checks: 3,
            window_checks: 6,
            window_hours: 24,
            prior_checks: 3.0,
            min_rate: 0.02,
            min_failures: 3,
        }
    }
}

impl DetectorConfig for Params {
    fn common(&self) -> CommonParams<'_> {
        CommonParams {
            enabled: self.enabled,
            allow: &self.allow,
        }
    }

    fn check(&self) -> Result<(), ParamError> {
        if self.min_history_checks == 0 {
            return Err(ParamError::new(
                NAME,
                "min_history_checks",
                "must be at least 1",
            ));
        }
        if self.window_checks == 0 {
            return Err(ParamError::new(NAME, "window_checks", "must be at least 1"));
        }
        if self.window_hours == 0 {
            return Err(ParamError::new(NAME, "window_hours", "must be at least 1"));
        }
        if !(self.prior_checks.is_finite() && self.prior_checks > 0.0) {
            return Err(ParamError::new(
                NAME,
                "prior_checks",
                "must be a positive number",
            ));
        }
        if !(self.min_rate.is_finite() && self.min_rate > 0.0) {
            return Err(ParamError::new(
                NAME,
                "min_rate",
                "must be a positive number",
            ));
        }
        if self.min_failures == 0 {
            return Err(ParamError::new(NAME, "min_failures", "must be at least 1"));
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(PolicyFailureSpike {
        params,
        entities: HashMap::new(),
        org_checks: 0,
        org_failures: 0,
    })
}

/// Failed policy checks rising well above a repository's own failure rate.
#[derive(Debug)]
pub struct PolicyFailureSpike {
    params: Params,
    entities: HashMap<String, History>,
    org_checks: u64,
    org_failures: u64,
}

/// One check: every result of one entity at one time (one Conftest run,
/// one OPA decision).
#[derive(Debug, Clone)]
struct Check {
    time: DateTime<Utc>,
    failures: u64,
    evidence: Vec<String>,
    reported: Option<Severity>,
}

#[derive(Debug, Default)]
struct History {
    base_checks: u64,
    base_failures: u64,
    window: VecDeque<Check>,
    current: Option<Check>,
}

impl History {
    fn finished(&self) -> u64 {
        self.base_checks + self.window.len() as u64
    }
}

/// The repository, else the directory of the checked file.
fn entity_of(row: &EventRow) -> Option<String> {
    if let Some(repo) = &row.repo {
        return Some(repo.clone());
    }
    let target = row.target_name.as_deref()?;
    Some(match target.rsplit_once('/') {
        Some((dir, _)) if !dir.is_empty() => dir.to_owned(),
        _ => target.to_owned(),
    })
}

fn is_failure(outcome: &str) -> bool {
    matches!(outcome, "failure" | "denied")
}

impl PolicyFailureSpike {
    /// Moves the current check into the window and what leaves the window
    /// into the baseline.
    fn roll(&mut self, entity: &str, now: DateTime<Utc>) {
        let horizon = now - Duration::hours(i64::from(self.params.window_hours));
        let limit = self.params.window_checks.saturating_sub(1);
        let Some(history) = self.entities.get_mut(entity) else {
            return;
        };
        if let Some(check) = history.current.take() {
            self.org_checks += 1;
            self.org_failures += check.failures;
            history.window.push_back(check);
        }
        while history.window.len() > limit
            || history.window.front().is_some_and(|c| c.time < horizon)
        {
            if let Some(old) = history.window.pop_front() {
                history.base_checks += 1;
                history.base_failures += old.failures;
            }
        }
    }
}

impl Detector for PolicyFailureSpike {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::PolicyResult]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let Some(entity) = entity_of(event) else {
            return;
        };
        let history = self.entities.entry(entity.clone()).or_default();
        if history
            .current
            .as_ref()
            .is_some_and(|c| c.time != event.event_time)
        {
            self.roll(&entity, event.event_time);
        }
        let Some(history) = self.entities.get_mut(&entity) else {
            return;
        };
        let check = history.current.get_or_insert_with(|| Check {
            time: event.event_time,
            failures: 0,
            evidence: Vec::new(),
            reported: None,
        });
        if !is_failure(&event.outcome) {
            return;
        }
        check.failures += 1;
        if check.evidence.len() < EVIDENCE_PER_CHECK {
            check.evidence.push(event.event_id.clone());
        }
        if phase == Phase::Learn || history.finished() < u64::from(self.params.min_history_checks) {
            return;
        }
        let Some(check) = history.current.as_ref() else {
            return;
        };
        let org_rate = (self.org_failures as f64 + 0.5) / (self.org_checks as f64 + 1.0);
        let prior = self.params.prior_checks;
        let rate = ((history.base_failures as f64 + prior * org_rate)
            / (history.base_checks as f64 + prior))
            .max(self.params.min_rate);
        let checks = history.window.len() as u64 + 1;
        let failures = history.window.iter().map(|c| c.failures).sum::<u64>() + check.failures;
        if failures < u64::from(self.params.min_failures) {
            return;
        }
        let expected = rate * checks as f64;
        let log10_p = log10_poisson_upper_tail(failures, expected);
        let p = 10f64.powf(log10_p);
        let severity = severity_for_tail(p);
        // Once the check is reported, each further failing rule is reported
        // too, so the alert follows the check to its end.
        let escalates = check.reported.is_none_or(|r| severity > r);
        if severity < Severity::Low || !(escalates || check.reported.is_some()) {
            return;
        }
        let failed_checks = history.window.iter().filter(|c| c.failures > 0).count()
            + usize::from(check.failures > 0);
        let mut evidence = vec![event.event_id.clone()];
        evidence.extend(
            check
                .evidence
                .iter()
                .rev()
                .filter(|id| **id != event.event_id)
                .cloned(),
        );
        for past in history.window.iter().rev() {
            evidence.extend(past.evidence.iter().cloned());
        }
        let since = history.window.front().map_or(check.time, |c| c.time);
        out.push(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -log10_p,
            event_time: event.event_time,
            entity: entity.clone(),
            title: format!(
                "Policy checks of {entity} failed {failures} rules in their last {checks} runs"
            ),
            explanation: Explanation {
                expected: format!(
                    "{entity}'s earlier {} checks failed {} rules ({rate:.2} per check, shrunk toward the organisation's {org_rate:.2})",
                    history.base_checks, history.base_failures
                ),
                observed: format!(
                    "{failed_checks} of the {checks} checks since {} failed, {failures} failing rules in all, {} in the check of {}",
                    since.format("%Y-%m-%d %H:%M UTC"),
                    check.failures,
                    check.time.format("%H:%M UTC")
                ),
                unusual: format!(
                    "{failures} failing rules where {expected:.2} were expected: Poisson tail p = {}",
                    format_log10_probability(log10_p)
                ),
            },
            evidence,
        });
        if let Some(check) = self
            .entities
            .get_mut(&entity)
            .and_then(|h| h.current.as_mut())
        {
            check.reported = Some(check.reported.map_or(severity, |r| r.max(severity)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn result(n: usize, time: DateTime<Utc>, file: &str, outcome: &str) -> EventRow {
        let mut row = EventRow::new(
            format!("e{n}"),
            time,
            Category::PolicyResult,
            format!("conftest.{outcome}"),
        );
        row.source = "conftest".into();
        row.outcome = outcome.into();
        row.target_type = Some("file".into());
        row.target_name = Some(file.into());
        row
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 8, 0, 0)
            .single()
            .expect("valid time")
    }

    /// `checks` clean runs of eight rules, every fifth with one failure.
    fn history(detector: &mut Box<dyn Detector>, file: &str, checks: i64, n: &mut usize) {
        for c in 0..checks {
            let time = start() + Duration::hours(5 * c);
            for r in 0..8 {
                *n += 1;
                let outcome = if c % 5 == 4 && r == 0 {
                    "failure"
                } else {
                    "success"
                };
                detector.observe(
                    &result(*n, time, file, outcome),
                    Phase::Learn,
                    &mut Vec::new(),
                );
            }
        }
    }

    fn check(
        detector: &mut Box<dyn Detector>,
        time: DateTime<Utc>,
        file: &str,
        failing: usize,
        n: &mut usize,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in 0..8 {
            *n += 1;
            let outcome = if r < failing { "failure" } else { "success" };
            detector.observe(&result(*n, time, file, outcome), Phase::Score, &mut out);
        }
        out
    }

    #[test]
    fn consecutive_checks_failing_many_rules_are_reported() {
        let mut detector = build(Params::default());
        let file = "manifests/staging/api/deployment.yaml";
        let mut n = 0;
        history(&mut detector, file, 20, &mut n);
        let later = start() + Duration::days(6);
        let first = check(&mut detector, later, file, 5, &mut n);
        let second = check(
            &mut detector,
            later + Duration::minutes(40),
            file,
            4,
            &mut n,
        );
        let all: Vec<&Finding> = first.iter().chain(&second).collect();
        assert!(!all.is_empty());
        let strongest = all.iter().max_by_key(|f| f.severity).expect("a finding");
        assert!(strongest.severity >= Severity::High, "{strongest:?}");
        assert_eq!(strongest.entity, "manifests/staging/api");
        assert!(strongest.evidence.len() >= 5);
        assert!(strongest.evidence[0].starts_with('e'));
    }

    #[test]
    fn a_single_usual_failure_is_not_reported() {
        let mut detector = build(Params::default());
        let file = "manifests/staging/api/deployment.yaml";
        let mut n = 0;
        history(&mut detector, file, 20, &mut n);
        let out = check(&mut detector, start() + Duration::days(6), file, 1, &mut n);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_new_repository_is_learned_first() {
        let mut detector = build(Params::default());
        let mut n = 0;
        history(
            &mut detector,
            "manifests/staging/api/deployment.yaml",
            20,
            &mut n,
        );
        let out = check(
            &mut detector,
            start() + Duration::days(6),
            "manifests/staging/new/deployment.yaml",
            6,
            &mut n,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn the_repository_column_wins_over_the_file() {
        let mut row = result(1, start(), "deploy/x.yaml", "failure");
        assert_eq!(entity_of(&row).as_deref(), Some("deploy"));
        row.repo = Some("acme/api".into());
        assert_eq!(entity_of(&row).as_deref(), Some("acme/api"));
    }

    #[test]
    fn parameters_that_cannot_work_are_refused() {
        assert!(
            Params {
                window_checks: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                min_rate: -1.0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(Params::default().check().is_ok());
    }
}
