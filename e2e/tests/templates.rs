//! Workspace templates against a real API server: objects a Workspace lists (`spec.templates`) applied into every
//! project namespace, drift-repaired, pruned when removed, skipped where a Project opts out; kinds that could grant
//! refused at admission; someone else's object of a template's name left untouched and reported; Retain releasing
//! template objects like the limits.
//!
//! Every test makes its own Workspace and Projects under [`unique`] names and deletes them when it ends, pass or fail.
//! The operator is this binary's own, without leader election (as `reconcile.rs` does, and why): it runs as the chart's
//! ServiceAccount when `ZENML_E2E_IMPERSONATE=1`, so the chart's RBAC for `templates.kinds` is what is tested.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use e2e::fixtures::Cleanup;
use e2e::operator::Operator;
use e2e::{client, describe_conditions, eventually, kubectl, run, run_stdin, unique, zenml_object};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use zenml_api::labels;
use zenml_api::{Project, Workspace};

/// How long the operator may take for anything that needs no namespace deletion.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The promise for drift: an owned object edited or deleted by hand is restored within seconds.
const DRIFT_TIMEOUT: Duration = Duration::from_secs(5);
/// Namespace deletion runs through the namespace controller.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

const SERVER_URL: &str = "https://zenml.example.com";

/// This test binary's operator, which always acts (not `operator::shared()`, which stands by while another binary's
/// operator holds the default Lease).
fn operator() -> &'static Operator {
    static OPERATOR: OnceLock<Operator> = OnceLock::new();
    OPERATOR.get_or_init(|| {
        e2e::install_crds();
        Operator::start(&["--leader-elect=false"])
    })
}

struct Test {
    client: Client,
    made: Cleanup,
}

impl Test {
    async fn new() -> Test {
        let log = operator().log.clone();
        Test { made: Cleanup::new(TIMEOUT).operator_log(log), client: client().await }
    }

    fn workspace(&mut self, name: &str, spec: Value) {
        self.made.workspace(name, spec);
    }

    fn project(&mut self, name: &str, workspace: &str, mut spec: Value) {
        spec["workspace"] = json!(workspace);
        self.made.apply(&zenml_object("Project", name, spec));
    }

    fn config_maps(&self, ns: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Waits until ConfigMap `name` in `ns` holds `url` under `data.url`.
    async fn wait_url(&self, ns: &str, name: &str, url: &str, timeout: Duration) -> ConfigMap {
        let api = self.config_maps(ns);
        eventually(timeout, &format!("ConfigMap {ns}/{name} with url {url}"), || async {
            let cm = api.get_opt(name).await.map_err(|e| e.to_string())?.ok_or("missing")?;
            let got = cm.data.as_ref().and_then(|d| d.get("url")).cloned();
            if got.as_deref() == Some(url) { Ok(cm) } else { Err(format!("data.url is {got:?}")) }
        })
        .await
    }

    async fn wait_gone(&self, ns: &str, name: &str) {
        let api = self.config_maps(ns);
        eventually(TIMEOUT, &format!("ConfigMap {ns}/{name} to be deleted"), || async {
            match api.get_opt(name).await {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err("still there".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
    }

    /// Waits until the Project's TemplatesReady has `status` and `reason` for its current generation, and returns it.
    async fn wait_templates(&self, name: &str, status: &str, reason: &str) -> Project {
        let api: Api<Project> = Api::all(self.client.clone());
        eventually(TIMEOUT, &format!("project {name}: TemplatesReady={status} {reason}"), || async {
            let p = api.get(name).await.map_err(|e| e.to_string())?;
            let s = p.status.clone().unwrap_or_default();
            let c = s.conditions.iter().find(|c| c.type_ == "TemplatesReady");
            let current = s.observed_generation == p.metadata.generation;
            if current && c.is_some_and(|c| c.status == status && c.reason == reason) {
                Ok(p)
            } else {
                Err(format!("generation {:?}, {}", p.metadata.generation, describe_conditions(&s.conditions)))
            }
        })
        .await
    }

    /// Waits until the Project reports `count` templates applied.
    async fn wait_count(&self, name: &str, count: i32) {
        let api: Api<Project> = Api::all(self.client.clone());
        eventually(TIMEOUT, &format!("project {name}: status.templates {count}"), || async {
            let p = api.get(name).await.map_err(|e| e.to_string())?;
            let got = p.status.as_ref().and_then(|s| s.templates);
            if got == Some(count) { Ok(()) } else { Err(format!("status.templates is {got:?}")) }
        })
        .await;
    }

    async fn set_templates(&self, workspace: &str, templates: Value) {
        let api: Api<Workspace> = Api::all(self.client.clone());
        let patch = json!({"spec": {"templates": templates}});
        api.patch(workspace, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("workspace patched");
    }
}

/// A ConfigMap template holding the ZenML server URL.
fn server_url(name: &str, url: &str) -> Value {
    json!({"name": name, "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"team": "ml"}},
                                     "data": {"url": url}}})
}

fn label(obj: &impl kube::Resource, key: &str) -> Option<String> {
    obj.meta().labels.as_ref().and_then(|l| l.get(key)).cloned()
}

#[tokio::test]
async fn a_template_is_applied_in_every_project_namespace_repaired_after_drift_and_pruned_when_removed() {
    let mut t = Test::new().await;
    let ws = unique("e2e-tpl-ws");
    let (a, b) = (unique("e2e-tpl-a"), unique("e2e-tpl-b"));
    t.workspace(&ws, json!({"templates": [server_url("zenml-server", SERVER_URL)]}));
    t.project(&a, &ws, json!({}));
    t.project(&b, &ws, json!({}));

    for p in [&a, &b] {
        let cm = t.wait_url(p, "zenml-server", SERVER_URL, TIMEOUT).await;
        assert_eq!(label(&cm, labels::TEMPLATE).as_deref(), Some("zenml-server"));
        assert_eq!(label(&cm, labels::PROJECT).as_deref(), Some(p.as_str()));
        assert_eq!(label(&cm, "team").as_deref(), Some("ml"), "the template's own labels are kept");
        let owner = &cm.owner_references()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Project", p.as_str(), Some(true)));
        t.wait_templates(p, "True", "TemplatesApplied").await;
        t.wait_count(p, 1).await;
    }

    // Drift: edited by hand, restored; deleted by hand, made again.
    let edit = json!({"data": {"url": "https://elsewhere.example.com", "extra": "x"}});
    t.config_maps(&a).patch("zenml-server", &PatchParams::default(), &Patch::Merge(&edit)).await.expect("edited");
    t.wait_url(&a, "zenml-server", SERVER_URL, DRIFT_TIMEOUT).await;
    t.config_maps(&a).delete("zenml-server", &DeleteParams::default()).await.expect("deleted");
    t.wait_url(&a, "zenml-server", SERVER_URL, DRIFT_TIMEOUT).await;

    // A changed template reaches every namespace.
    t.set_templates(&ws, json!([server_url("zenml-server", "https://new.example.com")])).await;
    for p in [&a, &b] {
        t.wait_url(p, "zenml-server", "https://new.example.com", TIMEOUT).await;
    }

    // Removed from the list: deleted from every namespace, and no longer counted.
    t.set_templates(&ws, json!(null)).await;
    for p in [&a, &b] {
        t.wait_gone(p, "zenml-server").await;
        t.wait_templates(p, "True", "NoTemplates").await;
        t.wait_count(p, 0).await;
    }
}

#[tokio::test]
async fn a_project_opts_out_of_a_template_by_name_unless_the_workspace_requires_it() {
    let mut t = Test::new().await;
    let ws = unique("e2e-tpl-ws");
    let p = unique("e2e-tpl-opt");
    let mut required = server_url("zenml-required", SERVER_URL);
    required["required"] = json!(true);
    t.workspace(&ws, json!({"templates": [server_url("zenml-server", SERVER_URL), required]}));
    t.project(&p, &ws, json!({}));
    t.wait_url(&p, "zenml-server", SERVER_URL, TIMEOUT).await;
    t.wait_url(&p, "zenml-required", SERVER_URL, TIMEOUT).await;

    t.project(&p, &ws, json!({"excludedTemplates": ["zenml-server", "zenml-required"]}));

    t.wait_gone(&p, "zenml-server").await;
    let project = t.wait_templates(&p, "True", "TemplatesApplied").await;
    let message = project.status.unwrap().conditions.into_iter().find(|c| c.type_ == "TemplatesReady").unwrap().message;
    assert!(message.contains("excluded by spec.excludedTemplates: zenml-server"), "{message}");
    assert!(message.contains("required by the workspace") && message.contains("zenml-required"), "{message}");
    t.wait_count(&p, 1).await;
    assert!(t.config_maps(&p).get_opt("zenml-required").await.unwrap().is_some(), "a required template stays");
}

#[tokio::test]
async fn templates_that_could_grant_mint_a_token_pose_as_ours_or_leave_the_namespace_are_refused_at_admission() {
    let mut t = Test::new().await;
    let ws = unique("e2e-tpl-ws");
    t.made.track("Workspace", &ws);
    let refused = [
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"}}),
            "templates cannot grant access",
        ),
        (json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}), "templates cannot grant access"),
        (json!({"apiVersion": "v1", "kind": "ServiceAccount"}), "grant no identity"),
        (json!({"apiVersion": "v1", "kind": "Namespace"}), "grant no identity"),
        (
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token"}),
            "would mint a token",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "kube-system"}}),
            "metadata.namespace must not be set",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"zenml.io/project": "x"}}}),
            "may not set zenml.io/ labels",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}),
            "must equal templates[].name",
        ),
    ];
    for (object, rule) in refused {
        let ws_obj = zenml_object("Workspace", &ws, json!({"templates": [{"name": "t", "object": object}]}));
        let out = run_stdin(kubectl().args(["create", "-f", "-"]), &ws_obj.to_string());
        assert!(!out.success(), "created a workspace with template {object}");
        assert!(out.stderr.contains(rule) && out.stderr.contains("spec.templates[0]"), "{object}: {}", out.stderr);
    }
    let ours = zenml_object(
        "Workspace",
        &ws,
        json!({"templates": [{"name": "zenml-project", "object":
        {"apiVersion": "v1", "kind": "LimitRange", "spec": {"limits": []}}}]}),
    );
    let out = run_stdin(kubectl().args(["create", "-f", "-"]), &ours.to_string());
    assert!(!out.success() && out.stderr.contains("the operator's own object names"), "{}", out.stderr);
}

#[tokio::test]
async fn someone_elses_object_of_a_templates_name_is_left_untouched_and_reported() {
    let mut t = Test::new().await;
    let ws = unique("e2e-tpl-ws");
    let p = unique("e2e-tpl-cf");
    t.workspace(&ws, json!({}));
    t.project(&p, &ws, json!({}));
    t.wait_templates(&p, "True", "NoTemplates").await;
    let theirs = ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some("zenml-server".into()), ..Default::default() },
        data: Some(BTreeMap::from([("url".to_owned(), "https://theirs.example.com".to_owned())])),
        ..Default::default()
    };
    t.config_maps(&p).create(&PostParams::default(), &theirs).await.expect("their ConfigMap");

    t.set_templates(&ws, json!([server_url("zenml-server", SERVER_URL), server_url("zenml-other", SERVER_URL)])).await;

    let project = t.wait_templates(&p, "False", "TemplateConflict").await;
    let status = project.status.unwrap();
    let message = &status.conditions.iter().find(|c| c.type_ == "TemplatesReady").unwrap().message;
    assert!(message.contains("zenml-server") && message.contains("left untouched"), "{message}");
    t.wait_url(&p, "zenml-other", SERVER_URL, TIMEOUT).await;
    t.wait_count(&p, 1).await;
    let events: Api<Event> = Api::namespaced(t.client.clone(), "default");
    eventually(TIMEOUT, "an Event TemplateConflict regarding the project", || async {
        let lp = ListParams::default().fields(&format!("regarding.name={p}"));
        let list = events.list(&lp).await.map_err(|e| e.to_string())?;
        let reasons: Vec<String> = list.items.iter().filter_map(|e| e.reason.clone()).collect();
        if reasons.iter().any(|r| r == "TemplateConflict") { Ok(()) } else { Err(format!("{reasons:?}")) }
    })
    .await;
    let cm = t.config_maps(&p).get("zenml-server").await.expect("theirs still there");
    assert_eq!(cm.data.as_ref().unwrap()["url"], "https://theirs.example.com", "never edited");
    assert!(cm.labels().is_empty() && cm.owner_references().is_empty(), "never labelled or owned: {:?}", cm.metadata);
    let managers: Vec<String> = cm.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
    assert!(!managers.iter().any(|m| m == labels::FIELD_MANAGER), "the operator never wrote it: {managers:?}");

    // Their object gone, the template takes its place.
    t.config_maps(&p).delete("zenml-server", &DeleteParams::default()).await.expect("deleted");
    t.wait_url(&p, "zenml-server", SERVER_URL, TIMEOUT).await;
    t.wait_templates(&p, "True", "TemplatesApplied").await;
}

#[tokio::test]
async fn retain_releases_template_objects_like_the_limits_and_delete_takes_them_with_the_namespace() {
    let mut t = Test::new().await;
    let ws = unique("e2e-tpl-ws");
    let kept = unique("e2e-tpl-keep");
    t.workspace(&ws, json!({"templates": [server_url("zenml-server", SERVER_URL)]}));
    t.project(&kept, &ws, json!({"deletionPolicy": "Retain"}));
    t.made.track("Namespace", &kept);
    t.wait_url(&kept, "zenml-server", SERVER_URL, TIMEOUT).await;

    let projects: Api<Project> = Api::all(t.client.clone());
    projects.delete(&kept, &DeleteParams::default()).await.expect("project deleted");
    eventually(DELETE_TIMEOUT, "the Retain project to be gone", || async {
        projects.get_opt(&kept).await.map_err(|e| e.to_string())?.map_or(Ok(()), |_| Err("still there".to_owned()))
    })
    .await;

    let ns: Api<Namespace> = Api::all(t.client.clone());
    assert!(ns.get_opt(&kept).await.unwrap().is_some(), "the namespace is retained");
    let cm = t.config_maps(&kept).get("zenml-server").await.expect("the template object is kept");
    assert_eq!(cm.data.as_ref().unwrap()["url"], SERVER_URL);
    for key in [labels::MANAGED_BY, labels::TEMPLATE, labels::PROJECT, labels::WORKSPACE] {
        assert!(label(&cm, key).is_none(), "{key} removed on release: {:?}", cm.labels());
    }
    assert_eq!(label(&cm, "team").as_deref(), Some("ml"), "the template's own labels stay");
    assert!(cm.owner_references().is_empty(), "no longer owned: {:?}", cm.owner_references());
    assert_eq!(cm.annotations().get(labels::FORMER_PROJECT), Some(&kept));
    // The operator no longer manages it: a change by hand stays.
    let edit = json!({"data": {"url": "https://mine-now.example.com"}});
    t.config_maps(&kept).patch("zenml-server", &PatchParams::default(), &Patch::Merge(&edit)).await.expect("edited");
    tokio::time::sleep(DRIFT_TIMEOUT).await;
    let cm = t.config_maps(&kept).get("zenml-server").await.unwrap();
    assert_eq!(cm.data.unwrap()["url"], "https://mine-now.example.com");
    let _ = run(kubectl().args(["get", "ns", &kept]));
}
