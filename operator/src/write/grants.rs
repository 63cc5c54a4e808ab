//! Grants the operator has decided and sent, until the quota cache shows them: what makes budget decisions safe
//! against the cache lagging behind our own writes.
//!
//! Without it, a project granted 8 of a budget of 10 holds nothing as far as the cache knows until the watch
//! delivers its new ResourceQuota, and a sibling reconciled meanwhile is granted the same 8. Here a namespace holds
//! the larger of what the cache shows and every grant sent to it and not yet seen in place; decisions and records
//! happen under one lock, so concurrent reconciles of one workspace decide one after the other.

use parking_lot::{Mutex, MutexGuard};
use std::collections::{BTreeMap, HashMap};

use zenml_api::resources::budget;
use zenml_api::resources::quantity::Amount;

/// One namespace's grants in flight.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sent {
    pub workspace: String,
    /// The project instance it was granted to.
    pub project_uid: String,
    /// The larger, key by key, of every grant sent and not yet seen: any of them may be in place now.
    pub held: BTreeMap<String, Amount>,
    /// The last grant sent: once the cache shows it, nothing is in flight.
    pub last: BTreeMap<String, Amount>,
}

/// By namespace.
#[derive(Default)]
pub struct Grants {
    sent: Mutex<HashMap<String, Sent>>,
}

impl Grants {
    /// Ends the record of `namespace`: it is gone, and its quota with it. Safe because a grant is only decided while
    /// the cache shows no namespace of that name or a live one of ours: a deletion the watch delivers after that is of
    /// the namespace the grant went to (or a later one).
    pub fn forget(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    /// The record, locked: a decision and the record of its grant must happen under one lock.
    pub fn lock(&self) -> MutexGuard<'_, HashMap<String, Sent>> {
        // A panic while holding it leaves a record that is at worst too large: safe to go on with.
        self.sent.lock()
    }
}

/// Records a grant of `granted` (the budgeted keys) to `namespace` for project `uid` of `workspace`.
pub fn record(
    sent: &mut HashMap<String, Sent>,
    namespace: &str,
    workspace: &str,
    uid: &str,
    granted: BTreeMap<String, Amount>,
) {
    let entry = sent.entry(namespace.to_owned()).or_default();
    if entry.workspace != workspace || entry.project_uid != uid {
        // Another instance's grant in flight to this namespace stays counted until it is seen.
        entry.held = budget::larger(&entry.held, &entry.last);
        entry.workspace = workspace.to_owned();
        entry.project_uid = uid.to_owned();
    }
    entry.held = budget::larger(&entry.held, &granted);
    entry.last = granted;
}

/// Whether the grant in flight to a namespace is in place: its quota shows the last grant, key by key.
pub fn seen(entry: &Sent, cached: Option<&BTreeMap<String, Amount>>) -> bool {
    cached.is_some_and(|c| entry.last.iter().all(|(k, v)| c.get(k).copied().unwrap_or_default() == *v))
}

/// A project's ResourceQuota as the cache shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CachedQuota {
    pub namespace: String,
    pub workspace: Option<String>,
    /// The uid of the project that controls it; none once released.
    pub controller: Option<String>,
    pub hard: BTreeMap<String, Amount>,
}

/// Drops the grants in flight that the cache shows in place: `quota` gives a namespace's cached quota.
///
/// Nothing else ends a record here: a namespace or project missing from the cache may only be lagging behind (a
/// Retain release can follow a grant before the watch delivers either). A namespace whose deletion the watch
/// delivers ends it too (see `forget`), and so does a project's cleanup once the API server says its namespace is gone.
pub fn forget_seen<'q>(sent: &mut HashMap<String, Sent>, quota: impl Fn(&str) -> Option<&'q BTreeMap<String, Amount>>) {
    sent.retain(|ns, e| !(e.last.is_empty() || seen(e, quota(ns))));
}

/// What project `uid` holds in its namespace `ns`: its cached quota (if it controls it) or the grants in flight to
/// it, whichever is larger.
pub fn held_by(
    ns: &str,
    uid: &str,
    cached: Option<&CachedQuota>,
    sent: &HashMap<String, Sent>,
) -> BTreeMap<String, Amount> {
    let cached = cached.filter(|q| q.controller.as_deref() == Some(uid)).map(|q| q.hard.clone()).unwrap_or_default();
    match sent.get(ns).filter(|e| e.project_uid == uid) {
        Some(e) => budget::larger(&cached, &e.held),
        None => cached,
    }
}

/// What a workspace's namespaces hold besides its live projects (`candidates`: namespace and project uid):
/// released and terminating namespaces, and grants in flight to project instances that are gone.
pub fn others_holding(
    workspace: &str,
    candidates: &[(&str, &str)],
    quotas: &[CachedQuota],
    sent: &HashMap<String, Sent>,
) -> Vec<budget::Holder> {
    let candidate = |ns: &str, uid: Option<&str>| candidates.iter().any(|(n, u)| *n == ns && Some(*u) == uid);
    let mut held: BTreeMap<String, BTreeMap<String, Amount>> = BTreeMap::new();
    for q in quotas.iter().filter(|q| q.workspace.as_deref() == Some(workspace)) {
        if !candidate(&q.namespace, q.controller.as_deref()) {
            let e = held.entry(q.namespace.clone()).or_default();
            *e = budget::larger(e, &q.hard);
        }
    }
    for (ns, e) in sent.iter().filter(|(ns, e)| e.workspace == workspace && !candidate(ns, Some(&e.project_uid))) {
        let h = held.entry(ns.clone()).or_default();
        *h = budget::larger(h, &e.held);
    }
    held.into_iter().map(|(namespace, held)| budget::Holder { namespace, held }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(n: i128) -> BTreeMap<String, Amount> {
        BTreeMap::from([("requests.cpu".to_owned(), Amount(n))])
    }

    #[test]
    fn a_namespace_holds_the_largest_grant_in_flight_until_the_last_is_seen() {
        let mut sent = HashMap::new();
        record(&mut sent, "p", "w", "u1", cpu(8));
        record(&mut sent, "p", "w", "u1", cpu(2));
        let e = &sent["p"];
        assert_eq!(e.held, cpu(8), "the raise may still be what is in place");
        assert_eq!(e.last, cpu(2));
        assert!(!seen(e, Some(&cpu(8))), "the raise in place, the lowering not yet");
        assert!(!seen(e, None));
        assert!(seen(e, Some(&cpu(2))));
    }

    #[test]
    fn a_new_instance_in_the_same_namespace_does_not_hide_the_old_grant() {
        let mut sent = HashMap::new();
        record(&mut sent, "p", "a", "u1", cpu(8));
        record(&mut sent, "p", "b", "u2", cpu(1));
        assert_eq!(sent["p"].held, cpu(8));
        assert_eq!((sent["p"].workspace.as_str(), sent["p"].project_uid.as_str()), ("b", "u2"));
    }
}
