//! Writing a custom resource's status: server-side apply of the status subresource, once, with an Event when Ready
//! says something new.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::context::Context;
use super::in_flight::Digest;
use crate::labels::FIELD_MANAGER;
use crate::{Error, Result};

/// What became of a status write.
#[derive(Debug, PartialEq)]
pub enum StatusWrite {
    /// Written. `ready_changed`: its Ready condition differs in status or reason from the one last reported.
    Yes { ready_changed: bool },
    /// The same status from the same cached version is already on its way (see `in_flight`).
    InFlight,
    /// The object was deleted meanwhile (the cache had not caught up): there is nothing to report on.
    Gone,
}

impl StatusWrite {
    /// Whether to announce the new Ready in an Event.
    pub fn ready_changed(&self) -> bool {
        matches!(self, StatusWrite::Yes { ready_changed: true })
    }
}

/// Applies `status` to `obj` unless that exact write is in flight. The caller has already compared it with the
/// cached status, `cached` being its conditions. "Last reported" is our own previous write while the cache still
/// shows the version it was computed from: a reconcile woken before the watch delivers that write (by a child it
/// created, say) reads the older status, and must not announce the same Ready change a second time.
pub async fn apply<K, S>(api: &Api<K>, obj: &K, ctx: &Context, status: &S, cached: &[Condition]) -> Result<StatusWrite>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    S: Serialize,
{
    let (uid, version) = (obj.uid().unwrap_or_default(), obj.resource_version().unwrap_or_default());
    let digest = Digest::of(status);
    if ctx.status_in_flight.already_written(&uid, &version, &digest) {
        return Ok(StatusWrite::InFlight);
    }
    let reported = ctx
        .status_in_flight
        .ready_written(&uid, &version)
        .or_else(|| cached.iter().find(|c| c.type_ == "Ready").map(|c| (c.status.clone(), c.reason.clone())));
    let name = obj.name_any();
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    match api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(StatusWrite::Gone),
        Err(e) => return Err(Error::kube("update status of", K::kind(&()), &name, e)),
    }
    let ready_changed = digest.ready != reported;
    ctx.status_in_flight.wrote(&uid, &version, digest);
    Ok(StatusWrite::Yes { ready_changed })
}
