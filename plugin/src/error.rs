//! Errors as users read them: what failed, on what, and what to do.

use std::fmt;

/// A message for the user; the plugin exits non-zero with it.
#[derive(Debug)]
pub struct Error(pub String);

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error(s.to_owned())
    }
}

/// Returns early with a formatted [`Error`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error(format!($($arg)*))) };
}

/// The HTTP status of an API error.
pub fn code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_forbidden(e: &kube::Error) -> bool {
    code(e) == Some(403)
}

pub fn is_not_found(e: &kube::Error) -> bool {
    code(e) == Some(404)
}

/// An API call, for messages: `create` on `projects.zenml.io` named `fraud`.
#[derive(Clone, Copy, Debug)]
pub struct Op<'a> {
    pub verb: &'a str,
    /// `projects.zenml.io`, `rolebindings.rbac.authorization.k8s.io`, `namespaces`.
    pub resource: &'a str,
    pub name: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

impl<'a> Op<'a> {
    pub fn new(verb: &'a str, resource: &'a str) -> Op<'a> {
        Op { verb, resource, name: None, namespace: None }
    }

    pub fn name(self, name: &'a str) -> Op<'a> {
        Op { name: Some(name), ..self }
    }

    pub fn namespace(self, namespace: &'a str) -> Op<'a> {
        Op { namespace: Some(namespace), ..self }
    }

    fn target(&self) -> String {
        let mut t = self.resource.to_owned();
        if let Some(n) = self.name {
            t.push_str(&format!(" {n:?}"));
        }
        if let Some(ns) = self.namespace {
            t.push_str(&format!(" in namespace {ns:?}"));
        }
        t
    }

    /// The permission this call needs, as RBAC names it.
    pub fn permission(&self) -> String {
        let scope = match self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "at cluster scope".to_owned(),
        };
        format!("`{}` on {} {scope}", self.verb, self.resource)
    }

    /// Turns a failed call into a message that says what was refused and why.
    pub fn err(&self, e: kube::Error) -> Error {
        let kube::Error::Api(status) = &e else {
            return Error(format!("cannot {} {}: {e}", self.verb, self.target()));
        };
        let msg = status.message.as_str();
        Error(match status.code {
            403 => match msg.split_once("denied request: ") {
                // A ValidatingAdmissionPolicy said no: its message says who may.
                Some((_, why)) if msg.contains("ValidatingAdmissionPolicy") => {
                    format!("not allowed to {} {}: {why}", self.verb, self.target())
                }
                _ => {
                    let hint = if self.resource.ends_with(".zenml.io") {
                        " (a cluster admin grants the base rights on projects and bindings with the \
                         zenml-self-service ClusterRole; workspace and project admins are set in the Workspace's \
                         spec.members and by ProjectRoleBindings)"
                    } else {
                        ""
                    };
                    format!(
                        "not allowed to {} {}: that needs the permission {}{hint}\n  server: {msg}",
                        self.verb,
                        self.target(),
                        self.permission()
                    )
                }
            },
            404 => format!("{} not found", self.target()),
            401 => "the API server rejected the credentials of this kubeconfig user (401 Unauthorized): log in \
                    again, or check --context"
                .to_owned(),
            409 => format!("cannot {} {}: conflict: {msg}", self.verb, self.target()),
            422 => format!("the API server refused to {} {} as invalid: {msg}", self.verb, self.target()),
            code => format!("cannot {} {}: {msg} ({code} {})", self.verb, self.target(), status.reason),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        let status = kube::core::Status::failure(message, reason).with_code(code);
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn forbidden_by_rbac_names_the_permission() {
        let e = api(
            403,
            "Forbidden",
            r#"projects.zenml.io is forbidden: User "bob" cannot create resource "projects" in API group "zenml.io" at the cluster scope"#,
        );
        let msg = Op::new("create", "projects.zenml.io").name("x").err(e).0;
        assert!(msg.starts_with(r#"not allowed to create projects.zenml.io "x": that needs the permission `create` on projects.zenml.io at cluster scope"#), "{msg}");
        assert!(msg.contains("zenml-self-service"), "{msg}");
        assert!(msg.contains(r#"User "bob""#), "{msg}");
        let e = api(403, "Forbidden", "rolebindings is forbidden");
        let msg = Op::new("list", "rolebindings.rbac.authorization.k8s.io").namespace("p").err(e).0;
        assert!(msg.contains("`list` on rolebindings.rbac.authorization.k8s.io in namespace p"), "{msg}");
    }

    #[test]
    fn forbidden_by_policy_says_who_may() {
        let e = api(
            403,
            "Forbidden",
            "projects.zenml.io \"x\" is forbidden: ValidatingAdmissionPolicy 'zenml-project-delegation' with binding \
             'zenml-project-delegation' denied request: bob may not create, change or delete projects of workspace b: \
             only its admins (spec.members with role admin) and cluster admins may",
        );
        let msg = Op::new("create", "projects.zenml.io").name("x").err(e).0;
        assert_eq!(
            msg,
            "not allowed to create projects.zenml.io \"x\": bob may not create, change or delete projects of \
             workspace b: only its admins (spec.members with role admin) and cluster admins may"
        );
    }

    #[test]
    fn other_statuses() {
        assert_eq!(
            Op::new("get", "workspaces.zenml.io").name("w").err(api(404, "NotFound", "nope")).0,
            "workspaces.zenml.io \"w\" not found"
        );
        assert!(Op::new("get", "x").err(api(401, "Unauthorized", "")).0.contains("credentials"));
        assert!(Op::new("create", "x").err(api(422, "Invalid", "spec.role: bad")).0.contains("spec.role: bad"));
    }
}
