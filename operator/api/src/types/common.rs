//! Types shared by more than one kind.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Resource names mapped to quantities, e.g. `requests.cpu: "8"`.
pub type ResourceList = BTreeMap<String, Quantity>;

// How a project namespace is walled off from others. (a plain comment: a type doc would replace each field's own in the schema)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum NetworkIsolation {
    /// No NetworkPolicy: any pod in the cluster may connect.
    None,
    /// Ingress only from pods in the same project namespace (default).
    #[default]
    Project,
    /// Ingress from pods in any namespace of the same workspace.
    Workspace,
}

// Where a project's pods may open connections. (a plain comment: a type doc would replace each field's own in the schema)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum EgressMode {
    /// Anywhere (default).
    #[default]
    Open,
    /// Only the namespaces of the same workspace, DNS in the cluster's DNS namespace, and the API server.
    Workspace,
    /// What Workspace allows, and the listed CIDRs and namespaces (e.g. an LLM gateway).
    AllowList,
}

/// Where a project's pods may open connections to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.mode == 'AllowList' || (size(self.?cidrs.orValue([])) == 0 && size(self.?namespaces.orValue([])) == 0)"
).message("cidrs and namespaces are read only with mode AllowList: set mode: AllowList, or remove them"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.mode != 'AllowList' || size(self.?cidrs.orValue([])) + size(self.?namespaces.orValue([])) > 0"
).message("mode AllowList needs cidrs or namespaces to allow; to allow only the workspace, use mode: Workspace"))]
pub struct Egress {
    /// Open (anywhere, the default), Workspace (the workspace's namespaces, DNS and the API server) or AllowList
    /// (Workspace and the listed cidrs and namespaces).
    pub mode: EgressMode,
    /// With AllowList: address ranges pods may reach on any port, e.g. `10.20.0.0/16` or `203.0.113.7/32`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::cidr_set")]
    pub cidrs: Vec<String>,
    /// With AllowList: namespaces pods may reach by name, e.g. an LLM gateway that bills each calling namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::dns_label_set")]
    pub namespaces: Vec<String>,
}

// What happens to the project namespace when the Project is deleted. (a plain comment: a type doc would replace each field's own in the schema)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
pub enum DeletionPolicy {
    /// Delete the namespace and everything in it (default).
    #[default]
    Delete,
    /// Keep the namespace and everything in it; only the operator's management labels are removed.
    Retain,
}

// The kind of a subject that is granted a role. (a plain comment: a type doc would replace each field's own in the schema)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
pub enum SubjectKind {
    /// A user as the cluster's authenticator names it (an OIDC subject or e-mail, a certificate CN).
    User,
    /// A group (a team) as the cluster's authenticator names it.
    Group,
    /// A Kubernetes ServiceAccount; needs `project` (or `namespace`).
    ServiceAccount,
}

/// Someone who is granted a role.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new(
    "self.kind == 'ServiceAccount' ? (has(self.project) != has(self.__namespace__)) : (!has(self.project) && !has(self.__namespace__))"
).message("a ServiceAccount subject needs exactly one of project or namespace; User and Group subjects take neither"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.kind != 'ServiceAccount' || (size(self.name) <= 253 && self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'))"
).message("a ServiceAccount name must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')").field_path(".name"))]
pub struct Subject {
    /// User, Group or ServiceAccount.
    pub kind: SubjectKind,
    /// The user, group or ServiceAccount name.
    #[schemars(length(min = 1, max = 512))]
    pub name: String,
    /// For a ServiceAccount: the project whose namespace holds it (a cross-project grant names the other project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::dns_label")]
    pub project: Option<String>,
    /// For a ServiceAccount outside any project: its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::schema::dns_label")]
    pub namespace: Option<String>,
}

/// A ResourceQuota for a project namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaSpec {
    /// Hard limits by resource name, as in a ResourceQuota: `requests.cpu`, `requests.memory`, `limits.cpu`,
    /// `requests.nvidia.com/gpu`, `pods`, `count/deployments.apps`, ... Values are quantities (`500m`, `4Gi`, `10`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::quota_list")]
    pub hard: ResourceList,
}

/// Default and bounding container resources, applied as a LimitRange of type Container in the project namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitRangeSpec {
    /// Limits given to a container that sets none, e.g. `cpu: "1"`, `memory: 1Gi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::container_list")]
    pub default: ResourceList,
    /// Requests given to a container that sets none, e.g. `cpu: 100m`, `memory: 256Mi`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::container_list")]
    pub default_request: ResourceList,
    /// Most a single container may ask for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::container_list")]
    pub max: ResourceList,
    /// Least a single container must ask for.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::container_list")]
    pub min: ResourceList,
}

impl LimitRangeSpec {
    pub fn is_empty(&self) -> bool {
        self.default.is_empty() && self.default_request.is_empty() && self.max.is_empty() && self.min.is_empty()
    }
}

/// The four project roles of ZenML Pro.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BuiltinRole {
    Admin,
    Developer,
    Contributor,
    Viewer,
}

impl BuiltinRole {
    pub const ALL: [BuiltinRole; 4] = [Self::Admin, Self::Developer, Self::Contributor, Self::Viewer];

    pub fn name(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Contributor => "contributor",
            Self::Viewer => "viewer",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }
}
