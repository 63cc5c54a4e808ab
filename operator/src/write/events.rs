//! Publishing Events (`events.k8s.io/v1`), a repeat folded into its first Event's series as client-go does.
//!
//! Not kube's `Recorder`: to fold repeats it keeps a whole copy of every Event of the last six minutes, and bulk
//! provisioning publishes several Events per project, so that cache was a large share of the operator's heap
//! (docs/benchmarks.md, "Why the code is shaped so"). Folding needs only where the first Event is and how often it
//! was seen: here that is a name and two numbers per series.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::digest;

pub use kube::runtime::events::{Event, EventType, Reporter};

/// What the operator was doing when it published an Event (the Event's `action`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventAction {
    /// Writing an object's children or delegation.
    Apply,
    /// Reporting an object's readiness.
    Reconcile,
    /// Releasing a retained or adopted namespace.
    Release,
    /// Removing a binding's grant.
    Revoke,
    /// Recreating a namespace deleted by someone else.
    Recreate,
    /// Deleting a project's namespace.
    Delete,
    /// Decoding a stored object, which failed.
    Decode,
}

impl EventAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            EventAction::Apply => "Apply",
            EventAction::Reconcile => "Reconcile",
            EventAction::Release => "Release",
            EventAction::Revoke => "Revoke",
            EventAction::Recreate => "Recreate",
            EventAction::Delete => "Delete",
            EventAction::Decode => "Decode",
        }
    }
}

/// `Warning` when `ok` is false.
pub fn type_for(ok: bool) -> EventType {
    if ok { EventType::Normal } else { EventType::Warning }
}

/// How long a series stays open: a repeat after this starts a new Event (client-go's value).
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    series: std::sync::Arc<parking_lot::Mutex<Series>>,
}

impl Recorder {
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let instance = reporter.instance.clone().unwrap_or_else(|| reporter.controller.clone());
        Recorder { client, controller: reporter.controller, instance, series: Default::default() }
    }

    /// Creates an Event about `regarding` (cluster-scoped objects' Events go to `default`), or, when the same Event
    /// (type, action, reason, objects and note) was published within six minutes, counts it in that one's series.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = self.key(ev, regarding);
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let repeat = self.series.lock().observe(key, now);
        if let Some(Repeat { name, count }) = repeat {
            let patch = json!({"series": EventSeries { count, last_observed_time: MicroTime(now) }});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                // Gone (the API server's Event TTL, or deleted by hand): start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let event = self.event(ev, regarding, namespace, now);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.series.lock().opened(key, name, now);
        Ok(())
    }

    /// The identity of an Event for folding, hashed: a collision would at worst count an Event in another's series.
    /// The reporting controller and instance, also in client-go's key, are this recorder's own: the same for all.
    fn key(&self, ev: &Event, regarding: &ObjectReference) -> u64 {
        let objects: Vec<_> = std::iter::once(regarding)
            .chain(ev.secondary.as_ref())
            .map(|r| (&r.api_version, &r.kind, &r.namespace, &r.name, &r.uid))
            .collect();
        digest::of(&(type_is_warning(ev), &ev.action, &ev.reason, &ev.note, objects))
    }

    fn event(&self, ev: &Event, regarding: &ObjectReference, namespace: String, now: Timestamp) -> K8sEvent {
        let prefix = regarding.name.as_deref().unwrap_or(&self.controller);
        K8sEvent {
            metadata: ObjectMeta {
                name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
                namespace: Some(namespace),
                ..Default::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(if type_is_warning(ev) { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        }
    }
}

fn type_is_warning(ev: &Event) -> bool {
    matches!(ev.type_, EventType::Warning)
}

/// Open series by Event key: where the first Event is and how often it has been seen.
#[derive(Default)]
struct Series {
    open: HashMap<u64, Open>,
    swept: Option<Timestamp>,
}

struct Open {
    name: String,
    count: i32,
    last: Timestamp,
}

#[derive(Debug, PartialEq)]
struct Repeat {
    name: String,
    count: i32,
}

impl Series {
    /// A repeat of an open series (counted), or `None` for a new Event. Closes expired series first, at most once a
    /// minute (a sweep is O(series)).
    fn observe(&mut self, key: u64, now: Timestamp) -> Option<Repeat> {
        let ttl = k8s_openapi::jiff::SignedDuration::try_from(SERIES_TTL).expect("fits");
        if self.swept.is_none_or(|t| now.duration_since(t) > ttl / 6) {
            self.open.retain(|_, s| now.duration_since(s.last) < ttl);
            self.swept = Some(now);
        }
        let s = self.open.get_mut(&key).filter(|s| now.duration_since(s.last) < ttl)?;
        s.count += 1;
        s.last = now;
        Some(Repeat { name: s.name.clone(), count: s.count })
    }

    /// A new Event was created under `name`.
    fn opened(&mut self, key: u64, name: String, now: Timestamp) {
        self.open.insert(key, Open { name, count: 1, last: now });
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::SignedDuration;

    use super::*;

    #[test]
    fn repeats_count_in_the_series_until_it_expires() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let mut s = Series::default();
        assert_eq!(s.observe(1, t0), None);
        s.opened(1, "p.1".into(), t0);
        let t1 = t0 + SignedDuration::from_secs(60);
        assert_eq!(s.observe(1, t1), Some(Repeat { name: "p.1".into(), count: 2 }));
        assert_eq!(s.observe(2, t1), None, "another key is another Event");
        // Six minutes after the last repeat (not the first), the series is closed.
        let t2 = t1 + SignedDuration::from_secs(5 * 60);
        assert_eq!(s.observe(1, t2), Some(Repeat { name: "p.1".into(), count: 3 }));
        let t3 = t2 + SignedDuration::from_secs(6 * 60 + 1);
        assert_eq!(s.observe(1, t3), None);
    }

    #[test]
    fn expired_series_are_forgotten() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let mut s = Series::default();
        for k in 0..1000 {
            s.opened(k, format!("e.{k}"), t0);
        }
        s.observe(5000, t0 + SignedDuration::from_secs(7 * 60));
        assert!(s.open.is_empty(), "{} series kept", s.open.len());
    }
}
