//! Table and view names: the SQL surface analysts and tools rely on.

use crate::Category;

/// The wide table holding every normalized event.
pub const EVENTS: &str = "events";

/// One view per category, so SQL reads naturally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CategoryView {
    /// The view's name.
    pub name: &'static str,
    /// The categories it selects.
    pub categories: &'static [Category],
    /// What it holds, for help output.
    pub about: &'static str,
}

/// Every category view.
pub const CATEGORY_VIEWS: &[CategoryView] = &[
    CategoryView {
        name: "pipeline_runs",
        categories: &[Category::PipelineRun],
        about: "workflow runs and pipelines",
    },
    CategoryView {
        name: "pipeline_jobs",
        categories: &[Category::PipelineJob],
        about: "jobs with their runners, durations and resources",
    },
    CategoryView {
        name: "secret_access",
        categories: &[Category::SecretAccess],
        about: "secret-store and credential reads, writes and denials",
    },
    CategoryView {
        name: "deployments",
        categories: &[Category::Deployment],
        about: "deployments, statuses, approvals and syncs",
    },
    CategoryView {
        name: "audit_log",
        categories: &[Category::ConfigChange, Category::Auth, Category::CodeChange],
        about: "configuration changes, authentication and code pushes",
    },
    CategoryView {
        name: "findings",
        categories: &[Category::Finding],
        about: "security scanner findings (SARIF)",
    },
    CategoryView {
        name: "policy_results",
        categories: &[Category::PolicyResult],
        about: "policy evaluations (Conftest, OPA, admission controllers)",
    },
    CategoryView {
        name: "egress",
        categories: &[Category::Egress],
        about: "network egress from jobs and workloads",
    },
    CategoryView {
        name: "attestations",
        categories: &[Category::Attestation],
        about: "artifact signatures and build provenance (Sigstore, SLSA)",
    },
];

/// The dead-letter table: records that could not be decoded.
pub const DEAD_LETTERS: &str = "dead_letters";

/// Arrow schema of the dead-letter store's NDJSON lines.
pub fn dead_letter_schema() -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Fields, Schema};
    let position = Fields::from(vec![
        Field::new("kind", DataType::Utf8, true),
        Field::new("at", DataType::Int64, true),
    ]);
    std::sync::Arc::new(Schema::new(vec![
        Field::new("stored_at", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("origin", DataType::Utf8, true),
        Field::new("position", DataType::Struct(position), true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, true),
        Field::new("raw_sha256", DataType::Utf8, true),
        Field::new("sample", DataType::Utf8, true),
    ]))
}

/// The alerts table: what the detectors raised, grouped, with its status.
pub const ALERTS: &str = "alerts";

/// Schema of the `alerts` table as SQL sees it.
pub fn alerts_schema() -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    std::sync::Arc::new(Schema::new(vec![
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("detector", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("created_at", time(), false),
        Field::new("updated_at", time(), false),
        Field::new("event_time", time(), false),
        Field::new("last_event_time", time(), false),
        Field::new("title", DataType::Utf8, false),
        Field::new("explanation", DataType::Utf8, false),
        Field::new("entity", DataType::Utf8, false),
        Field::new(
            "evidence_event_ids",
            DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Utf8,
                true,
            ))),
            false,
        ),
        Field::new("findings", DataType::Int64, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("status_reason", DataType::Utf8, true),
        Field::new("suppressed_until", time(), true),
        Field::new("category", DataType::Utf8, true),
        Field::new("organisation", DataType::Utf8, true),
        Field::new("repository", DataType::Utf8, true),
        Field::new("assignee", DataType::Utf8, true),
    ]))
}

/// The notification outbox, one row per message to a destination.
pub const NOTIFICATIONS: &str = "notifications";

/// Arrow schema of the `notifications` table.
pub fn notifications_schema() -> arrow_schema::SchemaRef {
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let time = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    std::sync::Arc::new(Schema::new(vec![
        Field::new("notification_id", DataType::Int64, false),
        Field::new("alert_id", DataType::Utf8, true),
        Field::new("route", DataType::Utf8, false),
        Field::new("destination", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("action", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("created_at", time(), false),
        Field::new("due_at", time(), false),
        Field::new("attempts", DataType::Int64, false),
        Field::new("first_attempt_at", time(), true),
        Field::new("last_attempt_at", time(), true),
        Field::new("delivered_at", time(), true),
        Field::new("response_status", DataType::Int64, true),
        Field::new("last_error", DataType::Utf8, true),
        Field::new("digest_id", DataType::Int64, true),
        Field::new(
            "digest_alerts",
            DataType::List(std::sync::Arc::new(Field::new(
                "item",
                DataType::Utf8,
                true,
            ))),
            false,
        ),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_a_view() {
        for category in Category::ALL {
            assert!(
                CATEGORY_VIEWS
                    .iter()
                    .any(|v| v.categories.contains(category)),
                "{category} has no view"
            );
        }
    }
}
