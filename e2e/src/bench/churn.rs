//! Figure 8, churn: after provisioning, a share of the projects is changed every second (quota, namespace labels,
//! bindings added and removed) for `churn_seconds`; the operator's lag from each change until a watch sees it done,
//! its CPU and writes per change, and whether a backlog grew.
//!
//! Done means: for a Project, Ready=True with `observedGeneration` at least the generation the change made; for a
//! binding added, the same on the ProjectRoleBinding; for a binding removed, its RoleBinding gone (a watch on the
//! operator's RoleBindings sees the delete). The operator exposes no queue depth, so the backlog is read from the
//! changes themselves: how many were not yet done each second, and the lag late in the run against early.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio::sync::Semaphore;
use zenml_api::resources::binding as binding_builder;
use zenml_api::{Project, ProjectRoleBinding, Subject, SubjectKind, labels};

use super::audit::{Audit, category};
use super::latency::percentile;
use super::metrics::{self, ApiWork};
use super::provisioning::Marks;
use super::record::ChurnRecord;
use super::watch::is_ready;
use super::workload::Workload;
use super::{BENCH_LABEL, Bench, Found, OPERATOR_USER, Result, Row};
use crate::operator::Operator;

/// What churning left for the summary and the record.
pub(super) struct Churn {
    pub p99_ms: f64,
    pub record: ChurnRecord,
}

/// The kinds of change, in the order they take turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Quota,
    Labels,
    BindingAdded,
    BindingRemoved,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Quota => "quota",
            Kind::Labels => "labels",
            Kind::BindingAdded => "binding added",
            Kind::BindingRemoved => "binding removed",
        }
    }
}

/// A change sent and not yet seen done.
struct Pending {
    kind: Kind,
    /// Its place in the order of sending, for the early/late comparison.
    seq: usize,
    sent: Instant,
    /// The generation that must be observed (0 for a removal).
    generation: i64,
}

/// What the watches and the changes share. Keys: `p/<project>`, `b/<binding>`, `rb/<namespace>/<name>`.
#[derive(Default)]
struct Progress {
    pending: HashMap<String, Pending>,
    /// The highest generation seen Ready for a key, and when it was first seen so.
    seen: HashMap<String, (i64, Instant)>,
    /// RoleBindings seen deleted, and when.
    gone: HashMap<String, Instant>,
    /// (kind, seq, lag) of every change done.
    done: Vec<(Kind, usize, Duration)>,
    /// Bindings the churn added that are Ready, oldest first, with the key of their RoleBinding: the ones a removal
    /// may take.
    removable: VecDeque<(String, String)>,
    /// Added bindings not yet Ready, with the key of their RoleBinding.
    adding: HashMap<String, String>,
    /// Watches that have listed what exists.
    synced: usize,
}

impl Progress {
    /// A watch saw `key` Ready at `generation`.
    fn ready(&mut self, key: &str, generation: i64, now: Instant) {
        let seen = self.seen.entry(key.to_owned()).or_insert((generation, now));
        if generation > seen.0 {
            *seen = (generation, now);
        }
        self.complete_if(key, |p| p.generation <= generation, now);
    }

    /// A watch saw the RoleBinding `key` deleted.
    fn deleted(&mut self, key: &str, now: Instant) {
        self.gone.insert(key.to_owned(), now);
        self.complete_if(key, |_| true, now);
    }

    fn complete_if(&mut self, key: &str, done: impl Fn(&Pending) -> bool, at: Instant) {
        if self.pending.get(key).is_some_and(done) {
            let p = self.pending.remove(key).expect("present");
            self.done.push((p.kind, p.seq, at.saturating_duration_since(p.sent)));
            if p.kind == Kind::BindingAdded
                && let Some(name) = key.strip_prefix("b/")
                && let Some(role_binding) = self.adding.remove(name)
            {
                self.removable.push_back((name.to_owned(), role_binding));
            }
        }
    }

    /// A change was sent at `sent` and answered; it is done at once if a watch has seen it done already.
    fn expect(&mut self, key: String, p: Pending) {
        let already = match p.kind {
            Kind::BindingRemoved => self.gone.get(&key).copied(),
            _ => self.seen.get(&key).filter(|(g, _)| *g >= p.generation).map(|(_, t)| *t),
        };
        self.pending.insert(key.clone(), p);
        if let Some(at) = already {
            self.complete_if(&key, |_| true, at);
        }
    }
}

impl Bench {
    /// Figure 8: churns for `churn_seconds` at `churn_percent` of the projects per second, waits until every change
    /// is done (or a timeout), and adds the rows.
    pub(super) async fn churn(
        &self,
        op: &Operator,
        workload: &Workload,
        concurrency: usize,
        audit: Option<&Audit>,
        found: &mut Found,
    ) -> Result<Churn> {
        self.settle(op, Duration::from_secs(30)).await;
        let progress = Arc::new(Mutex::new(Progress::default()));
        let _watches = self.churn_watches(&progress);
        let deadline = Instant::now() + Duration::from_secs(60);
        while progress.lock().expect("not poisoned").synced < 3 {
            if Instant::now() > deadline {
                return Err("churn: the watches did not list what exists in 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let per_second = (self.n() as f64 * self.s.churn_percent / 100.0).max(1.0);
        let total = (self.s.churn_seconds as f64 * per_second).round().max(1.0) as usize;
        self.say(&format!(
            "churn: {total} changes over {} s ({per_second:.1}/s: quota, labels, bindings added and removed)",
            self.s.churn_seconds
        ));
        let start = Marks::take(self, op)?;
        let cpu0 = self.cpu(Some(op.pid));
        let t0 = Instant::now();
        let sent = self.send_changes(workload, &progress, total, per_second, concurrency).await?;
        let sending = t0.elapsed();
        let (pending_at_end, pending_samples) = (sent.pending_at_end, sent.pending_samples.clone());
        // Every change done, or give up after a while: what is left is reported, not waited for forever.
        let drain_limit = Duration::from_secs(60) + Duration::from_millis(10 * total as u64);
        let drain_start = Instant::now();
        while !progress.lock().expect("not poisoned").pending.is_empty() && drain_start.elapsed() < drain_limit {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drained = drain_start.elapsed();
        self.settle(op, Duration::from_secs(60)).await;
        tokio::time::sleep(Duration::from_secs(1)).await; // the audit log is written when a response completes
        let cpu1 = self.cpu(Some(op.pid));
        let end = Marks::take(self, op)?;
        let work = ApiWork::of(&cpu0, &cpu1, &start.apiserver, &end.apiserver);
        let operator_cpu = metrics::cpu_of(&cpu0, &cpu1, "operator");
        let p = progress.lock().expect("not poisoned");
        let (done, left) = (p.done.len(), p.pending.len());
        if done == 0 {
            return Err(format!(
                "churn: none of {} changes was seen done; operator log: {}",
                sent.sent,
                op.log.display()
            )
            .into());
        }
        let lags: Vec<f64> = p.done.iter().map(|(_, _, d)| d.as_secs_f64() * 1000.0).collect();
        let (p50, p99) = (percentile(&lags, 50.0), percentile(&lags, 99.0));
        let third = |early: bool| -> Vec<f64> {
            p.done
                .iter()
                .filter(|(_, seq, _)| if early { *seq < sent.sent / 3 } else { *seq >= sent.sent - sent.sent / 3 })
                .map(|(_, _, d)| d.as_secs_f64() * 1000.0)
                .collect()
        };
        let (early, late) = (third(true), third(false));
        let late_over_early = (!early.is_empty() && !late.is_empty())
            .then(|| percentile(&late, 50.0) / percentile(&early, 50.0).max(1.0));
        // A backlog that grows leaves more undone at the end than on average, and makes late changes wait longer.
        let mean_pending = pending_samples.iter().sum::<usize>() as f64 / pending_samples.len().max(1) as f64;
        let backlog_grew = left > 0
            || (pending_at_end as f64 > 2.0 * mean_pending.max(per_second) && late_over_early.is_some_and(|r| r > 1.5));
        let writes = audit.map(|a| a.read(start.audit, end.audit)).transpose()?;
        let (writes_per_change, events, writes_detail) = match &writes {
            Some(w) => {
                let ours: Vec<_> = w.iter().filter(|w| w.user == OPERATOR_USER && category(w) != "lease").collect();
                let events = ours.iter().filter(|w| category(w) == "event").count();
                let counted = ours.len() - events;
                let mut by: std::collections::BTreeMap<String, usize> = Default::default();
                for w in ours.iter().filter(|w| category(w) != "event") {
                    *by.entry(format!("{} {}", w.verb, w.kind())).or_default() += 1;
                }
                let by: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
                (
                    Some(counted as f64 / done as f64),
                    Some(events),
                    format!(
                        "{counted} writes by {OPERATOR_USER} (audit log; Leases and Events apart): {}",
                        by.join(", ")
                    ),
                )
            }
            None => {
                let own = end.operator.writes - start.operator.writes;
                (None, None, format!("no audit log: the operator's own zenml_operator_writes_total counted {own}"))
            }
        };
        let by_kind: Vec<String> = [Kind::Quota, Kind::Labels, Kind::BindingAdded, Kind::BindingRemoved]
            .iter()
            .filter_map(|k| {
                let l: Vec<f64> =
                    p.done.iter().filter(|(kind, _, _)| kind == k).map(|(_, _, d)| d.as_secs_f64() * 1000.0).collect();
                (!l.is_empty()).then(|| {
                    format!("{} {}: {:.0} / {:.0} ms", k.name(), l.len(), percentile(&l, 50.0), percentile(&l, 99.0))
                })
            })
            .collect();
        let per_change = |s: f64| 1000.0 * s / done as f64;
        let record = ChurnRecord {
            seconds: self.s.churn_seconds,
            changes: sent.sent,
            per_second,
            p50_ms: p50,
            p99_ms: p99,
            operator_cpu_ms_per_change: operator_cpu.map(per_change),
            api_cpu_ms_per_change: work.map(|w| per_change(w.cpu_s)),
            writes_per_change,
            late_over_early_p50: late_over_early,
            backlog_grew,
        };
        found.rows.extend([
            Row {
                figure: "8 churn lag p50".into(),
                value: format!("{p50:.0} ms"),
                detail: format!(
                    "{} changes sent over {:.1} s ({:.2}/s asked, {} projects), from each change until a watch saw it done \
                     (Ready with the new generation observed; a removed binding's RoleBinding gone); by kind, p50 / \
                     p99: {}",
                    sent.sent,
                    sending.as_secs_f64(),
                    record.per_second,
                    self.n(),
                    by_kind.join(", ")
                ),
            },
            Row {
                figure: "8 churn lag p99".into(),
                value: format!("{p99:.0} ms"),
                detail: format!("nearest rank over the {done} changes done"),
            },
            Row {
                figure: "8 churn writes per change".into(),
                value: writes_per_change.map(|w| format!("{w:.1}")).unwrap_or_else(|| "-".into()),
                detail: format!(
                    "{writes_detail}; {} Events; from the first change until the operator settled after the last",
                    events.map(|e| e.to_string()).unwrap_or_else(|| "?".into())
                ),
            },
            Row {
                figure: "8 churn CPU per change".into(),
                value: record.operator_cpu_ms_per_change.map(|c| format!("{c:.1} ms")).unwrap_or_else(|| "-".into()),
                detail: format!(
                    "the operator's CPU over the changes done, same window{}",
                    work.map(|w| format!(
                        "; kube-apiserver {:.1} ms per change ({})",
                        per_change(w.cpu_s),
                        w.describe()
                    ))
                    .unwrap_or_default()
                ),
            },
            Row {
                figure: "8 churn backlog".into(),
                value: if backlog_grew { "grew".into() } else { "none".into() },
                detail: format!(
                    "changes not yet done: {pending_at_end} when the last was sent, {mean_pending:.1} on average over \
                     the run (sampled each second), {left} still not done {:.1} s after the last; lag p50 of the last \
                     third of the changes over the first third: {}",
                    drained.as_secs_f64(),
                    late_over_early.map(|r| format!("{r:.2}")).unwrap_or_else(|| "-".into())
                ),
            },
        ]);
        if left > 0 {
            found.notes.push(format!(
                "churn: {left} of {} changes were not seen done {:.0} s after the last was sent; operator log: {}",
                sent.sent,
                drained.as_secs_f64(),
                op.log.display()
            ));
        }
        if sent.failed > 0 {
            found.notes.push(format!("churn: {} of the changes' requests failed: {}", sent.failed, sent.first_error));
        }
        self.say(&format!(
            "churn: p50 {p50:.0} ms, p99 {p99:.0} ms, backlog {}",
            if backlog_grew { "grew" } else { "none" }
        ));
        Ok(Churn { p99_ms: p99, record })
    }

    /// The watches the churn reads: the benchmark's Projects and bindings (Ready and the generation observed), and
    /// the operator's RoleBindings for bindings (deletions). Dropping the handles stops them.
    fn churn_watches(&self, progress: &Arc<Mutex<Progress>>) -> Vec<AbortOnDrop> {
        let sel = self.selector();
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        // Metadata only: a delete is all this watch looks for.
        let role_bindings: Api<PartialObjectMeta<RoleBinding>> = Api::all(self.client.clone());
        let rb_sel = format!("{}={},{}=project-role-binding", labels::WORKSPACE, self.workspace, labels::COMPONENT);
        let p1 = progress.clone();
        let w1 = watcher(projects, watcher::Config::default().labels(&sel)).default_backoff();
        let t1 = tokio::spawn(async move {
            let mut s = std::pin::pin!(w1);
            while let Some(e) = s.next().await {
                let Ok(e) = e else { continue };
                let mut p = p1.lock().expect("not poisoned");
                match e {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                        if let Some(st) = o.status.as_ref().filter(|s| is_ready(&s.conditions)) {
                            p.ready(
                                &format!("p/{}", o.name_any()),
                                st.observed_generation.unwrap_or(0),
                                Instant::now(),
                            );
                        }
                    }
                    watcher::Event::InitDone => p.synced += 1,
                    _ => {}
                }
            }
        });
        let p2 = progress.clone();
        let w2 = watcher(bindings, watcher::Config::default().labels(&sel)).default_backoff();
        let t2 = tokio::spawn(async move {
            let mut s = std::pin::pin!(w2);
            while let Some(e) = s.next().await {
                let Ok(e) = e else { continue };
                let mut p = p2.lock().expect("not poisoned");
                match e {
                    watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                        if let Some(st) = o.status.as_ref().filter(|s| is_ready(&s.conditions)) {
                            p.ready(
                                &format!("b/{}", o.name_any()),
                                st.observed_generation.unwrap_or(0),
                                Instant::now(),
                            );
                        }
                    }
                    watcher::Event::InitDone => p.synced += 1,
                    _ => {}
                }
            }
        });
        let p3 = progress.clone();
        let w3 = watcher(role_bindings, watcher::Config::default().labels(&rb_sel)).default_backoff();
        let t3 = tokio::spawn(async move {
            let mut s = std::pin::pin!(w3);
            while let Some(e) = s.next().await {
                let Ok(e) = e else { continue };
                let mut p = p3.lock().expect("not poisoned");
                match e {
                    watcher::Event::Delete(o) => {
                        let key = format!("rb/{}/{}", o.namespace().unwrap_or_default(), o.name_any());
                        p.deleted(&key, Instant::now());
                    }
                    watcher::Event::InitDone => p.synced += 1,
                    _ => {}
                }
            }
        });
        vec![AbortOnDrop(t1), AbortOnDrop(t2), AbortOnDrop(t3)]
    }

    /// Sends `total` changes, `per_second` of them each second, spread evenly, at most `concurrency` in flight;
    /// the projects take turns in order, the kinds too.
    async fn send_changes(
        &self,
        workload: &Workload,
        progress: &Arc<Mutex<Progress>>,
        total: usize,
        per_second: f64,
        concurrency: usize,
    ) -> Result<Sent> {
        let projects: Api<Project> = Api::all(self.client.clone());
        let bindings: Api<ProjectRoleBinding> = Api::all(self.client.clone());
        let sem = Arc::new(Semaphore::new(concurrency));
        let mut tasks = tokio::task::JoinSet::new();
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut samples = Vec::new();
        let mut last_sample = Instant::now();
        let (mut failed, mut first_error) = (0, String::new());
        for seq in 0..total {
            interval.tick().await;
            if last_sample.elapsed() >= Duration::from_secs(1) {
                samples.push(progress.lock().expect("not poisoned").pending.len());
                last_sample = Instant::now();
            }
            let project = workload.projects[seq % workload.projects.len()].name_any();
            let mut kind = [Kind::Quota, Kind::Labels, Kind::BindingAdded, Kind::BindingRemoved][seq % 4];
            let removal = match kind {
                Kind::BindingRemoved => progress.lock().expect("not poisoned").removable.pop_front(),
                _ => None,
            };
            if kind == Kind::BindingRemoved && removal.is_none() {
                // No binding the churn added is Ready yet to be removed: the turn goes to a quota change.
                kind = Kind::Quota;
            }
            let (projects, bindings, progress, sem) =
                (projects.clone(), bindings.clone(), progress.clone(), sem.clone());
            let added = self.churn_binding(workload, &project, seq);
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await.map_err(|e| e.to_string())?;
                let sent = Instant::now();
                let (key, generation) = match kind {
                    Kind::Quota | Kind::Labels => {
                        let patch = match kind {
                            // A new value each time, so each change makes a new generation.
                            Kind::Quota => serde_json::json!({"spec": {"quota": {"hard": {"requests.cpu": format!("{}m", 2000 + seq)}}}}),
                            _ => serde_json::json!({"spec": {"namespaceLabels": {"bench-churn": seq.to_string()}}}),
                        };
                        let p = projects
                            .patch(&project, &PatchParams::default(), &Patch::Merge(patch))
                            .await
                            .map_err(|e| e.to_string())?;
                        (format!("p/{project}"), p.metadata.generation.unwrap_or(0))
                    }
                    Kind::BindingAdded => {
                        let name = added.name_any();
                        let rb = format!("rb/{project}/{}", binding_builder::role_binding_name(&added));
                        progress.lock().expect("not poisoned").adding.insert(name.clone(), rb);
                        let b = bindings.create(&PostParams::default(), &added).await.map_err(|e| e.to_string())?;
                        (format!("b/{name}"), b.metadata.generation.unwrap_or(1))
                    }
                    Kind::BindingRemoved => {
                        let (name, role_binding) = removal.expect("chosen above");
                        bindings.delete(&name, &DeleteParams::default()).await.map_err(|e| e.to_string())?;
                        (role_binding, 0)
                    }
                };
                progress.lock().expect("not poisoned").expect(key, Pending { kind, seq, sent, generation });
                Ok::<(), String>(())
            });
            while let Some(r) = tasks.try_join_next() {
                if let Err(e) = r.map_err(|e| e.to_string()).and_then(|r| r) {
                    failed += 1;
                    if first_error.is_empty() {
                        first_error = e;
                    }
                }
            }
        }
        let pending_at_end = progress.lock().expect("not poisoned").pending.len();
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r.map_err(|e| e.to_string()).and_then(|r| r) {
                failed += 1;
                if first_error.is_empty() {
                    first_error = e;
                }
            }
        }
        Ok(Sent { sent: total, pending_at_end, pending_samples: samples, failed, first_error })
    }

    /// The binding the churn adds to `project` at its change `seq` (viewer, a group of its own), labelled like every
    /// object of the run so cleanup takes it.
    fn churn_binding(&self, workload: &Workload, project: &str, seq: usize) -> ProjectRoleBinding {
        let mut b = ProjectRoleBinding::new(
            &format!("{project}-c{seq}"),
            zenml_api::ProjectRoleBindingSpec {
                project: project.into(),
                role: "viewer".into(),
                subjects: vec![Subject {
                    kind: SubjectKind::Group,
                    name: format!("{project}-churn-{seq}"),
                    project: None,
                    namespace: None,
                }],
                expires_at: None,
            },
        );
        b.labels_mut().insert(BENCH_LABEL.into(), workload.run.clone());
        b
    }
}

/// What sending the changes came to.
struct Sent {
    sent: usize,
    /// Changes not yet done when the last was sent.
    pending_at_end: usize,
    /// Changes not yet done, each second.
    pending_samples: Vec<usize>,
    failed: usize,
    first_error: String,
}

/// A watch task, stopped when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_done_when_its_generation_is_seen_ready_before_or_after_it_is_answered() {
        let mut p = Progress::default();
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(30);
        // Seen Ready at the new generation before the patch's answer came back.
        p.ready("p/a", 3, later);
        p.expect("p/a".into(), Pending { kind: Kind::Quota, seq: 0, sent: t0, generation: 3 });
        assert_eq!(p.done, vec![(Kind::Quota, 0, Duration::from_millis(30))]);
        // An old generation Ready does not count; the new one does.
        p.expect("p/b".into(), Pending { kind: Kind::Labels, seq: 1, sent: t0, generation: 2 });
        p.ready("p/b", 1, later);
        assert!(p.pending.contains_key("p/b"));
        p.ready("p/b", 2, later + Duration::from_millis(10));
        assert_eq!(p.done[1], (Kind::Labels, 1, Duration::from_millis(40)));
        // A binding added becomes removable once Ready; its RoleBinding's delete completes the removal.
        p.adding.insert("x".into(), "rb/a/zenml-prb-x".into());
        p.expect("b/x".into(), Pending { kind: Kind::BindingAdded, seq: 2, sent: t0, generation: 1 });
        p.ready("b/x", 1, later);
        assert_eq!(p.removable.front(), Some(&("x".to_owned(), "rb/a/zenml-prb-x".to_owned())));
        p.expect("rb/a/zenml-prb-x".into(), Pending { kind: Kind::BindingRemoved, seq: 3, sent: t0, generation: 0 });
        p.deleted("rb/a/zenml-prb-x", later);
        assert!(p.pending.is_empty());
        assert_eq!(p.done.len(), 4);
    }
}
