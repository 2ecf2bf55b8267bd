//! The Prometheus client against a loopback stand-in: classification of real
//! HTTP answers, credentials read from files at every query, timeouts.

use std::time::Duration;

use crate::support::fake_prom::{Answer, FakeProm};
use emr_autoscaler::policy::{DataIssue, Reading};
use emr_autoscaler::prom::{Auth, Prometheus};

fn client(prom: &FakeProm, auth: Auth, timeout: Duration) -> Prometheus {
    let http =
        emr_autoscaler::http::http_client(Duration::from_secs(1), Duration::from_secs(5)).unwrap();
    Prometheus::new(http, &prom.url(), timeout, auth).unwrap()
}

#[tokio::test]
async fn answers_are_classified() {
    let prom = FakeProm::start().await;
    let c = client(&prom, Auth::None, Duration::from_secs(2));
    for (answer, want) in [
        (Answer::Value(42.0), Reading::Value(42.0)),
        (Answer::Empty, Reading::Missing(DataIssue::Empty)),
        (
            Answer::Multiple,
            Reading::Missing(DataIssue::MultipleSeries),
        ),
        (Answer::Value(f64::NAN), Reading::Missing(DataIssue::NaN)),
        (Answer::Down, Reading::Missing(DataIssue::Error)),
        (
            Answer::Slow(Duration::from_secs(3), 1.0),
            Reading::Missing(DataIssue::Error),
        ),
    ] {
        prom.set("q", answer.clone());
        let got = c.instant("q").await;
        assert_eq!(got.reading, want, "{answer:?}");
        assert_eq!(
            got.error.is_some(),
            matches!(want, Reading::Missing(DataIssue::Error)),
            "{answer:?}"
        );
    }
}

/// An answer larger than the cap is a failed query, read no further, and
/// its error stays small.
#[tokio::test]
async fn a_twenty_megabyte_answer_is_a_bounded_error() {
    let prom = FakeProm::start().await;
    let c = client(&prom, Auth::None, Duration::from_secs(10));
    prom.set("q", Answer::Huge(20));
    let got = c.instant("q").await;
    assert_eq!(got.reading, Reading::Missing(DataIssue::Error));
    let error = got.error.expect("an error").to_string();
    assert!(
        error.contains("larger than") || error.contains("declares"),
        "{error}"
    );
    assert!(error.len() < 1024, "the error stays small");
    // One megabyte is fine.
    prom.set("q", Answer::Huge(1));
    assert_eq!(c.instant("q").await.reading, Reading::Value(1.0));
}

#[tokio::test]
async fn bearer_and_basic_credentials_come_from_files_at_every_query() {
    let prom = FakeProm::start().await;
    prom.set("q", Answer::Value(1.0));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let c = client(&prom, Auth::Bearer(token.clone()), Duration::from_secs(2));
    let got = c.instant("q").await;
    assert_eq!(got.reading, Reading::Value(1.0), "{:?}", got.error);
    assert_eq!(
        prom.last_auth.lock().unwrap().as_deref(),
        Some("Bearer first-token")
    );
    std::fs::write(&token, "rotated-token").unwrap();
    c.instant("q").await;
    assert_eq!(
        prom.last_auth.lock().unwrap().as_deref(),
        Some("Bearer rotated-token")
    );

    let password = dir.path().join("password");
    std::fs::write(&password, "s3cret").unwrap();
    let basic = client(
        &prom,
        Auth::Basic {
            user: "autoscaler".into(),
            password_file: password,
        },
        Duration::from_secs(2),
    );
    basic.instant("q").await;
    // base64("autoscaler:s3cret")
    assert_eq!(
        prom.last_auth.lock().unwrap().as_deref(),
        Some("Basic YXV0b3NjYWxlcjpzM2NyZXQ=")
    );

    // A missing file is a query error that names the file, never a panic.
    std::fs::remove_file(&token).unwrap();
    let got = c.instant("q").await;
    assert_eq!(got.reading, Reading::Missing(DataIssue::Error));
    assert!(got.error.unwrap().to_string().contains("token"));
}
