//! `kubectl zenml audit`: who has which role in which project, grants that expire soon, and RoleBindings in
//! project namespaces that the operator does not manage (granted around it).

use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;
use zenml_operator::api::{Project, ProjectRoleBinding, Subject, Workspace};

use super::member::{self, Member};
use super::project::indent;
use super::warn;
use crate::cli::AuditArgs;
use crate::error::{Error, Op, Result, is_forbidden};
use crate::names;
use crate::output::{self, Format, print_doc};
use crate::session::{BINDINGS, PROJECTS, Session, namespace_of};

/// RoleBindings without this label were not made by the operator.
pub const UNMANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by!=zenml-operator";

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    pub binding: String,
    pub project: String,
    pub role: String,
    pub subjects: Vec<Subject>,
    pub expires_at: String,
    /// True when the time has passed (the grant is already gone).
    pub expired: bool,
}

#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Unmanaged {
    pub namespace: String,
    pub project: String,
    pub name: String,
    /// `ClusterRole/edit`, `Role/foo`.
    pub role_ref: String,
    pub subjects: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub kind: &'static str,
    pub generated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    pub expiring_within: String,
    pub members: Vec<Member>,
    pub expiring: Vec<Expiring>,
    pub unmanaged_role_bindings: Vec<Unmanaged>,
    pub warnings: Vec<String>,
}

/// Bindings of `projects` that expire before `now + within`, soonest first.
pub fn expiring(
    bindings: &[ProjectRoleBinding],
    projects: &[Project],
    now: Timestamp,
    within: Duration,
) -> Vec<Expiring> {
    let horizon =
        now.checked_add(SignedDuration::try_from(within).unwrap_or(SignedDuration::MAX)).unwrap_or(Timestamp::MAX);
    let mut out: Vec<(Timestamp, Expiring)> = bindings
        .iter()
        .filter(|b| projects.iter().any(|p| p.metadata.name.as_deref() == Some(b.spec.project.as_str())))
        .filter_map(|b| {
            let at = b.spec.expires_at.as_ref()?.0;
            (at <= horizon).then(|| {
                (
                    at,
                    Expiring {
                        binding: b.name_any(),
                        project: b.spec.project.clone(),
                        role: b.spec.role.clone(),
                        subjects: b.spec.subjects.clone(),
                        expires_at: at.to_string(),
                        expired: at <= now,
                    },
                )
            })
        })
        .collect();
    out.sort_by(|a, b| (a.0, &a.1.binding).cmp(&(b.0, &b.1.binding)));
    out.into_iter().map(|(_, e)| e).collect()
}

pub fn unmanaged(project: &str, namespace: &str, rbs: &[RoleBinding]) -> Vec<Unmanaged> {
    let managed = |rb: &RoleBinding| {
        rb.labels().get(zenml_operator::labels::MANAGED_BY).map(String::as_str)
            == Some(zenml_operator::labels::MANAGED_BY_VALUE)
    };
    let mut out: Vec<Unmanaged> = rbs
        .iter()
        .filter(|rb| !managed(rb))
        .map(|rb| Unmanaged {
            namespace: namespace.to_owned(),
            project: project.to_owned(),
            name: rb.name_any(),
            role_ref: format!("{}/{}", rb.role_ref.kind, rb.role_ref.name),
            subjects: rb
                .subjects
                .iter()
                .flatten()
                .map(|s| match &s.namespace {
                    Some(ns) => format!("{}/{} ({})", ns, s.name, s.kind),
                    None => format!("{} ({})", s.name, s.kind),
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub async fn audit(s: &Session, args: &AuditArgs) -> Result<()> {
    let now = Timestamp::now();
    let mut warnings = Vec::new();
    let scope = s.workspace_flag.clone();
    let workspaces: Vec<Workspace> = match &scope {
        Some(w) => match s.workspace(w).await {
            Ok(ws) => vec![ws],
            Err(Error::Forbidden(why)) => {
                warnings.push(format!("workspace members not shown: {why}"));
                Vec::new()
            }
            Err(e) => return Err(e.given_by("--workspace")),
        },
        None => s.visible_workspaces(&mut warnings).await?,
    };
    let projects = s.list_projects(scope.as_deref()).await.map_err(|e| Op::new("list", PROJECTS).err(e))?;
    let bindings = match s.bindings().list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            warnings.push(format!("ProjectRoleBindings not shown: {}", Op::new("list", BINDINGS).err(e)));
            Vec::new()
        }
    };
    let members: Vec<Member> = projects
        .iter()
        .flat_map(|p| {
            let ws = workspaces.iter().find(|w| w.metadata.name.as_deref() == Some(p.spec.workspace.as_str()));
            member::members(p, &bindings, ws)
        })
        .collect();
    let expiring = expiring(&bindings, &projects, now, args.expiring_within);

    let lists = stream::iter(projects.iter())
        .map(|p| async move {
            let ns = namespace_of(p);
            let api: Api<RoleBinding> = Api::namespaced(s.client.clone(), &ns);
            let result = api.list(&ListParams::default().labels(UNMANAGED_SELECTOR)).await;
            (p.name_any(), ns, result)
        })
        .buffered(8)
        .collect::<Vec<_>>()
        .await;
    let mut unmanaged_rbs = Vec::new();
    for (project, ns, result) in lists {
        match result {
            Ok(l) => unmanaged_rbs.extend(unmanaged(&project, &ns, &l.items)),
            Err(e) if is_forbidden(&e) => warnings.push(format!(
                "RoleBindings of project {project} not checked: you lack {}",
                Op::new("list", "rolebindings.rbac.authorization.k8s.io").namespace(&ns).permission()
            )),
            Err(e) => warnings
                .push(Op::new("list", "rolebindings.rbac.authorization.k8s.io").namespace(&ns).err(e).to_string()),
        }
    }

    let report = Report {
        kind: "ZenMLAudit",
        generated_at: now.to_string(),
        workspace: scope,
        expiring_within: names::format_duration(args.expiring_within),
        members,
        expiring,
        unmanaged_role_bindings: unmanaged_rbs,
        warnings,
    };
    if s.format != Format::Table {
        for w in &report.warnings {
            warn(w);
        }
        return print_doc(s.format, &report);
    }
    let scope = report.workspace.as_ref().map(|w| format!(" of workspace {w}")).unwrap_or_default();
    println!("Members of {} project(s){scope}:", projects.len());
    if report.members.is_empty() {
        println!("  none");
    } else {
        println!("{}", indent(&member::members_table(&report.members, true)));
    }
    println!();
    println!("Grants expiring within {}:", report.expiring_within);
    if report.expiring.is_empty() {
        println!("  none");
    } else {
        let rows: Vec<Vec<String>> = report
            .expiring
            .iter()
            .map(|e| {
                vec![
                    e.expires_at.clone(),
                    if e.expired { "expired".into() } else { String::new() },
                    e.project.clone(),
                    e.role.clone(),
                    e.subjects.iter().map(names::describe_subject).collect::<Vec<_>>().join(", "),
                    e.binding.clone(),
                ]
            })
            .collect();
        println!("{}", indent(&output::table(&["EXPIRES", "", "PROJECT", "ROLE", "SUBJECTS", "BINDING"], &rows)));
    }
    println!();
    println!("RoleBindings in project namespaces not managed by the operator:");
    if report.unmanaged_role_bindings.is_empty() {
        println!("  none");
    } else {
        let rows: Vec<Vec<String>> = report
            .unmanaged_role_bindings
            .iter()
            .map(|u| vec![u.namespace.clone(), u.name.clone(), u.role_ref.clone(), u.subjects.join(", ")])
            .collect();
        println!("{}", indent(&output::table(&["NAMESPACE", "NAME", "ROLE", "SUBJECTS"], &rows)));
    }
    for w in &report.warnings {
        warn(w);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{RoleRef, Subject as RbacSubject};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use zenml_operator::api::{ProjectRoleBindingSpec, ProjectSpec, SubjectKind};

    #[test]
    fn expiring_grants_soonest_first_within_the_window_and_in_scope() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let b = |name: &str, project: &str, at: Option<&str>| {
            ProjectRoleBinding::new(
                name,
                ProjectRoleBindingSpec {
                    project: project.into(),
                    role: "viewer".into(),
                    subjects: vec![Subject {
                        kind: SubjectKind::User,
                        name: "u".into(),
                        project: None,
                        namespace: None,
                    }],
                    expires_at: at.map(|t| Time(t.parse().unwrap())),
                },
            )
        };
        let bindings = [
            b("later", "p", Some("2026-01-07T00:00:00Z")),
            b("soon", "p", Some("2026-01-02T00:00:00Z")),
            b("past", "p", Some("2025-12-31T00:00:00Z")),
            b("far", "p", Some("2026-02-01T00:00:00Z")),
            b("never", "p", None),
            b("elsewhere", "q", Some("2026-01-02T00:00:00Z")),
        ];
        let projects = [Project::new("p", ProjectSpec::default())];
        let e = expiring(&bindings, &projects, now, Duration::from_secs(7 * 86_400));
        let names: Vec<(&str, bool)> = e.iter().map(|e| (e.binding.as_str(), e.expired)).collect();
        assert_eq!(names, [("past", true), ("soon", false), ("later", false)]);
    }

    #[test]
    fn only_role_bindings_without_the_operator_label_are_unmanaged() {
        let rb = |name: &str, managed: bool| {
            let mut rb = RoleBinding {
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".into(),
                    kind: "ClusterRole".into(),
                    name: "edit".into(),
                },
                subjects: Some(vec![RbacSubject { kind: "User".into(), name: "mallory".into(), ..Default::default() }]),
                ..Default::default()
            };
            rb.metadata.name = Some(name.into());
            if managed {
                rb.metadata.labels =
                    Some([("app.kubernetes.io/managed-by".to_owned(), "zenml-operator".to_owned())].into());
            }
            rb
        };
        let u = unmanaged("p", "p", &[rb("ours", true), rb("sneaky", false)]);
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].name.as_str(), u[0].role_ref.as_str()), ("sneaky", "ClusterRole/edit"));
        assert_eq!(u[0].subjects, ["mallory (User)"]);
    }
}
