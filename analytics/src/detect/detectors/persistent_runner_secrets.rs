//! Jobs that read secrets while running on a persistent (non-ephemeral)
//! self-hosted runner, where that job rarely handles secrets on persistent
//! runners (it normally runs ephemeral, or reads no secrets there): the
//! runner's workspace outlives the job and keeps what it fetched.
//!
//! Baseline / Cold start: per job (repository + job name) its runs, runs on
//! persistent runners and runs that read secrets on one; per runner its
//! jobs and the jobs that read secrets. Secret reads are tied to their job
//! by repository, run id and job name (what Vault's CI JWT claims carry).
//! A runner is persistent when a source says so, or when a self-hosted
//! runner name took more than one job. Jobs with fewer than `min_history`
//! earlier runs are at most `low`: a new job has no habit yet.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, RunnerHosting, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "persistent_runner_secrets";

/// Runner names and job names remembered.
const MAX_ENTITIES: usize = 200_000;

/// Parameters of [`PersistentRunnerSecrets`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Runner names never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Earlier runs a job needs before it is judged above `low`; also the
    /// jobs a runner needs before its own habit counts.
    pub min_history: u32,
    /// Smoothed rate of "reads secrets on a persistent runner" at or below
    /// which a job (or runner) counts as normally not doing so.
    pub max_rate: f64,
    /// Hours a job's runner is remembered for its secret reads.
    pub job_hours: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 10,
            max_rate: 0.05,
            job_hours: 12,
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
        if !(self.max_rate > 0.0 && self.max_rate < 1.0) {
            return err("max_rate", "must be between 0 and 1, exclusive");
        }
        if self.job_hours == 0 {
            return err("job_hours", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(PersistentRunnerSecrets::new(params))
}

/// Jobs handling secrets on persistent runners where that job normally runs ephemeral.
#[derive(Debug)]
pub struct PersistentRunnerSecrets {
    params: Params,
    /// Live jobs by (repo, run id, job name).
    jobs: HashMap<(String, String, String), Job>,
    /// Job keys in arrival order, for expiry.
    order: VecDeque<(DateTime<Utc>, (String, String, String))>,
    runners: HashMap<String, RunnerStats>,
    names: HashMap<(String, String), JobStats>,
}

#[derive(Debug, Clone)]
struct Job {
    event_id: String,
    /// Whether the event id is a record carrying the job's own id.
    id_record: bool,
    runner: String,
    self_hosted: bool,
    /// Whether the job was counted against its runner.
    tracked: bool,
    ephemeral: Option<bool>,
    /// Runs of this job, and jobs of the runner, before this one.
    runs_before: u32,
    runner_jobs_before: u32,
    runner_secret_jobs: u32,
    persistent_secret_runs: u32,
    persistent: bool,
    secrets: bool,
}

#[derive(Debug, Clone, Default)]
struct RunnerStats {
    jobs: u32,
    secret_jobs: u32,
}

#[derive(Debug, Clone, Default)]
struct JobStats {
    runs: u32,
    persistent_runs: u32,
    persistent_secret_runs: u32,
}

fn job_key(event: &EventRow) -> Option<(String, String, String)> {
    Some((
        event.repo.clone()?,
        event.cicd_pipeline_run_id.clone()?,
        event.cicd_pipeline_task_name.clone()?,
    ))
}

/// Laplace-smoothed rate of `hits` in `n`.
fn rate(hits: u32, n: u32) -> f64 {
    (f64::from(hits) + 1.0) / (f64::from(n) + 2.0)
}

impl PersistentRunnerSecrets {
    fn new(params: Params) -> Self {
        PersistentRunnerSecrets {
            params,
            jobs: HashMap::new(),
            order: VecDeque::new(),
            runners: HashMap::new(),
            names: HashMap::new(),
        }
    }

    fn expire(&mut self, now: DateTime<Utc>) {
        let horizon = now - Duration::hours(i64::from(self.params.job_hours));
        while self.order.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((_, key)) = self.order.pop_front() {
                self.jobs.remove(&key);
            }
        }
    }

    fn on_job(&mut self, event: &EventRow) {
        let Some(runner) = event.cicd_worker_name.clone().filter(|r| !r.is_empty()) else {
            return;
        };
        let Some(key) = job_key(event) else {
            return;
        };
        let self_hosted = event.runner_hosting == Some(RunnerHosting::SelfHosted);
        let id_record = event.cicd_pipeline_task_run_id.is_some();
        if let Some(job) = self.jobs.get_mut(&key) {
            // Later records of the same job may say more (ephemerality, job id).
            if event.runner_ephemeral.is_some() {
                job.ephemeral = event.runner_ephemeral;
            }
            job.self_hosted |= self_hosted;
            if id_record && !job.id_record {
                job.event_id = event.event_id.clone();
                job.id_record = true;
            }
            if job.ephemeral == Some(true) {
                // A single-use runner's name never comes back: forget it.
                job.persistent = false;
                let runner = job.runner.clone();
                self.runners.remove(&runner);
            } else if job.self_hosted && !job.tracked {
                // An earlier record of the job did not say where it ran.
                let said = job.ephemeral.map(|e| !e);
                let runner = job.runner.clone();
                if let Some((persistent, before, secret)) = self.track(&runner, said) {
                    if let Some(job) = self.jobs.get_mut(&key) {
                        (job.tracked, job.persistent) = (true, persistent);
                        (job.runner_jobs_before, job.runner_secret_jobs) = (before, secret);
                    }
                    if persistent
                        && let Some(names) = self.names.get_mut(&(key.0.clone(), key.2.clone()))
                    {
                        names.persistent_runs = names.persistent_runs.saturating_add(1);
                    }
                }
            }
            return;
        }
        // Only self-hosted machines that may be reused are tracked; hosted
        // and single-use runners get a fresh name per job.
        let reusable = self_hosted && event.runner_ephemeral != Some(true);
        let said = event.runner_ephemeral.map(|e| !e);
        let tracked = if reusable {
            self.track(&runner, said)
        } else {
            None
        };
        let (persistent, runner_jobs_before, runner_secret_jobs) = tracked.unwrap_or_default();
        let name_key = (key.0.clone(), key.2.clone());
        if !self.names.contains_key(&name_key) && self.names.len() >= MAX_ENTITIES {
            return;
        }
        let names = self.names.entry(name_key).or_default();
        let (runs_before, persistent_secret_runs) = (names.runs, names.persistent_secret_runs);
        names.runs = names.runs.saturating_add(1);
        if persistent {
            names.persistent_runs = names.persistent_runs.saturating_add(1);
        }
        self.order.push_back((event.event_time, key.clone()));
        self.jobs.insert(
            key,
            Job {
                event_id: event.event_id.clone(),
                id_record,
                runner,
                self_hosted,
                tracked: tracked.is_some(),
                ephemeral: event.runner_ephemeral,
                runs_before,
                runner_jobs_before,
                runner_secret_jobs,
                persistent_secret_runs,
                persistent,
                secrets: false,
            },
        );
    }

    /// Counts a job on a reusable runner: (persistent, jobs before, secret
    /// jobs before), or `None` when the runner cannot be remembered.
    fn track(&mut self, runner: &str, said_persistent: Option<bool>) -> Option<(bool, u32, u32)> {
        if !self.runners.contains_key(runner) && self.runners.len() >= MAX_ENTITIES {
            return None;
        }
        let stats = self.runners.entry(runner.to_owned()).or_default();
        let before = (stats.jobs, stats.secret_jobs);
        stats.jobs = stats.jobs.saturating_add(1);
        // Said persistent by the source, or a name that already took a job.
        let persistent = said_persistent.unwrap_or(before.0 >= 1);
        Some((persistent, before.0, before.1))
    }

    fn on_secret(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // Only reads that handed a secret out; Vault's request half is pending.
        if event.outcome != "success" {
            return;
        }
        let Some(key) = job_key(event) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&key) else {
            return;
        };
        if job.secrets {
            return;
        }
        job.secrets = true;
        let job = job.clone();
        if !(job.persistent && job.self_hosted && job.ephemeral != Some(true)) {
            return;
        }
        if phase == Phase::Score
            && let Some(finding) = self.judge(event, &key, &job)
        {
            out.push(finding);
        }
        if let Some(stats) = self.runners.get_mut(&job.runner) {
            stats.secret_jobs = stats.secret_jobs.saturating_add(1);
        }
        if let Some(names) = self.names.get_mut(&(key.0.clone(), key.2.clone())) {
            names.persistent_secret_runs = names.persistent_secret_runs.saturating_add(1);
        }
    }

    fn judge(
        &self,
        event: &EventRow,
        key: &(String, String, String),
        job: &Job,
    ) -> Option<Finding> {
        let p = &self.params;
        let names = self
            .names
            .get(&(key.0.clone(), key.2.clone()))
            .cloned()
            .unwrap_or_default();
        let job_rate = rate(job.persistent_secret_runs, job.runs_before);
        let runner_rate = rate(job.runner_secret_jobs, job.runner_jobs_before);
        let job_known = job.runs_before >= p.min_history;
        let runner_known = job.runner_jobs_before >= p.min_history;
        let job_unusual = job_known && job_rate <= p.max_rate;
        let runner_unusual = runner_known && runner_rate <= p.max_rate;
        let severity = match (job_unusual, runner_unusual) {
            (true, true) => Severity::High,
            (true, false) => Severity::Medium,
            (false, true) if !job_known => Severity::Low,
            _ => return None,
        };
        let (repo, run, name) = key;
        let runner = &job.runner;
        let persistent_before = names.persistent_runs.saturating_sub(1);
        let secret = event.target_name.as_deref().unwrap_or("a secret");
        Some(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -job_rate.min(runner_rate).ln(),
            event_time: event.event_time,
            entity: runner.clone(),
            title: format!("Job {name} of {repo} read secrets on persistent runner {runner}"),
            explanation: Explanation {
                expected: format!(
                    "{name} of {repo} ran {} times before, {persistent_before} of them on persistent runners and {} of those reading secrets; runner {runner} took {} jobs, {} of them reading secrets",
                    job.runs_before,
                    job.persistent_secret_runs,
                    job.runner_jobs_before,
                    job.runner_secret_jobs
                ),
                observed: format!(
                    "run {run} read {secret} at {} UTC while {name} ran on {runner}, whose workspace outlives the job",
                    event.event_time.format("%Y-%m-%d %H:%M")
                ),
                unusual: format!(
                    "smoothed rate of secrets on a persistent runner: {:.1}% for this job, {:.1}% for this runner",
                    job_rate * 100.0,
                    runner_rate * 100.0
                ),
            },
            evidence: vec![event.event_id.clone(), job.event_id.clone()],
        })
    }
}

impl Detector for PersistentRunnerSecrets {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::PipelineJob, Category::SecretAccess]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        self.expire(event.event_time);
        match event.category {
            Category::PipelineJob => self.on_job(event),
            Category::SecretAccess => self.on_secret(event, phase, out),
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

    fn job(
        id: &str,
        minutes: i64,
        name: &str,
        run: &str,
        runner: &str,
        ephemeral: Option<bool>,
    ) -> EventRow {
        let mut r = EventRow::new(
            id,
            at(minutes),
            Category::PipelineJob,
            "workflow_job.in_progress",
        );
        r.repo = Some("acme/search".into());
        r.cicd_pipeline_run_id = Some(run.into());
        r.cicd_pipeline_task_name = Some(name.into());
        r.cicd_pipeline_task_run_id = Some(format!("j{id}"));
        r.cicd_worker_name = Some(runner.into());
        r.runner_hosting = Some(RunnerHosting::SelfHosted);
        r.runner_ephemeral = ephemeral;
        r
    }

    fn secret(id: &str, minutes: i64, name: &str, run: &str) -> EventRow {
        let mut r = EventRow::new(id, at(minutes), Category::SecretAccess, "secret.read");
        r.outcome = "success".into();
        r.repo = Some("acme/search".into());
        r.cicd_pipeline_run_id = Some(run.into());
        r.cicd_pipeline_task_name = Some(name.into());
        r.target_name = Some("secret/data/search/db".into());
        r
    }

    /// 20 runs: integration-test with secrets on single-use runners, unit
    /// tests without secrets on the persistent builder, deploy with secrets
    /// on the persistent deployer every time.
    fn history(d: &mut PersistentRunnerSecrets) {
        let mut out = Vec::new();
        for i in 0..20 {
            let (m, run) = (i * 60, format!("r{i}"));
            d.observe(
                &job(
                    &format!("i{i}"),
                    m,
                    "integration-test",
                    &run,
                    &format!("eph-{i}"),
                    Some(true),
                ),
                Phase::Learn,
                &mut out,
            );
            d.observe(
                &secret(&format!("s{i}"), m + 1, "integration-test", &run),
                Phase::Learn,
                &mut out,
            );
            d.observe(
                &job(&format!("u{i}"), m + 2, "unit", &run, "builder-01", None),
                Phase::Learn,
                &mut out,
            );
            d.observe(
                &job(&format!("d{i}"), m + 3, "deploy", &run, "deployer-01", None),
                Phase::Learn,
                &mut out,
            );
            d.observe(
                &secret(&format!("t{i}"), m + 4, "deploy", &run),
                Phase::Learn,
                &mut out,
            );
        }
    }

    #[test]
    fn an_ephemeral_job_moved_to_a_persistent_runner_with_secrets_is_reported() {
        let mut d = PersistentRunnerSecrets::new(Params::default());
        history(&mut d);
        let mut out = Vec::new();
        d.observe(
            &job("x", 2000, "integration-test", "rx", "builder-01", None),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &secret("xs", 2001, "integration-test", "rx"),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &secret("xs2", 2002, "integration-test", "rx"),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].entity, "builder-01");
        assert_eq!(out[0].evidence, vec!["xs".to_owned(), "x".to_owned()]);
    }

    #[test]
    fn routine_persistent_secret_jobs_and_single_use_runners_are_quiet() {
        let mut d = PersistentRunnerSecrets::new(Params::default());
        history(&mut d);
        let mut out = Vec::new();
        d.observe(
            &job("d", 2000, "deploy", "ry", "deployer-01", None),
            Phase::Score,
            &mut out,
        );
        d.observe(&secret("ds", 2001, "deploy", "ry"), Phase::Score, &mut out);
        d.observe(
            &job("e", 2002, "integration-test", "ry", "eph-new", Some(true)),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &secret("es", 2003, "integration-test", "ry"),
            Phase::Score,
            &mut out,
        );
        // A brand-new job: no habit yet, at most low.
        d.observe(
            &job("n", 2004, "brand-new", "ry", "builder-01", None),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &secret("ns", 2005, "brand-new", "ry"),
            Phase::Score,
            &mut out,
        );
        assert!(out.iter().all(|f| f.severity <= Severity::Low), "{out:?}");
    }

    #[test]
    fn a_job_first_seen_without_its_hosting_is_still_tied_to_its_runner() {
        let mut d = PersistentRunnerSecrets::new(Params::default());
        history(&mut d);
        let mut out = Vec::new();
        // A trace span names the runner but not who hosts it; the webhook follows.
        let mut span = job("span", 2000, "integration-test", "rz", "builder-01", None);
        span.runner_hosting = None;
        d.observe(&span, Phase::Score, &mut out);
        d.observe(
            &job("hook", 2000, "integration-test", "rz", "builder-01", None),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &secret("zs", 2001, "integration-test", "rz"),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].severity, Severity::High);
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(
            Params {
                max_rate: 1.0,
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
