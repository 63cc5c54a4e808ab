//! Project and Workspace reconciliation against a real API server, with the operator running as users run it.

use std::time::Duration;

use e2e::{eventually, kubectl, operator, run, run_ok, unique};

fn apply(yaml: &str) {
    let mut cmd = kubectl();
    cmd.args(["apply", "-f", "-"]);
    let out = e2e::run_stdin(&mut cmd, yaml);
    assert!(out.success(), "kubectl apply failed: {}\n{yaml}", out.stderr);
}

fn jsonpath(kind: &str, name: &str, ns: Option<&str>, path: &str) -> String {
    let mut cmd = kubectl();
    cmd.args(["get", kind, name, "-o", &format!("jsonpath={path}")]);
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let out = run(&mut cmd);
    if out.success() { out.stdout } else { String::new() }
}

#[tokio::test]
async fn a_project_becomes_a_ready_namespace_with_every_child() {
    let op = operator::shared();
    let ws = unique("e2e-rec-ws");
    let p = unique("e2e-rec-p");
    apply(&format!(
        "apiVersion: zenml.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\nspec:\n  projectDefaults:\n    quota: {{hard: {{pods: '5', requests.cpu: '2'}}}}\n    limitRange: {{defaultRequest: {{cpu: 100m}}}}\n---\napiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {p}}}\nspec: {{workspace: {ws}}}\n"
    ));
    eventually(Duration::from_secs(20), "project Ready", || async {
        (jsonpath("project", &p, None, "{.status.conditions[?(@.type==\"Ready\")].status}") == "True").then_some(())
    })
    .await;
    for (kind, name) in [
        ("resourcequota", "zenml-project"),
        ("limitrange", "zenml-project"),
        ("networkpolicy", "zenml-project-isolation"),
        ("serviceaccount", "zenml-runner"),
        ("rolebinding", "zenml-runner"),
    ] {
        assert!(!jsonpath(kind, name, Some(&p), "{.metadata.name}").is_empty(), "{kind}/{name} missing in {p}");
    }
    run_ok(kubectl().args(["delete", "project", &p, "--wait=true", "--timeout=60s"]));
    run_ok(kubectl().args(["delete", "workspace", &ws, "--wait=true", "--timeout=60s"]));
    assert!(op.writes() > 0);
}
