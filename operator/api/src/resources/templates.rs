//! A project's copies of its workspace's templates, as a pure function of the Project and its Workspace.
//!
//! Each template becomes one object in the project namespace, named after the template, labelled like every child
//! (managed-by, workspace, project) plus [`labels::TEMPLATE`] with the template's name, and controlled by the Project.
//! What the schema refuses (RBAC objects, identities, a namespace, our labels, our children's names) is checked again
//! here, so an object stored before a rule existed is never applied.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::ResourceExt;
use kube::core::{DynamicObject, TypeMeta};
use serde_json::Value;

use super::project::stamp;
use crate::labels;
use crate::types::templates::RESERVED_TEMPLATE_NAMES;
use crate::{Project, Template, Workspace};

/// What a project gets of its workspace's templates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Templates {
    /// The objects to apply in the project namespace, in the workspace's order.
    pub objects: Vec<DynamicObject>,
    /// Templates the project excludes (`spec.excludedTemplates`).
    pub excluded: Vec<String>,
    /// Required templates the project excludes: applied anyway.
    pub exclusion_ignored: Vec<String>,
    /// Templates never applied, each as `name: why`.
    pub refused: Vec<String>,
}

/// Why an object of `api_version`/`kind` may never be a template (the schema's rules, again); `None` if it may.
pub fn kind_problem(api_version: &str, kind: &str) -> Option<String> {
    if api_version.starts_with("rbac.authorization.k8s.io/") {
        return Some(format!("{kind} is an RBAC object: templates cannot grant access"));
    }
    if api_version == "v1" && ["Namespace", "ServiceAccount", "Node", "PersistentVolume"].contains(&kind) {
        return Some(format!("{kind} is never a template: templates are namespaced objects that grant no identity"));
    }
    None
}

/// The project's templates: every template of the workspace that the project does not exclude (a required one
/// always), built for the project namespace.
pub fn desired(project: &Project, workspace: &Workspace, owner: &OwnerReference) -> Templates {
    let mut out = Templates::default();
    for template in &workspace.spec.templates {
        if project.spec.excluded_templates.contains(&template.name) {
            if !template.required {
                out.excluded.push(template.name.clone());
                continue;
            }
            out.exclusion_ignored.push(template.name.clone());
        }
        match object(project, template, owner) {
            Ok(mut obj) => {
                stamp(&mut obj);
                out.objects.push(obj);
            }
            Err(why) => out.refused.push(format!("{}: {why}", template.name)),
        }
    }
    out
}

/// One template as an object in the project namespace, or why it cannot be one.
fn object(project: &Project, template: &Template, owner: &OwnerReference) -> Result<DynamicObject, String> {
    let name = &template.name;
    if RESERVED_TEMPLATE_NAMES.contains(&name.as_str()) {
        return Err(format!("{name} is the name of one of the operator's own objects"));
    }
    let Some(mut content) = template.object.as_object().cloned() else {
        return Err("object is not a Kubernetes object".to_owned());
    };
    let mut text = |key: &str| match content.remove(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(format!("object.{key} is missing")),
    };
    let (api_version, kind) = (text("apiVersion")?, text("kind")?);
    if let Some(why) = kind_problem(&api_version, &kind) {
        return Err(why);
    }
    if kind == "Secret" && content.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token") {
        return Err("a Secret of type kubernetes.io/service-account-token would mint a ServiceAccount token".to_owned());
    }
    let meta: ObjectMeta = match content.remove("metadata") {
        Some(m) => serde_json::from_value(m).map_err(|e| format!("object.metadata: {e}"))?,
        None => ObjectMeta::default(),
    };
    if meta.namespace.is_some() {
        return Err("object.metadata.namespace is set; templates go into every project namespace".to_owned());
    }
    if meta.name.as_ref().is_some_and(|n| n != name) {
        return Err("object.metadata.name differs from the template's name".to_owned());
    }
    let mut obj_labels = meta.labels.unwrap_or_default();
    if let Some(key) = obj_labels.keys().find(|k| k.starts_with("zenml.io/") || *k == labels::MANAGED_BY) {
        return Err(format!("object.metadata.labels sets {key}, which only the operator sets"));
    }
    obj_labels.extend([
        (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
        (labels::WORKSPACE.to_owned(), project.spec.workspace.clone()),
        (labels::PROJECT.to_owned(), project.name_any()),
        (labels::COMPONENT.to_owned(), "template".to_owned()),
        (labels::TEMPLATE.to_owned(), name.clone()),
    ]);
    Ok(DynamicObject {
        types: Some(TypeMeta { api_version, kind }),
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(project.name_any()),
            labels: Some(obj_labels),
            annotations: meta.annotations.filter(|a: &BTreeMap<String, String>| !a.is_empty()),
            owner_references: Some(vec![owner.clone()]),
            ..Default::default()
        },
        data: Value::Object(content),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{ProjectSpec, WorkspaceSpec};

    fn owner() -> OwnerReference {
        OwnerReference {
            api_version: "zenml.io/v1alpha1".into(),
            kind: "Project".into(),
            name: "fraud".into(),
            uid: "uid-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        }
    }

    fn project(excluded: &[&str]) -> Project {
        Project::new(
            "fraud",
            ProjectSpec {
                workspace: "ml".into(),
                excluded_templates: excluded.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            },
        )
    }

    fn workspace(templates: Vec<Template>) -> Workspace {
        Workspace::new("ml", WorkspaceSpec { templates, ..Default::default() })
    }

    fn template(name: &str, object: Value) -> Template {
        Template { name: name.into(), required: false, object }
    }

    fn server_url() -> Template {
        template(
            "zenml-server",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"team": "ml"}},
                   "data": {"url": "https://zenml.example.com"}}),
        )
    }

    #[test]
    fn a_template_becomes_an_object_in_the_project_namespace_labelled_and_owned_like_every_child() {
        let t = desired(&project(&[]), &workspace(vec![server_url()]), &owner());
        assert_eq!((t.excluded.len(), t.refused.len()), (0, 0), "{t:?}");
        let [obj] = &t.objects[..] else { panic!("one object: {t:?}") };
        let json = serde_json::to_value(obj).unwrap();
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "ConfigMap");
        assert_eq!(json["metadata"]["name"], "zenml-server");
        assert_eq!(json["metadata"]["namespace"], "fraud");
        assert_eq!(json["data"]["url"], "https://zenml.example.com");
        let l = &json["metadata"]["labels"];
        assert_eq!(l["team"], "ml");
        assert_eq!(l[labels::TEMPLATE], "zenml-server");
        assert_eq!(l[labels::PROJECT], "fraud");
        assert_eq!(l[labels::WORKSPACE], "ml");
        assert_eq!(l[labels::MANAGED_BY], labels::MANAGED_BY_VALUE);
        assert_eq!(json["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert!(json["metadata"]["annotations"][labels::APPLIED_HASH].is_string(), "stamped: {json}");
    }

    #[test]
    fn a_changed_template_changes_the_applied_hash_so_removed_fields_are_removed() {
        let before = desired(&project(&[]), &workspace(vec![server_url()]), &owner());
        let mut changed = server_url();
        changed.object["data"] = json!({"url": "https://other.example.com"});
        let after = desired(&project(&[]), &workspace(vec![changed]), &owner());
        let hash = |t: &Templates| t.objects[0].annotations()[labels::APPLIED_HASH].clone();
        assert_ne!(hash(&before), hash(&after));
    }

    #[test]
    fn a_project_opts_out_by_name_unless_the_template_is_required() {
        let mut required = template("limits", json!({"apiVersion": "v1", "kind": "LimitRange", "spec": {}}));
        required.required = true;
        let t = desired(&project(&["zenml-server", "limits"]), &workspace(vec![server_url(), required]), &owner());
        assert_eq!(t.excluded, ["zenml-server"]);
        assert_eq!(t.exclusion_ignored, ["limits"]);
        assert_eq!(t.objects.iter().map(|o| o.name_any()).collect::<Vec<_>>(), ["limits"]);
    }

    #[test]
    fn what_could_grant_mint_a_token_pose_as_ours_or_leave_the_namespace_is_refused() {
        let refused = [
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "roleRef": {}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}),
            json!({"apiVersion": "v1", "kind": "Namespace"}),
            json!({"apiVersion": "v1", "kind": "ServiceAccount"}),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token"}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "kube-system"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"zenml.io/project": "x"}}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"labels": {"app.kubernetes.io/managed-by": "zenml-operator"}}}),
            json!({"kind": "ConfigMap"}),
            json!("not an object"),
        ];
        for object in refused {
            let t = desired(&project(&[]), &workspace(vec![template("t", object.clone())]), &owner());
            assert!(t.objects.is_empty() && t.refused.len() == 1, "{object} was not refused: {t:?}");
        }
        let ours = template("zenml-project", json!({"apiVersion": "v1", "kind": "LimitRange"}));
        assert_eq!(desired(&project(&[]), &workspace(vec![ours]), &owner()).refused.len(), 1);
        let opaque = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "stringData": {"k": "v"}});
        assert_eq!(desired(&project(&[]), &workspace(vec![template("creds", opaque)]), &owner()).objects.len(), 1);
    }
}
