//! Argo CD `Application` resources (YAML or JSON; one object, a `List` or
//! `ApplicationList`, or a multi-document stream): the current sync
//! operation and every `status.history` entry become deployment events.
//! Specification: the Application CRD, <https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/>
//! and `ApplicationStatus` in <https://github.com/argoproj/argo-cd/blob/master/pkg/apis/application/v1alpha1/types.go>.
//!
//! `raw` holds the Application trimmed to the part the event describes: the
//! operation event keeps everything but `status.history`, a history event
//! keeps metadata, spec and only its own history entry, so one large
//! Application is not copied whole into every row.

use pipewatch_schema::{ActorKind, Category, Event};
use serde_json::Value;

use super::util::{Lookup, org_of, str_at, text_at, time_at};
use super::{DecodeOutput, Decoder, Format, Input, Position, framing};
use crate::dead_letter::DeadLetterReason;

/// Decoder for Argo CD Applications.
#[derive(Debug)]
pub(crate) struct ArgoCd;

pub(crate) static DECODER: ArgoCd = ArgoCd;

const FORMAT: Format = Format::ArgoCd;

/// The actor recorded for syncs started by the automated sync policy.
const AUTOMATED_ACTOR: &str = "argocd-automated";

impl Decoder for ArgoCd {
    fn sniff(&self, record: &Value) -> bool {
        if is_application(record) {
            return true;
        }
        record
            .get("items")
            .and_then(Value::as_array)
            .and_then(|items| items.first())
            .is_some_and(is_application)
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::records(input)) {
            let value = framed.value;
            match value.get("items").and_then(Value::as_array) {
                Some(items) if !is_application(&value) => {
                    for (i, item) in items.iter().enumerate() {
                        let bytes = serde_json::to_vec(item).unwrap_or_default();
                        decode_application(input, out, item, Position::Record(i), &bytes);
                    }
                }
                _ => decode_application(input, out, &value, framed.position, framed.bytes),
            }
        }
    }
}

/// An Argo CD Application: by its type, or (REST API lists omit the type on
/// items) by the `spec.destination` and `spec.project` every Application has.
fn is_application(value: &Value) -> bool {
    match (str_at(value, "/apiVersion"), str_at(value, "/kind")) {
        (Some(api), Some("Application")) => api.starts_with("argoproj.io/"),
        (None, None) => {
            value.at("/spec/destination").is_some() && value.at("/spec/project").is_some()
        }
        _ => false,
    }
}

fn decode_application(
    input: &Input<'_>,
    out: &mut DecodeOutput,
    app: &Value,
    position: Position,
    bytes: &[u8],
) {
    let reject = |out: &mut DecodeOutput, reason, detail: String| {
        out.reject(FORMAT, input, position, reason, detail, bytes);
    };
    if !is_application(app) {
        let kind = str_at(app, "/kind").unwrap_or("no kind");
        return reject(
            out,
            DeadLetterReason::UnknownShape,
            format!("record is {kind}, not an argoproj.io Application"),
        );
    }
    let Some(name) = str_at(app, "/metadata/name") else {
        return reject(
            out,
            DeadLetterReason::MissingField,
            "Application has no metadata.name".into(),
        );
    };
    // Manifests straight from Git carry no uid; namespace/name is unique in a cluster.
    let id = str_at(app, "/metadata/uid").map_or_else(
        || {
            format!(
                "{}/{name}",
                str_at(app, "/metadata/namespace").unwrap_or("default")
            )
        },
        str::to_owned,
    );
    let context = AppContext { app, name, id: &id };

    let operation = app.at("/status/operationState");
    let history = app.at("/status/history").and_then(Value::as_array);
    if operation.is_none() && history.is_none_or(Vec::is_empty) {
        return reject(
            out,
            DeadLetterReason::MissingField,
            format!(
                "Application {name} has no status.operationState or status.history (never synced)"
            ),
        );
    }
    let mut produced = Vec::new();
    let mut rejected = Vec::new();
    if let Some(state) = operation {
        match context.operation_event(state) {
            Ok(event) => produced.push(event),
            Err(e) => rejected.push(e),
        }
    }
    for (i, entry) in history.into_iter().flatten().enumerate() {
        match context.history_event(entry) {
            Ok(event) => produced.push(event),
            Err((reason, detail)) => {
                rejected.push((reason, format!("status.history[{i}]: {detail}")))
            }
        }
    }
    out.events.extend(produced);
    for (reason, detail) in rejected {
        reject(out, reason, detail);
    }
}

type Rejection = (DeadLetterReason, String);

struct AppContext<'a> {
    app: &'a Value,
    name: &'a str,
    id: &'a str,
}

impl AppContext<'_> {
    fn operation_event(&self, state: &Value) -> Result<Event, Rejection> {
        let started = time_at(state, "/startedAt").ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                format!(
                    "Application {} status.operationState has no startedAt timestamp",
                    self.name
                ),
            )
        })?;
        let finished = time_at(state, "/finishedAt");
        let started_text = str_at(state, "/startedAt").unwrap_or_default();
        let mut raw = self.app.clone();
        if let Some(status) = raw.get_mut("status").and_then(Value::as_object_mut) {
            status.remove("history");
        }
        let mut event = Event::new(
            FORMAT.name(),
            format!("{}:operation:{started_text}", self.id),
            finished.unwrap_or(started),
            Category::Deployment,
            "argocd.sync",
            raw,
        );
        event.outcome = phase_outcome(str_at(state, "/phase")).to_owned();
        event.message = str_at(state, "/message").map(str::to_owned);
        event.start_time = Some(started);
        event.end_time = finished;
        event.fill_duration();
        let revision = first_text(state, &["/syncResult/revision", "/operation/sync/revision"])
            .or_else(|| {
                first_text(
                    state,
                    &["/syncResult/revisions/0", "/operation/sync/revisions/0"],
                )
            });
        let source = ["/syncResult/source", "/syncResult/sources/0"]
            .iter()
            .find_map(|p| state.at(p).filter(|s| s.is_object()))
            .or_else(|| self.spec_source());
        self.fill(
            &mut event,
            revision,
            source,
            state.at("/operation/initiatedBy"),
        );
        Ok(event)
    }

    fn history_event(&self, entry: &Value) -> Result<Event, Rejection> {
        let id = text_at(entry, "/id").ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                "history entry has no id".to_owned(),
            )
        })?;
        let deployed = time_at(entry, "/deployedAt");
        let started = time_at(entry, "/deployStartedAt");
        let time = deployed.or(started).ok_or_else(|| {
            (
                DeadLetterReason::MissingField,
                format!("history entry {id} has no deployedAt or deployStartedAt"),
            )
        })?;
        let mut raw = self.app.clone();
        if let Some(object) = raw.as_object_mut() {
            object.insert("status".into(), serde_json::json!({ "history": [entry] }));
        }
        let mut event = Event::new(
            FORMAT.name(),
            format!("{}:history:{id}", self.id),
            time,
            Category::Deployment,
            "argocd.deployed",
            raw,
        );
        // Argo CD appends to the history only when a sync succeeds.
        event.outcome = "success".to_owned();
        event.start_time = started;
        event.end_time = deployed;
        event.fill_duration();
        let revision = first_text(entry, &["/revision", "/revisions/0"]);
        let source = ["/source", "/sources/0"]
            .iter()
            .find_map(|p| entry.at(p).filter(|s| s.is_object()));
        self.fill(&mut event, revision, source, entry.get("initiatedBy"));
        Ok(event)
    }

    fn spec_source(&self) -> Option<&Value> {
        ["/spec/source", "/spec/sources/0"]
            .iter()
            .find_map(|p| self.app.at(p).filter(|s| s.is_object()))
    }

    /// Columns shared by operation and history events.
    fn fill(
        &self,
        event: &mut Event,
        revision: Option<String>,
        source: Option<&Value>,
        initiated_by: Option<&Value>,
    ) {
        let namespace = str_at(self.app, "/spec/destination/namespace");
        event.target_type = Some("application".to_owned());
        event.target_name = Some(self.name.to_owned());
        event.target_namespace = namespace.map(str::to_owned);
        event.deployment_environment_name = namespace
            .or_else(|| str_at(self.app, "/spec/destination/name"))
            .or_else(|| str_at(self.app, "/spec/destination/server"))
            .map(str::to_owned);
        event.vcs_ref_head_revision = revision.clone();
        event.correlation_id = revision;
        if let Some(source) = source {
            event.vcs_ref_head_name = str_at(source, "/targetRevision").map(str::to_owned);
            let url = str_at(source, "/repoURL");
            event.url_full = url.map(str::to_owned);
            // A Helm chart repository is not a source repository.
            if source.get("chart").is_none() {
                event.repo = url.and_then(repo_of);
                event.org = event.repo.as_deref().and_then(org_of);
            }
        }
        if let Some(by) = initiated_by {
            if by.get("automated").and_then(Value::as_bool) == Some(true) {
                event.actor = Some(AUTOMATED_ACTOR.to_owned());
                event.actor_kind = Some(ActorKind::Bot);
            } else if let Some(user) = str_at(by, "/username") {
                event.actor = Some(user.to_owned());
                event.actor_kind = Some(ActorKind::User);
            }
        }
    }
}

fn first_text(value: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| text_at(value, p))
}

fn phase_outcome(phase: Option<&str>) -> &'static str {
    match phase {
        Some("Succeeded") => "success",
        Some("Failed" | "Error") => "failure",
        Some("Running") => "in_progress",
        // Terminating is a sync being aborted on request.
        Some("Terminating") => "cancelled",
        _ => "unknown",
    }
}

/// `owner/name` (or `group/sub/name`) from a Git URL in HTTPS, SSH or scp form.
fn repo_of(url: &str) -> Option<String> {
    let rest = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git") {
            return None;
        }
        rest.split_once('/').map(|(_, path)| path)?
    } else {
        // scp-like `git@host:owner/name.git`
        url.split_once(':').map(|(_, path)| path)?
    };
    let path = rest.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    (path.contains('/') && !path.is_empty()).then(|| path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: Application
metadata: {name: web, namespace: argocd, uid: u-1}
spec:
  project: default
  destination: {server: "https://kubernetes.default.svc", namespace: prod}
  source: {repoURL: "git@github.com:acme/deploy.git", targetRevision: main, path: web}
status:
  history:
  - {id: 3, revision: abc, deployStartedAt: "2024-01-01T00:00:00Z", deployedAt: "2024-01-01T00:00:05Z",
     source: {repoURL: "https://github.com/acme/deploy.git", targetRevision: main}}
  - {revision: def, deployedAt: "2024-01-02T00:00:00Z"}
  operationState:
    phase: Failed
    message: one or more objects failed to apply
    startedAt: "2024-01-03T00:00:00Z"
    finishedAt: "2024-01-03T00:01:00Z"
    operation: {initiatedBy: {automated: true}, sync: {revision: fff}}
"#;

    fn decode(text: &str) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", text.as_bytes()), &mut out);
        out
    }

    #[test]
    fn operation_and_history_become_deployments_and_a_bad_entry_is_dead_lettered() {
        let out = decode(APP);
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        assert!(out.dead_letters[0].detail.contains("status.history[1]"));

        let op = &out.events[0];
        assert_eq!(op.source_event_id, "u-1:operation:2024-01-03T00:00:00Z");
        assert_eq!(op.outcome, "failure");
        assert_eq!(op.actor.as_deref(), Some(AUTOMATED_ACTOR));
        assert_eq!(op.actor_kind, Some(ActorKind::Bot));
        assert_eq!(op.duration_ms, Some(60_000));
        assert_eq!(op.vcs_ref_head_revision.as_deref(), Some("fff"));
        assert_eq!(op.repo.as_deref(), Some("acme/deploy"));
        assert_eq!(op.deployment_environment_name.as_deref(), Some("prod"));

        let history = &out.events[1];
        assert_eq!(history.source_event_id, "u-1:history:3");
        assert_eq!(history.outcome, "success");
        assert_eq!(history.actor, None);
        assert_eq!(history.vcs_ref_head_name.as_deref(), Some("main"));
        assert_eq!(
            history.raw.to_value().at("/status/history/0/id"),
            Some(&serde_json::json!(3))
        );
    }

    #[test]
    fn detects_applications_and_lists_but_not_other_argo_kinds() {
        let list: Value = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application"}]});
        assert!(DECODER.sniff(&list));
        let api_list = serde_json::json!({"metadata": {}, "items": [
            {"metadata": {"name": "a"}, "spec": {"project": "p", "destination": {}}}]});
        assert!(DECODER.sniff(&api_list));
        let rollout = serde_json::json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout"});
        assert!(!DECODER.sniff(&rollout));
    }

    #[test]
    fn unsynced_application_and_foreign_items_are_dead_lettered() {
        let out = decode(
            "kind: List\napiVersion: v1\nitems:\n- {kind: ConfigMap, apiVersion: v1}\n- {apiVersion: argoproj.io/v1alpha1, kind: Application, metadata: {name: x}, spec: {project: p, destination: {}}}\n",
        );
        assert_eq!(out.events.len(), 0);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
        assert_eq!(out.dead_letters[0].position, Position::Record(0));
        assert_eq!(out.dead_letters[1].reason, DeadLetterReason::MissingField);
        assert_eq!(out.dead_letters[1].position, Position::Record(1));
    }

    #[test]
    fn phases_and_repository_urls_map() {
        assert_eq!(phase_outcome(Some("Running")), "in_progress");
        assert_eq!(phase_outcome(Some("Terminating")), "cancelled");
        assert_eq!(phase_outcome(Some("Error")), "failure");
        assert_eq!(
            repo_of("https://gitlab.com/g/sub/app.git").as_deref(),
            Some("g/sub/app")
        );
        assert_eq!(repo_of("oci://registry/charts"), None);
    }
}
