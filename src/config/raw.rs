//! The configuration file as written: every leaf is a [`Field`], so a wrong
//! type is recorded instead of aborting, and every problem can be reported at
//! once. Unknown keys are collected by the loader with `serde_ignored`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// One leaf value: absent, well typed, or the reason it is not.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Field<T> {
    /// The key is not in the file.
    #[default]
    Missing,
    /// The key holds a value of the right type.
    Value(T),
    /// The key holds something else; the parser's words.
    Invalid(String),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Ok(match T::deserialize(value) {
            Ok(v) => Field::Value(v),
            Err(e) => Field::Invalid(e.to_string()),
        })
    }
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    /// `[daemon]`
    pub daemon: RawDaemon,
    /// `[prometheus]`
    pub prometheus: RawPrometheus,
    /// `[tencent]`
    pub tencent: RawTencent,
    /// `[[clusters]]`
    pub clusters: Vec<RawCluster>,
    /// `[ha]`, when several daemons share the work.
    pub ha: Option<super::ha::RawHa>,
    /// `[notify]`: webhooks.
    pub notify: super::notify::RawNotify,
}

/// `[daemon]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawDaemon {
    /// How often each cluster is evaluated; humantime, at least 1s.
    pub evaluation_interval: Field<String>,
    /// Decide and report, but send nothing.
    pub dry_run: Field<bool>,
    /// Admin server address, `127.0.0.1:PORT`.
    pub listen: Field<String>,
    /// Where durable state lives.
    pub state_dir: Field<String>,
    /// File holding the bearer token for pause/resume; optional.
    pub admin_token_file: Field<String>,
    /// A flow running longer than this trips the cluster's breaker.
    pub flow_timeout: Field<String>,
    /// No orders for a cluster this long after a sold-out answer.
    pub sold_out_backoff: Field<String>,
    /// Events kept in the history.
    pub history_max: Field<u64>,
}

/// `[prometheus]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPrometheus {
    /// Base URL of the Prometheus HTTP API.
    pub url: Field<String>,
    /// Per-query timeout.
    pub timeout: Field<String>,
    /// File holding a bearer token.
    pub bearer_token_file: Field<String>,
    /// Basic-auth user.
    pub basic_auth_user: Field<String>,
    /// File holding the basic-auth password.
    pub basic_auth_password_file: Field<String>,
}

/// `[tencent]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTencent {
    /// `X-TC-Region`, e.g. `ap-guangzhou`.
    pub region: Field<String>,
    /// API endpoint.
    pub endpoint: Field<String>,
    /// ScaleOutInstance calls per second, 1 to 20.
    pub requests_per_second: Field<u32>,
    /// TCP connect timeout.
    pub connect_timeout: Field<String>,
    /// Whole-request timeout.
    pub request_timeout: Field<String>,
    /// Attempts per logical request.
    pub max_attempts: Field<u32>,
    /// `X-TC-Language`: `zh-CN` or `en-US`.
    pub language: Field<String>,
    /// Metadata service base URL, for CVM role credentials.
    pub metadata_url: Field<String>,
}

/// `[[clusters]]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawCluster {
    /// `emr-xxxxxxxx`.
    pub instance_id: Field<String>,
    /// Floor of task nodes.
    pub min_task_nodes: Field<u32>,
    /// Ceiling of task nodes.
    pub max_task_nodes: Field<u32>,
    /// Dry-run for this cluster only.
    pub dry_run: Field<bool>,
    /// Quiet time after an operation's last chunk.
    pub cooldown: Field<String>,
    /// How long nodes that just arrived still count against the demand.
    pub settle: Field<String>,
    /// Most nodes one decision adds.
    pub max_step: Field<u32>,
    /// Most nodes added in any rolling hour.
    pub max_nodes_per_hour: Field<u32>,
    /// Most nodes added in any rolling day.
    pub max_nodes_per_day: Field<u32>,
    /// Act even while Tencent's own auto-scaling has an enabled strategy.
    pub coexist_with_builtin: Field<bool>,
    /// The ScaleOutInstance template.
    pub scale_out: Option<RawScaleOut>,
    /// Scale-in settings.
    pub scale_in: Option<RawScaleIn>,
    /// The YARN ResourceManager, for choosing which nodes go.
    pub yarn: Option<RawYarn>,
    /// The policy rules.
    pub rules: Vec<RawRule>,
}

/// `[clusters.scale_out]`: snake_case ScaleOutInstance fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawScaleOut {
    /// 0 pay-as-you-go, 1 monthly.
    pub pay_mode: Field<u8>,
    /// `s` or `m`.
    pub time_unit: Field<String>,
    /// 3600, or months.
    pub time_span: Field<u64>,
    /// Tags for new nodes.
    pub tags: Vec<RawTag>,
    /// Bootstrap scripts.
    pub pre_executed_file_settings: Vec<RawPreExecute>,
    /// Processes not needed.
    pub un_necessary_node_list: Field<Vec<i64>>,
    /// Router nodes to add with each request.
    pub router_count: Field<u32>,
    /// Services to deploy.
    pub soft_deploy_info: Field<Vec<i64>>,
    /// Processes to start.
    pub service_node_info: Field<Vec<i64>>,
    /// Spread placement group; at most one.
    pub disaster_recover_group_ids: Field<Vec<String>>,
    /// YARN node label.
    pub yarn_node_label: Field<String>,
    /// Availability zone id.
    pub zone_id: Field<i64>,
    /// Subnet id.
    pub subnet_id: Field<String>,
    /// Start services after the scale-out.
    pub start_service_after_scale_out: Field<bool>,
    /// `CVM` or `POD`.
    pub hardware_resource_type: Field<String>,
    /// Preset configuration group.
    pub scale_out_service_conf_assign: Field<String>,
    /// Task nodes kept on on-demand offerings.
    pub on_demand_floor: Field<u32>,
    /// `[[clusters.scale_out.offerings]]`, in order of preference.
    pub offerings: Vec<super::offerings::RawOffering>,
}

/// `[clusters.scale_in]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawScaleIn {
    /// Opt in per cluster.
    pub enabled: Field<bool>,
    /// `GraceDownTime`, 60 s to 1800 s.
    pub grace_period: Field<String>,
    /// Remove only below the largest desired count of this window.
    pub stabilization: Field<String>,
    /// After any operation, before a scale-in.
    pub cooldown: Field<String>,
    /// Most nodes one scale-in removes.
    pub max_step: Field<u32>,
    /// `ours` or `any_task`.
    pub nodes: Field<String>,
    /// The tag that marks this product's nodes.
    pub owner_tag: Option<RawTag>,
}

/// `[clusters.yarn]`
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawYarn {
    /// ResourceManager base URLs (a standby's redirect is followed).
    pub resourcemanager_urls: Field<Vec<String>>,
}

/// One tag.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawTag {
    /// Tag key.
    pub key: Field<String>,
    /// Tag value.
    pub value: Field<String>,
}

/// One bootstrap script.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawPreExecute {
    /// Script path.
    pub path: Field<String>,
    /// Arguments.
    pub args: Field<Vec<String>>,
    /// COS bucket.
    pub bucket: Field<String>,
    /// COS region.
    pub region: Field<String>,
    /// COS domain.
    pub domain: Field<String>,
    /// Run order.
    pub run_order: Field<i64>,
    /// `resourceAfter` or `clusterAfter`.
    pub when_run: Field<String>,
    /// File name.
    pub cos_file_name: Field<String>,
    /// File URI.
    pub cos_file_uri: Field<String>,
    /// COS AppId.
    pub app_id: Field<String>,
    /// Remark.
    pub remark: Field<String>,
}

/// `[[clusters.rules]]`: the union of every rule type's keys; which apply is
/// checked per type.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRule {
    /// Unique name within the cluster.
    pub name: Field<String>,
    /// `threshold`, `target` or `schedule`.
    #[serde(rename = "type")]
    pub kind: Field<String>,
    /// PromQL expression (threshold, target).
    pub query: Field<String>,
    /// Threshold: breach when the value is above this.
    pub above: Field<f64>,
    /// Threshold: breach when the value is below this.
    pub below: Field<f64>,
    /// Threshold: how long the breach must hold.
    #[serde(rename = "for")]
    pub sustain_for: Field<String>,
    /// Threshold: consecutive breaching evaluations instead of `for`.
    pub evaluations: Field<u32>,
    /// Threshold and schedule: nodes to add.
    pub add: Field<i64>,
    /// Threshold: percentage of the current count to add.
    pub add_percent: Field<f64>,
    /// Threshold: nodes to give back (scale-in).
    pub remove: Field<i64>,
    /// Mutes only this rule after it drove an order.
    pub cooldown: Field<String>,
    /// Target (ratio form): the value to hold.
    pub target: Field<f64>,
    /// Target (ratio form): relative band with no action.
    pub tolerance: Field<f64>,
    /// Target: nodes to add from zero, or on missing data with fail_open.
    pub bootstrap: Field<u32>,
    /// Target (demand form): what one task node absorbs.
    pub per_node: Field<f64>,
    /// Target (demand form): headroom factor.
    pub factor: Field<f64>,
    /// Capacity: what the nodes that are not task nodes give YARN.
    pub reserved: Field<f64>,
    /// Capacity: kept free above demand.
    pub headroom: Field<f64>,
    /// Capacity: growth is measured over this window.
    pub trend_window: Field<String>,
    /// Capacity: growth is projected this far ahead, or `auto`.
    pub trend_horizon: Field<String>,
    /// Schedule: when windows open.
    pub cron: Field<String>,
    /// Schedule: IANA time zone.
    pub timezone: Field<String>,
    /// Schedule: window length.
    pub duration: Field<String>,
    /// Schedule: cron expression that closes the window.
    pub end: Field<String>,
    /// Schedule: task nodes held while open.
    pub floor_task_nodes: Field<u32>,
    /// The largest plausible magnitude of the query's value (default 1e12).
    pub max_value: Field<f64>,
    /// `hold`, `fail_open` or `floor`.
    pub on_missing: Field<String>,
    /// Samples older than this are stale.
    pub max_age: Field<String>,
    /// `mb`, `ratio` or `plain`, for explanations.
    pub unit: Field<String>,
    /// `pending_mb`, `available_mb`, `utilisation` or `demand_mb`, for replays.
    pub replay_signal: Field<String>,
}

impl RawRule {
    /// The keys set in this rule, by name.
    pub(crate) fn present(&self) -> Vec<&'static str> {
        fn set<T>(f: &Field<T>) -> bool {
            !matches!(f, Field::Missing)
        }
        let all = [
            ("name", set(&self.name)),
            ("type", set(&self.kind)),
            ("query", set(&self.query)),
            ("above", set(&self.above)),
            ("below", set(&self.below)),
            ("for", set(&self.sustain_for)),
            ("evaluations", set(&self.evaluations)),
            ("add", set(&self.add)),
            ("add_percent", set(&self.add_percent)),
            ("remove", set(&self.remove)),
            ("cooldown", set(&self.cooldown)),
            ("target", set(&self.target)),
            ("tolerance", set(&self.tolerance)),
            ("bootstrap", set(&self.bootstrap)),
            ("per_node", set(&self.per_node)),
            ("factor", set(&self.factor)),
            ("reserved", set(&self.reserved)),
            ("headroom", set(&self.headroom)),
            ("trend_window", set(&self.trend_window)),
            ("trend_horizon", set(&self.trend_horizon)),
            ("cron", set(&self.cron)),
            ("timezone", set(&self.timezone)),
            ("duration", set(&self.duration)),
            ("end", set(&self.end)),
            ("floor_task_nodes", set(&self.floor_task_nodes)),
            ("on_missing", set(&self.on_missing)),
            ("max_value", set(&self.max_value)),
            ("max_age", set(&self.max_age)),
            ("unit", set(&self.unit)),
            ("replay_signal", set(&self.replay_signal)),
        ];
        all.into_iter()
            .filter(|(_, s)| *s)
            .map(|(k, _)| k)
            .collect()
    }
}
