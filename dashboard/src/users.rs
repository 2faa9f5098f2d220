//! Local users of the dashboard and SQL endpoints: names, roles and argon2id
//! password hashes in the control database, plus a SCRAM-SHA-256 verifier
//! for the PostgreSQL endpoint. Passwords are never stored or printed except
//! once, when pipewatch generates one.

use std::path::{Path, PathBuf};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL,
    scram_verifier TEXT
);
";

/// SCRAM iterations of new verifiers: PostgreSQL's default.
pub const SCRAM_ITERATIONS: u32 = 4096;
const SCRAM_PREFIX: &str = "SCRAM-SHA-256";

/// What a user may do. Each role includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads pages, alerts and SQL.
    Viewer,
    /// Also acknowledges, assigns, resolves and suppresses alerts.
    Responder,
    /// Also manages users, routes and settings.
    Admin,
}

impl Role {
    /// Every role, least privileged first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Responder, Role::Admin];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the user store.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("control database {path}: {detail}")]
    Database { path: String, detail: String },
    #[error("a user called `{0}` already exists")]
    Exists(String),
    #[error("no user is called `{0}`")]
    NotFound(String),
    #[error("user names are 1 to 64 letters, digits, `.`, `_`, `-` or `@`: `{0}` is not")]
    BadName(String),
    #[error("a password needs at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error("`{0}` would leave no admin; add another admin first")]
    LastAdmin(String),
    /// A request the store refuses; the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} does not exist")]
    Missing(String),
}

/// One user, without the hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub password_changed_at: DateTime<Utc>,
}

/// Users in the control database.
#[derive(Debug)]
pub struct UserStore {
    connection: Connection,
    path: PathBuf,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// A random password of 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// An argon2id hash (PHC string) of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, UserError> {
    let mut salt = [0u8; 16];
    rand::rng().fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| UserError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// What a server keeps to check a SCRAM-SHA-256 login (RFC 5802, RFC 7677)
/// without being able to replay it: the argon2 hash cannot serve SCRAM,
/// which needs keys derived from the password with PBKDF2.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    /// `SHA-256(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Result<[u8; 32], UserError> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key).map_err(|e| UserError::Hash(e.to_string()))?;
    mac.update(message);
    Ok(mac.finalize().into_bytes().into())
}

impl ScramVerifier {
    /// A verifier of `password` with a fresh random salt.
    pub fn generate(password: &str) -> Result<Self, UserError> {
        let mut salt = [0u8; 16];
        rand::rng().fill(&mut salt);
        Self::derive(password, &salt, SCRAM_ITERATIONS)
    }

    /// The verifier of `password` for `salt` and `iterations`; the password
    /// is SASLprep-normalized as PostgreSQL clients do.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Result<Self, UserError> {
        let salted = pgwire::api::auth::sasl::scram::gen_salted_password(
            password,
            salt,
            iterations as usize,
        );
        let client_key = hmac_sha256(&salted, b"Client Key")?;
        Ok(ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac_sha256(&salted, b"Server Key")?,
        })
    }

    /// Parses the stored form `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
    /// (RFC 5803, as PostgreSQL stores it).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('$');
        if parts.next()? != SCRAM_PREFIX {
            return None;
        }
        let (iterations, salt) = parts.next()?.split_once(':')?;
        let (stored_key, server_key) = parts.next()?.split_once(':')?;
        if parts.next().is_some() {
            return None;
        }
        let key = |b64: &str| -> Option<[u8; 32]> { BASE64.decode(b64).ok()?.try_into().ok() };
        Some(ScramVerifier {
            iterations: iterations.parse().ok().filter(|i| *i > 0)?,
            salt: BASE64.decode(salt).ok().filter(|s| !s.is_empty())?,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }
}

impl std::fmt::Display for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{SCRAM_PREFIX}${}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key)
        )
    }
}

/// Whether `password` matches the PHC `hash` (compared in constant time).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

impl UserStore {
    /// Opens (creating if needed) the users of `data_dir`'s control database.
    pub fn open(data_dir: &Path) -> Result<Self, UserError> {
        let (connection, path) = open_control_db(data_dir, SCHEMA)?;
        add_scram_column(&connection).map_err(|e| db_error(&path, e))?;
        Ok(UserStore { connection, path })
    }

    fn error(&self, e: rusqlite::Error) -> UserError {
        db_error(&self.path, e)
    }

    /// Adds a user with `password` (checked for length, then hashed).
    pub fn add(
        &mut self,
        name: &str,
        role: Role,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<User, UserError> {
        if !valid_name(name) {
            return Err(UserError::BadName(name.to_owned()));
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(UserError::WeakPassword);
        }
        if self.find(name)?.is_some() {
            return Err(UserError::Exists(name.to_owned()));
        }
        let hash = hash_password(password)?;
        let verifier = ScramVerifier::generate(password)?.to_string();
        self.connection
            .execute(
                "INSERT INTO users (name, role, password_hash, created_at, password_changed_at, scram_verifier)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![name, role.as_str(), hash, micros(now), verifier],
            )
            .map_err(|e| self.error(e))?;
        Ok(User {
            name: name.to_owned(),
            role,
            created_at: now,
            password_changed_at: now,
        })
    }

    fn find(&self, name: &str) -> Result<Option<(User, String)>, UserError> {
        self.connection
            .query_row(
                "SELECT name, role, password_hash, created_at, password_changed_at FROM users WHERE name = ?1",
                params![name],
                |row| {
                    let role: String = row.get(1)?;
                    Ok((
                        User {
                            name: row.get(0)?,
                            role: Role::parse(&role).unwrap_or(Role::Viewer),
                            created_at: from_micros(row.get(3)?),
                            password_changed_at: from_micros(row.get(4)?),
                        },
                        row.get::<_, String>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.error(e))
    }

    /// The user `name` if `password` is theirs. Unknown users cost the same
    /// hashing work as known ones, so timing does not tell them apart.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Option<User>, UserError> {
        match self.find(name)? {
            Some((user, hash)) => Ok(verify_password(&hash, password).then_some(user)),
            None => {
                let _ = hash_password(password);
                Ok(None)
            }
        }
    }

    /// The user `name` with their SCRAM verifier, which is `None` when the
    /// password was last set before pipewatch kept verifiers.
    pub fn scram_verifier(
        &self,
        name: &str,
    ) -> Result<Option<(User, Option<ScramVerifier>)>, UserError> {
        let Some((user, _)) = self.find(name)? else {
            return Ok(None);
        };
        let stored: Option<String> = self
            .connection
            .query_row(
                "SELECT scram_verifier FROM users WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .map_err(|e| self.error(e))?;
        Ok(Some((
            user,
            stored.as_deref().and_then(ScramVerifier::parse),
        )))
    }

    /// Every user, by name.
    pub fn list(&self) -> Result<Vec<User>, UserError> {
        let mut statement = self
            .connection
            .prepare("SELECT name FROM users ORDER BY name")
            .map_err(|e| self.error(e))?;
        let names: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .map_err(|e| self.error(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.error(e))?;
        let mut users = Vec::new();
        for name in names {
            if let Some((user, _)) = self.find(&name)? {
                users.push(user);
            }
        }
        Ok(users)
    }

    fn admins(&self) -> Result<i64, UserError> {
        self.connection
            .query_row(
                "SELECT count(*) FROM users WHERE role = 'admin'",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.error(e))
    }

    /// Changes a user's role; the last admin cannot lose the role.
    pub fn set_role(&mut self, name: &str, role: Role) -> Result<User, UserError> {
        let (user, _) = self
            .find(name)?
            .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
        if user.role == Role::Admin && role != Role::Admin && self.admins()? <= 1 {
            return Err(UserError::LastAdmin(name.to_owned()));
        }
        self.connection
            .execute(
                "UPDATE users SET role = ?2 WHERE name = ?1",
                params![name, role.as_str()],
            )
            .map_err(|e| self.error(e))?;
        Ok(User { role, ..user })
    }

    /// Replaces a user's password.
    pub fn set_password(
        &mut self,
        name: &str,
        password: &str,
        now: DateTime<Utc>,
    ) -> Result<(), UserError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(UserError::WeakPassword);
        }
        self.find(name)?
            .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
        let hash = hash_password(password)?;
        let verifier = ScramVerifier::generate(password)?.to_string();
        self.connection
            .execute(
                "UPDATE users SET password_hash = ?2, password_changed_at = ?3, scram_verifier = ?4
                 WHERE name = ?1",
                params![name, hash, micros(now), verifier],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Removes a user; the last admin cannot be removed.
    pub fn remove(&mut self, name: &str) -> Result<(), UserError> {
        let (user, _) = self
            .find(name)?
            .ok_or_else(|| UserError::NotFound(name.to_owned()))?;
        if user.role == Role::Admin && self.admins()? <= 1 {
            return Err(UserError::LastAdmin(name.to_owned()));
        }
        self.connection
            .execute("DELETE FROM users WHERE name = ?1", params![name])
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

/// Control databases made before the PostgreSQL endpoint lack the verifier
/// column; their users keep a NULL verifier until their next password change.
fn add_scram_column(connection: &Connection) -> rusqlite::Result<()> {
    let mut statement = connection.prepare("PRAGMA table_info(users)")?;
    let present: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<_, _>>()?;
    if !present.iter().any(|c| c == "scram_verifier") {
        connection.execute_batch("ALTER TABLE users ADD COLUMN scram_verifier TEXT")?;
    }
    Ok(())
}

/// A connection to `data_dir`'s control database (created if needed, WAL,
/// waiting on locks) with `schema` applied, and the database's path.
pub(crate) fn open_control_db(
    data_dir: &Path,
    schema: &str,
) -> Result<(Connection, PathBuf), UserError> {
    std::fs::create_dir_all(data_dir).map_err(|e| UserError::Database {
        path: data_dir.display().to_string(),
        detail: e.to_string(),
    })?;
    let path = data_dir.join(pipewatch_analytics::alerts::CONTROL_DB);
    let connection = Connection::open(&path).map_err(|e| db_error(&path, e))?;
    connection
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
        .map_err(|e| db_error(&path, e))?;
    connection
        .execute_batch(schema)
        .map_err(|e| db_error(&path, e))?;
    Ok((connection, path))
}

pub(crate) fn db_error(path: &Path, e: rusqlite::Error) -> UserError {
    UserError::Database {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_with_argon2id_and_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = UserStore::open(dir.path()).expect("store");
        store
            .add("ana", Role::Responder, "correct horse battery", Utc::now())
            .expect("added");
        let stored: String = store
            .connection
            .query_row("SELECT password_hash FROM users", [], |r| r.get(0))
            .expect("hash");
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        let user = store
            .authenticate("ana", "correct horse battery")
            .expect("db")
            .expect("right password");
        assert_eq!(user.role, Role::Responder);
        assert!(
            store
                .authenticate("ana", "wrong horse battery")
                .expect("db")
                .is_none()
        );
        assert!(
            store
                .authenticate("bo", "correct horse battery")
                .expect("db")
                .is_none()
        );
        store
            .set_password("ana", "a brand new passphrase", Utc::now())
            .expect("changed");
        assert!(
            store
                .authenticate("ana", "correct horse battery")
                .expect("db")
                .is_none()
        );
        assert!(
            store
                .authenticate("ana", "a brand new passphrase")
                .expect("db")
                .is_some()
        );
    }

    #[test]
    fn bad_names_short_passwords_duplicates_and_the_last_admin_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut store = UserStore::open(dir.path()).expect("store");
        let now = Utc::now();
        assert!(matches!(
            store.add("<script>", Role::Viewer, "long enough password", now),
            Err(UserError::BadName(_))
        ));
        assert!(matches!(
            store.add("ana", Role::Viewer, "short", now),
            Err(UserError::WeakPassword)
        ));
        store
            .add("root", Role::Admin, "long enough password", now)
            .expect("admin");
        assert!(matches!(
            store.add("root", Role::Viewer, "long enough password", now),
            Err(UserError::Exists(_))
        ));
        assert!(matches!(store.remove("root"), Err(UserError::LastAdmin(_))));
        assert!(matches!(
            store.set_role("root", Role::Viewer),
            Err(UserError::LastAdmin(_))
        ));
        store
            .add("second", Role::Admin, "long enough password", now)
            .expect("admin");
        store
            .set_role("root", Role::Viewer)
            .expect("another admin remains");
        store.remove("root").expect("removed");
        let names: Vec<String> = store
            .list()
            .expect("list")
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(names, ["second"]);
    }

    /// The exchange of RFC 7677 section 3 (user `user`, password `pencil`).
    #[test]
    fn scram_verifiers_check_the_rfc_7677_exchange() {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let verifier = ScramVerifier::derive("pencil", &salt, 4096).expect("derive");
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let server_signature =
            hmac_sha256(&verifier.server_key, auth_message.as_bytes()).expect("hmac");
        assert_eq!(
            BASE64.encode(server_signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let proof = BASE64
            .decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .expect("proof");
        let signature = hmac_sha256(&verifier.stored_key, auth_message.as_bytes()).expect("hmac");
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        assert_eq!(
            <[u8; 32]>::from(Sha256::digest(client_key)),
            verifier.stored_key
        );

        let stored = verifier.to_string();
        assert!(
            stored.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{stored}"
        );
        assert_eq!(ScramVerifier::parse(&stored), Some(verifier.clone()));
        assert!(!format!("{verifier:?}").contains(&BASE64.encode(verifier.stored_key)));
        for bad in [
            "",
            "SCRAM-SHA-256$4096:c2FsdA==",
            "MD5$1:a$b:c",
            &format!("{stored}$x"),
        ] {
            assert_eq!(ScramVerifier::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn verifiers_follow_the_password_and_old_databases_gain_the_column() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(pipewatch_analytics::alerts::CONTROL_DB);
        {
            let old = Connection::open(&path).expect("db");
            old.execute_batch(
                "CREATE TABLE users (name TEXT PRIMARY KEY, role TEXT NOT NULL,
                 password_hash TEXT NOT NULL, created_at INTEGER NOT NULL,
                 password_changed_at INTEGER NOT NULL);",
            )
            .expect("old schema");
            let hash = hash_password("an old passphrase").expect("hash");
            old.execute(
                "INSERT INTO users VALUES ('old', 'viewer', ?1, 0, 0)",
                params![hash],
            )
            .expect("old user");
        }
        let mut store = UserStore::open(dir.path()).expect("migrated");
        let (user, verifier) = store.scram_verifier("old").expect("db").expect("user");
        assert_eq!(user.role, Role::Viewer);
        assert!(verifier.is_none());
        assert!(
            store
                .authenticate("old", "an old passphrase")
                .expect("db")
                .is_some()
        );

        store
            .set_password("old", "a passphrase for scram", Utc::now())
            .expect("changed");
        let (_, verifier) = store.scram_verifier("old").expect("db").expect("user");
        let verifier = verifier.expect("verifier after passwd");
        let again = ScramVerifier::derive(
            "a passphrase for scram",
            &verifier.salt,
            verifier.iterations,
        )
        .expect("derive");
        assert_eq!(again, verifier);
        store
            .add("new", Role::Admin, "another passphrase", Utc::now())
            .expect("added");
        let stored: String = store
            .connection
            .query_row(
                "SELECT scram_verifier FROM users WHERE name = 'new'",
                [],
                |r| r.get(0),
            )
            .expect("verifier");
        assert!(stored.starts_with("SCRAM-SHA-256$4096:"), "{stored}");
        assert!(!stored.contains("another passphrase"));
        assert!(store.scram_verifier("nobody").expect("db").is_none());
    }

    #[test]
    fn roles_include_the_ones_below() {
        assert!(Role::Admin.allows(Role::Responder));
        assert!(Role::Responder.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Responder));
        assert!(!Role::Responder.allows(Role::Admin));
        assert_eq!(generate_password().len(), 20);
        assert_ne!(generate_password(), generate_password());
    }
}
