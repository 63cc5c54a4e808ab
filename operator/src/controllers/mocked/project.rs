//! The Project reconciler's branches and error paths.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use serde_json::json;
use zenml_api::labels::{self, FINALIZER};
use zenml_api::resources::desired;
use zenml_api::{DeletionPolicy, Egress, EgressMode, Project};

use super::api::Call;
use super::{Harness, condition, fails, finalized, holds, our_namespace, path_of, project, workspace};
use crate::controllers::project::{RESYNC, reconcile};
use crate::controllers::{error_policy, with_backoff};

const NAMESPACE: &str = "PATCH /api/v1/namespaces/p";
const QUOTA: &str = "PATCH /api/v1/namespaces/p/resourcequotas/zenml-project";
const NETWORK_POLICY: &str = "PATCH /apis/networking.k8s.io/v1/namespaces/p/networkpolicies/zenml-project-isolation";
const RUNNER: &str = "PATCH /api/v1/namespaces/p/serviceaccounts/zenml-runner";
const DELEGATION_ROLE: &str = "PATCH /apis/rbac.authorization.k8s.io/v1/namespaces/p/roles/zenml-project-admin";
const ROLE_BINDINGS: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/p/rolebindings/";
const STATUS: &str = "PATCH /apis/zenml.io/v1alpha1/projects/p/status";

/// A harness holding workspace `ws` and `project` in its caches and on its server.
fn with(project: &Project) -> Harness {
    let mut h = Harness::new();
    h.caches.workspace(&workspace()).project(project);
    h.server.holds(&path_of::<Project>("p"), project);
    h
}

/// The RoleBindings `desired` builds for project `p` of workspace `ws`, as apply lines.
fn role_binding_applies(project: &Project) -> Vec<String> {
    let ws = workspace();
    let quota = Default::default();
    let children = desired(project, &ws, &quota, &Default::default(), &Default::default(), &[], Timestamp::now());
    children
        .role_bindings
        .iter()
        .map(|rb| format!("PATCH {ROLE_BINDINGS}{}", rb.metadata.name.as_ref().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_new_project_whose_workspace_exists_is_finalized_provisioned_by_server_side_apply_and_reported_ready() {
    let p = project();
    let h = with(&p);

    let action = reconcile(Arc::new(p.clone()), h.ctx.clone()).await.expect("reconciled");

    assert_eq!(action, Action::requeue(RESYNC));
    let mut expected = vec!["PATCH /apis/zenml.io/v1alpha1/projects/p".to_owned()];
    expected.extend([NAMESPACE, QUOTA, NETWORK_POLICY, RUNNER, DELEGATION_ROLE].map(String::from));
    let role_bindings = role_binding_applies(&p);
    assert!(role_bindings.len() >= 3, "the runner's, the admin member's, the delegation's: {role_bindings:?}");
    expected.extend(role_bindings);
    expected.push(STATUS.to_owned());
    assert_eq!(h.server.lines(), expected);

    let writes = h.server.writes();
    let finalizer = &writes[0];
    assert_eq!(finalizer.content_type, "application/json-patch+json");
    assert_eq!(finalizer.body[0], json!({"op": "test", "path": "/metadata/finalizers", "value": null}));
    assert_eq!(finalizer.body[1]["value"], json!([FINALIZER]));
    let applies = &writes[1..];
    assert!(
        applies.iter().all(Call::is_our_apply),
        "every child and the status by server-side apply as zenml-operator"
    );
    for child in &applies[..applies.len() - 1] {
        assert!(child.body["apiVersion"].is_string() && child.body["kind"].is_string(), "{child:?}");
        assert_eq!(child.body["metadata"]["labels"][labels::MANAGED_BY], labels::MANAGED_BY_VALUE);
    }
    let status = &applies[applies.len() - 1];
    assert_eq!(condition(&status.body, "Ready"), holds("Ready"));
    assert_eq!(condition(&status.body, "NamespaceReady"), holds("Provisioned"));
    assert_eq!(condition(&status.body, "QuotaReady"), holds("QuotaApplied"));
    assert_eq!(status.body["status"]["namespace"], "p");
    assert_eq!(status.body["status"]["observedGeneration"], 1);
}

/// Restricted egress needs the API server's address: without one the project is provisioned, its policy allows the
/// workspace and DNS, and the status says why pods cannot reach the API server; once the `kubernetes` Service's
/// EndpointSlice is seen, the policy allows its address and the condition holds.
#[tokio::test]
async fn restricted_egress_without_a_known_api_server_is_reported_until_its_endpoints_are_seen() {
    let mut p = finalized(project());
    p.spec.egress = Some(Egress { mode: EgressMode::Workspace, ..Default::default() });
    let mut h = with(&p);

    reconcile(Arc::new(p.clone()), h.ctx.clone()).await.expect("reconciled");
    let writes = h.server.writes();
    let policy = writes.iter().find(|w| w.line() == NETWORK_POLICY).expect("the policy is written");
    assert_eq!(policy.body["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(policy.body["spec"]["egress"].as_array().map(Vec::len), Some(2), "the workspace and DNS");
    let status = writes.last().expect("a status");
    assert_eq!(condition(&status.body, "EgressReady"), fails("ApiServerUnknown"));
    assert_eq!(condition(&status.body, "Ready"), fails("ApiServerUnknown"));

    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["192.0.2.10"], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
    }))
    .unwrap();
    h.caches.api_server(&slice);
    let before = writes.len();
    reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");
    let writes = h.server.writes().split_off(before);
    let policy = writes.iter().find(|w| w.line() == NETWORK_POLICY).expect("the policy is written again");
    let api = &policy.body["spec"]["egress"][2];
    assert_eq!(api["to"][0]["ipBlock"]["cidr"], "192.0.2.10/32");
    assert_eq!(api["ports"][0]["port"], 6443);
    let status = writes.last().expect("a status");
    assert_eq!(condition(&status.body, "EgressReady"), holds("EgressWorkspace"));
}

#[tokio::test]
async fn a_project_whose_namespace_belongs_to_someone_else_writes_no_child_and_reports_the_conflict() {
    let p = finalized(project());
    let mut h = with(&p);
    h.caches.namespace(ObjectMeta { name: Some("p".into()), uid: Some("theirs".into()), ..Default::default() });

    let action = reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");

    assert_eq!(action, Action::requeue(RESYNC));
    assert_eq!(h.server.lines(), [STATUS], "nothing but the status is written");
    let status = &h.server.writes()[0];
    assert_eq!(condition(&status.body, "NamespaceReady"), fails("NamespaceConflict"));
    assert_eq!(condition(&status.body, "Ready"), fails("NamespaceConflict"));
    let message = status.body.pointer("/status/conditions/0/message").and_then(|m| m.as_str()).unwrap();
    assert!(
        message.contains("kubectl annotate namespace p zenml.io/adopt=ws/p"),
        "says how to hand it over: {message}"
    );
}

#[tokio::test]
async fn a_role_binding_the_api_server_forbids_is_reported_as_bind_forbidden_not_retried() {
    let p = finalized(project());
    let h = with(&p);
    h.server.fail(|c| c.path.contains("/rolebindings/").then_some((403, "Forbidden")));

    let action = reconcile(Arc::new(p.clone()), h.ctx.clone()).await.expect("a refusal to bind is no error");

    assert_eq!(action, Action::requeue(RESYNC));
    let lines = h.server.lines();
    assert!(lines.contains(&DELEGATION_ROLE.to_owned()), "the other children are written: {lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some(STATUS));
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "AccessReady"), fails("BindForbidden"));
    assert_eq!(condition(&status.body, "NamespaceReady"), holds("Provisioned"));
    assert_eq!(condition(&status.body, "Ready"), fails("BindForbidden"));
}

#[tokio::test]
async fn an_apply_that_fails_on_the_server_fails_the_reconcile_and_backs_off_until_a_success() {
    let p = finalized(project());
    let h = with(&p);
    let p = Arc::new(p);
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let fails_now = failing.clone();
    h.server.fail(move |c| {
        let on = fails_now.load(std::sync::atomic::Ordering::SeqCst) && c.path.contains("/networkpolicies/");
        on.then_some((500, "InternalError"))
    });
    let mut reconcile = with_backoff(reconcile);

    let error = reconcile(p.clone(), h.ctx.clone()).await.expect_err("a server error fails the reconcile");

    assert_eq!(error.api_code(), Some(500));
    let status = h.server.status_writes().pop().expect("the failure is reported");
    assert_eq!(condition(&status.body, "NamespaceReady"), fails("ApplyFailed"));
    assert_eq!(error_policy(p.clone(), &error, h.ctx.clone()), Action::requeue(Duration::from_secs(1)));
    let again = reconcile(p.clone(), h.ctx.clone()).await.expect_err("still failing");
    assert_eq!(error_policy(p.clone(), &again, h.ctx.clone()), Action::requeue(Duration::from_secs(2)));

    failing.store(false, std::sync::atomic::Ordering::SeqCst);
    reconcile(p.clone(), h.ctx.clone()).await.expect("the server recovered");
    assert_eq!(
        error_policy(p, &error, h.ctx.clone()),
        Action::requeue(Duration::from_secs(1)),
        "a success resets the backoff"
    );
}

/// A child of project `p` in namespace `p`, as its watch delivers it.
fn child<K: kube::Resource<DynamicType = ()> + Default>(name: &str, controller: &str) -> watcher::Event<K> {
    let mut k = K::default();
    *k.meta_mut() = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("p".into()),
        uid: Some(format!("uid-{name}")),
        owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            uid: controller.into(),
            controller: Some(true),
            ..Default::default()
        }]),
        ..Default::default()
    };
    watcher::Event::Apply(k)
}

#[tokio::test]
async fn a_retained_project_revokes_every_grant_first_keeps_its_quota_and_walls_and_drops_its_finalizer() {
    let mut p = finalized(project());
    p.spec.deletion_policy = DeletionPolicy::Retain;
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()));
    let mut h = with(&p);
    h.caches.namespace(our_namespace(&p));
    h.caches
        .children
        .apply::<ResourceQuota>(child("zenml-project", "uid-p"))
        .apply::<LimitRange>(child("zenml-project", "uid-p"))
        .apply::<NetworkPolicy>(child("zenml-project-isolation", "uid-p"))
        .apply::<ServiceAccount>(child("zenml-runner", "uid-p"))
        .apply::<Role>(child("zenml-project-admin", "uid-p"))
        .apply::<RoleBinding>(child("zenml-runner", "uid-p"))
        .apply::<RoleBinding>(child("b-developer", "uid-b"));

    let action = reconcile(Arc::new(p), h.ctx.clone()).await.expect("released");

    assert_eq!(action, Action::await_change());
    let lines = h.server.lines();
    let (deletes, rest) = lines.split_at(4);
    let mut role_bindings = deletes[..2].to_vec();
    role_bindings.sort();
    assert_eq!(
        role_bindings,
        [format!("DELETE {ROLE_BINDINGS}b-developer"), format!("DELETE {ROLE_BINDINGS}zenml-runner")],
        "every RoleBinding in the namespace goes first, its bindings' too"
    );
    assert_eq!(
        deletes[2..],
        [
            "DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/p/roles/zenml-project-admin",
            "DELETE /api/v1/namespaces/p/serviceaccounts/zenml-runner",
        ]
    );
    assert_eq!(
        rest,
        [
            "PATCH /apis/networking.k8s.io/v1/namespaces/p/networkpolicies/zenml-project-isolation",
            "PATCH /api/v1/namespaces/p/limitranges/zenml-project",
            QUOTA,
            NAMESPACE,
            "PATCH /apis/zenml.io/v1alpha1/projects/p",
        ]
    );
    let writes = h.server.writes();
    let quota = &writes[6];
    assert_eq!(quota.content_type, "application/merge-patch+json", "the quota is kept, only unlabelled");
    assert_eq!(quota.body["metadata"]["labels"], json!({labels::PROJECT: null}));
    assert_eq!(quota.body["metadata"]["annotations"][labels::FORMER_PROJECT], "p");
    let namespace = &writes[7];
    assert!(namespace.is_our_apply());
    assert_eq!(namespace.body["metadata"]["annotations"][labels::FORMER_WORKSPACE], "ws");
    let finalizer = &writes[8];
    assert_eq!(finalizer.body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
}

/// `p` expiring `secs` from now (negative: that long ago).
fn expiring(secs: i64) -> Project {
    let mut p = finalized(project());
    let at = Timestamp::now().checked_add(k8s_openapi::jiff::SignedDuration::from_secs(secs)).unwrap();
    p.spec.expires_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at));
    p
}

#[tokio::test]
async fn a_project_that_expires_later_is_woken_at_the_instant_not_polled() {
    let p = expiring(90);
    let h = with(&p);

    let action = reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");

    let namespace = h.server.writes().into_iter().find(|c| c.line() == NAMESPACE).expect("the namespace");
    assert!(namespace.body["metadata"]["labels"].get(labels::FROZEN).is_none(), "not frozen yet");
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "Frozen"), fails("NotFrozen"));
    // Action keeps its delay private: read it from its Debug form, `requeue_after: Some(90.19s)`.
    let debug = format!("{action:?}");
    let after: f64 =
        debug.split("Some(").nth(1).and_then(|r| r.split('s').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!((85.0..=90.5).contains(&after), "requeued at the expiry (in about 90 s), not at the resync: {debug}");
}

#[tokio::test]
async fn an_expired_project_is_frozen_by_the_freeze_label_and_says_so_in_an_event() {
    let p = expiring(-5);
    let h = with(&p);

    let action = reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");

    assert_eq!(action, Action::requeue(RESYNC), "nothing more to wait for");
    let namespace = h.server.writes().into_iter().find(|c| c.line() == NAMESPACE).expect("the namespace");
    assert_eq!(namespace.body["metadata"]["labels"][labels::FROZEN], "true", "what the freeze policy reads");
    let status = h.server.status_writes().pop().unwrap();
    assert_eq!(condition(&status.body, "Frozen"), holds("Expired"));
    assert_eq!(condition(&status.body, "Ready"), holds("Ready"), "frozen is beside Ready, not part of it");
    // Events are published in the background.
    let mut expired = None;
    for _ in 0..100 {
        expired = h.server.events().into_iter().find(|e| e.body["reason"] == "Expired");
        if expired.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(expired.expect("an Expired Event").body["type"], "Warning");
}
