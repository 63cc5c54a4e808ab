//! Deleting a project: its namespace deleted with it, or released with its data (`deletionPolicy: Retain`, or an
//! adopted namespace).

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use zenml_api::labels::{self, FIELD_MANAGER};
use zenml_api::status::conditions::{Cond, ConditionType, Reason};
use zenml_api::{DeletionPolicy, Project};

use super::namespace_is_ours;
use super::status::write_status;
use crate::controllers::context::Context;
use crate::write::apply::{Change, delete};
use crate::write::events::{EventAction, EventType};
use crate::write::finalizer;
use crate::{Error, Result};

/// Deletion: Delete removes the namespace and waits until it is gone; Retain (and any adopted namespace) releases
/// it (see `release`). A namespace that is not ours is never touched.
pub(super) async fn cleanup(project: &Project, api: &Api<Project>, ctx: &Context) -> Result<Action> {
    if !finalizer::has(project) {
        return Ok(Action::await_change());
    }
    let name = project.name_any();
    ctx.verdicts_seen.lock().remove(&name);
    let mut ns = ctx.stores.namespaces.get(&ObjectRef::new(&name)).filter(|ns| namespace_is_ours(ns, project));
    // A namespace already being deleted is asked for directly: the cache can lag behind (a watch re-listing after an
    // API outage), and a deletion must not hang on it. One metadata read per deleting project and retry.
    if ns.as_ref().is_some_and(|n| n.meta().deletion_timestamp.is_some()) {
        let api: Api<Namespace> = Api::all(ctx.client.clone());
        if api.get_metadata_opt(&name).await.map_err(|e| Error::kube("get", "Namespace", &name, e))?.is_none() {
            ns = None;
        }
    }
    let cached = ctx.stores.namespaces.get(&ObjectRef::new(&name)).is_some();
    let granted = ctx.grants.lock().get(&name).is_some_and(|e| Some(&e.project_uid) == project.meta().uid.as_ref());
    if !cached && granted {
        // We decided a grant for this namespace and the cache shows no namespace: it may only lag behind our write
        // (a project deleted right after it was provisioned). Finishing now would leave the namespace, its grants
        // and its quota behind, unmanaged and uncounted; the API server says which it is.
        let nss: Api<Namespace> = Api::all(ctx.client.clone());
        if nss.get_metadata_opt(&name).await.map_err(|e| Error::kube("get", "Namespace", &name, e))?.is_some() {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        ctx.grants.forget(&name);
    }
    if let Some(ns) = ns {
        let adopted = ns.annotations().contains_key(labels::ADOPT);
        if project.spec.deletion_policy == DeletionPolicy::Retain || adopted {
            let revoked = release(project, ctx).await?;
            ctx.changed(project, &revoked, EventAction::Release, EventType::Normal).await;
            let why = if adopted { "it was adopted" } else { "deletionPolicy is Retain" };
            ctx.event(
                project,
                EventType::Normal,
                Reason::NamespaceRetained,
                EventAction::Release,
                format!(
                    "namespace {name} is kept with its data because {why}; every access the operator granted in it is \
                     removed, its Pod Security labels, network walls, limits and quota stay (the quota counts in \
                     workspace {ws}'s budget until the namespace is deleted); to make it a project again: kubectl \
                     annotate namespace {name} {}={ws}/{name}",
                    labels::ADOPT,
                    ws = project.spec.workspace,
                ),
            )
            .await;
        } else {
            if ns.meta().deletion_timestamp.is_none() {
                let nss: Api<Namespace> = Api::all(ctx.client.clone());
                delete(&nss, &name, None, ns.meta().uid.as_deref()).await?;
                ctx.event(
                    project,
                    EventType::Normal,
                    Reason::NamespaceDeleting,
                    EventAction::Delete,
                    format!("deleting namespace {name} and everything in it"),
                )
                .await;
            }
            let msg = format!("waiting for namespace {name} and everything in it to be deleted");
            write_status(
                project,
                api,
                ctx,
                vec![Cond::fail(ConditionType::NamespaceReady, Reason::Deleting, msg)],
                None,
            )
            .await?;
            // The namespace watch wakes us when it is gone; the requeue is the safety net (see above).
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }
    finalizer::remove(api, project).await?;
    Ok(Action::await_change())
}

/// Hands the namespace and what is in it back to whoever owns the cluster, without loosening anything:
/// - every access the operator granted goes: the RoleBindings (members', bindings', the runner's, the delegation's),
///   the delegation Role and the runner ServiceAccount, and with it the tokens minted for it;
/// - the workspace's enforced namespace labels (Pod Security) stay, and so do the walls and limits, no longer managed;
/// - the ResourceQuota stays in force and managed, labelled for its workspace, whose budget counts it until the
///   namespace is deleted or adopted again (freeing the share while the quota still bounds the namespace would let
///   delete/recreate cycles multiply the budget; removing the quota would leave the namespace unbounded);
/// - nothing of the project's identity remains: our project label goes, annotations record the former project and
///   workspace, and only an explicit `zenml.io/adopt` hands the namespace to a project again.
async fn release(project: &Project, ctx: &Context) -> Result<Vec<Change>> {
    let name = project.name_any();
    let s = &ctx.stores;
    let c = &ctx.client;
    let changes = s.children.release(c, &name, project.uid().as_deref()).await?;
    // The namespace: applying only what stays drops every other field we owned (our labels, the project's own).
    let enforced = s
        .workspaces
        .get(&ObjectRef::new(&project.spec.workspace))
        .and_then(|w| w.spec.project_defaults.as_ref().map(|d| d.namespace_labels.clone()))
        .unwrap_or_default();
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": name,
        "labels": enforced,
        "annotations": {labels::FORMER_PROJECT: name, labels::FORMER_WORKSPACE: project.spec.workspace},
    }});
    let nss = Api::<Namespace>::all(c.clone());
    nss.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&ns))
        .await
        .map_err(|e| Error::kube("release", "Namespace", &name, e))?;
    // A handover is for one adoption: left in place, it would hand the namespace to the next project of that name.
    if s.namespaces.get(&ObjectRef::new(&name)).is_some_and(|n| n.annotations().contains_key(labels::ADOPT)) {
        let drop_adopt = json!({"metadata": {"annotations": {labels::ADOPT: null}}});
        nss.patch(&name, &PatchParams::default(), &Patch::Merge(&drop_adopt))
            .await
            .map_err(|e| Error::kube("release", "Namespace", &name, e))?;
    }
    Ok(changes)
}
