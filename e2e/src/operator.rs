//! Running the operator the way a user does (`zenml-operator run` against `KUBECONFIG`), from tests.
//!
//! Each operator runs under a tiny shell wrapper that reads its stdin: when the test process exits for any reason, the
//! pipe closes and the wrapper stops the operator, so no run leaves one behind.

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

pub struct Operator {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    /// The operator process itself, for `kill -9`.
    pub pid: u32,
    /// Address of its /metrics, /healthz and /readyz.
    pub addr: String,
    pub log: PathBuf,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("an address").port()
}

impl Operator {
    /// Starts an operator with `args` after `run`, and waits until its caches are synced.
    pub fn start(args: &[&str]) -> Operator {
        let addr = format!("127.0.0.1:{}", free_port());
        let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("a log directory");
        let log = logs.join(format!("operator-{}-{}.log", std::process::id(), addr.replace([':', '.'], "-")));
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(r#"bin=$1; log=$2; shift 2; "$bin" run "$@" >>"$log" 2>&1 & p=$!; echo $p; read _; kill $p 2>/dev/null; wait $p"#)
            .arg("sh")
            .arg(binary())
            .arg(&log)
            .args(["--metrics-addr", &addr])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(kc) = crate::kubeconfig() {
            cmd.env("KUBECONFIG", kc);
        }
        let mut wrapper = cmd.spawn().expect("sh starts");
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().expect("piped")).read_line(&mut line).expect("the wrapper prints a pid");
        let pid = line.trim().parse().expect("a pid");
        let stdin = wrapper.stdin.take();
        let op = Operator { wrapper, stdin, pid, addr, log };
        op.wait_ready(Duration::from_secs(60));
        op
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

/// The operator shared by the tests of one test binary, started on first use; it stops when the binary exits.
///
/// It joins the leader election on the default Lease, so several test binaries (or developers) running at once get
/// one leader instead of operators fighting over the same objects. Tests must exercise this build, though: if an
/// operator that no test started leads (say `make demo`'s), this fails at once and says so.
pub fn shared() -> &'static Operator {
    static SHARED: OnceLock<Operator> = OnceLock::new();
    SHARED.get_or_init(|| {
        crate::install_crds();
        let instance = format!("{E2E_IDENTITY}{}", std::process::id());
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
                "default",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]))
            .stdout;
            if holder.starts_with(E2E_IDENTITY) {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "another zenml-operator ({holder:?}) leads this cluster, so the tests would exercise it instead of this \
                 build; stop it first (`make demo`'s: make cluster-down, or kill it)"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        op
    })
}
