//! Figures 6 and 4b: the operator is stopped and a new one started; how long until it leads, has synced its caches
//! and has reconciled every Project of the cluster, and the writes of its first seconds (there must be none).

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use zenml_api::Project;

use super::audit::Audit;
use super::metrics::{self, metric};
use super::operator::OperatorCounts;
use super::provisioning::Marks;
use super::{Bench, Found, Result, Row, State};
use crate::operator::Operator;

/// What the restart left for the summary.
pub(super) struct Restart {
    pub writes: u64,
    /// From starting the process until every Project was reconciled.
    pub recovery: Duration,
}

/// When the new operator got where, from starting its process.
struct Recovery {
    leading: Duration,
    synced: Duration,
    confirmed: Duration,
}

impl Bench {
    /// Figures 6 and 4b: restarts the operator, waits until it has reconciled every Project, counts the writes of
    /// the window (`restart_seconds`, or longer if recovery takes longer); adds the rows.
    pub(super) async fn restart(&self, state: &mut State, audit: Option<&Audit>, found: &mut Found) -> Result<Restart> {
        let projects: Api<Project> = Api::all(self.client.clone());
        let total_projects = projects.list_metadata(&ListParams::default()).await?.items.len();
        let old = state.operator.take().expect("running");
        tokio::task::spawn_blocking(move || old.stop()).await?;
        let (apiserver, audit_mark) = (metrics::apiserver_writes()?, self.audit_mark()?);
        self.say("restart: operator stopped; starting a new one");
        let t_start = Instant::now();
        let op = state.operator.insert(self.start_operator().await?);
        let start = Marks { apiserver, audit: audit_mark, operator: OperatorCounts::default() };
        let leading = t_start.elapsed();
        let r = self.recover(op, t_start, leading, total_projects).await?;
        self.say(&format!(
            "restart: all {total_projects} projects reconciled after {:.1} s",
            r.confirmed.as_secs_f64()
        ));
        let window = Duration::from_secs(self.s.restart_seconds).max(r.confirmed + Duration::from_secs(1));
        tokio::time::sleep(window.saturating_sub(t_start.elapsed())).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let end = Marks::take(self, op)?;
        let (restart_writes, row) = self.quiet_row(
            &format!("4 restart writes (first {} s)", window.as_secs()),
            audit.map(|a| a.read(start.audit, end.audit)).transpose()?,
            &start,
            &end,
        );
        found.rows.push(row);
        found.rows.push(Row {
            figure: "6 restart recovery".into(),
            value: format!("{:.1} s", r.confirmed.as_secs_f64()),
            detail: format!(
                "process start -> leader {:.1} s -> caches synced (/readyz) {:.1} s -> every one of the cluster's \
                 {total_projects} Projects reconciled (reconcile_duration_seconds_count{{kind=\"Project\"}}) {:.1} s, \
                 with {restart_writes} writes",
                r.leading.as_secs_f64(),
                r.synced.as_secs_f64(),
                r.confirmed.as_secs_f64()
            ),
        });
        Ok(Restart { writes: restart_writes, recovery: r.confirmed })
    }

    /// Polls the new operator (started at `t_start`) until `/readyz` answers 200 and it has finished a reconcile for
    /// as many Projects as the cluster has.
    async fn recover(
        &self,
        op: &Operator,
        t_start: Instant,
        leading: Duration,
        total_projects: usize,
    ) -> Result<Recovery> {
        let mut synced = None;
        let mut confirmed = None;
        let limit = Duration::from_secs(120) + Duration::from_millis(100 * self.n() as u64);
        while confirmed.is_none() {
            if synced.is_none() && op.get("/readyz").is_some_and(|r| r.contains(" 200 ")) {
                synced = Some(t_start.elapsed());
            }
            if synced.is_some()
                && metric(
                    &op.get("/metrics").unwrap_or_default(),
                    "zenml_operator_reconcile_duration_seconds_count",
                    Some(r#"kind="Project""#),
                ) >= total_projects as f64
            {
                confirmed = Some(t_start.elapsed());
            }
            if t_start.elapsed() > limit {
                return Err(format!(
                    "after a restart the operator did not reconcile all {total_projects} projects in {limit:?}; log: {}",
                    op.log.display()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (synced, confirmed) = (synced.expect("set before confirmed"), confirmed.expect("loop ended"));
        Ok(Recovery { leading, synced, confirmed })
    }
}
