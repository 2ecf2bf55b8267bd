//! Transport for the Tencent Cloud API: signing, the envelope, retries.
//!
//! Every call goes through the action's rate limiter, once per attempt. Each
//! attempt is signed afresh with the wall clock but sends the same body bytes,
//! so a retried ScaleOutInstance always carries the same ClientToken. A
//! request that may have reached the server is retried only under its token,
//! and only while the token is younger than [`TOKEN_MAX_AGE`].

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::credentials::{CredentialChain, Credentials};
use super::emr::{Action, SERVICE, VERSION};
use super::error::{ApiError, body_excerpt};
use super::sign::{self, SignInput};
use crate::clock::wall_now;
use crate::http::read_capped;
use crate::tencent::limiter::Limiters;

/// The largest EMR answer read; a bigger one is a malformed answer. Batched
/// `DescribeInstances` answers for 100 clusters stay far below it.
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// A ClientToken is re-sent only while younger than this (the server keeps it 5 minutes).
pub(crate) const TOKEN_MAX_AGE: Duration = Duration::from_secs(270);

/// Why a URL cannot be the EMR API endpoint. Signed requests and session
/// tokens go there, so only https (or plain http on loopback) to a bare
/// origin is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    /// Plain http to a host that is not loopback: keys would cross the network
    /// in the clear.
    #[error("plain http is allowed only on loopback addresses, not {host}; use https")]
    PlainHttp {
        /// The host named (empty when the URL has none).
        host: String,
    },
    /// Neither https nor http.
    #[error("scheme {scheme:?} is not supported; use https")]
    Scheme {
        /// The scheme given.
        scheme: String,
    },
    /// The URL names no host.
    #[error("the URL has no host")]
    NoHost,
    /// The URL has a path or a query; the API is reached at its origin.
    #[error("the endpoint is a bare origin like https://emr.tencentcloudapi.com, without a path")]
    NotBareOrigin,
}

/// Checks an API endpoint: https anywhere, plain http only on loopback.
pub(crate) fn check_endpoint(url: &Url) -> Result<(), EndpointError> {
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url) => {}
        "http" => {
            return Err(EndpointError::PlainHttp {
                host: url.host_str().unwrap_or("").to_string(),
            });
        }
        other => {
            return Err(EndpointError::Scheme {
                scheme: other.to_string(),
            });
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(EndpointError::NoHost);
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(EndpointError::NotBareOrigin);
    }
    Ok(())
}

/// [`EmrClient::new`] refused its settings: the endpoint is not one a signed
/// request may go to. Nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("endpoint {endpoint}: {source}")]
pub struct ClientSetupError {
    /// The endpoint configured.
    pub endpoint: Url,
    /// What is wrong with it.
    #[source]
    pub source: EndpointError,
}

/// Whether the URL's host is a loopback address.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The `Host` header value reqwest sends for `url`: the host, plus `:port`
/// when the URL names a non-default one.
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// How hard to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per logical request, the first included.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles after each.
    pub base_delay: Duration,
    /// Longest backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The backoff after failed attempt `attempt` (1-based): exponential, with
    /// jitter between half and all of it.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let full = exp.min(self.max_delay);
        let half = full / 2;
        half + full.saturating_sub(half).mul_f64(fastrand::f64())
    }
}

/// The idempotency token of one logical ScaleOutInstance request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientToken {
    /// The token sent as `ClientToken`.
    pub value: String,
    /// When it was made, by the wall clock.
    pub created_at: DateTime<Utc>,
}

impl ClientToken {
    /// A fresh random token.
    pub fn generate() -> Self {
        Self {
            value: uuid::Uuid::new_v4().to_string(),
            created_at: wall_now(),
        }
    }

    /// Whether the server still honours it for deduplication, with margin.
    pub(crate) fn is_young(&self, now: DateTime<Utc>) -> bool {
        token_young(self.created_at, now)
    }
}

/// Whether a token made at `created_at` (wall clock) is still younger than
/// [`TOKEN_MAX_AGE`] at `now`. A negative age means the wall clock stepped
/// back: the true age is unknown, so the token counts as old and is never
/// re-sent.
pub(crate) fn token_young(created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - created_at)
        .to_std()
        .is_ok_and(|age| age < TOKEN_MAX_AGE)
}

/// Told about every attempt, for metrics.
pub trait ApiObserver: Send + Sync + std::fmt::Debug {
    /// One attempt ended with `result` (`ok` or an error class label).
    fn attempt_finished(&self, action: Action, result: &'static str, elapsed: Duration);
    /// A caller waited this long in the action's limiter queue.
    fn limiter_waited(&self, action: Action, waited: Duration);
}

/// Asked before every attempt and again just before a request leaves. With
/// `[ha]` the daemon's gate fences every call on holding the leader lease;
/// without a gate every call may leave.
pub trait SendGate: Send + Sync + std::fmt::Debug {
    /// Before each attempt of a mutating call, retries included: a durable,
    /// fenced record of the attempt. An `Err` sends nothing.
    fn record_attempt<'a>(
        &'a self,
        action: Action,
        body: &'a [u8],
        attempt: u32,
    ) -> futures_util::future::BoxFuture<'a, Result<(), SendRefused>>;
    /// Immediately before any request leaves (after the limiter): an `Err`
    /// sends nothing.
    fn may_send(&self, action: Action) -> Result<(), SendRefused>;
}

/// Why a [`SendGate`] kept a request from leaving. The client reports it as
/// [`ApiError::Fenced`]; nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum SendRefused {
    /// [`SendGate::may_send`]: this process does not lead.
    #[error("{action}: this daemon is not the leader")]
    NotLeader {
        /// The action that was about to leave.
        action: &'static str,
    },
    /// [`SendGate::may_send`]: the lease may have expired by now, so another
    /// process may lead; the gate steps down.
    #[error("{action}: the lease deadline has passed")]
    DeadlinePassed {
        /// The action that was about to leave.
        action: &'static str,
    },
    /// [`SendGate::record_attempt`]: there is no leadership to fence the
    /// attempt record on.
    #[error("this daemon is not the leader")]
    Unfenced,
    /// [`SendGate::record_attempt`]: the fenced record of the attempt could
    /// not be written (the store refused it or did not answer).
    #[error("the attempt record could not be written: {0}")]
    NotRecorded(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Ignores everything.
#[derive(Debug, Default)]
pub struct NoObserver;

impl ApiObserver for NoObserver {
    fn attempt_finished(&self, _: Action, _: &'static str, _: Duration) {}
    fn limiter_waited(&self, _: Action, _: Duration) {}
}

/// Where and how to reach the API.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `https://emr.tencentcloudapi.com`, a regional endpoint, or a loopback simulator.
    pub endpoint: Url,
    /// `X-TC-Region`.
    pub region: String,
    /// `X-TC-Language`, when set.
    pub language: Option<String>,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The whole-request timeout of the HTTP client (`tencent.request_timeout`),
    /// named by timeout errors.
    pub request_timeout: Duration,
}

/// A request as it would be sent, with the signature and token masked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RenderedRequest {
    /// POST target.
    pub url: String,
    /// Headers in send order.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: serde_json::Value,
}

/// The EMR API client.
#[derive(Debug, Clone)]
pub struct EmrClient {
    http: reqwest::Client,
    settings: Arc<ClientSettings>,
    host: Arc<str>,
    credentials: Arc<CredentialChain>,
    limiters: Arc<Limiters>,
    observer: Arc<dyn ApiObserver>,
    gate: Option<Arc<dyn SendGate>>,
}

impl EmrClient {
    /// A client over `http` (shared with Prometheus). Refuses a non-loopback
    /// plain-http endpoint.
    pub fn new(
        http: reqwest::Client,
        settings: ClientSettings,
        credentials: Arc<CredentialChain>,
        limiters: Arc<Limiters>,
        observer: Arc<dyn ApiObserver>,
    ) -> Result<Self, ClientSetupError> {
        check_endpoint(&settings.endpoint).map_err(|source| ClientSetupError {
            endpoint: settings.endpoint.clone(),
            source,
        })?;
        Ok(Self {
            host: host_header(&settings.endpoint).into(),
            http,
            settings: Arc::new(settings),
            credentials,
            limiters,
            observer,
            gate: None,
        })
    }

    /// The same client, asking `gate` before every attempt.
    pub(crate) fn with_gate(mut self, gate: Arc<dyn SendGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    fn headers(
        &self,
        action: Action,
        creds: &Credentials,
        timestamp: i64,
        body: &[u8],
    ) -> HeaderMap {
        let signature = sign::sign(&SignInput {
            secret_id: &creds.secret_id,
            secret_key: creds.secret_key(),
            host: &self.host,
            service: SERVICE,
            timestamp,
            body,
        });
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: &str| {
            // Values are ASCII we built, or come from config that was validated.
            if let Ok(v) = HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        put(CONTENT_TYPE.as_str(), sign::CONTENT_TYPE);
        put("x-tc-action", action.name());
        put("x-tc-version", VERSION);
        put("x-tc-region", &self.settings.region);
        put("x-tc-timestamp", &timestamp.to_string());
        if let Some(lang) = &self.settings.language {
            put("x-tc-language", lang);
        }
        if let Some(token) = creds.token() {
            put("x-tc-token", token);
        }
        if let Ok(mut v) = HeaderValue::from_str(&signature.authorization) {
            v.set_sensitive(true);
            h.insert(AUTHORIZATION, v);
        }
        if let Some(v) = h.get_mut("x-tc-token") {
            v.set_sensitive(true);
        }
        h
    }

    /// One signed request; returns how long it waited in the limiter too.
    async fn attempt(
        &self,
        action: Action,
        body: &[u8],
        attempt: u32,
        sent: &mut u32,
    ) -> (Result<serde_json::Value, ApiError>, Duration) {
        let creds = match self.credentials.get().await {
            Ok(c) => c,
            Err(e) => return (Err(e.into()), Duration::ZERO),
        };
        let fenced = |reason: SendRefused| ApiError::Fenced {
            action: action.name(),
            reason,
        };
        if let Some(gate) = &self.gate
            && action.is_mutating()
            && let Err(reason) = gate.record_attempt(action, body, attempt).await
        {
            return (Err(fenced(reason)), Duration::ZERO);
        }
        // Wait for the limiter as late as possible: the time between the
        // grant and the request leaving is jitter the server sees.
        let waited = self.limiters.get(action).acquire().await;
        self.observer.limiter_waited(action, waited);
        if let Some(gate) = &self.gate
            && let Err(reason) = gate.may_send(action)
        {
            return (Err(fenced(reason)), waited);
        }
        *sent += 1;
        (self.send_signed(action, &creds, body).await, waited)
    }

    async fn send_signed(
        &self,
        action: Action,
        creds: &Credentials,
        body: &[u8],
    ) -> Result<serde_json::Value, ApiError> {
        let headers = self.headers(action, creds, wall_now().timestamp(), body);
        let resp = self
            .http
            .post(self.settings.endpoint.clone())
            .headers(headers)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| transport_error(action, &e, self.settings.request_timeout))?;
        let status = resp.status();
        if status.is_redirection() {
            let location_host = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| self.settings.endpoint.join(l).ok())
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default();
            return Err(ApiError::Redirected {
                action: action.name(),
                status: status.as_u16(),
                location_host,
            });
        }
        let bytes = read_capped(resp, MAX_BODY_BYTES)
            .await
            .map_err(|e| ApiError::Malformed {
                action: action.name(),
                reason: e.to_string(),
                body: String::new(),
            })?;
        parse_envelope(action, status, &bytes)
    }

    /// Calls `action` with `request`, retrying as the error class allows.
    ///
    /// `token` must be given for a mutating action: without it nothing that may
    /// have reached the server is retried.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: Action,
        request: &Req,
        token: Option<&ClientToken>,
    ) -> Result<Resp, ApiError> {
        self.call_counted(action, request, token).await.0
    }

    /// As [`call`](Self::call), also returning how many attempts reached the
    /// network (retries included): what a caller needs to judge whether a
    /// failed mutating call may have executed.
    pub async fn call_counted<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: Action,
        request: &Req,
        token: Option<&ClientToken>,
    ) -> (Result<Resp, ApiError>, u32) {
        let mut sent = 0u32;
        let result = self.call_inner(action, request, token, &mut sent).await;
        (result, sent)
    }

    async fn call_inner<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        action: Action,
        request: &Req,
        token: Option<&ClientToken>,
        sent: &mut u32,
    ) -> Result<Resp, ApiError> {
        let body = serde_json::to_vec(request).map_err(|e| ApiError::Malformed {
            action: action.name(),
            reason: format!("cannot encode the request: {e}"),
            body: String::new(),
        })?;
        let retry = &self.settings.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(t) = token
                && !t.is_young(wall_now())
            {
                return Err(ApiError::TokenExpired {
                    action: action.name(),
                    client_token: t.value.clone(),
                    max_age: TOKEN_MAX_AGE,
                    last: None,
                });
            }
            let started = tokio::time::Instant::now();
            let (result, waited) = self.attempt(action, &body, attempt, sent).await;
            let result = result.and_then(|v| {
                serde_json::from_value::<Resp>(v.clone()).map_err(|e| ApiError::Malformed {
                    action: action.name(),
                    reason: format!("unexpected {} result: {e}", action.name()),
                    body: body_excerpt(v.to_string().as_bytes()),
                })
            });
            let label = result
                .as_ref()
                .map_or_else(|e| e.class().metric_label(), |_| "ok");
            self.observer
                .attempt_finished(action, label, started.elapsed().saturating_sub(waited));
            let error = match result {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let class = error.class();
            let may_retry = class.is_retryable()
                && !error.never_sent()
                && (!action.is_mutating() || token.is_some())
                && attempt < retry.max_attempts;
            if !may_retry {
                return Err(error);
            }
            let delay = retry.backoff(attempt);
            tracing::warn!(
                message = "API call failed; retrying.",
                action = action.name(),
                class = class.metric_label(),
                attempt,
                delay_ms = delay.as_millis() as u64,
                %error,
            );
            tokio::time::sleep(delay).await;
            if let Some(t) = token
                && !t.is_young(wall_now())
            {
                return Err(ApiError::TokenExpired {
                    action: action.name(),
                    client_token: t.value.clone(),
                    max_age: TOKEN_MAX_AGE,
                    last: Some(Box::new(error)),
                });
            }
        }
    }

    /// What `call` would send, with the signature and token masked.
    pub(crate) async fn render<Req: Serialize>(
        &self,
        action: Action,
        request: &Req,
    ) -> RenderedRequest {
        let body = serde_json::to_vec(request).unwrap_or_default();
        let creds = self
            .credentials
            .get()
            .await
            .unwrap_or_else(|e| Credentials::new(format!("<no credentials: {e}>"), "", None));
        let headers = self.headers(action, &creds, wall_now().timestamp(), &body);
        let mut shown = vec![("Host".to_string(), self.host.to_string())];
        for (name, value) in &headers {
            let value = value.to_str().unwrap_or_default();
            let value = match name.as_str() {
                "authorization" => mask_signature(value),
                "x-tc-token" => "<redacted>".to_string(),
                _ => value.to_string(),
            };
            shown.push((header_case(name.as_str()), value));
        }
        RenderedRequest {
            url: self.settings.endpoint.to_string(),
            headers: shown,
            body: serde_json::from_slice(&body).unwrap_or_default(),
        }
    }
}

fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| match part {
            "tc" => "TC".to_string(),
            p => {
                let mut c = p.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn mask_signature(authorization: &str) -> String {
    match authorization.find("Signature=") {
        Some(i) => format!("{}Signature=<redacted>", &authorization[..i]),
        None => "<redacted>".to_string(),
    }
}

fn transport_error(action: Action, e: &reqwest::Error, timeout: Duration) -> ApiError {
    if e.is_timeout() {
        return ApiError::Timeout {
            action: action.name(),
            after: timeout,
        };
    }
    let mut reason = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    ApiError::Transport {
        action: action.name(),
        reason,
    }
}

/// Turns an HTTP answer into the `Response` object, or a typed error.
///
/// `Response.Error` is checked whatever the Content-Type says. Never panics.
pub(crate) fn parse_envelope(
    action: Action,
    status: StatusCode,
    body: &[u8],
) -> Result<serde_json::Value, ApiError> {
    let name = action.name();
    if status != StatusCode::OK {
        return Err(ApiError::HttpStatus {
            action: name,
            status: status.as_u16(),
            body: body_excerpt(body),
        });
    }
    let mut doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed {
            action: name,
            reason: format!("not JSON: {e}"),
            body: body_excerpt(body),
        })?;
    let Some(response) = doc
        .get_mut("Response")
        .filter(|r| r.is_object())
        .map(serde_json::Value::take)
    else {
        return Err(ApiError::EmptyEnvelope {
            action: name,
            body: body_excerpt(body),
        });
    };
    let request_id = response
        .get("RequestId")
        .and_then(|r| r.as_str())
        .map(str::to_string);
    if let Some(error) = response.get("Error").filter(|e| !e.is_null()) {
        let code = error.get("Code").and_then(|c| c.as_str());
        return match code {
            Some(code) => Err(ApiError::Api {
                action: name,
                code: code.to_string(),
                message: error
                    .get("Message")
                    .and_then(|m| m.as_str())
                    .unwrap_or_default()
                    .to_string(),
                request_id: request_id.unwrap_or_default(),
            }),
            None => Err(ApiError::Malformed {
                action: name,
                reason: "Response.Error has no Code".into(),
                body: body_excerpt(body),
            }),
        };
    }
    if request_id.is_none() {
        return Err(ApiError::EmptyEnvelope {
            action: name,
            body: body_excerpt(body),
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tencent::error::ErrorClass;

    fn parse(status: u16, body: &str) -> Result<serde_json::Value, ApiError> {
        parse_envelope(
            Action::ScaleOutInstance,
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        )
    }

    #[test]
    fn envelope_cases() {
        assert!(parse(200, r#"{"Response":{"FlowId":1,"RequestId":"r"}}"#).is_ok());
        let e = parse(200, r#"{"Response":{"Error":{"Code":"ResourcesSoldOut.CvmSoldOut","Message":"m"},"RequestId":"r9"}}"#)
            .unwrap_err();
        assert_eq!(
            (e.code(), e.request_id(), e.class()),
            (
                Some("ResourcesSoldOut.CvmSoldOut"),
                Some("r9"),
                ErrorClass::SoldOut
            )
        );
        let long = format!("<html>{}</html>", "x".repeat(2000));
        match parse(502, &long).unwrap_err() {
            ApiError::HttpStatus { status, body, .. } => {
                assert_eq!(status, 502);
                assert_eq!(body.len(), 512);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(200, "not json").unwrap_err(),
            ApiError::Malformed { .. }
        ));
        assert!(matches!(
            parse(200, r#"{"Response":{}}"#).unwrap_err(),
            ApiError::EmptyEnvelope { .. }
        ));
        assert!(matches!(
            parse(200, r#"{"Other":1}"#).unwrap_err(),
            ApiError::EmptyEnvelope { .. }
        ));
        assert!(matches!(
            parse(200, r#"[1,2]"#).unwrap_err(),
            ApiError::EmptyEnvelope { .. }
        ));
        assert!(matches!(
            parse(200, r#"{"Response":{"Error":{"Message":"x"}}}"#).unwrap_err(),
            ApiError::Malformed { .. }
        ));
        assert_eq!(parse(429, "").unwrap_err().class(), ErrorClass::Throttled);
        assert_eq!(parse(503, "").unwrap_err().class(), ErrorClass::Internal);
    }

    #[test]
    fn endpoint_rules() {
        let ok = [
            "https://emr.tencentcloudapi.com",
            "http://127.0.0.1:8080",
            "http://[::1]:9/",
            "http://localhost:1",
        ];
        for u in ok {
            check_endpoint(&Url::parse(u).unwrap()).unwrap_or_else(|e| panic!("{u}: {e}"));
        }
        let plain = |host: &str| EndpointError::PlainHttp { host: host.into() };
        let bad = [
            (
                "http://emr.tencentcloudapi.com",
                plain("emr.tencentcloudapi.com"),
            ),
            ("http://10.0.0.1:80", plain("10.0.0.1")),
            (
                "ftp://127.0.0.1",
                EndpointError::Scheme {
                    scheme: "ftp".into(),
                },
            ),
            ("https://x/y", EndpointError::NotBareOrigin),
            ("https://x/?q=1", EndpointError::NotBareOrigin),
        ];
        for (u, want) in bad {
            assert_eq!(check_endpoint(&Url::parse(u).unwrap()), Err(want), "{u}");
        }
        // The text config check shows under tencent.endpoint.
        assert_eq!(
            plain("10.0.0.1").to_string(),
            "plain http is allowed only on loopback addresses, not 10.0.0.1; use https"
        );
        assert_eq!(
            EndpointError::Scheme {
                scheme: "ftp".into()
            }
            .to_string(),
            "scheme \"ftp\" is not supported; use https"
        );
    }

    #[test]
    fn host_header_keeps_explicit_ports() {
        assert_eq!(
            host_header(&Url::parse("http://127.0.0.1:8080").unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(
            host_header(&Url::parse("https://emr.tencentcloudapi.com:443").unwrap()),
            "emr.tencentcloudapi.com"
        );
        assert_eq!(
            host_header(&Url::parse("https://emr.tencentcloudapi.com").unwrap()),
            "emr.tencentcloudapi.com"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let p = RetryPolicy::default();
        for attempt in 1..10 {
            let d = p.backoff(attempt);
            let full = (p.base_delay * (1 << (attempt - 1))).min(p.max_delay);
            assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn token_age_limit() {
        let t = ClientToken::generate();
        assert!(t.is_young(t.created_at + chrono::Duration::seconds(269)));
        assert!(!t.is_young(t.created_at + chrono::Duration::seconds(271)));
        // The wall clock stepped back: the age is unknown, so the token is old.
        assert!(!t.is_young(t.created_at - chrono::Duration::seconds(1)));
        assert!(t.is_young(t.created_at));
    }

    #[test]
    fn masking() {
        let a = "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/emr/tc3_request, SignedHeaders=content-type;host, Signature=abcdef";
        assert_eq!(
            mask_signature(a),
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/emr/tc3_request, SignedHeaders=content-type;host, Signature=<redacted>"
        );
        assert_eq!(header_case("x-tc-action"), "X-TC-Action");
    }
}

#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        /// Arbitrary bytes and statuses never panic, and only a 200 with a
        /// JSON object envelope can succeed.
        #[test]
        fn envelope_parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048), status in 100u16..600) {
            let Ok(code) = StatusCode::from_u16(status) else { return Ok(()) };
            if let Ok(v) = parse_envelope(Action::ScaleOutInstance, code, &body) {
                prop_assert_eq!(status, 200);
                prop_assert!(v.get("RequestId").is_some());
            }
        }

        /// Plausible envelopes with hostile values: wrong types, huge and
        /// negative numbers, missing fields. Typed parsing fails cleanly.
        #[test]
        fn hostile_values_in_typed_responses(
            flow in prop_oneof![Just(serde_json::json!(null)), Just(serde_json::json!(-1)), Just(serde_json::json!(1e300)),
                                Just(serde_json::json!("12")), Just(serde_json::json!([1])), any::<i64>().prop_map(serde_json::Value::from)],
            size in prop_oneof![Just(serde_json::json!(null)), Just(serde_json::json!(-5)), Just(serde_json::json!(1e20)),
                                Just(serde_json::json!(u64::MAX)), Just(serde_json::json!("x")), any::<i64>().prop_map(serde_json::Value::from)],
        ) {
            let body = serde_json::json!({"Response": {"FlowId": flow, "RequestId": "r",
                "ClusterList": [{"ClusterId": "emr-aaaaaaaa", "Config": {"TaskNodeSize": size}}]}}).to_string();
            let v = parse_envelope(Action::DescribeInstances, StatusCode::OK, body.as_bytes()).unwrap();
            if let Ok(r) = serde_json::from_value::<super::super::emr::DescribeInstancesResponse>(v.clone())
                && let Some(list) = r.cluster_list
            {
                // Negative or huge counts never become a node count.
                if let Some(n) = list[0].task_nodes() {
                    prop_assert!(i64::from(n) == size.as_i64().unwrap_or(-1));
                }
            }
            let _ = serde_json::from_value::<super::super::emr::ScaleOutInstanceResponse>(v);
        }
    }
}
