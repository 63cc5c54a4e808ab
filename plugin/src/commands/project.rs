//! `kubectl zenml project register|set|list|describe`.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use zenml_api::{Project, ProjectSpec};

use super::{info, warn};
use crate::cli::{RegisterArgs, SetArgs};
use crate::commands::member;
use crate::error::{Error, InvalidArgument, Op, Result, code, is_forbidden};
use crate::kubeconfig::{self, DefaultProject, KubeconfigError};
use crate::names;
use crate::output::{self, Format, dash, print_doc};
use crate::session::{ENV_PROJECT, Origin, PROJECTS, Session, env_override, is_ready, namespace_of};

/// Ready reasons that do not clear by themselves: waiting longer would not help.
const STUCK: &[&str] = &["NamespaceConflict", "DuplicateProjectId", "MaxProjectsExceeded", "BudgetExceeded"];

/// `project register`: creates the Project under the first free name, waits until it is Ready, and activates it
/// when asked.
pub async fn register(s: &mut Session, a: &RegisterArgs) -> Result<()> {
    names::validate_project_id(&a.project_id)?;
    let id = a.project_id.as_str();
    let Some(ws) = s.active_workspace().await else {
        return Err(Error::NoActiveWorkspace { fix: "pass --workspace" });
    };
    match s.workspace(&ws).await {
        // Not allowed to read it: the create says whether it exists.
        Ok(_) | Err(Error::Forbidden(_)) => {}
        Err(e) => return Err(e),
    }
    refuse_registered(s, id, &ws).await?;
    let candidates = candidates(a.k8s_name.as_deref(), id, &ws)?;
    let (project, skipped) = create_first_free(s, a, &ws, &candidates).await?;
    let name = project.name_any();
    if !skipped.is_empty() {
        info(s.format, format!("{} taken, so the project is named {name}", skipped.join(" and ")));
    }
    info(s.format, format!("Project {name} registered: ZenML ID {id:?}, workspace {ws:?}."));

    let project = if a.timeout.is_zero() { project } else { wait_ready(s, &name, a.timeout).await? };
    let ready = is_ready(&project);
    if s.format != Format::Table {
        print_doc(s.format, &output::object_doc(&project))?;
    }
    if !a.timeout.is_zero() && !ready {
        let (_, reason, message) = ready_of(&project);
        let waited = (!is_stuck(&project)).then_some(a.timeout);
        return Err(Error::NotReady { project: name, reason, message, waited });
    }
    if ready {
        info(s.format, format!("Ready: namespace {}", namespace_of(&project)));
    }
    if a.set || a.set_default {
        activate(s, &project, a.set_default)?;
    }
    Ok(())
}

/// Refuses a ZenML project ID that is already registered in the workspace (when its projects may be listed).
async fn refuse_registered(s: &Session, id: &str, ws: &str) -> Result<()> {
    match s.list_projects(Some(ws)).await {
        Ok(list) => match list.iter().find(|p| p.spec.project_id.as_deref() == Some(id)) {
            Some(p) => Err(Error::AlreadyRegistered {
                id: id.to_owned(),
                workspace: ws.to_owned(),
                project: p.name_any(),
                namespace: namespace_of(p),
            }),
            None => Ok(()),
        },
        Err(e) if is_forbidden(&e) => Ok(()),
        Err(e) => Err(Op::new("list", PROJECTS).err(e)),
    }
}

/// The Kubernetes names to try for project `id` in `ws`, best first: `--k8s-name` alone when given.
fn candidates(k8s_name: Option<&str>, id: &str, ws: &str) -> Result<Vec<String>, InvalidArgument> {
    match k8s_name {
        Some(n) if !names::is_dns_label(n) => {
            let problem = "is not a DNS-1123 label: at most 63 lowercase letters, digits and '-'";
            Err(InvalidArgument::new("--k8s-name", n, problem))
        }
        Some(n) if names::is_reserved(n) => {
            Err(InvalidArgument::new("--k8s-name", n, "is a protected namespace ('default' and 'kube-*' are)"))
        }
        Some(n) => Ok(vec![n.to_owned()]),
        None => Ok(names::candidate_names(id, ws)),
    }
}

/// Creates the Project under the first of `candidates` that is free; returns it and the names found taken.
async fn create_first_free(
    s: &Session,
    a: &RegisterArgs,
    ws: &str,
    candidates: &[String],
) -> Result<(Project, Vec<String>)> {
    let mut skipped = Vec::new();
    for name in candidates {
        if taken(s, name).await? {
            skipped.push(name.clone());
            continue;
        }
        let project = Project::new(
            name,
            ProjectSpec {
                workspace: ws.to_owned(),
                display_name: a.display_name.clone(),
                description: a.description.clone(),
                project_id: Some(a.project_id.clone()),
                ..Default::default()
            },
        );
        match s.projects().create(&PostParams::default(), &project).await {
            Ok(p) => return Ok((p, skipped)),
            // Taken between the check and the create, or hidden from us: try the next name.
            Err(e) if code(&e) == Some(409) => skipped.push(name.clone()),
            Err(e) => return Err(Op::new("create", PROJECTS).name(name).err(e)),
        }
    }
    Err(Error::NamesTaken { id: a.project_id.clone(), taken: skipped })
}

/// Whether `name` cannot be used: a Project has it, or a namespace that is no project's does.
async fn taken(s: &Session, name: &str) -> Result<bool> {
    match s.projects().get_opt(name).await {
        Ok(Some(_)) => return Ok(true),
        Ok(None) => {}
        // Not allowed to look: the create says 409 if it is taken.
        Err(e) if is_forbidden(&e) => {}
        Err(e) => return Err(Op::new("get", PROJECTS).name(name).err(e)),
    }
    match Api::<Namespace>::all(s.client.clone()).get_opt(name).await {
        Ok(found) => Ok(found.is_some()),
        Err(e) if is_forbidden(&e) => Ok(false),
        Err(e) => Err(Op::new("get", "namespaces").name(name).err(e)),
    }
}

fn ready_of(p: &Project) -> (String, String, String) {
    let conds = p.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    output::ready(conds, p.metadata.generation)
}

fn is_stuck(p: &Project) -> bool {
    let (status, reason, _) = ready_of(p);
    status == "False" && STUCK.contains(&reason.as_str())
}

/// Watches the project until it is Ready, is stuck, or `timeout` passes; returns it as last seen.
async fn wait_ready(s: &Session, name: &str, timeout: Duration) -> Result<Project> {
    let done = |p: Option<&Project>| p.is_none_or(|p| is_ready(p) || is_stuck(p));
    let watched = tokio::time::timeout(timeout, await_condition(s.projects(), name, done)).await;
    match watched {
        Ok(Ok(Some(p))) => return Ok(p),
        Ok(Ok(None)) => return Err(deleted(name)),
        // Timed out, or the watch was refused: poll for what remains of the time.
        Ok(Err(_)) => {
            let deadline = tokio::time::Instant::now() + timeout;
            while tokio::time::Instant::now() < deadline {
                match s.get_project(name).await? {
                    Some(p) if is_ready(&p) || is_stuck(&p) => return Ok(p),
                    Some(_) => {}
                    None => return Err(deleted(name)),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Err(_) => {}
    }
    s.get_project(name).await?.ok_or_else(|| deleted(name))
}

fn deleted(name: &str) -> Error {
    Error::DeletedWhileWaiting { kind: "project", name: name.to_owned() }
}

pub async fn set(s: &mut Session, a: &SetArgs) -> Result<()> {
    let ws = s.active_workspace().await;
    let project = s.resolve_project(&a.project, ws.as_deref()).await?;
    if s.format != Format::Table {
        print_doc(s.format, &output::object_doc(&project))?;
    }
    activate(s, &project, a.default)
}

/// Makes `project` the active one (the context's namespace), and with `default` the user's default in its workspace.
pub fn activate(s: &mut Session, project: &Project, default: bool) -> Result<()> {
    let name = project.name_any();
    let ns = namespace_of(project);
    let ws = project.spec.workspace.clone();
    let id = project.spec.project_id.clone();
    let context = s.context.clone();
    let Some(file) = s.files.context_file(&context).map(ToOwned::to_owned) else {
        return Err(KubeconfigError::NoFileDefines(context).into());
    };
    s.writer.edit(&file, |d| {
        kubeconfig::set_context_namespace(d, &context, &ns)?;
        kubeconfig::update_context_workspace(d, &context, &ws)
    })?;
    info(
        s.format,
        format!(
            "Active project: {name} (ZenML ID {}, workspace {ws}); context {context:?} now uses namespace {ns}.",
            dash(id.as_deref())
        ),
    );
    if default {
        let entry = DefaultProject {
            cluster: s.cluster.clone(),
            user: s.user.clone().unwrap_or_default(),
            workspace: ws.clone(),
            project: name.clone(),
            project_id: id.clone(),
        };
        let defaults = kubeconfig::with_default(s.files.default_projects(), entry);
        let file = s.files.default_file().to_owned();
        s.writer.edit(&file, |d| kubeconfig::set_default_projects(d, &defaults))?;
        info(
            s.format,
            format!(
                "Default project of workspace {ws} for user {} on cluster {}: {name} (kept in {}, preferences.extensions[zenml.io]).",
                dash(s.user.as_deref()),
                s.cluster,
                file.display()
            ),
        );
    }
    s.reload_files()?;
    if !is_ready(project) {
        let (_, reason, message) = ready_of(project);
        warn(format!("project {name} is not Ready yet: {reason}: {message}"));
    }
    if let Some(env) = &s.env_project {
        warn(env_override(env));
    }
    Ok(())
}

pub async fn list(s: &Session) -> Result<()> {
    let projects = match s.list_projects(s.workspace_flag.as_deref()).await {
        Ok(p) => p,
        Err(e) if is_forbidden(&e) => {
            // Not allowed to list: show the active project, if it can be read.
            warn(Op::new("list", PROJECTS).err(e).to_string());
            s.active_project(None).await.map(|(p, _)| vec![p]).unwrap_or_default()
        }
        Err(e) => return Err(Op::new("list", PROJECTS).err(e)),
    };
    if s.format != Format::Table {
        return print_doc(s.format, &output::list_doc(&projects));
    }
    if projects.is_empty() {
        println!("No projects found.");
        return Ok(());
    }
    let active = s.active_project(None).await.ok().map(|(p, _)| p.name_any());
    let rows: Vec<Vec<String>> = projects
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let quota = status.quota.unwrap_or_default();
            vec![
                if active.as_deref() == Some(p.name_any().as_str()) { "*".into() } else { String::new() },
                p.name_any(),
                dash(p.spec.project_id.as_deref()),
                p.spec.workspace.clone(),
                output::ready_cell(&status.conditions, p.metadata.generation),
                output::quota_cell(&quota.hard, &quota.used),
                output::members_cell(&status.members),
            ]
        })
        .collect();
    println!(
        "{}",
        output::table(&["ACTIVE", "NAME", "PROJECT ID", "WORKSPACE", "READY", "QUOTA (USED/HARD)", "MEMBERS"], &rows)
    );
    Ok(())
}

/// Sets `spec.frozen` of a project (a merge patch, so nothing else changes) and says what that means.
pub async fn freeze(s: &Session, reference: Option<&str>, frozen: bool) -> Result<()> {
    let (p, _) = s.active_project(reference).await?;
    let name = p.name_any();
    let api: Api<Project> = Api::all(s.client.clone());
    let patch = serde_json::json!({"spec": {"frozen": frozen}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Op::new("patch", PROJECTS).name(&name).err(e))?;
    let msg = if frozen {
        format!(
            "Froze project {name}: no new or changed pods or workloads in namespace {name}; what runs keeps running."
        )
    } else {
        format!("Unfroze project {name}.")
    };
    info(s.format, msg);
    Ok(())
}

pub async fn describe(s: &Session, reference: Option<&str>) -> Result<()> {
    let (p, origin) = s.active_project(reference).await?;
    if s.format != Format::Table {
        return print_doc(s.format, &output::object_doc(&p));
    }
    let status = p.status.clone().unwrap_or_default();
    let (ready, reason, message) = output::ready(&status.conditions, p.metadata.generation);
    let active = match (origin, s.active_project(None).await) {
        (Origin::Env, _) => format!("yes (from {ENV_PROJECT})"),
        (Origin::Context, _) => format!("yes (namespace of context {:?})", s.context),
        (Origin::Argument, Ok((a, o))) if a.name_any() == p.name_any() => {
            if o == Origin::Env {
                format!("yes (from {ENV_PROJECT})")
            } else {
                "yes".into()
            }
        }
        _ => "no".into(),
    };
    let field = |k: &str, v: String| println!("{:<14}{v}", format!("{k}:"));
    field("Name", p.name_any());
    field("Project ID", dash(p.spec.project_id.as_deref()));
    field("Display name", dash(p.spec.display_name.as_deref()));
    field("Description", dash(p.spec.description.as_deref()));
    field("Workspace", p.spec.workspace.clone());
    let owners: Vec<String> = p.spec.owners.iter().map(names::describe_subject).collect();
    field("Owners", if owners.is_empty() { "-".into() } else { owners.join(", ") });
    field("Namespace", dash(status.namespace.as_deref()));
    if let Some(at) = &p.spec.expires_at {
        let past = at.0 <= k8s_openapi::jiff::Timestamp::now();
        field(
            "Expires",
            format!("{}{}", at.0, if past { " (expired: frozen; `project prune` deletes it)" } else { "" }),
        );
    }
    field("Active", active);
    field("Ready", if ready == "True" { ready } else { format!("{ready} ({reason}): {message}") });
    if !status.conditions.is_empty() {
        println!("Conditions:");
        let rows: Vec<Vec<String>> = status
            .conditions
            .iter()
            .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()])
            .collect();
        println!("{}", indent(&output::table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows)));
    }
    let quota = status.quota.clone().unwrap_or_default();
    if quota.hard.is_empty() {
        field("Quota", "none".into());
    } else {
        println!("Quota:");
        let rows: Vec<Vec<String>> = quota
            .hard
            .iter()
            .map(|(k, h)| vec![k.clone(), quota.used.get(k).map_or("0".into(), |q| q.0.clone()), h.0.clone()])
            .collect();
        println!("{}", indent(&output::table(&["RESOURCE", "USED", "HARD"], &rows)));
    }
    field("Members", output::members_cell(&status.members));
    let mut warnings = Vec::new();
    let members = member::members_of_project(s, &p, &mut warnings).await;
    if !members.is_empty() {
        println!("{}", indent(&member::members_table(&members, false)));
    }
    for w in warnings {
        warn(w);
    }
    Ok(())
}

pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_k8s_name_is_checked_and_replaces_the_derived_names() {
        assert_eq!(candidates(Some("fraud"), "Fraud", "ml").unwrap(), ["fraud"]);
        assert_eq!(candidates(None, "Fraud", "ml").unwrap()[..2], ["fraud", "ml-fraud"]);
        assert_eq!(candidates(Some("Bad_Name"), "x", "ml").unwrap_err().flag, "--k8s-name");
        let reserved = candidates(Some("kube-system"), "x", "ml").unwrap_err().to_string();
        assert_eq!(reserved, "--k8s-name \"kube-system\" is a protected namespace ('default' and 'kube-*' are)");
    }
}
