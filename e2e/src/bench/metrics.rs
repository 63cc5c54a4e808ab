//! Where the other figures come from: the control plane's and the operator's CPU and memory from /proc, and the
//! API server's and the operator's Prometheus metrics.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use super::Result;

/// The pids `e2e/cluster` recorded next to the kubeconfig, if that is the local cluster.
pub(super) fn control_plane(kubeconfig: &Path) -> Vec<(String, u32)> {
    let dir = kubeconfig.parent().unwrap_or(Path::new(".")).join("pids");
    ["kube-apiserver", "etcd", "kube-controller-manager"]
        .iter()
        .filter_map(|c| {
            let pid = std::fs::read_to_string(dir.join(c)).ok()?.trim().parse().ok()?;
            Some(((*c).to_owned(), pid))
        })
        .collect()
}

/// User + system CPU time of a process, in seconds (USER_HZ is 100 on Linux).
pub(super) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// "; CPU seconds meanwhile: kube-apiserver 3.1, ... (of 2 cores x 4.0 s)", or nothing without /proc figures.
pub(super) fn cpu_used(before: &[(String, f64)], after: &[(String, f64)], wall: Duration) -> String {
    let used: Vec<String> = after
        .iter()
        .filter_map(|(name, t1)| {
            let t0 = before.iter().find(|(n, _)| n == name)?.1;
            Some(format!("{name} {:.1}", t1 - t0))
        })
        .collect();
    if used.is_empty() {
        return String::new();
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("; CPU seconds meanwhile: {} (of {cores} cores x {:.1} s)", used.join(", "), wall.as_secs_f64())
}

/// CPU seconds `name` used between two readings of `Bench::cpu`.
pub(super) fn cpu_of(before: &[(String, f64)], after: &[(String, f64)], name: &str) -> Option<f64> {
    let at = |v: &[(String, f64)]| v.iter().find(|(n, _)| n == name).map(|(_, s)| *s);
    Some(at(after)? - at(before)?)
}

/// What the API server did in a window: its CPU seconds and the write requests it served (all clients).
#[derive(Clone, Copy)]
pub(super) struct ApiWork {
    pub cpu_s: f64,
    pub writes: f64,
}

impl ApiWork {
    /// From CPU figures (`Bench::cpu`) and `apiserver_writes` at both ends; `None` without the API server's process.
    pub(super) fn of(
        cpu0: &[(String, f64)],
        cpu1: &[(String, f64)],
        m0: &BTreeMap<String, f64>,
        m1: &BTreeMap<String, f64>,
    ) -> Option<ApiWork> {
        let at = |v: &[(String, f64)]| v.iter().find(|(n, _)| n == "kube-apiserver").map(|(_, s)| *s);
        let cpu_s = at(cpu1)? - at(cpu0)?;
        (cpu_s > 0.0).then(|| ApiWork { cpu_s, writes: delta(m0, m1, |_| true) })
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "{:.1} s for {:.0} writes ({:.2} ms each)",
            self.cpu_s,
            self.writes,
            1000.0 * self.cpu_s / self.writes.max(1.0)
        )
    }
}

/// Resident memory of a process, from /proc.
pub(super) struct Memory {
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

pub(super) fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Memory { rss_kib: field("VmRSS:")?, hwm_kib: field("VmHWM:")? })
}

/// Sum of a metric's samples from a Prometheus text body, optionally only those whose labels contain `filter`.
pub(super) fn metric(body: &str, name: &str, filter: Option<&str>) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| filter.is_none_or(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Write requests the API server has served, by `resource[/subresource]`, from `apiserver_request_total`.
pub(super) fn apiserver_writes() -> Result<BTreeMap<String, f64>> {
    let out = crate::run(crate::kubectl().args(["get", "--raw", "/metrics"]));
    if !out.success() {
        return Err(format!("kubectl get --raw /metrics: {}", out.stderr).into());
    }
    Ok(parse_request_totals(&out.stdout))
}

fn parse_request_totals(body: &str) -> BTreeMap<String, f64> {
    const WRITES: &[&str] = &["POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"];
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line["apiserver_request_total".len()..].rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let labels = parse_labels(labels);
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        if !WRITES.contains(&get("verb")) || !get("dry_run").is_empty() {
            continue;
        }
        let key = match get("subresource") {
            "" => get("resource").to_owned(),
            sub => format!("{}/{sub}", get("resource")),
        };
        *out.entry(key).or_default() += value;
    }
    out
}

/// `{a="x",b="y"}` into a map (values unescaped).
fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut chars = inner.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() || chars.next() != Some('"') {
            break;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.extend(chars.next()),
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

pub(super) fn delta(m0: &BTreeMap<String, f64>, m1: &BTreeMap<String, f64>, keep: impl Fn(&str) -> bool) -> f64 {
    m1.iter().filter(|(k, _)| keep(k)).map(|(k, v)| v - m0.get(k).unwrap_or(&0.0)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_totals_count_write_verbs_by_resource() {
        let body = r#"# HELP apiserver_request_total x
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="namespaces",scope="resource",subresource="",verb="POST",version="v1"} 12
apiserver_request_total{code="200",component="apiserver",dry_run="",group="zenml.io",resource="projects",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="namespaces",scope="resource",subresource="",verb="GET",version="v1"} 99
apiserver_request_total{code="201",component="apiserver",dry_run="All",group="",resource="namespaces",scope="resource",subresource="",verb="POST",version="v1"} 5
"#;
        let m = parse_request_totals(body);
        assert_eq!(m.get("namespaces"), Some(&12.0));
        assert_eq!(m.get("projects/status"), Some(&3.0));
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn labels_parse_with_escapes() {
        let l = parse_labels(r#"{a="x",b="y\"z",c=""}"#);
        assert_eq!(l["a"], "x");
        assert_eq!(l["b"], "y\"z");
        assert_eq!(l["c"], "");
    }
}
