//! Is a live object already as desired? Reconcile writes only when it is not, so an idle operator writes nothing.

use serde::Serialize;
use serde_json::Value;

use super::quantity;
use crate::labels;

/// Whether `live` holds everything `desired` sets, with the same values, and was last applied from the same
/// desired object (its fingerprint annotation matches). Fields that others added are ignored: they are theirs.
pub fn up_to_date<D: Serialize, L: Serialize>(desired: &D, live: &L) -> bool {
    difference(desired, live).is_none()
}

/// The first path where `live` is not as desired, for the debug log; `None` when it is up to date.
pub fn difference<D: Serialize, L: Serialize>(desired: &D, live: &L) -> Option<String> {
    let (Ok(mut d), Ok(l)) = (serde_json::to_value(desired), serde_json::to_value(live)) else {
        return Some("(unserializable)".into());
    };
    // The live side may be a metadata-only object (PartialObjectMetadata): type fields say nothing about drift.
    if let Some(o) = d.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    let pointer = format!("/metadata/annotations/{}", labels::APPLIED_HASH.replace('/', "~1"));
    if d.pointer(&pointer) != l.pointer(&pointer) {
        return Some(format!("metadata.annotations.{}", labels::APPLIED_HASH));
    }
    first_difference(&d, &l, String::new())
}

fn first_difference(desired: &Value, live: &Value, path: String) -> Option<String> {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().find_map(|(k, dv)| {
            let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            first_difference(dv, l.get(k).unwrap_or(&Value::Null), p)
        }),
        (Value::Array(d), Value::Array(l)) if d.len() == l.len() => {
            d.iter().zip(l).enumerate().find_map(|(i, (dv, lv))| first_difference(dv, lv, format!("{path}[{i}]")))
        }
        _ if contains(desired, live) => None,
        _ => Some(path),
    }
}

/// `desired ⊆ live`: objects recursively by key, arrays element by element, quantities by amount.
pub fn contains(desired: &Value, live: &Value) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(k, dv)| contains(dv, l.get(k).unwrap_or(&Value::Null))),
        (Value::Array(d), Value::Array(l)) => d.len() == l.len() && d.iter().zip(l).all(|(dv, lv)| contains(dv, lv)),
        (Value::String(d), Value::String(l)) => quantity::same(d, l),
        (Value::Number(d), Value::String(l)) | (Value::String(l), Value::Number(d)) => {
            quantity::same(&d.to_string(), l)
        }
        // An empty map or list we send is the same as none: the API server drops it.
        (Value::Object(d), Value::Null) => d.is_empty(),
        (Value::Array(d), Value::Null) => d.is_empty(),
        (d, l) => d == l,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn extra_live_fields_are_someone_elses() {
        let d = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"hard": {"cpu": "1"}}});
        let l = json!({"metadata": {"labels": {"a": "1", "theirs": "x"}, "uid": "u"}, "spec": {"hard": {"cpu": "1"}}, "status": {}});
        assert!(contains(&d, &l));
    }

    #[test]
    fn changed_or_missing_fields_are_drift() {
        let d = json!({"metadata": {"labels": {"a": "1"}}});
        assert!(!contains(&d, &json!({"metadata": {"labels": {"a": "2"}}})));
        assert!(!contains(&d, &json!({"metadata": {}})));
        assert!(!contains(&json!({"s": [{"a": 1}, {"b": 2}]}), &json!({"s": [{"a": 1}]})));
    }

    #[test]
    fn quantities_compare_by_amount() {
        assert!(contains(
            &json!({"hard": {"memory": "1024Mi", "cpu": "0.5"}}),
            &json!({"hard": {"memory": "1Gi", "cpu": "500m"}})
        ));
        assert!(!contains(&json!({"hard": {"cpu": "1"}}), &json!({"hard": {"cpu": "2"}})));
    }

    #[test]
    fn the_fingerprint_must_match_so_dropped_fields_get_removed() {
        let live = json!({"metadata": {"annotations": {"zenml.io/applied-hash": "old"}, "labels": {"gone": "x"}}});
        let desired = json!({"metadata": {"annotations": {"zenml.io/applied-hash": "new"}}});
        assert!(!up_to_date(&desired, &live));
        let same = json!({"metadata": {"annotations": {"zenml.io/applied-hash": "old"}}});
        assert!(up_to_date(&same, &live));
    }
}
