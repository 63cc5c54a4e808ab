//! Pure builders of desired state: no I/O, so everything here is unit-tested without a cluster.

pub mod binding;
pub mod budget;
pub mod compare;
pub mod network;
pub mod project;
pub mod quantity;
pub mod roles;
pub mod templates;
pub mod validate;
pub mod workspace;

pub use network::NetworkFacts;
pub use project::{Children, desired};
pub use roles::RoleMap;
