//! Detectors: explainable, incremental anomaly detection over the lake.
//!
//! # The detector contract
//!
//! **What a detector sees.** Normalized [`EventRow`]s of the categories it
//! declares, one at a time, in `event_time` order (ties broken by
//! `event_id`). It never sees where an event came from beyond the normalized
//! columns, so one detector covers GitHub, GitLab, Vault and the rest alike.
//!
//! **What state it keeps.** Its baseline: per-entity profiles (per
//! repository, workflow, job, actor, identity, secret or runner) built only
//! from the events it has been shown. Nothing is keyed to names or values
//! known in advance; every expectation is learned.
//!
//! **How it is trained.** The [`Engine`] warms a detector up by replaying
//! the learning window (`[since − learning_window, since)`) read from the
//! lake with SQL ([`Detector::observe`] with [`Phase::Learn`]), then keeps
//! learning from every event it scores, so the baseline is always the
//! history before the event being judged. A live service keeps the engine
//! and hands it each committed batch; restarting rebuilds the baselines
//! from the lake the same way.
//!
//! **How it scores.** For each event in [`Phase::Score`] it compares the
//! event with the baseline *as it stood before the event*, pushes zero or
//! more [`Finding`]s, then folds the event into the baseline. Because a
//! detector judges event by event, splitting history into batches at
//! different points yields the same findings: backfill (`pipewatch detect`)
//! and the live path share every line of scoring code.
//!
//! **Cold start.** Every detector states how much history an entity needs
//! before its absence-of-precedent means anything (its `min_history`
//! parameters). Below that, a new repository, actor or secret is learned,
//! not reported.
//!
//! **Parameters** are checked before a detector is built: configuration
//! ([`DetectConfig`], TOML) → [`DetectorConfig::check`] → a boxed detector
//! from the closed [`DetectorKind`] registry.

mod config;
pub mod detectors;
mod engine;
mod finding;
mod registry;
mod row;
pub mod stats;

use pipewatch_schema::Category;

pub use config::{CommonParams, DetectConfig, DetectorConfig, ParamError};
pub use engine::{DetectError, DetectRun, Engine};
pub use finding::{Explanation, Finding, FindingScope};
pub use registry::{DetectorKind, build_detectors};
pub use row::{EventRow, rows_from_batch};

/// Whether the engine is replaying history to learn or judging new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Warm-up: fold the event into the baseline, report nothing.
    Learn,
    /// Judge the event against the baseline, then fold it in.
    Score,
}

/// One anomaly detector. See the module documentation for the contract.
pub trait Detector: Send + std::fmt::Debug {
    /// The registry name (`snake_case`), also the `detector` column of alerts.
    fn name(&self) -> &'static str;

    /// The categories of events this detector is shown; the engine filters
    /// the rest out before calling [`Detector::observe`].
    fn categories(&self) -> &'static [Category];

    /// Judges `event` against the baseline (only in [`Phase::Score`]),
    /// pushing findings to `out`, then folds it into the baseline.
    fn observe(&mut self, event: &EventRow, phase: Phase, out: &mut Vec<Finding>);
}
