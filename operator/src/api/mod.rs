//! The `zenml.io/v1alpha1` API: Workspace, Project and ProjectRoleBinding.
//!
//! Every field's doc comment becomes its OpenAPI description, so `kubectl explain` teaches users the API. Validation
//! lives in the schema (OpenAPI and CEL rules) wherever the API server can check it, so bad input is refused at
//! `kubectl apply` time with the offending field named; `schema` holds the shared pieces.

// Several `printcolumn(type_ = ...)` arguments are not duplicate attributes, whatever clippy thinks.
#![allow(clippy::duplicated_attributes)]

mod binding;
mod common;
mod project;
pub mod schema;
mod workspace;

pub use binding::{BoundTo, ProjectRoleBinding, ProjectRoleBindingSpec, ProjectRoleBindingStatus};
pub use common::{
    BuiltinRole, DeletionPolicy, LimitRangeSpec, NetworkIsolation, QuotaSpec, ResourceList, Subject, SubjectKind,
};
pub use project::{Project, ProjectQuotaStatus, ProjectSpec, ProjectStatus, RunnerSpec};
pub use workspace::{
    CustomRole, ProjectDefaults, TenantRuleExceptions, Workspace, WorkspaceBudget, WorkspaceBudgetStatus,
    WorkspaceMember, WorkspaceSpec, WorkspaceStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, ValidationRule,
};

/// API group of every kind here.
pub const GROUP: &str = "zenml.io";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";

/// All CRDs of this API, in the order they should be installed.
pub fn crds() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    let label = format!("size(self.metadata.name) <= 63 && self.metadata.name.matches(r'{}')", schema::DNS1123_LABEL);
    let label_msg = "must be a DNS-1123 label: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";
    vec![
        with_name_rules(Workspace::crd(), &[(&label, &format!("a workspace name {label_msg}"))]),
        with_name_rules(
            Project::crd(),
            &[
                (
                    &label,
                    &format!(
                        "a project name is its namespace's name, so it {label_msg} (keep the ZenML ID in spec.projectId)"
                    ),
                ),
                (
                    "self.metadata.name != 'default' && !self.metadata.name.startsWith('kube-')",
                    "'default' and 'kube-*' are protected namespaces; choose another project name and keep the ZenML ID in spec.projectId",
                ),
            ],
        ),
        with_name_rules(
            ProjectRoleBinding::crd(),
            &[(
                &format!(
                    "size(self.metadata.name) <= 253 && self.metadata.name.matches(r'{}')",
                    schema::DNS1123_SUBDOMAIN
                ),
                "a binding name must be a DNS-1123 subdomain: lowercase letters, digits, '-' and '.'",
            )],
        ),
    ]
}

/// Rules on `metadata.name`, which the derive cannot attach to the name: declaring the name in the schema lets each
/// rule's fieldPath point at it, so errors say `metadata.name: ...` rather than naming the whole object.
fn with_name_rules(mut crd: CustomResourceDefinition, rules: &[(&str, &str)]) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(root) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) else { continue };
        let name = JSONSchemaProps { type_: Some("string".into()), ..Default::default() };
        let metadata = JSONSchemaProps {
            type_: Some("object".into()),
            properties: Some([("name".to_owned(), name)].into()),
            ..Default::default()
        };
        root.properties.get_or_insert_with(Default::default).insert("metadata".into(), metadata);
        let validations = root.x_kubernetes_validations.get_or_insert_with(Vec::new);
        for (rule, message) in rules {
            validations.push(ValidationRule {
                rule: (*rule).to_owned(),
                message: Some((*message).to_owned()),
                field_path: Some(".metadata.name".into()),
                reason: Some("FieldValueInvalid".into()),
                ..Default::default()
            });
        }
    }
    crd
}
