//! A real Prometheus (Debian's package) on a loopback port it binds itself
//! (read back from its log), with a temporary data directory, scraping a
//! loopback exporter the test controls.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;

/// Synthetic YARN ResourceManager metrics, as the JMX exporter names them.
#[derive(Clone, Default)]
pub struct Exporter {
    pub addr: Option<SocketAddr>,
    /// Pending MB per cluster; `None` removes the series, NaN is written as NaN.
    values: Arc<Mutex<BTreeMap<String, Option<f64>>>>,
}

async fn metrics(State(e): State<Exporter>) -> String {
    let mut out = String::from(
        "# HELP yarn_pending_memory_mb Pending memory.\n# TYPE yarn_pending_memory_mb gauge\n",
    );
    for (cluster, v) in e.values.lock().unwrap().iter() {
        if let Some(v) = v {
            let v = if v.is_nan() {
                "NaN".to_string()
            } else {
                v.to_string()
            };
            out.push_str(&format!(
                "yarn_pending_memory_mb{{cluster=\"{cluster}\"}} {v}\n"
            ));
        }
    }
    out
}

impl Exporter {
    pub async fn start() -> Self {
        let mut e = Exporter::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        e.addr = Some(listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/metrics", get(metrics))
            .with_state(e.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        e
    }

    pub fn set(&self, cluster: &str, v: Option<f64>) {
        self.values.lock().unwrap().insert(cluster.to_string(), v);
    }
}

/// Starts Debian's `prometheus` with `args` and `--web.listen-address=
/// 127.0.0.1:0`, its log in `log`, and returns it with the port it bound.
/// Prometheus cannot be told a port file, but its "Listening on" log line
/// names the bound address, so no port is picked in advance.
pub fn spawn_prometheus(args: &[String], log: &Path) -> (Child, u16) {
    let mut child = Command::new("prometheus")
        .args(args)
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start prometheus ({e}); install Debian's `prometheus` package")
        });
    // A thread copies the log line by line (for as long as prometheus runs)
    // and hands over the port the moment the line naming it is written.
    let stderr = child.stderr.take().unwrap();
    let mut file = std::fs::File::create(log).unwrap();
    let (port_tx, port_rx) = std::sync::mpsc::channel::<u16>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(file, "{line}");
            if let Some(port) = listening_port(&line) {
                let _ = port_tx.send(port);
            }
        }
    });
    match port_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(port) => (child, port),
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("prometheus did not report its port ({e}); its log:\n{text}");
        }
    }
}

/// The port of a `msg="Listening on" address=127.0.0.1:PORT` log line.
fn listening_port(line: &str) -> Option<u16> {
    if !line.contains("msg=\"Listening on\"") {
        return None;
    }
    line.split("address=127.0.0.1:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub struct RealProm {
    pub port: u16,
    child: Option<Child>,
    pub dir: tempfile::TempDir,
}

impl RealProm {
    /// Starts Prometheus scraping `target` every second.
    pub fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: yarn\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let (child, port) = spawn_prometheus(
            &[
                format!("--config.file={}", cfg.display()),
                format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            ],
            &dir.path().join("prometheus.log"),
        );
        RealProm {
            port,
            child: Some(child),
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Instant query value, if exactly one series answers.
    pub async fn value(&self, query: &str) -> Option<f64> {
        let http =
            emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(2))
                .ok()?;
        let v: serde_json::Value = http
            .get(format!("{}/api/v1/query", self.url()))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let r = v["data"]["result"].as_array()?;
        if r.len() != 1 {
            return None;
        }
        r[0]["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` returns one series (the first scrape takes seconds).
    pub async fn wait_for(&self, query: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.value(query).await.is_none() {
            assert!(
                Instant::now() < deadline,
                "Prometheus never returned {query}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
    }
}

impl Drop for RealProm {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-CONT", &c.id().to_string()])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
