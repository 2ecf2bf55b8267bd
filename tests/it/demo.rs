//! `emr-autoscaler demo` as a newcomer runs it: no config, no Prometheus, no
//! credentials; it must finish by itself and end with its summary.

use crate::support::daemon_proc::BIN;
use std::process::Command;

#[test]
fn demo_runs_and_ends_with_its_summary() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        // 12 simulated hours in about 40 s cover office hours; the sold-out
        // hour lasts 3.3 s of real time, so a stalled machine still orders
        // inside it.
        .args(["demo", "--duration", "12h", "--speed", "1080"])
        .env_clear()
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("/metrics") && stdout.contains("/api/v1/status"),
        "{stdout}"
    );
    let summary = stdout
        .split("\nsummary\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    let value = |label: &str| -> f64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|v| v.trim().split(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label:?} in:\n{summary}"))
    };
    let nodes = value("nodes added:");
    assert!(nodes >= 4.0, "office hours alone need 4 nodes: {summary}");
    assert!(value("node-hours:") > 0.0);
    assert!(
        stdout.contains("ordered +"),
        "the timeline shows orders:\n{stdout}"
    );
    assert!(summary.contains("ScaleOutCluster"), "{summary}");
    // The day's sold-out hour: the first offering refuses, the second serves.
    for line in [
        "s5-gz6 sold out (simulated) until 10:00",
        "s5-gz6 refused",
        "ResourcesSoldOut.CvmSoldOut",
        "through sa5-gz7",
        "s5-gz6 in stock again",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(
        summary.contains("sa5-gz7") && summary.contains("cost"),
        "per-offering node-hours and cost:\n{summary}"
    );
}

#[test]
fn demo_runs_a_users_policy() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mine.toml");
    std::fs::write(
        &cfg,
        r#"
[tencent]
region = "ap-guangzhou"
[[clusters]]
instance_id = "emr-mine0001"
max_task_nodes = 3
[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600
[[clusters.rules]]
name = "pending"
type = "threshold"
query = "sum(pending)"
above = 0
for = "1m"
add = 1
replay_signal = "pending_mb"
[[clusters.rules]]
name = "open-loop"
type = "threshold"
query = "sum(something_else)"
above = 1
for = "1m"
add = 1
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--config",
            cfg.to_str().unwrap(),
            "--duration",
            "6h",
            "--speed",
            "2160",
        ])
        .env_clear()
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("emr-mine0001"));
    assert!(
        stdout.contains("rules without replay_signal get no data in the demo: open-loop"),
        "{stdout}"
    );
    assert!(stdout.contains("nodes added:"));
}

/// `dry_run` would make the demo order nothing and report demand that was
/// never served: the demo orders from its own simulator, so it says it
/// ignores the key and orders.
#[test]
fn demo_ignores_dry_run_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dry.toml");
    std::fs::write(
        &cfg,
        r#"
[daemon]
dry_run = true
[tencent]
region = "ap-guangzhou"
[[clusters]]
instance_id = "emr-dry00001"
max_task_nodes = 3
dry_run = true
[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600
[[clusters.rules]]
name = "pending"
type = "threshold"
query = "sum(pending)"
above = 0
for = "1m"
add = 1
replay_signal = "pending_mb"
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--config", cfg.to_str().unwrap()])
        .args(["--duration", "4h", "--speed", "2160"])
        .env_clear()
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("note: dry_run is ignored in the demo"),
        "{stdout}"
    );
    assert!(stdout.contains("ordered +"), "it orders:\n{stdout}");
}

/// `plan` without a cloud account: the demo's simulator and Prometheus
/// stand-in answer it, at a chosen time of the synthetic day.
#[test]
fn plan_runs_against_the_demo_without_a_cloud_account() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["demo", "--plan-at", "14h"])
        .env_clear()
        .env("HOME", home.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("plan at Mon 14:00 UTC"), "{stdout}");
    assert!(stdout.contains("CLUSTER"), "{stdout}");
    assert!(stdout.contains("capacity: demand "), "{stdout}");
    assert!(stdout.contains("  -> scale_out +"), "{stdout}");
    let late = Command::new(BIN)
        .args(["demo", "--plan-at", "25h"])
        .env_clear()
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert_eq!(late.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&late.stderr).contains("--plan-at"));
}
