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
    /// The timezone times are shown in.
    pub(crate) timezone: chrono_tz::Tz,
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
            timezone: session.timezone,
        }
    }

    /// `t` as this user reads it.
    pub(crate) fn moment(&self, t: DateTime<Utc>) -> Moment {
        Moment::new(t, self.timezone)
    }
}

/// A point in time: machine-readable UTC (also shown on hover), and as
/// shown in the viewer's timezone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moment {
    pub(crate) utc: String,
    pub(crate) shown: String,
}

impl Moment {
    pub(crate) fn new(t: DateTime<Utc>, timezone: chrono_tz::Tz) -> Self {
        Moment {
            utc: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            shown: t
                .with_timezone(&timezone)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string(),
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

/// Up to `max_rows` rows of a query result as text, each cell cut to
/// `cell_chars` characters.
pub(crate) fn result_rows(
    output: &pipewatch_analytics::QueryOutput,
    max_rows: usize,
    cell_chars: usize,
) -> Vec<Vec<String>> {
    use datafusion::arrow::util::display::array_value_to_string;
    let mut rows = Vec::new();
    'batches: for batch in &output.batches {
        for row in 0..batch.num_rows() {
            if rows.len() >= max_rows {
                break 'batches;
            }
            rows.push(
                batch
                    .columns()
                    .iter()
                    .map(|c| {
                        clip(
                            &array_value_to_string(c, row).unwrap_or_default(),
                            cell_chars,
                        )
                    })
                    .collect(),
            );
        }
    }
    rows
}

/// `text` cut to `chars` characters, with an ellipsis when cut.
pub(crate) fn clip(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}
