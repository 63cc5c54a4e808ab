//! `kubectl zenml audit`: who has which role in which project, grants that expire soon, and access into project
//! namespaces that does not come through ProjectRoleBindings: RoleBindings the operator did not make, and long-lived
//! ServiceAccount token Secrets (the `zenml-one-door-for-access` admission policy refuses both; the audit finds those
//! that predate it, or were made by someone it exempts).
//!
//! Whether a RoleBinding is the operator's is never decided by label: anyone allowed to edit RoleBindings can copy
//! `app.kubernetes.io/managed-by=zenml-operator` onto one. The audit computes what the operator wants with the
//! operator's own pure builders ([`zenml_api::resources::desired`] for a project's own RoleBindings,
//! [`binding::desired`] for each ProjectRoleBinding's), from the same inputs the operator reads; a RoleBinding is the
//! operator's only when one of those has its name, grants the same role to the same subjects, and names the same
//! Project or ProjectRoleBinding instance (uid) as its controller.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use zenml_api::labels;
use zenml_api::resources::binding::{self, Peer, subject_projects};
use zenml_api::resources::project::{adoption_requested, namespace_is_ours};
use zenml_api::resources::{self, RoleMap};
use zenml_api::{Project, ProjectRoleBinding, ResourceList, Subject, Workspace};

use super::member::{self, Member};
use super::project::indent;
use super::warn;
use crate::cli::AuditArgs;
use crate::error::{Error, Op, Result, is_forbidden};
use crate::names;
use crate::output::{self, Format, print_doc};
use crate::session::{BINDINGS, PROJECTS, Session, WORKSPACES, namespace_of};

/// The Secret type of a long-lived ServiceAccount token, as a field selector.
pub const TOKEN_SELECTOR: &str = "type=kubernetes.io/service-account-token";
/// The annotation that names a token Secret's ServiceAccount.
pub const SERVICE_ACCOUNT_NAME: &str = "kubernetes.io/service-account.name";
const ROLE_BINDINGS: &str = "rolebindings.rbac.authorization.k8s.io";

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    pub binding: String,
    pub project: String,
    pub role: String,
    pub subjects: Vec<Subject>,
    pub expires_at: String,
    /// True when the time has passed (the grant is already gone).
    pub expired: bool,
}

/// A RoleBinding in a project namespace that the operator does not make, and why the audit says so.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Unmanaged {
    pub namespace: String,
    pub project: String,
    pub name: String,
    /// `ClusterRole/edit`, `Role/foo`.
    pub role_ref: String,
    pub subjects: Vec<String>,
    /// Whether it carries `app.kubernetes.io/managed-by=zenml-operator`, which proves nothing.
    pub labelled_as_operators: bool,
    /// How it differs from every RoleBinding the operator makes there.
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub age: String,
}

/// A long-lived ServiceAccount token Secret in a project namespace.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecret {
    pub namespace: String,
    pub project: String,
    pub name: String,
    /// The ServiceAccount it is a token of (its `kubernetes.io/service-account.name` annotation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    pub age: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub kind: &'static str,
    pub generated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub expiring_within: String,
    /// How many projects were audited.
    #[serde(skip)]
    pub project_count: usize,
    pub members: Vec<Member>,
    pub expiring: Vec<Expiring>,
    /// RoleBindings in project namespaces that the operator does not make (access around ProjectRoleBindings).
    pub unmanaged_role_bindings: Vec<Unmanaged>,
    /// Long-lived ServiceAccount token Secrets in project namespaces.
    pub token_secrets: Vec<TokenSecret>,
    pub warnings: Vec<String>,
}

/// Bindings of `projects` that expire before `now + within`, soonest first.
pub fn expiring(
    bindings: &[ProjectRoleBinding],
    projects: &[Project],
    now: Timestamp,
    within: Duration,
) -> Vec<Expiring> {
    let horizon =
        now.checked_add(SignedDuration::try_from(within).unwrap_or(SignedDuration::MAX)).unwrap_or(Timestamp::MAX);
    let mut out: Vec<(Timestamp, Expiring)> = bindings
        .iter()
        .filter(|b| projects.iter().any(|p| p.metadata.name.as_deref() == Some(b.spec.project.as_str())))
        .filter_map(|b| {
            let at = b.spec.expires_at.as_ref()?.0;
            (at <= horizon).then(|| {
                (
                    at,
                    Expiring {
                        binding: b.name_any(),
                        project: b.spec.project.clone(),
                        role: b.spec.role.clone(),
                        subjects: b.spec.subjects.clone(),
                        expires_at: at.to_string(),
                        expired: at <= now,
                    },
                )
            })
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.binding).cmp(&(b.0, &b.1.binding)));
    out.into_iter().map(|(_, e)| e).collect()
}

/// A RoleBinding the operator makes in a project namespace, and the instance that must be its controller.
#[derive(Clone, Debug, PartialEq)]
pub struct WantedBinding {
    pub role_binding: RoleBinding,
    /// The uid of the Project or ProjectRoleBinding that controls it.
    pub owner_uid: String,
    /// For messages: `project fraud`, `ProjectRoleBinding alice-dev`.
    pub made_for: String,
}

/// The RoleBindings the operator makes in one project namespace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wanted {
    /// By name.
    pub bindings: BTreeMap<String, WantedBinding>,
    /// The RoleBinding names of ProjectRoleBindings that grant nothing now: the binding, and its condition reason.
    pub refused: BTreeMap<String, (String, &'static str)>,
    /// Why the operator makes nothing in the namespace, when it makes nothing there.
    pub nothing: Option<String>,
}

/// What the operator decides from, as the audit read it.
pub struct Inputs<'a> {
    /// By name: the workspaces of the audited projects and of the projects their bindings' ServiceAccounts are in.
    /// One missing here does not exist.
    pub workspaces: &'a BTreeMap<String, Workspace>,
    /// By name: the audited projects and those whose ServiceAccounts their bindings name. One missing here does not
    /// exist.
    pub projects: &'a BTreeMap<String, Project>,
    /// Every ProjectRoleBinding (the operator's cache holds them all; those of other projects are ignored).
    pub bindings: &'a [ProjectRoleBinding],
    /// The ClusterRoles behind the built-in roles, as the operator was started with.
    pub roles: &'a RoleMap,
    pub now: Timestamp,
}

/// What the operator wants in `project`'s namespace, computed as the operator computes it. `namespace` is the
/// namespace's metadata when it could be read; otherwise the project's status stands for it (the operator names the
/// namespace there once it provisioned it for this project).
pub fn wanted(project: &Project, namespace: Option<&ObjectMeta>, inputs: &Inputs) -> Wanted {
    let name = project.name_any();
    let mut out = Wanted::default();
    // Ours: the project's children are applied and its bindings bound. Adoption requested: the children are applied
    // (and the namespace becomes ours), the bindings wait for that.
    let (provisioned, bound) = match namespace {
        Some(ns) => {
            let ours = namespace_is_ours(ns, project);
            (ours || adoption_requested(ns, project), ours && ns.deletion_timestamp.is_none())
        }
        None => {
            let named = project.status.as_ref().and_then(|s| s.namespace.as_deref()) == Some(name.as_str());
            (named, named)
        }
    };
    if !provisioned {
        out.nothing = Some(format!(
            "namespace {name} is not this instance's of project {name} (uid {}): the project is refused \
             (NamespaceConflict) and the operator grants nothing in it",
            project.uid().unwrap_or_default()
        ));
        return out;
    }
    let Some(workspace) = inputs.workspaces.get(&project.spec.workspace) else {
        out.nothing = Some(format!(
            "workspace {} of project {name} does not exist, so the operator grants nothing in namespace {name}",
            project.spec.workspace
        ));
        return out;
    };
    let of_project: Vec<&ProjectRoleBinding> = inputs.bindings.iter().filter(|b| b.spec.project == name).collect();
    // The granted quota decides nothing about RoleBindings.
    // Nor do the network facts.
    let net = resources::NetworkFacts::default();
    let children =
        resources::desired(project, workspace, &ResourceList::default(), inputs.roles, &net, &of_project, inputs.now);
    let owner = project.uid().unwrap_or_default();
    for rb in children.role_bindings {
        let made_for = format!("project {name}");
        out.bindings.insert(rb.name_any(), WantedBinding { role_binding: rb, owner_uid: owner.clone(), made_for });
    }
    // As the binding controller: a project being deleted is gone, and so is a binding being deleted.
    let live = Some(project).filter(|p| p.meta().deletion_timestamp.is_none());
    for b in of_project {
        let rb_name = binding::role_binding_name(b);
        if b.meta().deletion_timestamp.is_some() {
            out.refused.insert(rb_name, (b.name_any(), "BeingDeleted"));
            continue;
        }
        let peers = peers(b, project, inputs);
        match binding::desired(b, live, Some(workspace), bound, inputs.roles, inputs.now, &peers) {
            Ok(rb) => {
                let owner_uid = b.uid().unwrap_or_default();
                let made_for = format!("ProjectRoleBinding {}", b.name_any());
                out.bindings.insert(rb_name, WantedBinding { role_binding: rb, owner_uid, made_for });
            }
            Err(refusal) => {
                out.refused.insert(rb_name, (b.name_any(), refusal.reason().as_str()));
            }
        }
    }
    out
}

/// The projects whose ServiceAccounts `b` names, as the operator sees them (one being deleted is gone).
fn peers(b: &ProjectRoleBinding, project: &Project, inputs: &Inputs) -> BTreeMap<String, Peer> {
    subject_projects(b)
        .filter_map(|name| {
            let p = inputs.projects.get(name).filter(|p| p.meta().deletion_timestamp.is_none())?;
            let trusts_back = inputs
                .workspaces
                .get(&p.spec.workspace)
                .is_some_and(|w| w.spec.trusted_workspaces.contains(&project.spec.workspace));
            let peer = Peer { uid: p.uid().unwrap_or_default(), workspace: p.spec.workspace.clone(), trusts_back };
            Some((name.to_owned(), peer))
        })
        .collect()
}

/// What the audit needs to judge `project`'s RoleBindings but could not read, one phrase each; empty when it has it all.
pub fn blind_spots(project: &Project, bindings: &[ProjectRoleBinding], read: &Read) -> Vec<String> {
    let mut missing = Vec::new();
    let mut workspace = |name: &str| {
        if let Some(why) = read.unreadable_workspaces.get(name) {
            let phrase = format!("workspace {name} ({why})");
            if !missing.contains(&phrase) {
                missing.push(phrase);
            }
        }
    };
    workspace(&project.spec.workspace);
    let name = project.name_any();
    let peers = bindings.iter().filter(|b| b.spec.project == name).flat_map(subject_projects);
    let mut peer_missing = Vec::new();
    for peer in peers {
        if let Some(why) = read.unreadable_projects.get(peer) {
            peer_missing.push(format!("project {peer} ({why})"));
        } else if let Some(p) = read.projects.get(peer) {
            workspace(&p.spec.workspace);
        }
    }
    peer_missing.sort();
    peer_missing.dedup();
    missing.extend(peer_missing);
    missing
}

/// Why `rb` is not a RoleBinding the operator makes, or `None` when it is one: named like one of `wanted`, granting
/// the same role to the same subjects (in any order), controlled by the same Project or ProjectRoleBinding instance.
/// Labels and annotations grant nothing and prove nothing, so they are not compared.
pub fn judge(rb: &RoleBinding, wanted: &Wanted) -> Option<String> {
    let name = rb.name_any();
    let lead = if labelled(rb) { "labelled as the operator's, but " } else { "not made by the operator: " };
    if let Some(why) = &wanted.nothing {
        return Some(format!("{lead}{why}"));
    }
    let live = subject_set(rb);
    if let Some(w) = wanted.bindings.get(&name) {
        let want = &w.role_binding;
        let mut diffs = Vec::new();
        if !same_role(&rb.role_ref, &want.role_ref) {
            diffs.push(format!("grants {} instead of {}", role_ref(&rb.role_ref), role_ref(&want.role_ref)));
        }
        let wanted_subjects = subject_set(want);
        let extra: Vec<String> = live.difference(&wanted_subjects).map(describe).collect();
        if !extra.is_empty() {
            diffs.push(format!("also grants it to {}", extra.join(", ")));
        }
        let left_out: Vec<String> = wanted_subjects.difference(&live).map(describe).collect();
        if !left_out.is_empty() {
            diffs.push(format!("leaves out {}", left_out.join(", ")));
        }
        match controller(rb) {
            Some(uid) if uid == w.owner_uid => {}
            Some(uid) => diffs.push(format!("is controlled by uid {uid}, not by {} (uid {})", w.made_for, w.owner_uid)),
            None => {
                diffs.push(format!("has no controller, where the operator's is {} (uid {})", w.made_for, w.owner_uid))
            }
        }
        return (!diffs.is_empty())
            .then(|| format!("named like the operator's RoleBinding for {}, but {}", w.made_for, diffs.join("; ")));
    }
    if let Some((b, reason)) = wanted.refused.get(&name) {
        return Some(format!(
            "{lead}ProjectRoleBinding {b} grants nothing now ({reason}), so the operator makes no RoleBinding {name}"
        ));
    }
    let grants = format!("{} to {}", role_ref(&rb.role_ref), subjects_text(&live));
    let copy = wanted
        .bindings
        .values()
        .find(|w| same_role(&w.role_binding.role_ref, &rb.role_ref) && subject_set(&w.role_binding) == live);
    Some(match copy {
        Some(w) => format!(
            "{lead}grants {grants}, as the operator's {} does, under a name the operator does not use",
            w.role_binding.name_any()
        ),
        None => format!("{lead}grants {grants}, which no ProjectRoleBinding or workspace member asks for"),
    })
}

fn labelled(rb: &RoleBinding) -> bool {
    rb.labels().get(labels::MANAGED_BY).map(String::as_str) == Some(labels::MANAGED_BY_VALUE)
}

/// The uid of the object's controlling owner.
fn controller(rb: &RoleBinding) -> Option<&str> {
    rb.owner_references().iter().find(|o| o.controller == Some(true)).map(|o| o.uid.as_str())
}

fn same_role(a: &RoleRef, b: &RoleRef) -> bool {
    (&a.api_group, &a.kind, &a.name) == (&b.api_group, &b.kind, &b.name)
}

fn role_ref(r: &RoleRef) -> String {
    format!("{}/{}", r.kind, r.name)
}

/// A subject as the authorizer matches it: kind, namespace (ServiceAccounts only), name, API group (the API server
/// defaults an empty one to RBAC's for users and groups).
type SubjectKey = (String, String, String, String);

fn subject_key(s: &RbacSubject) -> SubjectKey {
    let group = match (s.api_group.as_deref().unwrap_or_default(), s.kind.as_str()) {
        ("", "User" | "Group") => "rbac.authorization.k8s.io",
        (g, _) => g,
    };
    let namespace = if s.kind == "ServiceAccount" { s.namespace.clone().unwrap_or_default() } else { String::new() };
    (s.kind.clone(), namespace, s.name.clone(), group.to_owned())
}

fn subject_set(rb: &RoleBinding) -> BTreeSet<SubjectKey> {
    rb.subjects.iter().flatten().map(subject_key).collect()
}

/// `mallory (User)`, `fraud/zenml-runner (ServiceAccount)`.
fn describe((kind, namespace, name, _): &SubjectKey) -> String {
    if namespace.is_empty() { format!("{name} ({kind})") } else { format!("{namespace}/{name} ({kind})") }
}

fn subjects_text(subjects: &BTreeSet<SubjectKey>) -> String {
    if subjects.is_empty() { "no one".to_owned() } else { subjects.iter().map(describe).collect::<Vec<_>>().join(", ") }
}

/// When an object was made, and its age at `now`.
fn created(meta: &ObjectMeta, now: Timestamp) -> (Option<String>, String) {
    match &meta.creation_timestamp {
        Some(t) => {
            let age = Duration::try_from(now.duration_since(t.0)).unwrap_or_default();
            (Some(t.0.to_string()), names::age(age))
        }
        None => (None, "-".to_owned()),
    }
}

/// The RoleBindings of one project namespace that the operator does not make, by name.
pub fn unmanaged(
    project: &str,
    namespace: &str,
    rbs: &[RoleBinding],
    wanted: &Wanted,
    now: Timestamp,
) -> Vec<Unmanaged> {
    let mut out: Vec<Unmanaged> = rbs
        .iter()
        .filter_map(|rb| {
            let reason = judge(rb, wanted)?;
            let (created_at, age) = created(&rb.metadata, now);
            Some(Unmanaged {
                namespace: namespace.to_owned(),
                project: project.to_owned(),
                name: rb.name_any(),
                role_ref: role_ref(&rb.role_ref),
                subjects: rb.subjects.iter().flatten().map(|s| describe(&subject_key(s))).collect(),
                labelled_as_operators: labelled(rb),
                reason,
                created_at,
                age,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The long-lived token Secrets among `secrets` (metadata of Secrets listed with [`TOKEN_SELECTOR`]), by name.
pub fn token_secrets<'a>(
    project: &str,
    namespace: &str,
    secrets: impl IntoIterator<Item = &'a ObjectMeta>,
    now: Timestamp,
) -> Vec<TokenSecret> {
    let mut out: Vec<TokenSecret> = secrets
        .into_iter()
        .map(|m| {
            let (created_at, age) = created(m, now);
            TokenSecret {
                namespace: namespace.to_owned(),
                project: project.to_owned(),
                name: m.name.clone().unwrap_or_default(),
                service_account: m.annotations.as_ref().and_then(|a| a.get(SERVICE_ACCOUNT_NAME)).cloned(),
                created_at,
                age,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The projects and workspaces the operator decides from, as far as the audit may read them.
#[derive(Default)]
pub struct Read {
    pub projects: BTreeMap<String, Project>,
    pub workspaces: BTreeMap<String, Workspace>,
    /// Names that could not be read, and why.
    pub unreadable_projects: BTreeMap<String, String>,
    pub unreadable_workspaces: BTreeMap<String, String>,
}

/// Why a `get` failed, as a phrase.
fn unreadable(op: Op, e: kube::Error) -> String {
    if is_forbidden(&e) { format!("you lack {}", op.permission()) } else { op.err(e).to_string() }
}

impl Read {
    /// Reads what `projects`' RoleBindings are judged by: the projects named by their bindings' ServiceAccount
    /// subjects, and the workspaces of both, beyond those already read.
    async fn complete(
        s: &Session,
        projects: &[Project],
        workspaces: &[Workspace],
        bindings: &[ProjectRoleBinding],
    ) -> Read {
        let mut read = Read {
            projects: projects.iter().map(|p| (p.name_any(), p.clone())).collect(),
            // A workspace that could not be read stands in the list with its name only, and without a uid, which every
            // object read from the API server has.
            workspaces: workspaces
                .iter()
                .filter(|w| w.metadata.uid.is_some())
                .map(|w| (w.name_any(), w.clone()))
                .collect(),
            ..Read::default()
        };
        let audited: BTreeSet<String> = read.projects.keys().cloned().collect();
        let peers: BTreeSet<&str> = bindings
            .iter()
            .filter(|b| audited.contains(&b.spec.project))
            .flat_map(subject_projects)
            .filter(|p| !audited.contains(*p))
            .collect();
        for name in peers {
            match s.projects().get_opt(name).await {
                Ok(Some(p)) => {
                    read.projects.insert(name.to_owned(), p);
                }
                Ok(None) => {}
                Err(e) => {
                    read.unreadable_projects
                        .insert(name.to_owned(), unreadable(Op::new("get", PROJECTS).name(name), e));
                }
            }
        }
        let needed: BTreeSet<String> = read
            .projects
            .values()
            .map(|p| p.spec.workspace.clone())
            .filter(|w| !read.workspaces.contains_key(w))
            .collect();
        for name in needed {
            match s.workspaces().get_opt(&name).await {
                Ok(Some(w)) => {
                    read.workspaces.insert(name, w);
                }
                Ok(None) => {}
                Err(e) => {
                    let why = unreadable(Op::new("get", WORKSPACES).name(&name), e);
                    read.unreadable_workspaces.insert(name, why);
                }
            }
        }
        read
    }
}

/// `kubectl zenml audit`: reads the cluster, builds the report, prints it.
pub async fn audit(s: &Session, args: &AuditArgs) -> Result<()> {
    let now = Timestamp::now();
    let fetched = fetch(s).await?;
    let roles = RoleMap::new(
        &args.admin_cluster_role,
        &args.developer_cluster_role,
        &args.contributor_cluster_role,
        &args.viewer_cluster_role,
    );
    let report = build(&fetched, args.expiring_within, &roles, now);
    print(s.format, &report)
}

/// Everything the audit reads from the API server, and what it could not read.
pub struct Fetched {
    /// `--workspace`, which limits the audit to one workspace.
    pub scope: Option<String>,
    /// The workspaces whose members are shown.
    pub workspaces: Vec<Workspace>,
    /// The audited projects, sorted by workspace and name.
    pub projects: Vec<Project>,
    /// Every ProjectRoleBinding, or why they could not be listed.
    pub bindings: Result<Vec<ProjectRoleBinding>>,
    /// The projects and workspaces the operator decides from, beyond the audited ones.
    pub read: Read,
    /// What is in each audited project's namespace, one per project in the order of `projects`.
    pub namespaces: Vec<InNamespace>,
    /// What could not be read but does not stop the audit, in the order it happened.
    pub warnings: Vec<String>,
}

/// What the audit reads in one project's namespace.
pub struct InNamespace {
    /// The namespace's name.
    pub name: String,
    /// Its metadata, when it may be read.
    pub meta: Option<ObjectMeta>,
    pub role_bindings: Result<Vec<RoleBinding>>,
    /// Metadata of the long-lived token Secrets: the audit never reads a token.
    pub token_secrets: Result<Vec<ObjectMeta>>,
}

/// Reads what the audit judges: the workspaces and projects in scope, every ProjectRoleBinding, what the operator
/// decides their RoleBindings from, and each project namespace's RoleBindings and token Secrets.
pub async fn fetch(s: &Session) -> Result<Fetched> {
    let mut warnings = Vec::new();
    let scope = s.workspace_flag.clone();
    let workspaces: Vec<Workspace> = match &scope {
        Some(w) => match s.workspace(w).await {
            Ok(ws) => vec![ws],
            Err(Error::Forbidden(why)) => {
                warnings.push(format!("workspace members not shown: {why}"));
                Vec::new()
            }
            Err(e) => return Err(e.given_by("--workspace")),
        },
        None => s.visible_workspaces(&mut warnings).await?,
    };
    let projects = s.list_projects(scope.as_deref()).await.map_err(|e| Op::new("list", PROJECTS).err(e))?;
    let bindings = match s.bindings().list(&ListParams::default()).await {
        Ok(l) => Ok(l.items),
        Err(e) => Err(Op::new("list", BINDINGS).err(e)),
    };
    let listed = bindings.as_deref().unwrap_or_default();
    let read = Read::complete(s, &projects, &workspaces, listed).await;
    let namespaces =
        stream::iter(projects.iter()).map(|p| in_namespace(s, namespace_of(p))).buffered(8).collect::<Vec<_>>().await;
    Ok(Fetched { scope, workspaces, projects, bindings, read, namespaces, warnings })
}

async fn in_namespace(s: &Session, ns: String) -> InNamespace {
    let rbs: Api<RoleBinding> = Api::namespaced(s.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &ns);
    let namespaces: Api<Namespace> = Api::all(s.client.clone());
    let (all, tokens) = (ListParams::default(), ListParams::default().fields(TOKEN_SELECTOR));
    let (rbs, secrets, meta) =
        futures::join!(rbs.list(&all), secrets.list_metadata(&tokens), namespaces.get_metadata_opt(&ns));
    InNamespace {
        role_bindings: rbs.map(|l| l.items).map_err(|e| Op::new("list", ROLE_BINDINGS).namespace(&ns).err(e)),
        token_secrets: secrets
            .map(|l| l.items.into_iter().map(|m| m.metadata).collect())
            .map_err(|e| Op::new("list", "secrets").namespace(&ns).err(e)),
        // A namespace that may not be read is judged by the project's status.
        meta: meta.ok().flatten().map(|n| n.metadata),
        name: ns,
    }
}

/// The report on what was fetched: a pure function of it, the role map the operator runs with, and the time.
pub fn build(f: &Fetched, expiring_within: Duration, roles: &RoleMap, now: Timestamp) -> Report {
    let mut warnings = f.warnings.clone();
    let bindings = match &f.bindings {
        Ok(b) => b.as_slice(),
        Err(e) => {
            warnings.push(format!("ProjectRoleBindings not shown: {e}"));
            &[]
        }
    };
    let members: Vec<Member> = f
        .projects
        .iter()
        .flat_map(|p| {
            let ws = f.workspaces.iter().find(|w| w.metadata.name.as_deref() == Some(p.spec.workspace.as_str()));
            member::members(p, bindings, ws)
        })
        .collect();
    let inputs = Inputs { workspaces: &f.read.workspaces, projects: &f.read.projects, bindings, roles, now };
    let mut unmanaged_rbs = Vec::new();
    let mut tokens = Vec::new();
    for (p, ns) in f.projects.iter().zip(&f.namespaces) {
        let project = p.name_any();
        match &ns.role_bindings {
            Ok(rbs) => {
                let blind = match &f.bindings {
                    Ok(_) => blind_spots(p, bindings, &f.read),
                    Err(_) => {
                        vec![format!("the ProjectRoleBindings (you lack {})", Op::new("list", BINDINGS).permission())]
                    }
                };
                if blind.is_empty() {
                    let wanted = wanted(p, ns.meta.as_ref(), &inputs);
                    unmanaged_rbs.extend(unmanaged(&project, &ns.name, rbs, &wanted, now));
                } else {
                    warnings.push(format!(
                        "RoleBindings of project {project} not checked: telling the operator's from others needs {}",
                        blind.join(", ")
                    ));
                }
            }
            Err(e) => warnings.push(not_checked("RoleBindings", &project, e)),
        }
        match &ns.token_secrets {
            Ok(metas) => tokens.extend(token_secrets(&project, &ns.name, metas, now)),
            Err(e) => warnings.push(not_checked("token Secrets", &project, e)),
        }
    }
    Report {
        kind: "ZenMLAudit",
        generated_at: now.to_string(),
        workspace: f.scope.clone(),
        expiring_within: names::format_duration(expiring_within),
        project_count: f.projects.len(),
        members,
        expiring: expiring(bindings, &f.projects, now, expiring_within),
        unmanaged_role_bindings: unmanaged_rbs,
        token_secrets: tokens,
        warnings,
    }
}

/// The warning for what of a project's namespace could not be listed.
fn not_checked(what: &str, project: &str, e: &Error) -> String {
    match e {
        Error::Forbidden(f) => format!("{what} of project {project} not checked: you lack {}", f.op.permission()),
        e => e.to_string(),
    }
}

/// Prints the report: as one JSON or YAML document, or as tables; the warnings go to stderr either way.
pub fn print(format: Format, report: &Report) -> Result<()> {
    if format != Format::Table {
        for w in &report.warnings {
            warn(w);
        }
        return print_doc(format, report);
    }
    print!("{}", render(report));
    for w in &report.warnings {
        warn(w);
    }
    Ok(())
}

/// The report as tables, one section each, `none` for an empty one.
pub fn render(report: &Report) -> String {
    let section = |title: String, headers: &[&str], rows: Vec<Vec<String>>| {
        let body = if rows.is_empty() { "  none".to_owned() } else { indent(&output::table(headers, &rows)) };
        format!("{title}\n{body}\n")
    };
    let scope = report.workspace.as_ref().map(|w| format!(" of workspace {w}")).unwrap_or_default();
    let members = format!("Members of {} project(s){scope}:", report.project_count);
    let members = if report.members.is_empty() {
        format!("{members}\n  none\n")
    } else {
        format!("{members}\n{}\n", indent(&member::members_table(&report.members, true)))
    };
    let expiring = report.expiring.iter().map(|e| {
        vec![
            e.expires_at.clone(),
            if e.expired { "expired".into() } else { String::new() },
            e.project.clone(),
            e.role.clone(),
            e.subjects.iter().map(names::describe_subject).collect::<Vec<_>>().join(", "),
            e.binding.clone(),
        ]
    });
    let unmanaged = report.unmanaged_role_bindings.iter().map(|u| {
        let subjects = u.subjects.join(", ");
        vec![u.namespace.clone(), u.name.clone(), u.role_ref.clone(), subjects, u.age.clone(), u.reason.clone()]
    });
    let tokens = report
        .token_secrets
        .iter()
        .map(|t| vec![t.namespace.clone(), t.name.clone(), output::dash(t.service_account.as_deref()), t.age.clone()]);
    [
        members,
        section(
            format!("Grants expiring within {}:", report.expiring_within),
            &["EXPIRES", "", "PROJECT", "ROLE", "SUBJECTS", "BINDING"],
            expiring.collect(),
        ),
        section(
            "RoleBindings in project namespaces that the operator does not make (access around ProjectRoleBindings):"
                .into(),
            &["NAMESPACE", "NAME", "ROLE", "SUBJECTS", "AGE", "WHY"],
            unmanaged.collect(),
        ),
        section(
            "Long-lived ServiceAccount token Secrets in project namespaces:".into(),
            &["NAMESPACE", "NAME", "SERVICE ACCOUNT", "AGE"],
            tokens.collect(),
        ),
    ]
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject as RbacSubject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::core::Status;
    use zenml_api::{ProjectRoleBindingSpec, ProjectSpec, ProjectStatus, SubjectKind, WorkspaceMember, WorkspaceSpec};

    #[test]
    fn expiring_grants_soonest_first_within_the_window_and_in_scope() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let b = |name: &str, project: &str, at: Option<&str>| {
            ProjectRoleBinding::new(
                name,
                ProjectRoleBindingSpec {
                    project: project.into(),
                    role: "viewer".into(),
                    subjects: vec![Subject {
                        kind: SubjectKind::User,
                        name: "u".into(),
                        project: None,
                        namespace: None,
                    }],
                    expires_at: at.map(|t| Time(t.parse().unwrap())),
                },
            )
        };
        let bindings = [
            b("later", "p", Some("2026-01-07T00:00:00Z")),
            b("soon", "p", Some("2026-01-02T00:00:00Z")),
            b("past", "p", Some("2025-12-31T00:00:00Z")),
            b("far", "p", Some("2026-02-01T00:00:00Z")),
            b("never", "p", None),
            b("elsewhere", "q", Some("2026-01-02T00:00:00Z")),
        ];
        let projects = [Project::new("p", ProjectSpec::default())];
        let e = expiring(&bindings, &projects, now, Duration::from_secs(7 * 86_400));
        let names: Vec<(&str, bool)> = e.iter().map(|e| (e.binding.as_str(), e.expired)).collect();
        assert_eq!(names, [("past", true), ("soon", false), ("later", false)]);
    }

    fn user(name: &str) -> Subject {
        Subject { kind: SubjectKind::User, name: name.into(), project: None, namespace: None }
    }

    fn prb(name: &str, role: &str, subjects: Vec<Subject>) -> ProjectRoleBinding {
        let mut b = ProjectRoleBinding::new(
            name,
            ProjectRoleBindingSpec { project: "fraud".into(), role: role.into(), subjects, expires_at: None },
        );
        b.metadata.uid = Some(format!("uid-{name}"));
        b
    }

    /// Workspace `ml` with admins and viewers; its project `fraud`; `recsys`, a project of workspace `other`; bindings:
    /// alice developer, fraud's runner viewer (a ServiceAccount subject of the project itself), bob's expired admin,
    /// and recsys' runner viewer (across workspaces that do not trust each other, so refused).
    struct World {
        workspaces: BTreeMap<String, Workspace>,
        projects: BTreeMap<String, Project>,
        bindings: Vec<ProjectRoleBinding>,
        now: Timestamp,
    }

    impl World {
        fn new() -> World {
            let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
            let group = |n: &str| Subject { kind: SubjectKind::Group, name: n.into(), project: None, namespace: None };
            let mut ml = Workspace::new(
                "ml",
                WorkspaceSpec {
                    members: vec![
                        WorkspaceMember { role: "admin".into(), subjects: vec![group("ml-admins")] },
                        WorkspaceMember { role: "viewer".into(), subjects: vec![group("org")] },
                    ],
                    ..Default::default()
                },
            );
            ml.metadata.uid = Some("uid-ml".into());
            let mut other = Workspace::new("other", WorkspaceSpec::default());
            other.metadata.uid = Some("uid-other".into());
            let project = |name: &str, ws: &str| {
                let mut p = Project::new(name, ProjectSpec { workspace: ws.into(), ..Default::default() });
                p.metadata.uid = Some(format!("uid-{name}"));
                p.status = Some(ProjectStatus { namespace: Some(name.into()), ..Default::default() });
                (name.to_owned(), p)
            };
            let sa = |project: &str| Subject {
                kind: SubjectKind::ServiceAccount,
                name: "zenml-runner".into(),
                project: Some(project.into()),
                namespace: None,
            };
            let mut expired = prb("bob-admin", "admin", vec![user("bob")]);
            expired.spec.expires_at = Some(Time("2025-12-31T00:00:00Z".parse().unwrap()));
            World {
                workspaces: [("ml".to_owned(), ml), ("other".to_owned(), other)].into(),
                projects: [project("fraud", "ml"), project("recsys", "other")].into(),
                bindings: vec![
                    prb("alice-dev", "developer", vec![user("alice")]),
                    prb("runner-view", "viewer", vec![sa("fraud")]),
                    expired,
                    prb("recsys-view", "viewer", vec![sa("recsys")]),
                ],
                now,
            }
        }

        fn fraud(&self) -> &Project {
            &self.projects["fraud"]
        }

        fn wanted_with(&self, roles: &RoleMap, namespace: Option<&ObjectMeta>) -> Wanted {
            let inputs = Inputs {
                workspaces: &self.workspaces,
                projects: &self.projects,
                bindings: &self.bindings,
                roles,
                now: self.now,
            };
            wanted(self.fraud(), namespace, &inputs)
        }

        fn wanted(&self) -> Wanted {
            self.wanted_with(&RoleMap::default(), Some(&self.namespace()))
        }

        /// fraud's namespace as the operator provisioned it.
        fn namespace(&self) -> ObjectMeta {
            let roles = RoleMap::default();
            let ws = &self.workspaces["ml"];
            let net = resources::NetworkFacts::default();
            resources::desired(self.fraud(), ws, &ResourceList::default(), &roles, &net, &[], self.now)
                .namespace
                .metadata
        }
    }

    /// The operator's RoleBindings as the API server returns them: defaults filled in, subjects in another order.
    fn as_live(mut rb: RoleBinding) -> RoleBinding {
        rb.metadata.creation_timestamp = Some(Time("2025-12-30T00:00:00Z".parse().unwrap()));
        if let Some(subjects) = rb.subjects.as_mut() {
            subjects.reverse();
            for s in subjects.iter_mut().filter(|s| s.kind == "ServiceAccount") {
                s.api_group = Some(String::new());
            }
        }
        rb
    }

    fn rb(name: &str, cluster_role: &str, subjects: &[&str]) -> RoleBinding {
        let mut rb = RoleBinding {
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: cluster_role.into(),
            },
            subjects: Some(
                subjects
                    .iter()
                    .map(|n| RbacSubject {
                        kind: "User".into(),
                        name: (*n).into(),
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        namespace: None,
                    })
                    .collect(),
            ),
            ..Default::default()
        };
        rb.metadata.name = Some(name.into());
        rb
    }

    fn judged(rb: &RoleBinding, wanted: &Wanted) -> String {
        judge(rb, wanted).unwrap_or_else(|| panic!("{} is reported", rb.name_any()))
    }

    #[test]
    fn the_operators_own_role_bindings_are_not_reported() {
        let world = World::new();
        let wanted = world.wanted();
        let names: Vec<&str> = wanted.bindings.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "zenml-prb-alice-dev",
                "zenml-prb-runner-view",
                "zenml-project-admin",
                "zenml-runner",
                "zenml-workspace-admin",
                "zenml-workspace-viewer"
            ]
        );
        let live: Vec<RoleBinding> = wanted.bindings.values().map(|w| as_live(w.role_binding.clone())).collect();
        assert_eq!(unmanaged("fraud", "fraud", &live, &wanted, world.now), []);
        // Without their labels and annotations they are the operator's still: those grant nothing.
        let bare: Vec<RoleBinding> = live
            .into_iter()
            .map(|mut rb| {
                rb.metadata.labels = None;
                rb.metadata.annotations = None;
                rb
            })
            .collect();
        assert_eq!(unmanaged("fraud", "fraud", &bare, &wanted, world.now), []);
        // A namespace that may not be read: the project's status names it.
        assert_eq!(world.wanted_with(&RoleMap::default(), None), wanted);
    }

    #[test]
    fn forged_labels_prove_nothing() {
        let world = World::new();
        let wanted = world.wanted();
        let mut forged = rb("totally-legit", "admin", &["mallory"]);
        forged.metadata.labels = wanted.bindings["zenml-runner"].role_binding.metadata.labels.clone();
        forged.metadata.creation_timestamp = Some(Time("2025-12-29T00:00:00Z".parse().unwrap()));
        let sneaky = rb("sneaky", "edit", &["mallory"]);
        let u = unmanaged("fraud", "fraud", &[sneaky, forged], &wanted, world.now);
        assert_eq!(u.len(), 2);
        assert_eq!((u[0].name.as_str(), u[0].labelled_as_operators), ("sneaky", false));
        assert_eq!(
            u[0].reason,
            "not made by the operator: grants ClusterRole/edit to mallory (User), which no ProjectRoleBinding or \
             workspace member asks for"
        );
        assert_eq!((u[1].name.as_str(), u[1].labelled_as_operators), ("totally-legit", true));
        assert_eq!(
            u[1].reason,
            "labelled as the operator's, but grants ClusterRole/admin to mallory (User), which no ProjectRoleBinding \
             or workspace member asks for"
        );
        assert_eq!(
            (u[1].role_ref.as_str(), u[1].subjects.as_slice()),
            ("ClusterRole/admin", ["mallory (User)".to_owned()].as_slice())
        );
        assert_eq!((u[1].created_at.as_deref(), u[1].age.as_str()), (Some("2025-12-29T00:00:00Z"), "3d"));
    }

    #[test]
    fn one_of_ours_changed_by_hand_is_reported_with_each_difference() {
        let world = World::new();
        let wanted = world.wanted();
        let runner = || as_live(wanted.bindings["zenml-runner"].role_binding.clone());

        let mut escalated = runner();
        escalated.role_ref.name = "cluster-admin".into();
        escalated.subjects.as_mut().unwrap().push(rb("", "", &["mallory"]).subjects.unwrap().remove(0));
        assert_eq!(
            judged(&escalated, &wanted),
            "named like the operator's RoleBinding for project fraud, but grants ClusterRole/cluster-admin instead of \
             ClusterRole/edit; also grants it to mallory (User)"
        );
        let mut emptied = runner();
        emptied.subjects = None;
        assert_eq!(
            judged(&emptied, &wanted),
            "named like the operator's RoleBinding for project fraud, but leaves out fraud/zenml-runner (ServiceAccount)"
        );
        // The same content, but not controlled by the project instance: made by someone else, or left by a former
        // project of that name.
        let mut foreign = runner();
        foreign.metadata.owner_references.as_mut().unwrap()[0].uid = "uid-old-fraud".into();
        assert_eq!(
            judged(&foreign, &wanted),
            "named like the operator's RoleBinding for project fraud, but is controlled by uid uid-old-fraud, not by \
             project fraud (uid uid-fraud)"
        );
        let mut orphan = as_live(wanted.bindings["zenml-prb-alice-dev"].role_binding.clone());
        orphan.metadata.owner_references = None;
        assert_eq!(
            judged(&orphan, &wanted),
            "named like the operator's RoleBinding for ProjectRoleBinding alice-dev, but has no controller, where the \
             operator's is ProjectRoleBinding alice-dev (uid uid-alice-dev)"
        );
        // A copy of one of ours, under another name.
        let mut copy = runner();
        copy.metadata.name = Some("runner-too".into());
        assert_eq!(
            judged(&copy, &wanted),
            "labelled as the operator's, but grants ClusterRole/edit to fraud/zenml-runner (ServiceAccount), as the \
             operator's zenml-runner does, under a name the operator does not use"
        );
    }

    #[test]
    fn bindings_that_grant_nothing_now_have_no_role_binding() {
        let world = World::new();
        let wanted = world.wanted();
        assert_eq!(wanted.refused["zenml-prb-bob-admin"], ("bob-admin".to_owned(), "Expired"));
        assert_eq!(wanted.refused["zenml-prb-recsys-view"], ("recsys-view".to_owned(), "CrossWorkspaceGrant"));
        let mut left = rb("zenml-prb-bob-admin", "admin", &["bob"]);
        left.metadata.labels = Some([(labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned())].into());
        assert_eq!(
            judged(&left, &wanted),
            "labelled as the operator's, but ProjectRoleBinding bob-admin grants nothing now (Expired), so the \
             operator makes no RoleBinding zenml-prb-bob-admin"
        );
        // The expired admin is no project admin either.
        let delegation = &wanted.bindings["zenml-project-admin"].role_binding;
        assert_eq!(
            delegation.subjects.as_ref().unwrap().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["ml-admins"]
        );
        // Both workspaces trusting each other, the cross-workspace grant is the operator's.
        let mut world = World::new();
        for (ws, trusts) in [("ml", "other"), ("other", "ml")] {
            world.workspaces.get_mut(ws).unwrap().spec.trusted_workspaces = vec![trusts.into()];
        }
        assert!(world.wanted().bindings.contains_key("zenml-prb-recsys-view"));
    }

    #[test]
    fn nothing_is_the_operators_in_a_namespace_of_another_project_instance() {
        let world = World::new();
        let mut ns = world.namespace();
        ns.annotations.as_mut().unwrap().insert(labels::PROJECT_UID.to_owned(), "uid-old-fraud".into());
        let wanted = world.wanted_with(&RoleMap::default(), Some(&ns));
        assert!(wanted.bindings.is_empty());
        let runner = as_live(world.wanted().bindings["zenml-runner"].role_binding.clone());
        assert!(judged(&runner, &wanted).starts_with(
            "labelled as the operator's, but namespace fraud is not this instance's of project fraud (uid uid-fraud)"
        ));
    }

    #[test]
    fn the_role_map_is_the_operators() {
        let world = World::new();
        let runner = as_live(world.wanted().bindings["zenml-runner"].role_binding.clone());
        let roles = RoleMap::new("admin", "zenml-developer", "zenml-project-contributor", "view");
        let wanted = world.wanted_with(&roles, Some(&world.namespace()));
        assert!(judged(&runner, &wanted).contains("grants ClusterRole/edit instead of ClusterRole/zenml-developer"));
    }

    /// What `fetch` would return for workspace `ml`: fraud's namespace holds the operator's RoleBindings, `sneaky`
    /// and a runner token Secret.
    fn fetched(world: &World) -> Fetched {
        let mut live: Vec<RoleBinding> =
            world.wanted().bindings.values().map(|w| as_live(w.role_binding.clone())).collect();
        live.push(rb("sneaky", "edit", &["mallory"]));
        let token = ObjectMeta {
            name: Some("runner-token".into()),
            annotations: Some([(SERVICE_ACCOUNT_NAME.to_owned(), "zenml-runner".to_owned())].into()),
            ..Default::default()
        };
        Fetched {
            scope: Some("ml".into()),
            workspaces: vec![world.workspaces["ml"].clone()],
            projects: vec![world.fraud().clone()],
            bindings: Ok(world.bindings.clone()),
            read: Read { projects: world.projects.clone(), workspaces: world.workspaces.clone(), ..Read::default() },
            namespaces: vec![InNamespace {
                name: "fraud".into(),
                meta: Some(world.namespace()),
                role_bindings: Ok(live),
                token_secrets: Ok(vec![token]),
            }],
            warnings: Vec::new(),
        }
    }

    #[test]
    fn the_report_is_built_from_what_was_fetched() {
        let world = World::new();
        let report = build(&fetched(&world), Duration::from_secs(7 * 86_400), &RoleMap::default(), world.now);
        let names = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        let unmanaged: Vec<&str> = report.unmanaged_role_bindings.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names(unmanaged), ["sneaky"]);
        let tokens: Vec<&str> = report.token_secrets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names(tokens), ["runner-token"]);
        let expiring: Vec<(&str, bool)> = report.expiring.iter().map(|e| (e.binding.as_str(), e.expired)).collect();
        assert_eq!(expiring, [("bob-admin", true)]);
        let members: Vec<(&str, &str)> =
            report.members.iter().map(|m| (m.role.as_str(), m.subject.name.as_str())).collect();
        assert!(members.contains(&("developer", "alice")) && members.contains(&("admin", "ml-admins")), "{members:?}");
        assert_eq!(report.warnings, Vec::<String>::new());
        assert_eq!((report.workspace.as_deref(), report.expiring_within.as_str()), (Some("ml"), "7d"));

        let text = render(&report);
        assert!(text.starts_with("Members of 1 project(s) of workspace ml:\n"), "{text}");
        assert!(text.contains("\n\nGrants expiring within 7d:\n") && text.contains("expired"), "{text}");
        assert!(text.contains("sneaky") && text.contains("runner-token"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("projectCount").is_none(), "the count is for the table only: {json}");
    }

    #[test]
    fn what_may_not_be_read_is_a_warning_not_a_failure() {
        let world = World::new();
        let forbidden = |op: Op| op.err(kube::Error::Api(Box::new(Status::failure("no", "Forbidden").with_code(403))));
        let mut f = fetched(&world);
        f.bindings = Err(forbidden(Op::new("list", BINDINGS)));
        f.namespaces[0].token_secrets = Err(forbidden(Op::new("list", "secrets").namespace("fraud")));
        let report = build(&f, Duration::from_secs(86_400), &RoleMap::default(), world.now);
        assert_eq!(report.warnings.len(), 3, "{:#?}", report.warnings);
        assert!(report.warnings[0].starts_with("ProjectRoleBindings not shown: not allowed to list"));
        assert_eq!(
            report.warnings[1],
            "RoleBindings of project fraud not checked: telling the operator's from others needs the \
             ProjectRoleBindings (you lack `list` on projectrolebindings.zenml.io at cluster scope)"
        );
        assert_eq!(
            report.warnings[2],
            "token Secrets of project fraud not checked: you lack `list` on secrets in namespace fraud"
        );
        assert!(report.unmanaged_role_bindings.is_empty() && report.token_secrets.is_empty());
        // Workspace members are still shown.
        assert!(report.members.iter().all(|m| m.source.kind == "Workspace") && !report.members.is_empty());
    }

    #[test]
    fn token_secrets_name_their_service_account_and_age() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let secret = |name: &str, sa: Option<&str>| ObjectMeta {
            name: Some(name.into()),
            annotations: sa.map(|sa| [(SERVICE_ACCOUNT_NAME.to_owned(), sa.to_owned())].into()),
            creation_timestamp: Some(Time("2025-12-31T19:00:00Z".parse().unwrap())),
            ..Default::default()
        };
        let t = token_secrets("fraud", "fraud", &[secret("z", None), secret("a", Some("zenml-runner"))], now);
        let got: Vec<(&str, Option<&str>, &str)> =
            t.iter().map(|t| (t.name.as_str(), t.service_account.as_deref(), t.age.as_str())).collect();
        assert_eq!(got, [("a", Some("zenml-runner"), "5h"), ("z", None, "5h")]);
    }
}
