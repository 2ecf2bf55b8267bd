//! HTTP for every client of the process: one way to build a client (no
//! redirects, bounded in time) and one bounded read of an answer. The EMR
//! API, Prometheus, YARN, the credential endpoints, etcd and the daemon's own
//! admin server are all reached through what is built here.
//!
//! This module imports nothing else from the crate.

use std::time::Duration;

/// A client builder with the process's redirect policy and timeouts, for a
/// client that needs more (etcd's CA bundle and client certificate).
pub fn builder(connect_timeout: Duration, request_timeout: Duration) -> reqwest::ClientBuilder {
    // The ring provider keeps the build light; a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .user_agent(concat!("emr-autoscaler/", env!("CARGO_PKG_VERSION")))
}

/// Builds an HTTP client: every client of the process is made here or from
/// [`builder`], so every one has the same redirect policy.
///
/// No client follows a redirect. A signed EMR request, a session token, a
/// bearer token or a webhook's body therefore never travels to a host the
/// configuration did not name. The EMR client reports a 3xx as
/// `ApiError::Redirected`; the YARN reader follows a standby
/// ResourceManager's redirect itself, only to a configured ResourceManager
/// (see `yarn.rs`); a Prometheus behind a redirect is an error naming it.
pub fn http_client(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<reqwest::Client, String> {
    builder(connect_timeout, request_timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Reads `resp`'s body, refusing more than `max` bytes: a declared length
/// over the cap is refused before reading, a stream over it is cut off.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!(
            "the answer declares {} bytes, more than the {max} accepted",
            resp.content_length().unwrap_or(0)
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!(
                "the answer is larger than the {max} bytes accepted"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
