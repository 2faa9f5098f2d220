//! API tokens for scripts and notebooks: a random secret shown once, kept
//! only as its SHA-256, owned by a user (whose current role it carries) and
//! limited to named scopes and an optional expiry.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::sessions::random_token;
use crate::users::{Role, UserError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_tokens (
    name TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    scopes TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER
);
";

/// What every token starts with, so leaked ones are easy to spot and scan for.
pub const TOKEN_PREFIX: &str = "pwt_";

/// What a token may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenScope {
    /// `POST /api/sql`.
    Sql,
    /// The read-only JSON API (`GET /api/alerts`).
    Read,
}

impl TokenScope {
    pub const ALL: [TokenScope; 2] = [TokenScope::Sql, TokenScope::Read];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Sql => "sql",
            TokenScope::Read => "read",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiToken {
    pub name: String,
    pub user: String,
    pub scopes: Vec<TokenScope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Who a presented token acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPrincipal {
    pub name: String,
    pub user: String,
    /// The owner's role now.
    pub role: Role,
    pub scopes: Vec<TokenScope>,
}

/// The API tokens of a control database.
#[derive(Debug)]
pub struct TokenStore {
    connection: Connection,
    path: PathBuf,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn time(v: Option<i64>) -> Option<DateTime<Utc>> {
    v.and_then(DateTime::from_timestamp_micros)
}

fn scopes_of(text: &str) -> Vec<TokenScope> {
    text.split(',').filter_map(TokenScope::parse).collect()
}

impl TokenStore {
    pub fn open(data_dir: &Path) -> Result<Self, UserError> {
        drop(crate::users::UserStore::open(data_dir)?);
        let (connection, path) = crate::users::open_control_db(data_dir, SCHEMA)?;
        Ok(TokenStore { connection, path })
    }

    fn error(&self, e: rusqlite::Error) -> UserError {
        crate::users::db_error(&self.path, e)
    }

    /// Issues a token called `name` for `user`; returns the secret, shown once.
    pub fn issue(
        &self,
        name: &str,
        user: &str,
        scopes: &[TokenScope],
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<String, UserError> {
        let valid_name = (1..=64).contains(&name.chars().count())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_name {
            return Err(UserError::Invalid(format!(
                "token names are 1 to 64 letters, digits, `.`, `_` or `-`: `{name}` is not"
            )));
        }
        if scopes.is_empty() {
            return Err(UserError::Invalid(
                "a token needs at least one scope (sql, read)".into(),
            ));
        }
        if expires_at.is_some_and(|t| t <= now) {
            return Err(UserError::Invalid(
                "a token's expiry must be in the future".into(),
            ));
        }
        let known: Option<String> = self
            .connection
            .query_row(
                "SELECT name FROM users WHERE name = ?1",
                params![user],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        if known.is_none() {
            return Err(UserError::NotFound(user.to_owned()));
        }
        let exists: Option<String> = self
            .connection
            .query_row(
                "SELECT name FROM api_tokens WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(e))?;
        if exists.is_some() {
            return Err(UserError::Invalid(format!(
                "a token called `{name}` already exists"
            )));
        }
        let secret = format!("{TOKEN_PREFIX}{}", random_token());
        let mut scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        scopes.sort_unstable();
        scopes.dedup();
        self.connection
            .execute(
                "INSERT INTO api_tokens VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL)",
                params![
                    name,
                    user,
                    scopes.join(","),
                    hash(&secret),
                    now.timestamp_micros(),
                    expires_at.map(|t| t.timestamp_micros())
                ],
            )
            .map_err(|e| self.error(e))?;
        Ok(secret)
    }

    /// Who `secret` acts as, if it is a live token of an existing user.
    pub fn authenticate(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<TokenPrincipal>, UserError> {
        if !secret.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let digest = hash(secret);
        let row = self
            .connection
            .query_row(
                "SELECT t.name, t.user_name, t.scopes, t.expires_at, u.role, t.last_used_at
                 FROM api_tokens t JOIN users u ON u.name = t.user_name
                 WHERE t.token_hash = ?1",
                params![digest],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<i64>>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.error(e))?;
        let Some((name, user, scopes, expires_at, role, last_used)) = row else {
            return Ok(None);
        };
        let now_micros = now.timestamp_micros();
        if expires_at.is_some_and(|t| t <= now_micros) {
            return Ok(None);
        }
        let Some(role) = Role::parse(&role) else {
            return Ok(None);
        };
        if last_used.is_none_or(|t| now_micros - t > 60_000_000) {
            self.connection
                .execute(
                    "UPDATE api_tokens SET last_used_at = ?2 WHERE name = ?1",
                    params![name, now_micros],
                )
                .map_err(|e| self.error(e))?;
        }
        Ok(Some(TokenPrincipal {
            name,
            user,
            role,
            scopes: scopes_of(&scopes),
        }))
    }

    /// Every token, by name.
    pub fn list(&self) -> Result<Vec<ApiToken>, UserError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT name, user_name, scopes, created_at, expires_at, last_used_at
                 FROM api_tokens ORDER BY name",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(ApiToken {
                    name: row.get(0)?,
                    user: row.get(1)?,
                    scopes: scopes_of(&row.get::<_, String>(2)?),
                    created_at: DateTime::from_timestamp_micros(row.get(3)?).unwrap_or_default(),
                    expires_at: time(row.get(4)?),
                    last_used_at: time(row.get(5)?),
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }

    /// Revokes the token called `name` at once.
    pub fn revoke(&self, name: &str) -> Result<(), UserError> {
        let removed = self
            .connection
            .execute("DELETE FROM api_tokens WHERE name = ?1", params![name])
            .map_err(|e| self.error(e))?;
        if removed == 0 {
            return Err(UserError::Missing(format!("the token `{name}`")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::UserStore;

    #[test]
    fn a_token_acts_as_its_user_until_revoked_expired_or_the_user_leaves() {
        let dir = tempfile::tempdir().expect("tempdir");
        let now = Utc::now();
        let mut users = UserStore::open(dir.path()).expect("users");
        users
            .add("ana", Role::Admin, "a long enough password", now)
            .expect("ana");
        users
            .add("bo", Role::Viewer, "a long enough password", now)
            .expect("bo");
        let tokens = TokenStore::open(dir.path()).expect("tokens");
        let secret = tokens
            .issue("notebook", "bo", &[TokenScope::Sql], None, now)
            .expect("issue");
        assert!(secret.starts_with(TOKEN_PREFIX));
        let principal = tokens
            .authenticate(&secret, now)
            .expect("auth")
            .expect("valid");
        assert_eq!(
            (principal.user.as_str(), principal.role),
            ("bo", Role::Viewer)
        );
        assert_eq!(principal.scopes, [TokenScope::Sql]);
        assert!(
            tokens
                .authenticate("pwt_guess", now)
                .expect("auth")
                .is_none()
        );
        assert!(
            tokens
                .issue("notebook", "bo", &[TokenScope::Read], None, now)
                .is_err()
        );
        assert!(
            tokens
                .issue("ghost", "nobody", &[TokenScope::Read], None, now)
                .is_err()
        );

        let short = tokens
            .issue(
                "short",
                "bo",
                &[TokenScope::Read],
                Some(now + chrono::Duration::hours(1)),
                now,
            )
            .expect("issue");
        assert!(tokens.authenticate(&short, now).expect("auth").is_some());
        assert!(
            tokens
                .authenticate(&short, now + chrono::Duration::hours(2))
                .expect("auth")
                .is_none()
        );
        // The secret is not in the database.
        drop(tokens);
        let bytes =
            std::fs::read(dir.path().join(pipewatch_analytics::alerts::CONTROL_DB)).expect("read");
        assert!(!bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
        let tokens = TokenStore::open(dir.path()).expect("tokens");
        users.remove("bo").expect("remove");
        assert!(tokens.authenticate(&secret, now).expect("auth").is_none());
        tokens.revoke("short").expect("revoke");
        assert!(tokens.revoke("short").is_err());
    }
}
