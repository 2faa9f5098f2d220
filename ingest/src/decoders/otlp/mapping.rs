//! Which spans are CI/CD facts and how their attributes become columns.
//! Emitters disagree on names (semantic conventions, the Collector's
//! githubreceiver, the Jenkins plugin, otel-cicd-action), so every accepted
//! spelling lives in [`ALIASES`] and nowhere else.

use std::rc::Rc;
use std::sync::LazyLock;

// aHash: ids and names are hashed once per span; still keyed per process.
use ahash::{AHashMap as HashMap, AHashSet as HashSet};
use chrono::{DateTime, Utc};

use pipewatch_schema::{ActorKind, Category, Event, RunnerHosting};
use serde_json::Value;

use super::span::{Attrs, Kind, SpanRecord, StatusCode};
use crate::decoders::util::outcome_word;

/// A normalized meaning an attribute can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    PipelineName,
    /// Jenkins' job full name; with the run number it identifies a run.
    PipelineId,
    RunId,
    RunNumber,
    RunAttempt,
    RunUrl,
    RunResult,
    RunState,
    TaskName,
    TaskRunId,
    TaskRunUrl,
    TaskResult,
    Trigger,
    Actor,
    /// `owner/name` already.
    RepoFull,
    RepoOwner,
    RepoName,
    RepoUrl,
    RefHead,
    Revision,
    WorkerId,
    WorkerName,
    WorkerGroup,
    WorkerLabels,
    /// Nanoseconds a job waited for a runner.
    QueueDuration,
    QueuedAt,
    StartedAt,
    CpuSeconds,
    MemoryBytes,
    TransmitBytes,
    RequestBodyBytes,
    ServerAddress,
    UrlFull,
    HttpStatus,
    HttpMethod,
    Annotation,
}

use Field as F;

/// Attribute name -> meaning. Earlier rows win when several are present;
/// each is looked up on the span first, then on its resource.
pub(super) const ALIASES: &[(&str, Field)] = &[
    // Semantic conventions (cicd.*, vcs.*), and otel-cicd-action which follows them.
    ("cicd.pipeline.name", F::PipelineName),
    ("cicd.pipeline.run.id", F::RunId),
    ("cicd.pipeline.run.url.full", F::RunUrl),
    ("cicd.pipeline.result", F::RunResult),
    ("cicd.pipeline.run.state", F::RunState),
    ("cicd.pipeline.task.name", F::TaskName),
    ("cicd.pipeline.task.run.id", F::TaskRunId),
    ("cicd.pipeline.task.run.url.full", F::TaskRunUrl),
    ("cicd.pipeline.task.run.result", F::TaskResult),
    ("cicd.worker.id", F::WorkerId),
    ("cicd.worker.name", F::WorkerName),
    ("vcs.repository.url.full", F::RepoUrl),
    ("vcs.repository.name", F::RepoName),
    ("vcs.owner.name", F::RepoOwner),
    ("vcs.ref.head.name", F::RefHead),
    ("vcs.ref.head.revision", F::Revision),
    // Collector githubreceiver (pre-semconv names it still emits).
    ("cicd.pipeline.run.status", F::RunResult),
    ("cicd.pipeline.run.task.status", F::TaskResult),
    ("cicd.pipeline.run.queue.duration", F::QueueDuration),
    ("github.workflow.trigger.actor.username", F::Actor),
    ("cicd.pipeline.run.sender.login", F::Actor),
    ("cicd.pipeline.task.run.sender.login", F::Actor),
    ("github.workflow.run.attempt", F::RunAttempt),
    ("cicd.pipeline.worker.id", F::WorkerId),
    ("cicd.pipeline.worker.name", F::WorkerName),
    ("cicd.pipeline.worker.group.name", F::WorkerGroup),
    ("cicd.pipeline.worker.labels", F::WorkerLabels),
    ("vcs.repository.owner", F::RepoOwner),
    ("vcs.ref.head", F::RefHead),
    // otel-cicd-action's `github.*` copies of the REST objects.
    ("github.job.id", F::TaskRunId),
    ("github.job.name", F::TaskName),
    ("github.job.html_url", F::TaskRunUrl),
    ("github.job.conclusion", F::TaskResult),
    ("github.job.run_id", F::RunId),
    ("github.job.run_attempt", F::RunAttempt),
    ("github.job.workflow_name", F::PipelineName),
    ("github.job.head_branch", F::RefHead),
    ("github.job.head_sha", F::Revision),
    ("github.job.runner_id", F::WorkerId),
    ("github.job.runner_name", F::WorkerName),
    ("github.job.runner_group_name", F::WorkerGroup),
    ("github.job.labels", F::WorkerLabels),
    ("github.job.created_at", F::QueuedAt),
    ("github.job.started_at", F::StartedAt),
    ("github.job.annotations.0.message", F::Annotation),
    ("github.run_id", F::RunId),
    ("github.workflow", F::PipelineName),
    ("github.run_attempt", F::RunAttempt),
    ("github.html_url", F::RunUrl),
    ("github.conclusion", F::RunResult),
    ("github.event", F::Trigger),
    ("github.head_branch", F::RefHead),
    ("github.head_sha", F::Revision),
    ("github.repository", F::RepoFull),
    // otel-cicd-action names the service namespace after the repository.
    ("service.namespace", F::RepoFull),
    // Jenkins OpenTelemetry plugin.
    ("ci.pipeline.id", F::PipelineId),
    ("ci.pipeline.name", F::PipelineName),
    ("ci.pipeline.run.number", F::RunNumber),
    ("ci.pipeline.run.result", F::RunResult),
    ("ci.pipeline.run.url", F::RunUrl),
    ("ci.pipeline.run.user", F::Actor),
    ("ci.pipeline.agent.id", F::WorkerId),
    ("ci.pipeline.agent.name", F::WorkerName),
    ("git.repository", F::RepoUrl),
    ("git.branch", F::RefHead),
    // Resource usage and network (semantic conventions).
    ("process.cpu.time", F::CpuSeconds),
    ("process.memory.usage", F::MemoryBytes),
    ("system.memory.usage", F::MemoryBytes),
    ("network.io.transmit", F::TransmitBytes),
    ("http.request.body.size", F::RequestBodyBytes),
    ("server.address", F::ServerAddress),
    ("url.full", F::UrlFull),
    ("http.url", F::UrlFull),
    ("http.response.status_code", F::HttpStatus),
    ("http.status_code", F::HttpStatus),
    ("http.request.method", F::HttpMethod),
    ("http.method", F::HttpMethod),
];

/// Span attribute prefixes of per-step spans: kept out of the lake.
const STEP_PREFIXES: &[&str] = &["github.job.step.", "jenkins.pipeline.step."];

/// What a span is to the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Run,
    Job,
    /// A step inside a job: skipped, counted.
    Step,
    /// The githubreceiver's queue span: feeds the job's `queue_ms`.
    Queue,
    /// An outgoing call; stored only inside a CI trace.
    Egress,
    Other,
}

/// Variants of [`Field`]: the length of a [`Resolved`] table.
const FIELD_COUNT: usize = Field::Annotation as usize + 1;

/// Attribute name -> the meanings it carries, with the row of each in
/// [`ALIASES`] (lower rows lose).
static ALIAS_INDEX: LazyLock<HashMap<&'static str, Vec<(Field, usize)>>> = LazyLock::new(|| {
    let mut index: HashMap<&'static str, Vec<(Field, usize)>> = HashMap::new();
    for (rank, (key, field)) in ALIASES.iter().enumerate() {
        index.entry(*key).or_default().push((*field, rank));
    }
    index
});

/// The value each meaning takes in one attribute map: the non-null value
/// under its highest-ranked alias. Built in one pass over the map's keys,
/// so a span's thirty-odd reads cost a lookup each instead of a search of
/// the alias table.
#[derive(Clone, Copy)]
struct Resolved<'a> {
    best: [Option<(usize, &'a Value)>; FIELD_COUNT],
}

impl<'a> Resolved<'a> {
    fn of(attrs: &'a Attrs) -> Self {
        let mut best = [None; FIELD_COUNT];
        for (key, value) in attrs {
            if value.is_null() {
                continue;
            }
            let Some(meanings) = ALIAS_INDEX.get(key.as_str()) else {
                continue;
            };
            for &(field, rank) in meanings {
                let slot = &mut best[field as usize];
                if slot.is_none_or(|(held, _)| rank < held) {
                    *slot = Some((rank, value));
                }
            }
        }
        Resolved { best }
    }

    fn get(&self, field: Field) -> Option<(usize, &'a Value)> {
        self.best[field as usize]
    }

    fn has(&self, field: Field) -> bool {
        self.get(field).is_some()
    }

    fn has_any(&self, fields: &[Field]) -> bool {
        fields.iter().any(|f| self.has(*f))
    }
}

const RUN_MARKERS: &[Field] = &[F::RunId, F::PipelineId, F::PipelineName];
const TASK_MARKERS: &[Field] = &[F::TaskRunId, F::TaskName];

/// Whether a span carries CI/CD attributes itself or through its resource.
/// Spans for which this is false are dropped, except outgoing calls made
/// inside a CI trace, which become egress rows.
pub(crate) fn is_cicd_span(span_attrs: &Attrs, resource_attrs: &Attrs) -> bool {
    [span_attrs, resource_attrs].into_iter().any(|attrs| {
        let resolved = Resolved::of(attrs);
        resolved.has_any(RUN_MARKERS)
            || resolved.has_any(TASK_MARKERS)
            || resolved.has(F::QueueDuration)
            || is_step_attrs(attrs)
    })
}

/// Whether the map holds an attribute only per-step spans carry.
fn is_step_attrs(attrs: &Attrs) -> bool {
    attrs
        .keys()
        .any(|k| STEP_PREFIXES.iter().any(|p| k.starts_with(p)))
}

/// Classifies one span. `top_of_resource` says whether its parent lies
/// outside its own resource: receivers put one job per resource, with the
/// job as the topmost span and steps below it.
fn classify(span: &SpanRecord, view: &View<'_>, top_of_resource: bool) -> Role {
    if is_step_attrs(&span.attrs) {
        return Role::Step;
    }
    let (own, resource) = (&view.own, &view.resource);
    if own.has(F::QueueDuration) {
        return Role::Queue;
    }
    if own.has(F::TaskRunId) {
        return Role::Job;
    }
    if own.has_any(RUN_MARKERS) {
        return Role::Run;
    }
    if own.has(F::TaskName) {
        return if resource.has(F::TaskRunId) {
            Role::Step
        } else {
            Role::Job
        };
    }
    if span.kind == Kind::Client && (own.has(F::ServerAddress) || own.has(F::UrlFull)) {
        return Role::Egress;
    }
    let resource_role = if resource.has(F::TaskRunId) {
        Role::Job
    } else if resource.has_any(RUN_MARKERS) {
        Role::Run
    } else {
        return Role::Other;
    };
    if top_of_resource {
        resource_role
    } else {
        Role::Step
    }
}

/// Roles for every span of an input, using the structure between spans:
/// the topmost span of a resource, runs nested in runs (Jenkins phases), and
/// egress only inside traces that hold CI spans. `views` are the spans'
/// [`View`]s, in the same order.
pub(super) fn roles(spans: &[SpanRecord], views: &[View<'_>]) -> Vec<Role> {
    let mut group_ids: HashMap<usize, HashSet<&str>> = HashMap::new();
    for span in spans {
        group_ids
            .entry(span.resource_group)
            .or_default()
            .insert(span.span_id.as_str());
    }
    let mut roles: Vec<Role> = spans
        .iter()
        .zip(views)
        .map(|(span, view)| {
            let top = span.parent_span_id.as_deref().is_none_or(|parent| {
                !group_ids
                    .get(&span.resource_group)
                    .is_some_and(|ids| ids.contains(parent))
            });
            classify(span, view, top)
        })
        .collect();

    let index = SpanIndex::new(spans);
    let nested: Vec<usize> = (0..spans.len())
        .filter(|&i| {
            roles.get(i) == Some(&Role::Run)
                && index
                    .ancestors(spans, i)
                    .any(|a| roles.get(a) == Some(&Role::Run))
        })
        .collect();
    for i in nested {
        if let Some(role) = roles.get_mut(i) {
            *role = Role::Step;
        }
    }
    let ci_traces: HashSet<&str> = spans
        .iter()
        .zip(&roles)
        .filter(|(_, r)| matches!(r, Role::Run | Role::Job | Role::Step | Role::Queue))
        .map(|(s, _)| s.trace_id.as_str())
        .collect();
    for (span, role) in spans.iter().zip(roles.iter_mut()) {
        if *role == Role::Egress
            && !ci_traces.contains(span.trace_id.as_str())
            && !is_cicd_span(&Attrs::new(), &span.resource)
        {
            *role = Role::Other;
        }
    }
    roles
}

/// Span lookup by (trace, span id).
pub(super) struct SpanIndex<'a> {
    by_id: HashMap<(&'a str, &'a str), usize>,
}

impl<'a> SpanIndex<'a> {
    pub(super) fn new(spans: &'a [SpanRecord]) -> Self {
        let by_id = spans
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.trace_id.as_str(), s.span_id.as_str()), i))
            .collect();
        SpanIndex { by_id }
    }

    /// Indexes of the span's ancestors present in the input, nearest first.
    pub(super) fn ancestors<'s>(
        &'s self,
        spans: &'s [SpanRecord],
        start: usize,
    ) -> impl Iterator<Item = usize> + 's {
        let mut seen = HashSet::new();
        seen.insert(start);
        let mut current = start;
        std::iter::from_fn(move || {
            let span = spans.get(current)?;
            let parent = span.parent_span_id.as_deref()?;
            let next = *self.by_id.get(&(span.trace_id.as_str(), parent))?;
            if !seen.insert(next) {
                return None;
            }
            current = next;
            Some(next)
        })
    }
}

/// Typed reads of a span's attributes through the alias table.
pub(super) struct View<'a> {
    own: Resolved<'a>,
    resource: Resolved<'a>,
}

impl<'a> View<'a> {
    /// Views of every span, in order. Spans of one request share their
    /// resource, which is resolved once for all of them.
    pub(super) fn of_all(spans: &'a [SpanRecord]) -> Vec<View<'a>> {
        let mut last: Option<(&'a Rc<Attrs>, Resolved<'a>)> = None;
        spans
            .iter()
            .map(|span| {
                let resource = match last {
                    Some((attrs, resolved)) if Rc::ptr_eq(attrs, &span.resource) => resolved,
                    _ => {
                        let resolved = Resolved::of(&span.resource);
                        last = Some((&span.resource, resolved));
                        resolved
                    }
                };
                View {
                    own: Resolved::of(&span.attrs),
                    resource,
                }
            })
            .collect()
    }

    /// The value under the highest-ranked alias present; at equal rank
    /// the span's own attribute wins over its resource's.
    fn value(&self, field: Field) -> Option<&'a Value> {
        match (self.own.get(field), self.resource.get(field)) {
            (Some((own_rank, own)), Some((resource_rank, resource))) => {
                Some(if own_rank <= resource_rank {
                    own
                } else {
                    resource
                })
            }
            (own, resource) => own.or(resource).map(|(_, value)| value),
        }
    }

    pub(super) fn text(&self, field: Field) -> Option<String> {
        match self.value(field)? {
            Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Array(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect();
                Some(parts.join(",")).filter(|s| !s.is_empty())
            }
            _ => None,
        }
    }

    pub(super) fn f64(&self, field: Field) -> Option<f64> {
        match self.value(field)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    pub(super) fn i64(&self, field: Field) -> Option<i64> {
        self.f64(field).map(|f| f as i64)
    }

    pub(super) fn list(&self, field: Field) -> Vec<String> {
        match self.value(field) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str())
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            Some(Value::String(s)) => s
                .split(',')
                .map(|p| p.trim().to_owned())
                .filter(|p| !p.is_empty())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the attribute is the span's own rather than its resource's.
    fn own(&self, field: Field) -> bool {
        self.own.has(field)
    }
}

/// Pipeline result words of the semantic conventions and Jenkins, then the
/// shared vocabulary.
fn result_outcome(native: &str) -> &'static str {
    match native.to_ascii_lowercase().as_str() {
        "timeout" => "failure",
        "cancellation" => "cancelled",
        "skip" | "not_built" => "skipped",
        "unstable" => "warning",
        other => outcome_word(other),
    }
}

fn status_outcome(span: &SpanRecord) -> &'static str {
    match span.status {
        StatusCode::Ok => "success",
        StatusCode::Error => "failure",
        StatusCode::Unset => "unknown",
    }
}

/// `owner/name` from a repository or CI URL: GitHub and GitLab paths before
/// `/actions/` or `/-/`, GitHub API `repos/` paths, and `git@host:path`.
pub(super) fn repo_from_url(url: &str) -> Option<String> {
    let rest = url
        .split_once("://")
        .map_or_else(|| url.split_once('@').map_or(url, |(_, r)| r), |(_, r)| r);
    let (host, path) = rest.split_once(['/', ':'])?;
    let host = host.rsplit('@').next().unwrap_or(host);
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.strip_prefix("repos/").unwrap_or(path);
    let path = path.split("/-/").next().unwrap_or(path);
    let path = path.split("/actions/").next().unwrap_or(path);
    let path = path.trim_matches('/').trim_end_matches(".git");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let github = host.ends_with("github.com");
    match segments.as_slice() {
        [owner, name, ..] if github => Some(format!("{owner}/{name}")),
        [_, _, ..] => Some(segments.join("/")),
        _ => None,
    }
}

/// The run id in a GitHub job page URL (`…/actions/runs/<run>/job/<job>`).
fn github_run_id(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("/actions/runs/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
}

fn repo_of(view: &View<'_>) -> Option<String> {
    if let Some(full) = view.text(F::RepoFull).filter(|r| r.contains('/')) {
        return Some(full);
    }
    let name = view.text(F::RepoName);
    if let (Some(owner), Some(name)) = (view.text(F::RepoOwner), name.as_deref())
        && !name.contains('/')
    {
        return Some(format!("{owner}/{name}"));
    }
    if let Some(repo) = view.text(F::RepoUrl).as_deref().and_then(repo_from_url) {
        return Some(repo);
    }
    // CI page URLs name the repository only on GitHub and GitLab.
    [F::RunUrl, F::TaskRunUrl]
        .into_iter()
        .filter_map(|f| view.text(f))
        .filter(|u| u.contains("/actions/runs/") || u.contains("/-/"))
        .find_map(|u| repo_from_url(&u))
        .or(name)
}

fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split_inclusive(']').next()?
    } else {
        host.split(':').next()?
    };
    Some(host.to_owned()).filter(|h| !h.is_empty())
}

/// Runner hosting from the worker's group, name and labels.
fn hosting(view: &View<'_>) -> (Option<RunnerHosting>, Option<bool>) {
    let labels = view.list(F::WorkerLabels);
    if labels.iter().any(|l| l.eq_ignore_ascii_case("self-hosted")) {
        return (Some(RunnerHosting::SelfHosted), None);
    }
    // GitHub puts its hosted VMs, named "GitHub Actions N", in the group "GitHub Actions".
    let group = view.text(F::WorkerGroup);
    let name = view.text(F::WorkerName);
    if group.as_deref() == Some("GitHub Actions")
        || name
            .as_deref()
            .is_some_and(|n| n.starts_with("GitHub Actions "))
    {
        return (Some(RunnerHosting::Hosted), Some(true));
    }
    (None, None)
}

fn actor_kind(actor: &str) -> ActorKind {
    if actor.ends_with("[bot]") || actor.eq_ignore_ascii_case("SYSTEM") {
        ActorKind::Bot
    } else {
        ActorKind::User
    }
}

/// Builds the row for a run, job or egress span at its start time; `None`
/// for other roles and for spans without times.
pub(super) fn event(span: &SpanRecord, view: &View<'_>, role: Role, source: &str) -> Option<Event> {
    event_at(span, view, role, source, span.start.or(span.end)?)
}

/// Builds the row for a run, job or egress span; `None` for other roles.
pub(super) fn event_at(
    span: &SpanRecord,
    view: &View<'_>,
    role: Role,
    source: &str,
    event_time: DateTime<Utc>,
) -> Option<Event> {
    let (category, action) = match role {
        Role::Run => (Category::PipelineRun, "cicd.pipeline.run"),
        Role::Job => (Category::PipelineJob, "cicd.pipeline.task.run"),
        Role::Egress => (Category::Egress, "egress.http"),
        Role::Step | Role::Queue | Role::Other => return None,
    };
    let mut e = Event::new(
        source,
        format!("{}:{}", span.trace_id, span.span_id),
        event_time,
        category,
        action,
        span.raw.to_raw(),
    );
    e.trace_id = Some(span.trace_id.clone());
    e.span_id = Some(span.span_id.clone());
    e.parent_span_id = span.parent_span_id.clone();
    e.start_time = span.start;
    e.end_time = span.end;
    e.duration_ms = span.duration_ms;
    e.fill_duration();

    e.repo = repo_of(view);
    e.org = e.repo.as_deref().and_then(crate::decoders::util::org_of);
    e.vcs_ref_head_name = view.text(F::RefHead);
    e.vcs_ref_head_revision = view.text(F::Revision);
    e.actor = view.text(F::Actor);
    e.actor_kind = e.actor.as_deref().map(actor_kind);
    e.cicd_pipeline_trigger = view.text(F::Trigger);
    e.cicd_pipeline_run_attempt = view.i64(F::RunAttempt);
    e.cicd_pipeline_run_id = view.text(F::RunId).or_else(|| {
        let number = view.text(F::RunNumber)?;
        Some(match view.text(F::PipelineId) {
            Some(id) => format!("{id}#{number}"),
            None => number,
        })
    });
    e.cicd_pipeline_name = view
        .text(F::PipelineName)
        .or_else(|| view.text(F::PipelineId));

    match role {
        Role::Run => {
            e.url_full = view.text(F::RunUrl);
            e.outcome = match view.text(F::RunResult) {
                Some(result) => result_outcome(&result),
                None => match view.text(F::RunState).as_deref() {
                    Some("executing") => "in_progress",
                    Some("pending") => "pending",
                    _ => status_outcome(span),
                },
            }
            .to_owned();
            e.message = span
                .status_message
                .clone()
                .filter(|m| outcome_word(m) == "unknown" && result_outcome(m) == "unknown");
            if e.cicd_pipeline_name.is_none() && !span.name.is_empty() {
                e.cicd_pipeline_name = Some(span.name.clone());
            }
        }
        Role::Job => {
            e.cicd_pipeline_task_name = view
                .text(F::TaskName)
                .filter(|_| view.own(F::TaskName))
                .or_else(|| Some(span.name.clone()).filter(|n| !n.is_empty()))
                .or_else(|| view.text(F::TaskName));
            e.cicd_pipeline_task_run_id = view.text(F::TaskRunId);
            e.url_full = view.text(F::TaskRunUrl);
            // The githubreceiver names job resources after the job, not the workflow.
            if e.cicd_pipeline_name == e.cicd_pipeline_task_name {
                e.cicd_pipeline_name = None;
            }
            if e.cicd_pipeline_run_id.is_none() {
                e.cicd_pipeline_run_id = e.url_full.as_deref().and_then(github_run_id);
            }
            e.outcome = view
                .text(F::TaskResult)
                .map_or_else(|| status_outcome(span), |r| result_outcome(&r))
                .to_owned();
            e.message = view.text(F::Annotation);
            e.cicd_worker_id = view.text(F::WorkerId);
            e.cicd_worker_name = view.text(F::WorkerName);
            e.cicd_worker_group = view.text(F::WorkerGroup);
            e.cicd_worker_labels = view.list(F::WorkerLabels);
            (e.runner_hosting, e.runner_ephemeral) = hosting(view);
            e.cpu_seconds = view.f64(F::CpuSeconds);
            e.memory_bytes = view.i64(F::MemoryBytes);
            e.egress_bytes = view.i64(F::TransmitBytes);
            if let (Some(queued), Some(started)) = (
                view.text(F::QueuedAt)
                    .as_deref()
                    .and_then(crate::decoders::util::parse_time_str),
                view.text(F::StartedAt)
                    .as_deref()
                    .and_then(crate::decoders::util::parse_time_str),
            ) {
                e.queue_ms = Some((started - queued).num_milliseconds()).filter(|ms| *ms >= 0);
            }
        }
        Role::Egress => {
            let url = view.text(F::UrlFull);
            e.egress_destination = view
                .text(F::ServerAddress)
                .or_else(|| url.as_deref().and_then(host_of));
            e.url_full = url;
            e.egress_bytes = view
                .i64(F::RequestBodyBytes)
                .or_else(|| view.i64(F::TransmitBytes));
            e.target_type = Some("host".to_owned());
            e.target_name = e.egress_destination.clone();
            e.outcome = match (span.status, view.i64(F::HttpStatus)) {
                (StatusCode::Error, _) => "failure",
                (_, Some(code)) if code >= 400 => "failure",
                (_, Some(_)) | (StatusCode::Ok, None) => "success",
                (StatusCode::Unset, None) => "unknown",
            }
            .to_owned();
            if view.text(F::HttpMethod).is_none() && !view.own(F::UrlFull) {
                e.action = "egress.connect".to_owned();
            }
        }
        Role::Step | Role::Queue | Role::Other => {}
    }
    Some(e)
}

/// Fills what a job or egress row leaves empty from its enclosing job and
/// run rows in the same input, so rows join without a trace lookup.
pub(super) fn inherit(child: &mut Event, parent: &Event) {
    macro_rules! fill {
        ($($field:ident),+) => {
            $(if child.$field.is_none() { child.$field = parent.$field.clone(); })+
        };
    }
    fill!(
        cicd_pipeline_name,
        cicd_pipeline_run_id,
        cicd_pipeline_run_attempt,
        cicd_pipeline_trigger,
        repo,
        org,
        vcs_ref_head_name,
        vcs_ref_head_revision,
        actor,
        actor_kind
    );
    if parent.category == Category::PipelineJob {
        fill!(
            cicd_pipeline_task_name,
            cicd_pipeline_task_run_id,
            cicd_worker_id,
            cicd_worker_name,
            cicd_worker_group,
            runner_hosting,
            runner_ephemeral
        );
        if child.cicd_worker_labels.is_empty() {
            child.cicd_worker_labels = parent.cicd_worker_labels.clone();
        }
    }
}

/// Queue time of a job from a queue child span (nanoseconds attribute, else its length).
pub(super) fn queue_ms(span: &SpanRecord, view: &View<'_>) -> Option<i64> {
    view.f64(F::QueueDuration)
        .map(|ns| (ns / 1e6) as i64)
        .or_else(|| {
            let (start, end) = (span.start?, span.end?);
            Some((end - start).num_milliseconds())
        })
        .filter(|ms| *ms >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_come_out_of_urls() {
        assert_eq!(
            repo_from_url("https://github.com/biomejs/biome/actions/runs/21458831126").as_deref(),
            Some("biomejs/biome")
        );
        assert_eq!(
            repo_from_url("https://gitlab.com/group/sub/project/-/pipelines/1").as_deref(),
            Some("group/sub/project")
        );
        assert_eq!(
            repo_from_url("git@github.com:octo/hello.git").as_deref(),
            Some("octo/hello")
        );
        assert_eq!(
            repo_from_url("https://api.github.com/repos/octo/hello/actions/runs/1").as_deref(),
            Some("octo/hello")
        );
        assert_eq!(repo_from_url("https://example.com/"), None);
    }

    #[test]
    fn hosts_come_out_of_urls() {
        assert_eq!(
            host_of("https://user@evil.example:8443/x?y").as_deref(),
            Some("evil.example")
        );
        assert_eq!(host_of("http://[::1]:80/").as_deref(), Some("[::1]"));
    }

    #[test]
    fn pipeline_results_map_to_outcomes() {
        assert_eq!(result_outcome("cancellation"), "cancelled");
        assert_eq!(result_outcome("UNSTABLE"), "warning");
        assert_eq!(result_outcome("timeout"), "failure");
        assert_eq!(result_outcome("SUCCESS"), "success");
    }
}
