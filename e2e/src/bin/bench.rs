//! `make bench N=<projects>`: the benchmark of docs/benchmarks.md against `KUBECONFIG`, or else the local cluster.
//! Progress goes to stderr; the table, and last the one-line summary, to stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use e2e::bench::{self, Settings};

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
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
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
