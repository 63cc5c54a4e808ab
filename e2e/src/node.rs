//! The node pods run on, and the operator's image on it.
//!
//! `e2e/cluster up` starts a node when the machine allows it, and otherwise writes one line saying why to
//! `<cluster dir>/node-unavailable`: [`require`] fails a test with that line, so a node test never passes or skips
//! without a node. On another cluster (`KUBECONFIG`), any Ready node will do, and `ZENML_E2E_IMAGE` must name an
//! operator image that cluster can pull (nothing can be imported into its nodes).

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The name of a Ready, schedulable node; panics with the reason when there is none.
pub fn require() -> String {
    if let Some(reason) = crate::local_cluster_dir()
        .and_then(|dir| std::fs::read_to_string(dir.join("node-unavailable")).ok())
        .filter(|r| !r.trim().is_empty())
    {
        panic!("this test needs the cluster's node, and e2e/cluster up started none: {}", reason.trim());
    }
    let nodes = crate::run(crate::kubectl().args(["get", "nodes", "-o", "json"]));
    assert!(nodes.success(), "cannot list nodes: {}", nodes.stderr);
    let nodes: Value = serde_json::from_str(&nodes.stdout).expect("a NodeList");
    let ready = |n: &&Value| {
        let conditions = n["status"]["conditions"].as_array().into_iter().flatten();
        let tainted = n["spec"]["taints"].as_array().is_some_and(|t| t.iter().any(|t| t["effect"] == "NoSchedule"));
        !tainted
            && n["spec"]["unschedulable"] != true
            && conditions.into_iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
    };
    match nodes["items"].as_array().into_iter().flatten().find(ready) {
        Some(node) => node["metadata"]["name"].as_str().expect("a node name").to_owned(),
        None => panic!(
            "this test needs a Ready node, and the cluster has none: e2e/cluster up starts one when the machine \
             allows it (root, cgroups, the packages .ci/run installs)"
        ),
    }
}

/// The operator's image, as the chart's pods on the node run it: `ZENML_E2E_IMAGE` if set, else built from the
/// repository's Dockerfile and imported into the local node by `e2e/image` (once per test binary).
pub fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| match std::env::var("ZENML_E2E_IMAGE") {
        Ok(image) if !image.is_empty() => image,
        _ => build_image(None),
    })
}

/// The same image under another tag (a new release, to the chart), imported like [`image`].
pub fn image_tagged(tag: &str) -> String {
    assert!(
        std::env::var("ZENML_E2E_IMAGE").is_err(),
        "a second tag of ZENML_E2E_IMAGE cannot be made here: unset it to build the image locally"
    );
    build_image(Some(tag))
}

/// Runs `e2e/image [TAG]` for the local cluster; returns the image reference.
fn build_image(tag: Option<&str>) -> String {
    let dir = crate::local_cluster_dir().unwrap_or_else(|| {
        panic!("no local cluster to import the operator's image into: set ZENML_E2E_IMAGE to an image this cluster can pull")
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("image");
    let mut cmd = Command::new(&script);
    cmd.args(tag).env("ZENML_CLUSTER_DIR", &dir).stderr(std::process::Stdio::inherit());
    let out = crate::run(&mut cmd);
    assert!(out.success(), "e2e/image failed ({}); its output is above", out.status);
    let image = out.stdout.trim().to_owned();
    assert!(image.contains(':'), "e2e/image printed no image reference: {:?}", out.stdout);
    image
}
