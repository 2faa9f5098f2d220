//! The row a detector sees: the normalized columns of one event, owned and
//! typed, read from Arrow batches of the `events` table by column name.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use pipewatch_schema::{ActorKind, Category, IdentityKind, RunnerHosting, Severity};

/// The columns detectors read, in the order the engine selects them.
pub(crate) const DETECTOR_COLUMNS: &[&str] = &[
    "event_id",
    "source",
    "source_event_id",
    "event_time",
    "category",
    "action",
    "outcome",
    "org",
    "repo",
    "actor",
    "actor_kind",
    "identity_kind",
    "identity_id",
    "client_address",
    "cicd_pipeline_name",
    "cicd_pipeline_run_id",
    "cicd_pipeline_task_name",
    "cicd_pipeline_task_run_id",
    "cicd_pipeline_trigger",
    "vcs_ref_head_name",
    "vcs_ref_is_default",
    "vcs_from_fork",
    "cicd_worker_name",
    "runner_hosting",
    "runner_ephemeral",
    "target_type",
    "target_name",
    "target_namespace",
    "deployment_environment_name",
    "deploy_strategy",
    "approval_state",
    "duration_ms",
    "queue_ms",
    "cpu_seconds",
    "memory_bytes",
    "egress_bytes",
    "egress_destination",
    "tool_name",
    "rule_id",
    "severity",
    "message",
    "cloud_account_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "correlation_id",
    "url_full",
];

/// One event as detectors see it. Text columns are `None` where the source
/// had nothing to say, exactly as in the lake.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: String,
    pub source: String,
    pub source_event_id: String,
    pub event_time: DateTime<Utc>,
    pub category: Category,
    pub action: String,
    pub outcome: String,
    pub org: Option<String>,
    pub repo: Option<String>,
    pub actor: Option<String>,
    pub actor_kind: Option<ActorKind>,
    pub identity_kind: IdentityKind,
    pub identity_id: Option<String>,
    pub client_address: Option<String>,
    pub cicd_pipeline_name: Option<String>,
    pub cicd_pipeline_run_id: Option<String>,
    pub cicd_pipeline_task_name: Option<String>,
    pub cicd_pipeline_task_run_id: Option<String>,
    pub cicd_pipeline_trigger: Option<String>,
    pub vcs_ref_head_name: Option<String>,
    pub vcs_ref_is_default: Option<bool>,
    pub vcs_from_fork: Option<bool>,
    pub cicd_worker_name: Option<String>,
    pub runner_hosting: Option<RunnerHosting>,
    pub runner_ephemeral: Option<bool>,
    pub target_type: Option<String>,
    pub target_name: Option<String>,
    pub target_namespace: Option<String>,
    pub deployment_environment_name: Option<String>,
    pub deploy_strategy: Option<String>,
    pub approval_state: Option<String>,
    pub duration_ms: Option<i64>,
    pub queue_ms: Option<i64>,
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<i64>,
    pub egress_bytes: Option<i64>,
    pub egress_destination: Option<String>,
    pub tool_name: Option<String>,
    pub rule_id: Option<String>,
    pub severity: Option<Severity>,
    pub message: Option<String>,
    pub cloud_account_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    pub correlation_id: Option<String>,
    pub url_full: Option<String>,
}

impl EventRow {
    /// An event with the envelope set and every optional column empty;
    /// tests and the live path build rows from it.
    pub fn new(
        event_id: impl Into<String>,
        event_time: DateTime<Utc>,
        category: Category,
        action: impl Into<String>,
    ) -> Self {
        EventRow {
            event_id: event_id.into(),
            source: String::new(),
            source_event_id: String::new(),
            event_time,
            category,
            action: action.into(),
            outcome: "unknown".into(),
            org: None,
            repo: None,
            actor: None,
            actor_kind: None,
            identity_kind: IdentityKind::Unknown,
            identity_id: None,
            client_address: None,
            cicd_pipeline_name: None,
            cicd_pipeline_run_id: None,
            cicd_pipeline_task_name: None,
            cicd_pipeline_task_run_id: None,
            cicd_pipeline_trigger: None,
            vcs_ref_head_name: None,
            vcs_ref_is_default: None,
            vcs_from_fork: None,
            cicd_worker_name: None,
            runner_hosting: None,
            runner_ephemeral: None,
            target_type: None,
            target_name: None,
            target_namespace: None,
            deployment_environment_name: None,
            deploy_strategy: None,
            approval_state: None,
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
            cloud_account_id: None,
            trace_id: None,
            span_id: None,
            parent_span_id: None,
            correlation_id: None,
            url_full: None,
        }
    }

    /// The repository, or `-` in explanations where the event has none.
    pub fn repo_or_dash(&self) -> &str {
        self.repo.as_deref().unwrap_or("-")
    }
}

/// Reads the rows of one batch of the `events` table (or a projection of
/// it). Missing columns read as empty; rows whose category is not in the
/// vocabulary are skipped, since no detector could use them.
pub fn rows_from_batch(batch: &RecordBatch) -> Vec<EventRow> {
    let text = |name: &str| -> Option<Arc<dyn Array>> {
        let column = batch.column_by_name(name)?;
        match column.data_type() {
            DataType::Utf8 => Some(column.clone()),
            DataType::Utf8View | DataType::LargeUtf8 | DataType::Dictionary(_, _) => {
                datafusion::arrow::compute::cast(column, &DataType::Utf8).ok()
            }
            _ => None,
        }
    };
    let texts: Vec<Option<Arc<dyn Array>>> = DETECTOR_COLUMNS.iter().map(|c| text(c)).collect();
    let text_col = |name: &str| -> Option<&StringArray> {
        let index = DETECTOR_COLUMNS.iter().position(|c| *c == name)?;
        texts[index].as_ref().map(|a| a.as_string::<i32>())
    };
    let s = |name: &str, row: usize| -> Option<String> {
        let array = text_col(name)?;
        (!array.is_null(row)).then(|| array.value(row).to_owned())
    };
    let int = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
    };
    let float = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
    };
    let boolean = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>().cloned())
    };
    let get_i = |a: &Option<Int64Array>, row: usize| {
        a.as_ref()
            .and_then(|a| (!a.is_null(row)).then(|| a.value(row)))
    };
    let get_f = |a: &Option<Float64Array>, row: usize| {
        a.as_ref()
            .and_then(|a| (!a.is_null(row)).then(|| a.value(row)))
    };
    let get_b = |a: &Option<BooleanArray>, row: usize| {
        a.as_ref()
            .and_then(|a| (!a.is_null(row)).then(|| a.value(row)))
    };

    let times = batch.column_by_name("event_time").and_then(|c| {
        c.as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .cloned()
    });
    let (duration, queue, memory, egress) = (
        int("duration_ms"),
        int("queue_ms"),
        int("memory_bytes"),
        int("egress_bytes"),
    );
    let cpu = float("cpu_seconds");
    let (is_default, from_fork, ephemeral) = (
        boolean("vcs_ref_is_default"),
        boolean("vcs_from_fork"),
        boolean("runner_ephemeral"),
    );

    let mut rows = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let Some(category) = s("category", row).and_then(|c| Category::parse(&c)) else {
            continue;
        };
        let Some(event_time) = times
            .as_ref()
            .filter(|t| !t.is_null(row))
            .and_then(|t| DateTime::from_timestamp_micros(t.value(row)))
        else {
            continue;
        };
        rows.push(EventRow {
            event_id: s("event_id", row).unwrap_or_default(),
            source: s("source", row).unwrap_or_default(),
            source_event_id: s("source_event_id", row).unwrap_or_default(),
            event_time,
            category,
            action: s("action", row).unwrap_or_default(),
            outcome: s("outcome", row).unwrap_or_else(|| "unknown".into()),
            org: s("org", row),
            repo: s("repo", row),
            actor: s("actor", row),
            actor_kind: s("actor_kind", row).and_then(|k| ActorKind::parse(&k)),
            identity_kind: s("identity_kind", row)
                .and_then(|k| IdentityKind::parse(&k))
                .unwrap_or(IdentityKind::Unknown),
            identity_id: s("identity_id", row),
            client_address: s("client_address", row),
            cicd_pipeline_name: s("cicd_pipeline_name", row),
            cicd_pipeline_run_id: s("cicd_pipeline_run_id", row),
            cicd_pipeline_task_name: s("cicd_pipeline_task_name", row),
            cicd_pipeline_task_run_id: s("cicd_pipeline_task_run_id", row),
            cicd_pipeline_trigger: s("cicd_pipeline_trigger", row),
            vcs_ref_head_name: s("vcs_ref_head_name", row),
            vcs_ref_is_default: get_b(&is_default, row),
            vcs_from_fork: get_b(&from_fork, row),
            cicd_worker_name: s("cicd_worker_name", row),
            runner_hosting: s("runner_hosting", row).and_then(|h| RunnerHosting::parse(&h)),
            runner_ephemeral: get_b(&ephemeral, row),
            target_type: s("target_type", row),
            target_name: s("target_name", row),
            target_namespace: s("target_namespace", row),
            deployment_environment_name: s("deployment_environment_name", row),
            deploy_strategy: s("deploy_strategy", row),
            approval_state: s("approval_state", row),
            duration_ms: get_i(&duration, row),
            queue_ms: get_i(&queue, row),
            cpu_seconds: get_f(&cpu, row),
            memory_bytes: get_i(&memory, row),
            egress_bytes: get_i(&egress, row),
            egress_destination: s("egress_destination", row),
            tool_name: s("tool_name", row),
            rule_id: s("rule_id", row),
            severity: s("severity", row).and_then(|v| Severity::parse(&v)),
            message: s("message", row),
            cloud_account_id: s("cloud_account_id", row),
            trace_id: s("trace_id", row),
            span_id: s("span_id", row),
            parent_span_id: s("parent_span_id", row),
            correlation_id: s("correlation_id", row),
            url_full: s("url_full", row),
        });
    }
    rows
}
