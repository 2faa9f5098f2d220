//! The PostgreSQL wire-protocol endpoint: psql, DBeaver or Grafana sign in
//! as dashboard users with SCRAM-SHA-256 (over TLS when configured) and run
//! read-only SQL, every statement through [`QueryService::query`] so the
//! guard, its refusal list and the limits are the dashboard's; logins and
//! statements go to the audit log.
//!
//! - `auth`: the startup handshake, SCRAM against the users' stored
//!   verifiers (no trust, cleartext or MD5), login throttling.
//! - `query`: the simple and extended query protocols over one
//!   [`QueryService`] per role, reopened every `lake_refresh`.
//! - `encode`: Arrow results as PostgreSQL rows.
//!
//! Drivers send a few session statements of their own while connecting;
//! these are answered here as no-ops, without running anything, and
//! audited: `SET` of `application_name`, `extra_float_digits`,
//! `client_min_messages`, `client_encoding` (UTF8 only), `DateStyle` (ISO
//! only), `IntervalStyle` (postgres only), `TimeZone` (UTC only) and
//! `search_path` (public only); `SHOW` of `transaction_isolation` (and
//! `TRANSACTION ISOLATION LEVEL`), `transaction_read_only`,
//! `default_transaction_read_only`, `search_path`, `server_version`,
//! `server_encoding`, `client_encoding`, `standard_conforming_strings`,
//! `TimeZone`, `DateStyle`, `integer_datetimes`, `max_identifier_length`;
//! and `BEGIN`/`START TRANSACTION`, `COMMIT`/`END`, `ROLLBACK`/`ABORT`
//! (every query reads the lake as it is, so transactions change nothing).
//! Any other `SET` or `SHOW` (`SET datafusion.…` included) goes to the guard,
//! which refuses it. Query parameters (`$1`) are refused: statements run as
//! written. In the extended protocol, `Describe` runs the statement (only
//! running it tells its columns) and the `Execute` that follows reuses that
//! result. Cancel requests stop the running statement. The database name
//! is ignored; clients may use `pipewatch`.

mod auth;
mod encode;
mod query;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use pipewatch_analytics::{QueryError, QueryLimits, QueryService};
use rand::Rng;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::audit::{AUDIT_TABLE, AuditEntry, AuditFilter, AuditLog, audit_batch};
use crate::throttle::{LoginThrottle, ThrottleLimits};
use crate::users::{Role, UserError, UserStore};

/// The server version reported to clients; psql and drivers pick their
/// catalog queries by its major number.
const SERVER_VERSION: &str = "16.0 (pipewatch)";

/// The certificate chain and private key of the endpoint, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// How the PostgreSQL endpoint is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// The address the caller binds; kept for logs.
    pub listen: SocketAddr,
    /// With TLS, plain connections are refused: results and statements
    /// never cross the network in the clear.
    pub tls: Option<PgTls>,
    /// Limits of every statement.
    pub query_limits: QueryLimits,
    /// How long one view of the lake is reused before new data is looked for.
    pub lake_refresh: Duration,
    /// Failed logins tolerated per user name and per address.
    pub throttle: ThrottleLimits,
}

/// Listens on 127.0.0.1:5433 (beside a local PostgreSQL's 5432), plain, with
/// the dashboard's query limits and lake refresh.
impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 5433)),
            tls: None,
            query_limits: QueryLimits {
                timeout: Duration::from_secs(30),
                max_rows: 10_000,
                ..QueryLimits::default()
            },
            lake_refresh: Duration::from_secs(15),
            throttle: ThrottleLimits::default(),
        }
    }
}

/// Errors that keep the endpoint from starting.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error(transparent)]
    Store(#[from] UserError),
    #[error("cannot read the TLS {what} {path}: {detail}")]
    TlsFile {
        what: &'static str,
        path: String,
        detail: String,
    },
    #[error("TLS certificate {cert} and key {key} do not make a TLS configuration: {detail}")]
    TlsConfig {
        cert: String,
        key: String,
        detail: String,
    },
}

/// A loaded TLS configuration, and the certificate PEM SCRAM channel
/// binding (`SCRAM-SHA-256-PLUS`) hashes.
struct LoadedTls {
    acceptor: TlsAcceptor,
    cert_pem: Vec<u8>,
}

impl PgTls {
    /// Loads the certificate and key as [`serve_pg`] will, so a bad
    /// configuration is reported when it is read rather than at first use.
    pub fn check(&self) -> Result<(), PgError> {
        self.load().map(|_| ())
    }

    fn load(&self) -> Result<LoadedTls, PgError> {
        let file_error = |what, path: &Path, detail: String| PgError::TlsFile {
            what,
            path: path.display().to_string(),
            detail,
        };
        let cert_pem = std::fs::read(&self.cert)
            .map_err(|e| file_error("certificate", &self.cert, e.to_string()))?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error("certificate", &self.cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(file_error(
                "certificate",
                &self.cert,
                "no PEM certificate in it".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .map_err(|e| file_error("key", &self.key, e.to_string()))?;
        let config_error = |detail: String| PgError::TlsConfig {
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            detail,
        };
        // An explicit provider: the process-wide default depends on which
        // rustls features other crates happen to enable.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| config_error(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| config_error(e.to_string()))?;
        // PostgreSQL 17 clients negotiating TLS directly require this ALPN.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        Ok(LoadedTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert_pem,
        })
    }
}

/// One signed-in connection.
#[derive(Debug)]
struct Session {
    user: String,
    role: Role,
    address: String,
}

/// What every connection shares.
struct Shared {
    data_dir: PathBuf,
    settings: PgSettings,
    users: Mutex<UserStore>,
    audit: Mutex<AuditLog>,
    throttle: LoginThrottle,
    lakes: tokio::sync::Mutex<HashMap<Role, (Instant, Arc<QueryService>)>>,
    /// Salts decoy verifiers of unknown users, so that their salt is stable
    /// across attempts and does not give away that they do not exist.
    decoy_key: [u8; 32],
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Runs `work` (SQLite, so blocking) off the async threads.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Shared) -> T + Send + 'static,
    ) -> Option<T> {
        let shared = self.clone();
        match tokio::task::spawn_blocking(move || work(&shared)).await {
            Ok(value) => Some(value),
            Err(e) => {
                tracing::error!(error = %e, "control database task failed");
                None
            }
        }
    }

    /// Records an audit entry; a failure to record is logged, never hidden.
    async fn audit(
        self: &Arc<Self>,
        actor: &str,
        address: &str,
        action: &str,
        target: Option<String>,
        outcome: &str,
        detail: Option<String>,
    ) {
        let entry = AuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            address: Some(address.to_owned()),
            action: action.to_owned(),
            target,
            outcome: outcome.to_owned(),
            detail,
        };
        let recorded = self
            .blocking(move |shared| lock(&shared.audit).record(&entry))
            .await;
        if let Some(Err(e)) = recorded {
            tracing::error!(error = %e, action, actor, "cannot write the audit log");
        }
    }

    /// The lake a user of `role` queries, as of at most `lake_refresh` ago;
    /// admins also see the audit log, as on the dashboard.
    async fn lake_for(self: &Arc<Self>, role: Role) -> Result<Arc<QueryService>, QueryError> {
        let mut lakes = self.lakes.lock().await;
        if let Some((opened, lake)) = lakes.get(&role)
            && opened.elapsed() < self.settings.lake_refresh
        {
            return Ok(lake.clone());
        }
        let mut lake = QueryService::open(&self.data_dir, self.settings.query_limits).await?;
        if role.allows(Role::Admin) {
            let entries = self
                .blocking(|shared| {
                    lock(&shared.audit).recent(&AuditFilter {
                        limit: usize::MAX,
                        ..AuditFilter::default()
                    })
                })
                .await
                .ok_or_else(|| QueryError::Execution("cannot read the audit log".into()))?
                .map_err(|e| QueryError::Execution(e.to_string()))?;
            let batch = audit_batch(&entries).map_err(|e| QueryError::Execution(e.to_string()))?;
            lake.add_table(AUDIT_TABLE, batch)?;
        }
        let lake = Arc::new(lake);
        lakes.insert(role, (Instant::now(), lake.clone()));
        Ok(lake)
    }
}

/// The handlers of every connection.
struct Handlers {
    startup: Arc<auth::Startup>,
    queries: Arc<query::Queries>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.cancel.clone()
    }
}

/// Serves PostgreSQL clients on `listener` until `shutdown` turns true;
/// open sessions are then closed. Users, audit log and lake are those of
/// `data_dir`.
pub async fn serve_pg(
    data_dir: PathBuf,
    settings: PgSettings,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), PgError> {
    let tls = settings.tls.as_ref().map(PgTls::load).transpose()?;
    let mut decoy_key = [0u8; 32];
    rand::rng().fill(&mut decoy_key);
    let shared = Arc::new(Shared {
        users: Mutex::new(UserStore::open(&data_dir)?),
        audit: Mutex::new(AuditLog::open(&data_dir)?),
        throttle: LoginThrottle::new(settings.throttle),
        lakes: tokio::sync::Mutex::new(HashMap::new()),
        decoy_key,
        data_dir,
        settings,
    });
    // Cancel requests (psql's Ctrl-C) find the running statement through it.
    let connections_by_key = Arc::new(ConnectionManager::new());
    let handlers = Arc::new(Handlers {
        startup: Arc::new(auth::Startup::new(
            shared.clone(),
            tls.as_ref().map(|t| t.cert_pem.as_slice()),
            connections_by_key.clone(),
        )),
        queries: Arc::new(query::Queries::new(shared.clone())),
        cancel: Arc::new(DefaultCancelHandler::new(connections_by_key)),
    });
    let acceptor = tls.map(|t| t.acceptor);
    tracing::info!(
        listen = %shared.settings.listen,
        tls = acceptor.is_some(),
        "serving PostgreSQL clients"
    );
    let mut connections = JoinSet::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let acceptor = acceptor.clone();
                    let handlers = handlers.clone();
                    connections.spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, acceptor, handlers).await {
                            tracing::debug!(%peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a PostgreSQL connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
    tracing::info!("stopped serving PostgreSQL clients");
    Ok(())
}
