//! kubectl-zenml: the ZenML project workflow on Kubernetes, as a kubectl plugin.
//!
//! ```text
//! kubectl zenml project register|set|list|describe     ~ zenml project register|set|list|describe
//! kubectl zenml project freeze|unfreeze|prune           freeze a project; delete expired ones
//! kubectl zenml workspace list|describe|use             ~ zenml workspace ...
//! kubectl zenml member add|remove|list                  ProjectRoleBindings, one per (project, role, subject)
//! kubectl zenml audit                                    who has what, what expires, what goes around the operator
//! ```
//! `names` holds the pure naming rules, `kubeconfig` the kubectl-compatible kubeconfig editing, `session` the
//! context and active project/workspace resolution, `commands` one module per command group.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod complete;
pub mod error;
pub mod kubeconfig;
pub mod names;
pub mod output;
pub mod session;
pub mod yaml;

use clap::CommandFactory;

use cli::{Cli, Command, MemberCommand, ProjectCommand, WorkspaceCommand};
use error::Result;
use session::Session;

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<()> {
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "kubectl-zenml", &mut std::io::stdout());
        return Ok(());
    }
    let mut s = Session::new(cli.kubeconfig.as_deref(), cli.context.as_deref(), cli.workspace, cli.output).await?;
    s.check_workspace_flag().await?;
    match cli.command {
        Command::Project(ProjectCommand::Register(args)) => commands::project::register(&mut s, &args).await,
        Command::Project(ProjectCommand::Set(args)) => commands::project::set(&mut s, &args).await,
        Command::Project(ProjectCommand::List) => commands::project::list(&s).await,
        Command::Project(ProjectCommand::Describe { project }) => {
            commands::project::describe(&s, project.as_deref()).await
        }
        Command::Project(ProjectCommand::Freeze { project }) => {
            commands::project::freeze(&s, project.as_deref(), true).await
        }
        Command::Project(ProjectCommand::Unfreeze { project }) => {
            commands::project::freeze(&s, project.as_deref(), false).await
        }
        Command::Project(ProjectCommand::Prune(args)) => commands::prune::prune(&s, &args).await,
        Command::Workspace(WorkspaceCommand::List) => commands::workspace::list(&s).await,
        Command::Workspace(WorkspaceCommand::Describe { workspace }) => {
            commands::workspace::describe(&s, workspace.as_deref()).await
        }
        Command::Workspace(WorkspaceCommand::Use { workspace }) => commands::workspace::use_(&mut s, &workspace).await,
        Command::Member(MemberCommand::Add(args)) => commands::member::add(&s, &args).await,
        Command::Member(MemberCommand::Remove(args)) => commands::member::remove(&s, &args).await,
        Command::Member(MemberCommand::List { project }) => commands::member::list(&s, project.as_deref()).await,
        Command::Audit(args) => commands::audit::audit(&s, &args).await,
        Command::Completion { .. } => unreachable!("handled above"),
    }
}
