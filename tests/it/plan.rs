//! `plan` against live (loopback) Prometheus and EMR stand-ins: it judges
//! sustain windows from range data, prints the decision, and sends nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::support::daemon_proc::{BIN, eventually_or};
use crate::support::fake_prom::{Answer, FakeProm};
use emr_autoscaler::clock::{SharedClock, SystemClock};
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, SimCluster, SimConfig, Simulator,
};

fn config(dir: &std::path::Path, sim: &str, prom: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[daemon]
evaluation_interval = "15s"
state_dir = "{state}"
[prometheus]
url = "{prom}"
[tencent]
region = "ap-guangzhou"
endpoint = "{sim}"
metadata_url = "http://127.0.0.1:9"
[[clusters]]
instance_id = "emr-abc12345"
max_task_nodes = 40
[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600
[[clusters.rules]]
name = "pending-memory"
type = "threshold"
query = "sum(pending_mb)"
above = 8192
for = "1m"
add = 2
unit = "mb"
[[clusters.rules]]
name = "util"
type = "target"
query = "avg(util)"
target = 0.8
unit = "ratio"
"#,
            state = dir.join("state").display()
        ),
    )
    .unwrap();
    path
}

async fn run(args: Vec<String>, home: &std::path::Path) -> std::process::Output {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// `plan --config CFG --json`, parsed.
async fn plan_json(cfg: &std::path::Path, home: &std::path::Path) -> serde_json::Value {
    let out = run(
        vec![
            "plan".into(),
            "--config".into(),
            cfg.display().to_string(),
            "--json".into(),
        ],
        home,
    )
    .await;
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn plan_judges_for_windows_from_range_data_and_sends_nothing() {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(
        SimConfig {
            clusters: vec![SimCluster::new("emr-abc12345").with_task_nodes(10)],
            flow_duration: Duration::from_secs(60),
            ..SimConfig::default()
        },
        clock,
    )
    .await
    .unwrap();
    let prom = FakeProm::start().await;
    prom.set("sum(pending_mb)", Answer::Value(12.0 * 1024.0));
    prom.set("avg(util)", Answer::Value(0.5));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint(), &prom.url());
    let out = run(
        vec!["plan".into(), "--config".into(), cfg.display().to_string()],
        dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("emr-abc12345"), "{stdout}");
    assert!(
        stdout.contains("pending-memory 12 GiB > 8 GiB for 1m: +2"),
        "{stdout}"
    );
    assert!(stdout.contains("-> scale_out +2"), "{stdout}");
    // The VALUE column shows the rule's unit.
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("pending-memory") && l.contains("12 GiB") && l.ends_with("+2")),
        "{stdout}"
    );
    let v = plan_json(&cfg, dir.path()).await;
    assert_eq!(v["clusters"][0]["current"], 10);
    assert_eq!(v["clusters"][0]["increment"], 2);
    assert_eq!(v["clusters"][0]["rules"][1]["value"], 0.5);
    assert_eq!(
        sim.ledger().for_action("ScaleOutInstance").count(),
        0,
        "plan sends nothing"
    );
}

#[tokio::test]
async fn a_failing_query_exits_1_naming_the_rule() {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(SimConfig::with_clusters(["emr-abc12345"]), clock)
        .await
        .unwrap();
    let prom = FakeProm::start().await;
    prom.set("sum(pending_mb)", Answer::Value(1.0));
    prom.set("avg(util)", Answer::Down);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint(), &prom.url());
    let out = run(
        vec!["plan".into(), "--config".into(), cfg.display().to_string()],
        dir.path(),
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rule util"), "{stderr}");
}

/// With scale-in on, plan names the nodes a proposed removal would take and
/// why every other node is not taken, and sends no TerminateClusterNodes.
#[tokio::test]
async fn plan_shows_which_nodes_a_removal_would_take() {
    use emr_autoscaler::sim::SimNode;
    let clock: SharedClock = Arc::new(SystemClock);
    let ours = || SimNode::task().with_tag("managed-by", "emr-autoscaler");
    let sim = Simulator::start(
        SimConfig {
            clusters: vec![
                SimCluster::new("emr-abc12345")
                    .with_task_nodes(2)
                    .with_node(ours().with_order_no("ins-ours0001"))
                    .with_node(ours().with_order_no("ins-ours0002"))
                    .with_node(ours().with_order_no("ins-prot0003").protected()),
            ],
            ..SimConfig::default()
        },
        clock,
    )
    .await
    .unwrap();
    let prom = FakeProm::start().await;
    prom.set("sum(pending_mb)", Answer::Value(0.0));
    prom.set("avg(util)", Answer::Value(0.1));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint(), &prom.url());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[[clusters.rules]]\nname = \"pending-memory\"",
        "[clusters.scale_in]\nenabled = true\nowner_tag = { key = \"managed-by\", value = \"emr-autoscaler\" }\n[[clusters.rules]]\nname = \"pending-memory\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = run(
        vec!["plan".into(), "--config".into(), cfg.display().to_string()],
        dir.path(),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("scale-in: the rules propose -"), "{stdout}");
    assert!(stdout.contains("would remove: ins-ours000"), "{stdout}");
    assert!(
        stdout.contains("ins-prot0003: instance protection on"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tags unknown"),
        "the untagged nodes: {stdout}"
    );
    assert_eq!(sim.ledger().for_action("TerminateClusterNodes").count(), 0);
    assert_eq!(sim.ledger().for_action("ScaleOutInstance").count(), 0);
}

/// One state the daemon and `plan` both decide from.
enum Held {
    /// A removal of one named node is open.
    Removal,
    /// The cluster cooldown runs for another hour.
    Cooldown,
    /// The breaker is open.
    Breaker,
}

/// `plan --json` on `held`, then the daemon's first decision on the same
/// state: the outcome and the sentence are the same.
async fn plan_and_daemon_agree(held: Held, util: f64) -> (String, String) {
    use emr_autoscaler::sim::SimNode;
    use emr_autoscaler::state::{BreakerTrip, State};
    let clock: SharedClock = Arc::new(SystemClock);
    let ours = || SimNode::task().with_tag("managed-by", "emr-autoscaler");
    let sim = Simulator::start(
        SimConfig {
            clusters: vec![
                SimCluster::new("emr-abc12345")
                    .with_node(ours().with_order_no("ins-ours0001"))
                    .with_node(ours().with_order_no("ins-ours0002"))
                    .with_node(ours().with_order_no("ins-ours0003")),
            ],
            // The removal stays open while both decide.
            flow_duration: Duration::from_secs(3600),
            ..SimConfig::default()
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let prom = FakeProm::start().await;
    prom.set("sum(pending_mb)", Answer::Value(0.0));
    prom.set("avg(util)", Answer::Value(util));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint(), &prom.url());
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[[clusters.rules]]\nname = \"pending-memory\"",
        "[clusters.scale_in]\nenabled = true\nstabilization = \"0s\"\ngrace_period = \"10m\"\nowner_tag = { key = \"managed-by\", value = \"emr-autoscaler\" }\n[[clusters.rules]]\nname = \"pending-memory\"",
    );
    std::fs::write(&cfg, text).unwrap();
    let state_dir = dir.path().join("state");

    let now = chrono::Utc::now();
    let mut state = State::default();
    let c = state.cluster_mut("emr-abc12345");
    match held {
        // The daemon starts the removal itself, and stops while its flow
        // runs.
        Held::Removal => {
            let mut daemon = crate::support::inproc::InProcess::start(&cfg, clock.clone()).await;
            let state_file = state_dir.join("state.json");
            eventually_or(
                Duration::from_secs(20),
                "the removal's flow in the state",
                || daemon.log(),
                || {
                    let text = std::fs::read_to_string(&state_file).unwrap_or_default();
                    async move { text.contains("\"flow_id\": ") }
                },
            )
            .await;
            daemon.stop().await.unwrap();
        }
        Held::Cooldown => c.cooldown_until = Some(now + chrono::Duration::hours(1)),
        Held::Breaker => {
            c.breaker_open = Some(BreakerTrip {
                at: now,
                reason: "flow 7 outlived flow_timeout".into(),
                flow_id: None,
            })
        }
    }
    if !matches!(held, Held::Removal) {
        std::fs::create_dir_all(&state_dir).unwrap();
        std::fs::write(
            state_dir.join("state.json"),
            serde_json::to_string_pretty(&state).unwrap(),
        )
        .unwrap();
    }

    let plan = plan_json(&cfg, dir.path()).await;
    let plan = &plan["clusters"][0];

    let daemon = crate::support::inproc::InProcess::start(&cfg, clock).await;
    // The first decision stands until the next one, an interval (15 s) later.
    eventually_or(
        Duration::from_secs(20),
        "the daemon's first decision",
        || daemon.log(),
        || async { daemon.status().await["clusters"][0]["last_decision"].is_string() },
    )
    .await;
    let first = daemon.status().await["clusters"][0].clone();
    assert_eq!(
        (plan["outcome"].as_str(), plan["reason"].as_str()),
        (first["outcome"].as_str(), first["last_decision"].as_str()),
        "plan: {plan:#}\ndaemon: {first:#}"
    );
    (
        plan["outcome"].as_str().unwrap_or_default().to_string(),
        plan["reason"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_decides_as_the_daemon_with_a_removal_open() {
    // Utilisation is low: the target rule wants 1 of the 3 nodes, and the
    // open removal already takes the other 2: they count as gone, so
    // neither proposes another removal.
    let (outcome, reason) = plan_and_daemon_agree(Held::Removal, 0.1).await;
    assert_eq!(outcome, "hold", "{reason}");
    assert!(reason.ends_with("wants 1 -> hold"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_decides_as_the_daemon_in_a_cooldown() {
    let (outcome, reason) = plan_and_daemon_agree(Held::Cooldown, 0.99).await;
    assert_eq!(outcome, "cooldown", "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_decides_as_the_daemon_with_the_breaker_open() {
    let (outcome, reason) = plan_and_daemon_agree(Held::Breaker, 0.99).await;
    assert_eq!(outcome, "breaker", "{reason}");
}
