//! The simulator's scale-in actions over real, signed HTTP: the paged node
//! list, TerminateClusterNodes and its flows, Tencent's own auto-scaling,
//! faults on the new actions, and the YARN ResourceManager stand-in.
//!
//! Requests go through the product's `EmrClient` (its typed calls where it
//! has them, its generic signed `call` with a raw JSON body otherwise), on a
//! manual clock so every flow ends exactly when the test moves the clock.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests sign with the wall clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use emr_autoscaler::clock::{ManualClock, SharedClock};
use emr_autoscaler::http::http_client;
use emr_autoscaler::sim::{
    BuiltinStrategy, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, Handled, STATUS_RUNNING,
    STATUS_SCALING_IN, STRATEGY_OFF, STRATEGY_ON, SimCluster, SimConfig, SimHandle, SimNode,
    Simulator, YarnApp, YarnNode, YarnRm,
};
use emr_autoscaler::tencent::client::ClientSettings;
use emr_autoscaler::tencent::emr::{
    FlowState, ScaleOutInstanceRequest, Tag, TerminateClusterNodesRequest,
};
use emr_autoscaler::tencent::limiter::Limiters;
use emr_autoscaler::tencent::{
    Action, ApiError, ClientToken, CredentialChain, Credentials, EmrClient, NoObserver, RetryPolicy,
};
use serde_json::{Value, json};

const A: &str = "emr-abc12345";
const B: &str = "emr-def67890";
const TERMINATE: &str = "TerminateClusterNodes";

fn clock() -> ManualClock {
    ManualClock::new(chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("ts"))
}

async fn sim_with(
    clusters: Vec<SimCluster>,
    clock: &ManualClock,
    tweak: impl FnOnce(&mut SimConfig),
) -> SimHandle {
    let shared: SharedClock = Arc::new(clock.clone());
    let mut config = SimConfig {
        clusters,
        flow_duration: Duration::from_secs(120),
        ..SimConfig::default()
    };
    tweak(&mut config);
    Simulator::start(config, shared)
        .await
        .expect("simulator starts")
}

/// A client against `sim` allowing `per_second` requests per action.
fn client_limited(sim: &SimHandle, per_second: u32) -> EmrClient {
    let http = http_client(Duration::from_secs(2), Duration::from_secs(5)).expect("http client");
    let creds = CredentialChain::fixed(
        Credentials::new(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, None),
        http.clone(),
    );
    EmrClient::new(
        http,
        ClientSettings {
            endpoint: sim.endpoint().parse().expect("endpoint"),
            region: "ap-guangzhou".into(),
            language: None,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 3,
                base_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(100),
            },
        },
        Arc::new(creds),
        Arc::new(Limiters::new(
            std::num::NonZeroU32::new(per_second).expect("non-zero"),
        )),
        Arc::new(NoObserver),
    )
    .expect("client")
}

fn client(sim: &SimHandle) -> EmrClient {
    client_limited(sim, 20)
}

/// One signed request with a raw JSON body; the `Response` object or the error.
async fn raw(c: &EmrClient, action: Action, body: Value) -> Result<Value, ApiError> {
    c.call::<Value, Value>(action, &body, None).await
}

fn code_of(r: &Result<Value, ApiError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().unwrap_or("no code").to_owned(),
    }
}

fn graceful(cluster: &str, nodes: &[String], secs: u64) -> TerminateClusterNodesRequest {
    TerminateClusterNodesRequest::graceful(cluster, nodes.to_vec(), Duration::from_secs(secs))
}

/// The task nodes' machine ids, as the product's client lists them.
async fn task_ids(c: &EmrClient, cluster: &str) -> Vec<String> {
    c.task_nodes(cluster)
        .await
        .expect("task nodes")
        .into_iter()
        .filter_map(|n| n.order_no)
        .collect()
}

async fn status(c: &EmrClient, cluster: &str) -> (Option<i64>, Option<u32>) {
    let info = &c
        .describe_instances(&[cluster.to_string()])
        .await
        .expect("describe")[0];
    (info.status, info.task_nodes())
}

#[tokio::test]
async fn two_hundred_fifty_task_nodes_come_in_three_pages() {
    let clock = clock();
    let sim = sim_with(
        vec![SimCluster::new(A).with_task_nodes(250)],
        &clock,
        |_| {},
    )
    .await;
    let c = client(&sim);

    let nodes = c.task_nodes(A).await.expect("task nodes");
    assert_eq!(nodes.len(), 250);
    let ids: HashSet<&str> = nodes.iter().filter_map(|n| n.order_no.as_deref()).collect();
    let ips: HashSet<&str> = nodes.iter().filter_map(|n| n.ip.as_deref()).collect();
    assert_eq!((ids.len(), ips.len()), (250, 250));
    for n in &nodes {
        let id = n.order_no.as_deref().expect("OrderNo");
        let suffix = id.strip_prefix("ins-").expect("ins- prefix");
        assert!(
            suffix.len() == 8
                && suffix
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()),
            "{id}"
        );
        assert!(
            n.emr_resource_id
                .as_deref()
                .is_some_and(|r| r.starts_with("emr-vm-") && r.len() == 15)
        );
        assert!(n.ip.as_deref().is_some_and(|ip| ip.starts_with("10.0.")));
        assert_eq!(
            (
                n.flag,
                n.auto_flag,
                n.destroyable,
                n.disable_api_termination,
                n.charge_type
            ),
            (Some(3), Some(0), Some(1), Some(false), Some(0))
        );
        assert_eq!(n.hardware_resource_type.as_deref(), Some("host"));
        assert_eq!(n.tags, None);
    }
    // Distinct ApplyTimes, oldest first ("YYYY-MM-DD HH:MM:SS" sorts as text).
    let times: Vec<&str> = nodes
        .iter()
        .filter_map(|n| n.apply_time.as_deref())
        .collect();
    assert_eq!(times.len(), 250);
    assert!(times.windows(2).all(|w| w[0] < w[1]));
    assert!(
        times
            .iter()
            .all(|t| t.len() == 19 && t.as_bytes()[10] == b' ')
    );

    // The client asked for pages 0, 1 and 2: Offset is a page index.
    let offsets: Vec<Value> = sim
        .ledger()
        .for_action("DescribeClusterNodes")
        .map(|e| e.params["Offset"].clone())
        .collect();
    assert_eq!(offsets, [json!(0), json!(1), json!(2)]);

    let page = |offset: i64, limit: i64| json!({"InstanceId": A, "NodeFlag": "task", "Offset": offset, "Limit": limit});
    let last = raw(&c, Action::DescribeClusterNodes, page(2, 100))
        .await
        .expect("page 2");
    assert_eq!(last["TotalCnt"], 250);
    assert_eq!(last["NodeList"].as_array().map(Vec::len), Some(50));
    let past = raw(&c, Action::DescribeClusterNodes, page(3, 100))
        .await
        .expect("page 3");
    assert!(past["NodeList"].as_array().is_none_or(Vec::is_empty));
    assert_eq!(
        code_of(&raw(&c, Action::DescribeClusterNodes, page(0, 101)).await),
        "InvalidParameter"
    );
    let bad_flag = json!({"InstanceId": A, "NodeFlag": "gpu"});
    assert_eq!(
        code_of(&raw(&c, Action::DescribeClusterNodes, bad_flag).await),
        "InvalidParameter.InvalidNodeType"
    );
    let all = raw(
        &c,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "all"}),
    )
    .await
    .expect("all");
    assert_eq!(all["TotalCnt"], 254, "1 master, 3 core, 250 task");
    let unknown = json!({"InstanceId": "emr-zzz99999", "NodeFlag": "task"});
    assert_eq!(
        code_of(&raw(&c, Action::DescribeClusterNodes, unknown).await),
        "ResourceNotFound.ClusterNotFound"
    );
    assert_eq!(status(&c, A).await, (Some(STATUS_RUNNING), Some(250)));
    sim.shutdown().await;
}

#[tokio::test]
async fn scale_out_nodes_carry_the_request_tags() {
    let clock = clock();
    let sim = sim_with(vec![SimCluster::new(A).with_task_nodes(2)], &clock, |_| {}).await;
    let c = client(&sim);
    let tag = Tag {
        key: "managed-by".into(),
        value: "emr-autoscaler".into(),
    };
    let order = ScaleOutInstanceRequest {
        instance_id: A.into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(3),
        tags: Some(vec![tag.clone()]),
        ..Default::default()
    };
    let started = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("ts");
    c.scale_out(&order, &ClientToken::generate())
        .await
        .expect("scale-out");
    clock.advance(Duration::from_secs(119));
    assert_eq!(task_ids(&c, A).await.len(), 2, "not before the flow ends");
    clock.advance(Duration::from_secs(1));
    let nodes = c.task_nodes(A).await.expect("task nodes");
    assert_eq!(nodes.len(), 5);
    assert!(nodes[..2].iter().all(|n| n.tags.is_none()));
    for n in &nodes[2..] {
        assert_eq!(n.tags.as_deref(), Some(std::slice::from_ref(&tag)));
        assert_eq!(
            n.apply_time.as_deref(),
            Some(started.format("%Y-%m-%d %H:%M:%S").to_string().as_str())
        );
        assert_eq!(
            (n.flag, n.auto_flag, n.destroyable, n.charge_type),
            (Some(3), Some(0), Some(1), Some(0))
        );
    }
    // Without Tags the new nodes answer "Tags": null.
    let untagged = ScaleOutInstanceRequest {
        tags: None,
        task_count: Some(1),
        ..order
    };
    c.scale_out(&untagged, &ClientToken::generate())
        .await
        .expect("scale-out");
    clock.advance(Duration::from_secs(120));
    let nodes = c.task_nodes(A).await.expect("task nodes");
    assert_eq!(nodes.len(), 6);
    assert_eq!(nodes[5].tags, None);
    let page = raw(
        &c,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "task"}),
    )
    .await
    .expect("nodes");
    assert!(page["NodeList"][5]["Tags"].is_null());
    assert_eq!(
        page["NodeList"][2]["Tags"],
        json!([{"TagKey": "managed-by", "TagValue": "emr-autoscaler"}])
    );
    let snap = sim.nodes(A).expect("cluster");
    assert_eq!(
        snap.iter()
            .filter(|n| n.has_tag("managed-by", "emr-autoscaler"))
            .count(),
        3
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_graceful_scale_in_takes_grace_down_time() {
    let clock = clock();
    let sim = sim_with(vec![SimCluster::new(A).with_task_nodes(4)], &clock, |_| {}).await;
    let c = client(&sim);
    let ids = task_ids(&c, A).await;
    let removing = vec![ids[3].clone(), ids[1].clone()];

    let (resp, sent) = c
        .terminate_nodes_counted(&graceful(A, &removing, 600))
        .await;
    let flow = resp.expect("terminate").flow_id.expect("FlowId");
    assert_eq!(sent, 1);
    assert_eq!(status(&c, A).await, (Some(STATUS_SCALING_IN), Some(4)));
    assert_eq!(sim.cluster(A).expect("cluster").removing, removing);
    assert_eq!(
        c.describe_flow(A, flow).await.expect("flow").state(),
        FlowState::Running
    );

    // While it runs: a second scale-in or a scale-out meets InstanceInProcess.
    let (again, _) = c.terminate_nodes_counted(&graceful(A, &ids[..1], 60)).await;
    assert_eq!(
        again.expect_err("busy").code(),
        Some("ResourceInUse.InstanceInProcess")
    );
    let order = ScaleOutInstanceRequest {
        instance_id: A.into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(1),
        ..Default::default()
    };
    let (out, _) = c.scale_out_counted(&order, &ClientToken::generate()).await;
    assert_eq!(
        out.expect_err("busy").code(),
        Some("ResourceInUse.InstanceInProcess")
    );

    clock.advance(Duration::from_secs(599));
    assert_eq!(
        task_ids(&c, A).await,
        ids,
        "listed until the grace time is over"
    );
    assert_eq!(status(&c, A).await.0, Some(STATUS_SCALING_IN));

    clock.advance(Duration::from_secs(1));
    assert_eq!(task_ids(&c, A).await, [ids[0].clone(), ids[2].clone()]);
    assert_eq!(status(&c, A).await, (Some(STATUS_RUNNING), Some(2)));
    let done = c.describe_flow(A, flow).await.expect("flow");
    assert_eq!(
        (done.flow_total_status, done.state()),
        (Some(2), FlowState::Done)
    );

    let snap = sim.cluster(A).expect("cluster");
    assert_eq!(
        (snap.nodes_removed, snap.removing.len(), snap.task_nodes),
        (2, 0, 2)
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.terminations(A), [removing]);
    assert_eq!(ledger.nodes_removed(A), 2);
    assert!(ledger.nodes_terminated_twice().is_empty());
    assert_eq!(
        ledger.count_code(TERMINATE, "ResourceInUse.InstanceInProcess"),
        1
    );
    // The flow id is from the scale-out id space.
    assert_eq!(
        ledger
            .for_action(TERMINATE)
            .next()
            .and_then(|e| e.started_flow()),
        Some(u64::try_from(flow).expect("positive"))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn refusals_name_the_node_and_execute_nothing() {
    let clock = clock();
    let cluster = SimCluster::new(A)
        .with_task_nodes(1)
        .with_node(SimNode::core().with_order_no("ins-core0001"))
        .with_node(
            SimNode::task()
                .with_order_no("ins-keep0001")
                .with_destroyable(false),
        )
        .with_node(SimNode::task().with_order_no("ins-prot0001").protected())
        .with_node(SimNode::task().with_order_no("ins-mnth0001").monthly())
        .with_node(SimNode::task().with_order_no("ins-gone0001"))
        .with_node(SimNode::task().with_order_no("ins-okay0001"));
    let sim = sim_with(vec![cluster, SimCluster::new(B)], &clock, |_| {}).await;
    let c = client(&sim);
    assert!(sim.set_node_gone(A, "ins-gone0001"));
    let before = sim.nodes(A).expect("cluster");

    let ask = |ids: &[&str]| {
        graceful(
            A,
            &ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            300,
        )
    };
    let cases: [(&[&str], &str, &str); 6] = [
        (
            &["ins-okay0001", "ins-nope0001"],
            "ResourceNotFound.InstanceNotFound",
            "ins-nope0001",
        ),
        (
            &["ins-gone0001"],
            "ResourceNotFound.InstanceNotFound",
            "ins-gone0001",
        ),
        (
            &["ins-okay0001", "ins-core0001"],
            "InvalidParameter.InvalidNodeType",
            "ins-core0001",
        ),
        (
            &["ins-keep0001"],
            "InvalidParameter.NodeNotDestroyable",
            "ins-keep0001",
        ),
        (
            &["ins-okay0001", "ins-prot0001"],
            "InvalidParameter.TerminationProtected",
            "ins-prot0001",
        ),
        (
            &["ins-mnth0001", "ins-okay0001"],
            "InvalidParameter.PrepaidNode",
            "ins-mnth0001",
        ),
    ];
    for (ids, want, named) in cases {
        let (result, sent) = c.terminate_nodes_counted(&ask(ids)).await;
        let error = result.expect_err("refused");
        assert_eq!((error.code(), sent), (Some(want), 1), "{ids:?}: {error}");
        assert!(error.to_string().contains(named), "{ids:?}: {error}");
    }
    // A node of another cluster is not found on this one.
    let other = sim.nodes(B).expect("cluster")[1].order_no.clone();
    let (result, _) = c
        .terminate_nodes_counted(&graceful(A, std::slice::from_ref(&other), 300))
        .await;
    assert_eq!(
        result.expect_err("refused").code(),
        Some("ResourceNotFound.InstanceNotFound")
    );

    // Validation the product's pre-flight would catch, sent raw.
    let body = |extra: Value| {
        let mut b = json!({"InstanceId": A, "CvmInstanceIds": ["ins-okay0001"], "NodeFlag": "TASK", "GraceDownFlag": true, "GraceDownTime": 300});
        for (k, v) in extra.as_object().into_iter().flatten() {
            b[k] = v.clone();
        }
        b
    };
    let raw_cases = [
        (body(json!({"NodeFlag": "CORE"})), "InvalidParameter"),
        (body(json!({"NodeFlag": "task"})), "InvalidParameter"),
        (body(json!({"GraceDownTime": 59})), "InvalidParameter"),
        (body(json!({"GraceDownTime": 1801})), "InvalidParameter"),
        (body(json!({"GraceDownTime": null})), "InvalidParameter"),
        (body(json!({"CvmInstanceIds": []})), "InvalidParameter"),
        (
            body(json!({"CvmInstanceIds": ["ins-okay0001", "ins-okay0001"]})),
            "InvalidParameter",
        ),
        (body(json!({"CvmInstanceIds": null})), "MissingParameter"),
        (
            body(json!({"InstanceId": "emr-zzz99999"})),
            "ResourceNotFound.ClusterNotFound",
        ),
    ];
    for (b, want) in raw_cases {
        assert_eq!(
            code_of(&raw(&c, Action::TerminateClusterNodes, b.clone()).await),
            want,
            "{b}"
        );
    }

    let snap = sim.cluster(A).expect("cluster");
    assert_eq!(
        (snap.status, snap.flows_started, snap.current_flow),
        (STATUS_RUNNING, 0, None)
    );
    clock.advance(Duration::from_secs(3600));
    assert_eq!(sim.nodes(A).expect("cluster"), before, "nothing executed");
    let ledger = sim.ledger();
    assert!(ledger.terminations(A).is_empty());
    assert_eq!(ledger.nodes_removed(A), 0);
    assert!(
        ledger
            .for_action(TERMINATE)
            .all(|e| e.started_flow().is_none())
    );
    assert_eq!(ledger.for_action(TERMINATE).count(), 7 + 9);

    // The eligible node alone is accepted, without grace in 1 s.
    let quick = body(json!({"GraceDownFlag": false, "GraceDownTime": null}));
    let ok = raw(&c, Action::TerminateClusterNodes, quick)
        .await
        .expect("accepted");
    assert!(ok["FlowId"].is_u64() && ok["RequestId"].is_string(), "{ok}");
    assert_eq!(ok.as_object().map(|o| o.len()), Some(2), "{ok}");
    clock.advance(Duration::from_secs(1));
    assert!(
        !sim.nodes(A)
            .expect("cluster")
            .iter()
            .any(|n| n.order_no == "ins-okay0001")
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_busy_or_failed_cluster_refuses_scale_in() {
    let clock = clock();
    let sim = sim_with(vec![SimCluster::new(A).with_task_nodes(2)], &clock, |_| {}).await;
    let c = client(&sim);
    let ids = task_ids(&c, A).await;
    sim.inject("ScaleOutInstance", Some(A), Fault::FailFlow);
    let order = ScaleOutInstanceRequest {
        instance_id: A.into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(1),
        ..Default::default()
    };
    c.scale_out(&order, &ClientToken::generate())
        .await
        .expect("scale-out");
    let (busy, _) = c.terminate_nodes_counted(&graceful(A, &ids[..1], 60)).await;
    assert_eq!(
        busy.expect_err("busy").code(),
        Some("ResourceInUse.InstanceInProcess")
    );
    clock.advance(Duration::from_secs(120));
    assert_eq!(status(&c, A).await.0, Some(302));
    let (failed, _) = c.terminate_nodes_counted(&graceful(A, &ids[..1], 60)).await;
    let error = failed.expect_err("not running");
    assert_eq!(error.code(), Some("ResourceInUse.InstanceInProcess"));
    assert!(error.to_string().contains("302"), "{error}");
    assert_eq!(sim.nodes(A).expect("cluster").len(), 1 + 3 + 2);
    assert!(sim.ledger().terminations(A).is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn a_lost_answer_still_removes_the_nodes() {
    let clock = clock();
    let sim = sim_with(vec![SimCluster::new(A).with_task_nodes(3)], &clock, |_| {}).await;
    let c = client(&sim);
    let ids = task_ids(&c, A).await;
    sim.inject(TERMINATE, Some(A), Fault::DropAfterExecute);
    let (result, sent) = c.terminate_nodes_counted(&graceful(A, &ids[..2], 60)).await;
    assert!(result.is_err(), "the answer was lost");
    assert_eq!(sent, 1, "never retried without a ClientToken");
    let ledger = sim.ledger();
    let entry = ledger.for_action(TERMINATE).next().expect("received");
    assert!(entry.dropped());
    assert!(entry.started_flow().is_some());
    assert_eq!(sim.cluster(A).expect("cluster").status, STATUS_SCALING_IN);
    clock.advance(Duration::from_secs(60));
    assert_eq!(task_ids(&c, A).await, [ids[2].clone()]);
    assert_eq!(sim.cluster(A).expect("cluster").nodes_removed, 2);
    // A re-send of the same list now meets InstanceNotFound, executing nothing.
    let (again, _) = c.terminate_nodes_counted(&graceful(A, &ids[..2], 60)).await;
    assert_eq!(
        again.expect_err("gone").code(),
        Some("ResourceNotFound.InstanceNotFound")
    );
    let ledger = sim.ledger();
    assert_eq!(ledger.terminations(A), [ids[..2].to_vec()]);
    assert!(ledger.nodes_terminated_twice().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn flow_faults_for_scale_in_fail_or_slow_it_and_keep_nodes() {
    let clock = clock();
    let sim = sim_with(vec![SimCluster::new(A).with_task_nodes(2)], &clock, |_| {}).await;
    let c = client(&sim);
    let ids = task_ids(&c, A).await;
    // A flow fault queued for scale-out does not touch a scale-in flow.
    sim.inject("ScaleOutInstance", Some(A), Fault::FailFlow);
    sim.inject(TERMINATE, Some(A), Fault::FailFlow);
    sim.inject(
        TERMINATE,
        Some(A),
        Fault::SlowFlow(Duration::from_secs(1000)),
    );
    let (resp, _) = c.terminate_nodes_counted(&graceful(A, &ids, 60)).await;
    let flow = resp.expect("terminate").flow_id.expect("FlowId");
    clock.advance(Duration::from_secs(999));
    assert_eq!(status(&c, A).await, (Some(STATUS_SCALING_IN), Some(2)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        c.describe_flow(A, flow)
            .await
            .expect("flow")
            .flow_total_status,
        Some(-1)
    );
    assert_eq!(status(&c, A).await, (Some(STATUS_RUNNING), Some(2)));
    assert_eq!(task_ids(&c, A).await, ids);
    let snap = sim.cluster(A).expect("cluster");
    assert_eq!((snap.flows_failed, snap.nodes_removed), (1, 0));

    // Retried after the failure, the same nodes go; the ledger says twice.
    let (resp, _) = c.terminate_nodes_counted(&graceful(A, &ids, 60)).await;
    resp.expect("terminate");
    clock.advance(Duration::from_secs(60));
    assert!(task_ids(&c, A).await.is_empty());
    let ledger = sim.ledger();
    assert_eq!(ledger.terminations(A).len(), 2);
    assert_eq!(ledger.nodes_removed(A), 4, "ordered twice");
    assert_eq!(
        sim.cluster(A).expect("cluster").nodes_removed,
        2,
        "removed once"
    );
    assert_eq!(ledger.nodes_terminated_twice(), ids);
    // The scale-out's FailFlow is still waiting for a scale-out.
    let order = ScaleOutInstanceRequest {
        instance_id: A.into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(1),
        ..Default::default()
    };
    c.scale_out(&order, &ClientToken::generate())
        .await
        .expect("scale-out");
    clock.advance(Duration::from_secs(120));
    assert_eq!(status(&c, A).await, (Some(302), Some(0)));
    sim.shutdown().await;
}

#[tokio::test]
async fn request_faults_rate_limit_and_signature_apply_to_the_new_actions() {
    let clock = clock();
    let sim = sim_with(vec![SimCluster::new(A).with_task_nodes(2)], &clock, |c| {
        c.rate_limit_window = Duration::from_secs(60);
    })
    .await;
    let fast = client_limited(&sim, 1000);
    let ids = task_ids(&fast, A).await;

    // A standing refusal, until cleared: nothing executed.
    sim.set_standing_fault(
        TERMINATE,
        Some(A),
        Some(Fault::ApiError("UnauthorizedOperation".into())),
    );
    for _ in 0..2 {
        let (r, _) = fast
            .terminate_nodes_counted(&graceful(A, &ids[..1], 60))
            .await;
        assert_eq!(
            r.expect_err("refused").code(),
            Some("UnauthorizedOperation")
        );
    }
    sim.set_standing_fault(TERMINATE, Some(A), None);
    // A queued 502, not executed.
    sim.inject(TERMINATE, None, Fault::Http5xx(502));
    let (r, _) = fast
        .terminate_nodes_counted(&graceful(A, &ids[..1], 60))
        .await;
    assert!(r.is_err());
    assert_eq!(sim.cluster(A).expect("cluster").flows_started, 0);
    assert!(matches!(
        sim.ledger()
            .for_action(TERMINATE)
            .last()
            .map(|e| e.outcome.clone()),
        Some(Handled::InjectedHttp { status: 502 })
    ));

    // 20 per action per window: the 21st strategies request is refused, the
    // group request next to it is not.
    let ask = json!({"InstanceId": A});
    for _ in 0..20 {
        raw(&fast, Action::DescribeAutoScaleStrategies, ask.clone())
            .await
            .expect("admitted");
    }
    let (refused, sent) = fast
        .call_counted::<Value, Value>(Action::DescribeAutoScaleStrategies, &ask, None)
        .await;
    assert_eq!(code_of(&refused), "RequestLimitExceeded");
    assert!(sent >= 1);
    raw(&fast, Action::DescribeAutoScaleGroupGlobalConf, ask.clone())
        .await
        .expect("own quota");
    let ledger = sim.ledger();
    assert!(ledger.count_code("DescribeAutoScaleStrategies", "RequestLimitExceeded") >= 1);
    assert_eq!(
        ledger.count_code("DescribeAutoScaleGroupGlobalConf", "RequestLimitExceeded"),
        0
    );

    // A wrong key fails the signature check.
    let http = http_client(Duration::from_secs(2), Duration::from_secs(5)).expect("http");
    let wrong = EmrClient::new(
        http.clone(),
        ClientSettings {
            endpoint: sim.endpoint().parse().expect("endpoint"),
            region: "ap-guangzhou".into(),
            language: None,
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 1,
                base_delay: Duration::from_millis(10),
                max_delay: Duration::from_millis(10),
            },
        },
        Arc::new(CredentialChain::fixed(
            Credentials::new(DEFAULT_SECRET_ID, "not-the-key", None),
            http,
        )),
        Arc::new(Limiters::new(
            std::num::NonZeroU32::new(20).expect("non-zero"),
        )),
        Arc::new(NoObserver),
    )
    .expect("client");
    let (r, _) = wrong
        .terminate_nodes_counted(&graceful(A, &ids[..1], 60))
        .await;
    assert_eq!(
        r.expect_err("refused").code(),
        Some("AuthFailure.SignatureFailure")
    );
    assert_eq!(sim.cluster(A).expect("cluster").flows_started, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn random_faults_on_terminate_are_request_faults_only() {
    let clock = clock();
    let clusters: Vec<SimCluster> = (0..30)
        .map(|i| SimCluster::new(format!("emr-r{i:07}")).with_task_nodes(1))
        .collect();
    let sim = sim_with(clusters, &clock, |c| {
        c.fault_probability = 1.0;
        c.fault_seed = Some(11);
        c.rate_limit_per_second = 0;
    })
    .await;
    let c = client_limited(&sim, 1000);
    for i in 0..30 {
        let id = format!("emr-r{i:07}");
        let node = sim.nodes(&id).expect("cluster")[4].order_no.clone();
        let _ = c.terminate_nodes_counted(&graceful(&id, &[node], 60)).await;
    }
    let allowed = [
        Fault::DropAfterExecute,
        Fault::Http5xx(502),
        Fault::Http5xx(503),
        Fault::ApiError("InternalError".into()),
        Fault::ApiError("RequestLimitExceeded".into()),
    ];
    let ledger = sim.ledger();
    let faults: Vec<Fault> = ledger
        .for_action(TERMINATE)
        .filter_map(|e| e.fault.clone())
        .collect();
    assert_eq!(faults.len(), 30);
    assert!(faults.iter().all(|f| allowed.contains(f)), "{faults:?}");
    // Exactly the dropped ones executed.
    for e in ledger.for_action(TERMINATE) {
        assert_eq!(e.started_flow().is_some(), e.dropped(), "{e:?}");
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn builtin_strategies_switch_on_and_off_per_group() {
    let clock = clock();
    let sim = sim_with(
        vec![
            SimCluster::new(A),
            SimCluster::new(B).with_builtin_strategy(BuiltinStrategy::load(9, "boot")),
        ],
        &clock,
        |_| {},
    )
    .await;
    let c = client(&sim);

    let none = c.builtin_scaling(A).await.expect("builtin");
    assert_eq!((none.groups, none.is_active()), (0, false));
    let confs = raw(
        &c,
        Action::DescribeAutoScaleGroupGlobalConf,
        json!({"InstanceId": A}),
    )
    .await
    .expect("groups");
    assert_eq!(
        (
            confs["TotalCount"].clone(),
            confs["GroupGlobalConfs"].clone()
        ),
        (json!(0), json!([]))
    );
    assert_eq!(
        c.builtin_scaling(B).await.expect("builtin").enabled,
        ["load:boot"]
    );

    // A load strategy with no group: on, then off.
    assert!(sim.set_builtin_strategy(A, BuiltinStrategy::load(1, "cpu")));
    assert_eq!(
        c.builtin_scaling(A).await.expect("builtin").enabled,
        ["load:cpu"]
    );
    assert!(sim.set_builtin_strategy(A, BuiltinStrategy::load(1, "cpu").with_status(STRATEGY_OFF)));
    assert!(!c.builtin_scaling(A).await.expect("builtin").is_active());

    // A paused time strategy in group 7 lists the group; the client then asks per group.
    assert!(
        sim.set_builtin_strategy(
            A,
            BuiltinStrategy::time(2, "night")
                .in_group(7)
                .with_status(STRATEGY_OFF)
        )
    );
    let paused = c.builtin_scaling(A).await.expect("builtin");
    assert_eq!((paused.groups, paused.is_active()), (1, false));
    let confs = raw(
        &c,
        Action::DescribeAutoScaleGroupGlobalConf,
        json!({"InstanceId": A}),
    )
    .await
    .expect("groups");
    assert_eq!(confs["TotalCount"], 1);
    let group = &confs["GroupGlobalConfs"][0];
    assert_eq!(
        (
            group["GroupGlobalConf"]["Id"].clone(),
            group["GroupGlobalConf"]["GroupName"].clone()
        ),
        (json!(7), json!("group-7"))
    );
    assert!(group["CurrentNodes"].is_i64());
    let asked: Vec<Value> = sim
        .ledger()
        .for_action("DescribeAutoScaleStrategies")
        .map(|e| e.params["GroupId"].clone())
        .collect();
    assert_eq!(asked.last(), Some(&json!(7)));

    let seven = raw(
        &c,
        Action::DescribeAutoScaleStrategies,
        json!({"InstanceId": A, "GroupId": 7}),
    )
    .await
    .expect("strategies");
    assert_eq!(seven["LoadAutoScaleStrategies"], json!([]));
    let night = &seven["TimeBasedAutoScaleStrategies"][0];
    assert_eq!(
        (
            night["StrategyId"].clone(),
            night["StrategyName"].clone(),
            night["StrategyStatus"].clone(),
            night["GroupId"].clone()
        ),
        (json!(2), json!("night"), json!(3), json!(7))
    );
    assert!(night["ScaleAction"].is_i64());
    let every = raw(
        &c,
        Action::DescribeAutoScaleStrategies,
        json!({"InstanceId": A}),
    )
    .await
    .expect("strategies");
    assert_eq!(
        every["LoadAutoScaleStrategies"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        every["TimeBasedAutoScaleStrategies"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let other = raw(
        &c,
        Action::DescribeAutoScaleStrategies,
        json!({"InstanceId": A, "GroupId": 8}),
    )
    .await
    .expect("strategies");
    assert_eq!(
        (
            other["LoadAutoScaleStrategies"].clone(),
            other["TimeBasedAutoScaleStrategies"].clone()
        ),
        (json!([]), json!([]))
    );

    assert!(
        sim.set_builtin_strategy(
            A,
            BuiltinStrategy::time(2, "night")
                .in_group(7)
                .with_status(STRATEGY_ON)
        )
    );
    assert_eq!(
        c.builtin_scaling(A).await.expect("builtin").enabled,
        ["time:night"]
    );

    assert!(sim.clear_builtin(A));
    let cleared = c.builtin_scaling(A).await.expect("builtin");
    assert_eq!((cleared.groups, cleared.is_active()), (0, false));
    assert!(!sim.set_builtin_strategy("emr-zzz99999", BuiltinStrategy::load(1, "x")));
    assert_eq!(
        code_of(
            &raw(
                &c,
                Action::DescribeAutoScaleStrategies,
                json!({"InstanceId": "emr-zzz99999"})
            )
            .await
        ),
        "ResourceNotFound.ClusterNotFound"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn set_task_nodes_keeps_the_list_and_the_count_in_step() {
    let clock = clock();
    let tagged = SimNode::task()
        .with_order_no("ins-ours0001")
        .with_tag("managed-by", "emr-autoscaler");
    let sim = sim_with(
        vec![SimCluster::new(A).with_task_nodes(2).with_node(tagged)],
        &clock,
        |_| {},
    )
    .await;
    let c = client(&sim);
    assert_eq!(status(&c, A).await.1, Some(3));
    assert!(sim.set_task_nodes(A, 6));
    assert_eq!(status(&c, A).await.1, Some(6));
    assert_eq!(task_ids(&c, A).await.len(), 6);
    assert!(sim.set_task_nodes(A, 1));
    assert_eq!(
        task_ids(&c, A).await,
        ["ins-ours0001"],
        "untagged nodes go first"
    );
    let added = sim
        .add_node(A, SimNode::task().auto_scaled())
        .expect("added");
    let listed = c.task_nodes(A).await.expect("nodes");
    assert_eq!(listed.len(), 2);
    assert_eq!(
        (listed[1].order_no.as_deref(), listed[1].auto_flag),
        (Some(added.as_str()), Some(1))
    );
    assert!(sim.update_node(A, &added, |n| n.disable_api_termination = true));
    assert_eq!(
        c.task_nodes(A).await.expect("nodes")[1].disable_api_termination,
        Some(true)
    );
    assert!(!sim.set_task_nodes("emr-zzz99999", 1));
    assert_eq!(sim.nodes("emr-zzz99999"), None);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_node_ids_are_refused_at_start() {
    let clock = clock();
    let config = SimConfig {
        clusters: vec![
            SimCluster::new(A).with_node(SimNode::task().with_order_no("ins-same0001")),
            SimCluster::new(B).with_node(SimNode::task().with_order_no("ins-same0001")),
        ],
        ..SimConfig::default()
    };
    let err = Simulator::start(config, Arc::new(clock))
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("ins-same0001"), "{err}");
}

/// A reqwest client that does not follow redirects.
fn plain_http(follow: bool) -> reqwest::Client {
    // Err only means another test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let policy = if follow {
        reqwest::redirect::Policy::limited(3)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(policy)
        .build()
        .expect("client")
}

async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    let resp = http.get(url).send().await.expect("answer");
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("json")
}

#[tokio::test]
async fn yarn_stand_in_serves_nodes_apps_and_a_standby_redirect() {
    let active = YarnRm::start().await.expect("starts");
    let http = plain_http(false);
    let nodes_url = format!("{}/ws/v1/cluster/nodes", active.url());
    let apps_url = format!("{}/ws/v1/cluster/apps?states=RUNNING", active.url());

    assert_eq!(get_json(&http, &nodes_url).await, json!({"nodes": null}));
    assert_eq!(get_json(&http, &apps_url).await, json!({"apps": null}));

    active.set_nodes(vec![
        YarnNode::running("10.0.0.5", "10.0.0.5:8042", 3),
        YarnNode::running("worker-2.cluster", "worker-2.cluster:8042", 0),
        YarnNode::running("10.0.0.7", "10.0.0.7:8042", 1).with_state("DECOMMISSIONING"),
    ]);
    active.set_apps(vec![YarnApp::new(
        "application_1800000000000_0001",
        "10.0.0.5:8042",
    )]);
    let nodes = get_json(&http, &nodes_url).await;
    let list = nodes["nodes"]["node"].as_array().expect("node list");
    assert_eq!(list.len(), 3);
    assert_eq!(
        (
            list[0]["nodeHostName"].clone(),
            list[0]["nodeHTTPAddress"].clone(),
            list[0]["state"].clone(),
            list[0]["numContainers"].clone()
        ),
        (
            json!("10.0.0.5"),
            json!("10.0.0.5:8042"),
            json!("RUNNING"),
            json!(3)
        )
    );
    assert_eq!(list[1]["nodeHTTPAddress"], "worker-2.cluster:8042");
    let running = get_json(&http, &format!("{nodes_url}?states=RUNNING")).await;
    assert_eq!(running["nodes"]["node"].as_array().map(Vec::len), Some(2));
    let apps = get_json(&http, &apps_url).await;
    assert_eq!(
        apps["apps"]["app"],
        json!([{
            "id": "application_1800000000000_0001",
            "name": "application_1800000000000_0001",
            "user": "hadoop",
            "queue": "default",
            "state": "RUNNING",
            "finalStatus": "UNDEFINED",
            "amHostHttpAddress": "10.0.0.5:8042",
        }])
    );
    let finished = get_json(
        &http,
        &format!("{}/ws/v1/cluster/apps?states=FINISHED", active.url()),
    )
    .await;
    assert_eq!(finished, json!({"apps": null}));
    let missing = http
        .get(format!("{}/ws/v1/nope", active.url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(missing.status(), 404);

    // A standby answers 307 to the same path and query on the active one.
    let standby = YarnRm::start().await.expect("starts");
    standby.set_redirect(Some(active.url()));
    let standby_apps = format!("{}/ws/v1/cluster/apps?states=RUNNING", standby.url());
    let resp = http.get(&standby_apps).send().await.expect("answer");
    assert_eq!(resp.status(), 307);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert_eq!(location, Some(apps_url.clone()));
    let followed = get_json(&plain_http(true), &standby_apps).await;
    assert_eq!(followed, apps);
    assert_eq!(
        standby.requests(),
        ["/ws/v1/cluster/apps?states=RUNNING"; 2]
    );
    standby.set_redirect(None);
    assert_eq!(get_json(&http, &standby_apps).await, json!({"apps": null}));

    assert!(
        active
            .requests()
            .iter()
            .any(|r| r == "/ws/v1/cluster/apps?states=RUNNING")
    );
    active.set_apps(Vec::new());
    assert_eq!(get_json(&http, &apps_url).await, json!({"apps": null}));
    let url = active.url();
    active.shutdown().await;
    standby.shutdown().await;
    assert!(
        http.get(format!("{url}/ws/v1/cluster/nodes"))
            .send()
            .await
            .is_err(),
        "stopped"
    );
}
