//! The replay loop: 30 days at 1-minute steps for 50 clusters × 3 rules
//! (threshold, target, schedule) on synthetic demand, through
//! `backtest::replay` (no HTTP, no files), on one core.
//!
//! Run with `cargo bench --bench figures -- backtest`. Two figures: `summary` records
//! the figures and per-step in-flight counts only; `full_timeline` also
//! keeps every step with its explanation, as the `backtest` command does.
//! The goal is under 2 s per run of all 50 clusters. Measured on the 2-core
//! development machine (under load from other builds): 0.65 s (`summary`)
//! and 0.97 s (`full_timeline`), about 2.2 million cluster-steps a second.
//!
//! Under `cargo test --all-targets` (criterion's test mode, no `--bench`
//! argument) it only smoke-tests the loop on 2 clusters × 2 days, so the
//! unoptimised test build stays quick.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group};
use emr_autoscaler::backtest::{ClusterInput, Detail, Grid, replay};
use emr_autoscaler::policy::schedule::parse_cron;
use emr_autoscaler::policy::{
    Amount, Bound, ClusterPolicy, OnMissing, ReplaySignal, Rule, RuleKind, Sample, Sustain,
    TargetForm, Unit, Window, WindowEnd,
};
use emr_autoscaler::replay::{Model, SyntheticDemand};

/// The measured size: 50 clusters × 30 days.
const FULL: (usize, i64) = (50, 30);
/// The size in criterion's test mode.
const SMOKE: (usize, i64) = (2, 2);

fn rule(name: &str, signal: Option<ReplaySignal>, kind: RuleKind) -> Rule {
    Rule {
        name: Arc::from(name),
        query: signal.map(|_| format!("sum(yarn_{name})")),
        kind,
        cooldown: None,
        on_missing: OnMissing::Hold,
        unit: Unit::Megabytes,
        replay_signal: signal,
        max_value: emr_autoscaler::policy::DEFAULT_MAX_VALUE,
    }
}

fn policy(model: &Model) -> ClusterPolicy {
    ClusterPolicy {
        min_task_nodes: 0,
        max_task_nodes: 60,
        cooldown: Duration::from_secs(300),
        max_step: Some(30),
        max_nodes_per_hour: Some(40),
        max_nodes_per_day: Some(200),
        rules: vec![
            rule(
                "pending",
                Some(ReplaySignal::PendingMb),
                RuleKind::Threshold {
                    bound: Bound::Above(8192.0),
                    sustain: Sustain::For(Duration::from_secs(120)),
                    step: Amount::Add(2),
                },
            ),
            rule(
                "size",
                Some(ReplaySignal::PendingMb),
                RuleKind::Target {
                    form: TargetForm::Demand {
                        per_node: model.node_memory_mb,
                        factor: 1.0,
                    },
                    bootstrap: 1,
                },
            ),
            rule(
                "office",
                None,
                RuleKind::Schedule {
                    window: Box::new(Window::new(
                        parse_cron("0 0 8 * * Mon-Fri").unwrap(),
                        chrono_tz::Asia::Shanghai,
                        WindowEnd::After(Duration::from_secs(10 * 3600)),
                    )),
                    floor_task_nodes: 4,
                    add_once: None,
                },
            ),
        ],
        scale_in: Default::default(),
    }
}

fn bench(c: &mut Criterion) {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (clusters, days) = if measuring { FULL } else { SMOKE };
    let from: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
        .unwrap()
        .to_utc();
    let to = from + chrono::Duration::days(days);
    let grid = Grid::new(from, to, Duration::from_secs(60)).unwrap();
    let model = Model::default();
    let policies: Vec<ClusterPolicy> = (0..clusters).map(|_| policy(&model)).collect();
    let ids: Vec<String> = (0..clusters).map(|i| format!("emr-bench{i:03}")).collect();
    let demand: Vec<Vec<(DateTime<Utc>, f64)>> = (0..clusters)
        .map(|i| {
            let shape = SyntheticDemand::new(i as u64, from, to, 32_768.0, 200_000.0);
            (0..grid.steps)
                .map(|k| {
                    let t = grid.at(k);
                    (t, shape.at(t))
                })
                .collect()
        })
        .collect();
    let history: Vec<Option<Vec<Sample>>> = vec![None, None, None];
    let inputs: Vec<ClusterInput<'_>> = (0..clusters)
        .map(|i| ClusterInput {
            instance_id: &ids[i],
            policy: &policies[i],
            model,
            initial_task_nodes: 0,
            demand: &demand[i],
            history: &history,
            offerings: &[],
            sold_out_backoff: Duration::from_secs(600),
        })
        .collect();
    let run_all = |detail: Detail| {
        let mut added = 0u32;
        for input in &inputs {
            added += replay(input, &grid, detail).summary.nodes_added;
        }
        added
    };
    eprintln!(
        "backtest bench: {clusters} clusters x 3 rules x {} steps; nodes added over {days} days: {}",
        grid.steps,
        run_all(Detail::Summary)
    );
    let mut group = c.benchmark_group("backtest");
    group.throughput(Throughput::Elements((clusters * grid.steps) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("30d_1m_50_clusters_x_3_rules/summary", |b| {
        b.iter(|| black_box(run_all(Detail::Summary)))
    });
    group.bench_function("30d_1m_50_clusters_x_3_rules/full_timeline", |b| {
        b.iter(|| black_box(run_all(Detail::Full)))
    });
    group.finish();
}

criterion_group!(benches, bench);
