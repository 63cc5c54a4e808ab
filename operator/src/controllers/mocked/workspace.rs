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

const PROJECTS: &str = "/apis/zenml.io/v1alpha1/projects";

/// Workspace `ws` declaring a default project (`ws-default`), as after its first reconcile.
fn declaring() -> Workspace {
    let mut ws = finalized(workspace());
    ws.spec.default_project = Some(zenml_api::DefaultProject::default());
    ws
}

#[tokio::test]
async fn a_declared_default_project_is_created_never_applied_onto_the_name() {
    let ws = declaring();
    let h = with(&ws);

    reconcile(Arc::new(ws), h.ctx.clone()).await.expect("reconciled");

    let writes = h.server.writes();
    let created: Vec<_> = writes.iter().filter(|c| c.path == PROJECTS).collect();
    assert_eq!(created.len(), 1, "{:?}", h.server.lines());
    assert_eq!(created[0].method, http::Method::POST);
    assert!(created[0].query.contains("fieldManager=zenml-operator"), "{}", created[0].query);
    let body = &created[0].body;
    assert_eq!(body["metadata"]["name"], "ws-default");
    assert_eq!(body["spec"]["projectId"], "default");
    assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "uid-ws");
    assert!(!h.server.lines().iter().any(|l| l.starts_with(&format!("PATCH {PROJECTS}/"))), "no apply onto it");
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "DefaultProjectReady"), holds("Applied"));
}

#[tokio::test]
async fn a_default_project_name_taken_by_someone_elses_project_is_left_alone_and_reported() {
    let ws = declaring();
    let mut h = with(&ws);
    let mut theirs = project();
    theirs.metadata.name = Some("ws-default".into());
    theirs.spec.workspace = "other".into();
    h.caches.project(&theirs);

    reconcile(Arc::new(ws), h.ctx.clone()).await.expect("a conflict is no error");

    let lines = h.server.lines();
    assert!(lines.iter().all(|l| !l.contains(PROJECTS)), "nothing written to any project: {lines:?}");
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "DefaultProjectReady"), fails("NameConflict"));
    assert_eq!(condition(&status.body, "Ready"), fails("NameConflict"));
    let events = h.server.events();
    assert!(events.iter().any(|e| e.body["reason"] == "NameConflict"), "a Warning Event");
}

#[tokio::test]
async fn a_default_project_no_longer_declared_is_deleted_and_no_other_project() {
    let mut ws = declaring();
    let ours = zenml_api::resources::workspace::default_project(&ws).unwrap();
    let mut ours = finalized(ours);
    ours.metadata.uid = Some("uid-default".into());
    ws.spec.default_project = None;
    let mut h = with(&ws);
    h.caches.project(&ours).project(&project());

    reconcile(Arc::new(ws), h.ctx.clone()).await.expect("reconciled");

    let deletes: Vec<String> = h.server.lines().into_iter().filter(|l| l.starts_with("DELETE")).collect();
    assert_eq!(deletes, [format!("DELETE {PROJECTS}/ws-default")]);
    let delete = h.server.writes().into_iter().find(|c| c.method == http::Method::DELETE).unwrap();
    assert_eq!(delete.body["preconditions"]["uid"], "uid-default", "only the instance it made");
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "DefaultProjectReady"), None, "none declared, none reported");
}

#[tokio::test]
async fn a_deleted_workspace_deletes_its_default_project_rather_than_wait_for_it() {
    let mut ws = declaring();
    let mut ours = finalized(zenml_api::resources::workspace::default_project(&ws).unwrap());
    ours.metadata.uid = Some("uid-default".into());
    ws.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
    let mut h = with(&ws);
    h.caches.project(&ours).project(&project());

    reconcile(Arc::new(ws), h.ctx.clone()).await.expect("reconciled");

    let deletes: Vec<String> = h.server.lines().into_iter().filter(|l| l.starts_with("DELETE")).collect();
    assert_eq!(
        deletes,
        [format!("DELETE {PROJECTS}/ws-default")],
        "its own project p is not the workspace's to delete"
    );
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "ProjectsReady"), fails("ProjectsRemain"));
}

#[tokio::test]
async fn a_default_project_as_declared_is_not_written_again() {
    let ws = declaring();
    let mut ours = finalized(zenml_api::resources::workspace::default_project(&ws).unwrap());
    ours.metadata.uid = Some("uid-default".into());
    // As the API server returns it: with its status and fields others set.
    ours.spec.owners = vec![zenml_api::Subject {
        kind: zenml_api::SubjectKind::User,
        name: "carol".into(),
        project: None,
        namespace: None,
    }];
    ours.status = Some(Default::default());
    let mut h = with(&ws);
    h.caches.project(&ours);

    reconcile(Arc::new(ws), h.ctx.clone()).await.expect("reconciled");

    let lines = h.server.lines();
    assert!(lines.iter().all(|l| !l.contains(PROJECTS)), "an idle operator writes nothing: {lines:?}");
}
