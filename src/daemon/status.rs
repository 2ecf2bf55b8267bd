//! What the admin server shows: per-cluster status, readiness reasons and
//! loop progress for `/healthz` and the watchdog.
//!
//! # Rules
//! - Liveness is the process, readiness is the world. `/healthz` and WATCHDOG=1 fail
//!   only when an owner or the capacity poller has neither completed a step nor been
//!   waiting on a call still inside that call's own timeout (`InCall` guards; an EMR
//!   call's is `TencentConfig::call_within`, retries included) for 3 x
//!   evaluation_interval + 10 s. Slow or failing APIs show on `/readyz` (labels:
//!   data_error, capacity_unknown, auth, flow_unreadable, breaker, ...), status and
//!   metrics, never on liveness.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::SharedClock;

/// The last API error a cluster saw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ApiErrorStatus {
    /// The error class (`result` label).
    pub class: &'static str,
    /// The API code, if any.
    pub code: Option<String>,
    /// The RequestId, if any.
    pub request_id: Option<String>,
    /// The whole message.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One rule's vote, for `/api/v1/status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct VoteStatus {
    /// Rule name.
    pub rule: String,
    /// Latest value.
    pub value: Option<f64>,
    /// Nodes it asked for.
    pub increment: u32,
    /// Nodes it would give back (scale-in on only).
    pub removal: u32,
    pub outcome: &'static str,
    /// Its data problem, if any.
    pub data_issue: Option<&'static str>,
    /// A capacity rule's sizing (other rules: absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityStatus>,
}

/// How a capacity rule sized the cluster, in the query's unit.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct CapacityStatus {
    /// Demand, the query's value.
    pub demand: f64,
    /// Growth of demand per minute over the trend window (0 when falling).
    pub growth_per_minute: f64,
    /// How far ahead growth is projected, seconds.
    pub horizon_seconds: u64,
    /// `horizon × growth`.
    pub trend: f64,
    /// The configured headroom.
    pub headroom: f64,
    /// What the nodes that are not task nodes give.
    pub reserved: f64,
    /// What one task node gives.
    pub per_node: f64,
    /// Task nodes wanted, within the cluster's bounds.
    pub desired: u32,
    /// Running (without nodes leaving) plus in flight.
    pub has: u32,
}

impl CapacityStatus {
    /// The sizing of a capacity vote; `None` for any other reason.
    pub(crate) fn of(reason: &crate::policy::VoteReason) -> Option<Self> {
        match *reason {
            crate::policy::VoteReason::Capacity {
                sizing,
                desired,
                has,
            } => Some(Self {
                demand: sizing.demand,
                growth_per_minute: sizing.growth * 60.0,
                horizon_seconds: sizing.horizon.as_secs(),
                trend: sizing.trend,
                headroom: sizing.headroom,
                reserved: sizing.reserved,
                per_node: sizing.per_node,
                desired,
                has,
            }),
            _ => None,
        }
    }
}

/// Budget use.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub(crate) struct BudgetStatus {
    /// Nodes ordered in the last hour.
    pub hour_used: u32,
    /// The hourly budget, if set.
    pub hour_limit: Option<u32>,
    /// Nodes ordered in the last day.
    pub day_used: u32,
    /// The daily budget, if set.
    pub day_limit: Option<u32>,
}

impl VoteStatus {
    /// How `/api/v1/status` shows one rule's vote.
    pub(crate) fn of(v: &crate::policy::Vote) -> Self {
        Self {
            rule: v.rule.to_string(),
            value: v.value,
            increment: v.increment,
            removal: v.removal,
            outcome: v.outcome.metric_label(),
            data_issue: v.issue.map(|i| i.metric_label()),
            capacity: CapacityStatus::of(&v.reason),
        }
    }
}

/// One cluster, as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub(crate) struct ClusterStatus {
    pub instance_id: String,
    /// Running task nodes, when known.
    pub current: Option<u32>,
    /// Nodes ordered and not yet running.
    pub in_flight: u32,
    /// Running plus in flight plus the last decision's increment.
    pub desired: Option<u32>,
    /// The last decision, as a sentence.
    pub last_decision: Option<String>,
    pub outcome: Option<&'static str>,
    pub votes: Vec<VoteStatus>,
    /// When it was made.
    pub last_evaluation: Option<DateTime<Utc>>,
    /// End of the cooldown.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// End of a sold-out or error backoff.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Budget use.
    pub budget: BudgetStatus,
    /// Paused by an operator.
    pub paused: bool,
    /// Breaker open, with its reason.
    pub breaker: Option<String>,
    /// Dry-run for this cluster.
    pub dry_run: bool,
    /// The operation in progress: planned chunks, the next chunk, the flow followed.
    pub operation: Option<OperationStatus>,
    /// The last API error.
    pub last_api_error: Option<ApiErrorStatus>,
    /// The last decision that ordered nodes: when, how many, why.
    pub last_order: Option<OrderStatus>,
    /// Why the cluster is not ready (empty when it had everything).
    pub not_ready: Vec<NotReady>,
    /// The scale-in judgement of the last decision ("scale-in off" when off).
    pub scale_in: Option<String>,
    /// The last scale-in's node choice: the nodes chosen, the shortfall, and
    /// why every other node was passed over.
    pub last_selection: Option<SelectionStatus>,
    /// Tencent's own auto-scaling on this cluster.
    pub builtin: Option<BuiltinStatus>,
    /// The cluster's offerings in order of preference, each available or
    /// not until a time (empty without offerings).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offerings: Vec<OfferingStatus>,
}

/// One offering as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct OfferingStatus {
    /// Its name.
    pub name: String,
    /// An order may go through it now.
    pub available: bool,
    /// Refused outright: skipped until then.
    pub unavailable_until: Option<DateTime<Utc>>,
}

impl OfferingStatus {
    /// Every offering of `offers`, usable ones first as the order tries them.
    pub(crate) fn of(offers: &crate::state::Offers) -> Vec<Self> {
        offers
            .usable
            .iter()
            .map(|name| OfferingStatus {
                name: name.clone(),
                available: true,
                unavailable_until: None,
            })
            .chain(offers.skipped.iter().map(|(name, until)| OfferingStatus {
                name: name.clone(),
                available: false,
                unavailable_until: Some(*until),
            }))
            .collect()
    }
}

/// An operation as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct OperationStatus {
    /// The operation's UUID.
    pub id: String,
    /// Planned chunk sizes, in order.
    pub chunks: Vec<u32>,
    /// The chunk being sent, or the next one to send.
    pub next_chunk: usize,
    /// Nodes of the chunks whose flow finished.
    pub completed_nodes: u32,
    /// The chunk being sent or followed.
    pub current: Option<ChunkStatus>,
}

/// The chunk an operation is sending or following.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ChunkStatus {
    /// Nodes requested.
    pub nodes: u32,
    /// The flow, once the API answered.
    pub flow_id: Option<i64>,
    /// The idempotency token every attempt carries (not a credential).
    pub client_token: String,
    /// When the API accepted it.
    pub sent_at: Option<DateTime<Utc>>,
}

impl OperationStatus {
    /// How `/api/v1/status` shows `o`.
    pub(crate) fn of(o: &crate::state::Operation) -> Self {
        Self {
            id: o.id.clone(),
            chunks: o.chunks.clone(),
            next_chunk: o.next_chunk,
            completed_nodes: o.completed_nodes,
            current: o.current.as_ref().map(|c| ChunkStatus {
                nodes: c.nodes,
                flow_id: c.flow_id,
                client_token: c.client_token.clone(),
                sent_at: c.sent_at,
            }),
        }
    }
}

/// The last decision that ordered nodes.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct OrderStatus {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// Nodes ordered.
    pub nodes: u32,
    /// The chunks they go out in.
    pub chunks: Vec<u32>,
    /// The decision's sentence.
    pub reason: String,
}

/// A scale-in's node choice.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct SelectionStatus {
    /// When the nodes were picked.
    pub at: DateTime<Utc>,
    /// Nodes the removal wanted.
    pub wanted: u32,
    /// Why the removal was decided.
    pub reason: String,
    /// The nodes chosen, in removal order.
    pub chosen: Vec<String>,
    /// Nodes wanted but not eligible.
    pub shortfall: u32,
    /// Every other node, and why it was passed over.
    pub passed_over: Vec<PassedOver>,
}

/// A node a scale-in did not choose.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct PassedOver {
    /// Its machine id.
    pub node: String,
    /// Why it stays.
    pub why: String,
}

/// Tencent's own auto-scaling on a cluster, as last read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct BuiltinStatus {
    /// When the strategies were last read.
    pub read_at: Option<DateTime<Utc>>,
    /// Auto-scaling groups, when read.
    pub groups: Option<usize>,
    /// The enabled strategies, when read.
    pub enabled: Option<Vec<String>>,
    /// Why they could not be read.
    pub error: Option<String>,
    /// Whether the product acts next to enabled strategies.
    pub coexist_with_builtin: bool,
}

/// One readiness reason. `reason` is one of [`NotReady::LABELS`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct NotReady {
    /// The fixed label.
    pub reason: &'static str,
    /// What happened, for operators.
    pub detail: String,
}

impl NotReady {
    /// The fixed set of reason labels `/readyz` uses.
    pub(crate) const LABELS: [&'static str; 9] = [
        "data_error",
        "capacity_unknown",
        "auth",
        "flow_unreadable",
        "breaker",
        "conflict",
        "etcd_unreachable",
        "no_leader",
        "state_lost",
    ];

    /// A reason; `reason` must be one of [`Self::LABELS`].
    pub(crate) fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        debug_assert!(Self::LABELS.contains(&reason), "unknown label {reason}");
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// One readiness reason as `/readyz` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct ReadinessReason {
    /// The cluster, or `None` for a process-wide reason.
    pub cluster: Option<String>,
    /// The fixed label.
    pub reason: &'static str,
    /// What happened.
    pub detail: String,
}

/// A loop's liveness: when it last completed a step, how long it may go
/// without one, and until when it is inside an external call's own timeout.
#[derive(Debug, Clone, Copy)]
struct Progress {
    at: tokio::time::Instant,
    allowance: Duration,
    calls: u32,
    call_until: Option<tokio::time::Instant>,
}

impl Progress {
    fn new(allowance: Duration) -> Self {
        Self {
            at: tokio::time::Instant::now(),
            allowance,
            calls: 0,
            call_until: None,
        }
    }

    /// Stalled: no step completed within the allowance, and not waiting on a
    /// call still inside its own timeout.
    fn stalled(&self, now: tokio::time::Instant) -> bool {
        let waiting = self.calls > 0 && self.call_until.is_some_and(|until| now <= until);
        now.duration_since(self.at) > self.allowance && !waiting
    }
}

/// Marks a loop as waiting on an external call until dropped.
#[derive(Debug)]
pub(crate) struct InCall<'a> {
    board: &'a StatusBoard,
    id: String,
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        self.board.with(|i| {
            if let Some(p) = i.progress.get_mut(&self.id) {
                p.calls = p.calls.saturating_sub(1);
                if p.calls == 0 {
                    p.call_until = None;
                }
                // A call that returned is a step completed.
                p.at = tokio::time::Instant::now();
            }
        });
    }
}

#[derive(Debug, Default)]
struct Inner {
    clusters: BTreeMap<String, ClusterStatus>,
    progress: BTreeMap<String, Progress>,
}

/// Shared status of every cluster.
#[derive(Debug)]
pub(crate) struct StatusBoard {
    clock: SharedClock,
    inner: Mutex<Inner>,
}

impl StatusBoard {
    /// An empty board.
    pub(crate) fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes a cluster's status in place.
    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut ClusterStatus)) {
        self.with(|i| {
            let s = i
                .clusters
                .entry(id.to_string())
                .or_insert_with(|| ClusterStatus {
                    instance_id: id.to_string(),
                    ..ClusterStatus::default()
                });
            f(s);
        });
    }

    /// Records that a cluster's loop made progress; `allowance` is how long it
    /// may take until the next time (2 × interval + query timeout).
    pub(crate) fn progressed(&self, id: &str, allowance: Duration) {
        self.with(|i| {
            let p = i
                .progress
                .entry(id.to_string())
                .or_insert_with(|| Progress::new(allowance));
            p.at = tokio::time::Instant::now();
            p.allowance = allowance;
        });
    }

    /// Marks loop `id` as waiting on an external call whose own timeout is
    /// `within`, until the returned guard is dropped. Such a loop is alive.
    pub(crate) fn in_call(&self, id: &str, within: Duration) -> InCall<'_> {
        self.with(|i| {
            let p = i
                .progress
                .entry(id.to_string())
                .or_insert_with(|| Progress::new(within));
            p.calls += 1;
            let until = tokio::time::Instant::now() + within;
            p.call_until = Some(p.call_until.map_or(until, |u| u.max(until)));
        });
        InCall {
            board: self,
            id: id.to_string(),
        }
    }

    /// Registers a worker before its first tick, so a loop that never gets
    /// going is noticed.
    pub(crate) fn expect(&self, id: &str, allowance: Duration) {
        self.with(|i| {
            i.progress
                .entry(id.to_string())
                .or_insert_with(|| Progress::new(allowance));
            i.clusters
                .entry(id.to_string())
                .or_insert_with(|| ClusterStatus {
                    instance_id: id.to_string(),
                    ..ClusterStatus::default()
                });
        });
    }

    /// Removes a cluster that is no longer configured.
    pub(crate) fn forget(&self, id: &str) {
        self.with(|i| {
            i.clusters.remove(id);
            i.progress.remove(id);
        });
    }

    /// Every cluster's status.
    pub(crate) fn snapshot(&self) -> Vec<ClusterStatus> {
        self.with(|i| i.clusters.values().cloned().collect())
    }

    /// Loops that made no progress within their allowance.
    pub(crate) fn stalled(&self) -> Vec<String> {
        let now = tokio::time::Instant::now();
        self.with(|i| {
            i.progress
                .iter()
                .filter(|(_, p)| p.stalled(now))
                .map(|(id, p)| {
                    format!(
                        "{id}: no step completed for {:.0?}",
                        now.duration_since(p.at)
                    )
                })
                .collect()
        })
    }

    /// Whether every loop is making progress.
    pub(crate) fn healthy(&self) -> bool {
        self.stalled().is_empty()
    }

    /// Why the daemon is not ready, across clusters, with the fixed labels.
    pub(crate) fn not_ready(&self) -> Vec<ReadinessReason> {
        self.with(|i| {
            let mut out: Vec<ReadinessReason> = i
                .clusters
                .values()
                .flat_map(|c| {
                    c.not_ready.iter().map(move |r| ReadinessReason {
                        cluster: Some(c.instance_id.clone()),
                        reason: r.reason,
                        detail: r.detail.clone(),
                    })
                })
                .collect();
            for id in i.progress.keys() {
                if let Some(c) = i.clusters.get(id)
                    && c.last_evaluation.is_none()
                {
                    out.push(ReadinessReason {
                        cluster: Some(id.clone()),
                        reason: "capacity_unknown",
                        detail: "not evaluated yet".into(),
                    });
                }
            }
            out
        })
    }

    /// The board's clock reading, for responses.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// The `/healthz` rule: a loop is stalled only when it has neither
    /// completed a step nor been waiting on a call still inside that call's
    /// own timeout for its allowance.
    #[tokio::test(start_paused = true)]
    async fn liveness_counts_a_call_inside_its_timeout_as_progress() {
        let board = StatusBoard::new(Arc::new(crate::clock::SystemClock));
        let allowance = Duration::from_secs(13);
        board.progressed("c", allowance);
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(board.healthy());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(board.stalled().len(), 1, "no step for 14 s");

        // A slow call (25 s, inside its 30 s timeout) keeps the loop alive.
        board.progressed("c", allowance);
        {
            let _call = board.in_call("c", Duration::from_secs(30));
            tokio::time::advance(Duration::from_secs(25)).await;
            assert!(board.healthy(), "waiting on a call within its timeout");
        }
        // It returned: that is a step.
        tokio::time::advance(Duration::from_secs(12)).await;
        assert!(board.healthy());

        // A call past its own timeout is a stuck owner.
        let _call = board.in_call("c", Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(board.stalled().len(), 1, "stuck past the call's timeout");
    }
}
