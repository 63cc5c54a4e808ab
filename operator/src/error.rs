//! The operator's errors: each says what failed, on which object, and what to do.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{verb} {kind} {name}: {source}")]
    Kube {
        verb: &'static str,
        kind: String,
        name: String,
        // Boxed: kube's error is large, and every Result in the operator carries this type.
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the zenml.io CRDs are not installed ({0}); install them with `kubectl apply -f crds/` or the Helm chart")]
    CrdsMissing(String),
    #[error("caches never became ready: the watch streams stopped")]
    CachesNotReady,
    #[error("cannot connect to the Kubernetes API: {0}")]
    Connect(#[source] Box<kube::Error>),
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
        Self::Kube { verb, kind: kind.into(), name: name.into(), source: Box::new(source) }
    }

    /// The API server's status code, when the API server answered.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Self::Kube { source, .. } => match &**source {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }

    /// The API server's message, when it answered.
    pub fn api_message(&self) -> String {
        match self {
            Self::Kube { source, .. } => match &**source {
                kube::Error::Api(s) => s.message.clone(),
                e => e.to_string(),
            },
            e => e.to_string(),
        }
    }

    /// A short PascalCase label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => match self.api_code() {
                Some(403) => "Forbidden",
                Some(409) => "Conflict",
                Some(_) => "ApiError",
                None => "Transport",
            },
            Self::CrdsMissing(_) => "CrdsMissing",
            Self::CachesNotReady => "CachesNotReady",
            Self::Connect(_) => "Connect",
            Self::Config(_) => "Config",
            Self::Serve { .. } => "Serve",
            Self::LostLeadership(_) => "LostLeadership",
        }
    }
}
