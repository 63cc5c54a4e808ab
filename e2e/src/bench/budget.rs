//! Figure 1, second row, the budget floor: the floor plus the least any operator must ask of the API server for the
//! same projects under the write budget, done by the benchmark's own client before the operator runs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use tokio::sync::Semaphore;
use zenml_api::labels;
use zenml_api::resources::binding as binding_builder;
use zenml_api::status::{binding as binding_status, conditions, project as project_status};
use zenml_api::{Project, ProjectQuotaStatus, ProjectRoleBinding, ProjectRoleBindingStatus, ProjectStatus};

use super::cleanup::{delete_all, unfinalize};
use super::floor::{Floor, Template, permitted};
use super::metrics::{self, ApiWork};
use super::workload::Workload;
use super::{Bench, Error, Found, Result, Row};

/// Label on the budget floor's custom resources (value: the run's name), so they can be deleted apart from figure 2's.
const BUDGET_LABEL: &str = "zenml-operator-bench-budget";

/// Requests per project the budget floor adds to the floor's: 3 custom resources, 1 finalizer, 3 status patches.
const BUDGET_EXTRA: usize = 7;

/// What the budget floor measured, for figure 2's ratio.
pub(super) struct BudgetFloor {
    pub time: Duration,
    /// The API server's CPU and writes meanwhile (local cluster only).
    pub work: Option<ApiWork>,
}

/// One project of the budget floor: its Project with the status patch for it, and its two bindings with theirs.
struct BudgetProject {
    project: Project,
    status: serde_json::Value,
    bindings: [(ProjectRoleBinding, serde_json::Value); 2],
}

impl Bench {
    /// Figure 1, second row: creates the budget floor, measures, deletes it; adds the row.
    pub(super) async fn budget_floor(
        &self,
        workload: &Workload,
        templates: &[Template],
        floor: &Floor,
        found: &mut Found,
    ) -> Result<BudgetFloor> {
        let (per_project, concurrency) = (floor.per_project, floor.concurrency);
        let budget_names: Vec<String> = (0..self.n()).map(|i| format!("{}-b{i:05}", self.run)).collect();
        let budget = budget_projects(workload, &budget_names)?;
        let budget_requests = (per_project + BUDGET_EXTRA) * self.n();
        self.say(&format!("budget floor: {budget_requests} requests at concurrency {concurrency}"));
        let (m_budget0, cpu_budget0) = (metrics::apiserver_writes()?, self.cpu(None));
        let budget_time = self.create_budget_floor(&budget, templates, concurrency).await?;
        let cpu_budget1 = self.cpu(None);
        let work = ApiWork::of(&cpu_budget0, &cpu_budget1, &m_budget0, &metrics::apiserver_writes()?);
        let cpu_budget = metrics::cpu_used(&cpu_budget0, &cpu_budget1, budget_time);
        self.delete_budget_floor(&budget_names, concurrency).await?;
        self.say(&format!("budget floor: {:.1} s", budget_time.as_secs_f64()));
        found.rows.push(Row {
            figure: "1 budget floor".into(),
            value: format!("{:.1} s", budget_time.as_secs_f64()),
            detail: format!(
                "the floor's objects plus what the issue's write budget lets any operator add, by the same client at \
                 the same concurrency: per project the 3 custom resources' creates (as in figure 2), 1 finalizer patch \
                 and 1 status patch per custom resource with the status the operator writes (JSON merge patches, the \
                 cheapest kind): {budget_requests} requests, {:.0}/s{cpu_budget}",
                budget_requests as f64 / budget_time.as_secs_f64()
            ),
        });
        Ok(BudgetFloor { time: budget_time, work })
    }

    /// The budget floor (figure 1): for each of `work`, its three custom resources, a finalizer patch, the project's
    /// objects as in the floor, and a status patch per custom resource, in the order an operator would; `concurrency`
    /// requests at once.
    async fn create_budget_floor(
        &self,
        work: &[BudgetProject],
        templates: &[Template],
        concurrency: usize,
    ) -> Result<Duration> {
        let sem = Semaphore::new(concurrency);
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        let (pp, merge) = (PostParams::default(), PatchParams::default());
        let finalizer = Patch::Merge(serde_json::json!({"metadata": {"finalizers": [labels::FINALIZER]}}));
        let start = Instant::now();
        future::try_join_all(work.iter().map(|w| {
            let (sem, projects, bindings, pp, merge, finalizer) = (&sem, &projects, &bindings, &pp, &merge, &finalizer);
            async move {
                let name = w.project.name_any();
                let [dev, view] = &w.bindings;
                future::try_join3(
                    permitted(sem, projects.create(pp, &w.project)),
                    permitted(sem, bindings.create(pp, &dev.0)),
                    permitted(sem, bindings.create(pp, &view.0)),
                )
                .await?;
                permitted(sem, projects.patch(&name, merge, finalizer)).await?;
                self.create_objects(sem, templates, &name).await?;
                future::try_join3(
                    permitted(sem, projects.patch_status(&name, merge, &Patch::Merge(&w.status))),
                    permitted(sem, bindings.patch_status(&dev.0.name_any(), merge, &Patch::Merge(&dev.1))),
                    permitted(sem, bindings.patch_status(&view.0.name_any(), merge, &Patch::Merge(&view.1))),
                )
                .await?;
                Ok::<(), Error>(())
            }
        }))
        .await?;
        Ok(start.elapsed())
    }

    /// Removes the budget floor's custom resources (no operator runs: their finalizers go first) and namespaces.
    async fn delete_budget_floor(&self, names: &[String], concurrency: usize) -> Result<()> {
        let lp = ListParams::default().labels(&format!("{BUDGET_LABEL}={}", self.run));
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        unfinalize(&projects, &lp).await?;
        delete_all(&projects, &lp).await?;
        delete_all(&bindings, &lp).await?;
        self.delete_floor_namespaces(names, concurrency).await
    }
}

/// The budget floor's projects `names`: their custom resources, and the status patches the operator's own condition
/// builders give them once provisioned.
fn budget_projects(workload: &Workload, names: &[String]) -> Result<Vec<BudgetProject>> {
    names.iter().map(|name| budget_project(workload, name)).collect()
}

fn budget_project(workload: &Workload, name: &str) -> Result<BudgetProject> {
    let generation = Some(1);
    let (mut p, mut bs) = workload.project(name);
    p.labels_mut().insert(BUDGET_LABEL.into(), workload.run.clone());
    for b in &mut bs {
        b.labels_mut().insert(BUDGET_LABEL.into(), workload.run.clone());
    }
    let (c, rbs) = workload.desired(&p, &bs)?;
    let mut conds = project_status::provisioned_conditions(&p, &workload.workspace, &c, None);
    conds.push(conditions::ready(&conds, project_status::READY_MESSAGE));
    let status = ProjectStatus {
        observed_generation: generation,
        conditions: conditions::stamp(&[], conds, generation),
        namespace: Some(name.to_owned()),
        members: c.members.clone(),
        quota: c.quota.as_ref().map(|q| ProjectQuotaStatus {
            hard: q.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default(),
            used: BTreeMap::new(),
        }),
        templates: None,
    };
    let bound = |b: &ProjectRoleBinding, rb: &RoleBinding| {
        let s = ProjectRoleBindingStatus {
            observed_generation: generation,
            conditions: conditions::stamp(&[], vec![binding_status::bound(rb, &b.spec)], generation),
            role_binding: Some(rb.name_any()),
            // What the operator records on a first bind (the same size: a uid and a workspace).
            bound_to: Some(binding_builder::bound_to(b, &p, &BTreeMap::new())),
        };
        serde_json::json!({ "status": s })
    };
    let statuses = (bound(&bs[0], &rbs[0]), bound(&bs[1], &rbs[1]));
    let [dev, view] = bs;
    Ok(BudgetProject {
        project: p,
        status: serde_json::json!({ "status": status }),
        bindings: [(dev, statuses.0), (view, statuses.1)],
    })
}
