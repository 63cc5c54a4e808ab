//! The status of a Project, as far as it follows from what was decided and built.

use kube::ResourceExt;

use super::conditions::{Cond, ConditionType, Reason};
use crate::resources::Children;
use crate::resources::project;
use crate::{NetworkIsolation, Project, Workspace};

/// `Ready`'s message when every other condition holds.
pub const READY_MESSAGE: &str = "every child object exists as desired";

/// The conditions of a provisioned project, `Ready` aside (see [`READY_MESSAGE`]).
pub fn provisioned_conditions(
    project: &Project,
    workspace: &Workspace,
    c: &Children,
    exceeded: Option<String>,
) -> Vec<Cond> {
    let name = project.name_any();
    let mut conds =
        vec![Cond::ok(ConditionType::NamespaceReady, Reason::Provisioned, format!("namespace {name} is provisioned"))];
    conds.push(match (exceeded, &c.quota) {
        (Some(why), _) => Cond::fail(ConditionType::QuotaReady, Reason::BudgetExceeded, why),
        (None, Some(_)) => {
            Cond::ok(ConditionType::QuotaReady, Reason::QuotaApplied, "the ResourceQuota holds the project's quota")
        }
        (None, None) => {
            Cond::ok(ConditionType::QuotaReady, Reason::NoQuota, "neither the project nor its workspace sets a quota")
        }
    });
    conds.push(if c.roles_not_allowed.is_empty() {
        Cond::ok(ConditionType::AccessReady, Reason::RolesBound, "the runner and every workspace member role are bound")
    } else {
        let msg = format!(
            "workspace {} names roles it does not allow in spec.members: {}; add them to the workspace's spec.roles or use admin, developer, contributor or viewer",
            workspace.name_any(),
            c.roles_not_allowed.join(", ")
        );
        Cond::fail(ConditionType::AccessReady, Reason::RoleNotAllowed, msg)
    });
    conds.push(match &c.network_policy {
        None => {
            Cond::ok(ConditionType::NetworkReady, Reason::NotIsolated, "networkIsolation is None: any pod may connect")
        }
        Some(_) if project::network_isolation(project, workspace) == NetworkIsolation::Workspace => Cond::ok(
            ConditionType::NetworkReady,
            Reason::WorkspaceIsolated,
            "ingress only from namespaces of the same workspace",
        ),
        Some(_) => {
            Cond::ok(ConditionType::NetworkReady, Reason::ProjectIsolated, "ingress only from pods in this namespace")
        }
    });
    conds
}
