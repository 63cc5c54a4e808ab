//! Leader election on a `coordination.k8s.io` Lease, so that of several replicas only one reconciles and writes.
//!
//! A lease is taken over when its record has not changed for `lease_duration` as measured by *our* clock since we
//! last saw it change (as client-go does), so clock skew between replicas cannot make two leaders. Every write is a
//! replace preconditioned on the resourceVersion we read: of two candidates racing, the API server lets one win.
//! A leader that cannot renew within `renew_deadline` stops (the process exits and restarts), rather than risk
//! acting beside a new leader.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// Who we are: the pod name, or host and pid outside a cluster.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// What we last saw of the lease, and when we saw it change.
struct Observed {
    holder: Option<String>,
    resource_version: Option<String>,
    at: Instant,
}

pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    observed: Option<Observed>,
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config, observed: None }
    }

    /// Waits until we hold the lease.
    pub async fn acquire(&mut self) -> Result<()> {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.config.name, namespace = %self.config.namespace, identity = %self.config.identity, "became leader");
                    return Ok(());
                }
                Ok(false) => {
                    if !announced {
                        let holder = self.observed.as_ref().and_then(|o| o.holder.clone()).unwrap_or_default();
                        tracing::info!(%holder, "another replica leads; standing by");
                        announced = true;
                    }
                }
                Err(e) => tracing::warn!("leader election: {e}"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease until renewing fails for longer than the renew deadline; then returns the error.
    pub async fn keep(&mut self) -> Error {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => return Error::LostLeadership("another replica took the lease".into()),
                Err(e) => {
                    tracing::warn!("cannot renew the leader lease: {e}");
                    if last_renewed.elapsed() > self.config.renew_deadline {
                        return Error::LostLeadership(format!(
                            "could not renew within {:?}: {e}",
                            self.config.renew_deadline
                        ));
                    }
                }
            }
        }
    }

    /// Gives the lease up on a clean shutdown, so a standby takes over at once instead of after it expires.
    pub async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else { return };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(&self.config.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now());
        match self.api.replace(&self.config.name, &PostParams::default(), &lease).await {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(e) => tracing::warn!("cannot release the leader lease: {e}"),
        }
    }

    /// One round: take the lease if it is free or expired, renew it if it is ours. `Ok(true)` when we hold it.
    async fn try_acquire_or_renew(&mut self) -> Result<bool> {
        let c = self.config.clone();
        let kube_err = |e| Error::kube("update", "Lease", format!("{}/{}", c.namespace, c.name), e);
        let Some(mut lease) = self.api.get_opt(&c.name).await.map_err(kube_err)? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(c.name.clone()),
                    namespace: Some(c.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(None, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(l) => {
                    self.observe(&l);
                    Ok(true)
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(kube_err(e)),
            };
        };
        self.observe(&lease);
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(&c.identity);
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let free = spec.holder_identity.as_deref().unwrap_or_default().is_empty();
        let expired = self.observed.as_ref().is_some_and(|o| o.at.elapsed() > duration);
        if !(ours || free || expired) {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!ours);
        lease.spec = Some(LeaseSpec {
            acquire_time: if ours { spec.acquire_time.clone() } else { Some(now()) },
            ..self.spec(spec.acquire_time, transitions)
        });
        // Preconditioned on the resourceVersion just read: a racing candidate gets a conflict, not the lease.
        match self.api.replace(&c.name, &PostParams::default(), &lease).await {
            Ok(l) => {
                self.observe(&l);
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(kube_err(e)),
        }
    }

    fn spec(&self, acquired: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(self.config.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(acquired.unwrap_or_else(now)),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    fn observe(&mut self, lease: &Lease) {
        let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
        let rv = lease.metadata.resource_version.clone();
        let changed = self.observed.as_ref().is_none_or(|o| o.resource_version != rv);
        if changed {
            self.observed = Some(Observed { holder, resource_version: rv, at: Instant::now() });
        }
    }
}
