//! Figure 7: single projects created one after another on the idle operator with N existing, each timed until the
//! watch sees it Ready; nearest-rank percentiles.

use std::time::{Duration, Instant};

use futures::future;
use kube::api::PostParams;
use kube::{Api, ResourceExt};
use zenml_api::{Project, ProjectRoleBinding};

use super::provisioning::Provisioned;
use super::watch::Tracker;
use super::workload::Workload;
use super::{Bench, Found, Result, Row};
use crate::operator::Operator;

/// Figure 7's percentiles of the Project's latency, in milliseconds.
pub(super) struct Latency {
    pub p50: f64,
    pub p99: f64,
}

impl Bench {
    /// Figure 7: `latency_runs` single projects (each with its two bindings), each after the operator settled; adds
    /// the rows.
    pub(super) async fn latency(
        &self,
        op: &Operator,
        workload: &Workload,
        provisioned: &Provisioned,
        found: &mut Found,
    ) -> Result<Latency> {
        self.settle(op, Duration::from_secs(30)).await;
        self.say(&format!("latency: {} single projects", self.s.latency_runs));
        let mut project_ms = Vec::new();
        let mut all_ms = Vec::new();
        for i in 0..self.s.latency_runs {
            let (p_ms, a_ms) = self.one_project(workload, provisioned, &format!("{}-l{i:03}", self.run)).await?;
            project_ms.push(p_ms);
            all_ms.push(a_ms);
            // Idle again before the next one: its status catching up with the quota's usage is not the next run's.
            self.settle_for(op, Duration::from_secs(1), Duration::from_secs(10)).await;
        }
        let (p50, p99) = (percentile(&project_ms, 50.0), percentile(&project_ms, 99.0));
        let (runs, n) = (self.s.latency_runs, self.n());
        found.rows.push(Row {
            figure: "7 latency p50".into(),
            value: format!("{p50:.0} ms"),
            detail: format!(
                "one Project (+ its 2 bindings) created on the idle operator with {n} existing, until the Project is \
                 Ready; {runs} runs, nearest rank; with both bindings Ready too: p50 {:.0} ms",
                percentile(&all_ms, 50.0)
            ),
        });
        found.rows.push(Row {
            figure: "7 latency p99".into(),
            value: format!("{p99:.0} ms"),
            detail: format!(
                "same runs (with {runs} runs p99 is the slowest); with bindings: p99 {:.0} ms",
                percentile(&all_ms, 99.0)
            ),
        });
        Ok(Latency { p50, p99 })
    }

    /// Creates the Project `name` and its two bindings at once; milliseconds until the Project is Ready, and until
    /// all three are.
    async fn one_project(&self, workload: &Workload, provisioned: &Provisioned, name: &str) -> Result<(f64, f64)> {
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        let (project_ready, binding_ready) = (&provisioned.project_ready, &provisioned.binding_ready);
        let (p, [b1, b2]) = workload.project(name);
        let t = Instant::now();
        future::try_join3(
            projects.create(&PostParams::default(), &p),
            bindings.create(&PostParams::default(), &b1),
            bindings.create(&PostParams::default(), &b2),
        )
        .await?;
        let name = p.name_any();
        project_ready
            .wait(Duration::from_secs(60), &format!("Project {name} to be Ready"), |r| r.ready.contains_key(&name))
            .await?;
        let (n1, n2) = (b1.name_any(), b2.name_any());
        binding_ready
            .wait(Duration::from_secs(60), &format!("the bindings of {name} to be Ready"), |r| {
                r.ready.contains_key(&n1) && r.ready.contains_key(&n2)
            })
            .await?;
        let at = |tr: &Tracker, k: &str| tr.state.lock().expect("not poisoned").ready[k];
        let p_at = at(project_ready, &name);
        let all_at = p_at.max(at(binding_ready, &n1)).max(at(binding_ready, &n2));
        Ok((p_at.duration_since(t).as_secs_f64() * 1000.0, all_at.duration_since(t).as_secs_f64() * 1000.0))
    }
}

/// Nearest-rank percentile.
pub(super) fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 10.0);
        assert_eq!(percentile(&v, 99.0), 20.0);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }
}
