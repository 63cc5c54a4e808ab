//! Harness shared by the end-to-end tests.
//!
//! The tests run against a real Kubernetes API: the local control plane started by
//! `e2e/cluster up` (see `make e2e`), or any cluster `KUBECONFIG` points at. Every test must
//! therefore use names from [`unique`], clean up after itself, tolerate running in parallel
//! with other tests, and assume nothing that only the local cluster provides.

pub mod bench;
pub mod fixtures;
pub mod network;
pub mod node;
pub mod objects;
pub mod operator;

pub use objects::{
    API_VERSION, StatusCondition, apply_manifests, condition, delete_nowait, describe_conditions, kubectl_json,
    read_condition, server_side_apply, wait_condition, wait_gone, zenml_object,
};

use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// Where google-cloud-sdk installs one kubectl per minor version (`kubectl.1.33`, ...).
const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// Label put on every namespace made by [`namespace`], so leftovers of aborted runs can be
/// found (and deleted) on a shared cluster: `kubectl delete ns -l zenml-operator-e2e`.
pub const NAMESPACE_LABEL: &str = "zenml-operator-e2e";

/// The kubeconfig the tests use: `KUBECONFIG` if set (any cluster), else the one
/// `e2e/cluster up` writes, if it exists. `KUBECONFIG` must name one file, by an absolute
/// path: cargo runs the tests from `e2e/`, not from where it was invoked.
pub fn kubeconfig() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cluster/kubeconfig");
    local.exists().then_some(local)
}

/// The directory of the cluster `e2e/cluster` made, if the tests run against one: `ZENML_CLUSTER_DIR`, else the
/// directory of `KUBECONFIG` when `e2e/cluster` wrote it (it holds the cluster's `pids/`), else `e2e/.cluster` when
/// `KUBECONFIG` is unset.
pub fn local_cluster_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ZENML_CLUSTER_DIR").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    match std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) {
        Some(path) => {
            let dir = Path::new(&path).parent()?;
            (dir.join("pids").is_dir() && dir.join("server").is_file()).then(|| dir.to_path_buf())
        }
        None => Some(Path::new(env!("CARGO_MANIFEST_DIR")).join(".cluster")).filter(|d| d.is_dir()),
    }
}

fn require_kubeconfig() -> PathBuf {
    kubeconfig().unwrap_or_else(|| {
        panic!(
            "no cluster for the e2e tests: run `e2e/cluster up` (or `make cluster-up`), \
             or set KUBECONFIG to a cluster where you are cluster-admin"
        )
    })
}

/// A client for the test cluster, authenticated as whoever the kubeconfig says
/// (cluster-admin on the local cluster).
pub async fn client() -> Client {
    let path = require_kubeconfig();
    let kubeconfig =
        Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
    Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client: {e}"))
}

/// A `kubectl` for the test cluster (the child gets `KUBECONFIG`).
///
/// `KUBECTL` overrides the choice. Otherwise kubectl is picked to match the server, because
/// kubectl only supports servers one minor version away from its own and the distro's
/// `kubectl` is often older than the cluster. Without a versioned one, the kubectl that
/// `e2e/cluster` built with the local control plane is next, then `kubectl` on PATH.
pub fn kubectl() -> Command {
    static KUBECTL: OnceLock<PathBuf> = OnceLock::new();
    let program = KUBECTL.get_or_init(|| {
        std::env::var_os("KUBECTL").filter(|p| !p.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
            let local = local_cluster_dir()
                .map(|d| d.join("kubectl"))
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cluster/kubectl"));
            let fallback = if local.exists() { local } else { "kubectl".into() };
            pick_kubectl(server_minor(&fallback), Path::new(KUBECTL_DIR), fallback)
        })
    });
    let mut cmd = Command::new(program);
    cmd.env("KUBECONFIG", require_kubeconfig());
    cmd
}

/// The server's minor version, asked with whatever kubectl is at hand (`version` works across
/// any skew).
fn server_minor(program: &Path) -> Option<u32> {
    let out =
        Command::new(program).args(["version", "-o", "json"]).env("KUBECONFIG", require_kubeconfig()).output().ok()?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let minor = json["serverVersion"]["minor"].as_str()?;
    // Some distributions report e.g. "34+".
    minor.trim_end_matches('+').parse().ok()
}

/// Prefers `dir/kubectl.1.<minor>` of the server's minor, then one older, then one newer
/// (all supported skews), then the newest older one; else `fallback`.
fn pick_kubectl(server_minor: Option<u32>, dir: &Path, fallback: PathBuf) -> PathBuf {
    let Some(server) = server_minor else {
        return fallback;
    };
    let available: Vec<u32> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("kubectl.1.")?.parse().ok())
        .collect();
    let preferred = [Some(server), server.checked_sub(1), Some(server + 1)];
    preferred
        .into_iter()
        .flatten()
        .find(|m| available.contains(m))
        .or_else(|| available.iter().copied().filter(|&m| m <= server).max())
        .map_or(fallback, |m| dir.join(format!("kubectl.1.{m}")))
}

/// The repository's Helm chart.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/zenml-operator")
}

/// A `helm` for the test cluster (the child gets `KUBECONFIG` when there is one; `helm template` and
/// `helm lint` need none).
///
/// `HELM` overrides the choice. Otherwise the helm that `e2e/cluster helm` builds from the version
/// `e2e/helm/go.mod` pins and caches in `${XDG_CACHE_HOME:-~/.cache}/zenml-operator/helm/<version>/helm`;
/// if it is not there yet, it is built now (a few minutes, once).
pub fn helm() -> Command {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    let program = HELM.get_or_init(|| {
        if let Some(helm) = std::env::var_os("HELM").filter(|p| !p.is_empty()) {
            return PathBuf::from(helm);
        }
        if let Some(cached) = cached_helm().filter(|p| p.exists()) {
            return cached;
        }
        eprintln!("helm is not built yet: running `e2e/cluster helm` (once; it takes a few minutes)");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster");
        let out = run(Command::new(&script).arg("helm").stderr(std::process::Stdio::inherit()));
        assert!(out.success(), "`e2e/cluster helm` failed; run it to see why, or set HELM to a helm v3 binary");
        PathBuf::from(out.stdout.trim())
    });
    let mut cmd = Command::new(program);
    if let Some(kc) = kubeconfig() {
        cmd.env("KUBECONFIG", kc);
    }
    cmd
}

/// Where `e2e/cluster helm` puts the helm of the version `e2e/helm/go.mod` pins.
fn cached_helm() -> Option<PathBuf> {
    let go_mod = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("helm/go.mod")).ok()?;
    let version = go_mod.lines().find_map(|l| l.strip_prefix("require helm.sh/helm/v3 "))?.split_whitespace().next()?;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("zenml-operator/helm").join(version).join("helm"))
}

/// `prefix` plus a short suffix unique across tests, threads and concurrent runs (time, pid
/// and a counter), so parallel tests never collide on a name. The result is a valid DNS
/// label of at most 40 characters.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    // A cheap mix (splitmix64) of the three so the suffix differs in its first characters.
    let mut x = nanos ^ (u64::from(std::process::id()) << 40) ^ count.wrapping_mul(0x9e37_79b9);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    let suffix: String = (0..8)
        .map(|i| {
            let digit = (x >> (i * 5)) % 36;
            char::from_digit(digit as u32, 36).expect("digit < 36")
        })
        .collect();
    let prefix: String =
        prefix.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(31).collect();
    let prefix = prefix.trim_matches('-');
    if prefix.is_empty() { format!("e2e-{suffix}") } else { format!("{prefix}-{suffix}") }
}

/// What a finished command said, as text.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Runs `cmd` with `input` on its stdin (a manifest for `kubectl apply -f -`, say), like [`run`].
pub fn run_stdin(cmd: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child.stdin.take().expect("piped").write_all(input.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` to completion, capturing its output. Panics only if it cannot be started.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `cmd` and returns its stdout; panics with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(out.success(), "{cmd:?} failed ({}):\n{}{}", out.status, out.stdout, out.stderr);
    out.stdout
}

/// One attempt of [`eventually`]: `Some`/`Ok` ends the wait, `None`/`Err` tries again (the
/// last error is shown if time runs out).
pub trait Attempt<T> {
    fn into_result(self) -> Result<T, Option<String>>;
}

impl<T> Attempt<T> for Option<T> {
    fn into_result(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Debug> Attempt<T> for Result<T, E> {
    fn into_result(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:?}")))
    }
}

/// Polls `f` every 150 ms until it yields a value, and returns it. Controllers act
/// asynchronously, so tests wait for the state they expect rather than sleep; on timeout this
/// panics with `what` (and the last error, if `f` returns `Result`).
pub async fn eventually<F, Fut, A, T>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
    A: Attempt<T>,
{
    let start = Instant::now();
    loop {
        let last = match f().await.into_result() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if start.elapsed() >= timeout {
            match last {
                Some(err) => {
                    panic!("timed out after {timeout:?} waiting for {what}; last error: {err}")
                }
                None => panic!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// Creates a namespace named `unique(prefix)` and waits until Pods can be created in it
/// (the ServiceAccount admission plugin rejects them until the controller-manager has made
/// the `default` ServiceAccount). Delete it with [`delete_namespace`].
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = unique(prefix);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name, "labels": { NAMESPACE_LABEL: "true" } }
    }))
    .expect("valid Namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
    let sas = Api::<ServiceAccount>::namespaced(client.clone(), &name);
    eventually(Duration::from_secs(30), &format!("the default ServiceAccount in namespace {name}"), || {
        sas.get("default")
    })
    .await;
    name
}

/// Starts deleting a namespace (and everything in it); does not wait for it to be gone.
pub async fn delete_namespace(client: &Client, name: &str) {
    match Api::<Namespace>::all(client.clone()).delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => panic!("cannot delete namespace {name}: {e}"),
    }
}

/// Installs the operator's CRDs from the repository's `crds/` (server-side apply, so it also
/// updates older copies) and waits until the API server has established them.
///
/// Idempotent and safe to call from parallel tests: a test binary applies them once, the other
/// callers wait for that; test binaries applying the same manifests concurrently is harmless.
/// If the install fails, the caller panics and the next caller tries again.
pub fn install_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
        run_ok(kubectl().args(["apply", "--server-side", "--force-conflicts", "-f"]).arg(&dir));
        run_ok(kubectl().args(["wait", "--for=condition=established", "--timeout=60s", "-f"]).arg(&dir));
        // What the chart installs besides the CRDs: the contributor role, self-service role, admission policies.
        let files = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/zenml-operator/files");
        run_ok(kubectl().args(["apply", "--server-side", "--force-conflicts", "-f"]).arg(&files));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_are_dns_labels_and_distinct() {
        let names: Vec<String> = (0..1000).map(|_| unique("Some_Test.prefix")).collect();
        for name in &names {
            assert!(name.len() <= 40, "{name}");
            assert!(name.starts_with("some-test-prefix-"), "{name}");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
        }
        let distinct: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), names.len());
        assert!(unique(&"x".repeat(100)).len() <= 40);
        assert!(unique("--").starts_with("e2e-"));
    }

    #[test]
    fn kubectl_matches_server_within_skew() {
        let dir = std::env::temp_dir().join(unique("kubectl-dir"));
        std::fs::create_dir_all(&dir).unwrap();
        for m in [27, 28, 30, 33] {
            std::fs::write(dir.join(format!("kubectl.1.{m}")), "").unwrap();
        }
        let pick = |server| pick_kubectl(server, &dir, "kubectl".into());
        assert_eq!(pick(Some(34)), dir.join("kubectl.1.33"));
        assert_eq!(pick(Some(30)), dir.join("kubectl.1.30"));
        assert_eq!(pick(Some(29)), dir.join("kubectl.1.28"));
        assert_eq!(pick(Some(26)), dir.join("kubectl.1.27"));
        assert_eq!(pick(Some(40)), dir.join("kubectl.1.33"));
        assert_eq!(pick(Some(20)), PathBuf::from("kubectl"));
        assert_eq!(pick(None), PathBuf::from("kubectl"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
