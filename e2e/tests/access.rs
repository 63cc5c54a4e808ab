//! Access control the way users feel it: every right is checked by impersonation (`kubectl --as=... --as-group=...`,
//! `kubectl auth can-i ... --as=...`) and real create, get, update and delete calls as that user.
//!
//! Every test makes its own Workspaces, Projects, ProjectRoleBindings, users and groups under [`unique`] names
//! through a [`Test`], which deletes what it made when the test ends, pass or fail: bindings, then Projects (until
//! they are gone), then Workspaces, then the ClusterRoleBindings that gave its users the base right
//! (`zenml-self-service`).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::fixtures::Cleanup;
use e2e::{
    Output, client, describe_conditions, eventually, kubectl, run, run_stdin, server_side_apply, unique, wait_gone,
    zenml_object,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use zenml_api::{Project, ProjectRoleBinding, Workspace};

/// How long the operator may take for anything that needs no namespace deletion.
const TIMEOUT: Duration = Duration::from_secs(30);
/// How long an RBAC change may take to reach the authorizer once the object is written.
const RBAC_TIMEOUT: Duration = Duration::from_secs(10);
/// The promise for revocation: a deleted, expired or no longer allowed grant is gone within 5 seconds.
const REVOKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Namespace deletion runs through the namespace controller, which deletes everything in it first.
const DELETE_TIMEOUT: Duration = Duration::from_secs(120);

const PROJECTS: &str = "projects.zenml.io";
const WORKSPACES: &str = "workspaces.zenml.io";
const BINDINGS: &str = "projectrolebindings.zenml.io";
const BINDING_POLICY: &str = "zenml-binding-delegation";
const PROJECT_POLICY: &str = "zenml-project-delegation";
// The tenant policies (issue 17), as `charts/zenml-operator/files/` names them.
const IMPERSONATION_POLICY: &str = "zenml-service-account-impersonation";
const RUNNER_POLICY: &str = "zenml-runner-identity";
const ONE_DOOR_POLICY: &str = "zenml-one-door-for-access";
const PROTECTED_POLICY: &str = "zenml-protected-namespaces";
const WALLS_POLICY: &str = "zenml-network-walls";
const MANAGED_POLICY: &str = "zenml-managed-objects";
// The workspace policies (issue 22): one policy whose parameter is the Workspace.
const WORKSPACE_POLICY: &str = "zenml-workspace-policies";
const FREEZE_POLICY: &str = "zenml-frozen-projects";

// ---------------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------------

/// One test's view of the cluster, and everything it must delete when it ends.
struct Test {
    client: Client,
    made: Cleanup,
}

impl Test {
    async fn new() -> Test {
        Test { made: Cleanup::with_shared_operator(TIMEOUT), client: client().await }
    }

    /// Remembers an object for cleanup (before anyone tries to create it).
    fn track(&mut self, kind: &str, name: &str) {
        assert!(self.made.track(kind, name), "not tracked: {kind}");
    }

    /// Tracks `obj` and returns it, for a user to create.
    fn tracked(&mut self, obj: Value) -> Value {
        self.track(obj["kind"].as_str().expect("a kind"), obj["metadata"]["name"].as_str().expect("a name"));
        obj
    }

    /// Server-side applies `obj` as the kubeconfig's user (a cluster admin), remembering it for cleanup.
    fn apply(&mut self, obj: Value) {
        server_side_apply(&self.tracked(obj));
    }

    fn workspace(&mut self, name: &str, spec: Value) {
        self.apply(workspace(name, spec));
    }

    fn project(&mut self, name: &str, workspace: &str) {
        self.apply(project(name, workspace));
    }

    /// A ProjectRoleBinding made by a cluster admin.
    fn binding(&mut self, name: &str, project: &str, role: &str, subjects: Value) {
        self.apply(binding(name, project, role, subjects));
    }

    /// Grants `zenml-self-service` (the base right to create Projects and ProjectRoleBindings at all) to a new
    /// group, and returns the group.
    fn self_service(&mut self) -> String {
        let group = unique("e2e-acc-selfservice");
        let crb = group.clone();
        self.made.cluster_role_binding(&crb);
        let out = run(kubectl().args([
            "create",
            "clusterrolebinding",
            &crb,
            "--clusterrole=zenml-self-service",
            &format!("--group={group}"),
        ]));
        assert!(out.success(), "create clusterrolebinding {crb}: {}", out.stderr);
        group
    }

    fn bindings_api(&self) -> Api<ProjectRoleBinding> {
        Api::all(self.client.clone())
    }

    async fn wait_project_ready(&self, name: &str) -> Project {
        let api: Api<Project> = Api::all(self.client.clone());
        eventually(TIMEOUT, &format!("project {name} Ready"), || async {
            let p = api.get(name).await.map_err(|e| e.to_string())?;
            let conds = p.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
            let ready = conds
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True" && c.observed_generation == p.metadata.generation);
            if ready { Ok(p) } else { Err(describe_conditions(&conds)) }
        })
        .await
    }

    /// Waits until the binding's Ready condition has `status` and `reason` for its current generation.
    async fn wait_binding(&self, name: &str, status: &str, reason: &str) -> ProjectRoleBinding {
        let api = self.bindings_api();
        eventually(TIMEOUT, &format!("binding {name}: Ready={status} reason {reason}"), || async {
            let b = api.get(name).await.map_err(|e| e.to_string())?;
            let conds = b.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
            let current = conds.iter().any(|c| {
                c.type_ == "Ready"
                    && c.status == status
                    && c.reason == reason
                    && c.observed_generation == b.metadata.generation
            });
            if current { Ok(b) } else { Err(describe_conditions(&conds)) }
        })
        .await
    }

    /// Waits until the binding is in force, and checks its RoleBinding grants `cluster_role` in the project.
    async fn wait_bound(&self, name: &str, cluster_role: &str) -> RoleBinding {
        let b = self.wait_binding(name, "True", "Bound").await;
        let rb_name = format!("zenml-prb-{name}");
        assert_eq!(b.status.as_ref().and_then(|s| s.role_binding.clone()), Some(rb_name.clone()));
        let rb = self.role_binding(&b.spec.project, &rb_name).await.unwrap_or_else(|| panic!("{rb_name} exists"));
        assert_eq!(rb.role_ref.name, cluster_role, "{rb_name} binds {cluster_role}");
        assert_eq!(rb.role_ref.kind, "ClusterRole");
        rb
    }

    async fn role_binding(&self, ns: &str, name: &str) -> Option<RoleBinding> {
        Api::<RoleBinding>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get rolebinding {ns}/{name}: {e}"))
    }

    async fn role_bindings(&self, ns: &str) -> Vec<RoleBinding> {
        Api::<RoleBinding>::namespaced(self.client.clone(), ns)
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("list rolebindings in {ns}: {e}"))
            .items
    }

    /// Waits until the Project's `status.members` is exactly `expected`.
    async fn wait_members(&self, project: &str, expected: &[(&str, i32)]) {
        let expected: BTreeMap<String, i32> = expected.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        let api: Api<Project> = Api::all(self.client.clone());
        eventually(TIMEOUT, &format!("project {project} members {expected:?}"), || async {
            let p = api.get(project).await.map_err(|e| e.to_string())?;
            let members = p.status.map(|s| s.members).unwrap_or_default();
            if members == expected { Ok(()) } else { Err(format!("members {members:?}")) }
        })
        .await;
    }
}

fn workspace(name: &str, spec: Value) -> Value {
    zenml_object("Workspace", name, spec)
}

fn project(name: &str, workspace: &str) -> Value {
    zenml_object("Project", name, json!({"workspace": workspace}))
}

fn binding(name: &str, project: &str, role: &str, subjects: Value) -> Value {
    zenml_object("ProjectRoleBinding", name, json!({"project": project, "role": role, "subjects": subjects}))
}

fn config_map(name: &str, ns: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"key": value}})
}

/// Someone the API server is told to impersonate: a user name and the groups it carries.
struct User {
    name: String,
    groups: Vec<String>,
}

impl User {
    /// A new user, unique to this run, in `groups`.
    fn new(prefix: &str, groups: &[&str]) -> User {
        User { name: unique(&format!("e2e-acc-{prefix}")), groups: groups.iter().map(|g| (*g).to_owned()).collect() }
    }

    /// A ServiceAccount, as its token would authenticate it.
    fn service_account(namespace: &str, name: &str) -> User {
        User { name: format!("system:serviceaccount:{namespace}:{name}"), groups: Vec::new() }
    }

    fn subject(&self) -> Value {
        json!({"kind": "User", "name": self.name})
    }

    /// `kubectl` acting as this user.
    fn kubectl(&self) -> Command {
        let mut cmd = kubectl();
        cmd.arg(format!("--as={}", self.name));
        for g in &self.groups {
            cmd.arg(format!("--as-group={g}"));
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        run(self.kubectl().args(args))
    }

    /// `kubectl create -f -` of `obj` as this user.
    fn create(&self, obj: &Value) -> Output {
        run_stdin(self.kubectl().args(["create", "-f", "-"]), &obj.to_string())
    }

    /// `kubectl replace -f -` of `obj` as this user: an update (PUT).
    fn replace(&self, obj: &Value) -> Output {
        run_stdin(self.kubectl().args(["replace", "-f", "-"]), &obj.to_string())
    }

    /// `kubectl auth can-i <args>` as this user.
    fn can(&self, args: &[&str]) -> bool {
        let out = run(self.kubectl().args(["auth", "can-i"]).args(args));
        match out.stdout.trim() {
            "yes" => true,
            "no" => false,
            other => panic!("kubectl auth can-i {args:?} as {}: {other:?} {}", self.name, out.stderr),
        }
    }

    /// Waits until `kubectl auth can-i <args>` says `expected`, and returns how long that took.
    async fn wait_can(&self, args: &[&str], expected: bool, timeout: Duration) -> Duration {
        let start = Instant::now();
        let what = format!("`kubectl auth can-i {}` as {} to say {}", args.join(" "), self.name, yes(expected));
        eventually(timeout, &what, || async { (self.can(args) == expected).then_some(()) }).await;
        start.elapsed()
    }

    /// Creates `obj` as this user, retrying until the grant that allows it has reached the authorizer.
    async fn wait_create(&self, obj: &Value) {
        let what = format!("{} to create {} {}", self.name, obj["kind"], obj["metadata"]["name"]);
        eventually(RBAC_TIMEOUT, &what, || async {
            let out = self.create(obj);
            if out.success() { Ok(()) } else { Err(out.stderr) }
        })
        .await;
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(out.success(), "{what} should be allowed, but failed: {}{}", out.stdout, out.stderr);
}

/// The call was refused with 403 Forbidden; by the admission policy `policy` when given.
#[track_caller]
fn assert_forbidden(out: &Output, what: &str, policy: Option<&str>) {
    assert!(!out.success(), "{what} should be forbidden, but succeeded: {}", out.stdout);
    // `kubectl create -f` says "Error from server (Forbidden): ..."; `kubectl create <kind>` says "... is forbidden: ...".
    assert!(
        out.stderr.contains("(Forbidden)") || out.stderr.contains(" is forbidden: "),
        "{what} should fail with Forbidden, got: {}",
        out.stderr
    );
    if let Some(policy) = policy {
        assert!(
            out.stderr.contains(&format!("ValidatingAdmissionPolicy '{policy}'")),
            "{what} should be refused by policy {policy}, got: {}",
            out.stderr
        );
    }
}

/// The call was refused by the admission policy `policy`, with a message that names its rule (`rule`).
#[track_caller]
fn assert_refused(out: &Output, what: &str, policy: &str, rule: &str) {
    assert_forbidden(out, what, Some(policy));
    assert!(out.stderr.contains(rule), "{what}: the refusal should name the rule ({rule:?}), got: {}", out.stderr);
}

// ---------------------------------------------------------------------------------------------------------------
// 1. Project roles
// ---------------------------------------------------------------------------------------------------------------

/// developer: create and update, in its project only; contributor: create and read, never update or delete;
/// viewer: read only; admin: manages RoleBindings in the namespace.
#[tokio::test]
async fn project_roles_grant_what_they_say_in_their_project_only() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let (a, b) = (unique("e2e-acc-a"), unique("e2e-acc-b"));
    t.workspace(&ws, json!({}));
    t.project(&a, &ws);
    t.project(&b, &ws);

    let contributors = unique("e2e-acc-contributors");
    let admins = unique("e2e-acc-admins");
    let dev = User::new("dev", &[]);
    let contrib = User::new("contrib", &[&contributors]);
    let viewer = User::new("viewer", &[]);
    let admin = User::new("admin", &[&admins]);
    let names: Vec<String> =
        ["dev", "contrib", "viewer", "admin"].iter().map(|r| unique(&format!("e2e-acc-{r}"))).collect();
    t.binding(&names[0], &a, "developer", json!([dev.subject()]));
    t.binding(&names[1], &a, "contributor", json!([{"kind": "Group", "name": contributors}]));
    t.binding(&names[2], &a, "viewer", json!([viewer.subject()]));
    t.binding(&names[3], &a, "admin", json!([{"kind": "Group", "name": admins}]));
    t.wait_project_ready(&a).await;
    t.wait_project_ready(&b).await;
    for (name, cluster_role) in names.iter().zip(["edit", "zenml-project-contributor", "view", "admin"]) {
        t.wait_bound(name, cluster_role).await;
    }

    // developer
    dev.wait_can(&["create", "configmaps", "-n", &a], true, RBAC_TIMEOUT).await;
    assert_ok(&dev.create(&config_map("dev-cm", &a, "1")), "developer creates a ConfigMap");
    assert_ok(&dev.replace(&config_map("dev-cm", &a, "2")), "developer updates its ConfigMap");
    assert_ok(
        &dev.run(&["create", "deployment", "web", "--image=busybox", "--replicas=0", "-n", &a]),
        "developer creates a Deployment",
    );
    assert_ok(&dev.run(&["label", "deployment", "web", "tier=web", "-n", &a]), "developer patches a Deployment");
    assert_ok(&dev.run(&["scale", "deployment", "web", "--replicas=0", "-n", &a]), "developer scales a Deployment");
    assert_forbidden(
        &dev.create(&config_map("dev-cm", &b, "1")),
        "developer creates a ConfigMap in another project",
        None,
    );
    assert_forbidden(&dev.run(&["get", "configmaps", "-n", &b]), "developer lists ConfigMaps of another project", None);
    assert_forbidden(
        &dev.run(&["create", "deployment", "web", "--image=busybox", "--replicas=0", "-n", &b]),
        "developer creates a Deployment in another project",
        None,
    );
    assert!(!dev.can(&["get", "pods", "-n", &b]), "developer reads nothing in another project");

    // contributor (through its Group)
    contrib.wait_can(&["create", "configmaps", "-n", &a], true, RBAC_TIMEOUT).await;
    assert_ok(&contrib.create(&config_map("contrib-cm", &a, "1")), "contributor creates a ConfigMap");
    assert_ok(&contrib.run(&["get", "configmap", "contrib-cm", "-n", &a]), "contributor reads its ConfigMap");
    assert_ok(&contrib.run(&["get", "configmaps", "-n", &a]), "contributor lists ConfigMaps");
    assert_ok(
        &contrib.run(&["create", "deployment", "job", "--image=busybox", "--replicas=0", "-n", &a]),
        "contributor creates a Deployment",
    );
    assert_forbidden(&contrib.replace(&config_map("contrib-cm", &a, "2")), "contributor updates a ConfigMap", None);
    assert_forbidden(
        &contrib.run(&["label", "configmap", "contrib-cm", "x=y", "-n", &a]),
        "contributor patches a ConfigMap",
        None,
    );
    assert_forbidden(
        &contrib.run(&["delete", "configmap", "contrib-cm", "-n", &a]),
        "contributor deletes its ConfigMap",
        None,
    );
    assert_forbidden(
        &contrib.run(&["delete", "configmap", "dev-cm", "-n", &a]),
        "contributor deletes a ConfigMap",
        None,
    );
    assert_forbidden(
        &contrib.run(&["label", "deployment", "job", "x=y", "-n", &a]),
        "contributor patches a Deployment",
        None,
    );
    assert_forbidden(
        &contrib.run(&["delete", "deployment", "job", "-n", &a]),
        "contributor deletes a Deployment",
        None,
    );
    assert_forbidden(
        &contrib.run(&["get", "configmaps", "-n", &b]),
        "contributor lists ConfigMaps of another project",
        None,
    );

    // viewer
    viewer.wait_can(&["list", "configmaps", "-n", &a], true, RBAC_TIMEOUT).await;
    assert_ok(&viewer.run(&["get", "configmap", "dev-cm", "-n", &a]), "viewer gets a ConfigMap");
    assert_ok(&viewer.run(&["get", "configmaps,deployments", "-n", &a]), "viewer lists ConfigMaps and Deployments");
    assert_forbidden(&viewer.create(&config_map("viewer-cm", &a, "1")), "viewer creates a ConfigMap", None);
    assert_forbidden(&viewer.replace(&config_map("dev-cm", &a, "3")), "viewer updates a ConfigMap", None);
    assert_forbidden(&viewer.run(&["delete", "configmap", "dev-cm", "-n", &a]), "viewer deletes a ConfigMap", None);
    assert_forbidden(&viewer.run(&["get", "configmaps", "-n", &b]), "viewer lists ConfigMaps of another project", None);

    // admin (through its Group): RBAC lets it manage RoleBindings in the namespace, but access to a project is
    // granted through ProjectRoleBindings only (see `only_the_operator_grants_access_in_a_project`).
    admin.wait_can(&["create", "rolebindings", "-n", &a], true, RBAC_TIMEOUT).await;
    let guest = User::new("guest", &[]);
    assert!(!guest.can(&["list", "configmaps", "-n", &a]));
    let user_flag = format!("--user={}", guest.name);
    assert_forbidden(
        &admin.run(&["create", "rolebinding", "guest-view", "--clusterrole=view", &user_flag, "-n", &a]),
        "admin creates a RoleBinding to view",
        Some(ONE_DOOR_POLICY),
    );
    assert_ok(&admin.run(&["get", "rolebindings", "-n", &a]), "admin reads the RoleBindings");
    assert!(!guest.can(&["list", "configmaps", "-n", &a]));
    assert_forbidden(
        &admin.run(&["create", "rolebinding", "guest-view", "--clusterrole=view", &user_flag, "-n", &b]),
        "admin creates a RoleBinding in another project",
        None,
    );
    // The developer holds `edit`, which cannot manage RBAC.
    assert_forbidden(
        &dev.run(&["create", "rolebinding", "dev-view", "--clusterrole=view", &user_flag, "-n", &a]),
        "developer creates a RoleBinding",
        None,
    );
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Delegation
// ---------------------------------------------------------------------------------------------------------------

/// Project admins manage the bindings of their project only, workspace admins the projects of their workspace
/// only; a user with only the base right does neither. Refusals come from the admission policies.
#[tokio::test]
async fn admins_delegate_within_their_project_or_workspace_only() {
    let mut t = Test::new().await;
    let base = t.self_service();
    let (ws1, ws2) = (unique("e2e-acc-ws1"), unique("e2e-acc-ws2"));
    let (ws1_admins, ws2_admins) = (unique("e2e-acc-ws1-admins"), unique("e2e-acc-ws2-admins"));
    t.workspace(&ws1, json!({"members": [{"role": "admin", "subjects": [{"kind": "Group", "name": ws1_admins}]}]}));
    t.workspace(&ws2, json!({"members": [{"role": "admin", "subjects": [{"kind": "Group", "name": ws2_admins}]}]}));
    let (a, b, c) = (unique("e2e-acc-a"), unique("e2e-acc-b"), unique("e2e-acc-c"));
    t.project(&a, &ws1);
    t.project(&b, &ws1);
    t.project(&c, &ws2);

    let project_admin = User::new("padmin", &[&base]);
    let ws_admin = User::new("wsadmin", &[&base, &ws1_admins]);
    let plain = User::new("plain", &[&base]);
    let nobody = User::new("nobody", &[]);
    let someone = User::new("someone", &[]);
    let a_admin = unique("e2e-acc-a-admin");
    let b_viewer = unique("e2e-acc-b-viewer");
    t.binding(&a_admin, &a, "admin", json!([project_admin.subject()]));
    t.binding(&b_viewer, &b, "viewer", json!([someone.subject()]));
    for p in [&a, &b, &c] {
        t.wait_project_ready(p).await;
    }
    t.wait_bound(&a_admin, "admin").await;
    t.wait_bound(&b_viewer, "view").await;

    // The project admin of A manages A's bindings...
    let by_padmin = t.tracked(binding(&unique("e2e-acc-by-padmin"), &a, "viewer", json!([someone.subject()])));
    let by_padmin_name = by_padmin["metadata"]["name"].as_str().unwrap().to_owned();
    project_admin.wait_create(&by_padmin).await;
    t.wait_bound(&by_padmin_name, "view").await;
    assert_ok(
        &project_admin.run(&["label", BINDINGS, &by_padmin_name, "team=x"]),
        "project admin changes a binding of its project",
    );
    assert_ok(
        &project_admin.run(&["delete", BINDINGS, &by_padmin_name]),
        "project admin deletes a binding of its project",
    );
    // ... and nothing of B.
    let into_b = t.tracked(binding(&unique("e2e-acc-padmin-b"), &b, "admin", json!([project_admin.subject()])));
    assert_forbidden(
        &project_admin.create(&into_b),
        "project admin of A creates a binding for B",
        Some(BINDING_POLICY),
    );
    assert_forbidden(
        &project_admin.run(&["label", BINDINGS, &b_viewer, "team=x"]),
        "project admin of A changes a binding of B",
        Some(BINDING_POLICY),
    );
    assert_forbidden(
        &project_admin.run(&["delete", BINDINGS, &b_viewer]),
        "project admin of A deletes a binding of B",
        Some(BINDING_POLICY),
    );
    t.bindings_api().get(&b_viewer).await.expect("B's binding is still there");
    // A project admin is no workspace admin.
    let p_by_padmin = t.tracked(project(&unique("e2e-acc-p-padmin"), &ws1));
    assert_forbidden(&project_admin.create(&p_by_padmin), "project admin creates a project", Some(PROJECT_POLICY));

    // The workspace admin of ws1 creates projects in ws1...
    let new_project = unique("e2e-acc-new");
    let obj = t.tracked(project(&new_project, &ws1));
    ws_admin.wait_create(&obj).await;
    // ... not in ws2, nor may it delete a project of ws2 ...
    let in_ws2 = t.tracked(project(&unique("e2e-acc-other"), &ws2));
    assert_forbidden(
        &ws_admin.create(&in_ws2),
        "workspace admin of ws1 creates a project in ws2",
        Some(PROJECT_POLICY),
    );
    assert_forbidden(
        &ws_admin.run(&["delete", PROJECTS, &c]),
        "workspace admin of ws1 deletes a project of ws2",
        Some(PROJECT_POLICY),
    );
    // ... and is an admin of every project of its workspace: it manages their bindings.
    let by_wsadmin = t.tracked(binding(&unique("e2e-acc-by-wsadmin"), &b, "viewer", json!([someone.subject()])));
    ws_admin.wait_create(&by_wsadmin).await;
    let in_c = t.tracked(binding(&unique("e2e-acc-wsadmin-c"), &c, "viewer", json!([someone.subject()])));
    assert_forbidden(&ws_admin.create(&in_c), "workspace admin of ws1 creates a binding in ws2", Some(BINDING_POLICY));
    // It deletes a project of its workspace.
    t.wait_project_ready(&new_project).await;
    assert_ok(
        &ws_admin.run(&["delete", PROJECTS, &new_project, "--wait=false"]),
        "workspace admin deletes a project of its workspace",
    );
    wait_gone(PROJECTS, std::slice::from_ref(&new_project), DELETE_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_forbidden(
        &ws_admin.run(&["delete", PROJECTS, &c]),
        "workspace admin of ws1 deletes a project of ws2",
        Some(PROJECT_POLICY),
    );

    // The base right alone allows neither.
    let p_by_plain = t.tracked(project(&unique("e2e-acc-p-plain"), &ws1));
    assert_forbidden(&plain.create(&p_by_plain), "a plain user creates a project", Some(PROJECT_POLICY));
    let b_by_plain = t.tracked(binding(&unique("e2e-acc-b-plain"), &a, "admin", json!([plain.subject()])));
    assert_forbidden(&plain.create(&b_by_plain), "a plain user creates a binding", Some(BINDING_POLICY));
    assert_forbidden(
        &plain.run(&["delete", BINDINGS, &a_admin]),
        "a plain user deletes a binding",
        Some(BINDING_POLICY),
    );
    assert_forbidden(&plain.run(&["delete", PROJECTS, &a]), "a plain user deletes a project", Some(PROJECT_POLICY));
    // Without the base right, RBAC refuses before any policy is asked.
    assert_forbidden(&nobody.create(&p_by_plain), "a user without the base right creates a project", None);
    assert_forbidden(&nobody.create(&b_by_plain), "a user without the base right creates a binding", None);
}

/// Deleting a project admin's binding takes away its admin rights, including the right to manage the project's
/// bindings: otherwise a removed admin could simply bind itself again.
#[tokio::test]
async fn a_removed_project_admin_can_no_longer_manage_bindings() {
    let mut t = Test::new().await;
    let base = t.self_service();
    let ws = unique("e2e-acc-ws");
    let a = unique("e2e-acc-a");
    t.workspace(&ws, json!({}));
    t.project(&a, &ws);
    let project_admin = User::new("padmin", &[&base]);
    let a_admin = unique("e2e-acc-a-admin");
    t.binding(&a_admin, &a, "admin", json!([project_admin.subject()]));
    t.wait_project_ready(&a).await;
    t.wait_bound(&a_admin, "admin").await;
    let manage = ["manage", BINDINGS, "-n", a.as_str()];
    project_admin.wait_can(&manage, true, RBAC_TIMEOUT).await;
    let first = t.tracked(binding(&unique("e2e-acc-by-padmin"), &a, "viewer", json!([project_admin.subject()])));
    project_admin.wait_create(&first).await;

    let out = run(kubectl().args(["delete", BINDINGS, &a_admin, "--wait=false"]));
    assert!(out.success(), "{}", out.stderr);
    let lost_admin = project_admin.wait_can(&["create", "rolebindings", "-n", &a], false, REVOKE_TIMEOUT).await;
    println!("removed project admin: namespace admin gone after {:.2} s", lost_admin.as_secs_f64());
    let start = Instant::now();
    let lost_manage =
        eventually(REVOKE_TIMEOUT, "the removed admin to lose `manage` on the project's bindings", || async {
            if project_admin.can(&manage) {
                let delegation = t.role_binding(&a, "zenml-project-admin").await;
                let subjects: Vec<String> =
                    delegation.and_then(|rb| rb.subjects).unwrap_or_default().into_iter().map(|s| s.name).collect();
                Err(format!("still allowed; RoleBinding zenml-project-admin subjects: {subjects:?}"))
            } else {
                Ok(start.elapsed())
            }
        })
        .await;
    println!("removed project admin: `manage` gone after {:.2} s", lost_manage.as_secs_f64());
    let again = t.tracked(binding(&unique("e2e-acc-rebind"), &a, "admin", json!([project_admin.subject()])));
    assert_forbidden(&project_admin.create(&again), "a removed project admin binds itself again", Some(BINDING_POLICY));
}

// ---------------------------------------------------------------------------------------------------------------
// 3. No escalation
// ---------------------------------------------------------------------------------------------------------------

/// No ProjectRoleBinding binds a ClusterRole outside the allowed set, whoever creates it; a Workspace cannot allow
/// cluster-admin or system: roles; a custom role a workspace stops allowing is revoked within seconds.
#[tokio::test]
async fn no_binding_grants_a_role_outside_the_allowed_set() {
    let mut t = Test::new().await;
    let base = t.self_service();
    let (ws1, ws2) = (unique("e2e-acc-ws1"), unique("e2e-acc-ws2"));
    let other_role = unique("other-reader");
    t.workspace(&ws1, json!({"roles": [{"name": "reader", "clusterRole": "view"}]}));
    t.workspace(&ws2, json!({"roles": [{"name": other_role, "clusterRole": "view"}]}));
    let a = unique("e2e-acc-a");
    t.project(&a, &ws1);
    let project_admin = User::new("padmin", &[&base]);
    let victim = User::new("esc", &[]);
    let a_admin = unique("e2e-acc-a-admin");
    t.binding(&a_admin, &a, "admin", json!([project_admin.subject()]));
    t.wait_project_ready(&a).await;
    t.wait_bound(&a_admin, "admin").await;

    // As cluster admin: cluster-admin, a ClusterRole name that is no role, another workspace's custom role.
    let mut refused = Vec::new();
    for role in ["cluster-admin", "edit", other_role.as_str()] {
        let name = unique("e2e-acc-esc");
        t.binding(&name, &a, role, json!([victim.subject()]));
        refused.push(name);
    }
    // As the project's admin, who may create bindings for its project: the operator still refuses cluster-admin.
    let by_padmin =
        t.tracked(binding(&unique("e2e-acc-esc-padmin"), &a, "cluster-admin", json!([project_admin.subject()])));
    project_admin.wait_create(&by_padmin).await;
    refused.push(by_padmin["metadata"]["name"].as_str().unwrap().to_owned());
    for name in &refused {
        let b = t.wait_binding(name, "False", "RoleNotAllowed").await;
        assert_eq!(b.status.and_then(|s| s.role_binding), None, "{name} reports no RoleBinding");
        assert!(t.role_binding(&a, &format!("zenml-prb-{name}")).await.is_none(), "no RoleBinding for {name}");
    }
    let rbs = t.role_bindings(&a).await;
    for rb in &rbs {
        assert_ne!(rb.role_ref.name, "cluster-admin", "RoleBinding {} binds cluster-admin", rb.name_any());
        let subjects = rb.subjects.clone().unwrap_or_default();
        assert!(
            !subjects.iter().any(|s| s.name == victim.name),
            "RoleBinding {} grants {}",
            rb.name_any(),
            victim.name
        );
    }
    assert!(!victim.can(&["get", "configmaps", "-n", &a]));
    assert!(!victim.can(&["*", "*", "-n", &a]));
    assert!(!project_admin.can(&["*", "*", "--all-namespaces"]), "the project admin is no cluster admin");
    assert!(!project_admin.can(&["get", "secrets", "-n", "kube-system"]));
    // RBAC's own escalation check stops the project admin from binding cluster-admin directly.
    let user_flag = format!("--user={}", project_admin.name);
    assert_forbidden(
        &project_admin.run(&["create", "rolebinding", "root", "--clusterrole=cluster-admin", &user_flag, "-n", &a]),
        "project admin binds cluster-admin itself",
        None,
    );

    // A Workspace cannot allow cluster-admin or a system: ClusterRole, on create or on update.
    for cluster_role in ["cluster-admin", "system:controller:namespace-controller", "system:masters"] {
        let name = unique("e2e-acc-bad-ws");
        t.track("Workspace", &name);
        let obj = workspace(&name, json!({"roles": [{"name": "root", "clusterRole": cluster_role}]}));
        let out = run_stdin(kubectl().args(["create", "-f", "-"]), &obj.to_string());
        assert!(!out.success(), "a Workspace allowing {cluster_role} was admitted");
        assert!(
            out.stderr.contains("cluster-admin and system: ClusterRoles can never be granted"),
            "refusal of {cluster_role}: {}",
            out.stderr
        );
    }
    let patch = json!({"spec": {"roles": [{"name": "reader", "clusterRole": "view"}, {"name": "root", "clusterRole": "cluster-admin"}]}});
    let out = run(kubectl().args(["patch", WORKSPACES, &ws1, "--type=merge", "-p", &patch.to_string()]));
    assert!(!out.success(), "a Workspace was changed to allow cluster-admin");
    assert!(out.stderr.contains("cluster-admin and system: ClusterRoles can never be granted"), "{}", out.stderr);

    // A custom role the workspace stops allowing is revoked.
    let reader = User::new("reader", &[]);
    let reader_binding = unique("e2e-acc-reader");
    t.binding(&reader_binding, &a, "reader", json!([reader.subject()]));
    t.wait_bound(&reader_binding, "view").await;
    reader.wait_can(&["list", "configmaps", "-n", &a], true, RBAC_TIMEOUT).await;
    let start = Instant::now();
    let out = run(kubectl().args(["patch", WORKSPACES, &ws1, "--type=merge", "-p", r#"{"spec":{"roles":null}}"#]));
    assert!(out.success(), "remove the custom role: {}", out.stderr);
    let rb_name = format!("zenml-prb-{reader_binding}");
    eventually(REVOKE_TIMEOUT, &format!("{rb_name} to be removed"), || async {
        t.role_binding(&a, &rb_name).await.is_none().then_some(())
    })
    .await;
    let removed = start.elapsed();
    reader.wait_can(&["list", "configmaps", "-n", &a], false, REVOKE_TIMEOUT.saturating_sub(start.elapsed())).await;
    let revoked = start.elapsed();
    println!(
        "custom role removed from the workspace: RoleBinding gone after {:.2} s, access gone after {:.2} s",
        removed.as_secs_f64(),
        revoked.as_secs_f64()
    );
    t.wait_binding(&reader_binding, "False", "RoleNotAllowed").await;
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Cross-project grants, revocation and expiry
// ---------------------------------------------------------------------------------------------------------------

/// Project A's runner reads project B only while a binding in B grants it, and no longer than `expiresAt`.
#[tokio::test]
async fn a_cross_project_grant_lasts_while_its_binding_does() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let (a, b) = (unique("e2e-acc-a"), unique("e2e-acc-b"));
    t.workspace(&ws, json!({}));
    t.project(&a, &ws);
    t.project(&b, &ws);
    t.wait_project_ready(&a).await;
    t.wait_project_ready(&b).await;
    let runner = User::service_account(&a, "zenml-runner");
    let list_b = ["list", "pods", "-n", b.as_str()];
    runner.wait_can(&["create", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    assert!(!runner.can(&list_b), "A's runner reads nothing in B without a grant");
    let subject = json!([{"kind": "ServiceAccount", "name": "zenml-runner", "project": a}]);

    // Granted while the binding exists...
    let grant = unique("e2e-acc-share");
    t.binding(&grant, &b, "viewer", subject.clone());
    let rb = t.wait_bound(&grant, "view").await;
    let (rb_name, first_uid) = (format!("zenml-prb-{grant}"), rb.metadata.uid.clone());
    let subjects = rb.subjects.unwrap_or_default();
    assert_eq!(subjects.len(), 1);
    assert_eq!((subjects[0].kind.as_str(), subjects[0].namespace.as_deref()), ("ServiceAccount", Some(a.as_str())));
    runner.wait_can(&list_b, true, RBAC_TIMEOUT).await;
    assert_ok(&runner.run(&["get", "pods", "-n", &b]), "A's runner lists pods in B");
    assert!(!runner.can(&["create", "pods", "-n", &b]), "viewer only");
    // Its RoleBinding deleted by hand while the binding exists comes back (the operator asks the API server whether
    // the binding still exists first: its cache may not have seen it deleted yet).
    assert_ok(&run(kubectl().args(["delete", "rolebinding", &rb_name, "-n", &b])), "delete the RoleBinding by hand");
    eventually(TIMEOUT, &format!("RoleBinding {rb_name} restored"), || async {
        match t.role_binding(&b, &rb_name).await {
            Some(r) if r.metadata.uid != first_uid => Ok(()),
            other => Err(format!("uid {:?}", other.map(|r| r.metadata.uid))),
        }
    })
    .await;
    // ... and not a moment longer.
    let out = run(kubectl().args(["delete", BINDINGS, &grant, "--wait=false"]));
    assert!(out.success(), "{}", out.stderr);
    let revoked = runner.wait_can(&list_b, false, REVOKE_TIMEOUT).await;
    println!("cross-project grant revoked {:.2} s after its binding was deleted", revoked.as_secs_f64());
    assert_forbidden(&runner.run(&["get", "pods", "-n", &b]), "A's runner lists pods in B after revocation", None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(t.role_binding(&b, &rb_name).await.is_none(), "the deleted binding's {rb_name} is not made again");

    // A grant with expiresAt: yes before, no after.
    let expires = Timestamp::from_second(Timestamp::now().as_second() + 8).expect("a time");
    let temporary = unique("e2e-acc-temp");
    let mut obj = binding(&temporary, &b, "viewer", subject);
    obj["spec"]["expiresAt"] = json!(expires.to_string());
    t.apply(obj);
    t.wait_bound(&temporary, "view").await;
    runner.wait_can(&list_b, true, RBAC_TIMEOUT).await;
    let granted_at = Timestamp::now();
    assert!(granted_at < expires, "the grant was in force before it expired ({granted_at} < {expires})");
    let deadline = Instant::now()
        + Duration::try_from(expires.duration_since(Timestamp::now())).unwrap_or_default()
        + REVOKE_TIMEOUT;
    let revoked_at = loop {
        if !runner.can(&list_b) {
            break Timestamp::now();
        }
        assert!(Instant::now() < deadline, "A's runner still lists pods in B {REVOKE_TIMEOUT:?} after {expires}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let after: SignedDuration = revoked_at.duration_since(expires);
    println!(
        "expiring grant: in force {:.2} s before expiry, revoked {:.2} s after expiry",
        expires.duration_since(granted_at).as_secs_f64(),
        after.as_secs_f64()
    );
    assert!(after > SignedDuration::from_millis(-1000), "revoked {after:?} before it expired");
    assert!(after <= SignedDuration::try_from(REVOKE_TIMEOUT).unwrap(), "revoked {after:?} after expiry");
    let b_status = t.wait_binding(&temporary, "False", "Expired").await;
    assert_eq!(b_status.status.and_then(|s| s.role_binding), None);
    assert!(t.role_binding(&b, &format!("zenml-prb-{temporary}")).await.is_none());
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Members
// ---------------------------------------------------------------------------------------------------------------

/// `status.members` counts subjects per role over workspace members and the bindings in force.
#[tokio::test]
async fn project_members_count_workspace_members_and_bindings() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let p = unique("e2e-acc-p");
    t.workspace(
        &ws,
        json!({"members": [
            {"role": "admin", "subjects": [{"kind": "Group", "name": unique("e2e-acc-admins")}]},
            {"role": "developer", "subjects": [{"kind": "User", "name": unique("e2e-acc-dev")}]},
        ]}),
    );
    t.project(&p, &ws);
    t.wait_project_ready(&p).await;
    t.wait_members(&p, &[("admin", 1), ("developer", 1)]).await;

    let dev = unique("e2e-acc-dev");
    t.binding(&dev, &p, "developer", json!([{"kind": "User", "name": unique("e2e-acc-dev2")}]));
    t.wait_members(&p, &[("admin", 1), ("developer", 2)]).await;
    let viewers = unique("e2e-acc-viewers");
    t.binding(
        &viewers,
        &p,
        "viewer",
        json!([{"kind": "User", "name": unique("e2e-acc-v")}, {"kind": "Group", "name": unique("e2e-acc-vg")}]),
    );
    t.wait_members(&p, &[("admin", 1), ("developer", 2), ("viewer", 2)]).await;
    // A binding that is refused counts for nothing.
    let refused = unique("e2e-acc-refused");
    t.binding(&refused, &p, "cluster-admin", json!([{"kind": "User", "name": unique("e2e-acc-x")}]));
    t.wait_binding(&refused, "False", "RoleNotAllowed").await;
    t.wait_members(&p, &[("admin", 1), ("developer", 2), ("viewer", 2)]).await;

    let out = run(kubectl().args(["delete", BINDINGS, &dev]));
    assert!(out.success(), "{}", out.stderr);
    t.wait_members(&p, &[("admin", 1), ("developer", 1), ("viewer", 2)]).await;
    let out = run(kubectl().args(["delete", BINDINGS, &viewers]));
    assert!(out.success(), "{}", out.stderr);
    t.wait_members(&p, &[("admin", 1), ("developer", 1)]).await;
}

// ---------------------------------------------------------------------------------------------------------------
// 6. A binding before its project
// ---------------------------------------------------------------------------------------------------------------

/// A binding for a project that does not exist says so (after the operator's 10 s grace for a project applied along
/// with it), and takes effect by itself once the project is created.
#[tokio::test]
async fn a_binding_waits_for_its_project() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let p = unique("e2e-acc-later");
    let dev = User::new("dev", &[]);
    let early = unique("e2e-acc-early");
    t.binding(&early, &p, "developer", json!([dev.subject()]));
    let created = Instant::now();
    let b = t.wait_binding(&early, "False", "ProjectNotFound").await;
    assert_eq!(b.status.and_then(|s| s.role_binding), None);
    // Not before the grace: a project applied together with its bindings must not make them report a passing state.
    assert!(created.elapsed() >= Duration::from_secs(9), "reported after {:?}", created.elapsed());

    t.workspace(&ws, json!({}));
    t.project(&p, &ws);
    t.wait_project_ready(&p).await;
    t.wait_bound(&early, "edit").await;
    dev.wait_can(&["create", "configmaps", "-n", &p], true, RBAC_TIMEOUT).await;
    assert_ok(&dev.create(&config_map("early", &p, "1")), "developer creates a ConfigMap");
}

// ---------------------------------------------------------------------------------------------------------------
// 7. No escalation from inside a project (issue 17): the tenant admission policies
// ---------------------------------------------------------------------------------------------------------------

/// The kinds that run pods, with the API group kubectl names them by.
const POD_RUNNERS: &[&str] =
    &["Pod", "Deployment", "StatefulSet", "ReplicaSet", "DaemonSet", "ReplicationController", "Job", "CronJob"];

/// A Pod, or a workload whose pod template runs as `service_account` (`None`: the field is left out, so `default`).
/// Workloads start no pod: no replicas, suspended jobs (and this cluster has no node for a DaemonSet's).
fn workload(kind: &str, name: &str, ns: &str, service_account: Option<&str>) -> Value {
    let mut pod = json!({"containers": [{"name": "main", "image": "busybox"}]});
    if let Some(sa) = service_account {
        pod["serviceAccountName"] = json!(sa);
    }
    let labels = json!({"app": name});
    let template = json!({"metadata": {"labels": labels}, "spec": pod});
    let mut job_pod = pod.clone();
    job_pod["restartPolicy"] = json!("Never");
    let job = json!({"suspend": true, "template": {"spec": job_pod}});
    let (api_version, spec) = match kind {
        "Pod" => ("v1", pod),
        "ReplicationController" => ("v1", json!({"replicas": 0, "selector": labels, "template": template})),
        "Deployment" | "ReplicaSet" => {
            ("apps/v1", json!({"replicas": 0, "selector": {"matchLabels": labels}, "template": template}))
        }
        "StatefulSet" => (
            "apps/v1",
            json!({"replicas": 0, "serviceName": name, "selector": {"matchLabels": labels}, "template": template}),
        ),
        "DaemonSet" => ("apps/v1", json!({"selector": {"matchLabels": labels}, "template": template})),
        "Job" => ("batch/v1", job),
        "CronJob" => ("batch/v1", json!({"schedule": "0 0 1 1 *", "suspend": true, "jobTemplate": {"spec": job}})),
        other => panic!("not a pod runner: {other}"),
    };
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A long-lived token Secret for the ServiceAccount `service_account`.
fn token_secret(name: &str, ns: &str, service_account: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
        "metadata": {"name": name, "namespace": ns,
                     "annotations": {"kubernetes.io/service-account.name": service_account}},
    })
}

fn network_policy(name: &str, ns: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// Running a pod as a ServiceAccount, or minting a token for one, needs `impersonate` on it: a contributor runs
/// plain pods (as `default`) but never as the runner, through no kind of workload; a developer does.
#[tokio::test]
async fn a_contributor_never_runs_as_or_mints_tokens_for_the_runner() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let a = unique("e2e-acc-a");
    t.workspace(&ws, json!({}));
    t.project(&a, &ws);
    let contributors = unique("e2e-acc-contributors");
    let contrib = User::new("contrib", &[&contributors]);
    let dev = User::new("dev", &[]);
    let (contrib_binding, dev_binding) = (unique("e2e-acc-contrib"), unique("e2e-acc-dev"));
    t.binding(&contrib_binding, &a, "contributor", json!([{"kind": "Group", "name": contributors}]));
    t.binding(&dev_binding, &a, "developer", json!([dev.subject()]));
    t.wait_project_ready(&a).await;
    t.wait_bound(&contrib_binding, "zenml-project-contributor").await;
    t.wait_bound(&dev_binding, "edit").await;
    contrib.wait_can(&["create", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    dev.wait_can(&["create", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    const RULE: &str = "rule: running a pod as a ServiceAccount, or minting a token for one, needs impersonate on it";

    // The contributor role may impersonate `default` only; the developer's `edit` every ServiceAccount.
    assert!(contrib.can(&["impersonate", "serviceaccount/default", "-n", &a]));
    assert!(!contrib.can(&["impersonate", "serviceaccount/zenml-runner", "-n", &a]));
    assert!(dev.can(&["impersonate", "serviceaccount/zenml-runner", "-n", &a]));

    // As the runner: refused for the contributor, whatever runs the pod (a ReplicationController it may not create
    // at all), and allowed for the developer.
    for kind in POD_RUNNERS {
        let name = unique(&format!("as-runner-{kind}"));
        let obj = workload(kind, &name, &a, Some("zenml-runner"));
        if *kind == "ReplicationController" {
            assert_forbidden(&contrib.create(&obj), "contributor creates a ReplicationController", None);
        } else {
            assert_refused(
                &contrib.create(&obj),
                &format!("contributor runs a {kind} as the runner"),
                IMPERSONATION_POLICY,
                RULE,
            );
        }
        assert_ok(&dev.create(&obj), &format!("developer runs a {kind} as the runner"));
    }
    // As `default`, named or implied: allowed for the contributor.
    for (kind, sa) in [("Pod", None), ("Pod", Some("default")), ("Deployment", None), ("Job", Some("default"))] {
        let obj = workload(kind, &unique(&format!("as-default-{kind}")), &a, sa);
        assert_ok(&contrib.create(&obj), &format!("contributor runs a {kind} as {sa:?}"));
    }

    // A token Secret for the runner: refused (by this rule, and by the one-door rule for every long-lived token).
    let out = contrib.create(&token_secret(&unique("runner-token"), &a, "zenml-runner"));
    assert_forbidden(&out, "contributor creates a token Secret for the runner", None);
    assert!(
        out.stderr.contains(IMPERSONATION_POLICY) || out.stderr.contains(ONE_DOOR_POLICY),
        "a token Secret should be refused by a tenant policy: {}",
        out.stderr
    );
    assert_forbidden(
        &contrib.run(&["create", "token", "zenml-runner", "-n", &a]),
        "contributor requests a token",
        None,
    );

    // Someone allowed to request tokens and create ReplicationControllers, but not to impersonate: the policy alone
    // refuses them (a custom role, granted by a cluster admin).
    let minter = User::new("minter", &[]);
    let role = unique("e2e-acc-minter");
    let rules = json!([
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["replicationcontrollers"], "verbs": ["create"]},
    ]);
    let grant = json!([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": role, "namespace": a}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": role, "namespace": a},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": minter.name}]},
    ]);
    for obj in grant.as_array().unwrap() {
        server_side_apply(obj);
    }
    minter.wait_can(&["create", "serviceaccounts", "--subresource=token", "-n", &a], true, RBAC_TIMEOUT).await;
    assert_refused(
        &minter.run(&["create", "token", "zenml-runner", "-n", &a]),
        "a token request without impersonate",
        IMPERSONATION_POLICY,
        RULE,
    );
    let rc = workload("ReplicationController", &unique("rc"), &a, Some("zenml-runner"));
    assert_refused(&minter.create(&rc), "a ReplicationController as the runner", IMPERSONATION_POLICY, RULE);
    assert_ok(&dev.run(&["create", "token", "zenml-runner", "-n", &a]), "developer requests a short-lived token");

    // The runner is never `default`, which every contributor runs as.
    let mut p = project(&unique("e2e-acc-default-runner"), &ws);
    p["spec"]["runner"] = json!({"serviceAccountName": "default"});
    let p = t.tracked(p);
    let out = run_stdin(kubectl().args(["create", "-f", "-"]), &p.to_string());
    assert!(!out.success(), "a Project whose runner is default was admitted");
    // The CRD's own rule refuses it before any admission policy is asked; the policy stands behind it for a CRD
    // installed without the rule.
    assert!(
        (out.stderr.contains(&format!("ValidatingAdmissionPolicy '{RUNNER_POLICY}'"))
            || out.stderr.contains("spec.runner.serviceAccountName: Forbidden"))
            && out.stderr.contains("runner.serviceAccountName may not be default"),
        "{}",
        out.stderr
    );
}

/// A Ready project of a new workspace with a bound project admin (`padmin`) and developer (`dev`); returns the
/// project, the two users and the developer's ProjectRoleBinding.
async fn admin_and_developer(t: &mut Test) -> (String, User, User, String) {
    let ws = unique("e2e-acc-ws");
    let a = unique("e2e-acc-a");
    t.workspace(&ws, json!({}));
    t.project(&a, &ws);
    let project_admin = User::new("padmin", &[]);
    let dev = User::new("dev", &[]);
    let (admin_binding, dev_binding) = (unique("e2e-acc-admin"), unique("e2e-acc-dev"));
    t.binding(&admin_binding, &a, "admin", json!([project_admin.subject()]));
    t.binding(&dev_binding, &a, "developer", json!([dev.subject()]));
    t.wait_project_ready(&a).await;
    t.wait_bound(&admin_binding, "admin").await;
    t.wait_bound(&dev_binding, "edit").await;
    (a, project_admin, dev, dev_binding)
}

/// Access to a project goes through ProjectRoleBindings only, so revoking one sticks: a project admin can create
/// neither a RoleBinding of its own (to `admin`, or to the delegation Role) nor a long-lived token; the operator still
/// makes its RoleBindings, and cluster admins still may.
#[tokio::test]
async fn only_the_operator_grants_access_in_a_project() {
    let mut t = Test::new().await;
    let (a, project_admin, dev, _) = admin_and_developer(&mut t).await;
    project_admin.wait_can(&["create", "rolebindings", "-n", &a], true, RBAC_TIMEOUT).await;
    dev.wait_can(&["create", "secrets", "-n", &a], true, RBAC_TIMEOUT).await;
    const RULE: &str = "rule: in project namespaces access is granted through ProjectRoleBindings only";

    let accomplice = User::new("accomplice", &[]);
    let user_flag = format!("--user={}", accomplice.name);
    let self_flag = format!("--user={}", project_admin.name);
    assert_refused(
        &project_admin.run(&["create", "rolebinding", "side-admin", "--clusterrole=admin", &user_flag, "-n", &a]),
        "project admin binds admin for someone else",
        ONE_DOOR_POLICY,
        RULE,
    );
    assert_refused(
        &project_admin.run(&[
            "create",
            "rolebinding",
            "keep-manage",
            "--role=zenml-project-admin",
            &self_flag,
            "-n",
            &a,
        ]),
        "project admin binds the delegation Role to itself",
        ONE_DOOR_POLICY,
        RULE,
    );
    assert!(t.role_binding(&a, "side-admin").await.is_none() && t.role_binding(&a, "keep-manage").await.is_none());
    assert!(!accomplice.can(&["get", "pods", "-n", &a]));

    // Long-lived tokens: refused even for a developer, who may impersonate every ServiceAccount; short-lived ones
    // (TokenRequest) remain.
    assert_refused(
        &dev.create(&token_secret(&unique("forever"), &a, "default")),
        "developer creates a long-lived token Secret",
        ONE_DOOR_POLICY,
        "rule: ServiceAccount tokens that never expire outlive every revocation",
    );
    assert_ok(&dev.create(&config_map("plain", &a, "1")), "developer creates a ConfigMap");
    let opaque = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "opaque", "namespace": a},
                        "stringData": {"password": "x"}});
    assert_ok(&dev.create(&opaque), "developer creates an Opaque Secret");

    // The operator still makes the RoleBindings of new ProjectRoleBindings...
    let viewer = User::new("viewer", &[]);
    let view_binding = unique("e2e-acc-view");
    t.binding(&view_binding, &a, "viewer", json!([viewer.subject()]));
    t.wait_bound(&view_binding, "view").await;
    viewer.wait_can(&["list", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    // ... and cluster admins (system:masters) may still bind by hand.
    let by_admin = unique("by-cluster-admin");
    assert_ok(
        &run(kubectl().args(["create", "rolebinding", &by_admin, "--clusterrole=view", &user_flag, "-n", &a])),
        "a cluster admin creates a RoleBinding",
    );
    assert_ok(&run(kubectl().args(["delete", "rolebinding", &by_admin, "-n", &a])), "a cluster admin deletes it");
}

/// System and platform namespaces can never be Projects, not even for the admin of a workspace; the refusal says
/// how a cluster admin changes the list.
#[tokio::test]
async fn protected_namespaces_can_never_be_projects() {
    let mut t = Test::new().await;
    let base = t.self_service();
    let ws = unique("e2e-acc-ws");
    let ws_admins = unique("e2e-acc-ws-admins");
    t.workspace(&ws, json!({"members": [{"role": "admin", "subjects": [{"kind": "Group", "name": ws_admins}]}]}));
    let ws_admin = User::new("wsadmin", &[&base, &ws_admins]);
    // It creates projects in its workspace...
    let allowed = t.tracked(project(&unique("e2e-acc-p"), &ws));
    ws_admin.wait_create(&allowed).await;
    // ... but not under a protected name, nor a name under a protected prefix.
    for name in ["argocd", "monitoring", "zenml-system"] {
        let obj = t.tracked(project(name, &ws));
        let out = ws_admin.create(&obj);
        assert_refused(
            &out,
            &format!("workspace admin creates Project {name}"),
            PROTECTED_POLICY,
            "rule: system and platform namespaces can never be Projects",
        );
        assert!(out.stderr.contains("admissionPolicies.protectedNamespaces"), "names the chart value: {}", out.stderr);
    }
    // `default` and `kube-*` are refused by the schema already, for everyone.
    let obj = t.tracked(project("kube-e2e-squat", &ws));
    let out = ws_admin.create(&obj);
    assert!(!out.success() && out.stderr.contains("protected namespaces"), "kube-e2e-squat: {}", out.stderr);
}

/// Members cannot open the network wall from inside: an ingress rule admits only this namespace's pods or (unless
/// the namespace is isolated per project) the namespaces of its workspace; narrowing policies pass.
#[tokio::test]
async fn members_cannot_open_the_network_wall_from_inside() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let a = unique("e2e-acc-a");
    // Isolated per workspace: the namespaces of the workspace are inside the wall.
    t.workspace(&ws, json!({"projectDefaults": {"networkIsolation": "Workspace"}}));
    t.project(&a, &ws);
    let dev = User::new("dev", &[]);
    let dev_binding = unique("e2e-acc-dev");
    t.binding(&dev_binding, &a, "developer", json!([dev.subject()]));
    t.wait_project_ready(&a).await;
    t.wait_bound(&dev_binding, "edit").await;
    dev.wait_can(&["create", "networkpolicies", "-n", &a], true, RBAC_TIMEOUT).await;
    const RULE: &str = "rule: members cannot open the network wall from inside";

    let all_pods = json!({});
    let open = [
        ("allow-all", json!({"podSelector": all_pods, "policyTypes": ["Ingress"], "ingress": [{}]})),
        ("ports-only", json!({"podSelector": all_pods, "ingress": [{"ports": [{"port": 8080}]}]})),
        ("empty-from", json!({"podSelector": all_pods, "ingress": [{"from": []}]})),
        ("ip-block", json!({"podSelector": all_pods, "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]})),
        ("all-namespaces", json!({"podSelector": all_pods, "ingress": [{"from": [{"namespaceSelector": {}}]}]})),
        (
            "other-workspace",
            json!({"podSelector": all_pods, "ingress": [{"from": [
                {"podSelector": {}},
                {"namespaceSelector": {"matchLabels": {"zenml.io/workspace": "someone-else"}}},
            ]}]}),
        ),
        (
            "expressions-only",
            json!({"podSelector": all_pods, "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [
                {"key": "zenml.io/workspace", "operator": "Exists"}]}}]}]}),
        ),
    ];
    for (name, spec) in &open {
        assert_refused(
            &dev.create(&network_policy(name, &a, spec.clone())),
            &format!("developer creates NetworkPolicy {name}"),
            WALLS_POLICY,
            RULE,
        );
    }
    let same_workspace = json!({"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"zenml.io/workspace": ws}}, "podSelector": {"matchLabels": {"app": "ui"}}},
    ]}]});
    let narrowing = [
        (
            "same-namespace",
            json!({"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [
            {"podSelector": {"matchLabels": {"app": "api"}}}]}]}),
        ),
        ("deny-all", json!({"podSelector": {}, "policyTypes": ["Ingress"]})),
        (
            "this-namespace-by-name",
            json!({"podSelector": {}, "ingress": [{"ports": [{"port": 80}], "from": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": a}}}]}]}),
        ),
        ("same-workspace", same_workspace.clone()),
        ("egress-only", json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]})),
    ];
    for (name, spec) in &narrowing {
        assert_ok(&dev.create(&network_policy(name, &a, spec.clone())), &format!("developer creates {name}"));
    }
    // Changing a narrowing policy into an open one is refused too.
    let mut widened = network_policy("same-namespace", &a, json!({"podSelector": {}, "ingress": [{}]}));
    let current = e2e::kubectl_json(&["get", "networkpolicy", "same-namespace", "-n", &a]);
    widened["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    assert_refused(&dev.replace(&widened), "developer widens a NetworkPolicy", WALLS_POLICY, RULE);

    // A namespace isolated per project admits no other namespace; one without isolation has no wall to hold. The
    // operator labels the namespace with the project's isolation, which only it and cluster admins can change.
    let isolate = |value: &'static str| {
        let a = a.clone();
        async move {
            let patch = json!({"spec": {"networkIsolation": value}}).to_string();
            let out = run(kubectl().args(["patch", "project", &a, "--type=merge", "-p", &patch]));
            assert!(out.success(), "patch project {a}: {}", out.stderr);
            e2e::eventually(RBAC_TIMEOUT, &format!("namespace {a} labelled {value}"), || async {
                let ns = e2e::kubectl_json(&["get", "namespace", &a]);
                let label = ns["metadata"]["labels"]["zenml.io/network-isolation"].as_str().map(str::to_owned);
                if label.as_deref() == Some(value) { Ok(()) } else { Err(format!("{label:?}")) }
            })
            .await
        }
    };
    isolate("Project").await;
    assert_refused(
        &dev.create(&network_policy("workspace-wide", &a, same_workspace)),
        "developer admits the workspace into a project-isolated namespace",
        WALLS_POLICY,
        RULE,
    );
    isolate("None").await;
    assert_ok(
        &dev.create(&network_policy("allow-all", &a, open[0].1.clone())),
        "developer admits everyone where there is no wall",
    );
}

/// What the operator made in a project namespace cannot be changed or deleted by a member, not even for the second
/// it would take the operator to restore it; the operator itself, and the control plane deleting a Project, can.
#[tokio::test]
async fn tenants_cannot_change_or_delete_what_the_operator_made() {
    let mut t = Test::new().await;
    let (a, project_admin, dev, dev_binding) = admin_and_developer(&mut t).await;
    project_admin.wait_can(&["delete", "rolebindings", "-n", &a], true, RBAC_TIMEOUT).await;
    dev.wait_can(&["delete", "serviceaccounts", "-n", &a], true, RBAC_TIMEOUT).await;
    const RULE: &str = "rule: objects labelled app.kubernetes.io/managed-by=zenml-operator belong to the operator";

    let uid = |kind: &str, name: &str| {
        e2e::kubectl_json(&["get", kind, name, "-n", &a])["metadata"]["uid"].as_str().unwrap_or_default().to_owned()
    };
    let dev_rb = format!("zenml-prb-{dev_binding}");
    let managed = [
        ("serviceaccount", "zenml-runner"),
        ("networkpolicy", "zenml-project-isolation"),
        ("rolebinding", "zenml-runner"),
        ("rolebinding", dev_rb.as_str()),
        ("role", "zenml-project-admin"),
    ];
    let before: Vec<String> = managed.iter().map(|(kind, name)| uid(kind, name)).collect();
    for (kind, name) in &managed {
        assert_refused(
            &project_admin.run(&["delete", kind, name, "-n", &a, "--wait=false"]),
            &format!("project admin deletes {kind} {name}"),
            MANAGED_POLICY,
            RULE,
        );
        // A change to a RoleBinding is also one the one-door rule refuses: either policy may answer first.
        let out = project_admin.run(&["label", kind, name, "-n", &a, "mine=yes"]);
        let what = format!("project admin labels {kind} {name}");
        if *kind == "rolebinding" && out.stderr.contains(ONE_DOOR_POLICY) {
            assert_forbidden(&out, &what, Some(ONE_DOOR_POLICY));
        } else {
            assert_refused(&out, &what, MANAGED_POLICY, RULE);
        }
    }
    for (kind, name) in [("serviceaccount", "zenml-runner"), ("networkpolicy", "zenml-project-isolation")] {
        assert_refused(
            &dev.run(&["delete", kind, name, "-n", &a, "--wait=false"]),
            &format!("developer deletes {kind} {name}"),
            MANAGED_POLICY,
            RULE,
        );
    }
    let out = dev.run(&["delete", "serviceaccount", "zenml-runner", "-n", &a]);
    assert!(out.stderr.contains(&format!("change the spec of Project {a}")), "says what to do instead: {}", out.stderr);
    // Nobody else makes objects that look like the operator's.
    let fake = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "fake", "namespace": a,
                      "labels": {"app.kubernetes.io/managed-by": "zenml-operator"}}});
    assert_refused(&dev.create(&fake), "developer creates an object labelled as the operator's", MANAGED_POLICY, RULE);
    let after: Vec<String> = managed.iter().map(|(kind, name)| uid(kind, name)).collect();
    assert_eq!(before, after, "the operator's objects were never deleted (and restored)");

    // The operator still changes them when the spec changes...
    let patch = json!({"spec": {"runner": {"annotations": {"example.com/role": "reader"}}}});
    assert_ok(&run(kubectl().args(["patch", PROJECTS, &a, "--type=merge", "-p", &patch.to_string()])), "patch");
    eventually(TIMEOUT, "the runner annotated by the operator", || async {
        let sa = e2e::kubectl_json(&["get", "serviceaccount", "zenml-runner", "-n", &a]);
        (sa["metadata"]["annotations"]["example.com/role"] == "reader").then_some(())
    })
    .await;
    // ... and a deleted Project (deletionPolicy Delete) takes them with its namespace.
    assert_ok(&run(kubectl().args(["delete", PROJECTS, &a, "--wait=false"])), "delete the project");
    wait_gone(PROJECTS, std::slice::from_ref(&a), DELETE_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    wait_gone("namespace", std::slice::from_ref(&a), DELETE_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------------------------
// 8. Workspace policies (issue 22): allow-lists and node placement, with the Workspace as the policy's parameter
// ---------------------------------------------------------------------------------------------------------------

/// `obj` (a [`workload`]) with `field` of its pod spec set to `value`.
fn with_pod_field(mut obj: Value, field: &str, value: Value) -> Value {
    let spec = match obj["kind"].as_str().unwrap() {
        "Pod" => &mut obj["spec"],
        "CronJob" => &mut obj["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        _ => &mut obj["spec"]["template"]["spec"],
    };
    spec[field] = value;
    obj
}

fn claim(name: &str, ns: &str, class: Option<&str>) -> Value {
    let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if let Some(class) = class {
        spec["storageClassName"] = json!(class);
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn ingress(name: &str, ns: &str, class: Option<&str>) -> Value {
    let mut spec = json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}});
    if let Some(class) = class {
        spec["ingressClassName"] = json!(class);
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// A developer's Ready project in a new workspace whose `spec.policies` are `policies`; returns the workspace, the
/// project and the developer.
async fn developer_under(t: &mut Test, policies: Value) -> (String, String, User) {
    let ws = unique("e2e-acc-ws");
    let a = unique("e2e-acc-a");
    t.workspace(&ws, json!({"policies": policies.clone()}));
    t.project(&a, &ws);
    let dev = User::new("dev", &[]);
    let dev_binding = unique("e2e-acc-dev");
    t.binding(&dev_binding, &a, "developer", json!([dev.subject()]));
    t.wait_project_ready(&a).await;
    t.wait_bound(&dev_binding, "edit").await;
    dev.wait_can(&["create", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    if policies.as_object().is_some_and(|p| !p.is_empty()) {
        // The operator binds the policy to the workspace (PoliciesReady), and the API server picks the binding up.
        let api: Api<Workspace> = Api::all(t.client.clone());
        eventually(TIMEOUT, &format!("workspace {ws} PoliciesReady"), || async {
            let w = api.get(&ws).await.map_err(|e| e.to_string())?;
            let conds = w.status.map(|s| s.conditions).unwrap_or_default();
            let ready = conds.iter().any(|c| c.type_ == "PoliciesReady" && c.status == "True");
            if ready { Ok(()) } else { Err(describe_conditions(&conds)) }
        })
        .await;
        let probe = workload("Pod", "probe", &a, Some("default"));
        eventually(RBAC_TIMEOUT, "the workspace policy to refuse a pod", || async {
            let out = run_stdin(dev.kubectl().args(["create", "--dry-run=server", "-f", "-"]), &probe.to_string());
            out.stderr.contains(WORKSPACE_POLICY).then_some(())
        })
        .await;
    }
    (ws, a, dev)
}

/// A workspace's allow-lists hold for a developer of its projects: StorageClasses of claims, IngressClasses,
/// PriorityClasses and RuntimeClasses of pods and of every workload's pod template, and image registries for
/// containers, init containers and ephemeral containers. The refusal names the rule, the allowed values and the
/// workspace; what is listed passes; an update keeps what was there; another workspace's projects, and cluster
/// admins, are not restrained by it.
/// The operator watches the policy bindings it made: one deleted by hand (a cluster admin's slip, or someone
/// loosening a workspace's rules) is made again within moments, not at the next resync, and the rules hold again.
#[tokio::test]
async fn a_workspace_policy_binding_deleted_by_hand_is_made_again_at_once() {
    let mut t = Test::new().await;
    let (ws, a, dev) = developer_under(&mut t, json!({"imageRegistries": ["registry.example.com/"]})).await;
    let binding = format!("{WORKSPACE_POLICY}-{ws}");
    let uid = |name: &str| {
        let out =
            run(kubectl().args(["get", "validatingadmissionpolicybinding", name, "-o", "jsonpath={.metadata.uid}"]));
        out.success().then(|| out.stdout.trim().to_owned()).filter(|u| !u.is_empty())
    };
    let before = uid(&binding).expect("the operator made the workspace's policy binding");
    e2e::run_ok(kubectl().args(["delete", "validatingadmissionpolicybinding", &binding, "--wait=true"]));
    eventually(TIMEOUT, &format!("{binding} made again"), || async {
        uid(&binding).filter(|u| *u != before).ok_or("not yet")
    })
    .await;
    let pod = workload("Pod", &unique("wl"), &a, Some("default"));
    eventually(RBAC_TIMEOUT, "the workspace policy to refuse a pod again", || async {
        let out = run_stdin(dev.kubectl().args(["create", "--dry-run=server", "-f", "-"]), &pod.to_string());
        out.stderr.contains(WORKSPACE_POLICY).then_some(())
    })
    .await;
}

#[tokio::test]
async fn workspace_allow_lists_hold_in_its_projects() {
    let mut t = Test::new().await;
    let policies = json!({
        "storageClasses": ["fast"],
        "ingressClasses": ["internal"],
        "priorityClasses": ["batch-low"],
        "runtimeClasses": ["gvisor"],
        "imageRegistries": ["registry.example.com/", "docker.io/library/"],
    });
    let (ws, a, dev) = developer_under(&mut t, policies).await;
    let ok_image = "registry.example.com/team/trainer:1";
    let allowed = |rule: &str, values: &str| format!("rule: workspace {ws} allows only the {rule} {values}");
    let pod = |kind: &str, image: &str| {
        with_pod_field(workload(kind, &unique("wl"), &a, None), "containers", json!([{"name": "main", "image": image}]))
    };

    // Images: every container kind, of a Pod and of every workload.
    let images =
        format!("rule: workspace {ws} allows only images starting with registry.example.com/, docker.io/library/");
    for kind in POD_RUNNERS {
        assert_refused(&dev.create(&pod(kind, "busybox")), &format!("a {kind} of busybox"), WORKSPACE_POLICY, &images);
        assert_refused(
            &dev.create(&pod(kind, "registry.example.com.evil.io/x")),
            &format!("a {kind} from a longer registry name"),
            WORKSPACE_POLICY,
            &images,
        );
        assert_ok(&dev.create(&pod(kind, ok_image)), &format!("a {kind} from an allowed registry"));
    }
    let init =
        with_pod_field(pod("Pod", ok_image), "initContainers", json!([{"name": "init", "image": "quay.io/x/y"}]));
    let out = dev.create(&init);
    assert_refused(&out, "an init container from quay.io", WORKSPACE_POLICY, &images);
    assert!(out.stderr.contains(&format!("ask a cluster admin to change Workspace {ws}")), "{}", out.stderr);
    assert!(out.stderr.contains("with image quay.io/x/y"), "the refusal names the image: {}", out.stderr);
    assert_ok(&dev.create(&pod("Pod", "docker.io/library/busybox")), "a Docker Hub image written in full");

    // Ephemeral containers (kubectl debug), for someone a cluster admin lets add them.
    let running = pod("Pod", ok_image);
    let name = running["metadata"]["name"].as_str().unwrap().to_owned();
    assert_ok(&dev.create(&running), "a pod to debug");
    let role = unique("e2e-acc-debug");
    for obj in [
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": role, "namespace": a},
               "rules": [{"apiGroups": [""], "resources": ["pods/ephemeralcontainers"], "verbs": ["get", "patch", "update"]}]}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": role, "namespace": a},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": dev.name}]}),
    ] {
        server_side_apply(&obj);
    }
    dev.wait_can(&["patch", "pods", "--subresource=ephemeralcontainers", "-n", &a], true, RBAC_TIMEOUT).await;
    let debug = |image: &str| {
        let patch = json!({"spec": {"ephemeralContainers": [{"name": "debug", "image": image}]}}).to_string();
        dev.run(&[
            "patch",
            "pod",
            &name,
            "-n",
            &a,
            "--subresource=ephemeralcontainers",
            "--type=strategic",
            "-p",
            &patch,
        ])
    };
    assert_refused(&debug("busybox"), "an ephemeral container of busybox", WORKSPACE_POLICY, &images);
    assert_ok(&debug("docker.io/library/busybox"), "an ephemeral container from an allowed registry");

    // Classes of pod templates (workloads: a Pod would first need the class to exist).
    for (field, rule, good, bad) in [
        ("priorityClassName", allowed("PriorityClasses", "batch-low"), "batch-low", "system-cluster-critical"),
        ("runtimeClassName", allowed("RuntimeClasses", "gvisor"), "gvisor", "runc"),
    ] {
        for kind in ["Deployment", "Job", "CronJob"] {
            let obj = with_pod_field(pod(kind, ok_image), field, json!(bad));
            assert_refused(&dev.create(&obj), &format!("a {kind} with {field} {bad}"), WORKSPACE_POLICY, &rule);
            let obj = with_pod_field(pod(kind, ok_image), field, json!(good));
            assert_ok(&dev.create(&obj), &format!("a {kind} with {field} {good}"));
        }
    }

    // Claims and ingresses.
    let storage = allowed("StorageClasses", "fast");
    assert_refused(
        &dev.create(&claim(&unique("pvc"), &a, Some("slow"))),
        "a claim of class slow",
        WORKSPACE_POLICY,
        &storage,
    );
    assert_ok(&dev.create(&claim(&unique("pvc"), &a, Some("fast"))), "a claim of class fast");
    assert_ok(&dev.create(&claim(&unique("pvc"), &a, None)), "a claim naming no class (this cluster has no default)");
    let ingresses = allowed("IngressClasses", "internal");
    assert_refused(
        &dev.create(&ingress(&unique("ing"), &a, Some("public"))),
        "an ingress of class public",
        WORKSPACE_POLICY,
        &ingresses,
    );
    assert_refused(
        &dev.create(&ingress(&unique("ing"), &a, None)),
        "an ingress of no class",
        WORKSPACE_POLICY,
        &ingresses,
    );
    assert_ok(&dev.create(&ingress(&unique("ing"), &a, Some("internal"))), "an ingress of class internal");

    // An update keeps what was there (a cluster admin's Deployment of busybox scales), but brings nothing new in.
    let legacy = pod("Deployment", "busybox");
    let legacy_name = legacy["metadata"]["name"].as_str().unwrap().to_owned();
    assert_ok(&run_stdin(kubectl().args(["create", "-f", "-"]), &legacy.to_string()), "a cluster admin's busybox");
    assert_ok(
        &dev.run(&["scale", "deployment", &legacy_name, "-n", &a, "--replicas=0", "--current-replicas=0"]),
        "scale it",
    );
    assert_ok(&dev.run(&["label", "deployment", &legacy_name, "-n", &a, "tier=legacy"]), "label it");
    assert_refused(
        &dev.run(&["set", "image", &format!("deployment/{legacy_name}"), "main=alpine", "-n", &a]),
        "a new image not allowed",
        WORKSPACE_POLICY,
        &images,
    );

    // Another workspace without policies: the same objects pass there.
    let (_, b, other_dev) = developer_under(&mut t, json!({})).await;
    let free = with_pod_field(workload("Deployment", &unique("free"), &b, None), "priorityClassName", json!("x"));
    assert_ok(&other_dev.create(&free), "busybox with any priority class in a workspace without policies");
    assert_ok(&other_dev.create(&claim(&unique("pvc"), &b, Some("slow"))), "any claim there");
}

/// A project narrows its workspace's allow-lists for itself (`spec.policies` on the Project): a value must be allowed
/// by both, the refusal names the project's rule; its sibling keeps the workspace's lists; a project listing what
/// the workspace does not allow reports it (`PoliciesReady=False`, `NotAllowedByWorkspace`) and gains nothing.
#[tokio::test]
async fn a_project_narrows_its_workspaces_allow_lists() {
    let mut t = Test::new().await;
    let policies = json!({"storageClasses": ["fast", "slow"], "imageRegistries": ["registry.example.com/"]});
    let (ws, a, dev) = developer_under(&mut t, policies).await;
    let narrowed = json!({"storageClasses": ["fast"], "imageRegistries": ["registry.example.com/ml/"],
                          "runtimeClasses": ["gvisor"]});
    let mut p = project(&a, &ws);
    p["spec"]["policies"] = narrowed;
    t.apply(p);
    eventually(TIMEOUT, &format!("namespace {a} carries the project's lists"), || async {
        let ns = run(kubectl().args(["get", "namespace", &a, "-o", "jsonpath={.metadata.annotations}"]));
        ns.stdout.contains("policies.zenml.io/storage-classes").then_some(())
    })
    .await;
    let ready = t.wait_project_ready(&a).await;
    let conds = ready.status.map(|s| s.conditions).unwrap_or_default();
    assert!(
        conds.iter().any(|c| c.type_ == "PoliciesReady" && c.status == "True" && c.reason == "PoliciesNarrowed"),
        "{}",
        describe_conditions(&conds)
    );
    let own = |rule: &str, values: &str| format!("rule: project {a} allows only the {rule} {values}");
    let pod = |image: &str| {
        with_pod_field(
            workload("Pod", &unique("wl"), &a, None),
            "containers",
            json!([{"name": "main", "image": image}]),
        )
    };
    eventually(RBAC_TIMEOUT, "the project's narrowing to refuse a claim", || async {
        let out = dev.create(&claim(&unique("pvc"), &a, Some("slow")));
        out.stderr.contains(&own("StorageClasses", "fast")).then_some(())
    })
    .await;
    assert_refused(
        &dev.create(&claim(&unique("pvc"), &a, Some("slow"))),
        "a claim the workspace allows and the project does not",
        WORKSPACE_POLICY,
        &own("StorageClasses", "fast"),
    );
    assert_ok(&dev.create(&claim(&unique("pvc"), &a, Some("fast"))), "a claim both allow");
    assert_refused(
        &dev.create(&pod("registry.example.com/web/app:1")),
        "an image of the workspace's registry outside the project's prefix",
        WORKSPACE_POLICY,
        &format!("rule: project {a} allows only images starting with registry.example.com/ml/"),
    );
    assert_refused(
        &dev.create(&pod("docker.io/library/busybox")),
        "an image neither allows",
        WORKSPACE_POLICY,
        &format!("rule: workspace {ws} allows only images starting with registry.example.com/"),
    );
    assert_ok(&dev.create(&pod("registry.example.com/ml/trainer:1")), "an image within both");
    let job = with_pod_field(
        with_pod_field(
            workload("Job", &unique("wl"), &a, None),
            "containers",
            json!([{"name": "main", "image": "registry.example.com/ml/trainer:1"}]),
        ),
        "runtimeClassName",
        json!("runc"),
    );
    assert_refused(
        &dev.create(&job),
        "a runtime class only the project restricts",
        WORKSPACE_POLICY,
        &own("RuntimeClasses", "gvisor"),
    );

    // A sibling without its own lists has the workspace's.
    let b = unique("e2e-acc-b");
    t.project(&b, &ws);
    t.wait_project_ready(&b).await;
    let b_dev_binding = unique("e2e-acc-dev");
    t.binding(&b_dev_binding, &b, "developer", json!([dev.subject()]));
    dev.wait_can(&["create", "persistentvolumeclaims", "-n", &b], true, RBAC_TIMEOUT).await;
    assert_ok(&dev.create(&claim(&unique("pvc"), &b, Some("slow"))), "the sibling's claim of a workspace class");

    // Listing what the workspace does not allow is reported, and allows nothing.
    let mut p = project(&a, &ws);
    p["spec"]["policies"] = json!({"storageClasses": ["fast", "gold"]});
    t.apply(p);
    let api: Api<Project> = Api::all(t.client.clone());
    eventually(TIMEOUT, &format!("project {a} PoliciesReady=False"), || async {
        let p = api.get(&a).await.map_err(|e| e.to_string())?;
        let conds = p.status.map(|s| s.conditions).unwrap_or_default();
        let c = conds.iter().find(|c| c.type_ == "PoliciesReady").ok_or_else(|| describe_conditions(&conds))?;
        (c.status == "False" && c.reason == "NotAllowedByWorkspace" && c.message.contains("storageClasses: gold"))
            .then_some(())
            .ok_or_else(|| describe_conditions(&conds))
    })
    .await;
    eventually(RBAC_TIMEOUT, "gold refused all the same", || async {
        let out = dev.create(&claim(&unique("pvc"), &a, Some("gold")));
        out.stderr.contains(&format!("rule: workspace {ws} allows only the StorageClasses fast, slow")).then_some(())
    })
    .await;
}

/// A workspace that requires a node selector gets pods (and workloads) in its projects only with it, with the
/// required selector in the refusal; it allows only the tolerations it lists (the API server's own pass).
#[tokio::test]
async fn workspace_node_placement_is_required() {
    let mut t = Test::new().await;
    let policies = json!({
        "nodeSelector": {"zenml.io/pool": "ml", "kubernetes.io/arch": "amd64"},
        "tolerations": [{"key": "zenml.io/dedicated", "value": "ml", "effect": "NoSchedule"}],
    });
    let (ws, a, dev) = developer_under(&mut t, policies).await;
    let placed = json!({"zenml.io/pool": "ml", "kubernetes.io/arch": "amd64", "disk": "ssd"});
    // The labels are named in no fixed order (CEL in 1.34 cannot sort a map's keys).
    let rule = format!("rule: workspace {ws} runs its pods only on nodes labelled ");
    for kind in POD_RUNNERS {
        let bare = workload(kind, &unique("bare"), &a, None);
        let out = dev.create(&bare);
        assert_refused(&out, &format!("a {kind} without the node selector"), WORKSPACE_POLICY, &rule);
        for label in ["zenml.io/pool=ml", "kubernetes.io/arch=amd64"] {
            assert!(out.stderr.contains(label), "the refusal names {label}: {}", out.stderr);
        }
        let half =
            with_pod_field(workload(kind, &unique("half"), &a, None), "nodeSelector", json!({"zenml.io/pool": "ml"}));
        assert_refused(&dev.create(&half), &format!("a {kind} with half of it"), WORKSPACE_POLICY, &rule);
        let wrong = with_pod_field(
            workload(kind, &unique("wrong"), &a, None),
            "nodeSelector",
            json!({"zenml.io/pool": "web", "kubernetes.io/arch": "amd64"}),
        );
        assert_refused(&dev.create(&wrong), &format!("a {kind} on another pool"), WORKSPACE_POLICY, &rule);
        let ok = with_pod_field(workload(kind, &unique("placed"), &a, None), "nodeSelector", placed.clone());
        assert_ok(&dev.create(&ok), &format!("a {kind} with the node selector (and more)"));
    }

    let tolerations = format!("rule: workspace {ws} allows only the tolerations zenml.io/dedicated=ml:NoSchedule");
    let tolerating = |tolerations: Value| {
        let pod = with_pod_field(workload("Pod", &unique("tol"), &a, None), "nodeSelector", placed.clone());
        with_pod_field(pod, "tolerations", tolerations)
    };
    for (what, bad) in [
        ("every taint", json!([{"operator": "Exists"}])),
        ("any value of the key", json!([{"key": "zenml.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}])),
        ("every effect", json!([{"key": "zenml.io/dedicated", "value": "ml"}])),
        ("another pool's taint", json!([{"key": "zenml.io/dedicated", "value": "web", "effect": "NoSchedule"}])),
        ("control-plane nodes", json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}])),
    ] {
        assert_refused(
            &dev.create(&tolerating(bad)),
            &format!("a pod tolerating {what}"),
            WORKSPACE_POLICY,
            &tolerations,
        );
    }
    let ok = json!([
        {"key": "zenml.io/dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ]);
    assert_ok(&dev.create(&tolerating(ok)), "a pod with the allowed toleration and a not-ready one");
    assert_ok(
        &run_stdin(kubectl().args(["create", "-f", "-"]), &workload("Pod", &unique("admin"), &a, None).to_string()),
        "a cluster admin's pod anywhere",
    );
}

// ---------------------------------------------------------------------------------------------------------------
// 9. Freeze (issue 22)
// ---------------------------------------------------------------------------------------------------------------

/// Waits until the project's `Frozen` condition is `status` with `reason`, and its namespace carries the freeze
/// label exactly when frozen; then until the freeze policy refuses (or lets through) `user`'s dry-run pod.
async fn wait_frozen(t: &Test, project: &str, user: &User, frozen: bool, reason: &str) {
    let api: Api<Project> = Api::all(t.client.clone());
    let status = if frozen { "True" } else { "False" };
    eventually(TIMEOUT, &format!("project {project} Frozen={status} {reason}"), || async {
        let p = api.get(project).await.map_err(|e| e.to_string())?;
        let conds = p.status.map(|s| s.conditions).unwrap_or_default();
        let ok = conds.iter().any(|c| c.type_ == "Frozen" && c.status == status && c.reason == reason);
        if ok { Ok(()) } else { Err(describe_conditions(&conds)) }
    })
    .await;
    let label =
        run(kubectl().args(["get", "namespace", project, "-o", "jsonpath={.metadata.labels.zenml\\.io/frozen}"]));
    assert_eq!(label.stdout.trim(), if frozen { "true" } else { "" }, "namespace {project}'s freeze label");
    let probe = workload("Pod", "probe", project, None).to_string();
    eventually(
        RBAC_TIMEOUT,
        &format!("the freeze policy to {} pods", if frozen { "refuse" } else { "admit" }),
        || async {
            let out = run_stdin(user.kubectl().args(["create", "--dry-run=server", "-f", "-"]), &probe);
            (out.stderr.contains(FREEZE_POLICY) == frozen && (frozen || out.success())).then_some(())
        },
    )
    .await;
}

/// A frozen project (its own `spec.frozen`, or its workspace's) takes no new or changed pods or workloads, of any
/// kind, from its developers and admins; what exists stays, a project admin still revokes a binding, unfreezing lifts
/// it; the `Frozen` condition says which froze it.
#[tokio::test]
async fn a_frozen_project_takes_no_new_or_changed_workloads() {
    let mut t = Test::new().await;
    let (a, project_admin, dev, dev_binding) = admin_and_developer(&mut t).await;
    dev.wait_can(&["create", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    let before = workload("Deployment", &unique("before"), &a, None);
    let before_name = before["metadata"]["name"].as_str().unwrap().to_owned();
    assert_ok(&dev.create(&before), "a Deployment before the freeze");
    wait_frozen(&t, &a, &dev, false, "NotFrozen").await;

    let patch = |kind: &str, name: &str, frozen: bool| {
        let p = json!({"spec": {"frozen": frozen}}).to_string();
        assert_ok(&run(kubectl().args(["patch", kind, name, "--type=merge", "-p", &p])), &format!("freeze {name}"));
    };
    patch(PROJECTS, &a, true);
    wait_frozen(&t, &a, &dev, true, "ProjectFrozen").await;
    let rule = format!("rule: project {a} is frozen");
    for kind in POD_RUNNERS {
        let obj = workload(kind, &unique("new"), &a, None);
        assert_refused(&dev.create(&obj), &format!("a developer's new {kind}"), FREEZE_POLICY, &rule);
    }
    assert_refused(
        &project_admin.create(&workload("Pod", &unique("new"), &a, None)),
        "an admin's pod",
        FREEZE_POLICY,
        &rule,
    );
    let deployment = format!("deployment/{before_name}");
    assert_refused(&dev.run(&["label", &deployment, "-n", &a, "x=y"]), "a changed Deployment", FREEZE_POLICY, &rule);
    assert_refused(
        &dev.run(&["scale", &deployment, "-n", &a, "--replicas=2"]),
        "a scaled Deployment",
        FREEZE_POLICY,
        &rule,
    );
    assert_ok(&dev.run(&["get", &deployment, "-n", &a]), "the Deployment made before stays");
    assert_ok(&dev.create(&config_map("settings", &a, "1")), "a ConfigMap (not a workload)");
    // Access can still be revoked, by a project admin with the base right to manage bindings (self-service).
    let group = t.self_service();
    let revoker = User::new("revoker", &[&group]);
    let revoker_binding = unique("e2e-acc-revoker");
    t.binding(&revoker_binding, &a, "admin", json!([revoker.subject()]));
    t.wait_bound(&revoker_binding, "admin").await;
    eventually(RBAC_TIMEOUT, "a project admin to revoke the developer", || async {
        let out = revoker.run(&["delete", BINDINGS, &dev_binding]);
        if out.success() { Ok(()) } else { Err(out.stderr) }
    })
    .await;
    dev.wait_can(&["create", "pods", "-n", &a], false, REVOKE_TIMEOUT).await;

    patch(PROJECTS, &a, false);
    wait_frozen(&t, &a, &project_admin, false, "NotFrozen").await;
    assert_ok(&project_admin.create(&workload("Pod", &unique("after"), &a, None)), "a pod after unfreezing");

    // A frozen workspace freezes its projects.
    let api: Api<Project> = Api::all(t.client.clone());
    let ws = api.get(&a).await.expect("the project").spec.workspace;
    patch(WORKSPACES, &ws, true);
    wait_frozen(&t, &a, &project_admin, true, "WorkspaceFrozen").await;
    let out = project_admin.create(&workload("Job", &unique("new"), &a, None));
    assert_refused(&out, "a Job in a project of a frozen workspace", FREEZE_POLICY, &rule);
    patch(WORKSPACES, &ws, false);
    wait_frozen(&t, &a, &project_admin, false, "NotFrozen").await;
}

/// A project past its `spec.expiresAt` is frozen exactly as by `spec.frozen`, from the instant it expires (the operator
/// wakes itself for it; nothing else happens to the project meanwhile): its developer's new pods are refused by the
/// freeze policy, what was made before stays; `Frozen` says `Expired` and a Warning Event tells it; moving expiresAt
/// into the future unfreezes it.
#[tokio::test]
async fn an_expired_project_is_frozen_from_its_expiry_until_moved_ahead() {
    let mut t = Test::new().await;
    let (a, _project_admin, dev, _) = admin_and_developer(&mut t).await;
    dev.wait_can(&["create", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    let before = workload("Deployment", &unique("before"), &a, None);
    let before_name = before["metadata"]["name"].as_str().unwrap().to_owned();
    assert_ok(&dev.create(&before), "a Deployment before the expiry");
    let set_expiry = |at: Timestamp| {
        let p = json!({"spec": {"expiresAt": at.round(k8s_openapi::jiff::Unit::Second).unwrap().to_string()}});
        let out = run(kubectl().args(["patch", PROJECTS, &a, "--type=merge", "-p", &p.to_string()]));
        assert_ok(&out, &format!("expiresAt {at} on {a}"));
    };
    let expires = Timestamp::now().checked_add(SignedDuration::from_secs(12)).unwrap();
    set_expiry(expires);
    wait_frozen(&t, &a, &dev, false, "NotFrozen").await;
    wait_frozen(&t, &a, &dev, true, "Expired").await;
    let api: Api<Project> = Api::all(t.client.clone());
    let p = api.get(&a).await.expect("the project");
    let frozen = p.status.unwrap().conditions.into_iter().find(|c| c.type_ == "Frozen").expect("Frozen");
    assert!(
        frozen.last_transition_time.0
            >= expires
                .round(k8s_openapi::jiff::Unit::Second)
                .unwrap()
                .checked_sub(SignedDuration::from_secs(1))
                .unwrap(),
        "frozen no sooner than the expiry: {frozen:?}"
    );
    assert!(frozen.message.contains("expired at") && frozen.message.contains("prune"), "{}", frozen.message);
    let rule = format!("rule: project {a} is frozen");
    assert_refused(&dev.create(&workload("Pod", &unique("new"), &a, None)), "a developer's pod", FREEZE_POLICY, &rule);
    assert_ok(&dev.run(&["get", &format!("deployment/{before_name}"), "-n", &a]), "the Deployment made before stays");
    let selector = format!("involvedObject.name={a},reason=Expired");
    eventually(TIMEOUT, "a Warning Event Expired", || async {
        let out = run(kubectl().args(["get", "events", "-A", "--field-selector", &selector, "-o", "name"]));
        if out.stdout.trim().is_empty() { Err(out.stderr) } else { Ok(()) }
    })
    .await;

    set_expiry(Timestamp::now().checked_add(SignedDuration::from_hours(24)).unwrap());
    wait_frozen(&t, &a, &dev, false, "NotFrozen").await;
    assert_ok(&dev.create(&workload("Pod", &unique("after"), &a, None)), "a pod once the expiry moved ahead");
}

// ---------------------------------------------------------------------------------------------------------------
// 10. Owners (issue 22)
// ---------------------------------------------------------------------------------------------------------------

/// A project's owners (`spec.owners`) are its admins: admin in the namespace and managers of its bindings, for as
/// long as they are listed; `kubectl get projects` shows them.
#[tokio::test]
async fn project_owners_are_its_admins_while_listed() {
    let mut t = Test::new().await;
    let ws = unique("e2e-acc-ws");
    let a = unique("e2e-acc-a");
    t.workspace(&ws, json!({}));
    let group = t.self_service();
    let owner = User::new("owner", &[&group]);
    let mut p = project(&a, &ws);
    p["spec"]["owners"] = json!([owner.subject()]);
    t.apply(p);
    t.wait_project_ready(&a).await;
    owner.wait_can(&["delete", "pods", "-n", &a], true, RBAC_TIMEOUT).await;
    assert!(owner.can(&["create", "rolebindings", "-n", &a]), "admin in the namespace");
    let out = run(kubectl().args(["get", PROJECTS, &a]));
    assert!(out.stdout.lines().next().unwrap_or_default().contains("OWNERS"), "{}", out.stdout);
    assert!(out.stdout.contains(&owner.name), "kubectl get shows the owner: {}", out.stdout);

    // An owner manages the project's bindings.
    let viewer = User::new("viewer", &[]);
    let view_binding = unique("e2e-acc-view");
    let b = t.tracked(binding(&view_binding, &a, "viewer", json!([viewer.subject()])));
    owner.wait_create(&b).await;
    t.wait_bound(&view_binding, "view").await;
    viewer.wait_can(&["list", "pods", "-n", &a], true, RBAC_TIMEOUT).await;

    // No longer listed, no longer admin.
    let patch = json!({"spec": {"owners": null}}).to_string();
    assert_ok(&run(kubectl().args(["patch", PROJECTS, &a, "--type=merge", "-p", &patch])), "remove the owner");
    owner.wait_can(&["delete", "pods", "-n", &a], false, REVOKE_TIMEOUT).await;
    let other = t.tracked(binding(&unique("e2e-acc-late"), &a, "viewer", json!([viewer.subject()])));
    assert_forbidden(&owner.create(&other), "a former owner creates a binding", Some(BINDING_POLICY));
}

/// The admission policies of a `helm template`, or of a manifest in `charts/zenml-operator/files/`.
fn policies(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("invalid YAML ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| d["kind"] == "ValidatingAdmissionPolicy").collect()
}

/// `helm template` of the chart as release `zenml-operator` in `namespace`, with `--set`s.
fn chart_policies(namespace: &str, sets: &[&str]) -> Vec<Value> {
    let mut cmd = e2e::helm();
    cmd.args(["template", "zenml-operator"]).arg(e2e::chart_dir()).args(["--namespace", namespace]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    policies(&e2e::run_ok(&mut cmd))
}

fn variable<'a>(policy: &'a Value, name: &str) -> &'a str {
    let vars = policy["spec"]["variables"].as_array().expect("variables");
    let var = vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no variable {name} in {policy}"));
    var["expression"].as_str().expect("an expression")
}

/// The chart ships the policies these tests apply from `files/`: for the release `zenml-operator` in `default` (the
/// identity of the tests' and the demo's operator) they are the same, but for their names. For another release,
/// the values decide whom the tenant rules exempt and which namespaces are protected, and each rule can be left out.
#[test]
fn the_chart_ships_the_policies_the_tests_apply() {
    let files = e2e::chart_dir().join("files");
    let mut from_files = Vec::new();
    for entry in std::fs::read_dir(&files).expect("files/") {
        let path = entry.expect("an entry").path();
        // As `kubectl apply -f files/` (the harness) reads it: its manifests, not its subdirectories (argocd/).
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        from_files.extend(policies(&std::fs::read_to_string(&path).expect("a manifest")));
    }
    let rendered = chart_policies("default", &[]);
    assert_eq!(from_files.len(), rendered.len(), "the chart renders every policy of files/");
    for policy in &from_files {
        let name = policy["metadata"]["name"].as_str().unwrap();
        let chart_name = format!("zenml-operator-{}", name.trim_start_matches("zenml-"));
        let ours = rendered.iter().find(|p| p["metadata"]["name"] == chart_name.as_str());
        let ours = ours.unwrap_or_else(|| panic!("the chart renders no {chart_name}"));
        assert_eq!(ours["spec"], policy["spec"], "{chart_name} differs from files/' {name}");
    }

    let find = |policies: &[Value], name: &str| -> Value {
        let full = format!("zenml-operator-{name}");
        policies.iter().find(|p| p["metadata"]["name"] == full.as_str()).cloned().unwrap_or(Value::Null)
    };
    let other = chart_policies(
        "platform",
        &[
            "admissionPolicies.exemptUsers={system:serviceaccount:argocd:argocd-application-controller}",
            "admissionPolicies.exemptGroups={system:masters,platform-admins}",
            "admissionPolicies.protectedNamespaces={vault,team-*}",
            "serviceAccount.name=op",
        ],
    );
    for name in [
        "service-account-impersonation",
        "one-door-for-access",
        "network-walls",
        "managed-objects",
        "workspace-policies",
        "frozen-projects",
    ] {
        let p = find(&other, name);
        assert_eq!(variable(&p, "operator"), r#""system:serviceaccount:platform:op""#, "{name}");
        assert_eq!(
            variable(&p, "exemptUsers"),
            r#"["system:serviceaccount:argocd:argocd-application-controller"]"#,
            "{name}"
        );
        assert_eq!(variable(&p, "exemptGroups"), r#"["system:masters","platform-admins"]"#, "{name}");
    }
    let protected = find(&other, "protected-namespaces");
    assert_eq!(variable(&protected, "protected"), r#"["default","kube-*","vault","team-*","platform"]"#);

    let off = chart_policies(
        "default",
        &[
            "admissionPolicies.serviceAccountImpersonation=false",
            "admissionPolicies.oneDoorForAccess=false",
            "admissionPolicies.networkWalls=false",
            "admissionPolicies.managedObjects=false",
            "admissionPolicies.workspacePolicies=false",
            "admissionPolicies.freeze=false",
        ],
    );
    let names: Vec<&str> = off.iter().map(|p| p["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "zenml-operator-project-delegation",
            "zenml-operator-binding-delegation",
            "zenml-operator-protected-namespaces"
        ]
    );
}
