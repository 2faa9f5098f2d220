//! The mutable state every builder and writer shares while generating: the
//! random stream, the output sink, native id sequences, per-workflow run
//! numbers, and the aggregates rendered at the end (Argo CD sync history,
//! SARIF runs per file, scanner baselines, Conftest file counters).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::Value;

use crate::org::Tool;
use crate::rng::{IdSeq, Rng};
use crate::sink::Sink;

/// Native numeric id sequences, growing with time like the real ones.
#[derive(Debug)]
pub(crate) struct Ids {
    pub(crate) gh_run: IdSeq,
    pub(crate) gh_job: IdSeq,
    pub(crate) gh_deployment: IdSeq,
    pub(crate) gh_status: IdSeq,
    pub(crate) gh_check_suite: IdSeq,
    pub(crate) gh_rule: IdSeq,
    pub(crate) gl_pipeline: IdSeq,
    pub(crate) gl_build: IdSeq,
}

/// One Argo CD sync of an Application.
#[derive(Debug, Clone)]
pub(crate) struct ArgoSync {
    pub(crate) revision: String,
    pub(crate) started: DateTime<Utc>,
    pub(crate) finished: DateTime<Utc>,
    /// Argo CD user that asked for the sync; `None` when automated.
    pub(crate) initiated_by: Option<String>,
    pub(crate) succeeded: bool,
    pub(crate) resource_kind: &'static str,
}

/// A scanner finding that persists from scan to scan.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) rule: String,
    pub(crate) severity: f64,
    pub(crate) level: &'static str,
    pub(crate) path: String,
    pub(crate) line: u32,
    pub(crate) message: String,
    pub(crate) fingerprint: String,
}

/// The runs collected for one SARIF file.
#[derive(Debug, Clone)]
pub(crate) struct SarifFile {
    pub(crate) runs: Vec<Value>,
    pub(crate) results: u64,
}

/// Shared generation state.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) rng: Rng,
    pub(crate) sink: Sink,
    pub(crate) ids: Ids,
    pub(crate) start: DateTime<Utc>,
    pub(crate) days: u32,
    pub(crate) run_numbers: BTreeMap<(usize, usize), u64>,
    /// Sync history per Argo CD Application uid.
    pub(crate) argo: BTreeMap<String, Vec<ArgoSync>>,
    pub(crate) sarif: BTreeMap<String, SarifFile>,
    pub(crate) findings: BTreeMap<(usize, Tool), Vec<Finding>>,
    pub(crate) conftest_seq: BTreeMap<(usize, NaiveDate), u32>,
    pub(crate) gl_deployment: u64,
    pub(crate) arc_runner: u64,
    /// Current branch protection rule id of `main` per repository.
    pub(crate) rules: BTreeMap<usize, u64>,
}

impl Ctx {
    pub(crate) fn new(rng: Rng, start: DateTime<Utc>, days: u32) -> Self {
        Ctx {
            rng,
            sink: Sink::default(),
            ids: Ids {
                gh_run: IdSeq::new(18_312_000_000, 41, start),
                gh_job: IdSeq::new(52_170_000_000, 130, start),
                gh_deployment: IdSeq::new(3_104_000_000, 3, start),
                gh_status: IdSeq::new(12_700_000_000, 19, start),
                gh_check_suite: IdSeq::new(44_900_000_000, 48, start),
                gh_rule: IdSeq::new(61_200_000, 1, start),
                gl_pipeline: IdSeq::new(2_071_000_000, 9, start),
                gl_build: IdSeq::new(11_352_000_000, 55, start),
            },
            start,
            days,
            run_numbers: BTreeMap::new(),
            argo: BTreeMap::new(),
            sarif: BTreeMap::new(),
            findings: BTreeMap::new(),
            conftest_seq: BTreeMap::new(),
            gl_deployment: 900,
            arc_runner: 18_000,
            rules: BTreeMap::new(),
        }
    }

    /// The end of the simulated period.
    pub(crate) fn end(&self) -> DateTime<Utc> {
        self.start + Duration::days(i64::from(self.days))
    }

    /// The id of the protection rule on a repository's `main`.
    pub(crate) fn rule_id(&mut self, repo: usize, repo_id: u64) -> u64 {
        *self
            .rules
            .entry(repo)
            .or_insert(61_200_000 + repo_id % 9_000_000)
    }

    /// Next run number of a workflow.
    pub(crate) fn run_number(&mut self, repo: usize, workflow: usize) -> u64 {
        let seed = 40 + (repo as u64 * 37 + workflow as u64 * 113) % 900;
        let n = self.run_numbers.entry((repo, workflow)).or_insert(seed);
        *n += 1;
        *n
    }
}
