//! Real etcd servers from Debian's `etcd-server` package, on loopback.
//!
//! Each member serves clients on a unix socket in the cluster's directory,
//! and a [`Door`] in this process forwards `127.0.0.1:0` (the port read back
//! from the bound listener) to it byte for byte, TLS included. A member
//! cannot listen on port 0 itself: etcd 3.4's JSON gateway dials the
//! configured listen address, port 0 included. Members talk to each other
//! over unix sockets too, so no port is ever picked in advance. A stopped
//! member restarts on the same socket with its data, behind the same port,
//! as a real member coming back does.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

/// What a member logs once it serves clients, with the bound address.
const SERVING: &str = "serving client traffic";

/// A loopback TCP port forwarding every connection to a unix socket.
pub struct Door {
    pub port: u16,
    closed: Arc<AtomicBool>,
}

impl Door {
    pub fn open(socket: PathBuf) -> Door {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = Arc::new(AtomicBool::new(false));
        let stop = closed.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(tcp) = tcp else { continue };
                // The member is down: the client sees the connection close.
                let Ok(unix) = UnixStream::connect(&socket) else {
                    continue;
                };
                pipe(tcp, unix);
            }
        });
        Door { port, closed }
    }
}

/// Copies both ways until either side closes.
fn pipe(tcp: TcpStream, unix: UnixStream) {
    let (mut tcp_in, mut unix_in) = (tcp.try_clone().unwrap(), unix.try_clone().unwrap());
    let (tcp_out, unix_out) = (tcp, unix);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut tcp_in, &mut &unix_out);
        let _ = unix_out.shutdown(Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut unix_in, &mut &tcp_out);
        let _ = tcp_out.shutdown(Shutdown::Both);
    });
}

impl Drop for Door {
    fn drop(&mut self) {
        self.closed.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// TLS for the client port: the server's files, and the CA clients trust.
#[derive(Clone)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Clients must present a certificate signed by `ca`.
    pub client_cert_auth: bool,
}

/// How members serve clients.
#[derive(Clone, Default)]
pub struct Options {
    pub tls: Option<Tls>,
    /// `--auth-token-ttl` in seconds (etcd's default is 300).
    pub auth_token_ttl: Option<u32>,
}

pub struct Member {
    pub name: String,
    /// The client port (the door's).
    pub port: u16,
    door: Door,
    log: PathBuf,
    child: Option<Child>,
    /// "serving" lines in the log before the current start.
    served_before: usize,
}

pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    options: Options,
}

fn peer_url(name: &str) -> String {
    // A unix socket named "<name>:1" in the cluster directory.
    format!("unix://{name}:1")
}

/// The file name of a member's client socket.
fn client_socket(name: &str) -> String {
    format!("{name}-client:1")
}

impl EtcdCluster {
    /// Starts `n` members and waits until each serves clients.
    pub fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, Options::default())
    }

    /// Starts `n` members serving clients as `options` says.
    pub fn start_with(n: usize, options: Options) -> EtcdCluster {
        assert!(
            Path::new(ETCD).exists(),
            "{ETCD} is missing: install Debian's etcd-server package (scripts/packages.sh does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (1..=n).map(|i| format!("m{i}")).collect();
        let mut cluster = EtcdCluster {
            members: names
                .iter()
                .map(|name| {
                    let door = Door::open(dir.path().join(client_socket(name)));
                    Member {
                        name: name.clone(),
                        port: door.port,
                        door,
                        log: dir.path().join(format!("{name}.log")),
                        child: None,
                        served_before: 0,
                    }
                })
                .collect(),
            dir,
            options,
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
        let scheme = if self.options.tls.is_some() {
            "unixs"
        } else {
            "unix"
        };
        let client = format!("{scheme}://{}", client_socket(&m.name));
        let _ = std::fs::remove_file(dir.join(client_socket(&m.name)));
        let mut extra: Vec<String> = Vec::new();
        if let Some(tls) = &self.options.tls {
            extra.push(format!("--cert-file={}", tls.cert.display()));
            extra.push(format!("--key-file={}", tls.key.display()));
            if tls.client_cert_auth {
                extra.push("--client-cert-auth".into());
                extra.push(format!("--trusted-ca-file={}", tls.ca.display()));
            }
        }
        if let Some(ttl) = self.options.auth_token_ttl {
            extra.push(format!("--auth-token-ttl={ttl}"));
        }
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
            // The JSON gateway (on by default) is what the daemon speaks.
            .args(["--logger=zap", "--log-outputs=stderr"])
            .args(&extra)
            .env_clear()
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        m.child = Some(child);
    }

    /// Waits until member `i` logs that it serves clients.
    fn wait_serving(&mut self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let m = &mut self.members[i];
        let (marker, already) = (SERVING, m.served_before);
        loop {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let serving: Vec<&str> = text.lines().filter(|l| l.contains(marker)).collect();
            if serving.len() > already {
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
        let scheme = if self.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.port))
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

    /// Starts member `i` again behind its old port, with its data.
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
