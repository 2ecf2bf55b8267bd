//! The owners' mailboxes. Each configured cluster has exactly one owner (its
//! worker task), the only writer of its operation; pause, resume and manual
//! orders reach it here, so the admin server never writes durable state and
//! a manual order shares the daemon's limiter, journal and operation.
//!
//! An owner answers with an [`Answer`]: what it did, or a [`Refusal`] saying
//! why nothing was done. It knows nothing of HTTP; the admin server (and a
//! manual order placed without a daemon) turns answers into status codes
//! with [`super::admin::reply`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::state::NodeKind;

/// What an operator asks of a cluster's owner.
#[derive(Debug)]
pub(crate) enum Command {
    /// Stop scaling; an operation stops before its next chunk.
    Pause(oneshot::Sender<Answer>),
    /// Scale again; closes the breaker, reconciles a stuck operation.
    Resume(oneshot::Sender<Answer>),
    /// One manual scale-out of `count` nodes of `kind`.
    ScaleOut {
        /// Task or core nodes.
        kind: NodeKind,
        /// 1 to 20.
        count: u32,
        /// Where the answer goes.
        reply: oneshot::Sender<Answer>,
    },
    /// One manual graceful scale-in of `count` task nodes, picked by the
    /// scale-in rules.
    ScaleIn {
        /// Nodes to give back.
        count: u32,
        /// Where the answer goes.
        reply: oneshot::Sender<Answer>,
    },
}

impl Command {
    /// Refuses the command without serving it.
    pub(crate) fn refuse(self, refusal: Refusal) {
        let tx = match self {
            Command::Pause(tx) | Command::Resume(tx) => tx,
            Command::ScaleOut { reply, .. } | Command::ScaleIn { reply, .. } => reply,
        };
        let _ = tx.send(Err(refusal));
    }
}

/// An owner's answer to a command.
pub(crate) type Answer = Result<Accepted, Refusal>;

/// What an owner did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum Accepted {
    /// The cluster was paused or resumed.
    Switched {
        instance_id: String,
        /// Whether it is paused now.
        paused: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// `ScaleOutInstance` accepted a manual order.
    #[serde(rename_all = "PascalCase")]
    Ordered {
        instance_id: String,
        /// The flow to follow.
        flow_id: Option<i64>,
        /// Tencent's request id, for support cases.
        request_id: String,
        /// The idempotency token the order went out under.
        client_token: String,
        /// Billing deals, when prepaid.
        deal_names: Option<Vec<String>>,
        /// The bill, when prepaid.
        bill_id: Option<String>,
    },
    /// `TerminateClusterNodes` accepted a manual removal.
    #[serde(rename_all = "PascalCase")]
    Removed {
        instance_id: String,
        /// The flow to follow.
        flow_id: Option<i64>,
        /// Tencent's request id.
        request_id: String,
        /// The nodes given back.
        cvm_instance_ids: Vec<String>,
        /// Seconds each node drains before it goes.
        grace_down_time: u64,
        /// Nodes asked for but not eligible.
        shortfall: u32,
    },
}

/// Why an owner did nothing. The messages say what to do about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Refusal {
    /// The role changed to standby while the command was on its way.
    #[error("this daemon stands by; send the command to the leader (see /api/v1/status)")]
    Standby,
    /// An operator paused the cluster.
    #[error("{id} is paused; resume it before {what}")]
    Paused {
        id: String,
        /// What was asked ("ordering", "removing nodes").
        what: &'static str,
    },
    /// Every offering of the cluster refused an order not long ago.
    #[error(
        "every offering of {id} is unavailable (sold out or refused) until {until}; nothing was sent"
    )]
    OfferingsUnavailable {
        id: String,
        /// When the first one becomes available again.
        until: chrono::DateTime<chrono::Utc>,
    },
    /// One operation at a time per cluster.
    #[error("{id} has an operation running ({operation}); wait for it to end")]
    OperationRunning {
        id: String,
        /// The open operation's id.
        operation: String,
    },
    /// Without the running count, `max_task_nodes` cannot be checked.
    #[error(
        "{id}: the task-node count is unknown ({why}), so max_task_nodes cannot be checked; nothing was sent"
    )]
    MaxUncheckable {
        id: String,
        /// Why the count is unknown.
        why: String,
    },
    /// Without the running count, `min_task_nodes` cannot be checked.
    #[error("{id}: the task-node count is unknown; nothing was sent")]
    CountUnknown { id: String },
    /// The order would pass `max_task_nodes`.
    #[error(
        "ordering {count} task node(s) with {running} running would pass max_task_nodes {max}; nothing was sent (to go past it, raise max_task_nodes and reload)"
    )]
    AboveMax {
        /// Nodes asked for.
        count: u32,
        /// Nodes running.
        running: u32,
        max: u32,
    },
    /// The removal would go below `min_task_nodes`.
    #[error(
        "removing {count} of {running} task nodes would go below min_task_nodes {min}; nothing was sent"
    )]
    BelowMin {
        /// Nodes asked for.
        count: u32,
        /// Nodes running.
        running: u32,
        min: u32,
    },
    /// `nodes = "ours"` without a tag: no node is known to be ours.
    #[error(
        "{id} has nodes = \"ours\" but no owner_tag, so no node is known to be ours; set [clusters.scale_in] owner_tag, or nodes = \"any_task\"; nothing was sent"
    )]
    NoOwnerTag { id: String },
    /// Every node was passed over; the text says why, node by node.
    #[error("no task node is eligible for removal ({0}); nothing was sent")]
    NoneEligible(String),
    /// The node list (or the ResourceManager) could not be read.
    #[error("{0}; nothing was sent")]
    NodesUnreadable(String),
    /// `dry_run` is set: the request that would have been sent, masked.
    #[error(
        "dry_run is set (daemon.dry_run or the cluster's dry_run), so nothing is sent, manual orders included; this is the request that would have been sent"
    )]
    DryRun {
        /// The rendered request, signature and tokens masked.
        request: Box<crate::tencent::client::RenderedRequest>,
    },
    /// Pausing or resuming could not be written.
    #[error("{0}")]
    StateUnwritable(String),
    /// The intent could not be written, so nothing was sent.
    #[error("cannot write the state; nothing was sent")]
    IntentUnwritable,
    /// The operation machine sent nothing.
    #[error("nothing was sent")]
    NothingSent,
    /// The EMR API refused the request.
    #[error("{}", .0.error)]
    Rejected(Box<Rejection>),
}

/// An EMR API error answer to a manual order or removal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Rejection {
    /// The error, as the product words it.
    pub error: String,
    /// Its class (`busy`, `invalid`, ...).
    pub class: &'static str,
    /// Tencent's error code.
    #[serde(rename = "Code")]
    pub code: Option<String>,
    /// Tencent's request id.
    #[serde(rename = "RequestId")]
    pub request_id: Option<String>,
    /// The token an order went out under.
    #[serde(rename = "ClientToken", skip_serializing_if = "Option::is_none")]
    pub client_token: Option<String>,
    /// The nodes a removal named.
    #[serde(rename = "CvmInstanceIds", skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<String>>,
}

impl Rejection {
    /// The rejection of `error`.
    pub(crate) fn of(error: &crate::tencent::error::ApiError) -> Self {
        Self {
            error: error.to_string(),
            class: error.class().metric_label(),
            code: error.code().map(str::to_string),
            request_id: error.request_id().map(str::to_string),
            client_token: None,
            nodes: None,
        }
    }
}

/// A manual order, as the command line and the admin API ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    /// Add `count` nodes of `kind`.
    ScaleOut {
        /// Task or core nodes.
        kind: NodeKind,
        /// 1 to 20.
        count: u32,
    },
    /// Give back `count` task nodes.
    ScaleIn {
        /// Nodes.
        count: u32,
    },
}

impl Ask {
    /// The admin API path suffix and JSON body of this order.
    pub(crate) fn request(&self) -> (&'static str, Value) {
        match *self {
            Ask::ScaleOut {
                kind: NodeKind::Task,
                count,
            } => ("scale-out", serde_json::json!({ "task_count": count })),
            Ask::ScaleOut {
                kind: NodeKind::Core,
                count,
            } => ("scale-out", serde_json::json!({ "core_count": count })),
            Ask::ScaleIn { count } => ("scale-in", serde_json::json!({ "count": count })),
        }
    }
}

/// An owner's answer: an HTTP status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    /// 200, 409, 502, ...
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// A 200 answer.
    pub(crate) fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    /// An error answer with a message.
    pub(crate) fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": message.into() }),
        }
    }
}

/// Every running owner's mailbox, by cluster id.
#[derive(Debug, Default)]
pub(crate) struct Owners {
    inner: Mutex<BTreeMap<String, mpsc::Sender<Command>>>,
}

impl Owners {
    /// An empty registry.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Registers the owner of `id`, replacing a stopped one; returns its mailbox.
    pub(crate) fn register(&self, id: &str) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(16);
        self.lock().insert(id.to_owned(), tx);
        rx
    }

    /// Removes the owner of `id`.
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The mailbox of `id`'s owner, if a cluster with that id is configured.
    pub(crate) fn get(&self, id: &str) -> Option<mpsc::Sender<Command>> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, mpsc::Sender<Command>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
