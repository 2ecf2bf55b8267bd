//! HTTP for every client of the process: one way to build a client (no
//! redirects, bounded in time) and one bounded read of an answer. The EMR
//! API, Prometheus, YARN, the credential endpoints, etcd and the daemon's own
//! admin server are all reached through what is built here.
//!
//! This module imports nothing else from the crate.

use std::time::Duration;

/// A client builder with the process's redirect policy and timeouts, for a
/// client that needs more (etcd's CA bundle and client certificate).
pub(crate) fn builder(
    connect_timeout: Duration,
    request_timeout: Duration,
) -> reqwest::ClientBuilder {
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
) -> Result<reqwest::Client, BuildError> {
    builder(connect_timeout, request_timeout)
        .build()
        .map_err(BuildError)
}

/// reqwest could not build a client: its TLS backend failed to start, or
/// the system's resolver configuration could not be read. Nothing was sent.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(#[source] reqwest::Error);

/// Why [`read_capped`] gave no body. An answer over the cap is refused, never
/// read into memory whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The `Content-Length` header announced more than the cap; nothing of
    /// the body was read.
    #[error("the answer declares {declared} bytes, more than the {max} accepted")]
    Declared {
        /// The length the answer announced.
        declared: u64,
        /// The cap in bytes.
        max: usize,
    },
    /// The body streamed past the cap (no length announced, or a false one);
    /// reading stopped there.
    #[error("the answer is larger than the {max} bytes accepted")]
    TooLarge {
        /// The cap in bytes.
        max: usize,
    },
    /// The connection failed or broke while the body was streaming in.
    #[error("{0}")]
    Body(#[source] reqwest::Error),
}

/// Reads `resp`'s body, refusing more than `max` bytes: a declared length
/// over the cap is refused before reading, a stream over it is cut off.
pub(crate) async fn read_capped(
    mut resp: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, ReadError> {
    if let Some(declared) = resp.content_length().filter(|&n| n > max as u64) {
        return Err(ReadError::Declared { declared, max });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Body)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge { max });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its sources, `outer: inner: innermost`: a client's "error
/// sending request" says nothing until its cause (a timeout, a refused
/// connection) is named.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        // Some errors repeat their source in their own message.
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct Outer(&'static str, std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn the_chain_names_the_cause_once() {
        let timeout = || std::io::Error::new(std::io::ErrorKind::TimedOut, "operation timed out");
        assert_eq!(
            error_chain(&Outer("failed to send request", timeout())),
            "failed to send request: operation timed out"
        );
        assert_eq!(
            error_chain(&Outer("send failed: operation timed out", timeout())),
            "send failed: operation timed out"
        );
    }
}
