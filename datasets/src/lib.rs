//! Demo-data generator: weeks of a realistic organisation's CI/CD life,
//! written in the native formats pipewatch ingests, with labelled incidents.
//!
//! A 40-person company (four time zones, each person with their own
//! working hours), a few bots, ~20 GitHub repositories and three GitLab
//! projects push code, run CI, scan, release and deploy. Jobs read Vault
//! secrets through JWT/OIDC, reach AWS through GitHub OIDC (and, rarely, a
//! legacy IAM user key), deploy through Argo CD onto Kubernetes, and export
//! OTLP traces. Into that baseline the generator injects incidents of every
//! kind pipewatch looks for, at seeded times and on existing entities, and
//! lists them with the native ids of their evidence in `labels.json`.
//!
//! ```text
//! GenerateOptions ──> org::Org::build          people, repos, workflows, runners, secrets
//!                 ──> sim::simulate            day by day: pushes, PRs, deploys, bots, schedules, background
//!                 ──> incidents::inject        the same builders with seeded deviations ──> labels
//!                         │
//!                         └─ formats::*        one writer per native format ──> Sink ──> files under `out`
//! ```
//!
//! Modules: `org` (the organisation), `calendar` (time zones and working
//! rhythm), `sim` (normal activity and the run builder), `incidents`
//! (injection), `formats` (GitHub webhooks and audit log, GitLab hooks,
//! Vault audit, CloudTrail, Kubernetes audit, Argo CD, OTLP, SARIF,
//! Conftest), `labels` (labels.json), `sink` (ordering, gzip, files).
//!
//! Output is a pure function of [`GenerateOptions`]: one ChaCha8 stream per
//! phase, ordered maps only, no wall clock.
//!
//! # Output
//!
//! `github-webhooks/<event>.ndjson`, `github-audit/audit-log.ndjson`,
//! `gitlab/hooks.ndjson`, `vault/vault_audit.log`, `k8s-audit/audit.log`
//! and `otlp/traces.ndjson` (one OTLP/JSON request per line), each gzipped
//! with a `.gz` suffix when larger than 256 KiB;
//! `cloudtrail/<account>_CloudTrail_<region>_<YYYYMMDD>.json.gz` (S3 object
//! shape); `argocd/applications.json` (a `kind: List`);
//! `sarif/<tool>-<repo>-<YYYY-MM-DD>.sarif`;
//! `conftest/<repo>-<YYYY-MM-DD>-<n>.json` — Conftest output carries no
//! time, so the file name holds the date, the modification time is set to
//! the check's time, and the ingester uses the modification time;
//! `labels.json`. Records in every file are in time order.

mod calendar;
mod ctx;
mod facts;
mod formats;
mod incidents;
mod labels;
mod org;
mod rng;
mod sim;
mod sink;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;

pub use labels::IncidentKind;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// Length of the period, in days (default 14).
    pub days: u32,
    /// Seed of every random choice (default 7).
    pub seed: u64,
    /// First day of the period (default 2026-10-05, a Monday).
    pub start: NaiveDate,
    /// Size of the organisation: 1.0 is 40 people; volumes scale with it.
    pub scale: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            days: 14,
            seed: 7,
            start: NaiveDate::from_ymd_opt(2026, 10, 5).unwrap_or_default(),
            scale: 1.0,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Every file written, relative to the output directory, with its
    /// number of records (lines, OTLP spans, CloudTrail records, SARIF results,
    /// Conftest file results, Argo CD applications, incidents).
    pub files: Vec<(PathBuf, u64)>,
    /// Number of injected incidents (see `labels.json`).
    pub incidents: usize,
    /// Total records over all files.
    pub events_approx: u64,
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("invalid options: {0}")]
    Options(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("compression failed: {0}")]
    Compress(#[from] std::io::Error),
    #[error("cannot serialize: {0}")]
    Json(#[from] serde_json::Error),
}

impl DatasetError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Generates the dataset into `out` (created if missing; existing files of
/// the same names are overwritten, others are left alone).
pub fn generate(options: &GenerateOptions, out: &Path) -> Result<Summary, DatasetError> {
    generate_with_progress(options, out, &|_| {})
}

/// Like [`generate`], calling `on_progress` with the number of records
/// produced so far after each simulated day and at the end.
pub fn generate_with_progress(
    options: &GenerateOptions,
    out: &Path,
    on_progress: &dyn Fn(u64),
) -> Result<Summary, DatasetError> {
    if options.days == 0 || options.days > 366 {
        return Err(DatasetError::Options(format!(
            "days must be between 1 and 366, got {}",
            options.days
        )));
    }
    if !(options.scale.is_finite() && options.scale > 0.0 && options.scale <= 20.0) {
        return Err(DatasetError::Options(format!(
            "scale must be in (0, 20], got {}",
            options.scale
        )));
    }
    let mut world = sim::World::new(options);
    sim::simulate(&mut world, on_progress);
    let incidents = incidents::inject(&mut world);
    let count = incidents.len();
    let sink = world.finish(options, &incidents)?;
    on_progress(sink.len());
    let files = sink.write(out)?;
    let events_approx = files.iter().map(|(_, n)| *n).sum();
    Ok(Summary {
        files,
        incidents: count,
        events_approx,
    })
}
