//! A workspace's default project (`spec.defaultProject`): created and kept by the workspace reconciler, with ZenML
//! project ID `default`, owned by the workspace. A Project of that name that the operator did not make for this
//! workspace instance is never adopted or changed; one it made and no longer wants (the field removed or renamed,
//! the workspace deleted) is deleted, and the project's own finalizer honours its `deletionPolicy`.

use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use zenml_api::labels::FIELD_MANAGER;
use zenml_api::resources::workspace::{default_project, default_project_name, is_default_project_of};
use zenml_api::status::conditions::{Cond, ConditionType, Reason};
use zenml_api::{Project, Workspace};

use super::context::Context;
use crate::Result;
use crate::write::apply::{Change, Verb, delete, ensure};
use crate::write::events::{EventAction, EventType};

/// Makes the declared default project exist as declared and deletes the ones this workspace made and no longer
/// declares. The condition to report, when one is declared.
pub(super) async fn reconcile(workspace: &Workspace, ctx: &Context) -> Result<Option<Cond>> {
    let api: Api<Project> = Api::all(ctx.client.clone());
    let wanted = default_project(workspace);
    let keep = wanted.as_ref().map(|p| p.name_any());
    let mut changes = release(workspace, ctx, keep.as_deref()).await?;
    let Some(desired) = wanted else {
        ctx.changed(workspace, &changes, EventAction::Apply, EventType::Normal).await;
        return Ok(None);
    };
    let name = desired.name_any();
    let live = ctx.stores.projects.get(&ObjectRef::new(&name));
    let cond = match live {
        Some(live) if !is_default_project_of(&live, workspace) => conflict(workspace, ctx, &live).await,
        Some(live) if live.meta().deletion_timestamp.is_some() => Cond::fail(
            ConditionType::DefaultProjectReady,
            Reason::Deleting,
            format!("default project {name} is being deleted; it is made again once it is gone"),
        ),
        Some(live) => {
            changes.extend(ensure(&api, Some(&*live), &desired).await?);
            applied(&name)
        }
        None => match create(&api, &desired, workspace).await? {
            Created::Now(change) => {
                changes.push(*change);
                applied(&name)
            }
            Created::Before => applied(&name),
            Created::BySomeoneElse(live) => conflict(workspace, ctx, &live).await,
        },
    };
    ctx.changed(workspace, &changes, EventAction::Apply, EventType::Normal).await;
    Ok(Some(cond))
}

/// Deletes every default project this workspace made except `keep` (all of them when the workspace is deleted).
/// Preconditioned on the uid, so a project recreated by someone else meanwhile is never deleted.
pub(super) async fn release(workspace: &Workspace, ctx: &Context, keep: Option<&str>) -> Result<Vec<Change>> {
    let api: Api<Project> = Api::all(ctx.client.clone());
    let mut changes = Vec::new();
    for p in ctx.stores.projects_of(&workspace.name_any()) {
        let unwanted = keep != Some(p.name_any().as_str()) && p.meta().deletion_timestamp.is_none();
        if unwanted && is_default_project_of(&p, workspace) {
            changes.extend(delete(&api, &p.name_any(), None, p.uid().as_deref()).await?);
        }
    }
    Ok(changes)
}

/// The workspaces whose default project is named `project` (besides its own workspace): a conflicting Project of
/// another workspace going away must wake them.
pub(super) fn declaring(ctx: &Context, project: &Project) -> Vec<ObjectRef<Workspace>> {
    let name = project.name_any();
    let mut wake = vec![ObjectRef::new(&project.spec.workspace)];
    wake.extend(
        ctx.stores
            .workspaces
            .state()
            .iter()
            .filter(|w| w.name_any() != project.spec.workspace && default_project_name(w).as_deref() == Some(&name))
            .map(|w| ObjectRef::from_obj(&**w)),
    );
    wake
}

fn applied(name: &str) -> Cond {
    Cond::ok(
        ConditionType::DefaultProjectReady,
        Reason::Applied,
        format!("default project {name} (ZenML project ID default) is the workspace's"),
    )
}

/// Someone else's Project holds the name: left untouched, reported on the workspace and in an Event.
async fn conflict(workspace: &Workspace, ctx: &Context, live: &Project) -> Cond {
    let msg = format!(
        "Project {} already exists (workspace {}) and was not made by zenml-operator as this workspace's default \
         project, so it is left untouched and the workspace has no default project; set spec.defaultProject.name to \
         a free name, or delete that Project (it is not ours to change)",
        live.name_any(),
        live.spec.workspace
    );
    ctx.event(workspace, EventType::Warning, Reason::NameConflict, EventAction::Apply, msg.clone()).await;
    Cond::fail(ConditionType::DefaultProjectReady, Reason::NameConflict, msg)
}

enum Created {
    Now(Box<Change>),
    /// Ours already, not yet in the cache.
    Before,
    BySomeoneElse(Box<Project>),
}

/// Creates the project (never a server-side apply onto a name the cache does not know: that would take over a
/// Project someone else just created). Refused as existing, it asks whose it is.
async fn create(api: &Api<Project>, desired: &Project, workspace: &Workspace) -> Result<Created> {
    let name = desired.name_any();
    let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() };
    match api.create(&params, desired).await {
        Ok(created) => Ok(Created::Now(Box::new(Change {
            verb: Verb::Created,
            kind: "Project".to_owned(),
            name: name.clone(),
            object: created.object_ref(&()),
        }))),
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let live = api.get_opt(&name).await.map_err(|e| crate::Error::kube("get", "Project", &name, e))?;
            match live {
                None => Ok(Created::Before), // gone again meanwhile: the deletion wakes the workspace
                Some(p) if is_default_project_of(&p, workspace) => Ok(Created::Before),
                Some(p) => Ok(Created::BySomeoneElse(Box::new(p))),
            }
        }
        Err(e) => Err(crate::Error::kube("create", "Project", &name, e)),
    }
}
