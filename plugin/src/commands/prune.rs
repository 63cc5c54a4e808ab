//! `kubectl zenml project prune`: deletes expired projects (`spec.expiresAt` passed) after a confirmation.

use std::io::{BufRead, IsTerminal, Write};

use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions};
use kube::{Api, ResourceExt};
use zenml_api::{DeletionPolicy, Project};

use super::{info, warn};
use crate::cli::PruneArgs;
use crate::error::{Error, Op, Result};
use crate::names;
use crate::output::{self, Format, print_doc};
use crate::session::{PROJECTS, Session};

/// The projects expired at `now`, oldest expiry first.
pub fn expired(projects: Vec<Project>, now: Timestamp) -> Vec<Project> {
    let mut expired: Vec<Project> = projects
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.spec.expires_at.as_ref().is_some_and(|t| t.0 <= now))
        .collect();
    expired.sort_by_key(|p| (p.spec.expires_at.as_ref().map(|t| t.0), p.name_any()));
    expired
}

fn policy(p: &Project) -> &'static str {
    match p.spec.deletion_policy {
        DeletionPolicy::Delete => "Delete",
        DeletionPolicy::Retain => "Retain",
    }
}

/// Lists the expired projects (in `--workspace`, else every one visible), asks, then deletes them: the operator
/// deletes or keeps each namespace by the project's `deletionPolicy`.
pub async fn prune(s: &Session, a: &PruneArgs) -> Result<()> {
    let now = Timestamp::now();
    let all = s.list_projects(s.workspace_flag.as_deref()).await.map_err(|e| Op::new("list", PROJECTS).err(e))?;
    let expired = expired(all, now);
    if s.format != Format::Table {
        print_doc(s.format, &output::list_doc(&expired))?;
    }
    if expired.is_empty() {
        info(s.format, "No expired projects.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = expired
        .iter()
        .map(|p| {
            let at = p.spec.expires_at.as_ref().map(|t| t.0).unwrap_or(now);
            let ago = std::time::Duration::try_from(now.duration_since(at)).unwrap_or_default();
            let ago = std::time::Duration::from_secs(ago.as_secs());
            vec![
                p.name_any(),
                p.spec.workspace.clone(),
                format!("{at} ({} ago)", names::format_duration(ago)),
                policy(p).to_owned(),
            ]
        })
        .collect();
    let table = output::table(&["NAME", "WORKSPACE", "EXPIRED SINCE", "DELETION POLICY"], &rows);
    match s.format {
        Format::Table => println!("{table}"),
        _ => eprintln!("{table}"),
    }
    let n = expired.len();
    if !a.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Error::ConfirmationNeeded { count: n });
        }
        eprint!("Delete these {n} projects (namespaces with deletionPolicy Delete go with them)? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer).ok();
        if !matches!(answer.trim().to_lowercase().as_str(), "y" | "yes") {
            info(s.format, "Nothing deleted.");
            return Ok(());
        }
    }
    let api: Api<Project> = s.projects();
    // One refusal (a project of a workspace you do not administer) does not stop the others; the first is returned.
    let mut failed = Vec::new();
    for p in &expired {
        let name = p.name_any();
        // Only the instance listed: a project recreated under its name meanwhile is not ours to delete.
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: p.uid(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => continue,
            Err(e) => {
                let e = Op::new("delete", PROJECTS).name(&name).err(e);
                warn(format!("project {name} not deleted: {e}"));
                failed.push(e);
                continue;
            }
        }
        let what = match p.spec.deletion_policy {
            DeletionPolicy::Delete => format!("its namespace {name} is deleted with it"),
            DeletionPolicy::Retain => format!("deletionPolicy Retain: namespace {name} and its contents are kept"),
        };
        info(s.format, format!("Deleted project {name} (workspace {}): {what}.", p.spec.workspace));
    }
    match failed.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::SignedDuration;
    use zenml_api::ProjectSpec;

    fn project(name: &str, expires_in_secs: Option<i64>, now: Timestamp) -> Project {
        let at = expires_in_secs.map(|s| Time(now.checked_add(SignedDuration::from_secs(s)).unwrap()));
        Project::new(name, ProjectSpec { workspace: "ml".into(), expires_at: at, ..Default::default() })
    }

    #[test]
    fn only_projects_past_their_expiry_are_pruned_oldest_first() {
        let now = Timestamp::now();
        let projects = vec![
            project("later", Some(60), now),
            project("never", None, now),
            project("recent", Some(-10), now),
            project("long-ago", Some(-86_400), now),
            project("now", Some(0), now),
        ];
        let names: Vec<String> = expired(projects, now).iter().map(|p| p.name_any()).collect();
        assert_eq!(names, ["long-ago", "recent", "now"]);
    }
}
