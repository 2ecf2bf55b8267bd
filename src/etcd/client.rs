//! The etcd client proper, over `etcd-client` (the `ha` feature).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::{Campaign, EtcdError, Fence, Lease, Value};
use crate::config::ha::HaConfig;

/// An etcd client with one connection per endpoint. It dials on first use
/// (and again after a failed dial), so a daemon starts while etcd is down.
/// A call that fails on one member is tried on the next, within its time
/// budget, and the member that answered is used first from then on.
#[derive(Clone)]
pub struct Etcd {
    endpoints: Vec<String>,
    options: ConnectOptions,
    timeout: Duration,
    clients: Arc<Vec<tokio::sync::OnceCell<Client>>>,
    current: Arc<std::sync::atomic::AtomicUsize>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Etcd")
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, EtcdError> {
    std::fs::read(path)
        .map_err(|e| EtcdError::Setup(format!("cannot read ha.{what} {}: {e}", path.display())))
}

fn unreachable(e: etcd_client::Error) -> EtcdError {
    EtcdError::Unreachable(e.to_string())
}

impl Etcd {
    /// A client for `config`'s endpoints; each attempt times out after
    /// `timeout`. The TLS and password files are read now (an unreadable
    /// one is [`EtcdError::Setup`]); nothing is dialled yet.
    pub fn new(config: &HaConfig, timeout: Duration) -> Result<Etcd, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), timeout)
            // A member cut off from its quorum refuses at once instead of
            // serving stale reads; the next member is tried.
            .with_require_leader(true);
        if config.ca_file.is_some() || config.client_identity.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "ca_file")?));
            }
            if let Some((cert, key)) = &config.client_identity {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(cert, "cert_file")?,
                    read(key, "key_file")?,
                ));
            }
            options = options.with_tls(tls);
        }
        if let Some((user, file)) = &config.user {
            let password = read(file, "password_file")?;
            let password = String::from_utf8_lossy(&password).trim_end().to_string();
            options = options.with_user(user.clone(), password);
        }
        let endpoints: Vec<String> = config
            .etcd_endpoints
            .iter()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .collect();
        let clients = endpoints
            .iter()
            .map(|_| tokio::sync::OnceCell::new())
            .collect();
        Ok(Etcd {
            endpoints,
            options,
            timeout,
            clients: Arc::new(clients),
            current: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        })
    }

    async fn client(&self, i: usize) -> Result<Client, EtcdError> {
        self.clients[i]
            .get_or_try_init(|| async {
                // With a username, etcd-client authenticates here.
                tokio::time::timeout(
                    self.timeout,
                    Client::connect([self.endpoints[i].as_str()], Some(self.options.clone())),
                )
                .await
                .map_err(|_| EtcdError::Timeout(self.timeout))?
                .map_err(unreachable)
            })
            .await
            .cloned()
    }

    /// Runs `call` on the current member, then on each other member in turn
    /// while it fails. Every call here is safe to repeat: a put of the same
    /// value, a campaign that counts its own lease as won, a renewal.
    async fn bounded<T, F>(&self, call: impl Fn(Client) -> F) -> Result<T, EtcdError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        use std::sync::atomic::Ordering;
        let n = self.endpoints.len().max(1);
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = EtcdError::Unreachable("no etcd endpoint".into());
        for k in 0..n {
            let i = (first + k) % n;
            let attempt = async {
                let client = self.client(i).await?;
                tokio::time::timeout(self.timeout, call(client))
                    .await
                    .map_err(|_| EtcdError::Timeout(self.timeout))?
                    .map_err(unreachable)
            };
            match attempt.await {
                Ok(v) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) => last = e,
            }
        }
        self.current.store((first + 1) % n, Ordering::Relaxed);
        Err(last)
    }

    /// One transaction, on whichever member answers.
    async fn txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse, EtcdError> {
        self.bounded(|mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    /// Grants a lease of `ttl` seconds.
    pub async fn grant(&self, ttl: i64) -> Result<Lease, EtcdError> {
        let r = self
            .bounded(|mut c| async move { c.lease_grant(ttl, None).await })
            .await?;
        Ok(Lease {
            id: r.id(),
            ttl: r.ttl(),
        })
    }

    /// Renews `lease` once; returns the TTL etcd now grants (0: the lease is
    /// gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        self.bounded(|mut c| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(r) => Ok(r.ttl()),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "the keep-alive stream ended".into(),
                )),
            }
        })
        .await
    }

    /// Revokes `lease`: every key attached to it goes at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        self.bounded(|mut c| async move { c.lease_revoke(lease).await })
            .await
            .map(|_| ())
    }

    /// Creates `key` = `value` under `lease` if nobody holds it; otherwise
    /// reports the holder. A key held by `lease` itself counts as won.
    pub async fn campaign(
        &self,
        key: &str,
        value: &[u8],
        lease: i64,
    ) -> Result<Campaign, EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key,
                value,
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key, None)]);
        let r = self.txn(txn).await?;
        if r.succeeded() {
            let revision = r.header().map_or(0, |h| h.revision());
            return Ok(Campaign::Won(Fence {
                key: key.to_string(),
                revision,
            }));
        }
        for op in r.op_responses() {
            if let TxnOpResponse::Get(g) = op
                && let Some(kv) = g.kvs().first()
            {
                if kv.lease() == lease {
                    return Ok(Campaign::Won(Fence {
                        key: key.to_string(),
                        revision: kv.create_revision(),
                    }));
                }
                return Ok(Campaign::Held {
                    value: kv.value().to_vec(),
                    lease: kv.lease(),
                });
            }
        }
        // Deleted between the compare and the read: try again next round.
        Err(EtcdError::Unreachable(
            "the leader key changed during the campaign".into(),
        ))
    }

    /// Reads one key.
    pub async fn get(&self, key: &str) -> Result<Option<Value>, EtcdError> {
        let r = self
            .bounded(|mut c| async move { c.get(key, None).await })
            .await?;
        Ok(r.kvs().first().map(|kv| Value {
            bytes: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            lease: kv.lease(),
        }))
    }

    /// Writes `key` = `value` only while `fence` holds.
    pub async fn fenced_put(
        &self,
        fence: &Fence,
        key: &str,
        value: Vec<u8>,
    ) -> Result<(), EtcdError> {
        let txn = Txn::new()
            .when([Compare::create_revision(
                fence.key.as_str(),
                CompareOp::Equal,
                fence.revision,
            )])
            .and_then([TxnOp::put(key, value, None)]);
        let r = self.txn(txn).await?;
        if r.succeeded() {
            Ok(())
        } else {
            Err(EtcdError::Fenced)
        }
    }

    /// Writes `key` = `value` only while `fence` holds and `key` does not
    /// exist yet; `Ok(false)` when it already did.
    pub async fn fenced_create(
        &self,
        fence: &Fence,
        key: &str,
        value: Vec<u8>,
    ) -> Result<bool, EtcdError> {
        let txn = Txn::new()
            .when([
                Compare::create_revision(fence.key.as_str(), CompareOp::Equal, fence.revision),
                Compare::create_revision(key, CompareOp::Equal, 0),
            ])
            .and_then([TxnOp::put(key, value, None)])
            .or_else([TxnOp::get(fence.key.as_str(), None)]);
        let r = self.txn(txn).await?;
        if r.succeeded() {
            return Ok(true);
        }
        let still_ours = r.op_responses().into_iter().any(|op| {
            matches!(op, TxnOpResponse::Get(g)
                if g.kvs().first().is_some_and(|kv| kv.create_revision() == fence.revision))
        });
        if still_ours {
            Ok(false)
        } else {
            Err(EtcdError::Fenced)
        }
    }
}
