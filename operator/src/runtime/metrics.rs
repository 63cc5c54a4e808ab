//! Prometheus metrics: reconciles, failures by reason, reconcile durations and writes, per kind.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabel {
    pub kind: String,
    pub reason: String,
}

pub struct Metrics {
    pub reconciles: Family<KindLabel, Counter>,
    pub failures: Family<FailureLabel, Counter>,
    pub duration: Family<KindLabel, Histogram>,
    /// Objects created, updated or deleted, by the kind of object written.
    pub writes: Family<KindLabel, Counter>,
    /// 1 while this replica holds the leader lease (or runs without election).
    pub leader: Gauge,
    /// Every request to the API server, by HTTP method: the proof that an outage makes the operator back off, not
    /// spin (the API server's own metrics cannot tell clients apart).
    pub api_requests: Family<MethodLabel, Counter>,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<KindLabel, Counter>::default();
        let failures = Family::<FailureLabel, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let writes = Family::<KindLabel, Counter>::default();
        let mut registry = Registry::with_prefix("zenml_operator");
        registry.register("reconciles", "Reconciles, by kind", reconciles.clone());
        registry.register("reconcile_failures", "Failed reconciles, by kind and reason", failures.clone());
        registry.register("reconcile_duration_seconds", "Reconcile duration, by kind", duration.clone());
        registry.register("writes", "Objects created, updated or deleted, by kind", writes.clone());
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica is the leader", leader.clone());
        let api_requests = Family::<MethodLabel, Counter>::default();
        registry.register("api_requests", "Requests sent to the API server, by method", api_requests.clone());
        Self { reconciles, failures, duration, writes, leader, api_requests, registry }
    }
}

impl Metrics {
    /// Counts a reconcile and observes its duration when the returned guard drops.
    pub fn reconcile_timer(&self, kind: &str) -> ReconcileTimer<'_> {
        let label = KindLabel { kind: kind.to_owned() };
        self.reconciles.get_or_create(&label).inc();
        ReconcileTimer { metrics: self, label, start: Instant::now() }
    }

    pub fn failure(&self, kind: &str, reason: &str) {
        self.failures.get_or_create(&FailureLabel { kind: kind.to_owned(), reason: reason.to_owned() }).inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    label: KindLabel,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics.duration.get_or_create(&self.label).observe(self.start.elapsed().as_secs_f64());
    }
}
