//! The `/metrics` exposition, checked by Prometheus' own linter:
//! `promtool check metrics` must accept it without a single remark.
//!
//! promtool comes with Debian's `prometheus` package. When it is missing the
//! test fails (it never skips silently) and says how to install it.

use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use emr_autoscaler::policy::{
    Amount, Bound, ClusterPolicy, ClusterView, OnMissing, Reading, Rule, RuleKind, Sample, Sustain,
    Unit, decide,
};
use emr_autoscaler::telemetry::metrics::{ClusterSnapshot, Metrics, RESULT_OK};
use emr_autoscaler::tencent::{Action, ApiObserver, ErrorClass};

/// Runs `promtool check metrics` on `text` (through a file, as a scrape would
/// be saved) and returns its exit success and everything it printed.
fn promtool(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.txt");
    File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(File::open(&path).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not on PATH. Install Debian's `prometheus` package \
             (as root: apt-get install -y prometheus); CI installs it."
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

fn rule(name: &str) -> Rule {
    Rule {
        name: Arc::from(name),
        query: Some(format!("q_{name}")),
        kind: RuleKind::Threshold {
            bound: Bound::Above(100.0),
            sustain: Sustain::Evaluations(1),
            step: Amount::Add(3),
        },
        cooldown: None,
        on_missing: OnMissing::Hold,
        unit: Unit::Plain,
        replay_signal: None,
        max_value: emr_autoscaler::policy::DEFAULT_MAX_VALUE,
    }
}

/// Metrics as a running daemon would show them: registered clusters, a
/// decision, API attempts of several classes, limiter waits, an unset budget.
fn busy_metrics() -> Metrics {
    let m = Metrics::new();
    m.register_clusters(&[
        (
            "emr-abc12345".into(),
            vec!["pending-memory".into(), "util".into()],
        ),
        ("emr-def67890".into(), vec!["office-hours".into()]),
        ("emr-norules".into(), vec![]),
    ]);
    let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let policy = ClusterPolicy {
        min_task_nodes: 2,
        max_task_nodes: 40,
        cooldown: Duration::from_secs(300),
        max_step: None,
        max_nodes_per_hour: Some(10),
        max_nodes_per_day: None,
        rules: vec![rule("pending-memory"), rule("util")],
        scale_in: Default::default(),
    };
    let view = ClusterView {
        running: Some(4),
        ..ClusterView::default()
    };
    let high = [Sample {
        at: now,
        value: Reading::Value(12_345.5),
    }];
    let low = [Sample {
        at: now,
        value: Reading::Value(0.25),
    }];
    let d = decide(&policy, &view, &[&high, &low], now, Duration::from_secs(30));
    m.record_decision("emr-abc12345", &d);
    m.record_query_error(
        "emr-def67890",
        "office-hours",
        emr_autoscaler::policy::DataIssue::MultipleSeries,
    );
    m.set_cluster_state(
        "emr-abc12345",
        &ClusterSnapshot {
            paused: false,
            breaker_open: false,
            cooldown_until: Some(now + chrono::Duration::minutes(5)),
            budget_hour: Some(7),
            budget_day: None,
            last_evaluation: now,
            max_task_nodes: 10,
        },
    );
    m.nodes_requested("emr-abc12345", "default", 3);
    m.sold_out("emr-def67890");
    m.flow_failed("emr-def67890");
    m.reconcile_doubt("emr-def67890");
    m.config_reloaded(true, now);
    m.attempt_finished(
        Action::ScaleOutInstance,
        RESULT_OK,
        Duration::from_millis(180),
    );
    m.attempt_finished(
        Action::DescribeInstances,
        ErrorClass::Timeout.metric_label(),
        Duration::from_secs(31),
    );
    m.limiter_waited(Action::ScaleOutInstance, Duration::from_millis(52));
    m
}

#[test]
fn promtool_accepts_the_exposition_without_remarks() {
    let text = busy_metrics().encode().unwrap();
    assert!(text.contains("window=\"day\"} +Inf"), "{text}");
    let (ok, printed) = promtool(&text);
    println!("promtool check metrics: exit ok {ok}, printed {printed:?}");
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics (exit ok: {ok}) printed:\n{printed}\n--- exposition ---\n{text}"
    );
}

/// The check above would be worthless if promtool said nothing about a bad
/// exposition, so prove it speaks up.
#[test]
fn promtool_does_flag_a_bad_exposition() {
    let bad = "# TYPE emr_autoscaler_orders counter\nemr_autoscaler_orders 1\n";
    let (ok, printed) = promtool(bad);
    println!("promtool on a bad exposition: exit ok {ok}, printed {printed:?}");
    assert!(
        !ok || !printed.trim().is_empty(),
        "promtool said nothing about a counter without HELP or _total"
    );
}
