//! Which ClusterRole a project role means.

use std::collections::BTreeMap;

use crate::{BuiltinRole, Workspace};

/// The ClusterRoles behind the built-in roles, configurable by flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleMap {
    builtin: BTreeMap<&'static str, String>,
}

impl Default for RoleMap {
    fn default() -> Self {
        Self::new("admin", "edit", "zenml-project-contributor", "view")
    }
}

impl RoleMap {
    pub fn new(admin: &str, developer: &str, contributor: &str, viewer: &str) -> Self {
        let builtin = [
            (BuiltinRole::Admin, admin),
            (BuiltinRole::Developer, developer),
            (BuiltinRole::Contributor, contributor),
            (BuiltinRole::Viewer, viewer),
        ]
        .into_iter()
        .map(|(r, c)| (r.name(), c.to_owned()))
        .collect();
        Self { builtin }
    }

    /// The ClusterRole a role name stands for in a workspace: a built-in role, or a custom role the workspace
    /// allows. `None` means the role is not allowed there, and nothing may be bound for it.
    pub fn resolve(&self, workspace: &Workspace, role: &str) -> Option<String> {
        if let Some(c) = self.builtin.get(role) {
            return Some(c.clone());
        }
        workspace.spec.roles.iter().find(|r| r.name == role).map(|r| r.cluster_role.clone())
    }

    /// The ClusterRole of the developer role, which the runner ServiceAccount also gets.
    pub fn developer(&self) -> &str {
        &self.builtin[BuiltinRole::Developer.name()]
    }
}
