//! `[ha]`: several daemons on different hosts, one leader elected on an etcd
//! lease, the durable state in etcd under `prefix`. Without the section the
//! daemon is single-host and nothing here applies.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::Validator;
use super::raw::Field;

/// `[ha]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawHa {
    /// etcd client URLs, `http://` or `https://`.
    pub etcd_endpoints: Field<Vec<String>>,
    /// The leader lease's time to live; humantime, whole seconds, at least 2s.
    pub lease_ttl: Field<String>,
    /// Where every key lives, e.g. `/emr-autoscaler/`.
    pub prefix: Field<String>,
    /// This daemon's name among the others (default: the host name).
    pub node_name: Field<String>,
    /// The URL other hosts reach this daemon's admin server at.
    pub advertise_url: Field<String>,
    /// CA bundle that signed the etcd servers' certificates (PEM).
    pub ca_file: Field<String>,
    /// Client certificate for etcd (PEM); goes with `key_file`.
    pub cert_file: Field<String>,
    /// Client key for etcd (PEM); goes with `cert_file`.
    pub key_file: Field<String>,
    /// etcd user; goes with `password_file`.
    pub username: Field<String>,
    /// File holding the etcd user's password.
    pub password_file: Field<String>,
}

/// `[ha]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct HaConfig {
    /// etcd client URLs.
    pub etcd_endpoints: Vec<Url>,
    /// The lease's time to live (whole seconds, at least 2 s; default 10 s).
    pub lease_ttl: Duration,
    /// Key prefix, ending in `/` (default `/emr-autoscaler/`).
    pub prefix: String,
    /// This daemon's name (default: the host name).
    pub node_name: String,
    /// Where other hosts reach this daemon's admin server; `None` advertises
    /// `http://` plus the bound admin address.
    pub advertise_url: Option<Url>,
    /// TLS: the CA bundle.
    pub ca_file: Option<PathBuf>,
    /// TLS: the client certificate and key.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// etcd authentication: user and password file.
    pub user: Option<(String, PathBuf)>,
}

/// The host name, for `node_name`'s default.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

impl Validator<'_> {
    pub(super) fn ha(&mut self, raw: RawHa) -> HaConfig {
        let endpoints = self
            .get("ha.etcd_endpoints", raw.etcd_endpoints, None)
            .unwrap_or_default();
        let mut etcd_endpoints = Vec::new();
        for (i, text) in endpoints.iter().enumerate() {
            let path = format!("ha.etcd_endpoints[{i}]");
            match Url::parse(text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.port().is_none() {
                        self.issue(&path, format!("{text:?} has no port; etcd listens on 2379 by default, write e.g. http://10.0.0.5:2379"));
                    }
                    etcd_endpoints.push(u);
                }
                Ok(_) => self.issue(
                    &path,
                    format!("{text:?} is not an http:// or https:// URL with a host"),
                ),
                Err(e) => self.issue(&path, format!("{text:?} is not a URL ({e})")),
            }
        }
        if endpoints.is_empty() && self.issues.iter().all(|i| i.path != "ha.etcd_endpoints") {
            self.issue(
                "ha.etcd_endpoints",
                "list at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]",
            );
        }
        let schemes: std::collections::BTreeSet<&str> =
            etcd_endpoints.iter().map(Url::scheme).collect();
        if schemes.len() > 1 {
            self.issue(
                "ha.etcd_endpoints",
                "mixes http:// and https://; every member is reached the same way",
            );
        }
        // At least 2 s: etcd raises shorter leases. At most 5 m: a dead
        // leader holds every cluster for this long.
        let lease_ttl = self.duration(
            "ha.lease_ttl",
            raw.lease_ttl,
            "10s",
            super::spans::LEASE_TTL,
        );
        if lease_ttl.subsec_nanos() != 0 {
            self.issue(
                "ha.lease_ttl",
                "etcd leases are whole seconds; write e.g. \"10s\"",
            );
        }
        let prefix = self
            .get("ha.prefix", raw.prefix, Some("/emr-autoscaler/".into()))
            .unwrap_or_default();
        if prefix.is_empty() || !prefix.ends_with('/') {
            self.issue(
                "ha.prefix",
                format!("{prefix:?} must be non-empty and end in '/', e.g. \"/emr-autoscaler/\""),
            );
        }
        let node_name = self
            .get("ha.node_name", raw.node_name, Some(host_name()))
            .unwrap_or_default();
        if node_name.is_empty()
            || !node_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            self.issue(
                "ha.node_name",
                format!("{node_name:?} must be letters, digits, '-', '_' or '.'"),
            );
        }
        let advertise_url = match self.optional("ha.advertise_url", raw.advertise_url) {
            None => None,
            Some(text) => match Url::parse(&text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
                _ => {
                    self.issue(
                        "ha.advertise_url",
                        format!("{text:?} is not an http(s) URL like http://ops-1.example:9464"),
                    );
                    None
                }
            },
        };
        let ca_file = self.optional("ha.ca_file", raw.ca_file).map(PathBuf::from);
        let cert = self
            .optional("ha.cert_file", raw.cert_file)
            .map(PathBuf::from);
        let key = self
            .optional("ha.key_file", raw.key_file)
            .map(PathBuf::from);
        let client_identity = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                self.issue(
                    "ha.cert_file",
                    "a client certificate needs both cert_file and key_file",
                );
                None
            }
        };
        let tls = ca_file.is_some() || client_identity.is_some();
        if tls && schemes.contains("http") {
            self.issue(
                "ha.etcd_endpoints",
                "TLS files are set, so the endpoints must be https:// URLs",
            );
        }
        let username = self.optional("ha.username", raw.username);
        let password = self
            .optional("ha.password_file", raw.password_file)
            .map(PathBuf::from);
        let user = match (username, password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                self.issue(
                    "ha.username",
                    "etcd authentication needs both username and password_file",
                );
                None
            }
        };
        HaConfig {
            etcd_endpoints,
            lease_ttl,
            prefix,
            node_name,
            advertise_url,
            ca_file,
            client_identity,
            user,
        }
    }
}

impl super::Config {
    /// A digest of everything the daemons of one HA group must agree on: the
    /// clusters and their policies, the shared daemon and API settings, and
    /// the `[ha]` prefix and TTL. Per-host keys (`listen`, `state_dir`,
    /// `node_name`, `advertise_url`, the TLS and password files) are left
    /// out. The leader publishes it; a standby whose digest differs says so.
    pub(crate) fn digest(&self) -> String {
        use sha2::Digest;
        let d = &self.daemon;
        let t = &self.tencent;
        let shared = format!(
            "{:?}|{:?}|{}|{:?}|{:?}|{}|{}|{}|{:?}",
            self.clusters,
            d.evaluation_interval,
            d.dry_run,
            d.flow_timeout,
            d.sold_out_backoff,
            t.region,
            t.endpoint,
            t.requests_per_second,
            self.ha.as_ref().map(|h| (&h.prefix, h.lease_ttl)),
        );
        hex::encode(&sha2::Sha256::digest(shared.as_bytes())[..8])
    }
}
