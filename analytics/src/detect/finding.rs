//! What a detector reports: one finding about one entity, with the words
//! that explain it and the events that prove it.

use chrono::{DateTime, Utc};
use pipewatch_schema::{Category, Severity};

use super::EventRow;

/// Why a finding is unusual, in plain words an on-call engineer can act on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    /// The baseline, with its numbers ("deploys to production were approved 41 of 41 times").
    pub expected: String,
    /// What happened ("mmurphy's deploy of 14:02 had no review").
    pub observed: String,
    /// How unusual that is ("first unapproved deploy in 41; robust z = 9.3").
    pub unusual: String,
}

impl Explanation {
    /// The three parts as one paragraph.
    pub fn render(&self) -> String {
        format!(
            "Expected: {} Seen: {} How unusual: {}",
            sentence(&self.expected),
            sentence(&self.observed),
            sentence(&self.unusual)
        )
    }
}

fn sentence(text: &str) -> String {
    let text = text.trim();
    if text.ends_with(['.', '!', '?']) {
        text.to_owned()
    } else {
        format!("{text}.")
    }
}

/// One anomaly reported by a detector. Findings about the same entity from
/// the same detector close together in time are grouped into one alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The detector's registry name.
    pub detector: &'static str,
    pub severity: Severity,
    /// How far from the baseline, detector-specific but monotone: higher is
    /// more unusual. Robust z-scores, negative log-likelihoods, ratios.
    pub score: f64,
    /// When the (last) evidence event happened.
    pub event_time: DateTime<Utc>,
    /// What the finding is about (`acme/ledger`, `secret/data/…`, an actor).
    pub entity: String,
    /// One line, without a trailing period.
    pub title: String,
    pub explanation: Explanation,
    /// `event_id`s of the events that show it, most telling first.
    pub evidence: Vec<String>,
    /// Where it happened; the engine fills it from the event that raised
    /// the finding, so detectors need not.
    pub scope: FindingScope,
}

/// The organisation, repository and category of the event that raised a
/// finding: what notification routes match on.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FindingScope {
    pub category: Option<Category>,
    pub organisation: Option<String>,
    pub repository: Option<String>,
}

impl FindingScope {
    /// The scope of `event`.
    pub fn of(event: &EventRow) -> Self {
        FindingScope {
            category: Some(event.category),
            organisation: event.org.clone(),
            repository: event.repo.clone(),
        }
    }
}
