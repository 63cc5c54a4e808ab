//! The Project reconciler's handling of workspace templates: created only where the name is free, someone else's
//! object left untouched and reported, kinds the operator may not manage reported and never written, and what the
//! project applied from a template it no longer has deleted.

use std::sync::Arc;

use kube::core::DynamicObject;
use kube::runtime::watcher;
use serde_json::{Value, json};
use zenml_api::labels;
use zenml_api::{Project, Template, Workspace};

use super::{Harness, condition, fails, holds, path_of, project, workspace};
use crate::controllers::project::reconcile;

const SERVER: &str = "/api/v1/namespaces/p/configmaps/zenml-server";
const OTHER: &str = "/api/v1/namespaces/p/configmaps/taken";
const STATUS: &str = "PATCH /apis/zenml.io/v1alpha1/projects/p/status";

fn config_map(name: &str) -> Template {
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"url": "https://zenml.example.com"}});
    Template { name: name.into(), required: false, object }
}

fn with_templates(templates: Vec<Template>) -> (Harness, Project) {
    let mut ws: Workspace = workspace();
    ws.spec.templates = templates;
    let p = project();
    let mut h = Harness::new();
    h.caches.workspace(&ws).project(&p);
    h.server.holds(&path_of::<Project>("p"), &p);
    (h, p)
}

fn last_status(h: &Harness) -> Value {
    h.server.status_writes().last().expect("a status write").body.clone()
}

#[tokio::test]
async fn a_template_is_created_after_asking_whose_its_name_is_and_someone_elses_object_is_left_untouched() {
    let (h, p) = with_templates(vec![config_map("zenml-server"), config_map("taken")]);
    h.server.holds(OTHER, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken"}}));

    reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");

    let lines = h.server.lines();
    let create = h.server.writes().into_iter().find(|c| c.line() == format!("PATCH {SERVER}")).expect("applied");
    let get = lines.iter().position(|l| *l == format!("GET {SERVER}")).expect("asked first");
    assert!(get < lines.iter().position(|l| *l == format!("PATCH {SERVER}")).unwrap(), "{lines:?}");
    assert!(create.query.contains("fieldManager=zenml-operator") && !create.query.contains("force=true"), "{create:?}");
    assert_eq!(create.body["metadata"]["labels"][labels::TEMPLATE], "zenml-server");
    assert_eq!(create.body["data"]["url"], "https://zenml.example.com");
    assert!(lines.contains(&format!("GET {OTHER}")), "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.ends_with(OTHER) && !l.starts_with("GET")),
        "someone else's is untouched: {lines:?}"
    );

    let status = last_status(&h);
    assert_eq!(condition(&status, "TemplatesReady"), fails("TemplateConflict"));
    assert_eq!(condition(&status, "Ready"), fails("TemplateConflict"));
    assert_eq!(status["status"]["templates"], 1, "only the one applied is counted");
    let message = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "TemplatesReady");
    assert!(message.unwrap()["message"].as_str().unwrap().contains("left untouched"), "{message:?}");
    let mut event = None;
    for _ in 0..100 {
        event = h.server.events().into_iter().find(|e| e.body["reason"] == "TemplateConflict");
        if event.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(event.expect("a TemplateConflict Event").body["type"], "Warning");
}

#[tokio::test]
async fn a_template_of_a_kind_the_operator_may_not_manage_is_reported_and_never_written() {
    let deployment = Template {
        name: "web".into(),
        required: false,
        object: json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}}),
    };
    let (h, p) = with_templates(vec![deployment]);

    reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");

    assert!(!h.server.lines().iter().any(|l| l.contains("deployments")), "{:?}", h.server.lines());
    let status = last_status(&h);
    assert_eq!(condition(&status, "TemplatesReady"), fails("TemplateKindNotAllowed"));
    let c = status["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "TemplatesReady").cloned();
    let message = c.unwrap()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("apps/v1/Deployment") && message.contains("templates.kinds"), "{message}");
}

#[tokio::test]
async fn what_the_project_applied_from_a_template_it_no_longer_has_is_deleted_and_nothing_else() {
    let (mut h, p) = with_templates(vec![]);
    let owned = |name: &str, uid: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "p", "uid": format!("uid-{name}"),
                "labels": {labels::MANAGED_BY: labels::MANAGED_BY_VALUE, labels::PROJECT: "p", labels::TEMPLATE: name},
                "ownerReferences": [{"apiVersion": "zenml.io/v1alpha1", "kind": "Project", "name": "p", "uid": uid,
                                     "controller": true}]},
        }))
        .unwrap()
    };
    h.caches.children.apply_template(watcher::Event::Apply(owned("gone", "uid-p")));
    h.caches.children.apply_template(watcher::Event::Apply(owned("earlier-instance", "uid-old")));

    reconcile(Arc::new(p), h.ctx.clone()).await.expect("reconciled");

    let deletes: Vec<String> = h.server.lines().into_iter().filter(|l| l.starts_with("DELETE")).collect();
    assert_eq!(deletes, ["DELETE /api/v1/namespaces/p/configmaps/gone"]);
    assert_eq!(condition(&last_status(&h), "TemplatesReady"), holds("NoTemplates"));
    assert!(h.server.lines().contains(&STATUS.to_owned()));
}
