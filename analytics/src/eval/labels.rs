//! The labels file `pipewatch generate` writes beside its native files:
//! the injected incidents with the native ids of their evidence, and the
//! benign look-alikes the detectors must stay quiet about.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A labels file.
#[derive(Debug, Clone, Deserialize)]
pub struct Labels {
    /// The generator settings the data came from (seed, days, scale).
    #[serde(default)]
    pub generator: serde_json::Value,
    pub incidents: Vec<Incident>,
    #[serde(default)]
    pub benign: Vec<BenignPattern>,
}

/// One injected incident.
#[derive(Debug, Clone, Deserialize)]
pub struct Incident {
    pub id: String,
    pub kind: String,
    pub entity: String,
    pub description: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub evidence: Vec<EvidenceRef>,
}

/// A native record that shows the incident.
#[derive(Debug, Clone, Deserialize)]
pub struct EvidenceRef {
    /// The native format (the `source` column).
    pub format: String,
    /// The native id `source_event_id` begins with.
    pub native_id: String,
}

/// A benign pattern that looks suspicious but is routine.
#[derive(Debug, Clone, Deserialize)]
pub struct BenignPattern {
    pub kind: String,
    pub description: String,
}
