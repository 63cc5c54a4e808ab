//! The operator as it ships, on the cluster's node: the image built from the Dockerfile (`e2e/image`), installed by
//! the Helm chart, its two pods doing the work with in-cluster credentials. What users rely on is checked the way
//! they meet it: pods Ready with their probes passing, the securityContext in force (in the pod and in the running
//! process), one leader, the examples reconciled, `/metrics` through the chart's Service, a takeover after the
//! leader's pod is deleted, the PodDisruptionBudget holding an eviction, `helm upgrade` rolling to a new image with
//! never two leaders and no failed reconcile, and `helm uninstall` doing what the README says.
//!
//! Without a node (`e2e/cluster up` says why in one line) these tests fail with that line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use e2e::operator::{self, Operator};
use e2e::{
    chart_dir, client, eventually, helm, install_crds, kubectl, kubectl_json, node, run, run_ok, run_stdin, unique,
};
use serde_json::Value;

/// The chart's default lease duration, which bounds a takeover.
const LEASE_DURATION: Duration = Duration::from_secs(15);

/// One release of the chart, installed for one test; uninstalled (and its namespace deleted) when dropped.
struct Release {
    name: String,
    namespace: String,
    fullname: String,
    client: kube::Client,
}

impl Release {
    fn selector(&self) -> String {
        format!("app.kubernetes.io/instance={}", self.name)
    }

    /// The release's pods that are not being deleted, by name.
    fn pods(&self) -> BTreeMap<String, Value> {
        let pods = kubectl_json(&["get", "pods", "-n", &self.namespace, "-l", &self.selector()]);
        pods["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .map(|p| (p["metadata"]["name"].as_str().expect("a name").to_owned(), p.clone()))
            .collect()
    }

    /// The holder of the release's leader Lease.
    fn holder(&self) -> String {
        let lease = run(kubectl().args([
            "get",
            "lease",
            &self.name,
            "-n",
            &self.namespace,
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ]));
        lease.stdout.trim().to_owned()
    }

    /// GET `path` of one pod's metrics port through the API server's pod proxy: (status, body).
    async fn pod_get(&self, pod: &str, path: &str) -> (u16, String) {
        proxy_get(&self.client, &format!("/api/v1/namespaces/{}/pods/{pod}:8080/proxy{path}", self.namespace)).await
    }

    /// `zenml_operator_leader` of every pod (None: it did not answer).
    async fn leaders(&self) -> BTreeMap<String, Option<f64>> {
        let mut out = BTreeMap::new();
        for pod in self.pods().keys() {
            let (status, body) = self.pod_get(pod, "/metrics").await;
            out.insert(pod.clone(), (status == 200).then(|| sample(&body, "zenml_operator_leader")).flatten());
        }
        out
    }

    /// Waits until `n` pods are Running and Ready, each with every container ready; returns them.
    async fn ready_pods(&self, n: usize, within: Duration) -> BTreeMap<String, Value> {
        eventually(within, &format!("{n} Ready pods of release {}", self.name), || async {
            let pods = self.pods();
            let ready = pods.values().filter(|p| pod_ready(p)).count();
            if pods.len() == n && ready == n { Ok(pods) } else { Err(summary(&pods)) }
        })
        .await
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = run(helm().args(["uninstall", &self.name, "-n", &self.namespace, "--wait", "--timeout=60s"]));
        let _ = run(kubectl().args(["delete", "lease", &self.name, "-n", &self.namespace, "--ignore-not-found"]));
    }
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn summary(pods: &BTreeMap<String, Value>) -> String {
    let each: Vec<String> = pods
        .iter()
        .map(|(name, p)| {
            let waiting = p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str().unwrap_or("");
            format!("{name}: {} ready={} {waiting}", p["status"]["phase"], pod_ready(p))
        })
        .collect();
    format!("{} pods: {}", pods.len(), each.join(", "))
}

/// The value of an unlabelled sample in a Prometheus text exposition.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of a metric over all its label sets.
fn total(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET through the API server (a proxy path): (status, body).
async fn proxy_get(client: &kube::Client, path: &str) -> (u16, String) {
    let request =
        kube::core::Request::new("").get(path.trim_start_matches('/'), &Default::default()).expect("a request");
    match client.request_text(request).await {
        Ok(body) => (200, body),
        Err(kube::Error::Api(e)) => (e.code, e.message),
        Err(e) => (0, e.to_string()),
    }
}

/// The examples (`examples/`, as `kubectl apply -k` sends them) under names of their own, their custom role's
/// ClusterRole included, so this test shares nothing with the demo's or the kpt test's copy.
struct Examples {
    yaml: String,
    workspace: String,
    projects: Vec<String>,
    cluster_role: String,
}

fn renamed_examples() -> Examples {
    let examples = chart_dir().join("../../examples");
    let mut yaml = run_ok(kubectl().args(["kustomize"]).arg(&examples));
    let workspace = unique("e2e-ship-ws");
    let cluster_role = unique("e2e-ship-runner");
    let projects = [("fraud-detection", unique("e2e-ship-fd")), ("recommender", unique("e2e-ship-rec"))];
    assert!(yaml.contains("zenml-pipeline-runner"), "the examples' custom role changed:\n{yaml}");
    yaml = yaml.replace("zenml-pipeline-runner", &cluster_role).replace("ml-platform", &workspace);
    for (from, to) in &projects {
        yaml = yaml.replace(from, to);
    }
    Examples { yaml, workspace, projects: projects.into_iter().map(|(_, to)| to).collect(), cluster_role }
}

/// Operators that would reconcile alongside the release under test (the demo's, a chart-mode run's) are scaled to
/// zero while it runs, and back when this is dropped; a live lease of any other operator fails the test.
struct OthersPaused(Vec<(String, String, String)>);

impl OthersPaused {
    fn new() -> OthersPaused {
        let deployments = kubectl_json(&["get", "deployments", "-A", "-l", "app.kubernetes.io/part-of=zenml-operator"]);
        let mut paused = Vec::new();
        for d in deployments["items"].as_array().into_iter().flatten() {
            let replicas = d["spec"]["replicas"].as_u64().unwrap_or(0);
            if replicas == 0 {
                continue;
            }
            let (ns, name) = (d["metadata"]["namespace"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap());
            eprintln!("node test: scaling deployment {ns}/{name} to 0 while it runs (back to {replicas} after)");
            run_ok(kubectl().args(["scale", "deployment", name, "-n", ns, "--replicas=0"]));
            paused.push((ns.to_owned(), name.to_owned(), replicas.to_string()));
        }
        OthersPaused(paused)
    }
}

impl Drop for OthersPaused {
    fn drop(&mut self) {
        for (ns, name, replicas) in &self.0 {
            let _ = run(kubectl().args(["scale", "deployment", name, "-n", ns, &format!("--replicas={replicas}")]));
        }
    }
}

/// Leases an operator (a pod of the chart, or a test's operator) renewed within their duration, other than the one
/// named `except`: (namespace/name, holder).
fn live_leases(except: &str) -> Vec<(String, String)> {
    let leases = kubectl_json(&["get", "leases", "-A"]);
    let now = std::time::SystemTime::now();
    leases["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["metadata"]["name"] != except)
        .filter(|l| {
            l["spec"]["holderIdentity"].as_str().is_some_and(|h| h.contains("zenml-operator") || h.starts_with("e2e-"))
        })
        .filter(|l| l["spec"]["holderIdentity"].as_str().is_some_and(|h| !h.is_empty()))
        .filter(|l| {
            let renewed = l["spec"]["renewTime"].as_str().and_then(|t| t.parse::<jiff_like::Micro>().ok());
            let duration = l["spec"]["leaseDurationSeconds"].as_u64().unwrap_or(15);
            renewed.is_some_and(|r| r.age(now) < Duration::from_secs(duration))
        })
        .map(|l| {
            (
                format!("{}/{}", l["metadata"]["namespace"].as_str().unwrap(), l["metadata"]["name"].as_str().unwrap()),
                l["spec"]["holderIdentity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Just enough RFC 3339 for a Lease's renewTime (`2006-01-02T15:04:05.000000Z`).
mod jiff_like {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    pub struct Micro(SystemTime);

    impl std::str::FromStr for Micro {
        type Err = String;
        fn from_str(s: &str) -> Result<Micro, String> {
            let bad = || format!("not an RFC 3339 UTC time: {s}");
            let (date, time) = s.strip_suffix('Z').and_then(|s| s.split_once('T')).ok_or_else(bad)?;
            let d: Vec<i64> = date.split('-').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
            let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
            let t: Vec<u64> = hms.split(':').map(|x| x.parse().map_err(|_| bad())).collect::<Result<_, _>>()?;
            let (&[y, m, day], &[hh, mm, ss]) = (d.as_slice(), t.as_slice()) else { return Err(bad()) };
            // Days from the civil date (Howard Hinnant's algorithm).
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            let days = (era * 146_097 + doe - 719_468) as u64;
            let micros: u64 = format!("{frac:0<6}")[..6].parse().map_err(|_| bad())?;
            let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
            Ok(Micro(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros)))
        }
    }

    impl Micro {
        pub fn age(&self, now: SystemTime) -> Duration {
            now.duration_since(self.0).unwrap_or_default()
        }
    }
}

/// What the running container's process is allowed, read from /proc on the node (only where the node is this
/// machine): its uids, effective and permitted capabilities, no_new_privs, seccomp mode and whether `/` is read-only.
fn process_restrictions(container_id: &str) -> Option<BTreeMap<&'static str, String>> {
    let dir = e2e::local_cluster_dir()?;
    let sock = dir.join("node/containerd.sock");
    if !sock.exists() {
        return None;
    }
    let id = container_id.strip_prefix("containerd://")?;
    let tasks = run(std::process::Command::new("ctr").args(["--address"]).arg(&sock).args([
        "--namespace",
        "k8s.io",
        "tasks",
        "ls",
    ]));
    let pid = tasks.stdout.lines().find(|l| l.starts_with(id))?.split_whitespace().nth(1)?.to_owned();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    let root = mountinfo.lines().find(|l| l.split_whitespace().nth(4) == Some("/"))?;
    let root_options = root.split_whitespace().nth(5)?.to_owned();
    Some(BTreeMap::from([
        ("Uid", field("Uid")?),
        ("Gid", field("Gid")?),
        ("CapEff", field("CapEff")?),
        ("CapPrm", field("CapPrm")?),
        ("NoNewPrivs", field("NoNewPrivs")?),
        ("Seccomp", field("Seccomp")?),
        ("root", root_options.split(',').next()?.to_owned()),
    ]))
}

#[tokio::test]
async fn the_chart_runs_the_operator_image_as_it_ships() {
    let node = node::require();
    install_crds();
    let image = node::image().to_owned();
    let (repository, tag) = image.rsplit_once(':').expect("an image with a tag");
    let _others = OthersPaused::new();
    let client = client().await;
    // The tenant rules the harness applies from files/ exempt one operator: the ServiceAccount of release
    // zenml-operator in `default`. This release runs as it (an existing ServiceAccount, a supported value), in
    // `default`, on a Lease of its own, so it works beside them as the chart's own policies let it.
    operator::apply_chart_rbac();
    let ns = operator::OPERATOR_NAMESPACE.to_owned();
    let name = unique("e2e-ship");
    let release =
        Release { fullname: format!("{name}-zenml-operator"), name, namespace: ns.clone(), client: client.clone() };
    let live = live_leases(&release.name);
    assert!(
        live.is_empty(),
        "another zenml-operator runs on this cluster and would reconcile beside this release: {live:?}"
    );

    // --- install ---------------------------------------------------------------------------------------------
    let examples = renamed_examples();
    let start = Instant::now();
    let out = run(helm()
        .args(["install", &release.name])
        .arg(chart_dir())
        .args(["--namespace", &ns, "-f"])
        .arg(chart_dir().join("values-examples.yaml"))
        .args([
            "--set",
            &format!("image.repository={repository}"),
            "--set",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            "serviceAccount.create=false",
            "--set",
            &format!("serviceAccount.name={}", operator::SERVICE_ACCOUNT),
            "--set",
            &format!("leaderElection.leaseName={}", release.name),
            // The harness applied the contract ClusterRoles already (chart.rs checks Helm's refusal to take them).
            // The examples' custom role, renamed like them.
            "--set",
            &format!("customRoles={{{}}}", examples.cluster_role),
            "--set",
            "contributorRole.create=false",
            "--set",
            "selfService.createRole=false",
            "--set",
            &format!("admissionPolicies.exemptUsers={{{}}}", operator::service_account_user()),
            "--wait",
            "--timeout=180s",
        ]));
    let pods = release.pods();
    assert!(out.success(), "helm install failed:\n{}{}\n{}", out.stdout, out.stderr, summary(&pods));
    println!("helm install --wait, two pods Ready on node {node}: {:.1} s", start.elapsed().as_secs_f64());

    // --- pods, probes, securityContext -----------------------------------------------------------------------
    let pods = release.ready_pods(2, Duration::from_secs(60)).await;
    for (name, pod) in &pods {
        assert_eq!(pod["spec"]["nodeName"], node.as_str(), "{name}");
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["image"], image.as_str(), "{name}");
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["ready"], true, "{name}: {status}");
        assert_eq!(status["restartCount"], 0, "{name} restarted: {status}");
        assert!(
            c["livenessProbe"]["httpGet"]["path"] == "/healthz" && c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        );
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        // Both probes answer 200 on every pod, the standby's too (it is ready while it stands by).
        for probe in ["/healthz", "/readyz"] {
            let (code, body) = release.pod_get(name, probe).await;
            assert_eq!(code, 200, "{name} {probe}: {body}");
        }
        // By effect: the process the kubelet started.
        let id = status["containerID"].as_str().expect("a container id");
        match process_restrictions(id) {
            Some(p) => {
                println!("{name}: {p:?}");
                assert!(p["Uid"].split(' ').all(|u| u == "65532"), "{name} runs as {}", p["Uid"]);
                assert!(p["Gid"].split(' ').all(|g| g == "65532"), "{name} runs in group {}", p["Gid"]);
                assert_eq!(p["CapEff"], "0000000000000000", "{name} holds capabilities");
                assert_eq!(p["CapPrm"], "0000000000000000", "{name} may regain capabilities");
                assert_eq!(p["NoNewPrivs"], "1", "{name} may gain privileges");
                assert_eq!(p["Seccomp"], "2", "{name} has no seccomp filter");
                assert_eq!(p["root"], "ro", "{name}'s root filesystem is writable");
            }
            None => println!("{name}: the node is not this machine; the restrictions are checked in the pod spec only"),
        }
    }

    // --- one leader -----------------------------------------------------------------------------------------
    let leader = eventually(Duration::from_secs(30), "one pod to lead", || async {
        let leaders = release.leaders().await;
        let holder = release.holder();
        let leading: Vec<&String> = leaders.iter().filter(|(_, v)| **v == Some(1.0)).map(|(k, _)| k).collect();
        if leading.len() == 1 && *leading[0] == holder && leaders.values().all(|v| v.is_some()) {
            Ok(holder)
        } else {
            Err(format!("lease holder {holder:?}, leader metric {leaders:?}"))
        }
    })
    .await;

    // --- the examples, reconciled by the pods ----------------------------------------------------------------
    let Examples { yaml: examples, workspace: ws, projects, cluster_role } = examples;
    let applied =
        run_stdin(kubectl().args(["apply", "--server-side", "--field-manager=e2e-ship", "-f", "-"]), &examples);
    assert!(applied.success(), "{}{}", applied.stdout, applied.stderr);
    let mut objects: Vec<String> = vec![format!("workspace/{ws}")];
    objects.extend(projects.iter().map(|p| format!("project/{p}")));
    for b in kubectl_json(&["get", "projectrolebindings"])["items"].as_array().into_iter().flatten() {
        if projects.iter().any(|p| b["spec"]["project"] == p.as_str()) {
            objects.push(format!("projectrolebinding/{}", b["metadata"]["name"].as_str().unwrap()));
        }
    }
    assert!(objects.len() > 3, "the examples have bindings: {objects:?}");
    let cleanup = Cleanup { projects: projects.clone(), ws: ws.clone(), objects: objects.clone(), cluster_role };
    let out = run(kubectl().args(["wait", "--for=condition=Ready", "--timeout=90s"]).args(&objects));
    assert!(out.success(), "examples not Ready: {}{}\n{}", out.stdout, out.stderr, logs(&release, &leader));
    // The in-cluster leader made them: its Events carry its pod's name.
    let events = kubectl_json(&["get", "events.events.k8s.io", "-n", "default"]);
    let by: BTreeSet<&str> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| projects.iter().any(|p| e["regarding"]["name"] == p.as_str()))
        .filter_map(|e| e["reportingInstance"].as_str())
        .collect();
    assert_eq!(
        by,
        BTreeSet::from([leader.as_str()]),
        "Events about the example projects come from the leader pod only"
    );

    // --- /metrics through the chart's Service ----------------------------------------------------------------
    let service = format!("/api/v1/namespaces/{ns}/services/{}-metrics:metrics/proxy/metrics", release.fullname);
    let (code, body) = proxy_get(&client, &service).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("zenml_operator_leader "), "{body}");
    let (_, body) = release.pod_get(&leader, "/metrics").await;
    assert!(total(&body, "zenml_operator_reconciles_total") > 0.0, "the leader reconciled nothing:\n{body}");
    assert!(total(&body, "zenml_operator_writes_total") > 0.0, "the leader wrote nothing:\n{body}");

    // --- takeover after the leader's pod is deleted ---------------------------------------------------------
    let deleted = Instant::now();
    run_ok(kubectl().args(["delete", "pod", &leader, "-n", &ns, "--wait=false"]));
    // Taken over: another pod holds the Lease and says it leads (it may be the standby, or the replacement pod if it
    // starts first).
    let successor = eventually(LEASE_DURATION + Duration::from_secs(10), "another pod to lead", || async {
        let holder = release.holder();
        if holder.is_empty() || holder == leader {
            return Err(format!("lease holder {holder:?}"));
        }
        let (code, body) = release.pod_get(&holder, "/metrics").await;
        match sample(&body, "zenml_operator_leader") {
            Some(v) if code == 200 && v == 1.0 => Ok(holder),
            other => Err(format!("{holder} holds the lease; its leader metric: {other:?} ({code})")),
        }
    })
    .await;
    let takeover = deleted.elapsed();
    println!(
        "takeover after deleting the leader's pod ({leader} -> {successor}): {:.1} s (lease duration {} s)",
        takeover.as_secs_f64(),
        LEASE_DURATION.as_secs()
    );
    assert!(takeover <= LEASE_DURATION + Duration::from_secs(2), "takeover took {takeover:?}");

    // --- the PodDisruptionBudget holds an eviction -----------------------------------------------------------
    let pods = release.ready_pods(2, Duration::from_secs(90)).await;
    // The disruption controller has seen both (and no pod still terminating): one disruption allowed.
    eventually(Duration::from_secs(60), "the PodDisruptionBudget to allow one disruption", || async {
        let pdb = kubectl_json(&["get", "poddisruptionbudget", &release.fullname, "-n", &ns]);
        let all = kubectl_json(&["get", "pods", "-n", &ns, "-l", &release.selector()]);
        let status = &pdb["status"];
        let settled = all["items"].as_array().map(Vec::len) == Some(2)
            && status["observedGeneration"] == pdb["metadata"]["generation"]
            && status["currentHealthy"] == 2
            && status["disruptionsAllowed"] == 1;
        settled.then_some(()).ok_or_else(|| format!("{status}"))
    })
    .await;
    let names: Vec<&String> = pods.keys().collect();
    // An Eviction as `kubectl drain` posts it.
    let evict = |pod: &str| {
        let body = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"{ns}"}}}}"#
        );
        run_stdin(
            kubectl().args(["create", "--raw", &format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction"), "-f", "-"]),
            &body,
        )
    };
    let first = evict(names[0]);
    assert!(first.success(), "the first eviction was refused: {}", first.stderr);
    let second = evict(names[1]);
    assert!(
        !second.success() && second.stderr.contains("would violate the pod's disruption budget"),
        "evicting the second pod while the first is gone must be refused by the PDB: {}{}",
        second.stdout,
        second.stderr
    );
    release.ready_pods(2, Duration::from_secs(90)).await;

    // --- helm upgrade to a new image tag --------------------------------------------------------------------
    let new_image = node::image_tagged(&unique("upgrade"));
    let new_tag = new_image.rsplit_once(':').unwrap().1.to_owned();
    let mut upgrade = helm();
    upgrade.args(["upgrade", &release.name]).arg(chart_dir()).args([
        "--namespace",
        &ns,
        "--reuse-values",
        "--set",
        &format!("image.tag={new_tag}"),
        "--wait",
        "--timeout=180s",
    ]);
    let upgrading = std::thread::spawn(move || run(&mut upgrade));
    // While it rolls: never two pods leading at once, and no reconcile failing on any pod.
    let mut failures: BTreeMap<String, f64> = BTreeMap::new();
    let mut most_leaders = 0;
    let rolled = Instant::now();
    while !upgrading.is_finished() {
        let mut leading = Vec::new();
        for pod in release.pods().keys() {
            let (code, body) = release.pod_get(pod, "/metrics").await;
            if code != 200 {
                continue;
            }
            if sample(&body, "zenml_operator_leader") == Some(1.0) {
                leading.push(pod.clone());
            }
            failures.insert(pod.clone(), total(&body, "zenml_operator_reconcile_failures_total"));
        }
        most_leaders = most_leaders.max(leading.len());
        assert!(leading.len() <= 1, "two pods lead at once during the upgrade: {leading:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = upgrading.join().expect("the upgrade thread");
    assert!(out.success(), "helm upgrade failed:\n{}{}", out.stdout, out.stderr);
    println!("helm upgrade to {new_image} rolled in {:.1} s", rolled.elapsed().as_secs_f64());
    let pods = release.ready_pods(2, Duration::from_secs(60)).await;
    for (name, pod) in &pods {
        assert_eq!(pod["spec"]["containers"][0]["image"], new_image.as_str(), "{name} runs the old image");
    }
    let new_leader = eventually(Duration::from_secs(30), "a pod of the new image to lead", || async {
        let holder = release.holder();
        pods.contains_key(&holder).then_some(holder)
    })
    .await;
    for (name, pod) in &pods {
        let (_, body) = release.pod_get(name, "/metrics").await;
        failures.insert(name.clone(), total(&body, "zenml_operator_reconcile_failures_total"));
        let _ = pod;
    }
    assert!(
        failures.values().all(|f| *f == 0.0),
        "reconciles failed during the upgrade: {failures:?}\n{}",
        logs(&release, &new_leader)
    );
    let log = logs(&release, &new_leader);
    assert!(!log.contains("onflict"), "a write conflict during the upgrade:\n{log}");

    // --- helm uninstall does what the README says -------------------------------------------------------------
    let out = run(helm().args(["uninstall", &release.name, "-n", &ns, "--wait", "--timeout=60s"]));
    assert!(out.success(), "helm uninstall failed: {}{}", out.stdout, out.stderr);
    eventually(Duration::from_secs(60), "the release's pods to be gone", || async {
        let pods = release.pods();
        pods.is_empty().then_some(()).ok_or_else(|| summary(&pods))
    })
    .await;
    for (kind, name) in [("clusterrole", &release.fullname), ("clusterrolebinding", &release.fullname)] {
        let out = run(kubectl().args(["get", kind, name, "--ignore-not-found", "-o", "name"]));
        assert_eq!(out.stdout.trim(), "", "{kind} {name} outlived the release");
    }
    // The CRDs stay, and with them the Workspace, the Projects and their namespaces, unreconciled.
    run_ok(kubectl().args(["get", "crd", "workspaces.zenml.io", "projects.zenml.io", "projectrolebindings.zenml.io"]));
    run_ok(kubectl().args(["get"]).args(&objects));
    for p in &projects {
        run_ok(kubectl().args(["get", "namespace", p]));
    }
    // A Project deleted now stays Terminating: its finalizer waits for an operator.
    run_ok(kubectl().args(["delete", "project", &projects[1], "--wait=false"]));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = kubectl_json(&["get", "project", &projects[1]]);
    assert!(
        !p["metadata"]["deletionTimestamp"].is_null() && !p["metadata"]["finalizers"].as_array().unwrap().is_empty(),
        "{p}"
    );
    drop(cleanup);
}

/// The examples' copies, deleted by an operator of this build (the release is gone by then: deletes wait for one).
struct Cleanup {
    cluster_role: String,
    projects: Vec<String>,
    ws: String,
    objects: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let op = Operator::start(&["--leader-elect=false"]);
        let bindings: Vec<&String> = self.objects.iter().filter(|o| o.starts_with("projectrolebinding/")).collect();
        let _ = run(kubectl().args(["delete", "--ignore-not-found", "--timeout=90s"]).args(&bindings));
        for p in &self.projects {
            let _ = run(kubectl().args(["delete", "project", p, "--ignore-not-found", "--timeout=90s"]));
            // fraud-detection is Retain: its namespace outlives it.
            let _ = run(kubectl().args(["delete", "namespace", p, "--ignore-not-found", "--wait=false"]));
        }
        let _ = run(kubectl().args(["delete", "workspace", &self.ws, "--ignore-not-found", "--timeout=90s"]));
        let _ = run(kubectl().args(["delete", "clusterrole", &self.cluster_role, "--ignore-not-found"]));
        op.stop();
    }
}

/// The logs of the release's pods (the leader's first), for failure messages.
fn logs(release: &Release, leader: &str) -> String {
    let mut names: Vec<String> = release.pods().into_keys().collect();
    names.sort_by_key(|n| n != leader);
    names
        .iter()
        .map(|n| {
            let out = run(kubectl().args(["logs", n, "-n", &release.namespace, "--tail=40"]));
            format!("--- {n}:\n{}{}", out.stdout, out.stderr)
        })
        .collect::<Vec<_>>()
        .join("\n")
}
