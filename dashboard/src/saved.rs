//! Saved SQL queries shared by the team: a name, the statement, who saved it
//! and when, in the control database.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use crate::users::UserError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS saved_queries (
    query_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    sql TEXT NOT NULL,
    owner TEXT NOT NULL,
    saved_at INTEGER NOT NULL
);
";

/// Longest name and statement kept.
const MAX_NAME_CHARS: usize = 120;
const MAX_SQL_CHARS: usize = 20_000;

/// One saved query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedQuery {
    pub query_id: i64,
    pub name: String,
    pub sql: String,
    pub owner: String,
    pub saved_at: DateTime<Utc>,
}

/// The saved queries of a control database.
#[derive(Debug)]
pub struct SavedQueries {
    connection: Connection,
    path: PathBuf,
}

impl SavedQueries {
    pub fn open(data_dir: &Path) -> Result<Self, UserError> {
        let (connection, path) = crate::users::open_control_db(data_dir, SCHEMA)?;
        Ok(SavedQueries { connection, path })
    }

    fn error(&self, e: rusqlite::Error) -> UserError {
        crate::users::db_error(&self.path, e)
    }

    /// Saves a query under `name`; both must be non-empty and not huge.
    pub fn save(
        &self,
        name: &str,
        sql: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<SavedQuery, UserError> {
        let (name, sql) = (name.trim(), sql.trim());
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
            return Err(UserError::Invalid(format!(
                "a saved query needs a name of 1 to {MAX_NAME_CHARS} characters"
            )));
        }
        if sql.is_empty() || sql.chars().count() > MAX_SQL_CHARS {
            return Err(UserError::Invalid(format!(
                "a saved query needs a statement of 1 to {MAX_SQL_CHARS} characters"
            )));
        }
        self.connection
            .execute(
                "INSERT INTO saved_queries (name, sql, owner, saved_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, sql, owner, now.timestamp_micros()],
            )
            .map_err(|e| self.error(e))?;
        Ok(SavedQuery {
            query_id: self.connection.last_insert_rowid(),
            name: name.to_owned(),
            sql: sql.to_owned(),
            owner: owner.to_owned(),
            saved_at: now,
        })
    }

    /// Every saved query, by name.
    pub fn list(&self) -> Result<Vec<SavedQuery>, UserError> {
        let mut statement = self
            .connection
            .prepare("SELECT query_id, name, sql, owner, saved_at FROM saved_queries ORDER BY name, query_id")
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(SavedQuery {
                    query_id: row.get(0)?,
                    name: row.get(1)?,
                    sql: row.get(2)?,
                    owner: row.get(3)?,
                    saved_at: DateTime::from_timestamp_micros(row.get(4)?).unwrap_or_default(),
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Deletes a saved query; only its owner or an admin may.
    pub fn delete(&self, query_id: i64, by: &str, by_admin: bool) -> Result<SavedQuery, UserError> {
        let query = self
            .list()?
            .into_iter()
            .find(|q| q.query_id == query_id)
            .ok_or_else(|| UserError::Missing(format!("saved query {query_id}")))?;
        if query.owner != by && !by_admin {
            return Err(UserError::Invalid(format!(
                "only {} or an admin may delete `{}`",
                query.owner, query.name
            )));
        }
        self.connection
            .execute(
                "DELETE FROM saved_queries WHERE query_id = ?1",
                params![query_id],
            )
            .map_err(|e| self.error(e))?;
        Ok(query)
    }
}
