//! Egress, measured with real packets (see `e2e::network`): a project whose `egress` is `Workspace` reaches its
//! workspace's namespaces, DNS and the API server, nothing else; `AllowList` also what it lists; `Open` everything.
//! The operator restores its policy deleted by hand, a change of mode takes effect within a measured time, and
//! members cannot widen egress from inside (admission) while a narrowing egress rule of theirs is admitted.
//!
//! Ingress walls are off (`networkIsolation: None`) on every target here, so a refused cell is the caller's egress
//! and never the target's wall. Times are printed (`-- --nocapture`). Without a node these tests fail with the reason
//! `e2e/cluster up` gave.

use std::time::{Duration, Instant};

use e2e::network::{self, Matrix, PORT, TIMEOUT, Walls, ready};
use e2e::{kubectl, read_condition, run, run_stdin, unique, zenml_object};
use serde_json::{Value, json};

/// The operator's NetworkPolicy, which carries the egress rules beside the ingress wall.
const WALL: &str = "zenml-project-isolation";
const WALLS_POLICY: &str = "zenml-network-walls";
/// The API server as pods address it: the `kubernetes` Service.
const API_SERVICE: &str = "10.96.0.1";

/// A workspace whose projects have no ingress wall, and `egress` as their default when given.
fn workspace(t: &mut Walls, prefix: &str, egress: Option<Value>) -> String {
    let mut defaults = json!({"networkIsolation": "None"});
    if let Some(e) = egress {
        defaults["egress"] = e;
    }
    t.workspace(prefix, defaults)
}

/// A Project of `workspace`, with its own `egress` when given.
fn project(t: &mut Walls, prefix: &str, workspace: &str, egress: Option<Value>) -> String {
    t.project(prefix, workspace, egress.map(|e| json!({"egress": e})).unwrap_or_else(|| json!({})))
}

/// A probe pod in `kube-system` (the operator's default DNS namespace) serving TCP 53 and [`PORT`]; deleted when
/// dropped, as its namespace stays.
struct DnsStandIn {
    probe: network::Probe,
}

impl DnsStandIn {
    async fn start() -> DnsStandIn {
        let name = unique("e2e-egr-dns");
        let mut pod = network::pod("kube-system", &name);
        pod["spec"]["containers"][0]["args"] = json!(["serve", "53", PORT.to_string()]);
        pod["spec"]["containers"][0]["ports"] = json!([{"containerPort": 53, "protocol": "TCP"}]);
        // Port 53 as a non-root user: a namespaced sysctl in Kubernetes' safe set.
        pod["spec"]["securityContext"]["sysctls"] =
            json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "53"}]);
        let probe = network::start(&[pod]).await.remove(0);
        DnsStandIn { probe }
    }
}

impl Drop for DnsStandIn {
    fn drop(&mut self) {
        let _ = run(kubectl().args(["delete", "pod", &self.probe.name, "-n", "kube-system", "--wait=false"]));
    }
}

fn egress_reason(project: &str) -> String {
    read_condition("project", project, "EgressReady").map(|c| c.reason).unwrap_or_default()
}

fn patch_project(project: &str, patch: Value) {
    let out = run(kubectl().args(["patch", "project", project, "--type=merge", "-p", &patch.to_string()]));
    assert!(out.success(), "patch project {project}: {}", out.stderr);
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `egress: Workspace`: the workspace's namespaces and the API server, through the `kubernetes` Service, are
/// reached; another workspace's project and a namespace that is no project's are not. `Open` reaches all of them.
#[tokio::test]
async fn workspace_egress_reaches_the_workspace_and_the_api_server_only() {
    let mut t = Walls::start();
    let ws = workspace(&mut t, "e2e-egr-ws", Some(json!({"mode": "Workspace"})));
    let other_ws = workspace(&mut t, "e2e-egr-ows", None);
    let a = project(&mut t, "e2e-egr-a", &ws, None);
    let b = project(&mut t, "e2e-egr-b", &ws, None);
    let open = project(&mut t, "e2e-egr-open", &ws, Some(json!({"mode": "Open"})));
    let c = project(&mut t, "e2e-egr-c", &other_ws, None);
    let plain = t.plain_namespace("e2e-egr-plain").await;
    // A namespace whose egress a cluster admin closed entirely: that the API server cell below can fail.
    let fenced = t.plain_namespace("e2e-egr-fenced").await;
    let deny = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "no-egress", "namespace": fenced},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": []}});
    let out = run_stdin(kubectl().args(["create", "-f", "-"]), &deny.to_string());
    assert!(out.success(), "{}", out.stderr);
    for p in [&a, &b, &open, &c] {
        ready(p).await;
    }
    assert_eq!(egress_reason(&a), "EgressWorkspace", "the workspace's default egress");
    assert_eq!(egress_reason(&open), "EgressOpen", "a project's own egress replaces the default");
    let [client, same_ws, other, outside, open_client, fenced_client] = network::probes([
        (&a, "client"),
        (&b, "server"),
        (&c, "server"),
        (&plain, "server"),
        (&open, "client"),
        (&fenced, "client"),
    ])
    .await;

    // DNS: a stand-in for the cluster's DNS (this cluster runs none) in its namespace, serving TCP 53 and another
    // port: restricted egress reaches it on 53 only.
    let dns = DnsStandIn::start().await;
    let mut m = Matrix::new("egress: Workspace");
    m.cell_port("DNS: port 53 in kube-system: allowed", &client, &dns.probe, 53, true).await;
    m.cell_port("DNS: another port in kube-system: refused", &client, &dns.probe, PORT, false).await;
    m.cell("another project of the workspace: allowed", &client, &same_ws, true).await;
    m.cell("another workspace's project: refused", &client, &other, false).await;
    m.cell("a namespace that is no project's: refused", &client, &outside, false).await;
    m.cell_to("the API server (the kubernetes Service): allowed", &client, API_SERVICE, 443, true).await;
    m.cell("egress Open, same workspace: a namespace that is no project's: allowed", &open_client, &outside, true)
        .await;
    m.cell("egress Open: another workspace's project: allowed", &open_client, &other, true).await;
    m.cell_to("no egress allowed at all: the API server refused", &fenced_client, API_SERVICE, 443, false).await;
    m.finish();
}

/// `egress: AllowList` reaches what `Workspace` does and the listed namespaces (an LLM gateway) and CIDRs, and
/// nothing else.
#[tokio::test]
async fn an_allow_list_reaches_only_what_it_lists() {
    let mut t = Walls::start();
    let ws = workspace(&mut t, "e2e-egr-ws", None);
    let gateway = t.plain_namespace("e2e-egr-gw").await;
    let listed = t.plain_namespace("e2e-egr-cidr").await;
    let plain = t.plain_namespace("e2e-egr-plain").await;
    let [gw, by_cidr, outside] = network::probes([(&gateway, "server"), (&listed, "server"), (&plain, "server")]).await;
    let p = project(
        &mut t,
        "e2e-egr-allow",
        &ws,
        Some(json!({"mode": "AllowList", "namespaces": [gateway], "cidrs": [format!("{}/32", by_cidr.ip)]})),
    );
    ready(&p).await;
    assert_eq!(egress_reason(&p), "EgressAllowList");
    let message = read_condition("project", &p, "EgressReady").map(|c| c.message).unwrap_or_default();
    assert!(
        message.contains(&gateway) && message.contains(&by_cidr.ip),
        "the condition says what is allowed: {message}"
    );
    let [client] = network::probes([(&p, "client")]).await;

    let mut m = Matrix::new("egress: AllowList");
    m.cell("a listed namespace (the gateway): allowed", &client, &gw, true).await;
    m.cell("a listed CIDR: allowed", &client, &by_cidr, true).await;
    m.cell("a namespace listed nowhere: refused", &client, &outside, false).await;
    m.cell_to("the API server: allowed", &client, API_SERVICE, 443, true).await;
    m.finish();
}

/// The egress rules are part of the operator's policy: deleted by hand, they are restored and traffic is refused
/// again; a change of mode takes effect in both directions within a measured time; a developer cannot widen egress
/// from inside, and may narrow it.
#[tokio::test]
async fn egress_is_restored_follows_its_mode_and_holds_from_inside() {
    let mut t = Walls::start();
    let ws = workspace(&mut t, "e2e-egr-ws", None);
    let plain = t.plain_namespace("e2e-egr-plain").await;
    let p = project(&mut t, "e2e-egr-p", &ws, Some(json!({"mode": "Workspace"})));
    let dev = unique("e2e-egr-dev");
    t.made.apply(&zenml_object(
        "ProjectRoleBinding",
        &unique("e2e-egr-dev"),
        json!({"project": p, "role": "developer", "subjects": [{"kind": "User", "name": dev}]}),
    ));
    ready(&p).await;
    let [client, outside] = network::probes([(&p, "client"), (&plain, "server")]).await;
    let what = format!("{p} -> {plain}");
    let refused = client.expect(&what, &outside, PORT, false, network::CONVERGE).await;
    println!("egress Workspace: outside refused after {}", secs(refused));

    // Deleted by hand (a cluster admin: members may not touch it), it comes back and holds again.
    let deleted = Instant::now();
    let out = run(kubectl().args(["delete", "networkpolicy", WALL, "-n", &p, "--wait=false"]));
    assert!(out.success(), "{}", out.stderr);
    let restored = client.expect(&what, &outside, PORT, false, TIMEOUT).await;
    e2e::eventually(TIMEOUT, &format!("{WALL} back in {p}"), || async {
        run(kubectl().args(["get", "networkpolicy", WALL, "-n", &p])).success().then_some(())
    })
    .await;
    println!("policy deleted by hand: egress refused again {} after the delete", secs(deleted.elapsed().max(restored)));

    // Open, then Workspace again.
    let changed = Instant::now();
    patch_project(&p, json!({"spec": {"egress": {"mode": "Open"}}}));
    client.expect(&format!("{what} (Open)"), &outside, PORT, true, TIMEOUT).await;
    println!("egress Workspace -> Open: outside connected {} after the patch", secs(changed.elapsed()));
    let changed = Instant::now();
    patch_project(&p, json!({"spec": {"egress": {"mode": "Workspace"}}}));
    client.expect(&format!("{what} (Workspace again)"), &outside, PORT, false, TIMEOUT).await;
    println!("egress Open -> Workspace: outside refused {} after the patch", secs(changed.elapsed()));

    // Members cannot widen egress from inside; narrowing is theirs to do (and, policies adding up, a narrowing
    // policy of theirs holds whatever the project's mode: so it comes last).
    let as_dev =
        |obj: &Value| run_stdin(kubectl().args([&format!("--as={dev}"), "create", "-f", "-"]), &obj.to_string());
    let policy = |name: &str, egress: Value| {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": name, "namespace": p},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": egress}})
    };
    let narrowing = policy("same-namespace-only", json!([{"to": [{"podSelector": {}}]}]));
    e2e::eventually(TIMEOUT, &format!("{dev} to create a narrowing egress policy in {p}"), || async {
        let out = as_dev(&narrowing);
        if out.success() { Ok(()) } else { Err(out.stderr) }
    })
    .await;
    for (name, egress) in [
        ("to-anywhere", json!([{}])),
        ("to-the-internet", json!([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])),
        ("to-every-namespace", json!([{"to": [{"namespaceSelector": {}}]}])),
        // Variants the rule was not written around: another namespace by name, with a port, beside an allowed peer.
        (
            "to-kube-system-by-name",
            json!([{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "ports": [{"protocol": "TCP", "port": 443}]}]),
        ),
        (
            "an-open-peer-beside-an-allowed-one",
            json!([{"to": [{"podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
        ),
    ] {
        let out = as_dev(&policy(name, egress));
        assert!(
            !out.success()
                && out.stderr.contains(&format!("ValidatingAdmissionPolicy '{WALLS_POLICY}'"))
                && out.stderr.contains("allow egress outside"),
            "a developer's {name} egress policy must be refused by {WALLS_POLICY}: {}{}",
            out.stdout,
            out.stderr
        );
    }
    let mut m = Matrix::new("after a developer's refused policies");
    m.cell("a namespace that is no project's: refused", &client, &outside, false).await;
    m.finish();
}

/// The API server rule names the address pods reach it at: the operator's `--api-server-endpoint` on the local
/// cluster (its `kubernetes` Service names no endpoint), the Service's EndpointSlices elsewhere.
#[tokio::test]
async fn restricted_egress_allows_the_api_server_where_pods_reach_it() {
    let mut t = Walls::start();
    let ws = workspace(&mut t, "e2e-egr-ws", Some(json!({"mode": "Workspace"})));
    let p = project(&mut t, "e2e-egr-p", &ws, None);
    ready(&p).await;
    assert_eq!(egress_reason(&p), "EgressWorkspace");
    let policy = e2e::kubectl_json(&["get", "networkpolicy", WALL, "-n", &p]);
    let rules = policy["spec"]["egress"].as_array().cloned().unwrap_or_default();
    let api_rule = rules.iter().find(|r| r["to"][0]["ipBlock"]["cidr"].is_string());
    let api_rule = api_rule.unwrap_or_else(|| panic!("no rule allows the API server: {rules:?}"));
    let expected: Vec<(String, String)> = match e2e::operator::api_server_endpoints().first() {
        Some(endpoint) => {
            let (ip, port) = endpoint.rsplit_once(':').expect("IP:PORT");
            vec![(format!("{ip}/32"), port.to_owned())]
        }
        None => {
            let slices = e2e::kubectl_json(&[
                "get",
                "endpointslices",
                "-n",
                "default",
                "-l",
                "kubernetes.io/service-name=kubernetes",
            ]);
            let mut found = Vec::new();
            for s in slices["items"].as_array().into_iter().flatten() {
                for e in s["endpoints"].as_array().into_iter().flatten() {
                    for port in s["ports"].as_array().into_iter().flatten() {
                        let ip = e["addresses"][0].as_str().unwrap_or_default();
                        let cidr = if ip.contains(':') { format!("{ip}/128") } else { format!("{ip}/32") };
                        found.push((cidr, port["port"].to_string()));
                    }
                }
            }
            found
        }
    };
    let (cidr, port) = expected.first().cloned().expect("an API server endpoint");
    let cidrs: Vec<&str> =
        api_rule["to"].as_array().into_iter().flatten().filter_map(|p| p["ipBlock"]["cidr"].as_str()).collect();
    assert!(cidrs.contains(&cidr.as_str()), "{cidr} in {api_rule}");
    assert_eq!(api_rule["ports"][0]["port"].to_string(), port, "{api_rule}");
}
