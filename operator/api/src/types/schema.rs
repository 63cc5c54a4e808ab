//! Hand-written schema fragments for fields whose validation schemars cannot express: maps whose keys and values
//! need CEL rules, and bounds that keep the API server's CEL cost estimate within its budget.

use schemars::{Schema, SchemaGenerator, json_schema};

/// DNS-1123 label: what a namespace name, and so a project name, must be.
pub const DNS1123_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// DNS-1123 subdomain: what a ServiceAccount name must be.
pub const DNS1123_SUBDOMAIN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A resource name as ResourceQuota and LimitRange take it: `pods`, `requests.cpu`, `requests.nvidia.com/gpu`,
/// `count/deployments.apps`.
const RESOURCE_NAME: &str =
    "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/// A qualified label or annotation key: an optional DNS-subdomain prefix and a name of at most 63 characters.
const QUALIFIED_KEY: &str = "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$";
/// A label value: at most 63 characters, alphanumeric at both ends.
const LABEL_VALUE: &str = "^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$";
/// Keys whose prefix is, or ends in, one of the domains the operator and Kubernetes reserve for themselves.
const RESERVED_KEY: &str = "^([^/]*\\\\.)?(zenml\\\\.io|kubernetes\\\\.io|k8s\\\\.io)/";

/// A non-negative quantity as the API server parses it (`500m`, `2`, `1.5`, `4Gi`, `1e3`), with at most 19 digits on
/// either side of the point and a two-digit exponent: parsing anything longer costs the API server seconds.
const NON_NEGATIVE_QUANTITY: &str =
    "^\\+?(([0-9]{1,19}(\\.[0-9]{0,19})?)|(\\.[0-9]{1,19}))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?[0-9]{1,2}))?$";

/// Most keys one map may hold; it bounds the CEL cost of checking every key.
const MAX_KEYS: u32 = 64;

/// Resource names a ResourceQuota takes without a domain; anything else needs one (`requests.nvidia.com/gpu`,
/// `count/deployments.apps`, `<class>.storageclass.storage.k8s.io/requests.storage`).
const QUOTA_NAMES: &str = "['pods', 'services', 'replicationcontrollers', 'resourcequotas', 'secrets', 'configmaps', \
    'persistentvolumeclaims', 'services.nodeports', 'services.loadbalancers', 'cpu', 'memory', 'storage', \
    'ephemeral-storage', 'requests.cpu', 'requests.memory', 'requests.storage', 'requests.ephemeral-storage', \
    'limits.cpu', 'limits.memory', 'limits.ephemeral-storage']";
/// Resource names a container LimitRange takes without a domain.
const CONTAINER_NAMES: &str = "['cpu', 'memory', 'ephemeral-storage']";

/// The largest quantity any of our fields takes (`resources::quantity::MAX`), as a plain integer for the integer form.
const MAX_QUANTITY: i64 = 1_000_000_000_000_000_000;

/// Quantities by resource name, with `key_rule` saying which names are valid.
///
/// Every quantity is bounded, so that whatever the API server admits the operator represents exactly (a budget must
/// never treat an unreadable `1e40` as nothing) and no quota costs the API server seconds to canonicalise.
fn quantity_map(key_rule: String, message: &str) -> Schema {
    let max = crate::resources::quantity::MAX;
    // Only a quantity of the bounded syntax is parsed: the pattern refuses the rest, and CEL rules run all the same.
    let syntax = NON_NEGATIVE_QUANTITY.replace('\\', "\\\\");
    let within =
        format!("!string(self[k]).matches('{syntax}') || quantity(string(self[k])).compareTo(quantity('{max}')) <= 0");
    json_schema!({
        "type": "object",
        "maxProperties": MAX_KEYS,
        // A pattern rather than a CEL rule for the syntax: it costs nothing in the CEL budget, and the error names
        // the exact key.
        "additionalProperties": {
            "x-kubernetes-int-or-string": true,
            "pattern": NON_NEGATIVE_QUANTITY,
            "maxLength": 40,
            "minimum": 0,
            "maximum": MAX_QUANTITY,
        },
        "x-kubernetes-validations": [
            {
                "rule": format!("self.all(k, {within})"),
                // A static message: naming the key in a messageExpression costs far past the CRD's CEL budget.
                "message": format!("every quantity must be at most {max} (10^18 of its resource's unit); lower the larger ones"),
                "reason": "FieldValueInvalid",
            },
            {
                "rule": format!("self.all(k, size(k) <= 253 && k.matches('{RESOURCE_NAME}') && ({key_rule}))"),
                "message": message,
                "reason": "FieldValueInvalid",
            },
        ],
    })
}

/// Quota or budget: the names a ResourceQuota accepts.
pub fn quota_list(_: &mut SchemaGenerator) -> Schema {
    quota_map()
}

fn quota_map() -> Schema {
    quantity_map(
        format!("k.contains('/') || k in {QUOTA_NAMES} || k.matches('^(requests\\\\.)?hugepages-[A-Za-z0-9.]+$')"),
        "keys must be resources a ResourceQuota limits: pods, requests.cpu, requests.memory, limits.cpu, limits.memory, \
         requests.storage, requests.ephemeral-storage, configmaps, secrets, services, persistentvolumeclaims, hugepages-<size>, \
         or a domain-qualified name such as requests.nvidia.com/gpu or count/deployments.apps",
    )
}

/// Container defaults and bounds: the names a LimitRange accepts for containers.
pub fn container_list(_: &mut SchemaGenerator) -> Schema {
    quantity_map(
        format!("k.contains('/') || k in {CONTAINER_NAMES} || k.matches('^hugepages-[A-Za-z0-9.]+$')"),
        "keys must be container resources: cpu, memory, ephemeral-storage, hugepages-<size>, or a domain-qualified name such as nvidia.com/gpu",
    )
}

/// Labels or annotations a Project asks for: valid keys, no reserved prefixes; label values are checked too.
fn key_value_map(values_are_labels: bool, allow_pod_security: bool) -> Schema {
    let reserved = if allow_pod_security {
        format!("k.matches('{RESERVED_KEY}') && !k.startsWith('pod-security.kubernetes.io/')")
    } else {
        format!("k.matches('{RESERVED_KEY}')")
    };
    let reserved_msg = if allow_pod_security {
        "keys under zenml.io/, kubernetes.io/ and k8s.io/ are reserved for the operator and Kubernetes (pod-security.kubernetes.io/ is allowed here)"
    } else {
        if values_are_labels {
            "keys under zenml.io/, kubernetes.io/ and k8s.io/ are reserved for the operator and Kubernetes (Pod Security labels are set by the Workspace's projectDefaults.namespaceLabels)"
        } else {
            "keys under zenml.io/, kubernetes.io/ and k8s.io/ are reserved for the operator and Kubernetes"
        }
    };
    let mut rules = vec![
        serde_json::json!({
            "rule": format!("self.all(k, size(k) <= 317 && k.matches('{QUALIFIED_KEY}'))"),
            "message": "keys must be qualified names: an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            "reason": "FieldValueInvalid",
        }),
        serde_json::json!({
            "rule": format!("!self.exists(k, {reserved})"),
            "message": reserved_msg,
            "reason": "FieldValueForbidden",
        }),
    ];
    let value = if values_are_labels {
        rules.push(serde_json::json!({
            "rule": format!("self.all(k, self[k].matches('{LABEL_VALUE}'))"),
            "message": "label values must be at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
            "reason": "FieldValueInvalid",
        }));
        serde_json::json!({"type": "string", "maxLength": 63})
    } else {
        serde_json::json!({"type": "string", "maxLength": 4096})
    };
    json_schema!({
        "type": "object",
        "maxProperties": MAX_KEYS,
        "additionalProperties": value,
        "x-kubernetes-validations": rules,
    })
}

/// Namespace labels a Project asks for.
pub fn project_labels(_: &mut SchemaGenerator) -> Schema {
    key_value_map(true, false)
}

/// Annotations a Project asks for, on its namespace or its runner ServiceAccount.
pub fn project_annotations(_: &mut SchemaGenerator) -> Schema {
    key_value_map(false, false)
}

/// Namespace labels a Workspace enforces on all its projects; Pod Security labels are allowed here.
pub fn workspace_labels(_: &mut SchemaGenerator) -> Schema {
    key_value_map(true, true)
}

/// A DNS-1123 label field that names a project or workspace.
pub fn dns_label(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL})
}

/// A set of DNS-1123 labels naming workspaces.
pub fn dns_label_set(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "minLength": 1, "maxLength": 63, "pattern": DNS1123_LABEL},
    })
}

/// A set of CIDRs, each in its canonical form (`10.0.0.0/8`, not `10.0.0.1/8`) as a NetworkPolicy ipBlock takes it.
pub fn cidr_set(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 1,
            "maxLength": 43,
            "x-kubernetes-validations": [{
                "rule": "isCIDR(self) && cidr(self) == cidr(self).masked()",
                "message": "must be a CIDR with no host bits set, e.g. 10.20.0.0/16 or 203.0.113.7/32",
                "reason": "FieldValueInvalid",
            }],
        },
    })
}

/// A set of class names (StorageClass, IngressClass, PriorityClass, RuntimeClass): DNS-1123 subdomains.
pub fn class_name_set(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "x-kubernetes-list-type": "set",
        "items": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": DNS1123_SUBDOMAIN},
    })
}

/// A set of image reference prefixes, each a registry host (optionally with a port) and path segments, ending with
/// `/` so that it never matches a longer name.
pub fn image_prefix_set(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "maxItems": 64,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 2,
            "maxLength": 255,
            "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]([-a-z0-9._]*[a-z0-9])?)*/$",
        },
    })
}

/// Node labels a pod must select: label keys and values.
pub fn node_selector(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {"type": "string", "maxLength": 63, "pattern": LABEL_VALUE},
        "x-kubernetes-validations": [{
            "rule": format!("self.all(k, size(k) <= 317 && k.matches('{QUALIFIED_KEY}'))"),
            "message": "keys must be label keys: an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.'",
            "reason": "FieldValueInvalid",
        }],
    })
}
