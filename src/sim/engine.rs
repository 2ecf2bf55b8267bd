//! Simulated clusters, flows and the four EMR actions.
//!
//! The [`Engine`] is plain state with no I/O and no clock of its own: every
//! call takes `now` (the injected simulation clock, which drives flows) and,
//! where ClientTokens matter, `wall` (the real clock, which drives the
//! 5-minute deduplication window). Flows are settled lazily at the start of
//! every call, so the state is a pure function of the calls and the times
//! they were made at; a manual clock makes it fully deterministic.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tracing::info;

use super::SimCluster;
use super::error::ApiError;
use super::fault::FlowOverrides;

/// How long a ClientToken is remembered, by the wall clock.
pub const CLIENT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// The most task or core nodes one `ScaleOutInstance` may add.
pub const MAX_NODES_PER_REQUEST: i64 = 20;
/// The longest ClientToken accepted.
pub const MAX_CLIENT_TOKEN_LEN: usize = 64;

/// Cluster status: running.
pub const STATUS_RUNNING: i64 = 2;
/// Cluster status: scaling out.
pub const STATUS_SCALING_OUT: i64 = 4;
/// Cluster status: the last scale-out failed.
pub const STATUS_SCALE_OUT_FAILED: i64 = 302;

/// Flow status: initialising.
pub const FLOW_INIT: i64 = 0;
/// Flow status: running.
pub const FLOW_RUNNING: i64 = 1;
/// Flow status: done.
pub const FLOW_DONE: i64 = 2;
/// Flow status: failed.
pub const FLOW_FAILED: i64 = -1;

/// The actions the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `ScaleOutInstance`.
    ScaleOutInstance,
    /// `DescribeInstances`.
    DescribeInstances,
    /// `DescribeClusterFlowStatusDetail`.
    DescribeClusterFlowStatusDetail,
    /// `DescribeClusterNodes`.
    DescribeClusterNodes,
}

impl Action {
    /// Every served action.
    pub const ALL: [Action; 4] = [
        Self::ScaleOutInstance,
        Self::DescribeInstances,
        Self::DescribeClusterFlowStatusDetail,
        Self::DescribeClusterNodes,
    ];

    /// The action named by `X-TC-Action`, if served.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The API name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ScaleOutInstance => "ScaleOutInstance",
            Self::DescribeInstances => "DescribeInstances",
            Self::DescribeClusterFlowStatusDetail => "DescribeClusterFlowStatusDetail",
            Self::DescribeClusterNodes => "DescribeClusterNodes",
        }
    }
}

/// A cluster's state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// `emr-...`.
    pub instance_id: String,
    /// 2 running, 4 scaling out, 302 scale-out failed.
    pub status: i64,
    /// Running task nodes (`Config.TaskNodeSize`).
    pub task_nodes: u32,
    /// Running core nodes (`Config.CoreNodeSize`).
    pub core_nodes: u32,
    /// The flow in progress, if any.
    pub current_flow: Option<u64>,
    /// Flows started on this cluster.
    pub flows_started: u64,
    /// Flows that ended failed.
    pub flows_failed: u64,
    /// Task nodes added by finished flows.
    pub task_nodes_added: u64,
    /// Core nodes added by finished flows.
    pub core_nodes_added: u64,
    /// Whether `DescribeInstances` answers `"Config": null` for it.
    pub config_null: bool,
}

/// A flow's state at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSnapshot {
    /// The FlowId.
    pub flow_id: u64,
    /// The cluster it runs on.
    pub instance_id: String,
    /// When it started (simulation clock).
    pub started_at: DateTime<Utc>,
    /// How long it takes (simulation clock).
    pub duration: Duration,
    /// Task nodes it adds on success.
    pub task_count: u32,
    /// Core nodes it adds on success.
    pub core_count: u32,
    /// `FlowTotalStatus`: 0 init, 1 running, 2 done, -1 failed.
    pub total_status: i64,
    /// `FlowTotalProgress`, 0.0 to 1.0.
    pub progress: f64,
}

/// The successful result of an action, before the envelope is added.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ActionOk {
    /// The `Response` fields, without `RequestId`.
    pub(crate) body: Map<String, Value>,
    /// The FlowId answered by `ScaleOutInstance`.
    pub(crate) flow_id: Option<u64>,
    /// The answer was replayed for a repeated ClientToken.
    pub(crate) deduplicated: bool,
}

impl ActionOk {
    fn plain(body: Value) -> Self {
        Self {
            body: into_map(body),
            flow_id: None,
            deduplicated: false,
        }
    }
}

/// Per-call inputs from the server that are not request parameters.
pub(crate) struct Hooks<'a> {
    /// Gives the flow faults for a flow about to start on the named cluster.
    pub(crate) flow_overrides: &'a mut dyn FnMut(&str) -> FlowOverrides,
    /// `DescribeInstances` answers `"Config": null` for these clusters
    /// (`Some(None)`: for every listed cluster).
    pub(crate) null_config: Option<Option<String>>,
}

#[derive(Debug, Clone)]
struct Cluster {
    id: String,
    serial: u64,
    created: DateTime<Utc>,
    status: i64,
    task_nodes: u32,
    core_nodes: u32,
    flow: Option<u64>,
    flow_duration: Option<Duration>,
    config_null: bool,
    flows_started: u64,
    flows_failed: u64,
    task_added: u64,
    core_added: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FlowState {
    Running,
    Done,
    Failed,
}

#[derive(Debug, Clone)]
struct Flow {
    id: u64,
    instance_id: String,
    started: DateTime<Utc>,
    duration: Duration,
    fail: bool,
    task_count: u32,
    core_count: u32,
    state: FlowState,
}

impl Flow {
    fn end(&self) -> DateTime<Utc> {
        let d = chrono::Duration::from_std(self.duration).unwrap_or(chrono::Duration::MAX);
        self.started
            .checked_add_signed(d)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn status(&self, now: DateTime<Utc>) -> (i64, f64) {
        match self.state {
            FlowState::Done => (FLOW_DONE, 1.0),
            FlowState::Failed => (FLOW_FAILED, 1.0),
            FlowState::Running => {
                let elapsed = (now - self.started).to_std().unwrap_or(Duration::ZERO);
                let total = self.duration.as_secs_f64();
                let fraction = if total > 0.0 {
                    (elapsed.as_secs_f64() / total).clamp(0.0, 0.99)
                } else {
                    0.99
                };
                let status = if fraction < 0.05 {
                    FLOW_INIT
                } else {
                    FLOW_RUNNING
                };
                (status, (fraction * 100.0).floor() / 100.0)
            }
        }
    }

    fn snapshot(&self, now: DateTime<Utc>) -> FlowSnapshot {
        let (total_status, progress) = self.status(now);
        FlowSnapshot {
            flow_id: self.id,
            instance_id: self.instance_id.clone(),
            started_at: self.started,
            duration: self.duration,
            task_count: self.task_count,
            core_count: self.core_count,
            total_status,
            progress,
        }
    }
}

#[derive(Debug, Clone)]
struct TokenRecord {
    body: Map<String, Value>,
    flow_id: u64,
    at: DateTime<Utc>,
}

/// The simulated EMR control plane.
#[derive(Debug)]
pub(crate) struct Engine {
    clusters: Vec<Cluster>,
    flows: HashMap<u64, Flow>,
    next_flow_id: u64,
    tokens: HashMap<String, TokenRecord>,
    default_duration: Duration,
    /// Check the running flow before the ClientToken, as some API servers
    /// do: a retry of an executed order then meets InstanceInProcess.
    pub(crate) flow_before_token: bool,
}

impl Engine {
    /// The clusters as configured, created at `now`.
    pub(crate) fn new(
        clusters: &[SimCluster],
        default_duration: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        let clusters = clusters
            .iter()
            .zip(1u64..)
            .map(|(c, serial)| Cluster {
                id: c.instance_id.clone(),
                serial,
                created: now,
                status: STATUS_RUNNING,
                task_nodes: c.task_nodes,
                core_nodes: c.core_nodes,
                flow: None,
                flow_duration: c.flow_duration,
                config_null: false,
                flows_started: 0,
                flows_failed: 0,
                task_added: 0,
                core_added: 0,
            })
            .collect();
        Self {
            clusters,
            flows: HashMap::new(),
            next_flow_id: 100_001,
            tokens: HashMap::new(),
            default_duration,
            flow_before_token: false,
        }
    }

    /// Runs `action` with `params` at simulation time `now` and wall time `wall`.
    pub(crate) fn execute(
        &mut self,
        action: Action,
        params: &Map<String, Value>,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        self.settle(now);
        let p = Params(params);
        match action {
            Action::ScaleOutInstance => self.scale_out(&p, now, wall, hooks),
            Action::DescribeInstances => self.describe_instances(&p, hooks),
            Action::DescribeClusterFlowStatusDetail => self.flow_status(&p, now),
            Action::DescribeClusterNodes => self.describe_nodes(&p),
        }
    }

    /// Finishes every flow whose time has come.
    pub(crate) fn settle(&mut self, now: DateTime<Utc>) {
        for cluster in &mut self.clusters {
            let Some(flow) = cluster.flow.and_then(|id| self.flows.get_mut(&id)) else {
                continue;
            };
            if now < flow.end() {
                continue;
            }
            cluster.flow = None;
            if flow.fail {
                flow.state = FlowState::Failed;
                cluster.status = STATUS_SCALE_OUT_FAILED;
                cluster.flows_failed += 1;
                info!(message = "Flow failed.", cluster = %cluster.id, flow_id = flow.id);
            } else {
                flow.state = FlowState::Done;
                cluster.status = STATUS_RUNNING;
                cluster.task_nodes = cluster.task_nodes.saturating_add(flow.task_count);
                cluster.core_nodes = cluster.core_nodes.saturating_add(flow.core_count);
                cluster.task_added += u64::from(flow.task_count);
                cluster.core_added += u64::from(flow.core_count);
                info!(
                    message = "Flow done.",
                    cluster = %cluster.id,
                    flow_id = flow.id,
                    task_nodes = cluster.task_nodes,
                    core_nodes = cluster.core_nodes
                );
            }
        }
    }

    fn cluster_index(&self, id: &str) -> Result<usize, ApiError> {
        self.clusters
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| ApiError::ClusterNotFound(id.to_owned()))
    }

    fn scale_out(
        &mut self,
        p: &Params<'_>,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let pay_mode = p.required_int("PayMode")?;
        let time_unit = p.required_str("TimeUnit")?;
        let time_span = p.required_int("TimeSpan")?;
        let token = p.str("ClientToken")?;
        let task = p.int("TaskCount")?;
        let core = p.int("CoreCount")?;
        validate_optional_fields(p)?;
        let index = self.cluster_index(id)?;

        let (task_count, core_count) = match (task, core) {
            (Some(n), None) => (node_count(n, ApiError::InvalidTaskCount)?, 0),
            (None, Some(n)) => (0, node_count(n, ApiError::InvalidCoreCount)?),
            _ => return Err(ApiError::InvalidCountNum),
        };
        let unit_ok = match pay_mode {
            0 => time_unit == "s",
            1 => time_unit == "m",
            other => return Err(ApiError::InvalidPaymode(other)),
        };
        if !unit_ok {
            return Err(ApiError::InvalidTimeUnit {
                pay_mode,
                time_unit: time_unit.to_owned(),
            });
        }
        if time_span <= 0 {
            return Err(ApiError::InvalidTimeSpan(time_span));
        }
        if token.is_some_and(|t| t.is_empty() || t.len() > MAX_CLIENT_TOKEN_LEN) {
            return Err(ApiError::InvalidClientToken);
        }

        if self.flow_before_token
            && let Some(flow_id) = self.clusters[index].flow
        {
            return Err(ApiError::InstanceInProcess {
                instance_id: id.to_owned(),
                flow_id,
            });
        }
        let ttl = chrono::Duration::from_std(CLIENT_TOKEN_TTL).unwrap_or(chrono::Duration::MAX);
        self.tokens.retain(|_, r| wall - r.at <= ttl);
        if let Some(record) = token.and_then(|t| self.tokens.get(t)) {
            info!(message = "ClientToken replayed.", cluster = %id, flow_id = record.flow_id);
            return Ok(ActionOk {
                body: record.body.clone(),
                flow_id: Some(record.flow_id),
                deduplicated: true,
            });
        }

        let cluster = &self.clusters[index];
        if let Some(flow_id) = cluster.flow {
            return Err(ApiError::InstanceInProcess {
                instance_id: id.to_owned(),
                flow_id,
            });
        }

        let overrides = (hooks.flow_overrides)(id);
        let flow_id = self.next_flow_id;
        self.next_flow_id += 1;
        let cluster = &mut self.clusters[index];
        let duration = overrides
            .duration
            .or(cluster.flow_duration)
            .unwrap_or(self.default_duration);
        cluster.flow = Some(flow_id);
        cluster.status = STATUS_SCALING_OUT;
        cluster.flows_started += 1;
        self.flows.insert(
            flow_id,
            Flow {
                id: flow_id,
                instance_id: id.to_owned(),
                started: now,
                duration,
                fail: overrides.fail,
                task_count,
                core_count,
                state: FlowState::Running,
            },
        );
        info!(
            message = "Flow started.",
            cluster = %id,
            flow_id,
            task_count,
            core_count,
            duration_secs = duration.as_secs_f64(),
            fails = overrides.fail
        );

        let body = into_map(json!({
            "InstanceId": id,
            "DealNames": [format!("deal-{flow_id}")],
            "ClientToken": token,
            "FlowId": flow_id,
            "BillId": format!("bill-{}", uuid::Uuid::new_v4().simple()),
            "TraceId": uuid::Uuid::new_v4().to_string(),
        }));
        if let Some(t) = token {
            self.tokens.insert(
                t.to_owned(),
                TokenRecord {
                    body: body.clone(),
                    flow_id,
                    at: wall,
                },
            );
        }
        Ok(ActionOk {
            body,
            flow_id: Some(flow_id),
            deduplicated: false,
        })
    }

    fn describe_instances(&self, p: &Params<'_>, hooks: &Hooks<'_>) -> Result<ActionOk, ApiError> {
        let strategy = p.required_str("DisplayStrategy")?;
        if ![
            "clusterList",
            "monitorManage",
            "cloudResourceManage",
            "emrCloudManage",
        ]
        .contains(&strategy)
        {
            return Err(ApiError::InvalidParameter(format!(
                "DisplayStrategy {strategy:?} is not supported"
            )));
        }
        let ids = p.str_list("InstanceIds")?.unwrap_or_default();
        p.int("ProjectId")?;
        let (offset, limit) = p.page(10)?;

        let listed: Vec<&Cluster> = self
            .clusters
            .iter()
            .filter(|c| ids.is_empty() || ids.contains(&c.id))
            .collect();
        let items: Vec<Value> = listed
            .iter()
            .skip(offset)
            .take(limit)
            .map(|c| {
                let null = c.config_null
                    || hooks
                        .null_config
                        .as_ref()
                        .is_some_and(|only| only.as_ref().is_none_or(|id| *id == c.id));
                let config = if null {
                    Value::Null
                } else {
                    json!({
                        "TaskNodeSize": c.task_nodes,
                        "CoreNodeSize": c.core_nodes,
                        "MasterNodeSize": 1,
                        "CommonNodeSize": 0,
                        "RouterNodeSize": 0,
                    })
                };
                json!({
                    "Id": c.serial,
                    "ClusterId": c.id,
                    "ClusterName": c.id,
                    "Status": c.status,
                    "StatusDesc": status_desc(c.status),
                    "ProjectId": 0,
                    "Zone": "ap-guangzhou-3",
                    "AddTime": c.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                    "Config": config,
                })
            })
            .collect();
        Ok(ActionOk::plain(json!({
            "TotalCnt": listed.len(),
            "ClusterList": items,
            "Tags": [],
        })))
    }

    fn flow_status(&self, p: &Params<'_>, now: DateTime<Utc>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let param = p.required_object("FlowParam")?;
        let fp = Params(param);
        let key = fp.required_str("FKey")?;
        let value = fp.required_str("FValue")?;
        p.bool("NeedExtraDetail")?;
        if key != "FlowId" {
            return Err(ApiError::InvalidParameter(format!(
                "FlowParam.FKey {key:?} is not supported"
            )));
        }
        self.cluster_index(id)?;
        let flow = value
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|fid| self.flows.get(&fid))
            .filter(|f| f.instance_id == id)
            .ok_or_else(|| ApiError::InvalidJobFlow(value.to_owned()))?;
        let (status, progress) = flow.status(now);
        let name = if flow.task_count > 0 {
            "Scale Out Task"
        } else {
            "Scale Out Core"
        };
        Ok(ActionOk::plain(json!({
            "StageDetails": null,
            "FlowDesc": null,
            "FlowName": name,
            "FlowTotalProgress": progress,
            "FlowTotalStatus": status,
            "FlowExtraDetail": null,
        })))
    }

    fn describe_nodes(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let flag = p.required_str("NodeFlag")?;
        let (offset, limit) = p.page(100)?;
        let c = &self.clusters[self.cluster_index(id)?];
        let groups: &[(i64, u32)] = &[(1, 1), (2, c.core_nodes), (3, c.task_nodes)];
        let wanted: &[i64] = match flag {
            "all" => &[1, 2, 3],
            "master" => &[1],
            "core" => &[2],
            "task" => &[3],
            "router" => &[],
            other => return Err(ApiError::InvalidNodeType(other.to_owned())),
        };
        let nodes = groups
            .iter()
            .filter(|(f, _)| wanted.contains(f))
            .flat_map(|&(f, n)| (0..n).map(move |i| (f, i)));
        let total: u64 = groups
            .iter()
            .filter(|(f, _)| wanted.contains(f))
            .map(|&(_, n)| u64::from(n))
            .sum();
        let list: Vec<Value> = nodes
            .skip(offset)
            .take(limit)
            .map(|(f, i)| {
                json!({
                    "AppId": 1_250_000_000u64,
                    "SerialNo": format!("ins-{}-{f}-{i}", c.serial),
                    "OrderNo": format!("emr-vm-{}{f}{i:05}", c.serial),
                    "Flag": f,
                    "Spec": "CVM.S5",
                    "CpuNum": 8,
                    "MemSize": 32768,
                    "MemDesc": "32GB",
                    "ZoneId": 100_003,
                    "Ip": format!("10.{}.{f}.{}", c.serial % 256, i % 256),
                    "IsAutoScale": 0,
                })
            })
            .collect();
        Ok(ActionOk::plain(json!({
            "TotalCnt": total,
            "NodeList": list,
            "TagKeys": [],
            "HardwareResourceTypeList": ["host"],
        })))
    }

    /// A snapshot of one cluster, after settling at `now`.
    pub(crate) fn cluster(&mut self, id: &str, now: DateTime<Utc>) -> Option<ClusterSnapshot> {
        self.settle(now);
        self.clusters
            .iter()
            .find(|c| c.id == id)
            .map(|c| ClusterSnapshot {
                instance_id: c.id.clone(),
                status: c.status,
                task_nodes: c.task_nodes,
                core_nodes: c.core_nodes,
                current_flow: c.flow,
                flows_started: c.flows_started,
                flows_failed: c.flows_failed,
                task_nodes_added: c.task_added,
                core_nodes_added: c.core_added,
                config_null: c.config_null,
            })
    }

    /// Every cluster id, in configuration order.
    pub(crate) fn cluster_ids(&self) -> Vec<String> {
        self.clusters.iter().map(|c| c.id.clone()).collect()
    }

    /// A snapshot of one flow, after settling at `now`.
    pub(crate) fn flow(&mut self, flow_id: u64, now: DateTime<Utc>) -> Option<FlowSnapshot> {
        self.settle(now);
        self.flows.get(&flow_id).map(|f| f.snapshot(now))
    }

    /// Changes a cluster in place; false when it does not exist.
    pub(crate) fn modify(&mut self, id: &str, change: impl FnOnce(&mut ClusterKnobs<'_>)) -> bool {
        let Some(c) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return false;
        };
        change(&mut ClusterKnobs {
            task_nodes: &mut c.task_nodes,
            core_nodes: &mut c.core_nodes,
            flow_duration: &mut c.flow_duration,
            config_null: &mut c.config_null,
        });
        true
    }
}

/// The parts of a cluster a test may set directly.
pub(crate) struct ClusterKnobs<'a> {
    pub(crate) task_nodes: &'a mut u32,
    pub(crate) core_nodes: &'a mut u32,
    pub(crate) flow_duration: &'a mut Option<Duration>,
    pub(crate) config_null: &'a mut bool,
}

/// The text the console shows for a status.
fn status_desc(status: i64) -> &'static str {
    match status {
        STATUS_RUNNING => "running",
        STATUS_SCALING_OUT => "scaling out",
        STATUS_SCALE_OUT_FAILED => "scale-out failed",
        _ => "unknown",
    }
}

/// Checks a node count: 1 to 20.
fn node_count(n: i64, too_many: fn(i64) -> ApiError) -> Result<u32, ApiError> {
    if n <= 0 {
        return Err(ApiError::InvalidCount);
    }
    if n > MAX_NODES_PER_REQUEST {
        return Err(too_many(n));
    }
    u32::try_from(n).map_err(|_| too_many(n))
}

/// Checks the optional `ScaleOutInstance` fields that have rules of their own.
fn validate_optional_fields(p: &Params<'_>) -> Result<(), ApiError> {
    if let Some(tags) = p.array("Tags")? {
        for tag in tags {
            let ok = tag.get("TagKey").is_some_and(Value::is_string)
                && tag.get("TagValue").is_none_or(Value::is_string);
            if !ok {
                return Err(ApiError::InvalidParameter(
                    "each of Tags must be an object with a string TagKey and TagValue".into(),
                ));
            }
        }
    }
    if p.array("DisasterRecoverGroupIds")?
        .is_some_and(|g| g.len() > 1)
    {
        return Err(ApiError::InvalidParameter(
            "DisasterRecoverGroupIds holds at most one item".into(),
        ));
    }
    let soft = p.array("SoftDeployInfo")?.is_some();
    let service = p.array("ServiceNodeInfo")?.is_some();
    let unnecessary = p.array("UnNecessaryNodeList")?.is_some();
    if (soft || service) && unnecessary {
        return Err(ApiError::InvalidParameter(
            "SoftDeployInfo and ServiceNodeInfo exclude UnNecessaryNodeList".into(),
        ));
    }
    p.int("RouterCount")?;
    Ok(())
}

/// Wraps a JSON value that is known to be an object.
fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Typed access to request parameters. JSON `null` counts as absent.
struct Params<'a>(&'a Map<String, Value>);

impl<'a> Params<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn invalid(name: &str, what: &str) -> ApiError {
        ApiError::InvalidParameter(format!("{name} must be {what}"))
    }

    fn str(&self, name: &str) -> Result<Option<&'a str>, ApiError> {
        self.get(name)
            .map(|v| v.as_str().ok_or_else(|| Self::invalid(name, "a string")))
            .transpose()
    }

    fn required_str(&self, name: &str) -> Result<&'a str, ApiError> {
        self.str(name)?
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))
    }

    fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| v.as_i64().ok_or_else(|| Self::invalid(name, "an integer")))
            .transpose()
    }

    fn required_int(&self, name: &str) -> Result<i64, ApiError> {
        self.int(name)?
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name)
            .map(|v| v.as_bool().ok_or_else(|| Self::invalid(name, "a boolean")))
            .transpose()
    }

    fn array(&self, name: &str) -> Result<Option<&'a Vec<Value>>, ApiError> {
        self.get(name)
            .map(|v| v.as_array().ok_or_else(|| Self::invalid(name, "an array")))
            .transpose()
    }

    fn required_object(&self, name: &str) -> Result<&'a Map<String, Value>, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::MissingParameter(name.to_owned()))?
            .as_object()
            .ok_or_else(|| Self::invalid(name, "an object"))
    }

    fn str_list(&self, name: &str) -> Result<Option<Vec<String>>, ApiError> {
        let Some(items) = self.array(name)? else {
            return Ok(None);
        };
        items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| Self::invalid(name, "an array of strings"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `Offset` (default 0) and `Limit` (default `default_limit`, 1 to 100).
    fn page(&self, default_limit: usize) -> Result<(usize, usize), ApiError> {
        let offset = self.int("Offset")?.unwrap_or(0);
        let offset = usize::try_from(offset).map_err(|_| Self::invalid("Offset", "at least 0"))?;
        let limit = match self.int("Limit")? {
            None => default_limit,
            Some(l @ 1..=100) => usize::try_from(l).unwrap_or(default_limit),
            Some(_) => return Err(Self::invalid("Limit", "between 1 and 100")),
        };
        Ok((offset, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "emr-aaaaaaaa";
    const B: &str = "emr-bbbbbbbb";

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid test timestamp")
    }

    fn secs(s: u64) -> chrono::Duration {
        chrono::Duration::seconds(i64::try_from(s).expect("small"))
    }

    fn engine() -> Engine {
        let clusters = [
            SimCluster::new(A).with_task_nodes(2),
            SimCluster::new(B).with_flow_duration(Duration::from_secs(10)),
        ];
        Engine::new(&clusters, Duration::from_secs(60), t0())
    }

    fn params(v: Value) -> Map<String, Value> {
        into_map(v)
    }

    fn run(
        e: &mut Engine,
        action: Action,
        body: Value,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
    ) -> Result<ActionOk, ApiError> {
        run_with(e, action, body, now, wall, FlowOverrides::default())
    }

    fn run_with(
        e: &mut Engine,
        action: Action,
        body: Value,
        now: DateTime<Utc>,
        wall: DateTime<Utc>,
        overrides: FlowOverrides,
    ) -> Result<ActionOk, ApiError> {
        let mut give = |_: &str| overrides;
        let mut hooks = Hooks {
            flow_overrides: &mut give,
            null_config: None,
        };
        e.execute(action, &params(body), now, wall, &mut hooks)
    }

    fn scale(id: &str, task: i64, token: &str) -> Value {
        json!({"InstanceId": id, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": task, "ClientToken": token})
    }

    fn code(r: Result<ActionOk, ApiError>) -> String {
        match r {
            Ok(_) => "ok".into(),
            Err(e) => e.code().to_owned(),
        }
    }

    #[test]
    fn scale_out_validation() {
        let cases = [
            (
                json!({"InstanceId": "emr-zzzzzzzz", "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1}),
                "ResourceNotFound.ClusterNotFound",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600}),
                "InvalidParameter.InvalidCountNum",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "CoreCount": 1}),
                "InvalidParameter.InvalidCountNum",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 0}),
                "InvalidParameter.InvalidCount",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "CoreCount": -2}),
                "InvalidParameter.InvalidCount",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 21}),
                "InvalidParameter.InvalidTaskCount",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "CoreCount": 21}),
                "InvalidParameter.InvalidCoreCount",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "m", "TimeSpan": 1, "TaskCount": 1}),
                "InvalidParameter.InvalidTimeUnit",
            ),
            (
                json!({"InstanceId": A, "PayMode": 1, "TimeUnit": "s", "TimeSpan": 1, "TaskCount": 1}),
                "InvalidParameter.InvalidTimeUnit",
            ),
            (
                json!({"InstanceId": A, "PayMode": 7, "TimeUnit": "s", "TimeSpan": 1, "TaskCount": 1}),
                "InvalidParameter.InvalidPaymode",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 0, "TaskCount": 1}),
                "InvalidParameter.InvalidTimeSpan",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "ClientToken": ""}),
                "InvalidParameter.InvalidClientToken",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": "1"}),
                "InvalidParameter",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "Tags": [{"Key": "a"}]}),
                "InvalidParameter",
            ),
            (
                json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TaskCount": 1}),
                "MissingParameter",
            ),
            (
                json!({"PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1}),
                "MissingParameter",
            ),
            (
                json!({"InstanceId": A, "PayMode": 1, "TimeUnit": "m", "TimeSpan": 1, "CoreCount": 20, "Tags": [{"TagKey": "a", "TagValue": "b"}], "YarnNodeLabel": "x"}),
                "ok",
            ),
        ];
        for (body, want) in cases {
            let mut e = engine();
            let got = code(run(
                &mut e,
                Action::ScaleOutInstance,
                body.clone(),
                t0(),
                t0(),
            ));
            assert_eq!(got, want, "body {body}");
        }
    }

    #[test]
    fn flow_adds_nodes_when_it_completes() {
        let mut e = engine();
        let ok = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 3, "t1"),
            t0(),
            t0(),
        )
        .expect("starts");
        let flow_id = ok.flow_id.expect("flow id");
        assert_eq!(ok.body["InstanceId"], A);
        assert_eq!(ok.body["ClientToken"], "t1");
        assert_eq!(
            e.cluster(A, t0()).map(|c| (c.status, c.task_nodes)),
            Some((4, 2))
        );
        assert_eq!(
            e.flow(flow_id, t0() + secs(30))
                .map(|f| (f.total_status, f.progress)),
            Some((1, 0.5))
        );
        assert_eq!(e.cluster(A, t0() + secs(59)).map(|c| c.task_nodes), Some(2));
        let done = e.cluster(A, t0() + secs(60)).expect("cluster");
        assert_eq!(
            (done.status, done.task_nodes, done.current_flow),
            (2, 5, None)
        );
        assert_eq!(
            e.flow(flow_id, t0() + secs(61)).map(|f| f.total_status),
            Some(FLOW_DONE)
        );
    }

    #[test]
    fn client_token_replays_within_five_wall_minutes_only() {
        let mut e = engine();
        let first = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 3, "tok"),
            t0(),
            t0(),
        )
        .expect("starts");
        // Same token while the flow runs: replay, not busy.
        let again = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 3, "tok"),
            t0(),
            t0() + secs(299),
        )
        .expect("replays");
        assert!(again.deduplicated);
        assert_eq!(again.body, first.body);
        // Also after the flow finished: no second flow.
        let later = t0() + secs(120);
        let replay = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 3, "tok"),
            later,
            t0() + secs(300),
        )
        .expect("replays");
        assert_eq!(replay.flow_id, first.flow_id);
        assert_eq!(
            e.cluster(A, later).map(|c| (c.task_nodes, c.flows_started)),
            Some((5, 1))
        );
        // Past the window (wall clock), the token is new again.
        let fresh = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 3, "tok"),
            later,
            t0() + secs(301),
        )
        .expect("starts");
        assert!(!fresh.deduplicated);
        assert_ne!(fresh.flow_id, first.flow_id);
    }

    #[test]
    fn busy_cluster_refuses_new_tokens() {
        let mut e = engine();
        run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 1, "a"),
            t0(),
            t0(),
        )
        .expect("starts");
        let busy = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 1, "b"),
            t0() + secs(10),
            t0(),
        );
        assert_eq!(code(busy), "ResourceInUse.InstanceInProcess");
        // The refused token was not remembered: it works once the flow is done.
        let ok = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 1, "b"),
            t0() + secs(60),
            t0(),
        );
        assert!(ok.is_ok_and(|r| !r.deduplicated));
        // The other cluster is independent.
        assert_eq!(
            code(run(
                &mut e,
                Action::ScaleOutInstance,
                scale(B, 1, "c"),
                t0(),
                t0()
            )),
            "ok"
        );
    }

    #[test]
    fn flow_faults_slow_and_fail() {
        let mut e = engine();
        let slow = FlowOverrides {
            duration: Some(Duration::from_secs(500)),
            fail: true,
        };
        let ok = run_with(
            &mut e,
            Action::ScaleOutInstance,
            scale(B, 4, "x"),
            t0(),
            t0(),
            slow,
        )
        .expect("starts");
        let flow_id = ok.flow_id.expect("flow id");
        assert_eq!(
            e.cluster(B, t0() + secs(499)).map(|c| c.status),
            Some(STATUS_SCALING_OUT)
        );
        let failed = e.cluster(B, t0() + secs(500)).expect("cluster");
        assert_eq!(
            (failed.status, failed.task_nodes, failed.flows_failed),
            (STATUS_SCALE_OUT_FAILED, 0, 1)
        );
        assert_eq!(
            e.flow(flow_id, t0() + secs(500)).map(|f| f.total_status),
            Some(FLOW_FAILED)
        );
        // A failed cluster can scale out again; B's own duration is 10 s.
        run(
            &mut e,
            Action::ScaleOutInstance,
            scale(B, 4, "y"),
            t0() + secs(600),
            t0(),
        )
        .expect("starts");
        assert_eq!(
            e.cluster(B, t0() + secs(610))
                .map(|c| (c.status, c.task_nodes)),
            Some((2, 4))
        );
    }

    #[test]
    fn describe_instances_lists_known_ids_with_paging() {
        let mut e = engine();
        let body = json!({"DisplayStrategy": "clusterList", "InstanceIds": [B, "emr-nope0000", A], "ProjectId": -1});
        let ok = run(&mut e, Action::DescribeInstances, body, t0(), t0()).expect("describes");
        assert_eq!(ok.body["TotalCnt"], 2);
        assert_eq!(ok.body["ClusterList"][0]["ClusterId"], A);
        assert_eq!(ok.body["ClusterList"][0]["Config"]["TaskNodeSize"], 2);
        let page = json!({"DisplayStrategy": "clusterList", "Offset": 1, "Limit": 1});
        let ok = run(&mut e, Action::DescribeInstances, page, t0(), t0()).expect("describes");
        assert_eq!(
            (
                ok.body["TotalCnt"].clone(),
                ok.body["ClusterList"][0]["ClusterId"].clone()
            ),
            (json!(2), json!(B))
        );
        assert_eq!(
            code(run(
                &mut e,
                Action::DescribeInstances,
                json!({}),
                t0(),
                t0()
            )),
            "MissingParameter"
        );
        let bad_limit = json!({"DisplayStrategy": "clusterList", "Limit": 0});
        assert_eq!(
            code(run(
                &mut e,
                Action::DescribeInstances,
                bad_limit,
                t0(),
                t0()
            )),
            "InvalidParameter"
        );
    }

    #[test]
    fn null_config_hook_and_knob() {
        let mut e = engine();
        let mut none = |_: &str| FlowOverrides::default();
        let mut hooks = Hooks {
            flow_overrides: &mut none,
            null_config: Some(Some(B.to_owned())),
        };
        let body = params(json!({"DisplayStrategy": "clusterList"}));
        let ok = e
            .execute(Action::DescribeInstances, &body, t0(), t0(), &mut hooks)
            .expect("describes");
        assert!(ok.body["ClusterList"][0]["Config"].is_object());
        assert!(ok.body["ClusterList"][1]["Config"].is_null());
        assert!(e.modify(A, |k| *k.config_null = true));
        assert!(!e.modify("emr-nope0000", |k| *k.config_null = true));
        hooks.null_config = None;
        let ok = e
            .execute(Action::DescribeInstances, &body, t0(), t0(), &mut hooks)
            .expect("describes");
        assert!(ok.body["ClusterList"][0]["Config"].is_null());
    }

    #[test]
    fn flow_status_detail() {
        let mut e = engine();
        let ok = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 1, "t"),
            t0(),
            t0(),
        )
        .expect("starts");
        let fid = ok.flow_id.expect("flow id").to_string();
        let ask = |id: &str, value: Value| json!({"InstanceId": id, "FlowParam": {"FKey": "FlowId", "FValue": value}});
        let status = |r: Result<ActionOk, ApiError>| {
            r.map(|o| o.body["FlowTotalStatus"].clone())
                .map_err(|e| e.code().to_owned())
        };
        assert_eq!(
            status(run(
                &mut e,
                Action::DescribeClusterFlowStatusDetail,
                ask(A, json!(fid)),
                t0(),
                t0()
            )),
            Ok(json!(0))
        );
        let at_end = t0() + secs(60);
        assert_eq!(
            status(run(
                &mut e,
                Action::DescribeClusterFlowStatusDetail,
                ask(A, json!(fid)),
                at_end,
                t0()
            )),
            Ok(json!(2))
        );
        let invalid = Err("InvalidParameter.InvalidJobFlow".to_owned());
        assert_eq!(
            status(run(
                &mut e,
                Action::DescribeClusterFlowStatusDetail,
                ask(A, json!("999")),
                t0(),
                t0()
            )),
            invalid
        );
        assert_eq!(
            status(run(
                &mut e,
                Action::DescribeClusterFlowStatusDetail,
                ask(B, json!(fid)),
                t0(),
                t0()
            )),
            invalid
        );
        assert_eq!(
            status(run(
                &mut e,
                Action::DescribeClusterFlowStatusDetail,
                ask(A, json!("x")),
                t0(),
                t0()
            )),
            invalid
        );
        let numeric = status(run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            ask(A, json!(100_001)),
            t0(),
            t0(),
        ));
        assert_eq!(numeric, Err("InvalidParameter".to_owned()));
    }

    #[test]
    fn describe_nodes_counts_task_nodes() {
        let mut e = engine();
        let ok = run(
            &mut e,
            Action::DescribeClusterNodes,
            json!({"InstanceId": A, "NodeFlag": "task", "Offset": 0, "Limit": 1}),
            t0(),
            t0(),
        )
        .expect("describes");
        assert_eq!(ok.body["TotalCnt"], 2);
        assert_eq!(ok.body["NodeList"].as_array().map(Vec::len), Some(1));
        assert_eq!(ok.body["NodeList"][0]["Flag"], 3);
        let all = run(
            &mut e,
            Action::DescribeClusterNodes,
            json!({"InstanceId": A, "NodeFlag": "all"}),
            t0(),
            t0(),
        )
        .expect("describes");
        assert_eq!(all.body["TotalCnt"], 6);
        let bad = run(
            &mut e,
            Action::DescribeClusterNodes,
            json!({"InstanceId": A, "NodeFlag": "gpu"}),
            t0(),
            t0(),
        );
        assert_eq!(code(bad), "InvalidParameter.InvalidNodeType");
    }
}
