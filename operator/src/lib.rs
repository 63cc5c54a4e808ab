//! zenml-operator: ZenML Pro workspaces, projects and project role bindings as Kubernetes isolation.
//!
//! ```text
//! Workspace ──< Project ──< ProjectRoleBinding
//!                  │
//!                  └─ Namespace (same name): ResourceQuota, LimitRange, NetworkPolicy,
//!                     runner ServiceAccount + RoleBinding, one RoleBinding per member role
//! ```
//! `api` holds the types, `resources` the pure builders of desired state, `controllers` one reconciler per kind,
//! `run` the wiring.
#![forbid(unsafe_code)]

pub mod api;
pub mod binding_index;
pub mod cache;
pub mod controllers;
pub mod crdgen;
mod error;
pub mod events;
pub mod guard;
pub mod http;
pub mod labels;
pub mod leader;
pub mod metrics;
pub mod resources;
pub mod run;

pub use error::{Error, Result};
