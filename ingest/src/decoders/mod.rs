//! The native formats pipewatch reads: one module per format, a closed
//! [`Format`] registry with content sniffing, and the shared framing that
//! splits an input into records (single document, JSON array, NDJSON, YAML).

use chrono::{DateTime, Utc};
use pipewatch_schema::Event;
use serde_json::Value;

use crate::dead_letter::{DeadLetter, DeadLetterReason};

pub mod framing;
pub mod pieces;
mod prune;
mod util;

mod argocd;
mod cloudtrail;
mod conftest;
mod github_audit;
mod github_webhook;
mod gitlab;
mod k8s_audit;
mod k8s_policy;
mod otlp;
mod sarif;
mod sigstore;
mod vault_audit;

pub use framing::Position;

/// A native input handed to a decoder: the bytes of one file or request
/// body (already gunzipped), where it came from, and an optional type hint
/// from the transport (GitHub's `X-GitHub-Event`, GitLab's `X-Gitlab-Event`).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// File path, `stdin`, or the transport's name; shown in errors.
    pub origin: &'a str,
    pub bytes: &'a [u8],
    pub type_hint: Option<&'a str>,
    /// When the input was observed (file modification time, request
    /// receipt). Used only for records that carry no time of their own,
    /// such as SARIF results without invocation times.
    pub observed_at: Option<DateTime<Utc>>,
    /// Set on a piece of whole lines cut from a larger NDJSON input (see
    /// [`pieces::PieceReader`]): each line is one record, numbered from
    /// this 1-based line of the whole input.
    pub lines_from: Option<usize>,
}

impl<'a> Input<'a> {
    /// An input with no type hint.
    pub fn new(origin: &'a str, bytes: &'a [u8]) -> Self {
        Input {
            origin,
            bytes,
            type_hint: None,
            observed_at: None,
            lines_from: None,
        }
    }
}

/// What decoding one input produced: good events and dead letters, in input order.
#[derive(Debug, Default)]
pub struct DecodeOutput {
    pub events: Vec<Event>,
    pub dead_letters: Vec<DeadLetter>,
}

impl DecodeOutput {
    /// Records a record that could not be decoded, with the reason.
    pub fn reject(
        &mut self,
        format: Format,
        input: &Input<'_>,
        position: Position,
        reason: DeadLetterReason,
        detail: impl Into<String>,
        raw: &[u8],
    ) {
        self.dead_letters.push(DeadLetter::new(
            format.name(),
            input.origin,
            position,
            reason,
            detail.into(),
            raw,
        ));
    }
}

/// A record that parsed, with where it sits and its own bytes.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub position: Position,
    pub value: Value,
    pub bytes: &'a [u8],
}

impl DecodeOutput {
    /// Keeps the framed records that parsed and dead-letters the others as
    /// syntax errors, so one broken line never hides the rest.
    pub fn parsed<'a>(
        &mut self,
        format: Format,
        input: &Input<'_>,
        framed: impl IntoIterator<Item = framing::Framed<'a>>,
    ) -> Vec<Parsed<'a>> {
        let mut good = Vec::new();
        for record in framed {
            let (position, bytes) = (record.position, record.bytes);
            match record.parsed() {
                Ok(value) => good.push(Parsed {
                    position,
                    value,
                    bytes,
                }),
                Err(detail) => {
                    let reason = DeadLetterReason::Syntax;
                    self.reject(format, input, position, reason, detail, bytes);
                }
            }
        }
        good
    }
}

/// One native format's decoder.
pub trait Decoder: Send + Sync {
    /// Whether a parsed record looks like this format. Called on the first
    /// record of an input whose format was not given.
    fn sniff(&self, record: &Value) -> bool;

    /// Decodes a whole input. Never panics: every record either becomes
    /// events or a dead letter naming its position and reason.
    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput);

    /// Whether each NDJSON line decodes on its own, so that a large input
    /// decoded a piece at a time gives what decoding it whole gives. Not
    /// so where records refer to each other (spans to their parents).
    fn lines_stand_alone(&self) -> bool {
        false
    }

    /// Where a large NDJSON input may be cut into pieces that decode on
    /// their own; `None` when it is read whole. By default any line may
    /// end a piece when lines stand alone.
    fn line_cuts(&self) -> Option<Box<dyn pieces::LineCuts>> {
        self.lines_stand_alone()
            .then(|| Box::new(pieces::AnyLine) as Box<dyn pieces::LineCuts>)
    }
}

macro_rules! formats {
    ($($variant:ident => $name:literal, $module:ident, $reads:literal, $example:literal;)+) => {
        /// Every native format pipewatch decodes. Detection tries them in this order.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Format { $($variant),+ }

        impl Format {
            /// All formats, in detection order.
            pub const ALL: &'static [Format] = &[$(Format::$variant),+];

            /// The stable name, used in `--format`, the `source` column and `/ingest/{format}`.
            pub fn name(self) -> &'static str {
                match self { $(Format::$variant => $name),+ }
            }

            /// What the format reads, for `pipewatch formats`.
            pub fn reads(self) -> &'static str {
                match self { $(Format::$variant => $reads),+ }
            }

            /// An example invocation, for `pipewatch formats`.
            pub fn example(self) -> &'static str {
                match self { $(Format::$variant => $example),+ }
            }

            /// The format's decoder.
            pub fn decoder(self) -> &'static dyn Decoder {
                match self { $(Format::$variant => &$module::DECODER),+ }
            }

            /// Looks a format up by its name.
            pub fn from_name(name: &str) -> Option<Format> {
                Format::ALL.iter().copied().find(|f| f.name() == name)
            }
        }
    };
}

formats! {
    GithubWebhook => "github_webhook", github_webhook,
        "GitHub webhook payloads: workflow_run, workflow_job, deployment, deployment_status, deployment_review, push, workflow_dispatch, branch_protection_rule, installation",
        "pipewatch ingest --format github_webhook workflow_job.json";
    GithubAudit => "github_audit", github_audit,
        "GitHub organization/enterprise audit log: streaming and REST shape (@timestamp, _document_id) and the older data{} shape; NDJSON or JSON array",
        "pipewatch ingest audit-log.ndjson";
    Gitlab => "gitlab", gitlab,
        "GitLab webhooks: pipeline, job (build), deployment, push and resource access token hooks",
        "pipewatch ingest --format gitlab pipeline_hook.json";
    VaultAudit => "vault_audit", vault_audit,
        "HashiCorp Vault audit device lines (request and response, errors; HMAC-ed values kept)",
        "pipewatch ingest /var/log/vault_audit.log";
    Cloudtrail => "cloudtrail", cloudtrail,
        "AWS CloudTrail records: one record, a JSON array, {\"Records\": [...]} and the .json.gz files delivered to S3",
        "pipewatch ingest 123456789012_CloudTrail_us-east-1_20250306T0230Z.json.gz";
    K8sAudit => "k8s_audit", k8s_audit,
        "Kubernetes audit.k8s.io/v1 events (NDJSON log backend, EventList) and the legacy v1beta1 shape",
        "pipewatch ingest kube-apiserver-audit.log";
    ArgoCd => "argocd", argocd,
        "Argo CD Application resources (YAML or JSON): the sync operation and history become deployment events",
        "kubectl get application -n argocd my-app -o yaml | pipewatch ingest -";
    K8sPolicy => "k8s_policy", k8s_policy,
        "Kubernetes policy reports: Kyverno PolicyReport / ClusterPolicyReport (and kubectl List), Gatekeeper constraint status and violation exports",
        "kubectl get polr -A -o yaml | pipewatch ingest -";
    Otlp => "otlp", otlp,
        "OpenTelemetry traces carrying CI/CD spans: OTLP/JSON, OTLP/protobuf (--format otlp), collector YAML, console-exporter dumps",
        "pipewatch ingest --format otlp traces.binpb";
    Sarif => "sarif", sarif,
        "SARIF 2.1.0 scanner results (CodeQL, Trivy, gitleaks, zizmor, conftest --output sarif, ...)",
        "pipewatch ingest results.sarif";
    Conftest => "conftest", conftest,
        "Conftest `--output json` results and OPA decision-log upload bodies",
        "conftest test deploy.yaml --output json | pipewatch ingest -";
    Sigstore => "sigstore", sigstore,
        "Sigstore bundles (cosign, GitHub artifact attestations, npm provenance): who signed what, from which workflow",
        "pipewatch ingest artifact.sigstore.json";
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub use otlp::SpanTally;

/// Decodes one OTLP trace export (`ExportTraceServiceRequest`, protobuf or
/// JSON) as a live receiver gets it: CI/CD spans become rows, the rest is
/// counted in the tally rather than dead-lettered.
pub fn decode_otlp_export(input: &Input<'_>, protobuf: bool) -> (DecodeOutput, SpanTally) {
    let mut out = DecodeOutput::default();
    let tally = otlp::decode_export(input, protobuf, &mut out);
    (out, tally)
}

/// Whether a webhook's event-type header (`X-GitHub-Event`,
/// `X-Gitlab-Event`) names events that `format` decodes. Live sources
/// acknowledge and count other event types instead of dead-lettering
/// them: a hook subscribed to everything is not sending bad records.
pub fn decodes_event_type(format: Format, header: &str) -> bool {
    match format {
        Format::GithubWebhook => github_webhook::decodes_event_type(header),
        Format::Gitlab => gitlab::decodes_event_type(header),
        _ => true,
    }
}

/// Guesses the format of an input from its content: the first record is
/// parsed (JSON, NDJSON or YAML) and offered to each decoder in order.
/// Binary inputs (OTLP protobuf) are never guessed.
pub fn detect(bytes: &[u8]) -> Option<Format> {
    let first = framing::first_record(bytes)?;
    Format::ALL
        .iter()
        .copied()
        .find(|format| format.decoder().sniff(&first))
}

/// Decodes an input in the given format, or the detected one.
pub fn decode(format: Option<Format>, input: &Input<'_>) -> (Option<Format>, DecodeOutput) {
    let mut out = DecodeOutput::default();
    let format = format.or_else(|| detect(input.bytes));
    match format {
        Some(format) => format.decoder().decode(input, &mut out),
        None => out.dead_letters.push(DeadLetter::new(
            "unknown",
            input.origin,
            Position::Whole,
            DeadLetterReason::UnknownFormat,
            "no decoder recognises this input; pass --format to choose one".into(),
            input.bytes,
        )),
    }
    (format, out)
}
