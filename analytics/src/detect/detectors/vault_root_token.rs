//! Any request made with a Vault root token. Root tokens bypass every
//! policy and are meant for break-glass recovery only, so each use is
//! reported: `critical` when it changes configuration or reads a secret,
//! `high` for anything else.
//!
//! Baseline / Cold start: nothing needs learning to judge a root token, so
//! the detector reports from the first event. It keeps, per token
//! (accessor), how many requests it made and when it was first seen, and
//! org-wide the number of root-token requests, only to word the
//! explanation. Vault logs each request twice (request, then response);
//! the pending request half is skipped and the rest is judged once per
//! request id, remembered for a bounded number of recent requests.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use pipewatch_schema::{Category, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "vault_root_token";

/// Parameters of [`VaultRootToken`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Tokens never reported (accessor, exact or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Text (case-insensitive) the Vault decoder puts in `message` when the
    /// request carried the `root` policy.
    pub message_marker: String,
    /// Recent request ids remembered so that the request and response
    /// halves of one Vault request are judged once.
    pub dedupe_capacity: usize,
    /// Distinct root tokens whose use counts are kept for explanations.
    pub max_tokens: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            message_marker: "root token".into(),
            dedupe_capacity: 4096,
            max_tokens: 1024,
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
        if self.message_marker.trim().is_empty() {
            return Err(ParamError::new(NAME, "message_marker", "must not be empty"));
        }
        if self.dedupe_capacity == 0 {
            return Err(ParamError::new(
                NAME,
                "dedupe_capacity",
                "must be at least 1",
            ));
        }
        if self.max_tokens == 0 {
            return Err(ParamError::new(NAME, "max_tokens", "must be at least 1"));
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(VaultRootToken {
        marker: params.message_marker.to_lowercase(),
        params,
        seen: HashSet::new(),
        seen_order: VecDeque::new(),
        tokens: HashMap::new(),
        total_uses: 0,
    })
}

/// Uses of a Vault root token so far, per token.
#[derive(Debug, Clone)]
struct TokenUse {
    first_seen: DateTime<Utc>,
    requests: u64,
}

/// Use of a Vault root token.
#[derive(Debug)]
pub struct VaultRootToken {
    params: Params,
    marker: String,
    /// Request ids already judged, with their arrival order for eviction.
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    tokens: HashMap<String, TokenUse>,
    total_uses: u64,
}

impl VaultRootToken {
    fn is_root(&self, event: &EventRow) -> bool {
        let marked = event
            .message
            .as_deref()
            .is_some_and(|m| m.to_lowercase().contains(&self.marker));
        // Vault names the token `root` when it was made by `operator
        // generate-root`; the decoder then also marks the message, but a
        // decoder of another version may only set the actor.
        let named = event.source.starts_with("vault") && event.actor.as_deref() == Some("root");
        marked || named
    }

    /// Whether this request id is seen for the first time (remembers it).
    fn first_sight(&mut self, key: &str) -> bool {
        if self.seen.contains(key) {
            return false;
        }
        if self.seen_order.len() >= self.params.dedupe_capacity
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.seen.insert(key.to_owned());
        self.seen_order.push_back(key.to_owned());
        true
    }
}

impl Detector for VaultRootToken {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        // Vault files requests under these three depending on the path.
        &[
            Category::Auth,
            Category::ConfigChange,
            Category::SecretAccess,
        ]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        if !self.is_root(event) {
            return;
        }
        // The request half says `pending`; its response carries the outcome.
        if event.outcome == "pending" {
            return;
        }
        let request = event
            .correlation_id
            .as_deref()
            .unwrap_or(&event.event_id)
            .to_owned();
        if !self.first_sight(&request) {
            return;
        }
        let token = event
            .identity_id
            .clone()
            .or_else(|| event.actor.clone())
            .unwrap_or_else(|| "root".into());
        let before = self.tokens.get(&token).cloned();
        let total_before = self.total_uses;
        self.total_uses += 1;
        if let Some(entry) = self.tokens.get_mut(&token) {
            entry.requests += 1;
        } else if self.tokens.len() < self.params.max_tokens {
            self.tokens.insert(
                token.clone(),
                TokenUse {
                    first_seen: event.event_time,
                    requests: 1,
                },
            );
        }
        if phase == Phase::Learn {
            return;
        }

        let granted = event.outcome == "success";
        let changes = event.category == Category::ConfigChange;
        let reads_secret = event.category == Category::SecretAccess;
        let severity = if granted && (changes || reads_secret) {
            Severity::Critical
        } else {
            Severity::High
        };
        let what = match (changes, reads_secret) {
            (true, _) => "changed configuration",
            (_, true) => "accessed a secret",
            _ => "made a request",
        };
        let target = event.target_name.as_deref().unwrap_or("-");
        let from = event
            .client_address
            .as_deref()
            .unwrap_or("an unknown address");
        let short = short_token(&token);
        let prior = match &before {
            Some(t) => format!(
                "request {} of this token, first used {}",
                t.requests + 1,
                t.first_seen.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "the first request of this token".into(),
        };
        out.push(Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: if severity == Severity::Critical { 10.0 } else { 8.0 },
            event_time: event.event_time,
            entity: token.clone(),
            title: format!("Vault root token {what}: {} {target}", event.action),
            explanation: Explanation {
                expected: format!(
                    "Vault root tokens bypass every policy and are kept for break-glass recovery; root-token requests seen before in the whole history: {total_before}"
                ),
                observed: format!(
                    "root token {short} from {from} {what} ({} on {target}, outcome {}) at {}",
                    event.action,
                    event.outcome,
                    event.event_time.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                unusual: format!("any root-token use is reported; this is {prior}"),
            },
            evidence: vec![event.event_id.clone()],
        });
    }
}

/// The token id shortened for prose (accessors are long HMACs).
fn short_token(token: &str) -> String {
    let bare = token.rsplit(':').next().unwrap_or(token);
    bare.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use pipewatch_schema::IdentityKind;

    fn vault(id: &str, minute: i64, category: Category, action: &str, outcome: &str) -> EventRow {
        let start = Utc.with_ymd_and_hms(2026, 10, 13, 9, 0, 0).unwrap();
        let mut row = EventRow::new(id, start + Duration::minutes(minute), category, action);
        row.source = "vault_audit".into();
        row.outcome = outcome.into();
        row.identity_kind = IdentityKind::Token;
        row.correlation_id = Some(format!("req-{id}"));
        row
    }

    fn root(row: EventRow) -> EventRow {
        let mut row = row;
        row.actor = Some("root".into());
        row.identity_id = Some("hmac-sha256:abcdef0123456789".into());
        row.message = Some("request made with a root token".into());
        row.target_name = Some("sys/policies/acl/ci".into());
        row
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
    fn a_policy_change_with_a_root_token_is_critical() {
        let change = root(vault(
            "e1",
            0,
            Category::ConfigChange,
            "sys.policies.update",
            "success",
        ));
        let found = run(&[change]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(found[0].evidence, vec!["e1".to_owned()]);
        assert!(
            found[0]
                .explanation
                .observed
                .contains("changed configuration")
        );
    }

    #[test]
    fn a_root_token_read_of_auth_config_is_high() {
        let read = root(vault("e1", 0, Category::Auth, "sys.auth.read", "success"));
        let found = run(&[read]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::High);
    }

    #[test]
    fn the_request_and_response_halves_make_one_finding() {
        let request = root(vault(
            "e1",
            0,
            Category::SecretAccess,
            "secret.read",
            "pending",
        ));
        let mut response = root(vault(
            "e2",
            0,
            Category::SecretAccess,
            "secret.read",
            "success",
        ));
        response.correlation_id = request.correlation_id.clone();
        let mut denied_req = root(vault(
            "e3",
            1,
            Category::SecretAccess,
            "secret.read",
            "denied",
        ));
        let mut denied_resp = root(vault(
            "e4",
            1,
            Category::SecretAccess,
            "secret.read",
            "denied",
        ));
        denied_req.correlation_id = Some("req-x".into());
        denied_resp.correlation_id = Some("req-x".into());
        let found = run(&[request, response, denied_req, denied_resp]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].evidence, vec!["e2".to_owned()]);
        assert_eq!(found[0].severity, Severity::Critical);
        assert_eq!(found[1].evidence, vec!["e3".to_owned()]);
        assert_eq!(found[1].severity, Severity::High);
    }

    #[test]
    fn ordinary_tokens_are_not_reported_and_learning_reports_nothing() {
        let mut normal = vault("e1", 0, Category::SecretAccess, "secret.read", "success");
        normal.actor = Some("kubernetes-ledger-ledger".into());
        normal.message = Some("permission denied".into());
        assert!(run(&[normal]).is_empty());

        let mut detector = build(Params::default());
        let mut out = Vec::new();
        let change = root(vault(
            "e2",
            0,
            Category::ConfigChange,
            "sys.policies.update",
            "success",
        ));
        detector.observe(&change, Phase::Learn, &mut out);
        assert!(out.is_empty());
        let again = root(vault("e3", 5, Category::Auth, "sys.auth.read", "success"));
        detector.observe(&again, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
        assert!(
            out[0]
                .explanation
                .unusual
                .contains("request 2 of this token")
        );
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(Params::default().check().is_ok());
        let bad: [fn(&mut Params); 3] = [
            |p| p.message_marker = " ".into(),
            |p| p.dedupe_capacity = 0,
            |p| p.max_tokens = 0,
        ];
        for spoil in bad {
            let mut params = Params::default();
            spoil(&mut params);
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
