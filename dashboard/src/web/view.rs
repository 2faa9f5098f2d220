//! What every page shares: rendering a template into a response, the error
//! page, the navigation bar, and how times and numbers are shown.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};

use crate::sessions::Session;
use crate::users::Role;

/// The signed-in user, for the navigation bar and every form's CSRF field.
#[derive(Debug, Clone)]
pub(crate) struct Nav {
    pub(crate) user: String,
    pub(crate) role: &'static str,
    pub(crate) csrf: String,
    pub(crate) can_respond: bool,
    pub(crate) is_admin: bool,
    /// Which page is open (`overview`, `alerts`, `audit`).
    pub(crate) current: &'static str,
}

impl Nav {
    pub(crate) fn new(session: &Session, current: &'static str) -> Self {
        Nav {
            user: session.user.clone(),
            role: session.role.as_str(),
            csrf: session.csrf_token.clone(),
            can_respond: session.role.allows(Role::Responder),
            is_admin: session.role.allows(Role::Admin),
            current,
        }
    }
}

/// A point in time: machine-readable UTC, and as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moment {
    pub(crate) utc: String,
    pub(crate) shown: String,
}

impl Moment {
    pub(crate) fn new(t: DateTime<Utc>) -> Self {
        Moment {
            utc: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            shown: t.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

/// Renders `page`; a template failure is a 500, logged.
pub(crate) fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render this page").into_response()
        }
    }
}

/// A plain error page with `status`.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("Error"),
        message,
    };
    (status, render(&page)).into_response()
}

/// A metric value in its unit: shares as percentages, hours with one decimal.
pub(crate) fn format_value(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "–".to_owned(),
        Some(v) if unit == "share" => format!("{:.1}%", v * 100.0),
        Some(v) if unit == "hours" => format!("{v:.1} h"),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}
