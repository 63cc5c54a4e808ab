//! Names the operator writes onto the cluster: labels, annotations, finalizers, the field manager.

/// The single field manager for everything the operator applies.
pub const FIELD_MANAGER: &str = "zenml-operator";
/// Finalizer that lets the operator release or delete a project namespace, and keep a workspace while projects remain.
pub const FINALIZER: &str = "zenml.io/finalizer";

pub const WORKSPACE: &str = "zenml.io/workspace";
pub const PROJECT: &str = "zenml.io/project";
pub const PROJECT_ID: &str = "zenml.io/project-id";
/// The project's network isolation on its namespace (`None`, `Project`, `Workspace`): the admission policy that keeps
/// members from opening the wall reads it.
pub const NETWORK_ISOLATION: &str = "zenml.io/network-isolation";
/// A project's own narrowing of its workspace's policies (`ProjectPolicies`), on its namespace, comma-separated: the
/// workspace policy's admission check reads them beside the Workspace, so a value must be allowed by both.
pub const POLICY_STORAGE_CLASSES: &str = "policies.zenml.io/storage-classes";
pub const POLICY_INGRESS_CLASSES: &str = "policies.zenml.io/ingress-classes";
pub const POLICY_PRIORITY_CLASSES: &str = "policies.zenml.io/priority-classes";
pub const POLICY_RUNTIME_CLASSES: &str = "policies.zenml.io/runtime-classes";
pub const POLICY_IMAGE_REGISTRIES: &str = "policies.zenml.io/image-registries";
/// The project's egress mode on its namespace (`Open`, `Workspace`, `AllowList`): the admission policy that keeps
/// members from opening the wall reads it for egress rules as it reads the isolation for ingress rules.
pub const EGRESS: &str = "zenml.io/egress";
/// `"true"` on a namespace whose workspace lets members grant access themselves (the one-door admission rule off).
pub const ALLOW_DIRECT_ACCESS: &str = "zenml.io/allow-direct-access";
/// `"true"` on a namespace whose workspace lets members open the network wall (the walls admission rule off).
pub const ALLOW_OPEN_NETWORK_POLICIES: &str = "zenml.io/allow-open-network-policies";
/// `"true"` on the namespace of a frozen project (its own `spec.frozen` or its workspace's): the freeze admission
/// policy refuses new and changed pods and workloads there.
pub const FROZEN: &str = "zenml.io/frozen";
/// What part of a project a child object is, so users and tests can find it (`zenml.io/component=quota`).
pub const COMPONENT: &str = "zenml.io/component";
/// The project role a RoleBinding grants (`admin`, `developer`, ...), for audits and `kubectl get -l`.
pub const ROLE: &str = "zenml.io/role";
/// The ProjectRoleBinding behind a RoleBinding (an annotation: a binding's name can be too long for a label).
pub const BINDING: &str = "zenml.io/binding";
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "zenml-operator";
/// Selector for every object the operator manages; watches of children use it so the caches hold nothing else.
pub const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=zenml-operator";

/// Set on an existing namespace by someone allowed to annotate it, to hand it to one project instance: the value is
/// `<workspace>/<project>`, so no project of another workspace can take it. Removed when the namespace is released.
pub const ADOPT: &str = "zenml.io/adopt";
/// The uid of the project instance a namespace belongs to: ownership, since names are reused and uids are not.
pub const PROJECT_UID: &str = "zenml.io/project-uid";
/// Left on a namespace the operator released (Retain, or an adopted namespace), naming the former project.
pub const FORMER_PROJECT: &str = "zenml.io/former-project";
/// Left on a namespace the operator released, naming the former project's workspace.
pub const FORMER_WORKSPACE: &str = "zenml.io/former-workspace";
/// Fingerprint of what the operator last applied to an object: a changed spec changes it, so fields the operator
/// stopped setting are removed even though everything it still sets is in place.
pub const APPLIED_HASH: &str = "zenml.io/applied-hash";
/// The Workspace template an object in a project namespace was applied from (`spec.templates[].name`).
pub const TEMPLATE: &str = "zenml.io/template";
/// Selector for the project children the operator builds itself (not the templates it applies), for the typed
/// children's watches: a template LimitRange or NetworkPolicy is no child of the LimitRange or NetworkPolicy kind.
pub const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=zenml-operator,!zenml.io/template";
/// Selector for the objects applied from Workspace templates, for the template kinds' watches.
pub const TEMPLATE_SELECTOR: &str = "app.kubernetes.io/managed-by=zenml-operator,zenml.io/template";
