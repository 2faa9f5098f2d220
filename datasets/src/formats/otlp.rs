//! OTLP/JSON traces of CI runs (`otlp/traces.ndjson`, one
//! ExportTraceServiceRequest a line): a SERVER span per pipeline run, an
//! INTERNAL span per job carrying the OTel CI/CD attributes plus
//! `process.cpu.time`, `process.memory.usage`, `network.io.transmit` and
//! `cicd.worker.name`, and a CLIENT span per outbound destination with
//! `server.address`.

use serde_json::{Value, json};

use super::epoch_ns;
use crate::ctx::Ctx;
use crate::facts::{JobFact, RunFact};
use crate::org::{Org, Provider};
use crate::rng::sha256_hex;

const FILE: &str = "otlp/traces.ndjson";

fn s(key: &str, value: impl Into<String>) -> Value {
    json!({"key": key, "value": {"stringValue": value.into()}})
}

fn i(key: &str, value: i64) -> Value {
    // OTLP/JSON encodes 64-bit integers as decimal strings.
    json!({"key": key, "value": {"intValue": value.to_string()}})
}

fn d(key: &str, value: f64) -> Value {
    json!({"key": key, "value": {"doubleValue": (value * 1000.0).round() / 1000.0}})
}

/// The semconv result of a GitHub/GitLab conclusion.
pub(crate) fn result(conclusion: &str) -> &'static str {
    match conclusion {
        "success" => "success",
        "failure" => "failure",
        "cancelled" => "cancellation",
        "skipped" => "skip",
        "timed_out" => "timeout",
        _ => "error",
    }
}

fn status(conclusion: &str) -> Value {
    match conclusion {
        "success" => json!({"code": 1}),
        "skipped" => json!({"code": 0}),
        other => json!({"code": 2, "message": other}),
    }
}

/// Span ids the way the Collector's githubreceiver derives them, so traces
/// join with webhook-derived ids.
pub(crate) fn trace_id(run_id: u64, attempt: u32) -> String {
    sha256_hex(&format!("{run_id}{attempt}t"))[..32].to_owned()
}

pub(crate) fn run_span_id(run_id: u64, attempt: u32) -> String {
    sha256_hex(&format!("{run_id}{attempt}s"))[16..32].to_owned()
}

pub(crate) fn job_span_id(job_id: u64) -> String {
    sha256_hex(&format!("{job_id}-j"))[16..32].to_owned()
}

pub(crate) fn client_span_id(job_id: u64, n: usize) -> String {
    sha256_hex(&format!("{job_id}-{n}-c"))[16..32].to_owned()
}

/// Writes the trace of a run; returns the number of spans.
pub(crate) fn trace(ctx: &mut Ctx, org: &Org, run: &RunFact, jobs: &[JobFact]) -> u64 {
    let repo = &org.repos[run.repo];
    let wf = &repo.workflows[run.workflow];
    let (service, provider, scope) = match repo.provider {
        Provider::GitHub => ("github-actions", "github", ("otel-cicd-action", "2.4.0")),
        Provider::GitLab => ("gitlab-ci", "gitlab", ("gitlab-ci-otel-exporter", "0.9.2")),
    };
    let run_url = match repo.provider {
        Provider::GitHub => format!("{}/actions/runs/{}", repo.url(), run.id),
        Provider::GitLab => format!("{}/-/pipelines/{}", repo.url(), run.id),
    };
    let resource = json!([
        s("service.name", service),
        s("service.namespace", repo.full_name.clone()),
        s("cicd.pipeline.name", wf.name.clone()),
        s("cicd.pipeline.run.id", run.id.to_string()),
        s("cicd.pipeline.run.url.full", run_url.clone()),
        s("vcs.provider.name", provider),
        s("vcs.repository.name", repo.name.clone()),
        s("vcs.repository.url.full", repo.url()),
        s("vcs.ref.head.name", run.branch.clone()),
        s("vcs.ref.head.revision", run.sha.clone()),
    ]);
    let mut spans = vec![json!({
        "traceId": run.trace_id,
        "spanId": run.span_id,
        "name": format!("RUN {}", wf.name),
        "kind": 2,
        "startTimeUnixNano": epoch_ns(run.created),
        "endTimeUnixNano": epoch_ns(run.completed),
        "attributes": [
            s("cicd.pipeline.name", wf.name.clone()),
            s("cicd.pipeline.run.id", run.id.to_string()),
            s("cicd.pipeline.action.name", "RUN"),
            s("cicd.pipeline.result", result(run.conclusion)),
        ],
        "status": status(run.conclusion),
    })];
    for job in jobs {
        let task_url = match repo.provider {
            Provider::GitHub => format!("{run_url}/job/{}", job.id),
            Provider::GitLab => format!("{}/-/jobs/{}", repo.url(), job.id),
        };
        let mut attributes = vec![
            s("cicd.pipeline.task.name", job.name.clone()),
            s("cicd.pipeline.task.run.id", job.id.to_string()),
            s("cicd.pipeline.task.run.result", result(job.conclusion)),
            s("cicd.pipeline.task.run.url.full", task_url),
        ];
        if let Some(r) = &job.runner {
            attributes.push(s("cicd.worker.id", r.id.to_string()));
            attributes.push(s("cicd.worker.name", r.name.clone()));
            attributes.push(d("process.cpu.time", job.cpu_s));
            attributes.push(i("process.memory.usage", job.mem_bytes as i64));
            attributes.push(i("network.io.transmit", job.egress_bytes as i64));
        }
        spans.push(json!({
            "traceId": run.trace_id,
            "spanId": job.span_id,
            "parentSpanId": run.span_id,
            "name": job.name,
            "kind": 1,
            "startTimeUnixNano": epoch_ns(job.started),
            "endTimeUnixNano": epoch_ns(job.completed),
            "attributes": attributes,
            "status": status(job.conclusion),
        }));
        for call in &job.clients {
            let mut attributes = vec![
                s("server.address", call.host.clone()),
                i("server.port", 443),
                s("http.request.method", call.method),
                i("http.response.status_code", i64::from(call.status)),
            ];
            if call.method != "GET" {
                attributes.push(i("http.request.body.size", call.bytes_out as i64));
            }
            spans.push(json!({
                "traceId": run.trace_id,
                "spanId": call.span_id,
                "parentSpanId": job.span_id,
                "name": call.method,
                "kind": 3,
                "startTimeUnixNano": epoch_ns(call.start),
                "endTimeUnixNano": epoch_ns(call.end),
                "attributes": attributes,
                "status": if call.status >= 400 { json!({"code": 2}) } else { json!({"code": 0}) },
            }));
        }
    }
    let count = spans.len() as u64;
    let request = json!({
        "resourceSpans": [{
            "resource": {"attributes": resource},
            "scopeSpans": [{
                "scope": {"name": scope.0, "version": scope.1},
                "spans": spans,
            }],
        }],
    });
    ctx.sink.line_of(FILE, run.completed, &request, count);
    count
}
