//! Workflows started by a trigger they never (or hardly ever) ran on in
//! that repository, notably privileged triggers such as
//! `pull_request_target` running code from a fork with the base
//! repository's permissions.
//!
//! Baseline / Cold start: per workflow (repository + workflow name) the
//! count of runs per trigger, and per repository which workflows ran on
//! each trigger (for the explanation). A workflow needs `min_history` runs
//! before a trigger can be called unusual for it, so a new workflow (such
//! as a labeler whose every run is `pull_request_target`) just learns.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use pipewatch_schema::{Category, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "unexpected_trigger";
/// Distinct triggers remembered per workflow; real workflows have a handful.
const MAX_TRIGGERS: usize = 32;
/// Workflow names remembered per repository and trigger, for explanations.
const MAX_NAMES: usize = 4;

/// Parameters of [`UnexpectedTrigger`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Repositories never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Runs a workflow needs before one of its triggers can be unusual.
    pub min_history: u32,
    /// A trigger below this share of a workflow's runs counts as rare.
    pub rare_fraction: f64,
    /// Triggers that run with the base repository's secrets and write
    /// token even for untrusted contributions (vendor vocabulary).
    pub privileged_triggers: Vec<String>,
    /// How long a run's later lifecycle rows are recognised as the same run.
    pub dedupe_hours: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 10,
            rare_fraction: 0.02,
            privileged_triggers: vec!["pull_request_target".into(), "workflow_run".into()],
            dedupe_hours: 24,
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
        if self.min_history == 0 {
            return Err(ParamError::new(NAME, "min_history", "must be at least 1"));
        }
        if !(0.0..1.0).contains(&self.rare_fraction) {
            return Err(ParamError::new(NAME, "rare_fraction", "must be in 0..1"));
        }
        if self.privileged_triggers.iter().any(|t| t.trim().is_empty()) {
            return Err(ParamError::new(
                NAME,
                "privileged_triggers",
                "must not hold empty names",
            ));
        }
        if self.dedupe_hours == 0 {
            return Err(ParamError::new(NAME, "dedupe_hours", "must be at least 1"));
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(UnexpectedTrigger {
        seen: RecentKeys::new(Duration::hours(i64::from(params.dedupe_hours)), 200_000),
        params,
        workflows: HashMap::new(),
        repos: HashMap::new(),
    })
}

/// Runs per trigger of one workflow.
#[derive(Debug, Default)]
struct Triggers {
    total: u32,
    counts: Vec<(String, u32)>,
}

impl Triggers {
    fn count(&self, trigger: &str) -> u32 {
        self.counts
            .iter()
            .find(|(t, _)| t == trigger)
            .map_or(0, |(_, n)| *n)
    }

    fn add(&mut self, trigger: &str) {
        self.total += 1;
        if let Some((_, n)) = self.counts.iter_mut().find(|(t, _)| t == trigger) {
            *n += 1;
        } else if self.counts.len() < MAX_TRIGGERS {
            self.counts.push((trigger.to_owned(), 1));
        }
    }

    fn describe(&self) -> String {
        let mut counts = self.counts.clone();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Which workflows of a repository ran on one trigger.
#[derive(Debug, Default)]
struct RepoTrigger {
    runs: u32,
    workflows: Vec<String>,
}

/// Workflows started by a trigger they never or rarely ran on.
#[derive(Debug)]
pub struct UnexpectedTrigger {
    params: Params,
    seen: RecentKeys,
    /// Keyed by (repository, workflow).
    workflows: HashMap<(String, String), Triggers>,
    /// Keyed by repository, then trigger.
    repos: HashMap<String, HashMap<String, RepoTrigger>>,
}

impl Detector for UnexpectedTrigger {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::PipelineRun]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(repo), Some(trigger)) = (
            event.repo.as_deref(),
            event.cicd_pipeline_trigger.as_deref(),
        ) else {
            return;
        };
        if !self
            .seen
            .first_sight(event.event_time, object_key(event), &event.event_id)
        {
            return;
        }
        let workflow = event
            .cicd_pipeline_name
            .clone()
            .unwrap_or_else(|| "pipeline".into());
        let key = (repo.to_owned(), workflow);
        if phase == Phase::Score
            && let Some(finding) = self.judge(event, &key, trigger)
        {
            out.push(finding);
        }
        self.workflows.entry(key.clone()).or_default().add(trigger);
        let per_repo = self.repos.entry(key.0).or_default();
        if per_repo.len() < MAX_TRIGGERS || per_repo.contains_key(trigger) {
            let entry = per_repo.entry(trigger.to_owned()).or_default();
            entry.runs += 1;
            if entry.workflows.len() < MAX_NAMES && !entry.workflows.contains(&key.1) {
                entry.workflows.push(key.1);
            }
        }
    }
}

impl UnexpectedTrigger {
    fn judge(&self, event: &EventRow, key: &(String, String), trigger: &str) -> Option<Finding> {
        let p = &self.params;
        let history = self.workflows.get(key)?;
        if history.total < p.min_history {
            return None;
        }
        let count = history.count(trigger);
        let share = f64::from(count) / f64::from(history.total);
        if share >= p.rare_fraction {
            return None;
        }
        let never = count == 0;
        let privileged = p.privileged_triggers.iter().any(|t| t == trigger);
        let from_fork = event.vcs_from_fork == Some(true);
        let severity = match (privileged, from_fork, never) {
            (true, true, true) => Severity::High,
            (true, true, false) | (true, false, true) => Severity::Medium,
            (true, false, false) | (false, _, true) => Severity::Low,
            // A rare ordinary trigger is not worth a line of anyone's time.
            (false, _, false) => return None,
        };
        let (repo, workflow) = key;
        let elsewhere = self
            .repos
            .get(repo)
            .and_then(|r| r.get(trigger))
            .map_or_else(
                || format!("no workflow of {repo} ever ran on {trigger}"),
                |r| {
                    format!(
                        "in {repo} only {} ran on {trigger} ({} runs)",
                        r.workflows.join(", "),
                        r.runs
                    )
                },
            );
        let who = event.actor.as_deref().unwrap_or("someone");
        let source = if from_fork { " from a fork" } else { "" };
        let branch = event.vcs_ref_head_name.as_deref().unwrap_or("-");
        let mut unusual = if never {
            format!(
                "first {trigger} run in {} runs of {workflow}; {elsewhere}",
                history.total
            )
        } else {
            format!(
                "{count} of {} runs of {workflow} ({:.1}%) were on {trigger}; {elsewhere}",
                history.total,
                share * 100.0
            )
        };
        if privileged {
            unusual.push_str(&format!(
                "; {trigger} runs with the base repository's secrets and write token{}",
                if from_fork {
                    " while the code comes from a fork"
                } else {
                    ""
                }
            ));
        }
        let rarity = (f64::from(count) + 0.5) / (f64::from(history.total) + 1.0);
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -rarity.log10() + if privileged && from_fork { 2.0 } else { 0.0 },
            event_time: event.event_time,
            entity: repo.clone(),
            title: format!(
                "{workflow} of {repo} ran on {trigger}{source}, a trigger it {} used",
                if never { "never" } else { "rarely" }
            ),
            explanation: Explanation {
                expected: format!(
                    "{workflow} of {repo} ran {} times: {}",
                    history.total,
                    history.describe()
                ),
                observed: format!(
                    "{who} started {workflow} on {trigger}{source} (branch {branch})"
                ),
                unusual,
            },
            evidence: vec![event.event_id.clone()],
        })
    }
}

// Run de-duplication below is shared with `off_hours_run` and
// `non_default_branch_deploy`; it would sit better in `stats.rs`.

/// The native object a row belongs to: the run for pipeline rows, else the
/// native id before the lifecycle suffix (`<id>:<suffix>`).
pub(crate) fn object_key(event: &EventRow) -> String {
    let native = event
        .cicd_pipeline_run_id
        .as_deref()
        .unwrap_or_else(|| native_id(&event.source_event_id));
    format!("{}\u{1f}{native}", event.source)
}

/// The native id of a row: its `source_event_id` up to the first `:`.
pub(crate) fn native_id(source_event_id: &str) -> &str {
    source_event_id.split(':').next().unwrap_or(source_event_id)
}

/// Native objects seen recently, so that an object yielding several rows
/// (queued, in progress, completed) is judged once. Bounded by age and size.
#[derive(Debug)]
pub(crate) struct RecentKeys {
    span: Duration,
    cap: usize,
    order: VecDeque<(DateTime<Utc>, String)>,
    /// Key → the event id of its first row.
    first: HashMap<String, String>,
}

impl RecentKeys {
    /// Remembers keys for `span` of event time, at most `cap` of them.
    pub(crate) fn new(span: Duration, cap: usize) -> Self {
        RecentKeys {
            span,
            cap: cap.max(1),
            order: VecDeque::new(),
            first: HashMap::new(),
        }
    }

    /// Records `key` at `time`; true when it was not seen within the span.
    pub(crate) fn first_sight(&mut self, time: DateTime<Utc>, key: String, event_id: &str) -> bool {
        while let Some((oldest, _)) = self.order.front() {
            if *oldest >= time - self.span && self.order.len() < self.cap {
                break;
            }
            if let Some((_, old)) = self.order.pop_front() {
                self.first.remove(&old);
            }
        }
        if self.first.contains_key(&key) {
            return false;
        }
        self.first.insert(key.clone(), event_id.to_owned());
        self.order.push_back((time, key));
        true
    }

    /// The event id of the first row of `key`, if still remembered.
    pub(crate) fn first_event(&self, key: &str) -> Option<&str> {
        self.first.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(id: &str, workflow: &str, trigger: &str, fork: bool, minute: u32) -> EventRow {
        let time: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 10, 5, 10, 0, 0).unwrap()
            + Duration::minutes(i64::from(minute));
        let mut row = EventRow::new(id, time, Category::PipelineRun, "workflow_run.requested");
        row.source = "github_webhook".into();
        row.source_event_id = format!("{id}:requested");
        row.repo = Some("acme/sdk".into());
        row.actor = Some("contributor".into());
        row.cicd_pipeline_name = Some(workflow.into());
        row.cicd_pipeline_run_id = Some(id.into());
        row.cicd_pipeline_trigger = Some(trigger.into());
        row.vcs_from_fork = Some(fork);
        row
    }

    /// CI runs on push and pull_request; the labeler on fork PRs.
    fn learned() -> Box<dyn Detector> {
        let mut detector = build(Params::default());
        let mut sink = Vec::new();
        for i in 0..20u32 {
            let trigger = if i % 2 == 0 { "push" } else { "pull_request" };
            detector.observe(
                &run(&format!("ci{i}"), "CI", trigger, false, i),
                Phase::Learn,
                &mut sink,
            );
            detector.observe(
                &run(&format!("lb{i}"), "Labeler", "pull_request_target", true, i),
                Phase::Learn,
                &mut sink,
            );
        }
        detector
    }

    #[test]
    fn ci_on_pull_request_target_from_a_fork_is_high() {
        let mut detector = learned();
        let mut out = Vec::new();
        let row = run("bad", "CI", "pull_request_target", true, 100);
        detector.observe(&row, Phase::Score, &mut out);
        let mut completed = row.clone();
        completed.event_id = "bad-completed".into();
        detector.observe(&completed, Phase::Score, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].entity, "acme/sdk");
        assert_eq!(out[0].evidence, vec!["bad".to_owned()]);
        assert!(
            out[0].explanation.unusual.contains("only Labeler"),
            "{:?}",
            out[0].explanation
        );
    }

    #[test]
    fn the_labeler_and_usual_triggers_are_quiet() {
        let mut detector = learned();
        let mut out = Vec::new();
        detector.observe(
            &run("l", "Labeler", "pull_request_target", true, 100),
            Phase::Score,
            &mut out,
        );
        detector.observe(
            &run("c", "CI", "pull_request", true, 101),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_young_workflow_is_only_learned() {
        let mut detector = build(Params::default());
        let mut out = Vec::new();
        for i in 0..5u32 {
            detector.observe(
                &run(&format!("n{i}"), "New", "push", false, i),
                Phase::Score,
                &mut out,
            );
        }
        detector.observe(
            &run("n9", "New", "pull_request_target", true, 9),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_new_ordinary_trigger_is_only_low() {
        let mut detector = learned();
        let mut out = Vec::new();
        detector.observe(
            &run("w", "CI", "workflow_dispatch", false, 100),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Low);
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(
            Params {
                rare_fraction: 1.5,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(
            Params {
                min_history: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(Params::default().check().is_ok());
    }
}
