//! The operation state machine: PURE. An operation is one decision carried
//! out (a scale-out of N nodes in chunks of at most 20, or a scale-in of a
//! named node list); [`step`] takes it, one
//! [`Event`] and the [`Env`] of that moment, and returns the next operation
//! and the [`Effect`]s to perform. It does no I/O and reads no clock: the
//! shell (`daemon::actuator`) performs the effects and feeds back what
//! happened as the next event.
//!
//! The one "may have executed" rule is [`verdict`]. An attempt whose outcome
//! is unknown keeps the intent: the operation waits until a capacity snapshot
//! taken after the doubt shows the cluster out of any flow, then re-sends
//! under the same token while it is young, or judges the chunk from the
//! task-node count. It never starts a second token for a chunk that may have
//! executed, and the chunk counts in budgets and the cooldown meanwhile.
//!
//! A scale-in follows the same rule with "the same token" read as "the same
//! node list", with no age limit: an unknown removal waits until a snapshot
//! after the doubt shows the cluster running (status 2), has the node list
//! read, and re-sends only the named nodes still listed and eligible, or
//! closes when none remain. It never names a node outside its list, counts
//! in no budget and starts no cluster cooldown.
//!
//! Effects come in a fixed order: changes to the cluster's state first, then
//! [`Effect::Save`], then at most one call ([`Effect::Send`] or
//! [`Effect::ReadFlow`]), then notes for metrics and logs, and
//! [`Effect::Close`] last. A shell that cannot save performs nothing after it.
//!
//! # Rules
//! - A scale-in is an operation of the same machine: its node list (`RemovalIntent`) is on
//!   disk before `TerminateClusterNodes` is sent, and the client never retries it (no
//!   token). "The same token" reads "the same node list", with no age limit: an unknown
//!   removal waits for a snapshot after the doubt with status 2, has the node list read
//!   (`ListNodes` -> `NodesListed`), and re-sends only the named nodes still listed and
//!   eligible, or closes when none remain. A first-attempt `ResourceNotFound` (a named node
//!   is gone) re-reads the list instead of counting as a config fault. Its flow deadline
//!   is `grace_period + flow_timeout`. It counts in no budget, records no arrival and
//!   starts no cluster cooldown; every operation's end starts the scale-in cooldown
//!   (`last_operation_end`).
//! - A success without FlowId is executed and never re-sent; it ends when a later
//!   snapshot shows the nodes, or shows the cluster scaling and then idle.
//! - One operation per cluster at a time. A decision above 20 nodes is one operation of
//!   ceil(N/20) chunks; chunk k+1 goes out only with a capacity snapshot taken after chunk
//!   k's flow ended (so its task-node count includes chunk k), and the cooldown starts
//!   after the last one. Nodes of the operation not yet running count as in flight.
//! - Rule cooldowns and schedule one-shots are marked when a chunk was accepted or may
//!   have executed, never before: a refused order does not use up a schedule window.
//! - Refusals: sold_out backs the cluster off for `sold_out_backoff`; invalid, auth and
//!   not_found back it off for its cooldown; a refused first chunk starts no cooldown.
//! - A chunk unfinished after `flow_timeout` (flow running, flow unreadable, outcome
//!   unknown) opens the breaker once. An unreadable flow shows on `/readyz` at once. A
//!   flow that ends -1 or -3 ends the operation and counts in `flows_failed_total`.
//! - Offerings: with offerings a chunk goes through the first one its operation has not
//!   seen refuse. A first-attempt refusal the offering causes (sold out, spec, zone or
//!   subnet refused: `tencent::emr::refuses_offering`) marks it unavailable and sends the
//!   same chunk to the next one at once, under a new token, in the same step and the same
//!   save; when none is left the cluster backs off as for sold_out. An unknown outcome
//!   never moves on.
//! - Pause stops an operation before its next chunk. Resume clears the breaker; a stuck
//!   operation is then judged from the task-node count and closed, never re-sent.

use chrono::{DateTime, Duration, Utc};

use crate::state::{ChunkIntent, NodeKind, Operation, OrderSource, RemovalIntent, RuleMarks};
use crate::tencent::ErrorClass;
use crate::tencent::client::token_young;
use crate::tencent::emr::status;

/// What the shell knows at the moment of a step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Env {
    /// Decision time (the injected clock).
    pub now: DateTime<Utc>,
    /// The wall clock, which alone judges a ClientToken's age.
    pub wall: DateTime<Utc>,
    /// A fresh ClientToken (value and wall-clock birth), used only if this
    /// step starts a new chunk.
    pub fresh_token: (String, DateTime<Utc>),
    /// How long a chunk may stay unfinished before the breaker opens.
    pub flow_timeout: Duration,
}

/// One capacity snapshot (`DescribeInstances`), as the machine needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Capacity {
    /// When it was taken (the injected clock).
    pub at: DateTime<Utc>,
    /// The cluster's status code.
    pub status: Option<i64>,
    /// `Config.TaskNodeSize`.
    pub task_nodes: Option<u32>,
}

impl Capacity {
    /// The cluster is in no flow: running, or its last scale-out failed.
    pub(crate) fn idle(&self) -> bool {
        matches!(
            self.status,
            Some(status::RUNNING) | Some(status::SCALE_OUT_FAILED)
        )
    }
}

/// Where a flow stands, as `DescribeClusterFlowStatusDetail` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// 0 init or 1 running, or a value this build does not know.
    Running,
    /// 2 done or 3 done with skips.
    Done,
    /// -1 failed.
    Failed,
    /// -3 blocked.
    Blocked,
}

/// What one `ScaleOutInstance` call came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The API accepted the order.
    Accepted {
        /// The flow that provisions the nodes, when the answer names one.
        flow_id: Option<i64>,
    },
    /// The call failed.
    Failed {
        /// The class of the last error.
        class: ErrorClass,
        /// Its API code, if any.
        code: Option<String>,
        /// Attempts of this call that reached the network (retries included).
        sent_attempts: u32,
        /// The client gave up because the token had grown too old.
        token_expired: bool,
    },
}

/// The judgement of one answer: the only place that decides whether an
/// order may have executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It executed.
    Executed,
    /// It certainly did not execute.
    NotExecuted,
    /// It may have executed: keep the intent, wait, reconcile.
    Unknown,
}

/// The one "may have executed" rule. `first_send` says this was the first
/// send ever started under the chunk's token.
pub(crate) fn verdict(answer: &Answer, first_send: bool) -> Verdict {
    let Answer::Failed {
        class,
        code,
        sent_attempts,
        token_expired,
    } = answer
    else {
        return Verdict::Executed;
    };
    if *token_expired {
        return Verdict::Unknown;
    }
    if *sent_attempts == 0 {
        // This call put nothing on the wire; an earlier send may have.
        return if first_send {
            Verdict::NotExecuted
        } else {
            Verdict::Unknown
        };
    }
    if *sent_attempts > 1 || !first_send {
        // An earlier attempt of this token left and its answer is unknown.
        return Verdict::Unknown;
    }
    match class {
        ErrorClass::Transport | ErrorClass::Timeout | ErrorClass::Internal => Verdict::Unknown,
        ErrorClass::Busy if code.as_deref() == Some("FailedOperation.DuplicateOrderNotAllowed") => {
            Verdict::Unknown
        }
        // InstanceInProcess on the first attempt of a new token: the running
        // flow was checked first and nothing executed.
        ErrorClass::Busy
        | ErrorClass::Throttled
        | ErrorClass::SoldOut
        | ErrorClass::Invalid
        | ErrorClass::Auth
        | ErrorClass::NotFound => Verdict::NotExecuted,
    }
}

/// A new operation, as decided by the policy or asked for by an operator.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Its id (a UUID).
    pub id: String,
    /// Why, for operators.
    pub reason: String,
    /// Who asked.
    pub source: OrderSource,
    /// Running task nodes when it was decided (from a fresh snapshot).
    pub task_nodes_before: u32,
    /// What it does.
    pub work: Work,
}

/// What a plan does: add nodes, or give named nodes back; never both.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Work {
    /// Order nodes, in chunks sent one after another.
    ScaleOut {
        /// Chunk sizes, each 1 to 20.
        chunks: Vec<u32>,
        /// Task or core nodes.
        kind: NodeKind,
        /// Rules to mark once the first chunk has ordered.
        marks: RuleMarks,
        /// The offerings task-node chunks may go through, in order of
        /// preference; empty: ScaleOutInstance with the cluster's spec.
        offerings: Vec<String>,
    },
    /// Give back these task nodes.
    ScaleIn(RemovalIntent),
}

/// Everything that can happen to an operation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    /// The policy or an operator decided; starts an operation when none runs.
    Decided(Plan),
    /// The `ScaleOutInstance` call of the current chunk returned.
    Answered(Answer),
    /// The current chunk's flow was read.
    FlowRead(Flow),
    /// The current chunk's flow could not be read.
    FlowUnreadable {
        /// Why, for operators.
        error: String,
    },
    /// The owner's periodic step, with the latest fresh capacity snapshot.
    Tick(Option<Capacity>),
    /// An operator paused the cluster.
    Pause,
    /// An operator resumed the cluster.
    Resume,
    /// The state was loaded after a restart (or a takeover).
    Restart,
    /// A scale-in's node list was read: the machine ids now listed that are
    /// still eligible for removal.
    NodesListed {
        /// Listed and eligible machine ids.
        listed: Vec<String>,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Every chunk's flow finished.
    Completed,
    /// The API refused a chunk; nothing of it executed.
    Refused(ErrorClass),
    /// A flow ended failed (-1) or blocked (-3).
    FlowFailed(i64),
    /// A chunk whose outcome was unknown was judged from the task-node count
    /// not to have executed.
    NotExecuted,
    /// Stopped by a pause before its next chunk.
    Stopped,
    /// A stuck operation was reconciled and closed on resume.
    Resolved,
}

impl Ending {
    /// A short label for logs and status.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Refused(_) => "refused",
            Ending::FlowFailed(_) => "flow_failed",
            Ending::NotExecuted => "not_executed",
            Ending::Stopped => "stopped",
            Ending::Resolved => "resolved",
        }
    }
}

/// Something the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Effect {
    /// Count an order in budgets (once per token).
    CountOrder {
        /// The chunk's token.
        token: String,
        nodes: u32,
    },
    /// A counted order was judged not executed: take it out of the budgets.
    UncountOrder {
        /// The chunk's token.
        token: String,
    },
    /// Apply the operation's rule marks (rule cooldowns, schedule one-shots).
    MarkRules(RuleMarks),
    /// Start the cluster cooldown now.
    StartCooldown,
    /// Back off after a refusal of this class (sold out, or a config fault).
    Backoff(ErrorClass),
    /// This offering refused a chunk outright: unavailable for
    /// `sold_out_backoff`, and the chunk moves on to the next one.
    OfferingRefused {
        /// The offering.
        offering: String,
        /// The API's code.
        code: String,
    },
    /// Open the cluster's breaker.
    OpenBreaker {
        /// Why.
        reason: String,
        /// The flow involved, if any; the breaker closes when it ends.
        flow_id: Option<i64>,
    },
    /// The flow that may have opened the breaker has ended.
    FlowEnded(i64),
    /// Nodes arrived now; they count against the demand until `settle` passed.
    Arrived(u32),
    /// Write the operation and the cluster's state before anything below.
    Save,
    /// Send `ScaleOutInstance` for this chunk under this token.
    Send {
        /// The ClientToken.
        token: String,
        /// Its wall-clock birth.
        token_created_at: DateTime<Utc>,
        /// Nodes.
        nodes: u32,
        /// Task or core.
        kind: NodeKind,
        /// 1-based chunk number, and the number of chunks.
        chunk: (usize, usize),
        /// Whether this re-sends a token sent before.
        resend: bool,
        /// The offering (ScaleOutCluster); `None`: ScaleOutInstance.
        offering: Option<String>,
    },
    /// Read the flow.
    ReadFlow(i64),
    /// Send `TerminateClusterNodes` for these nodes (graceful).
    Terminate {
        /// Machine ids, never empty.
        nodes: Vec<String>,
        /// `GraceDownTime`, seconds.
        grace_secs: u64,
        /// Whether this re-sends a removal sent before.
        resend: bool,
    },
    /// Read the cluster's node list (for a scale-in) and answer with
    /// [`Event::NodesListed`].
    ListNodes,
    /// A removal of this many nodes was accepted (metric).
    Removed(u32),
    /// A flow ended failed or blocked (metric).
    FlowFailed(i64),
    /// A chunk was judged from the task-node count (doubt metric, log).
    Judged {
        token: String,
        /// Whether it was judged executed.
        executed: bool,
        /// The count it was judged from.
        running: u32,
    },
    /// The operation ended.
    Close(Ending),
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// The operation after the event; `None` once closed (or when none ran).
    pub op: Option<Operation>,
    /// What to do, in order.
    pub effects: Vec<Effect>,
}

/// A phase of an operation, derived from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// No chunk is current: the next one waits for a fresh capacity snapshot.
    BetweenChunks,
    /// A send was started and its answer has not been seen.
    Sending,
    /// Accepted with a FlowId: the flow is followed.
    InFlow,
    /// Accepted without a FlowId: followed through `DescribeInstances`.
    AcceptedNoFlow,
    /// The outcome is unknown: waiting for the cluster to leave its flow.
    Unknown,
}

/// The phase of `op`.
pub(crate) fn phase(op: &Operation) -> Phase {
    match &op.current {
        None => Phase::BetweenChunks,
        Some(c) if c.flow_id.is_some() => Phase::InFlow,
        Some(c) if c.accepted => Phase::AcceptedNoFlow,
        Some(c) if c.unknown_since.is_some() => Phase::Unknown,
        Some(_) => Phase::Sending,
    }
}

/// Whether `op` is stuck: its chunk outlived `flow_timeout`.
pub(crate) fn is_stuck(op: &Operation) -> bool {
    op.current.as_ref().is_some_and(|c| c.stuck)
}

/// Advances `op` by `event`.
pub(crate) fn step(op: Option<Operation>, event: Event, env: &Env) -> Step {
    match (op, event) {
        (None, Event::Decided(plan)) => start(plan, env),
        (None, _) => Step {
            op: None,
            effects: vec![],
        },
        // One operation per cluster: a second decision waits.
        (Some(op), Event::Decided(_)) => keep(op, vec![]),
        (Some(op), Event::Answered(answer)) => answered(op, answer, env),
        (Some(op), Event::FlowRead(flow)) => flow_read(op, flow, env),
        (Some(op), Event::FlowUnreadable { error }) => flow_unreadable(op, error, env),
        (Some(op), Event::Tick(capacity)) => tick(op, capacity, env),
        (Some(op), Event::Pause) => pause(op),
        (Some(op), Event::Resume) => resume(op),
        (Some(op), Event::Restart) => restart(op, env),
        (Some(op), Event::NodesListed { listed }) => nodes_listed(op, listed, env),
    }
}

fn keep(op: Operation, effects: Vec<Effect>) -> Step {
    Step {
        op: Some(op),
        effects,
    }
}

fn start(plan: Plan, env: &Env) -> Step {
    let (chunks, kind, marks, offerings) = match plan.work {
        Work::ScaleIn(removal) => {
            return start_removal(
                plan.id,
                plan.reason,
                plan.source,
                plan.task_nodes_before,
                removal,
                env,
            );
        }
        Work::ScaleOut {
            chunks,
            kind,
            marks,
            offerings,
        } => (chunks, kind, marks, offerings),
    };
    let chunks: Vec<u32> = chunks.into_iter().filter(|n| *n > 0).collect();
    let op = Operation {
        id: plan.id,
        created_at: env.now,
        chunks,
        next_chunk: 0,
        task_nodes_before: plan.task_nodes_before,
        reason: plan.reason,
        current: None,
        completed_nodes: 0,
        kind,
        source: plan.source,
        counted_nodes: 0,
        stopping: false,
        resolve: false,
        wait_capacity_after: None,
        marks,
        removal: None,
        offerings,
        refused_offerings: Vec::new(),
    };
    if op.chunks.is_empty() {
        return Step {
            op: None,
            effects: vec![Effect::Close(Ending::Completed)],
        };
    }
    let before = op.task_nodes_before;
    send_next(op, before, env)
}

/// Prepares the next chunk's intent and sends it.
fn send_next(mut op: Operation, task_nodes_before: u32, env: &Env) -> Step {
    let Some(&nodes) = op.chunks.get(op.next_chunk) else {
        return close(op, Ending::Completed, vec![]);
    };
    let offering = op.next_offering().map(str::to_string);
    if offering.is_none() && !op.offerings.is_empty() {
        // Every offering refused this operation outright.
        return close(
            op,
            Ending::Refused(ErrorClass::SoldOut),
            vec![Effect::Backoff(ErrorClass::SoldOut)],
        );
    }
    let (token, born) = env.fresh_token.clone();
    op.current = Some(ChunkIntent {
        client_token: token.clone(),
        token_created_at: born,
        nodes,
        task_nodes_before,
        sends: 1,
        first_sent_at: Some(env.now),
        offering: offering.clone(),
        ..ChunkIntent::default()
    });
    op.wait_capacity_after = None;
    let chunk = (op.next_chunk + 1, op.chunks.len());
    let kind = op.kind;
    keep(
        op,
        vec![
            Effect::Save,
            Effect::Send {
                token,
                token_created_at: born,
                nodes,
                kind,
                chunk,
                resend: false,
                offering,
            },
        ],
    )
}

/// Re-sends the current chunk under its own token.
fn resend(mut op: Operation) -> Step {
    let chunk = (op.next_chunk + 1, op.chunks.len());
    let kind = op.kind;
    let Some(c) = op.current.as_mut() else {
        return keep(op, vec![]);
    };
    c.sends += 1;
    c.unknown_since = None;
    let effect = Effect::Send {
        token: c.client_token.clone(),
        token_created_at: c.token_created_at,
        nodes: c.nodes,
        kind,
        chunk,
        resend: true,
        offering: c.offering.clone(),
    };
    keep(op, vec![Effect::Save, effect])
}

/// Ends `op`; the cooldown starts if anything was ordered (a scale-in
/// starts only the scale-in cooldown, which the shell keeps).
fn close(op: Operation, outcome: Ending, mut effects: Vec<Effect>) -> Step {
    if op.removal.is_none() && (op.counted_nodes > 0 || op.completed_nodes > 0) {
        effects.push(Effect::StartCooldown);
    }
    effects.push(Effect::Save);
    effects.push(Effect::Close(outcome));
    Step { op: None, effects }
}

/// Counts the current chunk in budgets and marks the rules, once each.
fn count(op: &mut Operation, effects: &mut Vec<Effect>) {
    if op.removal.is_some() {
        // Budgets count additions only.
        return;
    }
    let kind = op.kind;
    let Some(c) = op.current.as_mut() else {
        return;
    };
    if !c.counted {
        c.counted = true;
        let nodes = task_nodes_of(kind, c.nodes);
        op.counted_nodes += c.nodes;
        effects.push(Effect::CountOrder {
            token: c.client_token.clone(),
            nodes,
        });
    }
    if !op.marks.applied {
        op.marks.applied = true;
        effects.push(Effect::MarkRules(op.marks.clone()));
    }
}

/// Task nodes a chunk adds: core-node orders add none.
fn task_nodes_of(kind: NodeKind, nodes: u32) -> u32 {
    match kind {
        NodeKind::Task => nodes,
        NodeKind::Core => 0,
    }
}

/// Whether the count shows the chunk's nodes. Only task nodes are counted,
/// so a core-node chunk is never confirmed this way.
fn delivered(kind: NodeKind, c: &ChunkIntent, running: u32) -> bool {
    kind == NodeKind::Task && running >= c.task_nodes_before.saturating_add(c.nodes)
}

fn answered(mut op: Operation, answer: Answer, env: &Env) -> Step {
    if op.removal.is_some() {
        return answered_removal(op, answer, env);
    }
    let Some(c) = op.current.as_ref().filter(|_| phase(&op) == Phase::Sending) else {
        // A late or duplicate answer: the chunk is already judged.
        return keep(op, vec![]);
    };
    let first_send = c.sends <= 1;
    let mut effects = Vec::new();
    match verdict(&answer, first_send) {
        Verdict::Executed => {
            let flow_id = match answer {
                Answer::Accepted { flow_id } => flow_id,
                Answer::Failed { .. } => None,
            };
            count(&mut op, &mut effects);
            if let Some(c) = op.current.as_mut() {
                c.accepted = true;
                c.flow_id = flow_id;
                c.sent_at = Some(env.now);
                c.unknown_since = None;
            }
            effects.push(Effect::Save);
            keep(op, effects)
        }
        Verdict::Unknown => {
            count(&mut op, &mut effects);
            mark_unknown(&mut op, &answer, env);
            effects.push(Effect::Save);
            keep(op, effects)
        }
        Verdict::NotExecuted => {
            let (class, code) = match answer {
                Answer::Failed { class, code, .. } => (class, code),
                Answer::Accepted { .. } => (ErrorClass::Internal, None),
            };
            let refused = op.current.take();
            // An offering that cannot be had now: the same chunk goes to
            // the next one at once, under a new token, in this step. The
            // refusal and the new intent are written in one save.
            if let (Some(offering), Some(code)) =
                (refused.as_ref().and_then(|c| c.offering.clone()), code)
                && crate::tencent::emr::refuses_offering(&code)
            {
                op.refused_offerings.push(offering.clone());
                effects.push(Effect::OfferingRefused { offering, code });
                if op.next_offering().is_some() {
                    let before = refused.map_or(op.task_nodes_before, |c| c.task_nodes_before);
                    let next = send_next(op, before, env);
                    effects.extend(next.effects);
                    return Step {
                        op: next.op,
                        effects,
                    };
                }
                // Every offering refused: the cluster backs off as for
                // sold_out, whatever the last one said.
                effects.push(Effect::Backoff(ErrorClass::SoldOut));
                return close(op, Ending::Refused(class), effects);
            }
            if !matches!(class, ErrorClass::Busy | ErrorClass::Throttled) {
                effects.push(Effect::Backoff(class));
            }
            close(op, Ending::Refused(class), effects)
        }
    }
}

/// Marks the current chunk (or removal) of unknown outcome. A re-send
/// refused outright tells nothing about the first send: it is never re-sent,
/// only judged from the cluster (or, for a removal, its node list).
fn mark_unknown(op: &mut Operation, answer: &Answer, env: &Env) {
    let Some(c) = op.current.as_mut() else {
        return;
    };
    c.unknown_since = Some(env.now);
    if let Answer::Failed { class, .. } = answer
        && matches!(
            class,
            ErrorClass::SoldOut | ErrorClass::Invalid | ErrorClass::Auth | ErrorClass::NotFound
        )
    {
        c.judge_only = true;
    }
}

/// The chunk ended with its nodes delivered: the next chunk, or the end.
fn chunk_done(mut op: Operation, env: &Env, mut effects: Vec<Effect>) -> Step {
    let Some(c) = op.current.take() else {
        return keep(op, effects);
    };
    if let Some(flow) = c.flow_id {
        effects.push(Effect::FlowEnded(flow));
    }
    if op.removal.is_some() {
        op.completed_nodes += c.nodes;
        let outcome = if op.resolve {
            Ending::Resolved
        } else {
            Ending::Completed
        };
        return close(op, outcome, effects);
    }
    effects.push(Effect::Arrived(c.nodes));
    op.completed_nodes += c.nodes;
    op.next_chunk += 1;
    if op.next_chunk >= op.chunks.len() {
        return close(op, Ending::Completed, effects);
    }
    if op.stopping {
        return close(op, Ending::Stopped, effects);
    }
    if op.resolve {
        return close(op, Ending::Resolved, effects);
    }
    op.wait_capacity_after = Some(env.now);
    effects.push(Effect::Save);
    keep(op, effects)
}

fn flow_read(mut op: Operation, flow: Flow, env: &Env) -> Step {
    let Some(flow_id) = op.current.as_ref().and_then(|c| c.flow_id) else {
        return keep(op, vec![]);
    };
    match flow {
        Flow::Done => chunk_done(op, env, vec![]),
        Flow::Failed | Flow::Blocked => {
            op.current = None;
            close(
                op,
                Ending::FlowFailed(flow_id),
                vec![Effect::FlowEnded(flow_id), Effect::FlowFailed(flow_id)],
            )
        }
        Flow::Running => {
            let mut changed = op
                .current
                .as_mut()
                .is_some_and(|c| c.flow_unreadable.take().is_some());
            let mut effects = Vec::new();
            if let Some(b) = timed_out(&mut op, env, || format!("flow {flow_id} still running")) {
                effects.push(b);
                changed = true;
            }
            if changed {
                effects.push(Effect::Save);
            }
            keep(op, effects)
        }
    }
}

fn flow_unreadable(mut op: Operation, error: String, env: &Env) -> Step {
    let Some(flow_id) = op.current.as_ref().and_then(|c| c.flow_id) else {
        return keep(op, vec![]);
    };
    let mut changed = false;
    if let Some(c) = op.current.as_mut()
        && c.flow_unreadable.as_deref() != Some(error.as_str())
    {
        c.flow_unreadable = Some(error.clone());
        changed = true;
    }
    let mut effects = Vec::new();
    if let Some(b) = timed_out(&mut op, env, || {
        format!("flow {flow_id} cannot be read: {error}")
    }) {
        effects.push(b);
        changed = true;
    }
    if changed {
        effects.push(Effect::Save);
    }
    keep(op, effects)
}

/// The breaker to open, once, when the current chunk outlived `flow_timeout`.
fn timed_out(op: &mut Operation, env: &Env, why: impl FnOnce() -> String) -> Option<Effect> {
    // A scale-in's flow drains its nodes first: its deadline is
    // grace_period + flow_timeout.
    let grace = op.removal.as_ref().map_or(Duration::zero(), grace_of);
    let c = op.current.as_mut()?;
    let since = c.first_sent_at.or(c.sent_at).unwrap_or(op.created_at);
    let deadline = env
        .flow_timeout
        .checked_add(&grace)
        .unwrap_or(Duration::MAX);
    if c.stuck || env.now - since <= deadline {
        return None;
    }
    c.stuck = true;
    let secs = (env.now - since).num_seconds();
    Some(Effect::OpenBreaker {
        reason: format!("{} after {secs}s (flow_timeout)", why()),
        flow_id: c.flow_id,
    })
}

/// `timed_out` followed by its save, for steps that change nothing else.
fn timeout_effects(op: &mut Operation, env: &Env, why: impl FnOnce() -> String) -> Vec<Effect> {
    timed_out(op, env, why).map_or_else(Vec::new, |b| vec![b, Effect::Save])
}

fn tick(mut op: Operation, capacity: Option<Capacity>, env: &Env) -> Step {
    if op.removal.is_some() {
        return tick_removal(op, capacity, env);
    }
    match phase(&op) {
        Phase::BetweenChunks => {
            if op.stopping {
                return close(op, Ending::Stopped, vec![]);
            }
            if op.resolve {
                return close(op, Ending::Resolved, vec![]);
            }
            let after = op.wait_capacity_after;
            match capacity {
                Some(Capacity {
                    at,
                    status,
                    task_nodes: Some(running),
                }) if Capacity {
                    at,
                    status,
                    task_nodes: Some(running),
                }
                .idle()
                    && after.is_none_or(|t| at > t) =>
                {
                    send_next(op, running, env)
                }
                _ => keep(op, vec![]),
            }
        }
        Phase::Sending => {
            // The answer of a started send was never seen (the shell lost
            // it): it may have executed.
            let mut effects = Vec::new();
            count(&mut op, &mut effects);
            if let Some(c) = op.current.as_mut() {
                c.unknown_since = Some(env.now);
            }
            effects.push(Effect::Save);
            keep(op, effects)
        }
        Phase::InFlow => {
            if op.resolve {
                return judge(op, capacity, env);
            }
            let flow_id = op.current.as_ref().and_then(|c| c.flow_id).unwrap_or(0);
            let mut effects = timeout_effects(&mut op, env, || format!("flow {flow_id} not done"));
            effects.push(Effect::ReadFlow(flow_id));
            keep(op, effects)
        }
        Phase::AcceptedNoFlow => {
            let why = || "accepted order without FlowId not yet seen on the cluster".to_string();
            let kind = op.kind;
            let (Some(cap), Some(c)) = (capacity, op.current.as_mut()) else {
                let effects = timeout_effects(&mut op, env, why);
                return keep(op, effects);
            };
            let after = c.sent_at.is_none_or(|t| cap.at > t);
            let mut changed = false;
            if after && cap.status == Some(status::SCALING_OUT) && !c.seen_busy {
                c.seen_busy = true;
                changed = true;
            }
            let reached = cap.task_nodes.is_some_and(|n| delivered(kind, c, n));
            if after && (reached || (c.seen_busy && cap.idle())) {
                return chunk_done(op, env, vec![]);
            }
            if op.resolve {
                return judge(op, Some(cap), env);
            }
            let mut effects = Vec::new();
            if let Some(b) = timed_out(&mut op, env, why) {
                effects.push(b);
                changed = true;
            }
            if changed {
                effects.push(Effect::Save);
            }
            keep(op, effects)
        }
        Phase::Unknown => {
            let Some(c) = op.current.as_ref() else {
                return keep(op, vec![]);
            };
            let since = c.unknown_since.unwrap_or(env.now);
            let idle_after = capacity.is_some_and(|cap| cap.idle() && cap.at > since);
            if !idle_after {
                let effects = timeout_effects(&mut op, env, || {
                    "order outcome unknown; the cluster has not left its flow".to_string()
                });
                return keep(op, effects);
            }
            let young = token_young(c.token_created_at, env.wall);
            if young && !c.judge_only && !op.stopping && !op.resolve {
                resend(op)
            } else {
                judge(op, capacity, env)
            }
        }
    }
}

/// Judges the current chunk from the task-node count of an idle cluster
/// and carries on; waits while there is no such count.
fn judge(mut op: Operation, capacity: Option<Capacity>, env: &Env) -> Step {
    let Some(running) = capacity.filter(Capacity::idle).and_then(|c| c.task_nodes) else {
        return keep(op, vec![]);
    };
    let Some(c) = op.current.clone() else {
        return keep(op, vec![]);
    };
    // Only task nodes can be counted: a core-node chunk in doubt is taken
    // as executed, so it keeps counting in the cooldown.
    let executed = op.kind == NodeKind::Core || delivered(op.kind, &c, running);
    let mut effects = vec![Effect::Judged {
        token: c.client_token.clone(),
        executed,
        running,
    }];
    if executed {
        count(&mut op, &mut effects);
        return chunk_done(op, env, effects);
    }
    if let Some(flow) = c.flow_id {
        effects.push(Effect::FlowEnded(flow));
    }
    if c.counted {
        effects.push(Effect::UncountOrder {
            token: c.client_token.clone(),
        });
        op.counted_nodes = op.counted_nodes.saturating_sub(c.nodes);
    }
    op.current = None;
    let outcome = if op.resolve {
        Ending::Resolved
    } else {
        Ending::NotExecuted
    };
    close(op, outcome, effects)
}

/// A removal's grace period; an absurd value from a damaged state file
/// saturates instead of overflowing.
fn grace_of(r: &RemovalIntent) -> Duration {
    i64::try_from(r.grace_secs)
        .ok()
        .and_then(Duration::try_seconds)
        .unwrap_or(Duration::MAX)
}

fn start_removal(
    id: String,
    reason: String,
    source: OrderSource,
    task_nodes_before: u32,
    mut removal: RemovalIntent,
    env: &Env,
) -> Step {
    let mut seen = Vec::new();
    removal.nodes.retain(|n| {
        !n.trim().is_empty() && !seen.contains(n) && {
            seen.push(n.clone());
            true
        }
    });
    removal.gone.clear();
    let nodes = removal.nodes.clone();
    let count = nodes.len() as u32;
    let grace_secs = removal.grace_secs;
    let op = Operation {
        id,
        created_at: env.now,
        chunks: vec![count],
        next_chunk: 0,
        task_nodes_before,
        reason,
        current: Some(ChunkIntent {
            client_token: String::new(),
            token_created_at: env.wall,
            nodes: count,
            task_nodes_before,
            sends: 1,
            first_sent_at: Some(env.now),
            ..ChunkIntent::default()
        }),
        source,
        removal: Some(removal),
        ..Operation::default()
    };
    if nodes.is_empty() {
        return Step {
            op: None,
            effects: vec![Effect::Close(Ending::Completed)],
        };
    }
    keep(
        op,
        vec![
            Effect::Save,
            Effect::Terminate {
                nodes,
                grace_secs,
                resend: false,
            },
        ],
    )
}

fn answered_removal(mut op: Operation, answer: Answer, env: &Env) -> Step {
    let Some(c) = op.current.as_ref().filter(|_| phase(&op) == Phase::Sending) else {
        return keep(op, vec![]);
    };
    let first_send = c.sends <= 1;
    match verdict(&answer, first_send) {
        Verdict::Executed => {
            let flow_id = match answer {
                Answer::Accepted { flow_id } => flow_id,
                Answer::Failed { .. } => None,
            };
            let mut effects = Vec::new();
            if let Some(c) = op.current.as_mut() {
                c.accepted = true;
                c.flow_id = flow_id;
                c.sent_at = Some(env.now);
                c.unknown_since = None;
                effects.push(Effect::Removed(c.nodes));
            }
            effects.push(Effect::Save);
            keep(op, effects)
        }
        Verdict::Unknown => {
            mark_unknown(&mut op, &answer, env);
            keep(op, vec![Effect::Save])
        }
        Verdict::NotExecuted => {
            let class = match answer {
                Answer::Failed { class, .. } => class,
                Answer::Accepted { .. } => ErrorClass::Internal,
            };
            if class == ErrorClass::NotFound {
                // A named node is gone: never a config fault. Read the list
                // again and re-send the rest.
                if let Some(c) = op.current.as_mut() {
                    c.unknown_since = Some(env.now);
                }
                return keep(op, vec![Effect::Save]);
            }
            // No backoff: a refused scale-in must never delay a scale-out;
            // the scale-in cooldown spaces the next attempt.
            op.current = None;
            close(op, Ending::Refused(class), vec![])
        }
    }
}

fn tick_removal(mut op: Operation, capacity: Option<Capacity>, env: &Env) -> Step {
    // Out of any flow (running, or its last scale-out failed), in a
    // snapshot taken after `t`.
    let idle_after = |t: Option<DateTime<Utc>>| {
        capacity.is_some_and(|cap| cap.idle() && t.is_none_or(|t| cap.at > t))
    };
    match phase(&op) {
        Phase::BetweenChunks => close(op, Ending::Completed, vec![]),
        Phase::Sending => {
            // The answer of a started send was never seen: it may have executed.
            if let Some(c) = op.current.as_mut() {
                c.unknown_since = Some(env.now);
            }
            keep(op, vec![Effect::Save])
        }
        Phase::InFlow => {
            let flow_id = op.current.as_ref().and_then(|c| c.flow_id).unwrap_or(0);
            let mut effects = timeout_effects(&mut op, env, || format!("flow {flow_id} not done"));
            if op.resolve {
                effects.push(Effect::ListNodes);
            } else {
                effects.push(Effect::ReadFlow(flow_id));
            }
            keep(op, effects)
        }
        Phase::AcceptedNoFlow => {
            let why = || "accepted removal without FlowId not yet seen to end".to_string();
            let grace = op.removal.as_ref().map_or(Duration::zero(), grace_of);
            let mut changed = false;
            let (sent_at, seen_busy) = op
                .current
                .as_ref()
                .map_or((None, false), |c| (c.sent_at, c.seen_busy));
            if let (Some(cap), Some(c)) = (capacity, op.current.as_mut())
                && sent_at.is_none_or(|t| cap.at > t)
                && cap.status.is_some_and(|s| s != status::RUNNING)
                && !c.seen_busy
            {
                c.seen_busy = true;
                changed = true;
            }
            let drained = sent_at.is_some_and(|t| env.now - t >= grace);
            let mut effects = Vec::new();
            if let Some(b) = timed_out(&mut op, env, why) {
                effects.push(b);
                changed = true;
            }
            if changed {
                effects.push(Effect::Save);
            }
            if op.resolve || (idle_after(sent_at) && (seen_busy || drained)) {
                effects.push(Effect::ListNodes);
            }
            keep(op, effects)
        }
        Phase::Unknown => {
            let since = op.current.as_ref().and_then(|c| c.unknown_since);
            let mut effects = timeout_effects(&mut op, env, || {
                "removal outcome unknown and not yet settled".to_string()
            });
            // Resume settles a stuck removal whatever the status.
            if op.resolve || idle_after(since) {
                effects.push(Effect::ListNodes);
            }
            keep(op, effects)
        }
    }
}

/// The node list came back: close what is done, re-send what remains.
fn nodes_listed(mut op: Operation, listed: Vec<String>, env: &Env) -> Step {
    let ph = phase(&op);
    let Some(removal) = op.removal.as_mut() else {
        return keep(op, vec![]);
    };
    let wanted =
        matches!(ph, Phase::Unknown | Phase::AcceptedNoFlow) || (ph == Phase::InFlow && op.resolve);
    if !wanted {
        return keep(op, vec![]);
    }
    let remaining = removal.remaining();
    let (still, gone): (Vec<String>, Vec<String>) =
        remaining.into_iter().partition(|n| listed.contains(n));
    removal.gone.extend(gone);
    let grace_secs = removal.grace_secs;
    if ph != Phase::Unknown {
        // Accepted: it executed; whatever is still listed waits for the
        // next decision.
        return chunk_done(op, env, vec![]);
    }
    // Never re-send once refused outright or past its deadline (the breaker
    // is open): the list read decides, and the operation closes.
    let judge_only = op.current.as_ref().is_some_and(|c| c.judge_only || c.stuck);
    if still.is_empty() {
        return chunk_done(op, env, vec![]);
    }
    if op.stopping || op.resolve || judge_only {
        let flow = op.current.take().and_then(|c| c.flow_id);
        let effects: Vec<Effect> = flow.map(Effect::FlowEnded).into_iter().collect();
        let outcome = if op.stopping {
            Ending::Stopped
        } else if op.resolve {
            Ending::Resolved
        } else {
            Ending::NotExecuted
        };
        return close(op, outcome, effects);
    }
    if let Some(c) = op.current.as_mut() {
        c.nodes = still.len() as u32;
        c.sends += 1;
        c.unknown_since = None;
    }
    keep(
        op,
        vec![
            Effect::Save,
            Effect::Terminate {
                nodes: still,
                grace_secs,
                resend: true,
            },
        ],
    )
}

fn pause(mut op: Operation) -> Step {
    if phase(&op) == Phase::BetweenChunks {
        return close(op, Ending::Stopped, vec![]);
    }
    if op.stopping {
        return keep(op, vec![]);
    }
    op.stopping = true;
    keep(op, vec![Effect::Save])
}

fn resume(mut op: Operation) -> Step {
    let mut changed = op.stopping;
    op.stopping = false;
    if is_stuck(&op) && !op.resolve {
        op.resolve = true;
        changed = true;
    }
    keep(op, if changed { vec![Effect::Save] } else { vec![] })
}

fn restart(mut op: Operation, env: &Env) -> Step {
    match phase(&op) {
        Phase::Sending => {
            // It may have left before the process stopped.
            let mut effects = Vec::new();
            count(&mut op, &mut effects);
            if let Some(c) = op.current.as_mut() {
                c.unknown_since = Some(env.now);
                c.sends = c.sends.max(1);
            }
            effects.push(Effect::Save);
            keep(op, effects)
        }
        _ => keep(op, vec![]),
    }
}

#[cfg(test)]
mod tests;
