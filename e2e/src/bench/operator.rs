//! The benchmark's own operator: no other may work on the cluster meanwhile; ours runs under its own identity,
//! must lead, and counts as settled once it has finished no reconcile for a while.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::config::Kubeconfig;
use kube::{Api, ResourceExt};

use super::metrics::metric;
use super::{Bench, Result};
use crate::operator::Operator;

/// The leader Lease the benchmark's operator joins (the operator's defaults outside a cluster).
const LEASE_NAMESPACE: &str = "default";
const LEASE_NAME: &str = "zenml-operator";

impl Bench {
    /// Waits until no other operator can reconcile the benchmark's objects: no local `zenml-operator run` talking to
    /// this API server, no Lease named `zenml-operator` held anywhere in the cluster. Their writes would be counted
    /// (or fought over); the benchmark's operator must be the only one.
    pub(super) async fn refuse_other_operators(&self) -> Result<()> {
        let deadline = Instant::now() + self.s.leader_timeout;
        let mut said = false;
        loop {
            let local = local_operators(&self.server);
            let leases = self.held_leases().await?;
            if local.is_empty() && leases.is_empty() {
                return Ok(());
            }
            let what = local.iter().chain(&leases).cloned().collect::<Vec<_>>().join("; ");
            if Instant::now() >= deadline {
                return Err(format!(
                    "another zenml-operator works on this cluster ({what}); its writes would mix with the \
                     benchmark's and double them. Stop it first (`make demo`'s: make cluster-down, or kill the pid; \
                     a test's stops when the test ends) and run the benchmark again"
                )
                .into());
            }
            if !said {
                self.say(&format!(
                    "waiting up to {:?} for another zenml-operator to stop: {what}",
                    self.s.leader_timeout
                ));
                said = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn held_leases(&self) -> Result<Vec<String>> {
        let leases = Api::<Lease>::all(self.client.clone()).list(&ListParams::default()).await?;
        let now = Timestamp::now().as_second();
        Ok(leases
            .items
            .iter()
            .filter(|l| l.name_any() == LEASE_NAME)
            .filter_map(|l| {
                let spec = l.spec.as_ref()?;
                let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty())?;
                let renewed = spec.renew_time.as_ref()?.0.as_second();
                let valid = i64::from(spec.lease_duration_seconds.unwrap_or(15));
                (renewed + valid >= now)
                    .then(|| format!("Lease {}/{} held by {holder}", l.namespace().unwrap_or_default(), l.name_any()))
            })
            .collect())
    }

    /// Starts the operator (its own identity, the default Lease) and waits until it leads.
    pub(super) async fn start_operator(&self) -> Result<Operator> {
        let bin = self.operator_bin.clone();
        let kubeconfig = self.operator_kubeconfig.clone();
        let log = self.s.operator_log.clone();
        let instance = format!("{}-{}", self.run, self.started.elapsed().as_millis());
        let mut args: Vec<String> =
            ["--instance", &instance, "--lease-namespace", LEASE_NAMESPACE, "--lease-name", LEASE_NAME]
                .map(String::from)
                .into();
        args.extend(self.s.operator_args.iter().cloned());
        let op = tokio::task::spawn_blocking(move || {
            let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![("KUBECONFIG", kubeconfig.as_os_str())];
            if let Some(l) = &log {
                env.push(("RUST_LOG", std::ffi::OsStr::new(l)));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Operator::start_with(&bin, &args, &env)
        })
        .await?;
        let start = Instant::now();
        while op.counter("zenml_operator_leader") != 1 {
            if start.elapsed() > self.s.leader_timeout {
                let holders = self.held_leases().await.unwrap_or_default().join("; ");
                tokio::task::spawn_blocking(move || op.stop()).await?;
                return Err(format!(
                    "the benchmark's operator did not become leader in {:?} ({holders}): another zenml-operator \
                     leads this cluster and would reconcile the benchmark's objects too; stop it and run again",
                    self.s.leader_timeout
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(op)
    }

    /// Waits until the operator has finished no reconcile for `settle_seconds` (or `max` passed); true if it did.
    pub(super) async fn settle(&self, op: &Operator, max: Duration) -> bool {
        self.settle_for(op, Duration::from_secs(self.s.settle_seconds), max).await
    }

    /// Waits until the operator has finished no reconcile for `quiet` (or `max` passed); true if it did.
    pub(super) async fn settle_for(&self, op: &Operator, quiet: Duration, max: Duration) -> bool {
        let start = Instant::now();
        let reconciles =
            || metric(&op.get("/metrics").unwrap_or_default(), "zenml_operator_reconcile_duration_seconds_count", None);
        let mut last = reconciles();
        let mut since = Instant::now();
        while start.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = reconciles();
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return true;
            }
        }
        false
    }
}

/// The operator's own counters.
#[derive(Clone, Debug, Default)]
pub(super) struct OperatorCounts {
    pub writes: u64,
}

impl OperatorCounts {
    pub(super) fn read(op: &Operator) -> OperatorCounts {
        OperatorCounts { writes: op.writes() }
    }
}

/// The API server URL of a kubeconfig's current context.
fn server_of(path: &Path) -> Option<String> {
    let kc = Kubeconfig::read_from(path).ok()?;
    let context = kc.current_context.as_ref()?;
    let ctx = kc.contexts.iter().find(|c| &c.name == context)?.context.as_ref()?;
    let cluster = kc.clusters.iter().find(|c| c.name == ctx.cluster)?.cluster.as_ref()?;
    cluster.server.clone()
}

/// Local `zenml-operator run` processes whose kubeconfig points at `server`.
fn local_operators(server: &str) -> Vec<String> {
    let normalize = |s: &str| s.trim_end_matches('/').to_owned();
    let server = normalize(server);
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return found };
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_operator = args.first().and_then(|a| Path::new(a).file_name()).is_some_and(|f| f == "zenml-operator")
            && args.get(1).is_some_and(|a| a == "run");
        if !is_operator {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let env: HashMap<String, String> = environ
            .split(|b| *b == 0)
            .filter_map(|kv| String::from_utf8_lossy(kv).split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect();
        let kubeconfig = match env.get("KUBECONFIG").and_then(|k| k.split(':').next().map(PathBuf::from)) {
            Some(p) if p.is_relative() => std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default().join(p),
            Some(p) => p,
            None => PathBuf::from(env.get("HOME").cloned().unwrap_or_default()).join(".kube/config"),
        };
        if server_of(&kubeconfig).is_some_and(|s| normalize(&s) == server) {
            found.push(format!("local process {pid}: {}", args.join(" ")));
        }
    }
    found
}
