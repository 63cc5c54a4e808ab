//! Figures 2 and 3: the operator provisions N projects (each with two bindings) until every one is Ready, set
//! against the floors; then the writes it made for them, counted once it has settled.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use zenml_api::labels;
use zenml_api::{Project, ProjectRoleBinding, Workspace};

use super::audit::{Audit, Write, category};
use super::budget::BudgetFloor;
use super::floor::Floor;
use super::metrics::{self, ApiWork, delta};
use super::operator::OperatorCounts;
use super::watch::{Readiness, Tracker, is_ready};
use super::workload::Workload;
use super::{Bench, CLIENT_USER, Found, OPERATOR_USER, Result, Row, State};
use crate::operator::Operator;

/// Where the write counters stood at a moment: the API server's, the audit log's and the operator's own.
pub(super) struct Marks {
    pub apiserver: BTreeMap<String, f64>,
    pub audit: u64,
    pub operator: OperatorCounts,
}

impl Marks {
    pub(super) fn take(bench: &Bench, op: &Operator) -> Result<Marks> {
        let (apiserver, audit, operator) =
            (metrics::apiserver_writes()?, bench.audit_mark()?, OperatorCounts::read(op));
        Ok(Marks { apiserver, audit, operator })
    }
}

/// What provisioning left for the later figures.
pub(super) struct Provisioned {
    /// Operator time over floor time (figure 2); None when the floor was skipped.
    pub ratio: Option<f64>,
    /// Operator time over budget floor time, and the same in the API server's CPU seconds.
    pub budget_ratio: Option<f64>,
    pub budget_cpu_ratio: Option<f64>,
    /// From the first create until the last Ready.
    pub time: Duration,
    /// The API server's CPU seconds and writes in that window (local cluster only).
    pub work: Option<ApiWork>,
    /// The operator's CPU seconds in that window.
    pub operator_cpu_s: Option<f64>,
    /// The operator's resident memory with the Workspace and no project yet, the base of the memory per project.
    pub base_rss_kib: Option<u64>,
    /// The counters at the first create.
    start: Marks,
    /// The watches of the benchmark's Projects and bindings, kept for figure 7.
    pub project_ready: Tracker,
    pub binding_ready: Tracker,
    /// The Workspace's watch, open as long as the others (as a user's `kubectl wait` would be).
    _workspace_ready: Tracker,
}

/// How figure 2's window went, for its rows.
struct Window {
    provision: Duration,
    /// `provision` over the floor's time.
    ratio: Option<f64>,
    /// Until every create was sent.
    created: Duration,
    /// "; CPU seconds meanwhile: ...".
    cpu: String,
    work: Option<ApiWork>,
}

/// What a provisioning window's writes come to: the rows of figure 3 and what figure 2 and the summary take from it.
struct WritesRows {
    per_project: f64,
    /// Every write of the operator but Lease renewals, when the audit log tells.
    operator_total: Option<usize>,
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Bench {
    /// Figure 2: starts the operator, waits for the Workspace, creates every Project and binding at the floor's
    /// concurrency and waits (by watch) until all are Ready; adds the rows.
    pub(super) async fn provision(
        &self,
        state: &mut State,
        workload: &Workload,
        floor: &Floor,
        budget: Option<&BudgetFloor>,
        found: &mut Found,
    ) -> Result<Provisioned> {
        let op = self.start_operator().await?;
        let op = state.operator.insert(op);
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        let workspaces: Api<Workspace> = Api::all(self.client.clone());
        let project_ready = Tracker::start(projects, &self.selector(), |p: &Project| {
            p.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
        });
        let binding_ready = Tracker::start(bindings, &self.selector(), |b: &ProjectRoleBinding| {
            b.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
        });
        let workspace_ready = Tracker::start(workspaces.clone(), &self.selector(), |w: &Workspace| {
            w.status.as_ref().is_some_and(|s| is_ready(&s.conditions))
        });
        workspaces.create(&PostParams::default(), &workload.workspace).await?;
        state.workspace_created = true;
        workspace_ready
            .wait(Duration::from_secs(60), "the benchmark's Workspace to be Ready", |r| r.ready.len() == 1)
            .await?;
        self.settle(op, Duration::from_secs(30)).await;

        let base_rss_kib = metrics::memory(op.pid).map(|m| m.rss_kib);
        let start = Marks::take(self, op)?;
        let cpu_operator0 = self.cpu(Some(op.pid));
        let t0 = Instant::now();
        let created = self.create_projects(workload, floor.concurrency, t0).await?;
        self.wait_all_ready(op, &project_ready, &binding_ready).await?;
        let last_ready = [&project_ready, &binding_ready]
            .iter()
            .flat_map(|t| t.state.lock().expect("not poisoned").ready.values().copied().collect::<Vec<_>>())
            .max()
            .unwrap_or(t0);
        let provision = last_ready.duration_since(t0);
        let cpu_operator1 = self.cpu(Some(op.pid));
        let work = ApiWork::of(&cpu_operator0, &cpu_operator1, &start.apiserver, &metrics::apiserver_writes()?);
        let cpu = metrics::cpu_used(&cpu_operator0, &cpu_operator1, t0.elapsed());
        let ratio = floor.time.map(|f| provision.as_secs_f64() / f.as_secs_f64());
        self.say(&format!(
            "operator: all Ready after {:.1} s{}; settling",
            provision.as_secs_f64(),
            ratio.map(|r| format!(" (ratio {r:.2})")).unwrap_or_default()
        ));
        let operator_cpu_s = metrics::cpu_of(&cpu_operator0, &cpu_operator1, "operator");
        let window = Window { provision, ratio, created, cpu, work };
        found.rows.extend(self.operator_rows(&window, floor, budget));
        let budget_ratio = budget.map(|b| provision.as_secs_f64() / b.time.as_secs_f64());
        let budget_cpu_ratio = match (budget.and_then(|b| b.work), work) {
            (Some(b), Some(o)) => Some(o.cpu_s / b.cpu_s),
            _ => None,
        };
        Ok(Provisioned {
            ratio,
            budget_ratio,
            budget_cpu_ratio,
            work,
            operator_cpu_s,
            base_rss_kib,
            time: provision,
            start,
            project_ready,
            binding_ready,
            _workspace_ready: workspace_ready,
        })
    }

    /// Creates every Project and binding of `workload`, `concurrency` at once; returns the time since `t0`.
    async fn create_projects(&self, workload: &Workload, concurrency: usize, t0: Instant) -> Result<Duration> {
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        self.say(&format!("operator: creating {} Projects and {} bindings", self.n(), 2 * self.n()));
        let pp = PostParams::default();
        let mut creates: Vec<future::BoxFuture<'_, Result<(), kube::Error>>> = Vec::new();
        for (p, bs) in workload.projects.iter().zip(&workload.bindings) {
            creates.push(Box::pin(async { projects.create(&pp, p).await.map(|_| ()) }));
            for b in bs {
                creates.push(Box::pin(async { bindings.create(&pp, b).await.map(|_| ()) }));
            }
        }
        futures::stream::iter(creates).buffer_unordered(concurrency).try_collect::<Vec<()>>().await?;
        Ok(t0.elapsed())
    }

    /// Waits until every Project and binding is Ready, saying how far it got; the error names the operator's log.
    async fn wait_all_ready(&self, op: &Operator, project_ready: &Tracker, binding_ready: &Tracker) -> Result<()> {
        let timeout = Duration::from_secs(300) + Duration::from_millis(300 * self.n() as u64);
        let n = self.n();
        let progress = {
            let (p, b) = (project_ready.state.clone(), binding_ready.state.clone());
            move || {
                format!(
                    "{}/{n} projects, {}/{} bindings Ready",
                    p.lock().expect("not poisoned").ready.len(),
                    b.lock().expect("not poisoned").ready.len(),
                    2 * n
                )
            }
        };
        let all = |r: &Readiness, want: usize| r.ready.len() >= want;
        let waited = future::try_join(
            project_ready.wait_progress(timeout, "every Project to be Ready", |r| all(r, n), &progress, self),
            binding_ready.wait(timeout, "every ProjectRoleBinding to be Ready", |r| all(r, 2 * n)),
        )
        .await;
        if let Err(e) = waited {
            return Err(format!("{e}; operator log: {}\n{}", op.log.display(), op.log_tail()).into());
        }
        Ok(())
    }

    /// Figure 2's rows: the operator's time, its ratios to both floors, and the API server's CPU against the floor's.
    fn operator_rows(&self, w: &Window, floor: &Floor, budget: Option<&BudgetFloor>) -> Vec<Row> {
        let (n, concurrency) = (self.n(), floor.concurrency);
        let mut rows = vec![Row {
            figure: "2 operator".into(),
            value: format!("{:.1} s", w.provision.as_secs_f64()),
            detail: format!(
                "from the first create of {n} Projects + {} ProjectRoleBindings (concurrency {concurrency}, all \
                 created after {:.1} s) until the last Ready=True seen by a watch{}",
                2 * n,
                w.created.as_secs_f64(),
                w.cpu
            ),
        }];
        if let Some(ratio) = w.ratio {
            rows.push(Row {
                figure: "2 ratio operator/floor".into(),
                value: format!("{ratio:.2}"),
                detail: "target <= 1.3".into(),
            });
        }
        let Some(budget) = budget else {
            return self.floor_cpu_row(rows, w, floor);
        };
        let budget_ratio = w.provision.as_secs_f64() / budget.time.as_secs_f64();
        rows.push(Row {
            figure: "2 ratio operator/budget floor".into(),
            value: format!("{budget_ratio:.2}"),
            detail: format!(
                "against the budget floor, the least any operator must ask of the API server for these projects{}; the \
                 rest is server-side apply, Events, watches and the operator's own CPU on the shared cores",
                match (&budget.work, &w.work) {
                    (Some(b), Some(o)) => format!(
                        " (kube-apiserver CPU: {:.2} times the budget floor's, which was {})",
                        o.cpu_s / b.cpu_s,
                        b.describe()
                    ),
                    _ => String::new(),
                }
            ),
        });
        self.floor_cpu_row(rows, w, floor)
    }

    /// Figure 2's row of the API server's CPU against the floor's, when both were measured.
    fn floor_cpu_row(&self, mut rows: Vec<Row>, w: &Window, floor: &Floor) -> Vec<Row> {
        if let (Some(f), Some(o)) = (floor.work, w.work) {
            rows.push(Row {
                figure: "2 API server CPU operator/floor".into(),
                value: format!("{:.2}", o.cpu_s / f.cpu_s),
                detail: format!(
                    "kube-apiserver CPU seconds in the same two windows: {} for the operator, {} for the floor (write \
                     requests of all clients, from apiserver_request_total); when this is close to the ratio above, \
                     provisioning took as long as the API server needed for the requests, not longer",
                    o.describe(),
                    f.describe()
                ),
            });
        }
        rows
    }

    /// Figure 3: once the operator has settled (status catching up with quota usage included), the writes it made
    /// from the first create; adds the rows and returns writes per project.
    pub(super) async fn provisioning_writes(
        &self,
        op: &Operator,
        workload: &Workload,
        floor: &Floor,
        provisioned: &Provisioned,
        audit: Option<&Audit>,
        found: &mut Found,
    ) -> Result<f64> {
        let (n, per_project) = (self.n(), floor.per_project);
        let settled = self.settle(op, Duration::from_secs(120)).await;
        tokio::time::sleep(Duration::from_secs(1)).await; // the audit log is written when a response completes
        let end = Marks::take(self, op)?;
        let children = self.count_children(workload).await?;
        if children != per_project * n {
            found.notes.push(format!(
                "the operator made {children} child objects for {n} projects, the floor {}: the floor does not count \
                 what the operator makes",
                per_project * n
            ));
        }
        let start = &provisioned.start;
        let audited = audit.map(|a| a.read(start.audit, end.audit)).transpose()?;
        let provisioning = self.writes_rows(audited, start, &end, 3 * n, workload, per_project);
        if let Some(all) = provisioning.operator_total
            && let Some(floor_time) = floor.time
            && let Some(row) = found.rows.iter_mut().find(|r| r.figure == "2 operator")
        {
            row.detail.push_str(&format!(
                "; the operator's writes until settled: {all}, Events included ({:.0}/s over this time), against \
                 the floor's {} ({:.0}/s)",
                all as f64 / provisioned.time.as_secs_f64(),
                per_project * n,
                (per_project * n) as f64 / floor_time.as_secs_f64()
            ));
        }
        found.rows.extend(provisioning.rows);
        found.notes.extend(provisioning.notes);
        if !settled {
            found.notes.push("the operator was still reconciling 120 s after the last Ready: see its log".into());
        }
        Ok(provisioning.per_project)
    }

    /// Objects the operator made for the benchmark's projects (not the per-workspace ClusterRole and binding).
    async fn count_children(&self, workload: &Workload) -> Result<usize> {
        let lp = ListParams::default().labels(&format!("{}={}", labels::WORKSPACE, workload.workspace.name_any()));
        let c = &self.client;
        let (a, b, d, e, f, g, h) = tokio::try_join!(
            count::<Namespace>(c, &lp),
            count::<ResourceQuota>(c, &lp),
            count::<LimitRange>(c, &lp),
            count::<NetworkPolicy>(c, &lp),
            count::<ServiceAccount>(c, &lp),
            count::<Role>(c, &lp),
            count::<RoleBinding>(c, &lp),
        )?;
        Ok(a + b + d + e + f + g + h)
    }

    /// Figure 3's rows from the writes between `m0` and `m1`: by user from the audit log, else an upper bound.
    fn writes_rows(
        &self,
        audit: Option<Vec<Write>>,
        m0: &Marks,
        m1: &Marks,
        own_writes: usize,
        workload: &Workload,
        per_project: usize,
    ) -> WritesRows {
        let apiserver: f64 = m1.apiserver.iter().map(|(k, v)| v - m0.apiserver.get(k).unwrap_or(&0.0)).sum();
        let own_children = m1.operator.writes - m0.operator.writes;
        let counts = Counts { apiserver, own_writes, own_children, target: per_project + 3 + 6 };
        match audit {
            None => self.estimated_writes(&counts, &m0.apiserver, &m1.apiserver),
            Some(writes) => self.audited_writes(&writes, &counts, workload, per_project),
        }
    }

    /// Without an audit log: all clients' writes less the benchmark's own creates, Leases and Events.
    fn estimated_writes(&self, c: &Counts, m0: &BTreeMap<String, f64>, m1: &BTreeMap<String, f64>) -> WritesRows {
        let n = self.n() as f64;
        let (apiserver, own_writes, own_children, target) = (c.apiserver, c.own_writes, c.own_children, c.target);
        let leases = delta(m0, m1, |k| k.starts_with("leases"));
        let events = delta(m0, m1, |k| k.starts_with("events"));
        let estimate = apiserver - leases - events - own_writes as f64;
        WritesRows {
            per_project: estimate / n,
            operator_total: None,
            rows: vec![Row {
                figure: "3 writes per project".into(),
                value: format!("{:.1}", estimate / n),
                detail: format!(
                    "UPPER BOUND from apiserver_request_total: {apiserver:.0} writes by all clients while \
                     provisioning, minus the bench's own {own_writes} creates, {leases:.0} Lease and {events:.0} \
                     Event writes; it includes the controller-manager's writes; the operator itself counted \
                     {own_children} child writes (zenml_operator_writes_total); target <= {target}"
                ),
            }],
            notes: Vec::new(),
        }
    }

    /// From the audit log: the operator's writes by what they are for, Events apart, and a cross-check by all users.
    fn audited_writes(&self, writes: &[Write], c: &Counts, workload: &Workload, per_project: usize) -> WritesRows {
        let n = self.n() as f64;
        let t = Tally::of(writes);
        let (child, finalizer, status, other) = (t.by("child"), t.by("finalizer"), t.by("status"), t.by("other"));
        let (event, lease) = (t.by("event"), t.by("lease"));
        let counted = child + finalizer + status + other;
        let client = writes.iter().filter(|w| w.user == CLIENT_USER).count();
        let controller_manager = writes.iter().filter(|w| w.user.starts_with("system:")).count();
        let mut others: BTreeMap<&str, usize> = BTreeMap::new();
        for w in writes.iter().filter(|w| is_other(w)) {
            *others.entry(&w.user).or_default() += 1;
        }
        let notes = audit_notes(writes, workload, client, c.own_writes);
        let per_project_value = counted as f64 / n;
        let (target, own_children) = (c.target, c.own_children);
        let rows = vec![
            Row {
                figure: "3 writes per project".into(),
                value: format!("{per_project_value:.1}"),
                detail: format!(
                    "{counted} writes by {OPERATOR_USER} (audit log) from the first create until settled: child \
                     objects {child} ({:.1}/project), finalizers {finalizer}, status {status}, other {other}{}; \
                     target <= {target} ({per_project} children + 3 finalizers + 2 status x 3 CRs); by verb and \
                     resource: {}",
                    child as f64 / n,
                    if t.failed > 0 { format!(", of which {} failed (conflicts)", t.failed) } else { String::new() },
                    t.breakdown.join(", ")
                ),
            },
            Row {
                figure: "3 events per project".into(),
                value: format!("{:.1}", event as f64 / n),
                detail: format!(
                    "{event} Event writes by the operator, not in the figure above ({lease} Lease renewals neither)"
                ),
            },
            Row {
                figure: "3 writes cross-check".into(),
                value: format!("{:.0}", c.apiserver),
                detail: format!(
                    "apiserver_request_total write requests in the same window, all clients; the audit log has {} = \
                     operator {} + bench client {client} + system users (controller-manager, apiserver) \
                     {controller_manager} + others {}{}; the operator's own zenml_operator_writes_total: {own_children}",
                    writes.len(),
                    t.ours,
                    others.values().sum::<usize>(),
                    if others.is_empty() { String::new() } else { format!(" {others:?}") },
                ),
            },
        ];
        WritesRows { per_project: per_project_value, operator_total: Some(counted + event), rows, notes }
    }
}

/// A provisioning window's totals besides the audit log.
struct Counts {
    /// Write requests of all clients (`apiserver_request_total`).
    apiserver: f64,
    /// The benchmark's own creates.
    own_writes: usize,
    /// The operator's own `zenml_operator_writes_total`.
    own_children: u64,
    /// The write budget per project.
    target: usize,
}

/// The operator's audited writes, by category (see [`category`]).
struct Tally {
    by_category: BTreeMap<&'static str, usize>,
    /// All of them, Lease renewals included.
    ours: usize,
    /// Failed ones but Lease renewals (conflicts).
    failed: usize,
    /// "verb resource count", Leases and Events left out.
    breakdown: Vec<String>,
}

impl Tally {
    fn of(writes: &[Write]) -> Tally {
        let ours: Vec<&Write> = writes.iter().filter(|w| w.user == OPERATOR_USER).collect();
        let mut by_category = BTreeMap::new();
        for w in &ours {
            *by_category.entry(category(w)).or_default() += 1;
        }
        let failed = ours.iter().filter(|w| category(w) != "lease" && !(200..300).contains(&w.code)).count();
        let mut by_resource: BTreeMap<String, usize> = BTreeMap::new();
        for w in ours.iter().filter(|w| !matches!(category(w), "lease" | "event")) {
            *by_resource.entry(format!("{} {}", w.verb, w.kind())).or_default() += 1;
        }
        let breakdown = by_resource.iter().map(|(k, v)| format!("{k} {v}")).collect();
        Tally { by_category, ours: ours.len(), failed, breakdown }
    }

    fn by(&self, category: &str) -> usize {
        self.by_category.get(category).copied().unwrap_or(0)
    }
}

/// A write by neither the benchmark's operator, nor its client, nor a system user.
fn is_other(w: &Write) -> bool {
    ![OPERATOR_USER, CLIENT_USER].contains(&w.user.as_str()) && !w.user.starts_with("system:")
}

/// What looked wrong in the audit log: someone else writing the benchmark's own objects means another operator is
/// reconciling them; and the bench client's writes must be exactly its creates.
fn audit_notes(writes: &[Write], workload: &Workload, client: usize, own_writes: usize) -> Vec<String> {
    let mut notes = Vec::new();
    let foreign: BTreeMap<&str, usize> =
        writes.iter().filter(|w| is_other(w)).filter(|w| workload.owns(w)).fold(BTreeMap::new(), |mut m, w| {
            *m.entry(w.user.as_str()).or_default() += 1;
            m
        });
    if !foreign.is_empty() {
        notes.push(format!(
            "other clients wrote the benchmark's objects while it provisioned ({foreign:?}): another operator is \
             running against this cluster; the figures are not trustworthy"
        ));
    }
    if client != own_writes {
        notes.push(format!("the audit log shows {client} writes by the bench's client, {own_writes} expected"));
    }
    notes
}

async fn count<K>(client: &Client, lp: &ListParams) -> Result<usize>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    Ok(Api::<K>::all(client.clone()).list_metadata(lp).await?.items.len())
}
