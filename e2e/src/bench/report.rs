//! The report: one row per figure, notes, and last the one-line machine-readable [`Summary`] (docs/benchmarks.md).

use std::fmt;

/// One figure.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub detail: String,
}

/// The headline numbers, printed as the report's last line. A figure whose phase was skipped (`--skip`, or
/// `--churn-seconds 0`) is left out of the line rather than printed as a placeholder, so a parser never mistakes a
/// skipped phase for a measured zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    pub n: usize,
    /// Operator over floor, time.
    pub ratio: Option<f64>,
    pub writes_per_project: f64,
    pub idle_writes: Option<u64>,
    pub restart_writes: Option<u64>,
    pub rss_mib: Option<u64>,
    pub recovery_s: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
    /// Operator over budget floor, time.
    pub budget_ratio: Option<f64>,
    /// Operator over budget floor, in the API server's CPU seconds.
    pub budget_cpu_ratio: Option<f64>,
    /// The operator's resident memory per project beyond what it held with no project (steady, after idling).
    pub kib_per_project: Option<f64>,
    /// The slowest change's lag (nearest rank) while churning.
    pub churn_p99_ms: Option<u64>,
}

/// The keys of the summary line, in the order they are printed (new keys are appended, so a line stays readable by
/// a parser that knows a prefix of them).
const KEYS: &[&str] = &[
    "n",
    "ratio",
    "writes_per_project",
    "idle_writes",
    "restart_writes",
    "rss_mib",
    "recovery_s",
    "p50_ms",
    "p99_ms",
    "budget_ratio",
    "budget_cpu_ratio",
    "kib_per_project",
    "churn_p99_ms",
];

impl Summary {
    /// (key, value) in the order of [`KEYS`], skipped figures left out.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let f1 = |v: Option<f64>| v.map(|v| format!("{v:.1}"));
        let f2 = |v: Option<f64>| v.map(|v| format!("{v:.2}"));
        let int = |v: Option<u64>| v.map(|v| v.to_string());
        let values = [
            Some(self.n.to_string()),
            f2(self.ratio),
            Some(format!("{:.1}", self.writes_per_project)),
            int(self.idle_writes),
            int(self.restart_writes),
            int(self.rss_mib),
            f1(self.recovery_s),
            int(self.p50_ms),
            int(self.p99_ms),
            f2(self.budget_ratio),
            f2(self.budget_cpu_ratio),
            f1(self.kib_per_project),
            int(self.churn_p99_ms),
        ];
        KEYS.iter().zip(values).filter_map(|(k, v)| Some((*k, v?))).collect()
    }

    /// Parses a line printed by `Display`: known keys only, each at most once and in the printed order; `n` and
    /// `writes_per_project` (provisioning, which always runs) must be there.
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.trim().strip_prefix("summary: ")?;
        let mut s = Summary::default();
        let (mut n, mut writes, mut at) = (false, false, 0);
        for kv in rest.split(' ') {
            let (k, v) = kv.split_once('=')?;
            let i = KEYS.iter().position(|key| *key == k)?;
            if i < at {
                return None;
            }
            at = i + 1;
            match k {
                "n" => (s.n, n) = (v.parse().ok()?, true),
                "ratio" => s.ratio = Some(v.parse().ok()?),
                "writes_per_project" => (s.writes_per_project, writes) = (v.parse().ok()?, true),
                "idle_writes" => s.idle_writes = Some(v.parse().ok()?),
                "restart_writes" => s.restart_writes = Some(v.parse().ok()?),
                "rss_mib" => s.rss_mib = Some(v.parse().ok()?),
                "recovery_s" => s.recovery_s = Some(v.parse().ok()?),
                "p50_ms" => s.p50_ms = Some(v.parse().ok()?),
                "p99_ms" => s.p99_ms = Some(v.parse().ok()?),
                "budget_ratio" => s.budget_ratio = Some(v.parse().ok()?),
                "budget_cpu_ratio" => s.budget_cpu_ratio = Some(v.parse().ok()?),
                "kib_per_project" => s.kib_per_project = Some(v.parse().ok()?),
                "churn_p99_ms" => s.churn_p99_ms = Some(v.parse().ok()?),
                _ => return None,
            }
        }
        (n && writes).then_some(s)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields: Vec<String> = self.fields().into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        write!(f, "summary: {}", fields.join(" "))
    }
}

/// Everything a run found.
#[derive(Clone, Debug)]
pub struct Report {
    /// Machine, cluster, operator build.
    pub header: Vec<String>,
    pub rows: Vec<Row>,
    /// How the figures were obtained, and anything that looked wrong.
    pub notes: Vec<String>,
    pub summary: Summary,
    /// Set when every figure was measured but deleting what the benchmark made failed.
    pub cleanup_failed: Option<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.header {
            writeln!(f, "{h}")?;
        }
        let w0 = self.rows.iter().map(|r| r.figure.len()).max().unwrap_or(0).max(6);
        let w1 = self.rows.iter().map(|r| r.value.len()).max().unwrap_or(0).max(5);
        writeln!(f)?;
        writeln!(f, "{:<w0$}  {:>w1$}  how", "figure", "value")?;
        writeln!(f, "{:-<w0$}  {:->w1$}  {:-<40}", "", "", "")?;
        for r in &self.rows {
            writeln!(f, "{:<w0$}  {:>w1$}  {}", r.figure, r.value, r.detail)?;
        }
        if !self.notes.is_empty() {
            writeln!(f)?;
            for n in &self.notes {
                writeln!(f, "note: {n}")?;
            }
        }
        writeln!(f)?;
        write!(f, "{}", self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_round_trips() {
        let s = Summary {
            n: 1000,
            ratio: Some(1.12),
            writes_per_project: 14.0,
            idle_writes: Some(0),
            restart_writes: Some(0),
            rss_mib: Some(41),
            recovery_s: Some(6.2),
            p50_ms: Some(180),
            p99_ms: Some(420),
            budget_ratio: Some(1.2),
            budget_cpu_ratio: Some(1.31),
            kib_per_project: Some(19.5),
            churn_p99_ms: Some(240),
        };
        let line = s.to_string();
        assert_eq!(
            line,
            "summary: n=1000 ratio=1.12 writes_per_project=14.0 idle_writes=0 restart_writes=0 rss_mib=41 \
             recovery_s=6.2 p50_ms=180 p99_ms=420 budget_ratio=1.20 budget_cpu_ratio=1.31 kib_per_project=19.5 \
             churn_p99_ms=240"
        );
        assert_eq!(Summary::parse(&line), Some(s));
        // A line of before the new keys still parses.
        assert!(
            Summary::parse(
                "summary: n=1000 ratio=1.12 writes_per_project=14 idle_writes=0 restart_writes=0 rss_mib=41 \
                 recovery_s=6.2 p50_ms=180 p99_ms=420"
            )
            .is_some()
        );
        assert_eq!(Summary::parse("summary: n=1 ratio=1"), None);
        assert_eq!(Summary::parse(&format!("{line} extra=1")), None);
        assert_eq!(Summary::parse("summary: ratio=1.0 n=1 writes_per_project=1.0"), None);
    }

    #[test]
    fn skipped_phases_leave_their_keys_out() {
        let s = Summary { n: 10000, writes_per_project: 16.1, recovery_s: Some(9.5), ..Summary::default() };
        let line = s.to_string();
        assert_eq!(line, "summary: n=10000 writes_per_project=16.1 recovery_s=9.5");
        assert_eq!(Summary::parse(&line), Some(s));
    }
}
