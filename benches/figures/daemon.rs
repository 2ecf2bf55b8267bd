//! Daemon figures: idle RSS and CPU at a 15 s interval with 50 clusters (two
//! rules each) and with 500 (one threshold rule each), both against the
//! simulator with two task nodes a cluster; the size of `/metrics` and
//! `/api/v1/status` there; and the time from a breach becoming visible in
//! Prometheus to the request reaching the simulator. Run with `cargo bench
//! --bench figures -- daemon`; it prints medians over trials and asserts
//! nothing. Under `cargo test` it only does a short smoke run of each.
//!
//! A trial measures from the moment `/readyz` first answers 200 (every
//! cluster evaluated once, the start-up reads done), so the start-up's
//! memory is in the figure and its work is not in the CPU.

#[path = "../../tests/it/support/fake_prom.rs"]
#[allow(dead_code)]
mod fake_prom;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emr_autoscaler::clock::{SharedClock, SystemClock};
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, SimCluster, SimConfig, Simulator,
};
use fake_prom::{Answer, FakeProm};

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
}

/// A `/proc/PID/status` field in KiB (or a count, for `Threads`).
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The rules every cluster of a configuration has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rules {
    /// `pending` (threshold) only.
    Threshold,
    /// `pending` (threshold) and `util` (target).
    ThresholdAndTarget,
}

fn config(
    dir: &Path,
    name: &str,
    ids: &[String],
    sim: &str,
    prom: &str,
    interval: &str,
    rules: Rules,
) -> PathBuf {
    let mut text = format!(
        "[daemon]\nevaluation_interval = \"{interval}\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n[prometheus]\nurl = \"{prom}\"\n[tencent]\nregion = \"ap-guangzhou\"\nendpoint = \"{sim}\"\nmetadata_url = \"http://127.0.0.1:9\"\n",
        dir.join(format!("state-{name}")).display()
    );
    for id in ids {
        text.push_str(&format!(
            "[[clusters]]\ninstance_id = \"{id}\"\nmax_task_nodes = 40\n[clusters.scale_out]\npay_mode = 0\ntime_unit = \"s\"\ntime_span = 3600\n[[clusters.rules]]\nname = \"pending\"\ntype = \"threshold\"\nquery = 'pending{{c=\"{id}\"}}'\nabove = 1000\nfor = \"0s\"\nadd = 2\n"
        ));
        if rules == Rules::ThresholdAndTarget {
            text.push_str(&format!(
                "[[clusters.rules]]\nname = \"util\"\ntype = \"target\"\nquery = 'util{{c=\"{id}\"}}'\ntarget = 0.8\n"
            ));
        }
    }
    let path = dir.join(format!("cfg-{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(cfg: &Path, home: &Path, ready_file: Option<&Path>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_emr-autoscaler"));
    command.args(["run", "--config", cfg.to_str().unwrap()]);
    if let Some(path) = ready_file {
        command.args(["--ready-file", path.to_str().unwrap()]);
    }
    command
        .env_clear()
        .env("HOME", home)
        .env("RUST_LOG", "warn")
        .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `check` every 50 ms until it holds or `limit` passes; says which.
async fn poll_until<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The median of `values` (the upper one of an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// What one idle trial measured.
#[derive(Debug, Default)]
struct Idle {
    /// From the spawn to the first 200 from `/readyz`, seconds.
    ready_secs: f64,
    /// At the end of the window, KiB.
    rss: f64,
    rss_anon: f64,
    threads: f64,
    /// Percent of one core over the window.
    cpu: f64,
    /// After the window: `/metrics` lines and bytes, the status answer's bytes.
    metrics_lines: f64,
    metrics_bytes: f64,
    status_bytes: f64,
    /// RSS after reading `/metrics` and the status once each, KiB.
    rss_after_reads: f64,
}

/// One idle trial: a daemon for `ids` until ready, then `measure` of idling.
#[allow(clippy::too_many_arguments)]
async fn idle_trial(
    dir: &Path,
    name: &str,
    ids: &[String],
    sim: &str,
    prom: &str,
    rules: Rules,
    measure: Duration,
    ready_limit: Duration,
) -> Idle {
    let cfg = config(dir, name, ids, sim, prom, "15s", rules);
    let ready_file = dir.join(format!("ready-{name}"));
    let _ = std::fs::remove_file(&ready_file);
    let started = Instant::now();
    let mut child = spawn(&cfg, dir, Some(&ready_file));
    let pid = child.id();
    let http =
        emr_autoscaler::http::http_client(Duration::from_secs(2), Duration::from_secs(10)).unwrap();
    let mut addr = String::new();
    let mut exited = false;
    let bound = poll_until(ready_limit, || {
        let found = std::fs::read_to_string(&ready_file).ok();
        if let Some(text) = &found {
            addr = text.trim().to_owned();
        }
        exited = found.is_none() && child.try_wait().ok().flatten().is_some();
        std::future::ready(found.is_some() || exited)
    })
    .await
        && !exited;
    let url = |path: &str| format!("http://{addr}{path}");
    let ready = bound
        && poll_until(ready_limit.saturating_sub(started.elapsed()), || {
            let request = http.get(url("/readyz")).send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
    let mut idle = Idle {
        ready_secs: started.elapsed().as_secs_f64(),
        ..Idle::default()
    };
    if !ready {
        println!("  {name}: not ready after {ready_limit:?}; measuring anyway");
    }
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(measure).await;
    let (t1, c1) = (Instant::now(), cpu_ticks(pid));
    let hz = 100.0; // USER_HZ on Linux
    idle.cpu = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    idle.rss = status_field(pid, "VmRSS") as f64;
    idle.rss_anon = status_field(pid, "RssAnon") as f64;
    idle.threads = status_field(pid, "Threads") as f64;
    if bound {
        let body = |path: &str| {
            let request = http.get(url(path)).send();
            async move {
                match request.await {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                }
            }
        };
        let metrics = body("/metrics").await;
        idle.metrics_lines = metrics.lines().count() as f64;
        idle.metrics_bytes = metrics.len() as f64;
        idle.status_bytes = body("/api/v1/status").await.len() as f64;
    }
    idle.rss_after_reads = status_field(pid, "VmRSS") as f64;
    let _ = child.kill();
    let _ = child.wait();
    idle
}

/// Idle figures for `clusters` clusters, medians over `trials`.
#[allow(clippy::too_many_arguments)]
async fn idle(
    dir: &Path,
    clock: &SharedClock,
    clusters: usize,
    rules: Rules,
    trials: usize,
    measure: Duration,
    ready_limit: Duration,
) {
    let ids: Vec<String> = (0..clusters).map(|i| format!("emr-idle{i:04}")).collect();
    let sim = Simulator::start(
        SimConfig {
            clusters: ids
                .iter()
                .map(|id| SimCluster::new(id.clone()).with_task_nodes(2))
                .collect(),
            ..SimConfig::default()
        },
        clock.clone(),
    )
    .await
    .unwrap();
    let prom = FakeProm::start().await;
    for id in &ids {
        prom.set(&format!("pending{{c=\"{id}\"}}"), Answer::Value(0.0));
        prom.set(&format!("util{{c=\"{id}\"}}"), Answer::Value(0.5));
    }
    let mut runs = Vec::new();
    for trial in 0..trials {
        let name = format!("idle-{clusters}-{rules:?}-{trial}");
        runs.push(
            idle_trial(
                dir,
                &name,
                &ids,
                &sim.endpoint(),
                &prom.url(),
                rules,
                measure,
                ready_limit,
            )
            .await,
        );
    }
    let m = |f: fn(&Idle) -> f64| median(runs.iter().map(f).collect());
    let mib = |kib: f64| kib / 1024.0;
    let rules = match rules {
        Rules::Threshold => "1 threshold rule",
        Rules::ThresholdAndTarget => "2 rules",
    };
    println!(
        "idle, {clusters} clusters x {rules}, 2 task nodes each, at 15s (medians of {trials}): \
         RSS {:.1} MiB (anonymous {:.1} MiB), {} threads, CPU {:.2}% of one core over {measure:?}; \
         ready after {:.1} s; /metrics {} lines, {} bytes; status {} bytes; \
         RSS after reading both {:.1} MiB",
        mib(m(|i| i.rss)),
        mib(m(|i| i.rss_anon)),
        m(|i| i.threads),
        m(|i| i.cpu),
        m(|i| i.ready_secs),
        m(|i| i.metrics_lines),
        m(|i| i.metrics_bytes),
        m(|i| i.status_bytes),
        mib(m(|i| i.rss_after_reads)),
    );
}

/// Runs the daemon figures on their own runtime.
pub fn run() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(figures());
}

async fn figures() {
    let bench = std::env::args().any(|a| a == "--bench");
    let clock: SharedClock = Arc::new(SystemClock);
    let dir = tempfile::tempdir().unwrap();

    // Idle: 50 clusters x 2 rules and 500 x 1 rule, at 15 s.
    let (trials, measure) = if bench {
        (3, Duration::from_secs(45))
    } else {
        (1, Duration::from_secs(1))
    };
    let ready_limit = Duration::from_secs(120);
    let sizes: &[(usize, Rules)] = if bench {
        &[(50, Rules::ThresholdAndTarget), (500, Rules::Threshold)]
    } else {
        &[(3, Rules::ThresholdAndTarget), (3, Rules::Threshold)]
    };
    for &(clusters, rules) in sizes {
        idle(
            dir.path(),
            &clock,
            clusters,
            rules,
            trials,
            measure,
            ready_limit,
        )
        .await;
    }

    let trials = if bench { 5 } else { 1 };
    let prom = FakeProm::start().await;
    // Breach visible -> request at the simulator, one cluster, at a phase
    // of its evaluation cycle drawn from a seeded generator.
    // The smoke run skips the 15 s interval: its one trial alone waits ~15 s.
    let intervals: &[(&str, u64)] = if bench {
        &[("15s", 15_000), ("1s", 1_000)]
    } else {
        &[("1s", 1_000)]
    };
    let mut phases = fastrand::Rng::with_seed(20);
    for &(interval, interval_ms) in intervals {
        let mut latencies = Vec::new();
        for trial in 0..trials {
            let id = format!("emr-lat{}{trial:03}", interval.trim_end_matches('s'));
            let id = format!("{id:0<12}")[..12].to_string();
            let sim = Simulator::start(SimConfig::with_clusters([id.clone()]), clock.clone())
                .await
                .unwrap();
            prom.set(&format!("pending{{c=\"{id}\"}}"), Answer::Value(0.0));
            prom.set(&format!("util{{c=\"{id}\"}}"), Answer::Value(0.5));
            let cfg = config(
                dir.path(),
                &format!("latency-{interval}-{trial}"),
                std::slice::from_ref(&id),
                &sim.endpoint(),
                &prom.url(),
                interval,
                Rules::ThresholdAndTarget,
            );
            let queried = *prom.queries.lock().unwrap();
            let mut child = spawn(&cfg, dir.path(), None);
            // Its first evaluation, then the breach at the drawn phase.
            poll_until(Duration::from_secs(20), || {
                std::future::ready(*prom.queries.lock().unwrap() > queried)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(phases.u64(0..interval_ms))).await;
            let visible = Instant::now();
            prom.set(&format!("pending{{c=\"{id}\"}}"), Answer::Value(50_000.0));
            let deadline = visible + Duration::from_secs(40);
            while sim.ledger().for_action("ScaleOutInstance").count() == 0
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            latencies.push(visible.elapsed());
            let _ = child.kill();
            let _ = child.wait();
        }
        latencies.sort();
        println!(
            "breach visible -> ScaleOutInstance at the simulator, interval {interval}: median {:.2?}, max {:.2?} over {} trials",
            latencies[latencies.len() / 2],
            latencies.last().unwrap(),
            latencies.len()
        );
    }
}
