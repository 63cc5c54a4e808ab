//! The `zenml.io/v1alpha1` API and what it means on a cluster, shared by the operator, the kubectl plugin and the
//! e2e tests. Nothing here talks to an API server:
//!
//! - the types (`Workspace`, `Project`, `ProjectRoleBinding`) and their CRDs (`crd`);
//! - `labels`: the labels and annotations the operator stamps on what it manages;
//! - `resources`: the pure builders of desired children and the verdicts (budgets, validation, ownership);
//! - `status`: the pure builders of the status the operator writes (conditions, reasons, messages).
//!
//! ```text
//! Workspace ──< Project ──< ProjectRoleBinding
//!                  │
//!                  └─ Namespace (same name): ResourceQuota, LimitRange, NetworkPolicy,
//!                     runner ServiceAccount + RoleBinding, one RoleBinding per member role
//! ```
#![forbid(unsafe_code)]

pub mod crd;
pub mod labels;
pub mod resources;
pub mod status;
mod types;

pub use types::*;
