//! The capacity poller: one batched `DescribeInstances` for every cluster,
//! every evaluation interval, published to the workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::tencent::ErrorClass;
use crate::tencent::emr::ClusterInfo;

/// The poller's name on the status board, for `/healthz`.
pub const POLLER: &str = "(capacity poller)";

/// The latest answer about every cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// When it was taken (real time), `None` before the first answer.
    pub taken: Option<tokio::time::Instant>,
    /// When it was taken, on the injected clock.
    pub at: Option<DateTime<Utc>>,
    /// Clusters by id. A configured cluster missing here was not found.
    pub clusters: BTreeMap<String, ClusterInfo>,
    /// The last failure, if the last poll failed.
    pub error: Option<String>,
    /// Whether that failure was an authentication problem.
    pub auth_failed: bool,
}

impl Snapshot {
    /// The cluster's info if the snapshot is younger than `max_age` (real time).
    pub fn fresh(&self, id: &str, max_age: std::time::Duration) -> Option<&ClusterInfo> {
        let taken = self.taken?;
        if taken.elapsed() > max_age || self.error.is_some() {
            return None;
        }
        self.clusters.get(id)
    }
}

/// Polls until cancelled.
pub async fn poll(
    shared: Arc<Shared>,
    tx: Arc<watch::Sender<Snapshot>>,
    cancel: CancellationToken,
) {
    let ids: Vec<String> = shared
        .config
        .clusters
        .iter()
        .map(|c| c.instance_id.clone())
        .collect();
    let interval = shared.clock.real(shared.config.daemon.evaluation_interval);
    let allowance = interval * 3 + std::time::Duration::from_secs(10);
    loop {
        shared.board.progressed(POLLER, allowance);
        let result = {
            let _call = shared
                .board
                .in_call(POLLER, shared.config.tencent.call_within());
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = shared.emr.describe_instances(&ids) => r,
            }
        };
        shared.board.progressed(POLLER, allowance);
        let mut snap = tx.borrow().clone();
        match result {
            Ok(list) => {
                snap.clusters = list
                    .into_iter()
                    .map(|c| (c.cluster_id.clone(), c))
                    .collect();
                snap.taken = Some(tokio::time::Instant::now());
                snap.at = Some(shared.clock.now());
                snap.error = None;
                snap.auth_failed = false;
                for id in &ids {
                    if !snap.clusters.contains_key(id) {
                        tracing::warn!(message = "Cluster not found by DescribeInstances; holding it.", cluster = %id);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(
                    message = "DescribeInstances failed; clusters hold until capacity is known.",
                    class = e.class().metric_label(),
                    code = e.code().unwrap_or("-"),
                    request_id = e.request_id().unwrap_or("-"),
                    error = %e,
                );
                snap.auth_failed = e.class() == ErrorClass::Auth;
                snap.error = Some(e.to_string());
            }
        }
        tx.send_replace(snap);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
