//! Writing a project's status, and refusing with a reason.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use zenml_api::resources::{Children, project as build};
use zenml_api::status::conditions::{Cond, ConditionType, Reason, ready, stamp};
use zenml_api::status::project::READY_MESSAGE;
use zenml_api::{Project, ProjectQuotaStatus, ProjectStatus, Workspace};

use super::{RESYNC, namespace_is_ours};
use crate::Result;
use crate::controllers::context::Context;
use crate::write::events::{EventAction, EventType, type_for};
use crate::write::usage;

/// `Frozen`: True while the project, or its workspace, is frozen, or the project has expired. Beside Ready, not part
/// of it: a frozen project is still provisioned and in force.
fn frozen_condition(project: &Project, workspace: Option<&Workspace>, now: Timestamp) -> Cond {
    const WHAT: &str = "no new or changed pods or workloads in the namespace; what runs keeps running";
    if let Some(at) = project.spec.expires_at.as_ref().filter(|_| build::expired(project, now)) {
        let msg = format!(
            "the project expired at {} (spec.expiresAt): {WHAT}; move spec.expiresAt into the future to unfreeze it, \
             or delete it (kubectl zenml project prune)",
            at.0
        );
        Cond::ok(ConditionType::Frozen, Reason::Expired, msg)
    } else if project.spec.frozen {
        Cond::ok(ConditionType::Frozen, Reason::ProjectFrozen, format!("spec.frozen: {WHAT}"))
    } else if let Some(w) = workspace.filter(|w| w.spec.frozen) {
        Cond::ok(
            ConditionType::Frozen,
            Reason::WorkspaceFrozen,
            format!("workspace {} is frozen: {WHAT}", w.name_any()),
        )
    } else {
        Cond::fail(ConditionType::Frozen, Reason::NotFrozen, "pods and workloads may be created and changed")
    }
}

/// Refuses to provision: says why in the status, and in an Event when the reason is new.
pub(super) async fn refuse(
    project: &Project,
    api: &Api<Project>,
    ctx: &Context,
    reason: Reason,
    message: String,
) -> Result<Action> {
    let cond_type = match reason {
        Reason::BudgetExceeded | Reason::InvalidQuantity => ConditionType::QuotaReady,
        _ => ConditionType::NamespaceReady,
    };
    write_status(project, api, ctx, vec![Cond::fail(cond_type, reason, message)], None).await?;
    Ok(Action::requeue(until_expiry(project, RESYNC)))
}

/// `otherwise`, or sooner if the project expires before: a little after the instant, so it has expired when looked at
/// again. Expiry is a moment, not an event, and is never polled for.
pub(super) fn until_expiry(project: &Project, otherwise: Duration) -> Duration {
    match build::until_expiry(project, Timestamp::now()) {
        Some(left) => (left + Duration::from_millis(200)).min(otherwise),
        None => otherwise,
    }
}

/// Writes the status when it differs from the one stored, with an Event when Ready changes reason. A change of the
/// quota's use alone may have to wait (see `usage`): then it returns how long.
pub(super) async fn write_status(
    project: &Project,
    api: &Api<Project>,
    ctx: &Context,
    parts: Vec<Cond>,
    children: Option<&Children>,
) -> Result<Option<Duration>> {
    let name = project.name_any();
    let previous = project.status.clone().unwrap_or_default();
    let ready_cond = ready(&parts, READY_MESSAGE);
    let mut all = parts;
    all.push(ready_cond.clone());
    let workspace = ctx.stores.workspaces.get(&ObjectRef::new(&project.spec.workspace));
    let frozen = frozen_condition(project, workspace.as_deref(), Timestamp::now());
    all.push(frozen.clone());
    let provisioned = children.is_some();
    // `hard` is what we granted (known now, so Ready is reported with it in one write); `used` comes from the
    // ResourceQuota's status once the quota controller has counted.
    let quota = children.and_then(|c| c.quota.as_ref()).map(|q| {
        let used = ctx
            .stores
            .children
            .quotas
            .get(&name, build::QUOTA_NAME)
            .and_then(|q| q.decode()?.status?.used)
            .unwrap_or_default();
        ProjectQuotaStatus { hard: q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default(), used }
    });
    let members: BTreeMap<String, i32> = match children {
        Some(c) => c.members.clone(),
        None => previous.members.clone(),
    };
    let namespace_exists = provisioned
        || ctx.stores.namespaces.get(&ObjectRef::new(&name)).is_some_and(|ns| namespace_is_ours(&ns, project));
    let status = ProjectStatus {
        observed_generation: project.meta().generation,
        conditions: stamp(&previous.conditions, all, project.meta().generation),
        namespace: namespace_exists
            .then(|| name.clone())
            .or_else(|| previous.namespace.clone().filter(|_| provisioned)),
        members,
        quota: if provisioned { quota } else { previous.quota.clone() },
        templates: match children {
            Some(c) => Some(c.templates.objects.len() as i32),
            None => previous.templates,
        },
    };
    if status == previous {
        return Ok(None);
    }
    let uid = project.uid().unwrap_or_default();
    let now = Instant::now();
    if usage::usage_only(&previous, &status)
        && let Some(wait) = ctx.usage_writes.wait(&uid, now)
    {
        return Ok(Some(wait));
    }
    let ready_changed = crate::write::status::apply(api, project, ctx, &status, &previous.conditions).await?;
    ctx.usage_writes.wrote(&uid, now);
    if ready_changed {
        ctx.event(project, type_for(ready_cond.ok), ready_cond.reason, EventAction::Reconcile, ready_cond.message)
            .await;
    }
    // Frozen, expired and unfrozen are changes users must hear of: an Event when the reason changes.
    let was = previous.conditions.iter().find(|c| c.type_ == ConditionType::Frozen).map(|c| c.reason.as_str());
    if was.is_some_and(|r| r != frozen.reason.as_str()) || (was.is_none() && frozen.ok) {
        let kind = if frozen.reason == Reason::Expired { EventType::Warning } else { EventType::Normal };
        ctx.event(project, kind, frozen.reason, EventAction::Reconcile, frozen.message).await;
    }
    Ok(None)
}
