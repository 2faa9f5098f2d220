//! One writer per native format. Each renders facts into exactly the
//! field layout of the real samples (`shared/real-events/`) and pushes the
//! records into the sink; writers of records that incidents cite return the
//! native id a decoder puts first in `source_event_id`.
//!
//! Output layout (relative to the output directory):
//!
//! | format | path |
//! |---|---|
//! | GitHub webhooks | `github-webhooks/<X-GitHub-Event>.ndjson[.gz]` |
//! | GitHub audit log (streaming) | `github-audit/audit-log.ndjson[.gz]` |
//! | GitLab hooks | `gitlab/hooks.ndjson[.gz]` |
//! | Vault audit device | `vault/vault_audit.log[.gz]` |
//! | CloudTrail (S3 objects) | `cloudtrail/<account>_CloudTrail_<region>_<YYYYMMDD>.json.gz` |
//! | Kubernetes audit | `k8s-audit/audit.log[.gz]` |
//! | Argo CD Applications | `argocd/applications.json` |
//! | OTLP/JSON traces | `otlp/traces.ndjson[.gz]` |
//! | SARIF | `sarif/<tool>-<repo>-<YYYY-MM-DD>.sarif` |
//! | Conftest `--output json` | `conftest/<repo>-<YYYY-MM-DD>-<n>.json` |

pub(crate) mod argocd;
pub(crate) mod audit;
pub(crate) mod cloudtrail;
pub(crate) mod conftest;
pub(crate) mod github;
pub(crate) mod gitlab;
pub(crate) mod k8s;
pub(crate) mod otlp;
pub(crate) mod sarif;
pub(crate) mod vault;

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-10-05T09:12:33Z` (GitHub, CloudTrail, Argo CD).
pub(crate) fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2026-10-05T09:12:33.123Z` (GitHub steps, SARIF).
pub(crate) fn iso_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `2026-10-05T09:12:33.123456Z` (Kubernetes audit).
pub(crate) fn iso_us(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `2026-10-05T09:12:33.123456789Z` (Vault audit).
pub(crate) fn iso_ns(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// `2026-10-05 09:12:33 UTC` (GitLab hooks).
pub(crate) fn gitlab_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Milliseconds since the epoch (GitHub audit `@timestamp`).
pub(crate) fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Nanoseconds since the epoch as a decimal string (OTLP/JSON).
pub(crate) fn epoch_ns(t: DateTime<Utc>) -> String {
    let ns = i128::from(t.timestamp()) * 1_000_000_000 + i128::from(t.timestamp_subsec_nanos());
    ns.to_string()
}
