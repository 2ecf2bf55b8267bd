//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz`, `/api/v1/status`,
//! and `POST /api/v1/clusters/{id}/pause|resume|scale-out|scale-in`.
//!
//! Authentication comes first: a layer in front of every route decides on
//! the method alone. Every request other than GET or HEAD needs the bearer
//! token from `admin_token_file` when one is configured (401 otherwise; a
//! missing file refuses the request, it never stops the daemon), and without
//! a token file it must come from loopback (403 otherwise). Nothing of a
//! refused request (its path, cluster id, query or body) is parsed or
//! logged. The token file is the one the latest (re)load named: a reload
//! that adds, changes or removes it applies at once. Accepted requests are
//! logged only after their cluster id is validated, and bodies are capped
//! at [`MAX_BODY_BYTES`]. The POST endpoints never touch durable state: each
//! is a command to the cluster's owner, which answers once it has acted.
//!
//! `GET /api/v1/whoami?nonce=N` answers `{"proof": hex(HMAC-SHA256(token,
//! N))}`: the CLI sends the token only to an address that proves it knows
//! it (see `manual.rs`). A nonce ending in `@HOST:PORT` that names another
//! address than this daemon's is refused, so a stranger cannot relay the
//! question to the real daemon.
//!
//! With `[ha]`, a daemon that does not lead forwards those commands to the
//! leader's `advertise_url` (once: a forwarded command is never forwarded
//! again), `/api/v1/status` has an `ha` object (role, leader, etcd error,
//! config digest match), and `/readyz` adds `etcd_unreachable` and
//! `no_leader`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::owners::{Answer, Command, Owners, Refusal, Reply};
use super::status::StatusBoard;
use crate::state::NodeKind;
use crate::telemetry::metrics::Metrics;

/// The largest request body accepted.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;

/// The admin token file, as the latest (re)load names it: shared between
/// the daemon (which changes it on reload) and the server (which reads the
/// file on every mutating request, so a rotated token applies at once).
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenSource(Arc<std::sync::RwLock<Option<PathBuf>>>);

impl TokenSource {
    /// A source naming `file` (or no token).
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(file)))
    }

    /// Names another file (or none) from now on.
    pub(crate) fn set(&self, file: Option<PathBuf>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = file;
    }

    /// The file named now.
    pub(crate) fn file(&self) -> Option<PathBuf> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the handlers need.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Per-cluster status.
    pub board: Arc<StatusBoard>,
    /// The cluster owners' mailboxes, for pause, resume and manual orders.
    pub owners: Arc<Owners>,
    /// The bearer token file, as the latest (re)load names it.
    pub token: TokenSource,
    /// Leadership, with `[ha]`: a standby forwards operator commands to
    /// the leader.
    pub ha: Option<Arc<super::ha::Ha>>,
    /// The one HTTP client, for forwarding.
    pub http: reqwest::Client,
    /// The durable state, for readiness (`state_lost`).
    pub state: Option<Arc<super::StateHandle>>,
    /// The address the admin server is bound to (whoami's relay check).
    pub bound: Option<SocketAddr>,
    /// What the daemon did, for `/api/v1/history`.
    pub history: Arc<crate::history::History>,
}

/// The router, for tests and `serve`.
pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/history", get(history))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/clusters/{id}/pause", post(pause))
        .route("/api/v1/clusters/{id}/resume", post(resume))
        .route("/api/v1/clusters/{id}/scale-out", post(scale_out))
        .route("/api/v1/clusters/{id}/scale-in", post(scale_in))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Outermost: runs before routing and before any extractor.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state(state)
}

/// Authentication before anything else: every request but GET and HEAD
/// needs the token (or, without one, a loopback peer). A refusal says why
/// and nothing of the request is read or logged.
async fn authenticate(State(s): State<AdminState>, request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    match authorize(&s, peer, request.headers()) {
        Ok(()) => next.run(request).await,
        Err((code, why)) => (code, Json(json!({"error": why}))).into_response(),
    }
}

/// `GET /api/v1/whoami?nonce=N`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct WhoamiQuery {
    /// A fresh random value from the caller, at most 256 bytes.
    pub nonce: String,
}

/// `GET /api/v1/history?cluster=ID&limit=N&since=RFC3339`.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct HistoryQuery {
    /// One cluster's events only.
    pub cluster: Option<String>,
    /// At most this many (default [`HISTORY_LIMIT`]).
    pub limit: Option<String>,
    /// Events at or after this time (RFC 3339).
    pub since: Option<String>,
}

/// The events `/api/v1/history` answers without a `limit`.
pub(crate) const HISTORY_LIMIT: usize = 100;

/// What the daemon did, newest first: `{"events": [...]}`.
async fn history(State(s): State<AdminState>, Query(q): Query<HistoryQuery>) -> Response {
    let bad = |why: String| (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response();
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => HISTORY_LIMIT,
        Some(Ok(n)) if n >= 1 => n,
        Some(_) => return bad("limit must be a whole number of at least 1".into()),
    };
    let since = match q.since.as_deref().map(chrono::DateTime::parse_from_rfc3339) {
        None => None,
        Some(Ok(t)) => Some(t.with_timezone(&chrono::Utc)),
        Some(Err(e)) => {
            return bad(format!(
                "since must be an RFC 3339 time like 2026-12-06T08:00:00Z ({e})"
            ));
        }
    };
    if let Some(id) = &q.cluster
        && let Err(refused) = checked_id(id)
    {
        return *refused;
    }
    let events = s
        .history
        .query(&crate::history::Query {
            cluster: q.cluster,
            limit: Some(limit),
            since,
        })
        .await;
    Json(json!({ "events": events })).into_response()
}

/// Proves that this daemon knows the admin token, without revealing it.
async fn whoami(State(s): State<AdminState>, Query(q): Query<WhoamiQuery>) -> Response {
    if q.nonce.is_empty() || q.nonce.len() > 256 {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "nonce must be 1 to 256 bytes"})),
        )
            .into_response();
    }
    if let Some((_, named)) = q.nonce.rsplit_once('@')
        && !s.answers_at(named)
    {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "the nonce names another daemon's address"})),
        )
            .into_response();
    }
    let proof = s
        .token
        .file()
        .and_then(|f| crate::files::read_secret(&f).ok())
        .filter(|t| !t.is_empty())
        .map(|token| {
            hex::encode(crate::tencent::sign::hmac(
                token.as_bytes(),
                q.nonce.as_bytes(),
            ))
        });
    Json(json!({"proof": proof})).into_response()
}

impl AdminState {
    /// Whether `authority` (`HOST:PORT` as a client dialled it) names this
    /// daemon: its bound address, or with `[ha]` its advertise URL.
    fn answers_at(&self, authority: &str) -> bool {
        if let Ok(addr) = authority.parse::<SocketAddr>()
            && let Some(bound) = self.bound
            && addr.port() == bound.port()
            && (addr.ip() == bound.ip() || bound.ip().is_unspecified())
        {
            return true;
        }
        self.ha.as_ref().is_some_and(|h| {
            url::Url::parse(&h.advertise_url()).ok().is_some_and(|u| {
                let host = u.host_str().unwrap_or_default();
                u.port_or_known_default()
                    .is_some_and(|p| authority == format!("{host}:{p}"))
            })
        })
    }
}

/// Serves on `listener` until `cancel`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    cancel: CancellationToken,
) {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
    {
        tracing::error!(message = "Admin server failed.", error = %e);
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    match s.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn healthz(State(s): State<AdminState>) -> Response {
    let stalled = s.board.stalled();
    if stalled.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "stalled", "reasons": stalled})),
        )
            .into_response()
    }
}

/// With `[ha]`: the process-wide reasons, `etcd_unreachable` and
/// `no_leader`. A standby with etcd reachable and a leader known is ready.
fn ha_reasons(s: &AdminState) -> Vec<super::status::ReadinessReason> {
    let Some(ha) = &s.ha else {
        return Vec::new();
    };
    let view = ha.view();
    let mut out = Vec::new();
    if let Some(e) = &view.etcd_error {
        out.push(super::status::ReadinessReason {
            cluster: None,
            reason: "etcd_unreachable",
            detail: format!("{e}; every daemon holds until etcd answers"),
        });
    }
    if view.leader.is_none() {
        out.push(super::status::ReadinessReason {
            cluster: None,
            reason: "no_leader",
            detail: "no daemon holds the leader lease; nothing is scaled".into(),
        });
    }
    out
}

/// `state_lost`: the state directory was deleted or replaced, or the state
/// cannot be written (orders wait until it can).
fn state_reasons(s: &AdminState) -> Vec<super::status::ReadinessReason> {
    let Some(state) = &s.state else {
        return Vec::new();
    };
    let detail = if state.lost().is_cancelled() {
        Some(
            "the state directory was deleted or replaced; the daemon sends nothing more and exits"
                .to_string(),
        )
    } else {
        state
            .write_error()
            .map(|e| format!("{e}; nothing is ordered or removed until the state can be written"))
    };
    detail
        .map(|detail| super::status::ReadinessReason {
            cluster: None,
            reason: "state_lost",
            detail,
        })
        .into_iter()
        .collect()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let mut reasons = ha_reasons(&s);
    reasons.extend(state_reasons(&s));
    reasons.extend(s.board.not_ready());
    if reasons.is_empty() {
        Json(json!({"ready": true, "reasons": []})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reasons": reasons})),
        )
            .into_response()
    }
}

async fn status(State(s): State<AdminState>) -> Response {
    Json(StatusAnswer {
        clusters: OneByOne(s.board.snapshot()),
        ha: s.ha.as_ref().map(|h| json!(h.view())),
        now: s.board.now(),
    })
    .into_response()
}

/// `/api/v1/status`'s answer. Its keys are in name order, as a JSON value's
/// are, and so are every cluster's (see [`OneByOne`]).
#[derive(serde::Serialize)]
struct StatusAnswer {
    clusters: OneByOne<super::status::ClusterStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ha: Option<serde_json::Value>,
    now: chrono::DateTime<chrono::Utc>,
}

/// A list written one element at a time, each as its JSON value (keys in
/// name order): the same text as the list's JSON value, without building
/// the value of the whole list (several megabytes for 500 clusters).
struct OneByOne<T>(Vec<T>);

impl<T: serde::Serialize> serde::Serialize for OneByOne<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeSeq as _};
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for item in &self.0 {
            seq.serialize_element(&serde_json::to_value(item).map_err(S::Error::custom)?)?;
        }
        seq.end()
    }
}

fn authorize(
    s: &AdminState,
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let deny = |code: StatusCode, why: &'static str| Err((code, why));
    match s.token.file() {
        None if peer.is_some_and(|p| p.ip().is_loopback()) => Ok(()),
        None => deny(
            StatusCode::FORBIDDEN,
            "no admin_token_file is configured, so only loopback clients may do this",
        ),
        Some(path) => {
            let Ok(expected) = crate::files::read_secret(&path) else {
                tracing::warn!(message = "Admin token file unreadable; refusing the request.", path = %path.display());
                return deny(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the admin token file cannot be read",
                );
            };
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            if !expected.is_empty()
                && crate::tencent::sign::same_secret(given.as_bytes(), expected.as_bytes())
            {
                Ok(())
            } else {
                deny(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            }
        }
    }
}

/// How long a handler waits for the owner: its current step (up to a few
/// API calls with retries) and then the command itself.
const OWNER_ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(600);

/// Marks a command a standby forwarded, so it is never forwarded twice.
const FORWARDED: &str = "x-emr-autoscaler-forwarded-by";

/// With `[ha]`, a standby sends the command on to the leader and answers
/// with the leader's answer.
async fn forward(
    s: &AdminState,
    ha: &super::ha::Ha,
    headers: &HeaderMap,
    id: &str,
    verb: &str,
    body: axum::body::Bytes,
) -> Response {
    let view = ha.view();
    let unavailable = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": why, "role": view.role, "leader": view.leader})),
        )
            .into_response()
    };
    if headers.contains_key(FORWARDED) {
        return unavailable(
            "this daemon is not the leader either; the leadership is changing, try again".into(),
        );
    }
    let Some(leader) = view.leader.clone() else {
        return unavailable(format!(
            "no leader is known ({}); nothing was sent",
            view.etcd_error
                .as_deref()
                .unwrap_or("no daemon holds the lease")
        ));
    };
    let url = format!(
        "{}/api/v1/clusters/{id}/{verb}",
        leader.advertise_url.trim_end_matches('/')
    );
    tracing::info!(message = "Forwarding an operator command to the leader.", leader = %leader.node_name, url = %url);
    let mut request = s
        .http
        .post(&url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(FORWARDED, view.node_name.as_str())
        .timeout(OWNER_ANSWER_WITHIN)
        .body(body);
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        request = request.header(header::AUTHORIZATION, auth.clone());
    }
    match request.send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            let body = resp.json::<serde_json::Value>().await.unwrap_or_default();
            (status, Json(body)).into_response()
        }
        Err(e) if e.is_connect() => unavailable(format!(
            "the leader {} at {} does not answer ({e}); nothing was sent",
            leader.node_name, leader.advertise_url
        )),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": format!(
                "the leader {} at {} did not answer ({e}); the command may have been served: check its status",
                leader.node_name, leader.advertise_url
            )})),
        )
            .into_response(),
    }
}

/// A cluster id from the URL, checked before it is used or logged.
fn checked_id(id: &str) -> Result<(), Box<Response>> {
    if crate::tencent::emr::is_valid_instance_id(id) {
        Ok(())
    } else {
        Err(Box::new(
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not a cluster id like emr-abc12345"})),
            )
                .into_response(),
        ))
    }
}

/// The HTTP answer to an owner's answer: 200 with what it did, or the
/// refusal's status code with its message (and, for a dry run, the request
/// that would have been sent; for an API error, Tencent's code and ids).
pub(crate) fn reply(answer: Answer) -> Reply {
    let refusal = match answer {
        Ok(accepted) => {
            return Reply::ok(serde_json::to_value(accepted).unwrap_or_default());
        }
        Err(refusal) => refusal,
    };
    let status = match &refusal {
        Refusal::Standby | Refusal::MaxUncheckable { .. } | Refusal::CountUnknown { .. } => 503,
        Refusal::Paused { .. }
        | Refusal::OperationRunning { .. }
        | Refusal::OfferingsUnavailable { .. }
        | Refusal::AboveMax { .. }
        | Refusal::BelowMin { .. }
        | Refusal::NoOwnerTag { .. }
        | Refusal::NoneEligible(_)
        | Refusal::DryRun { .. } => 409,
        Refusal::NodesUnreadable(_) | Refusal::Rejected(_) => 502,
        Refusal::StateUnwritable(_) | Refusal::IntentUnwritable | Refusal::NothingSent => 500,
    };
    let body = match &refusal {
        Refusal::DryRun { request } => json!({"error": refusal.to_string(), "Request": request}),
        Refusal::Rejected(r) => serde_json::to_value(r).unwrap_or_default(),
        _ => json!({"error": refusal.to_string()}),
    };
    Reply { status, body }
}

async fn ask_owner(
    s: &AdminState,
    headers: &HeaderMap,
    (id, verb, body): (&str, &str, axum::body::Bytes),
    make: impl FnOnce(tokio::sync::oneshot::Sender<Answer>) -> Command,
) -> Response {
    if let Some(ha) = &s.ha
        && ha.view().role != super::ha::Role::Leader
    {
        return forward(s, ha, headers, id, verb, body).await;
    }
    let Some(mailbox) = s.owners.get(id) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("{id} is not a configured cluster")})),
        )
            .into_response();
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    if mailbox.send(make(tx)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "the cluster's owner is restarting; try again"})),
        )
            .into_response();
    }
    match tokio::time::timeout(OWNER_ANSWER_WITHIN, rx).await {
        Ok(Ok(answer)) => {
            let reply = reply(answer);
            (
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                Json(reply.body),
            )
                .into_response()
        }
        Ok(Err(_)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"error": "the cluster's owner stopped before answering; check the status"}),
            ),
        )
            .into_response(),
        Err(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            Json(json!({"error": "the cluster's owner did not answer in time; check the status"})),
        )
            .into_response(),
    }
}

/// The body of `POST /api/v1/clusters/{id}/scale-out`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScaleOutBody {
    /// Task nodes, 1 to 20.
    pub task_count: Option<u32>,
    /// Core nodes, 1 to 20.
    pub core_count: Option<u32>,
}

async fn scale_out(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = checked_id(&id) {
        return *refused;
    }
    let bad = |why: String| (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response();
    let parsed: ScaleOutBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return bad(format!(
                "the body must be {{\"task_count\": N}} or {{\"core_count\": N}}: {e}"
            ));
        }
    };
    let (kind, count) = match (parsed.task_count, parsed.core_count) {
        (Some(n), None) => (NodeKind::Task, n),
        (None, Some(n)) => (NodeKind::Core, n),
        _ => return bad("give exactly one of task_count and core_count".into()),
    };
    if !(1..=20).contains(&count) {
        return bad(format!(
            "{count} is outside 1..=20; one request adds 1 to 20 nodes"
        ));
    }
    tracing::info!(message = "Manual scale-out asked.", cluster = %id, count, kind = ?kind);
    ask_owner(&s, &headers, (&id, "scale-out", body), |reply| {
        Command::ScaleOut { kind, count, reply }
    })
    .await
}

/// The body of `POST /api/v1/clusters/{id}/scale-in`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScaleInBody {
    /// Task nodes to give back, 1 to [`MAX_MANUAL_REMOVAL`].
    pub count: u32,
}

/// The most nodes one manual scale-in gives back.
pub(crate) const MAX_MANUAL_REMOVAL: u32 = 100;

async fn scale_in(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = checked_id(&id) {
        return *refused;
    }
    let bad = |why: String| (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response();
    let count = match serde_json::from_slice::<ScaleInBody>(&body) {
        Ok(b) => b.count,
        Err(e) => return bad(format!("the body must be {{\"count\": N}}: {e}")),
    };
    if !(1..=MAX_MANUAL_REMOVAL).contains(&count) {
        return bad(format!("{count} is outside 1..={MAX_MANUAL_REMOVAL}"));
    }
    tracing::info!(message = "Manual scale-in asked.", cluster = %id, count);
    ask_owner(&s, &headers, (&id, "scale-in", body), |reply| {
        Command::ScaleIn { count, reply }
    })
    .await
}

async fn pause(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = checked_id(&id) {
        return *refused;
    }
    ask_owner(&s, &headers, (&id, "pause", body), Command::Pause).await
}

async fn resume(
    State(s): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = checked_id(&id) {
        return *refused;
    }
    ask_owner(&s, &headers, (&id, "resume", body), Command::Resume).await
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;

    /// The status answer is the text of the JSON value it was built as
    /// before: keys in name order at every level.
    #[test]
    fn the_status_answer_is_written_as_its_json_value() {
        use super::super::status::{ClusterStatus, NotReady, VoteStatus};
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clusters = vec![
            ClusterStatus {
                instance_id: "emr-b".into(),
                current: Some(3),
                votes: vec![VoteStatus {
                    rule: "pending".into(),
                    value: Some(0.5),
                    increment: 2,
                    removal: 0,
                    outcome: "hold",
                    data_issue: None,
                    capacity: None,
                }],
                not_ready: vec![NotReady::new("data_error", "rule pending: empty")],
                last_evaluation: Some(now),
                ..ClusterStatus::default()
            },
            ClusterStatus {
                instance_id: "emr-a".into(),
                ..ClusterStatus::default()
            },
        ];
        let ha = json!({"role": "leader", "leader": "a"});
        for ha in [None, Some(ha)] {
            let mut want = json!({"now": now, "clusters": clusters});
            if let Some(h) = &ha {
                want["ha"] = h.clone();
            }
            let got = StatusAnswer {
                clusters: OneByOne(clusters.clone()),
                ha,
                now,
            };
            assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&want).unwrap()
            );
        }
    }

    /// Log lines written while a test runs.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// A marker no log line may carry: it only ever comes from a caller.
    const MARK: &str = "QZXMARK";

    /// An id, header or body fragment from the caller: any printable text
    /// (control characters included) around the marker.
    fn fragment() -> impl Strategy<Value = String> {
        "[ -~\n\r\t%]{0,24}".prop_map(|s| format!("{s}{MARK}{s}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Mutating requests without the token, with random ids, verbs,
        /// headers and bodies, are always 401 and log nothing they carry;
        /// the GET endpoints stay open.
        #[test]
        fn unauthenticated_mutations_are_401_and_log_nothing(
            id in fragment(),
            verb in prop::sample::select(vec!["pause", "resume", "scale-out", "scale-in", "", "x/y"]),
            method in prop::sample::select(vec!["POST", "PUT", "DELETE", "PATCH"]),
            auth in prop::option::of(fragment()),
            header in fragment(),
            body in fragment(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let token = dir.path().join("token");
            std::fs::write(&token, "the-right-token").unwrap();
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            let _guard = tracing::subscriber::set_default(subscriber);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (status, open) = rt.block_on(async {
                let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
                let http = crate::http::http_client(
                    std::time::Duration::from_secs(2),
                    std::time::Duration::from_secs(5),
                )
                .unwrap();
                let state = AdminState {
                    metrics: Arc::new(Metrics::new()),
                    board: Arc::new(StatusBoard::new(clock.clone())),
                    owners: Arc::new(Owners::new()),
                    token: TokenSource::new(Some(token.clone())),
                    ha: None,
                    http: http.clone(),
                    state: None,
                    bound: None,
                    history: crate::history::History::start(crate::history::Log::Memory, 100),
                };
                let _mailbox = state.owners.register("emr-abc12345");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let cancel = CancellationToken::new();
                let server = tokio::spawn(serve(listener, state, cancel.clone()));
                let path: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
                let url = format!("http://{addr}/api/v1/clusters/{path}/{verb}");
                let mut request = http
                    .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url)
                    .body(body.clone());
                if let Ok(v) = reqwest::header::HeaderValue::from_str(&header.replace(['\n', '\r'], " ")) {
                    request = request.header("x-caller", v);
                }
                if let Some(a) = &auth
                    && let Ok(v) = reqwest::header::HeaderValue::from_str(&a.replace(['\n', '\r'], " "))
                {
                    request = request.header(header::AUTHORIZATION, v);
                }
                let status = request.send().await.unwrap().status().as_u16();
                let open = http
                    .get(format!("http://{addr}/api/v1/status"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                cancel.cancel();
                let _ = server.await;
                // The capture works: a line logged here is seen.
                tracing::info!(message = "Capture control line.");
                (status, open)
            });
            prop_assert_eq!(status, 401);
            prop_assert_eq!(open, 200);
            let log = captured.text();
            prop_assert!(log.contains("Capture control line."), "the log is captured");
            prop_assert!(!log.contains(MARK), "a caller's text reached the log:\n{}", log);
        }
    }

    /// whoami proves the token with HMAC-SHA256(token, nonce), and refuses a
    /// nonce that names another address.
    #[tokio::test]
    async fn whoami_proves_the_token_for_this_address_only() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "the-right-token\n").unwrap();
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
        let http = crate::http::http_client(
            std::time::Duration::from_secs(2),
            std::time::Duration::from_secs(5),
        )
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = AdminState {
            metrics: Arc::new(Metrics::new()),
            board: Arc::new(StatusBoard::new(clock.clone())),
            owners: Arc::new(Owners::new()),
            token: TokenSource::new(Some(token)),
            ha: None,
            http: http.clone(),
            state: None,
            bound: Some(addr),
            history: crate::history::History::start(crate::history::Log::Memory, 100),
        };
        let cancel = CancellationToken::new();
        let server = tokio::spawn(serve(listener, state, cancel.clone()));
        let ask = |nonce: &str| {
            let url = format!("http://{addr}/api/v1/whoami?nonce={nonce}");
            let http = http.clone();
            async move {
                let r = http.get(url).send().await.unwrap();
                (
                    r.status().as_u16(),
                    r.json::<serde_json::Value>().await.unwrap(),
                )
            }
        };
        // An HMAC-SHA256 computed independently of the product's code path:
        // RFC 2104 over SHA-256 by hand.
        let expected = |msg: &str| {
            use sha2::{Digest, Sha256};
            let mut key = [0u8; 64];
            key[..15].copy_from_slice(b"the-right-token");
            let inner: Vec<u8> = key.iter().map(|b| b ^ 0x36).chain(msg.bytes()).collect();
            let inner = Sha256::digest(&inner);
            let outer: Vec<u8> = key.iter().map(|b| b ^ 0x5c).chain(inner).collect();
            hex::encode(Sha256::digest(&outer))
        };
        let (status, body) = ask("abc").await;
        assert_eq!(status, 200);
        assert_eq!(body["proof"], expected("abc"));
        let mine = format!("n1@{addr}");
        let (status, body) = ask(&mine).await;
        assert_eq!(status, 200);
        assert_eq!(body["proof"], expected(&mine));
        let (status, body) = ask("n1@127.0.0.1:1").await;
        assert_eq!(status, 403, "{body}");
        assert!(body.get("proof").is_none());
        cancel.cancel();
        let _ = server.await;
    }
}
