//! The labels of a generated dataset (`labels.json`): every injected
//! incident with its kind, time span, entity, a plain description and the
//! native ids of its evidence, plus the look-alike benign patterns that are
//! deliberately not incidents.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

use crate::sink::Sink;
use crate::{DatasetError, GenerateOptions};

macro_rules! kinds {
    ($($variant:ident => $name:literal,)+) => {
        /// Every kind of incident the generator injects.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum IncidentKind { $($variant),+ }

        impl IncidentKind {
            /// All kinds, in the order they are injected.
            pub const ALL: &'static [IncidentKind] = &[$(IncidentKind::$variant),+];

            /// The label name used in `labels.json`.
            pub fn name(self) -> &'static str {
                match self { $(IncidentKind::$variant => $name),+ }
            }
        }
    };
}

kinds! {
    OffHoursRun => "off_hours_run",
    ForkPullRequestTarget => "fork_pull_request_target",
    NonDefaultBranchDeploy => "non_default_branch_deploy",
    AccountBurst => "account_burst",
    ResourceAnomaly => "resource_anomaly",
    NewEgressDestination => "new_egress_destination",
    NewDependencyRegistry => "new_dependency_registry",
    PolicyFailureSpike => "policy_failure_spike",
    FindingSpike => "finding_spike",
    SecretNewConsumer => "secret_new_consumer",
    SecretOffHoursRead => "secret_off_hours_read",
    SecretBulkRead => "secret_bulk_read",
    SecretDeniedBurst => "secret_denied_burst",
    StaticKeyWhereOidc => "static_key_where_oidc",
    VaultRootToken => "vault_root_token",
    DeployWithoutApproval => "deploy_without_approval",
    BigBangDeploy => "big_bang_deploy",
    DeployAfterProtectionRemoved => "deploy_after_protection_removed",
    BranchProtectionRemoved => "branch_protection_removed",
    AuditLoggingDisabled => "audit_logging_disabled",
    TwofaRequirementDisabled => "twofa_requirement_disabled",
    NewSelfHostedRunner => "new_self_hosted_runner",
    NewLongLivedToken => "new_long_lived_token",
    PersistentRunnerWithSecrets => "persistent_runner_with_secrets",
}

impl Serialize for IncidentKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// One evidence record: the format and the native id a decoder puts first
/// in `source_event_id`; `file` names the file when the id alone is not
/// unique across files (Conftest, SARIF).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Evidence {
    pub(crate) format: &'static str,
    pub(crate) native_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
}

/// Evidence without a file.
pub(crate) fn ev(format: &'static str, id: impl ToString) -> Evidence {
    Evidence {
        format,
        native_id: id.to_string(),
        file: None,
    }
}

/// An injected incident.
#[derive(Debug, Clone)]
pub(crate) struct Incident {
    pub(crate) kind: IncidentKind,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) entity: String,
    pub(crate) description: String,
    pub(crate) evidence: Vec<Evidence>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Benign patterns that look odd but are normal for their entity.
const BENIGN: &[(&str, &str)] = &[
    (
        "oncall_night_maintenance",
        "The on-call SRE dispatches the ops-scripts Maintenance workflow at night a few times a week from the first day on; it reads a Vault secret. Routine for that person and workflow.",
    ),
    (
        "renovate_monday_burst",
        "renovate[bot] clones and pushes a branch to most repositories within ~30 minutes every Monday around 06:00 UTC.",
    ),
    (
        "cold_start_repository",
        "acme/fraud-scoring is created mid-period (repo.create, protection, Renovate onboarding); its first runs, secrets and deploys have no history.",
    ),
    (
        "scheduled_night_runs",
        "CodeQL (Wednesdays ~03:30 UTC), nightly ETL and training, the legacy report export (Mon/Thu 02:30 UTC, static IAM key) and backup sync (Sundays) run at night on schedule.",
    ),
    (
        "fork_pull_requests_on_public_repositories",
        "Outside contributors open pull requests from forks on the public repositories; the Labeler workflow runs on pull_request_target for every pull request there.",
    ),
];

/// Adds `labels.json` to the sink.
pub(crate) fn write(
    sink: &mut Sink,
    options: &GenerateOptions,
    incidents: &[Incident],
) -> Result<(), DatasetError> {
    let items: Vec<serde_json::Value> = incidents
        .iter()
        .enumerate()
        .map(|(i, inc)| {
            json!({
                "id": format!("inc-{:04}", i + 1),
                "kind": inc.kind,
                "start": rfc3339(inc.start),
                "end": rfc3339(inc.end),
                "entity": inc.entity,
                "description": inc.description,
                "evidence": inc.evidence,
            })
        })
        .collect();
    let benign: Vec<serde_json::Value> = BENIGN
        .iter()
        .map(|(kind, description)| json!({"kind": kind, "description": description}))
        .collect();
    let doc = json!({
        "generator": {
            "seed": options.seed,
            "days": options.days,
            "start": options.start.format("%Y-%m-%d").to_string(),
            "scale": options.scale,
        },
        "incidents": items,
        "benign": benign,
    });
    sink.document("labels.json", &doc, incidents.len() as u64)
}
