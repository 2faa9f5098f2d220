//! Deployments from a non-default branch to an environment that is normally
//! deployed from the default branch, and runs of a deploy workflow started
//! from such a branch before the deployment itself shows up.
//!
//! Baseline / Cold start: per repository+environment the deployments from
//! the default branch versus other branches (and the branches seen, so a
//! source that does not say which branch is the default, such as Argo CD or
//! GitLab, is judged against the environment's usual branch); per
//! environment name across repositories the same split; per workflow the
//! environments it deployed to and its runs by branch kind. A repository
//! environment with fewer than `min_history` deployments falls back on the
//! organisation-wide environment (`min_env_history`); below both, nothing
//! is judged.

use std::collections::HashMap;

use pipewatch_schema::{Category, Severity};

use super::unexpected_trigger::{RecentKeys, native_id, object_key};
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "non_default_branch_deploy";
/// Branches remembered per repository environment.
const MAX_BRANCHES: usize = 16;
/// Environments remembered per workflow.
const MAX_ENVS: usize = 8;

/// Parameters of [`NonDefaultBranchDeploy`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Repositories never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Deployments a repository's environment needs before it is judged on its own.
    pub min_history: u32,
    /// Deployments an environment name needs across the organisation
    /// before it stands in for a repository with too little history.
    pub min_env_history: u32,
    /// Non-default deployments below this share count as "normally from the default branch".
    pub rare_fraction: f64,
    /// Share of deployments one branch needs to be the environment's usual
    /// branch when the source does not say which branch is the default.
    pub usual_branch_share: f64,
    /// How long later rows of one deployment or run are recognised as the same object.
    pub dedupe_hours: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 3,
            min_env_history: 20,
            rare_fraction: 0.05,
            usual_branch_share: 0.9,
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
        let err = |param, reason: &str| Err(ParamError::new(NAME, param, reason));
        if self.min_history == 0 {
            return err("min_history", "must be at least 1");
        }
        if self.min_env_history == 0 {
            return err("min_env_history", "must be at least 1");
        }
        if !(0.0..1.0).contains(&self.rare_fraction) {
            return err("rare_fraction", "must be in 0..1");
        }
        if !(self.usual_branch_share > 0.5 && self.usual_branch_share <= 1.0) {
            return err("usual_branch_share", "must be in (0.5, 1]");
        }
        if self.dedupe_hours == 0 {
            return err("dedupe_hours", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    let span = chrono::Duration::hours(i64::from(params.dedupe_hours));
    Box::new(NonDefaultBranchDeploy {
        deployments_seen: RecentKeys::new(span, 200_000),
        runs_seen: RecentKeys::new(span, 200_000),
        params,
        envs: HashMap::new(),
        org_envs: HashMap::new(),
        workflows: HashMap::new(),
    })
}

/// Deployments of one environment by branch kind.
#[derive(Debug, Default, Clone)]
struct Split {
    default: u32,
    other: u32,
    branches: Vec<(String, u32)>,
}

impl Split {
    fn total(&self) -> u32 {
        self.default + self.other
    }

    /// The branch holding at least `share` of the deployments, if any.
    fn usual_branch(&self, share: f64) -> Option<&str> {
        let total: u32 = self.branches.iter().map(|(_, n)| n).sum();
        self.branches
            .iter()
            .find(|(_, n)| total > 0 && f64::from(*n) / f64::from(total) >= share)
            .map(|(b, _)| b.as_str())
    }

    fn add(&mut self, from_default: Option<bool>, branch: &str) {
        match from_default {
            Some(true) => self.default += 1,
            Some(false) => self.other += 1,
            None => {}
        }
        if let Some((_, n)) = self.branches.iter_mut().find(|(b, _)| b == branch) {
            *n += 1;
        } else if self.branches.len() < MAX_BRANCHES {
            self.branches.push((branch.to_owned(), 1));
        }
    }

    /// Whether this history says "deployed from the default branch".
    fn default_only(&self, min: u32, rare: f64) -> bool {
        self.total() >= min && f64::from(self.other) / f64::from(self.total()) < rare
    }
}

/// What a workflow deploys and where its runs come from.
#[derive(Debug, Default)]
struct DeployWorkflow {
    envs: Vec<String>,
    runs: Split,
}

/// Deployments from non-default branches to default-branch environments.
#[derive(Debug)]
pub struct NonDefaultBranchDeploy {
    params: Params,
    deployments_seen: RecentKeys,
    runs_seen: RecentKeys,
    /// Keyed by (repository, environment).
    envs: HashMap<(String, String), Split>,
    /// Keyed by environment name.
    org_envs: HashMap<String, Split>,
    /// Keyed by (repository, workflow).
    workflows: HashMap<(String, String), DeployWorkflow>,
}

impl Detector for NonDefaultBranchDeploy {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::Deployment, Category::PipelineRun]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        match event.category {
            Category::Deployment => self.deployment(event, phase, out),
            Category::PipelineRun => self.run(event, phase, out),
            _ => {}
        }
    }
}

impl NonDefaultBranchDeploy {
    fn deployment(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(repo), Some(env), Some(branch)) = (
            event.repo.as_deref(),
            event.deployment_environment_name.as_deref(),
            event.vcs_ref_head_name.as_deref(),
        ) else {
            return;
        };
        // One deployment yields created/status/review rows: judge it once.
        let object = event
            .cicd_pipeline_run_id
            .as_deref()
            .or(event.cicd_pipeline_task_run_id.as_deref())
            .or(event.correlation_id.as_deref())
            .unwrap_or_else(|| native_id(&event.source_event_id));
        let key = format!("{}\u{1f}{repo}\u{1f}{env}\u{1f}{object}", event.source);
        if !self
            .deployments_seen
            .first_sight(event.event_time, key, &event.event_id)
        {
            return;
        }
        let env_key = (repo.to_owned(), env.to_owned());
        let from_default = event.vcs_ref_is_default.or_else(|| {
            self.envs
                .get(&env_key)
                .and_then(|s| s.usual_branch(self.params.usual_branch_share))
                .map(|usual| usual == branch)
        });
        if phase == Phase::Score
            && from_default == Some(false)
            && let Some(finding) = self.judge_deployment(event, &env_key, branch)
        {
            out.push(finding);
        }
        self.envs
            .entry(env_key.clone())
            .or_default()
            .add(from_default, branch);
        self.org_envs
            .entry(env_key.1.clone())
            .or_default()
            .add(from_default, branch);
        if let Some(workflow) = event.cicd_pipeline_name.as_deref() {
            let entry = self
                .workflows
                .entry((env_key.0, workflow.to_owned()))
                .or_default();
            if entry.envs.len() < MAX_ENVS && !entry.envs.contains(&env_key.1) {
                entry.envs.push(env_key.1);
            }
        }
    }

    fn judge_deployment(
        &self,
        event: &EventRow,
        env_key: &(String, String),
        branch: &str,
    ) -> Option<Finding> {
        let p = &self.params;
        let (repo, env) = env_key;
        let local = self.envs.get(env_key).cloned().unwrap_or_default();
        let org = self.org_envs.get(env).cloned().unwrap_or_default();
        let (severity, expected) = if local.default_only(p.min_history, p.rare_fraction) {
            let severity = [Severity::Medium, Severity::High][usize::from(local.other == 0)];
            let (n, total) = (local.default, local.total());
            let text = format!(
                "{n} of {total} deployments of {repo} to {env} came from the default branch"
            );
            (severity, text)
        } else if local.total() < p.min_history
            && org.default_only(p.min_env_history, p.rare_fraction)
        {
            let (n, total, own) = (org.default, org.total(), local.total());
            let text = format!(
                "across repositories {n} of {total} deployments to {env} came from the default branch ({repo} has {own})"
            );
            (Severity::Medium, text)
        } else {
            return None;
        };
        let mut evidence = vec![event.event_id.clone()];
        if let Some(first) = self.runs_seen.first_event(&object_key(event))
            && first != event.event_id
        {
            evidence.push(first.to_owned());
        }
        let who = event.actor.as_deref().unwrap_or("someone");
        let via = event.cicd_pipeline_name.as_deref().unwrap_or(&event.action);
        let share = (f64::from(local.other) + 0.5) / (f64::from(local.total()) + 1.0);
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -share.log10(),
            event_time: event.event_time,
            entity: repo.clone(),
            title: format!(
                "{repo} deployed to {env} from branch {branch} instead of the default branch"
            ),
            explanation: Explanation {
                expected,
                observed: format!("{who} deployed {repo} to {env} from {branch} ({via})"),
                unusual: format!(
                    "{} of {} earlier deployments of {repo} to {env} came from other branches",
                    local.other,
                    local.total()
                ),
            },
            evidence,
        })
    }

    fn run(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(repo), Some(workflow)) =
            (event.repo.as_deref(), event.cicd_pipeline_name.as_deref())
        else {
            return;
        };
        if !self
            .runs_seen
            .first_sight(event.event_time, object_key(event), &event.event_id)
        {
            return;
        }
        let key = (repo.to_owned(), workflow.to_owned());
        let branch = event.vcs_ref_head_name.as_deref().unwrap_or("-");
        if phase == Phase::Score
            && event.vcs_ref_is_default == Some(false)
            && let Some(finding) = self.judge_run(event, &key, branch)
        {
            out.push(finding);
        }
        // Only workflows that deploy matter; others are not worth the memory.
        if let Some(entry) = self.workflows.get_mut(&key) {
            entry.runs.add(event.vcs_ref_is_default, branch);
        }
    }

    fn judge_run(&self, event: &EventRow, key: &(String, String), branch: &str) -> Option<Finding> {
        let p = &self.params;
        let workflow = self.workflows.get(key)?;
        if !workflow.runs.default_only(p.min_history, p.rare_fraction) {
            return None;
        }
        let (repo, name) = key;
        let guarded: Vec<&str> = workflow
            .envs
            .iter()
            .filter(|env| {
                self.envs
                    .get(&(repo.clone(), (*env).clone()))
                    .is_some_and(|s| s.default_only(p.min_history, p.rare_fraction))
            })
            .map(String::as_str)
            .collect();
        if guarded.is_empty() {
            return None;
        }
        // Where the run will deploy is not known yet: it is a strong signal
        // only when every environment this workflow deploys to is guarded.
        let severity = if guarded.len() == workflow.envs.len() {
            Severity::Medium
        } else {
            Severity::Low
        };
        let who = event.actor.as_deref().unwrap_or("someone");
        let envs = guarded.join(", ");
        let total = workflow.runs.total();
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -(0.5 / (f64::from(total) + 1.0)).log10(),
            event_time: event.event_time,
            entity: repo.clone(),
            title: format!(
                "{name} of {repo}, which deploys to {envs}, started from branch {branch}"
            ),
            explanation: Explanation {
                expected: format!(
                    "{} of {total} runs of {name} came from the default branch, as do deployments to {envs}",
                    workflow.runs.default
                ),
                observed: format!(
                    "{who} started {name} of {repo} from {branch} ({})",
                    event
                        .cicd_pipeline_trigger
                        .as_deref()
                        .unwrap_or("unknown trigger")
                ),
                unusual: format!(
                    "{} of {total} earlier runs came from other branches",
                    workflow.runs.other
                ),
            },
            evidence: vec![event.event_id.clone()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn at(step: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 9, 0, 0).unwrap() + Duration::minutes(step * 30)
    }

    fn run(id: &str, branch: &str, default: bool, step: i64) -> EventRow {
        let mut row = EventRow::new(
            format!("{id}-req"),
            at(step),
            Category::PipelineRun,
            "workflow_run.requested",
        );
        row.source = "github_webhook".into();
        row.source_event_id = format!("{id}:requested");
        row.repo = Some("acme/ledger".into());
        row.actor = Some("dev".into());
        row.cicd_pipeline_name = Some("Deploy".into());
        row.cicd_pipeline_run_id = Some(id.into());
        row.cicd_pipeline_trigger = Some("workflow_dispatch".into());
        row.vcs_ref_head_name = Some(branch.into());
        row.vcs_ref_is_default = Some(default);
        row
    }

    fn deploy(id: &str, env: &str, branch: &str, default: Option<bool>, step: i64) -> EventRow {
        let mut row = run(id, branch, default.unwrap_or(true), step);
        row.event_id = format!("{id}-dep");
        row.category = Category::Deployment;
        row.action = "deployment.created".into();
        row.source_event_id = format!("d{id}:created");
        row.vcs_ref_is_default = default;
        row.deployment_environment_name = Some(env.into());
        row.event_time += Duration::minutes(1);
        row
    }

    /// Feeds `rows` in order and returns what was reported.
    fn feed(detector: &mut Box<dyn Detector>, rows: &[EventRow], phase: Phase) -> Vec<Finding> {
        let mut out = Vec::new();
        rows.iter()
            .for_each(|r| detector.observe(r, phase, &mut out));
        out
    }

    fn score(detector: &mut Box<dyn Detector>, rows: &[EventRow]) -> Vec<Finding> {
        feed(detector, rows, Phase::Score)
    }

    /// Five runs of Deploy from main, each deploying to production.
    fn learned() -> Box<dyn Detector> {
        let mut detector = build(Params::default());
        for i in 0..5 {
            let id = format!("r{i}");
            let rows = [
                run(&id, "main", true, i),
                deploy(&id, "production", "main", Some(true), i),
            ];
            feed(&mut detector, &rows, Phase::Learn);
        }
        detector
    }

    #[test]
    fn a_production_deploy_from_a_feature_branch_is_high_and_links_its_run() {
        let mut detector = learned();
        let out = score(&mut detector, &[run("x", "feat/hotfix", false, 10)]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::Medium);
        let dep = deploy("x", "production", "feat/hotfix", Some(false), 10);
        let mut review = dep.clone();
        review.event_id = "x-review".into();
        review.action = "deployment_review.requested".into();
        let out = score(&mut detector, &[dep, review]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].entity, "acme/ledger");
        assert_eq!(out[0].evidence, ["x-dep", "x-req"]);
    }

    #[test]
    fn young_environments_are_quiet_and_the_usual_branch_stands_in_for_the_default() {
        let mut detector = learned();
        let main = deploy("y", "production", "main", Some(true), 10);
        // First deployment ever to a new environment, from a branch.
        let fresh = deploy("z", "preview", "feat/x", Some(false), 11);
        assert!(score(&mut detector, &[main, fresh]).is_empty());
        // A source that does not flag the default branch: the usual one counts.
        let usual = |i: i64| deploy(&format!("a{i}"), "app", "main", None, 12 + i);
        let rows: Vec<EventRow> = (0..4).map(usual).collect();
        assert!(score(&mut detector, &rows).is_empty());
        let out = score(&mut detector, &[deploy("b", "app", "hack", None, 19)]);
        assert_eq!(out.len(), 1, "{out:?}");
    }

    #[test]
    fn a_branch_run_of_a_workflow_that_also_deploys_branches_elsewhere_is_low() {
        let mut detector = learned();
        let preview = |i: i64| deploy(&format!("p{i}"), "preview", "feat/p", Some(false), 20 + i);
        let rows: Vec<EventRow> = (0..4).map(preview).collect();
        feed(&mut detector, &rows, Phase::Learn);
        let out = score(&mut detector, &[run("b", "feat/y", false, 30)]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::Low);
    }

    #[test]
    fn unusable_parameters_are_refused() {
        let (share, rare) = (0.3, -0.1);
        let bad_share = Params {
            usual_branch_share: share,
            ..Params::default()
        };
        let bad_rare = Params {
            rare_fraction: rare,
            ..Params::default()
        };
        assert!(bad_share.check().is_err() && bad_rare.check().is_err());
        assert!(Params::default().check().is_ok());
    }
}
