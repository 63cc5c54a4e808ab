//! Figures 4a and 5: the settled operator idles and must write nothing; its memory after provisioning and after
//! idling. Also the row of a window without writes, which the restart (figure 4b) shares.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::audit::{Audit, Write, category};
use super::metrics::{self, delta};
use super::provisioning::Marks;
use super::{Bench, Found, OPERATOR_USER, Result, Row};
use crate::operator::Operator;

/// What idling left for the summary.
pub(super) struct Idle {
    pub writes: u64,
    pub rss_mib: u64,
    pub rss_kib: u64,
    pub peak_mib: u64,
}

impl Bench {
    /// Figures 4a and 5: idles for `idle_seconds`, counts the writes meanwhile, reads the operator's memory.
    pub(super) async fn idle(&self, op: &Operator, audit: Option<&Audit>, found: &mut Found) -> Result<Idle> {
        self.say(&format!("idle: {} s", self.s.idle_seconds));
        let start = Marks::take(self, op)?;
        let hwm_provisioning = metrics::memory(op.pid).map(|m| m.hwm_kib).unwrap_or(0);
        let idle_end = Instant::now() + Duration::from_secs(self.s.idle_seconds);
        loop {
            let left = idle_end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::time::sleep(left.min(Duration::from_secs(60))).await;
            let left = idle_end.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                self.say(&format!("idle: {:.0} s left", left.as_secs_f64()));
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let end = Marks::take(self, op)?;
        let (writes, row) = self.quiet_row(
            &format!("4 idle writes ({} s)", self.s.idle_seconds),
            audit.map(|a| a.read(start.audit, end.audit)).transpose()?,
            &start,
            &end,
        );
        found.rows.push(row);

        // 5. Memory, after provisioning N and after idling.
        let mem = metrics::memory(op.pid).ok_or("cannot read the operator's /proc/<pid>/status")?;
        let rss_mib = mem.rss_kib.div_ceil(1024);
        let peak_mib = mem.hwm_kib.max(hwm_provisioning).div_ceil(1024);
        found.rows.push(Row {
            figure: "5 memory peak".into(),
            value: format!("{peak_mib} MiB"),
            detail: format!("VmHWM of the operator process holding {} projects (peak during provisioning)", self.n()),
        });
        found.rows.push(Row {
            figure: "5 memory steady".into(),
            value: format!("{rss_mib} MiB"),
            detail: "VmRSS after the idle period; target <= 64 MiB".into(),
        });
        Ok(Idle { writes, rss_mib, rss_kib: mem.rss_kib, peak_mib })
    }

    /// Writes in a window where there should be none: (count, row). Lease renewals are not counted.
    pub(super) fn quiet_row(&self, figure: &str, audit: Option<Vec<Write>>, m0: &Marks, m1: &Marks) -> (u64, Row) {
        let own = m1.operator.writes.saturating_sub(m0.operator.writes);
        match audit {
            Some(writes) => {
                let ours: Vec<&Write> =
                    writes.iter().filter(|w| w.user == OPERATOR_USER && category(w) != "lease").collect();
                let leases = writes.iter().filter(|w| w.user == OPERATOR_USER && category(w) == "lease").count();
                let mut what: BTreeMap<String, usize> = BTreeMap::new();
                for w in &ours {
                    *what.entry(format!("{} {} {}/{}", w.verb, w.kind(), w.namespace, w.name)).or_default() += 1;
                }
                let shown: Vec<String> = what.iter().take(10).map(|(k, v)| format!("{k} x{v}")).collect();
                (
                    ours.len() as u64,
                    Row {
                        figure: figure.into(),
                        value: ours.len().to_string(),
                        detail: format!(
                            "writes by {OPERATOR_USER} (audit log), not counting {leases} Lease renewals; operator's \
                             own count {own}; target 0{}",
                            if shown.is_empty() { String::new() } else { format!("; {}", shown.join(", ")) }
                        ),
                    },
                )
            }
            None => {
                let all = delta(&m0.apiserver, &m1.apiserver, |k| !k.starts_with("leases"));
                (
                    own,
                    Row {
                        figure: figure.into(),
                        value: own.to_string(),
                        detail: format!(
                            "the operator's own zenml_operator_writes_total (child objects only: no audit log); \
                             apiserver_request_total saw {all:.0} writes by all clients, leases excluded; target 0"
                        ),
                    },
                )
            }
        }
    }
}
