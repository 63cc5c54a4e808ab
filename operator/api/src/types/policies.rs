//! Workspace policies: what the pods and claims of a workspace's projects may use. Enforced at admission by the
//! chart's `zenml-workspace-policies` ValidatingAdmissionPolicy, whose parameter is the Workspace itself; the
//! operator only carries them.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Allow-lists and placement rules for every project namespace of a workspace. An empty or absent list restricts
/// nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspacePolicies {
    /// The allow-lists, which a Project may narrow for itself (its own `spec.policies`).
    #[serde(flatten)]
    pub allowed: AllowLists,
    /// Node labels every pod must select with exactly these values in its `nodeSelector`, so the workspace's pods
    /// run on its nodes only. Pods without them are refused; see the README for injecting them instead.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::schema::node_selector")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations pods may carry, e.g. for the taint of the workspace's dedicated nodes. When set, every toleration
    /// of a pod must match one of these by key, and by effect and value where given here (the API server's own
    /// `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` tolerations always pass). Unset: any
    /// toleration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub tolerations: Vec<AllowedToleration>,
}

/// What pods, claims and ingresses may use: a Workspace's `spec.policies` for all its projects, and a Project's own
/// `spec.policies`, which narrow its workspace's (a value must be allowed by both, so a project can only be
/// stricter; an entry the workspace does not allow has no effect and is reported: `PoliciesReady=False`, reason
/// `NotAllowedByWorkspace`). An empty or absent list restricts nothing.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowLists {
    /// StorageClasses a PersistentVolumeClaim may use (after the cluster's default class is filled in). A claim
    /// naming no class (or `""`, a statically bound volume) passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::class_name_set")]
    pub storage_classes: Vec<String>,
    /// IngressClasses an Ingress may use (`spec.ingressClassName`, or the legacy annotation
    /// `kubernetes.io/ingress.class`, after the cluster's default class is filled in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::class_name_set")]
    pub ingress_classes: Vec<String>,
    /// PriorityClasses a pod (or a workload's pod template) may name (after the cluster's global default is
    /// filled in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::class_name_set")]
    pub priority_classes: Vec<String>,
    /// RuntimeClasses a pod (or a workload's pod template) may name; a pod naming none runs with the node's default
    /// runtime and passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::class_name_set")]
    pub runtime_classes: Vec<String>,
    /// Image reference prefixes every container image must start with: containers, init containers and ephemeral
    /// (debug) containers of pods and of workloads' pod templates. Each ends with `/` (`registry.example.com/`,
    /// `ghcr.io/zenml-io/`), so a prefix never matches a longer registry or organisation name. Images are compared
    /// as written: a Docker Hub image must be written out in full (`docker.io/library/busybox`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "super::schema::image_prefix_set")]
    pub image_registries: Vec<String>,
}

/// A project's narrowing of its workspace's allow-lists.
pub type ProjectPolicies = AllowLists;

impl AllowLists {
    /// Each list by the field name a user writes, with the namespace annotation a project's list is carried in.
    pub fn lists(&self) -> [(&'static str, &'static str, &[String]); 5] {
        [
            ("storageClasses", crate::labels::POLICY_STORAGE_CLASSES, &self.storage_classes),
            ("ingressClasses", crate::labels::POLICY_INGRESS_CLASSES, &self.ingress_classes),
            ("priorityClasses", crate::labels::POLICY_PRIORITY_CLASSES, &self.priority_classes),
            ("runtimeClasses", crate::labels::POLICY_RUNTIME_CLASSES, &self.runtime_classes),
            ("imageRegistries", crate::labels::POLICY_IMAGE_REGISTRIES, &self.image_registries),
        ]
    }
}

/// A toleration the workspace allows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedToleration {
    /// The taint key tolerated.
    #[schemars(
        length(min = 1, max = 317),
        regex(
            pattern = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
        )
    )]
    pub key: String,
    /// The taint value tolerated; unset: any value (and `operator: Exists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub value: Option<String>,
    /// NoSchedule, PreferNoSchedule or NoExecute; unset: any effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^(NoSchedule|PreferNoSchedule|NoExecute)$"))]
    pub effect: Option<String>,
}
