//! `zenml-operator run`: connects, checks the CRDs, starts shared watches and one controller per kind, serves
//! health and metrics, and stops cleanly on SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::api::{Project, Workspace};
use crate::controllers::context::{Context, Settings, Stores};
use crate::controllers::{error_policy, project, record_success, workspace};
use crate::labels::MANAGED_SELECTOR;
use crate::metrics::Metrics;
use crate::{Error, Result};

pub struct RunConfig {
    /// Most reconciles of one kind running at once.
    pub concurrency: u16,
    pub metrics_addr: SocketAddr,
    pub settings: Settings,
    /// Identifies this replica in Events.
    pub instance: Option<String>,
}

/// Memory: managedFields and client-side-apply copies are never read, and at thousands of objects they would be most
/// of the cache.
fn strip<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// A watch of the children we manage, filtered by our label, feeding a cache and a trigger stream.
fn children<K>(client: &Client) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        watcher(Api::<K>::all(client.clone()), watcher::Config::default().labels(MANAGED_SELECTOR).any_semantic())
            .default_backoff()
            .modify(strip)
            .reflect(writer)
            .touched_objects();
    (reader, stream)
}

/// The Project a child belongs to, by our label. Not `owns`: that maps a namespaced child to its owner within the
/// child's namespace, which for a cluster-scoped Project is a second key for the same object.
fn project_of<K: Resource>(child: K) -> Option<ObjectRef<Project>> {
    child.labels().get(crate::labels::PROJECT).map(|p| ObjectRef::new(p))
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
            Err(e) => Err(Error::Connect(e)),
        }
    }
    probe::<Workspace>(client).await?;
    probe::<Project>(client).await?;
    probe::<crate::api::ProjectRoleBinding>(client).await
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

pub async fn run(cfg: RunConfig) -> Result<()> {
    let client = Client::try_default().await.map_err(Error::Connect)?;
    check_crds(&client).await?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let shutdown = shutdown_signal().shared();

    // Projects and Workspaces: one watch each, shared by both controllers and the caches.
    let (projects, project_writer) = reflector::store_shared::<Project>(1024);
    let projects_for_workspaces = project_writer.subscribe().expect("a shared store");
    let projects_for_projects = project_writer.subscribe().expect("a shared store");
    let project_watch = watcher(Api::<Project>::all(client.clone()), watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(strip)
        .reflect_shared(project_writer)
        .for_each(|_| futures::future::ready(()));
    let (workspaces, workspace_writer) = reflector::store_shared::<Workspace>(256);
    let workspaces_for_workspaces = workspace_writer.subscribe().expect("a shared store");
    let workspaces_for_projects = workspace_writer.subscribe().expect("a shared store");
    let workspace_watch = watcher(Api::<Workspace>::all(client.clone()), watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(strip)
        .reflect_shared(workspace_writer)
        .for_each(|_| futures::future::ready(()));

    // Namespaces as metadata only: every namespace, so a conflicting or newly adoptable one is seen at once.
    let (namespaces, ns_writer) = reflector::store();
    let ns_stream =
        watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default().any_semantic())
            .default_backoff()
            .modify(strip)
            .reflect(ns_writer)
            .touched_objects();
    let (quotas, quota_stream) = children::<ResourceQuota>(&client);
    let (limit_ranges, lr_stream) = children::<LimitRange>(&client);
    let (network_policies, np_stream) = children::<NetworkPolicy>(&client);
    let (service_accounts, sa_stream) = children::<ServiceAccount>(&client);
    let (role_bindings, rb_stream) = children::<RoleBinding>(&client);

    let stores = Stores {
        projects: projects.clone(),
        workspaces: workspaces.clone(),
        namespaces,
        quotas,
        limit_ranges,
        network_policies,
        service_accounts,
        role_bindings,
    };
    let (wake_tx, wake_rx) = mpsc::unbounded();
    let reporter = Reporter { controller: "zenml-operator".into(), instance: cfg.instance.clone() };
    let ctx = Arc::new(Context {
        caches_synced: synced_rx,
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        stores: stores.clone(),
        settings: cfg.settings,
        metrics: metrics.clone(),
        verdicts_seen: Mutex::new(HashMap::new()),
        wake_project: wake_tx,
        failures: Mutex::new(HashMap::new()),
    });

    let controller_config = kube::runtime::controller::Config::default().concurrency(cfg.concurrency);
    // A workspace's spec matters to all its projects; its status does not, so only new generations fan out.
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    let workspace_spec_changes = workspaces_for_projects.filter(move |ws| {
        let changed = generations.insert(ws.name_any(), ws.meta().generation) != Some(ws.meta().generation);
        futures::future::ready(changed)
    });
    let projects_of_workspace = projects.clone();
    let project_controller = Controller::for_shared_stream(projects_for_projects, projects.clone())
        .watches_stream(quota_stream, project_of)
        .watches_stream(lr_stream, project_of)
        .watches_stream(np_stream, project_of)
        .watches_stream(sa_stream, project_of)
        .watches_stream(rb_stream, project_of)
        .watches_stream(ns_stream, |ns| Some(ObjectRef::new(&ns.name_any())))
        .watches_shared_stream(workspace_spec_changes, move |ws| {
            let name = ws.name_any();
            projects_of_workspace
                .state()
                .into_iter()
                .filter(|p| p.spec.workspace == name)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .reconcile_on(wake_rx)
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |p, ctx| async move {
                let r = project::reconcile(p.clone(), ctx.clone()).await;
                if r.is_ok() {
                    record_success(&*p, &ctx);
                }
                r
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));
    let workspace_controller = Controller::for_shared_stream(workspaces_for_workspaces, workspaces.clone())
        .watches_shared_stream(projects_for_workspaces, |p| Some(ObjectRef::new(&p.spec.workspace)))
        .with_config(controller_config)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            |w, ctx| async move {
                let r = workspace::reconcile(w.clone(), ctx.clone()).await;
                if r.is_ok() {
                    record_success(&*w, &ctx);
                }
                r
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(|_| futures::future::ready(()));

    let server = crate::http::serve(cfg.metrics_addr, metrics, ready.clone(), shutdown.clone());
    let mark_ready = async {
        if stores.ready().await.is_ok() {
            ready.store(true, Ordering::SeqCst);
            let _ = synced_tx.send(true);
            tracing::info!("caches synced; reconciling");
        }
    };
    tracing::info!(concurrency = cfg.concurrency, metrics = %cfg.metrics_addr, "zenml-operator starting");
    let controllers = async {
        tokio::join!(project_controller, workspace_controller, mark_ready);
    };
    tokio::select! {
        _ = controllers => {},
        _ = project_watch => {},
        _ = workspace_watch => {},
        r = server => r?,
    }
    Ok(())
}
