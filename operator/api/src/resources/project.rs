//! The objects a Project stands for, as a pure function of the Project, its Workspace and the quota it is granted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject as RbacSubject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use serde::Serialize;

use super::RoleMap;
use super::network::{self, NetworkFacts};
use crate::labels;
use crate::{
    BuiltinRole, EgressMode, NetworkIsolation, Project, ProjectRoleBinding, ResourceList, Subject, SubjectKind,
    Workspace,
};

/// Default name of the runner ServiceAccount.
pub const DEFAULT_RUNNER: &str = "zenml-runner";
/// Names of the children that exist once per project.
pub const QUOTA_NAME: &str = "zenml-project";
pub const LIMIT_RANGE_NAME: &str = "zenml-project";
pub const NETWORK_POLICY_NAME: &str = "zenml-project-isolation";
pub const RUNNER_BINDING_NAME: &str = "zenml-runner";
/// The Role (and its binding) that lets project admins manage the project's ProjectRoleBindings.
pub const DELEGATION_NAME: &str = "zenml-project-admin";
/// The custom verb the ProjectRoleBinding admission policy checks in the project namespace.
pub const MANAGE_BINDINGS_VERB: &str = "manage";

/// Everything a Project owns, as it should be.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Children {
    pub namespace: Namespace,
    pub quota: Option<ResourceQuota>,
    pub limit_range: Option<LimitRange>,
    pub network_policy: Option<NetworkPolicy>,
    pub runner: ServiceAccount,
    /// The runner's binding and one per workspace member role, sorted by name.
    pub role_bindings: Vec<RoleBinding>,
    /// Grants the project's admins the right to manage its ProjectRoleBindings (checked by an admission policy).
    pub delegation: Role,
    /// Workspace member roles that the workspace does not allow; nothing is bound for them.
    pub roles_not_allowed: Vec<String>,
    /// Subjects per role: workspace members and the project's ProjectRoleBindings that are in force.
    pub members: BTreeMap<String, i32>,
    /// The workspace's templates, as objects in the project namespace (see `templates`).
    pub templates: super::templates::Templates,
    /// The egress is restricted and the operator knows no API server endpoint to allow (see `network`).
    pub api_server_unknown: bool,
}

/// The quota a project asks for: the workspace default, overridden key by key by the project.
pub fn requested_quota(project: &Project, workspace: &Workspace) -> ResourceList {
    let mut hard = defaults(workspace).and_then(|d| d.quota.as_ref()).map(|q| q.hard.clone()).unwrap_or_default();
    if let Some(q) = &project.spec.quota {
        hard.extend(q.hard.clone());
    }
    hard
}

fn defaults(workspace: &Workspace) -> Option<&crate::ProjectDefaults> {
    workspace.spec.project_defaults.as_ref()
}

/// Whether a namespace belongs to this project instance. Ownership is the project's uid recorded on the namespace
/// ([`labels::PROJECT_UID`]): a same-named project of another workspace, or one recreated after its predecessor's
/// finalizer was removed by hand, finds an orphan it may not take until a cluster admin hands it over
/// ([`adoption_requested`]). A namespace from before the uid was recorded is the project's only if the project's own
/// status already names it (it provisioned it) and our workspace label agrees. Our project label removed by hand is
/// restored like any other drift, when the rest still says the namespace is ours.
pub fn namespace_is_ours(ns: &ObjectMeta, project: &Project) -> bool {
    let name = project.name_any();
    let get = |m: &Option<BTreeMap<String, String>>, k: &str| m.as_ref().and_then(|m| m.get(k)).cloned();
    let named_in_status = project.status.as_ref().and_then(|s| s.namespace.as_ref()) == Some(&name);
    let same_instance = match get(&ns.annotations, labels::PROJECT_UID) {
        Some(uid) => project.meta().uid.as_ref() == Some(&uid),
        None => named_in_status && get(&ns.labels, labels::WORKSPACE).as_ref() == Some(&project.spec.workspace),
    };
    if !same_instance || get(&ns.annotations, labels::FORMER_PROJECT).is_some() {
        return false;
    }
    get(&ns.labels, labels::PROJECT).as_ref() == Some(&name)
        || (named_in_status
            && get(&ns.labels, labels::MANAGED_BY).as_deref() == Some(labels::MANAGED_BY_VALUE)
            && get(&ns.annotations, labels::APPLIED_HASH).is_some())
}

/// Whether a cluster admin handed the namespace to this project: `zenml.io/adopt: <workspace>/<project>`.
pub fn adoption_requested(ns: &ObjectMeta, project: &Project) -> bool {
    let wanted = format!("{}/{}", project.spec.workspace, project.name_any());
    ns.annotations.as_ref().and_then(|a| a.get(labels::ADOPT)) == Some(&wanted)
}

pub use super::network::{egress, isolation as network_isolation};

/// Whether the project is frozen at `now`: by its own `spec.frozen`, its workspace's, or because it has expired.
pub fn frozen(project: &Project, workspace: &Workspace, now: Timestamp) -> bool {
    project.spec.frozen || workspace.spec.frozen || expired(project, now)
}

/// Whether the project has expired at `now` (`spec.expiresAt` reached).
pub fn expired(project: &Project, now: Timestamp) -> bool {
    project.spec.expires_at.as_ref().is_some_and(|t| t.0 <= now)
}

/// How long until the project expires, if it has an expiry still ahead: its reconcile is woken then, not polled.
pub fn until_expiry(project: &Project, now: Timestamp) -> Option<std::time::Duration> {
    let at = project.spec.expires_at.as_ref()?.0;
    (at > now).then(|| std::time::Duration::try_from(at.duration_since(now)).unwrap_or_default())
}

/// Entries of the project's `spec.policies` its workspace does not allow (`storageClasses: gold`), which narrow
/// nothing: the admission policy requires both lists, so they only make the list stricter than meant. A workspace
/// list that is empty allows everything; an image prefix is allowed within one of the workspace's.
pub fn policies_not_allowed(project: &Project, workspace: &Workspace) -> Vec<String> {
    let (Some(own), Some(theirs)) = (&project.spec.policies, &workspace.spec.policies) else {
        return Vec::new();
    };
    let mut not_allowed = Vec::new();
    for ((field, _, list), (_, _, allowed)) in own.lists().into_iter().zip(theirs.allowed.lists()) {
        if allowed.is_empty() {
            continue;
        }
        let within = |v: &String| match field {
            "imageRegistries" => allowed.iter().any(|a| v.starts_with(a.as_str())),
            _ => allowed.contains(v),
        };
        not_allowed.extend(list.iter().filter(|v| !within(v)).map(|v| format!("{field}: {v}")));
    }
    not_allowed
}

/// The runner ServiceAccount's name.
pub fn runner_name(project: &Project) -> String {
    project
        .spec
        .runner
        .as_ref()
        .and_then(|r| r.service_account_name.clone())
        .unwrap_or_else(|| DEFAULT_RUNNER.to_owned())
}

/// Labels every child of a project carries, so the operator's watches and cost tools can find it.
fn child_labels(project: &Project, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
        (labels::WORKSPACE.to_owned(), project.spec.workspace.clone()),
        (labels::PROJECT.to_owned(), project.name_any()),
        (labels::COMPONENT.to_owned(), component.to_owned()),
    ])
}

fn child_meta(project: &Project, owner: &OwnerReference, name: &str, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(project.name_any()),
        labels: Some(child_labels(project, component)),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    }
}

/// Builds every child. `granted` is the quota the workspace budget grants (see `budget`), already merged;
/// `bindings` are the project's ProjectRoleBindings (their own RoleBindings are theirs; here they count as members and
/// their admins get the delegation Role).
pub fn desired(
    project: &Project,
    workspace: &Workspace,
    granted: &ResourceList,
    roles: &RoleMap,
    net: &NetworkFacts,
    bindings: &[&ProjectRoleBinding],
    now: Timestamp,
) -> Children {
    let owner = owner(project);
    let mut role_bindings = vec![runner_binding(project, &owner, roles)];
    let (member_bindings, roles_not_allowed) = member_bindings(project, workspace, &owner, roles);
    role_bindings.extend(member_bindings);
    role_bindings.extend(owners_binding(project, workspace, &owner, roles));
    let admins = admins(project, workspace, roles, bindings, now);
    role_bindings.extend(delegation_binding(project, &owner, admins));
    role_bindings.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut children = Children {
        namespace: namespace(project, workspace, now),
        quota: quota(project, &owner, granted),
        limit_range: limit_range(project, workspace, &owner),
        network_policy: network_policy(project, workspace, net, &owner),
        runner: runner(project, &owner),
        role_bindings,
        delegation: delegation(project, &owner),
        roles_not_allowed,
        members: members(project, workspace, roles, bindings, now),
        templates: super::templates::desired(project, workspace, &owner),
        api_server_unknown: network::api_server_unknown(project, workspace, net),
    };
    stamp(&mut children.delegation);
    stamp(&mut children.namespace);
    children.quota.iter_mut().for_each(stamp);
    children.limit_range.iter_mut().for_each(stamp);
    children.network_policy.iter_mut().for_each(stamp);
    stamp(&mut children.runner);
    children.role_bindings.iter_mut().for_each(stamp);
    children
}

/// The project as its children's controller. Without blockOwnerDeletion: that would need update rights on
/// projects/finalizers.
fn owner(project: &Project) -> OwnerReference {
    OwnerReference {
        block_owner_deletion: None,
        ..project.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
            api_version: Project::api_version(&()).into_owned(),
            kind: Project::kind(&()).into_owned(),
            name: project.name_any(),
            uid: project.uid().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: None,
        })
    }
}

/// The namespace: the project's own labels and annotations, the workspace's enforced labels over them, and ours
/// (ownership, isolation, tenant rule exceptions, the ZenML project ID).
fn namespace(project: &Project, workspace: &Workspace, now: Timestamp) -> Namespace {
    let mut ns_labels = project.spec.namespace_labels.clone();
    if let Some(d) = defaults(workspace) {
        // enforced by the workspace: a project cannot override them
        ns_labels.extend(d.namespace_labels.clone());
    }
    ns_labels.extend(child_labels(project, "namespace"));
    let isolation = match network_isolation(project, workspace) {
        NetworkIsolation::None => "None",
        NetworkIsolation::Project => "Project",
        NetworkIsolation::Workspace => "Workspace",
    };
    ns_labels.insert(labels::NETWORK_ISOLATION.to_owned(), isolation.to_owned());
    let egress = match egress(project, workspace).mode {
        EgressMode::Open => "Open",
        EgressMode::Workspace => "Workspace",
        EgressMode::AllowList => "AllowList",
    };
    ns_labels.insert(labels::EGRESS.to_owned(), egress.to_owned());
    if frozen(project, workspace, now) {
        ns_labels.insert(labels::FROZEN.to_owned(), "true".to_owned());
    }
    let exceptions = workspace.spec.tenant_rule_exceptions.clone().unwrap_or_default();
    for (on, key) in [
        (exceptions.direct_access, labels::ALLOW_DIRECT_ACCESS),
        (exceptions.open_network_policies, labels::ALLOW_OPEN_NETWORK_POLICIES),
    ] {
        if on {
            ns_labels.insert(key.to_owned(), "true".to_owned());
        }
    }
    let mut ns_annotations = project.spec.namespace_annotations.clone();
    if let Some(uid) = project.uid() {
        ns_annotations.insert(labels::PROJECT_UID.to_owned(), uid);
    }
    for (_, key, list) in project.spec.policies.as_ref().map(|p| p.lists()).into_iter().flatten() {
        if !list.is_empty() {
            // Class names and image prefixes hold no comma: the admission policy splits on it.
            ns_annotations.insert(key.to_owned(), list.join(","));
        }
    }
    if let Some(id) = &project.spec.project_id {
        // Always as an annotation; as a label (for `-l zenml.io/project-id=...`) when the ID fits a label value:
        // ZenML allows IDs like `_fraud` that labels do not.
        ns_annotations.insert(labels::PROJECT_ID.to_owned(), id.clone());
        if super::validate::is_label_value(id) {
            ns_labels.insert(labels::PROJECT_ID.to_owned(), id.clone());
        }
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(project.name_any()),
            labels: Some(ns_labels),
            annotations: non_empty(ns_annotations),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The ResourceQuota holding what was granted; none when nothing was.
fn quota(project: &Project, owner: &OwnerReference, granted: &ResourceList) -> Option<ResourceQuota> {
    (!granted.is_empty()).then(|| ResourceQuota {
        metadata: child_meta(project, owner, QUOTA_NAME, "quota"),
        spec: Some(ResourceQuotaSpec { hard: Some(granted.clone()), ..Default::default() }),
        ..Default::default()
    })
}

/// Container defaults and bounds: the workspace's, overridden key by key by the project's; none when both are empty.
fn limit_range(project: &Project, workspace: &Workspace, owner: &OwnerReference) -> Option<LimitRange> {
    let mut limits = defaults(workspace).and_then(|d| d.limit_range.clone()).unwrap_or_default();
    if let Some(own) = &project.spec.limit_range {
        limits.default.extend(own.default.clone());
        limits.default_request.extend(own.default_request.clone());
        limits.max.extend(own.max.clone());
        limits.min.extend(own.min.clone());
    }
    (!limits.is_empty()).then(|| LimitRange {
        metadata: child_meta(project, owner, LIMIT_RANGE_NAME, "limits"),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: non_empty(limits.default),
                default_request: non_empty(limits.default_request),
                max: non_empty(limits.max),
                min: non_empty(limits.min),
                ..Default::default()
            }],
        }),
    })
}

/// The wall (see `network`): isolation inward, egress outward.
fn network_policy(
    project: &Project,
    workspace: &Workspace,
    net: &NetworkFacts,
    owner: &OwnerReference,
) -> Option<NetworkPolicy> {
    network::policy(project, workspace, net, child_meta(project, owner, NETWORK_POLICY_NAME, "network"))
}

/// The ServiceAccount pipelines run as.
fn runner(project: &Project, owner: &OwnerReference) -> ServiceAccount {
    ServiceAccount {
        metadata: ObjectMeta {
            annotations: project.spec.runner.as_ref().and_then(|r| non_empty(r.annotations.clone())),
            ..child_meta(project, owner, &runner_name(project), "runner")
        },
        ..Default::default()
    }
}

/// The runner may do what a developer may.
fn runner_binding(project: &Project, owner: &OwnerReference, roles: &RoleMap) -> RoleBinding {
    RoleBinding {
        metadata: child_meta(project, owner, RUNNER_BINDING_NAME, "runner"),
        role_ref: cluster_role_ref(roles.developer()),
        subjects: Some(vec![RbacSubject {
            kind: "ServiceAccount".to_owned(),
            name: runner_name(project),
            namespace: Some(project.name_any()),
            api_group: None,
        }]),
    }
}

/// One binding per workspace member role, merging member entries that name the same role, so reordering members
/// changes nothing; and the roles the workspace does not allow, for which nothing is bound.
fn member_bindings(
    project: &Project,
    workspace: &Workspace,
    owner: &OwnerReference,
    roles: &RoleMap,
) -> (Vec<RoleBinding>, Vec<String>) {
    let mut by_role: BTreeMap<&str, Vec<RbacSubject>> = BTreeMap::new();
    for member in &workspace.spec.members {
        let subjects = by_role.entry(member.role.as_str()).or_default();
        for s in &member.subjects {
            let s = rbac_subject(s);
            if !subjects.contains(&s) {
                subjects.push(s);
            }
        }
    }
    let (mut bindings, mut not_allowed) = (Vec::new(), Vec::new());
    for (role, subjects) in by_role {
        match roles.resolve(workspace, role) {
            Some(cluster_role) => bindings.push(RoleBinding {
                metadata: child_meta(project, owner, &format!("zenml-workspace-{role}"), "workspace-member"),
                role_ref: cluster_role_ref(&cluster_role),
                subjects: Some(subjects),
            }),
            None => not_allowed.push(role.to_owned()),
        }
    }
    (bindings, not_allowed)
}

/// The name of the RoleBinding that makes the project's owners its admins.
pub const OWNERS_NAME: &str = "zenml-project-owners";

/// Binds the `admin` role to the project's owners (`spec.owners`); none without owners.
fn owners_binding(
    project: &Project,
    workspace: &Workspace,
    owner: &OwnerReference,
    roles: &RoleMap,
) -> Option<RoleBinding> {
    let cluster_role = roles.resolve(workspace, BuiltinRole::Admin.name())?;
    let mut subjects: Vec<RbacSubject> = Vec::new();
    for s in project.spec.owners.iter().map(rbac_subject) {
        if !subjects.contains(&s) {
            subjects.push(s);
        }
    }
    (!subjects.is_empty()).then(|| RoleBinding {
        metadata: child_meta(project, owner, OWNERS_NAME, "owner"),
        role_ref: cluster_role_ref(&cluster_role),
        subjects: Some(subjects),
    })
}

/// The ProjectRoleBindings that count: an allowed role, not expired.
fn counted<'a>(
    workspace: &'a Workspace,
    roles: &'a RoleMap,
    bindings: &'a [&ProjectRoleBinding],
    now: Timestamp,
) -> impl Iterator<Item = &'a &'a ProjectRoleBinding> {
    bindings
        .iter()
        .filter(move |b| roles.resolve(workspace, &b.spec.role).is_some() && !super::binding::expired(b, now))
}

/// Subjects per role: workspace members and the project's bindings that count.
fn members(
    project: &Project,
    workspace: &Workspace,
    roles: &RoleMap,
    bindings: &[&ProjectRoleBinding],
    now: Timestamp,
) -> BTreeMap<String, i32> {
    let mut members: BTreeMap<String, i32> = BTreeMap::new();
    if !project.spec.owners.is_empty() {
        *members.entry(BuiltinRole::Admin.name().to_owned()).or_default() += project.spec.owners.len() as i32;
    }
    for member in &workspace.spec.members {
        *members.entry(member.role.clone()).or_default() += member.subjects.len() as i32;
    }
    for b in counted(workspace, roles, bindings, now) {
        *members.entry(b.spec.role.clone()).or_default() += b.spec.subjects.len() as i32;
    }
    members
}

/// The project's admins (its owners, workspace admins and admin bindings that count), sorted and without repeats.
fn admins(
    project: &Project,
    workspace: &Workspace,
    roles: &RoleMap,
    bindings: &[&ProjectRoleBinding],
    now: Timestamp,
) -> Vec<RbacSubject> {
    let admin = BuiltinRole::Admin.name();
    let mut admins: Vec<RbacSubject> = project.spec.owners.iter().map(rbac_subject).collect();
    for b in counted(workspace, roles, bindings, now).filter(|b| b.spec.role == admin) {
        admins.extend(b.spec.subjects.iter().map(rbac_subject));
    }
    for m in workspace.spec.members.iter().filter(|m| m.role == admin) {
        admins.extend(m.subjects.iter().map(rbac_subject));
    }
    admins.sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    admins.dedup();
    admins
}

/// Lets the project's admins manage its ProjectRoleBindings (checked by an admission policy).
fn delegation(project: &Project, owner: &OwnerReference) -> Role {
    Role {
        metadata: child_meta(project, owner, DELEGATION_NAME, "delegation"),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![crate::GROUP.to_owned()]),
            resources: Some(vec!["projectrolebindings".to_owned()]),
            verbs: vec![MANAGE_BINDINGS_VERB.to_owned()],
            ..Default::default()
        }]),
    }
}

/// Binds the delegation Role to the admins; none without admins.
fn delegation_binding(project: &Project, owner: &OwnerReference, admins: Vec<RbacSubject>) -> Option<RoleBinding> {
    (!admins.is_empty()).then(|| RoleBinding {
        metadata: child_meta(project, owner, DELEGATION_NAME, "delegation"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "Role".to_owned(),
            name: DELEGATION_NAME.to_owned(),
        },
        subjects: Some(admins),
    })
}

/// An RBAC subject for one of ours; a ServiceAccount named by project lives in that project's namespace.
pub fn rbac_subject(s: &Subject) -> RbacSubject {
    match s.kind {
        SubjectKind::User | SubjectKind::Group => RbacSubject {
            kind: if s.kind == SubjectKind::User { "User" } else { "Group" }.to_owned(),
            name: s.name.clone(),
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            namespace: None,
        },
        SubjectKind::ServiceAccount => RbacSubject {
            kind: "ServiceAccount".to_owned(),
            name: s.name.clone(),
            api_group: None,
            namespace: s.project.clone().or_else(|| s.namespace.clone()),
        },
    }
}

pub fn cluster_role_ref(name: &str) -> RoleRef {
    RoleRef { api_group: "rbac.authorization.k8s.io".to_owned(), kind: "ClusterRole".to_owned(), name: name.to_owned() }
}

fn non_empty<V>(m: BTreeMap<String, V>) -> Option<BTreeMap<String, V>> {
    (!m.is_empty()).then_some(m)
}

/// Records a fingerprint of the object in an annotation (see `labels::APPLIED_HASH`).
pub fn stamp<K: Resource + Serialize>(obj: &mut K) {
    let hash = fingerprint(&*obj);
    obj.meta_mut().annotations.get_or_insert_with(BTreeMap::new).insert(labels::APPLIED_HASH.to_owned(), hash);
}

/// FNV-1a over the JSON form: stable across Rust releases, unlike `DefaultHasher`.
pub fn fingerprint<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("Kubernetes objects always serialize");
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;
    use crate::{
        LimitRangeSpec as Limits, ProjectDefaults, ProjectRoleBindingSpec, ProjectSpec, QuotaSpec, RunnerSpec,
        WorkspaceMember, WorkspaceSpec,
    };

    fn q(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
    }

    fn group(name: &str) -> Subject {
        Subject { kind: SubjectKind::Group, name: name.into(), project: None, namespace: None }
    }

    fn workspace() -> Workspace {
        let mut w = Workspace::new(
            "ml",
            WorkspaceSpec {
                members: vec![
                    WorkspaceMember { role: "admin".into(), subjects: vec![group("admins")] },
                    WorkspaceMember { role: "viewer".into(), subjects: vec![group("org"), group("auditors")] },
                    WorkspaceMember { role: "ghost".into(), subjects: vec![group("nobody")] },
                ],
                project_defaults: Some(ProjectDefaults {
                    quota: Some(QuotaSpec { hard: q(&[("requests.cpu", "8"), ("pods", "50")]) }),
                    limit_range: Some(Limits {
                        default_request: q(&[("cpu", "100m"), ("memory", "256Mi")]),
                        ..Default::default()
                    }),
                    network_isolation: Some(NetworkIsolation::Workspace),
                    namespace_labels: BTreeMap::from([(
                        "pod-security.kubernetes.io/enforce".into(),
                        "baseline".into(),
                    )]),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        w.metadata.uid = Some("ws-uid".into());
        w
    }

    fn project() -> Project {
        let mut p = Project::new(
            "fraud",
            ProjectSpec {
                workspace: "ml".into(),
                project_id: Some("fraud_detection".into()),
                quota: Some(QuotaSpec { hard: q(&[("requests.cpu", "16")]) }),
                limit_range: Some(Limits { default_request: q(&[("cpu", "250m")]), ..Default::default() }),
                namespace_labels: BTreeMap::from([
                    ("cost-center".into(), "1234".into()),
                    ("pod-security.kubernetes.io/enforce".into(), "privileged".into()),
                ]),
                runner: Some(RunnerSpec {
                    service_account_name: None,
                    annotations: BTreeMap::from([("iam".into(), "x".into())]),
                }),
                ..Default::default()
            },
        );
        p.metadata.uid = Some("p-uid".into());
        p
    }

    fn build(p: &Project, w: &Workspace, bindings: &[&ProjectRoleBinding]) -> Children {
        desired(p, w, &requested_quota(p, w), &RoleMap::default(), &NetworkFacts::default(), bindings, Timestamp::now())
    }

    #[test]
    fn the_project_overrides_workspace_defaults_key_by_key() {
        let (p, w) = (project(), workspace());
        assert_eq!(requested_quota(&p, &w), q(&[("requests.cpu", "16"), ("pods", "50")]));
        let c = build(&p, &w, &[]);
        let item = &c.limit_range.unwrap().spec.unwrap().limits[0];
        assert_eq!(item.default_request, Some(q(&[("cpu", "250m"), ("memory", "256Mi")])));
    }

    #[test]
    fn a_project_past_its_expiry_is_frozen_until_the_expiry_moves_ahead() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        use k8s_openapi::jiff::SignedDuration;
        let (mut p, w) = (project(), workspace());
        let now = Timestamp::now();
        let frozen_label = |c: &Children| c.namespace.metadata.labels.as_ref().unwrap().get(labels::FROZEN).cloned();
        p.spec.expires_at = Some(Time(now.checked_add(SignedDuration::from_secs(90)).unwrap()));
        assert!(!expired(&p, now) && !frozen(&p, &w, now));
        assert_eq!(until_expiry(&p, now), Some(std::time::Duration::from_secs(90)), "woken at the instant");
        let at_expiry = now.checked_add(SignedDuration::from_secs(90)).unwrap();
        assert!(expired(&p, at_expiry) && frozen(&p, &w, at_expiry), "expired at the instant itself");
        assert_eq!(until_expiry(&p, at_expiry), None);
        let at = |t| desired(&p, &w, &requested_quota(&p, &w), &RoleMap::default(), &NetworkFacts::default(), &[], t);
        assert_eq!(frozen_label(&at(at_expiry)).as_deref(), Some("true"), "the freeze policy's label");
        assert_eq!(frozen_label(&at(now)), None);
        p.spec.expires_at = None;
        assert!(!frozen(&p, &w, at_expiry) && until_expiry(&p, now).is_none(), "no expiry, never expired");
    }

    #[test]
    fn owners_are_admins_of_the_project_and_may_manage_its_bindings() {
        let mut p = project();
        let alice = Subject { kind: SubjectKind::User, name: "alice".into(), project: None, namespace: None };
        p.spec.owners = vec![alice.clone(), alice, group("owners")];
        let c = build(&p, &workspace(), &[]);
        let rb = c.role_bindings.iter().find(|b| b.metadata.name.as_deref() == Some(OWNERS_NAME)).expect("owners");
        assert_eq!(rb.role_ref.name, "admin");
        let names: Vec<&str> = rb.subjects.as_ref().unwrap().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["alice", "owners"]);
        let delegation = c.role_bindings.iter().find(|b| b.role_ref.kind == "Role").expect("delegation");
        let names: Vec<&str> = delegation.subjects.as_ref().unwrap().iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"alice") && names.contains(&"owners"), "{names:?}");
        assert_eq!(c.members["admin"], 4, "three owners and the workspace's admins");
        assert!(
            build(&project(), &workspace(), &[])
                .role_bindings
                .iter()
                .all(|b| b.metadata.name.as_deref() != Some(OWNERS_NAME))
        );
    }

    #[test]
    fn the_namespace_is_named_and_labelled_for_its_project_and_workspace_labels_win() {
        let c = build(&project(), &workspace(), &[]);
        assert_eq!(c.namespace.metadata.name.as_deref(), Some("fraud"));
        let labels = c.namespace.metadata.labels.unwrap();
        assert_eq!(labels["zenml.io/project"], "fraud");
        assert_eq!(labels["zenml.io/workspace"], "ml");
        assert_eq!(labels["zenml.io/project-id"], "fraud_detection");
        let mut odd = project();
        odd.spec.project_id = Some("_fraud".into());
        let ns = build(&odd, &workspace(), &[]).namespace.metadata;
        assert!(!ns.labels.unwrap().contains_key("zenml.io/project-id"), "not a valid label value");
        assert_eq!(ns.annotations.unwrap()["zenml.io/project-id"], "_fraud");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "zenml-operator");
        assert_eq!(labels["cost-center"], "1234");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline", "the workspace's labels are enforced");
        assert!(c.namespace.metadata.owner_references.is_none(), "garbage collection must never delete a namespace");
    }

    #[test]
    fn every_child_is_labelled_owned_and_fingerprinted() {
        let c = build(&project(), &workspace(), &[]);
        let metas = [
            c.quota.as_ref().map(|o| &o.metadata),
            c.limit_range.as_ref().map(|o| &o.metadata),
            c.network_policy.as_ref().map(|o| &o.metadata),
            Some(&c.runner.metadata),
            Some(&c.delegation.metadata),
        ]
        .into_iter()
        .flatten()
        .chain(c.role_bindings.iter().map(|rb| &rb.metadata));
        for m in metas {
            assert_eq!(m.namespace.as_deref(), Some("fraud"));
            assert_eq!(m.labels.as_ref().unwrap()["zenml.io/project"], "fraud");
            assert_eq!(m.owner_references.as_ref().unwrap()[0].uid, "p-uid");
            assert!(m.annotations.as_ref().unwrap().contains_key(labels::APPLIED_HASH));
        }
    }

    #[test]
    fn a_projects_policies_narrow_its_workspaces_and_what_they_do_not_allow_is_named() {
        use crate::{ProjectPolicies, WorkspacePolicies};
        let (mut p, mut w) = (project(), workspace());
        p.spec.policies = Some(ProjectPolicies {
            storage_classes: vec!["fast".into(), "gold".into()],
            image_registries: vec!["registry.example.com/ml/".into(), "quay.io/x/".into()],
            runtime_classes: vec!["gvisor".into()],
            ..Default::default()
        });
        let annotations = build(&p, &w, &[]).namespace.metadata.annotations.unwrap();
        assert_eq!(annotations[labels::POLICY_STORAGE_CLASSES], "fast,gold");
        assert_eq!(annotations[labels::POLICY_IMAGE_REGISTRIES], "registry.example.com/ml/,quay.io/x/");
        assert!(!annotations.contains_key(labels::POLICY_INGRESS_CLASSES), "an empty list narrows nothing");
        assert!(policies_not_allowed(&p, &w).is_empty(), "a workspace without policies allows everything");
        w.spec.policies = Some(WorkspacePolicies {
            allowed: crate::AllowLists {
                storage_classes: vec!["fast".into(), "slow".into()],
                image_registries: vec!["registry.example.com/".into()],
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(
            policies_not_allowed(&p, &w),
            ["storageClasses: gold", "imageRegistries: quay.io/x/"],
            "a prefix within the workspace's is allowed; runtime classes the workspace does not list are"
        );
    }

    #[test]
    fn network_isolation_follows_project_then_workspace() {
        let (mut p, w) = (project(), workspace());
        let np = build(&p, &w, &[]).network_policy.unwrap().spec.unwrap();
        let ingress = np.ingress.clone().unwrap();
        let from = &ingress[0].from.as_ref().unwrap()[0];
        assert_eq!(
            from.namespace_selector.as_ref().unwrap().match_labels.as_ref().unwrap()["zenml.io/workspace"],
            "ml"
        );
        assert_eq!(np.policy_types, Some(vec!["Ingress".to_owned()]), "egress and DNS stay open");
        p.spec.network_isolation = Some(NetworkIsolation::Project);
        let np = build(&p, &w, &[]).network_policy.unwrap().spec.unwrap();
        assert!(np.ingress.unwrap()[0].from.as_ref().unwrap()[0].pod_selector.is_some());
        p.spec.network_isolation = Some(NetworkIsolation::None);
        assert!(build(&p, &w, &[]).network_policy.is_none());
    }

    #[test]
    fn members_are_bound_per_role_and_unknown_roles_are_reported_not_bound() {
        let c = build(&project(), &workspace(), &[]);
        let names: Vec<_> = c.role_bindings.iter().map(|rb| rb.metadata.name.clone().unwrap()).collect();
        assert_eq!(names, ["zenml-project-admin", "zenml-runner", "zenml-workspace-admin", "zenml-workspace-viewer"]);
        assert_eq!(c.roles_not_allowed, ["ghost"]);
        let runner = c.role_bindings.iter().find(|rb| rb.metadata.name.as_deref() == Some("zenml-runner")).unwrap();
        assert_eq!(runner.role_ref.name, "edit");
        assert_eq!(runner.subjects.as_ref().unwrap()[0].name, "zenml-runner");
        assert_eq!(c.runner.metadata.annotations.as_ref().unwrap()["iam"], "x");
    }

    #[test]
    fn bindings_count_as_members_and_their_admins_get_delegation() {
        let (p, w) = (project(), workspace());
        let admin = ProjectRoleBinding::new(
            "bob-admin",
            ProjectRoleBindingSpec {
                project: "fraud".into(),
                role: "admin".into(),
                subjects: vec![group("leads")],
                expires_at: None,
            },
        );
        let devs = ProjectRoleBinding::new(
            "devs",
            ProjectRoleBindingSpec {
                project: "fraud".into(),
                role: "developer".into(),
                subjects: vec![group("a"), group("b")],
                expires_at: None,
            },
        );
        let c = build(&p, &w, &[&admin, &devs]);
        assert_eq!(
            c.members,
            BTreeMap::from([("admin".into(), 2), ("developer".into(), 2), ("ghost".into(), 1), ("viewer".into(), 2)])
        );
        let delegation =
            c.role_bindings.iter().find(|rb| rb.metadata.name.as_deref() == Some(DELEGATION_NAME)).unwrap();
        let who: Vec<_> = delegation.subjects.as_ref().unwrap().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(who, ["admins", "leads"]);
        assert_eq!(delegation.role_ref.kind, "Role");
    }

    #[test]
    fn the_same_input_gives_the_same_objects() {
        assert_eq!(build(&project(), &workspace(), &[]), build(&project(), &workspace(), &[]));
    }

    #[test]
    fn a_namespace_is_one_project_instance_s_and_a_handover_names_one_workspace() {
        let mut p = project();
        p.metadata.uid = Some("uid-1".into());
        let w = workspace();
        let mut ns =
            desired(&p, &w, &ResourceList::new(), &RoleMap::default(), &NetworkFacts::default(), &[], Timestamp::now())
                .namespace
                .metadata;
        assert!(namespace_is_ours(&ns, &p), "what we made is ours");
        // Another instance of the same name, in any workspace, finds an orphan.
        let mut later = p.clone();
        later.metadata.uid = Some("uid-2".into());
        assert!(!namespace_is_ours(&ns, &later));
        later.spec.workspace = "other".into();
        assert!(!namespace_is_ours(&ns, &later));
        // Without a recorded uid (made before it was recorded): only the project whose status names it, in our
        // workspace.
        ns.annotations.as_mut().unwrap().remove(labels::PROJECT_UID);
        assert!(!namespace_is_ours(&ns, &p), "a project that never provisioned it");
        p.status = Some(crate::ProjectStatus { namespace: Some("fraud".into()), ..Default::default() });
        assert!(namespace_is_ours(&ns, &p));
        later.status = p.status.clone();
        assert!(!namespace_is_ours(&ns, &later), "another workspace's project, though its status names it");
        // A handover names the workspace and the project.
        let annotate = |value: &str| ObjectMeta {
            annotations: Some(BTreeMap::from([(labels::ADOPT.to_owned(), value.to_owned())])),
            ..Default::default()
        };
        assert!(adoption_requested(&annotate("ml/fraud"), &p));
        assert!(!adoption_requested(&annotate("fraud"), &p));
        assert!(!adoption_requested(&annotate("other/fraud"), &p));
    }
}
