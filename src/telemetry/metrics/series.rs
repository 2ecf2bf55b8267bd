//! The per-cluster and per-rule series of the exported metrics, kept as one
//! compact record per cluster and written out in the text format directly.
//!
//! The `prometheus` crate's labelled vectors keep, for every series, its own
//! copy of the family's name, help text and label names and of its label
//! values: about 500 bytes a series, and since every series exists at zero,
//! about 17 KB for a cluster with one rule before its first event. Gathering
//! them built one protobuf-shaped object per series for every scrape
//! (17,000 with 500 clusters), several megabytes that the allocator kept
//! afterwards. A record here holds one number per series, names and help
//! texts exist once, and a scrape allocates only its text.
//!
//! A record holds every series of its cluster and of each of its rules, so a
//! family never shows a partial set. The capacity gauges of a rule are the
//! one exception the contract makes: they exist from the rule's first
//! capacity evaluation.
//!
//! The text is what the `prometheus` crate's encoder writes for the same
//! series: families in name order (merged with the registry's by
//! [`super::Metrics::encode`]), series in the order of their label values,
//! label pairs in name order, label values escaped, values as Rust prints an
//! `f64` with infinities spelled `+Inf` / `-Inf`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};

use super::{BUDGET_WINDOWS, PREFIX};
use crate::policy::{DataIssue, Outcome};

/// A gauge of one cluster (label `cluster`), indexing [`ClusterRecord::gauges`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Gauge {
    Desired,
    MaxTaskNodes,
    Current,
    InFlight,
    Paused,
    BreakerOpen,
    LastEvaluation,
    CooldownUntil,
}

/// Name and help of each [`Gauge`], in its order.
const GAUGES: [(&str, &str); 8] = [
    (
        "desired_task_nodes",
        "Task nodes the cluster is heading for after the last decision.",
    ),
    (
        "max_task_nodes",
        "The cluster's max_task_nodes: running plus in flight never passes it.",
    ),
    (
        "current_task_nodes",
        "Running task nodes at the last successful capacity read.",
    ),
    (
        "inflight_task_nodes",
        "Task nodes this daemon ordered whose flow is not done yet.",
    ),
    (
        "paused",
        "1 when an operator paused the cluster's scaling, else 0.",
    ),
    (
        "breaker_open",
        "1 when a flow outlived its limit and ordering stopped until resumed, else 0.",
    ),
    (
        "last_evaluation_timestamp_seconds",
        "Unix time of the cluster's last completed evaluation.",
    ),
    (
        "cooldown_until_timestamp_seconds",
        "Unix time the cluster cooldown ends; 0 when none was set.",
    ),
];

/// A counter of one cluster (label `cluster`), indexing [`ClusterRecord::counters`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Counter {
    NodesRemoved,
    FlowsFailed,
    SoldOut,
    ReconcileDoubts,
}

/// Name and help of each [`Counter`], in its order.
const COUNTERS: [(&str, &str); 4] = [
    (
        "nodes_removed_total",
        "Task nodes named in TerminateClusterNodes requests that started a graceful removal.",
    ),
    (
        "flows_failed_total",
        "Scale-out flows that ended in failure or outlived their limit.",
    ),
    (
        "sold_out_total",
        "ScaleOutInstance answers saying the instance type is sold out or insufficient.",
    ),
    (
        "state_reconcile_doubts_total",
        "Old unacknowledged orders reconciled at start-up whose outcome stayed in doubt.",
    ),
];

/// `budget_remaining_nodes`, labels `cluster` and `window`.
const BUDGET: (&str, &str) = (
    "budget_remaining_nodes",
    "Task nodes left in the rolling budget window; +Inf when the window has no budget.",
);

/// `decisions_total`, labels `cluster`, `outcome` and `rule`.
const DECISIONS: (&str, &str) = (
    "decisions_total",
    "Rule votes evaluated, by the outcome the rule's vote got.",
);

/// `metric_query_errors_total`, labels `cluster`, `kind` and `rule`.
const QUERY_ERRORS: (&str, &str) = (
    "metric_query_errors_total",
    "Rule queries that gave no usable value, by kind of problem.",
);

/// A gauge every rule has (labels `cluster` and `rule`), indexing
/// [`RuleRecord::gauges`].
#[derive(Debug, Clone, Copy)]
pub(super) enum RuleGauge {
    Value,
    Proposed,
}

/// Name and help of each [`RuleGauge`], in its order.
const RULE_GAUGES: [(&str, &str); 2] = [
    (
        "rule_value",
        "Last usable value a rule's query returned, in the query's unit.",
    ),
    (
        "rule_proposed_task_nodes",
        "Task nodes a rule proposed at the last evaluation: effective capacity plus its vote.",
    ),
];

/// Name and help of each capacity gauge (labels `cluster` and `rule`), in
/// the order of [`RuleRecord::capacity`]: desired nodes, growth, headroom,
/// capacity.
const CAPACITY_GAUGES: [(&str, &str); 4] = [
    (
        "rule_desired_task_nodes",
        "Task nodes a capacity rule wants at the last evaluation, within the cluster's bounds.",
    ),
    (
        "rule_demand_growth_per_second",
        "A capacity rule's demand growth over its trend window, per second, in the query's unit (0 when falling).",
    ),
    (
        "rule_headroom",
        "What a capacity rule keeps above demand: its headroom or the projected growth, the larger, in the query's unit.",
    ),
    (
        "rule_capacity",
        "What the cluster gives by a capacity rule's reckoning: reserved plus running and in-flight task nodes times per_node, in the query's unit.",
    ),
];

/// Every series of one cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct ClusterRecord {
    /// By [`Gauge`].
    pub gauges: [f64; GAUGES.len()],
    /// By [`Counter`].
    pub counters: [u64; COUNTERS.len()],
    /// `budget_remaining_nodes`, by [`BUDGET_WINDOWS`].
    pub budget: [f64; BUDGET_WINDOWS.len()],
    /// The cluster's rules, sorted by name (a cluster has a few).
    pub rules: Vec<(String, RuleRecord)>,
}

impl ClusterRecord {
    /// The rule's series, created at zero when the rule is new.
    pub(crate) fn rule(&mut self, name: &str) -> &mut RuleRecord {
        let at = match self.rules.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(at) => at,
            Err(at) => {
                self.rules
                    .insert(at, (name.to_owned(), RuleRecord::default()));
                self.rules.shrink_to_fit();
                at
            }
        };
        &mut self.rules[at].1
    }

    /// Keeps only the rules `keep` accepts.
    pub(crate) fn retain_rules(&mut self, keep: impl Fn(&str) -> bool) {
        self.rules.retain(|(name, _)| keep(name));
    }

    /// Sets a gauge.
    pub(crate) fn set(&mut self, gauge: Gauge, value: f64) {
        self.gauges[gauge as usize] = value;
    }

    /// Adds to a counter.
    pub(crate) fn add(&mut self, counter: Counter, n: u64) {
        let c = &mut self.counters[counter as usize];
        *c = c.saturating_add(n);
    }
}

/// Every series of one rule of a cluster.
#[derive(Debug, Clone, Default)]
pub(super) struct RuleRecord {
    /// `decisions_total`, by [`Outcome::ALL`].
    pub decisions: [u64; Outcome::ALL.len()],
    /// `metric_query_errors_total`, by [`DataIssue::ALL`].
    pub query_errors: [u64; DataIssue::ALL.len()],
    /// By [`RuleGauge`].
    pub gauges: [f64; RULE_GAUGES.len()],
    /// A capacity rule's gauges, in [`CAPACITY_GAUGES`] order, from its
    /// first evaluation on.
    pub capacity: Option<[f64; CAPACITY_GAUGES.len()]>,
}

impl RuleRecord {
    /// Counts a vote's outcome.
    pub(crate) fn decided(&mut self, outcome: Outcome) {
        if let Some(i) = Outcome::ALL.iter().position(|o| *o == outcome) {
            self.decisions[i] = self.decisions[i].saturating_add(1);
        }
    }

    /// Counts a query that gave no usable value.
    pub(crate) fn missed(&mut self, issue: DataIssue) {
        if let Some(i) = DataIssue::ALL.iter().position(|k| *k == issue) {
            self.query_errors[i] = self.query_errors[i].saturating_add(1);
        }
    }

    /// Sets a gauge.
    pub(crate) fn set(&mut self, gauge: RuleGauge, value: f64) {
        self.gauges[gauge as usize] = value;
    }
}

/// The clusters' records, by cluster id.
#[derive(Debug, Default)]
pub(super) struct ClusterSeries {
    clusters: Mutex<BTreeMap<String, ClusterRecord>>,
}

impl ClusterSeries {
    /// The records, by cluster id.
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<String, ClusterRecord>> {
        // A record is plain numbers; a panic elsewhere cannot leave one
        // half-written in a way that matters, so a poisoned lock is usable.
        self.clusters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every cluster's rule names, for `Debug`.
    pub(crate) fn names(&self) -> BTreeMap<String, Vec<String>> {
        self.lock()
            .iter()
            .map(|(id, c)| (id.clone(), c.rules.iter().map(|(r, _)| r.clone()).collect()))
            .collect()
    }

    /// Changes the cluster's record, created at zero when the cluster is new.
    pub(crate) fn with<R>(&self, id: &str, f: impl FnOnce(&mut ClusterRecord) -> R) -> R {
        let mut clusters = self.lock();
        if !clusters.contains_key(id) {
            clusters.insert(id.to_owned(), ClusterRecord::default());
        }
        f(clusters.get_mut(id).expect("inserted above"))
    }
}

/// One per-cluster family.
#[derive(Debug, Clone, Copy)]
enum Family {
    Gauge(usize),
    Counter(usize),
    Budget,
    Decisions,
    QueryErrors,
    RuleGauge(usize),
    Capacity(usize),
}

impl Family {
    /// Name (after the prefix), help, and whether it is a counter.
    fn describe(self) -> (&'static str, &'static str, bool) {
        let ((name, help), counter) = match self {
            Family::Gauge(i) => (GAUGES[i], false),
            Family::Counter(i) => (COUNTERS[i], true),
            Family::Budget => (BUDGET, false),
            Family::Decisions => (DECISIONS, true),
            Family::QueryErrors => (QUERY_ERRORS, true),
            Family::RuleGauge(i) => (RULE_GAUGES[i], false),
            Family::Capacity(i) => (CAPACITY_GAUGES[i], false),
        };
        (name, help, counter)
    }
}

/// Every per-cluster family, in name order.
fn families() -> Vec<Family> {
    let mut all: Vec<Family> = (0..GAUGES.len())
        .map(Family::Gauge)
        .chain((0..COUNTERS.len()).map(Family::Counter))
        .chain([Family::Budget, Family::Decisions, Family::QueryErrors])
        .chain((0..RULE_GAUGES.len()).map(Family::RuleGauge))
        .chain((0..CAPACITY_GAUGES.len()).map(Family::Capacity))
        .collect();
    all.sort_by_key(|f| f.describe().0);
    all
}

/// The indices of `labels` in the order of the labels' values: the order
/// the series of a fixed label set are written in.
fn by_label(labels: impl Iterator<Item = &'static str>) -> Vec<(usize, &'static str)> {
    let mut order: Vec<(usize, &'static str)> = labels.enumerate().collect();
    order.sort_by_key(|(_, label)| *label);
    order
}

/// Appends a label value escaped as the text format wants: a backslash, a
/// double quote and a newline become `\\`, `\"` and `\n`.
fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends one sample line: `name{a="x",b="y"} value`, labels given in
/// name order.
fn push_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    let mut separator = '{';
    for (label, v) in labels {
        out.push(separator);
        out.push_str(label);
        out.push_str("=\"");
        push_escaped(out, v);
        out.push('"');
        separator = ',';
    }
    if !labels.is_empty() {
        out.push('}');
    }
    out.push(' ');
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
    out.push('\n');
}

/// Writes the families' text, each handed to `between` first with its full
/// name so that the registry's families can be written in their place.
pub(super) fn write(
    clusters: &BTreeMap<String, ClusterRecord>,
    out: &mut String,
    mut between: impl FnMut(&str, &mut String),
) {
    let outcomes = by_label(Outcome::ALL.iter().map(|o| o.metric_label()));
    let kinds = by_label(DataIssue::ALL.iter().map(|k| k.metric_label()));
    let windows = by_label(BUDGET_WINDOWS.into_iter());
    for family in families() {
        let (short, help, counter) = family.describe();
        let name = format!("{PREFIX}{short}");
        between(&name, out);
        let has_capacity = || {
            clusters
                .values()
                .any(|c| c.rules.iter().any(|(_, r)| r.capacity.is_some()))
        };
        let empty = match family {
            Family::Gauge(_) | Family::Counter(_) | Family::Budget => clusters.is_empty(),
            Family::Decisions | Family::QueryErrors | Family::RuleGauge(_) => {
                clusters.values().all(|c| c.rules.is_empty())
            }
            Family::Capacity(_) => !has_capacity(),
        };
        // A family without series is not written, as the registry prunes
        // its own empty families.
        if empty {
            continue;
        }
        let kind = if counter { "counter" } else { "gauge" };
        // The help texts are constants without a backslash or a newline, so
        // they need no escaping.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (id, c) in clusters {
            let id = id.as_str();
            match family {
                Family::Gauge(i) => push_sample(out, &name, &[("cluster", id)], c.gauges[i]),
                Family::Counter(i) => {
                    push_sample(out, &name, &[("cluster", id)], c.counters[i] as f64);
                }
                Family::Budget => {
                    for &(i, window) in &windows {
                        let labels = [("cluster", id), ("window", window)];
                        push_sample(out, &name, &labels, c.budget[i]);
                    }
                }
                Family::Decisions => {
                    for &(i, outcome) in &outcomes {
                        for (rule, r) in &c.rules {
                            let labels = [("cluster", id), ("outcome", outcome), ("rule", rule)];
                            push_sample(out, &name, &labels, r.decisions[i] as f64);
                        }
                    }
                }
                Family::QueryErrors => {
                    for &(i, kind) in &kinds {
                        for (rule, r) in &c.rules {
                            let labels = [("cluster", id), ("kind", kind), ("rule", rule)];
                            push_sample(out, &name, &labels, r.query_errors[i] as f64);
                        }
                    }
                }
                Family::RuleGauge(i) => {
                    for (rule, r) in &c.rules {
                        let labels = [("cluster", id), ("rule", rule.as_str())];
                        push_sample(out, &name, &labels, r.gauges[i]);
                    }
                }
                Family::Capacity(i) => {
                    for (rule, r) in &c.rules {
                        if let Some(values) = r.capacity {
                            let labels = [("cluster", id), ("rule", rule.as_str())];
                            push_sample(out, &name, &labels, values[i]);
                        }
                    }
                }
            }
        }
    }
}

/// About how many bytes [`write`] writes for these records, so the text
/// is allocated once.
pub(super) fn size_hint(clusters: &BTreeMap<String, ClusterRecord>) -> usize {
    let per_rule = Outcome::ALL.len() + DataIssue::ALL.len() + RULE_GAUGES.len();
    let lines: usize = clusters
        .values()
        .map(|c| GAUGES.len() + COUNTERS.len() + BUDGET_WINDOWS.len() + c.rules.len() * per_rule)
        .sum();
    lines * 100
}
