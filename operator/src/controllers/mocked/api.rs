//! A mocked API server (tower-test, as kube-rs' controller-rs tests its reconciler): it answers every request the
//! client sends as a real one would, or with an error a test chooses, and records each request for the test to check.

use std::collections::HashMap;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// One request as the API server received it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Call {
    /// `PATCH path`, `DELETE path`, ...: what a test compares.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// A server-side apply with our field manager, forced.
    pub fn is_our_apply(&self) -> bool {
        self.content_type == "application/apply-patch+yaml"
            && self.query.contains("fieldManager=zenml-operator")
            && self.query.contains("force=true")
    }

    fn is_event(&self) -> bool {
        self.path.starts_with("/apis/events.k8s.io/")
    }
}

/// An error the API server answers with: its code and reason (`Forbidden`, `InternalError`, ...).
pub type Failure = (u16, &'static str);

/// Decides which requests fail; every other one succeeds.
pub type Failing = Box<dyn Fn(&Call) -> Option<Failure> + Send + Sync>;

pub struct ApiServer {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Objects the server holds, by path: what it answers a GET, a status write or a finalizer patch with.
    objects: Arc<Mutex<HashMap<String, Value>>>,
    failing: Arc<Mutex<Failing>>,
}

impl ApiServer {
    /// A client whose requests go to a new mocked API server, and the server.
    pub fn start() -> (Client, ApiServer) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let server = ApiServer {
            calls: Default::default(),
            objects: Default::default(),
            failing: Arc::new(Mutex::new(Box::new(|_| None))),
        };
        let (calls, objects, failing) = (server.calls.clone(), server.objects.clone(), server.failing.clone());
        tokio::spawn(async move {
            while let Some((request, reply)) = handle.next_request().await {
                let call = call_of(request).await;
                let failure = (failing.lock())(&call);
                let (status, body) = match failure {
                    Some((code, reason)) => (code, status_json(code, reason, &call)),
                    None => answer(&call, &objects.lock()),
                };
                calls.lock().push(call);
                let response = Response::builder()
                    .status(StatusCode::from_u16(status).expect("a status code"))
                    .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
                    .expect("a response");
                reply.send_response(response);
            }
        });
        (Client::new(service, "default"), server)
    }

    /// The server holds `object` at `path` (its URL path, e.g. `/apis/zenml.io/v1alpha1/projects/p`).
    pub fn holds(&self, path: &str, object: &impl serde::Serialize) {
        self.objects.lock().insert(path.to_owned(), serde_json::to_value(object).expect("JSON"));
    }

    /// From now on, the requests `failing` picks are answered with its error.
    pub fn fail(&self, failing: impl Fn(&Call) -> Option<Failure> + Send + Sync + 'static) {
        *self.failing.lock() = Box::new(failing);
    }

    /// Every request but Events (published in the background, best effort), in the order received.
    pub fn writes(&self) -> Vec<Call> {
        self.calls.lock().iter().filter(|c| !c.is_event()).cloned().collect()
    }

    /// The Events published.
    pub fn events(&self) -> Vec<Call> {
        self.calls.lock().iter().filter(|c| c.is_event()).cloned().collect()
    }

    /// `writes` as lines (`PATCH /api/v1/namespaces/p`).
    pub fn lines(&self) -> Vec<String> {
        self.writes().iter().map(Call::line).collect()
    }

    /// The writes to paths ending in `/status`.
    pub fn status_writes(&self) -> Vec<Call> {
        self.writes().into_iter().filter(|c| c.path.ends_with("/status")).collect()
    }
}

async fn call_of(request: Request<Body>) -> Call {
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.expect("a request body");
    Call {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("a JSON body") },
    }
}

/// What a real API server would answer, near enough for the reconcilers: the object held at the path (or, for a
/// status write, at its parent) for GETs, status writes and finalizer patches; the applied object for an apply to a
/// child (a merge patch without its nulls); success for a delete; not found for a GET of anything else.
fn answer(call: &Call, objects: &HashMap<String, Value>) -> (u16, Value) {
    let held = objects.get(call.path.strip_suffix("/status").unwrap_or(&call.path)).cloned();
    match call.method {
        Method::GET => held.map_or_else(|| (404, status_json(404, "NotFound", call)), |o| (200, o)),
        Method::DELETE => (200, json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200})),
        Method::POST if call.is_event() => (201, call.body.clone()),
        // A merge patch's nulls remove fields: what is left is the object.
        _ => (200, held.unwrap_or_else(|| without_nulls(call.body.clone()))),
    }
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k, without_nulls(v))).collect())
        }
        other => other,
    }
}

fn status_json(code: u16, reason: &str, call: &Call) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
        "message": format!("{} {}: {reason} (mocked)", call.method, call.path),
    })
}
