//! Figure 1, the floor: the time one client needs to create exactly the objects N projects need by plain creates,
//! before the operator runs, at the fastest of a sweep of client concurrencies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ApiResource, DeleteParams, DynamicObject, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Semaphore;
use zenml_api::Project;
use zenml_api::labels;

use super::metrics::{self, ApiWork};
use super::{BENCH_LABEL, Bench, CLIENT_USER, Error, Found, Result, Row, watch};

/// What the floor measured, for the figures set against it.
pub(super) struct Floor {
    /// The client concurrency the sweep chose, used for every later bulk create.
    pub concurrency: usize,
    /// None when the floor was skipped.
    pub time: Option<Duration>,
    /// The API server's CPU and writes meanwhile (local cluster only).
    pub work: Option<ApiWork>,
    /// Whether the audit log showed every create of the floor (else writes are counted without it).
    pub audit_ok: bool,
    /// Objects per project.
    pub per_project: usize,
}

impl Floor {
    /// What the later phases take from the floor when it is skipped (`--skip floor`): the first concurrency given,
    /// and the audit log trusted without the floor's check of it.
    pub(super) fn skipped(concurrency: usize, per_project: usize, audit_ok: bool) -> Floor {
        Floor { concurrency, time: None, work: None, audit_ok, per_project }
    }
}

impl Bench {
    /// Figure 1: creates the floor's objects (after the sweep), measures, deletes them; adds the row.
    pub(super) async fn floor(&self, templates: &[Template], found: &mut Found) -> Result<Floor> {
        let per_project = templates.len();
        let (concurrency, sweep) = self.sweep(templates).await?;
        let floor_names: Vec<String> = (0..self.n()).map(|i| format!("{}-f{i:05}", self.run)).collect();
        self.say(&format!("floor: creating {} objects at concurrency {concurrency}", per_project * self.n()));
        let (audit_floor, m_floor0) = (self.audit_mark()?, metrics::apiserver_writes()?);
        let cpu_floor0 = self.cpu(None);
        let floor = self.create_floor(templates, &floor_names, concurrency).await?;
        let cpu_floor1 = self.cpu(None);
        let work = ApiWork::of(&cpu_floor0, &cpu_floor1, &m_floor0, &metrics::apiserver_writes()?);
        let cpu_floor = metrics::cpu_used(&cpu_floor0, &cpu_floor1, floor);
        tokio::time::sleep(Duration::from_secs(1)).await; // the audit log is written when a response completes
        let floor_writes = self.audit_writes(audit_floor)?;
        self.delete_floor_namespaces(&floor_names, concurrency).await?;
        self.say(&format!("floor: {:.1} s", floor.as_secs_f64()));
        let mut audit_ok = self.audit.is_some();
        if let Some(w) = &floor_writes {
            let mine = w.iter().filter(|w| w.user == CLIENT_USER && w.verb == "create").count();
            if mine != per_project * self.n() {
                audit_ok = false;
                found.notes.push(format!(
                    "the audit log shows {mine} of the floor's {} creates: it is not this cluster's, or incomplete; \
                     falling back to apiserver_request_total",
                    per_project * self.n()
                ));
            }
        }
        let kinds = kinds_of(templates);
        found.rows.push(Row {
            figure: "1 floor".into(),
            value: format!("{:.1} s", floor.as_secs_f64()),
            detail: format!(
                "{} objects ({per_project} per project: {kinds}) by plain creates from one kube-rs client at \
                 concurrency {concurrency}, {:.0} objects/s; {sweep}{cpu_floor}",
                per_project * self.n(),
                (per_project * self.n()) as f64 / floor.as_secs_f64()
            ),
        });
        Ok(Floor { concurrency, time: Some(floor), work, audit_ok, per_project })
    }

    /// Creates the same objects with one client at each concurrency on a sample, and returns the fastest.
    async fn sweep(&self, templates: &[Template]) -> Result<(usize, String)> {
        let sample = self.s.sample.unwrap_or((self.n() / 10).max(20)).min(self.n()).max(1);
        let mut results = Vec::new();
        let mut names = Vec::new();
        // A warm-up, not measured, with or without a sweep: connections, the API server's caches of these kinds, and
        // the controller-manager's start-up work on a cluster just started stay out of the floor, where they would
        // flatter the ratio. (It does not remove the machine's run-to-run variance: docs/benchmarks.md shows it.)
        let warm: Vec<String> = (0..sample.min(5)).map(|i| format!("{}-w{i:03}", self.run)).collect();
        self.create_floor(templates, &warm, self.s.concurrencies[0]).await?;
        names.extend(warm);
        if self.s.concurrencies.len() == 1 {
            self.delete_floor_namespaces(&names, self.s.concurrencies[0]).await?;
            return Ok((self.s.concurrencies[0], "concurrency given, no sweep (after a warm-up)".into()));
        }
        for &c in &self.s.concurrencies {
            let trial: Vec<String> = (0..sample).map(|i| format!("{}-s{c}-{i:03}", self.run)).collect();
            let took = self.create_floor(templates, &trial, c).await?;
            let rate = (sample * templates.len()) as f64 / took.as_secs_f64();
            self.say(&format!("sweep: concurrency {c}: {rate:.0} objects/s"));
            results.push((c, rate));
            names.extend(trial);
        }
        let best = results.iter().copied().fold((0, 0.0), |best, r| if r.1 > best.1 { r } else { best });
        self.delete_floor_namespaces(&names, best.0).await?;
        let shown: Vec<String> = results.iter().map(|(c, r)| format!("{c}: {r:.0}/s")).collect();
        Ok((
            best.0,
            format!(
                "concurrency chosen as the fastest of {} on {sample}-project samples, one after another after a \
                 warm-up",
                shown.join(", ")
            ),
        ))
    }

    /// Creates one project's worth of `templates` in each of `names` (namespace first), `concurrency` requests at once.
    async fn create_floor(&self, templates: &[Template], names: &[String], concurrency: usize) -> Result<Duration> {
        let sem = Semaphore::new(concurrency);
        let start = Instant::now();
        future::try_join_all(names.iter().map(|f| self.create_objects(&sem, templates, f))).await?;
        Ok(start.elapsed())
    }

    /// One project's worth of `templates` in namespace `f`: the namespace, then the rest at once, each request
    /// holding one of `sem`'s permits.
    pub(super) async fn create_objects(&self, sem: &Semaphore, templates: &[Template], f: &str) -> Result<()> {
        let (namespace, children) = templates.split_first().ok_or("no templates")?;
        permitted(sem, namespace.create(&self.client, f, &self.run)).await?;
        future::try_join_all(children.iter().map(|t| permitted(sem, t.create(&self.client, f, &self.run)))).await?;
        Ok(())
    }

    pub(super) async fn delete_floor_namespaces(&self, names: &[String], concurrency: usize) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        self.say(&format!("deleting {} bench namespaces", names.len()));
        futures::stream::iter(names.iter().map(|n| {
            let api = api.clone();
            async move {
                match api.delete(n, &DeleteParams::default()).await {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }))
        .buffer_unordered(concurrency)
        .try_collect::<Vec<()>>()
        .await?;
        let timeout = Duration::from_secs(120) + Duration::from_millis(500 * names.len() as u64);
        watch::wait_gone(api, &self.selector(), timeout, "the bench namespaces to be deleted", self).await
    }
}

/// Awaits `request` holding one of `sem`'s permits (a request is sent when first polled, so after the permit).
pub(super) async fn permitted<T, E: Into<Error>>(
    sem: &Semaphore,
    request: impl Future<Output = Result<T, E>>,
) -> Result<T> {
    let _permit = sem.acquire().await?;
    request.await.map_err(Into::into)
}

/// One child object as the operator would make it, turned into a plain create in another namespace.
pub(super) struct Template {
    resource: ApiResource,
    pub(super) object: DynamicObject,
    namespaced: bool,
    /// The project the template was built for, replaced by the floor namespace.
    project: String,
}

impl Template {
    pub(super) fn of<K: Resource<DynamicType = ()> + serde::Serialize>(obj: &K, project: &Project) -> Result<Template> {
        let object: DynamicObject = serde_json::from_value(serde_json::to_value(obj)?)?;
        Ok(Template {
            resource: ApiResource::erase::<K>(&()),
            namespaced: object.metadata.namespace.is_some(),
            object,
            project: project.name_any(),
        })
    }

    pub(super) fn kind(&self) -> &str {
        &self.resource.kind
    }

    /// The object for namespace `f`: the operator's labels and owner reference replaced by the bench's label (the
    /// owner does not exist, and the operator's watches must not see these), everything else as the operator makes it.
    pub(super) fn instantiate(&self, f: &str, run: &str) -> DynamicObject {
        let mut o = self.object.clone();
        if self.namespaced {
            o.metadata.namespace = Some(f.into());
        } else {
            o.metadata.name = Some(f.into());
        }
        o.metadata.owner_references = None;
        let marks = o.metadata.labels.get_or_insert_with(BTreeMap::new);
        marks.retain(|k, _| !k.starts_with("zenml.io/") && k != labels::MANAGED_BY);
        marks.insert(BENCH_LABEL.into(), run.into());
        if !self.namespaced {
            marks.insert(crate::NAMESPACE_LABEL.into(), "true".into());
        }
        if let Some(subjects) = o.data.get_mut("subjects").and_then(|s| s.as_array_mut()) {
            for s in subjects {
                if s.get("namespace").and_then(|n| n.as_str()) == Some(self.project.as_str()) {
                    s["namespace"] = f.into();
                }
            }
        }
        o
    }

    async fn create(&self, client: &Client, f: &str, run: &str) -> Result<()> {
        let api: Api<DynamicObject> = if self.namespaced {
            Api::namespaced_with(client.clone(), f, &self.resource)
        } else {
            Api::all_with(client.clone(), &self.resource)
        };
        api.create(&PostParams::default(), &self.instantiate(f, run)).await?;
        Ok(())
    }
}

/// "Namespace 1, ResourceQuota 1, ... RoleBinding 6".
pub(super) fn kinds_of(templates: &[Template]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for t in templates {
        match counts.iter_mut().find(|(k, _)| *k == t.kind()) {
            Some((_, n)) => *n += 1,
            None => counts.push((t.kind(), 1)),
        }
    }
    counts.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ")
}
