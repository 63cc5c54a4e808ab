//! The runs the benchmark recorded (one JSON line each, `docs/bench/runs.jsonl` for `make bench`) and the plots drawn
//! from all of them: provisioning time, the API server's CPU and the operator's memory against N, so growth shows as
//! a picture (docs/benchmarks.md, "Plots").

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use super::{Phase, Result, Settings};

/// One run as recorded. Figures of a skipped phase are null; unknown fields of other versions are ignored, missing
/// ones read as null, so the file outlives changes to the benchmark.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// `git describe --always --dirty` of the working tree the benchmark ran from.
    pub commit: String,
    /// The operator binary measured and when it was built (its modification time): the commit above is the tree's
    /// when the run started, which the binary need not match.
    pub operator: String,
    /// Cores, memory and the load average when the run started (a busy machine shows here).
    pub machine: String,
    /// `--record-note`: e.g. what else ran on the machine.
    pub note: Option<String>,
    pub n: usize,
    /// The phases that ran.
    pub phases: Vec<String>,
    pub floor_s: Option<f64>,
    pub budget_floor_s: Option<f64>,
    pub operator_s: Option<f64>,
    /// kube-apiserver CPU seconds in each window.
    pub floor_api_cpu_s: Option<f64>,
    pub budget_floor_api_cpu_s: Option<f64>,
    pub operator_api_cpu_s: Option<f64>,
    /// The operator's own CPU seconds while provisioning.
    pub operator_cpu_s: Option<f64>,
    pub rss_peak_mib: Option<u64>,
    pub rss_steady_mib: Option<u64>,
    /// The operator's RSS with the Workspace and no project, the base of the memory per project.
    pub rss_base_mib: Option<f64>,
    pub churn: Option<ChurnRecord>,
    /// The report's last line.
    pub summary: String,
}

/// What the churn phase measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ChurnRecord {
    pub seconds: u64,
    pub changes: usize,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub operator_cpu_ms_per_change: Option<f64>,
    pub api_cpu_ms_per_change: Option<f64>,
    pub writes_per_change: Option<f64>,
    /// Lag p50 of the last third of the changes over that of the first third.
    pub late_over_early_p50: Option<f64>,
    pub backlog_grew: bool,
}

impl RunRecord {
    /// What is known before the run: date, commit, machine, the phases that will run.
    pub(super) fn start(s: &Settings, header: &[String]) -> RunRecord {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        let machine = header.get(1).and_then(|h| h.strip_prefix("machine: ")).and_then(|h| h.split(';').next());
        let mut phases = vec![Phase::Floor, Phase::Budget];
        phases.retain(|p| s.runs(*p));
        let mut names: Vec<String> = phases.iter().map(|p| p.name().to_owned()).collect();
        names.push("provisioning".into());
        names.extend(
            [Phase::Idle, Phase::Restart, Phase::Latency, Phase::Churn]
                .iter()
                .filter(|p| s.runs(**p))
                .map(|p| p.name().to_owned()),
        );
        RunRecord {
            date: k8s_openapi::jiff::Timestamp::now()
                .round(k8s_openapi::jiff::Unit::Second)
                .unwrap_or_default()
                .to_string(),
            commit: git_describe(),
            machine: format!("{}, load {load}", machine.unwrap_or("?")),
            note: s.record_note.clone(),
            n: s.projects,
            phases: names,
            ..RunRecord::default()
        }
    }
}

fn git_describe() -> String {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => "unknown".into(),
    }
}

/// Appends `record` as one JSON line to `path` (made, with its directory, if missing).
pub(super) fn append(path: &Path, record: &RunRecord) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    writeln!(f, "{}", serde_json::to_string(record)?)?;
    Ok(())
}

/// Reads the runs of `path`, skipping lines that are not records (a hand-edited file should not stop a run).
pub fn read(path: &Path) -> Result<Vec<RunRecord>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// Draws the plots of every run in the file `runs` into the same directory; returns their paths.
pub fn render_file(runs: &Path) -> Result<Vec<PathBuf>> {
    let dir = runs.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    render(&read(runs)?, dir)
}

/// The series of the plots, by plot file: (file, title, unit, series names).
pub const SERIES: &[(&str, &str, &str, &[&str])] = &[
    ("provisioning-time.svg", "Provisioning time", "seconds", &["operator", "floor", "budget floor"]),
    (
        "apiserver-cpu.svg",
        "kube-apiserver CPU while provisioning",
        "CPU seconds",
        &["operator", "floor", "budget floor"],
    ),
    (
        "operator-memory.svg",
        "Operator memory",
        "MiB",
        &["operator peak RSS", "operator steady RSS", "target: base + 20 KiB/project"],
    ),
];

/// Draws `SERIES` from `runs` into `dir`: one point per run, a line through the median of each N.
pub fn render(runs: &[RunRecord], dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (file, title, unit, names) in SERIES {
        let series: Vec<Vec<(f64, f64)>> = names.iter().map(|name| points(runs, file, name)).collect();
        let path = dir.join(file);
        draw(&path, title, unit, names, &series).map_err(|e| format!("drawing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// (N, value) of each run for one series.
fn points(runs: &[RunRecord], file: &str, name: &str) -> Vec<(f64, f64)> {
    runs.iter()
        .filter_map(|r| {
            let v = match (file, name) {
                ("provisioning-time.svg", "operator") => r.operator_s,
                ("provisioning-time.svg", "floor") => r.floor_s,
                ("provisioning-time.svg", "budget floor") => r.budget_floor_s,
                ("apiserver-cpu.svg", "operator") => r.operator_api_cpu_s,
                ("apiserver-cpu.svg", "floor") => r.floor_api_cpu_s,
                ("apiserver-cpu.svg", "budget floor") => r.budget_floor_api_cpu_s,
                ("operator-memory.svg", "operator peak RSS") => r.rss_peak_mib.map(|m| m as f64),
                ("operator-memory.svg", "operator steady RSS") => r.rss_steady_mib.map(|m| m as f64),
                // The issue's target is on what each project adds to what the process held without any.
                ("operator-memory.svg", "target: base + 20 KiB/project") => {
                    r.rss_base_mib.map(|b| b + r.n as f64 * 20.0 / 1024.0)
                }
                _ => None,
            };
            Some((r.n as f64, v?))
        })
        .collect()
}

/// The median of the values at each N, in order of N.
fn medians(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut by_n: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (n, v) in points {
        by_n.entry(*n as u64).or_default().push(*v);
    }
    by_n.into_iter()
        .map(|(n, mut vs)| {
            vs.sort_by(f64::total_cmp);
            let m = vs.len() / 2;
            let median = if vs.len() % 2 == 1 { vs[m] } else { (vs[m - 1] + vs[m]) / 2.0 };
            (n as f64, median)
        })
        .collect()
}

fn draw(
    path: &Path,
    title: &str,
    unit: &str,
    names: &[&str],
    series: &[Vec<(f64, f64)>],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let all: Vec<(f64, f64)> = series.iter().flatten().copied().collect();
    let (n_min, n_max) = all.iter().fold((f64::MAX, 0f64), |(lo, hi), (n, _)| (lo.min(*n), hi.max(*n)));
    // An empty file or a single N still draws: the axis spans at least 10 .. 10,000 around what there is.
    let (x0, x1) = if all.is_empty() { (10.0, 10_000.0) } else { ((n_min / 2.0).max(1.0), n_max * 2.0) };
    let y1 = all.iter().map(|(_, v)| *v).fold(0f64, f64::max).max(1.0) * 1.15;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} against N"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((x0..x1).log_scale(), 0f64..y1)?;
    chart
        .configure_mesh()
        .x_desc("N (projects, log scale)")
        .y_desc(unit)
        .x_label_formatter(&|n| format!("{n:.0}"))
        // The log scale's minor lines crowd into a grey band near each power of ten.
        .light_line_style(TRANSPARENT)
        .draw()?;
    let colors = [RGBColor(200, 40, 40), RGBColor(40, 90, 200), RGBColor(30, 150, 60)];
    for ((name, points), color) in names.iter().zip(series).zip(colors) {
        chart
            .draw_series(LineSeries::new(medians(points), color.stroke_width(2)))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_are_per_n() {
        let m = medians(&[(100.0, 3.0), (100.0, 1.0), (100.0, 2.0), (10.0, 4.0), (10.0, 6.0)]);
        assert_eq!(m, vec![(10.0, 5.0), (100.0, 2.0)]);
    }

    #[test]
    fn records_round_trip_and_tolerate_unknown_and_missing_fields() {
        let r = RunRecord { n: 20, operator_s: Some(1.5), ..RunRecord::default() };
        let line = serde_json::to_string(&r).unwrap();
        let back: RunRecord = serde_json::from_str(&line).unwrap();
        assert_eq!((back.n, back.operator_s, back.floor_s), (20, Some(1.5), None));
        let other: RunRecord = serde_json::from_str(r#"{"n":5,"new_figure":1}"#).unwrap();
        assert_eq!(other.n, 5);
    }

    /// The names of a plot's series, as the SVG's text says them.
    pub(crate) fn svg_texts(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        doc.descendants()
            .filter(|n| n.has_tag_name("text"))
            .filter_map(|n| n.text())
            .map(|t| t.trim().to_owned())
            .collect()
    }

    #[test]
    fn plots_are_svg_with_every_series_named_also_with_no_run_or_one_n() {
        let dir = std::env::temp_dir().join(format!("bench-plots-{}", std::process::id()));
        let run = |n, t| RunRecord { n, operator_s: Some(t), floor_s: Some(t / 3.0), ..RunRecord::default() };
        for runs in [vec![], vec![run(20, 1.0)], vec![run(20, 1.0), run(20, 2.0), run(100, 8.0)]] {
            let written = render(&runs, &dir).unwrap();
            assert_eq!(written.len(), SERIES.len());
            for (path, (_, _, _, names)) in written.iter().zip(SERIES) {
                let texts = svg_texts(path);
                for name in *names {
                    assert!(texts.iter().any(|t| t == name), "{} lacks {name:?}: {texts:?}", path.display());
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
