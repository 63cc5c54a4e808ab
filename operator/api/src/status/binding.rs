//! The status of a ProjectRoleBinding, as far as it follows from what was built.

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::ResourceExt;

use super::conditions::{Cond, ConditionType, Reason};
use crate::ProjectRoleBindingSpec;

/// `Ready` of a binding whose RoleBinding `rb` is in force.
pub fn bound(rb: &RoleBinding, spec: &ProjectRoleBindingSpec) -> Cond {
    let msg = format!(
        "RoleBinding {} grants ClusterRole {} to {} subjects in namespace {}",
        rb.name_any(),
        rb.role_ref.name,
        spec.subjects.len(),
        spec.project
    );
    Cond::ok(ConditionType::Ready, Reason::Bound, msg)
}
