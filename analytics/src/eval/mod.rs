//! Scores alerts against a labels file: which incidents were caught (per
//! kind), how many alerts were false, and how many false alerts fall on
//! every 10,000 benign events.
//!
//! An alert *detects* an incident when its evidence holds one of the
//! incident's evidence events. A native id is matched exactly, and also as
//! the head of lifecycle records (`<id>:<suffix>`), the tail of scoped ids
//! (SARIF `<tool>:<rule>:<fingerprint>`) or the name of the object checked
//! (a Conftest file); those looser matches count only within an hour of the
//! incident, so a long-lived object does not make its whole history evidence.

mod labels;

use std::collections::{BTreeMap, HashMap, HashSet};

use datafusion::arrow::array::{Array, AsArray};
use pipewatch_schema::Severity;

pub use labels::{BenignPattern, EvidenceRef, Incident, Labels};

use crate::query::{QueryError, QueryService};

/// Errors of an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The labels file does not parse.
    #[error("labels file: {0}")]
    Labels(#[from] serde_json::Error),
    /// The lake could not answer.
    #[error(transparent)]
    Query(#[from] QueryError),
}

/// What evaluation needs of an alert.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredAlert {
    pub alert_id: String,
    pub detector: String,
    pub severity: Severity,
    pub entity: String,
    pub title: String,
    pub evidence: Vec<String>,
}

/// Incident evidence resolved to `event_id`s.
#[derive(Debug, Clone, Default)]
pub struct ResolvedLabels {
    /// `event_id` → indices of the incidents it is evidence of.
    pub evidence: HashMap<String, Vec<usize>>,
    /// Incidents whose evidence matched no stored event.
    pub unresolved: Vec<String>,
    /// Events in the lake.
    pub total_events: u64,
}

impl ResolvedLabels {
    /// The incidents an alert with `evidence` detects.
    pub fn incidents_of(&self, evidence: &[String]) -> Vec<usize> {
        let mut found: Vec<usize> = evidence
            .iter()
            .filter_map(|id| self.evidence.get(id))
            .flatten()
            .copied()
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// Finds the stored events behind every incident's evidence.
pub async fn resolve(service: &QueryService, labels: &Labels) -> Result<ResolvedLabels, EvalError> {
    let mut resolved = ResolvedLabels {
        total_events: service.count("SELECT count(*) FROM events").await?,
        ..ResolvedLabels::default()
    };
    for (index, incident) in labels.incidents.iter().enumerate() {
        let window = format!(
            "event_time BETWEEN TIMESTAMP '{}' - INTERVAL '1 hour' AND TIMESTAMP '{}' + INTERVAL '1 hour'",
            incident.start.to_rfc3339(),
            incident.end.to_rfc3339()
        );
        let conditions: Vec<String> = incident
            .evidence
            .iter()
            .map(|e| {
                let (format, id) = (quote(&e.format), quote(&e.native_id));
                format!(
                    "(source = '{format}' AND (source_event_id = '{id}' OR \
                     ((starts_with(source_event_id, '{id}:') OR ends_with(source_event_id, ':{id}') \
                       OR target_name = '{id}') AND {window})))"
                )
            })
            .collect();
        if conditions.is_empty() {
            resolved.unresolved.push(incident.id.clone());
            continue;
        }
        let sql = format!(
            "SELECT event_id FROM events WHERE {}",
            conditions.join(" OR ")
        );
        let out = service.query(&sql).await?;
        let mut any = false;
        for batch in &out.batches {
            let ids = batch.column(0).as_string::<i32>();
            for row in 0..ids.len() {
                any = true;
                resolved
                    .evidence
                    .entry(ids.value(row).to_owned())
                    .or_default()
                    .push(index);
            }
        }
        if !any {
            resolved.unresolved.push(incident.id.clone());
        }
    }
    Ok(resolved)
}

fn quote(text: &str) -> String {
    text.replace('\'', "''")
}

/// Recall of one incident kind.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct KindScore {
    pub kind: String,
    pub incidents: usize,
    pub detected: usize,
    /// Detectors whose alerts caught it.
    pub detectors: Vec<String>,
}

/// The evaluation table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalReport {
    /// Only alerts at or above this severity count.
    pub min_severity: Severity,
    pub kinds: Vec<KindScore>,
    pub incidents: usize,
    pub detected: usize,
    pub alerts: usize,
    pub true_alerts: usize,
    pub false_alerts: usize,
    pub benign_events: u64,
    /// False alerts, with detector, entity and title, for tuning.
    pub false_alert_titles: Vec<String>,
    /// Incidents no counted alert detected.
    pub missed: Vec<String>,
}

impl EvalReport {
    /// Share of incidents detected.
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.incidents)
    }

    /// Share of counted alerts that detect an incident.
    pub fn precision(&self) -> f64 {
        ratio(self.true_alerts, self.alerts)
    }

    /// False alerts per 10,000 benign events.
    pub fn false_per_10k(&self) -> f64 {
        if self.benign_events == 0 {
            0.0
        } else {
            self.false_alerts as f64 * 10_000.0 / self.benign_events as f64
        }
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self
            .kinds
            .iter()
            .map(|k| k.kind.len())
            .max()
            .unwrap_or(4)
            .max(13);
        out.push_str(&format!(
            "{:width$}  {:>9}  {:>8}  {:>6}  detectors\n",
            "incident kind", "incidents", "detected", "recall"
        ));
        for kind in &self.kinds {
            out.push_str(&format!(
                "{:width$}  {:>9}  {:>8}  {:>6.2}  {}\n",
                kind.kind,
                kind.incidents,
                kind.detected,
                ratio(kind.detected, kind.incidents),
                kind.detectors.join(", ")
            ));
        }
        out.push_str(&format!(
            "\nalerts (severity >= {}): {}  true: {}  false: {}\n",
            self.min_severity, self.alerts, self.true_alerts, self.false_alerts
        ));
        out.push_str(&format!(
            "recall {:.3}  precision {:.3}  false alerts per 10,000 benign events {:.2}\n",
            self.recall(),
            self.precision(),
            self.false_per_10k()
        ));
        if !self.missed.is_empty() {
            out.push_str(&format!("missed: {}\n", self.missed.join(", ")));
        }
        for title in &self.false_alert_titles {
            out.push_str(&format!("false: {title}\n"));
        }
        out
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// Scores `alerts` against the resolved labels.
pub fn evaluate(
    labels: &Labels,
    resolved: &ResolvedLabels,
    alerts: &[ScoredAlert],
    min_severity: Severity,
) -> EvalReport {
    let counted: Vec<&ScoredAlert> = alerts
        .iter()
        .filter(|a| a.severity >= min_severity)
        .collect();
    let mut detected_by: HashMap<usize, HashSet<String>> = HashMap::new();
    let (mut true_alerts, mut false_titles) = (0, Vec::new());
    for alert in &counted {
        let hits = resolved.incidents_of(&alert.evidence);
        if hits.is_empty() {
            false_titles.push(format!(
                "[{}] {} {}: {}",
                alert.severity, alert.detector, alert.entity, alert.title
            ));
        } else {
            true_alerts += 1;
            for hit in hits {
                detected_by
                    .entry(hit)
                    .or_default()
                    .insert(alert.detector.clone());
            }
        }
    }
    let mut kinds: BTreeMap<&str, KindScore> = BTreeMap::new();
    let mut missed = Vec::new();
    for (index, incident) in labels.incidents.iter().enumerate() {
        let score = kinds.entry(&incident.kind).or_insert_with(|| KindScore {
            kind: incident.kind.clone(),
            incidents: 0,
            detected: 0,
            detectors: Vec::new(),
        });
        score.incidents += 1;
        match detected_by.get(&index) {
            Some(detectors) => {
                score.detected += 1;
                for d in detectors {
                    if !score.detectors.contains(d) {
                        score.detectors.push(d.clone());
                    }
                }
                score.detectors.sort();
            }
            None => missed.push(format!("{} ({})", incident.id, incident.kind)),
        }
    }
    let evidence_events = resolved.evidence.len() as u64;
    EvalReport {
        min_severity,
        incidents: labels.incidents.len(),
        detected: detected_by.len(),
        kinds: kinds.into_values().collect(),
        alerts: counted.len(),
        true_alerts,
        false_alerts: counted.len() - true_alerts,
        benign_events: resolved.total_events.saturating_sub(evidence_events),
        false_alert_titles: false_titles,
        missed,
    }
}
