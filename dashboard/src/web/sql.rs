//! SQL for analysts: the console page (editor, results, CSV download, saved
//! and example queries) and `POST /api/sql` (JSON, CSV or Arrow IPC) for
//! scripts. Every query goes through the read-only guard and the limits,
//! and every run and export is audited.

use std::time::Instant;

use askama::Template;
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use pipewatch_analytics::query::OutputFormat;
use pipewatch_analytics::{QueryError, QueryOutput, render as render_output};
use serde::Deserialize;

use super::view::{self, Moment, Nav, render};
use super::{AppState, ClientAddress};
use crate::sessions::Session;
use crate::users::Role;

/// Rows the console shows; the CSV download has them all (up to the row limit).
const SHOWN_ROWS: usize = 500;
/// Characters of one cell the console shows.
const SHOWN_CELL_CHARS: usize = 400;
/// Characters of a statement kept in the audit log.
const AUDITED_SQL_CHARS: usize = 2_000;

/// Investigations analysts start from; each is a link that fills the editor.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Everything one actor did in the last day of data",
        "WITH newest AS (SELECT max(event_time) AS t FROM events)\n\
         SELECT event_time, category, action, outcome, repo, target_name\n\
         FROM events, newest\n\
         WHERE actor = (SELECT actor FROM events WHERE actor IS NOT NULL GROUP BY actor ORDER BY count(*) DESC LIMIT 1)\n  \
         AND event_time > newest.t - INTERVAL '1 day'\n\
         ORDER BY event_time DESC\nLIMIT 200",
    ),
    (
        "Denied secret reads, newest first",
        "SELECT event_time, actor, identity_kind, target_name, client_address\n\
         FROM secret_access WHERE outcome = 'denied'\nORDER BY event_time DESC\nLIMIT 100",
    ),
    (
        "Which identities read each secret, and how",
        "SELECT target_name AS secret, identity_kind, count(DISTINCT identity_id) AS identities, count(*) AS reads\n\
         FROM secret_access\nGROUP BY target_name, identity_kind\nORDER BY reads DESC\nLIMIT 100",
    ),
    (
        "Jobs on persistent self-hosted runners",
        "SELECT repo, cicd_pipeline_name, cicd_worker_name, count(*) AS jobs\n\
         FROM pipeline_jobs\nWHERE runner_ephemeral = false\n\
         GROUP BY repo, cicd_pipeline_name, cicd_worker_name\nORDER BY jobs DESC\nLIMIT 100",
    ),
    (
        "Production deployments without an approval",
        "SELECT event_time, repo, actor, deployment_environment_name, deploy_strategy, approval_state\n\
         FROM deployments\nWHERE deployment_environment_name ILIKE '%prod%' AND (approval_state IS NULL OR approval_state <> 'approved')\n\
         ORDER BY event_time DESC\nLIMIT 100",
    ),
    (
        "Job duration percentiles per workflow",
        "SELECT repo, cicd_pipeline_name, count(*) AS jobs,\n  \
         approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,\n  \
         approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms\n\
         FROM pipeline_jobs WHERE duration_ms IS NOT NULL\nGROUP BY repo, cicd_pipeline_name\nORDER BY p95_ms DESC\nLIMIT 50",
    ),
    (
        "Open alerts by detector",
        "SELECT detector, severity, count(*) AS alerts, max(last_event_time) AS latest\n\
         FROM alerts WHERE status = 'open'\nGROUP BY detector, severity\nORDER BY alerts DESC",
    ),
];

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConsoleQuery {
    #[serde(default)]
    q: String,
}

struct SavedRow {
    query_id: i64,
    name: String,
    sql: String,
    link: String,
    owner: String,
    saved_at: Moment,
    deletable: bool,
}

struct Example {
    title: &'static str,
    link: String,
}

#[derive(Template)]
#[template(path = "sql.html")]
struct ConsolePage {
    nav: Nav,
    sql: String,
    export_link: String,
    columns: Vec<String>,
    rows: Vec<Vec<String>>,
    total_rows: usize,
    elapsed_ms: u128,
    error: Option<String>,
    ran: bool,
    saved: Vec<SavedRow>,
    examples: Vec<Example>,
    tables: String,
}

fn console_link(sql: &str) -> String {
    format!(
        "/sql?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("q", sql)
            .finish()
    )
}

fn table_of(output: &QueryOutput, max_rows: usize) -> (Vec<String>, Vec<Vec<String>>) {
    let columns = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    (
        columns,
        view::result_rows(output, max_rows, SHOWN_CELL_CHARS),
    )
}

/// Runs `sql` for `session` (admins also see the audit log), audited as `action`.
async fn run_audited(
    state: &AppState,
    session: &Session,
    address: &ClientAddress,
    action: &str,
    sql: &str,
) -> Result<(QueryOutput, u128), QueryError> {
    let started = Instant::now();
    let lake = state.lake_for(session.role).await;
    let result = match lake {
        Ok(lake) => lake.query(sql).await,
        Err(e) => Err(e),
    };
    let elapsed = started.elapsed().as_millis();
    let statement = view::clip(sql, AUDITED_SQL_CHARS);
    match &result {
        Ok(out) => state.audit(
            &session.actor(),
            address,
            action,
            Some(&statement),
            "ok",
            Some(&format!("{} rows in {elapsed} ms", out.rows)),
        ),
        Err(e) => state.audit(
            &session.actor(),
            address,
            action,
            Some(&statement),
            if matches!(e, QueryError::Refused(_)) {
                "refused"
            } else {
                "failed"
            },
            Some(&e.to_string()),
        ),
    }
    result.map(|out| (out, elapsed))
}

pub(crate) async fn console(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    Query(query): Query<ConsoleQuery>,
) -> Response {
    let sql = query.q.trim().to_owned();
    let mut page = ConsolePage {
        nav: Nav::new(&session, "sql"),
        export_link: format!(
            "/sql/export?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("q", &sql)
                .finish()
        ),
        sql: sql.clone(),
        columns: Vec::new(),
        rows: Vec::new(),
        total_rows: 0,
        elapsed_ms: 0,
        error: None,
        ran: false,
        saved: Vec::new(),
        examples: EXAMPLES
            .iter()
            .map(|(title, sql)| Example {
                title,
                link: console_link(sql),
            })
            .collect(),
        tables: pipewatch_analytics::query::allowed_tables().join(", "),
    };
    if session.role.allows(Role::Admin) {
        page.tables.push_str(", ");
        page.tables.push_str(crate::audit::AUDIT_TABLE);
    }
    if !sql.is_empty() {
        page.ran = true;
        match run_audited(&state, &session, &address, "sql", &sql).await {
            Ok((out, elapsed)) => {
                let (columns, rows) = table_of(&out, SHOWN_ROWS);
                page.columns = columns;
                page.rows = rows;
                page.total_rows = out.rows;
                page.elapsed_ms = elapsed;
            }
            Err(e) => page.error = Some(e.to_string()),
        }
    }
    match state.saved().list() {
        Ok(saved) => {
            page.saved = saved
                .into_iter()
                .map(|q| SavedRow {
                    query_id: q.query_id,
                    link: console_link(&q.sql),
                    deletable: q.owner == session.user || session.role.allows(Role::Admin),
                    name: q.name,
                    sql: q.sql,
                    owner: q.owner,
                    saved_at: Moment::new(q.saved_at, session.timezone),
                })
                .collect();
        }
        Err(e) => tracing::error!(error = %e, "cannot list saved queries"),
    }
    let status = if page.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (status, render(&page)).into_response()
}

/// `GET /sql/export?q=`: the whole result as a CSV download.
pub(crate) async fn export(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    Query(query): Query<ConsoleQuery>,
) -> Response {
    let sql = query.q.trim();
    if sql.is_empty() {
        return view::error_page(StatusCode::BAD_REQUEST, "Write a query to export.");
    }
    match run_audited(&state, &session, &address, "export", sql).await {
        Ok((out, _)) => match render_output(&out, OutputFormat::Csv) {
            Ok(csv) => (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!(
                            "attachment; filename=\"pipewatch-{}.csv\"",
                            Utc::now().format("%Y%m%d-%H%M%S")
                        ),
                    ),
                ],
                csv,
            )
                .into_response(),
            Err(e) => view::error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        Err(e) => view::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `POST /sql/saved`: saves the editor's query under a name.
pub(crate) async fn save(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    body: Bytes,
) -> Response {
    let (mut name, mut sql) = (String::new(), String::new());
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "name" => name = value.into_owned(),
            "q" => sql = value.into_owned(),
            _ => {}
        }
    }
    match state.saved().save(&name, &sql, &session.user, Utc::now()) {
        Ok(saved) => {
            state.audit(
                &session.actor(),
                &address,
                "sql.save",
                Some(&saved.name),
                "ok",
                None,
            );
            Redirect::to(&console_link(&saved.sql)).into_response()
        }
        Err(e) => view::error_page(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `POST /sql/saved/delete`: removes a saved query (its owner or an admin).
pub(crate) async fn delete(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    body: Bytes,
) -> Response {
    let query_id = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "query_id")
        .and_then(|(_, value)| value.parse::<i64>().ok());
    let Some(query_id) = query_id else {
        return view::error_page(StatusCode::BAD_REQUEST, "Which saved query?");
    };
    let deleted = state
        .saved()
        .delete(query_id, &session.user, session.role.allows(Role::Admin));
    match deleted {
        Ok(query) => {
            state.audit(
                &session.actor(),
                &address,
                "sql.delete",
                Some(&query.name),
                "ok",
                None,
            );
            Redirect::to("/sql").into_response()
        }
        Err(e) => {
            state.audit(
                &session.actor(),
                &address,
                "sql.delete",
                Some(&query_id.to_string()),
                "refused",
                Some(&e.to_string()),
            );
            view::error_page(StatusCode::FORBIDDEN, &e.to_string())
        }
    }
}

#[derive(Debug, Deserialize)]
struct ApiRequest {
    sql: String,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ApiQuery {
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiFormat {
    Json,
    Csv,
    Arrow,
}

const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

fn api_format(asked: Option<&str>, headers: &HeaderMap) -> Result<ApiFormat, String> {
    match asked {
        Some("json") => return Ok(ApiFormat::Json),
        Some("csv") => return Ok(ApiFormat::Csv),
        Some("arrow") => return Ok(ApiFormat::Arrow),
        Some(other) => return Err(format!("unknown format `{other}`: json, csv or arrow")),
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(if accept.contains(ARROW_STREAM) {
        ApiFormat::Arrow
    } else if accept.contains("text/csv") {
        ApiFormat::Csv
    } else {
        ApiFormat::Json
    })
}

fn api_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

fn arrow_ipc(output: &QueryOutput) -> Result<Vec<u8>, datafusion::arrow::error::ArrowError> {
    let mut bytes = Vec::new();
    {
        let mut writer =
            datafusion::arrow::ipc::writer::StreamWriter::try_new(&mut bytes, &output.schema)?;
        for batch in &output.batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    Ok(bytes)
}

/// `POST /api/sql`: `{"sql": "...", "format": "json|csv|arrow"}` (or the
/// statement as plain text), answered in the asked format.
pub(crate) async fn api(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Extension(address): Extension<ClientAddress>,
    Query(query): Query<ApiQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let (sql, body_format) = if is_json {
        match serde_json::from_slice::<ApiRequest>(&body) {
            Ok(request) => (request.sql, request.format),
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("the body must be {{\"sql\": \"...\"}}: {e}"),
                );
            }
        }
    } else {
        (String::from_utf8_lossy(&body).into_owned(), None)
    };
    let format = match api_format(query.format.as_deref().or(body_format.as_deref()), &headers) {
        Ok(format) => format,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, &e),
    };
    if sql.trim().is_empty() {
        return api_error(StatusCode::BAD_REQUEST, "no statement given");
    }
    let (out, _) = match run_audited(&state, &session, &address, "sql", sql.trim()).await {
        Ok(result) => result,
        Err(e) => {
            let status = match e {
                QueryError::Refused(_) | QueryError::Invalid(_) => StatusCode::BAD_REQUEST,
                QueryError::Lake { .. } => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            return api_error(status, &e.to_string());
        }
    };
    let rendered = match format {
        ApiFormat::Json => render_output(&out, OutputFormat::Json)
            .map(|text| ("application/json", text.into_bytes()))
            .map_err(|e| e.to_string()),
        ApiFormat::Csv => render_output(&out, OutputFormat::Csv)
            .map(|text| ("text/csv; charset=utf-8", text.into_bytes()))
            .map_err(|e| e.to_string()),
        ApiFormat::Arrow => arrow_ipc(&out)
            .map(|bytes| (ARROW_STREAM, bytes))
            .map_err(|e| e.to_string()),
    };
    match rendered {
        Ok((content_type, bytes)) => {
            ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}
