//! A map of things remembered for a short while: writes the caches have not delivered yet, statuses written, when a
//! project's status was last written. Each entry stops counting after the map's time to live; entries are usually
//! dropped sooner, when what they wait for is seen, and the rest are swept by age once the map grows past
//! [`SWEEP_AT`], so the map stays small without a timer.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Entries are swept by age once the map holds this many.
pub const SWEEP_AT: usize = 4096;

pub struct Expiring<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// Remembers `value` for `key` from `now` on, replacing what was there.
    pub fn insert(&self, key: K, value: V, now: Instant) {
        let mut entries = self.entries.lock();
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) <= self.ttl);
        }
        entries.insert(key, (value, now));
    }

    /// The live entry of `key` and when it was made; an expired one is dropped.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_if(key, now, |_| true)
    }

    /// The live entry of `key` if `still` holds for it; otherwise (or expired) it is dropped.
    pub fn get_if<Q>(&self, key: &Q, now: Instant, still: impl FnOnce(&V) -> bool) -> Option<(V, Instant)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock();
        let (value, at) = entries.get(key)?;
        if now.saturating_duration_since(*at) <= self.ttl && still(value) {
            return Some((value.clone(), *at));
        }
        entries.remove(key);
        None
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.lock().remove(key);
    }

    pub fn clear(&self) {
        self.entries.lock().clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_counts_until_its_time_to_live_ends_and_is_then_dropped() {
        let map = Expiring::new(Duration::from_secs(10));
        let t0 = Instant::now();
        map.insert("a", 1, t0);
        assert_eq!(map.get("a", t0 + Duration::from_secs(10)), Some((1, t0)));
        assert_eq!(map.get("a", t0 + Duration::from_secs(11)), None);
        assert_eq!(map.len(), 0, "the expired entry is dropped when asked for");
    }

    #[test]
    fn an_entry_that_no_longer_holds_is_dropped() {
        let map = Expiring::new(Duration::from_secs(10));
        let t0 = Instant::now();
        map.insert("a", 1, t0);
        assert_eq!(map.get_if("a", t0, |v| *v == 2), None);
        assert_eq!(map.get("a", t0), None);
    }

    #[test]
    fn expired_entries_are_swept_once_the_map_is_large() {
        let map = Expiring::new(Duration::from_secs(10));
        let t0 = Instant::now();
        for i in 0..SWEEP_AT {
            map.insert(i, (), t0);
        }
        map.insert(SWEEP_AT, (), t0 + Duration::from_secs(11));
        assert_eq!(map.len(), 1, "only the fresh entry is left");
    }
}
