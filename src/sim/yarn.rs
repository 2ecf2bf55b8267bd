//! A YARN ResourceManager stand-in on loopback, for scale-in tests.
//!
//! It serves the two read-only REST calls the product makes, with the JSON
//! shapes of the real ResourceManager:
//!
//! - `GET /ws/v1/cluster/nodes` →
//!   `{"nodes":{"node":[{"id","nodeHostName","nodeHTTPAddress","state","numContainers",..}]}}`
//!   (`{"nodes":null}` when no node is set);
//! - `GET /ws/v1/cluster/apps?states=RUNNING` →
//!   `{"apps":{"app":[{"id","amHostHttpAddress","state":"RUNNING",..}]}}`
//!   (`{"apps":null}` when none, as YARN answers).
//!
//! A `states` query parameter (comma-separated, any case) filters either
//! list by state. Nothing is derived: tests set exactly the nodes and running
//! applications to serve with [`YarnRm::set_nodes`] and [`YarnRm::set_apps`].
//! [`YarnRm::set_redirect`] makes it behave like a standby ResourceManager,
//! answering every request with `307 Temporary Redirect` to the same path and
//! query on another base URL.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::error::StartError;

/// The nodes path.
pub(crate) const NODES_PATH: &str = "/ws/v1/cluster/nodes";
/// The applications path.
pub(crate) const APPS_PATH: &str = "/ws/v1/cluster/apps";

/// How long a graceful shutdown may take before the server task is aborted.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// One NodeManager as the ResourceManager reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YarnNode {
    /// `nodeHostName`.
    pub node_host_name: String,
    /// `nodeHTTPAddress`, `host:port`.
    pub node_http_address: String,
    /// `state`: `RUNNING`, `DECOMMISSIONING`, `LOST`, ...
    pub state: String,
    /// `numContainers`.
    pub num_containers: u32,
}

impl YarnNode {
    /// A `RUNNING` node with this host name, HTTP address and container count.
    pub fn running(
        host_name: impl Into<String>,
        http_address: impl Into<String>,
        containers: u32,
    ) -> Self {
        Self {
            node_host_name: host_name.into(),
            node_http_address: http_address.into(),
            state: "RUNNING".to_owned(),
            num_containers: containers,
        }
    }

    /// Sets `state`.
    pub fn with_state(mut self, state: impl Into<String>) -> Self {
        self.state = state.into();
        self
    }

    fn to_json(&self) -> Value {
        json!({
            "id": format!("{}:45454", self.node_host_name),
            "rack": "/default-rack",
            "state": self.state,
            "nodeHostName": self.node_host_name,
            "nodeHTTPAddress": self.node_http_address,
            "numContainers": self.num_containers,
        })
    }
}

/// One running application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YarnApp {
    /// `id`, e.g. `application_1700000000000_0001`.
    pub id: String,
    /// `amHostHttpAddress`: where its ApplicationMaster runs, `host:port`.
    pub am_host_http_address: String,
}

impl YarnApp {
    /// A running application whose ApplicationMaster is at `am_host_http_address`.
    pub fn new(id: impl Into<String>, am_host_http_address: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            am_host_http_address: am_host_http_address.into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.id,
            "user": "hadoop",
            "queue": "default",
            "state": "RUNNING",
            "finalStatus": "UNDEFINED",
            "amHostHttpAddress": self.am_host_http_address,
        })
    }
}

/// What the stand-in serves.
#[derive(Debug, Default)]
struct RmState {
    nodes: Vec<YarnNode>,
    apps: Vec<YarnApp>,
    redirect: Option<String>,
    requests: Vec<String>,
}

/// State shared by the handler and the [`YarnRm`].
#[derive(Debug, Default)]
struct RmShared {
    state: Mutex<RmState>,
}

impl RmShared {
    fn lock(&self) -> MutexGuard<'_, RmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running ResourceManager stand-in. Dropping it stops the server.
pub struct YarnRm {
    addr: SocketAddr,
    shared: Arc<RmShared>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for YarnRm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YarnRm")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl YarnRm {
    /// Starts a stand-in on `127.0.0.1` with a free port, serving no nodes
    /// and no applications.
    pub async fn start() -> Result<Self, StartError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let shared = Arc::new(RmShared::default());
        let shutdown = CancellationToken::new();
        let app = Router::new()
            .route(NODES_PATH, get(nodes))
            .route(APPS_PATH, get(apps))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        info!(message = "YARN ResourceManager stand-in listening.", addr = %bound);
        Ok(Self {
            addr: bound,
            shared,
            shutdown,
            task: Some(task),
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the nodes served.
    pub fn set_nodes(&self, nodes: Vec<YarnNode>) {
        self.shared.lock().nodes = nodes;
    }

    /// Replaces the running applications served.
    pub fn set_apps(&self, apps: Vec<YarnApp>) {
        self.shared.lock().apps = apps;
    }

    /// With `Some(base)`, answers every request with `307` and
    /// `Location: base + path?query` (a standby ResourceManager); `None`
    /// serves again.
    pub fn set_redirect(&self, base: Option<String>) {
        self.shared.lock().redirect = base;
    }

    /// The path and query of every request received, in arrival order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }

    /// Stops the server and waits for it: in-flight requests may finish
    /// for up to 5 s, then the server task is aborted.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        let Some(mut task) = self.task.take() else {
            return;
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => info!(message = "YARN stand-in stopped."),
            Ok(Ok(Err(error))) => warn!(message = "YARN stand-in stopped with an error.", %error),
            Ok(Err(error)) => warn!(message = "YARN stand-in task failed.", %error),
            Err(_) => {
                warn!(message = "YARN stand-in did not stop in time; aborting.");
                task.abort();
            }
        }
    }
}

impl Drop for YarnRm {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The states a `states=` query parameter asks for, upper-cased; `None`
/// when absent.
fn states_filter(uri: &Uri) -> Option<Vec<String>> {
    let query = uri.query()?;
    let value = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("states="))?;
    Some(
        value
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect(),
    )
}

/// Records the request; the redirect answer when one is set.
fn record(shared: &RmShared, uri: &Uri) -> Option<Response> {
    let target = uri
        .path_and_query()
        .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let mut state = shared.lock();
    state.requests.push(target.clone());
    let base = state.redirect.clone()?;
    let location = format!("{}{target}", base.trim_end_matches('/'));
    Some(
        (
            StatusCode::TEMPORARY_REDIRECT,
            [(header::LOCATION, location)],
            "This is standby RM. The redirect url is the active RM.",
        )
            .into_response(),
    )
}

fn json_response(value: &Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

async fn nodes(State(shared): State<Arc<RmShared>>, uri: Uri) -> Response {
    if let Some(redirect) = record(&shared, &uri) {
        return redirect;
    }
    let states = states_filter(&uri);
    let list: Vec<Value> = shared
        .lock()
        .nodes
        .iter()
        .filter(|n| {
            states
                .as_ref()
                .is_none_or(|s| s.contains(&n.state.to_ascii_uppercase()))
        })
        .map(YarnNode::to_json)
        .collect();
    let body = if list.is_empty() {
        json!({"nodes": null})
    } else {
        json!({"nodes": {"node": list}})
    };
    json_response(&body)
}

async fn apps(State(shared): State<Arc<RmShared>>, uri: Uri) -> Response {
    if let Some(redirect) = record(&shared, &uri) {
        return redirect;
    }
    let wants_running = states_filter(&uri).is_none_or(|s| s.iter().any(|s| s == "RUNNING"));
    let list: Vec<Value> = if wants_running {
        shared.lock().apps.iter().map(YarnApp::to_json).collect()
    } else {
        Vec::new()
    };
    let body = if list.is_empty() {
        json!({"apps": null})
    } else {
        json!({"apps": {"app": list}})
    };
    json_response(&body)
}

async fn not_found(State(shared): State<Arc<RmShared>>, uri: Uri) -> Response {
    if let Some(redirect) = record(&shared, &uri) {
        return redirect;
    }
    (StatusCode::NOT_FOUND, "Not Found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_filter_reads_the_query() {
        let uri: Uri = "/ws/v1/cluster/apps?states=running,Accepted&x=1"
            .parse()
            .expect("uri");
        assert_eq!(
            states_filter(&uri),
            Some(vec!["RUNNING".to_owned(), "ACCEPTED".to_owned()])
        );
        let bare: Uri = "/ws/v1/cluster/apps".parse().expect("uri");
        assert_eq!(states_filter(&bare), None);
    }
}
