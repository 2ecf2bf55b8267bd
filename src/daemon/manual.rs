//! Manual orders (`scale-out`, `scale-in`): one limit per account, one owner
//! per cluster.
//!
//! While a daemon runs on the same `state_dir`, the order goes to it
//! (`state_dir/admin.addr`, `POST /api/v1/clusters/{id}/scale-out` or
//! `/scale-in`, with the
//! bearer token from `admin_token_file` when one is configured), so its owner,
//! limiter and operation serve the order. With no daemon, the command takes
//! the state lock itself (waiting up to 30 s for it), follows any operation
//! left open one step, and acts alone through the same operation machine.
//!
//! With `[ha]` the order goes to the leader's `advertise_url`, read from
//! etcd's leader key, and never acts alone: no leader, no order.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::owners::{Ask, Reply};
use super::status::StatusBoard;
use super::{ADMIN_ADDR_FILE, Shared, StateHandle, actuator, capacity, worker};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::connect::Connections;
use crate::state::{StateError, StateStore};
use crate::telemetry::metrics::Metrics;

/// How long the command waits for the state lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// How long the command waits for a running daemon's answer.
const DAEMON_ANSWER_WITHIN: Duration = Duration::from_secs(660);

/// Places one manual order on `instance_id`.
pub async fn order(
    config: &Config,
    instance_id: &str,
    ask: Ask,
    clock: SharedClock,
) -> Result<Reply, String> {
    if config.ha.is_some() {
        // With [ha] only the leader acts: never alone, never a standby.
        return via_leader(config, instance_id, ask).await;
    }
    if let Some(reply) = via_daemon(config, instance_id, ask).await? {
        return Ok(reply);
    }
    alone(config, instance_id, ask, clock).await
}

/// Sends the order to the daemon whose address is in `state_dir`, if one
/// answers there; `None` when no daemon listens (a stale file, or none).
async fn via_daemon(config: &Config, instance_id: &str, ask: Ask) -> Result<Option<Reply>, String> {
    let path = config.daemon.state_dir.join(ADMIN_ADDR_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let Ok(addr) = text.trim().parse::<std::net::SocketAddr>() else {
        tracing::warn!(message = "Ignoring an unreadable daemon address file.", path = %path.display());
        return Ok(None);
    };
    // 0.0.0.0 or :: mean "every address": reach the daemon on loopback.
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    tracing::info!(message = "Sending the order to the running daemon.", addr = %addr, cluster = %instance_id);
    match post(config, &format!("http://{addr}"), instance_id, ask).await? {
        Ok(reply) => Ok(Some(reply)),
        Err(e) if e.is_connect() => {
            tracing::info!(message = "No daemon answers at the recorded address; acting alone.", addr = %addr);
            Ok(None)
        }
        Err(e) => Err(format!(
            "the daemon at {addr} did not answer ({e}); the order may have been placed: \
             check GET /api/v1/status before trying again"
        )),
    }
}

/// POSTs the order to the admin server at `base`, with the bearer token when
/// one is configured. The outer `Err` is a local problem (the token file).
async fn post(
    config: &Config,
    base: &str,
    instance_id: &str,
    ask: Ask,
) -> Result<Result<Reply, reqwest::Error>, String> {
    let http = crate::tencent::client::http_client(Duration::from_secs(3), DAEMON_ANSWER_WITHIN)?;
    let (path, body) = ask.request();
    let mut request = http
        .post(format!(
            "{}/api/v1/clusters/{instance_id}/{path}",
            base.trim_end_matches('/')
        ))
        .json(&body);
    if let Some(file) = &config.daemon.admin_token_file {
        let token = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "cannot read daemon.admin_token_file {}: {e}; the running daemon needs its token",
                file.display()
            )
        })?;
        request = request.bearer_auth(token.trim());
    }
    Ok(match request.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body = resp.json::<serde_json::Value>().await.unwrap_or_default();
            Ok(Reply { status, body })
        }
        Err(e) => Err(e),
    })
}

/// With `[ha]`: sends the order to the leader named in etcd, whichever host
/// this command runs on.
async fn via_leader(config: &Config, instance_id: &str, ask: Ask) -> Result<Reply, String> {
    let Some(ha) = &config.ha else {
        return Err("no [ha] section".into());
    };
    let etcd = crate::etcd::Etcd::new(ha, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    let key = format!("{}{}", ha.prefix, super::ha::LEADER_KEY);
    let value = etcd.get(&key).await.map_err(|e| {
        format!("cannot read the leader from etcd ({e}); with [ha] an order goes only to the leader, so nothing was sent")
    })?;
    let Some(value) = value else {
        return Err(format!(
            "no daemon leads ({key} is empty in etcd); start a daemon or wait for a standby to take over. Nothing was sent"
        ));
    };
    let leader: super::ha::LeaderInfo = serde_json::from_slice(&value.bytes)
        .map_err(|e| format!("the leader key {key} cannot be read ({e}); nothing was sent"))?;
    tracing::info!(message = "Sending the order to the leader.", leader = %leader.node_name, url = %leader.advertise_url, cluster = %instance_id);
    match post(config, &leader.advertise_url, instance_id, ask).await? {
        Ok(reply) => Ok(reply),
        Err(e) if e.is_connect() => Err(format!(
            "the leader {} at {} does not answer ({e}); nothing was sent. Check that ha.advertise_url is reachable from this host",
            leader.node_name, leader.advertise_url
        )),
        Err(e) => Err(format!(
            "the leader {} at {} did not answer ({e}); the order may have been placed: \
             check GET /api/v1/status before trying again",
            leader.node_name, leader.advertise_url
        )),
    }
}

/// Opens the state directory, waiting up to [`LOCK_WAIT`] for its lock.
async fn open_waiting(config: &Config) -> Result<(StateStore, crate::state::State), String> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match StateStore::open(&config.daemon.state_dir, false) {
            Ok(opened) => return Ok(opened),
            Err(StateError::Locked { path }) if tokio::time::Instant::now() < deadline => {
                tracing::debug!(message = "State directory locked; waiting.", lock = %path.display());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The order with no daemon: this process owns the cluster while it acts.
async fn alone(
    config: &Config,
    instance_id: &str,
    ask: Ask,
    clock: SharedClock,
) -> Result<Reply, String> {
    let Some(cluster) = config.cluster(instance_id) else {
        return Ok(Reply::error(
            404,
            format!("{instance_id} is not a configured cluster"),
        ));
    };
    let connections = Connections::new(config, None)?;
    let emr = connections.emr_quiet(config)?;
    let prom = connections.prometheus(config)?;
    let (store, state) = open_waiting(config).await?;
    let (tx, rx) = watch::channel(capacity::Snapshot::default());
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
    Ok(match ask {
        Ask::ScaleOut { kind, count } => worker::manual_order(&shared, cluster, kind, count).await,
        Ask::ScaleIn { count } => worker::manual_removal(&shared, cluster, count).await,
    })
}
