//! Engine tests: each action's validation and answers, flows on a fixed
//! clock, ClientTokens on a separate wall clock, and the knobs.

use super::*;

pub(super) const A: &str = "emr-aaaaaaaa";
pub(super) const B: &str = "emr-bbbbbbbb";

pub(super) fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000, 0).expect("valid test timestamp")
}

pub(super) fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).expect("small"))
}

pub(super) fn engine() -> Engine {
    let clusters = [
        SimCluster::new(A).with_task_nodes(2),
        SimCluster::new(B).with_flow_duration(Duration::from_secs(10)),
    ];
    Engine::new(&clusters, Duration::from_secs(60), t0())
}

fn params(v: Value) -> Map<String, Value> {
    into_map(v)
}

pub(super) fn run(
    e: &mut Engine,
    action: Action,
    body: Value,
    now: DateTime<Utc>,
    wall: DateTime<Utc>,
) -> Result<ActionOk, ApiError> {
    run_with(e, action, body, now, wall, FlowOverrides::default())
}

pub(super) fn run_with(
    e: &mut Engine,
    action: Action,
    body: Value,
    now: DateTime<Utc>,
    wall: DateTime<Utc>,
    overrides: FlowOverrides,
) -> Result<ActionOk, ApiError> {
    let mut give = |_: &str| overrides;
    let mut hooks = Hooks {
        flow_overrides: &mut give,
        null_config: None,
    };
    e.execute(action, &params(body), now, wall, &mut hooks)
}

pub(super) fn scale(id: &str, task: i64, token: &str) -> Value {
    json!({"InstanceId": id, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": task, "ClientToken": token})
}

pub(super) fn code(r: Result<ActionOk, ApiError>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.code().to_owned(),
    }
}

#[test]
fn scale_out_validation() {
    let cases = [
        (
            json!({"InstanceId": "emr-zzzzzzzz", "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1}),
            "ResourceNotFound.ClusterNotFound",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600}),
            "InvalidParameter.InvalidCountNum",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "CoreCount": 1}),
            "InvalidParameter.InvalidCountNum",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 0}),
            "InvalidParameter.InvalidCount",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "CoreCount": -2}),
            "InvalidParameter.InvalidCount",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 21}),
            "InvalidParameter.InvalidTaskCount",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "CoreCount": 21}),
            "InvalidParameter.InvalidCoreCount",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "m", "TimeSpan": 1, "TaskCount": 1}),
            "InvalidParameter.InvalidTimeUnit",
        ),
        (
            json!({"InstanceId": A, "PayMode": 1, "TimeUnit": "s", "TimeSpan": 1, "TaskCount": 1}),
            "InvalidParameter.InvalidTimeUnit",
        ),
        (
            json!({"InstanceId": A, "PayMode": 7, "TimeUnit": "s", "TimeSpan": 1, "TaskCount": 1}),
            "InvalidParameter.InvalidPaymode",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 0, "TaskCount": 1}),
            "InvalidParameter.InvalidTimeSpan",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "ClientToken": ""}),
            "InvalidParameter.InvalidClientToken",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": "1"}),
            "InvalidParameter",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1, "Tags": [{"Key": "a"}]}),
            "InvalidParameter",
        ),
        (
            json!({"InstanceId": A, "PayMode": 0, "TimeUnit": "s", "TaskCount": 1}),
            "MissingParameter",
        ),
        (
            json!({"PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600, "TaskCount": 1}),
            "MissingParameter",
        ),
        (
            json!({"InstanceId": A, "PayMode": 1, "TimeUnit": "m", "TimeSpan": 1, "CoreCount": 20, "Tags": [{"TagKey": "a", "TagValue": "b"}], "YarnNodeLabel": "x"}),
            "ok",
        ),
    ];
    for (body, want) in cases {
        let mut e = engine();
        let got = code(run(
            &mut e,
            Action::ScaleOutInstance,
            body.clone(),
            t0(),
            t0(),
        ));
        assert_eq!(got, want, "body {body}");
    }
}

#[test]
fn flow_adds_nodes_when_it_completes() {
    let mut e = engine();
    let ok = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 3, "t1"),
        t0(),
        t0(),
    )
    .expect("starts");
    let flow_id = ok.flow_id.expect("flow id");
    assert_eq!(ok.body["InstanceId"], A);
    assert_eq!(ok.body["ClientToken"], "t1");
    assert_eq!(
        e.cluster(A, t0()).map(|c| (c.status, c.task_nodes)),
        Some((4, 2))
    );
    assert_eq!(
        e.flow(flow_id, t0() + secs(30))
            .map(|f| (f.total_status, f.progress)),
        Some((1, 0.5))
    );
    assert_eq!(e.cluster(A, t0() + secs(59)).map(|c| c.task_nodes), Some(2));
    let done = e.cluster(A, t0() + secs(60)).expect("cluster");
    assert_eq!(
        (done.status, done.task_nodes, done.current_flow),
        (2, 5, None)
    );
    assert_eq!(
        e.flow(flow_id, t0() + secs(61)).map(|f| f.total_status),
        Some(FLOW_DONE)
    );
}

#[test]
fn client_token_replays_within_five_wall_minutes_only() {
    check_token_window(Action::ScaleOutInstance, &scale(A, 3, "tok"), |_| {}, "ok");
}

/// Checks the ClientToken window of a scale-out `action` whose `body` adds
/// 3 task nodes to A: the same body again replays the first answer while
/// the flow runs and after it ended (after `between` changed the engine),
/// within five wall minutes; past them it is a new request, answered
/// `fresh` (`"ok"`: a new flow).
pub(super) fn check_token_window(
    action: Action,
    body: &Value,
    between: impl FnOnce(&mut Engine),
    fresh: &str,
) {
    let mut e = engine();
    let send = |e: &mut Engine, now, wall| run(e, action, body.clone(), now, wall);
    let first = send(&mut e, t0(), t0()).expect("starts");
    // Same token while the flow runs: replay, not busy.
    let again = send(&mut e, t0(), t0() + secs(299)).expect("replays");
    assert!(again.deduplicated);
    assert_eq!((again.flow_id, &again.body), (first.flow_id, &first.body));
    // Also after the flow finished: no second flow.
    between(&mut e);
    let later = t0() + secs(120);
    let replay = send(&mut e, later, t0() + secs(300)).expect("replays");
    assert_eq!(replay.flow_id, first.flow_id);
    assert_eq!(
        e.cluster(A, later).map(|c| (c.task_nodes, c.flows_started)),
        Some((5, 1))
    );
    // Past the window (wall clock), the token is new again.
    let fresh_answer = send(&mut e, later, t0() + secs(301));
    match fresh_answer {
        Ok(ok) if fresh == "ok" => {
            assert!(!ok.deduplicated);
            assert_ne!(ok.flow_id, first.flow_id);
        }
        other => assert_eq!(code(other), fresh),
    }
}

#[test]
fn busy_cluster_refuses_new_tokens() {
    let mut e = engine();
    run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "a"),
        t0(),
        t0(),
    )
    .expect("starts");
    let busy = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "b"),
        t0() + secs(10),
        t0(),
    );
    assert_eq!(code(busy), "ResourceInUse.InstanceInProcess");
    // The refused token was not remembered: it works once the flow is done.
    let ok = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "b"),
        t0() + secs(60),
        t0(),
    );
    assert!(ok.is_ok_and(|r| !r.deduplicated));
    // The other cluster is independent.
    assert_eq!(
        code(run(
            &mut e,
            Action::ScaleOutInstance,
            scale(B, 1, "c"),
            t0(),
            t0()
        )),
        "ok"
    );
}

#[test]
fn flow_faults_slow_and_fail() {
    let mut e = engine();
    let slow = FlowOverrides {
        duration: Some(Duration::from_secs(500)),
        fail: true,
    };
    let ok = run_with(
        &mut e,
        Action::ScaleOutInstance,
        scale(B, 4, "x"),
        t0(),
        t0(),
        slow,
    )
    .expect("starts");
    let flow_id = ok.flow_id.expect("flow id");
    assert_eq!(
        e.cluster(B, t0() + secs(499)).map(|c| c.status),
        Some(STATUS_SCALING_OUT)
    );
    let failed = e.cluster(B, t0() + secs(500)).expect("cluster");
    assert_eq!(
        (failed.status, failed.task_nodes, failed.flows_failed),
        (STATUS_SCALE_OUT_FAILED, 0, 1)
    );
    assert_eq!(
        e.flow(flow_id, t0() + secs(500)).map(|f| f.total_status),
        Some(FLOW_FAILED)
    );
    // A failed cluster can scale out again; B's own duration is 10 s.
    run(
        &mut e,
        Action::ScaleOutInstance,
        scale(B, 4, "y"),
        t0() + secs(600),
        t0(),
    )
    .expect("starts");
    assert_eq!(
        e.cluster(B, t0() + secs(610))
            .map(|c| (c.status, c.task_nodes)),
        Some((2, 4))
    );
}

#[test]
fn describe_instances_lists_known_ids_with_paging() {
    let mut e = engine();
    let body = json!({"DisplayStrategy": "clusterList", "InstanceIds": [B, "emr-nope0000", A], "ProjectId": -1});
    let ok = run(&mut e, Action::DescribeInstances, body, t0(), t0()).expect("describes");
    assert_eq!(ok.body["TotalCnt"], 2);
    assert_eq!(ok.body["ClusterList"][0]["ClusterId"], A);
    assert_eq!(ok.body["ClusterList"][0]["Config"]["TaskNodeSize"], 2);
    let page = json!({"DisplayStrategy": "clusterList", "Offset": 1, "Limit": 1});
    let ok = run(&mut e, Action::DescribeInstances, page, t0(), t0()).expect("describes");
    assert_eq!(
        (
            ok.body["TotalCnt"].clone(),
            ok.body["ClusterList"][0]["ClusterId"].clone()
        ),
        (json!(2), json!(B))
    );
    assert_eq!(
        code(run(
            &mut e,
            Action::DescribeInstances,
            json!({}),
            t0(),
            t0()
        )),
        "MissingParameter"
    );
    let bad_limit = json!({"DisplayStrategy": "clusterList", "Limit": 0});
    assert_eq!(
        code(run(
            &mut e,
            Action::DescribeInstances,
            bad_limit,
            t0(),
            t0()
        )),
        "InvalidParameter"
    );
}

#[test]
fn null_config_hook_for_one_cluster_or_all() {
    let mut e = engine();
    let mut none = |_: &str| FlowOverrides::default();
    let mut hooks = Hooks {
        flow_overrides: &mut none,
        null_config: Some(Some(B.to_owned())),
    };
    let body = params(json!({"DisplayStrategy": "clusterList"}));
    let ok = e
        .execute(Action::DescribeInstances, &body, t0(), t0(), &mut hooks)
        .expect("describes");
    assert!(ok.body["ClusterList"][0]["Config"].is_object());
    assert!(ok.body["ClusterList"][1]["Config"].is_null());
    hooks.null_config = Some(None);
    let ok = e
        .execute(Action::DescribeInstances, &body, t0(), t0(), &mut hooks)
        .expect("describes");
    assert!(ok.body["ClusterList"][0]["Config"].is_null());
}

#[test]
fn flow_status_detail() {
    let mut e = engine();
    let ok = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "t"),
        t0(),
        t0(),
    )
    .expect("starts");
    let fid = ok.flow_id.expect("flow id").to_string();
    let ask = |id: &str, value: Value| json!({"InstanceId": id, "FlowParam": {"FKey": "FlowId", "FValue": value}});
    let status = |r: Result<ActionOk, ApiError>| {
        r.map(|o| o.body["FlowTotalStatus"].clone())
            .map_err(|e| e.code().to_owned())
    };
    assert_eq!(
        status(run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            ask(A, json!(fid)),
            t0(),
            t0()
        )),
        Ok(json!(0))
    );
    let at_end = t0() + secs(60);
    assert_eq!(
        status(run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            ask(A, json!(fid)),
            at_end,
            t0()
        )),
        Ok(json!(2))
    );
    let invalid = Err("InvalidParameter.InvalidJobFlow".to_owned());
    assert_eq!(
        status(run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            ask(A, json!("999")),
            t0(),
            t0()
        )),
        invalid
    );
    assert_eq!(
        status(run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            ask(B, json!(fid)),
            t0(),
            t0()
        )),
        invalid
    );
    assert_eq!(
        status(run(
            &mut e,
            Action::DescribeClusterFlowStatusDetail,
            ask(A, json!("x")),
            t0(),
            t0()
        )),
        invalid
    );
    let numeric = status(run(
        &mut e,
        Action::DescribeClusterFlowStatusDetail,
        ask(A, json!(100_001)),
        t0(),
        t0(),
    ));
    assert_eq!(numeric, Err("InvalidParameter".to_owned()));
}

#[test]
fn describe_nodes_counts_task_nodes() {
    let mut e = engine();
    let ok = run(
        &mut e,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "task", "Offset": 0, "Limit": 1}),
        t0(),
        t0(),
    )
    .expect("describes");
    assert_eq!(ok.body["TotalCnt"], 2);
    assert_eq!(ok.body["NodeList"].as_array().map(Vec::len), Some(1));
    assert_eq!(ok.body["NodeList"][0]["Flag"], 3);
    let all = run(
        &mut e,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "all"}),
        t0(),
        t0(),
    )
    .expect("describes");
    assert_eq!(all.body["TotalCnt"], 6);
    let bad = run(
        &mut e,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "gpu"}),
        t0(),
        t0(),
    );
    assert_eq!(code(bad), "InvalidParameter.InvalidNodeType");
}

fn terminate(id: &str, nodes: &[&str], grace: i64) -> Value {
    json!({"InstanceId": id, "CvmInstanceIds": nodes, "NodeFlag": "TASK", "GraceDownFlag": true, "GraceDownTime": grace})
}

pub(super) fn task_ids(e: &mut Engine, id: &str, now: DateTime<Utc>) -> Vec<String> {
    e.nodes(id, now)
        .expect("cluster")
        .into_iter()
        .filter(|n| n.flag == NODE_FLAG_TASK)
        .map(|n| n.order_no)
        .collect()
}

fn with_nodes(nodes: Vec<SimNode>) -> Engine {
    let mut cluster = SimCluster::new(A).with_task_nodes(2);
    cluster.nodes = nodes;
    Engine::new(&[cluster], Duration::from_secs(60), t0())
}

#[test]
fn generated_nodes_have_distinct_ids_and_task_apply_times_oldest_first() {
    let clusters = [
        SimCluster::new(A).with_task_nodes(5),
        SimCluster::new(B).with_task_nodes(5),
    ];
    let mut e = Engine::new(&clusters, Duration::from_secs(60), t0());
    let a = e.nodes(A, t0()).expect("a");
    let b = e.nodes(B, t0()).expect("b");
    assert_eq!(a.len(), 1 + 3 + 5);
    assert_eq!(
        a.iter().map(|n| n.flag).collect::<Vec<_>>(),
        [1, 2, 2, 2, 3, 3, 3, 3, 3]
    );
    let mut ids: Vec<&str> = a.iter().chain(&b).map(|n| n.order_no.as_str()).collect();
    let mut ips: Vec<&str> = a.iter().chain(&b).map(|n| n.ip.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ips.sort_unstable();
    ips.dedup();
    assert_eq!((ids.len(), ips.len()), (18, 18));
    let times: Vec<DateTime<Utc>> = a
        .iter()
        .filter(|n| n.flag == NODE_FLAG_TASK)
        .filter_map(|n| n.apply_time)
        .collect();
    assert_eq!(times.len(), 5);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(times.iter().all(|t| *t < t0()));
    assert!(
        a.iter()
            .all(|n| n.tags.is_none() && n.auto_flag == 0 && n.charge_type == 0)
    );
}

#[test]
fn describe_nodes_pages_by_index() {
    let clusters = [SimCluster::new(A).with_task_nodes(250)];
    let mut e = Engine::new(&clusters, Duration::from_secs(60), t0());
    let page = |e: &mut Engine, offset: i64, limit: Option<i64>| {
        let mut body = json!({"InstanceId": A, "NodeFlag": "task", "Offset": offset});
        if let Some(l) = limit {
            body["Limit"] = json!(l);
        }
        run(e, Action::DescribeClusterNodes, body, t0(), t0())
    };
    let mut seen = Vec::new();
    for (offset, want) in [(0, 100), (1, 100), (2, 50)] {
        let ok = page(&mut e, offset, Some(100)).expect("page");
        assert_eq!(ok.body["TotalCnt"], 250);
        let list = ok.body["NodeList"].as_array().expect("list");
        assert_eq!(list.len(), want, "page {offset}");
        seen.extend(list.iter().map(|n| n["OrderNo"].clone()));
    }
    assert_eq!(
        seen,
        task_ids(&mut e, A, t0())
            .into_iter()
            .map(Value::from)
            .collect::<Vec<_>>()
    );
    assert!(page(&mut e, 3, Some(100)).expect("page").body["NodeList"].is_null());
    let default = page(&mut e, 0, None).expect("page");
    assert_eq!(default.body["NodeList"].as_array().map(Vec::len), Some(100));
    let small = page(&mut e, 4, Some(7)).expect("page");
    assert_eq!(small.body["NodeList"][0]["OrderNo"], seen[28]);
    assert!(page(&mut e, i64::MAX, Some(100)).expect("page").body["NodeList"].is_null());
    for limit in [0, 101] {
        assert_eq!(code(page(&mut e, 0, Some(limit))), "InvalidParameter");
    }
    assert_eq!(code(page(&mut e, -1, Some(10))), "InvalidParameter");
    let common = run(
        &mut e,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "common"}),
        t0(),
        t0(),
    )
    .expect("describes");
    assert_eq!(common.body["TotalCnt"], 0);
    assert!(common.body["NodeList"].is_null());
    let missing = run(
        &mut e,
        Action::DescribeClusterNodes,
        json!({"InstanceId": "emr-nope0000", "NodeFlag": "task"}),
        t0(),
        t0(),
    );
    assert_eq!(code(missing), "ResourceNotFound.ClusterNotFound");
}

#[test]
fn scale_out_nodes_carry_tags_pay_mode_and_start_time() {
    let mut e = engine();
    let mut body = scale(A, 2, "t");
    body["Tags"] = json!([{"TagKey": "managed-by", "TagValue": "emr-autoscaler"}]);
    run(&mut e, Action::ScaleOutInstance, body, t0(), t0()).expect("starts");
    assert_eq!(task_ids(&mut e, A, t0() + secs(59)).len(), 2);
    let nodes = e.nodes(A, t0() + secs(60)).expect("cluster");
    let new: Vec<&SimNode> = nodes.iter().skip(1 + 3 + 2).collect();
    assert_eq!(new.len(), 2);
    for n in &new {
        assert_eq!(
            (n.flag, n.auto_flag, n.destroyable, n.charge_type),
            (3, 0, 1, 0)
        );
        assert!(n.has_tag("managed-by", "emr-autoscaler"));
        assert_eq!(n.apply_time, Some(t0()));
        assert!(!n.disable_api_termination);
    }
    let monthly =
        json!({"InstanceId": A, "PayMode": 1, "TimeUnit": "m", "TimeSpan": 1, "CoreCount": 1});
    let later = t0() + secs(100);
    run(&mut e, Action::ScaleOutInstance, monthly, later, later).expect("starts");
    let nodes = e.nodes(A, later + secs(60)).expect("cluster");
    let core = nodes.last().expect("a node");
    assert_eq!((core.flag, core.charge_type), (NODE_FLAG_CORE, 1));
    assert!(core.tags.is_none());
    assert_eq!(
        e.cluster(A, later + secs(60)).map(|c| c.core_nodes),
        Some(4)
    );
}

#[test]
fn scale_in_flow_removes_nodes_when_it_ends() {
    let mut e = engine();
    let ids = task_ids(&mut e, A, t0());
    let ok = run(
        &mut e,
        Action::TerminateClusterNodes,
        terminate(A, &[&ids[1]], 600),
        t0(),
        t0(),
    )
    .expect("starts");
    let flow_id = ok.flow_id.expect("flow id");
    assert_eq!(ok.body, into_map(json!({"FlowId": flow_id})));
    let during = e.cluster(A, t0() + secs(599)).expect("cluster");
    assert_eq!(
        (during.status, during.task_nodes, during.removing.clone()),
        (STATUS_SCALING_IN, 2, vec![ids[1].clone()])
    );
    let flow = e.flow(flow_id, t0() + secs(300)).expect("flow");
    assert_eq!(
        (flow.kind, flow.total_status, flow.progress),
        (FlowKind::ScaleIn, FLOW_RUNNING, 0.5)
    );
    // Busy: neither a second scale-in nor a scale-out may start.
    let again = run(
        &mut e,
        Action::TerminateClusterNodes,
        terminate(A, &[&ids[0]], 60),
        t0() + secs(10),
        t0(),
    );
    assert_eq!(code(again), "ResourceInUse.InstanceInProcess");
    let out = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "x"),
        t0() + secs(10),
        t0(),
    );
    assert_eq!(code(out), "ResourceInUse.InstanceInProcess");
    let done = e.cluster(A, t0() + secs(600)).expect("cluster");
    assert_eq!(
        (
            done.status,
            done.task_nodes,
            done.nodes_removed,
            done.removing.len()
        ),
        (STATUS_RUNNING, 1, 1, 0)
    );
    assert_eq!(task_ids(&mut e, A, t0() + secs(600)), [ids[0].clone()]);
    let detail = run(
        &mut e,
        Action::DescribeClusterFlowStatusDetail,
        json!({"InstanceId": A, "FlowParam": {"FKey": "FlowId", "FValue": flow_id.to_string()}}),
        t0() + secs(600),
        t0(),
    )
    .expect("describes");
    assert_eq!(detail.body["FlowTotalStatus"], FLOW_DONE);
    assert_eq!(detail.body["FlowName"], "Terminate Task Nodes");
    // The removed node is gone for good.
    let gone = run(
        &mut e,
        Action::TerminateClusterNodes,
        terminate(A, &[&ids[1]], 60),
        t0() + secs(700),
        t0(),
    );
    assert_eq!(code(gone), "ResourceNotFound.InstanceNotFound");
}

#[test]
fn scale_in_without_graceful_decommission_takes_one_second() {
    let mut e = engine();
    let ids = task_ids(&mut e, A, t0());
    let body =
        json!({"InstanceId": A, "CvmInstanceIds": ids, "NodeFlag": "TASK", "GraceDownFlag": false});
    run(&mut e, Action::TerminateClusterNodes, body, t0(), t0()).expect("starts");
    assert_eq!(e.cluster(A, t0()).map(|c| c.task_nodes), Some(2));
    let done = e
        .cluster(A, t0() + chrono::Duration::milliseconds(1000))
        .expect("cluster");
    assert_eq!((done.status, done.task_nodes), (STATUS_RUNNING, 0));
}

#[test]
fn failed_or_slow_scale_in_keeps_its_nodes() {
    let mut e = engine();
    let ids = task_ids(&mut e, A, t0());
    let fail = FlowOverrides {
        duration: Some(Duration::from_secs(900)),
        fail: true,
    };
    let ok = run_with(
        &mut e,
        Action::TerminateClusterNodes,
        terminate(A, &[&ids[0], &ids[1]], 60),
        t0(),
        t0(),
        fail,
    )
    .expect("starts");
    let flow_id = ok.flow_id.expect("flow id");
    assert_eq!(
        e.cluster(A, t0() + secs(899)).map(|c| c.status),
        Some(STATUS_SCALING_IN)
    );
    let after = e.cluster(A, t0() + secs(900)).expect("cluster");
    assert_eq!(
        (
            after.status,
            after.task_nodes,
            after.flows_failed,
            after.nodes_removed
        ),
        (STATUS_RUNNING, 2, 1, 0)
    );
    assert_eq!(
        e.flow(flow_id, t0() + secs(900)).map(|f| f.total_status),
        Some(FLOW_FAILED)
    );
}

#[test]
fn terminate_validation_and_refusals_execute_nothing() {
    let nodes = vec![
        SimNode::core().with_order_no("ins-core0001"),
        SimNode::task()
            .with_order_no("ins-keep0001")
            .with_destroyable(false),
        SimNode::task().with_order_no("ins-prot0001").protected(),
        SimNode::task().with_order_no("ins-mnth0001").monthly(),
        SimNode::task().with_order_no("ins-okay0001"),
        SimNode::task().with_order_no("ins-auto0001").auto_scaled(),
    ];
    let good = |extra: Value| {
        let mut body = json!({"InstanceId": A, "CvmInstanceIds": ["ins-okay0001"], "NodeFlag": "TASK", "GraceDownFlag": true, "GraceDownTime": 60});
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        body
    };
    let cases = [
        (
            json!({"InstanceId": A, "NodeFlag": "TASK"}),
            "MissingParameter",
            "CvmInstanceIds",
        ),
        (
            good(json!({"NodeFlag": null})),
            "MissingParameter",
            "NodeFlag",
        ),
        (
            good(json!({"CvmInstanceIds": []})),
            "InvalidParameter",
            "at least one",
        ),
        (
            good(json!({"CvmInstanceIds": [1]})),
            "InvalidParameter",
            "CvmInstanceIds",
        ),
        (
            good(json!({"CvmInstanceIds": [""]})),
            "InvalidParameter",
            "empty",
        ),
        (
            good(json!({"CvmInstanceIds": ["ins-okay0001", "ins-okay0001"]})),
            "InvalidParameter",
            "ins-okay0001",
        ),
        (
            good(json!({"NodeFlag": "task"})),
            "InvalidParameter",
            "NodeFlag",
        ),
        (
            good(json!({"NodeFlag": "CORE"})),
            "InvalidParameter",
            "NodeFlag",
        ),
        (
            good(json!({"GraceDownTime": 59})),
            "InvalidParameter",
            "GraceDownTime",
        ),
        (
            good(json!({"GraceDownTime": 1801})),
            "InvalidParameter",
            "GraceDownTime",
        ),
        (
            good(json!({"GraceDownTime": null})),
            "InvalidParameter",
            "GraceDownTime",
        ),
        (
            good(json!({"GraceDownTime": "600"})),
            "InvalidParameter",
            "GraceDownTime",
        ),
        (
            good(json!({"GraceDownFlag": "yes"})),
            "InvalidParameter",
            "GraceDownFlag",
        ),
        (
            good(json!({"InstanceId": "emr-nope0000"})),
            "ResourceNotFound.ClusterNotFound",
            "emr-nope0000",
        ),
        (
            good(json!({"CvmInstanceIds": ["ins-okay0001", "ins-nope0001"]})),
            "ResourceNotFound.InstanceNotFound",
            "ins-nope0001",
        ),
        (
            good(json!({"CvmInstanceIds": ["ins-okay0001", "ins-core0001"]})),
            "InvalidParameter.InvalidNodeType",
            "ins-core0001",
        ),
        (
            good(json!({"CvmInstanceIds": ["ins-keep0001"]})),
            "InvalidParameter.NodeNotDestroyable",
            "ins-keep0001",
        ),
        (
            good(json!({"CvmInstanceIds": ["ins-prot0001", "ins-okay0001"]})),
            "InvalidParameter.TerminationProtected",
            "ins-prot0001",
        ),
        (
            good(json!({"CvmInstanceIds": ["ins-mnth0001"]})),
            "InvalidParameter.PrepaidNode",
            "ins-mnth0001",
        ),
    ];
    let mut e = with_nodes(nodes);
    let before = e.nodes(A, t0());
    for (body, want, named) in cases {
        let got = run(
            &mut e,
            Action::TerminateClusterNodes,
            body.clone(),
            t0(),
            t0(),
        );
        let Err(error) = got else {
            panic!("{body} was accepted");
        };
        assert_eq!(error.code(), want, "{body}");
        assert!(error.to_string().contains(named), "{body}: {error}");
    }
    let snap = e.cluster(A, t0() + secs(3600)).expect("cluster");
    assert_eq!((snap.flows_started, snap.status), (0, STATUS_RUNNING));
    assert_eq!(e.nodes(A, t0() + secs(3600)), before);
    // A node of Tencent's own auto-scaling is not refused by the API.
    let auto = good(json!({"CvmInstanceIds": ["ins-auto0001", "ins-okay0001"]}));
    assert_eq!(
        code(run(&mut e, Action::TerminateClusterNodes, auto, t0(), t0())),
        "ok"
    );
}

#[test]
fn a_cluster_that_is_not_running_refuses_scale_in() {
    let mut e = engine();
    let ids = task_ids(&mut e, A, t0());
    let fail = FlowOverrides {
        duration: None,
        fail: true,
    };
    run_with(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "f"),
        t0(),
        t0(),
        fail,
    )
    .expect("starts");
    let later = t0() + secs(60);
    assert_eq!(
        e.cluster(A, later).map(|c| c.status),
        Some(STATUS_SCALE_OUT_FAILED)
    );
    let refused = run(
        &mut e,
        Action::TerminateClusterNodes,
        terminate(A, &[&ids[0]], 60),
        later,
        later,
    );
    let Err(error) = refused else {
        panic!("accepted on a failed cluster");
    };
    assert_eq!(error.code(), "ResourceInUse.InstanceInProcess");
    assert!(error.to_string().contains("302"), "{error}");
}

#[test]
fn set_count_adds_and_drops_untagged_task_nodes_first() {
    let mut e = with_nodes(vec![
        SimNode::task()
            .with_order_no("ins-ours0001")
            .with_tag("managed-by", "emr-autoscaler"),
    ]);
    let start = task_ids(&mut e, A, t0());
    assert_eq!(start.len(), 3);
    assert!(e.set_count(A, NODE_FLAG_TASK, 1, t0()));
    assert_eq!(task_ids(&mut e, A, t0()), ["ins-ours0001"]);
    assert!(e.set_count(A, NODE_FLAG_TASK, 3, t0() + secs(5)));
    let grown = e.nodes(A, t0()).expect("cluster");
    let added: Vec<&SimNode> = grown
        .iter()
        .filter(|n| n.flag == NODE_FLAG_TASK && n.order_no != "ins-ours0001")
        .collect();
    assert_eq!(added.len(), 2);
    assert!(added.iter().all(|n| n.untagged()));
    assert!(added[0].apply_time < added[1].apply_time);
    assert!(e.set_count(A, NODE_FLAG_TASK, 0, t0()));
    assert_eq!(e.cluster(A, t0()).map(|c| c.task_nodes), Some(0));
    assert!(e.set_count(A, NODE_FLAG_CORE, 5, t0()));
    assert_eq!(e.cluster(A, t0()).map(|c| c.core_nodes), Some(5));
    assert!(!e.set_count("emr-nope0000", NODE_FLAG_TASK, 1, t0()));
    // Gone and added nodes.
    let id = e.add_node(A, SimNode::task(), t0()).expect("added");
    assert!(id.starts_with("ins-"));
    assert!(e.update_node(A, &id, |n| n.disable_api_termination = true));
    assert!(
        e.nodes(A, t0())
            .expect("cluster")
            .iter()
            .any(|n| n.order_no == id && n.disable_api_termination)
    );
    assert!(e.node_gone(A, &id));
    assert!(!e.node_gone(A, &id));
    assert_eq!(
        e.cluster(A, t0()).map(|c| (c.task_nodes, c.nodes_removed)),
        Some((0, 0))
    );
}

#[test]
fn builtin_groups_and_strategies() {
    let mut e = engine();
    let groups = |e: &mut Engine| {
        run(
            e,
            Action::DescribeAutoScaleGroupGlobalConf,
            json!({"InstanceId": A}),
            t0(),
            t0(),
        )
        .expect("describes")
        .body
    };
    let strategies = |e: &mut Engine, group: Option<i64>| {
        let mut body = json!({"InstanceId": A});
        if let Some(g) = group {
            body["GroupId"] = json!(g);
        }
        run(e, Action::DescribeAutoScaleStrategies, body, t0(), t0())
            .expect("describes")
            .body
    };
    let none = groups(&mut e);
    assert_eq!(
        (none["TotalCount"].clone(), none["GroupGlobalConfs"].clone()),
        (json!(0), json!([]))
    );
    let empty = strategies(&mut e, None);
    assert_eq!(empty["LoadAutoScaleStrategies"], json!([]));
    assert_eq!(empty["TimeBasedAutoScaleStrategies"], json!([]));
    assert!(e.modify(A, |k| {
        builtin::upsert(k.strategies, BuiltinStrategy::load(1, "cpu"));
        builtin::upsert(k.strategies, BuiltinStrategy::time(2, "night").in_group(5));
    }));
    let listed = groups(&mut e);
    assert_eq!(listed["TotalCount"], 1);
    assert_eq!(listed["GroupGlobalConfs"][0]["GroupGlobalConf"]["Id"], 5);
    assert_eq!(listed["GroupGlobalConfs"][0]["CurrentNodes"], 0);
    let all = strategies(&mut e, None);
    assert_eq!(all["LoadAutoScaleStrategies"][0]["StrategyName"], "cpu");
    assert_eq!(all["TimeBasedAutoScaleStrategies"][0]["GroupId"], 5);
    let five = strategies(&mut e, Some(5));
    assert_eq!(five["LoadAutoScaleStrategies"], json!([]));
    assert_eq!(five["TimeBasedAutoScaleStrategies"][0]["StrategyId"], 2);
    let bad = run(
        &mut e,
        Action::DescribeAutoScaleStrategies,
        json!({"InstanceId": A, "GroupId": "5"}),
        t0(),
        t0(),
    );
    assert_eq!(code(bad), "InvalidParameter");
    let missing = run(
        &mut e,
        Action::DescribeAutoScaleGroupGlobalConf,
        json!({"InstanceId": "emr-nope0000"}),
        t0(),
        t0(),
    );
    assert_eq!(code(missing), "ResourceNotFound.ClusterNotFound");
}
