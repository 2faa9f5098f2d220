//! The import pipeline: decode an input, redact what it produced, queue
//! good events for the lake and bad records for the dead-letter store, and
//! commit in batches. Keeps per-format totals for the summary.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use pipewatch_schema::{Event, PartitionPath};

use crate::IngestError;
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::decoders::pieces::{self, Piece, PieceReader};
use crate::decoders::{self, DecodeOutput, Format, Input};
use crate::intake::decode_redacted;
use crate::lake::LakeWriter;
use crate::redact::Redactor;

/// Events held in memory before the fullest partitions are committed.
pub const DEFAULT_BATCH_EVENTS: usize = 100_000;

/// Bytes of a large NDJSON input read and decoded at a time: memory stays
/// bounded by the batch, not by the size of the file.
pub const PIECE_BYTES: usize = 4 << 20;

/// An input read as a stream: a file or standard input.
pub struct StreamedInput<'a> {
    /// File path or `stdin`; shown in errors.
    pub origin: &'a str,
    pub type_hint: Option<&'a str>,
    /// See [`Input::observed_at`].
    pub observed_at: Option<DateTime<Utc>>,
    pub reader: Box<dyn Read + 'a>,
    /// Opens the same content again from its start, for formats that read
    /// an input through once before cutting it (trace exports); without it
    /// such an input is copied to a temporary file in the data directory.
    pub reopen: Option<Reopen<'a>>,
}

/// Opens an input's content again from its start.
pub type Reopen<'a> = Box<dyn Fn() -> std::io::Result<Box<dyn Read + 'a>> + 'a>;

impl std::fmt::Debug for StreamedInput<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedInput")
            .field("origin", &self.origin)
            .field("type_hint", &self.type_hint)
            .field("observed_at", &self.observed_at)
            .field("reopen", &self.reopen.is_some())
            .finish_non_exhaustive()
    }
}

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
    /// Queued events by the partition they go to.
    pending: BTreeMap<PartitionPath, Vec<Event>>,
    pending_events: usize,
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
            pending: BTreeMap::new(),
            pending_events: 0,
            batch_events: DEFAULT_BATCH_EVENTS,
            piece_bytes: PIECE_BYTES,
            decode_threads: default_decode_threads(),
            summary: IngestSummary::default(),
        })
    }

    /// Sets how many events are held before the fullest partitions are
    /// committed.
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
    /// input read so far as each piece is queued. A large NDJSON input in a format that allows
    /// it is decoded and committed a piece at a time.
    pub fn ingest_with_progress(
        &mut self,
        format: Option<Format>,
        input: &Input<'_>,
        progress: impl FnMut(u64),
    ) -> Result<Vec<DeadLetter>, IngestError> {
        let bytes = input.bytes;
        let streamed = StreamedInput {
            origin: input.origin,
            type_hint: input.type_hint,
            observed_at: input.observed_at,
            reader: Box::new(bytes),
            reopen: Some(Box::new(move || Ok(Box::new(bytes) as Box<dyn Read>))),
        };
        self.ingest_stream(format, streamed, progress)
    }

    /// Reads an input from a stream and queues what it decodes to, like
    /// [`ingest`](Self::ingest). A large NDJSON input is read a piece at a
    /// time, so memory follows the piece, not the file. `progress` is
    /// called with the bytes read so far.
    ///
    /// A read error after some pieces leaves their records queued and
    /// returns [`IngestError::Read`]; ingesting the input again later
    /// stores only what is missing.
    pub fn ingest_stream(
        &mut self,
        format: Option<Format>,
        input: StreamedInput<'_>,
        mut progress: impl FnMut(u64),
    ) -> Result<Vec<DeadLetter>, IngestError> {
        let StreamedInput {
            origin,
            type_hint,
            observed_at,
            mut reader,
            reopen,
        } = input;
        // Only pieces of whole lines read before a failure are kept.
        let failed = |kept_bytes: u64, source| IngestError::Read {
            origin: origin.to_owned(),
            kept_bytes,
            source,
        };
        let mut head = Vec::new();
        let head_error = pieces::read_head(&mut *reader, &mut head, self.piece_bytes).err();
        // A head cut short by a read error goes a piece at a time too, so
        // the whole lines before the error are kept however small it is.
        let in_pieces = head.len() > self.piece_bytes || head_error.is_some();
        let (format, cuts) = if in_pieces && pieces::starts_ndjson(&head) {
            let format = format.or_else(|| decoders::detect(&head));
            (format, format.and_then(|f| f.decoder().line_cuts()))
        } else {
            (format, None)
        };
        let template = Input {
            origin,
            bytes: &[],
            type_hint,
            observed_at,
            lines_from: None,
        };
        let Some(mut cuts) = cuts else {
            // Small, not NDJSON, or a format read whole.
            if let Some(error) = head_error.or_else(|| reader.read_to_end(&mut head).err()) {
                return Err(failed(0, error));
            }
            let format = format.or_else(|| decoders::detect(&head));
            let whole = Input {
                bytes: &head,
                ..template
            };
            let name = self.count_input(format);
            let out = decode_redacted(format, &whole, &self.redactor).1;
            let mut dead_letters = Vec::new();
            self.queue(&name, out, &mut dead_letters)?;
            progress(head.len() as u64);
            return Ok(dead_letters);
        };
        if cuts.needs_first_pass() {
            match (&head_error, &reopen) {
                // The input failed within its head: the head is all of it
                // there is, and its whole lines are stored before the error.
                (Some(_), _) => {
                    pieces::learn_all(&head[..], cuts.as_mut()).map_err(|error| failed(0, error))?
                }
                (None, Some(reopen)) => {
                    // A first pass cut short (a truncated file) has learnt
                    // the lines before the error, and the second pass stops
                    // at the same error after storing them.
                    if let Err(error) =
                        reopen().and_then(|again| pieces::learn_all(again, cuts.as_mut()))
                    {
                        tracing::debug!(origin, %error, "first pass ended early");
                    }
                }
                (None, None) => {
                    // Nothing to read twice: the input is copied to a file
                    // beside the lake (gone when closed, even after a crash)
                    // while the cuts are learnt, then read from there.
                    let spooled = spool(&head[..], reader, self.writer.data_dir(), cuts.as_mut())
                        .map_err(|error| failed(0, error))?;
                    reader = spooled;
                    head = Vec::new();
                }
            }
        }
        let name = self.count_input(format);
        let mut source =
            PieceReader::new(reader, head, self.piece_bytes, cuts).failed_with(head_error);
        let mut dead_letters = Vec::new();
        let redactor = Arc::clone(&self.redactor);
        let decode = |piece: &Piece| {
            let input = Input {
                bytes: &piece.bytes,
                lines_from: Some(piece.first_line),
                ..template
            };
            decode_redacted(format, &input, &redactor).1
        };
        let mut next = || match source.next_piece() {
            Ok(piece) => Ok((piece, source.read_bytes())),
            Err(error) => Err(failed(source.handed_out(), error)),
        };
        in_order(self.decode_threads, &mut next, decode, |read, out| {
            self.queue(&name, out, &mut dead_letters)?;
            progress(read);
            Ok(())
        })?;
        Ok(dead_letters)
    }

    /// Counts one input of `format` and returns the name totals go under.
    fn count_input(&mut self, format: Option<Format>) -> String {
        let name = format.map_or("unknown", Format::name).to_owned();
        self.summary.formats.entry(name.clone()).or_default().inputs += 1;
        name
    }

    /// Stores a decoded piece's dead letters and queues its events,
    /// committing the fullest partitions once a batch is queued.
    fn queue(
        &mut self,
        name: &str,
        out: DecodeOutput,
        dead_letters: &mut Vec<DeadLetter>,
    ) -> Result<(), IngestError> {
        self.summary
            .formats
            .entry(name.to_owned())
            .or_default()
            .dead_lettered += out.dead_letters.len();
        self.dead_letters.store(&out.dead_letters)?;
        dead_letters.extend(out.dead_letters);
        self.pending_events += out.events.len();
        for event in out.events {
            let partition = PartitionPath::new(event.category, event.event_time.date_naive());
            self.pending.entry(partition).or_default().push(event);
        }
        self.commit_fullest()
    }

    /// Commits every queued event.
    pub fn flush(&mut self) -> Result<(), IngestError> {
        while let Some(partition) = self.pending.keys().next().copied() {
            self.commit_partition(partition, false)?;
        }
        Ok(())
    }

    /// Once a batch is queued, commits the partitions holding the most
    /// events until half a batch is left. A partition that fills slowly
    /// (a quiet category, a day few records fall on) waits for more
    /// instead of becoming a small file at every batch, so an import
    /// writes fewer, larger files and leaves less for compaction; memory
    /// stays bounded by the batch all the same.
    fn commit_fullest(&mut self) -> Result<(), IngestError> {
        if self.pending_events < self.batch_events {
            return Ok(());
        }
        while self.pending_events > self.batch_events / 2 {
            let fullest = self
                .pending
                .iter()
                .max_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| b.0.cmp(a.0)))
                .map(|(partition, _)| *partition);
            let Some(partition) = fullest else {
                break;
            };
            self.commit_partition(partition, true)?;
        }
        Ok(())
    }

    /// Commits one partition's queued events, a batch per file at most.
    /// With `keep_rest`, what does not fill a last batch of a partition
    /// holding more than one stays queued; without it, the files are of
    /// equal size. What a failed commit did not store stays queued.
    fn commit_partition(
        &mut self,
        partition: PartitionPath,
        keep_rest: bool,
    ) -> Result<(), IngestError> {
        let Some(mut events) = self.pending.remove(&partition) else {
            return Ok(());
        };
        let batch = self.batch_events;
        let (taken, file_events) = if keep_rest && events.len() > batch {
            (events.len() / batch * batch, batch)
        } else {
            let files = events.len().div_ceil(batch).max(1);
            (events.len(), events.len().div_ceil(files).max(1))
        };
        let mut committed = 0;
        let mut result = Ok(());
        for file in events[..taken].chunks(file_events) {
            result = self.commit(file);
            if result.is_err() {
                break;
            }
            committed += file.len();
        }
        self.pending_events -= committed;
        if committed < events.len() {
            events.drain(..committed);
            self.pending.insert(partition, events);
        }
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

/// Copies `head` and the rest of `reader` to an unnamed file in `dir`,
/// showing every line to `cuts` on the way, and returns that file from its
/// start.
fn spool(
    head: &[u8],
    reader: Box<dyn Read + '_>,
    dir: &Path,
    cuts: &mut dyn pieces::LineCuts,
) -> std::io::Result<Box<dyn Read + 'static>> {
    use std::io::{Seek, Write};

    /// Writes what passes through it to the spool.
    struct Tee<R, W> {
        from: R,
        to: W,
    }

    impl<R: Read, W: Write> Read for Tee<R, W> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.from.read(buf)?;
            self.to.write_all(&buf[..n])?;
            Ok(n)
        }
    }

    let mut file = tempfile::tempfile_in(dir)?;
    {
        let mut tee = Tee {
            from: head.chain(reader),
            to: std::io::BufWriter::with_capacity(1 << 20, &mut file),
        };
        pieces::learn_all(&mut tee, cuts)?;
        tee.to.flush()?;
    }
    file.rewind()?;
    Ok(Box::new(std::io::BufReader::with_capacity(1 << 16, file)))
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

/// Decodes the pieces `next` reads on up to `threads` threads and hands
/// each result to `consume` in input order, with the bytes read by then,
/// so the lake and the dead-letter store see the same sequence as a decode
/// on one thread. At most two pieces per thread are in flight, which
/// bounds the memory. Stops at the first error `consume` returns; a read
/// error is returned once the pieces read before it are consumed.
fn in_order<T: Send>(
    threads: usize,
    next: &mut dyn FnMut() -> Result<(Option<Piece>, u64), IngestError>,
    decode: impl Fn(&Piece) -> T + Sync,
    mut consume: impl FnMut(u64, T) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    if threads <= 1 {
        while let (Some(piece), read) = next()? {
            let out = decode(&piece);
            drop(piece);
            consume(read, out)?;
        }
        return Ok(());
    }
    std::thread::scope(|scope| {
        let decode = &decode;
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (to_worker, inbox) = std::sync::mpsc::sync_channel::<Piece>(1);
                let (outbox, from_worker) = std::sync::mpsc::sync_channel(1);
                scope.spawn(move || {
                    // The inbox closes at the end of the input or when a
                    // commit failed; the outbox, when a commit failed.
                    for piece in inbox {
                        let out = decode(&piece);
                        drop(piece);
                        if outbox.send(out).is_err() {
                            return;
                        }
                    }
                });
                (to_worker, from_worker)
            })
            .collect();
        let in_flight_most = 2 * threads;
        // The worker of each piece in flight and the bytes read by then,
        // oldest first.
        let mut in_flight = std::collections::VecDeque::with_capacity(in_flight_most);
        let mut take = |(worker, read): (usize, u64)| -> Result<bool, IngestError> {
            // A closed channel means its decoder panicked; the scope
            // re-raises that panic when it joins.
            let Ok(out) = workers[worker].1.recv() else {
                return Ok(false);
            };
            consume(read, out)?;
            Ok(true)
        };
        let mut turns = (0..threads).cycle();
        let read_error = loop {
            if in_flight.len() == in_flight_most
                && let Some(oldest) = in_flight.pop_front()
                && !take(oldest)?
            {
                return Ok(());
            }
            match next() {
                Ok((Some(piece), read)) => {
                    let worker = turns.next().unwrap_or_default();
                    if workers[worker].0.send(piece).is_err() {
                        return Ok(());
                    }
                    in_flight.push_back((worker, read));
                }
                Ok((None, _)) => break None,
                Err(error) => break Some(error),
            }
        };
        while let Some(oldest) = in_flight.pop_front() {
            if !take(oldest)? {
                return Ok(());
            }
        }
        read_error.map_or(Ok(()), Err)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoders::Position;

    fn vault_lines(count: usize) -> String {
        vault_lines_on(count, |_| "2024-05-01")
    }

    /// `count` Vault audit lines, line `i` on the day `day(i)`, with a
    /// broken line after the 38th.
    fn vault_lines_on(count: usize, day: impl Fn(usize) -> &'static str) -> String {
        let mut body = String::new();
        for i in 0..count {
            let line = serde_json::json!({
                "time": format!("{}T10:00:00Z", day(i)), "type": "response",
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
    fn a_partition_that_fills_slowly_is_committed_once_not_at_every_batch() {
        // 300 records of one day with 10 of the day before spread among
        // them, committed in batches of 50.
        let body = vault_lines_on(310, |i| {
            if i % 31 == 30 {
                "2024-04-30"
            } else {
                "2024-05-01"
            }
        });
        let (summary, _, calls, files) = ingest_with(&body, 1024, 1);
        assert!(calls > 10, "{calls} pieces");
        assert_eq!(summary.total().accepted, 310);
        let on = |day: &str| {
            files
                .keys()
                .filter(|name| name.contains(&format!("date={day}")))
                .count()
        };
        assert_eq!(on("2024-04-30"), 1, "{:?}", files.keys());
        // The busy day is committed as it fills, a batch per file at most.
        assert!((6..=8).contains(&on("2024-05-01")), "{:?}", files.keys());
        assert_eq!(summary.files_committed, files.len());
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

    /// Pieces of one byte each, 0 to `count - 1`, counting those read.
    fn numbered(
        count: u8,
        read: &std::cell::Cell<usize>,
    ) -> impl FnMut() -> Result<(Option<Piece>, u64), IngestError> + '_ {
        move || {
            let n = read.get();
            if n == usize::from(count) {
                return Ok((None, n as u64));
            }
            read.set(n + 1);
            let piece = Piece {
                bytes: vec![n as u8],
                first_line: n + 1,
            };
            Ok((Some(piece), n as u64 + 1))
        }
    }

    #[test]
    fn results_arrive_in_input_order_however_long_each_piece_takes() {
        let read = std::cell::Cell::new(0);
        let mut seen = Vec::new();
        in_order(
            3,
            &mut numbered(24, &read),
            |piece| {
                // Early pieces take longest, so later ones finish first.
                let first = piece.bytes[0];
                std::thread::sleep(std::time::Duration::from_millis(u64::from(24 - first)));
                first
            },
            |read_by_then, first| {
                assert_eq!(read_by_then, u64::from(first) + 1);
                seen.push(first);
                Ok(())
            },
        )
        .expect("no error");
        assert_eq!(seen, (0..24).collect::<Vec<u8>>());
    }

    #[test]
    fn reading_stays_a_few_pieces_ahead_of_the_commits() {
        for threads in [1, 2, 3] {
            let read = std::cell::Cell::new(0);
            let mut consumed = 0;
            let mut next = numbered(200, &read);
            in_order(
                threads,
                &mut next,
                |piece| piece.bytes[0],
                |_, _| {
                    consumed += 1;
                    let ahead = read.get() - consumed;
                    assert!(
                        ahead < 2 * threads,
                        "{ahead} pieces read ahead on {threads} threads"
                    );
                    Ok(())
                },
            )
            .expect("no error");
            assert_eq!(consumed, 200);
        }
    }

    #[test]
    fn a_read_error_comes_after_the_pieces_read_before_it() {
        for threads in [1, 3] {
            let read = std::cell::Cell::new(0);
            let mut pieces = numbered(200, &read);
            let mut next = || {
                if read.get() == 10 {
                    return Err(IngestError::Read {
                        origin: "t".into(),
                        kept_bytes: 10,
                        source: std::io::Error::other("cable cut"),
                    });
                }
                pieces()
            };
            let mut seen = Vec::new();
            let result = in_order(
                threads,
                &mut next,
                |piece| piece.bytes[0],
                |_, first| {
                    seen.push(first);
                    Ok(())
                },
            );
            assert!(matches!(
                result,
                Err(IngestError::Read { kept_bytes: 10, .. })
            ));
            assert_eq!(seen, (0..10).collect::<Vec<u8>>(), "{threads} threads");
        }
    }

    #[test]
    fn a_failed_commit_stops_the_decoding_threads() {
        let read = std::cell::Cell::new(0);
        let decoded = std::sync::atomic::AtomicUsize::new(0);
        let mut consumed = 0;
        let result = in_order(
            2,
            &mut numbered(200, &read),
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
        // Nothing is read past the pieces in flight, two per thread.
        assert!(read.get() <= 6 + 2 * 2, "{} pieces read", read.get());
        let decoded = decoded.into_inner();
        assert!(
            decoded <= 6 + 2 * 2,
            "{decoded} pieces decoded after the failure"
        );
    }
}
