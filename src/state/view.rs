//! One view of a cluster: its durable record and the latest capacity
//! snapshot, projected into what the policy core judges.
//!
//! [`ClusterState::project`] is the one place a record becomes a
//! [`Projection`], and [`Projection::view`] the one place a
//! [`ClusterView`] is built. The daemon and `plan` both decide from it, so
//! `plan` shows what the daemon would do from the same state: an open
//! removal's nodes count as gone, a cooldown or a tripped breaker holds,
//! and a flow Tencent runs makes the cluster busy. `backtest`, which keeps
//! no durable record, fills a [`Projection`] from its replayed cluster.
//!
//! # Rules
//! - Arrivals: nodes of a finished chunk count in flight until a snapshot taken after
//!   their arrival shows them, then for `settle` (default 2 x evaluation_interval, at
//!   least 1m) as "settling": target rules judge demand against the capacity without
//!   them, so a metric that lags never orders the same demand twice.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::records::{ClusterState, NodeKind};
use crate::policy::{ClusterView, Proposal};

/// What the cloud said about the cluster at its last capacity snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Running task nodes; `None` when they could not be read.
    pub running: Option<u32>,
    /// The cluster's status says a flow runs (neither running nor
    /// "scale-out failed").
    pub in_flow: bool,
    /// When the snapshot was taken; `None` before the first one.
    pub at: Option<DateTime<Utc>>,
}

/// What the daemon knows besides the record and the snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Circumstances {
    /// Decide and report only.
    pub dry_run: bool,
    /// Tencent's own auto-scaling is enabled here and coexistence is off.
    pub conflict: bool,
    /// Tencent's auto-scaling strategies could not be read.
    pub builtin_unknown: bool,
    /// This daemon stands by for the leader.
    pub standby: bool,
    /// How long arrived nodes settle before the load metrics see them.
    pub settle: TimeDelta,
    /// How long scale-in waits after any operation ends.
    pub scale_in_cooldown: TimeDelta,
}

/// A cluster's view, owned: [`view`](Self::view) lends it to the policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Projection {
    /// See [`ClusterView::running`].
    pub running: Option<u32>,
    /// See [`ClusterView::in_flight`].
    pub in_flight: u32,
    /// See [`ClusterView::settling`].
    pub settling: u32,
    /// See [`ClusterView::leaving`].
    pub leaving: u32,
    /// See [`ClusterView::operation_open`].
    pub operation_open: bool,
    /// See [`ClusterView::busy`].
    pub busy: bool,
    /// See [`ClusterView::cooldown_until`].
    pub cooldown_until: Option<DateTime<Utc>>,
    /// See [`ClusterView::scale_in_cooldown_until`].
    pub scale_in_cooldown_until: Option<DateTime<Utc>>,
    /// See [`ClusterView::backoff_until`].
    pub backoff_until: Option<DateTime<Utc>>,
    /// See [`ClusterView::paused`].
    pub paused: bool,
    /// See [`ClusterView::breaker_open`].
    pub breaker_open: bool,
    /// See [`ClusterView::orders`].
    pub orders: Vec<(DateTime<Utc>, u32)>,
    /// See [`ClusterView::rule_last_fired`].
    pub last_fired: Vec<Option<DateTime<Utc>>>,
    /// See [`ClusterView::schedule_done`].
    pub schedule_done: Vec<Option<DateTime<Utc>>>,
    /// See [`ClusterView::scale_out`].
    pub scale_out: Option<Duration>,
    /// The daemon's circumstances at this evaluation.
    pub circumstances: Circumstances,
}

impl Projection {
    /// The view the policy core judges, with the cluster's earlier removal
    /// proposals (kept in memory, not in the record).
    pub(crate) fn view<'a>(&'a self, removal_history: &'a [Proposal]) -> ClusterView<'a> {
        let c = &self.circumstances;
        ClusterView {
            running: self.running,
            in_flight: self.in_flight,
            settling: self.settling,
            cooldown_until: self.cooldown_until,
            backoff_until: self.backoff_until,
            paused: self.paused,
            breaker_open: self.breaker_open,
            dry_run: c.dry_run,
            busy: self.busy,
            orders: &self.orders,
            rule_last_fired: &self.last_fired,
            schedule_done: &self.schedule_done,
            leaving: self.leaving,
            operation_open: self.operation_open,
            scale_in_cooldown_until: self.scale_in_cooldown_until,
            removal_history,
            conflict: c.conflict,
            builtin_unknown: c.builtin_unknown,
            standby: c.standby,
            scale_out: self.scale_out,
        }
    }
}

impl ClusterState {
    /// This record seen at `now` with `snapshot`, for rules named `rules`
    /// (in the policy's order).
    ///
    /// - Nodes that arrived count in flight until a snapshot taken after
    ///   their arrival shows them, then as settling until
    ///   `circumstances.settle` has passed.
    /// - The nodes an open removal names count as gone.
    /// - An operation that just ended keeps the cluster's operation open
    ///   until a snapshot taken after its end: that snapshot may still
    ///   count the nodes it removed.
    pub(crate) fn project<'a>(
        &self,
        rules: impl Iterator<Item = &'a str> + Clone,
        snapshot: &Snapshot,
        now: DateTime<Utc>,
        circumstances: Circumstances,
    ) -> Projection {
        let seen = |at: DateTime<Utc>| snapshot.at.is_some_and(|s| s > at);
        let (unseen, settling) = self
            .arrivals
            .iter()
            .filter(|a| now - a.at < circumstances.settle)
            .fold((0u32, 0u32), |(u, s), a| {
                if seen(a.at) {
                    (u, s.saturating_add(a.nodes))
                } else {
                    (u.saturating_add(a.nodes), s)
                }
            });
        let op = self.operation.as_ref();
        let planned = op.map_or(0, |o| {
            if o.kind == NodeKind::Core || o.removal.is_some() {
                return 0;
            }
            let unsent: u32 = o
                .chunks
                .iter()
                .skip(o.next_chunk + usize::from(o.current.is_some()))
                .sum();
            o.in_flight_nodes().saturating_add(unsent)
        });
        Projection {
            running: snapshot.running,
            in_flight: planned.saturating_add(unseen),
            settling,
            leaving: op
                .and_then(|o| o.removal.as_ref())
                .map_or(0, |r| r.remaining().len() as u32),
            operation_open: op.is_some() || self.last_operation_end.is_some_and(|t| !seen(t)),
            busy: op.is_none() && snapshot.in_flow,
            cooldown_until: self.cooldown_until,
            scale_in_cooldown_until: self.last_operation_end.map(|t| {
                t.checked_add_signed(circumstances.scale_in_cooldown)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            }),
            backoff_until: self.backoff_until,
            paused: self.paused,
            breaker_open: self.breaker_open.is_some(),
            orders: self.orders.iter().map(|o| (o.at, o.nodes)).collect(),
            last_fired: rules
                .clone()
                .map(|r| self.rule_last_fired.get(r).copied())
                .collect(),
            schedule_done: rules.map(|r| self.schedule_done.get(r).copied()).collect(),
            scale_out: self.scale_out_median(),
            circumstances,
        }
    }
}
