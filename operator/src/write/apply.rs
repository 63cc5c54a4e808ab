//! Writing children: server-side apply of what differs from the cache, and deletion of what is no longer wanted.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::watch::cache::{Child, ChildStore};
use crate::{Error, Result};
use zenml_api::labels::FIELD_MANAGER;
use zenml_api::resources::compare::difference;

/// What a write did to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Created,
    Updated,
    Deleted,
}

impl Verb {
    pub const fn as_str(self) -> &'static str {
        match self {
            Verb::Created => "Created",
            Verb::Updated => "Updated",
            Verb::Deleted => "Deleted",
        }
    }
}

impl std::fmt::Display for Verb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a write did, for Events and the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub verb: Verb,
    pub kind: String,
    pub name: String,
    /// The object written, for the Event's `related` field.
    pub object: ObjectReference,
}

fn reference<K: Resource<DynamicType = ()>>(name: &str, namespace: Option<&str>, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        uid: uid.map(str::to_owned),
        ..Default::default()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.verb, self.kind, self.name)
    }
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// Applies `desired` unless `live`, the cached object (or its metadata, or a cached child), already matches it.
pub async fn ensure<K, L>(api: &Api<K>, live: Option<&L>, desired: &K) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
    L: Serialize,
{
    let diff = match live {
        Some(l) => match difference(desired, l) {
            None => return Ok(None),
            Some(path) => path,
        },
        None => "(missing)".to_owned(),
    };
    let name = desired.name_any();
    let namespace = desired.meta().namespace.as_deref();
    let kind = K::kind(&()).into_owned();
    let full = full_name(&name, namespace);
    tracing::debug!(kind, name = full, differs_at = diff, "applying");
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired))
        .await
        .map_err(|e| Error::kube("apply", &kind, &full, e))?;
    let object = reference::<K>(&name, namespace, desired.meta().uid.as_deref());
    Ok(Some(Change { verb: if live.is_some() { Verb::Updated } else { Verb::Created }, kind, name: full, object }))
}

/// `ensure` for a namespaced child, compared with its cache; an identical write the watch has not delivered yet is
/// not repeated (see `ChildStore::in_flight`).
pub async fn ensure_child<K>(api: &Api<K>, store: &ChildStore<K>, desired: &K) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let namespace = desired.meta().namespace.as_deref().unwrap_or_default();
    let name = desired.name_any();
    let live = store.get(namespace, &name);
    if live.as_deref().is_some_and(|l| difference(desired, l).is_none()) {
        return Ok(None);
    }
    let digest = super::digest::of_json(desired);
    if store.in_flight(namespace, &name, digest) {
        return Ok(None);
    }
    let change = ensure(api, live.as_deref(), desired).await?;
    store.wrote(namespace, &name, digest);
    Ok(change)
}

/// Deletes one object; gone already is fine. Preconditioned on the uid we saw, so an object recreated by someone
/// else meanwhile is never deleted.
pub async fn delete<K>(api: &Api<K>, name: &str, namespace: Option<&str>, uid: Option<&str>) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = K::kind(&()).into_owned();
    let full = full_name(name, namespace);
    let dp = DeleteParams {
        preconditions: uid.map(|uid| kube::api::Preconditions { uid: Some(uid.to_owned()), resource_version: None }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => {
            Ok(Some(Change { verb: Verb::Deleted, kind, name: full, object: reference::<K>(name, namespace, uid) }))
        }
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(Error::kube("delete", kind, full, e)),
    }
}

/// `delete` of a cached child.
pub async fn delete_child<K>(api: &Api<K>, child: &Child<K>) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    delete(api, &child.name, Some(&child.namespace), child.uid.as_deref()).await
}
