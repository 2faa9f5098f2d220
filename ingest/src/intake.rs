//! The intake of the long-running sources: decoded, redacted submissions
//! are grouped into lake commits by one committer thread; each submission
//! is acknowledged only once its events and dead letters are durable, and
//! every committed batch is published on a bounded feed for the detectors.
//!
//! Memory is bounded twice: the queue refuses submissions beyond
//! `queue_events` (sources answer "retry later"), and a full feed blocks the
//! committer, which fills the queue — backpressure instead of growth.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch, StringArray};
use pipewatch_schema::{Event, EventId, PartitionPath, SharedSeals, with_partition_columns};
use tokio::sync::oneshot;

use crate::IngestError;
use crate::dead_letter::{DeadLetter, DeadLetterStore};
use crate::decoders::{self, DecodeOutput, Format, Input};
use crate::lake::LakeWriter;
use crate::metrics::{IngestMetrics, ReasonLabels, SourceLabels};
use crate::redact::Redactor;

/// How the committer groups work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeSettings {
    /// Most events in one lake commit.
    pub batch_events: usize,
    /// How long the committer waits for more submissions before it commits
    /// what it holds: fewer, larger files at the cost of this much latency.
    /// At zero, submissions that arrive during a commit share the next one.
    pub linger: Duration,
    /// Most events decoded and not yet committed; beyond it sources refuse.
    pub queue_events: usize,
    /// Committed batches the feed holds before the committer waits for the
    /// detectors.
    pub feed_batches: usize,
}

impl Default for IntakeSettings {
    fn default() -> Self {
        IntakeSettings {
            batch_events: 10_000,
            linger: Duration::ZERO,
            queue_events: 100_000,
            feed_batches: 64,
        }
    }
}

/// What a source hands over: one request's or one poll's records.
#[derive(Debug)]
pub struct Submission {
    /// The intake it came through (`http`, `kafka`, `otlp`), for metrics.
    pub source: &'static str,
    pub events: Vec<Event>,
    pub dead_letters: Vec<DeadLetter>,
    /// A file name for this submission's files instead of a content hash
    /// (Kafka names files after offset ranges). Such submissions are
    /// committed on their own.
    pub file_stem: Option<String>,
}

impl Submission {
    /// A submission of what a decode produced.
    pub fn new(source: &'static str, decoded: DecodeOutput) -> Self {
        Submission {
            source,
            events: decoded.events,
            dead_letters: decoded.dead_letters,
            file_stem: None,
        }
    }

    fn records(&self) -> usize {
        self.events.len() + self.dead_letters.len()
    }
}

/// What became of a submission once durable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Ack {
    /// Events newly stored.
    pub accepted: usize,
    /// Events already stored (or repeated), not stored again.
    pub duplicates: usize,
    /// Records stored in the dead-letter store.
    pub dead_lettered: usize,
}

/// Why a submission was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full; the source should ask its sender to retry.
    #[error("the intake queue is full ({queued} events waiting, limit {limit}); retry shortly")]
    Busy { queued: usize, limit: usize },
    /// The process is shutting down.
    #[error("pipewatch is shutting down")]
    Closed,
}

/// A commit that did not happen; nothing of the submission is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the lake commit failed: {0}")]
pub struct CommitFailed(pub String);

/// The answer a source waits for.
pub type AckReceiver = oneshot::Receiver<Result<Ack, CommitFailed>>;

/// One committed partition file's rows, as the `events` table shows them.
#[derive(Debug, Clone)]
pub struct CommittedBatch {
    /// The table the rows belong to.
    pub table: &'static str,
    pub partition: PartitionPath,
    /// Rows in [`pipewatch_schema::table_schema`].
    pub batch: RecordBatch,
    pub event_ids: Vec<EventId>,
    /// When the commit became durable.
    pub committed_at: Instant,
}

/// Decodes one input and redacts what it produced: events and dead
/// letters alike, before anything is queued or stored.
pub fn decode_redacted(
    format: Option<Format>,
    input: &Input<'_>,
    redactor: &Redactor,
) -> (Option<Format>, DecodeOutput) {
    let (format, mut out) = decoders::decode(format, input);
    redact_output(&mut out, redactor);
    (format, out)
}

/// Redacts what a decoder produced, events and dead letters alike.
pub fn redact_output(out: &mut DecodeOutput, redactor: &Redactor) {
    for letter in &mut out.dead_letters {
        redactor.redact_string(&mut letter.sample);
        redactor.redact_string(&mut letter.detail);
        redactor.redact_string(&mut letter.origin);
    }
    let mut shared = SharedSeals::default();
    for event in &mut out.events {
        redactor.redact_event_sharing(event, &mut shared);
    }
}

/// Rows written to one partition, in file schema.
type PartitionBatch = (PartitionPath, RecordBatch);

enum Message {
    Submit(Box<Submission>, oneshot::Sender<Result<Ack, CommitFailed>>),
    Shutdown,
}

/// Where sources submit; cheap to clone.
#[derive(Debug, Clone)]
pub struct IntakeHandle {
    sender: mpsc::Sender<Message>,
    queued: Arc<AtomicUsize>,
    closed: Arc<AtomicBool>,
    limit: usize,
    metrics: Arc<IngestMetrics>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Submit(s, _) => write!(f, "Submit({} records)", s.records()),
            Message::Shutdown => f.write_str("Shutdown"),
        }
    }
}

impl IntakeHandle {
    /// Queues a submission; the receiver yields once it is durable.
    pub fn submit(&self, submission: Submission) -> Result<AckReceiver, SubmitError> {
        self.try_submit(Box::new(submission)).map_err(|(e, _)| e)
    }

    /// Like [`submit`](Self::submit), but waits while the queue is full
    /// instead of refusing: for sources that pull (Kafka) and can simply
    /// read more slowly. Gives up only when the intake closes or `stop` is set.
    pub fn submit_waiting(
        &self,
        submission: Submission,
        stop: &AtomicBool,
    ) -> Result<AckReceiver, SubmitError> {
        let mut submission = Box::new(submission);
        loop {
            match self.try_submit(submission) {
                Ok(receiver) => return Ok(receiver),
                Err((SubmitError::Busy { .. }, returned)) if !stop.load(Ordering::Acquire) => {
                    submission = returned;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    fn try_submit(
        &self,
        submission: Box<Submission>,
    ) -> Result<AckReceiver, (SubmitError, Box<Submission>)> {
        if self.closed.load(Ordering::Acquire) {
            return Err((SubmitError::Closed, submission));
        }
        let events = submission.events.len();
        let queued = self.queued.fetch_add(events, Ordering::AcqRel);
        // An empty queue takes any submission, so one large body is slow
        // rather than refused forever.
        if queued > 0 && queued + events > self.limit {
            self.queued.fetch_sub(events, Ordering::AcqRel);
            let busy = SubmitError::Busy {
                queued,
                limit: self.limit,
            };
            return Err((busy, submission));
        }
        self.metrics.queued_events.set(gauge(queued + events));
        let formats = submission
            .events
            .iter()
            .map(|e| &e.source)
            .chain(submission.dead_letters.iter().map(|l| &l.source));
        for format in formats {
            self.metrics
                .received
                .get_or_create(&SourceLabels {
                    source: submission.source.to_owned(),
                    format: format.clone(),
                })
                .inc();
        }
        let (ack, receiver) = oneshot::channel();
        if let Err(mpsc::SendError(message)) = self.sender.send(Message::Submit(submission, ack)) {
            self.queued.fetch_sub(events, Ordering::AcqRel);
            let submission = match message {
                Message::Submit(submission, _) => submission,
                Message::Shutdown => Box::new(Submission::new("", DecodeOutput::default())),
            };
            return Err((SubmitError::Closed, submission));
        }
        Ok(receiver)
    }

    /// Whether the intake still takes submissions.
    pub fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Events waiting for a commit.
    pub fn queued_events(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

fn gauge(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The committer thread and the handle to reach it.
#[derive(Debug)]
pub struct Intake {
    handle: IntakeHandle,
    thread: Option<JoinHandle<()>>,
}

impl Intake {
    /// Opens the lake under `data_dir` and starts the committer. Committed
    /// batches go to `feed` when one is given.
    pub fn start(
        data_dir: &Path,
        settings: IntakeSettings,
        metrics: Arc<IngestMetrics>,
        feed: Option<tokio::sync::mpsc::Sender<CommittedBatch>>,
    ) -> Result<Self, IngestError> {
        let writer = LakeWriter::open(data_dir)?;
        let dead_letters = DeadLetterStore::open(data_dir);
        let (sender, receiver) = mpsc::channel();
        let handle = IntakeHandle {
            sender,
            queued: Arc::new(AtomicUsize::new(0)),
            closed: Arc::new(AtomicBool::new(false)),
            limit: settings.queue_events.max(1),
            metrics: metrics.clone(),
        };
        let committer = Committer {
            writer,
            dead_letters,
            settings,
            receiver,
            queued: handle.queued.clone(),
            metrics,
            feed,
        };
        let thread = std::thread::Builder::new()
            .name("pipewatch-committer".into())
            .spawn(move || committer.run())
            .map_err(|e| IngestError::Config(format!("cannot start the committer thread: {e}")))?;
        Ok(Intake {
            handle,
            thread: Some(thread),
        })
    }

    /// A handle for a source.
    pub fn handle(&self) -> IntakeHandle {
        self.handle.clone()
    }

    /// Refuses new submissions, commits everything already queued and
    /// waits for the committer to finish. Blocks; call it off the async
    /// runtime's worker threads.
    pub fn close(mut self) {
        self.handle.closed.store(true, Ordering::Release);
        let _ = self.handle.sender.send(Message::Shutdown);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the committer thread panicked");
        }
    }
}

struct Pending {
    submission: Box<Submission>,
    ack: oneshot::Sender<Result<Ack, CommitFailed>>,
}

struct Committer {
    writer: LakeWriter,
    dead_letters: DeadLetterStore,
    settings: IntakeSettings,
    receiver: mpsc::Receiver<Message>,
    queued: Arc<AtomicUsize>,
    metrics: Arc<IngestMetrics>,
    feed: Option<tokio::sync::mpsc::Sender<CommittedBatch>>,
}

impl Committer {
    fn run(mut self) {
        let mut shutting_down = false;
        while !shutting_down {
            let first = match self.receiver.recv() {
                Ok(Message::Submit(submission, ack)) => Pending { submission, ack },
                Ok(Message::Shutdown) | Err(_) => break,
            };
            let deadline = Instant::now() + self.settings.linger;
            let mut events = first.submission.events.len();
            let mut group = vec![first];
            while events < self.settings.batch_events {
                let wait = deadline.saturating_duration_since(Instant::now());
                let message = if wait.is_zero() {
                    self.receiver.try_recv().ok()
                } else {
                    self.receiver.recv_timeout(wait).ok()
                };
                match message {
                    Some(Message::Submit(submission, ack)) => {
                        events += submission.events.len();
                        group.push(Pending { submission, ack });
                    }
                    Some(Message::Shutdown) => {
                        shutting_down = true;
                        break;
                    }
                    None => break,
                }
            }
            self.commit_group(group);
        }
        // Whatever was queued before the shutdown message is still owed a commit.
        let rest: Vec<Pending> = self
            .receiver
            .try_iter()
            .filter_map(|m| match m {
                Message::Submit(submission, ack) => Some(Pending { submission, ack }),
                Message::Shutdown => None,
            })
            .collect();
        let mut rest = rest;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(64));
            self.commit_group(rest);
            rest = tail;
        }
    }

    fn commit_group(&mut self, mut group: Vec<Pending>) {
        let started = Instant::now();
        let queued_events: usize = group.iter().map(|p| p.submission.events.len()).sum();
        let _span = tracing::info_span!(
            "lake_commit",
            submissions = group.len(),
            events = queued_events
        )
        .entered();
        let result = self.write_group(&mut group);
        let previous = self.queued.fetch_sub(queued_events, Ordering::AcqRel);
        self.metrics
            .queued_events
            .set(gauge(previous.saturating_sub(queued_events)));
        match result {
            Ok((acks, batches)) => {
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.commit_events.observe(queued_events as f64);
                // Acknowledge before publishing: a slow detector delays the
                // next commit, never this one's answer.
                for (pending, ack) in group.into_iter().zip(acks) {
                    let _ = pending.ack.send(Ok(ack));
                }
                self.publish(batches);
            }
            Err(e) => {
                tracing::error!(error = %e, "lake commit failed; nothing of it was acknowledged");
                let failure = CommitFailed(e.to_string());
                for pending in group {
                    let _ = pending.ack.send(Err(failure.clone()));
                }
            }
        }
    }

    /// Stores the group's dead letters and events; returns one ack per
    /// submission and the committed batches.
    fn write_group(
        &mut self,
        group: &mut [Pending],
    ) -> Result<(Vec<Ack>, Vec<PartitionBatch>), IngestError> {
        let letters: Vec<DeadLetter> = group
            .iter()
            .flat_map(|p| p.submission.dead_letters.iter().cloned())
            .collect();
        self.dead_letters.store(&letters)?;

        let mut acks: Vec<Ack> = Vec::with_capacity(group.len());
        // Which submission (and format) each event id came from, so the
        // writer's duplicates are charged to the right sender.
        let mut owners: HashMap<EventId, (usize, &'static str, String)> = HashMap::new();
        let mut by_stem: BTreeMap<Option<String>, Vec<Event>> = BTreeMap::new();
        for (index, pending) in group.iter_mut().enumerate() {
            let submission = &mut pending.submission;
            let mut ack = Ack {
                dead_lettered: submission.dead_letters.len(),
                ..Ack::default()
            };
            for letter in &submission.dead_letters {
                self.metrics
                    .dead_lettered
                    .get_or_create(&ReasonLabels {
                        source: submission.source.to_owned(),
                        format: letter.source.clone(),
                        reason: letter.reason.as_str().to_owned(),
                    })
                    .inc();
            }
            let events = by_stem.entry(submission.file_stem.clone()).or_default();
            for event in std::mem::take(&mut submission.events) {
                if owners.contains_key(&event.event_id) {
                    ack.duplicates += 1;
                    self.count_duplicate(submission.source, &event.source);
                    continue;
                }
                owners.insert(
                    event.event_id.clone(),
                    (index, submission.source, event.source.clone()),
                );
                ack.accepted += 1;
                events.push(event);
            }
            acks.push(ack);
        }

        let mut batches = Vec::new();
        for (stem, events) in by_stem {
            if events.is_empty() {
                continue;
            }
            let mut committed: HashMap<(&'static str, String), u64> = HashMap::new();
            for event in &events {
                if let Some((_, source, format)) = owners.get(&event.event_id) {
                    *committed.entry((source, format.clone())).or_default() += 1;
                }
            }
            let report = self.writer.commit_named(&events, stem.as_deref())?;
            for id in &report.duplicate_ids {
                if let Some((index, source, format)) = owners.get(id) {
                    if let Some(ack) = acks.get_mut(*index) {
                        ack.accepted = ack.accepted.saturating_sub(1);
                        ack.duplicates += 1;
                    }
                    self.count_duplicate(source, format);
                    if let Some(count) = committed.get_mut(&(*source, format.clone())) {
                        *count = count.saturating_sub(1);
                    }
                }
            }
            for ((source, format), count) in committed {
                self.metrics
                    .committed
                    .get_or_create(&SourceLabels {
                        source: source.to_owned(),
                        format,
                    })
                    .inc_by(count);
            }
            batches.extend(report.batches);
        }
        Ok((acks, batches))
    }

    fn count_duplicate(&self, source: &str, format: &str) {
        self.metrics
            .duplicates
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
                format: format.to_owned(),
            })
            .inc();
    }

    fn publish(&self, batches: Vec<PartitionBatch>) {
        let Some(feed) = &self.feed else {
            return;
        };
        let committed_at = Instant::now();
        for (partition, batch) in batches {
            let batch = match with_partition_columns(&batch, partition) {
                Ok(batch) => batch,
                Err(e) => {
                    tracing::error!(error = %e, "cannot publish a committed batch");
                    continue;
                }
            };
            let event_ids = event_ids(&batch);
            let committed = CommittedBatch {
                table: pipewatch_schema::tables::EVENTS,
                partition,
                batch,
                event_ids,
                committed_at,
            };
            // Blocking here is the backpressure: the queue fills and sources
            // ask their senders to retry until the detectors catch up.
            if feed.blocking_send(committed).is_err() {
                tracing::debug!("the feed has no reader; committed batches are not published");
                return;
            }
        }
    }
}

fn event_ids(batch: &RecordBatch) -> Vec<EventId> {
    let Some(ids) = batch
        .column_by_name("event_id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
    else {
        return Vec::new();
    };
    (0..ids.len())
        .filter(|&i| ids.is_valid(i))
        .map(|i| EventId::from_stored(ids.value(i)))
        .collect()
}
