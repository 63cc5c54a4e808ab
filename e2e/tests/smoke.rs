//! Proof that the cluster under test is a real control plane: the controllers the operator
//! relies on run (namespace finalization, quota, RBAC aggregation) and the API server enforces
//! admission and authorization. These hold on any conformant cluster, so they also pass
//! against whatever `KUBECONFIG` points at.

use std::time::Duration;

use e2e::{client, delete_namespace, eventually, kubectl, namespace, run, unique};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

async fn create<K>(api: &Api<K>, object: serde_json::Value) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.create(&PostParams::default(), &from_json(object)).await.expect("create")
}

#[tokio::test]
async fn deleted_namespace_is_finalized() {
    let client = client().await;
    let ns = namespace(&client, "smoke-ns").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    create(&cms, json!({ "metadata": { "name": "data" }, "data": { "k": "v" } })).await;

    delete_namespace(&client, &ns).await;

    // The namespace controller has to delete its content and remove the `kubernetes`
    // finalizer before the namespace itself goes away.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually(TIMEOUT, &format!("namespace {ns} to be gone"), || async {
        match namespaces.get(&ns).await {
            Err(kube::Error::Api(e)) if e.code == 404 => Some(()),
            _ => None,
        }
    })
    .await;
}

#[tokio::test]
async fn resource_quota_is_tracked_and_enforced() {
    let client = client().await;
    let ns = namespace(&client, "smoke-quota").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    create(
        &quotas,
        json!({
            "metadata": { "name": "small" },
            "spec": { "hard": { "pods": "2", "requests.cpu": "500m" } }
        }),
    )
    .await;

    // The quota controller fills in the status; admission needs it before it admits anything.
    let status = eventually(TIMEOUT, "quota status to be filled in", || async {
        let status = quotas.get("small").await.ok()?.status?;
        let hard = status.hard.as_ref()?;
        let used = status.used.as_ref()?;
        (hard.contains_key("pods") && used.contains_key("requests.cpu")).then_some(status)
    })
    .await;
    assert_eq!(status.hard.unwrap()["requests.cpu"].0, "500m");
    assert_eq!(status.used.unwrap()["pods"].0, "0");

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = |name: &str, cpu: &str| -> Pod {
        from_json(json!({
            "metadata": { "name": name },
            "spec": { "containers": [{
                "name": "main",
                "image": "registry.k8s.io/pause:3.10",
                "resources": { "requests": { "cpu": cpu }, "limits": { "cpu": cpu } }
            }]}
        }))
    };

    let err = pods
        .create(&PostParams::default(), &pod("too-big", "1"))
        .await
        .expect_err("a pod over the quota must be rejected");
    match err {
        kube::Error::Api(e) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(e.message.contains("exceeded quota"), "{e:?}");
        }
        e => panic!("unexpected error: {e}"),
    }

    pods.create(&PostParams::default(), &pod("fits", "200m")).await.expect("a pod within the quota is admitted");
    eventually(TIMEOUT, "quota usage to count the pod", || async {
        let used = quotas.get("small").await.ok()?.status?.used?;
        (used.get("requests.cpu")?.0 == "200m").then_some(())
    })
    .await;

    delete_namespace(&client, &ns).await;
}

fn has_rule(role: &ClusterRole, group: &str, resource: &str, verb: &str) -> bool {
    role.rules.iter().flatten().any(|rule| {
        let api_groups = rule.api_groups.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        api_groups.iter().any(|g| g == group)
            && resources.iter().any(|r| r == resource)
            && rule.verbs.iter().any(|v| v == verb)
    })
}

#[tokio::test]
async fn cluster_role_aggregation() {
    let client = client().await;
    let roles: Api<ClusterRole> = Api::all(client.clone());

    // The built-in roles have no rules of their own; everything comes from aggregation.
    let view = roles.get("view").await.expect("view ClusterRole");
    assert!(view.aggregation_rule.is_some());
    assert!(has_rule(&view, "", "pods", "get") && has_rule(&view, "", "pods", "list"));
    let edit = roles.get("edit").await.expect("edit ClusterRole");
    assert!(has_rule(&edit, "", "configmaps", "create"));
    let admin = roles.get("admin").await.expect("admin ClusterRole");
    assert!(has_rule(&admin, "rbac.authorization.k8s.io", "rolebindings", "create"));

    let name = unique("smoke-aggregate");
    let resource = format!("{name}s");
    create(
        &roles,
        json!({
            "metadata": {
                "name": name,
                "labels": { "rbac.authorization.k8s.io/aggregate-to-view": "true" }
            },
            "rules": [{ "apiGroups": ["e2e.zenml.io"], "resources": [resource], "verbs": ["get"] }]
        }),
    )
    .await;

    let aggregated = |present: bool| {
        let (roles, resource) = (roles.clone(), resource.clone());
        async move {
            let view = roles.get("view").await.ok()?;
            (has_rule(&view, "e2e.zenml.io", &resource, "get") == present).then_some(())
        }
    };
    eventually(TIMEOUT, "the new rule to be aggregated into view", || aggregated(true)).await;

    roles.delete(&name, &DeleteParams::default()).await.expect("delete ClusterRole");
    eventually(TIMEOUT, "the rule to leave view again", || aggregated(false)).await;
}

fn can_i(ns: &str, user: &str) -> String {
    let out = run(kubectl().args(["auth", "can-i", "create", "configmaps", "-n", ns, "--as", user]));
    out.stdout.trim().to_owned()
}

fn create_configmap_as(ns: &str, user: &str, name: &str) -> e2e::Output {
    run(kubectl().args(["create", "configmap", name, "-n", ns, "--as", user]))
}

#[tokio::test]
async fn rbac_is_enforced() {
    let client: Client = client().await;
    let ns = namespace(&client, "smoke-rbac").await;
    let user = unique("smoke-user");

    assert_eq!(can_i(&ns, &user), "no");
    let denied = create_configmap_as(&ns, &user, "denied");
    assert!(!denied.success(), "{denied:?}");
    assert!(denied.stderr.contains("forbidden"), "{denied:?}");

    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns);
    create(
        &bindings,
        json!({
            "metadata": { "name": "edit" },
            "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit" },
            "subjects": [{ "apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user }]
        }),
    )
    .await;

    // The authorizer works from an informer cache, so the binding takes effect shortly after.
    eventually(TIMEOUT, "the RoleBinding to take effect", || async { (can_i(&ns, &user) == "yes").then_some(()) })
        .await;
    let allowed = create_configmap_as(&ns, &user, "allowed");
    assert!(allowed.success(), "{allowed:?}");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.get("allowed").await.expect("configmap created as the user");

    delete_namespace(&client, &ns).await;
}
