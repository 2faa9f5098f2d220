//! Dead letters: records that could not be decoded, each with its source,
//! position, a reason from a closed set and a SHA-256 of its bytes, kept in
//! the data directory so nothing is silently lost.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::decoders::Position;

/// Why a record was not stored. Closed: dashboards and metrics count by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// No decoder recognised the input.
    UnknownFormat,
    /// Bytes that are not valid UTF-8 text, or a corrupt compressed stream.
    InvalidEncoding,
    /// Not parsable as JSON, YAML or protobuf.
    Syntax,
    /// Parsed, but not a record shape this format defines (unknown event type).
    UnknownShape,
    /// A field the record needs (id, time) is missing.
    MissingField,
    /// A field has a value that cannot be used (bad timestamp, wrong type).
    InvalidValue,
    /// The record is larger than the configured limit.
    TooLarge,
}

impl DeadLetterReason {
    /// Every reason.
    pub const ALL: &'static [DeadLetterReason] = &[
        DeadLetterReason::UnknownFormat,
        DeadLetterReason::InvalidEncoding,
        DeadLetterReason::Syntax,
        DeadLetterReason::UnknownShape,
        DeadLetterReason::MissingField,
        DeadLetterReason::InvalidValue,
        DeadLetterReason::TooLarge,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::UnknownFormat => "unknown_format",
            DeadLetterReason::InvalidEncoding => "invalid_encoding",
            DeadLetterReason::Syntax => "syntax",
            DeadLetterReason::UnknownShape => "unknown_shape",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::InvalidValue => "invalid_value",
            DeadLetterReason::TooLarge => "too_large",
        }
    }
}

impl std::fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest sample of a bad record kept in the store, in bytes.
pub const SAMPLE_LIMIT: usize = 16 * 1024;

/// A record that did not make it into the lake.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// Format name, or `unknown`.
    pub source: String,
    /// File path or transport.
    pub origin: String,
    pub position: Position,
    pub reason: DeadLetterReason,
    /// A sentence a person can act on.
    pub detail: String,
    /// SHA-256 of the record's bytes as received, to find it again upstream.
    pub raw_sha256: String,
    /// The start of the record as text. Redacted before it is stored.
    pub sample: String,
}

impl DeadLetter {
    /// A dead letter for `raw`.
    pub fn new(
        source: &str,
        origin: &str,
        position: Position,
        reason: DeadLetterReason,
        detail: String,
        raw: &[u8],
    ) -> Self {
        let cut = raw.len().min(SAMPLE_LIMIT);
        DeadLetter {
            source: source.to_owned(),
            origin: origin.to_owned(),
            position,
            reason,
            detail,
            raw_sha256: hex::encode(Sha256::digest(raw)),
            sample: String::from_utf8_lossy(&raw[..cut]).into_owned(),
        }
    }
}

impl std::fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}): {}: {}",
            self.origin, self.position, self.source, self.reason, self.detail
        )
    }
}
