//! The daemon: one worker per cluster, a capacity poller, the admin server,
//! reload on SIGHUP and a graceful stop on SIGTERM/SIGINT.
//!
//! Events are few and closed: a worker's tick, a capacity snapshot, a reload,
//! a stop. Workers never wait on each other: each evaluates its own cluster
//! on its own timer, and sends through the shared, fair per-action limiters.

pub mod actuator;
pub mod capacity;
pub mod operation;
pub mod status;
pub mod worker;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::SharedClock;
use crate::config::{self, ClusterConfig, Config, ConfigError};
use crate::prom::Prometheus;
use crate::state::{State, StateError, StateStore};
use crate::telemetry::metrics::Metrics;
use crate::telemetry::{admin, notify};
use crate::tencent::EmrClient;
use status::StatusBoard;

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
    /// `--ready-file` could not be written.
    #[error("cannot write the ready file {}: {reason}", path.display())]
    ReadyFile {
        /// The file asked for.
        path: PathBuf,
        /// The OS error.
        reason: String,
    },
}

/// The durable state and the one writer of its file.
#[derive(Debug)]
pub struct StateHandle {
    store: StateStore,
    state: std::sync::Mutex<State>,
    save_lock: tokio::sync::Mutex<()>,
}

impl StateHandle {
    /// Wraps an opened store and its loaded state.
    pub fn new(store: StateStore, state: State) -> Self {
        Self {
            store,
            state: std::sync::Mutex::new(state),
            save_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Reads or changes the state in memory.
    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Writes the current state to disk (atomically). Later calls always
    /// write newer state than earlier ones.
    pub async fn save(&self) -> Result<(), StateError> {
        let _turn = self.save_lock.lock().await;
        let snapshot = self.with(|s| s.clone());
        tokio::task::block_in_place(|| self.store.save(&snapshot))
    }

    /// Changes the state and writes it before returning.
    pub async fn update<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, StateError> {
        let r = self.with(f);
        self.save().await?;
        Ok(r)
    }
}

/// Everything the workers share.
#[derive(Debug)]
pub struct Shared {
    /// Decision time.
    pub clock: SharedClock,
    /// The validated configuration.
    pub config: Config,
    /// EMR API client (limiters inside).
    pub emr: EmrClient,
    /// Prometheus client.
    pub prom: Prometheus,
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Durable state.
    pub state: Arc<StateHandle>,
    /// Per-cluster status for the admin server.
    pub board: Arc<StatusBoard>,
    /// Latest capacity snapshot.
    pub capacity: watch::Receiver<capacity::Snapshot>,
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

struct Generation {
    config: Config,
    cancel: CancellationToken,
    poller: CancellationToken,
    capacity_tx: Arc<watch::Sender<capacity::Snapshot>>,
    workers: BTreeMap<String, (ClusterConfig, CancellationToken)>,
    tracker: TaskTracker,
    shared: Arc<Shared>,
}

/// Builds the clients a configuration describes.
fn clients(
    config: &Config,
    metrics: &Arc<Metrics>,
    credentials: Option<&crate::tencent::Credentials>,
) -> Result<(EmrClient, Prometheus), DaemonError> {
    let http = crate::tencent::client::http_client(
        config.tencent.connect_timeout,
        config.tencent.request_timeout,
    )
    .map_err(DaemonError::Setup)?;
    let observer: Arc<dyn crate::tencent::ApiObserver> = metrics.clone();
    let emr = match credentials {
        Some(c) => crate::commands::emr_client_from(
            config,
            http.clone(),
            crate::tencent::CredentialChain::fixed(c.clone(), http.clone()),
            observer,
        ),
        None => crate::commands::emr_client_with(config, http.clone(), observer),
    }
    .map_err(DaemonError::Setup)?;
    let prom = Prometheus::new(
        http,
        config.prometheus.url.as_str(),
        config.prometheus.timeout,
        config.prometheus.auth.clone(),
    )
    .map_err(DaemonError::Setup)?;
    Ok((emr, prom))
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
    let (store, state) = StateStore::open(&config.daemon.state_dir, options.reset_state)?;
    tracing::info!(message = "State loaded.", dir = %config.daemon.state_dir.display(), clusters = state.clusters.len());
    let state = Arc::new(StateHandle::new(store, state));
    let metrics = Arc::new(Metrics::new());
    metrics.register_clusters(&cluster_labels(&config));
    metrics.config_reloaded(true, clock.now());
    let board = Arc::new(StatusBoard::new(clock.clone()));

    let admin_addr = listener.local_addr().map_err(|e| DaemonError::Listen {
        addr: config.daemon.listen,
        reason: e.to_string(),
    })?;
    tracing::info!(message = "Admin server listening.", addr = %admin_addr);
    let admin_cancel = CancellationToken::new();
    let admin_task = tokio::spawn(admin::serve(
        listener,
        admin::AdminState {
            metrics: metrics.clone(),
            board: board.clone(),
            state: state.clone(),
            token_file: config.daemon.admin_token_file.clone(),
            clock: clock.clone(),
        },
        admin_cancel.clone(),
    ));
    if let Some(path) = &options.ready_file
        && let Err(e) = write_ready_file(path, admin_addr)
    {
        admin_cancel.cancel();
        return Err(e);
    }

    let mut generation = start_generation(
        options.credentials.as_ref(),
        config,
        clock.clone(),
        metrics.clone(),
        state.clone(),
        board.clone(),
        None,
    )?;
    notify::ready();
    tracing::info!(
        message = "Daemon ready.",
        clusters = generation.workers.len()
    );

    let watchdog = notify::watchdog_period().map(|period| {
        let board = board.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                if board.healthy() {
                    notify::watchdog();
                }
            }
        })
    });

    while let Some(event) = control.recv().await {
        match event {
            Control::Stop => break,
            Control::Reload => {
                notify::reloading();
                match config::load(&options.config_path) {
                    Ok(new) => {
                        if new.daemon.listen != generation.config.daemon.listen {
                            tracing::warn!(
                                message = "daemon.listen changed; the new address takes effect after a restart."
                            );
                        }
                        if new.daemon.state_dir != generation.config.daemon.state_dir {
                            tracing::warn!(
                                message = "daemon.state_dir changed; the new directory takes effect after a restart."
                            );
                        }
                        metrics.register_clusters(&cluster_labels(&new));
                        for gone in generation
                            .workers
                            .keys()
                            .filter(|id| new.cluster(id).is_none())
                        {
                            metrics.forget_cluster(gone);
                            board.forget(gone);
                        }
                        generation = start_generation(
                            options.credentials.as_ref(),
                            new,
                            clock.clone(),
                            metrics.clone(),
                            state.clone(),
                            board.clone(),
                            Some(generation),
                        )?;
                        metrics.config_reloaded(true, clock.now());
                        tracing::info!(
                            message = "Configuration reloaded.",
                            clusters = generation.workers.len()
                        );
                    }
                    Err(e) => {
                        metrics.config_reloaded(false, clock.now());
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
                    }
                }
                notify::ready();
            }
        }
    }

    notify::stopping();
    tracing::info!(message = "Stopping: finishing in-flight work.");
    generation.cancel.cancel();
    generation.tracker.close();
    if tokio::time::timeout(Duration::from_secs(9), generation.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(message = "Workers did not finish in time; their intents are on disk.");
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    admin_cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_millis(500), admin_task).await;
    state.save().await?;
    tracing::info!(message = "Stopped.");
    Ok(())
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

fn start_generation(
    credentials: Option<&crate::tencent::Credentials>,
    config: Config,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    state: Arc<StateHandle>,
    board: Arc<StatusBoard>,
    previous: Option<Generation>,
) -> Result<Generation, DaemonError> {
    let globals_same = previous.as_ref().is_some_and(|p| {
        p.config.daemon == config.daemon
            && p.config.prometheus == config.prometheus
            && p.config.tencent == config.tencent
    });
    if let Some(prev) = &previous
        && !globals_same
    {
        prev.cancel.cancel();
    }
    let (shared, tracker, cancel, capacity_tx, mut kept) = match previous {
        Some(prev) if globals_same => {
            prev.poller.cancel();
            // Same clients; keep workers whose cluster did not change.
            let mut kept = BTreeMap::new();
            for (id, (old, token)) in prev.workers {
                if config.cluster(&id) == Some(&old) {
                    kept.insert(id, (old, token));
                } else {
                    token.cancel();
                }
            }
            let shared = Arc::new(Shared {
                config: config.clone(),
                ..clone_shared(&prev.shared)
            });
            (shared, prev.tracker, prev.cancel, prev.capacity_tx, kept)
        }
        _ => {
            let (emr, prom) = clients(&config, &metrics, credentials)?;
            let cancel = CancellationToken::new();
            let (tx, rx) = watch::channel(capacity::Snapshot::default());
            let tx = Arc::new(tx);
            let tracker = TaskTracker::new();
            let shared = Arc::new(Shared {
                clock: clock.clone(),
                config: config.clone(),
                emr,
                prom,
                metrics: metrics.clone(),
                state: state.clone(),
                board: board.clone(),
                capacity: rx,
            });
            (shared, tracker, cancel, tx, BTreeMap::new())
        }
    };
    let poller = cancel.child_token();
    tracker.spawn(capacity::poll(
        shared.clone(),
        capacity_tx.clone(),
        poller.clone(),
    ));
    for cluster in &config.clusters {
        if kept.contains_key(&cluster.instance_id) {
            continue;
        }
        let token = cancel.child_token();
        let real = clock.real(config.daemon.evaluation_interval);
        board.expect(&cluster.instance_id, real * 3 + config.prometheus.timeout);
        tracker.spawn(worker::run(shared.clone(), cluster.clone(), token.clone()));
        kept.insert(cluster.instance_id.clone(), (cluster.clone(), token));
    }
    Ok(Generation {
        config,
        cancel,
        poller,
        capacity_tx,
        workers: kept,
        tracker,
        shared,
    })
}

fn clone_shared(s: &Shared) -> Shared {
    Shared {
        clock: s.clock.clone(),
        config: s.config.clone(),
        emr: s.emr.clone(),
        prom: s.prom.clone(),
        metrics: s.metrics.clone(),
        state: s.state.clone(),
        board: s.board.clone(),
        capacity: s.capacity.clone(),
    }
}

/// Validates the config, binds the admin port and runs until SIGTERM/SIGINT;
/// SIGHUP reloads. A second stop signal exits at once.
pub async fn run_until_signalled(
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

/// The state directory a config names, for tools that only read.
pub fn state_dir(config: &Config) -> &Path {
    &config.daemon.state_dir
}
