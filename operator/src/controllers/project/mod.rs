//! The Project reconciler: one namespace with its quota, limits, network walls, runner and member bindings.

mod admission;
mod cleanup;
mod status;
mod triggers;

pub use admission::{decide, waiting_in};
pub use triggers::{Feeds, controller};

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use zenml_api::labels;
use zenml_api::resources::budget::Verdict;
use zenml_api::resources::{Children, desired, project as build, validate};
use zenml_api::status::conditions::{Cond, ConditionType, Reason};
use zenml_api::status::project::provisioned_conditions;
use zenml_api::{Project, ProjectRoleBinding, ResourceList, Workspace};

use self::admission::verdict;
use self::cleanup::cleanup;
use self::status::{refuse, write_status};
use super::children::Ensured;
use super::context::Context;
use crate::Result;
use crate::write::apply::{delete_child, ensure};
use crate::write::events::{EventAction, EventType};
use crate::write::finalizer;

/// How long a healthy project waits before it is checked again without any event. Events drive everything; this
/// is only a safety net, and a check that finds nothing to do writes nothing.
pub(crate) const RESYNC: Duration = Duration::from_secs(600);
/// How soon a project whose template is blocked by someone else's object looks again (one GET per such template).
const TEMPLATE_CONFLICT_RECHECK: Duration = Duration::from_secs(15);

pub async fn reconcile(project: Arc<Project>, ctx: Arc<Context>) -> Result<Action> {
    ctx.synced().await?;
    let _timer = ctx.metrics.reconcile_timer("Project");
    let api: Api<Project> = Api::all(ctx.client.clone());
    if project.meta().deletion_timestamp.is_some() {
        return cleanup(&project, &api, &ctx).await;
    }
    finalizer::ensure(&api, &*project, &ctx.status_in_flight).await?;
    apply(&project, &api, &ctx).await
}

async fn apply(project: &Project, api: &Api<Project>, ctx: &Context) -> Result<Action> {
    let workspace = match gate(project, ctx, Timestamp::now()) {
        Gate::Open(workspace) => workspace,
        Gate::Wait(quiet) => return Ok(Action::requeue(quiet)),
        Gate::Refuse(reason, message) => return refuse(project, api, ctx, reason, message).await,
        Gate::Terminating(msg) => {
            let cond = Cond::fail(ConditionType::NamespaceReady, Reason::NamespaceTerminating, msg);
            write_status(project, api, ctx, vec![cond], None).await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };
    // Decided last, just before the writes: a grant is recorded as in flight from here on (see `grants`).
    let verdict = verdict(ctx, &workspace, project).unwrap_or_else(|| Verdict::Refuse {
        reason: Reason::WorkspaceNotFound,
        message: "the project is not yet in the workspace's cache".into(),
    });
    ctx.verdicts_seen.lock().insert(project.name_any(), verdict.clone());
    match verdict {
        Verdict::Refuse { reason, message } => refuse(project, api, ctx, reason, message).await,
        Verdict::Provision { quota, exceeded } => provision(project, api, ctx, &workspace, &quota, exceeded).await,
    }
}

/// Whether a project may be provisioned at all, from the caches: before any budget is decided or anything written.
enum Gate {
    Open(Arc<Workspace>),
    /// A new project waits quietly for its workspace this long.
    Wait(Duration),
    Refuse(Reason, String),
    /// Its namespace is being deleted: it is recreated once gone.
    Terminating(String),
}

fn gate(project: &Project, ctx: &Context, now: Timestamp) -> Gate {
    let name = project.name_any();
    let Some(workspace) = ctx.stores.workspaces.get(&ObjectRef::new(&project.spec.workspace)) else {
        // Applied together with its workspace (one `kubectl apply -k`, a GitOps sync), a project often comes first:
        // a new one waits quietly for a moment instead of paging anyone; the workspace's creation wakes it.
        if let Some(quiet) = waiting_for_workspace(project, now) {
            return Gate::Wait(quiet);
        }
        let msg = format!(
            "Workspace {:?} does not exist; create it, and this project becomes Ready by itself",
            project.spec.workspace
        );
        return Gate::Refuse(Reason::WorkspaceNotFound, msg);
    };
    // The schema refuses these names; this catches objects that bypassed it.
    if let Some(problem) = validate::project_name_problem(&name, &ctx.settings.protected_namespaces) {
        return Gate::Refuse(Reason::InvalidName, problem);
    }
    if let Some(prefix) = workspace.spec.project_name_prefix.as_ref().filter(|p| !name.starts_with(p.as_str())) {
        let msg = format!(
            "workspace {} requires project names to start with {prefix:?} (spec.projectNamePrefix); recreate the \
             project as {prefix}{name} or similar",
            workspace.name_any()
        );
        return Gate::Refuse(Reason::InvalidName, msg);
    }
    if let Some(ns) = ctx.stores.namespaces.get(&ObjectRef::new(&name)) {
        if !namespace_is_ours(&ns, project) && !build::adoption_requested(&ns.metadata, project) {
            return Gate::Refuse(Reason::NamespaceConflict, conflict_message(&ns, project));
        }
        if ns.meta().deletion_timestamp.is_some() {
            return Gate::Terminating(format!("namespace {name:?} is being deleted; it is recreated once it is gone"));
        }
    }
    Gate::Open(workspace)
}

/// Writes the project's children for the granted `quota`, and its status.
async fn provision(
    project: &Project,
    api: &Api<Project>,
    ctx: &Context,
    workspace: &Workspace,
    quota: &ResourceList,
    exceeded: Option<String>,
) -> Result<Action> {
    let name = project.name_any();
    let lost = ctx.stores.namespaces.get(&ObjectRef::new(&name)).is_none()
        && project.status.as_ref().is_some_and(|s| s.namespace.is_some());
    let now = Timestamp::now();
    let bindings = super::binding::in_force(ctx, project, workspace, now);
    let bindings: Vec<&ProjectRoleBinding> = bindings.iter().map(|b| &**b).collect();
    let mut children = desired(project, workspace, quota, &ctx.settings.roles, &ctx.network_facts(), &bindings, now);
    let Ensured { changes, forbidden, templates } = match write_children(project, &children, ctx).await {
        Ok(written) => written,
        Err(e) => {
            let (cond, reason) = match &e {
                e if e.api_code() == Some(403) => (ConditionType::AccessReady, Reason::Forbidden),
                _ => (ConditionType::NamespaceReady, Reason::ApplyFailed),
            };
            let msg = format!("{e}");
            write_status(project, api, ctx, vec![Cond::fail(cond, reason, msg)], None).await?;
            return Err(e);
        }
    };
    if lost {
        let note = format!(
            "namespace {name} was deleted by someone else and has been recreated; everything that was in it is lost"
        );
        ctx.event(project, EventType::Warning, Reason::NamespaceRecreated, EventAction::Recreate, note).await;
    }
    ctx.changed(project, &changes, EventAction::Apply, EventType::Normal).await;

    let mut conds = provisioned_conditions(project, workspace, &children, exceeded);
    if !forbidden.is_empty() {
        let msg = format!(
            "the operator may not bind: {}; grant it `bind` on these ClusterRoles (the chart's customRoles value) or remove them from the workspace",
            forbidden.join("; ")
        );
        conds.retain(|c| c.type_ != ConditionType::AccessReady);
        conds.push(Cond::fail(ConditionType::AccessReady, Reason::BindForbidden, msg));
    }
    let templates_ready = zenml_api::status::templates::condition(&children.templates, &templates);
    let before = project.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == templates_ready.type_));
    if !templates_ready.ok && before.is_none_or(|c| c.reason != templates_ready.reason) {
        // Said even when Ready was already False for another reason (whose Event this would not be).
        let msg = templates_ready.message.clone();
        ctx.event(project, EventType::Warning, templates_ready.reason, EventAction::Apply, msg).await;
    }
    conds.push(templates_ready);
    // The status counts the templates applied: those without a problem.
    children.templates.objects.retain(|o| !templates.iter().any(|p| o.metadata.name.as_ref() == Some(&p.name)));
    let usage_wait = write_status(project, api, ctx, conds, Some(&children)).await?;
    // Someone else's object in a template's place is not watched (not ours): whether it is gone is asked again soon.
    let resync = match templates.iter().any(|p| p.reason == Reason::TemplateConflict) {
        true => TEMPLATE_CONFLICT_RECHECK,
        false => RESYNC,
    };
    Ok(Action::requeue(status::until_expiry(project, usage_wait.map_or(resync, |w| w.min(resync)))))
}

pub(super) fn namespace_is_ours(ns: &PartialObjectMeta<Namespace>, project: &Project) -> bool {
    build::namespace_is_ours(&ns.metadata, project)
}

/// Why a namespace is not this project's, and the explicit step that hands it over.
fn conflict_message(ns: &PartialObjectMeta<Namespace>, project: &Project) -> String {
    let name = project.name_any();
    let adopt = format!("kubectl annotate namespace {name} {}={}/{name}", labels::ADOPT, project.spec.workspace);
    let held_by = ns.labels().get(labels::PROJECT).map(|_| {
        let ws = ns.labels().get(labels::WORKSPACE).map_or("?", String::as_str);
        let uid = ns.annotations().get(labels::PROJECT_UID).map_or("unrecorded", String::as_str);
        format!("it was provisioned for another instance of project {name} (workspace {ws}, uid {uid}), not this one")
    });
    let why = held_by.unwrap_or_else(|| "it is not managed by zenml-operator".to_owned());
    format!(
        "namespace {name:?} already exists and {why}, so it is left untouched; to hand it, with everything in it, to \
         this project, a cluster admin annotates it: {adopt}"
    )
}

/// Applies every child that differs from the cache and deletes the ones this project no longer wants.
async fn write_children(project: &Project, c: &Children, ctx: &Context) -> Result<Ensured> {
    let ns = project.name_any();
    let client = &ctx.client;
    let s = &ctx.stores;
    // The namespace first: everything else lives in it.
    let live_ns = s.namespaces.get(&ObjectRef::new(&ns));
    let mut written = Ensured::default();
    written.changes.extend(ensure(&Api::<Namespace>::all(client.clone()), live_ns.as_deref(), &c.namespace).await?);
    let ensured = s.children.ensure(client, c).await?;
    written.changes.extend(ensured.changes);
    written.forbidden.extend(ensured.forbidden);
    written.templates.extend(ensured.templates);
    // Children this project owned but no longer wants (a member role removed, isolation turned off, ...).
    written.changes.extend(s.children.prune(client, &ns, project.uid().as_deref(), c).await?);
    // RoleBindings of ProjectRoleBindings that are gone. The garbage collector would delete them too, but only once
    // it has discovered the CRD (up to half a minute after it is installed): revoking access must not wait for that.
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
    for rb in s.children.role_bindings.in_namespace(&ns) {
        let Some(binding) = &rb.binding else { continue };
        let owner_alive =
            s.bindings.get(&ObjectRef::new(binding)).is_some_and(|b| rb.controlled_by(b.meta().uid.as_deref()));
        if !owner_alive {
            written.changes.extend(delete_child(&bindings, &rb).await?);
        }
    }
    Ok(written)
}

/// How long a new project whose workspace does not exist waits before it says so (a typo should show soon).
const WORKSPACE_GRACE: Duration = Duration::from_secs(10);

/// How long a project that has never reported anything, and is younger than [`WORKSPACE_GRACE`], waits quietly for
/// its workspace; `None` to report now. A negative age (our clock behind the API server's) is not trusted as new.
fn waiting_for_workspace(project: &Project, now: Timestamp) -> Option<Duration> {
    if project.status.as_ref().is_some_and(|s| !s.conditions.is_empty()) {
        return None;
    }
    let created = project.meta().creation_timestamp.as_ref()?.0;
    let age = Duration::try_from(now.duration_since(created)).ok()?;
    WORKSPACE_GRACE.checked_sub(age).filter(|left| !left.is_zero())
}
