//! AWS CloudTrail records (`cloudtrail/<account>_CloudTrail_<region>_<YYYYMMDD>.json.gz`,
//! the S3 object shape `{"Records":[...]}`): web-identity logins from CI
//! (GitHub and GitLab OIDC), the assumed-role sessions they start, IAM
//! users with long-lived `AKIA` keys, and SSO sessions of people.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};

use super::iso;
use crate::ctx::Ctx;
use crate::org::{AWS_ACCOUNT, AWS_REGION, IamUser};
use crate::rng::{aws_key, sha256_hex, uuid};

/// An identity provider CI logs in through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Oidc {
    GitHub,
    GitLab,
}

impl Oidc {
    fn provider_arn(self) -> String {
        let host = match self {
            Oidc::GitHub => "token.actions.githubusercontent.com",
            Oidc::GitLab => "gitlab.com",
        };
        format!("arn:aws:iam::{AWS_ACCOUNT}:oidc-provider/{host}")
    }

    fn audience(self) -> &'static str {
        match self {
            Oidc::GitHub => "sts.amazonaws.com",
            Oidc::GitLab => "https://gitlab.com",
        }
    }
}

/// A temporary session (from STS) used by later calls.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) role: String,
    pub(crate) session_name: String,
    pub(crate) key: String,
    pub(crate) created: DateTime<Utc>,
    /// The web identity provider, when the session came from OIDC.
    pub(crate) web: Option<Oidc>,
}

/// Who makes an API call.
#[derive(Debug, Clone)]
pub(crate) enum Caller<'a> {
    Session(&'a Session),
    User(&'a IamUser),
}

/// A stable IAM-style id (`AROA…`) derived from a name.
pub(crate) fn stable_id(prefix: &str, name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let digest = sha256_hex(name);
    let mut s = String::from(prefix);
    for b in digest.as_bytes().iter().take(21 - prefix.len()) {
        s.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    s
}

fn file(at: DateTime<Utc>) -> String {
    format!(
        "cloudtrail/{AWS_ACCOUNT}_CloudTrail_{AWS_REGION}_{}.json.gz",
        at.format("%Y%m%d")
    )
}

fn identity(caller: &Caller<'_>) -> Value {
    match caller {
        Caller::User(u) => json!({
            "type": "IAMUser",
            "principalId": u.principal_id,
            "arn": format!("arn:aws:iam::{AWS_ACCOUNT}:user/{}", u.name),
            "accountId": AWS_ACCOUNT,
            "accessKeyId": u.key_id,
            "userName": u.name,
        }),
        Caller::Session(s) => {
            let role_id = stable_id("AROA", &s.role);
            let mut context = json!({
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": role_id,
                    "arn": format!("arn:aws:iam::{AWS_ACCOUNT}:role/{}", s.role),
                    "accountId": AWS_ACCOUNT,
                    "userName": s.role.rsplit('/').next().unwrap_or(&s.role),
                },
                "attributes": {"creationDate": iso(s.created), "mfaAuthenticated": "false"},
            });
            if let (Some(web), Some(map)) = (s.web, context.as_object_mut()) {
                map.insert(
                    "webIdFederationData".into(),
                    json!({"federatedProvider": web.provider_arn(), "attributes": {}}),
                );
            }
            let role_name = s.role.rsplit('/').next().unwrap_or(&s.role);
            json!({
                "type": "AssumedRole",
                "principalId": format!("{role_id}:{}", s.session_name),
                "arn": format!("arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role_name}/{}", s.session_name),
                "accountId": AWS_ACCOUNT,
                "accessKeyId": s.key,
                "sessionContext": context,
            })
        }
    }
}

/// One API call to record.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) source: &'static str,
    pub(crate) name: &'static str,
    pub(crate) request: Value,
    pub(crate) response: Value,
    pub(crate) read_only: bool,
    pub(crate) ip: String,
    pub(crate) user_agent: String,
    /// (errorCode, errorMessage) when the call failed.
    pub(crate) error: Option<(&'static str, String)>,
}

fn write(
    ctx: &mut Ctx,
    at: DateTime<Utc>,
    who: Value,
    call: Call,
    resources: Option<Value>,
    additional: Option<Value>,
) -> String {
    let event_id = uuid(&mut ctx.rng);
    let request_id = uuid(&mut ctx.rng);
    let mut m = Map::new();
    m.insert("eventVersion".into(), json!("1.11"));
    m.insert("userIdentity".into(), who);
    m.insert("eventTime".into(), json!(iso(at)));
    m.insert("eventSource".into(), json!(call.source));
    m.insert("eventName".into(), json!(call.name));
    m.insert("awsRegion".into(), json!(AWS_REGION));
    m.insert("sourceIPAddress".into(), json!(call.ip));
    m.insert("userAgent".into(), json!(call.user_agent));
    if let Some((code, message)) = &call.error {
        m.insert("errorCode".into(), json!(code));
        m.insert("errorMessage".into(), json!(message));
    }
    let request = match call.request {
        Value::Object(map) if map.is_empty() => Value::Null,
        other => other,
    };
    m.insert("requestParameters".into(), request);
    m.insert("responseElements".into(), call.response);
    if let Some(a) = additional {
        m.insert("additionalEventData".into(), a);
    }
    m.insert("requestID".into(), json!(request_id));
    m.insert("eventID".into(), json!(event_id));
    m.insert("readOnly".into(), json!(call.read_only));
    if let Some(r) = resources {
        m.insert("resources".into(), r);
    }
    m.insert("eventType".into(), json!("AwsApiCall"));
    m.insert("managementEvent".into(), json!(true));
    m.insert("recipientAccountId".into(), json!(AWS_ACCOUNT));
    m.insert("eventCategory".into(), json!("Management"));
    // IAM is a global service: its endpoint carries no region.
    let host = if call.source == "iam.amazonaws.com" {
        call.source.to_owned()
    } else {
        call.source
            .replace(".amazonaws.com", &format!(".{AWS_REGION}.amazonaws.com"))
    };
    m.insert(
        "tlsDetails".into(),
        json!({"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "clientProvidedHostHeader": host}),
    );
    ctx.sink.cloudtrail(&file(at), at, &Value::Object(m));
    event_id
}

/// Records a call by an existing caller; returns the eventID.
pub(crate) fn record(ctx: &mut Ctx, at: DateTime<Utc>, caller: &Caller<'_>, call: Call) -> String {
    write(ctx, at, identity(caller), call, None, None)
}

/// `sts:AssumeRoleWithWebIdentity` from CI; returns the eventID and the session.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assume_web_identity(
    ctx: &mut Ctx,
    at: DateTime<Utc>,
    oidc: Oidc,
    sub: &str,
    role: &str,
    session_name: &str,
    ip: &str,
    user_agent: &str,
) -> (String, Session) {
    let key = aws_key(&mut ctx.rng, "ASIA");
    let role_id = stable_id("AROA", role);
    let provider = oidc.provider_arn();
    let who = json!({
        "type": "WebIdentityUser",
        "principalId": format!("{provider}:{}:{sub}", oidc.audience()),
        "userName": sub,
        "identityProvider": provider,
    });
    let expiration = at + Duration::hours(1);
    let call = Call {
        source: "sts.amazonaws.com",
        name: "AssumeRoleWithWebIdentity",
        request: json!({
            "roleArn": format!("arn:aws:iam::{AWS_ACCOUNT}:role/{role}"),
            "roleSessionName": session_name,
            "durationSeconds": 3600,
        }),
        response: json!({
            "credentials": {
                "accessKeyId": key,
                "sessionToken": "",
                "expiration": expiration.format("%b %-d, %Y, %-I:%M:%S %p").to_string(),
            },
            "subjectFromWebIdentityToken": sub,
            "assumedRoleUser": {
                "assumedRoleId": format!("{role_id}:{session_name}"),
                "arn": format!("arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role}/{session_name}"),
            },
            "provider": provider,
            "audience": oidc.audience(),
        }),
        read_only: true,
        ip: ip.to_owned(),
        user_agent: user_agent.to_owned(),
        error: None,
    };
    let resources = json!([{
        "accountId": AWS_ACCOUNT,
        "type": "AWS::IAM::Role",
        "ARN": format!("arn:aws:iam::{AWS_ACCOUNT}:role/{role}"),
    }]);
    let additional = json!({
        "identityProviderConnectionVerificationMethod": "IAMTrustStore",
        "RequestDetails": {"awsServingRegion": AWS_REGION, "endpointType": "regional"},
    });
    let id = write(ctx, at, who, call, Some(resources), Some(additional));
    let session = Session {
        role: role.to_owned(),
        session_name: session_name.to_owned(),
        key,
        created: at,
        web: Some(oidc),
    };
    (id, session)
}

/// The ARN of a Secrets Manager secret (with its random suffix).
pub(crate) fn secret_arn(name: &str) -> String {
    let suffix: String = sha256_hex(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(6)
        .collect();
    format!("arn:aws:secretsmanager:{AWS_REGION}:{AWS_ACCOUNT}:secret:{name}-{suffix}")
}

/// A `secretsmanager:GetSecretValue` call.
pub(crate) fn get_secret(name: &str, ip: &str, user_agent: &str, denied: bool) -> Call {
    Call {
        source: "secretsmanager.amazonaws.com",
        name: "GetSecretValue",
        request: json!({"secretId": secret_arn(name)}),
        response: Value::Null,
        read_only: true,
        ip: ip.to_owned(),
        user_agent: user_agent.to_owned(),
        error: denied.then(|| {
            (
                "AccessDenied",
                format!("User is not authorized to perform: secretsmanager:GetSecretValue on resource: {name}"),
            )
        }),
    }
}

/// A read-only call without interesting parameters.
pub(crate) fn simple(
    source: &'static str,
    name: &'static str,
    request: Value,
    ip: &str,
    user_agent: &str,
) -> Call {
    Call {
        source,
        name,
        request,
        response: Value::Null,
        read_only: true,
        ip: ip.to_owned(),
        user_agent: user_agent.to_owned(),
        error: None,
    }
}

/// User agent of aws-actions/configure-aws-credentials.
pub(crate) const UA_CONFIGURE: &str = "aws-sdk-js/3.887.0 ua/2.1 os/linux#6.11.0-1018-azure lang/js md/nodejs#20.19.4 api/sts#3.887.0 configure-aws-credentials-for-github-actions";
/// User agent of the AWS CLI in CI jobs.
pub(crate) const UA_CLI: &str = "aws-cli/2.30.6 md/awscrt#0.27.6 ua/2.1 os/linux#6.11.0-1018-azure md/arch#x86_64 lang/python#3.13.7 md/pyimpl#CPython exec-env/GitHub_Actions m/E,b cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.24 md/prompt#off md/command#secretsmanager.get-secret-value";
/// User agent of Terraform's AWS provider.
pub(crate) const UA_TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.13.3 (+https://www.terraform.io) terraform-provider-aws/6.14.1 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.39.2 ua/2.1 os/linux lang/go#1.24.6 md/GOOS#linux md/GOARCH#amd64 api/ec2#1.254.0";
/// User agent of the legacy boto3 report exporter.
pub(crate) const UA_BOTO: &str = "Boto3/1.28.62 md/Botocore#1.31.62 ua/2.0 os/linux#5.15.0-91-generic md/arch#x86_64 lang/python#3.9.18 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.31.62";
/// User agent of the AWS console.
pub(crate) const UA_CONSOLE: &str = "AWS Internal";
