//! What a test makes on the cluster, deleted again when the test ends, pass or fail.
//!
//! A test names what it makes in a [`Cleanup`] before (or as) it creates it; dropping the `Cleanup` deletes all of
//! it in an order that lets each go, waits until it is gone, and fails the test (unless it already failed) if
//! something stays.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::{delete_nowait, kubectl, operator, run, server_side_apply, wait_gone, zenml_object};

/// How long a Project, Workspace or namespace may take to go: namespace deletion runs through the namespace
/// controller, which deletes everything in it first.
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

/// Everything a test made, deleted when dropped: ProjectRoleBindings, then Projects (until they are gone, with their
/// namespaces), then Workspaces, then ClusterRoleBindings, and last any other namespace.
pub struct Cleanup {
    pub bindings: Vec<String>,
    pub projects: Vec<String>,
    pub workspaces: Vec<String>,
    pub cluster_role_bindings: Vec<String>,
    /// Namespaces that outlive their Project (Retain, released) or were never a Project's.
    pub namespaces: Vec<String>,
    /// Wait until `namespaces` are gone too (fixed names a later run reuses); otherwise their deletion is only asked.
    pub wait_for_namespaces: bool,
    /// How long bindings and ClusterRoleBindings may take to go.
    quick: Duration,
    /// How long Projects, Workspaces and namespaces may take to go.
    slow: Duration,
    /// No operator may be running: objects still there after their time lose their finalizers, and get as long again.
    unfinalize: bool,
    /// The operator's log, named when cleaning up fails.
    operator_log: Option<PathBuf>,
}

impl Cleanup {
    /// For tests of an operator they run themselves; bindings and ClusterRoleBindings may take `timeout` to go,
    /// everything else [`DELETE_TIMEOUT`].
    pub fn new(timeout: Duration) -> Cleanup {
        Cleanup {
            bindings: Vec::new(),
            projects: Vec::new(),
            workspaces: Vec::new(),
            cluster_role_bindings: Vec::new(),
            namespaces: Vec::new(),
            wait_for_namespaces: false,
            quick: timeout,
            slow: DELETE_TIMEOUT,
            unfinalize: false,
            operator_log: None,
        }
    }

    /// For tests of [`operator::shared`], which this starts (once per test binary) and whose log a failure names.
    pub fn with_shared_operator(timeout: Duration) -> Cleanup {
        let log = operator::shared().log.clone();
        Cleanup::new(timeout).operator_log(log)
    }

    /// For tests that may run with no operator at all: whatever is still there after `grace` loses its finalizers.
    pub fn without_operator(grace: Duration) -> Cleanup {
        let mut c = Cleanup::new(grace);
        (c.slow, c.unfinalize) = (grace, true);
        c
    }

    /// Names the operator's log when cleaning up fails.
    pub fn operator_log(mut self, log: PathBuf) -> Cleanup {
        self.operator_log = Some(log);
        self
    }

    /// Remembers `name` of `kind` (`ProjectRoleBinding`, `Project`, `Workspace`, `ClusterRoleBinding`, `Namespace`)
    /// for deletion, once; false for a kind it does not delete.
    pub fn track(&mut self, kind: &str, name: &str) -> bool {
        let list = match kind {
            "ProjectRoleBinding" => &mut self.bindings,
            "Project" => &mut self.projects,
            "Workspace" => &mut self.workspaces,
            "ClusterRoleBinding" => &mut self.cluster_role_bindings,
            "Namespace" => &mut self.namespaces,
            _ => return false,
        };
        if !list.iter().any(|n| n == name) {
            list.push(name.to_owned());
        }
        true
    }

    /// Server-side applies `obj` as the kubeconfig's user, remembering it first if it is of a kind deleted here.
    pub fn apply(&mut self, obj: &Value) {
        let (kind, name) = (obj["kind"].as_str().expect("a kind"), obj["metadata"]["name"].as_str().expect("a name"));
        self.track(kind, name);
        server_side_apply(obj);
    }

    /// A Workspace with `spec`, applied.
    pub fn workspace(&mut self, name: &str, spec: Value) {
        self.apply(&zenml_object("Workspace", name, spec));
    }

    /// A Project someone else (a user, the plugin) is about to create under `name`.
    pub fn project(&mut self, name: &str) {
        self.track("Project", name);
    }

    /// A ProjectRoleBinding someone else is about to create under `name`.
    pub fn binding(&mut self, name: &str) {
        self.track("ProjectRoleBinding", name);
    }

    /// A ClusterRoleBinding someone else is about to create under `name`.
    pub fn cluster_role_binding(&mut self, name: &str) {
        self.track("ClusterRoleBinding", name);
    }

    /// Deletes everything remembered, in order, and forgets it; `Err` says what did not go away.
    pub fn run(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        let steps = [
            ("projectrolebindings.zenml.io", std::mem::take(&mut self.bindings), self.quick),
            ("projects.zenml.io", std::mem::take(&mut self.projects), self.slow),
            ("workspaces.zenml.io", std::mem::take(&mut self.workspaces), self.slow),
            ("clusterrolebindings", std::mem::take(&mut self.cluster_role_bindings), self.quick),
        ];
        for (kind, names, timeout) in steps {
            errors.extend(delete_nowait(kind, &names).err());
            errors.extend(self.wait_gone(kind, &names, timeout).err());
        }
        let namespaces = std::mem::take(&mut self.namespaces);
        errors.extend(delete_nowait("namespaces", &namespaces).err());
        if self.wait_for_namespaces {
            errors.extend(wait_gone("namespaces", &namespaces, self.slow).err());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("\n")) }
    }

    /// Waits until `names` are gone; with no operator bound to run, removes the finalizers of those left and waits
    /// as long again.
    fn wait_gone(&self, kind: &str, names: &[String], timeout: Duration) -> Result<(), String> {
        let gone = wait_gone(kind, names, timeout);
        if gone.is_ok() || !self.unfinalize {
            return gone;
        }
        for name in names {
            run(kubectl().args(["patch", kind, name, "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#]));
        }
        wait_gone(kind, names, timeout)
    }

    /// Deletes everything remembered, and fails the test if something stays (only says so if it failed already).
    pub fn finish(&mut self) {
        match self.run() {
            Ok(()) => {}
            Err(e) if std::thread::panicking() => eprintln!("cleanup after a failed test: {e}"),
            Err(e) => match &self.operator_log {
                Some(log) => panic!("cleanup failed: {e}\noperator log: {}", log.display()),
                None => panic!("cleanup failed: {e}"),
            },
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.finish();
    }
}
