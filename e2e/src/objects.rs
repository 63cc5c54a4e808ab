//! Writing, reading and deleting cluster objects with `kubectl`, as the kubeconfig's user (cluster-admin on the local
//! cluster): what several test binaries each had a private copy of.
//!
//! Helpers meant for polling ([`read_condition`]) or for cleanup ([`delete_nowait`], [`wait_gone`]) never panic on a
//! failed kubectl call, so a poll simply tries again and a cleanup running in `Drop` reports instead of aborting;
//! the others panic with kubectl's stderr, as a test step that must succeed.

use std::fmt;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::{Value, json};

use crate::{kubectl, run, run_ok, run_stdin};

/// The API version of the operator's kinds (Workspace, Project, ProjectRoleBinding).
pub const API_VERSION: &str = "zenml.io/v1alpha1";

/// One of the operator's (cluster-scoped) objects as JSON: `kind` named `name` with `spec`, ready for
/// [`server_side_apply`] or `kubectl create -f -`.
pub fn zenml_object(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// `kubectl apply -f -` (client-side) of `manifests`: YAML or JSON, any number of `---`-separated documents.
/// Panics with kubectl's stderr if it fails.
pub fn apply_manifests(manifests: &str) {
    let out = run_stdin(kubectl().args(["apply", "-f", "-"]), manifests);
    assert!(out.success(), "kubectl apply failed: {}", out.stderr);
}

/// Server-side apply of `obj` as field manager `e2e` with `--force-conflicts`: a re-apply of a changed object takes
/// over every field it sets, even one another manager (`kubectl patch`, the plugin) wrote last, and drops the fields
/// `e2e` set before but no longer sets. Panics with kubectl's stderr and the object if it fails.
pub fn server_side_apply(obj: &Value) {
    let text = serde_json::to_string_pretty(obj).expect("json");
    let out = run_stdin(
        kubectl().args(["apply", "--server-side", "--force-conflicts", "--field-manager=e2e", "-f", "-"]),
        &text,
    );
    assert!(out.success(), "kubectl apply failed: {}\n{text}", out.stderr);
}

/// `kubectl <args> -o json`, parsed: one object or a `List`. Panics if kubectl fails or prints no JSON, so it is not
/// for an object that may be absent.
pub fn kubectl_json(args: &[&str]) -> Value {
    let out = run_ok(kubectl().args(args).args(["-o", "json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?} -o json printed no JSON ({e}):\n{out}"))
}

/// One entry of an object's `status.conditions`, read from its JSON; a field the entry lacks is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusCondition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
}

impl fmt::Display for StatusCondition {
    /// `Ready=False BindForbidden (message)`, as [`describe_conditions`] writes typed ones.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={} {} ({})", self.type_, self.status, self.reason, self.message)
    }
}

/// The condition `type_` in `obj`'s `status.conditions` (`obj` as [`kubectl_json`] returns it), if there is one.
/// The operator's CRDs make `conditions` a list map keyed by `type`, so at most one entry matches.
pub fn condition(obj: &Value, type_: &str) -> Option<StatusCondition> {
    let c = obj["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?;
    let text = |field: &str| c[field].as_str().unwrap_or_default().to_owned();
    Some(StatusCondition {
        type_: text("type"),
        status: text("status"),
        reason: text("reason"),
        message: text("message"),
    })
}

/// The condition `type_` of the cluster-scoped object `kind`/`name` as it is now. `None` while the object or the
/// condition does not exist, and also when kubectl fails: this is for polling, which just tries again.
pub fn read_condition(kind: &str, name: &str, type_: &str) -> Option<StatusCondition> {
    let out = run(kubectl().args(["get", kind, name, "-o", "json"]));
    if !out.success() {
        return None;
    }
    condition(&serde_json::from_str(&out.stdout).ok()?, type_)
}

/// Polls (every 150 ms, as [`crate::eventually`]) until the condition `type_` of the cluster-scoped object
/// `kind`/`name` exists and `accept`s, and returns it; panics with `what` after `timeout`.
pub async fn wait_condition(
    kind: &str,
    name: &str,
    type_: &str,
    timeout: Duration,
    what: &str,
    accept: impl Fn(&StatusCondition) -> bool,
) -> StatusCondition {
    crate::eventually(timeout, what, || async { read_condition(kind, name, type_).filter(|c| accept(c)) }).await
}

/// `conditions [Ready=True Ready (message); ...]`: typed conditions for a failure message.
pub fn describe_conditions(conds: &[Condition]) -> String {
    let conds: Vec<String> =
        conds.iter().map(|c| format!("{}={} {} ({})", c.type_, c.status, c.reason, c.message)).collect();
    format!("conditions [{}]", conds.join("; "))
}

/// Starts deleting the objects `names` of `kind` (`kubectl delete --ignore-not-found --wait=false`; cluster-scoped
/// kinds, or the current namespace) and does not wait. For cleanups: never panics, `Err` says what kubectl refused.
/// No names, nothing to do.
pub fn delete_nowait(kind: &str, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let out = run(kubectl().args(["delete", kind, "--ignore-not-found", "--wait=false"]).args(names));
    if out.success() { Ok(()) } else { Err(format!("kubectl delete {kind} {names:?}: {}", out.stderr)) }
}

/// Polls with kubectl (every 300 ms, blocking the thread: cleanups run in `Drop`, which cannot `.await`) until
/// none of `names` of `kind` exists. For cleanups: never panics, `Err` says what is still there after `timeout`.
/// No names, nothing to wait for.
pub fn wait_gone(kind: &str, names: &[String], timeout: Duration) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let start = Instant::now();
    loop {
        let out = run(kubectl().args(["get", kind, "--ignore-not-found", "-o", "name"]).args(names));
        if out.success() && out.stdout.trim().is_empty() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            return Err(format!("{kind} {names:?} still there after {timeout:?}: {}{}", out.stdout, out.stderr));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condition_finds_the_entry_of_its_type() {
        let obj = json!({"status": {"conditions": [
            {"type": "NamespaceReady", "status": "True", "reason": "Created", "message": ""},
            {"type": "Ready", "status": "False", "reason": "BindForbidden", "message": "cannot bind x"},
        ]}});
        let ready = condition(&obj, "Ready").expect("a Ready condition");
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "BindForbidden"));
        assert_eq!(ready.to_string(), "Ready=False BindForbidden (cannot bind x)");
        assert_eq!(condition(&obj, "QuotaReady"), None);
        assert_eq!(condition(&json!({"metadata": {"name": "new"}}), "Ready"), None);
        let partial = condition(&json!({"status": {"conditions": [{"type": "Ready"}]}}), "Ready").unwrap();
        assert_eq!(partial, StatusCondition { type_: "Ready".into(), ..Default::default() });
    }
}
