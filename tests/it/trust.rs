//! Trust boundaries, tried as an attacker or a careless operator would, with
//! the real binary and loopback servers: one test per hole, named after the
//! attack. Each asserts that nothing is ordered wrongly, no secret reaches a
//! stranger and the daemon neither panics nor acts on a lost state directory.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::daemon_proc::{BIN, Daemon, eventually};
use crate::support::fake_prom::{Answer, FakeProm};
use crate::support::{SECRET_ID, SECRET_KEY, TOKEN};
use emr_autoscaler::clock::{SharedClock, SystemClock};
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, SimCluster, SimConfig, SimHandle, Simulator,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const CLUSTER: &str = "emr-abc12345";
const Q: &str = "sum(yarn_pending_memory_mb)";
const ADMIN_TOKEN: &str = "admin-token-MUST-NOT-LEAK-5150";

/// A stranger on loopback: accepts connections, records every request's
/// head and body, and answers like a successful ScaleOutInstance.
#[derive(Clone)]
struct Stranger {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Stranger {
    async fn start(ip: &str) -> Stranger {
        Self::on(TcpListener::bind((ip, 0)).await.unwrap())
    }

    fn on(listener: TcpListener) -> Stranger {
        let stranger = Stranger {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
        };
        let seen = stranger.seen.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut got = Vec::new();
                    // Read what arrives within a short while (head and body).
                    while let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(300), sock.read(&mut buf)).await
                    {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                        if got.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&got).into_owned());
                    let body = r#"{"Response":{"InstanceId":"emr-abc12345","FlowId":666,"RequestId":"stranger-reply-marker","proof":"00","ClusterList":[]}}"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                });
            }
        });
        stranger
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

const DESCRIBED: &str = r#"{"Response":{"ClusterList":[{"ClusterId":"emr-abc12345","Status":2,"Config":{"TaskNodeSize":3}}],"RequestId":"r"}}"#;

/// An "EMR endpoint" that describes the cluster (3 task nodes) and answers
/// every other request with `307` to `location`.
async fn redirector(location: String) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = tokio::time::timeout(Duration::from_millis(300), sock.read(&mut buf))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                let answer = if request.contains("x-tc-action: describeinstances") {
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{DESCRIBED}",
                        DESCRIBED.len()
                    )
                } else {
                    format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                };
                let _ = sock.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

fn write_config(
    dir: &Path,
    endpoint: &str,
    prom: &str,
    daemon_extra: &str,
    cluster_extra: &str,
) -> PathBuf {
    let path = dir.join("config.toml");
    let text = format!(
        r#"
[daemon]
{interval}listen = "127.0.0.1:0"
state_dir = "{state}"
{daemon_extra}

[prometheus]
url = "{prom}"
timeout = "2s"

[tencent]
region = "ap-guangzhou"
endpoint = "{endpoint}"
metadata_url = "http://127.0.0.1:9"
max_attempts = 1

[[clusters]]
instance_id = "{CLUSTER}"
{cooldown}{cluster_extra}

[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600

[[clusters.rules]]
name = "pending"
type = "threshold"
query = "{Q}"
above = 1000000
for = "0s"
add = 1
"#,
        state = dir.join("state").display(),
        cooldown = if cluster_extra.contains("cooldown") {
            ""
        } else {
            "cooldown = \"0s\"\n"
        },
        interval = if daemon_extra.contains("evaluation_interval") {
            ""
        } else {
            "evaluation_interval = \"1s\"\n"
        },
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn cli(args: &[&str], home: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("HOME", home)
        .env("RUST_LOG", "info")
        .env("TENCENTCLOUD_SECRET_ID", SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", SECRET_KEY)
        .env("TENCENTCLOUD_TOKEN", TOKEN);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn texts(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn sim(task_nodes: u32) -> SimHandle {
    let clock: SharedClock = Arc::new(SystemClock);
    Simulator::start(
        SimConfig {
            clusters: vec![SimCluster::new(CLUSTER).with_task_nodes(task_nodes)],
            flow_duration: Duration::from_secs(1),
            // The daemon harness signs with the simulator's default pair,
            // the CLI here with the test pair.
            credentials: vec![
                (DEFAULT_SECRET_ID.into(), DEFAULT_SECRET_KEY.into()),
                (SECRET_ID.into(), SECRET_KEY.into()),
            ],
            ..SimConfig::default()
        },
        clock,
    )
    .await
    .unwrap()
}

async fn prom() -> FakeProm {
    let p = FakeProm::start().await;
    p.set(Q, Answer::Value(0.0));
    p
}

async fn post(port: u16, path: &str, body: &str, token: Option<&str>) -> (u16, String) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut req = http
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    match req.send().await {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.text().await.unwrap_or_default())
        }
        Err(e) => (0, e.to_string()),
    }
}

fn scale_outs(sim: &SimHandle) -> usize {
    sim.ledger().for_action("ScaleOutInstance").count()
}

/// Waits until the daemon's status shows the cluster's task-node count.
async fn wait_capacity(d: &Daemon, nodes: u32) {
    eventually(
        Duration::from_secs(20),
        "the capacity in the status",
        || async {
            let (_, body) = d.get("/api/v1/status").await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            v["clusters"][0]["current"] == serde_json::json!(nodes)
        },
    )
    .await;
}

// Hole 1: an endpoint answering 307 to another host made the daemon send the
// signed body and the session token there and accept the stranger's FlowId.
#[tokio::test(flavor = "multi_thread")]
async fn emr_redirect_to_another_host_carries_nothing_there() {
    let stranger = Stranger::start("127.0.0.2").await;
    let emr = redirector(format!("http://{}/", stranger.addr)).await;
    let dir = tempfile::tempdir().unwrap();
    let p = prom().await;
    let cfg = write_config(
        dir.path(),
        &format!("http://{emr}"),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    let o = cli(
        &[
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            CLUSTER,
            "--task-count",
            "3",
        ],
        dir.path(),
    )
    .await;
    let (out, err) = texts(&o);
    assert!(
        stranger.seen().is_empty(),
        "the stranger received: {:?}",
        stranger.seen()
    );
    assert!(
        !o.status.success(),
        "a redirect is no success:\n{out}\n{err}"
    );
    assert!(
        !out.contains("stranger-reply-marker") && !out.contains(": 666"),
        "the stranger's FlowId was accepted:\n{out}"
    );
    assert!(
        err.contains("127.0.0.2"),
        "the error names the Location host:\n{err}"
    );
    assert!(!err.contains(TOKEN) && !err.contains(SECRET_KEY));
}

// Hole 2a: with dry_run = true a manual order through the daemon was sent.
#[tokio::test(flavor = "multi_thread")]
async fn manual_order_through_a_dry_run_daemon_sends_nothing() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "dry_run = true",
        "max_task_nodes = 40",
    );
    let d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    wait_capacity(&d, 3).await;
    let (code, body) = post(
        d.port,
        &format!("/api/v1/clusters/{CLUSTER}/scale-out"),
        r#"{"task_count":5}"#,
        None,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["error"].as_str().unwrap().contains("dry_run"), "{body}");
    assert_eq!(
        v["Request"]["body"]["TaskCount"], 5,
        "the rendered request: {body}"
    );
    let (code, body) = post(
        d.port,
        &format!("/api/v1/clusters/{CLUSTER}/scale-in"),
        r#"{"count":1}"#,
        None,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(scale_outs(&sim), 0);
    assert_eq!(sim.ledger().for_action("TerminateClusterNodes").count(), 0);
    // Acting alone, the command prints the rendered request and exits 1.
    drop(d);
    let o = cli(
        &[
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            CLUSTER,
            "--task-count",
            "2",
        ],
        dir.path(),
    )
    .await;
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("stdout is the rendered request");
    assert_eq!(v["body"]["TaskCount"], 2, "{out}");
    assert!(!out.contains(TOKEN) && !err.contains(TOKEN));
    assert_eq!(scale_outs(&sim), 0);
}

// Hole 2b: with max_task_nodes = 2 and 25 task nodes, a manual order sent 5.
#[tokio::test(flavor = "multi_thread")]
async fn manual_order_past_max_task_nodes_is_refused() {
    let sim = sim(25).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 2",
    );
    let d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    wait_capacity(&d, 25).await;
    let (code, body) = post(
        d.port,
        &format!("/api/v1/clusters/{CLUSTER}/scale-out"),
        r#"{"task_count":5}"#,
        None,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("max_task_nodes"), "{body}");
    assert_eq!(scale_outs(&sim), 0);
}

// Hole 3: a reload that added admin_token_file left the POST endpoints open.
#[tokio::test(flavor = "multi_thread")]
async fn reload_that_adds_a_token_file_closes_the_admin_api() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    let d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    let pause = format!("/api/v1/clusters/{CLUSTER}/pause");
    let resume = format!("/api/v1/clusters/{CLUSTER}/resume");
    assert_eq!(post(d.port, &pause, "", None).await.0, 200);
    assert_eq!(post(d.port, &resume, "", None).await.0, 200);
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        &format!("admin_token_file = \"{}\"", token_file.display()),
        "max_task_nodes = 40",
    );
    d.signal("-HUP");
    eventually(Duration::from_secs(20), "the token to apply", || async {
        post(d.port, &pause, "", None).await.0 == 401
    })
    .await;
    assert_eq!(post(d.port, &pause, "", Some(ADMIN_TOKEN)).await.0, 200);
    // And a reload that removes it opens them to loopback again.
    write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    d.signal("-HUP");
    eventually(
        Duration::from_secs(20),
        "the token to be dropped",
        || async { post(d.port, &resume, "", None).await.0 == 200 },
    )
    .await;
}

// Hole 4: after kill -9, a process on the old port got the bearer token from
// `scale-out`, and the CLI printed its reply as success.
#[tokio::test(flavor = "multi_thread")]
async fn stale_admin_addr_never_receives_the_token() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        &format!("admin_token_file = \"{}\"", token_file.display()),
        "max_task_nodes = 40",
    );
    let mut d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    let old = d.port;
    d.kill9();
    // A neighbour takes the old port (or, if it is gone, any port the stale
    // file is then pointed at).
    let listener = match TcpListener::bind(("127.0.0.1", old)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let stranger = Stranger::on(listener);
    let addr_file = dir.path().join("state").join("admin.addr");
    std::fs::write(&addr_file, format!("{}\n", stranger.addr)).unwrap();
    let order = [
        "scale-out",
        "--config",
        cfg.to_str().unwrap(),
        "--instance-id",
        CLUSTER,
        "--task-count",
        "1",
    ];
    let o = cli(&order, dir.path()).await;
    let (out, err) = texts(&o);
    assert!(
        stranger.seen().iter().all(|r| !r.contains(ADMIN_TOKEN)),
        "the stranger got the token: {:?}",
        stranger.seen()
    );
    assert!(
        !out.contains("stranger-reply-marker") && !out.contains(": 666"),
        "the stranger's reply was printed:\n{out}\n{err}"
    );
    // No daemon holds the lock, so the command acted alone.
    assert!(o.status.success(), "{out}\n{err}");
    assert_eq!(scale_outs(&sim), 1);

    // A live daemon holds the lock, but admin.addr was pointed at a
    // stranger: the stranger cannot prove it knows the token.
    let d = Daemon::start(&cfg, &dir.path().join("d2.log"), dir.path());
    std::fs::write(&addr_file, format!("{}\n", stranger.addr)).unwrap();
    let before = stranger.seen().len();
    let o = cli(&order, dir.path()).await;
    let (out, err) = texts(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("does not know the admin token"), "{err}");
    let seen = stranger.seen();
    assert!(seen.len() > before, "the proof was asked for");
    assert!(seen.iter().all(|r| !r.contains(ADMIN_TOKEN)), "{seen:?}");
    assert!(
        seen[before..]
            .iter()
            .all(|r| r.starts_with("GET /api/v1/whoami?nonce=")),
        "{seen:?}"
    );
    assert_eq!(scale_outs(&sim), 1);
    drop(d);
}

// Hole 5: absurd durations passed `check`, then panicked the daemon (a lost
// cooldown, exit 101 on SIGHUP).
#[tokio::test(flavor = "multi_thread")]
async fn absurd_durations_are_refused_by_check_and_by_reload() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    for (daemon_extra, cluster_extra, tencent, key) in [
        (
            "",
            "max_task_nodes = 40\ncooldown = \"300000y\"",
            "",
            "clusters[0].cooldown",
        ),
        (
            "evaluation_interval = \"500000000000y\"",
            "max_task_nodes = 40",
            "",
            "daemon.evaluation_interval",
        ),
        (
            "",
            "max_task_nodes = 40",
            "request_timeout = \"100000y\"",
            "tencent.request_timeout",
        ),
        (
            "flow_timeout = \"0s\"",
            "max_task_nodes = 40",
            "",
            "daemon.flow_timeout",
        ),
    ] {
        let cfg = write_config(
            dir.path(),
            &sim.endpoint(),
            &p.url(),
            daemon_extra,
            cluster_extra,
        );
        if !tencent.is_empty() {
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(
                &cfg,
                text.replace("max_attempts = 1", &format!("max_attempts = 1\n{tencent}")),
            )
            .unwrap();
        }
        let o = cli(&["check", "--config", cfg.to_str().unwrap()], dir.path()).await;
        let (out, err) = texts(&o);
        assert_eq!(o.status.code(), Some(78), "{key}: {out}\n{err}");
        assert!(
            err.contains(key) || out.contains(key),
            "{key} is named: {out}\n{err}"
        );
    }
    // A running daemon refuses such a reload and keeps going.
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    let mut d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "evaluation_interval = \"500000000000y\"",
        "max_task_nodes = 40",
    );
    d.signal("-HUP");
    eventually(Duration::from_secs(20), "the refused reload", || async {
        d.metric("emr_autoscaler_config_reload_success").await == Some(0.0)
    })
    .await;
    assert_eq!(
        d.wait_exit(Duration::from_millis(500)).await,
        None,
        "{}",
        d.log_text()
    );
    assert_eq!(d.get("/healthz").await.0, 200);
}

// Hole 6: the cluster id from the URL was logged before the token was
// checked, so `%0A` forged a log line; bodies were parsed first (400, not 401).
#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_request_cannot_forge_a_log_line() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        &format!("admin_token_file = \"{}\"", token_file.display()),
        "max_task_nodes = 40",
    );
    let d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    let forged =
        "emr-abc12345%0A2026-12-06T00:00:00Z%20INFO%20Scale-out%20accepted%20FORGED%20nodes=20";
    for (path, body) in [
        (
            format!("/api/v1/clusters/{forged}/scale-out"),
            r#"{"task_count":5}"#,
        ),
        (
            format!("/api/v1/clusters/{forged}/scale-out"),
            "not json FORGED",
        ),
        (
            format!("/api/v1/clusters/{CLUSTER}/scale-out"),
            "not json FORGED",
        ),
        (
            format!("/api/v1/clusters/{CLUSTER}/scale-in"),
            r#"{"count":"FORGED"}"#,
        ),
        (format!("/api/v1/clusters/{forged}/pause"), ""),
        ("/api/v1/clusters/FORGED".to_string(), ""),
    ] {
        let (code, answer) = post(d.port, &path, body, None).await;
        assert_eq!(code, 401, "{path}: {answer}");
        let (code, _) = post(d.port, &path, body, Some("wrong-token")).await;
        assert_eq!(code, 401, "{path}");
    }
    // The GET endpoints stay open.
    assert_eq!(d.get("/api/v1/status").await.0, 200);
    assert_eq!(d.get("/metrics").await.0, 200);
    // With the token, a bad id is refused without being echoed into the log.
    let (code, _) = post(
        d.port,
        &format!("/api/v1/clusters/{forged}/scale-out"),
        r#"{"task_count":5}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert!(code == 400 || code == 404, "{code}");
    let log = d.log_text();
    assert!(
        !log.contains("FORGED"),
        "a caller's text reached the log:\n{log}"
    );
    assert_eq!(scale_outs(&sim), 0);
    // Bodies are capped.
    let big = format!("{{\"task_count\":1,\"x\":\"{}\"}}", "a".repeat(100 * 1024));
    let (code, _) = post(
        d.port,
        &format!("/api/v1/clusters/{CLUSTER}/scale-out"),
        &big,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 413);
}

// Hole 7: after `rm -rf state_dir`, a second daemon started on the path and
// both ordered.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_state_dir_under_a_daemon_stops_it() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    let mut d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    wait_capacity(&d, 3).await;
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    // Demand now asks for nodes: the first daemon must not order any.
    p.set(Q, Answer::Value(5_000_000.0));
    let code = d.wait_exit(Duration::from_secs(20)).await;
    assert_eq!(
        code,
        Some(1),
        "the daemon exits 1 after losing its state dir:\n{}",
        d.log_text()
    );
    let log = d.log_text();
    assert!(
        log.contains("state_lost") || log.contains("state directory"),
        "{log}"
    );
    assert_eq!(
        scale_outs(&sim),
        0,
        "nothing was sent after the state was lost"
    );
    // A daemon started on the path now owns it alone.
    let d2 = Daemon::start(&cfg, &dir.path().join("d2.log"), dir.path());
    eventually(
        Duration::from_secs(20),
        "the new daemon's order",
        || async { scale_outs(&sim) >= 1 },
    )
    .await;
    drop(d2);
}

// Hole 8: timeouts always read "timed out after 0ns".
#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_names_the_timeout_that_expired() {
    let sim = sim(3).await;
    sim.inject(
        "ScaleOutInstance",
        Some(CLUSTER),
        Fault::Delay(Duration::from_secs(5)),
    );
    let dir = tempfile::tempdir().unwrap();
    let p = prom().await;
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace(
            "max_attempts = 1",
            "max_attempts = 1\nrequest_timeout = \"1s\"",
        ),
    )
    .unwrap();
    let o = cli(
        &[
            "scale-out",
            "--config",
            cfg.to_str().unwrap(),
            "--instance-id",
            CLUSTER,
            "--task-count",
            "1",
        ],
        dir.path(),
    )
    .await;
    let (out, err) = texts(&o);
    assert!(!o.status.success());
    assert!(!err.contains("0ns"), "{err}");
    assert!(err.contains("tencent.request_timeout (1s)"), "{out}\n{err}");
}

// Lesser: an unwritable state directory shows on /readyz, and orders that
// could not be recorded are never sent.
#[tokio::test(flavor = "multi_thread")]
async fn unwritable_state_shows_on_readyz_and_sends_nothing() {
    let sim = sim(3).await;
    let p = prom().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &sim.endpoint(),
        &p.url(),
        "",
        "max_task_nodes = 40",
    );
    let d = Daemon::start(&cfg, &dir.path().join("d.log"), dir.path());
    wait_capacity(&d, 3).await;
    // A directory where the temporary file goes makes every save fail, even
    // for root.
    std::fs::create_dir(dir.path().join("state").join("state.json.tmp")).unwrap();
    p.set(Q, Answer::Value(5_000_000.0));
    eventually(
        Duration::from_secs(20),
        "readyz naming the state",
        || async {
            let (code, body) = d.get("/readyz").await;
            code == 503 && body.contains("state_lost")
        },
    )
    .await;
    assert_eq!(scale_outs(&sim), 0);
    assert_eq!(
        d.metric("emr_autoscaler_decisions_total{cluster=\"emr-abc12345\",outcome=\"scale_out\",rule=\"pending\"}").await,
        Some(0.0),
        "no order was counted that was never sent"
    );
}
