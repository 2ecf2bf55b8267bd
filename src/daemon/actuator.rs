//! The thin shell around the operation machine (`daemon::operation`): it
//! feeds one event in, applies the state changes the step returns to the
//! cluster's durable state, saves, performs the one call the step asks for
//! (`ScaleOutInstance`, `TerminateClusterNodes`, `DescribeClusterNodes` or
//! `DescribeClusterFlowStatusDetail`), and feeds the
//! answer back as the next event, until the step asks for nothing more.
//!
//! Only the cluster's owner calls [`drive`], so one task writes a cluster's
//! operation. If the state cannot be written, the step is undone in memory
//! and nothing after its save is performed: nothing is sent before its
//! intent is on disk.

use chrono::{DateTime, Utc};

use super::Shared;
use super::operation::{self, Answer, Effect, Ending, Env, Event, Flow};
use super::status::ApiErrorStatus;
use crate::clock::wall_now;
use crate::config::ClusterConfig;
use crate::history;
use crate::state::{Arrival, BreakerTrip, ClusterState, NodeKind, OrderRecord, OrderSource};
use crate::tencent::emr::{
    FlowState, ScaleOutClusterRequest, ScaleOutInstanceRequest, ScaleOutInstanceResponse,
    TerminateClusterNodesRequest, TerminateClusterNodesResponse,
};
use crate::tencent::{ApiError, ClientToken, ErrorClass};

fn chrono_dur(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// What driving an event came to, for the owner and for manual orders.
#[derive(Debug, Default)]
pub(crate) struct Driven {
    /// The last `ScaleOutInstance` answer, with the token it was sent under.
    pub response: Option<(String, Result<ScaleOutInstanceResponse, ApiError>)>,
    /// The last `TerminateClusterNodes` answer, with the nodes it named.
    pub removal: Option<(Vec<String>, Result<TerminateClusterNodesResponse, ApiError>)>,
    /// How the operation ended, if it did.
    pub closed: Option<Ending>,
    /// The offering of the last scale-out sent, if it had one.
    pub offering: Option<String>,
    /// The state could not be written; nothing was sent.
    pub save_failed: bool,
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

fn env(shared: &Shared) -> Env {
    let token = ClientToken::generate();
    Env {
        now: shared.clock.now(),
        wall: wall_now(),
        fresh_token: (token.value, token.created_at),
        flow_timeout: chrono_dur(shared.config.daemon.flow_timeout),
    }
}

/// Applies one state change of a step to the cluster's record.
fn apply(
    shared: &Shared,
    cluster: &ClusterConfig,
    c: &mut ClusterState,
    effect: &Effect,
    source: crate::state::OrderSource,
    now: DateTime<Utc>,
) {
    let id = cluster.instance_id.as_str();
    match effect {
        Effect::CountOrder { token, nodes }
            if !c.orders.iter().any(|o| o.client_token == *token) =>
        {
            let offering = c
                .operation
                .as_ref()
                .and_then(|o| o.current.as_ref())
                .filter(|chunk| chunk.client_token == *token)
                .and_then(|chunk| chunk.offering.clone())
                .unwrap_or_else(|| history::DEFAULT_OFFERING.to_string());
            c.orders.push(OrderRecord {
                at: now,
                nodes: *nodes,
                client_token: token.clone(),
                source,
            });
            shared.metrics.nodes_requested(id, &offering, *nodes);
        }
        Effect::UncountOrder { token } => c.orders.retain(|o| o.client_token != *token),
        Effect::MarkRules(marks) => {
            for rule in &marks.rules {
                c.rule_last_fired.insert(rule.clone(), now);
            }
            for (rule, since) in &marks.schedule {
                c.schedule_done.insert(rule.clone(), *since);
            }
        }
        Effect::StartCooldown if !cluster.cooldown.is_zero() => {
            let until = crate::policy::time::after(now, cluster.cooldown);
            if c.cooldown_until.is_none_or(|u| u < until) {
                c.cooldown_until = Some(until);
            }
        }
        Effect::Backoff(class) => {
            let d = match class {
                ErrorClass::SoldOut => {
                    shared.metrics.sold_out(id);
                    shared.config.daemon.sold_out_backoff
                }
                _ => cluster
                    .cooldown
                    .max(shared.config.daemon.evaluation_interval),
            };
            c.backoff_until = Some(crate::policy::time::after(now, d));
        }
        Effect::OfferingRefused { offering, code } => {
            let until = crate::policy::time::after(now, shared.config.daemon.sold_out_backoff);
            tracing::warn!(message = "Offering refused the order; it is skipped until its backoff ends.", cluster = %id, offering = %offering, code = %code, until = %until);
            c.unavailable.insert(offering.clone(), until);
        }
        Effect::OpenBreaker { reason, flow_id } if c.breaker_open.is_none() => {
            tracing::error!(message = "Operation outlived flow_timeout; breaker open.", cluster = %id, reason = %reason);
            c.breaker_open = Some(BreakerTrip {
                at: now,
                reason: reason.clone(),
                flow_id: *flow_id,
            });
        }
        Effect::FlowEnded(flow) => c.flow_ended(*flow),
        // The scale-in cooldown runs from the end of every operation.
        Effect::Close(_) => c.last_operation_end = Some(now),
        Effect::Arrived(nodes) => c.arrivals.push(Arrival {
            at: now,
            nodes: *nodes,
        }),
        _ => {}
    }
}

/// Feeds `event` to the cluster's operation and carries out what follows.
///
/// Most ticks drive nothing; the save and the calls an operation makes are
/// boxed, so that every owner's task does not carry their room while idle.
pub(crate) async fn drive(shared: &Shared, cluster: &ClusterConfig, event: Event) -> Driven {
    let id = cluster.instance_id.as_str();
    let mut driven = Driven::default();
    let mut next = Some(event);
    while let Some(event) = next.take() {
        let env = env(shared);
        let now = env.now;
        let before = shared.state.with(|s| s.cluster_mut(id).clone());
        let step = operation::step(before.operation.clone(), event, &env);
        let op = step.op.as_ref().or(before.operation.as_ref());
        let source = op.map(|o| o.source).unwrap_or_default();
        // The chunk this step is about: the one it sends, or else the one
        // it settles.
        let current = step
            .op
            .as_ref()
            .and_then(|o| o.current.as_ref())
            .or(before.operation.as_ref().and_then(|o| o.current.as_ref()));
        let about = About {
            kind: op.map_or(NodeKind::Task, |o| o.kind),
            reason: op.map(|o| o.reason.clone()).unwrap_or_default(),
            chunk: current.map(|c| c.nodes),
            offering: current.and_then(|c| c.offering.clone()),
            removal: op.is_some_and(|o| o.removal.is_some()),
        };
        record(shared, cluster, &before, &step, source, now);
        if step.effects.contains(&Effect::Save)
            && let Err(e) = Box::pin(shared.state.save()).await
        {
            tracing::error!(message = "Cannot write state; nothing is sent until it can be.", cluster = %id, error = %e);
            shared.state.with(|s| *s.cluster_mut(id) = before);
            driven.save_failed = true;
            return driven;
        }
        if before.breaker_open.is_none()
            && let Some(trip) = shared
                .state
                .with(|s| s.cluster_mut(id).breaker_open.clone())
        {
            shared.history.record(
                history::Event::new(now, id, history::Kind::Breaker, "open", trip.reason)
                    .flow(trip.flow_id),
            );
        }
        // The status shows the operation at once, also while a call of it
        // is still being retried.
        shared.board.update(id, |b| {
            b.operation = step.op.as_ref().map(super::status::OperationStatus::of);
        });
        for e in step.effects {
            if let Some(event) = perform(shared, cluster, e, &about, now, &mut driven).await {
                next = Some(event);
            }
        }
    }
    driven
}

/// Writes a step into the cluster's record: the operation, and what each
/// effect changes (cooldowns, orders, arrivals, ...).
fn record(
    shared: &Shared,
    cluster: &ClusterConfig,
    before: &ClusterState,
    step: &operation::Step,
    source: OrderSource,
    now: DateTime<Utc>,
) {
    let current = before.operation.as_ref().and_then(|o| o.current.as_ref());
    let first_sent = current.and_then(|c| c.first_sent_at);
    // A sold-out answer counts once: at the cluster's backoff, or at the
    // offering it refused when the order moves on to the next one.
    let backoff = step
        .effects
        .contains(&Effect::Backoff(crate::tencent::ErrorClass::SoldOut));
    for e in &step.effects {
        if let Effect::OfferingRefused { code, .. } = e
            && !backoff
            && crate::tencent::error::classify(code) == crate::tencent::ErrorClass::SoldOut
        {
            shared.metrics.sold_out(&cluster.instance_id);
        }
    }
    shared.state.with(|s| {
        let c = s.cluster_mut(&cluster.instance_id);
        c.operation = step.op.clone();
        for e in &step.effects {
            apply(shared, cluster, c, e, source, now);
            // A scale-out flow ended with its nodes: how long it took sets
            // a capacity rule's automatic horizon.
            if let (Effect::Arrived(_), Some(sent)) = (e, first_sent) {
                c.record_scale_out(now - sent);
            }
            // Nodes through an offering: matched to machine ids at the next
            // node-list read.
            if let (Effect::Arrived(n), Some(chunk)) = (e, current)
                && let Some(offering) = &chunk.offering
            {
                c.unmatched.push(crate::state::Unmatched {
                    offering: offering.clone(),
                    nodes: *n,
                    since: chunk.first_sent_at.unwrap_or(now),
                });
            }
            // Our own removal: its nodes leave the books.
            if let (Effect::Close(Ending::Completed | Ending::Resolved), Some(removal)) = (
                e,
                before.operation.as_ref().and_then(|o| o.removal.as_ref()),
            ) {
                for id in &removal.nodes {
                    c.node_offerings.remove(id);
                }
            }
        }
    });
}

/// What the operation being driven is, for its calls and its history.
struct About {
    /// Task or core nodes.
    kind: NodeKind,
    /// Why it was decided.
    reason: String,
    /// The nodes of the chunk being sent, for a scale-out.
    chunk: Option<u32>,
    /// The offering of that chunk, if it has one.
    offering: Option<String>,
    /// The operation is a removal.
    removal: bool,
}

/// The history event of an API refusal that ended an operation: the error,
/// and the operation's reason.
fn refusal(id: &str, now: DateTime<Utc>, about: &About, driven: &Driven) -> Option<history::Event> {
    let (error, nodes, token, offering) = match (&driven.response, &driven.removal) {
        (Some((token, Err(e))), _) => (
            e,
            about.chunk,
            Some(token.clone()),
            Some(
                driven
                    .offering
                    .as_deref()
                    .unwrap_or(history::DEFAULT_OFFERING),
            ),
        ),
        (_, Some((nodes, Err(e)))) => (
            e,
            Some(u32::try_from(nodes.len()).unwrap_or(u32::MAX)),
            None,
            None,
        ),
        _ => return None,
    };
    let mut event = history::Event::new(
        now,
        id,
        history::Kind::Refused,
        error.class().metric_label(),
        format!("{error}; not executed: {}", about.reason),
    )
    .token(token);
    if let Some(n) = nodes {
        event = event.nodes(n);
    }
    if let Some(o) = offering {
        event = event.offering(o);
    }
    Some(event)
}

/// Carries out one effect that calls out or reports; returns the event its
/// answer makes, if any.
async fn perform(
    shared: &Shared,
    cluster: &ClusterConfig,
    effect: Effect,
    about: &About,
    now: DateTime<Utc>,
    driven: &mut Driven,
) -> Option<Event> {
    let id = cluster.instance_id.as_str();
    let kind = about.kind;
    match effect {
        Effect::Send {
            token,
            token_created_at,
            nodes,
            chunk,
            resend,
            offering,
            ..
        } => {
            let token = ClientToken {
                value: token,
                created_at: token_created_at,
            };
            let (answer, response) = Box::pin(send(
                shared,
                cluster,
                kind,
                token,
                (nodes, offering.as_deref()),
                chunk,
                resend,
            ))
            .await;
            if let (token, Ok(resp)) = &response {
                shared.history.record(
                    history::Event::new(
                        now,
                        id,
                        history::Kind::ScaleOut,
                        "accepted",
                        &about.reason,
                    )
                    .nodes(nodes)
                    .offering(offering.as_deref().unwrap_or(history::DEFAULT_OFFERING))
                    .token(Some(token.clone()))
                    .flow(resp.flow_id),
                );
            }
            driven.response = Some(response);
            driven.offering = offering;
            Some(Event::Answered(answer))
        }
        Effect::OfferingRefused { offering, .. } => {
            if let Some(mut event) = refusal(id, now, about, driven) {
                event.offering = Some(offering);
                shared.history.record(event);
            }
            None
        }
        Effect::ReadFlow(flow) => Some(read_flow(shared, id, flow, now).await),
        Effect::Terminate {
            nodes,
            grace_secs,
            resend,
        } => {
            let (answer, result) = Box::pin(terminate(
                shared,
                cluster,
                nodes.clone(),
                grace_secs,
                resend,
            ))
            .await;
            if let Ok(resp) = &result {
                shared.history.record(
                    history::Event::new(now, id, history::Kind::ScaleIn, "accepted", &about.reason)
                        .nodes(u32::try_from(nodes.len()).unwrap_or(u32::MAX))
                        .flow(resp.flow_id),
                );
            }
            driven.removal = Some((nodes, result));
            Some(Event::Answered(answer))
        }
        Effect::ListNodes => list_nodes(shared, cluster, now).await,
        Effect::Removed(n) => {
            shared.metrics.nodes_removed(id, n);
            None
        }
        Effect::FlowFailed(flow) => {
            shared.metrics.flow_failed(id);
            tracing::error!(message = "Scale-out flow failed or blocked; the operation ends.", cluster = %id, flow_id = flow);
            None
        }
        Effect::Judged {
            token,
            executed,
            running,
        } => {
            shared.metrics.reconcile_doubt(id);
            tracing::warn!(message = "Judged an order of unknown outcome from the task-node count.", cluster = %id, client_token = %token, judged_executed = executed, now_running = running);
            // An order whose answer never came is history once it is known
            // to have executed (a re-sent acceptance under the same token
            // was already told, and is not told again).
            if executed && !about.removal {
                let mut event = history::Event::new(
                    now,
                    id,
                    history::Kind::ScaleOut,
                    "judged_executed",
                    format!(
                        "{} (no answer came; judged executed from the task-node count, {running} running)",
                        about.reason
                    ),
                )
                .offering(
                    about
                        .offering
                        .as_deref()
                        .unwrap_or(history::DEFAULT_OFFERING),
                )
                .token(Some(token));
                if let Some(n) = about.chunk {
                    event = event.nodes(n);
                }
                shared.history.record(event);
            }
            None
        }
        Effect::Close(ending) => {
            tracing::info!(message = "Operation ended.", cluster = %id, outcome = ending.label(), detail = ?ending);
            if matches!(ending, Ending::Refused(_))
                && let Some(event) = refusal(id, now, about, driven)
            {
                shared.history.record(event);
            }
            driven.closed = Some(ending);
            None
        }
        _ => None,
    }
}

/// Reads a flow's state for the machine.
async fn read_flow(shared: &Shared, id: &str, flow: i64, now: DateTime<Utc>) -> Event {
    let read = {
        let _call = shared
            .board
            .in_call(id, shared.config.tencent.call_within());
        Box::pin(shared.emr.describe_flow(id, flow)).await
    };
    match read {
        Ok(r) => Event::FlowRead(match r.state() {
            FlowState::Done => Flow::Done,
            FlowState::Failed => Flow::Failed,
            FlowState::Blocked => Flow::Blocked,
            FlowState::Running | FlowState::Unknown(_) => Flow::Running,
        }),
        Err(e) => {
            record_error(shared, id, &e, now);
            tracing::warn!(message = "Cannot read the flow.", cluster = %id, flow_id = flow, class = e.class().metric_label(), error = %e);
            Event::FlowUnreadable {
                error: match e.code() {
                    Some(code) => format!("{code}: {e}"),
                    None => e.to_string(),
                },
            }
        }
    }
}

/// Reads the node list for a removal: the machine ids still eligible by
/// the list's own fields (YARN was consulted when the nodes were chosen).
/// `None` when it cannot be read: the removal waits.
async fn list_nodes(shared: &Shared, cluster: &ClusterConfig, now: DateTime<Utc>) -> Option<Event> {
    let id = cluster.instance_id.as_str();
    let read = {
        let _call = shared
            .board
            .in_call(id, shared.config.tencent.call_within() * 4);
        Box::pin(shared.emr.task_nodes(id)).await
    };
    match read {
        Ok(list) => {
            let listed = list
                .iter()
                .map(crate::policy::scale_in::Node::from)
                .filter(|n| {
                    crate::policy::scale_in::ineligibility(n, &cluster.scale_in.scope, None)
                        .is_none()
                })
                .filter_map(|n| n.id)
                .collect();
            Some(Event::NodesListed { listed })
        }
        Err(e) => {
            record_error(shared, id, &e, now);
            tracing::warn!(message = "Cannot read the node list; the removal waits.", cluster = %id, class = e.class().metric_label(), error = %e);
            None
        }
    }
}

/// Sends one graceful removal and turns the result into the machine's
/// [`Answer`]. The client never retries it (it has no token): the machine
/// re-sends the same nodes once it knows which are still there.
async fn terminate(
    shared: &Shared,
    cluster: &ClusterConfig,
    nodes: Vec<String>,
    grace_secs: u64,
    resend: bool,
) -> (Answer, Result<TerminateClusterNodesResponse, ApiError>) {
    let id = cluster.instance_id.as_str();
    let request = TerminateClusterNodesRequest::graceful(
        id,
        nodes,
        std::time::Duration::from_secs(grace_secs),
    );
    tracing::info!(
        message = if resend { "Re-sending TerminateClusterNodes for the nodes still listed." } else { "Sending TerminateClusterNodes (graceful)." },
        cluster = %id, nodes = %request.cvm_instance_ids.join(","), grace_secs,
    );
    let (result, sent_attempts) = {
        let _call = shared
            .board
            .in_call(id, shared.config.tencent.call_within());
        shared.emr.terminate_nodes_counted(&request).await
    };
    let answer = match &result {
        Ok(resp) => {
            tracing::info!(message = "Scale-in accepted.", cluster = %id, flow_id = resp.flow_id, request_id = %resp.request_id);
            Answer::Accepted {
                flow_id: resp.flow_id,
            }
        }
        Err(e) => {
            record_error(shared, id, e, shared.clock.now());
            tracing::warn!(
                message = "Scale-in failed.",
                cluster = %id,
                class = e.class().metric_label(),
                code = e.code().unwrap_or("-"),
                request_id = e.request_id().unwrap_or("-"),
                sent_attempts,
                error = %e,
            );
            Answer::Failed {
                class: e.class(),
                code: e.code().map(str::to_string),
                sent_attempts,
                token_expired: false,
            }
        }
    };
    (answer, result)
}

/// Sends one chunk (through `offering` with ScaleOutCluster, or with
/// ScaleOutInstance) and turns the result into the machine's [`Answer`].
async fn send(
    shared: &Shared,
    cluster: &ClusterConfig,
    kind: NodeKind,
    token: ClientToken,
    (nodes, offering): (u32, Option<&str>),
    (chunk, of): (usize, usize),
    resend: bool,
) -> (Answer, (String, Result<ScaleOutInstanceResponse, ApiError>)) {
    let id = cluster.instance_id.as_str();
    tracing::info!(
        message = match (offering.is_some(), resend) {
            (false, false) => "Sending ScaleOutInstance.",
            (false, true) => "Re-sending ScaleOutInstance under its token.",
            (true, false) => "Sending ScaleOutCluster.",
            (true, true) => "Re-sending ScaleOutCluster under its token.",
        },
        offering = offering.unwrap_or(crate::history::DEFAULT_OFFERING),
        cluster = %id, nodes, chunk, of, client_token = %token.value,
    );
    let (result, sent_attempts) = {
        let _call = shared
            .board
            .in_call(id, shared.config.tencent.call_within());
        match offering {
            None => {
                let request = match kind {
                    NodeKind::Task => ScaleOutInstanceRequest {
                        task_count: Some(nodes),
                        core_count: None,
                        ..cluster.scale_out.clone()
                    },
                    NodeKind::Core => ScaleOutInstanceRequest {
                        task_count: None,
                        core_count: Some(nodes),
                        ..cluster.scale_out.clone()
                    },
                };
                shared.emr.scale_out_counted(&request, &token).await
            }
            Some(name) => match cluster.offerings.iter().find(|o| o.name == name) {
                Some(o) => {
                    let request = ScaleOutClusterRequest::task_nodes(
                        &cluster.scale_out,
                        nodes,
                        (&o.instance_type, o.charge.wire()),
                        (o.zone.as_deref(), o.subnet_id.as_deref()),
                    );
                    let (r, n) = shared.emr.scale_out_cluster_counted(&request, &token).await;
                    (r.map(ScaleOutInstanceResponse::from), n)
                }
                // The offering left the configuration since the intent was
                // written: nothing is sent (a re-send is then judged from
                // the cluster).
                None => (
                    Err(ApiError::Preflight(crate::tencent::error::PreflightError {
                        code: "InvalidParameter",
                        message: format!(
                            "offering {name:?} is no longer configured; nothing was sent"
                        ),
                    })),
                    0,
                ),
            },
        }
    };
    let answer = match &result {
        Ok(resp) => {
            tracing::info!(message = "Scale-out accepted.", cluster = %id, nodes, flow_id = resp.flow_id, request_id = %resp.request_id, client_token = %token.value);
            Answer::Accepted {
                flow_id: resp.flow_id,
            }
        }
        Err(e) => {
            record_error(shared, id, e, shared.clock.now());
            if e.code() == Some("ResourceNotFound.TagsNotFound") {
                tracing::error!(
                    message = "Scale-out refused: a tag in [clusters.scale_out] tags or scale_in.owner_tag does not exist. Create the tag in the account's tag service, or remove it from the config; the order is not retried without it.",
                    cluster = %id,
                );
            }
            tracing::warn!(
                message = "Scale-out failed.",
                cluster = %id,
                class = e.class().metric_label(),
                code = e.code().unwrap_or("-"),
                request_id = e.request_id().unwrap_or("-"),
                client_token = %token.value,
                sent_attempts,
                error = %e,
            );
            Answer::Failed {
                class: e.class(),
                code: e.code().map(str::to_string),
                sent_attempts,
                token_expired: matches!(e, ApiError::TokenExpired { .. }),
            }
        }
    };
    (answer, (token.value, result))
}
