//! Builds the clients a configuration describes, once, for every command:
//! the one HTTP client (shared by Prometheus and the EMR API), the credential
//! chain, the per-action limiters, the EMR client and Prometheus.
//!
//! The daemon keeps one [`Connections`] for its whole life: a reload builds a
//! new EMR client over the same HTTP client, credentials and limiters (a
//! changed `requests_per_second` re-quotas the existing limiter), so no
//! reload ever starts a second limiter next to the first.

use std::sync::Arc;

use crate::config::Config;
use crate::prom::Prometheus;
use crate::tencent::limiter::Limiters;
use crate::tencent::{
    ApiObserver, ClientSettings, ClientSetupError, CredentialChain, CredentialSources, Credentials,
    EmrClient, NoObserver, RetryPolicy,
};

/// Why a client the configuration describes could not be built. Nothing was
/// dialled yet; each variant reads as its cause does.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The shared HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] crate::http::BuildError),
    /// `tencent.endpoint` is not one the EMR client sends to.
    #[error(transparent)]
    Emr(#[from] ClientSetupError),
    /// `prometheus.url` is not a base the query client accepts.
    #[error(transparent)]
    Prometheus(#[from] crate::prom::UrlError),
}

/// What outlives a reload.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    /// The one HTTP client.
    pub http: reqwest::Client,
    /// The credential chain (its cache of temporary keys included).
    pub credentials: Arc<CredentialChain>,
    /// One limiter per EMR action: the process's only ones.
    pub limiters: Arc<Limiters>,
}

impl Connections {
    /// Connections for `config`; `fixed` credentials (the demo) replace the
    /// process's credential chain.
    pub(crate) fn new(config: &Config, fixed: Option<Credentials>) -> Result<Self, ConnectError> {
        let http = crate::http::http_client(
            config.tencent.connect_timeout,
            config.tencent.request_timeout,
        )?;
        let credentials = match fixed {
            Some(c) => CredentialChain::fixed(c, http.clone()),
            None => CredentialChain::new(
                CredentialSources::from_process(Some(config.tencent.metadata_url.to_string())),
                http.clone(),
            ),
        };
        Ok(Self {
            limiters: Arc::new(Limiters::new(config.tencent.requests_per_second)),
            credentials: Arc::new(credentials),
            http,
        })
    }

    /// The EMR client for `config` over these connections, reporting every
    /// attempt to `observer`.
    pub(crate) fn emr(
        &self,
        config: &Config,
        observer: Arc<dyn ApiObserver>,
    ) -> Result<EmrClient, ConnectError> {
        Ok(EmrClient::new(
            self.http.clone(),
            ClientSettings {
                endpoint: config.tencent.endpoint.clone(),
                region: config.tencent.region.clone(),
                language: config.tencent.language.clone(),
                retry: RetryPolicy {
                    max_attempts: config.tencent.max_attempts,
                    ..RetryPolicy::default()
                },
                request_timeout: config.tencent.request_timeout,
            },
            self.credentials.clone(),
            self.limiters.clone(),
            observer,
        )?)
    }

    /// The EMR client with no observer.
    pub(crate) fn emr_quiet(&self, config: &Config) -> Result<EmrClient, ConnectError> {
        self.emr(config, Arc::new(NoObserver))
    }

    /// Prometheus for `config` over the shared HTTP client.
    pub(crate) fn prometheus(&self, config: &Config) -> Result<Prometheus, ConnectError> {
        Ok(Prometheus::new(
            self.http.clone(),
            config.prometheus.url.as_str(),
            config.prometheus.timeout,
            config.prometheus.auth.clone(),
        )?)
    }
}

/// Prometheus for long range queries over history (`backtest`), on its own
/// HTTP client whose timeout allows a range query its 4 × `prometheus.timeout`.
/// No EMR client is built next to it, so there is nothing to share.
pub(crate) fn history_prometheus(config: &Config) -> Result<Prometheus, ConnectError> {
    let p = &config.prometheus;
    let http = crate::http::http_client(std::time::Duration::from_secs(5), p.timeout * 4)?;
    Ok(Prometheus::new(
        http,
        p.url.as_str(),
        p.timeout,
        p.auth.clone(),
    )?)
}
