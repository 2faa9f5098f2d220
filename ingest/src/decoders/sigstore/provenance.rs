//! Columns from an in-toto Statement (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>)
//! carried in a DSSE envelope: the attested subject, and for SLSA provenance
//! v1 (<https://slsa.dev/spec/v1.0/provenance>, GitHub Actions build type
//! <https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1>)
//! and v0.2 (<https://slsa.dev/spec/v0.2/provenance>) the workflow that built it.

use pipewatch_schema::{Event, RunnerHosting};
use serde_json::Value;

use crate::decoders::util::{Lookup, org_of, str_at, text_at};

/// Fills subject, predicate and build columns from a parsed Statement.
pub(super) fn fill(event: &mut Event, statement: &Value) {
    let predicate_type = str_at(statement, "/predicateType");
    event.rule_id = predicate_type.map(str::to_owned);
    let subjects = statement
        .get("subject")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let first = subjects.first();
    let name = first.and_then(|s| str_at(s, "/name"));
    let digest = first.and_then(|s| s.get("digest")).and_then(digest_text);
    event.target_type = Some("artifact".to_owned());
    event.target_name = name.map(str::to_owned);
    event.correlation_id = digest.clone();

    let predicate = statement.get("predicate").unwrap_or(&Value::Null);
    let builder = match predicate_type {
        Some(t) if t.starts_with("https://slsa.dev/provenance/v1") => slsa_v1(event, predicate),
        Some(t) if t.starts_with("https://slsa.dev/provenance/v0.") => slsa_v02(event, predicate),
        _ => None,
    };

    let mut message = format!(
        "{} attestation for {}",
        predicate_type.unwrap_or("in-toto"),
        name.unwrap_or("an unnamed subject")
    );
    if let Some(digest) = digest {
        message.push_str(&format!(" ({digest})"));
    }
    if subjects.len() > 1 {
        message.push_str(&format!(" and {} more subjects", subjects.len() - 1));
    }
    if let Some(builder) = builder {
        message.push_str(&format!(", built by {builder}"));
    }
    event.message = Some(message);
}

/// `alg:hex` for a DigestSet, preferring the strongest common algorithm.
fn digest_text(set: &Value) -> Option<String> {
    let object = set.as_object()?;
    ["sha256", "sha512", "sha384", "sha1", "gitCommit"]
        .iter()
        .find_map(|alg| {
            object
                .get(*alg)
                .and_then(Value::as_str)
                .map(|hex| format!("{alg}:{hex}"))
        })
        .or_else(|| {
            object
                .iter()
                .find_map(|(alg, v)| v.as_str().map(|hex| format!("{alg}:{hex}")))
        })
}

/// SLSA provenance v1; returns the builder id.
fn slsa_v1<'p>(event: &mut Event, predicate: &'p Value) -> Option<&'p str> {
    let workflow = predicate.at("/buildDefinition/externalParameters/workflow");
    if let Some(workflow) = workflow {
        set_repo(event, str_at(workflow, "/repository"));
        event.cicd_pipeline_name = str_at(workflow, "/path").map(str::to_owned);
        event.vcs_ref_head_name = str_at(workflow, "/ref").map(short_ref);
    }
    let github = predicate.at("/buildDefinition/internalParameters/github");
    if let Some(github) = github {
        event.cicd_pipeline_trigger = str_at(github, "/event_name").map(str::to_owned);
        set_hosting(event, str_at(github, "/runner_environment"));
    }
    event.vcs_ref_head_revision = predicate
        .at("/buildDefinition/resolvedDependencies")
        .and_then(Value::as_array)
        .and_then(|deps| deps.iter().find_map(|d| str_at(d, "/digest/gitCommit")))
        .map(str::to_owned);
    let builder = str_at(predicate, "/runDetails/builder/id");
    if event.runner_hosting.is_none() {
        // GitHub's builder ids end in the runner environment.
        set_hosting(event, builder.and_then(|b| b.rsplit('/').next()));
    }
    if let Some(invocation) = str_at(predicate, "/runDetails/metadata/invocationId") {
        event.url_full = Some(invocation.to_owned());
        event.cicd_pipeline_run_id = path_number(invocation, "/runs/").map(|n| n.to_string());
        event.cicd_pipeline_run_attempt = path_number(invocation, "/attempts/");
    }
    builder
}

/// SLSA provenance v0.2 (older npm and slsa-github-generator output); returns the builder id.
fn slsa_v02<'p>(event: &mut Event, predicate: &'p Value) -> Option<&'p str> {
    // `git+https://github.com/owner/name@refs/heads/main`
    if let Some(uri) = str_at(predicate, "/invocation/configSource/uri") {
        let uri = uri.strip_prefix("git+").unwrap_or(uri);
        let (repository, reference) = uri.split_once('@').unwrap_or((uri, ""));
        set_repo(event, Some(repository));
        event.vcs_ref_head_name = (!reference.is_empty()).then(|| short_ref(reference));
    }
    event.cicd_pipeline_name =
        str_at(predicate, "/invocation/configSource/entryPoint").map(str::to_owned);
    event.vcs_ref_head_revision =
        str_at(predicate, "/invocation/configSource/digest/sha1").map(str::to_owned);
    let environment = predicate
        .at("/invocation/environment")
        .unwrap_or(&Value::Null);
    event.cicd_pipeline_trigger = str_at(environment, "/github_event_name").map(str::to_owned);
    event.cicd_pipeline_run_id = text_at(environment, "/github_run_id");
    event.cicd_pipeline_run_attempt =
        text_at(environment, "/github_run_attempt").and_then(|a| a.parse().ok());
    let builder = str_at(predicate, "/builder/id");
    set_hosting(event, builder.and_then(|b| b.rsplit('/').next()));
    builder
}

fn set_repo(event: &mut Event, url: Option<&str>) {
    let Some(url) = url else { return };
    let path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or(url, |(_, path)| path);
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path);
    if path.contains('/') {
        event.repo = Some(path.to_owned());
        event.org = org_of(path);
    }
}

fn set_hosting(event: &mut Event, environment: Option<&str>) {
    match environment {
        // GitHub-hosted runners are fresh VMs for every job.
        Some("github-hosted") => {
            event.runner_hosting = Some(RunnerHosting::Hosted);
            event.runner_ephemeral = Some(true);
        }
        Some("self-hosted") => event.runner_hosting = Some(RunnerHosting::SelfHosted),
        _ => {}
    }
}

/// `refs/heads/main` -> `main`, `refs/tags/v1` -> `v1`; other refs unchanged.
fn short_ref(reference: &str) -> String {
    reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("refs/tags/"))
        .unwrap_or(reference)
        .to_owned()
}

/// The number following `marker` in a URL path (`/runs/123/…` -> 123).
fn path_number(url: &str, marker: &str) -> Option<i64> {
    let (_, rest) = url.split_once(marker)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use pipewatch_schema::Category;
    use serde_json::json;

    fn event() -> Event {
        Event::new(
            "sigstore",
            "x",
            DateTime::UNIX_EPOCH,
            Category::Attestation,
            "a",
            json!({}),
        )
    }

    #[test]
    fn slsa_v1_github_provenance_fills_the_workflow() {
        let statement = json!({
            "subject": [{"name": "app.whl", "digest": {"sha512": "bb", "sha256": "aa"}}, {"name": "b"}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {
                "buildDefinition": {
                    "externalParameters": {"workflow": {"ref": "refs/tags/v1.2", "repository": "https://github.com/acme/app", "path": ".github/workflows/release.yml"}},
                    "internalParameters": {"github": {"event_name": "push", "runner_environment": "self-hosted"}},
                    "resolvedDependencies": [{"uri": "git+https://github.com/acme/app@refs/tags/v1.2", "digest": {"gitCommit": "abc"}}]
                },
                "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"},
                               "metadata": {"invocationId": "https://github.com/acme/app/actions/runs/42/attempts/3"}}
            }
        });
        let mut e = event();
        fill(&mut e, &statement);
        assert_eq!(e.repo.as_deref(), Some("acme/app"));
        assert_eq!(e.org.as_deref(), Some("acme"));
        assert_eq!(e.vcs_ref_head_name.as_deref(), Some("v1.2"));
        assert_eq!(e.vcs_ref_head_revision.as_deref(), Some("abc"));
        assert_eq!(e.cicd_pipeline_trigger.as_deref(), Some("push"));
        // The internal parameter wins over the builder id.
        assert_eq!(e.runner_hosting, Some(RunnerHosting::SelfHosted));
        assert_eq!(e.runner_ephemeral, None);
        assert_eq!(e.cicd_pipeline_run_id.as_deref(), Some("42"));
        assert_eq!(e.cicd_pipeline_run_attempt, Some(3));
        assert_eq!(e.correlation_id.as_deref(), Some("sha256:aa"));
        assert!(
            e.message
                .as_deref()
                .is_some_and(|m| m.contains("and 1 more subjects"))
        );
    }

    #[test]
    fn github_hosted_builder_means_hosted_and_ephemeral() {
        let statement = json!({"predicateType": "https://slsa.dev/provenance/v1", "subject": [],
            "predicate": {"runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}});
        let mut e = event();
        fill(&mut e, &statement);
        assert_eq!(e.runner_hosting, Some(RunnerHosting::Hosted));
        assert_eq!(e.runner_ephemeral, Some(true));
    }

    #[test]
    fn slsa_v02_reads_the_config_source() {
        let statement = json!({"predicateType": "https://slsa.dev/provenance/v0.2", "subject": [{"name": "pkg:npm/x@1", "digest": {"sha512": "ff"}}],
            "predicate": {"builder": {"id": "https://github.com/actions/runner"},
                "invocation": {"configSource": {"uri": "git+https://github.com/o/r@refs/heads/main", "entryPoint": ".github/workflows/p.yml", "digest": {"sha1": "s"}},
                               "environment": {"github_event_name": "release", "github_run_id": "9", "github_run_attempt": "2"}}}});
        let mut e = event();
        fill(&mut e, &statement);
        assert_eq!(e.repo.as_deref(), Some("o/r"));
        assert_eq!(e.vcs_ref_head_name.as_deref(), Some("main"));
        assert_eq!(e.cicd_pipeline_run_attempt, Some(2));
        assert_eq!(e.runner_hosting, None);
        assert_eq!(e.correlation_id.as_deref(), Some("sha512:ff"));
    }
}
