//! The durable records: what the daemon remembers per cluster (cooldowns,
//! the orders that count in budgets, the operation in flight with the intent
//! of its current chunk, pause and breaker state, schedule actions served,
//! recent arrivals), and the pure helpers that read them at a given `now`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::SCHEMA_VERSION;

/// How long orders are kept for budgets: a 24-hour budget window plus an hour
/// of slack.
pub(crate) const ORDER_RETENTION: TimeDelta = TimeDelta::hours(25);

/// Everything the daemon remembers, per cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The schema version; always [`SCHEMA_VERSION`] once loaded, and always
    /// written as [`SCHEMA_VERSION`] whatever it holds.
    pub schema_version: u32,
    /// Per-cluster state, keyed by EMR instance id.
    pub clusters: BTreeMap<String, ClusterState>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            clusters: BTreeMap::new(),
        }
    }
}

impl State {
    /// The state of cluster `id`, inserting an empty one if there is none.
    pub fn cluster_mut(&mut self, id: &str) -> &mut ClusterState {
        self.clusters.entry(id.to_owned()).or_default()
    }

    /// The state of cluster `id`, if any was recorded.
    pub fn cluster(&self, id: &str) -> Option<&ClusterState> {
        self.clusters.get(id)
    }
}

/// What the daemon remembers about one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterState {
    /// Nothing is sent before this instant (except to restore a schedule floor).
    pub cooldown_until: Option<DateTime<Utc>>,
    /// When each rule with its own cooldown last fired, by rule name.
    pub rule_last_fired: BTreeMap<String, DateTime<Utc>>,
    /// Orders placed, daemon and manual, for budgets. Pruned by
    /// [`ClusterState::prune_orders`].
    pub orders: Vec<OrderRecord>,
    /// The operation in flight; at most one per cluster.
    pub operation: Option<Operation>,
    /// Scaling is paused by an operator.
    pub paused: bool,
    /// The circuit breaker is open: why and since when.
    pub breaker_open: Option<BreakerTrip>,
    /// Rule name -> start of the schedule window already served by a one-shot add.
    pub schedule_done: BTreeMap<String, DateTime<Utc>>,
    /// No orders until this instant: a sold-out answer or an error that
    /// asks to wait. Files written before the name changed call it
    /// `sold_out_until`.
    #[serde(alias = "sold_out_until")]
    pub backoff_until: Option<DateTime<Utc>>,
    /// Offerings refused outright (sold out, a spec or zone that does not
    /// fit), each unavailable until its time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unavailable: BTreeMap<String, DateTime<Utc>>,
    /// Which offering each task node this daemon ordered through one came
    /// from, by machine id (`OrderNo`): kept here, so it is known after any
    /// restart (the node list says nothing of spot).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_offerings: BTreeMap<String, String>,
    /// Chunks through an offering whose nodes arrived and are not matched
    /// to machine ids yet (the next node-list read does it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmatched: Vec<Unmatched>,
    /// Nodes that arrived recently, for the settle window; pruned with
    /// [`ClusterState::prune_arrivals`].
    pub arrivals: Vec<Arrival>,
    /// When the last operation (scale-out or scale-in) ended; the scale-in
    /// cooldown runs from it.
    #[serde(default)]
    pub last_operation_end: Option<DateTime<Utc>>,
    /// How long recent scale-out flows took, whole seconds, oldest first
    /// (at most ten): a capacity rule's automatic horizon reads their median.
    #[serde(default)]
    pub scale_out_secs: Vec<u64>,
}

/// Nodes whose scale-out ended, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// When their chunk ended (the injected clock).
    pub at: DateTime<Utc>,
    /// How many.
    pub nodes: u32,
}

impl ClusterState {
    /// Remembers that a scale-out flow took `took`; keeps the newest ten.
    pub(crate) fn record_scale_out(&mut self, took: TimeDelta) {
        let keep = crate::policy::capacity::SCALE_OUT_MEMORY;
        self.scale_out_secs
            .push(u64::try_from(took.num_seconds()).unwrap_or(0));
        let extra = self.scale_out_secs.len().saturating_sub(keep);
        self.scale_out_secs.drain(..extra);
    }

    /// The median of the recent scale-out flows' durations.
    pub(crate) fn scale_out_median(&self) -> Option<std::time::Duration> {
        crate::policy::capacity::median_scale_out(&self.scale_out_secs)
    }

    /// Drops arrivals older than `settle` before `now`.
    pub(crate) fn prune_arrivals(&mut self, now: DateTime<Utc>, settle: TimeDelta) {
        self.arrivals.retain(|a| now - a.at < settle);
    }
}

/// Nodes that arrived through an offering, not yet matched to machine ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unmatched {
    /// The offering.
    pub offering: String,
    /// How many nodes.
    pub nodes: u32,
    /// When the chunk was first sent: its nodes were applied for since.
    pub since: DateTime<Utc>,
}

/// The offerings an order may go through now, in order, and those skipped
/// (each with the time it is unavailable until).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offers {
    /// Available, in order of preference.
    pub usable: Vec<String>,
    /// Refused outright not long ago: unavailable until then.
    pub skipped: Vec<(String, DateTime<Utc>)>,
}

impl ClusterState {
    /// Splits `names` (the configured offerings, in order) into those an
    /// order may use at `now` and those still unavailable.
    pub fn offers<'a>(
        &self,
        names: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> Offers {
        let mut offers = Offers::default();
        for name in names {
            match self.unavailable.get(name) {
                Some(until) if *until > now => offers.skipped.push((name.to_string(), *until)),
                _ => offers.usable.push(name.to_string()),
            }
        }
        offers
    }
}

impl ClusterState {
    /// Drops orders older than [`ORDER_RETENTION`] before `now`. Orders dated
    /// after `now` (a clock step backwards) are kept.
    pub(crate) fn prune_orders(&mut self, now: DateTime<Utc>) {
        let Some(cutoff) = now.checked_sub_signed(ORDER_RETENTION) else {
            return; // `now` is near the start of time: nothing can be that old.
        };
        self.orders.retain(|o| o.at >= cutoff);
    }
}

/// Who placed an order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// The daemon's own decision.
    #[default]
    Daemon,
    /// The `scale-out` command.
    Manual,
}

/// One ScaleOutInstance request that was sent (or may have been), for budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// Task nodes ordered.
    pub nodes: u32,
    /// Its ClientToken.
    pub client_token: String,
    /// Who placed it.
    pub source: OrderSource,
}

/// Why and when the circuit breaker opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerTrip {
    /// When it opened.
    pub at: DateTime<Utc>,
    /// Why, for operators.
    pub reason: String,
    /// The flow that outlived its limit; the breaker closes when it ends.
    #[serde(default)]
    pub flow_id: Option<i64>,
}

impl ClusterState {
    /// Closes the breaker if `flow` opened it: that flow has ended.
    pub(crate) fn flow_ended(&mut self, flow: i64) {
        if self
            .breaker_open
            .as_ref()
            .is_some_and(|b| b.flow_id == Some(flow))
        {
            self.breaker_open = None;
        }
    }
}

/// One decision, split into chunks of at most 20 nodes that are sent one after
/// another, each once the previous flow is done. The transitions live in
/// `daemon::operation`; this is the record kept on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// A UUID naming the operation.
    pub id: String,
    /// When the decision was taken.
    pub created_at: DateTime<Utc>,
    /// Planned chunk sizes, in order.
    pub chunks: Vec<u32>,
    /// Index of the chunk being sent, or the next one to send.
    pub next_chunk: usize,
    /// Task-node count before the operation.
    pub task_nodes_before: u32,
    /// Why, for operators.
    pub reason: String,
    /// The intent of the chunk being sent; written before the request.
    #[serde(default)]
    pub current: Option<ChunkIntent>,
    /// Nodes of chunks whose flow finished.
    #[serde(default)]
    pub completed_nodes: u32,
    /// Task or core nodes.
    #[serde(default)]
    pub kind: NodeKind,
    /// Who asked for it.
    #[serde(default)]
    pub source: OrderSource,
    /// Nodes counted in budgets so far (chunks accepted or that may have executed).
    #[serde(default)]
    pub counted_nodes: u32,
    /// An operator paused the cluster: no further chunk is sent.
    #[serde(default)]
    pub stopping: bool,
    /// An operator resumed a stuck operation: reconcile it and close it.
    #[serde(default)]
    pub resolve: bool,
    /// The previous chunk ended then; the next one waits for a capacity
    /// snapshot taken after it, so its task-node count includes that chunk.
    #[serde(default)]
    pub wait_capacity_after: Option<DateTime<Utc>>,
    /// The rules this operation carries out, marked once its first chunk
    /// was accepted or may have executed.
    #[serde(default)]
    pub marks: RuleMarks,
    /// A scale-in: the named nodes (the operation then has one "chunk", the
    /// removal, and its intent carries no ClientToken).
    #[serde(default)]
    pub removal: Option<RemovalIntent>,
    /// The offerings its task-node chunks may go through, in order of
    /// preference (empty: ScaleOutInstance with the cluster's spec).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offerings: Vec<String>,
    /// Offerings that refused a chunk of this operation outright: never
    /// tried again by it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused_offerings: Vec<String>,
}

impl Operation {
    /// The offering the next chunk goes through: the first not refused;
    /// `None` without offerings, or once every one refused.
    pub(crate) fn next_offering(&self) -> Option<&str> {
        self.offerings
            .iter()
            .find(|o| !self.refused_offerings.contains(o))
            .map(String::as_str)
    }
}

/// A scale-in's node list, on disk before `TerminateClusterNodes` is sent. A
/// re-send names exactly these nodes minus those already gone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovalIntent {
    /// Machine ids (`OrderNo`) the removal was decided for.
    pub nodes: Vec<String>,
    /// Named nodes found gone before a re-send.
    #[serde(default)]
    pub gone: Vec<String>,
    /// `GraceDownTime`, seconds.
    pub grace_secs: u64,
}

impl RemovalIntent {
    /// The named nodes not yet found gone, in decision order.
    pub(crate) fn remaining(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| !self.gone.contains(n))
            .cloned()
            .collect()
    }
}

/// Task or core nodes: never both in one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// `TaskCount`.
    #[default]
    Task,
    /// `CoreCount`.
    Core,
}

/// What an operation records about its rules once it has ordered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleMarks {
    /// Rules whose vote it carries out (their own cooldowns start).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Schedule rules and the window start their one-shot add serves.
    #[serde(default)]
    pub schedule: Vec<(String, DateTime<Utc>)>,
    /// Whether the marks were applied.
    #[serde(default)]
    pub applied: bool,
}

impl Operation {
    /// Nodes of the current chunk, which has been sent or may have been;
    /// 0 when no chunk is current.
    pub fn in_flight_nodes(&self) -> u32 {
        self.current.as_ref().map_or(0, |c| c.nodes)
    }

    /// Whether every chunk has been sent and followed to its end.
    pub fn is_finished(&self) -> bool {
        self.next_chunk >= self.chunks.len() && self.current.is_none()
    }

    /// What makes the operation unusable, if anything: indexes that would
    /// point past the planned chunks.
    pub(super) fn check(&self) -> Result<(), BadOperation> {
        let (next_chunk, planned) = (self.next_chunk, self.chunks.len());
        if next_chunk > planned {
            return Err(BadOperation::PastPlan {
                next_chunk,
                planned,
            });
        }
        if self.current.is_some() && next_chunk >= planned {
            return Err(BadOperation::CurrentUnplanned {
                next_chunk,
                planned,
            });
        }
        Ok(())
    }
}

/// Why a stored [`Operation`] cannot be followed: its chunk indexes do not fit
/// its plan, so the state file holding it is refused as corrupt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum BadOperation {
    /// `next_chunk` points past the planned chunks.
    #[error("next_chunk {next_chunk} is past the {planned} planned chunks")]
    PastPlan {
        /// The stored `next_chunk`.
        next_chunk: usize,
        /// How many chunks were planned.
        planned: usize,
    },
    /// A chunk intent is current, but `next_chunk` names no planned chunk.
    #[error(
        "a chunk intent is current but next_chunk {next_chunk} names no planned chunk (of {planned})"
    )]
    CurrentUnplanned {
        /// The stored `next_chunk`.
        next_chunk: usize,
        /// How many chunks were planned.
        planned: usize,
    },
}

/// The intent of one chunk, written to disk BEFORE its request is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkIntent {
    /// The ClientToken the request carries, on every attempt.
    pub client_token: String,
    /// When the token was made, by the wall clock (the server keeps it 5 minutes).
    pub token_created_at: DateTime<Utc>,
    /// Task nodes requested.
    pub nodes: u32,
    /// Task-node count before this chunk.
    pub task_nodes_before: u32,
    /// The flow, once the API answered.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// When the API accepted the request.
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    /// How many times a send under this token was started (saved before each).
    #[serde(default)]
    pub sends: u32,
    /// The API accepted it (with or without a FlowId).
    #[serde(default)]
    pub accepted: bool,
    /// When it was first handed to the client.
    #[serde(default)]
    pub first_sent_at: Option<DateTime<Utc>>,
    /// It may have executed (no answer, or an answer that cannot tell) since then.
    #[serde(default)]
    pub unknown_since: Option<DateTime<Utc>>,
    /// Never re-send: judge it from the cluster once the cluster is idle.
    #[serde(default)]
    pub judge_only: bool,
    /// A capacity snapshot after acceptance showed the cluster scaling out.
    #[serde(default)]
    pub seen_busy: bool,
    /// The flow could not be read: the last error.
    #[serde(default)]
    pub flow_unreadable: Option<String>,
    /// The chunk outlived `flow_timeout` and opened the breaker.
    #[serde(default)]
    pub stuck: bool,
    /// The offering it goes through (ScaleOutCluster); `None`:
    /// ScaleOutInstance with the cluster's spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offering: Option<String>,
    /// The chunk counts in budgets (it was accepted or may have executed).
    #[serde(default)]
    pub counted: bool,
}
