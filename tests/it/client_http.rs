//! The EMR client against a scriptable loopback server: signing on the wire,
//! the envelope, every error class's behaviour, retries under one token, the
//! limiter, credentials from the metadata service.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real, wall-clock time.

use std::time::Duration;

use crate::support::daemon_proc::eventually;
use crate::support::*;
use emr_autoscaler::tencent::emr::{ScaleOutInstanceRequest, Tag};
use emr_autoscaler::tencent::{ApiError, ClientToken, ErrorClass};
use serde_json::json;

fn order(n: u32) -> ScaleOutInstanceRequest {
    ScaleOutInstanceRequest {
        instance_id: "emr-abc12345".into(),
        pay_mode: 0,
        time_unit: "s".into(),
        time_span: 3600,
        task_count: Some(n),
        tags: Some(vec![Tag {
            key: "owner".into(),
            value: "autoscaler".into(),
        }]),
        ..Default::default()
    }
}

fn ok_flow(flow: i64) -> Reply {
    Reply::Ok(
        json!({"InstanceId": "emr-abc12345", "FlowId": flow, "DealNames": null, "ClientToken": null, "BillId": "b1"}),
    )
}

#[tokio::test]
async fn happy_path_sends_signed_headers_and_a_typed_body() {
    let fake = FakeEmr::start().await;
    fake.script([ok_flow(42)]);
    let client = client_with(
        &fake.endpoint(),
        fast_retry(3),
        Some(TOKEN),
        Duration::from_secs(5),
    );
    let token = ClientToken::generate();
    let resp = client.scale_out(&order(3), &token).await.unwrap();
    assert_eq!(resp.flow_id, Some(42));
    assert_eq!(resp.deal_names, None);

    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert!(
        r.signature_ok,
        "signature must verify against the Host header sent"
    );
    assert_eq!(
        r.header("host"),
        Some(fake.addr.to_string().as_str()),
        "Host carries the port"
    );
    assert_eq!(r.header("x-tc-action"), Some("ScaleOutInstance"));
    assert_eq!(r.header("x-tc-version"), Some("2019-01-03"));
    assert_eq!(r.header("x-tc-region"), Some("ap-guangzhou"));
    assert_eq!(r.header("x-tc-token"), Some(TOKEN));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let ts: i64 = r.header("x-tc-timestamp").unwrap().parse().unwrap();
    assert!((ts - chrono::Utc::now().timestamp()).abs() < 10);
    assert_eq!(
        r.json(),
        json!({"InstanceId": "emr-abc12345", "PayMode": 0, "TimeUnit": "s", "TimeSpan": 3600,
               "ClientToken": token.value, "TaskCount": 3,
               "Tags": [{"TagKey": "owner", "TagValue": "autoscaler"}]})
    );
}

#[tokio::test]
async fn permanent_tokens_send_no_token_header() {
    let fake = FakeEmr::start().await;
    fake.script([ok_flow(1)]);
    client(&fake, fast_retry(1))
        .scale_out(&order(1), &ClientToken::generate())
        .await
        .unwrap();
    assert_eq!(fake.received()[0].header("x-tc-token"), None);
}

/// Each class, its expected number of attempts (out of 4 allowed).
#[tokio::test]
async fn each_error_class_gets_its_behaviour() {
    let cases: Vec<(&str, Reply, ErrorClass, usize)> = vec![
        (
            "throttled",
            Reply::Error("RequestLimitExceeded"),
            ErrorClass::Throttled,
            4,
        ),
        (
            "throttled uin",
            Reply::Error("RequestLimitExceeded.UinLimitExceeded"),
            ErrorClass::Throttled,
            4,
        ),
        (
            "busy",
            Reply::Error("ResourceInUse.InstanceInProcess"),
            ErrorClass::Busy,
            1,
        ),
        (
            "duplicate",
            Reply::Error("FailedOperation.DuplicateOrderNotAllowed"),
            ErrorClass::Busy,
            1,
        ),
        (
            "sold out",
            Reply::Error("ResourcesSoldOut.CvmSoldOut"),
            ErrorClass::SoldOut,
            1,
        ),
        (
            "insufficient",
            Reply::Error("ResourceInsufficient.InstanceInsufficient"),
            ErrorClass::SoldOut,
            1,
        ),
        (
            "invalid",
            Reply::Error("InvalidParameter.InvalidTaskCount"),
            ErrorClass::Invalid,
            1,
        ),
        (
            "core count typo",
            Reply::Error("InvalidParameter.InvaildCoreCount"),
            ErrorClass::Invalid,
            1,
        ),
        (
            "auth",
            Reply::Error("AuthFailure.SignatureFailure"),
            ErrorClass::Auth,
            1,
        ),
        (
            "unauthorized",
            Reply::Error("UnauthorizedOperation.CheckCamAuth"),
            ErrorClass::Auth,
            1,
        ),
        (
            "not found",
            Reply::Error("ResourceNotFound.ClusterNotFound"),
            ErrorClass::NotFound,
            1,
        ),
        (
            "internal",
            Reply::Error("InternalError.CvmError"),
            ErrorClass::Internal,
            4,
        ),
        (
            "failed op",
            Reply::Error("FailedOperation"),
            ErrorClass::Internal,
            4,
        ),
        (
            "http 502",
            Reply::Raw(502, "<html>bad gateway</html>".into()),
            ErrorClass::Internal,
            4,
        ),
        (
            "garbage",
            Reply::Raw(200, "<html>not json".into()),
            ErrorClass::Transport,
            4,
        ),
        (
            "empty envelope",
            Reply::Raw(200, r#"{"Response":{}}"#.into()),
            ErrorClass::Transport,
            4,
        ),
        ("dropped", Reply::Drop, ErrorClass::Transport, 4),
    ];
    for (name, reply, class, attempts) in cases {
        let fake = FakeEmr::start().await;
        fake.set_default(reply);
        let token = ClientToken::generate();
        let err = client(&fake, fast_retry(4))
            .scale_out(&order(2), &token)
            .await
            .unwrap_err();
        assert_eq!(err.class(), class, "{name}: {err}");
        let got = fake.received();
        assert_eq!(got.len(), attempts, "{name}: attempts");
        let tokens: Vec<_> = got
            .iter()
            .map(|r| r.json()["ClientToken"].clone())
            .collect();
        assert!(
            tokens.iter().all(|t| t == &json!(token.value)),
            "{name}: every attempt keeps the token"
        );
        assert!(
            got.iter().all(|r| r.body == got[0].body),
            "{name}: same body bytes"
        );
        assert!(
            got.iter().all(|r| r.signature_ok),
            "{name}: every attempt is signed"
        );
        if let ApiError::Api { request_id, .. } = &err {
            assert_eq!(request_id, "req-err");
            assert!(err.to_string().contains("req-err"));
        }
    }
}

#[tokio::test]
async fn a_lost_answer_is_retried_under_the_same_token_until_it_lands() {
    let fake = FakeEmr::start().await;
    fake.script([Reply::Drop, Reply::Error("InternalError"), ok_flow(7)]);
    let token = ClientToken::generate();
    let resp = client(&fake, fast_retry(5))
        .scale_out(&order(4), &token)
        .await
        .unwrap();
    assert_eq!(resp.flow_id, Some(7));
    let got = fake.received();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter()
            .all(|r| r.json()["ClientToken"] == json!(token.value))
    );
}

#[tokio::test]
async fn retries_are_resigned_with_a_fresh_timestamp() {
    let fake = FakeEmr::start().await;
    fake.script([Reply::Error("InternalError")]);
    fake.set_default(ok_flow(9));
    let retry = emr_autoscaler::tencent::RetryPolicy {
        max_attempts: 2,
        base_delay: Duration::from_millis(2200),
        max_delay: Duration::from_millis(2200),
    };
    client(&fake, retry)
        .scale_out(&order(1), &ClientToken::generate())
        .await
        .unwrap();
    let got = fake.received();
    let ts: Vec<i64> = got
        .iter()
        .map(|r| r.header("x-tc-timestamp").unwrap().parse().unwrap())
        .collect();
    assert!(ts[1] > ts[0], "timestamps {ts:?}");
    assert_ne!(
        got[0].header("authorization"),
        got[1].header("authorization")
    );
    assert!(got.iter().all(|r| r.signature_ok));
    assert_eq!(got[0].body, got[1].body);
}

#[tokio::test]
async fn timeouts_are_their_own_class_and_retried_under_the_token() {
    let fake = FakeEmr::start().await;
    fake.set_default(Reply::Delay(
        Duration::from_millis(1500),
        Box::new(ok_flow(1)),
    ));
    let c = client_with(
        &fake.endpoint(),
        fast_retry(2),
        None,
        Duration::from_millis(300),
    );
    let err = c
        .scale_out(&order(1), &ClientToken::generate())
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout, "{err}");
    // The fake shares this runtime: after a stall the client's timeout may
    // be polled before the fake has read the second attempt.
    eventually(
        Duration::from_secs(5),
        "two attempts at the fake",
        || async { fake.received().len() >= 2 },
    )
    .await;
    assert_eq!(fake.received().len(), 2);
}

#[tokio::test]
async fn an_old_token_is_never_sent() {
    let fake = FakeEmr::start().await;
    let token = ClientToken {
        value: "old".into(),
        created_at: chrono::Utc::now() - chrono::Duration::seconds(280),
    };
    let err = client(&fake, fast_retry(3))
        .scale_out(&order(1), &token)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::TokenExpired { .. }), "{err}");
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn a_token_that_ages_during_retries_stops_them() {
    let fake = FakeEmr::start().await;
    fake.set_default(Reply::Drop);
    // 268.5 s old: young for the first attempt, old after the first backoff.
    let token = ClientToken {
        value: "aging".into(),
        created_at: chrono::Utc::now() - chrono::Duration::milliseconds(268_500),
    };
    let retry = emr_autoscaler::tencent::RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(3000),
        max_delay: Duration::from_millis(3000),
    };
    let err = client(&fake, retry)
        .scale_out(&order(1), &token)
        .await
        .unwrap_err();
    match &err {
        ApiError::TokenExpired {
            last: Some(last), ..
        } => assert_eq!(last.class(), ErrorClass::Transport),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.received().len(), 1);
}

#[tokio::test]
async fn preflight_refusals_send_nothing() {
    let fake = FakeEmr::start().await;
    let c = client(&fake, fast_retry(3));
    for (req, code) in [
        (order(0), "InvalidParameter.InvalidCount"),
        (order(21), "InvalidParameter.InvalidTaskCount"),
        (
            ScaleOutInstanceRequest {
                core_count: Some(1),
                ..order(1)
            },
            "InvalidParameter.InvalidCountNum",
        ),
    ] {
        let err = c
            .scale_out(&req, &ClientToken::generate())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(code));
    }
    assert!(fake.received().is_empty());
}

#[tokio::test]
async fn reads_are_batched_and_retried_without_a_token() {
    let fake = FakeEmr::start().await;
    fake.script([Reply::Drop]);
    fake.set_default(Reply::Ok(json!({"TotalCnt": 1, "ClusterList": [
        {"ClusterId": "emr-aaaaaaaa", "Status": 2, "Config": {"TaskNodeSize": 5}}]})));
    let ids: Vec<String> = (0..150).map(|i| format!("emr-{i:08}")).collect();
    let list = client(&fake, fast_retry(3))
        .describe_instances(&ids)
        .await
        .unwrap();
    assert_eq!(list.len(), 2, "one cluster per answered batch");
    let got = fake.received();
    assert_eq!(
        got.len(),
        3,
        "a dropped batch is retried, then the second batch"
    );
    assert_eq!(got[0].json()["InstanceIds"].as_array().unwrap().len(), 100);
    assert_eq!(got[2].json()["InstanceIds"].as_array().unwrap().len(), 50);
    assert_eq!(got[2].json()["DisplayStrategy"], "clusterList");
    assert_eq!(got[2].json()["ProjectId"], -1);
}

#[tokio::test]
async fn flow_status_is_typed() {
    let fake = FakeEmr::start().await;
    fake.set_default(Reply::Ok(
        json!({"FlowTotalStatus": -1, "FlowTotalProgress": 0.5}),
    ));
    let r = client(&fake, fast_retry(1))
        .describe_flow("emr-abc12345", 77)
        .await
        .unwrap();
    assert_eq!(r.state(), emr_autoscaler::tencent::emr::FlowState::Failed);
    let sent = fake.received()[0].json();
    assert_eq!(
        sent,
        json!({"InstanceId": "emr-abc12345", "FlowParam": {"FKey": "FlowId", "FValue": "77"}})
    );
}

#[tokio::test]
async fn the_limiter_spaces_calls_at_the_server() {
    let fake = FakeEmr::start().await;
    fake.set_default(Reply::Ok(json!({"FlowTotalStatus": 2})));
    let c = client(&fake, fast_retry(1));
    let calls: Vec<_> = (0..30)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { c.describe_flow("emr-abc12345", i).await.unwrap() })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    let mut at: Vec<_> = fake.received().iter().map(|r| r.at).collect();
    at.sort();
    let max_in_window = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| **t < at[i] + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    let span = *at.last().unwrap() - at[0];
    println!("30 calls: at most {max_in_window} in any 1 s window; span {span:?}");
    assert!(max_in_window <= 20, "{max_in_window} calls in one second");
    assert!(span >= Duration::from_millis(29 * 50), "span {span:?}");
}

#[tokio::test]
async fn a_ten_megabyte_answer_is_a_bounded_error() {
    let fake = FakeEmr::start().await;
    let huge = format!(
        "{{\"Response\": {{\"Junk\": \"{}\"",
        "x".repeat(10 * 1024 * 1024)
    );
    fake.set_default(Reply::Raw(200, huge));
    let err = client(&fake, fast_retry(1))
        .describe_flow("emr-abc12345", 1)
        .await
        .unwrap_err();
    match &err {
        ApiError::Malformed { body, .. } => assert!(body.len() <= 512),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().len() < 2048, "the error stays small");
}
