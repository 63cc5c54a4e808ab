//! The kubectl plugin as a user drives it: `kubectl zenml ...` found on PATH by kubectl, against the real API server
//! with the shared operator running, each test with its own temporary kubeconfig (a copy of the cluster's), and
//! the resulting objects and kubeconfig contents checked.
//!
//! The plugin is `target/debug/kubectl-zenml` (built here when missing or older than its sources), or
//! `KUBECTL_ZENML_BIN`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use e2e::fixtures::Cleanup;
use e2e::{Output, eventually, kubectl, kubectl_json, run, run_ok, run_stdin, server_side_apply, unique, zenml_object};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long the plugin waits for Ready: generous, as the shared cluster may be busy (or changing leaders).
const WAIT: &str = "120s";

// ---------------------------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------------------------

/// The plugin binary: `KUBECTL_ZENML_BIN`, else the workspace's debug build, built now (once per test binary) when it
/// is missing or older than the plugin's sources, so the tests never run stale code.
fn plugin_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("KUBECTL_ZENML_BIN").filter(|b| !b.is_empty()) {
            return bin.into();
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = root.join("target/debug/kubectl-zenml");
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        if built.is_none_or(|b| b < newest_source(&root.join("plugin"))) {
            let out = run(Command::new(env!("CARGO")).args(["build", "-p", "kubectl-zenml"]).current_dir(&root));
            assert!(out.success(), "`cargo build -p kubectl-zenml` failed:\n{}", out.stderr);
        }
        bin
    })
    .clone()
}

fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let t = if path.is_dir() {
            newest_source(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
        };
        newest = newest.max(t);
    }
    newest
}

/// A user's machine: a private copy of the cluster's kubeconfig, and the plugin on PATH.
struct Home {
    dir: PathBuf,
    config: PathBuf,
    original: String,
    path: std::ffi::OsString,
}

impl Home {
    fn new(tag: &str) -> Home {
        let dir = std::env::temp_dir().join(unique(&format!("e2e-plugin-{tag}")));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        let config = dir.join("config");
        let source = e2e::kubeconfig().expect("a kubeconfig for the test cluster");
        let original = std::fs::read_to_string(&source).expect("the cluster's kubeconfig");
        std::fs::write(&config, &original).expect("write the kubeconfig copy");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let bin_dir = plugin_bin().parent().expect("a directory").to_owned();
        let mut paths = vec![bin_dir];
        paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
        let path = std::env::join_paths(paths).expect("a PATH");
        Home { dir, config, original, path }
    }

    /// `kubectl zenml <args>`: kubectl finds `kubectl-zenml` on PATH, as for a user.
    fn zenml(&self, args: &[&str]) -> Command {
        let mut cmd = kubectl();
        cmd.env("KUBECONFIG", &self.config).env("PATH", &self.path).env_remove("ZENML_ACTIVE_PROJECT_ID");
        cmd.arg("zenml").args(args);
        cmd
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = run(&mut self.zenml(args));
        assert!(out.success(), "kubectl zenml {} failed: {}{}", args.join(" "), out.stdout, out.stderr);
        out.stdout
    }

    /// Runs and parses the one JSON document it prints.
    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl zenml {all:?} printed no JSON ({e}):\n{text}"))
    }

    #[track_caller]
    fn fails(&self, args: &[&str]) -> Output {
        let out = run(&mut self.zenml(args));
        assert!(!out.success(), "kubectl zenml {} should fail, but printed: {}", args.join(" "), out.stdout);
        out
    }

    /// The kubeconfig as it is now.
    fn kubeconfig(&self) -> Value {
        let text = std::fs::read_to_string(&self.config).expect("the kubeconfig");
        serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("the kubeconfig no longer parses ({e}):\n{text}"))
    }

    fn current_context(&self) -> String {
        self.kubeconfig()["current-context"].as_str().unwrap_or_default().to_owned()
    }

    fn context(&self, name: &str) -> Value {
        let kc = self.kubeconfig();
        let found = kc["contexts"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name).cloned());
        found.unwrap_or_else(|| panic!("no context {name} in {kc:#}"))["context"].clone()
    }

    /// What plain kubectl says the current namespace is: proves the file still works for kubectl.
    fn kubectl_namespace(&self) -> String {
        let mut cmd = kubectl();
        cmd.env("KUBECONFIG", &self.config).args(["config", "view", "--minify", "-o", "jsonpath={..namespace}"]);
        let out = run(&mut cmd);
        assert!(out.success(), "kubectl cannot read the edited kubeconfig: {}", out.stderr);
        out.stdout.trim().to_owned()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `kubectl get <kind> <name> -o json` as the cluster admin, `None` when it does not exist.
fn get(kind: &str, name: &str, namespace: Option<&str>) -> Option<Value> {
    let mut cmd = kubectl();
    cmd.args(["get", kind, name, "--ignore-not-found", "-o", "json"]);
    if let Some(ns) = namespace {
        cmd.args(["-n", ns]);
    }
    let out = run(&mut cmd);
    assert!(out.success(), "kubectl get {kind} {name}: {}", out.stderr);
    (!out.stdout.trim().is_empty()).then(|| serde_json::from_str(&out.stdout).expect("JSON"))
}

/// A ZenML-style ID unique to this run, with capitals and `_`: `Fraud_PLG_1A2B3C4D`, and its derived name.
fn zenml_id(prefix: &str) -> (String, String) {
    let tag = unique("plg");
    let id = format!("{prefix}_{}", tag.replace('-', "_").to_uppercase());
    let name = id.to_lowercase().replace('_', "-");
    (id, name)
}

fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

/// zenml project register / set / list / describe, zenml workspace list / describe, ZENML_ACTIVE_PROJECT_ID,
/// and `workspace use`: the objects they make and what they write into the kubeconfig.
#[tokio::test]
async fn register_set_and_switch_like_the_zenml_cli() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("cli");
    let ws = unique("e2e-plg-ws");
    let ws2 = unique("e2e-plg-wt");
    t.workspace(&ws, json!({"displayName": "Plugin test"}));
    t.workspace(&ws2, json!({}));

    // Discovery: kubectl lists the plugin.
    let mut list = kubectl();
    list.env("PATH", &home.path).args(["plugin", "list", "--name-only"]);
    assert!(
        run(&mut list).stdout.lines().any(|l| l.trim() == "kubectl-zenml"),
        "kubectl plugin list shows kubectl-zenml"
    );
    assert!(home.ok(&["completion", "bash"]).contains("kubectl-zenml"));

    // `default` is a protected namespace: the project is named after the workspace.
    let ws_default = format!("{ws}-default");
    t.project(&ws_default);
    let out = home.ok(&["project", "register", "default", "--workspace", &ws, "--timeout", WAIT]);
    assert!(out.contains(&format!("namespace {ws_default}")), "register shows the namespace: {out}");
    let p = get("project", &ws_default, None).expect("the Project");
    assert_eq!(p["spec"]["projectId"], "default");
    assert_eq!(p["spec"]["workspace"], ws.as_str());
    assert!(get("namespace", &ws_default, None).is_some(), "its namespace exists");

    // An ID with capitals and `_`.
    let (id, name) = zenml_id("Fraud");
    t.project(&name);
    let out = home.ok(&[
        "project",
        "register",
        &id,
        "--workspace",
        &ws,
        "--display-name",
        "Fraud detection",
        "--timeout",
        WAIT,
    ]);
    assert!(out.contains(&format!("namespace {name}")), "{out}");
    let p = get("project", &name, None).expect("the Project");
    assert_eq!(
        (p["spec"]["projectId"].as_str(), p["spec"]["displayName"].as_str()),
        (Some(id.as_str()), Some("Fraud detection"))
    );

    // The same ID in another workspace: the derived name is taken, so it gets the workspace prefix.
    let taken = format!("{ws2}-{name}");
    t.project(&taken);
    let registered = home.json(&["project", "register", &id, "--workspace", &ws2, "--timeout", WAIT]);
    assert_eq!(registered["metadata"]["name"], taken.as_str());
    // Twice in one workspace is refused.
    let again = home.fails(&["project", "register", &id, "--workspace", &ws2]);
    assert!(again.stderr.contains("already registered"), "{}", again.stderr);

    // With no active workspace the ID is ambiguous; --workspace settles it.
    assert_eq!(home.kubectl_namespace(), "");
    let ambiguous = home.fails(&["project", "set", &id]);
    assert!(ambiguous.stderr.contains("several workspaces"), "{}", ambiguous.stderr);
    let context = home.current_context();
    home.ok(&["project", "set", &id, "--workspace", &ws]);
    assert_eq!(home.context(&context)["namespace"], name.as_str());
    assert_eq!(home.kubectl_namespace(), name);
    // The first change made a backup of the file as it was, and the file kept its permissions.
    assert_eq!(std::fs::read_to_string(home.dir.join("config.zenml.bak")).unwrap(), home.original);
    assert_eq!(std::fs::metadata(&home.config).unwrap().permissions().mode() & 0o777, 0o600);

    // Now the active workspace is known: `project set default` works as in ZenML.
    home.ok(&["project", "set", "default", "--default"]);
    assert_eq!(home.context(&context)["namespace"], ws_default.as_str());
    let kc = home.kubeconfig();
    let ext = kc["preferences"]["extensions"].as_array().unwrap().iter().find(|e| e["name"] == "zenml.io").cloned();
    let defaults = ext.expect("the zenml.io preferences extension")["extension"]["defaultProjects"].clone();
    let mine = defaults.as_array().unwrap().iter().find(|d| d["workspace"] == ws.as_str()).expect("a default for ws");
    assert_eq!((mine["project"].as_str(), mine["projectId"].as_str()), (Some(ws_default.as_str()), Some("default")));
    // Everything else of the original kubeconfig is still there, unchanged.
    let original: Value = serde_saphyr::from_str(&home.original).unwrap();
    assert_eq!(kc["users"], original["users"]);
    assert_eq!(kc["clusters"], original["clusters"]);

    // The Kubernetes name works too; the active project is marked in the list.
    home.ok(&["project", "set", &name]);
    assert_eq!(home.kubectl_namespace(), name);
    let listed = home.ok(&["project", "list"]);
    let active_line = listed.lines().find(|l| l.starts_with('*')).unwrap_or_default();
    assert!(active_line.contains(&name), "{listed}");

    // `workspace use`: a context for the workspace, on the same cluster and user, at the default project.
    let cluster = home.context(&context)["cluster"].as_str().unwrap().to_owned();
    let user = home.context(&context)["user"].clone();
    home.ok(&["workspace", "use", &ws]);
    let ws_context = format!("{cluster}-zenml-{ws}");
    assert_eq!(home.current_context(), ws_context);
    let c = home.context(&ws_context);
    assert_eq!(
        (c["cluster"].as_str(), &c["user"], c["namespace"].as_str()),
        (Some(cluster.as_str()), &user, Some(ws_default.as_str()))
    );
    assert_eq!(home.kubectl_namespace(), ws_default);
    // Without a recorded default, the workspace's only project is used.
    home.ok(&["workspace", "use", &ws2]);
    assert_eq!(home.context(&format!("{cluster}-zenml-{ws2}"))["namespace"], taken.as_str());
    home.ok(&["workspace", "use", &ws]);

    // ZENML_ACTIVE_PROJECT_ID overrides the context, for every command.
    let mut describe = home.zenml(&["project", "describe", "-o", "json"]);
    describe.env("ZENML_ACTIVE_PROJECT_ID", &id);
    let out = run(&mut describe);
    assert!(out.success(), "{}", out.stderr);
    let described: Value = serde_json::from_str(&out.stdout).expect("one JSON document");
    assert_eq!(described["metadata"]["name"], name.as_str(), "resolved in the active workspace {ws}");
    let mut members = home.zenml(&["member", "list", "-o", "json"]);
    members.env("ZENML_ACTIVE_PROJECT_ID", &id);
    let members: Value = serde_json::from_str(&run_ok(&mut members)).expect("JSON");
    assert_eq!(members["project"], name.as_str());
    let described = home.json(&["project", "describe"]);
    assert_eq!(described["metadata"]["name"], ws_default.as_str(), "without it, the context's project");
    let text = home.ok(&["project", "describe", &id]);
    assert!(text.contains("Ready:") && text.contains(&name), "{text}");

    // Lists and descriptions for scripts: one JSON document each.
    let projects = home.json(&["project", "list", "--workspace", &ws]);
    assert_eq!(projects["kind"], "List");
    let mut names = item_names(&projects);
    names.sort();
    let mut expected = vec![ws_default.clone(), name.clone()];
    expected.sort();
    assert_eq!(names, expected);
    assert!(projects["items"].as_array().unwrap().iter().all(|p| p["status"]["conditions"].is_array()));
    let workspaces = home.json(&["workspace", "list"]);
    assert!(item_names(&workspaces).contains(&ws));
    let described = home.json(&["workspace", "describe", &ws]);
    assert_eq!(described["spec"]["displayName"], "Plugin test");
    let yaml = home.ok(&["workspace", "describe", "-o", "yaml"]);
    let parsed: Value = serde_saphyr::from_str(&yaml).expect("one YAML document");
    assert_eq!(parsed["metadata"]["name"], ws.as_str(), "the active workspace");

    // Clear errors.
    let missing = home.fails(&["project", "set", "no_such_project"]);
    assert!(missing.stderr.contains("project \"no_such_project\" does not exist"), "{}", missing.stderr);
    let bad = home.fails(&["project", "register", "has space", "--workspace", &ws]);
    assert!(bad.stderr.contains("letters, digits"), "{}", bad.stderr);
    let no_ws = home.fails(&["project", "register", "x", "--workspace", &unique("e2e-plg-none")]);
    assert!(no_ws.stderr.contains("does not exist; the workspaces are: "), "{}", no_ws.stderr);
}

/// member add / remove / list and audit: bindings made and removed without touching other people's subjects, and
/// an audit that shows an expiring grant and a RoleBinding made around the operator.
/// `kubectl zenml project freeze|unfreeze` sets the project's `spec.frozen`; the operator reports `Frozen`, which
/// `project describe` shows.
#[tokio::test]
async fn freeze_and_unfreeze_a_project() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("freeze");
    let ws = unique("e2e-plg-ws");
    t.workspace(&ws, json!({}));
    let (id, name) = zenml_id("Frozen");
    t.project(&name);
    home.ok(&["project", "register", &id, "--workspace", &ws, "--timeout", WAIT]);
    let frozen = |expected: &'static str| {
        let name = name.clone();
        async move {
            eventually(TIMEOUT, &format!("project {name} Frozen={expected}"), || async {
                let p = get("project", &name, None).ok_or("no project")?;
                let conds = p["status"]["conditions"].as_array().cloned().unwrap_or_default();
                let c = conds.iter().find(|c| c["type"] == "Frozen").ok_or("no Frozen condition")?;
                if c["status"] == expected { Ok(()) } else { Err(format!("{c}")) }
            })
            .await
        }
    };

    let out = home.ok(&["project", "freeze", &id]);
    assert!(out.contains(&format!("Froze project {name}")), "{out}");
    assert_eq!(get("project", &name, None).unwrap()["spec"]["frozen"], true);
    frozen("True").await;
    let out = home.ok(&["project", "describe", &name]);
    assert!(out.lines().any(|l| l.contains("Frozen") && l.contains("ProjectFrozen")), "describe shows it: {out}");

    let out = home.ok(&["project", "unfreeze", &name]);
    assert!(out.contains(&format!("Unfroze project {name}")), "{out}");
    assert_eq!(get("project", &name, None).unwrap()["spec"]["frozen"], false);
    frozen("False").await;
}

/// The condition `type_` of a Workspace or Project as (status, reason), once it exists.
fn condition(kind: &str, name: &str, type_: &str) -> Option<(String, String)> {
    let obj = get(kind, name, None)?;
    let conds = obj["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let c = conds.into_iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
}

/// Waits until Project `name` exists, made by the operator as workspace `ws`'s default project, and is Ready;
/// returns its uid.
async fn wait_default_project(name: &str, ws: &str) -> String {
    eventually(DELETE_WAIT, &format!("default project {name} of workspace {ws}, Ready"), || async {
        let p = get("project", name, None).ok_or("no project")?;
        let owner = &p["metadata"]["ownerReferences"][0];
        if p["spec"]["workspace"] != ws || p["spec"]["projectId"] != "default" || owner["name"] != ws {
            return Err(format!("not ws's default project: {}", p["spec"]));
        }
        if p["metadata"]["deletionTimestamp"].is_string() {
            return Err("being deleted".to_owned());
        }
        match condition("project", name, "Ready") {
            Some((s, _)) if s == "True" => Ok(p["metadata"]["uid"].as_str().unwrap().to_owned()),
            other => Err(format!("Ready: {other:?}")),
        }
    })
    .await
}

/// How long a Project with `deletionPolicy: Delete` may take to go with its namespace.
const DELETE_WAIT: Duration = Duration::from_secs(120);

/// `spec.defaultProject`: the operator makes the workspace's default project (`<workspace>-default`, ZenML ID
/// `default`, owned by the workspace), `workspace use` switches to it, one deleted by hand is made again; another
/// workspace declaring the same name gets `NameConflict` and leaves it alone, and takes the name once it is free;
/// removing the field deletes the project; deleting a workspace deletes its default project rather than wait for it.
#[tokio::test]
async fn a_workspace_default_project_is_made_kept_and_used() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("default");
    let ws = unique("e2e-plg-ws");
    t.workspace(&ws, json!({"defaultProject": {"displayName": "Sandbox"}}));
    let default = format!("{ws}-default");
    let uid = wait_default_project(&default, &ws).await;
    let p = get("project", &default, None).unwrap();
    assert_eq!(p["spec"]["displayName"], "Sandbox");
    assert_eq!(p["metadata"]["labels"]["app.kubernetes.io/managed-by"], "zenml-operator");
    assert_eq!(condition("workspace", &ws, "DefaultProjectReady"), Some(("True".into(), "Applied".into())));

    // `workspace use` activates it; so does `zenml project set default`.
    let out = home.ok(&["workspace", "use", &ws]);
    assert!(out.contains(&format!("project {default} (ZenML ID default)")), "{out}");
    assert_eq!(home.kubectl_namespace(), default);
    home.ok(&["project", "set", "default", "-w", &ws]);
    assert_eq!(home.kubectl_namespace(), default);

    // Deleted by hand: made again (a new instance).
    run_ok(kubectl().args(["delete", "project", &default, "--wait=false"]));
    let again = wait_default_project(&default, &ws).await;
    assert_ne!(again, uid, "a new project, not the deleted one");

    // Another workspace declaring that name: reported, and the project is left alone.
    let other = unique("e2e-plg-ws");
    t.workspace(&other, json!({"defaultProject": {"name": default}}));
    eventually(TIMEOUT, &format!("NameConflict on workspace {other}"), || async {
        match condition("workspace", &other, "DefaultProjectReady") {
            Some((s, r)) if s == "False" && r == "NameConflict" => Ok(()),
            c => Err(format!("{c:?}")),
        }
    })
    .await;
    let ws_other = get("workspace", &other, None).unwrap();
    let msg = ws_other["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DefaultProjectReady")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(msg.contains(&format!("Project {default} already exists (workspace {ws})")), "{msg}");
    let selector = format!("involvedObject.name={other},reason=NameConflict");
    let events = run_ok(kubectl().args(["get", "events", "-A", "--field-selector", &selector, "-o", "name"]));
    assert!(!events.trim().is_empty(), "a NameConflict Event on workspace {other}");
    assert_eq!(get("project", &default, None).unwrap()["metadata"]["uid"], again.as_str(), "left untouched");

    // Removed from the spec: deleted; the other workspace, woken by it, takes the name.
    run_ok(kubectl().args([
        "patch",
        "workspace",
        &ws,
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/defaultProject"}]"#,
    ]));
    let taken = wait_default_project(&default, &other).await;
    assert_ne!(taken, again);
    assert!(condition("workspace", &ws, "DefaultProjectReady").is_none(), "no condition once none is declared");

    // Deleting a workspace deletes its default project, and does not wait for it forever.
    run_ok(kubectl().args(["delete", "workspace", &other, "--wait=false"]));
    e2e::wait_gone("projects.zenml.io", std::slice::from_ref(&default), DELETE_WAIT).expect("the default project goes");
    e2e::wait_gone("workspaces.zenml.io", std::slice::from_ref(&other), DELETE_WAIT).expect("the workspace goes");
}

/// `kubectl zenml project prune` lists the expired projects and, confirmed (`--yes`), deletes them by their
/// deletionPolicy; with no terminal to ask on and no `--yes` it deletes nothing. Projects not expired stay.
#[tokio::test]
async fn prune_deletes_expired_projects_by_their_deletion_policy() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("prune");
    let ws = unique("e2e-plg-ws");
    t.workspace(&ws, json!({}));
    let past = (Timestamp::now() - SignedDuration::from_hours(1)).round(k8s_openapi::jiff::Unit::Second).unwrap();
    let future = (Timestamp::now() + SignedDuration::from_hours(24)).round(k8s_openapi::jiff::Unit::Second).unwrap();
    let (gone, kept, fresh) = (unique("e2e-plg-exp"), unique("e2e-plg-ret"), unique("e2e-plg-fresh"));
    for (name, at, policy) in [(&gone, past, "Delete"), (&kept, past, "Retain"), (&fresh, future, "Delete")] {
        let spec = json!({"workspace": ws, "expiresAt": at.to_string(), "deletionPolicy": policy});
        t.apply(&zenml_object("Project", name, spec));
    }
    t.track("Namespace", &kept);
    for name in [&gone, &kept, &fresh] {
        eventually(TIMEOUT, &format!("project {name} Ready"), || async {
            match condition("project", name, "Ready") {
                Some((s, _)) if s == "True" => Ok(()),
                c => Err(format!("{c:?}")),
            }
        })
        .await;
    }
    assert_eq!(condition("project", &gone, "Frozen"), Some(("True".into(), "Expired".into())));
    assert_eq!(condition("project", &fresh, "Frozen"), Some(("False".into(), "NotFrozen".into())));
    let described = home.ok(&["project", "describe", &gone]);
    assert!(described.lines().any(|l| l.starts_with("Expires:") && l.contains("expired")), "{described}");

    let mut no_tty = home.zenml(&["project", "prune", "-w", &ws]);
    no_tty.stdin(std::process::Stdio::null());
    let out = run(&mut no_tty);
    assert!(!out.success(), "refused without a terminal: {}", out.stdout);
    assert!(out.stderr.contains("no terminal to confirm on") && out.stderr.contains("--yes"), "{}", out.stderr);
    for name in [&gone, &kept] {
        assert!(out.stdout.contains(name.as_str()), "listed: {}", out.stdout);
        assert!(get("project", name, None).is_some(), "{name} not deleted without confirmation");
    }
    assert!(!out.stdout.contains(fresh.as_str()), "{}", out.stdout);
    assert!(out.stdout.contains("Retain") && out.stdout.contains("EXPIRED SINCE"), "{}", out.stdout);

    let out = home.ok(&["project", "prune", "-w", &ws, "--yes"]);
    assert!(out.contains(&format!("Deleted project {kept}")) && out.contains("Retain"), "{out}");
    e2e::wait_gone("projects.zenml.io", &[gone.clone(), kept.clone()], DELETE_WAIT).expect("expired projects go");
    e2e::wait_gone("namespaces", std::slice::from_ref(&gone), DELETE_WAIT).expect("Delete: its namespace goes");
    let ns = get("namespace", &kept, None).expect("Retain: its namespace stays");
    assert_eq!(ns["metadata"]["annotations"]["zenml.io/former-project"], kept.as_str());
    assert!(get("project", &fresh, None).is_some(), "a project not expired stays");
    assert!(home.ok(&["project", "prune", "-w", &ws, "--yes"]).contains("No expired projects"));
}

/// A project's owners are shown as its admins by `project describe`, `member list` and `audit`.
#[tokio::test]
async fn owners_are_shown_by_describe_and_audit() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("owners");
    let ws = unique("e2e-plg-ws");
    t.workspace(&ws, json!({}));
    let name = unique("e2e-plg-owned");
    let owner = unique("e2e-plg-owner");
    t.apply(&zenml_object(
        "Project",
        &name,
        json!({"workspace": ws, "owners": [{"kind": "User", "name": owner}, {"kind": "Group", "name": "ml-leads"}]}),
    ));
    eventually(TIMEOUT, "the owners' RoleBinding", || async {
        get("rolebinding", "zenml-project-owners", Some(&name)).map(|_| ()).ok_or("not yet")
    })
    .await;
    let out = home.ok(&["project", "describe", &name]);
    let line = out.lines().find(|l| l.starts_with("Owners:")).unwrap_or_else(|| panic!("no Owners line: {out}"));
    assert!(line.contains(&owner) && line.contains("ml-leads"), "{line}");
    let out = home.ok(&["member", "list", "-p", &name]);
    assert!(out.lines().any(|l| l.contains("admin") && l.contains(&owner) && l.contains("Project owner")), "{out}");
    let out = home.ok(&["audit", "--workspace", &ws]);
    assert!(out.lines().any(|l| l.contains(&name) && l.contains("admin") && l.contains(&owner)), "{out}");
    assert!(!out.contains("zenml-project-owners"), "the owners' RoleBinding is the operator's: {out}");
}

#[tokio::test]
async fn members_and_audit() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("members");
    let ws = unique("e2e-plg-ws");
    t.workspace(
        &ws,
        json!({"members": [{"role": "viewer", "subjects": [{"kind": "Group", "name": "e2e-plg-auditors"}]}]}),
    );
    let (id, project) = zenml_id("Members");
    t.project(&project);
    home.ok(&["project", "register", &id, "--workspace", &ws, "--set", "--timeout", WAIT]);
    assert_eq!(home.kubectl_namespace(), project);

    // A developer, on the active project: one binding, in force, with a RoleBinding in the namespace.
    let alice = unique("e2e-plg-alice");
    let out = home.ok(&["member", "add", "--role", "developer", "--user", &alice, "--timeout", WAIT]);
    assert!(out.contains("In force"), "{out}");
    let bindings = home.json(&["member", "list"]);
    let alice_binding = bindings["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"]["name"] == alice.as_str())
        .expect("alice is a member")["source"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    t.binding(&alice_binding);
    assert!(alice_binding.starts_with(&format!("{project}-developer-user-")), "{alice_binding}");
    let prb = get("prb", &alice_binding, None).expect("the binding");
    assert_eq!(prb["metadata"]["labels"]["app.kubernetes.io/managed-by"], "kubectl-zenml");
    let rb = prb["status"]["roleBinding"].as_str().expect("a RoleBinding").to_owned();
    assert_eq!(get("rolebinding", &rb, Some(&project)).expect("the RoleBinding")["roleRef"]["name"], "edit");
    // Adding again changes nothing.
    assert!(
        home.ok(&["member", "add", "--role", "developer", "--user", &alice, "--timeout", WAIT])
            .contains("already has role")
    );

    // A team, until the day after tomorrow; a ServiceAccount of the project, by ZenML ID.
    let team = unique("e2e-plg-team");
    let expires = Timestamp::now().checked_add(SignedDuration::from_hours(48)).unwrap();
    let expires = expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let team_prb = home.json(&[
        "member",
        "add",
        "--role",
        "viewer",
        "--group",
        &team,
        "--expires-at",
        &expires,
        "--timeout",
        WAIT,
    ]);
    t.binding(team_prb["metadata"]["name"].as_str().unwrap());
    assert_eq!(team_prb["spec"]["expiresAt"], expires.as_str());
    let sa_prb = home.json(&[
        "member",
        "add",
        "--role",
        "viewer",
        "--service-account",
        &format!("{id}/zenml-runner"),
        "-p",
        &id,
        "--timeout",
        WAIT,
    ]);
    t.binding(sa_prb["metadata"]["name"].as_str().unwrap());
    assert_eq!(
        sa_prb["spec"]["subjects"][0],
        json!({"kind": "ServiceAccount", "name": "zenml-runner", "project": project})
    );
    let refused = home.fails(&["member", "add", "--role", "owner", "--user", &alice]);
    assert!(refused.stderr.contains("not allowed in workspace"), "{}", refused.stderr);
    let past =
        home.fails(&["member", "add", "--role", "viewer", "--user", &alice, "--expires-at", "2001-01-01T00:00:00Z"]);
    assert!(past.stderr.contains("in the past"), "{}", past.stderr);

    // Someone else's binding with two people: removing one keeps the other.
    let (bob, carol) = (unique("e2e-plg-bob"), unique("e2e-plg-carol"));
    let shared = unique("e2e-plg-shared");
    t.binding(&shared);
    server_side_apply(&zenml_object(
        "ProjectRoleBinding",
        &shared,
        json!({"project": project, "role": "developer", "subjects": [{"kind": "User", "name": bob}, {"kind": "User", "name": carol}]}),
    ));
    home.ok(&["member", "remove", "--role", "developer", "--user", &bob]);
    let kept = get("prb", &shared, None).expect("the shared binding stays");
    assert_eq!(kept["spec"]["subjects"], json!([{"kind": "User", "name": carol}]));
    home.ok(&["member", "remove", "--role", "developer", "--user", &alice]);
    assert!(get("prb", &alice_binding, None).is_none(), "alice's own binding is deleted");
    let gone = home.fails(&["member", "remove", "--role", "developer", "--user", &alice]);
    assert!(gone.stderr.contains("does not have role developer"), "{}", gone.stderr);

    let members = home.json(&["member", "list"]);
    let mut who: Vec<(String, String, String)> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let s = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (
                s("role"),
                m["subject"]["name"].as_str().unwrap().to_owned(),
                m["source"]["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    who.sort();
    let mut expected = vec![
        ("developer".into(), carol.clone(), "ProjectRoleBinding".into()),
        ("viewer".into(), team.clone(), "ProjectRoleBinding".into()),
        ("viewer".into(), "zenml-runner".into(), "ProjectRoleBinding".into()),
        ("viewer".into(), "e2e-plg-auditors".into(), "Workspace".into()),
    ];
    expected.sort();
    assert_eq!(who, expected);

    // A RoleBinding made around the operator, and the audit.
    let sneaky = unique("e2e-plg-sneaky");
    let mut create = kubectl();
    create.args(["-n", &project, "create", "rolebinding", &sneaky, "--clusterrole=edit", "--user=mallory"]);
    run_ok(&mut create);
    let audit = home.json(&["audit", "--workspace", &ws]);
    assert_eq!(audit["kind"], "ZenMLAudit");
    let unmanaged = audit["unmanagedRoleBindings"].as_array().unwrap();
    assert!(
        unmanaged.iter().any(|u| u["name"] == sneaky.as_str()
            && u["namespace"] == project.as_str()
            && u["roleRef"] == "ClusterRole/edit"
            && u["reason"].as_str().is_some_and(|r| r.starts_with("not made by the operator"))),
        "{unmanaged:?}"
    );
    assert!(
        unmanaged.iter().all(|u| !u["name"].as_str().unwrap().starts_with("zenml-")),
        "ours are not listed: {unmanaged:?}"
    );
    let expiring = audit["expiring"].as_array().unwrap();
    assert_eq!(expiring.len(), 1, "{expiring:?}");
    assert_eq!(
        (expiring[0]["binding"].as_str(), expiring[0]["expired"].as_bool()),
        (team_prb["metadata"]["name"].as_str(), Some(false))
    );
    assert!(audit["members"].as_array().unwrap().iter().any(|m| m["subject"]["name"] == carol.as_str()));
    let narrow = home.json(&["audit", "--workspace", &ws, "--expiring-within", "1d"]);
    assert_eq!(narrow["expiring"], json!([]), "the grant expires in two days");
    let text = home.ok(&["audit", "-w", &ws]);
    assert!(text.contains(&sneaky) && text.contains("mallory") && text.contains(&team), "{text}");
}

/// The audit decides what is the operator's by comparing with what the operator wants, never by label (anyone allowed
/// to edit RoleBindings can set one), and lists the access into a project namespace that does not come through
/// ProjectRoleBindings (issue 17, #5 and #8): a RoleBinding carrying the operator's labels, copied onto it by a cluster
/// admin (as from before the `zenml-one-door-for-access` policy, which refuses it to anyone else), granting `admin` to
/// mallory; a long-lived token Secret for the runner. The operator's own RoleBindings (runner, workspace member,
/// delegation, ProjectRoleBindings with a cross-project ServiceAccount subject) are not listed.
#[tokio::test]
async fn audit_lists_access_around_project_role_bindings() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("around");
    let ws = unique("e2e-plg-around");
    let admins = unique("e2e-plg-admins");
    t.workspace(&ws, json!({"members": [{"role": "admin", "subjects": [{"kind": "Group", "name": admins}]}]}));
    let (id, project) = zenml_id("Around");
    t.project(&project);
    home.ok(&["project", "register", &id, "--workspace", &ws, "--timeout", WAIT]);
    let (dev, viewer) = (unique("e2e-plg-dev"), unique("e2e-plg-view"));
    t.binding(&dev);
    t.binding(&viewer);
    server_side_apply(&zenml_object(
        "ProjectRoleBinding",
        &dev,
        json!({"project": project, "role": "developer", "subjects": [{"kind": "User", "name": unique("e2e-plg-alice")}]}),
    ));
    server_side_apply(&zenml_object(
        "ProjectRoleBinding",
        &viewer,
        json!({"project": project, "role": "viewer", "subjects": [{"kind": "ServiceAccount", "name": "zenml-runner", "project": project}]}),
    ));
    for b in [&dev, &viewer] {
        eventually(TIMEOUT, &format!("binding {b} bound"), || async {
            get("prb", b, None).and_then(|p| p["status"]["roleBinding"].as_str().map(str::to_owned))
        })
        .await;
    }

    // The forgery: the runner RoleBinding's labels, on a RoleBinding no one asked for.
    let runner = get("rolebinding", "zenml-runner", Some(&project)).expect("the runner's RoleBinding");
    let labels = runner["metadata"]["labels"].clone();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "zenml-operator");
    let forged = unique("e2e-plg-forged");
    let rb = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": forged, "namespace": project, "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory"}],
    });
    let out = run_stdin(kubectl().args(["create", "-f", "-"]), &rb.to_string());
    assert!(out.success(), "creating the forged RoleBinding as cluster admin: {}", out.stderr);
    // A long-lived token for the runner.
    let token = unique("e2e-plg-token");
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": {"name": token, "namespace": project,
                     "annotations": {"kubernetes.io/service-account.name": "zenml-runner"}},
    });
    let out = run_stdin(kubectl().args(["create", "-f", "-"]), &secret.to_string());
    assert!(out.success(), "creating the token Secret as cluster admin: {}", out.stderr);

    let audit = home.json(&["audit", "--workspace", &ws]);
    let unmanaged = audit["unmanagedRoleBindings"].as_array().unwrap();
    let names: Vec<&str> = unmanaged.iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, [forged.as_str()], "the forgery only, none of the operator's: {unmanaged:#?}");
    let u = &unmanaged[0];
    assert_eq!((u["namespace"].as_str(), u["roleRef"].as_str()), (Some(project.as_str()), Some("ClusterRole/admin")));
    let reason = u["reason"].as_str().unwrap();
    assert!(
        reason.contains("labelled as the operator's")
            && reason.contains("ClusterRole/admin")
            && reason.contains("mallory"),
        "{reason}"
    );
    let ours =
        kubectl_json(&["get", "rolebindings", "-n", &project, "-l", "app.kubernetes.io/managed-by=zenml-operator"]);
    let ours = item_names(&ours);
    for name in ["zenml-runner", "zenml-workspace-admin", "zenml-project-admin"] {
        assert!(ours.iter().any(|n| n == name), "the operator made {name}: {ours:?}");
    }
    assert!(ours.iter().filter(|n| n.starts_with("zenml-prb-")).count() == 2, "{ours:?}");
    let tokens = audit["tokenSecrets"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{tokens:#?}");
    assert_eq!(
        (tokens[0]["namespace"].as_str(), tokens[0]["name"].as_str(), tokens[0]["serviceAccount"].as_str()),
        (Some(project.as_str()), Some(token.as_str()), Some("zenml-runner"))
    );
    assert!(tokens[0]["age"].as_str().is_some_and(|a| !a.is_empty()) && tokens[0]["createdAt"].is_string());
    let text = home.ok(&["audit", "-w", &ws]);
    assert!(text.contains(&forged) && text.contains("labelled as the operator's") && text.contains(&token), "{text}");
}

/// A workspace admin (through a Group, with the base `zenml-self-service` right), as a kubeconfig user that
/// impersonates them: registers in their workspace, and is told clearly why not in another.
#[tokio::test]
async fn a_workspace_admin_registers_in_their_workspace_only() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("admin");
    let group = unique("e2e-plg-admins");
    let user = unique("e2e-plg-user");
    let (mine, other) = (unique("e2e-plg-mine"), unique("e2e-plg-other"));
    t.workspace(&mine, json!({"members": [{"role": "admin", "subjects": [{"kind": "Group", "name": group}]}]}));
    t.workspace(&other, json!({}));
    let crb = unique("e2e-plg-selfservice");
    t.cluster_role_binding(&crb);
    let mut create = kubectl();
    create.args([
        "create",
        "clusterrolebinding",
        &crb,
        "--clusterrole=zenml-self-service",
        &format!("--group={group}"),
    ]);
    run_ok(&mut create);

    // The kubeconfig user: the admin's credentials, impersonating `user` in `group`.
    let mut kc = home.kubeconfig();
    let context = home.current_context();
    let admin_user = home.context(&context)["user"].as_str().unwrap().to_owned();
    let cluster = home.context(&context)["cluster"].as_str().unwrap().to_owned();
    let mut impersonated =
        kc["users"].as_array().unwrap().iter().find(|u| u["name"] == admin_user.as_str()).unwrap().clone();
    impersonated["name"] = json!("impersonated");
    impersonated["user"]["as"] = json!(user);
    impersonated["user"]["as-groups"] = json!([group, "system:authenticated"]);
    kc["users"].as_array_mut().unwrap().push(impersonated);
    kc["contexts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "as-user", "context": {"cluster": cluster, "user": "impersonated"}}));
    kc["current-context"] = json!("as-user");
    std::fs::write(&home.config, serde_saphyr::to_string(&kc).unwrap()).unwrap();

    // The workspace's delegation reaches the authorizer a moment after the operator writes it.
    eventually(TIMEOUT, &format!("{user} may manage projects of {mine}"), || async {
        let out = run(kubectl()
            .args(["auth", "can-i", "manage-projects", &format!("workspaces.zenml.io/{mine}")])
            .args([format!("--as={user}"), format!("--as-group={group}")]));
        (out.stdout.trim() == "yes").then_some(())
    })
    .await;

    let (id, name) = zenml_id("Admin");
    t.project(&name);
    let out = home.ok(&["project", "register", &id, "--workspace", &mine, "--set-default", "--timeout", WAIT]);
    assert!(out.contains(&format!("namespace {name}")), "{out}");
    let p = get("project", &name, None).expect("the Project");
    assert_eq!(p["spec"]["workspace"], mine.as_str());
    assert_eq!(home.context("as-user")["namespace"], name.as_str(), "--set-default makes it active");
    let listed = home.json(&["project", "list", "--workspace", &mine]);
    assert_eq!(item_names(&listed), std::slice::from_ref(&name));
    // Their own project's members, as a project admin through the workspace.
    home.ok(&["member", "list"]);

    let (id_other, name_other) = zenml_id("Other");
    t.project(&name_other);
    let refused = home.fails(&["project", "register", &id_other, "--workspace", &other]);
    assert!(
        refused.stderr.contains("not allowed to create")
            && refused.stderr.contains(&format!("projects of workspace {other}"))
            && refused.stderr.contains("only its admins"),
        "a clear Forbidden message: {}",
        refused.stderr
    );
    assert!(get("project", &name_other, None).is_none());
    // A project of the other workspace: the user sees it, but may not grant roles there or read its RoleBindings.
    let theirs = unique("e2e-plg-theirs");
    t.project(&theirs);
    server_side_apply(&zenml_object("Project", &theirs, json!({"workspace": other})));
    eventually(TIMEOUT, &format!("project {theirs} provisioned"), || async {
        get("project", &theirs, None).filter(|p| p["status"]["namespace"] == theirs.as_str())
    })
    .await;
    let refused =
        home.fails(&["member", "add", "--role", "viewer", "--user", "someone", "-p", &theirs, "--timeout", "0"]);
    assert!(
        refused.stderr.contains("not allowed to create") && refused.stderr.contains("only its admins"),
        "a clear Forbidden message: {}",
        refused.stderr
    );
    let audit = home.json(&["audit", "--workspace", &other]);
    let warnings = audit["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains(&format!("`list` on rolebindings.rbac.authorization.k8s.io in namespace {theirs}"))),
        "the audit names the permission it lacks: {warnings:?}"
    );
}

/// A name that does not exist is an error everywhere: the command fails, names what was asked for, and lists what
/// does exist. `audit --workspace <typo>` used to print an empty report and exit 0.
#[tokio::test]
async fn names_that_do_not_exist_are_errors_that_list_what_exists() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("notfound");
    let ws = unique("e2e-plg-nf");
    let empty = unique("e2e-plg-nfe");
    t.workspace(&ws, json!({}));
    t.workspace(&empty, json!({}));
    let (id, project) = zenml_id("Found");
    t.project(&project);
    server_side_apply(&zenml_object("Project", &project, json!({"workspace": ws, "projectId": id})));
    let missing_ws = unique("e2e-plg-nows");
    let missing = "no_such_project";

    // Workspaces: the global flag, whatever the command, and the names `workspace` takes.
    let listed = |stderr: &str| {
        stderr.contains("; the workspaces are: ") && (stderr.contains(&ws) || stderr.contains(" more ("))
    };
    let before = std::fs::read_to_string(&home.config).unwrap();
    for args in [
        vec!["audit", "--workspace", &missing_ws],
        vec!["audit", "-w", &missing_ws, "-o", "json"],
        vec!["project", "list", "--workspace", &missing_ws],
        vec!["project", "register", "x", "--workspace", &missing_ws],
        vec!["project", "set", &id, "--workspace", &missing_ws],
        vec!["member", "list", "-p", &project, "--workspace", &missing_ws],
        vec!["workspace", "list", "--workspace", &missing_ws],
    ] {
        let out = home.fails(&args);
        let expected = format!("--workspace: workspace \"{missing_ws}\" does not exist");
        assert!(out.stderr.contains(&expected) && listed(&out.stderr), "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}: nothing on stdout");
    }
    for args in [vec!["workspace", "describe", &missing_ws], vec!["workspace", "use", &missing_ws]] {
        let out = home.fails(&args);
        assert!(
            out.stderr.contains(&format!("error: workspace \"{missing_ws}\" does not exist")) && listed(&out.stderr),
            "{args:?}: {}",
            out.stderr
        );
    }
    assert_eq!(std::fs::read_to_string(&home.config).unwrap(), before, "the kubeconfig is untouched");

    // Projects: by argument, --project, --service-account and ZENML_ACTIVE_PROJECT_ID; listed as `name (ID id)`.
    let in_ws = format!(
        "project \"{missing}\" does not exist (no Project has that name, and no project in workspace \"{ws}\" has that ZenML ID); the projects of workspace {ws} are: {project} (ID {id})"
    );
    for args in [
        vec!["project", "set", missing, "-w", &ws],
        vec!["project", "describe", missing, "-w", &ws],
        vec!["member", "list", "-p", missing, "-w", &ws],
        vec!["member", "add", "--role", "viewer", "--user", "u", "-p", missing, "-w", &ws],
        vec!["member", "remove", "--role", "viewer", "--user", "u", "-p", missing, "-w", &ws],
    ] {
        let out = home.fails(&args);
        assert!(out.stderr.contains(&in_ws), "{args:?}: {}", out.stderr);
    }
    let sa = format!("{missing}/zenml-runner");
    let out = home.fails(&["member", "add", "--role", "viewer", "--service-account", &sa, "-p", &project]);
    assert!(out.stderr.contains(&format!("--service-account: {in_ws}")), "{}", out.stderr);
    let mut env = home.zenml(&["project", "describe", "-w", &ws]);
    env.env("ZENML_ACTIVE_PROJECT_ID", missing);
    let out = run(&mut env);
    assert!(!out.success() && out.stderr.contains(&format!("ZENML_ACTIVE_PROJECT_ID: {in_ws}")), "{}", out.stderr);
    let out = home.fails(&["project", "set", missing, "-w", &empty]);
    assert!(out.stderr.contains(&format!("; workspace {empty} has no projects")), "{}", out.stderr);
    // Without a workspace, every project that exists may be meant.
    let out = home.fails(&["project", "describe", missing]);
    assert!(
        out.stderr.contains(&format!("project \"{missing}\" does not exist (no Project has that name, and no project has that ZenML ID); the projects are: ")),
        "{}",
        out.stderr
    );

    // What exists still works.
    home.ok(&["audit", "--workspace", &ws]);
    home.ok(&["project", "describe", &id, "-w", &ws]);
}

/// Where `e2e/cluster krew` builds krew (once), or `KREW`.
fn krew() -> PathBuf {
    static KREW: OnceLock<PathBuf> = OnceLock::new();
    KREW.get_or_init(|| {
        if let Some(krew) = std::env::var_os("KREW").filter(|k| !k.is_empty()) {
            return krew.into();
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster");
        let out = run(Command::new(&script).arg("krew").stderr(std::process::Stdio::inherit()));
        assert!(out.success(), "`e2e/cluster krew` failed; run it to see why, or set KREW to a krew binary");
        PathBuf::from(out.stdout.trim())
    })
    .clone()
}

/// Packaged for krew as `plugin/krew/package` makes it, installed by krew from the local archive (no index, no
/// network), run by kubectl from krew's bin directory, and `kubectl zenml <TAB>` completed by kubectl through the
/// `kubectl_complete-zenml` the archive carries, set up as the manifest's caveats say.
#[tokio::test]
async fn installed_by_krew_and_completed_by_kubectl() {
    let mut t = Cleanup::with_shared_operator(TIMEOUT);
    let home = Home::new("krew");
    let ws = unique("e2e-plg-krew");
    t.workspace(&ws, json!({"displayName": "Krew test"}));
    let (id, project) = zenml_id("Krew");
    t.project(&project);
    server_side_apply(&zenml_object("Project", &project, json!({"workspace": ws, "projectId": id})));

    // The archive and its manifest, from the committed one.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pkg = home.dir.join("pkg");
    let out = run_ok(
        Command::new(root.join("plugin/krew/package"))
            .arg("--bin")
            .arg(plugin_bin())
            .arg("--out")
            .arg(&pkg)
            .args(["--base-url", &format!("file://{}", pkg.display())]),
    );
    let (archive, manifest) = match out.lines().collect::<Vec<_>>()[..] {
        [a, m] => (PathBuf::from(a), PathBuf::from(m)),
        _ => panic!("plugin/krew/package printed {out:?}"),
    };
    let sha = run_ok(Command::new("sha256sum").arg(&archive));
    let sha = sha.split_whitespace().next().unwrap();
    let written: Value = serde_saphyr::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let committed: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("plugin/krew/zenml.yaml")).unwrap()).unwrap();
    let platform = &written["spec"]["platforms"][0];
    assert_eq!(platform["sha256"], sha);
    let file_name = archive.file_name().unwrap().to_str().unwrap();
    assert_eq!(platform["uri"], format!("file://{}/{file_name}", pkg.display()));
    let version = run_ok(Command::new(plugin_bin()).arg("--version"));
    assert_eq!(written["spec"]["version"], format!("v{}", version.split_whitespace().nth(1).unwrap()));
    let mut expected = committed.clone();
    expected["spec"]["version"] = written["spec"]["version"].clone();
    expected["spec"]["platforms"][0]["uri"] = platform["uri"].clone();
    expected["spec"]["platforms"][0]["sha256"] = platform["sha256"].clone();
    assert_eq!(written, expected, "only version, uri and sha256 differ from plugin/krew/zenml.yaml");

    // krew install into a KREW_ROOT of its own; --manifest skips the index, --archive the download, and
    // KREW_NO_UPGRADE_CHECK krew's look for a newer krew on GitHub.
    let krew_root = home.dir.join("krew");
    let bin = krew_root.join("bin");
    let mut paths = vec![bin.clone()];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    let path = std::env::join_paths(paths).unwrap();
    let krew_cmd = || {
        let mut cmd = Command::new(krew());
        cmd.env("KREW_ROOT", &krew_root).env("KREW_NO_UPGRADE_CHECK", "1").env("PATH", &path);
        cmd.stdin(std::process::Stdio::null());
        cmd
    };
    let out = run(krew_cmd()
        .arg("install")
        .arg(format!("--manifest={}", manifest.display()))
        .arg(format!("--archive={}", archive.display())));
    assert!(out.success(), "krew install failed:\n{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("Installed plugin: zenml"), "{}", out.stderr);
    let installed = std::fs::canonicalize(bin.join("kubectl-zenml")).expect("krew links kubectl-zenml");
    assert!(installed.starts_with(std::fs::canonicalize(&krew_root).unwrap().join("store/zenml")), "{installed:?}");
    assert!(krew_root.join("receipts/zenml.yaml").exists(), "krew records the install");

    // kubectl runs the installed plugin from krew's bin directory.
    let user = |args: &[&str]| {
        let mut cmd = kubectl();
        cmd.env("KUBECONFIG", &home.config).env("PATH", &path).env_remove("ZENML_ACTIVE_PROJECT_ID");
        cmd.args(args);
        cmd
    };
    let listed = run(&mut user(&["plugin", "list", "--name-only"])).stdout;
    assert!(listed.lines().any(|l| l.trim() == "kubectl-zenml"), "{listed}");
    let workspaces: Value = serde_json::from_str(&run_ok(&mut user(&["zenml", "workspace", "list", "-o", "json"])))
        .expect("one JSON document");
    assert!(item_names(&workspaces).contains(&ws), "{workspaces}");

    // Completion: the caveats' command puts kubectl_complete-zenml on PATH; kubectl asks it.
    let caveats = written["spec"]["caveats"].as_str().unwrap();
    let setup = caveats.lines().map(str::trim).find(|l| l.starts_with("cp ")).expect("a cp command in the caveats");
    run_ok(Command::new("sh").args(["-c", setup]).env("KREW_ROOT", &krew_root).env("PATH", &path));
    assert!(bin.join("kubectl_complete-zenml").exists(), "{setup}");
    let complete = |words: &[&str]| -> Vec<String> {
        let mut args = vec!["__complete", "zenml"];
        args.extend(words);
        let out = run_ok(&mut user(&args));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.last(), Some(&":4"), "no file names: {out}");
        lines[..lines.len() - 1].iter().map(|l| l.split('\t').next().unwrap().to_owned()).collect()
    };
    let first = complete(&[""]);
    for sub in ["project", "workspace", "member", "audit", "completion"] {
        assert!(first.contains(&sub.to_owned()), "{sub} in {first:?}");
    }
    assert_eq!(complete(&["pro"]), ["project"]);
    assert_eq!(complete(&["project", ""]), ["register", "set", "list", "describe", "freeze", "unfreeze", "prune"]);
    assert_eq!(complete(&["project", "set", "-w", &ws, ""]), [project], "the projects of the workspace");
    assert!(complete(&["workspace", "use", ""]).contains(&ws));
    assert_eq!(complete(&["member", "add", "--role", "dev"]), ["developer"]);
}
