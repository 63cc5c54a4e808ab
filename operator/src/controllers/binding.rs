//! The ProjectRoleBinding reconciler: one RoleBinding in the project namespace, only for roles the workspace allows,
//! removed when the grant expires or the role stops being allowed.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use zenml_api::resources::binding::{Peer, Refusal, bound_to, desired, role_binding_name, subject_projects};
use zenml_api::resources::project::namespace_is_ours;
use zenml_api::status::binding::bound;
use zenml_api::status::conditions::{Cond, ConditionType, Reason, stamp};
use zenml_api::{BoundTo, Project, ProjectRoleBinding, ProjectRoleBindingStatus, Workspace};

use super::children::Touched;
use super::context::Context;
use crate::controllers::{EachWatchBacksOff, error_policy, log_queue_errors, with_backoff};
use crate::watch::spec_changes;
use crate::write::apply::{Verb, delete_child, ensure_child};
use crate::write::events::{EventAction, EventType, type_for};
use crate::{Error, Result};

const RESYNC: Duration = Duration::from_secs(600);

pub async fn reconcile(binding: Arc<ProjectRoleBinding>, ctx: Arc<Context>) -> Result<Action> {
    ctx.synced().await?;
    let _timer = ctx.metrics.reconcile_timer("ProjectRoleBinding");
    if binding.meta().deletion_timestamp.is_some() {
        // Its RoleBinding is owned by it: the garbage collector removes it.
        return Ok(Action::await_change());
    }
    let s = &ctx.stores;
    let spec = &binding.spec;
    let project = s.projects.get(&ObjectRef::new(&spec.project)).filter(|p| p.meta().deletion_timestamp.is_none());
    let peers = peers(&binding, project.as_deref(), ctx.as_ref());
    let now = Timestamp::now();
    let api: Api<ProjectRoleBinding> = Api::all(ctx.client.clone());
    let was_bound = binding
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .any(|c| c.type_ == ConditionType::Ready && c.reason == Reason::Bound);
    let wanted = wanted(&binding, project.as_deref(), &peers, &ctx, now);
    // A RoleBinding of ours that vanished is restored, unless it went because its binding did: the garbage collector
    // deletes the RoleBinding of a deleted binding, and that deletion can reach us before the binding's own (another
    // watch), so the cached binding would grant again, for a moment, what was just revoked (bulk deletes of bindings
    // showed it). Only a vanished RoleBinding asks the API server: not a new binding's first one, nor one we just
    // wrote whose watch event is still on its way.
    if let Ok(rb) = &wanted
        && was_bound
        && s.children.role_bindings.get(&spec.project, &rb.name_any()).is_none()
        && !s.children.role_bindings.pending(&spec.project, &rb.name_any())
        && !exists(&api, &binding).await?
    {
        return Ok(Action::await_change());
    }
    let target = Target { binding: &binding, api: &api, ctx: &ctx, now };
    match (wanted, project) {
        (Ok(rb), Some(project)) => grant(&target, rb, &project, &peers, was_bound).await,
        (Ok(_), None) => unreachable!("a RoleBinding is only desired for an existing project"),
        (Err(refusal), project) => revoke(&target, refusal, project.as_deref()).await,
    }
}

/// The RoleBinding the binding should have, or why it may have none.
fn wanted(
    binding: &ProjectRoleBinding,
    project: Option<&Project>,
    peers: &BTreeMap<String, Peer>,
    ctx: &Context,
    now: Timestamp,
) -> std::result::Result<RoleBinding, Refusal> {
    let s = &ctx.stores;
    let workspace = project.and_then(|p| s.workspaces.get(&ObjectRef::new(&p.spec.workspace)));
    // Ours for this project instance (by uid): an orphan left by a same-named project is never granted into.
    let namespace_ready = s.namespaces.get(&ObjectRef::new(&binding.spec.project)).is_some_and(|ns| {
        project.is_some_and(|p| namespace_is_ours(&ns.metadata, p)) && ns.meta().deletion_timestamp.is_none()
    });
    let rb = desired(binding, project, workspace.as_deref(), namespace_ready, &ctx.settings.roles, now, peers)?;
    // A RoleBinding to a ClusterRole that does not exist grants nothing and says nothing: say it.
    match s.role_names.get(&ObjectRef::new(&rb.role_ref.name)) {
        Some(_) => Ok(rb),
        None => Err(Refusal::RoleNotFound(rb.role_ref.name.clone())),
    }
}

/// The binding being reconciled, and what writing for it needs.
struct Target<'a> {
    binding: &'a ProjectRoleBinding,
    api: &'a Api<ProjectRoleBinding>,
    ctx: &'a Context,
    now: Timestamp,
}

/// Writes the RoleBinding and reports it bound; a 403 (the operator may not bind that role) is reported, not retried.
async fn grant(
    t: &Target<'_>,
    rb: RoleBinding,
    project: &Project,
    peers: &BTreeMap<String, Peer>,
    was_bound: bool,
) -> Result<Action> {
    let (binding, ctx) = (t.binding, t.ctx);
    let rb_api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &binding.spec.project);
    match ensure_child(&rb_api, &ctx.stores.children.role_bindings, &rb).await {
        Ok(change) => {
            if let Some(change) = change {
                // A first RoleBinding is told by the Bound event below; a repaired one needs its own.
                if change.verb == Verb::Created && !was_bound {
                    ctx.record_write(&change);
                } else {
                    let changes = std::slice::from_ref(&change);
                    ctx.changed(binding, changes, EventAction::Apply, EventType::Normal).await;
                }
            }
            let bound_to = Some(bound_to(binding, project, peers));
            write_status(binding, t.api, ctx, bound(&rb, &binding.spec), Some(rb.name_any()), bound_to).await?;
            Ok(until_expiry(binding, t.now))
        }
        Err(e) if e.api_code() == Some(403) => {
            let msg = format!(
                "the operator may not bind ClusterRole {}: {}; grant it `bind` on that ClusterRole (the chart's customRoles value)",
                rb.role_ref.name,
                e.api_message()
            );
            let keep = binding.status.as_ref().and_then(|s| s.bound_to.clone());
            let cond = Cond::fail(ConditionType::Ready, Reason::BindForbidden, msg);
            write_status(binding, t.api, ctx, cond, None, keep).await?;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        Err(e) => Err(e),
    }
}

/// Nothing may stay granted that is not allowed now: removes the RoleBinding if there is one, and says why.
async fn revoke(t: &Target<'_>, refusal: Refusal, project: Option<&Project>) -> Result<Action> {
    let (binding, ctx) = (t.binding, t.ctx);
    let rb_api: Api<RoleBinding> = Api::namespaced(ctx.client.clone(), &binding.spec.project);
    let rb = ctx.stores.children.role_bindings.get(&binding.spec.project, &role_binding_name(binding));
    if let Some(rb) = rb.filter(|rb| rb.controlled_by(binding.meta().uid.as_deref()))
        && let Some(change) = delete_child(&rb_api, &rb).await?
    {
        let type_ = type_for(refusal == Refusal::Expired);
        ctx.changed(binding, std::slice::from_ref(&change), EventAction::Revoke, type_).await;
    }
    let project_queued = project.is_some_and(|p| p.status.is_none());
    if let Some(quiet) = waiting_quietly(binding, &refusal, project_queued, t.now) {
        return Ok(Action::requeue(quiet));
    }
    let cond = Cond::fail(ConditionType::Ready, refusal.reason(), refusal.message(binding));
    let keep = binding.status.as_ref().and_then(|s| s.bound_to.clone());
    write_status(binding, t.api, ctx, cond, None, keep).await?;
    // The project's namespace comes on another watch than the project itself, so the event that would wake us may
    // come first: a passing wait looks again soon (a cache read, no write).
    let again = if matches!(refusal, Refusal::ProjectNotReady(_)) { Duration::from_secs(5) } else { RESYNC };
    Ok(Action::requeue(again))
}

/// The project's bindings that its members count and its delegation Role follows: those that bind themselves, by the
/// same verdict (right project instance, allowed role, not expired, subjects of the right instances and workspaces).
/// A binding left from a deleted project of the same name must not make its admins this project's delegated admins.
pub fn in_force(
    ctx: &Context,
    project: &Project,
    workspace: &Workspace,
    now: Timestamp,
) -> Vec<Arc<ProjectRoleBinding>> {
    let mut bindings = ctx.stores.bindings_of(&project.name_any());
    bindings.retain(|b| {
        let peers = peers(b, Some(project), ctx);
        desired(b, Some(project), Some(workspace), true, &ctx.settings.roles, now, &peers).is_ok()
    });
    bindings
}

/// The projects whose ServiceAccounts the binding names, as the cache shows them (those being deleted are gone).
fn peers(binding: &ProjectRoleBinding, project: Option<&Project>, ctx: &Context) -> BTreeMap<String, Peer> {
    let s = &ctx.stores;
    subject_projects(binding)
        .filter_map(|name| {
            let p = s.projects.get(&ObjectRef::new(name)).filter(|p| p.meta().deletion_timestamp.is_none())?;
            let trusts_back = project.is_some_and(|mine| {
                s.workspaces
                    .get(&ObjectRef::new(&p.spec.workspace))
                    .is_some_and(|w| w.spec.trusted_workspaces.contains(&mine.spec.workspace))
            });
            let peer = Peer { uid: p.uid().unwrap_or_default(), workspace: p.spec.workspace.clone(), trusts_back };
            Some((name.to_owned(), peer))
        })
        .collect()
}

/// Whether `binding` still exists, undeleted, on the API server (not just in our cache).
async fn exists(api: &Api<ProjectRoleBinding>, binding: &ProjectRoleBinding) -> Result<bool> {
    let name = binding.name_any();
    let live = api.get_metadata_opt(&name).await.map_err(|e| Error::kube("get", "ProjectRoleBinding", &name, e))?;
    Ok(live.is_some_and(|b| b.meta().uid == binding.meta().uid && b.meta().deletion_timestamp.is_none()))
}

/// How long a new binding whose project does not exist waits before it says so (a typo should show soon).
const NOT_FOUND_GRACE: Duration = Duration::from_secs(10);
/// How long a new binding whose project exists but is not provisioned yet waits before it says so. At bulk (many
/// projects applied at once) provisioning takes a while; the project's own status says why meanwhile.
const NOT_READY_GRACE: Duration = Duration::from_secs(60);
/// The same while the project has no status at all: the operator has not reached it yet (at bulk that can take
/// minutes: docs/benchmarks.md), and nothing is wrong that the binding could tell. The project's first status wakes
/// the binding; this bounds the wait should that never come.
const QUEUED_GRACE: Duration = Duration::from_secs(600);

/// A binding applied together with its project (the usual GitOps case) finds the project missing, then not yet
/// provisioned, for a moment. Reporting each would be two status writes and Events per binding for states that pass
/// by themselves: a binding that has never reported anything waits quietly for a grace period from its creation (the
/// project's changes wake it meanwhile) and reports only if it is still waiting then. Returns how long to wait
/// before looking again, or `None` to report now. `project_queued`: the project exists and has no status yet.
fn waiting_quietly(
    binding: &ProjectRoleBinding,
    refusal: &Refusal,
    project_queued: bool,
    now: Timestamp,
) -> Option<Duration> {
    let grace = match refusal {
        Refusal::ProjectNotFound | Refusal::SubjectProjectNotFound(_) => NOT_FOUND_GRACE,
        Refusal::ProjectNotReady(_) if project_queued => QUEUED_GRACE,
        Refusal::ProjectNotReady(_) => NOT_READY_GRACE,
        Refusal::RoleNotAllowed(_)
        | Refusal::RoleNotFound(_)
        | Refusal::Expired
        | Refusal::ProjectReplaced { .. }
        | Refusal::SubjectProjectReplaced(_)
        | Refusal::CrossWorkspaceGrant { .. } => return None,
    };
    if binding.status.as_ref().is_some_and(|s| !s.conditions.is_empty()) {
        return None;
    }
    let created = binding.meta().creation_timestamp.as_ref()?.0;
    // A negative age (the operator's clock behind the API server's) is not trusted to mean "new".
    let age = Duration::try_from(now.duration_since(created)).ok()?;
    grace.checked_sub(age).filter(|left| !left.is_zero())
}

/// Wakes the binding when it expires, so access ends on time without polling.
fn until_expiry(binding: &ProjectRoleBinding, now: Timestamp) -> Action {
    match &binding.spec.expires_at {
        Some(t) => {
            let left = Duration::try_from(t.0.duration_since(now)).unwrap_or_default();
            // A little after the instant, so `expired` holds when we look again.
            Action::requeue((left + Duration::from_millis(200)).min(RESYNC))
        }
        None => Action::requeue(RESYNC),
    }
}

async fn write_status(
    binding: &ProjectRoleBinding,
    api: &Api<ProjectRoleBinding>,
    ctx: &Context,
    ready: Cond,
    role_binding: Option<String>,
    bound_to: Option<BoundTo>,
) -> Result<()> {
    let previous = binding.status.clone().unwrap_or_default();
    let generation = binding.meta().generation;
    let status = ProjectRoleBindingStatus {
        observed_generation: generation,
        conditions: stamp(&previous.conditions, vec![ready.clone()], generation),
        role_binding,
        bound_to,
    };
    if status == previous {
        return Ok(());
    }
    let ready_changed = crate::write::status::apply(api, binding, ctx, &status, &previous.conditions).await?;
    // Waiting for the project's namespace is a passing state (every binding applied with its project goes through
    // it): the condition says so; an Event would be a write for nothing.
    if ready_changed && ready.reason != Reason::ProjectNotReady {
        ctx.event(binding, type_for(ready.ok), ready.reason, EventAction::Reconcile, ready.message).await;
    }
    Ok(())
}

/// The watches a binding controller is fed.
pub struct Feeds {
    pub bindings: mpsc::Receiver<Arc<ProjectRoleBinding>>,
    pub projects: mpsc::Receiver<Arc<Project>>,
    pub workspaces: mpsc::Receiver<Arc<Workspace>>,
    /// Every ClusterRole, metadata only: whether the role a binding names exists.
    pub role_names: BoxStream<'static, watcher::Result<PartialObjectMeta<ClusterRole>>>,
    pub children: mpsc::Receiver<Touched>,
}

pub fn controller(
    feeds: Feeds,
    ctx: Arc<Context>,
    config: controller::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let workspaces = spec_changes(feeds.workspaces, ctx.stores.workspaces.clone());
    let (for_projects, for_workspaces, for_roles) = (ctx.clone(), ctx.clone(), ctx.clone());
    // Drift on a RoleBinding a binding owns.
    let drift = feeds.children.filter_map(|t| futures::future::ready(t.binding.map(|b| ObjectRef::new(&b))));
    Controller::for_shared_stream(feeds.bindings, ctx.stores.bindings.clone())
        .watches_shared_stream(feeds.projects, move |p| of_project(&for_projects, &p.name_any()))
        .watches_shared_stream(workspaces, move |ws| of_workspace(&for_workspaces, &ws.name_any()))
        .watches_stream(feeds.role_names, move |role| {
            refs(for_roles.stores.bindings_to_cluster_role(&role.name_any(), &for_roles.settings.roles))
        })
        .reconcile_on(drift)
        .trigger_backoff(EachWatchBacksOff)
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(with_backoff(reconcile), error_policy, ctx)
        .for_each(log_queue_errors::<ProjectRoleBinding, _>)
}

/// A project's namespace appearing (its status) or going makes its bindings grantable or not; a project created or
/// deleted decides whether the bindings naming its ServiceAccounts may bind.
fn of_project(ctx: &Context, project: &str) -> Vec<ObjectRef<ProjectRoleBinding>> {
    let mut wake = refs(ctx.stores.bindings_of(project));
    wake.extend(ctx.stores.binding_index.naming_subjects_of(project).iter().map(|b| ObjectRef::new(b)));
    wake
}

/// A workspace's allowed roles decide which bindings may exist, and its trusted workspaces which of them may name its
/// projects' ServiceAccounts.
fn of_workspace(ctx: &Context, workspace: &str) -> Vec<ObjectRef<ProjectRoleBinding>> {
    let projects: HashSet<String> = ctx.stores.projects_of(workspace).iter().map(|p| p.name_any()).collect();
    refs(
        ctx.stores
            .bindings
            .state()
            .into_iter()
            .filter(|b| projects.contains(&b.spec.project) || subject_projects(b).any(|p| projects.contains(p))),
    )
}

fn refs(bindings: impl IntoIterator<Item = Arc<ProjectRoleBinding>>) -> Vec<ObjectRef<ProjectRoleBinding>> {
    bindings.into_iter().map(|b| ObjectRef::from_obj(&*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn binding(created: Timestamp, reported: bool) -> ProjectRoleBinding {
        let mut b = ProjectRoleBinding::new("b", Default::default());
        b.meta_mut().creation_timestamp = Some(Time(created));
        if reported {
            b.status = Some(ProjectRoleBindingStatus {
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: "False".into(),
                    reason: "ProjectNotFound".into(),
                    message: String::new(),
                    observed_generation: None,
                    last_transition_time: Time(created),
                }],
                ..Default::default()
            });
        }
        b
    }

    #[test]
    fn a_new_binding_waits_quietly_for_its_project_then_reports() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0 + k8s_openapi::jiff::SignedDuration::from_secs(s);
        let not_ready = Refusal::ProjectNotReady("no namespace yet".into());
        assert_eq!(
            waiting_quietly(&binding(t0, false), &Refusal::ProjectNotFound, false, at(3)),
            Some(Duration::from_secs(7))
        );
        assert_eq!(waiting_quietly(&binding(t0, false), &Refusal::ProjectNotFound, false, at(10)), None);
        assert_eq!(waiting_quietly(&binding(t0, false), &not_ready, false, at(10)), Some(Duration::from_secs(50)));
        assert_eq!(waiting_quietly(&binding(t0, false), &not_ready, false, at(61)), None);
        // A project the operator has not reached yet (no status): longer, since nothing is wrong yet.
        assert_eq!(waiting_quietly(&binding(t0, false), &not_ready, true, at(61)), Some(Duration::from_secs(539)));
        assert_eq!(waiting_quietly(&binding(t0, false), &not_ready, true, at(600)), None);
        assert_eq!(waiting_quietly(&binding(t0, false), &Refusal::ProjectNotFound, true, at(10)), None);
        // Anything already reported is kept up to date at once;
        // refusals that do not pass by themselves are never quiet.
        assert_eq!(waiting_quietly(&binding(t0, true), &Refusal::ProjectNotFound, false, at(1)), None);
        assert_eq!(waiting_quietly(&binding(t0, false), &Refusal::RoleNotAllowed("ws".into()), false, at(1)), None);
        assert_eq!(waiting_quietly(&binding(t0, false), &Refusal::Expired, false, at(1)), None);
        // Clock skew: a creation time in our future is not taken as "new".
        assert_eq!(waiting_quietly(&binding(at(30), false), &Refusal::ProjectNotFound, false, t0), None);
    }
}
