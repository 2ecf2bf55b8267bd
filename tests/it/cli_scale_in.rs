//! The real binary's `scale-in`, with no daemon running, against the EMR
//! simulator: it picks only eligible nodes by the scale-in rules, names them
//! in one graceful TerminateClusterNodes, keeps the operation open while the
//! nodes drain, and refuses what would break a floor or overlap an operation.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::process::{Command, Output};
use std::sync::Arc;

use crate::support::daemon_proc::BIN;
use emr_autoscaler::clock::{SharedClock, SystemClock};
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, SimCluster, SimConfig, SimNode, Simulator,
};

const CLUSTER: &str = "emr-abc12345";

fn config(dir: &std::path::Path, endpoint: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"
[daemon]
state_dir = "{state}"
[prometheus]
url = "http://127.0.0.1:9"
[tencent]
region = "ap-guangzhou"
endpoint = "{endpoint}"
metadata_url = "http://127.0.0.1:9"

[[clusters]]
instance_id = "{CLUSTER}"
min_task_nodes = 2
max_task_nodes = 20
[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600
[clusters.scale_in]
enabled = true
grace_period = "60s"
owner_tag = {{ key = "managed-by", value = "emr-autoscaler" }}
"#,
        state = dir.join("state").display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn run(args: Vec<String>, home: &std::path::Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("RUST_LOG", "warn")
        .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn scale_in(cfg: &std::path::Path, count: u32, dry_run: bool) -> Vec<String> {
    let mut args = vec![
        "scale-in".to_string(),
        "--config".into(),
        cfg.display().to_string(),
        "--instance-id".into(),
        CLUSTER.into(),
        "--count".into(),
        count.to_string(),
    ];
    if dry_run {
        args.push("--dry-run".into());
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_removes_only_eligible_nodes_newest_first_and_guards_the_floor() {
    let clock: SharedClock = Arc::new(SystemClock);
    let ours = |applied: i64| {
        SimNode::task()
            .with_tag("managed-by", "emr-autoscaler")
            .with_apply_time(
                chrono::DateTime::from_timestamp(1_790_000_000 + applied * 3600, 0).unwrap(),
            )
    };
    let cluster = SimCluster::new(CLUSTER)
        .with_task_nodes(2)
        .with_node(ours(1).with_order_no("ins-old00001"))
        .with_node(ours(3).with_order_no("ins-new00003"))
        .with_node(ours(2).with_order_no("ins-mid00002"))
        .with_node(ours(9).with_order_no("ins-mon00009").monthly())
        .with_node(ours(8).with_order_no("ins-pro00008").protected())
        .with_node(ours(7).with_order_no("ins-aut00007").auto_scaled());
    let sim = Simulator::start(
        SimConfig {
            clusters: vec![cluster],
            ..SimConfig::default()
        },
        clock,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint());

    // Dry run: the choice and the request, nothing sent.
    let o = run(scale_in(&cfg, 2, true), dir.path()).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["Request"]["body"]["CvmInstanceIds"],
        serde_json::json!(["ins-new00003", "ins-mid00002"]),
        "{v:#}"
    );
    assert!(!out.contains(DEFAULT_SECRET_KEY));
    assert!(out.contains("monthly"), "passed-over reasons shown: {out}");
    assert_eq!(sim.ledger().for_action("TerminateClusterNodes").count(), 0);

    // For real: the two newest of our eligible nodes, gracefully.
    let o = run(scale_in(&cfg, 2, false), dir.path()).await;
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["CvmInstanceIds"],
        serde_json::json!(["ins-new00003", "ins-mid00002"])
    );
    assert_eq!(v["GraceDownTime"], 60);
    assert!(v["FlowId"].is_number(), "{v}");
    assert_eq!(
        sim.ledger().terminations(CLUSTER),
        vec![vec!["ins-new00003".to_string(), "ins-mid00002".to_string()]]
    );
    let state = emr_autoscaler::state::read_only(&dir.path().join("state")).unwrap();
    let op = state.cluster(CLUSTER).unwrap().operation.clone().unwrap();
    assert_eq!(
        op.removal.unwrap().nodes,
        vec!["ins-new00003".to_string(), "ins-mid00002".to_string()],
        "the node list is kept while the nodes drain"
    );

    // While they drain, a second removal is refused; nothing is sent.
    let o = run(scale_in(&cfg, 1, false), dir.path()).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("operation running"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(sim.ledger().for_action("TerminateClusterNodes").count(), 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_below_the_floor_is_refused_before_anything_is_sent() {
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(
        SimConfig {
            clusters: vec![SimCluster::new(CLUSTER).with_task_nodes(3)],
            ..SimConfig::default()
        },
        clock,
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint());
    let o = run(scale_in(&cfg, 2, false), dir.path()).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("below min_task_nodes 2"), "{err}");
    // With nodes = "ours" but no owner_tag, no node is known to be ours.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "owner_tag = { key = \"managed-by\", value = \"emr-autoscaler\" }\n",
            "",
        )
        .replace("enabled = true\n", "");
    let untagged = dir.path().join("untagged.toml");
    std::fs::write(&untagged, text).unwrap();
    let sim_nodes = sim.nodes(CLUSTER).unwrap().len();
    let o = run(scale_in(&untagged, 1, false), dir.path()).await;
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no owner_tag"), "{err}");
    assert_eq!(sim.nodes(CLUSTER).unwrap().len(), sim_nodes);
    // An unknown count is refused by the command line itself.
    let o = run(scale_in(&cfg, 0, false), dir.path()).await;
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("outside 1..=100"));
    assert_eq!(sim.ledger().for_action("TerminateClusterNodes").count(), 0);
    sim.shutdown().await;
}
