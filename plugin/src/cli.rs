//! Command-line interface: `kubectl zenml <project|workspace|member|audit|completion> ...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::output::Format;

/// The ZenML project workflow on Kubernetes: register projects, switch the active one, share them.
///
/// A ZenML project is a `Project` (zenml.io/v1alpha1) whose namespace has its name; its ZenML ID is kept in
/// spec.projectId. Wherever a command takes a project, give its ZenML ID (resolved in the active workspace) or its
/// Kubernetes name. The active project is the one named by --project, else ZENML_ACTIVE_PROJECT_ID, else the
/// project whose namespace the kubeconfig context uses.
///
/// ZENML_ACTIVE_PROJECT_ID affects `kubectl zenml` only: plain kubectl does not read it and keeps using the
/// namespace of the kubeconfig context (`kubectl zenml project set` changes that one).
#[derive(Parser, Debug)]
#[command(name = "kubectl-zenml", bin_name = "kubectl zenml", version, max_term_width = 110)]
pub struct Cli {
    /// Path to the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// The workspace to act in: where `project register` creates projects and ZenML project IDs are looked up
    /// (default: the active project's workspace); limits `project list` and `audit` to it.
    // Its own id: `workspace describe|use` have a positional `workspace`, which would otherwise shadow it there.
    #[arg(id = "workspace_flag", short = 'w', long = "workspace", global = true, value_name = "WORKSPACE")]
    pub workspace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Register, activate, list and describe projects.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// List, describe and switch workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Grant and revoke project roles.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Who has which role in which project, grants about to expire, and access around ProjectRoleBindings: RoleBindings
    /// the operator does not make (compared with what it wants, not by label) and long-lived token Secrets.
    Audit(AuditArgs),
    /// Print a shell completion script for the command kubectl-zenml (`kubectl zenml <TAB>` is completed by
    /// kubectl 1.26 and later through kubectl_complete-zenml on PATH).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectCommand {
    /// Create a project (like `zenml project register`) and wait until it is Ready.
    Register(RegisterArgs),
    /// Make a project the active one: the kubeconfig context's namespace becomes the project's.
    Set(SetArgs),
    /// List the projects you can see.
    List,
    /// Show a project (default: the active one): Ready, quota, members.
    Describe {
        /// ZenML project ID or Kubernetes name.
        project: Option<String>,
    },
    /// Freeze a project (default: the active one): no new or changed pods and workloads; what runs keeps running.
    Freeze {
        /// ZenML project ID or Kubernetes name.
        project: Option<String>,
    },
    /// Unfreeze a project frozen with `freeze` (a project frozen by its workspace stays frozen).
    Unfreeze {
        /// ZenML project ID or Kubernetes name.
        project: Option<String>,
    },
    /// List the expired projects (spec.expiresAt passed; in --workspace, else all you can see) and delete them after
    /// a confirmation; each namespace is deleted or kept by the project's deletionPolicy.
    Prune(PruneArgs),
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Delete without asking (for automation). Without it, and without a terminal to ask on, nothing is deleted.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// The ZenML project ID: letters, digits, '-' and '_'. The Kubernetes name is derived from it.
    pub project_id: String,
    /// Human-readable name.
    #[arg(long)]
    pub display_name: Option<String>,
    /// What the project is for.
    #[arg(long)]
    pub description: Option<String>,
    /// The Kubernetes name (and namespace) to use instead of the derived one.
    #[arg(long, value_name = "NAME")]
    pub k8s_name: Option<String>,
    /// Make the new project the active one.
    #[arg(long)]
    pub set: bool,
    /// Make it the active one and your default project in its workspace.
    #[arg(long)]
    pub set_default: bool,
    /// How long to wait for the project to be Ready (e.g. 90s, 5m; 0 to not wait).
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// ZenML project ID or Kubernetes name.
    pub project: String,
    /// Also record it as your default project in its workspace (used by `kubectl zenml workspace use`).
    #[arg(long)]
    pub default: bool,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// List the workspaces you can see.
    List,
    /// Show a workspace (default: the active one): projects, budget, members.
    Describe { workspace: Option<String> },
    /// Switch to a kubeconfig context for the workspace (`<cluster>-zenml-<workspace>`, same cluster and user as
    /// the current context), whose namespace is your default project there.
    Use { workspace: String },
}

#[derive(Args, Debug)]
#[group(id = "subject", required = true, multiple = false)]
pub struct SubjectArgs {
    /// A user, as the cluster's authenticator names it.
    #[arg(long, group = "subject")]
    pub user: Option<String>,
    /// A group (a team).
    #[arg(long, group = "subject")]
    pub group: Option<String>,
    /// A ServiceAccount of a project: PROJECT/NAME (PROJECT is a ZenML ID or Kubernetes name).
    #[arg(long, group = "subject", value_name = "PROJECT/NAME")]
    pub service_account: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// Grant a role in a project (default: the active one).
    Add(AddArgs),
    /// Revoke a role in a project. Only that subject is removed; bindings that also name others keep them.
    Remove(RemoveArgs),
    /// Who has which role in a project (default: the active one), through bindings and workspace members.
    List {
        #[arg(long, short = 'p')]
        project: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// admin, developer, contributor, viewer, or a custom role the workspace allows.
    #[arg(long)]
    pub role: String,
    #[command(flatten)]
    pub subject: SubjectArgs,
    /// When the grant ends (RFC 3339, e.g. 2026-12-31T18:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub expires_at: Option<String>,
    /// ZenML project ID or Kubernetes name (default: the active project).
    #[arg(long, short = 'p')]
    pub project: Option<String>,
    /// How long to wait for the grant to be in force (0 to not wait).
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub timeout: std::time::Duration,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[arg(long)]
    pub role: String,
    #[command(flatten)]
    pub subject: SubjectArgs,
    #[arg(long, short = 'p')]
    pub project: Option<String>,
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Grants that expire within this time are listed (e.g. 7d, 36h).
    #[arg(long, default_value = "7d", value_parser = duration)]
    pub expiring_within: std::time::Duration,
    /// ClusterRole behind the project role `admin`: as the operator was started with (its flag of the same name, the
    /// chart's `roles.admin`), or the operator's RoleBindings are listed as not the operator's.
    #[arg(long, default_value = "admin", value_name = "CLUSTERROLE")]
    pub admin_cluster_role: String,
    /// ClusterRole behind the project role `developer` and the runner (the chart's `roles.developer`).
    #[arg(long, default_value = "edit", value_name = "CLUSTERROLE")]
    pub developer_cluster_role: String,
    /// ClusterRole behind the project role `contributor` (the chart's `roles.contributor`).
    #[arg(long, default_value = "zenml-project-contributor", value_name = "CLUSTERROLE")]
    pub contributor_cluster_role: String,
    /// ClusterRole behind the project role `viewer` (the chart's `roles.viewer`).
    #[arg(long, default_value = "view", value_name = "CLUSTERROLE")]
    pub viewer_cluster_role: String,
}

fn duration(s: &str) -> Result<std::time::Duration, crate::names::InvalidDuration> {
    crate::names::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from([
            "kubectl-zenml",
            "project",
            "register",
            "Fraud_Detection",
            "--workspace",
            "ml",
            "-o",
            "json",
            "--context",
            "c",
        ])
        .unwrap();
        assert_eq!(cli.workspace.as_deref(), Some("ml"));
        assert_eq!(cli.output, Format::Json);
        assert_eq!(cli.context.as_deref(), Some("c"));
        let Command::Project(ProjectCommand::Register(r)) = cli.command else { panic!() };
        assert_eq!(r.project_id, "Fraud_Detection");
        assert_eq!(r.timeout, std::time::Duration::from_secs(60));
    }

    #[test]
    fn a_workspace_argument_is_not_the_workspace_flag() {
        let cli = Cli::try_parse_from(["kubectl-zenml", "workspace", "describe", "ml"]).unwrap();
        assert_eq!(cli.workspace, None);
        let Command::Workspace(WorkspaceCommand::Describe { workspace }) = cli.command else { panic!() };
        assert_eq!(workspace.as_deref(), Some("ml"));
        let cli = Cli::try_parse_from(["kubectl-zenml", "workspace", "use", "ml", "-w", "other"]).unwrap();
        assert_eq!(cli.workspace.as_deref(), Some("other"));
    }

    #[test]
    fn member_commands_need_exactly_one_subject() {
        let base = ["kubectl-zenml", "member", "add", "--role", "viewer"];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--user", "a", "--group", "b"])).is_err());
        assert!(Cli::try_parse_from(base.iter().chain(&["--service-account", "p/sa"])).is_ok());
    }

    #[test]
    fn member_add_takes_named_flags() {
        let cli = Cli::try_parse_from([
            "kubectl-zenml",
            "member",
            "add",
            "--user",
            "alice",
            "--role",
            "developer",
            "-p",
            "fraud",
            "--expires-at",
            "2026-12-31T18:00:00Z",
        ])
        .unwrap();
        let Command::Member(MemberCommand::Add(a)) = cli.command else { panic!() };
        assert_eq!((a.role.as_str(), a.subject.user.as_deref()), ("developer", Some("alice")));
        assert_eq!((a.project.as_deref(), a.expires_at.as_deref()), (Some("fraud"), Some("2026-12-31T18:00:00Z")));
        assert_eq!(a.timeout, std::time::Duration::from_secs(60));
        assert!(Cli::try_parse_from(["kubectl-zenml", "member", "add", "developer", "alice"]).is_err());
    }
}
