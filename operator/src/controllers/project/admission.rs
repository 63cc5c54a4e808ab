//! Whether a project is admitted: budget and place decisions made from the caches and the grants in flight (see
//! `write::grants`).

use std::collections::{BTreeMap, HashMap};

use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use zenml_api::resources::budget::{self, Candidate, Verdict};
use zenml_api::resources::project as build;
use zenml_api::resources::quantity::Amount;
use zenml_api::{Project, Workspace};

use super::namespace_is_ours;
use crate::controllers::context::Context;
use crate::write::grants;

/// Decides for every project of `workspace` at once (see `budget::decide`): the workspace's view.
pub fn decide(ctx: &Context, workspace: &Workspace) -> budget::Decisions {
    let sent = ctx.grants.lock();
    decide_for(ctx, workspace, None, &sent)
}

/// The verdict for one project of `workspace`. With a budget or `maxProjects`, the decision and the record of what
/// it grants happen under one lock (see `grants`), so no sibling decides meanwhile from a view without it.
pub(super) fn verdict(ctx: &Context, workspace: &Workspace, project: &Project) -> Option<Verdict> {
    let name = project.name_any();
    let spec = &workspace.spec;
    if spec.budget.is_none() && spec.max_projects.is_none() {
        return decide_for(ctx, workspace, Some(&name), &HashMap::new()).verdicts.remove(&name);
    }
    let mut sent = ctx.grants.lock();
    forget_seen(ctx, &mut sent);
    let verdict = decide_for(ctx, workspace, Some(&name), &sent).verdicts.remove(&name)?;
    if let Verdict::Provision { quota, .. } = &verdict {
        let mut granted = budget::held(quota);
        granted.retain(|k, _| spec.budget.as_ref().is_some_and(|b| b.hard.contains_key(k)));
        grants::record(&mut sent, &name, &workspace.name_any(), &project.uid().unwrap_or_default(), granted);
    }
    Some(verdict)
}

/// Drops the grants in flight that the cache shows in place.
fn forget_seen(ctx: &Context, sent: &mut HashMap<String, grants::Sent>) {
    let quotas: HashMap<String, BTreeMap<String, Amount>> = sent
        .keys()
        .filter_map(|ns| {
            let hard = ctx.stores.children.quotas.get(ns, build::QUOTA_NAME)?.decode()?.spec?.hard?;
            Some((ns.clone(), budget::held(&hard)))
        })
        .collect();
    grants::forget_seen(sent, |ns| quotas.get(ns));
}

/// The workspace's ResourceQuotas as the cache shows them: its projects', and those of namespaces it released.
fn cached_quotas(ctx: &Context, workspace: &str) -> Vec<grants::CachedQuota> {
    let quotas =
        ctx.stores.children.quotas.select(|q| q.name == build::QUOTA_NAME && q.workspace.as_deref() == Some(workspace));
    quotas
        .iter()
        .filter_map(|q| {
            Some(grants::CachedQuota {
                namespace: q.namespace.clone(),
                workspace: q.workspace.clone(),
                controller: q.controller().map(str::to_owned),
                hard: budget::held(&q.decode()?.spec?.hard?),
            })
        })
        .collect()
}

/// The projects of a workspace that wait for budget or a place: what frees some (a quota or namespace going) may
/// let them in, so those events wake them.
pub fn waiting_in(ctx: &Context, workspace: &str) -> Vec<ObjectRef<Project>> {
    let seen = ctx.verdicts_seen.lock();
    seen.iter()
        .filter(|(_, v)| v.waits())
        .filter(|(p, _)| ctx.stores.projects.get(&ObjectRef::new(p)).is_some_and(|p| p.spec.workspace == workspace))
        .map(|(p, _)| ObjectRef::new(p))
        .collect()
}

/// `only`: the project whose verdict is wanted; `None` for all (the workspace's view, with budget allocations).
///
/// Siblings change a verdict only through what they hold or older ones take first: budget, a place under
/// `maxProjects`, a `projectId`. Without a budget no sibling's quota matters, so theirs are not built (at bulk,
/// building them in every project reconcile was most of the operator's CPU); without a budget or `maxProjects` only
/// the siblings with the same `projectId` matter, so the others are not even sorted (sorting all of them in every
/// project reconcile made provisioning quadratic: docs/benchmarks.md).
fn decide_for(
    ctx: &Context,
    workspace: &Workspace,
    only: Option<&str>,
    sent: &HashMap<String, grants::Sent>,
) -> budget::Decisions {
    let name = workspace.name_any();
    let spec = &workspace.spec;
    let s = &ctx.stores;
    let mut projects = match only {
        Some(p) if spec.budget.is_none() && spec.max_projects.is_none() => {
            let Some(me) = s.projects.get(&ObjectRef::new(p)).filter(|me| me.spec.workspace == name) else {
                return budget::Decisions::default();
            };
            match &me.spec.project_id {
                None => vec![me],
                Some(id) => {
                    let mut same_id = s.projects_of(&name);
                    same_id.retain(|s| s.spec.project_id.as_ref() == Some(id));
                    same_id
                }
            }
        }
        _ => s.projects_of(&name),
    };
    // A project being deleted is granted nothing more; what its namespace holds counts among the others below.
    projects.retain(|p| p.meta().deletion_timestamp.is_none());
    let quotas = spec.budget.is_some().then(|| cached_quotas(ctx, &name));
    // The quotas matter for everyone when a budget is shared; otherwise only for the project asked about.
    let quota_matters = |p: &str| spec.budget.is_some() || only.is_none_or(|o| o == p);
    let candidates: Vec<Candidate> = projects
        .iter()
        .map(|p| {
            let pname = p.name_any();
            let uid = p.uid().unwrap_or_default();
            let in_flight = sent.get(&pname).filter(|e| e.project_uid == uid);
            let held = match &quotas {
                Some(quotas) => grants::held_by(&pname, &uid, quotas.iter().find(|q| q.namespace == pname), sent),
                None => Default::default(),
            };
            let admitted = spec.max_projects.is_some()
                && (in_flight.is_some()
                    || s.namespaces.get(&ObjectRef::new(&pname)).is_some_and(|ns| namespace_is_ours(&ns, p)));
            Candidate {
                requested: if quota_matters(&pname) {
                    build::requested_quota(p, workspace)
                } else {
                    Default::default()
                },
                held,
                admitted,
                uid,
                name: pname,
                created: p.meta().creation_timestamp.clone(),
                project_id: p.spec.project_id.clone(),
            }
        })
        .collect();
    let others = match &quotas {
        Some(quotas) => {
            let live: Vec<(&str, &str)> = candidates.iter().map(|c| (c.name.as_str(), c.uid.as_str())).collect();
            grants::others_holding(&name, &live, quotas, sent)
        }
        None => Vec::new(),
    };
    budget::decide(spec.budget.as_ref().map(|b| &b.hard), spec.max_projects, candidates, &others)
}
