//! Daemon figures: idle RSS and CPU with 50 clusters at a 15 s interval, and
//! the time from a breach becoming visible in Prometheus to the request
//! reaching the simulator. Run with `cargo bench --bench figures -- daemon`; it prints
//! figures and asserts nothing. Under `cargo test` it only does a short smoke run.

#[path = "../../tests/it/support/fake_prom.rs"]
#[allow(dead_code)]
mod fake_prom;

use std::process::{Command, Stdio};
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

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn config(
    dir: &std::path::Path,
    ids: &[String],
    sim: &str,
    prom: &str,
    interval: &str,
) -> std::path::PathBuf {
    let mut text = format!(
        "[daemon]\nevaluation_interval = \"{interval}\"\nlisten = \"127.0.0.1:0\"\nstate_dir = \"{}\"\n[prometheus]\nurl = \"{prom}\"\n[tencent]\nregion = \"ap-guangzhou\"\nendpoint = \"{sim}\"\nmetadata_url = \"http://127.0.0.1:9\"\n",
        dir.join(format!("state-{interval}-{}", ids.len()))
            .display()
    );
    for id in ids {
        text.push_str(&format!(
            "[[clusters]]\ninstance_id = \"{id}\"\nmax_task_nodes = 40\n[clusters.scale_out]\npay_mode = 0\ntime_unit = \"s\"\ntime_span = 3600\n[[clusters.rules]]\nname = \"pending\"\ntype = \"threshold\"\nquery = 'pending{{c=\"{id}\"}}'\nabove = 1000\nfor = \"0s\"\nadd = 2\n[[clusters.rules]]\nname = \"util\"\ntype = \"target\"\nquery = 'util{{c=\"{id}\"}}'\ntarget = 0.8\n"
        ));
    }
    let path = dir.join(format!("cfg-{interval}-{}.toml", ids.len()));
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn(cfg: &std::path::Path, home: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_emr-autoscaler"))
        .args(["run", "--config", cfg.to_str().unwrap()])
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
    let (clusters, settle, measure, trials) = if bench { (50, 20, 60, 5) } else { (3, 2, 2, 1) };
    let clock: SharedClock = Arc::new(SystemClock);
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
    let dir = tempfile::tempdir().unwrap();

    // Idle: 50 clusters x 2 rules at 15 s.
    let cfg = config(dir.path(), &ids, &sim.endpoint(), &prom.url(), "15s");
    let mut child = spawn(&cfg, dir.path());
    tokio::time::sleep(Duration::from_secs(settle)).await;
    let (t0, c0) = (Instant::now(), cpu_ticks(child.id()));
    tokio::time::sleep(Duration::from_secs(measure)).await;
    let (t1, c1) = (Instant::now(), cpu_ticks(child.id()));
    let hz = 100.0; // USER_HZ on Linux
    let cpu = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    println!(
        "idle, {clusters} clusters x 2 rules at 15s: RSS {} KiB, CPU {cpu:.2}% of one core over {measure} s, {} Prometheus queries",
        rss_kib(child.id()),
        *prom.queries.lock().unwrap()
    );
    let _ = child.kill();
    let _ = child.wait();

    // Breach visible -> request at the simulator, one cluster.
    // The smoke run skips the 15 s interval: its one trial alone waits ~15 s.
    let intervals: &[&str] = if bench { &["15s", "1s"] } else { &["1s"] };
    for &interval in intervals {
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
                std::slice::from_ref(&id),
                &sim.endpoint(),
                &prom.url(),
                interval,
            );
            let mut child = spawn(&cfg, dir.path());
            // Let it settle into its rhythm, then breach at a random phase.
            tokio::time::sleep(Duration::from_millis(2000 + fastrand::u64(0..3000))).await;
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
