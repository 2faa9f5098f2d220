//! Plain records of what happened — a pipeline run, its jobs, a runner
//! assignment, an outbound call, a deployment, a Vault token — shared by
//! the simulation (which decides them) and the format writers (which
//! render them natively).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::org::Actor;

/// One pipeline run (GitHub workflow run or GitLab pipeline).
#[derive(Debug, Clone)]
pub(crate) struct RunFact {
    pub(crate) repo: usize,
    pub(crate) workflow: usize,
    pub(crate) id: u64,
    pub(crate) number: u64,
    pub(crate) attempt: u32,
    /// GitHub `event` (push, pull_request, schedule, …) or GitLab `source`.
    pub(crate) event: &'static str,
    pub(crate) branch: String,
    pub(crate) tag: bool,
    pub(crate) sha: String,
    pub(crate) before_sha: String,
    pub(crate) message: String,
    pub(crate) actor: Actor,
    pub(crate) author_name: String,
    pub(crate) author_email: String,
    /// Owner of the fork the code comes from, for fork pull requests.
    pub(crate) fork: Option<Actor>,
    pub(crate) pr_number: Option<u64>,
    pub(crate) check_suite_id: u64,
    pub(crate) created: DateTime<Utc>,
    pub(crate) started: DateTime<Utc>,
    pub(crate) completed: DateTime<Utc>,
    pub(crate) conclusion: &'static str,
    pub(crate) trace_id: String,
    pub(crate) span_id: String,
}

/// Where a job ran.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RunnerAssign {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) group_id: u64,
    pub(crate) group_name: String,
    /// Labels (GitHub) or tags (GitLab).
    pub(crate) labels: Vec<String>,
    pub(crate) ip: String,
    pub(crate) hosted: bool,
    pub(crate) ephemeral: bool,
    /// GitLab `runner_type` (instance_type, group_type, project_type).
    pub(crate) gitlab_type: &'static str,
}

/// One outbound call of a job (an OTLP CLIENT span).
#[derive(Debug, Clone)]
pub(crate) struct ClientCall {
    pub(crate) host: String,
    pub(crate) method: &'static str,
    pub(crate) start: DateTime<Utc>,
    pub(crate) end: DateTime<Utc>,
    pub(crate) span_id: String,
    pub(crate) bytes_out: u64,
    pub(crate) status: u16,
}

/// One job of a run.
#[derive(Debug, Clone)]
pub(crate) struct JobFact {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) created: DateTime<Utc>,
    pub(crate) started: DateTime<Utc>,
    pub(crate) completed: DateTime<Utc>,
    /// success, failure, cancelled, skipped.
    pub(crate) conclusion: &'static str,
    /// Requested labels (GitHub `labels`).
    pub(crate) labels: Vec<String>,
    pub(crate) runner: Option<RunnerAssign>,
    pub(crate) stage: String,
    pub(crate) steps: Vec<&'static str>,
    pub(crate) env: Option<&'static str>,
    pub(crate) cpu_s: f64,
    pub(crate) mem_bytes: u64,
    pub(crate) egress_bytes: u64,
    pub(crate) span_id: String,
    pub(crate) clients: Vec<ClientCall>,
}

/// An environment approval.
#[derive(Debug, Clone)]
pub(crate) struct ReviewFact {
    pub(crate) requested: DateTime<Utc>,
    pub(crate) approved: DateTime<Utc>,
    pub(crate) reviewer: Actor,
}

/// A GitHub deployment and its statuses.
#[derive(Debug, Clone)]
pub(crate) struct DeployFact {
    pub(crate) id: u64,
    pub(crate) env: &'static str,
    pub(crate) strategy: &'static str,
    pub(crate) creator: Actor,
    pub(crate) created: DateTime<Utc>,
    /// (deployment_status.id, state, time).
    pub(crate) statuses: Vec<(u64, &'static str, DateTime<Utc>)>,
    pub(crate) review: Option<ReviewFact>,
}

/// A Vault token as the audit device shows it.
#[derive(Debug, Clone)]
pub(crate) struct VaultToken {
    pub(crate) display_name: String,
    pub(crate) policies: Vec<String>,
    pub(crate) metadata: Option<BTreeMap<String, String>>,
    pub(crate) client_token: String,
    pub(crate) accessor: String,
    pub(crate) entity_id: String,
    pub(crate) ttl: u64,
    pub(crate) issue_time: DateTime<Utc>,
}
