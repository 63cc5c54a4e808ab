//! Running the operator the way a user does (`zenml-operator run` against `KUBECONFIG`), from tests.
//!
//! Each operator runs under a tiny shell wrapper that reads its stdin: when the test process exits for any reason, the
//! pipe closes and the wrapper stops the operator, so no run leaves one behind.
//!
//! With `ZENML_E2E_IMPERSONATE=1` (`make e2e` sets it) every operator runs as the Helm chart's ServiceAccount instead
//! of as cluster-admin: the chart's RBAC is rendered and applied for namespace [`OPERATOR_NAMESPACE`], and the
//! operator gets a kubeconfig whose user impersonates that ServiceAccount. A permission the chart lacks then fails
//! the test that needs it.
//!
//! With `ZENML_E2E_OPERATOR=chart` the operator every test shares ([`shared`]) is not a local process but the Helm
//! chart's Deployment on the cluster's node (see [`crate::node`]): release `zenml-operator` in
//! [`OPERATOR_NAMESPACE`], running the image built from the Dockerfile, with the chart's real ServiceAccount and
//! in-cluster credentials. Its metrics are read from the leading pod through the API server's pod proxy, its log is
//! that of its pods. Tests that start operators of their own ([`Operator::start`]: other flags, `kill -9`, a fresh
//! start) still run local processes, as the chart's ServiceAccount.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The operator binary: `ZENML_OPERATOR_BIN`, else the workspace's debug build (`make e2e` builds it first).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("ZENML_OPERATOR_BIN") {
        return bin.into();
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/zenml-operator");
    assert!(bin.exists(), "{} is missing: run `cargo build -p zenml-operator` (make e2e does)", bin.display());
    bin
}

/// Namespace of the chart's ServiceAccount when impersonating: the release namespace the tests render the chart for.
/// It is `default`, where every operator the tests start keeps its leader Lease whether it impersonates or not (and
/// where `make demo`'s does), so that runs of either kind on one cluster elect one leader among them rather than
/// fight, and [`shared`] can tell whose operator leads.
pub const OPERATOR_NAMESPACE: &str = "default";
/// The chart's ServiceAccount for a release named `zenml-operator`.
pub const SERVICE_ACCOUNT: &str = "zenml-operator";
/// ClusterRoles besides the four built-in ones that the impersonated operator may bind (the chart's `customRoles`):
/// the custom role of `examples/`.
pub const CUSTOM_ROLES: &[&str] = &["zenml-pipeline-runner"];
/// The groups a ServiceAccount's requests carry.
const SERVICE_ACCOUNT_GROUPS: [&str; 3] =
    ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"];

/// True when operators run as the chart's ServiceAccount (`ZENML_E2E_IMPERSONATE=1`, or the chart's own operator).
pub fn impersonating() -> bool {
    in_cluster() || matches!(std::env::var("ZENML_E2E_IMPERSONATE").as_deref(), Ok("1" | "true" | "yes"))
}

/// True when the shared operator is the chart's, on the node (`ZENML_E2E_OPERATOR=chart`).
pub fn in_cluster() -> bool {
    match std::env::var("ZENML_E2E_OPERATOR").as_deref() {
        Ok("chart") => true,
        Ok("" | "process") | Err(_) => false,
        Ok(other) => panic!("ZENML_E2E_OPERATOR={other}: expected `chart` or `process` (the default)"),
    }
}

/// The user name the operator acts as when impersonating.
pub fn service_account_user() -> String {
    format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}")
}

/// Namespace of the leader Lease of an operator started without `--lease-namespace`.
pub fn lease_namespace() -> &'static str {
    OPERATOR_NAMESPACE
}

/// `helm template` of the chart as the tests install it for impersonation: release `zenml-operator` in
/// [`OPERATOR_NAMESPACE`], [`CUSTOM_ROLES`] bindable, only the objects that make up the operator's identity and RBAC.
pub fn chart_rbac() -> String {
    let custom_roles = format!("customRoles={{{}}}", CUSTOM_ROLES.join(","));
    crate::run_ok(
        crate::helm()
            .args(["template", "zenml-operator"])
            .arg(crate::chart_dir())
            .args(["--namespace", OPERATOR_NAMESPACE, "--set", &custom_roles])
            .args(["--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml"]),
    )
}

/// Applies the chart's ServiceAccount and RBAC for release `zenml-operator` in [`OPERATOR_NAMESPACE`], as
/// impersonation does. Operators in pods that run as that ServiceAccount are the operator the tenant rules of
/// `files/` (which the harness applies cluster-wide, see [`crate::install_crds`]) exempt.
pub fn apply_chart_rbac() {
    impersonation();
}

/// Applies the chart's ServiceAccount and RBAC (once per test binary; idempotent across binaries and runs) and
/// writes a kubeconfig that impersonates the ServiceAccount. Returns its path.
fn impersonation() -> &'static PathBuf {
    static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();
    KUBECONFIG.get_or_init(|| {
        let manifests = chart_rbac();
        // Server-side apply owns every field it sets: rules removed from the chart are removed here too.
        let out = crate::run_stdin(
            crate::kubectl().args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=zenml-e2e",
                "-f",
                "-",
            ]),
            &manifests,
        );
        assert!(out.success(), "cannot apply the chart's RBAC: {}{}", out.stdout, out.stderr);
        // RBAC takes effect when the API server's informers see it, a moment after the write.
        let user = service_account_user();
        let start = Instant::now();
        loop {
            let can = crate::run(crate::kubectl().args(["auth", "can-i", "list", "projects.zenml.io", "--as", &user]));
            if can.stdout.trim() == "yes" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "{user} still may not list projects: {can:?}");
            std::thread::sleep(Duration::from_millis(100));
        }

        let source = crate::kubeconfig().expect("a kubeconfig");
        let mut kubeconfig = kube::config::Kubeconfig::read_from(&source)
            .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", source.display()));
        for named in &mut kubeconfig.auth_infos {
            let auth = named.auth_info.get_or_insert_with(Default::default);
            auth.impersonate = Some(user.clone());
            auth.impersonate_groups = Some(SERVICE_ACCOUNT_GROUPS.iter().map(|g| g.to_string()).collect());
        }
        let path = log_dir().join(format!("kubeconfig-as-{SERVICE_ACCOUNT}-{}.json", std::process::id()));
        // JSON is YAML; the file holds the same credentials as the source, so it is private like it.
        let json = serde_json::to_string_pretty(&kubeconfig).expect("a kubeconfig serializes");
        write_private(&path, &json);
        path
    })
}

fn write_private(path: &std::path::Path, contents: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    f.write_all(contents.as_bytes()).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn log_dir() -> PathBuf {
    let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-logs");
    std::fs::create_dir_all(&logs).expect("a log directory");
    logs
}

pub struct Operator {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    /// The operator process itself, for `kill -9`.
    pub pid: u32,
    /// Address of its /metrics, /healthz and /readyz.
    pub addr: String,
    pub log: PathBuf,
    /// The chart's operator: the namespace of its release, whose leading pod answers [`Operator::get`].
    in_cluster: Option<&'static str>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

impl Operator {
    /// Starts an operator with `args` after `run`, and waits until its caches are synced. When [`impersonating`], it
    /// runs as the chart's ServiceAccount, in namespace [`OPERATOR_NAMESPACE`] (its `--namespace` and lease
    /// namespace), as the chart runs it.
    pub fn start(args: &[&str]) -> Operator {
        let impersonate = impersonating().then(impersonation);
        let own_namespace: &[&str] = match impersonate {
            Some(_) => &["--namespace", OPERATOR_NAMESPACE, "--lease-namespace", OPERATOR_NAMESPACE],
            None => &[],
        };
        let endpoints: Vec<String> =
            api_server_endpoints().iter().map(|e| format!("--api-server-endpoint={e}")).collect();
        let args: Vec<&str> = own_namespace
            .iter()
            .copied()
            .chain(endpoints.iter().map(String::as_str))
            .chain(args.iter().copied())
            .collect();
        spawn(&binary(), &args, impersonate.cloned().or_else(crate::kubeconfig), &[])
    }

    /// Waits until `/readyz` says the caches are synced.
    pub fn wait_ready(&self, timeout: Duration) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.get("/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the operator did not become ready in {timeout:?}; its log: {}\n{}",
            self.log.display(),
            self.log_tail()
        );
    }

    /// The last lines of the operator's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A raw HTTP GET against the operator's metrics server.
    pub fn get(&self, path: &str) -> Option<String> {
        if let Some(namespace) = self.in_cluster {
            return leader_get(namespace, path);
        }
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// Sum of a counter over all its label sets, from `/metrics`.
    pub fn counter(&self, name: &str) -> u64 {
        let body = self.get("/metrics").unwrap_or_default();
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Objects the operator created, updated or deleted since it started.
    pub fn writes(&self) -> u64 {
        self.counter("zenml_operator_writes_total")
    }

    /// Stops it as Kubernetes would (SIGTERM), and waits.
    pub fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }

    /// Kills it without warning (`kill -9`), as a crash or a lost node would.
    pub fn kill(mut self) {
        let _ = Command::new("kill").args(["-9", &self.pid.to_string()]).status();
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        drop(self.stdin.take());
    }
}

/// Identity prefix of operators started by tests, in the leader Lease.
pub const E2E_IDENTITY: &str = "e2e-";
/// Identity prefix of operators started by tests that impersonate the chart's ServiceAccount.
pub const E2E_SA_IDENTITY: &str = "e2e-sa-";

/// Whether the lease holder is an operator of a test run of this run's kind: impersonating the chart's
/// ServiceAccount or not. A run served by an operator of the other kind would test the wrong permissions.
fn ours(holder: &str) -> bool {
    if impersonating() {
        holder.starts_with(E2E_SA_IDENTITY)
    } else {
        holder.starts_with(E2E_IDENTITY) && !holder.starts_with(E2E_SA_IDENTITY)
    }
}

/// The operator shared by the tests of one test binary, started on first use; it stops when the binary exits.
///
/// It joins the leader election on the default Lease, so several test binaries (or developers) running at once get
/// one leader instead of operators fighting over the same objects. Tests must exercise this build, though: if an
/// operator that no test started leads (say `make demo`'s), this fails at once and says so.
pub fn shared() -> &'static Operator {
    static SHARED: OnceLock<Operator> = OnceLock::new();
    SHARED.get_or_init(|| {
        crate::install_crds();
        if in_cluster() {
            return chart_operator();
        }
        let prefix = if impersonating() { E2E_SA_IDENTITY } else { E2E_IDENTITY };
        let instance = format!("{prefix}{}", std::process::id());
        let op = Operator::start(&["--instance", &instance]);
        let start = Instant::now();
        loop {
            if op.counter("zenml_operator_leader") == 1 {
                break;
            }
            let holder = crate::run(crate::kubectl().args([
                "get",
                "lease",
                "zenml-operator",
                "-n",
                lease_namespace(),
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]))
            .stdout;
            if ours(&holder) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "another zenml-operator ({holder:?}) leads this cluster, so the tests would exercise it instead of this \
                 build{}; stop it first (`make demo`'s: make cluster-down, or kill it)",
                if impersonating() { " as the chart's ServiceAccount" } else { "" }
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        op
    })
}

impl Operator {
    /// Starts `bin run --metrics-addr <free port> <args>` with `env` added (which may override `KUBECONFIG`), and
    /// waits until `/readyz` answers 200. Unlike [`Operator::start`], nothing is implied (no impersonation, no
    /// namespace flags): the benchmark chooses the binary (a release build), the identity and the lease itself. With
    /// leader election, a standby is ready too: check `zenml_operator_leader` to know it leads.
    pub fn start_with(bin: &std::path::Path, args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> Operator {
        spawn(bin, args, crate::kubeconfig(), env)
    }
}

/// Starts `bin run` under the wrapper that stops it when this process exits, and waits until it is ready.
fn spawn(
    bin: &std::path::Path,
    args: &[&str],
    kubeconfig: Option<PathBuf>,
    env: &[(&str, &std::ffi::OsStr)],
) -> Operator {
    let addr = format!("127.0.0.1:{}", free_port());
    let log = log_dir().join(format!("operator-{}-{}.log", std::process::id(), addr.replace([':', '.'], "-")));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"bin=$1; log=$2; shift 2; "$bin" run "$@" >>"$log" 2>&1 & p=$!; echo $p; read _; kill $p 2>/dev/null; wait $p"#)
        .arg("sh")
        .arg(bin)
        .arg(&log)
        .args(["--metrics-addr", &addr])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(kc) = kubeconfig {
        cmd.env("KUBECONFIG", kc);
    }
    cmd.envs(env.iter().copied());
    let mut wrapper = cmd.spawn().expect("sh starts");
    let mut line = String::new();
    BufReader::new(wrapper.stdout.take().expect("piped")).read_line(&mut line).expect("the wrapper prints a pid");
    let pid = line.trim().parse().expect("a pid");
    let stdin = wrapper.stdin.take();
    let op = Operator { wrapper, stdin, pid, addr, log, in_cluster: None };
    op.wait_ready(Duration::from_secs(60));
    op
}

/// The API server as the local cluster's pods reach it (IP:PORT), for restricted egress to allow: its `kubernetes`
/// Service has no endpoints (the API server listens on loopback, which an EndpointSlice may not name), and pods reach
/// it by a translation to that loopback address (see `e2e/cluster`), which is what a cluster admin tells the operator
/// (`egress.apiServerEndpoints`) on such a cluster. None on another cluster: there the EndpointSlices tell.
pub fn api_server_endpoints() -> Vec<String> {
    let Some(server) = crate::local_cluster_dir().and_then(|dir| std::fs::read_to_string(dir.join("server")).ok())
    else {
        return Vec::new();
    };
    server.trim().strip_prefix("https://").map(str::to_owned).into_iter().collect()
}

/// The chart's release the tests share in `ZENML_E2E_OPERATOR=chart` mode.
pub const CHART_RELEASE: &str = "zenml-operator";

/// Installs (or upgrades to this build's image) the chart's release on the node and waits until one of its pods
/// leads; its pods' log is followed into a file under the wrapper that stops when this process exits.
fn chart_operator() -> Operator {
    crate::node::require();
    let image = crate::node::image();
    let (repository, tag) = image.rsplit_once(':').expect("an image with a tag");
    let custom_roles = format!("customRoles={{{}}}", CUSTOM_ROLES.join(","));
    // The objects `impersonation` (and make demo) applied without Helm are the same ones: Helm takes them over.
    let out = crate::run(
        crate::helm()
            .args(["upgrade", "--install", CHART_RELEASE])
            .arg(crate::chart_dir())
            .args(["--namespace", OPERATOR_NAMESPACE, "--take-ownership", "--wait", "--timeout=180s"])
            .args(["--set", &format!("image.repository={repository}"), "--set", &format!("image.tag={tag}")])
            .args(["--set", "image.pullPolicy=Never", "--set", &custom_roles])
            .args(["--set", "contributorRole.create=false", "--set", "selfService.createRole=false"])
            // The harness applies the same policies for this release from files/ (install_crds) and the access
            // tests check them by those names: a second copy would refuse first, under its own name.
            .args(["--set", "admissionPolicies.enabled=false"])
            // ... and the operator binds files/' workspace policy, once per workspace.
            .args(["--set", "extraArgs={--workspace-policy=zenml-workspace-policies}"])
            .args(["--set", &format!("egress.apiServerEndpoints={{{}}}", api_server_endpoints().join(","))]),
    );
    let selector = format!("app.kubernetes.io/instance={CHART_RELEASE}");
    let pods =
        || crate::run(crate::kubectl().args(["get", "pods", "-n", OPERATOR_NAMESPACE, "-l", &selector, "-o", "wide"]));
    assert!(out.success(), "cannot install the chart's operator:\n{}{}\n{}", out.stdout, out.stderr, pods().stdout);

    let log = log_dir().join(format!("operator-chart-{}.log", std::process::id()));
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"log=$1; shift; "$@" >>"$log" 2>&1 & p=$!; echo $p; read _; kill $p 2>/dev/null; wait $p"#)
        .arg("sh")
        .arg(&log)
        .arg(crate::kubectl().get_program())
        .args([
            "logs",
            "-f",
            "-n",
            OPERATOR_NAMESPACE,
            "-l",
            &selector,
            "--prefix",
            "--tail=-1",
            "--max-log-requests=8",
        ])
        .env("KUBECONFIG", crate::kubeconfig().expect("a kubeconfig"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut wrapper = cmd.spawn().expect("sh starts");
    let mut line = String::new();
    BufReader::new(wrapper.stdout.take().expect("piped")).read_line(&mut line).expect("the wrapper prints a pid");
    let pid = line.trim().parse().expect("a pid");
    let stdin = wrapper.stdin.take();
    let op = Operator { wrapper, stdin, pid, addr: String::new(), log, in_cluster: Some(OPERATOR_NAMESPACE) };

    let start = Instant::now();
    loop {
        if op.counter("zenml_operator_leader") == 1 {
            return op;
        }
        let holder = crate::run(crate::kubectl().args([
            "get",
            "lease",
            "zenml-operator",
            "-n",
            OPERATOR_NAMESPACE,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]))
        .stdout;
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the chart's operator does not lead: {holder:?} holds the lease (a local operator? stop it first)\n{}",
            pods().stdout
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GET `path` from the pod that holds the leader Lease in `namespace`, through the API server's pod proxy, as a raw
/// HTTP response (status line, headers, body) like a local operator's; None if no pod leads or it does not answer.
fn leader_get(namespace: &'static str, path: &str) -> Option<String> {
    let holder = crate::run(crate::kubectl().args([
        "get",
        "lease",
        "zenml-operator",
        "-n",
        namespace,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]))
    .stdout;
    let holder = holder.trim();
    if holder.is_empty() {
        return None;
    }
    let uri = format!("/api/v1/namespaces/{namespace}/pods/{holder}:8080/proxy{path}");
    // Callers are sync, some inside a runtime: the request runs on a runtime of its own.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        runtime.block_on(async {
            let client = crate::client().await;
            // kube's request builder: `http` is not a dependency of this crate.
            let request = kube::core::Request::new("").get(uri.trim_start_matches('/'), &Default::default()).ok()?;
            let request = request.map(kube::client::Body::from);
            let response = client.send(request).await.ok()?;
            let status = response.status();
            let mut out = format!("HTTP/1.1 {} {}\r\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
            for (name, value) in response.headers() {
                out += &format!("{name}: {}\r\n", value.to_str().unwrap_or_default());
            }
            out += "\r\n";
            let body = response.into_body().collect_bytes().await.ok()?;
            out += &String::from_utf8_lossy(&body);
            Some(out)
        })
    })
    .join()
    .ok()
    .flatten()
}
