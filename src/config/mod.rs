//! Configuration: TOML plus `EMR_AUTOSCALER__…` environment overrides, loaded
//! with the `config` crate, then validated into typed structs.
//!
//! Loading never stops at the first problem: unknown keys (collected with
//! `serde_ignored`), wrong types and semantic errors are all returned
//! together, each with its key path, so `check` can print them at once.

pub mod ha;
pub mod notify;
pub mod offerings;
pub mod promql;
pub(crate) mod raw;
mod rules;

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::policy::{NodeScope, ScaleInPolicy};
use crate::tencent::client::check_endpoint;
use crate::tencent::emr::{self, PreExecuteFileSettings, ScaleOutInstanceRequest, Tag};
use raw::{Field, RawCluster, RawConfig, RawScaleIn, RawScaleOut, RawYarn};

/// Where `--config` points by default.
pub(crate) const DEFAULT_PATH: &str = "/etc/emr-autoscaler/config.toml";
/// Environment override prefix; `__` separates the levels.
pub(crate) const ENV_PREFIX: &str = "EMR_AUTOSCALER";

/// The largest config file read (a config of hundreds of clusters is far
/// smaller); a bigger file is refused before it is parsed.
pub(crate) const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// The largest `max_task_nodes` accepted.
pub(crate) const MAX_TASK_NODES: u32 = 10_000;

/// The documented range of a duration key. Every duration key is read
/// through one validator that needs its span, so no key can forget its
/// bounds, and every duration the daemon computes with is small enough that
/// its time arithmetic cannot overflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// The shortest value accepted.
    pub min: Duration,
    /// The longest value accepted.
    pub max: Duration,
}

impl Span {
    const fn secs(min: u64, max: u64) -> Span {
        Span {
            min: Duration::from_secs(min),
            max: Duration::from_secs(max),
        }
    }

    /// Whether `d` lies within the span, ends included.
    pub(crate) fn contains(&self, d: Duration) -> bool {
        self.min <= d && d <= self.max
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |d: Duration| {
            if d.is_zero() {
                "0s".to_string()
            } else {
                humantime::format_duration(d).to_string()
            }
        };
        write!(f, "{} to {}", show(self.min), show(self.max))
    }
}

/// The span of every duration key, as `config/example.toml` documents it.
pub(crate) mod spans {
    use super::Span;

    const MINUTE: u64 = 60;
    const HOUR: u64 = 3600;
    const DAY: u64 = 24 * HOUR;

    /// `daemon.evaluation_interval`.
    pub(crate) const EVALUATION_INTERVAL: Span = Span::secs(1, HOUR);
    /// Every timeout of a call (`prometheus.timeout`, `tencent.connect_timeout`,
    /// `tencent.request_timeout`).
    pub(crate) const TIMEOUT: Span = Span::secs(1, 10 * MINUTE);
    /// `daemon.flow_timeout`.
    pub(crate) const FLOW_TIMEOUT: Span = Span::secs(MINUTE, DAY);
    /// `daemon.sold_out_backoff`.
    pub(crate) const SOLD_OUT_BACKOFF: Span = Span::secs(0, DAY);
    /// Every cooldown (cluster, rule, scale-in).
    pub(crate) const COOLDOWN: Span = Span::secs(0, 7 * DAY);
    /// `clusters.scale_in.stabilization`.
    pub(crate) const STABILIZATION: Span = Span::secs(0, 7 * DAY);
    /// `clusters.settle`.
    pub(crate) const SETTLE: Span = Span::secs(0, DAY);
    /// `clusters.scale_in.grace_period`: the API's GraceDownTime range.
    pub(crate) const GRACE_PERIOD: Span = Span::secs(60, 30 * MINUTE);
    /// A threshold rule's `for`.
    pub(crate) const SUSTAIN: Span = Span::secs(0, DAY);
    /// A capacity rule's `trend_window` and `trend_horizon`.
    pub(crate) const TREND: Span = Span::secs(0, HOUR);
    /// A schedule rule's `duration`.
    pub(crate) const WINDOW: Span = Span::secs(1, 7 * DAY);
    /// `ha.lease_ttl` (etcd raises anything under 2 s).
    pub(crate) const LEASE_TTL: Span = Span::secs(2, 5 * MINUTE);
}

/// One problem, with the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Issue {
    /// Key path, like `clusters[0].scale_out.pay_mode`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read or is not TOML.
    #[error("cannot load {path}: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// The reason.
        reason: String,
    },
    /// The file was read but is not valid.
    #[error("{path}: {} problem(s):\n{}", issues.len(), issues.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[daemon]`
    pub daemon: DaemonConfig,
    /// `[prometheus]`
    pub prometheus: PrometheusConfig,
    /// `[tencent]`
    pub tencent: TencentConfig,
    /// `[[clusters]]`
    pub clusters: Vec<ClusterConfig>,
    /// `[ha]`; `None` for a single-host daemon.
    pub ha: Option<ha::HaConfig>,
    /// `[notify]`: webhooks (none by default).
    pub notify: notify::NotifyConfig,
    /// What `check` says without refusing the file: keys that have no effect.
    pub notes: Vec<Issue>,
}

/// `[daemon]`
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// How often each cluster is evaluated (default 15s, at least 1s).
    pub evaluation_interval: Duration,
    /// Decide and report, send nothing (default false).
    pub dry_run: bool,
    /// Admin server address (default 127.0.0.1:9464).
    pub listen: SocketAddr,
    /// Durable state (default /var/lib/emr-autoscaler).
    pub state_dir: PathBuf,
    /// Bearer token file for pause/resume.
    pub admin_token_file: Option<PathBuf>,
    /// A flow running longer than this trips the breaker (default 30m).
    pub flow_timeout: Duration,
    /// Quiet time for a cluster after a sold-out answer (default 10m).
    pub sold_out_backoff: Duration,
    /// Events kept in the history (default 10,000; 100 to 100,000).
    pub history_max: usize,
}

/// `[prometheus]`
#[derive(Debug, Clone, PartialEq)]
pub struct PrometheusConfig {
    /// Base URL (default http://127.0.0.1:9090).
    pub url: Url,
    /// Per-query timeout (default 10s).
    pub timeout: Duration,
    /// How queries authenticate.
    pub auth: crate::prom::Auth,
}

/// `[tencent]`
#[derive(Debug, Clone, PartialEq)]
pub struct TencentConfig {
    /// `X-TC-Region`.
    pub region: String,
    /// API endpoint (default https://emr.tencentcloudapi.com).
    pub endpoint: Url,
    /// ScaleOutInstance calls per second (default and maximum 20).
    pub requests_per_second: NonZeroU32,
    /// TCP connect timeout (default 5s).
    pub connect_timeout: Duration,
    /// Whole-request timeout (default 30s).
    pub request_timeout: Duration,
    /// Attempts per logical request (default 5).
    pub max_attempts: u32,
    /// `X-TC-Language`.
    pub language: Option<String>,
    /// Metadata service for CVM role credentials.
    pub metadata_url: Url,
}

/// `[[clusters]]`
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `emr-xxxxxxxx`.
    pub instance_id: String,
    /// Floor of task nodes (default 0).
    pub min_task_nodes: u32,
    /// Ceiling of task nodes.
    pub max_task_nodes: u32,
    /// Dry-run this cluster only (default false).
    pub dry_run: bool,
    /// Quiet time after an operation (default 5m).
    pub cooldown: Duration,
    /// How long nodes that just arrived still count against the demand that
    /// ordered them, until the metrics can have seen them. `None`: the
    /// default, 2 x `evaluation_interval` and at least 1m (see [`Self::settle`]).
    pub settle: Option<Duration>,
    /// Most nodes per decision; unlimited when unset.
    pub max_step: Option<u32>,
    /// Most nodes per rolling hour; unlimited when unset.
    pub max_nodes_per_hour: Option<u32>,
    /// Most nodes per rolling day; unlimited when unset.
    pub max_nodes_per_day: Option<u32>,
    /// Act even while Tencent's own auto-scaling has an enabled strategy
    /// (default false: such a cluster holds with outcome `conflict`).
    pub coexist_with_builtin: bool,
    /// The request template: everything but InstanceId, counts and token.
    /// With `scale_in.owner_tag` set, its tags include the owner tag.
    pub scale_out: ScaleOutInstanceRequest,
    /// The specs, zones and charges task nodes are ordered through, in order
    /// of preference (ScaleOutCluster); empty: ScaleOutInstance.
    pub offerings: Vec<offerings::Offering>,
    /// Task nodes kept on on-demand offerings (default 0).
    pub on_demand_floor: u32,
    /// Scale-in (off unless enabled).
    pub scale_in: ScaleInPolicy,
    /// The owner tag, when set (`[clusters.scale_in] owner_tag`).
    pub owner_tag: Option<Tag>,
    /// The YARN ResourceManager, when configured.
    pub yarn: Option<YarnConfig>,
    /// Policy rules, validated.
    pub rules: Vec<crate::policy::Rule>,
}

/// `[clusters.yarn]`
#[derive(Debug, Clone, PartialEq)]
pub struct YarnConfig {
    /// ResourceManager base URLs, tried in order.
    pub resourcemanager_urls: Vec<Url>,
}

impl ClusterConfig {
    /// The settle window for `evaluation_interval`.
    pub(crate) fn settle(&self, evaluation_interval: Duration) -> Duration {
        self.settle
            .unwrap_or_else(|| (evaluation_interval * 2).max(Duration::from_secs(60)))
    }

    /// The guard rails and rules the policy core decides with.
    pub(crate) fn policy(&self) -> crate::policy::ClusterPolicy {
        crate::policy::ClusterPolicy {
            min_task_nodes: self.min_task_nodes,
            max_task_nodes: self.max_task_nodes,
            cooldown: self.cooldown,
            max_step: self.max_step,
            max_nodes_per_hour: self.max_nodes_per_hour,
            max_nodes_per_day: self.max_nodes_per_day,
            rules: self.rules.clone(),
            scale_in: self.scale_in.clone(),
        }
    }
}

impl TencentConfig {
    /// The longest one EMR call may take, retries included: every attempt's
    /// connect and request timeouts, the longest backoff between attempts,
    /// and 30 s in the limiter's queue. An owner waiting on a call for less
    /// than this is alive.
    pub(crate) fn call_within(&self) -> Duration {
        let attempts = self.max_attempts.max(1);
        (self.connect_timeout + self.request_timeout) * attempts
            + Duration::from_secs(10) * (attempts - 1)
            + Duration::from_secs(30)
    }
}

impl Config {
    /// The cluster with this id.
    pub(crate) fn cluster(&self, instance_id: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.instance_id == instance_id)
    }
}

/// Loads `path` with the process environment's overrides.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text =
        crate::files::read_text_capped(path, MAX_CONFIG_BYTES).map_err(|e| ConfigError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let file = config::File::from_str(&text, config::FileFormat::Toml);
    build(path, file, None)
}

/// Loads TOML text with explicit environment overrides (tests, the demo).
pub fn load_str(
    toml: &str,
    env: Option<std::collections::HashMap<String, String>>,
) -> Result<Config, ConfigError> {
    let file = config::File::from_str(toml, config::FileFormat::Toml);
    build(Path::new("<inline>"), file, Some(env.unwrap_or_default()))
}

fn build<S>(
    path: &Path,
    file: S,
    env: Option<std::collections::HashMap<String, String>>,
) -> Result<Config, ConfigError>
where
    S: config::Source + Send + Sync + 'static,
{
    let env_source = config::Environment::with_prefix(ENV_PREFIX)
        .separator("__")
        .try_parsing(true)
        .source(env);
    let loaded = config::Config::builder()
        .add_source(file)
        .add_source(env_source)
        .build()
        .map_err(|e| ConfigError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let value: serde_json::Value = loaded.try_deserialize().map_err(|e| ConfigError::Load {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    from_value(value).map_err(|issues| ConfigError::Invalid {
        path: path.to_path_buf(),
        issues,
    })
}

fn format_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", format_path(parent)),
        P::Map { parent, key } => {
            let head = format_path(parent);
            if head.is_empty() {
                key.clone()
            } else {
                format!("{head}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            format_path(parent)
        }
    }
}

fn unknown_key_message(path: &str) -> String {
    let leaf = path.rsplit('.').next().unwrap_or(path);
    match leaf {
        "client_token" | "task_count" | "core_count" => {
            format!("{leaf} is decided by the daemon for each request; remove it from the template")
        }
        "cos_secret_id" | "cos_secret_key" | "secret_id" | "secret_key" | "token" => {
            "credentials are never read from the config file; use the environment, systemd credentials or a profile file".into()
        }
        _ => match did_you_mean(leaf) {
            Some(key) => format!("unknown key; did you mean {key}?"),
            None => "unknown key; check the spelling against config/example.toml".into(),
        },
    }
}

/// Every key `config/example.toml` documents, set or commented out.
static KNOWN_KEYS: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
    let mut keys: Vec<&'static str> = include_str!("../../config/example.toml")
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches('#').trim_start();
            let (key, _) = l.split_once(" =")?;
            key.bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
                .then_some(key)
        })
        .collect();
    // The keys of inline tables (tags, owner_tag).
    keys.extend(["key", "value"]);
    keys.sort_unstable();
    keys.dedup();
    keys
});

/// The documented key closest to `leaf`, when one is close enough to be a
/// typo of it.
fn did_you_mean(leaf: &str) -> Option<&'static str> {
    KNOWN_KEYS
        .iter()
        .map(|k| (strsim::normalized_damerau_levenshtein(leaf, k), *k))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// Validates a raw value tree (after environment overrides).
pub(crate) fn from_value(value: serde_json::Value) -> Result<Config, Vec<Issue>> {
    let mut issues = Vec::new();
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(format_path(&p));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let parsed: Result<RawConfig, _> = serde_path_to_error::deserialize(de);
    for path in unknown {
        issues.push(Issue {
            message: unknown_key_message(&path),
            path,
        });
    }
    let raw = match parsed {
        Ok(raw) => raw,
        Err(e) => {
            issues.push(Issue {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            });
            issues.sort();
            return Err(issues);
        }
    };
    let config = Validator {
        issues: &mut issues,
        notes: Vec::new(),
    }
    .config(raw);
    if issues.is_empty() {
        Ok(config)
    } else {
        issues.sort();
        issues.dedup();
        Err(issues)
    }
}

struct Validator<'a> {
    issues: &'a mut Vec<Issue>,
    /// Keys with no effect, said but not refused.
    notes: Vec<Issue>,
}

impl Validator<'_> {
    fn issue(&mut self, path: &str, message: impl Into<String>) {
        self.issues.push(Issue {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The value, the default when missing, or the default plus an issue.
    fn get<T: Clone>(&mut self, path: &str, field: Field<T>, default: Option<T>) -> Option<T> {
        match field {
            Field::Value(v) => Some(v),
            Field::Missing if default.is_some() => default,
            Field::Missing => {
                self.issue(path, "required key is missing");
                None
            }
            Field::Invalid(reason) => {
                self.issue(path, reason);
                None
            }
        }
    }

    fn optional<T: Clone>(&mut self, path: &str, field: Field<T>) -> Option<T> {
        match field {
            Field::Missing => None,
            other => self.get(path, other, None),
        }
    }

    /// A duration key: the value, the default when missing, or (with an
    /// issue naming the key and its span) the default when it is not a
    /// duration or lies outside `span`.
    fn duration(
        &mut self,
        path: &str,
        field: Field<String>,
        default: &str,
        span: Span,
    ) -> Duration {
        let fallback = humantime::parse_duration(default).expect("defaults parse");
        debug_assert!(span.contains(fallback), "{path}: default outside its span");
        let field = bare_number(field);
        let Some(text) = self.get(path, field, Some(default.to_string())) else {
            return fallback;
        };
        self.in_span(path, &text, span).unwrap_or(fallback)
    }

    /// An optional duration key, bounded like [`duration`](Self::duration).
    fn opt_duration(&mut self, path: &str, field: Field<String>, span: Span) -> Option<Duration> {
        let text = self.optional(path, bare_number(field))?;
        self.in_span(path, &text, span)
    }

    fn in_span(&mut self, path: &str, text: &str, span: Span) -> Option<Duration> {
        match humantime::parse_duration(text) {
            Ok(d) if span.contains(d) => Some(d),
            Ok(_) => {
                self.issue(path, format!("{text:?} is outside {span}"));
                None
            }
            Err(e) => {
                self.issue(
                    path,
                    format!(
                        "{text:?} is not a duration ({e}); write e.g. \"15s\" or \"5m\" ({span})"
                    ),
                );
                None
            }
        }
    }

    fn url(&mut self, path: &str, field: Field<String>, default: &str) -> Url {
        let fallback = Url::parse(default).expect("defaults parse");
        let Some(text) = self.get(path, field, Some(default.to_string())) else {
            return fallback;
        };
        match Url::parse(&text) {
            Ok(u) => u,
            Err(e) => {
                self.issue(path, format!("{text:?} is not a URL ({e})"));
                fallback
            }
        }
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let daemon = self.daemon(raw.daemon);
        let prometheus = self.prometheus(raw.prometheus);
        let tencent = self.tencent(raw.tencent);
        if raw.clusters.is_empty() {
            self.issue("clusters", "no [[clusters]] configured; add at least one");
        }
        let clusters: Vec<ClusterConfig> = raw
            .clusters
            .into_iter()
            .enumerate()
            .map(|(i, c)| self.cluster(&format!("clusters[{i}]"), c))
            .collect();
        for (i, c) in clusters.iter().enumerate() {
            if let Some(j) = clusters[..i]
                .iter()
                .position(|o| o.instance_id == c.instance_id && !c.instance_id.is_empty())
            {
                self.issue(
                    &format!("clusters[{i}].instance_id"),
                    format!("{} is already configured at clusters[{j}]", c.instance_id),
                );
            }
        }
        let ha = raw.ha.map(|h| self.ha(h));
        let notify = self.notify(raw.notify);
        Config {
            daemon,
            prometheus,
            tencent,
            clusters,
            ha,
            notify,
            notes: std::mem::take(&mut self.notes),
        }
    }

    fn prometheus(&mut self, raw: raw::RawPrometheus) -> PrometheusConfig {
        let url = self.url("prometheus.url", raw.url, "http://127.0.0.1:9090");
        if !matches!(url.scheme(), "http" | "https") {
            self.issue("prometheus.url", format!("{url} is not an http(s) URL"));
        }
        let timeout = self.duration("prometheus.timeout", raw.timeout, "10s", spans::TIMEOUT);
        let bearer = self.optional("prometheus.bearer_token_file", raw.bearer_token_file);
        let user = self.optional("prometheus.basic_auth_user", raw.basic_auth_user);
        let password = self.optional(
            "prometheus.basic_auth_password_file",
            raw.basic_auth_password_file,
        );
        let auth = match (bearer, user, password) {
            (None, None, None) => crate::prom::Auth::None,
            (Some(b), None, None) => crate::prom::Auth::Bearer(PathBuf::from(b)),
            (None, Some(user), Some(p)) => crate::prom::Auth::Basic {
                user,
                password_file: PathBuf::from(p),
            },
            (None, Some(_), None) | (None, None, Some(_)) => {
                self.issue(
                    "prometheus.basic_auth_user",
                    "basic auth needs both basic_auth_user and basic_auth_password_file",
                );
                crate::prom::Auth::None
            }
            (Some(_), _, _) => {
                self.issue(
                    "prometheus.bearer_token_file",
                    "use a bearer token or basic auth, not both",
                );
                crate::prom::Auth::None
            }
        };
        PrometheusConfig { url, timeout, auth }
    }

    fn daemon(&mut self, raw: raw::RawDaemon) -> DaemonConfig {
        let evaluation_interval = self.duration(
            "daemon.evaluation_interval",
            raw.evaluation_interval,
            "15s",
            spans::EVALUATION_INTERVAL,
        );
        let listen_text = self.get("daemon.listen", raw.listen, Some("127.0.0.1:9464".into()));
        let listen = match listen_text.as_deref().map(str::parse::<SocketAddr>) {
            Some(Ok(a)) => a,
            Some(Err(_)) => {
                self.issue(
                    "daemon.listen",
                    format!(
                        "{:?} is not an address like 127.0.0.1:9464",
                        listen_text.unwrap_or_default()
                    ),
                );
                SocketAddr::from(([127, 0, 0, 1], 9464))
            }
            None => SocketAddr::from(([127, 0, 0, 1], 9464)),
        };
        let admin_token_file = self
            .optional("daemon.admin_token_file", raw.admin_token_file)
            .map(PathBuf::from);
        if !listen.ip().is_loopback() && admin_token_file.is_none() {
            self.issue(
                "daemon.listen",
                format!("{listen} is not a loopback address; set daemon.admin_token_file so pause/resume need a token"),
            );
        }
        let state_dir = self
            .get(
                "daemon.state_dir",
                raw.state_dir,
                Some("/var/lib/emr-autoscaler".into()),
            )
            .unwrap_or_default();
        if state_dir.is_empty() {
            self.issue("daemon.state_dir", "must not be empty");
        }
        let flow_timeout = self.duration(
            "daemon.flow_timeout",
            raw.flow_timeout,
            "30m",
            spans::FLOW_TIMEOUT,
        );
        let sold_out_backoff = self.duration(
            "daemon.sold_out_backoff",
            raw.sold_out_backoff,
            "10m",
            spans::SOLD_OUT_BACKOFF,
        );
        let history_max = match self.get(
            "daemon.history_max",
            raw.history_max,
            Some(crate::history::DEFAULT_MAX as u64),
        ) {
            Some(n @ 100..=100_000) => n as usize,
            Some(n) => {
                self.issue(
                    "daemon.history_max",
                    format!("{n} is outside 100..=100000 events"),
                );
                crate::history::DEFAULT_MAX
            }
            None => crate::history::DEFAULT_MAX,
        };
        DaemonConfig {
            flow_timeout,
            sold_out_backoff,
            history_max,
            evaluation_interval,
            dry_run: self
                .get("daemon.dry_run", raw.dry_run, Some(false))
                .unwrap_or(false),
            listen,
            state_dir: PathBuf::from(state_dir),
            admin_token_file,
        }
    }

    fn tencent(&mut self, raw: raw::RawTencent) -> TencentConfig {
        let region = self.get("tencent.region", raw.region, None);
        if let Some(r) = &region
            && (r.is_empty() || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        {
            self.issue(
                "tencent.region",
                format!("{r:?} is not a region like ap-guangzhou"),
            );
        }
        let region = region.unwrap_or_default();
        let endpoint = self.url(
            "tencent.endpoint",
            raw.endpoint,
            "https://emr.tencentcloudapi.com",
        );
        if let Err(e) = check_endpoint(&endpoint) {
            self.issue("tencent.endpoint", e.to_string());
        }
        let rps = self
            .get(
                "tencent.requests_per_second",
                raw.requests_per_second,
                Some(20),
            )
            .unwrap_or(20);
        if !(1..=20).contains(&rps) {
            self.issue(
                "tencent.requests_per_second",
                format!("{rps} is outside 1..=20; ScaleOutInstance allows at most 20 requests per second"),
            );
        }
        let max_attempts = self
            .get("tencent.max_attempts", raw.max_attempts, Some(5))
            .unwrap_or(5);
        if !(1..=10).contains(&max_attempts) {
            self.issue(
                "tencent.max_attempts",
                format!("{max_attempts} is outside 1..=10"),
            );
        }
        let language = self.optional("tencent.language", raw.language);
        if let Some(l) = &language
            && l != "zh-CN"
            && l != "en-US"
        {
            self.issue(
                "tencent.language",
                format!("{l:?} is not \"zh-CN\" or \"en-US\""),
            );
        }
        let connect_timeout = self.duration(
            "tencent.connect_timeout",
            raw.connect_timeout,
            "5s",
            spans::TIMEOUT,
        );
        let request_timeout = self.duration(
            "tencent.request_timeout",
            raw.request_timeout,
            "30s",
            spans::TIMEOUT,
        );
        TencentConfig {
            region,
            endpoint,
            requests_per_second: NonZeroU32::new(rps.clamp(1, 20)).expect("clamped"),
            connect_timeout,
            request_timeout,
            max_attempts: max_attempts.clamp(1, 10),
            language,
            metadata_url: self.url(
                "tencent.metadata_url",
                raw.metadata_url,
                crate::tencent::credentials::DEFAULT_METADATA_URL,
            ),
        }
    }

    fn cluster(&mut self, at: &str, raw: RawCluster) -> ClusterConfig {
        let p = |k: &str| format!("{at}.{k}");
        let instance_id = self
            .get(&p("instance_id"), raw.instance_id, None)
            .unwrap_or_default();
        if !instance_id.is_empty() && !emr::is_valid_instance_id(&instance_id) {
            self.issue(
                &p("instance_id"),
                format!("{instance_id:?} does not match ^emr-[a-z0-9]{{8}}$ (e.g. emr-abc12345)"),
            );
        }
        let min_task_nodes = self
            .get(&p("min_task_nodes"), raw.min_task_nodes, Some(0))
            .unwrap_or(0);
        let max_known = self.get(&p("max_task_nodes"), raw.max_task_nodes, None);
        // Without a usable max_task_nodes (already an issue), nothing is
        // judged against it: one typo, one message.
        let ceiling = max_known.unwrap_or(MAX_TASK_NODES);
        let max_task_nodes = max_known.unwrap_or(0);
        if max_task_nodes > MAX_TASK_NODES {
            self.issue(
                &p("max_task_nodes"),
                format!(
                    "{max_task_nodes} is above {MAX_TASK_NODES}, the most this product manages"
                ),
            );
        }
        if max_known.is_some() && min_task_nodes > max_task_nodes {
            self.issue(
                &p("min_task_nodes"),
                format!("{min_task_nodes} is above max_task_nodes ({max_task_nodes})"),
            );
        }
        let positive = |v: &mut Self, key: &str, f: Field<u32>| {
            let value = v.optional(&p(key), f);
            if value == Some(0) {
                v.issue(&p(key), "must be at least 1; leave it out for no limit");
            }
            value
        };
        let max_step = positive(self, "max_step", raw.max_step);
        let max_nodes_per_hour = positive(self, "max_nodes_per_hour", raw.max_nodes_per_hour);
        let max_nodes_per_day = positive(self, "max_nodes_per_day", raw.max_nodes_per_day);
        let cooldown = self.duration(&p("cooldown"), raw.cooldown, "5m", spans::COOLDOWN);
        let settle = self.opt_duration(&p("settle"), raw.settle, spans::SETTLE);
        let (mut scale_out, offerings, on_demand_floor) = match raw.scale_out {
            Some(mut s) => {
                let raw_offerings = std::mem::take(&mut s.offerings);
                let floor = std::mem::take(&mut s.on_demand_floor);
                let (offerings, floor) =
                    self.offerings(&p("scale_out"), raw_offerings, floor, max_known);
                let template =
                    self.scale_out(&p("scale_out"), s, &instance_id, !offerings.is_empty());
                (template, offerings, floor)
            }
            None => {
                self.issue(
                    &p("scale_out"),
                    "required table [clusters.scale_out] is missing",
                );
                (ScaleOutInstanceRequest::default(), Vec::new(), 0)
            }
        };
        let (scale_in, owner_tag) = self.scale_in(&p("scale_in"), raw.scale_in.unwrap_or_default());
        if let Some(tag) = &owner_tag {
            let tags = scale_out.tags.get_or_insert_with(Vec::new);
            match tags.iter().find(|t| t.key == tag.key) {
                Some(t) if t.value != tag.value => self.issue(
                    &p("scale_in.owner_tag"),
                    format!(
                        "key {:?} is already in scale_out.tags with value {:?}; every scale-out \
                         carries the owner tag, so use another key or the same value",
                        tag.key, t.value
                    ),
                ),
                Some(_) => {}
                None => tags.push(tag.clone()),
            }
        }
        let yarn = raw.yarn.map(|y| self.yarn(&p("yarn"), y));
        ClusterConfig {
            instance_id,
            min_task_nodes,
            max_task_nodes,
            dry_run: self
                .get(&p("dry_run"), raw.dry_run, Some(false))
                .unwrap_or(false),
            cooldown,
            settle,
            max_step,
            max_nodes_per_hour,
            max_nodes_per_day,
            coexist_with_builtin: self
                .get(
                    &p("coexist_with_builtin"),
                    raw.coexist_with_builtin,
                    Some(false),
                )
                .unwrap_or(false),
            scale_out,
            offerings,
            on_demand_floor,
            scale_in,
            owner_tag,
            yarn,
            rules: self.rules(at, raw.rules, ceiling),
        }
    }

    fn scale_in(&mut self, at: &str, raw: RawScaleIn) -> (ScaleInPolicy, Option<Tag>) {
        let p = |k: &str| format!("{at}.{k}");
        let enabled = self
            .get(&p("enabled"), raw.enabled, Some(false))
            .unwrap_or(false);
        let grace_period = self.duration(
            &p("grace_period"),
            raw.grace_period,
            "10m",
            spans::GRACE_PERIOD,
        );
        if !emr::GRACE_DOWN_SECONDS.contains(&grace_period.as_secs())
            || grace_period.subsec_nanos() != 0
        {
            self.issue(
                &p("grace_period"),
                format!(
                    "{} is outside 60s to 30m (whole seconds): the API's GraceDownTime range",
                    humantime::format_duration(grace_period)
                ),
            );
        }
        let stabilization = self.duration(
            &p("stabilization"),
            raw.stabilization,
            "10m",
            spans::STABILIZATION,
        );
        let cooldown = self.duration(&p("cooldown"), raw.cooldown, "5m", spans::COOLDOWN);
        let max_step = self.get(&p("max_step"), raw.max_step, Some(5)).unwrap_or(5);
        if max_step == 0 {
            self.issue(&p("max_step"), "must be at least 1 (default 5)");
        }
        let owner_tag = raw.owner_tag.and_then(|t| {
            let key = self.get(&p("owner_tag.key"), t.key, None)?;
            let value = self.get(&p("owner_tag.value"), t.value, None)?;
            if key.trim().is_empty() {
                self.issue(&p("owner_tag.key"), "must not be empty");
                return None;
            }
            Some(Tag { key, value })
        });
        let nodes = self
            .get(&p("nodes"), raw.nodes, Some("ours".into()))
            .unwrap_or_default();
        let scope = match nodes.as_str() {
            "ours" => match &owner_tag {
                Some(tag) => NodeScope::Ours {
                    key: tag.key.clone(),
                    value: tag.value.clone(),
                },
                None => {
                    if enabled {
                        self.issue(
                            &p("owner_tag"),
                            "required with nodes = \"ours\" (the default): set owner_tag = \
                             { key = \"managed-by\", value = \"emr-autoscaler\" } (the tag must \
                             exist in the account's tag service), or nodes = \"any_task\"",
                        );
                    }
                    // No tag to recognise our nodes by: none is ours.
                    NodeScope::Ours {
                        key: String::new(),
                        value: String::new(),
                    }
                }
            },
            "any_task" => NodeScope::AnyTask,
            other => {
                self.issue(
                    &p("nodes"),
                    format!("{other:?} is not \"ours\" (nodes carrying owner_tag) or \"any_task\""),
                );
                NodeScope::AnyTask
            }
        };
        (
            ScaleInPolicy {
                enabled,
                grace_period,
                stabilization,
                cooldown,
                max_step: max_step.max(1),
                scope,
            },
            owner_tag,
        )
    }

    fn yarn(&mut self, at: &str, raw: RawYarn) -> YarnConfig {
        let key = format!("{at}.resourcemanager_urls");
        let texts = self
            .get(&key, raw.resourcemanager_urls, None)
            .unwrap_or_default();
        if texts.is_empty() && !self.issues.iter().any(|i| i.path == key) {
            self.issue(
                &key,
                "list at least one ResourceManager URL, e.g. [\"http://rm1:8088\"]",
            );
        }
        let mut urls = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            match Url::parse(text) {
                Ok(u) if !u.username().is_empty() || u.password().is_some() => self.issue(
                    &format!("{key}[{i}]"),
                    "must not carry a user or password (they would show in logs); \
                     the ResourceManager REST API is read without credentials",
                ),
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    urls.push(u)
                }
                Ok(_) => self.issue(
                    &format!("{key}[{i}]"),
                    format!("{text:?} is not an http(s) URL with a host"),
                ),
                Err(e) => self.issue(
                    &format!("{key}[{i}]"),
                    format!("{text:?} is not a URL ({e})"),
                ),
            }
        }
        YarnConfig {
            resourcemanager_urls: urls,
        }
    }

    /// The ScaleOutInstance template. With offerings (`offerings`), task
    /// nodes go through ScaleOutCluster: the billing keys are neither used
    /// nor required (pay-as-you-go when absent, for core-node orders), and
    /// the keys ScaleOutCluster cannot carry are refused.
    fn scale_out(
        &mut self,
        at: &str,
        raw: RawScaleOut,
        instance_id: &str,
        offerings: bool,
    ) -> ScaleOutInstanceRequest {
        let p = |k: &str| format!("{at}.{k}");
        let (pay_mode, time_unit, time_span) = if offerings {
            let billing = (
                self.optional(&p("pay_mode"), raw.pay_mode),
                self.optional(&p("time_unit"), raw.time_unit),
                self.optional(&p("time_span"), raw.time_span),
            );
            for (key, set) in [
                ("pay_mode", billing.0.is_some()),
                ("time_unit", billing.1.is_some()),
                ("time_span", billing.2.is_some()),
            ] {
                if set {
                    self.notes.push(Issue {
                        path: p(key),
                        message: "not used for task nodes beside offerings (each offering has its charge); only manual core-node orders read it".into(),
                    });
                }
            }
            for (key, set) in [
                ("zone_id", !matches!(raw.zone_id, Field::Missing)),
                ("subnet_id", !matches!(raw.subnet_id, Field::Missing)),
                (
                    "un_necessary_node_list",
                    !matches!(raw.un_necessary_node_list, Field::Missing),
                ),
                ("router_count", !matches!(raw.router_count, Field::Missing)),
            ] {
                if set {
                    self.issue(
                        &p(key),
                        "ScaleOutCluster has no such field: beside offerings, set the zone and subnet on each offering, and leave the others out",
                    );
                }
            }
            match billing {
                (None, None, None) => (Some(0), Some("s".to_string()), Some(3600)),
                other => other,
            }
        } else {
            (
                self.get(&p("pay_mode"), raw.pay_mode, None),
                self.get(&p("time_unit"), raw.time_unit, None),
                self.get(&p("time_span"), raw.time_span, None),
            )
        };
        if let (Some(m), Some(u), Some(s)) = (pay_mode, &time_unit, time_span)
            && let Err(e) = emr::check_billing(m, u, s)
        {
            let key = match e.code {
                "InvalidParameter.InvalidTimeSpan" => "time_span",
                "InvalidParameter.InvalidTimeUnit" => "time_unit",
                _ => "pay_mode",
            };
            self.issue(&p(key), e.message);
        }
        let tags = raw
            .tags
            .into_iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let key = self.get(&format!("{at}.tags[{i}].key"), t.key, None)?;
                let value = self.get(&format!("{at}.tags[{i}].value"), t.value, None)?;
                Some(Tag { key, value })
            })
            .collect::<Vec<_>>();
        let scripts = raw
            .pre_executed_file_settings
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                let at = format!("{at}.pre_executed_file_settings[{i}]");
                let q = |k: &str| format!("{at}.{k}");
                PreExecuteFileSettings {
                    path: self.optional(&q("path"), s.path),
                    args: self.optional(&q("args"), s.args),
                    bucket: self.optional(&q("bucket"), s.bucket),
                    region: self.optional(&q("region"), s.region),
                    domain: self.optional(&q("domain"), s.domain),
                    run_order: self.optional(&q("run_order"), s.run_order),
                    when_run: self.optional(&q("when_run"), s.when_run),
                    cos_file_name: self.optional(&q("cos_file_name"), s.cos_file_name),
                    cos_file_uri: self.optional(&q("cos_file_uri"), s.cos_file_uri),
                    cos_secret_id: None,
                    cos_secret_key: None,
                    app_id: self.optional(&q("app_id"), s.app_id),
                    remark: self.optional(&q("remark"), s.remark),
                }
            })
            .collect::<Vec<_>>();
        let template = ScaleOutInstanceRequest {
            instance_id: instance_id.to_string(),
            pay_mode: pay_mode.unwrap_or(0),
            time_unit: time_unit.unwrap_or_default(),
            time_span: time_span.unwrap_or(0),
            client_token: None,
            pre_executed_file_settings: Some(scripts).filter(|s| !s.is_empty()),
            task_count: None,
            core_count: None,
            un_necessary_node_list: self
                .optional(&p("un_necessary_node_list"), raw.un_necessary_node_list),
            router_count: self.optional(&p("router_count"), raw.router_count),
            soft_deploy_info: self.optional(&p("soft_deploy_info"), raw.soft_deploy_info),
            service_node_info: self.optional(&p("service_node_info"), raw.service_node_info),
            disaster_recover_group_ids: self.optional(
                &p("disaster_recover_group_ids"),
                raw.disaster_recover_group_ids,
            ),
            tags: Some(tags).filter(|t| !t.is_empty()),
            hardware_resource_type: {
                let v = self.optional(&p("hardware_resource_type"), raw.hardware_resource_type);
                if let Some(h) = &v
                    && !emr::HARDWARE_RESOURCE_TYPES.contains(&h.as_str())
                {
                    self.issue(
                        &p("hardware_resource_type"),
                        format!(
                            "{h:?} is not a resource type; write \"HOST\" (CVM machines), \"POD\" (TKE/EKS) or \"MNode\" (fully managed)"
                        ),
                    );
                }
                v
            },
            yarn_node_label: self.optional(&p("yarn_node_label"), raw.yarn_node_label),
            start_service_after_scale_out: self
                .optional(
                    &p("start_service_after_scale_out"),
                    raw.start_service_after_scale_out,
                )
                .map(|b| b.to_string()),
            zone_id: self.optional(&p("zone_id"), raw.zone_id),
            subnet_id: self.optional(&p("subnet_id"), raw.subnet_id),
            scale_out_service_conf_assign: self.optional(
                &p("scale_out_service_conf_assign"),
                raw.scale_out_service_conf_assign,
            ),
        };
        // The per-request rules that do not depend on the count, checked once here.
        let probe = ScaleOutInstanceRequest {
            instance_id: "emr-00000000".into(),
            task_count: Some(1),
            ..template.clone()
        };
        if let Err(e) = probe.preflight() {
            let key = match e.code {
                "InvalidParameter.InvalidSoftDeployInfo"
                | "InvalidParameter.InvalidServiceNodeInfo" => "soft_deploy_info",
                "InvalidParameter"
                    if template
                        .disaster_recover_group_ids
                        .as_ref()
                        .is_some_and(|g| g.len() > 1) =>
                {
                    "disaster_recover_group_ids"
                }
                _ => "",
            };
            if !key.is_empty() {
                self.issue(&p(key), format!("{} ({})", e.message, e.code));
            }
        }
        template
    }
}

/// A duration written as a bare number (`cooldown = 300`) is told what is
/// missing, the unit, instead of the parser's "expected a string".
fn bare_number(field: Field<String>) -> Field<String> {
    match field {
        Field::Invalid(words)
            if words.starts_with("invalid type: integer")
                || words.starts_with("invalid type: floating point") =>
        {
            let n = words.split('`').nth(1).unwrap_or("300");
            Field::Invalid(format!(
                "{n} has no unit: write durations as strings with one, e.g. \"{n}s\" or \"5m\""
            ))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
