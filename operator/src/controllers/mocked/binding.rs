//! The ProjectRoleBinding reconciler's branches.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use zenml_api::ProjectRoleBinding;
use zenml_api::resources::binding::role_binding_name;

use super::{Harness, binding, condition, fails, holds, our_namespace, path_of, project, workspace};
use crate::controllers::binding::reconcile;

const STATUS: &str = "PATCH /apis/zenml.io/v1alpha1/projectrolebindings/b/status";

/// A harness with project `p` provisioned in workspace `ws`, the ClusterRole `edit` existing, and `binding`.
fn with(binding: &ProjectRoleBinding) -> Harness {
    let mut h = Harness::new();
    let p = project();
    h.caches.workspace(&workspace()).project(&p).namespace(our_namespace(&p)).binding(binding);
    h.caches.cluster_role("edit", BTreeMap::new());
    h.server.holds(&path_of::<ProjectRoleBinding>("b"), binding);
    h
}

fn role_binding_path(binding: &ProjectRoleBinding) -> String {
    format!("/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings/{}", role_binding_name(binding))
}

#[tokio::test]
async fn a_binding_to_an_allowed_role_applies_its_role_binding_and_reports_bound() {
    let b = binding("developer");
    let h = with(&b);

    reconcile(Arc::new(b.clone()), h.ctx.clone()).await.expect("reconciled");

    assert_eq!(h.server.lines(), [format!("PATCH {}", role_binding_path(&b)), STATUS.to_owned()]);
    let writes = h.server.writes();
    assert!(writes.iter().all(|w| w.is_our_apply()));
    assert_eq!(writes[0].body["roleRef"]["name"], "edit");
    assert_eq!(writes[0].body["subjects"][0]["name"], "bob");
    assert_eq!(condition(&writes[1].body, "Ready"), holds("Bound"));
    assert_eq!(writes[1].body["status"]["boundTo"]["projectUid"], "uid-p");
}

#[tokio::test]
async fn a_binding_to_a_role_the_workspace_does_not_allow_binds_nothing_and_says_so() {
    let b = binding("ml-engineer");
    let h = with(&b);

    let action = reconcile(Arc::new(b), h.ctx.clone()).await.expect("a refusal is no error");

    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(600)));
    assert_eq!(h.server.lines(), [STATUS], "no RoleBinding is written");
    let status = &h.server.writes()[0];
    assert_eq!(condition(&status.body, "Ready"), fails("RoleNotAllowed"));
    assert!(status.body["status"]["roleBinding"].is_null());
}

#[tokio::test]
async fn a_binding_whose_role_stops_being_allowed_loses_its_role_binding() {
    let b = binding("ml-engineer");
    let mut h = with(&b);
    let granted = RoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some(role_binding_name(&b)),
            namespace: Some("p".into()),
            uid: Some("uid-rb".into()),
            owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                uid: "uid-b".into(),
                controller: Some(true),
                ..Default::default()
            }]),
            ..Default::default()
        },
        ..Default::default()
    };
    h.caches.children.apply(watcher::Event::Apply(granted));

    reconcile(Arc::new(b.clone()), h.ctx.clone()).await.expect("a refusal is no error");

    assert_eq!(h.server.lines(), [format!("DELETE {}", role_binding_path(&b)), STATUS.to_owned()]);
    let delete = &h.server.writes()[0];
    assert_eq!(delete.body["preconditions"]["uid"], "uid-rb", "only the RoleBinding we saw is deleted");
    assert_eq!(condition(&h.server.writes()[1].body, "Ready"), fails("RoleNotAllowed"));
}
