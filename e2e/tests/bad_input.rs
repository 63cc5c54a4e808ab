//! Bad input beyond the schema: an object stored before the schema tightened (or written with validation off) that
//! the operator cannot decode gets a clear condition, and does not stop the operator from serving the others.
//!
//! Its own test binary, with one test: it swaps the Project CRD's schema for a moment, which tests running beside it
//! would notice.

use std::path::Path;
use std::time::Duration;

use e2e::{
    apply_manifests, install_crds, kubectl, kubectl_json, operator, read_condition, run, run_ok, run_stdin, unique,
    wait_condition,
};

#[tokio::test]
async fn an_undecodable_project_is_reported_and_the_others_are_served() {
    install_crds();
    let crd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/project.yaml");
    let ws = unique("e2e-bad-ws");
    let (bad, good) = (unique("e2e-bad-p"), unique("e2e-good-p"));

    // A schema that admits anything, as an older or unvalidated CRD would have.
    let mut loose = kubectl_json(&["get", "crd", "projects.zenml.io"]);
    loose["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
        // The selectable field must exist; everything else goes.
        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"workspace": {"type": "string"}}},
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }});
    for key in ["resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"] {
        loose["metadata"].as_object_mut().unwrap().remove(key);
    }
    loose.as_object_mut().unwrap().remove("status");
    let restore = || run_ok(kubectl().args(["apply", "--server-side", "--force-conflicts", "-f"]).arg(&crd));
    let swapped = run_stdin(kubectl().args(["replace", "-f", "-"]), &loose.to_string());
    assert!(swapped.success(), "{}", swapped.stderr);
    let stored = run_stdin(
        kubectl().args(["create", "-f", "-"]),
        &format!(
            "apiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {bad}}}\nspec: {{workspace: {ws}, networkIsolation: Everything}}\n"
        ),
    );
    restore();
    assert!(stored.success(), "{}", stored.stderr);
    run_ok(kubectl().args(["wait", "--for=condition=established", "--timeout=60s", "crd/projects.zenml.io"]));

    let _op = operator::shared();
    apply_manifests(&format!(
        "apiVersion: zenml.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\nspec: {{}}\n---\napiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {good}}}\nspec: {{workspace: {ws}}}\n"
    ));
    wait_condition("project", &good, "Ready", Duration::from_secs(30), "the valid project is served", |c| {
        c.status == "True"
    })
    .await;
    wait_condition("project", &bad, "Ready", Duration::from_secs(30), "the invalid project is reported", |c| {
        c.reason == "InvalidSpec"
    })
    .await;
    let message = read_condition("project", &bad, "Ready").map(|c| c.message).unwrap_or_default();
    assert!(message.contains("Everything"), "the message names the bad value: {message}");
    let events = run_ok(kubectl().args([
        "get",
        "events",
        "-n",
        "default",
        "--field-selector",
        &format!("involvedObject.name={bad}"),
    ]));
    assert!(events.contains("InvalidSpec"), "a Warning Event says why: {events}");
    assert!(
        run(kubectl().args(["get", "namespace", &bad])).stderr.contains("NotFound"),
        "nothing is provisioned for it"
    );

    // Fixing the object makes it an ordinary project.
    run_ok(kubectl().args([
        "patch",
        "project",
        &bad,
        "--type=merge",
        "-p",
        r#"{"spec":{"networkIsolation":"Project"}}"#,
    ]));
    wait_condition("project", &bad, "Ready", Duration::from_secs(30), "the fixed project is served", |c| {
        c.status == "True"
    })
    .await;

    run_ok(kubectl().args(["delete", "project", &bad, &good, "--timeout=60s"]));
    run_ok(kubectl().args(["delete", "workspace", &ws, "--timeout=60s"]));
}
