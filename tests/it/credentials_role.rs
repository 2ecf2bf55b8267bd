//! CVM role credentials from a loopback metadata service: fetched when no
//! other source has keys, cached while fresh, refreshed before they expire,
//! and never shown.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real, wall-clock time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use emr_autoscaler::http::http_client;
use emr_autoscaler::tencent::credentials::CredentialSource;
use emr_autoscaler::tencent::{CredentialChain, CredentialSources};

#[derive(Clone)]
struct Meta {
    hits: Arc<AtomicUsize>,
    lifetime: i64,
}

async fn role_list() -> &'static str {
    "emr-autoscaler-role\n"
}

async fn role_keys(State(m): State<Meta>) -> String {
    let n = m.hits.fetch_add(1, Ordering::SeqCst);
    serde_json::json!({
        "TmpSecretId": format!("AKIDtmp{n}"),
        "TmpSecretKey": "tmp-secret-MUST-NOT-LEAK",
        "Token": "tmp-token-MUST-NOT-LEAK",
        "ExpiredTime": chrono::Utc::now().timestamp() + m.lifetime,
        "Expiration": "ignored",
        "Code": "Success"
    })
    .to_string()
}

async fn metadata(lifetime: i64) -> (String, Arc<AtomicUsize>) {
    let meta = Meta {
        hits: Arc::default(),
        lifetime,
    };
    let hits = meta.hits.clone();
    let app = axum::Router::new()
        .route(
            "/latest/meta-data/cam/security-credentials/",
            get(role_list),
        )
        .route(
            "/latest/meta-data/cam/security-credentials/emr-autoscaler-role",
            get(role_keys),
        )
        .with_state(meta);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

fn chain(url: String) -> CredentialChain {
    let http = http_client(Duration::from_secs(1), Duration::from_secs(3)).unwrap();
    CredentialChain::new(
        CredentialSources {
            profiles: vec!["/nonexistent/credentials".into()],
            metadata_url: Some(url),
            ..Default::default()
        },
        http,
    )
}

#[tokio::test]
async fn role_keys_are_cached_while_fresh() {
    let (url, hits) = metadata(3600).await;
    let c = chain(url);
    let first = c.get().await.unwrap();
    let second = c.get().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(first.secret_id, second.secret_id);
    assert_eq!(
        first.source,
        CredentialSource::CvmRole("emr-autoscaler-role".into())
    );
    assert_eq!(first.token(), Some("tmp-token-MUST-NOT-LEAK"));
    let shown = format!("{first:?}");
    assert!(!shown.contains("MUST-NOT-LEAK"), "{shown}");
}

#[tokio::test]
async fn role_keys_are_refreshed_before_they_expire() {
    // Keys valid for 2 more minutes are inside the 5-minute refresh margin.
    let (url, hits) = metadata(120).await;
    let c = chain(url);
    let first = c.get().await.unwrap();
    let second = c.get().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_ne!(first.secret_id, second.secret_id);
}

#[tokio::test]
async fn an_unreachable_metadata_service_is_a_clear_error() {
    // Port 9 on loopback: nothing listens.
    let err = chain("http://127.0.0.1:9".into()).get().await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("CVM role at http://127.0.0.1:9"), "{text}");
    assert!(text.contains("TENCENTCLOUD_SECRET_ID"), "{text}");
}
