//! Webhooks (`[[notify.webhooks]]`): each history event, in the webhook's
//! format, posted to the URL read from its `url_file`.
//!
//! # Rules
//! - Never in the way: each webhook has its own bounded queue
//!   ([`QUEUE`] events) and its own task. [`Webhooks::offer`] only enqueues; a
//!   full queue drops the event and counts it. A slow or hanging receiver
//!   delays nothing but its own later events.
//! - Each event is posted once, with up to [`ATTEMPTS`] tries when the receiver
//!   cannot be reached, times out, answers 429 or 5xx. A receiver that took the
//!   event but answered too late may see it again. A 4xx, or a robot's
//!   `errcode` other than 0, is not retried. Every event a webhook does not
//!   take counts in `emr_autoscaler_notify_errors_total{webhook}`.
//! - The URL is a secret: it is read from `url_file`, never logged (errors are
//!   stripped of it) and never in a label. It must be `https`, except to a
//!   loopback address. A DingTalk robot with a `secret_file` gets `timestamp` and
//!   `sign` appended to each request.

pub mod format;

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

use crate::config::notify::{WebhookConfig, WebhookFormat};
use crate::history::{Event, Kind, Listener};
use crate::telemetry::metrics::Metrics;

/// Events waiting per webhook, at most.
pub const QUEUE: usize = 1000;

/// Tries per event.
pub const ATTEMPTS: u32 = 3;

/// How long one try may take.
const TRY_WITHIN: Duration = Duration::from_secs(5);

/// The wait before the second and third tries.
const BACKOFF: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(4)];

/// The largest answer read from a receiver.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Where one webhook posts: its URL, and DingTalk's secret.
struct Target {
    url: url::Url,
    secret: Option<SecretString>,
}

/// What `check` finds wrong with a webhook's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileProblem {
    /// A file cannot be read here (`check` may run as another user than the
    /// daemon).
    Unreadable(String),
    /// The URL cannot be used.
    Invalid(String),
}

/// Checks a webhook's URL and secret files as the daemon will read them.
pub fn check(config: &WebhookConfig) -> Result<(), FileProblem> {
    match target(config) {
        Ok(_) => Ok(()),
        Err(e) if e.starts_with("cannot read") => Err(FileProblem::Unreadable(e)),
        Err(e) => Err(FileProblem::Invalid(e)),
    }
}

/// Reads and checks a webhook's URL (and secret). The error never contains
/// the URL.
fn target(config: &WebhookConfig) -> Result<Target, String> {
    let text = crate::files::read_secret(&config.url_file)
        .map_err(|e| format!("cannot read url_file {}: {e}", config.url_file.display()))?;
    let url = url::Url::parse(&text).map_err(|e| {
        format!(
            "url_file {} does not hold a URL ({e})",
            config.url_file.display()
        )
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        other => {
            return Err(format!(
                "the URL in url_file {} is {other}://; webhooks are sent over https only (http only to a loopback address)",
                config.url_file.display()
            ));
        }
    }
    let secret = match &config.secret_file {
        None => None,
        Some(file) => Some(SecretString::from(
            crate::files::read_secret(file)
                .map_err(|e| format!("cannot read secret_file {}: {e}", file.display()))?,
        )),
    };
    Ok(Target { url, secret })
}

/// One webhook's end of its queue.
#[derive(Debug)]
struct Hook {
    name: String,
    kinds: Vec<Kind>,
    queue: mpsc::Sender<Event>,
}

/// Every configured webhook, each with its task. Dropping it lets each task
/// finish its queue and end.
#[derive(Debug)]
pub struct Webhooks {
    hooks: Vec<Hook>,
    metrics: Arc<Metrics>,
}

impl Webhooks {
    /// Reads every webhook's URL and starts its task on the current runtime.
    /// A webhook whose URL cannot be used is logged (without the URL) and
    /// counts every event it is offered as an error; it never stops the
    /// daemon.
    pub fn start(configs: &[WebhookConfig], http: reqwest::Client, metrics: Arc<Metrics>) -> Self {
        metrics.register_webhooks(configs.iter().map(|c| c.name.as_str()));
        let hooks = configs
            .iter()
            .map(|config| {
                let target = target(config);
                if let Err(e) = &target {
                    tracing::error!(message = "Webhook unusable; its events are counted as errors.", webhook = %config.name, error = %e);
                }
                let (queue, rx) = mpsc::channel(QUEUE);
                tokio::spawn(deliver(
                    config.name.clone(),
                    config.format,
                    target,
                    http.clone(),
                    metrics.clone(),
                    rx,
                ));
                Hook {
                    name: config.name.clone(),
                    kinds: config.events.clone(),
                    queue,
                }
            })
            .collect();
        Webhooks { hooks, metrics }
    }
}

impl Listener for Webhooks {
    fn offer(&self, event: &Event) {
        for hook in self.hooks.iter().filter(|h| h.kinds.contains(&event.kind)) {
            if hook.queue.try_send(event.clone()).is_err() {
                self.metrics.notify_error(&hook.name);
                tracing::warn!(message = "Webhook queue full; event dropped.", webhook = %hook.name, kind = %event.kind, cluster = %event.instance_id);
            }
        }
    }
}

/// One webhook's task: posts each queued event in turn.
async fn deliver(
    name: String,
    format: WebhookFormat,
    target: Result<Target, String>,
    http: reqwest::Client,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Event>,
) {
    while let Some(event) = rx.recv().await {
        let sent = match &target {
            Ok(t) => post(&http, t, format, &event).await,
            Err(e) => Err(e.clone()),
        };
        match sent {
            Ok(()) => {
                tracing::debug!(message = "Webhook sent.", webhook = %name, kind = %event.kind)
            }
            Err(e) => {
                metrics.notify_error(&name);
                tracing::warn!(message = "Webhook failed; the event is not sent.", webhook = %name, kind = %event.kind, cluster = %event.instance_id, error = %e);
            }
        }
    }
}

/// Whether a failed try may succeed on another.
enum Failure {
    Retry(String),
    Final(String),
}

/// Posts `event` with up to [`ATTEMPTS`] tries.
async fn post(
    http: &reqwest::Client,
    target: &Target,
    format: WebhookFormat,
    event: &Event,
) -> Result<(), String> {
    let body = format::body(format, event);
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(BACKOFF[(attempt as usize - 1).min(BACKOFF.len() - 1)]).await;
        }
        match try_once(http, target, &body).await {
            Ok(()) => return Ok(()),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Retry(e)) => last = e,
        }
    }
    Err(format!("{last} (after {ATTEMPTS} tries)"))
}

async fn try_once(
    http: &reqwest::Client,
    target: &Target,
    body: &serde_json::Value,
) -> Result<(), Failure> {
    let url = match &target.secret {
        Some(secret) => format::dingtalk_signed(
            &target.url,
            secret.expose_secret(),
            crate::clock::wall_now().timestamp_millis(),
        ),
        None => target.url.clone(),
    };
    let resp = http
        .post(url)
        .timeout(TRY_WITHIN)
        .json(body)
        .send()
        .await
        .map_err(|e| Failure::Retry(e.without_url().to_string()))?;
    let status = resp.status();
    let answer = crate::http::read_capped(resp, MAX_ANSWER_BYTES)
        .await
        .unwrap_or_default();
    if status.as_u16() == 429 || status.is_server_error() {
        return Err(Failure::Retry(format!("the receiver answered {status}")));
    }
    if !status.is_success() {
        return Err(Failure::Final(format!("the receiver answered {status}")));
    }
    // WeCom and DingTalk robots answer 200 with {"errcode": N, "errmsg": ...}.
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&answer).ok();
    match parsed
        .as_ref()
        .and_then(|v| v.get("errcode"))
        .and_then(serde_json::Value::as_i64)
    {
        None | Some(0) => Ok(()),
        Some(code) => Err(Failure::Final(format!(
            "the robot refused: errcode {code} {}",
            parsed
                .as_ref()
                .and_then(|v| v.get("errmsg"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect::<String>()
        ))),
    }
}
