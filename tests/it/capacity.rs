//! The capacity rule in the real daemon, closed loop: the EMR simulator
//! provisions task nodes in 4 simulated minutes, and a Prometheus stand-in
//! answers the rule's query with a demand that ramps, holds and falls, on
//! the clock both share (90 times real time).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use emr_autoscaler::clock::{ScaledClock, SharedClock, wall_now};
use emr_autoscaler::demo::prom::{Demand, Source, serve};
use emr_autoscaler::policy::ReplaySignal;
use emr_autoscaler::replay::Model;
use emr_autoscaler::sim::{SimCluster, SimConfig, SimHandle, Simulator};

use crate::support::daemon_proc::eventually_or;
use crate::support::fake_prom::{Answer, FakeProm};
use crate::support::inproc::InProcess;

const CLUSTER: &str = "emr-cap00001";
const GIB: f64 = 1024.0;
/// 45x: a 20 ms sampling step is 0.9 s of clock, and a stalled scheduler
/// costs the simulated cluster 45 times its stall.
const SPEED: f64 = 45.0;
const PROVISIONING: Duration = Duration::from_secs(240);

fn minutes(m: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((m * 60_000.0) as i64)
}

fn config(sim: &str, prom: &str, state: &std::path::Path) -> String {
    format!(
        r#"
[daemon]
evaluation_interval = "15s"
listen = "127.0.0.1:0"
state_dir = "{state}"
flow_timeout = "30m"

[prometheus]
url = "http://{prom}"
timeout = "2s"

[tencent]
region = "ap-guangzhou"
endpoint = "{sim}"
metadata_url = "http://127.0.0.1:9"

[[clusters]]
instance_id = "{CLUSTER}"
min_task_nodes = 0
max_task_nodes = 20
cooldown = "0s"

[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600

[clusters.scale_in]
enabled = true
grace_period = "2m"
stabilization = "5m"
cooldown = "0s"
max_step = 20
nodes = "any_task"

[[clusters.rules]]
name = "capacity"
type = "capacity"
query = "demand"
per_node = 57344
reserved = 229376
replay_signal = "demand_mb"
unit = "mb"
"#,
        state = state.display(),
    )
}

/// The simulated cluster, with no task node and 4-minute flows, on `clock`.
async fn simulator(clock: &SharedClock) -> Arc<SimHandle> {
    Arc::new(
        Simulator::start(
            SimConfig {
                clusters: vec![SimCluster::new(CLUSTER).with_task_nodes(0)],
                flow_duration: PROVISIONING,
                ..SimConfig::default()
            },
            clock.clone(),
        )
        .await
        .unwrap(),
    )
}

/// The model the tests size with: 56 GiB nodes over 224 GiB of core nodes.
fn model() -> Model {
    Model {
        base_capacity_mb: 224.0 * GIB,
        node_memory_mb: 56.0 * GIB,
        provisioning_delay: PROVISIONING,
    }
}

/// A Prometheus stand-in answering the rule's query `demand` with `demand`.
async fn demand_prom(clock: &SharedClock, sim: &Arc<SimHandle>, demand: Demand) -> String {
    serve(
        clock.clone(),
        sim.clone(),
        vec![Source {
            instance_id: CLUSTER.into(),
            demand,
            model: model(),
        }],
        HashMap::from([("demand".to_string(), (0, ReplaySignal::DemandMb))]),
    )
    .await
    .unwrap()
    .to_string()
}

/// The daemon in process with [`config`], its state under `dir`.
async fn daemon(sim: &SimHandle, prom: &str, dir: &Path, clock: &SharedClock) -> InProcess {
    let path = dir.join("config.toml");
    std::fs::write(&path, config(&sim.endpoint(), prom, &dir.join("state"))).unwrap();
    InProcess::start(&path, clock.clone()).await
}

/// A burst that ramps 280 GiB over 7 minutes (0.7 nodes a minute) from `t`,
/// holds 10 minutes and falls back over 2: ordered before pending work
/// appears, never pending for one provisioning time at a stretch, met for
/// good once the last order of the ramp serves, and given back after the
/// stabilization window once it has fallen.
///
/// Where the evaluations fall against the ramp's start depends on the
/// daemon's start-up, so the first order varies: at the first sight of the
/// ramp it is sized on a slope the window still dilutes (2 or 3 nodes, and a
/// second order completes the correction one flow later), a little later it
/// covers the burst alone (4 + 4 was seen too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramping_burst_is_met_early_and_capacity_returns_to_the_floor() {
    let start = wall_now();
    let clock: SharedClock = Arc::new(ScaledClock::new(start, SPEED));
    let sim = simulator(&clock).await;
    let model = model();
    let t = start + minutes(4.0);
    let (ramp_end, fall, fall_end) = (t + minutes(7.0), t + minutes(17.0), t + minutes(19.0));
    let demand = Demand::Points(vec![
        (t, 100.0 * GIB),
        (ramp_end, 380.0 * GIB),
        (fall, 380.0 * GIB),
        (fall_end, 100.0 * GIB),
    ]);
    let prom = demand_prom(&clock, &sim, demand.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(&sim, &prom, dir.path(), &clock).await;

    // Follow the cluster on the shared clock until it is back at its floor
    // after the fall, or 40 simulated minutes past the burst's start.
    let deadline = Instant::now() + Duration::from_secs_f64(45.0 * 60.0 / SPEED);
    let mut last: Option<DateTime<Utc>> = None;
    let (mut pending_since, mut longest_pending) =
        (None::<DateTime<Utc>>, chrono::Duration::zero());
    let mut first_order: Option<DateTime<Utc>> = None;
    let mut first_pending: Option<DateTime<Utc>> = None;
    let (mut flows, mut last_order) = (0, None::<DateTime<Utc>>);
    let mut pending_after_correction = chrono::Duration::zero();
    let mut met_at: Option<DateTime<Utc>> = None;
    let mut held_before_window: Option<u32> = None;
    let mut back_at_floor: Option<DateTime<Utc>> = None;
    while Instant::now() < deadline {
        let now = clock.now();
        let running = sim.cluster(CLUSTER).map_or(0, |c| c.task_nodes);
        let started = sim.ledger().flow_starts().len();
        if started > flows {
            flows = started;
            first_order.get_or_insert(now);
            if now < fall {
                last_order = Some(now);
            }
        }
        let need = demand.at(now) - model.capacity_mb(running);
        let dt = last.map_or(chrono::Duration::zero(), |l| now - l);
        last = Some(now);
        if need > 0.0 {
            first_pending.get_or_insert(now);
            let since = *pending_since.get_or_insert(now);
            longest_pending = longest_pending.max(now - since);
            // After the ramp's last order serves (with a step of slack).
            let served = last_order.map(|o| o + minutes(4.25));
            if served.is_some_and(|s| now > s) && now < fall {
                pending_after_correction += dt;
            }
        } else {
            pending_since = None;
            if now > t && now < fall && first_pending.is_some() {
                met_at.get_or_insert(now);
            }
        }
        if now >= fall + minutes(4.0) && held_before_window.is_none() {
            held_before_window = Some(running);
        }
        if now > fall_end && running == 0 {
            back_at_floor = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = d.status().await;
    let log = d.log();
    let orders: Vec<u32> = sim
        .ledger()
        .flow_starts()
        .iter()
        .map(|f| f.task_count)
        .collect();
    let report = format!(
        "orders {orders:?}; first order {:?} min after the ramp began; pending first {:?} min \
         after; longest pending {:.1} min; nodes 4 min into the fall {held_before_window:?}; \
         back at the floor {:?} min after the fall ended\nstatus: {status}\nlog:\n{log}",
        first_order.map(|o| (o - t).as_seconds_f64() / 60.0),
        first_pending.map(|p| (p - t).as_seconds_f64() / 60.0),
        longest_pending.as_seconds_f64() / 60.0,
        back_at_floor.map(|b| (b - fall_end).as_seconds_f64() / 60.0),
    );
    println!("{}", report.lines().next().unwrap_or_default());

    // Ordered on the growth, before the demand outgrew the core nodes.
    let ordered = first_order.expect(&report);
    assert!(ordered > t, "{report}");
    assert!(
        first_pending.is_none_or(|p| ordered < p),
        "the first order came after pending work appeared: {report}"
    );
    // Pending work never lasted one provisioning time at a stretch, and the
    // burst stayed met once the ramp's last order served.
    assert!(
        longest_pending < chrono::Duration::from_std(PROVISIONING).unwrap(),
        "{report}"
    );
    assert!(met_at.is_some(), "{report}");
    assert!(
        pending_after_correction <= minutes(0.5),
        "demand went unmet after the last order served: {report}"
    );
    // The window keeps the burst's count for 5 minutes after it fell.
    assert!(
        held_before_window.is_some_and(|n| n >= 3),
        "nodes were given back within the stabilization window: {report}"
    );
    // Then back to the floor, gracefully, each node once.
    assert!(back_at_floor.is_some(), "{report}");
    assert_eq!(
        sim.ledger().tokens_with_several_flows().len(),
        0,
        "{report}"
    );
    let removed: Vec<String> = sim
        .ledger()
        .terminations(CLUSTER)
        .into_iter()
        .flatten()
        .collect();
    let unique: std::collections::BTreeSet<&String> = removed.iter().collect();
    assert_eq!(
        unique.len(),
        removed.len(),
        "a node was named twice: {report}"
    );

    // The status shows the rule's sizing, with the horizon learnt from the
    // completed flows: twice about 4 minutes.
    let vote = &status["clusters"][0]["votes"][0]["capacity"];
    let horizon = vote["horizon_seconds"].as_u64().expect(&report);
    assert!(
        (400..=600).contains(&horizon),
        "horizon {horizon}: {report}"
    );
    assert_eq!(vote["per_node"].as_f64(), Some(57344.0), "{report}");
    let desired = d
        .metric(&format!(
            "emr_autoscaler_rule_desired_task_nodes{{cluster=\"{CLUSTER}\",rule=\"capacity\"}}"
        ))
        .await;
    assert_eq!(desired, Some(0.0), "{report}");
    // Every family the dashboard draws the rule with is exported.
    let page = d.get("/metrics").await.1;
    for family in crate::dashboard::CAPACITY_ONLY {
        assert!(
            page.contains(&format!("# TYPE {family} gauge"))
                && page.contains(&format!(
                    "{family}{{cluster=\"{CLUSTER}\",rule=\"capacity\"}}"
                )),
            "{family} missing from /metrics:\n{page}"
        );
    }
    assert!(d.stop().await.is_ok(), "{report}");
}

/// After a start the trend window is filled by one range query: a daemon
/// started in the middle of a ramp sees its growth at the first evaluation,
/// rather than after half a window of its own samples. The clock runs at
/// real speed, so the second evaluation is 15 s away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_mid_ramp_sees_the_growth_at_once() {
    let start = wall_now();
    let clock: SharedClock = Arc::new(ScaledClock::new(start, 1.0));
    let sim = simulator(&clock).await;
    // 6 GiB a minute for 20 minutes around the start, far below the core
    // nodes' 224 GiB: nothing is ordered.
    let demand = Demand::Points(vec![
        (start - minutes(10.0), 40.0 * GIB),
        (start + minutes(10.0), 160.0 * GIB),
    ]);
    let prom = demand_prom(&clock, &sim, demand).await;
    let dir = tempfile::tempdir().unwrap();
    let mut d = daemon(&sim, &prom, dir.path(), &clock).await;

    // The first evaluation's vote, read while it is the only one.
    eventually_or(
        Duration::from_secs(10),
        "the first evaluation",
        || d.log(),
        || async { d.decisions().await >= 1.0 },
    )
    .await;
    let status = d.status().await;
    assert_eq!(d.decisions().await, 1.0, "{status}");
    let vote = status["clusters"][0]["votes"][0]["capacity"].clone();
    let growth = vote["growth_per_minute"].as_f64().unwrap_or_default() / GIB;
    assert!(
        (5.0..=7.0).contains(&growth),
        "growth {growth} GiB/min at the first evaluation: {vote}\n{}",
        d.log()
    );
    assert_eq!(vote["has"].as_u64(), Some(0), "{vote}");
    assert!(sim.ledger().flow_starts().is_empty());
    assert!(d.stop().await.is_ok());
}

/// A range query that fails or hangs does not hold the first evaluation
/// beyond `prometheus.timeout`: the rule then decides on its instant reading,
/// with no growth until it has observed half a window, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_or_slow_backfill_leaves_the_rule_on_its_own_samples() {
    for range in [
        Answer::Down,
        Answer::Multiple,
        Answer::Slow(Duration::from_secs(30), 1.0),
    ] {
        let clock: SharedClock = Arc::new(ScaledClock::new(wall_now(), 1.0));
        let sim = simulator(&clock).await;
        let prom = FakeProm::start().await;
        prom.set("demand", Answer::Value(300.0 * GIB));
        prom.set_range("demand", range.clone());
        let dir = tempfile::tempdir().unwrap();
        let addr = prom.url().trim_start_matches("http://").to_string();
        let began = Instant::now();
        let mut d = daemon(&sim, &addr, dir.path(), &clock).await;
        // prometheus.timeout is 2 s; the next evaluation is 15 s away.
        eventually_or(
            Duration::from_secs(10).saturating_sub(began.elapsed()),
            "the first evaluation",
            || d.log(),
            || async { d.decisions().await >= 1.0 },
        )
        .await;
        let status = d.status().await;
        let vote = &status["clusters"][0]["votes"][0]["capacity"];
        assert_eq!(
            vote["growth_per_minute"].as_f64(),
            Some(0.0),
            "{range:?}: {vote}"
        );
        // (300 + 28 - 224) / 56 = 1.86: two nodes, on the instant reading.
        assert_eq!(vote["desired"].as_u64(), Some(2), "{range:?}: {vote}");
        assert!(
            d.log().contains("Trend window not filled"),
            "{range:?}:\n{}",
            d.log()
        );
        assert!(d.stop().await.is_ok());
    }
}
