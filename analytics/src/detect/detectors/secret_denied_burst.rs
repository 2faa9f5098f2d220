//! Bursts of denied secret reads by one identity: a token probing paths its
//! policy does not grant (many denials within minutes), judged against how
//! often that identity, and the organisation as a whole, gets denied.
//!
//! Baseline / Cold start: per identity (actor, else credential id) the
//! number of secret requests and of denials over its whole history, plus
//! the same two counts org-wide. The expected denial rate of an identity
//! is its own rate shrunk towards the org-wide rate (`prior_weight`
//! pseudo-requests), so a brand-new identity is judged by how rare denials
//! are in the organisation. Nothing is judged before the organisation has
//! `min_history` requests, and fewer than `min_denied` denials within the
//! window never make a finding. State per identity is two sliding windows
//! of `window_minutes`, capped at `max_window_items`; identities silent for
//! `forget_after_days` are forgotten.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::stats::{TimeWindow, binomial_upper_tail, severity_for_tail};
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "secret_denied_burst";

/// Parameters of [`SecretDeniedBurst`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Identities never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Length of the sliding window denials are counted in.
    pub window_minutes: u32,
    /// Denied requests within the window before a burst is judged.
    pub min_denied: u32,
    /// Secret requests the organisation must have made before anything is
    /// judged (the org-wide denial rate is the prior of every identity).
    pub min_history: u64,
    /// Weight, in pseudo-requests, of the org-wide denial rate in an
    /// identity's expected rate.
    pub prior_weight: f64,
    /// Requests kept per identity window (bounds memory on floods).
    pub max_window_items: usize,
    /// Days without a request after which an identity's history is dropped
    /// (short-lived pipeline identities would otherwise pile up).
    pub forget_after_days: u32,
    /// Evidence events listed per finding.
    pub max_evidence: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            window_minutes: 10,
            min_denied: 5,
            min_history: 100,
            prior_weight: 20.0,
            max_window_items: 500,
            forget_after_days: 30,
            max_evidence: 30,
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
        if self.min_denied < 2 {
            return err(
                "min_denied",
                "must be at least 2 (one denial is not a burst)",
            );
        }
        if !(self.prior_weight.is_finite() && self.prior_weight > 0.0) {
            return err("prior_weight", "must be a positive number");
        }
        if (self.max_window_items as u64) < u64::from(self.min_denied) {
            return err("max_window_items", "must be at least min_denied");
        }
        if self.max_evidence == 0 {
            return err("max_evidence", "must be at least 1");
        }
        if self.forget_after_days == 0 {
            return err("forget_after_days", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(SecretDeniedBurst {
        span: Duration::minutes(i64::from(params.window_minutes)),
        params,
        identities: HashMap::new(),
        org: Counts::default(),
        next_sweep: None,
    })
}

/// Requests and denials counted so far.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    denied: u64,
}

/// One denied request inside the window.
#[derive(Debug, Clone)]
struct Denial {
    request: String,
    event_id: String,
    target: String,
}

#[derive(Debug)]
struct Identity {
    counts: Counts,
    /// Every judged request (granted or denied) within the window.
    requests: TimeWindow<()>,
    denials: TimeWindow<Denial>,
    /// Denials in the window when the burst was last reported (0: not yet).
    reported_at: usize,
    last: DateTime<Utc>,
}

impl Identity {
    fn new(span: Duration, now: DateTime<Utc>) -> Self {
        Identity {
            counts: Counts::default(),
            requests: TimeWindow::new(span),
            denials: TimeWindow::new(span),
            reported_at: 0,
            last: now,
        }
    }
}

/// Bursts of denied secret reads by one identity.
#[derive(Debug)]
pub struct SecretDeniedBurst {
    params: Params,
    span: Duration,
    identities: HashMap<String, Identity>,
    org: Counts,
    next_sweep: Option<DateTime<Utc>>,
}

impl SecretDeniedBurst {
    /// Drops identities idle for `forget_after_days`, once a day.
    fn sweep(&mut self, now: DateTime<Utc>) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        self.next_sweep = Some(now + Duration::days(1));
        let horizon = now - Duration::days(i64::from(self.params.forget_after_days));
        self.identities
            .retain(|_, identity| identity.last >= horizon);
    }
}

impl Detector for SecretDeniedBurst {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::SecretAccess]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // Vault's request half says `pending`; the response carries the decision.
        if event.outcome == "pending" {
            return;
        }
        let Some(key) = identity_key(event) else {
            return;
        };
        let denied = event.outcome == "denied";
        let request = event
            .correlation_id
            .clone()
            .unwrap_or_else(|| event.event_id.clone());
        self.sweep(event.event_time);
        let (span, now) = (self.span, event.event_time);
        let identity = self
            .identities
            .entry(key.clone())
            .or_insert_with(|| Identity::new(span, now));
        identity.last = now;
        identity.requests.expire(event.event_time);
        identity.denials.expire(event.event_time);
        if identity.denials.is_empty() {
            identity.reported_at = 0;
        }
        // A request Vault refuses up front is logged denied twice (request
        // and response); count it once.
        if denied && identity.denials.iter().any(|(_, d)| d.request == request) {
            return;
        }
        let org_before = self.org;
        let own_before = identity.counts;
        let burst_before = Counts {
            requests: identity.requests.len() as u64,
            denied: identity.denials.len() as u64,
        };
        if identity.requests.len() < self.params.max_window_items {
            identity.requests.push(event.event_time, ());
        }
        identity.counts.requests += 1;
        self.org.requests += 1;
        if !denied {
            return;
        }
        identity.counts.denied += 1;
        self.org.denied += 1;
        if identity.denials.len() < self.params.max_window_items {
            identity.denials.push(
                event.event_time,
                Denial {
                    request,
                    event_id: event.event_id.clone(),
                    target: event.target_name.clone().unwrap_or_else(|| "-".into()),
                },
            );
        }
        if phase == Phase::Learn {
            return;
        }
        let k = identity.denials.len();
        let due = if identity.reported_at == 0 {
            k >= self.params.min_denied as usize
        } else {
            k >= 2 * identity.reported_at
        };
        if !due || org_before.requests < self.params.min_history {
            return;
        }
        // The baseline is the history before this burst began.
        let org = Counts {
            requests: org_before.requests.saturating_sub(burst_before.requests),
            denied: org_before.denied.saturating_sub(burst_before.denied),
        };
        let own = Counts {
            requests: own_before.requests.saturating_sub(burst_before.requests),
            denied: own_before.denied.saturating_sub(burst_before.denied),
        };
        let org_rate = (org.denied as f64 + 1.0) / (org.requests as f64 + 2.0);
        let weight = self.params.prior_weight;
        let rate = (own.denied as f64 + weight * org_rate) / (own.requests as f64 + weight);
        let n = identity.requests.len() as u64;
        let tail = binomial_upper_tail(k as u64, n.max(k as u64), rate);
        let severity = severity_for_tail(tail);
        if severity < Severity::Low {
            return;
        }
        identity.reported_at = k;
        out.push(finding(
            event,
            &key,
            identity,
            own,
            org,
            rate,
            tail,
            severity,
            &self.params,
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn finding(
    event: &EventRow,
    key: &str,
    identity: &Identity,
    own: Counts,
    org: Counts,
    rate: f64,
    tail: f64,
    severity: Severity,
    params: &Params,
) -> Finding {
    let k = identity.denials.len();
    let n = identity.requests.len();
    let paths: HashSet<&str> = identity
        .denials
        .iter()
        .map(|(_, d)| d.target.as_str())
        .collect();
    let first: Option<DateTime<Utc>> = identity.denials.iter().next().map(|(t, _)| *t);
    let seconds = first.map_or(0, |t| (event.event_time - t).num_seconds());
    let mut evidence = vec![event.event_id.clone()];
    evidence.extend(
        identity
            .denials
            .iter()
            .map(|(_, d)| d.event_id.clone())
            .filter(|id| *id != event.event_id)
            .take(params.max_evidence.saturating_sub(1)),
    );
    let who = match event.repo.as_deref() {
        Some(repo) => format!("{key} (repository {repo})"),
        None => key.to_owned(),
    };
    Finding {
        scope: Default::default(),
        detector: NAME,
        severity,
        score: -tail.max(1e-300).log10(),
        event_time: event.event_time,
        entity: key.to_owned(),
        title: format!("{k} denied secret reads by one identity within {seconds} s"),
        explanation: Explanation {
            expected: format!(
                "{}; org-wide {} of {} secret requests were denied, so about {:.2}% of its requests are expected to be denied",
                if own.requests == 0 {
                    format!("{who} made no secret request before")
                } else {
                    format!(
                        "{who} was denied {} of {} secret requests before",
                        own.denied, own.requests
                    )
                },
                org.denied,
                org.requests,
                rate * 100.0
            ),
            observed: format!(
                "{k} of its {n} secret requests within {} minutes were denied, on {} distinct paths, the last on {} at {}",
                params.window_minutes,
                paths.len(),
                event.target_name.as_deref().unwrap_or("-"),
                event.event_time.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            unusual: format!(
                "binomial tail probability {tail:.1e} of so many denials at that rate"
            ),
        },
        evidence,
    }
}

/// Who made the request: the actor (stable across a pipeline's short-lived
/// tokens), else the credential.
fn identity_key(event: &EventRow) -> Option<String> {
    event.actor.clone().or_else(|| event.identity_id.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn read(id: usize, seconds: i64, actor: &str, outcome: &str) -> EventRow {
        let start = Utc.with_ymd_and_hms(2026, 10, 12, 21, 0, 0).unwrap();
        let mut row = EventRow::new(
            format!("e{id}"),
            start + Duration::seconds(seconds),
            Category::SecretAccess,
            "secret.read",
        );
        row.actor = Some(actor.into());
        row.outcome = outcome.into();
        row.correlation_id = Some(format!("req{id}"));
        row.target_name = Some(format!("secret/data/team/app{}/database", id % 7));
        row
    }

    /// 300 granted reads by several identities over the previous days.
    fn history(detector: &mut Box<dyn Detector>) {
        let mut out = Vec::new();
        for i in 0..300 {
            let actor = format!("ci-{}", i % 5);
            detector.observe(
                &read(10_000 + i, -86_400 + i as i64 * 60, &actor, "success"),
                Phase::Learn,
                &mut out,
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_run_of_denials_by_one_identity_is_reported_once_per_burst() {
        let mut detector = build(Params::default());
        history(&mut detector);
        let mut out = Vec::new();
        for i in 0..14 {
            // Each refused request is logged twice (request and response).
            let request = read(i, i as i64, "jwt-repo:acme/design-system", "denied");
            let mut response = request.clone();
            response.event_id = format!("e{i}-response");
            detector.observe(&request, Phase::Score, &mut out);
            detector.observe(&response, Phase::Score, &mut out);
        }
        // Reported when the fifth denial arrives and again at ten.
        assert_eq!(out.len(), 2);
        assert!(out[0].severity >= Severity::High);
        assert_eq!(out[0].evidence[0], "e4");
        assert_eq!(out[0].evidence.len(), 5);
        assert!(out[1].title.starts_with("10 denied"));
        assert_eq!(out[0].entity, "jwt-repo:acme/design-system");
    }

    #[test]
    fn an_identity_that_is_often_denied_is_not_reported_for_a_few_more() {
        let mut detector = build(Params::default());
        history(&mut detector);
        let mut out = Vec::new();
        // A scanner that is denied half of the time, every day.
        for i in 0..400 {
            let outcome = if i % 2 == 0 { "denied" } else { "success" };
            detector.observe(
                &read(20_000 + i, -80_000 + i as i64 * 120, "scanner", outcome),
                Phase::Learn,
                &mut out,
            );
        }
        // Six denials in twelve requests within a minute: its usual half.
        for i in 0..12 {
            let outcome = if i % 2 == 0 { "denied" } else { "success" };
            detector.observe(
                &read(i, i as i64, "scanner", outcome),
                Phase::Score,
                &mut out,
            );
        }
        assert!(out.is_empty(), "{out:?}");
        // The same six denials by an identity that is never denied are reported.
        for i in 0..12 {
            let outcome = if i % 2 == 0 { "denied" } else { "success" };
            detector.observe(
                &read(100 + i, i as i64, "ci-2", outcome),
                Phase::Score,
                &mut out,
            );
        }
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn scattered_denials_and_a_cold_lake_make_no_finding() {
        let mut detector = build(Params::default());
        history(&mut detector);
        let mut out = Vec::new();
        // Eight denials, but 20 minutes apart: never five in one window.
        for i in 0..8 {
            detector.observe(
                &read(i, i as i64 * 1200, "ci-1", "denied"),
                Phase::Score,
                &mut out,
            );
        }
        assert!(out.is_empty());

        let mut cold = build(Params::default());
        for i in 0..10 {
            cold.observe(&read(i, i as i64, "ci-1", "denied"), Phase::Score, &mut out);
        }
        assert!(out.is_empty(), "no org history yet");
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(Params::default().check().is_ok());
        let bad: [fn(&mut Params); 4] = [
            |p| p.window_minutes = 0,
            |p| p.min_denied = 1,
            |p| p.prior_weight = -1.0,
            |p| p.forget_after_days = 0,
        ];
        for spoil in bad {
            let mut params = Params::default();
            spoil(&mut params);
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
