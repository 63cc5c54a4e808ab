//! Writing a custom resource's status: server-side apply of the status subresource, once, with an Event when Ready
//! says something new.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::controllers::context::Context;
use crate::write::in_flight::Digest;
use crate::{Error, Result};
use zenml_api::labels::FIELD_MANAGER;

/// Applies `status` to `obj` unless that exact write is in flight (nor when the object is gone meanwhile, the cache
/// not having caught up). The caller has already compared it with the cached status, `cached` being its conditions.
/// Returns whether it wrote a Ready that differs in status or reason from the one last reported, for an Event. "Last
/// reported" is our own previous write while the cache still shows the version it was computed from: a reconcile
/// woken before the watch delivers that write (by a child it created, say) reads the older status, and must not
/// announce the same Ready change a second time.
pub async fn apply<K, S>(api: &Api<K>, obj: &K, ctx: &Context, status: &S, cached: &[Condition]) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let (uid, version) = (obj.uid().unwrap_or_default(), obj.resource_version().unwrap_or_default());
    let digest = Digest::of(status);
    if ctx.status_in_flight.already_written(&uid, &version, &digest) {
        return Ok(false);
    }
    let reported = ctx
        .status_in_flight
        .ready_written(&uid, &version)
        .or_else(|| cached.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone())));
    let name = obj.name_any();
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    match api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(false),
        Err(e) => return Err(Error::kube("update status of", K::kind(&()), &name, e)),
    }
    let ready_changed = digest.ready != reported;
    ctx.status_in_flight.wrote(&uid, &version, digest);
    Ok(ready_changed)
}
