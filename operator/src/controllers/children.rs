//! The kinds of object a project owns in its namespace, each described once, in [`ChildStores::watch`]: how it is
//! watched and cached, which of the project's desired children are of that kind, when it is written, how a refusal
//! to write it is reported, and what deletion with `Retain` does to it. Applying, pruning and releasing are the same
//! for every kind, so a new kind is one line there (and its field in the pure builder's `Children`).

use std::fmt::Debug;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use zenml_api::labels::{self, CHILD_SELECTOR, TEMPLATE_SELECTOR};
use zenml_api::resources::Children;
use zenml_api::status::templates::TemplateProblem;

use super::templates::{Catalog, TemplateKind};
use crate::watch::cache::{self, Child, ChildStore};
use crate::watch::{list_config, strip};
use crate::write::apply::{Change, delete_child, ensure_child};
use crate::{Error, Result};

/// What deleting a project with `deletionPolicy: Retain` (or an adopted namespace) does to a child: the namespace
/// goes back to whoever owns the cluster without anything loosened (see `project::release`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRelease {
    /// Deleted: it grants access (the delegation Role, the runner ServiceAccount and the tokens minted for it).
    Delete,
    /// Every one in the namespace is deleted, the project's and its ProjectRoleBindings': they grant access.
    DeleteAll,
    /// Kept in force, no longer managed: walls and limits stay.
    Unmanage,
    /// Kept in force and managed, labelled for its workspace, whose budget counts it until the namespace is deleted
    /// or adopted again: freeing the share while the quota still bounds the namespace would let delete/recreate
    /// cycles multiply the budget, and removing the quota would leave the namespace unbounded.
    KeepCounted,
}

/// When a kind is written within one reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Together, concurrently.
    Objects,
    /// After the objects: a RoleBinding to the delegation Role is refused (escalation check) until the Role exists.
    Grants,
}

/// A child object touched by a watch: whom it wakes.
#[derive(Clone, Debug)]
pub struct Touched {
    /// The project that owns it (our label).
    pub project: Option<String>,
    /// Its workspace (our label).
    pub workspace: Option<String>,
    /// The ProjectRoleBinding whose RoleBinding it is (our annotation).
    pub binding: Option<String>,
    /// Whether its change may free budget that waiting projects of its workspace ask for.
    pub frees_budget: bool,
}

/// The caches of every child kind. The quotas and RoleBindings are read by name elsewhere (budgets, bindings); every
/// kind is reached through `kinds` for the work that is the same for all.
#[derive(Clone)]
pub struct ChildStores {
    pub quotas: ChildStore<ResourceQuota>,
    pub role_bindings: ChildStore<RoleBinding>,
    kinds: Vec<Arc<dyn ChildKind>>,
    /// The kinds workspace templates may have.
    templates: Arc<Catalog>,
}

impl ChildStores {
    /// Watches every child kind, filtered by our label, into its compact cache; the stream says what each change
    /// touched.
    pub fn watch(client: &Client, templates: Catalog) -> (ChildStores, BoxStream<'static, watcher::Result<Touched>>) {
        let mut table = Table::new(Some(client.clone()), templates);
        let stores = table.describe();
        (stores, stream::select_all(table.streams).boxed())
    }

    /// The same caches without watches, for tests: filled by hand through the writers.
    #[cfg(test)]
    pub fn for_tests() -> (ChildStores, ChildWriters) {
        let mut table = Table::new(None, Catalog::for_tests());
        let stores = table.describe();
        (stores, ChildWriters(table.writers))
    }

    /// Resolves once every kind's first full list is in.
    pub async fn ready(&self) {
        futures::future::join_all(self.kinds.iter().map(|k| k.ready())).await;
    }

    /// Applies every child that differs from the cache, stage by stage.
    pub async fn ensure(&self, client: &Client, children: &Children) -> Result<Ensured> {
        let mut ensured = Ensured::default();
        for stage in [Stage::Objects, Stage::Grants] {
            let of_stage = self.kinds.iter().filter(|k| k.stage() == stage).map(|k| k.ensure(client, children));
            for result in futures::future::join_all(of_stage).await {
                let more = result?;
                ensured.changes.extend(more.changes);
                ensured.forbidden.extend(more.forbidden);
                ensured.templates.extend(more.templates);
            }
        }
        ensured.templates.extend(self.templates.unmatched(children));
        Ok(ensured)
    }

    /// Deletes the children the project (`uid`) owns in `namespace` that `children` no longer holds.
    pub async fn prune(
        &self,
        client: &Client,
        namespace: &str,
        uid: Option<&str>,
        children: &Children,
    ) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for kind in &self.kinds {
            changes.extend(kind.prune(client, namespace, uid, children).await?);
        }
        Ok(changes)
    }

    /// Releases the project's children in `namespace` (see [`OnRelease`]); grants go first.
    pub async fn release(&self, client: &Client, namespace: &str, uid: Option<&str>) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for kind in self.kinds.iter().rev() {
            changes.extend(kind.release(client, namespace, uid).await?);
        }
        Ok(changes)
    }
}

/// What applying the children did: the changes, and the grants the API server refused because the operator may not
/// bind their role (a condition, not a retry loop: retrying cannot help until someone grants it).
#[derive(Debug, Default)]
pub struct Ensured {
    pub changes: Vec<Change>,
    pub forbidden: Vec<String>,
    /// Templates not applied, and why (see `templates`).
    pub templates: Vec<TemplateProblem>,
}

/// A kind of child, whatever its type.
pub(super) trait ChildKind: Send + Sync {
    fn stage(&self) -> Stage;
    fn ready(&self) -> BoxFuture<'_, ()>;
    fn ensure<'a>(&'a self, client: &'a Client, children: &'a Children) -> BoxFuture<'a, Result<Ensured>>;
    fn prune<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        uid: Option<&'a str>,
        children: &'a Children,
    ) -> BoxFuture<'a, Result<Vec<Change>>>;
    fn release<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Change>>>;
}

/// What a child kind's objects need to be watched, cached and written.
pub trait ChildObject:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}
impl<K> ChildObject for K where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// The description of one kind.
struct Kind<K> {
    /// Which of a project's desired children are of this kind.
    wanted: for<'a> fn(&'a Children) -> Vec<&'a K>,
    on_release: OnRelease,
    stage: Stage,
    /// For a kind that grants: how an object is named when the operator may not write it (403).
    grant: Option<fn(&K) -> String>,
    frees_budget: bool,
}

/// A kind with its cache: what the work is done with.
struct Cached<K> {
    kind: Kind<K>,
    store: ChildStore<K>,
}

impl<K: ChildObject> Kind<K> {
    fn new(wanted: for<'a> fn(&'a Children) -> Vec<&'a K>, on_release: OnRelease) -> Self {
        Kind { wanted, on_release, stage: Stage::Objects, grant: None, frees_budget: false }
    }

    /// A kind that grants a role: written after the objects, and a refusal to write one is reported, not retried.
    fn granting(mut self, describe: fn(&K) -> String) -> Self {
        self.stage = Stage::Grants;
        self.grant = Some(describe);
        self
    }

    /// A kind whose change may free budget that waiting projects ask for.
    fn frees_budget(mut self) -> Self {
        self.frees_budget = true;
        self
    }
}

impl<K: ChildObject> Cached<K> {
    /// This project's children in `namespace`: controlled by it (by uid, not just by label).
    fn owned(&self, namespace: &str, uid: Option<&str>) -> Vec<Arc<Child<K>>> {
        let mut owned = self.store.in_namespace(namespace);
        owned.retain(|c| c.controlled_by(uid));
        owned
    }

    async fn ensure_all(&self, client: &Client, children: &Children) -> Result<Ensured> {
        let mut ensured = Ensured::default();
        let wanted = (self.kind.wanted)(children);
        let writes = wanted.iter().map(|obj| {
            let api = Api::<K>::namespaced(client.clone(), obj.meta().namespace.as_deref().unwrap_or_default());
            async move { ensure_child(&api, &self.store, obj).await }
        });
        for (obj, result) in wanted.iter().zip(futures::future::join_all(writes).await) {
            match (result, self.kind.grant) {
                (Ok(change), _) => ensured.changes.extend(change),
                (Err(e), Some(describe)) if e.api_code() == Some(403) => {
                    ensured.forbidden.push(format!("{}: {}", describe(obj), e.api_message()))
                }
                (Err(e), _) => return Err(e),
            }
        }
        Ok(ensured)
    }

    async fn prune_unwanted(
        &self,
        client: &Client,
        namespace: &str,
        uid: Option<&str>,
        children: &Children,
    ) -> Result<Vec<Change>> {
        let keep: Vec<String> = (self.kind.wanted)(children).iter().map(|o| o.name_any()).collect();
        let api = Api::<K>::namespaced(client.clone(), namespace);
        let mut changes = Vec::new();
        for child in self.owned(namespace, uid) {
            if !keep.contains(&child.name) {
                changes.extend(delete_child(&api, &child).await?);
            }
        }
        Ok(changes)
    }

    async fn release_all(&self, client: &Client, namespace: &str, uid: Option<&str>) -> Result<Vec<Change>> {
        let api = Api::<K>::namespaced(client.clone(), namespace);
        let mut changes = Vec::new();
        let patch = match self.kind.on_release {
            OnRelease::Delete | OnRelease::DeleteAll => {
                let children = match self.kind.on_release {
                    OnRelease::DeleteAll => self.store.in_namespace(namespace),
                    _ => self.owned(namespace, uid),
                };
                for child in children {
                    changes.extend(delete_child(&api, &child).await?);
                }
                return Ok(changes);
            }
            OnRelease::Unmanage => json!({"metadata": {
                "ownerReferences": null,
                "labels": {labels::MANAGED_BY: null, labels::WORKSPACE: null, labels::PROJECT: null, labels::COMPONENT: null},
                "annotations": {labels::APPLIED_HASH: null, labels::FORMER_PROJECT: namespace},
            }}),
            OnRelease::KeepCounted => json!({"metadata": {
                "ownerReferences": null,
                "labels": {labels::PROJECT: null},
                "annotations": {labels::APPLIED_HASH: null, labels::FORMER_PROJECT: namespace},
            }}),
        };
        for child in self.owned(namespace, uid) {
            match api.patch(&child.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube("release", K::kind(&()), format!("{namespace}/{}", child.name), e)),
            }
        }
        Ok(changes)
    }
}

impl<K: ChildObject> ChildKind for Cached<K> {
    fn stage(&self) -> Stage {
        self.kind.stage
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        self.store.ready().boxed()
    }

    fn ensure<'a>(&'a self, client: &'a Client, children: &'a Children) -> BoxFuture<'a, Result<Ensured>> {
        self.ensure_all(client, children).boxed()
    }

    fn prune<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        uid: Option<&'a str>,
        children: &'a Children,
    ) -> BoxFuture<'a, Result<Vec<Change>>> {
        self.prune_unwanted(client, namespace, uid, children).boxed()
    }

    fn release<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Change>>> {
        self.release_all(client, namespace, uid).boxed()
    }
}

/// Builds the table: one watch, cache and description per kind.
struct Table {
    /// `None` in tests: the caches are then filled by hand (see `ChildWriters`).
    client: Option<Client>,
    kinds: Vec<Arc<dyn ChildKind>>,
    streams: Vec<BoxStream<'static, watcher::Result<Touched>>>,
    /// The caches' write sides when no watch feeds them, one per kind.
    writers: Vec<Box<dyn std::any::Any + Send>>,
    templates: Catalog,
}

impl Table {
    fn new(client: Option<Client>, templates: Catalog) -> Self {
        Table { client, kinds: Vec::new(), streams: Vec::new(), writers: Vec::new(), templates }
    }

    /// This is the one table of child kinds.
    fn describe(&mut self) -> ChildStores {
        let quotas = self.add(Kind::new(|c| c.quota.iter().collect(), OnRelease::KeepCounted).frees_budget());
        self.add(Kind::<LimitRange>::new(|c| c.limit_range.iter().collect(), OnRelease::Unmanage));
        self.add(Kind::<NetworkPolicy>::new(|c| c.network_policy.iter().collect(), OnRelease::Unmanage));
        self.add(Kind::<ServiceAccount>::new(|c| vec![&c.runner], OnRelease::Delete));
        self.add(Kind::<Role>::new(|c| vec![&c.delegation], OnRelease::Delete));
        let role_bindings =
            self.add(Kind::new(|c| c.role_bindings.iter().collect(), OnRelease::DeleteAll).granting(
                |rb: &RoleBinding| format!("RoleBinding {} to ClusterRole {}", rb.name_any(), rb.role_ref.name),
            ));
        // Workspace templates: one row per kind the operator may manage, released like the limits and walls.
        for ar in self.templates.available.clone() {
            let store = self.watched(Api::all_with, ar.clone(), TEMPLATE_SELECTOR, false);
            self.kinds.push(Arc::new(TemplateKind { ar, store }));
        }
        let templates = Arc::new(std::mem::take(&mut self.templates));
        ChildStores { quotas, role_bindings, kinds: std::mem::take(&mut self.kinds), templates }
    }

    fn add<K: ChildObject>(&mut self, kind: Kind<K>) -> ChildStore<K> {
        let frees_budget = kind.frees_budget;
        let store = self.watched(|c, _: &()| Api::<K>::all(c), (), CHILD_SELECTOR, frees_budget);
        self.kinds.push(Arc::new(Cached { kind, store: store.clone() }));
        store
    }

    /// A cache of `K` fed by a watch of the objects `selector` selects (by hand in tests).
    fn watched<K, D>(
        &mut self,
        api: fn(Client, &D) -> Api<K>,
        dyntype: D,
        selector: &str,
        frees_budget: bool,
    ) -> ChildStore<K>
    where
        K: kube::Resource<DynamicType = D> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static,
        D: Send + Sync + 'static,
    {
        let (reader, mut writer) = cache::store();
        let Some(client) = &self.client else {
            self.writers.push(Box::new(writer));
            return reader;
        };
        let touched = watcher(api(client.clone(), &dyntype), list_config().labels(selector))
            .default_backoff()
            .modify(strip)
            .inspect_ok(move |event| writer.apply(event))
            .touched_objects()
            .map_ok(move |obj| Touched {
                project: obj.labels().get(labels::PROJECT).cloned(),
                workspace: obj.labels().get(labels::WORKSPACE).cloned(),
                binding: obj.annotations().get(labels::BINDING).cloned(),
                frees_budget,
            });
        self.streams.push(touched.boxed());
        reader
    }
}

/// The write sides of `ChildStores::for_tests`' caches: what a watch would deliver, delivered by hand.
#[cfg(test)]
pub struct ChildWriters(Vec<Box<dyn std::any::Any + Send>>);

#[cfg(test)]
impl ChildWriters {
    /// Feeds `event` to the cache of its kind, as the kind's watch would.
    pub fn apply<K: ChildObject>(&mut self, event: watcher::Event<K>) -> &mut Self {
        let writer = self.0.iter_mut().find_map(|w| w.downcast_mut::<cache::ChildWriter<K>>());
        writer.expect("a child kind of the table").apply(&event);
        self
    }

    /// Feeds `event` to the cache of the (only) template kind of the tests, ConfigMap.
    pub fn apply_template(&mut self, event: watcher::Event<kube::core::DynamicObject>) -> &mut Self {
        let writer = self.0.iter_mut().find_map(|w| w.downcast_mut::<cache::ChildWriter<kube::core::DynamicObject>>());
        writer.expect("the template kind of the tests").apply(&event);
        self
    }
}
