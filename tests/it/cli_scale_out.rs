//! The real binary's `check` and `scale-out` against the EMR simulator on
//! loopback, which checks every signature and the session token.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real, wall-clock time.

use std::process::{Command, Output};
use std::sync::Arc;

use crate::support::daemon_proc::BIN;
use crate::support::{SECRET_ID, SECRET_KEY, TOKEN};
use emr_autoscaler::clock::SystemClock;
use emr_autoscaler::sim::{Fault, LedgerEntry, SimCluster, SimConfig, SimHandle, Simulator};

const CLUSTER: &str = "emr-abc12345";

/// The simulator with one cluster, this test's credentials and session token.
async fn sim() -> SimHandle {
    Simulator::start(
        SimConfig {
            clusters: vec![SimCluster::new(CLUSTER).with_task_nodes(1)],
            credentials: vec![(SECRET_ID.into(), SECRET_KEY.into())],
            required_token: Some(TOKEN.into()),
            ..SimConfig::default()
        },
        Arc::new(SystemClock),
    )
    .await
    .unwrap()
}

fn config(dir: &std::path::Path, endpoint: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minimal.toml"
    ))
    .unwrap()
    .replace("https://emr.tencentcloudapi.com", endpoint)
    .replace(
        "/var/lib/emr-autoscaler",
        &dir.join("state").display().to_string(),
    )
    .replace(
        "requests_per_second = 20",
        "requests_per_second = 20\nmetadata_url = \"http://127.0.0.1:9\"",
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn run(args: &[&str], home: &std::path::Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("RUST_LOG", "debug")
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .env("TENCENTCLOUD_TOKEN", TOKEN);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The requests of one action the simulator received.
fn of_action(sim: &SimHandle, action: &str) -> Vec<LedgerEntry> {
    sim.ledger().for_action(action).cloned().collect()
}

/// Whether `text` holds a request id as the simulator makes them (a UUID).
fn has_request_id(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .any(|word| word.len() == 36 && uuid::Uuid::parse_str(word).is_ok())
}

fn assert_no_secrets(o: &Output) {
    let (out, err) = text(o);
    for secret in [SECRET_KEY, TOKEN] {
        assert!(
            !out.contains(secret) && !err.contains(secret),
            "secret leaked:\n{out}\n{err}"
        );
    }
}

#[tokio::test]
async fn scale_out_prints_only_the_response_json_on_stdout() {
    let sim = sim().await;
    // With no daemon, the command reads the cluster first, then orders; the
    // order executes but its answer is lost.
    sim.inject("ScaleOutInstance", Some(CLUSTER), Fault::DropAfterExecute);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint());
    let o = run(
        &[
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            "emr-abc12345",
            "--task-count",
            "3",
        ],
        dir.path(),
    )
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    let v: serde_json::Value =
        serde_json::from_str(&out).expect("stdout is exactly one JSON document");
    let got = of_action(&sim, "ScaleOutInstance");
    assert_eq!(got.len(), 2, "the dropped answer was retried");
    assert!(got[0].dropped());
    assert_eq!(got[0].params, got[1].params, "the same request");
    assert_eq!(
        got[0].client_token, got[1].client_token,
        "under the same token"
    );
    assert_eq!(sim.ledger().flows_started(CLUSTER), 1, "one flow");
    let flow = got[0]
        .started_flow()
        .expect("the first attempt started the flow");
    assert_eq!(v["FlowId"], flow);
    assert_eq!(v["InstanceId"], "emr-abc12345");
    assert!(
        v["DealNames"].as_array().is_some_and(|d| !d.is_empty()),
        "{v}"
    );
    assert!(has_request_id(v["RequestId"].as_str().unwrap_or("")), "{v}");
    assert_eq!(v["ClientToken"].as_str(), got[0].client_token.as_deref());
    assert_eq!(got[0].params["TaskCount"], 3);
    // With no daemon the command held the state lock: the order counts in
    // budgets, and its operation (with the flow) is left for the daemon.
    let state = emr_autoscaler::state::read_only(&dir.path().join("state")).unwrap();
    let c = state.cluster("emr-abc12345").unwrap();
    assert_eq!(c.orders.len(), 1);
    assert_eq!(c.orders[0].nodes, 3);
    assert_eq!(
        Some(c.orders[0].client_token.as_str()),
        v["ClientToken"].as_str()
    );
    assert_eq!(
        c.orders[0].source,
        emr_autoscaler::state::OrderSource::Manual
    );
    let op = c.operation.as_ref().expect("the operation is open");
    assert_eq!(
        op.current.as_ref().and_then(|i| i.flow_id),
        i64::try_from(flow).ok()
    );
    assert_no_secrets(&o);
}

#[tokio::test]
async fn api_errors_print_code_and_request_id_and_exit_1() {
    let sim = sim().await;
    sim.inject(
        "ScaleOutInstance",
        Some(CLUSTER),
        Fault::ApiError("AuthFailure.SignatureFailure".into()),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint());
    let o = run(
        &[
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            "emr-abc12345",
            "--core-count",
            "1",
        ],
        dir.path(),
    )
    .await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("AuthFailure.SignatureFailure") && has_request_id(&err),
        "{err}"
    );
    assert_eq!(
        of_action(&sim, "ScaleOutInstance").len(),
        1,
        "auth failures are not retried"
    );
    let state = emr_autoscaler::state::read_only(&dir.path().join("state")).unwrap();
    let c = state.cluster("emr-abc12345").unwrap();
    assert!(c.orders.is_empty(), "a refused order does not count");
    assert!(c.operation.is_none());
    assert_no_secrets(&o);
}

#[tokio::test]
async fn dry_run_sends_nothing_and_masks_signature_and_token() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint());
    let o = run(
        &[
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            "emr-abc12345",
            "--task-count",
            "2",
            "--dry-run",
        ],
        dir.path(),
    )
    .await;
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let headers = v["Request"]["headers"].as_array().unwrap();
    let get = |n: &str| {
        headers
            .iter()
            .find(|h| h[0] == n)
            .map(|h| h[1].as_str().unwrap().to_string())
    };
    assert!(
        get("Authorization")
            .unwrap()
            .ends_with("Signature=<redacted>")
    );
    assert!(get("Authorization").unwrap().contains(SECRET_ID));
    assert_eq!(get("X-TC-Token").as_deref(), Some("<redacted>"));
    assert_eq!(get("X-TC-Action").as_deref(), Some("ScaleOutInstance"));
    assert_eq!(v["Request"]["body"]["TaskCount"], 2);
    assert_eq!(v["Request"]["body"]["ClientToken"], "<redacted>");
    assert_eq!(sim.ledger().len(), 0, "nothing reached the API");
    assert_no_secrets(&o);
}

#[tokio::test]
async fn refusals_before_sending() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.endpoint());
    let cfg = cfg.to_str().unwrap();
    let unknown = run(
        &[
            "scale-out",
            "--config",
            cfg,
            "--instance-id",
            "emr-zzzzzzzz",
            "--task-count",
            "1",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(unknown.status.code(), Some(78), "{:?}", text(&unknown));
    assert!(text(&unknown).1.contains("emr-zzzzzzzz is not configured"));
    let big = run(
        &[
            "scale-out",
            "--config",
            cfg,
            "--instance-id",
            "emr-abc12345",
            "--task-count",
            "21",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(big.status.code(), Some(1));
    assert!(
        text(&big).1.contains("--task-count 21 is outside 1..=20"),
        "{:?}",
        text(&big)
    );
    let zero = run(
        &[
            "scale-out",
            "--config",
            cfg,
            "--instance-id",
            "emr-abc12345",
            "--core-count",
            "0",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(zero.status.code(), Some(1));
    let both = run(
        &[
            "scale-out",
            "--config",
            cfg,
            "--instance-id",
            "emr-abc12345",
            "--task-count",
            "1",
            "--core-count",
            "1",
        ],
        dir.path(),
    )
    .await;
    assert_eq!(both.status.code(), Some(1), "{:?}", text(&both));
    assert_eq!(sim.ledger().len(), 0, "nothing reached the API");
}

#[tokio::test]
async fn check_reports_every_problem_and_exits_78() {
    let dir = tempfile::tempdir().unwrap();
    let bad = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/many-errors.toml");
    let o = run(&["check", "--config", bad], dir.path()).await;
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(78));
    assert!(out.starts_with(&format!("{bad}: 12 problem(s)")), "{out}");
    for path in [
        "daemon.colour:",
        "tencent.requests_per_second:",
        "clusters[0].scale_out.task_count:",
    ] {
        assert!(out.contains(path), "{path} missing from:\n{out}");
    }
    let good = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/minimal.toml");
    let o = run(&["check", "--config", good], dir.path()).await;
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let missing = run(
        &["check", "--config", "/nonexistent/config.toml"],
        dir.path(),
    )
    .await;
    assert_eq!(missing.status.code(), Some(78));
}

#[tokio::test]
async fn check_refuses_a_promql_syntax_error_naming_the_rule_and_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let minimal = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minimal.toml"
    ))
    .unwrap();
    let cfg = dir.path().join("typo.toml");
    std::fs::write(
        &cfg,
        format!(
            "{minimal}\n[[clusters.rules]]\nname = \"queue-pending\"\ntype = \"threshold\"\nquery = 'sum(rate(yarn_apps_pending[5m])'\nabove = 0\nfor = \"1m\"\nadd = 1\n"
        ),
    )
    .unwrap();
    let o = run(&["check", "--config", cfg.to_str().unwrap()], dir.path()).await;
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(78), "{out}");
    assert!(
        out.contains(
            "clusters[0].rules[1].query: rule \"queue-pending\": PromQL syntax error at column 4: unclosed left parenthesis"
        ),
        "{out}"
    );
}
