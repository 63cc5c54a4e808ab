//! Network walls, measured with real packets: pods running the network probe on the cluster's node, whose
//! NetworkPolicies kube-router's firewall enforces (`e2e/cluster`), and one real TCP connection per cell with a short
//! timeout (`e2e::network`). What a Project's `networkIsolation` promises (DESIGN.md, Provisioning): `Project`
//! admits ingress from its own namespace only, `Workspace` from the namespaces of its workspace, `None` from
//! anywhere; egress stays open. A cross-project grant opens no network; the operator restores a policy deleted by
//! hand; members cannot open the wall from inside (admission), and their narrowing policies hold.
//!
//! Times are printed (`cargo test ... -- --nocapture`); docs/network.md says where the figures are kept.
//! Without a node these tests fail with the reason `e2e/cluster up` gave.

use std::time::{Duration, Instant};

use e2e::network::{self, CONVERGE, Matrix, PORT, PORTS, Probe, TIMEOUT, Walls, ready};
use e2e::{kubectl, kubectl_json, run, run_stdin, unique, wait_condition, zenml_object};
use serde_json::{Value, json};

/// The operator's NetworkPolicy in each walled project namespace.
const WALL: &str = "zenml-project-isolation";
const WALLS_POLICY: &str = "zenml-network-walls";

fn isolation(i: &str) -> Value {
    json!({"networkIsolation": i})
}

/// Whether the operator's NetworkPolicy exists in `namespace` now.
fn wall_exists(namespace: &str) -> bool {
    let out = run(kubectl().args(["get", "networkpolicy", WALL, "-n", namespace, "--ignore-not-found", "-o", "name"]));
    out.success() && !out.stdout.trim().is_empty()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `networkIsolation: Project`: the same namespace is allowed; another project of the same workspace, another
/// workspace's project and a namespace that is no project's are refused. Egress stays open: a walled pod reaches a
/// namespace without a wall, and the API server.
#[tokio::test]
async fn project_isolation_admits_its_own_namespace_only() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", json!({}));
    let other_ws = t.workspace("e2e-net-ows", json!({}));
    let a = t.project("e2e-net-a", &ws, isolation("Project"));
    let b = t.project("e2e-net-b", &ws, json!({}));
    let c = t.project("e2e-net-c", &other_ws, json!({}));
    let plain = t.plain_namespace("e2e-net-plain").await;
    for p in [&a, &b, &c] {
        ready(p).await;
    }
    assert!(wall_exists(&a) && wall_exists(&b) && wall_exists(&c), "every project defaults to a Project wall");
    let [server, peer, same_ws, other, outside] =
        network::probes([(&a, "server"), (&a, "peer"), (&b, "client"), (&c, "client"), (&plain, "client")]).await;

    let mut m = Matrix::new("networkIsolation: Project");
    m.cell("same namespace: allowed", &peer, &server, true).await;
    m.cell_port("same namespace, second port: allowed", &peer, &server, PORTS[1], true).await;
    m.cell("another project of the workspace: refused", &same_ws, &server, false).await;
    m.cell("another workspace's project: refused", &other, &server, false).await;
    m.cell("a namespace that is no project's: refused", &outside, &server, false).await;
    m.cell_port("... on the second port too: refused", &outside, &server, PORTS[1], false).await;
    m.cell("egress to a namespace without a wall: allowed", &peer, &outside, true).await;
    m.cell_to("egress to the API server (10.96.0.1:443): allowed", &peer, "10.96.0.1", 443, true).await;
    let host = network::HostServer::start();
    m.cell_to("egress outside the cluster (the node's host): allowed", &peer, &host.ip, host.port, true).await;
    m.finish();
}

/// `networkIsolation: Workspace`: the namespaces of the workspace are inside the wall, other workspaces' and
/// namespaces that are no project's are not.
#[tokio::test]
async fn workspace_isolation_admits_the_workspace_only() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", isolation("Workspace"));
    let other_ws = t.workspace("e2e-net-ows", isolation("Workspace"));
    let a = t.project("e2e-net-a", &ws, json!({}));
    let b = t.project("e2e-net-b", &ws, json!({}));
    let c = t.project("e2e-net-c", &other_ws, json!({}));
    let plain = t.plain_namespace("e2e-net-plain").await;
    for p in [&a, &b, &c] {
        ready(p).await;
    }
    let [server, peer, same_ws, other, outside] =
        network::probes([(&a, "server"), (&a, "peer"), (&b, "client"), (&c, "client"), (&plain, "client")]).await;

    let mut m = Matrix::new("networkIsolation: Workspace");
    m.cell("same namespace: allowed", &peer, &server, true).await;
    m.cell("another project of the workspace: allowed", &same_ws, &server, true).await;
    m.cell("another workspace's project: refused", &other, &server, false).await;
    m.cell("a namespace that is no project's: refused", &outside, &server, false).await;
    m.finish();
}

/// `networkIsolation: None`: no wall, no NetworkPolicy; everyone connects.
#[tokio::test]
async fn no_isolation_admits_everyone() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", isolation("None"));
    let other_ws = t.workspace("e2e-net-ows", json!({}));
    let a = t.project("e2e-net-a", &ws, json!({}));
    let b = t.project("e2e-net-b", &ws, json!({}));
    let c = t.project("e2e-net-c", &other_ws, json!({}));
    let plain = t.plain_namespace("e2e-net-plain").await;
    for p in [&a, &b, &c] {
        ready(p).await;
    }
    assert!(!wall_exists(&a), "a project without isolation has no NetworkPolicy:\n{}", network::policies(&a));
    let [server, peer, same_ws, other, outside] =
        network::probes([(&a, "server"), (&a, "peer"), (&b, "client"), (&c, "client"), (&plain, "client")]).await;

    let mut m = Matrix::new("networkIsolation: None");
    m.cell("same namespace: allowed", &peer, &server, true).await;
    m.cell("another project of the workspace: allowed", &same_ws, &server, true).await;
    m.cell("another workspace's project: allowed", &other, &server, true).await;
    m.cell("a namespace that is no project's: allowed", &outside, &server, true).await;
    m.finish();
}

/// A ProjectRoleBinding that grants project B's runner ServiceAccount a role in project A shares API access, not
/// the network: a pod of B running as that ServiceAccount is still refused by A's wall (docs/network.md).
#[tokio::test]
async fn a_cross_project_grant_does_not_open_the_network() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", json!({}));
    let a = t.project("e2e-net-a", &ws, json!({}));
    let b = t.project("e2e-net-b", &ws, json!({}));
    ready(&a).await;
    ready(&b).await;
    let grant = unique("e2e-net-grant");
    t.made.apply(&zenml_object(
        "ProjectRoleBinding",
        &grant,
        json!({"project": a, "role": "developer",
               "subjects": [{"kind": "ServiceAccount", "name": "zenml-runner", "project": b}]}),
    ));
    wait_condition("projectrolebinding", &grant, "Ready", TIMEOUT, &format!("binding {grant} Bound"), |c| {
        c.status == "True"
    })
    .await;
    // The grant is real: the runner of B may create pods in A.
    let can = run(kubectl().args([
        "auth",
        "can-i",
        "create",
        "pods",
        "-n",
        &a,
        &format!("--as=system:serviceaccount:{b}:zenml-runner"),
    ]));
    assert_eq!(can.stdout.trim(), "yes", "the grant gives B's runner rights in A: {}", can.stderr);

    let mut runner = network::pod(&b, "runner");
    runner["spec"]["serviceAccountName"] = json!("zenml-runner");
    let pods = [network::pod(&a, "server"), network::pod(&a, "peer"), runner];
    let [server, peer, runner]: [Probe; 3] = network::start(&pods).await.try_into().unwrap();

    let mut m = Matrix::new("a ProjectRoleBinding sharing a grant between projects");
    m.cell("same namespace: allowed", &peer, &server, true).await;
    m.cell("the granted project's runner pod: still refused", &runner, &server, false).await;
    m.finish();
}

/// Changing a project's isolation takes effect within a measured time, each way: Project -> Workspace opens the
/// wall to the workspace, -> None to everyone, -> Project closes it again.
#[tokio::test]
async fn changing_isolation_takes_effect_within_seconds() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", json!({}));
    let a = t.project("e2e-net-a", &ws, isolation("Project"));
    let b = t.project("e2e-net-b", &ws, json!({}));
    let plain = t.plain_namespace("e2e-net-plain").await;
    ready(&a).await;
    ready(&b).await;
    let [server, same_ws, outside] = network::probes([(&a, "server"), (&b, "client"), (&plain, "client")]).await;
    same_ws.expect("before: Project", &server, PORT, false, CONVERGE).await;

    let isolate = |to: &str| {
        let patch = json!({"spec": {"networkIsolation": to}}).to_string();
        let out = run(kubectl().args(["patch", "project", &a, "--type=merge", "-p", &patch]));
        assert!(out.success(), "patch project {a}: {}", out.stderr);
        Instant::now()
    };
    let mut report = Vec::new();
    let t0 = isolate("Workspace");
    same_ws.expect("Project -> Workspace: the workspace gets in", &server, PORT, true, CONVERGE).await;
    report.push(format!("Project -> Workspace, another project of the workspace connects: {}", secs(t0.elapsed())));
    outside.expect("Workspace: others stay out", &server, PORT, false, CONVERGE).await;

    let t0 = isolate("None");
    outside.expect("Workspace -> None: everyone gets in", &server, PORT, true, CONVERGE).await;
    report.push(format!("Workspace -> None, a namespace that is no project's connects: {}", secs(t0.elapsed())));

    let t0 = isolate("Project");
    same_ws.expect("None -> Project: the workspace is out again", &server, PORT, false, CONVERGE).await;
    report.push(format!("None -> Project, another project of the workspace refused: {}", secs(t0.elapsed())));
    outside.expect("None -> Project: others are out again", &server, PORT, false, CONVERGE).await;
    println!("isolation changes, from `kubectl patch` to the first connection that shows it:");
    for line in report {
        println!("  {line}");
    }
}

/// The operator's NetworkPolicy deleted by hand (a cluster admin; members cannot) is made again, and traffic from
/// outside is refused again.
#[tokio::test]
async fn a_wall_deleted_by_hand_is_restored_and_holds_again() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", json!({}));
    let a = t.project("e2e-net-a", &ws, json!({}));
    let plain = t.plain_namespace("e2e-net-plain").await;
    ready(&a).await;
    let [server, outside] = network::probes([(&a, "server"), (&plain, "client")]).await;
    outside.expect("walled", &server, PORT, false, CONVERGE).await;

    let deleted = Instant::now();
    let out = run(kubectl().args(["delete", "networkpolicy", WALL, "-n", &a, "--wait=false"]));
    assert!(out.success(), "delete networkpolicy {WALL}: {}", out.stderr);
    // Sample the gap: until the policy is back and a connection is refused again, note whether one got through.
    let mut got_through = None;
    let mut restored = None;
    let refused = loop {
        if restored.is_none() && wall_exists(&a) {
            restored = Some(deleted.elapsed());
        }
        let outcome = outside.connect(&server, PORT);
        if outcome.connected() {
            got_through.get_or_insert(deleted.elapsed());
        } else if restored.is_some() {
            break deleted.elapsed();
        }
        assert!(
            deleted.elapsed() < CONVERGE,
            "the wall was not back within {CONVERGE:?} (policy restored after {restored:?}, last {outcome}):\n{}",
            network::policies(&a)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let restored = restored.expect("restored before refused");
    println!(
        "NetworkPolicy deleted by hand: restored by the operator after {}, first refused connection after {}{}",
        secs(restored),
        secs(refused),
        match got_through {
            Some(at) => format!(" (a connection got through at {}: the gap is real)", secs(at)),
            None => " (no connection got through in between)".to_owned(),
        }
    );
    // And it holds.
    let mut m = Matrix::new("after the restore");
    m.cell("a namespace that is no project's: refused", &outside, &server, false).await;
    m.finish();
}

/// Members cannot open the wall from inside: a developer's NetworkPolicy admitting everyone is refused at admission,
/// and packets stay refused. A narrowing one is admitted and holds: NetworkPolicies add up, so under the `Project`
/// wall it cannot take away what the wall admits (the same namespace, every port); with `networkIsolation: None` it
/// is the only policy, and only its port is open.
#[tokio::test]
async fn a_developer_cannot_open_the_wall_and_a_narrowing_policy_holds() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", json!({}));
    let a = t.project("e2e-net-a", &ws, isolation("Project"));
    let plain = t.plain_namespace("e2e-net-plain").await;
    let dev = unique("e2e-net-dev");
    let binding = unique("e2e-net-dev");
    t.made.apply(&zenml_object(
        "ProjectRoleBinding",
        &binding,
        json!({"project": a, "role": "developer", "subjects": [{"kind": "User", "name": dev}]}),
    ));
    ready(&a).await;
    let [server, peer, outside] = network::probes([(&a, "server"), (&a, "peer"), (&plain, "client")]).await;
    let as_dev =
        |obj: &Value| run_stdin(kubectl().args([&format!("--as={dev}"), "create", "-f", "-"]), &obj.to_string());
    let policy = |name: &str, spec: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": a}, "spec": spec})
    };
    // Only port 9090, only from this namespace: what the admission policy lets a member write.
    let narrowing = policy(
        "only-9090",
        json!({"podSelector": {"matchLabels": {"app": "server"}}, "policyTypes": ["Ingress"],
               "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": PORTS[1]}]}]}),
    );
    // The developer's rights reach the authorizer: the narrowing policy is created.
    e2e::eventually(TIMEOUT, &format!("{dev} to create NetworkPolicy only-9090 in {a}"), || async {
        let out = as_dev(&narrowing);
        if out.success() { Ok(()) } else { Err(out.stderr) }
    })
    .await;

    let open = policy("allow-all", json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}));
    let out = as_dev(&open);
    assert!(
        !out.success() && out.stderr.contains(&format!("ValidatingAdmissionPolicy '{WALLS_POLICY}'")),
        "a developer's allow-all NetworkPolicy must be refused by {WALLS_POLICY}: {}{}",
        out.stdout,
        out.stderr
    );
    println!("refused at admission: {}", out.stderr.trim());

    let mut m = Matrix::new("a developer's policies under the Project wall");
    m.cell("outside after the refused allow-all: refused", &outside, &server, false).await;
    m.cell_port("outside, the narrowing policy's port: refused", &outside, &server, PORTS[1], false).await;
    m.cell_port("same namespace, the narrowing policy's port: allowed", &peer, &server, PORTS[1], true).await;
    m.cell("same namespace, another port: allowed (the wall admits it; policies add up)", &peer, &server, true).await;
    m.finish();

    // Without the operator's wall, the developer's policy is the only one: it narrows.
    let patch = json!({"spec": {"networkIsolation": "None"}}).to_string();
    let out = run(kubectl().args(["patch", "project", &a, "--type=merge", "-p", &patch]));
    assert!(out.success(), "patch project {a}: {}", out.stderr);
    e2e::eventually(TIMEOUT, &format!("{WALL} gone from {a}"), || async { (!wall_exists(&a)).then_some(()) }).await;
    let mut none = Matrix::new("the developer's narrowing policy alone (networkIsolation: None)");
    none.cell_port("same namespace, its port: allowed", &peer, &server, PORTS[1], true).await;
    none.cell("same namespace, another port: refused", &peer, &server, false).await;
    none.cell_port("outside, its port: refused", &outside, &server, PORTS[1], false).await;
    none.cell("outside, another port: refused", &outside, &server, false).await;
    let unselected = network::probes([(&a, "other")]).await[0].clone();
    none.cell("a pod it does not select: open to outside", &outside, &unselected, true).await;
    none.finish();
}

/// From `kubectl apply` of a new Project to the first connection its wall refuses: the namespace, the wall and a
/// pod created as soon as the namespace takes pods, and an outside client trying all along. Also says whether any
/// connection got through before the wall held (a pod that starts before its wall is open until then).
#[tokio::test]
async fn time_from_apply_to_the_first_refused_connection() {
    let mut t = Walls::start();
    let ws = t.workspace("e2e-net-ws", json!({}));
    let plain = t.plain_namespace("e2e-net-plain").await;
    ready_workspace(&ws).await;
    let [outside] = network::probes([(&plain, "client")]).await;
    let a = unique("e2e-net-a");
    t.made.project(&a);
    let manifest = zenml_object("Project", &a, json!({"workspace": ws}));

    let applied = Instant::now();
    let out = run_stdin(kubectl().args(["apply", "-f", "-"]), &manifest.to_string());
    assert!(out.success(), "kubectl apply: {}", out.stderr);
    let pod = network::pod(&a, "server");
    let mut wall_at = None;
    let mut created_at = None;
    while created_at.is_none() {
        if wall_at.is_none() && wall_exists(&a) {
            wall_at = Some(applied.elapsed());
        }
        let out = run_stdin(kubectl().args(["create", "-f", "-"]), &pod.to_string());
        if out.success() {
            created_at = Some(applied.elapsed());
        }
        assert!(applied.elapsed() < TIMEOUT, "no pod could be created in {a}: {}", out.stderr);
    }
    // From the moment the pod has an IP, an outside client tries all along: a connection that gets through is the
    // wall missing (the pod started before its policy reached the node); a refusal counts once the pod is Ready (before
    // that, nothing may listen yet).
    let mut got_through: Vec<Duration> = Vec::new();
    let mut ready_at = None;
    let (server, refused_at) = loop {
        let now = applied.elapsed();
        assert!(now < TIMEOUT, "{a} never walled a Ready pod:\n{}", network::policies(&a));
        if wall_at.is_none() && wall_exists(&a) {
            wall_at = Some(now);
        }
        let pod = kubectl_json(&["get", "pod", "server", "-n", &a]);
        let Some(ip) = pod["status"]["podIP"].as_str() else { continue };
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        if ready {
            ready_at.get_or_insert(now);
        }
        let outcome = outside.connect_to(ip, PORT);
        if outcome.connected() {
            got_through.push(now);
        } else if ready {
            let server = Probe { namespace: a.clone(), name: "server".into(), ip: ip.to_owned() };
            break (server, applied.elapsed());
        }
    };
    let wall_at = wall_at.expect("the wall is seen before the first refusal of a Ready pod");
    println!(
        "kubectl apply of Project {a} -> NetworkPolicy seen {}, pod created {}, pod Ready {}, first refused \
         connection {}; {}",
        secs(wall_at),
        secs(created_at.expect("created")),
        secs(ready_at.expect("Ready")),
        secs(refused_at),
        match got_through.first() {
            None => "no connection got through before".to_owned(),
            Some(first) =>
                format!("{} connection(s) got through before, the first at {}", got_through.len(), secs(*first)),
        }
    );
    // Not asserted: kube-router walls a pod once it has seen the pod's IP (its status), so a server that listens
    // before that would be open for that long; docs/network.md says so. This run says whether it was seen.
    let mut m = Matrix::new("the new project");
    m.cell("a namespace that is no project's: refused", &outside, &server, false).await;
    m.finish();
}

async fn ready_workspace(ws: &str) {
    wait_condition("workspace", ws, "Ready", TIMEOUT, &format!("workspace {ws} Ready"), |c| c.status == "True").await;
}
