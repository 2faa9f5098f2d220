//! The normalized event: one vendor-neutral record every decoder produces
//! and every detector reads, plus the closed vocabularies of its classifying
//! columns (category, identity kind, runner hosting, severity).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{EventId, Raw};

/// Declares a closed vocabulary stored as a lower-case string column.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored in the lake.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses the stored spelling.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What kind of fact an event records; also the lake's first partition key.
    Category {
        /// A whole pipeline execution (workflow run, GitLab pipeline, root CI span).
        PipelineRun => "pipeline_run",
        /// One job or task inside a run.
        PipelineJob => "pipeline_job",
        /// A read, write, lease or denial on a secret or credential store.
        SecretAccess => "secret_access",
        /// A deployment, its status changes, approvals and syncs.
        Deployment => "deployment",
        /// A change to configuration: protections, permissions, hooks, clusters.
        ConfigChange => "config_change",
        /// Authentication and session events, token issuance, interactive access.
        Auth => "auth",
        /// A security scanner finding (SARIF).
        Finding => "finding",
        /// A policy evaluation result (Conftest, OPA, admission controllers).
        PolicyResult => "policy_result",
        /// Network egress observed from a job or workload.
        Egress => "egress",
        /// A change to source code (push, tag, merge).
        CodeChange => "code_change",
        /// A signature or provenance attestation over a build artifact (Sigstore, SLSA).
        Attestation => "attestation",
    }
}

vocabulary! {
    /// How the acting identity proved who it is; the OIDC-vs-static metrics use it.
    IdentityKind {
        /// Short-lived federated identity (GitHub/GitLab OIDC, web identity, JWT auth).
        Oidc => "oidc",
        /// A long-lived static key (AWS `AKIA…` access key, Vault userpass/approle secret).
        StaticKey => "static_key",
        /// A bearer token (PAT, deploy/project token, Vault token, service-account token).
        Token => "token",
        /// An interactive or temporary session (console login, `ASIA…` session keys).
        Session => "session",
        /// An installed application (GitHub App installation token).
        App => "app",
        /// Not said by the source.
        Unknown => "unknown",
    }
}

vocabulary! {
    /// Who operates the machine a job ran on.
    RunnerHosting {
        /// The CI vendor's own fleet (GitHub-hosted, GitLab SaaS shared runners).
        Hosted => "hosted",
        /// A machine the organisation runs itself.
        SelfHosted => "self_hosted",
    }
}

vocabulary! {
    /// Normalized severity shared by findings, policy results and alerts.
    Severity {
        Info => "info",
        Low => "low",
        Medium => "medium",
        High => "high",
        Critical => "critical",
    }
}

vocabulary! {
    /// What kind of principal acted.
    ActorKind {
        /// A person.
        User => "user",
        /// An automation account or app (`[bot]`, service accounts, CI identities).
        Bot => "bot",
        /// A machine identity (role session, workload).
        Service => "service",
    }
}

/// One normalized event. Optional fields are `None` where the source has
/// nothing to say; column names follow the OpenTelemetry CI/CD and VCS
/// conventions with dots replaced by underscores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    // --- envelope ---
    /// Deterministic id derived from `source` and `source_event_id`.
    pub event_id: EventId,
    /// Name of the native format the event was decoded from.
    pub source: String,
    /// The native id (first), with a `:suffix` where one object yields several records.
    pub source_event_id: String,
    /// When the fact happened, UTC.
    pub event_time: DateTime<Utc>,
    pub category: Category,
    /// Native action, dotted (`workflow_job.completed`, `secret.read`, `sts.AssumeRoleWithWebIdentity`).
    pub action: String,
    /// `success`, `failure`, `warning`, `cancelled`, `skipped`, `denied`, `pending`, `in_progress` or `unknown`.
    pub outcome: String,

    // --- who ---
    pub org: Option<String>,
    pub repo: Option<String>,
    pub actor: Option<String>,
    pub actor_kind: Option<ActorKind>,
    pub identity_kind: IdentityKind,
    /// The credential used (access key id, token accessor, OIDC subject), never a secret value.
    pub identity_id: Option<String>,
    pub client_address: Option<String>,
    pub user_agent_original: Option<String>,

    // --- pipeline and VCS ---
    pub cicd_pipeline_name: Option<String>,
    pub cicd_pipeline_run_id: Option<String>,
    pub cicd_pipeline_run_attempt: Option<i64>,
    pub cicd_pipeline_task_name: Option<String>,
    pub cicd_pipeline_task_run_id: Option<String>,
    /// What started the run (`push`, `pull_request_target`, `schedule`, `workflow_dispatch`, …).
    pub cicd_pipeline_trigger: Option<String>,
    pub vcs_ref_head_name: Option<String>,
    pub vcs_ref_head_revision: Option<String>,
    /// Whether the ref is the repository's default branch, where the source says.
    pub vcs_ref_is_default: Option<bool>,
    /// Whether the change came from a fork of the repository.
    pub vcs_from_fork: Option<bool>,

    // --- worker (runner) ---
    pub cicd_worker_name: Option<String>,
    pub cicd_worker_id: Option<String>,
    pub cicd_worker_group: Option<String>,
    pub cicd_worker_labels: Vec<String>,
    pub runner_hosting: Option<RunnerHosting>,
    /// `Some(true)` for single-use runners; `None` where unknown.
    pub runner_ephemeral: Option<bool>,

    // --- target ---
    /// Kind of object acted on (`secret`, `environment`, `branch_protection`, `pod`, …).
    pub target_type: Option<String>,
    pub target_name: Option<String>,
    pub target_namespace: Option<String>,
    pub deployment_environment_name: Option<String>,
    /// `canary`, `blue_green`, `rolling`, `recreate`, `all_at_once`.
    pub deploy_strategy: Option<String>,
    /// `approved`, `rejected`, `pending`, `not_required`.
    pub approval_state: Option<String>,

    // --- timing ---
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub queue_ms: Option<i64>,

    // --- resources and egress ---
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<i64>,
    pub egress_bytes: Option<i64>,
    pub egress_destination: Option<String>,

    // --- findings and policy ---
    pub tool_name: Option<String>,
    pub rule_id: Option<String>,
    pub severity: Option<Severity>,
    pub message: Option<String>,
    pub code_location: Option<String>,

    // --- cloud ---
    pub cloud_provider: Option<String>,
    pub cloud_account_id: Option<String>,
    pub cloud_region: Option<String>,

    // --- correlation ---
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    /// A cross-source join key (request id, delivery id, sync revision).
    pub correlation_id: Option<String>,
    pub url_full: Option<String>,

    /// The native record, after redaction.
    pub raw: Raw,
}

impl Event {
    /// A new event with the envelope set and every optional column empty.
    /// The id is derived here so no decoder can get it wrong.
    pub fn new(
        source: &str,
        source_event_id: impl Into<String>,
        event_time: DateTime<Utc>,
        category: Category,
        action: impl Into<String>,
        raw: impl Into<Raw>,
    ) -> Self {
        let source_event_id = source_event_id.into();
        Event {
            event_id: EventId::derive(source, &source_event_id),
            source: source.to_owned(),
            source_event_id,
            event_time,
            category,
            action: action.into(),
            outcome: "unknown".to_owned(),
            org: None,
            repo: None,
            actor: None,
            actor_kind: None,
            identity_kind: IdentityKind::Unknown,
            identity_id: None,
            client_address: None,
            user_agent_original: None,
            cicd_pipeline_name: None,
            cicd_pipeline_run_id: None,
            cicd_pipeline_run_attempt: None,
            cicd_pipeline_task_name: None,
            cicd_pipeline_task_run_id: None,
            cicd_pipeline_trigger: None,
            vcs_ref_head_name: None,
            vcs_ref_head_revision: None,
            vcs_ref_is_default: None,
            vcs_from_fork: None,
            cicd_worker_name: None,
            cicd_worker_id: None,
            cicd_worker_group: None,
            cicd_worker_labels: Vec::new(),
            runner_hosting: None,
            runner_ephemeral: None,
            target_type: None,
            target_name: None,
            target_namespace: None,
            deployment_environment_name: None,
            deploy_strategy: None,
            approval_state: None,
            start_time: None,
            end_time: None,
            duration_ms: None,
            queue_ms: None,
            cpu_seconds: None,
            memory_bytes: None,
            egress_bytes: None,
            egress_destination: None,
            tool_name: None,
            rule_id: None,
            severity: None,
            message: None,
            code_location: None,
            cloud_provider: None,
            cloud_account_id: None,
            cloud_region: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            correlation_id: None,
            url_full: None,
            raw: raw.into(),
        }
    }

    /// Sets `duration_ms` from start and end when both are known and the source gave no duration.
    pub fn fill_duration(&mut self) {
        if self.duration_ms.is_none()
            && let (Some(start), Some(end)) = (self.start_time, self.end_time)
        {
            let ms = (end - start).num_milliseconds();
            if ms >= 0 {
                self.duration_ms = Some(ms);
            }
        }
    }

    /// Applies `f` to every free-text string column (not the enums), so
    /// redaction cannot forget one when a column is added.
    pub fn for_each_text_mut(&mut self, mut f: impl FnMut(&mut String)) {
        f(&mut self.source_event_id);
        f(&mut self.action);
        f(&mut self.outcome);
        let optional = [
            &mut self.org,
            &mut self.repo,
            &mut self.actor,
            &mut self.identity_id,
            &mut self.client_address,
            &mut self.user_agent_original,
            &mut self.cicd_pipeline_name,
            &mut self.cicd_pipeline_run_id,
            &mut self.cicd_pipeline_task_name,
            &mut self.cicd_pipeline_task_run_id,
            &mut self.cicd_pipeline_trigger,
            &mut self.vcs_ref_head_name,
            &mut self.vcs_ref_head_revision,
            &mut self.cicd_worker_name,
            &mut self.cicd_worker_id,
            &mut self.cicd_worker_group,
            &mut self.target_type,
            &mut self.target_name,
            &mut self.target_namespace,
            &mut self.deployment_environment_name,
            &mut self.deploy_strategy,
            &mut self.approval_state,
            &mut self.egress_destination,
            &mut self.tool_name,
            &mut self.rule_id,
            &mut self.message,
            &mut self.code_location,
            &mut self.cloud_provider,
            &mut self.cloud_account_id,
            &mut self.cloud_region,
            &mut self.trace_id,
            &mut self.span_id,
            &mut self.parent_span_id,
            &mut self.correlation_id,
            &mut self.url_full,
        ];
        for value in optional.into_iter().flatten() {
            f(value);
        }
        for label in &mut self.cicd_worker_labels {
            f(label);
        }
    }
}
