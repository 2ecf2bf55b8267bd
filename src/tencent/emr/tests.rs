use super::*;

fn base() -> ScaleOutInstanceRequest {
    ScaleOutInstanceRequest {
        instance_id: "emr-abc12345".into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(2),
        ..Default::default()
    }
}

#[test]
fn serialises_in_api_casing_and_leaves_absent_fields_out() {
    let req = ScaleOutInstanceRequest {
        client_token: Some("tok".into()),
        tags: Some(vec![Tag {
            key: "owner".into(),
            value: "autoscaler".into(),
        }]),
        yarn_node_label: Some("burst".into()),
        zone_id: Some(100003),
        start_service_after_scale_out: Some("true".into()),
        ..base()
    };
    let json = serde_json::to_value(&req).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "InstanceId": "emr-abc12345", "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600,
            "ClientToken": "tok", "TaskCount": 2,
            "Tags": [{"TagKey": "owner", "TagValue": "autoscaler"}],
            "YarnNodeLabel": "burst", "ZoneId": 100003, "StartServiceAfterScaleOut": "true"
        })
    );
}

#[test]
fn preflight_refuses_what_the_api_rejects() {
    let cases: Vec<(&str, ScaleOutInstanceRequest, &str)> = vec![
        (
            "resource type",
            ScaleOutInstanceRequest {
                hardware_resource_type: Some("CVM".into()),
                ..base()
            },
            "InvalidParameterValue",
        ),
        (
            "zero",
            ScaleOutInstanceRequest {
                task_count: Some(0),
                ..base()
            },
            "InvalidParameter.InvalidCount",
        ),
        (
            "none",
            ScaleOutInstanceRequest {
                task_count: None,
                ..base()
            },
            "InvalidParameter.InvalidCount",
        ),
        (
            "21 task",
            ScaleOutInstanceRequest {
                task_count: Some(21),
                ..base()
            },
            "InvalidParameter.InvalidTaskCount",
        ),
        (
            "21 core",
            ScaleOutInstanceRequest {
                task_count: None,
                core_count: Some(21),
                ..base()
            },
            "InvalidParameter.InvalidCoreCount",
        ),
        (
            "both",
            ScaleOutInstanceRequest {
                core_count: Some(1),
                ..base()
            },
            "InvalidParameter.InvalidCountNum",
        ),
        (
            "paymode0 m",
            ScaleOutInstanceRequest {
                time_unit: "m".into(),
                ..base()
            },
            "InvalidParameter.InvalidTimeUnit",
        ),
        (
            "paymode0 span",
            ScaleOutInstanceRequest {
                time_span: 60,
                ..base()
            },
            "InvalidParameter.InvalidTimeSpan",
        ),
        (
            "paymode1 s",
            ScaleOutInstanceRequest {
                pay_mode: 1,
                ..base()
            },
            "InvalidParameter.InvalidTimeUnit",
        ),
        (
            "paymode 7",
            ScaleOutInstanceRequest {
                pay_mode: 7,
                ..base()
            },
            "InvalidParameter.InvalidPaymode",
        ),
        (
            "soft+unnecessary",
            ScaleOutInstanceRequest {
                soft_deploy_info: Some(vec![1]),
                service_node_info: Some(vec![7]),
                un_necessary_node_list: Some(vec![3]),
                ..base()
            },
            "InvalidParameter.InvalidSoftDeployInfo",
        ),
        (
            "service+unnecessary",
            ScaleOutInstanceRequest {
                service_node_info: Some(vec![7]),
                un_necessary_node_list: Some(vec![3]),
                ..base()
            },
            "InvalidParameter.InvalidSoftDeployInfo",
        ),
        (
            "two groups",
            ScaleOutInstanceRequest {
                disaster_recover_group_ids: Some(vec!["ps-1".into(), "ps-2".into()]),
                ..base()
            },
            "InvalidParameter",
        ),
        (
            "bad id",
            ScaleOutInstanceRequest {
                instance_id: "emr-ABC".into(),
                ..base()
            },
            "InvalidParameter.InvalidClusterId",
        ),
        (
            "short id",
            ScaleOutInstanceRequest {
                instance_id: "emr-abc123".into(),
                ..base()
            },
            "InvalidParameter.InvalidClusterId",
        ),
    ];
    for (name, req, code) in cases {
        let err = req.preflight().expect_err(name);
        assert_eq!(err.code, code, "{name}: {err}");
    }
    base().preflight().unwrap();
    ScaleOutInstanceRequest {
        task_count: Some(20),
        ..base()
    }
    .preflight()
    .unwrap();
    ScaleOutInstanceRequest {
        pay_mode: 1,
        time_unit: "m".into(),
        time_span: 1,
        ..base()
    }
    .preflight()
    .unwrap();
    ScaleOutInstanceRequest {
        soft_deploy_info: Some(vec![1]),
        service_node_info: Some(vec![7]),
        disaster_recover_group_ids: Some(vec!["ps-1".into()]),
        ..base()
    }
    .preflight()
    .unwrap();
}

#[test]
fn responses_tolerate_nulls_and_unknown_fields() {
    let r: ScaleOutInstanceResponse = serde_json::from_str(
        r#"{"InstanceId":"emr-cf00laqw","DealNames":null,"ClientToken":null,"FlowId":12,"BillId":"b","TraceId":"t","RequestId":"r","New":1}"#,
    )
    .unwrap();
    assert_eq!(
        (r.flow_id, r.deal_names, r.client_token),
        (Some(12), None, None)
    );
    let d: DescribeInstancesResponse = serde_json::from_str(
        r#"{"TotalCnt":2,"ClusterList":[{"ClusterId":"emr-aaaaaaaa","Status":2,"Config":{"TaskNodeSize":3}},{"ClusterId":"emr-bbbbbbbb","Status":4,"Config":null}],"RequestId":"r"}"#,
    )
    .unwrap();
    let list = d.cluster_list.unwrap();
    assert_eq!(list[0].task_nodes(), Some(3));
    assert_eq!(list[1].task_nodes(), None);
    assert_eq!(FlowState::from_code(3), FlowState::Done);
    assert_eq!(FlowState::from_code(-1), FlowState::Failed);
}

#[test]
fn cos_secret_key_is_not_shown_by_debug() {
    let s = PreExecuteFileSettings {
        cos_secret_key: Some("cos-secret-value".into()),
        ..Default::default()
    };
    assert!(!format!("{s:?}").contains("cos-secret-value"));
}

fn terminate() -> TerminateClusterNodesRequest {
    TerminateClusterNodesRequest::graceful(
        "emr-abc12345",
        vec!["ins-aaaaaaaa".into(), "ins-bbbbbbbb".into()],
        std::time::Duration::from_secs(600),
    )
}

#[test]
fn terminate_preflight_refuses_what_the_api_or_the_product_would_not_accept() {
    assert_eq!(terminate().preflight(), Ok(()));
    let body = serde_json::to_value(terminate()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({
            "InstanceId": "emr-abc12345",
            "CvmInstanceIds": ["ins-aaaaaaaa", "ins-bbbbbbbb"],
            "NodeFlag": "TASK",
            "GraceDownFlag": true,
            "GraceDownTime": 600
        })
    );
    let cases: Vec<(&str, TerminateClusterNodesRequest)> = vec![
        (
            "InvalidParameter.InvalidClusterId",
            TerminateClusterNodesRequest {
                instance_id: "emr-ABC".into(),
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidCvmInstanceIds",
            TerminateClusterNodesRequest {
                cvm_instance_ids: vec![],
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidCvmInstanceIds",
            TerminateClusterNodesRequest {
                cvm_instance_ids: vec![" ".into()],
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidCvmInstanceIds",
            TerminateClusterNodesRequest {
                cvm_instance_ids: vec!["ins-a".into(), "ins-a".into()],
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidNodeFlag",
            TerminateClusterNodesRequest {
                node_flag: "CORE".into(),
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidGraceDownFlag",
            TerminateClusterNodesRequest {
                grace_down_flag: false,
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidGraceDownTime",
            TerminateClusterNodesRequest {
                grace_down_time: 59,
                ..terminate()
            },
        ),
        (
            "InvalidParameter.InvalidGraceDownTime",
            TerminateClusterNodesRequest {
                grace_down_time: 1801,
                ..terminate()
            },
        ),
    ];
    for (code, request) in cases {
        let e = request.preflight().expect_err(code);
        assert_eq!(e.code, code, "{request:?}: {e}");
    }
    for edge in [60, 1800] {
        let r = TerminateClusterNodesRequest {
            grace_down_time: edge,
            ..terminate()
        };
        assert_eq!(r.preflight(), Ok(()), "{edge} s is accepted");
    }
}

#[test]
fn node_lists_tolerate_nulls_and_missing_fields() {
    let r: DescribeClusterNodesResponse = serde_json::from_str(
        r#"{"TotalCnt":2,"NodeList":[{"Flag":3,"AutoFlag":0,"Destroyable":1,"DisableApiTermination":false,"ChargeType":0,"OrderNo":"ins-1","Ip":"10.0.0.1","ApplyTime":"2026-12-01 10:00:00","Tags":null,"HardwareResourceType":"host","Spec":"x"},{"OrderNo":"ins-2"}],"RequestId":"r"}"#,
    )
    .unwrap();
    let list = r.node_list.unwrap();
    assert_eq!(list[0].flag, Some(3));
    assert_eq!(list[0].tags, None);
    assert_eq!(
        list[1],
        NodeHardwareInfo {
            order_no: Some("ins-2".into()),
            ..Default::default()
        }
    );
}

#[test]
fn only_enabled_builtin_strategies_count() {
    let answer: DescribeAutoScaleStrategiesResponse = serde_json::from_str(
        r#"{"LoadAutoScaleStrategies":[{"StrategyId":1,"StrategyName":"cpu","StrategyStatus":1},{"StrategyId":2,"StrategyName":"mem","StrategyStatus":3}],
            "TimeBasedAutoScaleStrategies":[{"StrategyId":7,"StrategyStatus":1},{"StrategyId":8,"StrategyName":"night","StrategyStatus":2},{"StrategyId":9,"StrategyName":"weekend","StrategyStatus":3}],
            "RequestId":"r"}"#,
    )
    .unwrap();
    let mut b = BuiltinScaling::default();
    assert!(!b.is_active());
    b.add(&answer);
    b.add(&answer);
    assert_eq!(
        b.enabled,
        vec!["load:cpu".to_string(), "time:#7".to_string()]
    );
    assert!(b.is_active());
    let none: DescribeAutoScaleStrategiesResponse = serde_json::from_str(
        r#"{"LoadAutoScaleStrategies":null,"TimeBasedAutoScaleStrategies":null,"RequestId":"r"}"#,
    )
    .unwrap();
    let mut b = BuiltinScaling::default();
    b.add(&none);
    assert!(!b.is_active());
}
