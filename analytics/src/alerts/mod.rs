//! Alerts and their lifecycle: findings grouped per detector and entity,
//! stored in the control-plane SQLite database with every state change
//! (who, when, why), and exposed to SQL as the `alerts` table.

mod store;

use chrono::{DateTime, Utc};
use pipewatch_schema::Severity;

pub use store::{AlertFilter, AlertStore, Assignee, CONTROL_DB, RecordSummary, alerts_batch};
pub(crate) use store::{from_micros, micros, read_alert};

/// Errors of the alert store.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The control database failed.
    #[error("control database {path}: {detail}")]
    Database { path: String, detail: String },
    /// No alert has that id.
    #[error("no alert {0}")]
    NotFound(String),
    /// The status change is not allowed from the current status.
    #[error("alert {alert_id} is {from}; it cannot become {to}")]
    Transition {
        alert_id: String,
        from: AlertStatus,
        to: AlertStatus,
    },
    /// A change that needs more information (a reason, an expiry).
    #[error("{0}")]
    Incomplete(String),
    /// Building the SQL table failed.
    #[error("alerts table: {0}")]
    Arrow(String),
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// Raised, nobody has looked yet.
    Open,
    /// Someone is on it.
    Acknowledged,
    /// Handled.
    Resolved,
    /// Silenced with a reason until an expiry; new findings about the same
    /// entity join it quietly.
    Suppressed,
}

impl AlertStatus {
    /// Every status.
    pub const ALL: [AlertStatus; 4] = [
        AlertStatus::Open,
        AlertStatus::Acknowledged,
        AlertStatus::Resolved,
        AlertStatus::Suppressed,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Open => "open",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
            AlertStatus::Suppressed => "suppressed",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether an alert may move from `self` to `to`.
    pub fn can_become(self, to: AlertStatus) -> bool {
        use AlertStatus::*;
        matches!(
            (self, to),
            (Open, Acknowledged | Resolved | Suppressed)
                | (Acknowledged, Resolved | Suppressed | Open)
                | (Suppressed, Open | Resolved)
                | (Resolved, Open)
        )
    }
}

impl std::fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One alert: one or more findings of one detector about one entity.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alert {
    pub alert_id: String,
    pub detector: String,
    pub severity: Severity,
    pub score: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Time of the first evidence event.
    pub event_time: DateTime<Utc>,
    /// Time of the latest evidence event.
    pub last_event_time: DateTime<Utc>,
    pub title: String,
    /// Expected, seen, how unusual — of the most unusual finding.
    pub explanation: String,
    pub entity: String,
    pub evidence_event_ids: Vec<String>,
    /// Findings grouped into this alert.
    pub findings: i64,
    pub status: AlertStatus,
    pub status_reason: Option<String>,
    pub suppressed_until: Option<DateTime<Utc>>,
    /// Organisation, repository and category of the event that raised it.
    pub scope: crate::detect::FindingScope,
    /// The user working on it.
    pub assignee: Option<String>,
}

/// A recorded status change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StateChange {
    pub alert_id: String,
    pub changed_at: DateTime<Utc>,
    /// Who made the change (a user, or `pipewatch` for expiries).
    pub actor: String,
    pub from: AlertStatus,
    pub to: AlertStatus,
    pub reason: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}
