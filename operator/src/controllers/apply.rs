//! Writing children: server-side apply of what differs from the cache, and deletion of what is no longer wanted.

use std::fmt::Debug;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::labels::FIELD_MANAGER;
use crate::resources::compare::difference;
use crate::{Error, Result};

/// What a write did, for Events and the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub verb: &'static str,
    pub kind: String,
    pub name: String,
    /// The object written, for the Event's `related` field: the recorder folds events that differ only in their
    /// note into one series, so without it every child's Created would count as one.
    pub object: ObjectReference,
}

fn reference<K: Resource<DynamicType = ()>>(meta: &kube::core::ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        ..Default::default()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.verb, self.kind, self.name)
    }
}

fn full_name(meta: &kube::core::ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or_default()),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// Applies `desired` unless the cached object `L` (the same kind, or its metadata) already matches it.
pub async fn ensure<K, L>(api: &Api<K>, store: &Store<L>, desired: &K) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
    L: Resource<DynamicType = ()> + Serialize + Clone,
{
    let name = desired.name_any();
    let mut key = ObjectRef::<L>::new(&name);
    if let Some(ns) = &desired.meta().namespace {
        key = key.within(ns);
    }
    let live = store.get(&key);
    let diff = match live.as_deref() {
        Some(l) => match difference(desired, l) {
            None => return Ok(None),
            Some(path) => path,
        },
        None => "(missing)".to_owned(),
    };
    let kind = K::kind(&()).into_owned();
    let full = full_name(desired.meta());
    tracing::debug!(kind, name = full, differs_at = diff, "applying");
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired))
        .await
        .map_err(|e| Error::kube("apply", &kind, &full, e))?;
    let object = reference::<K>(desired.meta());
    Ok(Some(Change { verb: if live.is_some() { "Updated" } else { "Created" }, kind, name: full, object }))
}

/// Deletes one object; gone already is fine.
pub async fn delete<K>(api: &Api<K>, obj: &K) -> Result<Option<Change>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let kind = K::kind(&()).into_owned();
    let full = full_name(obj.meta());
    // Preconditioned on the uid we saw, so an object recreated by someone else meanwhile is never deleted.
    let dp = DeleteParams {
        preconditions: obj.uid().map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
        ..Default::default()
    };
    match api.delete(&obj.name_any(), &dp).await {
        Ok(_) => Ok(Some(Change { verb: "Deleted", kind, name: full, object: reference::<K>(obj.meta()) })),
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
        Err(e) => Err(Error::kube("delete", kind, full, e)),
    }
}
