//! The one span representation every OTLP encoding is read into: OTLP/JSON
//! and its YAML twin (`resourceSpans` tree, `AnyValue` attributes) and the
//! JS `ConsoleSpanExporter` object (flat attributes, microsecond times).

use std::rc::Rc;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use pipewatch_schema::Raw;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::dead_letter::DeadLetterReason;
use crate::decoders::Position;
use crate::decoders::util::Lookup;

/// Flattened attributes: key -> plain JSON value.
pub(super) type Attrs = Map<String, Value>;

/// What the span represents, in OTLP proto numbering terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    /// OTLP proto numbering (0 = unspecified), or the enum name.
    fn from_otlp(value: Option<&Value>) -> Kind {
        match value {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => Kind::Internal,
                Some(2) => Kind::Server,
                Some(3) => Kind::Client,
                Some(4) => Kind::Producer,
                Some(5) => Kind::Consumer,
                _ => Kind::Unspecified,
            },
            Some(Value::String(s)) => match s.trim_start_matches("SPAN_KIND_") {
                "INTERNAL" => Kind::Internal,
                "SERVER" => Kind::Server,
                "CLIENT" => Kind::Client,
                "PRODUCER" => Kind::Producer,
                "CONSUMER" => Kind::Consumer,
                _ => Kind::Unspecified,
            },
            _ => Kind::Unspecified,
        }
    }

    /// The JS API enum, which has no "unspecified": INTERNAL is 0.
    fn from_js(value: Option<&Value>) -> Kind {
        match value.and_then(Value::as_i64) {
            Some(0) => Kind::Internal,
            Some(1) => Kind::Server,
            Some(2) => Kind::Client,
            Some(3) => Kind::Producer,
            Some(4) => Kind::Consumer,
            _ => Kind::Unspecified,
        }
    }
}

/// Span status code; the numbering is the same in OTLP and the JS API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatusCode {
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    fn parse(value: Option<&Value>) -> StatusCode {
        match value {
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => StatusCode::Ok,
                Some(2) => StatusCode::Error,
                _ => StatusCode::Unset,
            },
            Some(Value::String(s)) => match s.trim_start_matches("STATUS_CODE_") {
                "OK" => StatusCode::Ok,
                "ERROR" => StatusCode::Error,
                _ => StatusCode::Unset,
            },
            _ => StatusCode::Unset,
        }
    }
}

/// One span, whatever encoding it came in.
#[derive(Debug)]
pub(super) struct SpanRecord {
    pub(super) trace_id: String,
    pub(super) span_id: String,
    pub(super) parent_span_id: Option<String>,
    pub(super) name: String,
    pub(super) kind: Kind,
    pub(super) start: Option<DateTime<Utc>>,
    pub(super) end: Option<DateTime<Utc>>,
    /// Given directly by console dumps; otherwise derived from start and end.
    pub(super) duration_ms: Option<i64>,
    pub(super) status: StatusCode,
    pub(super) status_message: Option<String>,
    pub(super) attrs: Attrs,
    pub(super) resource: Rc<Attrs>,
    /// Spans sharing a resource (one `resourceSpans` entry) share this number.
    pub(super) resource_group: usize,
    /// A self-contained native record: a one-span `ResourceSpans`, or the console object.
    pub(super) raw: RawSpan,
    /// Where the span sits in the input, for dead letters.
    pub(super) position: Position,
}

/// The native record of one span, kept as JSON text so that a large
/// export's spans wait for mapping in a fraction of a tree's memory. The
/// resource and scope texts are shared by all spans of a request.
#[derive(Debug, Clone)]
pub(super) enum RawSpan {
    /// An OTLP span with its resource and instrumentation scope.
    Otlp {
        resource: Arc<str>,
        scope: Arc<str>,
        span: Arc<str>,
    },
    /// A console-exporter object, kept as it was.
    Whole(Value),
}

impl RawSpan {
    /// The record as a one-span `ResourceSpans` (or the console object).
    /// The resource and scope texts stay shared with the request's other
    /// spans, so the record costs only its own span's text.
    pub(super) fn to_raw(&self) -> Raw {
        const FRAME: &[&str] = &[
            r#"{"resource":"#,
            r#","scopeSpans":[{"scope":"#,
            r#","spans":["#,
            "]}]}",
        ];
        match self {
            RawSpan::Otlp {
                resource,
                scope,
                span,
            } => Raw::framed(
                FRAME,
                [Arc::clone(resource), Arc::clone(scope), Arc::clone(span)],
            ),
            RawSpan::Whole(value) => Raw::from(value.clone()),
        }
    }
}

/// A span that could not be read, with where it sits.
#[derive(Debug)]
pub(super) struct BadSpan {
    pub(super) position: Position,
    pub(super) reason: DeadLetterReason,
    pub(super) detail: String,
}

/// Reads every span of one OTLP/JSON (or YAML) `ExportTraceServiceRequest`.
/// `next_group` numbers resources across the whole input.
pub(super) fn from_request(
    request: &Value,
    position: Position,
    next_group: &mut usize,
    spans: &mut Vec<SpanRecord>,
    bad: &mut Vec<BadSpan>,
) {
    let empty = Vec::new();
    let resource_spans = request
        .get("resourceSpans")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let mut index = 0usize;
    for (r, rs) in resource_spans.iter().enumerate() {
        let group = *next_group;
        *next_group += 1;
        let resource_value = rs.get("resource");
        let resource = Rc::new(attributes(resource_value.and_then(|r| r.get("attributes"))));
        let resource_text: Arc<str> =
            resource_value.map_or_else(|| "{}".into(), |r| r.to_string().into());
        // `instrumentationLibrarySpans` is the pre-1.0 name of `scopeSpans`.
        let scopes = rs
            .get("scopeSpans")
            .or_else(|| rs.get("instrumentationLibrarySpans"))
            .and_then(Value::as_array)
            .unwrap_or(&empty);
        for (s, ss) in scopes.iter().enumerate() {
            let scope: Arc<str> = ss
                .get("scope")
                .or_else(|| ss.get("instrumentationLibrary"))
                .map_or_else(|| "{}".into(), |s| s.to_string().into());
            let list = ss.get("spans").and_then(Value::as_array).unwrap_or(&empty);
            for (k, span) in list.iter().enumerate() {
                let at = match position {
                    Position::Whole => Position::Record(index),
                    other => other,
                };
                index += 1;
                let path = format!("resourceSpans[{r}].scopeSpans[{s}].spans[{k}]");
                let raw = RawSpan::Otlp {
                    resource: Arc::clone(&resource_text),
                    scope: Arc::clone(&scope),
                    span: span.to_string().into(),
                };
                match otlp_span(span, &resource, group, raw, at) {
                    Ok(record) => spans.push(record),
                    Err((reason, detail)) => bad.push(BadSpan {
                        position: at,
                        reason,
                        detail: format!("{path}: {detail}"),
                    }),
                }
            }
        }
    }
}

/// An `ExportTraceServiceRequest` line as it is read from its text: each
/// span, resource and scope stays text until it is read on its own, so a
/// span's native record is its own text, not a serialized tree.
#[derive(serde::Deserialize)]
struct RequestText<'a> {
    #[serde(rename = "resourceSpans", borrow)]
    resource_spans: Vec<ResourceSpansText<'a>>,
}

#[derive(serde::Deserialize)]
struct ResourceSpansText<'a> {
    #[serde(borrow)]
    resource: Option<&'a RawValue>,
    #[serde(rename = "scopeSpans", borrow)]
    scope_spans: Option<Vec<ScopeSpansText<'a>>>,
    /// The pre-1.0 name of `scopeSpans`.
    #[serde(rename = "instrumentationLibrarySpans", borrow)]
    library_spans: Option<Vec<ScopeSpansText<'a>>>,
}

#[derive(serde::Deserialize)]
struct ScopeSpansText<'a> {
    #[serde(borrow)]
    scope: Option<&'a RawValue>,
    /// The pre-1.0 name of `scope`.
    #[serde(rename = "instrumentationLibrary", borrow)]
    library: Option<&'a RawValue>,
    #[serde(borrow, default)]
    spans: Vec<&'a RawValue>,
}

/// Reads every span of one OTLP/JSON request from its text, as
/// [`from_request`] reads its tree. `false`, with nothing read, when the
/// text does not have the request's shape: the caller then reads the tree,
/// which says what is wrong with it.
pub(super) fn from_request_text(
    text: &str,
    position: Position,
    next_group: &mut usize,
    spans: &mut Vec<SpanRecord>,
    bad: &mut Vec<BadSpan>,
) -> bool {
    let Ok(request) = serde_json::from_str::<RequestText<'_>>(text) else {
        return false;
    };
    let mut index = 0usize;
    for (r, rs) in request.resource_spans.iter().enumerate() {
        let group = *next_group;
        *next_group += 1;
        let resource = Rc::new(rs.resource.map_or_else(Attrs::new, resource_attributes));
        let resource_text: Arc<str> = rs.resource.map_or_else(|| "{}".into(), |r| r.get().into());
        let scopes = rs
            .scope_spans
            .as_deref()
            .or(rs.library_spans.as_deref())
            .unwrap_or_default();
        for (s, ss) in scopes.iter().enumerate() {
            let scope: Arc<str> = ss
                .scope
                .or(ss.library)
                .map_or_else(|| "{}".into(), |s| s.get().into());
            for (k, span_text) in ss.spans.iter().enumerate() {
                let at = match position {
                    Position::Whole => Position::Record(index),
                    other => other,
                };
                index += 1;
                let raw = RawSpan::Otlp {
                    resource: Arc::clone(&resource_text),
                    scope: Arc::clone(&scope),
                    span: span_text.get().into(),
                };
                // A span of the usual shape is read into its fields; anything
                // else is read as a tree, which names what is wrong with it.
                let record = match serde_json::from_str::<SpanText<'_>>(span_text.get()) {
                    Ok(fields) => fields.into_record(&resource, group, raw, at),
                    Err(_) => {
                        let span =
                            serde_json::from_str::<Value>(span_text.get()).unwrap_or(Value::Null);
                        otlp_span(&span, &resource, group, raw, at)
                    }
                };
                match record {
                    Ok(record) => spans.push(record),
                    Err((reason, detail)) => bad.push(BadSpan {
                        position: at,
                        reason,
                        detail: format!("resourceSpans[{r}].scopeSpans[{s}].spans[{k}]: {detail}"),
                    }),
                }
            }
        }
    }
    true
}

/// Why a span was rejected.
pub(super) type Problem = (DeadLetterReason, String);

fn otlp_span(
    span: &Value,
    resource: &Rc<Attrs>,
    resource_group: usize,
    raw: RawSpan,
    position: Position,
) -> Result<SpanRecord, Problem> {
    if !span.is_object() {
        return Err((
            DeadLetterReason::UnknownShape,
            "span is not an object".into(),
        ));
    }
    let parts = SpanParts {
        trace_id: span.get("traceId"),
        span_id: span.get("spanId"),
        parent_span_id: span.get("parentSpanId"),
        start: span.get("startTimeUnixNano"),
        end: span.get("endTimeUnixNano"),
        name: span.get("name"),
        kind: span.get("kind"),
        status: span.get("status"),
    };
    let attrs = attributes(span.get("attributes"));
    parts.into_record(attrs, resource, resource_group, raw, position)
}

/// The fields of an OTLP/JSON span, wherever they were read from.
struct SpanParts<'v> {
    trace_id: Option<&'v Value>,
    span_id: Option<&'v Value>,
    parent_span_id: Option<&'v Value>,
    start: Option<&'v Value>,
    end: Option<&'v Value>,
    name: Option<&'v Value>,
    kind: Option<&'v Value>,
    status: Option<&'v Value>,
}

impl SpanParts<'_> {
    fn into_record(
        self,
        attrs: Attrs,
        resource: &Rc<Attrs>,
        resource_group: usize,
        raw: RawSpan,
        position: Position,
    ) -> Result<SpanRecord, Problem> {
        let trace_id = required_id(self.trace_id, "traceId", 16)?;
        let span_id = required_id(self.span_id, "spanId", 8)?;
        let parent_span_id = optional_id(self.parent_span_id, "parentSpanId", 8)?;
        let start = unix_nanos(self.start, "startTimeUnixNano")?;
        let end = unix_nanos(self.end, "endTimeUnixNano")?;
        let status = self.status;
        Ok(SpanRecord {
            trace_id,
            span_id,
            parent_span_id,
            name: text(self.name).unwrap_or_default(),
            kind: Kind::from_otlp(self.kind),
            start,
            end,
            duration_ms: None,
            status: StatusCode::parse(status.and_then(|s| s.get("code"))),
            status_message: text(status.and_then(|s| s.get("message"))),
            attrs,
            resource: Rc::clone(resource),
            resource_group,
            raw,
            position,
        })
    }
}

/// A field read as whatever JSON it holds, `null` included: a present
/// `null` and an absent field are told apart as the tree tells them apart.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    <Value as serde::Deserialize>::deserialize(d).map(Some)
}

/// An OTLP/JSON span of the usual shape, read straight into its fields
/// (attributes a list of key and `AnyValue`) instead of into a tree.
/// Text of any other shape fails to read and is read as a tree instead.
#[derive(serde::Deserialize)]
struct SpanText<'a> {
    #[serde(rename = "traceId", default, deserialize_with = "present")]
    trace_id: Option<Value>,
    #[serde(rename = "spanId", default, deserialize_with = "present")]
    span_id: Option<Value>,
    #[serde(rename = "parentSpanId", default, deserialize_with = "present")]
    parent_span_id: Option<Value>,
    #[serde(rename = "startTimeUnixNano", default, deserialize_with = "present")]
    start: Option<Value>,
    #[serde(rename = "endTimeUnixNano", default, deserialize_with = "present")]
    end: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    kind: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    status: Option<Value>,
    #[serde(borrow, default)]
    attributes: Option<Vec<KeyValueText<'a>>>,
}

impl SpanText<'_> {
    fn into_record(
        self,
        resource: &Rc<Attrs>,
        resource_group: usize,
        raw: RawSpan,
        position: Position,
    ) -> Result<SpanRecord, Problem> {
        let attrs = self
            .attributes
            .map(KeyValueText::flatten)
            .unwrap_or_default();
        let parts = SpanParts {
            trace_id: self.trace_id.as_ref(),
            span_id: self.span_id.as_ref(),
            parent_span_id: self.parent_span_id.as_ref(),
            start: self.start.as_ref(),
            end: self.end.as_ref(),
            name: self.name.as_ref(),
            kind: self.kind.as_ref(),
            status: self.status.as_ref(),
        };
        parts.into_record(attrs, resource, resource_group, raw, position)
    }
}

/// A resource of the usual shape: its attribute list.
#[derive(serde::Deserialize)]
struct ResourceText<'a> {
    #[serde(borrow, default)]
    attributes: Option<Vec<KeyValueText<'a>>>,
}

/// A resource's flattened attributes, read from its text.
fn resource_attributes(text: &RawValue) -> Attrs {
    match serde_json::from_str::<ResourceText<'_>>(text.get()) {
        Ok(resource) => resource
            .attributes
            .map(KeyValueText::flatten)
            .unwrap_or_default(),
        Err(_) => {
            let tree = serde_json::from_str::<Value>(text.get()).ok();
            attributes(tree.as_ref().and_then(|r| r.get("attributes")))
        }
    }
}

/// One `{key, value}` entry of an attribute list.
#[derive(serde::Deserialize)]
struct KeyValueText<'a> {
    #[serde(borrow)]
    key: std::borrow::Cow<'a, str>,
    #[serde(default)]
    value: Option<AnyValueText>,
}

impl KeyValueText<'_> {
    /// The list as [`attributes`] flattens it.
    fn flatten(list: Vec<Self>) -> Attrs {
        let mut out = Map::new();
        for item in list {
            let value = item.value.map_or(Value::Null, AnyValueText::into_plain);
            out.insert(item.key.into_owned(), value);
        }
        out
    }
}

/// An `AnyValue` object: the variant fields, each as the JSON it holds.
#[derive(serde::Deserialize)]
struct AnyValueText {
    #[serde(rename = "stringValue", default, deserialize_with = "present")]
    string_value: Option<Value>,
    #[serde(rename = "boolValue", default, deserialize_with = "present")]
    bool_value: Option<Value>,
    #[serde(rename = "intValue", default, deserialize_with = "present")]
    int_value: Option<Value>,
    #[serde(rename = "doubleValue", default, deserialize_with = "present")]
    double_value: Option<Value>,
    #[serde(rename = "arrayValue", default, deserialize_with = "present")]
    array_value: Option<Value>,
    #[serde(rename = "kvlistValue", default, deserialize_with = "present")]
    kvlist_value: Option<Value>,
    #[serde(rename = "bytesValue", default, deserialize_with = "present")]
    bytes_value: Option<Value>,
}

impl AnyValueText {
    /// The value as [`any_value`] makes it of the same object.
    fn into_plain(self) -> Value {
        if let Some(v) = self.string_value {
            return v;
        }
        if let Some(v) = self.bool_value {
            return v;
        }
        if let Some(v) = self.int_value {
            return int_value(v);
        }
        if let Some(v) = self.double_value {
            return double_value(v);
        }
        if let Some(v) = self.array_value {
            return array_value(&v);
        }
        if let Some(v) = self.kvlist_value {
            return Value::Object(attributes(v.get("values")));
        }
        self.bytes_value.unwrap_or(Value::Null)
    }
}

/// Reads one `ConsoleSpanExporter` object (OpenTelemetry JS 1.x and 2.x field names).
pub(super) fn from_console(
    object: &Value,
    resource_group: usize,
    position: Position,
) -> Result<SpanRecord, Problem> {
    if !object.is_object() {
        return Err((
            DeadLetterReason::UnknownShape,
            "console dump entry is not an object".into(),
        ));
    }
    let context = object.get("spanContext");
    let trace_id = required_id(
        object
            .get("traceId")
            .or_else(|| context.and_then(|c| c.get("traceId"))),
        "traceId",
        16,
    )?;
    let span_id = required_id(
        object
            .get("id")
            .or_else(|| context.and_then(|c| c.get("spanId"))),
        "id",
        8,
    )?;
    let parent = object
        .get("parentSpanContext")
        .and_then(|p| p.get("spanId"))
        .or_else(|| object.get("parentSpanId"))
        .or_else(|| object.get("parentId"));
    let parent_span_id = optional_id(parent, "parentSpanContext.spanId", 8)?;
    let start = match object.get("timestamp") {
        None | Some(Value::Null) => None,
        Some(v) => Some(micros(v).ok_or_else(|| {
            (
                DeadLetterReason::InvalidValue,
                format!("timestamp {v} is not epoch microseconds"),
            )
        })?),
    };
    let duration_us = object.get("duration").and_then(Value::as_f64);
    let end = match (start, duration_us) {
        (Some(s), Some(d)) if d >= 0.0 => Some(s + chrono::Duration::microseconds(d as i64)),
        _ => None,
    };
    let status = object.get("status");
    let resource = object
        .at("/resource/attributes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    Ok(SpanRecord {
        trace_id,
        span_id,
        parent_span_id,
        name: text(object.get("name")).unwrap_or_default(),
        kind: Kind::from_js(object.get("kind")),
        start,
        end,
        duration_ms: duration_us
            .filter(|d| *d >= 0.0)
            .map(|d| (d / 1000.0) as i64),
        status: StatusCode::parse(status.and_then(|s| s.get("code"))),
        status_message: text(status.and_then(|s| s.get("message"))),
        attrs: object
            .get("attributes")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        resource: Rc::new(resource),
        resource_group,
        raw: RawSpan::Whole(object.clone()),
        position,
    })
}

fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Flattens an OTLP attribute list (`[{key, value: AnyValue}]`) into a map.
/// An already-flat object is accepted as is.
pub(super) fn attributes(list: Option<&Value>) -> Attrs {
    let mut out = Map::new();
    match list {
        Some(Value::Array(items)) => {
            for item in items {
                if let Some(key) = item.get("key").and_then(Value::as_str) {
                    out.insert(key.to_owned(), any_value(item.get("value")));
                }
            }
        }
        Some(Value::Object(map)) => out.clone_from(map),
        _ => {}
    }
    out
}

/// An OTLP `AnyValue` as a plain JSON value (int64 strings become numbers).
fn any_value(value: Option<&Value>) -> Value {
    let Some(Value::Object(object)) = value else {
        return value.cloned().unwrap_or(Value::Null);
    };
    if let Some(v) = object.get("stringValue") {
        return v.clone();
    }
    if let Some(v) = object.get("boolValue") {
        return v.clone();
    }
    if let Some(v) = object.get("intValue") {
        return int_value(v.clone());
    }
    if let Some(v) = object.get("doubleValue") {
        return double_value(v.clone());
    }
    if let Some(v) = object.get("arrayValue") {
        return array_value(v);
    }
    if let Some(v) = object.get("kvlistValue") {
        return Value::Object(attributes(v.get("values")));
    }
    if let Some(v) = object.get("bytesValue") {
        return v.clone();
    }
    Value::Null
}

/// An `intValue`: int64 is written as a decimal string in OTLP/JSON.
fn int_value(v: Value) -> Value {
    match &v {
        Value::String(s) => s.trim().parse::<i64>().map_or(v, Value::from),
        _ => v,
    }
}

/// A `doubleValue`, which some exporters write as a string.
fn double_value(v: Value) -> Value {
    match &v {
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(v, Value::Number),
        _ => v,
    }
}

/// An `arrayValue`: its `values`, each a plain value.
fn array_value(v: &Value) -> Value {
    let items = v.get("values").and_then(Value::as_array);
    Value::Array(
        items
            .map(|items| items.iter().map(|i| any_value(Some(i))).collect())
            .unwrap_or_default(),
    )
}

fn required_id(value: Option<&Value>, field: &str, bytes: usize) -> Result<String, Problem> {
    optional_id(value, field, bytes)?.ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            format!("span has no {field}"),
        )
    })
}

/// A trace or span id as lower-case hex. OTLP/JSON writes hex; some older
/// exporters wrote the protobuf-JSON default, base64, which is converted.
fn optional_id(
    value: Option<&Value>,
    field: &str,
    bytes: usize,
) -> Result<Option<String>, Problem> {
    let Some(raw) = value.and_then(Value::as_str).map(str::trim) else {
        return match value {
            None | Some(Value::Null) => Ok(None),
            Some(other) => Err((
                DeadLetterReason::InvalidValue,
                format!("{field} {other} is not a string"),
            )),
        };
    };
    if raw.is_empty() {
        return Ok(None);
    }
    if raw.len() == bytes * 2 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        let id = raw.to_ascii_lowercase();
        return Ok((!id.bytes().all(|b| b == b'0')).then_some(id));
    }
    if let Some(decoded) = base64_decode(raw).filter(|d| d.len() == bytes) {
        return Ok(Some(hex::encode(decoded)));
    }
    Err((
        DeadLetterReason::InvalidValue,
        format!("{field} {raw:?} is not {bytes} bytes of hex"),
    ))
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0u32;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(((bits >> count) & 0xff) as u8);
        }
    }
    Some(out)
}

/// Epoch nanoseconds as OTLP writes them (decimal string or number); 0 means unset.
fn unix_nanos(value: Option<&Value>, field: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    let nanos = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Some(_) => None,
    };
    let invalid = || {
        (
            DeadLetterReason::InvalidValue,
            format!(
                "{field} {} is not epoch nanoseconds",
                value.unwrap_or(&Value::Null)
            ),
        )
    };
    match nanos {
        Some(0) => Ok(None),
        Some(n) => i64::try_from(n)
            .map(|n| Some(Utc.timestamp_nanos(n)))
            .map_err(|_| invalid()),
        None => Err(invalid()),
    }
}

fn micros(value: &Value) -> Option<DateTime<Utc>> {
    let us = value
        .as_i64()
        .or_else(|| value.as_f64().map(|f| f as i64))?;
    Utc.timestamp_micros(us).single()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_lower_hex_and_base64_is_converted() {
        let id = optional_id(
            Some(&json!("5B8EFFF798038103D269B633813FC60C")),
            "traceId",
            16,
        );
        assert_eq!(
            id.expect("ok").as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        let id = optional_id(Some(&json!("W47/95gDgQPSabYzgT/GDA==")), "traceId", 16);
        assert_eq!(
            id.expect("ok").as_deref(),
            Some("5b8efff798038103d269b633813fc60c")
        );
        let bad = optional_id(Some(&json!("xyz")), "spanId", 8).expect_err("rejected");
        assert_eq!(bad.0, DeadLetterReason::InvalidValue);
    }

    #[test]
    fn spans_read_into_fields_match_spans_read_as_trees() {
        let resource = Rc::new(Attrs::new());
        let read = |span: &Value| {
            let raw = RawSpan::Whole(Value::Null);
            let text = span.to_string();
            let fields = serde_json::from_str::<SpanText<'_>>(&text).map(|f| {
                format!(
                    "{:?}",
                    f.into_record(&resource, 3, raw.clone(), Position::Line(2))
                )
            });
            let tree = format!(
                "{:?}",
                otlp_span(span, &resource, 3, raw, Position::Line(2))
            );
            (fields.ok(), tree)
        };
        let usual = json!({
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "00f067aa0ba902b7",
            "parentSpanId": "", "name": "build", "kind": 3,
            "startTimeUnixNano": "1769641490000000000", "endTimeUnixNano": 1769641491000000000u64,
            "status": {"code": 2, "message": "exit 1"}, "events": [], "droppedAttributesCount": 0,
            "attributes": [
                {"key": "s", "value": {"stringValue": "x"}},
                {"key": "n", "value": {"stringValue": null}},
                {"key": "i", "value": {"intValue": "14460881260"}},
                {"key": "d", "value": {"doubleValue": "2.5"}},
                {"key": "b", "value": {"boolValue": true}},
                {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "y"}, {"intValue": "7"}]}}},
                {"key": "k", "value": {"kvlistValue": {"values": [{"key": "z", "value": {"stringValue": "w"}}]}}},
                {"key": "y", "value": {"bytesValue": "AQI="}},
                {"key": "e", "value": {}},
                {"key": "m"},
            ],
        });
        let (fields, tree) = read(&usual);
        assert_eq!(fields.as_deref(), Some(tree.as_str()));
        assert!(
            tree.contains("14460881260") && tree.contains("exit 1"),
            "{tree}"
        );

        // Rejections say the same thing either way.
        let bad_id = json!({"traceId": 5, "spanId": "00f067aa0ba902b7", "name": null, "kind": "SPAN_KIND_CLIENT"});
        let (fields, tree) = read(&bad_id);
        assert_eq!(fields.as_deref(), Some(tree.as_str()));
        assert!(tree.contains("traceId 5 is not a string"), "{tree}");

        // Shapes the fields do not describe are left to the tree.
        for odd in [
            json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00f067aa0ba902b7", "attributes": {"flat": 1}}),
            json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00f067aa0ba902b7", "attributes": [{"key": 1}]}),
            json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00f067aa0ba902b7", "attributes": [{"key": "v", "value": "bare"}]}),
        ] {
            assert_eq!(read(&odd).0, None, "{odd}");
        }
    }

    #[test]
    fn any_values_flatten() {
        let attrs = attributes(Some(&json!([
            {"key": "i", "value": {"intValue": "14460881260"}},
            {"key": "d", "value": {"doubleValue": 5e9}},
            {"key": "a", "value": {"arrayValue": {"values": [{"stringValue": "x"}]}}},
            {"key": "k", "value": {"kvlistValue": {"values": [{"key": "y", "value": {"boolValue": true}}]}}},
        ])));
        assert_eq!(attrs["i"], json!(14460881260_i64));
        assert_eq!(attrs["d"], json!(5e9));
        assert_eq!(attrs["a"], json!(["x"]));
        assert_eq!(attrs["k"], json!({"y": true}));
    }
}
