//! Templates: namespaced objects a Workspace has the operator apply into every one of its project namespaces.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Names of the operator's own children: a template may not take them (it would fight the child of the same kind).
pub const RESERVED_TEMPLATE_NAMES: [&str; 4] =
    ["zenml-project", "zenml-project-isolation", "zenml-runner", "zenml-project-admin"];

/// An object the operator server-side applies into every project namespace of the workspace: drift-repaired, deleted
/// from the namespaces when it leaves the list. Never an RBAC object: a template cannot grant access.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Template {
    /// The template's name: the object's name in every project namespace, and what a Project's
    /// `spec.excludedTemplates` names.
    pub name: String,
    /// Projects may not exclude it (`spec.excludedTemplates` naming it is ignored, and the project says so).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// The object: `apiVersion`, `kind`, optional `metadata.labels` and `metadata.annotations`, and its content
    /// (`data`, `spec`, ...). Its name is the template's, its namespace each project's.
    pub object: serde_json::Value,
}

/// `spec.templates`: a list keyed by name, each entry checked by CEL so a template that could grant, name another
/// namespace, pose as ours or mint a ServiceAccount token is refused at `kubectl apply`.
pub fn template_list(_: &mut SchemaGenerator) -> Schema {
    let reserved = RESERVED_TEMPLATE_NAMES.map(|n| format!("'{n}'")).join(", ");
    json_schema!({
        "description": "Namespaced objects the operator server-side applies into every project namespace of the workspace (a ConfigMap with the ZenML server URL, a Secret reference, an extra LimitRange or NetworkPolicy, ...): restored when changed or deleted by hand, deleted from the namespaces when removed from this list, counted in each Project's status.templates. Only kinds the operator is allowed to manage (the chart's templates.kinds value) are applied; never RBAC objects. A Project opts out of one by name with spec.excludedTemplates, unless it is required.",
        "type": "array",
        "maxItems": 32,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name", "object"],
            "properties": {
                "name": {
                    "description": "The template's name: the object's name in every project namespace, and what a Project's spec.excludedTemplates names. A DNS-1123 label; not one of the operator's own children's names.",
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 63,
                    "pattern": super::schema::DNS1123_LABEL,
                    "x-kubernetes-validations": [{
                        "rule": format!("!(self in [{reserved}])"),
                        "message": format!("templates[].name may not be one of the operator's own object names ({}); choose another name", RESERVED_TEMPLATE_NAMES.join(", ")),
                        "reason": "FieldValueForbidden",
                    }],
                },
                "required": {
                    "description": "Projects may not exclude it: a Project's spec.excludedTemplates naming it is ignored, and the project's TemplatesReady condition says so.",
                    "type": "boolean",
                },
                "object": template_object(),
            },
            "x-kubernetes-validations": [{
                "rule": "!has(self.object.metadata) || !has(self.object.metadata.name) || self.object.metadata.name == self.name",
                "message": "templates[].object.metadata.name, when set, must equal templates[].name: the template's name is the object's name; remove it or make them equal",
                "reason": "FieldValueInvalid",
            }],
        },
    })
}

/// `templates[].object`: what a template may be. Its rules refuse, at `kubectl apply`, an object that could grant
/// (RBAC), mint an identity or a token, land in another namespace, or pose as one the operator manages.
fn template_object() -> Schema {
    let string_map = |what: &str| {
        json_schema!({
            "type": "object",
            "description": what,
            "maxProperties": 64,
            "additionalProperties": {"type": "string", "maxLength": 4096},
        })
    };
    json_schema!({
        "description": "The object: apiVersion, kind, optional metadata.labels and metadata.annotations, and its content (data, stringData, spec, ...). Its name is the template's name and its namespace each project's.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "apiVersion": {"type": "string", "minLength": 1, "maxLength": 253},
            "kind": {"type": "string", "minLength": 1, "maxLength": 63},
            "type": {"description": "A Secret's type; never kubernetes.io/service-account-token.", "type": "string", "maxLength": 253},
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {"description": "Leave unset, or the template's name.", "type": "string", "maxLength": 253},
                    "namespace": {"description": "Never set: the object goes into every project namespace.", "type": "string", "maxLength": 63},
                    "labels": string_map("Labels of the object; none under zenml.io/ or app.kubernetes.io/managed-by, which say what the operator manages."),
                    "annotations": string_map("Annotations of the object."),
                },
            },
        },
        "x-kubernetes-validations": [
            {
                "rule": "!self.apiVersion.startsWith('rbac.authorization.k8s.io/')",
                "message": "a template may not be an RBAC object (Role, RoleBinding, ClusterRole, ClusterRoleBinding): templates cannot grant access; grant roles with spec.members or ProjectRoleBindings",
                "reason": "FieldValueForbidden",
            },
            {
                "rule": "!(self.apiVersion == 'v1' && self.kind in ['Namespace', 'ServiceAccount', 'Node', 'PersistentVolume'])",
                "message": "a template may not be a Namespace, ServiceAccount, Node or PersistentVolume: templates are namespaced objects that grant no identity; the project's runner ServiceAccount is spec.runner",
                "reason": "FieldValueForbidden",
            },
            {
                "rule": "!(self.kind == 'Secret' && has(self.type) && self.type == 'kubernetes.io/service-account-token')",
                "message": "a template Secret may not be of type kubernetes.io/service-account-token: it would mint a token for a ServiceAccount of every project; use another type",
                "reason": "FieldValueForbidden",
            },
            {
                "rule": "!has(self.metadata) || !has(self.metadata.__namespace__)",
                "message": "templates[].object.metadata.namespace must not be set: the object is applied into every project namespace of the workspace; remove it",
                "reason": "FieldValueForbidden",
            },
            {
                "rule": "!has(self.metadata) || !has(self.metadata.labels) || self.metadata.labels.all(k, !k.startsWith('zenml.io/') && k != 'app.kubernetes.io/managed-by')",
                "message": "templates[].object.metadata.labels may not set zenml.io/ labels or app.kubernetes.io/managed-by: they say what the operator manages, and the operator sets them; remove them",
                "reason": "FieldValueForbidden",
            },
        ],
    })
}

/// `spec.excludedTemplates` of a Project: names of its workspace's templates it does without.
pub fn excluded_templates(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": super::schema::DNS1123_LABEL},
    })
}
