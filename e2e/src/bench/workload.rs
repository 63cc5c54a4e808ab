//! The run's Workspace, Projects and ProjectRoleBindings, and the child objects one project stands for (what the
//! operator's own pure builders make), from which the floor's objects are made.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use zenml_api::resources::project::Children;
use zenml_api::resources::{RoleMap, binding as binding_builder, project as project_builder};
use zenml_api::{
    LimitRangeSpec, NetworkIsolation, Project, ProjectDefaults, ProjectRoleBinding, ProjectRoleBindingSpec,
    ProjectSpec, QuotaSpec, Subject, SubjectKind, Workspace, WorkspaceMember, WorkspaceSpec,
};

use super::audit::Write;
use super::floor::Template;
use super::{BENCH_LABEL, Error, Result};

/// The Workspace, Projects and ProjectRoleBindings of a run, and the children one project stands for.
pub(super) struct Workload {
    pub run: String,
    pub workspace: Workspace,
    pub projects: Vec<Project>,
    pub bindings: Vec<[ProjectRoleBinding; 2]>,
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned()))).collect()
}

fn group(name: &str) -> Subject {
    Subject { kind: SubjectKind::Group, name: name.into(), project: None, namespace: None }
}

impl Workload {
    pub(super) fn new(run: &str, workspace: &str, n: usize) -> Workload {
        let mut ws = Workspace::new(
            workspace,
            WorkspaceSpec {
                display_name: Some("zenml-operator benchmark".into()),
                members: vec![
                    WorkspaceMember { role: "admin".into(), subjects: vec![group("bench-admins")] },
                    WorkspaceMember { role: "viewer".into(), subjects: vec![group("bench-viewers")] },
                ],
                project_defaults: Some(ProjectDefaults {
                    quota: Some(QuotaSpec {
                        hard: quantities(&[("requests.cpu", "2"), ("requests.memory", "4Gi"), ("pods", "20")]),
                    }),
                    limit_range: Some(LimitRangeSpec {
                        default_request: quantities(&[("cpu", "100m"), ("memory", "128Mi")]),
                        default: quantities(&[("cpu", "500m"), ("memory", "512Mi")]),
                        ..Default::default()
                    }),
                    network_isolation: Some(NetworkIsolation::Project),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        ws.labels_mut().insert(BENCH_LABEL.into(), run.into());
        let mut f = Workload { run: run.into(), workspace: ws, projects: Vec::new(), bindings: Vec::new() };
        for i in 0..n {
            let (p, b) = f.project(&format!("{run}-{i:05}"));
            f.projects.push(p);
            f.bindings.push(b);
        }
        f
    }

    /// A Project with two ProjectRoleBindings (developer: a user; viewer: a group).
    pub(super) fn project(&self, name: &str) -> (Project, [ProjectRoleBinding; 2]) {
        let mut p = Project::new(
            name,
            ProjectSpec {
                workspace: self.workspace.name_any(),
                display_name: Some(format!("Benchmark project {name}")),
                ..Default::default()
            },
        );
        p.labels_mut().insert(BENCH_LABEL.into(), self.run.clone());
        let binding = |suffix: &str, role: &str, subject: Subject| {
            let mut b = ProjectRoleBinding::new(
                &format!("{name}-{suffix}"),
                ProjectRoleBindingSpec {
                    project: name.into(),
                    role: role.into(),
                    subjects: vec![subject],
                    expires_at: None,
                },
            );
            b.labels_mut().insert(BENCH_LABEL.into(), self.run.clone());
            b
        };
        let dev = Subject {
            kind: SubjectKind::User,
            name: format!("dev@{name}.example.com"),
            project: None,
            namespace: None,
        };
        (p, [binding("dev", "developer", dev), binding("view", "viewer", group(&format!("{name}-viewers")))])
    }

    /// What the operator's builders make for project `p` and its bindings `bs`: the project's children and the
    /// bindings' RoleBindings.
    pub(super) fn desired(&self, p: &Project, bs: &[ProjectRoleBinding; 2]) -> Result<(Children, Vec<RoleBinding>)> {
        let mut p = p.clone();
        p.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
        let mut bs = bs.clone();
        for b in &mut bs {
            b.metadata.uid = Some("00000000-0000-0000-0000-000000000001".into());
        }
        let ws = &self.workspace;
        let granted = project_builder::requested_quota(&p, ws);
        let roles = RoleMap::default();
        let now = Timestamp::now();
        let refs: Vec<&ProjectRoleBinding> = bs.iter().collect();
        let c = project_builder::desired(&p, ws, &granted, &roles, &Default::default(), &refs, now);
        let rbs = bs
            .iter()
            .map(|b| {
                binding_builder::desired(b, Some(&p), Some(ws), true, &roles, now, &BTreeMap::new())
                    .map_err(|r| Error::from(format!("the benchmark's binding is refused: {}", r.reason())))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((c, rbs))
    }

    /// What the operator makes for one project, from its own pure builders (the namespace first).
    pub(super) fn templates(&self) -> Result<Vec<Template>> {
        let (p, bs) = self.project(&format!("{}-template", self.run));
        let (c, rbs) = self.desired(&p, &bs)?;
        let mut out = vec![Template::of(&c.namespace, &p)?];
        if let Some(q) = &c.quota {
            out.push(Template::of(q, &p)?);
        }
        if let Some(l) = &c.limit_range {
            out.push(Template::of(l, &p)?);
        }
        if let Some(n) = &c.network_policy {
            out.push(Template::of(n, &p)?);
        }
        out.push(Template::of(&c.runner, &p)?);
        out.push(Template::of(&c.delegation, &p)?);
        for rb in c.role_bindings.iter().chain(&rbs) {
            out.push(Template::of(rb, &p)?);
        }
        Ok(out)
    }

    /// Whether an audited write is to one of this run's CRs or project namespaces.
    pub(super) fn owns(&self, w: &Write) -> bool {
        w.name.starts_with(&self.run) || w.namespace.starts_with(&self.run)
    }
}

#[cfg(test)]
mod tests {
    use zenml_api::labels;

    use super::super::floor::kinds_of;
    use super::*;

    #[test]
    fn one_project_stands_for_twelve_children_and_the_floor_strips_the_operators_marks() {
        let f = Workload::new("bench-x", "bench-x", 2);
        let t = f.templates().unwrap();
        assert_eq!(
            kinds_of(&t),
            "Namespace 1, ResourceQuota 1, LimitRange 1, NetworkPolicy 1, ServiceAccount 1, Role 1, RoleBinding 6"
        );
        let rb = t.iter().find(|t| t.kind() == "RoleBinding" && t.object.name_any() == "zenml-runner").unwrap();
        let o = rb.instantiate("floor-1", "bench-x");
        assert_eq!(o.metadata.namespace.as_deref(), Some("floor-1"));
        assert_eq!(o.data["subjects"][0]["namespace"], "floor-1");
        assert!(o.metadata.owner_references.is_none());
        let marks = o.metadata.labels.unwrap();
        assert_eq!(marks.get(BENCH_LABEL).map(String::as_str), Some("bench-x"));
        assert!(marks.keys().all(|k| !k.starts_with("zenml.io/") && k != labels::MANAGED_BY), "{marks:?}");
        let ns = t[0].instantiate("floor-1", "bench-x");
        assert_eq!(ns.metadata.name.as_deref(), Some("floor-1"));
        assert_eq!(ns.metadata.namespace, None);
    }
}
