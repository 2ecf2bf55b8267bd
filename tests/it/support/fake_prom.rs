//! A loopback stand-in for the Prometheus HTTP API (`/api/v1/query`), whose
//! answer for each expression the test sets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// What the fake answers for one expression.
#[derive(Debug, Clone)]
pub enum Answer {
    /// One series with this value.
    Value(f64),
    /// No series.
    Empty,
    /// Two series.
    Multiple,
    /// HTTP 503.
    Down,
    /// Answer after a delay.
    Slow(Duration, f64),
    /// A well-formed answer of this many megabytes (a label full of junk).
    Huge(usize),
}

#[allow(dead_code)]
#[derive(Clone, Default)]
pub struct FakeProm {
    pub addr: Option<SocketAddr>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    /// Answers for range queries that differ from the instant ones.
    range_answers: Arc<Mutex<HashMap<String, Answer>>>,
    pub queries: Arc<Mutex<u64>>,
    /// The Authorization header of the last query.
    pub last_auth: Arc<Mutex<Option<String>>>,
}

async fn query(
    State(f): State<FakeProm>,
    headers: axum::http::HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    *f.queries.lock().unwrap() += 1;
    *f.last_auth.lock().unwrap() = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let q = params.get("query").cloned().unwrap_or_default();
    let answer = f
        .answers
        .lock()
        .unwrap()
        .get(&q)
        .cloned()
        .unwrap_or(Answer::Empty);
    let now = chrono::Utc::now().timestamp() as f64;
    let vector = |values: &[f64]| {
        let result: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"metric": {"i": i.to_string()}, "value": [now, v.to_string()]}))
            .collect();
        axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
            .into_response()
    };
    match answer {
        Answer::Value(v) => vector(&[v]),
        Answer::Empty => vector(&[]),
        Answer::Multiple => vector(&[1.0, 2.0]),
        Answer::Down => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        Answer::Slow(d, v) => {
            tokio::time::sleep(d).await;
            vector(&[v])
        }
        Answer::Huge(mb) => huge(mb, "vector"),
    }
}

fn huge(mb: usize, kind: &str) -> Response {
    // Written as text: serialising megabytes through serde_json in a debug
    // build takes seconds on a loaded machine.
    let junk = "x".repeat(mb * 1024 * 1024);
    let body = format!(
        r#"{{"status":"success","data":{{"resultType":"{kind}","result":[{{"metric":{{"junk":"{junk}"}},"value":[0,"1"]}}]}}}}"#
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn query_range(
    State(f): State<FakeProm>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    *f.queries.lock().unwrap() += 1;
    let q = params.get("query").cloned().unwrap_or_default();
    let num = |k: &str| {
        params
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (start, end, step) = (num("start"), num("end"), num("step").max(1.0));
    let ranged = f.range_answers.lock().unwrap().get(&q).cloned();
    let answer = ranged.unwrap_or_else(|| {
        f.answers
            .lock()
            .unwrap()
            .get(&q)
            .cloned()
            .unwrap_or(Answer::Empty)
    });
    let series = |v: f64| {
        let mut values = Vec::new();
        let mut t = start;
        while t <= end {
            values.push(serde_json::json!([t, v.to_string()]));
            t += step;
        }
        serde_json::json!([{"metric": {}, "values": values}])
    };
    let result = match answer {
        Answer::Value(v) => series(v),
        Answer::Slow(d, v) => {
            tokio::time::sleep(d).await;
            series(v)
        }
        Answer::Empty => serde_json::json!([]),
        Answer::Multiple => {
            let mut a = series(1.0);
            a.as_array_mut().unwrap().push(series(2.0)[0].clone());
            a
        }
        Answer::Down => {
            return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
        }
        Answer::Huge(mb) => return huge(mb, "matrix"),
    };
    axum::Json(serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": result}})).into_response()
}

impl FakeProm {
    pub async fn start() -> Self {
        let mut f = FakeProm::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        f.addr = Some(listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/api/v1/query", get(query).post(query))
            .route("/api/v1/query_range", get(query_range).post(query_range))
            .with_state(f.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        f
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr.unwrap())
    }

    /// What range queries of `query` get, instead of its instant answer.
    #[allow(dead_code)]
    pub fn set_range(&self, query: &str, answer: Answer) {
        self.range_answers
            .lock()
            .unwrap()
            .insert(query.to_string(), answer);
    }

    pub fn set(&self, query: &str, answer: Answer) {
        self.answers
            .lock()
            .unwrap()
            .insert(query.to_string(), answer);
    }
}
