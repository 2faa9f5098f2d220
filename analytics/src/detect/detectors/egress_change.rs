//! New package registries and new egress destinations for a job: a job
//! (repository, workflow, job name) that, after many runs, fetches from a
//! host it never used or sends data to a destination none of its runs
//! contacted.
//!
//! # Baseline / Cold start
//!
//! Per job it keeps the destinations its runs contacted (how many runs each,
//! capped) and how many runs it had; across the organisation it keeps how
//! many jobs use each destination. A job with fewer than
//! `min_history_runs` runs is only learned. How surprising a first contact
//! is combines the job's own habit of picking up new destinations (the
//! Good-Turing share of destinations it used in only one run) with how
//! common the destination is among the organisation's jobs.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use pipewatch_schema::{Category, Severity};

use crate::detect::stats::severity_for_tail;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "egress_change";

/// Recent run ids remembered per job to count runs once.
const RECENT_RUNS: usize = 16;

/// Host name words that name package registries and module proxies; a
/// fetch from such a host is a dependency source, not just a download.
const REGISTRY_WORDS: &[&str] = &[
    "registry",
    "npm",
    "yarn",
    "pypi",
    "pythonhosted",
    "maven",
    "gradle",
    "rubygems",
    "crates",
    "nuget",
    "packagist",
    "goproxy",
    "proxy",
    "mirror",
    "artifactory",
    "nexus",
    "cocoapods",
    "conda",
    "hex",
    "jfrog",
];

/// Parameters of [`EgressChange`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Jobs (`owner/repo/job`) never reported.
    pub allow: Vec<String>,
    /// Runs a job needs before a new destination of it is judged.
    pub min_history_runs: u32,
    /// Destinations remembered per job (the least used are forgotten first).
    pub max_destinations: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history_runs: 10,
            max_destinations: 512,
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
        if self.min_history_runs == 0 {
            return Err(ParamError::new(
                NAME,
                "min_history_runs",
                "must be at least 1",
            ));
        }
        if self.max_destinations < 8 {
            return Err(ParamError::new(
                NAME,
                "max_destinations",
                "must be at least 8",
            ));
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(EgressChange {
        params,
        jobs: HashMap::new(),
        users: HashMap::new(),
    })
}

/// New package registries and new egress destinations for a job.
#[derive(Debug)]
pub struct EgressChange {
    params: Params,
    jobs: HashMap<JobKey, JobHistory>,
    /// Destination → jobs that contacted it.
    users: HashMap<String, u32>,
}

/// Repository, workflow, job name.
type JobKey = (String, String, String);

#[derive(Debug, Default)]
struct JobHistory {
    runs: u32,
    recent: VecDeque<u64>,
    destinations: HashMap<String, Contact>,
    /// Destinations contacted in exactly one run (Good-Turing's N1).
    singletons: u32,
}

#[derive(Debug, Clone, Copy)]
struct Contact {
    runs: u32,
    last_run: u64,
}

fn hash_of(text: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// The job run an egress record belongs to: the task run, else the job span
/// it hangs under, else the pipeline run.
fn run_of(row: &EventRow) -> Option<u64> {
    row.cicd_pipeline_task_run_id
        .as_deref()
        .or(row.parent_span_id.as_deref())
        .or(row.cicd_pipeline_run_id.as_deref())
        .map(hash_of)
}

fn looks_like_registry(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host.split(['.', '-'])
        .any(|label| REGISTRY_WORDS.iter().any(|w| label.contains(w)))
}

fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

impl JobHistory {
    /// Counts the run once, however many destinations it contacts.
    fn note_run(&mut self, run: u64) {
        if self.recent.contains(&run) {
            return;
        }
        self.recent.push_back(run);
        if self.recent.len() > RECENT_RUNS {
            self.recent.pop_front();
        }
        self.runs += 1;
    }

    /// Records a contact; returns whether the destination was new to the job.
    fn contact(&mut self, destination: &str, run: u64, cap: usize) -> bool {
        if let Some(contact) = self.destinations.get_mut(destination) {
            if contact.last_run != run {
                if contact.runs == 1 {
                    self.singletons = self.singletons.saturating_sub(1);
                }
                contact.runs += 1;
                contact.last_run = run;
            }
            return false;
        }
        if self.destinations.len() >= cap {
            let rarest = self
                .destinations
                .iter()
                .min_by_key(|(_, c)| c.runs)
                .map(|(d, c)| (d.clone(), c.runs));
            if let Some((old, runs)) = rarest {
                self.destinations.remove(&old);
                if runs == 1 {
                    self.singletons = self.singletons.saturating_sub(1);
                }
            }
        }
        self.destinations.insert(
            destination.to_owned(),
            Contact {
                runs: 1,
                last_run: run,
            },
        );
        self.singletons += 1;
        true
    }

    /// The destinations most runs used, for explanations.
    fn usual(&self, count: usize) -> String {
        let mut top: Vec<(&String, &Contact)> = self.destinations.iter().collect();
        top.sort_by(|a, b| b.1.runs.cmp(&a.1.runs).then_with(|| a.0.cmp(b.0)));
        top.iter()
            .take(count)
            .map(|(d, c)| format!("{d} ({} runs)", c.runs))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Detector for EgressChange {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::Egress]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(repo), Some(job), Some(destination)) = (
            event.repo.as_deref(),
            event.cicd_pipeline_task_name.as_deref(),
            event
                .egress_destination
                .as_deref()
                .or(event.target_name.as_deref()),
        ) else {
            return;
        };
        let Some(run) = run_of(event) else {
            return;
        };
        let workflow = event.cicd_pipeline_name.as_deref().unwrap_or("-");
        let key = (repo.to_owned(), workflow.to_owned(), job.to_owned());
        let cap = self.params.max_destinations;
        let history = self.jobs.entry(key).or_default();
        history.note_run(run);
        // Runs before this one: the current run is not history yet.
        let prior_runs = history.runs.saturating_sub(1);
        let singletons = history.singletons;
        let usual = if phase == Phase::Score && !history.destinations.contains_key(destination) {
            Some(history.usual(4))
        } else {
            None
        };
        if !history.contact(destination, run, cap) {
            return;
        }
        let job_count = self.jobs.len() as f64;
        let users = self.users.entry(destination.to_owned()).or_default();
        let other_jobs = *users;
        *users += 1;
        let Some(usual) = usual else {
            return;
        };
        if prior_runs < self.params.min_history_runs {
            return;
        }
        // Chance this job picks up any new destination in a run (Good-Turing,
        // Laplace-smoothed) times the chance it is this one, given how many
        // of the organisation's jobs use it.
        let p_new = (f64::from(singletons) + 1.0) / (f64::from(prior_runs) + 2.0);
        let p_destination = (f64::from(other_jobs) + 1.0) / (job_count + 1.0);
        let p = (p_new * p_destination).min(1.0);
        let mut severity = severity_for_tail(p);
        let uploaded = event.egress_bytes.filter(|b| *b > 0);
        // Sending data to a host no job of the organisation ever used is how
        // exfiltration looks; a first download is only a new dependency.
        if uploaded.is_some() && other_jobs == 0 && severity == Severity::Medium {
            severity = Severity::High;
        }
        if severity < Severity::Low {
            return;
        }
        let entity = format!("{repo}/{job}");
        let (title, what) = match uploaded {
            Some(bytes) => (
                format!(
                    "{job} job of {repo} sent {} to {destination}, a destination none of its runs contacted",
                    megabytes(bytes)
                ),
                format!(
                    "sent {} to new egress destination {destination}",
                    megabytes(bytes)
                ),
            ),
            None if looks_like_registry(destination) => (
                format!(
                    "{job} job of {repo} fetched from package registry {destination}, which it never used"
                ),
                format!("fetched from new package registry {destination}"),
            ),
            None => (
                format!(
                    "{job} job of {repo} contacted {destination}, a destination none of its runs contacted"
                ),
                format!("contacted new egress destination {destination}"),
            ),
        };
        let elsewhere = match other_jobs {
            0 => "no other job of the organisation ever contacted it".to_owned(),
            n => format!("{n} other jobs of the organisation contact it"),
        };
        out.push(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -p.max(1e-300).log10(),
            event_time: event.event_time,
            entity,
            title,
            explanation: Explanation {
                expected: format!(
                    "the {job} job ({workflow}) of {repo} contacted the same destinations in its {} runs: {usual}; {singletons} destinations were used in a single run",
                    prior_runs + 1
                ),
                observed: format!(
                    "its run at {} {what}",
                    event.event_time.format("%Y-%m-%d %H:%M UTC")
                ),
                unusual: format!(
                    "first contact after {prior_runs} earlier runs and {elsewhere}: chance {p:.1e} ({p_new:.3} for any new destination × {p_destination:.3} for this one)"
                ),
            },
            evidence: vec![event.event_id.clone()],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Duration, TimeZone, Utc};

    fn egress(
        n: usize,
        time: DateTime<Utc>,
        repo: &str,
        job: &str,
        run: &str,
        host: &str,
    ) -> EventRow {
        let mut row = EventRow::new(format!("e{n}"), time, Category::Egress, "egress.http");
        row.source = "otlp".into();
        row.repo = Some(repo.into());
        row.cicd_pipeline_name = Some("CI".into());
        row.cicd_pipeline_task_name = Some(job.into());
        row.parent_span_id = Some(run.into());
        row.egress_destination = Some(host.into());
        row
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 8, 0, 0)
            .single()
            .expect("valid time")
    }

    /// `runs` runs of lint and test in forty repositories, each fetching from
    /// github.com and registry.npmjs.org, test also uploading coverage.
    fn learn(detector: &mut Box<dyn Detector>, runs: usize) -> usize {
        let mut n = 0;
        for run in 0..runs {
            for r in 0..40 {
                let repo = format!("acme/r{r}");
                let time = start() + Duration::hours(run as i64) + Duration::minutes(r);
                for job in ["lint", "test"] {
                    let id = format!("{repo}-{job}-{run}");
                    let mut hosts = vec!["github.com", "registry.npmjs.org"];
                    if job == "test" {
                        hosts.push("codecov.io");
                    }
                    for host in hosts {
                        n += 1;
                        detector.observe(
                            &egress(n, time, &repo, job, &id, host),
                            Phase::Learn,
                            &mut Vec::new(),
                        );
                    }
                }
            }
        }
        n
    }

    #[test]
    fn a_lint_job_fetching_from_a_new_registry_is_reported() {
        let mut detector = build(Params::default());
        let n = learn(&mut detector, 30);
        let mut out = Vec::new();
        let row = egress(
            n + 1,
            start() + Duration::days(3),
            "acme/r3",
            "lint",
            "new-run",
            "registry.npmmirror.com",
        );
        detector.observe(&row, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].severity >= Severity::Medium, "{:?}", out[0]);
        assert!(
            out[0]
                .title
                .contains("package registry registry.npmmirror.com")
        );
        assert_eq!(out[0].evidence, vec![format!("e{}", n + 1)]);
        assert_eq!(out[0].entity, "acme/r3/lint");
    }

    #[test]
    fn an_upload_to_a_host_nobody_uses_is_high() {
        let mut detector = build(Params::default());
        let n = learn(&mut detector, 30);
        let mut out = Vec::new();
        let mut row = egress(
            n + 1,
            start() + Duration::days(3),
            "acme/r3",
            "test",
            "new-run",
            "content.dropboxapi.com",
        );
        row.egress_bytes = Some(30_000_000);
        detector.observe(&row, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::High);
        assert!(
            out[0]
                .title
                .contains("sent 30.0 MB to content.dropboxapi.com")
        );
    }

    #[test]
    fn known_destinations_and_young_jobs_are_quiet() {
        let mut detector = build(Params::default());
        let n = learn(&mut detector, 30);
        let mut out = Vec::new();
        let known = egress(
            n + 1,
            start() + Duration::days(3),
            "acme/r3",
            "lint",
            "new-run",
            "github.com",
        );
        detector.observe(&known, Phase::Score, &mut out);
        let young = egress(
            n + 2,
            start() + Duration::days(3),
            "acme/fresh",
            "lint",
            "r1",
            "registry.npmmirror.com",
        );
        detector.observe(&young, Phase::Score, &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_destination_common_in_the_organisation_is_at_most_a_weak_signal() {
        let mut detector = build(Params::default());
        let n = learn(&mut detector, 30);
        let mut out = Vec::new();
        // codecov.io is used by every test job; the lint job picking it up is mild.
        let row = egress(
            n + 1,
            start() + Duration::days(3),
            "acme/r3",
            "lint",
            "new-run",
            "codecov.io",
        );
        detector.observe(&row, Phase::Score, &mut out);
        assert!(out.iter().all(|f| f.severity < Severity::Medium), "{out:?}");
    }

    #[test]
    fn parameters_that_cannot_work_are_refused() {
        assert!(
            Params {
                min_history_runs: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
        assert!(Params::default().check().is_ok());
    }
}
