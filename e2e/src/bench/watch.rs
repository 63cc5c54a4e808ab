//! Waiting without polling: watches that record when objects become Ready, or that see the last of them go.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{Bench, Result};

pub(super) fn is_ready(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// What a watch has seen of a set of objects: when each was first seen Ready.
#[derive(Default)]
pub(super) struct Readiness {
    pub ready: HashMap<String, Instant>,
}

/// A watch recording when objects become Ready, so waiting never polls the API server.
pub(super) struct Tracker {
    pub state: Arc<Mutex<Readiness>>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tracker {
    pub(super) fn start<K>(api: Api<K>, selector: &str, ready: fn(&K) -> bool) -> Tracker
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let state = Arc::new(Mutex::new(Readiness::default()));
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let shared = state.clone();
        let stream = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let now = Instant::now();
                {
                    let mut s = shared.lock().expect("not poisoned");
                    match event {
                        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                            if ready(&o) {
                                s.ready.entry(o.name_any()).or_insert(now);
                            }
                        }
                        watcher::Event::Delete(_) | watcher::Event::Init | watcher::Event::InitDone => {}
                    }
                }
                tx.send_modify(|v| *v += 1);
            }
        });
        Tracker { state, changed, task }
    }

    pub(super) async fn wait(&self, timeout: Duration, what: &str, done: impl Fn(&Readiness) -> bool) -> Result<()> {
        let mut changed = self.changed.clone();
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.state.lock().expect("not poisoned")) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("timed out after {timeout:?} waiting for {what}").into());
            }
            // Woken by the watch; the timeout only bounds the wait.
            let _ = tokio::time::timeout(left, changed.changed()).await;
        }
    }

    /// Like `wait`, saying how far it got every 10 s.
    pub(super) async fn wait_progress(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Readiness) -> bool,
        progress: &impl Fn() -> String,
        bench: &Bench,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait(left.min(Duration::from_secs(10)), what, &done).await {
                Ok(()) => return Ok(()),
                Err(e) if left <= Duration::from_secs(10) => return Err(e),
                Err(_) => bench.say(&progress()),
            }
        }
    }
}

/// Waits, with a watch, until no object matches `selector`.
pub(super) async fn wait_gone<K>(
    api: Api<K>,
    selector: &str,
    timeout: Duration,
    what: &str,
    bench: &Bench,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default().labels(selector)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let (mut present, mut listing) = (HashSet::new(), HashSet::new());
    let mut synced = false;
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("timed out after {timeout:?} waiting for {what}: {} left", present.len()).into());
        }
        let event = match tokio::time::timeout(left.min(Duration::from_secs(15)), stream.next()).await {
            Ok(Some(Ok(e))) => e,
            Ok(Some(Err(_))) => continue,
            Ok(None) => return Err(format!("the watch ended while waiting for {what}").into()),
            Err(_) => {
                if said.elapsed() >= Duration::from_secs(15) {
                    bench.say(&format!("waiting for {what}: {} left", present.len()));
                    said = Instant::now();
                }
                continue;
            }
        };
        let key = |o: &K| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
        match event {
            watcher::Event::Init => listing.clear(),
            watcher::Event::InitApply(o) => {
                listing.insert(key(&o));
            }
            watcher::Event::InitDone => {
                present = std::mem::take(&mut listing);
                synced = true;
            }
            watcher::Event::Apply(o) => {
                present.insert(key(&o));
            }
            watcher::Event::Delete(o) => {
                present.remove(&key(&o));
            }
        }
        if synced && present.is_empty() {
            return Ok(());
        }
    }
}
