//! The import pipeline: decode an input, redact what it produced, queue
//! good events for the lake and bad records for the dead-letter store, and
//! commit in batches. Keeps per-format totals for the summary.

use std::collections::BTreeMap;
use std::path::Path;

use pipewatch_schema::Event;

use crate::IngestError;
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::decoders::{Format, Input};
use crate::intake::decode_redacted;
use crate::lake::LakeWriter;
use crate::redact::Redactor;

/// Events held in memory before a commit.
pub const DEFAULT_BATCH_EVENTS: usize = 100_000;

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
            summary: IngestSummary::default(),
        })
    }

    /// Sets how many events are held before a commit.
    pub fn with_batch_events(mut self, events: usize) -> Self {
        self.batch_events = events.max(1);
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
        let (format, out) = decode_redacted(format, input, &self.redactor);
        let name = format.map_or("unknown", Format::name).to_owned();
        let totals = self.summary.formats.entry(name).or_default();
        totals.inputs += 1;
        totals.dead_lettered += out.dead_letters.len();
        self.dead_letters.store(&out.dead_letters)?;
        self.pending.extend(out.events);
        if self.pending.len() >= self.batch_events {
            self.flush()?;
        }
        Ok(out.dead_letters)
    }

    /// Commits every queued event.
    pub fn flush(&mut self) -> Result<(), IngestError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut events = std::mem::take(&mut self.pending);
        // Commit in batches so a large input becomes durable piece by piece
        // and each file stays a manageable size.
        while !events.is_empty() {
            let rest = events.split_off(events.len().min(self.batch_events));
            let report = self.writer.commit(events)?;
            self.summary.files_committed += report.files.len();
            for (source, (written, duplicates)) in report.per_source {
                let totals = self.summary.formats.entry(source).or_default();
                totals.accepted += written;
                totals.duplicates += duplicates;
            }
            events = rest;
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
