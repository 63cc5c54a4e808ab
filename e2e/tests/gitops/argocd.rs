//! The chart's Argo CD health check (`files/argocd/health.lua`), as `examples/gitops/argocd/argocd-cm.yaml` sets it,
//! evaluated by Argo CD's own code (`e2e/argocd`: its settings manager reads the ConfigMap from the cluster, its Lua
//! VM runs the script) against live objects in every state the operator reports; and the example Application
//! (`examples/gitops/argocd/application.yaml`) against Argo CD's own Application CRD.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use e2e::{eventually, kubectl, operator, read_condition, run_ok, run_stdin, unique};
use serde_json::{Value, json};

use super::{apply, argocd_health, delete_nowait, documents, live, read, repo_root};

const TIMEOUT: Duration = Duration::from_secs(60);
/// The three kinds and their argocd-cm keys.
const KINDS: [&str; 3] = ["Workspace", "Project", "ProjectRoleBinding"];

/// What Argo CD says of one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Health {
    status: String,
    message: String,
}

/// Argo CD's verdict on each of `objects`, with the argocd-cm in `namespace`.
fn judge(namespace: &str, objects: &[Value]) -> Vec<Health> {
    let input = serde_json::to_string(objects).expect("json");
    let out = run_stdin(
        Command::new(argocd_health())
            .args(["-namespace", namespace])
            .env("KUBECONFIG", e2e::kubeconfig().expect("a kubeconfig")),
        &input,
    );
    assert!(out.success(), "argocd-health failed: {}", out.stderr);
    let verdicts: Vec<Health> =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("argocd-health printed {:?}: {e}", out.stdout));
    assert_eq!(verdicts.len(), objects.len());
    verdicts
}

fn judge_one(namespace: &str, object: &Value) -> Health {
    judge(namespace, std::slice::from_ref(object)).remove(0)
}

/// The Ready condition of a live object: (status, reason, message).
fn ready(object: &Value) -> (String, String, String) {
    let c = e2e::condition(object, "Ready").unwrap_or_else(|| panic!("no Ready condition: {object}"));
    (c.status, c.reason, c.message)
}

/// The ConfigMap example holds the chart's script, byte for byte, under each kind's key: what the README tells users
/// to merge into argocd-cm is what is tested here.
#[test]
fn the_argocd_cm_example_carries_the_charts_health_check() {
    let script = read("charts/zenml-operator/files/argocd/health.lua");
    let docs = documents(&read("examples/gitops/argocd/argocd-cm.yaml"));
    assert_eq!(docs.len(), 1);
    let cm = &docs[0];
    assert_eq!((cm["kind"].as_str(), cm["metadata"]["name"].as_str()), (Some("ConfigMap"), Some("argocd-cm")));
    let data: BTreeMap<String, String> = serde_json::from_value(cm["data"].clone()).expect("string data");
    let expected: BTreeMap<String, String> =
        KINDS.iter().map(|k| (format!("resource.customizations.health.zenml.io_{k}"), script.clone())).collect();
    assert_eq!(data, expected);
}

/// Cluster-scoped objects and namespaces deleted when the test ends, also when it fails.
#[derive(Default)]
struct Cleanup {
    objects: Vec<(&'static str, String)>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (kind, name) in self.objects.iter().rev() {
            // A finalizer this test holds would keep it forever (a no-op on every other object).
            let _ = e2e::run(kubectl().args(["patch", kind, name, "--type=json", "-p", HOLD_REMOVE]));
            delete_nowait(&[kind, name]);
        }
        for (kind, name) in self.objects.iter() {
            let _ = e2e::wait_gone(kind, std::slice::from_ref(name), TIMEOUT);
        }
        for ns in &self.namespaces {
            delete_nowait(&["namespace", ns]);
        }
    }
}

/// A finalizer of this test's, holding a Project in its deleting state while Argo CD judges it.
const HOLD: &str = "e2e.zenml.io/hold";
/// Removes [`HOLD`], and only it: the operator's own finalizer must stay, or its cleanup (the namespace) is skipped.
const HOLD_REMOVE: &str = r#"[{"op": "test", "path": "/metadata/finalizers/0", "value": "e2e.zenml.io/hold"},
    {"op": "remove", "path": "/metadata/finalizers/0"}]"#;

fn object(kind: &str, name: &str, spec: Value) -> String {
    serde_json::to_string(&e2e::zenml_object(kind, name, spec)).expect("json")
}

/// Every state the operator reports, judged by Argo CD: no status yet and a status of an older generation are
/// Progressing, Ready is Healthy with the operator's message, each refusal is Degraded with its reason and message,
/// a deletion is Progressing. The objects are live: read from the API server in that state.
#[tokio::test]
async fn argo_cd_judges_every_state_with_its_own_code() {
    let _op = operator::shared();
    let mut cleanup = Cleanup::default();
    let cm_ns = e2e::namespace(&e2e::client().await, "e2e-argocd").await;
    cleanup.namespaces.push(cm_ns.clone());
    // Argo CD's settings manager reads argocd-cm from its namespace; the example, unchanged, goes into this one.
    run_ok(
        kubectl().args(["apply", "-n", &cm_ns, "-f"]).arg(repo_root().join("examples/gitops/argocd/argocd-cm.yaml")),
    );

    let ws = unique("e2e-argo-ws");
    let small = unique("e2e-argo-small"); // maxProjects 1
    let missing_ws = unique("e2e-argo-nows");
    let [ok, over, dup, extra, first, conflict, orphan] =
        ["ok", "over", "dup", "extra", "first", "conflict", "orphan"].map(|p| unique(&format!("e2e-argo-{p}")));
    let [bound, not_allowed, no_project] =
        ["bound", "notallowed", "noproject"].map(|b| unique(&format!("e2e-argo-{b}")));
    for w in [&ws, &small] {
        cleanup.objects.push(("workspace", w.clone()));
    }
    for p in [&ok, &over, &dup, &extra, &first, &conflict, &orphan] {
        cleanup.objects.push(("project", p.clone()));
    }
    for b in [&bound, &not_allowed, &no_project] {
        cleanup.objects.push(("projectrolebinding", b.clone()));
    }
    // A namespace that is not a project's: the project of that name is refused.
    run_ok(kubectl().args(["create", "namespace", &conflict]));
    cleanup.namespaces.push(conflict.clone());

    // Provisioning: a project whose workspace does not exist yet has no status for 10 s (the operator waits quietly
    // for a workspace applied in the same sync).
    apply(&object("Project", &orphan, json!({"workspace": missing_ws})));
    let h = judge_one(&cm_ns, &live("project", &orphan));
    assert_eq!(h.status, "Progressing", "{h:?}");

    apply(&object("Workspace", &ws, json!({"budget": {"hard": {"requests.cpu": "2"}}, "roles": [], "members": []})));
    apply(&object("Workspace", &small, json!({"maxProjects": 1})));
    apply(&object(
        "Project",
        &ok,
        json!({"workspace": ws, "projectId": "same", "quota": {"hard": {"requests.cpu": "1"}}}),
    ));
    wait_reason("project", &ok, "Ready").await;
    apply(&object("Project", &first, json!({"workspace": small})));
    wait_reason("project", &first, "Ready").await;
    apply(&object("Project", &over, json!({"workspace": ws, "quota": {"hard": {"requests.cpu": "5"}}})));
    apply(&object(
        "Project",
        &dup,
        json!({"workspace": ws, "projectId": "same", "quota": {"hard": {"requests.cpu": "0"}}}),
    ));
    apply(&object("Project", &extra, json!({"workspace": small})));
    apply(&object("Project", &conflict, json!({"workspace": ws})));
    apply(&object(
        "ProjectRoleBinding",
        &bound,
        json!({"project": ok, "role": "viewer", "subjects": [{"kind": "Group", "name": "g"}]}),
    ));
    apply(&object(
        "ProjectRoleBinding",
        &not_allowed,
        json!({"project": ok, "role": "not-a-role-of-this-workspace", "subjects": [{"kind": "Group", "name": "g"}]}),
    ));
    apply(&object(
        "ProjectRoleBinding",
        &no_project,
        json!({"project": unique("e2e-argo-none"), "role": "viewer", "subjects": [{"kind": "Group", "name": "g"}]}),
    ));

    // Healthy, with the operator's message.
    wait_reason("projectrolebinding", &bound, "Bound").await;
    for (kind, name) in [("workspace", &ws), ("project", &ok), ("projectrolebinding", &bound)] {
        let obj = live(kind, name);
        let (status, _, message) = ready(&obj);
        assert_eq!(status, "True");
        assert_eq!(judge_one(&cm_ns, &obj), Health { status: "Healthy".into(), message }, "{kind} {name}");
    }

    // Every refusal: Degraded, with the operator's reason and message.
    let refusals = [
        ("project", &over, "BudgetExceeded"),
        ("project", &dup, "DuplicateProjectId"),
        ("project", &extra, "MaxProjectsExceeded"),
        ("project", &conflict, "NamespaceConflict"),
        ("project", &orphan, "WorkspaceNotFound"),
        ("projectrolebinding", &not_allowed, "RoleNotAllowed"),
        ("projectrolebinding", &no_project, "ProjectNotFound"),
    ];
    for (kind, name, reason) in refusals {
        wait_reason(kind, name, reason).await;
        let obj = live(kind, name);
        let (status, _, message) = ready(&obj);
        assert_eq!(status, "False");
        let h = judge_one(&cm_ns, &obj);
        assert_eq!(h, Health { status: "Degraded".into(), message: format!("{reason}: {message}") }, "{kind} {name}");
    }

    // Stale: the object as the API server returns it from a spec change, before the operator can have seen it.
    let patched = e2e::run_ok(kubectl().args([
        "patch",
        "project",
        &ok,
        "--type=merge",
        "-p",
        r#"{"spec": {"displayName": "changed"}}"#,
        "-o",
        "json",
    ]));
    let patched: Value = serde_json::from_str(&patched).expect("json");
    let generation = patched["metadata"]["generation"].as_i64().expect("a generation");
    assert!(patched["status"]["observedGeneration"].as_i64() < Some(generation), "{patched}");
    assert_eq!(ready(&patched).0, "True", "the old status still says Ready");
    let h = judge_one(&cm_ns, &patched);
    assert_eq!(h.status, "Progressing", "{h:?}");
    assert!(h.message.contains(&format!("generation {generation}")), "{h:?}");
    // ...and Healthy again once the operator has observed it.
    let h = eventually(TIMEOUT, "Argo CD to call the changed project Healthy", || async {
        let h = judge_one(&cm_ns, &live("project", &ok));
        (h.status == "Healthy").then_some(h)
    })
    .await;
    assert!(!h.message.is_empty());

    // Deleting: a project held by a finalizer of this test's (so the state lasts), and a workspace that still has
    // projects (the operator keeps it until they are gone).
    run_ok(
        kubectl()
            .args(["patch", "project", &first, "--type=json", "-p"])
            .arg(format!(r#"[{{"op": "add", "path": "/metadata/finalizers/0", "value": "{HOLD}"}}]"#)),
    );
    run_ok(kubectl().args(["delete", "project", &first, "--wait=false"]));
    run_ok(kubectl().args(["delete", "workspace", &small, "--wait=false"]));
    for (kind, name) in [("project", &first), ("workspace", &small)] {
        let obj = live(kind, name);
        assert!(obj["metadata"]["deletionTimestamp"].is_string(), "{obj}");
        let h = judge_one(&cm_ns, &obj);
        assert_eq!(h.status, "Progressing", "{kind} {name}: {h:?}");
        assert!(h.message.starts_with("being deleted"), "{h:?}");
    }
    let obj = eventually(TIMEOUT, "the workspace to say its projects remain", || async {
        let obj = live("workspace", &small);
        (ready(&obj).1 == "ProjectsRemain").then_some(obj)
    })
    .await;
    let h = judge_one(&cm_ns, &obj);
    assert_eq!(h.status, "Progressing");
    assert_eq!(h.message, format!("being deleted: {}", ready(&obj).2));
    run_ok(kubectl().args(["patch", "project", &first, "--type=json", "-p", HOLD_REMOVE]));
    drop(cleanup);
}

/// Waits until `kind/name`'s Ready condition has `reason`.
async fn wait_reason(kind: &str, name: &str, reason: &str) {
    eventually(TIMEOUT, &format!("{kind} {name} to report Ready reason {reason}"), || async {
        let c = read_condition(kind, name, "Ready");
        match c {
            Some(c) if c.reason == reason => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// The Application example, as a user applies it, passes Argo CD's own schema: the Application CRD of the argo-cd
/// module `e2e/argocd` pins (`e2e/gitops-tools argocd-crd`), served under a group of this test's (so an Argo CD on the
/// cluster is never touched) and removed after, takes it in a server-side dry-run with strict field validation, in a
/// namespace of this test's; a misspelt field is refused, so the check bites. It syncs what the Flux example does:
/// the same repository, branch and directory.
#[tokio::test]
async fn the_application_example_passes_argo_cds_own_schema() {
    let example = read("examples/gitops/argocd/application.yaml");
    let app = documents(&example).remove(0);
    let sync = documents(&read("examples/gitops/flux/sync.yaml"));
    let of = |kind: &str| sync.iter().find(|d| d["kind"] == kind).cloned().expect("sync.yaml");
    let (git, kustomization) = (of("GitRepository"), of("Kustomization"));
    assert_eq!(app["spec"]["source"]["repoURL"], git["spec"]["url"]);
    assert_eq!(app["spec"]["source"]["targetRevision"], git["spec"]["ref"]["branch"]);
    assert_eq!(
        app["spec"]["source"]["path"].as_str(),
        kustomization["spec"]["path"].as_str().and_then(|p| p.strip_prefix("./"))
    );

    let mut cleanup = Cleanup::default();
    let group = format!("{}.e2e.zenml.io", unique("argocd"));
    let mut crd = documents(&run_ok(Command::new(repo_root().join("e2e/gitops-tools")).arg("argocd-crd"))).remove(0);
    assert_eq!(crd["spec"]["group"], "argoproj.io");
    assert_eq!(crd["spec"]["names"]["kind"], "Application");
    let name = format!("applications.{group}");
    crd["metadata"] = json!({"name": name});
    crd["spec"]["group"] = json!(group);
    // kubectl's short names and categories are the real CRD's (`kubectl get apps` would find two).
    let names = crd["spec"]["names"].as_object_mut().expect("names");
    names.remove("shortNames");
    names.remove("categories");
    cleanup.objects.push(("crd", name.clone()));
    let out = run_stdin(kubectl().args(["create", "-f", "-"]), &serde_json::to_string(&crd).expect("json"));
    assert!(out.success(), "cannot create {name}: {}", out.stderr);
    e2e::wait_condition("crd", &name, "Established", TIMEOUT, &format!("{name} to be established"), |c| {
        c.status == "True"
    })
    .await;
    let ns = e2e::namespace(&e2e::client().await, "e2e-argocd-app").await;
    cleanup.namespaces.push(ns.clone());

    // As users apply it, in this test's namespace and group.
    let ours = |text: &str| {
        text.replace("apiVersion: argoproj.io/", &format!("apiVersion: {group}/"))
            .replace("namespace: argocd\n", &format!("namespace: {ns}\n"))
    };
    let dry_run = |text: &str| {
        run_stdin(kubectl().args(["create", "--dry-run=server", "--validate=strict", "-o", "json", "-f", "-"]), text)
    };
    let out = dry_run(&ours(&example));
    assert!(out.success(), "Argo CD's schema refuses the example: {}", out.stderr);
    let created: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(created["metadata"]["namespace"], json!(ns));
    assert_eq!(created["spec"], app["spec"], "the schema dropped or changed a field");

    let misspelt = ours(&example).replace("    path: examples", "    paht: examples");
    let out = dry_run(&misspelt);
    assert!(!out.success(), "a misspelt field passed: {}", out.stdout);
    assert!(out.stderr.contains("unknown field \"spec.source.paht\""), "{}", out.stderr);
    drop(cleanup);
}
