//! The audit log: every login, denial, query, export and alert action, with
//! who, from where and the outcome, in the control database. Entries are
//! only ever added; admins read them on the audit page.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::users::UserError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_log (
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    address TEXT,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_by_time ON audit_log (at);
";

/// One audited act.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The user, or the name tried at a failed login.
    pub actor: String,
    pub address: Option<String>,
    /// `login`, `logout`, `denied`, `sql`, `export`, `alert.acknowledge`, …
    pub action: String,
    /// What it was done to: a path, an alert id, a user.
    pub target: Option<String>,
    /// `ok`, `refused`, `failed`.
    pub outcome: String,
    pub detail: Option<String>,
}

/// Which entries to read.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub limit: usize,
}

/// The audit log of a control database.
#[derive(Debug)]
pub struct AuditLog {
    connection: Connection,
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creating if needed) the audit log of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, UserError> {
        let (connection, path) = crate::users::open_control_db(data_dir, SCHEMA)?;
        Ok(AuditLog { connection, path })
    }

    fn error(&self, e: rusqlite::Error) -> UserError {
        crate::users::db_error(&self.path, e)
    }

    /// Appends one entry.
    pub fn record(&self, entry: &AuditEntry) -> Result<(), UserError> {
        self.connection
            .execute(
                "INSERT INTO audit_log VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    entry.at.timestamp_micros(),
                    entry.actor,
                    entry.address,
                    entry.action,
                    entry.target,
                    entry.outcome,
                    entry.detail
                ],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The newest entries matching `filter`, newest first.
    pub fn recent(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, UserError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT at, actor, address, action, target, outcome, detail FROM audit_log
                 WHERE (?1 IS NULL OR actor = ?1) AND (?2 IS NULL OR action = ?2)
                 ORDER BY at DESC, rowid DESC LIMIT ?3",
            )
            .map_err(|e| self.error(e))?;
        let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
        let rows = statement
            .query_map(params![filter.actor, filter.action, limit], |row| {
                Ok(AuditEntry {
                    at: DateTime::from_timestamp_micros(row.get(0)?).unwrap_or_default(),
                    actor: row.get(1)?,
                    address: row.get(2)?,
                    action: row.get(3)?,
                    target: row.get(4)?,
                    outcome: row.get(5)?,
                    detail: row.get(6)?,
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }
}

/// The name admins query the audit log by in SQL (`audit_log` is the lake's
/// view of audited events from the sources).
pub const AUDIT_TABLE: &str = "pipewatch_audit";

/// The whole audit log as one Arrow batch of the [`AUDIT_TABLE`] table.
pub fn audit_batch(
    entries: &[AuditEntry],
) -> Result<datafusion::arrow::record_batch::RecordBatch, datafusion::arrow::error::ArrowError> {
    use std::sync::Arc;

    use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let schema = Schema::new(vec![
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        text("actor", false),
        text("address", true),
        text("action", false),
        text("target", true),
        text("outcome", false),
        text("detail", true),
    ]);
    let strings = |f: &dyn Fn(&AuditEntry) -> Option<&str>| -> ArrayRef {
        Arc::new(entries.iter().map(f).collect::<StringArray>())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from(
                entries
                    .iter()
                    .map(|e| e.at.timestamp_micros())
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        strings(&|e| Some(e.actor.as_str())),
        strings(&|e| e.address.as_deref()),
        strings(&|e| Some(e.action.as_str())),
        strings(&|e| e.target.as_deref()),
        strings(&|e| Some(e.outcome.as_str())),
        strings(&|e| e.detail.as_deref()),
    ];
    datafusion::arrow::record_batch::RecordBatch::try_new(Arc::new(schema), columns)
}
