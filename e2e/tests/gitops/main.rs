//! GitOps with the tools' own code: Argo CD's health evaluation judging live objects with the chart's Lua health
//! check and Argo CD's Application CRD taking the example Application ([`argocd`]), and Flux's source-controller and kustomize-controller reconciling a git repository served on
//! loopback ([`flux`], [`git`]).
//!
//! The tools are built from their Go modules by `e2e/gitops-tools` (once per version, cached like helm); `make e2e`
//! builds them before the tests, which otherwise build them on first use. `FLUX_CONTROLLERS` (a directory holding
//! `source-controller` and `kustomize-controller`) and `ARGOCD_HEALTH` (the binary of `e2e/argocd`) override them.

mod argocd;
mod flux;
mod git;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use e2e::{kubectl, run, run_stdin};
use serde_json::Value;

/// The repository's root.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `$env` if set, else what `e2e/gitops-tools <command>` prints (it builds the tool the first time).
fn tool(env: &str, command: &str, cell: &'static OnceLock<PathBuf>) -> &'static Path {
    cell.get_or_init(|| {
        if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        eprintln!("{env} is not set: running `e2e/gitops-tools {command}` (it builds once, a few minutes)");
        let out = run(Command::new(repo_root().join("e2e/gitops-tools")).arg(command).stderr(Stdio::inherit()));
        assert!(out.success(), "`e2e/gitops-tools {command}` failed; run it to see why, or set {env}");
        PathBuf::from(out.stdout.trim())
    })
}

/// Directory of Flux's `source-controller` and `kustomize-controller`.
fn flux_controllers() -> &'static Path {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    tool("FLUX_CONTROLLERS", "flux", &CELL)
}

/// The `e2e/argocd` program: Argo CD's own health evaluation.
fn argocd_health() -> &'static Path {
    static CELL: OnceLock<PathBuf> = OnceLock::new();
    tool("ARGOCD_HEALTH", "argocd", &CELL)
}

/// The live object `kind/name` (cluster-scoped unless `namespace`), as the API server returns it.
fn live(kind: &str, name: &str) -> Value {
    e2e::kubectl_json(&["get", kind, name])
}

/// `kubectl apply --server-side` of `manifests` (YAML, any number of documents) as field manager `e2e-gitops`.
fn apply(manifests: &str) {
    let out = run_stdin(
        kubectl().args(["apply", "--server-side", "--force-conflicts", "--field-manager=e2e-gitops", "-f", "-"]),
        manifests,
    );
    assert!(out.success(), "kubectl apply failed: {}\n{manifests}", out.stderr);
}

/// Deletes `kind/name` (`-n namespace` in `args` if namespaced) without waiting; never panics (cleanup).
fn delete_nowait(args: &[&str]) {
    let out = run(kubectl().args(["delete", "--ignore-not-found", "--wait=false"]).args(args));
    if !out.success() {
        eprintln!("cleanup: kubectl delete {args:?}: {}", out.stderr);
    }
}

/// The text of a file of the repository.
fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The YAML documents of `text`, parsed (empty ones skipped).
fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every file of examples/gitops/ is one these tests apply (examples/ is applied by e2e/tests/api.rs, which leaves
/// this directory to them): a new example cannot go untested.
#[test]
fn every_gitops_example_is_applied_here() {
    let dir = repo_root().join("examples/gitops");
    let mut found = Vec::new();
    for tool in std::fs::read_dir(&dir).expect("examples/gitops") {
        for file in std::fs::read_dir(tool.expect("entry").path()).expect("a directory") {
            let path = file.expect("entry").path();
            found.push(path.strip_prefix(&dir).expect("under it").display().to_string());
        }
    }
    found.sort();
    // argocd/: argocd.rs; flux/: flux.rs.
    assert_eq!(
        found,
        ["argocd/application.yaml", "argocd/argocd-cm.yaml", "flux/sync.yaml", "flux/workspace-sync.yaml"]
    );
}
