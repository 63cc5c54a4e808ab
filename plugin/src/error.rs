//! Errors as users read them: what failed, on what, and what to do.
//!
//! One [`Error`] enum, one variant per kind of failure, so callers match on what went wrong (a refusal they can
//! do without, a name that does not exist) instead of on message text. The messages are the variants' `Display`.

use std::fmt;
use std::time::Duration;

use crate::kubeconfig::KubeconfigError;
use crate::names;
use crate::session::ENV_PROJECT;

/// Why a command failed; the plugin prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A workspace or project the user named does not exist.
    #[error(transparent)]
    NotFound(#[from] NotFound),
    /// The API server refused a call (403): what was refused, and the permission it needs or the policy's reason.
    #[error(transparent)]
    Forbidden(Box<Forbidden>),
    /// The API server rejected the kubeconfig user's credentials (401).
    #[error(
        "the API server rejected the credentials of this kubeconfig user (401 Unauthorized): log in again, or check \
         --context"
    )]
    Unauthorized,
    /// The API server answered a call with another error status.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// A call got no answer from the API server it could use (connection, TLS, decoding).
    #[error("cannot {} {}: {source}", op.verb, op.target())]
    Request { op: Box<Op>, source: Box<kube::Error> },
    #[error(transparent)]
    Kubeconfig(#[from] KubeconfigError),
    /// A value given on the command line cannot be used.
    #[error(transparent)]
    InvalidArgument(#[from] InvalidArgument),
    /// No project was named, and neither the environment nor the context's namespace gives one.
    #[error(
        "no active project: {}. Run `kubectl zenml project set <PROJECT>`, set {ENV_PROJECT}, or pass --project",
        no_project_because(context, namespace.as_deref())
    )]
    NoActiveProject { context: String, namespace: Option<String> },
    /// No workspace was named, and none is active; `fix` says how to name one.
    #[error("no active workspace: {fix} (`kubectl zenml workspace list` shows them)")]
    NoActiveWorkspace { fix: &'static str },
    /// A ZenML project ID given without a workspace matches projects in several.
    #[error(
        "project ID {id:?} is in several workspaces ({}): pass --workspace, or the project's Kubernetes name",
        places.join(", ")
    )]
    IdInSeveralWorkspaces { id: String, places: Vec<String> },
    /// A ZenML project ID is not in the active workspace, but is in others.
    #[error(
        "no project with ID {id:?} in workspace {workspace:?}, but there is {}: pass --workspace, or the project's \
         Kubernetes name",
        places.join(", ")
    )]
    IdInOtherWorkspaces { id: String, workspace: String, places: Vec<String> },
    #[error(
        "project ID {id:?} is already registered in workspace {workspace:?}, as Project {project} (namespace \
         {namespace}); `kubectl zenml project set {id}` makes it the active project"
    )]
    AlreadyRegistered { id: String, workspace: String, project: String, namespace: String },
    #[error(
        "every name for project ID {id:?} is taken ({}) by other projects or namespaces: choose one with --k8s-name",
        taken.join(", ")
    )]
    NamesTaken { id: String, taken: Vec<String> },
    /// A project did not become Ready: `waited` is the timeout, `None` when it is stuck and waiting would not help.
    #[error(
        "project {project} is not Ready{}: {reason}: {message}",
        waited.map(|d| format!(" after {}", names::format_duration(d))).unwrap_or_default()
    )]
    NotReady { project: String, reason: String, message: String, waited: Option<Duration> },
    /// A grant was made, but its ProjectRoleBinding does not grant anything.
    #[error("the grant is not in force: {reason}: {message}")]
    NotInForce { reason: String, message: String },
    /// `kind` is `project` or `ProjectRoleBinding`.
    #[error("{kind} {name} was deleted while waiting for it")]
    DeletedWhileWaiting { kind: &'static str, name: String },
    /// `member remove` of a role the subject does not hold through any ProjectRoleBinding.
    #[error(
        "{who} does not have role {role} in project {project} (`kubectl zenml member list -p {project}` shows who does)"
    )]
    NoSuchGrant { who: String, role: String, project: String },
    /// `member remove` of a role the subject holds only as a workspace member.
    #[error("{who} has no ProjectRoleBinding for role {} in project {project}; {grant}", grant.role)]
    GrantedByWorkspace { who: String, project: String, grant: WorkspaceGrant },
    /// `project prune` without `--yes` and without a terminal to confirm on.
    #[error(
        "{count} expired projects would be deleted, but there is no terminal to confirm on: nothing was deleted; \
         pass --yes to delete them without asking"
    )]
    ConfirmationNeeded { count: usize },
    #[error("ProjectRoleBinding {0} kept changing while removing a subject from it; try again")]
    KeptChanging(String),
    #[error("cannot serialize the output: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("cannot write YAML: {0}")]
    WriteYaml(Box<serde_saphyr::SerializeError>),
    /// Where the failing name came from: `--workspace`, `ZENML_ACTIVE_PROJECT_ID`.
    #[error("{by}: {source}")]
    Given { by: String, source: Box<Error> },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Says where the name that failed came from (`--workspace`, `ZENML_ACTIVE_PROJECT_ID`, ...): the message is
    /// prefixed with it.
    pub fn given_by(self, origin: impl Into<String>) -> Error {
        Error::Given { by: origin.into(), source: Box::new(self) }
    }
}

fn no_project_because(context: &str, namespace: Option<&str>) -> String {
    match namespace {
        None => format!("context {context:?} sets no namespace"),
        Some(ns) => format!("namespace {ns:?} of context {context:?} is not a ZenML project"),
    }
}

/// A subject's role in every project of a workspace, through the Workspace's `spec.members`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{who} has role {role} in every project of workspace {workspace} through its spec.members: a workspace admin \
     edits the Workspace to change that"
)]
pub struct WorkspaceGrant {
    pub who: String,
    pub role: String,
    pub workspace: String,
}

/// A command-line value that cannot be used, with the flag (or argument) it was given to and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidArgument {
    /// `--expires-at`, `project ID`.
    pub flag: &'static str,
    /// `None` when the problem is a missing or conflicting value rather than a wrong one.
    pub value: Option<String>,
    /// What is wrong and what is accepted: `is in the past`.
    pub problem: String,
}

impl InvalidArgument {
    pub fn new(flag: &'static str, value: impl Into<String>, problem: impl Into<String>) -> InvalidArgument {
        InvalidArgument { flag, value: Some(value.into()), problem: problem.into() }
    }

    pub fn without_value(flag: &'static str, problem: impl Into<String>) -> InvalidArgument {
        InvalidArgument { flag, value: None, problem: problem.into() }
    }
}

impl fmt::Display for InvalidArgument {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{} {v:?} {}", self.flag, self.problem),
            None => write!(f, "{}: {}", self.flag, self.problem),
        }
    }
}

impl std::error::Error for InvalidArgument {}

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
#[derive(Debug)]
pub struct NotFound {
    pub kind: Kind,
    /// The name as the user gave it (for projects: a ZenML ID or a Kubernetes name).
    pub name: String,
    /// For projects: the workspace whose ZenML IDs were searched, which also scopes `existing`.
    pub workspace: Option<String>,
    /// What does exist (projects as `name (ID id)`), sorted, or why it could not be listed.
    pub existing: std::result::Result<Vec<String>, Unlisted>,
}

/// Why the names that do exist could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum Unlisted {
    /// The permissions that listing (and looking up the name) needs.
    #[error("you lack {}", .0.join(" and "))]
    Lacking(Vec<String>),
    #[error(transparent)]
    Failed(Box<Error>),
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub verb: &'static str,
    /// `projects.zenml.io`, `rolebindings.rbac.authorization.k8s.io`, `namespaces`.
    pub resource: &'static str,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

impl Op {
    pub fn new(verb: &'static str, resource: &'static str) -> Op {
        Op { verb, resource, name: None, namespace: None }
    }

    pub fn name(self, name: impl Into<String>) -> Op {
        Op { name: Some(name.into()), ..self }
    }

    pub fn namespace(self, namespace: impl Into<String>) -> Op {
        Op { namespace: Some(namespace.into()), ..self }
    }

    /// `projects.zenml.io "x" in namespace "p"`.
    fn target(&self) -> String {
        let mut t = self.resource.to_owned();
        if let Some(n) = &self.name {
            t.push_str(&format!(" {n:?}"));
        }
        if let Some(ns) = &self.namespace {
            t.push_str(&format!(" in namespace {ns:?}"));
        }
        t
    }

    /// The permission this call needs, as RBAC names it.
    pub fn permission(&self) -> String {
        let scope = match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None => "at cluster scope".to_owned(),
        };
        format!("`{}` on {} {scope}", self.verb, self.resource)
    }

    /// Turns a failed call into the error that says what was refused and why.
    pub fn err(self, e: kube::Error) -> Error {
        let kube::Error::Api(status) = &e else {
            return Error::Request { op: Box::new(self), source: Box::new(e) };
        };
        let message = status.message.clone();
        match status.code {
            403 => {
                let denial = match message.split_once("denied request: ") {
                    // A ValidatingAdmissionPolicy said no: its message says who may.
                    Some((_, why)) if message.contains("ValidatingAdmissionPolicy") => Denial::Policy(why.to_owned()),
                    _ => Denial::Rbac { server: message },
                };
                Error::Forbidden(Box::new(Forbidden { op: self, denial }))
            }
            401 => Error::Unauthorized,
            code => Error::Api(Box::new(ApiError { op: self, code, reason: status.reason.clone(), message })),
        }
    }
}

/// A call the API server refused (403).
#[derive(Debug)]
pub struct Forbidden {
    pub op: Op,
    pub denial: Denial,
}

/// Who refused a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial {
    /// A ValidatingAdmissionPolicy, whose message (here) says who may.
    Policy(String),
    /// RBAC: the user lacks the permission; `server` is the API server's message, which names the user.
    Rbac { server: String },
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let op = &self.op;
        write!(f, "not allowed to {} {}: ", op.verb, op.target())?;
        match &self.denial {
            Denial::Policy(why) => f.write_str(why),
            Denial::Rbac { server } => {
                let hint = if op.resource.ends_with(".zenml.io") {
                    " (a cluster admin grants the base rights on projects and bindings with the zenml-self-service \
                     ClusterRole; workspace and project admins are set in the Workspace's spec.members and by \
                     ProjectRoleBindings)"
                } else {
                    ""
                };
                write!(f, "that needs the permission {}{hint}\n  server: {server}", op.permission())
            }
        }
    }
}

impl std::error::Error for Forbidden {}

/// An error status other than 401 and 403 from the API server.
#[derive(Debug)]
pub struct ApiError {
    pub op: Op,
    pub code: u16,
    /// The status' reason: `Conflict`, `Invalid`.
    pub reason: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let (verb, target, msg) = (self.op.verb, self.op.target(), &self.message);
        match self.code {
            404 => write!(f, "{target} not found"),
            409 => write!(f, "cannot {verb} {target}: conflict: {msg}"),
            422 => write!(f, "the API server refused to {verb} {target} as invalid: {msg}"),
            code => write!(f, "cannot {verb} {target}: {msg} ({code} {})", self.reason),
        }
    }
}

impl std::error::Error for ApiError {}

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

    fn not_found(kind: Kind, workspace: Option<&str>, existing: Result<Vec<String>, Unlisted>) -> NotFound {
        NotFound { kind, name: "nope".into(), workspace: workspace.map(Into::into), existing }
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
            not_found(Kind::Workspace, None, Err(Unlisted::Lacking(vec!["`list`".into()]))).to_string(),
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
        assert!(matches!(&e, Error::Given { source, .. } if matches!(**source, Error::NotFound(_))));
        assert!(e.to_string().starts_with("--workspace: workspace \"nope\" does not exist"), "{e}");
        let e = Error::NoActiveWorkspace { fix: "name one" }.given_by("ZENML_ACTIVE_PROJECT_ID");
        assert!(e.to_string().starts_with("ZENML_ACTIVE_PROJECT_ID: no active workspace: name one"), "{e}");
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
