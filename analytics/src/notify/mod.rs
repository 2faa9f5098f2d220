//! Notifications: routes pick which alerts go where; the outbox in the
//! control database holds every message until its destination accepted it
//! or refused it for good; deliverers send to Slack, PagerDuty Events v2 and
//! signed webhooks at each provider's pace, folding storms into digests.

pub mod config;
mod deliver;
pub mod message;
pub(crate) mod outbox;

use std::path::Path;

pub use config::{
    DeliverySettings, Destination, DestinationConfig, DestinationKind, NotifyConfig,
    PAGERDUTY_EVENTS_URL, RouteConfig, Routing, SecretText, Target,
};
pub use deliver::{
    Answer, DeliveryObserver, NoObserver, Notifier, NotifierHandle, TestResult, control_db,
    http_client, send, test_route,
};
pub use message::{Content, Request, Scrub, dedup_key, verify_webhook, webhook_signature};
pub use outbox::{Action, NotificationRecord};

/// Errors of routing and delivery.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The `[notify]` configuration is wrong; the message names the setting.
    #[error("{0}")]
    Config(String),
    /// The control database failed.
    #[error("control database {path}: {detail}")]
    Database { path: String, detail: String },
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Http(String),
}

impl NotifyError {
    fn database(path: &Path, e: rusqlite::Error) -> Self {
        NotifyError::Database {
            path: path.display().to_string(),
            detail: e.to_string(),
        }
    }
}

/// Every notification in the control database of `data_dir`, oldest first
/// (empty when there is none).
pub fn notifications(data_dir: &Path) -> Result<Vec<NotificationRecord>, NotifyError> {
    read_notifications(data_dir, None)
}

/// The notifications of one alert (its own and the digests it went out
/// in), oldest first.
pub fn notifications_of_alert(
    data_dir: &Path,
    alert_id: &str,
) -> Result<Vec<NotificationRecord>, NotifyError> {
    read_notifications(data_dir, Some(alert_id))
}

fn read_notifications(
    data_dir: &Path,
    alert_id: Option<&str>,
) -> Result<Vec<NotificationRecord>, NotifyError> {
    let path = control_db(data_dir);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let connection =
        rusqlite::Connection::open(&path).map_err(|e| NotifyError::database(&path, e))?;
    connection
        .execute_batch("PRAGMA busy_timeout = 5000;")
        .map_err(|e| NotifyError::database(&path, e))?;
    outbox::create(&connection).map_err(|e| NotifyError::database(&path, e))?;
    outbox::list(&connection, alert_id).map_err(|e| NotifyError::database(&path, e))
}

/// The notifications as one Arrow batch of the `notifications` table.
pub fn notifications_batch(
    records: &[NotificationRecord],
) -> Result<datafusion::arrow::record_batch::RecordBatch, NotifyError> {
    use datafusion::arrow::array::{
        ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
    };
    use std::sync::Arc;
    type Time = Option<chrono::DateTime<chrono::Utc>>;
    let text = |f: &dyn Fn(&NotificationRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from(records.iter().map(f).collect::<Vec<_>>()))
    };
    let time = |f: &dyn Fn(&NotificationRecord) -> Time| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(
                records
                    .iter()
                    .map(|r| f(r).map(|t| t.timestamp_micros()))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        )
    };
    let number = |f: &dyn Fn(&NotificationRecord) -> Option<i64>| -> ArrayRef {
        Arc::new(Int64Array::from(records.iter().map(f).collect::<Vec<_>>()))
    };
    let mut digest = ListBuilder::new(StringBuilder::new());
    for record in records {
        for id in &record.digest_alerts {
            digest.values().append_value(id);
        }
        digest.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        number(&|r| Some(r.notification_id)),
        text(&|r| r.alert_id.as_deref()),
        text(&|r| Some(&r.route)),
        text(&|r| Some(&r.destination)),
        text(&|r| Some(&r.kind)),
        text(&|r| Some(&r.action)),
        text(&|r| Some(&r.status)),
        time(&|r| Some(r.created_at)),
        time(&|r| Some(r.due_at)),
        number(&|r| Some(r.attempts)),
        time(&|r| r.first_attempt_at),
        time(&|r| r.last_attempt_at),
        time(&|r| r.delivered_at),
        number(&|r| r.response_status),
        text(&|r| r.last_error.as_deref()),
        number(&|r| r.digest_id),
        Arc::new(digest.finish()),
    ];
    datafusion::arrow::record_batch::RecordBatch::try_new(
        pipewatch_schema::tables::notifications_schema(),
        columns,
    )
    .map_err(|e| NotifyError::Config(format!("notifications table: {e}")))
}
