//! High availability (`[ha]`): one leader among the daemons, elected on an
//! etcd lease; the others stand by.
//!
//! - **Election.** Every daemon holds a lease of `lease_ttl` and renews it
//!   every round (a quarter of the TTL, at most 1 s). Each round it also
//!   campaigns: it creates `<prefix>leader` with its lease if nobody holds the
//!   key. The holder leads; etcd decides which transaction wins.
//! - **Deadline.** The leader may send only before its deadline: the send
//!   time of the last successful renewal + the granted TTL − a margin (a fifth
//!   of the TTL, at least 500 ms), on the monotonic clock. etcd cannot expire
//!   the lease before then, so no other daemon can lead before then either.
//!   [`Ha::may_send`] checks it immediately before every EMR request leaves.
//! - **Fencing.** Every durable write, and a record of every attempt of a
//!   mutating call (retries included), is a transaction conditional on the
//!   leader key's create revision ([`crate::etcd::Fence`]): a deposed leader
//!   writes nothing and so starts nothing.
//! - **Stepping down.** A renewal answered with TTL 0, a campaign that finds
//!   another holder, or renewals failing until the deadline: the fence and
//!   the deadline are dropped first, then the role changes. On SIGTERM the
//!   leader revokes its lease ([`Ha::resign`]) so a standby takes over at once.
//! - **Standby.** A standby calls no EMR action: it reads the capacity
//!   snapshot and the state the leader publishes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::clock::wall_now;
use crate::config::Config;
use crate::config::ha::HaConfig;
use crate::etcd::{Campaign, Etcd, EtcdError, Fence, Lease};
use crate::telemetry::metrics::Metrics;
use crate::tencent::emr::ClusterInfo;
use crate::tencent::{Action, SendGate, SendRefused};

/// The leader key under the prefix.
pub(crate) const LEADER_KEY: &str = "leader";
/// The published capacity snapshot under the prefix.
pub(crate) const CAPACITY_KEY: &str = "capacity";
/// Attempt records, one per cluster, under the prefix.
pub(crate) const ATTEMPTS_KEY: &str = "attempts/";

/// This daemon's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Role {
    /// No `[ha]`: the only daemon.
    Single,
    /// Holds the lease and acts.
    Leader,
    /// Stands by: evaluates and reports, calls no EMR action.
    Standby,
}

impl Role {
    /// `single`, `leader` or `standby`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Role::Single => "single",
            Role::Leader => "leader",
            Role::Standby => "standby",
        }
    }
}

/// What the leader publishes in its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaderInfo {
    pub node_name: String,
    /// Where its admin server is reached (manual orders go there).
    pub advertise_url: String,
    /// Its config digest.
    pub config_digest: String,
    /// When it took the lead.
    pub since: DateTime<Utc>,
}

/// The capacity snapshot the leader publishes for the standbys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PublishedCapacity {
    /// When the `DescribeInstances` answer came, on the leader's decision
    /// clock; a standby treats a new value as a fresh snapshot.
    pub at: DateTime<Utc>,
    /// The clusters it described.
    pub clusters: Vec<ClusterInfo>,
}

/// What status, readiness and metrics show about leadership.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HaView {
    /// This daemon's role.
    pub role: Role,
    /// This daemon's `node_name`.
    pub node_name: String,
    /// The leader, when known (this daemon itself while it leads).
    pub leader: Option<LeaderInfo>,
    /// The last etcd failure, cleared by the next success.
    pub etcd_error: Option<String>,
    /// This daemon's config digest.
    pub config_digest: String,
    /// Whether it equals the leader's (`None` while no leader is known).
    pub config_matches_leader: Option<bool>,
    /// Why this daemon last stopped leading.
    pub last_step_down: Option<String>,
}

/// Why leadership could not be set up at start; the daemon does not start.
#[derive(Debug, thiserror::Error)]
pub enum HaSetupError {
    /// The configuration has no `[ha]` section to elect with.
    #[error("no [ha] section")]
    NoSection,
    /// The etcd client could not be set up (a TLS or password file).
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// The `[ha]` metric families could not be registered.
    #[error(transparent)]
    Metrics(#[from] prometheus::Error),
}

/// The elector and the fence: one per daemon process with `[ha]`.
#[derive(Debug)]
pub(crate) struct Ha {
    config: HaConfig,
    etcd: Etcd,
    me: Mutex<LeaderInfo>,
    fence: Arc<Mutex<Option<Fence>>>,
    deadline: Mutex<Option<Instant>>,
    lease: Mutex<Option<Lease>>,
    view: watch::Sender<HaView>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ha {
    /// This daemon's own `advertise_url`.
    pub(crate) fn advertise_url(&self) -> String {
        lock(&self.me).advertise_url.clone()
    }

    /// Sets up leadership for `config` (which has `[ha]`), advertising
    /// `advertise_url` unless the config names one. Registers the `[ha]`
    /// metrics. Reads the TLS and password files; dials nothing yet.
    pub(crate) fn new(
        config: &Config,
        advertise_url: String,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Ha>, HaSetupError> {
        let ha = config.ha.clone().ok_or(HaSetupError::NoSection)?;
        let etcd = Etcd::new(&ha, Self::call_timeout(&ha))?;
        let hm = metrics.enable_ha()?;
        hm.set_leader(false);
        let me = LeaderInfo {
            node_name: ha.node_name.clone(),
            advertise_url: ha.advertise_url.as_ref().map_or(advertise_url, |u| {
                u.as_str().trim_end_matches('/').to_string()
            }),
            config_digest: config.digest(),
            since: wall_now(),
        };
        let view = HaView {
            role: Role::Standby,
            node_name: ha.node_name.clone(),
            leader: None,
            etcd_error: Some("not connected to etcd yet".into()),
            config_digest: me.config_digest.clone(),
            config_matches_leader: None,
            last_step_down: None,
        };
        Ok(Arc::new(Ha {
            config: ha,
            etcd,
            me: Mutex::new(me),
            fence: Arc::new(Mutex::new(None)),
            deadline: Mutex::new(None),
            lease: Mutex::new(None),
            view: watch::channel(view).0,
            metrics,
        }))
    }

    fn call_timeout(ha: &HaConfig) -> Duration {
        (ha.lease_ttl / 4).clamp(Duration::from_millis(500), Duration::from_secs(3))
    }

    /// How often the elector renews and campaigns.
    pub(crate) fn round(&self) -> Duration {
        (self.config.lease_ttl / 4).min(Duration::from_secs(1))
    }

    fn margin(&self) -> Duration {
        (self.config.lease_ttl / 5).max(Duration::from_millis(500))
    }

    /// The etcd client (shared with the state store).
    pub(crate) fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    /// The fence every durable write is made under.
    pub(crate) fn fence_cell(&self) -> Arc<Mutex<Option<Fence>>> {
        self.fence.clone()
    }

    /// The full key for `name`.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.config.prefix)
    }

    /// Watches the role, the leader and etcd's health.
    pub(crate) fn watch(&self) -> watch::Receiver<HaView> {
        self.view.subscribe()
    }

    /// The current view.
    pub(crate) fn view(&self) -> HaView {
        self.view.borrow().clone()
    }

    /// Whether this daemon leads and its deadline has not passed.
    pub(crate) fn leads(&self) -> bool {
        lock(&self.deadline).is_some_and(|d| Instant::now() < d)
    }

    fn update(&self, f: impl FnOnce(&mut HaView)) {
        self.view.send_if_modified(|v| {
            let before = v.clone();
            f(v);
            *v != before
        });
    }

    fn etcd_failed(&self, e: &EtcdError) {
        if let Some(m) = self.metrics.ha() {
            m.lease_error();
        }
        let text = e.to_string();
        self.update(|v| v.etcd_error = Some(text));
    }

    /// Stops leading: the fence and the deadline go first, so nothing is
    /// sent or written after this returns.
    fn step_down(&self, why: &str) {
        let was = lock(&self.fence).take().is_some();
        *lock(&self.deadline) = None;
        if was {
            tracing::warn!(
                message = "Stepping down: no longer the leader.",
                reason = why
            );
            if let Some(m) = self.metrics.ha() {
                m.set_leader(false);
                m.leader_changed();
            }
            let why = why.to_string();
            self.update(|v| {
                v.role = Role::Standby;
                v.leader = None;
                v.config_matches_leader = None;
                v.last_step_down = Some(why);
            });
        }
    }

    /// One round: renew (or grant) the lease, then campaign.
    async fn round_once(&self) {
        let ttl = self.config.lease_ttl.as_secs() as i64;
        let lease = *lock(&self.lease);
        let lease = match lease {
            Some(l) => l,
            None => match self.etcd.grant(ttl).await {
                Ok(l) => {
                    tracing::info!(
                        message = "etcd lease granted.",
                        lease = format!("{:x}", l.id),
                        ttl = l.ttl
                    );
                    *lock(&self.lease) = Some(l);
                    l
                }
                Err(e) => {
                    self.etcd_failed(&e);
                    self.check_deadline();
                    return;
                }
            },
        };
        let sent = Instant::now();
        match self.etcd.keep_alive(lease.id).await {
            Ok(granted) if granted > 0 => {
                // A hostile or broken answer cannot overflow the instant.
                let until = sent
                    .checked_add(Duration::from_secs(granted.min(i64::from(u32::MAX)) as u64))
                    .unwrap_or(sent);
                let deadline = until.checked_sub(self.margin()).unwrap_or(sent);
                {
                    let mut d = lock(&self.deadline);
                    if d.is_some() {
                        *d = Some(deadline);
                    }
                }
                self.campaign(lease, deadline).await;
            }
            Ok(_) => {
                // The lease expired (a pause, or etcd was away too long).
                *lock(&self.lease) = None;
                self.step_down("the lease expired");
                if let Some(m) = self.metrics.ha() {
                    m.lease_error();
                }
                self.update(|v| {
                    v.etcd_error = Some("the lease expired; granting a new one".into())
                });
            }
            Err(e) => {
                self.etcd_failed(&e);
                self.check_deadline();
            }
        }
    }

    fn check_deadline(&self) {
        let passed = lock(&self.deadline).is_some_and(|d| Instant::now() >= d);
        if passed {
            self.step_down("lease renewals failed until the deadline");
        }
    }

    async fn campaign(&self, lease: Lease, deadline: Instant) {
        let key = self.key(LEADER_KEY);
        let candidate = {
            let mut me = lock(&self.me);
            if lock(&self.fence).is_none() {
                me.since = wall_now();
            }
            me.clone()
        };
        let value = serde_json::to_vec(&candidate).unwrap_or_default();
        match self.etcd.campaign(&key, &value, lease.id).await {
            Ok(Campaign::Won(fence)) => {
                let new = {
                    let mut f = lock(&self.fence);
                    let new = f.as_ref() != Some(&fence);
                    *f = Some(fence);
                    new
                };
                *lock(&self.deadline) = Some(deadline);
                if new {
                    tracing::info!(message = "Leading: this daemon holds the etcd lease.", node = %candidate.node_name, lease = format!("{:x}", lease.id));
                    if let Some(m) = self.metrics.ha() {
                        m.set_leader(true);
                        m.leader_changed();
                        m.set_config_differs(false);
                    }
                }
                self.update(|v| {
                    v.role = Role::Leader;
                    v.leader = Some(candidate);
                    v.etcd_error = None;
                    v.config_matches_leader = Some(true);
                });
            }
            Ok(Campaign::Held { value, .. }) => {
                self.step_down("another daemon holds the leader key");
                let leader: Option<LeaderInfo> = serde_json::from_slice(&value).ok();
                let mine = candidate.config_digest;
                let matches = leader.as_ref().map(|l| l.config_digest == mine);
                if let Some(m) = self.metrics.ha() {
                    m.set_config_differs(matches == Some(false));
                }
                if matches == Some(false) && self.view.borrow().config_matches_leader != Some(false)
                {
                    tracing::error!(
                        message =
                            "This daemon's config differs from the leader's; make them the same.",
                        leader = leader.as_ref().map_or("-", |l| l.node_name.as_str())
                    );
                }
                self.update(|v| {
                    v.role = Role::Standby;
                    v.leader = leader;
                    v.etcd_error = None;
                    v.config_matches_leader = matches;
                });
            }
            Err(e) => {
                self.etcd_failed(&e);
                self.check_deadline();
            }
        }
    }

    /// The elector: runs rounds until cancelled. It never revokes: see
    /// [`Ha::resign`].
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let round = self.round();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.round_once() => {}
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(round) => {}
            }
        }
    }

    /// Gives up leadership at a graceful stop: drops the fence, then revokes
    /// the lease so a standby takes over at its next round.
    pub(crate) async fn resign(&self) {
        self.step_down("stopping");
        let lease = lock(&self.lease).take();
        if let Some(l) = lease {
            match self.etcd.revoke(l.id).await {
                Ok(()) => tracing::info!(
                    message = "etcd lease revoked.",
                    lease = format!("{:x}", l.id)
                ),
                Err(e) => {
                    tracing::warn!(message = "Cannot revoke the etcd lease; it expires by itself.", error = %e)
                }
            }
        }
    }

    /// The leader publishes its capacity snapshot (fenced).
    pub(crate) async fn publish_capacity(
        &self,
        snapshot: &PublishedCapacity,
    ) -> Result<(), EtcdError> {
        let fence = lock(&self.fence).clone().ok_or(EtcdError::Fenced)?;
        let bytes = serde_json::to_vec(snapshot).unwrap_or_default();
        self.etcd
            .fenced_put(&fence, &self.key(CAPACITY_KEY), bytes)
            .await
    }

    /// A standby reads the leader's capacity snapshot.
    pub(crate) async fn read_capacity(&self) -> Result<Option<PublishedCapacity>, EtcdError> {
        let value = self.etcd.get(&self.key(CAPACITY_KEY)).await?;
        Ok(value.and_then(|v| serde_json::from_slice(&v.bytes).ok()))
    }
}

#[derive(Serialize)]
struct AttemptRecord<'a> {
    action: &'a str,
    attempt: u32,
    client_token: Option<&'a str>,
    node: &'a str,
    at: DateTime<Utc>,
}

impl SendGate for Ha {
    fn record_attempt<'a>(
        &'a self,
        action: Action,
        body: &'a [u8],
        attempt: u32,
    ) -> futures_util::future::BoxFuture<'a, Result<(), SendRefused>> {
        Box::pin(async move {
            let fence = lock(&self.fence).clone().ok_or(SendRefused::Unfenced)?;
            let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            let cluster = request
                .get("InstanceId")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            let node = lock(&self.me).node_name.clone();
            let record = AttemptRecord {
                action: action.name(),
                attempt,
                client_token: request.get("ClientToken").and_then(|v| v.as_str()),
                node: &node,
                at: wall_now(),
            };
            let bytes = serde_json::to_vec(&record).unwrap_or_default();
            let key = self.key(&format!("{ATTEMPTS_KEY}{cluster}"));
            self.etcd
                .fenced_put(&fence, &key, bytes)
                .await
                .map_err(|e| SendRefused::NotRecorded(Box::new(e)))
        })
    }

    fn may_send(&self, action: Action) -> Result<(), SendRefused> {
        let deadline = *lock(&self.deadline);
        match deadline {
            Some(d) if Instant::now() < d => Ok(()),
            Some(_) => {
                self.step_down("the lease deadline passed before a request could leave");
                Err(SendRefused::DeadlinePassed {
                    action: action.name(),
                })
            }
            None => Err(SendRefused::NotLeader {
                action: action.name(),
            }),
        }
    }
}
