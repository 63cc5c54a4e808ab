//! The Workspace reconciler: counts and budgets its projects, keeps itself while they exist, and wakes the
//! projects whose verdict (quota granted, refusal) changed, so siblings settle without a storm of reconciles.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};

use super::apply::{Change, delete, ensure};
use super::conditions::{Cond, ready, stamp};
use super::context::Context;
use super::finalizer;
use crate::Result;
use crate::api::{Workspace, WorkspaceBudgetStatus, WorkspaceStatus};
use crate::resources::workspace::{delegation, delegation_name};

const RESYNC: Duration = Duration::from_secs(600);

pub async fn reconcile(workspace: Arc<Workspace>, ctx: Arc<Context>) -> Result<Action> {
    ctx.synced().await?;
    let _timer = ctx.metrics.reconcile_timer("Workspace");
    let api: Api<Workspace> = Api::all(ctx.client.clone());
    let name = workspace.name_any();
    let projects = ctx.stores.projects_of(&name);

    if workspace.meta().deletion_timestamp.is_some() {
        if !finalizer::has(&*workspace) {
            return Ok(Action::await_change());
        }
        if projects.is_empty() {
            finalizer::remove(&api, &*workspace).await?;
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
            &workspace,
            &api,
            &ctx,
            vec![Cond::fail("ProjectsReady", "ProjectsRemain", msg)],
            projects.len(),
            None,
        )
        .await?;
        // Each project's deletion wakes this workspace; the requeue is only a safety net.
        return Ok(Action::requeue(RESYNC));
    }

    finalizer::ensure(&api, &*workspace, &ctx.status_in_flight).await?;
    let changes = write_delegation(&workspace, &ctx).await?;
    ctx.changed(&*workspace, &changes, "Apply", false).await;
    let decisions = super::project::decide(&ctx, &workspace);
    {
        let seen = ctx.verdicts_seen.lock().expect("not poisoned");
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
    let parts = vec![Cond::ok("ProjectsReady", "Accepted", format!("{} projects", projects.len()))];
    write_status(&workspace, &api, &ctx, parts, projects.len(), budget).await?;
    Ok(Action::requeue(RESYNC))
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
    if super::status::apply(api, workspace, ctx, &status, &previous.conditions).await? {
        ctx.event(workspace, !ready_cond.ok, &ready_cond.reason, "Reconcile", ready_cond.message).await;
    }
    Ok(())
}
