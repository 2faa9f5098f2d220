//! A scan reporting far more new findings than that repository's scans
//! usually do: results whose rule and location the repository never had
//! before, counted per scan and judged with a Poisson tail.
//!
//! # Baseline / Cold start
//!
//! Per repository and scanner it keeps the results already seen (rule and
//! location, capped), how many scans ran and how many new results the scans
//! after the first brought. Across the organisation it keeps, per scanner,
//! the same rates plus the usual size of a scan, so a repository's first
//! scans by a tool are judged against what that tool usually reports. A
//! repository with fewer than `min_repo_scans` scans is only learned, and a
//! scanner's first scan of a repository is judged only once the
//! organisation has `min_tool_scans` scans of that scanner.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::stats::{format_log10_probability, log10_poisson_upper_tail, severity_for_tail};
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "finding_spike";

/// Parameters of [`FindingSpike`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Repositories never reported (exact, or a prefix ending in `*`).
    pub allow: Vec<String>,
    /// Scans (any scanner) a repository needs before its scans are judged.
    pub min_repo_scans: u32,
    /// Scans of a scanner across the organisation before a repository's
    /// first scan by that scanner can be judged against its usual size.
    pub min_tool_scans: u32,
    /// Weight, in scans, of the organisation's rate of new results when
    /// estimating a repository's own rate (shrinks short histories).
    pub prior_scans: f64,
    /// Floor on the expected number of new results of a scan: new results
    /// arrive in clusters (one change, several results), so a history of
    /// zeros must not make two new results look impossible.
    pub min_expected: f64,
    /// Fewest new results in one scan that can be reported.
    pub min_new: u32,
    /// Known results remembered per repository and scanner (oldest forgotten first).
    pub max_known: usize,
    /// Evidence events listed per finding.
    pub max_evidence: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_repo_scans: 3,
            min_tool_scans: 5,
            prior_scans: 2.0,
            min_expected: 0.1,
            min_new: 3,
            max_known: 10_000,
            max_evidence: 25,
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
        if self.min_repo_scans == 0 {
            return Err(ParamError::new(
                NAME,
                "min_repo_scans",
                "must be at least 1",
            ));
        }
        if self.min_tool_scans == 0 {
            return Err(ParamError::new(
                NAME,
                "min_tool_scans",
                "must be at least 1",
            ));
        }
        if !(self.prior_scans.is_finite() && self.prior_scans > 0.0) {
            return Err(ParamError::new(
                NAME,
                "prior_scans",
                "must be a positive number",
            ));
        }
        if !(self.min_expected.is_finite() && self.min_expected > 0.0) {
            return Err(ParamError::new(
                NAME,
                "min_expected",
                "must be a positive number",
            ));
        }
        if self.min_new == 0 {
            return Err(ParamError::new(NAME, "min_new", "must be at least 1"));
        }
        if self.max_known < 10 {
            return Err(ParamError::new(NAME, "max_known", "must be at least 10"));
        }
        if self.max_evidence == 0 {
            return Err(ParamError::new(NAME, "max_evidence", "must be at least 1"));
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(FindingSpike {
        params,
        repos: HashMap::new(),
        tools: HashMap::new(),
        scanners: HashMap::new(),
    })
}

/// A scan reporting far more new findings than that repository's scans usually do.
#[derive(Debug)]
pub struct FindingSpike {
    params: Params,
    /// Scans started per repository, any scanner.
    repos: HashMap<String, u32>,
    /// Organisation-wide rates per scanner.
    tools: HashMap<String, ToolRates>,
    /// Per (repository, scanner).
    scanners: HashMap<(String, String), ScannerHistory>,
}

/// Finished scans of one scanner across the organisation.
#[derive(Debug, Default)]
struct ToolRates {
    scans: u64,
    results: u64,
    repeat_scans: u64,
    new_in_repeats: u64,
}

/// One scanner's history on one repository.
#[derive(Debug, Default)]
struct ScannerHistory {
    known: HashSet<String>,
    /// Insertion order of `known`, to forget the oldest first.
    order: VecDeque<String>,
    scans: u64,
    new_in_repeats: u64,
    current: Option<Scan>,
}

/// The scan being read: its rows share a time and a run id.
#[derive(Debug)]
struct Scan {
    time: DateTime<Utc>,
    run: Option<String>,
    results: u64,
    new: Vec<String>,
    new_count: u64,
    reported: Option<Severity>,
    repo_scans_before: u32,
}

impl ScannerHistory {
    fn remember(&mut self, identity: String, cap: usize) {
        if self.known.insert(identity.clone()) {
            self.order.push_back(identity);
            while self.order.len() > cap {
                if let Some(old) = self.order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
    }
}

/// What names a result across scans: its rule and location. The SARIF
/// decoder builds `source_event_id` as `tool:rule:fingerprint`, the
/// fingerprint being the tool's own location hash, and appends
/// `:<run>.<index>` when one input repeats a fingerprint; that suffix is a
/// position, not an identity, so it is dropped.
fn identity(row: &EventRow) -> String {
    let id = row.source_event_id.as_str();
    let base = match id.rsplit_once(':') {
        Some((head, tail)) if is_position(tail) => head,
        _ => id,
    };
    match &row.rule_id {
        Some(rule) if !base.contains(rule.as_str()) => format!("{rule}\u{0}{base}"),
        _ => base.to_owned(),
    }
}

fn is_position(tail: &str) -> bool {
    match tail.split_once('.') {
        Some((run, index)) => {
            !run.is_empty()
                && !index.is_empty()
                && run.bytes().all(|b| b.is_ascii_digit())
                && index.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

impl FindingSpike {
    /// Folds a finished scan into the repository's and the scanner's rates.
    fn finish(&mut self, tool: &str, scan: &Scan, first: bool) {
        let rates = self.tools.entry(tool.to_owned()).or_default();
        rates.scans += 1;
        rates.results += scan.results;
        if !first {
            rates.repeat_scans += 1;
            rates.new_in_repeats += scan.new_count;
        }
    }

    /// Expected new results of the current scan and the words for it.
    fn expectation(&self, tool: &str, history: &ScannerHistory) -> Option<(f64, String)> {
        let rates = self.tools.get(tool);
        if history.scans > 0 {
            let repeats = history.scans - 1;
            let (org_new, org_scans) = rates.map_or((0, 0), |r| (r.new_in_repeats, r.repeat_scans));
            // Laplace-smoothed organisation rate keeps the prior finite with no history.
            let org_rate = (org_new as f64 + 0.5) / (org_scans as f64 + 1.0);
            let prior = self.params.prior_scans;
            let rate =
                (history.new_in_repeats as f64 + prior * org_rate) / (repeats as f64 + prior);
            let words = format!(
                "its {} scans brought {} new results after the first ({} known results; {:.2} new per scan expected)",
                history.scans,
                history.new_in_repeats,
                // What the scan being read added is not history yet.
                history
                    .known
                    .len()
                    .saturating_sub(history.current.as_ref().map_or(0, |s| s.new_count as usize)),
                rate.max(self.params.min_expected)
            );
            return Some((rate.max(self.params.min_expected), words));
        }
        let rates = rates.filter(|r| r.scans >= u64::from(self.params.min_tool_scans))?;
        let usual = rates.results as f64 / rates.scans as f64;
        let words = format!(
            "this is its first {tool} scan; {tool} scans in the organisation report {usual:.1} results on average ({} scans)",
            rates.scans
        );
        Some((usual.max(self.params.min_expected), words))
    }
}

impl Detector for FindingSpike {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::Finding]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let (Some(repo), Some(tool)) = (event.repo.as_deref(), event.tool_name.as_deref()) else {
            return;
        };
        let key = (repo.to_owned(), tool.to_owned());
        let history = self.scanners.entry(key.clone()).or_default();
        let same_scan = history
            .current
            .as_ref()
            .is_some_and(|s| s.time == event.event_time && s.run == event.correlation_id);
        if !same_scan {
            let finished = history.current.take();
            let first = history.scans == 0;
            if let Some(scan) = &finished {
                history.scans += 1;
                if !first {
                    history.new_in_repeats += scan.new_count;
                }
            }
            let repo_scans = self.repos.entry(repo.to_owned()).or_default();
            let before = *repo_scans;
            *repo_scans += 1;
            if let Some(scan) = finished {
                self.finish(tool, &scan, first);
            }
            if let Some(history) = self.scanners.get_mut(&key) {
                history.current = Some(Scan {
                    time: event.event_time,
                    run: event.correlation_id.clone(),
                    results: 0,
                    new: Vec::new(),
                    new_count: 0,
                    reported: None,
                    repo_scans_before: before,
                });
            }
        }
        let cap = self.params.max_known;
        let max_evidence = self.params.max_evidence;
        let Some(history) = self.scanners.get_mut(&key) else {
            return;
        };
        let id = identity(event);
        let is_new = !history.known.contains(&id);
        history.remember(id, cap);
        let Some(scan) = history.current.as_mut() else {
            return;
        };
        scan.results += 1;
        if !is_new {
            return;
        }
        scan.new_count += 1;
        if scan.new.len() < max_evidence {
            scan.new.push(event.event_id.clone());
        }
        if phase == Phase::Learn || scan.repo_scans_before < self.params.min_repo_scans {
            return;
        }
        let (new_count, results, reported) = (scan.new_count, scan.results, scan.reported);
        if new_count < u64::from(self.params.min_new) {
            return;
        }
        let Some(history) = self.scanners.get(&key) else {
            return;
        };
        let Some((expected, words)) = self.expectation(tool, history) else {
            return;
        };
        let log10_p = log10_poisson_upper_tail(new_count, expected);
        let p = 10f64.powf(log10_p);
        let severity = severity_for_tail(p);
        // Once the scan is reported, every further new result is reported
        // too (up to the evidence cap), so the alert's title and evidence
        // follow the scan to its end.
        let escalates = reported.is_none_or(|r| severity > r);
        let grows = reported.is_some() && new_count <= max_evidence as u64;
        if severity < Severity::Low || !(escalates || grows) {
            return;
        }
        let mut evidence = vec![event.event_id.clone()];
        if let Some(scan) = &history.current {
            evidence.extend(
                scan.new
                    .iter()
                    .rev()
                    .filter(|id| **id != event.event_id)
                    .cloned(),
            );
        }
        out.push(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: -log10_p,
            event_time: event.event_time,
            entity: repo.to_owned(),
            title: format!("{tool} scan of {repo} reported {new_count} new results at once"),
            explanation: Explanation {
                expected: format!("{repo}: {words}"),
                observed: format!(
                    "the {tool} scan of {} reported {new_count} results never seen in {repo} (of {results} so far)",
                    event.event_time.format("%Y-%m-%d %H:%M UTC")
                ),
                unusual: format!(
                    "{new_count} new results where {expected:.2} were expected: Poisson tail p = {}",
                    format_log10_probability(log10_p)
                ),
            },
            evidence,
        });
        if let Some(scan) = self.scanners.get_mut(&key).and_then(|h| h.current.as_mut()) {
            scan.reported = Some(scan.reported.map_or(severity, |r| r.max(severity)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    fn result(
        n: usize,
        time: DateTime<Utc>,
        repo: &str,
        tool: &str,
        rule: &str,
        fp: &str,
    ) -> EventRow {
        let mut row = EventRow::new(format!("e{n}"), time, Category::Finding, "sarif.result");
        row.source = "sarif".into();
        row.source_event_id = format!("{tool}:{rule}:{fp}");
        row.repo = Some(repo.into());
        row.tool_name = Some(tool.into());
        row.rule_id = Some(rule.into());
        row
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 3, 0, 0)
            .single()
            .expect("valid time")
    }

    /// Ten daily scans of each repository repeating the same three results.
    fn steady(detector: &mut Box<dyn Detector>, repos: &[&str]) -> usize {
        let mut n = 0;
        for day in 0..10 {
            for (r, repo) in repos.iter().enumerate() {
                let time = start() + Duration::days(day) + Duration::minutes(r as i64);
                for i in 0..3 {
                    n += 1;
                    let row = result(n, time, repo, "CodeQL", "js/xss", &format!("{r}{i}:1"));
                    detector.observe(&row, Phase::Learn, &mut Vec::new());
                }
            }
        }
        n
    }

    #[test]
    fn a_scan_with_many_new_results_is_reported_with_them_as_evidence() {
        let mut detector = build(Params::default());
        let mut n = steady(&mut detector, &["acme/api", "acme/web"]);
        let time = start() + Duration::days(11);
        let mut out = Vec::new();
        for i in 0..12 {
            n += 1;
            let row = result(
                n,
                time,
                "acme/api",
                "CodeQL",
                "js/sql-injection",
                &format!("new{i}:2"),
            );
            detector.observe(&row, Phase::Score, &mut out);
        }
        assert!(!out.is_empty());
        let last = out.last().expect("a finding");
        assert!(last.severity >= Severity::High, "{last:?}");
        assert_eq!(last.entity, "acme/api");
        assert_eq!(last.evidence.len(), 12);
        assert_eq!(last.evidence[0], format!("e{n}"));
        assert!(last.title.contains("12 new results"));
    }

    #[test]
    fn repeated_results_and_a_duplicate_suffix_are_not_new() {
        let mut detector = build(Params::default());
        let mut n = steady(&mut detector, &["acme/api"]);
        let time = start() + Duration::days(11);
        let mut out = Vec::new();
        for i in 0..3 {
            n += 1;
            let mut row = result(n, time, "acme/api", "CodeQL", "js/xss", &format!("0{i}:1"));
            if i == 2 {
                row.source_event_id.push_str(":1.7");
            }
            detector.observe(&row, Phase::Score, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_new_repository_is_learned_not_reported() {
        let mut detector = build(Params::default());
        let mut n = steady(&mut detector, &["acme/api"]);
        let mut out = Vec::new();
        for i in 0..20 {
            n += 1;
            let row = result(
                n,
                start() + Duration::days(11),
                "acme/new",
                "CodeQL",
                "js/xss",
                &format!("{i}:1"),
            );
            detector.observe(&row, Phase::Score, &mut out);
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_first_scan_of_usual_size_by_a_new_tool_is_quiet() {
        let mut detector = build(Params::default());
        let mut n = steady(&mut detector, &["acme/api", "acme/web"]);
        let mut out = Vec::new();
        for i in 0..4 {
            n += 1;
            let row = result(
                n,
                start() + Duration::days(11),
                "acme/api",
                "Trivy",
                "CVE-1",
                &format!("t{i}:1"),
            );
            detector.observe(&row, Phase::Score, &mut out);
        }
        // Trivy has no organisation history: nothing to judge against.
        assert!(out.is_empty());
    }

    #[test]
    fn parameters_that_cannot_work_are_refused() {
        let params = Params {
            prior_scans: 0.0,
            ..Params::default()
        };
        assert!(params.check().is_err());
        let params = Params {
            min_new: 0,
            ..Params::default()
        };
        assert!(params.check().is_err());
        assert!(Params::default().check().is_ok());
    }
}
