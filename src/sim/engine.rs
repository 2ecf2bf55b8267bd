//! Simulated clusters, their nodes, flows and the seven EMR actions.
//!
//! Each cluster holds a node list (one master, its core and task nodes, and
//! any node a test added): `DescribeClusterNodes` pages through it,
//! `DescribeInstances` counts it, a finished scale-out flow appends to it and
//! a finished scale-in flow (`TerminateClusterNodes`) removes from it.
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
use super::builtin::{self, BuiltinStrategy, StrategyKind};
use super::error::ApiError;
use super::fault::FlowOverrides;
use super::node::{
    NODE_FLAG_COMMON, NODE_FLAG_CORE, NODE_FLAG_MASTER, NODE_FLAG_TASK, NodeIds, SimNode,
};

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
/// Cluster status: scaling in nodes (a `TerminateClusterNodes` flow runs).
pub const STATUS_SCALING_IN: i64 = 24;
/// Cluster status: the last scale-out failed.
pub const STATUS_SCALE_OUT_FAILED: i64 = 302;

/// The `GraceDownTime` range, in seconds, when `GraceDownFlag` is true.
pub const GRACE_DOWN_SECONDS: std::ops::RangeInclusive<i64> = 60..=1800;
/// How long a scale-in flow without graceful decommission takes.
pub const QUICK_SCALE_IN: Duration = Duration::from_secs(1);
/// The largest `DescribeClusterNodes` page (and its default size).
pub const NODES_PAGE_MAX: usize = 100;
/// The only `NodeFlag` `TerminateClusterNodes` accepts.
pub const TERMINATE_NODE_FLAG: &str = "TASK";

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
    /// `TerminateClusterNodes`.
    TerminateClusterNodes,
    /// `DescribeAutoScaleGroupGlobalConf`.
    DescribeAutoScaleGroupGlobalConf,
    /// `DescribeAutoScaleStrategies`.
    DescribeAutoScaleStrategies,
}

impl Action {
    /// Every served action.
    pub const ALL: [Action; 7] = [
        Self::ScaleOutInstance,
        Self::DescribeInstances,
        Self::DescribeClusterFlowStatusDetail,
        Self::DescribeClusterNodes,
        Self::TerminateClusterNodes,
        Self::DescribeAutoScaleGroupGlobalConf,
        Self::DescribeAutoScaleStrategies,
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
            Self::TerminateClusterNodes => "TerminateClusterNodes",
            Self::DescribeAutoScaleGroupGlobalConf => "DescribeAutoScaleGroupGlobalConf",
            Self::DescribeAutoScaleStrategies => "DescribeAutoScaleStrategies",
        }
    }
}

/// A cluster's state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// `emr-...`.
    pub instance_id: String,
    /// 2 running, 4 scaling out, 24 scaling in, 302 scale-out failed.
    pub status: i64,
    /// Listed task nodes, Flag 3 (`Config.TaskNodeSize`).
    pub task_nodes: u32,
    /// Listed core nodes, Flag 2 (`Config.CoreNodeSize`).
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
    /// Machine ids the running scale-in flow will remove (still listed).
    pub removing: Vec<String>,
    /// Nodes removed by finished scale-in flows (not by
    /// [`SimHandle::set_node_gone`](super::SimHandle::set_node_gone) or
    /// [`SimHandle::set_task_nodes`](super::SimHandle::set_task_nodes)).
    pub nodes_removed: u64,
}

/// What a flow does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// A `ScaleOutInstance`: adds nodes when it ends.
    ScaleOut,
    /// A `TerminateClusterNodes`: removes the named nodes when it ends.
    ScaleIn,
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
    /// Scale-out or scale-in.
    pub kind: FlowKind,
    /// Task nodes it adds on success.
    pub task_count: u32,
    /// Core nodes it adds on success.
    pub core_count: u32,
    /// Machine ids it removes on success (scale-in).
    pub removing: Vec<String>,
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
    /// The FlowId answered by `ScaleOutInstance` or `TerminateClusterNodes`.
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
    nodes: Vec<SimNode>,
    flow: Option<u64>,
    flow_duration: Option<Duration>,
    config_null: bool,
    flows_started: u64,
    flows_failed: u64,
    task_added: u64,
    core_added: u64,
    removed: u64,
    strategies: Vec<BuiltinStrategy>,
}

impl Cluster {
    /// How many listed nodes have `flag`.
    fn count(&self, flag: i64) -> u32 {
        let n = self.nodes.iter().filter(|n| n.flag == flag).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn node(&self, order_no: &str) -> Option<&SimNode> {
        self.nodes.iter().find(|n| n.order_no == order_no)
    }
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
    kind: FlowKind,
    task_count: u32,
    core_count: u32,
    /// Tags of the nodes a scale-out adds.
    tags: Option<Vec<(String, String)>>,
    /// `ChargeType` of the nodes a scale-out adds (its PayMode).
    charge_type: i64,
    /// Machine ids a scale-in removes.
    remove: Vec<String>,
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
            kind: self.kind,
            task_count: self.task_count,
            core_count: self.core_count,
            removing: self.remove.clone(),
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
    ids: NodeIds,
    /// Check the running flow before the ClientToken, as some API servers
    /// do: a retry of an executed order then meets InstanceInProcess.
    pub(crate) flow_before_token: bool,
}

impl Engine {
    /// The clusters as configured, created at `now`.
    ///
    /// Each gets one master node and its core nodes (ApplyTime a day before
    /// `now`), its task nodes (ApplyTime one minute apart, the last a minute
    /// before `now`, so the list runs oldest first), then its explicit nodes
    /// (ApplyTime `now` unless set). Ids the explicit nodes carry are
    /// reserved first, so generated ids never collide with them.
    pub(crate) fn new(
        clusters: &[SimCluster],
        default_duration: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        let mut ids = NodeIds::default();
        for node in clusters.iter().flat_map(|c| &c.nodes) {
            ids.reserve(node);
        }
        let day_ago = now - chrono::Duration::days(1);
        let clusters = clusters
            .iter()
            .zip(1u64..)
            .map(|(c, serial)| {
                let mut nodes = Vec::new();
                let mut add = |mut node: SimNode, at: DateTime<Utc>| {
                    ids.fill(&mut node, at);
                    nodes.push(node);
                };
                add(SimNode::master(), day_ago);
                for _ in 0..c.core_nodes {
                    add(SimNode::core(), day_ago);
                }
                for i in 0..c.task_nodes {
                    let age = chrono::Duration::minutes(i64::from(c.task_nodes - i));
                    add(SimNode::task(), now - age);
                }
                for node in &c.nodes {
                    add(node.clone(), now);
                }
                let mut strategies = Vec::new();
                for s in &c.builtin {
                    builtin::upsert(&mut strategies, s.clone());
                }
                Cluster {
                    id: c.instance_id.clone(),
                    serial,
                    created: now,
                    status: STATUS_RUNNING,
                    nodes,
                    flow: None,
                    flow_duration: c.flow_duration,
                    config_null: false,
                    flows_started: 0,
                    flows_failed: 0,
                    task_added: 0,
                    core_added: 0,
                    removed: 0,
                    strategies,
                }
            })
            .collect();
        Self {
            clusters,
            flows: HashMap::new(),
            next_flow_id: 100_001,
            tokens: HashMap::new(),
            default_duration,
            ids,
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
            Action::TerminateClusterNodes => self.terminate_nodes(&p, now, hooks),
            Action::DescribeAutoScaleGroupGlobalConf => self.describe_groups(&p),
            Action::DescribeAutoScaleStrategies => self.describe_strategies(&p),
        }
    }

    /// Finishes every flow whose time has come.
    ///
    /// A scale-out that succeeds appends its nodes (Flag 3 or 2, the
    /// request's Tags, ChargeType its PayMode, ApplyTime the flow's start);
    /// one that fails leaves status 302. A scale-in that succeeds removes the
    /// named nodes still listed; one that fails keeps them. Either way a
    /// scale-in puts the cluster back to status 2.
    pub(crate) fn settle(&mut self, now: DateTime<Utc>) {
        let Self {
            clusters,
            flows,
            ids,
            ..
        } = self;
        for cluster in clusters.iter_mut() {
            let Some(flow) = cluster.flow.and_then(|id| flows.get_mut(&id)) else {
                continue;
            };
            if now < flow.end() {
                continue;
            }
            cluster.flow = None;
            if flow.fail {
                flow.state = FlowState::Failed;
                cluster.status = match flow.kind {
                    FlowKind::ScaleOut => STATUS_SCALE_OUT_FAILED,
                    FlowKind::ScaleIn => STATUS_RUNNING,
                };
                cluster.flows_failed += 1;
                info!(message = "Flow failed.", cluster = %cluster.id, flow_id = flow.id, kind = ?flow.kind);
                continue;
            }
            flow.state = FlowState::Done;
            cluster.status = STATUS_RUNNING;
            match flow.kind {
                FlowKind::ScaleOut => {
                    let new = (0..flow.task_count)
                        .map(|_| NODE_FLAG_TASK)
                        .chain((0..flow.core_count).map(|_| NODE_FLAG_CORE));
                    for flag in new {
                        let mut node = SimNode::task().with_flag(flag);
                        node.charge_type = flow.charge_type;
                        node.tags.clone_from(&flow.tags);
                        node.apply_time = Some(flow.started);
                        ids.fill(&mut node, flow.started);
                        cluster.nodes.push(node);
                    }
                    cluster.task_added += u64::from(flow.task_count);
                    cluster.core_added += u64::from(flow.core_count);
                }
                FlowKind::ScaleIn => {
                    let before = cluster.nodes.len();
                    cluster.nodes.retain(|n| !flow.remove.contains(&n.order_no));
                    let gone = before - cluster.nodes.len();
                    cluster.removed += u64::try_from(gone).unwrap_or(u64::MAX);
                }
            }
            info!(
                message = "Flow done.",
                cluster = %cluster.id,
                flow_id = flow.id,
                kind = ?flow.kind,
                task_nodes = cluster.count(NODE_FLAG_TASK),
                core_nodes = cluster.count(NODE_FLAG_CORE)
            );
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
        let tags = request_tags(p)?;
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
                kind: FlowKind::ScaleOut,
                task_count,
                core_count,
                tags,
                charge_type: pay_mode,
                remove: Vec::new(),
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
                        "TaskNodeSize": c.count(NODE_FLAG_TASK),
                        "CoreNodeSize": c.count(NODE_FLAG_CORE),
                        "MasterNodeSize": c.count(NODE_FLAG_MASTER),
                        "CommonNodeSize": c.count(NODE_FLAG_COMMON),
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
        let name = match flow.kind {
            FlowKind::ScaleIn => "Terminate Task Nodes",
            FlowKind::ScaleOut if flow.task_count > 0 => "Scale Out Task",
            FlowKind::ScaleOut => "Scale Out Core",
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

    /// `DescribeClusterNodes`: `Offset` is a page index, `Limit` the page size.
    fn describe_nodes(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let flag = p.required_str("NodeFlag")?;
        let (page, limit) = p.page(NODES_PAGE_MAX)?;
        let c = &self.clusters[self.cluster_index(id)?];
        let wanted: &[i64] = match flag {
            "all" => &[
                NODE_FLAG_COMMON,
                NODE_FLAG_MASTER,
                NODE_FLAG_CORE,
                NODE_FLAG_TASK,
            ],
            "common" => &[NODE_FLAG_COMMON],
            "master" => &[NODE_FLAG_MASTER],
            "core" => &[NODE_FLAG_CORE],
            "task" => &[NODE_FLAG_TASK],
            "router" => &[],
            other => return Err(ApiError::InvalidNodeType(other.to_owned())),
        };
        let matching: Vec<&SimNode> = c
            .nodes
            .iter()
            .filter(|n| wanted.contains(&n.flag))
            .collect();
        let list: Vec<Value> = match page.checked_mul(limit) {
            Some(skip) => matching
                .iter()
                .skip(skip)
                .take(limit)
                .map(|n| n.to_json())
                .collect(),
            None => Vec::new(),
        };
        let mut tag_keys: Vec<&str> = Vec::new();
        for (key, _) in c.nodes.iter().filter_map(|n| n.tags.as_ref()).flatten() {
            if !tag_keys.contains(&key.as_str()) {
                tag_keys.push(key);
            }
        }
        let list = if list.is_empty() {
            Value::Null
        } else {
            Value::Array(list)
        };
        Ok(ActionOk::plain(json!({
            "TotalCnt": matching.len(),
            "NodeList": list,
            "TagKeys": tag_keys,
            "HardwareResourceTypeList": ["host"],
        })))
    }

    /// `TerminateClusterNodes`: validation, then busy, then every node
    /// listed, then every node removable; only then a scale-in flow starts.
    fn terminate_nodes(
        &mut self,
        p: &Params<'_>,
        now: DateTime<Utc>,
        hooks: &mut Hooks<'_>,
    ) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let names = p
            .str_list("CvmInstanceIds")?
            .ok_or_else(|| ApiError::MissingParameter("CvmInstanceIds".into()))?;
        let flag = p.required_str("NodeFlag")?;
        let graceful = p.bool("GraceDownFlag")?.unwrap_or(false);
        let grace_time = p.int("GraceDownTime")?;
        if names.is_empty() {
            return Err(ApiError::InvalidParameter(
                "CvmInstanceIds must name at least one node".into(),
            ));
        }
        if let Some(blank) = names.iter().find(|n| n.trim().is_empty()) {
            return Err(ApiError::InvalidParameter(format!(
                "CvmInstanceIds holds an empty machine id {blank:?}"
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(ApiError::InvalidParameter(format!(
                    "CvmInstanceIds names {name} twice"
                )));
            }
        }
        if flag != TERMINATE_NODE_FLAG {
            return Err(ApiError::InvalidParameter(format!(
                "NodeFlag {flag:?} is not supported; only task nodes can be terminated (NodeFlag \"TASK\")"
            )));
        }
        let duration = if graceful {
            match grace_time {
                Some(t) if GRACE_DOWN_SECONDS.contains(&t) => Duration::from_secs(t.unsigned_abs()),
                other => {
                    let got = other.map_or_else(|| "none".to_owned(), |t| t.to_string());
                    return Err(ApiError::InvalidParameter(format!(
                        "GraceDownTime must be 60 to 1800 seconds when GraceDownFlag is true, got {got}"
                    )));
                }
            }
        } else {
            QUICK_SCALE_IN
        };
        let index = self.cluster_index(id)?;

        let cluster = &self.clusters[index];
        if let Some(flow_id) = cluster.flow {
            return Err(ApiError::InstanceInProcess {
                instance_id: id.to_owned(),
                flow_id,
            });
        }
        if cluster.status != STATUS_RUNNING {
            return Err(ApiError::InstanceNotRunning {
                instance_id: id.to_owned(),
                status: cluster.status,
            });
        }
        if let Some(missing) = names.iter().find(|n| cluster.node(n).is_none()) {
            return Err(ApiError::NodeNotFound {
                instance_id: id.to_owned(),
                node: missing.clone(),
            });
        }
        for node in names.iter().filter_map(|n| cluster.node(n)) {
            removable(node)?;
        }

        let overrides = (hooks.flow_overrides)(id);
        let duration = overrides.duration.unwrap_or(duration);
        let flow_id = self.next_flow_id;
        self.next_flow_id += 1;
        let cluster = &mut self.clusters[index];
        cluster.flow = Some(flow_id);
        cluster.status = STATUS_SCALING_IN;
        cluster.flows_started += 1;
        info!(
            message = "Scale-in flow started.",
            cluster = %id,
            flow_id,
            nodes = ?names,
            duration_secs = duration.as_secs_f64(),
            fails = overrides.fail
        );
        self.flows.insert(
            flow_id,
            Flow {
                id: flow_id,
                instance_id: id.to_owned(),
                started: now,
                duration,
                fail: overrides.fail,
                kind: FlowKind::ScaleIn,
                task_count: 0,
                core_count: 0,
                tags: None,
                charge_type: 0,
                remove: names,
                state: FlowState::Running,
            },
        );
        Ok(ActionOk {
            body: into_map(json!({ "FlowId": flow_id })),
            flow_id: Some(flow_id),
            deduplicated: false,
        })
    }

    /// `DescribeAutoScaleGroupGlobalConf`: the groups of the cluster's strategies.
    fn describe_groups(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let c = &self.clusters[self.cluster_index(id)?];
        let groups = builtin::group_confs(&c.id, &c.strategies);
        Ok(ActionOk::plain(json!({
            "TotalCount": groups.len(),
            "GroupGlobalConfs": groups,
        })))
    }

    /// `DescribeAutoScaleStrategies`: every strategy, or those of `GroupId`.
    fn describe_strategies(&self, p: &Params<'_>) -> Result<ActionOk, ApiError> {
        let id = p.required_str("InstanceId")?;
        let group = p.int("GroupId")?;
        p.int("StrategyType")?;
        let c = &self.clusters[self.cluster_index(id)?];
        Ok(ActionOk::plain(json!({
            "LoadAutoScaleStrategies": builtin::strategies(&c.strategies, StrategyKind::Load, group),
            "TimeBasedAutoScaleStrategies": builtin::strategies(&c.strategies, StrategyKind::Time, group),
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
                task_nodes: c.count(NODE_FLAG_TASK),
                core_nodes: c.count(NODE_FLAG_CORE),
                current_flow: c.flow,
                flows_started: c.flows_started,
                flows_failed: c.flows_failed,
                task_nodes_added: c.task_added,
                core_nodes_added: c.core_added,
                config_null: c.config_null,
                removing: c
                    .flow
                    .and_then(|f| self.flows.get(&f))
                    .map(|f| f.remove.clone())
                    .unwrap_or_default(),
                nodes_removed: c.removed,
            })
    }

    /// A cluster's node list, after settling at `now`.
    pub(crate) fn nodes(&mut self, id: &str, now: DateTime<Utc>) -> Option<Vec<SimNode>> {
        self.settle(now);
        self.clusters
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.nodes.clone())
    }

    /// Adds or drops nodes of `flag` until the cluster lists `n` of them.
    ///
    /// New nodes are untagged and otherwise as [`SimNode::task`], with
    /// ApplyTime one second apart up to `now`. Dropped nodes are untagged
    /// ones that no scale-in is removing, newest (last listed) first, then
    /// any others, newest first. False when the cluster does not exist.
    pub(crate) fn set_count(&mut self, id: &str, flag: i64, n: u32, now: DateTime<Utc>) -> bool {
        let Some(index) = self.clusters.iter().position(|c| c.id == id) else {
            return false;
        };
        let removing: Vec<String> = self.clusters[index]
            .flow
            .and_then(|f| self.flows.get(&f))
            .map(|f| f.remove.clone())
            .unwrap_or_default();
        let cluster = &mut self.clusters[index];
        let have = cluster.count(flag);
        if have < n {
            let missing = n - have;
            for i in 0..missing {
                let age = chrono::Duration::seconds(i64::from(missing - 1 - i));
                let mut node = SimNode::task().with_flag(flag);
                self.ids.fill(&mut node, now - age);
                cluster.nodes.push(node);
            }
            return true;
        }
        let mut excess = have - n;
        for pass in [true, false] {
            let mut i = cluster.nodes.len();
            while excess > 0 && i > 0 {
                i -= 1;
                let node = &cluster.nodes[i];
                let spare = node.untagged() && !removing.contains(&node.order_no);
                if node.flag == flag && (spare || !pass) {
                    cluster.nodes.remove(i);
                    excess -= 1;
                }
            }
        }
        true
    }

    /// Adds a node to a cluster (ids and ApplyTime filled in, `now` when
    /// unset). The node's machine id, or `None` when the cluster does not exist.
    pub(crate) fn add_node(
        &mut self,
        id: &str,
        mut node: SimNode,
        now: DateTime<Utc>,
    ) -> Option<String> {
        let cluster = self.clusters.iter_mut().find(|c| c.id == id)?;
        self.ids.fill(&mut node, now);
        let order_no = node.order_no.clone();
        cluster.nodes.push(node);
        Some(order_no)
    }

    /// Changes one listed node in place; false when the cluster or node does
    /// not exist. Ids the change gives the node are reserved.
    pub(crate) fn update_node(
        &mut self,
        id: &str,
        order_no: &str,
        change: impl FnOnce(&mut SimNode),
    ) -> bool {
        let Some(node) = self
            .clusters
            .iter_mut()
            .find(|c| c.id == id)
            .and_then(|c| c.nodes.iter_mut().find(|n| n.order_no == order_no))
        else {
            return false;
        };
        change(node);
        self.ids.reserve(node);
        true
    }

    /// Removes a node from the list as if a person had (no flow, not counted
    /// as removed by scale-in). False when the cluster or node does not exist.
    pub(crate) fn node_gone(&mut self, id: &str, order_no: &str) -> bool {
        let Some(cluster) = self.clusters.iter_mut().find(|c| c.id == id) else {
            return false;
        };
        let before = cluster.nodes.len();
        cluster.nodes.retain(|n| n.order_no != order_no);
        cluster.nodes.len() < before
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
            flow_duration: &mut c.flow_duration,
            config_null: &mut c.config_null,
            strategies: &mut c.strategies,
        });
        true
    }
}

/// The parts of a cluster a test may set directly.
pub(crate) struct ClusterKnobs<'a> {
    pub(crate) flow_duration: &'a mut Option<Duration>,
    pub(crate) config_null: &'a mut bool,
    pub(crate) strategies: &'a mut Vec<BuiltinStrategy>,
}

/// Whether `TerminateClusterNodes` may remove `node`: a task node,
/// destroyable, without instance protection, pay-as-you-go (checked in
/// that order).
fn removable(node: &SimNode) -> Result<(), ApiError> {
    if node.flag != NODE_FLAG_TASK {
        return Err(ApiError::NodeNotTask {
            node: node.order_no.clone(),
            flag: node.flag,
        });
    }
    if node.destroyable != 1 {
        return Err(ApiError::NodeNotDestroyable(node.order_no.clone()));
    }
    if node.disable_api_termination {
        return Err(ApiError::NodeProtected(node.order_no.clone()));
    }
    if node.charge_type != 0 {
        return Err(ApiError::NodePrepaid {
            node: node.order_no.clone(),
            charge_type: node.charge_type,
        });
    }
    Ok(())
}

/// The request's `Tags` as pairs (already validated); `None` when it has
/// none or an empty list.
fn request_tags(p: &Params<'_>) -> Result<Option<Vec<(String, String)>>, ApiError> {
    let Some(tags) = p.array("Tags")? else {
        return Ok(None);
    };
    let pairs: Vec<(String, String)> = tags
        .iter()
        .map(|t| {
            let text = |field: &str| {
                t.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (text("TagKey"), text("TagValue"))
        })
        .collect();
    Ok((!pairs.is_empty()).then_some(pairs))
}

/// The text the console shows for a status.
fn status_desc(status: i64) -> &'static str {
    match status {
        STATUS_RUNNING => "running",
        STATUS_SCALING_OUT => "scaling out",
        STATUS_SCALING_IN => "scaling in",
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

    fn terminate(id: &str, nodes: &[&str], grace: i64) -> Value {
        json!({"InstanceId": id, "CvmInstanceIds": nodes, "NodeFlag": "TASK", "GraceDownFlag": true, "GraceDownTime": grace})
    }

    fn task_ids(e: &mut Engine, id: &str, now: DateTime<Utc>) -> Vec<String> {
        e.nodes(id, now)
            .expect("cluster")
            .into_iter()
            .filter(|n| n.flag == NODE_FLAG_TASK)
            .map(|n| n.order_no)
            .collect()
    }

    fn with_nodes(nodes: Vec<SimNode>) -> Engine {
        let mut cluster = SimCluster::new(A).with_task_nodes(2);
        cluster.nodes = nodes;
        Engine::new(&[cluster], Duration::from_secs(60), t0())
    }

    #[test]
    fn generated_nodes_have_distinct_ids_and_task_apply_times_oldest_first() {
        let clusters = [
            SimCluster::new(A).with_task_nodes(5),
            SimCluster::new(B).with_task_nodes(5),
        ];
        let mut e = Engine::new(&clusters, Duration::from_secs(60), t0());
        let a = e.nodes(A, t0()).expect("a");
        let b = e.nodes(B, t0()).expect("b");
        assert_eq!(a.len(), 1 + 3 + 5);
        assert_eq!(
            a.iter().map(|n| n.flag).collect::<Vec<_>>(),
            [1, 2, 2, 2, 3, 3, 3, 3, 3]
        );
        let mut ids: Vec<&str> = a.iter().chain(&b).map(|n| n.order_no.as_str()).collect();
        let mut ips: Vec<&str> = a.iter().chain(&b).map(|n| n.ip.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ips.sort_unstable();
        ips.dedup();
        assert_eq!((ids.len(), ips.len()), (18, 18));
        let times: Vec<DateTime<Utc>> = a
            .iter()
            .filter(|n| n.flag == NODE_FLAG_TASK)
            .filter_map(|n| n.apply_time)
            .collect();
        assert_eq!(times.len(), 5);
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        assert!(times.iter().all(|t| *t < t0()));
        assert!(
            a.iter()
                .all(|n| n.tags.is_none() && n.auto_flag == 0 && n.charge_type == 0)
        );
    }

    #[test]
    fn describe_nodes_pages_by_index() {
        let clusters = [SimCluster::new(A).with_task_nodes(250)];
        let mut e = Engine::new(&clusters, Duration::from_secs(60), t0());
        let page = |e: &mut Engine, offset: i64, limit: Option<i64>| {
            let mut body = json!({"InstanceId": A, "NodeFlag": "task", "Offset": offset});
            if let Some(l) = limit {
                body["Limit"] = json!(l);
            }
            run(e, Action::DescribeClusterNodes, body, t0(), t0())
        };
        let mut seen = Vec::new();
        for (offset, want) in [(0, 100), (1, 100), (2, 50)] {
            let ok = page(&mut e, offset, Some(100)).expect("page");
            assert_eq!(ok.body["TotalCnt"], 250);
            let list = ok.body["NodeList"].as_array().expect("list");
            assert_eq!(list.len(), want, "page {offset}");
            seen.extend(list.iter().map(|n| n["OrderNo"].clone()));
        }
        assert_eq!(
            seen,
            task_ids(&mut e, A, t0())
                .into_iter()
                .map(Value::from)
                .collect::<Vec<_>>()
        );
        assert!(page(&mut e, 3, Some(100)).expect("page").body["NodeList"].is_null());
        let default = page(&mut e, 0, None).expect("page");
        assert_eq!(default.body["NodeList"].as_array().map(Vec::len), Some(100));
        let small = page(&mut e, 4, Some(7)).expect("page");
        assert_eq!(small.body["NodeList"][0]["OrderNo"], seen[28]);
        assert!(page(&mut e, i64::MAX, Some(100)).expect("page").body["NodeList"].is_null());
        for limit in [0, 101] {
            assert_eq!(code(page(&mut e, 0, Some(limit))), "InvalidParameter");
        }
        assert_eq!(code(page(&mut e, -1, Some(10))), "InvalidParameter");
        let common = run(
            &mut e,
            Action::DescribeClusterNodes,
            json!({"InstanceId": A, "NodeFlag": "common"}),
            t0(),
            t0(),
        )
        .expect("describes");
        assert_eq!(common.body["TotalCnt"], 0);
        assert!(common.body["NodeList"].is_null());
        let missing = run(
            &mut e,
            Action::DescribeClusterNodes,
            json!({"InstanceId": "emr-nope0000", "NodeFlag": "task"}),
            t0(),
            t0(),
        );
        assert_eq!(code(missing), "ResourceNotFound.ClusterNotFound");
    }

    #[test]
    fn scale_out_nodes_carry_tags_pay_mode_and_start_time() {
        let mut e = engine();
        let mut body = scale(A, 2, "t");
        body["Tags"] = json!([{"TagKey": "managed-by", "TagValue": "emr-autoscaler"}]);
        run(&mut e, Action::ScaleOutInstance, body, t0(), t0()).expect("starts");
        assert_eq!(task_ids(&mut e, A, t0() + secs(59)).len(), 2);
        let nodes = e.nodes(A, t0() + secs(60)).expect("cluster");
        let new: Vec<&SimNode> = nodes.iter().skip(1 + 3 + 2).collect();
        assert_eq!(new.len(), 2);
        for n in &new {
            assert_eq!(
                (n.flag, n.auto_flag, n.destroyable, n.charge_type),
                (3, 0, 1, 0)
            );
            assert!(n.has_tag("managed-by", "emr-autoscaler"));
            assert_eq!(n.apply_time, Some(t0()));
            assert!(!n.disable_api_termination);
        }
        let monthly =
            json!({"InstanceId": A, "PayMode": 1, "TimeUnit": "m", "TimeSpan": 1, "CoreCount": 1});
        let later = t0() + secs(100);
        run(&mut e, Action::ScaleOutInstance, monthly, later, later).expect("starts");
        let nodes = e.nodes(A, later + secs(60)).expect("cluster");
        let core = nodes.last().expect("a node");
        assert_eq!((core.flag, core.charge_type), (NODE_FLAG_CORE, 1));
        assert!(core.tags.is_none());
        assert_eq!(
            e.cluster(A, later + secs(60)).map(|c| c.core_nodes),
            Some(4)
        );
    }

    #[test]
    fn scale_in_flow_removes_nodes_when_it_ends() {
        let mut e = engine();
        let ids = task_ids(&mut e, A, t0());
        let ok = run(
            &mut e,
            Action::TerminateClusterNodes,
            terminate(A, &[&ids[1]], 600),
            t0(),
            t0(),
        )
        .expect("starts");
        let flow_id = ok.flow_id.expect("flow id");
        assert_eq!(ok.body, into_map(json!({"FlowId": flow_id})));
        let during = e.cluster(A, t0() + secs(599)).expect("cluster");
        assert_eq!(
            (during.status, during.task_nodes, during.removing.clone()),
            (STATUS_SCALING_IN, 2, vec![ids[1].clone()])
        );
        let flow = e.flow(flow_id, t0() + secs(300)).expect("flow");
        assert_eq!(
            (flow.kind, flow.total_status, flow.progress),
            (FlowKind::ScaleIn, FLOW_RUNNING, 0.5)
        );
        // Busy: neither a second scale-in nor a scale-out may start.
        let again = run(
            &mut e,
            Action::TerminateClusterNodes,
            terminate(A, &[&ids[0]], 60),
            t0() + secs(10),
            t0(),
        );
        assert_eq!(code(again), "ResourceInUse.InstanceInProcess");
        let out = run(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 1, "x"),
            t0() + secs(10),
            t0(),
        );
        assert_eq!(code(out), "ResourceInUse.InstanceInProcess");
        let done = e.cluster(A, t0() + secs(600)).expect("cluster");
        assert_eq!(
            (
                done.status,
                done.task_nodes,
                done.nodes_removed,
                done.removing.len()
            ),
            (STATUS_RUNNING, 1, 1, 0)
        );
        assert_eq!(task_ids(&mut e, A, t0() + secs(600)), [ids[0].clone()]);
        let detail = run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            json!({"InstanceId": A, "FlowParam": {"FKey": "FlowId", "FValue": flow_id.to_string()}}),
            t0() + secs(600),
            t0(),
        )
        .expect("describes");
        assert_eq!(detail.body["FlowTotalStatus"], FLOW_DONE);
        assert_eq!(detail.body["FlowName"], "Terminate Task Nodes");
        // The removed node is gone for good.
        let gone = run(
            &mut e,
            Action::TerminateClusterNodes,
            terminate(A, &[&ids[1]], 60),
            t0() + secs(700),
            t0(),
        );
        assert_eq!(code(gone), "ResourceNotFound.InstanceNotFound");
    }

    #[test]
    fn scale_in_without_graceful_decommission_takes_one_second() {
        let mut e = engine();
        let ids = task_ids(&mut e, A, t0());
        let body = json!({"InstanceId": A, "CvmInstanceIds": ids, "NodeFlag": "TASK", "GraceDownFlag": false});
        run(&mut e, Action::TerminateClusterNodes, body, t0(), t0()).expect("starts");
        assert_eq!(e.cluster(A, t0()).map(|c| c.task_nodes), Some(2));
        let done = e
            .cluster(A, t0() + chrono::Duration::milliseconds(1000))
            .expect("cluster");
        assert_eq!((done.status, done.task_nodes), (STATUS_RUNNING, 0));
    }

    #[test]
    fn failed_or_slow_scale_in_keeps_its_nodes() {
        let mut e = engine();
        let ids = task_ids(&mut e, A, t0());
        let fail = FlowOverrides {
            duration: Some(Duration::from_secs(900)),
            fail: true,
        };
        let ok = run_with(
            &mut e,
            Action::TerminateClusterNodes,
            terminate(A, &[&ids[0], &ids[1]], 60),
            t0(),
            t0(),
            fail,
        )
        .expect("starts");
        let flow_id = ok.flow_id.expect("flow id");
        assert_eq!(
            e.cluster(A, t0() + secs(899)).map(|c| c.status),
            Some(STATUS_SCALING_IN)
        );
        let after = e.cluster(A, t0() + secs(900)).expect("cluster");
        assert_eq!(
            (
                after.status,
                after.task_nodes,
                after.flows_failed,
                after.nodes_removed
            ),
            (STATUS_RUNNING, 2, 1, 0)
        );
        assert_eq!(
            e.flow(flow_id, t0() + secs(900)).map(|f| f.total_status),
            Some(FLOW_FAILED)
        );
    }

    #[test]
    fn terminate_validation_and_refusals_execute_nothing() {
        let nodes = vec![
            SimNode::core().with_order_no("ins-core0001"),
            SimNode::task()
                .with_order_no("ins-keep0001")
                .with_destroyable(false),
            SimNode::task().with_order_no("ins-prot0001").protected(),
            SimNode::task().with_order_no("ins-mnth0001").monthly(),
            SimNode::task().with_order_no("ins-okay0001"),
            SimNode::task().with_order_no("ins-auto0001").auto_scaled(),
        ];
        let good = |extra: Value| {
            let mut body = json!({"InstanceId": A, "CvmInstanceIds": ["ins-okay0001"], "NodeFlag": "TASK", "GraceDownFlag": true, "GraceDownTime": 60});
            for (k, v) in extra.as_object().into_iter().flatten() {
                body[k] = v.clone();
            }
            body
        };
        let cases = [
            (
                json!({"InstanceId": A, "NodeFlag": "TASK"}),
                "MissingParameter",
                "CvmInstanceIds",
            ),
            (
                good(json!({"NodeFlag": null})),
                "MissingParameter",
                "NodeFlag",
            ),
            (
                good(json!({"CvmInstanceIds": []})),
                "InvalidParameter",
                "at least one",
            ),
            (
                good(json!({"CvmInstanceIds": [1]})),
                "InvalidParameter",
                "CvmInstanceIds",
            ),
            (
                good(json!({"CvmInstanceIds": [""]})),
                "InvalidParameter",
                "empty",
            ),
            (
                good(json!({"CvmInstanceIds": ["ins-okay0001", "ins-okay0001"]})),
                "InvalidParameter",
                "ins-okay0001",
            ),
            (
                good(json!({"NodeFlag": "task"})),
                "InvalidParameter",
                "NodeFlag",
            ),
            (
                good(json!({"NodeFlag": "CORE"})),
                "InvalidParameter",
                "NodeFlag",
            ),
            (
                good(json!({"GraceDownTime": 59})),
                "InvalidParameter",
                "GraceDownTime",
            ),
            (
                good(json!({"GraceDownTime": 1801})),
                "InvalidParameter",
                "GraceDownTime",
            ),
            (
                good(json!({"GraceDownTime": null})),
                "InvalidParameter",
                "GraceDownTime",
            ),
            (
                good(json!({"GraceDownTime": "600"})),
                "InvalidParameter",
                "GraceDownTime",
            ),
            (
                good(json!({"GraceDownFlag": "yes"})),
                "InvalidParameter",
                "GraceDownFlag",
            ),
            (
                good(json!({"InstanceId": "emr-nope0000"})),
                "ResourceNotFound.ClusterNotFound",
                "emr-nope0000",
            ),
            (
                good(json!({"CvmInstanceIds": ["ins-okay0001", "ins-nope0001"]})),
                "ResourceNotFound.InstanceNotFound",
                "ins-nope0001",
            ),
            (
                good(json!({"CvmInstanceIds": ["ins-okay0001", "ins-core0001"]})),
                "InvalidParameter.InvalidNodeType",
                "ins-core0001",
            ),
            (
                good(json!({"CvmInstanceIds": ["ins-keep0001"]})),
                "InvalidParameter.NodeNotDestroyable",
                "ins-keep0001",
            ),
            (
                good(json!({"CvmInstanceIds": ["ins-prot0001", "ins-okay0001"]})),
                "InvalidParameter.TerminationProtected",
                "ins-prot0001",
            ),
            (
                good(json!({"CvmInstanceIds": ["ins-mnth0001"]})),
                "InvalidParameter.PrepaidNode",
                "ins-mnth0001",
            ),
        ];
        let mut e = with_nodes(nodes);
        let before = e.nodes(A, t0());
        for (body, want, named) in cases {
            let got = run(
                &mut e,
                Action::TerminateClusterNodes,
                body.clone(),
                t0(),
                t0(),
            );
            let Err(error) = got else {
                panic!("{body} was accepted");
            };
            assert_eq!(error.code(), want, "{body}");
            assert!(error.to_string().contains(named), "{body}: {error}");
        }
        let snap = e.cluster(A, t0() + secs(3600)).expect("cluster");
        assert_eq!((snap.flows_started, snap.status), (0, STATUS_RUNNING));
        assert_eq!(e.nodes(A, t0() + secs(3600)), before);
        // A node of Tencent's own auto-scaling is not refused by the API.
        let auto = good(json!({"CvmInstanceIds": ["ins-auto0001", "ins-okay0001"]}));
        assert_eq!(
            code(run(&mut e, Action::TerminateClusterNodes, auto, t0(), t0())),
            "ok"
        );
    }

    #[test]
    fn a_cluster_that_is_not_running_refuses_scale_in() {
        let mut e = engine();
        let ids = task_ids(&mut e, A, t0());
        let fail = FlowOverrides {
            duration: None,
            fail: true,
        };
        run_with(
            &mut e,
            Action::ScaleOutInstance,
            scale(A, 1, "f"),
            t0(),
            t0(),
            fail,
        )
        .expect("starts");
        let later = t0() + secs(60);
        assert_eq!(
            e.cluster(A, later).map(|c| c.status),
            Some(STATUS_SCALE_OUT_FAILED)
        );
        let refused = run(
            &mut e,
            Action::TerminateClusterNodes,
            terminate(A, &[&ids[0]], 60),
            later,
            later,
        );
        let Err(error) = refused else {
            panic!("accepted on a failed cluster");
        };
        assert_eq!(error.code(), "ResourceInUse.InstanceInProcess");
        assert!(error.to_string().contains("302"), "{error}");
    }

    #[test]
    fn set_count_adds_and_drops_untagged_task_nodes_first() {
        let mut e = with_nodes(vec![
            SimNode::task()
                .with_order_no("ins-ours0001")
                .with_tag("managed-by", "emr-autoscaler"),
        ]);
        let start = task_ids(&mut e, A, t0());
        assert_eq!(start.len(), 3);
        assert!(e.set_count(A, NODE_FLAG_TASK, 1, t0()));
        assert_eq!(task_ids(&mut e, A, t0()), ["ins-ours0001"]);
        assert!(e.set_count(A, NODE_FLAG_TASK, 3, t0() + secs(5)));
        let grown = e.nodes(A, t0()).expect("cluster");
        let added: Vec<&SimNode> = grown
            .iter()
            .filter(|n| n.flag == NODE_FLAG_TASK && n.order_no != "ins-ours0001")
            .collect();
        assert_eq!(added.len(), 2);
        assert!(added.iter().all(|n| n.untagged()));
        assert!(added[0].apply_time < added[1].apply_time);
        assert!(e.set_count(A, NODE_FLAG_TASK, 0, t0()));
        assert_eq!(e.cluster(A, t0()).map(|c| c.task_nodes), Some(0));
        assert!(e.set_count(A, NODE_FLAG_CORE, 5, t0()));
        assert_eq!(e.cluster(A, t0()).map(|c| c.core_nodes), Some(5));
        assert!(!e.set_count("emr-nope0000", NODE_FLAG_TASK, 1, t0()));
        // Gone and added nodes.
        let id = e.add_node(A, SimNode::task(), t0()).expect("added");
        assert!(id.starts_with("ins-"));
        assert!(e.update_node(A, &id, |n| n.disable_api_termination = true));
        assert!(
            e.nodes(A, t0())
                .expect("cluster")
                .iter()
                .any(|n| n.order_no == id && n.disable_api_termination)
        );
        assert!(e.node_gone(A, &id));
        assert!(!e.node_gone(A, &id));
        assert_eq!(
            e.cluster(A, t0()).map(|c| (c.task_nodes, c.nodes_removed)),
            Some((0, 0))
        );
    }

    #[test]
    fn builtin_groups_and_strategies() {
        let mut e = engine();
        let groups = |e: &mut Engine| {
            run(
                e,
                Action::DescribeAutoScaleGroupGlobalConf,
                json!({"InstanceId": A}),
                t0(),
                t0(),
            )
            .expect("describes")
            .body
        };
        let strategies = |e: &mut Engine, group: Option<i64>| {
            let mut body = json!({"InstanceId": A});
            if let Some(g) = group {
                body["GroupId"] = json!(g);
            }
            run(e, Action::DescribeAutoScaleStrategies, body, t0(), t0())
                .expect("describes")
                .body
        };
        let none = groups(&mut e);
        assert_eq!(
            (none["TotalCount"].clone(), none["GroupGlobalConfs"].clone()),
            (json!(0), json!([]))
        );
        let empty = strategies(&mut e, None);
        assert_eq!(empty["LoadAutoScaleStrategies"], json!([]));
        assert_eq!(empty["TimeBasedAutoScaleStrategies"], json!([]));
        assert!(e.modify(A, |k| {
            builtin::upsert(k.strategies, BuiltinStrategy::load(1, "cpu"));
            builtin::upsert(k.strategies, BuiltinStrategy::time(2, "night").in_group(5));
        }));
        let listed = groups(&mut e);
        assert_eq!(listed["TotalCount"], 1);
        assert_eq!(listed["GroupGlobalConfs"][0]["GroupGlobalConf"]["Id"], 5);
        assert_eq!(listed["GroupGlobalConfs"][0]["CurrentNodes"], 0);
        let all = strategies(&mut e, None);
        assert_eq!(all["LoadAutoScaleStrategies"][0]["StrategyName"], "cpu");
        assert_eq!(all["TimeBasedAutoScaleStrategies"][0]["GroupId"], 5);
        let five = strategies(&mut e, Some(5));
        assert_eq!(five["LoadAutoScaleStrategies"], json!([]));
        assert_eq!(five["TimeBasedAutoScaleStrategies"][0]["StrategyId"], 2);
        let bad = run(
            &mut e,
            Action::DescribeAutoScaleStrategies,
            json!({"InstanceId": A, "GroupId": "5"}),
            t0(),
            t0(),
        );
        assert_eq!(code(bad), "InvalidParameter");
        let missing = run(
            &mut e,
            Action::DescribeAutoScaleGroupGlobalConf,
            json!({"InstanceId": "emr-nope0000"}),
            t0(),
            t0(),
        );
        assert_eq!(code(missing), "ResourceNotFound.ClusterNotFound");
    }
}
