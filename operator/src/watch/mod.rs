//! The watches the controllers share and the caches they fill: reconcilers read these, never the API server.

pub mod binding_index;
pub mod cache;
pub mod guard;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

/// Memory: managedFields and client-side-apply copies are never read, and at thousands of objects they would be most
/// of the cache.
pub fn strip<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// How every watch lists: from the API server's watch cache ("any" resourceVersion, as client-go's informers start),
/// which keeps an operator restart at thousands of projects off etcd.
pub fn list_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// A watch of one of our own kinds into a kube store; objects that do not decode are reported to `invalid` and left
/// out (see `guard`).
pub fn ours<K>(
    client: &Client,
    invalid: &mpsc::UnboundedSender<guard::Invalid>,
) -> (Store<K>, impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Default + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(Api::<DeserializeGuard<K>>::all(client.clone()), list_config());
    (reader, guard::decodable(events, invalid.clone()).default_backoff().modify(strip).reflect(writer))
}

/// A watch of cluster-scoped objects selected by `config` into a kube store, with the objects it touches.
pub fn cached<K>(
    client: &Client,
    config: watcher::Config,
) -> (Store<K>, impl Stream<Item = watcher::Result<K>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    cached_from(Api::all(client.clone()), config)
}

/// Like [`cached`], from any `api`: one namespace's objects, where the operator may read no others.
pub fn cached_from<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, impl Stream<Item = watcher::Result<K>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, config).default_backoff().modify(strip).reflect(writer).touched_objects();
    (reader, stream)
}

/// Feeds what a watch (already writing its cache) touched to `N` consumers, so controllers share one watch instead of
/// each watching again.
///
/// Not kube's shared store: its subscribers are told of applied objects only, never of deleted ones, and a deleted
/// binding must wake its project (or a removed admin would keep its delegation). Everything touched, deletions
/// included, goes to every consumer; the channels are bounded, so a slow consumer slows the watch instead of growing
/// a queue.
pub fn fan_out<T, S, const N: usize>(
    touched: S,
    buffer: usize,
    what: &'static str,
) -> ([mpsc::Receiver<T>; N], impl Future<Output = ()> + Send + 'static)
where
    T: Clone + Send + 'static,
    S: Stream<Item = watcher::Result<T>> + Send + 'static,
{
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..N).map(|_| mpsc::channel(buffer)).unzip();
    let receivers: [mpsc::Receiver<T>; N] = receivers.try_into().unwrap_or_else(|_| unreachable!("N receivers"));
    let watch = touched.fold(senders, move |mut senders, touched| async move {
        match touched {
            Ok(obj) => {
                for s in &mut senders {
                    // A closed receiver means its controller has stopped: we are shutting down.
                    let _ = s.send(obj.clone()).await;
                }
            }
            Err(e) => tracing::warn!(watch = what, "watch failed (retrying with backoff): {e}"),
        }
        senders
    });
    (receivers, watch.map(|_| ()))
}

/// Only new generations and deletions: for the workspace's spec that matters to projects and bindings, for a
/// project's spec that matters to its workspace. Not status changes: at bulk, every project's status writes would
/// otherwise each make its workspace decide for all N projects again.
pub fn spec_changes<K>(stream: mpsc::Receiver<Arc<K>>, store: Store<K>) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    // By uid: an object deleted and created again under its name starts at generation 1 again.
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    stream.filter(move |obj| {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let changed = if deleted(&store, obj) {
            generations.remove(&uid);
            true
        } else {
            generations.insert(uid, obj.meta().generation) != Some(obj.meta().generation)
        };
        futures::future::ready(changed)
    })
}

/// Whether `obj`, just handed on by the watch that feeds `store`, was deleted: the watch writes the store before
/// handing an object on, so not in it (or another object under its name) means deleted.
pub fn deleted<K>(store: &Store<K>, obj: &K) -> bool
where
    K: Resource<DynamicType = ()> + Clone,
{
    store.get(&ObjectRef::from_obj(obj)).is_none_or(|cached| cached.meta().uid != obj.meta().uid)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::stream;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::ResourceExt;
    use kube::api::ObjectMeta;

    use super::*;

    fn cm(name: &str) -> ConfigMap {
        ConfigMap { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
    }

    fn names(received: Vec<ConfigMap>) -> Vec<String> {
        received.iter().map(|c| c.name_any()).collect()
    }

    #[tokio::test]
    async fn every_consumer_gets_every_touched_object_in_order_deletions_included_and_errors_skipped() {
        let events = stream::iter([
            Ok(watcher::Event::Apply(cm("a"))),
            Ok(watcher::Event::Delete(cm("b"))),
            Err(watcher::Error::NoResourceVersion),
            Ok(watcher::Event::Apply(cm("c"))),
            Ok(watcher::Event::Delete(cm("a"))),
        ]);
        let ([first, second, third], watch) = fan_out::<_, _, 3>(events.touched_objects(), 1, "test");
        tokio::spawn(watch);
        // Read together: the channels are bounded, so one consumer left unread would hold up the others.
        let received = futures::future::join_all([first, second, third].map(|rx| rx.collect::<Vec<_>>())).await;
        for r in received {
            assert_eq!(names(r), ["a", "b", "c", "a"]);
        }
    }

    #[tokio::test]
    async fn a_consumer_that_stopped_does_not_hold_up_the_others() {
        let objects = stream::iter(["a", "b", "c"].map(|n| Ok(cm(n))));
        let ([stopped, running], watch) = fan_out::<_, _, 2>(objects, 1, "test");
        drop(stopped);
        let watch = tokio::spawn(watch);
        assert_eq!(names(running.collect().await), ["a", "b", "c"]);
        tokio::time::timeout(std::time::Duration::from_secs(1), watch)
            .await
            .expect("the watch ran to its end")
            .unwrap();
    }

    #[tokio::test]
    async fn a_slow_consumer_slows_the_watch_instead_of_queueing_without_bound() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let objects = stream::iter(0..100).map(|i| Ok(cm(&i.to_string()))).inspect(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let ([slow, fast], watch) = fan_out::<_, _, 2>(objects, 1, "test");
        let watch = tokio::spawn(watch);
        let fast = tokio::spawn(fast.collect::<Vec<_>>());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // The buffer (1) plus the sender's own slot, plus the one object waiting to be sent.
        assert!(pulled.load(Ordering::SeqCst) <= 3, "pulled {} from the watch", pulled.load(Ordering::SeqCst));
        assert!(!fast.is_finished(), "the fast consumer waits for the slow one");

        let slow: Vec<ConfigMap> = slow.collect().await;
        assert_eq!(slow.len(), 100);
        assert_eq!(fast.await.unwrap().len(), 100);
        watch.await.unwrap();
    }
}
