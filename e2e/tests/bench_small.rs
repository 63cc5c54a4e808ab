//! The benchmark of `make bench` (docs/benchmarks.md), run small so it cannot rot: 20 projects, short idle and restart
//! windows, one client concurrency instead of a sweep. Its figures mean little at this size; what must hold at any
//! size is that the operator writes nothing while idle and nothing after a restart.

use std::time::Duration;

use e2e::bench::{self, Settings, Summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_benchmark_runs_and_the_operator_is_quiet_when_idle_and_after_a_restart() {
    let settings = Settings {
        projects: 20,
        idle_seconds: 5,
        restart_seconds: 5,
        latency_runs: 5,
        concurrencies: vec![16],
        settle_seconds: 2,
        leader_timeout: Duration::from_secs(30),
        ..Settings::default()
    };
    let report = bench::run(&settings).await.unwrap_or_else(|e| panic!("the benchmark failed: {e}"));
    println!("{report}");
    assert_eq!(report.cleanup_failed, None, "the benchmark leaves nothing behind");
    let text = report.to_string();
    let last = text.lines().last().expect("a report has lines");
    let summary = Summary::parse(last).unwrap_or_else(|| panic!("the last line is not a summary: {last:?}"));
    assert_eq!(summary.to_string(), report.summary.to_string());
    assert_eq!(summary.n, 20);
    assert_eq!(summary.idle_writes, 0, "the operator wrote while idle:\n{report}");
    assert_eq!(summary.restart_writes, 0, "the operator wrote after a restart:\n{report}");
    assert!(summary.writes_per_project > 0.0 && summary.ratio > 0.0 && summary.rss_mib > 0, "{report}");
}
