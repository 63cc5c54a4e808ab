//! Writing a custom resource's status: server-side apply of the status subresource, once.

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::context::Context;
use crate::labels::FIELD_MANAGER;
use crate::{Error, Result};

/// What became of a status write.
#[derive(Debug, PartialEq)]
pub enum StatusWrite {
    Yes,
    /// The same status from the same cached version is already on its way (see `in_flight`).
    InFlight,
    /// The object was deleted meanwhile (the cache had not caught up): there is nothing to report on.
    Gone,
}

/// Applies `status` to `obj` unless that exact write is in flight. The caller has already compared it with the
/// cached status.
pub async fn apply<K, S>(api: &Api<K>, obj: &K, ctx: &Context, status: &S) -> Result<StatusWrite>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let (uid, version) = (obj.uid().unwrap_or_default(), obj.resource_version().unwrap_or_default());
    if ctx.status_in_flight.already_written(&uid, &version, status) {
        return Ok(StatusWrite::InFlight);
    }
    let name = obj.name_any();
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    match api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(StatusWrite::Gone),
        Err(e) => return Err(Error::kube("update status of", K::kind(&()), &name, e)),
    }
    ctx.status_in_flight.wrote(&uid, &version, status);
    Ok(StatusWrite::Yes)
}
