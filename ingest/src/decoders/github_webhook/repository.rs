//! Repository and App payloads: `push`, `branch_protection_rule` and
//! `installation`.

use pipewatch_schema::{Category, IdentityKind};
use serde_json::Value;

use super::{
    Decoded, Reject, action_of, base_event, content_id, first_time, id_at, is_default_branch,
    short_ref,
};
use crate::decoders::Input;
use crate::decoders::util::{Lookup, bool_at, str_at, text_at, time_at};

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// A push to a branch or tag, including creations and deletions.
pub(super) fn push(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "push";
    let reference =
        str_at(record, "/ref").ok_or_else(|| Reject::missing("push payload has no ref"))?;
    let after = id_at(record, "/after", KIND)?;
    let before = str_at(record, "/before").unwrap_or(ZERO_SHA);
    let deleted = bool_at(record, "/deleted").unwrap_or(after == ZERO_SHA);
    // `after` is the pushed commit; a deletion pushes the zero sha, so the
    // commit it removed tells deletions of the same ref apart.
    let source_event_id = if after == ZERO_SHA {
        format!("{after}:{reference}:{before}")
    } else {
        format!("{after}:{reference}")
    };
    let time = first_time(
        KIND,
        &[
            time_at(record, "/repository/pushed_at"),
            time_at(record, "/head_commit/timestamp"),
        ],
        input,
    )?;
    let mut event = base_event(
        record,
        source_event_id,
        time,
        Category::CodeChange,
        KIND.to_owned(),
    );
    if event.actor.is_none() {
        super::set_actor(&mut event, record.get("pusher"));
    }
    event.outcome = "success".to_owned();
    let name = short_ref(reference);
    let ref_kind = if reference.starts_with("refs/tags/") {
        "tag"
    } else {
        "branch"
    };
    event.vcs_ref_head_name = Some(name.to_owned());
    event.vcs_ref_head_revision = (after != ZERO_SHA).then(|| after.clone());
    event.vcs_ref_is_default = if ref_kind == "tag" {
        Some(false)
    } else {
        is_default_branch(record, Some(reference))
    };
    event.target_type = Some(ref_kind.to_owned());
    event.target_name = Some(name.to_owned());
    event.url_full = str_at(record, "/compare").map(str::to_owned);
    let commits = record
        .get("commits")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let verb = if deleted {
        "deleted"
    } else if bool_at(record, "/created") == Some(true) {
        "created"
    } else if bool_at(record, "/forced") == Some(true) {
        "force-pushed"
    } else {
        "pushed"
    };
    event.message = Some(match verb {
        "deleted" => format!("deleted {ref_kind} {name} (was {})", abbreviate(before)),
        _ => format!("{verb} {ref_kind} {name}: {commits} commit(s)"),
    });
    Ok(vec![event])
}

fn abbreviate(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A classic branch protection rule was created, edited or deleted.
pub(super) fn branch_protection_rule(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "branch_protection_rule";
    let id = id_at(record, "/rule/id", KIND)?;
    let action = action_of(record, KIND)?;
    // A deletion carries the rule as it was; its times are older than the deletion.
    let observed_first = action == "deleted";
    let time = first_time(
        KIND,
        &[
            input.observed_at.filter(|_| observed_first),
            time_at(record, "/rule/updated_at"),
            time_at(record, "/rule/created_at"),
        ],
        input,
    )?;
    // A rule is edited many times under one id; the content hash keeps
    // each edit's event (redeliveries hash the same).
    let digest = content_id(record);
    let source_event_id = format!("{id}:{action}:{}", digest.get(..16).unwrap_or(&digest));
    let mut event = base_event(
        record,
        source_event_id,
        time,
        Category::ConfigChange,
        format!("{KIND}.{action}"),
    );
    event.outcome = "success".to_owned();
    event.target_type = Some("branch_protection".to_owned());
    event.target_name = str_at(record, "/rule/name").map(str::to_owned);
    event.message = match action {
        "deleted" => Some("branch protection rule deleted".to_owned()),
        _ => protection_changes(record),
    };
    Ok(vec![event])
}

/// How a setting's strength moves with its value.
#[derive(Clone, Copy)]
enum Setting {
    /// A requirement: `true` is stronger.
    Requires,
    /// A permission: `true` is weaker.
    Allows,
    /// An enforcement level (`off` < `non_admins` < `everyone`) of a requirement.
    RequiredLevel,
    /// An enforcement level of a permission (force pushes, deletions).
    AllowedLevel,
    /// A minimum count: larger is stronger.
    Count,
}

fn setting_kind(name: &str) -> Option<Setting> {
    Some(match name {
        "admin_enforced"
        | "dismiss_stale_reviews_on_push"
        | "require_code_owner_review"
        | "require_last_push_approval"
        | "authorized_actors_only"
        | "authorized_dismissal_actors_only"
        | "strict_required_status_checks_policy"
        | "ignore_approvals_from_contributors"
        | "lock_branch_enforcement_level_enabled" => Setting::Requires,
        "allow_force_pushes" | "allow_deletions" => Setting::Allows,
        "allow_force_pushes_enforcement_level" | "allow_deletions_enforcement_level" => {
            Setting::AllowedLevel
        }
        "required_approving_review_count" => Setting::Count,
        n if n.ends_with("_enforcement_level") || n == "required_conversation_resolution_level" => {
            Setting::RequiredLevel
        }
        _ => return None,
    })
}

fn level(value: &Value) -> Option<i64> {
    match value.as_str()? {
        "off" => Some(0),
        "non_admins" => Some(1),
        "everyone" => Some(2),
        _ => None,
    }
}

/// Whether moving from `old` to `new` weakens the setting; None when unknown.
fn weakens(kind: Setting, old: &Value, new: &Value) -> Option<bool> {
    let (old, new) = match kind {
        Setting::Requires | Setting::Allows => (old.as_bool()? as i64, new.as_bool()? as i64),
        Setting::RequiredLevel | Setting::AllowedLevel => (level(old)?, level(new)?),
        Setting::Count => (old.as_i64()?, new.as_i64()?),
    };
    Some(match kind {
        Setting::Requires | Setting::RequiredLevel | Setting::Count => new < old,
        Setting::Allows | Setting::AllowedLevel => new > old,
    })
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// Summarises `changes` (old values) against `rule` (new values), putting
/// what got weaker first since that is what reviewers look for.
fn protection_changes(record: &Value) -> Option<String> {
    let changes = record.get("changes")?.as_object()?;
    let mut weakened = Vec::new();
    let mut other = Vec::new();
    for (name, change) in changes {
        let Some(old) = change.get("from") else {
            continue;
        };
        let new = record.at(&format!("/rule/{name}")).unwrap_or(&Value::Null);
        if old == new {
            continue;
        }
        let line = format!("{name} {} -> {}", show(old), show(new));
        let weaker = match name.as_str() {
            "required_status_checks" => list_shrank(old, new),
            // More names only widens push access if pushes were already restricted.
            "authorized_actor_names" if restricted_before(record) => list_shrank(new, old),
            "authorized_actor_names" => Some(false),
            _ => setting_kind(name).and_then(|kind| weakens(kind, old, new)),
        };
        if weaker == Some(true) {
            weakened.push(line);
        } else {
            other.push(line);
        }
    }
    let mut parts = Vec::new();
    if !weakened.is_empty() {
        parts.push(format!("weakened: {}", weakened.join(", ")));
    }
    if !other.is_empty() {
        parts.push(format!("also changed: {}", other.join(", ")));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Whether the rule restricted who may push before this edit.
fn restricted_before(record: &Value) -> bool {
    record
        .at("/changes/authorized_actors_only/from")
        .or_else(|| record.at("/rule/authorized_actors_only"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Whether `new` lacks an entry `old` had.
fn list_shrank(old: &Value, new: &Value) -> Option<bool> {
    let old = old.as_array()?;
    let new = new.as_array()?;
    Some(old.iter().any(|item| !new.contains(item)))
}

/// A GitHub App was installed, removed, suspended or granted new permissions.
pub(super) fn installation(record: &Value, input: &Input<'_>) -> Decoded {
    const KIND: &str = "installation";
    let id = id_at(record, "/installation/id", KIND)?;
    let action = action_of(record, KIND)?;
    let time = first_time(
        KIND,
        &[
            time_at(record, "/installation/suspended_at").filter(|_| action == "suspend"),
            time_at(record, "/installation/updated_at"),
            time_at(record, "/installation/created_at"),
        ],
        input,
    )?;
    // suspend/unsuspend and permission grants repeat under one id.
    let digest = content_id(record);
    let source_event_id = format!("{id}:{action}:{}", digest.get(..16).unwrap_or(&digest));
    let mut event = base_event(
        record,
        source_event_id,
        time,
        Category::ConfigChange,
        format!("{KIND}.{action}"),
    );
    event.outcome = "success".to_owned();
    event.identity_kind = IdentityKind::App;
    event.target_type = Some("github_app".to_owned());
    event.target_name = str_at(record, "/installation/app_slug")
        .map(str::to_owned)
        .or_else(|| text_at(record, "/installation/app_id"));
    let account = str_at(record, "/installation/account/login");
    event.target_namespace = account.map(str::to_owned);
    if event.org.is_none() {
        event.org = account.map(str::to_owned);
    }
    let repositories: Vec<&str> = record
        .get("repositories")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|r| str_at(r, "/full_name")).collect())
        .unwrap_or_default();
    if event.repo.is_none() && repositories.len() == 1 {
        event.repo = repositories.first().map(|r| (*r).to_owned());
    }
    let mut parts = Vec::new();
    if let Some(selection) = str_at(record, "/installation/repository_selection") {
        parts.push(format!("repository_selection {selection}"));
    }
    if let Some(permissions) = record
        .at("/installation/permissions")
        .and_then(Value::as_object)
    {
        let write: Vec<&str> = permissions
            .iter()
            .filter(|(_, level)| matches!(level.as_str(), Some("write" | "admin")))
            .map(|(name, _)| name.as_str())
            .collect();
        if !write.is_empty() {
            parts.push(format!("write permissions: {}", write.join(", ")));
        }
    }
    if !repositories.is_empty() {
        parts.push(format!("repositories: {}", repositories.join(", ")));
    }
    event.message = (!parts.is_empty()).then(|| parts.join("; "));
    Ok(vec![event])
}
