//! The Helm chart (`charts/zenml-operator/`): it lints, renders what the values say, refuses bad values at install
//! time, renders objects the API server accepts, installs and uninstalls cleanly, and grants the operator exactly
//! the permissions listed here. Also the operator's `/metrics`, `/healthz` and `/readyz` as Prometheus and the
//! kubelet see them.
//!
//! The chart's cluster-scoped objects that belong to a release (the operator's ClusterRole and ClusterRoleBinding,
//! the admission policies, the self-service binding) are named after the release, so the install test can run
//! beside every other test. The ClusterRoles `zenml-project-contributor(-core)` and `zenml-self-service` have
//! contract names: the e2e harness has applied them already (`install_crds`), so the install test leaves them out
//! (`contributorRole.create=false`, `selfService.createRole=false`) after checking that Helm refuses to take them
//! over by default.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use e2e::operator;
use e2e::{
    apply_manifests, chart_dir, client, delete_namespace, eventually, helm, install_crds, kubectl, namespace,
    read_condition, run, run_ok, run_stdin, unique,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------------------------

/// `helm template` of the chart as release `release` in `namespace` with `--set`s; panics if it fails.
fn template(release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut cmd = helm();
    cmd.args(["template", release]).arg(chart_dir()).args(["--namespace", namespace]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    run_ok(&mut cmd)
}

/// The objects of a multi-document YAML stream.
fn objects(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("invalid YAML ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn render(sets: &[&str]) -> Vec<Value> {
    objects(&template("zenml-operator", "zenml-system", sets))
}

/// `Kind/name` (or `Kind/namespace/name`) of every object.
fn inventory(objs: &[Value]) -> BTreeSet<String> {
    objs.iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap_or("?");
            let name = o["metadata"]["name"].as_str().unwrap_or("?");
            match o["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{kind}/{ns}/{name}"),
                None => format!("{kind}/{name}"),
            }
        })
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", inventory(objs)))
}

fn container(objs: &[Value]) -> &Value {
    &find(objs, "Deployment", "zenml-operator")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objs: &[Value]) -> Vec<String> {
    container(objs)["args"].as_array().expect("args").iter().map(|a| a.as_str().expect("a string").to_owned()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn chart_lints_clean() {
    let out = run(helm().args(["lint", "--strict"]).arg(chart_dir()));
    assert!(out.success(), "helm lint failed:\n{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("0 chart(s) failed"), "{}", out.stdout);
}

#[test]
fn default_values_render_a_hardened_highly_available_operator() {
    let objs = render(&[]);
    assert_eq!(
        inventory(&objs),
        set(&[
            "ServiceAccount/zenml-system/zenml-operator",
            "ClusterRole/zenml-operator",
            "ClusterRoleBinding/zenml-operator",
            "Role/default/zenml-operator-events",
            "RoleBinding/default/zenml-operator-events",
            "Role/zenml-system/zenml-operator-leader-election",
            "RoleBinding/zenml-system/zenml-operator-leader-election",
            "Deployment/zenml-system/zenml-operator",
            "Service/zenml-system/zenml-operator-metrics",
            "PodDisruptionBudget/zenml-system/zenml-operator",
            "ClusterRole/zenml-project-contributor",
            "ClusterRole/zenml-project-contributor-core",
            "ClusterRole/zenml-self-service",
            "ValidatingAdmissionPolicy/zenml-operator-project-delegation",
            "ValidatingAdmissionPolicy/zenml-operator-binding-delegation",
            "ValidatingAdmissionPolicyBinding/zenml-operator-project-delegation",
            "ValidatingAdmissionPolicyBinding/zenml-operator-binding-delegation",
            // The tenant rules (files/, see the README's threat model).
            "ValidatingAdmissionPolicy/zenml-operator-protected-namespaces",
            "ValidatingAdmissionPolicy/zenml-operator-service-account-impersonation",
            "ValidatingAdmissionPolicy/zenml-operator-frozen-projects",
            "ValidatingAdmissionPolicyBinding/zenml-operator-frozen-projects",
            // Bound by the operator, once per workspace.
            "ValidatingAdmissionPolicy/zenml-operator-workspace-policies",
            "ValidatingAdmissionPolicy/zenml-operator-runner-identity",
            "ValidatingAdmissionPolicy/zenml-operator-one-door-for-access",
            "ValidatingAdmissionPolicy/zenml-operator-network-walls",
            "ValidatingAdmissionPolicy/zenml-operator-managed-objects",
            "ValidatingAdmissionPolicyBinding/zenml-operator-protected-namespaces",
            "ValidatingAdmissionPolicyBinding/zenml-operator-service-account-impersonation",
            "ValidatingAdmissionPolicyBinding/zenml-operator-runner-identity",
            "ValidatingAdmissionPolicyBinding/zenml-operator-one-door-for-access",
            "ValidatingAdmissionPolicyBinding/zenml-operator-network-walls",
            "ValidatingAdmissionPolicyBinding/zenml-operator-managed-objects",
        ]),
    );

    let deploy = find(&objs, "Deployment", "zenml-operator");
    assert_eq!(deploy["spec"]["replicas"], 2);
    let pod = &deploy["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "zenml-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = container(&objs);
    assert_eq!(c["image"], "ghcr.io/zenml-io/zenml-operator:0.1.0", "the tag defaults to appVersion");
    assert_eq!(
        args(&objs),
        [
            "run",
            "--concurrency=16",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=text",
            "--leader-elect=true",
            "--lease-namespace=zenml-system",
            "--lease-name=zenml-operator",
            "--lease-duration-seconds=15",
            "--renew-deadline-seconds=10",
            "--retry-period-seconds=2",
            "--admin-cluster-role=admin",
            "--developer-cluster-role=edit",
            "--contributor-cluster-role=zenml-project-contributor",
            "--viewer-cluster-role=view",
            "--template-kinds=v1/ConfigMap,v1/LimitRange,networking.k8s.io/v1/NetworkPolicy",
            "--workspace-policy=zenml-operator-workspace-policies",
            "--dns-namespace=kube-system",
        ]
    );
    // The downward API gives the operator its namespace (protected from Projects) and identity (lease, Events).
    let env = c["env"].as_array().expect("env");
    let field = |name: &str| {
        env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no {name}"))["valueFrom"]["fieldRef"]
            ["fieldPath"]
            .clone()
    };
    assert_eq!(field("POD_NAMESPACE"), "metadata.namespace");
    assert_eq!(field("POD_NAME"), "metadata.name");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["ports"], json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(c["livenessProbe"]["httpGet"], json!({"path": "/healthz", "port": "metrics"}));
    assert_eq!(c["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "metrics"}));
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(c["resources"][bound][resource].is_string(), "resources.{bound}.{resource}: {}", c["resources"]);
        }
    }

    let svc = find(&objs, "Service", "zenml-operator-metrics");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(svc["spec"]["selector"], deploy["spec"]["selector"]["matchLabels"]);
    let pdb = find(&objs, "PodDisruptionBudget", "zenml-operator");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(pdb["spec"]["selector"], deploy["spec"]["selector"]);
    let vapb = find(&objs, "ValidatingAdmissionPolicyBinding", "zenml-operator-project-delegation");
    assert_eq!(vapb["spec"]["policyName"], "zenml-operator-project-delegation");
    assert_eq!(vapb["spec"]["validationActions"], json!(["Deny"]));
    let binding = find(&objs, "ClusterRoleBinding", "zenml-operator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "zenml-operator", "namespace": "zenml-system"}])
    );
}

#[test]
fn non_default_values_render_what_they_say() {
    let objs = render(&[
        "replicaCount=3",
        "customRoles={zenml-pipeline-runner,team-reader}",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
        "metrics.serviceMonitor.interval=15s",
        "selfService.groups={data-scientists,ml-platform}",
        "admissionPolicies.enabled=false",
        "logFormat=json",
        "concurrency=4",
        "image.tag=dev",
        "egress.dnsNamespace=dns-system",
        "egress.apiServerEndpoints={10.0.0.10:6443,[fd00::10]:6443}",
    ]);
    let names = inventory(&objs);
    assert!(!names.iter().any(|n| n.starts_with("ValidatingAdmissionPolicy")), "{names:?}");
    assert_eq!(find(&objs, "Deployment", "zenml-operator")["spec"]["replicas"], 3);
    assert_eq!(container(&objs)["image"], "ghcr.io/zenml-io/zenml-operator:dev");
    let args = args(&objs);
    assert!(args.contains(&"--log-format=json".to_owned()), "{args:?}");
    assert!(args.contains(&"--concurrency=4".to_owned()), "{args:?}");
    // Without the policies, the operator binds none.
    assert!(args.contains(&"--workspace-policy=".to_owned()), "{args:?}");
    for arg in
        ["--dns-namespace=dns-system", "--api-server-endpoint=10.0.0.10:6443", "--api-server-endpoint=[fd00::10]:6443"]
    {
        assert!(args.contains(&arg.to_owned()), "{arg} in {args:?}");
    }

    let role = find(&objs, "ClusterRole", "zenml-operator");
    let bind = role["rules"].as_array().unwrap().iter().find(|r| r["verbs"] == json!(["bind"])).expect("a bind rule");
    assert_eq!(
        bind["resourceNames"],
        json!(["admin", "edit", "team-reader", "view", "zenml-pipeline-runner", "zenml-project-contributor"])
    );

    let sm = find(&objs, "ServiceMonitor", "zenml-operator");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(sm["spec"]["endpoints"], json!([{"port": "metrics", "path": "/metrics", "interval": "15s"}]));
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        find(&objs, "Service", "zenml-operator-metrics")["spec"]["selector"]
    );

    let crb = find(&objs, "ClusterRoleBinding", "zenml-operator-self-service");
    assert_eq!(crb["roleRef"]["name"], "zenml-self-service");
    let groups: Vec<&str> = crb["subjects"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(groups, ["data-scientists", "ml-platform"]);

    // One replica without election: no Lease, no Role for it, no PDB (it would block every drain).
    let single = render(&["replicaCount=1", "leaderElection.enabled=false"]);
    let names = inventory(&single);
    assert!(!names.iter().any(|n| n.contains("leader-election") || n.starts_with("PodDisruptionBudget")), "{names:?}");
    let args = self::args(&single);
    assert!(args.contains(&"--leader-elect=false".to_owned()) && !args.iter().any(|a| a.starts_with("--lease")));

    // A release of another name: every object of the release carries it; the contract ClusterRoles do not.
    let other = objects(&template("acme", "ops", &[]));
    let names = inventory(&other);
    assert!(names.contains("ClusterRole/acme-zenml-operator"), "{names:?}");
    assert!(names.contains("ValidatingAdmissionPolicy/acme-zenml-operator-project-delegation"), "{names:?}");
    assert!(names.contains("ClusterRole/zenml-project-contributor"), "{names:?}");
    assert!(names.contains("Role/ops/acme-zenml-operator-leader-election"), "{names:?}");
}

/// Values the chart refuses, and what the error must say.
const BAD_VALUES: &[(&str, &str, &[&str])] = &[
    ("replicas as a word", "replicaCount: two", &["replicaCount", "got string, want integer"]),
    ("no replicas", "replicaCount: 0", &["replicaCount", "minimum"]),
    ("unknown log format", "logFormat: xml", &["logFormat", "value must be one of 'text', 'json'"]),
    ("concurrency out of range", "concurrency: 5000", &["concurrency", "maximum"]),
    ("metrics port out of range", "metrics:\n  port: 70000", &["metrics/port", "maximum"]),
    ("bindable cluster-admin", "customRoles: [cluster-admin]", &["the operator may never bind \"cluster-admin\""]),
    ("bindable system role", "customRoles: ['system:node']", &["the operator may never bind \"system:node\""]),
    ("admin as cluster-admin", "roles:\n  admin: cluster-admin", &["the operator may never bind \"cluster-admin\""]),
    ("custom role with a slash", "customRoles: [a/b]", &["customRoles/0", "does not match pattern"]),
    ("misspelled key", "replicacount: 2", &["additional properties 'replicacount' not allowed"]),
    (
        "API server endpoint without a port",
        "egress:\n  apiServerEndpoints: [10.0.0.1]",
        &["egress/apiServerEndpoints/0", "does not match pattern"],
    ),
    (
        "DNS namespace not a name",
        "egress:\n  dnsNamespace: Kube_System",
        &["egress/dnsNamespace", "does not match pattern"],
    ),
    (
        "an RBAC kind as a template kind",
        "templates:\n  kinds: [{apiVersion: rbac.authorization.k8s.io/v1, kind: Role, resource: roles}]",
        &["templates/kinds/0/apiVersion", "'not' failed"],
    ),
    (
        "ServiceAccount as a template kind",
        "templates:\n  kinds: [{apiVersion: v1, kind: ServiceAccount, resource: serviceaccounts}]",
        &["templates/kinds/0/kind", "'not' failed"],
    ),
    (
        "template kind without its resource",
        "templates:\n  kinds: [{apiVersion: v1, kind: Secret}]",
        &["templates/kinds/0"],
    ),
    ("pull policy", "image:\n  pullPolicy: Sometimes", &["image/pullPolicy", "value must be one of"]),
    ("percent without %", "podDisruptionBudget:\n  minAvailable: half", &["podDisruptionBudget/minAvailable"]),
    (
        "two replicas without election",
        "leaderElection:\n  enabled: false",
        &["leaderElection.enabled=false needs replicaCount: 1"],
    ),
    (
        "renew deadline past the lease",
        "leaderElection:\n  leaseDuration: 10\n  renewDeadline: 10",
        &["renewDeadline must be less than leaderElection.leaseDuration"],
    ),
];

#[test]
fn bad_values_fail_at_template_and_install_time() {
    let dir = std::env::temp_dir().join(unique("e2e-chart-values"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut failures = Vec::new();
    for (name, yaml, expected) in BAD_VALUES {
        let file = dir.join("values.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = run(helm().args(["template", "zenml-operator"]).arg(chart_dir()).arg("-f").arg(&file));
        if out.success() {
            failures.push(format!("{name}: rendered without error"));
            continue;
        }
        let missing: Vec<&&str> = expected.iter().filter(|e| !out.stderr.contains(**e)).collect();
        if !missing.is_empty() {
            failures.push(format!("{name}: error lacks {missing:?}:\n{}", out.stderr));
        }
    }
    // `helm install` checks the same schema before it talks to the cluster.
    let out = run(helm().args(["install", "zenml-operator"]).arg(chart_dir()).args([
        "--dry-run=client",
        "--set-string",
        "replicaCount=two",
    ]));
    if out.success() || !out.stderr.contains("values don't meet the specifications of the schema") {
        failures.push(format!("helm install --set-string replicaCount=two: {}{}", out.stdout, out.stderr));
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------------------------
// Least privilege
// ---------------------------------------------------------------------------------------------------------------

/// The operator's ClusterRole with the chart's default values, rule by rule. Each rule is there because the code
/// needs it; `make test` runs every e2e test with the operator impersonating the chart's ServiceAccount, so a
/// missing rule fails a test. A rule added to the chart must be added (and justified) here too.
fn expected_cluster_role_rules() -> Value {
    json!([
        // Caches of its own kinds (list+watch; the start-up check for the CRDs lists); its finalizer (JSON patch).
        {"apiGroups": ["zenml.io"], "resources": ["workspaces", "projects"], "verbs": ["list", "watch", "patch"]},
        // Creating a binding whose paramRef names a Workspace needs `get` on it.
        {"apiGroups": ["zenml.io"], "resources": ["workspaces"], "verbs": ["get"]},
        // A workspace's default project: created (never applied onto a name it does not hold), deleted when no longer
        // declared or with its workspace; `get` asks whose one is when the create is refused as existing.
        {"apiGroups": ["zenml.io"], "resources": ["projects"], "verbs": ["get", "create", "delete"]},
        // No finalizer on bindings: their RoleBinding goes by garbage collection.
        {"apiGroups": ["zenml.io"], "resources": ["projectrolebindings"], "verbs": ["get", "list", "watch"]},
        // Status by server-side apply.
        {"apiGroups": ["zenml.io"], "resources": ["workspaces/status", "projects/status", "projectrolebindings/status"], "verbs": ["patch"]},
        // The project delegation policy checks it on the operator's finalizer patches; granted per workspace.
        {"apiGroups": ["zenml.io"], "resources": ["workspaces"], "verbs": ["manage-projects"]},
        // Granted in each project's delegation Role.
        {"apiGroups": ["zenml.io"], "resources": ["projectrolebindings"], "verbs": ["manage"]},
        // Project namespaces: metadata cache, apply, delete (deletionPolicy Delete), get while one is deleted.
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        // Children in project namespaces: cache, apply, prune.
        {"apiGroups": [""], "resources": ["resourcequotas", "limitranges", "serviceaccounts"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["list", "watch", "create", "patch", "delete"]},
        // Workspace templates (templates.kinds): cache, get before a create (someone else's is left alone), apply, prune.
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["limitranges"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        // Workspace delegation: the ClusterRole goes by garbage collection only; the binding goes with the last admin.
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["list", "watch", "create", "patch"]},
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterrolebindings"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
        // Workspace policies: one binding per workspace, watched, created once (never patched, deleted by garbage collection).
        {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingadmissionpolicybindings"], "verbs": ["get", "list", "watch", "create"]},
        // Bind exactly the project roles' ClusterRoles (and customRoles, none by default).
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
         "resourceNames": ["admin", "edit", "view", "zenml-project-contributor"]},
    ])
}

#[test]
fn the_operator_gets_exactly_the_expected_permissions() {
    let objs = render(&[]);
    assert_eq!(
        find(&objs, "ClusterRole", "zenml-operator")["rules"],
        expected_cluster_role_rules(),
        "the operator's ClusterRole changed: justify every rule in charts/zenml-operator/templates/rbac.yaml and here"
    );
    // Events of cluster-scoped objects go to `default`, where the `kubernetes` Service's EndpointSlices (the API
    // server's addresses, which restricted egress allows) are only read; the leader Lease lives in the release
    // namespace.
    let events = find(&objs, "Role", "zenml-operator-events");
    assert_eq!(events["metadata"]["namespace"], "default");
    assert_eq!(
        events["rules"],
        json!([
            {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
        ])
    );
    let lease = find(&objs, "Role", "zenml-operator-leader-election");
    assert_eq!(lease["metadata"]["namespace"], "zenml-system");
    assert_eq!(
        lease["rules"],
        json!([{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}])
    );
    // Nothing anywhere in the chart grants the operator a wildcard or `escalate`.
    for obj in objs.iter().filter(|o| o["metadata"]["name"].as_str().is_some_and(|n| n.starts_with("zenml-operator"))) {
        for rule in obj["rules"].as_array().into_iter().flatten() {
            for field in ["apiGroups", "resources", "verbs", "resourceNames"] {
                let values = rule[field].as_array().into_iter().flatten();
                for v in values {
                    assert!(v != "*" && v != "escalate" && v != "impersonate", "{obj}");
                }
            }
        }
    }
}

/// The operator may bind only the ClusterRoles the chart lists: a workspace that allows another one gets
/// BindForbidden, not a RoleBinding (it must not be a confused deputy). As cluster-admin, it binds anything.
#[tokio::test]
async fn the_operator_binds_only_the_cluster_roles_the_chart_lists() {
    install_crds();
    let op = operator::shared();
    // The role grants what the operator never holds (Secrets): RBAC lets anyone bind a role whose every permission
    // they hold themselves, and the operator holds ConfigMaps for the Workspace templates.
    let (ws, project, binding, role) =
        (unique("e2e-chart-ws"), unique("e2e-chart-p"), unique("e2e-chart-prb"), unique("e2e-chart-role"));
    let manifests = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}}}\nrules: [{{apiGroups: [''], resources: [secrets], verbs: [get]}}]\n---\n\
         apiVersion: zenml.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\nspec: {{roles: [{{name: reader, clusterRole: {role}}}]}}\n---\n\
         apiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {project}}}\nspec: {{workspace: {ws}}}\n---\n\
         apiVersion: zenml.io/v1alpha1\nkind: ProjectRoleBinding\nmetadata: {{name: {binding}}}\nspec: {{project: {project}, role: reader, subjects: [{{kind: User, name: alice}}]}}\n"
    );
    apply_manifests(&manifests);
    let (want, reason) = if operator::impersonating() { ("False", "BindForbidden") } else { ("True", "Bound") };
    let what = format!("binding {binding} Ready={want} ({reason})");
    let got = eventually(TIMEOUT, &what, || async {
        match read_condition("projectrolebinding", &binding, "Ready") {
            Some(c) if c.status == want && c.reason == reason => Ok(c),
            other => Err(format!("{other:?} (operator log {})", op.log.display())),
        }
    })
    .await;
    if operator::impersonating() {
        assert!(got.message.contains(&role), "the message names the ClusterRole: {got}");
        let rb =
            run(kubectl().args(["get", "rolebindings", "-n", &project, "-l", "zenml.io/role=reader", "-o", "name"]));
        assert_eq!(rb.stdout.trim(), "", "no RoleBinding for a role the operator may not bind");
    }
    cleanup(&[("projectrolebinding", &binding), ("project", &project), ("workspace", &ws), ("clusterrole", &role)]);
}

/// Deletes cluster-scoped objects in order and waits for each to be gone (Projects wait for their namespace).
fn cleanup(objects: &[(&str, &str)]) {
    for (kind, name) in objects {
        let out = run(kubectl().args(["delete", kind, name, "--ignore-not-found", "--timeout=90s"]));
        assert!(out.success(), "cannot delete {kind} {name}: {}", out.stderr);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// On the cluster
// ---------------------------------------------------------------------------------------------------------------

/// Everything the chart renders (CRDs included; the ServiceMonitor left out, as this cluster has no Prometheus
/// Operator) passes the API server's validation and admission, without being stored.
#[tokio::test]
async fn the_api_server_accepts_the_rendered_chart() {
    install_crds();
    let client = client().await;
    let ns = namespace(&client, "e2e-chart-dry").await;
    let release = unique("e2e-dry");
    let mut cmd = helm();
    cmd.args(["template", &release]).arg(chart_dir()).args([
        "--namespace",
        &ns,
        "--include-crds",
        "--set",
        "selfService.groups={e2e-chart-group}",
        "--set",
        "customRoles={zenml-pipeline-runner}",
    ]);
    let rendered = run_ok(&mut cmd);
    let count = objects(&rendered).len();
    let out = run_stdin(
        kubectl().args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "--field-manager=e2e-dry-run",
            "-f",
            "-",
        ]),
        &rendered,
    );
    delete_namespace(&client, &ns).await;
    assert!(out.success(), "the API server refused the rendered chart:\n{}{}", out.stdout, out.stderr);
    let applied = out.stdout.lines().filter(|l| l.contains("(server dry run)")).count();
    assert_eq!(applied, count, "{}", out.stdout);
}

/// `helm install` creates every object of the chart, `helm uninstall` removes them and keeps the CRDs. No kubelet
/// runs here, so the operator's pods stay Pending: that is expected.
#[tokio::test]
async fn helm_install_creates_every_object_and_uninstall_removes_them() {
    install_crds();
    let client = client().await;
    let ns = namespace(&client, "e2e-chart-install").await;
    let release = unique("e2e-rel");
    let fullname = format!("{release}-zenml-operator");
    let group = unique("e2e-chart-group");

    // The contract ClusterRoles exist already (applied by hand, as `install_crds` and `make demo` do): Helm refuses
    // to take them over, and creates nothing.
    let out = run(helm().args(["install", &release]).arg(chart_dir()).args(["--namespace", &ns]));
    assert!(!out.success(), "helm installed over ClusterRoles it does not own:\n{}", out.stdout);
    assert!(out.stderr.contains("exists and cannot be imported into the current release"), "{}", out.stderr);
    let leftover = run(kubectl().args(["get", "clusterrole", &fullname, "--ignore-not-found", "-o", "name"]));
    assert_eq!(leftover.stdout.trim(), "", "a refused install left objects behind");

    let start = Instant::now();
    let out = run(helm().args(["install", &release]).arg(chart_dir()).args([
        "--namespace",
        &ns,
        "--set",
        "contributorRole.create=false",
        "--set",
        "selfService.createRole=false",
        "--set",
        &format!("selfService.groups={{{group}}}"),
        // The release's tenant policies exempt its own operator; the tests' operator keeps working beside them.
        "--set",
        &format!("admissionPolicies.exemptUsers={{{}}}", operator::service_account_user()),
    ]));
    assert!(out.success(), "helm install failed:\n{}{}", out.stdout, out.stderr);
    eprintln!("helm install took {:?}", start.elapsed());
    assert!(out.stdout.contains("STATUS: deployed"), "{}", out.stdout);
    assert!(out.stdout.contains("never upgrades or deletes them"), "NOTES explain the CRDs:\n{}", out.stdout);

    let namespaced = [
        ("deployment", fullname.clone()),
        ("serviceaccount", fullname.clone()),
        ("service", format!("{fullname}-metrics")),
        ("poddisruptionbudget", fullname.clone()),
        ("role", format!("{fullname}-leader-election")),
        ("rolebinding", format!("{fullname}-leader-election")),
    ];
    for (kind, name) in &namespaced {
        run_ok(kubectl().args(["get", kind, name, "-n", &ns]));
    }
    let in_default = [("role", format!("{fullname}-events")), ("rolebinding", format!("{fullname}-events"))];
    for (kind, name) in &in_default {
        run_ok(kubectl().args(["get", kind, name, "-n", "default"]));
    }
    let cluster = [
        ("clusterrole", fullname.clone()),
        ("clusterrolebinding", fullname.clone()),
        ("clusterrolebinding", format!("{fullname}-self-service")),
        ("validatingadmissionpolicy", format!("{fullname}-project-delegation")),
        ("validatingadmissionpolicy", format!("{fullname}-binding-delegation")),
        ("validatingadmissionpolicybinding", format!("{fullname}-project-delegation")),
        ("validatingadmissionpolicybinding", format!("{fullname}-binding-delegation")),
    ];
    for (kind, name) in &cluster {
        run_ok(kubectl().args(["get", kind, name]));
    }
    // The Deployment's ReplicaSet makes the pods; with no scheduler or kubelet they stay Pending.
    eventually(TIMEOUT, "the Deployment's two pods", || async {
        let out = run(kubectl().args([
            "get",
            "pods",
            "-n",
            &ns,
            "-l",
            &format!("app.kubernetes.io/instance={release}"),
            "-o",
            "name",
        ]));
        (out.stdout.lines().count() == 2).then_some(())
    })
    .await;
    // The chart's ServiceAccount may do what the operator needs, and not more.
    let sa = format!("system:serviceaccount:{ns}:{fullname}");
    let can =
        |args: &[&str]| run(kubectl().args(["auth", "can-i"]).args(args).args(["--as", &sa])).stdout.trim().to_owned();
    assert_eq!(can(&["patch", "projects.zenml.io/status"]), "yes");
    assert_eq!(can(&["bind", "clusterroles/edit"]), "yes");
    assert_eq!(can(&["update", "leases", "-n", &ns]), "yes");
    assert_eq!(can(&["bind", "clusterroles/cluster-admin"]), "no");
    assert_eq!(can(&["escalate", "clusterroles"]), "no");
    assert_eq!(can(&["get", "secrets", "-A"]), "no");
    assert_eq!(can(&["update", "leases", "-n", "kube-system"]), "no");

    let start = Instant::now();
    let out = run(helm().args(["uninstall", &release, "--namespace", &ns, "--wait", "--timeout=60s"]));
    assert!(out.success(), "helm uninstall failed:\n{}{}", out.stdout, out.stderr);
    eprintln!("helm uninstall took {:?}", start.elapsed());
    for (kind, name) in &cluster {
        let out = run(kubectl().args(["get", kind, name, "--ignore-not-found", "-o", "name"]));
        assert_eq!(out.stdout.trim(), "", "{kind} {name} outlived the release");
    }
    for (kind, name) in &in_default {
        let out = run(kubectl().args(["get", kind, name, "-n", "default", "--ignore-not-found", "-o", "name"]));
        assert_eq!(out.stdout.trim(), "", "{kind} {name} outlived the release");
    }
    // Helm never deletes CRDs, so no Workspace or Project goes with the release.
    run_ok(kubectl().args(["get", "crd", "workspaces.zenml.io", "projects.zenml.io", "projectrolebindings.zenml.io"]));
    delete_namespace(&client, &ns).await;
}

// ---------------------------------------------------------------------------------------------------------------
// Metrics and health
// ---------------------------------------------------------------------------------------------------------------

/// The value of `name{labels}` in a Prometheus text exposition, if present.
fn sample(body: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)?.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn metrics_count_reconciles_of_every_kind_and_probes_answer() {
    install_crds();
    let op = operator::shared();
    let (ws, project, binding) = (unique("e2e-metrics-ws"), unique("e2e-metrics-p"), unique("e2e-metrics-prb"));
    let manifests = format!(
        "apiVersion: zenml.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\nspec: {{}}\n---\n\
         apiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {project}}}\nspec: {{workspace: {ws}}}\n---\n\
         apiVersion: zenml.io/v1alpha1\nkind: ProjectRoleBinding\nmetadata: {{name: {binding}}}\nspec: {{project: {project}, role: developer, subjects: [{{kind: User, name: bob}}]}}\n"
    );
    // Its counters count what it reconciled, so it must be the leader, not a standby.
    eventually(TIMEOUT, "the shared operator to lead (another test run's operator may hold the lease)", || async {
        (op.counter("zenml_operator_leader") == 1).then_some(())
    })
    .await;
    apply_manifests(&manifests);
    for (kind, name) in [("workspace", &ws), ("project", &project), ("projectrolebinding", &binding)] {
        let out = run(kubectl().args(["wait", "--for=condition=Ready", "--timeout=60s", &format!("{kind}/{name}")]));
        assert!(
            out.success(),
            "{kind} {name} not Ready: {}; operator log {}:\n{}",
            out.stderr,
            op.log.display(),
            op.log_tail()
        );
    }

    let ok = |r: &str| r.lines().next().is_some_and(|status| status.starts_with("HTTP/1.") && status.contains(" 200 "));
    let response = op.get("/metrics").expect("/metrics answers");
    assert!(ok(&response), "{response}");
    assert!(response.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    for kind in ["Workspace", "Project", "ProjectRoleBinding"] {
        let n = sample(body, "zenml_operator_reconciles_total", &format!("kind=\"{kind}\""));
        assert!(n.is_some_and(|n| n > 0.0), "no reconciles of {kind} counted:\n{body}");
        let n = sample(body, "zenml_operator_reconcile_duration_seconds_count", &format!("kind=\"{kind}\""));
        assert!(n.is_some_and(|n| n > 0.0), "no reconcile durations of {kind}:\n{body}");
    }
    assert!(body.contains("zenml_operator_writes_total{kind=\"Namespace\"}"), "{body}");
    for probe in ["/healthz", "/readyz"] {
        let r = op.get(probe).unwrap_or_default();
        assert!(ok(&r), "{probe}: {r}");
    }
    // Every Event was published: they are best effort, so a missing permission for them would only be logged.
    let log = std::fs::read_to_string(&op.log).unwrap_or_default();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("cannot publish event")).collect();
    assert!(refused.is_empty(), "the operator could not publish Events:\n{}", refused.join("\n"));

    cleanup(&[("projectrolebinding", &binding), ("project", &project), ("workspace", &ws)]);
}
