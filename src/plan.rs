//! `plan`: evaluates every cluster once against live Prometheus and the EMR
//! read APIs and prints what the daemon would do. Sustain windows are judged
//! from range queries, through the same `policy::decide`. Sends nothing.

use std::io::Write;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::config::Config;
use crate::policy::{
    self, ClusterView, DataIssue, Decision, Reading, RuleKind, Sample, Sustain, Unit,
};
use crate::prom::Prometheus;
use crate::state::State;
use crate::tencent::emr::ClusterInfo;

/// A rule whose data could not be read.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The cluster.
    pub cluster: String,
    /// The rule, or `-` for the EMR API.
    pub rule: String,
    /// Why.
    pub reason: String,
}

/// One cluster's plan.
#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// The cluster.
    pub instance_id: String,
    /// The decision.
    pub decision: Decision,
    /// Rule display units, by rule.
    pub units: Vec<Unit>,
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
            let start = now - chrono::Duration::from_std(w).unwrap_or_default();
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
            Ok(s)
        }
        None => {
            let o = prom.instant(query).await;
            match (o.reading, o.error) {
                (Reading::Missing(DataIssue::Error), Some(e)) => Err(e.to_string()),
                (reading, _) => Ok(vec![Sample {
                    at: now,
                    value: reading,
                }]),
            }
        }
    }
}

/// Evaluates every cluster once. Failures name the rule; the plan still
/// covers every cluster (a failed rule counts as missing data).
pub async fn evaluate(config: &Config) -> Result<(Vec<ClusterPlan>, Vec<Failure>), String> {
    let connections = crate::connect::Connections::new(config, None)?;
    let emr = connections.emr_quiet(config)?;
    let prom = connections.prometheus(config)?;
    let now = crate::clock::wall_now();
    let interval = config.daemon.evaluation_interval;
    let state = match crate::state::read_only(&config.daemon.state_dir) {
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
        let mut c = state
            .cluster(&cluster.instance_id)
            .cloned()
            .unwrap_or_default();
        c.prune_arrivals(
            now,
            chrono::Duration::from_std(cluster.settle(config.daemon.evaluation_interval))
                .unwrap_or_default(),
        );
        let inputs = c.policy_inputs(cluster.rules.iter().map(|r| &*r.name), Some(now));
        let view = ClusterView {
            running: info.and_then(ClusterInfo::task_nodes),
            in_flight: inputs.planned,
            settling: inputs.settling,
            cooldown_until: c.cooldown_until,
            backoff_until: c.sold_out_until,
            paused: c.paused,
            breaker_open: c.breaker_open.is_some(),
            dry_run: false,
            busy: false,
            orders: &inputs.orders,
            rule_last_fired: &inputs.last_fired,
            schedule_done: &inputs.schedule_done,
            ..ClusterView::default()
        };
        let refs: Vec<&[Sample]> = obs.iter().map(Vec::as_slice).collect();
        let decision = policy::decide(
            &cluster.policy(),
            &view,
            &refs,
            now,
            interval * 2 + interval / 2,
        );
        plans.push(ClusterPlan {
            instance_id: cluster.instance_id.clone(),
            units: cluster.rules.iter().map(|r| r.unit).collect(),
            decision,
        });
    }
    Ok((plans, failures))
}

fn opt(v: Option<u32>) -> String {
    v.map_or("?".into(), |n| n.to_string())
}

/// Prints the plan as a table, or JSON.
pub fn print(
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
                    "rules": d.votes.iter().map(|v| json!({
                        "rule": &*v.rule, "value": v.value, "proposal": v.increment,
                        "outcome": v.outcome.metric_label(), "data_issue": v.issue.map(|i| i.metric_label()),
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
                (Some(x), _) => format!("{x:.4}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string(),
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
        writeln!(
            out,
            "  -> {} +{}: {}\n",
            d.outcome.metric_label(),
            d.increment,
            d.explain(&p.units)
        )?;
    }
    for f in failures {
        writeln!(out, "FAILED {} rule {}: {}", f.cluster, f.rule, f.reason)?;
    }
    Ok(())
}
