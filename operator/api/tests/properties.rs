//! Property tests of the pure builders over arbitrary input: no panic, output always valid Kubernetes objects,
//! always labelled as ours, never a protected namespace, never a grant beyond the budget.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use proptest::prelude::*;
use zenml_api::resources::budget::{self, Candidate, Verdict};
use zenml_api::resources::validate::{
    is_dns_label, is_dns_subdomain, is_label_value, is_protected_namespace, is_qualified_name, project_name_problem,
};
use zenml_api::resources::{RoleMap, binding, desired, project::requested_quota, quantity};
use zenml_api::*;

fn label_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
        "[a-z]{1,8}\\.[a-z]{2,5}/[A-Za-z0-9][A-Za-z0-9._-]{0,20}[A-Za-z0-9]",
        Just("pod-security.kubernetes.io/enforce".to_owned()),
    ]
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9]", "[A-Za-z0-9][A-Za-z0-9._-]{0,40}[A-Za-z0-9]"]
}

fn quantity_value() -> impl Strategy<Value = Quantity> {
    prop_oneof!["[0-9]{1,4}", "[0-9]{1,3}m", "[0-9]{1,3}(Ki|Mi|Gi)", "[0-9]\\.[0-9]{1,2}", ".{0,6}"].prop_map(Quantity)
}

fn resources() -> impl Strategy<Value = ResourceList> {
    let key = prop_oneof![Just("requests.cpu"), Just("requests.memory"), Just("pods"), Just("requests.nvidia.com/gpu")];
    prop::collection::btree_map(key.prop_map(str::to_owned), quantity_value(), 0..4)
}

fn subject() -> impl Strategy<Value = Subject> {
    (0..3u8, "[a-z][a-z0-9.@-]{0,20}", prop::option::of("[a-z][a-z0-9-]{0,20}")).prop_map(
        |(k, name, project)| match k {
            0 => Subject { kind: SubjectKind::User, name, project: None, namespace: None },
            1 => Subject { kind: SubjectKind::Group, name, project: None, namespace: None },
            _ => Subject {
                kind: SubjectKind::ServiceAccount,
                name,
                project: project.or(Some("other".into())),
                namespace: None,
            },
        },
    )
}

fn role() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("admin"),
        Just("developer"),
        Just("contributor"),
        Just("viewer"),
        Just("runner"),
        Just("cluster-admin")
    ]
    .prop_map(str::to_owned)
}

fn isolation() -> impl Strategy<Value = Option<NetworkIsolation>> {
    prop::option::of(prop_oneof![
        Just(NetworkIsolation::None),
        Just(NetworkIsolation::Project),
        Just(NetworkIsolation::Workspace)
    ])
}

prop_compose! {
    fn workspace()(
        members in prop::collection::vec((role(), prop::collection::vec(subject(), 1..3)), 0..4),
        quota in resources(),
        limits in resources(),
        isolation in isolation(),
        labels in prop::collection::btree_map(label_key(), label_value(), 0..3),
    ) -> Workspace {
        let mut w = Workspace::new("ws", WorkspaceSpec {
            members: members.into_iter().map(|(role, subjects)| WorkspaceMember { role, subjects }).collect(),
            project_defaults: Some(ProjectDefaults {
                quota: Some(QuotaSpec { hard: quota }),
                limit_range: Some(LimitRangeSpec { default_request: limits, ..Default::default() }),
                network_isolation: isolation,
                namespace_labels: labels,
                ..Default::default()
            }),
            roles: vec![CustomRole { name: "runner".into(), cluster_role: "zenml-runner".into() }],
            ..Default::default()
        });
        w.metadata.uid = Some("w".into());
        w
    }
}

prop_compose! {
    fn project()(
        name in "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
        id in prop::option::of("[A-Za-z0-9_-]{1,63}"),
        quota in prop::option::of(resources()),
        isolation in isolation(),
        labels in prop::collection::btree_map(label_key(), label_value(), 0..3),
        annotations in prop::collection::btree_map(label_key(), ".{0,30}", 0..3),
        runner in prop::option::of("[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?){0,2}"),
        display in ".{0,40}",
    ) -> Project {
        let mut p = Project::new(&name, ProjectSpec {
            workspace: "ws".into(),
            display_name: Some(display),
            project_id: id,
            quota: quota.map(|hard| QuotaSpec { hard }),
            network_isolation: isolation,
            namespace_labels: labels,
            namespace_annotations: annotations,
            runner: Some(RunnerSpec { service_account_name: runner, annotations: BTreeMap::new() }),
            ..Default::default()
        });
        p.metadata.uid = Some("p".into());
        p
    }
}

fn check_meta(meta: &ObjectMeta, project: &str) -> Result<(), TestCaseError> {
    let name = meta.name.as_deref().unwrap_or_default();
    prop_assert!(is_dns_subdomain(name), "invalid name {}", name);
    for (k, v) in meta.labels.iter().flatten() {
        prop_assert!(is_qualified_name(k), "invalid label key {}", k);
        prop_assert!(is_label_value(v), "invalid label value {:?} for {}", v, k);
    }
    let labels = meta.labels.clone().unwrap_or_default();
    prop_assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("zenml-operator"));
    prop_assert_eq!(labels.get("zenml.io/project").map(String::as_str), Some(project));
    prop_assert!(labels.contains_key("zenml.io/workspace"));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_name_that_passes_is_a_namespace_name_and_never_protected(
        name in prop_oneof![".{0,70}", "kube-[a-z]{0,5}", Just("default".to_owned()), "[a-z0-9-]{1,64}"]
    ) {
        if project_name_problem(&name, &[]).is_none() {
            prop_assert!(is_dns_label(&name));
            prop_assert!(!is_protected_namespace(&name, &[]));
        }
    }

    #[test]
    fn children_are_valid_labelled_objects_in_the_project_namespace(
        p in project(),
        w in workspace(),
        bindings in prop::collection::vec((role(), prop::collection::vec(subject(), 1..3), any::<bool>()), 0..4),
    ) {
        let name = p.metadata.name.clone().unwrap();
        let bindings: Vec<ProjectRoleBinding> = bindings
            .into_iter()
            .enumerate()
            .map(|(i, (role, subjects, expired))| {
                let expires_at = expired.then_some(Time(Timestamp::UNIX_EPOCH));
                ProjectRoleBinding::new(&format!("b{i}"), ProjectRoleBindingSpec { project: name.clone(), role, subjects, expires_at })
            })
            .collect();
        let refs: Vec<&ProjectRoleBinding> = bindings.iter().collect();
        let c = desired(&p, &w, &requested_quota(&p, &w), &RoleMap::default(), &Default::default(), &refs, Timestamp::now());

        prop_assert_eq!(c.namespace.metadata.name.as_deref(), Some(name.as_str()));
        check_meta(&c.namespace.metadata, &name)?;
        let metas: Vec<&ObjectMeta> = c
            .quota.iter().map(|o| o.meta())
            .chain(c.limit_range.iter().map(|o| o.meta()))
            .chain(c.network_policy.iter().map(|o| o.meta()))
            .chain([c.runner.meta(), c.delegation.meta()])
            .chain(c.role_bindings.iter().map(|o| o.meta()))
            .collect();
        for m in metas {
            prop_assert_eq!(m.namespace.as_deref(), Some(name.as_str()));
            check_meta(m, &name)?;
        }
        // Only allowed roles are ever bound: never cluster-admin, whatever the input says.
        let allowed = ["admin", "edit", "view", "zenml-project-contributor", "zenml-runner", "zenml-project-admin"];
        for rb in &c.role_bindings {
            prop_assert!(allowed.contains(&rb.role_ref.name.as_str()), "bound {}", rb.role_ref.name);
        }
        let json = serde_json::to_string(&c.role_bindings).unwrap();
        let back: Vec<k8s_openapi::api::rbac::v1::RoleBinding> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&back, &c.role_bindings);
        for b in &bindings {
            // Every subject's project exists, in the same workspace.
            let peers = binding::subject_projects(b)
                .map(|n| (n.to_owned(), binding::Peer { uid: format!("uid-{n}"), workspace: w.name_any(), trusts_back: false }))
                .collect();
            if let Ok(rb) = binding::desired(b, Some(&p), Some(&w), true, &RoleMap::default(), Timestamp::now(), &peers) {
                check_meta(&rb.metadata, &name)?;
                prop_assert!(allowed.contains(&rb.role_ref.name.as_str()));
            }
        }
    }

    #[test]
    fn fresh_projects_are_never_granted_beyond_the_budget(
        budget in resources(),
        asks in prop::collection::vec((resources(), 0i64..100, prop::option::of("[a-z]{1,3}")), 0..8),
        max in prop::option::of(0i32..6),
    ) {
        let candidates: Vec<Candidate> = asks
            .into_iter()
            .enumerate()
            .map(|(i, (requested, age, id))| Candidate {
                name: format!("p{i}"),
                uid: format!("u{i}"),
                created: Some(Time(Timestamp::from_second(1_700_000_000 + age).unwrap())),
                project_id: id,
                requested,
                ..Default::default()
            })
            .collect();
        let n = candidates.len();
        let d = budget::decide(Some(&budget), max, candidates, &[]);
        prop_assert_eq!(d.verdicts.len(), n);
        // An unreadable budget refuses every project; a readable one is never exceeded.
        let Ok(budget_m) = quantity::amounts(&budget) else {
            let all_refused = d.verdicts.values().all(|v| matches!(v, Verdict::Refuse { .. }));
            prop_assert!(all_refused);
            return Ok(());
        };
        let mut sum: BTreeMap<String, i128> = BTreeMap::new();
        for v in d.verdicts.values() {
            if let Verdict::Provision { quota, .. } = v {
                for (k, q) in quota {
                    if budget_m.contains_key(k) {
                        let granted = quantity::parse(&q.0);
                        prop_assert!(granted.is_ok(), "{}: granted {:?}, which does not parse", k, q.0);
                        *sum.entry(k.clone()).or_default() += granted.unwrap().0;
                    }
                }
            }
        }
        for (k, total) in sum {
            prop_assert!(total <= budget_m[&k].0, "{}: granted {} of {}", k, total, budget_m[&k].0);
        }
        if let Some(max) = max {
            let provisioned = d.verdicts.values().filter(|v| matches!(v, Verdict::Provision { .. })).count();
            prop_assert!(provisioned <= max as usize);
        }
    }
}
