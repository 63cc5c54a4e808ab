//! Which projects of a workspace may be provisioned, and with what quota: `maxProjects`, unique project IDs and the
//! budget, decided oldest project first so an older project never loses to a newer one.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::quantity::{self, Milli};
use crate::api::ResourceList;

/// What the decision needs to know about one project of the workspace.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: String,
    pub created: Option<Time>,
    pub project_id: Option<String>,
    /// The quota it asks for (workspace default merged with its own).
    pub requested: ResourceList,
    /// The quota its ResourceQuota holds now, if it has one: what it was granted before.
    pub granted: Option<ResourceList>,
}

/// The decision for one project.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Provision it with this quota. `exceeded` explains why the quota is less than asked for.
    Provision { quota: ResourceList, exceeded: Option<String> },
    /// Do not provision it (reason is a condition reason).
    Refuse { reason: &'static str, message: String },
}

/// The decisions for every project of a workspace, and the part of the budget they are granted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    pub verdicts: BTreeMap<String, Verdict>,
    /// Sum of granted quota over the resources the budget names.
    pub allocated: ResourceList,
}

pub const DUPLICATE_PROJECT_ID: &str = "DuplicateProjectId";
pub const MAX_PROJECTS_EXCEEDED: &str = "MaxProjectsExceeded";

/// Decides for all `candidates` of a workspace with `budget` and `max_projects`.
pub fn decide(budget: Option<&ResourceList>, max_projects: Option<i32>, mut candidates: Vec<Candidate>) -> Decisions {
    // Oldest first; the name breaks ties so the order never depends on cache order.
    candidates.sort_by(|a, b| {
        a.created.as_ref().map(|t| t.0).cmp(&b.created.as_ref().map(|t| t.0)).then(a.name.cmp(&b.name))
    });
    let budget = budget.map(quantity::to_milli);
    let mut remaining = budget.clone();
    let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
    let mut admitted = 0i64;
    let mut verdicts = BTreeMap::new();
    let mut allocated: BTreeMap<String, Milli> = budget.iter().flatten().map(|(k, _)| (k.clone(), Milli(0))).collect();

    for c in &candidates {
        if let Some(id) = c.project_id.as_deref() {
            if let Some(owner) = ids.get(id) {
                let message = format!(
                    "projectId {id:?} is already used by project {owner:?} in this workspace; choose another projectId"
                );
                verdicts.insert(c.name.clone(), Verdict::Refuse { reason: DUPLICATE_PROJECT_ID, message });
                continue;
            }
            ids.insert(id, &c.name);
        }
        if let Some(max) = max_projects
            && admitted >= i64::from(max)
        {
            let message = format!(
                "the workspace allows at most {max} projects and older projects use them all; raise spec.maxProjects or delete a project"
            );
            verdicts.insert(c.name.clone(), Verdict::Refuse { reason: MAX_PROJECTS_EXCEEDED, message });
            continue;
        }
        admitted += 1;

        let Some(remaining) = remaining.as_mut() else {
            verdicts.insert(c.name.clone(), Verdict::Provision { quota: c.requested.clone(), exceeded: None });
            continue;
        };
        // Every budgeted resource must be limited in the project, or the project could use it without bound.
        let requested = quantity::to_milli(&c.requested);
        let ask: BTreeMap<String, Milli> =
            remaining.keys().map(|k| (k.clone(), requested.get(k).copied().unwrap_or_default())).collect();
        let short: Vec<String> = ask
            .iter()
            .filter(|(k, v)| **v > remaining[*k])
            .map(|(k, v)| {
                format!(
                    "{k}: asks {}, {} of the budget left",
                    quantity::format(*v),
                    quantity::format(remaining[k.as_str()])
                )
            })
            .collect();
        let mut quota = c.requested.clone();
        let exceeded = if short.is_empty() {
            for (k, v) in &ask {
                remaining.get_mut(k).expect("ask has only budget keys").0 -= v.0;
                allocated.get_mut(k).expect("allocated has every budget key").0 += v.0;
            }
            None
        } else {
            // Keep what it was granted before (nothing, for a new project), within what it asks for: never grant
            // beyond the budget, never take back silently.
            let before = c.granted.as_ref().map(quantity::to_milli).unwrap_or_default();
            for (k, v) in &ask {
                let keep = before.get(k).copied().unwrap_or_default().min(*v).max(Milli(0));
                quota
                    .insert(k.clone(), k8s_openapi::apimachinery::pkg::api::resource::Quantity(quantity::format(keep)));
                let left = remaining.get_mut(k).expect("ask has only budget keys");
                left.0 = (left.0 - keep.0).max(0);
                allocated.get_mut(k).expect("allocated has every budget key").0 += keep.0;
            }
            Some(format!(
                "the quota asked for does not fit in the workspace budget ({}); it keeps what it was granted before; raise the workspace budget or lower the project's quota",
                short.join("; ")
            ))
        };
        // Budgeted resources a project does not ask for are limited to what it is granted: zero.
        for (k, v) in &ask {
            quota
                .entry(k.clone())
                .or_insert_with(|| k8s_openapi::apimachinery::pkg::api::resource::Quantity(quantity::format(*v)));
        }
        verdicts.insert(c.name.clone(), Verdict::Provision { quota, exceeded });
    }
    Decisions { verdicts, allocated: quantity::to_list(&allocated) }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
    }

    fn candidate(name: &str, age: i64, cpu: &str) -> Candidate {
        Candidate {
            name: name.to_owned(),
            created: Some(Time(Timestamp::from_second(1_700_000_000 + age).unwrap())),
            project_id: None,
            requested: list(&[("requests.cpu", cpu), ("pods", "10")]),
            granted: None,
        }
    }

    /// The project reconciler relies on this: without a budget, a project's verdict does not depend on any other
    /// project's quota (so it need not build them), only on their ages and projectIds.
    #[test]
    fn without_a_budget_no_other_quota_changes_a_verdict() {
        let mut all =
            vec![candidate("a", 1, "4"), candidate("b", 2, "100"), candidate("c", 3, "7"), candidate("d", 4, "1")];
        all[1].project_id = Some("same".into());
        all[3].project_id = Some("same".into());
        for max in [None, Some(2), Some(3)] {
            let full = decide(None, max, all.clone());
            for keep in ["a", "b", "c", "d"] {
                let light: Vec<Candidate> = all
                    .iter()
                    .cloned()
                    .map(|mut c| {
                        if c.name != keep {
                            c.requested = ResourceList::new();
                            c.granted = Some(list(&[("requests.cpu", "999")]));
                        }
                        c
                    })
                    .collect();
                assert_eq!(decide(None, max, light).verdicts[keep], full.verdicts[keep], "{keep}, maxProjects {max:?}");
            }
        }
    }

    #[test]
    fn oldest_projects_get_the_budget_first() {
        let budget = list(&[("requests.cpu", "8")]);
        // given in reverse order: the decision must not depend on it
        let d =
            decide(Some(&budget), None, vec![candidate("c", 3, "4"), candidate("b", 2, "4"), candidate("a", 1, "4")]);
        assert_eq!(
            d.verdicts["a"],
            Verdict::Provision { quota: list(&[("requests.cpu", "4"), ("pods", "10")]), exceeded: None }
        );
        assert!(matches!(&d.verdicts["b"], Verdict::Provision { exceeded: None, .. }));
        let Verdict::Provision { quota, exceeded: Some(why) } = &d.verdicts["c"] else {
            panic!("{:?}", d.verdicts["c"])
        };
        assert_eq!(quota["requests.cpu"], Quantity("0".into()), "a new project that does not fit gets zero");
        assert_eq!(quota["pods"], Quantity("10".into()), "resources outside the budget are granted as asked");
        assert!(why.contains("requests.cpu: asks 4, 0 of the budget left"), "{why}");
        assert_eq!(d.allocated, list(&[("requests.cpu", "8")]));
    }

    #[test]
    fn a_project_that_no_longer_fits_keeps_what_it_had() {
        let budget = list(&[("requests.cpu", "6")]);
        let mut b = candidate("b", 2, "4");
        b.granted = Some(list(&[("requests.cpu", "2")]));
        let d = decide(Some(&budget), None, vec![candidate("a", 1, "3"), b]);
        let Verdict::Provision { quota, exceeded: Some(_) } = &d.verdicts["b"] else { panic!() };
        assert_eq!(quota["requests.cpu"], Quantity("2".into()));
        assert_eq!(d.allocated, list(&[("requests.cpu", "5")]));
    }

    #[test]
    fn budgeted_resources_a_project_omits_are_zero() {
        let budget = list(&[("requests.cpu", "8"), ("requests.nvidia.com/gpu", "2")]);
        let d = decide(Some(&budget), None, vec![candidate("a", 1, "1")]);
        let Verdict::Provision { quota, exceeded: None } = &d.verdicts["a"] else { panic!() };
        assert_eq!(quota["requests.nvidia.com/gpu"], Quantity("0".into()));
    }

    #[test]
    fn duplicate_ids_and_max_projects_refuse_the_newer() {
        let mut a = candidate("a", 1, "1");
        a.project_id = Some("same".into());
        let mut b = candidate("b", 2, "1");
        b.project_id = Some("same".into());
        let d = decide(None, Some(2), vec![b, a, candidate("c", 3, "1"), candidate("d", 4, "1")]);
        assert!(matches!(d.verdicts["a"], Verdict::Provision { .. }));
        assert!(matches!(d.verdicts["b"], Verdict::Refuse { reason: DUPLICATE_PROJECT_ID, .. }));
        assert!(matches!(d.verdicts["c"], Verdict::Provision { .. }), "a refused duplicate does not count");
        assert!(matches!(d.verdicts["d"], Verdict::Refuse { reason: MAX_PROJECTS_EXCEEDED, .. }));
    }

    #[test]
    fn without_budget_everything_requested_is_granted() {
        let d = decide(None, None, vec![candidate("a", 1, "100")]);
        assert_eq!(
            d.verdicts["a"],
            Verdict::Provision { quota: list(&[("requests.cpu", "100"), ("pods", "10")]), exceeded: None }
        );
        assert!(d.allocated.is_empty());
    }
}
