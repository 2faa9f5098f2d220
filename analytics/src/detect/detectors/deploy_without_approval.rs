//! Deployments that started without an approval to an environment whose
//! deployments are normally approved (GitHub environment reviews, approval
//! states carried by other CD sources).
//!
//! Baseline / Cold start: per repository and environment the approved /
//! unapproved outcome of its last `history_cap` deployments, and per
//! organisation and environment name the same pooled over all repositories
//! (so a repository with a short history borrows the organisation's habit
//! for, say, `production`). A deployment is judged once, when it starts
//! (its first in-progress, success or failure record), against approvals
//! seen for its run or deployment id. A repository's first
//! `min_own_history` deployments to an environment and environments with
//! fewer than `min_history` judged deployments (own or pooled) are only
//! learned.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use super::protection_weakened::org_of;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "deploy_without_approval";

/// Events between two sweeps of expired pending deployments and approvals.
const SWEEP_EVERY: u64 = 4096;

/// Parameters of [`DeployWithoutApproval`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Entities (`repo/environment`) never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Judged deployments an environment needs (its own, or pooled across the
    /// organisation's environments of the same name) before it is judged.
    pub min_history: u32,
    /// Judged deployments of the repository's own environment needed besides:
    /// its first deployments are learned, not reported.
    pub min_own_history: u32,
    /// Estimated share of approved deployments from which an environment
    /// counts as "normally approved".
    pub min_approved_share: f64,
    /// Weight, in deployments, of the organisation-wide share of the
    /// environment name in the estimate for one repository.
    pub pool_weight: f64,
    /// Own deployments, all approved, from which an unapproved one is `high`.
    pub high_history: u32,
    /// Hours a created deployment waits for its start before it is forgotten.
    pub pending_hours: u32,
    /// Outcomes remembered per environment (older ones are forgotten).
    pub history_cap: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 3,
            min_own_history: 1,
            min_approved_share: 0.9,
            pool_weight: 5.0,
            high_history: 5,
            pending_hours: 24,
            history_cap: 200,
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
        if self.min_own_history == 0 {
            return err("min_own_history", "must be at least 1");
        }
        if !(self.min_approved_share > 0.5 && self.min_approved_share <= 1.0) {
            return err("min_approved_share", "must be above 0.5 and at most 1");
        }
        if !(self.pool_weight.is_finite() && self.pool_weight >= 0.0) {
            return err("pool_weight", "must be a finite number of at least 0");
        }
        if self.high_history == 0 {
            return err("high_history", "must be at least 1");
        }
        if self.pending_hours == 0 {
            return err("pending_hours", "must be at least 1");
        }
        if self.history_cap < self.min_history.max(self.high_history) {
            return err(
                "history_cap",
                "must be at least min_history and high_history",
            );
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(DeployWithoutApproval::new(params))
}

/// Deployments without approval to an environment whose deployments are normally approved.
#[derive(Debug)]
pub struct DeployWithoutApproval {
    params: Params,
    /// Created deployments not started yet, by deployment key.
    pending: HashMap<String, Pending>,
    /// Deployment keys already judged, with when (so later status rows are skipped).
    judged: HashMap<String, DateTime<Utc>>,
    /// Review decisions by `run|environment` and `deployment|environment`.
    approvals: HashMap<String, Decision>,
    /// Outcomes per (repository, environment).
    environments: HashMap<(String, String), Outcomes>,
    /// Outcomes per (organisation, environment name), all repositories.
    pooled: HashMap<(String, String), Outcomes>,
    events: u64,
}

#[derive(Debug, Clone)]
struct Pending {
    event_id: String,
    time: DateTime<Utc>,
    actor: Option<String>,
    run_id: Option<String>,
}

#[derive(Debug, Clone)]
struct Decision {
    approved: bool,
    time: DateTime<Utc>,
}

/// The last outcomes of one environment: `true` = approved.
#[derive(Debug, Clone, Default)]
struct Outcomes {
    recent: VecDeque<bool>,
    approved: u32,
}

impl Outcomes {
    fn push(&mut self, approved: bool, cap: usize) {
        self.recent.push_back(approved);
        self.approved += u32::from(approved);
        while self.recent.len() > cap {
            if self.recent.pop_front() == Some(true) {
                self.approved -= 1;
            }
        }
    }

    fn total(&self) -> u32 {
        self.recent.len() as u32
    }

    fn share(&self) -> f64 {
        if self.recent.is_empty() {
            0.0
        } else {
            f64::from(self.approved) / self.recent.len() as f64
        }
    }
}

/// The environment a deployment record is about.
fn environment(event: &EventRow) -> Option<&str> {
    event
        .deployment_environment_name
        .as_deref()
        .or_else(|| {
            (event.target_type.as_deref() == Some("environment"))
                .then_some(event.target_name.as_deref())
                .flatten()
        })
        .filter(|e| !e.is_empty())
}

/// One deployment object across its lifecycle records: the native
/// deployment id (correlation id), else the native id before its suffix.
fn deployment_key(event: &EventRow, env: &str) -> String {
    let id = event.correlation_id.as_deref().unwrap_or_else(|| {
        event
            .source_event_id
            .split(':')
            .next()
            .unwrap_or(&event.source_event_id)
    });
    format!("{}|{}|{}|{}", event.source, event.repo_or_dash(), env, id)
}

impl DeployWithoutApproval {
    fn sweep(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::hours(i64::from(self.params.pending_hours));
        self.pending.retain(|_, p| p.time >= horizon);
        self.judged.retain(|_, t| *t >= horizon);
        self.approvals.retain(|_, d| d.time >= horizon);
    }

    /// Records a review decision (or an approval state) for later deployments.
    fn record_decision(&mut self, event: &EventRow, env: &str, approved: bool) {
        let decision = Decision {
            approved,
            time: event.event_time,
        };
        if let Some(run) = event.cicd_pipeline_run_id.as_deref() {
            self.approvals
                .insert(format!("run|{run}|{env}"), decision.clone());
        }
        if let Some(id) = event.correlation_id.as_deref() {
            self.approvals.insert(format!("dep|{id}|{env}"), decision);
        }
    }

    fn decision_for(&self, run_id: Option<&str>, event: &EventRow, env: &str) -> Option<&Decision> {
        let by_run = run_id
            .or(event.cicd_pipeline_run_id.as_deref())
            .and_then(|run| self.approvals.get(&format!("run|{run}|{env}")));
        by_run.or_else(|| {
            event
                .correlation_id
                .as_deref()
                .and_then(|id| self.approvals.get(&format!("dep|{id}|{env}")))
        })
    }

    fn judge(
        &mut self,
        event: &EventRow,
        env: &str,
        pending: Option<Pending>,
        phase: Phase,
        out: &mut Vec<Finding>,
    ) {
        let run_id = pending.as_ref().and_then(|p| p.run_id.clone());
        let decision = self.decision_for(run_id.as_deref(), event, env);
        let approved = decision.is_some_and(|d| d.approved);
        let rejected = decision.is_some_and(|d| !d.approved);
        let repo = event.repo_or_dash().to_owned();
        let own_key = (repo.clone(), env.to_owned());
        let pool_key = (org_of(event), env.to_owned());
        if phase == Phase::Score && !approved {
            let own = self.environments.get(&own_key).cloned().unwrap_or_default();
            let pool = self.pooled.get(&pool_key).cloned().unwrap_or_default();
            if let Some(finding) = self.assess(event, env, &own, &pool, pending.as_ref(), rejected)
            {
                out.push(finding);
            }
        }
        let cap = self.params.history_cap as usize;
        self.environments
            .entry(own_key)
            .or_default()
            .push(approved, cap);
        self.pooled.entry(pool_key).or_default().push(approved, cap);
    }

    fn assess(
        &self,
        event: &EventRow,
        env: &str,
        own: &Outcomes,
        pool: &Outcomes,
        pending: Option<&Pending>,
        rejected: bool,
    ) -> Option<Finding> {
        let p = &self.params;
        if own.total() < p.min_own_history {
            return None;
        }
        let pooled_usable = pool.total() >= p.min_history;
        if own.total() < p.min_history && !pooled_usable {
            return None;
        }
        let weight = if pooled_usable { p.pool_weight } else { 0.0 };
        let estimate =
            (f64::from(own.approved) + weight * pool.share()) / (f64::from(own.total()) + weight);
        if estimate < p.min_approved_share {
            return None;
        }
        let spotless = own.approved == own.total();
        let severity = if rejected || (spotless && own.total() >= p.high_history) {
            Severity::High
        } else {
            Severity::Medium
        };
        // Laplace-smoothed chance of an unapproved deployment, as surprise.
        let unapproved =
            (f64::from(own.total() - own.approved) + weight * (1.0 - pool.share()) + 0.5)
                / (f64::from(own.total()) + weight + 1.0);
        let score = -unapproved.ln();
        let repo = event.repo_or_dash();
        let actor = pending
            .and_then(|p| p.actor.as_deref())
            .or(event.actor.as_deref())
            .unwrap_or("someone");
        let created = pending.map_or(event.event_time, |p| p.time);
        // The deployment's own record first, then the record that started it.
        let mut evidence: Vec<String> = pending.iter().map(|p| p.event_id.clone()).collect();
        if !evidence.contains(&event.event_id) {
            evidence.push(event.event_id.clone());
        }
        let pooled_text = if pooled_usable {
            format!(
                "; across the organisation, deployments to {env} were approved {} of {} times",
                pool.approved,
                pool.total()
            )
        } else {
            String::new()
        };
        let what = if rejected {
            "went ahead although its review was rejected"
        } else {
            "started with no approval recorded for it"
        };
        let when = created.format("%Y-%m-%d %H:%M");
        let observed =
            format!("{actor}'s deployment of {repo} to {env} created at {when} UTC {what}");
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score,
            event_time: event.event_time,
            entity: format!("{repo}/{env}"),
            title: format!("Deployment of {repo} to {env} without approval"),
            explanation: Explanation {
                expected: format!(
                    "deployments of {repo} to {env} were approved {} of {} times{pooled_text}",
                    own.approved,
                    own.total()
                ),
                observed,
                unusual: format!(
                    "estimated approval rate {:.2}; an unapproved deployment had a {:.1}% chance",
                    estimate,
                    unapproved * 100.0
                ),
            },
            evidence,
        })
    }

    fn new(params: Params) -> Self {
        DeployWithoutApproval {
            params,
            pending: HashMap::new(),
            judged: HashMap::new(),
            approvals: HashMap::new(),
            environments: HashMap::new(),
            pooled: HashMap::new(),
            events: 0,
        }
    }
}

impl Detector for DeployWithoutApproval {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::Deployment]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        self.events += 1;
        if self.events.is_multiple_of(SWEEP_EVERY) {
            self.sweep(event.event_time);
        }
        let Some(env) = environment(event).map(str::to_owned) else {
            return;
        };
        // An approval state on any record (a review, or a deployment record
        // that carries one) is a decision about that run's deployment.
        match event.approval_state.as_deref() {
            Some("approved") => self.record_decision(event, &env, true),
            Some("rejected") => self.record_decision(event, &env, false),
            _ => {}
        }
        // Review records (requested / approved / rejected) are not deployments.
        if event.action.contains("review") || event.action.contains("approval") {
            return;
        }
        let key = deployment_key(event, &env);
        if self.judged.contains_key(&key) {
            return;
        }
        match event.outcome.as_str() {
            "in_progress" | "success" | "failure" => {
                let pending = self.pending.remove(&key);
                self.judged.insert(key, event.event_time);
                self.judge(event, &env, pending, phase, out);
            }
            // Never ran: nothing to judge.
            "cancelled" | "skipped" => {
                self.pending.remove(&key);
                self.judged.insert(key, event.event_time);
            }
            _ => {
                let entry = self.pending.entry(key).or_insert_with(|| Pending {
                    event_id: event.event_id.clone(),
                    time: event.event_time,
                    actor: event.actor.clone(),
                    run_id: None,
                });
                if entry.run_id.is_none() {
                    entry.run_id = event.cicd_pipeline_run_id.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 9, 0, 0).unwrap()
    }

    /// Where a test record belongs: repository, environment, deployment id, run id.
    #[derive(Clone, Copy)]
    struct Dep<'a> {
        repo: &'a str,
        env: &'a str,
        dep: &'a str,
        run: &'a str,
    }

    impl<'a> Dep<'a> {
        fn of(repo: &'a str, env: &'a str, dep: &'a str, run: &'a str) -> Self {
            Dep {
                repo,
                env,
                dep,
                run,
            }
        }
    }

    fn row(id: &str, minutes: i64, action: &str, outcome: &str, at: Dep<'_>) -> EventRow {
        let mut r = EventRow::new(
            id,
            t0() + Duration::minutes(minutes),
            Category::Deployment,
            action,
        );
        r.source = "github_webhook".into();
        r.source_event_id = format!("{id}:x");
        r.outcome = outcome.into();
        r.repo = Some(at.repo.into());
        r.org = Some("acme".into());
        r.actor = Some("dev".into());
        r.deployment_environment_name = Some(at.env.into());
        if !at.dep.is_empty() {
            r.correlation_id = Some(at.dep.into());
        }
        r.cicd_pipeline_run_id = Some(at.run.into());
        r
    }

    /// One deployment: created, optionally reviewed and approved, then started.
    fn deploy(
        d: &mut DeployWithoutApproval,
        n: i64,
        repo: &str,
        env: &str,
        approved: bool,
        phase: Phase,
    ) -> Vec<Finding> {
        let (dep, run, m) = (format!("d{n}"), format!("r{n}"), n * 100);
        let at = Dep::of(repo, env, &dep, &run);
        let review_at = Dep { dep: "", ..at };
        let mut out = Vec::new();
        let created = row(&format!("c{n}"), m, "deployment.created", "pending", at);
        d.observe(&created, phase, &mut out);
        if approved {
            let action = "deployment_review.approved";
            let mut review = row(&format!("a{n}"), m + 2, action, "success", review_at);
            review.approval_state = Some("approved".into());
            d.observe(&review, phase, &mut out);
        }
        let action = "deployment_status.created";
        let started = row(&format!("s{n}"), m + 3, action, "in_progress", at);
        d.observe(&started, phase, &mut out);
        let done = row(&format!("z{n}"), m + 9, action, "success", at);
        d.observe(&done, phase, &mut out);
        out
    }

    #[test]
    fn an_unapproved_deploy_to_an_always_approved_environment_is_reported_once() {
        let mut d = DeployWithoutApproval::new(Params::default());
        for n in 0..6 {
            assert!(deploy(&mut d, n, "acme/api", "production", true, Phase::Learn).is_empty());
        }
        assert!(deploy(&mut d, 6, "acme/api", "production", true, Phase::Score).is_empty());
        let found = deploy(&mut d, 7, "acme/api", "production", false, Phase::Score);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found[0].evidence, vec!["c7".to_owned(), "s7".to_owned()]);
        assert_eq!(found[0].entity, "acme/api/production");
        assert!(
            found[0].explanation.expected.contains("7 of 7"),
            "{:?}",
            found[0].explanation
        );
    }

    #[test]
    fn environments_never_approved_and_first_deploys_stay_quiet() {
        let mut d = DeployWithoutApproval::new(Params::default());
        for n in 0..6 {
            deploy(&mut d, n, "acme/api", "staging", false, Phase::Learn);
            deploy(&mut d, 10 + n, "acme/api", "production", true, Phase::Learn);
        }
        assert!(deploy(&mut d, 20, "acme/api", "staging", false, Phase::Score).is_empty());
        // A new repository's very first production deploy is only learned.
        assert!(deploy(&mut d, 21, "acme/new", "production", false, Phase::Score).is_empty());
    }

    #[test]
    fn a_short_history_borrows_the_organisation_habit_at_medium() {
        let mut d = DeployWithoutApproval::new(Params::default());
        for n in 0..8 {
            deploy(
                &mut d,
                n,
                &format!("acme/r{n}"),
                "production",
                true,
                Phase::Learn,
            );
        }
        deploy(&mut d, 10, "acme/young", "production", true, Phase::Learn);
        let found = deploy(&mut d, 11, "acme/young", "production", false, Phase::Score);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Medium);
    }

    #[test]
    fn a_deploy_going_ahead_after_a_rejected_review_is_high() {
        let mut d = DeployWithoutApproval::new(Params::default());
        for n in 0..3 {
            deploy(&mut d, n, "acme/api", "production", true, Phase::Learn);
        }
        let (at, mut out) = (Dep::of("acme/api", "production", "d9", "r9"), Vec::new());
        let rejected = "deployment_review.rejected";
        let mut review = row("no", 900, rejected, "failure", Dep { dep: "", ..at });
        review.approval_state = Some("rejected".into());
        d.observe(&review, Phase::Score, &mut out);
        let started = row("s9", 901, "deployment_status.created", "in_progress", at);
        d.observe(&started, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::High);
        assert!(out[0].explanation.observed.contains("rejected"));
    }

    #[test]
    fn parameters_that_cannot_work_are_refused() {
        let bad = Params {
            min_approved_share: 1.5,
            ..Params::default()
        };
        assert!(bad.check().is_err());
        let bad = Params {
            pending_hours: 0,
            ..Params::default()
        };
        assert!(bad.check().is_err());
        assert!(Params::default().check().is_ok());
    }
}
