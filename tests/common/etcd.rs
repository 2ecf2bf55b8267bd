//! Real etcd servers from Debian's `etcd-server` package, on loopback.
//!
//! Each member serves clients on `127.0.0.1:0`; the port it bound is read
//! back from its log ("serving client traffic"). Members talk to each other
//! over unix sockets in the cluster's own directory, so no port is ever
//! picked in advance. A stopped member restarts on its old client port with
//! its data, as a real member coming back does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

/// What a member logs once it serves clients, with the bound address.
const SERVING: &str = "serving client traffic";

pub struct Member {
    pub name: String,
    /// The client port, known after the first start.
    pub port: u16,
    log: PathBuf,
    child: Option<Child>,
    /// "serving" lines in the log before the current start.
    served_before: usize,
}

pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
}

fn peer_url(name: &str) -> String {
    // A unix socket named "<name>:1" in the cluster directory.
    format!("unix://{name}:1")
}

impl EtcdCluster {
    /// Starts `n` members and waits until each serves clients.
    pub fn start(n: usize) -> EtcdCluster {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server package (scripts/packages.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        let mut cluster = EtcdCluster {
            members: names
                .iter()
                .map(|name| Member {
                    name: name.clone(),
                    port: 0,
                    log: dir.path().join(format!("{name}.log")),
                    child: None,
                    served_before: 0,
                })
                .collect(),
            dir,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_serving(i);
        }
        cluster
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}={}", m.name, peer_url(&m.name)))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let initial = self.initial_cluster();
        let dir = self.dir.path().to_path_buf();
        let m = &mut self.members[i];
        m.served_before = std::fs::read_to_string(&m.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(SERVING))
            .count();
        let client = format!("http://127.0.0.1:{}", m.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .unwrap();
        let child = Command::new(ETCD)
            .current_dir(&dir)
            .args(["--name", &m.name])
            .args(["--data-dir", &format!("{}.data", m.name)])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer_url(&m.name)])
            .args(["--initial-advertise-peer-urls", &peer_url(&m.name)])
            .args(["--initial-cluster", &initial])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "emr-autoscaler-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args([
                "--enable-grpc-gateway=false",
                "--logger=zap",
                "--log-outputs=stderr",
            ])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        m.child = Some(child);
    }

    /// Waits until member `i` logs that it serves clients; learns its port.
    fn wait_serving(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let m = &mut self.members[i];
        let (marker, already) = (SERVING, m.served_before);
        loop {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let serving: Vec<&str> = text.lines().filter(|l| l.contains(marker)).collect();
            if serving.len() > already
                && let Some(line) = serving.last()
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(port) = v["address"]
                    .as_str()
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| p.parse::<u16>().ok())
            {
                m.port = port;
                return;
            }
            if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("etcd {} exited ({status}); its log:\n{text}", m.name);
            }
            assert!(
                Instant::now() < deadline,
                "etcd {} never served clients; its log:\n{text}",
                m.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client URLs, for `ha.etcd_endpoints`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.port))
            .collect()
    }

    /// The endpoints as a TOML array.
    pub fn endpoints_toml(&self) -> String {
        let quoted: Vec<String> = self.endpoints().iter().map(|e| format!("{e:?}")).collect();
        format!("[{}]", quoted.join(", "))
    }

    /// Kills member `i` (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its old port, with its data.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i);
    }

    /// Waits for a restarted member to serve clients (blocking).
    pub fn wait_restarted(&mut self, i: usize) {
        self.wait_serving(i);
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}
