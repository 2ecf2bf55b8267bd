//! The admin HTTP server: `/metrics`, `/healthz`, `/readyz`, `/api/v1/status`,
//! and `POST /api/v1/clusters/{id}/pause|resume`.
//!
//! Pause and resume need the bearer token from `admin_token_file` when one is
//! configured (a missing file refuses the request, it never stops the daemon);
//! without a token file they accept loopback clients only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::daemon::StateHandle;
use crate::daemon::status::StatusBoard;
use crate::telemetry::metrics::Metrics;

/// What the handlers need.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// Metrics to expose.
    pub metrics: Arc<Metrics>,
    /// Per-cluster status.
    pub board: Arc<StatusBoard>,
    /// Durable state, for pause/resume.
    pub state: Arc<StateHandle>,
    /// Bearer token file for pause/resume.
    pub token_file: Option<PathBuf>,
    /// For timestamps.
    pub clock: SharedClock,
}

/// The router, for tests and `serve`.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status))
        .route("/api/v1/clusters/{id}/pause", post(pause))
        .route("/api/v1/clusters/{id}/resume", post(resume))
        .with_state(state)
}

/// Serves on `listener` until `cancel`.
pub async fn serve(
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

async fn readyz(State(s): State<AdminState>) -> Response {
    let reasons = s.board.not_ready();
    if reasons.is_empty() {
        Json(json!({"ready": true})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reasons": reasons})),
        )
            .into_response()
    }
}

async fn status(State(s): State<AdminState>) -> Response {
    Json(json!({"now": s.board.now(), "clusters": s.board.snapshot()})).into_response()
}

fn authorize(
    s: &AdminState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<(), (StatusCode, &'static str)> {
    let deny = |code: StatusCode, why: &'static str| Err((code, why));
    match &s.token_file {
        None if peer.ip().is_loopback() => Ok(()),
        None => deny(
            StatusCode::FORBIDDEN,
            "no admin_token_file is configured, so only loopback clients may do this",
        ),
        Some(path) => {
            let Ok(expected) = std::fs::read_to_string(path) else {
                tracing::warn!(message = "Admin token file unreadable; refusing pause/resume.", path = %path.display());
                return deny(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the admin token file cannot be read",
                );
            };
            let expected = expected.trim();
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let same = !expected.is_empty()
                && given.len() == expected.len()
                && given
                    .bytes()
                    .zip(expected.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            if same {
                Ok(())
            } else {
                deny(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            }
        }
    }
}

async fn set_paused(
    s: AdminState,
    peer: SocketAddr,
    headers: HeaderMap,
    id: String,
    paused: bool,
) -> Response {
    if let Err((code, why)) = authorize(&s, peer, &headers) {
        return (code, Json(json!({"error": why}))).into_response();
    }
    let known = s.board.snapshot().iter().any(|c| c.instance_id == id);
    if !known {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("{id} is not a configured cluster")})),
        )
            .into_response();
    }
    let result = s
        .state
        .update(|st| {
            let c = st.cluster_mut(&id);
            c.paused = paused;
            if !paused {
                c.breaker_open = None;
            }
        })
        .await;
    s.board.update(&id, |c| {
        c.paused = paused;
        if !paused {
            c.breaker = None;
        }
    });
    match result {
        Ok(()) => {
            tracing::info!(message = if paused { "Cluster paused by operator." } else { "Cluster resumed by operator." }, cluster = %id, peer = %peer);
            Json(json!({"instance_id": id, "paused": paused, "at": s.clock.now()})).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn pause(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_paused(s, peer, headers, id, true).await
}

async fn resume(
    State(s): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_paused(s, peer, headers, id, false).await
}
