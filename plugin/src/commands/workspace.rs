//! `kubectl zenml workspace list|describe|use`.

use kube::ResourceExt;
use zenml_api::Project;
use zenml_api::resources::workspace::default_project_name;

use super::project::indent;
use super::{info, warn};
use crate::error::{Error, Op, Result, is_forbidden};
use crate::kubeconfig;
use crate::output::{self, Format, dash, print_doc};
use crate::session::{PROJECTS, Session, env_override, namespace_of};

/// The context `workspace use` makes: `<cluster>-zenml-<workspace>`.
pub fn context_name(cluster: &str, workspace: &str) -> String {
    format!("{cluster}-zenml-{workspace}")
}

/// The user's default project in `workspace`: the recorded one (if it still exists), else the default project the
/// workspace declares (`spec.defaultProject`, `declared`: made by the operator), else the project with ZenML ID
/// `default`, else the only project.
pub fn pick_default<'a>(
    recorded: Option<&str>,
    declared: Option<&str>,
    projects: &'a [Project],
) -> Option<&'a Project> {
    let named = |n: &str| projects.iter().find(|p| p.metadata.name.as_deref() == Some(n));
    recorded
        .and_then(named)
        .or_else(|| declared.and_then(named))
        .or_else(|| projects.iter().find(|p| p.spec.project_id.as_deref() == Some("default")))
        .or_else(|| if projects.len() == 1 { projects.first() } else { None })
}

fn recorded_default(s: &Session, workspace: &str) -> Option<String> {
    let defaults = s.files.default_projects();
    kubeconfig::find_default(&defaults, &s.cluster, s.user.as_deref().unwrap_or_default(), workspace)
        .map(|d| d.project.clone())
}

pub async fn list(s: &Session) -> Result<()> {
    let mut warnings = Vec::new();
    let workspaces = s.visible_workspaces(&mut warnings).await?;
    for w in &warnings {
        warn(w);
    }
    if s.format != Format::Table {
        return print_doc(s.format, &output::list_doc(&workspaces));
    }
    if workspaces.is_empty() {
        println!("No workspaces found.");
        return Ok(());
    }
    let active = s.active_workspace().await;
    let rows: Vec<Vec<String>> = workspaces
        .iter()
        .map(|w| {
            let status = w.status.clone().unwrap_or_default();
            let budget = status.budget.unwrap_or_default();
            vec![
                if active.as_deref() == Some(w.name_any().as_str()) { "*".into() } else { String::new() },
                w.name_any(),
                dash(w.spec.display_name.as_deref()),
                status.projects.map_or("-".into(), |n| n.to_string()),
                output::ready_cell(&status.conditions, w.metadata.generation),
                output::quota_cell(&budget.hard, &budget.allocated),
                dash(recorded_default(s, &w.name_any()).as_deref()),
            ]
        })
        .collect();
    let headers = ["ACTIVE", "NAME", "DISPLAY NAME", "PROJECTS", "READY", "BUDGET (ALLOCATED/HARD)", "YOUR DEFAULT"];
    println!("{}", output::table(&headers, &rows));
    Ok(())
}

pub async fn describe(s: &Session, name: Option<&str>) -> Result<()> {
    let name = match name {
        Some(n) => n.to_owned(),
        None => match s.active_workspace().await {
            Some(w) => w,
            None => return Err(Error::NoActiveWorkspace { fix: "name one" }),
        },
    };
    let ws = s.workspace(&name).await?;
    if s.format != Format::Table {
        return print_doc(s.format, &output::object_doc(&ws));
    }
    let status = ws.status.clone().unwrap_or_default();
    let (ready, reason, message) = output::ready(&status.conditions, ws.metadata.generation);
    let field = |k: &str, v: String| println!("{:<16}{v}", format!("{k}:"));
    field("Name", name.clone());
    field("Display name", dash(ws.spec.display_name.as_deref()));
    field("Description", dash(ws.spec.description.as_deref()));
    field("Ready", if ready == "True" { ready } else { format!("{ready} ({reason}): {message}") });
    field(
        "Projects",
        format!(
            "{}{}",
            status.projects.map_or("-".into(), |n| n.to_string()),
            ws.spec.max_projects.map(|m| format!(" (at most {m})")).unwrap_or_default()
        ),
    );
    field("Your default", dash(recorded_default(s, &name).as_deref()));
    let budget = status.budget.clone().unwrap_or_default();
    if !budget.hard.is_empty() {
        println!("Budget:");
        let rows: Vec<Vec<String>> = budget
            .hard
            .iter()
            .map(|(k, h)| vec![k.clone(), budget.allocated.get(k).map_or("0".into(), |q| q.0.clone()), h.0.clone()])
            .collect();
        println!("{}", indent(&output::table(&["RESOURCE", "ALLOCATED", "HARD"], &rows)));
    }
    if !ws.spec.roles.is_empty() {
        let roles: Vec<String> = ws.spec.roles.iter().map(|r| format!("{} ({})", r.name, r.cluster_role)).collect();
        field("Custom roles", roles.join(", "));
    }
    if ws.spec.members.is_empty() {
        field("Members", "-".into());
    } else {
        println!("Members (in every project):");
        let rows: Vec<Vec<String>> = ws
            .spec
            .members
            .iter()
            .flat_map(|m| m.subjects.iter().map(|x| vec![m.role.clone(), crate::names::describe_subject(x)]))
            .collect();
        println!("{}", indent(&output::table(&["ROLE", "SUBJECT"], &rows)));
    }
    match s.list_projects(Some(&name)).await {
        Ok(projects) if projects.is_empty() => field("Project list", "none".into()),
        Ok(projects) => {
            println!("Project list:");
            let rows: Vec<Vec<String>> = projects
                .iter()
                .map(|p| {
                    let st = p.status.clone().unwrap_or_default();
                    vec![
                        p.name_any(),
                        dash(p.spec.project_id.as_deref()),
                        output::ready_cell(&st.conditions, p.metadata.generation),
                        output::members_cell(&st.members),
                    ]
                })
                .collect();
            println!("{}", indent(&output::table(&["NAME", "PROJECT ID", "READY", "MEMBERS"], &rows)));
        }
        Err(e) => warn(format!("projects not shown: {}", Op::new("list", PROJECTS).err(e))),
    }
    Ok(())
}

/// Switches to (creating or updating) the context `<cluster>-zenml-<workspace>`.
pub async fn use_(s: &mut Session, workspace: &str) -> Result<()> {
    let declared = match s.workspace(workspace).await {
        Ok(w) => default_project_name(&w),
        // Not allowed to read it: the context can still be made.
        Err(Error::Forbidden(_)) => None,
        Err(e) => return Err(e),
    };
    let projects = match s.list_projects(Some(workspace)).await {
        Ok(p) => p,
        Err(e) if is_forbidden(&e) => {
            warn(format!("cannot find a default project: {}", Op::new("list", PROJECTS).err(e)));
            Vec::new()
        }
        Err(e) => return Err(Op::new("list", PROJECTS).err(e)),
    };
    let recorded = recorded_default(s, workspace);
    let mut default = pick_default(recorded.as_deref(), declared.as_deref(), &projects).cloned();
    if default.is_none()
        && let Some(r) = &recorded
    {
        // Recorded but not listed (listing not allowed): use it if it can be read.
        default = s.get_project(r).await.ok().flatten();
    }
    if let Some(r) = &recorded
        && default.as_ref().and_then(|p| p.metadata.name.as_deref()) != Some(r.as_str())
    {
        warn(format!("your default project {r} of workspace {workspace} no longer exists"));
    }
    let name = context_name(&s.cluster, workspace);
    let namespace = default.as_ref().map(namespace_of);
    let (cluster, user) = (s.cluster.clone(), s.user.clone());
    let context_file = s.files.context_file(&name).unwrap_or(s.files.default_file()).to_owned();
    let current_file = s.files.current_context_file().to_owned();
    let same_file = context_file == current_file;
    s.writer.edit(&context_file, |d| {
        kubeconfig::upsert_context(d, &name, &cluster, user.as_deref(), namespace.as_deref(), workspace)?;
        if same_file { kubeconfig::set_current_context(d, &name) } else { Ok(()) }
    })?;
    if !same_file {
        s.writer.edit(&current_file, |d| kubeconfig::set_current_context(d, &name))?;
    }
    s.reload_files()?;
    if s.format != Format::Table {
        print_doc(
            s.format,
            &serde_json::json!({
                "context": name,
                "cluster": cluster,
                "user": user,
                "workspace": workspace,
                "project": default.as_ref().map(|p| p.name_any()),
                "namespace": namespace,
            }),
        )?;
    }
    match &default {
        Some(p) => info(
            s.format,
            format!(
                "Switched to context {name:?} (cluster {cluster}, user {}): workspace {workspace}, project {} (ZenML ID {}), namespace {}.",
                dash(user.as_deref()),
                p.name_any(),
                dash(p.spec.project_id.as_deref()),
                namespace_of(p)
            ),
        ),
        None => info(
            s.format,
            format!(
                "Switched to context {name:?} (cluster {cluster}, user {}): workspace {workspace}, no default project \
                 yet; `kubectl zenml project set <PROJECT> --default` picks one.",
                dash(user.as_deref())
            ),
        ),
    }
    if let Some(env) = &s.env_project {
        warn(env_override(env));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zenml_api::ProjectSpec;

    fn p(name: &str, id: &str) -> Project {
        Project::new(name, ProjectSpec { workspace: "ml".into(), project_id: Some(id.into()), ..Default::default() })
    }

    #[test]
    fn default_project_choice() {
        let ps = [p("ml-default", "default"), p("fraud", "Fraud")];
        assert_eq!(pick_default(Some("fraud"), None, &ps).unwrap().name_any(), "fraud");
        assert_eq!(pick_default(Some("gone"), None, &ps).unwrap().name_any(), "ml-default");
        assert_eq!(pick_default(None, None, &ps).unwrap().name_any(), "ml-default");
        assert_eq!(pick_default(None, None, &ps[1..]).unwrap().name_any(), "fraud");
        assert!(pick_default(None, None, &[p("a", "a"), p("b", "b")]).is_none());
        // The workspace's declared default project wins over another project with ID default.
        let both = [p("mine", "default"), p("ml-sandbox", "default")];
        assert_eq!(pick_default(None, Some("ml-sandbox"), &both).unwrap().name_any(), "ml-sandbox");
        assert_eq!(pick_default(Some("mine"), Some("ml-sandbox"), &both).unwrap().name_any(), "mine");
        assert_eq!(context_name("local", "ml"), "local-zenml-ml");
    }
}
