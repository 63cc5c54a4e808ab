//! Status writes the cache has not seen yet.
//!
//! A reconcile computes the status from the cached object. When a second reconcile of the same object follows the first
//! before the watch has delivered the first one's status write (a child created by the first one wakes it, say), the
//! cache still holds the old status, so the second computes the same change again and writes it again, with a second
//! Event (the benchmark counted such repeats: docs/benchmarks.md). We remember what we wrote and from which version of the object; a write is skipped only while the cache
//! still shows exactly that version and the new status says the same. Nothing is lost by skipping: our write produces a
//! watch event for the object, which reconciles it again with the fresh status; and any other change to the object
//! moves its version, which ends the skip.
//!
//! One change of version is our own and leaves the status as it was: adding our finalizer, in the same reconcile that
//! then writes the first status. The finalizer's watch event wakes a second reconcile that reads the new version
//! without our status; it counts as the version the status was computed from (without that, the benchmark counted
//! nearly two status writes and Ready Events per project: docs/benchmarks.md).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::digest;
use super::expiring::Expiring;

/// After this, an entry no longer suppresses anything (a watch that lost our event would otherwise hide a needed
/// write until its next relist).
const TTL: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Entry {
    /// The resourceVersions of the object that carry the status the write was computed from: the cached one it was
    /// read at, and the one our own finalizer write made from it, if any.
    based_on: Vec<String>,
    /// `None` while only the finalizer has been written.
    written: Option<Digest>,
}

/// What is remembered of a status written: a digest, and its Ready condition; not the status, because entries of
/// objects not reconciled again stay until swept.
#[derive(Clone, Debug, PartialEq)]
pub struct Digest {
    /// Of the status without `lastTransitionTime`s: two reconciles a moment apart stamp a new transition with
    /// different instants but mean the same status.
    hash: u64,
    /// Ready's status and reason.
    pub ready: Option<(String, String)>,
}

impl Digest {
    pub fn of<S: Serialize>(status: &S) -> Digest {
        let mut v = serde_json::to_value(status).unwrap_or_default();
        let mut ready = None;
        if let Some(conds) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
            for c in conds.iter_mut().filter_map(|c| c.as_object_mut()) {
                c.remove("lastTransitionTime");
                let field = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
                if field("type") == "Ready" {
                    ready = Some((field("status"), field("reason")));
                }
            }
        }
        Digest { hash: digest::of_json(&v), ready }
    }
}

/// Status writes by object uid.
pub struct InFlight {
    entries: Expiring<String, Entry>,
}

impl Default for InFlight {
    fn default() -> Self {
        Self { entries: Expiring::new(TTL) }
    }
}

impl InFlight {
    /// Records that `version` of `uid` is our own write on top of `before` that left the status unchanged.
    pub fn same_status(&self, uid: &str, before: &str, version: &str) {
        let entry = Entry { based_on: vec![before.to_owned(), version.to_owned()], written: None };
        self.entries.insert(uid.to_owned(), entry, Instant::now());
    }

    /// True when a status with digest `status` was already written for the object `uid` from the version the cache
    /// still holds.
    pub fn already_written(&self, uid: &str, cached_version: &str, status: &Digest) -> bool {
        self.current(uid, cached_version).and_then(|e| e.written).is_some_and(|w| w.hash == status.hash)
    }

    /// The Ready (status, reason) of our last write for `uid` while the cache still holds the version it was computed
    /// from: what was last reported, when the cached status is older than our own write.
    pub fn ready_written(&self, uid: &str, cached_version: &str) -> Option<(String, String)> {
        self.current(uid, cached_version)?.written?.ready
    }

    /// Remembers a successful status write for `uid`, computed from the cached object at `cached_version`.
    pub fn wrote(&self, uid: &str, cached_version: &str, status: Digest) {
        let based_on = self.current(uid, cached_version).map(|e| e.based_on);
        let based_on = based_on.unwrap_or_else(|| vec![cached_version.to_owned()]);
        self.entries.insert(uid.to_owned(), Entry { based_on, written: Some(status) }, Instant::now());
    }

    /// The entry of `uid` if the cache still shows a version it is based on; otherwise the cache has moved on (or it
    /// has been too long), the entry is dropped, and the cache is compared against from now on.
    fn current(&self, uid: &str, cached_version: &str) -> Option<Entry> {
        let based_on_cached = |e: &Entry| e.based_on.iter().any(|v| v == cached_version);
        self.entries.get_if(uid, Instant::now(), based_on_cached).map(|(e, _)| e)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(reason: &str, at: &str) -> Digest {
        Digest::of(
            &json!({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True", "reason": reason, "lastTransitionTime": at}]}),
        )
    }

    #[test]
    fn skips_the_same_status_from_the_same_version_only() {
        let f = InFlight::default();
        assert!(!f.already_written("u1", "10", &status("Bound", "t1")));
        f.wrote("u1", "10", status("Bound", "t1"));
        // Same version in the cache, same meaning (a later transition stamp): in flight.
        assert!(f.already_written("u1", "10", &status("Bound", "t2")));
        // A different status is a new decision: write it.
        assert!(!f.already_written("u1", "10", &status("ProjectNotReady", "t2")));
        // Another object is unaffected.
        assert!(!f.already_written("u2", "10", &status("Bound", "t1")));
    }

    #[test]
    fn a_newer_version_in_the_cache_ends_the_skip() {
        let f = InFlight::default();
        f.wrote("u1", "10", status("Bound", "t1"));
        assert!(!f.already_written("u1", "11", &status("Bound", "t1")));
        assert_eq!(f.len(), 0, "a superseded entry is dropped");
        // Even if the cache were to show the old version again, nothing is suppressed any more.
        assert!(!f.already_written("u1", "10", &status("Bound", "t1")));
    }

    #[test]
    fn our_own_finalizer_write_does_not_end_the_skip() {
        let f = InFlight::default();
        // Reconcile 1 reads version 10, adds the finalizer (version 11), writes the status computed from 10.
        f.same_status("u1", "10", "11");
        f.wrote("u1", "10", status("Ready", "t1"));
        // Reconcile 2, woken by the finalizer's event, reads 11 without that status: the same status is in flight.
        assert!(f.already_written("u1", "11", &status("Ready", "t2")));
        assert_eq!(f.ready_written("u1", "11"), Some(("True".into(), "Ready".into())));
        // Once the status write itself arrives (12), the cache knows better.
        assert!(!f.already_written("u1", "12", &status("Ready", "t2")));
        // (Two reconciles of one object never run at once, so the second cannot read 11 before the first has written.)
    }

    #[test]
    fn the_ready_last_written_stands_only_while_the_cache_lags_behind_it() {
        let f = InFlight::default();
        assert_eq!(status("Bound", "t1").ready, Some(("True".into(), "Bound".into())));
        assert_eq!(Digest::of(&json!({"conditions": []})).ready, None);
        f.wrote("u1", "10", status("Bound", "t1"));
        assert_eq!(f.ready_written("u1", "10"), Some(("True".into(), "Bound".into())));
        assert_eq!(f.ready_written("u1", "11"), None, "the cache holds a newer version: it knows better");
        assert_eq!(f.ready_written("u2", "10"), None);
    }
}
