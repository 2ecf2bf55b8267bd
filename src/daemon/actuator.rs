//! Carrying out decisions exactly once: operations split into chunks of at
//! most 20 nodes, sent one after another as each flow completes, every chunk's
//! intent (ClientToken, nodes, count before) on disk before it is sent.
//!
//! An unacknowledged chunk is re-sent under its own token while the token is
//! younger than 4.5 minutes (the server deduplicates it); an older one is never
//! re-sent but reconciled from the cluster's status and task-node count.
//! `busy` answers are never re-sent under a new token.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::clock::wall_now;
use crate::config::ClusterConfig;
use crate::daemon::Shared;
use crate::daemon::status::ApiErrorStatus;
use crate::policy::Decision;
use crate::state::{BreakerTrip, ChunkIntent, Operation, OrderRecord, OrderSource};
use crate::tencent::emr::{ClusterInfo, FlowState, ScaleOutInstanceRequest, status};
use crate::tencent::{ApiError, ClientToken, ErrorClass};

fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn record_error(shared: &Shared, id: &str, e: &ApiError, now: DateTime<Utc>) {
    let s = ApiErrorStatus {
        class: e.class().metric_label(),
        code: e.code().map(str::to_string),
        request_id: e.request_id().map(str::to_string),
        message: e.to_string(),
        at: now,
    };
    shared.board.update(id, |c| c.last_api_error = Some(s));
}

async fn save(shared: &Shared) -> bool {
    match shared.state.save().await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(message = "Cannot write state; nothing will be sent until it can be.", error = %e);
            false
        }
    }
}

/// Starts an operation for `decision` and sends its first chunk.
pub async fn start(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    decision: &Decision,
    reason: String,
) {
    let id = cluster.instance_id.as_str();
    let now = decision.at;
    let op = Operation {
        id: uuid::Uuid::new_v4().to_string(),
        created_at: now,
        chunks: decision.chunks.clone(),
        next_chunk: 0,
        task_nodes_before: decision.running.unwrap_or(0),
        reason,
        current: None,
        completed_nodes: 0,
    };
    shared.state.with(|s| {
        let c = s.cluster_mut(id);
        c.operation = Some(op);
        for v in decision.driving_rules() {
            c.rule_last_fired.insert(v.rule.to_string(), now);
            if let crate::policy::VoteReason::WindowOpen {
                since,
                add_once: Some(_),
                ..
            } = v.reason
            {
                c.schedule_done.insert(v.rule.to_string(), since);
            }
        }
    });
    send_next(shared, cluster, now, decision.running).await;
}

/// Prepares the next chunk's intent, writes it, then sends it.
async fn send_next(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    now: DateTime<Utc>,
    running: Option<u32>,
) {
    let id = cluster.instance_id.as_str();
    let intent = shared.state.with(|s| {
        let c = s.cluster_mut(id);
        let op = c.operation.as_mut()?;
        let nodes = *op.chunks.get(op.next_chunk)?;
        let token = ClientToken::generate();
        let intent = ChunkIntent {
            client_token: token.value,
            token_created_at: token.created_at,
            nodes,
            task_nodes_before: running.unwrap_or(op.task_nodes_before + op.completed_nodes),
            flow_id: None,
            sent_at: None,
        };
        op.current = Some(intent.clone());
        Some(intent)
    });
    let Some(intent) = intent else {
        finish(shared, cluster, now, "no chunk left").await;
        return;
    };
    if !save(shared).await {
        shared.state.with(|s| {
            if let Some(op) = s.cluster_mut(id).operation.as_mut() {
                op.current = None;
            }
        });
        return;
    }
    send(shared, cluster, intent, now).await;
}

/// Sends (or re-sends) a chunk under its own token.
async fn send(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    intent: ChunkIntent,
    now: DateTime<Utc>,
) {
    let id = cluster.instance_id.as_str();
    let (chunk, of) = shared
        .state
        .with(|s| {
            s.cluster_mut(id)
                .operation
                .as_ref()
                .map(|o| (o.next_chunk + 1, o.chunks.len()))
        })
        .unwrap_or((1, 1));
    let request = ScaleOutInstanceRequest {
        task_count: Some(intent.nodes),
        ..cluster.scale_out.clone()
    };
    let token = ClientToken {
        value: intent.client_token.clone(),
        created_at: intent.token_created_at,
    };
    tracing::info!(
        message = "Sending ScaleOutInstance.",
        cluster = %id,
        nodes = intent.nodes,
        chunk,
        of,
        client_token = %token.value,
    );
    match shared.emr.scale_out(&request, &token).await {
        Ok(resp) => {
            tracing::info!(
                message = "Scale-out accepted.",
                cluster = %id,
                nodes = intent.nodes,
                flow_id = ?resp.flow_id,
                request_id = %resp.request_id,
                client_token = %token.value,
            );
            let first_time = shared.state.with(|s| {
                let c = s.cluster_mut(id);
                let first = !c.orders.iter().any(|o| o.client_token == token.value);
                if first {
                    c.orders.push(OrderRecord {
                        at: now,
                        nodes: intent.nodes,
                        client_token: token.value.clone(),
                        source: OrderSource::Daemon,
                    });
                }
                if let Some(cur) = c.operation.as_mut().and_then(|o| o.current.as_mut()) {
                    cur.flow_id = resp.flow_id;
                    cur.sent_at = Some(now);
                }
                first
            });
            if first_time {
                shared.metrics.nodes_requested(id, intent.nodes);
            }
            save(shared).await;
        }
        Err(e) => on_send_error(shared, cluster, &intent, e, now).await,
    }
}

async fn on_send_error(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    intent: &ChunkIntent,
    e: ApiError,
    now: DateTime<Utc>,
) {
    let id = cluster.instance_id.as_str();
    record_error(shared, id, &e, now);
    let class = e.class();
    tracing::warn!(
        message = "Scale-out failed.",
        cluster = %id,
        class = class.metric_label(),
        code = e.code().unwrap_or("-"),
        request_id = e.request_id().unwrap_or("-"),
        client_token = %intent.client_token,
        error = %e,
    );
    let maybe_executed = matches!(e, ApiError::TokenExpired { .. })
        || e.code() == Some("FailedOperation.DuplicateOrderNotAllowed")
        || (class.outcome_unknown() || class == ErrorClass::Throttled) && !e.never_sent();
    if maybe_executed {
        // Keep the intent: it is re-sent under the same token while young,
        // then reconciled from the cluster's task-node count.
        shared.state.with(|s| {
            if let Some(cur) = s
                .cluster_mut(id)
                .operation
                .as_mut()
                .and_then(|o| o.current.as_mut())
            {
                cur.sent_at.get_or_insert(now);
            }
        });
        save(shared).await;
        return;
    }
    // Definitely not executed: drop the chunk and the rest of the operation.
    let backoff = match class {
        ErrorClass::SoldOut => {
            shared.metrics.sold_out(id);
            Some(shared.config.daemon.sold_out_backoff)
        }
        ErrorClass::Busy => None,
        _ => Some(
            cluster
                .cooldown
                .max(shared.config.daemon.evaluation_interval),
        ),
    };
    shared.state.with(|s| {
        let c = s.cluster_mut(id);
        if let Some(op) = c.operation.as_mut() {
            op.current = None;
        }
        if let Some(b) = backoff {
            c.sold_out_until = Some(now + chrono_dur(b));
        }
    });
    finish(shared, cluster, now, "the API refused the order").await;
}

/// Ends the operation; the cluster cooldown starts if anything was ordered.
async fn finish(shared: &Arc<Shared>, cluster: &ClusterConfig, now: DateTime<Utc>, why: &str) {
    let id = cluster.instance_id.as_str();
    let ended = shared.state.with(|s| {
        let c = s.cluster_mut(id);
        let op = c.operation.take()?;
        let ordered = op.completed_nodes > 0 || op.next_chunk > 0;
        if ordered && !cluster.cooldown.is_zero() {
            c.cooldown_until = Some(now + chrono_dur(cluster.cooldown));
        }
        Some(op)
    });
    if let Some(op) = ended {
        tracing::info!(
            message = "Operation ended.",
            cluster = %id,
            operation = %op.id,
            nodes_done = op.completed_nodes,
            chunks_done = op.next_chunk,
            chunks = op.chunks.len(),
            why,
        );
        save(shared).await;
    }
}

/// Follows the cluster's operation: checks the current flow, sends the next
/// chunk when it is done, re-sends or reconciles an unacknowledged chunk.
pub async fn follow(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    now: DateTime<Utc>,
    info: Option<&ClusterInfo>,
) -> u32 {
    let id = cluster.instance_id.as_str();
    let Some(op) = shared.state.with(|s| s.cluster_mut(id).operation.clone()) else {
        return 0;
    };
    let running = info.and_then(ClusterInfo::task_nodes);
    let Some(intent) = op.current.clone() else {
        // Between chunks (e.g. after a restart): carry on.
        send_next(shared, cluster, now, running).await;
        return 0;
    };
    match intent.flow_id {
        Some(flow) => follow_flow(shared, cluster, &intent, flow, now, running).await,
        None if ClientToken {
            value: intent.client_token.clone(),
            created_at: intent.token_created_at,
        }
        .is_young(wall_now()) =>
        {
            tracing::info!(message = "Re-sending an unacknowledged chunk under its token.", cluster = %id, client_token = %intent.client_token);
            send(shared, cluster, intent, now).await;
            0
        }
        None => reconcile(shared, cluster, &intent, now, info).await,
    }
}

async fn follow_flow(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    intent: &ChunkIntent,
    flow: i64,
    now: DateTime<Utc>,
    running: Option<u32>,
) -> u32 {
    let id = cluster.instance_id.as_str();
    let state = match shared.emr.describe_flow(id, flow).await {
        Ok(r) => r.state(),
        Err(e) => {
            record_error(shared, id, &e, now);
            tracing::warn!(message = "Cannot read flow status; will retry.", cluster = %id, flow_id = flow, error = %e);
            return 0;
        }
    };
    match state {
        FlowState::Done => {
            tracing::info!(message = "Flow done.", cluster = %id, flow_id = flow, nodes = intent.nodes);
            shared.state.with(|s| {
                let c = s.cluster_mut(id);
                c.flow_ended(flow);
                if let Some(op) = c.operation.as_mut() {
                    op.completed_nodes += intent.nodes;
                    op.current = None;
                    op.next_chunk += 1;
                }
            });
            save(shared).await;
            let more = shared.state.with(|s| {
                s.cluster_mut(id)
                    .operation
                    .as_ref()
                    .is_some_and(|o| o.next_chunk < o.chunks.len())
            });
            if more {
                send_next(shared, cluster, now, running).await;
            } else {
                finish(shared, cluster, now, "all chunks done").await;
            }
            intent.nodes
        }
        FlowState::Failed => {
            shared.metrics.flow_failed(id);
            tracing::error!(message = "Scale-out flow failed; its nodes are released.", cluster = %id, flow_id = flow, nodes = intent.nodes);
            shared.state.with(|s| {
                let c = s.cluster_mut(id);
                c.flow_ended(flow);
                if let Some(op) = c.operation.as_mut() {
                    op.current = None;
                }
            });
            finish(shared, cluster, now, "flow failed").await;
            0
        }
        FlowState::Running | FlowState::Blocked | FlowState::Unknown(_) => {
            let age = intent.sent_at.map(|t| now - t).unwrap_or_default();
            if age > chrono_dur(shared.config.daemon.flow_timeout) {
                let tripped = shared.state.with(|s| {
                    let c = s.cluster_mut(id);
                    if c.breaker_open.is_some() {
                        return false;
                    }
                    c.breaker_open = Some(BreakerTrip {
                        at: now,
                        reason: format!("flow {flow} running for {}s", age.num_seconds()),
                        flow_id: Some(flow),
                    });
                    true
                });
                if tripped {
                    tracing::error!(message = "Flow outlived its limit; breaker open.", cluster = %id, flow_id = flow, state = ?state);
                    save(shared).await;
                }
            }
            0
        }
    }
}

async fn reconcile(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    intent: &ChunkIntent,
    now: DateTime<Utc>,
    info: Option<&ClusterInfo>,
) -> u32 {
    let id = cluster.instance_id.as_str();
    let Some(info) = info else {
        return 0; // Capacity unknown: wait.
    };
    if info.status == Some(status::SCALING_OUT) {
        return 0; // A flow runs, perhaps ours: wait for it to end.
    }
    let running = info.task_nodes().unwrap_or(0);
    let executed = running >= intent.task_nodes_before + intent.nodes;
    shared.metrics.reconcile_doubt(id);
    tracing::warn!(
        message = "Reconciled an unacknowledged order from the task-node count.",
        cluster = %id,
        client_token = %intent.client_token,
        nodes = intent.nodes,
        before = intent.task_nodes_before,
        now_running = running,
        judged_executed = executed,
    );
    shared.state.with(|s| {
        let c = s.cluster_mut(id);
        if executed
            && !c
                .orders
                .iter()
                .any(|o| o.client_token == intent.client_token)
        {
            c.orders.push(OrderRecord {
                at: intent.sent_at.unwrap_or(now),
                nodes: intent.nodes,
                client_token: intent.client_token.clone(),
                source: OrderSource::Daemon,
            });
        }
        if let Some(op) = c.operation.as_mut() {
            op.current = None;
            if executed {
                op.completed_nodes += intent.nodes;
                op.next_chunk += 1;
            }
        }
    });
    if executed {
        save(shared).await;
        send_next(shared, cluster, now, Some(running)).await;
    } else {
        finish(
            shared,
            cluster,
            now,
            "unacknowledged order not found on the cluster",
        )
        .await;
    }
    // Either way the task-node count already shows what happened.
    0
}
