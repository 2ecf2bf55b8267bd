//! `ScaleOutCluster` tests: the SDK model check, validation, stock per
//! offering, ClientToken and busy semantics shared with `ScaleOutInstance`,
//! the offering on the nodes it adds, and spot reclamation.

use super::tests::{
    A, B, check_token_window, code, engine, run, run_with, scale, secs, t0, task_ids,
};
use super::*;
use crate::sim::node::{DEFAULT_INSTANCE_TYPE, DEFAULT_ZONE};

/// A valid body: `count` TASK nodes of `charge` on cluster `id`.
fn order(id: &str, charge: &str, count: i64, token: &str) -> Value {
    json!({
        "InstanceId": id,
        "InstanceChargeType": charge,
        "ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": count},
        "ClientToken": token,
    })
}

/// `body` with the fields of `extra` set (a null removes nothing: it is
/// sent as null).
fn with(mut body: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    body
}

fn out(e: &mut Engine, body: Value, now: DateTime<Utc>) -> Result<ActionOk, ApiError> {
    run(e, Action::ScaleOutCluster, body, now, now)
}

fn rule(instance_type: &str, zone: Option<&str>, charge: Option<&str>, stock: Stock) -> StockRule {
    StockRule {
        instance_type: instance_type.to_owned(),
        zone: zone.map(str::to_owned),
        charge: charge.map(str::to_owned),
        stock,
    }
}

#[test]
fn a_valid_body_starts_a_flow_that_adds_nodes_with_the_offering() {
    let mut e = engine();
    let body = with(
        order(A, CHARGE_SPOTPAID, 3, "t1"),
        json!({
            "ResourceSpec": {"InstanceType": "S5.4XLARGE64"},
            "Zone": "ap-guangzhou-4",
            "Tags": [{"TagKey": "managed-by", "TagValue": "emr-autoscaler"}],
            "EnableStartServiceFlag": true,
            "YarnNodeLabel": "spot",
        }),
    );
    let ok = out(&mut e, body, t0()).expect("starts");
    let flow_id = ok.flow_id.expect("flow id");
    assert!(!ok.deduplicated);
    for field in [
        "InstanceId",
        "ClientToken",
        "FlowId",
        "TraceId",
        "DealNames",
        "BillId",
    ] {
        assert!(ok.body.contains_key(field), "{field} missing");
    }
    assert_eq!(ok.body["InstanceId"], A);
    assert_eq!(ok.body["ClientToken"], "t1");
    assert_eq!(ok.body["FlowId"], flow_id);
    assert_eq!(
        e.cluster(A, t0() + secs(59))
            .map(|c| (c.status, c.task_nodes)),
        Some((STATUS_SCALING_OUT, 2))
    );
    let done = e.cluster(A, t0() + secs(60)).expect("cluster");
    assert_eq!(
        (done.status, done.task_nodes, done.task_nodes_added),
        (STATUS_RUNNING, 5, 3)
    );
    let nodes = e.nodes(A, t0() + secs(60)).expect("cluster");
    let new: Vec<&SimNode> = nodes.iter().skip(1 + 3 + 2).collect();
    assert_eq!(new.len(), 3);
    for n in &new {
        assert_eq!(
            (n.flag, n.charge_type, n.destroyable),
            (NODE_FLAG_TASK, 0, 1)
        );
        assert_eq!(n.instance_type.as_deref(), Some("S5.4XLARGE64"));
        assert_eq!(n.zone.as_deref(), Some("ap-guangzhou-4"));
        assert_eq!(n.instance_charge_type.as_deref(), Some(CHARGE_SPOTPAID));
        assert!(n.is_spot());
        assert!(n.has_tag("managed-by", "emr-autoscaler"));
        assert_eq!(n.apply_time, Some(t0()));
    }
    // The flow is an ordinary scale-out flow.
    let detail = run(
        &mut e,
        Action::DescribeClusterFlowStatusDetail,
        json!({"InstanceId": A, "FlowParam": {"FKey": "FlowId", "FValue": flow_id.to_string()}}),
        t0() + secs(60),
        t0(),
    )
    .expect("describes");
    assert_eq!(detail.body["FlowTotalStatus"], FLOW_DONE);
}

#[test]
fn describe_cluster_nodes_shows_spec_zone_and_charge() {
    let mut e = engine();
    let body = with(
        order(A, CHARGE_SPOTPAID, 1, "t1"),
        json!({"ResourceSpec": {"InstanceType": "S5.4XLARGE64"}, "Zone": "ap-guangzhou-4"}),
    );
    out(&mut e, body, t0()).expect("starts");
    let prepaid = json!({
        "InstanceId": A,
        "InstanceChargeType": CHARGE_PREPAID,
        "InstanceChargePrepaid": {"Period": 1, "RenewFlag": false},
        "ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": 1},
    });
    out(&mut e, prepaid, t0() + secs(60)).expect("starts");
    let later = t0() + secs(120);
    let listed = run(
        &mut e,
        Action::DescribeClusterNodes,
        json!({"InstanceId": A, "NodeFlag": "task"}),
        later,
        later,
    )
    .expect("describes");
    let list = listed.body["NodeList"].as_array().expect("a list").clone();
    assert_eq!(list.len(), 4);
    // Nodes from before keep the generic answer.
    assert_eq!(
        (
            list[0]["Spec"].clone(),
            list[0]["Zone"].clone(),
            list[0]["ZoneId"].clone(),
            list[0]["CpuNum"].clone(),
            list[0]["MemSize"].clone(),
            list[0]["MemDesc"].clone(),
        ),
        (
            json!("CVM.S5"),
            json!("ap-guangzhou-3"),
            json!(100_003),
            json!(8),
            json!(32768),
            json!("32GB")
        )
    );
    let spot = &list[2];
    assert_eq!(spot["Spec"], "S5.4XLARGE64");
    assert_eq!(spot["Zone"], "ap-guangzhou-4");
    assert_eq!(spot["ZoneId"], 100_004);
    assert_eq!(
        (spot["CpuNum"].clone(), spot["MemSize"].clone()),
        (json!(16), json!(65536))
    );
    assert_eq!(spot["MemDesc"], "64GB");
    assert_eq!(spot["ChargeType"], 0);
    // Without ResourceSpec or Zone: the cluster's defaults; PREPAID is monthly.
    let monthly = &list[3];
    assert_eq!(monthly["Spec"], DEFAULT_INSTANCE_TYPE);
    assert_eq!(monthly["Zone"], DEFAULT_ZONE);
    assert_eq!(monthly["ChargeType"], 1);
    assert!(monthly["Tags"].is_null());
}

#[test]
fn a_core_order_buys_the_clusters_own_instance_type_and_zone() {
    let cluster = SimCluster::new(A)
        .with_instance_type("SA2.2XLARGE16")
        .in_zone("ap-shanghai-2");
    let mut e = Engine::new(&[cluster], Duration::from_secs(60), t0());
    let body = json!({
        "InstanceId": A,
        "InstanceChargeType": CHARGE_POSTPAID_BY_HOUR,
        "ScaleOutNodeConfig": {"NodeFlag": "CORE", "NodeCount": 2},
    });
    out(&mut e, body, t0()).expect("starts");
    let snap = e.cluster(A, t0() + secs(60)).expect("cluster");
    assert_eq!((snap.core_nodes, snap.core_nodes_added), (5, 2));
    let nodes = e.nodes(A, t0() + secs(60)).expect("cluster");
    let core = nodes.last().expect("a node");
    assert_eq!(core.flag, NODE_FLAG_CORE);
    assert_eq!(core.instance_type.as_deref(), Some("SA2.2XLARGE16"));
    assert_eq!(core.zone.as_deref(), Some("ap-shanghai-2"));
    assert_eq!(
        core.instance_charge_type.as_deref(),
        Some(CHARGE_POSTPAID_BY_HOUR)
    );
    let v = core.to_json();
    assert_eq!(
        (
            v["ZoneId"].clone(),
            v["CpuNum"].clone(),
            v["MemDesc"].clone()
        ),
        (json!(200_002), json!(8), json!("16GB"))
    );
}

#[test]
fn unknown_keys_are_refused_without_executing() {
    let mut e = engine();
    let before = e.nodes(A, t0());
    let cases = [
        (json!({"Foo": 1}), "Foo"),
        (json!({"TaskCount": 1}), "TaskCount"),
        (json!({"PayMode": 0}), "PayMode"),
        (
            json!({"ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": 1, "Count": 1}}),
            "ScaleOutNodeConfig.Count",
        ),
        (
            json!({"ResourceSpec": {"InstanceType": "S5.LARGE8", "Cpu": 4}}),
            "ResourceSpec.Cpu",
        ),
        (
            json!({"ResourceSpec": {"Tags": [{"TagKey": "a", "Value": "b"}]}}),
            "ResourceSpec.Tags.0.Value",
        ),
        (
            json!({"Tags": [{"TagKey": "a", "TagValue": "b"}, {"Key": "a"}]}),
            "Tags.1.Key",
        ),
        (
            json!({"ScriptBootstrapActionConfig": [{"CosFileURI": "cos://x", "When": "now"}]}),
            "ScriptBootstrapActionConfig.0.When",
        ),
    ];
    for (extra, named) in cases {
        let body = with(order(A, CHARGE_POSTPAID_BY_HOUR, 1, "tok"), extra);
        let Err(error) = out(&mut e, body.clone(), t0()) else {
            panic!("{body} was accepted");
        };
        assert_eq!(error.code(), "UnknownParameter", "{body}");
        assert!(error.to_string().contains(named), "{body}: {error}");
    }
    let snap = e.cluster(A, t0() + secs(600)).expect("cluster");
    assert_eq!((snap.flows_started, snap.status), (0, STATUS_RUNNING));
    assert_eq!(e.nodes(A, t0()), before);
    // The refused token was not remembered.
    let ok = out(&mut e, order(A, CHARGE_POSTPAID_BY_HOUR, 1, "tok"), t0()).expect("starts");
    assert!(!ok.deduplicated);
}

#[test]
fn validation_codes() {
    let good = || order(A, CHARGE_POSTPAID_BY_HOUR, 1, "tok");
    let cases = [
        (
            json!({"InstanceChargeType": "POSTPAID_BY_HOUR", "ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": 1}}),
            "MissingParameter",
            "InstanceId",
        ),
        (
            with(good(), json!({"InstanceChargeType": null})),
            "MissingParameter",
            "InstanceChargeType",
        ),
        (
            with(good(), json!({"ScaleOutNodeConfig": null})),
            "MissingParameter",
            "ScaleOutNodeConfig",
        ),
        (
            with(good(), json!({"ScaleOutNodeConfig": {"NodeCount": 1}})),
            "MissingParameter",
            "ScaleOutNodeConfig.NodeFlag",
        ),
        (
            with(good(), json!({"ScaleOutNodeConfig": {"NodeFlag": "TASK"}})),
            "MissingParameter",
            "ScaleOutNodeConfig.NodeCount",
        ),
        (
            with(
                good(),
                json!({"ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": "2"}}),
            ),
            "InvalidParameter",
            "ScaleOutNodeConfig.NodeCount",
        ),
        (
            with(
                good(),
                json!({"ScaleOutNodeConfig": {"NodeFlag": "TASK", "NodeCount": 1.5}}),
            ),
            "InvalidParameter",
            "NodeCount",
        ),
        (
            with(good(), json!({"InstanceId": 7})),
            "InvalidParameter",
            "InstanceId",
        ),
        (
            with(good(), json!({"EnableStartServiceFlag": "true"})),
            "InvalidParameter",
            "EnableStartServiceFlag",
        ),
        (
            with(good(), json!({"Tags": {"TagKey": "a"}})),
            "InvalidParameter",
            "Tags",
        ),
        (
            with(good(), json!({"Tags": [{"TagValue": "b"}]})),
            "InvalidParameter",
            "TagKey",
        ),
        (
            with(good(), json!({"ResourceSpec": "S5.LARGE8"})),
            "InvalidParameter",
            "ResourceSpec",
        ),
        (
            with(good(), json!({"SoftDeployInfo": ["HDFS"]})),
            "InvalidParameter",
            "SoftDeployInfo.0",
        ),
        (
            with(good(), json!({"InstanceChargeType": "SPOT"})),
            "InvalidParameter.InvalidPaymode",
            "SPOT",
        ),
        (
            with(
                good(),
                json!({"ScaleOutNodeConfig": {"NodeFlag": "task", "NodeCount": 1}}),
            ),
            "InvalidParameter.InvalidNodeType",
            "task",
        ),
        (
            with(
                good(),
                json!({"ScaleOutNodeConfig": {"NodeFlag": "MASTER", "NodeCount": 1}}),
            ),
            "UnsupportedOperation",
            "MASTER",
        ),
        (
            with(
                order(A, CHARGE_SPOTPAID, 1, "tok"),
                json!({"ScaleOutNodeConfig": {"NodeFlag": "CORE", "NodeCount": 1}}),
            ),
            "InvalidParameter.PayModeResourceNotMatch",
            "CORE",
        ),
        (
            order(A, CHARGE_POSTPAID_BY_HOUR, 0, "tok"),
            "InvalidParameter.InvalidCount",
            "greater than 0",
        ),
        (
            order(A, CHARGE_SPOTPAID, -3, "tok"),
            "InvalidParameter.InvalidCount",
            "greater than 0",
        ),
        (
            order(A, CHARGE_POSTPAID_BY_HOUR, 21, "tok"),
            "InvalidParameter.InvalidTaskCount",
            "21",
        ),
        (
            with(
                good(),
                json!({"ScaleOutNodeConfig": {"NodeFlag": "CORE", "NodeCount": 21}}),
            ),
            "InvalidParameter.InvalidCoreCount",
            "21",
        ),
        (
            with(good(), json!({"InstanceChargeType": "PREPAID"})),
            "MissingParameter",
            "InstanceChargePrepaid",
        ),
        (
            with(good(), json!({"ClientToken": ""})),
            "InvalidParameter.InvalidClientToken",
            "ClientToken",
        ),
        (
            with(good(), json!({"ClientToken": "x".repeat(65)})),
            "InvalidParameter.InvalidClientToken",
            "ClientToken",
        ),
        (
            with(good(), json!({"DisasterRecoverGroupIds": ["a", "b"]})),
            "InvalidParameter",
            "DisasterRecoverGroupIds",
        ),
        (
            with(good(), json!({"ResourceSpec": {"InstanceType": " "}})),
            "InvalidParameter.InvalidInstanceType",
            "InstanceType",
        ),
        (
            with(good(), json!({"Zone": ""})),
            "InvalidParameter.InvalidZone",
            "Zone",
        ),
        (
            with(good(), json!({"InstanceId": "emr-nope0000"})),
            "ResourceNotFound.ClusterNotFound",
            "emr-nope0000",
        ),
    ];
    let mut e = engine();
    for (body, want, named) in cases {
        let Err(error) = out(&mut e, body.clone(), t0()) else {
            panic!("{body} was accepted");
        };
        assert_eq!(error.code(), want, "{body}");
        assert!(error.to_string().contains(named), "{body}: {error}");
    }
    assert_eq!(e.cluster(A, t0()).map(|c| c.flows_started), Some(0));
    // Null counts as absent; every model field may be sent.
    let full = with(
        order(A, CHARGE_POSTPAID_BY_HOUR, 20, "full"),
        json!({
            "Zone": null,
            "InstanceChargePrepaid": null,
            "ScriptBootstrapActionConfig": [{"CosFileURI": "cos://b/x.sh", "ExecutionMoment": "resourceAfter", "Args": ["-v"], "CosFileName": "x.sh", "Remark": "r"}],
            "SoftDeployInfo": [1, 2],
            "ServiceNodeInfo": [7],
            "DisasterRecoverGroupIds": ["ps-1"],
            "Tags": [],
            "HardwareSourceType": "host",
            "PodSpecInfo": null,
            "ClickHouseClusterName": "g",
            "ClickHouseClusterType": "old",
            "YarnNodeLabel": "l",
            "EnableStartServiceFlag": false,
            "ResourceSpec": {"InstanceType": "S5.LARGE8", "SystemDisk": [{"DiskType": "CLOUD_SSD"}], "Tags": [{"TagKey": "a", "TagValue": "b"}], "DataDisk": [], "LocalDataDisk": null},
            "SubnetId": "subnet-1",
            "ScaleOutServiceConfGroupsInfo": [{"ServiceComponentName": "HDFS-2.8.5", "ConfGroupName": "g"}],
        }),
    );
    assert_eq!(code(out(&mut e, full, t0())), "ok");
}

#[test]
fn the_public_check_needs_no_cluster() {
    let good = order("emr-nowhere0", CHARGE_SPOTPAID, 2, "tok");
    assert_eq!(check_scale_out_cluster_body(&good), Ok(()));
    let unknown = check_scale_out_cluster_body(&with(good.clone(), json!({"Spot": true})))
        .expect_err("refused");
    assert_eq!(unknown.code, "UnknownParameter");
    assert!(unknown.message.contains("Spot"), "{unknown}");
    assert!(unknown.to_string().starts_with("UnknownParameter: "));
    let nested = check_scale_out_cluster_body(&with(
        good.clone(),
        json!({"ResourceSpec": {"InstanceType": "S5.LARGE8", "Zone": "x"}}),
    ))
    .expect_err("refused");
    assert_eq!(
        (
            nested.code.as_str(),
            nested.message.contains("ResourceSpec.Zone")
        ),
        ("UnknownParameter", true)
    );
    let core_spot = check_scale_out_cluster_body(&with(
        good,
        json!({"ScaleOutNodeConfig": {"NodeFlag": "CORE", "NodeCount": 1}}),
    ))
    .expect_err("refused");
    assert_eq!(core_spot.code, "InvalidParameter.PayModeResourceNotMatch");
    let not_object = check_scale_out_cluster_body(&json!([1])).expect_err("refused");
    assert_eq!(not_object.code, "InvalidParameter");
}

#[test]
fn sold_out_offerings_are_refused_without_executing_while_others_succeed() {
    let mut e = engine();
    let spec = |t: &str| json!({"ResourceSpec": {"InstanceType": t}});
    e.set_stock(rule(DEFAULT_INSTANCE_TYPE, None, None, Stock::SoldOut));
    let refused = out(&mut e, order(A, CHARGE_SPOTPAID, 2, "a"), t0());
    let Err(error) = refused else {
        panic!("a sold-out offering was bought");
    };
    assert_eq!(error.code(), "ResourcesSoldOut.CvmSoldOut");
    assert!(error.to_string().contains(DEFAULT_INSTANCE_TYPE), "{error}");
    assert_eq!(e.cluster(A, t0()).map(|c| c.flows_started), Some(0));
    // Another spec succeeds, on the other cluster too.
    let other = with(order(B, CHARGE_SPOTPAID, 2, "b"), spec("S5.4XLARGE64"));
    assert_eq!(code(out(&mut e, other, t0())), "ok");

    // Sold out in one zone only.
    let mut e = engine();
    e.set_stock(rule(
        "S5.LARGE8",
        Some("ap-guangzhou-3"),
        None,
        Stock::SoldOut,
    ));
    let here = with(order(A, CHARGE_POSTPAID_BY_HOUR, 1, "c"), spec("S5.LARGE8"));
    assert_eq!(
        code(out(&mut e, here.clone(), t0())),
        "ResourcesSoldOut.CvmSoldOut"
    );
    let there = with(here, json!({"Zone": "ap-guangzhou-6"}));
    assert_eq!(code(out(&mut e, there, t0())), "ok");

    // Sold out for spot only; insufficient is its own answer.
    let mut e = engine();
    e.set_stock(rule(
        DEFAULT_INSTANCE_TYPE,
        None,
        Some(CHARGE_SPOTPAID),
        Stock::SoldOut,
    ));
    e.set_stock(rule(
        "S5.LARGE8",
        None,
        Some(CHARGE_POSTPAID_BY_HOUR),
        Stock::Insufficient,
    ));
    assert_eq!(
        code(out(&mut e, order(A, CHARGE_SPOTPAID, 1, "d"), t0())),
        "ResourcesSoldOut.CvmSoldOut"
    );
    let short = with(order(A, CHARGE_POSTPAID_BY_HOUR, 1, "e"), spec("S5.LARGE8"));
    assert_eq!(
        code(out(&mut e, short, t0())),
        "ResourceInsufficient.InstanceInsufficient"
    );
    assert_eq!(e.cluster(A, t0()).map(|c| c.flows_started), Some(0));
    // The refused token is not remembered; the on-demand offering is there.
    let ok = out(&mut e, order(A, CHARGE_POSTPAID_BY_HOUR, 1, "d"), t0()).expect("starts");
    assert!(!ok.deduplicated);
}

#[test]
fn the_most_specific_stock_rule_decides() {
    let mut e = engine();
    let zone = |z: &str| json!({"Zone": z});
    e.set_stock(rule(DEFAULT_INSTANCE_TYPE, None, None, Stock::SoldOut));
    e.set_stock(rule(
        DEFAULT_INSTANCE_TYPE,
        Some("ap-guangzhou-7"),
        None,
        Stock::Available,
    ));
    let in_seven = with(order(A, CHARGE_SPOTPAID, 1, "a"), zone("ap-guangzhou-7"));
    assert_eq!(code(out(&mut e, in_seven, t0())), "ok");
    let in_three = with(order(B, CHARGE_SPOTPAID, 1, "b"), zone("ap-guangzhou-3"));
    assert_eq!(
        code(out(&mut e, in_three.clone(), t0())),
        "ResourcesSoldOut.CvmSoldOut"
    );
    // Setting the general rule again replaces it.
    e.set_stock(rule(DEFAULT_INSTANCE_TYPE, None, None, Stock::Available));
    assert_eq!(code(out(&mut e, in_three, t0())), "ok");
}

#[test]
fn a_replayed_token_answers_the_same_flow_and_starts_nothing() {
    // Even with the offering sold out since: the token goes first; past
    // five wall minutes the request meets the stock.
    let sell_out = |e: &mut Engine| {
        e.set_stock(rule(DEFAULT_INSTANCE_TYPE, None, None, Stock::SoldOut));
    };
    check_token_window(
        Action::ScaleOutCluster,
        &order(A, CHARGE_SPOTPAID, 3, "tok"),
        sell_out,
        "ResourcesSoldOut.CvmSoldOut",
    );
    check_token_window(
        Action::ScaleOutCluster,
        &order(A, CHARGE_POSTPAID_BY_HOUR, 3, "tok"),
        |_| {},
        "ok",
    );
}

#[test]
fn both_scale_outs_share_one_token_map() {
    let mut e = engine();
    let first = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 2, "shared"),
        t0(),
        t0(),
    )
    .expect("starts");
    let replay = out(&mut e, order(A, CHARGE_SPOTPAID, 3, "shared"), t0()).expect("replays");
    assert!(replay.deduplicated);
    assert_eq!(replay.body, first.body);
    assert_eq!(e.cluster(A, t0()).map(|c| c.flows_started), Some(1));
}

#[test]
fn a_running_flow_answers_instance_in_process() {
    let mut e = engine();
    out(&mut e, order(A, CHARGE_SPOTPAID, 1, "a"), t0()).expect("starts");
    let busy = out(&mut e, order(A, CHARGE_SPOTPAID, 1, "b"), t0() + secs(10));
    let Err(error) = busy else {
        panic!("a second flow started");
    };
    assert_eq!(error.code(), "ResourceInUse.InstanceInProcess");
    assert!(error.to_string().contains("100001"), "{error}");
    // A ScaleOutInstance meets the same flow.
    let other = run(
        &mut e,
        Action::ScaleOutInstance,
        scale(A, 1, "c"),
        t0() + secs(10),
        t0(),
    );
    assert_eq!(code(other), "ResourceInUse.InstanceInProcess");
    // So does a ScaleOutCluster during a scale-in.
    let ids = task_ids(&mut e, A, t0() + secs(60));
    let terminate = json!({"InstanceId": A, "CvmInstanceIds": [ids[0]], "NodeFlag": "TASK", "GraceDownFlag": false});
    run(
        &mut e,
        Action::TerminateClusterNodes,
        terminate,
        t0() + secs(60),
        t0(),
    )
    .expect("starts");
    let during = out(&mut e, order(A, CHARGE_SPOTPAID, 1, "d"), t0() + secs(60));
    assert_eq!(code(during), "ResourceInUse.InstanceInProcess");
    // With the flow checked first, even a replay meets it.
    let mut e2 = engine();
    e2.flow_before_token = true;
    out(&mut e2, order(A, CHARGE_SPOTPAID, 1, "a"), t0()).expect("starts");
    let replay = out(&mut e2, order(A, CHARGE_SPOTPAID, 1, "a"), t0() + secs(1));
    assert_eq!(code(replay), "ResourceInUse.InstanceInProcess");
}

#[test]
fn flow_faults_change_a_scale_out_cluster_flow() {
    let mut e = engine();
    let fail = FlowOverrides {
        duration: Some(Duration::from_secs(300)),
        fail: true,
    };
    run_with(
        &mut e,
        Action::ScaleOutCluster,
        order(A, CHARGE_SPOTPAID, 4, "x"),
        t0(),
        t0(),
        fail,
    )
    .expect("starts");
    assert_eq!(
        e.cluster(A, t0() + secs(299)).map(|c| c.status),
        Some(STATUS_SCALING_OUT)
    );
    let failed = e.cluster(A, t0() + secs(300)).expect("cluster");
    assert_eq!(
        (failed.status, failed.task_nodes, failed.flows_failed),
        (STATUS_SCALE_OUT_FAILED, 2, 1)
    );
}

#[test]
fn reclaiming_spot_removes_only_spot_task_nodes() {
    let cluster = SimCluster::new(A)
        .with_task_nodes(2)
        .with_node(SimNode::core().spot())
        .with_node(SimNode::task().with_order_no("ins-spotold1").spot());
    let mut e = Engine::new(&[cluster], Duration::from_secs(60), t0());
    out(&mut e, order(A, CHARGE_SPOTPAID, 3, "spot"), t0()).expect("starts");
    out(
        &mut e,
        order(A, CHARGE_POSTPAID_BY_HOUR, 2, "demand"),
        t0() + secs(60),
    )
    .expect("starts");
    let later = t0() + secs(120);
    let before = e.cluster(A, later).expect("cluster");
    assert_eq!((before.task_nodes, before.core_nodes), (8, 4));
    let spot_before: Vec<String> = e
        .nodes(A, later)
        .expect("cluster")
        .into_iter()
        .filter(|n| n.flag == NODE_FLAG_TASK && n.is_spot())
        .map(|n| n.order_no)
        .collect();
    assert_eq!(spot_before.len(), 4);
    // Newest first.
    assert_eq!(e.reclaim_spot(A, 1, later), 1);
    let left = e.nodes(A, later).expect("cluster");
    assert!(!left.iter().any(|n| n.order_no == spot_before[3]));
    // At most what there is; on-demand, generated and core nodes stay.
    assert_eq!(e.reclaim_spot(A, 10, later), 3);
    let after = e.cluster(A, later).expect("cluster");
    assert_eq!(
        (
            after.task_nodes,
            after.core_nodes,
            after.status,
            after.current_flow,
            after.nodes_removed
        ),
        (4, 4, STATUS_RUNNING, None, 0)
    );
    let nodes = e.nodes(A, later).expect("cluster");
    assert!(
        nodes
            .iter()
            .filter(|n| n.flag == NODE_FLAG_TASK)
            .all(|n| !n.is_spot())
    );
    assert_eq!(nodes.iter().filter(|n| n.is_spot()).count(), 1, "the core");
    assert_eq!(e.reclaim_spot(A, 3, later), 0);
    assert_eq!(e.reclaim_spot("emr-nope0000", 3, later), 0);
}

#[test]
fn reclaiming_settles_first_and_a_scale_in_of_a_reclaimed_node_removes_the_rest() {
    let mut e = engine();
    out(&mut e, order(A, CHARGE_SPOTPAID, 2, "spot"), t0()).expect("starts");
    // The flow's nodes arrive when it ends, and can then be reclaimed.
    assert_eq!(e.reclaim_spot(A, 5, t0() + secs(30)), 0);
    let at = t0() + secs(60);
    let spot: Vec<String> = e
        .nodes(A, at)
        .expect("cluster")
        .into_iter()
        .filter(SimNode::is_spot)
        .map(|n| n.order_no)
        .collect();
    assert_eq!(spot.len(), 2);
    let terminate = json!({"InstanceId": A, "CvmInstanceIds": spot, "NodeFlag": "TASK", "GraceDownFlag": true, "GraceDownTime": 60});
    run(&mut e, Action::TerminateClusterNodes, terminate, at, at).expect("spot nodes terminate");
    assert_eq!(e.reclaim_spot(A, 1, at + secs(1)), 1);
    let done = e.cluster(A, at + secs(60)).expect("cluster");
    assert_eq!(
        (done.task_nodes, done.nodes_removed, done.status),
        (2, 1, STATUS_RUNNING)
    );
}
