//! The zenml-operator binary: only argument parsing and wiring; the work lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use std::time::Duration;

use zenml_api::resources::{NetworkFacts, RoleMap};
use zenml_operator::controllers::context::Settings;
use zenml_operator::runtime::RunConfig;
use zenml_operator::runtime::leader::LeaseConfig;

#[derive(Parser)]
#[command(
    name = "zenml-operator",
    version,
    about = "ZenML Pro workspaces, projects and role bindings as Kubernetes isolation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator against the cluster of KUBECONFIG, or the one it runs in.
    Run(Box<RunArgs>),
    /// Print the CustomResourceDefinitions as YAML (or write one file per kind with --out-dir).
    Crds {
        /// Write `<kind>.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct RunArgs {
    /// Most reconciles of one kind running at once.
    #[arg(long, env = "ZENML_OPERATOR_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "ZENML_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "ZENML_OPERATOR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Namespace the operator runs in; no Project may take its name.
    #[arg(long, env = "POD_NAMESPACE")]
    namespace: Option<String>,
    /// This replica's name, shown in Events.
    #[arg(long, env = "POD_NAME")]
    instance: Option<String>,
    /// Elect a leader among replicas on a Lease, so only one reconciles (`--leader-elect=false` for a single replica
    /// you are sure of: two operators without election fight over every object).
    #[arg(long, env = "ZENML_OPERATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease; defaults to the pod's namespace in a cluster, else `default`.
    #[arg(long, env = "ZENML_OPERATOR_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "zenml-operator")]
    lease_name: String,
    /// Seconds a lease stays valid without renewal: a crashed leader is replaced after about this long.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds a leader keeps trying to renew before it gives up and exits.
    #[arg(long, default_value_t = 10)]
    renew_deadline_seconds: u64,
    /// Seconds between attempts to acquire or renew.
    #[arg(long, default_value_t = 2)]
    retry_period_seconds: u64,
    /// The kinds Workspace templates may have, comma-separated `apiVersion/Kind`s (`v1/ConfigMap`,
    /// `networking.k8s.io/v1/NetworkPolicy`); empty for none. Only namespaced kinds the API server serves, never RBAC
    /// kinds; the operator needs get, list, watch, create, patch and delete on each (the chart's `templates.kinds`
    /// grants them, and passes them here).
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_TEMPLATE_KINDS)]
    template_kinds: Vec<String>,
    /// ClusterRole behind the project role `admin`.
    #[arg(long, default_value = "admin")]
    admin_cluster_role: String,
    /// ClusterRole behind the project role `developer` (also given to each project's runner ServiceAccount).
    #[arg(long, default_value = "edit")]
    developer_cluster_role: String,
    /// ClusterRole behind the project role `contributor`.
    #[arg(long, default_value = "zenml-project-contributor")]
    contributor_cluster_role: String,
    /// ClusterRole behind the project role `viewer`.
    #[arg(long, default_value = "view")]
    viewer_cluster_role: String,
    /// The ValidatingAdmissionPolicy enforcing Workspaces' `spec.policies`, which the operator binds once per
    /// workspace (`<policy>-<workspace>`); empty: bind none. Given twice, the last one counts (the chart's `extraArgs`).
    #[arg(long, default_value = "zenml-workspace-policies", overrides_with = "workspace_policy")]
    workspace_policy: String,
    /// The API server's address as pods reach it after the `kubernetes` Service's translation (IP:PORT; repeat for
    /// several). Restricted egress allows these instead of the Service's EndpointSlices: set it where those do not
    /// tell the address pods reach.
    #[arg(long = "api-server-endpoint")]
    api_server_endpoints: Vec<SocketAddr>,
    /// The namespace whose pods serve DNS on port 53, which restricted egress allows.
    #[arg(long, default_value = zenml_api::resources::network::DEFAULT_DNS_NAMESPACE)]
    dns_namespace: String,
}

/// The chart's default `templates.kinds`.
const DEFAULT_TEMPLATE_KINDS: &str = "v1/ConfigMap,v1/LimitRange,networking.k8s.io/v1/NetworkPolicy";

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,kube=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

impl RunArgs {
    /// This replica's identity on the Lease: the pod's name, or the host and process outside a cluster.
    fn identity(&self) -> String {
        self.instance.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_else(|_| "local".into());
            format!("{}-{}", host.trim(), std::process::id())
        })
    }

    /// The Lease's namespace: as given, else the pod's (its service account's), else `default` outside a cluster.
    fn lease_namespace(&self) -> String {
        self.lease_namespace.clone().or_else(|| self.namespace.clone()).unwrap_or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "default".into())
        })
    }

    fn lease(&self) -> Option<LeaseConfig> {
        self.leader_elect.then(|| LeaseConfig {
            namespace: self.lease_namespace(),
            name: self.lease_name.clone(),
            identity: self.identity(),
            lease_duration: Duration::from_secs(self.lease_duration_seconds),
            renew_deadline: Duration::from_secs(self.renew_deadline_seconds),
            retry_period: Duration::from_secs(self.retry_period_seconds),
        })
    }
}

impl From<RunArgs> for RunConfig {
    fn from(args: RunArgs) -> Self {
        RunConfig {
            leader: args.lease(),
            concurrency: args.concurrency,
            metrics_addr: args.metrics_addr,
            settings: Settings {
                template_kinds: args.template_kinds.into_iter().filter(|k| !k.is_empty()).collect(),
                roles: RoleMap::new(
                    &args.admin_cluster_role,
                    &args.developer_cluster_role,
                    &args.contributor_cluster_role,
                    &args.viewer_cluster_role,
                ),
                protected_namespaces: args.namespace.into_iter().collect(),
                workspace_policy: Some(args.workspace_policy).filter(|p| !p.is_empty()),
                network: NetworkFacts {
                    api_server: args.api_server_endpoints.iter().map(|a| (a.ip(), i32::from(a.port()))).collect(),
                    dns_namespace: args.dns_namespace,
                },
            },
            instance: args.instance,
        }
    }
}

/// Writes one `<kind>.yaml` per CRD into `dir`.
fn write_crds(dir: &std::path::Path) -> ExitCode {
    for crd in zenml_api::crd::crds() {
        let path = dir.join(zenml_api::crd::file_name(&crd));
        if let Err(e) = std::fs::write(&path, zenml_api::crd::to_yaml(&crd)) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn run(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(zenml_operator::runtime::run(args.into())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crds { out_dir: None } => {
            print!("{}", zenml_api::crd::all_yaml());
            ExitCode::SUCCESS
        }
        Command::Crds { out_dir: Some(dir) } => write_crds(&dir),
        Command::Run(args) => run(*args),
    }
}
