//! The pure replay loop: one cluster's policy driven step by step over a
//! demand series, closed loop, through [`policy::decide`].
//!
//! No I/O and no clock reads: demand, open-loop histories and the step grid
//! are parameters, so the command, the tests and the benchmark all run the
//! same code.
//!
//! At each step `t` (the step stands for `[t, t + step)`):
//! 1. chunks whose provisioning delay has passed start serving;
//! 2. demand is the last demand sample at or before `t` (held between
//!    samples; unknown before the first one);
//! 3. the derived signals come from [`Model::signals`] with the serving task
//!    nodes; a rule with `replay_signal` observes the simulated value, any
//!    other rule with a query observes its own history (open loop), and
//!    schedules observe nothing;
//! 4. [`policy::decide`] judges the samples with [`policy::max_gap`] of the step,
//!    exactly as the daemon does with its evaluation interval;
//! 5. an order becomes one operation of chunks of at most 20. Chunk `k`
//!    (from 1) is sent at `t + (k - 1) × delay`, when the previous one is
//!    serving, is billed from then and serves at `t + k × delay`. The cluster
//!    cooldown runs from the last chunk's serving time. Until then every
//!    ordered node is in flight, and no second operation starts;
//! 6. with scale-in enabled, a removal takes its nodes out of service at once
//!    (YARN decommissions them) and keeps billing them until `grace_period`
//!    has passed; the removal is an operation until then (no other operation
//!    starts), and the scale-in cooldown runs from the end of every
//!    operation. The stabilization window starts empty, as after a daemon
//!    start;
//! 7. costs are integrated over the step: node-hours of every billed task
//!    node (the initial ones included, until removed and drained), and unmet
//!    demand above serving capacity.
//!
//! 8. with offerings, each chunk goes through the first offering not sold out at its
//!    send time (a `--sold-out` window) and not skipped after such a refusal; a refused
//!    offering is skipped for `sold_out_backoff`, and when every one refuses the chunk
//!    (and the rest of its operation) is not ordered and the cluster backs off, as the
//!    daemon does. Node-hours, nodes added and cost (with `price_per_hour`) are kept per
//!    offering; nodes from before the replay, and orders without offerings, are
//!    `default`. A removal gives back the newest nodes first, as the daemon's choice of
//!    nodes does.
//!
//! Pause, breaker and dry-run do not apply to replays.
//!
//! # Choices where the replay model leaves room
//!
//! - Steps are `from, from + step, ...` strictly before `to`; step `t` stands for
//!   `[t, t + step)`, and costs integrate the state at `t` over it.
//! - Demand holds its last sample; before the first one it is unknown: closed-loop rules
//!   read it as missing data (they hold), and no unmet demand is counted.
//! - Rules keep the daemon's sample retention, and `decide` gets `policy::max_gap(step)`
//!   (2.5 steps), the daemon's rule with its interval. The replayed cluster is a
//!   `state::Projection` updated in place, viewed as the daemon views its record.
//!   Open-loop rules read their recorded point at `t` (Prometheus range points land on
//!   the grid); no point there is missing data.
//! - `--demand-query` may contain `{cluster}`, replaced by each instance_id.
//! - Scale-in (enabled clusters): a removal takes its nodes out of service at the step it
//!   is decided and bills them until `grace_period` has passed; it is an operation until
//!   then, so nothing else starts, and the scale-in cooldown runs from the end of every
//!   operation. The stabilization window starts empty, as after a daemon start.
//!   Node-hours count every billed task node, the initial ones included, so figures from
//!   before scale-in (which counted ordered nodes only) are not comparable; the table and
//!   `summary.json` say which rule they use.
//! - Consecutive steps whose decisions explain the same way share one reason string;
//!   that keeps the full timeline within the benchmark's 2 s budget. Measured with
//!   `cargo bench --bench figures -- backtest` (50 clusters x 3 rules x 30 days at 1 minute, one
//!   core, machine under load): 0.97 s with the full timeline, 0.65 s figures only.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::policy::{self, ClusterPolicy, Decision, Outcome, Proposal, Reading, Sample, Unit};
use crate::replay::{Costs, Model, Signals};
use crate::state::Projection;

use super::BacktestError;

/// Replays can be long, but not absurd: more steps than this is refused.
pub(crate) const MAX_STEPS: usize = 20_000_000;

/// The instants a replay evaluates: `steps` of them from `from`, `step` apart.
/// Each stands for the interval `[t, t + step)`; the last one ends at or
/// before `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The first instant.
    pub from: DateTime<Utc>,
    /// The distance between instants (whole seconds, at least 1 s).
    pub step: Duration,
    /// How many instants.
    pub steps: usize,
}

impl Grid {
    /// The grid over `[from, to)` at `step`.
    pub fn new(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        step: Duration,
    ) -> Result<Self, BacktestError> {
        if step < Duration::from_secs(1) || step.subsec_nanos() != 0 {
            return Err(BacktestError::Args(format!(
                "--step {} must be whole seconds, at least 1s",
                humantime::format_duration(step)
            )));
        }
        if to <= from {
            return Err(BacktestError::Args(format!(
                "--to {} must be after --from {}",
                to.to_rfc3339(),
                from.to_rfc3339()
            )));
        }
        let span = (to - from).num_seconds();
        let steps = usize::try_from(span / step.as_secs() as i64).unwrap_or(usize::MAX);
        if steps == 0 {
            return Err(BacktestError::Args(format!(
                "the window from --from to --to is shorter than one --step ({})",
                humantime::format_duration(step)
            )));
        }
        if steps > MAX_STEPS {
            return Err(BacktestError::Args(format!(
                "{steps} steps is more than {MAX_STEPS}; use a longer --step or a shorter window"
            )));
        }
        Ok(Self { from, step, steps })
    }

    /// The instant of step `i`.
    pub fn at(&self, i: usize) -> DateTime<Utc> {
        self.from + chrono::Duration::seconds(self.step.as_secs() as i64 * i as i64)
    }

    /// The end of the last step.
    pub(crate) fn end(&self) -> DateTime<Utc> {
        self.at(self.steps)
    }
}

/// How a rule is observed in a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleMode {
    /// On the simulated signal (`replay_signal`): closed loop.
    Closed(policy::ReplaySignal),
    /// On its own recorded history: open loop, flagged in the report.
    Open(String),
    /// A schedule: it only reads `now`.
    Schedule,
}

/// How each rule of `policy` is observed.
pub fn rule_modes(policy: &ClusterPolicy) -> Vec<RuleMode> {
    policy
        .rules
        .iter()
        .map(|r| match (&r.query, r.replay_signal) {
            (None, _) => RuleMode::Schedule,
            (Some(_), Some(s)) => RuleMode::Closed(s),
            (Some(q), None) => RuleMode::Open(q.clone()),
        })
        .collect()
}

/// How much the timeline records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Every step, each with the decision's explanation.
    Full,
    /// Every step; explanations only where the policy wanted nodes or the
    /// outcome was not a plain hold (the rest have an empty reason).
    Events,
    /// No timeline: the summary and the per-step in-flight counts only.
    Summary,
}

/// One cluster to replay.
#[derive(Debug, Clone, Copy)]
pub struct ClusterInput<'a> {
    /// The cluster id, for the report.
    pub instance_id: &'a str,
    /// Its guard rails and rules.
    pub policy: &'a ClusterPolicy,
    /// The simulated cluster.
    pub model: Model,
    /// Task nodes serving at the first step.
    pub initial_task_nodes: u32,
    /// Demand samples `(time, MB)`, in time order; held until the next one.
    pub demand: &'a [(DateTime<Utc>, f64)],
    /// Per rule (configuration order): the recorded history of an open-loop
    /// rule, in time order. Ignored for other rules; missing entries read as
    /// no data.
    pub history: &'a [Option<Vec<Sample>>],
    /// The cluster's offerings in order of preference, with their sold-out
    /// windows; empty: every order is `default`.
    pub offerings: &'a [ReplayOffering],
    /// How long an offering that refused is skipped (`sold_out_backoff`).
    pub sold_out_backoff: Duration,
}

/// One offering as the replay sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayOffering {
    /// Its name.
    pub name: String,
    /// Price per node-hour, for the cost.
    pub price_per_hour: Option<f64>,
    /// Windows `[from, to)` in which it is sold out.
    pub sold_out: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

impl ReplayOffering {
    fn sold_out_at(&self, t: DateTime<Utc>) -> bool {
        self.sold_out.iter().any(|(from, to)| *from <= t && t < *to)
    }
}

/// The figures of one offering (`default`: nodes from before the replay and
/// orders without offerings).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct OfferingFigures {
    /// The offering.
    pub name: String,
    /// Nodes ordered through it.
    pub nodes_added: u32,
    /// Hours billed for its nodes.
    pub node_hours: f64,
    /// `node_hours` × `price_per_hour`, when a price is given.
    pub cost: Option<f64>,
    /// Orders it refused (sold out).
    pub refusals: u32,
}

/// One step of one cluster's timeline (the cluster is [`ClusterRun::instance_id`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// The step's instant.
    pub time: DateTime<Utc>,
    /// Demand, MB; `None` before the first demand sample.
    pub demand_mb: Option<f64>,
    /// Serving capacity, MB.
    pub capacity_mb: f64,
    /// Task nodes serving.
    pub running: u32,
    /// Nodes ordered (this step's order included) and not yet serving.
    pub in_flight: u32,
    /// The decision's outcome.
    pub outcome: Outcome,
    /// Nodes ordered at this step.
    pub increment: u32,
    /// Nodes given back at this step.
    pub removed: u32,
    /// The decision in one sentence. Consecutive steps with the same
    /// explanation share one string.
    pub reason: Arc<str>,
}

/// Whether two decisions explain the same way (everything
/// [`policy::Decision::explain`] shows, compared as data).
fn same_explanation(a: &Decision, b: &Decision) -> bool {
    a.outcome == b.outcome
        && a.running.is_none() == b.running.is_none()
        && a.busy == b.busy
        && a.min_gap == b.min_gap
        && a.increment == b.increment
        && a.removal == b.removal
        && a.chunks.len() == b.chunks.len()
        && a.caps == b.caps
        && a.votes == b.votes
}

/// One chunk of a replayed order.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ChunkRecord {
    /// When the decision was taken.
    pub decided_at: DateTime<Utc>,
    /// When this chunk's ScaleOutInstance would be sent (billing starts).
    pub sent_at: DateTime<Utc>,
    /// When its nodes serve.
    pub serving_at: DateTime<Utc>,
    /// Nodes in the chunk.
    pub nodes: u32,
    /// The offering it goes through (index into the replay's offerings; 0
    /// is `default`).
    #[serde(skip)]
    pub offering: usize,
}

/// The figures of one replay.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Summary {
    /// Nodes ordered.
    pub nodes_added: u32,
    /// Nodes given back.
    pub nodes_removed: u32,
    /// Hours billed for every task node: the initial ones from the start,
    /// ordered ones from their order, each until removed and drained.
    pub node_hours: f64,
    /// Minutes with demand above serving capacity.
    pub unmet_minutes: f64,
    /// GiB × minutes of demand above serving capacity.
    pub unmet_gib_minutes: f64,
    /// Most nodes ordered and not yet serving at one step.
    pub peak_in_flight: u32,
    /// ScaleOutInstance (or ScaleOutCluster) and TerminateClusterNodes
    /// requests (one per chunk, refusals included, or removal; a replay has
    /// no retries).
    pub api_calls: u32,
    /// Chunks of at most 20 nodes.
    pub chunks: u32,
    /// Decisions that ordered (operations).
    pub operations: u32,
    /// Task nodes serving at the start.
    pub initial_task_nodes: u32,
    /// Task nodes serving or in flight at the end.
    pub final_task_nodes: u32,
    /// Steps replayed.
    pub steps: usize,
    /// Steps before the first demand sample (no demand, no unmet cost).
    pub steps_without_demand: usize,
    /// Rules observed on their recorded history instead of the simulation.
    pub open_loop_rules: Vec<String>,
    /// Steps per outcome label.
    pub outcomes: BTreeMap<&'static str, usize>,
    /// Per offering, `default` first.
    pub offerings: Vec<OfferingFigures>,
}

impl Summary {
    /// Adds `other`'s additive figures; peak in flight is left to the caller.
    pub(crate) fn accumulate(&mut self, other: &Summary) {
        self.nodes_added += other.nodes_added;
        self.nodes_removed += other.nodes_removed;
        self.node_hours += other.node_hours;
        self.unmet_minutes += other.unmet_minutes;
        self.unmet_gib_minutes += other.unmet_gib_minutes;
        self.api_calls += other.api_calls;
        self.chunks += other.chunks;
        self.operations += other.operations;
        self.initial_task_nodes += other.initial_task_nodes;
        self.final_task_nodes += other.final_task_nodes;
        self.steps += other.steps;
        self.steps_without_demand += other.steps_without_demand;
        self.open_loop_rules
            .extend(other.open_loop_rules.iter().cloned());
        for (k, v) in &other.outcomes {
            *self.outcomes.entry(k).or_default() += v;
        }
        for o in &other.offerings {
            match self.offerings.iter_mut().find(|x| x.name == o.name) {
                Some(x) => {
                    x.nodes_added += o.nodes_added;
                    x.node_hours += o.node_hours;
                    x.refusals += o.refusals;
                    x.cost = match (x.cost, o.cost) {
                        (None, None) => None,
                        (a, b) => Some(a.unwrap_or(0.0) + b.unwrap_or(0.0)),
                    };
                }
                None => self.offerings.push(o.clone()),
            }
        }
    }
}

/// The result of replaying one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRun {
    /// The cluster\'s instance id (`emr-…`).
    pub instance_id: String,
    /// Its figures.
    pub summary: Summary,
    /// Per step (empty with [`Detail::Summary`]).
    pub timeline: Vec<StepRecord>,
    /// Per step: nodes in flight (always recorded).
    pub in_flight: Vec<u32>,
    /// Every chunk ordered.
    pub chunks: Vec<ChunkRecord>,
}

/// A bounded sample history kept contiguous: pushes are amortised O(1) and
/// the newest `keep` samples are one slice.
struct History {
    buf: Vec<Sample>,
    keep: usize,
}

impl History {
    fn new(keep: usize) -> Self {
        Self {
            buf: Vec::with_capacity(keep * 2 + 1),
            keep: keep.max(1),
        }
    }

    fn push(&mut self, s: Sample) {
        if self.buf.len() >= self.keep * 2 {
            let drop = self.buf.len() + 1 - self.keep;
            self.buf.drain(..drop);
        }
        self.buf.push(s);
    }

    fn recent(&self) -> &[Sample] {
        &self.buf[self.buf.len().saturating_sub(self.keep)..]
    }
}

/// A cursor over a time-ordered series that answers "the newest point at or
/// before t" for non-decreasing `t`.
struct Cursor<'a, T> {
    points: &'a [T],
    next: usize,
}

impl<'a, T> Cursor<'a, T> {
    fn new(points: &'a [T]) -> Self {
        Self { points, next: 0 }
    }

    fn at(&mut self, t: DateTime<Utc>, time: impl Fn(&T) -> DateTime<Utc>) -> Option<&'a T> {
        while self.next < self.points.len() && time(&self.points[self.next]) <= t {
            self.next += 1;
        }
        self.next.checked_sub(1).map(|i| &self.points[i])
    }
}

fn chrono_dur(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The replayed cluster: what serves, what is billed, what is in flight
/// and the view the policy judges, updated step by step.
struct Fleet {
    /// Chunks in order. Operations never overlap, so their send and serving
    /// times are non-decreasing.
    chunks: Vec<ChunkRecord>,
    /// `chunks[..sent]` were sent at or before now.
    sent: usize,
    /// `chunks[..served]` are serving.
    served: usize,
    /// Orders (send time, nodes), for budgets.
    orders: Vec<(DateTime<Utc>, u32)>,
    /// `orders[budget_from..]` are younger than a day.
    budget_from: usize,
    /// Task nodes serving.
    running: u32,
    /// Nodes ever ordered, ever serving, ever removed.
    ordered: u32,
    served_nodes: u32,
    removed: u32,
    /// Task nodes billed now: the initial ones from the start, ordered ones
    /// from their send, removed ones until drained.
    billed: u32,
    /// Removed nodes still billed, until their grace period ends (in order),
    /// with their offering.
    draining: VecDeque<(DateTime<Utc>, usize, u32)>,
    /// Per offering (0: `default`, then the configured ones): nodes billed.
    billed_by: Vec<u32>,
    /// Serving nodes by offering, oldest first: a removal takes the newest.
    serving_by: Vec<(usize, u32)>,
    /// Per configured offering: skipped until then after a refusal.
    skipped_until: Vec<Option<DateTime<Utc>>>,
    /// Per offering: nodes ordered, refusals.
    added_by: Vec<u32>,
    refused_by: Vec<u32>,
    /// The cluster's one operation runs until then.
    operation_until: Option<DateTime<Utc>>,
    /// The same projection the daemon and `plan` decide from.
    seen: Projection,
    /// Earlier removal proposals, for the stabilization window.
    removal_history: Vec<Proposal>,
}

impl Fleet {
    fn new(input: &ClusterInput<'_>) -> Self {
        let rules = input.policy.rules.len();
        Self {
            chunks: Vec::new(),
            sent: 0,
            served: 0,
            orders: Vec::new(),
            budget_from: 0,
            running: input.initial_task_nodes,
            ordered: 0,
            served_nodes: 0,
            removed: 0,
            billed: input.initial_task_nodes,
            draining: VecDeque::new(),
            billed_by: {
                let mut b = vec![0; input.offerings.len() + 1];
                b[0] = input.initial_task_nodes;
                b
            },
            serving_by: vec![(0, input.initial_task_nodes)],
            skipped_until: vec![None; input.offerings.len()],
            added_by: vec![0; input.offerings.len() + 1],
            refused_by: vec![0; input.offerings.len() + 1],
            operation_until: None,
            // A replayed flow takes the provisioning delay.
            seen: Projection {
                last_fired: vec![None; rules],
                schedule_done: vec![None; rules],
                scale_out: Some(input.model.provisioning_delay),
                ..Projection::default()
            },
            removal_history: Vec::new(),
        }
    }

    /// Nodes ordered and not yet serving.
    fn in_flight(&self) -> u32 {
        self.ordered.saturating_sub(self.served_nodes)
    }

    /// Chunks that arrived serve, chunks that are due are sent (billed),
    /// drained nodes stop billing, orders older than a day leave budgets.
    fn advance(&mut self, now: DateTime<Utc>) {
        while self.served < self.chunks.len() && self.chunks[self.served].serving_at <= now {
            let nodes = self.chunks[self.served].nodes;
            let offering = self.chunks[self.served].offering;
            match self.serving_by.last_mut() {
                Some((o, n)) if *o == offering => *n += nodes,
                _ => self.serving_by.push((offering, nodes)),
            }
            self.running = self.running.saturating_add(nodes);
            self.served_nodes = self.served_nodes.saturating_add(nodes);
            self.served += 1;
        }
        self.send_due(now);
        while self.draining.front().is_some_and(|(end, _, _)| *end <= now) {
            if let Some((_, o, n)) = self.draining.pop_front() {
                self.billed = self.billed.saturating_sub(n);
                self.billed_by[o] = self.billed_by[o].saturating_sub(n);
            }
        }
        let day = chrono::Duration::days(1);
        while self.budget_from < self.sent && self.orders[self.budget_from].0 <= now - day {
            self.budget_from += 1;
        }
    }

    /// Bills the chunks whose send time has come.
    fn send_due(&mut self, now: DateTime<Utc>) {
        while self.sent < self.chunks.len() && self.chunks[self.sent].sent_at <= now {
            let c = self.chunks[self.sent];
            self.billed = self.billed.saturating_add(c.nodes);
            self.billed_by[c.offering] = self.billed_by[c.offering].saturating_add(c.nodes);
            self.sent += 1;
        }
    }

    /// Whether the cluster's operation still runs at `now`.
    fn busy(&self, now: DateTime<Utc>) -> bool {
        self.operation_until.is_some_and(|t| now < t)
    }

    /// Decides at `now` from the rules' `observations`, and remembers the
    /// removal proposal for the stabilization window.
    fn decide(
        &mut self,
        policy: &ClusterPolicy,
        observations: &[&[Sample]],
        now: DateTime<Utc>,
        max_gap: Duration,
    ) -> Decision {
        self.seen.running = Some(self.running);
        self.seen.in_flight = self.in_flight();
        self.seen.operation_open = self.busy(now);
        self.seen.orders.clear();
        self.seen
            .orders
            .extend_from_slice(&self.orders[self.budget_from..self.sent]);
        let decision = policy::decide(
            policy,
            &self.seen.view(&self.removal_history),
            observations,
            now,
            max_gap,
        );
        let scale_in = &policy.scale_in;
        if scale_in.enabled {
            self.removal_history.push(Proposal {
                at: now,
                nodes: decision.proposal,
                effective: decision.effective,
            });
            policy::scale_in::prune(
                &mut self.removal_history,
                now,
                scale_in.stabilization,
                max_gap,
            );
        }
        decision
    }

    /// Gives back up to `wanted` nodes at `now`: out of service at once,
    /// billed until drained. With nodes = "ours", only nodes this replay
    /// ordered can go (the initial ones carry no owner tag).
    fn remove(&mut self, policy: &ClusterPolicy, wanted: u32, now: DateTime<Utc>) -> u32 {
        let scale_in = &policy.scale_in;
        let removable = match scale_in.scope {
            policy::NodeScope::Ours { .. } => self.served_nodes.saturating_sub(self.removed),
            policy::NodeScope::AnyTask => self.running,
        }
        .min(self.running);
        let removed = wanted.min(removable);
        if removed > 0 {
            let drained = now + chrono_dur(scale_in.grace_period);
            self.running -= removed;
            self.removed = self.removed.saturating_add(removed);
            // The newest nodes go first.
            let mut left = removed;
            while left > 0 {
                let Some((o, n)) = self.serving_by.last_mut() else {
                    break;
                };
                let take = left.min(*n);
                *n -= take;
                left -= take;
                let o = *o;
                if *n == 0 {
                    self.serving_by.pop();
                }
                self.draining.push_back((drained, o, take));
            }
            self.operation_until = Some(drained);
            self.seen.scale_in_cooldown_until = Some(drained + chrono_dur(scale_in.cooldown));
        }
        removed
    }

    /// Orders the decision's chunks at `now`: chunk `k` (from 0) is sent
    /// `k` delays later and serves one delay after that.
    /// The offering a chunk sent at `at` goes through (0: `default` without
    /// offerings), skipping and marking those sold out then; `None` when
    /// every one refuses. Also returns the refusals it met.
    fn choose(
        &mut self,
        offerings: &[ReplayOffering],
        backoff: chrono::Duration,
        at: DateTime<Utc>,
    ) -> (Option<usize>, u32) {
        if offerings.is_empty() {
            return (Some(0), 0);
        }
        let mut refusals = 0;
        for (i, o) in offerings.iter().enumerate() {
            if self.skipped_until[i].is_some_and(|u| at < u) {
                continue;
            }
            if o.sold_out_at(at) {
                self.skipped_until[i] = Some(at + backoff);
                self.refused_by[i + 1] += 1;
                refusals += 1;
                continue;
            }
            return (Some(i + 1), refusals);
        }
        (None, refusals)
    }

    /// Orders the decision's chunks at `now`: chunk `k` (from 0) is sent
    /// `k` delays later and serves one delay after that. Returns the nodes
    /// ordered, the requests made (refusals included) and the chunks
    /// ordered: with every
    /// offering refusing, the rest of the operation is not ordered and the
    /// cluster backs off.
    fn order(
        &mut self,
        input: &ClusterInput<'_>,
        decision: &Decision,
        delay: chrono::Duration,
        now: DateTime<Utc>,
    ) -> (u32, u32, u32) {
        let policy = input.policy;
        let backoff = chrono_dur(input.sold_out_backoff);
        let (mut nodes_ordered, mut requests, mut chunks) = (0u32, 0u32, 0i32);
        for (k, nodes) in decision.chunks.iter().enumerate() {
            let sent_at = now + delay * k as i32;
            let (offering, refusals) = self.choose(input.offerings, backoff, sent_at);
            requests += refusals;
            let Some(offering) = offering else {
                self.seen.backoff_until = Some(sent_at + backoff);
                break;
            };
            requests += 1;
            chunks += 1;
            nodes_ordered += nodes;
            self.added_by[offering] += nodes;
            self.chunks.push(ChunkRecord {
                decided_at: now,
                sent_at,
                serving_at: sent_at + delay,
                nodes: *nodes,
                offering,
            });
            self.orders.push((sent_at, *nodes));
        }
        let done = now + delay * chunks;
        self.operation_until = Some(done);
        self.seen.scale_in_cooldown_until = Some(done + chrono_dur(policy.scale_in.cooldown));
        if chunks > 0 {
            self.seen.cooldown_until = Some(done + chrono_dur(policy.cooldown));
        }
        self.ordered = self.ordered.saturating_add(nodes_ordered);
        // The votes are in rule order; the driving ones mute their rule.
        for (idx, v) in decision.votes.iter().enumerate() {
            if v.increment > 0 && v.outcome == decision.outcome {
                self.seen.last_fired[idx] = Some(now);
                if let policy::VoteReason::WindowOpen {
                    since,
                    add_once: Some(_),
                    ..
                } = v.reason
                {
                    self.seen.schedule_done[idx] = Some(since);
                }
            }
        }
        // The first chunk is sent now: bill it from this step.
        self.send_due(now);
        (nodes_ordered, requests, chunks.unsigned_abs())
    }
}

/// What the rules observe: closed-loop rules the simulated signals,
/// open-loop rules their recorded history, each kept to its retention.
struct Observer<'a> {
    modes: Vec<RuleMode>,
    histories: Vec<History>,
    open: Vec<Cursor<'a, Sample>>,
    demand: Cursor<'a, (DateTime<Utc>, f64)>,
    /// A recorded point counts for the step it falls in.
    point_life: chrono::Duration,
}

impl<'a> Observer<'a> {
    fn new(input: &ClusterInput<'a>, grid: &Grid) -> Self {
        let rules = &input.policy.rules;
        Self {
            modes: rule_modes(input.policy),
            histories: rules
                .iter()
                .map(|r| History::new(r.kind.retention(grid.step)))
                .collect(),
            open: (0..rules.len())
                .map(|i| {
                    Cursor::new(
                        input
                            .history
                            .get(i)
                            .and_then(|h| h.as_deref())
                            .unwrap_or(&[]),
                    )
                })
                .collect(),
            demand: Cursor::new(input.demand),
            point_life: chrono_dur(grid.step),
        }
    }

    /// Demand at `now` (held between samples), and every rule's reading of
    /// `signals` or its history appended.
    fn observe(
        &mut self,
        now: DateTime<Utc>,
        model: &Model,
        running: u32,
    ) -> (Option<f64>, Signals) {
        let demand = self.demand.at(now, |p| p.0).map(|p| p.1);
        let signals = model.signals(demand.unwrap_or(0.0), running);
        let point_life = self.point_life;
        for ((mode, history), cursor) in self
            .modes
            .iter()
            .zip(&mut self.histories)
            .zip(&mut self.open)
        {
            let value = match mode {
                RuleMode::Schedule => continue,
                RuleMode::Closed(signal) => match demand {
                    Some(_) => Reading::from_f64(signals.get(*signal)),
                    None => Reading::Missing(policy::DataIssue::Empty),
                },
                RuleMode::Open(_) => match cursor.at(now, |s| s.at) {
                    Some(s) if now - s.at < point_life => s.value,
                    _ => Reading::Missing(policy::DataIssue::Empty),
                },
            };
            history.push(Sample { at: now, value });
        }
        (demand, signals)
    }

    /// Every rule's recent samples, newest last.
    fn recent(&self) -> Vec<&[Sample]> {
        self.histories.iter().map(History::recent).collect()
    }
}

/// The timeline's sentences: consecutive steps that explain the same way
/// share one string, and with [`Detail::Events`] quiet steps have none.
struct Narrator {
    detail: Detail,
    units: Vec<Unit>,
    empty: Arc<str>,
    last: Option<(Decision, bool, Arc<str>)>,
}

impl Narrator {
    fn reason(&mut self, decision: Decision, held_by_operation: bool) -> Arc<str> {
        let quiet = decision.outcome == Outcome::Hold && decision.proposed == 0;
        let reason = match &self.last {
            _ if self.detail == Detail::Events && quiet => self.empty.clone(),
            // Explaining costs microseconds; most steps repeat the last one.
            Some((prev, held, text))
                if *held == held_by_operation && same_explanation(prev, &decision) =>
            {
                text.clone()
            }
            _ => {
                let mut text = decision.explain(&self.units);
                if held_by_operation {
                    text.push_str("; an operation is still in progress -> hold");
                }
                Arc::from(text)
            }
        };
        self.last = Some((decision, held_by_operation, reason.clone()));
        reason
    }
}

/// Replays one cluster over `grid`, closed loop. Pure and deterministic.
pub fn replay(input: &ClusterInput<'_>, grid: &Grid, detail: Detail) -> ClusterRun {
    let policy = input.policy;
    let model = input.model;
    let max_gap = policy::max_gap(grid.step);
    let delay = chrono_dur(model.provisioning_delay);
    let mut fleet = Fleet::new(input);
    let mut observer = Observer::new(input, grid);
    let mut narrator = Narrator {
        detail,
        units: policy.rules.iter().map(|r| r.unit).collect(),
        empty: Arc::from(""),
        last: None,
    };
    let mut costs = Costs::default();
    let mut summary = Summary {
        initial_task_nodes: input.initial_task_nodes,
        steps: grid.steps,
        open_loop_rules: policy
            .rules
            .iter()
            .zip(&observer.modes)
            .filter(|(_, m)| matches!(m, RuleMode::Open(_)))
            .map(|(r, _)| r.name.to_string())
            .collect(),
        ..Summary::default()
    };
    let mut outcome_counts = [0usize; Outcome::ALL.len()];
    let mut timeline = Vec::with_capacity(if detail == Detail::Summary {
        0
    } else {
        grid.steps
    });
    let mut in_flight_by_step = Vec::with_capacity(grid.steps);
    let mut node_hours_by = vec![0.0; input.offerings.len() + 1];

    for i in 0..grid.steps {
        let now = grid.at(i);
        fleet.advance(now);
        let (demand, signals) = observer.observe(now, &model, fleet.running);
        let decision = fleet.decide(policy, &observer.recent(), now, max_gap);

        // Act: while the operation runs, nothing is sent.
        let busy = fleet.busy(now);
        let removed = if busy {
            0
        } else {
            fleet.remove(policy, decision.removes(), now)
        };
        if removed > 0 {
            summary.nodes_removed = summary.nodes_removed.saturating_add(removed);
            summary.api_calls += 1;
            summary.operations += 1;
        }
        let acted = decision.orders() && !busy;
        let mut ordered = 0;
        if acted {
            let (nodes, requests, chunks) = fleet.order(input, &decision, delay, now);
            ordered = nodes;
            summary.nodes_added = summary.nodes_added.saturating_add(nodes);
            summary.chunks += chunks;
            summary.api_calls += requests;
            if nodes > 0 {
                summary.operations += 1;
            }
        }
        let held_by_operation =
            (decision.orders() && !acted) || (decision.removes() > 0 && removed == 0);
        let (outcome, increment) = if held_by_operation {
            (Outcome::Hold, 0)
        } else {
            (decision.outcome, if acted { ordered } else { 0 })
        };
        let in_flight = fleet.in_flight();
        summary.peak_in_flight = summary.peak_in_flight.max(in_flight);
        in_flight_by_step.push(in_flight);
        if let Some(k) = Outcome::ALL.iter().position(|o| *o == outcome) {
            outcome_counts[k] += 1;
        }

        // Costs over [now, now + step); removed nodes no longer serve.
        let signals = if removed > 0 {
            model.signals(demand.unwrap_or(0.0), fleet.running)
        } else {
            signals
        };
        costs.step(&signals, fleet.billed, grid.step);
        let hours = grid.step.as_secs_f64() / 3600.0;
        for (h, b) in node_hours_by.iter_mut().zip(&fleet.billed_by) {
            *h += f64::from(*b) * hours;
        }
        if demand.is_none() {
            summary.steps_without_demand += 1;
        }

        if detail != Detail::Summary {
            timeline.push(StepRecord {
                time: now,
                demand_mb: demand,
                capacity_mb: signals.capacity_mb,
                running: fleet.running,
                in_flight,
                outcome,
                increment,
                removed,
                reason: narrator.reason(decision, held_by_operation),
            });
        }
    }
    summary.node_hours = costs.node_hours;
    summary.unmet_minutes = costs.unmet_minutes;
    summary.unmet_gib_minutes = costs.unmet_gib_minutes;
    summary.final_task_nodes = input
        .initial_task_nodes
        .saturating_add(fleet.ordered)
        .saturating_sub(fleet.removed);
    summary.offerings = std::iter::once(("default", None))
        .chain(
            input
                .offerings
                .iter()
                .map(|o| (o.name.as_str(), o.price_per_hour)),
        )
        .enumerate()
        .map(|(i, (name, price))| OfferingFigures {
            name: name.to_string(),
            nodes_added: fleet.added_by[i],
            node_hours: node_hours_by[i],
            cost: price.map(|p| p * node_hours_by[i]),
            refusals: fleet.refused_by[i],
        })
        .collect();
    summary.outcomes = Outcome::ALL
        .iter()
        .zip(outcome_counts)
        .filter(|(_, n)| *n > 0)
        .map(|(o, n)| (o.metric_label(), n))
        .collect();
    ClusterRun {
        instance_id: input.instance_id.to_string(),
        summary,
        timeline,
        in_flight: in_flight_by_step,
        chunks: fleet.chunks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::schedule::parse_cron;
    use crate::policy::{
        Amount, Bound, OnMissing, ReplaySignal, Rule, RuleKind, Sustain, TargetForm, Window,
        WindowEnd,
    };

    fn t(m: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T00:00:00Z")
            .unwrap()
            .to_utc()
            + chrono::Duration::minutes(m)
    }

    fn grid(minutes: i64) -> Grid {
        Grid::new(t(0), t(minutes), Duration::from_secs(60)).unwrap()
    }

    fn rule(name: &str, kind: RuleKind) -> Rule {
        Rule {
            name: Arc::from(name),
            query: Some("q".into()),
            kind,
            cooldown: None,
            on_missing: OnMissing::Hold,
            unit: Unit::Megabytes,
            replay_signal: Some(ReplaySignal::PendingMb),
            max_value: crate::policy::DEFAULT_MAX_VALUE,
        }
    }

    fn sized(per_node: f64) -> Rule {
        rule(
            "size",
            RuleKind::Target {
                form: TargetForm::Demand {
                    per_node,
                    factor: 1.0,
                },
                bootstrap: 1,
            },
        )
    }

    fn policy(rules: Vec<Rule>, cooldown_min: u64) -> ClusterPolicy {
        ClusterPolicy {
            min_task_nodes: 0,
            max_task_nodes: 100,
            cooldown: Duration::from_secs(60 * cooldown_min),
            max_step: None,
            max_nodes_per_hour: None,
            max_nodes_per_day: None,
            rules,
            scale_in: Default::default(),
        }
    }

    fn model(delay_min: u64) -> Model {
        Model {
            base_capacity_mb: 0.0,
            node_memory_mb: 100.0,
            provisioning_delay: Duration::from_secs(60 * delay_min),
        }
    }

    fn run(
        policy: &ClusterPolicy,
        model: Model,
        demand: &[(DateTime<Utc>, f64)],
        minutes: i64,
    ) -> ClusterRun {
        let input = ClusterInput {
            instance_id: "emr-test0001",
            policy,
            model,
            initial_task_nodes: 0,
            demand,
            history: &[],
            offerings: &[],
            sold_out_backoff: Duration::from_secs(600),
        };
        replay(&input, &grid(minutes), Detail::Full)
    }

    /// 2500 MB from 0 task nodes of 100 MB: 25 nodes, chunks of 20 then 5.
    /// Chunk 1 is sent at m 0 and serves at m 4; chunk 2 is sent at m 4 and
    /// serves at m 8; the cooldown runs from m 8. Billing: 20 × 10 + 5 × 6 =
    /// 230 node-minutes; unmet 4 × 2500 + 4 × 500 = 12000 MB·min.
    #[test]
    fn chunks_follow_each_other_and_bill_from_their_own_send() {
        let p = policy(vec![sized(100.0)], 5);
        let r = run(&p, model(4), &[(t(0), 2500.0)], 10);
        let s = &r.summary;
        assert_eq!(
            (s.nodes_added, s.chunks, s.api_calls, s.operations),
            (25, 2, 2, 1)
        );
        assert_eq!(
            r.chunks
                .iter()
                .map(|c| (c.sent_at, c.serving_at, c.nodes))
                .collect::<Vec<_>>(),
            [(t(0), t(4), 20), (t(4), t(8), 5)]
        );
        assert_eq!(r.in_flight, [25, 25, 25, 25, 5, 5, 5, 5, 0, 0]);
        let running: Vec<u32> = r.timeline.iter().map(|s| s.running).collect();
        assert_eq!(running, [0, 0, 0, 0, 20, 20, 20, 20, 25, 25]);
        assert!((s.node_hours - 230.0 / 60.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.unmet_minutes, 8.0);
        assert!((s.unmet_gib_minutes - 12000.0 / 1024.0).abs() < 1e-9);
        assert_eq!(s.peak_in_flight, 25);
        // m 4..7: the 5 nodes of chunk 2 count in flight; nothing more.
        assert!(r.timeline[1..].iter().all(|s| s.increment == 0));
        assert_eq!(s.final_task_nodes, 25);
    }

    /// Offering a is sold out from m 0 to m 30: the first order goes to b,
    /// a is skipped for the backoff (10 min) after its refusal; at m 20 both
    /// are sold out, nothing is ordered and the cluster backs off. Node-hours
    /// and cost are kept per offering.
    #[test]
    fn orders_fall_back_across_offerings_and_bill_each() {
        let p = policy(vec![sized(100.0)], 0);
        let offerings = [
            ReplayOffering {
                name: "a".into(),
                price_per_hour: Some(2.0),
                sold_out: vec![(t(0), t(30))],
            },
            ReplayOffering {
                name: "b".into(),
                price_per_hour: Some(3.0),
                sold_out: vec![(t(20), t(30))],
            },
        ];
        // 500 MB at m 0 (5 nodes); 1000 MB from m 20 (5 more).
        let demand = [(t(0), 500.0), (t(20), 1000.0)];
        let input = ClusterInput {
            instance_id: "emr-test0001",
            policy: &p,
            model: model(4),
            initial_task_nodes: 0,
            demand: &demand,
            history: &[],
            offerings: &offerings,
            sold_out_backoff: Duration::from_secs(600),
        };
        let r = replay(&input, &grid(60), Detail::Full);
        let by = |name: &str| {
            r.summary
                .offerings
                .iter()
                .find(|o| o.name == name)
                .unwrap()
                .clone()
        };
        // m 0: a refuses, b takes 5. m 20: a is sold out (refuses), b too:
        // backoff until m 30. m 30: a serves the 5 more.
        assert_eq!(
            r.chunks
                .iter()
                .map(|c| (c.sent_at, c.nodes, c.offering))
                .collect::<Vec<_>>(),
            [(t(0), 5, 2), (t(30), 5, 1)]
        );
        assert_eq!((by("a").nodes_added, by("b").nodes_added), (5, 5));
        assert_eq!((by("a").refusals, by("b").refusals), (2, 1));
        assert_eq!(by("default").nodes_added, 0);
        // b: 5 nodes billed m 0..60; a: 5 nodes m 30..60.
        assert!((by("b").node_hours - 5.0).abs() < 1e-9, "{:?}", by("b"));
        assert!((by("a").node_hours - 2.5).abs() < 1e-9, "{:?}", by("a"));
        assert!((by("b").cost.unwrap() - 15.0).abs() < 1e-9);
        assert!((by("a").cost.unwrap() - 5.0).abs() < 1e-9);
        assert!((r.summary.node_hours - 7.5).abs() < 1e-9);
        // Two orders sent, three refusals.
        assert_eq!(r.summary.api_calls, 5);
        assert_eq!(r.summary.operations, 2);
    }

    /// A schedule floor that opens while an operation runs waits for it:
    /// one operation at a time per cluster, as the daemon does.
    #[test]
    fn a_second_operation_waits_for_the_first() {
        let floor = Rule {
            name: Arc::from("office"),
            query: None,
            kind: RuleKind::Schedule {
                window: Box::new(Window::new(
                    parse_cron("0 2 0 * * *").unwrap(),
                    chrono_tz::UTC,
                    WindowEnd::After(Duration::from_secs(3600)),
                )),
                floor_task_nodes: 40,
                add_once: None,
            },
            cooldown: None,
            on_missing: OnMissing::Hold,
            unit: Unit::Plain,
            replay_signal: None,
            max_value: crate::policy::DEFAULT_MAX_VALUE,
        };
        let p = policy(vec![sized(100.0), floor], 30);
        let r = run(&p, model(4), &[(t(0), 2500.0)], 12);
        let at = |m: usize| &r.timeline[m];
        assert_eq!((at(0).outcome, at(0).increment), (Outcome::ScaleOut, 25));
        assert_eq!((at(2).outcome, at(2).increment), (Outcome::Hold, 0));
        assert!(
            at(2).reason.contains("operation is still in progress"),
            "{}",
            at(2).reason
        );
        // m 8: the operation is done; the cooldown (30m) still runs, but a
        // floor may be restored during it.
        assert_eq!((at(8).outcome, at(8).increment), (Outcome::ScaleOut, 15));
        assert_eq!(r.summary.nodes_added, 40);
        assert!(r.summary.open_loop_rules.is_empty());
    }

    #[test]
    fn no_demand_before_the_first_sample_is_missing_data() {
        let p = policy(vec![sized(100.0)], 5);
        let r = run(&p, model(4), &[(t(3), 50.0)], 6);
        assert_eq!(r.summary.steps_without_demand, 3);
        assert_eq!(r.timeline[0].demand_mb, None);
        assert_eq!(r.timeline[0].outcome, Outcome::DataError);
        assert_eq!(r.timeline[3].demand_mb, Some(50.0));
        assert_eq!(r.timeline[5].demand_mb, Some(50.0), "held");
        assert_eq!(r.summary.unmet_minutes, 3.0);
    }

    /// Budgets count the replayed orders: 3 an hour, 2 per decision.
    #[test]
    fn budgets_use_the_replayed_orders() {
        let mut p = policy(
            vec![rule(
                "pending",
                RuleKind::Threshold {
                    bound: Bound::Above(0.0),
                    sustain: Sustain::Evaluations(1),
                    step: Amount::Add(2),
                },
            )],
            0,
        );
        p.max_nodes_per_hour = Some(3);
        let r = run(&p, model(1), &[(t(0), 1e9)], 62);
        let got: Vec<(Outcome, u32)> = r.timeline[..3]
            .iter()
            .map(|s| (s.outcome, s.increment))
            .collect();
        assert_eq!(
            got,
            [
                (Outcome::ScaleOut, 2),
                (Outcome::ScaleOut, 1),
                (Outcome::Budget, 0)
            ]
        );
        // m 60: the order of m 0 has left the hour; 1 of m 1 remains.
        assert_eq!(
            (r.timeline[60].outcome, r.timeline[60].increment),
            (Outcome::ScaleOut, 2)
        );
    }

    #[test]
    fn open_loop_rules_read_their_history_and_are_flagged() {
        let mut recorded = rule(
            "recorded",
            RuleKind::Threshold {
                bound: Bound::Above(0.0),
                sustain: Sustain::Evaluations(1),
                step: Amount::Add(1),
            },
        );
        recorded.replay_signal = None;
        let p = policy(vec![recorded], 0);
        let history = vec![Some(vec![
            Sample {
                at: t(1),
                value: Reading::Value(5.0),
            },
            Sample {
                at: t(2),
                value: Reading::Missing(policy::DataIssue::NaN),
            },
            Sample {
                at: t(4),
                value: Reading::Value(5.0),
            },
        ])];
        let input = ClusterInput {
            instance_id: "emr-test0001",
            policy: &p,
            model: model(1),
            initial_task_nodes: 0,
            demand: &[(t(0), 0.0)],
            history: &history,
            offerings: &[],
            sold_out_backoff: Duration::from_secs(600),
        };
        let r = replay(&input, &grid(5), Detail::Full);
        assert_eq!(r.summary.open_loop_rules, ["recorded"]);
        let inc: Vec<u32> = r.timeline.iter().map(|s| s.increment).collect();
        // m 0: no point yet; m 1: 5 > 0; m 2: NaN; m 3: no point; m 4: 5.
        assert_eq!(inc, [0, 1, 0, 0, 1]);
        assert_eq!(r.timeline[2].outcome, Outcome::DataError);
    }

    #[test]
    fn grids_refuse_nonsense() {
        let s = Duration::from_secs(60);
        assert!(Grid::new(t(10), t(0), s).is_err());
        assert!(Grid::new(t(0), t(0), s).is_err());
        assert!(Grid::new(t(0), t(10), Duration::from_millis(1500)).is_err());
        assert!(Grid::new(t(0), t(0) + chrono::Duration::seconds(30), s).is_err());
        assert_eq!(
            Grid::new(t(0), t(10) + chrono::Duration::seconds(30), s)
                .unwrap()
                .steps,
            10
        );
    }

    /// 10 task nodes of 100 MB, demand 1000 MB for 30 minutes, then 250 MB.
    /// A utilisation target of 100% (±10%) wants ceil(10 × 0.25) = 3 from
    /// m 30: a removal of 7, kept by the 5-minute window from m 30 to m 35.
    /// m 35: -3 (max_step); m 36 proposes 4 (7 running); m 37 (the first
    /// removal drained, its 2-minute grace over): window min 4, -3; m 38
    /// proposes 1; m 39: -1. From m 40, 3 nodes sit inside the band.
    /// Billing: 10 × 37 + 7 × 2 + 4 × 2 + 3 × 19 = 449 node-minutes.
    #[test]
    fn a_removal_stops_serving_at_once_and_bills_until_its_grace_ends() {
        let util = Rule {
            unit: Unit::Ratio,
            replay_signal: Some(ReplaySignal::Utilisation),
            max_value: crate::policy::DEFAULT_MAX_VALUE,
            ..rule(
                "util",
                RuleKind::Target {
                    form: TargetForm::Ratio {
                        target: 1.0,
                        tolerance: 0.1,
                    },
                    bootstrap: 1,
                },
            )
        };
        let mut p = policy(vec![util], 0);
        p.min_task_nodes = 2;
        p.scale_in = policy::ScaleInPolicy {
            enabled: true,
            grace_period: Duration::from_secs(120),
            stabilization: Duration::from_secs(300),
            cooldown: Duration::ZERO,
            max_step: 3,
            scope: policy::NodeScope::AnyTask,
        };
        let demand = [(t(0), 1000.0), (t(30), 250.0)];
        let input = ClusterInput {
            instance_id: "emr-test0001",
            policy: &p,
            model: model(1),
            initial_task_nodes: 10,
            demand: &demand,
            history: &[],
            offerings: &[],
            sold_out_backoff: Duration::from_secs(600),
        };
        let r = replay(&input, &grid(60), Detail::Full);
        let removals: Vec<(i64, u32)> = r
            .timeline
            .iter()
            .filter(|s| s.removed > 0)
            .map(|s| ((s.time - t(0)).num_minutes(), s.removed))
            .collect();
        assert_eq!(
            removals,
            vec![(35, 3), (37, 3), (39, 1)],
            "{:#?}",
            r.timeline
        );
        let s = &r.summary;
        assert_eq!(
            (s.nodes_added, s.nodes_removed, s.final_task_nodes),
            (0, 7, 3)
        );
        assert!((s.node_hours - 449.0 / 60.0).abs() < 1e-9, "{s:?}");
        assert_eq!(s.unmet_minutes, 0.0);
        assert_eq!(r.timeline[35].running, 7, "out of service at once");
        assert_eq!(r.timeline[35].outcome, Outcome::ScaleIn);
        assert!(
            r.timeline[35].reason.contains("-3 (graceful)"),
            "{}",
            r.timeline[35].reason
        );
        // The same policy without scale-in bills every node for the hour.
        let mut off_policy = p.clone();
        off_policy.scale_in.enabled = false;
        let input = ClusterInput {
            policy: &off_policy,
            ..input
        };
        let off = replay(&input, &grid(60), Detail::Summary);
        assert_eq!(off.summary.nodes_removed, 0);
        assert!((off.summary.node_hours - 10.0).abs() < 1e-9);
    }
}
