//! What the admin server shows: per-cluster status, readiness reasons and
//! loop progress for `/healthz` and the watchdog.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::clock::SharedClock;

/// The last API error a cluster saw.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ApiErrorStatus {
    /// The error class (`result` label).
    pub class: &'static str,
    /// The API code, if any.
    pub code: Option<String>,
    /// The RequestId, if any.
    pub request_id: Option<String>,
    /// The whole message.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One rule's vote, for `/api/v1/status`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VoteStatus {
    /// Rule name.
    pub rule: String,
    /// Latest value.
    pub value: Option<f64>,
    /// Nodes it asked for.
    pub increment: u32,
    /// Its outcome.
    pub outcome: &'static str,
    /// Its data problem, if any.
    pub data_issue: Option<&'static str>,
}

/// Budget use.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct BudgetStatus {
    /// Nodes ordered in the last hour.
    pub hour_used: u32,
    /// The hourly budget, if set.
    pub hour_limit: Option<u32>,
    /// Nodes ordered in the last day.
    pub day_used: u32,
    /// The daily budget, if set.
    pub day_limit: Option<u32>,
}

/// One cluster, as `/api/v1/status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ClusterStatus {
    /// The cluster.
    pub instance_id: String,
    /// Running task nodes, when known.
    pub current: Option<u32>,
    /// Nodes ordered and not yet running.
    pub in_flight: u32,
    /// Running plus in flight plus the last decision's increment.
    pub desired: Option<u32>,
    /// The last decision, as a sentence.
    pub last_decision: Option<String>,
    /// Its outcome.
    pub outcome: Option<&'static str>,
    /// Its votes.
    pub votes: Vec<VoteStatus>,
    /// When it was made.
    pub last_evaluation: Option<DateTime<Utc>>,
    /// End of the cooldown.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// End of a sold-out or error backoff.
    pub backoff_until: Option<DateTime<Utc>>,
    /// Budget use.
    pub budget: BudgetStatus,
    /// Paused by an operator.
    pub paused: bool,
    /// Breaker open, with its reason.
    pub breaker: Option<String>,
    /// Dry-run for this cluster.
    pub dry_run: bool,
    /// The operation in progress: planned chunks, the next chunk, the flow followed.
    pub operation: Option<serde_json::Value>,
    /// The last API error.
    pub last_api_error: Option<ApiErrorStatus>,
    /// The last decision that ordered nodes: when, how many, why.
    pub last_order: Option<serde_json::Value>,
    /// Why the last cycle lacked data (empty when it had everything).
    pub not_ready: Vec<String>,
}

#[derive(Debug, Default)]
struct Inner {
    clusters: BTreeMap<String, ClusterStatus>,
    progress: BTreeMap<String, (tokio::time::Instant, Duration)>,
}

/// Shared status of every cluster.
#[derive(Debug)]
pub struct StatusBoard {
    clock: SharedClock,
    inner: Mutex<Inner>,
}

impl StatusBoard {
    /// An empty board.
    pub fn new(clock: SharedClock) -> Self {
        Self {
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces a cluster's status.
    pub fn set(&self, status: ClusterStatus) {
        self.with(|i| {
            i.clusters.insert(status.instance_id.clone(), status);
        });
    }

    /// Changes a cluster's status in place.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut ClusterStatus)) {
        self.with(|i| {
            let s = i
                .clusters
                .entry(id.to_string())
                .or_insert_with(|| ClusterStatus {
                    instance_id: id.to_string(),
                    ..ClusterStatus::default()
                });
            f(s);
        });
    }

    /// Records that a cluster's loop made progress; `allowance` is how long it
    /// may take until the next time (2 × interval + query timeout).
    pub fn progressed(&self, id: &str, allowance: Duration) {
        self.with(|i| {
            i.progress
                .insert(id.to_string(), (tokio::time::Instant::now(), allowance));
        });
    }

    /// Registers a worker before its first tick, so a loop that never gets
    /// going is noticed.
    pub fn expect(&self, id: &str, allowance: Duration) {
        self.with(|i| {
            i.progress
                .entry(id.to_string())
                .or_insert((tokio::time::Instant::now(), allowance));
            i.clusters
                .entry(id.to_string())
                .or_insert_with(|| ClusterStatus {
                    instance_id: id.to_string(),
                    ..ClusterStatus::default()
                });
        });
    }

    /// Removes a cluster that is no longer configured.
    pub fn forget(&self, id: &str) {
        self.with(|i| {
            i.clusters.remove(id);
            i.progress.remove(id);
        });
    }

    /// Every cluster's status.
    pub fn snapshot(&self) -> Vec<ClusterStatus> {
        self.with(|i| i.clusters.values().cloned().collect())
    }

    /// Loops that made no progress within their allowance.
    pub fn stalled(&self) -> Vec<String> {
        self.with(|i| {
            i.progress
                .iter()
                .filter(|(_, (at, allowance))| at.elapsed() > *allowance)
                .map(|(id, (at, _))| format!("{id}: no evaluation for {:.0?}", at.elapsed()))
                .collect()
        })
    }

    /// Whether every loop is making progress.
    pub fn healthy(&self) -> bool {
        self.stalled().is_empty()
    }

    /// Reasons the last cycle was incomplete, across clusters.
    pub fn not_ready(&self) -> Vec<String> {
        self.with(|i| {
            let mut out: Vec<String> = i
                .clusters
                .values()
                .flat_map(|c| {
                    c.not_ready
                        .iter()
                        .map(move |r| format!("{}: {r}", c.instance_id))
                })
                .collect();
            for id in i.progress.keys() {
                if i.clusters
                    .get(id)
                    .is_none_or(|c| c.last_evaluation.is_none())
                {
                    out.push(format!("{id}: not evaluated yet"));
                }
            }
            out
        })
    }

    /// The board's clock reading, for responses.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}
