//! One cluster's loop: follow the operation, observe every rule, read
//! capacity, decide, report, act. Each cluster runs on its own timer, so a
//! slow query or API call for one never delays another.
//!
//! # Rules
//! - After any operation ends, no removal is decided until a capacity snapshot taken
//!   after its end; and the node list read for a removal bounds it once more by
//!   `min_task_nodes` (a snapshot can be older than the last removal). A refused
//!   removal backs nothing off (a scale-in never delays a scale-out); an unknown one
//!   past its deadline opens the breaker and is never re-sent. With `nodes = "ours"` and
//!   no `owner_tag`, no node is ours.
//! - Which nodes go: the owner reads the node list (and the ResourceManager when
//!   `[clusters.yarn]` is set) only once the policy decided a removal, picks them with
//!   `policy::scale_in::select`, and shows the choice (and why every other node was passed
//!   over) as `last_selection` in the status. No list, or no ResourceManager answer, means
//!   no scale-in this time. The stabilization history lives in the owner's memory, so
//!   after a start one full window is observed before any removal.
//! - Offerings: an order goes through the first offering available (on-demand ones first
//!   while fewer than `on_demand_floor` on-demand task nodes run). Nodes that arrived
//!   through an offering are matched to the newest unbooked machine ids at the next node
//!   list read; booked nodes missing from a list read with no operation open are lost,
//!   counted per offering. The list is read for that when something waits to be matched,
//!   when the task-node count drops, and every 2 minutes while nodes are booked.
//! - A capacity rule that has observed nothing yet (after a start or a reload) has its
//!   trend window filled by one range query, beside its instant query and within
//!   `prometheus.timeout`; if that fails, growth shows once the rule has observed half
//!   its window.
//! - Tencent's own auto-scaling is read before the first decision and every 10 minutes
//!   (a failed read after 1 minute): an enabled strategy holds both directions with
//!   outcome `conflict` unless `coexist_with_builtin`; unreadable strategies hold
//!   scale-in only; both show on `/readyz` as `conflict`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::actuator;
use super::operation::{Capacity, Event, Plan, Work};
use super::owners::{Accepted, Answer, Command, Refusal, Rejection};
use super::status::{
    BudgetStatus, BuiltinStatus, NotReady, OfferingStatus, OperationStatus, OrderStatus,
    PassedOver, SelectionStatus, VoteStatus,
};
use crate::config::ClusterConfig;
use crate::history;
use chrono::TimeDelta;

use crate::policy::{self, Reading, Sample, Unit};
use crate::state::{Circumstances, NodeKind, OrderSource, Projection, RuleMarks, Snapshot};
use crate::telemetry::metrics::ClusterSnapshot;
use crate::tencent::emr::BuiltinScaling;

/// How often Tencent's own auto-scaling strategies are read.
const BUILTIN_EVERY: chrono::Duration = chrono::Duration::minutes(10);
/// How soon an unreadable answer is tried again.
const BUILTIN_RETRY: chrono::Duration = chrono::Duration::minutes(1);

/// What Tencent's own auto-scaling does on this cluster: read before the
/// first decision and every [`BUILTIN_EVERY`] (a failed read again after
/// [`BUILTIN_RETRY`]).
#[derive(Debug, Default)]
struct Builtin {
    next_read: Option<chrono::DateTime<chrono::Utc>>,
    read_at: Option<chrono::DateTime<chrono::Utc>>,
    answer: Option<Result<BuiltinScaling, String>>,
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// Runs until cancelled: the cluster's one owner. A step in progress (an
/// order being sent, a flow being read) always finishes first; commands from
/// the admin server are served between steps.
pub(crate) async fn run(
    shared: Arc<Shared>,
    cluster: ClusterConfig,
    cancel: CancellationToken,
    mut mailbox: mpsc::Receiver<Command>,
) {
    let id = cluster.instance_id.clone();
    let interval = shared.config.daemon.evaluation_interval;
    let real = shared.clock.real(interval);
    // `/healthz`: a step at least every 3 x interval + 10 s, unless waiting
    // on a call inside its own timeout.
    let allowance = real * 3 + Duration::from_secs(10);
    shared.board.expect(&id, allowance);
    let mut histories: Vec<VecDeque<Sample>> =
        cluster.rules.iter().map(|_| VecDeque::new()).collect();
    let policy = cluster.policy();
    let mut builtin = Builtin::default();
    // The stabilization window is observed anew after every start.
    let mut removals: Vec<policy::Proposal> = Vec::new();
    let mut last_count = None;
    let mut books_checked = None;

    tracing::info!(message = "Evaluating cluster.", cluster = %id, rules = cluster.rules.len(), interval = ?interval);
    // Spread clusters over the first interval.
    let first = real.mul_f64(fastrand::f64() * 0.2);
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(first) => {}
    }
    // An intent left by an earlier process (or, with [ha], an earlier
    // leader) may have been sent. A standby leaves it to the leader.
    if shared.role != super::ha::Role::Standby {
        Box::pin(actuator::drive(&shared, &cluster, Event::Restart)).await;
    }
    'owner: loop {
        stall_for_tests(&id).await;
        let mut memory = Memory {
            histories: &mut histories,
            builtin: &mut builtin,
            removals: &mut removals,
            last_count: &mut last_count,
            books_checked: &mut books_checked,
        };
        // Boxed, as a command is below: the task keeps only what lasts
        // between ticks, not the room of one in progress.
        Box::pin(tick(&shared, &cluster, &policy, &mut memory)).await;
        shared.board.progressed(&id, allowance);
        let next = tokio::time::Instant::now() + jittered(real);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break 'owner,
                _ = tokio::time::sleep_until(next) => break,
                Some(command) = mailbox.recv() => {
                    Box::pin(serve(&shared, &cluster, command)).await;
                    shared.board.progressed(&id, allowance);
                }
            }
        }
    }
    tracing::debug!(message = "Cluster loop stopped.", cluster = %id);
}

/// Debug builds only: `EMR_AUTOSCALER_TEST_STALL_OWNER=<instance id>` makes
/// that cluster's owner hang for ever without an external call, so tests can
/// show that `/healthz` notices a genuinely stuck owner. Release builds have
/// no such hook.
async fn stall_for_tests(id: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("EMR_AUTOSCALER_TEST_STALL_OWNER").is_ok_and(|v| v == id) {
        tracing::warn!(message = "Test hook: this owner stalls (debug builds only).", cluster = %id);
        std::future::pending::<()>().await;
    }
    #[cfg(not(debug_assertions))]
    let _ = id;
}

/// Debug builds only: `EMR_AUTOSCALER_TEST_BUILTIN_EVERY=2s` reads Tencent's
/// auto-scaling strategies that often instead of every 10 minutes, so tests
/// can switch a strategy on while the daemon runs. Release builds have no
/// such hook.
fn builtin_every_for_tests() -> Option<chrono::Duration> {
    #[cfg(debug_assertions)]
    {
        std::env::var("EMR_AUTOSCALER_TEST_BUILTIN_EVERY")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .and_then(|d| chrono::Duration::from_std(d).ok())
    }
    #[cfg(not(debug_assertions))]
    None
}

/// Serves one operator command.
async fn serve(shared: &Shared, cluster: &ClusterConfig, command: Command) {
    let id = cluster.instance_id.as_str();
    let now = shared.clock.now();
    if shared.role == super::ha::Role::Standby {
        // The admin server forwards to the leader; this is the race where
        // the role changed in between.
        command.refuse(Refusal::Standby);
        return;
    }
    match command {
        Command::Pause(reply) => {
            let saved = shared
                .state
                .update(|s| s.cluster_mut(id).paused = true)
                .await;
            actuator::drive(shared, cluster, Event::Pause).await;
            shared.board.update(id, |c| c.paused = true);
            tracing::info!(message = "Cluster paused by operator.", cluster = %id);
            if saved.is_ok() {
                shared.history.record(history::Event::new(
                    now,
                    id,
                    history::Kind::Pause,
                    "paused",
                    "paused by an operator: nothing is ordered or removed until resumed",
                ));
            }
            let _ = reply.send(switched(id, true, now, saved));
        }
        Command::Resume(reply) => {
            let saved = shared
                .state
                .update(|s| {
                    let c = s.cluster_mut(id);
                    c.paused = false;
                    c.breaker_open.take().is_some()
                })
                .await;
            if let Ok(breaker) = saved {
                shared.history.record(history::Event::new(
                    now,
                    id,
                    history::Kind::Resume,
                    "resumed",
                    if breaker {
                        "resumed by an operator; the breaker is closed"
                    } else {
                        "resumed by an operator"
                    },
                ));
            }
            let saved = saved.map(|_| ());
            actuator::drive(shared, cluster, Event::Resume).await;
            shared.board.update(id, |c| {
                c.paused = false;
                c.breaker = None;
            });
            tracing::info!(message = "Cluster resumed by operator.", cluster = %id);
            let _ = reply.send(switched(id, false, now, saved));
        }
        Command::ScaleOut { kind, count, reply } => {
            let _ = reply.send(manual_order(shared, cluster, kind, count).await);
        }
        Command::ScaleIn { count, reply } => {
            let _ = reply.send(manual_removal(shared, cluster, count).await);
        }
    }
}

/// The answer to a pause or a resume, once its state was `saved`.
fn switched<E: std::fmt::Display>(
    id: &str,
    paused: bool,
    at: chrono::DateTime<chrono::Utc>,
    saved: Result<(), E>,
) -> Answer {
    saved
        .map(|()| Accepted::Switched {
            instance_id: id.to_string(),
            paused,
            at,
        })
        .map_err(|e| Refusal::StateUnwritable(e.to_string()))
}

/// Refuses a manual order while the cluster is paused or has an operation
/// running; otherwise the running task nodes, when the last snapshot knows.
fn manual_gate(shared: &Shared, id: &str, what: &'static str) -> Result<Option<u32>, Refusal> {
    let (paused, running_op) = shared.state.with(|s| {
        let c = s.cluster_mut(id);
        (c.paused, c.operation.as_ref().map(|o| o.id.clone()))
    });
    if paused {
        return Err(Refusal::Paused {
            id: id.to_string(),
            what,
        });
    }
    if let Some(operation) = running_op {
        return Err(Refusal::OperationRunning {
            id: id.to_string(),
            operation,
        });
    }
    Ok(shared
        .capacity
        .borrow()
        .clusters
        .get(id)
        .and_then(|i| i.task_nodes()))
}

/// Whether the daemon or this cluster runs dry: nothing is sent, manual
/// orders included.
fn dry_run(shared: &Shared, cluster: &ClusterConfig) -> bool {
    shared.config.daemon.dry_run || cluster.dry_run
}

/// The refusal a manual order gets under `dry_run`: the request it would
/// have sent, with the signature and any token masked.
async fn dry_run_refusal<Req: serde::Serialize>(
    shared: &Shared,
    action: crate::tencent::emr::Action,
    request: &Req,
) -> Refusal {
    Refusal::DryRun {
        request: Box::new(shared.emr.render(action, request).await),
    }
}

/// One manual order through this owner's operation, limiter and state. It
/// skips cooldowns and `for` windows, and counts in cooldowns and budgets
/// afterwards. It keeps the guard rails: under `dry_run` it sends nothing
/// (409 with the rendered request), and a task order never takes running
/// plus in-flight task nodes above `max_task_nodes` (409 naming the bound).
/// It is refused while the cluster is paused or has an operation running.
pub(crate) async fn manual_order(
    shared: &Shared,
    cluster: &ClusterConfig,
    kind: NodeKind,
    count: u32,
) -> Answer {
    let id = cluster.instance_id.as_str();
    let running = manual_gate(shared, id, "ordering")?;
    if kind == NodeKind::Task {
        // No operation is open (the gate says so), so nothing else is in
        // flight: running plus this order is the count to bound.
        let Some(now) = running else {
            let why = shared
                .capacity
                .borrow()
                .error
                .clone()
                .unwrap_or_else(|| "DescribeInstances did not list it".into());
            return Err(Refusal::MaxUncheckable {
                id: id.to_string(),
                why,
            });
        };
        if now.saturating_add(count) > cluster.max_task_nodes {
            return Err(Refusal::AboveMax {
                count,
                running: now,
                max: cluster.max_task_nodes,
            });
        }
    }
    let offerings = match kind {
        NodeKind::Task => {
            offerings_now(shared, cluster).map_err(|until| Refusal::OfferingsUnavailable {
                id: id.to_string(),
                until,
            })?
        }
        NodeKind::Core => Vec::new(),
    };
    if dry_run(shared, cluster) {
        // The request the order would send: through the first offering
        // available, or ScaleOutInstance.
        if let Some(o) = offerings
            .first()
            .and_then(|name| cluster.offerings.iter().find(|o| o.name == *name))
        {
            let request = crate::tencent::emr::ScaleOutClusterRequest::task_nodes(
                &cluster.scale_out,
                count,
                (&o.instance_type, o.charge.wire()),
                (o.zone.as_deref(), o.subnet_id.as_deref()),
            );
            return Err(dry_run_refusal(
                shared,
                crate::tencent::emr::Action::ScaleOutCluster,
                &request,
            )
            .await);
        }
        let (task_count, core_count) = match kind {
            NodeKind::Task => (Some(count), None),
            NodeKind::Core => (None, Some(count)),
        };
        let request = crate::tencent::emr::ScaleOutInstanceRequest {
            task_count,
            core_count,
            ..cluster.scale_out.clone()
        };
        return Err(dry_run_refusal(
            shared,
            crate::tencent::emr::Action::ScaleOutInstance,
            &request,
        )
        .await);
    }
    let plan = Plan {
        id: uuid::Uuid::new_v4().to_string(),
        reason: format!("manual scale-out of {count} {kind:?} node(s)"),
        source: OrderSource::Manual,
        task_nodes_before: running.unwrap_or(0),
        work: Work::ScaleOut {
            chunks: vec![count],
            kind,
            marks: RuleMarks::default(),
            offerings,
        },
    };
    let driven = actuator::drive(shared, cluster, Event::Decided(plan)).await;
    if driven.save_failed {
        return Err(Refusal::IntentUnwritable);
    }
    match driven.response {
        Some((token, Ok(resp))) => Ok(Accepted::Ordered {
            instance_id: resp.instance_id.unwrap_or_else(|| id.to_string()),
            flow_id: resp.flow_id,
            request_id: resp.request_id,
            client_token: resp.client_token.unwrap_or(token),
            deal_names: resp.deal_names,
            bill_id: resp.bill_id,
        }),
        Some((token, Err(e))) => Err(Refusal::Rejected(Box::new(Rejection {
            client_token: Some(token),
            ..Rejection::of(&e)
        }))),
        None => Err(Refusal::NothingSent),
    }
}

/// What an owner remembers between ticks (lost on restart, by design).
struct Memory<'a> {
    histories: &'a mut [VecDeque<Sample>],
    builtin: &'a mut Builtin,
    removals: &'a mut Vec<policy::Proposal>,
    /// The task-node count of the last fresh snapshot read with no
    /// operation open, and when it was taken.
    last_count: &'a mut Option<(u32, chrono::DateTime<chrono::Utc>)>,
    /// When the books of nodes through offerings were last checked.
    books_checked: &'a mut Option<chrono::DateTime<chrono::Utc>>,
}

/// One evaluation of a cluster, in phases: read the capacity snapshot,
/// follow the operation, read Tencent's own strategies, observe the rules,
/// view the record, decide, report, act. Each phase takes what the earlier
/// ones found; none reads the state again.
async fn tick(
    shared: &Arc<Shared>,
    cluster: &ClusterConfig,
    policy: &policy::ClusterPolicy,
    memory: &mut Memory<'_>,
) {
    let now = shared.clock.now();
    let standby = shared.role == super::ha::Role::Standby;
    let mut not_ready = Vec::new();
    let seen = read_capacity(shared, &cluster.instance_id, &mut not_ready);
    // A standby calls no EMR action at all: the leader follows operations
    // and reads Tencent's strategies.
    if !standby {
        actuator::drive(shared, cluster, Event::Tick(seen.capacity())).await;
        let loss = notice_loss(shared, cluster, memory.last_count, &seen);
        follow_nodes(shared, cluster, loss, memory.books_checked).await;
        refresh_builtin(shared, cluster, memory.builtin, now).await;
    }
    let builtin = judge_builtin(cluster, memory.builtin, standby, &mut not_ready);
    let samples = observe(shared, cluster, memory.histories, now, &mut not_ready).await;
    let circumstances = Circumstances {
        dry_run: shared.config.daemon.dry_run || cluster.dry_run,
        conflict: builtin.conflict,
        builtin_unknown: builtin.unknown,
        standby,
        settle: TimeDelta::from_std(cluster.settle(shared.config.daemon.evaluation_interval))
            .unwrap_or_default(),
        scale_in_cooldown: TimeDelta::from_std(cluster.scale_in.cooldown).unwrap_or(TimeDelta::MAX),
    };
    let record = view(shared, cluster, &seen, circumstances, now, &mut not_ready);
    let judged = judge(
        shared,
        cluster,
        policy,
        memory.removals,
        &record,
        &samples,
        now,
    )
    .await;
    report(
        shared,
        cluster,
        &seen,
        &record,
        &judged,
        builtin.status,
        not_ready,
    );
    act(shared, cluster, &record, judged).await;
}

/// The capacity snapshot as this cluster reads it.
struct Seen {
    /// The cluster's entry, when fresh.
    info: Option<crate::tencent::emr::ClusterInfo>,
    /// When the snapshot was taken.
    at: Option<chrono::DateTime<chrono::Utc>>,
    /// The credentials were rejected.
    auth_failed: bool,
}

impl Seen {
    /// What the operation machine reads of it.
    fn capacity(&self) -> Option<Capacity> {
        self.info.as_ref().zip(self.at).map(|(i, at)| Capacity {
            at,
            status: i.status,
            task_nodes: i.task_nodes(),
        })
    }

    /// What the projection reads of it.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            running: self.info.as_ref().and_then(|i| i.task_nodes()),
            in_flow: self.info.as_ref().is_some_and(|i| i.in_flow()),
            at: self.at,
        }
    }
}

/// Reads this cluster's entry of the shared capacity snapshot, and says why
/// it is unusable when it is.
fn read_capacity(shared: &Shared, id: &str, not_ready: &mut Vec<NotReady>) -> Seen {
    let real = shared.clock.real(shared.config.daemon.evaluation_interval);
    // Only this cluster's entry is copied out: every owner reads the
    // snapshot of every cluster on every tick.
    let snapshot = shared.capacity.borrow();
    let info = snapshot
        .fresh(id, real * 2 + shared.config.prometheus.timeout)
        .cloned();
    let detail = match (&snapshot.error, info.is_some()) {
        (Some(e), _) if shared.role == super::ha::Role::Standby => Some(e.clone()),
        (Some(e), _) => Some(format!("EMR DescribeInstances failed: {e}")),
        (None, false) if snapshot.taken.is_none() => Some("no DescribeInstances answer yet".into()),
        (None, false) => Some("cluster missing from DescribeInstances or answer too old".into()),
        (None, true) => None,
    };
    let seen = Seen {
        info,
        at: snapshot.at,
        auth_failed: snapshot.auth_failed,
    };
    drop(snapshot);
    not_ready.extend(detail.map(|d| NotReady::new("capacity_unknown", d)));
    seen
}

/// Reads Tencent's own auto-scaling strategies before the first decision
/// and then every [`BUILTIN_EVERY`] (a failed read after [`BUILTIN_RETRY`]).
async fn refresh_builtin(
    shared: &Shared,
    cluster: &ClusterConfig,
    builtin: &mut Builtin,
    now: chrono::DateTime<chrono::Utc>,
) {
    if builtin.next_read.is_some_and(|t| now < t) {
        return;
    }
    let id = cluster.instance_id.as_str();
    let call = shared
        .board
        .in_call(id, shared.config.tencent.call_within() * 4);
    let answer = shared
        .emr
        .builtin_scaling(id)
        .await
        .map_err(|e| e.to_string());
    drop(call);
    let every = builtin_every_for_tests().unwrap_or(BUILTIN_EVERY);
    let wait = if answer.is_ok() {
        every
    } else {
        BUILTIN_RETRY.min(every)
    };
    builtin.next_read = Some(now + wait);
    builtin.read_at = Some(now);
    if let Ok(b) = &answer {
        record_conflict(shared, cluster, b, now);
    }
    match &answer {
        Ok(b) if b.is_active() => {
            tracing::warn!(message = "Tencent's own auto-scaling is on for this cluster.", cluster = %id, strategies = %b.enabled.join(","), coexist = cluster.coexist_with_builtin)
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(message = "Tencent's auto-scaling strategies cannot be read; scale-in holds.", cluster = %id, error = %e)
        }
    }
    builtin.answer = Some(answer);
}

/// Records a change of conflict with Tencent's own auto-scaling: compared
/// with the cluster's last conflict event, so a restart during a conflict
/// tells nothing new.
fn record_conflict(
    shared: &Shared,
    cluster: &ClusterConfig,
    read: &BuiltinScaling,
    now: chrono::DateTime<chrono::Utc>,
) {
    let id = cluster.instance_id.as_str();
    let conflict = !cluster.coexist_with_builtin && read.is_active();
    let was = shared
        .history
        .last(id, history::Kind::Conflict)
        .is_some_and(|e| e.outcome == "on");
    if conflict == was {
        return;
    }
    let (outcome, reason) = if conflict {
        (
            "on",
            format!(
                "Tencent's own auto-scaling has enabled strategies ({}); the cluster holds both directions until they are disabled or coexist_with_builtin is set",
                read.enabled.join(", ")
            ),
        )
    } else {
        (
            "off",
            "Tencent's own auto-scaling no longer holds the cluster; it is scaled again".into(),
        )
    };
    shared.history.record(history::Event::new(
        now,
        id,
        history::Kind::Conflict,
        outcome,
        reason,
    ));
}

/// Task nodes that disappeared without a removal of ours.
struct Loss {
    /// How many.
    nodes: u32,
    /// No operation ended between the two counts: the whole drop is a loss.
    /// Otherwise only nodes the books place on an offering count.
    certain: bool,
    /// The count before and after.
    before: u32,
    running: u32,
    /// When it was seen.
    at: chrono::DateTime<chrono::Utc>,
}

/// Notices task nodes that disappeared without a removal of ours: between
/// two fresh snapshots with no operation open and none ended in between,
/// the count fell.
fn notice_loss(
    shared: &Shared,
    cluster: &ClusterConfig,
    last: &mut Option<(u32, chrono::DateTime<chrono::Utc>)>,
    seen: &Seen,
) -> Option<Loss> {
    let id = cluster.instance_id.as_str();
    let (Some(running), Some(at)) = (seen.info.as_ref().and_then(|i| i.task_nodes()), seen.at)
    else {
        return None;
    };
    let (open, ended) = shared.state.with(|s| {
        let c = s.cluster_mut(id);
        (c.operation.is_some(), c.last_operation_end)
    });
    if open {
        *last = None;
        return None;
    }
    let loss = match *last {
        Some((before, before_at)) if at > before_at && running < before => {
            let certain = ended.is_none_or(|e| e < before_at);
            if certain {
                tracing::warn!(message = "Task nodes disappeared without a removal of ours.", cluster = %id, lost = before - running, before, now = running);
            }
            Some(Loss {
                nodes: before - running,
                certain,
                before,
                running,
                at,
            })
        }
        _ => None,
    };
    if last.is_none_or(|(_, t)| at > t) {
        *last = Some((running, at));
    }
    loss
}

/// How often the books of nodes ordered through offerings are checked
/// against the node list, when no drop in the count prompts it sooner.
const BOOKS_EVERY: chrono::Duration = chrono::Duration::minutes(2);

/// Keeps the books of nodes ordered through offerings: matches nodes that
/// arrived to machine ids (the newest unknown ones), and counts the booked
/// nodes that vanished with no operation open (spot reclaimed) as lost, per
/// offering. One node-list read, only when there is something to match, a
/// drop in the count, or `due` (every [`BOOKS_EVERY`]) with nodes booked. A
/// certain loss the books cannot place is told as `default`.
async fn follow_nodes(
    shared: &Shared,
    cluster: &ClusterConfig,
    loss: Option<Loss>,
    checked: &mut Option<chrono::DateTime<chrono::Utc>>,
) {
    let id = cluster.instance_id.as_str();
    let now = shared.clock.now();
    let (unmatched, known, open) = shared.state.with(|s| {
        let c = s.cluster_mut(id);
        (
            !c.unmatched.is_empty(),
            !c.node_offerings.is_empty(),
            c.operation.is_some(),
        )
    });
    let due = known && checked.is_none_or(|t| now - t >= BOOKS_EVERY);
    let mut placed: Vec<(String, u32)> = Vec::new();
    if unmatched || (known && (loss.is_some() || due)) {
        *checked = Some(now);
        let read = {
            let _call = shared
                .board
                .in_call(id, shared.config.tencent.call_within() * 4);
            shared.emr.task_nodes(id).await
        };
        match read {
            Ok(list) => {
                let mut listed: Vec<(String, String)> = list
                    .iter()
                    .filter(|n| n.flag == Some(3))
                    .filter_map(|n| {
                        Some((
                            n.order_no.clone()?,
                            n.apply_time.clone().unwrap_or_default(),
                        ))
                    })
                    .collect();
                // Newest first ("YYYY-MM-DD HH:MM:SS" sorts as text).
                listed.sort_by(|a, b| b.1.cmp(&a.1));
                placed = shared.state.with(|s| {
                    let c = s.cluster_mut(id);
                    for u in std::mem::take(&mut c.unmatched) {
                        let fresh: Vec<String> = listed
                            .iter()
                            .filter(|(n, _)| !c.node_offerings.contains_key(n))
                            .take(u.nodes as usize)
                            .map(|(n, _)| n.clone())
                            .collect();
                        for n in fresh {
                            c.node_offerings.insert(n, u.offering.clone());
                        }
                    }
                    // While an operation runs (a removal draining), nothing
                    // leaves the books: a removal that completes takes its
                    // own nodes out.
                    if open {
                        return Vec::new();
                    }
                    let mut gone: BTreeMap<String, u32> = BTreeMap::new();
                    c.node_offerings.retain(|n, o| {
                        let here = listed.iter().any(|(l, _)| l == n);
                        if !here {
                            *gone.entry(o.clone()).or_default() += 1;
                        }
                        here
                    });
                    gone.into_iter().collect()
                });
                if let Err(e) = shared.state.save().await {
                    tracing::warn!(message = "Cannot write which offering each node came from.", cluster = %id, error = %e);
                }
            }
            Err(e) => {
                tracing::warn!(message = "Cannot read the node list to keep the offerings' books; trying at the next evaluation.", cluster = %id, error = %e);
            }
        }
    }
    let told: u32 = placed.iter().map(|(_, n)| n).sum();
    if let Some(l) = &loss
        && l.certain
        && l.nodes > told
    {
        placed.push((history::DEFAULT_OFFERING.to_string(), l.nodes - told));
    }
    let (counts, at) = loss.map_or((String::new(), now), |l| {
        (format!(" ({} -> {})", l.before, l.running), l.at)
    });
    for (offering, n) in placed {
        shared.metrics.nodes_lost(id, &offering, n);
        tracing::warn!(message = "Task nodes of an offering disappeared without a removal of ours.", cluster = %id, offering = %offering, lost = n);
        shared.history.record(
            history::Event::new(
                at,
                id,
                history::Kind::LostNodes,
                "lost",
                format!(
                    "{n} task node(s) of {offering} disappeared without a removal by this daemon{counts}; the rules replace them if the load needs them"
                ),
            )
            .nodes(n)
            .offering(&offering),
        );
    }
}

/// What Tencent's own auto-scaling means for this decision.
struct BuiltinJudgement {
    /// An enabled strategy holds everything (coexistence off).
    conflict: bool,
    /// The strategies could not be read: scale-in holds.
    unknown: bool,
    /// As `/api/v1/status` shows it.
    status: BuiltinStatus,
}

/// Judges the last read of Tencent's strategies, and says why the cluster is
/// not ready when they hold it.
fn judge_builtin(
    cluster: &ClusterConfig,
    builtin: &Builtin,
    standby: bool,
    not_ready: &mut Vec<NotReady>,
) -> BuiltinJudgement {
    let read = builtin.answer.as_ref().and_then(|a| a.as_ref().ok());
    let conflict = !cluster.coexist_with_builtin && read.is_some_and(BuiltinScaling::is_active);
    match &builtin.answer {
        Some(Ok(b)) if conflict => not_ready.push(NotReady::new(
            "conflict",
            format!(
                "Tencent's own auto-scaling has enabled strategies ({}); everything holds. \
                 Disable them, or set coexist_with_builtin = true to act next to them",
                b.enabled.join(", ")
            ),
        )),
        Some(Err(e)) if !standby => not_ready.push(NotReady::new(
            "conflict",
            format!(
                "Tencent's auto-scaling strategies cannot be read ({e}); scale-in holds, \
                 scale-out proceeds. Allow DescribeAutoScaleGroupGlobalConf and \
                 DescribeAutoScaleStrategies in the CAM policy"
            ),
        )),
        _ => {}
    }
    BuiltinJudgement {
        conflict,
        unknown: read.is_none(),
        status: BuiltinStatus {
            read_at: builtin.read_at,
            groups: read.map(|b| b.groups),
            enabled: read.map(|b| b.enabled.clone()),
            error: builtin
                .answer
                .as_ref()
                .and_then(|a| a.as_ref().err())
                .cloned(),
            coexist_with_builtin: cluster.coexist_with_builtin,
        },
    }
}

/// Queries every rule concurrently and appends the readings to the rules'
/// histories (kept to each rule's retention); returns the histories.
async fn observe(
    shared: &Shared,
    cluster: &ClusterConfig,
    histories: &mut [VecDeque<Sample>],
    now: chrono::DateTime<chrono::Utc>,
    not_ready: &mut Vec<NotReady>,
) -> Vec<Vec<Sample>> {
    let id = cluster.instance_id.as_str();
    let interval = shared.config.daemon.evaluation_interval;
    let queries = shared.board.in_call(
        id,
        shared.config.prometheus.timeout * 2 + Duration::from_secs(5),
    );
    let timeout = shared.config.prometheus.timeout;
    let observed = futures_util::future::join_all(cluster.rules.iter().zip(histories.iter()).map(
        |(r, history)| {
            let prom = &shared.prom;
            let window = backfill_window(&r.kind, history.is_empty(), now, interval);
            async move {
                let q = r.query.as_deref()?;
                let past = async {
                    let (from, to) = window?;
                    let range = prom.range(q, from, to, interval, |_, _| {});
                    Some(match tokio::time::timeout(timeout, range).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!(
                            "no answer within prometheus.timeout ({})",
                            humantime::format_duration(timeout)
                        )),
                    })
                };
                let (obs, past) = futures_util::join!(prom.instant(q), past);
                Some((obs, past))
            }
        },
    ))
    .await;
    drop(queries);
    for ((rule, obs), history) in cluster.rules.iter().zip(observed).zip(histories.iter_mut()) {
        let Some((mut obs, past)) = obs else { continue };
        match past {
            Some(Ok(mut samples)) => {
                // In time order whatever the answer's order: growth reads
                // the window as one slice.
                samples.sort_by_key(|s| s.at);
                let before = history.len();
                history.extend(samples.into_iter().filter(|s| s.at < now).map(|s| Sample {
                    at: s.at,
                    value: s.value.bounded(rule.max_value),
                }));
                tracing::info!(message = "Trend window filled from Prometheus.", cluster = %id, rule = %rule.name, samples = history.len() - before);
            }
            Some(Err(reason)) => {
                tracing::warn!(message = "Trend window not filled from Prometheus; growth shows once the rule has observed half of it.", cluster = %id, rule = %rule.name, reason = %reason);
            }
            None => {}
        }
        obs.reading = obs.reading.bounded(rule.max_value);
        if let Reading::Missing(issue) = obs.reading {
            shared.metrics.record_query_error(id, &rule.name, issue);
            let reason = obs
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| issue.metric_label().into());
            tracing::warn!(message = "Rule has no usable data; it does not count as a number.", cluster = %id, rule = %rule.name, kind = issue.metric_label(), reason = %reason);
            not_ready.push(NotReady::new(
                "data_error",
                format!("rule {}: {reason}", rule.name),
            ));
        }
        history.push_back(Sample {
            at: now,
            value: obs.reading,
        });
        let keep = rule.kind.retention(interval);
        while history.len() > keep {
            history.pop_front();
        }
    }
    histories
        .iter()
        .map(|h| h.iter().copied().collect())
        .collect()
}

/// The span one range query fills a capacity rule's trend window over, when
/// the rule has observed nothing yet (after a start or a reload): the window
/// and one interval before it, up to just before `now`, whose instant query
/// follows.
fn backfill_window(
    kind: &policy::RuleKind,
    empty: bool,
    now: chrono::DateTime<chrono::Utc>,
    interval: Duration,
) -> Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)> {
    match kind {
        policy::RuleKind::Capacity(c) if empty && !c.trend_window.is_zero() => Some((
            policy::time::before(now, c.trend_window.saturating_add(interval)),
            policy::time::before(now, Duration::from_secs(1)),
        )),
        _ => None,
    }
}

/// The cluster's durable record at this evaluation, as the policy and the
/// report see it.
struct Record {
    /// The view the policy judges.
    projection: Projection,
    /// The operation in flight.
    operation: Option<crate::state::Operation>,
    /// Why the breaker is open.
    breaker: Option<crate::state::BreakerTrip>,
    /// The cluster's offerings: usable now, or skipped until a time.
    offers: crate::state::Offers,
    /// Task nodes booked per offering.
    booked: BTreeMap<String, u32>,
}

/// Reads the record once (pruning what has aged out) and projects it.
fn view(
    shared: &Shared,
    cluster: &ClusterConfig,
    seen: &Seen,
    circumstances: Circumstances,
    now: chrono::DateTime<chrono::Utc>,
    not_ready: &mut Vec<NotReady>,
) -> Record {
    if seen.info.as_ref().is_some_and(|i| i.task_nodes().is_none()) {
        not_ready.push(NotReady::new(
            "capacity_unknown",
            "DescribeInstances gave no Config.TaskNodeSize",
        ));
    }
    if seen.auth_failed {
        not_ready.push(NotReady::new("auth", "EMR credentials rejected"));
    }
    let snapshot = seen.snapshot();
    let record = shared.state.with(|s| {
        let c = s.cluster_mut(&cluster.instance_id);
        c.prune_orders(now);
        c.prune_arrivals(now, circumstances.settle);
        Record {
            projection: c.project(
                cluster.rules.iter().map(|r| &*r.name),
                &snapshot,
                now,
                circumstances,
            ),
            operation: c.operation.clone(),
            breaker: c.breaker_open.clone(),
            offers: c.offers(cluster.offerings.iter().map(|o| o.name.as_str()), now),
            booked: c.node_offerings.values().fold(BTreeMap::new(), |mut m, o| {
                *m.entry(o.clone()).or_insert(0) += 1;
                m
            }),
        }
    });
    // An operation never hangs silently: an unreadable flow shows at once,
    // the breaker once the operation outlived flow_timeout.
    let current = record.operation.as_ref().and_then(|o| o.current.as_ref());
    if let Some((flow, error)) = current.and_then(|c| {
        c.flow_unreadable
            .as_ref()
            .map(|e| (c.flow_id.unwrap_or_default(), e))
    }) {
        not_ready.push(NotReady::new(
            "flow_unreadable",
            format!("flow {flow} cannot be read: {error}"),
        ));
    }
    if let Some(b) = &record.breaker {
        not_ready.push(NotReady::new("breaker", b.reason.clone()));
    }
    record
}

/// A decision and its sentence.
struct Judged {
    decision: policy::Decision,
    text: String,
}

/// Decides, remembers the removal proposal for the stabilization window,
/// and holds when the intent could not be written first.
async fn judge(
    shared: &Shared,
    cluster: &ClusterConfig,
    policy: &policy::ClusterPolicy,
    removals: &mut Vec<policy::Proposal>,
    record: &Record,
    samples: &[Vec<Sample>],
    now: chrono::DateTime<chrono::Utc>,
) -> Judged {
    let max_gap = policy::max_gap(shared.config.daemon.evaluation_interval);
    let refs: Vec<&[Sample]> = samples.iter().map(Vec::as_slice).collect();
    let mut decision = policy::decide(
        policy,
        &record.projection.view(removals),
        &refs,
        now,
        max_gap,
    );
    if cluster.scale_in.enabled {
        removals.push(policy::Proposal {
            at: now,
            nodes: decision.proposal,
            effective: decision.effective,
        });
        policy::scale_in::prune(removals, now, cluster.scale_in.stabilization, max_gap);
    }
    let units: Vec<Unit> = cluster.rules.iter().map(|r| r.unit).collect();
    let mut text = decision.explain(&units);
    // The intent is on disk before anything is sent: while the state cannot
    // be written, nothing is ordered or removed, and no order is counted
    // that was never sent. A save probes it before the decision is counted.
    if (decision.orders() || decision.removes() > 0)
        && record.operation.is_none()
        && let Err(e) = shared.state.save().await
    {
        decision.outcome = policy::Outcome::Hold;
        for v in &mut decision.votes {
            if matches!(
                v.outcome,
                policy::Outcome::ScaleOut | policy::Outcome::ScaleIn
            ) {
                v.outcome = policy::Outcome::Hold;
            }
        }
        text.push_str(&format!("; held: the state cannot be written ({e})"));
        tracing::error!(message = "The state cannot be written; holding.", cluster = %cluster.instance_id, error = %e);
    }
    Judged { decision, text }
}

/// Shows the decision: metrics, the status board and the log.
fn report(
    shared: &Shared,
    cluster: &ClusterConfig,
    seen: &Seen,
    record: &Record,
    judged: &Judged,
    builtin: BuiltinStatus,
    not_ready: Vec<NotReady>,
) {
    let id = cluster.instance_id.as_str();
    let Judged { decision, text } = judged;
    let p = &record.projection;
    let now = decision.at;
    let used = |window: chrono::Duration| {
        p.orders
            .iter()
            .filter(|(t, _)| *t > now - window)
            .map(|(_, n)| *n)
            .sum::<u32>()
    };
    let budget = BudgetStatus {
        hour_used: used(chrono::Duration::hours(1)),
        hour_limit: cluster.max_nodes_per_hour,
        day_used: used(chrono::Duration::days(1)),
        day_limit: cluster.max_nodes_per_day,
    };
    shared.metrics.record_decision(id, decision);
    shared.metrics.set_cluster_state(
        id,
        &ClusterSnapshot {
            paused: p.paused,
            breaker_open: p.breaker_open,
            cooldown_until: p.cooldown_until,
            budget_hour: budget
                .hour_limit
                .map(|l| l.saturating_sub(budget.hour_used)),
            budget_day: budget.day_limit.map(|l| l.saturating_sub(budget.day_used)),
            last_evaluation: now,
            max_task_nodes: cluster.max_task_nodes,
        },
    );
    let running = seen.snapshot().running;
    shared.board.update(id, |s| {
        s.current = running;
        s.in_flight = p.in_flight;
        s.desired = running.map(|_| decision.desired());
        s.last_decision = Some(text.clone());
        s.outcome = Some(decision.outcome.metric_label());
        s.votes = decision.votes.iter().map(VoteStatus::of).collect();
        s.last_evaluation = Some(now);
        s.cooldown_until = p.cooldown_until;
        s.backoff_until = p.backoff_until;
        s.budget = budget;
        s.paused = p.paused;
        s.breaker = record.breaker.as_ref().map(|b| b.reason.clone());
        s.dry_run = p.circumstances.dry_run;
        s.operation = record.operation.as_ref().map(OperationStatus::of);
        s.not_ready = not_ready;
        s.scale_in = Some(decision.removal.to_string());
        s.builtin = Some(builtin);
        s.offerings = OfferingStatus::of(&record.offers);
    });
    let booked = |n: &str| record.booked.get(n).copied().unwrap_or(0);
    let offerings: Vec<(&str, bool, u32)> = record
        .offers
        .usable
        .iter()
        .map(|n| (n.as_str(), false, booked(n)))
        .chain(
            record
                .offers
                .skipped
                .iter()
                .map(|(n, _)| (n.as_str(), true, booked(n))),
        )
        .collect();
    shared.metrics.set_offerings(id, &offerings);
    let quiet = matches!(decision.outcome, policy::Outcome::Hold) && decision.proposed == 0;
    if quiet {
        tracing::debug!(message = "Decision.", cluster = %id, outcome = decision.outcome.metric_label(), reason = %text);
    } else {
        tracing::info!(
            message = "Decision.",
            cluster = %id,
            outcome = decision.outcome.metric_label(),
            increment = decision.increment,
            // Absent when the node count is unknown.
            running = running,
            in_flight = p.in_flight,
            rule = %decision.driving_rules().map(|v| v.rule.to_string()).collect::<Vec<_>>().join(","),
            reason = %text,
        );
    }
}

/// Carries out the decision: an order or a removal starts an operation,
/// unless one is still in progress.
async fn act(shared: &Shared, cluster: &ClusterConfig, record: &Record, judged: Judged) {
    let Judged { decision, text } = judged;
    let id = cluster.instance_id.as_str();
    if record.operation.is_some() {
        if decision.orders() {
            tracing::info!(message = "An operation is still in progress; the extra nodes wait for the next decision.", cluster = %id, increment = decision.increment);
        }
        return;
    }
    if decision.orders() {
        let offerings = match offerings_now(shared, cluster) {
            Ok(o) => o,
            Err(until) => {
                tracing::warn!(message = "Every offering is unavailable; the order waits.", cluster = %id, until = %until);
                return;
            }
        };
        shared.board.update(id, |s| {
            s.last_order = Some(OrderStatus {
                at: decision.at,
                nodes: decision.increment,
                chunks: decision.chunks.clone(),
                reason: text.clone(),
            });
        });
        let mut marks = RuleMarks::default();
        for v in decision.driving_rules() {
            marks.rules.push(v.rule.to_string());
            if let policy::VoteReason::WindowOpen {
                since,
                add_once: Some(_),
                ..
            } = v.reason
            {
                marks.schedule.push((v.rule.to_string(), since));
            }
        }
        let plan = Plan {
            id: uuid::Uuid::new_v4().to_string(),
            reason: text,
            source: OrderSource::Daemon,
            task_nodes_before: decision.running.unwrap_or(0),
            work: Work::ScaleOut {
                chunks: decision.chunks.clone(),
                kind: NodeKind::Task,
                marks,
                offerings,
            },
        };
        actuator::drive(shared, cluster, Event::Decided(plan)).await;
    } else if decision.removes() > 0 {
        let running = decision.running.unwrap_or(0);
        remove(shared, cluster, decision.removes(), running, &text).await;
    }
}

/// The offerings a task-node order of this cluster may go through now, in
/// order (empty without offerings: ScaleOutInstance); `Err` with the time
/// the first becomes available again when every one is unavailable.
fn offerings_now(
    shared: &Shared,
    cluster: &ClusterConfig,
) -> Result<Vec<String>, chrono::DateTime<chrono::Utc>> {
    if cluster.offerings.is_empty() {
        return Ok(Vec::new());
    }
    let now = shared.clock.now();
    let offers = shared.state.with(|s| {
        s.cluster_mut(&cluster.instance_id)
            .offers(cluster.offerings.iter().map(|o| o.name.as_str()), now)
    });
    if offers.usable.is_empty() {
        return Err(offers
            .skipped
            .iter()
            .map(|(_, until)| *until)
            .min()
            .unwrap_or(now));
    }
    let running = shared
        .capacity
        .borrow()
        .clusters
        .get(&cluster.instance_id)
        .and_then(|i| i.task_nodes())
        .unwrap_or(0);
    let usable = shared.state.with(|s| {
        super::choose::order_offerings(
            cluster,
            &s.cluster_mut(&cluster.instance_id).node_offerings,
            running,
            offers.usable,
        )
    });
    Ok(usable)
}

/// Picks `count` nodes to give back by the scale-in rules, from the node
/// list and, when configured, the ResourceManager; records the choice in the
/// status. An `Err` says why nothing can be picked now.
async fn pick(
    shared: &Shared,
    cluster: &ClusterConfig,
    count: u32,
    reason: &str,
) -> Result<crate::policy::scale_in::Selection, super::choose::ChooseError> {
    let id = cluster.instance_id.as_str();
    let selection = {
        let _call = shared.board.in_call(
            id,
            shared.config.tencent.call_within() * 4 + shared.config.prometheus.timeout * 4,
        );
        let spot = shared
            .state
            .with(|s| super::choose::spot_nodes(cluster, &s.cluster_mut(id).node_offerings));
        super::choose::choose(
            &shared.emr,
            &shared.http,
            cluster,
            count,
            shared.config.prometheus.timeout,
            &spot,
        )
        .await?
    };
    let passed_over = selection
        .passed_over
        .iter()
        .map(|(node, why)| PassedOver {
            node: node.clone(),
            why: why.to_string(),
        })
        .collect();
    shared.board.update(id, |s| {
        s.last_selection = Some(SelectionStatus {
            at: shared.clock.now(),
            wanted: count,
            reason: reason.to_string(),
            chosen: selection.ids(),
            shortfall: selection.shortfall,
            passed_over,
        });
    });
    Ok(selection)
}

/// The plan of a removal of `selection`'s nodes.
fn removal_plan(
    cluster: &ClusterConfig,
    selection: &crate::policy::scale_in::Selection,
    count: u32,
    running: u32,
    reason: &str,
    source: OrderSource,
) -> Plan {
    let mut why = reason.to_string();
    if selection.shortfall > 0 {
        why.push_str(&format!(
            "; only {} of {count} node(s) eligible",
            selection.chosen.len()
        ));
    }
    Plan {
        id: uuid::Uuid::new_v4().to_string(),
        reason: why,
        source,
        task_nodes_before: running,
        work: Work::ScaleIn(crate::state::RemovalIntent {
            nodes: selection.ids(),
            gone: vec![],
            grace_secs: cluster.scale_in.grace_period.as_secs(),
        }),
    }
}

/// Starts the removal the policy decided. Nothing is sent when the node list
/// (or, when configured, the ResourceManager) cannot be read, or no node is
/// eligible.
async fn remove(shared: &Shared, cluster: &ClusterConfig, count: u32, running: u32, reason: &str) {
    let id = cluster.instance_id.as_str();
    let selection = match pick(shared, cluster, count, reason).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(message = "No scale-in this time.", cluster = %id, reason = %e);
            return;
        }
    };
    if selection.chosen.is_empty() {
        tracing::info!(message = "Scale-in decided, but no task node is eligible.", cluster = %id, wanted = count);
        return;
    }
    if selection.shortfall > 0 {
        tracing::info!(message = "Fewer eligible nodes than the removal; removing the eligible ones.", cluster = %id, wanted = count, eligible = selection.chosen.len());
    }
    let plan = removal_plan(
        cluster,
        &selection,
        count,
        running,
        reason,
        OrderSource::Daemon,
    );
    actuator::drive(shared, cluster, Event::Decided(plan)).await;
}

/// One manual scale-in of `count` nodes through this owner's operation:
/// picked by the scale-in rules (eligibility, ordering), never below
/// `min_task_nodes`, refused while the cluster is paused or has an
/// operation running. It skips the stabilization window and the cooldowns.
pub(crate) async fn manual_removal(shared: &Shared, cluster: &ClusterConfig, count: u32) -> Answer {
    let id = cluster.instance_id.as_str();
    if !cluster.scale_in.scope.is_usable() {
        return Err(Refusal::NoOwnerTag { id: id.to_string() });
    }
    let Some(running) = manual_gate(shared, id, "removing nodes")? else {
        return Err(Refusal::CountUnknown { id: id.to_string() });
    };
    if running.saturating_sub(count) < cluster.min_task_nodes {
        return Err(Refusal::BelowMin {
            count,
            running,
            min: cluster.min_task_nodes,
        });
    }
    let reason = format!("manual scale-in of {count} node(s)");
    let selection = pick(shared, cluster, count, &reason)
        .await
        .map_err(|e| Refusal::NodesUnreadable(e.to_string()))?;
    if selection.chosen.is_empty() {
        let why: Vec<String> = selection
            .passed_over
            .iter()
            .map(|(n, w)| format!("{n}: {w}"))
            .collect();
        return Err(Refusal::NoneEligible(why.join("; ")));
    }
    if dry_run(shared, cluster) {
        let request = crate::tencent::emr::TerminateClusterNodesRequest::graceful(
            id,
            selection.ids(),
            cluster.scale_in.grace_period,
        );
        return Err(dry_run_refusal(
            shared,
            crate::tencent::emr::Action::TerminateClusterNodes,
            &request,
        )
        .await);
    }
    let plan = removal_plan(
        cluster,
        &selection,
        count,
        running,
        &reason,
        OrderSource::Manual,
    );
    let driven = actuator::drive(shared, cluster, Event::Decided(plan)).await;
    if driven.save_failed {
        return Err(Refusal::IntentUnwritable);
    }
    match driven.removal {
        Some((nodes, Ok(resp))) => Ok(Accepted::Removed {
            instance_id: id.to_string(),
            flow_id: resp.flow_id,
            request_id: resp.request_id,
            cvm_instance_ids: nodes,
            grace_down_time: cluster.scale_in.grace_period.as_secs(),
            shortfall: selection.shortfall,
        }),
        Some((nodes, Err(e))) => Err(Refusal::Rejected(Box::new(Rejection {
            nodes: Some(nodes),
            ..Rejection::of(&e)
        }))),
        None => Err(Refusal::NothingSent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Capacity, Horizon, RuleKind};

    fn capacity(window_s: u64) -> RuleKind {
        RuleKind::Capacity(Capacity {
            per_node: 1.0,
            reserved: 0.0,
            headroom: 0.0,
            trend_window: Duration::from_secs(window_s),
            trend_horizon: Horizon::Auto,
        })
    }

    #[test]
    fn only_an_empty_trend_window_is_filled_and_never_at_now() {
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let step = Duration::from_secs(15);
        let (from, to) = backfill_window(&capacity(180), true, now, step).unwrap();
        assert_eq!((now - from).num_seconds(), 195);
        assert_eq!((now - to).num_seconds(), 1);
        // Observed already, or no trend: nothing.
        assert_eq!(backfill_window(&capacity(180), false, now, step), None);
        assert_eq!(backfill_window(&capacity(0), true, now, step), None);
    }
}
