//! The benchmark of `make bench` (docs/benchmarks.md), run small so it cannot rot: 20 projects, short idle, restart
//! and churn windows, one client concurrency instead of a sweep, the run recorded in a file of its own and plotted.
//! Its figures mean little at this size; what must hold at any size is that the operator writes nothing while idle
//! and nothing after a restart, that every churned change is seen done, and that the summary line and the plots are
//! what their readers expect.

use std::time::Duration;

use e2e::bench::{self, SERIES, Settings, Summary};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_benchmark_runs_and_the_operator_is_quiet_when_idle_and_after_a_restart() {
    let dir = std::env::temp_dir().join(format!("bench-small-{}", std::process::id()));
    let runs = dir.join("runs.jsonl");
    let settings = Settings {
        projects: 20,
        idle_seconds: 5,
        restart_seconds: 5,
        latency_runs: 5,
        concurrencies: vec![16],
        settle_seconds: 2,
        leader_timeout: Duration::from_secs(30),
        // One change a second: two of each kind.
        churn_seconds: 8,
        record: Some(runs.clone()),
        record_note: Some("bench_small".into()),
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
    assert_eq!(summary.idle_writes, Some(0), "the operator wrote while idle:\n{report}");
    assert_eq!(summary.restart_writes, Some(0), "the operator wrote after a restart:\n{report}");
    assert!(summary.writes_per_project > 0.0, "{report}");
    for (key, present) in [
        ("ratio", summary.ratio.is_some_and(|r| r > 0.0)),
        ("rss_mib", summary.rss_mib.is_some_and(|m| m > 0)),
        ("budget_ratio", summary.budget_ratio.is_some_and(|r| r > 0.0)),
        ("budget_cpu_ratio", summary.budget_cpu_ratio.is_some_and(|r| r > 0.0)),
        ("kib_per_project", summary.kib_per_project.is_some()),
        ("churn_p99_ms", summary.churn_p99_ms.is_some()),
    ] {
        assert!(present, "the summary lacks {key}: {last}");
        assert!(last.contains(&format!(" {key}=")), "{last}");
    }
    assert!(
        !report.notes.iter().any(|n| n.starts_with("churn:")),
        "every churned change is seen done and no request fails:\n{report}"
    );
    for figure in ["8 churn lag p99", "8 churn writes per change", "8 churn CPU per change", "8 churn backlog"] {
        assert!(report.rows.iter().any(|r| r.figure == figure), "no row {figure:?}:\n{report}");
    }

    let recorded = bench::read_runs(&runs).expect("the run is recorded");
    assert_eq!(recorded.len(), 1);
    assert_eq!((recorded[0].n, recorded[0].summary.as_str()), (20, last));
    assert!(recorded[0].churn.as_ref().is_some_and(|c| c.changes == 8), "{:?}", recorded[0].churn);
    for (file, _, _, names) in SERIES {
        let svg = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("no plot {file}: {e}"));
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{file} is not XML: {e}"));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let texts: Vec<&str> =
            doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).map(str::trim).collect();
        for name in *names {
            assert!(texts.contains(name), "{file} has no series {name:?}: {texts:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
