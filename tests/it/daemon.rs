//! The real `emr-autoscaler run` binary against a loopback Prometheus stand-in
//! and the EMR simulator: operations, cooldown, max, in-flight, chunks, crash
//! safety, the state lock, reload, stop, pause, dry-run, sd_notify, /metrics.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::daemon_proc::wait_ready_file;
use crate::support::fake_prom::{Answer, FakeProm};
use emr_autoscaler::clock::{SharedClock, SystemClock};
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, SimCluster, SimConfig, SimHandle, Simulator,
};

const BIN: &str = env!("CARGO_BIN_EXE_emr-autoscaler");
const CLUSTER: &str = "emr-abc12345";
const Q: &str = "sum(yarn_pending_memory_mb)";
const SCALE_OUT: &str = "ScaleOutInstance";

struct Rig {
    sim: SimHandle,
    prom: FakeProm,
    dir: tempfile::TempDir,
    /// The running child's admin port, from its ready file.
    port: u16,
    child: Option<Child>,
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

impl Rig {
    async fn new(task_nodes: u32, flow: Duration) -> Rig {
        Rig::with_cluster(SimCluster::new(CLUSTER).with_task_nodes(task_nodes), flow).await
    }

    async fn with_cluster(cluster: SimCluster, flow: Duration) -> Rig {
        let clock: SharedClock = Arc::new(SystemClock);
        let sim = Simulator::start(
            SimConfig {
                clusters: vec![cluster],
                flow_duration: flow,
                ..SimConfig::default()
            },
            clock,
        )
        .await
        .unwrap();
        let prom = FakeProm::start().await;
        prom.set(Q, Answer::Value(0.0));
        Rig {
            sim,
            prom,
            dir: tempfile::tempdir().unwrap(),
            port: 0,
            child: None,
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

    fn ready_path(&self) -> PathBuf {
        self.dir.path().join("daemon.ready")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// `run` with this rig's config, writing its address to `ready_path`.
    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config", self.config_path().to_str().unwrap()])
            .arg("--ready-file")
            .arg(self.ready_path())
            .env_clear()
            .env("HOME", self.dir.path())
            .env("RUST_LOG", "info")
            .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                    .unwrap(),
            ));
        cmd
    }

    fn start(&mut self) {
        self.launch(self.command());
    }

    /// Spawns `cmd` (from `command`) and waits until the daemon has bound its
    /// admin port; a restart gets a new port.
    fn launch(&mut self, mut cmd: Command) {
        let ready = self.ready_path();
        let log = self.log_path();
        let _ = std::fs::remove_file(&ready);
        self.child = Some(cmd.spawn().unwrap());
        let child = self.child.as_mut().unwrap();
        self.port = tokio::task::block_in_place(|| wait_ready_file(&ready, child, &log)).port();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the child to exit, at most `limit`.
    async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        reqwest_get(&url).await.unwrap_or_default()
    }

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
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn reqwest_get(url: &str) -> Option<(u16, String)> {
    let client =
        emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3)).ok()?;
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

async fn post(url: &str) -> u16 {
    let client =
        emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3)).unwrap();
    client
        .post(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Polls `cond` every 100 ms until it holds or `limit` passes.
async fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn ready(rig: &Rig) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = rig.get("/healthz").await;
        if code == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "daemon never served /healthz; log:\n{}",
            rig.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_breach_orders_then_cools_down_then_orders_again() {
    let mut rig = Rig::new(2, Duration::from_millis(500)).await;
    rig.write_config("", &threshold(2, "2s"));
    rig.start();
    ready(&rig).await;
    // Nothing while demand is low.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rig.orders().is_empty());
    let breach_at = Instant::now();
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(15), "the first order", || {
        rig.orders().len() == 1
    })
    .await;
    println!(
        "breach visible -> order at the simulator: {:.2?} (for = 2s, interval = 1s)",
        breach_at.elapsed()
    );
    let first = Instant::now();
    // Cooldown of 3 s after the flow: no second order for at least ~3 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rig.orders().len(),
        1,
        "ordered again during cooldown; log:\n{}",
        rig.log()
    );
    eventually(Duration::from_secs(15), "the second order", || {
        rig.orders().len() == 2
    })
    .await;
    assert!(first.elapsed() >= Duration::from_secs(3));
    assert_eq!(rig.orders(), vec![2, 2]);
    assert_eq!(rig.sim.ledger().tokens_with_several_flows().len(), 0);
    let (_, metrics) = rig.get("/metrics").await;
    assert!(
        metric(
            &metrics,
            &format!("emr_autoscaler_nodes_requested_total{{cluster=\"{CLUSTER}\"}}")
        )
        .unwrap()
            >= 4.0
    );
    rig.signal("-TERM");
    assert_eq!(rig.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_holds_and_in_flight_nodes_count() {
    let mut rig = Rig::new(2, Duration::from_secs(4)).await;
    // Demand-sized rule with no cooldown: 3 nodes' worth of pending memory.
    let rules = format!(
        "[[clusters.rules]]\nname = \"demand\"\ntype = \"target\"\nquery = \"{Q}\"\nper_node = 100\n"
    );
    rig.write_config("max_task_nodes = 4\ncooldown = \"0s\"", &rules);
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(300.0));
    eventually(Duration::from_secs(10), "an order", || {
        !rig.orders().is_empty()
    })
    .await;
    // While the 4 s flow runs, the in-flight nodes count: no second order.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        rig.orders(),
        vec![2],
        "capped by max_task_nodes 4 from 2 running"
    );
    // After the flow, 4 are running: max holds however high the demand.
    rig.prom.set(Q, Answer::Value(1_000_000.0));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(rig.orders(), vec![2]);
    assert_eq!(rig.sim.cluster(CLUSTER).unwrap().task_nodes, 4);
    let (_, status) = rig.get("/api/v1/status").await;
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
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
    let mut rig = Rig::new(0, Duration::from_millis(1500)).await;
    rig.write_config("max_task_nodes = 100", &threshold(45, "0s"));
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "three chunks", || {
        rig.orders().len() >= 3
    })
    .await;
    rig.prom.set(Q, Answer::Value(0.0));
    assert_eq!(rig.orders()[..3], [20, 20, 5]);
    let starts = rig.sim.ledger().flow_starts();
    for w in starts.windows(2).take(2) {
        let gap = w[1].arrived_at - w[0].arrived_at;
        assert!(
            gap >= chrono::Duration::milliseconds(1400),
            "chunk sent before the previous flow ended: {gap}"
        );
    }
    let tokens: std::collections::BTreeSet<_> =
        starts.iter().map(|s| s.client_token.clone()).collect();
    assert_eq!(tokens.len(), starts.len(), "one token per chunk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_intent_and_acknowledgement_orders_once() {
    let mut rig = Rig::new(1, Duration::from_secs(2)).await;
    rig.write_config("", &threshold(3, "0s"));
    // The first order executes but its answer is lost.
    rig.sim
        .inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the first request", || {
        rig.sim.ledger().for_action(SCALE_OUT).count() >= 1
    })
    .await;
    rig.signal("-KILL");
    assert!(
        rig.wait_exit(Duration::from_secs(5))
            .await
            .is_none_or(|c| c != 0)
    );
    let state = std::fs::read_to_string(rig.dir.path().join("state/state.json")).unwrap();
    assert!(
        state.contains("client_token"),
        "the intent is on disk: {state}"
    );
    rig.start();
    eventually(
        Duration::from_secs(15),
        "the re-sent chunk to be acknowledged",
        || {
            std::fs::read_to_string(rig.dir.path().join("state/state.json"))
                .is_ok_and(|s| s.contains("\"flow_id\": ") && !s.contains("\"flow_id\": null"))
                || rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 4)
        },
    )
    .await;
    let ledger = rig.sim.ledger();
    assert_eq!(
        ledger.flows_started(CLUSTER),
        1,
        "exactly one order; log:\n{}",
        rig.log()
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
    let mut rig = Rig::new(1, Duration::from_secs(3)).await;
    rig.sim.set_flow_before_token(true);
    rig.write_config("cooldown = \"60s\"", &threshold(3, "0s"));
    rig.sim
        .inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(
        Duration::from_secs(30),
        "the operation to end with the nodes running",
        || {
            rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 4)
                && std::fs::read_to_string(rig.dir.path().join("state/state.json"))
                    .is_ok_and(|s| s.contains("\"operation\": null"))
        },
    )
    .await;
    // Well past the flow: a second order would have gone out by now.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ledger = rig.sim.ledger();
    assert_eq!(
        ledger.flows_started(CLUSTER),
        1,
        "exactly one executed order; log:\n{}",
        rig.log()
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
    let status = rig.get("/api/v1/status").await.1;
    assert!(status.contains("cooldown_until"), "{status}");
}

/// After an order, DescribeClusterFlowStatusDetail is refused (a CAM
/// policy without it): readiness names the cluster and the reason at once,
/// and the breaker opens after flow_timeout. Nothing hangs silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_flow_fails_readiness_then_opens_the_breaker() {
    let mut rig = Rig::new(1, Duration::from_secs(120)).await;
    rig.write_config("", &threshold(2, "0s"));
    let text = std::fs::read_to_string(rig.config_path())
        .unwrap()
        // The shortest flow_timeout `check` accepts.
        .replace("flow_timeout = \"60s\"", "flow_timeout = \"1m\"");
    std::fs::write(rig.config_path(), text).unwrap();
    rig.sim.set_standing_fault(
        "DescribeClusterFlowStatusDetail",
        Some(CLUSTER),
        Some(Fault::ApiError("UnauthorizedOperation".into())),
    );
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the order", || {
        rig.orders().len() == 1
    })
    .await;
    eventually(Duration::from_secs(8), "readyz 503 naming the flow", || {
        let (code, body) = futures_block(rig.get("/readyz"));
        code == 503 && body.contains(CLUSTER) && body.contains("flow_unreadable")
    })
    .await;
    eventually(Duration::from_secs(90), "the breaker", || {
        metric(
            &futures_block(rig.get("/metrics")).1,
            &format!("emr_autoscaler_breaker_open{{cluster=\"{CLUSTER}\"}}"),
        ) == Some(1.0)
    })
    .await;
    // The breaker waited for flow_timeout after the order was sent.
    let state = emr_autoscaler::state::read_only(&rig.dir.path().join("state")).unwrap();
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
    let (_, body) = rig.get("/readyz").await;
    assert!(body.contains("breaker"), "{body}");
    assert_eq!(rig.orders().len(), 1, "no second order");
}

/// A pause during a 45-node operation stops it before its next chunk: the
/// chunk in flight is followed to its end, nothing more is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_an_operation_before_its_next_chunk() {
    let mut rig = Rig::new(0, Duration::from_secs(3)).await;
    rig.write_config("max_task_nodes = 100", &threshold(45, "0s"));
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the first chunk", || {
        rig.orders().len() == 1
    })
    .await;
    let base = format!("http://127.0.0.1:{}/api/v1/clusters", rig.port);
    assert_eq!(post(&format!("{base}/{CLUSTER}/pause")).await, 200);
    eventually(Duration::from_secs(15), "the operation to stop", || {
        std::fs::read_to_string(rig.dir.path().join("state/state.json"))
            .is_ok_and(|s| s.contains("\"operation\": null"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        rig.orders(),
        [20],
        "no chunk after the pause; log:\n{}",
        rig.log()
    );
    assert!(
        rig.log().contains("stopped"),
        "the operation ended as stopped"
    );
}

/// Liveness is the process, readiness is the world: one EMR action that
/// answers only after 25 s (inside the 30 s request timeout) never fails
/// `/healthz`, so the systemd watchdog never kills the daemon for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_api_never_fails_healthz() {
    let mut rig = Rig::new(1, Duration::from_secs(300)).await;
    rig.write_config("", &threshold(2, "0s"));
    rig.sim.set_standing_fault(
        "DescribeClusterFlowStatusDetail",
        Some(CLUSTER),
        Some(Fault::Delay(Duration::from_secs(25))),
    );
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the order", || {
        rig.orders().len() == 1
    })
    .await;
    let start = Instant::now();
    let mut failures = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        let (code, body) = rig.get("/healthz").await;
        if code != 200 {
            failures.push(format!("{:?}: {code} {body}", start.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(failures.is_empty(), "/healthz failed: {failures:#?}");
    let slow = rig
        .sim
        .ledger()
        .for_action("DescribeClusterFlowStatusDetail")
        .count();
    assert!(slow >= 2, "the slow action was called ({slow})");
}

/// An owner that is genuinely stuck (no step, no call) fails `/healthz`
/// within 3 x evaluation_interval + 10 s. The stall comes from a hook that
/// only debug builds have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_owner_fails_healthz_within_its_bound() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(2, "0s"));
    let mut cmd = rig.command();
    cmd.env("EMR_AUTOSCALER_TEST_STALL_OWNER", CLUSTER);
    let started = Instant::now();
    rig.launch(cmd);
    eventually(Duration::from_secs(30), "/healthz 503", || {
        futures_block(rig.get("/healthz")).0 == 503
    })
    .await;
    let took = started.elapsed();
    assert!(
        took <= Duration::from_secs(13 + 5),
        "noticed after {took:?} (bound 3 x 1 s + 10 s)"
    );
    assert!(took >= Duration::from_secs(12), "too early: {took:?}");
    let (_, body) = rig.get("/healthz").await;
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
    let mut rig = Rig::new(2, Duration::from_secs(2)).await;
    rig.write_config(
        "cooldown = \"0s\"\nsettle = \"45s\"",
        &format!(
            "[[clusters.rules]]\nname = \"demand\"\ntype = \"target\"\nquery = \"{Q}\"\nper_node = {PER_NODE}\nfactor = 1.0\nunit = \"mb\"\n"
        ),
    );
    rig.start();
    ready(&rig).await;
    // One burst: 3 nodes' worth of pending memory, served by nodes beyond
    // the first 2; the metric sees the cluster as it was LAG ago.
    let burst_at = Instant::now();
    let mut seen: std::collections::VecDeque<(Instant, u32)> = Default::default();
    // Past the flow, past the lag, until the metric has caught up.
    while burst_at.elapsed() < LAG + Duration::from_secs(8) {
        let now = Instant::now();
        let nodes = rig.sim.cluster(CLUSTER).map_or(2, |c| c.task_nodes);
        seen.push_back((now, nodes));
        let lagged = seen
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= LAG)
            .map_or(2, |(_, n)| *n);
        let pending = (3.0 - f64::from(lagged.saturating_sub(2))).max(0.0) * PER_NODE;
        rig.prom.set(Q, Answer::Value(pending));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 5),
        "the burst was served"
    );
    assert_eq!(
        rig.orders(),
        [3],
        "one order for one burst; log:\n{}",
        rig.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_dir_refuses() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    rig.start();
    ready(&rig).await;
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
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    rig.start();
    ready(&rig).await;
    std::fs::write(
        rig.config_path(),
        "[daemon]\nevaluation_interval = \"soon\"\n",
    )
    .unwrap();
    rig.signal("-HUP");
    let mut text = String::new();
    eventually(Duration::from_secs(10), "config_reload_success 0", || {
        text = futures_block(rig.get("/metrics")).1;
        metric(&text, "emr_autoscaler_config_reload_success") == Some(0.0)
    })
    .await;
    assert!(rig.log().contains("Reload refused"), "{}", rig.log());
    // Still evaluating under the old configuration.
    let before = futures_block(rig.get("/api/v1/status")).1;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = futures_block(rig.get("/api/v1/status")).1;
    assert_ne!(before, after, "evaluations continue");
    // A valid change takes effect.
    rig.write_config("dry_run = true", &threshold(1, "0s"));
    rig.signal("-HUP");
    eventually(Duration::from_secs(10), "config_reload_success 1", || {
        metric(
            &futures_block(rig.get("/metrics")).1,
            "emr_autoscaler_config_reload_success",
        ) == Some(1.0)
    })
    .await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "a dry-run decision", || {
        futures_block(rig.get("/api/v1/status"))
            .1
            .contains("\"outcome\":\"dry_run\"")
    })
    .await;
    assert!(rig.orders().is_empty(), "dry-run sends nothing");
    rig.signal("-TERM");
    assert_eq!(rig.wait_exit(Duration::from_secs(10)).await, Some(0));
}

/// Runs a future to completion from sync code inside the multi-thread runtime.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_request_ends_cleanly() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(2, "0s"));
    rig.sim.inject(
        SCALE_OUT,
        Some(CLUSTER),
        Fault::Delay(Duration::from_secs(2)),
    );
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "the send to start", || {
        rig.log().contains("Sending ScaleOutInstance")
    })
    .await;
    let stop = Instant::now();
    rig.signal("-TERM");
    assert_eq!(
        rig.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "log:\n{}",
        rig.log()
    );
    println!("stopped {:.2?} after SIGTERM mid-request", stop.elapsed());
    let state = std::fs::read_to_string(rig.dir.path().join("state/state.json")).unwrap();
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
    let mut rig = Rig::new(1, Duration::from_millis(500)).await;
    rig.write_config("", &threshold(1, "0s"));
    rig.start();
    ready(&rig).await;
    let base = format!("http://127.0.0.1:{}/api/v1/clusters", rig.port);
    assert_eq!(post(&format!("{base}/emr-zzzzzzzz/pause")).await, 404);
    assert_eq!(post(&format!("{base}/{CLUSTER}/pause")).await, 200);
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "a paused decision", || {
        futures_block(rig.get("/api/v1/status"))
            .1
            .contains("\"outcome\":\"paused\"")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(rig.orders().is_empty());
    let m = futures_block(rig.get("/metrics")).1;
    assert_eq!(
        metric(
            &m,
            &format!("emr_autoscaler_paused{{cluster=\"{CLUSTER}\"}}")
        ),
        Some(1.0)
    );
    assert_eq!(post(&format!("{base}/{CLUSTER}/resume")).await, 200);
    eventually(Duration::from_secs(10), "an order after resume", || {
        !rig.orders().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_messages_arrive_on_the_socket() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let sock_path = rig.dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut cmd = rig.command();
    cmd.env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000");
    rig.launch(cmd);
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
    rig.signal("-HUP");
    let seen = tokio::task::block_in_place(|| recv_until("RELOADING=1"));
    assert!(seen.last().unwrap().contains("MONOTONIC_USEC="), "{seen:?}");
    tokio::task::block_in_place(|| recv_until("READY=1"));
    rig.signal("-TERM");
    tokio::task::block_in_place(|| recv_until("STOPPING=1"));
    assert_eq!(rig.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_contract_and_pass_promtool() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Empty);
    eventually(Duration::from_secs(10), "a query error", || {
        metric(
            &futures_block(rig.get("/metrics")).1,
            &format!("emr_autoscaler_metric_query_errors_total{{cluster=\"{CLUSTER}\",kind=\"empty\",rule=\"pending\"}}"),
        )
        .is_some_and(|v| v >= 1.0)
    })
    .await;
    let (code, ready_body) = rig.get("/readyz").await;
    assert_eq!(code, 503, "{ready_body}");
    assert!(ready_body.contains("pending"), "{ready_body}");
    let (_, text) = rig.get("/metrics").await;
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
    eventually(Duration::from_secs(10), "/readyz 200", || {
        futures_block(rig.get("/readyz")).0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_orders_count_in_the_daemons_cooldown_and_budget() {
    let mut rig = Rig::new(1, Duration::from_millis(300)).await;
    rig.write_config(
        "cooldown = \"1h\"\nmax_nodes_per_hour = 10",
        &threshold(1, "0s"),
    );
    rig.start();
    ready(&rig).await;
    let out = Command::new(BIN)
        .args([
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
        .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        Duration::from_secs(10),
        "the manual order in the status",
        || {
            let v: serde_json::Value =
                serde_json::from_str(&futures_block(rig.get("/api/v1/status")).1)
                    .unwrap_or_default();
            v["clusters"][0]["budget"]["hour_used"] == 4
                && v["clusters"][0]["cooldown_until"].is_string()
        },
    )
    .await;
    // A breach now is held by the cooldown the manual order started.
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(10), "a cooldown decision", || {
        futures_block(rig.get("/api/v1/status"))
            .1
            .contains("\"outcome\":\"cooldown\"")
    })
    .await;
    assert_eq!(rig.orders(), vec![4], "only the manual order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_stops_startup_unless_reset() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let state_dir = rig.dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    std::fs::write(
        state_dir.join("state.json"),
        "{\"schema_version\": 2, \"clusters\": {\"emr-abc",
    )
    .unwrap();
    let out = rig.command().stderr(Stdio::piped()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state.json") && err.contains("--reset-state"),
        "{err}"
    );
    let mut cmd = rig.command();
    cmd.arg("--reset-state");
    rig.launch(cmd);
    ready(&rig).await;
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
    let mut rig = Rig::new(1, Duration::from_millis(500)).await;
    rig.write_config("cooldown = \"0s\"", &threshold(2, "0s"));
    let text = std::fs::read_to_string(rig.config_path())
        .unwrap()
        // The shortest flow_timeout `check` accepts.
        .replace("flow_timeout = \"60s\"", "flow_timeout = \"1m\"");
    std::fs::write(rig.config_path(), text).unwrap();
    rig.sim.inject(SCALE_OUT, Some(CLUSTER), Fault::FailFlow);
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(15), "flows_failed_total 1", || {
        metric(
            &futures_block(rig.get("/metrics")).1,
            &format!("emr_autoscaler_flows_failed_total{{cluster=\"{CLUSTER}\"}}"),
        ) == Some(1.0)
    })
    .await;
    // The failed flow added nothing; the next order is a new one, and this
    // time its flow hangs past flow_timeout.
    rig.sim
        .set_flow_duration(CLUSTER, Some(Duration::from_secs(600)));
    eventually(Duration::from_secs(100), "the breaker", || {
        metric(
            &futures_block(rig.get("/metrics")).1,
            &format!("emr_autoscaler_breaker_open{{cluster=\"{CLUSTER}\"}}"),
        ) == Some(1.0)
    })
    .await;
    let n = rig.orders().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.orders().len(), n, "no orders while the breaker is open");
    assert!(
        futures_block(rig.get("/api/v1/status"))
            .1
            .contains("\"outcome\":\"breaker\"")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_with_a_token_file_needs_the_bearer_token() {
    let mut rig = Rig::new(1, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(1, "1m"));
    let token_file = rig.dir.path().join("admin-token");
    let text = std::fs::read_to_string(rig.config_path()).unwrap().replace(
        "flow_timeout = \"60s\"",
        &format!(
            "flow_timeout = \"60s\"\nadmin_token_file = \"{}\"",
            token_file.display()
        ),
    );
    std::fs::write(rig.config_path(), text).unwrap();
    rig.start();
    ready(&rig).await;
    let url = format!(
        "http://127.0.0.1:{}/api/v1/clusters/{CLUSTER}/pause",
        rig.port
    );
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
    let (_, status) = rig.get("/api/v1/status").await;
    assert!(status.contains("\"paused\":true"), "{status}");
    assert!(
        !rig.log().contains("s3cret-admin"),
        "the token is never logged"
    );
}

// ---- Scale-in and Tencent's own auto-scaling, with the real binary. ----

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
    let mut rig = Rig::new(2, Duration::from_secs(2)).await;
    rig.write_config(&shrinking(6, "5s", 5), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.5));
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "six task nodes", || {
        rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 6)
    })
    .await;
    let before = rig.sim.nodes(CLUSTER).unwrap();
    assert_eq!(before.iter().filter(|n| tagged(n)).count(), 4, "{before:?}");
    // The burst is over and the cluster idles.
    rig.prom.set(Q, Answer::Value(0.0));
    rig.prom.set(U, Answer::Value(0.1));
    eventually(Duration::from_secs(30), "a graceful removal", || {
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
    eventually(Duration::from_secs(90), "the removal to end", || {
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
    eventually(Duration::from_secs(10), "the operation to close", || {
        emr_autoscaler::state::read_only(&rig.dir.path().join("state"))
            .is_ok_and(|s| s.cluster(CLUSTER).is_some_and(|c| c.operation.is_none()))
    })
    .await;
    let (_, metrics) = rig.get("/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            &format!("emr_autoscaler_nodes_removed_total{{cluster=\"{CLUSTER}\"}}")
        ),
        Some(4.0)
    );
    let decided = metrics
        .lines()
        .filter(|l| {
            l.starts_with("emr_autoscaler_decisions_total")
                && l.contains("outcome=\"scale_in\"")
                && l.contains("rule=\"util\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(decided >= 1.0, "{metrics}");
    assert_eq!(rig.orders(), vec![4], "no scale-out while shrinking");
}

/// A burst inside the stabilization window cancels the scale-in: nothing is
/// removed until a full window without it has been observed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_during_the_stabilization_window_cancels_the_scale_in() {
    let mut rig = Rig::new(2, Duration::from_secs(1)).await;
    rig.write_config(&shrinking(6, "8s", 5), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.5));
    rig.start();
    ready(&rig).await;
    rig.prom.set(Q, Answer::Value(500.0));
    eventually(Duration::from_secs(20), "six task nodes", || {
        rig.sim.cluster(CLUSTER).is_some_and(|c| c.task_nodes == 6)
    })
    .await;
    rig.prom.set(Q, Answer::Value(0.0));
    rig.prom.set(U, Answer::Value(0.1));
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A burst: the pending rule votes to add (capped at max_task_nodes).
    rig.prom.set(Q, Answer::Value(500.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    rig.prom.set(Q, Answer::Value(0.0));
    let burst_end = Instant::now();
    while burst_end.elapsed() < Duration::from_secs(6) {
        assert!(
            rig.sim.ledger().terminations(CLUSTER).is_empty(),
            "removed {:?} after the burst, inside the window",
            burst_end.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eventually(
        Duration::from_secs(20),
        "the removal, one window later",
        || !rig.sim.ledger().terminations(CLUSTER).is_empty(),
    )
    .await;
    assert!(burst_end.elapsed() >= Duration::from_secs(6));
    assert_eq!(rig.orders(), vec![4], "the capped burst ordered nothing");
}

/// With nodes = "ours", a cluster whose task nodes all came from elsewhere
/// is never shrunk, and the status says why each node was passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nodes_ours_foreign_nodes_are_never_removed() {
    let mut rig = Rig::new(8, Duration::from_secs(1)).await;
    rig.write_config(&shrinking(10, "2s", 5), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.05));
    rig.start();
    ready(&rig).await;
    eventually(
        Duration::from_secs(20),
        "a scale-in decision and its node choice",
        || {
            let (_, body) = futures_block(rig.get("/api/v1/status"));
            body.contains("last_selection") && body.contains("tags unknown")
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        rig.sim.ledger().for_action(TERMINATE).next().is_none(),
        "a foreign node was named"
    );
    assert_eq!(rig.sim.cluster(CLUSTER).unwrap().task_nodes, 8);
}

/// An enabled strategy of Tencent's own auto-scaling holds the cluster with
/// outcome `conflict` (readiness names it) from the first decision, and
/// within one check when it is switched on while the daemon runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_builtin_strategy_holds_the_cluster_with_conflict() {
    use emr_autoscaler::sim::BuiltinStrategy;
    let mut rig = Rig::new(2, Duration::from_secs(1)).await;
    rig.write_config("", &threshold(2, "0s"));
    rig.sim
        .set_builtin_strategy(CLUSTER, BuiltinStrategy::load(7, "cpu-high").in_group(3));
    rig.prom.set(Q, Answer::Value(500.0));
    let mut cmd = rig.command();
    cmd.env("EMR_AUTOSCALER_TEST_BUILTIN_EVERY", "1s");
    rig.launch(cmd);
    ready(&rig).await;
    eventually(Duration::from_secs(10), "/readyz 503 conflict", || {
        let (code, body) = futures_block(rig.get("/readyz"));
        code == 503 && body.contains("conflict") && body.contains("load:cpu-high")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        rig.orders().is_empty(),
        "ordered next to an enabled strategy"
    );
    let (_, metrics) = rig.get("/metrics").await;
    let conflicts = metrics
        .lines()
        .find(|l| {
            l.starts_with("emr_autoscaler_decisions_total")
                && l.contains("rule=\"pending\"")
                && l.contains("outcome=\"conflict\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(conflicts.is_some_and(|v| v >= 1.0), "{conflicts:?}");
    // Switched off: the next check lets the order through.
    rig.sim.clear_builtin(CLUSTER);
    eventually(
        Duration::from_secs(10),
        "the order once the strategy is off",
        || rig.orders().len() == 1,
    )
    .await;
    // Switched on again while running: held within one check.
    rig.sim
        .set_builtin_strategy(CLUSTER, BuiltinStrategy::time(9, "nightly"));
    eventually(Duration::from_secs(5), "conflict again", || {
        let (code, body) = futures_block(rig.get("/readyz"));
        code == 503 && body.contains("time:nightly")
    })
    .await;
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
    let mut rig = Rig::with_cluster(cluster, Duration::from_secs(1)).await;
    rig.write_config(&shrinking(60, "1s", 3), &grow_and_shrink_rules());
    rig.prom.set(U, Answer::Value(0.05));
    let mut rng = fastrand::Rng::with_seed(20261202);
    for trial in 0..20 {
        // Each removal drains for 2 s instead of its 60 s grace period.
        rig.sim.inject(
            TERMINATE,
            Some(CLUSTER),
            Fault::SlowFlow(Duration::from_secs(2)),
        );
        if trial % 4 == 1 {
            // A lost answer: the removal executes, the daemon never hears.
            rig.sim
                .inject(TERMINATE, Some(CLUSTER), Fault::DropAfterExecute);
        }
        rig.start();
        tokio::time::sleep(Duration::from_millis(rng.u64(300..4000))).await;
        rig.signal("-KILL");
        let _ = rig.wait_exit(Duration::from_secs(5)).await;
        let nodes = rig.sim.cluster(CLUSTER).unwrap().task_nodes;
        assert!(nodes >= 2, "trial {trial}: below the floor ({nodes})");
    }
    // A last daemon settles whatever was left open.
    rig.start();
    eventually(Duration::from_secs(30), "no open operation", || {
        emr_autoscaler::state::read_only(&rig.dir.path().join("state"))
            .is_ok_and(|s| s.cluster(CLUSTER).is_some_and(|c| c.operation.is_none()))
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
        "20 kill -9 trials: {} removals executed, {} nodes removed, {} TerminateClusterNodes requests",
        named.len(),
        named.iter().map(Vec::len).sum::<usize>(),
        ledger.for_action(TERMINATE).count()
    );
}
