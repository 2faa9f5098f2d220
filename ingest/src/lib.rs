//! # pipewatch-ingest
//!
//! Everything between a native event and a committed row in the lake:
//! one decoder per native format ([`decoders`]), redaction of secret
//! values ([`redact`]), the dead-letter store ([`dead_letter`]), the
//! Parquet lake writer with atomic commits ([`lake`]), and the import
//! pipeline that ties them together ([`pipeline`]).
//!
//! ```text
//! bytes ─> decoders::decode ─> Event ─> redact ─> lake::LakeWriter ─> events/category=…/date=…/….parquet
//!              └─ bad record ─> DeadLetter ─> redact ─> dead-letter/date=…/….ndjson
//! ```

use std::path::Path;

pub mod compression;
pub mod dead_letter;
pub mod decoders;
pub mod intake;
pub mod lake;
pub mod metrics;
pub mod pipeline;
pub mod redact;
pub mod source;

pub use dead_letter::{DeadLetter, DeadLetterReason, DeadLetterStore};
pub use decoders::{DecodeOutput, Decoder, Format, Input, Position};
pub use lake::{CommitReport, LakeWriter};
pub use pipeline::{FormatTotals, IngestSummary, Ingestor, Reopen, StreamedInput};
pub use redact::Redactor;

/// Errors of the ingest side.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An input could not be read to its end. The records of its first
    /// `kept_bytes` are queued; ingesting it again stores only the rest.
    #[error("{origin}: {source} (the records of its first {kept_bytes} bytes were kept)")]
    Read {
        origin: String,
        kept_bytes: u64,
        #[source]
        source: std::io::Error,
    },
    /// Parquet encoding or reading failed.
    #[error("parquet: {0}")]
    Parquet(String),
    /// The data contract refused something.
    #[error(transparent)]
    Schema(#[from] pipewatch_schema::SchemaError),
    /// A setting or a stored key is unusable.
    #[error("configuration: {0}")]
    Config(String),
}

impl IngestError {
    /// An I/O error about `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
