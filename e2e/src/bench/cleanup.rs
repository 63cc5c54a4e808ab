//! Deleting what a run made, also after a failed phase, on a loaded API server that may drop connections.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use zenml_api::labels;
use zenml_api::{Project, ProjectRoleBinding, Workspace};

use super::watch::wait_gone;
use super::{Bench, Result, State};

impl Bench {
    /// Deletes what the benchmark made: bindings and projects (their namespaces go with them), the workspace, and
    /// any floor namespace left. Falls back to removing finalizers if the operator cannot finish. Its first requests
    /// follow minutes of quiet on the client's connections, which the API server may have closed meanwhile (a pooled
    /// connection then fails with `SendRequest`): those are retried, so a run is not lost to its cleanup.
    pub(super) async fn cleanup(&self, state: &mut State) -> Result<()> {
        self.say("cleanup");
        let sel = self.selector();
        let lp = ListParams::default().labels(&sel);
        let dp = DeleteParams::default();
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        let workspaces: Api<Workspace> = Api::all(self.client.clone());
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        delete_all(&bindings, &lp).await?;
        delete_all(&projects, &lp).await?;
        let timeout = Duration::from_secs(120) + Duration::from_millis(500 * self.n() as u64);
        let mut forced = false;
        // A loaded API server drops a connection now and then; a cleanup should not give up for that.
        let one = lp.clone().limit(1);
        let any = !transient_retried(|| projects.list_metadata(&one)).await?.items.is_empty();
        if any
            && (state.operator.is_none()
                || wait_gone(projects.clone(), &sel, timeout, "the benchmark's Projects to be deleted", self)
                    .await
                    .is_err())
        {
            self.say("the operator did not finish deleting; removing finalizers");
            forced = true;
            unfinalize(&projects, &lp).await?;
            unfinalize(&bindings, &lp).await?;
        }
        let ws_sel = format!("{}={}", labels::WORKSPACE, self.workspace);
        if forced {
            let of_workspace = ListParams::default().labels(&ws_sel);
            for ns in transient_retried(|| namespaces.list_metadata(&of_workspace)).await? {
                let _ = namespaces.delete(&ns.name_any(), &dp).await;
            }
        }
        wait_gone(namespaces.clone(), &ws_sel, timeout, "the projects' namespaces to be deleted", self).await?;
        if state.workspace_created {
            delete_all(&workspaces, &lp).await?;
            if forced
                || wait_gone(workspaces.clone(), &sel, Duration::from_secs(60), "the Workspace to be deleted", self)
                    .await
                    .is_err()
            {
                unfinalize(&workspaces, &lp).await?;
            }
        }
        // Floor namespaces left by an interrupted floor.
        let left = transient_retried(|| namespaces.list_metadata(&lp)).await?;
        if !left.items.is_empty() {
            let names: Vec<String> = left.items.iter().map(|n| n.name_any()).collect();
            self.delete_floor_namespaces(&names, 16).await?;
        }
        Ok(())
    }
}

/// Deletes what `lp` selects one by one, a few at a time. Not one `deletecollection`: with thousands of custom
/// resources it outlasts the API server's 60 s request timeout on a loaded machine, and the client sees only a broken
/// connection (a large run's cleanup failed so: docs/benchmarks.md).
pub(super) async fn delete_all<K>(api: &Api<K>, lp: &ListParams) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let dp = &DeleteParams::default();
    each_selected(
        api,
        lp,
        |o| o.meta().deletion_timestamp.is_none(),
        |name| async move { api.delete(&name, dp).await.map(|_| ()) },
    )
    .await
}

pub(super) async fn unfinalize<K>(api: &Api<K>, lp: &ListParams) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
    let pp = &PatchParams::default();
    each_selected(
        api,
        lp,
        |o| !o.finalizers().is_empty(),
        |name| async move { api.patch(&name, pp, patch).await.map(|_| ()) },
    )
    .await
}

/// Runs `request` for each object `lp` selects that `pick` keeps, 32 at a time, each retried on a dropped connection;
/// an object gone meanwhile (404) is fine.
async fn each_selected<K, F, Fut>(
    api: &Api<K>,
    lp: &ListParams,
    pick: impl Fn(&kube::core::PartialObjectMeta<K>) -> bool,
    request: F,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    F: Fn(String) -> Fut,
    Fut: Future<Output = kube::Result<()>>,
{
    let found = transient_retried(|| api.list_metadata(lp)).await?;
    futures::stream::iter(found.items.iter().filter(|o| pick(o)).map(|o| {
        let name = o.name_any();
        let request = &request;
        async move {
            match transient_retried(|| request(name.clone())).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                other => other,
            }
        }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// Retries `f` up to 5 times, a second apart, while it fails without an answer from the API server (a connection
/// error); an answer, even an error, is returned as it is.
async fn transient_retried<T, F, Fut>(mut f: F) -> kube::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let mut attempt = 1;
    loop {
        match f().await {
            Err(e) if attempt < 5 && !matches!(e, kube::Error::Api(_)) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}
