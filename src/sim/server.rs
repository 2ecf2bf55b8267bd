//! The HTTP side of the simulator: request handling, the envelope, and a
//! listener whose connections can be dropped on purpose.
//!
//! Every request is handled in one synchronous step under a single lock
//! (verify, rate-limit, pick a fault, execute, write the ledger), so the
//! ledger order is the arrival order and a client that disconnects early
//! cannot leave a half-executed request behind. Only the reply itself
//! (a [`Fault::Delay`], or a dropped connection) happens afterwards.
//!
//! [`Fault::DropAfterExecute`] works at the transport: the listener hands
//! every connection a shared kill flag, the handler sets it after executing,
//! and from then on the connection's reads and writes fail. hyper cannot
//! write the response, so it closes the socket and the client sees the
//! connection end before any byte of a response.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::{IncomingStream, Listener};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::SimConfig;
use super::engine::{Action, ActionOk, Engine, Hooks};
use super::error::{ApiError, StartError};
use super::fault::{Fault, FaultPlan, FlowOverrides};
use super::ledger::{Handled, LedgerEntry};
use super::limit::RateLimiter;
use super::sign::{SignedParts, Verifier};
use crate::clock::{SharedClock, wall_now};

/// The only API version served.
pub(crate) const VERSION: &str = "2019-01-03";

/// State shared by the handler and the [`SimHandle`](super::SimHandle).
#[allow(clippy::disallowed_types)] // Ledger offsets and the rate limit are about real traffic.
pub(crate) struct Shared {
    verifier: Verifier,
    pub(crate) clock: SharedClock,
    /// Monotonic origin of ledger and rate-limit offsets. Real time on
    /// purpose: the rate limit is about real traffic, not simulated time.
    origin: std::time::Instant,
    state: Mutex<SimState>,
    pub(crate) shutdown: CancellationToken,
}

/// Everything mutable, behind one lock.
pub(crate) struct SimState {
    pub(crate) engine: Engine,
    limiter: RateLimiter,
    pub(crate) faults: FaultPlan,
    pub(crate) ledger: Vec<LedgerEntry>,
}

/// How to answer a request.
#[derive(Debug)]
enum Reply {
    /// HTTP 200 with this JSON.
    Json(Value),
    /// This status with an HTML body.
    Http(StatusCode),
    /// HTTP 200 with a truncated, unparsable body.
    Garbage,
    /// No answer: drop the connection.
    Drop,
}

impl Shared {
    /// Builds the shared state from a validated config.
    #[allow(clippy::disallowed_types)] // See `Shared::origin`.
    pub(crate) fn new(config: &SimConfig, clock: SharedClock) -> Self {
        let now = clock.now();
        let slow_flow = config.flow_duration.saturating_mul(3);
        Self {
            verifier: Verifier::new(&config.credentials, config.required_token.clone()),
            origin: std::time::Instant::now(),
            state: Mutex::new(SimState {
                engine: Engine::new(&config.clusters, config.flow_duration, now),
                limiter: RateLimiter::new(config.rate_limit_per_second, config.rate_limit_window),
                faults: FaultPlan::new(config.fault_seed, config.fault_probability, slow_flow),
                ledger: Vec::new(),
            }),
            clock,
            shutdown: CancellationToken::new(),
        }
    }

    /// The state, even if a panic elsewhere poisoned the lock.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Handles one request up to the point of answering it: returns the
    /// answer and how long to wait (real time) before giving it.
    fn process(&self, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> (Reply, Duration) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let action = header("x-tc-action").unwrap_or_default().to_owned();
        let params: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let version = header("x-tc-version");
        let host = header("host").or_else(|| uri.authority().map(|a| a.as_str()));
        let parts = SignedParts {
            authorization: header("authorization"),
            content_type: header("content-type"),
            host,
            timestamp: header("x-tc-timestamp"),
            token: header("x-tc-token"),
            body,
        };

        let mut guard = self.lock();
        let state = &mut *guard;
        let since_start = self.origin.elapsed();
        let arrived_at = wall_now();
        let mut entry = LedgerEntry {
            seq: u64::try_from(state.ledger.len()).unwrap_or(u64::MAX),
            arrived_at,
            since_start,
            action: action.clone(),
            region: header("x-tc-region").map(str::to_owned),
            secret_id: None,
            client_token: params
                .get("ClientToken")
                .and_then(Value::as_str)
                .map(str::to_owned),
            instance_ids: named_clusters(&params),
            params,
            fault: None,
            outcome: Handled::Ok {
                flow_id: None,
                deduplicated: false,
            },
        };

        let reply = match self.admit(state, &parts, version, &mut entry) {
            Err(error) => {
                entry.outcome = Handled::Error {
                    code: error.code().to_owned(),
                };
                Reply::Json(error_envelope(&error))
            }
            Ok(action) => self.dispatch(state, action, &mut entry),
        };
        let delay = match entry.fault {
            Some(Fault::Delay(d)) => d,
            _ => Duration::ZERO,
        };
        debug!(
            message = "Request handled.",
            seq = entry.seq,
            action = %entry.action,
            outcome = ?entry.outcome,
            fault = ?entry.fault
        );
        state.ledger.push(entry);
        (reply, delay)
    }

    /// Authentication, common parameters and the rate limit.
    fn admit(
        &self,
        state: &mut SimState,
        parts: &SignedParts<'_>,
        version: Option<&str>,
        entry: &mut LedgerEntry,
    ) -> Result<Action, ApiError> {
        entry.secret_id = Some(self.verifier.verify(parts, entry.arrived_at)?);
        let version = version.ok_or_else(|| ApiError::MissingParameter("Version".into()))?;
        if version != VERSION {
            return Err(ApiError::NoSuchVersion(version.to_owned()));
        }
        if entry.region.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::MissingParameter("Region".into()));
        }
        if entry.action.is_empty() {
            return Err(ApiError::MissingParameter("Action".into()));
        }
        let action = Action::from_name(&entry.action)
            .ok_or_else(|| ApiError::InvalidAction(entry.action.clone()))?;
        if !entry.params.is_object() {
            return Err(ApiError::InvalidParameter(
                "the body is not a JSON object".into(),
            ));
        }
        if !state.limiter.try_admit(action.name(), entry.since_start) {
            return Err(ApiError::RequestLimitExceeded(action.name().to_owned()));
        }
        Ok(action)
    }

    /// Applies a fault, if one is due, and executes the action.
    fn dispatch(&self, state: &mut SimState, action: Action, entry: &mut LedgerEntry) -> Reply {
        // A DescribeInstances without InstanceIds touches every cluster.
        let touched = if entry.instance_ids.is_empty() && action == Action::DescribeInstances {
            state.engine.cluster_ids()
        } else {
            entry.instance_ids.clone()
        };
        let picked = state.faults.next_request_fault(action.name(), &touched);
        let (fault, fault_cluster) = match picked {
            Some((fault, cluster)) => (Some(fault), cluster),
            None => (None, None),
        };
        entry.fault.clone_from(&fault);
        match &fault {
            Some(Fault::ApiError(code)) => {
                let error = ApiError::Injected(code.clone());
                entry.outcome = Handled::InjectedError { code: code.clone() };
                return Reply::Json(error_envelope(&error));
            }
            Some(Fault::Http5xx(status)) => {
                let status = StatusCode::from_u16(*status)
                    .ok()
                    .filter(StatusCode::is_server_error)
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                entry.outcome = Handled::InjectedHttp {
                    status: status.as_u16(),
                };
                return Reply::Http(status);
            }
            _ => {}
        }

        let SimState { engine, faults, .. } = state;
        let mut flow_overrides = |cluster: &str| {
            let mut overrides: FlowOverrides = faults.take_flow_overrides(action.name(), cluster);
            if let Some(f) = &fault {
                overrides.apply(f);
            }
            overrides
        };
        let mut hooks = Hooks {
            flow_overrides: &mut flow_overrides,
            null_config: (fault == Some(Fault::NullConfig)).then(|| fault_cluster.clone()),
        };
        let params = entry.params.as_object().cloned().unwrap_or_default();
        let result = engine.execute(
            action,
            &params,
            self.clock.now(),
            entry.arrived_at,
            &mut hooks,
        );
        let answer = match result {
            Ok(ActionOk {
                body,
                flow_id,
                deduplicated,
            }) => {
                entry.outcome = Handled::Ok {
                    flow_id,
                    deduplicated,
                };
                ok_envelope(body)
            }
            Err(error) => {
                entry.outcome = Handled::Error {
                    code: error.code().to_owned(),
                };
                error_envelope(&error)
            }
        };
        match fault {
            Some(Fault::DropAfterExecute) => Reply::Drop,
            Some(Fault::Garbage) => Reply::Garbage,
            Some(Fault::EmptyEnvelope) => Reply::Json(json!({"Response": {}})),
            _ => Reply::Json(answer),
        }
    }
}

/// The clusters a request body names, from `InstanceId` or `InstanceIds`.
fn named_clusters(params: &Value) -> Vec<String> {
    if let Some(id) = params.get("InstanceId").and_then(Value::as_str) {
        return vec![id.to_owned()];
    }
    params
        .get("InstanceIds")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `{"Response":{...,"RequestId":..}}`.
fn ok_envelope(mut body: Map<String, Value>) -> Value {
    body.insert(
        "RequestId".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    json!({ "Response": body })
}

/// `{"Response":{"Error":{"Code":..,"Message":..},"RequestId":..}}`.
fn error_envelope(error: &ApiError) -> Value {
    json!({
        "Response": {
            "Error": { "Code": error.code(), "Message": error.to_string() },
            "RequestId": uuid::Uuid::new_v4().to_string(),
        }
    })
}

/// The axum handler for `POST /`.
async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (reply, delay) = shared.process(&uri, &headers, &body);
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.shutdown.cancelled() => {}
        }
    }
    match reply {
        Reply::Json(value) => (
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        Reply::Http(status) => {
            let page = format!(
                "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center><hr><center>tgw</center></body></html>"
            );
            (status, [(header::CONTENT_TYPE, "text/html")], page).into_response()
        }
        Reply::Garbage => (
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"Response":{"InstanceId":"emr-"#,
        )
            .into_response(),
        Reply::Drop => {
            debug!(message = "Dropping connection.", peer = %conn.remote);
            conn.kill();
            Response::new(Body::empty())
        }
    }
}

/// The router serving the simulated API.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().route("/", post(handle)).with_state(shared)
}

/// Serves until `shared.shutdown` is cancelled.
pub(crate) async fn serve(listener: SimListener, shared: Arc<Shared>) -> io::Result<()> {
    let shutdown = shared.shutdown.clone();
    let app = router(shared).into_make_service_with_connect_info::<Conn>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// A TCP listener whose connections carry a kill flag.
#[derive(Debug)]
pub(crate) struct SimListener {
    inner: TcpListener,
}

impl SimListener {
    /// Binds `addr`.
    pub(crate) async fn bind(addr: SocketAddr) -> Result<Self, StartError> {
        let inner = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self { inner })
    }

    /// The bound address.
    pub(crate) fn local_socket(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Per-connection information handed to the handler.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    remote: SocketAddr,
    kill: Arc<AtomicBool>,
}

impl Conn {
    /// Makes every further read and write on the connection fail.
    fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

impl Listener for SimListener {
    type Io = KillableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, remote)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(message = "Cannot set TCP_NODELAY.", %error);
                    }
                    let kill = Arc::new(AtomicBool::new(false));
                    let io = KillableStream {
                        inner: stream,
                        kill: Arc::clone(&kill),
                    };
                    return (io, Conn { remote, kill });
                }
                Err(error) => {
                    warn!(message = "Accept failed.", %error);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            remote: self.inner.local_addr()?,
            kill: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Connected<IncomingStream<'_, SimListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, SimListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that fails every operation once its kill flag is set.
#[derive(Debug)]
pub(crate) struct KillableStream {
    inner: TcpStream,
    kill: Arc<AtomicBool>,
}

impl KillableStream {
    fn dead(&self) -> Option<io::Error> {
        self.kill.load(Ordering::SeqCst).then(|| {
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "connection dropped by fault injection",
            )
        })
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(error) = this.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.dead() {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.dead().is_some() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    //! The request path of `ScaleOutCluster` through `Shared::process`:
    //! signed requests, the per-action rate limit, scripted faults and the
    //! ledger, with no socket.

    use std::sync::Arc;

    use axum::http::HeaderValue;
    use chrono::DateTime;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::sim::{
        DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Ledger, STATUS_RUNNING, STATUS_SCALE_OUT_FAILED,
        SimCluster,
    };

    const CLUSTER: &str = "emr-sim00001";
    const HOST: &str = "emr.tencentcloudapi.com";

    fn shared(rate_limit: u32) -> (Shared, ManualClock) {
        let clock = ManualClock::new(wall_now());
        let config = SimConfig {
            clusters: vec![SimCluster::new(CLUSTER).with_task_nodes(1)],
            rate_limit_per_second: rate_limit,
            // A window no test outlasts, so the limit does not depend on speed.
            rate_limit_window: Duration::from_secs(3600),
            ..SimConfig::default()
        };
        let shared = Shared::new(&config, Arc::new(clock.clone()));
        (shared, clock)
    }

    /// Sends `body` as `action`, signed with the default credentials, and
    /// returns the JSON answer.
    fn send(shared: &Shared, action: &str, body: &Value) -> Value {
        let body = body.to_string();
        let timestamp = wall_now().timestamp();
        let date = DateTime::from_timestamp(timestamp, 0)
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        let signature = crate::sim::sign::signature(
            DEFAULT_SECRET_KEY,
            "application/json",
            HOST,
            timestamp,
            &date,
            body.as_bytes(),
        );
        let authorization = format!(
            "TC3-HMAC-SHA256 Credential={DEFAULT_SECRET_ID}/{date}/emr/tc3_request, SignedHeaders=content-type;host, Signature={signature}"
        );
        let mut headers = HeaderMap::new();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name, v);
            }
        };
        set("authorization", &authorization);
        set("content-type", "application/json");
        set("host", HOST);
        set("x-tc-timestamp", &timestamp.to_string());
        set("x-tc-action", action);
        set("x-tc-version", VERSION);
        set("x-tc-region", "ap-guangzhou");
        let uri = Uri::from_static("/");
        match shared.process(&uri, &headers, body.as_bytes()).0 {
            Reply::Json(value) => value,
            other => panic!("not a JSON answer: {other:?}"),
        }
    }

    fn order(count: i64, token: &str) -> Value {
        json!({
            "InstanceId": CLUSTER,
            "InstanceChargeType": "SPOTPAID",
            "ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": count},
            "ClientToken": token,
            "EnableStartServiceFlag": true,
        })
    }

    fn error_code(answer: &Value) -> Option<&str> {
        answer["Response"]["Error"]["Code"].as_str()
    }

    #[test]
    fn scale_out_cluster_is_served_signed_ledgered_and_rate_limited() {
        let (shared, clock) = shared(2);
        let first = send(&shared, "ScaleOutCluster", &order(2, "a"));
        assert_eq!(error_code(&first), None, "{first}");
        let response = &first["Response"];
        for field in [
            "InstanceId",
            "ClientToken",
            "FlowId",
            "TraceId",
            "DealNames",
            "BillId",
            "RequestId",
        ] {
            assert!(!response[field].is_null(), "{field} missing: {first}");
        }
        let replay = send(&shared, "ScaleOutCluster", &order(2, "a"));
        assert_eq!(replay["Response"]["FlowId"], response["FlowId"]);
        // The third in the window is refused; other actions have their own quota.
        let limited = send(&shared, "ScaleOutCluster", &order(2, "b"));
        assert_eq!(error_code(&limited), Some("RequestLimitExceeded"));
        let other = send(
            &shared,
            "DescribeInstances",
            &json!({"DisplayStrategy": "clusterList"}),
        );
        assert_eq!(error_code(&other), None, "{other}");

        clock.advance(Duration::from_secs(60));
        let state = shared.lock();
        let ledger = Ledger::new(state.ledger.clone());
        assert_eq!(ledger.for_action("ScaleOutCluster").count(), 3);
        assert_eq!(
            ledger.count_code("ScaleOutCluster", "RequestLimitExceeded"),
            1
        );
        let starts = ledger.flow_starts();
        assert_eq!(starts.len(), 1);
        assert_eq!(
            (
                starts[0].action.as_str(),
                starts[0].task_count,
                starts[0].start_service
            ),
            ("ScaleOutCluster", 2, true)
        );
        assert_eq!(ledger.nodes_ordered(CLUSTER), 2);
        assert!(ledger.tokens_with_several_flows().is_empty());
    }

    #[test]
    fn scripted_faults_apply_to_scale_out_cluster() {
        let (shared, clock) = shared(20);
        {
            let mut state = shared.lock();
            state.faults.push(
                "ScaleOutCluster",
                Some(CLUSTER),
                Fault::ApiError("InternalError".into()),
            );
            state
                .faults
                .push("ScaleOutCluster", Some(CLUSTER), Fault::FailFlow);
        }
        // A ScaleOutInstance takes neither.
        let instance = json!({"InstanceId": CLUSTER, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1});
        let ok = send(&shared, "ScaleOutInstance", &instance);
        assert_eq!(error_code(&ok), None, "{ok}");
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            shared
                .lock()
                .engine
                .cluster(CLUSTER, clock.now())
                .map(|c| c.status),
            Some(STATUS_RUNNING)
        );

        let injected = send(&shared, "ScaleOutCluster", &order(1, "c"));
        assert_eq!(error_code(&injected), Some("InternalError"));
        let started = send(&shared, "ScaleOutCluster", &order(1, "c"));
        assert_eq!(error_code(&started), None, "{started}");
        clock.advance(Duration::from_secs(60));
        let mut state = shared.lock();
        let snap = state.engine.cluster(CLUSTER, clock.now()).expect("cluster");
        assert_eq!(
            (snap.status, snap.flows_failed, snap.task_nodes),
            (STATUS_SCALE_OUT_FAILED, 1, 2)
        );
        let entries: Vec<&Handled> = state
            .ledger
            .iter()
            .filter(|e| e.action == "ScaleOutCluster")
            .map(|e| &e.outcome)
            .collect();
        assert_eq!(
            entries[0],
            &Handled::InjectedError {
                code: "InternalError".into()
            }
        );
        assert!(matches!(
            entries[1],
            Handled::Ok {
                flow_id: Some(_),
                deduplicated: false
            }
        ));
    }
}
