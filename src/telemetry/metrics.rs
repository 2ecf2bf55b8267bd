//! The exported metrics: every family of the binding contract, written in
//! the Prometheus text format 0.0.4 (which `promtool check metrics`
//! validates). The process-wide families are typed fields registered once in
//! a private [`prometheus::Registry`]; the per-cluster and per-rule ones are
//! one compact record per cluster (`series`), written as text directly and
//! merged with the registry's families in name order.
//!
//! Label values come only from fixed sets ([`Outcome`](crate::policy::Outcome),
//! [`DataIssue`], [`ErrorClass`], [`Action`], the budget windows) and from the cluster ids and
//! rule names of the configuration; never from free text such as API error
//! codes or messages.
//!
//! Every labelled series exists before its first event:
//! - the `action` families are created at zero in [`Metrics::new`], for every
//!   [`Action`] (and every `result`);
//! - the `cluster` and `cluster`×`rule` families are created at zero by
//!   [`Metrics::register_clusters`], times every value of their fixed label set;
//! - a cluster or rule first seen by a recording helper gets its whole set of
//!   series at zero at that moment, so no family ever shows a partial set.
//!
//! A family with no label set at all (the per-rule families when no cluster has
//! a rule) is not printed, as the `prometheus` crate prunes its empty families.
//!
//! Choices where the contract leaves room:
//! - `budget_remaining_nodes` is `+Inf` for a window without a budget: "no
//!   limit" stays true under `min()` and never fires a `< N` alert, where `-1`
//!   or `max_task_nodes` would mislead. It is 0 until the first
//!   [`Metrics::set_cluster_state`].
//! - `cooldown_until_timestamp_seconds` is 0 when no cooldown was ever set, so
//!   `time() < cooldown_until` reads false.
//! - `config_last_reload_timestamp_seconds` moves only on a successful load, as
//!   Prometheus' own `..._last_reload_success_timestamp_seconds` does; a failed
//!   reload shows as `config_reload_success 0`.
//! - `rule_value` keeps the last usable value when a reading is missing; the
//!   miss itself is counted by `metric_query_errors_total`.
//! - The capacity families (`rule_desired_task_nodes`,
//!   `rule_demand_growth_per_second`, `rule_headroom`, `rule_capacity`) exist
//!   only for capacity rules, from their first evaluation: a zero desired
//!   count or capacity before it would draw a false line on a dashboard.
//!   Together with `rule_value` (the demand) they draw demand, demand plus
//!   headroom, and the capacity the cluster gives, in the query's unit.

mod series;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::policy::{DataIssue, Decision, VoteReason};
use crate::tencent::{Action, ApiObserver, ErrorClass};
use series::{
    ClusterRecord, ClusterSeries, Counter as SeriesCounter, Gauge as SeriesGauge, RuleGauge,
};

/// The prefix of every metric name.
pub(crate) const PREFIX: &str = "emr_autoscaler_";

/// The `result` label of a successful API attempt.
pub const RESULT_OK: &str = "ok";

/// The values of the `window` label of `budget_remaining_nodes`.
pub(crate) const BUDGET_WINDOWS: [&str; 2] = ["hour", "day"];

/// Upper bounds of `api_request_duration_seconds`, from 10 ms to 30 s.
pub(crate) const API_DURATION_BUCKETS: [f64; 11] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Upper bounds of `rate_limiter_wait_seconds`, from 1 ms to 60 s.
pub(crate) const LIMITER_WAIT_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The labels of one configured cluster: its id and its rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClusterLabels<'a> {
    /// The cluster id (the `cluster` label).
    pub id: &'a str,
    /// The names of its rules (the `rule` label), in any order.
    pub rules: &'a [&'a str],
}

/// The per-cluster gauges that describe its guard rails at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClusterSnapshot {
    /// An operator paused the cluster.
    pub paused: bool,
    /// The flow breaker is open.
    pub breaker_open: bool,
    /// End of the cluster cooldown; `None` exports 0.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// Nodes left in the rolling-hour budget; `None` (no budget) exports `+Inf`.
    pub budget_hour: Option<u32>,
    /// Nodes left in the rolling-day budget; `None` (no budget) exports `+Inf`.
    pub budget_day: Option<u32>,
    /// When this evaluation happened.
    pub last_evaluation: DateTime<Utc>,
    /// The cluster's `max_task_nodes`.
    pub max_task_nodes: u32,
}

/// Every exported metric, with its own registry.
///
/// Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    /// Every per-cluster and per-rule family, one record per cluster.
    clusters: ClusterSeries,
    api_requests: IntCounterVec,
    api_duration: HistogramVec,
    limiter_wait: Histogram,
    build_info: IntGaugeVec,
    reload_success: IntGauge,
    last_reload: Gauge,
    notify_errors: IntCounterVec,
    offering_unavailable: IntGaugeVec,
    /// `offering_task_nodes{cluster, offering}`.
    offering_nodes: IntGaugeVec,
    /// `nodes_lost_total{cluster, offering}`.
    nodes_lost: IntCounterVec,
    /// `nodes_requested_total{cluster, offering}`: kept in the registry
    /// (not the compact records), as its offerings vary per cluster.
    nodes_requested: IntCounterVec,
    /// The `[ha]` families, registered only when `[ha]` is configured.
    ha: std::sync::OnceLock<HaMetrics>,
}

/// The leadership families (only with `[ha]`).
#[derive(Debug, Clone)]
pub(crate) struct HaMetrics {
    leader: IntGauge,
    leader_changes: prometheus::IntCounter,
    lease_errors: prometheus::IntCounter,
    config_differs: IntGauge,
}

impl HaMetrics {
    /// `emr_autoscaler_leader`: 1 while this daemon leads.
    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// `emr_autoscaler_leader_changes_total`: this daemon became or stopped
    /// being the leader.
    pub(crate) fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    /// `emr_autoscaler_ha_lease_errors_total`: a grant, renewal or campaign
    /// failed.
    pub(crate) fn lease_error(&self) {
        self.lease_errors.inc();
    }

    /// `emr_autoscaler_ha_config_differs`: 1 while this daemon's config
    /// digest differs from the leader's.
    pub(crate) fn set_config_differs(&self, differs: bool) {
        self.config_differs.set(i64::from(differs));
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("clusters", &self.clusters.names())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates a collector, registers it and hands it back.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    made: prometheus::Result<C>,
) -> prometheus::Result<C> {
    let c = made?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("{PREFIX}{name}"), help)
}

/// The series of `vec` for `labels`, or `None` when the label count is wrong
/// (never, with the fixed label lists of this module).
/// Drops every series of `vec` whose label values (in the vector's label
/// order) `keep` refuses.
fn prune<T: MetricVecBuilder>(vec: &MetricVec<T>, keep: impl Fn(&[String]) -> bool) {
    use prometheus::core::Collector as _;
    let mut gone: Vec<Vec<String>> = Vec::new();
    for family in vec.collect() {
        for m in family.get_metric() {
            let values: Vec<String> = m
                .get_label()
                .iter()
                .map(|l| l.value().to_string())
                .collect();
            if !keep(&values) {
                gone.push(values);
            }
        }
    }
    for values in gone {
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let _ = vec.remove_label_values(&refs);
    }
}

fn series<T: MetricVecBuilder>(vec: &MetricVec<T>, labels: &[&str]) -> Option<T::M> {
    vec.get_metric_with_label_values(labels).ok()
}

/// Seconds since the Unix epoch, with sub-second precision.
fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// Rust prints infinities as `inf`; the text format's canonical spelling is
/// `+Inf` / `-Inf`. A sample line ends with its value (no timestamps are
/// written), and label values are quoted, so only the value can match.
fn canonical_infinities(text: String) -> String {
    if !text.contains(" inf\n") && !text.contains(" -inf\n") {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else if let Some(head) = line.strip_suffix(" -inf") {
            out.push_str(head);
            out.push_str(" -Inf");
        } else if let Some(head) = line.strip_suffix(" inf") {
            out.push_str(head);
            out.push_str(" +Inf");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

impl Metrics {
    /// Registers every family, sets `build_info` to 1 and
    /// `config_reload_success` to 1, and creates the `action` series at zero.
    pub fn new() -> Self {
        // The names, help texts, label names and buckets below are constants,
        // so building them cannot fail; the unit tests prove it.
        Self::try_new().expect("metric definitions are valid constants")
    }

    /// As [`Metrics::new`], returning the registry's error instead of panicking.
    pub(crate) fn try_new() -> prometheus::Result<Self> {
        let r = Registry::new();
        let m = Metrics {
            api_requests: register(
                &r,
                IntCounterVec::new(
                    opts(
                        "api_requests_total",
                        "EMR API attempts, by action and result (ok or the error class).",
                    ),
                    &["action", "result"],
                ),
            )?,
            api_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        format!("{PREFIX}api_request_duration_seconds"),
                        "Duration of one EMR API attempt, from sending to the parsed answer.",
                    )
                    .buckets(API_DURATION_BUCKETS.to_vec()),
                    &["action"],
                ),
            )?,
            limiter_wait: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        format!("{PREFIX}rate_limiter_wait_seconds"),
                        "Time an EMR API call waited in its action's rate-limiter queue.",
                    )
                    .buckets(LIMITER_WAIT_BUCKETS.to_vec()),
                ),
            )?,
            build_info: register(
                &r,
                IntGaugeVec::new(
                    opts(
                        "build_info",
                        "Always 1; the version label names the running build.",
                    ),
                    &["version"],
                ),
            )?,
            reload_success: register(
                &r,
                IntGauge::with_opts(opts(
                    "config_reload_success",
                    "1 when the last configuration load succeeded, 0 when it failed and the old one stayed.",
                )),
            )?,
            last_reload: register(
                &r,
                Gauge::with_opts(opts(
                    "config_last_reload_timestamp_seconds",
                    "Unix time of the last successful configuration load.",
                )),
            )?,
            notify_errors: register(
                &r,
                IntCounterVec::new(
                    opts(
                        "notify_errors_total",
                        "History events a webhook did not take: refused, unreachable after its retries, or dropped from a full queue.",
                    ),
                    &["webhook"],
                ),
            )?,
            nodes_lost: register(
                &r,
                IntCounterVec::new(
                    opts(
                        "nodes_lost_total",
                        "Task nodes that disappeared without a removal of ours (spot reclaimed, or removed elsewhere), by the offering they came from.",
                    ),
                    &["cluster", "offering"],
                ),
            )?,
            nodes_requested: register(
                &r,
                IntCounterVec::new(
                    opts(
                        "nodes_requested_total",
                        "Task nodes requested (ScaleOutInstance, or ScaleOutCluster through an offering; \"default\" without offerings).",
                    ),
                    &["cluster", "offering"],
                ),
            )?,
            offering_nodes: register(
                &r,
                IntGaugeVec::new(
                    opts(
                        "offering_task_nodes",
                        "Task nodes this daemon ordered through an offering and still running, by the books it keeps.",
                    ),
                    &["cluster", "offering"],
                ),
            )?,
            offering_unavailable: register(
                &r,
                IntGaugeVec::new(
                    opts(
                        "offering_unavailable",
                        "1 while an offering is skipped after refusing an order outright (sold out, spec or zone refused), until sold_out_backoff has passed.",
                    ),
                    &["cluster", "offering"],
                ),
            )?,
            registry: r,
            clusters: ClusterSeries::default(),
            ha: std::sync::OnceLock::new(),
        };
        if let Some(g) = series(&m.build_info, &[env!("CARGO_PKG_VERSION")]) {
            g.set(1);
        }
        m.reload_success.set(1);
        for action in Action::ALL {
            let name = action.name();
            let _ = series(&m.api_requests, &[name, RESULT_OK]);
            for class in ErrorClass::ALL {
                let _ = series(&m.api_requests, &[name, class.metric_label()]);
            }
            let _ = series(&m.api_duration, &[name]);
        }
        Ok(m)
    }

    /// Creates `emr_autoscaler_notify_errors_total` at zero for each of
    /// these webhooks, and drops the series of webhooks no longer configured.
    pub(crate) fn register_webhooks<'a>(&self, names: impl IntoIterator<Item = &'a str> + Clone) {
        let wanted: Vec<&str> = names.clone().into_iter().collect();
        prune(&self.notify_errors, |labels| {
            wanted.contains(&labels[0].as_str())
        });
        for name in names {
            let _ = series(&self.notify_errors, &[name]);
        }
    }

    /// Sets `offering_unavailable` and `offering_task_nodes` for each
    /// offering of `cluster` (name, skipped now, booked nodes) and drops the
    /// series of offerings it no longer has.
    pub(crate) fn set_offerings(&self, cluster: &str, offerings: &[(&str, bool, u32)]) {
        for vec in [&self.offering_unavailable, &self.offering_nodes] {
            prune(vec, |labels| {
                labels[0] != cluster || offerings.iter().any(|(o, _, _)| *o == labels[1])
            });
        }
        for (offering, unavailable, nodes) in offerings {
            if let Some(g) = series(&self.offering_unavailable, &[cluster, offering]) {
                g.set(i64::from(*unavailable));
            }
            if let Some(g) = series(&self.offering_nodes, &[cluster, offering]) {
                g.set(i64::from(*nodes));
            }
        }
    }

    /// A webhook did not take an event.
    pub(crate) fn notify_error(&self, webhook: &str) {
        if let Some(c) = series(&self.notify_errors, &[webhook]) {
            c.inc();
        }
    }

    /// Registers the `[ha]` families (once; later calls return the same).
    /// Without `[ha]` they are never registered, so they are absent.
    pub(crate) fn enable_ha(&self) -> prometheus::Result<&HaMetrics> {
        if let Some(h) = self.ha.get() {
            return Ok(h);
        }
        let r = &self.registry;
        let made = HaMetrics {
            leader: register(
                r,
                IntGauge::with_opts(opts(
                    "leader",
                    "1 while this daemon holds the etcd leader lease and acts; 0 while it stands by.",
                )),
            )?,
            leader_changes: register(
                r,
                prometheus::IntCounter::with_opts(opts(
                    "leader_changes_total",
                    "Times this daemon became the leader or stopped being it.",
                )),
            )?,
            lease_errors: register(
                r,
                prometheus::IntCounter::with_opts(opts(
                    "ha_lease_errors_total",
                    "Failed etcd lease grants, renewals and leader campaigns.",
                )),
            )?,
            config_differs: register(
                r,
                IntGauge::with_opts(opts(
                    "ha_config_differs",
                    "1 while this daemon's config digest differs from the leader's.",
                )),
            )?,
        };
        Ok(self.ha.get_or_init(|| made))
    }

    /// The `[ha]` families, when enabled.
    pub(crate) fn ha(&self) -> Option<&HaMetrics> {
        self.ha.get()
    }

    /// Everything, in the Prometheus text format 0.0.4: the registry's
    /// families and the per-cluster ones, in name order.
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        // The registry's families (the process-wide ones: a few kilobytes),
        // each as its own text.
        let encoder = TextEncoder::new();
        let mut process = Vec::new();
        for family in self.registry.gather() {
            let mut one = String::new();
            encoder.encode_utf8(std::slice::from_ref(&family), &mut one)?;
            process.push((family.name().to_owned(), canonical_infinities(one)));
        }
        let size = process.iter().map(|(_, one)| one.len()).sum::<usize>();
        let mut process = process.into_iter().peekable();
        let clusters = self.clusters.lock();
        let mut text = String::with_capacity(size + series::size_hint(&clusters));
        series::write(&clusters, &mut text, |name, text| {
            while let Some((_, one)) = process.next_if(|(n, _)| n.as_str() < name) {
                text.push_str(&one);
            }
        });
        drop(clusters);
        for (_, one) in process {
            text.push_str(&one);
        }
        Ok(text)
    }

    /// Sets the configured clusters and their rules, `(id, rule names)`, and
    /// creates every series of theirs at zero.
    ///
    /// The list is the complete configuration: the series of clusters and
    /// rules no longer in it are removed. Idempotent; values of series that
    /// stay are kept, so call it again after every successful reload.
    pub fn register_clusters(&self, clusters: &[(String, Vec<String>)]) {
        let rules: Vec<Vec<&str>> = clusters
            .iter()
            .map(|(_, rules)| rules.iter().map(String::as_str).collect())
            .collect();
        let labels: Vec<ClusterLabels<'_>> = clusters
            .iter()
            .zip(&rules)
            .map(|((id, _), rules)| ClusterLabels { id, rules })
            .collect();
        self.register(&labels);
    }

    /// As [`Metrics::register_clusters`], from borrowed labels.
    pub(crate) fn register(&self, clusters: &[ClusterLabels<'_>]) {
        let wanted: BTreeMap<&str, BTreeSet<&str>> = clusters
            .iter()
            .map(|c| (c.id, c.rules.iter().copied().collect()))
            .collect();
        let mut records = self.clusters.lock();
        records.retain(|id, _| wanted.contains_key(id.as_str()));
        for (&id, rules) in &wanted {
            if !records.contains_key(id) {
                records.insert(id.to_owned(), ClusterRecord::default());
            }
            let record = records.get_mut(id).expect("inserted above");
            record.retain_rules(|name| rules.contains(name));
            for rule in rules {
                record.rule(rule);
            }
            let _ = series(
                &self.nodes_requested,
                &[id, crate::history::DEFAULT_OFFERING],
            );
            let _ = series(&self.nodes_lost, &[id, crate::history::DEFAULT_OFFERING]);
        }
        drop(records);
        self.prune_requested(|c| wanted.contains_key(c));
    }

    /// Removes every series of one cluster. A later recording for it creates
    /// them again, so call this once the cluster's evaluation has stopped.
    pub(crate) fn forget_cluster(&self, id: &str) {
        self.clusters.lock().remove(id);
        self.prune_requested(|c| c != id);
        prune(&self.offering_unavailable, |labels| labels[0] != id);
        prune(&self.offering_nodes, |labels| labels[0] != id);
    }

    /// Records one decision: per vote, `decisions_total{outcome}` +1,
    /// `rule_value` (when the vote had a value) and `rule_proposed_task_nodes`
    /// (effective plus the vote's increment); per cluster, the desired,
    /// current (when known) and in-flight task nodes.
    ///
    /// Missing data is not counted here; see [`Metrics::record_query_error`].
    pub fn record_decision(&self, cluster: &str, decision: &Decision) {
        self.clusters.with(cluster, |c| {
            for vote in &decision.votes {
                let rule = c.rule(&vote.rule);
                rule.decided(vote.outcome);
                if let Some(value) = vote.value {
                    rule.set(RuleGauge::Value, value);
                }
                rule.set(
                    RuleGauge::Proposed,
                    f64::from(decision.effective.saturating_add(vote.increment)),
                );
                if let VoteReason::Capacity {
                    sizing,
                    desired,
                    has,
                } = vote.reason
                {
                    rule.capacity = Some([
                        f64::from(desired),
                        sizing.growth,
                        sizing.margin(),
                        sizing.reserved + f64::from(has) * sizing.per_node,
                    ]);
                }
            }
            c.set(SeriesGauge::Desired, f64::from(decision.desired()));
            if let Some(running) = decision.running {
                c.set(SeriesGauge::Current, f64::from(running));
            }
            c.set(SeriesGauge::InFlight, f64::from(decision.in_flight));
        });
    }

    /// Counts a rule query that gave no usable value.
    pub fn record_query_error(&self, cluster: &str, rule: &str, issue: DataIssue) {
        self.clusters.with(cluster, |c| c.rule(rule).missed(issue));
    }

    /// Sets the cluster's pause, breaker, cooldown, budget and last-evaluation gauges.
    pub fn set_cluster_state(&self, cluster: &str, state: &ClusterSnapshot) {
        self.clusters.with(cluster, |c| {
            c.set(SeriesGauge::Paused, f64::from(u8::from(state.paused)));
            c.set(SeriesGauge::MaxTaskNodes, f64::from(state.max_task_nodes));
            c.set(
                SeriesGauge::BreakerOpen,
                f64::from(u8::from(state.breaker_open)),
            );
            c.set(
                SeriesGauge::CooldownUntil,
                state.cooldown_until.map_or(0.0, unix_seconds),
            );
            c.budget = [state.budget_hour, state.budget_day]
                .map(|left| left.map_or(f64::INFINITY, f64::from));
            c.set(
                SeriesGauge::LastEvaluation,
                unix_seconds(state.last_evaluation),
            );
        });
    }

    /// Counts task nodes requested (one chunk or a whole order) through
    /// `offering` (`"default"`: ScaleOutInstance with the cluster's spec).
    pub fn nodes_requested(&self, cluster: &str, offering: &str, n: u32) {
        if let Some(c) = series(&self.nodes_requested, &[cluster, offering]) {
            c.inc_by(u64::from(n));
        }
    }

    /// Counts task nodes of `offering` that disappeared without a removal of ours.
    pub(crate) fn nodes_lost(&self, cluster: &str, offering: &str, n: u32) {
        if let Some(c) = series(&self.nodes_lost, &[cluster, offering]) {
            c.inc_by(u64::from(n));
        }
    }

    /// Drops the per-offering counters of clusters `keep` refuses.
    fn prune_requested(&self, keep: impl Fn(&str) -> bool) {
        prune(&self.nodes_requested, |labels| keep(&labels[0]));
        prune(&self.nodes_lost, |labels| keep(&labels[0]));
    }

    /// Counts task nodes given back (a TerminateClusterNodes that started
    /// a graceful removal).
    pub(crate) fn nodes_removed(&self, cluster: &str, n: u32) {
        self.count(SeriesCounter::NodesRemoved, cluster, u64::from(n));
    }

    /// Counts a flow that failed or outlived its limit.
    pub fn flow_failed(&self, cluster: &str) {
        self.count(SeriesCounter::FlowsFailed, cluster, 1);
    }

    /// Counts a sold-out answer (class `sold_out`) for the cluster.
    pub fn sold_out(&self, cluster: &str) {
        self.count(SeriesCounter::SoldOut, cluster, 1);
    }

    /// Counts an old unacknowledged order reconciled with doubt.
    pub fn reconcile_doubt(&self, cluster: &str) {
        self.count(SeriesCounter::ReconcileDoubts, cluster, 1);
    }

    /// Records a configuration load: `config_reload_success` becomes 1 or 0,
    /// and on success `config_last_reload_timestamp_seconds` becomes `at`.
    pub fn config_reloaded(&self, ok: bool, at: DateTime<Utc>) {
        self.reload_success.set(i64::from(ok));
        if ok {
            self.last_reload.set(unix_seconds(at));
        }
    }

    fn count(&self, counter: SeriesCounter, cluster: &str, n: u64) {
        self.clusters.with(cluster, |c| c.add(counter, n));
    }
}

impl ApiObserver for Metrics {
    fn attempt_finished(&self, action: Action, result: &'static str, elapsed: Duration) {
        let name = action.name();
        if let Some(c) = series(&self.api_requests, &[name, result]) {
            c.inc();
        }
        if let Some(h) = series(&self.api_duration, &[name]) {
            h.observe(elapsed.as_secs_f64());
        }
    }

    fn limiter_waited(&self, _action: Action, waited: Duration) {
        self.limiter_wait.observe(waited.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::{
        Amount, Bound, ClusterPolicy, ClusterView, OnMissing, Outcome, Reading, Rule, RuleKind,
        Sample, Sustain, TargetForm, Unit, decide,
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn two_clusters() -> Vec<(String, Vec<String>)> {
        vec![
            ("emr-a".into(), vec!["pending".into(), "util".into()]),
            ("emr-b".into(), vec!["pending".into(), "office".into()]),
        ]
    }

    fn registered() -> Metrics {
        let m = Metrics::new();
        m.register_clusters(&two_clusters());
        m
    }

    /// The value of the series written exactly as `key` (name and labels).
    fn value(text: &str, key: &str) -> Option<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.rsplit_once(' ').filter(|(k, _)| *k == key))
            .map(|(_, v)| v.to_owned())
    }

    fn has(text: &str, key: &str, want: &str) {
        assert_eq!(
            value(text, key).as_deref(),
            Some(want),
            "{key} should be {want} in:\n{text}"
        );
    }

    fn families(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, t)| (n.to_owned(), t.to_owned()))
            .collect()
    }

    fn rule(name: &str, kind: RuleKind) -> Rule {
        Rule {
            name: Arc::from(name),
            query: Some(format!("q_{name}")),
            kind,
            cooldown: None,
            on_missing: OnMissing::Hold,
            unit: Unit::Plain,
            replay_signal: None,
            max_value: crate::policy::DEFAULT_MAX_VALUE,
        }
    }

    fn policy() -> ClusterPolicy {
        ClusterPolicy {
            min_task_nodes: 0,
            max_task_nodes: 40,
            cooldown: Duration::from_secs(300),
            max_step: None,
            max_nodes_per_hour: None,
            max_nodes_per_day: None,
            rules: vec![
                rule(
                    "pending",
                    RuleKind::Threshold {
                        bound: Bound::Above(100.0),
                        sustain: Sustain::Evaluations(1),
                        step: Amount::Add(2),
                    },
                ),
                rule(
                    "util",
                    RuleKind::Target {
                        form: TargetForm::Ratio {
                            target: 0.8,
                            tolerance: 0.1,
                        },
                        bootstrap: 1,
                    },
                ),
            ],
            scale_in: Default::default(),
        }
    }

    /// Running 10, one in flight; `pending` and `util` read as given.
    fn decision(pending: Reading, util: Reading) -> Decision {
        let now = t(0);
        let view = ClusterView {
            running: Some(10),
            in_flight: 1,
            settling: 0,
            ..ClusterView::default()
        };
        let p = [Sample {
            at: now,
            value: pending,
        }];
        let u = [Sample {
            at: now,
            value: util,
        }];
        decide(&policy(), &view, &[&p, &u], now, Duration::from_secs(30))
    }

    const CONTRACT: [(&str, &str); 25] = [
        ("decisions_total", "counter"),
        ("rule_value", "gauge"),
        ("rule_proposed_task_nodes", "gauge"),
        ("desired_task_nodes", "gauge"),
        ("current_task_nodes", "gauge"),
        ("inflight_task_nodes", "gauge"),
        ("nodes_requested_total", "counter"),
        ("nodes_lost_total", "counter"),
        ("nodes_removed_total", "counter"),
        ("api_requests_total", "counter"),
        ("api_request_duration_seconds", "histogram"),
        ("rate_limiter_wait_seconds", "histogram"),
        ("metric_query_errors_total", "counter"),
        ("last_evaluation_timestamp_seconds", "gauge"),
        ("paused", "gauge"),
        ("build_info", "gauge"),
        ("flows_failed_total", "counter"),
        ("breaker_open", "gauge"),
        ("cooldown_until_timestamp_seconds", "gauge"),
        ("budget_remaining_nodes", "gauge"),
        ("config_reload_success", "gauge"),
        ("config_last_reload_timestamp_seconds", "gauge"),
        ("sold_out_total", "counter"),
        ("state_reconcile_doubts_total", "counter"),
        ("max_task_nodes", "gauge"),
    ];

    #[test]
    fn every_contract_family_is_exported_with_its_type() {
        let text = registered().encode().unwrap();
        let got = families(&text);
        let want: Vec<(String, String)> = CONTRACT
            .iter()
            .map(|(n, t)| (format!("{PREFIX}{n}"), (*t).to_owned()))
            .collect();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        let mut want_sorted = want;
        want_sorted.sort();
        assert_eq!(got_sorted, want_sorted);
    }

    #[test]
    fn every_family_has_help_and_follows_naming() {
        let text = registered().encode().unwrap();
        for (name, kind) in families(&text) {
            let help = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
                .unwrap_or_default();
            assert!(help.len() > 10, "{name} has no meaningful HELP: {help:?}");
            assert!(name.starts_with(PREFIX), "{name}");
            assert_eq!(
                kind == "counter",
                name.ends_with("_total"),
                "{name} is a {kind}: only counters end in _total"
            );
            if kind == "histogram" {
                assert!(name.ends_with("_seconds"), "{name}");
            }
        }
    }

    #[test]
    fn register_creates_every_series_at_zero() {
        let text = registered().encode().unwrap();
        let version = env!("CARGO_PKG_VERSION");
        has(
            &text,
            &format!("{PREFIX}build_info{{version=\"{version}\"}}"),
            "1",
        );
        has(&text, &format!("{PREFIX}config_reload_success"), "1");
        has(
            &text,
            &format!("{PREFIX}rate_limiter_wait_seconds_count"),
            "0",
        );
        has(
            &text,
            &format!("{PREFIX}rate_limiter_wait_seconds_bucket{{le=\"60\"}}"),
            "0",
        );
        for (cluster, rules) in two_clusters() {
            for rule in &rules {
                for outcome in Outcome::ALL {
                    let o = outcome.metric_label();
                    has(
                        &text,
                        &format!(
                            "{PREFIX}decisions_total{{cluster=\"{cluster}\",outcome=\"{o}\",rule=\"{rule}\"}}"
                        ),
                        "0",
                    );
                }
                for issue in DataIssue::ALL {
                    let k = issue.metric_label();
                    has(
                        &text,
                        &format!(
                            "{PREFIX}metric_query_errors_total{{cluster=\"{cluster}\",kind=\"{k}\",rule=\"{rule}\"}}"
                        ),
                        "0",
                    );
                }
                for family in ["rule_value", "rule_proposed_task_nodes"] {
                    has(
                        &text,
                        &format!("{PREFIX}{family}{{cluster=\"{cluster}\",rule=\"{rule}\"}}"),
                        "0",
                    );
                }
            }
            for window in BUDGET_WINDOWS {
                has(
                    &text,
                    &format!(
                        "{PREFIX}budget_remaining_nodes{{cluster=\"{cluster}\",window=\"{window}\"}}"
                    ),
                    "0",
                );
            }
            for family in [
                "desired_task_nodes",
                "current_task_nodes",
                "inflight_task_nodes",
                "nodes_removed_total",
                "last_evaluation_timestamp_seconds",
                "paused",
                "breaker_open",
                "flows_failed_total",
                "cooldown_until_timestamp_seconds",
                "sold_out_total",
                "state_reconcile_doubts_total",
            ] {
                has(
                    &text,
                    &format!("{PREFIX}{family}{{cluster=\"{cluster}\"}}"),
                    "0",
                );
            }
            has(
                &text,
                &format!(
                    "{PREFIX}nodes_requested_total{{cluster=\"{cluster}\",offering=\"default\"}}"
                ),
                "0",
            );
        }
        for action in Action::ALL {
            let a = action.name();
            let results =
                std::iter::once(RESULT_OK).chain(ErrorClass::ALL.map(|c| c.metric_label()));
            for r in results {
                has(
                    &text,
                    &format!("{PREFIX}api_requests_total{{action=\"{a}\",result=\"{r}\"}}"),
                    "0",
                );
            }
            has(
                &text,
                &format!("{PREFIX}api_request_duration_seconds_count{{action=\"{a}\"}}"),
                "0",
            );
        }
        let decisions = text
            .lines()
            .filter(|l| l.starts_with(&format!("{PREFIX}decisions_total{{")))
            .count();
        assert_eq!(decisions, 2 * 2 * Outcome::ALL.len());
    }

    #[test]
    fn api_series_exist_before_any_cluster() {
        let text = Metrics::new().encode().unwrap();
        let requests = text
            .lines()
            .filter(|l| l.starts_with(&format!("{PREFIX}api_requests_total{{")))
            .count();
        assert_eq!(requests, Action::ALL.len() * (1 + ErrorClass::ALL.len()));
        assert!(!text.contains("cluster=\""), "{text}");
    }

    #[test]
    fn a_cluster_without_rules_gets_its_cluster_series() {
        let m = Metrics::new();
        m.register(&[ClusterLabels {
            id: "emr-bare",
            rules: &[],
        }]);
        let text = m.encode().unwrap();
        has(
            &text,
            &format!("{PREFIX}desired_task_nodes{{cluster=\"emr-bare\"}}"),
            "0",
        );
        has(
            &text,
            &format!("{PREFIX}budget_remaining_nodes{{cluster=\"emr-bare\",window=\"day\"}}"),
            "0",
        );
        assert!(!text.contains("rule=\""), "{text}");
    }

    #[test]
    fn recording_a_decision_moves_the_right_series() {
        let m = registered();
        let d = decision(Reading::Value(150.0), Reading::Value(0.5));
        assert_eq!(d.outcome, Outcome::ScaleOut);
        assert_eq!((d.effective, d.increment, d.desired()), (11, 2, 13));
        m.record_decision("emr-a", &d);
        let text = m.encode().unwrap();
        let key = |family: &str, labels: &str| format!("{PREFIX}{family}{{{labels}}}");
        has(
            &text,
            &key(
                "decisions_total",
                "cluster=\"emr-a\",outcome=\"scale_out\",rule=\"pending\"",
            ),
            "1",
        );
        has(
            &text,
            &key(
                "decisions_total",
                "cluster=\"emr-a\",outcome=\"hold\",rule=\"util\"",
            ),
            "1",
        );
        has(
            &text,
            &key(
                "decisions_total",
                "cluster=\"emr-a\",outcome=\"hold\",rule=\"pending\"",
            ),
            "0",
        );
        has(
            &text,
            &key(
                "decisions_total",
                "cluster=\"emr-b\",outcome=\"scale_out\",rule=\"pending\"",
            ),
            "0",
        );
        has(
            &text,
            &key("rule_value", "cluster=\"emr-a\",rule=\"pending\""),
            "150",
        );
        has(
            &text,
            &key("rule_value", "cluster=\"emr-a\",rule=\"util\""),
            "0.5",
        );
        has(
            &text,
            &key(
                "rule_proposed_task_nodes",
                "cluster=\"emr-a\",rule=\"pending\"",
            ),
            "13",
        );
        has(
            &text,
            &key(
                "rule_proposed_task_nodes",
                "cluster=\"emr-a\",rule=\"util\"",
            ),
            "11",
        );
        has(&text, &key("desired_task_nodes", "cluster=\"emr-a\""), "13");
        has(&text, &key("current_task_nodes", "cluster=\"emr-a\""), "10");
        has(&text, &key("inflight_task_nodes", "cluster=\"emr-a\""), "1");
        has(&text, &key("desired_task_nodes", "cluster=\"emr-b\""), "0");

        // Missing data: the vote is data_error and the last value stays.
        let d = decision(Reading::Value(150.0), Reading::Missing(DataIssue::Empty));
        m.record_decision("emr-a", &d);
        m.record_query_error("emr-a", "util", DataIssue::Empty);
        let text = m.encode().unwrap();
        has(
            &text,
            &key(
                "decisions_total",
                "cluster=\"emr-a\",outcome=\"data_error\",rule=\"util\"",
            ),
            "1",
        );
        has(
            &text,
            &key(
                "decisions_total",
                "cluster=\"emr-a\",outcome=\"scale_out\",rule=\"pending\"",
            ),
            "2",
        );
        has(
            &text,
            &key("rule_value", "cluster=\"emr-a\",rule=\"util\""),
            "0.5",
        );
        has(
            &text,
            &key(
                "metric_query_errors_total",
                "cluster=\"emr-a\",kind=\"empty\",rule=\"util\"",
            ),
            "1",
        );
    }

    #[test]
    fn a_rule_first_seen_when_recording_gets_every_outcome() {
        let m = Metrics::new();
        m.record_query_error("emr-new", "fresh", DataIssue::Stale);
        let text = m.encode().unwrap();
        for outcome in Outcome::ALL {
            let o = outcome.metric_label();
            has(
                &text,
                &format!(
                    "{PREFIX}decisions_total{{cluster=\"emr-new\",outcome=\"{o}\",rule=\"fresh\"}}"
                ),
                "0",
            );
        }
        has(
            &text,
            &format!("{PREFIX}paused{{cluster=\"emr-new\"}}"),
            "0",
        );
        has(
            &text,
            &format!(
                "{PREFIX}metric_query_errors_total{{cluster=\"emr-new\",kind=\"stale\",rule=\"fresh\"}}"
            ),
            "1",
        );
    }

    #[test]
    fn cluster_state_counters_and_reload() {
        let m = registered();
        m.set_cluster_state(
            "emr-a",
            &ClusterSnapshot {
                paused: true,
                breaker_open: false,
                cooldown_until: Some(t(300)),
                budget_hour: Some(7),
                budget_day: None,
                last_evaluation: DateTime::from_timestamp(1_800_000_000, 250_000_000).unwrap(),
                max_task_nodes: 10,
            },
        );
        m.nodes_requested("emr-a", "default", 20);
        m.nodes_requested("emr-a", "default", 5);
        m.flow_failed("emr-a");
        m.sold_out("emr-b");
        m.reconcile_doubt("emr-b");
        m.config_reloaded(false, t(60));
        let text = m.encode().unwrap();
        let a = |family: &str| format!("{PREFIX}{family}{{cluster=\"emr-a\"}}");
        let b = |family: &str| format!("{PREFIX}{family}{{cluster=\"emr-b\"}}");
        has(&text, &a("paused"), "1");
        has(&text, &a("breaker_open"), "0");
        has(&text, &a("cooldown_until_timestamp_seconds"), "1800000300");
        has(
            &text,
            &a("last_evaluation_timestamp_seconds"),
            "1800000000.25",
        );
        has(
            &text,
            &format!("{PREFIX}budget_remaining_nodes{{cluster=\"emr-a\",window=\"hour\"}}"),
            "7",
        );
        has(
            &text,
            &format!("{PREFIX}budget_remaining_nodes{{cluster=\"emr-a\",window=\"day\"}}"),
            "+Inf",
        );
        has(
            &text,
            &format!("{PREFIX}nodes_requested_total{{cluster=\"emr-a\",offering=\"default\"}}"),
            "25",
        );
        has(&text, &a("flows_failed_total"), "1");
        has(&text, &a("sold_out_total"), "0");
        has(&text, &b("sold_out_total"), "1");
        has(&text, &b("state_reconcile_doubts_total"), "1");
        has(&text, &format!("{PREFIX}config_reload_success"), "0");
        has(
            &text,
            &format!("{PREFIX}config_last_reload_timestamp_seconds"),
            "0",
        );
        m.config_reloaded(true, t(120));
        let text = m.encode().unwrap();
        has(&text, &format!("{PREFIX}config_reload_success"), "1");
        has(
            &text,
            &format!("{PREFIX}config_last_reload_timestamp_seconds"),
            "1800000120",
        );
        // No cooldown exports 0.
        m.set_cluster_state(
            "emr-a",
            &ClusterSnapshot {
                paused: false,
                breaker_open: true,
                cooldown_until: None,
                budget_hour: None,
                budget_day: Some(0),
                last_evaluation: t(0),
                max_task_nodes: 10,
            },
        );
        let text = m.encode().unwrap();
        has(&text, &a("cooldown_until_timestamp_seconds"), "0");
        has(&text, &a("breaker_open"), "1");
        has(
            &text,
            &format!("{PREFIX}budget_remaining_nodes{{cluster=\"emr-a\",window=\"hour\"}}"),
            "+Inf",
        );
    }

    #[test]
    fn api_observer_counts_attempts_and_waits() {
        let m = Metrics::new();
        let obs: &dyn ApiObserver = &m;
        obs.attempt_finished(
            Action::ScaleOutInstance,
            RESULT_OK,
            Duration::from_millis(40),
        );
        obs.attempt_finished(
            Action::ScaleOutInstance,
            ErrorClass::Throttled.metric_label(),
            Duration::from_millis(200),
        );
        obs.limiter_waited(Action::DescribeInstances, Duration::from_millis(52));
        let text = m.encode().unwrap();
        let s = |labels: &str| format!("{PREFIX}api_requests_total{{{labels}}}");
        has(&text, &s("action=\"ScaleOutInstance\",result=\"ok\""), "1");
        has(
            &text,
            &s("action=\"ScaleOutInstance\",result=\"throttled\""),
            "1",
        );
        has(&text, &s("action=\"DescribeInstances\",result=\"ok\""), "0");
        let h = |suffix: &str, labels: &str| {
            format!("{PREFIX}api_request_duration_seconds{suffix}{{{labels}}}")
        };
        has(&text, &h("_count", "action=\"ScaleOutInstance\""), "2");
        has(
            &text,
            &h("_bucket", "action=\"ScaleOutInstance\",le=\"0.05\""),
            "1",
        );
        has(
            &text,
            &h("_bucket", "action=\"ScaleOutInstance\",le=\"0.25\""),
            "2",
        );
        has(
            &text,
            &h("_bucket", "action=\"ScaleOutInstance\",le=\"+Inf\""),
            "2",
        );
        has(
            &text,
            &format!("{PREFIX}rate_limiter_wait_seconds_count"),
            "1",
        );
        has(
            &text,
            &format!("{PREFIX}rate_limiter_wait_seconds_bucket{{le=\"0.05\"}}"),
            "0",
        );
        has(
            &text,
            &format!("{PREFIX}rate_limiter_wait_seconds_bucket{{le=\"0.1\"}}"),
            "1",
        );
    }

    #[test]
    fn forget_cluster_removes_only_its_series() {
        let m = registered();
        m.nodes_requested("emr-a", "default", 3);
        m.record_query_error("emr-b", "late-rule", DataIssue::Error);
        m.forget_cluster("emr-b");
        let text = m.encode().unwrap();
        assert!(!text.contains("emr-b"), "{text}");
        has(
            &text,
            &format!("{PREFIX}nodes_requested_total{{cluster=\"emr-a\",offering=\"default\"}}"),
            "3",
        );
        // Forgetting twice, or an unknown cluster, is harmless.
        m.forget_cluster("emr-b");
        m.forget_cluster("never-seen");
        assert_eq!(m.encode().unwrap(), text);
    }

    #[test]
    fn registering_again_keeps_values_adds_and_removes() {
        let m = registered();
        m.nodes_requested("emr-a", "default", 4);
        m.register_clusters(&two_clusters());
        let once = m.encode().unwrap();
        has(
            &once,
            &format!("{PREFIX}nodes_requested_total{{cluster=\"emr-a\",offering=\"default\"}}"),
            "4",
        );
        m.register_clusters(&two_clusters());
        assert_eq!(m.encode().unwrap(), once);

        // After a reload: emr-b is gone, emr-a lost `util` and gained `demand`,
        // emr-c is new.
        m.register_clusters(&[
            ("emr-a".into(), vec!["pending".into(), "demand".into()]),
            ("emr-c".into(), vec![]),
        ]);
        let text = m.encode().unwrap();
        assert!(!text.contains("emr-b"), "{text}");
        assert!(!text.contains("rule=\"util\""), "{text}");
        has(
            &text,
            &format!("{PREFIX}nodes_requested_total{{cluster=\"emr-a\",offering=\"default\"}}"),
            "4",
        );
        has(
            &text,
            &format!(
                "{PREFIX}decisions_total{{cluster=\"emr-a\",outcome=\"budget\",rule=\"demand\"}}"
            ),
            "0",
        );
        has(&text, &format!("{PREFIX}paused{{cluster=\"emr-c\"}}"), "0");
        assert!(format!("{m:?}").contains("emr-c"));
    }

    /// A sample line's name, and its label names and (unescaped) values in
    /// the order written.
    fn sample(line: &str) -> (&str, Vec<(String, String)>) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let (name, mut rest) = line.split_at(end);
        let mut labels = Vec::new();
        while let Some(r) = rest.strip_prefix(['{', ',']) {
            let (label, r) = r.split_once("=\"").unwrap();
            let mut value = String::new();
            let mut chars = r.char_indices();
            let close = loop {
                match chars.next().unwrap() {
                    (_, '\\') => match chars.next().unwrap().1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (i, '"') => break i,
                    (_, c) => value.push(c),
                }
            };
            labels.push((label.to_owned(), value));
            rest = &r[close + 1..];
        }
        (name, labels)
    }

    #[test]
    fn families_and_series_are_written_in_the_registrys_order() {
        let m = Metrics::new();
        m.register_clusters(&[
            ("emr-b".into(), vec!["zeta".into(), "alpha".into()]),
            ("emr-a".into(), vec!["util".into()]),
            ("emr-a\"\\\n".into(), vec![]),
        ]);
        m.record_decision(
            "emr-b",
            &decision(Reading::Value(150.0), Reading::Value(0.5)),
        );
        m.set_cluster_state(
            "emr-a",
            &ClusterSnapshot {
                paused: false,
                breaker_open: false,
                cooldown_until: None,
                budget_hour: Some(3),
                budget_day: None,
                last_evaluation: t(0),
                max_task_nodes: 10,
            },
        );
        let text = m.encode().unwrap();
        let kinds = families(&text);
        let mut names: Vec<&str> = kinds.iter().map(|(n, _)| n.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), kinds.len(), "a family written twice");
        assert!(names.is_sorted(), "families out of name order: {names:?}");
        let mut last: Option<(&str, Vec<String>)> = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, labels) = sample(line);
            let label_names: Vec<&str> = labels.iter().map(|(l, _)| l.as_str()).collect();
            assert!(label_names.is_sorted(), "labels out of order: {line}");
            let values: Vec<String> = labels.into_iter().map(|(_, v)| v).collect();
            if kinds
                .iter()
                .any(|(n, k)| k == "histogram" && name.starts_with(n.as_str()))
            {
                continue;
            }
            if let Some((prev, prev_values)) = &last
                && *prev == name
            {
                assert!(*prev_values < values, "series out of order at {line}");
            }
            last = Some((name, values));
        }
        has(
            &text,
            &format!("{PREFIX}paused{{cluster=\"emr-a\\\"\\\\\\n\"}}"),
            "0",
        );
        has(
            &text,
            &format!("{PREFIX}budget_remaining_nodes{{cluster=\"emr-a\",window=\"day\"}}"),
            "+Inf",
        );
    }

    #[test]
    fn infinities_are_written_canonically() {
        let text = "# HELP x a \" inf\nx{a=\" inf\"} inf\ny -inf\nz 1\n".to_owned();
        assert_eq!(
            canonical_infinities(text),
            "# HELP x a \" inf\nx{a=\" inf\"} +Inf\ny -Inf\nz 1\n"
        );
        assert_eq!(canonical_infinities("z 1\n".into()), "z 1\n");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.nodes_requested("odd\"id\\x", "default", 1);
        let text = m.encode().unwrap();
        has(
            &text,
            &format!(
                "{PREFIX}nodes_requested_total{{cluster=\"odd\\\"id\\\\x\",offering=\"default\"}}"
            ),
            "1",
        );
    }
}
