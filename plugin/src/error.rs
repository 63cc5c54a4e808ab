//! Errors as users read them: what failed, on what, and what to do.

use std::fmt;

/// Why a command failed; the plugin prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A workspace or project the user named does not exist.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// The API server refused a call (403): what was refused and the permission it needs.
    #[error("{0}")]
    Forbidden(String),
    /// Anything else, as a sentence for the user.
    #[error("{0}")]
    Message(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Says where the name that was not found came from (`--workspace`, `ZENML_ACTIVE_PROJECT_ID`, ...); other
    /// errors are prefixed with it.
    pub fn given_by(self, origin: impl Into<String>) -> Error {
        match self {
            Error::NotFound(mut n) => {
                n.given_by = Some(origin.into());
                Error::NotFound(n)
            }
            Error::Forbidden(m) => Error::Forbidden(format!("{}: {m}", origin.into())),
            Error::Message(m) => Error::Message(format!("{}: {m}", origin.into())),
        }
    }
}

impl From<String> for Error {
    fn from(s: String) -> Self {
        Error::Message(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Self {
        Error::Message(s.to_owned())
    }
}

/// Returns early with a formatted [`Error::Message`].
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::error::Error::Message(format!($($arg)*))) };
}

/// What kind of thing a name was looked up as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Workspace,
    Project,
}

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::Workspace => "workspaces",
            Kind::Project => "projects",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Kind::Workspace => "workspace",
            Kind::Project => "project",
        })
    }
}

/// The most names a not-found message lists; the rest are counted.
pub const MAX_LISTED: usize = 20;

/// A workspace or project that does not exist, and the ones that do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotFound {
    pub kind: Kind,
    /// The name as the user gave it (for projects: a ZenML ID or a Kubernetes name).
    pub name: String,
    /// Where the name came from, when not from a positional argument: `--workspace`, `ZENML_ACTIVE_PROJECT_ID`.
    pub given_by: Option<String>,
    /// For projects: the workspace whose ZenML IDs were searched, which also scopes `existing`.
    pub workspace: Option<String>,
    /// What does exist (projects as `name (ID id)`), sorted; `Err` says why it could not be listed.
    pub existing: std::result::Result<Vec<String>, String>,
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if let Some(origin) = &self.given_by {
            write!(f, "{origin}: ")?;
        }
        write!(f, "{} {:?} does not exist", self.kind, self.name)?;
        if self.kind == Kind::Project {
            let scope = self.workspace.as_ref().map(|w| format!(" in workspace {w:?}")).unwrap_or_default();
            write!(f, " (no Project has that name, and no project{scope} has that ZenML ID)")?;
        }
        let plural = self.kind.plural();
        let of = match (self.kind, &self.workspace) {
            (Kind::Project, Some(w)) => format!(" of workspace {w}"),
            _ => String::new(),
        };
        match &self.existing {
            Ok(names) if names.is_empty() => match (self.kind, &self.workspace) {
                (Kind::Project, Some(w)) => write!(f, "; workspace {w} has no projects"),
                _ => write!(f, "; there are no {plural}"),
            },
            Ok(names) => {
                write!(
                    f,
                    "; the {plural}{of} are: {}",
                    names.iter().take(MAX_LISTED).cloned().collect::<Vec<_>>().join(", ")
                )?;
                if names.len() > MAX_LISTED {
                    write!(f, " and {} more (`kubectl zenml {} list`)", names.len() - MAX_LISTED, self.kind)?;
                }
                Ok(())
            }
            Err(why) => write!(f, "; cannot list the {plural}{of}: {why}"),
        }
    }
}

impl std::error::Error for NotFound {}

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
            return Error::Message(format!("cannot {} {}: {e}", self.verb, self.target()));
        };
        let msg = status.message.as_str();
        if status.code == 403 {
            return Error::Forbidden(match msg.split_once("denied request: ") {
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
            });
        }
        Error::Message(match status.code {
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
        let msg = Op::new("create", "projects.zenml.io").name("x").err(e).to_string();
        assert!(msg.starts_with(r#"not allowed to create projects.zenml.io "x": that needs the permission `create` on projects.zenml.io at cluster scope"#), "{msg}");
        assert!(msg.contains("zenml-self-service"), "{msg}");
        assert!(msg.contains(r#"User "bob""#), "{msg}");
        let e = api(403, "Forbidden", "rolebindings is forbidden");
        let msg = Op::new("list", "rolebindings.rbac.authorization.k8s.io").namespace("p").err(e).to_string();
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
        let msg = Op::new("create", "projects.zenml.io").name("x").err(e).to_string();
        assert_eq!(
            msg,
            "not allowed to create projects.zenml.io \"x\": bob may not create, change or delete projects of \
             workspace b: only its admins (spec.members with role admin) and cluster admins may"
        );
    }

    fn not_found(kind: Kind, workspace: Option<&str>, existing: Result<Vec<String>, String>) -> NotFound {
        NotFound { kind, name: "nope".into(), given_by: None, workspace: workspace.map(Into::into), existing }
    }

    #[test]
    fn not_found_says_what_exists() {
        let names = |n: &[&str]| Ok(n.iter().map(|s| s.to_string()).collect());
        assert_eq!(
            not_found(Kind::Workspace, None, names(&["a", "b"])).to_string(),
            "workspace \"nope\" does not exist; the workspaces are: a, b"
        );
        assert_eq!(
            not_found(Kind::Workspace, None, names(&[])).to_string(),
            "workspace \"nope\" does not exist; there are no workspaces"
        );
        assert_eq!(
            not_found(Kind::Workspace, None, Err("you lack `list`".into())).to_string(),
            "workspace \"nope\" does not exist; cannot list the workspaces: you lack `list`"
        );
        assert_eq!(
            not_found(Kind::Project, Some("ml"), names(&["fraud (ID Fraud)"])).to_string(),
            "project \"nope\" does not exist (no Project has that name, and no project in workspace \"ml\" has that \
             ZenML ID); the projects of workspace ml are: fraud (ID Fraud)"
        );
        assert!(
            not_found(Kind::Project, Some("ml"), names(&[])).to_string().ends_with("; workspace ml has no projects")
        );
        assert!(
            not_found(Kind::Project, None, names(&[]))
                .to_string()
                .ends_with("(no Project has that name, and no project has that ZenML ID); there are no projects")
        );
        let many: Vec<String> = (0..MAX_LISTED + 3).map(|i| format!("p{i:02}")).collect();
        let msg = not_found(Kind::Project, None, Ok(many)).to_string();
        assert!(msg.contains("p19 and 3 more (`kubectl zenml project list`)") && !msg.contains("p20"), "{msg}");
    }

    #[test]
    fn given_by_says_where_the_name_came_from() {
        let e = Error::from(not_found(Kind::Workspace, None, Ok(vec![]))).given_by("--workspace");
        assert!(matches!(&e, Error::NotFound(n) if n.kind == Kind::Workspace));
        assert!(e.to_string().starts_with("--workspace: workspace \"nope\" does not exist"), "{e}");
        let e = Error::from("boom").given_by("ZENML_ACTIVE_PROJECT_ID");
        assert_eq!(e.to_string(), "ZENML_ACTIVE_PROJECT_ID: boom");
        assert!(matches!(Op::new("get", "x").err(api(403, "Forbidden", "no")), Error::Forbidden(_)));
    }

    #[test]
    fn other_statuses() {
        assert_eq!(
            Op::new("get", "workspaces.zenml.io").name("w").err(api(404, "NotFound", "nope")).to_string(),
            "workspaces.zenml.io \"w\" not found"
        );
        assert!(Op::new("get", "x").err(api(401, "Unauthorized", "")).to_string().contains("credentials"));
        assert!(
            Op::new("create", "x").err(api(422, "Invalid", "spec.role: bad")).to_string().contains("spec.role: bad")
        );
    }
}
