//! The import pipeline: decode an input, redact what it produced, queue
//! good events for the lake and bad records for the dead-letter store, and
//! commit in batches. Keeps per-format totals for the summary.

use std::collections::BTreeMap;
use std::path::Path;

use pipewatch_schema::Event;

use crate::IngestError;
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::decoders::{self, Format, Input};
use crate::intake::decode_redacted;
use crate::lake::LakeWriter;
use crate::redact::Redactor;

/// Events held in memory before a commit.
pub const DEFAULT_BATCH_EVENTS: usize = 100_000;

/// Bytes of a large NDJSON input decoded at a time: memory stays bounded
/// by the batch, not by the size of the file.
pub const PIECE_BYTES: usize = 4 << 20;

/// Counts for one format (or `unknown` for undetected inputs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FormatTotals {
    /// Inputs (files, bodies) read as this format.
    pub inputs: usize,
    /// Events stored.
    pub accepted: usize,
    /// Events already in the lake (or repeated), not stored again.
    pub duplicates: usize,
    /// Records sent to the dead-letter store.
    pub dead_lettered: usize,
}

/// What an import did, per format.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct IngestSummary {
    pub formats: BTreeMap<String, FormatTotals>,
    /// Files committed to the lake.
    pub files_committed: usize,
}

impl IngestSummary {
    /// Totals over every format.
    pub fn total(&self) -> FormatTotals {
        self.formats
            .values()
            .fold(FormatTotals::default(), |mut acc, t| {
                acc.inputs += t.inputs;
                acc.accepted += t.accepted;
                acc.duplicates += t.duplicates;
                acc.dead_lettered += t.dead_lettered;
                acc
            })
    }
}

/// Decodes, redacts and commits inputs into one data directory.
#[derive(Debug)]
pub struct Ingestor {
    writer: LakeWriter,
    redactor: Redactor,
    dead_letters: DeadLetterStore,
    pending: Vec<Event>,
    batch_events: usize,
    piece_bytes: usize,
    summary: IngestSummary,
}

impl Ingestor {
    /// Opens the data directory for writing.
    pub fn open(data_dir: &Path) -> Result<Self, IngestError> {
        Ok(Ingestor {
            writer: LakeWriter::open(data_dir)?,
            redactor: Redactor::for_data_dir(data_dir)?,
            dead_letters: DeadLetterStore::open(data_dir),
            pending: Vec::new(),
            batch_events: DEFAULT_BATCH_EVENTS,
            piece_bytes: PIECE_BYTES,
            summary: IngestSummary::default(),
        })
    }

    /// Sets how many events are held before a commit.
    pub fn with_batch_events(mut self, events: usize) -> Self {
        self.batch_events = events.max(1);
        self
    }

    /// Sets how many bytes of a large NDJSON input are decoded at a time.
    pub fn with_piece_bytes(mut self, bytes: usize) -> Self {
        self.piece_bytes = bytes.max(1);
        self
    }

    /// The redactor, for callers that log input-derived text.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Decodes one input (in `format`, or detected) and queues the result.
    /// Dead letters are stored before this returns; events are committed
    /// once the batch is full or on [`flush`](Self::flush).
    pub fn ingest(
        &mut self,
        format: Option<Format>,
        input: &Input<'_>,
    ) -> Result<Vec<DeadLetter>, IngestError> {
        self.ingest_with_progress(format, input, |_| {})
    }

    /// [`ingest`](Self::ingest), calling `progress` with the bytes of the
    /// input decoded so far. A large NDJSON input in a format whose lines
    /// stand alone is decoded and committed a piece at a time.
    pub fn ingest_with_progress(
        &mut self,
        format: Option<Format>,
        input: &Input<'_>,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<DeadLetter>, IngestError> {
        let format = format.or_else(|| decoders::detect(input.bytes));
        let pieces = format
            .and_then(|f| f.decoder().pieces(input, self.piece_bytes))
            .unwrap_or_else(|| vec![*input]);
        let name = format.map_or("unknown", Format::name).to_owned();
        self.summary.formats.entry(name.clone()).or_default().inputs += 1;
        let mut dead_letters = Vec::new();
        let mut done = 0;
        for piece in &pieces {
            let (_, out) = decode_redacted(format, piece, &self.redactor);
            self.summary
                .formats
                .entry(name.clone())
                .or_default()
                .dead_lettered += out.dead_letters.len();
            self.dead_letters.store(&out.dead_letters)?;
            dead_letters.extend(out.dead_letters);
            if self.pending.is_empty() {
                self.pending = out.events;
            } else {
                self.pending.extend(out.events);
            }
            self.commit_full_batches()?;
            done += piece.bytes.len();
            progress(done);
        }
        Ok(dead_letters)
    }

    /// Commits every queued event.
    pub fn flush(&mut self) -> Result<(), IngestError> {
        self.commit_full_batches()?;
        let rest = std::mem::take(&mut self.pending);
        self.commit(&rest)
    }

    /// Commits the queued events a full batch at a time, so a large input
    /// becomes durable piece by piece and each file stays a manageable
    /// size; what does not fill a batch waits for more.
    fn commit_full_batches(&mut self) -> Result<(), IngestError> {
        let full = self.pending.len() / self.batch_events * self.batch_events;
        if full == 0 {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let mut committed = 0;
        let mut result = Ok(());
        for batch in pending[..full].chunks(self.batch_events) {
            result = self.commit(batch);
            if result.is_err() {
                break;
            }
            committed += batch.len();
        }
        // What a failed commit did not store stays queued.
        self.pending = pending;
        self.pending.drain(..committed);
        result
    }

    fn commit(&mut self, events: &[Event]) -> Result<(), IngestError> {
        if events.is_empty() {
            return Ok(());
        }
        let report = self.writer.commit_named(events, None)?;
        self.summary.files_committed += report.files.len();
        for (source, (written, duplicates)) in report.per_source {
            let totals = self.summary.formats.entry(source).or_default();
            totals.accepted += written;
            totals.duplicates += duplicates;
        }
        Ok(())
    }

    /// Commits what is queued and returns the totals.
    pub fn finish(mut self) -> Result<IngestSummary, IngestError> {
        self.flush()?;
        Ok(self.summary)
    }

    /// Totals so far (committed events only).
    pub fn summary(&self) -> &IngestSummary {
        &self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoders::Position;

    fn vault_lines(count: usize) -> String {
        let mut body = String::new();
        for i in 0..count {
            let line = serde_json::json!({
                "time": "2024-05-01T10:00:00Z", "type": "response",
                "auth": {"accessor": format!("hmac-sha256:{i:04}")},
                "request": {"id": format!("req-{i}"), "path": "kv/data/app", "operation": "read"},
            });
            body.push_str(&line.to_string());
            body.push('\n');
            if i == 37 {
                body.push_str("{not json\n\n");
            }
        }
        body
    }

    fn ingest(body: &str, piece_bytes: usize) -> (IngestSummary, Vec<Position>, usize) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ingestor = Ingestor::open(dir.path())
            .expect("open")
            .with_batch_events(50)
            .with_piece_bytes(piece_bytes);
        let mut calls = 0;
        let letters = ingestor
            .ingest_with_progress(None, &Input::new("audit.log", body.as_bytes()), |_| {
                calls += 1
            })
            .expect("ingest");
        let summary = ingestor.finish().expect("finish");
        (summary, letters.iter().map(|l| l.position).collect(), calls)
    }

    #[test]
    fn a_large_input_decoded_in_pieces_stores_what_decoding_it_whole_stores() {
        let body = vault_lines(300);
        let (whole, whole_letters, whole_calls) = ingest(&body, usize::MAX);
        let (pieces, piece_letters, piece_calls) = ingest(&body, 1024);
        assert_eq!(whole_calls, 1);
        assert!(piece_calls > 10, "{piece_calls} pieces");
        assert_eq!(whole_letters, vec![Position::Line(39)]);
        assert_eq!(piece_letters, whole_letters);
        let vault = &pieces.formats["vault_audit"];
        assert_eq!(vault.inputs, 1);
        assert_eq!(vault.accepted, 300);
        assert_eq!(vault.dead_lettered, 1);
        assert_eq!(pieces.formats["vault_audit"], whole.formats["vault_audit"]);
    }
}
