//! Who can reach whom, measured with real packets: pods running the network probe (`e2e/node/net.c`, image
//! [`IMAGE`], built and imported into the node by `e2e/cluster up`), and TCP connections between them with a short
//! timeout. The node enforces NetworkPolicies with kube-router's firewall (see `e2e/cluster`), which rejects a
//! packet the policies deny: the client sees [`Outcome::Refused`] at once, where an implementation that drops would
//! give [`Outcome::TimedOut`]. Either way the wall held; [`Outcome::connected`] is what a cell asserts.
//!
//! A [`Probe`] is one pod that serves TCP on [`PORTS`] (answering `ok <port>`) and from which connections are
//! attempted (`kubectl exec ... /net connect IP PORT MS`). A connection to a port the target serves is refused only
//! by the network, so a refusal there is the wall, never an empty port.
//!
//! ```ignore
//! let node = e2e::node::require();
//! let [server, peer, other] =
//!     e2e::network::probes([(&ns_a, "server"), (&ns_a, "peer"), (&ns_b, "client")]).await;
//! let mut m = e2e::network::Matrix::new("my walls");
//! m.cell("same namespace", &peer, &server, true).await;
//! m.cell("other namespace", &other, &server, false).await;   // refused by ns_a's NetworkPolicy
//! m.cell_to("to the API server", &peer, "10.96.0.1", 443, true).await;
//! let host = e2e::network::HostServer::start();               // outside the pod and Service ranges
//! m.cell_to("to the node's host", &peer, &host.ip, host.port, true).await;
//! m.finish();                                             // prints the table; panics listing every wrong cell
//! ```
//!
//! Policies take effect asynchronously (the operator writes them, kube-router syncs them into iptables and ipsets),
//! and a new pod is only walled once kube-router has seen it: cells therefore wait, up to [`CONVERGE`], for the
//! expected outcome, then check it holds on a second attempt, and record how long it took.

use std::fmt;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::Cleanup;
use crate::{eventually, kubectl, kubectl_json, run, run_stdin, unique, wait_condition, zenml_object};

/// How long the operator may take for anything that needs no namespace deletion.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// One network test's objects (workspaces, projects, plain namespaces and what is in them), deleted when it ends,
/// pass or fail, with the shared operator serving it. Needs the node (fails with the reason it is missing).
pub struct Walls {
    pub made: Cleanup,
}

impl Walls {
    pub fn start() -> Walls {
        crate::node::require();
        Walls { made: Cleanup::with_shared_operator(TIMEOUT) }
    }

    /// A Workspace with `defaults` as its `projectDefaults` (`json!({})` for none).
    pub fn workspace(&mut self, prefix: &str, defaults: Value) -> String {
        let name = unique(prefix);
        self.made.workspace(&name, json!({"projectDefaults": defaults}));
        name
    }

    /// A Project of `workspace` with the rest of its spec in `spec` (`json!({})` for the workspace's defaults).
    pub fn project(&mut self, prefix: &str, workspace: &str, mut spec: Value) -> String {
        let name = unique(prefix);
        spec["workspace"] = json!(workspace);
        self.made.apply(&zenml_object("Project", &name, spec));
        name
    }

    /// A namespace that is no Project's.
    pub async fn plain_namespace(&mut self, prefix: &str) -> String {
        let client = crate::client().await;
        let name = crate::namespace(&client, prefix).await;
        self.made.track("Namespace", &name);
        name
    }
}

/// Waits until the Project is Ready for its current generation.
pub async fn ready(project: &str) {
    wait_condition("project", project, "Ready", TIMEOUT, &format!("project {project} Ready"), |c| c.status == "True")
        .await;
}

/// The probe's image, as `e2e/cluster` imports it into the node (`imagePullPolicy: Never`).
pub const IMAGE: &str = "zenml-e2e.local/net:1";
/// The ports every probe serves: [`PORT`], and a second one for policies that allow one port only.
pub const PORTS: [u16; 2] = [8080, 9090];
/// The port cells connect to unless they say otherwise.
pub const PORT: u16 = PORTS[0];
/// How long one connection attempt may take before it counts as [`Outcome::TimedOut`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a cell waits for its expected outcome (policy sync, a new pod reaching the firewall's sets).
pub const CONVERGE: Duration = Duration::from_secs(20);

/// What one TCP connection attempt gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The handshake completed.
    Connected,
    /// A RST or ICMP port unreachable: kube-router's REJECT, or nothing listening.
    Refused,
    /// No answer within [`CONNECT_TIMEOUT`]: a firewall that drops.
    TimedOut,
    /// ICMP host or network unreachable.
    Unreachable,
}

impl Outcome {
    pub fn connected(self) -> bool {
        self == Outcome::Connected
    }

    /// Parses the probe's one-line answer (`connected`, `refused`, `timed out`, `unreachable`).
    pub fn parse(line: &str) -> Option<Outcome> {
        match line.trim() {
            "connected" => Some(Outcome::Connected),
            "refused" => Some(Outcome::Refused),
            "timed out" => Some(Outcome::TimedOut),
            "unreachable" => Some(Outcome::Unreachable),
            _ => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Connected => "connected",
            Outcome::Refused => "refused",
            Outcome::TimedOut => "timed out",
            Outcome::Unreachable => "unreachable",
        })
    }
}

/// One probe pod: its namespace, name and IP.
#[derive(Clone, Debug)]
pub struct Probe {
    pub namespace: String,
    pub name: String,
    pub ip: String,
}

/// The manifest of probe pod `name` in `namespace`, labelled `app: <name>`: it serves [`PORTS`] and runs as Pod
/// Security's `restricted` profile asks (non-root, no capabilities, RuntimeDefault seccomp, read-only root), with
/// small requests and limits (10m/200m CPU, 16Mi) so a project's quota and LimitRange admit it, and no
/// ServiceAccount token. Change it
/// before [`start`] for more labels or another ServiceAccount (`spec.serviceAccountName`).
pub fn pod(namespace: &str, name: &str) -> Value {
    let mut args = vec!["serve".to_owned()];
    args.extend(PORTS.iter().map(u16::to_string));
    // A CPU limit of a few millicores would make every `kubectl exec` take over a second (runc's exec runs in the
    // container's cgroup): 200m keeps one under 0.2 s.
    let (requests, limits) = (json!({"cpu": "10m", "memory": "16Mi"}), json!({"cpu": "200m", "memory": "16Mi"}));
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "enableServiceLinks": false,
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65535, "runAsGroup": 65535,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "net",
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "args": args,
                "ports": PORTS.iter().map(|p| json!({"containerPort": p, "protocol": "TCP"})).collect::<Vec<_>>(),
                "resources": {"requests": requests, "limits": limits},
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    })
}

/// Creates the probe pods `pods` (manifests from [`pod`]) as the kubeconfig's user, then waits until every one is
/// Ready with an IP; returns them in the same order. A create is retried for 30 s while the namespace is too new for
/// pods (its `default` ServiceAccount not made yet); a pod that does not start in 60 s fails the test with its
/// state. The pods go with their namespaces.
pub async fn start(pods: &[Value]) -> Vec<Probe> {
    for pod in pods {
        let what = format!("probe pod {}/{} created", pod["metadata"]["namespace"], pod["metadata"]["name"]);
        eventually(Duration::from_secs(30), &what, || async {
            let out = run_stdin(kubectl().args(["create", "-f", "-"]), &pod.to_string());
            if out.success() || out.stderr.contains("AlreadyExists") { Ok(()) } else { Err(out.stderr) }
        })
        .await;
    }
    let mut probes = Vec::new();
    for pod in pods {
        let (ns, name) = (pod["metadata"]["namespace"].as_str(), pod["metadata"]["name"].as_str());
        probes.push(wait_ready(ns.expect("a namespace"), name.expect("a name")).await);
    }
    probes
}

/// [`start`] of a plain [`pod`] in each `(namespace, name)`.
pub async fn probes<const N: usize>(specs: [(&str, &str); N]) -> [Probe; N] {
    let pods: Vec<Value> = specs.iter().map(|(ns, name)| pod(ns, name)).collect();
    start(&pods).await.try_into().expect("as many probes as asked")
}

/// Waits until the probe pod `namespace/name` is Ready with an IP.
pub async fn wait_ready(namespace: &str, name: &str) -> Probe {
    eventually(Duration::from_secs(60), &format!("probe pod {namespace}/{name} Ready"), || async {
        let out = run(kubectl().args(["get", "pod", name, "-n", namespace, "-o", "json"]));
        if !out.success() {
            return Err(out.stderr);
        }
        let pod: Value = serde_json::from_str(&out.stdout).map_err(|e| e.to_string())?;
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        match pod["status"]["podIP"].as_str() {
            Some(ip) if ready => {
                Ok(Probe { namespace: namespace.to_owned(), name: name.to_owned(), ip: ip.to_owned() })
            }
            _ => Err(format!("phase {}, status {}", pod["status"]["phase"], pod["status"]["containerStatuses"])),
        }
    })
    .await
}

impl Probe {
    /// One TCP connection from this pod to `ip:port`, with [`CONNECT_TIMEOUT`]. Panics if the probe cannot be run
    /// (the pod is gone, exec is refused) rather than counting that as a wall.
    pub fn connect_to(&self, ip: &str, port: u16) -> Outcome {
        let ms = CONNECT_TIMEOUT.as_millis().to_string();
        let port = port.to_string();
        let out = run(kubectl()
            .args(["exec", "-n", &self.namespace, &self.name, "-c", "net", "--", "/net", "connect"])
            .args([ip, &port, &ms]));
        Outcome::parse(out.stdout.lines().last().unwrap_or("")).unwrap_or_else(|| {
            panic!(
                "the probe in {}/{} did not say what connecting to {ip}:{port} gave ({}): {}{}",
                self.namespace, self.name, out.status, out.stdout, out.stderr
            )
        })
    }

    /// One TCP connection from this pod to `to`'s IP on `port`.
    pub fn connect(&self, to: &Probe, port: u16) -> Outcome {
        self.connect_to(&to.ip, port)
    }

    /// Connects to `ip:port` until the connection succeeds (`connected`) or fails (`!connected`), every 100 ms, and
    /// returns how long that took (from the call) and the outcome; `Err` with the last outcome after `within`.
    pub async fn until_to(
        &self,
        ip: &str,
        port: u16,
        connected: bool,
        within: Duration,
    ) -> Result<(Duration, Outcome), Outcome> {
        let s = self.settle(ip, port, connected, within).await;
        match s.took {
            Some(took) => Ok((took, s.last)),
            None => Err(s.last),
        }
    }

    /// The attempts of [`Probe::until_to`], counted.
    async fn settle(&self, ip: &str, port: u16, connected: bool, within: Duration) -> Settled {
        let start = Instant::now();
        let first = self.connect_to(ip, port);
        let (mut last, mut tries) = (first, 1);
        loop {
            if last.connected() == connected {
                return Settled { took: Some(start.elapsed()), first, last, tries };
            }
            if start.elapsed() >= within {
                return Settled { took: None, first, last, tries };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            last = self.connect_to(ip, port);
            tries += 1;
        }
    }

    /// [`Probe::until_to`] `to`'s IP.
    pub async fn until(
        &self,
        to: &Probe,
        port: u16,
        connected: bool,
        within: Duration,
    ) -> Result<(Duration, Outcome), Outcome> {
        self.until_to(&to.ip, port, connected, within).await
    }

    /// Waits until connecting to `to` on `port` gives `connected` and returns how long that took; panics naming
    /// `what` and the last outcome after `within`.
    pub async fn expect(&self, what: &str, to: &Probe, port: u16, connected: bool, within: Duration) -> Duration {
        match self.until(to, port, connected, within).await {
            Ok((took, _)) => took,
            Err(last) => panic!(
                "{what}: {}/{} -> {}/{} ({}:{port}) should {}, but after {within:?} still {last}",
                self.namespace,
                self.name,
                to.namespace,
                to.name,
                to.ip,
                if connected { "connect" } else { "be refused" },
            ),
        }
    }
}

/// What [`Probe::settle`] saw.
struct Settled {
    took: Option<Duration>,
    first: Outcome,
    last: Outcome,
    tries: u32,
}

/// One cell of a [`Matrix`]: who connected to what, what was expected, and what happened.
#[derive(Clone, Debug)]
pub struct Cell {
    pub what: String,
    pub from: String,
    pub to: String,
    pub expected_connected: bool,
    /// The outcome that settled the cell (the expected one, or the last one seen when it never came).
    pub outcome: Outcome,
    /// How long the expected outcome took to appear, if it did.
    pub took: Option<Duration>,
    /// The first attempt's outcome, and how many attempts there were until the cell settled.
    pub first: Outcome,
    pub tries: u32,
    /// The expected outcome appeared but the next attempt gave another one.
    pub flapped: Option<Outcome>,
}

impl Cell {
    pub fn ok(&self) -> bool {
        self.took.is_some() && self.flapped.is_none()
    }
}

/// A connectivity matrix: each cell one real connection (waited for, up to [`CONVERGE`], then checked again);
/// [`Matrix::finish`] prints the table and fails listing every cell that did not hold, so one run shows all of them.
pub struct Matrix {
    pub title: String,
    pub cells: Vec<Cell>,
    pub within: Duration,
}

impl Matrix {
    pub fn new(title: &str) -> Matrix {
        Matrix { title: title.to_owned(), cells: Vec::new(), within: CONVERGE }
    }

    /// A cell from probe `from` to probe `to` on [`PORT`]; returns whether it held.
    pub async fn cell(&mut self, what: &str, from: &Probe, to: &Probe, connected: bool) -> bool {
        self.cell_port(what, from, to, PORT, connected).await
    }

    /// A cell from probe `from` to probe `to` on `port`.
    pub async fn cell_port(&mut self, what: &str, from: &Probe, to: &Probe, port: u16, connected: bool) -> bool {
        let target = format!("{}/{} {}:{port}", to.namespace, to.name, to.ip);
        self.record(what, from, target, &to.ip, port, connected).await
    }

    /// A cell from probe `from` to any `ip:port` (another namespace's Service, the API server at 10.96.0.1:443, an
    /// address outside the cluster).
    pub async fn cell_to(&mut self, what: &str, from: &Probe, ip: &str, port: u16, connected: bool) -> bool {
        self.record(what, from, format!("{ip}:{port}"), ip, port, connected).await
    }

    async fn record(&mut self, what: &str, from: &Probe, to: String, ip: &str, port: u16, connected: bool) -> bool {
        let settled = from.settle(ip, port, connected, self.within).await;
        let flapped = settled.took.and_then(|_| {
            let again = from.connect_to(ip, port);
            (again.connected() != connected).then_some(again)
        });
        let cell = Cell {
            what: what.to_owned(),
            from: format!("{}/{}", from.namespace, from.name),
            to,
            expected_connected: connected,
            outcome: settled.last,
            took: settled.took,
            first: settled.first,
            tries: settled.tries,
            flapped,
        };
        let ok = cell.ok();
        self.cells.push(cell);
        ok
    }

    /// The table, one line per cell.
    pub fn table(&self) -> String {
        let mut out = format!("{}:\n", self.title);
        for c in &self.cells {
            let expected = if c.expected_connected { "allowed" } else { "refused" };
            let verdict = match (c.took, c.flapped) {
                (Some(t), None) if c.tries == 1 => format!("ok ({:.2} s)", t.as_secs_f64()),
                (Some(t), None) => {
                    format!("ok after {:.2} s ({} tries, first {})", t.as_secs_f64(), c.tries, c.first)
                }
                (Some(_), Some(again)) => format!("FLAPPED (then {again})"),
                (None, _) => format!("WRONG after {:.0} s", self.within.as_secs_f64()),
            };
            out += &format!(
                "  {:<52} {:<9} got {:<11} {verdict}   [{} -> {}]\n",
                c.what, expected, c.outcome, c.from, c.to
            );
        }
        out
    }

    /// Prints the table; panics listing the cells that did not hold.
    pub fn finish(&self) {
        let table = self.table();
        println!("{table}");
        let wrong: Vec<&str> = self.cells.iter().filter(|c| !c.ok()).map(|c| c.what.as_str()).collect();
        assert!(wrong.is_empty(), "{} cell(s) did not hold: {wrong:?}\n{table}", wrong.len());
    }
}

/// A TCP server in the test process, listening on every address of the machine the tests run on, answering like a
/// probe: a target outside the pod and Service ranges, for egress cells ("to an address outside the cluster").
/// Pods reach it at [`HostServer::ip`], the node's InternalIP (for the local cluster, this machine; pods have no
/// route to the internet there, so a real outside address would time out whatever the policy). Only for the local
/// cluster: [`HostServer::start`] panics when the tests do not run on the node. Stops when dropped.
pub struct HostServer {
    pub ip: String,
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl HostServer {
    pub fn start() -> HostServer {
        assert!(
            crate::local_cluster_dir().is_some_and(|d| d.join("node").is_dir()),
            "HostServer needs the local cluster's node on this machine (e2e/cluster up as root)"
        );
        let ip = node_ip();
        let listener = TcpListener::bind("0.0.0.0:0").expect("a free port on this machine");
        let port = listener.local_addr().expect("an address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                if let Ok(mut c) = conn {
                    let _ = writeln!(c, "ok {port}");
                }
            }
        });
        HostServer { ip, port, stop }
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
    }
}

/// The InternalIP of the first node: where pods reach the node's host.
pub fn node_ip() -> String {
    let nodes = kubectl_json(&["get", "nodes"]);
    nodes["items"][0]["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .expect("a node with an InternalIP")
        .to_owned()
}

/// The NetworkPolicies in `namespace`, by name, for failure messages.
pub fn policies(namespace: &str) -> String {
    let list = kubectl_json(&["get", "networkpolicies", "-n", namespace]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}: {}", p["metadata"]["name"], p["spec"]))
        .collect::<Vec<_>>()
        .join("\n")
}
