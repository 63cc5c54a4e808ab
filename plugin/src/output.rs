//! What the plugin prints: aligned tables for people, one JSON or YAML document for scripts.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;

use crate::error::{Error, Result};

/// `-o`: how results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Tables and sentences, for people.
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// Prints `value` as one JSON or YAML document.
pub fn print_doc<T: Serialize>(format: Format, value: &T) -> Result<()> {
    let json = serde_json::to_value(value)?;
    match format {
        Format::Yaml => {
            let text = serde_saphyr::to_string(&json).map_err(|e| Error::WriteYaml(Box::new(e)))?;
            print!("{text}");
        }
        _ => println!("{}", serde_json::to_string_pretty(&json).expect("JSON values serialize")),
    }
    Ok(())
}

/// A kubectl-style list object holding `items`, with `managedFields` left out (as `kubectl get` does).
pub fn list_doc<T: Serialize>(items: &[T]) -> serde_json::Value {
    let items: Vec<serde_json::Value> = items.iter().map(object_doc).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items})
}

/// An object as JSON, without `managedFields`.
pub fn object_doc<T: Serialize>(item: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(item).expect("API objects serialize");
    if let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    v
}

/// Columns padded to their widest cell, like `kubectl get`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 3));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The Ready condition: `(status, reason, message)`, `Unknown` when there is none yet or it describes an older
/// generation.
pub fn ready(conditions: &[Condition], generation: Option<i64>) -> (String, String, String) {
    match conditions.iter().find(|c| c.type_ == "Ready") {
        Some(c) if c.observed_generation.is_none() || generation.is_none() || c.observed_generation == generation => {
            (c.status.clone(), c.reason.clone(), c.message.clone())
        }
        Some(c) => (
            "Unknown".into(),
            "Reconciling".into(),
            format!("the operator has not yet seen the latest change (last: {}: {})", c.reason, c.message),
        ),
        None => ("Unknown".into(), "Pending".into(), "the operator has not reported on it yet".into()),
    }
}

/// `True`, or `False (Reason)`.
pub fn ready_cell(conditions: &[Condition], generation: Option<i64>) -> String {
    let (status, reason, _) = ready(conditions, generation);
    if status == "True" { status } else { format!("{status} ({reason})") }
}

/// `requests.cpu 500m/8, pods 2/50`: use and limit per resource that has a limit.
pub fn quota_cell(hard: &BTreeMap<String, Quantity>, used: &BTreeMap<String, Quantity>) -> String {
    if hard.is_empty() {
        return "-".into();
    }
    hard.iter()
        .map(|(k, h)| format!("{k} {}/{}", used.get(k).map_or("0", |q| q.0.as_str()), h.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `admin=1 developer=3`.
pub fn members_cell(members: &BTreeMap<String, i32>) -> String {
    if members.is_empty() {
        return "-".into();
    }
    members.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

pub fn dash(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("-").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let t = table(&["NAME", "READY"], &[vec!["a".into(), "True".into()], vec!["longer".into(), "-".into()]]);
        assert_eq!(t, "NAME     READY\na        True\nlonger   -");
    }

    #[test]
    fn cells() {
        let q = |s: &str| Quantity(s.into());
        let hard = BTreeMap::from([("pods".to_owned(), q("50")), ("requests.cpu".to_owned(), q("8"))]);
        let used = BTreeMap::from([("pods".to_owned(), q("2"))]);
        assert_eq!(quota_cell(&hard, &used), "pods 2/50, requests.cpu 0/8");
        assert_eq!(quota_cell(&BTreeMap::new(), &used), "-");
        assert_eq!(members_cell(&BTreeMap::from([("admin".into(), 1), ("viewer".into(), 4)])), "admin=1 viewer=4");
        let cond = |g| Condition {
            type_: "Ready".into(),
            status: "False".into(),
            reason: "DuplicateProjectId".into(),
            message: "m".into(),
            observed_generation: Some(g),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ),
        };
        assert_eq!(ready_cell(&[cond(2)], Some(2)), "False (DuplicateProjectId)");
        assert_eq!(ready_cell(&[cond(1)], Some(2)), "Unknown (Reconciling)");
        assert_eq!(ready_cell(&[], Some(2)), "Unknown (Pending)");
    }
}
