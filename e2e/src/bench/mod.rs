//! The benchmark behind `make bench` (method and results: docs/benchmarks.md).
//!
//! It measures, against the cluster of [`crate::kubeconfig`], how close the operator comes to the physical limit of
//! this machine and API server, how many API writes it makes per project, and whether it stays quiet when nothing
//! changes (idle, and after a restart). [`run`] does everything and returns a [`Report`] whose last line is a
//! [`Summary`]; the `bench` binary prints it, and `tests/bench_small.rs` runs it small so it cannot rot.
//!
//! Attribution of writes: the operator runs under its own identity (a kubeconfig impersonating [`OPERATOR_USER`]),
//! the bench's own requests under [`CLIENT_USER`], and every write is counted from the API server's audit log by
//! user. Without an audit log (a cluster `e2e/cluster` did not start) the figures fall back to
//! `apiserver_request_total`, which has no user label, and say so.
//!
//! Layout: this file holds the settings and the driver ([`run`], `Bench::phases`), which runs one module per phase in
//! the order of the figures — `floor` (1), `budget` (1, second row), `provisioning` (2 and 3), `idle` (4a
//! and 5), `restart` (6 and 4b), `latency` (7), `churn` (8) — and last `cleanup`. Every phase but provisioning can be
//! skipped ([`Phase`], `--skip`). They share `workload` (the run's Workspace, Projects and bindings, and the objects
//! one project stands for), `operator` (the benchmark's own operator), `watch` (readiness and deletion by watch),
//! `audit` and `metrics` (where the figures come from), `report` (the table and the summary line) and `record` (the
//! file of recorded runs and the plots drawn from it).

mod audit;
mod budget;
mod churn;
mod cleanup;
mod floor;
mod idle;
mod latency;
mod metrics;
mod operator;
mod provisioning;
mod record;
mod report;
mod restart;
mod watch;
mod workload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use self::record::{RunRecord, SERIES, read as read_runs, render, render_file};
pub use self::report::{Report, Row, Summary};

use self::audit::Audit;
use self::floor::Floor;
use self::workload::Workload;
use crate::operator::Operator;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The user the benchmark's operator acts as (impersonated, in group `system:masters`), so its writes can be told
/// from everyone else's in the audit log.
pub const OPERATOR_USER: &str = "zenml-operator-bench";
/// The user the benchmark's own client acts as: its creates of CRs and of the floor's objects.
pub const CLIENT_USER: &str = "zenml-bench-client";
/// Label on everything the benchmark creates itself (value: the run's name), so leftovers can be found.
pub const BENCH_LABEL: &str = "zenml-operator-bench";

/// A phase that can be skipped. Provisioning cannot: every phase after it works on what it provisioned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Phase {
    /// Figure 1: the plain-create floor, with its concurrency sweep (skipped: the first `--concurrency` is used).
    Floor,
    /// Figure 1, second row: the budget floor.
    #[value(alias = "budget-floor")]
    Budget,
    /// Figures 4a and 5: the idle window and memory after it.
    Idle,
    /// Figures 6 and 4b: restart recovery and the writes after it.
    Restart,
    /// Figure 7: single projects on the idle operator.
    Latency,
    /// Figure 8: a share of the projects changed every second (also off with `--churn-seconds 0`).
    Churn,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Floor => "floor",
            Phase::Budget => "budget",
            Phase::Idle => "idle",
            Phase::Restart => "restart",
            Phase::Latency => "latency",
            Phase::Churn => "churn",
        }
    }
}

/// What to run; the `bench` binary's flags map onto this.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Projects (each with two ProjectRoleBindings).
    pub projects: usize,
    /// Length of the idle window (figure 4).
    pub idle_seconds: u64,
    /// Length of the window after a restart in which writes are counted (figure 4).
    pub restart_seconds: u64,
    /// Single projects created one after another on the idle operator (figure 7).
    pub latency_runs: usize,
    /// Client concurrencies tried on a sample; the fastest is used for the floor and for creating the CRs. One value
    /// skips the sweep.
    pub concurrencies: Vec<usize>,
    /// Projects per sweep trial; default max(10, N/10), at most N.
    pub sample: Option<usize>,
    /// Seconds without a reconcile that count as settled.
    pub settle_seconds: u64,
    /// The API server's audit log; default `<kubeconfig dir>/logs/audit.log` if it exists (what `e2e/cluster` writes).
    pub audit_log: Option<PathBuf>,
    /// The operator binary; default [`crate::operator::binary`].
    pub operator_bin: Option<PathBuf>,
    /// `RUST_LOG` for the operator (e.g. `zenml_operator=debug` logs every write with the field that differed).
    pub operator_log: Option<String>,
    /// Extra arguments after `zenml-operator run` (e.g. `--concurrency 32`).
    pub operator_args: Vec<String>,
    /// How long to wait for other operators to go away and for ours to lead.
    pub leader_timeout: Duration,
    /// Phases not to run.
    pub skip: BTreeSet<Phase>,
    /// Length of the churn (figure 8); 0 skips it.
    pub churn_seconds: u64,
    /// Percent of the projects changed per second while churning (at least one change per second).
    pub churn_percent: f64,
    /// The file of recorded runs (JSON lines) to append this run to; the plots are drawn next to it from all its
    /// runs. None records nothing.
    pub record: Option<PathBuf>,
    /// Said in the recorded run, e.g. what else loaded the machine.
    pub record_note: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            projects: 1000,
            idle_seconds: 300,
            restart_seconds: 60,
            latency_runs: 20,
            concurrencies: vec![8, 16, 32, 64],
            sample: None,
            settle_seconds: 5,
            audit_log: None,
            operator_bin: None,
            operator_log: None,
            operator_args: Vec::new(),
            leader_timeout: Duration::from_secs(30),
            skip: BTreeSet::new(),
            churn_seconds: 300,
            churn_percent: 1.0,
            record: None,
            record_note: None,
        }
    }
}

impl Settings {
    fn runs(&self, phase: Phase) -> bool {
        !self.skip.contains(&phase) && (phase != Phase::Churn || self.churn_seconds > 0)
    }
}

/// Runs the benchmark: floor, budget floor, provisioning, idle, memory, restart, latency, churn (those not skipped);
/// then deletes everything it made, and records the run if asked to.
pub async fn run(settings: &Settings) -> Result<Report> {
    if settings.projects == 0 || settings.concurrencies.is_empty() || settings.concurrencies.contains(&0) {
        return Err("need at least one project and positive concurrencies".into());
    }
    if !(settings.churn_percent > 0.0 && settings.churn_percent <= 100.0) {
        return Err("the churn's percent of projects per second must be in (0, 100]".into());
    }
    let kubeconfig = crate::kubeconfig().ok_or(
        "no cluster: run `e2e/cluster up` (make bench does), or set KUBECONFIG to a cluster where you are admin",
    )?;
    let b = Bench::new(settings.clone(), kubeconfig).await?;
    b.say(&format!(
        "run {} against {} ({} projects); operator {}",
        b.run,
        b.server,
        settings.projects,
        b.operator_bin.display()
    ));
    let mut state = State::default();
    let outcome = b.phases(&mut state).await;
    let cleaned = b.cleanup(&mut state).await;
    if let Some(op) = state.operator.take() {
        let _ = tokio::task::spawn_blocking(move || op.stop()).await;
    }
    let _ = std::fs::remove_dir_all(&b.dir);
    let outcome = match outcome {
        Ok((mut report, record)) => {
            if let Some(path) = &settings.record {
                match record::append(path, &record).and_then(|()| render_file(path)) {
                    Ok(plots) => report.notes.push(format!(
                        "recorded in {}; plots of all its runs: {}",
                        path.display(),
                        plots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                    )),
                    Err(e) => report.notes.push(format!("recording the run in {} failed: {e}", path.display())),
                }
            }
            Ok(report)
        }
        Err(e) => Err(e),
    };
    match (outcome, cleaned) {
        (Ok(report), Ok(())) => Ok(report),
        // The figures stand (a long run is not thrown away); the caller reports the leftovers and fails.
        (Ok(mut report), Err(e)) => {
            report.cleanup_failed = Some(e.to_string());
            report.notes.push(format!("cleaning up failed: {e}; leftovers carry the label {}", b.selector()));
            Ok(report)
        }
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(c)) => Err(format!("{e}\n(and cleaning up failed too: {c})").into()),
    }
}

/// What the cleanup must know of a run, also when a phase failed half-way.
#[derive(Default)]
struct State {
    operator: Option<Operator>,
    workspace_created: bool,
}

impl State {
    /// The benchmark's operator, while it runs.
    fn operator(&self) -> &Operator {
        self.operator.as_ref().expect("running")
    }
}

/// The rows and notes the phases have found so far, in the order they found them.
#[derive(Default)]
struct Found {
    rows: Vec<Row>,
    notes: Vec<String>,
}

struct Bench {
    s: Settings,
    run: String,
    workspace: String,
    client: Client,
    server: String,
    started: Instant,
    dir: PathBuf,
    operator_kubeconfig: PathBuf,
    operator_bin: PathBuf,
    audit: Option<Audit>,
    /// Where the audit log was looked for, for the note when there is none.
    audit_wanted: PathBuf,
    /// The local control plane's processes (from `e2e/cluster`'s pid files), for CPU time per phase.
    control_plane: Vec<(String, u32)>,
}

impl Bench {
    async fn new(s: Settings, kubeconfig: PathBuf) -> Result<Bench> {
        let run = crate::unique("bench");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench").join(&run);
        std::fs::create_dir_all(&dir)?;
        let client_config = impersonating(&kubeconfig, CLIENT_USER)?;
        let operator_config = impersonating(&kubeconfig, OPERATOR_USER)?;
        let operator_kubeconfig = dir.join("operator.kubeconfig");
        write_private(&operator_kubeconfig, &serde_json::to_string_pretty(&operator_config)?)?;
        let config = Config::from_custom_kubeconfig(client_config, &KubeConfigOptions::default()).await?;
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config)?;
        let audit_wanted =
            s.audit_log.clone().unwrap_or_else(|| kubeconfig.parent().unwrap_or(Path::new(".")).join("logs/audit.log"));
        let audit = audit_wanted.exists().then(|| Audit { path: audit_wanted.clone() });
        let operator_bin = s.operator_bin.clone().unwrap_or_else(crate::operator::binary);
        if !operator_bin.exists() {
            return Err(format!(
                "no operator binary at {}: cargo build --profile production -p zenml-operator",
                operator_bin.display()
            )
            .into());
        }
        Ok(Bench {
            workspace: run.clone(),
            run,
            client,
            server,
            started: Instant::now(),
            dir,
            operator_kubeconfig,
            operator_bin,
            audit,
            audit_wanted,
            control_plane: metrics::control_plane(&kubeconfig),
            s,
        })
    }

    fn say(&self, msg: &str) {
        eprintln!("bench [{:>7.1}s] {msg}", self.started.elapsed().as_secs_f64());
    }

    fn n(&self) -> usize {
        self.s.projects
    }

    fn selector(&self) -> String {
        format!("{BENCH_LABEL}={}", self.run)
    }

    /// Every phase in order, those not skipped; each adds its rows and notes to `found` and hands on what later
    /// ones need. Returns the report and what is recorded of the run.
    async fn phases(&self, state: &mut State) -> Result<(Report, RunRecord)> {
        let mut found = Found::default();
        let header = self.header().await;
        {
            tokio::task::spawn_blocking(crate::install_crds).await?;
        }
        found.notes.push(self.attribution_note());
        let skipped: Vec<&str> = self.s.skip.iter().map(|p| p.name()).collect();
        if !skipped.is_empty() {
            found.notes.push(format!("skipped: {}", skipped.join(", ")));
        }
        if !self.s.runs(Phase::Floor) && self.audit.is_some() {
            found.notes.push(
                "without the floor, the audit log is trusted unchecked (the floor's creates are what show it is this \
                 cluster's and complete)"
                    .into(),
            );
        }
        let mut record = RunRecord::start(&self.s, &header);
        let built = std::fs::metadata(&self.operator_bin)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| k8s_openapi::jiff::Timestamp::try_from(t).ok())
            .and_then(|t| t.round(k8s_openapi::jiff::Unit::Second).ok());
        record.operator = match built {
            Some(t) => format!("{} (built {t})", self.operator_bin.display()),
            None => self.operator_bin.display().to_string(),
        };
        self.refuse_other_operators().await?;
        let workload = Workload::new(&self.run, &self.workspace, self.n());
        let templates = workload.templates()?;
        let floor = if self.s.runs(Phase::Floor) {
            self.floor(&templates, &mut found).await?
        } else {
            Floor::skipped(self.s.concurrencies[0], templates.len(), self.audit.is_some())
        };
        let budget = match self.s.runs(Phase::Budget) {
            true => Some(self.budget_floor(&workload, &templates, &floor, &mut found).await?),
            false => None,
        };
        let audit = if floor.audit_ok { self.audit.as_ref() } else { None };
        let provisioned = self.provision(state, &workload, &floor, budget.as_ref(), &mut found).await?;
        let writes_per_project =
            self.provisioning_writes(state.operator(), &workload, &floor, &provisioned, audit, &mut found).await?;
        // Without the idle window, memory is read once provisioning has settled.
        let settled_rss_kib = metrics::memory(state.operator().pid).map(|m| m.rss_kib);
        let idle = match self.s.runs(Phase::Idle) {
            true => Some(self.idle(state.operator(), audit, &mut found).await?),
            false => None,
        };
        let restart = match self.s.runs(Phase::Restart) {
            true => Some(self.restart(state, audit, &mut found).await?),
            false => None,
        };
        let latency = match self.s.runs(Phase::Latency) {
            true => Some(self.latency(state.operator(), &workload, &provisioned, &mut found).await?),
            false => None,
        };
        let churn = match self.s.runs(Phase::Churn) {
            true => Some(self.churn(state.operator(), &workload, floor.concurrency, audit, &mut found).await?),
            false => None,
        };
        if idle.is_some() && self.s.idle_seconds < 600 {
            found.notes.push(format!(
                "the idle window ({} s) is shorter than the operator's safety-net resync (600 s), so it shows that \
                 nothing wakes the operator; the restart figure covers a full re-reconcile of everything",
                self.s.idle_seconds
            ));
        }
        let steady_kib = idle.as_ref().map(|i| i.rss_kib).or(settled_rss_kib);
        let kib_per_project = match (steady_kib, provisioned.base_rss_kib) {
            (Some(steady), Some(base)) => Some(steady.saturating_sub(base) as f64 / self.n() as f64),
            _ => None,
        };
        if let (Some(k), Some(base)) = (kib_per_project, provisioned.base_rss_kib) {
            found.rows.push(Row {
                figure: "5 memory per project".into(),
                value: format!("{k:.1} KiB"),
                detail: format!(
                    "VmRSS {} over the {:.1} MiB the operator held with the Workspace and no project, divided by N; \
                     target <= 20 KiB",
                    if idle.is_some() { "after the idle window" } else { "once provisioning settled (no idle window)" },
                    base as f64 / 1024.0
                ),
            });
        }

        let Found { mut rows, notes } = found;
        // By figure, in the order of the issue (a stable sort keeps each figure's rows in order).
        rows.sort_by_key(|r| r.figure.split(' ').next().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0));
        let summary = Summary {
            n: self.n(),
            ratio: provisioned.ratio,
            writes_per_project,
            idle_writes: idle.as_ref().map(|i| i.writes),
            restart_writes: restart.as_ref().map(|r| r.writes),
            rss_mib: idle.as_ref().map(|i| i.rss_mib),
            recovery_s: restart.as_ref().map(|r| r.recovery.as_secs_f64()),
            p50_ms: latency.as_ref().map(|l| l.p50.round() as u64),
            p99_ms: latency.as_ref().map(|l| l.p99.round() as u64),
            budget_ratio: provisioned.budget_ratio,
            budget_cpu_ratio: provisioned.budget_cpu_ratio,
            kib_per_project,
            churn_p99_ms: churn.as_ref().map(|c| c.p99_ms.round() as u64),
        };
        // Milliseconds are all these figures can tell; more digits are only the float's noise in the file.
        let ms = |s: f64| (s * 1000.0).round() / 1000.0;
        record.floor_s = floor.time.map(|t| ms(t.as_secs_f64()));
        record.floor_api_cpu_s = floor.work.map(|w| ms(w.cpu_s));
        record.budget_floor_s = budget.as_ref().map(|b| ms(b.time.as_secs_f64()));
        record.budget_floor_api_cpu_s = budget.as_ref().and_then(|b| b.work).map(|w| ms(w.cpu_s));
        record.operator_s = Some(ms(provisioned.time.as_secs_f64()));
        record.operator_api_cpu_s = provisioned.work.map(|w| ms(w.cpu_s));
        record.operator_cpu_s = provisioned.operator_cpu_s.map(ms);
        record.rss_peak_mib = idle.as_ref().map(|i| i.peak_mib);
        record.rss_steady_mib = steady_kib.map(|k| k.div_ceil(1024));
        record.rss_base_mib = provisioned.base_rss_kib.map(|k| ms(k as f64 / 1024.0));
        record.churn = churn.as_ref().map(|c| c.record.clone());
        record.summary = summary.to_string();
        Ok((Report { header, rows, notes, summary, cleanup_failed: None }, record))
    }

    /// The note on how writes are attributed: by user from the audit log, or estimated without one.
    fn attribution_note(&self) -> String {
        match &self.audit {
            Some(a) => format!(
                "writes are counted from the API server's audit log ({}) by user: the operator runs as {OPERATOR_USER} \
                 (impersonated, group system:masters), the bench's client as {CLIENT_USER}",
                a.path.display()
            ),
            None => format!(
                "no audit log at {}: writes are estimated from apiserver_request_total, which has no user label, so \
                 they are upper bounds (they include the controller-manager and any other client); a cluster started \
                 by `e2e/cluster up` since audit logging was added has one (`make cluster-down` first)",
                self.audit_wanted.display()
            ),
        }
    }

    async fn header(&self) -> Vec<String> {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        let mem_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<f64>().ok()
            })
            .map(|kib| kib / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        let version = self.client.apiserver_version().await.map(|v| v.git_version).unwrap_or_else(|_| "unknown".into());
        vec![
            format!("zenml-operator benchmark, N={} projects (each with 2 ProjectRoleBindings)", self.n()),
            format!(
                "machine: {cores} cores, {mem_gib:.0} GiB; Kubernetes {version} at {}; operator {}",
                self.server,
                self.operator_bin.display()
            ),
        ]
    }

    /// CPU seconds so far of the control plane, this process and the operator (`pid`), by name.
    fn cpu(&self, operator: Option<u32>) -> Vec<(String, f64)> {
        let mut procs = self.control_plane.clone();
        procs.push(("bench".into(), std::process::id()));
        procs.extend(operator.map(|p| ("operator".to_owned(), p)));
        procs.into_iter().filter_map(|(name, pid)| Some((name, metrics::cpu_seconds(pid)?))).collect()
    }
}

/// A kubeconfig like `source`, whose users act as `user` in group `system:masters`.
fn impersonating(source: &Path, user: &str) -> Result<Kubeconfig> {
    let mut kubeconfig = Kubeconfig::read_from(source)?;
    for named in &mut kubeconfig.auth_infos {
        let auth = named.auth_info.get_or_insert_with(Default::default);
        auth.impersonate = Some(user.into());
        auth.impersonate_groups = Some(vec!["system:masters".into()]);
    }
    Ok(kubeconfig)
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum as _;

    use super::*;

    #[test]
    fn each_phase_is_skipped_by_the_name_it_is_reported_and_recorded_by() {
        for p in Phase::value_variants() {
            assert_eq!(Phase::from_str(p.name(), false), Ok(*p));
        }
        assert_eq!(Phase::from_str("budget-floor", false), Ok(Phase::Budget));
        let s = Settings { churn_seconds: 0, ..Settings::default() };
        assert!(!s.runs(Phase::Churn) && s.runs(Phase::Floor));
        let s = Settings { skip: [Phase::Floor].into(), ..Settings::default() };
        assert!(!s.runs(Phase::Floor) && s.runs(Phase::Churn));
    }
}
