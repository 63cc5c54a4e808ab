//! The caches of the namespaced children we manage: compact, and indexed by namespace.
//!
//! kube's reflector keeps each object as its k8s-openapi struct, under a key that copies its name, namespace, uid and
//! resourceVersion again, where every label, annotation and owner field is an allocation of its own and each label
//! map a tree: at scale that was most of the operator's memory (docs/benchmarks.md, "Why the code is shaped so").
//! And the only question it answers quickly is "this name in this namespace": finding a project's children meant
//! scanning every object of the kind in each project reconcile. Here a child is what the reconcilers read of it
//! (identity, controller, two labels) plus its JSON, which is what drift detection compares, grouped by namespace.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::watcher;
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use zenml_api::labels;

use crate::write::expiring::Expiring;

/// A cached child object of kind `K`.
pub struct Child<K> {
    pub name: String,
    pub namespace: String,
    pub uid: Option<String>,
    /// The uid of its controlling owner (a Project, or a ProjectRoleBinding).
    controller: Option<String>,
    /// Our project label.
    pub project: Option<String>,
    /// Our workspace label: a released namespace's quota keeps it, so the workspace's budget still counts it.
    pub workspace: Option<String>,
    /// Our annotation naming the ProjectRoleBinding a RoleBinding grants.
    pub binding: Option<String>,
    /// The whole object as the API server returned it (without managedFields), serialized.
    json: Box<RawValue>,
    kind: PhantomData<fn() -> K>,
}

impl<K: Resource + Serialize> Child<K> {
    /// `None` for an object without a name or namespace (never one of ours) or one that does not serialize.
    pub fn of(obj: &K) -> Option<Self> {
        let meta = obj.meta();
        let json = serde_json::value::to_raw_value(obj).ok()?;
        Some(Child {
            name: meta.name.clone()?,
            namespace: meta.namespace.clone()?,
            uid: meta.uid.clone(),
            controller: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            project: meta.labels.as_ref().and_then(|l| l.get(labels::PROJECT)).cloned(),
            workspace: meta.labels.as_ref().and_then(|l| l.get(labels::WORKSPACE)).cloned(),
            binding: meta.annotations.as_ref().and_then(|a| a.get(labels::BINDING)).cloned(),
            json,
            kind: PhantomData,
        })
    }
}

impl<K> Child<K> {
    /// Whether `uid` (of a Project or ProjectRoleBinding) is its controller. An object without a uid controls nothing.
    pub fn controlled_by(&self, uid: Option<&str>) -> bool {
        uid.is_some() && self.controller.as_deref() == uid
    }

    /// The uid of its controlling owner, if it has one.
    pub fn controller(&self) -> Option<&str> {
        self.controller.as_deref()
    }
}

impl<K: DeserializeOwned> Child<K> {
    /// The full object, for the rare reader that needs a field (the quota's usage).
    pub fn decode(&self) -> Option<K> {
        serde_json::from_str(self.json.get()).ok()
    }
}

/// As the object itself: drift detection compares the desired object with this.
impl<K> Serialize for Child<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(s)
    }
}

type ByNamespace<K> = HashMap<String, HashMap<String, Arc<Child<K>>>>;

struct Shared<K> {
    objects: RwLock<ByNamespace<K>>,
    ready: tokio::sync::watch::Sender<bool>,
    /// Our writes the watch has not delivered yet, by namespace and name: a digest of what was applied, and when.
    in_flight: Expiring<(String, String), u64>,
}

/// After this, an unconfirmed write no longer holds back the same write (a safety net: every watch event for the
/// object, and every relist, ends it sooner).
const IN_FLIGHT_TTL: Duration = Duration::from_secs(10);

/// The read side, cheap to clone.
pub struct ChildStore<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for ChildStore<K> {
    fn clone(&self) -> Self {
        ChildStore { shared: self.shared.clone() }
    }
}

impl<K> ChildStore<K> {
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Child<K>>> {
        self.shared.objects.read().get(namespace)?.get(name).cloned()
    }

    /// Every cached object in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<Child<K>>> {
        let objects = self.shared.objects.read();
        objects.get(namespace).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Every cached object that `keep` selects, in any namespace (a scan: for the rare question across namespaces).
    pub fn select(&self, keep: impl Fn(&Child<K>) -> bool) -> Vec<Arc<Child<K>>> {
        let objects = self.shared.objects.read();
        objects.values().flat_map(|m| m.values()).filter(|c| keep(c)).cloned().collect()
    }

    /// Whether exactly this write to `namespace/name` was made and the watch has not delivered its object since.
    ///
    /// A project's second reconcile often follows its first before the watch has delivered the first one's
    /// writes (each write it makes wakes it), finds them missing from the cache, and would write them again, each with
    /// its own Event (docs/benchmarks.md counts them). Holding back is safe because our
    /// write produces a watch event for the object (or the object's earlier event is still on its way), and every
    /// event for it, a deletion included, ends the hold and wakes the reconcile again.
    pub fn in_flight(&self, namespace: &str, name: &str, digest: u64) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        self.shared.in_flight.get(&key, Instant::now()).is_some_and(|(d, _)| d == digest)
    }

    /// Whether a write of ours to `namespace/name` is on its way (any content): its absence from the cache is then no
    /// sign that it was deleted.
    pub fn pending(&self, namespace: &str, name: &str) -> bool {
        self.shared.in_flight.get(&(namespace.to_owned(), name.to_owned()), Instant::now()).is_some()
    }

    /// Remembers a successful write of `digest` to `namespace/name` (see `in_flight`).
    pub fn wrote(&self, namespace: &str, name: &str, digest: u64) {
        self.shared.in_flight.insert((namespace.to_owned(), name.to_owned()), digest, Instant::now());
    }

    /// Resolves once the first full list is in: before that, "not cached" does not mean "missing".
    pub async fn ready(&self) {
        let mut rx = self.shared.ready.subscribe();
        // The sender lives in `shared`, which we hold: `wait_for` cannot fail.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

/// The write side, fed by one watch.
pub struct ChildWriter<K> {
    shared: Arc<Shared<K>>,
    /// Objects of a relist in progress; swapped in whole when it completes, so a relist never shows half a cache.
    relist: Option<ByNamespace<K>>,
}

pub fn store<K>() -> (ChildStore<K>, ChildWriter<K>) {
    let shared = Arc::new(Shared {
        objects: RwLock::new(HashMap::new()),
        ready: tokio::sync::watch::channel(false).0,
        in_flight: Expiring::new(IN_FLIGHT_TTL),
    });
    (ChildStore { shared: shared.clone() }, ChildWriter { shared, relist: None })
}

impl<K: Resource + Serialize> ChildWriter<K> {
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        if let watcher::Event::Apply(obj) | watcher::Event::Delete(obj) = event {
            let meta = obj.meta();
            if let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) {
                self.shared.in_flight.remove(&(ns.clone(), name.clone()));
            }
        }
        match event {
            watcher::Event::Apply(obj) => {
                if let Some(c) = Child::of(obj) {
                    insert(&mut self.shared.objects.write(), c);
                }
            }
            watcher::Event::Delete(obj) => {
                let meta = obj.meta();
                let (Some(ns), Some(name)) = (&meta.namespace, &meta.name) else { return };
                let mut objects = self.shared.objects.write();
                if let Some(in_ns) = objects.get_mut(ns) {
                    in_ns.remove(name);
                    if in_ns.is_empty() {
                        objects.remove(ns);
                    }
                }
            }
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some(relist), Some(c)) = (self.relist.as_mut(), Child::of(obj)) {
                    insert(relist, c);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = self.relist.take() {
                    *self.shared.objects.write() = relist;
                }
                // After a relist the cache is the truth again: whatever it lacks is written anew.
                self.shared.in_flight.clear();
                self.shared.ready.send_replace(true);
            }
        }
    }
}

fn insert<K>(objects: &mut ByNamespace<K>, c: Child<K>) {
    objects.entry(c.namespace.clone()).or_default().insert(c.name.clone(), Arc::new(c));
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    use super::*;

    fn rb(ns: &str, name: &str) -> RoleBinding {
        RoleBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                uid: Some(format!("uid-{ns}-{name}")),
                labels: Some([(labels::PROJECT.to_owned(), ns.to_owned())].into()),
                annotations: Some([(labels::BINDING.to_owned(), "b".to_owned())].into()),
                owner_references: Some(vec![
                    OwnerReference { uid: "other".into(), ..Default::default() },
                    OwnerReference { uid: "owner".into(), controller: Some(true), ..Default::default() },
                ]),
                ..Default::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: "edit".into(),
            },
            subjects: None,
        }
    }

    #[test]
    fn a_child_keeps_what_reconcilers_read_and_serializes_as_the_object() {
        let obj = rb("p", "zenml-runner");
        let c = Child::of(&obj).unwrap();
        assert_eq!((c.name.as_str(), c.namespace.as_str()), ("zenml-runner", "p"));
        assert!(c.controlled_by(Some("owner")));
        assert!(!c.controlled_by(Some("other")), "an owner that is not the controller");
        assert!(!c.controlled_by(None));
        assert_eq!(c.project.as_deref(), Some("p"));
        assert_eq!(c.binding.as_deref(), Some("b"));
        assert_eq!(serde_json::to_value(&c).unwrap(), serde_json::to_value(&obj).unwrap());
        assert_eq!(c.decode(), Some(obj));
    }

    fn count<K>(store: &ChildStore<K>) -> usize {
        store.shared.objects.read().values().map(HashMap::len).sum()
    }

    #[test]
    fn events_maintain_the_index_and_a_relist_replaces_it_whole() {
        let (store, mut writer) = store::<RoleBinding>();
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(rb("a", "x")));
        assert!(store.get("a", "x").is_none(), "a relist shows nothing until it is complete");
        writer.apply(&watcher::Event::InitApply(rb("a", "y")));
        writer.apply(&watcher::Event::InitDone);
        writer.apply(&watcher::Event::Apply(rb("b", "x")));
        assert_eq!(store.in_namespace("a").len(), 2);
        assert_eq!(count(&store), 3);
        writer.apply(&watcher::Event::Delete(rb("a", "x")));
        assert!(store.get("a", "x").is_none());
        assert!(store.get("a", "y").is_some());
        // A relist after a lost watch: whatever it does not list is gone.
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitApply(rb("c", "z")));
        writer.apply(&watcher::Event::InitDone);
        assert_eq!(count(&store), 1);
        assert!(store.in_namespace("a").is_empty());
    }

    #[test]
    fn a_write_is_held_back_until_the_watch_delivers_its_object() {
        let (store, mut writer) = store::<RoleBinding>();
        assert!(!store.in_flight("a", "x", 1));
        store.wrote("a", "x", 1);
        assert!(store.in_flight("a", "x", 1), "the same write again is held back");
        assert!(!store.in_flight("a", "x", 2), "a different write is not");
        assert!(!store.in_flight("a", "y", 1), "nor a write to another object");
        assert!(store.pending("a", "x") && !store.pending("a", "y"));
        writer.apply(&watcher::Event::Apply(rb("a", "x")));
        assert!(!store.in_flight("a", "x", 1), "delivered: the cache decides again");
        assert!(!store.pending("a", "x"));
        store.wrote("a", "x", 1);
        writer.apply(&watcher::Event::Delete(rb("a", "x")));
        assert!(!store.in_flight("a", "x", 1), "deleted meanwhile: it must be written again");
        store.wrote("a", "x", 1);
        writer.apply(&watcher::Event::Init);
        writer.apply(&watcher::Event::InitDone);
        assert!(!store.in_flight("a", "x", 1), "a relist ends every hold");
    }

    #[tokio::test]
    async fn ready_after_the_first_full_list() {
        let (store, mut writer) = store::<RoleBinding>();
        let waiting = tokio::spawn({
            let store = store.clone();
            async move { store.ready().await }
        });
        writer.apply(&watcher::Event::Init);
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        writer.apply(&watcher::Event::InitDone);
        tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.unwrap().unwrap();
    }
}
