//! One reconciler per kind, and the wiring that feeds them from shared watches.

pub mod apply;
pub mod binding;
pub mod conditions;
pub mod context;
pub mod finalizer;
pub mod grants;
pub mod in_flight;
pub mod project;
pub mod status;
pub mod usage;
pub mod workspace;

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::controller::Action;

use self::context::Context;
use crate::Error;

/// Exponential backoff per object, reset by a success (see `record_success`): 1 s, 2 s, 4 s ... up to 5 minutes.
pub fn error_policy<K: kube::Resource<DynamicType = ()>>(obj: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = format!("{}/{}", K::kind(&()), obj.name_any());
    let n = {
        let mut failures = ctx.failures.lock().expect("not poisoned");
        let n = failures.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    ctx.metrics.failure(&K::kind(&()), error.metric_label());
    let delay =
        Duration::from_millis(1000u64.saturating_mul(1 << n.min(9).saturating_sub(1))).min(Duration::from_secs(300));
    tracing::warn!(object = %key, attempt = n, retry_in = ?delay, "{error}");
    Action::requeue(delay)
}

/// Forgets an object's failures after a successful reconcile.
pub fn record_success<K: kube::Resource<DynamicType = ()>>(obj: &K, ctx: &Context) {
    let key = format!("{}/{}", K::kind(&()), obj.name_any());
    let mut failures = ctx.failures.lock().expect("not poisoned");
    failures.remove(&key);
}
