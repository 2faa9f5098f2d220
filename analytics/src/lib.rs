//! # pipewatch-analytics
//!
//! Reads the lake and turns it into answers: the read-only query service
//! ([`query`]: DataFusion over the Parquet lake with the `events` table and
//! one view per category, a guard that refuses anything but reading, and
//! memory, time and row limits). Detectors, hardening metrics and alerts
//! build on it.
//!
//! ```text
//! <data-dir>/events/category=…/date=…/*.parquet ─> QueryService ─> guard ─> DataFusion ─> RecordBatch
//! ```

pub mod alerts;
pub mod detect;
pub mod eval;
pub mod metrics;
pub mod notify;
pub mod query;

pub use metrics::{METRICS, Metric, MetricsError, MetricsReport, Scope, Window, run_metrics};
pub use query::{QueryError, QueryLimits, QueryOutput, QueryService, render};
