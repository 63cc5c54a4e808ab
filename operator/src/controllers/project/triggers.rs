//! What wakes a project's reconcile, and the controller built from it.

use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller, watcher};
use zenml_api::{EgressMode, Project, ProjectRoleBinding, Workspace};

use super::admission::waiting_in;
use crate::controllers::children::Touched;
use crate::controllers::context::Context;
use crate::controllers::{EachWatchBacksOff, error_policy, log_queue_errors, with_backoff};
use crate::watch::{deleted, spec_changes};

/// The watches a project controller is fed, shared with the other controllers where they need them too.
pub struct Feeds {
    pub projects: mpsc::Receiver<Arc<Project>>,
    pub workspaces: mpsc::Receiver<Arc<Workspace>>,
    pub bindings: mpsc::Receiver<Arc<ProjectRoleBinding>>,
    pub children: mpsc::Receiver<Touched>,
    /// Every namespace, metadata only: a conflicting or newly adoptable one is seen at once.
    pub namespaces: BoxStream<'static, watcher::Result<PartialObjectMeta<Namespace>>>,
    /// The `kubernetes` Service's EndpointSlices: the API server's addresses, which restricted egress allows.
    pub api_server: BoxStream<'static, watcher::Result<EndpointSlice>>,
    /// Projects the workspace reconciler wakes (see `Context::wake_project`).
    pub wake: mpsc::UnboundedReceiver<ObjectRef<Project>>,
}

pub fn controller(
    feeds: Feeds,
    ctx: Arc<Context>,
    config: controller::Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let workspaces = spec_changes(feeds.workspaces, ctx.stores.workspaces.clone());
    let (for_namespaces, for_workspaces, for_api_server) = (ctx.clone(), ctx.clone(), ctx.clone());
    Controller::for_shared_stream(feeds.projects, ctx.stores.projects.clone())
        .watches_stream(feeds.namespaces, move |ns| namespace_touched(&for_namespaces, &ns))
        .watches_shared_stream(workspaces, move |ws| of_workspace(&for_workspaces, &ws.name_any()))
        .watches_stream(feeds.api_server, move |_| restricted_egress(&for_api_server))
        // Members and delegation follow the project's bindings.
        .watches_shared_stream(feeds.bindings, |b| Some(ObjectRef::new(&b.spec.project)))
        .reconcile_on(children_touched(ctx.clone(), feeds.children))
        .reconcile_on(feeds.wake)
        .trigger_backoff(EachWatchBacksOff)
        .with_config(config)
        .graceful_shutdown_on(shutdown)
        .run(with_backoff(super::reconcile), error_policy, ctx)
        .for_each(log_queue_errors::<Project, _>)
}

/// Projects whose egress is restricted: their NetworkPolicy names the API server's addresses, which just changed.
/// Addresses given on the command line do not change, so then none.
fn restricted_egress(ctx: &Context) -> Vec<ObjectRef<Project>> {
    if !ctx.settings.network.api_server.is_empty() {
        return Vec::new();
    }
    let workspaces = &ctx.stores.workspaces;
    ctx.stores
        .projects
        .state()
        .iter()
        .filter(|p| {
            let ws = workspaces.get(&ObjectRef::new(&p.spec.workspace));
            ws.is_some_and(|ws| zenml_api::resources::network::egress(p, &ws).mode != EgressMode::Open)
        })
        .map(|p| ObjectRef::from_obj(&**p))
        .collect()
}

/// A child's project, and, when its change may free budget (a quota lowered or gone), the projects of its workspace
/// that wait for budget or a place under `maxProjects`.
fn children_touched(
    ctx: Arc<Context>,
    touched: mpsc::Receiver<Touched>,
) -> impl Stream<Item = ObjectRef<Project>> + Send + 'static {
    touched.flat_map(move |t| {
        let mut wake: Vec<ObjectRef<Project>> = t.project.iter().map(|p| ObjectRef::new(p)).collect();
        if let Some(workspace) = t.workspace.as_deref().filter(|_| t.frees_budget) {
            wake.extend(waiting_in(&ctx, workspace));
        }
        stream::iter(wake)
    })
}

/// A namespace's project (same name); a namespace gone may also free a place or budget for its workspace's waiting
/// projects, and ends any grant still recorded as in flight to it.
fn namespace_touched(ctx: &Context, ns: &PartialObjectMeta<Namespace>) -> Vec<ObjectRef<Project>> {
    let name = ns.name_any();
    if deleted(&ctx.stores.namespaces, ns) {
        ctx.grants.forget(&name);
    }
    let mut wake = vec![ObjectRef::new(&name)];
    if let Some(workspace) = ns.labels().get(zenml_api::labels::WORKSPACE) {
        wake.extend(waiting_in(ctx, workspace));
    }
    wake
}

/// Every project of a workspace whose spec changed.
fn of_workspace(ctx: &Context, workspace: &str) -> Vec<ObjectRef<Project>> {
    ctx.stores.projects_of(workspace).iter().map(|p| ObjectRef::from_obj(&**p)).collect()
}
