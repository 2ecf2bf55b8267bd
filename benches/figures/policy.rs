//! Rule evaluations per second: 1,000 clusters × 3 rules (threshold, target,
//! schedule) through `policy::decide`, on one core; and the same with a
//! capacity rule (its default 3-minute trend window, 13 samples) and scale-in
//! added, 4 rules.
//!
//! Run with `cargo bench --bench figures -- policy`; criterion reports the throughput in
//! rule evaluations per second ("elem/s").

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group};
use emr_autoscaler::policy::schedule::parse_cron;
use emr_autoscaler::policy::{
    Amount, Bound, Capacity, ClusterPolicy, ClusterView, Horizon, OnMissing, Proposal, Reading,
    Rule, RuleKind, Sample, ScaleInPolicy, Sustain, TargetForm, Unit, Window, WindowEnd, decide,
};

const CLUSTERS: usize = 1000;
const RULES: usize = 3;

fn rule(name: &str, kind: RuleKind) -> Rule {
    Rule {
        name: Arc::from(name),
        query: None,
        kind,
        cooldown: Some(Duration::from_secs(120)),
        on_missing: OnMissing::Hold,
        unit: Unit::Plain,
        replay_signal: None,
        max_value: emr_autoscaler::policy::DEFAULT_MAX_VALUE,
    }
}

fn policy() -> ClusterPolicy {
    ClusterPolicy {
        min_task_nodes: 2,
        max_task_nodes: 60,
        cooldown: Duration::from_secs(300),
        max_step: Some(30),
        max_nodes_per_hour: Some(40),
        max_nodes_per_day: Some(200),
        rules: vec![
            rule(
                "pending",
                RuleKind::Threshold {
                    bound: Bound::Above(8192.0),
                    sustain: Sustain::For(Duration::from_secs(60)),
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
                    bootstrap: 2,
                },
            ),
            rule(
                "office",
                RuleKind::Schedule {
                    window: Box::new(Window::new(
                        parse_cron("0 0 8 * * Mon-Fri").unwrap(),
                        chrono_tz::Europe::Berlin,
                        WindowEnd::After(Duration::from_secs(10 * 3600)),
                    )),
                    floor_task_nodes: 10,
                    add_once: None,
                },
            ),
        ],
        scale_in: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
        .unwrap()
        .to_utc();
    let policies: Vec<ClusterPolicy> = (0..CLUSTERS).map(|_| policy()).collect();
    let samples: Vec<[Vec<Sample>; 3]> = (0..CLUSTERS)
        .map(|i| {
            let series = |base: f64| -> Vec<Sample> {
                (0..6)
                    .map(|k| Sample {
                        at: now - chrono::Duration::seconds(15 * (5 - k)),
                        value: Reading::Value(base + (i % 7) as f64 * 1000.0 + k as f64),
                    })
                    .collect()
            };
            [
                series(6000.0),
                series(0.5 + (i % 5) as f64 * 0.1),
                Vec::new(),
            ]
        })
        .collect();
    let orders = vec![(now - chrono::Duration::minutes(30), 4)];
    let fired = [None, None, None];
    let done = [None, None, None];
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements((CLUSTERS * RULES) as u64));
    group.bench_function("decide_1000_clusters_x_3_rules", |b| {
        b.iter(|| {
            let mut added = 0u32;
            for (i, p) in policies.iter().enumerate() {
                let view = ClusterView {
                    running: Some(8 + (i % 5) as u32),
                    in_flight: (i % 3) as u32,
                    settling: 0,
                    orders: &orders,
                    rule_last_fired: &fired,
                    schedule_done: &done,
                    ..ClusterView::default()
                };
                let obs: [&[Sample]; 3] = [&samples[i][0], &samples[i][1], &samples[i][2]];
                let d = decide(p, &view, &obs, now, Duration::from_secs(30));
                added += d.increment;
            }
            black_box(added)
        })
    });

    // With a capacity rule and scale-in: 4 rules, a removal history.
    let with_capacity: Vec<ClusterPolicy> = (0..CLUSTERS)
        .map(|_| {
            let mut p = policy();
            p.rules.insert(
                2,
                rule(
                    "capacity",
                    RuleKind::Capacity(Capacity {
                        per_node: 57344.0,
                        reserved: 229_376.0,
                        headroom: 28672.0,
                        trend_window: Duration::from_secs(180),
                        trend_horizon: Horizon::Auto,
                    }),
                ),
            );
            p.scale_in = ScaleInPolicy {
                enabled: true,
                stabilization: Duration::from_secs(300),
                ..ScaleInPolicy::default()
            };
            p
        })
        .collect();
    let demand: Vec<Vec<Sample>> = (0..CLUSTERS)
        .map(|i| {
            (0..13)
                .map(|k| Sample {
                    at: now - chrono::Duration::seconds(15 * (12 - k)),
                    value: Reading::Value(
                        300_000.0 + (i % 11) as f64 * 20_000.0 + k as f64 * 3000.0,
                    ),
                })
                .collect()
        })
        .collect();
    let history: Vec<Proposal> = (0..20)
        .map(|k| Proposal {
            at: now - chrono::Duration::seconds(15 * (20 - k)),
            nodes: 0,
            effective: 10,
        })
        .collect();
    let fired4 = [None, None, None, None];
    let done4 = [None, None, None, None];
    group.throughput(Throughput::Elements((CLUSTERS * (RULES + 1)) as u64));
    group.bench_function("decide_1000_clusters_x_4_rules_with_capacity", |b| {
        b.iter(|| {
            let mut added = 0u32;
            for (i, p) in with_capacity.iter().enumerate() {
                let view = ClusterView {
                    running: Some(8 + (i % 5) as u32),
                    in_flight: 0,
                    orders: &orders,
                    rule_last_fired: &fired4,
                    schedule_done: &done4,
                    removal_history: &history,
                    scale_out: Some(Duration::from_secs(300)),
                    ..ClusterView::default()
                };
                let obs: [&[Sample]; 4] =
                    [&samples[i][0], &samples[i][1], &demand[i], &samples[i][2]];
                let d = decide(p, &view, &obs, now, Duration::from_secs(30));
                added += d.increment + d.removal.nodes();
            }
            black_box(added)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
