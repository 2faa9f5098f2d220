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

/// The dead-letter store: NDJSON files under `<data-dir>/dead-letter/`,
/// one per stored group, named after the content so a replay rewrites the
/// same file instead of adding one.
#[derive(Debug)]
pub struct DeadLetterStore {
    dir: std::path::PathBuf,
}

/// One stored line: the dead letter and when it was stored.
#[derive(Debug, Serialize)]
struct StoredDeadLetter<'a> {
    stored_at: String,
    #[serde(flatten)]
    letter: &'a DeadLetter,
}

impl DeadLetterStore {
    /// The store of a data directory.
    pub fn open(data_dir: &std::path::Path) -> Self {
        DeadLetterStore {
            dir: data_dir.join(pipewatch_schema::DEAD_LETTER_DIR),
        }
    }

    /// Where the files live.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Stores letters durably. Callers redact them first.
    pub fn store(&self, letters: &[DeadLetter]) -> Result<(), crate::IngestError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut name = Sha256::new();
        for letter in letters {
            name.update(letter.origin.as_bytes());
            name.update(letter.position.to_string().as_bytes());
            name.update(letter.raw_sha256.as_bytes());
        }
        let stored_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut body = Vec::new();
        for letter in letters {
            let line = StoredDeadLetter {
                stored_at: stored_at.clone(),
                letter,
            };
            serde_json::to_writer(&mut body, &line)
                .map_err(|e| crate::IngestError::Config(format!("dead letter: {e}")))?;
            body.push(b'\n');
        }
        let path = self
            .dir
            .join(format!("{}.ndjson", hex::encode(&name.finalize()[..12])));
        crate::lake::atomic_write(&path, &body)
    }
}
