//! Configuration changes that weaken protection: branch protection or
//! rulesets removed or edited to require less, audit logging or its
//! streaming stopped, security tooling (secret / code scanning, Dependabot
//! alerts, threat detection) turned off, and the 2FA requirement dropped.
//!
//! Baseline / Cold start: per organisation and kind of change the times the
//! same actor made that change before (capped), so a weakening an actor
//! performs routinely is only `low`; per repository when its protection was
//! last created, so removing a protection minutes after creating it (a new
//! repository being set up) is `low`. Creating a protection is never a
//! finding. Sources that mirror one another (audit log and webhooks) are
//! judged once: once an audit log reports a kind of change for an
//! organisation, the other sources' records of that kind are copies.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "protection_weakened";

/// Parameters of [`ProtectionWeakened`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Entities (repositories, organisations, trails) never reported.
    pub allow: Vec<String>,
    /// Earlier changes of the same kind by the same actor within
    /// `routine_days` that make the change routine (`low`).
    pub routine_count: u32,
    /// Days of history looked at for routine changes.
    pub routine_days: u32,
    /// Minutes after a protection was created during which removing it is
    /// set-up churn (`low`), not weakening.
    pub setup_grace_minutes: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            routine_count: 4,
            routine_days: 30,
            setup_grace_minutes: 60,
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
        if self.routine_count == 0 {
            return err("routine_count", "must be at least 1");
        }
        if self.routine_days == 0 {
            return err("routine_days", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(ProtectionWeakened::new(params))
}

/// What a configuration record does to a protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Change {
    /// A branch protection rule or ruleset was deleted.
    BranchProtectionRemoved,
    /// A branch protection rule was edited to require less.
    BranchProtectionWeakened,
    /// A branch protection rule or ruleset was created.
    BranchProtectionAdded,
    /// Audit logging, a trail or an audit-log stream was stopped or deleted.
    AuditLoggingDisabled,
    /// Audit logging (re)started.
    AuditLoggingEnabled,
    /// Secret / code scanning, Dependabot alerts or threat detection turned off.
    SecurityToolingDisabled,
    /// The two-factor requirement was dropped.
    TwoFactorDisabled,
    /// The two-factor requirement was (re)instated.
    TwoFactorEnabled,
}

impl Change {
    /// Whether the change lowers protection.
    pub(crate) fn weakens(self) -> bool {
        matches!(
            self,
            Change::BranchProtectionRemoved
                | Change::BranchProtectionWeakened
                | Change::AuditLoggingDisabled
                | Change::SecurityToolingDisabled
                | Change::TwoFactorDisabled
        )
    }

    fn describe(self) -> &'static str {
        match self {
            Change::BranchProtectionRemoved => "branch protection removed",
            Change::BranchProtectionWeakened => "branch protection weakened",
            Change::BranchProtectionAdded => "branch protection created",
            Change::AuditLoggingDisabled => "audit logging disabled",
            Change::AuditLoggingEnabled => "audit logging enabled",
            Change::SecurityToolingDisabled => "security tooling disabled",
            Change::TwoFactorDisabled => "two-factor requirement disabled",
            Change::TwoFactorEnabled => "two-factor requirement enabled",
        }
    }
}

// Vendor verbs and nouns, space-separated.
const REMOVE_VERBS: &str = "destroy delete deleted remove removed disable disabled stop unprotect";
const ADD_VERBS: &str = "create created add added enable enabled start protect";
const EDIT_VERBS: &str = "update updated edit edited change changed";
const TOOLING: &str = "scanning dependabot vulnerability guardduty securityhub recorder analyzer";

/// Splits an action into lower-case words at dots, underscores, dashes and
/// camel-case boundaries (`cloudtrail.StopLogging` → cloudtrail stop logging).
pub(crate) fn words(action: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in action.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Whether a message lists a setting going down (`1 -> 0`, `true -> false`).
fn message_lowers(message: &str) -> bool {
    let parts: Vec<&str> = message.split("->").collect();
    parts.windows(2).any(|pair| {
        let before = pair[0].split_whitespace().last().unwrap_or_default();
        let after = pair[1].split_whitespace().next().unwrap_or_default();
        match (before.parse::<f64>(), after.parse::<f64>()) {
            (Ok(b), Ok(a)) => a < b,
            _ => before.eq_ignore_ascii_case("true") && after.eq_ignore_ascii_case("false"),
        }
    })
}

/// Classifies a configuration record by vendor action vocabulary (GitHub
/// audit and webhooks, GitLab, CloudTrail, Vault). `None` for anything that
/// does not change a protection or whose direction is unknown.
pub(crate) fn classify(event: &EventRow) -> Option<Change> {
    if matches!(event.outcome.as_str(), "failure" | "denied" | "pending") {
        return None;
    }
    let w = words(&event.action);
    let has = |word: &str| w.iter().any(|x| x == word);
    let any = |set: &str| set.split(' ').any(&has);
    let removes = any(REMOVE_VERBS);
    let adds = any(ADD_VERBS);
    let branch = (has("protected") && has("branch"))
        || (has("branch") && has("protection"))
        || has("ruleset");
    if branch {
        if removes {
            return Some(Change::BranchProtectionRemoved);
        }
        if adds {
            return Some(Change::BranchProtectionAdded);
        }
        // Edits are weakening only when the record says which way they went.
        let lowered = event.message.as_deref().is_some_and(message_lowers);
        let edits = any(EDIT_VERBS) || w.iter().any(|x| x.starts_with("update"));
        return (edits && lowered).then_some(Change::BranchProtectionWeakened);
    }
    // A switch turned off or on; anything else about it says nothing.
    let toggle = |off, on| (removes.then_some(off)).or(adds.then_some(on));
    if (has("two") && has("factor")) || has("2fa") {
        return toggle(Change::TwoFactorDisabled, Change::TwoFactorEnabled);
    }
    if has("audit") || (has("cloudtrail") && (has("logging") || has("trail"))) {
        return toggle(Change::AuditLoggingDisabled, Change::AuditLoggingEnabled);
    }
    if any(TOOLING) && removes {
        return Some(Change::SecurityToolingDisabled);
    }
    None
}

/// The organisation of a record: `org`, else the repository owner.
pub(crate) fn org_of(event: &EventRow) -> String {
    event
        .org
        .clone()
        .or_else(|| {
            event
                .repo
                .as_deref()
                .and_then(|r| r.split('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "-".into())
}

/// What a change is about: the repository (and branch) for repository
/// settings, else the target (trail name, organisation).
pub(crate) fn subject(event: &EventRow) -> String {
    let target = event
        .target_name
        .as_deref()
        .map(|t| t.rsplit('/').next().unwrap_or(t))
        .filter(|t| !t.is_empty());
    match (event.repo.as_deref(), target) {
        (Some(repo), _) => repo.to_owned(),
        (None, Some(target)) => target.to_owned(),
        (None, None) => org_of(event),
    }
}

/// Whether a source is an audit log (the record of who did what), as
/// opposed to notifications such as webhooks.
fn is_audit_source(source: &str) -> bool {
    source.contains("audit") || source == "cloudtrail"
}

/// Says which records to skip so each change is judged once: once an audit
/// log reports a kind of change for an organisation, the other sources'
/// records of that kind (webhooks, delivered late or twice) are copies.
#[derive(Debug, Default)]
pub(crate) struct AuditCoverage {
    audited: HashSet<(String, Change)>,
}

impl AuditCoverage {
    /// Files `event` (classified as `change`); `true` when it only copies an audit log.
    pub(crate) fn redundant(&mut self, event: &EventRow, change: Change) -> bool {
        let key = (org_of(event), change);
        if is_audit_source(&event.source) {
            self.audited.insert(key);
            false
        } else {
            self.audited.contains(&key)
        }
    }
}

/// Configuration changes that weaken protection.
#[derive(Debug)]
pub struct ProtectionWeakened {
    params: Params,
    coverage: AuditCoverage,
    /// Times of earlier weakening changes by (org, actor, kind), capped.
    history: HashMap<(String, String, Change), VecDeque<DateTime<Utc>>>,
    /// When a subject's branch protection was last created.
    created: HashMap<String, DateTime<Utc>>,
}

/// Earlier changes remembered per actor and kind.
const HISTORY_CAP: usize = 32;

impl ProtectionWeakened {
    /// The finding for a weakening `change`; `earlier` = the actor's earlier
    /// changes of this kind, `setup` = minutes since the protection was created.
    fn finding(
        &self,
        event: &EventRow,
        change: Change,
        earlier: usize,
        setup: Option<i64>,
    ) -> Finding {
        let (subject, what) = (subject(event), change.describe());
        let actor = event.actor.as_deref().unwrap_or("someone");
        let routine = earlier >= self.params.routine_count as usize;
        let severity = match change {
            _ if routine || setup.is_some() => Severity::Low,
            Change::AuditLoggingDisabled | Change::TwoFactorDisabled => Severity::High,
            _ => Severity::Medium,
        };
        let place = match (change, event.target_name.as_deref()) {
            (Change::BranchProtectionRemoved | Change::BranchProtectionWeakened, Some(branch)) => {
                format!("on {branch} of {subject}")
            }
            _ => format!("for {subject}"),
        };
        let days = self.params.routine_days;
        let expected = match setup {
            Some(m) => {
                format!("{subject} was protected {m} minutes earlier; set-up churn is routine")
            }
            None => format!(
                "protections stay in place; {actor} made {earlier} such changes in {days} days"
            ),
        };
        let unusual = if routine {
            format!("routine for {actor}: {earlier} earlier changes of this kind")
        } else {
            format!(
                "a direct loss of protection; {earlier} earlier changes of this kind by {actor}"
            )
        };
        let weight = if severity >= Severity::High { 2.0 } else { 1.0 };
        Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: weight / (1.0 + earlier as f64),
            event_time: event.event_time,
            entity: subject.clone(),
            title: format!(
                "{}{} {place} by {actor}",
                what[..1].to_uppercase(),
                &what[1..]
            ),
            explanation: Explanation {
                expected,
                observed: format!(
                    "{actor} performed {} ({what}) at {} UTC",
                    event.action,
                    event.event_time.format("%Y-%m-%d %H:%M")
                ),
                unusual,
            },
            evidence: vec![event.event_id.clone()],
        }
    }

    fn new(params: Params) -> Self {
        ProtectionWeakened {
            coverage: AuditCoverage::default(),
            params,
            history: HashMap::new(),
            created: HashMap::new(),
        }
    }
}

impl Detector for ProtectionWeakened {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::ConfigChange]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        let Some(change) = classify(event) else {
            return;
        };
        if self.coverage.redundant(event, change) {
            return;
        }
        if change == Change::BranchProtectionAdded {
            self.created.insert(subject(event), event.event_time);
        }
        if !change.weakens() {
            return;
        }
        let org = org_of(event);
        let actor = event.actor.clone().unwrap_or_else(|| "-".into());
        let key = (org, actor, change);
        let horizon = event.event_time - Duration::days(i64::from(self.params.routine_days));
        let earlier = self
            .history
            .get(&key)
            .map_or(0, |times| times.iter().filter(|t| **t >= horizon).count());
        let setup = (change == Change::BranchProtectionRemoved)
            .then(|| self.created.get(&subject(event)))
            .flatten()
            .map(|created| (event.event_time - *created).num_minutes())
            .filter(|m| *m <= i64::from(self.params.setup_grace_minutes));
        if phase == Phase::Score {
            out.push(self.finding(event, change, earlier, setup));
        }
        let times = self.history.entry(key).or_default();
        times.push_back(event.event_time);
        while times.len() > HISTORY_CAP {
            times.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const API: Option<&str> = Some("acme/api");

    fn change(id: &str, minutes: i64, source: &str, action: &str, repo: Option<&str>) -> EventRow {
        let start = Utc.with_ymd_and_hms(2026, 10, 12, 15, 0, 0).unwrap();
        let mut r = EventRow::new(
            id,
            start + Duration::minutes(minutes),
            Category::ConfigChange,
            action,
        );
        r.source = source.into();
        r.outcome = "success".into();
        r.org = Some("acme".into());
        r.repo = repo.map(str::to_owned);
        r.actor = Some("mallory".into());
        r.target_name = Some(if repo.is_some() { "main" } else { "acme" }.into());
        r
    }

    fn audit(id: &str, minutes: i64, action: &str, repo: Option<&str>) -> EventRow {
        change(id, minutes, "github_audit", action, repo)
    }

    fn run(d: &mut ProtectionWeakened, rows: &[EventRow]) -> Vec<Finding> {
        let mut out = Vec::new();
        for r in rows {
            d.observe(r, Phase::Score, &mut out);
        }
        out
    }

    #[test]
    fn vendor_actions_are_classified() {
        use Change::*;
        let cases = [
            ("protected_branch.destroy", Some(BranchProtectionRemoved)),
            ("protected_branch.create", Some(BranchProtectionAdded)),
            ("cloudtrail.StopLogging", Some(AuditLoggingDisabled)),
            ("cloudtrail.DeleteTrail", Some(AuditLoggingDisabled)),
            ("audit_log_streaming.destroy", Some(AuditLoggingDisabled)),
            ("audit_log_streaming.check", None),
            (
                "org.disable_two_factor_requirement",
                Some(TwoFactorDisabled),
            ),
            (
                "repository_secret_scanning.disable",
                Some(SecurityToolingDisabled),
            ),
            (
                "protected_branch.update_required_approving_review_count",
                None,
            ),
        ];
        for (action, expected) in cases {
            assert_eq!(classify(&audit("x", 0, action, API)), expected, "{action}");
        }
        let mut edit = change(
            "e",
            0,
            "github_webhook",
            "branch_protection_rule.edited",
            API,
        );
        edit.message = Some("also changed: required_approving_review_count 2 -> 0".into());
        assert_eq!(classify(&edit), Some(Change::BranchProtectionWeakened));
        edit.message = Some("also changed: required_approving_review_count 1 -> 2".into());
        assert_eq!(classify(&edit), None);
    }

    #[test]
    fn a_removal_is_reported_once_although_two_sources_tell_it() {
        let deleted = "branch_protection_rule.deleted";
        let rows = [
            audit("a1", 0, "protected_branch.destroy", API),
            change("w1", 0, "github_webhook", deleted, API),
            // A late webhook copy days later is known to be redundant.
            change("w2", 3000, "github_webhook", deleted, API),
        ];
        let found = run(&mut ProtectionWeakened::new(Params::default()), &rows);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].severity, Severity::Medium);
        assert_eq!(found[0].evidence, vec!["a1".to_owned()]);
        assert_eq!(found[0].entity, "acme/api");
    }

    #[test]
    fn creating_protection_is_not_weakening_and_setup_churn_is_low() {
        let new = Some("acme/new");
        let rows = [
            audit("c1", 0, "protected_branch.create", new),
            audit("d1", 5, "protected_branch.destroy", new),
        ];
        let found = run(&mut ProtectionWeakened::new(Params::default()), &rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Low);
    }

    #[test]
    fn audit_logging_and_2fa_are_high_unless_routine_for_the_actor() {
        let mut d = ProtectionWeakened::new(Params::default());
        let stop = change("s1", 0, "cloudtrail", "cloudtrail.StopLogging", None);
        assert_eq!(run(&mut d, &[stop])[0].severity, Severity::High);
        let rows: Vec<EventRow> = (0..6)
            .map(|i| {
                audit(
                    &format!("t{i}"),
                    100 + i * 200,
                    "org.disable_two_factor_requirement",
                    None,
                )
            })
            .collect();
        let found = run(&mut d, &rows);
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found.last().map(|f| f.severity), Some(Severity::Low));
    }

    #[test]
    fn unusable_parameters_are_refused() {
        let bad = |p: Params| p.check().is_err();
        assert!(bad(Params {
            routine_count: 0,
            ..Params::default()
        }));
        assert!(bad(Params {
            routine_days: 0,
            ..Params::default()
        }));
        assert!(!bad(Params::default()));
    }
}
