//! The daemon: one worker per cluster, a capacity poller, the admin server,
//! reload on SIGHUP and a graceful stop on SIGTERM/SIGINT.
//!
//! Events are few and closed: a worker's tick, a capacity snapshot, a reload,
//! a stop. Workers never wait on each other: each evaluates its own cluster
//! on its own timer, and sends through the shared, fair per-action limiters.
//!
//! # Rules
//! - READY=1 is sent once the config is valid, the state is loaded and the listener is
//!   bound; it never waits on Prometheus or the EMR API. `--ready-file` is written just
//!   before, once the admin server is spawned; if it cannot be written, `run` fails.

pub(crate) mod actuator;
pub(crate) mod admin;
pub(crate) mod capacity;
pub(crate) mod choose;
pub(crate) mod ha;
pub(crate) mod manual;
pub(crate) mod operation;
pub(crate) mod operator;
pub(crate) mod owners;
pub(crate) mod status;
pub(crate) mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::{self, ClusterConfig, Config, ConfigError};
use crate::connect::Connections;
use crate::history::History;
use crate::prom::Prometheus;
use crate::state::{State, StateError, StateStore, Store};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::notify;
use crate::tencent::EmrClient;
use owners::Owners;
use status::StatusBoard;

/// The file in `state_dir` holding the running daemon's admin address, for
/// manual orders typed next to it.
pub(crate) const ADMIN_ADDR_FILE: &str = "admin.addr";

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state directory could not be used.
    #[error(transparent)]
    State(#[from] StateError),
    /// The admin listener could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// A client could not be built.
    #[error("{0}")]
    Setup(String),
    /// A client the configuration describes could not be built.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// `[ha]` leadership could not be set up.
    #[error(transparent)]
    Ha(#[from] ha::HaSetupError),
    /// `--ready-file` could not be written.
    #[error("cannot write the ready file {}: {reason}", path.display())]
    ReadyFile {
        /// The file asked for.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// The durable state and the one writer of its store.
#[derive(Debug)]
pub(crate) struct StateHandle {
    store: Store,
    state: std::sync::Mutex<State>,
    save_lock: tokio::sync::Mutex<()>,
    /// Why the last save of the file store failed, while it keeps failing.
    write_error: std::sync::Mutex<Option<String>>,
    /// Cancelled once the store is lost: `state_dir` was deleted or
    /// replaced under the process ([`StateError::Lost`]).
    lost: CancellationToken,
}

impl StateHandle {
    /// Wraps an opened file store and its loaded state.
    pub(crate) fn new(store: StateStore, state: State) -> Self {
        Self::over(Store::File(store), state)
    }

    /// Wraps any store and the state loaded from it.
    pub(crate) fn over(store: Store, state: State) -> Self {
        Self {
            store,
            state: std::sync::Mutex::new(state),
            save_lock: tokio::sync::Mutex::new(()),
            write_error: std::sync::Mutex::new(None),
            lost: CancellationToken::new(),
        }
    }

    /// Why the state cannot be written now, when the last save of the file
    /// store failed (etcd's failures show as `etcd_unreachable` instead).
    pub(crate) fn write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Cancelled once the store is lost (see [`StateError::Lost`]).
    pub(crate) fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Checks that this process still owns the store (the lock file is the
    /// one it holds); a lost store cancels [`lost`](Self::lost).
    pub(crate) fn check(&self) -> Result<(), StateError> {
        let checked = self.store.check();
        if let Err(e) = &checked {
            self.note(e);
        }
        checked
    }

    fn note(&self, e: &StateError) {
        if matches!(e, StateError::Lost { .. }) {
            self.lost.cancel();
        }
        if matches!(self.store, Store::File(_)) {
            *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
        }
    }

    /// The store (the file, or etcd with `[ha]`).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// Replaces the state in memory (a new leader's load, a standby's
    /// refresh); nothing is written.
    pub(crate) async fn replace(&self, state: State) {
        let _turn = self.save_lock.lock().await;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Reads or changes the state in memory.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Writes the current state to disk (atomically). Later calls always
    /// write newer state than earlier ones.
    pub(crate) async fn save(&self) -> Result<(), StateError> {
        let _turn = self.save_lock.lock().await;
        if self.lost.is_cancelled() {
            return Err(StateError::Lost {
                dir: PathBuf::new(),
            });
        }
        let snapshot = self.with(|s| s.clone());
        let saved = self.store.save(&snapshot).await;
        match &saved {
            Ok(()) => *self.write_error.lock().unwrap_or_else(|e| e.into_inner()) = None,
            Err(e) => self.note(e),
        }
        saved
    }

    /// Changes the state and writes it before returning.
    pub(crate) async fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, StateError> {
        let r = self.with(f);
        self.save().await?;
        Ok(r)
    }
}

/// Everything the workers share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Decision time.
    pub clock: SharedClock,
    /// The validated configuration.
    pub config: Config,
    /// EMR API client (limiters inside).
    pub emr: EmrClient,
    /// Prometheus client.
    pub prom: Prometheus,
    /// The one HTTP client (for the YARN ResourceManagers).
    pub http: reqwest::Client,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Durable state.
    pub state: Arc<StateHandle>,
    /// Per-cluster status for the admin server.
    pub board: Arc<StatusBoard>,
    /// Latest capacity snapshot.
    pub capacity: watch::Receiver<capacity::Snapshot>,
    /// This generation's role: single host, leader or standby.
    pub role: ha::Role,
    /// Leadership, with `[ha]`.
    pub ha: Option<Arc<ha::Ha>>,
    /// What the daemon did, kept and told to the webhooks.
    pub history: Arc<History>,
}

/// Options of `run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file, re-read on SIGHUP.
    pub config_path: PathBuf,
    /// Move an unreadable state file aside instead of refusing to start.
    pub reset_state: bool,
    /// Where to write the bound admin address once the listener is up.
    pub ready_file: Option<PathBuf>,
    /// Fixed credentials (the demo); `None` uses the credential chain.
    pub credentials: Option<crate::tencent::Credentials>,
}

/// Events the main loop reacts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the configuration.
    Reload,
    /// Stop gracefully.
    Stop,
}

/// One cluster's owner: its config, its stop signal and its task.
struct Worker {
    config: ClusterConfig,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Worker {
    /// Stops the owner at its next safe point (between steps) and waits for it.
    async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(message = "A cluster owner ended abnormally.", cluster = %self.config.instance_id, error = %e);
        }
    }
}

struct Generation {
    config: Config,
    poller: (CancellationToken, tokio::task::JoinHandle<()>),
    capacity_tx: Arc<watch::Sender<capacity::Snapshot>>,
    workers: BTreeMap<String, Worker>,
    shared: Arc<Shared>,
    role: ha::Role,
}

/// What every generation of workers shares and outlives reloads.
struct Base {
    connections: Connections,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    state: Arc<StateHandle>,
    board: Arc<StatusBoard>,
    owners: Arc<Owners>,
    ha: Option<Arc<ha::Ha>>,
    history: Arc<History>,
}

fn cluster_labels(config: &Config) -> Vec<(String, Vec<String>)> {
    config
        .clusters
        .iter()
        .map(|c| {
            (
                c.instance_id.clone(),
                c.rules.iter().map(|r| r.name.to_string()).collect(),
            )
        })
        .collect()
}

/// Runs the daemon until `control` says stop. `listener` is the bound admin socket.
pub async fn run(
    options: RunOptions,
    config: Config,
    clock: SharedClock,
    listener: tokio::net::TcpListener,
    mut control: tokio::sync::mpsc::Receiver<Control>,
) -> Result<(), DaemonError> {
    let admin_addr = listener.local_addr().map_err(|e| DaemonError::Listen {
        addr: config.daemon.listen,
        reason: e.to_string(),
    })?;
    let metrics = Arc::new(Metrics::new());
    let ha = match &config.ha {
        None => None,
        Some(_) => Some(ha::Ha::new(
            &config,
            format!("http://{admin_addr}"),
            metrics.clone(),
        )?),
    };
    let state = open_state(&config, ha.as_ref(), options.reset_state)?;
    metrics.register_clusters(&cluster_labels(&config));
    metrics.config_reloaded(true, clock.now());
    let board = Arc::new(StatusBoard::new(clock.clone()));

    tracing::info!(message = "Admin server listening.", addr = %admin_addr);
    let owners = Arc::new(Owners::new());
    let connections = Connections::new(&config, options.credentials.clone())?;
    let history = open_history(&config, ha.as_ref()).await;
    listen(&history, &config, &connections.http, &metrics);
    // Reloads change the token in place: it protects the next request.
    let token = admin::TokenSource::new(config.daemon.admin_token_file.clone());
    let admin_state = admin::AdminState {
        metrics: metrics.clone(),
        board: board.clone(),
        owners: owners.clone(),
        token: token.clone(),
        ha: ha.clone(),
        http: connections.http.clone(),
        state: Some(state.clone()),
        bound: Some(admin_addr),
        history: history.clone(),
    };
    // Manual orders find the daemon that holds this state directory here.
    let addr_file = config.daemon.state_dir.join(ADMIN_ADDR_FILE);
    let (admin_cancel, admin_task) = serve_admin(
        listener,
        admin_state,
        admin_addr,
        (&addr_file, options.ready_file.as_deref()),
    )?;

    let base = Base {
        connections,
        clock: clock.clone(),
        metrics: metrics.clone(),
        state: state.clone(),
        board: board.clone(),
        owners,
        ha: ha.clone(),
        history: history.clone(),
    };
    let role = if ha.is_some() {
        ha::Role::Standby
    } else {
        ha::Role::Single
    };
    let generation = start_generation(&base, config, None, role).await?;
    // READY=1 never waits for etcd or leadership.
    notify::ready();
    tracing::info!(
        message = "Daemon ready.",
        clusters = generation.workers.len(),
        role = role.label(),
    );
    let elector = ha.as_ref().map(|h| {
        let cancel = CancellationToken::new();
        (cancel.clone(), tokio::spawn(h.clone().run(cancel)))
    });

    let watchdog = watchdog(board.clone());

    let (generation, role) = serve_until_stopped(
        &mut control,
        (&options, &base, &token),
        generation,
        (role, ha.as_ref().map(|h| h.watch())),
    )
    .await?;

    notify::stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    shut_down(
        generation,
        elector,
        (&state, &addr_file),
        (admin_cancel, admin_task),
        ha.as_ref().map(|h| (h, role)),
    )
    .await?;
    // Every owner has stopped: nothing records any more.
    history.close(Duration::from_secs(2)).await;
    Ok(())
}

/// The history: `state_dir/history.jsonl`, or with `[ha]` etcd (read once
/// this daemon leads; a standby follows it). An unreadable file is logged
/// and the daemon starts with what it could read.
async fn open_history(config: &Config, ha: Option<&Arc<ha::Ha>>) -> Arc<History> {
    use crate::history::log::{EtcdLog, FileLog};
    let max = config.daemon.history_max;
    match ha {
        None => {
            let history = History::start(
                crate::history::Log::File(FileLog::new(&config.daemon.state_dir, max)),
                max,
            );
            match history.load().await {
                Ok(n) => tracing::info!(message = "History loaded.", events = n),
                Err(e) => {
                    tracing::error!(message = "Cannot read the history; starting without the old events.", error = %e)
                }
            }
            history
        }
        Some(h) => {
            let prefix = config.ha.as_ref().map_or("", |c| c.prefix.as_str());
            let history = History::start(
                crate::history::Log::Etcd(EtcdLog::new(h.etcd().clone(), prefix, max)),
                max,
            );
            history.follow(true);
            history
        }
    }
}

/// Points the history's events at `config`'s webhooks (none: nobody).
fn listen(history: &History, config: &Config, http: &reqwest::Client, metrics: &Arc<Metrics>) {
    if config.notify.webhooks.is_empty() {
        metrics.register_webhooks(std::iter::empty());
        history.listen(None);
    } else {
        let hooks =
            crate::webhook::Webhooks::start(&config.notify.webhooks, http.clone(), metrics.clone());
        history.listen(Some(Arc::new(hooks)));
    }
}

/// Starts the admin server on `listener`, then writes its address to
/// `addr_file` (and `ready_file`); a write that fails stops the server.
fn serve_admin(
    listener: tokio::net::TcpListener,
    admin_state: admin::AdminState,
    addr: std::net::SocketAddr,
    (addr_file, ready_file): (&std::path::Path, Option<&std::path::Path>),
) -> Result<(CancellationToken, tokio::task::JoinHandle<()>), DaemonError> {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(admin::serve(listener, admin_state, cancel.clone()));
    for path in std::iter::once(addr_file).chain(ready_file) {
        if let Err(e) = write_ready_file(path, addr) {
            cancel.cancel();
            return Err(e);
        }
    }
    Ok((cancel, task))
}

/// Pets systemd's watchdog while the loops are healthy, when systemd asks
/// for it.
fn watchdog(board: Arc<StatusBoard>) -> Option<tokio::task::JoinHandle<()>> {
    notify::watchdog_period().map(|period| {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if board.healthy() {
                    notify::watchdog();
                }
            }
        })
    })
}

/// Serves reloads and role changes until a stop, a closed control channel
/// or a lost state directory; returns the last generation and role.
async fn serve_until_stopped(
    control: &mut tokio::sync::mpsc::Receiver<Control>,
    (options, base, token): (&RunOptions, &Base, &admin::TokenSource),
    mut generation: Generation,
    (mut role, mut roles): (ha::Role, Option<watch::Receiver<ha::HaView>>),
) -> Result<(Generation, ha::Role), DaemonError> {
    // The state lock is re-checked before every write and once a second:
    // a state_dir deleted or replaced under the daemon stops it.
    let mut lock_check = tokio::time::interval(Duration::from_secs(1));
    lock_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let event = tokio::select! {
            e = control.recv() => match e {
                Some(e) => e,
                None => break,
            },
            () = base.state.lost().cancelled() => {
                tracing::error!(
                    message = "The state directory was deleted or replaced; sending nothing more and exiting so systemd restarts the daemon under a fresh lock.",
                    dir = %config_state_dir(&generation.config).display(),
                );
                break;
            }
            _ = lock_check.tick() => {
                let _ = base.state.check();
                continue;
            }
            r = role_change(&mut roles, role) => {
                tracing::info!(message = "Role changed.", from = role.label(), to = r.label());
                role = r;
                let config = generation.config.clone();
                generation = start_generation(base, config, Some(generation), role).await?;
                continue;
            }
        };
        match event {
            Control::Stop => break,
            Control::Reload => {
                notify::reloading();
                generation = reload(options, base, token, generation, role).await?;
                notify::ready();
            }
        }
    }
    Ok((generation, role))
}

/// The state: the file store under its lock, or (with `[ha]`) an empty
/// state that the etcd store fills on taking the lead.
fn open_state(
    config: &Config,
    ha: Option<&Arc<ha::Ha>>,
    reset: bool,
) -> Result<Arc<StateHandle>, DaemonError> {
    Ok(match ha {
        None => {
            let (store, state) = StateStore::open(&config.daemon.state_dir, reset)?;
            tracing::info!(message = "State loaded.", dir = %config.daemon.state_dir.display(), clusters = state.clusters.len());
            Arc::new(StateHandle::new(store, state))
        }
        Some(h) => {
            // The state is loaded from etcd on taking the lead; the
            // directory keeps only admin.addr (and an import source).
            std::fs::create_dir_all(&config.daemon.state_dir).map_err(|e| {
                DaemonError::Setup(format!(
                    "cannot create daemon.state_dir {}: {e}",
                    config.daemon.state_dir.display()
                ))
            })?;
            let prefix = config.ha.as_ref().map_or("", |c| c.prefix.as_str());
            let store =
                crate::state::etcd::EtcdStore::new(h.etcd().clone(), prefix, h.fence_cell());
            Arc::new(StateHandle::over(
                Store::Etcd(Box::new(store)),
                State::default(),
            ))
        }
    })
}

/// Re-reads the configuration (SIGHUP): a valid one replaces the running
/// generation of owners, an invalid one is refused and the running one kept.
async fn reload(
    options: &RunOptions,
    base: &Base,
    token: &admin::TokenSource,
    generation: Generation,
    role: ha::Role,
) -> Result<Generation, DaemonError> {
    match config::load(&options.config_path) {
        Ok(new) => {
            if new.daemon.listen != generation.config.daemon.listen {
                tracing::warn!(
                    message =
                        "daemon.listen changed; the new address takes effect after a restart."
                );
            }
            if new.daemon.state_dir != generation.config.daemon.state_dir {
                tracing::warn!(
                    message =
                        "daemon.state_dir changed; the new directory takes effect after a restart."
                );
            }
            if new.daemon.admin_token_file != generation.config.daemon.admin_token_file {
                tracing::info!(
                    message = "daemon.admin_token_file changed; the admin API uses it from now on."
                );
            }
            token.set(new.daemon.admin_token_file.clone());
            // The webhooks' URL and secret files are read again at every
            // reload: a rotated URL applies with the reload that follows it.
            if new.notify != generation.config.notify || !new.notify.webhooks.is_empty() {
                tracing::info!(message = "[notify] read again; the webhooks use it from now on.");
                listen(&base.history, &new, &base.connections.http, &base.metrics);
            }
            if new.daemon.history_max != generation.config.daemon.history_max {
                tracing::warn!(
                    message =
                        "daemon.history_max changed; the new bound takes effect after a restart."
                );
            }
            if new.ha != generation.config.ha {
                tracing::warn!(
                    message = "[ha] changed; the new settings take effect after a restart."
                );
            }
            base.metrics.register_clusters(&cluster_labels(&new));
            let gone: Vec<String> = generation
                .workers
                .keys()
                .filter(|id| new.cluster(id).is_none())
                .cloned()
                .collect();
            let generation = start_generation(base, new, Some(generation), role).await?;
            for id in &gone {
                base.metrics.forget_cluster(id);
                base.board.forget(id);
            }
            base.metrics.config_reloaded(true, base.clock.now());
            tracing::info!(
                message = "Configuration reloaded.",
                clusters = generation.workers.len()
            );
            Ok(generation)
        }
        Err(e) => {
            base.metrics.config_reloaded(false, base.clock.now());
            match &e {
                ConfigError::Invalid { issues, .. } => {
                    for issue in issues {
                        tracing::error!(message = "Reload refused; keeping the running configuration.", key = %issue.path, problem = %issue.message);
                    }
                }
                other => {
                    tracing::error!(message = "Reload refused; keeping the running configuration.", error = %other)
                }
            }
            Ok(generation)
        }
    }
}

/// Stops in order: the elector (no new campaign), then every owner (each
/// finishes its step: an order being sent is answered and recorded, within
/// 9 s), then the admin server; the last state is written and, with
/// `[ha]`, the lease given up.
async fn shut_down(
    generation: Generation,
    elector: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    (state, addr_file): (&StateHandle, &std::path::Path),
    (admin_cancel, admin_task): (CancellationToken, tokio::task::JoinHandle<()>),
    ha: Option<(&Arc<ha::Ha>, ha::Role)>,
) -> Result<(), DaemonError> {
    tracing::info!(message = "Stopping: finishing in-flight work.");
    // The elector stops first (no new campaign); the fence stays until the
    // last state is written, then the lease is revoked.
    if let Some((cancel, task)) = elector {
        cancel.cancel();
        let _ = task.await;
    }
    let generation_dir = generation.config.daemon.state_dir.clone();
    let Generation {
        poller, workers, ..
    } = generation;
    poller.0.cancel();
    for w in workers.values() {
        w.cancel.cancel();
    }
    // Every owner was told to stop; each finishes its step (an order being
    // sent is answered and recorded) before it ends.
    let all = async move {
        for w in workers.into_values() {
            w.stop().await;
        }
        let _ = poller.1.await;
    };
    if tokio::time::timeout(Duration::from_secs(9), all)
        .await
        .is_err()
    {
        tracing::warn!(message = "Workers did not finish in time; their intents are on disk.");
    }
    let lost = state.lost().is_cancelled();
    if !lost {
        let _ = std::fs::remove_file(addr_file);
    }
    admin_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(500), admin_task).await;
    if lost {
        tracing::info!(message = "Stopped: the state directory was lost.");
        return Err(DaemonError::State(StateError::Lost {
            dir: generation_dir,
        }));
    }
    match ha {
        None => state.save().await?,
        Some((h, ha::Role::Leader)) => {
            if let Err(e) = state.save().await {
                tracing::warn!(message = "Cannot write the last state to etcd.", error = %e);
            }
            h.resign().await;
        }
        Some((h, _)) => h.resign().await,
    }
    tracing::info!(message = "Stopped.");
    Ok(())
}

/// The EMR client (gated on the leader's fence with `[ha]`) and the
/// Prometheus client of `config`, on the process's shared connections.
fn clients(
    base: &Base,
    config: &Config,
) -> Result<(crate::tencent::EmrClient, crate::prom::Prometheus), DaemonError> {
    let observer: Arc<dyn crate::tencent::ApiObserver> = base.metrics.clone();
    let mut emr = base.connections.emr(config, observer)?;
    if let Some(h) = &base.ha {
        let gate: Arc<dyn crate::tencent::SendGate> = h.clone();
        emr = emr.with_gate(gate);
    }
    let prom = base.connections.prometheus(config)?;
    Ok((emr, prom))
}

/// What a generation leaves to its successor.
struct Retired {
    /// The capacity channel, kept so status readers never see a gap.
    capacity_tx: Arc<watch::Sender<capacity::Snapshot>>,
    /// The owners whose cluster did not change.
    kept: BTreeMap<String, Worker>,
    /// The shared clients, reused when the global settings did not change.
    shared: Option<Arc<Shared>>,
}

/// Stops `previous`'s poller and every owner whose cluster changed (each
/// joined before its successor starts); keeps the others when the global
/// settings are the same.
async fn retire(
    base: &Base,
    previous: Option<Generation>,
    config: &Config,
    globals_same: bool,
) -> Retired {
    let Some(prev) = previous else {
        let (tx, _) = watch::channel(capacity::Snapshot::default());
        return Retired {
            capacity_tx: Arc::new(tx),
            kept: BTreeMap::new(),
            shared: None,
        };
    };
    prev.poller.0.cancel();
    let _ = prev.poller.1.await;
    let mut kept = BTreeMap::new();
    for (id, worker) in prev.workers {
        if globals_same && config.cluster(&id) == Some(&worker.config) {
            kept.insert(id, worker);
        } else {
            worker.stop().await;
            base.owners.remove(&id);
        }
    }
    Retired {
        capacity_tx: prev.capacity_tx,
        kept,
        shared: Some(prev.shared),
    }
}

/// Starts an owner for every configured cluster not already in `kept`.
fn spawn_owners(base: &Base, shared: &Arc<Shared>, kept: &mut BTreeMap<String, Worker>) {
    let config = &shared.config;
    for cluster in &config.clusters {
        if kept.contains_key(&cluster.instance_id) {
            continue;
        }
        let cancel = CancellationToken::new();
        let real = base.clock.real(config.daemon.evaluation_interval);
        base.board
            .expect(&cluster.instance_id, real * 3 + Duration::from_secs(10));
        let mailbox = base.owners.register(&cluster.instance_id);
        let task = tokio::spawn(worker::run(
            shared.clone(),
            cluster.clone(),
            cancel.clone(),
            mailbox,
        ));
        kept.insert(
            cluster.instance_id.clone(),
            Worker {
                config: cluster.clone(),
                cancel,
                task,
            },
        );
    }
}

/// Waits until the elector reports a role other than `current`.
async fn role_change(
    roles: &mut Option<watch::Receiver<ha::HaView>>,
    current: ha::Role,
) -> ha::Role {
    let Some(rx) = roles else {
        return std::future::pending().await;
    };
    loop {
        let now = rx.borrow_and_update().role;
        if now != current {
            return now;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// A new leader loads the state from etcd, importing `state_dir` once when
/// etcd holds none. Returns false if it stopped leading before it could.
async fn take_over(h: &ha::Ha, state: &StateHandle, config: &Config) -> bool {
    let Store::Etcd(store) = state.store() else {
        return true;
    };
    loop {
        if !h.leads() {
            return false;
        }
        match store.load().await {
            Ok(Some(loaded)) => {
                tracing::info!(
                    message = "Leader: state loaded from etcd.",
                    clusters = loaded.clusters.len()
                );
                state.replace(loaded).await;
                return true;
            }
            Ok(None) => {
                let local = match crate::state::read_only(&config.daemon.state_dir) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(message = "etcd holds no state and state_dir cannot be imported; starting empty.", error = %e);
                        State::default()
                    }
                };
                match store.create(&local).await {
                    Ok(true) => {
                        if !local.clusters.is_empty() {
                            tracing::info!(message = "Imported state_dir into etcd (first start with [ha]).", dir = %config.daemon.state_dir.display(), clusters = local.clusters.len());
                        }
                        state.replace(local).await;
                        return true;
                    }
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(message = "Cannot write the first state to etcd; retrying.", error = %e)
                    }
                }
            }
            Err(e) => {
                tracing::error!(message = "Cannot load the state from etcd; nothing is done until it can be.", error = %e)
            }
        }
        tokio::time::sleep(h.round()).await;
    }
}

/// With `[ha]`: a standby follows the leader's history; a new leader reads
/// it (the old leader's events included) before its owners record.
async fn follow_as(history: &History, role: ha::Role) {
    if role == ha::Role::Leader {
        match history.load().await {
            Ok(n) => tracing::info!(message = "Leader: history loaded from etcd.", events = n),
            Err(e) => {
                tracing::warn!(message = "Cannot read the history from etcd; new events are still kept.", error = %e)
            }
        }
        history.follow(false);
    } else {
        history.follow(true);
    }
}

/// Writes `addr` to `path` as one line, atomically: `PATH.tmp` in the same
/// directory, fsync, rename. A reader sees either no file or the whole line.
fn write_ready_file(path: &Path, addr: std::net::SocketAddr) -> Result<(), DaemonError> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp)
        .and_then(|mut file| {
            writeln!(file, "{addr}")?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|error| {
        let _ = std::fs::remove_file(&tmp);
        tracing::error!(message = "Cannot write the ready file.", path = %path.display(), %error);
        DaemonError::ReadyFile {
            path: path.to_path_buf(),
            reason: error.to_string(),
        }
    })
}

/// Starts the workers of `config`. Owners whose cluster (or the shared
/// settings) changed are stopped and joined before their successors start,
/// so two owners never act on one cluster. The HTTP client, the credentials
/// and the limiters are the base's: a reload never makes new ones.
async fn start_generation(
    base: &Base,
    config: Config,
    previous: Option<Generation>,
    role: ha::Role,
) -> Result<Generation, DaemonError> {
    let old_role = previous.as_ref().map(|p| p.role);
    let globals_same = previous.as_ref().is_some_and(|p| {
        p.role == role
            && p.config.daemon == config.daemon
            && p.config.prometheus == config.prometheus
            && p.config.tencent == config.tencent
    });
    // Build first: a failure leaves the running generation untouched.
    let fresh = if globals_same {
        None
    } else {
        Some(clients(base, &config)?)
    };
    if previous
        .as_ref()
        .is_some_and(|p| p.config.tencent.requests_per_second != config.tencent.requests_per_second)
    {
        base.connections
            .limiters
            .requota_scale_out(config.tencent.requests_per_second)
            .await;
    }
    let Retired {
        capacity_tx,
        mut kept,
        shared: old_shared,
    } = retire(base, previous, &config, globals_same).await;
    // Every owner and the poller of the last generation have stopped: a
    // new leader now loads the state (nothing else writes it in memory).
    if role == ha::Role::Leader
        && old_role != Some(ha::Role::Leader)
        && let Some(h) = &base.ha
        && !take_over(h, &base.state, &config).await
    {
        tracing::warn!(message = "Lost the lead while loading the state; the owners stay fenced.");
    }
    if base.ha.is_some() && role != old_role.unwrap_or(ha::Role::Standby) {
        follow_as(&base.history, role).await;
    }
    let (emr, prom) = match (fresh, &old_shared) {
        (Some(clients), _) => clients,
        (None, Some(old)) => (old.emr.clone(), old.prom.clone()),
        (None, None) => unreachable!("a first generation always builds its clients"),
    };
    let shared = Arc::new(Shared {
        clock: base.clock.clone(),
        config: config.clone(),
        emr,
        prom,
        http: base.connections.http.clone(),
        metrics: base.metrics.clone(),
        state: base.state.clone(),
        board: base.board.clone(),
        capacity: capacity_tx.subscribe(),
        role,
        ha: base.ha.clone(),
        history: base.history.clone(),
    });
    let poller_cancel = CancellationToken::new();
    let poller_task = tokio::spawn(capacity::poll(
        shared.clone(),
        capacity_tx.clone(),
        poller_cancel.clone(),
    ));
    spawn_owners(base, &shared, &mut kept);
    Ok(Generation {
        config,
        poller: (poller_cancel, poller_task),
        capacity_tx,
        workers: kept,
        shared,
        role,
    })
}

/// Validates the config, binds the admin port and runs until SIGTERM/SIGINT;
/// SIGHUP reloads. A second stop signal exits at once.
pub(crate) async fn run_until_signalled(
    options: RunOptions,
    clock: SharedClock,
) -> Result<(), DaemonError> {
    let config = config::load(&options.config_path)?;
    let listener = tokio::net::TcpListener::bind(config.daemon.listen)
        .await
        .map_err(|e| DaemonError::Listen {
            addr: config.daemon.listen,
            reason: e.to_string(),
        })?;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(signals(tx));
    run(options, config, clock, listener, rx).await
}

async fn signals(tx: tokio::sync::mpsc::Sender<Control>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!(message = "Cannot install signal handlers.");
        return;
    };
    let mut stopping = false;
    loop {
        let event = tokio::select! {
            _ = term.recv() => Control::Stop,
            _ = int.recv() => Control::Stop,
            _ = hup.recv() => Control::Reload,
        };
        if event == Control::Stop {
            if stopping {
                tracing::warn!(message = "Second stop signal; exiting at once.");
                std::process::exit(1);
            }
            stopping = true;
            tracing::info!(message = "Stop signal received.");
        } else {
            tracing::info!(message = "SIGHUP received; reloading.");
        }
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

fn config_state_dir(config: &Config) -> &Path {
    &config.daemon.state_dir
}
