//! One reconciler per kind, each with the function that builds its controller from the watches it is fed; the child
//! kinds a project owns (`children`); and what every controller shares (`context`, the backoff policy below).

pub mod binding;
pub mod children;
pub mod context;
mod default_project;
#[cfg(test)]
pub(crate) mod mocked;
pub mod project;
pub mod templates;
pub mod workspace;

use std::sync::Arc;
use std::time::Duration;

use kube::Resource;
use kube::runtime::controller::{self, Action};
use kube::runtime::watcher;

use self::context::Context;
use crate::Error;

/// How long a failure is remembered without a new one: longer than the longest backoff, so an object that keeps
/// failing keeps its count, while one that was deleted (and is never reconciled again) is forgotten.
pub const FAILURES_TTL: Duration = Duration::from_secs(15 * 60);

/// Exponential backoff per object, reset by a success (see `with_backoff`): 1 s, 2 s, 4 s ... up to 256 s.
pub fn error_policy<K: Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = failure_key(&*obj);
    let n = ctx.failures.get(&key, std::time::Instant::now()).map_or(0, |(n, _)| n).saturating_add(1);
    ctx.failures.insert(key.clone(), n, std::time::Instant::now());
    ctx.metrics.failure(&K::kind(&()), error.metric_label());
    let delay = backoff(n);
    tracing::warn!(object = %key, attempt = n, retry_in = ?delay, "{error}");
    Action::requeue(delay)
}

/// The delay after the `n`th consecutive failure.
fn backoff(n: u32) -> Duration {
    Duration::from_secs(1 << n.clamp(1, 9).saturating_sub(1))
}

/// By uid: an object deleted and created again under its name starts without failures.
fn failure_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let meta = obj.meta();
    format!("{}/{}/{}", K::kind(&()), meta.name.as_deref().unwrap_or_default(), meta.uid.as_deref().unwrap_or_default())
}

/// Wraps a reconciler so that success resets the object's backoff.
pub fn with_backoff<K, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> futures::future::BoxFuture<'static, crate::Result<Action>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = crate::Result<Action>> + Send + 'static,
{
    move |obj, ctx| {
        Box::pin(async move {
            let r = reconcile(obj.clone(), ctx.clone()).await;
            if r.is_ok() {
                ctx.failures.remove(&failure_key(&*obj));
            }
            r
        })
    }
}

/// The backoff a Controller puts over the merge of all its trigger streams: none, because every watch we hand it
/// already backs off on its own (`default_backoff`). kube's default here is a second, shared exponential backoff: after
/// an outage each of the kind's watches reports its errors in turn, the shared delay doubles with each, and meanwhile
/// *every* trigger of the kind waits, the primary watch and the wake channel included (after a kube-apiserver
/// restart, projects took minutes to converge with it and about a second without: docs/benchmarks.md).
pub struct EachWatchBacksOff;

impl Iterator for EachWatchBacksOff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for EachWatchBacksOff {
    fn reset(&mut self) {}
}

/// The controller's own outcome stream: reconciler failures are logged (and counted) by `error_policy`, but errors of
/// the watches that trigger reconciles surface only here, and an outage must show in the log.
pub fn log_queue_errors<K, T>(
    outcome: Result<T, controller::Error<Error, watcher::Error>>,
) -> futures::future::Ready<()>
where
    K: Resource<DynamicType = ()>,
{
    match outcome {
        Err(controller::Error::QueueError(e)) => {
            tracing::warn!(controller = %K::kind(&()), "watch feeding the controller failed (retrying with backoff): {e}")
        }
        Err(controller::Error::RunnerError(e)) => {
            tracing::error!(controller = %K::kind(&()), "controller runner: {e}")
        }
        _ => {}
    }
    futures::future::ready(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_a_second_up_to_256_seconds() {
        let delays: Vec<u64> = (1..=10).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 256]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(256));
    }

    #[test]
    fn a_failing_object_is_remembered_longer_than_its_longest_backoff() {
        assert!(FAILURES_TTL > backoff(u32::MAX) * 2);
    }
}
