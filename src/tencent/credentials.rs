//! Where the API keys come from, and how they are kept secret.
//!
//! The chain, first match wins:
//! 1. environment: `TENCENTCLOUD_SECRET_ID`, `TENCENTCLOUD_SECRET_KEY`, `TENCENTCLOUD_TOKEN`;
//! 2. systemd credentials in `$CREDENTIALS_DIRECTORY`: `tencentcloud-secret-id`,
//!    `tencentcloud-secret-key`, `tencentcloud-token`;
//! 3. the INI profile `~/.tencentcloud/credentials`, then `/etc/tencentcloud/credentials`
//!    (`secret_id`/`secret_key` under `[default]`);
//! 4. the CVM instance role, through the metadata service.
//!
//! Keys are held in [`secrecy::SecretString`], so `Debug` never shows them, and
//! no error message carries them. Role keys are refreshed five minutes before
//! they expire.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::clock::wall_now;

/// Refresh temporary keys this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// The default metadata service of a CVM instance.
pub(crate) const DEFAULT_METADATA_URL: &str = "http://metadata.tencentyun.com";

/// Where a key pair came from. Shown in logs; never the keys themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// `TENCENTCLOUD_*` environment variables.
    Environment,
    /// systemd `LoadCredential=` files.
    Systemd(PathBuf),
    /// An INI profile file.
    Profile(PathBuf),
    /// The CVM instance role of this name.
    CvmRole(String),
    /// Given directly (tests, the simulator).
    Static,
}

/// A key pair, with the session token of temporary keys.
#[derive(Clone)]
pub struct Credentials {
    /// The public SecretId.
    pub secret_id: String,
    secret_key: SecretString,
    token: Option<SecretString>,
    /// When temporary keys stop working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Where they came from.
    pub source: CredentialSource,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("expires_at", &self.expires_at)
            .field("source", &self.source)
            .finish()
    }
}

impl Credentials {
    /// Permanent keys given directly.
    pub fn new(
        secret_id: impl Into<String>,
        secret_key: impl Into<String>,
        token: Option<String>,
    ) -> Self {
        Self {
            secret_id: secret_id.into(),
            secret_key: SecretString::from(secret_key.into()),
            token: token.map(SecretString::from),
            expires_at: None,
            source: CredentialSource::Static,
        }
    }

    /// The SecretKey, for signing only.
    pub(crate) fn secret_key(&self) -> &str {
        self.secret_key.expose_secret()
    }

    /// The session token of temporary keys, for the `X-TC-Token` header only.
    pub fn token(&self) -> Option<&str> {
        self.token.as_ref().map(|t| t.expose_secret())
    }

    fn fresh(&self, now: DateTime<Utc>) -> bool {
        match self.expires_at {
            None => true,
            Some(at) => at - now > chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default(),
        }
    }
}

/// Why no usable keys were found. Never carries a key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A source was half filled in.
    #[error("credentials from {source_name} are incomplete: {missing} is missing or empty")]
    Incomplete {
        /// The source.
        source_name: String,
        /// The missing piece.
        missing: &'static str,
    },
    /// A credential file could not be read.
    #[error("cannot read credential file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O or parse error.
        reason: String,
    },
    /// The metadata service did not give role keys.
    #[error("CVM role credentials from {url} failed: {reason}")]
    Metadata {
        /// The metadata base URL.
        url: String,
        /// What went wrong.
        #[source]
        reason: MetadataError,
    },
    /// No source had keys.
    #[error(
        "no Tencent Cloud credentials found; tried {tried}. Set TENCENTCLOUD_SECRET_ID and \
         TENCENTCLOUD_SECRET_KEY, use systemd LoadCredential=, or write ~/.tencentcloud/credentials"
    )]
    NotFound {
        /// What was tried, in order.
        tried: String,
    },
}

/// Inputs of the chain, so tests can build one without touching the process.
#[derive(Debug, Clone, Default)]
pub struct CredentialSources {
    /// `TENCENTCLOUD_SECRET_ID`.
    pub env_secret_id: Option<String>,
    /// `TENCENTCLOUD_SECRET_KEY`.
    pub env_secret_key: Option<SecretString>,
    /// `TENCENTCLOUD_TOKEN`.
    pub env_token: Option<SecretString>,
    /// `$CREDENTIALS_DIRECTORY`.
    pub credentials_directory: Option<PathBuf>,
    /// Profile files, in order.
    pub profiles: Vec<PathBuf>,
    /// Metadata service base URL; `None` skips the CVM role.
    pub metadata_url: Option<String>,
}

impl CredentialSources {
    /// The sources as this process sees them.
    pub(crate) fn from_process(metadata_url: Option<String>) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut profiles = Vec::new();
        if let Some(home) = std::env::var_os("HOME") {
            profiles.push(Path::new(&home).join(".tencentcloud/credentials"));
        }
        profiles.push(PathBuf::from("/etc/tencentcloud/credentials"));
        Self {
            env_secret_id: var("TENCENTCLOUD_SECRET_ID"),
            env_secret_key: var("TENCENTCLOUD_SECRET_KEY").map(SecretString::from),
            env_token: var("TENCENTCLOUD_TOKEN").map(SecretString::from),
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
            profiles,
            metadata_url,
        }
    }
}

/// The credential chain, with a cache that refreshes temporary keys.
#[derive(Debug)]
pub struct CredentialChain {
    sources: CredentialSources,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Option<Credentials>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoleKeys {
    tmp_secret_id: String,
    tmp_secret_key: String,
    token: String,
    expired_time: i64,
}

impl CredentialChain {
    /// A chain over `sources`, fetching role keys with `http`.
    pub fn new(sources: CredentialSources, http: reqwest::Client) -> Self {
        Self {
            sources,
            http,
            cache: tokio::sync::Mutex::new(None),
        }
    }

    /// A chain that always answers `credentials`.
    pub fn fixed(credentials: Credentials, http: reqwest::Client) -> Self {
        let chain = Self::new(CredentialSources::default(), http);
        *chain.cache.try_lock().expect("new mutex is free") = Some(credentials);
        chain
    }

    /// Current keys, refreshed when temporary ones near expiry.
    pub async fn get(&self) -> Result<Credentials, CredentialError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref().filter(|c| c.fresh(wall_now())) {
            return Ok(c.clone());
        }
        let found = self.resolve().await?;
        tracing::info!(message = "Loaded Tencent Cloud credentials.", source = ?found.source, secret_id = %found.secret_id);
        *cache = Some(found.clone());
        Ok(found)
    }

    async fn resolve(&self) -> Result<Credentials, CredentialError> {
        let mut tried = vec!["environment".to_string()];
        if let Some(c) = self.env_keys()? {
            return Ok(c);
        }
        if let Some(dir) = &self.sources.credentials_directory {
            tried.push(format!("systemd credentials in {}", dir.display()));
            if let Some(c) = from_systemd(dir)? {
                return Ok(c);
            }
        }
        for path in &self.sources.profiles {
            tried.push(path.display().to_string());
            if let Some(c) = from_profile(path)? {
                return Ok(c);
            }
        }
        if let Some(url) = &self.sources.metadata_url {
            tried.push(format!("CVM role at {url}"));
            match self.role_keys(url).await {
                Ok(c) => return Ok(c),
                Err(e) => tracing::debug!(message = "No CVM role credentials.", error = %e),
            }
        }
        Err(CredentialError::NotFound {
            tried: tried.join(", "),
        })
    }

    fn env_keys(&self) -> Result<Option<Credentials>, CredentialError> {
        let s = &self.sources;
        match (&s.env_secret_id, &s.env_secret_key) {
            (None, None) => Ok(None),
            (Some(_), None) => Err(CredentialError::Incomplete {
                source_name: "the environment".into(),
                missing: "TENCENTCLOUD_SECRET_KEY",
            }),
            (None, Some(_)) => Err(CredentialError::Incomplete {
                source_name: "the environment".into(),
                missing: "TENCENTCLOUD_SECRET_ID",
            }),
            (Some(id), Some(key)) => Ok(Some(Credentials {
                secret_id: id.trim().to_string(),
                secret_key: key.clone(),
                token: s.env_token.clone(),
                expires_at: None,
                source: CredentialSource::Environment,
            })),
        }
    }

    async fn role_keys(&self, base: &str) -> Result<Credentials, CredentialError> {
        let base = base.trim_end_matches('/');
        let err = |reason: MetadataError| CredentialError::Metadata {
            url: base.to_string(),
            reason,
        };
        let list = format!("{base}/latest/meta-data/cam/security-credentials/");
        let role = self
            .fetch(&list)
            .await
            .map_err(err)?
            .lines()
            .next()
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .ok_or_else(|| err(MetadataError::NoRole))?;
        let body = self.fetch(&format!("{list}{role}")).await.map_err(err)?;
        let keys: RoleKeys =
            serde_json::from_str(&body).map_err(|e| err(MetadataError::Document(e)))?;
        Ok(Credentials {
            secret_id: keys.tmp_secret_id,
            secret_key: SecretString::from(keys.tmp_secret_key),
            token: Some(SecretString::from(keys.token)),
            expires_at: DateTime::from_timestamp(keys.expired_time, 0),
            source: CredentialSource::CvmRole(role),
        })
    }

    async fn fetch(&self, url: &str) -> Result<String, MetadataError> {
        let resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .map_err(MetadataError::Transport)?;
        if !resp.status().is_success() {
            return Err(MetadataError::Status(resp.status().as_u16()));
        }
        resp.text().await.map_err(MetadataError::Transport)
    }
}

/// Why the CVM metadata service gave no role keys. Never carries a key: the
/// role document is named only by what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The service could not be reached, or its answer broke off.
    #[error("{0}")]
    Transport(#[source] reqwest::Error),
    /// The service answered with a status other than 2xx.
    #[error("HTTP {0}")]
    Status(u16),
    /// The role list is empty: no CAM role is attached to the instance.
    #[error("no role is attached to this instance")]
    NoRole,
    /// The role key document is not the JSON the service writes.
    #[error("unexpected role key document: {0}")]
    Document(#[source] serde_json::Error),
}

fn read_optional(path: &Path) -> Result<Option<String>, CredentialError> {
    match crate::files::read_secret(path) {
        Ok(s) => Ok(Some(s).filter(|s| !s.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CredentialError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

fn from_systemd(dir: &Path) -> Result<Option<Credentials>, CredentialError> {
    let id = read_optional(&dir.join("tencentcloud-secret-id"))?;
    let key = read_optional(&dir.join("tencentcloud-secret-key"))?;
    let token = read_optional(&dir.join("tencentcloud-token"))?;
    let source_name = format!("systemd credentials in {}", dir.display());
    match (id, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialError::Incomplete {
            source_name,
            missing: "tencentcloud-secret-key",
        }),
        (None, Some(_)) => Err(CredentialError::Incomplete {
            source_name,
            missing: "tencentcloud-secret-id",
        }),
        (Some(id), Some(key)) => Ok(Some(Credentials {
            secret_id: id,
            secret_key: SecretString::from(key),
            token: token.map(SecretString::from),
            expires_at: None,
            source: CredentialSource::Systemd(dir.to_path_buf()),
        })),
    }
}

fn from_profile(path: &Path) -> Result<Option<Credentials>, CredentialError> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    if crate::files::readable_by_others(path) {
        tracing::warn!(
            message = "The credentials profile is readable by other users; run chmod 600 on it.",
            path = %path.display(),
        );
    }
    let ini = ini::Ini::load_from_str(&text).map_err(|e| CredentialError::Unreadable {
        path: path.to_path_buf(),
        reason: format!("not an INI file: line {}", e.line),
    })?;
    let Some(section) = ini.section(Some("default")) else {
        return Ok(None);
    };
    let get = |k: &str| section.get(k).map(str::trim).filter(|v| !v.is_empty());
    let source_name = format!("[default] of {}", path.display());
    match (get("secret_id"), get("secret_key")) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialError::Incomplete {
            source_name,
            missing: "secret_key",
        }),
        (None, Some(_)) => Err(CredentialError::Incomplete {
            source_name,
            missing: "secret_id",
        }),
        (Some(id), Some(key)) => Ok(Some(Credentials {
            secret_id: id.to_string(),
            secret_key: SecretString::from(key.to_string()),
            token: None,
            expires_at: None,
            source: CredentialSource::Profile(path.to_path_buf()),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE";
    const TOKEN: &str = "session-token-must-not-leak";

    fn chain(sources: CredentialSources) -> CredentialChain {
        let http =
            crate::http::http_client(Duration::from_secs(1), Duration::from_secs(2)).unwrap();
        CredentialChain::new(sources, http)
    }

    #[tokio::test]
    async fn environment_comes_first() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tencentcloud-secret-id"), "AKIDsystemd").unwrap();
        std::fs::write(dir.path().join("tencentcloud-secret-key"), "x").unwrap();
        let c = chain(CredentialSources {
            env_secret_id: Some("AKIDenv".into()),
            env_secret_key: Some(KEY.to_string().into()),
            env_token: Some(TOKEN.to_string().into()),
            credentials_directory: Some(dir.path().into()),
            ..Default::default()
        })
        .get()
        .await
        .unwrap();
        assert_eq!(c.secret_id, "AKIDenv");
        assert_eq!(c.token(), Some(TOKEN));
        assert_eq!(c.source, CredentialSource::Environment);
    }

    #[tokio::test]
    async fn systemd_then_profile() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::create_dir(&creds).unwrap();
        std::fs::write(creds.join("tencentcloud-secret-id"), "AKIDsystemd\n").unwrap();
        std::fs::write(creds.join("tencentcloud-secret-key"), format!("{KEY}\n")).unwrap();
        let profile = dir.path().join("credentials");
        std::fs::write(
            &profile,
            "[default]\nsecret_id = AKIDprofile\nsecret_key = k2\n",
        )
        .unwrap();

        let c = chain(CredentialSources {
            credentials_directory: Some(creds.clone()),
            profiles: vec![profile.clone()],
            ..Default::default()
        })
        .get()
        .await
        .unwrap();
        assert_eq!((c.secret_id.as_str(), c.secret_key()), ("AKIDsystemd", KEY));

        let c = chain(CredentialSources {
            credentials_directory: Some(dir.path().join("absent")),
            profiles: vec![dir.path().join("nope"), profile],
            ..Default::default()
        })
        .get()
        .await
        .unwrap();
        assert_eq!(c.secret_id, "AKIDprofile");
        assert!(matches!(c.source, CredentialSource::Profile(_)));
    }

    #[tokio::test]
    async fn half_configured_sources_name_the_missing_piece() {
        let err = chain(CredentialSources {
            env_secret_id: Some("AKIDenv".into()),
            ..Default::default()
        })
        .get()
        .await
        .unwrap_err();
        assert!(err.to_string().contains("TENCENTCLOUD_SECRET_KEY"), "{err}");
    }

    #[tokio::test]
    async fn nothing_found_lists_what_was_tried() {
        let err = chain(CredentialSources {
            profiles: vec!["/nonexistent/credentials".into()],
            ..Default::default()
        })
        .get()
        .await
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("environment") && text.contains("/nonexistent/credentials"),
            "{text}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::new("AKIDpublic", KEY, Some(TOKEN.into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDpublic"));
        assert!(!shown.contains(KEY) && !shown.contains(TOKEN), "{shown}");
    }
}
