//! What the daemon did, and why: every order, removal, refusal by the API,
//! breaker trip, conflict change, pause, resume and loss of nodes is an
//! [`Event`], kept in memory (newest `history_max`), appended to a [`Log`]
//! (`state_dir/history.jsonl`, or etcd with `[ha]`) and offered to the
//! [`Listener`]s (the webhooks).
//!
//! # Rules
//! - Recording never waits: [`History::record`] pushes to memory and hands the
//!   event to one writer task, which appends it to the log and then offers it
//!   to the listeners. A slow disk, etcd or webhook never delays a decision.
//! - An order or removal is one event however often it is told: an event
//!   with the same kind and ClientToken (or, without a token, FlowId) as one
//!   already kept is dropped. A daemon killed after the API accepted an order
//!   but before it wrote so re-sends under the same token on restart; the
//!   second acceptance is not a second event.
//! - A standby (with `[ha]`) records nothing and reads the leader's events from
//!   etcd, at most every [`FOLLOW_EVERY`].
//! - The log is written after the event happened and before it is offered:
//!   an event lost to a crash between the two is never notified without
//!   being kept; one lost before the append is neither.

pub mod log;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use log::{HistoryError, Log};

/// The default of `[daemon] history_max`.
pub const DEFAULT_MAX: usize = 10_000;

/// The `offering` of an order through the cluster's own spec
/// (ScaleOutInstance).
pub const DEFAULT_OFFERING: &str = "default";

/// How often a standby re-reads the leader's events, at most.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(2);

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The API accepted an order of nodes.
    ScaleOut,
    /// The API accepted a removal of nodes.
    ScaleIn,
    /// The API refused an order or a removal; nothing of it executed.
    Refused,
    /// The cluster's breaker opened.
    Breaker,
    /// Tencent's own auto-scaling started or stopped holding the cluster.
    Conflict,
    /// An operator paused the cluster.
    Pause,
    /// An operator resumed the cluster.
    Resume,
    /// Task nodes disappeared without a removal of ours.
    LostNodes,
}

impl Kind {
    /// Every kind, in the contract's order.
    pub const ALL: [Kind; 8] = [
        Kind::ScaleOut,
        Kind::ScaleIn,
        Kind::Refused,
        Kind::Breaker,
        Kind::Conflict,
        Kind::Pause,
        Kind::Resume,
        Kind::LostNodes,
    ];

    /// The name in events, config and the command line.
    pub fn label(self) -> &'static str {
        match self {
            Kind::ScaleOut => "scale_out",
            Kind::ScaleIn => "scale_in",
            Kind::Refused => "refused",
            Kind::Breaker => "breaker",
            Kind::Conflict => "conflict",
            Kind::Pause => "pause",
            Kind::Resume => "resume",
            Kind::LostNodes => "lost_nodes",
        }
    }

    /// The kind named `label`.
    pub fn parse(label: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.label() == label)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One thing the daemon did, as `/api/v1/history`, `history --json`, the log
/// and the `json` webhook show it: every field is always present (null when
/// it does not apply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// When.
    pub at: DateTime<Utc>,
    /// The cluster.
    pub instance_id: String,
    /// What.
    pub kind: Kind,
    /// Nodes ordered, removed or lost.
    #[serde(default)]
    pub nodes: Option<u32>,
    /// The offering an order went through (`"default"`: the cluster's own
    /// spec through ScaleOutInstance).
    #[serde(default)]
    pub offering: Option<String>,
    /// The order's ClientToken.
    #[serde(default)]
    pub client_token: Option<String>,
    /// The flow the API started.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// A short word: `accepted`, the refusal's error class, `open`, `on`,
    /// `off`, `paused`, `resumed`, `lost`.
    pub outcome: String,
    /// Why, in one sentence.
    pub reason: String,
}

impl Event {
    /// An event with no nodes, offering, token or flow.
    pub fn new(
        at: DateTime<Utc>,
        instance_id: &str,
        kind: Kind,
        outcome: impl Into<String>,
        reason: impl Into<String>,
    ) -> Event {
        Event {
            at,
            instance_id: instance_id.to_string(),
            kind,
            nodes: None,
            offering: None,
            client_token: None,
            flow_id: None,
            outcome: outcome.into(),
            reason: reason.into(),
        }
    }

    /// With a node count.
    #[must_use]
    pub fn nodes(mut self, n: u32) -> Event {
        self.nodes = Some(n);
        self
    }

    /// With an offering.
    #[must_use]
    pub fn offering(mut self, name: &str) -> Event {
        self.offering = Some(name.to_string());
        self
    }

    /// With a ClientToken.
    #[must_use]
    pub fn token(mut self, token: Option<String>) -> Event {
        self.client_token = token;
        self
    }

    /// With a FlowId.
    #[must_use]
    pub fn flow(mut self, flow_id: Option<i64>) -> Event {
        self.flow_id = flow_id;
        self
    }

    /// What makes two tellings of one order (or removal) the same event.
    fn identity(&self) -> Option<(Kind, Option<&str>, Option<i64>)> {
        match (&self.client_token, self.flow_id) {
            (Some(t), _) => Some((self.kind, Some(t.as_str()), None)),
            (None, Some(f)) if self.kind == Kind::ScaleIn => Some((self.kind, None, Some(f))),
            _ => None,
        }
    }
}

/// Which events a query asks for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    /// One cluster only.
    pub cluster: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
}

impl Query {
    /// The events of `events` (oldest first) it asks for, newest first.
    pub fn select<'a>(&self, events: impl DoubleEndedIterator<Item = &'a Event>) -> Vec<Event> {
        events
            .rev()
            .filter(|e| self.cluster.as_deref().is_none_or(|c| e.instance_id == c))
            .filter(|e| self.since.is_none_or(|s| e.at >= s))
            .take(self.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }
}

/// Something that wants every event once it is kept: the webhooks. `offer`
/// must not wait.
pub trait Listener: Send + Sync + std::fmt::Debug {
    /// Takes `event`, or drops it (counting why) when it cannot keep up.
    fn offer(&self, event: &Event);
}

/// The history: the newest events in memory, a writer appending to the log,
/// and the listeners.
#[derive(Debug)]
pub struct History {
    ring: Mutex<VecDeque<Event>>,
    max: usize,
    log: Arc<Log>,
    writer: Mutex<Option<(mpsc::UnboundedSender<Event>, tokio::task::JoinHandle<()>)>>,
    listener: Arc<RwLock<Option<Arc<dyn Listener>>>>,
    /// A standby: events come from the log, none are recorded here.
    following: AtomicBool,
    followed_at: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

impl History {
    /// A history over `log`, keeping the newest `max` events, with its
    /// writer running on the current runtime. Nothing is loaded yet: see
    /// [`load`](Self::load).
    pub fn start(log: Log, max: usize) -> Arc<History> {
        let log = Arc::new(log);
        let listener: Arc<RwLock<Option<Arc<dyn Listener>>>> = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write(log.clone(), listener.clone(), rx));
        Arc::new(History {
            ring: Mutex::new(VecDeque::new()),
            max: max.max(1),
            log,
            writer: Mutex::new(Some((tx, task))),
            listener,
            following: AtomicBool::new(false),
            followed_at: tokio::sync::Mutex::new(None),
        })
    }

    /// Replaces what is in memory with the newest events of the log.
    pub async fn load(&self) -> Result<usize, HistoryError> {
        let events = self.log.load(self.max).await?;
        let n = events.len();
        *self.ring.lock().unwrap_or_else(|e| e.into_inner()) = events.into();
        Ok(n)
    }

    /// Sets who hears of new events from now on (`None`: nobody).
    pub fn listen(&self, listener: Option<Arc<dyn Listener>>) {
        *self.listener.write().unwrap_or_else(|e| e.into_inner()) = listener;
    }

    /// A standby follows the log; a leader (or a single daemon) records.
    pub fn follow(&self, following: bool) {
        self.following.store(following, Ordering::Relaxed);
    }

    /// Keeps `event` and hands it to the writer; never waits. A second
    /// telling of an order or removal is dropped, as is anything recorded
    /// while following.
    pub fn record(&self, event: Event) {
        if self.following.load(Ordering::Relaxed) {
            return;
        }
        {
            let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(id) = event.identity()
                && ring.iter().any(|e| e.identity() == Some(id))
            {
                tracing::debug!(message = "Event already kept.", kind = %event.kind, cluster = %event.instance_id);
                return;
            }
            ring.push_back(event.clone());
            while ring.len() > self.max {
                ring.pop_front();
            }
        }
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tx, _)) = writer.as_ref() {
            let _ = tx.send(event);
        }
    }

    /// The newest kept event of `kind` for `instance_id`.
    pub fn last(&self, instance_id: &str, kind: Kind) -> Option<Event> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter()
            .rev()
            .find(|e| e.kind == kind && e.instance_id == instance_id)
            .cloned()
    }

    /// The events `query` asks for, newest first. A standby first re-reads
    /// the log when its copy is older than [`FOLLOW_EVERY`].
    pub async fn query(&self, query: &Query) -> Vec<Event> {
        if self.following.load(Ordering::Relaxed) {
            let mut at = self.followed_at.lock().await;
            if at.is_none_or(|t| t.elapsed() >= FOLLOW_EVERY) {
                match self.load().await {
                    Ok(_) => *at = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        tracing::warn!(message = "Cannot read the leader's history.", error = %e)
                    }
                }
            }
        }
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        query.select(ring.iter())
    }

    /// Stops taking events and waits (at most `within`) until the writer
    /// has appended every event recorded so far.
    pub async fn close(&self, within: Duration) {
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((tx, task)) = writer {
            drop(tx);
            if tokio::time::timeout(within, task).await.is_err() {
                tracing::warn!(message = "History events still unwritten at stop.");
            }
        }
    }
}

/// The writer: appends each event to the log (three tries), then offers it
/// to the listener of the moment.
async fn write(
    log: Arc<Log>,
    listener: Arc<RwLock<Option<Arc<dyn Listener>>>>,
    mut rx: mpsc::UnboundedReceiver<Event>,
) {
    while let Some(event) = rx.recv().await {
        for attempt in 1..=3 {
            match log.append(&event).await {
                Ok(()) => break,
                Err(e) if attempt < 3 => {
                    tracing::debug!(message = "Cannot append to the history; trying again.", error = %e);
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                Err(e) => {
                    tracing::warn!(message = "Cannot append to the history; the event is kept in memory only.", kind = %event.kind, cluster = %event.instance_id, error = %e)
                }
            }
        }
        let current = listener.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(l) = current {
            l.offer(&event);
        }
    }
}

#[cfg(test)]
mod tests;
