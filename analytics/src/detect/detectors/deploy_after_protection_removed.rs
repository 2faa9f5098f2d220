//! Deployments of a repository shortly after one of its protections (branch
//! protection, ruleset) was removed or weakened and before it was restored:
//! the window in which unreviewed code can reach an environment.
//!
//! Baseline / Cold start: per repository the open removal (who, when, which
//! branch, pushes made while it is open) until a protection is created
//! again or `window_hours` pass, and the number of earlier removal episodes
//! in which the repository was deployed anyway, so a repository whose team
//! routinely deploys through such windows is only `low`. Removals and
//! restorations use the vocabulary and source handling of
//! `protection_weakened`, so a late webhook copy of an old removal does not
//! reopen it. A repository with no removal is never judged, whatever its
//! age.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use super::protection_weakened::{AuditCoverage, Change, classify};
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "deploy_after_protection_removed";

/// Events between two sweeps of remembered deployments.
const SWEEP_EVERY: u64 = 4096;
/// Pushes kept as evidence per open removal.
const PUSHES_KEPT: usize = 3;

/// Parameters of [`DeployAfterProtectionRemoved`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Repositories never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Hours after a removal during which a deployment is reported.
    pub window_hours: u32,
    /// Earlier removal episodes with deployments after which the pattern is
    /// routine for the repository (`low`).
    pub routine_episodes: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            window_hours: 24,
            routine_episodes: 3,
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
        if self.window_hours == 0 {
            return err("window_hours", "must be at least 1");
        }
        if self.routine_episodes == 0 {
            return err("routine_episodes", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(DeployAfterProtectionRemoved::new(params))
}

/// Deployments shortly after a protection of that repository was removed.
#[derive(Debug)]
pub struct DeployAfterProtectionRemoved {
    params: Params,
    coverage: AuditCoverage,
    /// Open removals by repository.
    open: HashMap<String, Removal>,
    /// Earlier removal episodes with deployments, by repository.
    episodes: HashMap<String, u32>,
    /// Deployment objects already judged, with when.
    judged: HashMap<String, DateTime<Utc>>,
    events: u64,
}

#[derive(Debug, Clone)]
struct Removal {
    event_id: String,
    time: DateTime<Utc>,
    actor: Option<String>,
    branch: Option<String>,
    change: Change,
    /// Pushes to the repository while the removal is open: (event id, actor, branch).
    pushes: Vec<(String, Option<String>, Option<String>)>,
    deployments: u32,
    /// Environments already reported for this removal: later deployments
    /// to them in the same window add nothing new (`low`).
    reported: Vec<String>,
}

/// Environments remembered per removal.
const MAX_REPORTED_ENVS: usize = 64;

/// Where a deployment went: its environment, else its target.
fn environment(event: &EventRow) -> &str {
    event
        .deployment_environment_name
        .as_deref()
        .or(event.target_name.as_deref())
        .unwrap_or("an environment")
}

/// One deployment object across its lifecycle records.
fn deployment_key(event: &EventRow) -> String {
    let id = event.correlation_id.as_deref().unwrap_or_else(|| {
        event
            .source_event_id
            .split(':')
            .next()
            .unwrap_or(&event.source_event_id)
    });
    let env = event
        .deployment_environment_name
        .as_deref()
        .or(event.target_name.as_deref())
        .unwrap_or("-");
    format!("{}|{}|{}|{}", event.source, event.repo_or_dash(), env, id)
}

impl DeployAfterProtectionRemoved {
    fn new(params: Params) -> Self {
        DeployAfterProtectionRemoved {
            coverage: AuditCoverage::default(),
            params,
            open: HashMap::new(),
            episodes: HashMap::new(),
            judged: HashMap::new(),
            events: 0,
        }
    }

    fn window(&self) -> Duration {
        Duration::hours(i64::from(self.params.window_hours))
    }

    /// Closes a removal, remembering whether deployments went through it.
    fn close(&mut self, repo: &str) {
        if let Some(removal) = self.open.remove(repo)
            && removal.deployments > 0
        {
            *self.episodes.entry(repo.to_owned()).or_default() += 1;
        }
    }

    fn on_change(&mut self, event: &EventRow, change: Change) {
        let Some(repo) = event.repo.clone() else {
            return;
        };
        if self.coverage.redundant(event, change) {
            return;
        }
        match change {
            Change::BranchProtectionAdded => self.close(&repo),
            Change::BranchProtectionRemoved | Change::BranchProtectionWeakened => {
                self.open.entry(repo).or_insert_with(|| Removal {
                    event_id: event.event_id.clone(),
                    time: event.event_time,
                    actor: event.actor.clone(),
                    branch: event.target_name.clone(),
                    change,
                    pushes: Vec::new(),
                    deployments: 0,
                    reported: Vec::new(),
                });
            }
            _ => {}
        }
    }

    fn on_push(&mut self, event: &EventRow) {
        let Some(repo) = event.repo.as_deref() else {
            return;
        };
        let Some(removal) = self.open.get_mut(repo) else {
            return;
        };
        let same_push = removal
            .pushes
            .iter()
            .any(|(_, actor, branch)| *actor == event.actor && *branch == event.vcs_ref_head_name);
        if removal.pushes.len() < PUSHES_KEPT && !same_push {
            removal.pushes.push((
                event.event_id.clone(),
                event.actor.clone(),
                event.vcs_ref_head_name.clone(),
            ));
        }
    }

    fn on_deployment(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // Review records belong to a deployment; they are not one.
        if event.approval_state.is_some() {
            return;
        }
        let Some(repo) = event.repo.clone() else {
            return;
        };
        let key = deployment_key(event);
        if self.judged.contains_key(&key) {
            return;
        }
        self.judged.insert(key, event.event_time);
        let window = self.window();
        let expired = self
            .open
            .get(&repo)
            .is_some_and(|r| event.event_time - r.time > window);
        if expired {
            self.close(&repo);
            return;
        }
        let episodes = self.episodes.get(&repo).copied().unwrap_or(0);
        let routine = episodes >= self.params.routine_episodes;
        let Some(removal) = self.open.get_mut(&repo) else {
            return;
        };
        removal.deployments += 1;
        let env = environment(event).to_owned();
        let repeat = removal.reported.contains(&env);
        if !repeat && removal.reported.len() < MAX_REPORTED_ENVS {
            removal.reported.push(env);
        }
        if phase != Phase::Score {
            return;
        }
        let removal = removal.clone();
        out.push(finding(event, &repo, &removal, episodes, routine, repeat));
    }
}

fn finding(
    event: &EventRow,
    repo: &str,
    removal: &Removal,
    episodes: u32,
    routine: bool,
    repeat: bool,
) -> Finding {
    let remover = removal.actor.as_deref().unwrap_or("someone");
    let deployer = event.actor.as_deref().unwrap_or("someone");
    let minutes = (event.event_time - removal.time).num_minutes();
    let pushed_by_remover = removal
        .pushes
        .iter()
        .any(|(_, a, _)| a.is_some() && *a == removal.actor);
    let same_person = event.actor.is_some() && event.actor == removal.actor;
    // A repeat deployment to an environment already reported for this
    // removal adds evidence, not a new alert.
    let severity = if routine || repeat {
        Severity::Low
    } else if same_person || pushed_by_remover {
        Severity::High
    } else {
        Severity::Medium
    };
    let branch = removal.branch.as_deref().unwrap_or("a branch");
    let env = environment(event);
    let mut evidence = vec![event.event_id.clone(), removal.event_id.clone()];
    evidence.extend(removal.pushes.iter().map(|(id, _, _)| id.clone()));
    let pushes = if removal.pushes.is_empty() {
        String::new()
    } else {
        format!("; {} push(es) landed in between", removal.pushes.len())
    };
    let what = match removal.change {
        Change::BranchProtectionWeakened => "weakened",
        _ => "removed",
    };
    Finding {
        scope: Default::default(),
        detector: NAME,
        severity,
        // Sooner after the removal is more telling.
        score: 24.0 * 60.0 / (minutes.max(1) as f64 + 60.0) + if same_person { 1.0 } else { 0.0 },
        event_time: event.event_time,
        entity: repo.to_owned(),
        title: format!(
            "Deployment of {repo} {minutes} minutes after its protection of {branch} was {what}"
        ),
        explanation: Explanation {
            expected: format!(
                "{repo} is deployed with its protections in place; {episodes} earlier removal episodes had deployments"
            ),
            observed: format!(
                "{remover} {what} the protection of {branch} at {} UTC and, not restored since, {deployer} deployed to {env} at {} UTC{pushes}",
                removal.time.format("%Y-%m-%d %H:%M"),
                event.event_time.format("%H:%M")
            ),
            unusual: if repeat {
                format!(
                    "another deployment to {env} {minutes} minutes into a window already reported"
                )
            } else if routine {
                format!("routine for {repo}: {episodes} earlier removal episodes had deployments")
            } else if same_person {
                format!("the person who {what} the protection deployed {minutes} minutes later")
            } else {
                format!("deployment {minutes} minutes into an unprotected window")
            },
        },
        evidence,
    }
}

impl Detector for DeployAfterProtectionRemoved {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[
            Category::ConfigChange,
            Category::CodeChange,
            Category::Deployment,
        ]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        self.events += 1;
        if self.events.is_multiple_of(SWEEP_EVERY) {
            let horizon = event.event_time - Duration::hours(48);
            self.judged.retain(|_, t| *t >= horizon);
            let window = self.window();
            let stale: Vec<String> = self
                .open
                .iter()
                .filter(|(_, r)| event.event_time - r.time > window)
                .map(|(repo, _)| repo.clone())
                .collect();
            for repo in stale {
                self.close(&repo);
            }
        }
        match event.category {
            Category::ConfigChange => {
                if let Some(change) = classify(event) {
                    self.on_change(event, change);
                }
            }
            Category::CodeChange => self.on_push(event),
            Category::Deployment => self.on_deployment(event, phase, out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 12, 15, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn row(
        id: &str,
        minutes: i64,
        category: Category,
        action: &str,
        repo: &str,
        actor: &str,
    ) -> EventRow {
        let mut r = EventRow::new(id, at(minutes), category, action);
        r.source = "github_audit".into();
        r.source_event_id = format!("{id}:created");
        r.outcome = "success".into();
        r.org = Some("acme".into());
        r.repo = Some(repo.into());
        r.actor = Some(actor.into());
        r.target_name = Some("main".into());
        r
    }

    fn deploy(id: &str, minutes: i64, repo: &str, actor: &str) -> EventRow {
        let mut r = row(
            id,
            minutes,
            Category::Deployment,
            "deployment.created",
            repo,
            actor,
        );
        r.source = "github_webhook".into();
        r.outcome = "pending".into();
        r.correlation_id = Some(id.into());
        r.deployment_environment_name = Some("production".into());
        r
    }

    fn run(d: &mut DeployAfterProtectionRemoved, rows: &[EventRow]) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in rows {
            d.observe(r, Phase::Score, &mut out);
        }
        out
    }

    #[test]
    fn a_deploy_inside_the_unprotected_window_is_reported_with_the_removal() {
        let mut d = DeployAfterProtectionRemoved::new(Params::default());
        let found = run(
            &mut d,
            &[
                deploy("d0", 0, "acme/ledger", "alice"),
                row(
                    "rm",
                    10,
                    Category::ConfigChange,
                    "protected_branch.destroy",
                    "acme/ledger",
                    "mallory",
                ),
                row(
                    "p1",
                    20,
                    Category::CodeChange,
                    "git.push",
                    "acme/ledger",
                    "mallory",
                ),
                deploy("d1", 55, "acme/ledger", "mallory"),
                deploy("d1", 56, "acme/ledger", "mallory"),
                deploy("x1", 57, "acme/other", "mallory"),
            ],
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(
            found[0].evidence,
            vec!["d1".to_owned(), "rm".to_owned(), "p1".to_owned()]
        );
        assert_eq!(found[0].entity, "acme/ledger");
    }

    #[test]
    fn restored_or_expired_protection_and_creation_are_quiet() {
        let mut d = DeployAfterProtectionRemoved::new(Params::default());
        let found = run(
            &mut d,
            &[
                row(
                    "c0",
                    0,
                    Category::ConfigChange,
                    "protected_branch.create",
                    "acme/new",
                    "bob",
                ),
                deploy("d0", 5, "acme/new", "bob"),
                row(
                    "rm",
                    10,
                    Category::ConfigChange,
                    "protected_branch.destroy",
                    "acme/a",
                    "bob",
                ),
                row(
                    "re",
                    20,
                    Category::ConfigChange,
                    "protected_branch.create",
                    "acme/a",
                    "bob",
                ),
                deploy("d1", 30, "acme/a", "bob"),
                row(
                    "rm2",
                    40,
                    Category::ConfigChange,
                    "protected_branch.destroy",
                    "acme/b",
                    "bob",
                ),
                deploy("d2", 40 + 25 * 60, "acme/b", "bob"),
            ],
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(
            Params {
                window_hours: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(Params::default().check().is_ok());
    }
}
