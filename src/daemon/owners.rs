//! The owners' mailboxes. Each configured cluster has exactly one owner (its
//! worker task), the only writer of its operation; pause, resume and manual
//! orders reach it here, so the admin server never writes durable state and
//! a manual order shares the daemon's limiter, journal and operation.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::state::NodeKind;

/// What an operator asks of a cluster's owner.
#[derive(Debug)]
pub enum Command {
    /// Stop scaling; an operation stops before its next chunk.
    Pause(oneshot::Sender<Reply>),
    /// Scale again; closes the breaker, reconciles a stuck operation.
    Resume(oneshot::Sender<Reply>),
    /// One manual scale-out of `count` nodes of `kind`.
    ScaleOut {
        /// Task or core nodes.
        kind: NodeKind,
        /// 1 to 20.
        count: u32,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// One manual graceful scale-in of `count` task nodes, picked by the
    /// scale-in rules.
    ScaleIn {
        /// Nodes to give back.
        count: u32,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
}

impl Command {
    /// Answers the command with `reply` without serving it.
    pub fn refuse(self, answer: Reply) {
        let tx = match self {
            Command::Pause(tx) | Command::Resume(tx) => tx,
            Command::ScaleOut { reply, .. } | Command::ScaleIn { reply, .. } => reply,
        };
        let _ = tx.send(answer);
    }
}

/// A manual order, as the command line and the admin API ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
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
    pub fn request(&self) -> (&'static str, Value) {
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
pub struct Reply {
    /// 200, 409, 502, ...
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// A 200 answer.
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body }
    }

    /// An error answer with a message.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": message.into() }),
        }
    }
}

/// Every running owner's mailbox, by cluster id.
#[derive(Debug, Default)]
pub struct Owners {
    inner: Mutex<BTreeMap<String, mpsc::Sender<Command>>>,
}

impl Owners {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the owner of `id`, replacing a stopped one; returns its mailbox.
    pub fn register(&self, id: &str) -> mpsc::Receiver<Command> {
        let (tx, rx) = mpsc::channel(16);
        self.lock().insert(id.to_owned(), tx);
        rx
    }

    /// Removes the owner of `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The mailbox of `id`'s owner, if a cluster with that id is configured.
    pub fn get(&self, id: &str) -> Option<mpsc::Sender<Command>> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, mpsc::Sender<Command>>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
