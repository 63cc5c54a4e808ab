//! The operator's errors: each says what failed, on which object, and what to do.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        verb: &'static str,
        kind: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the zenml.io CRDs are not installed ({0}); install them with `kubectl apply -f crds/` or the Helm chart")]
    CrdsMissing(String),
    #[error("caches never became ready: the watch streams stopped")]
    CachesNotReady,
    #[error("cannot connect to the Kubernetes API: {0}")]
    Connect(#[source] kube::Error),
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("lost leadership: {0}; exiting so that a restart rejoins the election")]
    LostLeadership(String),
    #[error("metrics server on {addr}: {source}")]
    Serve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kube(verb: &'static str, kind: impl Into<String>, name: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube { verb, kind: kind.into(), name: name.into(), source }
    }

    /// A short PascalCase label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { source: kube::Error::Api(s), .. } if s.code == 403 => "Forbidden",
            Self::Kube { source: kube::Error::Api(s), .. } if s.code == 409 => "Conflict",
            Self::Kube { source: kube::Error::Api(_), .. } => "ApiError",
            Self::Kube { .. } => "Transport",
            Self::CrdsMissing(_) => "CrdsMissing",
            Self::CachesNotReady => "CachesNotReady",
            Self::Connect(_) => "Connect",
            Self::Config(_) => "Config",
            Self::Serve { .. } => "Serve",
            Self::LostLeadership(_) => "LostLeadership",
        }
    }
}
