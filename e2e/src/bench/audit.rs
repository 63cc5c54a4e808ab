//! Where the write figures come from: the API server's audit log, read between byte offsets and attributed by
//! effective user (docs/benchmarks.md, "Attributing writes").

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::Deserialize;

use super::{Bench, Result};

/// Resources the operator writes per project (its children).
const CHILD_RESOURCES: &[&str] = &[
    "namespaces",
    "resourcequotas",
    "limitranges",
    "networkpolicies",
    "serviceaccounts",
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
];

/// The API server's audit log (JSON lines), read by byte offsets.
pub(super) struct Audit {
    pub path: PathBuf,
}

/// One audited write.
#[derive(Clone, Debug)]
pub(super) struct Write {
    /// The effective user: the impersonated one if any.
    pub user: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub code: u16,
}

impl Write {
    pub(super) fn kind(&self) -> String {
        match self.subresource.as_str() {
            "" => self.resource.clone(),
            sub => format!("{}/{sub}", self.resource),
        }
    }
}

/// What a write of the operator is for.
pub(super) fn category(w: &Write) -> &'static str {
    match (w.group.as_str(), w.resource.as_str(), w.subresource.as_str()) {
        ("coordination.k8s.io", "leases", _) => "lease",
        (_, "events", _) => "event",
        ("zenml.io", _, "status") => "status",
        // The only other writes to our own kinds are the finalizer's JSON patches.
        ("zenml.io", _, "") => "finalizer",
        (_, r, "") if CHILD_RESOURCES.contains(&r) => "child",
        _ => "other",
    }
}

#[derive(Deserialize)]
struct AuditEvent {
    #[serde(default)]
    stage: String,
    #[serde(default)]
    verb: String,
    user: AuditUser,
    #[serde(rename = "impersonatedUser", default)]
    impersonated_user: Option<AuditUser>,
    #[serde(rename = "objectRef", default)]
    object_ref: Option<AuditObject>,
    #[serde(rename = "responseStatus", default)]
    response_status: Option<AuditStatus>,
}

#[derive(Deserialize)]
struct AuditUser {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize, Default)]
struct AuditObject {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    subresource: String,
    #[serde(rename = "apiGroup", default)]
    api_group: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct AuditStatus {
    #[serde(default)]
    code: u16,
}

impl Audit {
    /// The current end of the log.
    pub(super) fn mark(&self) -> std::io::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.len())
    }

    /// The writes logged between two marks.
    pub(super) fn read(&self, from: u64, to: u64) -> Result<Vec<Write>> {
        let mut f = std::fs::File::open(&self.path)?;
        if to < from || f.metadata()?.len() < to {
            return Err(format!("the audit log {} was rotated or truncated during the run", self.path.display()).into());
        }
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::with_capacity((to - from) as usize);
        f.take(to - from).read_to_end(&mut buf)?;
        Ok(parse_audit(&buf))
    }
}

const AUDIT_WRITE_VERBS: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];

fn parse_audit(buf: &[u8]) -> Vec<Write> {
    buf.split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<AuditEvent>(line).ok())
        .filter(|e| e.stage == "ResponseComplete" && AUDIT_WRITE_VERBS.contains(&e.verb.as_str()))
        .map(|e| {
            let o = e.object_ref.unwrap_or_default();
            Write {
                user: e.impersonated_user.map(|u| u.username).unwrap_or(e.user.username),
                verb: e.verb,
                group: o.api_group,
                resource: o.resource,
                subresource: o.subresource,
                namespace: o.namespace,
                name: o.name,
                code: e.response_status.map(|s| s.code).unwrap_or(0),
            }
        })
        .collect()
}

impl Bench {
    pub(super) fn audit_mark(&self) -> Result<u64> {
        Ok(match &self.audit {
            Some(a) => a.mark()?,
            None => 0,
        })
    }

    pub(super) fn audit_writes(&self, from: u64) -> Result<Option<Vec<Write>>> {
        match &self.audit {
            Some(a) => Ok(Some(a.read(from, a.mark()?)?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::OPERATOR_USER;
    use super::*;

    #[test]
    fn audit_events_are_attributed_to_the_impersonated_user() {
        let log = br#"{"kind":"Event","stage":"ResponseComplete","verb":"patch","user":{"username":"admin","groups":["system:masters"]},"impersonatedUser":{"username":"zenml-operator-bench","groups":["system:masters"]},"objectRef":{"resource":"projects","subresource":"status","name":"p","apiGroup":"zenml.io","apiVersion":"v1alpha1"},"responseStatus":{"metadata":{},"code":200}}
{"kind":"Event","stage":"ResponseComplete","verb":"create","user":{"username":"system:serviceaccount:kube-system:namespace-controller"},"objectRef":{"resource":"configmaps","namespace":"p","name":"kube-root-ca.crt","apiVersion":"v1"},"responseStatus":{"code":201}}
{"kind":"Event","stage":"ResponseStarted","verb":"create","user":{"username":"admin"}}
{"kind":"Event","stage":"ResponseComplete","verb":"get","user":{"username":"admin"}}
{"kind":"Event","stage":"ResponseComp"#;
        let writes = parse_audit(log);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].user, OPERATOR_USER);
        assert_eq!(writes[0].kind(), "projects/status");
        assert_eq!(category(&writes[0]), "status");
        assert_eq!(writes[1].user, "system:serviceaccount:kube-system:namespace-controller");
        assert_eq!(category(&writes[1]), "other");
    }
}
