//! The report: one row per figure, notes, and last the one-line machine-readable [`Summary`] (docs/benchmarks.md).

use std::fmt;

/// One figure.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub detail: String,
}

/// The headline numbers, printed as the report's last line.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub ratio: f64,
    pub writes_per_project: f64,
    pub idle_writes: u64,
    pub restart_writes: u64,
    pub rss_mib: u64,
    pub recovery_s: f64,
    pub p50_ms: u64,
    pub p99_ms: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "summary: n={} ratio={:.2} writes_per_project={:.1} idle_writes={} restart_writes={} rss_mib={} \
             recovery_s={:.1} p50_ms={} p99_ms={}",
            self.n,
            self.ratio,
            self.writes_per_project,
            self.idle_writes,
            self.restart_writes,
            self.rss_mib,
            self.recovery_s,
            self.p50_ms,
            self.p99_ms
        )
    }
}

impl Summary {
    /// Parses a line printed by `Display`: exactly these keys, in this order.
    pub fn parse(line: &str) -> Option<Summary> {
        let rest = line.trim().strip_prefix("summary: ")?;
        let mut fields = rest.split(' ').map(|kv| kv.split_once('='));
        let mut next = |key: &str| -> Option<String> {
            let (k, v) = fields.next()??;
            (k == key).then(|| v.to_owned())
        };
        let s = Summary {
            n: next("n")?.parse().ok()?,
            ratio: next("ratio")?.parse().ok()?,
            writes_per_project: next("writes_per_project")?.parse().ok()?,
            idle_writes: next("idle_writes")?.parse().ok()?,
            restart_writes: next("restart_writes")?.parse().ok()?,
            rss_mib: next("rss_mib")?.parse().ok()?,
            recovery_s: next("recovery_s")?.parse().ok()?,
            p50_ms: next("p50_ms")?.parse().ok()?,
            p99_ms: next("p99_ms")?.parse().ok()?,
        };
        fields.next().is_none().then_some(s)
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
            ratio: 1.12,
            writes_per_project: 14.0,
            idle_writes: 0,
            restart_writes: 0,
            rss_mib: 41,
            recovery_s: 6.2,
            p50_ms: 180,
            p99_ms: 420,
        };
        let line = s.to_string();
        assert_eq!(
            line,
            "summary: n=1000 ratio=1.12 writes_per_project=14.0 idle_writes=0 restart_writes=0 rss_mib=41 \
             recovery_s=6.2 p50_ms=180 p99_ms=420"
        );
        assert_eq!(Summary::parse(&line), Some(s));
        assert!(
            Summary::parse(
                "summary: n=1000 ratio=1.12 writes_per_project=14 idle_writes=0 restart_writes=0 rss_mib=41 \
                 recovery_s=6.2 p50_ms=180 p99_ms=420"
            )
            .is_some()
        );
        assert_eq!(Summary::parse("summary: n=1 ratio=1"), None);
        assert_eq!(Summary::parse(&format!("{line} extra=1")), None);
    }
}
