//! A simulated Tencent Cloud EMR API server, for tests and the demo, and a
//! YARN ResourceManager stand-in for scale-in tests.
//!
//! It speaks the real wire protocol (see DESIGN.md, "Wire facts"): `POST /`
//! with a JSON body, `X-TC-*` headers, TC3-HMAC-SHA256 signatures checked by
//! its own verifier (`sign.rs`, which shares no code with the client signer), and the `{"Response":{..}}` envelope with HTTP
//! 200 for API errors too. It serves eight actions (version `2019-01-03`):
//! `ScaleOutInstance`, `ScaleOutCluster`, `DescribeInstances`,
//! `DescribeClusterFlowStatusDetail`, `DescribeClusterNodes`,
//! `TerminateClusterNodes`, `DescribeAutoScaleGroupGlobalConf` and
//! `DescribeAutoScaleStrategies`.
//!
//! # Public API
//!
//! ```text
//! SimConfig { clusters, credentials, required_token, flow_duration,
//!             rate_limit_per_second, rate_limit_window, fault_seed,
//!             fault_probability }                       (impl Default)
//! SimConfig::with_clusters(ids) -> SimConfig
//! SimCluster { instance_id, task_nodes, core_nodes, flow_duration, nodes, builtin,
//!              instance_type, zone }
//! SimCluster::new(id).with_task_nodes(n).with_core_nodes(n).with_flow_duration(d)
//!     .with_node(SimNode).with_builtin_strategy(BuiltinStrategy)
//!     .with_instance_type(t).in_zone(z)     // defaults S5.2XLARGE32, ap-guangzhou-3
//! SimNode { order_no, emr_resource_id, ip, flag, auto_flag, destroyable,
//!           disable_api_termination, charge_type, hardware_resource_type,
//!           apply_time: Option<DateTime<Utc>>, tags: Option<Vec<(String, String)>>,
//!           instance_type, zone, instance_charge_type: Option<String> }
//! SimNode::task() / core() / master()  .with_order_no(s) .with_emr_resource_id(s)
//!     .with_ip(s) .with_flag(f) .auto_scaled() .with_destroyable(bool) .protected()
//!     .monthly() .with_charge_type(c) .with_hardware_resource_type(s)
//!     .with_apply_time(t) .with_tag(k, v) .with_instance_type(t) .in_zone(z)
//!     .with_instance_charge_type(c) .spot();  has_tag(k, v), is_spot(), apply_time_text()
//! CHARGE_POSTPAID_BY_HOUR / CHARGE_SPOTPAID / CHARGE_PREPAID, DEFAULT_INSTANCE_TYPE, DEFAULT_ZONE
//! Stock::{Available, SoldOut, Insufficient}
//! check_scale_out_cluster_body(&Value) -> Result<(), BodyRejection { code, message }>
//! BuiltinStrategy { kind: StrategyKind::{Load, Time}, group_id: Option<i64>, id, name, status }
//! BuiltinStrategy::load(id, name) / time(id, name) .in_group(g) .with_status(s)
//!
//! Simulator::start(config, clock: SharedClock).await -> Result<SimHandle, StartError>   // 127.0.0.1:0
//! Simulator::start_on(addr, config, clock).await     -> Result<SimHandle, StartError>
//! serve_until(config, clock, addr, shutdown: impl Future<Output = ()>).await -> Result<(), StartError>
//!
//! SimHandle::addr() -> SocketAddr
//! SimHandle::endpoint() -> String                      // "http://127.0.0.1:PORT"
//! SimHandle::ledger() -> Ledger                         // every request, arrival order
//! SimHandle::inject(action, cluster: Option<&str>, fault: Fault)
//! SimHandle::set_standing_fault(action, cluster: Option<&str>, fault: Option<Fault>)
//! SimHandle::cluster(id) -> Option<ClusterSnapshot>     // settled at clock.now()
//! SimHandle::clusters() -> Vec<ClusterSnapshot>
//! SimHandle::flow(flow_id) -> Option<FlowSnapshot>
//! SimHandle::nodes(id) -> Option<Vec<SimNode>>          // settled at clock.now()
//! SimHandle::set_task_nodes(id, n) / set_core_nodes(id, n) -> bool
//! SimHandle::add_node(id, SimNode) -> Option<String>    // the node's OrderNo
//! SimHandle::update_node(id, order_no, impl FnOnce(&mut SimNode)) -> bool
//! SimHandle::set_node_gone(id, order_no) -> bool
//! SimHandle::set_builtin_strategy(id, BuiltinStrategy) / clear_builtin(id) -> bool
//! SimHandle::set_flow_duration(id, Option<Duration>) -> bool
//! SimHandle::set_flow_before_token(bool)
//! SimHandle::set_stock(instance_type, zone: Option<&str>, charge: Option<&str>, Stock)
//! SimHandle::set_sold_out(instance_type, zone: Option<&str>, charge: Option<&str>, bool)
//! SimHandle::reclaim_spot(id, n) -> u32                 // spot task nodes removed
//! SimHandle::shutdown(self).await
//!
//! Ledger::entries() / for_action(a) / max_in_any_window(a, window) / count_code(a, code)
//! Ledger::flow_starts() / flows_started(cluster) / nodes_ordered(cluster)   // both scale-outs
//! Ledger::tokens_with_several_flows()
//! Ledger::terminations(cluster) -> Vec<Vec<String>> / nodes_removed(cluster) -> u64
//! Ledger::nodes_terminated_twice() -> Vec<String>
//! LedgerEntry::started_flow() / dropped() / error_code() / cvm_instance_ids()
//!     / start_service()
//!
//! YarnRm::start().await -> Result<YarnRm, StartError>   // 127.0.0.1:0
//! YarnRm::url() / addr() / set_nodes(Vec<YarnNode>) / set_apps(Vec<YarnApp>)
//! YarnRm::set_redirect(Option<String>) / requests() -> Vec<String> / shutdown(self).await
//! YarnNode::running(host, http_address, containers).with_state(s);  YarnApp::new(id, am_address)
//! ```
//!
//! # Behaviour
//!
//! - **Order of checks** for each request: signature (wall clock, ±300 s),
//!   `X-TC-Version`, `X-TC-Region`, `X-TC-Action`, JSON body, per-action rate
//!   limit, injected fault, then the action itself.
//! - **Flows** run on the injected [`SharedClock`]
//!   and are settled lazily on every request and snapshot, so a
//!   [`ManualClock`](crate::clock::ManualClock) makes them deterministic.
//!   Scale-out and scale-in flows share one FlowId space and one flow per
//!   cluster at a time. A scale-out (`ScaleOutInstance` or
//!   `ScaleOutCluster`) sets the cluster to status 4;
//!   when its flow ends, status goes back to 2 and the nodes arrive (or, for
//!   a failed flow, status 302 and no nodes).
//! - **Nodes**: each cluster lists one master, `core_nodes` core nodes,
//!   `task_nodes` untagged task nodes (ApplyTimes a minute apart, oldest
//!   first) and then [`SimCluster::nodes`]. Machine ids (`ins-` + 8), EMR
//!   resource ids (`emr-vm-` + 8) and IPs (`10.0.x.y`) are unique per
//!   simulator and the same on every run. `TaskNodeSize`, `CoreNodeSize`
//!   and `MasterNodeSize` count the list. A finished scale-out appends its
//!   nodes: Flag 3 (or 2), AutoFlag 0, Destroyable 1, ChargeType = PayMode
//!   (`ScaleOutCluster`: 1 for PREPAID, else 0), the request's `Tags` (null
//!   without), ApplyTime = the flow's start; a `ScaleOutCluster`'s nodes
//!   also carry the offering: `Spec` the instance type (`CpuNum`, `MemSize`,
//!   `MemDesc` read from it), `Zone` and `ZoneId`, and on the [`SimNode`]
//!   the charge type. Other nodes answer `CVM.S5` in `ap-guangzhou-3`.
//! - **ScaleOutCluster** checks, each refusal executing nothing: the body
//!   against the SDK's request model (a key it lacks, at the top or inside
//!   `ScaleOutNodeConfig`, `ResourceSpec` or a `Tag`: `UnknownParameter`
//!   naming it; a wrong JSON type: `InvalidParameter`), then
//!   `InstanceId`, `InstanceChargeType`, `ScaleOutNodeConfig.NodeFlag` and
//!   `.NodeCount` present (`MissingParameter`), `InstanceChargeType`
//!   PREPAID, POSTPAID_BY_HOUR or SPOTPAID (`InvalidParameter.InvalidPaymode`),
//!   `NodeFlag` TASK or CORE (MASTER, ROUTER: `UnsupportedOperation`; others
//!   `InvalidParameter.InvalidNodeType`), SPOTPAID only for TASK
//!   (`InvalidParameter.PayModeResourceNotMatch`), `NodeCount` 1 to 20 (as
//!   `TaskCount`/`CoreCount`), `InstanceChargePrepaid` for PREPAID, the
//!   ClientToken, `Tags`, a non-empty `ResourceSpec.InstanceType`
//!   (`InvalidParameter.InvalidInstanceType`) and `Zone`
//!   (`InvalidParameter.InvalidZone`) ([`check_scale_out_cluster_body`] runs
//!   just these); then the cluster, the running flow and the ClientToken as
//!   for `ScaleOutInstance`, and last the stock of the offering (instance
//!   type, default the cluster's; zone, default the cluster's; charge type):
//!   [`SimHandle::set_stock`] makes it `ResourcesSoldOut.CvmSoldOut` or
//!   `ResourceInsufficient.InstanceInsufficient`. It answers
//!   `{"InstanceId","ClientToken","FlowId","TraceId","DealNames","BillId","RequestId"}`.
//!   Whether `EnableStartServiceFlag` was true is in the ledger
//!   ([`LedgerEntry::start_service`], [`FlowStart::start_service`]).
//! - **Spot reclamation** ([`SimHandle::reclaim_spot`]): spot task nodes
//!   vanish at once, newest first; no flow, not counted as scale-in.
//! - **DescribeClusterNodes**: `NodeFlag` all, master, core, task, common or
//!   router (else `InvalidParameter.InvalidNodeType`); `Offset` is a *page
//!   index* from 0 and `Limit` the page size, 1 to 100 (default 100);
//!   `TotalCnt` counts the matching nodes, `NodeList` is null for an empty page.
//! - **TerminateClusterNodes** checks, in this order, each refusal executing
//!   nothing: the parameters (`CvmInstanceIds` a non-empty list of distinct
//!   strings, `NodeFlag` exactly `"TASK"`, `GraceDownTime` 60 to 1800 when
//!   `GraceDownFlag` is true: `InvalidParameter`; absent ones
//!   `MissingParameter`), the cluster (`ResourceNotFound.ClusterNotFound`),
//!   busy (a flow runs, or status is not 2: `ResourceInUse.InstanceInProcess`),
//!   every id listed in the cluster (`ResourceNotFound.InstanceNotFound`), then
//!   for each node Flag 3 (`InvalidParameter.InvalidNodeType`), Destroyable 1
//!   (`InvalidParameter.NodeNotDestroyable`), DisableApiTermination false
//!   (`InvalidParameter.TerminationProtected`), ChargeType 0
//!   (`InvalidParameter.PrepaidNode`); every message names the node.
//!   AutoFlag is not checked (the API does not refuse such nodes). On
//!   success it answers `{"FlowId","RequestId"}` and starts a scale-in flow
//!   of `GraceDownTime` seconds (1 s without `GraceDownFlag`); the cluster is
//!   at status 24 and the nodes stay listed until the flow ends, when they
//!   are removed and status goes back to 2. There is no ClientToken.
//! - **Tencent's own auto-scaling**: `DescribeAutoScaleStrategies` answers a
//!   cluster's strategies (only those of `GroupId`, when given) in
//!   `LoadAutoScaleStrategies` and `TimeBasedAutoScaleStrategies`;
//!   `DescribeAutoScaleGroupGlobalConf` lists one group per distinct group id
//!   among them (`Id`, `GroupName` `group-<id>`, `CurrentNodes` 0) and
//!   `TotalCount`. None by default.
//! - **ClientToken** (both scale-outs, one token map): a token seen in a
//!   request that started a flow within
//!   the last 5 minutes of *wall* time gets the original answer again (same
//!   FlowId, DealNames, BillId; new RequestId) and adds nothing. It is checked
//!   after validation and before the busy check. Tokens of rejected requests
//!   are not remembered.
//! - **Rate limit**: `rate_limit_per_second` admitted requests per action in
//!   any `rate_limit_window` (sliding log, real time); more are answered
//!   `RequestLimitExceeded` and do not use up quota. 0 disables it.
//! - **Paging**: `DescribeInstances` returns 10 clusters unless `Limit`
//!   (1 to 100) says otherwise; `DescribeClusterNodes` returns 100.
//! - **Faults**: see [`Fault`]. Scripted faults are taken by the next request
//!   matching the action (and cluster); flow faults by the next flow that a
//!   request of the action they were queued for starts: queued for
//!   `TerminateClusterNodes`, `SlowFlow(d)` makes the next scale-in last `d`
//!   and `FailFlow` fails it at its end (flow -1, status back to 2, every
//!   node kept); queued for `ScaleOutCluster`, they change its next flow
//!   (and not a `ScaleOutInstance`'s). A lost answer (`DropAfterExecute`)
//!   after a `TerminateClusterNodes` still removes the nodes when the flow ends.
//!   With `fault_probability > 0`, each admitted request may also get
//!   a random fault (never `Delay`) from an RNG seeded with `fault_seed`;
//!   for `TerminateClusterNodes` only a lost answer, a 502/503,
//!   `InternalError` or `RequestLimitExceeded`; for `ScaleOutCluster` also
//!   `ResourceInsufficient.InstanceInsufficient`.
//! - **Ledger**: [`Ledger::flow_starts`] lists both scale-outs' orders that
//!   started a flow ([`FlowStart::action`]); [`Ledger::terminations`] and [`Ledger::nodes_removed`] count
//!   the `TerminateClusterNodes` requests that started a flow (what was
//!   ordered); [`ClusterSnapshot::nodes_removed`] counts what finished
//!   scale-in flows really removed.
//! - **YARN stand-in** ([`YarnRm`]): `GET /ws/v1/cluster/nodes` and
//!   `GET /ws/v1/cluster/apps?states=RUNNING` with YARN's JSON shapes
//!   (`{"nodes":null}` / `{"apps":null}` when empty), serving exactly what
//!   was set; with a redirect set it answers 307 like a standby RM.

mod builtin;
mod engine;
mod error;
mod fault;
mod ledger;
mod limit;
mod node;
mod server;
mod sign;
mod yarn;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::clock::SharedClock;

pub use builtin::{BuiltinStrategy, STRATEGY_INVALID, STRATEGY_OFF, STRATEGY_ON, StrategyKind};
pub use engine::{
    Action, CLIENT_TOKEN_TTL, ClusterSnapshot, FLOW_DONE, FLOW_FAILED, FLOW_INIT, FLOW_RUNNING,
    FlowKind, FlowSnapshot, GRACE_DOWN_SECONDS, MAX_NODES_PER_REQUEST, NODES_PAGE_MAX,
    QUICK_SCALE_IN, STATUS_RUNNING, STATUS_SCALE_OUT_FAILED, STATUS_SCALING_IN, STATUS_SCALING_OUT,
    Stock, TERMINATE_NODE_FLAG, check_scale_out_cluster_body,
};
pub use error::BodyRejection;
pub(crate) use error::StartError;
pub use fault::Fault;
pub use ledger::{FlowStart, Handled, Ledger, LedgerEntry};
pub use node::{
    APPLY_TIME_FORMAT, CHARGE_POSTPAID_BY_HOUR, CHARGE_PREPAID, CHARGE_SPOTPAID,
    DEFAULT_INSTANCE_TYPE, DEFAULT_ZONE, NODE_FLAG_COMMON, NODE_FLAG_CORE, NODE_FLAG_MASTER,
    NODE_FLAG_TASK, SimNode,
};
pub use yarn::{YarnApp, YarnNode, YarnRm};

/// The SecretId the default config accepts.
pub const DEFAULT_SECRET_ID: &str = "AKIDSIMULATOR00000000000000000000000";
/// The SecretKey that goes with [`DEFAULT_SECRET_ID`]. Not a secret.
pub const DEFAULT_SECRET_KEY: &str = "simulator-secret-key-000000000000";

/// How long a graceful shutdown may take before the server task is aborted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One simulated cluster at start-up.
///
/// Its node list is one master node, `core_nodes` core nodes, `task_nodes`
/// untagged task nodes (distinct ApplyTimes, oldest first), then `nodes` in
/// order; `TaskNodeSize` counts every Flag-3 node of that list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimCluster {
    /// The `emr-xxxxxxxx` id.
    pub instance_id: String,
    /// Generated task nodes.
    pub task_nodes: u32,
    /// Generated core nodes.
    pub core_nodes: u32,
    /// This cluster's provisioning time; `None` uses [`SimConfig::flow_duration`].
    pub flow_duration: Option<Duration>,
    /// Nodes listed after the generated ones, exactly as given (empty ids
    /// and a `None` ApplyTime are filled in).
    pub nodes: Vec<SimNode>,
    /// Tencent's own auto-scaling strategies at start-up.
    pub builtin: Vec<BuiltinStrategy>,
    /// The instance type a `ScaleOutCluster` without `ResourceSpec` buys.
    pub instance_type: String,
    /// The zone a `ScaleOutCluster` without `Zone` buys in (also
    /// `DescribeInstances`' `Zone`).
    pub zone: String,
}

impl SimCluster {
    /// A running cluster with no task nodes and 3 core nodes, buying
    /// [`DEFAULT_INSTANCE_TYPE`] in [`DEFAULT_ZONE`].
    pub fn new(instance_id: impl Into<String>) -> Self {
        Self {
            instance_id: instance_id.into(),
            task_nodes: 0,
            core_nodes: 3,
            flow_duration: None,
            nodes: Vec::new(),
            builtin: Vec::new(),
            instance_type: DEFAULT_INSTANCE_TYPE.to_owned(),
            zone: DEFAULT_ZONE.to_owned(),
        }
    }

    /// Sets the instance type a `ScaleOutCluster` without `ResourceSpec` buys.
    pub fn with_instance_type(mut self, instance_type: impl Into<String>) -> Self {
        self.instance_type = instance_type.into();
        self
    }

    /// Sets the cluster's zone.
    pub fn in_zone(mut self, zone: impl Into<String>) -> Self {
        self.zone = zone.into();
        self
    }

    /// Sets the starting count of generated task nodes.
    pub fn with_task_nodes(mut self, n: u32) -> Self {
        self.task_nodes = n;
        self
    }

    /// Adds one node, listed after the generated ones.
    pub fn with_node(mut self, node: SimNode) -> Self {
        self.nodes.push(node);
        self
    }

    /// Adds one of Tencent's own auto-scaling strategies (replacing one with
    /// the same id).
    pub fn with_builtin_strategy(mut self, strategy: BuiltinStrategy) -> Self {
        builtin::upsert(&mut self.builtin, strategy);
        self
    }

    #[cfg(test)]
    /// Sets this cluster's provisioning time.
    pub(crate) fn with_flow_duration(mut self, d: Duration) -> Self {
        self.flow_duration = Some(d);
        self
    }
}

/// Everything the simulator needs to start.
#[derive(Clone)]
pub struct SimConfig {
    /// The clusters; ids must be unique.
    pub clusters: Vec<SimCluster>,
    /// Accepted `(SecretId, SecretKey)` pairs; at least one.
    pub credentials: Vec<(String, String)>,
    /// When set, every request must carry this `X-TC-Token`.
    pub required_token: Option<String>,
    /// Default provisioning time of a scale-out flow (simulation clock).
    pub flow_duration: Duration,
    /// Admitted requests per action per `rate_limit_window`; 0 disables the limit.
    pub rate_limit_per_second: u32,
    /// The rate limit's sliding window (real time); normally 1 s.
    pub rate_limit_window: Duration,
    /// Seed of the random-fault RNG; `None` picks one.
    pub fault_seed: Option<u64>,
    /// Probability (0 to 1) that an admitted request gets a random fault.
    pub fault_probability: f64,
}

impl Default for SimConfig {
    /// One cluster `emr-sim00001` (2 task, 3 core nodes), the default
    /// credentials, 60 s flows, 20 requests per second, no faults.
    fn default() -> Self {
        Self {
            clusters: vec![SimCluster::new("emr-sim00001").with_task_nodes(2)],
            credentials: vec![(DEFAULT_SECRET_ID.to_owned(), DEFAULT_SECRET_KEY.to_owned())],
            required_token: None,
            flow_duration: Duration::from_secs(60),
            rate_limit_per_second: 20,
            rate_limit_window: Duration::from_secs(1),
            fault_seed: None,
            fault_probability: 0.0,
        }
    }
}

impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.credentials.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("SimConfig")
            .field("clusters", &self.clusters)
            .field("credential_ids", &ids)
            .field(
                "required_token",
                &self.required_token.as_ref().map(|_| "***"),
            )
            .field("flow_duration", &self.flow_duration)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_window", &self.rate_limit_window)
            .field("fault_seed", &self.fault_seed)
            .field("fault_probability", &self.fault_probability)
            .finish()
    }
}

impl SimConfig {
    /// The default config with these clusters instead (no task nodes, 3 core
    /// nodes each). Handy for a `--clusters a,b` flag.
    pub fn with_clusters<I, S>(ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            clusters: ids.into_iter().map(SimCluster::new).collect(),
            ..Self::default()
        }
    }

    /// Checks the config for contradictions.
    pub(crate) fn validate(&self) -> Result<(), StartError> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.clusters {
            if c.instance_id.is_empty() {
                return Err(StartError::Config(
                    "a cluster has an empty instance_id".into(),
                ));
            }
            if c.instance_type.trim().is_empty() || c.zone.trim().is_empty() {
                return Err(StartError::Config(format!(
                    "cluster {} has an empty instance_type or zone",
                    c.instance_id
                )));
            }
            if !seen.insert(c.instance_id.as_str()) {
                return Err(StartError::Config(format!(
                    "cluster {} is listed twice",
                    c.instance_id
                )));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (c, node) in self
            .clusters
            .iter()
            .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
        {
            for id in [&node.order_no, &node.emr_resource_id, &node.ip] {
                if !id.is_empty() && !ids.insert(id.as_str()) {
                    return Err(StartError::Config(format!(
                        "node id {id} is used twice (cluster {})",
                        c.instance_id
                    )));
                }
            }
        }
        if self.credentials.is_empty() {
            return Err(StartError::Config(
                "at least one credential is needed".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.fault_probability) {
            return Err(StartError::Config(format!(
                "fault_probability must be between 0 and 1, got {}",
                self.fault_probability
            )));
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_window.is_zero() {
            return Err(StartError::Config(
                "rate_limit_window must be positive".into(),
            ));
        }
        Ok(())
    }
}

/// Starts simulators.
#[derive(Debug, Clone, Copy)]
pub struct Simulator;

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a free port.
    pub async fn start(config: SimConfig, clock: SharedClock) -> Result<SimHandle, StartError> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config, clock).await
    }

    /// Starts a simulator on `addr`. It serves in a background task until
    /// [`SimHandle::shutdown`] or until the handle is dropped.
    pub(crate) async fn start_on(
        addr: SocketAddr,
        config: SimConfig,
        clock: SharedClock,
    ) -> Result<SimHandle, StartError> {
        config.validate()?;
        let listener = server::SimListener::bind(addr).await?;
        let bound = listener
            .local_socket()
            .map_err(|source| StartError::Bind { addr, source })?;
        let shared = Arc::new(server::Shared::new(&config, clock));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        info!(message = "Simulator listening.", addr = %bound, clusters = config.clusters.len());
        Ok(SimHandle {
            addr: bound,
            shared,
            task: Some(task),
        })
    }
}

/// Waits for the server task, aborting it after [`SHUTDOWN_GRACE`].
async fn finish(mut task: JoinHandle<std::io::Result<()>>) {
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await {
        Ok(Ok(Ok(()))) => info!(message = "Simulator stopped."),
        Ok(Ok(Err(error))) => warn!(message = "Simulator stopped with an error.", %error),
        Ok(Err(error)) => warn!(message = "Simulator task failed.", %error),
        Err(_) => {
            warn!(message = "Simulator did not stop in time; aborting.");
            task.abort();
        }
    }
}

/// A running simulator. Dropping it stops the server.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<server::Shared>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A copy of the ledger: every request received so far, in arrival order.
    pub fn ledger(&self) -> Ledger {
        Ledger::new(self.shared.lock().ledger.clone())
    }

    /// Queues `fault` for the next request of `action` naming `cluster` (any
    /// request of `action` when `None`). [`Fault::SlowFlow`] and
    /// [`Fault::FailFlow`] wait instead for the next flow on `cluster`.
    pub fn inject(&self, action: &str, cluster: Option<&str>, fault: Fault) {
        info!(message = "Fault queued.", action, cluster = cluster.unwrap_or("*"), fault = ?fault);
        self.shared.lock().faults.push(action, cluster, fault);
    }

    /// Makes every request of `action` naming `cluster` (any request of
    /// `action` when `None`) meet `fault` until called again with `None`:
    /// an action the account may not call, one that is always slow. A fault
    /// queued with [`SimHandle::inject`] still goes first.
    pub fn set_standing_fault(&self, action: &str, cluster: Option<&str>, fault: Option<Fault>) {
        info!(message = "Standing fault set.", action, cluster = cluster.unwrap_or("*"), fault = ?fault);
        self.shared
            .lock()
            .faults
            .set_standing(action, cluster, fault);
    }

    /// A cluster's state at the clock's current time.
    pub fn cluster(&self, id: &str) -> Option<ClusterSnapshot> {
        let now = self.shared.clock.now();
        self.shared.lock().engine.cluster(id, now)
    }

    /// Makes the cluster list `n` task nodes (as if changed elsewhere):
    /// adds untagged task nodes (ApplyTime the clock's now), or drops
    /// untagged ones no scale-in is removing, newest first, then others.
    /// False when the cluster does not exist.
    pub fn set_task_nodes(&self, id: &str, n: u32) -> bool {
        let now = self.shared.clock.now();
        self.shared
            .lock()
            .engine
            .set_count(id, NODE_FLAG_TASK, n, now)
    }

    /// A cluster's node list at the clock's current time, in
    /// `DescribeClusterNodes` order. `None` when the cluster does not exist.
    pub fn nodes(&self, id: &str) -> Option<Vec<SimNode>> {
        let now = self.shared.clock.now();
        self.shared.lock().engine.nodes(id, now)
    }

    /// Adds a node to a cluster's list (missing ids filled in, ApplyTime the
    /// clock's now when unset). Its machine id (`OrderNo`), or `None` when the
    /// cluster does not exist.
    pub fn add_node(&self, id: &str, node: SimNode) -> Option<String> {
        let now = self.shared.clock.now();
        self.shared.lock().engine.add_node(id, node, now)
    }

    /// Changes one listed node in place (turn protection on, retag it, ...).
    /// False when the cluster or the node does not exist.
    pub fn update_node(&self, id: &str, order_no: &str, change: impl FnOnce(&mut SimNode)) -> bool {
        self.shared.lock().engine.update_node(id, order_no, change)
    }

    /// Makes a node vanish from the cluster's list, as if a person had
    /// removed it (no flow; not counted in
    /// [`ClusterSnapshot::nodes_removed`]). False when the cluster or the
    /// node does not exist.
    pub fn set_node_gone(&self, id: &str, order_no: &str) -> bool {
        self.shared.lock().engine.node_gone(id, order_no)
    }

    /// Adds or replaces (by [`BuiltinStrategy::id`]) one of Tencent's own
    /// auto-scaling strategies on the cluster; a strategy with a group id
    /// also lists that group. False when the cluster does not exist.
    pub fn set_builtin_strategy(&self, id: &str, strategy: BuiltinStrategy) -> bool {
        self.shared
            .lock()
            .engine
            .modify(id, |k| builtin::upsert(k.strategies, strategy))
    }

    /// Removes every strategy (and so every group) of Tencent's own
    /// auto-scaling from the cluster. False when the cluster does not exist.
    pub fn clear_builtin(&self, id: &str) -> bool {
        self.shared
            .lock()
            .engine
            .modify(id, |k| k.strategies.clear())
    }

    /// Sets the provisioning time of the cluster's future flows (`None`: the
    /// config default). False when the cluster does not exist.
    pub fn set_flow_duration(&self, id: &str, d: Option<Duration>) -> bool {
        self.shared
            .lock()
            .engine
            .modify(id, |k| *k.flow_duration = d)
    }

    /// Checks a cluster's running flow before the ClientToken (`true`), as
    /// some API servers do, or the token first (`false`, the default).
    pub fn set_flow_before_token(&self, on: bool) {
        self.shared.lock().engine.flow_before_token = on;
    }

    /// Sets what a `ScaleOutCluster` for `instance_type` meets, in `zone`
    /// and for the charge type `charge` (`None`: any): [`Stock::SoldOut`]
    /// answers `ResourcesSoldOut.CvmSoldOut`, [`Stock::Insufficient`]
    /// `ResourceInsufficient.InstanceInsufficient`, neither executing
    /// anything. The most specific setting matching an order decides
    /// (between equally specific ones, the last set); replaces the setting
    /// for the same `(instance_type, zone, charge)`.
    pub fn set_stock(
        &self,
        instance_type: &str,
        zone: Option<&str>,
        charge: Option<&str>,
        stock: Stock,
    ) {
        self.shared.lock().engine.set_stock(engine::StockRule {
            instance_type: instance_type.to_owned(),
            zone: zone.map(str::to_owned),
            charge: charge.map(str::to_owned),
            stock,
        });
    }

    /// [`SimHandle::set_stock`] with [`Stock::SoldOut`] (`true`) or
    /// [`Stock::Available`] (`false`).
    pub fn set_sold_out(
        &self,
        instance_type: &str,
        zone: Option<&str>,
        charge: Option<&str>,
        sold_out: bool,
    ) {
        let stock = if sold_out {
            Stock::SoldOut
        } else {
            Stock::Available
        };
        self.set_stock(instance_type, zone, charge, stock);
    }

    /// Reclaims up to `n` spot (`SPOTPAID`) task nodes of the cluster at
    /// once, as Tencent Cloud does when it takes spot capacity back: they
    /// vanish from the list (newest first), no flow runs and the task count
    /// drops. How many went; 0 when the cluster does not exist.
    pub fn reclaim_spot(&self, id: &str, n: u32) -> u32 {
        let now = self.shared.clock.now();
        self.shared.lock().engine.reclaim_spot(id, n, now)
    }

    /// Stops accepting requests, lets in-flight ones finish (up to 5 s) and
    /// waits for the server to stop.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.cancel();
        if let Some(task) = self.task.take() {
            finish(task).await;
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
    }
}
