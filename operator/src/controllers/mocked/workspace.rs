//! The Workspace reconciler's delegation writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use zenml_api::Workspace;

use super::{Harness, condition, fails, finalized, holds, path_of, project, workspace};
use crate::controllers::workspace::reconcile;

const DELEGATION: &str = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/zenml-workspace-ws";
const STATUS: &str = "PATCH /apis/zenml.io/v1alpha1/workspaces/ws/status";

fn with(ws: &Workspace) -> Harness {
    let mut h = Harness::new();
    h.caches.workspace(ws);
    h.server.holds(&path_of::<Workspace>("ws"), ws);
    h
}

#[tokio::test]
async fn a_new_workspace_is_finalized_and_delegates_its_projects_to_its_admins() {
    let ws = workspace();
    let mut h = with(&ws);
    h.caches.project(&project());

    let action = reconcile(Arc::new(ws), h.ctx.clone()).await.expect("reconciled");

    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(600)));
    assert_eq!(
        h.server.lines(),
        [
            "PATCH /apis/zenml.io/v1alpha1/workspaces/ws",
            // Nothing of that name in the cache of our ClusterRoleBindings: is it someone else's?
            &format!("GET {DELEGATION}"),
            "PATCH /apis/rbac.authorization.k8s.io/v1/clusterroles/zenml-workspace-ws",
            &format!("PATCH {DELEGATION}"),
            STATUS,
        ]
    );
    let writes = h.server.writes();
    let (role, binding, status) = (&writes[2], &writes[3], &writes[4]);
    assert!(role.is_our_apply() && binding.is_our_apply() && status.is_our_apply());
    assert_eq!(role.body["rules"][0]["verbs"][0], "manage-projects");
    assert_eq!(role.body["rules"][0]["resourceNames"][0], "ws");
    assert_eq!(binding.body["subjects"][0]["name"], "alice", "the workspace's admin");
    assert_eq!(binding.body["metadata"]["ownerReferences"][0]["uid"], "uid-ws");
    assert_eq!(condition(&status.body, "DelegationReady"), holds("Applied"));
    assert_eq!(condition(&status.body, "Ready"), holds("Ready"));
    assert_eq!(status.body["status"]["projects"], 1);
    assert_eq!(h.wake.next().await, Some(ObjectRef::new("p")), "its project's new verdict wakes it");
}

#[tokio::test]
async fn a_delegation_name_taken_by_someone_elses_cluster_role_is_left_alone_and_reported() {
    let ws = finalized(workspace());
    let mut h = with(&ws);
    h.caches.cluster_role("zenml-workspace-ws", BTreeMap::from([("team".to_owned(), "platform".to_owned())]));

    reconcile(Arc::new(ws), h.ctx.clone()).await.expect("a conflict is no error");

    let lines = h.server.lines();
    assert!(lines.iter().all(|l| !l.starts_with("PATCH /apis/rbac.authorization.k8s.io/")), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some(STATUS));
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "DelegationReady"), fails("NameConflict"));
    assert_eq!(condition(&status.body, "Ready"), fails("NameConflict"));
}
