//! zenml-operator: ZenML Pro workspaces, projects and project role bindings as Kubernetes isolation.
//!
//! ```text
//! Workspace ──< Project ──< ProjectRoleBinding
//!                  │
//!                  └─ Namespace (same name): ResourceQuota, LimitRange, NetworkPolicy,
//!                     runner ServiceAccount + RoleBinding, one RoleBinding per member role
//! ```
//! The API types and the pure builders of desired state and status live in the `zenml-api` crate. Here:
//! `controllers` (one reconciler per kind, and the child kinds a project owns), `watch` (the watches and the caches
//! they fill), `write` (server-side apply, status, events and the bookkeeping of writes the caches have not seen yet)
//! and `runtime` (wiring, leader election, health and metrics).
#![forbid(unsafe_code)]

pub mod controllers;
mod error;
pub mod runtime;
pub mod watch;
pub mod write;

pub use error::{Error, Result};
