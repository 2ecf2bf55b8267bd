//! Decision tables (snapshots of the one-sentence explanations) and property
//! tests of the guard rails.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use expect_test::expect;
use proptest::prelude::*;

use super::*;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

const GAP: Duration = Duration::from_secs(30);

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

fn pending(above_mb: f64, for_s: u64, add: u32) -> Rule {
    Rule {
        unit: Unit::Megabytes,
        ..rule(
            "pending-memory",
            RuleKind::Threshold {
                bound: Bound::Above(above_mb),
                sustain: Sustain::For(Duration::from_secs(for_s)),
                step: Amount::Add(add),
            },
        )
    }
}

fn util(target: f64) -> Rule {
    Rule {
        unit: Unit::Ratio,
        ..rule(
            "util",
            RuleKind::Target {
                form: TargetForm::Ratio {
                    target,
                    tolerance: 0.1,
                },
                bootstrap: 2,
            },
        )
    }
}

fn demand(per_node: f64) -> Rule {
    Rule {
        unit: Unit::Megabytes,
        ..rule(
            "demand",
            RuleKind::Target {
                form: TargetForm::Demand {
                    per_node,
                    factor: 1.0,
                },
                bootstrap: 1,
            },
        )
    }
}

const GIB: f64 = 1024.0;

/// A capacity rule over 56 GiB nodes and 224 GiB of core nodes.
fn capacity(headroom_gib: f64, window_s: u64, horizon: Horizon) -> Rule {
    Rule {
        unit: Unit::Megabytes,
        replay_signal: Some(ReplaySignal::DemandMb),
        ..rule(
            "capacity",
            RuleKind::Capacity(Capacity {
                per_node: 56.0 * GIB,
                reserved: 224.0 * GIB,
                headroom: headroom_gib * GIB,
                trend_window: Duration::from_secs(window_s),
                trend_horizon: horizon,
            }),
        )
    }
}

/// GiB readings every 15 s ending at `now`, rising linearly from `from` to `to`.
fn ramp(now: i64, from: f64, to: f64, count: usize) -> Vec<Sample> {
    let values: Vec<f64> = (0..count)
        .map(|i| (from + (to - from) * i as f64 / (count - 1).max(1) as f64) * GIB)
        .collect();
    every15(now, &values)
}

fn office(floor: u32, add_once: Option<u32>) -> Rule {
    Rule {
        query: None,
        ..rule(
            "office",
            RuleKind::Schedule {
                window: Box::new(Window::new(
                    schedule::parse_cron("0 0 8 * * *").unwrap(),
                    chrono_tz::UTC,
                    WindowEnd::After(Duration::from_secs(3600)),
                )),
                floor_task_nodes: floor,
                add_once,
            },
        )
    }
}

fn policy(rules: Vec<Rule>) -> ClusterPolicy {
    ClusterPolicy {
        min_task_nodes: 0,
        max_task_nodes: 40,
        cooldown: Duration::from_secs(300),
        max_step: None,
        max_nodes_per_hour: None,
        max_nodes_per_day: None,
        rules,
        scale_in: Default::default(),
    }
}

/// An owned view, borrowed into a [`ClusterView`].
#[derive(Debug, Clone, Default)]
struct Fixture {
    running: Option<u32>,
    in_flight: u32,
    cooldown_until: Option<DateTime<Utc>>,
    backoff_until: Option<DateTime<Utc>>,
    paused: bool,
    breaker_open: bool,
    dry_run: bool,
    orders: Vec<(DateTime<Utc>, u32)>,
    last_fired: Vec<Option<DateTime<Utc>>>,
    schedule_done: Vec<Option<DateTime<Utc>>>,
    leaving: u32,
    operation_open: bool,
    scale_in_cooldown_until: Option<DateTime<Utc>>,
    removal_history: Vec<Proposal>,
    conflict: bool,
    builtin_unknown: bool,
    standby: bool,
    scale_out: Option<Duration>,
}

impl Fixture {
    fn running(n: u32) -> Self {
        Self {
            running: Some(n),
            ..Self::default()
        }
    }
    fn view(&self) -> ClusterView<'_> {
        ClusterView {
            running: self.running,
            in_flight: self.in_flight,
            settling: 0,
            cooldown_until: self.cooldown_until,
            backoff_until: self.backoff_until,
            paused: self.paused,
            breaker_open: self.breaker_open,
            dry_run: self.dry_run,
            busy: false,
            orders: &self.orders,
            rule_last_fired: &self.last_fired,
            schedule_done: &self.schedule_done,
            leaving: self.leaving,
            operation_open: self.operation_open,
            scale_in_cooldown_until: self.scale_in_cooldown_until,
            removal_history: &self.removal_history,
            conflict: self.conflict,
            builtin_unknown: self.builtin_unknown,
            standby: self.standby,
            scale_out: self.scale_out,
        }
    }
}

/// Samples every 15 s ending at `now`, oldest first.
fn every15(now: i64, values: &[f64]) -> Vec<Sample> {
    let n = values.len() as i64;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Sample {
            at: t(now - (n - 1 - i as i64) * 15),
            value: Reading::from_f64(*v),
        })
        .collect()
}

fn missing(now: i64, issue: DataIssue) -> Vec<Sample> {
    vec![Sample {
        at: t(now),
        value: Reading::Missing(issue),
    }]
}

fn run(p: &ClusterPolicy, f: &Fixture, obs: &[Vec<Sample>], now: DateTime<Utc>) -> Decision {
    let refs: Vec<&[Sample]> = obs.iter().map(Vec::as_slice).collect();
    decide(p, &f.view(), &refs, now, GAP)
}

fn line(name: &str, p: &ClusterPolicy, d: &Decision) -> String {
    let units: Vec<Unit> = p.rules.iter().map(|r| r.unit).collect();
    format!(
        "{name}: {} +{} {:?} | {}\n",
        d.outcome,
        d.increment,
        d.chunks,
        d.explain(&units)
    )
}

#[test]
fn decision_table() {
    let gib = 1024.0;
    let now = 120;
    let mut out = String::new();
    let mut case =
        |name: &str, p: &ClusterPolicy, f: &Fixture, obs: &[Vec<Sample>], at: DateTime<Utc>| {
            out.push_str(&line(name, p, &run(p, f, obs, at)));
        };

    let p = policy(vec![pending(8.0 * gib, 60, 2)]);
    let high = every15(now, &[12.3 * gib; 6]);
    case(
        "threshold sustained",
        &p,
        &Fixture::running(10),
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "threshold not yet",
        &p,
        &Fixture::running(10),
        &[every15(now, &[1.0, 12.0 * gib, 12.0 * gib])],
        t(now),
    );
    case(
        "threshold below bound",
        &p,
        &Fixture::running(10),
        &[every15(now, &[3.2 * gib])],
        t(now),
    );
    case(
        "threshold dip restarts",
        &p,
        &Fixture::running(10),
        &[every15(
            now,
            &[9.0 * gib, 9.0 * gib, 9.0 * gib, 1.0, 9.0 * gib, 9.0 * gib],
        )],
        t(now),
    );
    case(
        "capped by max",
        &p,
        &Fixture::running(39),
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "at max",
        &p,
        &Fixture::running(40),
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "in-flight counts toward max",
        &p,
        &Fixture {
            in_flight: 2,
            ..Fixture::running(37)
        },
        std::slice::from_ref(&high),
        t(now),
    );
    let pct = policy(vec![rule(
        "pending-pct",
        RuleKind::Threshold {
            bound: Bound::Above(100.0),
            sustain: Sustain::Evaluations(2),
            step: Amount::Percent(25.0),
        },
    )]);
    case(
        "add_percent of effective",
        &pct,
        &Fixture::running(10),
        &[every15(now, &[200.0, 200.0])],
        t(now),
    );

    let stepped = ClusterPolicy {
        max_step: Some(5),
        ..policy(vec![rule(
            "big",
            RuleKind::Threshold {
                bound: Bound::Above(1.0),
                sustain: Sustain::Evaluations(1),
                step: Amount::Add(30),
            },
        )])
    };
    case(
        "max_step",
        &stepped,
        &Fixture::running(0),
        &[every15(now, &[5.0])],
        t(now),
    );
    let unstepped = ClusterPolicy {
        max_step: None,
        ..stepped.clone()
    };
    case(
        "over 20 is chunked",
        &unstepped,
        &Fixture::running(0),
        &[every15(now, &[5.0])],
        t(now),
    );
    let budget = ClusterPolicy {
        max_nodes_per_hour: Some(10),
        max_nodes_per_day: Some(12),
        ..unstepped.clone()
    };
    case(
        "hour budget",
        &budget,
        &Fixture {
            orders: vec![(t(now - 1800), 6)],
            ..Fixture::running(0)
        },
        &[every15(now, &[5.0])],
        t(now),
    );
    case(
        "day budget spent",
        &budget,
        &Fixture {
            orders: vec![(t(now - 7200), 12)],
            ..Fixture::running(0)
        },
        &[every15(now, &[5.0])],
        t(now),
    );

    case(
        "cluster cooldown",
        &p,
        &Fixture {
            cooldown_until: Some(t(now + 60)),
            ..Fixture::running(10)
        },
        std::slice::from_ref(&high),
        t(now),
    );
    let muted = Rule {
        cooldown: Some(Duration::from_secs(600)),
        ..pending(8.0 * gib, 60, 2)
    };
    case(
        "rule cooldown mutes only the rule",
        &policy(vec![muted, util(0.8)]),
        &Fixture {
            last_fired: vec![Some(t(now - 60)), None],
            ..Fixture::running(10)
        },
        &[high.clone(), every15(now, &[0.95])],
        t(now),
    );
    case(
        "sold-out backoff",
        &p,
        &Fixture {
            backoff_until: Some(t(now + 600)),
            ..Fixture::running(10)
        },
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "paused",
        &p,
        &Fixture {
            paused: true,
            ..Fixture::running(10)
        },
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "breaker",
        &p,
        &Fixture {
            breaker_open: true,
            ..Fixture::running(10)
        },
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "dry run",
        &p,
        &Fixture {
            dry_run: true,
            ..Fixture::running(10)
        },
        std::slice::from_ref(&high),
        t(now),
    );
    case(
        "capacity unknown",
        &p,
        &Fixture::default(),
        std::slice::from_ref(&high),
        t(now),
    );

    let u = policy(vec![util(0.8)]);
    case(
        "hpa within tolerance",
        &u,
        &Fixture::running(10),
        &[every15(now, &[0.85])],
        t(now),
    );
    case(
        "hpa above",
        &u,
        &Fixture::running(10),
        &[every15(now, &[1.0])],
        t(now),
    );
    case(
        "hpa from zero bootstraps",
        &u,
        &Fixture::running(0),
        &[every15(now, &[0.95])],
        t(now),
    );
    case(
        "hpa below target holds",
        &u,
        &Fixture::running(10),
        &[every15(now, &[0.2])],
        t(now),
    );
    let d = policy(vec![demand(8192.0)]);
    case(
        "demand sizes to pending",
        &d,
        &Fixture::running(4),
        &[every15(now, &[40_000.0])],
        t(now),
    );
    case(
        "demand counts in-flight",
        &d,
        &Fixture {
            in_flight: 3,
            ..Fixture::running(4)
        },
        &[every15(now, &[40_000.0])],
        t(now),
    );

    case(
        "empty data holds",
        &p,
        &Fixture::running(10),
        &[missing(now, DataIssue::Empty)],
        t(now),
    );
    case(
        "nan holds",
        &p,
        &Fixture::running(10),
        &[every15(now, &[f64::NAN])],
        t(now),
    );
    case(
        "stale sample holds",
        &p,
        &Fixture::running(10),
        &[every15(now - 120, &[99.0 * gib])],
        t(now),
    );
    let open = Rule {
        on_missing: OnMissing::FailOpen,
        ..pending(8.0 * gib, 60, 2)
    };
    case(
        "fail_open adds",
        &policy(vec![open]),
        &Fixture::running(10),
        &[missing(now, DataIssue::Error)],
        t(now),
    );
    let floor_rule = Rule {
        on_missing: OnMissing::Floor,
        ..pending(8.0 * gib, 60, 2)
    };
    let floored = ClusterPolicy {
        min_task_nodes: 4,
        ..policy(vec![floor_rule])
    };
    case(
        "below min restores floor",
        &floored,
        &Fixture::running(1),
        &[missing(now, DataIssue::MultipleSeries)],
        t(now),
    );

    let sched = policy(vec![office(12, Some(3)), pending(8.0 * gib, 60, 2)]);
    let eight = DateTime::parse_from_rfc3339("2027-01-11T08:10:00Z")
        .unwrap()
        .to_utc();
    let quiet = vec![Sample {
        at: eight,
        value: Reading::Value(0.0),
    }];
    case(
        "schedule floor",
        &sched,
        &Fixture::running(5),
        &[vec![], quiet.clone()],
        eight,
    );
    case(
        "schedule floor during cooldown",
        &sched,
        &Fixture {
            cooldown_until: Some(eight + chrono::Duration::minutes(3)),
            ..Fixture::running(5)
        },
        &[vec![], quiet.clone()],
        eight,
    );
    case(
        "schedule add once",
        &sched,
        &Fixture::running(12),
        &[vec![], quiet.clone()],
        eight,
    );
    case(
        "schedule add already done",
        &sched,
        &Fixture {
            schedule_done: vec![
                Some(
                    DateTime::parse_from_rfc3339("2027-01-11T08:00:00Z")
                        .unwrap()
                        .to_utc(),
                ),
                None,
            ],
            ..Fixture::running(12)
        },
        &[vec![], quiet.clone()],
        eight,
    );
    let later = eight + chrono::Duration::hours(2);
    let quiet_later = vec![Sample {
        at: later,
        value: Reading::Value(0.0),
    }];
    case(
        "schedule closed",
        &sched,
        &Fixture::running(5),
        &[vec![], quiet_later],
        later,
    );
    drop(quiet);

    let four_min = Horizon::Fixed(Duration::from_secs(240));
    let cap = policy(vec![capacity(28.0, 120, four_min)]);
    case(
        "capacity: the contract's example",
        &cap,
        &Fixture::running(0),
        &[ramp(now, 289.0, 301.2, 9)],
        t(now),
    );
    case(
        "capacity: growth above headroom",
        &cap,
        &Fixture::running(1),
        &[ramp(now, 240.0, 300.0, 9)],
        t(now),
    );
    case(
        "capacity: auto horizon, no flow observed yet (2 x 10m)",
        &policy(vec![capacity(28.0, 120, Horizon::Auto)]),
        &Fixture::running(1),
        &[ramp(now, 240.0, 300.0, 9)],
        t(now),
    );
    case(
        "capacity: auto horizon from observed flows",
        &policy(vec![capacity(28.0, 120, Horizon::Auto)]),
        &Fixture {
            scale_out: Some(Duration::from_secs(300)),
            ..Fixture::running(1)
        },
        &[ramp(now, 240.0, 300.0, 9)],
        t(now),
    );
    case(
        "capacity: one flow's growth makes an order due",
        &cap,
        &Fixture::running(2),
        &[ramp(now, 240.0, 300.0, 9)],
        t(now),
    );
    case(
        "capacity: growth beyond one flow waits",
        &cap,
        &Fixture::running(3),
        &[ramp(now, 240.0, 300.0, 9)],
        t(now),
    );
    case(
        "capacity: in-flight nodes count",
        &cap,
        &Fixture {
            in_flight: 2,
            ..Fixture::running(1)
        },
        &[ramp(now, 400.0, 400.0, 9)],
        t(now),
    );
    case(
        "capacity: too few samples, no trend",
        &cap,
        &Fixture::running(0),
        &[ramp(now, 330.0, 330.0, 1)],
        t(now),
    );
    case(
        "capacity: falling demand, no trend",
        &cap,
        &Fixture::running(4),
        &[ramp(now, 500.0, 330.0, 9)],
        t(now),
    );
    case(
        "capacity: bounded by max_task_nodes",
        &cap,
        &Fixture::running(38),
        &[ramp(now, 4000.0, 4000.0, 9)],
        t(now),
    );
    case(
        "capacity: below what runs, scale-in off",
        &cap,
        &Fixture::running(10),
        &[ramp(now, 300.0, 300.0, 9)],
        t(now),
    );
    case(
        "capacity: no data holds",
        &cap,
        &Fixture::running(3),
        &[missing(now, DataIssue::Error)],
        t(now),
    );

    expect![[r#"
        threshold sustained: scale_out +2 [2] | pending-memory 12.3 GiB > 8 GiB for 1m: +2
        threshold not yet: hold +0 [] | pending-memory 12 GiB > 8 GiB for 15s of 1m -> hold
        threshold below bound: hold +0 [] | pending-memory 3.2 GiB <= 8 GiB -> hold
        threshold dip restarts: hold +0 [] | pending-memory 9 GiB > 8 GiB for 15s of 1m -> hold
        capped by max: scale_out +1 [1] | pending-memory 12.3 GiB > 8 GiB for 1m: +2; capped by max_task_nodes 40 -> +1
        at max: capped +0 [] | pending-memory 12.3 GiB > 8 GiB for 1m: +2; capped by max_task_nodes 40 -> +0
        in-flight counts toward max: scale_out +1 [1] | pending-memory 12.3 GiB > 8 GiB for 1m: +2; capped by max_task_nodes 40 -> +1
        add_percent of effective: scale_out +3 [3] | pending-pct 200 > 100 for 2 evaluations: +3
        max_step: scale_out +5 [5] | big 5 > 1 for 1 evaluation: +30; capped by max_step 5 -> +5
        over 20 is chunked: scale_out +30 [20, 10] | big 5 > 1 for 1 evaluation: +30 in 2 requests
        hour budget: scale_out +4 [4] | big 5 > 1 for 1 evaluation: +30; capped by max_nodes_per_hour 10 (4 left) -> +4
        day budget spent: budget +0 [] | big 5 > 1 for 1 evaluation: +30; capped by max_nodes_per_hour 10 (10 left); capped by max_nodes_per_day 12 (0 left) -> +0
        cluster cooldown: cooldown +0 [] | pending-memory 12.3 GiB > 8 GiB for 1m: +2; cooldown until 08:03:00 UTC -> +0
        rule cooldown mutes only the rule: scale_out +2 [2] | pending-memory 12.3 GiB > 8 GiB for 1m (muted by rule cooldown); util 95% vs target 80% (±10%): wants 12: +2
        sold-out backoff: cooldown +0 [] | pending-memory 12.3 GiB > 8 GiB for 1m: +2; sold-out backoff until 08:12:00 UTC -> +0
        paused: paused +0 [] | paused by operator; pending-memory 12.3 GiB > 8 GiB for 1m: +2 -> +0
        breaker: breaker +0 [] | breaker open (a flow outlived its limit); pending-memory 12.3 GiB > 8 GiB for 1m: +2 -> +0
        dry run: dry_run +2 [2] | pending-memory 12.3 GiB > 8 GiB for 1m: +2 (dry run: not sent)
        capacity unknown: data_error +0 [] | task-node count unknown; pending-memory 12.3 GiB > 8 GiB for 1m: +2 -> hold
        hpa within tolerance: hold +0 [] | util 85% vs target 80% (±10%): wants 10 -> hold
        hpa above: scale_out +3 [3] | util 100% vs target 80% (±10%): wants 13: +3
        hpa from zero bootstraps: scale_out +2 [2] | util 95% vs target 80% (±10%): wants 2: +2
        hpa below target holds: hold +0 [] | util 20% vs target 80% (±10%): wants 10 -> hold
        demand sizes to pending: scale_out +5 [5] | demand 39.1 GiB / 8 GiB per node × 1: wants 9: +5
        demand counts in-flight: scale_out +2 [2] | demand 39.1 GiB / 8 GiB per node × 1: wants 9: +2
        empty data holds: data_error +0 [] | pending-memory no data (empty), hold -> hold
        nan holds: data_error +0 [] | pending-memory no data (nan), hold -> hold
        stale sample holds: data_error +0 [] | pending-memory no data (stale), hold -> hold
        fail_open adds: scale_out +2 [2] | pending-memory no data (error), fail_open: +2
        below min restores floor: scale_out +3 [3] | pending-memory no data (multiple_series), floor: +3
        schedule floor: scale_out +7 [7] | office window open since 2027-01-11 08:00 UTC: floor 12, add 3 once: +7
        schedule floor during cooldown: scale_out +7 [7] | office window open since 2027-01-11 08:00 UTC: floor 12, add 3 once: +7
        schedule add once: scale_out +3 [3] | office window open since 2027-01-11 08:00 UTC: floor 12, add 3 once: +3
        schedule add already done: hold +0 [] | office window open since 2027-01-11 08:00 UTC: floor 12; pending-memory 0 GiB <= 8 GiB -> hold
        schedule closed: hold +0 [] | office window closed; pending-memory 0 GiB <= 8 GiB -> hold
        capacity: the contract's example: scale_out +2 [2] | capacity 301.2 GiB + headroom 28 GiB (trend +6.1 GiB/min × 4m = 24.4 GiB) − 224 GiB reserved at 56 GiB per node: wants 2, has 0: +2
        capacity: growth above headroom: scale_out +3 [3] | capacity 300 GiB + trend +30 GiB/min × 4m = 120 GiB (above headroom 28 GiB) − 224 GiB reserved at 56 GiB per node: wants 4, has 1: +3
        capacity: auto horizon, no flow observed yet (2 x 10m): scale_out +12 [12] | capacity 300 GiB + trend +30 GiB/min × 20m = 600 GiB (above headroom 28 GiB) − 224 GiB reserved at 56 GiB per node: wants 13, has 1: +12
        capacity: auto horizon from observed flows: scale_out +6 [6] | capacity 300 GiB + trend +30 GiB/min × 10m = 300 GiB (above headroom 28 GiB) − 224 GiB reserved at 56 GiB per node: wants 7, has 1: +6
        capacity: one flow's growth makes an order due: scale_out +2 [2] | capacity 300 GiB + trend +30 GiB/min × 4m = 120 GiB (above headroom 28 GiB) − 224 GiB reserved at 56 GiB per node: wants 4, has 2: +2
        capacity: growth beyond one flow waits: hold +0 [] | capacity 300 GiB + trend +30 GiB/min × 4m = 120 GiB (above headroom 28 GiB) − 224 GiB reserved at 56 GiB per node: wants 4, has 3 (not due: demand and one flow's look-ahead fit) -> hold
        capacity: in-flight nodes count: scale_out +1 [1] | capacity 400 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 4, has 3: +1
        capacity: too few samples, no trend: scale_out +3 [3] | capacity 330 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 3, has 0: +3
        capacity: falling demand, no trend: hold +0 [] | capacity 330 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 3, has 4 -> hold
        capacity: bounded by max_task_nodes: scale_out +2 [2] | capacity 4000 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 40, has 38 (bounded from 68): +2
        capacity: below what runs, scale-in off: hold +0 [] | capacity 300 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 2, has 10 -> hold
        capacity: no data holds: data_error +0 [] | capacity no data (error), hold -> hold
    "#]].assert_eq(&out);
}

// ---- properties ----

fn arb_reading() -> impl Strategy<Value = Reading> {
    prop_oneof![
        6 => (-1e6f64..1e7).prop_map(Reading::Value),
        1 => Just(Reading::Missing(DataIssue::Empty)),
        1 => Just(Reading::Missing(DataIssue::NaN)),
        1 => Just(Reading::Missing(DataIssue::Stale)),
        1 => Just(Reading::Missing(DataIssue::MultipleSeries)),
        1 => Just(Reading::Missing(DataIssue::Error)),
    ]
}

fn arb_rule(i: usize) -> impl Strategy<Value = Rule> {
    let on_missing = prop_oneof![
        Just(OnMissing::Hold),
        Just(OnMissing::FailOpen),
        Just(OnMissing::Floor)
    ];
    let kind = prop_oneof![
        (0.0f64..1e6, 0u64..120, 1u32..60).prop_map(|(b, s, a)| RuleKind::Threshold {
            bound: Bound::Above(b),
            sustain: Sustain::For(Duration::from_secs(s)),
            step: Amount::Add(a),
        }),
        (0.0f64..1e6, 1u32..5, 1.0f64..300.0).prop_map(|(b, n, p)| RuleKind::Threshold {
            bound: Bound::Below(b),
            sustain: Sustain::Evaluations(n),
            step: Amount::Percent(p),
        }),
        (0.01f64..2.0, 0u32..10).prop_map(|(t, b)| RuleKind::Target {
            form: TargetForm::Ratio {
                target: t,
                tolerance: 0.1
            },
            bootstrap: b,
        }),
        (1.0f64..1e5, 0.5f64..3.0).prop_map(|(n, f)| RuleKind::Target {
            form: TargetForm::Demand {
                per_node: n,
                factor: f
            },
            bootstrap: 1,
        }),
        (
            1.0f64..1e5,
            0.0f64..1e6,
            0.0f64..1e5,
            0u64..300,
            proptest::option::of(0u64..3600)
        )
            .prop_map(|(n, r, h, w, z)| RuleKind::Capacity(Capacity {
                per_node: n,
                reserved: r,
                headroom: h,
                trend_window: Duration::from_secs(w),
                trend_horizon: z.map_or(Horizon::Auto, |z| Horizon::Fixed(Duration::from_secs(z))),
            })),
        (0u32..50, proptest::option::of(1u32..30)).prop_map(|(floor, add)| RuleKind::Schedule {
            window: Box::new(Window::new(
                schedule::parse_cron("0 0 * * * *").unwrap(),
                chrono_tz::Europe::Berlin,
                WindowEnd::After(Duration::from_secs(1800)),
            )),
            floor_task_nodes: floor,
            add_once: add,
        }),
    ];
    (kind, on_missing, proptest::option::of(0u64..900)).prop_map(move |(kind, on_missing, cd)| {
        Rule {
            on_missing,
            cooldown: cd.map(Duration::from_secs),
            ..rule(&format!("r{i}"), kind)
        }
    })
}

#[derive(Debug, Clone)]
struct World {
    policy: ClusterPolicy,
    fixture: Fixture,
    obs: Vec<Vec<Sample>>,
    now: DateTime<Utc>,
}

fn arb_world() -> impl Strategy<Value = World> {
    let rules = (arb_rule(0), arb_rule(1), arb_rule(2)).prop_map(|(a, b, c)| vec![a, b, c]);
    let guards = (
        0u32..30,
        0u32..60,
        proptest::option::of(1u32..50),
        proptest::option::of(1u32..80),
        proptest::option::of(1u32..200),
    );
    let state = (
        proptest::option::of(0u32..80),
        0u32..30,
        proptest::option::of(-600i64..600),
        any::<bool>(),
        proptest::collection::vec((0i64..200_000, 1u32..20), 0..8),
    );
    let obs = proptest::collection::vec(proptest::collection::vec(arb_reading(), 0..8), 3);
    (rules, guards, state, obs, 0i64..86_400).prop_map(|(rules, g, s, obs, now_s)| {
        let now = t(now_s);
        let (min, span, max_step, hour, day) = g;
        World {
            policy: ClusterPolicy {
                min_task_nodes: min,
                max_task_nodes: min + span,
                cooldown: Duration::from_secs(300),
                max_step,
                max_nodes_per_hour: hour,
                max_nodes_per_day: day,
                rules,
                scale_in: Default::default(),
            },
            fixture: Fixture {
                running: s.0,
                in_flight: s.1,
                cooldown_until: s.2.map(|o| now + chrono::Duration::seconds(o)),
                dry_run: s.3,
                orders: s
                    .4
                    .iter()
                    .map(|(ago, n)| (now - chrono::Duration::seconds(*ago), *n))
                    .collect(),
                ..Fixture::default()
            },
            obs: obs
                .into_iter()
                .map(|readings| {
                    let n = readings.len() as i64;
                    readings
                        .into_iter()
                        .enumerate()
                        .map(|(i, value)| Sample {
                            at: now - chrono::Duration::seconds((n - 1 - i as i64) * 15),
                            value,
                        })
                        .collect()
                })
                .collect(),
            now,
        }
    })
}

fn all_missing(w: &World) -> World {
    let mut w = w.clone();
    for s in w.obs.iter_mut().flatten() {
        s.value = Reading::Missing(DataIssue::Empty);
    }
    for r in &mut w.policy.rules {
        r.on_missing = OnMissing::Hold;
    }
    w
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_past_max_and_chunks_are_1_to_20(w in arb_world()) {
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        if d.increment > 0 {
            prop_assert!(d.effective + d.increment <= w.policy.max_task_nodes, "{d:?}");
        }
        prop_assert_eq!(d.chunks.iter().sum::<u32>(), d.increment);
        prop_assert!(d.chunks.iter().all(|c| (1..=20).contains(c)));
        prop_assert_eq!(d.chunks.len() as u32, d.increment.div_ceil(20));
        if let Some(step) = w.policy.max_step {
            prop_assert!(d.increment <= step);
        }
    }

    #[test]
    fn budgets_hold_over_every_window(w in arb_world()) {
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        let used = |secs: i64| ordered_since(&w.fixture.orders, w.now - chrono::Duration::seconds(secs));
        if let Some(h) = w.policy.max_nodes_per_hour {
            prop_assert!(d.increment == 0 || used(3600) + d.increment <= h);
        }
        if let Some(day) = w.policy.max_nodes_per_day {
            prop_assert!(d.increment == 0 || used(86_400) + d.increment <= day);
        }
    }

    #[test]
    fn in_cooldown_only_a_floor_is_restored(w in arb_world()) {
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        let cooling = w.fixture.cooldown_until.is_some_and(|c| w.now < c);
        if cooling && d.increment > 0 {
            let schedule_floor = d.votes.iter().filter_map(|v| match v.reason {
                VoteReason::WindowOpen { floor, .. } => Some(floor),
                _ => None,
            }).max().unwrap_or(0);
            let floor = w.policy.min_task_nodes.max(schedule_floor);
            prop_assert!(d.effective + d.increment <= floor, "{d:?}");
        }
    }

    #[test]
    fn missing_data_never_adds_unless_told(w in arb_world()) {
        let w = all_missing(&w);
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        // Only the configured floors may still add: min_task_nodes and open schedules.
        let schedule_floor = d.votes.iter().filter_map(|v| match v.reason {
            VoteReason::WindowOpen { floor, add_once, .. } => Some(floor.max(d.effective + add_once.unwrap_or(0))),
            _ => None,
        }).max().unwrap_or(0);
        let floor = w.policy.min_task_nodes.max(schedule_floor);
        prop_assert!(d.increment == 0 || d.effective + d.increment <= floor, "{d:?}");
    }

    #[test]
    fn a_standby_never_acts_and_says_so(w in arb_world()) {
        let acting = run(&w.policy, &w.fixture, &w.obs, w.now);
        let mut standby = w.fixture.clone();
        standby.standby = true;
        let d = run(&w.policy, &standby, &w.obs, w.now);
        prop_assert_eq!(d.outcome, Outcome::Standby);
        prop_assert!(d.votes.iter().all(|v| v.outcome == Outcome::Standby), "{d:?}");
        prop_assert!(!d.orders() && d.removes() == 0, "{d:?}");
        // It still works out what the leader would do.
        prop_assert_eq!(d.increment, acting.increment);
        prop_assert!(d.to_string().contains("standby"), "{}", d);
    }

    #[test]
    fn every_decision_explains_itself(w in arb_world()) {
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        let text = d.to_string();
        prop_assert!(!text.is_empty());
        prop_assert_eq!(d.votes.len(), w.policy.rules.len());
    }
}

#[test]
fn chunks_split_at_20() {
    assert_eq!(chunks(0), Vec::<u32>::new());
    assert_eq!(chunks(20), vec![20]);
    assert_eq!(chunks(45), vec![20, 20, 5]);
}

fn shrinking(rules: Vec<Rule>) -> ClusterPolicy {
    ClusterPolicy {
        min_task_nodes: 2,
        scale_in: ScaleInPolicy {
            enabled: true,
            stabilization: Duration::from_secs(600),
            max_step: 5,
            ..ScaleInPolicy::default()
        },
        ..policy(rules)
    }
}

fn idle(rule: &str, at_least: f64) -> Rule {
    rule_named(
        rule,
        RuleKind::Threshold {
            bound: Bound::Below(at_least),
            sustain: Sustain::For(Duration::from_secs(60)),
            step: Amount::Remove(2),
        },
    )
}

fn rule_named(name: &str, kind: RuleKind) -> Rule {
    Rule {
        unit: Unit::Ratio,
        ..rule(name, kind)
    }
}

/// Proposals of `nodes` of `effective` every 15 s over the `secs` before `now`.
fn proposed(now: i64, secs: i64, nodes: u32, effective: u32) -> Vec<Proposal> {
    (0..secs / 15)
        .rev()
        .map(|i| Proposal {
            at: t(now - (i + 1) * 15),
            nodes,
            effective,
        })
        .collect()
}

fn removal_line(name: &str, p: &ClusterPolicy, d: &Decision) -> String {
    let units: Vec<Unit> = p.rules.iter().map(|r| r.unit).collect();
    format!(
        "{name}: {} +{} -{} (proposal {}) | {}\n",
        d.outcome,
        d.increment,
        d.removal.nodes(),
        d.proposal,
        d.explain(&units)
    )
}

#[test]
fn scale_in_table() {
    let now = 1200;
    let mut out = String::new();
    let mut case = |name: &str, p: &ClusterPolicy, f: &Fixture, obs: &[Vec<Sample>]| {
        out.push_str(&removal_line(name, p, &run(p, f, obs, t(now))));
    };
    let low = every15(now, &[0.2; 8]);
    let util_only = shrinking(vec![util(0.6)]);
    let observed = Fixture {
        removal_history: proposed(now, 900, 7, 10),
        ..Fixture::running(10)
    };
    case(
        "target below, window observed",
        &util_only,
        &observed,
        std::slice::from_ref(&low),
    );
    case(
        "scale-in off: hold",
        &policy(vec![util(0.6)]),
        &observed,
        std::slice::from_ref(&low),
    );
    case(
        "just started: observing",
        &util_only,
        &Fixture {
            removal_history: proposed(now, 300, 7, 10),
            ..Fixture::running(10)
        },
        std::slice::from_ref(&low),
    );
    let mut burst = proposed(now, 900, 7, 10);
    burst[30].nodes = 0;
    case(
        "a burst inside the window cancels",
        &util_only,
        &Fixture {
            removal_history: burst,
            ..Fixture::running(10)
        },
        std::slice::from_ref(&low),
    );
    let mut smaller = proposed(now, 900, 7, 10);
    smaller[50].nodes = 1;
    case(
        "the smallest removal of the window",
        &util_only,
        &Fixture {
            removal_history: smaller,
            ..Fixture::running(10)
        },
        std::slice::from_ref(&low),
    );
    case(
        "floor bounds it",
        &util_only,
        &Fixture {
            removal_history: proposed(now, 900, 7, 4),
            ..Fixture::running(4)
        },
        &[every15(now, &[0.05; 8])],
    );
    case(
        "at the floor",
        &util_only,
        &Fixture {
            removal_history: proposed(now, 900, 7, 2),
            ..Fixture::running(2)
        },
        &[every15(now, &[0.05; 8])],
    );
    let two = shrinking(vec![util(0.6), idle("idle", 0.3)]);
    case(
        "smallest among the rules",
        &two,
        &observed,
        &[low.clone(), low.clone()],
    );
    let adds = shrinking(vec![util(0.6), pending(8.0 * 1024.0, 0, 2)]);
    case(
        "a rule adds: scale-out wins",
        &adds,
        &observed,
        &[low.clone(), every15(now, &[9.0 * 1024.0; 8])],
    );
    case(
        "a rule lacks data: no removal",
        &two,
        &observed,
        &[low.clone(), missing(now, DataIssue::Empty)],
    );
    case(
        "cluster cooldown",
        &util_only,
        &Fixture {
            cooldown_until: Some(t(now + 60)),
            ..observed.clone()
        },
        std::slice::from_ref(&low),
    );
    case(
        "scale-in cooldown",
        &util_only,
        &Fixture {
            scale_in_cooldown_until: Some(t(now + 60)),
            ..observed.clone()
        },
        std::slice::from_ref(&low),
    );
    case(
        "operation open",
        &util_only,
        &Fixture {
            operation_open: true,
            ..observed.clone()
        },
        std::slice::from_ref(&low),
    );
    case(
        "leaving nodes count as gone",
        &util_only,
        &Fixture {
            leaving: 3,
            operation_open: true,
            ..observed.clone()
        },
        std::slice::from_ref(&low),
    );
    case(
        "strategies unreadable",
        &util_only,
        &Fixture {
            builtin_unknown: true,
            ..observed.clone()
        },
        std::slice::from_ref(&low),
    );
    case(
        "conflict holds everything",
        &adds,
        &Fixture {
            conflict: true,
            ..observed.clone()
        },
        &[low.clone(), every15(now, &[9.0 * 1024.0; 8])],
    );
    case(
        "dry run",
        &util_only,
        &Fixture {
            dry_run: true,
            ..observed.clone()
        },
        std::slice::from_ref(&low),
    );
    case(
        "max_step bounds it",
        &ClusterPolicy {
            min_task_nodes: 0,
            ..util_only.clone()
        },
        &Fixture {
            removal_history: proposed(now, 900, 30, 40),
            ..Fixture::running(40)
        },
        &[every15(now, &[0.05; 8])],
    );
    case(
        "demand form never removes",
        &shrinking(vec![demand(4096.0)]),
        &observed,
        &[every15(now, &[0.0; 8])],
    );
    let cap_in = shrinking(vec![capacity(
        28.0,
        120,
        Horizon::Fixed(Duration::from_secs(240)),
    )]);
    let flat = |gib: f64| vec![ramp(now, gib, gib, 9)];
    case(
        "capacity below, window observed",
        &cap_in,
        &Fixture {
            removal_history: proposed(now, 900, 7, 10),
            ..Fixture::running(10)
        },
        &flat(300.0),
    );
    let mut spike = proposed(now, 900, 7, 10);
    spike[55].nodes = 3;
    case(
        "capacity keeps the largest desired of the window",
        &cap_in,
        &Fixture {
            removal_history: spike,
            ..Fixture::running(10)
        },
        &flat(300.0),
    );
    case(
        "capacity after a removal: the window's wishes against what is left",
        &cap_in,
        &Fixture {
            removal_history: proposed(now, 900, 7, 10),
            ..Fixture::running(6)
        },
        &flat(300.0),
    );
    case(
        "capacity withholds consent at its count",
        &shrinking(vec![
            capacity(28.0, 120, Horizon::Fixed(Duration::from_secs(240))),
            idle("idle", 0.3),
        ]),
        &Fixture {
            removal_history: proposed(now, 900, 7, 10),
            ..Fixture::running(10)
        },
        &[ramp(now, 750.0, 750.0, 9), low.clone()],
    );
    case(
        "capacity with an operation open",
        &cap_in,
        &Fixture {
            operation_open: true,
            removal_history: proposed(now, 900, 7, 10),
            ..Fixture::running(10)
        },
        &flat(300.0),
    );
    case(
        "capacity without data removes nothing",
        &cap_in,
        &Fixture {
            removal_history: proposed(now, 900, 7, 10),
            ..Fixture::running(10)
        },
        &[missing(now, DataIssue::Empty)],
    );

    expect![[r#"
        target below, window observed: scale_in +0 -5 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; stabilized -6 (floor 2, scale_in.max_step 5) -> -5 (graceful)
        scale-in off: hold: hold +0 -0 (proposal 0) | util 20% vs target 60% (±10%): wants 10 -> hold
        just started: observing: hold +0 -0 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; scale-in held: stabilization window observed since 08:15:00 UTC -> hold
        a burst inside the window cancels: hold +0 -0 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; scale-in held: the stabilization window wanted no removal -> hold
        the smallest removal of the window: scale_in +0 -1 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; stabilized -1 -> -1 (graceful)
        floor bounds it: scale_in +0 -2 (proposal 3) | util 5% vs target 60% (±10%): wants 1: -3; stabilized -3 (floor 2, scale_in.max_step 5) -> -2 (graceful)
        at the floor: hold +0 -0 (proposal 1) | util 5% vs target 60% (±10%): wants 1: -1; scale-in held: at the floor 2 -> hold
        smallest among the rules: scale_in +0 -2 (proposal 2) | util 20% vs target 60% (±10%): wants 4: -6; idle 20% < 30% for 1m: -2; stabilized -2 -> -2 (graceful)
        a rule adds: scale-out wins: scale_out +2 -0 (proposal 0) | pending-memory 9 GiB > 8 GiB for 0s: +2; scale-in cancelled: a rule adds
        a rule lacks data: no removal: data_error +0 -0 (proposal 0) | util 20% vs target 60% (±10%): wants 4: -6; scale-in cancelled: a rule has no data -> hold
        cluster cooldown: hold +0 -0 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; scale-in held: cooldown until 08:21:00 UTC -> hold
        scale-in cooldown: hold +0 -0 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; scale-in held: scale-in cooldown until 08:21:00 UTC -> hold
        operation open: hold +0 -0 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; scale-in held: an operation is open -> hold
        leaving nodes count as gone: hold +0 -0 (proposal 4) | util 20% vs target 60% (±10%): wants 3: -4; scale-in held: an operation is open -> hold
        strategies unreadable: hold +0 -0 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; scale-in held: Tencent's auto-scaling strategies unreadable -> hold
        conflict holds everything: conflict +0 -0 (proposal 0) | Tencent's own auto-scaling is on for this cluster; util 20% vs target 60% (±10%): wants 4: -6; pending-memory 9 GiB > 8 GiB for 0s: +2 -> +0
        dry run: dry_run +0 -5 (proposal 6) | util 20% vs target 60% (±10%): wants 4: -6; stabilized -6 (floor 2, scale_in.max_step 5) -> -5 (graceful) (dry run: not sent)
        max_step bounds it: scale_in +0 -5 (proposal 36) | util 5% vs target 60% (±10%): wants 4: -36; stabilized -30 (floor 0, scale_in.max_step 5) -> -5 (graceful)
        demand form never removes: hold +0 -0 (proposal 0) | demand 0 GiB / 4 GiB per node × 1: wants 10 -> hold
        capacity below, window observed: scale_in +0 -5 (proposal 8) | capacity 300 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 2, has 10: -8; stabilized -7 (floor 2, scale_in.max_step 5) -> -5 (graceful)
        capacity keeps the largest desired of the window: scale_in +0 -3 (proposal 8) | capacity 300 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 2, has 10: -8; stabilized -3 -> -3 (graceful)
        capacity after a removal: the window's wishes against what is left: scale_in +0 -3 (proposal 4) | capacity 300 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 2, has 6: -4; stabilized -3 -> -3 (graceful)
        capacity withholds consent at its count: hold +0 -0 (proposal 0) | capacity 750 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 10, has 10; idle 20% < 30% for 1m: -2; no removal: not every rule agrees -> hold
        capacity with an operation open: hold +0 -0 (proposal 8) | capacity 300 GiB + headroom 28 GiB − 224 GiB reserved at 56 GiB per node: wants 2, has 10: -8; scale-in held: an operation is open -> hold
        capacity without data removes nothing: data_error +0 -0 (proposal 0) | capacity no data (empty), hold -> hold
    "#]].assert_eq(&out);
}

/// Worlds where a removal is likely: rules that propose removals on fresh,
/// low readings, a continuous proposal history, and random guards.
fn arb_shrinking_world() -> impl Strategy<Value = (World, Vec<u32>)> {
    let kind = prop_oneof![
        (0.2f64..1.0, 0.0f64..0.3).prop_map(|(target, tolerance)| RuleKind::Target {
            form: TargetForm::Ratio { target, tolerance },
            bootstrap: 1,
        }),
        (1u32..10).prop_map(|n| RuleKind::Threshold {
            bound: Bound::Below(0.5),
            sustain: Sustain::Evaluations(1),
            step: Amount::Remove(n),
        }),
        (0.05f64..0.5, 0.0f64..0.2).prop_map(|(per_node, headroom)| RuleKind::Capacity(Capacity {
            per_node,
            reserved: 0.0,
            headroom,
            trend_window: Duration::from_secs(120),
            trend_horizon: Horizon::Auto,
        })),
        (0u32..40).prop_map(|floor| RuleKind::Schedule {
            window: Box::new(Window::new(
                schedule::parse_cron("0 0 * * * *").unwrap(),
                chrono_tz::UTC,
                WindowEnd::After(Duration::from_secs(1800)),
            )),
            floor_task_nodes: floor,
            add_once: None,
        }),
    ];
    (
        proptest::collection::vec(kind, 1..4),
        proptest::collection::vec(0.0f64..0.6, 3),
        (0u32..20, 0u32..80, 1u32..10),
        (0u32..3, proptest::option::weighted(0.2, -600i64..600)),
        (
            proptest::option::weighted(0.2, -600i64..600),
            any::<bool>(),
            0u32..3,
        ),
        proptest::collection::vec(1u32..30, 40..60),
        0i64..86_400,
    )
        .prop_map(
            |(
                kinds,
                readings,
                (min, running, max_step),
                (in_flight, cd),
                (si_cd, dry, leaving),
                history,
                now_s,
            )| {
                let now = t(now_s);
                let rules: Vec<Rule> = kinds
                    .into_iter()
                    .enumerate()
                    .map(|(i, k)| rule(&format!("r{i}"), k))
                    .collect();
                let obs = rules
                    .iter()
                    .enumerate()
                    .map(|(i, r)| match r.kind {
                        RuleKind::Schedule { .. } => vec![],
                        _ => vec![Sample {
                            at: now,
                            value: Reading::Value(readings[i % readings.len()]),
                        }],
                    })
                    .collect();
                let policy = ClusterPolicy {
                    min_task_nodes: min,
                    max_task_nodes: min + 100,
                    scale_in: ScaleInPolicy {
                        enabled: true,
                        max_step,
                        stabilization: Duration::from_secs(600),
                        ..ScaleInPolicy::default()
                    },
                    ..policy(rules)
                };
                let n = history.len() as i64;
                let in_flight_nodes = if in_flight == 2 { 1 } else { 0 };
                let leaving_nodes = if leaving == 2 { 1 } else { 0 };
                let fixture = Fixture {
                    running: Some(running),
                    in_flight: in_flight_nodes,
                    cooldown_until: cd.map(|o| now + chrono::Duration::seconds(o)),
                    dry_run: dry,
                    leaving: leaving_nodes,
                    operation_open: leaving == 2,
                    scale_in_cooldown_until: si_cd.map(|o| now + chrono::Duration::seconds(o)),
                    removal_history: history
                        .iter()
                        .enumerate()
                        .map(|(i, nodes)| Proposal {
                            at: now - chrono::Duration::seconds((n - i as i64) * 15),
                            nodes: *nodes,
                            effective: running.saturating_sub(leaving_nodes) + in_flight_nodes,
                        })
                        .collect(),
                    ..Fixture::default()
                };
                (
                    World {
                        policy,
                        fixture,
                        obs,
                        now,
                    },
                    history,
                )
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    /// With scale-in on: a removal never goes below the floors, never
    /// exceeds max_step or the window's smallest proposal, and never happens
    /// while a rule adds, lacks data, an operation is open or a cooldown
    /// runs.
    #[test]
    fn a_removal_stays_within_every_bound((w, _history) in arb_shrinking_world()) {
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        let removed = d.removal.nodes();
        if removed == 0 {
            return Ok(());
        }
        prop_assert_eq!(d.increment, 0);
        prop_assert!(matches!(d.outcome, Outcome::ScaleIn | Outcome::DryRun), "{d:?}");
        prop_assert!(removed <= w.policy.scale_in.max_step);
        let schedule_floor = d.votes.iter().filter_map(|v| match v.reason {
            VoteReason::WindowOpen { floor, .. } => Some(floor),
            _ => None,
        }).max().unwrap_or(0);
        let floor = w.policy.min_task_nodes.max(schedule_floor);
        prop_assert!(d.effective >= floor + removed, "{d:?}");
        prop_assert!(d.votes.iter().all(|v| v.increment == 0 && !v.muted && v.issue.is_none()));
        prop_assert!(removed <= d.proposal);
        let window: Vec<u32> = w.fixture.removal_history.iter()
            .filter(|p| w.now - p.at <= chrono::Duration::seconds(600))
            .map(|p| p.nodes)
            .collect();
        prop_assert!(window.iter().all(|n| *n >= removed));
        prop_assert!(!w.fixture.operation_open && w.fixture.in_flight == 0 && w.fixture.leaving == 0);
        prop_assert!(w.fixture.cooldown_until.is_none_or(|c| w.now >= c));
        prop_assert!(w.fixture.scale_in_cooldown_until.is_none_or(|c| w.now >= c));
        prop_assert!(!d.to_string().is_empty());
    }
}

/// The bounds property above is not vacuous: a fair share of its worlds do
/// remove nodes.
#[test]
fn the_shrinking_worlds_do_remove_nodes() {
    use proptest::strategy::ValueTree;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = arb_shrinking_world();
    let removing = (0..1000)
        .filter(|_| {
            let (w, _) = strategy.new_tree(&mut runner).unwrap().current();
            run(&w.policy, &w.fixture, &w.obs, w.now).removal.nodes() > 0
        })
        .count();
    eprintln!("{removing} of 1000 shrinking worlds remove nodes");
    assert!(
        removing >= 100,
        "only {removing} of 1000 worlds removed nodes"
    );
}

/// A capacity rule over a random demand series (every 15 s, some readings
/// missing), with random bounds, counts and trend settings.
fn arb_capacity_world() -> impl Strategy<Value = World> {
    (
        (1.0f64..1e5, 0.0f64..1e6, 0.0f64..1e5, 0u64..600),
        proptest::option::of(0u64..3600),
        proptest::collection::vec(
            prop_oneof![9 => (0.0f64..2e6).prop_map(Reading::Value), 1 => Just(Reading::Missing(DataIssue::Error))],
            1..40,
        ),
        (0u32..20, 0u32..60, 0u32..80, 0u32..5, any::<bool>()),
        proptest::option::of(60u64..3600),
    )
        .prop_map(
            |((n, r, h, w), z, readings, (min, span, running, in_flight, scale_in), flows)| {
                let now = t(3600);
                let count = readings.len() as i64;
                let samples = readings
                    .into_iter()
                    .enumerate()
                    .map(|(i, value)| Sample {
                        at: now - chrono::Duration::seconds((count - 1 - i as i64) * 15),
                        value,
                    })
                    .collect();
                let mut rule = capacity(0.0, w, Horizon::Auto);
                rule.kind = RuleKind::Capacity(Capacity {
                    per_node: n,
                    reserved: r,
                    headroom: h,
                    trend_window: Duration::from_secs(w),
                    trend_horizon: z.map_or(Horizon::Auto, |z| Horizon::Fixed(Duration::from_secs(z))),
                });
                World {
                    policy: ClusterPolicy {
                        min_task_nodes: min,
                        max_task_nodes: min + span,
                        cooldown: Duration::ZERO,
                        scale_in: ScaleInPolicy {
                            enabled: scale_in,
                            stabilization: Duration::from_secs(300),
                            max_step: 100,
                            ..ScaleInPolicy::default()
                        },
                        ..policy(vec![rule])
                    },
                    fixture: Fixture {
                        in_flight,
                        scale_out: flows.map(Duration::from_secs),
                        ..Fixture::running(running)
                    },
                    obs: vec![samples],
                    now,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// The desired count never falls below what current demand needs,
    /// within the bounds, and the rule adds at most up to it.
    #[test]
    fn capacity_covers_current_demand(w in arb_capacity_world()) {
        let d = run(&w.policy, &w.fixture, &w.obs, w.now);
        let vote = &d.votes[0];
        let RuleKind::Capacity(c) = &w.policy.rules[0].kind else { unreachable!() };
        match vote.reason {
            VoteReason::Capacity { sizing, desired, has } => {
                let need = ((sizing.demand - c.reserved) / c.per_node).ceil().max(0.0);
                let (min, max) = (w.policy.min_task_nodes, w.policy.max_task_nodes);
                let bounded_need = (need.min(f64::from(u32::MAX)) as u32).clamp(min, max.max(min));
                prop_assert!(desired >= bounded_need, "{d:?}");
                prop_assert!(desired <= max.max(min), "{d:?}");
                prop_assert!(sizing.growth >= 0.0 && sizing.trend >= 0.0);
                prop_assert_eq!(has, d.effective);
                let bounded_due = sizing.due.clamp(min, max.max(min));
                let due = if bounded_due > d.effective { desired.saturating_sub(d.effective) } else { 0 };
                prop_assert_eq!(vote.increment, due);
                prop_assert!(sizing.raw >= sizing.due);
                // Due no later than demand plus headroom outgrowing what
                // runs, and never for more than one flow's growth.
                let nodes = |margin: f64| ((sizing.demand.max(0.0) + margin - c.reserved) / c.per_node).ceil().max(0.0);
                prop_assert!(f64::from(sizing.due) >= nodes(c.headroom).min(f64::from(u32::MAX)), "{d:?}");
                prop_assert!(f64::from(sizing.due) <= nodes(c.headroom.max(sizing.trend / 2.0)), "{d:?}");
                prop_assert!(d.effective + d.increment <= max.max(d.effective));
            }
            VoteReason::Missing { .. } => {
                prop_assert_eq!(d.removal.nodes(), 0);
                prop_assert!(d.effective + d.increment <= w.policy.min_task_nodes.max(d.effective));
            }
            other => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// Growth is zero while fewer than two readings span half the window.
    #[test]
    fn capacity_growth_needs_half_a_window(w in arb_capacity_world()) {
        let RuleKind::Capacity(c) = &w.policy.rules[0].kind else { unreachable!() };
        let window = c.trend_window;
        let start = time::before(w.now, window);
        let values: Vec<&Sample> = w.obs[0]
            .iter()
            .filter(|s| s.at >= start && s.value.value().is_some())
            .collect();
        let spans = values.len() >= 2
            && values.last().unwrap().at - values[0].at
                >= chrono::Duration::from_std(window / 2).unwrap()
            && !window.is_zero();
        let g = capacity::growth(&w.obs[0], w.now, window);
        if !spans {
            prop_assert_eq!(g, 0.0);
        }
        prop_assert!(g >= 0.0 && g.is_finite());
    }
}

/// Demand falls after a burst: the removal waits for the window to forget
/// the burst's desired count, then gives back down to what demand needs,
/// and never while the burst is inside the window.
#[test]
fn capacity_scale_in_follows_the_largest_desired_of_the_window() {
    let p = shrinking(vec![capacity(
        28.0,
        120,
        Horizon::Fixed(Duration::from_secs(240)),
    )]);
    let mut history: Vec<Proposal> = Vec::new();
    let mut running = 12u32;
    let mut removals = Vec::new();
    // 20 minutes: 700 GiB for 5 minutes, then 300 GiB.
    for step in 0..80i64 {
        let now = 1000 + step * 15;
        let gib = if step < 20 { 700.0 } else { 300.0 };
        let f = Fixture {
            removal_history: history.clone(),
            ..Fixture::running(running)
        };
        let d = run(&p, &f, &[ramp(now, gib, gib, 9)], t(now));
        history.push(Proposal {
            at: t(now),
            nodes: d.proposal,
            effective: d.effective,
        });
        if d.removes() > 0 {
            removals.push((step, d.removes()));
            running -= d.removes();
        }
    }
    // 700 GiB wants 10 (kept from 12 by the window), 300 GiB wants 2.
    // (700 + 28 - 224) / 56 = 9.0 -> 9; (300 + 28 - 224) / 56 = 1.86 -> 2.
    assert_eq!(removals.first().map(|r| r.1), Some(3), "{removals:?}");
    assert!(
        removals.iter().skip(1).all(|(s, _)| *s >= 20 + 20),
        "no removal below 9 until the 700 GiB evaluations left the window: {removals:?}"
    );
    assert_eq!(running, 2, "{removals:?}");
}
