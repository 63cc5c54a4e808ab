//! The Workspace reconciler: counts and budgets its projects, keeps itself while they exist, and wakes the
//! projects whose verdict (quota granted, refusal) changed, so siblings settle without a storm of reconciles.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::PostParams;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use zenml_api::labels::FIELD_MANAGER;
use zenml_api::resources::workspace::{delegation, delegation_name, policy_binding};
use zenml_api::status::conditions::{Cond, ConditionType, Reason, ready, stamp};
use zenml_api::{Project, Workspace, WorkspaceBudgetStatus, WorkspaceStatus};

use super::context::Context;
use crate::Result;
use crate::controllers::{EachWatchBacksOff, error_policy, log_queue_errors, with_backoff};
use crate::watch::spec_changes;
use crate::write::apply::{Change, delete, ensure};
use crate::write::events::{EventAction, EventType, type_for};
use crate::write::finalizer;

const RESYNC: Duration = Duration::from_secs(600);

pub async fn reconcile(workspace: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action> {
    ctx.synced().await?;
    let _timer = ctx.metrics.reconcile_timer("Workspace");
    let api: Api<Workspace> = Api::all(ctx.client.clone());
    let name = workspace.name_any();
    let projects = ctx.stores.projects_of(&name);

    if workspace.meta().deletion_timestamp.is_some() {
        return cleanup(&workspace, &api, &ctx, &projects).await;
    }

    finalizer::ensure(&api, &*workspace, &ctx.status_in_flight).await?;
    let delegation = match foreign_delegation(&workspace, &ctx).await? {
        Some(conflict) => {
            ctx.event(&*workspace, EventType::Warning, Reason::NameConflict, EventAction::Apply, conflict.clone())
                .await;
            Cond::fail(ConditionType::DelegationReady, Reason::NameConflict, conflict)
        }
        None => {
            let changes = write_delegation(&workspace, &ctx).await?;
            ctx.changed(&*workspace, &changes, EventAction::Apply, EventType::Normal).await;
            Cond::ok(
                ConditionType::DelegationReady,
                Reason::Applied,
                "workspace admins may manage the workspace's projects",
            )
        }
    };
    let policies = match &ctx.settings.workspace_policy {
        Some(policy) => Some(bind_policies(&workspace, policy, &ctx).await?),
        None => None,
    };
    let decisions = super::project::decide(&ctx, &workspace);
    {
        let seen = ctx.verdicts_seen.lock();
        for (project, verdict) in &decisions.verdicts {
            if seen.get(project) != Some(verdict) {
                // The receiver lives as long as the project controller; if it is gone we are shutting down.
                let _ = ctx.wake_project.unbounded_send(ObjectRef::new(project));
            }
        }
    }
    let budget = workspace
        .spec
        .budget
        .as_ref()
        .map(|b| WorkspaceBudgetStatus { hard: b.hard.clone(), allocated: decisions.allocated.clone() });
    let mut parts = vec![
        Cond::ok(ConditionType::ProjectsReady, Reason::Accepted, format!("{} projects", projects.len())),
        delegation,
    ];
    parts.extend(policies);
    parts.extend(super::default_project::reconcile(&workspace, &ctx).await?);
    write_status(&workspace, &api, &ctx, parts, projects.len(), budget).await?;
    Ok(Action::requeue(RESYNC))
}

/// A deleted workspace: its default project goes first; the finalizer goes once no project is left, and until then
/// the status names the projects that remain.
async fn cleanup(
    workspace: &Workspace,
    api: &Api<Workspace>,
    ctx: &Context,
    projects: &[Arc<Project>],
) -> Result<Action> {
    if !finalizer::has(workspace) {
        return Ok(Action::await_change());
    }
    // The default project is ours to delete: waiting for it would wait forever.
    let released = super::default_project::release(workspace, ctx, None).await?;
    ctx.changed(workspace, &released, EventAction::Delete, EventType::Normal).await;
    if projects.is_empty() {
        finalizer::remove(api, workspace).await?;
        return Ok(Action::await_change());
    }
    let mut names: Vec<String> = projects.iter().map(|p| p.name_any()).collect();
    names.sort();
    let shown = names.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    let msg = format!(
        "{} projects remain ({shown}{}); the workspace is deleted once they are gone",
        names.len(),
        if names.len() > 10 { ", ..." } else { "" }
    );
    write_status(
        workspace,
        api,
        ctx,
        vec![Cond::fail(ConditionType::ProjectsReady, Reason::ProjectsRemain, msg)],
        projects.len(),
        None,
    )
    .await?;
    // Each project's deletion wakes this workspace; the requeue is only a safety net.
    Ok(Action::requeue(RESYNC))
}

/// Why the workspace's delegation objects cannot be written, if a ClusterRole or ClusterRoleBinding of their name
/// exists and is not ours. Every ClusterRole's metadata is cached (`role_names`); ClusterRoleBindings only our own
/// (label-selected), so a binding name that cache lacks is asked for directly, once, before it is created. Someone
/// else's object is never overwritten.
async fn foreign_delegation(workspace: &Workspace, ctx: &Context) -> Result<Option<String>> {
    let name = delegation_name(workspace);
    let ours = |labels: &std::collections::BTreeMap<String, String>| {
        labels.get(zenml_api::labels::MANAGED_BY).map(String::as_str) == Some(zenml_api::labels::MANAGED_BY_VALUE)
    };
    let mut foreign = Vec::new();
    if ctx.stores.role_names.get(&ObjectRef::new(&name)).is_some_and(|r| !ours(r.labels())) {
        foreign.push(format!("ClusterRole {name}"));
    }
    if ctx.stores.cluster_role_bindings.get(&ObjectRef::new(&name)).is_none() && delegation(workspace).1.is_some() {
        let api: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
        let live =
            api.get_metadata_opt(&name).await.map_err(|e| crate::Error::kube("get", "ClusterRoleBinding", &name, e))?;
        if live.is_some_and(|l| !ours(l.labels())) {
            foreign.push(format!("ClusterRoleBinding {name}"));
        }
    }
    Ok((!foreign.is_empty()).then(|| {
        format!(
            "{} already exist(s) and is not managed by zenml-operator, so it is left untouched and the workspace's \
             admins cannot manage its projects through it; rename or delete it (it is not ours to change)",
            foreign.join(" and ")
        )
    }))
}

/// Binds the workspace policy to this workspace's namespaces, with the Workspace as its parameter. Created once and
/// never patched (its content follows from the names alone), so the operator needs only `create` on
/// ValidatingAdmissionPolicyBindings and cannot change anyone else's; it goes with the Workspace by garbage
/// collection. Ours are watched (metadata), so this is a cache read; only a create the API server refuses as
/// existing asks it whose the binding is (one of ours the cache has not delivered yet, or someone else's, which is
/// left alone and reported).
async fn bind_policies(workspace: &Workspace, policy: &str, ctx: &Context) -> Result<Cond> {
    let desired = policy_binding(workspace, policy);
    let name = desired.name_any();
    let kind = "ValidatingAdmissionPolicyBinding";
    let uid = workspace.meta().uid.as_deref();
    let ours = |meta: &PartialObjectMeta<ValidatingAdmissionPolicyBinding>| {
        meta.owner_references().iter().any(|o| Some(o.uid.as_str()) == uid)
    };
    let in_place = Cond::ok(
        ConditionType::PoliciesReady,
        Reason::Applied,
        format!("spec.policies hold in the workspace's projects ({kind} {name})"),
    );
    if ctx.stores.policy_bindings.get(&ObjectRef::new(&name)).is_some_and(|b| ours(&b)) {
        return Ok(in_place);
    }
    let api: Api<ValidatingAdmissionPolicyBinding> = Api::all(ctx.client.clone());
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match api.create(&params, &desired).await {
        Ok(_) => {
            let msg = format!("created {kind} {name}");
            ctx.event(workspace, EventType::Normal, Reason::Applied, EventAction::Apply, msg).await;
            Ok(in_place)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let live = api.get_metadata_opt(&name).await.map_err(|e| crate::Error::kube("get", kind, &name, e))?;
            if live.as_ref().is_some_and(ours) {
                return Ok(in_place);
            }
            let msg = format!(
                "{kind} {name} already exists and is not this workspace's, so spec.policies are not bound to its \
                 projects; rename or delete it (it is not ours to change)"
            );
            ctx.event(workspace, EventType::Warning, Reason::NameConflict, EventAction::Apply, msg.clone()).await;
            Ok(Cond::fail(ConditionType::PoliciesReady, Reason::NameConflict, msg))
        }
        Err(e) => Err(crate::Error::kube("create", kind, &name, e)),
    }
}

/// The workspace's delegation ClusterRole and ClusterRoleBinding, written only where they differ from the cache.
async fn write_delegation(workspace: &Workspace, ctx: &Context) -> Result<Vec<Change>> {
    let (role, binding) = delegation(workspace);
    let roles: Api<ClusterRole> = Api::all(ctx.client.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(ctx.client.clone());
    let live_role = ctx.stores.cluster_roles.get(&ObjectRef::new(&role.name_any()));
    let mut changes: Vec<Change> = ensure(&roles, live_role.as_deref(), &role).await?.into_iter().collect();
    match binding {
        Some(b) => {
            let live = ctx.stores.cluster_role_bindings.get(&ObjectRef::new(&b.name_any()));
            changes.extend(ensure(&bindings, live.as_deref(), &b).await?)
        }
        None => {
            let key = ObjectRef::new(&delegation_name(workspace));
            if let Some(old) = ctx.stores.cluster_role_bindings.get(&key)
                && old.owner_references().iter().any(|o| Some(&o.uid) == workspace.meta().uid.as_ref())
            {
                changes.extend(delete(&bindings, &old.name_any(), None, old.uid().as_deref()).await?);
            }
        }
    }
    Ok(changes)
}

async fn write_status(
    workspace: &Workspace,
    api: &Api<Workspace>,
    ctx: &Context,
    parts: Vec<Cond>,
    projects: usize,
    budget: Option<WorkspaceBudgetStatus>,
) -> Result<()> {
    let previous = workspace.status.clone().unwrap_or_default();
    let ready_cond = ready(&parts, "the workspace is accepted");
    let mut all = parts;
    all.push(ready_cond.clone());
    let status = WorkspaceStatus {
        observed_generation: workspace.meta().generation,
        conditions: stamp(&previous.conditions, all, workspace.meta().generation),
        projects: Some(projects as i32),
        budget: budget.or_else(|| previous.budget.clone().filter(|_| workspace.meta().deletion_timestamp.is_some())),
    };
    if status == previous {
        return Ok(());
    }
    if crate::write::status::apply(api, workspace, ctx, &status, &previous.conditions).await? {
        ctx.event(workspace, type_for(ready_cond.ok), ready_cond.reason, EventAction::Reconcile, ready_cond.message)
            .await;
    }
    Ok(())
}

/// The watches a workspace controller is fed.
pub struct Feeds {
    pub workspaces: mpsc::Receiver<Arc<Workspace>>,
    pub projects: mpsc::Receiver<Arc<Project>>,
    /// The delegation ClusterRoles and ClusterRoleBindings we manage: drift on them.
    pub cluster_roles: BoxStream<'static, watcher::Result<ClusterRole>>,
    pub cluster_role_bindings: BoxStream<'static, watcher::Result<ClusterRoleBinding>>,
    /// The workspace policy bindings we made: one deleted by hand is made again at once.
    pub policy_bindings: BoxStream<'static, watcher::Result<PartialObjectMeta<ValidatingAdmissionPolicyBinding>>>,
}

pub fn controller(
    feeds: Feeds,
    ctx: Arc<Context>,
    config: controller::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    // A project's spec decides what its workspace counts; its status does not.
    let projects = spec_changes(feeds.projects, ctx.stores.projects.clone());
    let for_projects = ctx.clone();
    Controller::for_shared_stream(feeds.workspaces, ctx.stores.workspaces.clone())
        // Its workspace, and any whose default project has its name (a conflict that may have ended).
        .watches_shared_stream(projects, move |p| super::default_project::declaring(&for_projects, &p))
        .watches_stream(feeds.cluster_roles, |c| workspace_of(&c))
        .watches_stream(feeds.cluster_role_bindings, |c| workspace_of(&c))
        .watches_stream(feeds.policy_bindings, |b| workspace_of(&b))
        .trigger_backoff(EachWatchBacksOff)
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(with_backoff(reconcile), error_policy, ctx)
        .for_each(log_queue_errors::<Workspace, _>)
}

/// The Workspace a cluster-scoped child belongs to, by our label.
fn workspace_of<K: Resource>(child: &K) -> Option<ObjectRef<Workspace>> {
    child.labels().get(zenml_api::labels::WORKSPACE).map(|w| ObjectRef::new(w))
}
