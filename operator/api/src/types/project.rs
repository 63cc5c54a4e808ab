//! Project: one isolated, budgeted namespace of a workspace.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{DeletionPolicy, Egress, LimitRangeSpec, NetworkIsolation, QuotaSpec, ResourceList, Subject};

/// A ZenML Pro project. Its namespace has the Project's name.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "zenml.io",
    version = "v1alpha1",
    kind = "Project",
    status = "ProjectStatus",
    shortname = "proj",
    category = "zenml",
    derive = "Default",
    derive = "PartialEq",
    selectable = ".spec.workspace",
    doc = "A ZenML Pro project: one namespace, named after the Project, with its quota, limits, network walls, runner ServiceAccount and members.",
    printcolumn(name = "Workspace", type_ = "string", json_path = ".spec.workspace"),
    printcolumn(name = "Namespace", type_ = "string", json_path = ".status.namespace"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "Project ID", type_ = "string", priority = 1, json_path = ".spec.projectId"),
    printcolumn(name = "Owners", type_ = "string", json_path = ".spec.owners[*].name"),
    printcolumn(name = "Frozen", type_ = "string", json_path = ".status.conditions[?(@.type==\"Frozen\")].status"),
    printcolumn(name = "Expires", type_ = "string", priority = 1, json_path = ".spec.expiresAt"),
    printcolumn(name = "Templates", type_ = "integer", priority = 1, json_path = ".status.templates"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSpec {
    /// The Workspace this project belongs to. Immutable.
    #[schemars(schema_with = "super::schema::dns_label")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("workspace is immutable; create a new Project to move it"))]
    pub workspace: String,
    /// Human-readable name, free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub display_name: Option<String>,
    /// What the project is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    /// The ZenML project ID (letters, digits, '-' and '_'), unique within the workspace and kept as the namespace
    /// label `zenml.io/project-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = "^[A-Za-z0-9_-]+$"))]
    pub project_id: Option<String>,
    /// ResourceQuota, merged key by key over the workspace's `projectDefaults.quota`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaSpec>,
    /// LimitRange, merged key by key over the workspace's `projectDefaults.limitRange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range: Option<LimitRangeSpec>,
    /// None, Project (ingress only from this namespace) or Workspace (from the workspace's namespaces). Defaults to
    /// the workspace's `projectDefaults.networkIsolation`, else Project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_isolation: Option<NetworkIsolation>,
    /// Where the project's pods may connect: Open, Workspace (the workspace's namespaces, DNS and the API server) or
    /// AllowList (also the listed CIDRs and namespaces). Replaces the workspace's `projectDefaults.egress` as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Egress>,
    /// Extra namespace labels, e.g. a cost center. Labels the workspace enforces win.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::project_labels")]
    pub namespace_labels: BTreeMap<String, String>,
    /// Extra namespace annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::project_annotations")]
    pub namespace_annotations: BTreeMap<String, String>,
    /// The ServiceAccount pipeline steps run as, bound to the `edit` role in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<RunnerSpec>,
    /// Delete (the default) deletes the namespace with the Project; Retain keeps it and everything in it.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Frozen: no new or changed pods and workloads in the namespace (Pods, Deployments, StatefulSets, ReplicaSets,
    /// DaemonSets, ReplicationControllers, Jobs, CronJobs, and their scale), refused at admission; what runs keeps
    /// running, deletes (and revoking ProjectRoleBindings) still work. A frozen Workspace freezes all its projects.
    /// `kubectl zenml project freeze|unfreeze` sets it; status condition `Frozen`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frozen: bool,
    /// Narrows the workspace's `spec.policies` for this project: a value must be allowed by both, so a project can
    /// only be stricter than its workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<super::policies::ProjectPolicies>,
    /// The project's owners (users and groups): its admins, bound to the `admin` role in the namespace and allowed to
    /// manage its ProjectRoleBindings like any admin member, for as long as they are listed here. Shown by
    /// `kubectl get projects`, `kubectl zenml project describe` and `kubectl zenml audit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = kube::core::Rule::new("self.all(s, s.kind != 'ServiceAccount')")
        .message("owners are users and groups; grant a ServiceAccount a role with a ProjectRoleBinding"))]
    pub owners: Vec<Subject>,
    /// Templates of the workspace (its `spec.templates`, by name) this project does without: they are not applied in
    /// its namespace, and deleted from it if they were. A template the workspace marks `required` is applied anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::templates::excluded_templates")]
    pub excluded_templates: Vec<String>,
    /// When the project expires (RFC 3339, e.g. 2026-12-31T18:00:00Z), for experiments. From then on it is frozen
    /// exactly as by `frozen` (condition `Frozen`, reason `Expired`, and an Event), and `kubectl zenml project prune`
    /// lists it for deletion (each by its `deletionPolicy`). Moving it into the future, or removing it, unfreezes the
    /// project. Shown by `kubectl get projects -o wide`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// The runner ServiceAccount of a project.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunnerSpec {
    /// Name of the ServiceAccount; defaults to `zenml-runner`. Never `default`: every pod that names no
    /// ServiceAccount runs as `default`, so binding `edit` to it would hand the runner's rights to all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    #[x_kube(validation = kube::core::Rule::new("self != 'default'").message("runner.serviceAccountName may not be default: every pod without a serviceAccountName runs as default and would get the runner's rights; choose another name, or leave it unset for zenml-runner").reason(kube::core::Reason::FieldValueForbidden))]
    pub service_account_name: Option<String>,
    /// Annotations on the ServiceAccount, e.g. workload identity for artifact stores
    /// (`eks.amazonaws.com/role-arn`, `iam.gke.io/gcp-service-account`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::project_annotations")]
    pub annotations: BTreeMap<String, String>,
}

/// Observed state of a Project.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, NamespaceReady, QuotaReady, AccessReady and NetworkReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The project namespace, once it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Number of subjects per role in the project.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub members: BTreeMap<String, i32>,
    /// The quota granted to the project and its use, mirrored from the ResourceQuota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ProjectQuotaStatus>,
    /// How many of the workspace's templates are applied in the project namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<i32>,
}

/// Quota granted to a project and its use.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectQuotaStatus {
    /// Granted hard limits.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hard: ResourceList,
    /// Current use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub used: ResourceList,
}
