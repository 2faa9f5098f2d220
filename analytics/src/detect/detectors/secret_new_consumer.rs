//! A secret read by a consumer that never read it before, where the secret
//! has a small, settled set of consumers: CI of one repository fetching a
//! secret that only its owning service and deploys ever read.
//!
//! Baseline / Cold start: per secret, its granted reads, when it was first
//! read, and its consumers (repository for pipelines, else the actor) with
//! their read counts; per consumer, when it was first seen (repositories
//! from their pipeline runs and pushes too). The chance that the next read
//! comes from a new consumer of the same kind (pipeline, person, machine)
//! is estimated Good–Turing style as (one-off consumers of that kind + 1) /
//! (reads + 1), where one-off readers that were themselves reported do not
//! count (anomalies must not teach turnover). A secret with fewer than `min_reads`
//! reads or younger than `min_age_hours`, and a consumer first seen less
//! than `min_consumer_age_hours` ago (a repository created mid-period,
//! with its own new secrets), are only learned. Shared secrets (more than
//! `max_consumers` settled consumers) and people reading by hand are at
//! most `low`.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{ActorKind, Category, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "secret_new_consumer";

/// Parameters of [`SecretNewConsumer`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Consumers (repository or actor) never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Granted reads a secret needs before a new consumer of it is judged.
    pub min_reads: u64,
    /// Hours since a secret's first read before a new consumer of it is judged.
    pub min_age_hours: u32,
    /// Hours since a consumer was first seen before it is judged (cold-start repositories).
    pub min_consumer_age_hours: u32,
    /// Reads that make a consumer "settled" rather than a one-off reader.
    pub settled_reads: u32,
    /// Settled consumers above which a secret counts as shared (findings at most `low`).
    pub max_consumers: usize,
    /// Estimated chance of a new consumer (0..1) at or below which a finding is made.
    pub max_new_probability: f64,
    /// Chance at or below which a pipeline reading a secret no pipeline ever read is `high`.
    pub high_new_probability: f64,
    /// Consumers tracked per secret.
    pub max_tracked_consumers: usize,
    /// Secrets and consumers tracked (new ones beyond this are not learned).
    pub max_entities: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_reads: 10,
            min_age_hours: 48,
            min_consumer_age_hours: 48,
            settled_reads: 2,
            max_consumers: 4,
            max_new_probability: 0.1,
            high_new_probability: 0.05,
            max_tracked_consumers: 256,
            max_entities: 200_000,
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
        if self.min_reads == 0 {
            return err("min_reads", "must be at least 1");
        }
        if self.settled_reads == 0 {
            return err("settled_reads", "must be at least 1");
        }
        if self.max_consumers == 0 {
            return err("max_consumers", "must be at least 1");
        }
        if !(self.max_new_probability > 0.0 && self.max_new_probability < 1.0) {
            return err("max_new_probability", "must be within 0..1");
        }
        if !(self.high_new_probability > 0.0
            && self.high_new_probability <= self.max_new_probability)
        {
            return err(
                "high_new_probability",
                "must be within 0..max_new_probability",
            );
        }
        if self.max_tracked_consumers <= self.max_consumers {
            return err("max_tracked_consumers", "must be above max_consumers");
        }
        if self.max_entities == 0 {
            return err("max_entities", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(SecretNewConsumer {
        params,
        secrets: HashMap::new(),
        first_seen: HashMap::new(),
    })
}

/// What kind of consumer reads a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A CI/CD pipeline of a repository.
    Pipeline,
    /// A person reading by hand.
    Person,
    /// A workload, service account or other machine identity.
    Machine,
}

impl Class {
    fn noun(self) -> &'static str {
        match self {
            Class::Pipeline => "pipeline",
            Class::Person => "person",
            Class::Machine => "machine",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Consumer {
    reads: u32,
    class: Class,
    /// Its first read was reported: an anomaly is no evidence of turnover.
    reported: bool,
}

#[derive(Debug)]
struct SecretState {
    first_read: DateTime<Utc>,
    reads: u64,
    consumers: HashMap<String, Consumer>,
}

/// First-time consumers of secrets with a settled set of consumers.
#[derive(Debug)]
pub struct SecretNewConsumer {
    params: Params,
    secrets: HashMap<String, SecretState>,
    /// When each consumer (repository or actor) was first seen.
    first_seen: HashMap<String, DateTime<Utc>>,
}

impl SecretNewConsumer {
    fn saw(&mut self, key: &str, at: DateTime<Utc>) {
        if !self.first_seen.contains_key(key) && self.first_seen.len() < self.params.max_entities {
            self.first_seen.insert(key.to_owned(), at);
        }
    }
}

impl Detector for SecretNewConsumer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        // Runs and pushes tell how long a repository has existed.
        &[
            Category::SecretAccess,
            Category::PipelineRun,
            Category::CodeChange,
        ]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        if event.category != Category::SecretAccess {
            if let Some(repo) = event.repo.as_deref() {
                self.saw(repo, event.event_time);
            }
            return;
        }
        // A consumer is whoever got the value: granted reads only, once per
        // request (Vault's pending request half is skipped), no listings.
        if event.outcome != "success" || !is_value_read(&event.action) {
            return;
        }
        let Some(secret) = event.target_name.as_deref() else {
            return;
        };
        let Some(consumer) = event
            .repo
            .clone()
            .or_else(|| event.actor.clone())
            .or_else(|| event.identity_id.clone())
        else {
            return;
        };
        let class = if event.repo.is_some() {
            Class::Pipeline
        } else if event.actor_kind == Some(ActorKind::User) {
            Class::Person
        } else {
            Class::Machine
        };
        let consumer_since = self.first_seen.get(&consumer).copied();
        self.saw(&consumer, event.event_time);
        if !self.secrets.contains_key(secret) && self.secrets.len() >= self.params.max_entities {
            return;
        }
        let state = self
            .secrets
            .entry(secret.to_owned())
            .or_insert_with(|| SecretState {
                first_read: event.event_time,
                reads: 0,
                consumers: HashMap::new(),
            });

        // Judged in both phases so that learning and scoring leave the same
        // baseline (which one-off readers were anomalies); reported in Score only.
        let verdict = if state.consumers.contains_key(&consumer) {
            None
        } else {
            judge(&self.params, state, class, consumer_since, event.event_time)
        };
        if let Some(verdict) = verdict
            && phase == Phase::Score
        {
            out.push(finding(event, secret, &consumer, class, state, verdict));
        }

        state.reads += 1;
        if let Some(c) = state.consumers.get_mut(&consumer) {
            c.reads = c.reads.saturating_add(1);
        } else if state.consumers.len() < self.params.max_tracked_consumers {
            state.consumers.insert(
                consumer,
                Consumer {
                    reads: 1,
                    class,
                    reported: verdict.is_some(),
                },
            );
        }
    }
}

/// Whether a new consumer is reported, and how.
#[derive(Debug, Clone, Copy)]
struct Verdict {
    one_off: usize,
    probability: f64,
    severity: Severity,
}

/// Judges a first read by `class` against the secret's consumers so far.
fn judge(
    p: &Params,
    state: &SecretState,
    class: Class,
    consumer_since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Verdict> {
    let settled_secret = state.reads >= p.min_reads
        && now - state.first_read >= Duration::hours(i64::from(p.min_age_hours));
    let settled_consumer = consumer_since
        .is_some_and(|t| now - t >= Duration::hours(i64::from(p.min_consumer_age_hours)));
    let consumers = || state.consumers.values();
    let one_off = consumers()
        .filter(|c| c.reads == 1 && !c.reported && c.class == class)
        .count();
    let probability = (one_off as f64 + 1.0) / (state.reads as f64 + 1.0);
    if !(settled_secret && settled_consumer && probability <= p.max_new_probability) {
        return None;
    }
    let settled = consumers().filter(|c| c.reads >= p.settled_reads).count();
    let pipelines_before = consumers().any(|c| c.class == Class::Pipeline);
    let severity = if class == Class::Person || settled > p.max_consumers {
        Severity::Low
    } else if class == Class::Pipeline && !pipelines_before && probability <= p.high_new_probability
    {
        Severity::High
    } else {
        Severity::Medium
    };
    Some(Verdict {
        one_off,
        probability,
        severity,
    })
}

fn finding(
    event: &EventRow,
    secret: &str,
    consumer: &str,
    class: Class,
    state: &SecretState,
    verdict: Verdict,
) -> Finding {
    let Verdict {
        one_off,
        probability,
        severity,
    } = verdict;
    let mut known: Vec<(&String, &Consumer)> = state.consumers.iter().collect();
    known.sort_by(|a, b| b.1.reads.cmp(&a.1.reads).then_with(|| a.0.cmp(b.0)));
    let listed: Vec<String> = known
        .iter()
        .take(4)
        .map(|(name, c)| format!("{name} ({})", c.reads))
        .collect();
    let more = known.len().saturating_sub(listed.len());
    let who = match class {
        Class::Pipeline => {
            let job = [
                event.cicd_pipeline_name.as_deref(),
                event.cicd_pipeline_task_name.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / ");
            let via = event.actor.as_deref().unwrap_or("-");
            if job.is_empty() {
                format!("a pipeline of {consumer} ({via})")
            } else {
                format!("pipeline {job} of {consumer} ({via})")
            }
        }
        Class::Person => format!("{consumer}, by hand"),
        Class::Machine => consumer.to_owned(),
    };
    Finding {
        scope: Default::default(),
        detector: NAME,
        severity,
        score: -probability.log10(),
        event_time: event.event_time,
        entity: consumer.to_owned(),
        title: format!("{consumer} read {secret} for the first time"),
        explanation: Explanation {
            expected: format!(
                "{secret} was read {} times since {} by {} consumer{}: {}{}",
                state.reads,
                state.first_read.format("%Y-%m-%d"),
                known.len(),
                if known.len() == 1 { "" } else { "s" },
                listed.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            observed: format!(
                "{who} read it at {}",
                event.event_time.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            unusual: format!(
                "first read by this consumer; with {one_off} unreported one-off {} readers in {} reads a new one has an estimated chance of {probability:.3} per read",
                class.noun(),
                state.reads
            ),
        },
        evidence: vec![event.event_id.clone()],
    }
}

/// Reads that hand out a secret's value (not listings, not writes).
fn is_value_read(action: &str) -> bool {
    let verb = action
        .rsplit('.')
        .next()
        .unwrap_or(action)
        .to_ascii_lowercase();
    verb.starts_with("read") || verb.starts_with("get")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const DB: &str = "secret/data/payments/payments-service/database";

    fn at(hours: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap() + Duration::hours(hours)
    }

    /// A granted read by a workload (no repository).
    fn service(id: &str, hours: i64, secret: &str) -> EventRow {
        let mut row = EventRow::new(id, at(hours), Category::SecretAccess, "secret.read");
        row.outcome = "success".into();
        row.actor = Some("kubernetes-payments-service".into());
        row.actor_kind = Some(ActorKind::Service);
        row.target_name = Some(secret.into());
        row
    }

    /// A granted read by a pipeline of `repo`.
    fn ci(id: &str, hours: i64, secret: &str, repo: &str) -> EventRow {
        let mut row = service(id, hours, secret);
        row.repo = Some(repo.into());
        row.actor = Some(format!("jwt-repo:{repo}:ref:main"));
        row.actor_kind = Some(ActorKind::Bot);
        row
    }

    /// A pipeline run: tells since when `repo` exists.
    fn run_of(hours: i64, repo: &str) -> EventRow {
        let mut row = EventRow::new(
            format!("run-{repo}"),
            at(hours),
            Category::PipelineRun,
            "run",
        );
        row.repo = Some(repo.into());
        row
    }

    /// Five days of the owning service reading its database secret.
    fn history() -> Vec<EventRow> {
        let mut rows = vec![run_of(0, "acme/shared-go")];
        rows.extend((0..20).map(|i| service(&format!("k{i}"), i * 6, DB)));
        rows
    }

    fn run(rows: &[EventRow]) -> Vec<Finding> {
        let mut detector = build(Params::default());
        let mut out = Vec::new();
        for row in rows {
            detector.observe(row, Phase::Score, &mut out);
        }
        out
    }

    #[test]
    fn ci_of_another_repository_reading_an_owned_secret_is_reported_once() {
        let mut rows = history();
        rows.push(ci("bad", 121, DB, "acme/shared-go"));
        rows.push(ci("again", 122, DB, "acme/shared-go"));
        let found = run(&rows);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found[0].evidence, vec!["bad".to_owned()]);
        assert_eq!(found[0].entity, "acme/shared-go");
        let expected = &found[0].explanation.expected;
        assert!(expected.contains("kubernetes-payments-service (20)"));
    }

    #[test]
    fn an_earlier_anomalous_reader_does_not_hide_the_next_one() {
        let mut rows = history();
        for repo in ["acme/a", "acme/b", "acme/c"] {
            rows.push(run_of(0, repo));
        }
        rows.push(ci("a", 121, DB, "acme/a"));
        rows.push(ci("b", 122, DB, "acme/b"));
        rows.push(ci("c", 123, DB, "acme/c"));
        let found = run(&rows);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found[2].severity, Severity::Medium);
    }

    #[test]
    fn a_new_repository_and_a_new_secret_are_cold() {
        let mut rows = history();
        // The repository appears an hour before its first read.
        rows.push(run_of(120, "acme/fraud-scoring"));
        rows.push(ci("new-repo", 121, DB, "acme/fraud-scoring"));
        // A secret read for the first time by anyone.
        rows.push(ci("new-secret", 122, "secret/data/x/new", "acme/shared-go"));
        assert!(run(&rows).is_empty());
    }

    #[test]
    fn a_shared_secret_gaining_a_consumer_is_only_low() {
        let mut rows = Vec::new();
        for (i, name) in ["a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            let repo = format!("acme/{name}");
            rows.push(run_of(0, &repo));
            let reads = if *name == "g" { 1 } else { 4 };
            for j in 0..reads {
                rows.push(ci(
                    &format!("{name}{j}"),
                    (i * 4 + j) as i64 * 3,
                    "deploy/token",
                    &repo,
                ));
            }
        }
        let found = run(&rows);
        let last: Vec<&Finding> = found.iter().filter(|f| f.entity == "acme/g").collect();
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].severity, Severity::Low);
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(Params::default().check().is_ok());
        let bad: [fn(&mut Params); 4] = [
            |p| p.min_reads = 0,
            |p| p.max_new_probability = 1.5,
            |p| p.high_new_probability = 0.5,
            |p| p.max_tracked_consumers = 2,
        ];
        for spoil in bad {
            let mut params = Params::default();
            spoil(&mut params);
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
