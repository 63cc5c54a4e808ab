//! Adding and removing our finalizer with JSON patches that test the list first, so a concurrent edit by anyone
//! else makes the patch fail (and retry) instead of dropping their finalizer.

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::write::in_flight::InFlight;
use crate::{Error, Result};
use zenml_api::labels::FINALIZER;

pub fn has<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer unless it is there: one write in an object's life. Its watch event wakes the next reconcile
/// before the status this reconcile goes on to write arrives, so the version it makes is recorded in `status` as one
/// that carries the status read here (see `in_flight`).
pub async fn ensure<K>(api: &Api<K>, obj: &K, status: &InFlight) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    if has(obj) {
        return Ok(());
    }
    let patch = if obj.meta().finalizers.is_none() {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        json!([{"op": "test", "path": "/metadata/finalizers", "value": obj.finalizers()}, {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
    if let Some(version) = patch_finalizers(api, obj, patch, "add finalizer to").await? {
        status.same_status(&obj.uid().unwrap_or_default(), &obj.resource_version().unwrap_or_default(), &version);
    }
    Ok(())
}

pub async fn remove<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(i) = obj.finalizers().iter().position(|f| f == FINALIZER) else {
        return Ok(());
    };
    let patch = json!([
        {"op": "test", "path": format!("/metadata/finalizers/{i}"), "value": FINALIZER},
        {"op": "remove", "path": format!("/metadata/finalizers/{i}")},
    ]);
    patch_finalizers(api, obj, patch, "remove finalizer from").await.map(|_| ())
}

async fn patch_finalizers<K>(
    api: &Api<K>,
    obj: &K,
    patch: serde_json::Value,
    verb: &'static str,
) -> Result<Option<String>>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch: json_patch::Patch = serde_json::from_value(patch).expect("a well-formed JSON patch");
    match api.patch(&obj.name_any(), &PatchParams::default(), &Patch::<()>::Json(patch)).await {
        Ok(patched) => Ok(patched.meta().resource_version.clone()),
        // Already gone: nothing left to finalize.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(Error::kube(verb, K::kind(&()).into_owned(), obj.name_any(), e)),
    }
}
