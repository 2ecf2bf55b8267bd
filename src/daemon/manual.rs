//! Manual orders (`scale-out`, `scale-in`): one limit per account, one owner
//! per cluster.
//!
//! The command first tries to take the state lock without waiting. If it
//! gets it, no daemon runs and `state_dir/admin.addr` is stale: it acts
//! alone under the lock, following any operation left open one step, through
//! the same operation machine. Otherwise a daemon holds the directory, and the
//! order goes to it (`admin.addr`, `POST /api/v1/clusters/{id}/scale-out` or
//! `/scale-in`), so its owner, limiter and operation serve the order. With
//! `admin_token_file` configured, the bearer token is sent only to an
//! address that first proves it knows it (`GET /api/v1/whoami?nonce=N`
//! answers HMAC-SHA256(token, N); the nonce names the address dialled, so
//! the question cannot be relayed to the real daemon). When nobody answers
//! at the recorded address (a daemon just stopping), the command waits up to
//! 30 s for the lock and acts alone.
//!
//! With `[ha]` the order goes to the leader's `advertise_url`, read from
//! etcd's leader key, under the same proof, and never acts alone: no leader,
//! no order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::owners::{Ask, Reply};
use super::status::StatusBoard;
use super::{ADMIN_ADDR_FILE, Shared, StateHandle, actuator, capacity, worker};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::connect::Connections;
use crate::etcd::EtcdError;
use crate::state::{StateError, StateStore};
use crate::telemetry::metrics::Metrics;

/// How long the command waits for the state lock.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long the command waits for a running daemon's answer.
const DAEMON_ANSWER_WITHIN: Duration = Duration::from_secs(660);

/// Why a manual order got no answer. Every message says whether anything
/// may have been ordered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OrderError {
    /// The state directory could not be opened.
    #[error(transparent)]
    State(#[from] StateError),
    /// A client the configuration describes could not be built.
    #[error(transparent)]
    Connect(#[from] crate::connect::ConnectError),
    /// The HTTP client for the admin API could not be built.
    #[error(transparent)]
    Http(#[from] crate::http::BuildError),
    /// The admin token file could not be read.
    #[error(
        "cannot read daemon.admin_token_file {}: {reason}; the running daemon needs its token",
        path.display()
    )]
    TokenFile {
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The recorded daemon address is not a URL.
    #[error("{0}")]
    Address(url::ParseError),
    /// The process at the recorded address did not prove it knows the token.
    #[error(
        "the process at {addr} (from {}) does not know the admin token ({why}); the token was not sent and nothing was ordered",
        file.display()
    )]
    Unproven {
        /// The address dialled.
        addr: std::net::SocketAddr,
        /// Where the address was read.
        file: std::path::PathBuf,
        /// What it answered.
        why: String,
    },
    /// The order left, but no answer came back.
    #[error(
        "the daemon at {addr} did not answer ({error}); the order may have been placed: check GET /api/v1/status before trying again"
    )]
    Lost {
        /// The address dialled.
        addr: std::net::SocketAddr,
        /// What went wrong.
        error: reqwest::Error,
    },
    /// etcd could not be reached to find the leader.
    #[error("{0}")]
    Etcd(EtcdError),
    /// The leader key could not be read.
    #[error(
        "cannot read the leader from etcd ({0}); with [ha] an order goes only to the leader, so nothing was sent"
    )]
    LeaderUnreadable(EtcdError),
    /// Nobody leads.
    #[error(
        "no daemon leads ({key} is empty in etcd); start a daemon or wait for a standby to take over. Nothing was sent"
    )]
    NoLeader {
        /// The leader key.
        key: String,
    },
    /// The leader key holds something else.
    #[error("the leader key {key} cannot be read ({error}); nothing was sent")]
    LeaderKey {
        /// The leader key.
        key: String,
        /// Why.
        error: serde_json::Error,
    },
    /// The leader advertises something that is not a URL.
    #[error("the leader's advertise_url {url:?} is not a URL ({error}); nothing was sent")]
    LeaderUrl {
        /// What it advertises.
        url: String,
        /// Why.
        error: url::ParseError,
    },
    /// Nobody answers at the leader's address.
    #[error(
        "the leader {name} at {url} does not answer; nothing was sent. Check that ha.advertise_url is reachable from this host"
    )]
    LeaderSilent {
        /// The leader's node name.
        name: String,
        url: String,
    },
    /// The leader did not prove it knows the token.
    #[error(
        "the leader {name} at {url} does not know the admin token ({why}); the token was not sent and nothing was ordered"
    )]
    LeaderUnproven {
        /// The leader's node name.
        name: String,
        url: String,
        /// What it answered.
        why: String,
    },
    /// No daemon answers (operator commands never act alone).
    #[error(
        "no emr-autoscaler daemon answers: {why}. Start it (systemctl start emr-autoscaler) and try again"
    )]
    NoDaemon {
        /// What was tried.
        why: String,
    },
    /// The daemon refused a read.
    #[error("the daemon refused ({status}): {error}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Its message.
        error: String,
    },
    /// The daemon at `url` did not prove it knows the token.
    #[error("the process at {url} does not know the admin token ({why}); the token was not sent")]
    UnprovenAt {
        /// Where.
        url: String,
        /// What it answered.
        why: String,
    },
    /// The history could not be read.
    #[error(transparent)]
    History(crate::history::HistoryError),
    /// The order left for the leader, but no answer came back.
    #[error(
        "the leader {name} at {url} did not answer ({error}); the order may have been placed: check GET /api/v1/status before trying again"
    )]
    LeaderLost {
        /// The leader's node name.
        name: String,
        url: String,
        /// What went wrong.
        error: reqwest::Error,
    },
}

/// Places one manual order on `instance_id`.
pub(crate) async fn order(
    config: &Config,
    instance_id: &str,
    ask: Ask,
    clock: SharedClock,
) -> Result<Reply, OrderError> {
    if let Some(ha) = &config.ha {
        // With [ha] only the leader acts: never alone, never a standby.
        return via_leader(config, ha, instance_id, ask).await;
    }
    // The lock taken at once: no daemon runs, whatever admin.addr says.
    match StateStore::open(&config.daemon.state_dir, false) {
        Ok(opened) => return alone(config, instance_id, ask, clock, opened).await,
        Err(StateError::Locked { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    if let Some(reply) = via_daemon(config, instance_id, ask).await? {
        return Ok(reply);
    }
    let opened = open_waiting(config).await?;
    alone(config, instance_id, ask, clock, opened).await
}

/// The admin token, when one is configured.
fn admin_token(config: &Config) -> Result<Option<String>, OrderError> {
    let Some(file) = &config.daemon.admin_token_file else {
        return Ok(None);
    };
    crate::files::read_secret(file)
        .map(Some)
        .map_err(|e| OrderError::TokenFile {
            path: file.clone(),
            reason: e.to_string(),
        })
}

/// Why an address did not prove it knows the token.
enum Proof {
    /// Nobody listens there.
    NoAnswer,
    /// Something answered without the proof.
    Refused(String),
}

/// Asks the admin server at `base` to prove it knows `token`: a fresh
/// nonce naming the address dialled, answered with HMAC-SHA256(token,
/// nonce). Nothing secret is sent.
async fn prove(http: &reqwest::Client, base: &url::Url, token: &str) -> Result<(), Proof> {
    let authority = format!(
        "{}:{}",
        base.host_str().unwrap_or_default(),
        base.port_or_known_default().unwrap_or(0)
    );
    let nonce = format!("{}@{authority}", uuid::Uuid::new_v4().simple());
    let mut url = base.clone();
    url.set_path("/api/v1/whoami");
    url.query_pairs_mut().clear().append_pair("nonce", &nonce);
    let resp = match http.get(url).timeout(Duration::from_secs(10)).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Err(Proof::NoAnswer),
        Err(e) => return Err(Proof::Refused(e.to_string())),
    };
    let body = crate::http::read_capped(resp, 4096)
        .await
        .map_err(|e| Proof::Refused(e.to_string()))?;
    let given = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["proof"].as_str().and_then(|p| hex::decode(p).ok()))
        .unwrap_or_default();
    let expected = crate::tencent::sign::hmac(token.as_bytes(), nonce.as_bytes());
    if crate::tencent::sign::same_secret(&given, &expected) {
        Ok(())
    } else {
        Err(Proof::Refused("no valid proof".into()))
    }
}

/// Sends the order to the daemon whose address is in `state_dir` (a daemon
/// holds the lock); `None` when nobody answers there.
async fn via_daemon(
    config: &Config,
    instance_id: &str,
    ask: Ask,
) -> Result<Option<Reply>, OrderError> {
    let path = config.daemon.state_dir.join(ADMIN_ADDR_FILE);
    let Some(addr) = recorded_address(config) else {
        return Ok(None);
    };
    let base = url::Url::parse(&format!("http://{addr}")).map_err(OrderError::Address)?;
    tracing::info!(message = "Sending the order to the running daemon.", addr = %addr, cluster = %instance_id);
    match post(config, &base, instance_id, ask.request()).await? {
        Ok(reply) => Ok(Some(reply)),
        Err(Sent::NoAnswer) => {
            tracing::info!(message = "No daemon answers at the recorded address; waiting for the state lock.", addr = %addr);
            Ok(None)
        }
        Err(Sent::Unproven(why)) => Err(OrderError::Unproven {
            addr,
            file: path,
            why,
        }),
        Err(Sent::Lost(error)) => Err(OrderError::Lost { addr, error }),
    }
}

/// The address the running daemon recorded in `state_dir/admin.addr`
/// (0.0.0.0 or :: as loopback), when the file is there and readable.
pub(super) fn recorded_address(config: &Config) -> Option<std::net::SocketAddr> {
    let path = config.daemon.state_dir.join(ADMIN_ADDR_FILE);
    let text = crate::files::read_text_capped(&path, 256).ok()?;
    let Ok(addr) = text.trim().parse::<std::net::SocketAddr>() else {
        tracing::warn!(message = "Ignoring an unreadable daemon address file.", path = %path.display());
        return None;
    };
    // 0.0.0.0 or :: mean "every address": reach the daemon on loopback.
    Some(if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    })
}

/// Why an order sent to an admin server has no answer.
pub(super) enum Sent {
    /// Nobody listens there: nothing was sent.
    NoAnswer,
    /// It did not prove it knows the token: nothing was sent.
    Unproven(String),
    /// The request left, but no answer came back.
    Lost(reqwest::Error),
}

/// POSTs a command (`pause`, `scale-out`, ...: the path suffix and its
/// body) to the admin server at `base`. With a token configured, the server
/// first proves it knows the token, and only then gets it. The outer `Err`
/// is a local problem (the token file).
pub(super) async fn post(
    config: &Config,
    base: &url::Url,
    instance_id: &str,
    (path, body): (&str, serde_json::Value),
) -> Result<Result<Reply, Sent>, OrderError> {
    let http = crate::http::http_client(Duration::from_secs(3), DAEMON_ANSWER_WITHIN)?;
    let token = admin_token(config)?;
    if let Some(token) = &token {
        match prove(&http, base, token).await {
            Ok(()) => {}
            Err(Proof::NoAnswer) => return Ok(Err(Sent::NoAnswer)),
            Err(Proof::Refused(why)) => return Ok(Err(Sent::Unproven(why))),
        }
    }
    let mut url = base.clone();
    url.set_path(&format!("/api/v1/clusters/{instance_id}/{path}"));
    let mut request = http.post(url).json(&body);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    Ok(match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.json::<serde_json::Value>().await.unwrap_or_default();
            Ok(Reply { status, body })
        }
        Err(e) if e.is_connect() => Err(Sent::NoAnswer),
        Err(e) => Err(Sent::Lost(e)),
    })
}

/// With `[ha]`: sends the order to the leader named in etcd, whichever host
/// this command runs on.
async fn via_leader(
    config: &Config,
    ha: &crate::config::ha::HaConfig,
    instance_id: &str,
    ask: Ask,
) -> Result<Reply, OrderError> {
    let (name, base) = leader(ha).await?;
    tracing::info!(message = "Sending the order to the leader.", leader = %name, url = %base, cluster = %instance_id);
    let url = base.to_string();
    match post(config, &base, instance_id, ask.request()).await? {
        Ok(reply) => Ok(reply),
        Err(Sent::NoAnswer) => Err(OrderError::LeaderSilent { name, url }),
        Err(Sent::Unproven(why)) => Err(OrderError::LeaderUnproven { name, url, why }),
        Err(Sent::Lost(error)) => Err(OrderError::LeaderLost { name, url, error }),
    }
}

/// The leader named in etcd: its node name and `advertise_url`.
pub(super) async fn leader(
    ha: &crate::config::ha::HaConfig,
) -> Result<(String, url::Url), OrderError> {
    let etcd = crate::etcd::Etcd::new(ha, Duration::from_secs(3)).map_err(OrderError::Etcd)?;
    let key = format!("{}{}", ha.prefix, super::ha::LEADER_KEY);
    let value = etcd.get(&key).await.map_err(OrderError::LeaderUnreadable)?;
    let Some(value) = value else {
        return Err(OrderError::NoLeader { key });
    };
    let leader: super::ha::LeaderInfo = serde_json::from_slice(&value.bytes)
        .map_err(|error| OrderError::LeaderKey { key, error })?;
    let base = url::Url::parse(&leader.advertise_url).map_err(|error| OrderError::LeaderUrl {
        url: leader.advertise_url.clone(),
        error,
    })?;
    Ok((leader.node_name, base))
}

/// Opens the state directory, waiting up to [`LOCK_WAIT`] for its lock.
async fn open_waiting(config: &Config) -> Result<(StateStore, crate::state::State), OrderError> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match StateStore::open(&config.daemon.state_dir, false) {
            Ok(opened) => return Ok(opened),
            Err(StateError::Locked { path }) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(message = "State directory locked; waiting.", lock = %path.display());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The order with no daemon: this process owns the cluster while it acts.
async fn alone(
    config: &Config,
    instance_id: &str,
    ask: Ask,
    clock: SharedClock,
    (store, state): (StateStore, crate::state::State),
) -> Result<Reply, OrderError> {
    let Some(cluster) = config.cluster(instance_id) else {
        return Ok(Reply::error(
            404,
            format!("{instance_id} is not a configured cluster"),
        ));
    };
    let connections = Connections::new(config, None)?;
    let emr = connections.emr_quiet(config)?;
    let prom = connections.prometheus(config)?;
    let (tx, rx) = watch::channel(capacity::Snapshot::default());
    // The order is history like any other: appended to the file under the
    // lock this process holds (webhooks are the daemon's).
    let max = config.daemon.history_max;
    let history = crate::history::History::start(
        crate::history::Log::File(crate::history::log::FileLog::new(
            &config.daemon.state_dir,
            max,
        )),
        max,
    );
    if let Err(e) = history.load().await {
        tracing::warn!(message = "Cannot read the history; the order is still recorded.", error = %e);
    }
    let shared = Shared {
        clock: clock.clone(),
        config: config.clone(),
        emr,
        prom,
        http: connections.http.clone(),
        metrics: Arc::new(Metrics::new()),
        state: Arc::new(StateHandle::new(store, state)),
        board: Arc::new(StatusBoard::new(clock.clone())),
        capacity: rx,
        role: super::ha::Role::Single,
        ha: None,
        history: history.clone(),
    };
    // Where the cluster stands, and any operation a daemon left open.
    let ids = vec![instance_id.to_string()];
    let mut snap = capacity::Snapshot::default();
    snap.record(shared.emr.describe_instances(&ids).await, clock.now());
    let info = snap.clusters.get(instance_id).cloned();
    tx.send_replace(snap.clone());
    actuator::drive(&shared, cluster, super::operation::Event::Restart).await;
    let cap = info.zip(snap.at).map(|(i, at)| super::operation::Capacity {
        at,
        status: i.status,
        task_nodes: i.task_nodes(),
    });
    actuator::drive(&shared, cluster, super::operation::Event::Tick(cap)).await;
    let answer = match ask {
        Ask::ScaleOut { kind, count } => worker::manual_order(&shared, cluster, kind, count).await,
        Ask::ScaleIn { count } => worker::manual_removal(&shared, cluster, count).await,
    };
    history.close(Duration::from_secs(5)).await;
    Ok(super::admin::reply(answer))
}
