//! What a Workspace owns: one ClusterRole and one ClusterRoleBinding that let its admins manage its projects.
//! Per workspace, never per project: every cluster-wide binding is consulted by every authorization in the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::project::{rbac_subject, stamp};
use crate::labels;
use crate::{BuiltinRole, Workspace};

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
}
