//! History, webhooks and the operator commands, with the daemon in this
//! process (on a clock 20 times faster than real time, shared with the EMR
//! simulator), webhook receivers on loopback, and the real binary for
//! `status`, `history`, `pause` and `resume`.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests wait in real time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::support::daemon_proc::{BIN, eventually, eventually_or};
use crate::support::fake_prom::{Answer, FakeProm};
use crate::support::inproc::InProcess;
use emr_autoscaler::clock::{ScaledClock, SharedClock, wall_now};
use emr_autoscaler::sim::{
    BuiltinStrategy, Fault, SimCluster, SimConfig, SimHandle, SimNode, Simulator,
};

const CLUSTER: &str = "emr-abc12345";
const Q: &str = "sum(yarn_pending_memory_mb)";
const SCALE_OUT: &str = "ScaleOutInstance";
const DING_SECRET: &str = "SEC-ding-secret-0123456789";
const ADMIN_TOKEN: &str = "admin-token-for-history-tests";
const SPEED: f64 = 20.0;

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    query: Option<String>,
    body: Value,
}

/// Webhook receivers on one loopback port: `/hang` takes a request and never
/// answers, `/refuse` answers 400, every other path 200 `{"errcode":0}`.
#[derive(Clone)]
struct Receiver {
    addr: std::net::SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let kept = hits.clone();
        let app =
            axum::Router::new().fallback(move |uri: axum::http::Uri, body: axum::body::Bytes| {
                let kept = kept.clone();
                async move {
                    let path = uri.path().to_string();
                    kept.lock().unwrap().push(Hit {
                        path: path.clone(),
                        query: uri.query().map(str::to_string),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    match path.as_str() {
                        "/hang" => std::future::pending::<(axum::http::StatusCode, String)>().await,
                        "/refuse" => (axum::http::StatusCode::BAD_REQUEST, "no".to_string()),
                        _ => (
                            axum::http::StatusCode::OK,
                            r#"{"errcode":0,"errmsg":"ok"}"#.to_string(),
                        ),
                    }
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { addr, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

struct Rig {
    sim: SimHandle,
    prom: FakeProm,
    dir: tempfile::TempDir,
    clock: SharedClock,
    receiver: Receiver,
}

/// Nodes the daemon may remove carry this tag.
const OWNER: (&str, &str) = ("managed-by", "emr-autoscaler");

impl Rig {
    async fn new() -> Rig {
        Rig::with(SPEED, |c| c).await
    }

    /// On a clock `speed` times faster than real time, with the cluster
    /// changed by `tweak`.
    async fn with(speed: f64, tweak: impl FnOnce(SimCluster) -> SimCluster) -> Rig {
        let clock: SharedClock = Arc::new(ScaledClock::new(wall_now(), speed));
        let cluster = tweak(
            SimCluster::new(CLUSTER)
                .with_task_nodes(1)
                .with_node(SimNode::task().with_tag(OWNER.0, OWNER.1)),
        );
        let sim = Simulator::start(
            SimConfig {
                clusters: vec![cluster],
                flow_duration: Duration::from_secs(10),
                ..SimConfig::default()
            },
            clock.clone(),
        )
        .await
        .unwrap();
        let prom = FakeProm::start().await;
        prom.set(Q, Answer::Value(0.0));
        Rig {
            sim,
            prom,
            dir: tempfile::tempdir().unwrap(),
            clock,
            receiver: Receiver::start().await,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the config with `webhooks` (format, path on the receiver).
    fn write_config(&self, webhooks: &[(&str, &str)]) -> PathBuf {
        std::fs::write(self.path("admin-token"), ADMIN_TOKEN).unwrap();
        std::fs::write(self.path("ding-secret"), DING_SECRET).unwrap();
        let mut hooks = String::new();
        for (format, path) in webhooks {
            let url_file = self.path(&format!("url-{}", path.trim_start_matches('/')));
            std::fs::write(&url_file, format!("{}\n", self.receiver.url(path))).unwrap();
            hooks.push_str(&format!(
                "[[notify.webhooks]]\nname = \"{}\"\nurl_file = \"{}\"\nformat = \"{format}\"\n",
                path.trim_start_matches('/'),
                url_file.display()
            ));
            if *format == "dingtalk" {
                hooks.push_str(&format!(
                    "secret_file = \"{}\"\n",
                    self.path("ding-secret").display()
                ));
            }
        }
        let text = format!(
            r#"
[daemon]
evaluation_interval = "1s"
listen = "127.0.0.1:0"
state_dir = "{state}"
flow_timeout = "1m"
admin_token_file = "{token}"

[prometheus]
url = "{prom}"
timeout = "2s"

[tencent]
region = "ap-guangzhou"
endpoint = "{sim}"
metadata_url = "http://127.0.0.1:9"

{hooks}
[[clusters]]
instance_id = "{CLUSTER}"
max_task_nodes = 40
cooldown = "0s"

[clusters.scale_out]
pay_mode = 0
time_unit = "s"
time_span = 3600

[clusters.scale_in]
enabled = true
grace_period = "60s"
owner_tag = {{ key = "{key}", value = "{value}" }}

[[clusters.rules]]
name = "pending"
type = "threshold"
query = "{Q}"
above = 100
for = "0s"
add = 2
"#,
            state = self.path("state").display(),
            token = self.path("admin-token").display(),
            prom = self.prom.url(),
            sim = self.sim.endpoint(),
            key = OWNER.0,
            value = OWNER.1,
        );
        let config = self.path("config.toml");
        std::fs::write(&config, text).unwrap();
        config
    }

    /// The real binary with `args`, the config appended.
    async fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--config")
            .arg(self.path("config.toml"))
            .env_clear()
            .env("HOME", self.dir.path())
            .env("RUST_LOG", "warn");
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// Asks the daemon for a manual order or removal; the HTTP status.
    async fn ask(&self, d: &InProcess, verb: &str, body: Value) -> (u16, Value) {
        let http =
            emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(30))
                .unwrap();
        let r = http
            .post(d.url(&format!("/api/v1/clusters/{CLUSTER}/{verb}")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    async fn wait_idle(&self, d: &InProcess) {
        eventually_or(
            Duration::from_secs(30),
            "no operation open",
            || d.log(),
            || async {
                let s = d.status().await;
                s["clusters"][0]["operation"].is_null() && !s["clusters"][0]["current"].is_null()
            },
        )
        .await;
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn both(o: &Output) -> String {
    format!("{}\n{}", stdout(o), String::from_utf8_lossy(&o.stderr))
}

fn kinds(events: &[Value]) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for e in events {
        *n.entry(e["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    n
}

/// BASE64(HMAC-SHA256(secret, "MS\nsecret")) as the openssl command line
/// computes it: independent of the product's HMAC.
fn openssl_sign(secret: &str, ms: &str) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", secret, "-binary"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (Debian package openssl)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{ms}\n{secret}").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

fn query_pairs(q: &str) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

/// Sorted by time then kind, for comparing lists from different places.
fn sorted(mut events: Vec<Value>) -> Vec<Value> {
    events.sort_by_key(|e| {
        (
            e["at"].to_string(),
            e["kind"].to_string(),
            e["client_token"].to_string(),
        )
    });
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_reaches_the_history_the_cli_and_every_webhook_once() {
    let rig = Rig::new().await;
    let formats = [
        ("json", "/json"),
        ("wecom", "/wecom"),
        ("dingtalk", "/ding"),
        ("slack", "/slack"),
    ];
    let config = rig.write_config(&formats);
    let mut d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;

    // 1. An order.
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 2})).await;
    assert_eq!(code, 200, "{body}");
    rig.wait_idle(&d).await;
    // 2. A removal (of one of the nodes just ordered: they carry the owner tag).
    let (code, body) = rig.ask(&d, "scale-in", json!({"count": 1})).await;
    assert_eq!(code, 200, "{body}");
    rig.wait_idle(&d).await;
    // 3. A refusal by the API.
    rig.sim.inject(
        SCALE_OUT,
        Some(CLUSTER),
        Fault::ApiError("ResourcesSoldOut.CvmSoldOut".into()),
    );
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 1})).await;
    assert_ne!(code, 200, "{body}");
    // 4. A breaker trip: an order whose flow outlives flow_timeout.
    rig.sim
        .set_flow_duration(CLUSTER, Some(Duration::from_secs(3600)));
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 1})).await;
    assert_eq!(code, 200, "{body}");
    eventually_or(
        Duration::from_secs(30),
        "the breaker",
        || d.log(),
        || async { !d.status().await["clusters"][0]["breaker"].is_null() },
    )
    .await;
    // 5. A pause, then a resume, through the command line (the token goes
    // only to a daemon that proves it knows it).
    let o = rig.cli(&["pause", "--instance-id", CLUSTER]).await;
    assert!(o.status.success(), "{}", both(&o));
    rig.sim.set_flow_duration(CLUSTER, None);
    let o = rig.cli(&["resume", "--instance-id", CLUSTER]).await;
    assert!(o.status.success(), "{}", both(&o));

    let want: BTreeMap<String, usize> = [
        ("scale_out", 2),
        ("scale_in", 1),
        ("refused", 1),
        ("breaker", 1),
        ("pause", 1),
        ("resume", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_string(), n))
    .collect();
    let total: usize = want.values().sum();
    eventually_or(
        Duration::from_secs(20),
        "every event in every webhook",
        || format!("{:#?}\n{}", rig.receiver.hits.lock().unwrap(), d.log()),
        || async {
            formats
                .iter()
                .all(|(_, p)| rig.receiver.hits(p).len() >= total)
        },
    )
    .await;
    let events = d.history().await;
    assert_eq!(kinds(&events), want, "{events:#?}");
    // Newest first.
    assert!(
        events
            .windows(2)
            .all(|w| w[0]["at"].as_str() >= w[1]["at"].as_str()),
        "{events:#?}"
    );
    let order = events.iter().find(|e| e["kind"] == "scale_out").unwrap();
    assert_eq!(order["offering"], "default");
    assert!(
        order["client_token"].is_string() && order["flow_id"].is_i64(),
        "{order}"
    );
    let refused = events.iter().find(|e| e["kind"] == "refused").unwrap();
    assert_eq!(refused["outcome"], "sold_out");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("ResourcesSoldOut.CvmSoldOut"),
        "{refused}"
    );
    let removal = events.iter().find(|e| e["kind"] == "scale_in").unwrap();
    assert_eq!(removal["nodes"], 1);
    for e in &events {
        let fields: Vec<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            fields.len(),
            9,
            "at, instance_id, kind, nodes, offering, client_token, flow_id, outcome, reason: {e}"
        );
        assert!(!e["reason"].as_str().unwrap().is_empty(), "{e}");
    }

    // `history --json` shows the same events.
    let o = rig.cli(&["history", "--json", "--limit", "100"]).await;
    assert!(o.status.success(), "{}", both(&o));
    let cli: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(cli["events"].as_array().unwrap(), &events);
    let o = rig.cli(&["history", "--instance-id", CLUSTER]).await;
    assert!(o.status.success(), "{}", both(&o));
    let table = stdout(&o);
    assert!(
        table.starts_with("AT ") && table.contains("sold_out"),
        "{table}"
    );
    println!("history:\n{table}");

    // Every webhook got each event once, in its format.
    let json_bodies: Vec<Value> = rig
        .receiver
        .hits("/json")
        .into_iter()
        .map(|h| h.body)
        .collect();
    assert_eq!(sorted(json_bodies), sorted(events.clone()));
    let by_reason = |text: &str| {
        events
            .iter()
            .filter(|e| text.contains(e["reason"].as_str().unwrap()))
            .count()
    };
    let wecom = rig.receiver.hits("/wecom");
    assert_eq!(wecom.len(), total);
    for h in &wecom {
        let content = h.body["markdown"]["content"].as_str().unwrap();
        assert_eq!(
            h.body,
            json!({"msgtype": "markdown", "markdown": {"content": content}})
        );
        assert!(
            content.contains(CLUSTER) && by_reason(content) >= 1,
            "{content}"
        );
    }
    println!(
        "a WeCom message body:\n{}",
        serde_json::to_string_pretty(&wecom[0].body).unwrap()
    );
    let ding = rig.receiver.hits("/ding");
    assert_eq!(ding.len(), total);
    for h in &ding {
        let markdown = &h.body["markdown"];
        assert_eq!(h.body["msgtype"], "markdown");
        assert_eq!(markdown.as_object().unwrap().len(), 2, "{}", h.body);
        assert!(markdown["title"].as_str().unwrap().contains(CLUSTER));
        let pairs = query_pairs(h.query.as_deref().unwrap_or_default());
        let ms = &pairs["timestamp"];
        assert_eq!(pairs["sign"], openssl_sign(DING_SECRET, ms), "{pairs:?}");
    }
    let slack = rig.receiver.hits("/slack");
    assert_eq!(slack.len(), total);
    for h in &slack {
        assert_eq!(h.body.as_object().unwrap().len(), 1);
        assert!(by_reason(h.body["text"].as_str().unwrap()) >= 1);
    }
    assert_eq!(
        d.metric("emr_autoscaler_notify_errors_total{webhook=\"wecom\"}")
            .await,
        Some(0.0)
    );
    // No URL, secret or token in the log.
    let log = d.log();
    for secret in [DING_SECRET, ADMIN_TOKEN, &rig.receiver.url("/ding")] {
        assert!(!log.contains(secret), "{secret} logged");
    }

    // The events survive a restart, and none is told again.
    assert!(d.stop().await.is_ok(), "{}", d.log());
    let lines = std::fs::read_to_string(rig.path("state/history.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), total, "{lines}");
    let d = InProcess::start(&config, rig.clock.clone()).await;
    assert_eq!(d.history().await, events);
    let decided = d.decisions().await;
    eventually(Duration::from_secs(10), "two evaluations", || async {
        d.decisions().await >= decided + 2.0
    })
    .await;
    for (_, p) in &formats {
        assert_eq!(rig.receiver.hits(p).len(), total, "{p} heard again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_refusing_webhook_never_delays_an_order() {
    let rig = Rig::new().await;
    let config = rig.write_config(&[("json", "/hang"), ("slack", "/refuse")]);
    let d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 1})).await;
    assert_eq!(code, 200, "{body}");
    eventually(
        Duration::from_secs(10),
        "the hanging receiver holds a request",
        || async { !rig.receiver.hits("/hang").is_empty() },
    )
    .await;
    rig.wait_idle(&d).await;
    // The receiver still holds the first event; the next order goes at once.
    let asked = Instant::now();
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 1})).await;
    let took = asked.elapsed();
    assert_eq!(code, 200, "{body}");
    assert!(took < Duration::from_secs(3), "the order took {took:?}");
    assert_eq!(
        rig.receiver.hits("/hang").len(),
        1,
        "the first is still hanging"
    );
    // A 400 is not retried and is counted.
    eventually(Duration::from_secs(10), "two refusals counted", || async {
        d.metric("emr_autoscaler_notify_errors_total{webhook=\"refuse\"}")
            .await
            == Some(2.0)
    })
    .await;
    assert_eq!(rig.receiver.hits("/refuse").len(), 2);
    assert_eq!(kinds(&d.history().await)["scale_out"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pause_and_resume_need_a_daemon_and_history_reads_the_file_without_one() {
    let rig = Rig::new().await;
    let config = rig.write_config(&[]);
    // No daemon: status, pause and resume say so and exit 1.
    for args in [
        vec!["status"],
        vec!["pause", "--instance-id", CLUSTER],
        vec!["resume", "--instance-id", CLUSTER],
    ] {
        let o = rig.cli(&args).await;
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", both(&o));
        assert!(
            both(&o).contains("no emr-autoscaler daemon answers"),
            "{args:?}: {}",
            both(&o)
        );
    }
    let mut d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;
    let o = rig.cli(&["status"]).await;
    assert!(o.status.success(), "{}", both(&o));
    let table = stdout(&o);
    println!("status:\n{table}");
    let line = table.lines().find(|l| l.starts_with(CLUSTER)).unwrap();
    assert!(line.contains(" no "), "{table}");
    let o = rig.cli(&["pause", "--instance-id", CLUSTER]).await;
    assert!(o.status.success(), "{}", both(&o));
    let o = rig.cli(&["status", "--json"]).await;
    let status: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(status["clusters"][0]["paused"], true);
    let o = rig.cli(&["status"]).await;
    assert!(stdout(&o).contains("yes"), "{}", stdout(&o));
    let o = rig.cli(&["resume", "--instance-id", CLUSTER]).await;
    assert!(o.status.success(), "{}", both(&o));
    assert_eq!(d.status().await["clusters"][0]["paused"], false);
    // A cluster that is not configured.
    let o = rig.cli(&["pause", "--instance-id", "emr-zzzzzzzz"]).await;
    assert_eq!(o.status.code(), Some(78), "{}", both(&o));
    assert!(d.stop().await.is_ok(), "{}", d.log());

    // No daemon: history reads the file.
    let o = rig.cli(&["history", "--json"]).await;
    assert!(o.status.success(), "{}", both(&o));
    assert!(
        both(&o).contains("read the history directly"),
        "{}",
        both(&o)
    );
    let events: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["resume", "pause"]);
    let o = rig.cli(&["status"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", both(&o));
}

/// `check` refuses a webhook URL that would leave in clear text.
#[test]
fn check_refuses_a_plain_http_webhook_off_loopback_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, "http://hooks.example.com/secret-key-123\n").unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[tencent]\nregion = \"ap-guangzhou\"\n[[clusters]]\ninstance_id = \"{CLUSTER}\"\nmax_task_nodes = 2\n\
             [clusters.scale_out]\npay_mode = 0\ntime_unit = \"s\"\ntime_span = 3600\n\
             [[notify.webhooks]]\nurl_file = \"{}\"\nformat = \"slack\"\n",
            url_file.display()
        ),
    )
    .unwrap();
    let o = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(78), "{}", both(&o));
    let text = both(&o);
    assert!(
        text.contains("notify.webhooks[0].url_file") && text.contains("https"),
        "{text}"
    );
    assert!(!text.contains("secret-key-123"), "{text}");
    std::fs::write(&url_file, "https://hooks.example.com/secret-key-123\n").unwrap();
    let o = Command::new(BIN)
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", both(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_re_sent_under_its_token_is_one_event() {
    let rig = Rig::new().await;
    let config = rig.write_config(&[("json", "/json")]);
    let d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;
    rig.sim
        .inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 1})).await;
    assert_eq!(code, 200, "{body}");
    rig.wait_idle(&d).await;
    let sent: Vec<Option<String>> = rig
        .sim
        .ledger()
        .for_action(SCALE_OUT)
        .map(|e| e.client_token.clone())
        .collect();
    assert!(
        sent.len() >= 2 && sent.iter().all(|t| *t == sent[0]),
        "{sent:?}"
    );
    eventually(
        Duration::from_secs(10),
        "the event at the webhook",
        || async { !rig.receiver.hits("/json").is_empty() },
    )
    .await;
    let events = d.history().await;
    assert_eq!(kinds(&events)["scale_out"], 1, "{events:#?}");
    assert_eq!(events[0]["client_token"].as_str(), sent[0].as_deref());
    assert_eq!(rig.receiver.hits("/json").len(), 1);
}

/// An order whose every answer is lost, then a pause: the paused operation
/// is not re-sent but judged from the task-node count once the cluster is
/// idle, and that judgement is one `judged_executed` event, at the history
/// and at the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_judged_executed_after_lost_answers_is_one_event() {
    let rig = Rig::new().await;
    let config = rig.write_config(&[("json", "/json")]);
    let d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;
    let before = rig.sim.cluster(CLUSTER).map(|c| c.task_nodes);
    rig.sim
        .set_standing_fault(SCALE_OUT, Some(CLUSTER), Some(Fault::DropAfterExecute));
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 2})).await;
    // No answer came: a gateway error naming the token, whose intent stays
    // and is judged.
    assert_eq!(code, 502, "{body}");
    assert_eq!(body["class"], "transport", "{body}");
    let (code, body) = rig.ask(&d, "pause", json!({})).await;
    assert_eq!(code, 200, "{body}");
    rig.sim.set_standing_fault(SCALE_OUT, Some(CLUSTER), None);
    eventually_or(
        Duration::from_secs(30),
        "a judged_executed event",
        || d.log(),
        || async {
            d.history()
                .await
                .iter()
                .any(|e| e["outcome"] == "judged_executed")
        },
    )
    .await;
    let events = d.history().await;
    let judged: Vec<&Value> = events.iter().filter(|e| e["kind"] == "scale_out").collect();
    assert_eq!(judged.len(), 1, "{events:#?}");
    assert_eq!(judged[0]["outcome"], "judged_executed", "{events:#?}");
    assert_eq!(judged[0]["nodes"], 2, "{events:#?}");
    let tokens: Vec<Option<String>> = rig
        .sim
        .ledger()
        .for_action(SCALE_OUT)
        .map(|e| e.client_token.clone())
        .collect();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|t| *t == tokens[0]),
        "{tokens:?}"
    );
    assert_eq!(judged[0]["client_token"].as_str(), tokens[0].as_deref());
    // Executed once.
    assert_eq!(
        rig.sim.cluster(CLUSTER).map(|c| c.task_nodes),
        before.map(|n| n + 2),
        "{tokens:?}"
    );
    let judged_hits = || {
        rig.receiver
            .hits("/json")
            .iter()
            .filter(|h| h.body["outcome"] == "judged_executed")
            .count()
    };
    eventually(
        Duration::from_secs(10),
        "the event at the webhook",
        || async { judged_hits() > 0 },
    )
    .await;
    assert_eq!(judged_hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_webhook_and_an_invalid_one_keeps_the_running_ones() {
    let rig = Rig::new().await;
    let config = rig.write_config(&[]);
    let d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;
    rig.write_config(&[("slack", "/slack")]);
    d.reload().await;
    eventually(Duration::from_secs(10), "the reload", || async {
        d.log().contains("[notify] read again")
    })
    .await;
    let o = rig.cli(&["pause", "--instance-id", CLUSTER]).await;
    assert!(o.status.success(), "{}", both(&o));
    eventually(
        Duration::from_secs(10),
        "the pause at the new webhook",
        || async { rig.receiver.hits("/slack").len() == 1 },
    )
    .await;
    // A rotated URL (the same config, the file rewritten) applies with the
    // next reload.
    std::fs::write(rig.path("url-slack"), rig.receiver.url("/rotated")).unwrap();
    d.reload().await;
    eventually(Duration::from_secs(10), "the second reload", || async {
        d.log().matches("[notify] read again").count() >= 2
    })
    .await;
    let (code, body) = rig.ask(&d, "resume", json!({})).await;
    assert_eq!(code, 200, "{body}");
    eventually(
        Duration::from_secs(10),
        "the resume at the rotated URL",
        || async { rig.receiver.hits("/rotated").len() == 1 },
    )
    .await;
    assert_eq!(
        rig.receiver.hits("/slack").len(),
        1,
        "the old URL hears nothing more"
    );
    let (code, body) = rig.ask(&d, "pause", json!({})).await;
    assert_eq!(code, 200, "{body}");
    // A reload the validation refuses keeps the webhook as it was.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("format = \"slack\"", "format = \"teams\""),
    )
    .unwrap();
    d.reload().await;
    eventually(Duration::from_secs(10), "the refused reload", || async {
        d.log().contains("Reload refused")
    })
    .await;
    // (The command line would refuse the file now; the running daemon is
    // asked directly.)
    let (code, body) = rig.ask(&d, "resume", json!({})).await;
    assert_eq!(code, 200, "{body}");
    eventually(
        Duration::from_secs(10),
        "the resume at the webhook",
        || async { rig.receiver.hits("/rotated").len() == 3 },
    )
    .await;
    assert!(
        rig.receiver.hits("/rotated")[2].body["text"]
            .as_str()
            .unwrap()
            .contains("resumed")
    );
    assert_eq!(rig.receiver.hits("/slack").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_and_its_end_and_lost_nodes_are_events_once() {
    // Tencent's strategies are read every 10 minutes: 5 s at 120 times.
    let rig = Rig::with(120.0, |c| {
        c.with_builtin_strategy(BuiltinStrategy::load(7, "cpu-high"))
    })
    .await;
    let config = rig.write_config(&[("json", "/json")]);
    let mut d = InProcess::start(&config, rig.clock.clone()).await;
    eventually_or(
        Duration::from_secs(10),
        "the conflict event",
        || d.log(),
        || async { kinds(&d.history().await).get("conflict") == Some(&1) },
    )
    .await;
    // A restart during the conflict tells nothing new.
    assert!(d.stop().await.is_ok(), "{}", d.log());
    let d = InProcess::start(&config, rig.clock.clone()).await;
    rig.wait_idle(&d).await;
    assert!(rig.sim.clear_builtin(CLUSTER));
    eventually_or(
        Duration::from_secs(20),
        "the end of the conflict",
        || d.log(),
        || async { kinds(&d.history().await).get("conflict") == Some(&2) },
    )
    .await;
    let events = d.history().await;
    let outcomes: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "conflict")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["off", "on"], "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "conflict" && e["reason"].as_str().unwrap().contains("cpu-high"))
    );
    // Two of the four task nodes vanish with no removal of ours.
    rig.wait_idle(&d).await;
    let (code, body) = rig.ask(&d, "scale-out", json!({"task_count": 2})).await;
    assert_eq!(code, 200, "{body}");
    rig.wait_idle(&d).await;
    eventually_or(
        Duration::from_secs(10),
        "four task nodes seen",
        || {
            format!(
                "{:#}",
                rig.sim.cluster(CLUSTER).map(|c| c.task_nodes).unwrap_or(0)
            )
        },
        || async { d.status().await["clusters"][0]["current"] == 4 },
    )
    .await;
    // A drop is a certain loss only against a count taken after the order
    // ended: let a few evaluations (1 s each) pass on fresh counts first.
    let (t0, after) = (rig.clock.now(), d.decisions().await);
    eventually(
        Duration::from_secs(10),
        "evaluations after the order",
        || async {
            d.decisions().await >= after + 3.0
                && rig.clock.now() - t0 >= chrono::Duration::seconds(3)
        },
    )
    .await;
    assert!(rig.sim.set_task_nodes(CLUSTER, 2));
    eventually_or(
        Duration::from_secs(10),
        "the loss",
        || d.log(),
        || async { kinds(&d.history().await).get("lost_nodes") == Some(&1) },
    )
    .await;
    let events = d.history().await;
    let lost = events.iter().find(|e| e["kind"] == "lost_nodes").unwrap();
    assert_eq!(lost["nodes"], 2, "{lost}");
    eventually(
        Duration::from_secs(10),
        "every event at the webhook",
        || async { rig.receiver.hits("/json").len() == events.len() },
    )
    .await;
    // Our own removal is not a loss.
    let (code, body) = rig.ask(&d, "scale-in", json!({"count": 1})).await;
    assert_eq!(code, 200, "{body}");
    rig.wait_idle(&d).await;
    eventually(Duration::from_secs(10), "the removal done", || async {
        d.status().await["clusters"][0]["current"] == 1
    })
    .await;
    let after = d.decisions().await;
    eventually(Duration::from_secs(10), "more evaluations", || async {
        d.decisions().await >= after + 3.0
    })
    .await;
    assert_eq!(kinds(&d.history().await).get("lost_nodes"), Some(&1));
}
