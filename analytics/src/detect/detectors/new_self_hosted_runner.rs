//! Registration of self-hosted runners, and jobs picked up by a persistent
//! self-hosted runner whose name the organisation has never seen: a
//! machine outside the known fleet now runs the organisation's code.
//!
//! Baseline / Cold start: per organisation the self-hosted runner names
//! seen, how many self-hosted jobs and since when, and recent runner
//! registrations; per runner-name family (name with its id-like parts
//! masked, `arc-runner-*-runner-*`) whether its members are single-use.
//! Single-use (ephemeral) runners get a new name per job by design and are
//! never judged. An organisation with fewer than `min_history_jobs`
//! self-hosted jobs or `min_history_hours` of history only learns its
//! fleet; registrations are `low` while they are routine for it.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, RunnerHosting, Severity};

use super::protection_weakened::org_of;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "new_self_hosted_runner";

/// Runner names remembered (ephemeral runners are never stored).
const MAX_RUNNERS: usize = 100_000;
/// Registrations remembered per organisation.
const MAX_REGISTRATIONS: usize = 64;

/// Parameters of [`NewSelfHostedRunner`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Runner names and organisations never reported.
    pub allow: Vec<String>,
    /// Self-hosted job records an organisation needs before a new runner is judged.
    pub min_history_jobs: u32,
    /// Hours of self-hosted history an organisation needs before a new runner is judged.
    pub min_history_hours: u32,
    /// Registrations within `routine_days` from which registering is routine (`low`).
    pub routine_registrations: u32,
    /// Days looked back for routine registrations.
    pub routine_days: u32,
    /// Hours after a registration during which a new runner's first job is tied to it.
    pub registration_window_hours: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history_jobs: 20,
            min_history_hours: 24,
            routine_registrations: 4,
            routine_days: 30,
            registration_window_hours: 24,
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
        if self.min_history_jobs == 0 {
            return err("min_history_jobs", "must be at least 1");
        }
        if self.routine_registrations == 0 {
            return err("routine_registrations", "must be at least 1");
        }
        if self.routine_days == 0 {
            return err("routine_days", "must be at least 1");
        }
        if self.registration_window_hours == 0 {
            return err("registration_window_hours", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(NewSelfHostedRunner::new(params))
}

/// Registration of self-hosted runners and jobs on runners never seen before.
#[derive(Debug)]
pub struct NewSelfHostedRunner {
    params: Params,
    orgs: HashMap<String, OrgFleet>,
    /// Known persistent (or not-yet-known) runner names by (org, name): jobs seen.
    runners: HashMap<(String, String), u32>,
    /// Runner-name families by (org, family): (members seen, said single-use).
    families: HashMap<(String, String), (u32, bool)>,
}

#[derive(Debug, Clone)]
struct OrgFleet {
    first_seen: DateTime<Utc>,
    jobs: u32,
    /// Whether job records of this organisation carry job ids; then records
    /// without one (audit copies) are left to those that have one.
    has_job_ids: bool,
    registrations: VecDeque<Registration>,
}

#[derive(Debug, Clone)]
struct Registration {
    event_id: String,
    time: DateTime<Utc>,
    actor: Option<String>,
    /// Whether a new runner's first job was already tied to it.
    used: bool,
}

/// The name with id-like parts (digits, long hex runs) masked, so members
/// of one autoscaled pool share a family.
fn family(name: &str) -> String {
    name.split(['-', '_', '.', ' '])
        .map(|token| {
            let id_like = token.chars().any(|c| c.is_ascii_digit())
                || (token.len() >= 5 && token.chars().all(|c| c.is_ascii_hexdigit()));
            if id_like { "*" } else { token }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Whether an action registers a runner (`org.register_self_hosted_runner`,
/// `repo.register_self_hosted_runner`, GitLab `runner.registered`, …).
fn is_registration(action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    action.contains("runner")
        && (action.contains("register")
            || action.ends_with(".create")
            || action.ends_with(".created"))
        && !action.contains("unregister")
        && !action.contains("deregister")
        && !action.contains("remove")
}

impl NewSelfHostedRunner {
    fn new(params: Params) -> Self {
        NewSelfHostedRunner {
            params,
            orgs: HashMap::new(),
            runners: HashMap::new(),
            families: HashMap::new(),
        }
    }

    fn fleet(&mut self, org: &str, now: DateTime<Utc>) -> &mut OrgFleet {
        self.orgs.entry(org.to_owned()).or_insert_with(|| OrgFleet {
            first_seen: now,
            jobs: 0,
            has_job_ids: false,
            registrations: VecDeque::new(),
        })
    }

    fn has_history(&self, fleet: &OrgFleet, now: DateTime<Utc>) -> bool {
        fleet.jobs >= self.params.min_history_jobs
            && now - fleet.first_seen >= Duration::hours(i64::from(self.params.min_history_hours))
    }

    fn on_registration(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        if matches!(event.outcome.as_str(), "failure" | "denied" | "pending") {
            return;
        }
        let org = org_of(event);
        let now = event.event_time;
        let horizon = now - Duration::days(i64::from(self.params.routine_days));
        let fleet = self.fleet(&org, now).clone();
        let earlier = fleet
            .registrations
            .iter()
            .filter(|r| r.time >= horizon)
            .count();
        let history = self.has_history(&fleet, now);
        if phase == Phase::Score {
            let routine = earlier >= self.params.routine_registrations as usize;
            let severity = if routine || !history {
                Severity::Low
            } else {
                Severity::Medium
            };
            let actor = event.actor.as_deref().unwrap_or("someone");
            out.push(Finding {
                scope: Default::default(),
                detector: NAME,
                severity,
                score: 1.0 / (1.0 + earlier as f64),
                event_time: now,
                entity: org.clone(),
                title: format!("{actor} registered a self-hosted runner in {org}"),
                explanation: Explanation {
                    expected: format!(
                        "{org} registered {earlier} self-hosted runners in the last {} days; its fleet took {} self-hosted job records",
                        self.params.routine_days, fleet.jobs
                    ),
                    observed: format!("{actor} performed {} at {} UTC", event.action, now.format("%Y-%m-%d %H:%M")),
                    unusual: if routine {
                        "registering runners is routine here".to_owned()
                    } else if !history {
                        "the organisation's runner history is too short to judge".to_owned()
                    } else {
                        "a machine outside the known fleet can now take jobs".to_owned()
                    },
                },
                evidence: vec![event.event_id.clone()],
            });
        }
        let fleet = self.fleet(&org, now);
        fleet.registrations.push_back(Registration {
            event_id: event.event_id.clone(),
            time: now,
            actor: event.actor.clone(),
            used: false,
        });
        while fleet.registrations.len() > MAX_REGISTRATIONS {
            fleet.registrations.pop_front();
        }
    }

    fn on_job(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        if event.runner_hosting != Some(RunnerHosting::SelfHosted) {
            return;
        }
        let Some(name) = event.cicd_worker_name.clone().filter(|n| !n.is_empty()) else {
            return;
        };
        let org = org_of(event);
        let now = event.event_time;
        let has_id = event.cicd_pipeline_task_run_id.is_some();
        let fleet = self.fleet(&org, now);
        if has_id {
            fleet.has_job_ids = true;
        } else if fleet.has_job_ids {
            return;
        }
        fleet.jobs = fleet.jobs.saturating_add(1);
        let family_key = (org.clone(), family(&name));
        if event.runner_ephemeral == Some(true) {
            let entry = self.families.entry(family_key).or_default();
            entry.0 = entry.0.saturating_add(1);
            entry.1 = true;
            return;
        }
        if let Some(jobs) = self.runners.get_mut(&(org.clone(), name.clone())) {
            *jobs = jobs.saturating_add(1);
            return;
        }
        let (members, single_use) = self
            .families
            .get(&family_key)
            .copied()
            .unwrap_or((0, false));
        if single_use {
            return;
        }
        let fleet = self.orgs.get(&org).cloned();
        if let Some(fleet) = fleet.filter(|f| self.has_history(f, now)) {
            if phase == Phase::Score {
                out.push(self.job_finding(event, &org, &name, &fleet, members));
            }
            let window = Duration::hours(i64::from(self.params.registration_window_hours));
            if let Some(reg) = self.orgs.get_mut(&org).and_then(|f| {
                f.registrations
                    .iter_mut()
                    .rev()
                    .find(|r| !r.used && now - r.time <= window)
            }) {
                reg.used = true;
            }
        }
        self.families.entry(family_key).or_default().0 = members.saturating_add(1);
        if self.runners.len() < MAX_RUNNERS {
            self.runners.insert((org, name), 1);
        }
    }

    fn job_finding(
        &self,
        event: &EventRow,
        org: &str,
        name: &str,
        fleet: &OrgFleet,
        family_members: u32,
    ) -> Finding {
        let now = event.event_time;
        let window = Duration::hours(i64::from(self.params.registration_window_hours));
        let registration = fleet
            .registrations
            .iter()
            .rev()
            .find(|r| !r.used && r.time <= now && now - r.time <= window);
        let known = self.runners.keys().filter(|(o, _)| o == org).count();
        let repo = event.repo_or_dash();
        let job = event.cicd_pipeline_task_name.as_deref().unwrap_or("a job");
        let mut evidence = vec![event.event_id.clone()];
        let mut observed = format!(
            "{job} of {repo} ran on self-hosted runner {name} at {} UTC",
            now.format("%Y-%m-%d %H:%M")
        );
        if let Some(reg) = registration {
            evidence.push(reg.event_id.clone());
            observed.push_str(&format!(
                ", {} minutes after {} registered a runner",
                (now - reg.time).num_minutes(),
                reg.actor.as_deref().unwrap_or("someone")
            ));
        }
        let family_note = if family_members > 0 {
            format!("; {family_members} runners of its name family were seen, none single-use")
        } else {
            String::new()
        };
        Finding {
            scope: Default::default(),
            detector: NAME,
            severity: if registration.is_some() {
                Severity::High
            } else {
                Severity::Medium
            },
            score: (f64::from(fleet.jobs) + 1.0).ln()
                + if registration.is_some() { 1.0 } else { 0.0 },
            event_time: now,
            entity: name.to_owned(),
            title: format!("Job of {repo} on never-seen self-hosted runner {name}"),
            explanation: Explanation {
                expected: format!(
                    "{org} runs self-hosted jobs on {known} known persistent runners ({} job records since {}){family_note}",
                    fleet.jobs,
                    fleet.first_seen.format("%Y-%m-%d")
                ),
                observed,
                unusual: "first job ever seen on this runner, which is not a single-use runner"
                    .to_owned(),
            },
            evidence,
        }
    }
}

impl Detector for NewSelfHostedRunner {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::PipelineJob, Category::ConfigChange]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        match event.category {
            Category::PipelineJob => self.on_job(event, phase, out),
            Category::ConfigChange if is_registration(&event.action) => {
                self.on_registration(event, phase, out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn job(id: &str, minutes: i64, runner: &str, ephemeral: Option<bool>) -> EventRow {
        let mut r = EventRow::new(
            id,
            at(minutes),
            Category::PipelineJob,
            "workflow_job.in_progress",
        );
        r.org = Some("acme".into());
        r.repo = Some("acme/api".into());
        r.cicd_pipeline_task_name = Some("build".into());
        r.cicd_pipeline_task_run_id = Some(format!("job-{id}"));
        r.cicd_worker_name = Some(runner.into());
        r.runner_hosting = Some(RunnerHosting::SelfHosted);
        r.runner_ephemeral = ephemeral;
        r
    }

    fn history(d: &mut NewSelfHostedRunner) {
        let mut out = Vec::new();
        for i in 0..60 {
            d.observe(
                &job(&format!("h{i}"), i * 60, "ci-builder-01", None),
                Phase::Learn,
                &mut out,
            );
            d.observe(
                &job(
                    &format!("e{i}"),
                    i * 60 + 1,
                    &format!("arc-set-7f{i:03}-runner-a{i}b"),
                    Some(true),
                ),
                Phase::Learn,
                &mut out,
            );
        }
    }

    #[test]
    fn a_registered_runner_taking_its_first_job_is_reported() {
        let mut d = NewSelfHostedRunner::new(Params::default());
        history(&mut d);
        let mut reg = EventRow::new(
            "reg",
            at(4000),
            Category::ConfigChange,
            "org.register_self_hosted_runner",
        );
        reg.org = Some("acme".into());
        reg.outcome = "success".into();
        reg.actor = Some("mallory".into());
        let mut out = Vec::new();
        d.observe(&reg, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Medium);
        d.observe(
            &job("n1", 4010, "mallory-laptop", None),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &job("n2", 4020, "mallory-laptop", None),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[1].severity, Severity::High);
        assert_eq!(out[1].evidence, vec!["n1".to_owned(), "reg".to_owned()]);
        assert_eq!(out[1].entity, "mallory-laptop");
    }

    #[test]
    fn ephemeral_runners_known_runners_and_cold_start_are_quiet() {
        let mut d = NewSelfHostedRunner::new(Params::default());
        let mut out = Vec::new();
        // Cold start: the very first runners of an organisation are learned.
        d.observe(&job("c1", 0, "ci-builder-01", None), Phase::Score, &mut out);
        assert!(out.is_empty());
        history(&mut d);
        d.observe(
            &job("k1", 5000, "ci-builder-01", None),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &job("e1", 5001, "arc-set-99f00-runner-c9d", Some(true)),
            Phase::Score,
            &mut out,
        );
        // A sibling of single-use runners seen without the flag (an audit copy).
        d.observe(
            &job("e2", 5002, "arc-set-12345-runner-f00", None),
            Phase::Score,
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        d.observe(
            &job("n1", 5003, "ci-builder-04", None),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::Medium);
    }

    #[test]
    fn families_mask_ids_and_parameters_are_checked() {
        assert_eq!(
            family("arc-runner-set-47b15-runner-f3b9a"),
            "arc-runner-set-*-runner-*"
        );
        assert_eq!(family("ci-builder-04"), "ci-builder-*");
        assert_eq!(family("omar-mbp"), "omar-mbp");
        assert!(
            Params {
                min_history_jobs: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
    }
}
