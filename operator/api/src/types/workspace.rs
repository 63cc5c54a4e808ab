//! Workspace: a group of projects with shared admins, defaults, a budget and the roles it allows.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, Egress, LimitRangeSpec, NetworkIsolation, QuotaSpec, ResourceList, Subject};
use super::policies::WorkspacePolicies;
use super::templates::Template;

/// A ZenML Pro workspace: projects that share admins, defaults, a budget and a set of allowed roles.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "zenml.io",
    version = "v1alpha1",
    kind = "Workspace",
    status = "WorkspaceStatus",
    shortname = "ws",
    category = "zenml",
    derive = "Default",
    derive = "PartialEq",
    doc = "A ZenML Pro workspace: a group of projects with shared admins, defaults, a budget and allowed roles.",
    printcolumn(name = "Projects", type_ = "integer", json_path = ".status.projects"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.members) || self.members.all(m, m.role in ['admin', 'developer', 'contributor', 'viewer'] || (has(self.roles) && self.roles.exists(r, r.name == m.role)))"
).message("every members[].role must be admin, developer, contributor, viewer or a role listed in spec.roles").field_path(".members"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.defaultProject) || !has(self.defaultProject.name) || !has(self.projectNamePrefix) || self.defaultProject.name.startsWith(self.projectNamePrefix)"
).message("defaultProject.name must start with spec.projectNamePrefix; rename it, or leave it unset for <projectNamePrefix>default").field_path(".defaultProject.name"))]
pub struct WorkspaceSpec {
    /// Human-readable name, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// What the workspace is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// Role bindings applied in every project of the workspace. Members with role `admin` may also create
    /// Projects in this workspace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub members: Vec<WorkspaceMember>,
    /// Defaults every Project of the workspace inherits, key by key, unless it overrides them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_defaults: Option<ProjectDefaults>,
    /// The most all projects of the workspace may be granted together, summed over their quotas. Projects are
    /// granted their quota oldest first; one that does not fit gets `QuotaReady=False`, reason `BudgetExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<WorkspaceBudget>,
    /// The most projects the workspace may hold; unset means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_projects: Option<i32>,
    /// Custom roles allowed in this workspace besides the built-in admin, developer, contributor and viewer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub roles: Vec<CustomRole>,
    /// Workspaces whose projects' ServiceAccounts may be granted roles in this workspace's projects, and the other way
    /// round. A ProjectRoleBinding naming a ServiceAccount of another workspace's project binds only when both
    /// workspaces list each other here (`CrossWorkspaceGrant` otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::dns_label_set")]
    pub trusted_workspaces: Vec<String>,
    /// When set, every project of this workspace must be named with this prefix (e.g. `ml-`), so that project names,
    /// which are namespace names, say whose they are; others get Ready=False, reason InvalidName.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32), regex(pattern = "^[a-z0-9][-a-z0-9]*$"))]
    pub project_name_prefix: Option<String>,
    /// Exceptions to the chart's tenant rules in this workspace's projects, for teams that need them; none by default.
    /// Each becomes a label on the project namespaces that the admission policies read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_rule_exceptions: Option<TenantRuleExceptions>,
    /// What pods, workloads, claims and ingresses in the workspace's project namespaces may use: allowed classes,
    /// image registries, a required node selector and allowed tolerations. Checked by the API server at admission
    /// (the chart's `zenml-workspace-policies` policy, whose parameter is this Workspace); the refusal names the
    /// rule, the allowed values and the workspace. Existing objects are not touched. An empty list restricts
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<WorkspacePolicies>,
    /// Freezes every project of the workspace, as each Project's `spec.frozen` does.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frozen: bool,
    /// Namespaced objects the operator server-side applies into every project namespace of the workspace (a ConfigMap
    /// with the ZenML server URL, an extra LimitRange or NetworkPolicy, ...): restored when changed or deleted by hand,
    /// deleted from the namespaces when removed from this list, counted in each Project's `status.templates`
    /// (condition `TemplatesReady`). Only kinds the operator may manage (the chart's `templates.kinds`) are applied,
    /// never RBAC objects. A Project opts out of one by name (`spec.excludedTemplates`) unless it is `required`. An
    /// object of a template's name that is not the operator's is left untouched (`TemplateConflict`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::templates::template_list")]
    pub templates: Vec<Template>,
    /// A project the operator creates and keeps for this workspace, with ZenML project ID `default`, so that
    /// `zenml project set default` and `kubectl zenml workspace use` work out of the box. It is owned by the
    /// workspace: restored when deleted by hand, deleted (by its `deletionPolicy`) when this field is removed or the
    /// workspace is deleted. A Project of that name that the operator did not create is never adopted or changed:
    /// condition `DefaultProjectReady=False`, reason `NameConflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_project: Option<DefaultProject>,
}

/// The default project of a workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefaultProject {
    /// The Project's name, which is its namespace's name, cluster-wide. Defaults to `<projectNamePrefix>default`
    /// when the workspace has a `projectNamePrefix`, else `<workspace>-default`. Must start with the
    /// `projectNamePrefix`. Changing it (or the prefix it is derived from) makes a new project and deletes the old
    /// one by its `deletionPolicy`: set `Retain` first to keep its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::dns_label")]
    #[x_kube(validation = kube::core::Rule::new("self != 'default' && !self.startsWith('kube-')")
        .message("'default' and 'kube-*' are protected namespaces; choose another defaultProject.name"))]
    pub name: Option<String>,
    /// Human-readable name; defaults to "Default".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// Delete (the default) deletes the namespace when the default project goes; Retain keeps it and everything in
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// Exceptions to the tenant rules (see the README's threat model), per workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantRuleExceptions {
    /// Members may create RoleBindings and long-lived ServiceAccount token Secrets themselves (the one-door rule
    /// off): access then no longer comes through ProjectRoleBindings only, and revoking one may not revoke it all.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub direct_access: bool,
    /// Members may create NetworkPolicies that admit peers from outside the isolation boundary.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_network_policies: bool,
}

/// A role granted to subjects in every project of the workspace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceMember {
    /// admin, developer, contributor, viewer, or a custom role listed in `spec.roles`.
    #[schemars(length(min = 1, max = 63), regex(pattern = "^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    pub role: String,
    /// Who gets the role.
    #[schemars(length(min = 1, max = 64))]
    pub subjects: Vec<Subject>,
}

/// Defaults for the projects of a workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectDefaults {
    /// Default ResourceQuota; a project overrides it key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSpec>,
    /// Default LimitRange; a project overrides it key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<LimitRangeSpec>,
    /// Default network isolation: None, Project (the default) or Workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_isolation: Option<NetworkIsolation>,
    /// Default egress: where the projects' pods may connect. Open (the default), Workspace or AllowList.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// Labels set on every project namespace. Enforced: a project cannot override them. Pod Security labels
    /// (`pod-security.kubernetes.io/enforce: baseline`) belong here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::workspace_labels")]
    pub namespace_labels: BTreeMap<String, String>,
}

/// The resources a workspace's projects may be granted in total.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceBudget {
    /// Totals by resource name; resources not named here are not limited by the budget.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::quota_list")]
    pub hard: ResourceList,
}

/// A custom role the workspace allows, backed by an existing ClusterRole.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomRole {
    /// The role name used in ProjectRoleBindings and `members`; lowercase, not one of the built-in roles.
    #[schemars(length(min = 1, max = 63), regex(pattern = "^[a-z]([-a-z0-9]*[a-z0-9])?$"))]
    #[x_kube(validation = kube::core::Rule::new("!(self in ['admin', 'developer', 'contributor', 'viewer'])")
        .message("admin, developer, contributor and viewer are built-in roles and cannot be redefined"))]
    pub name: String,
    /// The ClusterRole bound in the project namespace. The operator must be allowed to bind it (the chart's
    /// `customRoles` value); `cluster-admin` and `system:` roles are never allowed.
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[A-Za-z0-9][-A-Za-z0-9_.:]*$"))]
    #[x_kube(validation = kube::core::Rule::new("self != 'cluster-admin' && !self.startsWith('system:')")
        .message("cluster-admin and system: ClusterRoles can never be granted through a workspace"))]
    pub cluster_role: String,
}

/// Observed state of a Workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, and the reasons it is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// How many projects the workspace holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projects: Option<i32>,
    /// The budget and how much of it is granted to projects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<WorkspaceBudgetStatus>,
}

/// Budget usage of a workspace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceBudgetStatus {
    /// The budget, as in the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: ResourceList,
    /// The sum of the quotas granted to the workspace's projects, for the resources the budget names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocated: ResourceList,
}
