//! The RoleBinding a ProjectRoleBinding stands for, and why there may be none.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};

use super::RoleMap;
use super::project::{cluster_role_ref, fingerprint, rbac_subject, stamp};
use crate::api::{Project, ProjectRoleBinding, Workspace};
use crate::labels;

/// Why a ProjectRoleBinding grants nothing right now; each is a condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    ProjectNotFound,
    /// The project exists but its namespace is not provisioned (yet).
    ProjectNotReady(String),
    RoleNotAllowed(String),
    Expired,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ProjectNotFound => "ProjectNotFound",
            Self::ProjectNotReady(_) => "ProjectNotReady",
            Self::RoleNotAllowed(_) => "RoleNotAllowed",
            Self::Expired => "Expired",
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
            Self::ProjectNotReady(why) => format!("project {:?} is not provisioned yet: {why}", spec.project),
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
) -> Result<RoleBinding, Refusal> {
    let project = project.ok_or(Refusal::ProjectNotFound)?;
    let workspace = workspace.ok_or_else(|| {
        Refusal::ProjectNotReady(format!("its workspace {:?} does not exist", project.spec.workspace))
    })?;
    let cluster_role =
        roles.resolve(workspace, &binding.spec.role).ok_or_else(|| Refusal::RoleNotAllowed(workspace.name_any()))?;
    if expired(binding, now) {
        return Err(Refusal::Expired);
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
    use crate::api::{CustomRole, ProjectRoleBindingSpec, ProjectSpec, Subject, SubjectKind, WorkspaceSpec};

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

    #[test]
    fn a_binding_becomes_a_role_binding_in_the_project_namespace() {
        let (b, p, w) = fixtures();
        let rb = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now()).unwrap();
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
        let rb = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now()).unwrap();
        assert_eq!(rb.role_ref.name, "zenml-runner-role");
        for role in ["cluster-admin", "owner", "system-masters"] {
            b.spec.role = role.into();
            let r = desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now());
            assert_eq!(r, Err(Refusal::RoleNotAllowed("ml".into())));
        }
    }

    #[test]
    fn refusals_in_order_of_what_to_fix_first() {
        let (mut b, p, w) = fixtures();
        let now = Timestamp::now();
        assert_eq!(desired(&b, None, Some(&w), true, &RoleMap::default(), now), Err(Refusal::ProjectNotFound));
        assert!(matches!(
            desired(&b, Some(&p), Some(&w), false, &RoleMap::default(), now),
            Err(Refusal::ProjectNotReady(_))
        ));
        b.spec.expires_at = Some(Time(now.checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(1)).unwrap()));
        assert_eq!(desired(&b, Some(&p), Some(&w), true, &RoleMap::default(), now), Err(Refusal::Expired));
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
