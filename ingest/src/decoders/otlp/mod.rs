//! OpenTelemetry traces carrying CI/CD spans: OTLP/JSON, its YAML twin (the
//! Collector's golden files), OTLP/protobuf, and Node `ConsoleSpanExporter`
//! dumps. Pipeline-run and job spans become rows, client calls inside a CI
//! trace become egress rows; steps and non-CI spans are dropped and counted.
//!
//! Specifications: OTLP <https://opentelemetry.io/docs/specs/otlp/> and the
//! CI/CD semantic conventions <https://opentelemetry.io/docs/specs/semconv/cicd/>.

mod console;
mod mapping;
mod proto;
mod span;

// aHash: ids and names are hashed once per span; still keyed per process.
use ahash::{AHashMap as HashMap, AHashSet as HashSet};

use pipewatch_schema::{Category, Event};
use serde_json::Value;

use self::mapping::{Role, SpanIndex, View};
use self::span::{BadSpan, SpanRecord};
use super::pieces::LineCuts;
use super::{DecodeOutput, Decoder, Format, Input, Position, framing};
use crate::dead_letter::DeadLetterReason;

/// The OTLP decoder.
#[derive(Debug)]
pub(crate) struct Otlp;

pub(crate) static DECODER: Otlp = Otlp;

const FORMAT: Format = Format::Otlp;

impl Decoder for Otlp {
    fn sniff(&self, record: &Value) -> bool {
        let Some(object) = record.as_object() else {
            return false;
        };
        if object.get("resourceSpans").is_some_and(Value::is_array) {
            return true;
        }
        // One span of a console dump (see `console_dump_first_record`).
        object.get("traceId").is_some_and(Value::is_string)
            && (object.contains_key("id") || object.contains_key("spanContext"))
            && ["instrumentationScope", "instrumentationLibrary", "resource"]
                .iter()
                .any(|k| object.contains_key(*k))
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        let spans = collect(input, encoding(input.bytes), out);
        map_spans(&spans, input, out, true);
    }

    /// Spans find their job and run within their trace, so a large NDJSON
    /// export is cut only between lines that no trace continues across. An
    /// export whose traces run through all of it is read whole.
    fn line_cuts(&self) -> Option<Box<dyn LineCuts>> {
        Some(Box::new(BetweenTraces::default()))
    }
}

/// Cuts an NDJSON export only after lines past which no trace seen so far
/// appears again. The first pass notes the last line of each trace; a
/// trace is known by a hash of its id, and two ids sharing a hash only
/// make for fewer cuts.
#[derive(Debug, Default)]
struct BetweenTraces {
    last_line_of: HashMap<u64, usize>,
    learned: usize,
    line: usize,
    /// The last line of any trace met so far.
    reach: usize,
}

impl BetweenTraces {
    fn trace_ids(line: &[u8]) -> impl Iterator<Item = u64> + '_ {
        struct Keys {
            finders: [memchr::memmem::Finder<'static>; 2],
            hasher: ahash::RandomState,
        }
        static KEYS: std::sync::LazyLock<Keys> = std::sync::LazyLock::new(|| Keys {
            finders: [
                memchr::memmem::Finder::new(b"\"traceId\""),
                memchr::memmem::Finder::new(b"\"trace_id\""),
            ],
            hasher: ahash::RandomState::with_seeds(1, 2, 3, 4),
        });
        KEYS.finders.iter().flat_map(move |key| {
            key.find_iter(line).filter_map(move |at| {
                string_value_after(&line[at + key.needle().len()..])
                    .map(|id| KEYS.hasher.hash_one(id))
            })
        })
    }
}

impl LineCuts for BetweenTraces {
    fn needs_first_pass(&self) -> bool {
        true
    }

    fn learn(&mut self, line: &[u8]) {
        for id in Self::trace_ids(line) {
            self.last_line_of.insert(id, self.learned);
        }
        self.learned += 1;
    }

    fn after(&mut self, line: &[u8]) -> bool {
        for id in Self::trace_ids(line) {
            let last = self.last_line_of.get(&id).copied().unwrap_or(self.line);
            self.reach = self.reach.max(last);
        }
        let may_cut = self.reach <= self.line;
        self.line += 1;
        may_cut
    }
}

/// The string after a JSON key (`: "…"`), unescaped text only: trace ids
/// are hex or base64.
fn string_value_after(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest.trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let close = memchr::memchr(b'"', rest)?;
    Some(&rest[..close])
}

/// What a trace export held besides the rows it became.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpanTally {
    /// Spans read.
    pub spans: usize,
    /// Steps of a job: not rows of their own.
    pub steps: usize,
    /// Queue spans: folded into their job's wait.
    pub queues: usize,
    /// Spans with nothing CI/CD about them.
    pub non_cicd: usize,
}

/// Decodes one export as a live OTLP receiver gets it: the encoding is
/// known from the request, and traces without CI/CD spans are counted in
/// the tally instead of dead-lettered (a collector sends everything).
pub(crate) fn decode_export(
    input: &Input<'_>,
    protobuf: bool,
    out: &mut DecodeOutput,
) -> SpanTally {
    let encoding = if protobuf {
        Encoding::Protobuf
    } else {
        Encoding::Json
    };
    let spans = collect(input, encoding, out);
    map_spans(&spans, input, out, false)
}

/// Reads every span of the input; undecodable parts become dead letters.
fn collect(input: &Input<'_>, encoding: Encoding, out: &mut DecodeOutput) -> Vec<SpanRecord> {
    let mut spans = Vec::new();
    let mut bad = Vec::new();
    match encoding {
        Encoding::Json => requests(
            framing::json_records(input),
            input,
            out,
            &mut spans,
            &mut bad,
        ),
        Encoding::Yaml => requests(
            framing::yaml_documents(input.bytes),
            input,
            out,
            &mut spans,
            &mut bad,
        ),
        Encoding::Console => console_spans(input, out, &mut spans, &mut bad),
        Encoding::Protobuf => match proto::decode(input.bytes) {
            Ok(request) => {
                span::from_request(&request, Position::Whole, &mut 0, &mut spans, &mut bad);
            }
            Err(detail) => out.reject(
                FORMAT,
                input,
                Position::Offset(0),
                DeadLetterReason::Syntax,
                detail,
                input.bytes,
            ),
        },
    }
    for b in bad {
        out.reject(FORMAT, input, b.position, b.reason, b.detail, input.bytes);
    }
    spans
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Yaml,
    Console,
    Protobuf,
}

/// Text inputs are JSON, a console dump or YAML; anything that is not
/// printable UTF-8 is read as protobuf, whose length bytes are control bytes.
fn encoding(bytes: &[u8]) -> Encoding {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Encoding::Protobuf;
    };
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Encoding::Protobuf;
    }
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if console::looks_like_dump(text) {
        Encoding::Console
    } else if text.starts_with(['{', '[']) {
        Encoding::Json
    } else {
        Encoding::Yaml
    }
}

/// Reads framed `ExportTraceServiceRequest` documents (JSON or YAML).
fn requests<'a>(
    framed: impl IntoIterator<Item = framing::Framed<'a>>,
    input: &Input<'_>,
    out: &mut DecodeOutput,
    spans: &mut Vec<SpanRecord>,
    bad: &mut Vec<BadSpan>,
) {
    let mut group = 0;
    for record in framed {
        let (position, bytes) = (record.position, record.bytes);
        if let Some(text) = record.unparsed().and_then(|b| std::str::from_utf8(b).ok())
            && span::from_request_text(text, position, &mut group, spans, bad)
        {
            continue;
        }
        match record.parsed() {
            Err(detail) => out.reject(
                FORMAT,
                input,
                position,
                DeadLetterReason::Syntax,
                detail,
                bytes,
            ),
            Ok(value) if value.get("resourceSpans").is_some_and(Value::is_array) => {
                span::from_request(&value, position, &mut group, spans, bad);
            }
            Ok(_) => out.reject(
                FORMAT,
                input,
                position,
                DeadLetterReason::UnknownShape,
                "record has no resourceSpans array: not an OTLP ExportTraceServiceRequest",
                bytes,
            ),
        }
    }
}

/// Reads a console dump, one top-level object at a time.
fn console_spans(
    input: &Input<'_>,
    out: &mut DecodeOutput,
    spans: &mut Vec<SpanRecord>,
    bad: &mut Vec<BadSpan>,
) {
    let Ok(text) = std::str::from_utf8(input.bytes) else {
        return;
    };
    let text = text.trim_start_matches('\u{feff}');
    let body = text.trim_start();
    let skipped_lines = text.len() - body.len();
    let line_offset = text
        .get(..skipped_lines)
        .map_or(0, |t| t.matches('\n').count());
    // Spans of one dump repeat their resource; equal resources share a group.
    let mut groups: HashMap<String, usize> = HashMap::new();
    for chunk in console::chunks(body) {
        let position = Position::Line(chunk.line + line_offset);
        let object = match console::parse_object(chunk.text) {
            Ok(object) => object,
            Err(detail) => {
                out.reject(
                    FORMAT,
                    input,
                    position,
                    DeadLetterReason::Syntax,
                    format!("console span dump: {detail}"),
                    chunk.text.as_bytes(),
                );
                continue;
            }
        };
        let key = object
            .get("resource")
            .map(Value::to_string)
            .unwrap_or_default();
        let next = groups.len();
        let group = *groups.entry(key).or_insert(next);
        match span::from_console(&object, group, position) {
            Ok(record) => spans.push(record),
            Err((reason, detail)) => bad.push(BadSpan {
                position,
                reason,
                detail: format!("console span: {detail}"),
            }),
        }
    }
}

/// Turns classified spans into rows, links jobs to runs and egress to jobs,
/// and (when `strict`) reports inputs that held spans but nothing CI/CD.
fn map_spans(
    spans: &[SpanRecord],
    input: &Input<'_>,
    out: &mut DecodeOutput,
    strict: bool,
) -> SpanTally {
    // Each span's attributes are resolved once, for its role and its row.
    let views = View::of_all(spans);
    let roles = mapping::roles(spans, &views);
    let index = SpanIndex::new(spans);
    let mut seen = HashSet::new();
    let mut events: Vec<Option<Event>> = Vec::with_capacity(spans.len());
    for ((span, view), role) in spans.iter().zip(&views).zip(&roles) {
        let first = seen.insert((span.trace_id.as_str(), span.span_id.as_str()));
        let event = if first {
            mapping::event(span, view, *role, FORMAT.name())
        } else {
            None
        };
        let event = match event {
            Some(e) => Some(e),
            None if first && matches!(role, Role::Run | Role::Job | Role::Egress) => {
                // No start or end time: fall back to when the input was observed.
                match input.observed_at {
                    Some(at) => mapping::event_at(span, view, *role, FORMAT.name(), at),
                    None => {
                        out.reject(
                            FORMAT,
                            input,
                            span.position,
                            DeadLetterReason::MissingField,
                            format!(
                                "span {}:{} has no start or end time and the input no observed time",
                                span.trace_id, span.span_id
                            ),
                            span.raw.to_raw().json().as_bytes(),
                        );
                        None
                    }
                }
            }
            None => None,
        };
        events.push(event);
    }

    // Queue spans give their parent job its wait.
    for (i, span) in spans.iter().enumerate() {
        if roles.get(i) != Some(&Role::Queue) {
            continue;
        }
        if let Some(parent) = index.ancestors(spans, i).next()
            && let Some(view) = views.get(i)
            && let Some(Some(job)) = events.get_mut(parent)
            && job.category == Category::PipelineJob
            && job.queue_ms.is_none()
        {
            job.queue_ms = mapping::queue_ms(span, view);
        }
    }

    // The run of each trace, for children whose ancestor chain is incomplete.
    let mut run_of_trace: HashMap<&str, usize> = HashMap::new();
    for (i, span) in spans.iter().enumerate() {
        if matches!(events.get(i), Some(Some(e)) if e.category == Category::PipelineRun) {
            run_of_trace.entry(span.trace_id.as_str()).or_insert(i);
        }
    }
    for pass in [Category::PipelineJob, Category::Egress] {
        for i in 0..spans.len() {
            if !matches!(events.get(i), Some(Some(e)) if e.category == pass) {
                continue;
            }
            let is = |at: usize, category: Category| matches!(events.get(at), Some(Some(e)) if e.category == category);
            let ancestors: Vec<usize> = index.ancestors(spans, i).collect();
            let job = ancestors
                .iter()
                .copied()
                .find(|a| is(*a, Category::PipelineJob));
            let run = ancestors
                .iter()
                .copied()
                .find(|a| is(*a, Category::PipelineRun))
                .or_else(|| {
                    spans
                        .get(i)
                        .and_then(|s| run_of_trace.get(s.trace_id.as_str()).copied())
                });
            for parent in [job, run].into_iter().flatten() {
                if let Some((Some(child), Some(parent))) = child_and_parent(&mut events, i, parent)
                {
                    mapping::inherit(child, parent);
                }
            }
        }
    }

    let count = |role: Role| roles.iter().filter(|r| **r == role).count();
    let (steps, queues, other) = (count(Role::Step), count(Role::Queue), count(Role::Other));
    let tally = SpanTally {
        spans: spans.len(),
        steps,
        queues,
        non_cicd: other,
    };
    if strict && !spans.is_empty() && other == spans.len() {
        out.reject(
            FORMAT,
            input,
            Position::Whole,
            DeadLetterReason::UnknownShape,
            format!(
                "{} span(s), none of them CI/CD: no cicd.pipeline.*, ci.pipeline.* or github.job.* \
                 attribute on a span or its resource; non-CI traces are not stored",
                spans.len()
            ),
            input.bytes,
        );
        return tally;
    }
    tracing::debug!(
        origin = input.origin,
        steps,
        queues,
        non_cicd = other,
        "otlp: spans not stored as rows"
    );
    out.events.reserve(events.iter().flatten().count());
    out.events.extend(events.into_iter().flatten());
    tally
}

/// The row at `child` to fill from the row at `parent`, borrowed in place:
/// rows are large, and moving one out and back costs more than the fill.
fn child_and_parent(
    events: &mut [Option<Event>],
    child: usize,
    parent: usize,
) -> Option<(&mut Option<Event>, &Option<Event>)> {
    if child == parent || child.max(parent) >= events.len() {
        return None;
    }
    if child < parent {
        let (head, tail) = events.split_at_mut(parent);
        Some((&mut head[child], &tail[0]))
    } else {
        let (head, tail) = events.split_at_mut(child);
        Some((&mut tail[0], &head[parent]))
    }
}

/// The first span object of a Node `ConsoleSpanExporter` dump, for format
/// detection; `None` when the text is not such a dump.
pub(crate) fn console_dump_first_record(body: &[u8]) -> Option<Value> {
    let text = std::str::from_utf8(body).ok()?;
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if !console::looks_like_dump(text) {
        return None;
    }
    let first = console::chunks(text).into_iter().next()?;
    console::parse_object(first.text)
        .ok()
        .filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoders::pieces;
    use pipewatch_schema::RunnerHosting;
    use serde_json::json;

    const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

    fn kv(key: &str, value: Value) -> Value {
        let any = match value {
            Value::String(s) => json!({ "stringValue": s }),
            Value::Bool(b) => json!({ "boolValue": b }),
            Value::Number(n) if n.is_i64() => json!({ "intValue": n.to_string() }),
            other => json!({ "doubleValue": other }),
        };
        json!({ "key": key, "value": any })
    }

    fn span(id: &str, parent: Option<&str>, kind: i64, attrs: Vec<Value>) -> Value {
        json!({
            "traceId": TRACE, "spanId": id, "parentSpanId": parent.unwrap_or(""),
            "name": format!("span {id}"), "kind": kind,
            "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": 1_700_000_060_000_000_000_u64,
            "attributes": attrs, "status": { "code": 1 }
        })
    }

    fn decode_bytes(bytes: &[u8], observed: bool) -> DecodeOutput {
        let mut input = Input::new("test", bytes);
        if observed {
            input.observed_at = Some(chrono::DateTime::UNIX_EPOCH);
        }
        let mut out = DecodeOutput::default();
        DECODER.decode(&input, &mut out);
        out
    }

    fn request(spans: Vec<Value>) -> Vec<u8> {
        let body = json!({ "resourceSpans": [{
            "resource": { "attributes": [kv("service.name", json!("ci"))] },
            "scopeSpans": [{ "scope": {}, "spans": spans }]
        }]});
        body.to_string().into_bytes()
    }

    #[test]
    fn each_row_keeps_its_own_resource_scope_and_span_redacted() {
        let token = |n: u8| format!("ghp_0123456789abcdefghijABCDEFGHIJ01234{n}");
        let resource_spans = |n: u8, run: &str, job: &str| {
            json!({
                "resource": { "attributes": [
                    kv("service.name", json!(format!("ci-{n}"))),
                    kv("ci.token", json!(token(n))),
                ] },
                "scopeSpans": [{ "scope": { "name": format!("scope-{n}") }, "spans": [
                    span(run, None, 2, vec![kv("cicd.pipeline.name", json!(format!("p{n}")))]),
                    span(job, Some(run), 1, vec![
                        kv("cicd.pipeline.task.name", json!("build")),
                        kv("note", json!(format!("pushed with {}", token(9)))),
                    ]),
                ] }]
            })
        };
        let body = json!({ "resourceSpans": [
            resource_spans(1, "00000000000000a1", "00000000000000a2"),
            resource_spans(2, "00000000000000b1", "00000000000000b2"),
        ] })
        .to_string();
        let mut out = decode_bytes(body.as_bytes(), false);
        let redactor = crate::Redactor::with_key(b"otlp-test".to_vec()).expect("redactor");
        crate::intake::redact_output(&mut out, &redactor);
        assert_eq!(out.events.len(), 4);

        let mut resource_marks = Vec::new();
        for event in &out.events {
            let text = event.raw.json();
            assert_eq!(event.raw.json_len(), text.len());
            for n in [1, 2, 9] {
                assert!(!text.contains(&token(n)), "secret in {text}");
            }
            let raw: Value = serde_json::from_str(&text).expect("raw is JSON");
            let spans = raw["scopeSpans"][0]["spans"].as_array().expect("spans");
            assert_eq!(spans.len(), 1, "one span per row: {raw}");
            let span_id = spans[0]["spanId"].as_str().expect("span id");
            assert_eq!(Some(span_id), event.span_id.as_deref());
            // Spans a1/a2 came with resource 1, b1/b2 with resource 2.
            let n = if span_id.contains('a') { 1 } else { 2 };
            let attributes = &raw["resource"]["attributes"];
            assert_eq!(
                attributes[0]["value"]["stringValue"],
                json!(format!("ci-{n}"))
            );
            assert_eq!(
                raw["scopeSpans"][0]["scope"]["name"],
                json!(format!("scope-{n}"))
            );
            let mark = attributes[1]["value"]["stringValue"]
                .as_str()
                .expect("mark");
            assert!(mark.starts_with("redacted:github_token:"), "{mark}");
            resource_marks.push((n, mark.to_owned()));
        }
        // Equal secrets keep correlating; different ones stay apart.
        resource_marks.sort();
        resource_marks.dedup();
        assert_eq!(resource_marks.len(), 2, "{resource_marks:?}");
    }

    /// An NDJSON export of 18 traces (a run and a job each) in groups of
    /// three: their runs, then their jobs, so a trace continues across the
    /// lines of its group and never past it.
    fn export_of_grouped_traces() -> Vec<u8> {
        let line = |trace: usize, span_value: Value| {
            let mut span_value = span_value;
            span_value["traceId"] = json!(format!("{:032x}", trace + 1));
            let mut text = request(vec![span_value]);
            text.push(b'\n');
            text
        };
        let run = |trace: usize| {
            span(
                &format!("{:016x}", trace * 2 + 1),
                None,
                2,
                vec![
                    kv("cicd.pipeline.name", json!(format!("pipeline {trace}"))),
                    kv("cicd.pipeline.run.id", json!(trace)),
                ],
            )
        };
        let job = |trace: usize| {
            span(
                &format!("{:016x}", trace * 2 + 2),
                Some(&format!("{:016x}", trace * 2 + 1)),
                1,
                vec![kv("cicd.pipeline.task.name", json!("build"))],
            )
        };
        let mut body = Vec::new();
        for group in 0..6 {
            let traces = group * 3..group * 3 + 3;
            for trace in traces.clone() {
                body.extend(line(trace, run(trace)));
            }
            for trace in traces {
                body.extend(line(trace, job(trace)));
            }
        }
        body
    }

    #[test]
    fn a_large_export_is_cut_only_between_lines_no_trace_continues_across() {
        let body = export_of_grouped_traces();
        let input = Input::new("traces.ndjson", &body);
        let mut cuts = DECODER.line_cuts().expect("exports are cut");
        assert!(cuts.needs_first_pass());
        pieces::learn_all(&body[..], cuts.as_mut()).expect("first pass");
        let mut reader = pieces::PieceReader::new(Box::new(&body[..]), Vec::new(), 1, cuts);
        let mut pieces = Vec::new();
        while let Some(piece) = reader.next_piece().expect("read") {
            pieces.push(piece);
        }
        assert_eq!(pieces.len(), 6, "one piece per group of traces");

        let rows = |out: DecodeOutput| {
            let details: Vec<&str> = out.dead_letters.iter().map(|l| l.detail.as_str()).collect();
            assert!(details.is_empty(), "{details:?}");
            let mut rows: Vec<(String, Option<String>, Option<String>)> = out
                .events
                .iter()
                .map(|e| {
                    (
                        e.source_event_id.clone(),
                        e.cicd_pipeline_name.clone(),
                        e.cicd_pipeline_run_id.clone(),
                    )
                })
                .collect();
            rows.sort();
            rows
        };
        let mut whole = DecodeOutput::default();
        DECODER.decode(&input, &mut whole);
        let whole = rows(whole);
        let mut in_pieces = DecodeOutput::default();
        for piece in &pieces {
            let piece = Input {
                bytes: &piece.bytes,
                lines_from: Some(piece.first_line),
                ..input
            };
            DECODER.decode(&piece, &mut in_pieces);
        }
        assert_eq!(rows(in_pieces), whole);
        assert_eq!(whole.len(), 36);
        assert!(
            whole
                .iter()
                .all(|(_, name, run)| name.is_some() && run.is_some()),
            "every job found its run: {whole:?}"
        );

        // Through the ingestor: a file is read twice (once for the cuts),
        // standard input is spooled to a file first; both store every row.
        for reopen in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut ingestor = crate::Ingestor::open(dir.path())
                .expect("open")
                .with_piece_bytes(1)
                .with_decode_threads(2);
            let bytes = &body[..];
            let streamed = crate::StreamedInput {
                origin: "traces.ndjson",
                type_hint: None,
                observed_at: None,
                reader: Box::new(bytes),
                reopen: reopen.then(|| {
                    Box::new(move || Ok(Box::new(bytes) as Box<dyn std::io::Read>))
                        as crate::Reopen<'_>
                }),
            };
            let mut pieces = 0;
            let letters = ingestor
                .ingest_stream(None, streamed, |_| pieces += 1)
                .expect("ingest");
            assert!(letters.is_empty(), "{letters:?}");
            assert_eq!(pieces, 6, "reopen: {reopen}");
            let summary = ingestor.finish().expect("finish");
            assert_eq!(summary.formats["otlp"].accepted, 36, "reopen: {reopen}");
        }
    }

    #[test]
    fn a_truncated_export_keeps_the_traces_before_the_cut() {
        use std::io::Read;

        use crate::decoders::pieces::tests::FailingRead;

        let body = export_of_grouped_traces();
        let cut = &body[..body.len() / 2];
        // A file (read twice) and standard input (read once); default
        // pieces, larger than the whole export.
        for reopen in [true, false] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut ingestor = crate::Ingestor::open(dir.path()).expect("open");
            let streamed = crate::StreamedInput {
                origin: "traces.ndjson",
                type_hint: None,
                observed_at: None,
                reader: Box::new(cut.chain(FailingRead)),
                reopen: reopen.then(|| {
                    Box::new(move || Ok(Box::new(cut.chain(FailingRead)) as Box<dyn std::io::Read>))
                        as crate::Reopen<'_>
                }),
            };
            match ingestor.ingest_stream(None, streamed, |_| {}) {
                Err(crate::IngestError::Read { kept_bytes, .. }) => {
                    assert!(
                        kept_bytes > 0 && kept_bytes <= cut.len() as u64,
                        "{kept_bytes}, reopen: {reopen}"
                    );
                }
                other => panic!("expected a read error, got {other:?} (reopen: {reopen})"),
            }
            let summary = ingestor.finish().expect("finish");
            let accepted = summary.formats["otlp"].accepted;
            assert!(
                accepted > 0 && accepted < 36,
                "{accepted} rows stored, reopen: {reopen}"
            );
        }
    }

    #[test]
    fn runs_jobs_and_egress_become_rows_and_steps_do_not() {
        let bytes = request(vec![
            span(
                "00000000000000a1",
                None,
                2,
                vec![
                    kv("cicd.pipeline.name", json!("release")),
                    kv("cicd.pipeline.run.id", json!(42)),
                    kv("cicd.pipeline.result", json!("cancellation")),
                    kv(
                        "vcs.repository.url.full",
                        json!("https://github.com/acme/app.git"),
                    ),
                ],
            ),
            span(
                "00000000000000b2",
                Some("00000000000000a1"),
                1,
                vec![
                    kv("cicd.pipeline.task.name", json!("build")),
                    kv("cicd.pipeline.task.run.id", json!(7)),
                    kv("process.cpu.time", json!(12.5)),
                    kv("cicd.worker.name", json!("runner-1")),
                ],
            ),
            span(
                "00000000000000c3",
                Some("00000000000000b2"),
                1,
                vec![kv("github.job.step.name", json!("checkout"))],
            ),
            span(
                "00000000000000d4",
                Some("00000000000000c3"),
                3,
                vec![
                    kv("url.full", json!("https://evil.example/upload")),
                    kv("http.request.method", json!("POST")),
                    kv("http.request.body.size", json!(4096)),
                    kv("http.response.status_code", json!(201)),
                ],
            ),
            json!({ "traceId": "zz", "spanId": "00000000000000e5" }),
        ]);
        let out = decode_bytes(&bytes, false);
        assert_eq!(out.dead_letters.len(), 1, "{:#?}", out.dead_letters);
        let bad = &out.dead_letters[0];
        assert_eq!(bad.reason, DeadLetterReason::InvalidValue);
        assert_eq!(bad.position, Position::Record(4));
        assert!(bad.detail.contains("spans[4]"), "{}", bad.detail);

        let categories: Vec<Category> = out.events.iter().map(|e| e.category).collect();
        assert_eq!(
            categories,
            [
                Category::PipelineRun,
                Category::PipelineJob,
                Category::Egress
            ]
        );
        let [run, job, egress] = &out.events[..] else {
            panic!("three rows expected");
        };
        assert_eq!(run.outcome, "cancelled");
        assert_eq!(run.repo.as_deref(), Some("acme/app"));
        assert_eq!(run.source_event_id, format!("{TRACE}:00000000000000a1"));
        assert_eq!(job.cpu_seconds, Some(12.5));
        assert_eq!(job.cicd_pipeline_run_id.as_deref(), Some("42"));
        assert_eq!(job.cicd_pipeline_name.as_deref(), Some("release"));
        assert_eq!(egress.action, "egress.http");
        assert_eq!(egress.outcome, "success");
        assert_eq!(egress.egress_destination.as_deref(), Some("evil.example"));
        assert_eq!(egress.egress_bytes, Some(4096));
        // The egress row names the job that made the call, through the step.
        assert_eq!(egress.cicd_pipeline_task_name.as_deref(), Some("build"));
        assert_eq!(egress.cicd_worker_name.as_deref(), Some("runner-1"));
        assert_eq!(egress.repo.as_deref(), Some("acme/app"));
    }

    #[test]
    fn client_spans_outside_ci_traces_are_not_egress() {
        let bytes = request(vec![span(
            "00000000000000d4",
            None,
            3,
            vec![kv("server.address", json!("db.internal"))],
        )]);
        let out = decode_bytes(&bytes, false);
        assert!(out.events.is_empty());
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
    }

    #[test]
    fn jenkins_results_map_and_phases_are_not_runs() {
        let bytes = request(vec![
            span(
                "00000000000000a1",
                None,
                2,
                vec![
                    kv("ci.pipeline.id", json!("team/app")),
                    kv("ci.pipeline.name", json!("app")),
                    kv("ci.pipeline.run.number", json!(17)),
                    kv("ci.pipeline.run.result", json!("UNSTABLE")),
                    kv("ci.pipeline.run.user", json!("alice")),
                ],
            ),
            span(
                "00000000000000b2",
                Some("00000000000000a1"),
                1,
                vec![kv("ci.pipeline.id", json!("team/app"))],
            ),
        ]);
        let out = decode_bytes(&bytes, false);
        assert!(out.dead_letters.is_empty(), "{:#?}", out.dead_letters);
        assert_eq!(out.events.len(), 1);
        let run = &out.events[0];
        assert_eq!(run.outcome, "warning");
        assert_eq!(run.cicd_pipeline_run_id.as_deref(), Some("team/app#17"));
        assert_eq!(run.actor.as_deref(), Some("alice"));
    }

    #[test]
    fn spans_without_time_need_an_observed_time() {
        let mut run = span(
            "00000000000000a1",
            None,
            2,
            vec![kv("cicd.pipeline.run.id", json!(1))],
        );
        if let Some(object) = run.as_object_mut() {
            object.remove("startTimeUnixNano");
            object.remove("endTimeUnixNano");
        }
        let bytes = request(vec![run]);
        let out = decode_bytes(&bytes, false);
        assert!(out.events.is_empty());
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        let out = decode_bytes(&bytes, true);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].event_time, chrono::DateTime::UNIX_EPOCH);
    }

    #[test]
    fn protobuf_requests_decode_with_hex_ids() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        use prost::Message;
        let attr = |k: &str, v: any_value::Value| KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        };
        let request = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![Span {
                        trace_id: vec![0xab; 16],
                        span_id: vec![0x01; 8],
                        name: "RUN deploy".into(),
                        kind: 2,
                        start_time_unix_nano: 1_700_000_000_000_000_000,
                        attributes: vec![
                            attr("cicd.pipeline.run.id", any_value::Value::IntValue(99)),
                            attr(
                                "cicd.pipeline.name",
                                any_value::Value::StringValue("deploy".into()),
                            ),
                        ],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let bytes = request.encode_to_vec();
        let out = decode_bytes(&bytes, false);
        assert!(out.dead_letters.is_empty(), "{:#?}", out.dead_letters);
        assert_eq!(out.events.len(), 1);
        assert_eq!(
            out.events[0].source_event_id,
            format!("{}:{}", "ab".repeat(16), "01".repeat(8))
        );
        assert_eq!(out.events[0].cicd_pipeline_run_id.as_deref(), Some("99"));
        assert!(
            crate::decoders::detect(&bytes).is_none(),
            "binary is never guessed"
        );

        let out = decode_bytes(b"\x0a\xff\xff\xff\xff\x0f", false);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::Syntax);
    }

    const DUMP: &str = "{\n  resource: { attributes: { 'service.namespace': 'octo/app' } },\n  instrumentationScope: { name: 'x', version: undefined },\n  traceId: '0af7651916cd43dd8448eb211c80319c',\n  parentSpanContext: undefined,\n  name: 'CI',\n  id: '00000000000000a1',\n  kind: 0,\n  timestamp: 1769641490000000,\n  duration: 40000000,\n  attributes: { 'cicd.pipeline.run.id': 5, 'cicd.pipeline.result': 'success' },\n  status: { code: 1 }\n}\n{\n  traceId: 'broken\n}\n{\n  resource: { attributes: { 'service.namespace': 'octo/app' } },\n  traceId: '0af7651916cd43dd8448eb211c80319c',\n  parentSpanContext: { spanId: '00000000000000a1' },\n  name: 'job',\n  id: '00000000000000b2',\n  kind: 2,\n  timestamp: 1769641491000000,\n  duration: 1000,\n  attributes: { 'cicd.pipeline.task.run.id': 6, 'github.job.labels': 'self-hosted, linux' },\n  status: { code: 2 }\n}\n";

    #[test]
    fn console_dumps_are_detected_and_decode_around_a_broken_object() {
        assert_eq!(crate::decoders::detect(DUMP.as_bytes()), Some(Format::Otlp));
        let out = decode_bytes(DUMP.as_bytes(), false);
        assert_eq!(out.dead_letters.len(), 1, "{:#?}", out.dead_letters);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::Syntax);
        assert_eq!(out.dead_letters[0].position, Position::Line(14));
        let [run, job] = &out.events[..] else {
            panic!("two rows expected, got {:#?}", out.events);
        };
        assert_eq!(run.outcome, "success");
        assert_eq!(run.duration_ms, Some(40_000));
        assert_eq!(run.repo.as_deref(), Some("octo/app"));
        assert_eq!(job.outcome, "failure");
        assert_eq!(job.cicd_pipeline_run_id.as_deref(), Some("5"));
        assert_eq!(job.runner_hosting, Some(RunnerHosting::SelfHosted));
        assert_eq!(job.cicd_worker_labels, ["self-hosted", "linux"]);
    }

    #[test]
    fn json_requests_are_detected() {
        let bytes = request(vec![]);
        assert_eq!(crate::decoders::detect(&bytes), Some(Format::Otlp));
        assert!(console_dump_first_record(&bytes).is_none());
    }
}
