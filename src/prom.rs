//! Prometheus: instant and range queries through `prometheus-http-query`,
//! sharing the EMR client's `reqwest::Client`, and the classification of every
//! answer into a number or a [`DataIssue`].
//!
//! Nothing that is not a single finite sample ever becomes a number: an empty
//! vector, several series, NaN/Inf, a stale sample or a failed query are all
//! reported as such, so a missing series can never read as zero.
//!
//! # Rules
//! - Freshness is Prometheus's own (a series no longer scraped reads empty, which
//!   holds). The former rule key `max_age` is refused by `check` with the PromQL
//!   that replaces it: on aggregated queries `timestamp()` is the evaluation time.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_http_query::response::{Data, PromqlResult};

use crate::policy::{DataIssue, Reading, Sample};

/// Prometheus returns at most this many points per series in one range query.
pub(crate) const MAX_POINTS_PER_QUERY: i64 = 11_000;

/// How queries authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <file contents>`, read at every query so rotation works.
    Bearer(PathBuf),
    /// Basic auth; the password is read from a file at every query.
    Basic {
        /// User name.
        user: String,
        /// File holding the password.
        password_file: PathBuf,
    },
}

/// Why a query gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// Prometheus could not be reached or answered garbage.
    #[error("Prometheus query failed: {0}")]
    Query(String),
    /// No answer within the timeout.
    #[error("Prometheus query timed out after {0:?}")]
    Timeout(Duration),
    /// A credential file could not be read.
    #[error("cannot read Prometheus credential file {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The answer has a shape the caller cannot use.
    #[error("unexpected Prometheus result: {0}")]
    Shape(String),
    /// The answer's body could not be read, or was over [`MAX_BODY_BYTES`].
    #[error("Prometheus query failed: {0}")]
    Body(#[source] crate::http::ReadError),
}

/// `prometheus.url` cannot be the base of the query API (the query client
/// refused to parse it), so no Prometheus client was built.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {source}")]
pub struct UrlError {
    /// The URL as given.
    pub url: String,
    /// Why the query client refused it.
    #[source]
    pub source: prometheus_http_query::Error,
}

/// The largest Prometheus answer read (a range chunk of 11,000 points is far
/// below it); a bigger one is a failed query.
pub(crate) const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The API's envelope.
#[derive(serde::Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
enum Envelope {
    Success {
        data: PromqlResult,
    },
    Error {
        #[serde(rename = "errorType", default)]
        error_type: String,
        #[serde(default)]
        error: String,
    },
}

/// Sends a query and reads its answer, at most [`MAX_BODY_BYTES`] of it.
async fn fetch(
    send: impl std::future::Future<Output = Result<reqwest::Response, prometheus_http_query::Error>>,
) -> Result<PromqlResult, PromError> {
    let resp = send
        .await
        .map_err(|e| PromError::Query(crate::http::error_chain(&e)))?;
    let status = resp.status();
    let body = crate::http::read_capped(resp, MAX_BODY_BYTES)
        .await
        .map_err(PromError::Body)?;
    match serde_json::from_slice::<Envelope>(&body) {
        Ok(Envelope::Success { data }) => Ok(data),
        Ok(Envelope::Error { error_type, error }) => {
            Err(PromError::Query(format!("{error_type}: {error}")))
        }
        Err(e) => Err(PromError::Query(format!(
            "HTTP {status}, not a Prometheus answer ({e}); body starts: {:?}",
            crate::tencent::error::body_excerpt(&body)
        ))),
    }
}

/// An instant reading and, when it failed, why (for logs).
#[derive(Debug)]
pub struct Observed {
    /// The classified reading.
    pub reading: Reading,
    /// The error behind [`DataIssue::Error`].
    pub error: Option<PromError>,
}

/// A Prometheus server.
#[derive(Clone)]
pub struct Prometheus {
    client: prometheus_http_query::Client,
    timeout: Duration,
    auth: Auth,
}

impl std::fmt::Debug for Prometheus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prometheus")
            .field("url", &self.client.base_url().as_str())
            .field("timeout", &self.timeout)
            .field("auth", &self.auth)
            .finish()
    }
}

/// Classifies an instant query result. Pure.
pub(crate) fn classify(data: &Data) -> Reading {
    match data {
        Data::Vector(v) => match v.as_slice() {
            [] => Reading::Missing(DataIssue::Empty),
            [one] => Reading::from_f64(one.sample().value()),
            _ => Reading::Missing(DataIssue::MultipleSeries),
        },
        Data::Scalar(s) => Reading::from_f64(s.value()),
        Data::Matrix(_) => Reading::Missing(DataIssue::Error),
    }
}

fn read_secret(path: &std::path::Path) -> Result<String, PromError> {
    crate::files::read_secret(path).map_err(|e| PromError::Credentials {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Prometheus {
    /// A client for `url` over the shared `http` client.
    pub fn new(
        http: reqwest::Client,
        url: &str,
        timeout: Duration,
        auth: Auth,
    ) -> Result<Self, UrlError> {
        let client = prometheus_http_query::Client::from(http, url).map_err(|source| UrlError {
            url: url.to_string(),
            source,
        })?;
        Ok(Self {
            client,
            timeout,
            auth,
        })
    }

    fn authorization(&self) -> Result<Option<String>, PromError> {
        use base64::Engine;
        Ok(match &self.auth {
            Auth::None => None,
            Auth::Bearer(path) => Some(format!("Bearer {}", read_secret(path)?)),
            Auth::Basic {
                user,
                password_file,
            } => {
                let password = read_secret(password_file)?;
                let raw = format!("{user}:{password}");
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
        })
    }

    async fn run_instant(&self, query: &str) -> Result<PromqlResult, PromError> {
        let mut builder = self
            .client
            .query(query)
            .timeout(self.timeout.as_millis() as i64);
        if let Some(value) = self.authorization()? {
            let mut v = reqwest::header::HeaderValue::from_str(&value)
                .map_err(|_| PromError::Query("credential contains invalid characters".into()))?;
            v.set_sensitive(true);
            builder = builder.header(reqwest::header::AUTHORIZATION, v);
        }
        match tokio::time::timeout(self.timeout, fetch(builder.get_raw())).await {
            Err(_) => Err(PromError::Timeout(self.timeout)),
            Ok(r) => r,
        }
    }

    /// Evaluates `query` now. Freshness is Prometheus's own: a series no
    /// longer scraped drops out after its staleness period and reads empty.
    pub async fn instant(&self, query: &str) -> Observed {
        let result = match self.run_instant(query).await {
            Ok(r) => r,
            Err(e) => {
                return Observed {
                    reading: Reading::Missing(DataIssue::Error),
                    error: Some(e),
                };
            }
        };
        let reading = classify(result.data());
        if matches!(result.data(), Data::Matrix(_)) {
            return Observed {
                reading,
                error: Some(PromError::Shape(
                    "a range vector; rules need an instant expression".into(),
                )),
            };
        }
        Observed {
            reading,
            error: None,
        }
    }

    /// Evaluates `query` over `[start, end]` every `step`, in as many requests
    /// as Prometheus's 11,000-points limit needs. Several series are an error;
    /// no series gives no samples.
    pub(crate) async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
        mut progress: impl FnMut(i64, i64),
    ) -> Result<Vec<Sample>, PromError> {
        let step_s = step.as_secs().max(1) as i64;
        let (start_s, end_s) = (start.timestamp(), end.timestamp());
        let chunk = step_s * (MAX_POINTS_PER_QUERY - 1);
        let mut out = Vec::new();
        let mut from = start_s;
        while from <= end_s {
            let to = (from + chunk).min(end_s);
            let mut builder = self.client.query_range(query, from, to, step_s as f64);
            if let Some(value) = self.authorization()? {
                let v = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    PromError::Query("credential contains invalid characters".into())
                })?;
                builder = builder.header(reqwest::header::AUTHORIZATION, v);
            }
            let result = tokio::time::timeout(self.timeout * 4, fetch(builder.get_raw()))
                .await
                .map_err(|_| PromError::Timeout(self.timeout * 4))??;
            match result.data() {
                Data::Matrix(m) if m.is_empty() => {}
                Data::Matrix(m) if m.len() == 1 => {
                    for s in m[0].samples() {
                        let at = DateTime::from_timestamp(s.timestamp() as i64, 0).unwrap_or(start);
                        out.push(Sample {
                            at,
                            value: Reading::from_f64(s.value()),
                        });
                    }
                }
                Data::Matrix(m) => {
                    return Err(PromError::Shape(format!(
                        "{} series; the expression must return one series (aggregate it with sum or max)",
                        m.len()
                    )));
                }
                _ => return Err(PromError::Shape("not a range result".into())),
            }
            progress(to - start_s, (end_s - start_s).max(1));
            from = to + step_s;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(json: &str) -> Data {
        serde_json::from_str::<serde_json::Value>(json)
            .ok()
            .and_then(|v| serde_json::from_value::<Data>(v).ok())
            .expect("test data parses")
    }

    #[test]
    fn classification() {
        let one = r#"{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"12.5"]}]}"#;
        assert_eq!(classify(&data(one)), Reading::Value(12.5));
        let none = r#"{"resultType":"vector","result":[]}"#;
        assert_eq!(classify(&data(none)), Reading::Missing(DataIssue::Empty));
        let two = r#"{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"2"]}]}"#;
        assert_eq!(
            classify(&data(two)),
            Reading::Missing(DataIssue::MultipleSeries)
        );
        for v in ["NaN", "+Inf", "-Inf"] {
            let j = format!(
                r#"{{"resultType":"vector","result":[{{"metric":{{}},"value":[1,"{v}"]}}]}}"#
            );
            assert_eq!(classify(&data(&j)), Reading::Missing(DataIssue::NaN), "{v}");
        }
        let scalar = r#"{"resultType":"scalar","result":[1700000000,"3"]}"#;
        assert_eq!(classify(&data(scalar)), Reading::Value(3.0));
        let huge = r#"{"resultType":"vector","result":[{"metric":{},"value":[1,"1e308"]}]}"#;
        assert_eq!(classify(&data(huge)), Reading::Value(1e308));
    }

    proptest! {
        /// Any JSON that parses as a result classifies without panicking, and
        /// only a single finite sample becomes a number.
        #[test]
        fn arbitrary_results_never_become_silent_numbers(values in proptest::collection::vec(any::<f64>(), 0..4)) {
            let series: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!(r#"{{"metric":{{"i":"{i}"}},"value":[1,"{v}"]}}"#))
                .collect();
            let json = format!(r#"{{"resultType":"vector","result":[{}]}}"#, series.join(","));
            let Ok(d) = serde_json::from_str::<Data>(&json) else { return Ok(()) };
            let r = classify(&d);
            match r {
                Reading::Value(x) => {
                    prop_assert_eq!(values.len(), 1);
                    prop_assert!(x.is_finite());
                }
                Reading::Missing(_) => prop_assert!(values.len() != 1 || !values[0].is_finite()),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(d) = serde_json::from_slice::<Data>(&bytes) {
                let _ = classify(&d);
            }
        }
    }
}
