//! Which ProjectRoleBindings name which project, kept from the bindings' watch.
//!
//! A project's reconcile and every change to a project (each of its status writes) need the project's bindings. Found
//! by scanning the binding cache, that is quadratic at scale: at 5000 projects with two bindings each, every one of
//! the ~20000 project events cloned and filtered all 10000 cached bindings. The index answers with the names alone;
//! the objects still come from the cache, so it never serves anything the cache does not hold.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::watcher;

use crate::api::ProjectRoleBinding;

#[derive(Clone, Default)]
pub struct BindingIndex {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    by_project: HashMap<String, BTreeSet<String>>,
    project_of: HashMap<String, String>,
    /// A relist in progress: swapped in whole when it is done, as the cache itself is.
    relisting: Option<HashMap<String, String>>,
}

impl Inner {
    fn insert(&mut self, binding: String, project: String) {
        if let Some(old) = self.project_of.insert(binding.clone(), project.clone())
            && old != project
        {
            self.unlink(&binding, &old);
        }
        self.by_project.entry(project).or_default().insert(binding);
    }

    fn remove(&mut self, binding: &str) {
        if let Some(project) = self.project_of.remove(binding) {
            self.unlink(binding, &project);
        }
    }

    fn unlink(&mut self, binding: &str, project: &str) {
        if let Some(names) = self.by_project.get_mut(project) {
            names.remove(binding);
            if names.is_empty() {
                self.by_project.remove(project);
            }
        }
    }
}

impl BindingIndex {
    /// Follows one event of the bindings' watch.
    pub fn apply(&self, event: &watcher::Event<ProjectRoleBinding>) {
        let mut inner = self.inner.lock().expect("not poisoned");
        match event {
            watcher::Event::Apply(b) => inner.insert(b.name_any(), b.spec.project.clone()),
            watcher::Event::Delete(b) => inner.remove(&b.name_any()),
            watcher::Event::Init => inner.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(b) => {
                inner.relisting.get_or_insert_default().insert(b.name_any(), b.spec.project.clone());
            }
            watcher::Event::InitDone => {
                let listed = inner.relisting.take().unwrap_or_default();
                let mut by_project: HashMap<String, BTreeSet<String>> = HashMap::new();
                for (binding, project) in &listed {
                    by_project.entry(project.clone()).or_default().insert(binding.clone());
                }
                inner.by_project = by_project;
                inner.project_of = listed;
            }
        }
    }

    /// The names of the bindings that name `project`.
    pub fn of(&self, project: &str) -> Vec<String> {
        let inner = self.inner.lock().expect("not poisoned");
        inner.by_project.get(project).map(|names| names.iter().cloned().collect()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ProjectRoleBindingSpec;

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
}
