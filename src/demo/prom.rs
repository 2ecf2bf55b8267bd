//! A loopback stand-in for the Prometheus HTTP API (`/api/v1/query` and
//! `/api/v1/query_range`) that answers the demo's
//! rule queries from the closed-loop replay model: demand from a synthetic
//! day (or a series of points), capacity from the simulated cluster's running
//! task nodes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::clock::SharedClock;
use crate::policy::ReplaySignal;
use chrono::{DateTime, Utc};

use crate::replay::{Model, SyntheticDemand};
use crate::sim::SimHandle;

/// Where a cluster's demand comes from.
#[derive(Debug, Clone)]
pub enum Demand {
    /// The demo's synthetic day.
    Day(SyntheticDemand),
    /// Points `(time, MB)` in time order, linear between them and held
    /// before the first and after the last.
    Points(Vec<(DateTime<Utc>, f64)>),
}

impl Demand {
    /// Demand at `t`, MB.
    pub fn at(&self, t: DateTime<Utc>) -> f64 {
        match self {
            Demand::Day(d) => d.at(t),
            Demand::Points(points) => {
                let after = points.partition_point(|(at, _)| *at <= t);
                match (after.checked_sub(1).map(|i| points[i]), points.get(after)) {
                    (Some((t0, v0)), Some(&(t1, v1))) => {
                        let span = (t1 - t0).as_seconds_f64();
                        let x = (t - t0).as_seconds_f64();
                        if span > 0.0 {
                            v0 + (v1 - v0) * x / span
                        } else {
                            v1
                        }
                    }
                    (Some((_, v)), None) | (None, Some(&(_, v))) => v,
                    (None, None) => 0.0,
                }
            }
        }
    }
}

/// One cluster's demand and the signals its rules read.
#[derive(Debug, Clone)]
pub struct Source {
    /// The cluster\'s instance id (`emr-…`).
    pub instance_id: String,
    /// Its demand.
    pub demand: Demand,
    /// Its sizes.
    pub model: Model,
}

#[derive(Clone)]
struct App {
    clock: SharedClock,
    sim: Arc<SimHandle>,
    sources: Arc<Vec<Source>>,
    queries: Arc<HashMap<String, (usize, ReplaySignal)>>,
}

/// Serves `/api/v1/query` on 127.0.0.1 with a free port; returns its address.
/// `queries` maps each rule expression to (index into `sources`, signal);
/// any other expression gets an empty result.
pub async fn serve(
    clock: SharedClock,
    sim: Arc<SimHandle>,
    sources: Vec<Source>,
    queries: HashMap<String, (usize, ReplaySignal)>,
) -> std::io::Result<SocketAddr> {
    let app = App {
        clock,
        sim,
        sources: Arc::new(sources),
        queries: Arc::new(queries),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .with_state(app);
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}

async fn query(State(app): State<App>, Query(params): Query<HashMap<String, String>>) -> Response {
    let q = params.get("query").map(String::as_str).unwrap_or_default();
    let now = app.clock.now();
    let ts = now.timestamp() as f64;
    let inner = q
        .strip_prefix("timestamp(")
        .and_then(|r| r.strip_suffix(')'));
    let value = match (app.queries.get(q), inner.and_then(|i| app.queries.get(i))) {
        (Some(&(i, signal)), _) => app.sources.get(i).map(|s| {
            let running = app.sim.cluster(&s.instance_id).map_or(0, |c| c.task_nodes);
            s.model.signals(s.demand.at(now), running).get(signal)
        }),
        (None, Some(_)) => Some(ts),
        (None, None) => None,
    };
    let result: Vec<serde_json::Value> = value
        .map(|v| json!({"metric": {}, "value": [ts, v.to_string()]}))
        .into_iter()
        .collect();
    axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
        .into_response()
}

/// A range of a rule's signal: demand at each step against the task nodes
/// running now (the stand-in keeps no history of the cluster).
async fn query_range(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let q = params.get("query").map(String::as_str).unwrap_or_default();
    let number = |k: &str| params.get(k).and_then(|v| v.parse::<f64>().ok());
    let (Some(start), Some(end), Some(step)) = (number("start"), number("end"), number("step"))
    else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "errorType": "bad_data", "error": "start, end and step are required"})),
        )
            .into_response();
    };
    let step = step.max(1.0);
    let result: Vec<serde_json::Value> = app
        .queries
        .get(q)
        .and_then(|&(i, signal)| app.sources.get(i).map(|s| (s, signal)))
        .map(|(s, signal)| {
            let running = app.sim.cluster(&s.instance_id).map_or(0, |c| c.task_nodes);
            let count = (((end - start) / step).floor().max(0.0) as usize).min(11_000);
            let values: Vec<serde_json::Value> = (0..=count)
                .map(|k| {
                    let ts = start + k as f64 * step;
                    let at = DateTime::from_timestamp(ts as i64, 0).unwrap_or_default();
                    let v = s.model.signals(s.demand.at(at), running).get(signal);
                    json!([ts, v.to_string()])
                })
                .collect();
            json!({"metric": {}, "values": values})
        })
        .into_iter()
        .collect();
    axum::Json(json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
        .into_response()
}
