//! The SQLite side of alerts: grouping findings into alerts on insert,
//! idempotently, and recording status changes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray,
};
use datafusion::arrow::record_batch::RecordBatch;
use pipewatch_schema::{Category, Severity};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Alert, AlertError, AlertStatus, StateChange};
use crate::detect::{Finding, FindingScope};
use crate::notify::Routing;

/// File name of the control database inside the data directory.
pub const CONTROL_DB: &str = "control.sqlite";

/// Evidence kept per alert; a runaway group keeps its first events.
const MAX_EVIDENCE: usize = 500;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    detector TEXT NOT NULL,
    severity INTEGER NOT NULL,
    score REAL NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    event_time INTEGER NOT NULL,
    last_event_time INTEGER NOT NULL,
    title TEXT NOT NULL,
    explanation TEXT NOT NULL,
    entity TEXT NOT NULL,
    evidence TEXT NOT NULL,
    findings INTEGER NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    suppressed_until INTEGER,
    category TEXT,
    organisation TEXT,
    repository TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_entity ON alerts (detector, entity, last_event_time);
CREATE TABLE IF NOT EXISTS alert_evidence (
    alert_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, alert_id)
);
CREATE TABLE IF NOT EXISTS alert_state_changes (
    alert_id TEXT NOT NULL,
    changed_at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    from_status TEXT NOT NULL,
    to_status TEXT NOT NULL,
    reason TEXT,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS state_changes_by_alert ON alert_state_changes (alert_id, changed_at);
";

/// What recording a set of findings did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Alerts raised.
    pub new: u64,
    /// Findings grouped into an existing alert.
    pub grouped: u64,
    /// Findings already recorded (a replay).
    pub known: u64,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub status: Option<AlertStatus>,
    pub min_severity: Option<Severity>,
    pub detector: Option<String>,
    /// Repository, exactly.
    pub repository: Option<String>,
    /// Alerts whose newest evidence is at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Alerts assigned to this user, or to nobody.
    pub assignee: Option<Assignee>,
    pub limit: Option<usize>,
}

/// Who an alert is assigned to, as a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    Nobody,
    User(String),
}

/// Columns added after the first release; older databases gain them on open.
const ADDED_COLUMNS: &[&str] = &["category", "organisation", "repository", "assignee"];

/// Alerts in the control database.
#[derive(Debug)]
pub struct AlertStore {
    connection: Connection,
    path: PathBuf,
    /// When set, every new or escalated alert is queued for the routes it
    /// matches in the same transaction that stores it.
    routing: Option<Arc<Routing>>,
}

/// Adds the `columns` (as nullable text) that `table` lacks.
fn add_missing_columns(
    connection: &Connection,
    table: &str,
    columns: &[&str],
) -> rusqlite::Result<()> {
    let mut statement = connection.prepare(&format!("PRAGMA table_info({table})"))?;
    let present: Vec<String> = statement
        .query_map([], |row| row.get::<_, String>(1))?
        .collect::<Result<_, _>>()?;
    for column in columns {
        if !present.iter().any(|p| p == column) {
            connection.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
        }
    }
    Ok(())
}

pub(crate) fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_micros(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(v).unwrap_or_default()
}

fn severity_rank(s: Severity) -> i64 {
    Severity::ALL.iter().position(|x| *x == s).unwrap_or(0) as i64
}

fn severity_of_rank(rank: i64) -> Severity {
    usize::try_from(rank)
        .ok()
        .and_then(|r| Severity::ALL.get(r).copied())
        .unwrap_or(Severity::Info)
}

/// A deterministic id: the same finding always opens the same alert.
fn alert_id(detector: &str, entity: &str, primary_evidence: &str) -> String {
    let mut hash = Sha256::new();
    for part in [detector, entity, primary_evidence] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl AlertStore {
    /// Opens (creating if needed) the control database of `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, AlertError> {
        let path = data_dir.join(CONTROL_DB);
        let connection = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        Self::init(connection, path)
    }

    /// A private in-memory store (tests, evaluation of a dry run).
    pub fn in_memory() -> Result<Self, AlertError> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(|e| db_error(&path, e))?;
        Self::init(connection, path)
    }

    fn init(connection: Connection, path: PathBuf) -> Result<Self, AlertError> {
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .map_err(|e| db_error(&path, e))?;
        connection
            .execute_batch(SCHEMA)
            .map_err(|e| db_error(&path, e))?;
        add_missing_columns(&connection, "alerts", ADDED_COLUMNS)
            .map_err(|e| db_error(&path, e))?;
        crate::notify::outbox::create(&connection).map_err(|e| db_error(&path, e))?;
        Ok(AlertStore {
            connection,
            path,
            routing: None,
        })
    }

    /// Queues every new or escalated alert for the notification routes it
    /// matches, atomically with storing it.
    pub fn with_routing(mut self, routing: Arc<Routing>) -> Self {
        self.routing = Some(routing);
        self
    }

    fn error(&self, e: rusqlite::Error) -> AlertError {
        db_error(&self.path, e)
    }

    /// Groups `findings` into alerts: a finding joins the latest open or
    /// acknowledged alert of its detector about its entity within
    /// `group_window`, or a suppressed one whose suppression has not
    /// expired; otherwise it opens a new alert. A finding whose primary
    /// evidence event is already recorded changes nothing, so replays and
    /// re-runs of `detect` are idempotent. One transaction per call.
    pub fn record(
        &mut self,
        findings: &[Finding],
        group_window: Duration,
        now: DateTime<Utc>,
    ) -> Result<RecordSummary, AlertError> {
        let path = self.path.clone();
        let tx = self
            .connection
            .transaction()
            .map_err(|e| db_error(&path, e))?;
        let mut summary = RecordSummary::default();
        for finding in findings {
            let Some(primary) = finding.evidence.first() else {
                continue;
            };
            let known: Option<String> = tx
                .query_row(
                    "SELECT e.alert_id FROM alert_evidence e JOIN alerts a USING (alert_id)
                     WHERE e.event_id = ?1 AND a.detector = ?2 AND a.entity = ?3 LIMIT 1",
                    params![primary, finding.detector, finding.entity],
                    |row| row.get(0),
                )
                .optional()
                .map_err(|e| db_error(&path, e))?;
            if known.is_some() {
                summary.known += 1;
                continue;
            }
            let t = micros(finding.event_time);
            let window = group_window.num_microseconds().unwrap_or(i64::MAX / 4);
            let group: Option<(String, f64, String, i64)> = tx
                .query_row(
                    "SELECT alert_id, score, evidence, severity FROM alerts
                     WHERE detector = ?1 AND entity = ?2 AND (
                        (status IN ('open', 'acknowledged')
                            AND last_event_time >= ?3 - ?4 AND event_time <= ?3 + ?4)
                        OR (status = 'suppressed' AND suppressed_until > ?3))
                     ORDER BY last_event_time DESC LIMIT 1",
                    params![finding.detector, finding.entity, t, window],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
                )
                .optional()
                .map_err(|e| db_error(&path, e))?;
            let explanation = finding.explanation.render();
            let escalated;
            let alert = match group {
                Some((alert, score, evidence, old_severity)) => {
                    escalated = severity_rank(finding.severity) > old_severity;
                    let mut ids: Vec<String> = serde_json::from_str(&evidence).unwrap_or_default();
                    for id in &finding.evidence {
                        if ids.len() < MAX_EVIDENCE && !ids.contains(id) {
                            ids.push(id.clone());
                        }
                    }
                    let ids_json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
                    // The most unusual finding speaks for the group.
                    let (title, text) = if finding.score > score {
                        (Some(finding.title.as_str()), Some(explanation.as_str()))
                    } else {
                        (None, None)
                    };
                    tx.execute(
                        "UPDATE alerts SET
                            severity = max(severity, ?2), score = max(score, ?3),
                            updated_at = ?4, event_time = min(event_time, ?5),
                            last_event_time = max(last_event_time, ?5),
                            title = coalesce(?6, title), explanation = coalesce(?7, explanation),
                            evidence = ?8, findings = findings + 1
                         WHERE alert_id = ?1",
                        params![
                            alert,
                            severity_rank(finding.severity),
                            finding.score,
                            micros(now),
                            t,
                            title,
                            text,
                            ids_json
                        ],
                    )
                    .map_err(|e| db_error(&path, e))?;
                    summary.grouped += 1;
                    alert
                }
                None => {
                    let id = alert_id(finding.detector, &finding.entity, primary);
                    let mut ids: Vec<String> = Vec::new();
                    for e in &finding.evidence {
                        if ids.len() < MAX_EVIDENCE && !ids.contains(e) {
                            ids.push(e.clone());
                        }
                    }
                    tx.execute(
                        "INSERT OR IGNORE INTO alerts (alert_id, detector, severity, score,
                            created_at, updated_at, event_time, last_event_time, title, explanation,
                            entity, evidence, findings, status, category, organisation, repository)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?6, ?7, ?8, ?9, ?10, 1, 'open', ?11, ?12, ?13)",
                        params![
                            id,
                            finding.detector,
                            severity_rank(finding.severity),
                            finding.score,
                            micros(now),
                            t,
                            finding.title,
                            explanation,
                            finding.entity,
                            serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()),
                            finding.scope.category.map(|c| c.as_str()),
                            finding.scope.organisation,
                            finding.scope.repository
                        ],
                    )
                    .map_err(|e| db_error(&path, e))?;
                    summary.new += 1;
                    escalated = true;
                    id
                }
            };
            if escalated && let Some(routing) = &self.routing {
                let stored = tx
                    .query_row(
                        "SELECT * FROM alerts WHERE alert_id = ?1",
                        params![alert],
                        read_alert,
                    )
                    .map_err(|e| db_error(&path, e))?;
                crate::notify::outbox::enqueue_alert(&tx, routing, &stored, now)
                    .map_err(|e| db_error(&path, e))?;
            }
            let mut insert = tx
                .prepare_cached("INSERT OR IGNORE INTO alert_evidence VALUES (?1, ?2)")
                .map_err(|e| db_error(&path, e))?;
            for id in finding.evidence.iter().take(MAX_EVIDENCE) {
                insert
                    .execute(params![alert, id])
                    .map_err(|e| db_error(&path, e))?;
            }
        }
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(summary)
    }

    /// Alerts matching `filter`, most severe and most recent first.
    pub fn list(&self, filter: &AlertFilter) -> Result<Vec<Alert>, AlertError> {
        let mut sql = String::from("SELECT * FROM alerts WHERE 1 = 1");
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(status) = filter.status {
            sql.push_str(" AND status = ?");
            args.push(status.as_str().to_owned().into());
        }
        if let Some(min) = filter.min_severity {
            sql.push_str(" AND severity >= ?");
            args.push(severity_rank(min).into());
        }
        if let Some(detector) = &filter.detector {
            sql.push_str(" AND detector = ?");
            args.push(detector.clone().into());
        }
        if let Some(repository) = &filter.repository {
            sql.push_str(" AND repository = ?");
            args.push(repository.clone().into());
        }
        if let Some(since) = filter.since {
            sql.push_str(" AND last_event_time >= ?");
            args.push(micros(since).into());
        }
        match &filter.assignee {
            None => {}
            Some(Assignee::Nobody) => sql.push_str(" AND assignee IS NULL"),
            Some(Assignee::User(user)) => {
                sql.push_str(" AND assignee = ?");
                args.push(user.clone().into());
            }
        }
        sql.push_str(" ORDER BY severity DESC, score DESC, last_event_time DESC");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut statement = self.connection.prepare(&sql).map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(rusqlite::params_from_iter(args), read_alert)
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(e))
    }

    /// One alert.
    pub fn get(&self, alert_id: &str) -> Result<Alert, AlertError> {
        self.connection
            .query_row(
                "SELECT * FROM alerts WHERE alert_id = ?1",
                params![alert_id],
                read_alert,
            )
            .optional()
            .map_err(|e| self.error(e))?
            .ok_or_else(|| AlertError::NotFound(alert_id.to_owned()))
    }

    /// Moves an alert to `to`, recording who, when and why. Suppression
    /// needs a reason and an expiry in the future.
    pub fn change_status(
        &mut self,
        alert_id: &str,
        to: AlertStatus,
        actor: &str,
        reason: Option<&str>,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<StateChange, AlertError> {
        let alert = self.get(alert_id)?;
        if !alert.status.can_become(to) {
            return Err(AlertError::Transition {
                alert_id: alert_id.to_owned(),
                from: alert.status,
                to,
            });
        }
        if actor.trim().is_empty() {
            return Err(AlertError::Incomplete(
                "a status change needs who made it".into(),
            ));
        }
        if to == AlertStatus::Suppressed {
            if reason.is_none_or(|r| r.trim().is_empty()) {
                return Err(AlertError::Incomplete(
                    "suppressing an alert needs a reason".into(),
                ));
            }
            if expires_at.is_none_or(|t| t <= now) {
                return Err(AlertError::Incomplete(
                    "suppressing an alert needs an expiry in the future".into(),
                ));
            }
        }
        let until = (to == AlertStatus::Suppressed)
            .then_some(expires_at)
            .flatten();
        let path = self.path.clone();
        let tx = self
            .connection
            .transaction()
            .map_err(|e| db_error(&path, e))?;
        tx.execute(
            "UPDATE alerts SET status = ?2, status_reason = ?3, suppressed_until = ?4, updated_at = ?5
             WHERE alert_id = ?1",
            params![alert_id, to.as_str(), reason, until.map(micros), micros(now)],
        )
        .map_err(|e| db_error(&path, e))?;
        tx.execute(
            "INSERT INTO alert_state_changes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                alert_id,
                micros(now),
                actor,
                alert.status.as_str(),
                to.as_str(),
                reason,
                until.map(micros)
            ],
        )
        .map_err(|e| db_error(&path, e))?;
        crate::notify::outbox::enqueue_status_change(&tx, alert_id, to, now)
            .map_err(|e| db_error(&path, e))?;
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(StateChange {
            alert_id: alert_id.to_owned(),
            changed_at: now,
            actor: actor.to_owned(),
            from: alert.status,
            to,
            reason: reason.map(str::to_owned),
            expires_at: until,
        })
    }

    /// Assigns an alert to `assignee` (`None`: to nobody), recording who
    /// did it in the alert's history. The status stays as it is.
    pub fn assign(
        &mut self,
        alert_id: &str,
        assignee: Option<&str>,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<StateChange, AlertError> {
        let alert = self.get(alert_id)?;
        if actor.trim().is_empty() {
            return Err(AlertError::Incomplete(
                "an assignment needs who made it".into(),
            ));
        }
        let assignee = assignee.map(str::trim).filter(|a| !a.is_empty());
        let reason = match assignee {
            Some(user) => format!("assigned to {user}"),
            None => "unassigned".to_owned(),
        };
        let path = self.path.clone();
        let tx = self
            .connection
            .transaction()
            .map_err(|e| db_error(&path, e))?;
        tx.execute(
            "UPDATE alerts SET assignee = ?2, updated_at = ?3 WHERE alert_id = ?1",
            params![alert_id, assignee, micros(now)],
        )
        .map_err(|e| db_error(&path, e))?;
        tx.execute(
            "INSERT INTO alert_state_changes VALUES (?1, ?2, ?3, ?4, ?4, ?5, NULL)",
            params![alert_id, micros(now), actor, alert.status.as_str(), reason],
        )
        .map_err(|e| db_error(&path, e))?;
        tx.commit().map_err(|e| db_error(&path, e))?;
        Ok(StateChange {
            alert_id: alert_id.to_owned(),
            changed_at: now,
            actor: actor.to_owned(),
            from: alert.status,
            to: alert.status,
            reason: Some(reason),
            expires_at: None,
        })
    }

    /// Reopens suppressed alerts whose suppression has expired; returns how many.
    pub fn expire_suppressions(&mut self, now: DateTime<Utc>) -> Result<usize, AlertError> {
        let expired: Vec<String> = {
            let mut statement = self
                .connection
                .prepare("SELECT alert_id FROM alerts WHERE status = 'suppressed' AND suppressed_until <= ?1")
                .map_err(|e| self.error(e))?;
            let rows = statement
                .query_map(params![micros(now)], |row| row.get(0))
                .map_err(|e| self.error(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.error(e))?
        };
        for id in &expired {
            self.change_status(
                id,
                AlertStatus::Open,
                "pipewatch",
                Some("suppression expired"),
                None,
                now,
            )?;
        }
        Ok(expired.len())
    }

    /// The status changes of one alert, oldest first.
    pub fn history(&self, alert_id: &str) -> Result<Vec<StateChange>, AlertError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT alert_id, changed_at, actor, from_status, to_status, reason, expires_at
                 FROM alert_state_changes WHERE alert_id = ?1 ORDER BY changed_at, rowid",
            )
            .map_err(|e| self.error(e))?;
        let rows = statement
            .query_map(params![alert_id], |row| {
                let status = |text: String| AlertStatus::parse(&text).unwrap_or(AlertStatus::Open);
                Ok(StateChange {
                    alert_id: row.get(0)?,
                    changed_at: from_micros(row.get(1)?),
                    actor: row.get(2)?,
                    from: status(row.get(3)?),
                    to: status(row.get(4)?),
                    reason: row.get(5)?,
                    expires_at: row.get::<_, Option<i64>>(6)?.map(from_micros),
                })
            })
            .map_err(|e| self.error(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.error(e))
    }
}

pub(crate) fn read_alert(row: &rusqlite::Row<'_>) -> rusqlite::Result<Alert> {
    let evidence: String = row.get("evidence")?;
    let status: String = row.get("status")?;
    Ok(Alert {
        alert_id: row.get("alert_id")?,
        detector: row.get("detector")?,
        severity: severity_of_rank(row.get("severity")?),
        score: row.get("score")?,
        created_at: from_micros(row.get("created_at")?),
        updated_at: from_micros(row.get("updated_at")?),
        event_time: from_micros(row.get("event_time")?),
        last_event_time: from_micros(row.get("last_event_time")?),
        title: row.get("title")?,
        explanation: row.get("explanation")?,
        entity: row.get("entity")?,
        evidence_event_ids: serde_json::from_str(&evidence).unwrap_or_default(),
        findings: row.get("findings")?,
        status: AlertStatus::parse(&status).unwrap_or(AlertStatus::Open),
        status_reason: row.get("status_reason")?,
        suppressed_until: row
            .get::<_, Option<i64>>("suppressed_until")?
            .map(from_micros),
        scope: FindingScope {
            category: row
                .get::<_, Option<String>>("category")?
                .and_then(|c| Category::parse(&c)),
            organisation: row.get("organisation")?,
            repository: row.get("repository")?,
        },
        assignee: row.get("assignee")?,
    })
}

fn db_error(path: &Path, e: rusqlite::Error) -> AlertError {
    AlertError::Database {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// The alerts as one Arrow batch of the `alerts` table.
pub fn alerts_batch(alerts: &[Alert]) -> Result<RecordBatch, AlertError> {
    let text = |f: &dyn Fn(&Alert) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(alerts.iter().map(f)))
    };
    let time = |f: &dyn Fn(&Alert) -> Option<DateTime<Utc>>| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from(
                alerts.iter().map(|a| f(a).map(micros)).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        )
    };
    let mut evidence = ListBuilder::new(StringBuilder::new());
    for alert in alerts {
        for id in &alert.evidence_event_ids {
            evidence.values().append_value(id);
        }
        evidence.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        text(&|a| &a.alert_id),
        text(&|a| &a.detector),
        text(&|a| a.severity.as_str()),
        Arc::new(Float64Array::from_iter_values(
            alerts.iter().map(|a| a.score),
        )),
        time(&|a| Some(a.created_at)),
        time(&|a| Some(a.updated_at)),
        time(&|a| Some(a.event_time)),
        time(&|a| Some(a.last_event_time)),
        text(&|a| &a.title),
        text(&|a| &a.explanation),
        text(&|a| &a.entity),
        Arc::new(evidence.finish()),
        Arc::new(Int64Array::from_iter_values(
            alerts.iter().map(|a| a.findings),
        )),
        text(&|a| a.status.as_str()),
        Arc::new(StringArray::from(
            alerts
                .iter()
                .map(|a| a.status_reason.as_deref())
                .collect::<Vec<_>>(),
        )),
        time(&|a| a.suppressed_until),
        Arc::new(StringArray::from(
            alerts
                .iter()
                .map(|a| a.scope.category.map(|c| c.as_str()))
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            alerts
                .iter()
                .map(|a| a.scope.organisation.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            alerts
                .iter()
                .map(|a| a.scope.repository.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            alerts
                .iter()
                .map(|a| a.assignee.as_deref())
                .collect::<Vec<_>>(),
        )),
    ];
    RecordBatch::try_new(pipewatch_schema::tables::alerts_schema(), columns)
        .map_err(|e| AlertError::Arrow(e.to_string()))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::detect::Explanation;

    fn at(minute: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 12, 8, 0, 0)
            .single()
            .expect("valid time")
            + Duration::minutes(minute)
    }

    fn finding(
        entity: &str,
        minute: i64,
        evidence: &str,
        severity: Severity,
        score: f64,
    ) -> Finding {
        Finding {
            scope: Default::default(),
            detector: "secret_bulk_read",
            severity,
            score,
            event_time: at(minute),
            entity: entity.into(),
            title: format!("{entity} read many secrets ({score})"),
            explanation: Explanation {
                expected: "at most 3 paths in 10 minutes".into(),
                observed: "24 paths".into(),
                unusual: "8x the most ever seen".into(),
            },
            evidence: vec![evidence.into(), "shared-context".into()],
        }
    }

    #[test]
    fn findings_about_one_entity_close_in_time_become_one_alert() {
        let mut store = AlertStore::in_memory().expect("test store");
        let window = Duration::minutes(60);
        let findings = [
            finding("ci-token-a", 0, "e1", Severity::Medium, 3.0),
            finding("ci-token-a", 20, "e2", Severity::High, 9.0),
            finding("ci-token-b", 25, "e3", Severity::Medium, 4.0),
            finding("ci-token-a", 200, "e4", Severity::Medium, 3.0),
        ];
        let summary = store
            .record(&findings, window, at(300))
            .expect("test store");
        assert_eq!(
            summary,
            RecordSummary {
                new: 3,
                grouped: 1,
                known: 0
            }
        );
        let alerts = store.list(&AlertFilter::default()).expect("test store");
        assert_eq!(alerts.len(), 3);
        let grouped = alerts
            .iter()
            .find(|a| a.findings == 2)
            .expect("a group of two");
        assert_eq!(grouped.entity, "ci-token-a");
        // The most unusual finding speaks for the group; severity is the highest seen.
        assert_eq!(grouped.severity, Severity::High);
        assert!(grouped.title.contains("9"), "{}", grouped.title);
        assert_eq!(
            grouped.evidence_event_ids,
            vec!["e1", "shared-context", "e2"]
        );
        assert_eq!(grouped.event_time, at(0));
        assert_eq!(grouped.last_event_time, at(20));
    }

    #[test]
    fn recording_the_same_findings_again_changes_nothing() {
        let mut store = AlertStore::in_memory().expect("test store");
        let findings = [
            finding("ci-token-a", 0, "e1", Severity::Medium, 3.0),
            finding("ci-token-a", 20, "e2", Severity::High, 9.0),
        ];
        store
            .record(&findings, Duration::minutes(60), at(30))
            .expect("test store");
        let before = store.list(&AlertFilter::default()).expect("test store");
        let again = store
            .record(&findings, Duration::minutes(60), at(90))
            .expect("test store");
        assert_eq!(
            again,
            RecordSummary {
                new: 0,
                grouped: 0,
                known: 2
            }
        );
        assert_eq!(
            store.list(&AlertFilter::default()).expect("test store"),
            before
        );
    }

    #[test]
    fn status_changes_are_checked_and_recorded_with_who_and_why() {
        let mut store = AlertStore::in_memory().expect("test store");
        store
            .record(
                &[finding("ci-token-a", 0, "e1", Severity::High, 5.0)],
                Duration::minutes(60),
                at(1),
            )
            .expect("test store");
        let id = store.list(&AlertFilter::default()).expect("test store")[0]
            .alert_id
            .clone();

        let error = store
            .change_status(
                &id,
                AlertStatus::Suppressed,
                "ana",
                None,
                Some(at(600)),
                at(2),
            )
            .expect_err("a suppression needs a reason");
        assert!(error.to_string().contains("reason"), "{error}");
        let error = store
            .change_status(
                &id,
                AlertStatus::Suppressed,
                "ana",
                Some("pen test"),
                Some(at(1)),
                at(2),
            )
            .expect_err("the expiry must be ahead");
        assert!(error.to_string().contains("expiry"), "{error}");

        store
            .change_status(&id, AlertStatus::Acknowledged, "ana", None, None, at(3))
            .expect("test store");
        store
            .change_status(
                &id,
                AlertStatus::Resolved,
                "bo",
                Some("token revoked"),
                None,
                at(4),
            )
            .expect("test store");
        let error = store
            .change_status(&id, AlertStatus::Acknowledged, "bo", None, None, at(5))
            .expect_err("resolved alerts are reopened, not acknowledged");
        assert!(matches!(error, AlertError::Transition { .. }), "{error}");

        let history = store.history(&id).expect("test store");
        let steps: Vec<(&str, AlertStatus, AlertStatus)> = history
            .iter()
            .map(|c| (c.actor.as_str(), c.from, c.to))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("ana", AlertStatus::Open, AlertStatus::Acknowledged),
                ("bo", AlertStatus::Acknowledged, AlertStatus::Resolved),
            ]
        );
        assert_eq!(history[1].reason.as_deref(), Some("token revoked"));
        assert_eq!(
            store.get(&id).expect("test store").status,
            AlertStatus::Resolved
        );
    }

    #[test]
    fn a_suppressed_alert_absorbs_new_findings_until_it_expires() {
        let mut store = AlertStore::in_memory().expect("test store");
        let window = Duration::minutes(60);
        store
            .record(
                &[finding("runner-7", 0, "e1", Severity::High, 5.0)],
                window,
                at(1),
            )
            .expect("test store");
        let id = store.list(&AlertFilter::default()).expect("test store")[0]
            .alert_id
            .clone();
        store
            .change_status(
                &id,
                AlertStatus::Suppressed,
                "ana",
                Some("known migration"),
                Some(at(2000)),
                at(2),
            )
            .expect("test store");
        // Long after the group window, but inside the suppression: no new alert.
        let summary = store
            .record(
                &[finding("runner-7", 900, "e2", Severity::High, 5.0)],
                window,
                at(901),
            )
            .expect("test store");
        assert_eq!(summary.grouped, 1);
        assert_eq!(
            store
                .list(&AlertFilter::default())
                .expect("test store")
                .len(),
            1
        );

        assert_eq!(store.expire_suppressions(at(2001)).expect("test store"), 1);
        let alert = store.get(&id).expect("test store");
        assert_eq!(alert.status, AlertStatus::Open);
        assert_eq!(
            store
                .history(&id)
                .expect("test store")
                .last()
                .map(|c| c.actor.as_str()),
            Some("pipewatch")
        );
        let summary = store
            .record(
                &[finding("runner-7", 3000, "e3", Severity::High, 5.0)],
                window,
                at(3001),
            )
            .expect("test store");
        assert_eq!(
            summary.new, 1,
            "after expiry, a later finding opens a new alert"
        );
    }

    #[test]
    fn alerts_become_an_arrow_batch_of_the_alerts_schema() {
        let mut store = AlertStore::in_memory().expect("test store");
        store
            .record(
                &[finding("x", 0, "e1", Severity::Low, 1.0)],
                Duration::minutes(60),
                at(1),
            )
            .expect("test store");
        let batch = alerts_batch(&store.list(&AlertFilter::default()).expect("test store"))
            .expect("test store");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.schema(), pipewatch_schema::tables::alerts_schema());
    }
}
