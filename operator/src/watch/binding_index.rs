//! Which ProjectRoleBindings name which project, kept from the bindings' watch.
//!
//! A project's reconcile and every change to a project (each of its status writes) need the project's bindings. Found
//! by scanning the binding cache, that is quadratic at scale: every project event cloned and filtered every cached
//! binding (figures in docs/benchmarks.md, "Why the code is shaped so"). The index answers with the names alone; the
//! objects still come from the cache, so it never serves anything the cache does not hold.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use kube::ResourceExt;
use kube::runtime::watcher;

use zenml_api::ProjectRoleBinding;

#[derive(Clone, Default)]
pub struct BindingIndex {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// The project each binding grants in.
    granted_in: Links,
    /// The projects whose ServiceAccounts each binding names as subjects.
    subjects: Links,
    /// A relist in progress: swapped in whole when it is done, as the cache itself is.
    relisting: Option<Vec<ProjectRoleBinding>>,
}

/// Bindings by project, and projects by binding.
#[derive(Default)]
struct Links {
    by_project: HashMap<String, BTreeSet<String>>,
    of: HashMap<String, Vec<String>>,
}

impl Links {
    fn set(&mut self, binding: &str, projects: Vec<String>) {
        self.remove(binding);
        for p in &projects {
            self.by_project.entry(p.clone()).or_default().insert(binding.to_owned());
        }
        if !projects.is_empty() {
            self.of.insert(binding.to_owned(), projects);
        }
    }

    fn remove(&mut self, binding: &str) {
        for p in self.of.remove(binding).unwrap_or_default() {
            if let Some(names) = self.by_project.get_mut(&p) {
                names.remove(binding);
                if names.is_empty() {
                    self.by_project.remove(&p);
                }
            }
        }
    }

    fn get(&self, project: &str) -> Vec<String> {
        self.by_project.get(project).map(|names| names.iter().cloned().collect()).unwrap_or_default()
    }
}

impl Inner {
    fn insert(&mut self, b: &ProjectRoleBinding) {
        let name = b.name_any();
        self.granted_in.set(&name, vec![b.spec.project.clone()]);
        let mut subjects: Vec<String> = zenml_api::resources::binding::subject_projects(b).map(str::to_owned).collect();
        subjects.sort();
        subjects.dedup();
        self.subjects.set(&name, subjects);
    }

    fn remove(&mut self, binding: &str) {
        self.granted_in.remove(binding);
        self.subjects.remove(binding);
    }
}

impl BindingIndex {
    /// Follows one event of the bindings' watch.
    pub fn apply(&self, event: &watcher::Event<ProjectRoleBinding>) {
        let mut inner = self.inner.lock();
        match event {
            watcher::Event::Apply(b) => inner.insert(b),
            watcher::Event::Delete(b) => inner.remove(&b.name_any()),
            watcher::Event::Init => inner.relisting = Some(Vec::new()),
            watcher::Event::InitApply(b) => inner.relisting.get_or_insert_default().push(b.clone()),
            watcher::Event::InitDone => {
                let listed = inner.relisting.take().unwrap_or_default();
                inner.granted_in = Links::default();
                inner.subjects = Links::default();
                for b in &listed {
                    inner.insert(b);
                }
            }
        }
    }

    /// The names of the bindings that name `project`.
    pub fn of(&self, project: &str) -> Vec<String> {
        self.inner.lock().granted_in.get(project)
    }

    /// The names of the bindings that name a ServiceAccount of `project` as a subject: its creation or deletion
    /// decides whether they may bind.
    pub fn naming_subjects_of(&self, project: &str) -> Vec<String> {
        self.inner.lock().subjects.get(project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zenml_api::ProjectRoleBindingSpec;

    fn binding(name: &str, project: &str) -> ProjectRoleBinding {
        ProjectRoleBinding::new(name, ProjectRoleBindingSpec { project: project.into(), ..Default::default() })
    }

    #[test]
    fn follows_applies_moves_deletes_and_relists() {
        let index = BindingIndex::default();
        index.apply(&watcher::Event::Apply(binding("b1", "p")));
        index.apply(&watcher::Event::Apply(binding("b2", "p")));
        index.apply(&watcher::Event::Apply(binding("b3", "q")));
        assert_eq!(index.of("p"), ["b1", "b2"]);
        assert_eq!(index.of("q"), ["b3"]);
        assert!(index.of("none").is_empty());

        // Naming another project moves it; deleting removes it.
        index.apply(&watcher::Event::Apply(binding("b2", "q")));
        index.apply(&watcher::Event::Delete(binding("b3", "q")));
        assert_eq!(index.of("p"), ["b1"]);
        assert_eq!(index.of("q"), ["b2"]);

        // A relist replaces everything, only once it is done.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(binding("b4", "p")));
        assert_eq!(index.of("p"), ["b1"], "a half-done relist is not visible");
        index.apply(&watcher::Event::InitDone);
        assert_eq!(index.of("p"), ["b4"]);
        assert!(index.of("q").is_empty(), "what the relist did not list is gone");
    }

    #[test]
    fn follows_the_projects_whose_service_accounts_a_binding_names() {
        use zenml_api::{Subject, SubjectKind};
        let sa = |project: &str| Subject {
            kind: SubjectKind::ServiceAccount,
            name: "zenml-runner".into(),
            project: Some(project.into()),
            namespace: None,
        };
        let index = BindingIndex::default();
        let mut b = binding("share", "p");
        b.spec.subjects = vec![sa("r"), sa("s"), sa("r")];
        index.apply(&watcher::Event::Apply(b.clone()));
        assert_eq!(
            (index.naming_subjects_of("r"), index.naming_subjects_of("s")),
            (vec!["share".into()], vec!["share".into()])
        );
        b.spec.subjects = vec![sa("s")];
        index.apply(&watcher::Event::Apply(b.clone()));
        assert!(index.naming_subjects_of("r").is_empty());
        index.apply(&watcher::Event::Delete(b));
        assert!(index.naming_subjects_of("s").is_empty() && index.of("p").is_empty());
    }
}
