//! The webhook delivery log: which delivery ids (`X-GitHub-Delivery`,
//! GitLab's idempotency key) have been stored, kept in the control database
//! so a redelivery is answered without storing anything, also after a
//! restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use crate::IngestError;

/// The control database's file name in the data directory.
pub const CONTROL_DB: &str = "control.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    source      TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    stored_at   TEXT NOT NULL,
    events      INTEGER NOT NULL,
    PRIMARY KEY (source, delivery_id)
);";

/// Delivery ids already stored, per webhook source.
#[derive(Debug)]
pub struct DeliveryLog {
    connection: Mutex<Connection>,
    path: PathBuf,
}

impl DeliveryLog {
    /// Opens (or creates) the log in `data_dir`'s control database.
    pub fn open(data_dir: &Path) -> Result<Self, IngestError> {
        let path = data_dir.join(CONTROL_DB);
        let db = |e: rusqlite::Error| IngestError::Config(format!("{}: {e}", path.display()));
        let connection = Connection::open(&path).map_err(db)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
            )
            .map_err(db)?;
        connection.execute_batch(SCHEMA).map_err(db)?;
        Ok(DeliveryLog {
            connection: Mutex::new(connection),
            path,
        })
    }

    fn error(&self, e: impl std::fmt::Display) -> IngestError {
        IngestError::Config(format!("{}: {e}", self.path.display()))
    }

    /// When `delivery_id` from `source` was stored, if it was.
    pub fn stored_at(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> Result<Option<DateTime<Utc>>, IngestError> {
        let connection = self.connection.lock().map_err(|e| self.error(e))?;
        let at: Option<String> = connection
            .query_row(
                "SELECT stored_at FROM webhook_deliveries WHERE source = ?1 AND delivery_id = ?2",
                params![source, delivery_id],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        Ok(at
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)))
    }

    /// Records that `delivery_id`'s events are durable.
    pub fn record(
        &self,
        source: &str,
        delivery_id: &str,
        events: usize,
        at: DateTime<Utc>,
    ) -> Result<(), IngestError> {
        let connection = self.connection.lock().map_err(|e| self.error(e))?;
        connection
            .execute(
                "INSERT OR IGNORE INTO webhook_deliveries (source, delivery_id, stored_at, events)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    source,
                    delivery_id,
                    at.to_rfc3339(),
                    i64::try_from(events).unwrap_or(i64::MAX)
                ],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_delivery_is_known_after_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let at = Utc::now();
        {
            let log = DeliveryLog::open(dir.path()).expect("open");
            assert_eq!(log.stored_at("github", "abc").expect("query"), None);
            log.record("github", "abc", 3, at).expect("record");
            log.record("github", "abc", 3, at)
                .expect("recording twice is harmless");
        }
        let log = DeliveryLog::open(dir.path()).expect("reopen");
        let stored = log.stored_at("github", "abc").expect("query");
        assert_eq!(stored.map(|t| t.timestamp()), Some(at.timestamp()));
        assert_eq!(log.stored_at("gitlab", "abc").expect("query"), None);
    }
}
