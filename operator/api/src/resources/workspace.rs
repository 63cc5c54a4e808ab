//! What a Workspace owns: one ClusterRole and one ClusterRoleBinding that let its admins manage its projects.
//! Per workspace, never per project: every cluster-wide binding is consulted by every authorization in the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ParamRef, ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::project::{rbac_subject, stamp};
use crate::labels;
use crate::{BuiltinRole, Project, ProjectSpec, Workspace};

/// The ZenML project ID of a workspace's default project (`zenml project set default`).
pub const DEFAULT_PROJECT_ID: &str = "default";
/// The `zenml.io/component` label of a workspace's default project.
pub const DEFAULT_PROJECT_COMPONENT: &str = "default-project";

/// The custom verb the Project admission policy checks on the workspace.
pub const MANAGE_PROJECTS_VERB: &str = "manage-projects";

pub fn delegation_name(workspace: &Workspace) -> String {
    format!("zenml-workspace-{}", workspace.name_any())
}

/// The ClusterRole that grants `manage-projects` on this one workspace, and its binding to the workspace's admins
/// (`None` when it has none).
pub fn delegation(workspace: &Workspace) -> (ClusterRole, Option<ClusterRoleBinding>) {
    let name = delegation_name(workspace);
    let owner =
        OwnerReference { block_owner_deletion: None, ..workspace.controller_owner_ref(&()).unwrap_or_default() };
    let meta = ObjectMeta {
        name: Some(name.clone()),
        labels: Some(BTreeMap::from([
            (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            (labels::WORKSPACE.to_owned(), workspace.name_any()),
            (labels::COMPONENT.to_owned(), "delegation".to_owned()),
        ])),
        owner_references: Some(vec![owner]),
        ..Default::default()
    };
    let mut role = ClusterRole {
        metadata: meta.clone(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![crate::GROUP.to_owned()]),
            resources: Some(vec!["workspaces".to_owned()]),
            resource_names: Some(vec![workspace.name_any()]),
            verbs: vec![MANAGE_PROJECTS_VERB.to_owned()],
            ..Default::default()
        }]),
        aggregation_rule: None,
    };
    stamp(&mut role);
    let mut admins: Vec<_> = workspace
        .spec
        .members
        .iter()
        .filter(|m| m.role == BuiltinRole::Admin.name())
        .flat_map(|m| m.subjects.iter().map(rbac_subject))
        .collect();
    admins.sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    admins.dedup();
    let binding = (!admins.is_empty()).then(|| {
        let mut b = ClusterRoleBinding {
            metadata: meta,
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name,
            },
            subjects: Some(admins),
        };
        stamp(&mut b);
        b
    });
    (role, binding)
}

/// The name of the workspace's binding of the workspace policy `policy` (the chart's `zenml-workspace-policies`).
pub fn policy_binding_name(workspace: &Workspace, policy: &str) -> String {
    format!("{policy}-{}", workspace.name_any())
}

/// The binding that makes the workspace policy `policy` hold in the workspace's project namespaces (label
/// `zenml.io/workspace`), with the Workspace itself as its parameter. Its content depends only on the names, so it
/// is created once and never patched; it goes with the Workspace (garbage collection).
pub fn policy_binding(workspace: &Workspace, policy: &str) -> ValidatingAdmissionPolicyBinding {
    let name = workspace.name_any();
    let owner =
        OwnerReference { block_owner_deletion: None, ..workspace.controller_owner_ref(&()).unwrap_or_default() };
    ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(policy_binding_name(workspace, policy)),
            labels: Some(BTreeMap::from([
                (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
                (labels::WORKSPACE.to_owned(), name.clone()),
                (labels::COMPONENT.to_owned(), "policies".to_owned()),
            ])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(policy.to_owned()),
            // A namespace of the workspace without its Workspace (being deleted) is refused rather than let loose.
            param_ref: Some(ParamRef {
                name: Some(name.clone()),
                parameter_not_found_action: Some("Deny".to_owned()),
                ..Default::default()
            }),
            match_resources: Some(MatchResources {
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(labels::WORKSPACE.to_owned(), name)])),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            validation_actions: Some(vec!["Deny".to_owned()]),
        }),
    }
}

/// The name of the workspace's default project, when it declares one: `spec.defaultProject.name`, else
/// `<projectNamePrefix>default`, else `<workspace>-default`.
pub fn default_project_name(workspace: &Workspace) -> Option<String> {
    let declared = workspace.spec.default_project.as_ref()?;
    Some(match (&declared.name, &workspace.spec.project_name_prefix) {
        (Some(name), _) => name.clone(),
        (None, Some(prefix)) => format!("{prefix}{DEFAULT_PROJECT_ID}"),
        (None, None) => format!("{}-{DEFAULT_PROJECT_ID}", workspace.name_any()),
    })
}

/// The default project the workspace declares, as the operator applies it: only the fields it owns (workspace,
/// projectId `default`, display name, deletion policy), so others (owners, frozen, quota) may still be set on it.
/// Controlled by the workspace (uid) and labelled as the operator's.
pub fn default_project(workspace: &Workspace) -> Option<Project> {
    let declared = workspace.spec.default_project.as_ref()?;
    let name = default_project_name(workspace)?;
    let owner =
        OwnerReference { block_owner_deletion: None, ..workspace.controller_owner_ref(&()).unwrap_or_default() };
    let mut project = Project::new(
        &name,
        ProjectSpec {
            workspace: workspace.name_any(),
            project_id: Some(DEFAULT_PROJECT_ID.to_owned()),
            display_name: Some(declared.display_name.clone().unwrap_or_else(|| "Default".to_owned())),
            deletion_policy: declared.deletion_policy.unwrap_or_default(),
            ..Default::default()
        },
    );
    project.metadata.labels = Some(BTreeMap::from([
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
        (labels::WORKSPACE.to_owned(), workspace.name_any()),
        (labels::COMPONENT.to_owned(), DEFAULT_PROJECT_COMPONENT.to_owned()),
    ]));
    project.metadata.owner_references = Some(vec![owner]);
    stamp(&mut project);
    Some(project)
}

/// Whether the operator made `project` as this workspace's default project: a project of this workspace controlled by
/// the workspace's uid (names are reused, uids are not). Labels prove nothing (anyone who may edit a Project can copy
/// or remove them): ours with its label removed is still ours, and the label is applied again.
pub fn is_default_project_of(project: &Project, workspace: &Workspace) -> bool {
    let uid = workspace.meta().uid.as_deref();
    uid.is_some()
        && project.spec.workspace == workspace.name_any()
        && project.owner_references().iter().any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Subject, SubjectKind, WorkspaceMember, WorkspaceSpec};

    #[test]
    fn only_admins_of_this_workspace_may_manage_its_projects() {
        let g = |n: &str| Subject { kind: SubjectKind::Group, name: n.into(), project: None, namespace: None };
        let w = Workspace::new(
            "ml",
            WorkspaceSpec {
                members: vec![
                    WorkspaceMember { role: "admin".into(), subjects: vec![g("admins"), g("admins")] },
                    WorkspaceMember { role: "developer".into(), subjects: vec![g("devs")] },
                ],
                ..Default::default()
            },
        );
        let (role, binding) = delegation(&w);
        let rule = &role.rules.unwrap()[0];
        assert_eq!(rule.resource_names, Some(vec!["ml".to_owned()]));
        assert_eq!(rule.verbs, ["manage-projects"]);
        let subjects = binding.unwrap().subjects.unwrap();
        assert_eq!(subjects.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["admins"]);
        assert!(delegation(&Workspace::new("empty", WorkspaceSpec::default())).1.is_none());
    }

    #[test]
    fn the_policy_binding_selects_the_workspace_namespaces_and_takes_the_workspace_as_parameter() {
        let mut w = Workspace::new("ml", WorkspaceSpec::default());
        w.metadata.uid = Some("w-uid".into());
        let b = policy_binding(&w, "zenml-workspace-policies");
        assert_eq!(b.metadata.name.as_deref(), Some("zenml-workspace-policies-ml"));
        assert_eq!(b.metadata.owner_references.as_ref().unwrap()[0].uid, "w-uid");
        assert_eq!(b.metadata.labels.as_ref().unwrap()[labels::WORKSPACE], "ml");
        let spec = b.spec.unwrap();
        assert_eq!(spec.policy_name.as_deref(), Some("zenml-workspace-policies"));
        let param = spec.param_ref.unwrap();
        assert_eq!((param.name.as_deref(), param.selector), (Some("ml"), None));
        assert_eq!(param.parameter_not_found_action.as_deref(), Some("Deny"));
        let selector = spec.match_resources.unwrap().namespace_selector.unwrap().match_labels.unwrap();
        assert_eq!(selector, BTreeMap::from([("zenml.io/workspace".to_owned(), "ml".to_owned())]));
        assert_eq!(spec.validation_actions.unwrap(), ["Deny"]);
    }

    fn with_default(name: Option<&str>, prefix: Option<&str>) -> Workspace {
        let mut w = Workspace::new(
            "ml-platform",
            WorkspaceSpec {
                default_project: Some(crate::DefaultProject { name: name.map(str::to_owned), ..Default::default() }),
                project_name_prefix: prefix.map(str::to_owned),
                ..Default::default()
            },
        );
        w.metadata.uid = Some("w-uid".into());
        w
    }

    #[test]
    fn the_default_project_name_is_given_or_derived_from_the_prefix_or_the_workspace() {
        assert_eq!(default_project_name(&with_default(Some("sandbox"), None)).as_deref(), Some("sandbox"));
        assert_eq!(default_project_name(&with_default(None, Some("ml-"))).as_deref(), Some("ml-default"));
        assert_eq!(default_project_name(&with_default(None, None)).as_deref(), Some("ml-platform-default"));
        assert_eq!(default_project_name(&Workspace::new("ml", WorkspaceSpec::default())), None);
        assert_eq!(default_project(&Workspace::new("ml", WorkspaceSpec::default())), None);
    }

    #[test]
    fn the_default_project_is_the_workspaces_with_id_default_and_only_its_own_fields() {
        let mut w = with_default(None, None);
        w.spec.default_project.as_mut().unwrap().deletion_policy = Some(crate::DeletionPolicy::Retain);
        let p = default_project(&w).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("ml-platform-default"));
        assert_eq!(p.spec.workspace, "ml-platform");
        assert_eq!(p.spec.project_id.as_deref(), Some("default"));
        assert_eq!(p.spec.display_name.as_deref(), Some("Default"));
        assert_eq!(p.spec.deletion_policy, crate::DeletionPolicy::Retain);
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Workspace", "w-uid", Some(true)));
        assert!(is_default_project_of(&p, &w));
        // What the operator owns in the applied spec: nothing that users may set on it besides.
        let spec = serde_json::to_value(&p.spec).unwrap();
        let keys: Vec<&str> = spec.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["deletionPolicy", "displayName", "projectId", "workspace"]);
    }

    #[test]
    fn a_project_of_that_name_is_the_workspaces_only_if_its_uid_controls_it() {
        let w = with_default(None, None);
        let mut p = default_project(&w).unwrap();
        let mut other = w.clone();
        other.metadata.uid = Some("another-uid".into());
        assert!(!is_default_project_of(&p, &other), "a recreated workspace of the same name");
        let mut elsewhere = p.clone();
        elsewhere.spec.workspace = "another-workspace".into();
        assert!(!is_default_project_of(&elsewhere, &w), "a project of another workspace naming it as its owner");
        p.metadata.labels.as_mut().unwrap().remove(labels::COMPONENT);
        assert!(is_default_project_of(&p, &w), "its label removed by hand: still its own, and the label restored");
        let hand_made =
            Project::new("ml-platform-default", ProjectSpec { workspace: "ml-platform".into(), ..Default::default() });
        assert!(!is_default_project_of(&hand_made, &w));
    }
}
