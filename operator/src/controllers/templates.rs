//! Workspace templates as child kinds: the objects a workspace lists (`spec.templates`) applied into each of its
//! project namespaces.
//!
//! Template kinds are open-ended, so they are not typed rows of the children table but one dynamic row per kind the
//! operator may manage (the chart's `templates.kinds`, `--template-kinds`), each resolved by discovery at start and
//! watched (full objects, our template label only) into a child cache like every other kind: drift is repaired by the
//! watch waking the project, pruning and release go through the same table. What differs is creation: the operator
//! never adopts, edits or deletes an object it does not own, and a template's name is chosen by a workspace admin, so
//! an object missing from our cache is looked up before it is created, and one of that name that is not ours is
//! reported (`TemplateConflict`) and left untouched.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::discovery::Scope;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use zenml_api::labels;
use zenml_api::resources::Children;
use zenml_api::resources::compare::difference;
use zenml_api::resources::templates::kind_problem;
use zenml_api::status::conditions::Reason;
use zenml_api::status::templates::TemplateProblem;

use super::children::{ChildKind, Ensured, Stage};
use crate::watch::cache::{Child, ChildStore};
use crate::write::apply::{Change, Verb};
use crate::write::digest;
use crate::{Error, Result};

/// The kinds templates may have: those the operator may manage and the API server serves, namespaced.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub available: Vec<ApiResource>,
    /// `apiVersion/Kind` of kinds given but not usable, with why.
    pub unavailable: Vec<(String, String)>,
}

/// `apiVersion/Kind`, as `--template-kinds` takes it and messages name it.
fn key(api_version: &str, kind: &str) -> String {
    format!("{api_version}/{kind}")
}

impl Catalog {
    /// Resolves the kinds given as `apiVersion/Kind` (`v1/ConfigMap`, `networking.k8s.io/v1/NetworkPolicy`) by
    /// discovery. A kind that is not served, cluster-scoped or never a template is left out, logged, and reported on
    /// each project that uses it; the operator still starts (a CRD installed later needs a restart to be used).
    pub async fn discover(client: &Client, kinds: &[String]) -> Catalog {
        let mut catalog = Catalog::default();
        for given in kinds {
            let Some((api_version, kind)) = given.rsplit_once('/') else {
                catalog.unavailable.push((given.clone(), "not of the form apiVersion/Kind".into()));
                continue;
            };
            if let Some(why) = kind_problem(api_version, kind) {
                catalog.unavailable.push((given.clone(), why));
                continue;
            }
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            match kube::discovery::pinned_kind(client, &gvk).await {
                Ok((ar, caps)) if caps.scope == Scope::Namespaced => catalog.available.push(ar),
                Ok(_) => catalog.unavailable.push((given.clone(), "it is cluster-scoped".into())),
                Err(e) => catalog.unavailable.push((given.clone(), format!("the API server does not serve it ({e})"))),
            }
        }
        for (kind, why) in &catalog.unavailable {
            tracing::warn!(kind, "template kind not usable: {why}");
        }
        catalog
    }

    /// ConfigMaps only, for tests without an API server.
    #[cfg(test)]
    pub fn for_tests() -> Catalog {
        let ar = ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&());
        Catalog { available: vec![ar], unavailable: Vec::new() }
    }

    /// The project's templates of kinds no row handles, as problems.
    pub fn unmatched(&self, children: &Children) -> Vec<TemplateProblem> {
        let served = |o: &DynamicObject| {
            let t = o.types.as_ref();
            self.available.iter().any(|ar| t.is_some_and(|t| t.api_version == ar.api_version && t.kind == ar.kind))
        };
        let allowed: Vec<String> = self.available.iter().map(|ar| key(&ar.api_version, &ar.kind)).collect();
        let allowed = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
        children
            .templates
            .objects
            .iter()
            .filter(|o| !served(o))
            .map(|o| {
                let t = o.types.clone().unwrap_or_default();
                let given = key(&t.api_version, &t.kind);
                let message = match self.unavailable.iter().find(|(k, _)| *k == given) {
                    Some((_, why)) => format!(
                        "{given} is among the operator's template kinds, but {why}; install it (then restart the \
                         operator) or remove the template"
                    ),
                    None => format!(
                        "the operator may not manage {given} (its template kinds, the chart's templates.kinds value, \
                         are: {allowed}); add the kind there or remove the template"
                    ),
                };
                TemplateProblem { name: o.name_any(), reason: Reason::TemplateKindNotAllowed, message }
            })
            .collect()
    }
}

/// One template kind: its API resource and the cache of the objects we applied from templates.
pub(super) struct TemplateKind {
    pub ar: ApiResource,
    pub store: ChildStore<DynamicObject>,
}

impl TemplateKind {
    fn wanted<'a>(&self, children: &'a Children) -> Vec<&'a DynamicObject> {
        let ar = &self.ar;
        children
            .templates
            .objects
            .iter()
            .filter(|o| o.types.as_ref().is_some_and(|t| t.api_version == ar.api_version && t.kind == ar.kind))
            .collect()
    }

    fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.ar)
    }

    fn change(&self, verb: Verb, namespace: &str, name: &str, uid: Option<&str>) -> Change {
        Change {
            verb,
            kind: self.ar.kind.clone(),
            name: format!("{namespace}/{name}"),
            object: ObjectReference {
                api_version: Some(self.ar.api_version.clone()),
                kind: Some(self.ar.kind.clone()),
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                uid: uid.map(str::to_owned),
                ..Default::default()
            },
        }
    }

    /// Applies one template object unless the cache shows it in place; creates it only where nothing of its name
    /// exists. `Err(problem)` for what retrying cannot fix: someone else's object, a kind we may not write, an object
    /// the API server finds invalid.
    async fn ensure_one(
        &self,
        client: &Client,
        obj: &DynamicObject,
    ) -> Result<Result<Option<Change>, TemplateProblem>> {
        let namespace = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        let owner = obj.owner_references().first().map(|o| o.uid.clone());
        let problem = |reason, message: String| Ok(Err(TemplateProblem { name: name.clone(), reason, message }));
        let what = format!("{} {name} in namespace {namespace}", self.ar.kind);
        let live = self.store.get(&namespace, &name);
        if let Some(l) = &live {
            if !l.controlled_by(owner.as_deref()) {
                return problem(Reason::TemplateConflict, not_ours(&what, "another instance of this project"));
            }
            if difference(obj, &**l).is_none() {
                return Ok(Ok(None));
            }
        }
        let digest = digest::of_json(obj);
        if self.store.in_flight(&namespace, &name, digest) {
            return Ok(Ok(None));
        }
        let api = self.api(client, &namespace);
        if live.is_none() {
            match api.get_opt(&name).await {
                Ok(None) => {}
                Ok(Some(existing)) if ours(&existing, owner.as_deref()) => return Ok(Ok(None)),
                Ok(Some(_)) => return problem(Reason::TemplateConflict, not_ours(&what, "someone else")),
                Err(kube::Error::Api(s)) if s.code == 403 => {
                    return problem(Reason::TemplateForbidden, forbidden(&what, &s.message));
                }
                Err(e) => return Err(Error::kube("get", &self.ar.kind, format!("{namespace}/{name}"), e)),
            }
        }
        // Forced only over our own object: a create that races someone else's is refused on any field they set.
        let params = PatchParams { force: live.is_some(), ..PatchParams::apply(labels::FIELD_MANAGER) };
        tracing::debug!(kind = self.ar.kind, name = format!("{namespace}/{name}"), "applying template");
        match api.patch(&name, &params, &Patch::Apply(obj)).await {
            Ok(written) => {
                self.store.wrote(&namespace, &name, digest);
                let verb = if live.is_some() { Verb::Updated } else { Verb::Created };
                Ok(Ok(Some(self.change(verb, &namespace, &name, written.uid().as_deref()))))
            }
            Err(kube::Error::Api(s)) if s.code == 403 => {
                problem(Reason::TemplateForbidden, forbidden(&what, &s.message))
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                problem(Reason::TemplateConflict, not_ours(&what, "someone else"))
            }
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => problem(
                Reason::TemplateRefused,
                format!("the API server refuses {what}: {}; fix the workspace's spec.templates", s.message),
            ),
            Err(e) => Err(Error::kube("apply", &self.ar.kind, format!("{namespace}/{name}"), e)),
        }
    }

    async fn ensure_all(&self, client: &Client, children: &Children) -> Result<Ensured> {
        let wanted = self.wanted(children);
        let results = futures::future::join_all(wanted.iter().map(|o| self.ensure_one(client, o))).await;
        let mut ensured = Ensured::default();
        for result in results {
            match result? {
                Ok(change) => ensured.changes.extend(change),
                Err(problem) => ensured.templates.push(problem),
            }
        }
        Ok(ensured)
    }

    fn owned(&self, namespace: &str, uid: Option<&str>) -> Vec<Arc<Child<DynamicObject>>> {
        let mut owned = self.store.in_namespace(namespace);
        owned.retain(|c| c.controlled_by(uid));
        owned
    }

    async fn delete(&self, client: &Client, child: &Child<DynamicObject>) -> Result<Option<Change>> {
        let dp = DeleteParams {
            preconditions: child
                .uid
                .clone()
                .map(|uid| kube::api::Preconditions { uid: Some(uid), resource_version: None }),
            ..Default::default()
        };
        match self.api(client, &child.namespace).delete(&child.name, &dp).await {
            Ok(_) => Ok(Some(self.change(Verb::Deleted, &child.namespace, &child.name, child.uid.as_deref()))),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(None),
            Err(e) => Err(Error::kube("delete", &self.ar.kind, format!("{}/{}", child.namespace, child.name), e)),
        }
    }

    /// Deletes what the project applied from templates it no longer has (removed from the workspace, excluded).
    async fn prune_unwanted(
        &self,
        client: &Client,
        namespace: &str,
        uid: Option<&str>,
        children: &Children,
    ) -> Result<Vec<Change>> {
        let keep: Vec<String> = self.wanted(children).iter().map(|o| o.name_any()).collect();
        let mut changes = Vec::new();
        for child in self.owned(namespace, uid) {
            if !keep.contains(&child.name) {
                changes.extend(self.delete(client, &child).await?);
            }
        }
        Ok(changes)
    }

    /// Released like the limits and walls: kept in force, no longer managed (templates grant nothing, so keeping
    /// them loosens nothing), with the former project recorded.
    async fn release_all(&self, client: &Client, namespace: &str, uid: Option<&str>) -> Result<Vec<Change>> {
        let patch = json!({"metadata": {
            "ownerReferences": null,
            "labels": {labels::MANAGED_BY: null, labels::WORKSPACE: null, labels::PROJECT: null,
                       labels::COMPONENT: null, labels::TEMPLATE: null},
            "annotations": {labels::APPLIED_HASH: null, labels::FORMER_PROJECT: namespace},
        }});
        let api = self.api(client, namespace);
        for child in self.owned(namespace, uid) {
            match api.patch(&child.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube("release", &self.ar.kind, format!("{namespace}/{}", child.name), e)),
            }
        }
        Ok(Vec::new())
    }
}

/// Whether an object found by name is the one this project applied (our template label, controlled by its uid): a
/// write of ours the watch has not delivered yet.
fn ours(obj: &DynamicObject, owner: Option<&str>) -> bool {
    obj.labels().contains_key(labels::TEMPLATE)
        && owner.is_some()
        && obj.owner_references().iter().any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == owner)
}

fn not_ours(what: &str, whose: &str) -> String {
    format!(
        "{what} already exists and belongs to {whose}, so it is left untouched; delete or rename it, or exclude the \
         template from this project (spec.excludedTemplates)"
    )
}

fn forbidden(what: &str, message: &str) -> String {
    format!(
        "the operator may not write {what} ({message}); grant it through the chart's templates.kinds value or \
         remove the template"
    )
}

impl ChildKind for TemplateKind {
    fn stage(&self) -> Stage {
        Stage::Objects
    }

    fn ready(&self) -> BoxFuture<'_, ()> {
        self.store.ready().boxed()
    }

    fn ensure<'a>(&'a self, client: &'a Client, children: &'a Children) -> BoxFuture<'a, Result<Ensured>> {
        self.ensure_all(client, children).boxed()
    }

    fn prune<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        uid: Option<&'a str>,
        children: &'a Children,
    ) -> BoxFuture<'a, Result<Vec<Change>>> {
        self.prune_unwanted(client, namespace, uid, children).boxed()
    }

    fn release<'a>(
        &'a self,
        client: &'a Client,
        namespace: &'a str,
        uid: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Change>>> {
        self.release_all(client, namespace, uid).boxed()
    }
}
