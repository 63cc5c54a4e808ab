//! A project's `TemplatesReady` condition: what became of each of its workspace's templates.

use super::conditions::{Cond, ConditionType, Reason};
use crate::resources::templates::Templates;

/// A template the operator did not apply in one project namespace, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateProblem {
    pub name: String,
    /// `TemplateConflict`, `TemplateKindNotAllowed`, `TemplateForbidden` or `TemplateRefused`.
    pub reason: Reason,
    pub message: String,
}

/// How many templates are applied: the desired ones the operator had no problem with.
pub fn applied(t: &Templates, problems: &[TemplateProblem]) -> i32 {
    let applied = t.objects.iter().filter(|o| !problems.iter().any(|p| o.metadata.name.as_ref() == Some(&p.name)));
    i32::try_from(applied.count()).unwrap_or(i32::MAX)
}

/// `TemplatesReady`: True when every template the project does not exclude is applied; else False with the first
/// problem's reason, every problem listed with its fix. Exclusions, and exclusions of required templates that were
/// ignored, are said either way.
pub fn condition(t: &Templates, problems: &[TemplateProblem]) -> Cond {
    let mut problems = problems.to_vec();
    problems.extend(t.refused.iter().map(|r| TemplateProblem {
        name: r.split(':').next().unwrap_or_default().to_owned(),
        reason: Reason::TemplateRefused,
        message: format!("{r}; fix the workspace's spec.templates"),
    }));
    let mut notes = Vec::new();
    if !t.excluded.is_empty() {
        notes.push(format!("excluded by spec.excludedTemplates: {}", t.excluded.join(", ")));
    }
    if !t.exclusion_ignored.is_empty() {
        notes.push(format!(
            "required by the workspace, so applied although spec.excludedTemplates names them: {}",
            t.exclusion_ignored.join(", ")
        ));
    }
    let notes = notes.iter().map(|n| format!("; {n}")).collect::<String>();
    if let Some(first) = problems.first() {
        let all: Vec<String> = problems.iter().map(|p| format!("template {}: {}", p.name, p.message)).collect();
        return Cond::fail(ConditionType::TemplatesReady, first.reason, format!("{}{notes}", all.join("; ")));
    }
    if t.objects.is_empty() {
        let msg = format!("no template of the workspace applies to this project{notes}");
        return Cond::ok(ConditionType::TemplatesReady, Reason::NoTemplates, msg);
    }
    let msg = format!("{} templates applied in the project namespace{notes}", t.objects.len());
    Cond::ok(ConditionType::TemplatesReady, Reason::TemplatesApplied, msg)
}

#[cfg(test)]
mod tests {
    use kube::core::DynamicObject;

    use super::*;

    fn templates(names: &[&str]) -> Templates {
        let obj = |n: &str| {
            let mut o =
                DynamicObject::new(n, &kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()));
            o.metadata.name = Some(n.to_owned());
            o
        };
        Templates { objects: names.iter().map(|n| obj(n)).collect(), ..Default::default() }
    }

    #[test]
    fn applied_counts_only_templates_without_a_problem_and_the_first_problem_names_the_reason() {
        let t = templates(&["a", "b", "c"]);
        let problems = vec![
            TemplateProblem { name: "b".into(), reason: Reason::TemplateConflict, message: "someone's".into() },
            TemplateProblem { name: "c".into(), reason: Reason::TemplateKindNotAllowed, message: "no".into() },
        ];
        assert_eq!(applied(&t, &problems), 1);
        let c = condition(&t, &problems);
        assert_eq!((c.ok, c.reason), (false, Reason::TemplateConflict));
        assert!(c.message.contains("template b: someone's") && c.message.contains("template c: no"), "{}", c.message);
    }

    #[test]
    fn all_applied_is_ready_and_says_what_was_excluded() {
        let mut t = templates(&["a"]);
        t.excluded = vec!["b".into()];
        t.exclusion_ignored = vec!["c".into()];
        let c = condition(&t, &[]);
        assert_eq!((c.ok, c.reason), (true, Reason::TemplatesApplied));
        assert!(c.message.contains("excluded by spec.excludedTemplates: b"), "{}", c.message);
        assert!(c.message.contains("required by the workspace"), "{}", c.message);
        assert_eq!(condition(&Templates::default(), &[]).reason, Reason::NoTemplates);
        let refused = Templates { refused: vec!["x: an RBAC object".into()], ..Default::default() };
        assert_eq!(condition(&refused, &[]).reason, Reason::TemplateRefused);
    }
}
