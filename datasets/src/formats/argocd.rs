//! Argo CD Applications (`argocd/applications.json`, a `kubectl get
//! applications -o json` List of `argoproj.io/v1alpha1` Application
//! objects): spec.source/destination, status.history[] with one entry per
//! sync (id, revision, deployStartedAt, deployedAt, source, initiatedBy)
//! and the last status.operationState.

use serde_json::{Value, json};

use super::iso;
use crate::DatasetError;
use crate::ctx::{ArgoSync, Ctx};
use crate::org::{Org, TEAMS};

fn source(app: &str, env: &str, revision: &str) -> Value {
    json!({
        "repoURL": "https://github.com/acme/helm-charts.git",
        "path": format!("charts/{app}"),
        "targetRevision": if revision.is_empty() { "main" } else { revision },
        "helm": {"valueFiles": [format!("values-{env}.yaml")]},
    })
}

fn initiated(sync: &ArgoSync) -> Value {
    match &sync.initiated_by {
        Some(user) => json!({"username": user}),
        None => json!({"automated": true}),
    }
}

/// Writes every Application of the organisation with its sync history.
pub(crate) fn finish(ctx: &mut Ctx, org: &Org) -> Result<(), DatasetError> {
    let mut items = Vec::new();
    for repo in &org.repos {
        let Some(service) = &repo.service else {
            continue;
        };
        for app in &service.argo {
            let syncs = ctx.argo.get(&app.uid).cloned().unwrap_or_default();
            let created = repo.created_at.max(ctx.start - chrono::Duration::days(120));
            let mut status = json!({
                "health": {"status": "Healthy"},
                "sourceType": "Helm",
                "reconciledAt": iso(ctx.end()),
                "controllerNamespace": "argocd",
            });
            if let (Some(last), Some(map)) = (syncs.last(), status.as_object_mut()) {
                let history: Vec<Value> = syncs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.succeeded)
                    .map(|(i, s)| {
                        json!({
                            "id": i + 1,
                            "revision": s.revision,
                            "deployStartedAt": iso(s.started),
                            "deployedAt": iso(s.finished),
                            "source": source(&service.app, app.env, ""),
                            "initiatedBy": initiated(s),
                        })
                    })
                    .collect();
                map.insert("history".into(), Value::Array(history));
                map.insert(
                    "sync".into(),
                    json!({
                        "status": "Synced",
                        "revision": last.revision,
                        "comparedTo": {
                            "source": source(&service.app, app.env, ""),
                            "destination": {"server": "https://kubernetes.default.svc", "namespace": app.namespace},
                        },
                    }),
                );
                let (group, version) = if last.resource_kind == "Rollout" {
                    ("argoproj.io", "v1alpha1")
                } else {
                    ("apps", "v1")
                };
                let (phase, message) = if last.succeeded {
                    (
                        "Succeeded",
                        "successfully synced (all tasks run)".to_owned(),
                    )
                } else {
                    ("Failed", "one or more objects failed to apply".to_owned())
                };
                map.insert(
                    "operationState".into(),
                    json!({
                        "operation": {
                            "sync": {"revision": last.revision, "syncOptions": ["ServerSideApply=true"]},
                            "initiatedBy": initiated(last),
                            "retry": {"limit": 5},
                        },
                        "phase": phase,
                        "message": message,
                        "startedAt": iso(last.started),
                        "finishedAt": iso(last.finished),
                        "syncResult": {
                            "revision": last.revision,
                            "source": source(&service.app, app.env, ""),
                            "resources": [{
                                "group": group,
                                "version": version,
                                "kind": last.resource_kind,
                                "namespace": app.namespace,
                                "name": service.app,
                                "status": "Synced",
                                "message": format!("{}.{group}/{} serverside-applied", last.resource_kind.to_lowercase(), service.app),
                                "hookPhase": "Running",
                                "syncPhase": "Sync",
                            }],
                        },
                    }),
                );
                map.insert(
                    "summary".into(),
                    json!({"images": [format!("ghcr.io/acme/{}:{}", service.app, &last.revision[..12])]}),
                );
            }
            let sync_policy = if app.env == "production" {
                json!({"syncOptions": ["ServerSideApply=true", "CreateNamespace=false"]})
            } else {
                json!({"automated": {"prune": true, "selfHeal": true}, "syncOptions": ["ServerSideApply=true"]})
            };
            items.push(json!({
                "apiVersion": "argoproj.io/v1alpha1",
                "kind": "Application",
                "metadata": {
                    "name": app.name,
                    "namespace": "argocd",
                    "uid": app.uid,
                    "creationTimestamp": iso(created),
                    "generation": 40 + syncs.len() * 3,
                    "labels": {"team": TEAMS[repo.team].0, "env": app.env},
                    "finalizers": ["resources-finalizer.argocd.argoproj.io"],
                },
                "spec": {
                    "project": TEAMS[repo.team].0,
                    "source": source(&service.app, app.env, ""),
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": app.namespace},
                    "syncPolicy": sync_policy,
                    "revisionHistoryLimit": 100,
                },
                "status": status,
            }));
        }
    }
    let count = items.len() as u64;
    let doc = json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}});
    ctx.sink.document("argocd/applications.json", &doc, count)?;
    Ok(())
}
