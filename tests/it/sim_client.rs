//! The client proved against the simulator: exactly-once orders through lost
//! answers, every error class's behaviour, and no 1-second window over 20.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real time.

use std::sync::Arc;
use std::time::Duration;

use crate::support::daemon_proc::BIN;
use emr_autoscaler::clock::{ManualClock, SharedClock};
use emr_autoscaler::http::http_client;
use emr_autoscaler::sim::{
    DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, SimCluster, SimConfig, SimHandle, Simulator,
};
use emr_autoscaler::tencent::client::ClientSettings;
use emr_autoscaler::tencent::emr::{FlowState, ScaleOutInstanceRequest};
use emr_autoscaler::tencent::limiter::Limiters;
use emr_autoscaler::tencent::{
    ClientToken, CredentialChain, Credentials, EmrClient, ErrorClass, NoObserver, RetryPolicy,
};

const CLUSTER: &str = "emr-abc12345";
const SCALE_OUT: &str = "ScaleOutInstance";

fn clock() -> ManualClock {
    ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap())
}

async fn sim_with(clusters: Vec<SimCluster>, clock: &ManualClock) -> SimHandle {
    let shared: SharedClock = Arc::new(clock.clone());
    Simulator::start(
        SimConfig {
            clusters,
            flow_duration: Duration::from_secs(120),
            ..SimConfig::default()
        },
        shared,
    )
    .await
    .unwrap()
}

async fn sim(clock: &ManualClock) -> SimHandle {
    sim_with(vec![SimCluster::new(CLUSTER).with_task_nodes(2)], clock).await
}

fn client_for(sim: &SimHandle, key: &str, timeout: Duration) -> EmrClient {
    let http = http_client(Duration::from_secs(2), timeout).unwrap();
    let creds =
        CredentialChain::fixed(Credentials::new(DEFAULT_SECRET_ID, key, None), http.clone());
    EmrClient::new(
        http,
        ClientSettings {
            endpoint: sim.endpoint().parse().unwrap(),
            region: "ap-guangzhou".into(),
            language: None,
            request_timeout: timeout,
            retry: RetryPolicy {
                max_attempts: 4,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
            },
        },
        Arc::new(creds),
        Arc::new(Limiters::new(std::num::NonZeroU32::new(20).unwrap())),
        Arc::new(NoObserver),
    )
    .unwrap()
}

fn client(sim: &SimHandle) -> EmrClient {
    client_for(sim, DEFAULT_SECRET_KEY, Duration::from_secs(5))
}

fn order(cluster: &str, n: u32) -> ScaleOutInstanceRequest {
    ScaleOutInstanceRequest {
        instance_id: cluster.into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(n),
        ..Default::default()
    }
}

async fn task_nodes(c: &EmrClient, id: &str) -> Option<u32> {
    c.describe_instances(&[id.to_string()]).await.unwrap()[0].task_nodes()
}

#[tokio::test]
async fn happy_path_flow_then_nodes() {
    let clock = clock();
    let sim = sim(&clock).await;
    let c = client(&sim);
    let resp = c
        .scale_out(&order(CLUSTER, 3), &ClientToken::generate())
        .await
        .unwrap();
    let flow = resp.flow_id.unwrap();
    assert_eq!(
        c.describe_flow(CLUSTER, flow).await.unwrap().state(),
        FlowState::Running
    );
    assert_eq!(task_nodes(&c, CLUSTER).await, Some(2));
    clock.advance(Duration::from_secs(121));
    assert_eq!(
        c.describe_flow(CLUSTER, flow).await.unwrap().state(),
        FlowState::Done
    );
    assert_eq!(task_nodes(&c, CLUSTER).await, Some(5));
}

#[tokio::test]
async fn a_lost_answer_gives_exactly_one_flow_and_n_nodes() {
    let clock = clock();
    let sim = sim(&clock).await;
    sim.inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    let c = client(&sim);
    let token = ClientToken::generate();
    let resp = c.scale_out(&order(CLUSTER, 4), &token).await.unwrap();
    let ledger = sim.ledger();
    let sent: Vec<_> = ledger.for_action(SCALE_OUT).collect();
    assert_eq!(sent.len(), 2, "the lost answer was retried once");
    assert!(
        sent.iter()
            .all(|e| e.client_token.as_deref() == Some(token.value.as_str()))
    );
    assert_eq!(ledger.flows_started(CLUSTER), 1);
    assert_eq!(ledger.nodes_ordered(CLUSTER), 4);
    assert_eq!(resp.flow_id, sent[0].started_flow().map(|f| f as i64));
    clock.advance(Duration::from_secs(121));
    assert_eq!(task_nodes(&c, CLUSTER).await, Some(6));
}

#[tokio::test]
async fn a_timeout_after_execution_is_deduplicated_by_the_token() {
    let clock = clock();
    let sim = sim(&clock).await;
    sim.inject(
        SCALE_OUT,
        Some(CLUSTER),
        Fault::Delay(Duration::from_millis(800)),
    );
    let c = client_for(&sim, DEFAULT_SECRET_KEY, Duration::from_millis(300));
    c.scale_out(&order(CLUSTER, 2), &ClientToken::generate())
        .await
        .unwrap();
    let ledger = sim.ledger();
    assert!(ledger.for_action(SCALE_OUT).count() >= 2);
    assert_eq!(ledger.flows_started(CLUSTER), 1);
    assert_eq!(ledger.nodes_ordered(CLUSTER), 2);
}

/// Injected codes: the class, and how many requests reached the simulator (4 allowed).
#[tokio::test]
async fn each_error_class_gets_its_behaviour() {
    let cases: Vec<(Fault, ErrorClass, usize)> = vec![
        (
            Fault::ApiError("RequestLimitExceeded".into()),
            ErrorClass::Throttled,
            2,
        ),
        (
            Fault::ApiError("InternalError".into()),
            ErrorClass::Internal,
            2,
        ),
        (Fault::Http5xx(503), ErrorClass::Internal, 2),
        (Fault::Garbage, ErrorClass::Transport, 2),
        (
            Fault::ApiError("ResourcesSoldOut.CvmSoldOut".into()),
            ErrorClass::SoldOut,
            1,
        ),
        (
            Fault::ApiError("FailedOperation.DuplicateOrderNotAllowed".into()),
            ErrorClass::Busy,
            1,
        ),
        (
            Fault::ApiError("InvalidParameter.InvalidTimeSpan".into()),
            ErrorClass::Invalid,
            1,
        ),
        (
            Fault::ApiError("UnauthorizedOperation.CheckCamAuth".into()),
            ErrorClass::Auth,
            1,
        ),
        (
            Fault::ApiError("ResourceNotFound.InstanceNotFound".into()),
            ErrorClass::NotFound,
            1,
        ),
    ];
    for (fault, class, reached) in cases {
        let clock = clock();
        let sim = sim(&clock).await;
        sim.inject(SCALE_OUT, Some(CLUSTER), fault.clone());
        let result = client(&sim)
            .scale_out(&order(CLUSTER, 1), &ClientToken::generate())
            .await;
        let ledger = sim.ledger();
        assert_eq!(ledger.for_action(SCALE_OUT).count(), reached, "{fault:?}");
        if class.is_retryable() {
            // One fault, then the retry under the same token lands once.
            result.unwrap_or_else(|e| panic!("{fault:?}: {e}"));
            assert_eq!(ledger.flows_started(CLUSTER), 1, "{fault:?}");
        } else {
            let err = result.unwrap_err();
            assert_eq!(err.class(), class, "{fault:?}: {err}");
            assert!(
                err.request_id().is_some(),
                "{fault:?}: errors carry the RequestId"
            );
            assert_eq!(ledger.flows_started(CLUSTER), 0, "{fault:?}");
        }
    }
}

#[tokio::test]
async fn real_rejections_from_the_simulator() {
    let clock = clock();
    let sim = sim(&clock).await;
    let c = client(&sim);
    c.scale_out(&order(CLUSTER, 1), &ClientToken::generate())
        .await
        .unwrap();
    // A second order with a new token while the flow runs: busy, not retried.
    let busy = c
        .scale_out(&order(CLUSTER, 1), &ClientToken::generate())
        .await
        .unwrap_err();
    assert_eq!(busy.code(), Some("ResourceInUse.InstanceInProcess"));
    assert_eq!(busy.class(), ErrorClass::Busy);
    // An unknown cluster.
    let missing = c
        .scale_out(&order("emr-zzzzzzzz", 1), &ClientToken::generate())
        .await
        .unwrap_err();
    assert_eq!(missing.class(), ErrorClass::NotFound, "{missing}");
    // A bad signature (wrong key): auth, never retried.
    let bad = client_for(&sim, "not-the-key", Duration::from_secs(5));
    let err = bad
        .scale_out(&order(CLUSTER, 1), &ClientToken::generate())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AuthFailure.SignatureFailure"), "{err}");
    assert_eq!(err.class(), ErrorClass::Auth);
    let ledger = sim.ledger();
    assert_eq!(
        ledger.count_code(SCALE_OUT, "ResourceInUse.InstanceInProcess"),
        1
    );
    assert_eq!(
        ledger.count_code(SCALE_OUT, "AuthFailure.SignatureFailure"),
        1
    );
    assert_eq!(ledger.flows_started(CLUSTER), 1);
}

#[tokio::test]
async fn a_failed_flow_adds_nothing() {
    let clock = clock();
    let sim = sim(&clock).await;
    sim.inject(SCALE_OUT, Some(CLUSTER), Fault::FailFlow);
    let c = client(&sim);
    let flow = c
        .scale_out(&order(CLUSTER, 3), &ClientToken::generate())
        .await
        .unwrap()
        .flow_id
        .unwrap();
    clock.advance(Duration::from_secs(121));
    assert_eq!(
        c.describe_flow(CLUSTER, flow).await.unwrap().state(),
        FlowState::Failed
    );
    let info = &c.describe_instances(&[CLUSTER.to_string()]).await.unwrap()[0];
    assert_eq!((info.status, info.task_nodes()), (Some(302), Some(2)));
}

#[tokio::test]
async fn two_hundred_queued_scale_outs_never_exceed_20_in_a_second() {
    let clock = clock();
    let ids: Vec<String> = (0..200).map(|i| format!("emr-q{i:07}")).collect();
    let sim = sim_with(
        ids.iter().map(|id| SimCluster::new(id.clone())).collect(),
        &clock,
    )
    .await;
    let c = client(&sim);
    let started = std::time::Instant::now();
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let c = c.clone();
            let req = order(id, 1);
            tokio::spawn(async move { c.scale_out(&req, &ClientToken::generate()).await })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failures.push(e.to_string());
        }
    }
    let elapsed = started.elapsed();
    let ledger = sim.ledger();
    let max = ledger.max_in_any_window(SCALE_OUT, Duration::from_secs(1));
    let arrivals: Vec<Duration> = ledger
        .for_action(SCALE_OUT)
        .map(|e| e.since_start)
        .collect();
    let span = *arrivals.last().unwrap() - arrivals[0];
    println!(
        "200 scale-outs: max {max} in any 1 s window at the server; {} requests in {:.2} s = {:.2} req/s (wall {:.2} s)",
        arrivals.len(),
        span.as_secs_f64(),
        (arrivals.len() - 1) as f64 / span.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    assert!(failures.is_empty(), "{failures:?}");
    assert!(max <= 20, "{max} requests in one second");
    assert_eq!(ledger.count_code(SCALE_OUT, "RequestLimitExceeded"), 0);
    assert_eq!(ledger.flow_starts().len(), 200, "every cluster served once");
    assert!(ledger.tokens_with_several_flows().is_empty());
}

#[tokio::test]
async fn the_real_binary_orders_once_through_the_simulator() {
    let clock = clock();
    let sim = sim(&clock).await;
    sim.inject(SCALE_OUT, Some(CLUSTER), Fault::DropAfterExecute);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.toml");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/minimal.toml"
    ))
    .unwrap()
    .replace("https://emr.tencentcloudapi.com", &sim.endpoint())
    .replace(
        "/var/lib/emr-autoscaler",
        &dir.path().join("state").display().to_string(),
    );
    std::fs::write(&cfg, text).unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args([
        "scale-out",
        "--config",
        cfg.to_str().unwrap(),
        "--instance-id",
        CLUSTER,
        "--task-count",
        "3",
    ])
    .env("HOME", dir.path())
    .env("TENCENTCLOUD_SECRET_ID", DEFAULT_SECRET_ID)
    .env("TENCENTCLOUD_SECRET_KEY", DEFAULT_SECRET_KEY);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ledger = sim.ledger();
    assert_eq!(
        ledger.for_action(SCALE_OUT).count(),
        2,
        "one lost answer, one retry"
    );
    assert_eq!(ledger.flows_started(CLUSTER), 1);
    assert_eq!(ledger.nodes_ordered(CLUSTER), 3);
    let start = &ledger.flow_starts()[0];
    assert_eq!(v["FlowId"].as_u64(), Some(start.flow_id));
    assert_eq!(v["ClientToken"].as_str(), start.client_token.as_deref());
}
