//! Every watch the operator runs, started once: the caches they fill and what each controller is fed. A watch that
//! feeds several controllers is shared (see `watch::fan_out`).

use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use zenml_api::labels::MANAGED_SELECTOR;
use zenml_api::{Project, ProjectRoleBinding, Workspace};

use crate::controllers::children::ChildStores;
use crate::controllers::context::Stores;
use crate::controllers::templates::Catalog;
use crate::controllers::{binding, project, workspace};
use crate::watch::binding_index::BindingIndex;
use crate::watch::guard::Invalid;
use crate::watch::{self, fan_out, list_config};

pub struct Watches {
    pub stores: Stores,
    pub project: project::Feeds,
    pub workspace: workspace::Feeds,
    pub binding: binding::Feeds,
    /// Objects of our kinds that do not decode, to report (see `watch::guard`).
    pub invalid: mpsc::UnboundedReceiver<Invalid>,
    /// Drives the shared watches; the others are driven by the controllers they feed.
    pub running: futures::future::BoxFuture<'static, ()>,
}

/// Starts the watches. `wake` is how the workspace reconciler wakes projects (see `Context::wake_project`).
pub fn start(
    client: &Client,
    wake: mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<Project>>,
    templates: Catalog,
) -> Watches {
    let (invalid_tx, invalid) = mpsc::unbounded();
    let (projects, events) = watch::ours::<Project>(client, &invalid_tx);
    let ([projects_p, projects_w, projects_b], project_watch) =
        fan_out(events.touched_objects().map_ok(Arc::new), 1024, "Project");
    let (workspaces, events) = watch::ours::<Workspace>(client, &invalid_tx);
    let ([workspaces_w, workspaces_p, workspaces_b], workspace_watch) =
        fan_out(events.touched_objects().map_ok(Arc::new), 256, "Workspace");
    let (bindings, events) = watch::ours::<ProjectRoleBinding>(client, &invalid_tx);
    let binding_index = BindingIndex::default();
    let index = binding_index.clone();
    let events = events.inspect_ok(move |event| index.apply(event));
    let ([bindings_b, bindings_p], binding_watch) = fan_out(events.touched_objects().map_ok(Arc::new), 1024, "binding");
    let (children, touched) = ChildStores::watch(client, templates);
    let ([children_p, children_b], child_watch) = fan_out(touched, 1024, "children");
    let (namespaces, namespace_stream) = watch::cached::<PartialObjectMeta<Namespace>>(client, list_config());
    let (cluster_roles, cluster_role_stream) =
        watch::cached::<ClusterRole>(client, list_config().labels(MANAGED_SELECTOR));
    let (role_names, role_name_stream) = watch::cached::<PartialObjectMeta<ClusterRole>>(client, list_config());
    let (policy_bindings, policy_binding_stream) = watch::cached::<PartialObjectMeta<ValidatingAdmissionPolicyBinding>>(
        client,
        list_config().labels(MANAGED_SELECTOR),
    );
    // Only the `kubernetes` Service's slices, in `default`: the chart grants reading EndpointSlices there alone.
    let (api_server, api_server_stream) = watch::cached_from::<EndpointSlice>(
        Api::namespaced(client.clone(), "default"),
        list_config().labels("kubernetes.io/service-name=kubernetes"),
    );
    let (cluster_role_bindings, crb_stream) =
        watch::cached::<ClusterRoleBinding>(client, list_config().labels(MANAGED_SELECTOR));

    let stores = Stores {
        projects,
        workspaces,
        namespaces,
        children,
        bindings,
        binding_index,
        cluster_roles,
        role_names,
        cluster_role_bindings,
        policy_bindings,
        api_server,
    };
    let running = async move {
        tokio::join!(project_watch, workspace_watch, binding_watch, child_watch);
    };
    Watches {
        stores,
        project: project::Feeds {
            projects: projects_p,
            workspaces: workspaces_p,
            bindings: bindings_p,
            children: children_p,
            namespaces: namespace_stream.boxed(),
            api_server: api_server_stream.boxed(),
            wake,
        },
        workspace: workspace::Feeds {
            workspaces: workspaces_w,
            projects: projects_w,
            cluster_roles: cluster_role_stream.boxed(),
            cluster_role_bindings: crb_stream.boxed(),
            policy_bindings: policy_binding_stream.boxed(),
        },
        binding: binding::Feeds {
            bindings: bindings_b,
            projects: projects_b,
            workspaces: workspaces_b,
            role_names: role_name_stream.boxed(),
            children: children_b,
        },
        invalid,
        running: Box::pin(running) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>,
    }
}
