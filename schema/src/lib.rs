//! # pipewatch-schema
//!
//! The data contract shared by ingest and analytics: the normalized
//! [`Event`] and its closed vocabularies, the Arrow schema of the `events`
//! table ([`file_schema`], [`table_schema`]) with the batch builder, table
//! and view names ([`tables`]), deterministic ids ([`EventId`]) and the
//! lake's path layout ([`PartitionPath`], [`DataFilePath`]).
//!
//! ```text
//! decoder ──> Event ──> EventBatchBuilder ──> RecordBatch (file_schema)
//!                                              └─> events/category=<c>/date=<d>/<stem>.parquet
//! ```
//!
//! No I/O and no async live here.

mod columns;
mod event;
mod ids;
mod paths;
mod raw;
pub mod tables;

pub use columns::{
    EventBatchBuilder, PARTITION_COLUMNS, file_schema, table_schema, with_partition_columns,
};
pub use event::{ActorKind, Category, Event, IdentityKind, RunnerHosting, Severity};
pub use ids::EventId;
pub use paths::{DEAD_LETTER_DIR, DataFilePath, EVENTS_DIR, IN_PROGRESS_SUFFIX, PartitionPath};
pub use raw::{Raw, SharedSeals};

/// Errors of the data contract.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A path that is not part of the lake layout.
    #[error("not a lake path: {0}")]
    BadPath(String),
    /// Arrow refused the columns.
    #[error("arrow: {0}")]
    Arrow(String),
}
