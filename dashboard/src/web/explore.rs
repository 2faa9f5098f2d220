//! The investigation pages read from the lake: ingestion (rates per source
//! and the dead-letter browser), secrets (who and what reads each one, and
//! how), repositories and their pipelines. Each page is a list of sections
//! answered by SQL and drawn by one template.

use std::collections::BTreeMap;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::DataType;
use pipewatch_analytics::QueryOutput;
use pipewatch_analytics::metrics::{EVENT_COUNTS, Summary};
use serde::Deserialize;

use super::AppState;
use super::view::{self, Moment, Nav, render};
use crate::charts;
use crate::sessions::Session;

/// Characters of one cell shown (samples and messages can be long).
const CELL_CHARS: usize = 300;

/// One table cell: its text and, where it leads somewhere, a link; a time
/// is shown in the viewer's timezone.
pub(crate) struct Cell {
    pub(crate) text: String,
    pub(crate) link: Option<String>,
    pub(crate) time: Option<Moment>,
}

/// One table row, with its chart when the section draws one per row.
pub(crate) struct Row {
    pub(crate) cells: Vec<Cell>,
    pub(crate) chart: Option<String>,
}

/// A titled table, optionally with a chart per row in its last column.
pub(crate) struct Section {
    pub(crate) title: String,
    pub(crate) note: String,
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Row>,
    pub(crate) has_charts: bool,
    /// The console, prepared with this section's query.
    pub(crate) sql_link: String,
}

#[derive(Template)]
#[template(path = "explore.html")]
struct ExplorePage {
    nav: Nav,
    title: String,
    intro: String,
    sections: Vec<Section>,
}

/// `'text'` as an SQL string literal.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn link(path: &str, pairs: &[(&str, &str)]) -> String {
    format!(
        "{path}?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish()
    )
}

pub(crate) fn console_link(sql: &str) -> String {
    link("/sql", &[("q", sql)])
}

/// Which columns of the result hold times.
fn time_columns(output: &QueryOutput) -> Vec<bool> {
    output
        .schema
        .fields()
        .iter()
        .map(|f| matches!(f.data_type(), DataType::Timestamp(_, _)))
        .collect()
}

/// A timestamp as Arrow displays it (`2026-10-18T11:44:28.5Z`, or without a
/// zone for UTC-naive columns).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
}

/// The result as text: column names and rows.
fn text_table(output: &QueryOutput) -> (Vec<String>, Vec<Vec<String>>) {
    let columns = output
        .schema
        .fields()
        .iter()
        .map(|f| f.name().replace('_', " "))
        .collect();
    (columns, view::result_rows(output, usize::MAX, CELL_CHARS))
}

/// How a section's cells link: column index → page and its parameter, or
/// an extra parameter pinned to another column.
pub(crate) type Links<'a> = &'a [(usize, &'a str, &'a str)];

pub(crate) struct Shown<'a> {
    pub(crate) title: &'a str,
    pub(crate) note: &'a str,
    pub(crate) sql: String,
    pub(crate) links: Links<'a>,
}

pub(crate) async fn section(
    state: &AppState,
    timezone: chrono_tz::Tz,
    shown: Shown<'_>,
) -> Result<Section, Response> {
    let lake = state
        .lake()
        .await
        .map_err(|e| unavailable("The lake cannot be read", e))?;
    let output = lake
        .query(&shown.sql)
        .await
        .map_err(|e| unavailable(&format!("`{}` cannot be computed", shown.title), e))?;
    Ok(section_of(&output, timezone, shown))
}

/// A section showing `output`, whose "Open this in SQL" link is `shown.sql`.
pub(crate) fn section_of(
    output: &QueryOutput,
    timezone: chrono_tz::Tz,
    shown: Shown<'_>,
) -> Section {
    let times = time_columns(output);
    let (columns, rows) = text_table(output);
    let rows = rows
        .into_iter()
        .map(|row| Row {
            cells: row
                .iter()
                .enumerate()
                .map(|(i, text)| Cell {
                    link: shown
                        .links
                        .iter()
                        .find(|(column, _, _)| *column == i)
                        .filter(|_| !text.is_empty())
                        .map(|(_, path, param)| link(path, &[(param, text)])),
                    time: times
                        .get(i)
                        .copied()
                        .unwrap_or(false)
                        .then(|| parse_time(text))
                        .flatten()
                        .map(|t| Moment::new(t, timezone)),
                    text: text.clone(),
                })
                .collect(),
            chart: None,
        })
        .collect();
    Section {
        title: shown.title.to_owned(),
        note: shown.note.to_owned(),
        columns,
        rows,
        has_charts: false,
        sql_link: console_link(&shown.sql),
    }
}

/// Summaries of the whole lake that pages read instead of scanning it,
/// rebuilt with the rollups.
pub(crate) const SUMMARIES: &[Summary] = &[Summary {
    table: "summary_repositories",
    sql: REPOSITORIES_SQL,
}];

/// Every repository's activity over all stored history.
const REPOSITORIES_SQL: &str = "SELECT repo, count(*) AS events,
    count(DISTINCT CASE WHEN category = 'pipeline_run' THEN cicd_pipeline_run_id END) AS runs,
    sum(CASE WHEN category = 'pipeline_job' AND runner_ephemeral = false THEN 1 ELSE 0 END) AS jobs_on_persistent_runners,
    sum(CASE WHEN category = 'secret_access' THEN 1 ELSE 0 END) AS secret_reads,
    sum(CASE WHEN category = 'deployment' THEN 1 ELSE 0 END) AS deployment_events,
    sum(CASE WHEN category = 'finding' THEN 1 ELSE 0 END) AS findings,
    max(event_time) AS last_event
  FROM events WHERE repo IS NOT NULL GROUP BY repo";

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what}");
    view::error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{what}. Try again shortly."),
    )
}

fn page(
    session: &Session,
    current: &'static str,
    title: String,
    intro: String,
    sections: Vec<Section>,
) -> Response {
    render(&ExplorePage {
        nav: Nav::new(session, current),
        title,
        intro,
        sections,
    })
}

/// One source's events over the last buckets (hours or days) of data.
pub(crate) struct SourceRate {
    pub(crate) source: String,
    pub(crate) total: u64,
    /// Events in the newest bucket.
    pub(crate) latest: u64,
    pub(crate) chart: String,
}

/// Rates per source from `(source, bucket, count)` rows, over the `buckets`
/// ending at the newest bucket of any source (empty buckets count zero),
/// busiest source first.
pub(crate) fn source_rates(rows: &[Vec<String>], buckets: i64) -> Vec<SourceRate> {
    let mut per_source: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for row in rows {
        if let [source, bucket, n] = row.as_slice() {
            per_source
                .entry(source.clone())
                .or_default()
                .insert(bucket.parse().unwrap_or(0), n.parse().unwrap_or(0));
        }
    }
    let last = per_source
        .values()
        .filter_map(|b| b.keys().max().copied())
        .max()
        .unwrap_or(0);
    let mut rates: Vec<SourceRate> = per_source
        .into_iter()
        .map(|(source, counts)| {
            let series: Vec<Option<f64>> = (last - (buckets - 1)..=last)
                .map(|b| Some(counts.get(&b).copied().unwrap_or(0) as f64))
                .collect();
            SourceRate {
                source,
                total: counts.values().sum(),
                latest: counts.get(&last).copied().unwrap_or(0),
                chart: charts::trend(&series, None),
            }
        })
        .collect();
    rates.sort_by_key(|r| std::cmp::Reverse(r.total));
    rates
}

/// The newest event's time, as SQL, for windows that end at the data.
const NEWEST: &str = "(SELECT max(event_time) FROM events)";

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IngestQuery {
    #[serde(default)]
    source: String,
    #[serde(default)]
    reason: String,
}

/// `/ingestion`: events per source per day, and the dead-letter browser.
pub(crate) async fn ingestion(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<IngestQuery>,
) -> Response {
    let daily_sql = format!(
        "SELECT source, CAST(floor(date_part('epoch', event_time) / 86400) AS BIGINT) AS day, count(*) AS n
         FROM events WHERE event_time > {NEWEST} - INTERVAL '14 days'
         GROUP BY source, day ORDER BY source, day"
    );
    // The page counts from the hourly rollup; the SQL link reads the lake.
    let rollups = match state.rollups().await {
        Ok(rollups) => rollups,
        Err(e) => return unavailable("Ingest rates cannot be read", e),
    };
    let daily = rollups
        .service()
        .query(&format!(
            "WITH newest AS (SELECT max(hour) AS h FROM {EVENT_COUNTS})
             SELECT source, hour / 24 AS day, CAST(sum(events) AS BIGINT) AS n
             FROM {EVENT_COUNTS}, newest WHERE hour > newest.h - 14 * 24
             GROUP BY source, day ORDER BY source, day"
        ))
        .await;
    let daily = match daily {
        Ok(out) => text_table(&out).1,
        Err(e) => return unavailable("Ingest rates cannot be read", e),
    };
    let mut rates = Section {
        title: "Events per source, last 14 days of data".into(),
        note: "Daily counts; a source that goes quiet shows as a drop to zero.".into(),
        columns: vec!["source".into(), "events".into(), "last day".into()],
        rows: Vec::new(),
        has_charts: true,
        sql_link: console_link(&daily_sql),
    };
    for rate in source_rates(&daily, 14) {
        rates.rows.push(Row {
            cells: vec![
                Cell {
                    link: Some(link("/ingestion", &[("source", &rate.source)])),
                    text: rate.source,
                    time: None,
                },
                Cell {
                    text: rate.total.to_string(),
                    link: None,
                    time: None,
                },
                Cell {
                    text: rate.latest.to_string(),
                    link: None,
                    time: None,
                },
            ],
            chart: Some(rate.chart),
        });
    }

    let reasons = section(
        &state,
        session.timezone,
        Shown {
            title: "Dead letters by source and reason",
            note: "Records that could not be decoded; the rest of their input still landed.",
            sql: "SELECT source, reason, count(*) AS records, max(stored_at) AS newest
                  FROM dead_letters GROUP BY source, reason ORDER BY records DESC"
                .into(),
            links: &[(0, "/ingestion", "source"), (1, "/ingestion", "reason")],
        },
    )
    .await;
    let mut filters = Vec::new();
    if !query.source.trim().is_empty() {
        filters.push(format!("source = {}", literal(query.source.trim())));
    }
    if !query.reason.trim().is_empty() {
        filters.push(format!("reason = {}", literal(query.reason.trim())));
    }
    let browser_sql = format!(
        "SELECT stored_at, source, origin, concat(position['kind'], ' ', CAST(position['at'] AS VARCHAR)) AS position, reason, detail, raw_sha256, sample
         FROM dead_letters {} ORDER BY stored_at DESC LIMIT 50",
        if filters.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", filters.join(" AND "))
        }
    );
    let browser = section(
        &state,
        session.timezone,
        Shown {
            title: "Latest dead letters",
            note: "Samples are redacted before they are stored; the SHA-256 finds the record upstream.",
            sql: browser_sql,
            links: &[],
        },
    )
    .await;
    let (reasons, browser) = match (reasons, browser) {
        (Ok(r), Ok(b)) => (r, b),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    let intro = match (query.source.trim(), query.reason.trim()) {
        ("", "") => "What arrives from each source, and what could not be read.".to_owned(),
        (source, reason) => format!(
            "Dead letters filtered to{}{}.",
            if source.is_empty() {
                String::new()
            } else {
                format!(" source {source}")
            },
            if reason.is_empty() {
                String::new()
            } else {
                format!(" reason {reason}")
            }
        ),
    };
    page(
        &session,
        "ingest",
        "Ingestion".into(),
        intro,
        vec![rates, reasons, browser],
    )
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SecretQuery {
    #[serde(default)]
    name: String,
}

/// `/secrets`: each secret with how it is read; `?name=` for one secret.
pub(crate) async fn secrets(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<SecretQuery>,
) -> Response {
    let name = query.name.trim();
    let shown: Vec<Shown<'_>> = if name.is_empty() {
        vec![Shown {
            title: "Secrets and how they are read",
            note: "Reads per secret by identity kind: OIDC (short-lived, federated), tokens, and static keys.",
            sql: "SELECT target_name AS secret, count(*) AS reads,
                    sum(CASE WHEN identity_kind = 'oidc' THEN 1 ELSE 0 END) AS via_oidc,
                    sum(CASE WHEN identity_kind = 'static_key' THEN 1 ELSE 0 END) AS via_static_key,
                    sum(CASE WHEN identity_kind = 'token' THEN 1 ELSE 0 END) AS via_token,
                    count(DISTINCT identity_id) AS identities, count(DISTINCT repo) AS repositories,
                    sum(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) AS denied,
                    max(event_time) AS last_read
                  FROM secret_access WHERE target_name IS NOT NULL
                  GROUP BY target_name ORDER BY reads DESC LIMIT 500"
                .into(),
            links: &[(0, "/secrets", "name")],
        }]
    } else {
        let secret = literal(name);
        vec![
            Shown {
                title: "Who reads it",
                note: "Each identity that read this secret, how it authenticated, and from where.",
                sql: format!(
                    "SELECT actor, identity_kind, identity_id, count(*) AS reads,
                       sum(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) AS denied,
                       count(DISTINCT cicd_pipeline_run_id) AS runs, min(event_time) AS first_read, max(event_time) AS last_read,
                       array_to_string(array_agg(DISTINCT repo), ', ') AS repositories
                     FROM secret_access WHERE target_name = {secret}
                     GROUP BY actor, identity_kind, identity_id ORDER BY reads DESC LIMIT 200"
                ),
                links: &[],
            },
            Shown {
                title: "From which runs",
                note: "Pipeline runs that read this secret, newest first.",
                sql: format!(
                    "SELECT max(event_time) AS at, repo, cicd_pipeline_name AS workflow, cicd_pipeline_run_id AS run,
                       array_to_string(array_agg(DISTINCT identity_kind), ', ') AS identity_kinds, count(*) AS reads
                     FROM secret_access WHERE target_name = {secret} AND cicd_pipeline_run_id IS NOT NULL
                     GROUP BY repo, cicd_pipeline_name, cicd_pipeline_run_id ORDER BY at DESC LIMIT 100"
                ),
                links: &[(1, "/repo", "name")],
            },
            Shown {
                title: "Latest reads",
                note: "",
                sql: format!(
                    "SELECT event_time, actor, identity_kind, action, outcome, client_address, source
                     FROM secret_access WHERE target_name = {secret} ORDER BY event_time DESC LIMIT 100"
                ),
                links: &[],
            },
        ]
    };
    let mut sections = Vec::new();
    for s in shown {
        match section(&state, session.timezone, s).await {
            Ok(s) => sections.push(s),
            Err(response) => return response,
        }
    }
    let (title, intro) = if name.is_empty() {
        (
            "Secrets".to_owned(),
            "Every secret read, by whom and through which kind of identity.".to_owned(),
        )
    } else {
        (
            format!("Secret {name}"),
            "Who and what reads it, through which identity, from which runs.".to_owned(),
        )
    };
    page(&session, "secrets", title, intro, sections)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RepoQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    workflow: String,
}

/// `/repos`: every repository with its activity.
pub(crate) async fn repositories(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
) -> Response {
    let order = "ORDER BY events DESC LIMIT 500";
    let shown = Shown {
        title: "Repositories",
        note: "Activity over all stored history.",
        sql: format!("{REPOSITORIES_SQL} {order}"),
        links: &[(0, "/repo", "name")],
    };
    // Read from the summary built with the rollups; the link reads the lake.
    let summary = match state.rollups().await {
        Ok(rollups) => rollups
            .service()
            .query(&format!("SELECT * FROM {} {order}", SUMMARIES[0].table))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match summary.map(|output| section_of(&output, session.timezone, shown)) {
        Ok(section) => page(
            &session,
            "repos",
            "Repositories".into(),
            "Pick a repository for its runs, runners, secrets, deployments, findings and policy results.".into(),
            vec![section],
        ),
        Err(e) => unavailable("Repositories cannot be listed", e),
    }
}

/// `/repo?name=[&workflow=]`: one repository, or one of its pipelines.
pub(crate) async fn repository(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    Query(query): Query<RepoQuery>,
) -> Response {
    let name = query.name.trim();
    if name.is_empty() {
        return view::error_page(
            StatusCode::BAD_REQUEST,
            "Which repository? Pick one on the repositories page.",
        );
    }
    let workflow = query.workflow.trim();
    let mut scope = format!("repo = {}", literal(name));
    if !workflow.is_empty() {
        scope.push_str(&format!(" AND cicd_pipeline_name = {}", literal(workflow)));
    }
    let shown = vec![
        Shown {
            title: "Pipelines",
            note: "Each workflow or pipeline of the repository; pick one to narrow every section to it.",
            sql: format!(
                "SELECT cicd_pipeline_name AS workflow, count(DISTINCT cicd_pipeline_run_id) AS runs,
                   count(*) AS events, max(event_time) AS last_event
                 FROM pipeline_runs WHERE repo = {} AND cicd_pipeline_name IS NOT NULL
                 GROUP BY cicd_pipeline_name ORDER BY runs DESC, workflow LIMIT 25",
                literal(name)
            ),
            links: &[],
        },
        Shown {
            title: "Latest runs",
            note: "",
            sql: format!(
                "SELECT event_time, cicd_pipeline_name AS workflow, cicd_pipeline_run_id AS run, cicd_pipeline_trigger AS trigger,
                   vcs_ref_head_name AS branch, actor, outcome, duration_ms
                 FROM pipeline_runs WHERE {scope} AND action LIKE '%completed' ORDER BY event_time DESC LIMIT 50"
            ),
            links: &[],
        },
        Shown {
            title: "Runners",
            note: "Where jobs ran: single-use (ephemeral) runners cannot carry one job's compromise into the next.",
            sql: format!(
                "SELECT cicd_worker_name AS runner, runner_hosting AS hosting, runner_ephemeral AS ephemeral,
                   count(*) AS jobs, max(event_time) AS last_job
                 FROM pipeline_jobs WHERE {scope} AND action LIKE '%completed'
                 GROUP BY cicd_worker_name, runner_hosting, runner_ephemeral ORDER BY jobs DESC LIMIT 100"
            ),
            links: &[],
        },
        Shown {
            title: "Secrets touched",
            note: "",
            sql: format!(
                "SELECT target_name AS secret, identity_kind, count(*) AS reads,
                   sum(CASE WHEN outcome = 'denied' THEN 1 ELSE 0 END) AS denied, max(event_time) AS last_read
                 FROM secret_access WHERE {scope} AND target_name IS NOT NULL
                 GROUP BY target_name, identity_kind ORDER BY reads DESC LIMIT 100"
            ),
            links: &[(0, "/secrets", "name")],
        },
        Shown {
            title: "Deployments",
            note: "Progressive strategies (canary, blue/green) limit what a bad release reaches.",
            sql: format!(
                "SELECT event_time, deployment_environment_name AS environment, deploy_strategy AS strategy,
                   approval_state AS approval, outcome, actor, vcs_ref_head_name AS ref
                 FROM deployments WHERE {scope} ORDER BY event_time DESC LIMIT 50"
            ),
            links: &[],
        },
        Shown {
            title: "Scanner findings",
            note: "",
            sql: format!(
                "SELECT tool_name AS tool, severity, rule_id AS rule, count(*) AS findings, max(event_time) AS last_seen
                 FROM findings WHERE {scope}
                 GROUP BY tool_name, severity, rule_id ORDER BY findings DESC LIMIT 100"
            ),
            links: &[],
        },
        Shown {
            title: "Policy results",
            note: "",
            sql: format!(
                "SELECT tool_name AS tool, rule_id AS rule, outcome, count(*) AS results, max(event_time) AS last_result
                 FROM policy_results WHERE {scope}
                 GROUP BY tool_name, rule_id, outcome ORDER BY results DESC LIMIT 100"
            ),
            links: &[],
        },
    ];
    let mut sections = Vec::new();
    for s in shown {
        match section(&state, session.timezone, s).await {
            Ok(s) => sections.push(s),
            Err(response) => return response,
        }
    }
    // Pipeline names link to this page narrowed to them.
    if let Some(pipelines) = sections.first_mut() {
        for row in &mut pipelines.rows {
            if let Some(cell) = row.cells.first_mut() {
                cell.link = Some(link("/repo", &[("name", name), ("workflow", &cell.text)]));
            }
        }
    }
    let title = if workflow.is_empty() {
        format!("Repository {name}")
    } else {
        format!("Pipeline {workflow} of {name}")
    };
    page(
        &session,
        "repos",
        title,
        "Runs, runners, secrets, deployments, findings and policy results.".into(),
        sections,
    )
}
