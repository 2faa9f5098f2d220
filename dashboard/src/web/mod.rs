//! The dashboard's router: every route, the role each one needs (deny by
//! default), the session and CSRF checks in front of them, and the security
//! headers on every response.

mod admin;
mod auth;
mod explore;
mod pages;
mod sql;
mod view;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use chrono::Utc;
use pipewatch_analytics::alerts::AlertStore;
use pipewatch_analytics::metrics::Rollups;
use pipewatch_analytics::query::lake_version;
use pipewatch_analytics::{MetricsError, QueryError, QueryLimits, QueryService};
use subtle::ConstantTimeEq;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::audit::{AUDIT_TABLE, AuditEntry, AuditFilter, AuditLog, audit_batch};
use crate::saved::SavedQueries;
use crate::sessions::{Session, SessionLimits, SessionStore};
use crate::throttle::{LoginThrottle, ThrottleLimits};
use crate::tokens::{TokenScope, TokenStore};
use crate::users::{Role, UserError, UserStore};

/// Name of the session cookie over TLS: `__Host-` binds it to this origin.
const SECURE_SESSION_COOKIE: &str = "__Host-pipewatch-session";
/// Name of the session cookie over plain HTTP (browsers refuse `__Host-`
/// cookies that are not `Secure`).
const PLAIN_SESSION_COOKIE: &str = "pipewatch-session";
/// Largest form accepted; state-changing forms are small.
const MAX_FORM_BYTES: usize = 256 * 1024;

/// How the dashboard is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSettings {
    /// Users reach pipewatch over HTTPS (directly or through a TLS proxy):
    /// cookies are `Secure` and `__Host-` prefixed, and HSTS is sent.
    pub secure_cookies: bool,
    pub sessions: SessionLimits,
    pub throttle: ThrottleLimits,
    /// Limits of every query a page runs.
    pub query_limits: QueryLimits,
    /// How long pages reuse one view of the lake before looking again.
    pub lake_refresh: Duration,
    /// Sign-in by a trusted reverse proxy (oauth2-proxy and the like).
    pub proxy_auth: Option<ProxyAuth>,
    /// The ingest running in this process, for its live figures.
    pub ingest: LiveIngest,
    /// Build the rollups as soon as the router is made (in the background),
    /// so the first overview after a start does not wait for them.
    pub warm_rollups: bool,
}

/// The ingest running in the same process as the dashboard, whose live
/// figures (Kafka consumer lag) the overview shows; empty when ingest runs
/// in another process.
#[derive(Clone, Default)]
pub struct LiveIngest(pub Option<Arc<pipewatch_ingest::metrics::IngestMetrics>>);

impl PartialEq for LiveIngest {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for LiveIngest {}

impl std::fmt::Debug for LiveIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LiveIngest(in this process)"
        } else {
            "LiveIngest(elsewhere)"
        })
    }
}

/// Trusted reverse-proxy authentication: requests from `trusted` addresses
/// that carry `header` are signed in as the user it names (who must exist
/// in pipewatch, with the role given there). From anywhere else the header
/// is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyAuth {
    /// The header the proxy sets, such as `X-Forwarded-User`.
    pub header: HeaderName,
    /// The proxy's addresses or networks.
    pub trusted: Vec<ipnet::IpNet>,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            secure_cookies: false,
            sessions: SessionLimits::default(),
            throttle: ThrottleLimits::default(),
            query_limits: QueryLimits {
                timeout: Duration::from_secs(30),
                max_rows: 10_000,
                ..QueryLimits::default()
            },
            lake_refresh: Duration::from_secs(15),
            proxy_auth: None,
            ingest: LiveIngest::default(),
            warm_rollups: false,
        }
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not (login, the stylesheet).
    Public,
    /// Signed-in users with at least this role.
    AtLeast(Role),
    /// The JSON API: signed-in users with at least this role, or an API
    /// token with this scope whose owner has the role.
    Api(Role, TokenScope),
}

/// Every route and who may use it. A route missing here is refused to
/// everyone, admins included.
pub const POLICY: &[(Method, &str, Access)] = &[
    (Method::GET, "/login", Access::Public),
    (Method::POST, "/login", Access::Public),
    (Method::GET, "/static/app.css", Access::Public),
    (Method::GET, "/static/favicon.svg", Access::Public),
    (Method::POST, "/logout", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/alerts", Access::AtLeast(Role::Viewer)),
    (
        Method::GET,
        "/alerts/{alert_id}",
        Access::AtLeast(Role::Viewer),
    ),
    (
        Method::POST,
        "/alerts/actions",
        Access::AtLeast(Role::Responder),
    ),
    (Method::GET, "/audit", Access::AtLeast(Role::Admin)),
    (Method::GET, "/admin/users", Access::AtLeast(Role::Admin)),
    (Method::POST, "/admin/users", Access::AtLeast(Role::Admin)),
    (Method::GET, "/admin/settings", Access::AtLeast(Role::Admin)),
    (Method::GET, "/ingestion", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/secrets", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/repos", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/repo", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/preferences", Access::AtLeast(Role::Viewer)),
    (Method::POST, "/preferences", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/sql", Access::AtLeast(Role::Viewer)),
    (Method::GET, "/sql/export", Access::AtLeast(Role::Viewer)),
    (Method::POST, "/sql/saved", Access::AtLeast(Role::Responder)),
    (
        Method::POST,
        "/sql/saved/delete",
        Access::AtLeast(Role::Responder),
    ),
    (
        Method::POST,
        "/api/sql",
        Access::Api(Role::Viewer, TokenScope::Sql),
    ),
    (
        Method::GET,
        "/api/alerts",
        Access::Api(Role::Viewer, TokenScope::Read),
    ),
];

fn policy_of(method: &Method, path: &str) -> Option<Access> {
    POLICY
        .iter()
        .find(|(m, p, _)| m == method && *p == path)
        .map(|(_, _, access)| *access)
}

/// Errors opening the dashboard's stores.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error(transparent)]
    Store(#[from] UserError),
    #[error("alert store: {0}")]
    Alerts(#[from] pipewatch_analytics::alerts::AlertError),
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

pub(crate) struct Shared {
    data_dir: PathBuf,
    settings: DashboardSettings,
    users: Mutex<UserStore>,
    sessions: Mutex<SessionStore>,
    audit: Mutex<AuditLog>,
    alerts: Mutex<AlertStore>,
    saved: Mutex<SavedQueries>,
    tokens: Mutex<TokenStore>,
    throttle: LoginThrottle,
    lake: tokio::sync::Mutex<Option<(Instant, Arc<QueryService>)>>,
    /// The lake plus the audit log, for admins.
    admin_lake: tokio::sync::Mutex<Option<(Instant, Arc<QueryService>)>>,
    /// Daily rollups of the lake, for pages that would otherwise scan it.
    rollups: tokio::sync::Mutex<Option<Arc<Rollups>>>,
    /// A rebuild of the rollups is running in the background.
    rebuilding: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AppState {
    fn users(&self) -> MutexGuard<'_, UserStore> {
        lock(&self.0.users)
    }
    fn sessions(&self) -> MutexGuard<'_, SessionStore> {
        lock(&self.0.sessions)
    }
    fn alerts(&self) -> MutexGuard<'_, AlertStore> {
        lock(&self.0.alerts)
    }
    fn audit_log(&self) -> MutexGuard<'_, AuditLog> {
        lock(&self.0.audit)
    }
    fn saved(&self) -> MutexGuard<'_, SavedQueries> {
        lock(&self.0.saved)
    }
    fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        lock(&self.0.tokens)
    }

    /// Records an audit entry; a failure to record is logged, never hidden.
    fn audit(
        &self,
        actor: &str,
        address: &ClientAddress,
        action: &str,
        target: Option<&str>,
        outcome: &str,
        detail: Option<&str>,
    ) {
        let entry = AuditEntry {
            at: Utc::now(),
            actor: actor.to_owned(),
            address: Some(address.0.clone()),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            outcome: outcome.to_owned(),
            detail: detail.map(str::to_owned),
        };
        if let Err(e) = self.audit_log().record(&entry) {
            tracing::error!(error = %e, action, actor, "cannot write the audit log");
        }
    }

    /// The lake as of at most `lake_refresh` ago.
    async fn lake(&self) -> Result<Arc<QueryService>, QueryError> {
        self.cached_lake(false).await
    }

    /// The lake a user of `role` may query: admins also see the audit log.
    async fn lake_for(&self, role: Role) -> Result<Arc<QueryService>, QueryError> {
        self.cached_lake(role.allows(Role::Admin)).await
    }

    async fn cached_lake(&self, with_audit: bool) -> Result<Arc<QueryService>, QueryError> {
        let slot = if with_audit {
            &self.0.admin_lake
        } else {
            &self.0.lake
        };
        let mut cached = slot.lock().await;
        if let Some((opened, service)) = cached.as_ref()
            && opened.elapsed() < self.0.settings.lake_refresh
        {
            return Ok(service.clone());
        }
        let mut service =
            QueryService::open(&self.0.data_dir, self.0.settings.query_limits).await?;
        if with_audit {
            let entries = self
                .audit_log()
                .recent(&AuditFilter {
                    limit: usize::MAX,
                    ..AuditFilter::default()
                })
                .map_err(|e| QueryError::Execution(e.to_string()))?;
            let batch = audit_batch(&entries).map_err(|e| QueryError::Execution(e.to_string()))?;
            service.add_table(AUDIT_TABLE, batch)?;
        }
        let service = Arc::new(service);
        *cached = Some((Instant::now(), service.clone()));
        Ok(service)
    }

    /// The rollups of the lake. The first call builds them (later callers
    /// wait for it); once the lake changes, a rebuild runs in the
    /// background and pages keep reading the previous rollups until it ends.
    async fn rollups(&self) -> Result<Arc<Rollups>, MetricsError> {
        let version = lake_version(&self.0.data_dir);
        let mut slot = self.0.rollups.lock().await;
        if let Some(current) = slot.as_ref() {
            if current.lake_version() != version && !self.0.rebuilding.swap(true, Ordering::AcqRel)
            {
                let state = self.clone();
                tokio::spawn(async move {
                    match state.build_rollups(version).await {
                        Ok(fresh) => *state.0.rollups.lock().await = Some(Arc::new(fresh)),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot rebuild the dashboard's rollups")
                        }
                    }
                    state.0.rebuilding.store(false, Ordering::Release);
                });
            }
            return Ok(current.clone());
        }
        let built = Arc::new(self.build_rollups(version).await?);
        *slot = Some(built.clone());
        Ok(built)
    }

    /// Whether the rollups are being rebuilt for a newer lake.
    fn rollups_refreshing(&self) -> bool {
        self.0.rebuilding.load(Ordering::Acquire)
    }

    async fn build_rollups(
        &self,
        version: pipewatch_analytics::query::LakeVersion,
    ) -> Result<Rollups, MetricsError> {
        // A rollup holds a metric's distinct keys over all time: more rows
        // than a page may show, and more time than a page query gets.
        let limits = QueryLimits {
            max_rows: usize::MAX,
            timeout: Duration::from_secs(3_600),
            ..self.0.settings.query_limits
        };
        let lake = QueryService::open(&self.0.data_dir, limits)
            .await
            .map_err(|source| MetricsError::Query {
                metric: "rollups",
                source,
            })?;
        let rollups = Rollups::build_with(&lake, version, explore::SUMMARIES).await?;
        tracing::info!(
            took_ms = rollups.took().as_millis() as u64,
            "dashboard rollups built"
        );
        Ok(rollups)
    }

    fn session_cookie(&self) -> &'static str {
        if self.0.settings.secure_cookies {
            SECURE_SESSION_COOKIE
        } else {
            PLAIN_SESSION_COOKIE
        }
    }

    /// Kafka consumer lag per partition; `None` when no ingest runs in
    /// this process.
    fn kafka_lags(&self) -> Option<Vec<pipewatch_ingest::metrics::KafkaLag>> {
        self.0.settings.ingest.0.as_ref().map(|m| m.kafka_lags())
    }

    fn data_dir(&self) -> &Path {
        &self.0.data_dir
    }
}

/// The client's address, as the connection gave it.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddress(pub(crate) String);

/// The dashboard for the lake and control database under `data_dir`, to
/// merge into a router that answers the paths it does not know.
pub fn router(data_dir: &Path, settings: DashboardSettings) -> Result<Router, DashboardError> {
    Ok(guarded(routes(), state(data_dir, settings)?))
}

/// The dashboard alone, answering unknown paths with its 404 page.
pub fn standalone(data_dir: &Path, settings: DashboardSettings) -> Result<Router, DashboardError> {
    let secure = settings.secure_cookies;
    Ok(security_headers(
        router(data_dir, settings)?.fallback(not_found),
        secure,
    ))
}

fn state(data_dir: &Path, settings: DashboardSettings) -> Result<AppState, DashboardError> {
    let state = new_state(data_dir, settings)?;
    if state.0.settings.warm_rollups
        && let Ok(runtime) = tokio::runtime::Handle::try_current()
    {
        let warming = state.clone();
        runtime.spawn(async move {
            if let Err(e) = warming.rollups().await {
                tracing::warn!(error = %e, "cannot build the dashboard's rollups");
            }
        });
    }
    Ok(state)
}

fn new_state(data_dir: &Path, settings: DashboardSettings) -> Result<AppState, DashboardError> {
    let users = UserStore::open(data_dir)?;
    let sessions = SessionStore::open(data_dir, settings.sessions)?;
    let audit = AuditLog::open(data_dir)?;
    let alerts = AlertStore::open(data_dir)?;
    let saved = SavedQueries::open(data_dir)?;
    let tokens = TokenStore::open(data_dir)?;
    Ok(AppState(Arc::new(Shared {
        data_dir: data_dir.to_path_buf(),
        throttle: LoginThrottle::new(settings.throttle),
        settings,
        users: Mutex::new(users),
        sessions: Mutex::new(sessions),
        audit: Mutex::new(audit),
        alerts: Mutex::new(alerts),
        saved: Mutex::new(saved),
        tokens: Mutex::new(tokens),
        lake: tokio::sync::Mutex::new(None),
        admin_lake: tokio::sync::Mutex::new(None),
        rollups: tokio::sync::Mutex::new(None),
        rebuilding: AtomicBool::new(false),
    })))
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/static/app.css", get(stylesheet))
        .route("/static/favicon.svg", get(favicon))
        .route("/", get(pages::overview))
        .route("/alerts", get(pages::alerts))
        .route("/alerts/{alert_id}", get(pages::alert_detail))
        .route("/alerts/actions", post(pages::alert_actions))
        .route("/audit", get(pages::audit))
        .route("/admin/users", get(admin::users).post(admin::change_user))
        .route("/admin/settings", get(admin::settings))
        .route("/ingestion", get(explore::ingestion))
        .route("/secrets", get(explore::secrets))
        .route("/repos", get(explore::repositories))
        .route("/repo", get(explore::repository))
        .route(
            "/preferences",
            get(pages::preferences).post(pages::save_preferences),
        )
        .route("/sql", get(sql::console))
        .route("/sql/export", get(sql::export))
        .route("/sql/saved", post(sql::save))
        .route("/sql/saved/delete", post(sql::delete))
        .route("/api/sql", post(sql::api))
        .route("/api/alerts", get(pages::api_alerts))
}

fn guarded(routes: Router<AppState>, state: AppState) -> Router {
    let secure = state.0.settings.secure_cookies;
    security_headers(
        routes
            .route_layer(axum::middleware::from_fn_with_state(state.clone(), guard))
            .with_state(state),
        secure,
    )
}

/// Adds the security headers to every response of `router`.
pub fn security_headers<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    hsts: bool,
) -> Router<S> {
    let fixed: [(&'static str, &'static str); 6] = [
        (
            "content-security-policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        (
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        ),
    ];
    let mut router = router;
    for (name, value) in fixed {
        router = router.layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    // Pages hold sensitive data: no copies in caches unless a route says so.
    router = router.layer(SetResponseHeaderLayer::if_not_present(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    ));
    if hsts {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    router
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        include_str!("../../static/favicon.svg"),
    )
        .into_response()
}

async fn not_found() -> Response {
    view::error_page(StatusCode::NOT_FOUND, "No such page.")
}

fn peer_ip(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The client's address: the peer, or behind a trusted proxy the address
/// the proxy appended to `X-Forwarded-For`.
fn client_address(request: &Request, proxy: Option<&ProxyAuth>) -> ClientAddress {
    let peer = peer_ip(request);
    let forwarded = proxy
        .filter(|p| peer.is_some_and(|ip| p.trusted.iter().any(|net| net.contains(&ip))))
        .and_then(|_| request.headers().get("x-forwarded-for"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .map(|v| v.trim().to_owned())
        .filter(|v| v.parse::<std::net::IpAddr>().is_ok());
    ClientAddress(
        forwarded.unwrap_or_else(|| peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())),
    )
}

/// The user a trusted proxy vouches for, if this request came through one.
fn proxy_user(request: &Request, proxy: Option<&ProxyAuth>) -> Option<String> {
    let proxy = proxy?;
    let peer = peer_ip(request)?;
    if !proxy.trusted.iter().any(|net| net.contains(&peer)) {
        return None;
    }
    request
        .headers()
        .get(&proxy.header)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Whether a state-changing request comes from a page of this origin.
/// Browsers send `Origin` on every POST; a mismatch is a cross-site form.
fn same_origin(request: &Request) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    let origin = origin.to_str().unwrap_or("null");
    match (origin.split_once("://"), host) {
        (Some((_, origin_host)), Some(host)) => origin_host.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// The form field `csrf` of an urlencoded body.
fn form_csrf(body: &[u8]) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(key, _)| key == "csrf")
        .map(|(_, value)| value.into_owned())
}

fn tokens_match(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// A refusal, as a page or (for the API) as JSON.
fn refusal(api: bool, status: StatusCode, message: &str) -> Response {
    if api {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        view::error_page(status, message)
    }
}

fn bearer(request: &Request) -> Option<String> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
}

/// The access check every route passes through: the route's policy, the
/// session or API token, the role, and for state changes made from a
/// browser the origin and the CSRF token.
async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let proxy = state.0.settings.proxy_auth.as_ref();
    let address = client_address(&request, proxy);
    request.extensions_mut().insert(address.clone());
    let method = request.method().clone();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let uri = request.uri().path().to_owned();
    let policy = policy_of(&method, &path);
    let api = matches!(policy, Some(Access::Api(..)));
    let deny = |actor: &str, status: StatusCode, why: &str, message: &str| {
        state.audit(actor, &address, "denied", Some(&uri), "refused", Some(why));
        refusal(api, status, message)
    };

    // Scripts present an API token; it opens API routes of its scopes only.
    if let Some(secret) = bearer(&request) {
        let Some(Access::Api(role, scope)) = policy else {
            return deny(
                "-",
                StatusCode::UNAUTHORIZED,
                "API token on a page",
                "API tokens open only the /api/ routes.",
            );
        };
        let principal = match state.tokens().authenticate(&secret, Utc::now()) {
            Ok(principal) => principal,
            Err(e) => {
                tracing::error!(error = %e, "cannot check an API token");
                return refusal(
                    api,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Tokens are unavailable.",
                );
            }
        };
        let Some(principal) = principal else {
            return deny(
                "-",
                StatusCode::UNAUTHORIZED,
                "unknown, revoked or expired API token",
                "The API token is unknown, revoked or expired.",
            );
        };
        let actor = format!("{} (token {})", principal.user, principal.name);
        if !principal.scopes.contains(&scope) {
            return deny(
                &actor,
                StatusCode::FORBIDDEN,
                &format!("token lacks scope {}", scope.as_str()),
                &format!("This needs a token with the {} scope.", scope.as_str()),
            );
        }
        if !principal.role.allows(role) {
            return deny(
                &actor,
                StatusCode::FORBIDDEN,
                &format!("needs role {}", role.as_str()),
                &format!("This needs the {} role.", role.as_str()),
            );
        }
        request.extensions_mut().insert(Session {
            user: principal.user,
            role: principal.role,
            csrf_token: String::new(),
            created_at: Utc::now(),
            token: Some(principal.name),
            timezone: chrono_tz::UTC,
        });
        return next.run(request).await;
    }

    let jar = CookieJar::from_headers(request.headers());
    let token = jar
        .get(state.session_cookie())
        .map(|c| c.value().to_owned());
    let session = match &token {
        Some(token) => match state.sessions().validate(token, Utc::now()) {
            Ok(session) => session,
            Err(e) => {
                tracing::error!(error = %e, "cannot check a session");
                return refusal(
                    api,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sessions are unavailable.",
                );
            }
        },
        None => None,
    };
    // Behind a trusted proxy, its header names the user: a session is opened
    // (or kept) for them, so forms and CSRF work as after a password sign-in.
    let mut issued = None;
    let public = matches!(policy, Some(Access::Public));
    let session = match proxy_user(&request, proxy).filter(|_| !public) {
        Some(user) if session.as_ref().is_none_or(|s| s.user != user) => {
            let role = match state.sessions().role_of(&user) {
                Ok(role) => role,
                Err(e) => {
                    tracing::error!(error = %e, "cannot look up a proxied user");
                    return refusal(
                        api,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Sessions are unavailable.",
                    );
                }
            };
            let Some(role) = role else {
                return deny(
                    &user,
                    StatusCode::FORBIDDEN,
                    "proxied user unknown to pipewatch",
                    &format!(
                        "{user} is not a pipewatch user; an admin can add them with `pipewatch users add`."
                    ),
                );
            };
            let created = state.sessions().create(
                &user,
                role,
                token.as_deref(),
                Some(&address.0),
                Utc::now(),
            );
            match created {
                Ok(new) => {
                    state.audit(
                        &user,
                        &address,
                        "login",
                        None,
                        "ok",
                        Some("signed in by the trusted proxy"),
                    );
                    issued = Some(new.token);
                    Some(new.session)
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot open a session");
                    return refusal(
                        api,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Sessions are unavailable.",
                    );
                }
            }
        }
        _ => session,
    };
    let actor = session
        .as_ref()
        .map_or_else(|| "-".to_owned(), Session::actor);
    if method == Method::POST && !same_origin(&request) {
        return deny(
            &actor,
            StatusCode::FORBIDDEN,
            "cross-origin request",
            "Cross-origin requests are refused.",
        );
    }
    let needed = match policy {
        Some(Access::Public) => {
            if let Some(session) = session {
                request.extensions_mut().insert(session);
            }
            return next.run(request).await;
        }
        Some(Access::AtLeast(role) | Access::Api(role, _)) => role,
        None => {
            tracing::error!(%method, path, "route without an access policy refused");
            return deny(
                &actor,
                StatusCode::FORBIDDEN,
                "route has no access policy",
                "This page has no access policy.",
            );
        }
    };
    let Some(session) = session else {
        if method == Method::GET && !api {
            let next_path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let target = format!(
                "/login?next={}",
                form_urlencoded::byte_serialize(next_path.as_bytes()).collect::<String>()
            );
            return Redirect::to(&target).into_response();
        }
        return refusal(
            api,
            StatusCode::UNAUTHORIZED,
            "Sign in first, or send an API token.",
        );
    };
    if !session.role.allows(needed) {
        return deny(
            &actor,
            StatusCode::FORBIDDEN,
            &format!("needs role {}", needed.as_str()),
            &format!("This needs the {} role.", needed.as_str()),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return refusal(
                api,
                StatusCode::PAYLOAD_TOO_LARGE,
                "The request is too large.",
            );
        };
        let given = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| form_csrf(&bytes));
        if !given.is_some_and(|g| tokens_match(&g, &session.csrf_token)) {
            return deny(
                &actor,
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token",
                "The form expired or did not come from pipewatch; reload the page and try again.",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    let mut response = next.run(request).await;
    if let Some(token) = issued {
        let cookie = auth::cookie(&state, state.session_cookie(), token);
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    fn app_with(extra: Router<AppState>) -> (tempfile::TempDir, AppState, Router) {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = state(dir.path(), DashboardSettings::default()).expect("state");
        let app = guarded(routes().merge(extra), state.clone());
        (dir, state, app)
    }

    fn admin_cookie(state: &AppState) -> String {
        state
            .users()
            .add("root", Role::Admin, "a long enough password", Utc::now())
            .expect("add");
        let new = state
            .sessions()
            .create("root", Role::Admin, None, None, Utc::now())
            .expect("session");
        format!("{PLAIN_SESSION_COOKIE}={}", new.token)
    }

    #[tokio::test]
    async fn a_route_without_a_policy_is_refused_even_to_an_admin() {
        async fn unlisted() -> &'static str {
            "secret"
        }
        let (_dir, state, app) = app_with(Router::new().route("/unlisted", get(unlisted)));
        let cookie = admin_cookie(&state);
        let response = app
            .oneshot(
                Request::get("/unlisted")
                    .header(header::COOKIE, cookie)
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(response.headers().contains_key("content-security-policy"));
    }

    #[tokio::test]
    async fn every_policy_entry_is_a_route() {
        let (_dir, state, app) = app_with(Router::new());
        let cookie = admin_cookie(&state);
        for (method, path, _) in POLICY {
            let uri = path.replace("{alert_id}", "0000");
            let response = app
                .clone()
                .oneshot(
                    Request::builder()
                        .method(method.clone())
                        .uri(&uri)
                        .header(header::COOKIE, &cookie)
                        .body(Body::empty())
                        .expect("request"),
                )
                .await
                .expect("response");
            assert_ne!(
                response.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            // Only the made-up alert id may be missing.
            if !path.contains('{') {
                assert_ne!(response.status(), StatusCode::NOT_FOUND, "{method} {path}");
            }
        }
    }
}
