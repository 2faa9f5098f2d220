//! All-at-once ("big bang") deployments — rolling, recreate or all-at-once
//! replacement — of an application and environment whose deployments are
//! normally progressive (canary, blue/green).
//!
//! Baseline / Cold start: per application (repository + environment for CI
//! deployments, namespace + workload for cluster changes) the strategies
//! of its last `history_cap` deployments. Each deployment is judged once,
//! at its first record that names a strategy. An application with fewer
//! than `min_history` deployments is only learned, and one whose history
//! mixes strategies (progressive share below `min_progressive_share`) is
//! not judged: only a break from a settled progressive habit is reported.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "big_bang_deploy";

/// Events between two sweeps of remembered deployment ids.
const SWEEP_EVERY: u64 = 4096;

/// Parameters of [`BigBangDeploy`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Applications never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Deployments an application needs before it is judged.
    pub min_history: u32,
    /// Share of progressive deployments from which an application counts
    /// as normally progressive.
    pub min_progressive_share: f64,
    /// Progressive deployments in a row from which a big-bang one is `high`
    /// even as a rolling update.
    pub high_history: u32,
    /// Strategies remembered per application.
    pub history_cap: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 3,
            min_progressive_share: 0.9,
            high_history: 20,
            history_cap: 100,
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
        let err = |param, reason: &str| Err(ParamError::new(NAME, param, reason));
        if self.min_history == 0 {
            return err("min_history", "must be at least 1");
        }
        if !(self.min_progressive_share > 0.5 && self.min_progressive_share <= 1.0) {
            return err("min_progressive_share", "must be above 0.5 and at most 1");
        }
        if self.high_history == 0 {
            return err("high_history", "must be at least 1");
        }
        if self.history_cap < self.min_history {
            return err("history_cap", "must be at least min_history");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(BigBangDeploy::new(params))
}

/// All-at-once deployments of an application normally rolled out progressively.
#[derive(Debug)]
pub struct BigBangDeploy {
    params: Params,
    apps: HashMap<String, Strategies>,
    /// Deployment objects already judged, with when.
    judged: HashMap<String, DateTime<Utc>>,
    events: u64,
}

/// Recent strategies of one application: `true` = progressive.
#[derive(Debug, Clone, Default)]
struct Strategies {
    recent: VecDeque<bool>,
    progressive: u32,
    /// Progressive deployments since the last big-bang one.
    streak: u32,
}

impl Strategies {
    fn push(&mut self, progressive: bool, cap: usize) {
        self.recent.push_back(progressive);
        self.progressive += u32::from(progressive);
        self.streak = if progressive {
            self.streak.saturating_add(1)
        } else {
            0
        };
        while self.recent.len() > cap {
            if self.recent.pop_front() == Some(true) {
                self.progressive -= 1;
            }
        }
    }
}

/// How a strategy replaces the running version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollout {
    /// Canary, blue/green: a fraction first, switch or roll back.
    Progressive,
    /// Rolling update: batches, no analysis step.
    Rolling,
    /// Recreate / all at once: everything replaced together.
    AllAtOnce,
}

fn rollout(strategy: &str) -> Option<Rollout> {
    let s = strategy.to_ascii_lowercase().replace(['-', ' '], "_");
    match s.as_str() {
        "canary" | "blue_green" | "bluegreen" | "progressive" | "linear" => {
            Some(Rollout::Progressive)
        }
        "rolling" | "rolling_update" | "rollingupdate" => Some(Rollout::Rolling),
        "recreate" | "all_at_once" | "allatonce" | "big_bang" => Some(Rollout::AllAtOnce),
        _ => None,
    }
}

/// A strategy as a title word: `all_at_once` → `All-at-once`.
fn label(strategy: &str) -> String {
    let text = strategy.replace('_', "-");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

/// The application a deployment record is about.
fn application(event: &EventRow) -> Option<String> {
    if let (Some(repo), Some(env)) = (
        event.repo.as_deref(),
        event.deployment_environment_name.as_deref(),
    ) {
        return Some(format!("{repo}/{env}"));
    }
    match (
        event.target_namespace.as_deref(),
        event.target_name.as_deref(),
    ) {
        (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        _ => None,
    }
}

/// One deployment object across its lifecycle records.
fn object_key(event: &EventRow, app: &str) -> String {
    let id = event.correlation_id.as_deref().unwrap_or_else(|| {
        event
            .source_event_id
            .split(':')
            .next()
            .unwrap_or(&event.source_event_id)
    });
    format!("{}|{app}|{id}", event.source)
}

impl BigBangDeploy {
    fn judge(
        &self,
        event: &EventRow,
        app: &str,
        strategy: &str,
        kind: Rollout,
        history: &Strategies,
    ) -> Option<Finding> {
        let p = &self.params;
        let n = history.recent.len() as u32;
        if kind == Rollout::Progressive || n < p.min_history {
            return None;
        }
        let share = f64::from(history.progressive) / f64::from(n);
        if share < p.min_progressive_share {
            return None;
        }
        let severity = if kind == Rollout::AllAtOnce || history.streak >= p.high_history {
            Severity::High
        } else {
            Severity::Medium
        };
        // Smoothed chance of a non-progressive deployment, as surprise.
        let chance = (f64::from(n - history.progressive) + 0.5) / (f64::from(n) + 1.0);
        let actor = event.actor.as_deref().unwrap_or("someone");
        let how = match kind {
            Rollout::AllAtOnce => "replacing every instance at once",
            _ => "without a progressive step",
        };
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -chance.ln() + if kind == Rollout::AllAtOnce { 1.0 } else { 0.0 },
            event_time: event.event_time,
            entity: app.to_owned(),
            title: format!(
                "{} deployment of {app}, normally rolled out progressively",
                label(strategy)
            ),
            explanation: Explanation {
                expected: format!(
                    "{} of the last {n} deployments of {app} were progressive (canary / blue-green); {} in a row",
                    history.progressive, history.streak
                ),
                observed: format!(
                    "{actor} deployed {app} with strategy {strategy} ({how}) via {} at {} UTC",
                    event.action,
                    event.event_time.format("%Y-%m-%d %H:%M")
                ),
                unusual: format!(
                    "a non-progressive deployment had a {:.1}% chance given this history",
                    chance * 100.0
                ),
            },
            evidence: vec![event.event_id.clone()],
        })
    }

    fn new(params: Params) -> Self {
        BigBangDeploy {
            params,
            apps: HashMap::new(),
            judged: HashMap::new(),
            events: 0,
        }
    }
}

impl Detector for BigBangDeploy {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::Deployment]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        self.events += 1;
        if self.events.is_multiple_of(SWEEP_EVERY) {
            let horizon = event.event_time - Duration::hours(48);
            self.judged.retain(|_, t| *t >= horizon);
        }
        if matches!(
            event.outcome.as_str(),
            "failure" | "denied" | "cancelled" | "skipped"
        ) {
            return;
        }
        let Some(strategy) = event.deploy_strategy.as_deref() else {
            return;
        };
        let Some(kind) = rollout(strategy) else {
            return;
        };
        let Some(app) = application(event) else {
            return;
        };
        let key = object_key(event, &app);
        if self.judged.contains_key(&key) {
            return;
        }
        self.judged.insert(key, event.event_time);
        let history = self.apps.get(&app).cloned().unwrap_or_default();
        if phase == Phase::Score
            && let Some(finding) = self.judge(event, &app, strategy, kind, &history)
        {
            out.push(finding);
        }
        let cap = self.params.history_cap as usize;
        self.apps
            .entry(app)
            .or_default()
            .push(kind == Rollout::Progressive, cap);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn deploy(id: &str, minutes: i64, repo: &str, strategy: &str) -> EventRow {
        let mut r = EventRow::new(id, at(minutes), Category::Deployment, "deployment.created");
        r.source = "github_webhook".into();
        r.outcome = "pending".into();
        r.repo = Some(repo.into());
        r.deployment_environment_name = Some("production".into());
        r.deploy_strategy = Some(strategy.into());
        r.correlation_id = Some(id.into());
        r
    }

    fn run(d: &mut BigBangDeploy, rows: &[EventRow], phase: Phase) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in rows {
            d.observe(r, phase, &mut out);
        }
        out
    }

    #[test]
    fn a_rolling_deploy_of_a_canary_app_is_reported_once() {
        let mut d = BigBangDeploy::new(Params::default());
        let history: Vec<EventRow> = (0..8)
            .map(|i| deploy(&format!("c{i}"), i * 60, "acme/ui", "canary"))
            .collect();
        run(&mut d, &history, Phase::Learn);
        let mut status = deploy("b1", 1000, "acme/ui", "rolling");
        status.action = "deployment_status.created".into();
        let found = run(
            &mut d,
            &[deploy("b1", 999, "acme/ui", "rolling"), status],
            Phase::Score,
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Medium);
        assert_eq!(found[0].entity, "acme/ui/production");
        assert_eq!(found[0].evidence, vec!["b1".to_owned()]);
        // A cluster patch of a workload normally changed through canary rollouts.
        let k8s = |id: &str, minutes: i64, strategy: &str| {
            let mut r = deploy(id, minutes, "-", strategy);
            r.repo = None;
            r.deployment_environment_name = None;
            r.target_namespace = Some("ui".into());
            r.target_name = Some("ui".into());
            r
        };
        let rollouts: Vec<EventRow> = (0..5)
            .map(|i| k8s(&format!("k{i}"), i * 60, "canary"))
            .collect();
        run(&mut d, &rollouts, Phase::Learn);
        let found = run(&mut d, &[k8s("patch", 1001, "all_at_once")], Phase::Score);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found[0].entity, "ui/ui");
    }

    #[test]
    fn rolling_apps_new_apps_and_mixed_histories_are_quiet() {
        let mut d = BigBangDeploy::new(Params::default());
        let mut rows: Vec<EventRow> = (0..8)
            .map(|i| deploy(&format!("r{i}"), i * 60, "acme/api", "rolling"))
            .collect();
        rows.extend((0..8).map(|i| {
            deploy(
                &format!("m{i}"),
                i * 60,
                "acme/mix",
                if i % 3 == 0 { "rolling" } else { "canary" },
            )
        }));
        run(&mut d, &rows, Phase::Learn);
        let found = run(
            &mut d,
            &[
                deploy("a", 1000, "acme/api", "rolling"),
                deploy("b", 1000, "acme/new", "recreate"),
                deploy("c", 1000, "acme/mix", "rolling"),
            ],
            Phase::Score,
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(
            Params {
                min_progressive_share: 0.2,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                history_cap: 1,
                ..Params::default()
            }
            .check()
            .is_err()
        );
    }
}
