//! `plan`: evaluates every cluster once against live Prometheus and the EMR
//! read APIs and prints what the daemon would do. Sustain windows are judged
//! from range queries, through the same `policy::decide`. Sends nothing.
//!
//! For a cluster with scale-in on, it also shows the removal its rules
//! propose now and which nodes it would give back (read from the node list
//! and, when configured, the ResourceManager), with why every other node is
//! not eligible. The daemon removes them only once its stabilization window
//! agrees, which one evaluation cannot judge.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use crate::config::Config;
use crate::connect::ConnectError;
use crate::daemon::choose::ChooseError;
use crate::daemon::status::CapacityStatus;
use crate::policy::{self, DataIssue, Decision, Reading, RuleKind, Sample, Sustain, Unit};
use crate::prom::Prometheus;
use crate::state::{Circumstances, Snapshot, State};
use crate::tencent::emr::ClusterInfo;

/// A rule whose data could not be read.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub cluster: String,
    /// The rule, or `-` for the EMR API.
    pub rule: String,
    /// Why.
    pub reason: String,
}

/// One cluster's plan.
#[derive(Debug, Clone)]
pub(crate) struct ClusterPlan {
    pub instance_id: String,
    pub decision: Decision,
    /// Rule display units, by rule.
    pub units: Vec<Unit>,
    /// With scale-in on and a removal proposed: the nodes that would go.
    pub removal: Option<RemovalPlan>,
    /// With offerings: the ones an order would try, in order, and those
    /// skipped with the time they are unavailable until.
    pub offers: crate::state::Offers,
}

impl ClusterPlan {
    /// Which offering an order would go through, and why earlier ones are
    /// skipped; `None` without offerings.
    fn offering_line(&self) -> Option<String> {
        let o = &self.offers;
        if o.usable.is_empty() && o.skipped.is_empty() {
            return None;
        }
        let skipped: Vec<String> = o
            .skipped
            .iter()
            .map(|(name, until)| {
                format!(
                    "{name} skipped: refused an order (sold out or spec refused), unavailable until {}",
                    until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                )
            })
            .collect();
        let first = match o.usable.split_first() {
            Some((first, [])) => format!("an order would go through {first}"),
            Some((first, rest)) => format!(
                "an order would go through {first} (then {} if it is refused)",
                rest.join(", then ")
            ),
            None => "every offering is unavailable: no order now".into(),
        };
        Some(if skipped.is_empty() {
            first
        } else {
            format!("{first}; {}", skipped.join("; "))
        })
    }
}

/// What a proposed removal would take.
#[derive(Debug, Clone)]
pub(crate) struct RemovalPlan {
    /// Nodes the rules propose to give back now.
    pub proposed: u32,
    /// After the floors and `scale_in.max_step`.
    pub bounded: u32,
    /// The stabilization window the daemon waits for.
    pub stabilization: Duration,
    /// The nodes, in removal order, or why none can be picked.
    pub chosen: Result<Vec<String>, std::sync::Arc<ChooseError>>,
    /// Every other node and why it is not taken.
    pub passed_over: Vec<(String, String)>,
}

/// Range window for a rule: enough samples to judge its sustain condition.
fn window(kind: &RuleKind, interval: Duration) -> Option<Duration> {
    match kind {
        RuleKind::Threshold {
            sustain: Sustain::For(d),
            ..
        } => Some(*d + interval * 2),
        RuleKind::Threshold {
            sustain: Sustain::Evaluations(n),
            ..
        } => Some(interval * (*n + 1)),
        // The samples of the trend window, as the daemon keeps them.
        RuleKind::Capacity(c) if !c.trend_window.is_zero() => Some(c.trend_window + interval * 2),
        _ => None,
    }
}

async fn samples(
    prom: &Prometheus,
    rule: &policy::Rule,
    query: &str,
    now: DateTime<Utc>,
    interval: Duration,
) -> Result<Vec<Sample>, String> {
    match window(&rule.kind, interval) {
        Some(w) => {
            let start = policy::time::before(now, w);
            let mut s = prom
                .range(query, start, now, interval, |_, _| {})
                .await
                .map_err(|e| e.to_string())?;
            if s.is_empty() {
                s.push(Sample {
                    at: now,
                    value: Reading::Missing(DataIssue::Empty),
                });
            }
            for sample in &mut s {
                sample.value = sample.value.bounded(rule.max_value);
            }
            Ok(s)
        }
        None => {
            let o = prom.instant(query).await;
            match (o.reading, o.error) {
                (Reading::Missing(DataIssue::Error), Some(e)) => Err(e.to_string()),
                (reading, _) => Ok(vec![Sample {
                    at: now,
                    value: reading.bounded(rule.max_value),
                }]),
            }
        }
    }
}

/// Evaluates every cluster once, now. Failures name the rule; the plan still
/// covers every cluster (a failed rule counts as missing data).
pub(crate) async fn evaluate(
    config: &Config,
) -> Result<(Vec<ClusterPlan>, Vec<Failure>), ConnectError> {
    evaluate_at(config, crate::clock::wall_now(), None).await
}

/// As [`evaluate`], at `now`, with `fixed` credentials instead of the
/// process's chain (the demo's simulator).
pub(crate) async fn evaluate_at(
    config: &Config,
    now: DateTime<Utc>,
    fixed: Option<crate::tencent::Credentials>,
) -> Result<(Vec<ClusterPlan>, Vec<Failure>), ConnectError> {
    let connections = crate::connect::Connections::new(config, fixed)?;
    let emr = connections.emr_quiet(config)?;
    let prom = connections.prometheus(config)?;
    let interval = config.daemon.evaluation_interval;
    let read = match &config.ha {
        // With [ha] the state is the leader's, in etcd.
        Some(ha) => match crate::etcd::Etcd::new(ha, std::time::Duration::from_secs(3)) {
            Ok(etcd) => crate::state::etcd::EtcdStore::new(
                etcd,
                &ha.prefix,
                std::sync::Arc::new(std::sync::Mutex::new(None)),
            )
            .load()
            .await
            .map(Option::unwrap_or_default),
            Err(e) => Err(crate::state::StateError::Etcd(e.to_string())),
        },
        None => crate::state::read_only(&config.daemon.state_dir),
    };
    let state = match read {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(message = "Cannot read the daemon's state; planning without cooldowns or orders.", error = %e);
            State::default()
        }
    };
    let mut failures = Vec::new();
    let ids: Vec<String> = config
        .clusters
        .iter()
        .map(|c| c.instance_id.clone())
        .collect();
    let infos: Vec<ClusterInfo> = match emr.describe_instances(&ids).await {
        Ok(list) => list,
        Err(e) => {
            failures.push(Failure {
                cluster: "*".into(),
                rule: "-".into(),
                reason: format!("DescribeInstances: {e}"),
            });
            Vec::new()
        }
    };
    let mut plans = Vec::new();
    for cluster in &config.clusters {
        let mut obs: Vec<Vec<Sample>> = Vec::with_capacity(cluster.rules.len());
        for rule in &cluster.rules {
            let s = match &rule.query {
                None => Vec::new(),
                Some(q) => samples(&prom, rule, q, now, interval)
                    .await
                    .unwrap_or_else(|reason| {
                        failures.push(Failure {
                            cluster: cluster.instance_id.clone(),
                            rule: rule.name.to_string(),
                            reason,
                        });
                        vec![Sample {
                            at: now,
                            value: Reading::Missing(DataIssue::Error),
                        }]
                    }),
            };
            obs.push(s);
        }
        let info = infos.iter().find(|i| i.cluster_id == cluster.instance_id);
        // The same projection the daemon decides from: an open removal, a
        // cooldown, a tripped breaker or a flow Tencent runs hold here too.
        let c = state
            .cluster(&cluster.instance_id)
            .cloned()
            .unwrap_or_default();
        let circumstances = Circumstances {
            dry_run: config.daemon.dry_run || cluster.dry_run,
            settle: TimeDelta::from_std(cluster.settle(interval)).unwrap_or_default(),
            scale_in_cooldown: TimeDelta::from_std(cluster.scale_in.cooldown)
                .unwrap_or(TimeDelta::MAX),
            ..Circumstances::default()
        };
        let seen = Snapshot {
            running: info.and_then(ClusterInfo::task_nodes),
            in_flow: info.is_some_and(ClusterInfo::in_flow),
            at: Some(now),
        };
        let projection = c.project(
            cluster.rules.iter().map(|r| &*r.name),
            &seen,
            now,
            circumstances,
        );
        let refs: Vec<&[Sample]> = obs.iter().map(Vec::as_slice).collect();
        let decision = policy::decide(
            &cluster.policy(),
            &projection.view(&[]),
            &refs,
            now,
            policy::max_gap(interval),
        );
        let removal = if cluster.scale_in.enabled && decision.proposal > 0 {
            let spot = crate::daemon::choose::spot_nodes(cluster, &c.node_offerings);
            Some(removal_plan(&emr, &connections, cluster, &decision, &spot).await)
        } else {
            None
        };
        plans.push(ClusterPlan {
            instance_id: cluster.instance_id.clone(),
            units: cluster.rules.iter().map(|r| r.unit).collect(),
            decision,
            removal,
            offers: {
                let mut offers = c.offers(cluster.offerings.iter().map(|o| o.name.as_str()), now);
                offers.usable = crate::daemon::choose::order_offerings(
                    cluster,
                    &c.node_offerings,
                    seen.running.unwrap_or(0),
                    offers.usable,
                );
                offers
            },
        });
    }
    Ok((plans, failures))
}

/// The nodes a removal of the decision's proposal would take, bounded as
/// the daemon bounds it.
async fn removal_plan(
    emr: &crate::tencent::EmrClient,
    connections: &crate::connect::Connections,
    cluster: &crate::config::ClusterConfig,
    decision: &Decision,
    spot: &std::collections::BTreeSet<String>,
) -> RemovalPlan {
    let schedule_floor = decision
        .votes
        .iter()
        .filter_map(|v| match v.reason {
            policy::VoteReason::WindowOpen { floor, .. } => Some(floor),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let floor = cluster.min_task_nodes.max(schedule_floor);
    let bounded = decision
        .proposal
        .min(cluster.scale_in.max_step)
        .min(decision.effective.saturating_sub(floor));
    let mut plan = RemovalPlan {
        proposed: decision.proposal,
        bounded,
        stabilization: cluster.scale_in.stabilization,
        chosen: Ok(Vec::new()),
        passed_over: Vec::new(),
    };
    let selection = match crate::daemon::choose::choose(
        emr,
        &connections.http,
        cluster,
        bounded,
        std::time::Duration::from_secs(10),
        spot,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            plan.chosen = Err(std::sync::Arc::new(e));
            return plan;
        }
    };
    plan.chosen = Ok(selection.ids());
    plan.passed_over = selection
        .passed_over
        .iter()
        .map(|(n, w)| (n.clone(), w.to_string()))
        .collect();
    plan
}

fn removal_json(r: &RemovalPlan) -> serde_json::Value {
    json!({
        "proposed": r.proposed,
        "bounded": r.bounded,
        "stabilization_seconds": r.stabilization.as_secs(),
        "nodes": r.chosen.as_ref().ok(),
        "error": r.chosen.as_ref().err().map(|e| format!("{e} (the daemon removes nothing then)")),
        "not_taken": r.passed_over.iter().map(|(n, w)| json!({"node": n, "why": w})).collect::<Vec<_>>(),
    })
}

/// A capacity rule's sizing in one line: demand, growth, horizon, desired.
fn capacity_line(c: &CapacityStatus, unit: Unit) -> String {
    format!(
        "demand {}, growth {}/min, horizon {}, kept above demand {}, desired {} (has {})",
        unit.show(c.demand),
        unit.show(c.growth_per_minute),
        humantime::format_duration(Duration::from_secs(c.horizon_seconds)),
        unit.show(c.headroom.max(c.trend)),
        c.desired,
        c.has
    )
}

fn opt(v: Option<u32>) -> String {
    v.map_or("?".into(), |n| n.to_string())
}

/// Prints the plan as a table, or JSON.
pub(crate) fn print(
    out: &mut dyn Write,
    plans: &[ClusterPlan],
    failures: &[Failure],
    json_out: bool,
) -> std::io::Result<()> {
    if json_out {
        let v: Vec<serde_json::Value> = plans
            .iter()
            .map(|p| {
                let d = &p.decision;
                json!({
                    "cluster": p.instance_id,
                    "current": d.running,
                    "in_flight": d.in_flight,
                    "desired": d.desired(),
                    "outcome": d.outcome.metric_label(),
                    "increment": d.increment,
                    "chunks": d.chunks,
                    "reason": d.explain(&p.units),
                    "scale_in": p.removal.as_ref().map(removal_json),
                    "offerings": (!p.offers.usable.is_empty() || !p.offers.skipped.is_empty()).then(|| json!({
                        "would_use": p.offers.usable.first(),
                        "then": p.offers.usable.iter().skip(1).collect::<Vec<_>>(),
                        "skipped": p.offers.skipped.iter().map(|(n, until)| json!({
                            "offering": n, "unavailable_until": until,
                            "why": "refused an order outright (sold out, or the spec or zone refused)",
                        })).collect::<Vec<_>>(),
                        "summary": p.offering_line(),
                    })),
                    "rules": d.votes.iter().map(|v| json!({
                        "rule": &*v.rule, "value": v.value, "proposal": v.increment,
                        "outcome": v.outcome.metric_label(), "data_issue": v.issue.map(|i| i.metric_label()),
                        "capacity": CapacityStatus::of(&v.reason),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let f: Vec<serde_json::Value> = failures
            .iter()
            .map(|f| json!({"cluster": f.cluster, "rule": f.rule, "reason": f.reason}))
            .collect();
        serde_json::to_writer_pretty(&mut *out, &json!({"clusters": v, "failures": f}))?;
        return writeln!(out);
    }
    writeln!(
        out,
        "{:<14} {:>7} {:>9}  {:<22} {:>12} {:>8}",
        "CLUSTER", "CURRENT", "IN-FLIGHT", "RULE", "VALUE", "PROPOSAL"
    )?;
    for p in plans {
        let d = &p.decision;
        for (i, v) in d.votes.iter().enumerate() {
            let (cl, cur, inf) = if i == 0 {
                (
                    p.instance_id.as_str(),
                    opt(d.running),
                    d.in_flight.to_string(),
                )
            } else {
                ("", String::new(), String::new())
            };
            let value = match (v.value, v.issue) {
                (Some(x), _) => p.units.get(i).copied().unwrap_or_default().show(x),
                (None, Some(issue)) => issue.metric_label().to_string(),
                (None, None) => "-".into(),
            };
            writeln!(
                out,
                "{cl:<14} {cur:>7} {inf:>9}  {:<22} {value:>12} {:>8}",
                &*v.rule,
                format!("+{}", v.increment)
            )?;
        }
        if d.votes.is_empty() {
            writeln!(
                out,
                "{:<14} {:>7} {:>9}  (no rules)",
                p.instance_id,
                opt(d.running),
                d.in_flight
            )?;
        }
        for (v, unit) in d.votes.iter().zip(&p.units) {
            if let Some(c) = CapacityStatus::of(&v.reason) {
                writeln!(out, "  {}: {}", v.rule, capacity_line(&c, *unit))?;
            }
        }
        writeln!(
            out,
            "  -> {} +{}: {}",
            d.outcome.metric_label(),
            d.increment,
            d.explain(&p.units)
        )?;
        if let Some(line) = p.offering_line() {
            writeln!(out, "  offerings: {line}")?;
        }
        if let Some(r) = &p.removal {
            writeln!(
                out,
                "  scale-in: the rules propose -{}; bounded -{}; removed once {} of evaluations agree",
                r.proposed,
                r.bounded,
                humantime::format_duration(r.stabilization)
            )?;
            match &r.chosen {
                Ok(nodes) if nodes.is_empty() => {
                    writeln!(out, "    would remove: nothing eligible")?
                }
                Ok(nodes) => writeln!(out, "    would remove: {}", nodes.join(", "))?,
                Err(e) => writeln!(
                    out,
                    "    would remove: nothing ({e} (the daemon removes nothing then))"
                )?,
            }
            for (node, why) in &r.passed_over {
                writeln!(out, "    not taken: {node}: {why}")?;
            }
        }
        writeln!(out)?;
    }
    for f in failures {
        writeln!(out, "FAILED {} rule {}: {}", f.cluster, f.rule, f.reason)?;
    }
    Ok(())
}
