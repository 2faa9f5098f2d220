//! Bulk secret reads: one credential reading or listing many distinct secret
//! paths within minutes, far more than the tokens of that repository (or
//! that identity) ever did in one burst — the shape of a secret dump.
//!
//! Baseline / Cold start: a burst is what one credential (token accessor,
//! else actor) reads with gaps shorter than `window_minutes`; its size is
//! the most distinct paths it held in one window. Per owner (repository,
//! else actor) the sizes of its last `max_bursts` bursts are kept. An owner
//! with fewer than `min_history` bursts is cold: a big burst there is at
//! most `low`. Fewer than `min_paths` distinct paths never make a finding.
//! Open bursts are swept once per window, so state stays bounded by the
//! credentials active in the last window.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::stats::{RobustBaseline, TimeWindow};
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "secret_bulk_read";

/// Parameters of [`SecretBulkRead`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Owners (repository or actor) never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Sliding window distinct paths are counted in; also the gap that ends a burst.
    pub window_minutes: u32,
    /// Distinct paths within the window before a burst is judged at all.
    pub min_paths: u32,
    /// How many times the owner's largest earlier burst the new one must be.
    pub min_ratio: f64,
    /// Earlier bursts an owner needs before a burst of it is more than `low`.
    pub min_history: u32,
    /// Burst sizes kept per owner.
    pub max_bursts: usize,
    /// Owners tracked (new owners beyond this stay cold).
    pub max_owners: usize,
    /// Reads kept per credential window (bounds memory on floods).
    pub max_window_items: usize,
    /// Evidence events listed per finding.
    pub max_evidence: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            window_minutes: 5,
            min_paths: 8,
            min_ratio: 2.0,
            min_history: 5,
            max_bursts: 200,
            max_owners: 100_000,
            max_window_items: 1000,
            max_evidence: 40,
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
        if self.window_minutes == 0 {
            return err("window_minutes", "must be at least 1");
        }
        if self.min_paths < 2 {
            return err("min_paths", "must be at least 2");
        }
        if !(self.min_ratio.is_finite() && self.min_ratio >= 1.0) {
            return err("min_ratio", "must be a number of at least 1");
        }
        if self.max_bursts == 0 || (self.max_bursts as u64) < u64::from(self.min_history) {
            return err("max_bursts", "must be at least 1 and at least min_history");
        }
        if (self.max_window_items as u64) < u64::from(self.min_paths) {
            return err("max_window_items", "must be at least min_paths");
        }
        if self.max_evidence == 0 {
            return err("max_evidence", "must be at least 1");
        }
        if self.max_owners == 0 {
            return err("max_owners", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(SecretBulkRead {
        span: Duration::minutes(i64::from(params.window_minutes)),
        params,
        credentials: HashMap::new(),
        owners: HashMap::new(),
        next_sweep: None,
    })
}

/// One granted read or listing inside a credential's window.
#[derive(Debug, Clone)]
struct Read {
    path: String,
    event_id: String,
    listing: bool,
}

/// The open burst of one credential.
#[derive(Debug)]
struct Burst {
    owner: String,
    actor: String,
    reads: TimeWindow<Read>,
    last: DateTime<Utc>,
    peak: usize,
    /// Distinct paths when last reported (0: not yet).
    reported_at: usize,
}

/// Bulk reads or listings across many secret paths by one credential.
#[derive(Debug)]
pub struct SecretBulkRead {
    params: Params,
    span: Duration,
    credentials: HashMap<String, Burst>,
    /// Sizes of the owner's past bursts, oldest first.
    owners: HashMap<String, VecDeque<u32>>,
    next_sweep: Option<DateTime<Utc>>,
}

impl SecretBulkRead {
    fn close(&mut self, burst: &Burst) {
        if !self.owners.contains_key(&burst.owner) && self.owners.len() >= self.params.max_owners {
            return;
        }
        let sizes = self.owners.entry(burst.owner.clone()).or_default();
        if sizes.len() >= self.params.max_bursts {
            sizes.pop_front();
        }
        sizes.push_back(u32::try_from(burst.peak).unwrap_or(u32::MAX));
    }

    /// Closes the bursts of credentials silent for a whole window.
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + self.span);
        let stale: Vec<String> = self
            .credentials
            .iter()
            .filter(|(_, b)| now - b.last > self.span)
            .map(|(k, _)| k.clone())
            .collect();
        for key in stale {
            if let Some(burst) = self.credentials.remove(&key) {
                self.close(&burst);
            }
        }
    }
}

impl Detector for SecretBulkRead {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::SecretAccess]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // Only granted reads expose secrets; denials are another detector's.
        // Vault's pending request half is skipped, its response counted.
        if event.outcome != "success" || is_write(&event.action) {
            return;
        }
        let Some(path) = event.target_name.clone() else {
            return;
        };
        let Some(credential) = event.identity_id.clone().or_else(|| event.actor.clone()) else {
            return;
        };
        let owner = event
            .repo
            .clone()
            .or_else(|| event.actor.clone())
            .unwrap_or_else(|| credential.clone());
        self.sweep(event.event_time);
        if let Some(open) = self.credentials.get(&credential)
            && event.event_time - open.last > self.span
            && let Some(done) = self.credentials.remove(&credential)
        {
            self.close(&done);
        }
        let span = self.span;
        let burst = self
            .credentials
            .entry(credential.clone())
            .or_insert_with(|| Burst {
                owner: owner.clone(),
                actor: event.actor.clone().unwrap_or_else(|| credential.clone()),
                reads: TimeWindow::new(span),
                last: event.event_time,
                peak: 0,
                reported_at: 0,
            });
        burst.last = event.event_time;
        burst.reads.expire(event.event_time);
        if burst.reads.len() < self.params.max_window_items {
            burst.reads.push(
                event.event_time,
                Read {
                    path,
                    event_id: event.event_id.clone(),
                    listing: is_listing(&event.action),
                },
            );
        }
        let distinct = burst
            .reads
            .iter()
            .map(|(_, r)| r.path.as_str())
            .collect::<HashSet<_>>()
            .len();
        burst.peak = burst.peak.max(distinct);
        if phase == Phase::Learn || distinct < self.params.min_paths as usize {
            return;
        }
        let due = burst.reported_at == 0 || distinct >= 2 * burst.reported_at;
        if !due {
            return;
        }
        let sizes: Vec<f64> = self
            .owners
            .get(&burst.owner)
            .map(|s| s.iter().map(|v| f64::from(*v)).collect())
            .unwrap_or_default();
        let largest = sizes.iter().copied().fold(0.0, f64::max);
        let ratio = distinct as f64 / largest.max(1.0);
        let cold = sizes.len() < self.params.min_history as usize;
        if !cold && ratio < self.params.min_ratio {
            return;
        }
        let severity = if cold {
            Severity::Low
        } else if distinct >= 2 * self.params.min_paths as usize
            && ratio >= 2.0 * self.params.min_ratio
        {
            Severity::High
        } else {
            Severity::Medium
        };
        burst.reported_at = distinct;
        let burst = &*burst;
        out.push(finding(
            event,
            &credential,
            burst,
            &sizes,
            largest,
            ratio,
            severity,
            &self.params,
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn finding(
    event: &EventRow,
    credential: &str,
    burst: &Burst,
    sizes: &[f64],
    largest: f64,
    ratio: f64,
    severity: Severity,
    params: &Params,
) -> Finding {
    let mut seen = HashSet::new();
    let mut paths = Vec::new();
    let mut listings = 0;
    for (_, read) in burst.reads.iter() {
        if seen.insert(read.path.as_str()) {
            paths.push(read.path.as_str());
            listings += usize::from(read.listing);
        }
    }
    let distinct = paths.len();
    let first = burst
        .reads
        .iter()
        .next()
        .map_or(event.event_time, |(t, _)| *t);
    let seconds = (event.event_time - first).num_seconds();
    let mut evidence = vec![event.event_id.clone()];
    evidence.extend(
        burst
            .reads
            .iter()
            .map(|(_, r)| r.event_id.clone())
            .filter(|id| *id != event.event_id)
            .take(params.max_evidence.saturating_sub(1)),
    );
    let expected = match RobustBaseline::of(sizes) {
        Some(b) if sizes.len() >= params.min_history as usize => format!(
            "credentials of {} read at most {largest:.0} distinct secret paths in one burst (median {:.0} over {} bursts)",
            burst.owner, b.median, b.n
        ),
        _ => format!(
            "{} has only {} earlier bursts of secret reads, too few for a baseline",
            burst.owner,
            sizes.len()
        ),
    };
    let shown: Vec<&str> = paths.iter().take(5).copied().collect();
    let listing_note = if listings > 0 {
        format!(", {listings} of them listings")
    } else {
        String::new()
    };
    Finding {
        scope: Default::default(),
        detector: NAME,
        severity,
        score: ratio,
        event_time: event.event_time,
        entity: burst.owner.clone(),
        title: format!(
            "One credential of {} read {distinct} secret paths within {seconds} s",
            burst.owner
        ),
        explanation: Explanation {
            expected,
            observed: format!(
                "credential {} ({}) read {distinct} distinct paths within {seconds} s{listing_note}: {}{}",
                short(credential),
                burst.actor,
                shown.join(", "),
                if distinct > shown.len() { ", …" } else { "" }
            ),
            unusual: format!("{ratio:.1}× the largest earlier burst"),
        },
        evidence,
    }
}

fn is_listing(action: &str) -> bool {
    let lower = action.to_ascii_lowercase();
    lower.ends_with("list") || lower.contains(".list")
}

/// Writes and deletes are not reads; reads, gets and listings are.
fn is_write(action: &str) -> bool {
    let verb = action
        .rsplit('.')
        .next()
        .unwrap_or(action)
        .to_ascii_lowercase();
    [
        "create", "update", "delete", "put", "patch", "destroy", "rotate", "revoke",
    ]
    .iter()
    .any(|w| verb.starts_with(w))
}

fn short(credential: &str) -> String {
    credential
        .rsplit(':')
        .next()
        .unwrap_or(credential)
        .chars()
        .take(12)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn read(id: &str, at: DateTime<Utc>, token: &str, path: &str) -> EventRow {
        let mut row = EventRow::new(id, at, Category::SecretAccess, "secret.read");
        row.outcome = "success".into();
        row.repo = Some("acme/billing".into());
        row.actor = Some("jwt-repo:acme/billing:pull_request".into());
        row.identity_id = Some(token.into());
        row.target_name = Some(path.into());
        row
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 10, 8, 0, 0).unwrap()
    }

    /// Twenty CI runs, each token reading its test database and a deploy key.
    fn history(detector: &mut Box<dyn Detector>) {
        let mut out = Vec::new();
        for run in 0..20 {
            let at = start() + Duration::hours(run);
            let token = format!("tok-{run}");
            detector.observe(
                &read(&format!("h{run}a"), at, &token, "secret/data/billing/ci-db"),
                Phase::Learn,
                &mut out,
            );
            detector.observe(
                &read(
                    &format!("h{run}b"),
                    at + Duration::seconds(3),
                    &token,
                    "secret/data/deploy/token",
                ),
                Phase::Learn,
                &mut out,
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn one_token_reading_every_secret_is_reported() {
        let mut detector = build(Params::default());
        history(&mut detector);
        let at = start() + Duration::days(2);
        let mut out = Vec::new();
        let mut listing = read("list", at, "tok-x", "secret/data");
        listing.action = "secret.list".into();
        detector.observe(&listing, Phase::Score, &mut out);
        for i in 0..24 {
            let path = format!("secret/data/team{i}/app/database");
            detector.observe(
                &read(
                    &format!("r{i}"),
                    at + Duration::seconds(i + 1),
                    "tok-x",
                    &path,
                ),
                Phase::Score,
                &mut out,
            );
        }
        // At 8 paths (4× the largest burst of 2) and again at 16.
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].severity, Severity::Medium);
        assert_eq!(out[0].evidence[0], "r6");
        assert!(out[0].evidence.contains(&"list".to_owned()));
        assert_eq!(out[1].severity, Severity::High);
        assert_eq!(out[1].entity, "acme/billing");
        assert!(out[1].explanation.expected.contains("at most 2"));
    }

    #[test]
    fn a_sync_job_that_always_reads_many_paths_is_normal() {
        let mut detector = build(Params::default());
        let mut out = Vec::new();
        for round in 0..10 {
            let at = start() + Duration::hours(round);
            for i in 0..12 {
                let mut row = read(
                    &format!("s{round}-{i}"),
                    at + Duration::seconds(i),
                    "sync",
                    &format!("k8s/secret{i}"),
                );
                row.repo = None;
                row.actor = Some("system:serviceaccount:external-secrets".into());
                detector.observe(&row, Phase::Score, &mut out);
            }
        }
        // The first rounds are cold (low), later ones match the baseline.
        assert!(out.iter().all(|f| f.severity == Severity::Low), "{out:?}");
        assert!(out.len() <= Params::default().min_history as usize);
    }

    #[test]
    fn reads_spread_over_hours_are_not_a_burst() {
        let mut detector = build(Params::default());
        history(&mut detector);
        let mut out = Vec::new();
        for i in 0..24 {
            let at = start() + Duration::days(2) + Duration::minutes(10 * i);
            detector.observe(
                &read(&format!("r{i}"), at, "tok-y", &format!("secret/data/p{i}")),
                Phase::Score,
                &mut out,
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(Params::default().check().is_ok());
        let bad: [fn(&mut Params); 5] = [
            |p| p.window_minutes = 0,
            |p| p.min_paths = 1,
            |p| p.min_ratio = 0.5,
            |p| p.max_bursts = 0,
            |p| p.max_owners = 0,
        ];
        for spoil in bad {
            let mut params = Params::default();
            spoil(&mut params);
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
