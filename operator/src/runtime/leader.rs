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
        spec.renew_time = Some(MicroTime(Timestamp::now()));
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
            // A new lease starts with no transitions.
            let spec = LeaseSpec {
                lease_transitions: Some(0),
                ..claim(&LeaseSpec::default(), &c.identity, c.lease_duration, Timestamp::now())
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(c.name.clone()),
                    namespace: Some(c.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec),
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
        let unchanged_for =
            self.observed.as_ref().map_or(Duration::ZERO, |o| Instant::now().saturating_duration_since(o.at));
        if decide(&spec, &c.identity, unchanged_for) == Decision::StandBy {
            return Ok(false);
        }
        lease.spec = Some(claim(&spec, &c.identity, c.lease_duration, Timestamp::now()));
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

    fn observe(&mut self, lease: &Lease) {
        self.observed = Some(Observed::after(self.observed.take(), lease, Instant::now()));
    }
}

impl Observed {
    /// What we know after reading `lease` at `now`: its clock restarts only when its record changed.
    fn after(previous: Option<Observed>, lease: &Lease, now: Instant) -> Observed {
        let resource_version = lease.metadata.resource_version.clone();
        match previous {
            Some(o) if o.resource_version == resource_version => o,
            _ => {
                let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                Observed { holder, resource_version, at: now }
            }
        }
    }
}

/// What one round does with the lease it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or its holder has not renewed it for its whole duration: take it.
    Take,
    /// Another replica holds it and renews it.
    StandBy,
}

/// The decision on a lease whose record has not changed for `unchanged_for` by our clock (see the module doc).
fn decide(spec: &LeaseSpec, identity: &str, unchanged_for: Duration) -> Decision {
    if spec.holder_identity.as_deref() == Some(identity) {
        return Decision::Renew;
    }
    let free = spec.holder_identity.as_deref().unwrap_or_default().is_empty();
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
    if free || unchanged_for > duration { Decision::Take } else { Decision::StandBy }
}

/// The lease as we write it to hold it: renewing keeps when we acquired it, taking it over counts a transition.
fn claim(current: &LeaseSpec, identity: &str, lease_duration: Duration, now: Timestamp) -> LeaseSpec {
    let ours = current.holder_identity.as_deref() == Some(identity);
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(lease_duration.as_secs().max(1) as i32),
        acquire_time: if ours { current.acquire_time.clone() } else { Some(MicroTime(now)) },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(current.lease_transitions.unwrap_or(0) + i32::from(!ours)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(15);

    fn held_by(holder: Option<&str>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: seconds,
            acquire_time: Some(MicroTime("2026-01-01T00:00:00Z".parse().unwrap())),
            lease_transitions: Some(3),
            ..Default::default()
        }
    }

    #[test]
    fn a_free_lease_is_taken_at_once() {
        assert_eq!(decide(&held_by(None, Some(15)), "me", Duration::ZERO), Decision::Take);
        assert_eq!(decide(&held_by(Some(""), Some(15)), "me", Duration::ZERO), Decision::Take, "released");
    }

    #[test]
    fn a_lease_another_replica_renews_is_left_to_it() {
        let theirs = held_by(Some("other"), Some(15));
        assert_eq!(decide(&theirs, "me", Duration::ZERO), Decision::StandBy);
        assert_eq!(decide(&theirs, "me", LEASE), Decision::StandBy, "exactly its duration is not yet expired");
    }

    #[test]
    fn a_lease_unchanged_for_longer_than_its_duration_by_our_clock_is_taken_over() {
        let theirs = held_by(Some("other"), Some(15));
        assert_eq!(decide(&theirs, "me", LEASE + Duration::from_millis(1)), Decision::Take);
        // A duration that is missing or nonsense counts as zero: expired as soon as any time has passed, but never
        // on the very read that saw the record change.
        for seconds in [None, Some(0), Some(-5)] {
            let odd = held_by(Some("other"), seconds);
            assert_eq!(decide(&odd, "me", Duration::ZERO), Decision::StandBy);
            assert_eq!(decide(&odd, "me", Duration::from_millis(1)), Decision::Take);
        }
    }

    #[test]
    fn our_own_lease_is_renewed_however_long_it_went_unchanged() {
        let ours = held_by(Some("me"), Some(15));
        assert_eq!(decide(&ours, "me", Duration::ZERO), Decision::Renew);
        assert_eq!(decide(&ours, "me", LEASE * 10), Decision::Renew);
    }

    #[test]
    fn renewing_keeps_the_acquire_time_and_taking_over_counts_a_transition() {
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let renewed = claim(&held_by(Some("me"), Some(15)), "me", LEASE, now);
        assert_eq!(renewed.acquire_time, held_by(None, None).acquire_time);
        assert_eq!((renewed.lease_transitions, renewed.renew_time), (Some(3), Some(MicroTime(now))));
        let taken = claim(&held_by(Some("other"), Some(15)), "me", LEASE, now);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!((taken.acquire_time.clone(), taken.lease_transitions), (Some(MicroTime(now)), Some(4)));
        assert_eq!(taken.lease_duration_seconds, Some(15));
        let short = claim(&LeaseSpec::default(), "me", Duration::from_millis(300), now);
        assert_eq!(short.lease_duration_seconds, Some(1), "never a zero-second lease");
    }

    #[test]
    fn the_clock_of_a_lease_restarts_only_when_its_record_changes() {
        let lease = |rv: &str, holder: &str| Lease {
            metadata: ObjectMeta { resource_version: Some(rv.into()), ..Default::default() },
            spec: Some(held_by(Some(holder), Some(15))),
        };
        let t0 = Instant::now();
        let first = Observed::after(None, &lease("1", "other"), t0);
        assert_eq!(first.at, t0);
        let same = Observed::after(Some(first), &lease("1", "other"), t0 + LEASE);
        assert_eq!(same.at, t0, "the same record read again: its clock runs on");
        let renewed = Observed::after(Some(same), &lease("2", "other"), t0 + LEASE * 2);
        assert_eq!((renewed.at, renewed.holder.as_deref()), (t0 + LEASE * 2, Some("other")));
    }
}
