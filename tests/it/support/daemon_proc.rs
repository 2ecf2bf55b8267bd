//! The real `emr-autoscaler run` binary as a child process. Its config says
//! `listen = "127.0.0.1:0"`; the port it got is read from `--ready-file`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use emr_autoscaler::sim::{DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY};

pub const BIN: &str = env!("CARGO_BIN_EXE_emr-autoscaler");

/// How long a daemon may take to bind its admin port and write the ready file.
pub const READY_LIMIT: Duration = Duration::from_secs(20);

/// Waits until `child` (started with `--ready-file path`) has written `path`,
/// polling every 20 ms, and returns the address in it. Panics with the
/// daemon's log (`log`) if the child exits first or `READY_LIMIT` passes.
///
/// This blocks the thread: call it from sync code, or through
/// `tokio::task::block_in_place` on a multi-thread runtime.
pub fn wait_ready_file(path: &Path, child: &mut Child, log: &Path) -> SocketAddr {
    let log_text = || std::fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text.trim_end().parse().unwrap_or_else(|e| {
                panic!("the ready file {} holds {text:?}: {e}", path.display())
            });
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the daemon exited ({status}) before writing {}; its log:\n{}",
                path.display(),
                log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no ready file {} after {READY_LIMIT:?}; the daemon's log:\n{}",
            path.display(),
            log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Daemon {
    pub config: PathBuf,
    pub log: PathBuf,
    /// The admin port of the current child, from its ready file.
    pub port: u16,
    pub child: Option<Child>,
    /// Where the ready file goes; each spawn removes the old one first.
    ready_dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `run --config <config> --ready-file ..` and waits until it has
    /// bound its admin port; logs append to `log`. The config should listen
    /// on `127.0.0.1:0`.
    pub fn start(config: &Path, log: &Path, home: &Path) -> Daemon {
        let mut d = Daemon::new(config, log);
        d.spawn(home);
        d
    }

    /// A daemon not started yet: `spawn`, or `launch` a `command`.
    pub fn new(config: &Path, log: &Path) -> Daemon {
        Daemon {
            config: config.to_path_buf(),
            log: log.to_path_buf(),
            port: 0,
            child: None,
            ready_dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Starts the child (again) and waits for its ready file. A restart gets
    /// a new port.
    pub fn spawn(&mut self, home: &Path) {
        let cmd = self.command(home);
        self.launch(cmd);
    }

    /// `run --config <config> --ready-file ..` with `HOME` = `home`, the
    /// simulator's credentials and `RUST_LOG=info`, stderr appended to the
    /// log; more arguments and variables may be added before `launch`.
    pub fn command(&self, home: &Path) -> Command {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config", self.config.to_str().unwrap()])
            .arg("--ready-file")
            .arg(self.ready_path())
            .env_clear()
            .env("HOME", home)
            .env("RUST_LOG", "info")
            .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        cmd
    }

    /// Spawns `cmd` (from `command`) and waits for its ready file.
    pub fn launch(&mut self, mut cmd: Command) {
        let ready = self.ready_path();
        let _ = std::fs::remove_file(&ready);
        self.child = Some(cmd.spawn().unwrap());
        let child = self.child.as_mut().unwrap();
        let addr = tokio::task::block_in_place(|| wait_ready_file(&ready, child, &self.log));
        self.port = addr.port();
    }

    fn ready_path(&self) -> PathBuf {
        self.ready_dir.path().join("ready")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.as_mut()?.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let Ok(http) =
            emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3))
        else {
            return (0, String::new());
        };
        match http
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .send()
            .await
        {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    pub async fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.get("/healthz").await.0 != 200 {
            assert!(
                Instant::now() < deadline,
                "daemon never healthy; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The value of a metric line starting with `name_and_labels`.
    pub async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        super::metric(&self.get("/metrics").await.1, name_and_labels)
    }

    /// How many decisions the daemon has made, every outcome and cluster.
    pub async fn decisions(&self) -> f64 {
        let (_, text) = self.get("/metrics").await;
        text.lines()
            .filter(|l| l.starts_with("emr_autoscaler_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until the daemon has made `more` decisions from now on: the
    /// way to watch that something does not happen, for as many evaluations
    /// as it takes, however slow the machine.
    pub async fn wait_decisions(&self, more: f64) {
        let from = self.decisions().await;
        eventually(Duration::from_secs(60), "more decisions", || async {
            self.decisions().await >= from + more
        })
        .await;
    }

    /// RSS in KiB from /proc.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `cond` every 50 ms until it holds; panics naming `what` after
/// `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_or(limit, what, String::new, cond).await
}

/// [`eventually`], with `context` (logs, say) in the panic message.
pub async fn eventually_or<F, Fut>(
    limit: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut cond: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !cond().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
