//! Sigstore bundles (v0.1-v0.3, as written by cosign, sigstore-js/-python,
//! GitHub artifact attestations and npm provenance; also the wrappers of the
//! GitHub attestations API and the older cosign `--bundle` file): one
//! attestation event per bundle, with the in-toto Statement decoded.
//! Specification: <https://github.com/sigstore/protobuf-specs/blob/main/protos/sigstore_bundle.proto>,
//! <https://docs.sigstore.dev/about/bundle/>.
//!
//! Signatures and inclusion proofs are NOT verified here; `outcome` success
//! means the bundle carries a transparency-log entry. The signing
//! certificate is not parsed (no X.509 crate in the dependency tree), so the
//! signer identity columns stay empty; the certificate bytes are only checked
//! for Fulcio's extension OID to tell keyless (OIDC) signing apart.

mod base64;
mod provenance;

use chrono::{DateTime, TimeZone, Utc};
use pipewatch_schema::{Category, Event, IdentityKind};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::util::{Lookup, i64_at, str_at, text_at};
use super::{DecodeOutput, Decoder, Format, Input, Position, framing};
use crate::dead_letter::DeadLetterReason;

/// Decoder for Sigstore bundles.
#[derive(Debug)]
pub(crate) struct Sigstore;

pub(crate) static DECODER: Sigstore = Sigstore;

const FORMAT: Format = Format::Sigstore;

const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle";

const IN_TOTO: &str = "application/vnd.in-toto+json";

/// DER content of OID 1.3.6.1.4.1.57264 (Fulcio's certificate extensions).
const FULCIO_OID: &[u8] = &[0x2B, 0x06, 0x01, 0x04, 0x01, 0x83, 0xBF, 0x30];

impl Decoder for Sigstore {
    fn sniff(&self, record: &Value) -> bool {
        is_bundle(record)
            || is_legacy(record)
            || record.get("bundle").is_some_and(is_bundle)
            || record.at("/attestations/0/bundle").is_some_and(is_bundle)
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::records(input)) {
            let value = framed.value;
            // GitHub's attestations API: {"attestations": [{"bundle": {...}, "repository_id": ...}]}.
            if let Some(items) = value.get("attestations").and_then(Value::as_array) {
                for (i, item) in items.iter().enumerate() {
                    let bundle = item.get("bundle").unwrap_or(item);
                    let bytes = serde_json::to_vec(bundle).unwrap_or_default();
                    push(input, out, bundle, Position::Record(i), &bytes);
                }
                continue;
            }
            let bundle = value
                .get("bundle")
                .filter(|b| is_bundle(b))
                .unwrap_or(&value);
            push(input, out, bundle, framed.position, framed.bytes);
        }
    }
}

fn is_bundle(value: &Value) -> bool {
    str_at(value, "/mediaType").is_some_and(|m| m.starts_with(BUNDLE_MEDIA_TYPE))
}

/// `cosign sign-blob --bundle` before the protobuf bundle existed.
fn is_legacy(value: &Value) -> bool {
    value.get("rekorBundle").is_some() && value.get("base64Signature").is_some()
}

fn push(
    input: &Input<'_>,
    out: &mut DecodeOutput,
    bundle: &Value,
    position: Position,
    bytes: &[u8],
) {
    let decoded = if is_legacy(bundle) {
        legacy_event(input, bundle)
    } else {
        bundle_event(input, bundle)
    };
    match decoded {
        Ok(event) => out.events.push(event),
        Err((reason, detail)) => out.reject(FORMAT, input, position, reason, detail, bytes),
    }
}

type Rejection = (DeadLetterReason, String);

fn rejection(reason: DeadLetterReason, detail: impl Into<String>) -> Rejection {
    (reason, detail.into())
}

/// What the bundle signs, before the transparency log is consulted.
struct Content {
    action: &'static str,
    /// Used as the id when the bundle has no log entry.
    fallback_id: String,
    statement: Option<Value>,
    digest: Option<String>,
}

fn bundle_event(input: &Input<'_>, bundle: &Value) -> Result<Event, Rejection> {
    if !is_bundle(bundle) {
        return Err(rejection(
            DeadLetterReason::UnknownShape,
            "record is not a Sigstore bundle (no application/vnd.dev.sigstore.bundle mediaType)",
        ));
    }
    let tlog = bundle.at("/verificationMaterial/tlogEntries/0");
    let body = tlog
        .and_then(|t| str_at(t, "/canonicalizedBody"))
        .and_then(base64::decode)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());

    let content = if let Some(envelope) = bundle.get("dsseEnvelope") {
        dsse_content(envelope)?
    } else if let Some(signature) = bundle.get("messageSignature") {
        message_content(signature, body.as_ref())?
    } else {
        return Err(rejection(
            DeadLetterReason::UnknownShape,
            "Sigstore bundle has neither dsseEnvelope nor messageSignature",
        ));
    };

    let log_index = tlog.and_then(|t| text_at(t, "/logIndex"));
    let integrated = tlog.and_then(|t| integrated_time(t, "/integratedTime"));
    let event_time = event_time(input, integrated)?;
    let id = log_index
        .as_ref()
        .map_or(content.fallback_id, |i| format!("rekor:{i}"));
    let mut event = Event::new(
        FORMAT.name(),
        id,
        event_time,
        Category::Attestation,
        content.action,
        bundle.clone(),
    );
    event.tool_name = Some("sigstore".to_owned());
    event.outcome = if log_index.is_some() {
        "success"
    } else {
        "unknown"
    }
    .to_owned();
    match &content.statement {
        Some(statement) => provenance::fill(&mut event, statement),
        None => describe_signature(&mut event, content.digest.as_deref()),
    }

    let material = bundle.get("verificationMaterial").unwrap_or(&Value::Null);
    let certificate = str_at(material, "/certificate/rawBytes")
        .or_else(|| str_at(material, "/x509CertificateChain/certificates/0/rawBytes"))
        .and_then(base64::decode);
    if let Some(der) = certificate {
        event.identity_kind = certificate_kind(&der);
    } else if let Some(key) = material.get("publicKey") {
        // A long-lived signing key (cosign key pair, KMS key), named by its hint.
        event.identity_kind = IdentityKind::StaticKey;
        event.identity_id = str_at(key, "/hint").map(str::to_owned);
    }
    Ok(event)
}

fn dsse_content(envelope: &Value) -> Result<Content, Rejection> {
    let encoded = str_at(envelope, "/payload").ok_or_else(|| {
        rejection(
            DeadLetterReason::MissingField,
            "dsseEnvelope has no payload",
        )
    })?;
    let payload = base64::decode(encoded).ok_or_else(|| {
        rejection(
            DeadLetterReason::InvalidEncoding,
            "dsseEnvelope.payload is not base64",
        )
    })?;
    let statement = if str_at(envelope, "/payloadType") == Some(IN_TOTO) {
        let parsed = serde_json::from_slice::<Value>(&payload).map_err(|e| {
            rejection(
                DeadLetterReason::InvalidValue,
                format!("dsseEnvelope.payload is declared in-toto but is not JSON: {e}"),
            )
        })?;
        Some(parsed)
    } else {
        None
    };
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&payload)));
    Ok(Content {
        action: "sigstore.dsse",
        fallback_id: format!("dsse:{digest}"),
        digest: statement.is_none().then_some(digest),
        statement,
    })
}

fn message_content(signature: &Value, body: Option<&Value>) -> Result<Content, Rejection> {
    let encoded = str_at(signature, "/signature").ok_or_else(|| {
        rejection(
            DeadLetterReason::MissingField,
            "messageSignature has no signature",
        )
    })?;
    let bytes = base64::decode(encoded).ok_or_else(|| {
        rejection(
            DeadLetterReason::InvalidEncoding,
            "messageSignature.signature is not base64",
        )
    })?;
    let from_bundle = str_at(signature, "/messageDigest/digest")
        .and_then(base64::decode)
        .map(|d| {
            format!(
                "{}:{}",
                algorithm(str_at(signature, "/messageDigest/algorithm")),
                hex::encode(d)
            )
        });
    Ok(Content {
        action: "sigstore.message_signature",
        fallback_id: format!("signature:sha256:{}", hex::encode(Sha256::digest(&bytes))),
        statement: None,
        digest: from_bundle.or_else(|| body.and_then(rekord_digest)),
    })
}

/// The artifact digest a Rekor `hashedrekord` entry records.
fn rekord_digest(body: &Value) -> Option<String> {
    let hex = str_at(body, "/spec/data/hash/value")?;
    let alg = str_at(body, "/spec/data/hash/algorithm").unwrap_or("sha256");
    Some(format!("{alg}:{hex}"))
}

/// Protobuf `HashAlgorithm` names to the usual lower-case spelling.
fn algorithm(name: Option<&str>) -> String {
    match name {
        Some("SHA2_256") | None => "sha256".to_owned(),
        Some("SHA2_384") => "sha384".to_owned(),
        Some("SHA2_512") => "sha512".to_owned(),
        Some(other) => other.to_ascii_lowercase(),
    }
}

fn describe_signature(event: &mut Event, digest: Option<&str>) {
    event.target_type = Some("artifact".to_owned());
    event.correlation_id = digest.map(str::to_owned);
    event.message = Some(match digest {
        Some(d) => format!("signature over {d}"),
        None => "signature over an unnamed payload".to_owned(),
    });
}

fn certificate_kind(der: &[u8]) -> IdentityKind {
    if der.windows(FULCIO_OID.len()).any(|w| w == FULCIO_OID) {
        IdentityKind::Oidc
    } else {
        IdentityKind::Unknown
    }
}

fn integrated_time(value: &Value, pointer: &str) -> Option<DateTime<Utc>> {
    i64_at(value, pointer).and_then(|s| Utc.timestamp_opt(s, 0).single())
}

fn event_time(
    input: &Input<'_>,
    integrated: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, Rejection> {
    integrated.or(input.observed_at).ok_or_else(|| {
        rejection(
            DeadLetterReason::MissingField,
            "Sigstore bundle has no tlog integratedTime and the input has no observation time",
        )
    })
}

fn legacy_event(input: &Input<'_>, bundle: &Value) -> Result<Event, Rejection> {
    let payload = bundle.at("/rekorBundle/Payload").unwrap_or(&Value::Null);
    let signature = str_at(bundle, "/base64Signature")
        .and_then(base64::decode)
        .ok_or_else(|| {
            rejection(
                DeadLetterReason::InvalidEncoding,
                "cosign bundle base64Signature is not base64",
            )
        })?;
    let body = str_at(payload, "/body")
        .and_then(base64::decode)
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let log_index = text_at(payload, "/logIndex");
    let event_time = event_time(input, integrated_time(payload, "/integratedTime"))?;
    let id = log_index.as_ref().map_or_else(
        || {
            format!(
                "signature:sha256:{}",
                hex::encode(Sha256::digest(&signature))
            )
        },
        |i| format!("rekor:{i}"),
    );
    let mut event = Event::new(
        FORMAT.name(),
        id,
        event_time,
        Category::Attestation,
        "sigstore.message_signature",
        bundle.clone(),
    );
    event.tool_name = Some("sigstore".to_owned());
    event.outcome = if log_index.is_some() {
        "success"
    } else {
        "unknown"
    }
    .to_owned();
    describe_signature(&mut event, body.as_ref().and_then(rekord_digest).as_deref());
    // `cert` is base64 of a PEM certificate.
    let der = str_at(bundle, "/cert")
        .and_then(base64::decode)
        .and_then(|pem| String::from_utf8(pem).ok())
        .and_then(|pem| base64::pem_body(&pem));
    if let Some(der) = der {
        event.identity_kind = certificate_kind(&der);
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                let index = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(
                    ALPHABET.get(index as usize).copied().unwrap_or(b'A'),
                ));
            }
        }
        while !out.len().is_multiple_of(4) {
            out.push('=');
        }
        out
    }

    fn dsse_bundle(log_index: Option<&str>, payload: &str) -> Value {
        let mut tlog = json!([]);
        if let Some(i) = log_index {
            tlog = json!([{"logIndex": i, "integratedTime": "1716578064", "kindVersion": {"kind": "dsse"}}]);
        }
        let mut cert = FULCIO_OID.to_vec();
        cert.extend_from_slice(b"rest of certificate");
        json!({
            "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
            "verificationMaterial": {"certificate": {"rawBytes": b64(&cert)}, "tlogEntries": tlog},
            "dsseEnvelope": {"payloadType": IN_TOTO, "payload": b64(payload.as_bytes()), "signatures": []}
        })
    }

    const STATEMENT: &str = r#"{"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"name": "app.tgz", "digest": {"sha256": "abcd"}}], "predicate": {}}"#;

    fn decode(text: &str) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", text.as_bytes()), &mut out);
        out
    }

    #[test]
    fn keyless_dsse_bundle_becomes_one_attestation() {
        let out = decode(&dsse_bundle(Some("96764485"), STATEMENT).to_string());
        assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
        let event = &out.events[0];
        assert_eq!(event.source_event_id, "rekor:96764485");
        assert_eq!(event.event_time.timestamp(), 1_716_578_064);
        assert_eq!(event.identity_kind, IdentityKind::Oidc);
        assert_eq!(
            event.rule_id.as_deref(),
            Some("https://slsa.dev/provenance/v1")
        );
        assert_eq!(event.target_name.as_deref(), Some("app.tgz"));
        assert_eq!(event.correlation_id.as_deref(), Some("sha256:abcd"));
        assert_eq!(event.outcome, "success");
    }

    #[test]
    fn bad_bundle_lines_are_dead_lettered_and_the_rest_decode() {
        let mut corrupt = dsse_bundle(Some("1"), STATEMENT);
        corrupt["dsseEnvelope"]["payload"] = json!("***");
        let no_time = dsse_bundle(None, STATEMENT);
        let text = format!(
            "{corrupt}\n{}\n{no_time}\n",
            dsse_bundle(Some("2"), STATEMENT)
        );
        let out = decode(&text);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].source_event_id, "rekor:2");
        assert_eq!(
            out.dead_letters[0].reason,
            DeadLetterReason::InvalidEncoding
        );
        assert_eq!(out.dead_letters[0].position, Position::Line(1));
        // No log entry and no observation time: nothing says when it happened.
        assert_eq!(out.dead_letters[1].reason, DeadLetterReason::MissingField);
        assert_eq!(out.dead_letters[1].position, Position::Line(3));
    }

    #[test]
    fn bundle_without_log_entry_uses_the_payload_digest() {
        let mut input = Input::new("test", b"");
        input.observed_at = Utc.timestamp_opt(1_700_000_000, 0).single();
        let text = dsse_bundle(None, STATEMENT).to_string();
        input.bytes = text.as_bytes();
        let mut out = DecodeOutput::default();
        DECODER.decode(&input, &mut out);
        let expected = format!(
            "dsse:sha256:{}",
            hex::encode(Sha256::digest(STATEMENT.as_bytes()))
        );
        assert_eq!(out.events[0].source_event_id, expected);
        assert_eq!(out.events[0].outcome, "unknown");
    }

    #[test]
    fn message_signatures_and_keys() {
        let bundle = json!({
            "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "verificationMaterial": {"publicKey": {"hint": "key-1"},
                "tlogEntries": [{"logIndex": "5", "integratedTime": "1710888076"}]},
            "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(&[0xC4, 0xE9])},
                                 "signature": b64(b"sig")}
        });
        let out = decode(&bundle.to_string());
        let event = &out.events[0];
        assert_eq!(event.action, "sigstore.message_signature");
        assert_eq!(event.correlation_id.as_deref(), Some("sha256:c4e9"));
        assert_eq!(event.identity_kind, IdentityKind::StaticKey);
        assert_eq!(event.identity_id.as_deref(), Some("key-1"));
    }

    #[test]
    fn detects_bundles_wrappers_and_legacy_files() {
        let bundle = dsse_bundle(Some("1"), STATEMENT);
        assert!(DECODER.sniff(&bundle));
        assert!(DECODER.sniff(&json!({"attestations": [{"bundle": bundle.clone()}]})));
        assert!(DECODER.sniff(&json!({"base64Signature": "x", "rekorBundle": {}})));
        assert!(
            !DECODER.sniff(&json!({"mediaType": "application/vnd.oci.image.manifest.v1+json"}))
        );

        let out = decode(
            &json!({"attestations": [{"bundle": bundle}, {"bundle": {"mediaType": "x"}}]})
                .to_string(),
        );
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.dead_letters[0].position, Position::Record(1));
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
    }

    #[test]
    fn legacy_cosign_bundle_reads_the_rekor_payload() {
        let body = json!({"kind": "hashedrekord", "spec": {"data": {"hash": {"algorithm": "sha256", "value": "ff"}}}});
        let legacy = json!({"base64Signature": b64(b"sig"), "cert": b64(b"not pem"),
            "rekorBundle": {"Payload": {"body": b64(body.to_string().as_bytes()), "integratedTime": 1_700_000_000, "logIndex": 77}}});
        let out = decode(&legacy.to_string());
        let event = &out.events[0];
        assert_eq!(event.source_event_id, "rekor:77");
        assert_eq!(event.correlation_id.as_deref(), Some("sha256:ff"));
        assert_eq!(event.identity_kind, IdentityKind::Unknown);
    }
}
