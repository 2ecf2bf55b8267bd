//! `run --ready-file` with `listen = "127.0.0.1:0"`: the file holds the bound
//! address as one line and /healthz answers there; a ready file that cannot
//! be written makes `run` exit 1 naming it.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait for a real process in real time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::daemon_proc::{BIN, wait_ready_file};
use emr_autoscaler::sim::{DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY};

/// The child, killed and reaped when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A config on port 0. Nothing answers at Prometheus or the EMR endpoint;
/// neither is needed to bind the admin port and serve /healthz.
fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            r#"[daemon]
evaluation_interval = "1s"
listen = "127.0.0.1:0"
state_dir = "{state}"

[prometheus]
url = "http://127.0.0.1:9"
timeout = "1s"

[tencent]
region = "ap-guangzhou"
endpoint = "http://127.0.0.1:9"
metadata_url = "http://127.0.0.1:9"

[[clusters]]
instance_id = "emr-abc12345"
max_task_nodes = 10

[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600

[[clusters.rules]]
name = "pending"
type = "threshold"
query = "sum(yarn_pending_memory_mb)"
above = 100
for = "1m"
add = 1
"#,
            state = dir.join("state").display(),
        ),
    )
    .unwrap();
    path
}

fn run(dir: &Path, ready_file: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config", write_config(dir).to_str().unwrap()])
        .arg("--ready-file")
        .arg(ready_file)
        .env_clear()
        .env("HOME", dir)
        .env("RUST_LOG", "info")
        .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ready_file_names_the_bound_port_and_healthz_answers_there() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("daemon.ready");
    let log = dir.path().join("daemon.log");
    let child = run(dir.path(), &ready)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Running(child);
    let addr = tokio::task::block_in_place(|| wait_ready_file(&ready, &mut daemon.0, &log));

    let text = std::fs::read_to_string(&ready).unwrap();
    assert_eq!(text, format!("127.0.0.1:{}\n", addr.port()), "one line");
    assert_ne!(addr.port(), 0, "the bound port, not the configured 0");
    let mut tmp = ready.clone().into_os_string();
    tmp.push(".tmp");
    assert!(!Path::new(&tmp).exists(), "no temporary file left behind");

    let http =
        emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3)).unwrap();
    let r = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("Admin server listening.") && l.contains(&addr.to_string())),
        "the bound address is logged:\n{logged}"
    );

    assert!(
        Command::new("kill")
            .args(["-TERM", &daemon.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "no exit 10 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_ready_file_that_cannot_be_written_stops_run() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("no-such-dir").join("daemon.ready");
    let mut daemon = Running(
        run(dir.path(), &ready)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "run kept going without its ready file"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(daemon.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let named = ready.display().to_string();
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("error: ") && l.contains(&named)),
        "the error names {named}:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("Cannot write the ready file.")),
        "logged at error level:\n{stderr}"
    );
}
