//! What every reconciler shares: the client, the caches, the event recorder, settings and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::write::events::{Event, EventAction, EventType, Recorder, Reporter};
use futures::channel::mpsc;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource};

use super::children::ChildStores;
use crate::runtime::metrics::Metrics;
use crate::watch::binding_index::BindingIndex;
use crate::write::apply::{Change, Verb};
use crate::write::expiring::Expiring;
use zenml_api::resources::budget::Verdict;
use zenml_api::resources::{NetworkFacts, RoleMap};
use zenml_api::status::conditions::Reason;
use zenml_api::{Project, ProjectRoleBinding, Workspace};

/// Settings from the command line.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The kinds workspace templates may have, as `apiVersion/Kind` (`--template-kinds`, the chart's `templates.kinds`).
    pub template_kinds: Vec<String>,
    pub roles: RoleMap,
    /// Namespaces no Project may claim besides `default` and `kube-*`: the operator's own, for one.
    pub protected_namespaces: Vec<String>,
    /// The ValidatingAdmissionPolicy that enforces Workspaces' `spec.policies` (the chart's
    /// `<release>-workspace-policies`); the workspace reconciler binds it once per workspace. `None`: not bound.
    pub workspace_policy: Option<String>,
    /// What restricted egress must reach. Its API server endpoints, when given (`--api-server-endpoint`), replace
    /// those of the `kubernetes` Service (see `Context::network_facts`).
    pub network: NetworkFacts,
}

/// Read-only caches of everything reconcile compares against; all filled by watches, none by polling.
#[derive(Clone)]
pub struct Stores {
    pub projects: Store<Project>,
    pub workspaces: Store<Workspace>,
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// What projects own in their namespaces, one cache per kind.
    pub children: ChildStores,
    pub bindings: Store<ProjectRoleBinding>,
    pub binding_index: BindingIndex,
    pub cluster_roles: Store<ClusterRole>,
    /// Every ClusterRole, metadata only: whether a role a binding names exists.
    pub role_names: Store<PartialObjectMeta<ClusterRole>>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    /// The workspace policy bindings we made (metadata only): whether a workspace's is in place.
    pub policy_bindings: Store<PartialObjectMeta<ValidatingAdmissionPolicyBinding>>,
    /// The `kubernetes` Service's EndpointSlices in `default`: the API server's addresses, which restricted egress
    /// must allow.
    pub api_server: Store<EndpointSlice>,
}

impl Stores {
    /// Waits until every cache holds a full list, so that nothing is mistaken for missing after a restart.
    pub async fn ready(&self) -> crate::Result<()> {
        wait(&self.projects).await?;
        wait(&self.workspaces).await?;
        wait(&self.namespaces).await?;
        self.children.ready().await;
        wait(&self.bindings).await?;
        wait(&self.cluster_roles).await?;
        wait(&self.role_names).await?;
        wait(&self.cluster_role_bindings).await?;
        wait(&self.policy_bindings).await?;
        wait(&self.api_server).await
    }

    /// ProjectRoleBindings of a project, from the cache.
    pub fn bindings_of(&self, project: &str) -> Vec<Arc<ProjectRoleBinding>> {
        let names = self.binding_index.of(project);
        // The index follows the cache's own events, so it names what the cache holds; the check is for the moment
        // between the two.
        names
            .iter()
            .filter_map(|n| self.bindings.get(&ObjectRef::new(n)))
            .filter(|b| b.spec.project == project)
            .collect()
    }

    /// Bindings whose role resolves to `cluster_role` (a scan: ClusterRoles come and go rarely).
    pub fn bindings_to_cluster_role(&self, cluster_role: &str, roles: &RoleMap) -> Vec<Arc<ProjectRoleBinding>> {
        self.bindings
            .state()
            .into_iter()
            .filter(|b| {
                let workspace = self
                    .projects
                    .get(&ObjectRef::new(&b.spec.project))
                    .and_then(|p| self.workspaces.get(&ObjectRef::new(&p.spec.workspace)));
                workspace.and_then(|w| roles.resolve(&w, &b.spec.role)).as_deref() == Some(cluster_role)
            })
            .collect()
    }

    /// Projects of a workspace, from the cache.
    pub fn projects_of(&self, workspace: &str) -> Vec<Arc<Project>> {
        self.projects.state().into_iter().filter(|p| p.spec.workspace == workspace).collect()
    }
}

/// `Store::wait_until_ready` wakes only the last of several concurrent waiters (the controller itself is one), so it
/// is polled again until it resolves rather than awaited once.
async fn wait<K: Resource + Clone>(store: &Store<K>) -> crate::Result<()>
where
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        match tokio::time::timeout(std::time::Duration::from_millis(100), store.wait_until_ready()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(_)) => return Err(crate::Error::CachesNotReady),
            Err(_) => continue,
        }
    }
}

pub struct Context {
    /// Becomes true once every cache is synced; reconciles wait for it (see `Stores::ready`).
    pub caches_synced: tokio::sync::watch::Receiver<bool>,
    pub client: Client,
    pub recorder: Recorder,
    pub stores: Stores,
    pub settings: Settings,
    pub metrics: Arc<Metrics>,
    /// The verdict each project last acted on; the workspace reconciler wakes the projects whose verdict changed.
    pub verdicts_seen: Mutex<HashMap<String, Verdict>>,
    /// Wakes project reconciles from the workspace reconciler.
    pub wake_project: mpsc::UnboundedSender<ObjectRef<Project>>,
    /// Consecutive failures per object, for exponential backoff that resets on success (see `error_policy`).
    pub failures: Expiring<String, u32>,
    /// Status writes the caches have not caught up with yet (see `in_flight`).
    pub status_in_flight: crate::write::in_flight::InFlight,
    /// Budget grants sent and not yet seen in the quota cache (see `grants`).
    pub grants: crate::write::grants::Grants,
    /// When each project's status was last written, to space out usage-only writes (see `usage`).
    pub usage_writes: crate::write::usage::UsageWrites,
    /// Events published at once (see `publish`).
    pub event_slots: Arc<tokio::sync::Semaphore>,
}

/// How many Events are published concurrently.
pub const EVENT_SLOTS: usize = 16;

impl Context {
    pub fn new(
        client: Client,
        stores: Stores,
        cfg: &crate::runtime::RunConfig,
        metrics: Arc<Metrics>,
        caches_synced: tokio::sync::watch::Receiver<bool>,
        wake_project: mpsc::UnboundedSender<ObjectRef<Project>>,
    ) -> Self {
        let reporter = Reporter { controller: "zenml-operator".into(), instance: cfg.instance.clone() };
        Context {
            caches_synced,
            recorder: Recorder::new(client.clone(), reporter),
            client,
            stores,
            settings: cfg.settings.clone(),
            metrics,
            verdicts_seen: Mutex::new(HashMap::new()),
            wake_project,
            failures: Expiring::new(super::FAILURES_TTL),
            status_in_flight: Default::default(),
            grants: Default::default(),
            usage_writes: Default::default(),
            event_slots: Arc::new(tokio::sync::Semaphore::new(EVENT_SLOTS)),
        }
    }

    /// What restricted egress must reach: the API server endpoints given on the command line, else those of the
    /// `kubernetes` Service as watched.
    pub fn network_facts(&self) -> NetworkFacts {
        let mut facts = self.settings.network.clone();
        if facts.api_server.is_empty() {
            facts.api_server = NetworkFacts::api_server_from(self.stores.api_server.state().iter().map(|s| &**s));
        }
        facts
    }

    /// Waits until the caches are synced, so a reconcile never acts on a half-filled cache.
    pub async fn synced(&self) -> crate::Result<()> {
        let mut rx = self.caches_synced.clone();
        rx.wait_for(|synced| *synced).await.map(|_| ()).map_err(|_| crate::Error::CachesNotReady)
    }

    /// Publishes an Event about `obj`. Events are best effort: a failure is logged, never fails the reconcile.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: Reason,
        action: EventAction,
        note: String,
    ) {
        self.publish(obj, type_, reason.as_str(), action, note, None).await;
    }

    /// Events for the writes of one reconcile, and a count per object in the metrics. One Event per verb lists the
    /// objects written (a project's first provisioning is one `Created` Event, not twelve: Events are API writes
    /// too); a single object is also named as the Event's related object, so `kubectl get events` can select it.
    pub async fn changed<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        changes: &[Change],
        action: EventAction,
        type_: EventType,
    ) {
        for verb in [Verb::Created, Verb::Updated, Verb::Deleted] {
            let of_verb: Vec<&Change> = changes.iter().filter(|c| c.verb == verb).collect();
            let Some(first) = of_verb.first() else { continue };
            for c in &of_verb {
                self.record_write(c);
            }
            let objects = of_verb.iter().map(|c| format!("{} {}", c.kind, c.name)).collect::<Vec<_>>().join(", ");
            let related = (of_verb.len() == 1).then(|| first.object.clone());
            self.publish(obj, type_, verb.as_str(), action, format!("{verb} {objects}"), related).await;
        }
    }

    /// Counts a write in the metrics, for writes told by another Event.
    pub fn record_write(&self, change: &Change) {
        self.metrics.writes.get_or_create(&crate::runtime::metrics::KindLabel { kind: change.kind.clone() }).inc();
    }

    /// Publishes in the background: an Event is best effort, and a reconcile should not wait for it.
    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: EventAction,
        note: String,
        related: Option<k8s_openapi::api::core::v1::ObjectReference>,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(truncate(note, 1000)),
            action: action.as_str().to_owned(),
            secondary: related,
        };
        let recorder = self.recorder.clone();
        let regarding = obj.object_ref(&());
        let reason = reason.to_owned();
        let slots = self.event_slots.clone();
        tokio::spawn(async move {
            // A bounded number at a time: at bulk every reconcile publishes, and unbounded, each publish opens its
            // own connection while the API server is saturated, competing with the reconciles' writes. Too few lag
            // behind: with 4, a bulk provisioning's Events were still being written well after it settled (fb5ff16).
            let Ok(_slot) = slots.acquire_owned().await else { return };
            if let Err(e) = recorder.publish(&ev, &regarding).await {
                tracing::warn!(error = %e, reason, "cannot publish event");
            }
        });
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}
