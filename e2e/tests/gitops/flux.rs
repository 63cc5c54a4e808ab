//! Flux's source-controller and kustomize-controller, run out of cluster against the test cluster, reconciling
//! examples/ from a git repository served on loopback ([`super::git`]), with `examples/gitops/flux/` applied as users
//! apply it.
//!
//! Each test runs its own pair of controllers, watching only a namespace of its own (their runtime namespace), so
//! concurrent tests and runs on one cluster never reconcile each other's objects. Flux's CRDs are installed from
//! the controllers' modules (`e2e/gitops-tools flux-crds`) and left installed, like the operator's.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use e2e::{eventually, kubectl, operator, read_condition, run, run_ok, run_stdin, unique};
use serde_json::{Value, json};

use super::git::Repo;
use super::{delete_nowait, documents, flux_controllers, live, read, repo_root};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The two controllers of a test, and the namespace they watch; dropped, they stop and the namespace goes.
struct Flux {
    namespace: String,
    controllers: Vec<(Child, ChildStdin)>,
}

impl Drop for Flux {
    fn drop(&mut self) {
        for (mut child, stdin) in self.controllers.drain(..) {
            drop(stdin);
            let _ = child.wait();
        }
        // Flux's finalizers would hold the namespace forever now that the controllers are gone (a test that failed
        // before deleting its Kustomization); what Flux applied is deleted by the test's own cleanup.
        let left = run(kubectl().args(["get", "kustomizations,gitrepositories", "-n", &self.namespace, "-o", "name"]));
        for object in left.stdout.lines().filter(|l| !l.is_empty()) {
            let _ = run(kubectl()
                .args(["patch", "-n", &self.namespace, object, "--type=merge", "-p"])
                .arg(r#"{"metadata": {"finalizers": null}}"#));
        }
        delete_nowait(&["namespace", &self.namespace]);
    }
}

fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port();
    format!("127.0.0.1:{port}")
}

/// Starts `bin args` under a shell that stops it when this process exits (its stdin closes), logging to `log`.
fn start(bin: PathBuf, args: &[String], namespace: &str, log: &PathBuf) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"bin=$1; log=$2; shift 2; "$bin" "$@" >>"$log" 2>&1 & p=$!; echo $p; read _; kill $p 2>/dev/null; wait $p"#)
        .arg("sh")
        .arg(&bin)
        .arg(log)
        .args(args)
        .env("KUBECONFIG", e2e::kubeconfig().expect("a kubeconfig"))
        .env("RUNTIME_NAMESPACE", namespace)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sh starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("the wrapper prints a pid");
    let stdin = child.stdin.take().expect("piped");
    (child, stdin)
}

/// Flux's CRDs, installed once per test binary.
fn install_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let crds = run_ok(Command::new(repo_root().join("e2e/gitops-tools")).arg("flux-crds"));
        let out = run_stdin(kubectl().args(["apply", "--server-side", "--force-conflicts", "-f", "-"]), &crds);
        assert!(out.success(), "cannot install Flux's CRDs: {}", out.stderr);
        for crd in ["gitrepositories.source.toolkit.fluxcd.io", "kustomizations.kustomize.toolkit.fluxcd.io"] {
            run_ok(kubectl().args(["wait", "--for=condition=established", "--timeout=60s", "crd", crd]));
        }
    });
}

impl Flux {
    fn start() -> Flux {
        install_crds();
        let dir = flux_controllers();
        let namespace = unique("e2e-flux");
        run_ok(kubectl().args(["create", "namespace", &namespace]));
        run_ok(kubectl().args(["label", "namespace", &namespace, &format!("{}=true", e2e::NAMESPACE_LABEL)]));
        let logs = std::env::temp_dir().join(&namespace);
        std::fs::create_dir_all(logs.join("storage")).expect("mkdir");
        let storage = free_addr();
        let common = |extra: &[String]| -> Vec<String> {
            let mut args: Vec<String> =
                ["--enable-leader-election=false", "--watch-all-namespaces=false", "--log-level=info"]
                    .map(str::to_owned)
                    .to_vec();
            args.push(format!("--metrics-addr={}", free_addr()));
            args.push(format!("--health-addr={}", free_addr()));
            args.extend_from_slice(extra);
            args
        };
        let source = common(&[
            format!("--storage-path={}", logs.join("storage").display()),
            format!("--storage-addr={storage}"),
            format!("--storage-adv-addr={storage}"),
        ]);
        // A Kustomization applied with its GitRepository retries as soon as the artifact is there, not in 30 s.
        let kustomize = common(&["--requeue-dependency=2s".to_owned()]);
        let controllers = vec![
            start(dir.join("source-controller"), &source, &namespace, &logs.join("source-controller.log")),
            start(dir.join("kustomize-controller"), &kustomize, &namespace, &logs.join("kustomize-controller.log")),
        ];
        eprintln!("flux: controllers of {} watch namespace {namespace}; logs in {}", dir.display(), logs.display());
        Flux { namespace, controllers }
    }
}

/// The documents of `examples/gitops/flux/<file>`, as a user applies them, with what a test must change: the
/// namespace (`flux-system` is the test's own), the names (`ml-platform` is `workspace`), the repository's URL and
/// a short `timeout` (so the test sees a refusal named within seconds, not minutes).
fn flux_example(flux: &Flux, file: &str, workspace: &str, url: &str) -> Vec<Value> {
    let text = read(&format!("examples/gitops/flux/{file}"))
        .replace("flux-system", &flux.namespace)
        .replace("ml-platform", workspace)
        .replace("https://github.com/your-org/zenml-config", url);
    let mut docs = documents(&text);
    for d in &mut docs {
        if d["kind"] == "Kustomization" {
            d["spec"]["timeout"] = json!("20s");
        }
    }
    docs
}

fn apply_json(docs: &[Value]) {
    for d in docs {
        let text = serde_json::to_string(d).expect("json");
        let out = run_stdin(kubectl().args(["apply", "--server-side", "--field-manager=e2e-gitops", "-f", "-"]), &text);
        assert!(out.success(), "kubectl apply failed: {}\n{text}", out.stderr);
    }
}

/// Asks Flux to reconcile now, as `flux reconcile` does.
fn request_reconcile(flux: &Flux, kind: &str, name: &str) {
    let now = format!("{:?}", Instant::now());
    run_ok(
        kubectl()
            .args(["annotate", "--overwrite", "-n", &flux.namespace, kind, name])
            .arg(format!("reconcile.fluxcd.io/requestedAt={now}")),
    );
}

/// The Kustomization's Ready condition and last applied revision.
fn kustomization(flux: &Flux, name: &str) -> (Option<e2e::StatusCondition>, String) {
    let out = run(kubectl().args(["get", "-n", &flux.namespace, "kustomization", name, "-o", "json"]));
    if !out.success() {
        return (None, String::new());
    }
    let obj: Value = serde_json::from_str(&out.stdout).expect("json");
    (e2e::condition(&obj, "Ready"), obj["status"]["lastAppliedRevision"].as_str().unwrap_or_default().to_owned())
}

/// The examples with this test's names: every `ml-platform`, `fraud-detection` and `recommender` renamed, so runs and
/// the kpt test never share an object. (path in the repository, content)
fn renamed_examples(ws: &str, fd: &str, rec: &str) -> Vec<(String, String)> {
    ["kustomization.yaml", "workspace.yaml", "projects/fraud-detection.yaml", "projects/recommender.yaml"]
        .iter()
        .map(|f| {
            let text = read(&format!("examples/{f}"))
                .replace("ml-platform", ws)
                .replace("fraud-detection", fd)
                .replace("recommender", rec);
            (format!("examples/{}", f.replace("fraud-detection", fd).replace("recommender", rec)), text)
        })
        .collect()
}

/// Cluster objects deleted when a test ends, also when it fails; Flux's own objects first, so it prunes nothing more.
struct Cleanup {
    namespace: String,
    flux: Vec<(&'static str, String)>,
    cluster: Vec<(&'static str, String)>,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let ns = &self.namespace;
        for (kind, name) in &self.flux {
            delete_nowait(&["-n", ns, kind, name]);
        }
        for (kind, name) in &self.flux {
            let _ = run(kubectl().args(["wait", "--for=delete", "--timeout=60s", "-n", ns, kind, name]));
        }
        for (kind, name) in &self.cluster {
            delete_nowait(&[kind, name]);
        }
        for (kind, name) in &self.cluster {
            let _ = e2e::wait_gone(kind, std::slice::from_ref(name), TIMEOUT);
        }
        for n in &self.namespaces {
            delete_nowait(&["namespace", n]);
        }
    }
}

/// Flux applies the examples from git, with `wait` and `prune`: Ready only when every Project and binding is, naming
/// the refused ones until git fixes them; a quota commit reaches the ResourceQuota; drift on a Project is undone by
/// Flux and on its children by the operator, with no write between them for a minute; a project removed from git is
/// pruned, and its deletionPolicy holds (Retain keeps the namespace and what is in it).
#[tokio::test]
async fn flux_reconciles_the_examples_from_git() {
    operator::shared();
    let flux = Flux::start();
    let ws = unique("e2e-flux-ws");
    let (fd, rec) = (format!("{ws}-fd"), format!("{ws}-rec"));
    let (greedy, intruders) = (format!("{ws}-greedy"), format!("{fd}-intruders"));
    let mut cleanup = Cleanup {
        namespace: flux.namespace.clone(),
        flux: vec![("kustomization", "zenml".into()), ("gitrepository", "zenml".into())],
        cluster: vec![],
        namespaces: vec![fd.clone(), rec.clone(), greedy.clone()],
    };
    // Cleanup without Flux, should it be gone: bindings, then projects, then the workspace.
    for b in ["developers", "admins", "intruders"] {
        cleanup.cluster.push(("projectrolebinding", format!("{fd}-{b}")));
    }
    for b in ["contributors", &format!("runner-reads-{fd}"), "pipeline-runners"] {
        cleanup.cluster.push(("projectrolebinding", format!("{rec}-{b}")));
    }
    for p in [&fd, &rec, &greedy] {
        cleanup.cluster.push(("project", p.clone()));
    }
    cleanup.cluster.push(("workspace", ws.clone()));

    let repo = Repo::new();
    let mut files = renamed_examples(&ws, &fd, &rec);
    // The workspace's custom role is a ClusterRole the platform team owns (and the operator the tests run may bind by
    // its name): applied once here, never by Flux, whose prune would take it from everyone else.
    let workspace_file = files.iter_mut().find(|(p, _)| p == "examples/workspace.yaml").expect("workspace.yaml");
    let (workspace_only, cluster_role) = workspace_file.1.split_once("\n---\n").expect("two documents");
    // Left as found: made here only if missing (the demo or the kpt test may hold it), and then deleted after, or the
    // kpt test would find it owned by this test.
    let role_exists = run(kubectl().args(["get", "clusterrole", "zenml-pipeline-runner", "-o", "name"])).success();
    if !role_exists {
        super::apply(cluster_role);
        cleanup.cluster.push(("clusterrole", "zenml-pipeline-runner".into()));
    }
    workspace_file.1 = workspace_only.to_owned();
    // Two refusals: a binding to a role the workspace does not allow, a project over the workspace's budget.
    let refused = format!(
        "apiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata:\n  name: {greedy}\nspec:\n  workspace: {ws}\n  \
         quota:\n    hard: {{requests.cpu: \"100\"}}\n---\napiVersion: zenml.io/v1alpha1\nkind: ProjectRoleBinding\n\
         metadata:\n  name: {intruders}\nspec:\n  project: {fd}\n  role: cluster-admin\n  subjects:\n    - {{kind: Group, \
         name: intruders}}\n"
    );
    files.push(("examples/refused.yaml".into(), refused.clone()));
    let kustomization_file = files.iter_mut().find(|(p, _)| p == "examples/kustomization.yaml").expect("kustomization");
    kustomization_file.1.push_str("  - refused.yaml\n");
    let kustomization_text = kustomization_file.1.clone();
    let borrowed: Vec<(&str, Option<&str>)> = files.iter().map(|(p, c)| (p.as_str(), Some(c.as_str()))).collect();
    repo.commit("the examples, and two refusals", &borrowed);

    apply_json(&flux_example(&flux, "sync.yaml", &ws, &repo.url));
    let (cond, _) = eventually(TIMEOUT, "the Kustomization to fail, naming what is refused", || async {
        match kustomization(&flux, "zenml") {
            (Some(c), rev) if c.status == "False" && c.message.contains("timeout waiting for") => Some((c, rev)),
            _ => None,
        }
    })
    .await;
    assert!(cond.message.contains(&format!("Project/{greedy} ")), "{cond}");
    assert!(cond.message.contains(&format!("ProjectRoleBinding/{intruders} ")), "{cond}");
    assert!(!cond.message.contains(&format!("Project/{fd} ")), "{cond}");
    assert_eq!(read_condition("project", &greedy, "Ready").map(|c| c.reason).as_deref(), Some("BudgetExceeded"));
    assert_eq!(
        read_condition("projectrolebinding", &intruders, "Ready").map(|c| c.reason).as_deref(),
        Some("RoleNotAllowed")
    );

    // Fixed in git: Ready, and only with every Project and binding Ready.
    let fixed = refused.replace("\"100\"", "\"1\"").replace("cluster-admin", "viewer");
    let pushed = Instant::now();
    let revision = repo.commit("fix the refusals", &[("examples/refused.yaml", Some(&fixed))]);
    request_reconcile(&flux, "gitrepository", "zenml");
    eventually(TIMEOUT, "the Kustomization to be Ready at the fixed revision", || async {
        match kustomization(&flux, "zenml") {
            (Some(c), rev) if c.status == "True" && rev.ends_with(&revision) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    eprintln!("flux: fix pushed to Kustomization Ready in {:?}", pushed.elapsed());
    let mut objects: Vec<(&str, String)> = vec![("workspace", ws.clone())];
    objects.extend([&fd, &rec, &greedy].map(|p| ("project", p.clone())));
    for b in documents(
        &files
            .iter()
            .filter(|(p, _)| p != "examples/refused.yaml")
            .map(|(_, c)| c.as_str())
            .collect::<Vec<_>>()
            .join("\n---\n"),
    )
    .iter()
    .chain(documents(&fixed).iter())
    .filter(|d| d["kind"] == "ProjectRoleBinding")
    {
        objects.push(("projectrolebinding", b["metadata"]["name"].as_str().expect("a name").to_owned()));
    }
    assert_eq!(objects.len(), 4 + 6, "{objects:?}");
    for (kind, name) in &objects {
        let c = read_condition(kind, name, "Ready");
        assert_eq!(c.as_ref().map(|c| c.status.as_str()), Some("True"), "{kind} {name}: {c:?}");
    }

    // A quota change in git reaches the ResourceQuota.
    let fd_file = format!("examples/projects/{fd}.yaml");
    let fd_text = files.iter().find(|(p, _)| *p == fd_file).expect("fraud-detection").1.clone();
    let lowered = fd_text.replace("requests.cpu: \"16\"", "requests.cpu: \"12\"");
    assert_ne!(lowered, fd_text, "the example's quota changed: update this test");
    let pushed = Instant::now();
    repo.commit("lower fraud-detection's cpu quota", &[(&fd_file, Some(&lowered))]);
    request_reconcile(&flux, "gitrepository", "zenml");
    eventually(TIMEOUT, "the quota change to reach the ResourceQuota", || async {
        let quotas = e2e::kubectl_json(&["get", "resourcequota", "-n", &fd]);
        let hard: BTreeSet<String> = quotas["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|q| q["spec"]["hard"]["requests.cpu"].as_str().map(str::to_owned))
            .collect();
        (hard == BTreeSet::from(["12".to_owned()])).then_some(())
    })
    .await;
    eprintln!("flux: quota commit pushed to ResourceQuota in {:?}", pushed.elapsed());

    // Drift by hand: on the Project, undone by Flux; on its children, by the operator.
    run_ok(kubectl().args(["patch", "project", &fd, "--type=merge", "-p", r#"{"spec": {"displayName": "drifted"}}"#]));
    let quota = e2e::kubectl_json(&["get", "resourcequota", "-n", &fd])["items"][0]["metadata"]["name"]
        .as_str()
        .expect("a ResourceQuota")
        .to_owned();
    run_ok(kubectl().args(["delete", "resourcequota", "-n", &fd, &quota]));
    request_reconcile(&flux, "kustomization", "zenml");
    eventually(TIMEOUT, "Flux to undo the Project's drift", || async {
        (live("project", &fd)["spec"]["displayName"] == "Fraud detection").then_some(())
    })
    .await;
    eventually(TIMEOUT, "the operator to restore the ResourceQuota", || async {
        run(kubectl().args(["get", "resourcequota", "-n", &fd, &quota])).success().then_some(())
    })
    .await;

    // No write loop: for a minute, with Flux asked to reconcile every 10 s, neither writes to any of these objects.
    // The drift's last echo first: the project's status counts the recreated ResourceQuota's use (at most every 10 s).
    settle(&fd).await;
    let writes = Writes::watch(&ws, &[&fd, &rec, &greedy], &objects);
    // A write of this test's own first, so a watch that saw nothing cannot pass for a quiet cluster.
    // (a ServiceAccount in a project namespace: neither Flux nor the operator has any business with it, and no quota
    // counts it, which would make the operator update the project's status.quota.used).
    // The watches start a moment after kubectl does, so the probe is written until one is seen.
    run_ok(kubectl().args(["create", "serviceaccount", "probe", "-n", &fd]));
    let mut probes = 0;
    eventually(TIMEOUT, "the watches to see the probe", || {
        probes += 1;
        let _ = run(kubectl()
            .args(["annotate", "--overwrite", "serviceaccount", "probe", "-n", &fd])
            .arg(format!("e2e.zenml.io/probe={probes}")));
        std::thread::sleep(Duration::from_millis(500));
        let seen = writes.take();
        async move { (!seen.is_empty()).then_some(()) }
    })
    .await;
    std::thread::sleep(Duration::from_secs(1));
    writes.take();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        request_reconcile(&flux, "kustomization", "zenml");
        std::thread::sleep(Duration::from_secs(10));
    }
    let seen = writes.stop();
    eprintln!("flux: {} writes to the examples' objects and children in 60 s of Flux reconciles", seen.len());
    assert!(seen.is_empty(), "Flux and the operator wrote while idle: {seen:#?}");

    // Data in the Retain project's namespace, to see it outlive the project.
    run_ok(kubectl().args(["create", "configmap", "data", "-n", &fd, "--from-literal=model=v1"]));
    // Removed from git: pruned, and each deletionPolicy honoured.
    let without_rec = kustomization_text.replace(&format!("  - projects/{rec}.yaml\n"), "");
    repo.commit(
        "remove recommender",
        &[(&format!("examples/projects/{rec}.yaml"), None), ("examples/kustomization.yaml", Some(&without_rec))],
    );
    request_reconcile(&flux, "gitrepository", "zenml");
    eventually(TIMEOUT, "recommender (Delete) and its namespace to be pruned", || async {
        let gone = |args: &[&str]| run(kubectl().args(["get", "--ignore-not-found", "-o", "name"]).args(args)).stdout;
        (gone(&["project", &rec]).is_empty() && gone(&["namespace", &rec]).is_empty()).then_some(())
    })
    .await;
    let without_fd = without_rec.replace(&format!("  - projects/{fd}.yaml\n"), "");
    // refused.yaml holds a binding in fraud-detection: it goes with it.
    let without_fd = without_fd.replace("  - refused.yaml\n", "");
    repo.commit(
        "remove fraud-detection",
        &[(&fd_file, None), ("examples/refused.yaml", None), ("examples/kustomization.yaml", Some(&without_fd))],
    );
    request_reconcile(&flux, "gitrepository", "zenml");
    eventually(TIMEOUT, "fraud-detection (Retain) to be pruned", || async {
        run(kubectl().args(["get", "--ignore-not-found", "-o", "name", "project", &fd])).stdout.is_empty().then_some(())
    })
    .await;
    let ns = live("namespace", &fd);
    assert_eq!(ns["metadata"]["annotations"]["zenml.io/former-project"], json!(fd), "{ns}");
    assert_eq!(live_in(&fd, "configmap", "data")["data"]["model"], "v1");
    drop(cleanup);
    drop(flux);
}

/// One repository, several workspaces: a Kustomization impersonating a workspace admin's ServiceAccount
/// (`examples/gitops/flux/workspace-sync.yaml`) makes that workspace's Projects, and a commit adding a Project of
/// another workspace is refused by the API server (the delegation policy, which the Kustomization names), so nothing is
/// created there; taken out of git again, the Kustomization is Ready. A new project's bindings come in a later commit
/// than the project: in the same one, the binding is refused and so the whole commit.
#[tokio::test]
async fn a_kustomization_impersonating_a_workspace_admin_manages_only_its_workspace() {
    operator::shared();
    let flux = Flux::start();
    let ws = unique("e2e-flux-tenant");
    let other = unique("e2e-flux-other");
    let (own, intruder) = (format!("{ws}-p"), format!("{other}-p"));
    let (deployer, projects) = (format!("{ws}-deployer"), format!("{ws}-projects"));
    let user = format!("system:serviceaccount:{}:{deployer}", flux.namespace);
    let mut cleanup = Cleanup {
        namespace: flux.namespace.clone(),
        flux: vec![("kustomization", projects.clone()), ("gitrepository", "zenml".into())],
        cluster: vec![
            ("project", own.clone()),
            ("project", intruder.clone()),
            ("workspace", ws.clone()),
            ("workspace", other.clone()),
            ("clusterrolebinding", format!("{deployer}-self-service")),
        ],
        namespaces: vec![own.clone(), intruder.clone()],
    };

    // The platform team's part, as cluster admin: the workspaces, the deployer an admin of one of them.
    let admin = |subject: Value| json!({"members": [{"role": "admin", "subjects": [subject]}]});
    apply_json(&[
        e2e::zenml_object(
            "Workspace",
            &ws,
            admin(json!({"kind": "ServiceAccount", "name": deployer, "namespace": flux.namespace})),
        ),
        e2e::zenml_object("Workspace", &other, admin(json!({"kind": "Group", "name": format!("{other}-admins")}))),
    ]);
    let repo = Repo::new();
    let file = |project: &str| format!("workspaces/{ws}/{project}.yaml");
    let project = |name: &str, workspace: &str| {
        format!(
            "apiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata:\n  name: {name}\nspec:\n  workspace: {workspace}\n"
        )
    };
    let first = repo.commit("a project of the workspace", &[(&file(&own), Some(&project(&own, &ws)))]);
    // sync.yaml's GitRepository, and the workspace's Kustomization with its ServiceAccount, as users apply them.
    let git = flux_example(&flux, "sync.yaml", &ws, &repo.url).into_iter().filter(|d| d["kind"] == "GitRepository");
    let tenant = flux_example(&flux, "workspace-sync.yaml", &ws, &repo.url);
    let ks = tenant.iter().find(|d| d["kind"] == "Kustomization").expect("a Kustomization");
    assert_eq!(ks["metadata"]["name"], json!(projects));
    assert_eq!(ks["spec"]["serviceAccountName"], json!(deployer));
    assert_eq!(ks["spec"]["path"], json!(format!("./workspaces/{ws}")));
    // The delegation is the operator's (the Workspace's admins); applied only once the authorizer has it, since a
    // refused first apply would wait for the Kustomization's retry interval.
    let can = |workspace: &str| {
        run(kubectl()
            .args(["auth", "can-i", "manage-projects", &format!("workspaces.zenml.io/{workspace}")])
            .args(["--as", &user]))
        .stdout
        .trim()
        .to_owned()
    };
    eventually(TIMEOUT, "the deployer to be delegated its workspace's projects", || async {
        (can(&ws) == "yes").then_some(())
    })
    .await;
    assert_eq!(can(&other), "no");
    apply_json(&git.chain(tenant).collect::<Vec<_>>());

    ready_at(&flux, &projects, &first).await;
    let ready = read_condition("project", &own, "Ready");
    assert_eq!(ready.as_ref().map(|c| c.status.as_str()), Some("True"), "{ready:?}");

    // A Project of another workspace in the same directory: refused by the API server, named by the Kustomization.
    let second =
        repo.commit("a project of another workspace", &[(&file(&intruder), Some(&project(&intruder, &other)))]);
    request_reconcile(&flux, "gitrepository", "zenml");
    let refused = refused_at(&flux, &projects, &second).await;
    eprintln!("flux: {refused}");
    assert!(refused.message.contains("zenml-project-delegation"), "{refused}");
    assert!(
        refused.message.contains(&format!("{user} may not create, change or delete projects of workspace {other}")),
        "{refused}"
    );
    let gone = |kind: &str, name: &str| {
        run(kubectl().args(["get", "--ignore-not-found", "-o", "name", kind, name])).stdout.trim().is_empty()
    };
    assert!(gone("project", &intruder), "a project of {other} was created");
    assert!(gone("namespace", &intruder), "a namespace of {other}'s project was created");
    let (_, revision) = kustomization(&flux, &projects);
    assert!(revision.ends_with(&first), "applied {revision}, not the refused commit");

    // Taken out of git: Ready again, and still nothing in the other workspace.
    let third = repo.commit("remove the other workspace's project", &[(&file(&intruder), None)]);
    request_reconcile(&flux, "gitrepository", "zenml");
    ready_at(&flux, &projects, &third).await;
    assert!(gone("project", &intruder));

    // A new project and its binding in one commit: the binding is refused (its project does not exist yet, so the
    // deployer administers no project of that name), and Flux applies nothing of a commit it cannot apply whole: the
    // project is not created either. The binding follows once the project is there.
    let (new, viewers) = (format!("{ws}-q"), format!("{ws}-q-viewers"));
    cleanup.cluster.insert(0, ("projectrolebinding", viewers.clone()));
    cleanup.cluster.insert(1, ("project", new.clone()));
    cleanup.namespaces.push(new.clone());
    let binding = format!(
        "apiVersion: zenml.io/v1alpha1\nkind: ProjectRoleBinding\nmetadata:\n  name: {viewers}\nspec:\n  project: {new}\n  \
         role: viewer\n  subjects:\n    - {{kind: Group, name: {viewers}}}\n"
    );
    let both = repo.commit(
        "a new project with its binding",
        &[(&file(&new), Some(&project(&new, &ws))), (&file(&viewers), Some(&binding))],
    );
    request_reconcile(&flux, "gitrepository", "zenml");
    let refused = refused_at(&flux, &projects, &both).await;
    eprintln!("flux: {refused}");
    assert!(refused.message.contains("zenml-binding-delegation"), "{refused}");
    assert!(refused.message.contains(&format!("role bindings of project {new}")), "{refused}");
    assert!(gone("project", &new), "the project of a commit refused as a whole was created");
    let project_first = repo.commit("the project first", &[(&file(&viewers), None)]);
    request_reconcile(&flux, "gitrepository", "zenml");
    ready_at(&flux, &projects, &project_first).await;
    let then_binding = repo.commit("then its binding", &[(&file(&viewers), Some(&binding))]);
    request_reconcile(&flux, "gitrepository", "zenml");
    ready_at(&flux, &projects, &then_binding).await;
    let bound = read_condition("projectrolebinding", &viewers, "Ready");
    assert_eq!(bound.as_ref().map(|c| c.status.as_str()), Some("True"), "{bound:?}");
    drop(cleanup);
    drop(flux);
}

/// Waits until Kustomization `name` is Ready at `revision`.
async fn ready_at(flux: &Flux, name: &str, revision: &str) {
    eventually(TIMEOUT, &format!("Kustomization {name} to be Ready at {revision}"), || async {
        match kustomization(flux, name) {
            (Some(c), rev) if c.status == "True" && rev.ends_with(revision) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// Waits until Kustomization `name` has tried `revision` and is not Ready; returns its Ready condition.
async fn refused_at(flux: &Flux, name: &str, revision: &str) -> e2e::StatusCondition {
    eventually(TIMEOUT, &format!("Kustomization {name} to report why {revision} is refused"), || async {
        let obj = e2e::kubectl_json(&["get", "-n", &flux.namespace, "kustomization", name]);
        let attempted = obj["status"]["lastAttemptedRevision"].as_str().unwrap_or_default().ends_with(revision);
        match e2e::condition(&obj, "Ready") {
            Some(c) if attempted && c.status == "False" => Ok(c),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Waits until project `name` has not changed for 15 s.
async fn settle(name: &str) {
    let mut last = (String::new(), Instant::now());
    eventually(TIMEOUT, &format!("project {name} to settle"), || {
        let version = live("project", name)["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_owned();
        if version != last.0 {
            last = (version, Instant::now());
        }
        let settled = last.1.elapsed() >= Duration::from_secs(15);
        async move { settled.then_some(()) }
    })
    .await;
}

fn live_in(namespace: &str, kind: &str, name: &str) -> Value {
    e2e::kubectl_json(&["get", "-n", namespace, kind, name])
}

/// Writes seen by `kubectl get --watch-only`, one watch per type, while it runs.
struct Writes {
    watches: Vec<Child>,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Writes {
    /// Watches the workspace, `objects` (kind, name) and every object in `namespaces` of the kinds the operator makes.
    fn watch(ws: &str, namespaces: &[&str], objects: &[(&str, String)]) -> Writes {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut watches = Vec::new();
        let names: BTreeSet<String> = objects
            .iter()
            .map(|(_, n)| n.clone())
            .chain([ws.to_owned()])
            .chain(namespaces.iter().map(|n| n.to_string()))
            .collect();
        let namespaces: BTreeSet<String> = namespaces.iter().map(|n| n.to_string()).collect();
        let columns = "custom-columns=NS:.metadata.namespace,NAME:.metadata.name,RV:.metadata.resourceVersion";
        for kind in [
            "workspaces",
            "projects",
            "projectrolebindings",
            "namespaces",
            "resourcequotas",
            "limitranges",
            "networkpolicies",
            "rolebindings",
            "serviceaccounts",
        ] {
            let mut child = kubectl()
                .args(["get", kind, "-A", "--watch-only", "--no-headers", "-o", columns])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl starts");
            let stdout = child.stdout.take().expect("piped");
            let (seen, names, namespaces) = (seen.clone(), names.clone(), namespaces.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let [ns, name, ..] = fields[..] else { continue };
                    let ours = if ns == "<none>" { names.contains(name) } else { namespaces.contains(ns) };
                    if ours {
                        seen.lock().expect("lock").push(format!("{kind} {line}"));
                    }
                }
            });
            watches.push(child);
        }
        Writes { watches, seen }
    }

    /// The writes seen so far, forgotten.
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }

    fn stop(mut self) -> Vec<String> {
        for w in &mut self.watches {
            let _ = w.kill();
            let _ = w.wait();
        }
        std::mem::take(&mut *self.seen.lock().expect("lock"))
    }
}
