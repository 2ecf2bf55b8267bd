//! The daemon against a loopback Prometheus stand-in and the EMR simulator:
//! operations, cooldown, max, in-flight, chunks, crash safety, the state
//! lock, reload, stop, pause, dry-run, sd_notify, /metrics.
//!
//! What needs a process (kill -9, the state lock, signals, sd_notify, the
//! start-up path of `run`, debug hooks read from the environment) runs the
//! real `emr-autoscaler run` binary on the wall clock. Everything else runs
//! the daemon in this process (`support::inproc`) on a `ScaledClock` shared
//! with the simulator, so flows, grace periods, cooldowns, `flow_timeout`
//! and stabilization windows take a fraction of their real time; a window
//! in which something must not happen is a clock duration, `Rig::window`.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::support::daemon_proc::{BIN, Daemon, eventually};
use crate::support::fake_prom::{Answer, FakeProm};
use crate::support::inproc::InProcess;
use crate::support::metric;
use emr_autoscaler::clock::{ScaledClock, SharedClock, SystemClock, wall_now};
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, SimCluster, SimConfig, SimHandle, Simulator,
};

const CLUSTER: &str = "emr-abc12345";
const Q: &str = "sum(yarn_pending_memory_mb)";
const SCALE_OUT: &str = "ScaleOutInstance";
const FLOW_DETAIL: &str = "DescribeClusterFlowStatusDetail";

/// How long a binary daemon may take to answer `/healthz` with 200.
const HEALTHY: Duration = Duration::from_secs(20);

struct Rig {
    sim: SimHandle,
    prom: FakeProm,
    dir: tempfile::TempDir,
    /// The simulator's clock, and the in-process daemon's.
    clock: SharedClock,
    /// How many times faster than real time `clock` runs.
    speed: f64,
}

/// Extra TOML for the cluster, e.g. rules; `{Q}` is the pending query.
fn config_text(
    rig_sim: &str,
    prom: &str,
    dir: &std::path::Path,
    cluster_extra: &str,
    rules: &str,
) -> String {
    format!(
        r#"
[daemon]
evaluation_interval = "1s"
listen = "127.0.0.1:0"
state_dir = "{state}"
flow_timeout = "60s"

[prometheus]
url = "{prom}"
timeout = "2s"

[tencent]
region = "ap-guangzhou"
endpoint = "{rig_sim}"
metadata_url = "http://127.0.0.1:9"

[[clusters]]
instance_id = "{CLUSTER}"
max_task_nodes = 40
cooldown = "3s"
{cluster_extra}

[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600

{rules}
"#,
        state = dir.join("state").display(),
    )
}

fn threshold(add: u32, for_: &str) -> String {
    format!(
        "[[clusters.rules]]\nname = \"pending\"\ntype = \"threshold\"\nquery = \"{Q}\"\nabove = 100\nfor = \"{for_}\"\nadd = {add}\n"
    )
}

/// `to - from` of two wall-clock instants, zero if `to` is earlier.
fn gap(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

impl Rig {
    /// On the wall clock: for the binary.
    async fn new(task_nodes: u32, flow: Duration) -> Rig {
        Rig::with_cluster(
            SimCluster::new(CLUSTER).with_task_nodes(task_nodes),
            flow,
            1.0,
        )
        .await
    }

    /// On a clock `speed` times faster than real time: for the daemon in
    /// process. `flow` is a duration of that clock.
    async fn scaled(task_nodes: u32, flow: Duration, speed: f64) -> Rig {
        Rig::with_cluster(
            SimCluster::new(CLUSTER).with_task_nodes(task_nodes),
            flow,
            speed,
        )
        .await
    }

    async fn with_cluster(cluster: SimCluster, flow: Duration, speed: f64) -> Rig {
        let clock: SharedClock = if speed == 1.0 {
            Arc::new(SystemClock)
        } else {
            Arc::new(ScaledClock::new(wall_now(), speed))
        };
        let sim = Simulator::start(
            SimConfig {
                clusters: vec![cluster],
                flow_duration: flow,
                ..SimConfig::default()
            },
            clock.clone(),
        )
        .await
        .unwrap();
        let prom = FakeProm::start().await;
        prom.set(Q, Answer::Value(0.0));
        Rig {
            sim,
            prom,
            dir: tempfile::tempdir().unwrap(),
            clock,
            speed,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    fn write_config(&self, cluster_extra: &str, rules: &str) {
        let mut text = config_text(
            &self.sim.endpoint(),
            &self.prom.url(),
            self.dir.path(),
            cluster_extra,
            rules,
        );
        // Keys given in `cluster_extra` replace the defaults.
        for default in ["max_task_nodes = 40\n", "cooldown = \"3s\"\n"] {
            let key = default.split(' ').next().unwrap();
            if cluster_extra.lines().any(|l| l.starts_with(key)) {
                text = text.replacen(default, "", 1);
            }
        }
        std::fs::write(self.config_path(), text).unwrap();
    }

    /// Replaces `from` with `to` in the config file.
    fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(self.config_path()).unwrap();
        assert!(text.contains(from), "{from:?} is not in the config");
        std::fs::write(self.config_path(), text.replace(from, to)).unwrap();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The binary with this rig's config, not started yet.
    fn binary(&self) -> Daemon {
        Daemon::new(&self.config_path(), &self.log_path())
    }

    /// The binary with this rig's config, started and healthy.
    async fn start_binary(&self) -> Daemon {
        let d = Daemon::start(&self.config_path(), &self.log_path(), self.dir.path());
        d.wait_healthy(HEALTHY).await;
        d
    }

    /// The daemon in this process, on the rig's clock, healthy.
    async fn in_process(&self) -> InProcess {
        InProcess::start(&self.config_path(), self.clock.clone()).await
    }

    /// How long `d` of the rig's clock takes in real time.
    fn real(&self, d: Duration) -> Duration {
        self.clock.real(d)
    }

    /// Lets `d` of the rig's clock pass: a bounded window in which something
    /// must not happen.
    async fn window(&self, d: Duration) {
        tokio::time::sleep(self.real(d)).await;
    }

    /// Lets `d` of the rig's clock pass from the wall-clock instant `from`.
    async fn window_from(&self, from: DateTime<Utc>, d: Duration) {
        let until = from + chrono::Duration::from_std(self.real(d)).unwrap();
        tokio::time::sleep(gap(wall_now(), until)).await;
    }

    fn state_json(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/state.json")).unwrap_or_default()
    }

    fn read_state(&self) -> Option<emr_autoscaler::state::State> {
        emr_autoscaler::state::read_only(&self.dir.path().join("state")).ok()
    }

    /// Task counts of the scale-out requests that started a flow.
    fn orders(&self) -> Vec<u64> {
        self.sim
            .ledger()
            .for_action(SCALE_OUT)
            .filter_map(|e| {
                e.started_flow()
                    .map(|_| e.params["TaskCount"].as_u64().unwrap_or(0))
            })
            .collect()
    }

    /// When each order that started a flow reached the simulator (wall clock).
    fn order_times(&self) -> Vec<DateTime<Utc>> {
        self.sim
            .ledger()
            .flow_starts()
            .iter()
            .map(|s| s.arrived_at)
            .collect()
    }

    /// When each removal that started a flow reached the simulator (wall clock).
    fn removal_times(&self) -> Vec<DateTime<Utc>> {
        self.sim
            .ledger()
            .for_action(TERMINATE)
            .filter(|e| e.started_flow().is_some())
            .map(|e| e.arrived_at)
            .collect()
    }
}

fn cluster_metric(family: &str) -> String {
    format!("emr_autoscaler_{family}{{cluster=\"{CLUSTER}\"}}")
}

/// The `decisions_total` sample of one outcome of one rule.
fn decisions(outcome: &str, rule: &str) -> String {
    format!(
        "emr_autoscaler_decisions_total{{cluster=\"{CLUSTER}\",outcome=\"{outcome}\",rule=\"{rule}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_breach_orders_then_cools_down_then_orders_again() {
    let rig = Rig::scaled(2, Duration::from_millis(500), 20.0).await;
    rig.write_config("", &threshold(2, "2s"));
    let mut d = rig.in_process().await;
    // Nothing while demand is low.
    rig.window(Duration::from_secs(2)).await;
    assert!(rig.orders().is_empty());
    let breach_at = wall_now();
    rig.prom.set(Q, Answer::Value(500.0));
    // At least one: the second may follow 175 ms (real) later, faster than
    // a loaded poll may look.
    eventually(Duration::from_secs(15), "the first order", || async {
        !rig.orders().is_empty()
    })
    .await;
    let first = rig.order_times()[0];
    println!(
        "breach visible -> order at the simulator: {:.2?} of clock time (for = 2s, interval = 1s)",
        gap(breach_at, first).mul_f64(rig.speed)
    );
    // Cooldown of 3 s after the 0.5 s flow: no second order within 2.5 s.
    rig.window_from(first, Duration::from_millis(2500)).await;
    let early = rig
        .order_times()
        .iter()
        .filter(|t| gap(first, **t) < rig.real(Duration::from_millis(2500)))
        .count();
    assert_eq!(early, 1, "ordered again during cooldown; log:\n{}", d.log());
    eventually(Duration::from_secs(15), "the second order", || async {
        rig.orders().len() >= 2
    })
    .await;
    let second = rig.order_times()[1];
    assert!(
        gap(first, second) >= rig.real(Duration::from_secs(3)),
        "the second order {:?} (clock) after the first",
        gap(first, second).mul_f64(rig.speed)
    );
    assert_eq!(rig.orders()[..2], [2, 2]);
    assert_eq!(rig.sim.ledger().tokens_with_several_flows().len(), 0);
    assert!(
        d.metric(&format!(
            "emr_autoscaler_nodes_requested_total{{cluster=\"{CLUSTER}\",offering=\"default\"}}"
        ))
        .await
        .unwrap()
            >= 4.0
    );
    assert!(d.stop().await.is_ok(), "log:\n{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_holds_and_in_flight_nodes_count() {
    let rig = Rig::scaled(2, Duration::from_secs(4), 20.0).await;
    // Demand-sized rule with no cooldown: 3 nodes' worth of pending memory.
    let rules = format!(
        "[[clusters.rules]]\nname = \"demand\"\ntype = \"target\"\nquery = \"{Q}\"\nper_node = 100\n"
    );
    rig.write_config("max_task_nodes = 4\ncooldown = \"0s\"", &rules);
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(300.0));
    eventually(Duration::from_secs(10), "an order", || async {
        !rig.orders().is_empty()
    })
    .await;
    // While the 4 s flow runs, the in-flight nodes count: no second order.
    rig.window_from(rig.order_times()[0], Duration::from_secs(3))
        .await;
    assert_eq!(
        rig.orders(),
        vec![2],
        "capped by max_task_nodes 4 from 2 running"
    );
    // After the flow, 4 are running: max holds however high the demand.
    rig.prom.set(Q, Answer::Value(1_000_000.0));
    eventually(
        Duration::from_secs(10),
        "4 running, none in flight",
        || async {
            let v = d.status().await;
            v["clusters"][0]["current"] == 4 && v["clusters"][0]["in_flight"] == 0
        },
    )
    .await;
    rig.window(Duration::from_secs(4)).await;
    assert_eq!(rig.orders(), vec![2]);
    assert_eq!(rig.sim.cluster(CLUSTER).unwrap().task_nodes, 4);
    let v = d.status().await;
    assert_eq!(v["clusters"][0]["current"], 4);
    assert!(
        v["clusters"][0]["last_decision"]
            .as_str()
            .unwrap()
            .contains("max_task_nodes 4"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_five_nodes_go_out_as_20_20_5_in_sequence() {
    let rig = Rig::scaled(0, Duration::from_millis(1500), 20.0).await;
    rig.write_config("max_task_nodes = 100", &threshold(45, "0s"));
    let _d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "three chunks", || async {
        rig.orders().len() >= 3
    })
    .await;
    rig.prom.set(Q, Answer::Value(0.0));
    assert_eq!(rig.orders()[..3], [20, 20, 5]);
    let starts = rig.sim.ledger().flow_starts();
    for w in starts.windows(2).take(2) {
        let gap = gap(w[0].arrived_at, w[1].arrived_at);
        assert!(
            gap >= rig.real(Duration::from_millis(1400)),
            "chunk sent before the previous flow ended: {:?} (clock)",
            gap.mul_f64(rig.speed)
        );
    }
    let tokens: std::collections::BTreeSet<_> =
        starts.iter().map(|s| s.client_token.clone()).collect();
    assert_eq!(tokens.len(), starts.len(), "one token per chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_intent_and_acknowledgement_orders_once() {
    let rig = Rig::new(1, Duration::from_secs(2)).await;
    rig.write_config("", &threshold(3, "0s"));
    // The first order executes but its answer is lost.
    rig.sim
        .inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    let mut d = rig.start_binary().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the first request", || async {
        rig.sim.ledger().for_action(SCALE_OUT).count() >= 1
    })
    .await;
    d.signal("-KILL");
    assert!(
        d.wait_exit(Duration::from_secs(5))
            .await
            .is_none_or(|c| c != 0)
    );
    let state = rig.state_json();
    assert!(
        state.contains("client_token"),
        "the intent is on disk: {state}"
    );
    d.spawn(rig.dir.path());
    eventually(
        Duration::from_secs(15),
        "the re-sent chunk to be acknowledged",
        || async {
            let s = rig.state_json();
            (s.contains("\"flow_id\": ") && !s.contains("\"flow_id\": null"))
                || rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 4)
        },
    )
    .await;
    let ledger = rig.sim.ledger();
    assert_eq!(
        ledger.flows_started(CLUSTER),
        1,
        "exactly one order; log:\n{}",
        d.log_text()
    );
    assert_eq!(ledger.nodes_ordered(CLUSTER), 3);
    let tokens: std::collections::BTreeSet<_> = ledger
        .for_action(SCALE_OUT)
        .map(|e| e.client_token.clone())
        .collect();
    assert_eq!(tokens.len(), 1, "every send used the one token");
}

/// The first order executes but its answer is lost; the client's retry
/// under the same token meets a server that checks the running flow before
/// the token and answers InstanceInProcess. The chunk may have executed: it
/// must wait for the flow and never be ordered again under a new token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_then_instance_in_process_orders_once() {
    // The retry comes 0.25 to 0.5 s of real time after the lost answer: the
    // 3 s flow (2 s of real time here) is still running, with room for a
    // loaded machine.
    let rig = Rig::scaled(1, Duration::from_secs(3), 1.5).await;
    rig.sim.set_flow_before_token(true);
    rig.write_config("cooldown = \"60s\"", &threshold(3, "0s"));
    rig.sim
        .inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(
        Duration::from_secs(30),
        "the operation to end with the nodes running",
        || async {
            rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 4)
                && rig.state_json().contains("\"operation\": null")
        },
    )
    .await;
    // Well past the flow: a second order would have gone out by now.
    rig.window(Duration::from_secs(4)).await;
    let ledger = rig.sim.ledger();
    assert_eq!(
        ledger.flows_started(CLUSTER),
        1,
        "exactly one executed order; log:\n{}",
        d.log()
    );
    let tokens: std::collections::BTreeSet<_> = ledger
        .for_action(SCALE_OUT)
        .map(|e| e.client_token.clone())
        .collect();
    assert_eq!(tokens.len(), 1, "every send used the one token");
    assert!(
        ledger.for_action(SCALE_OUT).count() >= 2,
        "the retry met InstanceInProcess"
    );
    assert!(
        ledger.count_code(SCALE_OUT, "ResourceInUse.InstanceInProcess") >= 1,
        "the retry met InstanceInProcess"
    );
    let status = d.get("/api/v1/status").await.1;
    assert!(status.contains("cooldown_until"), "{status}");
}

/// After an order, DescribeClusterFlowStatusDetail is refused (a CAM
/// policy without it): readiness names the cluster and the reason at once,
/// and the breaker opens after flow_timeout. Nothing hangs silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_flow_fails_readiness_then_opens_the_breaker() {
    let rig = Rig::scaled(1, Duration::from_secs(120), 60.0).await;
    rig.write_config("", &threshold(2, "0s"));
    // The shortest flow_timeout `check` accepts.
    rig.edit_config("flow_timeout = \"60s\"", "flow_timeout = \"1m\"");
    rig.sim.set_standing_fault(
        FLOW_DETAIL,
        Some(CLUSTER),
        Some(Fault::ApiError("UnauthorizedOperation".into())),
    );
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the order", || async {
        rig.orders().len() == 1
    })
    .await;
    eventually(
        Duration::from_secs(8),
        "readyz 503 naming the flow",
        || async {
            let (code, body) = d.get("/readyz").await;
            code == 503 && body.contains(CLUSTER) && body.contains("flow_unreadable")
        },
    )
    .await;
    eventually(Duration::from_secs(90), "the breaker", || async {
        d.metric(&cluster_metric("breaker_open")).await == Some(1.0)
    })
    .await;
    // The breaker waited for flow_timeout after the order was sent.
    let state = rig.read_state().unwrap();
    let c = state.cluster(CLUSTER).unwrap();
    let opened = c.breaker_open.as_ref().unwrap().at;
    let sent = c
        .operation
        .as_ref()
        .unwrap()
        .current
        .as_ref()
        .unwrap()
        .first_sent_at
        .unwrap();
    assert!(
        opened - sent > chrono::Duration::seconds(60),
        "breaker at {opened}, order at {sent}"
    );
    let (_, body) = d.get("/readyz").await;
    assert!(body.contains("breaker"), "{body}");
    assert_eq!(rig.orders().len(), 1, "no second order");
}

/// A pause during a 45-node operation stops it before its next chunk: the
/// chunk in flight is followed to its end, nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_an_operation_before_its_next_chunk() {
    // A 30 s flow is 1.5 s of real time: the pause comes while it runs.
    let rig = Rig::scaled(0, Duration::from_secs(30), 20.0).await;
    rig.write_config("max_task_nodes = 100", &threshold(45, "0s"));
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the first chunk", || async {
        rig.orders().len() == 1
    })
    .await;
    assert_eq!(
        d.post(&format!("/api/v1/clusters/{CLUSTER}/pause")).await,
        200
    );
    assert!(
        rig.sim
            .cluster(CLUSTER)
            .is_some_and(|c| c.current_flow.is_some()),
        "paused while the first chunk's flow runs"
    );
    eventually(Duration::from_secs(15), "the operation to stop", || async {
        rig.state_json().contains("\"operation\": null")
    })
    .await;
    rig.window(Duration::from_secs(2)).await;
    assert_eq!(
        rig.orders(),
        [20],
        "no chunk after the pause; log:\n{}",
        d.log()
    );
    assert!(
        d.log()
            .lines()
            .any(|l| l.contains("Operation ended.") && l.contains("outcome=\"stopped\"")),
        "the operation ended as stopped; log:\n{}",
        d.log()
    );
}

/// Liveness is the process, readiness is the world: one EMR action that
/// answers only after 12 s of real time (longer than an owner's allowance of
/// 3 x evaluation_interval + 10 s, 10.15 s on this clock; inside the 30 s
/// request timeout) never fails `/healthz`, so the systemd watchdog never
/// kills the daemon for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_never_fails_healthz() {
    const SLOW: Duration = Duration::from_secs(12);
    let rig = Rig::scaled(1, Duration::from_secs(3600), 20.0).await;
    rig.write_config("", &threshold(2, "0s"));
    rig.sim
        .set_standing_fault(FLOW_DETAIL, Some(CLUSTER), Some(Fault::Delay(SLOW)));
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the order", || async {
        rig.orders().len() == 1
    })
    .await;
    // Watch /healthz until a slow call has been answered and the next one
    // made.
    let start = Instant::now();
    let failures = Mutex::new(Vec::new());
    let slow = || rig.sim.ledger().for_action(FLOW_DETAIL).count();
    eventually(SLOW * 4, "a second slow call", || async {
        let (code, body) = d.get("/healthz").await;
        if code != 200 {
            failures
                .lock()
                .unwrap()
                .push(format!("{:?}: {code} {body}", start.elapsed()));
        }
        slow() >= 2
    })
    .await;
    assert!(start.elapsed() >= SLOW / 2, "{:?}", start.elapsed());
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "/healthz failed: {failures:#?}");
    assert!(slow() >= 2, "the slow action was called ({})", slow());
}

/// An owner that is genuinely stuck (no step, no call) fails `/healthz`
/// within 3 x evaluation_interval + 10 s. The stall comes from a hook that
/// only debug builds have, read from the process's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_owner_fails_healthz_within_its_bound() {
    let rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(2, "0s"));
    let mut d = rig.binary();
    let mut cmd = d.command(rig.dir.path());
    cmd.env("EMR_AUTOSCALER_TEST_STALL_OWNER", CLUSTER);
    let started = Instant::now();
    d.launch(cmd);
    eventually(Duration::from_secs(30), "/healthz 503", || async {
        d.get("/healthz").await.0 == 503
    })
    .await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(13 + 5),
        "noticed after {took:?} (bound 3 x 1 s + 10 s)"
    );
    assert!(took >= Duration::from_secs(12), "too early: {took:?}");
    let (_, body) = d.get("/healthz").await;
    assert!(body.contains(CLUSTER), "{body}");
}

/// A demand-sized rule with cooldown 0 and a metric that lags 30 s behind
/// the cluster (YARN's pending memory falls only once the NodeManagers
/// register and Prometheus scrapes again) orders exactly once for one burst:
/// the nodes that just arrived still count against the demand (`settle`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_metric_never_orders_the_same_demand_twice() {
    const PER_NODE: f64 = 8192.0;
    const LAG: Duration = Duration::from_secs(30);
    let rig = Rig::scaled(2, Duration::from_secs(2), 20.0).await;
    rig.write_config(
        "cooldown = \"0s\"\nsettle = \"45s\"",
        &format!(
            "[[clusters.rules]]\nname = \"demand\"\ntype = \"target\"\nquery = \"{Q}\"\nper_node = {PER_NODE}\nfactor = 1.0\nunit = \"mb\"\n"
        ),
    );
    let d = rig.in_process().await;
    // One burst: 3 nodes' worth of pending memory, served by nodes beyond
    // the first 2; the metric sees the cluster as it was LAG ago.
    let lag = chrono::Duration::from_std(LAG).unwrap();
    let burst_at = rig.clock.now();
    let mut seen: std::collections::VecDeque<(DateTime<Utc>, u32)> = Default::default();
    // Past the flow, past the lag, until the metric has caught up.
    while rig.clock.now() - burst_at < lag + chrono::Duration::seconds(8) {
        let now = rig.clock.now();
        let nodes = rig.sim.cluster(CLUSTER).map_or(2, |c| c.task_nodes);
        seen.push_back((now, nodes));
        let lagged = seen
            .iter()
            .rev()
            .find(|(at, _)| now - *at >= lag)
            .map_or(2, |(_, n)| *n);
        let pending = (3.0 - f64::from(lagged.saturating_sub(2))).max(0.0) * PER_NODE;
        rig.prom.set(Q, Answer::Value(pending));
        rig.window(Duration::from_millis(200)).await;
    }
    assert!(
        rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 5),
        "the burst was served"
    );
    assert_eq!(
        rig.orders(),
        [3],
        "one order for one burst; log:\n{}",
        d.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_dir_refuses() {
    let rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let _d = rig.start_binary().await;
    // The same config: the same state_dir, and port 0 gives it its own port.
    let out = Command::new(BIN)
        .args(["run", "--config", rig.config_path().to_str().unwrap()])
        .env("HOME", rig.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("locked") && err.contains("another emr-autoscaler"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_bad_config_keeps_the_old_one() {
    let rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let mut d = rig.start_binary().await;
    std::fs::write(
        rig.config_path(),
        "[daemon]\nevaluation_interval = \"soon\"\n",
    )
    .unwrap();
    d.signal("-HUP");
    eventually(
        Duration::from_secs(10),
        "config_reload_success 0",
        || async { d.metric("emr_autoscaler_config_reload_success").await == Some(0.0) },
    )
    .await;
    assert!(d.log_text().contains("Reload refused"), "{}", d.log_text());
    // Still evaluating under the old configuration.
    let before = d.get("/api/v1/status").await.1;
    eventually(
        Duration::from_secs(10),
        "evaluations to continue",
        || async { d.get("/api/v1/status").await.1 != before },
    )
    .await;
    // A valid change takes effect.
    rig.write_config("dry_run = true", &threshold(1, "0s"));
    d.signal("-HUP");
    eventually(
        Duration::from_secs(10),
        "config_reload_success 1",
        || async { d.metric("emr_autoscaler_config_reload_success").await == Some(1.0) },
    )
    .await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "a dry-run decision", || async {
        d.get("/api/v1/status")
            .await
            .1
            .contains("\"outcome\":\"dry_run\"")
    })
    .await;
    assert!(rig.orders().is_empty(), "dry-run sends nothing");
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)).await, Some(0));
    // A log written to a file is plain text: no colour codes, and fields
    // without Rust's Option syntax.
    let log = d.log_text();
    assert!(
        !log.contains('\x1b'),
        "colour codes in a redirected log:\n{log}"
    );
    let decision = log
        .lines()
        .find(|l| l.contains("Decision.") && l.contains("running="))
        .unwrap_or_else(|| panic!("no decision with its running count:\n{log}"));
    assert!(decision.contains("running=1 "), "{decision}");
    assert!(!log.contains("Some("), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_request_ends_cleanly() {
    let rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(2, "0s"));
    rig.sim.inject(
        SCALE_OUT,
        Some(CLUSTER),
        Fault::Delay(Duration::from_secs(2)),
    );
    let mut d = rig.start_binary().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the send to start", || async {
        d.log_text().contains("Sending ScaleOutInstance")
    })
    .await;
    let stop = Instant::now();
    d.signal("-TERM");
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "log:\n{}",
        d.log_text()
    );
    println!("stopped {:.2?} after SIGTERM mid-request", stop.elapsed());
    let state = rig.state_json();
    let v: serde_json::Value = serde_json::from_str(&state).unwrap();
    let op = &v["clusters"][CLUSTER]["operation"];
    assert!(
        op["current"]["client_token"].is_string(),
        "the send is on disk: {state}"
    );
    assert_eq!(rig.sim.ledger().flows_started(CLUSTER), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_sends_nothing_until_resumed() {
    let rig = Rig::scaled(1, Duration::from_millis(500), 20.0).await;
    rig.write_config("", &threshold(1, "0s"));
    let d = rig.in_process().await;
    assert_eq!(d.post("/api/v1/clusters/emr-zzzzzzzz/pause").await, 404);
    assert_eq!(
        d.post(&format!("/api/v1/clusters/{CLUSTER}/pause")).await,
        200
    );
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "a paused decision", || async {
        d.get("/api/v1/status")
            .await
            .1
            .contains("\"outcome\":\"paused\"")
    })
    .await;
    rig.window(Duration::from_secs(2)).await;
    assert!(rig.orders().is_empty());
    assert_eq!(d.metric(&cluster_metric("paused")).await, Some(1.0));
    assert_eq!(
        d.post(&format!("/api/v1/clusters/{CLUSTER}/resume")).await,
        200
    );
    eventually(Duration::from_secs(10), "an order after resume", || async {
        !rig.orders().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_messages_arrive_on_the_socket() {
    let rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let sock_path = rig.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut d = rig.binary();
    let mut cmd = d.command(rig.dir.path());
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000");
    d.launch(cmd);
    let recv_until = |want: &str| -> Vec<String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {want}: {e}; seen {seen:?}"));
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = msg.lines().any(|l| l == want);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    };
    let seen = tokio::task::block_in_place(|| recv_until("READY=1"));
    assert!(seen.last().unwrap().contains("READY=1"));
    let seen = tokio::task::block_in_place(|| recv_until("WATCHDOG=1"));
    assert!(!seen.is_empty());
    d.signal("-HUP");
    let seen = tokio::task::block_in_place(|| recv_until("RELOADING=1"));
    assert!(seen.last().unwrap().contains("MONOTONIC_USEC="), "{seen:?}");
    tokio::task::block_in_place(|| recv_until("READY=1"));
    d.signal("-TERM");
    tokio::task::block_in_place(|| recv_until("STOPPING=1"));
    assert_eq!(d.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_contract_and_pass_promtool() {
    let rig = Rig::scaled(1, Duration::from_secs(1), 20.0).await;
    rig.write_config("", &threshold(1, "1m"));
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Empty);
    eventually(Duration::from_secs(10), "a query error", || async {
        d.metric(&format!(
            "emr_autoscaler_metric_query_errors_total{{cluster=\"{CLUSTER}\",kind=\"empty\",rule=\"pending\"}}"
        ))
        .await
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    let (code, ready_body) = d.get("/readyz").await;
    assert_eq!(code, 503, "{ready_body}");
    assert!(ready_body.contains("pending"), "{ready_body}");
    let (_, text) = d.get("/metrics").await;
    for family in [
        "decisions_total",
        "rule_value",
        "rule_proposed_task_nodes",
        "desired_task_nodes",
        "current_task_nodes",
        "inflight_task_nodes",
        "nodes_requested_total",
        "api_requests_total",
        "api_request_duration_seconds",
        "rate_limiter_wait_seconds",
        "metric_query_errors_total",
        "last_evaluation_timestamp_seconds",
        "paused",
        "build_info",
        "flows_failed_total",
        "breaker_open",
        "cooldown_until_timestamp_seconds",
        "budget_remaining_nodes",
        "config_reload_success",
        "config_last_reload_timestamp_seconds",
    ] {
        let name = format!("emr_autoscaler_{family}");
        assert!(text.contains(&format!("# HELP {name} ")), "{name} missing");
    }
    let file = rig.dir.path().join("metrics.txt");
    std::fs::write(&file, &text).unwrap();
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect("promtool is needed: install Debian's prometheus package");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}"
    );
    // Data returns: ready again.
    rig.prom.set(Q, Answer::Value(1.0));
    eventually(Duration::from_secs(10), "/readyz 200", || async {
        d.get("/readyz").await.0 == 200
    })
    .await;
}

/// An order placed with the CLI goes to the running daemon, which counts it
/// in its cooldown and budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_orders_count_in_the_daemons_cooldown_and_budget() {
    let rig = Rig::scaled(1, Duration::from_millis(300), 20.0).await;
    rig.write_config(
        "cooldown = \"1h\"\nmax_nodes_per_hour = 10",
        &threshold(1, "0s"),
    );
    let d = rig.in_process().await;
    let mut cli = Command::new(BIN);
    cli.args([
        "scale-out",
        "--config",
        rig.config_path().to_str().unwrap(),
        "--instance-id",
        CLUSTER,
        "--task-count",
        "4",
    ])
    .env("HOME", rig.dir.path())
    .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
    .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY);
    let out = tokio::task::spawn_blocking(move || cli.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        Duration::from_secs(10),
        "the manual order in the status",
        || async {
            let v = d.status().await;
            v["clusters"][0]["budget"]["hour_used"] == 4
                && v["clusters"][0]["cooldown_until"].is_string()
        },
    )
    .await;
    // A breach now is held by the cooldown the manual order started.
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "a cooldown decision", || async {
        d.get("/api/v1/status")
            .await
            .1
            .contains("\"outcome\":\"cooldown\"")
    })
    .await;
    assert_eq!(rig.orders(), vec![4], "only the manual order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_startup_unless_reset() {
    let rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let state_dir = rig.dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(
        state_dir.join("state.json"),
        "{\"schema_version\": 2, \"clusters\": {\"emr-abc",
    )
    .unwrap();
    let mut d = rig.binary();
    let out = d
        .command(rig.dir.path())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state.json") && err.contains("--reset-state"),
        "{err}"
    );
    let mut cmd = d.command(rig.dir.path());
    cmd.arg("--reset-state");
    d.launch(cmd);
    d.wait_healthy(HEALTHY).await;
    let aside = std::fs::read_dir(&state_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(aside, "the bad file is kept aside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_flow_releases_its_nodes_and_a_slow_one_trips_the_breaker() {
    let rig = Rig::scaled(1, Duration::from_millis(500), 60.0).await;
    rig.write_config("cooldown = \"0s\"", &threshold(2, "0s"));
    // The shortest flow_timeout `check` accepts.
    rig.edit_config("flow_timeout = \"60s\"", "flow_timeout = \"1m\"");
    rig.sim.inject(SCALE_OUT, Some(CLUSTER), Fault::FailFlow);
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(15), "flows_failed_total 1", || async {
        d.metric(&cluster_metric("flows_failed_total")).await == Some(1.0)
    })
    .await;
    // The failed flow added nothing; the next order is a new one, and this
    // time its flow hangs past flow_timeout.
    rig.sim
        .set_flow_duration(CLUSTER, Some(Duration::from_secs(600)));
    eventually(Duration::from_secs(100), "the breaker", || async {
        d.metric(&cluster_metric("breaker_open")).await == Some(1.0)
    })
    .await;
    let n = rig.orders().len();
    rig.window(Duration::from_secs(2)).await;
    assert_eq!(rig.orders().len(), n, "no orders while the breaker is open");
    assert!(
        d.get("/api/v1/status")
            .await
            .1
            .contains("\"outcome\":\"breaker\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_with_a_token_file_needs_the_bearer_token() {
    let rig = Rig::scaled(1, Duration::from_secs(1), 20.0).await;
    rig.write_config("", &threshold(1, "1m"));
    let token_file = rig.dir.path().join("admin-token");
    rig.edit_config(
        "flow_timeout = \"60s\"",
        &format!(
            "flow_timeout = \"60s\"\nadmin_token_file = \"{}\"",
            token_file.display()
        ),
    );
    let d = rig.in_process().await;
    let url = d.url(&format!("/api/v1/clusters/{CLUSTER}/pause"));
    let http =
        emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3)).unwrap();
    let send = |token: Option<&'static str>| {
        let mut r = http.post(&url);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move { r.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    };
    // The file is missing: refused, but the daemon runs on.
    assert_eq!(send(Some("anything")).await, 503);
    std::fs::write(&token_file, "s3cret-admin\n").unwrap();
    assert_eq!(send(None).await, 401);
    assert_eq!(send(Some("wrong")).await, 401);
    assert_eq!(send(Some("s3cret-admin")).await, 200);
    let (_, status) = d.get("/api/v1/status").await;
    assert!(status.contains("\"paused\":true"), "{status}");
    let log = d.log();
    assert!(
        log.contains("Cluster paused by operator."),
        "the daemon's log is read: {log}"
    );
    assert!(!log.contains("s3cret-admin"), "the token is never logged");
}

// ---- Scale-in and Tencent's own auto-scaling. ----

const U: &str = "sum(yarn_allocated_mb) / sum(yarn_total_mb)";
const TERMINATE: &str = "TerminateClusterNodes";

/// Scale-in on, nodes = "ours", the floor at 2, at most `max` nodes.
fn shrinking(max: u32, stabilization: &str, max_step: u32) -> String {
    format!(
        "min_task_nodes = 2\nmax_task_nodes = {max}\ncooldown = \"3s\"\nsettle = \"2s\"\n[clusters.scale_in]\nenabled = true\ngrace_period = \"60s\"\nstabilization = \"{stabilization}\"\ncooldown = \"1s\"\nmax_step = {max_step}\nowner_tag = {{ key = \"managed-by\", value = \"emr-autoscaler\" }}\n"
    )
}

/// Scale out by 4 on pending memory; right-size on utilisation (target 70%,
/// band 30%).
fn grow_and_shrink_rules() -> String {
    format!(
        "{}[[clusters.rules]]\nname = \"util\"\ntype = \"target\"\nquery = \"{U}\"\ntarget = 0.7\ntolerance = 0.3\n",
        threshold(4, "0s")
    )
}

fn tagged(node: &emr_autoscaler::sim::SimNode) -> bool {
    node.has_tag("managed-by", "emr-autoscaler")
}

/// A burst grows the cluster; once utilisation stays low for the
/// stabilization window it shrinks back to its floor, gracefully, removing
/// only the nodes it added, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_grows_on_a_burst_and_shrinks_back_gracefully() {
    // The 60 s GraceDownTime drains in 2 s of real time.
    let rig = Rig::scaled(2, Duration::from_secs(2), 30.0).await;
    rig.write_config(&shrinking(6, "5s", 5), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.5));
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "six task nodes", || async {
        rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 6)
    })
    .await;
    let before = rig.sim.nodes(CLUSTER).unwrap();
    assert_eq!(before.iter().filter(|n| tagged(n)).count(), 4, "{before:?}");
    // The burst is over and the cluster idles.
    rig.prom.set(Q, Answer::Value(0.0));
    rig.prom.set(U, Answer::Value(0.1));
    eventually(Duration::from_secs(30), "a graceful removal", || async {
        !rig.sim.ledger().terminations(CLUSTER).is_empty()
    })
    .await;
    let ledger = rig.sim.ledger();
    let request = ledger
        .for_action(TERMINATE)
        .find(|e| e.started_flow().is_some())
        .unwrap();
    assert_eq!(request.params["GraceDownFlag"], true);
    assert_eq!(request.params["GraceDownTime"], 60);
    assert_eq!(request.params["NodeFlag"], "TASK");
    let named = ledger.terminations(CLUSTER);
    assert_eq!(named.len(), 1, "one removal: {named:?}");
    assert_eq!(named[0].len(), 4, "down to the floor of 2: {named:?}");
    for id in &named[0] {
        let node = before.iter().find(|n| &n.order_no == id).unwrap();
        assert!(tagged(node), "{id} was not ours");
    }
    // The nodes drain for the grace period, then the flow ends.
    eventually(Duration::from_secs(90), "the removal to end", || async {
        rig.sim
            .cluster(CLUSTER)
            .is_some_and(|c| c.task_nodes == 2 && c.current_flow.is_none())
    })
    .await;
    let after = rig.sim.nodes(CLUSTER).unwrap();
    assert!(
        after.iter().filter(|n| n.flag == 3).all(|n| !tagged(n)),
        "the untagged floor stays: {after:?}"
    );
    assert!(rig.sim.ledger().nodes_terminated_twice().is_empty());
    eventually(
        Duration::from_secs(10),
        "the operation to close",
        || async {
            rig.read_state()
                .is_some_and(|s| s.cluster(CLUSTER).is_some_and(|c| c.operation.is_none()))
        },
    )
    .await;
    let (_, metrics) = d.get("/metrics").await;
    assert_eq!(
        metric(&metrics, &cluster_metric("nodes_removed_total")),
        Some(4.0)
    );
    let decided = metric(&metrics, &decisions("scale_in", "util")).unwrap_or(0.0);
    assert!(decided >= 1.0, "{metrics}");
    assert_eq!(rig.orders(), vec![4], "no scale-out while shrinking");
}

/// A burst inside the stabilization window cancels the scale-in: nothing is
/// removed until a full window without it has been observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_during_the_stabilization_window_cancels_the_scale_in() {
    let rig = Rig::scaled(2, Duration::from_secs(1), 5.0).await;
    rig.write_config(&shrinking(6, "8s", 5), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.5));
    let d = rig.in_process().await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "six task nodes", || async {
        rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 6)
    })
    .await;
    rig.prom.set(Q, Answer::Value(0.0));
    rig.prom.set(U, Answer::Value(0.1));
    // Well inside the 8 s window (1.6 s real), so a stalled test machine
    // still shows the burst before the window could have run out.
    rig.window(Duration::from_secs(2)).await;
    // A burst: the pending rule votes to add (capped at max_task_nodes).
    let burst_at = wall_now();
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(
        Duration::from_secs(10),
        "the daemon to see the burst",
        || async {
            d.metric(&format!(
                "emr_autoscaler_rule_value{{cluster=\"{CLUSTER}\",rule=\"pending\"}}"
            ))
            .await
                == Some(500.0)
        },
    )
    .await;
    rig.window_from(burst_at, Duration::from_secs(2)).await;
    rig.prom.set(Q, Answer::Value(0.0));
    let burst_end = wall_now();
    // A full window must pass without the burst: nothing is removed within
    // 6 s of its end.
    rig.window(Duration::from_secs(6)).await;
    let window = rig.real(Duration::from_secs(6));
    assert!(
        rig.removal_times()
            .iter()
            .all(|t| gap(burst_end, *t) >= window),
        "removed {:?} (clock) after the burst, inside the window",
        rig.removal_times()
            .iter()
            .map(|t| gap(burst_end, *t).mul_f64(rig.speed))
            .collect::<Vec<_>>()
    );
    eventually(
        Duration::from_secs(20),
        "the removal, one window later",
        || async { !rig.sim.ledger().terminations(CLUSTER).is_empty() },
    )
    .await;
    let removed = rig.removal_times()[0];
    assert!(
        gap(burst_end, removed) >= window,
        "removed {:?} (clock) after the burst",
        gap(burst_end, removed).mul_f64(rig.speed)
    );
    assert_eq!(rig.orders(), vec![4], "the capped burst ordered nothing");
}

/// With nodes = "ours", a cluster whose task nodes all came from elsewhere
/// is never shrunk, and the status says why each node was passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nodes_ours_foreign_nodes_are_never_removed() {
    let rig = Rig::scaled(8, Duration::from_secs(1), 20.0).await;
    rig.write_config(&shrinking(10, "2s", 5), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.05));
    let d = rig.in_process().await;
    eventually(
        Duration::from_secs(20),
        "a scale-in decision and its node choice",
        || async {
            let (_, body) = d.get("/api/v1/status").await;
            body.contains("last_selection") && body.contains("tags unknown")
        },
    )
    .await;
    rig.window(Duration::from_secs(5)).await;
    assert!(
        rig.sim.ledger().for_action(TERMINATE).next().is_none(),
        "a foreign node was named"
    );
    assert_eq!(rig.sim.cluster(CLUSTER).unwrap().task_nodes, 8);
}

/// An enabled strategy of Tencent's own auto-scaling holds the cluster with
/// outcome `conflict` (readiness names it) from the first decision, and
/// within one check when it is switched on while the daemon runs. The
/// binary: how often strategies are read comes from a debug hook read from
/// the process's environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builtin_strategy_holds_the_cluster_with_conflict() {
    use emr_autoscaler::sim::BuiltinStrategy;
    let rig = Rig::new(2, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(2, "0s"));
    rig.sim
        .set_builtin_strategy(CLUSTER, BuiltinStrategy::load(7, "cpu-high").in_group(3));
    rig.prom.set(Q, Answer::Value(500.0));
    let mut d = rig.binary();
    let mut cmd = d.command(rig.dir.path());
    cmd.env("EMR_AUTOSCALER_TEST_BUILTIN_EVERY", "1s");
    d.launch(cmd);
    d.wait_healthy(HEALTHY).await;
    eventually(Duration::from_secs(10), "/readyz 503 conflict", || async {
        let (code, body) = d.get("/readyz").await;
        code == 503 && body.contains("conflict") && body.contains("load:cpu-high")
    })
    .await;
    let conflicts = || async { d.metric(&decisions("conflict", "pending")).await };
    // Three more decisions, each held.
    let seen = conflicts().await.unwrap_or(0.0);
    eventually(
        Duration::from_secs(10),
        "three more held decisions",
        || async { conflicts().await.is_some_and(|v| v >= seen + 3.0) },
    )
    .await;
    assert!(
        rig.orders().is_empty(),
        "ordered next to an enabled strategy"
    );
    let held = conflicts().await;
    assert!(held.is_some_and(|v| v >= 1.0), "{held:?}");
    // Switched off: the next check lets the order through.
    rig.sim.clear_builtin(CLUSTER);
    eventually(
        Duration::from_secs(10),
        "the order once the strategy is off",
        || async { rig.orders().len() == 1 },
    )
    .await;
    // Switched on again while running: held within one check.
    rig.sim
        .set_builtin_strategy(CLUSTER, BuiltinStrategy::time(9, "nightly"));
    eventually(Duration::from_secs(5), "conflict again", || async {
        let (code, body) = d.get("/readyz").await;
        code == 503 && body.contains("time:nightly")
    })
    .await;
}

/// Where a kill -9 found the operation of a scale-in.
#[derive(Debug, Default)]
struct Landed {
    /// No operation open.
    idle: u32,
    /// An intent on disk, its request not acknowledged.
    unacknowledged: u32,
    /// A flow being followed.
    following: u32,
}

/// kill -9 at random moments of scale-ins, 20 times: no node is ever named
/// by two removals that executed, no request names more than max_step
/// nodes, only our nodes are named, and the cluster never goes below its
/// floor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_every_step_of_a_scale_in_never_removes_a_node_twice() {
    use emr_autoscaler::sim::SimNode;
    let mut cluster = SimCluster::new(CLUSTER).with_task_nodes(2);
    for _ in 0..40 {
        cluster = cluster.with_node(SimNode::task().with_tag("managed-by", "emr-autoscaler"));
    }
    let rig = Rig::with_cluster(cluster, Duration::from_secs(1), 1.0).await;
    rig.write_config(&shrinking(60, "1s", 3), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.05));
    let mut rng = fastrand::Rng::with_seed(20261202);
    let mut d = rig.binary();
    let mut landed = Landed::default();
    for trial in 0..20 {
        // Each removal drains for 1 s instead of its 60 s grace period.
        rig.sim.inject(
            TERMINATE,
            Some(CLUSTER),
            Fault::SlowFlow(Duration::from_secs(1)),
        );
        if trial % 4 == 1 {
            // A lost answer: the removal executes, the daemon never hears.
            rig.sim
                .inject(TERMINATE, Some(CLUSTER), Fault::DropAfterExecute);
        }
        d.spawn(rig.dir.path());
        // From before the first decision (the 1 s stabilization window is
        // observed anew after each start) to past the flow's end.
        tokio::time::sleep(Duration::from_millis(rng.u64(300..2500))).await;
        d.signal("-KILL");
        let _ = d.wait_exit(Duration::from_secs(5)).await;
        let nodes = rig.sim.cluster(CLUSTER).unwrap().task_nodes;
        assert!(nodes >= 2, "trial {trial}: below the floor ({nodes})");
        let op = rig
            .read_state()
            .and_then(|s| s.cluster(CLUSTER).and_then(|c| c.operation.clone()));
        match op.and_then(|o| o.current) {
            None => landed.idle += 1,
            Some(c) if c.flow_id.is_none() => landed.unacknowledged += 1,
            Some(_) => landed.following += 1,
        }
    }
    // A last daemon settles whatever was left open.
    d.spawn(rig.dir.path());
    eventually(Duration::from_secs(30), "no open operation", || async {
        rig.read_state()
            .is_some_and(|s| s.cluster(CLUSTER).is_some_and(|c| c.operation.is_none()))
    })
    .await;
    let ledger = rig.sim.ledger();
    assert!(
        ledger.nodes_terminated_twice().is_empty(),
        "{:?}",
        ledger.nodes_terminated_twice()
    );
    let named = ledger.terminations(CLUSTER);
    assert!(!named.is_empty(), "no removal ran in 20 trials");
    for list in &named {
        assert!(list.len() <= 3, "more than max_step: {list:?}");
        for id in list {
            assert!(id.starts_with("ins-"), "{id}");
        }
    }
    let left = rig.sim.nodes(CLUSTER).unwrap();
    assert!(left.iter().filter(|n| n.flag == 3).count() >= 2);
    assert_eq!(
        left.iter().filter(|n| n.flag == 3 && !tagged(n)).count(),
        2,
        "foreign nodes stay: {left:#?}; scale-outs: {:?}",
        rig.orders()
    );
    println!(
        "20 kill -9 trials ({landed:?}): {} removals executed, {} nodes removed, {} TerminateClusterNodes requests",
        named.len(),
        named.iter().map(Vec::len).sum::<usize>(),
        ledger.for_action(TERMINATE).count()
    );
}
