//! Typed EMR actions (API version 2019-01-03) and their pre-flight checks.
//!
//! Field names use the API's casing; absent optional fields are left out of
//! the JSON. Responses are parsed leniently: unknown fields are ignored and the
//! documented nullable ones are `Option`.

use serde::{Deserialize, Serialize};

use super::error::PreflightError;

/// The API version every action here belongs to.
pub const VERSION: &str = "2019-01-03";
/// The service name used in signing and the default host.
pub const SERVICE: &str = "emr";
/// Most nodes of one kind one ScaleOutInstance request may add.
pub const MAX_NODES_PER_REQUEST: u32 = 20;

/// The values `HardwareResourceType` takes: CVM machines, TKE/EKS pods, and
/// fully managed nodes.
pub const HARDWARE_RESOURCE_TYPES: [&str; 3] = ["HOST", "POD", "MNode"];

/// An EMR action this client calls. Each has its own rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Adds nodes.
    ScaleOutInstance,
    /// Removes task nodes, gracefully. Mutating, with no ClientToken.
    TerminateClusterNodes,
    /// Cluster status and sizes, batched.
    DescribeInstances,
    /// Progress of one flow.
    DescribeClusterFlowStatusDetail,
    /// Node lists.
    DescribeClusterNodes,
    /// The auto-scaling groups of Tencent's own auto-scaling.
    DescribeAutoScaleGroupGlobalConf,
    /// The strategies of Tencent's own auto-scaling.
    DescribeAutoScaleStrategies,
}

impl Action {
    /// Every action, in label order.
    pub const ALL: [Action; 7] = [
        Action::ScaleOutInstance,
        Action::TerminateClusterNodes,
        Action::DescribeInstances,
        Action::DescribeClusterFlowStatusDetail,
        Action::DescribeClusterNodes,
        Action::DescribeAutoScaleGroupGlobalConf,
        Action::DescribeAutoScaleStrategies,
    ];

    /// The wire name, also the `action` metric label.
    pub fn name(self) -> &'static str {
        match self {
            Action::ScaleOutInstance => "ScaleOutInstance",
            Action::DescribeInstances => "DescribeInstances",
            Action::DescribeClusterFlowStatusDetail => "DescribeClusterFlowStatusDetail",
            Action::DescribeClusterNodes => "DescribeClusterNodes",
            Action::DescribeAutoScaleGroupGlobalConf => "DescribeAutoScaleGroupGlobalConf",
            Action::DescribeAutoScaleStrategies => "DescribeAutoScaleStrategies",
            Action::TerminateClusterNodes => "TerminateClusterNodes",
        }
    }

    /// Whether the action changes anything (and so needs a ClientToken to
    /// retry; TerminateClusterNodes has none, so it is never retried by the
    /// client: its operation re-sends the same node list instead).
    pub fn is_mutating(self) -> bool {
        matches!(
            self,
            Action::ScaleOutInstance | Action::TerminateClusterNodes
        )
    }
}

/// A tag bound to the added nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// `TagKey`.
    #[serde(rename = "TagKey")]
    pub key: String,
    /// `TagValue`.
    #[serde(rename = "TagValue")]
    pub value: String,
}

/// A bootstrap script run on new nodes (`PreExecuteFileSettings`).
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PreExecuteFileSettings {
    /// Script path in COS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Script arguments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// COS bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// COS region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// COS domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Execution order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_order: Option<i64>,
    /// `resourceAfter` or `clusterAfter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when_run: Option<String>,
    /// Script file name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_file_name: Option<String>,
    /// Script URI.
    #[serde(rename = "CosFileURI", skip_serializing_if = "Option::is_none")]
    pub cos_file_uri: Option<String>,
    /// COS SecretId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_secret_id: Option<String>,
    /// COS SecretKey. Never shown by `Debug`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cos_secret_key: Option<String>,
    /// COS AppId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Remark.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remark: Option<String>,
}

impl std::fmt::Debug for PreExecuteFileSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreExecuteFileSettings")
            .field("path", &self.path)
            .field("cos_file_uri", &self.cos_file_uri)
            .field(
                "cos_secret_key",
                &self.cos_secret_key.as_ref().map(|_| "<redacted>"),
            )
            .finish_non_exhaustive()
    }
}

/// The `ScaleOutInstance` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutInstanceRequest {
    /// `emr-` followed by 8 lowercase letters or digits.
    pub instance_id: String,
    /// 0 pay-as-you-go, 1 monthly.
    pub pay_mode: u8,
    /// `s` for PayMode 0, `m` for PayMode 1.
    pub time_unit: String,
    /// 3600 for PayMode 0; months for PayMode 1.
    pub time_span: u64,
    /// Idempotency token, valid for 5 minutes at the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// Bootstrap scripts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_executed_file_settings: Option<Vec<PreExecuteFileSettings>>,
    /// Task nodes to add, 1..=20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_count: Option<u32>,
    /// Core nodes to add, 1..=20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_count: Option<u32>,
    /// Processes not needed on the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub un_necessary_node_list: Option<Vec<i64>>,
    /// Router nodes to add.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_count: Option<u32>,
    /// Services to deploy; goes with `ServiceNodeInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub soft_deploy_info: Option<Vec<i64>>,
    /// Processes to start; goes with `SoftDeployInfo`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_node_info: Option<Vec<i64>>,
    /// Spread placement groups; at most one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disaster_recover_group_ids: Option<Vec<String>>,
    /// Tags for the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// One of [`HARDWARE_RESOURCE_TYPES`]: `HOST`, `POD` or `MNode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hardware_resource_type: Option<String>,
    /// YARN node label for the new nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yarn_node_label: Option<String>,
    /// Whether to start services after the scale-out: `"true"` or `"false"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_service_after_scale_out: Option<String>,
    /// Availability zone id; defaults to the cluster's primary zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zone_id: Option<i64>,
    /// Subnet; defaults to the cluster's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// Preset configuration group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_out_service_conf_assign: Option<String>,
}

/// Whether `id` looks like an EMR instance id: `emr-` and 8 of `[a-z0-9]`.
pub fn is_valid_instance_id(id: &str) -> bool {
    id.strip_prefix("emr-").is_some_and(|rest| {
        rest.len() == 8
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

fn refuse(code: &'static str, message: impl Into<String>) -> Result<(), PreflightError> {
    Err(PreflightError {
        code,
        message: message.into(),
    })
}

/// Checks the billing fields alone; the config validation reuses it.
pub fn check_billing(pay_mode: u8, time_unit: &str, time_span: u64) -> Result<(), PreflightError> {
    match pay_mode {
        0 if time_unit != "s" => refuse(
            "InvalidParameter.InvalidTimeUnit",
            format!("PayMode 0 (pay-as-you-go) needs TimeUnit \"s\", not {time_unit:?}"),
        ),
        0 if time_span != 3600 => refuse(
            "InvalidParameter.InvalidTimeSpan",
            format!("PayMode 0 (pay-as-you-go) needs TimeSpan 3600, not {time_span}"),
        ),
        1 if time_unit != "m" => refuse(
            "InvalidParameter.InvalidTimeUnit",
            format!("PayMode 1 (monthly) needs TimeUnit \"m\", not {time_unit:?}"),
        ),
        1 if !(1..=36).contains(&time_span) => refuse(
            "InvalidParameter.InvalidTimeSpan",
            format!("PayMode 1 (monthly) needs TimeSpan in months, 1 to 36, not {time_span}"),
        ),
        0 | 1 => Ok(()),
        other => refuse(
            "InvalidParameter.InvalidPaymode",
            format!("PayMode must be 0 (pay-as-you-go) or 1 (monthly), not {other}"),
        ),
    }
}

impl ScaleOutInstanceRequest {
    /// Refuses what the API would reject, with the API's own error names.
    pub fn preflight(&self) -> Result<(), PreflightError> {
        if !is_valid_instance_id(&self.instance_id) {
            refuse(
                "InvalidParameter.InvalidClusterId",
                format!(
                    "InstanceId {:?} is not of the form emr-xxxxxxxx (8 lowercase letters or digits)",
                    self.instance_id
                ),
            )?;
        }
        if let Some(h) = &self.hardware_resource_type
            && !HARDWARE_RESOURCE_TYPES.contains(&h.as_str())
        {
            refuse(
                "InvalidParameterValue",
                format!("HardwareResourceType {h:?} is not HOST, POD or MNode"),
            )?;
        }
        match (self.task_count, self.core_count) {
            (Some(_), Some(_)) => refuse(
                "InvalidParameter.InvalidCountNum",
                "one request adds task nodes or core nodes, never both",
            )?,
            (None, None) => refuse(
                "InvalidParameter.InvalidCount",
                "set TaskCount or CoreCount; the number of nodes must be greater than 0",
            )?,
            (Some(0), None) | (None, Some(0)) => refuse(
                "InvalidParameter.InvalidCount",
                "the number of nodes must be greater than 0",
            )?,
            (Some(n), None) if n > MAX_NODES_PER_REQUEST => refuse(
                "InvalidParameter.InvalidTaskCount",
                format!("TaskCount {n} exceeds {MAX_NODES_PER_REQUEST} per request"),
            )?,
            (None, Some(n)) if n > MAX_NODES_PER_REQUEST => refuse(
                "InvalidParameter.InvalidCoreCount",
                format!("CoreCount {n} exceeds {MAX_NODES_PER_REQUEST} per request"),
            )?,
            _ => {}
        }
        check_billing(self.pay_mode, &self.time_unit, self.time_span)?;
        let soft = self.soft_deploy_info.is_some() || self.service_node_info.is_some();
        if soft && self.un_necessary_node_list.is_some() {
            refuse(
                "InvalidParameter.InvalidSoftDeployInfo",
                "SoftDeployInfo/ServiceNodeInfo and UnNecessaryNodeList exclude each other",
            )?;
        }
        if self.soft_deploy_info.is_some() != self.service_node_info.is_some() {
            refuse(
                "InvalidParameter.InvalidServiceNodeInfo",
                "SoftDeployInfo and ServiceNodeInfo go together",
            )?;
        }
        if self
            .disaster_recover_group_ids
            .as_ref()
            .is_some_and(|g| g.len() > 1)
        {
            refuse(
                "InvalidParameter",
                "DisasterRecoverGroupIds holds at most 1 placement group",
            )?;
        }
        if let Some(v) = &self.start_service_after_scale_out
            && v != "true"
            && v != "false"
        {
            refuse(
                "InvalidParameter",
                format!("StartServiceAfterScaleOut must be \"true\" or \"false\", not {v:?}"),
            )?;
        }
        Ok(())
    }
}

/// The `ScaleOutInstance` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScaleOutInstanceResponse {
    /// The cluster.
    #[serde(default)]
    pub instance_id: Option<String>,
    /// The flow that provisions the nodes.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// The request id.
    pub request_id: String,
    /// The token the server recorded; may be null.
    #[serde(default)]
    pub client_token: Option<String>,
    /// Order numbers; may be null.
    #[serde(default)]
    pub deal_names: Option<Vec<String>>,
    /// Bill id.
    #[serde(default)]
    pub bill_id: Option<String>,
    /// Trace id.
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// The `DescribeInstances` request, in its cluster-list form.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesRequest {
    /// Always `clusterList`.
    pub display_strategy: &'static str,
    /// The clusters to describe.
    pub instance_ids: Vec<String>,
    /// -1: every project.
    pub project_id: i64,
    /// Paging offset.
    pub offset: u32,
    /// Page size.
    pub limit: u32,
}

/// Largest `DescribeInstances` page.
pub const DESCRIBE_INSTANCES_BATCH: usize = 100;

impl DescribeInstancesRequest {
    /// One batch of at most [`DESCRIBE_INSTANCES_BATCH`] ids.
    pub fn for_ids(ids: &[String]) -> Self {
        Self {
            display_strategy: "clusterList",
            instance_ids: ids.to_vec(),
            project_id: -1,
            offset: 0,
            limit: DESCRIBE_INSTANCES_BATCH as u32,
        }
    }
}

/// The part of `Config` the autoscaler reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterConfigInfo {
    /// Running task nodes.
    #[serde(default)]
    pub task_node_size: Option<i64>,
    /// Running core nodes.
    #[serde(default)]
    pub core_node_size: Option<i64>,
}

/// One `ClusterList` item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClusterInfo {
    /// The `emr-…` id.
    pub cluster_id: String,
    /// 2 running, 4 scaling out, 302 scale-out failed, and others.
    #[serde(default)]
    pub status: Option<i64>,
    /// May be null.
    #[serde(default)]
    pub config: Option<ClusterConfigInfo>,
}

impl ClusterInfo {
    /// Running task nodes, when the API gave them.
    pub fn task_nodes(&self) -> Option<u32> {
        self.config
            .as_ref()
            .and_then(|c| c.task_node_size)
            .and_then(|n| u32::try_from(n).ok())
    }

    /// The status says a flow runs: neither running nor "scale-out failed"
    /// (after which the cluster takes new orders).
    pub fn in_flow(&self) -> bool {
        self.status
            .is_some_and(|s| s != status::RUNNING && s != status::SCALE_OUT_FAILED)
    }
}

/// Cluster status codes the autoscaler cares about.
pub mod status {
    /// Running.
    pub const RUNNING: i64 = 2;
    /// Scaling out.
    pub const SCALING_OUT: i64 = 4;
    /// Scale-out failed.
    pub const SCALE_OUT_FAILED: i64 = 302;
}

/// The `DescribeInstances` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeInstancesResponse {
    /// Matching clusters.
    #[serde(default)]
    pub total_cnt: Option<i64>,
    /// The clusters; may be null.
    #[serde(default)]
    pub cluster_list: Option<Vec<ClusterInfo>>,
    /// The request id.
    pub request_id: String,
}

/// `FlowParam` of `DescribeClusterFlowStatusDetail`.
#[derive(Debug, Clone, Serialize)]
pub struct FlowParam {
    /// Always `FlowId`.
    #[serde(rename = "FKey")]
    pub key: &'static str,
    /// The flow id, as a string.
    #[serde(rename = "FValue")]
    pub value: String,
}

/// The `DescribeClusterFlowStatusDetail` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeFlowRequest {
    /// The cluster.
    pub instance_id: String,
    /// Which flow.
    pub flow_param: FlowParam,
}

impl DescribeFlowRequest {
    /// Asks for flow `flow_id` of `instance_id`.
    pub fn new(instance_id: &str, flow_id: i64) -> Self {
        Self {
            instance_id: instance_id.to_string(),
            flow_param: FlowParam {
                key: "FlowId",
                value: flow_id.to_string(),
            },
        }
    }
}

/// Where a flow stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// 0 init or 1 running.
    Running,
    /// 2 done, or 3 done with skips.
    Done,
    /// -1 failed.
    Failed,
    /// -3 blocked.
    Blocked,
    /// Any other value.
    Unknown(i64),
}

impl FlowState {
    /// Maps `FlowTotalStatus`.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 | 1 => FlowState::Running,
            2 | 3 => FlowState::Done,
            -1 => FlowState::Failed,
            -3 => FlowState::Blocked,
            other => FlowState::Unknown(other),
        }
    }
}

/// The `DescribeClusterFlowStatusDetail` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeFlowResponse {
    /// 0 init, 1 running, 2 done, 3 done with skips, -1 failed, -3 blocked.
    #[serde(default)]
    pub flow_total_status: Option<i64>,
    /// Progress, 0 to 1.
    #[serde(default)]
    pub flow_total_progress: Option<f64>,
    /// The request id.
    pub request_id: String,
}

impl DescribeFlowResponse {
    /// The flow's state; a missing status counts as unknown.
    pub fn state(&self) -> FlowState {
        self.flow_total_status
            .map_or(FlowState::Unknown(i64::MIN), FlowState::from_code)
    }
}

/// The `DescribeClusterNodes` request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeClusterNodesRequest {
    /// The cluster.
    pub instance_id: String,
    /// `task`, `core`, `all` …
    pub node_flag: String,
    /// The page number, from 0 (the SDK documents `Offset` as a page index).
    pub offset: u32,
    /// Page size, at most [`DESCRIBE_NODES_PAGE`].
    pub limit: u32,
}

/// Largest `DescribeClusterNodes` page.
pub const DESCRIBE_NODES_PAGE: u32 = 100;

/// Most pages read for one node list (10,000 nodes): a server that keeps
/// answering full pages cannot keep the caller reading for ever.
pub const DESCRIBE_NODES_MAX_PAGES: u32 = 100;

/// The `DescribeClusterNodes` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeClusterNodesResponse {
    /// Nodes matching the flag.
    #[serde(default)]
    pub total_cnt: Option<i64>,
    /// This page; may be null.
    #[serde(default)]
    pub node_list: Option<Vec<NodeHardwareInfo>>,
    /// The request id.
    pub request_id: String,
}

/// One node of `DescribeClusterNodes` (`NodeHardwareInfo`), the fields the
/// scale-in rules read. Every field may be absent or null; a node whose
/// fields are missing is never eligible for removal.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeHardwareInfo {
    /// 0 common, 1 master, 2 core, 3 task.
    pub flag: Option<i64>,
    /// 1: created by Tencent's own auto-scaling.
    pub auto_flag: Option<i64>,
    /// 1: may be destroyed; 0: may not.
    pub destroyable: Option<i64>,
    /// Instance protection: true means the API refuses to terminate it.
    pub disable_api_termination: Option<bool>,
    /// 0 pay-as-you-go, 1 monthly.
    pub charge_type: Option<i64>,
    /// The machine id (`ins-…`), what `TerminateClusterNodes` names.
    pub order_no: Option<String>,
    /// The EMR resource id.
    pub emr_resource_id: Option<String>,
    /// Private IP, matched against YARN's node addresses.
    pub ip: Option<String>,
    /// When the node was bought, `YYYY-MM-DD HH:MM:SS`.
    pub apply_time: Option<String>,
    /// The node's tags; may be null.
    pub tags: Option<Vec<Tag>>,
    /// `host` or `pod`.
    pub hardware_resource_type: Option<String>,
}

impl From<&NodeHardwareInfo> for crate::policy::scale_in::Node {
    fn from(n: &NodeHardwareInfo) -> Self {
        Self {
            id: n.order_no.clone(),
            ip: n.ip.clone(),
            flag: n.flag,
            auto_flag: n.auto_flag,
            destroyable: n.destroyable,
            disable_api_termination: n.disable_api_termination,
            charge_type: n.charge_type,
            hardware: n.hardware_resource_type.clone(),
            apply_time: n.apply_time.clone(),
            tags: n.tags.as_ref().map(|tags| {
                tags.iter()
                    .map(|t| (t.key.clone(), t.value.clone()))
                    .collect()
            }),
        }
    }
}

/// The node flag `TerminateClusterNodes` takes for task nodes; the only one
/// this product sends.
pub const TASK_NODE_FLAG: &str = "TASK";

/// The graceful decommission times the API accepts, in seconds.
pub const GRACE_DOWN_SECONDS: std::ops::RangeInclusive<u64> = 60..=1800;

/// The `TerminateClusterNodes` request: a graceful removal of named task
/// nodes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateClusterNodesRequest {
    /// The cluster.
    pub instance_id: String,
    /// The nodes' machine ids (`OrderNo`).
    pub cvm_instance_ids: Vec<String>,
    /// Always [`TASK_NODE_FLAG`].
    pub node_flag: String,
    /// Graceful decommission; always true.
    pub grace_down_flag: bool,
    /// Seconds YARN may drain each node, 60 to 1800.
    pub grace_down_time: u64,
}

impl TerminateClusterNodesRequest {
    /// A graceful removal of `nodes` (machine ids) from `instance_id`.
    pub fn graceful(instance_id: &str, nodes: Vec<String>, grace: std::time::Duration) -> Self {
        Self {
            instance_id: instance_id.to_string(),
            cvm_instance_ids: nodes,
            node_flag: TASK_NODE_FLAG.to_string(),
            grace_down_flag: true,
            grace_down_time: grace.as_secs(),
        }
    }

    /// Refuses what the API would reject, and what this product never
    /// sends: an empty or repeated list, a node flag other than TASK, a
    /// removal without graceful decommission, a grace time outside 60..1800 s.
    pub fn preflight(&self) -> Result<(), PreflightError> {
        if !is_valid_instance_id(&self.instance_id) {
            refuse(
                "InvalidParameter.InvalidClusterId",
                format!(
                    "InstanceId {:?} is not of the form emr-xxxxxxxx (8 lowercase letters or digits)",
                    self.instance_id
                ),
            )?;
        }
        if self.cvm_instance_ids.is_empty() {
            refuse(
                "InvalidParameter.InvalidCvmInstanceIds",
                "CvmInstanceIds is empty; name at least one node to remove",
            )?;
        }
        if let Some(bad) = self.cvm_instance_ids.iter().find(|id| id.trim().is_empty()) {
            refuse(
                "InvalidParameter.InvalidCvmInstanceIds",
                format!("CvmInstanceIds holds an empty machine id {bad:?}"),
            )?;
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(dup) = self.cvm_instance_ids.iter().find(|id| !seen.insert(*id)) {
            refuse(
                "InvalidParameter.InvalidCvmInstanceIds",
                format!("CvmInstanceIds names {dup} twice"),
            )?;
        }
        if self.node_flag != TASK_NODE_FLAG {
            refuse(
                "InvalidParameter.InvalidNodeFlag",
                format!(
                    "NodeFlag {:?}: only task nodes are ever removed (NodeFlag \"TASK\")",
                    self.node_flag
                ),
            )?;
        }
        if !self.grace_down_flag {
            refuse(
                "InvalidParameter.InvalidGraceDownFlag",
                "GraceDownFlag must be true: nodes are always decommissioned gracefully",
            )?;
        }
        if !GRACE_DOWN_SECONDS.contains(&self.grace_down_time) {
            refuse(
                "InvalidParameter.InvalidGraceDownTime",
                format!(
                    "GraceDownTime {} s is outside 60 to 1800 s",
                    self.grace_down_time
                ),
            )?;
        }
        Ok(())
    }
}

/// The `TerminateClusterNodes` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TerminateClusterNodesResponse {
    /// The decommission flow.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// The request id.
    pub request_id: String,
}

/// The `DescribeAutoScaleGroupGlobalConf` and `DescribeAutoScaleStrategies`
/// request: one cluster (and, for strategies, optionally one group).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AutoScaleRequest {
    /// The cluster.
    pub instance_id: String,
    /// The auto-scaling group, for strategies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<i64>,
}

/// The part of `AutoScaleResourceConf` this product reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutoScaleGroup {
    /// The group id.
    pub id: Option<i64>,
    /// The group's name.
    pub group_name: Option<String>,
}

/// One `GroupGlobalConfs` item.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct GroupGlobalConf {
    /// The group; may be null.
    pub group_global_conf: Option<AutoScaleGroup>,
}

/// The `DescribeAutoScaleGroupGlobalConf` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAutoScaleGroupGlobalConfResponse {
    /// The cluster's auto-scaling groups; may be null.
    #[serde(default)]
    pub group_global_confs: Option<Vec<GroupGlobalConf>>,
    /// The request id.
    pub request_id: String,
}

/// One strategy of Tencent's own auto-scaling, load or time based: the
/// fields that say whether it is on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AutoScaleStrategy {
    /// The strategy id.
    pub strategy_id: Option<i64>,
    /// Its name.
    pub strategy_name: Option<String>,
    /// Load: 1 on, 3 off. Time-based: 1 valid, 2 invalid, 3 paused.
    pub strategy_status: Option<i64>,
    /// 1 scale out, 2 scale in.
    pub scale_action: Option<i64>,
}

/// `StrategyStatus` of an enabled strategy, for both kinds.
pub const STRATEGY_ENABLED: i64 = 1;

/// The `DescribeAutoScaleStrategies` response.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeAutoScaleStrategiesResponse {
    /// Load-based strategies; may be null.
    #[serde(default)]
    pub load_auto_scale_strategies: Option<Vec<AutoScaleStrategy>>,
    /// Time-based strategies; may be null.
    #[serde(default)]
    pub time_based_auto_scale_strategies: Option<Vec<AutoScaleStrategy>>,
    /// The request id.
    pub request_id: String,
}

/// What Tencent's own auto-scaling of one cluster is doing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BuiltinScaling {
    /// The groups listed.
    pub groups: usize,
    /// Enabled strategies, as `load:NAME` or `time:NAME` (id when unnamed).
    pub enabled: Vec<String>,
}

impl BuiltinScaling {
    /// Adds the enabled strategies of one `DescribeAutoScaleStrategies` answer.
    pub fn add(&mut self, answer: &DescribeAutoScaleStrategiesResponse) {
        for (kind, list) in [
            ("load", &answer.load_auto_scale_strategies),
            ("time", &answer.time_based_auto_scale_strategies),
        ] {
            for s in list.iter().flatten() {
                if s.strategy_status == Some(STRATEGY_ENABLED) {
                    let name = s
                        .strategy_name
                        .clone()
                        .filter(|n| !n.is_empty())
                        .or_else(|| s.strategy_id.map(|id| format!("#{id}")))
                        .unwrap_or_else(|| "unnamed".into());
                    let label = format!("{kind}:{name}");
                    if !self.enabled.contains(&label) {
                        self.enabled.push(label);
                    }
                }
            }
        }
    }

    /// Whether any strategy is on.
    pub fn is_active(&self) -> bool {
        !self.enabled.is_empty()
    }
}

impl super::EmrClient {
    /// Sends one ScaleOutInstance under `token`, after the pre-flight checks.
    ///
    /// The request's own `ClientToken` is replaced by `token`, which every
    /// retry reuses; nothing is re-sent once the token is 4.5 minutes old.
    pub async fn scale_out(
        &self,
        request: &ScaleOutInstanceRequest,
        token: &super::ClientToken,
    ) -> Result<ScaleOutInstanceResponse, super::ApiError> {
        let request = ScaleOutInstanceRequest {
            client_token: Some(token.value.clone()),
            ..request.clone()
        };
        request.preflight()?;
        self.call(Action::ScaleOutInstance, &request, Some(token))
            .await
    }

    /// As [`scale_out`](Self::scale_out), also returning how many attempts
    /// reached the network, for the "may have executed" judgement.
    pub async fn scale_out_counted(
        &self,
        request: &ScaleOutInstanceRequest,
        token: &super::ClientToken,
    ) -> (Result<ScaleOutInstanceResponse, super::ApiError>, u32) {
        let request = ScaleOutInstanceRequest {
            client_token: Some(token.value.clone()),
            ..request.clone()
        };
        if let Err(e) = request.preflight() {
            return (Err(e.into()), 0);
        }
        self.call_counted(Action::ScaleOutInstance, &request, Some(token))
            .await
    }

    /// Describes many clusters, in batches of [`DESCRIBE_INSTANCES_BATCH`].
    /// Clusters the API does not know are absent from the result.
    pub async fn describe_instances(
        &self,
        ids: &[String],
    ) -> Result<Vec<ClusterInfo>, super::ApiError> {
        let mut out = Vec::with_capacity(ids.len());
        for batch in ids.chunks(DESCRIBE_INSTANCES_BATCH) {
            let resp: DescribeInstancesResponse = self
                .call(
                    Action::DescribeInstances,
                    &DescribeInstancesRequest::for_ids(batch),
                    None,
                )
                .await?;
            out.extend(resp.cluster_list.unwrap_or_default());
        }
        Ok(out)
    }

    /// Where flow `flow_id` of `instance_id` stands.
    pub async fn describe_flow(
        &self,
        instance_id: &str,
        flow_id: i64,
    ) -> Result<DescribeFlowResponse, super::ApiError> {
        self.call(
            Action::DescribeClusterFlowStatusDetail,
            &DescribeFlowRequest::new(instance_id, flow_id),
            None,
        )
        .await
    }

    /// How many task nodes the cluster lists.
    pub async fn task_node_count(&self, instance_id: &str) -> Result<Option<i64>, super::ApiError> {
        let resp: DescribeClusterNodesResponse = self
            .call(
                Action::DescribeClusterNodes,
                &DescribeClusterNodesRequest {
                    instance_id: instance_id.to_string(),
                    node_flag: "task".into(),
                    offset: 0,
                    limit: 1,
                },
                None,
            )
            .await?;
        Ok(resp.total_cnt)
    }

    /// Every task node of the cluster, page by page ([`DESCRIBE_NODES_PAGE`]
    /// per page, at most [`DESCRIBE_NODES_MAX_PAGES`] pages). Stops at
    /// `TotalCnt` nodes or at the first short page.
    pub async fn task_nodes(
        &self,
        instance_id: &str,
    ) -> Result<Vec<NodeHardwareInfo>, super::ApiError> {
        let mut nodes = Vec::new();
        for page in 0..DESCRIBE_NODES_MAX_PAGES {
            let resp: DescribeClusterNodesResponse = self
                .call(
                    Action::DescribeClusterNodes,
                    &DescribeClusterNodesRequest {
                        instance_id: instance_id.to_string(),
                        node_flag: "task".into(),
                        offset: page,
                        limit: DESCRIBE_NODES_PAGE,
                    },
                    None,
                )
                .await?;
            let list = resp.node_list.unwrap_or_default();
            let short = list.len() < DESCRIBE_NODES_PAGE as usize;
            nodes.extend(list);
            let total = resp.total_cnt.and_then(|t| usize::try_from(t).ok());
            if short || total.is_some_and(|t| nodes.len() >= t) {
                break;
            }
        }
        Ok(nodes)
    }

    /// Sends one graceful `TerminateClusterNodes`, after the pre-flight
    /// checks, once: the action has no ClientToken, so the client never
    /// retries it. Returns how many attempts reached the network (0 or 1).
    pub async fn terminate_nodes_counted(
        &self,
        request: &TerminateClusterNodesRequest,
    ) -> (Result<TerminateClusterNodesResponse, super::ApiError>, u32) {
        if let Err(e) = request.preflight() {
            return (Err(e.into()), 0);
        }
        self.call_counted(Action::TerminateClusterNodes, request, None)
            .await
    }

    /// What Tencent's own auto-scaling does on `instance_id`: the groups of
    /// `DescribeAutoScaleGroupGlobalConf`, then the strategies of each
    /// (`DescribeAutoScaleStrategies` with its `GroupId`), or of the cluster
    /// when it lists no group.
    pub async fn builtin_scaling(
        &self,
        instance_id: &str,
    ) -> Result<BuiltinScaling, super::ApiError> {
        let groups: DescribeAutoScaleGroupGlobalConfResponse = self
            .call(
                Action::DescribeAutoScaleGroupGlobalConf,
                &AutoScaleRequest {
                    instance_id: instance_id.to_string(),
                    group_id: None,
                },
                None,
            )
            .await?;
        let ids: Vec<Option<i64>> = groups
            .group_global_confs
            .unwrap_or_default()
            .into_iter()
            .filter_map(|g| g.group_global_conf.and_then(|c| c.id))
            .map(Some)
            .collect();
        let mut out = BuiltinScaling {
            groups: ids.len(),
            enabled: Vec::new(),
        };
        let asks = if ids.is_empty() { vec![None] } else { ids };
        for group_id in asks {
            let answer: DescribeAutoScaleStrategiesResponse = self
                .call(
                    Action::DescribeAutoScaleStrategies,
                    &AutoScaleRequest {
                        instance_id: instance_id.to_string(),
                        group_id,
                    },
                    None,
                )
                .await?;
            out.add(&answer);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ScaleOutInstanceRequest {
        ScaleOutInstanceRequest {
            instance_id: "emr-abc12345".into(),
            pay_mode: 0,
            time_unit: "s".into(),
            time_span: 3600,
            task_count: Some(2),
            ..Default::default()
        }
    }

    #[test]
    fn serialises_in_api_casing_and_leaves_absent_fields_out() {
        let req = ScaleOutInstanceRequest {
            client_token: Some("tok".into()),
            tags: Some(vec![Tag {
                key: "owner".into(),
                value: "autoscaler".into(),
            }]),
            yarn_node_label: Some("burst".into()),
            zone_id: Some(100003),
            start_service_after_scale_out: Some("true".into()),
            ..base()
        };
        let json = serde_json::to_value(&req).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "InstanceId": "emr-abc12345", "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600,
                "ClientToken": "tok", "TaskCount": 2,
                "Tags": [{"TagKey": "owner", "TagValue": "autoscaler"}],
                "YarnNodeLabel": "burst", "ZoneId": 100003, "StartServiceAfterScaleOut": "true"
            })
        );
    }

    #[test]
    fn preflight_refuses_what_the_api_rejects() {
        let cases: Vec<(&str, ScaleOutInstanceRequest, &str)> = vec![
            (
                "resource type",
                ScaleOutInstanceRequest {
                    hardware_resource_type: Some("CVM".into()),
                    ..base()
                },
                "InvalidParameterValue",
            ),
            (
                "zero",
                ScaleOutInstanceRequest {
                    task_count: Some(0),
                    ..base()
                },
                "InvalidParameter.InvalidCount",
            ),
            (
                "none",
                ScaleOutInstanceRequest {
                    task_count: None,
                    ..base()
                },
                "InvalidParameter.InvalidCount",
            ),
            (
                "21 task",
                ScaleOutInstanceRequest {
                    task_count: Some(21),
                    ..base()
                },
                "InvalidParameter.InvalidTaskCount",
            ),
            (
                "21 core",
                ScaleOutInstanceRequest {
                    task_count: None,
                    core_count: Some(21),
                    ..base()
                },
                "InvalidParameter.InvalidCoreCount",
            ),
            (
                "both",
                ScaleOutInstanceRequest {
                    core_count: Some(1),
                    ..base()
                },
                "InvalidParameter.InvalidCountNum",
            ),
            (
                "paymode0 m",
                ScaleOutInstanceRequest {
                    time_unit: "m".into(),
                    ..base()
                },
                "InvalidParameter.InvalidTimeUnit",
            ),
            (
                "paymode0 span",
                ScaleOutInstanceRequest {
                    time_span: 60,
                    ..base()
                },
                "InvalidParameter.InvalidTimeSpan",
            ),
            (
                "paymode1 s",
                ScaleOutInstanceRequest {
                    pay_mode: 1,
                    ..base()
                },
                "InvalidParameter.InvalidTimeUnit",
            ),
            (
                "paymode 7",
                ScaleOutInstanceRequest {
                    pay_mode: 7,
                    ..base()
                },
                "InvalidParameter.InvalidPaymode",
            ),
            (
                "soft+unnecessary",
                ScaleOutInstanceRequest {
                    soft_deploy_info: Some(vec![1]),
                    service_node_info: Some(vec![7]),
                    un_necessary_node_list: Some(vec![3]),
                    ..base()
                },
                "InvalidParameter.InvalidSoftDeployInfo",
            ),
            (
                "service+unnecessary",
                ScaleOutInstanceRequest {
                    service_node_info: Some(vec![7]),
                    un_necessary_node_list: Some(vec![3]),
                    ..base()
                },
                "InvalidParameter.InvalidSoftDeployInfo",
            ),
            (
                "two groups",
                ScaleOutInstanceRequest {
                    disaster_recover_group_ids: Some(vec!["ps-1".into(), "ps-2".into()]),
                    ..base()
                },
                "InvalidParameter",
            ),
            (
                "bad id",
                ScaleOutInstanceRequest {
                    instance_id: "emr-ABC".into(),
                    ..base()
                },
                "InvalidParameter.InvalidClusterId",
            ),
            (
                "short id",
                ScaleOutInstanceRequest {
                    instance_id: "emr-abc123".into(),
                    ..base()
                },
                "InvalidParameter.InvalidClusterId",
            ),
        ];
        for (name, req, code) in cases {
            let err = req.preflight().expect_err(name);
            assert_eq!(err.code, code, "{name}: {err}");
        }
        base().preflight().unwrap();
        ScaleOutInstanceRequest {
            task_count: Some(20),
            ..base()
        }
        .preflight()
        .unwrap();
        ScaleOutInstanceRequest {
            pay_mode: 1,
            time_unit: "m".into(),
            time_span: 1,
            ..base()
        }
        .preflight()
        .unwrap();
        ScaleOutInstanceRequest {
            soft_deploy_info: Some(vec![1]),
            service_node_info: Some(vec![7]),
            disaster_recover_group_ids: Some(vec!["ps-1".into()]),
            ..base()
        }
        .preflight()
        .unwrap();
    }

    #[test]
    fn responses_tolerate_nulls_and_unknown_fields() {
        let r: ScaleOutInstanceResponse = serde_json::from_str(
            r#"{"InstanceId":"emr-cf00laqw","DealNames":null,"ClientToken":null,"FlowId":12,"BillId":"b","TraceId":"t","RequestId":"r","New":1}"#,
        )
        .unwrap();
        assert_eq!(
            (r.flow_id, r.deal_names, r.client_token),
            (Some(12), None, None)
        );
        let d: DescribeInstancesResponse = serde_json::from_str(
            r#"{"TotalCnt":2,"ClusterList":[{"ClusterId":"emr-aaaaaaaa","Status":2,"Config":{"TaskNodeSize":3}},{"ClusterId":"emr-bbbbbbbb","Status":4,"Config":null}],"RequestId":"r"}"#,
        )
        .unwrap();
        let list = d.cluster_list.unwrap();
        assert_eq!(list[0].task_nodes(), Some(3));
        assert_eq!(list[1].task_nodes(), None);
        assert_eq!(FlowState::from_code(3), FlowState::Done);
        assert_eq!(FlowState::from_code(-1), FlowState::Failed);
    }

    #[test]
    fn cos_secret_key_is_not_shown_by_debug() {
        let s = PreExecuteFileSettings {
            cos_secret_key: Some("cos-secret-value".into()),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("cos-secret-value"));
    }

    fn terminate() -> TerminateClusterNodesRequest {
        TerminateClusterNodesRequest::graceful(
            "emr-abc12345",
            vec!["ins-aaaaaaaa".into(), "ins-bbbbbbbb".into()],
            std::time::Duration::from_secs(600),
        )
    }

    #[test]
    fn terminate_preflight_refuses_what_the_api_or_the_product_would_not_accept() {
        assert_eq!(terminate().preflight(), Ok(()));
        let body = serde_json::to_value(terminate()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "InstanceId": "emr-abc12345",
                "CvmInstanceIds": ["ins-aaaaaaaa", "ins-bbbbbbbb"],
                "NodeFlag": "TASK",
                "GraceDownFlag": true,
                "GraceDownTime": 600
            })
        );
        let cases: Vec<(&str, TerminateClusterNodesRequest)> = vec![
            (
                "InvalidParameter.InvalidClusterId",
                TerminateClusterNodesRequest {
                    instance_id: "emr-ABC".into(),
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidCvmInstanceIds",
                TerminateClusterNodesRequest {
                    cvm_instance_ids: vec![],
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidCvmInstanceIds",
                TerminateClusterNodesRequest {
                    cvm_instance_ids: vec![" ".into()],
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidCvmInstanceIds",
                TerminateClusterNodesRequest {
                    cvm_instance_ids: vec!["ins-a".into(), "ins-a".into()],
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidNodeFlag",
                TerminateClusterNodesRequest {
                    node_flag: "CORE".into(),
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidGraceDownFlag",
                TerminateClusterNodesRequest {
                    grace_down_flag: false,
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidGraceDownTime",
                TerminateClusterNodesRequest {
                    grace_down_time: 59,
                    ..terminate()
                },
            ),
            (
                "InvalidParameter.InvalidGraceDownTime",
                TerminateClusterNodesRequest {
                    grace_down_time: 1801,
                    ..terminate()
                },
            ),
        ];
        for (code, request) in cases {
            let e = request.preflight().expect_err(code);
            assert_eq!(e.code, code, "{request:?}: {e}");
        }
        for edge in [60, 1800] {
            let r = TerminateClusterNodesRequest {
                grace_down_time: edge,
                ..terminate()
            };
            assert_eq!(r.preflight(), Ok(()), "{edge} s is accepted");
        }
    }

    #[test]
    fn node_lists_tolerate_nulls_and_missing_fields() {
        let r: DescribeClusterNodesResponse = serde_json::from_str(
            r#"{"TotalCnt":2,"NodeList":[{"Flag":3,"AutoFlag":0,"Destroyable":1,"DisableApiTermination":false,"ChargeType":0,"OrderNo":"ins-1","Ip":"10.0.0.1","ApplyTime":"2026-12-01 10:00:00","Tags":null,"HardwareResourceType":"host","Spec":"x"},{"OrderNo":"ins-2"}],"RequestId":"r"}"#,
        )
        .unwrap();
        let list = r.node_list.unwrap();
        assert_eq!(list[0].flag, Some(3));
        assert_eq!(list[0].tags, None);
        assert_eq!(
            list[1],
            NodeHardwareInfo {
                order_no: Some("ins-2".into()),
                ..Default::default()
            }
        );
    }

    #[test]
    fn only_enabled_builtin_strategies_count() {
        let answer: DescribeAutoScaleStrategiesResponse = serde_json::from_str(
            r#"{"LoadAutoScaleStrategies":[{"StrategyId":1,"StrategyName":"cpu","StrategyStatus":1},{"StrategyId":2,"StrategyName":"mem","StrategyStatus":3}],
                "TimeBasedAutoScaleStrategies":[{"StrategyId":7,"StrategyStatus":1},{"StrategyId":8,"StrategyName":"night","StrategyStatus":2},{"StrategyId":9,"StrategyName":"weekend","StrategyStatus":3}],
                "RequestId":"r"}"#,
        )
        .unwrap();
        let mut b = BuiltinScaling::default();
        assert!(!b.is_active());
        b.add(&answer);
        b.add(&answer);
        assert_eq!(
            b.enabled,
            vec!["load:cpu".to_string(), "time:#7".to_string()]
        );
        assert!(b.is_active());
        let none: DescribeAutoScaleStrategiesResponse = serde_json::from_str(
            r#"{"LoadAutoScaleStrategies":null,"TimeBasedAutoScaleStrategies":null,"RequestId":"r"}"#,
        )
        .unwrap();
        let mut b = BuiltinScaling::default();
        b.add(&none);
        assert!(!b.is_active());
    }
}
