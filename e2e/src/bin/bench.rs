//! `make bench N=<projects>`: the benchmark of docs/benchmarks.md against `KUBECONFIG`, or else the local cluster.
//! Progress goes to stderr; the table, and last the one-line summary, to stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2e::bench::{self, Phase, Settings};

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Benchmark zenml-operator against the physical limit of this machine and API server (docs/benchmarks.md)"
)]
struct Args {
    /// Projects to provision (each with two ProjectRoleBindings).
    #[arg(long, default_value_t = 1000)]
    projects: usize,
    /// Seconds of idling during which the operator must write nothing.
    #[arg(long, default_value_t = 300)]
    idle_seconds: u64,
    /// Seconds after a restart during which the operator must write nothing.
    #[arg(long, default_value_t = 60)]
    restart_seconds: u64,
    /// Single projects created one after another on the idle operator, for latency percentiles.
    #[arg(long, default_value_t = 20)]
    latency_runs: usize,
    /// Client concurrencies to try on a sample (comma-separated); the fastest is used. One value skips the sweep.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 16, 32, 64])]
    concurrency: Vec<usize>,
    /// Projects per concurrency trial (default: max(10, N/10)).
    #[arg(long)]
    sample: Option<usize>,
    /// Seconds without a reconcile after which the operator counts as settled.
    #[arg(long, default_value_t = 5)]
    settle_seconds: u64,
    /// The API server's audit log (default: logs/audit.log next to the kubeconfig, as `e2e/cluster` writes it).
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// The operator binary (default: the workspace's build as shipped, `cargo build --profile production`).
    #[arg(long, env = "ZENML_OPERATOR_BIN")]
    operator_bin: Option<PathBuf>,
    /// RUST_LOG for the operator, e.g. `zenml_operator=debug` to log every write and the field that differed.
    #[arg(long)]
    operator_log: Option<String>,
    /// An extra argument for `zenml-operator run` (repeat it: --operator-arg=--concurrency --operator-arg=32).
    #[arg(long, allow_hyphen_values = true)]
    operator_arg: Vec<String>,
    /// Seconds to wait for another operator to go away and for ours to lead.
    #[arg(long, default_value_t = 30)]
    leader_timeout_seconds: u64,
    /// Phases not to run (comma-separated). Provisioning always runs; e.g. `--skip floor,budget` for a
    /// 10,000-project run that fits in about an hour.
    #[arg(long, value_enum, value_delimiter = ',')]
    skip: Vec<Phase>,
    /// Seconds of churn after the other phases (a share of the projects changed every second); 0 skips it.
    #[arg(long, default_value_t = 300)]
    churn_seconds: u64,
    /// Percent of the projects changed per second while churning (at least one change per second).
    #[arg(long, default_value_t = 1.0)]
    churn_percent: f64,
    /// The file of recorded runs to append this run to (JSON lines); the plots are drawn next to it from all of
    /// its runs.
    #[arg(long, default_value = "docs/bench/runs.jsonl")]
    record: PathBuf,
    /// Record nothing and draw no plots.
    #[arg(long)]
    no_record: bool,
    /// A note kept with the recorded run, e.g. "shared machine, other builds running".
    #[arg(long)]
    record_note: Option<String>,
    /// Run nothing: draw the plots from the recorded runs (`--record`) and exit.
    #[arg(long)]
    plot_only: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // Relative to the workspace, as `make bench` runs it, wherever the binary is started from.
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().unwrap_or(&manifest);
    let record = if args.record.is_relative() { workspace.join(&args.record) } else { args.record.clone() };
    if args.plot_only {
        return match bench::render_file(&record) {
            Ok(plots) => {
                for p in plots {
                    println!("{}", p.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench: error: plotting {}: {e}", record.display());
                ExitCode::FAILURE
            }
        };
    }
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/production/zenml-operator");
    let settings = Settings {
        projects: args.projects,
        idle_seconds: args.idle_seconds,
        restart_seconds: args.restart_seconds,
        latency_runs: args.latency_runs,
        concurrencies: args.concurrency,
        sample: args.sample,
        settle_seconds: args.settle_seconds,
        audit_log: args.audit_log,
        operator_bin: Some(args.operator_bin.unwrap_or(shipped)),
        operator_log: args.operator_log,
        operator_args: args.operator_arg,
        leader_timeout: Duration::from_secs(args.leader_timeout_seconds),
        skip: args.skip.into_iter().collect(),
        churn_seconds: args.churn_seconds,
        churn_percent: args.churn_percent,
        record: (!args.no_record).then_some(record),
        record_note: args.record_note,
    };
    match bench::run(&settings).await {
        Ok(report) => {
            println!("{report}");
            match &report.cleanup_failed {
                Some(e) => {
                    eprintln!("bench: error: the benchmark ran, but cleaning up failed: {e}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}
