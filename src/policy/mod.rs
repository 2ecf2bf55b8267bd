//! The decision core: from observations, capacity and the clock to how many
//! task nodes to add, and why. Pure: no I/O, no clock reads; `now` is a
//! parameter. The daemon, `plan`, `backtest` and `demo` all call [`decide`].
//!
//! Scale-out and scale-in are one decision: scale-out always wins, and a
//! removal is proposed only when no rule adds and none lacks data, then kept
//! to the largest desired count of its stabilization window ([`scale_in`]).
//! A capacity rule ([`capacity`]) bounds every removal by what it wants, so
//! no other rule removes nodes it needs. With a cluster's scale-in off, a
//! rule proposing fewer nodes than running means "hold".
//!
//! # Rules
//! - Guard rails apply in this order: pause / breaker / unknown capacity (hold), then
//!   max_task_nodes (running + in flight), max_step, hourly and daily budgets, and last
//!   the cluster cooldown or sold-out backoff, during which only a floor
//!   (min_task_nodes or an open schedule's floor) may be restored. Budgets and the
//!   ceiling apply to floors too.
//! - Missing data (empty, NaN/Inf, stale, several series, query error) is never a number.
//!   With the default `on_missing = "hold"` it never adds nodes.
//! - The demand-sized target form counts nodes in flight against the demand:
//!   `desired = ceil(pending / per_node x factor) + running`, so the increment is
//!   `ceil(..) - in_flight`. Pending memory does not fall until ordered nodes arrive, so
//!   the literal `+ effective` form would order the same demand again on every tick.
//! - Capacity unknown (no fresh DescribeInstances answer, no TaskNodeSize) means hold.
//!   A cluster in a flow that is not ours (status not 2 or 302) holds too.

pub(crate) mod capacity;
pub(crate) mod decision;
pub mod scale_in;
pub mod schedule;
pub(crate) mod sustain;
pub(crate) mod time;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use capacity::{Capacity, Horizon, Sizing};
pub use decision::{Cap, Decision, Outcome, Vote, VoteReason};
pub use scale_in::{NodeScope, Proposal, Removal, ScaleInPolicy};
pub use schedule::{Window, WindowEnd};
pub use sustain::Sustain;

/// The most nodes one ScaleOutInstance request may add.
pub(crate) const MAX_CHUNK: u32 = 20;

/// Why an observation is not a usable number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataIssue {
    /// The query returned no series.
    Empty,
    /// The value is NaN or infinite.
    NaN,
    /// The newest sample is older than the rule's `max_age`.
    Stale,
    /// The query returned more than one series.
    MultipleSeries,
    /// The query failed.
    Error,
    /// The value is above the rule's `max_value` (or below its negative):
    /// no plausible reading, so never demand.
    OutOfRange,
}

impl DataIssue {
    /// Every issue, in label order.
    pub(crate) const ALL: [DataIssue; 6] = [
        DataIssue::Empty,
        DataIssue::NaN,
        DataIssue::Stale,
        DataIssue::MultipleSeries,
        DataIssue::Error,
        DataIssue::OutOfRange,
    ];

    /// The `kind` metric label.
    pub(crate) fn metric_label(self) -> &'static str {
        match self {
            DataIssue::Empty => "empty",
            DataIssue::NaN => "nan",
            DataIssue::Stale => "stale",
            DataIssue::MultipleSeries => "multiple_series",
            DataIssue::Error => "error",
            DataIssue::OutOfRange => "out_of_range",
        }
    }
}

/// One observation: a finite number, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// A finite value.
    Value(f64),
    /// No usable value.
    Missing(DataIssue),
}

impl Reading {
    /// A value, with NaN and infinities turned into [`DataIssue::NaN`].
    pub(crate) fn from_f64(v: f64) -> Self {
        if v.is_finite() {
            Reading::Value(v)
        } else {
            Reading::Missing(DataIssue::NaN)
        }
    }

    /// The reading, with a value whose magnitude is above `max_value` made
    /// [`DataIssue::OutOfRange`].
    pub(crate) fn bounded(self, max_value: f64) -> Self {
        match self {
            Reading::Value(v) if v.abs() > max_value => Reading::Missing(DataIssue::OutOfRange),
            other => other,
        }
    }

    /// The value, if usable.
    pub(crate) fn value(self) -> Option<f64> {
        match self {
            Reading::Value(v) => Some(v),
            Reading::Missing(_) => None,
        }
    }
}

/// A reading at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When the evaluation (or range step) happened.
    pub at: DateTime<Utc>,
    /// What it saw.
    pub value: Reading,
}

/// What a rule does when its data is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMissing {
    /// Vote for nothing (default). Missing data never adds nodes.
    #[default]
    Hold,
    /// Vote as if the condition held.
    FailOpen,
    /// Vote only to restore the cluster's floor.
    Floor,
}

/// How a value is shown in explanations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unit {
    /// Plain number.
    #[default]
    Plain,
    /// Megabytes, shown as GiB.
    Megabytes,
    /// A 0..1 ratio, shown as a percentage.
    Ratio,
}

/// Which simulated signal a rule's query stands for in replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySignal {
    /// Pending memory, MB.
    PendingMb,
    /// Available memory, MB.
    AvailableMb,
    /// Allocated / capacity, 0..1.
    Utilisation,
    /// Demand (allocated plus pending), MB: what a capacity rule reads.
    DemandMb,
}

/// A threshold bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Breach when the value is greater.
    Above(f64),
    /// Breach when the value is smaller.
    Below(f64),
}

impl Bound {
    /// Whether `v` breaches.
    pub(crate) fn breached(self, v: f64) -> bool {
        match self {
            Bound::Above(b) => v > b,
            Bound::Below(b) => v < b,
        }
    }
}

/// How many nodes a threshold rule adds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// A fixed count.
    Add(u32),
    /// A percentage of the effective count, rounded up, at least 1.
    Percent(f64),
    /// Give back this many nodes (scale-in); adds none.
    Remove(u32),
}

impl Amount {
    /// The increment for `effective` nodes.
    pub(crate) fn nodes(self, effective: u32) -> u32 {
        match self {
            Amount::Add(n) => n,
            Amount::Remove(_) => 0,
            Amount::Percent(p) => {
                let n = (f64::from(effective) * p / 100.0).ceil();
                if n.is_finite() && n >= 1.0 {
                    n.min(f64::from(u32::MAX)) as u32
                } else {
                    1
                }
            }
        }
    }
}

/// A target rule's formula.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TargetForm {
    /// HPA: `desired = ceil(effective × value / target)`, hold within `tolerance`.
    Ratio {
        /// The value to hold.
        target: f64,
        /// Relative band around the target where nothing happens (default 0.1).
        tolerance: f64,
    },
    /// Demand: `desired = ceil(value / per_node × factor) + running`; nodes in
    /// flight already count against the demand.
    Demand {
        /// What one task node absorbs, in the value's unit.
        per_node: f64,
        /// Headroom factor (default 1.0).
        factor: f64,
    },
}

/// What kind of rule, with its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Add nodes when a value stays past a bound.
    Threshold {
        /// The bound.
        bound: Bound,
        /// How long it must hold.
        sustain: Sustain,
        /// How much to add.
        step: Amount,
    },
    /// Size the cluster to a target.
    Target {
        /// The formula.
        form: TargetForm,
        /// Nodes to add from 0 task nodes (ratio form), or on missing data with `fail_open`.
        bootstrap: u32,
    },
    /// Keep a floor while a time window is open; optionally add once per window.
    Schedule {
        /// The window.
        window: Box<Window>,
        /// Task nodes to hold at least while open.
        floor_task_nodes: u32,
        /// Nodes to add once when a window opens.
        add_once: Option<u32>,
    },
    /// Size the cluster from demand, with headroom and a look-ahead by the
    /// demand's growth; proposes scale-out and scale-in.
    Capacity(Capacity),
}

impl RuleKind {
    /// How many recent samples judge this rule: enough for its sustain
    /// window at one sample per `interval`. The daemon and the backtest keep
    /// this many per rule.
    pub(crate) fn retention(&self, interval: Duration) -> usize {
        let per = interval.as_secs_f64().max(0.001);
        match self {
            RuleKind::Threshold {
                sustain: Sustain::For(d),
                ..
            } => (d.as_secs_f64() / per).ceil() as usize + 3,
            RuleKind::Threshold {
                sustain: Sustain::Evaluations(n),
                ..
            } => *n as usize + 2,
            // Every sample of the trend window, and one before it.
            RuleKind::Capacity(c) => (c.trend_window.as_secs_f64() / per).ceil() as usize + 3,
            _ => 2,
        }
        .min(10_000)
    }
}

/// A rule's `max_value` when unset: 1e12 in the rule's unit.
pub const DEFAULT_MAX_VALUE: f64 = 1e12;

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique within the cluster; the `rule` metric label.
    pub name: Arc<str>,
    /// The PromQL expression; none for schedules.
    pub query: Option<String>,
    /// What it does.
    pub kind: RuleKind,
    /// Mutes only this rule's vote for this long after it drove an order.
    pub cooldown: Option<Duration>,
    /// Missing-data behaviour.
    pub on_missing: OnMissing,
    /// Display unit.
    pub unit: Unit,
    /// In replays, the simulated signal this query stands for.
    pub replay_signal: Option<ReplaySignal>,
    /// The largest plausible magnitude of the query's value; anything
    /// beyond it is data of kind `out_of_range`, never demand (default
    /// [`DEFAULT_MAX_VALUE`]).
    pub max_value: f64,
}

/// A cluster's guard rails and rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterPolicy {
    /// Floor: below it, scale out up to it.
    pub min_task_nodes: u32,
    /// Ceiling on running plus in-flight task nodes.
    pub max_task_nodes: u32,
    /// Quiet time after an operation's last chunk.
    pub cooldown: Duration,
    /// Most nodes per decision.
    pub max_step: Option<u32>,
    /// Most nodes in any rolling hour.
    pub max_nodes_per_hour: Option<u32>,
    /// Most nodes in any rolling day.
    pub max_nodes_per_day: Option<u32>,
    /// The rules, in configuration order.
    pub rules: Vec<Rule>,
    /// Scale-in; off by default.
    pub scale_in: ScaleInPolicy,
}

/// What the daemon knows about a cluster at decision time.
#[derive(Debug, Clone, Default)]
pub struct ClusterView<'a> {
    /// Running task nodes; `None` when capacity could not be read.
    pub running: Option<u32>,
    /// Nodes this daemon ordered whose flow is not done.
    pub in_flight: u32,
    /// Nodes among `running` that arrived within the settle window: the
    /// load metrics cannot have seen them yet, so target rules judge the
    /// demand against the capacity without them.
    pub settling: u32,
    /// End of the cluster cooldown.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// No orders until then after a sold-out answer.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Operator pause.
    pub paused: bool,
    /// A flow outlived its limit; ordering stops until resumed.
    pub breaker_open: bool,
    /// Decide and report only.
    pub dry_run: bool,
    /// The cluster is in a flow this daemon did not start (status not running).
    pub busy: bool,
    /// Orders placed (time, nodes), for budgets; older than a day may be omitted.
    pub orders: &'a [(DateTime<Utc>, u32)],
    /// Per rule (same order as the policy's rules): when it last drove an order.
    pub rule_last_fired: &'a [Option<DateTime<Utc>>],
    /// Per rule: the schedule window start already served by its one-shot add.
    pub schedule_done: &'a [Option<DateTime<Utc>>],
    /// Nodes named by an open scale-in: they count as gone.
    pub leaving: u32,
    /// An operation (scale-out or scale-in) is open.
    pub operation_open: bool,
    /// End of the scale-in cooldown (after any operation).
    pub scale_in_cooldown_until: Option<DateTime<Utc>>,
    /// This cluster's earlier removal proposals, oldest first, since the
    /// daemon started (the window must be observed after every start).
    pub removal_history: &'a [Proposal],
    /// Tencent's own auto-scaling has an enabled strategy on this cluster
    /// and `coexist_with_builtin` is off: hold everything.
    pub conflict: bool,
    /// Tencent's auto-scaling strategies could not be read: scale-in holds.
    pub builtin_unknown: bool,
    /// With `[ha]`, this daemon stands by: it decides what the leader would,
    /// and the outcome is always `standby`.
    pub standby: bool,
    /// The median duration of the cluster's recent completed scale-out
    /// flows (in replays, the provisioning delay); a capacity rule's
    /// automatic horizon is twice it. `None`: none observed yet.
    pub scale_out: Option<Duration>,
}

/// Per rule (same order as the policy's rules): recent samples, newest last.
/// Schedules take an empty slice.
pub(crate) type Observations<'a> = &'a [&'a [Sample]];

/// Splits `n` nodes into requests of at most [`MAX_CHUNK`].
pub(crate) fn chunks(n: u32) -> Vec<u32> {
    let mut out = Vec::with_capacity(n.div_ceil(MAX_CHUNK) as usize);
    let mut left = n;
    while left > 0 {
        let c = left.min(MAX_CHUNK);
        out.push(c);
        left -= c;
    }
    out
}

fn within(since: Option<DateTime<Utc>>, d: Option<Duration>, now: DateTime<Utc>) -> bool {
    match (since, d) {
        (Some(t), Some(d)) => now < time::after(t, d),
        _ => false,
    }
}

fn ordered_since(orders: &[(DateTime<Utc>, u32)], since: DateTime<Utc>) -> u32 {
    orders
        .iter()
        .filter(|(t, _)| *t > since)
        .map(|(_, n)| *n)
        .fold(0u32, u32::saturating_add)
}

/// What every vote is judged against.
#[derive(Clone, Copy)]
struct Context {
    effective: u32,
    min_task_nodes: u32,
    max_task_nodes: u32,
    scale_out: Option<Duration>,
    running: u32,
    settling: u32,
    floor_gap: u32,
    now: DateTime<Utc>,
    max_gap: Duration,
    scale_in: bool,
}

/// One rule's vote before caps.
struct Ballot {
    increment: u32,
    removal: u32,
    /// The removal bounds the cluster's even at 0: a capacity rule that
    /// wants exactly the current count withholds its consent.
    binding: bool,
    reason: VoteReason,
    issue: Option<DataIssue>,
}

impl Ballot {
    fn add(increment: u32, reason: VoteReason) -> Self {
        Self {
            increment,
            removal: 0,
            binding: false,
            reason,
            issue: None,
        }
    }
}

/// One rule's vote: the increment (or, with scale-in on, the removal) it
/// asks for and why.
fn vote(rule: &Rule, samples: &[Sample], ctx: Context, done: Option<DateTime<Utc>>) -> Ballot {
    let Context {
        effective,
        min_task_nodes,
        max_task_nodes,
        scale_out,
        running,
        settling,
        floor_gap,
        now,
        max_gap,
        scale_in,
    } = ctx;
    if let RuleKind::Schedule {
        window,
        floor_task_nodes,
        add_once,
    } = &rule.kind
    {
        return match window.open_since(now) {
            None => Ballot::add(0, VoteReason::WindowClosed),
            Some(start) => {
                let floor = floor_task_nodes.saturating_sub(effective);
                let once = add_once.filter(|_| done != Some(start)).unwrap_or(0);
                Ballot::add(
                    floor.max(once),
                    VoteReason::WindowOpen {
                        since: start,
                        floor: *floor_task_nodes,
                        add_once: (once > 0).then_some(once),
                    },
                )
            }
        };
    }
    let current = samples.last().map(|s| s.value);
    let value = match current {
        Some(Reading::Value(v))
            if samples
                .last()
                .is_some_and(|s| (now - s.at).to_std().is_ok_and(|age| age <= max_gap)) =>
        {
            v
        }
        other => {
            let issue = match other {
                Some(Reading::Missing(i)) => i,
                _ => DataIssue::Stale,
            };
            let inc = match rule.on_missing {
                OnMissing::Hold => 0,
                OnMissing::Floor => floor_gap,
                OnMissing::FailOpen => match &rule.kind {
                    RuleKind::Threshold { step, .. } => step.nodes(effective),
                    RuleKind::Target { bootstrap, .. } => *bootstrap,
                    // No size to fail open to: restore the floor.
                    RuleKind::Capacity(_) => floor_gap,
                    RuleKind::Schedule { .. } => 0,
                },
            };
            return Ballot {
                increment: inc,
                removal: 0,
                binding: false,
                reason: VoteReason::Missing {
                    issue,
                    on_missing: rule.on_missing,
                },
                issue: Some(issue),
            };
        }
    };
    match &rule.kind {
        RuleKind::Threshold {
            bound,
            sustain,
            step,
        } => {
            let run = sustain::current_run(samples, now, max_gap, |v| bound.breached(v));
            let held = Sustain::progress(run, now);
            let count = run.map_or(0, |r| r.count);
            if sustain.is_met(run, now) {
                let mut ballot = Ballot::add(
                    step.nodes(effective),
                    VoteReason::Breached {
                        value,
                        bound: *bound,
                        sustain: *sustain,
                        held,
                        count,
                    },
                );
                if let (Amount::Remove(n), true) = (step, scale_in) {
                    ballot.removal = *n;
                }
                ballot
            } else {
                Ballot::add(
                    0,
                    VoteReason::NotBreached {
                        value,
                        bound: *bound,
                        sustain: *sustain,
                        held,
                        count,
                    },
                )
            }
        }
        RuleKind::Target { form, bootstrap } => {
            let desired = match *form {
                TargetForm::Ratio { target, tolerance } => {
                    // The value was measured on the capacity without the
                    // nodes still settling.
                    let seen = effective.saturating_sub(settling);
                    let ratio = value / target;
                    if scale_in && ratio < 1.0 - tolerance && seen > 0 && settling == 0 {
                        // Below the band, measured on every node: fewer would
                        // do. Never while nodes still settle (the metric has
                        // not seen them).
                        ceil_u32(f64::from(seen) * ratio).min(effective)
                    } else if ratio <= 1.0 + tolerance {
                        effective
                    } else if seen == 0 {
                        *bootstrap
                    } else {
                        ceil_u32(f64::from(seen) * ratio).max(effective)
                    }
                }
                TargetForm::Demand { per_node, factor } => {
                    // Pending demand the settling nodes will absorb once
                    // the metric sees them.
                    ceil_u32(value.max(0.0) / per_node * factor)
                        .saturating_add(running.saturating_sub(settling))
                }
            };
            // The demand form reads pending work, which cannot show idle
            // capacity: it never proposes a removal.
            let removal = match form {
                TargetForm::Ratio { .. } if scale_in => effective.saturating_sub(desired),
                _ => 0,
            };
            Ballot {
                increment: desired.saturating_sub(effective),
                removal,
                binding: false,
                reason: VoteReason::Target {
                    value,
                    form: *form,
                    desired,
                },
                issue: None,
            }
        }
        RuleKind::Capacity(capacity) => {
            // Demand does not fall when nodes arrive: no settle window.
            let sizing = capacity.size(value, samples, now, scale_out);
            let bounded = |n: u32| {
                n.max(min_task_nodes)
                    .min(max_task_nodes.max(min_task_nodes))
            };
            let desired = bounded(sizing.raw);
            // An order serves one flow later: it is due once demand plus
            // one flow's look-ahead outgrows what runs and comes.
            let increment = if bounded(sizing.due) > effective {
                desired.saturating_sub(effective)
            } else {
                0
            };
            Ballot {
                increment,
                removal: if scale_in {
                    effective.saturating_sub(desired)
                } else {
                    0
                },
                binding: true,
                reason: VoteReason::Capacity {
                    sizing,
                    desired,
                    has: effective,
                },
                issue: None,
            }
        }
        RuleKind::Schedule { .. } => Ballot::add(0, VoteReason::WindowClosed),
    }
}

fn ceil_u32(x: f64) -> u32 {
    let c = x.ceil();
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        c as u32
    }
}

/// The longest gap between consecutive samples that still counts as
/// continuous, for samples taken every `interval`: 2.5 intervals, so one
/// late or lost evaluation does not restart a `for` window or a
/// stabilization window, and two do.
pub(crate) fn max_gap(interval: Duration) -> Duration {
    interval * 2 + interval / 2
}

/// Decides how many task nodes to add to one cluster, and why.
///
/// `observations[i]` holds rule `i`'s recent samples, newest last; `max_gap`
/// is the longest gap between consecutive samples that still counts as
/// continuous ([`max_gap`] of the evaluation interval or range step).
pub fn decide(
    policy: &ClusterPolicy,
    view: &ClusterView<'_>,
    observations: Observations<'_>,
    now: DateTime<Utc>,
    max_gap: Duration,
) -> Decision {
    // Nodes named by an open scale-in count as gone.
    let running = view.running.unwrap_or(0).saturating_sub(view.leaving);
    let effective = running.saturating_add(view.in_flight);
    let scale_in = &policy.scale_in;
    let min_gap = policy.min_task_nodes.saturating_sub(effective);

    let mut votes = Vec::with_capacity(policy.rules.len());
    let mut schedule_floor_gap = 0u32;
    let mut schedule_floor = 0u32;
    let mut removals = Vec::with_capacity(policy.rules.len());
    for (i, rule) in policy.rules.iter().enumerate() {
        let samples = observations.get(i).copied().unwrap_or(&[]);
        let done = view.schedule_done.get(i).copied().flatten();
        let ctx = Context {
            effective,
            min_task_nodes: policy.min_task_nodes,
            max_task_nodes: policy.max_task_nodes,
            scale_out: view.scale_out,
            running,
            settling: view.settling.min(running),
            floor_gap: min_gap,
            now,
            max_gap,
            scale_in: scale_in.enabled,
        };
        let Ballot {
            mut increment,
            removal,
            binding,
            reason,
            issue,
        } = vote(rule, samples, ctx, done);
        if let VoteReason::WindowOpen { floor, .. } = reason {
            schedule_floor_gap = schedule_floor_gap.max(floor.saturating_sub(effective));
            schedule_floor = schedule_floor.max(floor);
        }
        removals.push((removal, binding));
        let last = view.rule_last_fired.get(i).copied().flatten();
        let muted = increment > 0 && within(last, rule.cooldown, now);
        if muted {
            increment = 0;
        }
        votes.push(Vote {
            rule: rule.name.clone(),
            value: samples.last().and_then(|s| s.value.value()),
            issue,
            increment,
            removal,
            muted,
            reason,
            outcome: Outcome::Hold,
        });
    }
    let floor_gap = min_gap.max(schedule_floor_gap);
    let proposed = votes
        .iter()
        .map(|v| v.increment)
        .max()
        .unwrap_or(0)
        .max(min_gap);

    let mut caps = Vec::new();
    let mut increment = proposed;
    let mut zeroed_by: Option<Outcome> = None;
    let mut cap = |increment: &mut u32, limit: u32, cap: Cap, outcome: Outcome| {
        if *increment > limit {
            *increment = limit;
            caps.push(cap);
            if limit == 0 && zeroed_by.is_none() {
                zeroed_by = Some(outcome);
            }
        }
    };

    let blocked = if view.paused {
        Some(Outcome::Paused)
    } else if view.conflict {
        Some(Outcome::Conflict)
    } else if view.breaker_open {
        Some(Outcome::Breaker)
    } else if view.running.is_none() {
        Some(Outcome::DataError)
    } else if view.busy {
        Some(Outcome::Hold)
    } else {
        None
    };

    if blocked.is_none() && increment > 0 {
        let headroom = policy.max_task_nodes.saturating_sub(effective);
        cap(
            &mut increment,
            headroom,
            Cap::MaxTaskNodes {
                max: policy.max_task_nodes,
            },
            Outcome::Capped,
        );
        if let Some(step) = policy.max_step {
            cap(
                &mut increment,
                step,
                Cap::MaxStep { max: step },
                Outcome::Capped,
            );
        }
        for (limit, window, label) in [
            (
                policy.max_nodes_per_hour,
                chrono::Duration::hours(1),
                "hour",
            ),
            (policy.max_nodes_per_day, chrono::Duration::days(1), "day"),
        ] {
            if let Some(limit) = limit {
                let used = ordered_since(view.orders, now - window);
                let remaining = limit.saturating_sub(used);
                cap(
                    &mut increment,
                    remaining,
                    Cap::Budget {
                        window: label,
                        limit,
                        remaining,
                    },
                    Outcome::Budget,
                );
            }
        }
        let in_cooldown = view.cooldown_until.is_some_and(|t| now < t);
        let in_backoff = view.backoff_until.is_some_and(|t| now < t);
        if in_backoff {
            cap(
                &mut increment,
                0,
                Cap::SoldOutBackoff {
                    until: view.backoff_until.unwrap_or(now),
                },
                Outcome::Cooldown,
            );
        } else if in_cooldown {
            cap(
                &mut increment,
                floor_gap,
                Cap::Cooldown {
                    until: view.cooldown_until.unwrap_or(now),
                    floor_gap,
                },
                Outcome::Cooldown,
            );
        }
    }

    let any_issue = votes.iter().any(|v| v.issue.is_some());
    // Scale-in: this evaluation's proposal (recorded for the window), then
    // what the window, the guards and the floors allow.
    let wants_add = proposed > 0 || votes.iter().any(|v| v.muted) || floor_gap > 0;
    let proposal = if !scale_in.enabled || view.running.is_none() || wants_add || any_issue {
        0
    } else {
        // The smallest removal among the rules that propose one; a capacity
        // rule bounds it even when it proposes none.
        removals
            .iter()
            .filter(|(r, binding)| *r > 0 || *binding)
            .map(|(r, _)| *r)
            .min()
            .unwrap_or(0)
    };
    let removal = if !scale_in.enabled {
        Removal::Off
    } else if blocked.is_some() {
        Removal::Blocked
    } else if wants_add {
        Removal::ScaleOutWins
    } else if any_issue {
        Removal::MissingData
    } else if proposal == 0 {
        Removal::NotProposed
    } else if view.builtin_unknown {
        Removal::BuiltinUnknown
    } else if view.operation_open || view.in_flight > 0 || view.leaving > 0 {
        Removal::OperationOpen
    } else if let Some(until) = view.cooldown_until.filter(|t| now < *t) {
        Removal::Cooldown { until }
    } else if let Some(until) = view.scale_in_cooldown_until.filter(|t| now < *t) {
        Removal::ScaleInCooldown { until }
    } else {
        let mut history = view.removal_history.to_vec();
        history.push(Proposal {
            at: now,
            nodes: proposal,
            effective,
        });
        match scale_in::stabilize(&history, now, scale_in.stabilization, max_gap) {
            scale_in::Stabilized::Observing { since } => Removal::Observing { since },
            scale_in::Stabilized::Remove(0) => Removal::Stabilizing,
            scale_in::Stabilized::Remove(stabilized) => {
                let floor = policy.min_task_nodes.max(schedule_floor);
                let removable = effective.saturating_sub(floor);
                let nodes = stabilized.min(removable).min(scale_in.max_step);
                if nodes == 0 {
                    Removal::AtFloor { floor }
                } else {
                    Removal::Remove {
                        stabilized,
                        nodes,
                        floor,
                        max_step: scale_in.max_step,
                    }
                }
            }
        }
    };
    let outcome = match blocked {
        Some(o) => {
            increment = 0;
            o
        }
        None if increment > 0 && view.dry_run => Outcome::DryRun,
        None if increment > 0 => Outcome::ScaleOut,
        None if removal.nodes() > 0 && view.dry_run => Outcome::DryRun,
        None if removal.nodes() > 0 => Outcome::ScaleIn,
        None if proposed > 0 => zeroed_by.unwrap_or(Outcome::Capped),
        None if any_issue => Outcome::DataError,
        None => Outcome::Hold,
    };
    // A standby works out what the leader would decide, and only reports it.
    let outcome = if view.standby {
        Outcome::Standby
    } else {
        outcome
    };
    for v in &mut votes {
        v.outcome = if matches!(
            outcome,
            Outcome::Paused | Outcome::Breaker | Outcome::Conflict | Outcome::Standby
        ) || view.busy
        {
            outcome
        } else if v.issue.is_some() && v.increment == 0 {
            Outcome::DataError
        } else if v.muted {
            Outcome::Cooldown
        } else if v.increment > 0 || (v.removal > 0 && removal.nodes() > 0) {
            outcome
        } else {
            Outcome::Hold
        };
    }
    Decision {
        busy: view.busy && blocked == Some(Outcome::Hold),
        at: now,
        running: view.running,
        in_flight: view.in_flight,
        effective,
        min_gap,
        votes,
        proposed,
        caps,
        increment,
        chunks: chunks(increment),
        outcome,
        proposal,
        removal,
    }
}

#[cfg(test)]
mod tests;
