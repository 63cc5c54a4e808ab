//! Leader election: of two operators only one writes, and `kill -9` of the leader hands over to the other.

use std::time::{Duration, Instant};

use e2e::operator::{self, Operator};
use e2e::{apply_manifests, eventually, install_crds, kubectl, run, run_ok, unique, wait_condition};

/// Waits up to 20 s for the Project's Ready condition to be True.
async fn wait_ready(project: &str, what: &str) {
    wait_condition("project", project, "Ready", Duration::from_secs(20), what, |c| c.status == "True").await;
}

#[tokio::test]
async fn only_the_leader_writes_and_a_standby_takes_over_after_a_crash() {
    install_crds();
    let lease = unique("e2e-lease");
    let args = [
        "--lease-name",
        &lease,
        "--lease-duration-seconds",
        "4",
        "--renew-deadline-seconds",
        "3",
        "--retry-period-seconds",
        "1",
    ];
    let a = Operator::start(&args);
    eventually(Duration::from_secs(10), "the first operator leads", || async {
        (a.counter("zenml_operator_leader") == 1).then_some(())
    })
    .await;
    let b = Operator::start(&args);

    let ws = unique("e2e-leader-ws");
    let (p1, p2) = (unique("e2e-leader-p"), unique("e2e-leader-p"));
    apply_manifests(&format!(
        "apiVersion: zenml.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\nspec: {{}}\n---\napiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {p1}}}\nspec: {{workspace: {ws}}}\n"
    ));
    wait_ready(&p1, "the first project is Ready").await;
    assert!(a.writes() > 0, "the leader provisioned the project");
    assert_eq!(b.counter("zenml_operator_leader"), 0, "the second operator stands by");
    assert_eq!(b.writes(), 0, "a standby never writes");

    let crashed = Instant::now();
    a.kill();
    eventually(Duration::from_secs(30), "the standby takes over", || async {
        (b.counter("zenml_operator_leader") == 1).then_some(())
    })
    .await;
    let takeover = crashed.elapsed();
    apply_manifests(&format!(
        "apiVersion: zenml.io/v1alpha1\nkind: Project\nmetadata: {{name: {p2}}}\nspec: {{workspace: {ws}}}\n"
    ));
    wait_ready(&p2, "the new leader provisions").await;
    println!("leader takeover after kill -9: {:.1} s (lease duration 4 s, retry period 1 s)", takeover.as_secs_f64());
    assert!(takeover < Duration::from_secs(10), "takeover took {takeover:?}");

    run_ok(kubectl().args(["delete", "project", &p1, &p2, "--timeout=60s"]));
    run_ok(kubectl().args(["delete", "workspace", &ws, "--timeout=60s"]));
    b.stop();
    // A clean stop gives the lease up at once.
    let ns = operator::lease_namespace();
    let holder = run(kubectl().args(["get", "lease", &lease, "-n", ns, "-o", "jsonpath={.spec.holderIdentity}"]));
    assert!(holder.success(), "{}", holder.stderr);
    assert_eq!(holder.stdout, "", "the lease is released on shutdown");
    run(kubectl().args(["delete", "lease", &lease, "-n", ns]));
}
