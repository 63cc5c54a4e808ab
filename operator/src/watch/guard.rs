//! Watches that survive objects the types cannot decode.
//!
//! An object stored before a schema tightened, or written while validation was off, may no longer fit the Rust
//! types. Decoded as a list, one such object would fail the whole list, and with it the operator for every other
//! object. Each object is decoded on its own instead; one that fails is dropped from the stream as if deleted (so no
//! cache holds it and no reconciler sees it), and reported: a Warning Event and `Ready=False`, reason `InvalidSpec`,
//! with the decoding error, which names the field.

use std::collections::HashMap;

use crate::write::events::{Event, EventAction, EventType, Recorder};
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::{DeserializeGuard, error_boundary::InvalidObject};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use serde_json::json;

use zenml_api::labels::FIELD_MANAGER;
use zenml_api::status::conditions::{ConditionType, Reason};

/// An object that did not decode, with what is needed to report it.
pub struct Invalid {
    pub resource: ApiResource,
    pub metadata: ObjectMeta,
    pub error: String,
}

/// Turns a watch of guarded objects into a watch of the objects that decode, sending the others to `invalid`.
pub fn decodable<K, S>(
    events: S,
    invalid: mpsc::UnboundedSender<Invalid>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>>
where
    K: Resource<DynamicType = ()> + Default + Clone,
    S: Stream<Item = watcher::Result<watcher::Event<DeserializeGuard<K>>>>,
{
    let report = move |bad: InvalidObject| {
        let _ = invalid.unbounded_send(Invalid {
            resource: ApiResource::erase::<K>(&()),
            metadata: bad.metadata.clone(),
            error: bad.error,
        });
        stub::<K>(bad.metadata)
    };
    events.filter_map(move |event| {
        let mapped = match event {
            Ok(watcher::Event::Apply(DeserializeGuard(Ok(k)))) => Some(Ok(watcher::Event::Apply(k))),
            // Dropped from the caches as if deleted: whatever decoded before must not be acted on any more.
            Ok(watcher::Event::Apply(DeserializeGuard(Err(bad)))) => Some(Ok(watcher::Event::Delete(report(bad)))),
            Ok(watcher::Event::Delete(DeserializeGuard(Ok(k)))) => Some(Ok(watcher::Event::Delete(k))),
            Ok(watcher::Event::Delete(DeserializeGuard(Err(bad)))) => {
                Some(Ok(watcher::Event::Delete(stub::<K>(bad.metadata))))
            }
            Ok(watcher::Event::InitApply(DeserializeGuard(Ok(k)))) => Some(Ok(watcher::Event::InitApply(k))),
            Ok(watcher::Event::InitApply(DeserializeGuard(Err(bad)))) => {
                report(bad);
                None
            }
            Ok(watcher::Event::Init) => Some(Ok(watcher::Event::Init)),
            Ok(watcher::Event::InitDone) => Some(Ok(watcher::Event::InitDone)),
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(mapped)
    })
}

/// An object with only its identity, standing in for one that did not decode.
fn stub<K: Resource + Default>(metadata: ObjectMeta) -> K {
    let mut k = K::default();
    *k.meta_mut() = metadata;
    k
}

/// Reports each invalid object once per generation: a Warning Event and an `InvalidSpec` condition. Not per
/// resourceVersion: the condition we write makes a new one, which would report again, forever.
pub async fn report(client: Client, recorder: Recorder, mut invalid: mpsc::UnboundedReceiver<Invalid>) {
    let mut reported: HashMap<String, Option<String>> = HashMap::new();
    while let Some(bad) = invalid.next().await {
        let uid = bad.metadata.uid.clone().unwrap_or_default();
        let generation = bad.metadata.generation.map(|g| g.to_string());
        if reported.get(&uid) == Some(&generation) {
            continue;
        }
        reported.insert(uid, generation);
        let name = bad.metadata.name.clone().unwrap_or_default();
        let message = format!(
            "the stored object does not fit the {} schema the operator knows, so it is ignored until fixed: {}",
            bad.resource.kind, bad.error
        );
        tracing::warn!(kind = %bad.resource.kind, %name, "{message}");
        let reference = ObjectReference {
            api_version: Some(bad.resource.api_version.clone()),
            kind: Some(bad.resource.kind.clone()),
            name: Some(name.clone()),
            uid: bad.metadata.uid.clone(),
            ..Default::default()
        };
        let event = Event {
            type_: EventType::Warning,
            reason: Reason::InvalidSpec.to_string(),
            note: Some(message.chars().take(1000).collect()),
            action: EventAction::Decode.as_str().into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, "cannot publish event");
        }
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &bad.resource);
        let status = json!({
            "apiVersion": bad.resource.api_version,
            "kind": bad.resource.kind,
            "status": {"conditions": [{
                "type": ConditionType::Ready.as_str(), "status": "False", "reason": Reason::InvalidSpec.as_str(),
                "message": message,
                "observedGeneration": bad.metadata.generation,
                "lastTransitionTime": Timestamp::now().to_string(),
            }]},
        });
        if let Err(e) =
            api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&status)).await
        {
            tracing::warn!(error = %e, %name, "cannot record InvalidSpec in the status");
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;
    use kube::ResourceExt;
    use kube::runtime::events::Reporter;
    use zenml_api::Project;

    use super::*;
    use crate::controllers::mocked::api::ApiServer;

    fn meta(generation: i64) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            uid: Some("uid-p".into()),
            generation: Some(generation),
            ..Default::default()
        }
    }

    fn good(generation: i64) -> DeserializeGuard<Project> {
        DeserializeGuard(Ok(Project { metadata: meta(generation), ..Default::default() }))
    }

    fn bad(generation: i64) -> DeserializeGuard<Project> {
        let error = format!("spec.quota.hard: invalid type (generation {generation})");
        DeserializeGuard(Err(InvalidObject { error, metadata: meta(generation) }))
    }

    fn show(event: &watcher::Result<watcher::Event<Project>>) -> String {
        match event {
            Ok(watcher::Event::Apply(p)) => format!("Apply {} {:?}", p.name_any(), p.meta().generation),
            Ok(watcher::Event::Delete(p)) => format!("Delete {} {:?}", p.name_any(), p.meta().generation),
            Ok(watcher::Event::Init) => "Init".into(),
            Ok(watcher::Event::InitApply(p)) => format!("InitApply {} {:?}", p.name_any(), p.meta().generation),
            Ok(watcher::Event::InitDone) => "InitDone".into(),
            Err(_) => "Error".into(),
        }
    }

    /// The events `decodable` hands on for `events`, and the generations it reported as invalid.
    async fn decoded(
        events: Vec<watcher::Result<watcher::Event<DeserializeGuard<Project>>>>,
    ) -> (Vec<String>, Vec<Option<i64>>) {
        let (tx, rx) = mpsc::unbounded();
        let out: Vec<_> = decodable(stream::iter(events), tx).collect().await;
        let reported: Vec<Invalid> = rx.collect().await;
        (out.iter().map(show).collect(), reported.iter().map(|i| i.metadata.generation).collect())
    }

    #[tokio::test]
    async fn an_object_that_stops_decoding_is_deleted_from_the_caches_reported_and_comes_back_once_fixed() {
        let (out, reported) = decoded(vec![
            Ok(watcher::Event::Apply(good(1))),
            Ok(watcher::Event::Apply(bad(2))),
            Ok(watcher::Event::Apply(good(3))),
        ])
        .await;
        assert_eq!(out, ["Apply p Some(1)", "Delete p Some(2)", "Apply p Some(3)"]);
        assert_eq!(reported, [Some(2)], "reported once, for the version that does not decode");
    }

    #[tokio::test]
    async fn a_relist_leaves_out_what_does_not_decode_and_a_deletion_passes_either_way() {
        let (out, reported) = decoded(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(good(1))),
            Ok(watcher::Event::InitApply(bad(2))),
            Ok(watcher::Event::InitDone),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Delete(bad(2))),
            Ok(watcher::Event::Delete(good(1))),
        ])
        .await;
        assert_eq!(
            out,
            ["Init", "InitApply p Some(1)", "InitDone", "Error", "Delete p Some(2)", "Delete p Some(1)"],
            "left out of the relist: the relist itself makes the caches forget it"
        );
        assert_eq!(reported, [Some(2)], "a deletion is not reported");
    }

    #[tokio::test]
    async fn each_invalid_generation_is_reported_once_with_an_event_and_an_invalid_spec_condition() {
        let (client, server) = ApiServer::start();
        let recorder = Recorder::new(client.clone(), Reporter { controller: "zenml-operator".into(), instance: None });
        let (tx, rx) = mpsc::unbounded();
        let invalid = |generation| {
            let DeserializeGuard(Err(bad)) = bad(generation) else { unreachable!() };
            Invalid { resource: ApiResource::erase::<Project>(&()), metadata: bad.metadata, error: bad.error }
        };
        for generation in [2, 2, 2, 3] {
            tx.unbounded_send(invalid(generation)).unwrap();
        }
        drop(tx);

        report(client, recorder, rx).await;

        let writes = server.writes();
        assert_eq!(writes.len(), 2, "{:?}", server.lines());
        assert!(
            writes.iter().all(|w| w.line() == "PATCH /apis/zenml.io/v1alpha1/projects/p/status" && w.is_our_apply())
        );
        let condition = &writes[0].body["status"]["conditions"][0];
        assert_eq!(
            (&condition["type"], &condition["status"], &condition["reason"]),
            (&"Ready".into(), &"False".into(), &"InvalidSpec".into())
        );
        assert!(condition["message"].as_str().unwrap().contains("spec.quota.hard"), "names the field");
        assert_eq!(writes[1].body["status"]["conditions"][0]["observedGeneration"], 3);
        let events = server.events();
        assert_eq!(events.len(), 2, "one Warning Event per generation");
        assert!(events.iter().all(|e| e.body["type"] == "Warning" && e.body["reason"] == "InvalidSpec"));
    }
}
