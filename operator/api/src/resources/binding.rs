//! The RoleBinding a ProjectRoleBinding stands for, and why there may be none.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::RoleMap;
use super::project::{cluster_role_ref, fingerprint, rbac_subject, stamp};
use crate::labels;
use crate::status::conditions::Reason;
use crate::{BoundTo, Project, ProjectRoleBinding, Workspace};

/// Why a ProjectRoleBinding grants nothing right now; each is a condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    ProjectNotFound,
    /// The project of that name is another instance than the one the binding was bound to (its workspace, uid).
    ProjectReplaced {
        workspace: String,
        uid: String,
    },
    /// The project exists but its namespace is not provisioned (yet).
    ProjectNotReady(String),
    RoleNotAllowed(String),
    /// The ClusterRole the role maps to does not exist.
    RoleNotFound(String),
    /// A ServiceAccount subject names a project that does not exist.
    SubjectProjectNotFound(String),
    /// A ServiceAccount subject's project is another instance than the one the binding was bound to.
    SubjectProjectReplaced(String),
    /// A ServiceAccount subject's project is in another workspace (project, its workspace), and the two workspaces do
    /// not both trust each other.
    CrossWorkspaceGrant {
        project: String,
        workspace: String,
    },
    Expired,
}

/// What a binding needs to know about a project whose ServiceAccount it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub uid: String,
    pub workspace: String,
    /// Whether the peer's workspace lists the binding's project's workspace in `trustedWorkspaces`.
    pub trusts_back: bool,
}

impl Refusal {
    pub fn reason(&self) -> Reason {
        match self {
            Self::ProjectNotFound => Reason::ProjectNotFound,
            Self::ProjectReplaced { .. } => Reason::ProjectReplaced,
            Self::ProjectNotReady(_) => Reason::ProjectNotReady,
            Self::RoleNotAllowed(_) => Reason::RoleNotAllowed,
            Self::RoleNotFound(_) => Reason::RoleNotFound,
            Self::SubjectProjectNotFound(_) => Reason::SubjectProjectNotFound,
            Self::SubjectProjectReplaced(_) => Reason::SubjectProjectReplaced,
            Self::CrossWorkspaceGrant { .. } => Reason::CrossWorkspaceGrant,
            Self::Expired => Reason::Expired,
        }
    }

    pub fn message(&self, binding: &ProjectRoleBinding) -> String {
        let spec = &binding.spec;
        match self {
            Self::ProjectNotFound => {
                format!(
                    "Project {:?} does not exist; the binding takes effect by itself when it is created",
                    spec.project
                )
            }
            Self::ProjectReplaced { workspace, uid } => format!(
                "this binding belongs to the project {:?} of workspace {workspace:?} (uid {uid}), which was deleted; \
                 the project of that name now is another one, and a binding never grants into another project: \
                 delete this binding, and create one for the new project if it should have this grant",
                spec.project
            ),
            Self::ProjectNotReady(why) => format!("project {:?} is not provisioned yet: {why}", spec.project),
            Self::RoleNotFound(cluster_role) => format!(
                "role {:?} is the ClusterRole {cluster_role:?}, which does not exist; create it and the binding takes \
                 effect by itself, or correct the workspace's spec.roles",
                spec.role
            ),
            Self::SubjectProjectNotFound(p) => format!(
                "a ServiceAccount subject names project {p:?}, which does not exist; the binding grants nothing until it \
                 does (or remove the subject)"
            ),
            Self::SubjectProjectReplaced(p) => format!(
                "a ServiceAccount subject names project {p:?}, which was deleted and created again since this binding \
                 was bound: a grant to one project's ServiceAccount never passes to another's; remove the subject, or \
                 delete the binding and create a new one"
            ),
            Self::CrossWorkspaceGrant { project, workspace } => format!(
                "a ServiceAccount subject belongs to project {project:?} of workspace {workspace:?}, another workspace; \
                 a grant across workspaces needs both workspaces to list each other in spec.trustedWorkspaces"
            ),
            Self::RoleNotAllowed(workspace) => format!(
                "role {:?} is not allowed in workspace {workspace:?}: use admin, developer, contributor, viewer or a role in the workspace's spec.roles",
                spec.role
            ),
            Self::Expired => format!(
                "the grant expired at {}; the RoleBinding was removed",
                spec.expires_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
            ),
        }
    }
}

/// The RoleBinding's name: deterministic from the binding's, and within the 253 characters a name may have.
pub fn role_binding_name(binding: &ProjectRoleBinding) -> String {
    let name = binding.name_any();
    let full = format!("zenml-prb-{name}");
    if full.len() <= 253 {
        return full;
    }
    let hash = fingerprint(&name);
    format!("{}-{hash}", &full[..253 - hash.len() - 1]).trim_end_matches(['-', '.']).to_owned()
}

/// The projects whose ServiceAccounts the binding names as subjects.
pub fn subject_projects(binding: &ProjectRoleBinding) -> impl Iterator<Item = &str> {
    binding.spec.subjects.iter().filter_map(|s| s.project.as_deref())
}

/// What the binding is bound to once it binds: the project instance and each subject project's, keeping what was
/// recorded before (a binding never moves to another instance).
pub fn bound_to(binding: &ProjectRoleBinding, project: &Project, peers: &BTreeMap<String, Peer>) -> BoundTo {
    let mut b = binding.status.as_ref().and_then(|s| s.bound_to.clone()).unwrap_or_else(|| BoundTo {
        project_uid: project.uid().unwrap_or_default(),
        workspace: project.spec.workspace.clone(),
        subject_projects: BTreeMap::new(),
    });
    for p in subject_projects(binding) {
        if let Some(peer) = peers.get(p) {
            b.subject_projects.entry(p.to_owned()).or_insert_with(|| peer.uid.clone());
        }
    }
    b
}

/// Whether the grant has expired at `now`.
pub fn expired(binding: &ProjectRoleBinding, now: Timestamp) -> bool {
    binding.spec.expires_at.as_ref().is_some_and(|t| t.0 <= now)
}

/// The RoleBinding for `binding`, or why there is none. `namespace_ready` says whether the project's namespace is
/// provisioned (a RoleBinding cannot exist before it).
pub fn desired(
    binding: &ProjectRoleBinding,
    project: Option<&Project>,
    workspace: Option<&Workspace>,
    namespace_ready: bool,
    roles: &RoleMap,
    now: Timestamp,
    peers: &BTreeMap<String, Peer>,
) -> Result<RoleBinding, Refusal> {
    let project = project.ok_or(Refusal::ProjectNotFound)?;
    let bound_to = binding.status.as_ref().and_then(|s| s.bound_to.as_ref());
    if let Some(b) = bound_to.filter(|b| project.meta().uid.as_ref() != Some(&b.project_uid)) {
        return Err(Refusal::ProjectReplaced { workspace: b.workspace.clone(), uid: b.project_uid.clone() });
    }
    let workspace = workspace.ok_or_else(|| {
        Refusal::ProjectNotReady(format!("its workspace {:?} does not exist", project.spec.workspace))
    })?;
    let cluster_role =
        roles.resolve(workspace, &binding.spec.role).ok_or_else(|| Refusal::RoleNotAllowed(workspace.name_any()))?;
    if expired(binding, now) {
        return Err(Refusal::Expired);
    }
    for p in subject_projects(binding) {
        let peer = peers.get(p).ok_or_else(|| Refusal::SubjectProjectNotFound(p.to_owned()))?;
        if bound_to.and_then(|b| b.subject_projects.get(p)).is_some_and(|uid| *uid != peer.uid) {
            return Err(Refusal::SubjectProjectReplaced(p.to_owned()));
        }
        let trusted = workspace.spec.trusted_workspaces.contains(&peer.workspace) && peer.trusts_back;
        if peer.workspace != project.spec.workspace && !trusted {
            return Err(Refusal::CrossWorkspaceGrant { project: p.to_owned(), workspace: peer.workspace.clone() });
        }
    }
    if !namespace_ready {
        return Err(Refusal::ProjectNotReady("its namespace does not exist yet".into()));
    }
    let owner = OwnerReference { block_owner_deletion: None, ..binding.controller_owner_ref(&()).unwrap_or_default() };
    let mut rb = RoleBinding {
        metadata: ObjectMeta {
            name: Some(role_binding_name(binding)),
            namespace: Some(project.name_any()),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
                (labels::WORKSPACE.to_owned(), project.spec.workspace.clone()),
                (labels::PROJECT.to_owned(), project.name_any()),
                (labels::COMPONENT.to_owned(), "project-role-binding".to_owned()),
                (labels::ROLE.to_owned(), binding.spec.role.clone()),
            ])),
            // An annotation, not a label: a binding's name may be longer than a label value can be.
            annotations: Some(BTreeMap::from([(labels::BINDING.to_owned(), binding.name_any())])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        role_ref: cluster_role_ref(&cluster_role),
        subjects: Some(binding.spec.subjects.iter().map(rbac_subject).collect()),
    };
    stamp(&mut rb);
    Ok(rb)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{CustomRole, ProjectRoleBindingSpec, ProjectSpec, Subject, SubjectKind, WorkspaceSpec};

    fn fixtures() -> (ProjectRoleBinding, Project, Workspace) {
        let mut b = ProjectRoleBinding::new(
            "alice-dev",
            ProjectRoleBindingSpec {
                project: "fraud".into(),
                role: "developer".into(),
                subjects: vec![
                    Subject { kind: SubjectKind::User, name: "alice".into(), project: None, namespace: None },
                    Subject {
                        kind: SubjectKind::ServiceAccount,
                        name: "zenml-runner".into(),
                        project: Some("recsys".into()),
                        namespace: None,
                    },
                ],
                expires_at: None,
            },
        );
        b.metadata.uid = Some("uid-b".into());
        let p = Project::new("fraud", ProjectSpec { workspace: "ml".into(), ..Default::default() });
        let w = Workspace::new(
            "ml",
            WorkspaceSpec {
                roles: vec![CustomRole { name: "runner".into(), cluster_role: "zenml-runner-role".into() }],
                ..Default::default()
            },
        );
        (b, p, w)
    }

    fn peers() -> BTreeMap<String, Peer> {
        BTreeMap::from([(
            "recsys".to_owned(),
            Peer { uid: "uid-r".into(), workspace: "ml".into(), trusts_back: false },
        )])
    }

    fn bound(b: &mut ProjectRoleBinding, project_uid: &str, recsys_uid: &str) {
        b.status = Some(crate::ProjectRoleBindingStatus {
            bound_to: Some(BoundTo {
                project_uid: project_uid.into(),
                workspace: "ml".into(),
                subject_projects: BTreeMap::from([("recsys".to_owned(), recsys_uid.to_owned())]),
            }),
            ..Default::default()
        });
    }

    #[test]
    fn a_binding_never_grants_into_another_instance_of_its_project() {
        let (mut b, mut p, w) = fixtures();
        p.metadata.uid = Some("uid-p1".into());
        let now = Timestamp::now();
        let first = bound_to(&b, &p, &peers());
        assert_eq!((first.project_uid.as_str(), first.workspace.as_str()), ("uid-p1", "ml"));
        assert_eq!(first.subject_projects["recsys"], "uid-r");
        bound(&mut b, "uid-p1", "uid-r");
        assert!(desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), now, &peers()).is_ok());
        // The project deleted, and another of the same name created (here in another workspace).
        p.metadata.uid = Some("uid-p2".into());
        p.spec.workspace = "other".into();
        let r = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), now, &peers());
        assert_eq!(r, Err(Refusal::ProjectReplaced { workspace: "ml".into(), uid: "uid-p1".into() }));
        assert!(
            Refusal::ProjectReplaced { workspace: "ml".into(), uid: "u".into() }
                .message(&b)
                .contains("delete this binding")
        );
        // What it was bound to is kept, never moved.
        assert_eq!(bound_to(&b, &p, &peers()).project_uid, "uid-p1");
    }

    #[test]
    fn a_service_account_subject_is_one_project_instance_of_the_same_or_a_trusting_workspace() {
        let (mut b, mut p, mut w) = fixtures();
        p.metadata.uid = Some("uid-p".into());
        let now = Timestamp::now();
        let desired_with = |b: &ProjectRoleBinding, w: &Workspace, peers: &BTreeMap<String, Peer>| {
            desired(b, Some(&p), Some(w), true, &RoleMap::default(), now, peers)
        };
        assert_eq!(desired_with(&b, &w, &BTreeMap::new()), Err(Refusal::SubjectProjectNotFound("recsys".into())));
        bound(&mut b, "uid-p", "uid-r-old");
        assert_eq!(desired_with(&b, &w, &peers()), Err(Refusal::SubjectProjectReplaced("recsys".into())));
        bound(&mut b, "uid-p", "uid-r");
        let mut elsewhere = peers();
        elsewhere.get_mut("recsys").unwrap().workspace = "other".into();
        let cross = Err(Refusal::CrossWorkspaceGrant { project: "recsys".into(), workspace: "other".into() });
        assert_eq!(desired_with(&b, &w, &elsewhere), cross, "neither workspace trusts the other");
        w.spec.trusted_workspaces = vec!["other".into()];
        assert_eq!(desired_with(&b, &w, &elsewhere), cross, "only one of them does");
        elsewhere.get_mut("recsys").unwrap().trusts_back = true;
        assert!(desired_with(&b, &w, &elsewhere).is_ok(), "both do");
    }

    #[test]
    fn a_binding_becomes_a_role_binding_in_the_project_namespace() {
        let (b, p, w) = fixtures();
        let rb = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now(), &peers()).unwrap();
        assert_eq!(rb.metadata.namespace.as_deref(), Some("fraud"));
        assert_eq!(rb.metadata.name.as_deref(), Some("zenml-prb-alice-dev"));
        assert_eq!(rb.role_ref.name, "edit");
        let subjects = rb.subjects.unwrap();
        assert_eq!(
            subjects[1].namespace.as_deref(),
            Some("recsys"),
            "a cross-project ServiceAccount lives in its project"
        );
        assert_eq!(rb.metadata.owner_references.unwrap()[0].uid, "uid-b");
    }

    #[test]
    fn only_allowed_roles_are_ever_bound() {
        let (mut b, p, w) = fixtures();
        b.spec.role = "runner".into();
        let rb = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now(), &peers()).unwrap();
        assert_eq!(rb.role_ref.name, "zenml-runner-role");
        for role in ["cluster-admin", "owner", "system-masters"] {
            b.spec.role = role.into();
            let r = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now(), &peers());
            assert_eq!(r, Err(Refusal::RoleNotAllowed("ml".into())));
        }
    }

    #[test]
    fn refusals_in_order_of_what_to_fix_first() {
        let (mut b, p, w) = fixtures();
        let now = Timestamp::now();
        assert_eq!(
            desired(&b, None, Some(&w), true, &RoleMap::default(), now, &peers()),
            Err(Refusal::ProjectNotFound)
        );
        assert!(matches!(
            desired(&b, Some(&p), Some(&w), false, &RoleMap::default(), now, &peers()),
            Err(Refusal::ProjectNotReady(_))
        ));
        b.spec.expires_at = Some(Time(now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(1)).unwrap()));
        assert_eq!(desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), now, &peers()), Err(Refusal::Expired));
    }

    #[test]
    fn long_names_stay_valid_and_distinct() {
        let (mut b, _, _) = fixtures();
        b.metadata.name = Some("a".repeat(250));
        let one = role_binding_name(&b);
        b.metadata.name = Some(format!("{}b", "a".repeat(249)));
        let two = role_binding_name(&b);
        assert!(one.len() <= 253 && two.len() <= 253);
        assert_ne!(one, two);
    }
}
