//! `kubectl zenml member add|remove|list`: project roles through ProjectRoleBindings.
//!
//! `add` makes one ProjectRoleBinding per (project, role, subject), named by [`names::binding_name`]: each grant has
//! its own `expiresAt`, and is revoked by deleting it without touching anyone else. `remove` takes the subject out
//! of every binding of that role in the project: a binding that names only them is deleted, one that also names
//! others (written by hand or by GitOps) keeps the others.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::wait::await_condition;
use kube::{Api, ResourceExt};
use serde::Serialize;
use zenml_api::{BuiltinRole, Project, ProjectRoleBinding, ProjectRoleBindingSpec, Subject, SubjectKind, Workspace};

use super::{info, warn};
use crate::cli::{AddArgs, RemoveArgs, SubjectArgs};
use crate::error::{Error, InvalidArgument, Op, Result, WorkspaceGrant, code, is_forbidden};
use crate::names;
use crate::output::{self, Format, print_doc};
use crate::session::{BINDINGS, Session, WORKSPACES};

/// Label on the bindings this plugin makes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kubectl-zenml");

/// Someone's role in a project, and what grants it.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub project: String,
    pub workspace: String,
    pub role: String,
    pub subject: Subject,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `True`, `False (Expired)`, ... for a binding; `True` for a workspace member.
    pub status: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Source {
    /// `ProjectRoleBinding` or `Workspace` (its `spec.members`).
    pub kind: String,
    pub name: String,
}

/// Subjects are the same grantee; a ServiceAccount's `project` and `namespace` name the same namespace.
pub fn same_subject(a: &Subject, b: &Subject) -> bool {
    let place = |s: &Subject| s.project.clone().or_else(|| s.namespace.clone());
    a.kind == b.kind && a.name == b.name && (a.kind != SubjectKind::ServiceAccount || place(a) == place(b))
}

/// Everyone with a role in `project`: from `bindings` (any, filtered here) and the workspace's members.
pub fn members(project: &Project, bindings: &[ProjectRoleBinding], workspace: Option<&Workspace>) -> Vec<Member> {
    let name = project.name_any();
    let mut out = Vec::new();
    for b in bindings.iter().filter(|b| b.spec.project == name) {
        let conds = b.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        for subject in &b.spec.subjects {
            out.push(Member {
                project: name.clone(),
                workspace: project.spec.workspace.clone(),
                role: b.spec.role.clone(),
                subject: subject.clone(),
                source: Source { kind: "ProjectRoleBinding".into(), name: b.name_any() },
                expires_at: b.spec.expires_at.as_ref().map(|t| t.0.to_string()),
                status: output::ready_cell(conds, b.metadata.generation),
            });
        }
    }
    for subject in &project.spec.owners {
        out.push(Member {
            project: name.clone(),
            workspace: project.spec.workspace.clone(),
            role: "admin".into(),
            subject: subject.clone(),
            source: Source { kind: "Project owner".into(), name: name.clone() },
            expires_at: None,
            status: "True".into(),
        });
    }
    if let Some(ws) = workspace {
        for m in &ws.spec.members {
            for subject in &m.subjects {
                out.push(Member {
                    project: name.clone(),
                    workspace: project.spec.workspace.clone(),
                    role: m.role.clone(),
                    subject: subject.clone(),
                    source: Source { kind: "Workspace".into(), name: ws.name_any() },
                    expires_at: None,
                    status: "True".into(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.role, &a.subject, &a.source.name).cmp(&(&b.role, &b.subject, &b.source.name)));
    out
}

/// Members of one project, read from the cluster; what cannot be read is said in `warnings`.
pub async fn members_of_project(s: &Session, project: &Project, warnings: &mut Vec<String>) -> Vec<Member> {
    let name = project.name_any();
    let lp = ListParams::default().fields(&format!("spec.project={name}"));
    let bindings = match s.bindings().list(&lp).await {
        Ok(l) => l.items,
        Err(e) => {
            warnings.push(format!("bindings not shown: {}", Op::new("list", BINDINGS).err(e)));
            Vec::new()
        }
    };
    let workspace = match s.workspaces().get_opt(&project.spec.workspace).await {
        Ok(w) => w,
        Err(e) => {
            warnings.push(format!(
                "workspace members not shown: {}",
                Op::new("get", WORKSPACES).name(&project.spec.workspace).err(e)
            ));
            None
        }
    };
    members(project, &bindings, workspace.as_ref())
}

pub fn members_table(members: &[Member], with_project: bool) -> String {
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let mut row = Vec::new();
            if with_project {
                row.extend([m.project.clone(), m.workspace.clone()]);
            }
            row.extend([
                m.role.clone(),
                names::describe_subject(&m.subject),
                format!("{}/{}", m.source.kind, m.source.name),
                output::dash(m.expires_at.as_deref()),
                m.status.clone(),
            ]);
            row
        })
        .collect();
    let mut headers = Vec::new();
    if with_project {
        headers.extend(["PROJECT", "WORKSPACE"]);
    }
    headers.extend(["ROLE", "SUBJECT", "GRANTED BY", "EXPIRES", "IN FORCE"]);
    output::table(&headers, &rows)
}

/// The subject named on the command line, with a ServiceAccount's project resolved to its Kubernetes name.
async fn subject(s: &Session, args: &SubjectArgs, project: &Project) -> Result<Subject> {
    let mut subject = names::subject(args.user.as_deref(), args.group.as_deref(), args.service_account.as_deref())?;
    if let Some(reference) = subject.project.clone() {
        let owner = s
            .resolve_project(&reference, Some(&project.spec.workspace))
            .await
            .map_err(|e| e.given_by("--service-account"))?;
        subject.project = Some(owner.name_any());
    }
    Ok(subject)
}

/// Refuses a role the project's workspace does not allow (when the workspace can be read).
async fn check_role(s: &Session, role: &str, project: &Project) -> Result<()> {
    let valid = role.len() <= 63
        && role.starts_with(|c: char| c.is_ascii_lowercase())
        && !role.ends_with('-')
        && role.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        let problem = "is not a role name: lowercase letters, digits and '-', starting with a letter";
        return Err(InvalidArgument::new("--role", role, problem).into());
    }
    if BuiltinRole::from_name(role).is_some() {
        return Ok(());
    }
    let ws = &project.spec.workspace;
    match s.workspaces().get_opt(ws).await {
        Ok(Some(w)) if !w.spec.roles.iter().any(|r| r.name == role) => {
            let mut allowed: Vec<&str> = BuiltinRole::ALL.iter().map(|r| r.name()).collect();
            allowed.extend(w.spec.roles.iter().map(|r| r.name.as_str()));
            let problem = format!("is not allowed in workspace {ws:?}: use one of {}", allowed.join(", "));
            Err(InvalidArgument::new("--role", role, problem).into())
        }
        _ => Ok(()),
    }
}

/// `member add`: makes (or updates) the subject's own ProjectRoleBinding, unless another binding already grants the
/// role for good, then waits until it is in force.
pub async fn add(s: &Session, args: &AddArgs) -> Result<()> {
    let role = args.role.as_str();
    let (project, _) = s.active_project(args.project.as_deref()).await?;
    let pname = project.name_any();
    check_role(s, role, &project).await?;
    let subject = subject(s, &args.subject, &project).await?;
    let expires = expiry(args.expires_at.as_deref(), Timestamp::now())?;
    let grant =
        Grant { project: pname, role: role.to_owned(), who: names::describe_subject(&subject), subject, expires };

    if let Some(other) = granted_for_good_elsewhere(s, &grant).await? {
        info(
            s.format,
            format!(
                "{} already has role {role} in project {} (ProjectRoleBinding {}); nothing to do.",
                grant.who,
                grant.project,
                other.name_any()
            ),
        );
        return print_binding(s, &other);
    }
    let binding = upsert(s, &grant).await?;
    if args.timeout.is_zero() {
        return print_binding(s, &binding);
    }
    let bound = wait_bound(s, &binding.name_any(), args.timeout).await?;
    print_binding(s, &bound)?;
    let conds = bound.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let (status, reason, message) = output::ready(conds, bound.metadata.generation);
    if status != "True" {
        return Err(Error::NotInForce { reason, message });
    }
    info(
        s.format,
        format!(
            "In force: RoleBinding {} in namespace {}.",
            bound.status.and_then(|s| s.role_binding).unwrap_or_default(),
            grant.project
        ),
    );
    Ok(())
}

/// One subject's role in one project, as `member add` was asked for it.
struct Grant {
    /// The project's Kubernetes name.
    project: String,
    role: String,
    subject: Subject,
    /// The subject as messages name it.
    who: String,
    expires: Option<Time>,
}

impl Grant {
    /// The name of the subject's own binding for this grant.
    fn binding_name(&self) -> String {
        names::binding_name(&self.project, &self.role, &self.subject)
    }

    fn until(&self) -> String {
        self.expires.as_ref().map(|t| format!(" until {}", t.0)).unwrap_or_default()
    }
}

/// `--expires-at`, which must be an RFC 3339 time after `now`.
fn expiry(expires_at: Option<&str>, now: Timestamp) -> Result<Option<Time>, InvalidArgument> {
    let Some(t) = expires_at else { return Ok(None) };
    let ts = Timestamp::from_str(t).map_err(|e| {
        InvalidArgument::new("--expires-at", t, format!("is not an RFC 3339 time (e.g. 2026-12-31T18:00:00Z): {e}"))
    })?;
    if ts <= now {
        return Err(InvalidArgument::new("--expires-at", t, "is in the past"));
    }
    Ok(Some(Time(ts)))
}

/// Another binding (someone else's, not the subject's own) that grants the same role without an end, if one can be
/// seen: then there is nothing to add.
async fn granted_for_good_elsewhere(s: &Session, grant: &Grant) -> Result<Option<ProjectRoleBinding>> {
    let own = grant.binding_name();
    let lp = ListParams::default().fields(&format!("spec.project={},spec.role={}", grant.project, grant.role));
    let existing = match s.bindings().list(&lp).await {
        Ok(l) => l.items,
        Err(e) if is_forbidden(&e) => Vec::new(),
        Err(e) => return Err(Op::new("list", BINDINGS).err(e)),
    };
    Ok(existing.into_iter().find(|b| {
        b.name_any() != own
            && b.spec.expires_at.is_none()
            && b.spec.subjects.iter().any(|x| same_subject(x, &grant.subject))
    }))
}

/// Creates the subject's own binding for `grant`, or brings an existing one to it; says which it did.
async fn upsert(s: &Session, grant: &Grant) -> Result<ProjectRoleBinding> {
    let name = grant.binding_name();
    let api = s.bindings();
    let (who, role, pname, until) = (&grant.who, &grant.role, &grant.project, grant.until());
    let names_subject = |b: &ProjectRoleBinding| b.spec.subjects.iter().any(|x| same_subject(x, &grant.subject));
    match api.get_opt(&name).await.map_err(|e| Op::new("get", BINDINGS).name(&name).err(e))? {
        Some(mut mine) if mine.spec.expires_at != grant.expires || !names_subject(&mine) => {
            mine.spec.expires_at = grant.expires.clone();
            if !names_subject(&mine) {
                mine.spec.subjects.push(grant.subject.clone());
            }
            let updated = api
                .replace(&name, &PostParams::default(), &mine)
                .await
                .map_err(|e| Op::new("update", BINDINGS).name(&name).err(e))?;
            let msg = format!("Updated ProjectRoleBinding {name}: {who} has role {role} in project {pname}{until}.");
            info(s.format, msg);
            Ok(updated)
        }
        Some(mine) => {
            info(s.format, format!("{who} already has role {role} in project {pname} (ProjectRoleBinding {name})."));
            Ok(mine)
        }
        None => {
            let mut b = ProjectRoleBinding::new(
                &name,
                ProjectRoleBindingSpec {
                    project: pname.clone(),
                    role: role.clone(),
                    subjects: vec![grant.subject.clone()],
                    expires_at: grant.expires.clone(),
                },
            );
            b.metadata.labels = Some(BTreeMap::from([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())]));
            let created = api
                .create(&PostParams::default(), &b)
                .await
                .map_err(|e| Op::new("create", BINDINGS).name(&name).err(e))?;
            let msg = format!("Created ProjectRoleBinding {name}: {who} gets role {role} in project {pname}{until}.");
            info(s.format, msg);
            Ok(created)
        }
    }
}

fn print_binding(s: &Session, b: &ProjectRoleBinding) -> Result<()> {
    if s.format != Format::Table {
        print_doc(s.format, &output::object_doc(b))?;
    }
    Ok(())
}

/// Reasons a binding will not be in force without a change.
const STUCK: &[&str] = &["RoleNotAllowed", "Expired", "BindForbidden"];

async fn wait_bound(s: &Session, name: &str, timeout: Duration) -> Result<ProjectRoleBinding> {
    let settled = |b: Option<&ProjectRoleBinding>| {
        b.is_none_or(|b| {
            let conds = b.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
            let (status, reason, _) = output::ready(conds, b.metadata.generation);
            status == "True" || (status == "False" && STUCK.contains(&reason.as_str()))
        })
    };
    let _ = tokio::time::timeout(timeout, await_condition(s.bindings(), name, settled)).await;
    s.bindings()
        .get_opt(name)
        .await
        .map_err(|e| Op::new("get", BINDINGS).name(name).err(e))?
        .ok_or_else(|| Error::DeletedWhileWaiting { kind: "ProjectRoleBinding", name: name.to_owned() })
}

pub async fn remove(s: &Session, args: &RemoveArgs) -> Result<()> {
    let role = args.role.as_str();
    let (project, _) = s.active_project(args.project.as_deref()).await?;
    let pname = project.name_any();
    let subject = subject(s, &args.subject, &project).await?;
    let who = names::describe_subject(&subject);
    let api = s.bindings();
    let lp = ListParams::default().fields(&format!("spec.project={pname},spec.role={role}"));
    let holding: Vec<String> = api
        .list(&lp)
        .await
        .map_err(|e| Op::new("list", BINDINGS).err(e))?
        .items
        .iter()
        .filter(|b| b.spec.subjects.iter().any(|x| same_subject(x, &subject)))
        .map(|b| b.name_any())
        .collect();
    let via_workspace = match s.workspaces().get_opt(&project.spec.workspace).await {
        Ok(Some(w)) => {
            w.spec.members.iter().any(|m| m.role == role && m.subjects.iter().any(|x| same_subject(x, &subject)))
        }
        _ => false,
    };
    let ws_grant = via_workspace.then(|| WorkspaceGrant {
        who: who.clone(),
        role: role.to_owned(),
        workspace: project.spec.workspace.clone(),
    });
    if holding.is_empty() {
        return Err(match ws_grant {
            Some(grant) => Error::GrantedByWorkspace { who, project: pname, grant },
            None => Error::NoSuchGrant { who, role: role.to_owned(), project: pname },
        });
    }
    let mut done = Vec::new();
    for name in holding {
        done.push(remove_from(&api, &name, &subject).await?);
    }
    if s.format != Format::Table {
        print_doc(
            s.format,
            &serde_json::json!({"kind": "MemberRemoval", "project": pname, "role": role, "subject": subject, "bindings": done}),
        )?;
    }
    for d in &done {
        let what = match d.action {
            "deleted" => format!("deleted ProjectRoleBinding {}", d.name),
            "updated" => format!(
                "removed them from ProjectRoleBinding {}, which keeps its {} other subject(s)",
                d.name, d.remaining
            ),
            _ => format!("ProjectRoleBinding {} no longer names them", d.name),
        };
        info(s.format, format!("{who}: role {role} in project {pname} revoked: {what}."));
    }
    if let Some(grant) = ws_grant {
        warn(grant.to_string());
    }
    Ok(())
}

#[derive(Serialize)]
struct Removal {
    name: String,
    /// `deleted`, `updated` or `gone`.
    action: &'static str,
    remaining: usize,
}

/// Takes `subject` out of binding `name`, deleting it when no one else is left; retries on a concurrent change.
async fn remove_from(api: &Api<ProjectRoleBinding>, name: &str, subject: &Subject) -> Result<Removal> {
    for _ in 0..5 {
        let Some(mut b) = api.get_opt(name).await.map_err(|e| Op::new("get", BINDINGS).name(name).err(e))? else {
            return Ok(Removal { name: name.into(), action: "gone", remaining: 0 });
        };
        b.spec.subjects.retain(|x| !same_subject(x, subject));
        let rv = b.resource_version();
        let result = if b.spec.subjects.is_empty() {
            let dp = DeleteParams {
                preconditions: Some(Preconditions { resource_version: rv, uid: None }),
                ..Default::default()
            };
            api.delete(name, &dp).await.map(|_| Removal { name: name.into(), action: "deleted", remaining: 0 })
        } else {
            let remaining = b.spec.subjects.len();
            api.replace(name, &PostParams::default(), &b).await.map(|_| Removal {
                name: name.into(),
                action: "updated",
                remaining,
            })
        };
        match result {
            Ok(r) => return Ok(r),
            Err(e) if code(&e) == Some(409) => continue,
            Err(e) if code(&e) == Some(404) => return Ok(Removal { name: name.into(), action: "gone", remaining: 0 }),
            Err(e) => return Err(Op::new("update", BINDINGS).name(name).err(e)),
        }
    }
    Err(Error::KeptChanging(name.to_owned()))
}

pub async fn list(s: &Session, project: Option<&str>) -> Result<()> {
    let (project, _) = s.active_project(project).await?;
    let mut warnings = Vec::new();
    let members = members_of_project(s, &project, &mut warnings).await;
    for w in &warnings {
        warn(w);
    }
    if s.format != Format::Table {
        return print_doc(
            s.format,
            &serde_json::json!({
                "kind": "MemberList",
                "project": project.name_any(),
                "projectId": project.spec.project_id,
                "workspace": project.spec.workspace,
                "items": members,
            }),
        );
    }
    if members.is_empty() {
        println!("No members in project {}.", project.name_any());
    } else {
        println!("{}", members_table(&members, false));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zenml_api::{ProjectSpec, WorkspaceMember, WorkspaceSpec};

    fn user(n: &str) -> Subject {
        Subject { kind: SubjectKind::User, name: n.into(), project: None, namespace: None }
    }

    #[test]
    fn service_accounts_match_by_project_or_namespace() {
        let sa = |p: Option<&str>, ns: Option<&str>| Subject {
            kind: SubjectKind::ServiceAccount,
            name: "runner".into(),
            project: p.map(Into::into),
            namespace: ns.map(Into::into),
        };
        assert!(same_subject(&sa(Some("a"), None), &sa(None, Some("a"))));
        assert!(!same_subject(&sa(Some("a"), None), &sa(Some("b"), None)));
        assert!(same_subject(&user("x"), &user("x")));
        assert!(!same_subject(&user("x"), &Subject { kind: SubjectKind::Group, ..user("x") }));
    }

    #[test]
    fn expiry_must_be_an_rfc3339_time_in_the_future() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(expiry(None, now), Ok(None));
        let later = expiry(Some("2026-12-31T18:00:00Z"), now).unwrap().unwrap();
        assert_eq!(later.0.to_string(), "2026-12-31T18:00:00Z");
        let past = expiry(Some("2001-01-01T00:00:00Z"), now).unwrap_err();
        assert_eq!(past.to_string(), "--expires-at \"2001-01-01T00:00:00Z\" is in the past");
        let garbled = expiry(Some("tomorrow"), now).unwrap_err();
        assert_eq!(garbled.flag, "--expires-at");
        assert!(garbled.to_string().contains("is not an RFC 3339 time"), "{garbled}");
    }

    #[test]
    fn members_come_from_bindings_of_the_project_and_the_workspace() {
        let p = Project::new("fraud", ProjectSpec { workspace: "ml".into(), ..Default::default() });
        let b = |name: &str, project: &str, role: &str, who: &str| {
            ProjectRoleBinding::new(
                name,
                ProjectRoleBindingSpec {
                    project: project.into(),
                    role: role.into(),
                    subjects: vec![user(who)],
                    expires_at: None,
                },
            )
        };
        let ws = Workspace::new(
            "ml",
            WorkspaceSpec {
                members: vec![WorkspaceMember { role: "admin".into(), subjects: vec![user("boss")] }],
                ..Default::default()
            },
        );
        let m = members(&p, &[b("b1", "fraud", "viewer", "alice"), b("b2", "other", "admin", "eve")], Some(&ws));
        let got: Vec<(&str, &str, &str)> =
            m.iter().map(|m| (m.role.as_str(), m.subject.name.as_str(), m.source.kind.as_str())).collect();
        assert_eq!(got, [("admin", "boss", "Workspace"), ("viewer", "alice", "ProjectRoleBinding")]);
        assert_eq!(m[1].status, "Unknown (Pending)");
    }
}
