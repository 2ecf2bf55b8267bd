//! End to end with a real Prometheus: a loopback exporter serves synthetic
//! YARN metrics, Debian's Prometheus scrapes it, the real `emr-autoscaler run`
//! queries Prometheus and orders from the simulator. Every scenario asserts on
//! the simulator's ledger and on `/metrics`.
//!
//! Randomness is seeded and the seed printed. The tests run in parallel; each
//! owns its Prometheus, exporter, simulator and daemon.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::daemon_proc::BIN;
use crate::support::daemon_proc::{Daemon, eventually};
use crate::support::real_prom::{Exporter, RealProm};
use emr_autoscaler::clock::{SharedClock, SystemClock};
use emr_autoscaler::sim::{Fault, SimCluster, SimConfig, SimHandle, Simulator};

const SCALE_OUT: &str = "ScaleOutInstance";

fn q(cluster: &str) -> String {
    format!("sum(yarn_pending_memory_mb{{cluster=\"{cluster}\"}})")
}

struct World {
    exporter: Exporter,
    prom: RealProm,
    sim: SimHandle,
    dir: tempfile::TempDir,
}

impl World {
    async fn new(
        clusters: &[&str],
        flow: Duration,
        sim_extra: impl FnOnce(&mut SimConfig),
    ) -> World {
        let exporter = Exporter::start().await;
        for c in clusters {
            exporter.set(c, Some(0.0));
        }
        let prom = RealProm::start(exporter.addr.unwrap());
        let clock: SharedClock = Arc::new(SystemClock);
        let mut cfg = SimConfig {
            clusters: clusters
                .iter()
                .map(|c| SimCluster::new(*c).with_task_nodes(2))
                .collect(),
            flow_duration: flow,
            ..SimConfig::default()
        };
        sim_extra(&mut cfg);
        let sim = Simulator::start(cfg, clock).await.unwrap();
        prom.wait_for(&q(clusters[0]), Duration::from_secs(30))
            .await;
        World {
            exporter,
            prom,
            sim,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a config for `clusters` with `cluster_extra` and a threshold rule.
    fn config(
        &self,
        name: &str,
        clusters: &[&str],
        cluster_extra: &str,
        rule_extra: &str,
    ) -> std::path::PathBuf {
        let mut text = format!(
            r#"
[daemon]
evaluation_interval = "1s"
listen = "127.0.0.1:0"
state_dir = "{state}"
[prometheus]
url = "{prom}"
timeout = "1s"
[tencent]
region = "ap-guangzhou"
endpoint = "{sim}"
metadata_url = "http://127.0.0.1:9"
max_attempts = 3
"#,
            state = self.dir.path().join(format!("state-{name}")).display(),
            prom = self.prom.url(),
            sim = self.sim.endpoint(),
        );
        let add = if rule_extra.contains("add =") {
            ""
        } else {
            "add = 2"
        };
        for c in clusters {
            text.push_str(&format!(
                r#"
[[clusters]]
instance_id = "{c}"
{cluster_extra}
[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600
[[clusters.rules]]
name = "pending"
type = "threshold"
query = '{query}'
above = 1000
{add}
unit = "mb"
{rule_extra}
"#,
                query = q(c)
            ));
        }
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    fn daemon(&self, name: &str, config: &std::path::Path) -> Daemon {
        Daemon::start(
            config,
            &self.dir.path().join(format!("{name}.log")),
            self.dir.path(),
        )
    }

    fn orders(&self, cluster: &str) -> Vec<u64> {
        self.sim
            .ledger()
            .for_action(SCALE_OUT)
            .filter(|e| e.params["InstanceId"] == cluster && e.started_flow().is_some())
            .map(|e| e.params["TaskCount"].as_u64().unwrap_or(0))
            .collect()
    }
}

/// Scenarios 1 and 2: a dip before the sustain window ends does nothing; a
/// sustained rise orders, cooldown holds, it orders again, and stops at max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_rises_cools_down_scales_again_and_stops_at_max() {
    const C: &str = "emr-e2e00001";
    let w = World::new(&[C], Duration::from_millis(500), |_| {}).await;
    let cfg = w.config(
        "rise",
        &[C],
        "max_task_nodes = 7\ncooldown = \"4s\"",
        "for = \"4s\"",
    );
    let d = w.daemon("rise", &cfg);
    d.wait_healthy(Duration::from_secs(20)).await;
    // A 2-second spike: shorter than `for`, so nothing happens.
    w.exporter.set(C, Some(50_000.0));
    tokio::time::sleep(Duration::from_secs(2)).await;
    w.exporter.set(C, Some(0.0));
    // Six evaluations after the spike: past the scrape, the spike and `for`.
    d.wait_decisions(6.0).await;
    assert!(
        w.orders(C).is_empty(),
        "a short spike ordered; log:\n{}",
        d.log_text()
    );
    // Sustained demand.
    let visible = Instant::now();
    w.exporter.set(C, Some(50_000.0));
    eventually(Duration::from_secs(20), "the first order", || async {
        !w.orders(C).is_empty()
    })
    .await;
    println!(
        "scrape + for 4s + evaluation: first order {:.1?} after the exporter changed",
        visible.elapsed()
    );
    eventually(Duration::from_secs(25), "the second order", || async {
        w.orders(C).len() >= 2
    })
    .await;
    // The cooldown held: the simulator's own arrival times, so a slow poll
    // here cannot hide or fake it.
    let starts: Vec<_> = w
        .sim
        .ledger()
        .flow_starts()
        .into_iter()
        .filter(|f| f.instance_id == C)
        .map(|f| f.arrived_at)
        .collect();
    let apart = (starts[1] - starts[0]).to_std().unwrap();
    assert!(
        apart >= Duration::from_secs(4),
        "the second order came {apart:?} after the first, inside the 4 s cooldown"
    );
    eventually(Duration::from_secs(30), "max reached", || async {
        w.sim
            .cluster(C)
            .is_some_and(|c| c.task_nodes == 7 && c.current_flow.is_none())
    })
    .await;
    // Five evaluations at max: a fourth order would be out by now.
    d.wait_decisions(5.0).await;
    assert_eq!(
        w.orders(C),
        vec![2, 2, 1],
        "stops at max_task_nodes 7 from 2"
    );
    let capped = d
        .metric(&format!(
            "emr_autoscaler_decisions_total{{cluster=\"{C}\",outcome=\"capped\",rule=\"pending\"}}"
        ))
        .await;
    assert!(
        capped.is_some_and(|v| v >= 1.0),
        "capped decisions are counted: {capped:?}"
    );
    assert_eq!(
        d.metric(&format!(
            "emr_autoscaler_nodes_requested_total{{cluster=\"{C}\",offering=\"default\"}}"
        ))
        .await,
        Some(5.0)
    );
}

/// Scenario 3: a stalled Prometheus, then NaN, then an empty series: no action,
/// the query-error metric and /readyz show it, and the daemon resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_data_never_acts_and_the_daemon_resumes() {
    const C: &str = "emr-e2e00002";
    let w = World::new(&[C], Duration::from_millis(500), |_| {}).await;
    let cfg = w.config(
        "stall",
        &[C],
        "max_task_nodes = 20\ncooldown = \"1h\"",
        "for = \"3s\"",
    );
    let d = w.daemon("stall", &cfg);
    d.wait_healthy(Duration::from_secs(20)).await;
    eventually(Duration::from_secs(15), "ready", || async {
        d.get("/readyz").await.0 == 200
    })
    .await;
    let errors = |kind: &'static str| {
        let d = &d;
        async move {
            d.metric(&format!(
                "emr_autoscaler_metric_query_errors_total{{cluster=\"{C}\",kind=\"{kind}\",rule=\"pending\"}}"
            ))
            .await
            .unwrap_or(0.0)
        }
    };
    // Stall: SIGSTOP. Queries time out; demand behind it is high but unseen.
    w.exporter.set(C, Some(50_000.0));
    w.prom.signal("-STOP");
    eventually(Duration::from_secs(15), "query errors", || async {
        errors("error").await >= 2.0
    })
    .await;
    let (code, body) = d.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("pending"), "{body}");
    assert!(w.orders(C).is_empty(), "no action on a stalled Prometheus");
    // NaN.
    w.exporter.set(C, Some(f64::NAN));
    w.prom.signal("-CONT");
    eventually(Duration::from_secs(20), "a nan observation", || async {
        errors("nan").await >= 2.0
    })
    .await;
    assert!(w.orders(C).is_empty(), "NaN never counts as a number");
    // The series disappears.
    w.exporter.set(C, None);
    eventually(Duration::from_secs(20), "an empty observation", || async {
        errors("empty").await >= 2.0
    })
    .await;
    assert!(
        w.orders(C).is_empty(),
        "an empty result never counts as a number"
    );
    // Data returns: the daemon acts again.
    w.exporter.set(C, Some(50_000.0));
    eventually(
        Duration::from_secs(25),
        "an order once data returns",
        || async { w.orders(C).len() == 1 },
    )
    .await;
    eventually(Duration::from_secs(10), "ready again", || async {
        d.get("/readyz").await.0 == 200
    })
    .await;
}

/// Scenarios 4 and 5: a lost answer, throttling, a cluster in another flow,
/// sold out and a failed flow, each with its deliberate behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_and_error_classes_against_real_prometheus() {
    const LOST: &str = "emr-e2e00003";
    const THROTTLED: &str = "emr-e2e00004";
    const SOLD: &str = "emr-e2e00005";
    const FAILED: &str = "emr-e2e00006";
    const BUSY: &str = "emr-e2e00007";
    let all = [LOST, THROTTLED, SOLD, FAILED, BUSY];
    let w = World::new(&all, Duration::from_millis(800), |_| {}).await;
    w.sim.inject(SCALE_OUT, Some(LOST), Fault::DropAfterExecute);
    w.sim.inject(
        SCALE_OUT,
        Some(THROTTLED),
        Fault::ApiError("RequestLimitExceeded".into()),
    );
    w.sim.inject(
        SCALE_OUT,
        Some(SOLD),
        Fault::ApiError("ResourcesSoldOut.CvmSoldOut".into()),
    );
    w.sim.inject(SCALE_OUT, Some(FAILED), Fault::FailFlow);
    w.sim.inject(
        SCALE_OUT,
        Some(BUSY),
        Fault::ApiError("ResourceInUse.InstanceInProcess".into()),
    );
    let cfg = w.config(
        "classes",
        &all,
        "max_task_nodes = 20\ncooldown = \"1h\"",
        "for = \"0s\"",
    );
    let d = w.daemon("classes", &cfg);
    d.wait_healthy(Duration::from_secs(20)).await;
    for c in all {
        w.exporter.set(c, Some(50_000.0));
    }
    eventually(
        Duration::from_secs(30),
        "orders on every cluster that can take one",
        || async {
            [LOST, THROTTLED, FAILED, BUSY]
                .iter()
                .all(|c| !w.orders(c).is_empty())
        },
    )
    .await;
    let ledger = w.sim.ledger();
    // Lost answer: retried under the same token, exactly one flow.
    assert_eq!(ledger.flows_started(LOST), 1);
    let tokens: std::collections::BTreeSet<_> = ledger
        .for_action(SCALE_OUT)
        .filter(|e| e.params["InstanceId"] == LOST)
        .map(|e| e.client_token.clone())
        .collect();
    assert_eq!(tokens.len(), 1, "the retry carried the same token");
    // Throttled: retried with backoff, one flow.
    assert_eq!(ledger.flows_started(THROTTLED), 1);
    assert_eq!(ledger.count_code(SCALE_OUT, "RequestLimitExceeded"), 1);
    // Busy: dropped, decided again later with a new token (the cluster was free).
    assert_eq!(ledger.flows_started(BUSY), 1);
    // Sold out: no flow, a long backoff, the alert metric.
    assert_eq!(ledger.flows_started(SOLD), 0);
    eventually(Duration::from_secs(10), "sold_out_total", || async {
        d.metric(&format!(
            "emr_autoscaler_sold_out_total{{cluster=\"{SOLD}\"}}"
        ))
        .await
            == Some(1.0)
    })
    .await;
    // Three evaluations of every cluster, all inside the sold-out backoff.
    d.wait_decisions(3.0 * all.len() as f64).await;
    assert_eq!(
        w.sim
            .ledger()
            .count_code(SCALE_OUT, "ResourcesSoldOut.CvmSoldOut"),
        1,
        "sold out backs off"
    );
    // Failed flow: nodes released, alert metric.
    eventually(Duration::from_secs(10), "flows_failed_total", || async {
        d.metric(&format!(
            "emr_autoscaler_flows_failed_total{{cluster=\"{FAILED}\"}}"
        ))
        .await
            == Some(1.0)
    })
    .await;
    assert!(w.sim.ledger().tokens_with_several_flows().is_empty());
    let throttled = d
        .metric(
            "emr_autoscaler_api_requests_total{action=\"ScaleOutInstance\",result=\"throttled\"}",
        )
        .await;
    assert_eq!(throttled, Some(1.0));
    let log = d.log_text();
    assert!(
        log.contains("ResourcesSoldOut.CvmSoldOut") && log.contains("Scale-out flow failed"),
        "{log}"
    );
}

/// Scenario 6: kill -9 at seeded random points during actuation, then a
/// restart; the ledger never shows a duplicate order and the state stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_never_orders_twice() {
    const TRIALS: usize = 20;
    let seed = std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261128u64);
    println!("kill -9 trials: {TRIALS}, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let names: Vec<String> = (0..TRIALS).map(|i| format!("emr-kill{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = World::new(&refs, Duration::from_millis(600), |_| {}).await;
    for (i, c) in refs.iter().enumerate() {
        let cfg = w.config(
            c,
            &[c],
            "max_task_nodes = 30\ncooldown = \"1h\"",
            "for = \"0s\"\nadd = 25",
        );
        if rng.bool() {
            // Widen the window between execution and acknowledgement.
            w.sim.inject(SCALE_OUT, Some(c), Fault::DropAfterExecute);
        }
        let mut d = w.daemon(c, &cfg);
        d.wait_healthy(Duration::from_secs(20)).await;
        w.exporter.set(c, Some(50_000.0));
        // Wait for the first request, then kill at a random point up to 1.5 s later.
        eventually(Duration::from_secs(20), "a request", || async {
            w.sim
                .ledger()
                .for_action(SCALE_OUT)
                .any(|e| e.params["InstanceId"] == *c)
        })
        .await;
        let delay = Duration::from_millis(rng.u64(0..1500));
        tokio::time::sleep(delay).await;
        d.kill9();
        let state_file = w.dir.path().join(format!("state-{c}")).join("state.json");
        assert!(
            emr_autoscaler::state::read_only(state_file.parent().unwrap()).is_ok(),
            "trial {i}: state readable after kill -9"
        );
        d.spawn(w.dir.path());
        // 25 nodes = chunks of 20 and 5; wait until both are done.
        eventually(
            Duration::from_secs(40),
            "the operation to finish",
            || async {
                w.sim
                    .cluster(c)
                    .is_some_and(|s| s.task_nodes == 27 && s.current_flow.is_none())
            },
        )
        .await;
        let ledger = w.sim.ledger();
        assert_eq!(
            ledger.flows_started(c),
            2,
            "trial {i} (kill after {delay:?}): one flow per chunk"
        );
        assert_eq!(
            ledger.nodes_ordered(c),
            25,
            "trial {i}: exactly the ordered nodes"
        );
        d.kill9();
        w.exporter.set(c, Some(0.0));
    }
    assert!(w.sim.ledger().tokens_with_several_flows().is_empty());
}

/// Scenario 8: 200 clusters breach at once: at most 20 ScaleOutInstance in any
/// 1-second window at the simulator, and every cluster is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clusters_breach_at_once() {
    let names: Vec<String> = (0..200).map(|i| format!("emr-many{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = World::new(&refs, Duration::from_secs(30), |_| {}).await;
    let cfg = w.config(
        "many",
        &refs,
        "max_task_nodes = 10\ncooldown = \"1h\"",
        "for = \"0s\"",
    );
    let d = w.daemon("many", &cfg);
    d.wait_healthy(Duration::from_secs(30)).await;
    for c in &refs {
        w.exporter.set(c, Some(50_000.0));
    }
    eventually(Duration::from_secs(60), "every cluster served", || async {
        w.sim.ledger().flow_starts().len() >= 200
    })
    .await;
    let ledger = w.sim.ledger();
    let max = ledger.max_in_any_window(SCALE_OUT, Duration::from_secs(1));
    let times: Vec<Duration> = ledger
        .for_action(SCALE_OUT)
        .map(|e| e.since_start)
        .collect();
    let span = *times.last().unwrap() - times[0];
    println!(
        "200 clusters: {} ScaleOutInstance, max {max} in any 1 s window, {:.2} req/s over {:.2} s",
        times.len(),
        (times.len() - 1) as f64 / span.as_secs_f64(),
        span.as_secs_f64()
    );
    assert!(max <= 20, "{max} requests in one second");
    assert_eq!(ledger.count_code(SCALE_OUT, "RequestLimitExceeded"), 0);
    for c in &refs {
        assert_eq!(ledger.flows_started(c), 1, "{c} served once");
    }
    assert!(d.log_text().lines().all(|l| !l.contains("panicked")));
}

/// Scenario 9: a soak with seeded random faults of every class and moving
/// demand. Invariants: no duplicate order, no window over the limit, no count
/// above max, no panic. Prints fault counts and RSS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_random_faults() {
    let seed = std::env::var("E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7u64);
    let soak = Duration::from_secs(
        std::env::var("E2E_SOAK_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(90),
    );
    println!("soak: {soak:?}, seed {seed}");
    let names: Vec<String> = (0..8).map(|i| format!("emr-soak{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = World::new(&refs, Duration::from_millis(1500), |c| {
        c.fault_seed = Some(seed);
        c.fault_probability = 0.15;
    })
    .await;
    let cfg = w.config(
        "soak",
        &refs,
        "max_task_nodes = 12\ncooldown = \"2s\"",
        "for = \"1s\"",
    );
    let d = w.daemon("soak", &cfg);
    d.wait_healthy(Duration::from_secs(20)).await;
    let rss_start = d.rss_kib();
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = Instant::now();
    while start.elapsed() < soak {
        for c in &refs {
            let v = if rng.f64() < 0.5 { 50_000.0 } else { 0.0 };
            w.exporter.set(c, Some(v));
        }
        for c in &refs {
            let n = w.sim.cluster(c).map_or(0, |s| s.task_nodes);
            assert!(n <= 12, "{c} has {n} task nodes, above max 12");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let rss_end = d.rss_kib();
    let ledger = w.sim.ledger();
    let mut faults: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for e in ledger.entries() {
        if let Some(f) = &e.fault {
            let kind = format!("{f:?}");
            let kind = kind.split(['(', ' ']).next().unwrap_or("?").to_string();
            *faults.entry(kind).or_default() += 1;
        }
    }
    println!("soak faults by kind: {faults:?}");
    println!(
        "soak: {} requests, {} flows; RSS start {rss_start} KiB, end {rss_end} KiB",
        ledger.len(),
        ledger.flow_starts().len()
    );
    assert!(
        ledger.tokens_with_several_flows().is_empty(),
        "no duplicate order"
    );
    assert!(ledger.max_in_any_window(SCALE_OUT, Duration::from_secs(1)) <= 20);
    for c in &refs {
        let n = w.sim.cluster(c).map_or(0, |s| s.task_nodes);
        assert!(n <= 12, "{c}: {n} above max");
    }
    assert!(!faults.is_empty(), "the soak injected faults");
    assert!(!d.log_text().contains("panicked"), "no panic");
    assert_eq!(
        d.get("/healthz").await.0,
        200,
        "still healthy after the soak"
    );
}

/// One limit per account: the daemon serves 40 breaching clusters while 10
/// manual `scale-out` commands run at once on 10 other clusters. The
/// commands go through the daemon (state_dir/admin.addr), so one limiter
/// serves all 50 orders and no second at the server holds more than 20.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_and_ten_manual_orders_share_one_limit() {
    let names: Vec<String> = (0..50).map(|i| format!("emr-acct{i:04}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = World::new(&refs, Duration::from_secs(30), |_| {}).await;
    let cfg = w.config(
        "account",
        &refs,
        "max_task_nodes = 10\ncooldown = \"1h\"",
        "for = \"0s\"",
    );
    let d = w.daemon("account", &cfg);
    d.wait_healthy(Duration::from_secs(30)).await;
    for c in &refs[..40] {
        w.exporter.set(c, Some(50_000.0));
    }
    // The manual orders start while the daemon's own burst is under way.
    eventually(
        Duration::from_secs(30),
        "the daemon's first orders",
        || async { !w.sim.ledger().flow_starts().is_empty() },
    )
    .await;
    let manual: Vec<_> = refs[40..]
        .iter()
        .map(|c| {
            std::process::Command::new(BIN)
                .args(["scale-out", "--config", cfg.to_str().unwrap()])
                .args(["--instance-id", c, "--task-count", "1"])
                .env_clear()
                .env("HOME", w.dir.path())
                .env(
                    "TENCENTCLOUD_SECRET_ID",
                    emr_autoscaler::sim::DEFAULT_SECRET_ID,
                )
                .env(
                    "TENCENTCLOUD_SECRET_KEY",
                    emr_autoscaler::sim::DEFAULT_SECRET_KEY,
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in manual {
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "manual order failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(v["FlowId"].is_number(), "{v}");
    }
    eventually(Duration::from_secs(60), "all 50 orders served", || async {
        w.sim.ledger().flow_starts().len() >= 50
    })
    .await;
    let ledger = w.sim.ledger();
    let max = ledger.max_in_any_window(SCALE_OUT, Duration::from_secs(1));
    println!(
        "daemon + 10 manual: {} ScaleOutInstance, max {max} in any 1 s window",
        ledger.for_action(SCALE_OUT).count()
    );
    assert!(max <= 20, "{max} requests in one second");
    assert_eq!(ledger.count_code(SCALE_OUT, "RequestLimitExceeded"), 0);
    for c in &refs {
        assert_eq!(ledger.flows_started(c), 1, "{c} served once");
    }
    assert!(
        d.log_text().contains("Manual scale-out asked."),
        "the manual orders went through the daemon"
    );
}

/// One owner per cluster: 40 SIGHUPs, each changing `[tencent]` and the
/// rules, while every cluster's flow is running. A reload stops and joins
/// the old owner before its successor starts, and the limiter outlives it:
/// exactly one order per cluster, none over the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_reloads_with_flows_in_progress_order_once_per_cluster() {
    let names: Vec<String> = (0..10).map(|i| format!("emr-rld{i:05}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = World::new(&refs, Duration::from_secs(4), |_| {}).await;
    let write = |n: u32| {
        let cfg = w.config(
            "reload",
            &refs,
            "max_task_nodes = 10\ncooldown = \"1h\"",
            &format!("for = \"0s\"\ncooldown = \"{}s\"", 60 + n),
        );
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "max_attempts = 3",
            &format!(
                "max_attempts = {}\nrequests_per_second = {}",
                3 + n % 2,
                19 + n % 2
            ),
        );
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let cfg = write(0);
    let mut d = w.daemon("reload", &cfg);
    d.wait_healthy(Duration::from_secs(30)).await;
    for c in &refs {
        w.exporter.set(c, Some(50_000.0));
    }
    eventually(Duration::from_secs(30), "the first orders", || async {
        !w.sim.ledger().flow_starts().is_empty()
    })
    .await;
    // Each reload is sent once the previous one took effect (a signal sent
    // while one is pending may merge with it, as signals do), so all forty
    // land while flows run, at whatever point of an evaluation they come.
    for n in 1..=40 {
        write(n);
        d.signal("-HUP");
        eventually(
            Duration::from_secs(15),
            "the reload to take effect",
            || async { d.log_text().matches("Configuration reloaded.").count() >= n as usize },
        )
        .await;
    }
    eventually(Duration::from_secs(60), "every cluster served", || async {
        w.sim.ledger().flow_starts().len() >= 10
    })
    .await;
    // Six evaluations of every cluster, past every flow: a second order
    // would be out by now.
    d.wait_decisions(6.0 * refs.len() as f64).await;
    let ledger = w.sim.ledger();
    for c in &refs {
        assert_eq!(
            ledger.flows_started(c),
            1,
            "{c} ordered once; log:\n{}",
            d.log_text()
        );
    }
    assert!(ledger.tokens_with_several_flows().is_empty());
    assert!(ledger.max_in_any_window(SCALE_OUT, Duration::from_secs(1)) <= 20);
    assert_eq!(ledger.count_code(SCALE_OUT, "RequestLimitExceeded"), 0);
    let reloads = d.log_text().matches("Configuration reloaded.").count();
    assert_eq!(reloads, 40, "every reload took effect once");
    assert_eq!(d.get("/healthz").await.0, 200);
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(15)).await, Some(0));
}
