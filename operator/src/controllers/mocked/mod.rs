//! The reconcilers against a mocked API server: each test fills the caches by hand, as the watches would, runs one
//! reconcile, and checks what it wrote (method, path, field manager, body) and what it returned. These cover the
//! branches and error paths; the real-cluster tests (e2e) stay the proof that the writes do what they should.

pub mod api;
mod binding;
mod project;
mod templates;
mod workspace;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::{PartialObjectMeta, PartialObjectMetaExt};
use kube::runtime::reflector::{self, ObjectRef, store::Writer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use zenml_api::labels;
use zenml_api::{
    Project, ProjectDefaults, ProjectRoleBinding, ProjectRoleBindingSpec, ProjectSpec, QuotaSpec, Subject, SubjectKind,
    Workspace, WorkspaceMember, WorkspaceSpec,
};

use self::api::ApiServer;
use super::children::{ChildStores, ChildWriters};
use super::context::{Context, Settings, Stores};
use crate::runtime::RunConfig;
use crate::runtime::metrics::Metrics;
use crate::watch::binding_index::BindingIndex;

/// A context whose client talks to a mocked API server, and the caches' write sides.
pub struct Harness {
    pub ctx: Arc<Context>,
    pub server: ApiServer,
    pub caches: Caches,
    /// The projects the workspace reconciler wakes.
    pub wake: mpsc::UnboundedReceiver<ObjectRef<Project>>,
    _synced: tokio::sync::watch::Sender<bool>,
}

/// The write sides of every cache a reconciler reads.
pub struct Caches {
    projects: Writer<Project>,
    workspaces: Writer<Workspace>,
    namespaces: Writer<PartialObjectMeta<Namespace>>,
    bindings: Writer<ProjectRoleBinding>,
    binding_index: BindingIndex,
    role_names: Writer<PartialObjectMeta<ClusterRole>>,
    api_server: Writer<EndpointSlice>,
    pub children: ChildWriters,
}

impl Harness {
    /// Must run within a tokio runtime: the client's buffer and the mocked server are tasks.
    pub fn new() -> Harness {
        let (client, server) = ApiServer::start();
        let (projects, projects_w) = reflector::store();
        let (workspaces, workspaces_w) = reflector::store();
        let (namespaces, namespaces_w) = reflector::store();
        let (bindings, bindings_w) = reflector::store();
        let (cluster_roles, _) = reflector::store::<ClusterRole>();
        let (role_names, role_names_w) = reflector::store();
        let (cluster_role_bindings, _) = reflector::store::<ClusterRoleBinding>();
        let (policy_bindings, _) = reflector::store();
        let (api_server, api_server_w) = reflector::store();
        let (children, children_w) = ChildStores::for_tests();
        let binding_index = BindingIndex::default();
        let stores = Stores {
            projects,
            workspaces,
            namespaces,
            children,
            bindings,
            binding_index: binding_index.clone(),
            cluster_roles,
            role_names,
            cluster_role_bindings,
            policy_bindings,
            api_server,
        };
        let cfg = RunConfig {
            concurrency: 1,
            metrics_addr: ([127, 0, 0, 1], 0).into(),
            settings: Settings::default(),
            instance: None,
            leader: None,
        };
        let (synced_tx, synced) = tokio::sync::watch::channel(true);
        let (wake_tx, wake) = mpsc::unbounded();
        let ctx = Context::new(client, stores, &cfg, Arc::new(Metrics::default()), synced, wake_tx);
        let caches = Caches {
            projects: projects_w,
            workspaces: workspaces_w,
            namespaces: namespaces_w,
            bindings: bindings_w,
            binding_index,
            role_names: role_names_w,
            api_server: api_server_w,
            children: children_w,
        };
        Harness { ctx: Arc::new(ctx), server, caches, wake, _synced: synced_tx }
    }
}

impl Caches {
    /// One EndpointSlice of the `kubernetes` Service.
    pub fn api_server(&mut self, slice: &EndpointSlice) -> &mut Self {
        self.api_server.apply_watcher_event(&watcher::Event::Apply(slice.clone()));
        self
    }

    pub fn project(&mut self, p: &Project) -> &mut Self {
        self.projects.apply_watcher_event(&watcher::Event::Apply(p.clone()));
        self
    }

    pub fn workspace(&mut self, w: &Workspace) -> &mut Self {
        self.workspaces.apply_watcher_event(&watcher::Event::Apply(w.clone()));
        self
    }

    pub fn namespace(&mut self, ns: ObjectMeta) -> &mut Self {
        self.namespaces.apply_watcher_event(&watcher::Event::Apply(ns.into_response_partial()));
        self
    }

    pub fn binding(&mut self, b: &ProjectRoleBinding) -> &mut Self {
        let event = watcher::Event::Apply(b.clone());
        self.binding_index.apply(&event);
        self.bindings.apply_watcher_event(&event);
        self
    }

    /// A ClusterRole exists (metadata only, as the operator caches every one).
    pub fn cluster_role(&mut self, name: &str, labels: BTreeMap<String, String>) -> &mut Self {
        let meta = ObjectMeta { name: Some(name.into()), labels: Some(labels), ..Default::default() };
        self.role_names.apply_watcher_event(&watcher::Event::Apply(meta.into_response_partial()));
        self
    }
}

/// The URL path of a cluster-scoped object of ours.
pub fn path_of<K: Resource<DynamicType = ()>>(name: &str) -> String {
    format!("/apis/{}/{}/{name}", K::api_version(&()), K::plural(&()))
}

/// An hour ago: old enough that nothing waits quietly for it to settle.
fn an_hour_ago() -> Time {
    Time(Timestamp::now() - SignedDuration::from_hours(1))
}

fn meta(name: &str, uid: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        uid: Some(uid.into()),
        generation: Some(1),
        resource_version: Some("1".into()),
        creation_timestamp: Some(an_hour_ago()),
        ..Default::default()
    }
}

fn user(name: &str) -> Subject {
    Subject { kind: SubjectKind::User, name: name.into(), project: None, namespace: None }
}

/// Workspace `ws`: alice is its admin, its projects get a CPU quota by default.
pub fn workspace() -> Workspace {
    let quota = QuotaSpec { hard: BTreeMap::from([("requests.cpu".into(), Quantity("4".into()))]) };
    Workspace {
        metadata: meta("ws", "uid-ws"),
        spec: WorkspaceSpec {
            members: vec![WorkspaceMember { role: "admin".into(), subjects: vec![user("alice")] }],
            project_defaults: Some(ProjectDefaults { quota: Some(quota), ..Default::default() }),
            ..Default::default()
        },
        status: None,
    }
}

/// Project `p` of workspace `ws`, never reconciled: no finalizer, no status.
pub fn project() -> Project {
    Project {
        metadata: meta("p", "uid-p"),
        spec: ProjectSpec { workspace: "ws".into(), ..Default::default() },
        status: None,
    }
}

/// With our finalizer, as after its first reconcile.
pub fn finalized<K: Resource>(mut obj: K) -> K {
    obj.meta_mut().finalizers.get_or_insert_with(Vec::new).push(labels::FINALIZER.into());
    obj
}

/// Namespace `p`, provisioned for this instance of project `p`.
pub fn our_namespace(project: &Project) -> ObjectMeta {
    let labels = BTreeMap::from([
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
        (labels::WORKSPACE.to_owned(), project.spec.workspace.clone()),
        (labels::PROJECT.to_owned(), project.name_any()),
    ]);
    let annotations = BTreeMap::from([(labels::PROJECT_UID.to_owned(), project.uid().unwrap_or_default())]);
    ObjectMeta { labels: Some(labels), annotations: Some(annotations), ..meta(&project.name_any(), "uid-ns") }
}

/// ProjectRoleBinding `b` granting `role` in project `p` to bob.
pub fn binding(role: &str) -> ProjectRoleBinding {
    ProjectRoleBinding {
        metadata: meta("b", "uid-b"),
        spec: ProjectRoleBindingSpec {
            project: "p".into(),
            role: role.into(),
            subjects: vec![user("bob")],
            expires_at: None,
        },
        status: None,
    }
}

/// The condition of `type_` in a status write's body, as (status, reason).
pub fn condition(status_write: &Value, type_: &str) -> Option<(String, String)> {
    let conditions = status_write.pointer("/status/conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
}

/// `Some(("True", reason))`, for comparisons.
pub fn holds(reason: &str) -> Option<(String, String)> {
    Some(("True".into(), reason.into()))
}

/// `Some(("False", reason))`, for comparisons.
pub fn fails(reason: &str) -> Option<(String, String)> {
    Some(("False".into(), reason.into()))
}
