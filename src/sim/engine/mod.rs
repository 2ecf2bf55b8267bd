//! Simulated clusters, their nodes, flows and the eight EMR actions.
//!
//! Each cluster holds a node list (one master, its core and task nodes, and
//! any node a test added): `DescribeClusterNodes` pages through it,
//! `DescribeInstances` counts it, a finished scale-out flow
//! (`ScaleOutInstance` or `ScaleOutCluster`) appends to it and a finished
//! scale-in flow (`TerminateClusterNodes`) removes from it. Spot
//! reclamation removes spot task nodes at once, without a flow.
//!
//! The [`Engine`] is plain state with no I/O and no clock of its own: every
//! call takes `now` (the injected simulation clock, which drives flows) and,
//! where ClientTokens matter, `wall` (the real clock, which drives the
//! 5-minute deduplication window). Flows are settled lazily at the start of
//! every call, so the state is a pure function of the calls and the times
//! they were made at; a manual clock makes it fully deterministic.
//!
//! Each action lives in its own file beside this one; [`params`] reads
//! request parameters with the API's error codes, [`model`] holds the SDK's
//! `ScaleOutCluster` request model, [`stock`] the CVM stock per offering,
//! and [`knobs`] is what the simulator's handle and tests read and change
//! directly.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tracing::info;

use super::SimCluster;
use super::builtin::{self, BuiltinStrategy, StrategyKind};
use super::error::ApiError;
use super::fault::FlowOverrides;
mod flows;
mod instances;
mod knobs;
mod model;
mod nodes;
mod params;
mod scale_out;
mod scale_out_cluster;
mod stock;
mod strategies;
mod terminate;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_scale_out_cluster;

pub use stock::Stock;
pub(crate) use stock::StockRule;

use params::{Params, into_map};

use super::error::BodyRejection;
use super::node::{
    CHARGE_POSTPAID_BY_HOUR, CHARGE_PREPAID, CHARGE_SPOTPAID, NODE_FLAG_COMMON, NODE_FLAG_CORE,
    NODE_FLAG_MASTER, NODE_FLAG_TASK, NodeIds, SimNode,
};

/// How long a ClientToken is remembered, by the wall clock.
pub const CLIENT_TOKEN_TTL: Duration = Duration::from_secs(300);
/// The most task or core nodes one `ScaleOutInstance` or `ScaleOutCluster`
/// may add.
pub const MAX_NODES_PER_REQUEST: i64 = 20;
/// The longest ClientToken accepted.
pub(crate) const MAX_CLIENT_TOKEN_LEN: usize = 64;

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
    /// `ScaleOutCluster`.
    ScaleOutCluster,
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
    pub(crate) const ALL: [Action; 8] = [
        Self::ScaleOutInstance,
        Self::ScaleOutCluster,
        Self::DescribeInstances,
        Self::DescribeClusterFlowStatusDetail,
        Self::DescribeClusterNodes,
        Self::TerminateClusterNodes,
        Self::DescribeAutoScaleGroupGlobalConf,
        Self::DescribeAutoScaleStrategies,
    ];

    /// The action named by `X-TC-Action`, if served.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The API name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::ScaleOutInstance => "ScaleOutInstance",
            Self::ScaleOutCluster => "ScaleOutCluster",
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
    /// A `ScaleOutInstance` or `ScaleOutCluster`: adds nodes when it ends.
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
    /// The FlowId answered by a scale-out or `TerminateClusterNodes`.
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
    flows_started: u64,
    flows_failed: u64,
    task_added: u64,
    core_added: u64,
    removed: u64,
    strategies: Vec<BuiltinStrategy>,
    /// What a `ScaleOutCluster` without `ResourceSpec` buys.
    instance_type: String,
    /// Where a `ScaleOutCluster` without `Zone` buys.
    zone: String,
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
    /// The nodes a scale-out adds, but for Flag, ids and ApplyTime (its
    /// Tags, ChargeType and offering).
    template: SimNode,
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

    #[cfg(test)]
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
    /// CVM stock rules for `ScaleOutCluster`, in the order set.
    stock: Vec<StockRule>,
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
                    flows_started: 0,
                    flows_failed: 0,
                    task_added: 0,
                    core_added: 0,
                    removed: 0,
                    strategies,
                    instance_type: c.instance_type.clone(),
                    zone: c.zone.clone(),
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
            stock: Vec::new(),
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
            Action::ScaleOutCluster => self.scale_out_cluster(&p, now, wall, hooks),
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
    /// request's Tags, ChargeType its PayMode or charge type, the offering
    /// of a `ScaleOutCluster`, ApplyTime the flow's start);
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
                        let mut node = flow.template.clone().with_flag(flag);
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
}

/// The parts of a cluster a test may set directly.
pub(crate) struct ClusterKnobs<'a> {
    pub(crate) flow_duration: &'a mut Option<Duration>,
    pub(crate) strategies: &'a mut Vec<BuiltinStrategy>,
}

/// Checks a `ScaleOutCluster` body as the simulator does before it looks at
/// any cluster: against the SDK's request model (a key the model does not
/// have, at the top or inside `ScaleOutNodeConfig`, `ResourceSpec` or a
/// `Tag`, is `UnknownParameter`; a value of the wrong JSON type
/// `InvalidParameter`), then the required fields and the rules on values.
/// `Err` carries the error code and message the simulator would answer.
pub fn check_scale_out_cluster_body(body: &Value) -> Result<(), BodyRejection> {
    let Some(params) = body.as_object() else {
        return Err(ApiError::InvalidParameter("the body is not a JSON object".into()).into());
    };
    scale_out_cluster::validate(params)
        .map(drop)
        .map_err(BodyRejection::from)
}
