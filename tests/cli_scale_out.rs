//! The real binary's `check` and `scale-out` against a loopback fake endpoint.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real, wall-clock time.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_emr-autoscaler");

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
    fake.script([Reply::Drop]);
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
    let got = fake.received();
    assert_eq!(got.len(), 2, "the dropped answer was retried");
    assert_eq!(got[0].body, got[1].body, "under the same token");
    assert_eq!(v["ClientToken"], got[0].json()["ClientToken"]);
    assert_eq!(got[0].json()["TaskCount"], 3);
    // The order is journaled (intent before sending, then accepted) for the daemon's budgets.
    let (entries, bad) = emr_autoscaler::state::read_manual(&dir.path().join("state")).unwrap();
    assert_eq!(bad, 0);
    let phases: Vec<_> = entries.iter().map(|e| e.phase).collect();
    use emr_autoscaler::state::ManualPhase;
    assert_eq!(phases, [ManualPhase::Intent, ManualPhase::Accepted]);
    assert!(
        entries
            .iter()
            .all(|e| Some(e.client_token.as_str()) == v["ClientToken"].as_str() && e.nodes == 3)
    );
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
    assert_eq!(fake.received().len(), 1, "auth failures are not retried");
    let (entries, _) = emr_autoscaler::state::read_manual(&dir.path().join("state")).unwrap();
    assert_eq!(
        entries.last().map(|e| e.phase),
        Some(emr_autoscaler::state::ManualPhase::Refused),
        "a refused order does not count"
    );
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
