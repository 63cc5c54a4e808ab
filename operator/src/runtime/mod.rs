//! `zenml-operator run`: connects, checks the CRDs, waits for leadership, starts the shared watches and one
//! controller per kind, serves health and metrics, and stops cleanly on SIGTERM.

pub mod http;
pub mod leader;
pub mod metrics;
mod watches;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::FutureExt;
use futures::channel::mpsc;
use futures::future::Shared;
use kube::api::ListParams;
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use zenml_api::{Project, ProjectRoleBinding, Workspace};

use crate::controllers::context::{Context, Settings};
use crate::controllers::{binding, project, workspace};
use crate::watch::guard;
use crate::{Error, Result};
use leader::{Elector, LeaseConfig};
use metrics::Metrics;

pub struct RunConfig {
    /// Most reconciles of one kind running at once.
    pub concurrency: u16,
    pub metrics_addr: SocketAddr,
    pub settings: Settings,
    /// Identifies this replica in Events.
    pub instance: Option<String>,
    /// Leader election; `None` runs without it (one replica only).
    pub leader: Option<LeaseConfig>,
}

pub async fn run(cfg: RunConfig) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let client = counting_client(&metrics).await?;
    check_crds(&client).await?;
    let ready = Arc::new(AtomicBool::new(false));
    let shutdown = shutdown_signal().boxed().shared();
    let mut server = tokio::spawn(http::serve(cfg.metrics_addr, metrics.clone(), ready.clone(), shutdown.clone()));

    // Only the leader watches and writes; a standby is healthy and ready, and waits.
    let mut elector = cfg.leader.clone().map(|l| Elector::new(client.clone(), l));
    if let Some(elector) = elector.as_mut() {
        ready.store(true, Ordering::SeqCst);
        tokio::select! {
            r = elector.acquire() => r?,
            _ = shutdown.clone() => return Ok(()),
        }
        ready.store(false, Ordering::SeqCst);
    }
    metrics.leader.set(1);
    let outcome = tokio::select! {
        r = lead(&cfg, &client, &metrics, &ready, shutdown) => r,
        lost = keep_leading(elector.as_mut()) => Err(lost),
        r = &mut server => r.unwrap_or_else(|e| Err(Error::Config(format!("metrics server task: {e}")))),
    };
    metrics.leader.set(0);
    if outcome.is_ok()
        && let Some(elector) = elector.as_mut()
    {
        elector.release().await;
    }
    outcome
}

/// The leader's work: the watches, the controllers they feed, and readiness once every cache is synced.
async fn lead(
    cfg: &RunConfig,
    client: &Client,
    metrics: &Arc<Metrics>,
    ready: &AtomicBool,
    shutdown: Shared<futures::future::BoxFuture<'static, ()>>,
) -> Result<()> {
    let (wake_tx, wake_rx) = mpsc::unbounded();
    let templates = crate::controllers::templates::Catalog::discover(client, &cfg.settings.template_kinds).await;
    let w = watches::start(client, wake_rx, templates);
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let ctx = Arc::new(Context::new(client.clone(), w.stores.clone(), cfg, metrics.clone(), synced_rx, wake_tx));
    let config = kube::runtime::controller::Config::default().concurrency(cfg.concurrency);
    let mark_ready = async {
        if w.stores.ready().await.is_ok() {
            ready.store(true, Ordering::SeqCst);
            let _ = synced_tx.send(true);
            tracing::info!("caches synced; reconciling");
        }
    };
    tracing::info!(concurrency = cfg.concurrency, "starting controllers");
    let controllers = async {
        tokio::join!(
            project::controller(w.project, ctx.clone(), config.clone(), shutdown.clone()),
            workspace::controller(w.workspace, ctx.clone(), config.clone(), shutdown.clone()),
            binding::controller(w.binding, ctx.clone(), config, shutdown.clone()),
            mark_ready,
        );
    };
    let invalid = guard::report(client.clone(), ctx.recorder.clone(), w.invalid);
    tokio::select! {
        _ = controllers => {},
        _ = w.running => {},
        _ = invalid => {},
    }
    Ok(())
}

/// Resolves with the reason when leadership is lost; never without an elector (one replica only).
async fn keep_leading(elector: Option<&mut Elector>) -> Error {
    match elector {
        Some(e) => e.keep().await,
        None => futures::future::pending().await,
    }
}

/// Fails fast, with the fix in the message, when the CRDs are not installed.
async fn check_crds(client: &Client) -> Result<()> {
    async fn probe<K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug>(
        client: &Client,
    ) -> Result<()> {
        match Api::<K>::all(client.clone()).list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                Err(Error::CrdsMissing(format!("{}.{} not found", K::plural(&()), K::group(&()))))
            }
            Err(e) => Err(Error::Connect(Box::new(e))),
        }
    }
    probe::<Workspace>(client).await?;
    probe::<Project>(client).await?;
    probe::<ProjectRoleBinding>(client).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}

/// A client for `KUBECONFIG` or the in-cluster service account that counts every request it sends.
async fn counting_client(metrics: &Arc<Metrics>) -> Result<Client> {
    let config = kube::Config::infer().await.map_err(|e| Error::Config(e.to_string()))?;
    let requests = metrics.api_requests.clone();
    let count = tower::util::MapRequestLayer::new(move |req: ::http::Request<kube::client::Body>| {
        requests.get_or_create(&crate::runtime::metrics::MethodLabel { method: req.method().to_string() }).inc();
        req
    });
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Connect(Box::new(e)))?;
    Ok(builder.with_layer(&count).build())
}
