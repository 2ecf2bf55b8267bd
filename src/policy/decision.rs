//! A decision is plain data that carries its reasons: every rule's vote, every
//! cap applied, the final increment split into chunks, and an outcome from the
//! contract's fixed set. `Display` renders it as one sentence an SRE can check.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{Bound, DataIssue, OnMissing, Removal, Sizing, Sustain, TargetForm, Unit};

/// What happened to a decision; the `outcome` metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Nodes are ordered.
    ScaleOut,
    /// Nothing to do.
    Hold,
    /// Wanted nodes, but the cluster (or the rule) is cooling down.
    Cooldown,
    /// Wanted nodes, but max_task_nodes or max_step left none.
    Capped,
    /// Wanted nodes, but a budget is spent.
    Budget,
    /// An operator paused the cluster.
    Paused,
    /// Would order, but dry-run is on.
    DryRun,
    /// Data or capacity missing; holding.
    DataError,
    /// A flow outlived its limit; ordering stopped until resumed.
    Breaker,
    /// Nodes are given back, gracefully.
    ScaleIn,
    /// Tencent's own auto-scaling is on for this cluster: hold everything.
    Conflict,
    /// With `[ha]`: this daemon stands by; the leader acts.
    Standby,
}

impl Outcome {
    /// Every outcome, in label order.
    pub(crate) const ALL: [Outcome; 12] = [
        Outcome::ScaleOut,
        Outcome::Hold,
        Outcome::Cooldown,
        Outcome::Capped,
        Outcome::Budget,
        Outcome::Paused,
        Outcome::DryRun,
        Outcome::DataError,
        Outcome::Breaker,
        Outcome::ScaleIn,
        Outcome::Conflict,
        Outcome::Standby,
    ];

    /// The `outcome` label value.
    pub(crate) fn metric_label(self) -> &'static str {
        match self {
            Outcome::ScaleOut => "scale_out",
            Outcome::Hold => "hold",
            Outcome::Cooldown => "cooldown",
            Outcome::Capped => "capped",
            Outcome::Budget => "budget",
            Outcome::Paused => "paused",
            Outcome::DryRun => "dry_run",
            Outcome::DataError => "data_error",
            Outcome::Breaker => "breaker",
            Outcome::ScaleIn => "scale_in",
            Outcome::Conflict => "conflict",
            Outcome::Standby => "standby",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric_label())
    }
}

/// Why a rule voted as it did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VoteReason {
    /// A threshold held long enough.
    Breached {
        /// Latest value.
        value: f64,
        /// The bound.
        bound: Bound,
        /// The requirement.
        sustain: Sustain,
        /// How long it has held.
        held: std::time::Duration,
        /// Consecutive breaching samples.
        count: u32,
    },
    /// A threshold is not (yet) breached for long enough.
    NotBreached {
        /// Latest value.
        value: f64,
        /// The bound.
        bound: Bound,
        /// The requirement.
        sustain: Sustain,
        /// How long it has held so far.
        held: std::time::Duration,
        /// Consecutive breaching samples so far.
        count: u32,
    },
    /// A target rule's sizing.
    Target {
        /// Latest value.
        value: f64,
        /// The formula.
        form: TargetForm,
        /// The total it wants.
        desired: u32,
    },
    /// A capacity rule's sizing.
    Capacity {
        /// Demand, growth, horizon and the unbounded count.
        sizing: Sizing,
        /// The count it wants, within `min_task_nodes` and `max_task_nodes`.
        desired: u32,
        /// Running (without nodes leaving) plus in flight.
        has: u32,
    },
    /// A schedule window is open.
    WindowOpen {
        /// When it opened.
        since: DateTime<Utc>,
        /// Its floor.
        floor: u32,
        /// The one-shot add still due in this window.
        add_once: Option<u32>,
    },
    /// No schedule window is open.
    WindowClosed,
    /// No usable data.
    Missing {
        /// What is wrong.
        issue: DataIssue,
        /// What the rule does about it.
        on_missing: OnMissing,
    },
}

/// One rule's vote.
#[derive(Debug, Clone, PartialEq)]
pub struct Vote {
    /// The rule.
    pub rule: Arc<str>,
    /// Its latest value, when usable.
    pub value: Option<f64>,
    /// Its data problem, if any.
    pub issue: Option<DataIssue>,
    /// Nodes it asks for (0 when muted).
    pub increment: u32,
    /// Nodes it would give back (scale-in on only).
    pub removal: u32,
    /// Whether the rule's own cooldown muted a positive vote.
    pub muted: bool,
    /// Why.
    pub reason: VoteReason,
    /// This rule's outcome, for `decisions_total{rule}`.
    pub outcome: Outcome,
}

/// A guard rail that lowered the increment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cap {
    /// Running plus in flight may not pass this.
    MaxTaskNodes {
        /// The ceiling.
        max: u32,
    },
    /// One decision may not add more.
    MaxStep {
        /// The limit.
        max: u32,
    },
    /// A rolling budget.
    Budget {
        /// `hour` or `day`.
        window: &'static str,
        /// The budget.
        limit: u32,
        /// What was left.
        remaining: u32,
    },
    /// The cluster cooldown allows only restoring a floor.
    Cooldown {
        /// Its end.
        until: DateTime<Utc>,
        /// Nodes missing to the floor.
        floor_gap: u32,
    },
    /// A sold-out answer paused ordering for this cluster.
    SoldOutBackoff {
        /// Its end.
        until: DateTime<Utc>,
    },
}

/// The decision for one cluster at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// When.
    pub at: DateTime<Utc>,
    /// Running task nodes, when known.
    pub running: Option<u32>,
    /// Nodes ordered by this daemon, flow not done.
    pub in_flight: u32,
    /// Running plus in flight.
    pub effective: u32,
    /// Nodes missing to `min_task_nodes`.
    pub min_gap: u32,
    /// Every rule's vote, in configuration order.
    pub votes: Vec<Vote>,
    /// The largest vote (or the floor), before caps.
    pub proposed: u32,
    /// Caps applied, in order.
    pub caps: Vec<Cap>,
    /// Nodes to add now.
    pub increment: u32,
    /// The increment in requests of at most 20.
    pub chunks: Vec<u32>,
    /// The outcome.
    pub outcome: Outcome,
    /// Held because the cluster is in a flow this daemon did not start.
    pub busy: bool,
    /// This evaluation's removal proposal, before the stabilization window
    /// (0 when a rule adds, lacks data or none proposes one); the caller
    /// keeps it for the next decisions' window.
    pub proposal: u32,
    /// The scale-in judgement.
    pub removal: Removal,
}

impl Decision {
    /// The total the cluster is heading for.
    pub(crate) fn desired(&self) -> u32 {
        self.effective.saturating_add(self.increment)
    }

    /// Whether nodes should be ordered now (not in dry-run).
    pub(crate) fn orders(&self) -> bool {
        self.outcome == Outcome::ScaleOut && self.increment > 0
    }

    /// How many nodes to give back now (not in dry-run).
    pub(crate) fn removes(&self) -> u32 {
        if self.outcome == Outcome::ScaleIn {
            self.removal.nodes()
        } else {
            0
        }
    }

    /// Rules whose positive vote this decision carries out (for rule cooldowns).
    pub(crate) fn driving_rules(&self) -> impl Iterator<Item = &Vote> {
        self.votes
            .iter()
            .filter(|v| v.increment > 0 && v.outcome == self.outcome)
    }
}

struct Value(f64, Unit);

impl Unit {
    /// `v` as explanations show it: MB as GiB, a ratio as a percentage.
    pub(crate) fn show(self, v: f64) -> String {
        Value(v, self).to_string()
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Unit::Megabytes => write!(f, "{} GiB", trim(self.0 / 1024.0)),
            Unit::Ratio => write!(f, "{}%", trim(self.0 * 100.0)),
            Unit::Plain => f.write_str(&trim(self.0)),
        }
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.1}");
        if s == "0.0" || s == "-0.0" {
            format!("{v:.3}")
        } else {
            s
        }
    }
}

fn dur(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string()
}

fn sustain_text(s: Sustain) -> String {
    match s {
        Sustain::For(d) => format!("for {}", dur(d)),
        Sustain::Evaluations(1) => "for 1 evaluation".to_string(),
        Sustain::Evaluations(n) => format!("for {n} evaluations"),
    }
}

/// A vote rendered with its rule's display unit.
pub(crate) struct VoteText<'a>(pub &'a Vote, pub Unit);

impl fmt::Display for VoteText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        let unit = self.1;
        write!(f, "{} ", v.rule)?;
        match v.reason {
            VoteReason::Breached {
                value,
                bound,
                sustain,
                ..
            } => {
                let (op, b) = match bound {
                    Bound::Above(b) => (">", b),
                    Bound::Below(b) => ("<", b),
                };
                write!(
                    f,
                    "{} {op} {} {}",
                    Value(value, unit),
                    Value(b, unit),
                    sustain_text(sustain)
                )?;
            }
            VoteReason::NotBreached {
                value,
                bound,
                sustain,
                held,
                count,
            } => {
                let (op, nop, b) = match bound {
                    Bound::Above(b) => (">", "<=", b),
                    Bound::Below(b) => ("<", ">=", b),
                };
                if count == 0 {
                    write!(f, "{} {nop} {}", Value(value, unit), Value(b, unit))?;
                } else {
                    let so_far = match sustain {
                        Sustain::For(_) => dur(held),
                        Sustain::Evaluations(_) => format!("{count} evaluations"),
                    };
                    write!(
                        f,
                        "{} {op} {} for {so_far} of {}",
                        Value(value, unit),
                        Value(b, unit),
                        sustain_text(sustain).trim_start_matches("for ")
                    )?;
                }
            }
            VoteReason::Target {
                value,
                form,
                desired,
            } => match form {
                TargetForm::Ratio { target, tolerance } => write!(
                    f,
                    "{} vs target {} (±{}%): wants {desired}",
                    Value(value, unit),
                    Value(target, unit),
                    trim(tolerance * 100.0)
                )?,
                TargetForm::Demand { per_node, factor } => write!(
                    f,
                    "{} / {} per node × {}: wants {desired}",
                    Value(value, unit),
                    Value(per_node, unit),
                    trim(factor)
                )?,
            },
            VoteReason::Capacity {
                sizing,
                desired,
                has,
            } => {
                write!(f, "{}", Value(sizing.demand, unit))?;
                let trend = format!(
                    "trend +{}/min × {} = {}",
                    Value(sizing.growth * 60.0, unit),
                    dur(sizing.horizon),
                    Value(sizing.trend, unit)
                );
                if sizing.growth <= 0.0 {
                    write!(f, " + headroom {}", Value(sizing.headroom, unit))?;
                } else if sizing.headroom >= sizing.trend {
                    write!(f, " + headroom {} ({trend})", Value(sizing.headroom, unit))?;
                } else {
                    write!(
                        f,
                        " + {trend} (above headroom {})",
                        Value(sizing.headroom, unit)
                    )?;
                }
                if sizing.reserved > 0.0 {
                    write!(f, " − {} reserved", Value(sizing.reserved, unit))?;
                }
                write!(
                    f,
                    " at {} per node: wants {desired}, has {has}",
                    Value(sizing.per_node, unit)
                )?;
                if desired != sizing.raw {
                    write!(f, " (bounded from {})", sizing.raw)?;
                }
                if desired > has && v.increment == 0 && !v.muted {
                    f.write_str(" (not due: demand and one flow's look-ahead fit)")?;
                }
            }
            VoteReason::WindowOpen {
                since,
                floor,
                add_once,
            } => {
                write!(
                    f,
                    "window open since {}: floor {floor}",
                    since.format("%Y-%m-%d %H:%M UTC")
                )?;
                if let Some(n) = add_once {
                    write!(f, ", add {n} once")?;
                }
            }
            VoteReason::WindowClosed => f.write_str("window closed")?,
            VoteReason::Missing { issue, on_missing } => {
                let what = match on_missing {
                    OnMissing::Hold => "hold",
                    OnMissing::FailOpen => "fail_open",
                    OnMissing::Floor => "floor",
                };
                write!(f, "no data ({}), {what}", issue.metric_label())?;
            }
        }
        if v.muted {
            f.write_str(" (muted by rule cooldown)")?;
        } else if v.increment > 0 {
            write!(f, ": +{}", v.increment)?;
        } else if v.removal > 0 {
            write!(f, ": -{}", v.removal)?;
        }
        Ok(())
    }
}

impl fmt::Display for Cap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cap::MaxTaskNodes { max } => write!(f, "capped by max_task_nodes {max}"),
            Cap::MaxStep { max } => write!(f, "capped by max_step {max}"),
            Cap::Budget {
                window,
                limit,
                remaining,
            } => {
                write!(
                    f,
                    "capped by max_nodes_per_{window} {limit} ({remaining} left)"
                )
            }
            Cap::Cooldown { until, floor_gap } if *floor_gap > 0 => {
                write!(
                    f,
                    "cooldown until {}: only restoring the floor",
                    until.format("%H:%M:%S UTC")
                )
            }
            Cap::Cooldown { until, .. } => {
                write!(f, "cooldown until {}", until.format("%H:%M:%S UTC"))
            }
            Cap::SoldOutBackoff { until } => {
                write!(f, "sold-out backoff until {}", until.format("%H:%M:%S UTC"))
            }
        }
    }
}

impl Decision {
    /// The decision as one sentence, with each rule's values in its unit
    /// (`units[i]` for vote `i`; missing entries show plain numbers).
    pub(crate) fn explain(&self, units: &[Unit]) -> String {
        use fmt::Write;
        let unit = |i: usize| units.get(i).copied().unwrap_or_default();
        let mut s = String::new();
        match self.outcome {
            Outcome::Paused => s.push_str("paused by operator; "),
            Outcome::Breaker => s.push_str("breaker open (a flow outlived its limit); "),
            Outcome::Conflict => s.push_str("Tencent's own auto-scaling is on for this cluster; "),
            Outcome::DataError if self.running.is_none() => s.push_str("task-node count unknown; "),
            Outcome::Hold if self.busy => s.push_str("cluster busy in another flow; "),
            _ => {}
        }
        let removing = self.increment == 0 && self.votes.iter().any(|v| v.removal > 0);
        let driving: Vec<usize> = (0..self.votes.len())
            .filter(|&i| {
                let v = &self.votes[i];
                v.increment > 0
                    || v.muted
                    || (v.removal > 0 && self.increment == 0)
                    // A capacity rule bounds every removal, also at 0.
                    || (removing && matches!(v.reason, VoteReason::Capacity { .. }))
            })
            .collect();
        let shown: Vec<usize> = if driving.is_empty() {
            (0..self.votes.len()).collect()
        } else {
            driving
        };
        let mut first = true;
        for i in shown {
            if !first {
                s.push_str("; ");
            }
            first = false;
            let _ = write!(s, "{}", VoteText(&self.votes[i], unit(i)));
        }
        if self.min_gap > 0 && self.votes.iter().all(|v| v.increment < self.min_gap) {
            if !first {
                s.push_str("; ");
            }
            first = false;
            let _ = write!(s, "below min_task_nodes: +{}", self.min_gap);
        }
        if first {
            s.push_str("no rules");
        }
        for cap in &self.caps {
            let _ = write!(s, "; {cap}");
        }
        if !self.caps.is_empty()
            || matches!(
                self.outcome,
                Outcome::Paused | Outcome::Breaker | Outcome::Conflict
            )
        {
            let _ = write!(s, " -> +{}", self.increment);
        }
        // The scale-in half, when a rule proposed a removal.
        if self.votes.iter().any(|v| v.removal > 0)
            && !matches!(self.removal, Removal::Off | Removal::Blocked)
        {
            let _ = write!(s, "; {}", self.removal);
            if self.removal.nodes() > 0 {
                s.push_str(" (graceful)");
            }
        }
        match self.outcome {
            Outcome::DryRun => s.push_str(" (dry run: not sent)"),
            Outcome::Standby => s.push_str(" (standby: the leader acts)"),
            Outcome::Hold => s.push_str(" -> hold"),
            Outcome::DataError => s.push_str(" -> hold"),
            _ => {}
        }
        if self.chunks.len() > 1 {
            let _ = write!(s, " in {} requests", self.chunks.len());
        }
        s
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explain(&[]))
    }
}
