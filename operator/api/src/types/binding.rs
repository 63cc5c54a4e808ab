//! ProjectRoleBinding: who may do what in a project.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::Subject;

/// Grants a project role to users, groups or ServiceAccounts.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "zenml.io",
    version = "v1alpha1",
    kind = "ProjectRoleBinding",
    status = "ProjectRoleBindingStatus",
    shortname = "prb",
    category = "zenml",
    derive = "Default",
    derive = "PartialEq",
    selectable = ".spec.project",
    selectable = ".spec.role",
    doc = "Grants a project role (admin, developer, contributor, viewer or a custom role the workspace allows) to users, groups or ServiceAccounts.",
    printcolumn(name = "Project", type_ = "string", json_path = ".spec.project"),
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Expires", type_ = "date", priority = 1, json_path = ".spec.expiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRoleBindingSpec {
    /// The Project whose namespace the role is granted in. Immutable.
    #[schemars(schema_with = "super::schema::dns_label")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("project is immutable; create a new ProjectRoleBinding for another project"))]
    pub project: String,
    /// admin, developer, contributor, viewer, or a custom role the project's workspace allows in `spec.roles`.
    #[schemars(length(min = 1, max = 63), regex(pattern = "^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub role: String,
    /// Who gets the role: users, groups (teams), or ServiceAccounts (of this or another project).
    #[schemars(length(min = 1, max = 256))]
    pub subjects: Vec<Subject>,
    /// When set, the grant is removed at this time (RFC 3339, e.g. 2026-12-31T18:00:00Z) and the binding reports
    /// `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// Observed state of a ProjectRoleBinding.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRoleBindingStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, and the reason it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Name of the RoleBinding in the project namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_binding: Option<String>,
    /// The project instances the binding belongs to, recorded when it first binds: names are reused, uids are not,
    /// so it never binds into a later project of the same name (`ProjectReplaced`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound_to: Option<BoundTo>,
}

/// The project instances a binding is bound to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BoundTo {
    /// The uid of the project the role is granted in.
    pub project_uid: String,
    /// Its workspace.
    pub workspace: String,
    /// The uid of each project whose ServiceAccount is a subject, by project name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub subject_projects: std::collections::BTreeMap<String, String>,
}
