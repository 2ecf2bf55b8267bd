//! The `sim` subcommand as users start it, driven by the real `scale-out`.

use crate::support::daemon_proc::BIN;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn scale_out_against_the_sim_subcommand() {
    let mut sim = Command::new(BIN)
        .args(["sim", "--cluster", "emr-abc12345", "--flow-duration", "1s"])
        .env_remove("TENCENTCLOUD_SECRET_ID")
        .env_remove("TENCENTCLOUD_SECRET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let endpoint = line.trim().to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minimal.toml"
    ))
    .unwrap()
    .replace("https://emr.tencentcloudapi.com", &endpoint)
    .replace(
        "/var/lib/emr-autoscaler",
        &dir.path().join("state").display().to_string(),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = Command::new(BIN)
        .args([
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            "emr-abc12345",
            "--task-count",
            "2",
        ])
        .env("HOME", dir.path())
        .env(
            "TENCENTCLOUD_SECRET_ID",
            emr_autoscaler::sim::DEFAULT_SECRET_ID,
        )
        .env(
            "TENCENTCLOUD_SECRET_KEY",
            emr_autoscaler::sim::DEFAULT_SECRET_KEY,
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["FlowId"].as_i64().is_some(), "{v}");
    assert_eq!(v["InstanceId"], "emr-abc12345");

    // SIGTERM stops it cleanly with exit 0.
    let pid = sim.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = sim.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
