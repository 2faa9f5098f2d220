//! SARIF 2.1.0 logs of scanner runs (`sarif/<tool>-<repo>-<date>.sarif`,
//! one file per tool, repository and day holding every scan run of that
//! day): CodeQL, Trivy and gitleaks drivers with rules carrying
//! `security-severity`, results with `partialFingerprints`, invocation
//! times and version-control provenance. Findings persist from scan to
//! scan with stable fingerprints, as they do in real code scanning.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::iso_ms;
use crate::DatasetError;
use crate::ctx::{Ctx, Finding, SarifFile};
use crate::org::{Lang, Repo, Tool};
use crate::rng::{Rng, between, chance, index, pick, sha256_hex};

const CODEQL_RULES: &[(&str, &str, f64, &str)] = &[
    (
        "sql-injection",
        "Database query built from user-controlled sources",
        8.8,
        "error",
    ),
    (
        "path-injection",
        "Uncontrolled data used in path expression",
        7.5,
        "error",
    ),
    (
        "log-injection",
        "Log entries created from user input",
        7.8,
        "error",
    ),
    (
        "clear-text-logging",
        "Clear-text logging of sensitive information",
        7.5,
        "error",
    ),
    (
        "request-forgery",
        "Server-side request forgery",
        9.1,
        "error",
    ),
    (
        "weak-cryptographic-algorithm",
        "Use of a broken or weak cryptographic algorithm",
        7.5,
        "warning",
    ),
    (
        "incomplete-url-sanitization",
        "Incomplete URL substring sanitization",
        7.8,
        "warning",
    ),
    (
        "missing-rate-limiting",
        "Missing rate limiting",
        7.5,
        "warning",
    ),
];

const PACKAGES: &[(&str, &str)] = &[
    ("openssl", "3.0.15-1~deb12u1"),
    ("libexpat1", "2.5.0-1+deb12u1"),
    ("zlib1g", "1:1.2.13.dfsg-1"),
    ("libc6", "2.36-9+deb12u9"),
    ("curl", "7.88.1-10+deb12u8"),
    ("golang.org/x/net", "v0.33.0"),
    ("github.com/golang-jwt/jwt/v4", "v4.5.1"),
    ("urllib3", "2.2.2"),
    ("requests", "2.31.0"),
    ("cross-spawn", "7.0.3"),
    ("micromatch", "4.0.5"),
    ("libxml2", "2.9.14+dfsg-1.3~deb12u1"),
];

const LEAK_RULES: &[(&str, &str)] = &[
    ("generic-api-key", "Generic API Key"),
    ("slack-webhook-url", "Slack Webhook"),
    ("aws-access-token", "AWS Access Token"),
    ("private-key", "Private Key"),
    ("github-pat", "GitHub Personal Access Token"),
];

fn lang_prefix(lang: Lang) -> &'static str {
    match lang {
        Lang::Go => "go",
        Lang::Node => "js",
        Lang::Python => "py",
        Lang::Java => "java",
        Lang::Swift => "swift",
        Lang::Terraform => "tf",
    }
}

fn source_path(rng: &mut Rng, lang: Lang) -> String {
    let dir = pick(
        rng,
        &[
            "internal/api",
            "internal/store",
            "src/handlers",
            "src/lib",
            "pkg/client",
            "app/routes",
        ],
    );
    let ext = match lang {
        Lang::Go => "go",
        Lang::Node => "ts",
        Lang::Python => "py",
        Lang::Java => "java",
        Lang::Swift => "swift",
        Lang::Terraform => "tf",
    };
    let file = pick(
        rng,
        &[
            "server", "handler", "query", "auth", "export", "util", "config",
        ],
    );
    format!("{dir}/{file}.{ext}")
}

/// A new finding of `tool` in `repo`.
pub(crate) fn new_finding(rng: &mut Rng, repo: &Repo, tool: Tool) -> Finding {
    let line = between(rng, 12, 480) as u32;
    let (rule, severity, level, path, message) = match tool {
        Tool::CodeQl => {
            let (id, text, sev, level) = *pick(rng, CODEQL_RULES);
            let path = source_path(rng, repo.lang);
            (
                format!("{}/{id}", lang_prefix(repo.lang)),
                sev,
                level,
                path,
                format!("{text}."),
            )
        }
        Tool::Trivy => {
            let (pkg, version) = *pick(rng, PACKAGES);
            let cve = format!(
                "CVE-{}-{}",
                between(rng, 2023, 2026),
                between(rng, 10_000, 58_999)
            );
            let sev = [5.3, 6.5, 7.5, 8.1, 9.8][index(rng, 5)];
            let level = if sev >= 7.0 { "error" } else { "warning" };
            let message = format!(
                "Package: {pkg}\nInstalled Version: {version}\nVulnerability {cve}\nSeverity: {}\nLink: [{cve}](https://avd.aquasec.com/nvd/{})",
                if sev >= 9.0 {
                    "CRITICAL"
                } else if sev >= 7.0 {
                    "HIGH"
                } else {
                    "MEDIUM"
                },
                cve.to_lowercase()
            );
            (
                cve,
                sev,
                level,
                format!("ghcr.io/acme/{}", repo.name),
                message,
            )
        }
        Tool::Gitleaks => {
            let (id, text) = *pick(rng, LEAK_RULES);
            let path = format!(
                "{}/fixtures/{}.json",
                pick(rng, &["test", "testdata", "spec"]),
                pick(rng, &["config", "sample", "creds"])
            );
            let message = format!("{text} has detected secret for file {path}.");
            (id.to_owned(), 7.0, "error", path, message)
        }
    };
    let fingerprint = format!(
        "{}:{}",
        &sha256_hex(&format!(
            "{}|{rule}|{path}|{line}|{}",
            repo.full_name,
            index(rng, 1 << 30)
        ))[..16],
        between(rng, 1, 3)
    );
    Finding {
        rule,
        severity,
        level,
        path,
        line,
        message,
        fingerprint,
    }
}

/// The standing findings of a repository for a tool, created on first use.
pub(crate) fn baseline(ctx: &mut Ctx, repo_idx: usize, repo: &Repo, tool: Tool) -> Vec<Finding> {
    if let Some(found) = ctx.findings.get(&(repo_idx, tool)) {
        return found.clone();
    }
    let count = match tool {
        Tool::CodeQl => between(&mut ctx.rng, 0, 4),
        Tool::Trivy => between(&mut ctx.rng, 3, 11),
        Tool::Gitleaks => i64::from(chance(&mut ctx.rng, 0.35)),
    };
    let found: Vec<Finding> = (0..count)
        .map(|_| new_finding(&mut ctx.rng, repo, tool))
        .collect();
    ctx.findings.insert((repo_idx, tool), found.clone());
    found
}

fn driver(tool: Tool, findings: &[&Finding]) -> (Value, Vec<String>) {
    let mut rule_ids: Vec<String> = Vec::new();
    for f in findings {
        if !rule_ids.contains(&f.rule) {
            rule_ids.push(f.rule.clone());
        }
    }
    let rules: Vec<Value> = rule_ids
        .iter()
        .map(|id| {
            let f = findings.iter().find(|f| &f.rule == id);
            let sev = f.map_or(5.0, |f| f.severity);
            let level = f.map_or("warning", |f| f.level);
            json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": f.map(|f| f.message.lines().next().unwrap_or_default().to_owned()).unwrap_or_default()},
                "defaultConfiguration": {"level": level},
                "properties": {"security-severity": format!("{sev:.1}"), "tags": ["security"]},
            })
        })
        .collect();
    let driver = match tool {
        Tool::CodeQl => {
            json!({"name": "CodeQL", "organization": "GitHub", "semanticVersion": "2.23.1", "version": "2.23.1", "rules": rules})
        }
        Tool::Trivy => {
            json!({"name": "Trivy", "informationUri": "https://github.com/aquasecurity/trivy", "fullName": "Trivy Vulnerability Scanner", "version": "0.66.0", "rules": rules})
        }
        Tool::Gitleaks => {
            json!({"name": "gitleaks", "semanticVersion": "v8.28.0", "version": "8.28.0", "informationUri": "https://github.com/gitleaks/gitleaks", "rules": rules})
        }
    };
    (driver, rule_ids)
}

/// One scan: appends a SARIF run to the day's file; returns how many results.
#[allow(clippy::too_many_arguments)]
pub(crate) fn scan(
    ctx: &mut Ctx,
    repo: &Repo,
    tool: Tool,
    findings: &[Finding],
    sha: &str,
    branch: &str,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
) -> u64 {
    let refs: Vec<&Finding> = findings.iter().collect();
    let (driver, rule_ids) = driver(tool, &refs);
    let results: Vec<Value> = refs
        .iter()
        .map(|f| {
            let uri_base = if tool == Tool::Trivy {
                "ROOTPATH"
            } else {
                "%SRCROOT%"
            };
            json!({
                "ruleId": f.rule,
                "ruleIndex": rule_ids.iter().position(|r| r == &f.rule).unwrap_or_default(),
                "level": f.level,
                "message": {"text": f.message},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": uri_base},
                    "region": {"startLine": f.line},
                }}],
                "partialFingerprints": {"primaryLocationLineHash": f.fingerprint},
            })
        })
        .collect();
    let count = results.len() as u64;
    let run = json!({
        "tool": {"driver": driver},
        "results": results,
        "invocations": [{
            "executionSuccessful": true,
            "startTimeUtc": iso_ms(started),
            "endTimeUtc": iso_ms(ended.max(started + Duration::seconds(1))),
        }],
        "versionControlProvenance": [{
            "repositoryUri": repo.url(),
            "revisionId": sha,
            "branch": format!("refs/heads/{branch}"),
        }],
        "columnKind": "utf16CodeUnits",
    });
    let name = format!(
        "sarif/{}-{}-{}.sarif",
        tool.file_name(),
        repo.name,
        started.format("%Y-%m-%d")
    );
    let entry = ctx.sarif.entry(name).or_insert(SarifFile {
        runs: Vec::new(),
        results: 0,
    });
    entry.runs.push(run);
    entry.results += count;
    count
}

/// Moves every SARIF file into the sink.
pub(crate) fn finish(ctx: &mut Ctx) -> Result<(), DatasetError> {
    let files = std::mem::take(&mut ctx.sarif);
    for (name, file) in files {
        let doc = json!({
            "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
            "version": "2.1.0",
            "runs": file.runs,
        });
        ctx.sink.document(&name, &doc, file.results)?;
    }
    Ok(())
}
