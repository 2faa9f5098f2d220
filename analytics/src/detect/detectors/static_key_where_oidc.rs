//! A secret read with a long-lived static key (IAM user access key, Vault
//! AppRole/userpass) where that secret is normally read only through
//! short-lived identities (OIDC, sessions, app tokens): a leaked or legacy
//! key reaching a secret the pipelines fetch with federation.
//!
//! Baseline / Cold start: per secret, how many granted reads came from
//! each identity kind, and which static credentials read it before (up to
//! `max_static_identities`). A secret with fewer than `min_history` reads
//! is only learned, so a job that reads its own secret with a static key
//! from day one (a legacy export) sets the norm for that secret instead of
//! breaking it; a secret already read with static keys more than
//! `max_static_share` of the time is never reported, nor is a static
//! credential that read the secret before.

use std::collections::HashMap;

use pipewatch_schema::{Category, IdentityKind, Severity};

use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "static_key_where_oidc";

/// Parameters of [`StaticKeyWhereOidc`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Secrets never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Granted reads a secret needs before a static-key read of it is judged.
    pub min_history: u64,
    /// Reads a secret needs, none of them static, for `high`.
    pub high_min_history: u64,
    /// Share (0..1) of static-key reads above which static keys are normal for the secret.
    pub max_static_share: f64,
    /// Static credentials remembered per secret.
    pub max_static_identities: usize,
    /// Secrets tracked (new secrets beyond this are not learned).
    pub max_secrets: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            min_history: 2,
            high_min_history: 10,
            max_static_share: 0.1,
            max_static_identities: 16,
            max_secrets: 100_000,
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
        if self.high_min_history < self.min_history {
            return err("high_min_history", "must be at least min_history");
        }
        if !(0.0..1.0).contains(&self.max_static_share) {
            return err("max_static_share", "must be within 0..1 (excluding 1)");
        }
        if self.max_static_identities == 0 {
            return err("max_static_identities", "must be at least 1");
        }
        if self.max_secrets == 0 {
            return err("max_secrets", "must be at least 1");
        }
        Ok(())
    }
}

/// Builds the detector from checked parameters.
pub fn build(params: Params) -> Box<dyn Detector> {
    Box::new(StaticKeyWhereOidc {
        params,
        secrets: HashMap::new(),
    })
}

/// How one secret has been read so far.
#[derive(Debug, Default)]
struct SecretReads {
    total: u64,
    static_key: u64,
    short_lived: u64,
    token: u64,
    static_identities: Vec<String>,
}

/// Static-key reads of secrets normally read through short-lived identities.
#[derive(Debug)]
pub struct StaticKeyWhereOidc {
    params: Params,
    secrets: HashMap<String, SecretReads>,
}

impl Detector for StaticKeyWhereOidc {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::SecretAccess]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // One granted read per request: Vault's pending request half and
        // denials expose nothing.
        if event.outcome != "success" || is_write(&event.action) {
            return;
        }
        let Some(secret) = event.target_name.as_deref() else {
            return;
        };
        if !self.secrets.contains_key(secret) && self.secrets.len() >= self.params.max_secrets {
            return;
        }
        let reads = self.secrets.entry(secret.to_owned()).or_default();
        let kind = event.identity_kind;
        let credential = event
            .identity_id
            .clone()
            .or_else(|| event.actor.clone())
            .unwrap_or_else(|| "-".into());

        if kind == IdentityKind::StaticKey
            && phase == Phase::Score
            && reads.total >= self.params.min_history
            && !reads.static_identities.contains(&credential)
        {
            let share = reads.static_key as f64 / reads.total as f64;
            if share <= self.params.max_static_share {
                let severity =
                    if reads.static_key == 0 && reads.total >= self.params.high_min_history {
                        Severity::High
                    } else {
                        Severity::Medium
                    };
                out.push(finding(event, secret, &credential, reads, severity));
            }
        }

        reads.total += 1;
        match kind {
            IdentityKind::StaticKey => {
                reads.static_key += 1;
                if !reads.static_identities.contains(&credential)
                    && reads.static_identities.len() < self.params.max_static_identities
                {
                    reads.static_identities.push(credential);
                }
            }
            IdentityKind::Oidc | IdentityKind::Session | IdentityKind::App => {
                reads.short_lived += 1
            }
            IdentityKind::Token => reads.token += 1,
            IdentityKind::Unknown => {}
        }
    }
}

fn finding(
    event: &EventRow,
    secret: &str,
    credential: &str,
    reads: &SecretReads,
    severity: Severity,
) -> Finding {
    // Chance of a static read under the secret's own history (add-half smoothing).
    let p = (reads.static_key as f64 + 0.5) / (reads.total as f64 + 1.0);
    let who = event.actor.as_deref().unwrap_or(credential);
    let from = event
        .client_address
        .as_deref()
        .unwrap_or("an unknown address");
    Finding {
        scope: Default::default(),
        detector: NAME,
        severity,
        score: -p.log10(),
        event_time: event.event_time,
        entity: secret.to_owned(),
        title: format!("Secret {secret} read with the static key of {who}"),
        explanation: Explanation {
            expected: format!(
                "{secret} was read {} times before: {} through short-lived identities (OIDC, sessions), {} with tokens, {} with static keys",
                reads.total, reads.short_lived, reads.token, reads.static_key
            ),
            observed: format!(
                "{who} read it with the long-lived key {credential} from {from} ({}) at {}",
                event.action,
                event.event_time.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            unusual: format!(
                "first read of this secret with this key; static keys made {} of {} reads (smoothed chance {:.2})",
                reads.static_key, reads.total, p
            ),
        },
        evidence: vec![event.event_id.clone()],
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone, Utc};

    fn get(id: &str, day: i64, secret: &str, kind: IdentityKind, who: &str) -> EventRow {
        let at = Utc.with_ymd_and_hms(2026, 10, 5, 2, 30, 0).unwrap() + Duration::days(day);
        let mut row = EventRow::new(
            id,
            at,
            Category::SecretAccess,
            "secretsmanager.GetSecretValue",
        );
        row.outcome = "success".into();
        row.identity_kind = kind;
        row.actor = Some(who.into());
        row.identity_id = Some(format!("key-{who}"));
        row.target_name = Some(secret.into());
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
    fn a_static_key_on_an_oidc_only_secret_is_reported() {
        let mut rows: Vec<EventRow> = (0..12)
            .map(|d| {
                get(
                    &format!("o{d}"),
                    d,
                    "prod/web/config",
                    IdentityKind::Oidc,
                    "GitHubActions",
                )
            })
            .collect();
        rows.push(get(
            "bad",
            12,
            "prod/web/config",
            IdentityKind::StaticKey,
            "svc-reports-legacy",
        ));
        let found = run(&rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::High);
        assert_eq!(found[0].evidence, vec!["bad".to_owned()]);
        assert_eq!(found[0].entity, "prod/web/config");
        assert!(
            found[0]
                .explanation
                .expected
                .contains("12 through short-lived")
        );
    }

    #[test]
    fn with_little_oidc_history_the_finding_is_medium() {
        let mut rows: Vec<EventRow> = (0..4)
            .map(|d| {
                get(
                    &format!("o{d}"),
                    d,
                    "prod/web/config",
                    IdentityKind::Oidc,
                    "GitHubActions",
                )
            })
            .collect();
        rows.push(get(
            "bad",
            5,
            "prod/web/config",
            IdentityKind::StaticKey,
            "svc-x",
        ));
        let found = run(&rows);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Medium);
    }

    #[test]
    fn a_legacy_job_reading_its_own_secret_with_a_static_key_is_normal() {
        // Static from the first read on: the secret's norm is static.
        let rows: Vec<EventRow> = (0..8)
            .map(|d| {
                get(
                    &format!("s{d}"),
                    d * 3,
                    "reports/export",
                    IdentityKind::StaticKey,
                    "svc-legacy",
                )
            })
            .collect();
        assert!(run(&rows).is_empty());
    }

    #[test]
    fn a_cold_secret_and_denied_reads_are_not_judged() {
        let mut rows = vec![
            get("o1", 0, "new/secret", IdentityKind::Oidc, "GitHubActions"),
            get("s1", 1, "new/secret", IdentityKind::StaticKey, "svc-x"),
        ];
        let mut denied = get("d1", 2, "new/secret", IdentityKind::StaticKey, "svc-y");
        denied.outcome = "denied".into();
        rows.push(denied);
        assert!(run(&rows).is_empty());
    }

    #[test]
    fn unusable_parameters_are_refused() {
        assert!(Params::default().check().is_ok());
        let bad: [fn(&mut Params); 3] = [
            |p| p.min_history = 0,
            |p| p.max_static_share = 1.5,
            |p| p.high_min_history = 1,
        ];
        for spoil in bad {
            let mut params = Params::default();
            spoil(&mut params);
            assert!(params.check().is_err(), "{params:?}");
        }
    }
}
