//! Durable state in `state_dir`.
//!
//! Everything the daemon must remember across restarts lives in one JSON file,
//! `state_dir/state.json`: cooldowns, the budget history of orders, the
//! operation in flight per cluster (with the intent of the chunk being sent),
//! pause and breaker state, and the one-shot schedule actions already served.
//!
//! - **Lock.** [`StateStore::open`] takes an exclusive, non-blocking `flock` on
//!   `state_dir/lock` and holds it until the store is dropped, so two daemons
//!   (or a daemon and a manual `scale-out`) never share a directory. A second
//!   open, in this process or another, fails with [`StateError::Locked`]. The
//!   descriptor is close-on-exec, so child processes never inherit the lock.
//! - **Atomic writes.** [`StateStore::save`] writes `state.json.tmp`, fsyncs it,
//!   renames it over `state.json` and fsyncs the directory. A crash leaves
//!   either the old or the new file, never a mix; a leftover `.tmp` is ignored
//!   and removed by the next open.
//! - **Schema.** The file carries `schema_version`. Older versions are migrated
//!   on read (see [`SCHEMA_VERSION`]); a newer or unknown version, or a file
//!   that cannot be read or parsed, is [`StateError::Corrupt`]. With `reset`
//!   the bad file is renamed aside to `state.json.corrupt-<unix-seconds>`
//!   (never deleted) and the daemon starts from an empty state.
//! - **Time.** Nothing here reads a clock for decisions: helpers take `now` as
//!   a parameter. The one wall-clock read names a file moved aside by `reset`.
//!
//! All file contents are untrusted input: nothing on the read path panics.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// The schema version this build writes.
///
/// History:
/// - `1`: no `schedule_done`; the operation in flight of a cluster was stored
///   under the key `inflight`.
/// - `2`: `schedule_done` added; `inflight` renamed to `operation`.
pub const SCHEMA_VERSION: u32 = 2;

/// How long orders are kept for budgets: a 24-hour budget window plus an hour
/// of slack.
pub const ORDER_RETENTION: TimeDelta = TimeDelta::hours(25);

/// The state file's name inside `state_dir`.
pub const STATE_FILE: &str = "state.json";

/// The lock file's name inside `state_dir`.
pub const LOCK_FILE: &str = "lock";

const TMP_FILE: &str = "state.json.tmp";

/// Why the state could not be opened, read or saved. Every variant names the
/// file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process (or another [`StateStore`] in this one) holds the lock.
    #[error(
        "{path} is locked: another emr-autoscaler holds this state directory; \
         stop it or give this one its own state_dir"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The state file cannot be read, is not valid state, or was written by a
    /// newer release.
    #[error(
        "state file {path} cannot be used: {reason}; fix or remove it, or start with \
         --reset-state to move it aside and begin with an empty state"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "fsync".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The state could not be turned into JSON.
    #[error("cannot serialize the state for {path}: {source}")]
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What the policy core needs from a cluster's durable state, in rule order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyInputs {
    /// Orders (time, nodes), for budgets.
    pub orders: Vec<(DateTime<Utc>, u32)>,
    /// Per rule: when it last drove an order.
    pub last_fired: Vec<Option<DateTime<Utc>>>,
    /// Per rule: the schedule window already served by its one-shot add.
    pub schedule_done: Vec<Option<DateTime<Utc>>>,
    /// Nodes of the operation not yet running: the chunk in flight plus
    /// the chunks still to send, plus arrivals the capacity snapshot
    /// cannot show yet (taken before they arrived).
    pub planned: u32,
    /// Arrivals the snapshot shows that are still within the settle window.
    pub settling: u32,
}

impl ClusterState {
    /// The policy's inputs for rules named `rules`, in that order, with a
    /// capacity snapshot taken at `capacity_at`. Call
    /// [`prune_arrivals`](Self::prune_arrivals) first.
    pub fn policy_inputs<'a>(
        &self,
        rules: impl Iterator<Item = &'a str> + Clone,
        capacity_at: Option<DateTime<Utc>>,
    ) -> PolicyInputs {
        let (unseen, settling) = self.arrivals.iter().fold((0u32, 0u32), |(u, s), a| {
            if capacity_at.is_none_or(|at| at <= a.at) {
                (u.saturating_add(a.nodes), s)
            } else {
                (u, s.saturating_add(a.nodes))
            }
        });
        PolicyInputs {
            settling,
            orders: self.orders.iter().map(|o| (o.at, o.nodes)).collect(),
            last_fired: rules
                .clone()
                .map(|r| self.rule_last_fired.get(r).copied())
                .collect(),
            schedule_done: rules.map(|r| self.schedule_done.get(r).copied()).collect(),
            planned: self
                .operation
                .as_ref()
                .map_or(0, |o| {
                    if o.kind == NodeKind::Core {
                        return 0;
                    }
                    let unsent: u32 = o
                        .chunks
                        .iter()
                        .skip(o.next_chunk + usize::from(o.current.is_some()))
                        .sum();
                    o.in_flight_nodes() + unsent
                })
                .saturating_add(unseen),
        }
    }
}

/// Everything the daemon remembers, per cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// The schema version; always [`SCHEMA_VERSION`] once loaded, and always
    /// written as [`SCHEMA_VERSION`] whatever it holds.
    pub schema_version: u32,
    /// Per-cluster state, keyed by EMR instance id.
    pub clusters: BTreeMap<String, ClusterState>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            clusters: BTreeMap::new(),
        }
    }
}

impl State {
    /// The state of cluster `id`, inserting an empty one if there is none.
    pub fn cluster_mut(&mut self, id: &str) -> &mut ClusterState {
        self.clusters.entry(id.to_owned()).or_default()
    }

    /// The state of cluster `id`, if any was recorded.
    pub fn cluster(&self, id: &str) -> Option<&ClusterState> {
        self.clusters.get(id)
    }
}

/// What the daemon remembers about one cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterState {
    /// Nothing is sent before this instant (except to restore a schedule floor).
    pub cooldown_until: Option<DateTime<Utc>>,
    /// When each rule with its own cooldown last fired, by rule name.
    pub rule_last_fired: BTreeMap<String, DateTime<Utc>>,
    /// Orders placed, daemon and manual, for budgets. Pruned by
    /// [`ClusterState::prune_orders`].
    pub orders: Vec<OrderRecord>,
    /// The operation in flight; at most one per cluster.
    pub operation: Option<Operation>,
    /// Scaling is paused by an operator.
    pub paused: bool,
    /// The circuit breaker is open: why and since when.
    pub breaker_open: Option<BreakerTrip>,
    /// Rule name -> start of the schedule window already served by a one-shot add.
    pub schedule_done: BTreeMap<String, DateTime<Utc>>,
    /// The region answered "sold out": back off until this instant.
    pub sold_out_until: Option<DateTime<Utc>>,
    /// Nodes that arrived recently, for the settle window; pruned with
    /// [`ClusterState::prune_arrivals`].
    pub arrivals: Vec<Arrival>,
}

/// Nodes whose scale-out ended, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Arrival {
    /// When their chunk ended (the injected clock).
    pub at: DateTime<Utc>,
    /// How many.
    pub nodes: u32,
}

impl ClusterState {
    /// Drops arrivals older than `settle` before `now`.
    pub fn prune_arrivals(&mut self, now: DateTime<Utc>, settle: TimeDelta) {
        self.arrivals.retain(|a| now - a.at < settle);
    }
}

impl ClusterState {
    /// Nodes ordered strictly after `since`, saturating at `u32::MAX`.
    pub fn nodes_ordered_since(&self, since: DateTime<Utc>) -> u32 {
        self.orders
            .iter()
            .filter(|o| o.at > since)
            .fold(0u32, |sum, o| sum.saturating_add(o.nodes))
    }

    /// Drops orders older than [`ORDER_RETENTION`] before `now`. Orders dated
    /// after `now` (a clock step backwards) are kept.
    pub fn prune_orders(&mut self, now: DateTime<Utc>) {
        let Some(cutoff) = now.checked_sub_signed(ORDER_RETENTION) else {
            return; // `now` is near the start of time: nothing can be that old.
        };
        self.orders.retain(|o| o.at >= cutoff);
    }
}

/// Who placed an order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// The daemon's own decision.
    #[default]
    Daemon,
    /// The `scale-out` command.
    Manual,
}

/// One ScaleOutInstance request that was sent (or may have been), for budgets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// Task nodes ordered.
    pub nodes: u32,
    /// Its ClientToken.
    pub client_token: String,
    /// Who placed it.
    pub source: OrderSource,
}

/// Why and when the circuit breaker opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerTrip {
    /// When it opened.
    pub at: DateTime<Utc>,
    /// Why, for operators.
    pub reason: String,
    /// The flow that outlived its limit; the breaker closes when it ends.
    #[serde(default)]
    pub flow_id: Option<i64>,
}

impl ClusterState {
    /// Closes the breaker if `flow` opened it: that flow has ended.
    pub fn flow_ended(&mut self, flow: i64) {
        if self
            .breaker_open
            .as_ref()
            .is_some_and(|b| b.flow_id == Some(flow))
        {
            self.breaker_open = None;
        }
    }
}

/// One decision, split into chunks of at most 20 nodes that are sent one after
/// another, each once the previous flow is done. The transitions live in
/// `daemon::operation`; this is the record kept on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    /// A UUID naming the operation.
    pub id: String,
    /// When the decision was taken.
    pub created_at: DateTime<Utc>,
    /// Planned chunk sizes, in order.
    pub chunks: Vec<u32>,
    /// Index of the chunk being sent, or the next one to send.
    pub next_chunk: usize,
    /// Task-node count before the operation.
    pub task_nodes_before: u32,
    /// Why, for operators.
    pub reason: String,
    /// The intent of the chunk being sent; written before the request.
    #[serde(default)]
    pub current: Option<ChunkIntent>,
    /// Nodes of chunks whose flow finished.
    #[serde(default)]
    pub completed_nodes: u32,
    /// Task or core nodes.
    #[serde(default)]
    pub kind: NodeKind,
    /// Who asked for it.
    #[serde(default)]
    pub source: OrderSource,
    /// Nodes counted in budgets so far (chunks accepted or that may have executed).
    #[serde(default)]
    pub counted_nodes: u32,
    /// An operator paused the cluster: no further chunk is sent.
    #[serde(default)]
    pub stopping: bool,
    /// An operator resumed a stuck operation: reconcile it and close it.
    #[serde(default)]
    pub resolve: bool,
    /// The previous chunk ended then; the next one waits for a capacity
    /// snapshot taken after it, so its task-node count includes that chunk.
    #[serde(default)]
    pub wait_capacity_after: Option<DateTime<Utc>>,
    /// The rules this operation carries out, marked once its first chunk
    /// was accepted or may have executed.
    #[serde(default)]
    pub marks: RuleMarks,
}

/// Task or core nodes: never both in one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// `TaskCount`.
    #[default]
    Task,
    /// `CoreCount`.
    Core,
}

/// What an operation records about its rules once it has ordered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleMarks {
    /// Rules whose vote it carries out (their own cooldowns start).
    #[serde(default)]
    pub rules: Vec<String>,
    /// Schedule rules and the window start their one-shot add serves.
    #[serde(default)]
    pub schedule: Vec<(String, DateTime<Utc>)>,
    /// Whether the marks were applied.
    #[serde(default)]
    pub applied: bool,
}

impl Operation {
    /// Nodes of the current chunk, which has been sent or may have been;
    /// 0 when no chunk is current.
    pub fn in_flight_nodes(&self) -> u32 {
        self.current.as_ref().map_or(0, |c| c.nodes)
    }

    /// Whether every chunk has been sent and followed to its end.
    pub fn is_finished(&self) -> bool {
        self.next_chunk >= self.chunks.len() && self.current.is_none()
    }

    /// What makes the operation unusable, if anything: indexes that would
    /// point past the planned chunks.
    fn check(&self) -> Result<(), String> {
        if self.next_chunk > self.chunks.len() {
            return Err(format!(
                "next_chunk {} is past the {} planned chunks",
                self.next_chunk,
                self.chunks.len()
            ));
        }
        if self.current.is_some() && self.next_chunk >= self.chunks.len() {
            return Err(format!(
                "a chunk intent is current but next_chunk {} names no planned chunk (of {})",
                self.next_chunk,
                self.chunks.len()
            ));
        }
        Ok(())
    }
}

/// The intent of one chunk, written to disk BEFORE its request is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkIntent {
    /// The ClientToken the request carries, on every attempt.
    pub client_token: String,
    /// When the token was made, by the wall clock (the server keeps it 5 minutes).
    pub token_created_at: DateTime<Utc>,
    /// Task nodes requested.
    pub nodes: u32,
    /// Task-node count before this chunk.
    pub task_nodes_before: u32,
    /// The flow, once the API answered.
    #[serde(default)]
    pub flow_id: Option<i64>,
    /// When the API accepted the request.
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    /// How many times a send under this token was started (saved before each).
    #[serde(default)]
    pub sends: u32,
    /// The API accepted it (with or without a FlowId).
    #[serde(default)]
    pub accepted: bool,
    /// When it was first handed to the client.
    #[serde(default)]
    pub first_sent_at: Option<DateTime<Utc>>,
    /// It may have executed (no answer, or an answer that cannot tell) since then.
    #[serde(default)]
    pub unknown_since: Option<DateTime<Utc>>,
    /// Never re-send: judge it from the cluster once the cluster is idle.
    #[serde(default)]
    pub judge_only: bool,
    /// A capacity snapshot after acceptance showed the cluster scaling out.
    #[serde(default)]
    pub seen_busy: bool,
    /// The flow could not be read: the last error.
    #[serde(default)]
    pub flow_unreadable: Option<String>,
    /// The chunk outlived `flow_timeout` and opened the breaker.
    #[serde(default)]
    pub stuck: bool,
    /// The chunk counts in budgets (it was accepted or may have executed).
    #[serde(default)]
    pub counted: bool,
}

/// Schema version 1, kept only to migrate it.
mod v1 {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct State {
        pub clusters: BTreeMap<String, ClusterState>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct ClusterState {
        pub cooldown_until: Option<DateTime<Utc>>,
        pub rule_last_fired: BTreeMap<String, DateTime<Utc>>,
        pub orders: Vec<OrderRecord>,
        pub inflight: Option<Operation>,
        pub paused: bool,
        pub breaker_open: Option<BreakerTrip>,
        pub sold_out_until: Option<DateTime<Utc>>,
    }

    impl From<State> for super::State {
        fn from(old: State) -> Self {
            let clusters = old
                .clusters
                .into_iter()
                .map(|(id, c)| {
                    let c = super::ClusterState {
                        cooldown_until: c.cooldown_until,
                        rule_last_fired: c.rule_last_fired,
                        orders: c.orders,
                        operation: c.inflight,
                        paused: c.paused,
                        breaker_open: c.breaker_open,
                        schedule_done: BTreeMap::new(),
                        sold_out_until: c.sold_out_until,
                        arrivals: Vec::new(),
                    };
                    (id, c)
                })
                .collect();
            super::State {
                schema_version: SCHEMA_VERSION,
                clusters,
            }
        }
    }
}

/// The owner of `state_dir`: holds its lock and writes its state file.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    state_path: PathBuf,
    tmp_path: PathBuf,
    /// Held for the store's lifetime; closing it on drop releases the `flock`.
    _lock: File,
}

impl StateStore {
    /// Opens `dir`: creates it if missing (mode 0700), locks it, and reads its
    /// state.
    ///
    /// A missing state file gives [`State::default`]. A file that cannot be
    /// read or parsed, or has an unknown schema version, is
    /// [`StateError::Corrupt`], unless `reset` is set: then it is renamed to
    /// `state.json.corrupt-<unix-seconds>` and an empty state is returned. A
    /// good file is loaded whatever `reset` says. Older schema versions are
    /// migrated in memory; the next [`save`](Self::save) writes the current one.
    pub fn open(dir: &Path, reset: bool) -> Result<(StateStore, State), StateError> {
        Self::open_at(dir, reset, crate::clock::wall_now())
    }

    /// [`open`](Self::open) with the instant that names a file moved aside.
    fn open_at(
        dir: &Path,
        reset: bool,
        now: DateTime<Utc>,
    ) -> Result<(StateStore, State), StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }

        let store = StateStore {
            dir: dir.to_path_buf(),
            state_path: dir.join(STATE_FILE),
            tmp_path: dir.join(TMP_FILE),
            _lock: lock,
        };

        // A leftover temporary file is a save that crashed before its rename:
        // the state file still holds the previous state. We hold the lock, so
        // nobody else is writing it.
        match fs::remove_file(&store.tmp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove leftover", &store.tmp_path)(e)),
        }

        let state = match load(&store.state_path) {
            Ok(state) => state,
            Err(StateError::Corrupt { reason, .. }) if reset => {
                let aside = store.move_aside(now)?;
                tracing::warn!(
                    path = %store.state_path.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "state file unusable; moved aside, starting with an empty state"
                );
                State::default()
            }
            Err(e) => return Err(e),
        };
        Ok((store, state))
    }

    /// Renames the bad state file to `state.json.corrupt-<unix-seconds>`,
    /// adding `.1`, `.2`, ... rather than replacing an earlier one.
    fn move_aside(&self, now: DateTime<Utc>) -> Result<PathBuf, StateError> {
        let base = format!("{STATE_FILE}.corrupt-{}", now.timestamp());
        for n in 0u32..1000 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let target = self.dir.join(name);
            match fs::symlink_metadata(&target) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("inspect", &target)(e)),
            }
            fs::rename(&self.state_path, &target)
                .map_err(io_err("move aside", &self.state_path))?;
            sync_dir(&self.dir)?;
            return Ok(target);
        }
        Err(StateError::Io {
            action: "move aside",
            path: self.state_path.clone(),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("too many {base}.* files already"),
            ),
        })
    }

    /// Writes `state` atomically: `state.json.tmp`, fsync, rename over
    /// `state.json`, fsync of the directory. The file is pretty JSON with
    /// `schema_version` set to [`SCHEMA_VERSION`].
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let mut bytes = if state.schema_version == SCHEMA_VERSION {
            serde_json::to_vec_pretty(state)
        } else {
            let mut current = state.clone();
            current.schema_version = SCHEMA_VERSION;
            serde_json::to_vec_pretty(&current)
        }
        .map_err(|source| StateError::Serialize {
            path: self.state_path.clone(),
            source,
        })?;
        bytes.push(b'\n');

        if let Err(e) = self.write_tmp(&bytes) {
            // Best effort: the next open removes it anyway.
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        if let Err(e) = fs::rename(&self.tmp_path, &self.state_path) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(io_err("rename into place", &self.state_path)(e));
        }
        sync_dir(&self.dir)
    }

    fn write_tmp(&self, bytes: &[u8]) -> Result<(), StateError> {
        let path = &self.tmp_path;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("create", path))?;
        file.write_all(bytes).map_err(io_err("write", path))?;
        file.sync_all().map_err(io_err("fsync", path))
    }

    /// The state file, `state_dir/state.json`.
    pub fn path(&self) -> &Path {
        &self.state_path
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads the state in `dir` without taking the lock, for status tools and
/// tests. A missing file (or directory) gives [`State::default`]; a bad one is
/// [`StateError::Corrupt`]. The result may be one save behind a running daemon.
pub fn read_only(dir: &Path) -> Result<State, StateError> {
    load(&dir.join(STATE_FILE))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn load(path: &Path) -> Result<State, StateError> {
    match fs::read(path) {
        Ok(bytes) => parse(path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("it cannot be read: {e}"),
        }),
    }
}

fn parse(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };

    // First the version, to choose how to read the rest.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(json_reason(&e)))?;
    let Some(object) = value.as_object() else {
        return Err(corrupt(format!(
            "it holds a JSON {}, not an object",
            json_kind(&value)
        )));
    };
    let version = match object.get("schema_version") {
        None => return Err(corrupt("it has no schema_version".to_owned())),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| corrupt(format!("schema_version must be a whole number, found {v}")))?,
    };

    let state = match version {
        1 => State::from(typed::<v1::State>(bytes).map_err(corrupt)?),
        v if v == u64::from(SCHEMA_VERSION) => {
            let mut state = typed::<State>(bytes).map_err(corrupt)?;
            state.schema_version = SCHEMA_VERSION;
            state
        }
        v if v > u64::from(SCHEMA_VERSION) => {
            return Err(corrupt(format!(
                "schema_version {v} was written by a newer emr-autoscaler; \
                 this one reads versions 1 to {SCHEMA_VERSION}"
            )));
        }
        v => {
            return Err(corrupt(format!(
                "schema_version {v} is not a known version (1 to {SCHEMA_VERSION})"
            )));
        }
    };

    for (id, cluster) in &state.clusters {
        if let Some(op) = &cluster.operation {
            op.check()
                .map_err(|why| corrupt(format!("clusters.{id}.operation: {why}")))?;
        }
    }
    Ok(state)
}

/// Deserializes `bytes`, naming the key path of the first problem.
fn typed<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            json_reason(e.inner())
        } else {
            format!("at {path}: {}", json_reason(e.inner()))
        }
    })?;
    de.end().map_err(|e| json_reason(&e))?;
    Ok(value)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => format!(
            "it is truncated (JSON ends early at line {} column {})",
            e.line(),
            e.column()
        ),
        Category::Syntax => format!("it is not valid JSON: {e}"),
        Category::Data | Category::Io => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use proptest::prelude::*;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn order(at: DateTime<Utc>, nodes: u32) -> OrderRecord {
        OrderRecord {
            at,
            nodes,
            client_token: format!("tok-{}-{nodes}", at.timestamp()),
            source: OrderSource::Daemon,
        }
    }

    fn operation() -> Operation {
        Operation {
            id: "3f0c2a4e-8d61-4b8e-9a57-0c1d2e3f4a5b".to_owned(),
            created_at: t(0),
            chunks: vec![20, 20, 5],
            next_chunk: 1,
            task_nodes_before: 10,
            reason: "pending containers > 100 for 2m".to_owned(),
            current: Some(ChunkIntent {
                client_token: "c0ffee".to_owned(),
                token_created_at: t(60),
                nodes: 20,
                task_nodes_before: 30,
                flow_id: Some(4711),
                sent_at: Some(t(61)),
                sends: 1,
                accepted: true,
                first_sent_at: Some(t(60)),
                ..ChunkIntent::default()
            }),
            completed_nodes: 20,
            counted_nodes: 40,
            ..Operation::default()
        }
    }

    fn sample_state() -> State {
        let mut state = State::default();
        let c = state.cluster_mut("emr-aaaa1111");
        c.cooldown_until = Some(t(600));
        c.rule_last_fired.insert("pending".to_owned(), t(0));
        c.orders = vec![
            order(t(-3600), 20),
            OrderRecord {
                source: OrderSource::Manual,
                ..order(t(-60), 3)
            },
        ];
        c.operation = Some(operation());
        c.paused = true;
        c.breaker_open = Some(BreakerTrip {
            at: t(5),
            reason: "3 consecutive invalid answers".to_owned(),
            flow_id: None,
        });
        c.schedule_done.insert("morning".to_owned(), t(-7200));
        c.sold_out_until = Some(t(900));
        state.cluster_mut("emr-bbbb2222");
        state
    }

    fn parse_err(bytes: &[u8]) -> String {
        match parse(Path::new("/x/state.json"), bytes) {
            Err(StateError::Corrupt { path, reason }) => {
                assert_eq!(path, Path::new("/x/state.json"));
                reason
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    // ---- helpers ----

    #[test]
    fn default_state_is_current_version_and_empty() {
        let state = State::default();
        assert_eq!(state.schema_version, SCHEMA_VERSION);
        assert!(state.clusters.is_empty());
    }

    #[test]
    fn cluster_mut_inserts_default_then_returns_the_same_entry() {
        let mut state = State::default();
        assert!(state.cluster("c1").is_none());
        assert_eq!(*state.cluster_mut("c1"), ClusterState::default());
        state.cluster_mut("c1").paused = true;
        assert!(state.cluster_mut("c1").paused);
        assert!(state.cluster("c1").unwrap().paused);
        assert_eq!(state.clusters.len(), 1);
    }

    #[test]
    fn nodes_ordered_since_counts_only_orders_strictly_after() {
        let c = ClusterState {
            orders: vec![order(t(0), 5), order(t(10), 7), order(t(20), 11)],
            ..ClusterState::default()
        };
        assert_eq!(c.nodes_ordered_since(t(-1)), 23);
        assert_eq!(c.nodes_ordered_since(t(0)), 18);
        assert_eq!(c.nodes_ordered_since(t(10)), 11);
        assert_eq!(c.nodes_ordered_since(t(20)), 0);
        assert_eq!(ClusterState::default().nodes_ordered_since(t(0)), 0);
    }

    #[test]
    fn nodes_ordered_since_saturates() {
        let c = ClusterState {
            orders: vec![order(t(1), u32::MAX), order(t(2), 5)],
            ..ClusterState::default()
        };
        assert_eq!(c.nodes_ordered_since(t(0)), u32::MAX);
    }

    #[test]
    fn prune_orders_keeps_25_hours_and_the_future() {
        let now = t(100 * 3600);
        let h25 = 25 * 3600;
        let mut c = ClusterState {
            orders: vec![
                order(now - TimeDelta::seconds(h25 + 1), 1),
                order(now - TimeDelta::seconds(h25), 2),
                order(now - TimeDelta::seconds(60), 3),
                order(now + TimeDelta::seconds(60), 4),
            ],
            ..ClusterState::default()
        };
        c.prune_orders(now);
        let kept: Vec<u32> = c.orders.iter().map(|o| o.nodes).collect();
        assert_eq!(kept, vec![2, 3, 4]);
    }

    #[test]
    fn prune_orders_at_the_start_of_time_does_not_panic() {
        let mut c = ClusterState {
            orders: vec![order(DateTime::<Utc>::MIN_UTC, 1)],
            ..ClusterState::default()
        };
        c.prune_orders(DateTime::<Utc>::MIN_UTC);
        assert_eq!(c.orders.len(), 1);
        c.prune_orders(DateTime::<Utc>::MAX_UTC);
        assert!(c.orders.is_empty());
    }

    #[test]
    fn in_flight_nodes_is_the_current_chunk_sent_or_not() {
        let mut op = operation();
        assert_eq!(op.in_flight_nodes(), 20);
        // Intent written, answer not yet: it may have been executed.
        let current = op.current.as_mut().unwrap();
        current.flow_id = None;
        current.sent_at = None;
        current.nodes = 7;
        assert_eq!(op.in_flight_nodes(), 7);
        op.current = None;
        assert_eq!(op.in_flight_nodes(), 0);
    }

    #[test]
    fn is_finished_needs_all_chunks_and_no_current() {
        let mut op = operation();
        assert!(!op.is_finished());
        op.next_chunk = 3;
        assert!(!op.is_finished(), "the last chunk is still current");
        op.current = None;
        assert!(op.is_finished());
        op.next_chunk = 2;
        assert!(!op.is_finished());
        let empty = Operation {
            chunks: vec![],
            next_chunk: 0,
            current: None,
            ..operation()
        };
        assert!(empty.is_finished());
    }

    // ---- files ----

    #[test]
    fn round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        let state = sample_state();
        {
            let (store, loaded) = StateStore::open(&dir, false).unwrap();
            assert_eq!(loaded, State::default());
            assert_eq!(store.path(), dir.join("state.json"));
            assert_eq!(store.dir(), dir);
            store.save(&state).unwrap();
        }
        let (_store, loaded) = StateStore::open(&dir, false).unwrap();
        assert_eq!(loaded, state);
        assert_eq!(read_only(&dir).unwrap(), state);
    }

    #[test]
    fn creates_missing_directories_with_mode_0700_and_files_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/state");
        let (store, _) = StateStore::open(&dir, false).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        store.save(&State::default()).unwrap();
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(&dir.join(LOCK_FILE)), 0o600);
    }

    #[test]
    fn save_is_pretty_versioned_and_leaves_no_tmp() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = StateStore::open(tmp.path(), false).unwrap();
        let state = State {
            schema_version: 7, // whatever the caller left here, the file says 2
            ..sample_state()
        };
        store.save(&state).unwrap();
        store.save(&state).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.starts_with("{\n  \"schema_version\": 2,\n"), "{text}");
        assert!(text.ends_with("}\n"));
        assert!(!tmp.path().join(TMP_FILE).exists());
        let mut names: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["lock", "state.json"]);
    }

    #[test]
    fn leftover_tmp_from_a_crash_is_ignored_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let state = sample_state();
        {
            let (store, _) = StateStore::open(tmp.path(), false).unwrap();
            store.save(&state).unwrap();
        }
        // A save that crashed after writing half its temporary file.
        fs::write(tmp.path().join(TMP_FILE), b"{\"schema_version\": 2, \"clus").unwrap();
        let (store, loaded) = StateStore::open(tmp.path(), false).unwrap();
        assert_eq!(loaded, state);
        assert!(!tmp.path().join(TMP_FILE).exists());
        store.save(&State::default()).unwrap();
        assert_eq!(read_only(tmp.path()).unwrap(), State::default());
    }

    #[test]
    fn second_open_is_locked_until_the_first_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _) = StateStore::open(tmp.path(), false).unwrap();
        store.save(&sample_state()).unwrap();
        for reset in [false, true] {
            let err = StateStore::open(tmp.path(), reset).unwrap_err();
            match &err {
                StateError::Locked { path } => assert_eq!(path, &tmp.path().join(LOCK_FILE)),
                other => panic!("expected Locked, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains("another emr-autoscaler holds"), "{msg}");
            assert!(msg.contains(&tmp.path().join("lock").display().to_string()));
        }
        // Reading without the lock works while it is held.
        assert_eq!(read_only(tmp.path()).unwrap(), sample_state());
        drop(store);
        let (_again, loaded) = StateStore::open(tmp.path(), false).unwrap();
        assert_eq!(loaded, sample_state());
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it_and_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(STATE_FILE);
        fs::write(&path, b"{ this is not json").unwrap();
        let err = StateStore::open(tmp.path(), false).unwrap_err();
        let StateError::Corrupt { path: named, .. } = &err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(named, &path);
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("fix or remove it"), "{msg}");
        assert!(msg.contains("--reset-state"), "{msg}");
        assert_eq!(fs::read(&path).unwrap(), b"{ this is not json");
        // The failed open released its lock.
        drop(err);
        assert!(matches!(
            StateStore::open(tmp.path(), false),
            Err(StateError::Corrupt { .. })
        ));
        assert!(matches!(
            read_only(tmp.path()),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn reset_moves_a_corrupt_file_aside_and_starts_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(STATE_FILE);
        fs::write(&path, b"\x00\xffgarbage").unwrap();
        let (store, state) = StateStore::open_at(tmp.path(), true, t(0)).unwrap();
        assert_eq!(state, State::default());
        assert!(!path.exists());
        let aside = tmp.path().join("state.json.corrupt-1700000000");
        assert_eq!(fs::read(&aside).unwrap(), b"\x00\xffgarbage");
        store.save(&sample_state()).unwrap();
        drop(store);

        // Another bad file in the same second never replaces the first.
        fs::write(&path, b"{\"schema_version\": 99}").unwrap();
        let (_store, state) = StateStore::open_at(tmp.path(), true, t(0)).unwrap();
        assert_eq!(state, State::default());
        assert_eq!(fs::read(&aside).unwrap(), b"\x00\xffgarbage");
        assert_eq!(
            fs::read(tmp.path().join("state.json.corrupt-1700000000.1")).unwrap(),
            b"{\"schema_version\": 99}"
        );
    }

    #[test]
    fn reset_through_the_public_open_uses_unix_seconds() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STATE_FILE), b"[]").unwrap();
        let (_store, state) = StateStore::open(tmp.path(), true).unwrap();
        assert_eq!(state, State::default());
        let aside: Vec<String> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("state.json.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let secs = aside[0].trim_start_matches("state.json.corrupt-");
        assert!(secs.parse::<i64>().unwrap() > 1_700_000_000, "{secs}");
    }

    #[test]
    fn reset_keeps_a_good_file() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let (store, _) = StateStore::open(tmp.path(), false).unwrap();
            store.save(&sample_state()).unwrap();
        }
        let (_store, state) = StateStore::open(tmp.path(), true).unwrap();
        assert_eq!(state, sample_state());
    }

    #[test]
    fn unreadable_state_file_is_corrupt_and_reset_moves_it_aside() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading fails even as root.
        fs::create_dir(tmp.path().join(STATE_FILE)).unwrap();
        let reason = match StateStore::open(tmp.path(), false) {
            Err(StateError::Corrupt { reason, .. }) => reason,
            other => panic!("expected Corrupt, got {other:?}"),
        };
        assert!(reason.contains("cannot be read"), "{reason}");
        let (_store, state) = StateStore::open_at(tmp.path(), true, t(0)).unwrap();
        assert_eq!(state, State::default());
        assert!(tmp.path().join("state.json.corrupt-1700000000").is_dir());
    }

    #[test]
    fn read_only_of_a_missing_directory_is_the_default() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(
            read_only(&tmp.path().join("nope")).unwrap(),
            State::default()
        );
        assert!(!tmp.path().join("nope").exists());
    }

    // ---- schema ----

    #[test]
    fn future_schema_is_corrupt_with_a_clear_message() {
        let reason = parse_err(br#"{"schema_version": 99, "clusters": {}}"#);
        assert_eq!(
            reason,
            "schema_version 99 was written by a newer emr-autoscaler; \
             this one reads versions 1 to 2"
        );
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STATE_FILE), br#"{"schema_version": 99}"#).unwrap();
        let msg = StateStore::open(tmp.path(), false).unwrap_err().to_string();
        assert!(msg.contains("newer emr-autoscaler"), "{msg}");
        assert!(msg.contains("state.json"), "{msg}");
    }

    #[test]
    fn bad_versions_are_corrupt() {
        assert_eq!(parse_err(b"{}"), "it has no schema_version");
        assert_eq!(
            parse_err(br#"{"schema_version": 0}"#),
            "schema_version 0 is not a known version (1 to 2)"
        );
        assert_eq!(
            parse_err(br#"{"schema_version": "2"}"#),
            "schema_version must be a whole number, found \"2\""
        );
        assert_eq!(
            parse_err(br#"{"schema_version": -1}"#),
            "schema_version must be a whole number, found -1"
        );
        assert_eq!(
            parse_err(br#"{"schema_version": 2.5}"#),
            "schema_version must be a whole number, found 2.5"
        );
    }

    #[test]
    fn not_an_object_is_corrupt() {
        assert_eq!(parse_err(b"[]"), "it holds a JSON array, not an object");
        assert_eq!(parse_err(b"null"), "it holds a JSON null, not an object");
        assert_eq!(parse_err(b"42"), "it holds a JSON number, not an object");
        assert!(parse_err(b"").contains("truncated"));
        assert!(parse_err(b"{} {}").contains("not valid JSON"));
    }

    #[test]
    fn type_errors_name_the_key_path() {
        let reason = parse_err(
            br#"{"schema_version": 2, "clusters": {"c1": {"orders": [
                {"at": "2024-01-01T00:00:00Z", "nodes": -3, "client_token": "x", "source": "daemon"}
            ]}}}"#,
        );
        assert!(
            reason.starts_with("at clusters.c1.orders[0].nodes: "),
            "{reason}"
        );
        assert!(reason.contains("line 2"), "{reason}");

        let reason = parse_err(
            br#"{"schema_version": 2, "clusters": {"c1": {"orders": [
                {"at": "2024-01-01T00:00:00Z", "nodes": 3, "client_token": "x", "source": "robot"}
            ]}}}"#,
        );
        assert!(reason.contains("clusters.c1.orders[0].source"), "{reason}");
        assert!(reason.contains("robot"), "{reason}");
    }

    #[test]
    fn missing_intent_fields_are_not_defaulted() {
        // A chunk intent without its token must never become an empty token.
        let reason = parse_err(
            br#"{"schema_version": 2, "clusters": {"c1": {"operation": {
                "id": "x", "created_at": "2024-01-01T00:00:00Z", "chunks": [5],
                "next_chunk": 0, "task_nodes_before": 1, "reason": "r",
                "current": {"token_created_at": "2024-01-01T00:00:00Z", "nodes": 5,
                            "task_nodes_before": 1}
            }}}}"#,
        );
        assert!(reason.contains("clusters.c1.operation.current"), "{reason}");
        assert!(reason.contains("client_token"), "{reason}");
    }

    #[test]
    fn operation_indexes_past_the_chunks_are_corrupt() {
        let mut state = State::default();
        state.cluster_mut("c1").operation = Some(Operation {
            next_chunk: 3,
            ..operation()
        });
        let bytes = serde_json::to_vec(&state).unwrap();
        assert_eq!(
            parse_err(&bytes),
            "clusters.c1.operation: a chunk intent is current but next_chunk 3 \
             names no planned chunk (of 3)"
        );
        state.cluster_mut("c1").operation = Some(Operation {
            next_chunk: 4,
            current: None,
            ..operation()
        });
        let bytes = serde_json::to_vec(&state).unwrap();
        assert_eq!(
            parse_err(&bytes),
            "clusters.c1.operation: next_chunk 4 is past the 3 planned chunks"
        );
    }

    #[test]
    fn missing_optional_fields_default() {
        let state = parse(
            Path::new("state.json"),
            br#"{"schema_version": 2, "clusters": {"c1": {"paused": true}}, "extra": 1}"#,
        )
        .unwrap();
        let c = state.cluster("c1").unwrap();
        assert!(c.paused);
        assert_eq!(
            *c,
            ClusterState {
                paused: true,
                ..ClusterState::default()
            }
        );
    }

    const V1_FIXTURE: &str = r#"{
  "schema_version": 1,
  "clusters": {
    "emr-v1": {
      "cooldown_until": "2023-11-14T22:23:20Z",
      "rule_last_fired": { "pending": "2023-11-14T22:13:20Z" },
      "orders": [
        { "at": "2023-11-14T22:13:20Z", "nodes": 20, "client_token": "t1", "source": "daemon" },
        { "at": "2023-11-14T22:14:20Z", "nodes": 2, "client_token": "t2", "source": "manual" }
      ],
      "inflight": {
        "id": "op-1",
        "created_at": "2023-11-14T22:13:20Z",
        "chunks": [20, 20, 5],
        "next_chunk": 1,
        "task_nodes_before": 10,
        "reason": "pending",
        "current": {
          "client_token": "t3",
          "token_created_at": "2023-11-14T22:20:00Z",
          "nodes": 20,
          "task_nodes_before": 30,
          "flow_id": null,
          "sent_at": null
        },
        "completed_nodes": 20
      },
      "paused": false,
      "breaker_open": null,
      "sold_out_until": null
    },
    "emr-idle": {}
  }
}
"#;

    #[test]
    fn v1_migrates_to_v2() {
        let state = parse(Path::new("state.json"), V1_FIXTURE.as_bytes()).unwrap();
        assert_eq!(state.schema_version, 2);
        assert_eq!(state.clusters.len(), 2);
        let c = state.cluster("emr-v1").unwrap();
        let op = c.operation.as_ref().unwrap();
        assert_eq!(op.id, "op-1");
        assert_eq!(op.in_flight_nodes(), 20);
        assert_eq!(op.current.as_ref().unwrap().client_token, "t3");
        assert!(c.schedule_done.is_empty());
        assert_eq!(c.orders.len(), 2);
        assert_eq!(c.orders[1].source, OrderSource::Manual);
        assert_eq!(c.cooldown_until, Some(t(600)));
        assert_eq!(c.rule_last_fired["pending"], t(0));
        assert_eq!(*state.cluster("emr-idle").unwrap(), ClusterState::default());
    }

    #[test]
    fn v1_file_is_saved_as_v2() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(STATE_FILE), V1_FIXTURE).unwrap();
        let (store, state) = StateStore::open(tmp.path(), false).unwrap();
        // Migration happens in memory; the file changes on the next save.
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            V1_FIXTURE,
            "open must not rewrite the file"
        );
        store.save(&state).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["schema_version"], 2);
        assert!(json["clusters"]["emr-v1"].get("inflight").is_none());
        assert_eq!(json["clusters"]["emr-v1"]["operation"]["id"], "op-1");
        assert_eq!(
            json["clusters"]["emr-v1"]["schedule_done"],
            serde_json::json!({})
        );
        drop(store);
        assert_eq!(read_only(tmp.path()).unwrap(), state);
    }

    #[test]
    fn v1_with_a_bad_operation_is_corrupt() {
        let bad = V1_FIXTURE.replace("\"next_chunk\": 1", "\"next_chunk\": 3");
        let reason = parse_err(bad.as_bytes());
        assert!(reason.starts_with("clusters.emr-v1.operation:"), "{reason}");
    }

    #[test]
    fn every_truncation_of_a_valid_file_is_corrupt_or_whole() {
        let mut bytes = serde_json::to_vec_pretty(&sample_state()).unwrap();
        bytes.push(b'\n');
        let full = parse(Path::new("s"), &bytes).unwrap();
        assert_eq!(full, sample_state());
        let closing = bytes.iter().rposition(|&b| b == b'}').unwrap();
        for len in 0..bytes.len() {
            match parse(Path::new("s"), &bytes[..len]) {
                Ok(state) => {
                    assert!(len > closing, "prefix of {len} bytes parsed");
                    assert_eq!(state, full);
                }
                Err(StateError::Corrupt { .. }) => assert!(len <= closing),
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }

    proptest! {
        #[test]
        fn garbage_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let result = parse(Path::new("s"), &bytes);
            let fine = matches!(result, Ok(_) | Err(StateError::Corrupt { .. }));
            prop_assert!(fine, "unexpected {:?}", result);
        }

        #[test]
        fn mutated_state_files_never_panic(
            at in 0usize..4096,
            byte in any::<u8>(),
            cut in any::<bool>(),
        ) {
            let mut bytes = serde_json::to_vec_pretty(&sample_state()).unwrap();
            let at = at % bytes.len();
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            let result = parse(Path::new("s"), &bytes);
            let fine = matches!(result, Ok(_) | Err(StateError::Corrupt { .. }));
            prop_assert!(fine, "unexpected {:?}", result);
        }
    }
}
