//! One invocation's view of the cluster: the kubeconfig context in use, a client for it, and how the active
//! workspace and project are found.
//!
//! The **active project** is, first match wins: the project a command names (`--project`, or a positional
//! argument), `ZENML_ACTIVE_PROJECT_ID`, the Project whose namespace the kubeconfig context uses. Only this plugin
//! reads `ZENML_ACTIVE_PROJECT_ID`: plain kubectl goes by the context's namespace alone. The **active
//! workspace**, in which ZenML project IDs are resolved, is `--workspace`, else the active project's workspace, else
//! the workspace the context was made for (`kubectl zenml workspace use`).

use std::path::Path;

use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use zenml_api::{Project, ProjectRoleBinding, Workspace};

use crate::error::{Error, Kind, NotFound, Op, Result, Unlisted, is_forbidden};
use crate::kubeconfig::{self, Files, KubeconfigError, Writer};
use crate::names;
use crate::output::Format;

/// The environment variable that overrides the active project, as in ZenML.
pub const ENV_PROJECT: &str = "ZENML_ACTIVE_PROJECT_ID";

pub const PROJECTS: &str = "projects.zenml.io";
pub const WORKSPACES: &str = "workspaces.zenml.io";
pub const BINDINGS: &str = "projectrolebindings.zenml.io";

/// Where the active project came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Named on the command line.
    Argument,
    /// `ZENML_ACTIVE_PROJECT_ID`.
    Env,
    /// The namespace of the kubeconfig context.
    Context,
}

pub struct Session {
    pub client: Client,
    pub files: Files,
    /// The kubeconfig context in use (`--context`, else the current one).
    pub context: String,
    pub cluster: String,
    pub user: Option<String>,
    pub namespace: Option<String>,
    /// The workspace the context was made for, if `workspace use` made it.
    pub context_workspace: Option<String>,
    pub workspace_flag: Option<String>,
    pub env_project: Option<String>,
    pub format: Format,
    pub writer: Writer,
}

impl Session {
    pub async fn new(
        kubeconfig_flag: Option<&Path>,
        context_flag: Option<&str>,
        workspace_flag: Option<String>,
        format: Format,
    ) -> Result<Session> {
        let (paths, explicit) = kubeconfig::locate(kubeconfig_flag)?;
        let files = Files::read(&paths, explicit)?;
        let looked_at = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        if files.existing().next().is_none() {
            return Err(KubeconfigError::NoFile { looked_at }.into());
        }
        let Some(context) = context_flag.or(files.current_context()).map(str::to_owned) else {
            return Err(KubeconfigError::NoCurrentContext { looked_at }.into());
        };
        let Some(body) = files.context(&context) else {
            return Err(KubeconfigError::UnknownContext { context, looked_at }.into());
        };
        let cluster = body.get_str("cluster").unwrap_or_default().to_owned();
        let user = body.get_str("user").map(str::to_owned);
        let namespace = body.get_str("namespace").filter(|n| !n.is_empty()).map(str::to_owned);
        let context_workspace = kubeconfig::context_workspace(body);

        let client = client(&files, &context).await?;
        let env_project = std::env::var(ENV_PROJECT).ok().filter(|v| !v.trim().is_empty()).map(|v| v.trim().into());
        Ok(Session {
            client,
            files,
            context,
            cluster,
            user,
            namespace,
            context_workspace,
            workspace_flag,
            env_project,
            format,
            writer: Writer::default(),
        })
    }

    pub fn projects(&self) -> Api<Project> {
        Api::all(self.client.clone())
    }

    pub fn workspaces(&self) -> Api<Workspace> {
        Api::all(self.client.clone())
    }

    pub fn bindings(&self) -> Api<ProjectRoleBinding> {
        Api::all(self.client.clone())
    }

    /// Re-reads the kubeconfig files (after this run changed them).
    pub fn reload_files(&mut self) -> Result<()> {
        let paths: Vec<_> = self.files.files.iter().map(|f| f.path.clone()).collect();
        self.files = Files::read(&paths, self.files.explicit)?;
        Ok(())
    }

    /// Projects, of one workspace (a server-side field selector) or all that can be listed.
    pub async fn list_projects(&self, workspace: Option<&str>) -> Result<Vec<Project>, kube::Error> {
        let lp = match workspace {
            Some(w) => ListParams::default().fields(&format!("spec.workspace={w}")),
            None => ListParams::default(),
        };
        let mut items = self.projects().list(&lp).await?.items;
        items.sort_by(|a, b| {
            (&a.spec.workspace, a.metadata.name.as_deref()).cmp(&(&b.spec.workspace, b.metadata.name.as_deref()))
        });
        Ok(items)
    }

    pub async fn get_project(&self, name: &str) -> Result<Option<Project>> {
        self.projects().get_opt(name).await.map_err(|e| Op::new("get", PROJECTS).name(name).err(e))
    }

    /// Workspace `name`. One that does not exist is [`Error::NotFound`], naming those that do; one that may not be
    /// read is [`Error::Forbidden`] (callers that can do without it go on).
    pub async fn workspace(&self, name: &str) -> Result<Workspace> {
        match self.workspaces().get_opt(name).await {
            Ok(Some(w)) => Ok(w),
            Ok(None) => {
                let existing = match self.workspaces().list(&ListParams::default()).await {
                    Ok(l) => Ok(sorted(l.items.iter().filter_map(|w| w.metadata.name.clone()).collect())),
                    Err(e) if is_forbidden(&e) => {
                        Err(Unlisted::Lacking(vec![Op::new("list", WORKSPACES).permission()]))
                    }
                    Err(e) => Err(Unlisted::Failed(Box::new(Op::new("list", WORKSPACES).err(e)))),
                };
                Err(NotFound { kind: Kind::Workspace, name: name.to_owned(), workspace: None, existing }.into())
            }
            Err(e) => Err(Op::new("get", WORKSPACES).name(name).err(e)),
        }
    }

    /// Refuses a `--workspace` that does not exist, whatever the command (it may not be read: then it is taken on
    /// trust, and the commands that use it say what they may not do).
    pub async fn check_workspace_flag(&self) -> Result<()> {
        let Some(w) = &self.workspace_flag else { return Ok(()) };
        match self.workspace(w).await {
            Ok(_) | Err(Error::Forbidden(_)) => Ok(()),
            Err(e) => Err(e.given_by("--workspace")),
        }
    }

    /// The Project whose namespace the context uses, if any (and if it can be read).
    pub async fn context_project(&self) -> Option<Project> {
        let ns = self.namespace.as_deref()?;
        if !names::is_dns_label(ns) {
            return None;
        }
        self.projects().get_opt(ns).await.ok().flatten()
    }

    /// The workspace the context points at: its project's, else the one it was made for.
    async fn context_workspace_hint(&self) -> Option<String> {
        match self.context_project().await {
            Some(p) => Some(p.spec.workspace),
            None => self.context_workspace.clone(),
        }
    }

    /// The active workspace: `--workspace`, else the active project's, else the context's.
    pub async fn active_workspace(&self) -> Option<String> {
        if let Some(w) = &self.workspace_flag {
            return Some(w.clone());
        }
        if let Some(id) = &self.env_project {
            let hint = self.context_workspace_hint().await;
            if let Ok(p) = self.resolve_project(id, hint.as_deref()).await {
                return Some(p.spec.workspace);
            }
        }
        self.context_workspace_hint().await
    }

    /// The project a command acts on, and where that choice came from.
    pub async fn active_project(&self, explicit: Option<&str>) -> Result<(Project, Origin)> {
        if let Some(reference) = explicit {
            let ws = self.active_workspace().await;
            return Ok((self.resolve_project(reference, ws.as_deref()).await?, Origin::Argument));
        }
        if let Some(id) = &self.env_project {
            let ws = match &self.workspace_flag {
                Some(w) => Some(w.clone()),
                None => self.context_workspace_hint().await,
            };
            let p = self.resolve_project(id, ws.as_deref()).await.map_err(|e| e.given_by(ENV_PROJECT))?;
            return Ok((p, Origin::Env));
        }
        if let Some(ns) = &self.namespace
            && names::is_dns_label(ns)
            && let Some(p) = self.get_project(ns).await?
        {
            return Ok((p, Origin::Context));
        }
        Err(Error::NoActiveProject { context: self.context.clone(), namespace: self.namespace.clone() })
    }

    /// Finds a project by ZenML ID (within `workspace` when given) or by Kubernetes name.
    pub async fn resolve_project(&self, reference: &str, workspace: Option<&str>) -> Result<Project> {
        let id_matches = |p: &Project| p.spec.project_id.as_deref() == Some(reference);
        let mut unseen = Vec::new();
        if let Some(ws) = workspace {
            match self.list_projects(Some(ws)).await {
                Ok(list) => {
                    if let Some(p) = list.into_iter().find(id_matches) {
                        return Ok(p);
                    }
                }
                Err(e) if is_forbidden(&e) => unseen.push(Op::new("list", PROJECTS).permission()),
                Err(e) => return Err(Op::new("list", PROJECTS).err(e)),
            }
        }
        if names::is_dns_label(reference) {
            match self.projects().get_opt(reference).await {
                Ok(Some(p)) => return Ok(p),
                Ok(None) => {}
                Err(e) if is_forbidden(&e) => unseen.push(Op::new("get", PROJECTS).name(reference).permission()),
                Err(e) => return Err(Op::new("get", PROJECTS).name(reference).err(e)),
            }
        }
        let existing = match self.list_projects(None).await {
            Ok(list) => {
                let found: Vec<&Project> = list.iter().filter(|p| id_matches(p)).collect();
                let places: Vec<String> = found
                    .iter()
                    .map(|p| format!("{} in workspace {}", p.metadata.name.as_deref().unwrap_or("?"), p.spec.workspace))
                    .collect();
                let id = reference.to_owned();
                match (workspace, found.len()) {
                    (None, 1) => return Ok(found[0].clone()),
                    (None, n) if n > 1 => return Err(Error::IdInSeveralWorkspaces { id, places }),
                    (Some(ws), n) if n > 0 => {
                        return Err(Error::IdInOtherWorkspaces { id, workspace: ws.to_owned(), places });
                    }
                    _ => {}
                }
                // Every project can be listed: the ones in scope are all the names that could have matched.
                let in_scope = list.iter().filter(|p| workspace.is_none_or(|w| p.spec.workspace == w));
                Ok(sorted(in_scope.map(project_label).collect()))
            }
            Err(e) if is_forbidden(&e) => {
                let p = Op::new("list", PROJECTS).permission();
                if !unseen.contains(&p) {
                    unseen.push(p);
                }
                Err(Unlisted::Lacking(unseen))
            }
            Err(e) => return Err(Op::new("list", PROJECTS).err(e)),
        };
        Err(NotFound {
            kind: Kind::Project,
            name: reference.to_owned(),
            workspace: workspace.map(str::to_owned),
            existing,
        }
        .into())
    }

    /// Every workspace that can be seen: listed, or when that is not allowed, those of the visible projects.
    pub async fn visible_workspaces(&self, warnings: &mut Vec<String>) -> Result<Vec<Workspace>> {
        match self.workspaces().list(&ListParams::default()).await {
            Ok(list) => {
                let mut items = list.items;
                items.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
                Ok(items)
            }
            Err(e) if is_forbidden(&e) => {
                warnings.push(format!(
                    "not allowed to list workspaces (needs {}); showing those of the projects you can see",
                    Op::new("list", WORKSPACES).permission()
                ));
                let projects = self.list_projects(None).await.map_err(|e| Op::new("list", PROJECTS).err(e))?;
                let mut names: Vec<String> = projects.into_iter().map(|p| p.spec.workspace).collect();
                names.sort();
                names.dedup();
                let mut items = Vec::new();
                for n in names {
                    match self.workspaces().get_opt(&n).await {
                        Ok(Some(w)) => items.push(w),
                        Ok(None) => {}
                        Err(e) if is_forbidden(&e) => items.push(Workspace::new(&n, Default::default())),
                        Err(e) => return Err(Op::new("get", WORKSPACES).name(&n).err(e)),
                    }
                }
                Ok(items)
            }
            Err(e) => Err(Op::new("list", WORKSPACES).err(e)),
        }
    }
}

/// A client for `context` of the kubeconfig `files`.
async fn client(files: &Files, context: &str) -> Result<Client, KubeconfigError> {
    // kube reads each file itself (it resolves relative certificate paths against each file's directory) and
    // merges them as kubectl does.
    let mut merged = Kubeconfig::default();
    for f in files.existing() {
        let path = || f.path.clone();
        let one = Kubeconfig::read_from(&f.path).map_err(|source| KubeconfigError::Load { path: path(), source })?;
        merged = merged.merge(one).map_err(|source| KubeconfigError::Merge { path: path(), source })?;
    }
    let options = KubeConfigOptions { context: Some(context.to_owned()), cluster: None, user: None };
    let config = Config::from_custom_kubeconfig(merged, &options)
        .await
        .map_err(|source| KubeconfigError::Context { context: context.to_owned(), source })?;
    Client::try_from(config).map_err(|source| KubeconfigError::Client { context: context.to_owned(), source })
}

/// The warning for a command that changed the active project while `ZENML_ACTIVE_PROJECT_ID` is set.
pub fn env_override(value: &str) -> String {
    format!(
        "{ENV_PROJECT}={value} is set: it overrides the active project of `kubectl zenml` commands until you unset \
         it (plain kubectl does not read it: it uses the context's namespace)"
    )
}

/// A project as error messages list it: its name, and its ZenML ID when that differs.
pub fn project_label(p: &Project) -> String {
    let name = p.metadata.name.clone().unwrap_or_default();
    match p.spec.project_id.as_deref() {
        Some(id) if id != name => format!("{name} (ID {id})"),
        _ => name,
    }
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// `True` when `p`'s Ready condition is true for its current generation.
pub fn is_ready(p: &Project) -> bool {
    let conds = p.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    crate::output::ready(conds, p.metadata.generation).0 == "True"
}

/// The namespace of a project (its name; the status confirms it once provisioned).
pub fn namespace_of(p: &Project) -> String {
    p.status.as_ref().and_then(|s| s.namespace.clone()).or_else(|| p.metadata.name.clone()).unwrap_or_default()
}
