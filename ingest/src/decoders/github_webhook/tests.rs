//! Behaviour tests: framing and dead letters, type detection, runner and
//! outcome classification, stable ids.

use pipewatch_schema::{ActorKind, Category, IdentityKind, RunnerHosting};
use serde_json::json;

use super::actions::runner_hosting;
use super::*;
use crate::decoders::Position;

fn decode_with(bytes: &[u8], hint: Option<&str>) -> DecodeOutput {
    let mut input = Input::new("test", bytes);
    input.type_hint = hint;
    input.observed_at = DateTime::from_timestamp(1_700_000_000, 0);
    let mut out = DecodeOutput::default();
    DECODER.decode(&input, &mut out);
    out
}

fn job(id: Value, status: &str, runner: Value, labels: Value) -> Value {
    json!({
        "action": status,
        "repository": {"full_name": "octo-org/app", "default_branch": "main", "owner": {"login": "octo-org"}},
        "sender": {"login": "dependabot[bot]", "type": "Bot"},
        "workflow_job": {
            "id": id, "run_id": 7, "run_attempt": 2, "name": "build", "workflow_name": "CI",
            "head_branch": "main", "head_sha": "abc", "status": status,
            "conclusion": if status == "completed" { json!("failure") } else { Value::Null },
            "created_at": "2024-01-01T00:00:00Z", "started_at": "2024-01-01T00:00:30Z",
            "completed_at": if status == "completed" { json!("2024-01-01T00:02:30Z") } else { Value::Null },
            "runner_name": runner, "runner_group_name": Value::Null, "labels": labels
        }
    })
}

#[test]
fn a_bad_line_is_dead_lettered_and_the_others_still_decode() {
    let good = job(
        json!(11),
        "completed",
        json!("GitHub Actions 3"),
        json!(["ubuntu-latest"]),
    );
    let missing_id = job(Value::Null, "queued", Value::Null, json!([]));
    let ping = json!({"zen": "Keep it simple", "hook_id": 1, "sender": {"login": "x"}});
    let input = format!("{good}\nnot json\n{missing_id}\n{ping}\n");
    let out = decode_with(input.as_bytes(), None);
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.events[0].source_event_id, "11:completed");
    let reasons: Vec<_> = out
        .dead_letters
        .iter()
        .map(|d| (d.position, d.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (Position::Line(2), DeadLetterReason::Syntax),
            (Position::Line(3), DeadLetterReason::MissingField),
            (Position::Line(4), DeadLetterReason::UnknownShape),
        ]
    );
    assert_eq!(
        out.dead_letters[1].detail,
        "workflow_job payload has no workflow_job.id"
    );
}

#[test]
fn an_unsupported_event_header_is_named_in_the_dead_letter() {
    let out = decode_with(br#"{"zen": "hi", "sender": {"login": "x"}}"#, Some("ping"));
    assert!(out.events.is_empty());
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].reason, DeadLetterReason::UnknownShape);
    assert!(out.dead_letters[0].detail.contains("`ping`"));
}

#[test]
fn the_header_hint_wins_over_the_shape() {
    // A job payload carries a `deployment`; the header decides.
    let payload = job(json!(5), "queued", Value::Null, json!(["self-hosted"]));
    let out = decode_with(payload.to_string().as_bytes(), Some("deployment"));
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(
        out.dead_letters[0].detail,
        "deployment payload has no deployment.id"
    );
    let out = decode_with(payload.to_string().as_bytes(), Some("workflow_job"));
    assert_eq!(out.events[0].category, Category::PipelineJob);
}

#[test]
fn types_are_recognised_from_the_payload_shape() {
    let cases = [
        (
            json!({"workflow_job": {}, "deployment": {}}),
            Some(EventType::WorkflowJob),
        ),
        (
            json!({"workflow_run": {}, "reviewers": []}),
            Some(EventType::DeploymentReview),
        ),
        (
            json!({"deployment": {}, "workflow_run": null}),
            Some(EventType::Deployment),
        ),
        (
            json!({"deployment": {}, "deployment_status": {}}),
            Some(EventType::DeploymentStatus),
        ),
        (
            json!({"workflow_run": {}, "workflow": {}}),
            Some(EventType::WorkflowRun),
        ),
        (
            json!({"ref": "r", "before": "a", "after": "b", "pusher": {}}),
            Some(EventType::Push),
        ),
        (
            json!({"workflow": "w.yml", "ref": "r", "inputs": null}),
            Some(EventType::WorkflowDispatch),
        ),
        (
            json!({"action": "edited", "rule": {}}),
            Some(EventType::BranchProtectionRule),
        ),
        (
            json!({"action": "created", "installation": {"id": 1, "account": {}}}),
            Some(EventType::Installation),
        ),
        (
            json!({"action": "opened", "installation": {"id": 1}, "issue": {}}),
            None,
        ),
        // GitLab push hooks look like GitHub pushes apart from object_kind.
        (
            json!({"object_kind": "push", "ref": "r", "before": "a", "after": "b", "commits": []}),
            None,
        ),
    ];
    for (payload, expected) in cases {
        assert_eq!(EventType::from_shape(&payload), expected, "{payload}");
    }
    // Audit-log entries have no sender object.
    assert!(
        !DECODER.sniff(&json!({"action": "workflows.completed_workflow_run", "workflow_run": {}}))
    );
}

#[test]
fn runners_are_classified_by_group_name_and_labels() {
    let labels = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        runner_hosting(
            Some("GitHub Actions"),
            Some("GitHub Actions 5"),
            &labels(&["ubuntu-latest"])
        ),
        (Some(RunnerHosting::Hosted), Some(true))
    );
    assert_eq!(
        runner_hosting(None, Some("Hosted Agent"), &[]),
        (Some(RunnerHosting::Hosted), Some(true))
    );
    assert_eq!(
        runner_hosting(
            Some("Default"),
            Some("build-01"),
            &labels(&["self-hosted", "linux"])
        ),
        (Some(RunnerHosting::SelfHosted), None)
    );
    assert_eq!(
        runner_hosting(None, None, &labels(&["self-hosted", "ephemeral-k8s"])),
        (Some(RunnerHosting::SelfHosted), Some(true))
    );
    assert_eq!(
        runner_hosting(None, None, &labels(&["ubuntu-latest"])),
        (None, None)
    );
}

#[test]
fn a_completed_job_has_outcome_timing_and_a_bot_actor() {
    let payload = job(
        json!(9),
        "completed",
        json!("GitHub Actions 2"),
        json!(["ubuntu-latest"]),
    );
    let out = decode_with(payload.to_string().as_bytes(), None);
    let event = &out.events[0];
    assert_eq!(event.outcome, "failure");
    assert_eq!(event.queue_ms, Some(30_000));
    assert_eq!(event.duration_ms, Some(120_000));
    assert_eq!(event.actor_kind, Some(ActorKind::Bot));
    assert_eq!(event.identity_kind, IdentityKind::Unknown);
    assert_eq!(event.vcs_ref_is_default, Some(true));
    assert_eq!(event.org.as_deref(), Some("octo-org"));
}

#[test]
fn a_queued_job_has_no_queue_time_yet() {
    let payload = job(json!(9), "queued", Value::Null, json!(["self-hosted"]));
    let out = decode_with(payload.to_string().as_bytes(), None);
    let event = &out.events[0];
    assert_eq!(event.outcome, "pending");
    assert_eq!(event.queue_ms, None);
    assert_eq!(event.start_time, None);
    assert_eq!(event.runner_hosting, Some(RunnerHosting::SelfHosted));
}

#[test]
fn run_outcomes_need_a_conclusion_to_be_final() {
    assert_eq!(run_outcome(Some("timed_out"), Some("completed")), "failure");
    assert_eq!(run_outcome(None, Some("completed")), "unknown");
    assert_eq!(run_outcome(None, Some("queued")), "pending");
    assert_eq!(run_outcome(None, Some("in_progress")), "in_progress");
}

#[test]
fn dispatch_ids_do_not_depend_on_key_order() {
    let a = br#"{"workflow":"w.yml","ref":"refs/heads/main","inputs":{"a":"1"},"sender":{"login":"u"}}"#;
    let b = br#"{"sender":{"login":"u"},"inputs":{"a":"1"},"ref":"refs/heads/main","workflow":"w.yml"}"#;
    let (a, b) = (decode_with(a, None), decode_with(b, None));
    assert_eq!(a.events[0].source_event_id, b.events[0].source_event_id);
    assert_eq!(a.events[0].source_event_id.len(), 64);
    assert_eq!(a.events[0].outcome, "pending");
}

#[test]
fn weakened_branch_protection_is_spelled_out() {
    let payload = json!({
        "action": "edited",
        "rule": {"id": 1, "name": "main", "required_approving_review_count": 1,
                 "allow_force_pushes_enforcement_level": "everyone", "admin_enforced": true},
        "changes": {"required_approving_review_count": {"from": 2},
                    "allow_force_pushes_enforcement_level": {"from": "off"},
                    "admin_enforced": {"from": false}},
        "repository": {"full_name": "o/r"}, "sender": {"login": "u"}
    });
    let mut payload = payload;
    payload["rule"]["authorized_actors_only"] = json!(true);
    payload["rule"]["authorized_actor_names"] = json!(["u", "mallory"]);
    payload["changes"]["authorized_actor_names"] = json!({"from": ["u"]});
    // Reported but unchanged settings are not news.
    payload["rule"]["linear_history_requirement_enforcement_level"] = json!("off");
    payload["changes"]["linear_history_requirement_enforcement_level"] = json!({"from": "off"});
    let out = decode_with(payload.to_string().as_bytes(), None);
    let message = out.events[0].message.as_deref().unwrap_or_default();
    let weakened = message.split("; also changed").next().unwrap_or_default();
    assert!(
        weakened.contains(r#"authorized_actor_names ["u"] -> ["u","mallory"]"#),
        "{message}"
    );
    assert!(!message.contains("linear_history"), "{message}");
    assert!(message.starts_with("weakened: "), "{message}");
    assert!(
        message.contains("required_approving_review_count 2 -> 1"),
        "{message}"
    );
    assert!(
        message.contains("allow_force_pushes_enforcement_level off -> everyone"),
        "{message}"
    );
    assert!(
        message.contains("also changed: admin_enforced false -> true"),
        "{message}"
    );
}

#[test]
fn a_payload_without_any_time_needs_an_observation_time() {
    let body = br#"{"workflow":"w.yml","ref":"main","inputs":{},"sender":{"login":"u"}}"#;
    let mut out = DecodeOutput::default();
    DECODER.decode(&Input::new("t", body), &mut out);
    assert_eq!(out.dead_letters.len(), 1);
    assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
}

#[test]
fn every_event_of_a_payload_keeps_the_whole_payload_as_its_record() {
    let payload = json!({
        "action": "approved",
        "repository": {"full_name": "octo-org/app", "default_branch": "main", "owner": {"login": "octo-org"}},
        "sender": {"login": "lead", "type": "User"},
        "approver": {"login": "lead", "type": "User"},
        "workflow_run": {"id": 42, "run_attempt": 1, "updated_at": "2024-01-01T00:05:00Z"},
        "workflow_job_runs": [
            {"id": 1, "environment": "staging", "updated_at": "2024-01-01T00:05:00Z"},
            {"id": 2, "environment": "production", "updated_at": "2024-01-01T00:05:01Z"}
        ]
    });
    let line = payload.to_string();
    let out = decode_with(line.as_bytes(), Some("deployment_review"));
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    let environments: Vec<_> = out
        .events
        .iter()
        .map(|e| e.deployment_environment_name.as_deref())
        .collect();
    assert_eq!(environments, [Some("staging"), Some("production")]);
    for event in &out.events {
        assert_eq!(
            event.raw.json(),
            line,
            "{:?}",
            event.deployment_environment_name
        );
    }
}
