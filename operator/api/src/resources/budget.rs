//! Which projects of a workspace may be provisioned, and with what quota: `maxProjects`, unique project IDs and the
//! budget.
//!
//! Grants are decided from what is already held, not from creation order alone. A namespace holds what its
//! ResourceQuota says, or what the operator has sent it and not yet seen come back, whichever is larger (see
//! `controllers::grants`); released and terminating namespaces hold theirs until the quota is gone. A raise is
//! granted only from the budget no namespace holds, so the sum of every quota the operator has written in a
//! workspace never exceeds its budget, whatever order the writes land in. A lowering frees nothing until it is seen
//! in place. Creation order (creation time, then uid: total and stable) decides only who gets budget that is free:
//! an older project waiting for more reserves what it lacks, so a younger one cannot take it first.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::quantity::{self, Amount};
use crate::ResourceList;
use crate::status::conditions::Reason;

/// What the decision needs to know about one project of the workspace.
#[derive(Clone, Debug, Default)]
pub struct Candidate {
    pub name: String,
    pub uid: String,
    pub created: Option<Time>,
    pub project_id: Option<String>,
    /// The quota it asks for (workspace default merged with its own).
    pub requested: ResourceList,
    /// What its namespace holds for it now (see the module doc); empty for a project that holds nothing yet.
    pub held: BTreeMap<String, Amount>,
    /// Whether it holds a place under `maxProjects` already: its namespace is provisioned, or being.
    pub admitted: bool,
}

/// Budget held by a namespace that is not one of the candidates: released by a Retain project, or still
/// terminating after its project was deleted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holder {
    pub namespace: String,
    pub held: BTreeMap<String, Amount>,
}

/// The decision for one project.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Provision it with this quota. `exceeded` explains why the quota is less than asked for.
    Provision { quota: ResourceList, exceeded: Option<String> },
    /// Do not provision it (reason is a condition reason).
    Refuse { reason: Reason, message: String },
}

impl Verdict {
    /// Whether the project waits for budget or a place that others hold: budget or places freed may change it.
    pub fn waits(&self) -> bool {
        matches!(
            self,
            Verdict::Provision { exceeded: Some(_), .. } | Verdict::Refuse { reason: Reason::MaxProjectsExceeded, .. }
        )
    }
}

/// The decisions for every project of a workspace, and the part of the budget they are granted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    pub verdicts: BTreeMap<String, Verdict>,
    /// What the workspace's namespaces hold once these verdicts are in place, over the resources the budget names:
    /// the projects' grants plus what released and terminating namespaces still hold.
    pub allocated: ResourceList,
}

/// Decides for all `candidates` of a workspace with `budget` and `max_projects`; `others` hold budget too.
pub fn decide(
    budget: Option<&ResourceList>,
    max_projects: Option<i32>,
    mut candidates: Vec<Candidate>,
    others: &[Holder],
) -> Decisions {
    candidates.sort_by(|a, b| {
        (a.created.as_ref().map(|t| t.0), &a.uid, &a.name).cmp(&(b.created.as_ref().map(|t| t.0), &b.uid, &b.name))
    });
    let mut verdicts = BTreeMap::new();
    let budget = match budget.map(quantity::amounts).transpose() {
        Ok(b) => b,
        Err(e) => {
            let message = format!("the workspace's spec.budget.hard cannot be used: {e}; correct the workspace");
            for c in &candidates {
                verdicts.insert(
                    c.name.clone(),
                    Verdict::Refuse { reason: Reason::InvalidQuantity, message: message.clone() },
                );
            }
            return Decisions { verdicts, allocated: ResourceList::new() };
        }
    };

    let provisioned = places(max_projects, &candidates, &mut verdicts);
    let Some(budget) = budget else {
        for c in provisioned {
            let verdict = match quantity::amounts(&c.requested) {
                Ok(_) => Verdict::Provision { quota: c.requested.clone(), exceeded: None },
                Err(e) => invalid(&e),
            };
            verdicts.insert(c.name.clone(), verdict);
        }
        return Decisions { verdicts, allocated: ResourceList::new() };
    };

    let mut ledger = Ledger::new(&budget, &candidates, others);
    let mut allocated: BTreeMap<String, Amount> = others.iter().fold(zero(&budget), |mut sum, o| {
        add(&mut sum, &budget, &o.held);
        sum
    });
    for c in provisioned {
        let verdict = match quantity::amounts(&c.requested) {
            Ok(requested) => ledger.grant(c, &requested),
            Err(e) => invalid(&e),
        };
        if let Verdict::Provision { quota, .. } = &verdict {
            // Ours to build: every budgeted key is in it and readable.
            let granted = quantity::amounts(quota).unwrap_or_default();
            add(&mut allocated, &budget, &granted);
        } else {
            add(&mut allocated, &budget, &c.held);
        }
        verdicts.insert(c.name.clone(), verdict);
    }
    Decisions { verdicts, allocated: quantity::to_list(&allocated) }
}

fn invalid(e: &quantity::InvalidQuantity) -> Verdict {
    Verdict::Refuse {
        reason: Reason::InvalidQuantity,
        message: format!(
            "the quota asked for (the project's spec.quota.hard over the workspace's projectDefaults.quota.hard) cannot be used: {e}; correct it"
        ),
    }
}

/// Refuses duplicate project IDs and projects beyond `maxProjects` into `verdicts`; returns the others, oldest first.
/// A project that holds a place keeps it; the places left go to the oldest of those waiting.
fn places<'a>(
    max_projects: Option<i32>,
    candidates: &'a [Candidate],
    verdicts: &mut BTreeMap<String, Verdict>,
) -> Vec<&'a Candidate> {
    let mut ids: BTreeMap<&str, &str> = BTreeMap::new();
    let mut unique = Vec::new();
    for c in candidates {
        if let Some(id) = c.project_id.as_deref() {
            if let Some(owner) = ids.get(id) {
                let message = format!(
                    "projectId {id:?} is already used by project {owner:?} in this workspace; choose another projectId"
                );
                verdicts.insert(c.name.clone(), Verdict::Refuse { reason: Reason::DuplicateProjectId, message });
                continue;
            }
            ids.insert(id, &c.name);
        }
        unique.push(c);
    }
    let Some(max) = max_projects else { return unique };
    let mut free = i64::from(max) - unique.iter().filter(|c| c.admitted).count() as i64;
    unique.retain(|c| {
        if c.admitted {
            return true;
        }
        if free > 0 {
            free -= 1;
            return true;
        }
        let message = format!(
            "the workspace allows at most {max} projects and older or provisioned projects hold every place; raise spec.maxProjects or delete a project"
        );
        verdicts.insert(c.name.clone(), Verdict::Refuse { reason: Reason::MaxProjectsExceeded, message });
        false
    });
    unique
}

fn zero(budget: &BTreeMap<String, Amount>) -> BTreeMap<String, Amount> {
    budget.keys().map(|k| (k.clone(), Amount::ZERO)).collect()
}

/// Adds the budgeted keys of `amounts` to `sum`.
fn add(sum: &mut BTreeMap<String, Amount>, budget: &BTreeMap<String, Amount>, amounts: &BTreeMap<String, Amount>) {
    for k in budget.keys() {
        *sum.entry(k.clone()).or_default() += amounts.get(k).copied().unwrap_or_default();
    }
}

/// The budget as the decision goes through the projects, oldest first.
struct Ledger<'a> {
    budget: &'a BTreeMap<String, Amount>,
    /// Budget no namespace holds; only raises take from it, so it only shrinks.
    free: BTreeMap<String, Amount>,
    /// What older projects waiting for a raise lack, which younger ones may not take.
    reserved: BTreeMap<String, Amount>,
    /// Who holds what, for messages: (holder, resource, amount).
    holders: Vec<(String, String, Amount)>,
    /// Older projects that wait, for messages.
    waiting: Vec<String>,
}

impl<'a> Ledger<'a> {
    fn new(budget: &'a BTreeMap<String, Amount>, candidates: &[Candidate], others: &[Holder]) -> Self {
        let mut free = budget.clone();
        let mut holders = Vec::new();
        let held = candidates
            .iter()
            .map(|c| (c.name.clone(), &c.held))
            .chain(others.iter().map(|o| (format!("released namespace {}", o.namespace), &o.held)));
        for (who, held) in held {
            for (k, left) in free.iter_mut() {
                let amount = held.get(k).copied().unwrap_or_default();
                if amount > Amount::ZERO {
                    *left -= amount;
                    holders.push((who.clone(), k.clone(), amount));
                }
            }
        }
        Ledger { budget, free, reserved: zero(budget), holders, waiting: Vec::new() }
    }

    /// The verdict for `c` asking for `requested`: all of it if the raise fits in what is free and not reserved,
    /// else what it holds (within what it asks for).
    fn grant(&mut self, c: &Candidate, requested: &BTreeMap<String, Amount>) -> Verdict {
        let ask = |k: &str| requested.get(k).copied().unwrap_or_default();
        let held = |k: &str| c.held.get(k).copied().unwrap_or_default();
        let raise = |k: &str| (ask(k) - held(k)).max(Amount::ZERO);
        let short: Vec<&String> = self
            .budget
            .keys()
            .filter(|k| raise(k) > Amount::ZERO && raise(k) > self.free[*k] - self.reserved[*k])
            .collect();
        // Every budgeted resource is limited in the project, or the project could use it without bound.
        let mut quota = requested.clone();
        if short.is_empty() {
            for k in self.budget.keys() {
                *self.free.get_mut(k).expect("free has every budget key") -= raise(k);
                quota.insert(k.clone(), ask(k));
            }
            return Verdict::Provision { quota: quantity::to_list(&quota), exceeded: None };
        }
        let explained: Vec<String> = short.iter().map(|k| self.explain(k, ask(k), held(k))).collect();
        for k in self.budget.keys() {
            quota.insert(k.clone(), held(k).min(ask(k)));
        }
        // A project that could never fit, even with the whole budget, reserves nothing: it must not block the others.
        if self.budget.iter().all(|(k, b)| ask(k) <= *b) {
            for k in self.budget.keys() {
                *self.reserved.get_mut(k).expect("reserved has every budget key") += raise(k);
            }
            self.waiting.push(c.name.clone());
        }
        Verdict::Provision {
            quota: quantity::to_list(&quota),
            exceeded: Some(format!(
                "the quota asked for does not fit in the workspace budget ({}); the project keeps what it holds until \
                 enough is free; raise the workspace budget, lower this project's quota or another project's",
                explained.join("; ")
            )),
        }
    }

    /// `requests.cpu: asks 10, holds 2, 0 of the budget of 10 is free (held by new 8, old 2)`.
    fn explain(&self, k: &str, ask: Amount, held: Amount) -> String {
        let f = |a: Amount| quantity::format_for(k, a);
        let budget = self.budget[k];
        if ask > budget {
            return format!("{k}: asks {}, more than the whole budget of {}", f(ask), f(budget));
        }
        let mut by: Vec<&(String, String, Amount)> = self.holders.iter().filter(|(_, r, _)| r == k).collect();
        by.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        let shown: Vec<String> = by.iter().take(3).map(|(who, _, a)| format!("{who} {}", f(*a))).collect();
        let more = if by.len() > 3 { format!(" and {} more", by.len() - 3) } else { String::new() };
        let mut s = format!(
            "{k}: asks {}, holds {}, {} of the budget of {} is free (held by {}{more})",
            f(ask),
            f(held),
            f(self.free[k].max(Amount::ZERO)),
            f(budget),
            shown.join(", ")
        );
        if self.reserved[k] > Amount::ZERO {
            s.push_str(&format!(
                "; older projects waiting come first ({} for {})",
                self.waiting.join(", "),
                f(self.reserved[k])
            ));
        }
        s
    }
}

/// A quota as amounts, for a candidate's `held`: an unreadable quantity counts as the most it could be, so that
/// nothing is granted on the assumption that it holds nothing.
pub fn held(hard: &ResourceList) -> BTreeMap<String, Amount> {
    let most = quantity::parse(quantity::MAX).unwrap_or_default();
    hard.iter().map(|(k, v)| (k.clone(), quantity::parse(&v.0).unwrap_or(most))).collect()
}

/// The larger of two holdings, key by key.
pub fn larger(a: &BTreeMap<String, Amount>, b: &BTreeMap<String, Amount>) -> BTreeMap<String, Amount> {
    let mut out = a.clone();
    for (k, v) in b {
        let e = out.entry(k.clone()).or_default();
        *e = (*e).max(*v);
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
    }

    fn amounts(pairs: &[(&str, &str)]) -> BTreeMap<String, Amount> {
        quantity::amounts(&list(pairs)).unwrap()
    }

    fn candidate(name: &str, age: i64, cpu: &str) -> Candidate {
        Candidate {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            created: Some(Time(Timestamp::from_second(1_700_000_000 + age).unwrap())),
            project_id: None,
            requested: list(&[("requests.cpu", cpu), ("pods", "10")]),
            held: BTreeMap::new(),
            admitted: false,
        }
    }

    fn holding(mut c: Candidate, cpu: &str) -> Candidate {
        c.held = amounts(&[("requests.cpu", cpu)]);
        c.admitted = true;
        c
    }

    fn quota_cpu(v: &Verdict) -> String {
        match v {
            Verdict::Provision { quota, .. } => quota["requests.cpu"].0.clone(),
            v => panic!("{v:?}"),
        }
    }

    /// The project reconciler relies on this: without a budget, a project's verdict does not depend on any other
    /// project's quota (so it need not build them), only on their ages, places and projectIds.
    #[test]
    fn without_a_budget_no_other_quota_changes_a_verdict() {
        let mut all =
            vec![candidate("a", 1, "4"), candidate("b", 2, "100"), candidate("c", 3, "7"), candidate("d", 4, "1")];
        all[1].project_id = Some("same".into());
        all[3].project_id = Some("same".into());
        for max in [None, Some(2), Some(3)] {
            let full = decide(None, max, all.clone(), &[]);
            for keep in ["a", "b", "c", "d"] {
                let light: Vec<Candidate> = all
                    .iter()
                    .cloned()
                    .map(|mut c| {
                        if c.name != keep {
                            c.requested = ResourceList::new();
                            c.held = amounts(&[("requests.cpu", "999")]);
                        }
                        c
                    })
                    .collect();
                assert_eq!(decide(None, max, light, &[]).verdicts[keep], full.verdicts[keep], "{keep}, {max:?}");
            }
        }
    }

    #[test]
    fn fresh_projects_get_the_budget_oldest_first() {
        let budget = list(&[("requests.cpu", "8")]);
        // given in reverse order: the decision must not depend on it
        let d = decide(
            Some(&budget),
            None,
            vec![candidate("c", 3, "4"), candidate("b", 2, "4"), candidate("a", 1, "4")],
            &[],
        );
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
        assert!(why.contains("requests.cpu: asks 4, holds 0, 0 of the budget of 8 is free"), "{why}");
        assert_eq!(d.allocated, list(&[("requests.cpu", "8")]));
    }

    #[test]
    fn a_tie_in_creation_time_is_broken_by_uid_not_by_name() {
        let budget = list(&[("requests.cpu", "10")]);
        let mut zz = candidate("zz", 1, "10");
        zz.uid = "1".into();
        let mut aa = candidate("aa", 1, "10");
        aa.uid = "2".into();
        let d = decide(Some(&budget), None, vec![aa.clone(), zz.clone()], &[]);
        assert_eq!((quota_cpu(&d.verdicts["zz"]), quota_cpu(&d.verdicts["aa"])), ("10".into(), "0".into()));
    }

    #[test]
    fn a_raise_takes_only_what_no_one_holds() {
        // The reproduction: budget 10, old holds 2, new holds 8, old asks 10.
        let budget = list(&[("requests.cpu", "10")]);
        let old = holding(candidate("old", 1, "10"), "2");
        let new = holding(candidate("new", 2, "8"), "8");
        let d = decide(Some(&budget), None, vec![old, new], &[]);
        assert_eq!(quota_cpu(&d.verdicts["old"]), "2", "old keeps what it holds");
        assert_eq!(quota_cpu(&d.verdicts["new"]), "8", "new keeps its grant: never taken back");
        let Verdict::Provision { exceeded: Some(why), .. } = &d.verdicts["old"] else { panic!() };
        assert!(
            why.contains("requests.cpu: asks 10, holds 2, 0 of the budget of 10 is free (held by new 8, old 2)"),
            "{why}"
        );
        assert_eq!(d.allocated, list(&[("requests.cpu", "10")]));
    }

    #[test]
    fn a_lowering_frees_nothing_until_it_is_in_place() {
        let budget = list(&[("requests.cpu", "10")]);
        let a = holding(candidate("a", 1, "2"), "8");
        let b = candidate("b", 2, "8");
        let d = decide(Some(&budget), None, vec![a.clone(), b.clone()], &[]);
        assert_eq!(quota_cpu(&d.verdicts["a"]), "2");
        assert_eq!(quota_cpu(&d.verdicts["b"]), "0", "a's lowering is not in place yet");
        // Once the lowering is seen, b fits.
        let d = decide(Some(&budget), None, vec![holding(a, "2"), b], &[]);
        assert_eq!(quota_cpu(&d.verdicts["b"]), "8");
    }

    #[test]
    fn an_older_waiting_project_gets_freed_budget_before_a_younger_one() {
        let budget = list(&[("requests.cpu", "10")]);
        let a = holding(candidate("a", 1, "6"), "4");
        let b = candidate("b", 2, "2");
        let other = holding(candidate("x", 0, "4"), "4");
        // 2 free: a needs 2 more and is older, so b waits.
        let d = decide(Some(&budget), None, vec![a.clone(), b.clone(), other], &[]);
        assert_eq!(quota_cpu(&d.verdicts["a"]), "6");
        assert_eq!(quota_cpu(&d.verdicts["b"]), "0");
        // 1 free: a cannot fit and reserves its 2, so b cannot take the 1.
        let other = holding(candidate("x", 0, "5"), "5");
        let d = decide(Some(&budget), None, vec![a, b, other], &[]);
        assert_eq!(quota_cpu(&d.verdicts["a"]), "4");
        let Verdict::Provision { exceeded: Some(why), .. } = &d.verdicts["b"] else { panic!() };
        assert!(why.contains("older projects waiting come first (a for 2)"), "{why}");
    }

    #[test]
    fn a_project_that_could_never_fit_blocks_no_one() {
        let budget = list(&[("requests.cpu", "10")]);
        let d = decide(Some(&budget), None, vec![candidate("greedy", 1, "11"), candidate("b", 2, "3")], &[]);
        let Verdict::Provision { exceeded: Some(why), .. } = &d.verdicts["greedy"] else { panic!() };
        assert!(why.contains("asks 11, more than the whole budget of 10"), "{why}");
        assert_eq!(quota_cpu(&d.verdicts["b"]), "3");
    }

    #[test]
    fn released_namespaces_hold_their_budget() {
        let budget = list(&[("requests.cpu", "10")]);
        let released = [Holder { namespace: "gone".into(), held: amounts(&[("requests.cpu", "7")]) }];
        let d = decide(Some(&budget), None, vec![candidate("a", 1, "4")], &released);
        let Verdict::Provision { exceeded: Some(why), .. } = &d.verdicts["a"] else { panic!() };
        assert!(why.contains("held by released namespace gone 7"), "{why}");
        assert_eq!(d.allocated, list(&[("requests.cpu", "7")]));
    }

    #[test]
    fn budgeted_resources_a_project_omits_are_zero() {
        let budget = list(&[("requests.cpu", "8"), ("requests.nvidia.com/gpu", "2")]);
        let d = decide(Some(&budget), None, vec![candidate("a", 1, "1")], &[]);
        let Verdict::Provision { quota, exceeded: None } = &d.verdicts["a"] else { panic!() };
        assert_eq!(quota["requests.nvidia.com/gpu"], Quantity("0".into()));
    }

    #[test]
    fn unreadable_quantities_refuse_and_never_count_as_zero() {
        let budget = list(&[("requests.cpu", "10")]);
        let mut huge = candidate("huge", 1, "1e40");
        huge.requested.insert("requests.nvidia.com/gpu".into(), Quantity("100".into()));
        let d = decide(Some(&budget), None, vec![huge.clone(), candidate("b", 2, "4")], &[]);
        let Verdict::Refuse { reason: Reason::InvalidQuantity, message } = &d.verdicts["huge"] else { panic!() };
        assert!(message.contains("requests.cpu: \"1e40\" is out of range"), "{message}");
        assert_eq!(quota_cpu(&d.verdicts["b"]), "4");
        // Without a budget too: nothing unreadable reaches a ResourceQuota.
        assert!(matches!(decide(None, None, vec![huge], &[]).verdicts["huge"], Verdict::Refuse { .. }));
        let bad = list(&[("requests.cpu", "lots")]);
        let d = decide(Some(&bad), None, vec![candidate("a", 1, "1")], &[]);
        assert!(
            matches!(&d.verdicts["a"], Verdict::Refuse { reason: Reason::InvalidQuantity, message } if message.contains("spec.budget.hard"))
        );
        assert_eq!(held(&list(&[("requests.cpu", "lots")]))["requests.cpu"], quantity::parse("1E").unwrap());
    }

    #[test]
    fn duplicate_ids_and_max_projects_refuse_the_newer() {
        let mut a = candidate("a", 1, "1");
        a.project_id = Some("same".into());
        let mut b = candidate("b", 2, "1");
        b.project_id = Some("same".into());
        let d = decide(None, Some(2), vec![b, a, candidate("c", 3, "1"), candidate("d", 4, "1")], &[]);
        assert!(matches!(d.verdicts["a"], Verdict::Provision { .. }));
        assert!(matches!(d.verdicts["b"], Verdict::Refuse { reason: Reason::DuplicateProjectId, .. }));
        assert!(matches!(d.verdicts["c"], Verdict::Provision { .. }), "a refused duplicate does not count");
        assert!(matches!(d.verdicts["d"], Verdict::Refuse { reason: Reason::MaxProjectsExceeded, .. }));
    }

    #[test]
    fn a_provisioned_project_keeps_its_place_under_max_projects() {
        // d was provisioned before an older project's creation reached the operator: it keeps its place.
        let mut d_ = candidate("d", 4, "1");
        d_.admitted = true;
        let d = decide(None, Some(1), vec![candidate("a", 1, "1"), d_], &[]);
        assert!(matches!(d.verdicts["d"], Verdict::Provision { .. }));
        assert!(d.verdicts["a"].waits());
    }

    #[test]
    fn without_budget_everything_requested_is_granted() {
        let d = decide(None, None, vec![candidate("a", 1, "100")], &[]);
        assert_eq!(
            d.verdicts["a"],
            Verdict::Provision { quota: list(&[("requests.cpu", "100"), ("pods", "10")]), exceeded: None }
        );
        assert!(d.allocated.is_empty());
    }
}
