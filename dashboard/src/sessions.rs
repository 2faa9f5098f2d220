//! Server-side sessions in the control database: the browser holds a random
//! token, the database holds only its SHA-256, the user, the CSRF token and
//! the times that bound it. Logout, a password change or removing the user
//! ends a session for good.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::users::{Role, UserError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    address TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_name);
CREATE TABLE IF NOT EXISTS user_preferences (
    user_name TEXT PRIMARY KEY,
    timezone TEXT NOT NULL
);
";

/// How long a session lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Ends after this long without a request.
    pub idle: Duration,
    /// Ends this long after login, however busy.
    pub absolute: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(12 * 3_600),
        }
    }
}

/// A signed-in user, as a request sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    /// The user's role now (a role change applies at once).
    pub role: Role,
    /// Must accompany every state-changing request of this session.
    pub csrf_token: String,
    pub created_at: DateTime<Utc>,
    /// The API token the request came with, when not a browser session.
    pub token: Option<String>,
    /// Where the user reads times; UTC until they choose.
    pub timezone: chrono_tz::Tz,
}

impl Session {
    /// Who acted, as the audit log names them.
    pub fn actor(&self) -> String {
        match &self.token {
            Some(token) => format!("{} (token {token})", self.user),
            None => self.user.clone(),
        }
    }
}

/// A new session: the token for the cookie, and the session it opens.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub session: Session,
}

/// Sessions in the control database.
#[derive(Debug)]
pub struct SessionStore {
    connection: Connection,
    path: PathBuf,
    limits: SessionLimits,
}

/// 32 random bytes, URL-safe base64.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn span_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

impl SessionStore {
    /// Opens the sessions of `data_dir`'s control database.
    pub fn open(data_dir: &Path, limits: SessionLimits) -> Result<Self, UserError> {
        // The users table is created here too, so a session can always be
        // checked against it.
        drop(crate::users::UserStore::open(data_dir)?);
        let (connection, path) = crate::users::open_control_db(data_dir, SCHEMA)?;
        Ok(SessionStore {
            connection,
            path,
            limits,
        })
    }

    fn error(&self, e: rusqlite::Error) -> UserError {
        crate::users::db_error(&self.path, e)
    }

    /// Opens a session for `user`, ending the one the browser came with
    /// (`previous_token`), so a token planted before login is worthless.
    pub fn create(
        &self,
        user: &str,
        role: Role,
        previous_token: Option<&str>,
        address: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<NewSession, UserError> {
        if let Some(previous) = previous_token {
            self.end(previous)?;
        }
        let token = random_token();
        let csrf_token = random_token();
        self.connection
            .execute(
                "INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![token_hash(&token), user, csrf_token, micros(now), address],
            )
            .map_err(|e| self.error(e))?;
        Ok(NewSession {
            token,
            session: Session {
                user: user.to_owned(),
                role,
                csrf_token,
                created_at: now,
                token: None,
                timezone: self.timezone_of(user)?,
            },
        })
    }

    /// The live session of `token`, touched at `now`; `None` (and the
    /// session gone) when it timed out or its user changed password or left.
    pub fn validate(&self, token: &str, now: DateTime<Utc>) -> Result<Option<Session>, UserError> {
        let hash = token_hash(token);
        let row = self
            .connection
            .query_row(
                "SELECT s.user_name, u.role, s.csrf_token, s.created_at, s.last_seen, u.password_changed_at, p.timezone
                 FROM sessions s LEFT JOIN users u ON u.name = s.user_name
                 LEFT JOIN user_preferences p ON p.user_name = s.user_name
                 WHERE s.token_hash = ?1",
                params![hash],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, Option<String>>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.error(e))?;
        let Some((user, role, csrf_token, created_at, last_seen, password_changed_at, timezone)) =
            row
        else {
            return Ok(None);
        };
        let now_micros = micros(now);
        let role = role.as_deref().and_then(Role::parse);
        let live = role.is_some()
            && password_changed_at.is_some_and(|changed| changed <= created_at)
            && now_micros - last_seen <= span_micros(self.limits.idle)
            && now_micros - created_at <= span_micros(self.limits.absolute);
        let Some(role) = role.filter(|_| live) else {
            self.connection
                .execute("DELETE FROM sessions WHERE token_hash = ?1", params![hash])
                .map_err(|e| self.error(e))?;
            return Ok(None);
        };
        // Touching at most every few seconds keeps page loads from writing.
        if now_micros - last_seen > 5_000_000 {
            self.connection
                .execute(
                    "UPDATE sessions SET last_seen = ?2 WHERE token_hash = ?1",
                    params![hash, now_micros],
                )
                .map_err(|e| self.error(e))?;
        }
        Ok(Some(Session {
            user,
            role,
            csrf_token,
            created_at: DateTime::from_timestamp_micros(created_at).unwrap_or_default(),
            token: None,
            timezone: timezone
                .and_then(|t| t.parse().ok())
                .unwrap_or(chrono_tz::UTC),
        }))
    }

    /// The role of the user called `name`, if there is one.
    pub fn role_of(&self, name: &str) -> Result<Option<Role>, UserError> {
        let role: Option<String> = self
            .connection
            .query_row(
                "SELECT role FROM users WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    /// The timezone `user` chose (UTC until they do).
    pub fn timezone_of(&self, user: &str) -> Result<chrono_tz::Tz, UserError> {
        let chosen: Option<String> = self
            .connection
            .query_row(
                "SELECT timezone FROM user_preferences WHERE user_name = ?1",
                params![user],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        Ok(chosen
            .and_then(|t| t.parse().ok())
            .unwrap_or(chrono_tz::UTC))
    }

    /// Records the timezone `user` reads times in.
    pub fn set_timezone(&self, user: &str, timezone: chrono_tz::Tz) -> Result<(), UserError> {
        self.connection
            .execute(
                "INSERT INTO user_preferences VALUES (?1, ?2)
                 ON CONFLICT (user_name) DO UPDATE SET timezone = excluded.timezone",
                params![user, timezone.name()],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Ends the session of `token` (logout).
    pub fn end(&self, token: &str) -> Result<(), UserError> {
        self.connection
            .execute(
                "DELETE FROM sessions WHERE token_hash = ?1",
                params![token_hash(token)],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Deletes sessions past either timeout; returns how many.
    pub fn purge(&self, now: DateTime<Utc>) -> Result<usize, UserError> {
        let now = micros(now);
        self.connection
            .execute(
                "DELETE FROM sessions WHERE ?1 - last_seen > ?2 OR ?1 - created_at > ?3",
                params![
                    now,
                    span_micros(self.limits.idle),
                    span_micros(self.limits.absolute)
                ],
            )
            .map_err(|e| self.error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserStore;

    fn stores() -> (tempfile::TempDir, UserStore, SessionStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let users = UserStore::open(dir.path()).expect("users");
        let sessions = SessionStore::open(
            dir.path(),
            SessionLimits {
                idle: Duration::from_secs(600),
                absolute: Duration::from_secs(3_600),
            },
        )
        .expect("sessions");
        (dir, users, sessions)
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time")
    }

    #[test]
    fn a_session_ends_when_idle_too_long_or_too_old() {
        let (_dir, mut users, sessions) = stores();
        users
            .add("ana", Role::Responder, "correct horse battery", at(0))
            .expect("add");
        let new = sessions
            .create("ana", Role::Responder, None, None, at(0))
            .expect("create");
        let live = sessions.validate(&new.token, at(300)).expect("validate");
        assert_eq!(live.map(|s| s.user), Some("ana".to_owned()));
        // Kept busy, it still ends at the absolute limit.
        for minute in 1..60 {
            assert!(
                sessions
                    .validate(&new.token, at(minute * 60))
                    .expect("validate")
                    .is_some()
            );
        }
        assert!(
            sessions
                .validate(&new.token, at(3_601))
                .expect("validate")
                .is_none()
        );
        let idle = sessions
            .create("ana", Role::Responder, None, None, at(0))
            .expect("create");
        assert!(
            sessions
                .validate(&idle.token, at(601))
                .expect("validate")
                .is_none()
        );
    }

    #[test]
    fn logout_password_change_and_removal_end_sessions() {
        let (_dir, mut users, sessions) = stores();
        users
            .add("ana", Role::Admin, "correct horse battery", at(0))
            .expect("add");
        users
            .add("bo", Role::Viewer, "correct horse battery", at(0))
            .expect("add");
        let first = sessions
            .create("ana", Role::Admin, None, None, at(1))
            .expect("create");
        // Logging in again with the old token in hand ends the old session.
        let second = sessions
            .create("ana", Role::Admin, Some(&first.token), None, at(2))
            .expect("create");
        assert!(sessions.validate(&first.token, at(3)).expect("v").is_none());
        assert!(
            sessions
                .validate(&second.token, at(3))
                .expect("v")
                .is_some()
        );
        sessions.end(&second.token).expect("logout");
        assert!(
            sessions
                .validate(&second.token, at(4))
                .expect("v")
                .is_none()
        );

        let bo = sessions
            .create("bo", Role::Viewer, None, None, at(5))
            .expect("create");
        users.set_role("bo", Role::Responder).expect("role");
        assert_eq!(
            sessions
                .validate(&bo.token, at(6))
                .expect("v")
                .map(|s| s.role),
            Some(Role::Responder)
        );
        users
            .set_password("bo", "another long password", at(7))
            .expect("passwd");
        assert!(sessions.validate(&bo.token, at(8)).expect("v").is_none());
        let bo = sessions
            .create("bo", Role::Viewer, None, None, at(9))
            .expect("create");
        users.remove("bo").expect("remove");
        assert!(sessions.validate(&bo.token, at(10)).expect("v").is_none());
    }

    #[test]
    fn the_database_never_holds_the_token() {
        let (dir, mut users, sessions) = stores();
        users
            .add("ana", Role::Viewer, "correct horse battery", at(0))
            .expect("add");
        let new = sessions
            .create("ana", Role::Viewer, None, None, at(0))
            .expect("create");
        drop(sessions);
        let bytes =
            std::fs::read(dir.path().join(pipewatch_analytics::alerts::CONTROL_DB)).expect("read");
        let wal = std::fs::read(
            dir.path()
                .join(format!("{}-wal", pipewatch_analytics::alerts::CONTROL_DB)),
        )
        .unwrap_or_default();
        for haystack in [bytes, wal] {
            assert!(
                !haystack
                    .windows(new.token.len())
                    .any(|w| w == new.token.as_bytes())
            );
        }
    }
}
