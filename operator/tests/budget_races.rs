//! The budget contract under races, as a property: random sequences of creates, raises, lowerings, deletions (Delete
//! and Retain), budget and `maxProjects` changes, with writes that land late or fail and a cache that lags behind
//! them. Each reconcile decides the way the project reconciler does (the same pure functions: `grants` and
//! `budget::decide`) from what its cache shows. After every step, the quotas on the "API server" never sum beyond
//! the budget; once everything settles, every project that fits is granted what it asks for.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use zenml_api::ResourceList;
use zenml_api::resources::budget::{self, Candidate, Verdict};
use zenml_api::resources::quantity::Amount;
use zenml_operator::write::grants::{self, CachedQuota, Sent};

const WS: &str = "w";
const KEYS: [&str; 2] = ["requests.cpu", "requests.nvidia.com/gpu"];
const NAMES: usize = 6;

fn units(n: u8) -> Amount {
    Amount(i128::from(n) * 1_000_000_000)
}

fn list(amounts: &BTreeMap<String, Amount>) -> ResourceList {
    amounts.iter().map(|(k, v)| (k.clone(), Quantity(zenml_api::resources::quantity::format_for(k, *v)))).collect()
}

#[derive(Clone, Debug)]
enum Op {
    Create { p: usize, ask: [u8; 2] },
    Ask { p: usize, ask: [u8; 2] },
    Delete { p: usize, retain: bool },
    NamespaceGone { p: usize },
    Budget { budget: [u8; 2] },
    MaxProjects { max: Option<u8> },
    Reconcile { p: usize },
    Land { p: usize },
    Fail { p: usize },
    Deliver { p: usize },
}

fn op() -> impl Strategy<Value = Op> {
    let p = 0..NAMES;
    let ask = [0u8..7, 0u8..3];
    prop_oneof![
        3 => (p.clone(), ask.clone()).prop_map(|(p, ask)| Op::Create { p, ask }),
        2 => (p.clone(), ask).prop_map(|(p, ask)| Op::Ask { p, ask }),
        1 => (p.clone(), any::<bool>()).prop_map(|(p, retain)| Op::Delete { p, retain }),
        1 => p.clone().prop_map(|p| Op::NamespaceGone { p }),
        1 => [0u8..14, 0u8..5].prop_map(|budget| Op::Budget { budget }),
        1 => prop::option::of(0u8..5).prop_map(|max| Op::MaxProjects { max }),
        8 => p.clone().prop_map(|p| Op::Reconcile { p }),
        4 => p.clone().prop_map(|p| Op::Land { p }),
        1 => p.clone().prop_map(|p| Op::Fail { p }),
        4 => p.prop_map(|p| Op::Deliver { p }),
    ]
}

#[derive(Clone, Debug)]
struct Project {
    uid: String,
    created: i64,
    ask: BTreeMap<String, Amount>,
    /// Deleted with Delete: its namespace terminates, its quota holds until it is gone.
    deleting: bool,
}

/// One workspace: its projects, the API server's quotas and namespaces, the operator's lagging cache of them, the
/// writes a reconcile has decided and not yet landed, and the operator's record of grants in flight.
#[derive(Default)]
struct Sim {
    budget: BTreeMap<String, Amount>,
    max: Option<i32>,
    projects: BTreeMap<String, Project>,
    truth: BTreeMap<String, CachedQuota>,
    namespaces: BTreeSet<String>,
    cache: BTreeMap<String, CachedQuota>,
    cached_namespaces: BTreeSet<String>,
    /// Namespaces deleted since the watch last delivered them: the watch delivers every event in order, so their
    /// deletion reaches the cache even if their creation never did.
    deleted: BTreeSet<String>,
    writes: BTreeMap<String, Vec<CachedQuota>>,
    sent: HashMap<String, Sent>,
    clock: i64,
    uids: u32,
    /// The most the quotas may sum to: the budget, or what they summed to when the budget was lowered below it
    /// (never taken back, so only shrinking from there).
    cap: BTreeMap<String, Amount>,
    /// The same for provisioned namespaces under maxProjects.
    place_cap: Option<usize>,
}

fn name(p: usize) -> String {
    format!("p{p}")
}

impl Sim {
    fn sum(&self) -> BTreeMap<String, Amount> {
        let mut sum: BTreeMap<String, Amount> = KEYS.iter().map(|k| (k.to_string(), Amount::ZERO)).collect();
        for q in self.truth.values().filter(|q| q.workspace.as_deref() == Some(WS)) {
            for (k, v) in &q.hard {
                if let Some(s) = sum.get_mut(k) {
                    *s += *v;
                }
            }
        }
        sum
    }

    /// What the quotas may sum to once the writes in flight land: a grant decided before a change of the budget or
    /// of `maxProjects` is not taken back by it.
    fn potential(&self) -> (BTreeMap<String, Amount>, usize) {
        let mut held: BTreeMap<&String, BTreeMap<String, Amount>> = BTreeMap::new();
        for q in self.truth.values().chain(self.writes.values().flatten()) {
            let e = held.entry(&q.namespace).or_default();
            *e = budget::larger(e, &q.hard);
        }
        // A write that failed was decided all the same: the operator counts it as possibly in place, and retries it.
        for (ns, e) in &self.sent {
            let h = held.entry(ns).or_default();
            *h = budget::larger(h, &e.held);
        }
        let mut sum: BTreeMap<String, Amount> = KEYS.iter().map(|k| (k.to_string(), Amount::ZERO)).collect();
        for h in held.values() {
            for k in KEYS {
                *sum.get_mut(k).unwrap() += h.get(k).copied().unwrap_or_default();
            }
        }
        (sum, held.len())
    }

    fn set_budget(&mut self, budget: [u8; 2]) {
        let (sum, _) = self.potential();
        self.budget = KEYS.iter().zip(budget).map(|(k, v)| (k.to_string(), units(v))).collect();
        self.cap = KEYS.iter().map(|k| (k.to_string(), self.budget[*k].max(sum[*k]))).collect();
    }

    fn set_max(&mut self, max: Option<u8>) {
        self.max = max.map(i32::from);
        self.place_cap = max.map(|m| usize::from(m).max(self.potential().1));
    }

    /// The project reconciler's decision for `p`, from the cache, under the grants lock; records and queues its write.
    fn reconcile(&mut self, p: &str) {
        // A reconcile of p follows the end of p's previous one: its writes have landed or failed by now.
        self.land_all(p);
        let Some(me) = self.projects.get(p).filter(|x| !x.deleting).cloned() else { return };
        let cache = &self.cache;
        grants::forget_seen(&mut self.sent, |ns| cache.get(ns).map(|q| &q.hard));
        let quotas: Vec<CachedQuota> = self.cache.values().cloned().collect();
        let live: Vec<(&String, &Project)> = self.projects.iter().filter(|(_, x)| !x.deleting).collect();
        let candidates: Vec<Candidate> = live
            .iter()
            .map(|(n, x)| Candidate {
                name: n.to_string(),
                uid: x.uid.clone(),
                created: Some(Time(Timestamp::from_second(1_700_000_000 + x.created).unwrap())),
                project_id: None,
                requested: list(&x.ask),
                held: grants::held_by(n, &x.uid, self.cache.get(*n), &self.sent),
                admitted: self.sent.get(*n).is_some_and(|e| e.project_uid == x.uid)
                    || self.cache.get(*n).is_some_and(|q| q.controller.as_deref() == Some(&x.uid)),
            })
            .collect();
        let pairs: Vec<(&str, &str)> = live.iter().map(|(n, x)| (n.as_str(), x.uid.as_str())).collect();
        let others = grants::others_holding(WS, &pairs, &quotas, &self.sent);
        let budget = list(&self.budget);
        let mut d = budget::decide(Some(&budget), self.max, candidates, &others);
        let Some(Verdict::Provision { quota, .. }) = d.verdicts.remove(p) else { return };
        let mut granted = budget::held(&quota);
        granted.retain(|k, _| self.budget.contains_key(k));
        grants::record(&mut self.sent, p, WS, &me.uid, granted.clone());
        let write = CachedQuota {
            namespace: p.to_owned(),
            workspace: Some(WS.into()),
            controller: Some(me.uid.clone()),
            hard: granted,
        };
        self.writes.entry(p.to_owned()).or_default().push(write);
    }

    fn land_one(&mut self, p: &str) {
        let Some(w) = self.writes.get_mut(p).filter(|w| !w.is_empty()).map(|w| w.remove(0)) else { return };
        self.namespaces.insert(w.namespace.clone());
        self.truth.insert(w.namespace.clone(), w);
    }

    fn land_all(&mut self, p: &str) {
        while self.writes.get(p).is_some_and(|w| !w.is_empty()) {
            self.land_one(p);
        }
    }

    fn deliver(&mut self, ns: &str) {
        if self.deleted.remove(ns) {
            // The watch delivers the namespace's deletion: what was granted there is gone with it.
            self.sent.remove(ns);
        }
        match self.truth.get(ns) {
            Some(q) => self.cache.insert(ns.to_owned(), q.clone()),
            None => self.cache.remove(ns),
        };
        if self.namespaces.contains(ns) {
            self.cached_namespaces.insert(ns.to_owned());
        } else {
            self.cached_namespaces.remove(ns);
        }
    }

    fn apply(&mut self, op: &Op) {
        self.clock += 1;
        match *op {
            Op::Create { p, ask } => {
                let n = name(p);
                // A Delete project's name stays taken until its namespace is gone, as its finalizer keeps it.
                if !self.projects.contains_key(&n) {
                    self.uids += 1;
                    let ask = KEYS.iter().zip(ask).map(|(k, v)| (k.to_string(), units(v))).collect();
                    // Half the clock: creations within the same second tie, and the uid decides.
                    let project =
                        Project { uid: format!("u{}", self.uids), created: self.clock / 2, ask, deleting: false };
                    self.projects.insert(n, project);
                }
            }
            Op::Ask { p, ask } => {
                if let Some(x) = self.projects.get_mut(&name(p)) {
                    x.ask = KEYS.iter().zip(ask).map(|(k, v)| (k.to_string(), units(v))).collect();
                }
            }
            Op::Delete { p, retain } => {
                let n = name(p);
                self.land_all(&n);
                let Some(x) = self.projects.get_mut(&n).filter(|x| !x.deleting) else { return };
                if retain {
                    // Released: the quota stays in force, no longer the project's, still the workspace's. A grant
                    // whose namespace never came to be (its write failed) is forgotten once the API server says so.
                    match self.truth.get_mut(&n) {
                        Some(q) => q.controller = None,
                        None if !self.namespaces.contains(&n)
                            && self.sent.get(&n).is_some_and(|e| e.project_uid == x.uid) =>
                        {
                            self.sent.remove(&n);
                        }
                        None => {}
                    }
                    self.projects.remove(&n);
                } else {
                    x.deleting = true;
                }
            }
            Op::NamespaceGone { p } => {
                let n = name(p);
                if self.projects.get(&n).is_some_and(|x| x.deleting) || !self.projects.contains_key(&n) {
                    self.truth.remove(&n);
                    if self.namespaces.remove(&n) {
                        self.deleted.insert(n.clone());
                    }
                    if let Some(x) = self.projects.get(&n).filter(|x| x.deleting) {
                        // The cleanup finishes once the API server says the namespace is gone, and forgets its grant.
                        if self.sent.get(&n).is_some_and(|e| e.project_uid == x.uid) {
                            self.sent.remove(&n);
                        }
                        self.projects.remove(&n);
                    }
                }
            }
            Op::Budget { budget } => self.set_budget(budget),
            Op::MaxProjects { max } => self.set_max(max),
            Op::Reconcile { p } => self.reconcile(&name(p)),
            Op::Land { p } => self.land_one(&name(p)),
            Op::Fail { p } => {
                if let Some(w) = self.writes.get_mut(&name(p)) {
                    w.clear();
                }
            }
            Op::Deliver { p } => self.deliver(&name(p)),
        }
    }

    fn check(&mut self, step: usize) -> Result<(), TestCaseError> {
        let sum = self.sum();
        let (potential, places) = self.potential();
        for k in KEYS {
            prop_assert!(sum[k] <= self.cap[k], "step {step}: {k} sums to {:?}, beyond {:?}", sum[k], self.cap[k]);
            // Once the quotas shrink (with what is in flight), the cap follows them down to the budget: what was
            // freed is not granted again beyond it.
            let c = self.cap.get_mut(k).unwrap();
            *c = self.budget[k].max(potential[k].min(*c));
        }
        if let Some(cap) = self.place_cap {
            // Provisioned and not being deleted: a deleted project gives its place up at once.
            let live_namespaces = self
                .truth
                .iter()
                .filter(|(n, q)| {
                    self.projects.get(*n).is_some_and(|x| !x.deleting && q.controller.as_ref() == Some(&x.uid))
                })
                .count();
            prop_assert!(live_namespaces <= cap, "step {step}: {live_namespaces} provisioned projects, beyond {cap}");
            let max = self.max.map_or(usize::MAX, |m| m.max(0) as usize);
            self.place_cap = Some(max.max(cap.min(places)));
        }
        Ok(())
    }

    /// Everything lands, the cache catches up, and every project is reconciled until nothing changes.
    fn settle(&mut self) {
        let names: Vec<String> = (0..NAMES).map(name).collect();
        for n in &names {
            if self.projects.get(n).is_some_and(|x| x.deleting) {
                self.apply(&Op::NamespaceGone { p: n[1..].parse().unwrap() });
            }
        }
        for _ in 0..4 {
            for n in &names {
                self.land_all(n);
                self.deliver(n);
            }
            for n in &names {
                self.reconcile(n);
            }
        }
        for n in &names {
            self.land_all(n);
            self.deliver(n);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn quotas_never_sum_beyond_the_budget_and_every_project_that_fits_gets_its_ask(
        budget in [0u8..14, 0u8..5],
        max in prop::option::of(0u8..5),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut sim = Sim::default();
        sim.set_budget(budget);
        sim.set_max(max);
        for (step, op) in ops.iter().enumerate() {
            sim.apply(op);
            sim.check(step)?;
        }
        sim.settle();
        sim.check(ops.len())?;
        // Liveness: when every live project's ask and every released namespace's quota fit in the budget together,
        // and there are places for all, each project holds exactly what it asks for.
        let released: BTreeMap<String, Amount> = sim.truth.values()
            .filter(|q| q.controller.is_none())
            .fold(BTreeMap::new(), |mut s, q| { for (k, v) in &q.hard { *s.entry(k.clone()).or_default() += *v; } s });
        let fits = KEYS.iter().all(|k| {
            let asks: Amount = sim.projects.values().map(|x| x.ask[*k]).fold(Amount::ZERO, |a, b| a + b);
            asks + released.get(*k).copied().unwrap_or_default() <= sim.budget[*k]
        });
        let places = sim.max.is_none_or(|m| sim.projects.len() <= m.max(0) as usize);
        if fits && places {
            for (n, x) in &sim.projects {
                let held = sim.truth.get(n).map(|q| q.hard.clone()).unwrap_or_default();
                for k in KEYS {
                    prop_assert_eq!(held.get(k).copied().unwrap_or_default(), x.ask[k], "{} {}", n, k);
                }
            }
        }
    }
}
