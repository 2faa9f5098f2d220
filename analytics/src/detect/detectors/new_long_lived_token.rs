//! Creation of long-lived credentials: IAM access keys and other static
//! cloud credentials, GitHub personal access tokens, OAuth tokens and
//! deploy / SSH keys, GitLab access and deploy tokens, orphan Vault tokens.
//!
//! Baseline / Cold start: per principal whether it already holds a
//! long-lived credential (seen authenticating with a static key or token,
//! or given one earlier) and whether it behaves like a service account
//! (a bot or service identity, or only ever static-key use); per actor and
//! kind of credential the creations in the last `routine_days`, so
//! rotation an actor performs routinely is `low`. A creation is judged on
//! its own, so there is no cold start beyond that: the first creation by
//! anyone is `medium`, `high` when the principal already holds a key, is a
//! service account, or the token reaches every repository.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Duration, Utc};
use pipewatch_schema::{ActorKind, Category, IdentityKind, Severity};

use super::protection_weakened::words;
use crate::detect::{
    CommonParams, Detector, DetectorConfig, EventRow, Explanation, Finding, ParamError, Phase,
};

const NAME: &str = "new_long_lived_token";

/// Principals remembered.
const MAX_PRINCIPALS: usize = 200_000;
/// Creations remembered per actor and kind.
const MAX_CREATIONS: usize = 32;

/// Parameters of [`NewLongLivedToken`].
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Whether the detector runs.
    pub enabled: bool,
    /// Principals never reported (exact, or prefix ending in `*`).
    pub allow: Vec<String>,
    /// Earlier creations of the same kind by the same actor within
    /// `routine_days` from which creating is routine (`low`).
    pub routine_count: u32,
    /// Days looked back for routine creations.
    pub routine_days: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            enabled: true,
            allow: Vec::new(),
            routine_count: 3,
            routine_days: 30,
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
    Box::new(NewLongLivedToken::new(params))
}

/// Creation of long-lived credentials (access keys, personal and project tokens).
#[derive(Debug)]
pub struct NewLongLivedToken {
    params: Params,
    principals: HashMap<String, Principal>,
    /// Creation times by (actor, kind).
    creations: HashMap<(String, Kind), VecDeque<DateTime<Utc>>>,
}

/// What is known of a principal's credentials and nature.
#[derive(Debug, Clone, Default)]
struct Principal {
    /// Uses of a static key or long-lived token.
    long_lived_uses: u32,
    /// Interactive or federated uses (sessions, OIDC).
    other_uses: u32,
    /// Seen as a bot or service identity.
    machine: bool,
    /// Long-lived credentials created for it earlier.
    created: u32,
}

/// The kinds of long-lived credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    CloudAccessKey,
    PersonalToken,
    OauthToken,
    SshOrDeployKey,
    ProjectToken,
    VaultToken,
}

impl Kind {
    fn describe(self) -> &'static str {
        match self {
            Kind::CloudAccessKey => "long-lived cloud access key",
            Kind::PersonalToken => "personal access token",
            Kind::OauthToken => "OAuth access token",
            Kind::SshOrDeployKey => "SSH / deploy key",
            Kind::ProjectToken => "project / deploy token",
            Kind::VaultToken => "orphan Vault token",
        }
    }
}

/// Classifies a record creating a long-lived credential (vendor vocabulary).
fn classify(event: &EventRow) -> Option<Kind> {
    if matches!(
        event.outcome.as_str(),
        "failure" | "denied" | "pending" | "warning"
    ) {
        return None;
    }
    // Cheap pre-check: most records (logins, reads) create nothing.
    let lower = event.action.to_ascii_lowercase();
    if !["creat", "generat", "add", "upload"]
        .iter()
        .any(|v| lower.contains(v))
    {
        return None;
    }
    let w = words(&event.action);
    let has = |word: &str| w.iter().any(|x| x == word);
    let creates = [
        "create",
        "created",
        "generate",
        "generated",
        "add",
        "added",
        "upload",
    ]
    .iter()
    .any(|v| has(v));
    if !creates {
        return None;
    }
    if has("iam")
        && !has("report")
        && ((has("access") && has("key"))
            || (has("specific") && has("credential"))
            || (has("signing") && has("certificate"))
            || (has("ssh") && has("key")))
    {
        return Some(Kind::CloudAccessKey);
    }
    if has("personal") && has("token") {
        return Some(Kind::PersonalToken);
    }
    if has("oauth") && (has("access") || has("token")) {
        return Some(Kind::OauthToken);
    }
    if (has("deploy") || has("public") || has("ssh")) && has("key") {
        return Some(Kind::SshOrDeployKey);
    }
    if has("token") && (has("deploy") || has("access") || has("project") || has("group")) {
        return Some(Kind::ProjectToken);
    }
    // Vault: child tokens die with their parent; orphans outlive it.
    if has("token") && has("orphan") {
        return Some(Kind::VaultToken);
    }
    None
}

/// Whose credential it is: the IAM user given a key, the repository given a
/// deploy key, else the actor creating a token for themselves.
fn principal(event: &EventRow, kind: Kind) -> Option<String> {
    match kind {
        Kind::CloudAccessKey => event.target_name.clone().or_else(|| event.actor.clone()),
        Kind::SshOrDeployKey | Kind::ProjectToken => event
            .repo
            .clone()
            .or_else(|| event.target_namespace.clone())
            .or_else(|| event.actor.clone()),
        _ => event.actor.clone(),
    }
}

impl NewLongLivedToken {
    /// Learns what credentials a principal uses from any record it made.
    fn learn_use(&mut self, event: &EventRow) {
        let Some(actor) = event.actor.as_deref() else {
            return;
        };
        if !self.principals.contains_key(actor) {
            if self.principals.len() >= MAX_PRINCIPALS {
                return;
            }
            self.principals
                .insert(actor.to_owned(), Principal::default());
        }
        let Some(p) = self.principals.get_mut(actor) else {
            return;
        };
        match event.identity_kind {
            IdentityKind::StaticKey | IdentityKind::Token => {
                p.long_lived_uses = p.long_lived_uses.saturating_add(1)
            }
            IdentityKind::Session | IdentityKind::Oidc => {
                p.other_uses = p.other_uses.saturating_add(1)
            }
            IdentityKind::App | IdentityKind::Unknown => {}
        }
        if matches!(event.actor_kind, Some(ActorKind::Bot | ActorKind::Service)) {
            p.machine = true;
        }
    }

    fn judge(&self, event: &EventRow, kind: Kind, principal: &str, earlier: usize) -> Finding {
        let known = self.principals.get(principal).cloned().unwrap_or_default();
        let holds = known.long_lived_uses > 0 || known.created > 0;
        let service = known.machine || (known.long_lived_uses > 0 && known.other_uses == 0);
        let message = event.message.as_deref().unwrap_or_default();
        let broad = message.contains("selection: all") || message.contains("no expiry");
        let routine = earlier >= self.params.routine_count as usize;
        let severity = if routine {
            Severity::Low
        } else if holds || service || broad {
            Severity::High
        } else {
            Severity::Medium
        };
        let actor = event.actor.as_deref().unwrap_or("someone");
        let mut reasons = Vec::new();
        if holds {
            reasons.push(format!(
                "{principal} already holds a long-lived credential ({} uses seen, {} created before)",
                known.long_lived_uses, known.created
            ));
        }
        if service {
            reasons.push(format!("{principal} acts like a service account"));
        }
        if broad {
            reasons.push("the token reaches every repository".to_owned());
        }
        if reasons.is_empty() {
            reasons.push("a credential that does not expire on its own".to_owned());
        }
        let name = event
            .target_name
            .as_deref()
            .filter(|t| *t != principal)
            .map(|t| format!(" \"{t}\""))
            .unwrap_or_default();
        Finding {
            scope: Default::default(),
            detector: NAME,
            severity,
            score: 1.0 / (1.0 + earlier as f64)
                + f64::from(u8::from(holds))
                + f64::from(u8::from(service))
                + f64::from(u8::from(broad)),
            event_time: event.event_time,
            entity: principal.to_owned(),
            title: format!(
                "{actor} created a {}{name} for {principal}",
                kind.describe()
            ),
            explanation: Explanation {
                expected: format!(
                    "short-lived credentials; {actor} created {earlier} {}s in the last {} days",
                    kind.describe(),
                    self.params.routine_days
                ),
                observed: format!(
                    "{actor} performed {} at {} UTC{}",
                    event.action,
                    event.event_time.format("%Y-%m-%d %H:%M"),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!(" ({message})")
                    }
                ),
                unusual: reasons.join("; "),
            },
            evidence: vec![event.event_id.clone()],
        }
    }

    fn new(params: Params) -> Self {
        NewLongLivedToken {
            params,
            principals: HashMap::new(),
            creations: HashMap::new(),
        }
    }
}

impl Detector for NewLongLivedToken {
    fn name(&self) -> &'static str {
        NAME
    }

    fn categories(&self) -> &'static [Category] {
        &[
            Category::Auth,
            Category::ConfigChange,
            Category::SecretAccess,
        ]
    }

    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>) {
        // A creation record is judged before its own credential use is
        // learned, so a token does not count as already held by itself.
        let creation = if event.category == Category::SecretAccess {
            None
        } else {
            classify(event).and_then(|kind| principal(event, kind).map(|p| (kind, p)))
        };
        let Some((kind, principal)) = creation else {
            self.learn_use(event);
            return;
        };
        let actor = event.actor.clone().unwrap_or_else(|| "-".into());
        let horizon = event.event_time - Duration::days(i64::from(self.params.routine_days));
        let key = (actor, kind);
        let earlier = self
            .creations
            .get(&key)
            .map_or(0, |times| times.iter().filter(|t| **t >= horizon).count());
        if phase == Phase::Score {
            out.push(self.judge(event, kind, &principal, earlier));
        }
        let times = self.creations.entry(key).or_default();
        times.push_back(event.event_time);
        while times.len() > MAX_CREATIONS {
            times.pop_front();
        }
        if self.principals.len() < MAX_PRINCIPALS || self.principals.contains_key(&principal) {
            let p = self.principals.entry(principal).or_default();
            p.created = p.created.saturating_add(1);
        }
        self.learn_use(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(minutes: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap() + Duration::minutes(minutes)
    }

    fn row(
        id: &str,
        minutes: i64,
        category: Category,
        action: &str,
        actor: &str,
        kind: IdentityKind,
    ) -> EventRow {
        let mut r = EventRow::new(id, at(minutes), category, action);
        r.outcome = "success".into();
        r.actor = Some(actor.into());
        r.identity_kind = kind;
        r
    }

    #[test]
    fn a_second_key_for_a_static_key_user_is_high() {
        let mut d = NewLongLivedToken::new(Params::default());
        let mut out = Vec::new();
        for i in 0..4 {
            let used = row(
                &format!("u{i}"),
                i * 60,
                Category::Auth,
                "sts.GetCallerIdentity",
                "svc-export",
                IdentityKind::StaticKey,
            );
            d.observe(&used, Phase::Learn, &mut out);
        }
        let mut create = row(
            "k1",
            1000,
            Category::ConfigChange,
            "iam.CreateAccessKey",
            "admin@corp",
            IdentityKind::Session,
        );
        create.target_name = Some("svc-export".into());
        d.observe(&create, Phase::Score, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].severity, Severity::High);
        assert_eq!(out[0].entity, "svc-export");
        assert_eq!(out[0].evidence, vec!["k1".to_owned()]);
        // A key for a person with no key and no machine behaviour is medium.
        create.event_id = "k2".into();
        create.target_name = Some("alice".into());
        d.observe(&create, Phase::Score, &mut out);
        assert_eq!(out[1].severity, Severity::Medium);
    }

    #[test]
    fn routine_rotation_is_low_and_reads_are_not_creations() {
        let mut d = NewLongLivedToken::new(Params::default());
        let mut out = Vec::new();
        for i in 0..4 {
            let pat = row(
                &format!("p{i}"),
                i * 1440,
                Category::Auth,
                "personal_access_token.create",
                "bot-rotator",
                IdentityKind::Session,
            );
            d.observe(&pat, Phase::Score, &mut out);
        }
        assert_eq!(out.last().map(|f| f.severity), Some(Severity::Low));
        let before = out.len();
        d.observe(
            &row(
                "g",
                9000,
                Category::Auth,
                "ecr.GetAuthorizationToken",
                "ci",
                IdentityKind::Session,
            ),
            Phase::Score,
            &mut out,
        );
        d.observe(
            &row(
                "k",
                9001,
                Category::ConfigChange,
                "kms.CreateKey",
                "ci",
                IdentityKind::Session,
            ),
            Phase::Score,
            &mut out,
        );
        assert_eq!(out.len(), before);
    }

    #[test]
    fn vendor_actions_are_classified() {
        let c = |a: &str| classify(&row("x", 0, Category::Auth, a, "a", IdentityKind::Session));
        assert_eq!(c("iam.CreateAccessKey"), Some(Kind::CloudAccessKey));
        assert_eq!(c("iam.GenerateCredentialReport"), None);
        assert_eq!(c("personal_access_token.create"), Some(Kind::PersonalToken));
        assert_eq!(c("public_key.create"), Some(Kind::SshOrDeployKey));
        assert_eq!(c("deploy_token.created"), Some(Kind::ProjectToken));
        assert_eq!(c("token.create-orphan"), Some(Kind::VaultToken));
        assert_eq!(c("token.create"), None);
        assert_eq!(c("sts.GetSessionToken"), None);
        assert!(
            Params {
                routine_days: 0,
                ..Params::default()
            }
            .check()
            .is_err()
        );
    }
}
