//! Admin pages: users (add, change role, reset password, remove) and API
//! tokens (revoke) at `/admin/users`; the settings in force, the route
//! policy and the notification destinations' delivery state at
//! `/admin/settings`. Every change is audited.

use std::collections::BTreeMap;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use pipewatch_analytics::notify::notifications;

use super::view::{self, Moment, Nav, render};
use super::{Access, AppState, ClientAddress, POLICY};
use crate::sessions::Session;
use crate::users::{Role, generate_password};

struct UserRow {
    name: String,
    role: &'static str,
    created: Moment,
    password_changed: Moment,
}

struct TokenRow {
    name: String,
    user: String,
    scopes: String,
    expires: Option<Moment>,
    last_used: Option<Moment>,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    nav: Nav,
    users: Vec<UserRow>,
    tokens: Vec<TokenRow>,
    roles: Vec<&'static str>,
    /// A password just set, shown once.
    issued: Option<(String, String)>,
}

fn users_page(state: &AppState, session: &Session, issued: Option<(String, String)>) -> Response {
    let users = match state.users().list() {
        Ok(users) => users,
        Err(e) => return view::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let tokens = match state.tokens().list() {
        Ok(tokens) => tokens,
        Err(e) => return view::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    let tz = session.timezone;
    let page = UsersPage {
        nav: Nav::new(session, "admin"),
        users: users
            .into_iter()
            .map(|u| UserRow {
                name: u.name,
                role: u.role.as_str(),
                created: Moment::new(u.created_at, tz),
                password_changed: Moment::new(u.password_changed_at, tz),
            })
            .collect(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow {
                name: t.name,
                user: t.user,
                scopes: t
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                expires: t.expires_at.map(|at| Moment::new(at, tz)),
                last_used: t.last_used_at.map(|at| Moment::new(at, tz)),
            })
            .collect(),
        roles: [Role::Viewer, Role::Responder, Role::Admin]
            .iter()
            .map(|r| r.as_str())
            .collect(),
        issued,
    };
    render(&page)
}

/// `GET /admin/users`.
pub(crate) async fn users(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    users_page(&state, &session, None)
}

/// `POST /admin/users`: `action` = `add`, `role`, `password`, `remove` or
/// `revoke_token`, on `name` (and `role`).
pub(crate) async fn change_user(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    body: Bytes,
) -> Response {
    let (mut action, mut name, mut role, mut confirm) =
        (String::new(), String::new(), String::new(), false);
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "action" => action = value.into_owned(),
            "name" => name = value.trim().to_owned(),
            "role" => role = value.into_owned(),
            "confirm" => confirm = value == "yes",
            _ => {}
        }
    }
    if name.is_empty() {
        return view::error_page(StatusCode::BAD_REQUEST, "Name a user or token.");
    }
    let now = Utc::now();
    let role = Role::parse(&role);
    let mut issued = None;
    let result = match (action.as_str(), role) {
        ("add", Some(role)) => {
            let password = generate_password();
            let added = state.users().add(&name, role, &password, now);
            added.map(|_| {
                issued = Some((name.clone(), password));
                format!("role {}", role.as_str())
            })
        }
        ("role", Some(role)) => state
            .users()
            .set_role(&name, role)
            .map(|_| format!("role {}", role.as_str())),
        ("password", _) => {
            let password = generate_password();
            let set = state.users().set_password(&name, &password, now);
            set.map(|()| {
                issued = Some((name.clone(), password));
                "password reset".to_owned()
            })
        }
        ("remove", _) if !confirm => {
            return view::error_page(
                StatusCode::BAD_REQUEST,
                "Tick the confirmation to remove a user.",
            );
        }
        ("remove", _) if name == session.user => {
            return view::error_page(
                StatusCode::CONFLICT,
                "You cannot remove yourself; another admin can.",
            );
        }
        ("remove", _) => state.users().remove(&name).map(|()| "removed".to_owned()),
        ("revoke_token", _) => state
            .tokens()
            .revoke(&name)
            .map(|()| "token revoked".to_owned()),
        ("add" | "role", None) => {
            return view::error_page(StatusCode::BAD_REQUEST, "Choose a role.");
        }
        _ => return view::error_page(StatusCode::BAD_REQUEST, "Choose an action."),
    };
    let audit_action = format!("admin.{action}");
    match result {
        Ok(detail) => {
            state.audit(
                &session.actor(),
                &address,
                &audit_action,
                Some(&name),
                "ok",
                Some(&detail),
            );
            match issued {
                // The new password is shown once, on this response only.
                Some(issued) => users_page(&state, &session, Some(issued)),
                None => Redirect::to("/admin/users").into_response(),
            }
        }
        Err(e) => {
            state.audit(
                &session.actor(),
                &address,
                &audit_action,
                Some(&name),
                "refused",
                Some(&e.to_string()),
            );
            view::error_page(StatusCode::CONFLICT, &e.to_string())
        }
    }
}

struct Setting {
    name: &'static str,
    value: String,
}

struct PolicyRow {
    method: String,
    path: &'static str,
    who: String,
}

struct DestinationRow {
    route: String,
    destination: String,
    delivered: usize,
    pending: usize,
    failed: usize,
    last_error: String,
}

#[derive(Template)]
#[template(path = "admin_settings.html")]
struct SettingsPage {
    nav: Nav,
    settings: Vec<Setting>,
    policy: Vec<PolicyRow>,
    destinations: Vec<DestinationRow>,
}

/// `GET /admin/settings`: what is in force (set in the configuration file).
pub(crate) async fn settings(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let s = &state.0.settings;
    let minutes = |d: std::time::Duration| format!("{} min", d.as_secs() / 60);
    // Held for the whole first build: this page says so rather than wait.
    let rollups = state.0.rollups.try_lock().map(|slot| slot.clone());
    let mut settings = vec![
        Setting {
            name: "Data directory",
            value: state.data_dir().display().to_string(),
        },
        Setting {
            name: "Secure cookies (HTTPS, __Host- prefix, HSTS)",
            value: s.secure_cookies.to_string(),
        },
        Setting {
            name: "Session idle timeout",
            value: minutes(s.sessions.idle),
        },
        Setting {
            name: "Session absolute timeout",
            value: minutes(s.sessions.absolute),
        },
        Setting {
            name: "Failed sign-ins allowed per user / per address",
            value: format!("{} / {}", s.throttle.per_user, s.throttle.per_address),
        },
        Setting {
            name: "Sign-in throttling window",
            value: minutes(s.throttle.window),
        },
        Setting {
            name: "Page query limits",
            value: format!(
                "{} MiB, {} s, {} rows",
                s.query_limits.memory_bytes / (1024 * 1024),
                s.query_limits.timeout.as_secs(),
                s.query_limits.max_rows
            ),
        },
        Setting {
            name: "Lake view reused for",
            value: format!("{} s", s.lake_refresh.as_secs()),
        },
        Setting {
            name: "Trusted reverse-proxy sign-in",
            value: match &s.proxy_auth {
                Some(proxy) => format!(
                    "header {} from {}",
                    proxy.header,
                    proxy
                        .trusted
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None => "off".to_owned(),
            },
        },
        Setting {
            name: "Ingest in this process",
            value: if s.ingest.0.is_some() { "yes" } else { "no" }.to_owned(),
        },
    ];
    settings.push(Setting {
        name: "Daily rollups",
        value: match rollups {
            Err(_) => "being built for the first time".to_owned(),
            Ok(Some(r)) => format!(
                "built {} in {} ms{}",
                Moment::new(r.built_at(), session.timezone).shown,
                r.took().as_millis(),
                if state.rollups_refreshing() {
                    "; a rebuild for newer data is running"
                } else {
                    ""
                }
            ),
            Ok(None) => "not built yet (the first overview builds them)".to_owned(),
        },
    });
    let policy = POLICY
        .iter()
        .map(|(method, path, access)| PolicyRow {
            method: method.to_string(),
            path,
            who: match access {
                Access::Public => "anyone".to_owned(),
                Access::AtLeast(role) => format!("{} and above", role.as_str()),
                Access::Api(role, scope) => format!(
                    "{} and above, or a token with scope {}",
                    role.as_str(),
                    scope.as_str()
                ),
            },
        })
        .collect();
    let mut by_destination: BTreeMap<(String, String), DestinationRow> = BTreeMap::new();
    match notifications(state.data_dir()) {
        Ok(records) => {
            for record in records {
                let row = by_destination
                    .entry((record.route.clone(), record.destination.clone()))
                    .or_insert_with(|| DestinationRow {
                        route: record.route.clone(),
                        destination: record.destination.clone(),
                        delivered: 0,
                        pending: 0,
                        failed: 0,
                        last_error: String::new(),
                    });
                match record.status.as_str() {
                    "delivered" | "folded" => row.delivered += 1,
                    "failed" => row.failed += 1,
                    _ => row.pending += 1,
                }
                if let Some(error) = record.last_error {
                    row.last_error = error;
                }
            }
        }
        Err(e) => return view::error_page(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
    render(&SettingsPage {
        nav: Nav::new(&session, "admin"),
        settings,
        policy,
        destinations: by_destination.into_values().collect(),
    })
}
