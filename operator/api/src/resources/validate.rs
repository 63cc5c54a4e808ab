//! Kubernetes' own name rules, in Rust: the operator re-checks what the schema should already have refused (objects
//! stored before a schema tightened, or with validation off), and the property tests check every output with them.

/// A DNS-1123 label: what a namespace name must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what most object names must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// A label or annotation key: `[prefix/]name`.
pub fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    prefix.is_none_or(is_dns_subdomain) && is_label_value(name) && !name.is_empty()
}

/// A label value: at most 63 characters, alphanumeric at both ends, `-`, `_`, `.` inside.
pub fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// Namespaces no Project may ever claim: `default`, `kube-*`, and the extra ones given (the operator's own).
pub fn is_protected_namespace(name: &str, extra: &[String]) -> bool {
    name == "default" || name.starts_with("kube-") || extra.iter().any(|e| e == name)
}

/// Why a project name cannot be its namespace's name, if it cannot.
pub fn project_name_problem(name: &str, protected: &[String]) -> Option<String> {
    if !is_dns_label(name) {
        return Some(format!(
            "project name {name:?} is not a DNS-1123 label and cannot name a namespace; recreate the project with a valid name"
        ));
    }
    if is_protected_namespace(name, protected) {
        return Some(format!("namespace {name:?} is protected; choose another project name"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(is_dns_label("fraud-detection") && is_dns_label("a") && is_dns_label(&"a".repeat(63)));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad}");
        }
        assert!(is_dns_subdomain("a.b-c.d") && !is_dns_subdomain("a..b"));
        assert!(
            is_qualified_name("zenml.io/project") && is_qualified_name("cost-center") && is_qualified_name("a_b.C")
        );
        assert!(
            !is_qualified_name("a/b/c")
                && !is_qualified_name("/x")
                && !is_qualified_name("x/")
                && !is_qualified_name("bad key")
        );
        assert!(
            is_label_value("") && is_label_value("fraud_detection") && !is_label_value("-x") && !is_label_value("a b")
        );
        assert!(is_protected_namespace("kube-system", &[]) && is_protected_namespace("ops", &["ops".into()]));
        assert!(project_name_problem("default", &[]).is_some() && project_name_problem("ok", &[]).is_none());
    }
}
