//! The YARN ResourceManager's REST API, read only: which NodeManagers run how
//! many containers, and which hosts run an ApplicationMaster. Scale-in uses it
//! to give back idle nodes first and AM hosts last.
//!
//! `GET /ws/v1/cluster/nodes` (`nodes.node[]`: `nodeHostName`,
//! `nodeHTTPAddress`, `state`, `numContainers`) and
//! `GET /ws/v1/cluster/apps?states=RUNNING` (`apps.app[]`:
//! `amHostHttpAddress`). The URLs are tried in order. A standby
//! ResourceManager's redirect to the active one is followed here, not by the
//! HTTP client (which follows none), and only to the same origin or to the
//! origin of a configured ResourceManager: an answer cannot send the reader
//! to a host the configuration does not name. Answers are read up to
//! [`MAX_ANSWER_BYTES`].

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::policy::scale_in::{YarnNode, YarnState, host_of};

/// The largest answer read (a cluster of thousands of nodes fits easily).
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The most redirects one read follows (standby to active is one).
const MAX_REDIRECTS: usize = 3;

/// Why the ResourceManager could not be read.
#[derive(Debug, thiserror::Error)]
pub enum YarnError {
    /// No configured ResourceManager answered usefully: why each one failed,
    /// in the order tried (empty when none is configured).
    #[error("no ResourceManager answered: {}", unavailable_text(.0))]
    Unavailable(Vec<RmError>),
}

fn unavailable_text(errors: &[RmError]) -> String {
    if errors.is_empty() {
        return "no resourcemanager_urls configured".into();
    }
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why one read from one ResourceManager failed. Every variant but
/// [`RmError::BadPath`] names the URL asked.
#[derive(Debug, thiserror::Error)]
pub enum RmError {
    /// The API path could not be joined to the configured URL.
    #[error("{0}")]
    BadPath(#[source] url::ParseError),
    /// No answer within the timeout (the rules' `prometheus.timeout`).
    #[error(
        "{url}: no answer within prometheus.timeout ({})",
        humantime::format_duration(*after)
    )]
    Timeout {
        /// The URL asked.
        url: Url,
        /// The timeout that expired.
        after: Duration,
    },
    /// The request failed before an answer arrived.
    #[error("{url}: {source}")]
    Transport {
        /// The URL asked.
        url: Url,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// A redirect without a `Location` that resolves to a URL.
    #[error("{url}: HTTP {status} without a usable Location")]
    NoLocation {
        /// The URL asked.
        url: Url,
        /// The 3xx status.
        status: reqwest::StatusCode,
    },
    /// A redirect to a host that is not a configured ResourceManager.
    #[error("{url}: redirect to {host:?} refused: it is not one of resourcemanager_urls")]
    RedirectRefused {
        /// The URL asked.
        url: Url,
        /// The host the redirect named.
        host: String,
    },
    /// More redirects in one read than a standby-to-active hop needs (3).
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects {
        /// The URL asked last.
        url: Url,
    },
    /// The answer's status is not a success.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The URL asked.
        url: Url,
        /// The status answered.
        status: reqwest::StatusCode,
    },
    /// The body could not be read, or was over [`MAX_ANSWER_BYTES`].
    #[error("{url}: {source}")]
    Body {
        /// The URL asked.
        url: Url,
        /// Why reading stopped.
        #[source]
        source: crate::http::ReadError,
    },
    /// The body is not the JSON the REST API writes.
    #[error("{url}: not the expected JSON ({source})")]
    Json {
        /// The URL asked.
        url: Url,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
}

/// A reader over the configured ResourceManager URLs.
#[derive(Debug, Clone)]
pub struct Yarn {
    http: reqwest::Client,
    urls: Vec<Url>,
    timeout: Duration,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawNode {
    node_host_name: Option<String>,
    #[serde(rename = "nodeHTTPAddress")]
    node_http_address: Option<String>,
    num_containers: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NodeList {
    node: Option<Vec<RawNode>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Nodes {
    nodes: Option<NodeList>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct RawApp {
    am_host_http_address: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct AppList {
    app: Option<Vec<RawApp>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Apps {
    apps: Option<AppList>,
}

impl Yarn {
    /// A reader over `urls` (tried in order) on the shared HTTP client.
    pub fn new(http: reqwest::Client, urls: Vec<Url>, timeout: Duration) -> Self {
        Self {
            http,
            urls,
            timeout,
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        base: &Url,
        path: &str,
    ) -> Result<T, RmError> {
        let mut url = base.join(path).map_err(RmError::BadPath)?;
        let mut hops = 0;
        let resp = loop {
            let resp = tokio::time::timeout(
                self.timeout,
                self.http
                    .get(url.clone())
                    .header("Accept", "application/json")
                    .send(),
            )
            .await
            .map_err(|_| RmError::Timeout {
                url: url.clone(),
                after: self.timeout,
            })?
            .map_err(|source| RmError::Transport {
                url: url.clone(),
                source,
            })?;
            if !resp.status().is_redirection() {
                break resp;
            }
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .ok_or_else(|| RmError::NoLocation {
                    url: url.clone(),
                    status: resp.status(),
                })?;
            if !self.may_follow(&url, &next) {
                return Err(RmError::RedirectRefused {
                    url,
                    host: next.host_str().unwrap_or_default().to_string(),
                });
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(RmError::TooManyRedirects { url });
            }
            url = next;
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(RmError::Status { url, status });
        }
        let body = crate::http::read_capped(resp, MAX_ANSWER_BYTES)
            .await
            .map_err(|source| RmError::Body {
                url: url.clone(),
                source,
            })?;
        serde_json::from_slice(&body).map_err(|source| RmError::Json { url, source })
    }

    /// A redirect from `from` may go to the same origin, or to the origin of
    /// a configured ResourceManager (a standby naming the active one).
    fn may_follow(&self, from: &Url, to: &Url) -> bool {
        let origin = to.origin();
        origin == from.origin() || self.urls.iter().any(|u| u.origin() == origin)
    }

    /// The nodes and the ApplicationMaster hosts, from the first
    /// ResourceManager that answers both.
    pub async fn state(&self) -> Result<YarnState, YarnError> {
        let mut errors = Vec::new();
        for base in &self.urls {
            let base = if base.path().ends_with('/') {
                base.clone()
            } else {
                let mut b = base.clone();
                b.set_path(&format!("{}/", base.path()));
                b
            };
            let nodes: Nodes = match self.get(&base, "ws/v1/cluster/nodes").await {
                Ok(n) => n,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let apps: Apps = match self.get(&base, "ws/v1/cluster/apps?states=RUNNING").await {
                Ok(a) => a,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            return Ok(parse(nodes, apps));
        }
        Err(YarnError::Unavailable(errors))
    }
}

fn parse(nodes: Nodes, apps: Apps) -> YarnState {
    YarnState {
        nodes: nodes
            .nodes
            .and_then(|n| n.node)
            .unwrap_or_default()
            .into_iter()
            .map(|n| YarnNode {
                http_host: n
                    .node_http_address
                    .as_deref()
                    .map(host_of)
                    .unwrap_or_default()
                    .to_string(),
                host_name: n.node_host_name.unwrap_or_default(),
                containers: n.num_containers.unwrap_or(u32::MAX),
            })
            .collect(),
        am_hosts: apps
            .apps
            .and_then(|a| a.app)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| a.am_host_http_address)
            .map(|a| host_of(&a).to_string())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_with_nulls_and_addresses() {
        let nodes: Nodes = serde_json::from_str(
            r#"{"nodes":{"node":[
                {"nodeHostName":"worker-1","nodeHTTPAddress":"10.0.0.5:8042","state":"RUNNING","numContainers":3},
                {"nodeHostName":"10.0.0.6","state":"RUNNING"}]}}"#,
        )
        .unwrap();
        let apps: Apps = serde_json::from_str(
            r#"{"apps":{"app":[{"id":"application_1","amHostHttpAddress":"worker-1:8042"}]}}"#,
        )
        .unwrap();
        let s = parse(nodes, apps);
        assert_eq!(s.nodes[0].http_host, "10.0.0.5");
        assert_eq!(s.nodes[0].containers, 3);
        // Unknown containers sort last among equals: never taken for idle.
        assert_eq!(s.nodes[1].containers, u32::MAX);
        assert!(s.am_hosts.contains("worker-1"));
        let none: Apps = serde_json::from_str(r#"{"apps":null}"#).unwrap();
        let empty: Nodes = serde_json::from_str(r#"{"nodes":null}"#).unwrap();
        assert_eq!(parse(empty, none), YarnState::default());
    }

    #[test]
    fn unavailable_names_every_resourcemanager_in_order() {
        assert_eq!(
            YarnError::Unavailable(Vec::new()).to_string(),
            "no ResourceManager answered: no resourcemanager_urls configured"
        );
        let url = |u: &str| Url::parse(u).unwrap();
        let e = YarnError::Unavailable(vec![
            RmError::Status {
                url: url("http://rm1:8088/ws/v1/cluster/nodes"),
                status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            },
            RmError::RedirectRefused {
                url: url("http://rm2:8088/ws/v1/cluster/nodes"),
                host: "elsewhere".into(),
            },
        ]);
        assert_eq!(
            e.to_string(),
            "no ResourceManager answered: \
             http://rm1:8088/ws/v1/cluster/nodes: HTTP 503 Service Unavailable; \
             http://rm2:8088/ws/v1/cluster/nodes: redirect to \"elsewhere\" refused: \
             it is not one of resourcemanager_urls"
        );
    }
}
