//! OTLP/protobuf `ExportTraceServiceRequest` bodies, rewritten into the
//! OTLP/JSON shape (hex ids, decimal-string times and int64s, base64 bytes)
//! so one mapping serves every encoding and `raw` always holds JSON.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status};
use prost::Message;
use serde_json::{Map, Value, json};

/// Decodes a protobuf request into its OTLP/JSON equivalent.
pub(super) fn decode(bytes: &[u8]) -> Result<Value, String> {
    let request = ExportTraceServiceRequest::decode(bytes)
        .map_err(|e| format!("not an OTLP protobuf ExportTraceServiceRequest: {e}"))?;
    let resource_spans: Vec<Value> = request.resource_spans.iter().map(resource_spans).collect();
    Ok(json!({ "resourceSpans": resource_spans }))
}

fn resource_spans(rs: &ResourceSpans) -> Value {
    let mut out = Map::new();
    if let Some(resource) = &rs.resource {
        out.insert(
            "resource".into(),
            json!({ "attributes": attributes(&resource.attributes) }),
        );
    }
    let scope_spans: Vec<Value> = rs
        .scope_spans
        .iter()
        .map(|ss| {
            let mut scope_spans = Map::new();
            if let Some(scope) = &ss.scope {
                scope_spans.insert("scope".into(), scope_json(scope));
            }
            let spans: Vec<Value> = ss.spans.iter().map(span).collect();
            scope_spans.insert("spans".into(), Value::Array(spans));
            if !ss.schema_url.is_empty() {
                scope_spans.insert("schemaUrl".into(), Value::String(ss.schema_url.clone()));
            }
            Value::Object(scope_spans)
        })
        .collect();
    out.insert("scopeSpans".into(), Value::Array(scope_spans));
    if !rs.schema_url.is_empty() {
        out.insert("schemaUrl".into(), Value::String(rs.schema_url.clone()));
    }
    Value::Object(out)
}

fn scope_json(scope: &InstrumentationScope) -> Value {
    json!({
        "name": scope.name,
        "version": scope.version,
        "attributes": attributes(&scope.attributes),
    })
}

fn span(span: &Span) -> Value {
    let mut out = Map::new();
    out.insert("traceId".into(), Value::String(hex::encode(&span.trace_id)));
    out.insert("spanId".into(), Value::String(hex::encode(&span.span_id)));
    if !span.parent_span_id.is_empty() {
        out.insert(
            "parentSpanId".into(),
            Value::String(hex::encode(&span.parent_span_id)),
        );
    }
    if !span.trace_state.is_empty() {
        out.insert("traceState".into(), Value::String(span.trace_state.clone()));
    }
    out.insert("name".into(), Value::String(span.name.clone()));
    out.insert("kind".into(), Value::from(span.kind));
    out.insert(
        "startTimeUnixNano".into(),
        Value::String(span.start_time_unix_nano.to_string()),
    );
    out.insert(
        "endTimeUnixNano".into(),
        Value::String(span.end_time_unix_nano.to_string()),
    );
    out.insert("attributes".into(), attributes(&span.attributes));
    if !span.events.is_empty() {
        let events = span
            .events
            .iter()
            .map(|e| {
                json!({
                    "timeUnixNano": e.time_unix_nano.to_string(),
                    "name": e.name,
                    "attributes": attributes(&e.attributes),
                })
            })
            .collect();
        out.insert("events".into(), Value::Array(events));
    }
    if !span.links.is_empty() {
        let links = span
            .links
            .iter()
            .map(|l| {
                json!({
                    "traceId": hex::encode(&l.trace_id),
                    "spanId": hex::encode(&l.span_id),
                    "attributes": attributes(&l.attributes),
                })
            })
            .collect();
        out.insert("links".into(), Value::Array(links));
    }
    if let Some(status) = &span.status {
        out.insert("status".into(), status_json(status));
    }
    Value::Object(out)
}

fn status_json(status: &Status) -> Value {
    let mut out = Map::new();
    if status.code != 0 {
        out.insert("code".into(), Value::from(status.code));
    }
    if !status.message.is_empty() {
        out.insert("message".into(), Value::String(status.message.clone()));
    }
    Value::Object(out)
}

fn attributes(list: &[KeyValue]) -> Value {
    Value::Array(
        list.iter()
            .map(|kv| {
                json!({
                    "key": kv.key,
                    "value": kv.value.as_ref().map_or(json!({}), any_value_json),
                })
            })
            .collect(),
    )
}

fn any_value_json(value: &AnyValue) -> Value {
    use any_value::Value as V;
    match &value.value {
        Some(V::StringValue(s)) => json!({ "stringValue": s }),
        Some(V::BoolValue(b)) => json!({ "boolValue": b }),
        Some(V::IntValue(i)) => json!({ "intValue": i.to_string() }),
        Some(V::DoubleValue(d)) => match serde_json::Number::from_f64(*d) {
            Some(n) => json!({ "doubleValue": n }),
            None => json!({ "doubleValue": d.to_string() }),
        },
        Some(V::ArrayValue(array)) => {
            let values: Vec<Value> = array.values.iter().map(any_value_json).collect();
            json!({ "arrayValue": { "values": values } })
        }
        Some(V::KvlistValue(list)) => {
            json!({ "kvlistValue": { "values": attributes(&list.values) } })
        }
        Some(V::BytesValue(bytes)) => json!({ "bytesValue": base64(bytes) }),
        Some(V::StringValueStrindex(_)) | None => json!({}),
    }
}

/// Standard padded base64, as OTLP/JSON writes `bytes` fields.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(decode(b"\xff\xff\xff\xff").is_err());
    }
}
