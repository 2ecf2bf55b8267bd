//! The real binary's `check` and `scale-out` against a loopback fake endpoint.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real, wall-clock time.

use std::process::{Command, Output};

use crate::support::daemon_proc::BIN;
use crate::support::*;
use serde_json::json;

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

/// The requests of one action.
fn of_action(fake: &FakeEmr, action: &str) -> Vec<Received> {
    fake.received()
        .into_iter()
        .filter(|r| {
            r.headers
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("x-tc-action") && v == action)
        })
        .collect()
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
    let fake = FakeEmr::start().await;
    // With no daemon, the command reads the cluster first, then orders; the
    // order's first answer is lost.
    fake.script([
        Reply::Ok(
            json!({"ClusterList": [{"ClusterId": "emr-abc12345", "Status": 2, "Config": {"TaskNodeSize": 1}}]}),
        ),
        Reply::Drop,
    ]);
    fake.set_default(Reply::Ok(json!({"InstanceId": "emr-abc12345", "FlowId": 31, "DealNames": ["d1"], "ClientToken": null, "BillId": "b"})));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.endpoint());
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
    assert_eq!(v["FlowId"], 31);
    assert_eq!(v["InstanceId"], "emr-abc12345");
    assert_eq!(v["DealNames"], json!(["d1"]));
    assert_eq!(v["RequestId"], "req-ok");
    let got = of_action(&fake, "ScaleOutInstance");
    assert_eq!(got.len(), 2, "the dropped answer was retried");
    assert_eq!(got[0].body, got[1].body, "under the same token");
    assert_eq!(v["ClientToken"], got[0].json()["ClientToken"]);
    assert_eq!(got[0].json()["TaskCount"], 3);
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
    assert_eq!(op.current.as_ref().and_then(|i| i.flow_id), Some(31));
    assert_no_secrets(&o);
}

#[tokio::test]
async fn api_errors_print_code_and_request_id_and_exit_1() {
    let fake = FakeEmr::start().await;
    fake.set_default(Reply::Error("AuthFailure.SignatureFailure"));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.endpoint());
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
        err.contains("AuthFailure.SignatureFailure") && err.contains("req-err"),
        "{err}"
    );
    assert_eq!(
        of_action(&fake, "ScaleOutInstance").len(),
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
    let fake = FakeEmr::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.endpoint());
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
    assert!(fake.received().is_empty());
    assert_no_secrets(&o);
}

#[tokio::test]
async fn refusals_before_sending() {
    let fake = FakeEmr::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.endpoint());
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
    assert!(fake.received().is_empty());
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
