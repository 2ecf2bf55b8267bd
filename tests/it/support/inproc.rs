//! The daemon in this process: `emr_autoscaler::daemon::run` on a runtime of
//! its own, on a clock the test gives it (a `ScaledClock` shared with the
//! simulator makes flows, grace periods, cooldowns, `flow_timeout` and
//! stabilization windows pass many times faster than real time).
//!
//! Its admin server listens on `127.0.0.1:0`; `Control::Reload` and
//! `Control::Stop` stand in for SIGHUP and SIGTERM. Everything it logs at
//! `info` and above, on every thread of its runtime, is kept for `log()`.

use std::cell::RefCell;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use emr_autoscaler::clock::SharedClock;
use emr_autoscaler::daemon::{Control, DaemonError, RunOptions};
use emr_autoscaler::sim::{DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY};
use emr_autoscaler::tencent::Credentials;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How long the daemon may take to answer `/healthz` with 200, and to stop.
pub const LIMIT: Duration = Duration::from_secs(20);

thread_local! {
    /// The log capture of the daemon runtime's thread this is.
    static CAPTURE: RefCell<Option<tracing::dispatcher::DefaultGuard>> = const { RefCell::new(None) };
}

/// What the daemon logged, shared with its runtime's threads.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running in-process daemon.
pub struct InProcess {
    /// Its admin server.
    pub addr: SocketAddr,
    control: mpsc::Sender<Control>,
    task: Option<JoinHandle<Result<(), DaemonError>>>,
    runtime: Option<tokio::runtime::Runtime>,
    logs: Logs,
    http: reqwest::Client,
}

impl InProcess {
    /// Loads `config_path` (re-read on `reload`), runs the daemon on `clock`
    /// with the simulator's credentials and waits until `/healthz` answers
    /// 200. Panics with its log if it ends or is not healthy within `LIMIT`.
    pub async fn start(config_path: &Path, clock: SharedClock) -> InProcess {
        let config = emr_autoscaler::config::load(config_path)
            .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
        let logs = Logs::default();
        let dispatch = {
            let logs = logs.clone();
            tracing::Dispatch::new(
                tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::INFO)
                    .with_ansi(false)
                    .with_writer(move || logs.clone())
                    .finish(),
            )
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("in-process-daemon")
            .enable_all()
            .on_thread_start(move || {
                let guard = tracing::dispatcher::set_default(&dispatch);
                CAPTURE.with(|c| *c.borrow_mut() = Some(guard));
            })
            .on_thread_stop(|| {
                CAPTURE.with(|c| c.borrow_mut().take());
            })
            .build()
            .unwrap();
        // Bound here, registered with the daemon's runtime there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (control, rx) = mpsc::channel(8);
        let options = RunOptions {
            config_path: config_path.to_path_buf(),
            reset_state: false,
            ready_file: None,
            credentials: Some(Credentials::new(
                DEFAULT_SECRET_ID,
                DEFAULT_SECRET_KEY,
                None,
            )),
        };
        let task = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            emr_autoscaler::daemon::run(options, config, clock, listener, rx).await
        });
        let daemon = InProcess {
            addr,
            control,
            task: Some(task),
            runtime: Some(runtime),
            logs,
            http: emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(3))
                .unwrap(),
        };
        daemon.wait_healthy().await;
        daemon
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + LIMIT;
        while self.get("/healthz").await.0 != 200 {
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                panic!(
                    "the daemon ended before it was healthy; its log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not healthy within {LIMIT:?}; its log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// GET `path`: the status and the body; status 0 when nothing answered.
    pub async fn get(&self, path: &str) -> (u16, String) {
        match self.http.get(self.url(path)).send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        }
    }

    /// POST `path` without a body: the status, 0 when nothing answered.
    pub async fn post(&self, path: &str) -> u16 {
        self.http
            .post(self.url(path))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// `/api/v1/status` as JSON (null when it cannot be read).
    pub async fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/api/v1/status").await.1).unwrap_or_default()
    }

    /// The value of the `/metrics` sample starting with `name_and_labels`.
    pub async fn metric(&self, name_and_labels: &str) -> Option<f64> {
        super::metric(&self.get("/metrics").await.1, name_and_labels)
    }

    /// `/api/v1/history` (up to 1,000 events, newest first); panics unless
    /// it answers 200.
    pub async fn history(&self) -> Vec<serde_json::Value> {
        let (code, body) = self.get("/api/v1/history?limit=1000").await;
        assert_eq!(code, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["events"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Every decision made so far, of every outcome and rule: it grows by
    /// each evaluation's rules.
    pub async fn decisions(&self) -> f64 {
        self.get("/metrics")
            .await
            .1
            .lines()
            .filter(|l| l.starts_with("emr_autoscaler_decisions_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Re-reads the config file, as SIGHUP does.
    pub async fn reload(&self) {
        self.control.send(Control::Reload).await.unwrap();
    }

    /// Stops the daemon as SIGTERM does and returns how `run` ended; panics
    /// if it takes longer than `LIMIT`.
    pub async fn stop(&mut self) -> Result<(), DaemonError> {
        let _ = self.control.send(Control::Stop).await;
        let task = self.task.take().expect("stopped once");
        match tokio::time::timeout(LIMIT, task).await {
            Ok(joined) => joined.expect("the daemon's task panicked"),
            Err(_) => panic!(
                "the daemon did not stop within {LIMIT:?}; its log:\n{}",
                self.log()
            ),
        }
    }

    /// Everything the daemon logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.logs.0.lock().unwrap()).into_owned()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
