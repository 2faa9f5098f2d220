//! The import pipeline: decode an input, redact what it produced, queue
//! good events for the lake and bad records for the dead-letter store, and
//! commit in batches. Keeps per-format totals for the summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

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
    redactor: Arc<Redactor>,
    dead_letters: DeadLetterStore,
    pending: Vec<Event>,
    batch_events: usize,
    piece_bytes: usize,
    decode_threads: usize,
    summary: IngestSummary,
}

impl Ingestor {
    /// Opens the data directory for writing.
    pub fn open(data_dir: &Path) -> Result<Self, IngestError> {
        Ok(Ingestor {
            writer: LakeWriter::open(data_dir)?,
            redactor: Arc::new(Redactor::for_data_dir(data_dir)?),
            dead_letters: DeadLetterStore::open(data_dir),
            pending: Vec::new(),
            batch_events: DEFAULT_BATCH_EVENTS,
            piece_bytes: PIECE_BYTES,
            decode_threads: default_decode_threads(),
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

    /// Sets how many threads decode the pieces of a large input; 1 decodes
    /// them on the calling thread.
    pub fn with_decode_threads(mut self, threads: usize) -> Self {
        self.decode_threads = threads.max(1);
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
        let redactor = Arc::clone(&self.redactor);
        let decode = |piece: &Input<'_>| decode_redacted(format, piece, &redactor).1;
        in_order(&pieces, self.decode_threads, decode, |piece, out| {
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
            Ok(())
        })?;
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

/// Most threads a large input is decoded on by default. The commit runs on
/// one thread and takes about two fifths of the work, so beyond a few
/// decoders the clock waits on it and more threads only hold more pieces.
const MAX_DEFAULT_DECODE_THREADS: usize = 4;

/// One decoding thread per core, up to [`MAX_DEFAULT_DECODE_THREADS`]: the
/// pieces are independent, and the commit, which keeps their order, runs
/// beside them.
fn default_decode_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(MAX_DEFAULT_DECODE_THREADS)
}

/// Decodes `pieces` on up to `threads` threads and hands each result to
/// `consume` in input order, so the lake and the dead-letter store see the
/// same sequence as a decode on one thread. Each thread holds at most one
/// finished piece beyond the one it decodes, which bounds the memory.
/// Stops at the first error `consume` returns.
fn in_order<'p, T: Send>(
    pieces: &'p [Input<'p>],
    threads: usize,
    decode: impl Fn(&Input<'_>) -> T + Sync,
    mut consume: impl FnMut(&Input<'_>, T) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let threads = threads.min(pieces.len());
    if threads <= 1 {
        for piece in pieces {
            consume(piece, decode(piece))?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let decode = &decode;
        let results: Vec<_> = (0..threads)
            .map(|first| {
                let (send, receive) = std::sync::mpsc::sync_channel(1);
                scope.spawn(move || {
                    for piece in pieces.iter().skip(first).step_by(threads) {
                        // The receiver is gone when a commit failed: stop.
                        if send.send(decode(piece)).is_err() {
                            return;
                        }
                    }
                });
                receive
            })
            .collect();
        for (index, piece) in pieces.iter().enumerate() {
            // A closed channel means its decoder panicked; the scope
            // re-raises that panic when it joins.
            let Ok(out) = results[index % threads].recv() else {
                break;
            };
            consume(piece, out)?;
        }
        Ok(())
    })
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

    /// Ingests `body` into a fresh lake: the summary, the dead letters'
    /// positions, the progress calls and every stored file's bytes by path.
    fn ingest_with(
        body: &str,
        piece_bytes: usize,
        threads: usize,
    ) -> (
        IngestSummary,
        Vec<Position>,
        usize,
        BTreeMap<String, Vec<u8>>,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ingestor = Ingestor::open(dir.path())
            .expect("open")
            .with_batch_events(50)
            .with_piece_bytes(piece_bytes)
            .with_decode_threads(threads);
        let mut calls = 0;
        let letters = ingestor
            .ingest_with_progress(None, &Input::new("audit.log", body.as_bytes()), |_| {
                calls += 1
            })
            .expect("ingest");
        let summary = ingestor.finish().expect("finish");
        let events = dir.path().join("events");
        let files = walkdir::WalkDir::new(&events)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|e| e == "parquet"))
            .map(|entry| {
                let name = entry.path().strip_prefix(&events).expect("inside");
                let bytes = std::fs::read(entry.path()).expect("read");
                (name.display().to_string(), bytes)
            })
            .collect();
        let positions = letters.iter().map(|l| l.position).collect();
        (summary, positions, calls, files)
    }

    fn ingest(body: &str, piece_bytes: usize) -> (IngestSummary, Vec<Position>, usize) {
        let (summary, positions, calls, _) = ingest_with(body, piece_bytes, 1);
        (summary, positions, calls)
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

    #[test]
    fn pieces_decoded_on_several_threads_store_the_same_lake_as_one_thread() {
        let body = vault_lines(300);
        let (one, one_letters, one_calls, one_files) = ingest_with(&body, 1024, 1);
        let (three, three_letters, three_calls, three_files) = ingest_with(&body, 1024, 3);
        assert!(one_calls > 10, "{one_calls} pieces");
        assert_eq!(three_calls, one_calls);
        assert_eq!(three_letters, one_letters);
        assert_eq!(three.formats, one.formats);
        assert_eq!(three.files_committed, one.files_committed);
        assert!(!one_files.is_empty());
        // Same files, same bytes: the commits saw the events in input order.
        assert_eq!(
            three_files.keys().collect::<Vec<_>>(),
            one_files.keys().collect::<Vec<_>>()
        );
        assert!(three_files == one_files, "file contents differ");
    }

    #[test]
    fn results_arrive_in_input_order_however_long_each_piece_takes() {
        let bytes: Vec<Vec<u8>> = (0..24u8).map(|i| vec![i]).collect();
        let pieces: Vec<Input<'_>> = bytes.iter().map(|b| Input::new("t", b)).collect();
        let mut seen = Vec::new();
        in_order(
            &pieces,
            3,
            |piece| {
                // Early pieces take longest, so later ones finish first.
                let first = piece.bytes[0];
                std::thread::sleep(std::time::Duration::from_millis(u64::from(24 - first)));
                first
            },
            |piece, first| {
                assert_eq!(piece.bytes[0], first);
                seen.push(first);
                Ok(())
            },
        )
        .expect("no error");
        assert_eq!(seen, (0..24).collect::<Vec<u8>>());
    }

    #[test]
    fn a_failed_commit_stops_the_decoding_threads() {
        let bytes: Vec<Vec<u8>> = (0..200u8).map(|i| vec![i]).collect();
        let pieces: Vec<Input<'_>> = bytes.iter().map(|b| Input::new("t", b)).collect();
        let decoded = std::sync::atomic::AtomicUsize::new(0);
        let mut consumed = 0;
        let result = in_order(
            &pieces,
            2,
            |piece| {
                decoded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                piece.bytes[0]
            },
            |_, first| {
                consumed += 1;
                if first == 5 {
                    return Err(IngestError::Parquet("disk full".into()));
                }
                Ok(())
            },
        );
        assert!(matches!(result, Err(IngestError::Parquet(ref m)) if m == "disk full"));
        assert_eq!(consumed, 6);
        // Each thread may finish one piece beyond what it had queued.
        let decoded = decoded.into_inner();
        assert!(
            decoded <= 6 + 2 * 2,
            "{decoded} pieces decoded after the failure"
        );
    }
}
