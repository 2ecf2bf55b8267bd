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
pub(crate) const POLLER: &str = "(capacity poller)";

/// The latest answer about every cluster.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
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
    /// Takes in one `DescribeInstances` result, answered at `at` (the
    /// injected clock). A failure keeps the last clusters but marks them
    /// unusable until the next answer.
    pub(crate) fn record(
        &mut self,
        result: Result<Vec<ClusterInfo>, crate::tencent::ApiError>,
        at: DateTime<Utc>,
    ) {
        match result {
            Ok(list) => {
                self.clusters = list
                    .into_iter()
                    .map(|c| (c.cluster_id.clone(), c))
                    .collect();
                self.taken = Some(tokio::time::Instant::now());
                self.at = Some(at);
                self.error = None;
                self.auth_failed = false;
            }
            Err(e) => {
                self.auth_failed = e.class() == ErrorClass::Auth;
                self.error = Some(e.to_string());
            }
        }
    }

    /// The cluster's info if the snapshot is younger than `max_age` (real time).
    pub(crate) fn fresh(&self, id: &str, max_age: std::time::Duration) -> Option<&ClusterInfo> {
        let taken = self.taken?;
        if taken.elapsed() > max_age || self.error.is_some() {
            return None;
        }
        self.clusters.get(id)
    }
}

/// Polls until cancelled: `DescribeInstances` on a single host or a
/// leader (which also publishes each answer in etcd), the leader's published
/// snapshot on a standby.
pub(crate) async fn poll(
    shared: Arc<Shared>,
    tx: Arc<watch::Sender<Snapshot>>,
    cancel: CancellationToken,
) {
    if shared.role == super::ha::Role::Standby
        && let Some(ha) = shared.ha.clone()
    {
        return follow(shared, ha, tx, cancel).await;
    }
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
        let ok = result.is_ok();
        snap.record(result, shared.clock.now());
        if ok {
            for id in ids.iter().filter(|id| !snap.clusters.contains_key(*id)) {
                tracing::warn!(message = "Cluster not found by DescribeInstances; holding it.", cluster = %id);
            }
        } else {
            tracing::warn!(
                message = "DescribeInstances failed; clusters hold until capacity is known.",
                error = snap.error.as_deref().unwrap_or("-"),
                auth = snap.auth_failed,
            );
        }
        if ok
            && shared.role == super::ha::Role::Leader
            && let (Some(ha), Some(at)) = (&shared.ha, snap.at)
        {
            let published = super::ha::PublishedCapacity {
                at,
                clusters: snap.clusters.values().cloned().collect(),
            };
            if let Err(e) = ha.publish_capacity(&published).await {
                tracing::warn!(message = "Cannot publish the capacity snapshot in etcd.", error = %e);
            }
        }
        tx.send_replace(snap);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// A standby's poller: every evaluation interval, the leader's capacity
/// snapshot and the state, both read from etcd. It calls no EMR action.
async fn follow(
    shared: Arc<Shared>,
    ha: Arc<super::ha::Ha>,
    tx: Arc<watch::Sender<Snapshot>>,
    cancel: CancellationToken,
) {
    let interval = shared.clock.real(shared.config.daemon.evaluation_interval);
    let allowance = interval * 3 + std::time::Duration::from_secs(10);
    loop {
        shared.board.progressed(POLLER, allowance);
        let read = {
            let _call = shared
                .board
                .in_call(POLLER, std::time::Duration::from_secs(10));
            tokio::select! {
                _ = cancel.cancelled() => return,
                r = ha.read_capacity() => r,
            }
        };
        let mut snap = tx.borrow().clone();
        match read {
            Ok(Some(p)) => {
                // Fresh from when this standby first saw it: the leader
                // publishes every interval, so a live leader keeps it fresh
                // and a dead one lets it age out.
                if snap.at != Some(p.at) {
                    snap.taken = Some(tokio::time::Instant::now());
                }
                snap.at = Some(p.at);
                snap.clusters = p
                    .clusters
                    .into_iter()
                    .map(|c| (c.cluster_id.clone(), c))
                    .collect();
                snap.error = None;
                snap.auth_failed = false;
            }
            Ok(None) => snap.error = Some("no leader has published a capacity snapshot yet".into()),
            Err(e) => {
                snap.error = Some(format!(
                    "the leader's snapshot cannot be read from etcd: {e}"
                ))
            }
        }
        tx.send_replace(snap);
        // The leader's cooldowns, budgets and operations, for the decisions
        // and the status this standby shows.
        if let crate::state::Store::Etcd(store) = shared.state.store()
            && let Ok(Some(state)) = store.load().await
            && shared.role == super::ha::Role::Standby
        {
            shared.state.replace(state).await;
        }
        shared.board.progressed(POLLER, allowance);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
