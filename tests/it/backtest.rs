//! The real `backtest` subcommand: demand from a CSV file and from a real
//! Prometheus (Debian's 2.42, history backfilled with promtool), closed and
//! open loop, `--compare`, and bad input. Every figure is checked against a
//! calculation by hand, except the README's week table, which is replayed
//! and compared across policies.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time and pick a window near now.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::support::daemon_proc::BIN;
use crate::support::real_prom::spawn_prometheus;
use chrono::{DateTime, Timelike, Utc};

const CLUSTER: &str = "emr-bt000001";
/// Steps of the long Prometheus window (8 days of minutes).
const LONG_STEPS: i64 = 8 * 24 * 60;
/// Where its demand steps up, minutes into the window.
const LONG_STEP_AT: i64 = LONG_STEPS - 120 + 10;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The model every test uses: 1000 MB of core capacity, 500 MB per task
/// node, 4 minutes from order to serving.
const MODEL: [&str; 6] = [
    "--base-capacity-mb",
    "1000",
    "--node-memory-mb",
    "500",
    "--provisioning-delay",
    "4m",
];

fn backtest(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("backtest").args(args).args(MODEL);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.env_remove("RUST_LOG").output().unwrap()
}

fn summary(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The figures a run reports for the single cluster.
#[derive(Debug)]
struct Figures {
    nodes_added: u64,
    node_hours: f64,
    unmet_minutes: f64,
    unmet_gib_minutes: f64,
    peak_in_flight: u64,
    api_calls: u64,
    chunks: u64,
    open_loop: Vec<String>,
}

fn figures(v: &serde_json::Value) -> Figures {
    let c = &v["clusters"][0];
    assert_eq!(c["cluster"], CLUSTER);
    Figures {
        nodes_added: c["nodes_added"].as_u64().unwrap(),
        node_hours: c["node_hours"].as_f64().unwrap(),
        unmet_minutes: c["unmet_minutes"].as_f64().unwrap(),
        unmet_gib_minutes: c["unmet_gib_minutes"].as_f64().unwrap(),
        peak_in_flight: c["peak_in_flight"].as_u64().unwrap(),
        api_calls: c["api_calls"].as_u64().unwrap(),
        chunks: c["chunks"].as_u64().unwrap(),
        open_loop: c["open_loop_rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect(),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Asserts the closed-loop figures of the step from 800 MB to 2100 MB at
/// minute 10, replayed with `tests/data/backtest-closed.toml` (threshold on
/// the simulated pending memory, above 0 for 2m, add 2, cooldown 5m, from 0
/// task nodes) over 60 one-minute steps, minute m standing for [m, m+1):
///
/// - m 0..9: demand 800 <= capacity 1000: nothing pending.
/// - m 10: demand 2100, capacity 1000: pending 1100 > 0; the run starts.
/// - m 12: held 2m: +2 ordered (1 chunk), billed from m 12, serving at m 16;
///   the cooldown runs to 16 + 5 = m 21. m 13..15 still pending 1100.
/// - m 16: capacity 1000 + 2 × 500 = 2000: pending 100, still > 0, the run
///   (unbroken since m 10) still holds, but the cooldown lasts to m 21.
/// - m 21: +2 ordered, billed from m 21, serving at m 25, cooldown to m 30.
/// - m 25: capacity 3000 >= 2100: nothing pending until the end.
///
/// nodes added 2 + 2 = 4; requests (chunks) 2; peak in flight 2.
/// node-hours: 2 nodes × (60 - 12) min + 2 × (60 - 21) min = 96 + 78
///   = 174 node-minutes = 2.9 h.
/// unmet minutes: m 10..24 = 15.
/// unmet GiB·minutes: 6 min × 1100 MB + 9 min × 100 MB = 7500 MB·min
///   = 7500 / 1024 = 7.32421875 GiB·min.
fn assert_closed_loop_figures(f: &Figures) {
    assert_eq!(f.nodes_added, 4, "{f:?}");
    assert!(close(f.node_hours, 174.0 / 60.0), "{f:?}");
    assert!(close(f.unmet_minutes, 15.0), "{f:?}");
    assert!(close(f.unmet_gib_minutes, 7500.0 / 1024.0), "{f:?}");
    assert_eq!(f.peak_in_flight, 2, "{f:?}");
    assert_eq!((f.api_calls, f.chunks), (2, 2), "{f:?}");
    assert!(f.open_loop.is_empty(), "{f:?}");
}

#[test]
fn csv_demand_closed_loop_matches_the_hand_calculation() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = backtest(
        &[
            "--config",
            data("backtest-closed.toml").to_str().unwrap(),
            "--from",
            "2026-01-05T00:00:00Z",
            "--to",
            "2026-01-05T01:00:00Z",
            "--input",
            data("backtest-step.csv").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&out);
    assert_closed_loop_figures(&figures(&s));
    assert_eq!(s["steps"], 60);

    // The table on stdout carries the same figures.
    let stdout = String::from_utf8_lossy(&o.stdout);
    for (label, value) in [
        ("nodes added", "4"),
        ("node-hours", "2.90"),
        ("unmet minutes", "15.0"),
        ("unmet GiB·minutes", "7.32"),
        ("peak in-flight nodes", "2"),
        ("API calls", "2"),
        ("chunks", "2"),
        ("open-loop rules", "none"),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} row:\n{stdout}"));
        assert_eq!(line.split_whitespace().last(), Some(value), "{line}");
    }

    // The timeline: 60 rows, the orders at minutes 12 and 21.
    let csv = std::fs::read_to_string(out.join("timeline.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 60);
    assert!(
        csv.starts_with(
            "time,cluster,demand_mb,capacity_mb,running,in_flight,outcome,increment,removed,reason\n"
        ),
        "{csv}"
    );
    let orders: Vec<&str> = rows
        .iter()
        .filter(|r| r.contains(",scale_out,"))
        .copied()
        .collect();
    assert_eq!(orders.len(), 2, "{csv}");
    assert!(
        orders[0].starts_with("2026-01-05T00:12:00Z,emr-bt000001,2100,1000,0,2,scale_out,2,"),
        "{}",
        orders[0]
    );
    assert!(
        orders[1].starts_with("2026-01-05T00:21:00Z,emr-bt000001,2100,2000,2,2,scale_out,2,"),
        "{}",
        orders[1]
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("timeline.json")).unwrap()).unwrap();
    let steps = json.as_array().unwrap();
    assert_eq!(steps.len(), 60);
    assert_eq!(steps[25]["running"], 4);
    assert_eq!(steps[25]["capacity_mb"], 3000.0);
    assert_eq!(steps[13]["outcome"], "cooldown");
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("serving capacity"),
        "{svg:.200}"
    );
}

#[test]
fn compare_prints_both_summaries() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let closed = data("backtest-closed.toml");
    let target = data("backtest-target.toml");
    let o = backtest(
        &[
            "--config",
            closed.to_str().unwrap(),
            "--compare",
            target.to_str().unwrap(),
            "--from",
            "2026-01-05T00:00:00Z",
            "--to",
            "2026-01-05T01:00:00Z",
            "--input",
            data("backtest-step.csv").to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let header = stdout
        .lines()
        .find(|l| l.starts_with(CLUSTER))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        header.contains(closed.to_str().unwrap()) && header.contains(target.to_str().unwrap()),
        "{header}"
    );
    // The compared target rule sizes to the pending memory (per_node 500):
    // m 10: pending 1100 -> ceil(1100 / 500) + 0 running = 3 wanted, +3,
    // serving at m 14 (capacity 2500 >= 2100); m 11..13 the 3 in flight
    // already count, so nothing more. 3 nodes, 1 request, billed m 10..59:
    // 3 × 50 = 150 node-minutes = 2.5 h; unmet m 10..13: 4 minutes,
    // 4 × 1100 MB = 4400 MB·min = 4.296875 GiB·min.
    let row = |label: &str| -> Vec<String> {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?}:\n{stdout}"));
        line[label.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("nodes added"), ["4", "3"], "{stdout}");
    assert_eq!(row("node-hours"), ["2.90", "2.50"], "{stdout}");
    assert_eq!(row("unmet minutes"), ["15.0", "4.0"], "{stdout}");
    assert_eq!(row("unmet GiB·minutes"), ["7.32", "4.30"], "{stdout}");
    assert_eq!(row("API calls"), ["2", "1"], "{stdout}");

    let s = summary(&out);
    assert_closed_loop_figures(&figures(&s));
    let other = figures(&s["compare"]);
    assert_eq!(other.nodes_added, 3);
    assert!(close(other.node_hours, 2.5), "{other:?}");
    assert!(close(other.unmet_gib_minutes, 4400.0 / 1024.0), "{other:?}");
    assert_eq!(figures(&summary(&out.join("compare"))).nodes_added, 3);
    assert!(out.join("compare/chart.svg").exists());
    // One chart draws both configurations' capacity over the same demand.
    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(svg.contains("serving capacity with "), "{svg}");
    assert!(svg.contains(" against "), "{svg}");
}

#[test]
fn a_bad_csv_line_fails_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("demand.csv");
    std::fs::write(
        &csv,
        "timestamp,demand_mb\n\
         2026-01-05T00:00:00Z,800\n\
         2026-01-05T00:05:00Z,900\n\
         2026-01-05T00:10:00Z,lots\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let run = |config: &str, extra: &[&str]| {
        let mut args = vec![
            "--config",
            config,
            "--from",
            "2026-01-05T00:00:00Z",
            "--to",
            "2026-01-05T01:00:00Z",
            "--input",
            csv.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        backtest(&args, &[])
    };
    let closed = data("backtest-closed.toml");
    let o = run(closed.to_str().unwrap(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("demand.csv line 4") && stderr.contains("\"lots\" is not a number"),
        "{stderr}"
    );
    assert!(o.stdout.is_empty(), "{}", text(&o));
    assert!(!out.exists(), "nothing is written for a bad file");

    // Configuration problems exit 78: an invalid file, an unknown cluster.
    let o = run(data("bad-rules.toml").to_str().unwrap(), &[]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    std::fs::write(&csv, "2026-01-05T00:00:00Z,800\n").unwrap();
    let o = run(closed.to_str().unwrap(), &["--cluster", "emr-zz999999"]);
    assert_eq!(o.status.code(), Some(78), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("emr-zz999999 is not configured"),
        "{}",
        text(&o)
    );
}

/// A real Prometheus over backfilled history, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 GET on loopback; the body, if any answer came.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn run_tool(cmd: &mut Command, what: &str) {
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "{what} is not on PATH. Install Debian's `prometheus` package \
             (as root: apt-get install -y prometheus); CI installs it."
        ),
        Err(e) => panic!("cannot run {what}: {e}"),
    };
    assert!(out.status.success(), "{what}: {}", text(&out));
}

/// Backfills `openmetrics` into a new TSDB with promtool, then starts
/// Prometheus on it and waits until `probe` (a PromQL at `at`) has data.
fn start_prometheus(dir: &Path, openmetrics: &str, probe: &str, at: DateTime<Utc>) -> Prometheus {
    let om = dir.join("history.om");
    std::fs::write(&om, openmetrics).unwrap();
    let tsdb = dir.join("tsdb");
    std::fs::create_dir_all(&tsdb).unwrap();
    run_tool(
        Command::new("promtool").args([
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            om.to_str().unwrap(),
            tsdb.to_str().unwrap(),
        ]),
        "promtool",
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
    )
    .unwrap();
    let log = dir.join("prometheus.log");
    let (child, port) = spawn_prometheus(
        &[
            format!("--storage.tsdb.path={}", tsdb.display()),
            "--storage.tsdb.retention.time=3650d".into(),
            format!("--config.file={}", config.display()),
        ],
        &log,
    );
    let prom = Prometheus { child, port, log };
    let path = format!("/api/v1/query?query={probe}&time={}", at.timestamp());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(body) = http_get(prom.port, &path)
            && body.contains("\"status\":\"success\"")
            && body.contains("\"result\":[{")
        {
            return prom;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus had no data for {probe} after 60 s; its log:\n{}",
            std::fs::read_to_string(&prom.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_demand_closed_and_open_loop() {
    // A recent window, well inside the retention and never in the future:
    // the hour that started 26 to 27 hours ago.
    let now = Utc::now();
    let start = (now - chrono::Duration::hours(27))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let minute = |m: i64| start + chrono::Duration::minutes(m);

    // History every minute from 10 minutes before the window to 10 after:
    // demand 800 MB until minute 10, then 2100 MB (as in backtest-step.csv);
    // a recorded pending series at 5000 MB on minutes 10..39, else 0.
    let mut om = String::from("# TYPE bt_demand_mb gauge\n");
    for m in -10..70 {
        let v = if m < 10 { 800 } else { 2100 };
        om += &format!(
            "bt_demand_mb{{cluster=\"{CLUSTER}\"}} {v} {}\n",
            minute(m).timestamp()
        );
    }
    om += "# TYPE bt_fake_pending_mb gauge\n";
    for m in -10..70 {
        let v = if (10..40).contains(&m) { 5000 } else { 0 };
        om += &format!(
            "bt_fake_pending_mb{{cluster=\"{CLUSTER}\"}} {v} {}\n",
            minute(m).timestamp()
        );
    }
    // A long series for a window of 8 days at 1 minute (11,520 steps, more
    // than Prometheus's 11,000 points per query): 800 MB, and 2100 MB from
    // minute 11,410 of the window on, so only the second range request
    // holds the step.
    let long_start = (now - chrono::Duration::days(10))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap();
    let long_minute = |m: i64| long_start + chrono::Duration::minutes(m);
    om += "# TYPE bt_long_demand_mb gauge\n";
    for m in -10..LONG_STEPS + 10 {
        let v = if m < LONG_STEP_AT { 800 } else { 2100 };
        om += &format!(
            "bt_long_demand_mb{{cluster=\"{CLUSTER}\"}} {v} {}\n",
            long_minute(m).timestamp()
        );
    }
    om += "# EOF\n";
    let dir = tempfile::tempdir().unwrap();
    let prom = start_prometheus(dir.path(), &om, "bt_fake_pending_mb", minute(30));
    let url = format!("http://127.0.0.1:{}", prom.port);
    let env = [("EMR_AUTOSCALER__PROMETHEUS__URL", url.as_str())];
    let from = minute(0).to_rfc3339();
    let to = minute(60).to_rfc3339();

    // Closed loop: the same demand as the CSV test, now from PromQL with the
    // {cluster} placeholder; the same hand calculation applies.
    let out = dir.path().join("closed");
    let o = backtest(
        &[
            "--config",
            data("backtest-closed.toml").to_str().unwrap(),
            "--from",
            &from,
            "--to",
            &to,
            "--demand-query",
            "bt_demand_mb{cluster=\"{cluster}\"}",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_closed_loop_figures(&figures(&summary(&out)));

    // Open loop: the rule reads the recorded pending series, which ignores
    // the nodes the replay adds and stays at 5000 MB on minutes 10..39:
    // - m 12: held 2m: +2, serving m 16, cooldown to m 21;
    // - m 21: +2, serving m 25, cooldown to m 30;
    // - m 30: +2, serving m 34, cooldown to m 39;
    // - m 39: +2, serving m 43, cooldown to m 48; m 40 on the series is 0.
    // nodes 8, 4 requests, peak in flight 2.
    // node-hours: 2 × (48 + 39 + 30 + 21) = 276 node-minutes = 4.6 h.
    // The simulated cluster is the same as in the closed loop until m 25
    // (4 nodes then cover the 2100 MB), so the unmet demand is the same:
    // 15 minutes, 7500 / 1024 GiB·min.
    let out = dir.path().join("open");
    let o = backtest(
        &[
            "--config",
            data("backtest-open.toml").to_str().unwrap(),
            "--from",
            &from,
            "--to",
            &to,
            "--demand-query",
            "bt_demand_mb{cluster=\"{cluster}\"}",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    let f = figures(&summary(&out));
    assert_eq!(f.nodes_added, 8, "{f:?}");
    assert!(close(f.node_hours, 276.0 / 60.0), "{f:?}");
    assert!(close(f.unmet_minutes, 15.0), "{f:?}");
    assert!(close(f.unmet_gib_minutes, 7500.0 / 1024.0), "{f:?}");
    assert_eq!(
        (f.api_calls, f.chunks, f.peak_in_flight),
        (4, 4, 2),
        "{f:?}"
    );
    assert_eq!(f.open_loop, ["recorded-pending"], "{f:?}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("open-loop rules"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.ends_with("emr-bt000001/recorded-pending"), "{line}");

    // The long window needs two range requests per query. The step comes
    // 120 minutes before the end, so the closed-loop story above replays
    // with minute 11,400 as its minute 10: the same orders, unmet minutes and
    // GiB·minutes, and node-hours 2 × (120 - 12) + 2 × (120 - 21) = 414
    // node-minutes = 6.9 h.
    let out = dir.path().join("long");
    let o = backtest(
        &[
            "--config",
            data("backtest-closed.toml").to_str().unwrap(),
            "--from",
            &long_minute(0).to_rfc3339(),
            "--to",
            &long_minute(LONG_STEPS).to_rfc3339(),
            "--demand-query",
            "bt_long_demand_mb{cluster=\"{cluster}\"}",
            "--out",
            out.to_str().unwrap(),
        ],
        &env,
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = summary(&out);
    assert_eq!(s["steps"], LONG_STEPS);
    let f = figures(&s);
    assert_eq!((f.nodes_added, f.api_calls), (4, 2), "{f:?}");
    assert!(close(f.node_hours, 414.0 / 60.0), "{f:?}");
    assert!(close(f.unmet_minutes, 15.0), "{f:?}");
    assert!(close(f.unmet_gib_minutes, 7500.0 / 1024.0), "{f:?}");

    // A query Prometheus rejects fails with exit 1 and names the query.
    let o = backtest(
        &[
            "--config",
            data("backtest-closed.toml").to_str().unwrap(),
            "--from",
            &from,
            "--to",
            &to,
            "--demand-query",
            "sum(bt_demand_mb",
            "--out",
            dir.path().join("bad").to_str().unwrap(),
        ],
        &env,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Prometheus query \"sum(bt_demand_mb\" failed"),
        "{}",
        text(&o)
    );
}

/// Offerings in a replay: `--sold-out` sends the first order to the next
/// offering, and the table and summary.json give node-hours, nodes and cost
/// per offering. The closed-loop step above orders 2 nodes at m 12 and 2 at
/// m 21. "a" is sold out from m 0 to m 13, so at m 12 it refuses (skipped
/// for sold_out_backoff, 5m, to m 17) and "b" takes the order; at m 21 "a"
/// takes it. b: 2 nodes × 48 min = 1.6 h, at 3.0 = 4.8; a: 2 × 39 min =
/// 1.3 h, at 2.0 = 2.6.
#[test]
fn sold_out_windows_move_orders_and_figures_are_kept_per_offering() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offerings.toml");
    let base = std::fs::read_to_string(data("backtest-closed.toml")).unwrap();
    let written = base
        .replace(
            "[prometheus]",
            "sold_out_backoff = \"5m\"\n\n[prometheus]",
        )
        .replace(
            "[[clusters.rules]]",
            "[[clusters.scale_out.offerings]]\nname = \"a\"\ninstance_type = \"S5.2XLARGE32\"\nprice_per_hour = 2.0\n\
             [[clusters.scale_out.offerings]]\nname = \"b\"\ninstance_type = \"SA5.2XLARGE32\"\nprice_per_hour = 3.0\n\n[[clusters.rules]]",
        );
    std::fs::write(&config, written).unwrap();
    let out = dir.path().join("out");
    let csv = data("backtest-step.csv");
    let args = |sold_out: &str| {
        vec![
            "--config".to_string(),
            config.display().to_string(),
            "--input".into(),
            csv.display().to_string(),
            "--from".into(),
            "2026-01-05T00:00:00Z".into(),
            "--to".into(),
            "2026-01-05T01:00:00Z".into(),
            "--out".into(),
            out.display().to_string(),
            "--sold-out".into(),
            sold_out.into(),
        ]
    };
    let owned = args("a@2026-01-05T00:00:00Z/2026-01-05T00:13:00Z");
    let o = backtest(&owned.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    for line in [
        "a: node-hours",
        "b: node-hours",
        "a: sold-out refusals",
        "a: cost",
        "b: cost",
        "cost (priced offerings)",
    ] {
        assert!(table.contains(line), "{line} missing:\n{table}");
    }
    println!("{table}");
    let v = summary(&out);
    // The same decisions as without offerings; one more request: the refusal.
    let mut f = figures(&v);
    assert_eq!(f.api_calls, 3, "{f:?}");
    f.api_calls = 2;
    assert_closed_loop_figures(&f);
    let by = |name: &str| {
        v["clusters"][0]["offerings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(by("a")["nodes_added"], 2);
    assert_eq!(by("b")["nodes_added"], 2);
    assert_eq!(by("a")["refusals"], 1);
    assert!(close(by("b")["node_hours"].as_f64().unwrap(), 1.6));
    assert!(close(by("a")["node_hours"].as_f64().unwrap(), 1.3));
    assert!(close(by("b")["cost"].as_f64().unwrap(), 4.8));
    assert!(close(by("a")["cost"].as_f64().unwrap(), 2.6));
    assert_eq!(by("default")["nodes_added"], 0);

    // A name no cluster offers, or a window that ends first, is refused.
    let owned = args("nope@2026-01-05T00:00:00Z/2026-01-05T00:13:00Z");
    let o = backtest(&owned.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "--sold-out names \"nope\", which no replayed cluster offers (offerings: a, b)"
        ),
        "{}",
        text(&o)
    );
    let owned = args("a@2026-01-05T00:13:00Z/2026-01-05T00:00:00Z");
    let o = backtest(&owned.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("ends before it starts"), "{}", text(&o));
}

/// Node-hours and unmet GiB·minutes of one policy of `docs/week/` over one
/// day (0 = Monday) of `docs/demand-week.csv`, from 0 task nodes, with the
/// model the README's week table states.
fn week_day(policy: &str, day: i64, out: &Path) -> (f64, f64) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let from =
        DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z").unwrap() + chrono::Duration::days(day);
    let to = from + chrono::Duration::days(1);
    let o = Command::new(BIN)
        .arg("backtest")
        .arg("--config")
        .arg(root.join(format!("docs/week/{policy}.toml")))
        .args(["--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()])
        .arg("--input")
        .arg(root.join("docs/demand-week.csv"))
        .arg("--out")
        .arg(out)
        .args(["--step", "15s", "--base-capacity-mb", "229376"])
        .args(["--node-memory-mb", "57344", "--provisioning-delay", "4m"])
        .args(["--initial-task-nodes", "0"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(o.status.success(), "{policy} day {day}: {}", text(&o));
    let s = summary(out);
    let c = &s["clusters"][0];
    (
        c["node_hours"].as_f64().unwrap(),
        c["unmet_gib_minutes"].as_f64().unwrap(),
    )
}

/// The README's table as it prints a figure: 418.1, 17,262.
fn thousands(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The README's week table, replayed day by day: the capacity rule with its
/// defaults bills fewer node-hours and leaves less unmet demand than each
/// other policy of `docs/week/`, over the whole week and over the days its
/// defaults were not chosen on (Tue, Thu, Sat), and the README prints the
/// capacity rule's figures as they come out.
#[test]
fn the_capacity_rule_beats_the_reactive_policies_on_the_synthetic_week() {
    const POLICIES: [&str; 4] = [
        "capacity",
        "utilisation-80",
        "utilisation-90",
        "demand-sized",
    ];
    let dir = tempfile::tempdir().unwrap();
    let figures: Vec<Vec<(f64, f64)>> = std::thread::scope(|s| {
        let runs: Vec<_> = POLICIES
            .iter()
            .map(|p| {
                let out = dir.path().join(p);
                s.spawn(move || (0..7).map(|d| week_day(p, d, &out)).collect::<Vec<_>>())
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let sum = |p: usize, days: &[usize]| {
        days.iter().fold((0.0, 0.0), |(h, u), &d| {
            (h + figures[p][d].0, u + figures[p][d].1)
        })
    };
    let week = [0, 1, 2, 3, 4, 5, 6];
    let held_out = [1, 3, 5];
    let report = format!("{figures:?}");
    for (name, days) in [("week", &week[..]), ("held out", &held_out[..])] {
        let (hours, unmet) = sum(0, days);
        for (p, other) in POLICIES.iter().enumerate().skip(1) {
            let (h, u) = sum(p, days);
            assert!(
                hours < h && unmet < u,
                "{name}: capacity {hours:.1} node-h, {unmet:.0} GiB·min against {other} \
                 {h:.1}, {u:.0}: {report}"
            );
        }
    }
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let (hours, unmet) = sum(0, &week);
    let row = format!(
        "| whole week | **capacity rule** | **{hours:.1}** | **{}** |",
        thousands(unmet)
    );
    assert!(readme.contains(&row), "README lacks {row:?}: {report}");
}
