//! The Project reconciler: one namespace with its quota, limits, network walls, runner and member bindings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::apply::{Change, delete, delete_child, ensure, ensure_child};
use super::conditions::{Cond, ready, stamp};
use super::context::Context;
use super::finalizer;
use super::grants;
use super::usage;
use crate::api::{DeletionPolicy, Project, ProjectQuotaStatus, ProjectRoleBinding, ProjectStatus, Workspace};
use crate::cache::{Child, ChildStore};
use crate::labels::{self, FIELD_MANAGER};
use crate::resources::budget::{self, Candidate, Verdict};
use crate::resources::quantity::Amount;
use crate::resources::{Children, desired, project as build, validate};
use crate::{Error, Result};

/// How long a healthy project waits before it is checked again without any event. Events drive everything; this
/// is only a safety net, and a check that finds nothing to do writes nothing.
const RESYNC: Duration = Duration::from_secs(600);

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

/// Decides for every project of `workspace` at once (see `budget::decide`): the workspace's view.
pub fn decide(ctx: &Context, workspace: &Workspace) -> budget::Decisions {
    let sent = ctx.grants.lock();
    decide_for(ctx, workspace, None, &sent)
}

/// The verdict for one project of `workspace`. With a budget or `maxProjects`, the decision and the record of what
/// it grants happen under one lock (see `grants`), so no sibling decides meanwhile from a view without it.
fn verdict(ctx: &Context, workspace: &Workspace, project: &Project) -> Option<Verdict> {
    let name = project.name_any();
    let spec = &workspace.spec;
    if spec.budget.is_none() && spec.max_projects.is_none() {
        return decide_for(ctx, workspace, Some(&name), &HashMap::new()).verdicts.remove(&name);
    }
    let mut sent = ctx.grants.lock();
    forget_seen(ctx, &mut sent);
    let verdict = decide_for(ctx, workspace, Some(&name), &sent).verdicts.remove(&name)?;
    if let Verdict::Provision { quota, .. } = &verdict {
        let mut granted = budget::held(quota);
        granted.retain(|k, _| spec.budget.as_ref().is_some_and(|b| b.hard.contains_key(k)));
        grants::record(&mut sent, &name, &workspace.name_any(), &project.uid().unwrap_or_default(), granted);
    }
    Some(verdict)
}

/// Drops the grants in flight that the cache shows in place.
fn forget_seen(ctx: &Context, sent: &mut HashMap<String, grants::Sent>) {
    let quotas: HashMap<String, BTreeMap<String, Amount>> = sent
        .keys()
        .filter_map(|ns| {
            let hard = ctx.stores.quotas.get(ns, build::QUOTA_NAME)?.decode()?.spec?.hard?;
            Some((ns.clone(), budget::held(&hard)))
        })
        .collect();
    grants::forget_seen(sent, |ns| quotas.get(ns));
}

/// The workspace's ResourceQuotas as the cache shows them: its projects', and those of namespaces it released.
fn cached_quotas(ctx: &Context, workspace: &str) -> Vec<grants::CachedQuota> {
    let quotas = ctx.stores.quotas.select(|q| q.name == build::QUOTA_NAME && q.workspace.as_deref() == Some(workspace));
    quotas
        .iter()
        .filter_map(|q| {
            Some(grants::CachedQuota {
                namespace: q.namespace.clone(),
                workspace: q.workspace.clone(),
                controller: q.controller().map(str::to_owned),
                hard: budget::held(&q.decode()?.spec?.hard?),
            })
        })
        .collect()
}

/// The projects of a workspace that wait for budget or a place: what frees some (a quota or namespace going) may
/// let them in, so those events wake them.
pub fn waiting_in(ctx: &Context, workspace: &str) -> Vec<ObjectRef<Project>> {
    let seen = ctx.verdicts_seen.lock().expect("not poisoned");
    seen.iter()
        .filter(|(_, v)| v.waits())
        .filter(|(p, _)| ctx.stores.projects.get(&ObjectRef::new(p)).is_some_and(|p| p.spec.workspace == workspace))
        .map(|(p, _)| ObjectRef::new(p))
        .collect()
}

/// `only`: the project whose verdict is wanted; `None` for all (the workspace's view, with budget allocations).
///
/// Siblings change a verdict only through what they hold or older ones take first: budget, a place under
/// `maxProjects`, a `projectId`. Without a budget no sibling's quota matters, so theirs are not built (at a thousand
/// projects, building them in every project reconcile was most of the operator's CPU); without a budget or
/// `maxProjects` only the siblings with the same `projectId` matter, so the others are not even sorted (at five
/// thousand, sorting all of them in every project reconcile made provisioning quadratic).
fn decide_for(
    ctx: &Context,
    workspace: &Workspace,
    only: Option<&str>,
    sent: &HashMap<String, grants::Sent>,
) -> budget::Decisions {
    let name = workspace.name_any();
    let spec = &workspace.spec;
    let s = &ctx.stores;
    let mut projects = match only {
        Some(p) if spec.budget.is_none() && spec.max_projects.is_none() => {
            let Some(me) = s.projects.get(&ObjectRef::new(p)).filter(|me| me.spec.workspace == name) else {
                return budget::Decisions::default();
            };
            match &me.spec.project_id {
                None => vec![me],
                Some(id) => {
                    let mut same_id = s.projects_of(&name);
                    same_id.retain(|s| s.spec.project_id.as_ref() == Some(id));
                    same_id
                }
            }
        }
        _ => s.projects_of(&name),
    };
    // A project being deleted is granted nothing more; what its namespace holds counts among the others below.
    projects.retain(|p| p.meta().deletion_timestamp.is_none());
    let quotas = spec.budget.is_some().then(|| cached_quotas(ctx, &name));
    // The quotas matter for everyone when a budget is shared; otherwise only for the project asked about.
    let quota_matters = |p: &str| spec.budget.is_some() || only.is_none_or(|o| o == p);
    let candidates: Vec<Candidate> = projects
        .iter()
        .map(|p| {
            let pname = p.name_any();
            let uid = p.uid().unwrap_or_default();
            let in_flight = sent.get(&pname).filter(|e| e.project_uid == uid);
            let held = match &quotas {
                Some(quotas) => grants::held_by(&pname, &uid, quotas.iter().find(|q| q.namespace == pname), sent),
                None => Default::default(),
            };
            let admitted = spec.max_projects.is_some()
                && (in_flight.is_some()
                    || s.namespaces.get(&ObjectRef::new(&pname)).is_some_and(|ns| namespace_is_ours(&ns, p)));
            Candidate {
                requested: if quota_matters(&pname) {
                    build::requested_quota(p, workspace)
                } else {
                    Default::default()
                },
                held,
                admitted,
                uid,
                name: pname,
                created: p.meta().creation_timestamp.clone(),
                project_id: p.spec.project_id.clone(),
            }
        })
        .collect();
    let others = match &quotas {
        Some(quotas) => {
            let live: Vec<(&str, &str)> = candidates.iter().map(|c| (c.name.as_str(), c.uid.as_str())).collect();
            grants::others_holding(&name, &live, quotas, sent)
        }
        None => Vec::new(),
    };
    budget::decide(spec.budget.as_ref().map(|b| &b.hard), spec.max_projects, candidates, &others)
}

async fn apply(project: &Project, api: &Api<Project>, ctx: &Context) -> Result<Action> {
    let name = project.name_any();
    let Some(workspace) = ctx.stores.workspaces.get(&ObjectRef::new(&project.spec.workspace)) else {
        // Applied together with its workspace (one `kubectl apply -k`, a GitOps sync), a project often comes first:
        // a new one waits quietly for a moment instead of paging anyone; the workspace's creation wakes it.
        if let Some(quiet) = waiting_for_workspace(project, Timestamp::now()) {
            return Ok(Action::requeue(quiet));
        }
        let msg = format!(
            "Workspace {:?} does not exist; create it, and this project becomes Ready by itself",
            project.spec.workspace
        );
        return refuse(project, api, ctx, "WorkspaceNotFound", msg).await;
    };
    // The schema refuses these names; this catches objects that bypassed it.
    if let Some(problem) = validate::project_name_problem(&name, &ctx.settings.protected_namespaces) {
        return refuse(project, api, ctx, "InvalidName", problem).await;
    }
    if let Some(prefix) = workspace.spec.project_name_prefix.as_ref().filter(|p| !name.starts_with(p.as_str())) {
        let msg = format!(
            "workspace {} requires project names to start with {prefix:?} (spec.projectNamePrefix); recreate the \
             project as {prefix}{name} or similar",
            workspace.name_any()
        );
        return refuse(project, api, ctx, "InvalidName", msg).await;
    }

    let live_ns = ctx.stores.namespaces.get(&ObjectRef::new(&name));
    if let Some(ns) = &live_ns {
        let ours = namespace_is_ours(ns, project);
        if !ours && !build::adoption_requested(&ns.metadata, project) {
            return refuse(project, api, ctx, "NamespaceConflict", conflict_message(ns, project)).await;
        }
        if ns.meta().deletion_timestamp.is_some() {
            let msg = format!("namespace {name:?} is being deleted; it is recreated once it is gone");
            write_status(project, api, ctx, vec![Cond::fail("NamespaceReady", "NamespaceTerminating", msg)], None)
                .await?;
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    }
    // Decided last, just before the writes: a grant is recorded as in flight from here on (see `grants`).
    let verdict = verdict(ctx, &workspace, project).unwrap_or_else(|| Verdict::Refuse {
        reason: "WorkspaceNotFound",
        message: "the project is not yet in the workspace's cache".into(),
    });
    ctx.verdicts_seen.lock().expect("not poisoned").insert(name.clone(), verdict.clone());
    let (quota, exceeded) = match verdict {
        Verdict::Refuse { reason, message } => {
            return refuse(project, api, ctx, reason, message).await;
        }
        Verdict::Provision { quota, exceeded } => (quota, exceeded),
    };
    let lost = live_ns.is_none() && project.status.as_ref().is_some_and(|s| s.namespace.is_some());

    let now = Timestamp::now();
    let bindings = super::binding::in_force(ctx, project, &workspace, now);
    let bindings: Vec<&ProjectRoleBinding> = bindings.iter().map(|b| &**b).collect();
    let children = desired(project, &workspace, &quota, &ctx.settings.roles, &bindings, now);
    let Written { changes, forbidden } = match write_children(project, &children, ctx).await {
        Ok(written) => written,
        Err(e) => {
            let (cond, reason) = match &e {
                e if e.api_code() == Some(403) => ("AccessReady", "Forbidden"),
                _ => ("NamespaceReady", "ApplyFailed"),
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
        ctx.event(project, true, "NamespaceRecreated", "Recreate", note).await;
    }
    ctx.changed(project, &changes, "Apply", false).await;

    let mut conds = provisioned_conditions(project, &workspace, &children, exceeded);
    if !forbidden.is_empty() {
        let msg = format!(
            "the operator may not bind: {}; grant it `bind` on these ClusterRoles (the chart's customRoles value) or remove them from the workspace",
            forbidden.join("; ")
        );
        conds.retain(|c| c.type_ != "AccessReady");
        conds.push(Cond::fail("AccessReady", "BindForbidden", msg));
    }
    let usage_wait = write_status(project, api, ctx, conds, Some(&children)).await?;
    Ok(Action::requeue(usage_wait.unwrap_or(RESYNC)))
}

/// What writing the children did: the changes, and the RoleBindings the API server refused because the operator may
/// not bind their ClusterRole (a condition, not a retry loop: retrying cannot help until someone grants it).
struct Written {
    changes: Vec<Change>,
    forbidden: Vec<String>,
}

fn namespace_is_ours(ns: &PartialObjectMeta<Namespace>, project: &Project) -> bool {
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
async fn write_children(project: &Project, c: &Children, ctx: &Context) -> Result<Written> {
    let ns = project.name_any();
    let client = &ctx.client;
    let s = &ctx.stores;
    let mut changes = Vec::new();
    // The namespace first: everything else lives in it.
    let live_ns = s.namespaces.get(&ObjectRef::new(&ns));
    changes.extend(ensure(&Api::<Namespace>::all(client.clone()), live_ns.as_deref(), &c.namespace).await?);

    let quotas = Api::<ResourceQuota>::namespaced(client.clone(), &ns);
    let limits = Api::<LimitRange>::namespaced(client.clone(), &ns);
    let policies = Api::<NetworkPolicy>::namespaced(client.clone(), &ns);
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), &ns);
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &ns);
    let (q, l, n, a) = tokio::try_join!(
        ensure_opt(&quotas, &s.quotas, c.quota.as_ref()),
        ensure_opt(&limits, &s.limit_ranges, c.limit_range.as_ref()),
        ensure_opt(&policies, &s.network_policies, c.network_policy.as_ref()),
        ensure_child(&accounts, &s.service_accounts, &c.runner),
    )?;
    changes.extend([q, l, n, a].into_iter().flatten());
    let roles = Api::<Role>::namespaced(client.clone(), &ns);
    changes.extend(ensure_child(&roles, &s.roles, &c.delegation).await?);
    let mut forbidden = Vec::new();
    let results =
        futures::future::join_all(c.role_bindings.iter().map(|rb| ensure_child(&bindings, &s.role_bindings, rb))).await;
    for (rb, result) in c.role_bindings.iter().zip(results) {
        match result {
            Ok(change) => changes.extend(change),
            Err(e) if e.api_code() == Some(403) => forbidden.push(format!(
                "RoleBinding {} to ClusterRole {}: {}",
                rb.name_any(),
                rb.role_ref.name,
                e.api_message()
            )),
            Err(e) => return Err(e),
        }
    }

    // Children this project owned but no longer wants (a member role removed, isolation turned off, ...).
    let uid = project.uid();
    changes.extend(prune(&quotas, &s.quotas, &ns, &uid, &names(c.quota.iter())).await?);
    changes.extend(prune(&limits, &s.limit_ranges, &ns, &uid, &names(c.limit_range.iter())).await?);
    changes.extend(prune(&policies, &s.network_policies, &ns, &uid, &names(c.network_policy.iter())).await?);
    changes.extend(prune(&accounts, &s.service_accounts, &ns, &uid, &names([&c.runner])).await?);
    changes.extend(prune(&bindings, &s.role_bindings, &ns, &uid, &names(c.role_bindings.iter())).await?);
    changes.extend(prune(&roles, &s.roles, &ns, &uid, &names([&c.delegation])).await?);
    // RoleBindings of ProjectRoleBindings that are gone. The garbage collector would delete them too, but only once
    // it has discovered the CRD (up to half a minute after it is installed): revoking access must not wait for that.
    for rb in s.role_bindings.in_namespace(&ns) {
        let Some(binding) = &rb.binding else { continue };
        let owner_alive =
            s.bindings.get(&ObjectRef::new(binding)).is_some_and(|b| rb.controlled_by(b.meta().uid.as_deref()));
        if !owner_alive {
            changes.extend(delete_child(&bindings, &rb).await?);
        }
    }
    Ok(Written { changes, forbidden })
}

async fn ensure_opt<K>(api: &Api<K>, store: &ChildStore<K>, desired: Option<&K>) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + std::fmt::Debug,
{
    match desired {
        Some(d) => ensure_child(api, store, d).await,
        None => Ok(None),
    }
}

fn names<'a, K: Resource + 'a>(objs: impl IntoIterator<Item = &'a K>) -> BTreeSet<String> {
    objs.into_iter().map(|o| o.name_any()).collect()
}

/// This project's children in its namespace: controlled by it (by uid, not just by label).
fn owned_by<K>(store: &ChildStore<K>, ns: &str, uid: &Option<String>) -> Vec<Arc<Child<K>>> {
    let mut owned = store.in_namespace(ns);
    owned.retain(|c| c.controlled_by(uid.as_deref()));
    owned
}

/// Deletes the children this project owns but no longer wants.
async fn prune<K>(
    api: &Api<K>,
    store: &ChildStore<K>,
    ns: &str,
    uid: &Option<String>,
    keep: &BTreeSet<String>,
) -> Result<Vec<Change>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut changes = Vec::new();
    for child in owned_by(store, ns, uid) {
        if !keep.contains(&child.name) {
            changes.extend(delete_child(api, &child).await?);
        }
    }
    Ok(changes)
}

/// The conditions of a provisioned project, `Ready` aside (see [`READY_MESSAGE`]).
pub fn provisioned_conditions(
    project: &Project,
    workspace: &Workspace,
    c: &Children,
    exceeded: Option<String>,
) -> Vec<Cond> {
    let name = project.name_any();
    let mut conds = vec![Cond::ok("NamespaceReady", "Provisioned", format!("namespace {name} is provisioned"))];
    conds.push(match (exceeded, &c.quota) {
        (Some(why), _) => Cond::fail("QuotaReady", "BudgetExceeded", why),
        (None, Some(_)) => Cond::ok("QuotaReady", "QuotaApplied", "the ResourceQuota holds the project's quota"),
        (None, None) => Cond::ok("QuotaReady", "NoQuota", "neither the project nor its workspace sets a quota"),
    });
    conds.push(if c.roles_not_allowed.is_empty() {
        Cond::ok("AccessReady", "RolesBound", "the runner and every workspace member role are bound")
    } else {
        let msg = format!(
            "workspace {} names roles it does not allow in spec.members: {}; add them to the workspace's spec.roles or use admin, developer, contributor or viewer",
            workspace.name_any(),
            c.roles_not_allowed.join(", ")
        );
        Cond::fail("AccessReady", "RoleNotAllowed", msg)
    });
    conds.push(match &c.network_policy {
        None => Cond::ok("NetworkReady", "NotIsolated", "networkIsolation is None: any pod may connect"),
        Some(_) if build::network_isolation(project, workspace) == crate::api::NetworkIsolation::Workspace => {
            Cond::ok("NetworkReady", "WorkspaceIsolated", "ingress only from namespaces of the same workspace")
        }
        Some(_) => Cond::ok("NetworkReady", "ProjectIsolated", "ingress only from pods in this namespace"),
    });
    conds
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

/// `Ready`'s message when every other condition holds.
pub const READY_MESSAGE: &str = "every child object exists as desired";

/// Refuses to provision: says why in the status, and in an Event when the reason is new.
async fn refuse(project: &Project, api: &Api<Project>, ctx: &Context, reason: &str, message: String) -> Result<Action> {
    let cond_type = match reason {
        "BudgetExceeded" | budget::INVALID_QUANTITY => "QuotaReady",
        _ => "NamespaceReady",
    };
    write_status(project, api, ctx, vec![Cond::fail(cond_type, reason, message)], None).await?;
    Ok(Action::requeue(RESYNC))
}

/// Writes the status when it differs from the one stored, with an Event when Ready changes reason. A change of the
/// quota's use alone may have to wait (see `usage`): then it returns how long.
async fn write_status(
    project: &Project,
    api: &Api<Project>,
    ctx: &Context,
    parts: Vec<Cond>,
    children: Option<&Children>,
) -> Result<Option<Duration>> {
    let name = project.name_any();
    let previous = project.status.clone().unwrap_or_default();
    let ready_cond = ready(&parts, READY_MESSAGE);
    let mut all = parts;
    all.push(ready_cond.clone());
    let provisioned = children.is_some();
    // `hard` is what we granted (known now, so Ready is reported with it in one write); `used` comes from the
    // ResourceQuota's status once the quota controller has counted.
    let quota = children.and_then(|c| c.quota.as_ref()).map(|q| {
        let used =
            ctx.stores.quotas.get(&name, build::QUOTA_NAME).and_then(|q| q.decode()?.status?.used).unwrap_or_default();
        ProjectQuotaStatus { hard: q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default(), used }
    });
    let members: BTreeMap<String, i32> = match children {
        Some(c) => c.members.clone(),
        None => previous.members.clone(),
    };
    let namespace_exists = provisioned
        || ctx.stores.namespaces.get(&ObjectRef::new(&name)).is_some_and(|ns| namespace_is_ours(&ns, project));
    let status = ProjectStatus {
        observed_generation: project.meta().generation,
        conditions: stamp(&previous.conditions, all, project.meta().generation),
        namespace: namespace_exists
            .then(|| name.clone())
            .or_else(|| previous.namespace.clone().filter(|_| provisioned)),
        members,
        quota: if provisioned { quota } else { previous.quota.clone() },
    };
    if status == previous {
        return Ok(None);
    }
    let uid = project.uid().unwrap_or_default();
    let now = Instant::now();
    if usage::usage_only(&previous, &status)
        && let Some(wait) = ctx.usage_writes.wait(&uid, now)
    {
        return Ok(Some(wait));
    }
    let ready_changed = super::status::apply(api, project, ctx, &status, &previous.conditions).await?;
    ctx.usage_writes.wrote(&uid, now);
    if ready_changed {
        ctx.event(project, !ready_cond.ok, &ready_cond.reason, "Reconcile", ready_cond.message).await;
    }
    Ok(None)
}

/// Deletion: Delete removes the namespace and waits until it is gone; Retain (and any adopted namespace) releases
/// it (see `release`). A namespace that is not ours is never touched.
async fn cleanup(project: &Project, api: &Api<Project>, ctx: &Context) -> Result<Action> {
    if !finalizer::has(project) {
        return Ok(Action::await_change());
    }
    let name = project.name_any();
    ctx.verdicts_seen.lock().expect("not poisoned").remove(&name);
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
            ctx.changed(project, &revoked, "Release", false).await;
            let why = if adopted { "it was adopted" } else { "deletionPolicy is Retain" };
            ctx.event(
                project,
                false,
                "NamespaceRetained",
                "Release",
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
                    false,
                    "NamespaceDeleting",
                    "Delete",
                    format!("deleting namespace {name} and everything in it"),
                )
                .await;
            }
            let msg = format!("waiting for namespace {name} and everything in it to be deleted");
            write_status(project, api, ctx, vec![Cond::fail("NamespaceReady", "Deleting", msg)], None).await?;
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
    let uid = project.uid();
    let s = &ctx.stores;
    let c = &ctx.client;
    let mut changes = Vec::new();
    let role_bindings = Api::<RoleBinding>::namespaced(c.clone(), &name);
    for rb in s.role_bindings.in_namespace(&name) {
        changes.extend(delete_child(&role_bindings, &rb).await?);
    }
    let roles = Api::<Role>::namespaced(c.clone(), &name);
    for role in owned_by(&s.roles, &name, &uid) {
        changes.extend(delete_child(&roles, &role).await?);
    }
    let accounts = Api::<ServiceAccount>::namespaced(c.clone(), &name);
    for sa in owned_by(&s.service_accounts, &name, &uid) {
        changes.extend(delete_child(&accounts, &sa).await?);
    }
    let unmanage = json!({"metadata": {
        "ownerReferences": null,
        "labels": {labels::MANAGED_BY: null, labels::WORKSPACE: null, labels::PROJECT: null, labels::COMPONENT: null},
        "annotations": {labels::APPLIED_HASH: null, labels::FORMER_PROJECT: name},
    }});
    unmanage_all(&Api::<LimitRange>::namespaced(c.clone(), &name), &s.limit_ranges, &name, &uid, &unmanage).await?;
    unmanage_all(&Api::<NetworkPolicy>::namespaced(c.clone(), &name), &s.network_policies, &name, &uid, &unmanage)
        .await?;
    let keep_counted = json!({"metadata": {
        "ownerReferences": null,
        "labels": {labels::PROJECT: null},
        "annotations": {labels::APPLIED_HASH: null, labels::FORMER_PROJECT: name},
    }});
    unmanage_all(&Api::<ResourceQuota>::namespaced(c.clone(), &name), &s.quotas, &name, &uid, &keep_counted).await?;
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

async fn unmanage_all<K>(
    api: &Api<K>,
    store: &ChildStore<K>,
    ns: &str,
    uid: &Option<String>,
    patch: &serde_json::Value,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    for child in owned_by(store, ns, uid) {
        match api.patch(&child.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::kube("release", K::kind(&()), format!("{ns}/{}", child.name), e)),
        }
    }
    Ok(())
}
