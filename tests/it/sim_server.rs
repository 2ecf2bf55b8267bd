//! Integration tests of the simulated EMR API over real HTTP.
//!
//! Each test starts a simulator on 127.0.0.1:0 with a manual clock and talks
//! to it with reqwest, signing requests with the small TC3 signer below
//! (deliberately separate from the simulator's verifier).

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests sign with the wall clock.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use emr_autoscaler::clock::ManualClock;
use emr_autoscaler::sim::{Fault, Handled, SimCluster, SimConfig, SimHandle, Simulator};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::daemon_proc::eventually;

const ID: &str = "AKIDtest0000000000000000000000000000";
const KEY: &str = "test-secret-key";
const A: &str = "emr-aaaaaaaa";
const B: &str = "emr-bbbbbbbb";

fn hmac(key: &[u8], msg: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The `Authorization` header for a POST / with this body.
fn authorization(id: &str, key: &str, host: &str, ts: i64, body: &str) -> String {
    let date = DateTime::from_timestamp(ts, 0)
        .expect("ts")
        .format("%Y-%m-%d")
        .to_string();
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{}",
        hex::encode(Sha256::digest(body))
    );
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{date}/emr/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical))
    );
    let k = hmac(format!("TC3{key}").as_bytes(), &date);
    let k = hmac(&hmac(&k, "emr"), "tc3_request");
    let sig = hex::encode(hmac(&k, &to_sign));
    format!(
        "TC3-HMAC-SHA256 Credential={id}/{date}/emr/tc3_request, SignedHeaders=content-type;host, Signature={sig}"
    )
}

/// A reqwest client; reqwest needs a rustls provider even for plain HTTP.
fn http_client(timeout: Duration) -> reqwest::Client {
    // Err only means another test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

struct Env {
    sim: SimHandle,
    clock: ManualClock,
    http: reqwest::Client,
}

/// How to sign one request.
struct Sign<'a> {
    id: &'a str,
    key: &'a str,
    ts: i64,
    version: &'a str,
}

impl Default for Sign<'_> {
    fn default() -> Self {
        Sign {
            id: ID,
            key: KEY,
            ts: Utc::now().timestamp(),
            version: "2019-01-03",
        }
    }
}

impl Env {
    async fn start(tweak: impl FnOnce(&mut SimConfig)) -> Self {
        let clock = ManualClock::new(DateTime::from_timestamp(1_700_000_000, 0).expect("ts"));
        let mut config = SimConfig {
            clusters: vec![SimCluster::new(A).with_task_nodes(2), SimCluster::new(B)],
            credentials: vec![(ID.into(), KEY.into())],
            ..SimConfig::default()
        };
        tweak(&mut config);
        let sim = Simulator::start(config, Arc::new(clock.clone()))
            .await
            .expect("starts");
        let http = http_client(Duration::from_secs(5));
        Env { sim, clock, http }
    }

    async fn send_raw(
        &self,
        action: &str,
        body: &str,
        sign: Sign<'_>,
    ) -> reqwest::Result<reqwest::Response> {
        let host = self.sim.addr().to_string();
        self.http
            .post(self.sim.endpoint())
            .header("Content-Type", "application/json")
            .header("X-TC-Action", action)
            .header("X-TC-Version", sign.version)
            .header("X-TC-Region", "ap-guangzhou")
            .header("X-TC-Timestamp", sign.ts.to_string())
            .header(
                "Authorization",
                authorization(sign.id, sign.key, &host, sign.ts, body),
            )
            .body(body.to_owned())
            .send()
            .await
    }

    /// Sends a signed request and returns `Response`, asserting HTTP 200.
    async fn call_with(&self, action: &str, body: Value, sign: Sign<'_>) -> Value {
        let resp = self
            .send_raw(action, &body.to_string(), sign)
            .await
            .expect("answer");
        assert_eq!(resp.status(), 200);
        let json: Value = resp.json().await.expect("json body");
        json["Response"].clone()
    }

    async fn call(&self, action: &str, body: Value) -> Value {
        self.call_with(action, body, Sign::default()).await
    }

    async fn scale_out(&self, id: &str, task: u32, token: &str) -> Value {
        let body = json!({"InstanceId": id, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": task, "ClientToken": token});
        self.call("ScaleOutInstance", body).await
    }

    async fn describe(&self, id: &str) -> Value {
        let body = json!({"DisplayStrategy": "clusterList", "InstanceIds": [id], "ProjectId": -1});
        let r = self.call("DescribeInstances", body).await;
        assert_eq!(r["TotalCnt"], 1, "{r}");
        r["ClusterList"][0].clone()
    }

    async fn flow_status(&self, id: &str, flow: &Value) -> Value {
        let body =
            json!({"InstanceId": id, "FlowParam": {"FKey": "FlowId", "FValue": flow.to_string()}});
        self.call("DescribeClusterFlowStatusDetail", body).await
    }
}

fn code(r: &Value) -> &str {
    r["Error"]["Code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn scale_out_flow_adds_nodes_after_the_clock_moves() {
    let env = Env::start(|_| {}).await;
    let r = env.scale_out(A, 3, "tok-happy").await;
    assert_eq!(code(&r), "", "{r}");
    assert_eq!(r["InstanceId"], A);
    assert_eq!(r["ClientToken"], "tok-happy");
    assert!(
        r["DealNames"][0]
            .as_str()
            .is_some_and(|d| d.starts_with("deal-"))
    );
    assert!(r["BillId"].is_string() && r["TraceId"].is_string() && r["RequestId"].is_string());
    let flow = r["FlowId"].clone();
    assert!(flow.is_u64());

    let c = env.describe(A).await;
    assert_eq!(
        (
            c["ClusterId"].clone(),
            c["Status"].clone(),
            c["Config"]["TaskNodeSize"].clone()
        ),
        (json!(A), json!(4), json!(2))
    );
    assert_eq!(env.flow_status(A, &flow).await["FlowTotalStatus"], 0);

    env.clock.advance(Duration::from_secs(30));
    let s = env.flow_status(A, &flow).await;
    assert_eq!(
        (s["FlowTotalStatus"].clone(), s["FlowTotalProgress"].clone()),
        (json!(1), json!(0.5))
    );

    env.clock.advance(Duration::from_secs(30));
    let c = env.describe(A).await;
    assert_eq!(
        (c["Status"].clone(), c["Config"]["TaskNodeSize"].clone()),
        (json!(2), json!(5))
    );
    assert_eq!(env.flow_status(A, &flow).await["FlowTotalStatus"], 2);
    let nodes = env
        .call(
            "DescribeClusterNodes",
            json!({"InstanceId": A, "NodeFlag": "task", "Offset": 0, "Limit": 2}),
        )
        .await;
    assert_eq!(nodes["TotalCnt"], 5);
    assert_eq!(nodes["NodeList"].as_array().map(Vec::len), Some(2));

    let snap = env.sim.cluster(A).expect("cluster");
    assert_eq!(
        (snap.task_nodes, snap.task_nodes_added, snap.flows_started),
        (5, 3, 1)
    );
    let ledger = env.sim.ledger();
    assert_eq!(ledger.flows_started(A), 1);
    assert_eq!(ledger.nodes_ordered(A), 3);
    assert!(
        ledger
            .entries()
            .iter()
            .all(|e| e.secret_id.as_deref() == Some(ID))
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn repeated_client_token_returns_the_original_answer() {
    let env = Env::start(|_| {}).await;
    let first = env.scale_out(A, 2, "tok-dup").await;
    let again = env.scale_out(A, 2, "tok-dup").await;
    for field in [
        "FlowId",
        "InstanceId",
        "ClientToken",
        "DealNames",
        "BillId",
        "TraceId",
    ] {
        assert_eq!(first[field], again[field], "{field}");
    }
    assert_ne!(first["RequestId"], again["RequestId"]);
    env.clock.advance(Duration::from_secs(60));
    // Still within 5 wall-clock minutes, even though the flow is long done.
    let late = env.scale_out(A, 2, "tok-dup").await;
    assert_eq!(late["FlowId"], first["FlowId"]);
    assert_eq!(env.describe(A).await["Config"]["TaskNodeSize"], 4);

    let ledger = env.sim.ledger();
    assert_eq!(ledger.flows_started(A), 1);
    let replays = ledger
        .for_action("ScaleOutInstance")
        .filter(|e| {
            matches!(
                e.outcome,
                Handled::Ok {
                    deduplicated: true,
                    ..
                }
            )
        })
        .count();
    assert_eq!(replays, 2);
    assert!(ledger.tokens_with_several_flows().is_empty());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn a_running_flow_makes_the_cluster_busy() {
    let env = Env::start(|_| {}).await;
    let first = env.scale_out(A, 1, "tok-1").await;
    let busy = env.scale_out(A, 1, "tok-2").await;
    assert_eq!(code(&busy), "ResourceInUse.InstanceInProcess");
    assert!(busy["RequestId"].is_string());
    // Another cluster is not affected.
    assert_eq!(code(&env.scale_out(B, 1, "tok-3").await), "");
    env.clock.advance(Duration::from_secs(60));
    let second = env.scale_out(A, 1, "tok-2").await;
    assert_eq!(code(&second), "");
    assert_ne!(second["FlowId"], first["FlowId"]);
    assert_eq!(
        env.sim
            .ledger()
            .count_code("ScaleOutInstance", "ResourceInUse.InstanceInProcess"),
        1
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn drop_after_execute_gives_a_connection_error_but_executes() {
    let env = Env::start(|_| {}).await;
    env.sim
        .inject("ScaleOutInstance", Some(A), Fault::DropAfterExecute);
    let body = json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 4, "ClientToken": "tok-drop"});
    let sent = env
        .send_raw("ScaleOutInstance", &body.to_string(), Sign::default())
        .await;
    let error = sent.expect_err("no answer expected");
    assert!(!error.is_timeout(), "{error:?}");

    let ledger = env.sim.ledger();
    assert_eq!(
        ledger.len(),
        1,
        "the client must not have retried on its own"
    );
    let entry = &ledger.entries()[0];
    assert!(entry.dropped());
    let flow = entry.started_flow().expect("executed");
    assert_eq!(
        env.sim.cluster(A).map(|c| (c.status, c.current_flow)),
        Some((4, Some(flow)))
    );

    // The client retries under the same token and learns the FlowId.
    let retry = env.scale_out(A, 4, "tok-drop").await;
    assert_eq!(retry["FlowId"], flow);
    env.clock.advance(Duration::from_secs(60));
    assert_eq!(env.describe(A).await["Config"]["TaskNodeSize"], 6);
    assert_eq!(env.sim.ledger().flows_started(A), 1);

    // At the byte level: the server closes without sending a single byte.
    env.sim
        .inject("DescribeInstances", None, Fault::DropAfterExecute);
    let body = json!({"DisplayStrategy": "clusterList"}).to_string();
    let host = env.sim.addr().to_string();
    let ts = Utc::now().timestamp();
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         X-TC-Action: DescribeInstances\r\nX-TC-Version: 2019-01-03\r\nX-TC-Region: ap-guangzhou\r\n\
         X-TC-Timestamp: {ts}\r\nAuthorization: {}\r\n\r\n{body}",
        body.len(),
        authorization(ID, KEY, &host, ts, &body)
    );
    let mut stream = tokio::net::TcpStream::connect(env.sim.addr())
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server must close the connection");
    assert!(
        received.is_empty(),
        "got {:?}",
        String::from_utf8_lossy(&received)
    );
    let last = env.sim.ledger().entries().last().cloned().expect("entry");
    assert!(last.dropped() && last.error_code().is_none());
    env.sim.shutdown().await;
}

#[tokio::test]
async fn authentication_and_common_parameter_errors() {
    let env = Env::start(|_| {}).await;
    let body = json!({"DisplayStrategy": "clusterList"});
    let now = Utc::now().timestamp();
    let cases = [
        (
            Sign {
                key: "wrong-key",
                ..Sign::default()
            },
            "DescribeInstances",
            "AuthFailure.SignatureFailure",
        ),
        (
            Sign {
                id: "AKIDnobody",
                ..Sign::default()
            },
            "DescribeInstances",
            "AuthFailure.SecretIdNotFound",
        ),
        (
            Sign {
                ts: now - 600,
                ..Sign::default()
            },
            "DescribeInstances",
            "AuthFailure.SignatureExpire",
        ),
        (
            Sign {
                ts: now + 400,
                ..Sign::default()
            },
            "DescribeInstances",
            "AuthFailure.SignatureExpire",
        ),
        (
            Sign {
                version: "2020-01-01",
                ..Sign::default()
            },
            "DescribeInstances",
            "NoSuchVersion",
        ),
        (Sign::default(), "TerminateInstance", "InvalidAction"),
    ];
    for (sign, action, want) in cases {
        let r = env.call_with(action, body.clone(), sign).await;
        assert_eq!(code(&r), want, "{r}");
        assert!(r["Error"]["Message"].is_string() && r["RequestId"].is_string());
    }

    let not_json = env
        .send_raw(
            "DescribeInstances",
            "Action=DescribeInstances",
            Sign::default(),
        )
        .await
        .expect("answer");
    assert_eq!(not_json.status(), 200);
    let r: Value = not_json.json().await.expect("json");
    assert_eq!(code(&r["Response"]), "InvalidParameter");

    let unsigned = env
        .http
        .post(env.sim.endpoint())
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "DescribeInstances")
        .body("{}")
        .send()
        .await
        .expect("answer");
    let r: Value = unsigned.json().await.expect("json");
    assert_eq!(code(&r["Response"]), "AuthFailure.InvalidAuthorization");

    let ledger = env.sim.ledger();
    assert_eq!(ledger.len(), 8);
    assert!(ledger.entries().iter().all(|e| e.error_code().is_some()));
    env.sim.shutdown().await;
}

#[tokio::test]
async fn required_token_is_checked() {
    let env = Env::start(|c| c.required_token = Some("sts-token".into())).await;
    let r = env
        .call(
            "DescribeInstances",
            json!({"DisplayStrategy": "clusterList"}),
        )
        .await;
    assert_eq!(code(&r), "AuthFailure.TokenFailure");
    env.sim.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_25_is_rate_limited() {
    let env = Arc::new(Env::start(|_| {}).await);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..25 {
        let env = Arc::clone(&env);
        tasks.spawn(async move {
            let r = env
                .call(
                    "DescribeInstances",
                    json!({"DisplayStrategy": "clusterList", "InstanceIds": [A]}),
                )
                .await;
            code(&r).to_owned()
        });
    }
    let codes = tasks.join_all().await;
    let limited = codes
        .iter()
        .filter(|c| *c == "RequestLimitExceeded")
        .count();
    let ok = codes.iter().filter(|c| c.is_empty()).count();
    assert_eq!(limited + ok, 25, "{codes:?}");
    assert!(limited >= 1, "{codes:?}");
    let ledger = env.sim.ledger();
    let window = ledger.max_in_any_window("DescribeInstances", Duration::from_secs(1));
    if window == 25 {
        // Everything arrived within one second: exactly 20 got through.
        assert_eq!(ok, 20);
    }
    // Other actions have their own budget.
    let r = env.scale_out(A, 1, "tok-limit").await;
    assert_eq!(code(&r), "");
}

#[tokio::test]
async fn injected_request_faults() {
    let env = Env::start(|_| {}).await;
    let describe = json!({"DisplayStrategy": "clusterList"});

    env.sim
        .inject("DescribeInstances", None, Fault::Http5xx(502));
    let resp = env
        .send_raw("DescribeInstances", &describe.to_string(), Sign::default())
        .await
        .expect("answer");
    assert_eq!(resp.status(), 502);
    assert!(resp.text().await.expect("body").contains("<html>"));

    env.sim.inject("DescribeInstances", None, Fault::Garbage);
    let resp = env
        .send_raw("DescribeInstances", &describe.to_string(), Sign::default())
        .await
        .expect("answer");
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.expect("body");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

    env.sim
        .inject("DescribeInstances", None, Fault::EmptyEnvelope);
    assert_eq!(
        env.call("DescribeInstances", describe.clone()).await,
        json!({})
    );

    env.sim
        .inject("DescribeInstances", Some(B), Fault::NullConfig);
    let r = env.call("DescribeInstances", describe.clone()).await;
    assert!(
        r["ClusterList"][0]["Config"].is_object() && r["ClusterList"][1]["Config"].is_null(),
        "{r}"
    );

    env.sim.inject(
        "ScaleOutInstance",
        Some(A),
        Fault::ApiError("ResourcesSoldOut.CvmSoldOut".into()),
    );
    let r = env.scale_out(A, 1, "tok-sold").await;
    assert_eq!(code(&r), "ResourcesSoldOut.CvmSoldOut");
    assert_eq!(
        env.sim.cluster(A).map(|c| c.flows_started),
        Some(0),
        "an injected error executes nothing"
    );

    env.sim.inject(
        "ScaleOutInstance",
        Some(A),
        Fault::Delay(Duration::from_millis(400)),
    );
    let body = json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "ClientToken": "tok-slow"});
    let slow = env
        .http
        .post(env.sim.endpoint())
        .timeout(Duration::from_millis(100))
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "ScaleOutInstance")
        .header("X-TC-Version", "2019-01-03")
        .header("X-TC-Region", "ap-guangzhou")
        .header("X-TC-Timestamp", Utc::now().timestamp().to_string())
        .header(
            "Authorization",
            authorization(
                ID,
                KEY,
                &env.sim.addr().to_string(),
                Utc::now().timestamp(),
                &body.to_string(),
            ),
        )
        .body(body.to_string())
        .send()
        .await;
    assert!(slow.is_err_and(|e| e.is_timeout()));
    // The server shares this runtime: after a stall the client's timeout
    // may be polled before the server task has read the request.
    eventually(
        Duration::from_secs(5),
        "the delayed request to execute",
        || async { env.sim.cluster(A).map(|c| c.flows_started) == Some(1) },
    )
    .await;

    let ledger = env.sim.ledger();
    let outcomes: Vec<_> = ledger.entries().iter().map(|e| e.outcome.clone()).collect();
    assert_eq!(outcomes[0], Handled::InjectedHttp { status: 502 });
    assert_eq!(
        ledger.entries()[4].error_code(),
        Some("ResourcesSoldOut.CvmSoldOut")
    );
    assert_eq!(
        ledger.entries()[5].fault,
        Some(Fault::Delay(Duration::from_millis(400)))
    );
    env.sim.shutdown().await;
}

#[tokio::test]
async fn injected_flow_faults() {
    let env = Env::start(|_| {}).await;
    env.sim.inject("ScaleOutInstance", Some(B), Fault::FailFlow);
    env.sim.inject(
        "ScaleOutInstance",
        Some(A),
        Fault::SlowFlow(Duration::from_secs(600)),
    );

    let a = env.scale_out(A, 2, "tok-a").await["FlowId"].clone();
    let b = env.scale_out(B, 2, "tok-b").await["FlowId"].clone();
    env.clock.advance(Duration::from_secs(60));
    assert_eq!(env.flow_status(A, &a).await["FlowTotalStatus"], 1);
    assert_eq!(env.flow_status(B, &b).await["FlowTotalStatus"], -1);
    let failed = env.describe(B).await;
    assert_eq!(
        (
            failed["Status"].clone(),
            failed["Config"]["TaskNodeSize"].clone()
        ),
        (json!(302), json!(0))
    );

    env.clock.advance(Duration::from_secs(540));
    assert_eq!(env.flow_status(A, &a).await["FlowTotalStatus"], 2);
    assert_eq!(env.describe(A).await["Config"]["TaskNodeSize"], 4);
    env.sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let env = Env::start(|_| {}).await;
    let endpoint = env.sim.endpoint();
    env.sim.shutdown().await;
    let fresh = http_client(Duration::from_secs(2));
    assert!(fresh.post(endpoint).body("{}").send().await.is_err());
}
