//! AWS CloudTrail records: a single record, a JSON array, the S3 delivery
//! envelope `{"Records": [...]}`, NDJSON, and EventBridge `detail` wrappers.
//! Each record becomes one event keyed by its `eventID`.
//! Spec: <https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html>

use pipewatch_schema::{ActorKind, Category, Event, IdentityKind};
use serde_json::Value;

use super::framing::{self, Position};
use super::util::{Lookup, record_time, str_at};
use super::{DecodeOutput, Decoder, Format, Input};
use crate::dead_letter::DeadLetterReason;

const FORMAT: Format = Format::Cloudtrail;

#[derive(Debug)]
pub(crate) struct CloudTrail;

pub(crate) static DECODER: CloudTrail = CloudTrail;

impl Decoder for CloudTrail {
    fn sniff(&self, record: &Value) -> bool {
        if let Some(first) = record
            .get("Records")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
        {
            return is_record(first);
        }
        is_record(record) || eventbridge_detail(record).is_some()
    }

    fn lines_stand_alone(&self) -> bool {
        true
    }

    fn decode(&self, input: &Input<'_>, out: &mut DecodeOutput) {
        for framed in out.parsed(FORMAT, input, framing::json_records(input)) {
            let value = framed.value;
            for (position, record) in expand(value, framed.position) {
                match decode_record(&record, input) {
                    Ok(event) => out.events.push(event),
                    Err((reason, detail)) => {
                        let bytes = serde_json::to_vec(&record).unwrap_or_default();
                        out.reject(FORMAT, input, position, reason, detail, &bytes);
                    }
                }
            }
        }
    }
}

/// Whether a value has the envelope every CloudTrail record carries.
fn is_record(value: &Value) -> bool {
    value.get("eventVersion").is_some()
        && (value.get("eventSource").is_some() || value.get("eventName").is_some())
}

/// The CloudTrail record inside an EventBridge event ("AWS API Call via CloudTrail").
fn eventbridge_detail(value: &Value) -> Option<&Value> {
    let detail_type = str_at(value, "/detail-type")?;
    let detail = value.get("detail")?;
    (detail_type.contains("CloudTrail") && detail.get("eventID").is_some()).then_some(detail)
}

/// Unwraps the S3 `Records` envelope and EventBridge wrappers so each
/// record is decoded (and dead-lettered) on its own.
fn expand(value: Value, position: Position) -> Vec<(Position, Value)> {
    if let Some(detail) = eventbridge_detail(&value) {
        return vec![(position, detail.clone())];
    }
    match value {
        Value::Object(mut object) if object.get("Records").is_some_and(Value::is_array) => {
            let records = match object.remove("Records") {
                Some(Value::Array(records)) => records,
                _ => Vec::new(),
            };
            records
                .into_iter()
                .enumerate()
                .map(|(i, record)| {
                    // A line of NDJSON keeps its line number; the index is only
                    // meaningful as the position of a whole-file envelope.
                    let at = match position {
                        Position::Whole => Position::Record(i),
                        other => other,
                    };
                    (at, record)
                })
                .collect()
        }
        other => vec![(position, other)],
    }
}

type Reject = (DeadLetterReason, String);

fn decode_record(record: &Value, input: &Input<'_>) -> Result<Event, Reject> {
    if !record.is_object() {
        return Err((
            DeadLetterReason::UnknownShape,
            "CloudTrail record is not a JSON object".into(),
        ));
    }
    let event_id = str_at(record, "/eventID").ok_or((
        DeadLetterReason::MissingField,
        "CloudTrail record has no eventID".to_owned(),
    ))?;
    let name = str_at(record, "/eventName").ok_or_else(|| {
        (
            DeadLetterReason::MissingField,
            format!("CloudTrail record {event_id} has no eventName"),
        )
    })?;
    let event_time = record_time(
        record,
        "eventTime",
        input.observed_at,
        &format!("CloudTrail record {event_id}"),
    )?;
    let service = str_at(record, "/eventSource")
        .map(|s| s.trim_end_matches(".amazonaws.com"))
        .unwrap_or("aws");
    let read_only = record.get("readOnly").and_then(read_only_flag);

    let category = category(service, name, read_only);
    let mut event = Event::new(
        FORMAT.name(),
        event_id,
        event_time,
        category,
        format!("{service}.{name}"),
        record.clone(),
    );
    event.outcome = outcome(record).to_owned();
    event.cloud_provider = Some("aws".to_owned());
    event.cloud_account_id = str_at(record, "/recipientAccountId")
        .or_else(|| str_at(record, "/userIdentity/accountId"))
        .map(str::to_owned);
    event.cloud_region = str_at(record, "/awsRegion").map(str::to_owned);
    event.client_address = str_at(record, "/sourceIPAddress").map(str::to_owned);
    event.user_agent_original = str_at(record, "/userAgent").map(str::to_owned);
    event.correlation_id = str_at(record, "/requestID").map(str::to_owned);

    apply_identity(&mut event, record, name);
    apply_target(&mut event, record, service, name);
    event.message = message(record, name);
    Ok(event)
}

/// `readOnly` is a boolean in API calls but a string in some service events.
fn read_only_flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Calls that read or write secret material; everything a detector counts as a secret access.
fn is_secret_access(service: &str, name: &str) -> bool {
    match service {
        // BatchGetSecretValue stays one event: AWS also logs a GetSecretValue
        // record per secret it returns, so splitting would double count.
        "secretsmanager" => matches!(
            name,
            "GetSecretValue"
                | "BatchGetSecretValue"
                | "PutSecretValue"
                | "UpdateSecret"
                | "CreateSecret"
                | "DeleteSecret"
        ),
        "ssm" => matches!(
            name,
            "GetParameter"
                | "GetParameters"
                | "GetParametersByPath"
                | "GetParameterHistory"
                | "PutParameter"
                | "DeleteParameter"
                | "DeleteParameters"
        ),
        "kms" => name == "Decrypt",
        _ => false,
    }
}

fn category(service: &str, name: &str, read_only: Option<bool>) -> Category {
    if is_secret_access(service, name) {
        return Category::SecretAccess;
    }
    if matches!(service, "sts" | "signin" | "sso" | "sso-oauth") || name == "ConsoleLogin" {
        return Category::Auth;
    }
    let mutation = match read_only {
        Some(read_only) => !read_only,
        None => !READ_PREFIXES.iter().any(|p| name.starts_with(p)),
    };
    if mutation {
        Category::ConfigChange
    } else {
        Category::Auth
    }
}

/// Verb prefixes of AWS read-only API calls, for records without `readOnly`.
const READ_PREFIXES: &[&str] = &[
    "Get", "List", "Describe", "Head", "Lookup", "BatchGet", "Search", "Query", "Scan", "Select",
];

fn outcome(record: &Value) -> &'static str {
    if let Some(code) = str_at(record, "/errorCode") {
        let code = code.to_ascii_lowercase();
        return if code.contains("accessdenied")
            || code.contains("unauthorized")
            || code.contains("forbidden")
        {
            "denied"
        } else {
            "failure"
        };
    }
    // Console sign-in failures carry no errorCode, only this response field.
    match str_at(record, "/responseElements/ConsoleLogin") {
        Some("Failure") => "failure",
        _ => "success",
    }
}

fn apply_identity(event: &mut Event, record: &Value, name: &str) {
    let identity = record.get("userIdentity").unwrap_or(&Value::Null);
    let kind = str_at(identity, "/type").unwrap_or_default();
    let key = str_at(identity, "/accessKeyId");
    let web_identity = kind == "WebIdentityUser" || name == "AssumeRoleWithWebIdentity";
    // Present but empty on ordinary role sessions; only a named provider means web identity.
    let federated_session = str_at(
        identity,
        "/sessionContext/webIdFederationData/federatedProvider",
    )
    .is_some();

    event.identity_kind = if web_identity || federated_session {
        IdentityKind::Oidc
    } else if key.is_some_and(|k| k.starts_with("AKIA")) {
        IdentityKind::StaticKey
    } else if key.is_some_and(|k| k.starts_with("ASIA")) || name == "ConsoleLogin" {
        IdentityKind::Session
    } else {
        match kind {
            "IAMUser" | "Root" => IdentityKind::StaticKey,
            "AssumedRole" | "FederatedUser" | "SAMLUser" | "IdentityCenterUser" => {
                IdentityKind::Session
            }
            _ => IdentityKind::Unknown,
        }
    };

    let subject = if web_identity {
        str_at(record, "/responseElements/subjectFromWebIdentityToken")
            .or_else(|| str_at(identity, "/userName"))
    } else {
        None
    };
    event.identity_id = subject.or(key).map(str::to_owned);

    event.actor = str_at(identity, "/userName")
        .map(str::to_owned)
        .or_else(|| str_at(identity, "/arn").and_then(last_segment))
        .or_else(|| {
            str_at(identity, "/principalId")
                .and_then(|p| p.split_once(':'))
                .map(|(_, session)| session.to_owned())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| str_at(identity, "/invokedBy").map(str::to_owned));

    let ci = subject.and_then(ci_subject);
    event.actor_kind = match kind {
        "AWSService" | "AWSAccount" => Some(ActorKind::Service),
        _ if ci.is_some() => Some(ActorKind::Bot),
        "WebIdentityUser" => Some(ActorKind::Service),
        "IAMUser" | "Root" | "SAMLUser" | "IdentityCenterUser" => Some(ActorKind::User),
        "AssumedRole" | "FederatedUser" => {
            let sso = str_at(identity, "/sessionContext/sessionIssuer/userName")
                .is_some_and(|r| r.starts_with("AWSReservedSSO_"));
            let console = str_at(record, "/sessionCredentialFromConsole") == Some("true");
            Some(if sso || console {
                ActorKind::User
            } else {
                ActorKind::Service
            })
        }
        _ => None,
    };
    if let Some(ci) = ci {
        event.org = super::util::org_of(&ci.repo);
        event.repo = Some(ci.repo);
        event.vcs_ref_head_name = ci.ref_name;
        event.deployment_environment_name = ci.environment;
    }
}

/// The part of an ARN after its last `/` (role session, user name), or after `:` (`root`).
fn last_segment(arn: &str) -> Option<String> {
    arn.rsplit_once('/')
        .or_else(|| arn.rsplit_once(':'))
        .map(|(_, last)| last.to_owned())
        .filter(|s| !s.is_empty())
}

/// What a CI OIDC subject claim says about the job that presented it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CiSubject {
    /// `owner/name` (GitHub) or the full GitLab project path.
    pub repo: String,
    /// Branch or tag name, without `refs/heads/` or `refs/tags/`.
    pub ref_name: Option<String>,
    pub environment: Option<String>,
}

/// Parses GitHub (`repo:owner/name:ref:refs/heads/main`) and GitLab
/// (`project_path:group/project:ref_type:branch:ref:main`) OIDC subjects.
pub(super) fn ci_subject(sub: &str) -> Option<CiSubject> {
    let parts: Vec<&str> = sub.split(':').collect();
    let (first, rest) = parts.split_first()?;
    let (repo, pairs) = match *first {
        "repo" | "project_path" => {
            let (repo, pairs) = rest.split_first()?;
            (*repo, pairs)
        }
        _ => return None,
    };
    if !repo.contains('/') {
        return None;
    }
    let mut subject = CiSubject {
        repo: repo.to_owned(),
        ref_name: None,
        environment: None,
    };
    let mut i = 0;
    while let Some(key) = pairs.get(i) {
        let value = pairs.get(i + 1).copied();
        match (*key, value) {
            ("ref", Some(r)) => {
                let short = r
                    .strip_prefix("refs/heads/")
                    .or_else(|| r.strip_prefix("refs/tags/"))
                    .unwrap_or(r);
                subject.ref_name = Some(short.to_owned());
            }
            ("environment", Some(env)) => subject.environment = Some(env.to_owned()),
            _ => {}
        }
        i += 2;
    }
    Some(subject)
}

/// Request parameters that name the object acted on, with the object kind
/// they imply (`None`: depends on the service).
const TARGET_KEYS: &[(&str, Option<&str>)] = &[
    ("secretId", Some("secret")),
    ("secretIdList", Some("secret")),
    ("name", None),
    ("names", None),
    ("trailName", Some("trail")),
    ("roleArn", Some("iam_role")),
    ("roleName", Some("iam_role")),
    ("userName", Some("iam_user")),
    ("policyArn", Some("iam_policy")),
    ("bucketName", Some("s3_bucket")),
    ("keyId", Some("kms_key")),
    ("functionName", Some("lambda_function")),
    ("instanceId", Some("ec2_instance")),
    ("instanceIds", Some("ec2_instance")),
];

fn apply_target(event: &mut Event, record: &Value, service: &str, name: &str) {
    let params = record.get("requestParameters").unwrap_or(&Value::Null);
    for (key, kind) in TARGET_KEYS {
        if let Some(target) = params.get(*key).and_then(text_or_list) {
            event.target_name = Some(target);
            event.target_type = kind
                .or_else(|| service_target_type(service, name))
                .map(str::to_owned);
            return;
        }
    }
    if let Some(resource) = record.at("/resources/0") {
        event.target_name = str_at(resource, "/ARN").map(str::to_owned);
        event.target_type = service_target_type(service, name)
            .or_else(|| str_at(resource, "/type"))
            .map(str::to_owned);
    }
}

fn service_target_type(service: &str, name: &str) -> Option<&'static str> {
    match service {
        "secretsmanager" => Some("secret"),
        "ssm" if name.contains("Parameter") => Some("ssm_parameter"),
        "kms" => Some("kms_key"),
        "cloudtrail" => Some("trail"),
        _ => None,
    }
}

/// A string, or a list of strings joined with `,`.
fn text_or_list(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Array(items) => {
            let names: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            (!names.is_empty()).then(|| names.join(","))
        }
        _ => None,
    }
}

fn message(record: &Value, name: &str) -> Option<String> {
    let mut notes = Vec::new();
    if let Some(error) = str_at(record, "/errorMessage") {
        notes.push(error.to_owned());
    }
    if str_at(record, "/userIdentity/type") == Some("Root") {
        notes.push("called by the account root user".to_owned());
    }
    if name == "BatchGetSecretValue"
        && let Some(filters) = record
            .at("/requestParameters/filters")
            .and_then(Value::as_array)
    {
        let described: Vec<String> = filters
            .iter()
            .map(|f| {
                let key = str_at(f, "/key").unwrap_or("?");
                let values = f.get("values").and_then(text_or_list).unwrap_or_default();
                format!("{key}={values}")
            })
            .collect();
        notes.push(format!(
            "secrets selected by filters {}",
            described.join(" ")
        ));
    }
    (!notes.is_empty()).then(|| notes.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> DecodeOutput {
        let mut out = DecodeOutput::default();
        DECODER.decode(&Input::new("test", bytes), &mut out);
        out
    }

    fn record(event_id: &str, identity: Value, extra: Value) -> Value {
        let mut record = serde_json::json!({
            "eventVersion": "1.08",
            "eventID": event_id,
            "eventTime": "2025-01-01T00:00:00Z",
            "eventSource": "sts.amazonaws.com",
            "eventName": "GetCallerIdentity",
            "awsRegion": "us-east-1",
            "readOnly": true,
            "userIdentity": identity,
        });
        if let (Some(target), Some(extra)) = (record.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                target.insert(k.clone(), v.clone());
            }
        }
        record
    }

    #[test]
    fn records_envelope_decodes_each_record_and_dead_letters_the_bad_one() {
        let good = record("a", serde_json::json!({"type": "IAMUser"}), Value::Null);
        let bad = serde_json::json!({"eventVersion": "1.08", "eventName": "GetCallerIdentity"});
        let body = serde_json::json!({"Records": [good, bad]}).to_string();
        let out = decode(body.as_bytes());
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].source_event_id, "a");
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::MissingField);
        assert_eq!(out.dead_letters[0].position, Position::Record(1));
    }

    #[test]
    fn ndjson_keeps_going_after_a_broken_line() {
        let a = record("a", Value::Null, Value::Null).to_string();
        let b = record("b", Value::Null, Value::Null).to_string();
        let body = format!("{a}\n{{not json\n{b}\n");
        let out = decode(body.as_bytes());
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.dead_letters.len(), 1);
        assert_eq!(out.dead_letters[0].reason, DeadLetterReason::Syntax);
        assert_eq!(out.dead_letters[0].position, Position::Line(2));
    }

    #[test]
    fn sniffs_records_envelopes_and_single_records_only() {
        let single = record("a", Value::Null, Value::Null);
        assert!(DECODER.sniff(&single));
        assert!(DECODER.sniff(&serde_json::json!({"Records": [single]})));
        assert!(!DECODER.sniff(&serde_json::json!({"kind": "Event", "auditID": "x"})));
        assert!(!DECODER.sniff(&serde_json::json!({"type": "request", "request": {}})));
    }

    #[test]
    fn eventbridge_wrapper_yields_the_inner_record() {
        let inner = record("eb", Value::Null, Value::Null);
        let body =
            serde_json::json!({"detail-type": "AWS API Call via CloudTrail", "detail": inner});
        assert!(DECODER.sniff(&body));
        let out = decode(body.to_string().as_bytes());
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].source_event_id, "eb");
        assert_eq!(out.events[0].raw, inner);
    }

    #[test]
    fn github_web_identity_is_oidc_with_repository() {
        let sub = "repo:octo/app:environment:prod";
        let event = decode_record(
            &record(
                "w",
                serde_json::json!({"type": "WebIdentityUser", "userName": sub}),
                serde_json::json!({"eventName": "AssumeRoleWithWebIdentity",
                    "responseElements": {"subjectFromWebIdentityToken": sub}}),
            ),
            &Input::new("t", b""),
        )
        .expect("decodes");
        assert_eq!(event.identity_kind, IdentityKind::Oidc);
        assert_eq!(event.identity_id.as_deref(), Some(sub));
        assert_eq!(event.repo.as_deref(), Some("octo/app"));
        assert_eq!(event.org.as_deref(), Some("octo"));
        assert_eq!(event.deployment_environment_name.as_deref(), Some("prod"));
        assert_eq!(event.actor_kind, Some(ActorKind::Bot));
        assert_eq!(event.category, Category::Auth);
    }

    #[test]
    fn key_prefixes_decide_static_versus_session() {
        let input = Input::new("t", b"");
        let akia =
            serde_json::json!({"type": "IAMUser", "accessKeyId": "AKIAEXAMPLE", "userName": "ci"});
        let event = decode_record(&record("1", akia, Value::Null), &input).expect("decodes");
        assert_eq!(event.identity_kind, IdentityKind::StaticKey);
        assert_eq!(event.identity_id.as_deref(), Some("AKIAEXAMPLE"));

        let empty_web = serde_json::json!({"type": "AssumedRole", "accessKeyId": "ASIAEXAMPLE",
            "arn": "arn:aws:sts::1:assumed-role/r/i-123",
            "sessionContext": {"webIdFederationData": {}}});
        let event = decode_record(&record("2", empty_web, Value::Null), &input).expect("decodes");
        assert_eq!(event.identity_kind, IdentityKind::Session);
        assert_eq!(event.actor.as_deref(), Some("i-123"));

        let federated = serde_json::json!({"type": "AssumedRole", "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"webIdFederationData": {
                "federatedProvider": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com"}}});
        let event = decode_record(&record("3", federated, Value::Null), &input).expect("decodes");
        assert_eq!(event.identity_kind, IdentityKind::Oidc);
    }

    #[test]
    fn categories_and_outcomes() {
        let input = Input::new("t", b"");
        let stop = record(
            "s",
            Value::Null,
            serde_json::json!({"eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging",
                "readOnly": false, "requestParameters": {"name": "main-trail"},
                "errorCode": "AccessDenied", "errorMessage": "not allowed"}),
        );
        let event = decode_record(&stop, &input).expect("decodes");
        assert_eq!(event.category, Category::ConfigChange);
        assert_eq!(event.action, "cloudtrail.StopLogging");
        assert_eq!(event.outcome, "denied");
        assert_eq!(event.target_type.as_deref(), Some("trail"));
        assert_eq!(event.target_name.as_deref(), Some("main-trail"));

        let secret = record(
            "g",
            Value::Null,
            serde_json::json!({"eventSource": "secretsmanager.amazonaws.com",
                "eventName": "GetSecretValue", "errorCode": "ResourceNotFoundException",
                "requestParameters": {"secretId": "prod/db"}}),
        );
        let event = decode_record(&secret, &input).expect("decodes");
        assert_eq!(event.category, Category::SecretAccess);
        assert_eq!(event.outcome, "failure");
        assert_eq!(event.target_name.as_deref(), Some("prod/db"));

        let read = record(
            "r",
            Value::Null,
            serde_json::json!({"eventSource": "ec2.amazonaws.com", "eventName": "DescribeInstances"}),
        );
        assert_eq!(
            decode_record(&read, &input).expect("decodes").category,
            Category::Auth
        );
    }

    #[test]
    fn gitlab_subjects_parse() {
        let subject = ci_subject("project_path:group/sub/proj:ref_type:branch:ref:main")
            .expect("gitlab subject");
        assert_eq!(subject.repo, "group/sub/proj");
        assert_eq!(subject.ref_name.as_deref(), Some("main"));
        assert!(ci_subject("system:serviceaccount:ns:sa").is_none());
    }
}
