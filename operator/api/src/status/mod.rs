//! The status the operator writes, built without I/O: conditions whose times move only on real change, and the
//! vocabulary of condition types and reasons.

pub mod binding;
pub mod conditions;
pub mod project;
pub mod templates;
