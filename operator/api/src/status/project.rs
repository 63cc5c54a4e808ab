//! The status of a Project, as far as it follows from what was decided and built.

use kube::ResourceExt;

use super::conditions::{Cond, ConditionType, Reason};
use crate::resources::Children;
use crate::resources::project;
use crate::{EgressMode, NetworkIsolation, Project, Workspace};

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
    conds.push(egress(project, workspace, c));
    conds.extend(policies(project, workspace));
    conds
}

/// Whether the project's own `spec.policies` narrow its workspace's; none when it sets none.
fn policies(project: &Project, workspace: &Workspace) -> Option<Cond> {
    project.spec.policies.as_ref()?;
    let not_allowed = project::policies_not_allowed(project, workspace);
    Some(if not_allowed.is_empty() {
        Cond::ok(
            ConditionType::PoliciesReady,
            Reason::PoliciesNarrowed,
            format!("spec.policies narrow workspace {}'s: a value must be allowed by both", workspace.name_any()),
        )
    } else {
        Cond::fail(
            ConditionType::PoliciesReady,
            Reason::NotAllowedByWorkspace,
            format!(
                "spec.policies name what workspace {ws} does not allow: {}; they allow nothing, as a value must be \
                 allowed by both: remove them, or ask a cluster admin to allow them in Workspace {ws}'s spec.policies",
                not_allowed.join(", "),
                ws = workspace.name_any(),
            ),
        )
    })
}

/// Where the project's pods may connect, and whether the API server is among it.
fn egress(project: &Project, workspace: &Workspace, c: &Children) -> Cond {
    let egress = project::egress(project, workspace);
    let ws = &project.spec.workspace;
    if c.api_server_unknown {
        let msg = format!(
            "egress is {:?} and the operator knows no API server endpoint to allow, so pods cannot reach the API \
             server: the kubernetes Service in namespace default has no ready endpoints; set the chart's \
             egress.apiServerEndpoints (the operator's --api-server-endpoint IP:PORT)",
            egress.mode
        );
        return Cond::fail(ConditionType::EgressReady, Reason::ApiServerUnknown, msg);
    }
    match egress.mode {
        EgressMode::Open => {
            Cond::ok(ConditionType::EgressReady, Reason::EgressOpen, "egress is Open: pods may connect anywhere")
        }
        EgressMode::Workspace => Cond::ok(
            ConditionType::EgressReady,
            Reason::EgressWorkspace,
            format!("egress only to namespaces of workspace {ws}, DNS and the API server"),
        ),
        EgressMode::AllowList => {
            let listed: Vec<String> = egress
                .cidrs
                .iter()
                .cloned()
                .chain(egress.namespaces.iter().map(|n| format!("namespace {n}")))
                .collect();
            Cond::ok(
                ConditionType::EgressReady,
                Reason::EgressAllowList,
                format!("egress only to namespaces of workspace {ws}, DNS, the API server and {}", listed.join(", ")),
            )
        }
    }
}
