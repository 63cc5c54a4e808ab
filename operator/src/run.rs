//! `zenml-operator run`: connects, checks the CRDs, starts shared watches and one controller per kind, serves
//! health and metrics, and stops cleanly on SIGTERM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use std::future::Future;

use futures::{FutureExt, SinkExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::ListParams;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{Project, ProjectRoleBinding, Workspace};
use crate::binding_index::BindingIndex;
use crate::cache::{self, ChildStore};
use crate::controllers::context::{Context, Settings, Stores};
use crate::controllers::{binding, error_policy, project, record_success, workspace};
use crate::events::{Recorder, Reporter};
use crate::guard;
use crate::labels::MANAGED_SELECTOR;
use crate::leader::{Elector, LeaseConfig};
use crate::metrics::Metrics;
use crate::{Error, Result};

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

/// Memory: managedFields and client-side-apply copies are never read, and at thousands of objects they would be most
/// of the cache.
fn strip<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(a) = obj.meta_mut().annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
}

/// How every watch lists: from the API server's watch cache ("any" resourceVersion, as client-go's informers start),
/// which keeps an operator restart at thousands of projects off etcd.
fn list_config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// A watch of the namespaced children we manage, filtered by our label, feeding a compact cache and a trigger
/// stream.
fn children<K>(client: &Client) -> (ChildStore<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, mut writer) = cache::store();
    let stream = watcher(Api::<K>::all(client.clone()), list_config().labels(MANAGED_SELECTOR))
        .default_backoff()
        .modify(strip)
        .inspect_ok(move |event| writer.apply(event))
        .touched_objects();
    (reader, stream)
}

/// A watch of the cluster-scoped children we manage (one or two per workspace), feeding a cache and a trigger stream.
fn cluster_children<K>(client: &Client) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(Api::<K>::all(client.clone()), list_config().labels(MANAGED_SELECTOR))
        .default_backoff()
        .modify(strip)
        .reflect(writer)
        .touched_objects();
    (reader, stream)
}

/// The Project a child belongs to, by our label. Not `owns`: that maps a namespaced child to its owner within the
/// child's namespace, which for a cluster-scoped Project is a second key for the same object.
fn project_of<K: Resource>(child: &K) -> Option<ObjectRef<Project>> {
    child.labels().get(crate::labels::PROJECT).map(|p| ObjectRef::new(p))
}

/// `own` (the project a quota or namespace belongs to), and the projects of its workspace that wait for budget or a
/// place under `maxProjects`: a quota lowered or gone, or a namespace gone, may free what they wait for.
fn and_waiting<K: Resource>(ctx: &Context, own: Option<ObjectRef<Project>>, obj: &K) -> Vec<ObjectRef<Project>> {
    let mut refs: Vec<ObjectRef<Project>> = own.into_iter().collect();
    if let Some(workspace) = obj.labels().get(crate::labels::WORKSPACE) {
        refs.extend(project::waiting_in(ctx, workspace));
    }
    refs
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

/// Feeds what a watch (already writing its cache) touched to `N` trigger streams, so controllers share one watch
/// instead of each watching again.
///
/// Not kube's shared store: its subscribers are told of applied objects only, never of deleted ones, and a deleted
/// binding must wake its project (or a removed admin would keep its delegation). Every touched object, deleted ones
/// included, goes to every consumer; the channels are bounded, so a slow consumer slows the watch instead of
/// growing a queue.
fn fan_out<K, S, const N: usize>(
    cached_events: S,
    buffer: usize,
) -> ([mpsc::Receiver<Arc<K>>; N], impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    S: Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static,
{
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..N).map(|_| mpsc::channel(buffer)).unzip();
    let receivers: [mpsc::Receiver<Arc<K>>; N] = receivers.try_into().unwrap_or_else(|_| unreachable!("N receivers"));
    let watch = cached_events.touched_objects().fold(senders, |mut senders, touched| async move {
        match touched {
            Ok(obj) => {
                let obj = Arc::new(obj);
                for s in &mut senders {
                    // A closed receiver means its controller has stopped: we are shutting down.
                    let _ = s.send(obj.clone()).await;
                }
            }
            Err(e) => tracing::warn!(kind = %K::kind(&()), "watch: {e}"),
        }
        senders
    });
    (receivers, watch.map(|_| ()))
}

/// A watch of one of our own kinds into a kube store; objects that do not decode are reported and left out.
fn cached_watch<K>(
    client: &Client,
    invalid: &mpsc::UnboundedSender<guard::Invalid>,
) -> (Store<K>, impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Default + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    (reader, guarded_watch::<K>(client, invalid).default_backoff().modify(strip).reflect(writer))
}

/// A watch of one of our own kinds, whose objects that do not decode are reported and left out (see `guard`).
fn guarded_watch<K>(
    client: &Client,
    invalid: &mpsc::UnboundedSender<guard::Invalid>,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Default + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let events = watcher(Api::<DeserializeGuard<K>>::all(client.clone()), list_config());
    guard::decodable(events, invalid.clone())
}

/// A client for `KUBECONFIG` or the in-cluster service account that counts every request it sends.
async fn counting_client(metrics: &Arc<Metrics>) -> Result<Client> {
    let config = kube::Config::infer().await.map_err(|e| Error::Config(e.to_string()))?;
    let requests = metrics.api_requests.clone();
    let count = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        requests.get_or_create(&crate::metrics::MethodLabel { method: req.method().to_string() }).inc();
        req
    });
    let builder = kube::client::ClientBuilder::try_from(config).map_err(|e| Error::Connect(Box::new(e)))?;
    Ok(builder.with_layer(&count).build())
}

pub async fn run(cfg: RunConfig) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let client = counting_client(&metrics).await?;
    check_crds(&client).await?;
    let ready = Arc::new(AtomicBool::new(false));
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let shutdown = shutdown_signal().shared();
    let mut server =
        tokio::spawn(crate::http::serve(cfg.metrics_addr, metrics.clone(), ready.clone(), shutdown.clone()));

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
    let everything = list_config;
    let ours = || list_config().labels(MANAGED_SELECTOR);

    // Watches that feed more than one controller are shared.
    let (invalid_tx, invalid_rx) = mpsc::unbounded();
    let (projects, events) = cached_watch::<Project>(&client, &invalid_tx);
    let ([projects_for_projects, projects_for_workspaces, projects_for_bindings], project_watch) =
        fan_out(events, 1024);
    let (workspaces, events) = cached_watch::<Workspace>(&client, &invalid_tx);
    let ([workspaces_for_workspaces, workspaces_for_projects, workspaces_for_bindings], workspace_watch) =
        fan_out(events, 256);
    let (bindings, events) = cached_watch::<ProjectRoleBinding>(&client, &invalid_tx);
    let binding_index = BindingIndex::default();
    let events = events.inspect_ok({
        let index = binding_index.clone();
        move |event| index.apply(event)
    });
    let ([bindings_for_bindings, bindings_for_projects], binding_watch) = fan_out(events, 1024);
    let (role_bindings, mut rb_writer) = cache::store();
    let rb_events = watcher(Api::<RoleBinding>::all(client.clone()), ours())
        .default_backoff()
        .modify(strip)
        .inspect_ok(move |event| rb_writer.apply(event));
    let ([rbs_for_projects, rbs_for_bindings], rb_watch) = fan_out(rb_events, 1024);

    // Namespaces as metadata only: every namespace, so a conflicting or newly adoptable one is seen at once.
    let (namespaces, ns_writer) = reflector::store();
    let ns_stream = watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), everything())
        .default_backoff()
        .modify(strip)
        .reflect(ns_writer)
        .touched_objects();
    let (quotas, quota_stream) = children::<ResourceQuota>(&client);
    let (limit_ranges, lr_stream) = children::<LimitRange>(&client);
    let (network_policies, np_stream) = children::<NetworkPolicy>(&client);
    let (service_accounts, sa_stream) = children::<ServiceAccount>(&client);
    let (roles, role_stream) = children::<Role>(&client);
    let (cluster_roles, cr_stream) = cluster_children::<ClusterRole>(&client);
    // Every ClusterRole's name (metadata only): whether the role a binding names exists.
    let (role_names, role_names_writer) = reflector::store();
    let role_name_stream = watcher(Api::<PartialObjectMeta<ClusterRole>>::all(client.clone()), everything())
        .default_backoff()
        .modify(strip)
        .reflect(role_names_writer)
        .touched_objects();
    let (cluster_role_bindings, crb_stream) = cluster_children::<ClusterRoleBinding>(&client);

    let stores = Stores {
        projects: projects.clone(),
        workspaces: workspaces.clone(),
        namespaces,
        quotas,
        limit_ranges,
        network_policies,
        service_accounts,
        role_bindings,
        bindings: bindings.clone(),
        binding_index: binding_index.clone(),
        roles,
        cluster_roles,
        role_names,
        cluster_role_bindings,
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
        status_in_flight: Default::default(),
        grants: Default::default(),
        usage_writes: Default::default(),
        event_slots: Arc::new(tokio::sync::Semaphore::new(crate::controllers::context::EVENT_SLOTS)),
    });

    let controller_config = kube::runtime::controller::Config::default().concurrency(cfg.concurrency);
    let projects_of_workspace = projects.clone();
    let (quota_ctx, ns_ctx) = (ctx.clone(), ctx.clone());
    let project_controller = Controller::for_shared_stream(projects_for_projects, projects.clone())
        .watches_stream(quota_stream, move |c| and_waiting(&quota_ctx, project_of(&c), &c))
        .watches_stream(lr_stream, |c| project_of(&c))
        .watches_stream(np_stream, |c| project_of(&c))
        .watches_stream(sa_stream, |c| project_of(&c))
        .watches_stream(role_stream, |c| project_of(&c))
        .watches_shared_stream(rbs_for_projects, |rb| project_of(&*rb))
        .watches_stream(ns_stream, move |ns| {
            let name = ns.name_any();
            // The watch updated the store before handing the namespace on: not in it means deleted.
            if ns_ctx.stores.namespaces.get(&ObjectRef::new(&name)).is_none_or(|c| c.meta().uid != ns.meta().uid) {
                ns_ctx.grants.forget(&name);
            }
            and_waiting(&ns_ctx, Some(ObjectRef::new(&name)), &ns)
        })
        .watches_shared_stream(spec_changes(workspaces_for_projects, workspaces.clone()), move |ws| {
            let name = ws.name_any();
            projects_of_workspace
                .state()
                .into_iter()
                .filter(|p| p.spec.workspace == name)
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        // Members and delegation follow the project's bindings.
        .watches_shared_stream(bindings_for_projects, |b| Some(ObjectRef::new(&b.spec.project)))
        .reconcile_on(wake_rx)
        .trigger_backoff(EachWatchBacksOff)
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(with_backoff(project::reconcile), error_policy, ctx.clone())
        .for_each(log_queue_errors::<Project, _>);

    let workspace_controller = Controller::for_shared_stream(workspaces_for_workspaces, workspaces.clone())
        .watches_shared_stream(spec_changes(projects_for_workspaces, projects.clone()), |p| {
            Some(ObjectRef::new(&p.spec.workspace))
        })
        .watches_stream(cr_stream, |c| workspace_of(&c))
        .watches_stream(crb_stream, |c| workspace_of(&c))
        .trigger_backoff(EachWatchBacksOff)
        .with_config(controller_config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(with_backoff(workspace::reconcile), error_policy, ctx.clone())
        .for_each(log_queue_errors::<Workspace, _>);

    let bindings_of_project = ctx.stores.clone();
    let bindings_to_role = (ctx.stores.clone(), ctx.settings.roles.clone());
    let bindings_of_workspace = bindings.clone();
    let projects_for_lookup = projects.clone();
    let binding_controller = Controller::for_shared_stream(bindings_for_bindings, bindings.clone())
        // A project's namespace appearing (its status) or going makes its bindings grantable or not.
        .watches_shared_stream(projects_for_bindings, move |p| {
            let name = p.name_any();
            let mut wake = refs(bindings_of_project.bindings_of(&name).into_iter());
            // A project created or deleted decides whether the bindings naming its ServiceAccounts may bind.
            wake.extend(bindings_of_project.binding_index.naming_subjects_of(&name).iter().map(|b| ObjectRef::new(b)));
            wake
        })
        // A workspace's allowed roles decide which bindings may exist, and its trusted workspaces which of them may
        // name its projects' ServiceAccounts.
        .watches_shared_stream(spec_changes(workspaces_for_bindings, workspaces.clone()), move |ws| {
            let name = ws.name_any();
            let projects: std::collections::HashSet<String> =
                projects_for_lookup.state().iter().filter(|p| p.spec.workspace == name).map(|p| p.name_any()).collect();
            refs(bindings_of_workspace.state().into_iter().filter(|b| {
                projects.contains(&b.spec.project)
                    || crate::resources::binding::subject_projects(b).any(|p| projects.contains(p))
            }))
        })
        // A ClusterRole created or deleted decides whether the bindings whose role names it can bind.
        .watches_stream(role_name_stream, move |role| {
            let (stores, roles) = &bindings_to_role;
            refs(stores.bindings_to_cluster_role(&role.name_any(), roles).into_iter())
        })
        // Drift on a RoleBinding a binding owns.
        .watches_shared_stream(rbs_for_bindings, |rb| {
            rb.annotations().get(crate::labels::BINDING).map(|b| ObjectRef::<ProjectRoleBinding>::new(b))
        })
        .trigger_backoff(EachWatchBacksOff)
        .with_config(controller_config)
        .graceful_shutdown_on(shutdown.clone())
        .run(with_backoff(binding::reconcile), error_policy, ctx.clone())
        .for_each(log_queue_errors::<ProjectRoleBinding, _>);

    let mark_ready = async {
        if stores.ready().await.is_ok() {
            ready.store(true, Ordering::SeqCst);
            let _ = synced_tx.send(true);
            tracing::info!("caches synced; reconciling");
        }
    };
    tracing::info!(concurrency = cfg.concurrency, "starting controllers");
    let controllers = async {
        tokio::join!(project_controller, workspace_controller, binding_controller, mark_ready);
    };
    let invalid_reporter = guard::report(client.clone(), ctx.recorder.clone(), invalid_rx);
    let watches = async {
        tokio::join!(project_watch, workspace_watch, binding_watch, rb_watch, invalid_reporter);
    };
    let keep_leading = async {
        match elector.as_mut() {
            Some(e) => e.keep().await,
            None => futures::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = controllers => Ok(()),
        _ = watches => Ok(()),
        lost = keep_leading => Err(lost),
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

/// The backoff a Controller puts over the merge of all its trigger streams: none, because every watch we hand it
/// already backs off on its own (`default_backoff`). kube's default here is a second, shared exponential backoff: after
/// an outage each of the kind's watches reports its errors in turn, the shared delay doubles with each, and meanwhile
/// *every* trigger of the kind waits, the primary watch and the wake channel included. The outage test measured
/// 112 s from a kube-apiserver restart until projects converged; with this, about a second.
struct EachWatchBacksOff;

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
/// the watches that trigger reconciles (children, namespaces) surface only here, and an outage must show in the log.
fn log_queue_errors<K, T>(
    outcome: std::result::Result<T, kube::runtime::controller::Error<Error, watcher::Error>>,
) -> futures::future::Ready<()>
where
    K: Resource<DynamicType = ()>,
{
    match outcome {
        Err(kube::runtime::controller::Error::QueueError(e)) => {
            tracing::warn!(controller = %K::kind(&()), "watch feeding the controller failed (retrying with backoff): {e}")
        }
        Err(kube::runtime::controller::Error::RunnerError(e)) => {
            tracing::error!(controller = %K::kind(&()), "controller runner: {e}")
        }
        _ => {}
    }
    futures::future::ready(())
}

fn refs<K: Resource<DynamicType = ()>>(objs: impl Iterator<Item = Arc<K>>) -> Vec<ObjectRef<K>> {
    objs.map(|o| ObjectRef::from_obj(&*o)).collect()
}

/// Only new generations and deletions: for the workspace's spec that matters to projects and bindings, for a
/// project's spec that matters to its workspace. Not status changes: at bulk, every project's status writes would
/// otherwise each make its workspace decide for all N projects again.
fn spec_changes<K>(stream: mpsc::Receiver<Arc<K>>, store: Store<K>) -> impl Stream<Item = Arc<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    // By uid: an object deleted and created again under its name starts at generation 1 again.
    let mut generations: HashMap<String, Option<i64>> = HashMap::new();
    stream.filter(move |obj| {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        // The watch wrote the store before handing the object on: not in it means deleted.
        let deleted = store.get(&ObjectRef::from_obj(&**obj)).is_none_or(|cached| cached.meta().uid != obj.meta().uid);
        let changed = if deleted {
            generations.remove(&uid);
            true
        } else {
            generations.insert(uid, obj.meta().generation) != Some(obj.meta().generation)
        };
        futures::future::ready(changed)
    })
}

/// The Workspace a cluster-scoped child belongs to, by our label.
fn workspace_of<K: Resource>(child: &K) -> Option<ObjectRef<Workspace>> {
    child.labels().get(crate::labels::WORKSPACE).map(|w| ObjectRef::new(w))
}

/// Wraps a reconciler so that success resets the object's backoff.
fn with_backoff<K, F, Fut>(
    reconcile: F,
) -> impl FnMut(Arc<K>, Arc<Context>) -> futures::future::BoxFuture<'static, Result<kube::runtime::controller::Action>>
where
    K: Resource<DynamicType = ()> + Send + Sync + 'static,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = Result<kube::runtime::controller::Action>> + Send + 'static,
{
    move |obj, ctx| {
        Box::pin(async move {
            let r = reconcile(obj.clone(), ctx.clone()).await;
            if r.is_ok() {
                record_success(&*obj, &ctx);
            }
            r
        })
    }
}
