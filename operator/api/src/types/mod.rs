//! The `zenml.io/v1alpha1` API: Workspace, Project and ProjectRoleBinding.
//!
//! Every field's doc comment becomes its OpenAPI description, so `kubectl explain` teaches users the API. Validation
//! lives in the schema (OpenAPI and CEL rules) wherever the API server can check it, so bad input is refused at
//! `kubectl apply` time with the offending field named; `schema` holds the shared pieces.

// Several `printcolumn(type_ = ...)` arguments are not duplicate attributes, whatever clippy thinks.
#![allow(clippy::duplicated_attributes)]

mod binding;
mod common;
mod policies;
mod project;
pub mod schema;
pub mod templates;
mod workspace;

pub use binding::{BoundTo, ProjectRoleBinding, ProjectRoleBindingSpec, ProjectRoleBindingStatus};
pub use common::{
    BuiltinRole, DeletionPolicy, Egress, EgressMode, LimitRangeSpec, NetworkIsolation, QuotaSpec, ResourceList,
    Subject, SubjectKind,
};
pub use policies::{AllowLists, AllowedToleration, ProjectPolicies, WorkspacePolicies};
pub use project::{Project, ProjectQuotaStatus, ProjectSpec, ProjectStatus, RunnerSpec};
pub use templates::Template;
pub use workspace::{
    CustomRole, DefaultProject, ProjectDefaults, TenantRuleExceptions, Workspace, WorkspaceBudget,
    WorkspaceBudgetStatus, WorkspaceMember, WorkspaceSpec, WorkspaceStatus,
};

/// API group of every kind here.
pub const GROUP: &str = "zenml.io";
/// Served and stored version.
pub const VERSION: &str = "v1alpha1";
