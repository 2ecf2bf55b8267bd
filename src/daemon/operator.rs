//! The operator commands that talk to the running daemon: `status`,
//! `history`, `pause` and `resume`.
//!
//! They find the daemon as manual orders do: with `[ha]` the leader's
//! `advertise_url` in etcd, otherwise the address the daemon wrote to
//! `state_dir/admin.addr`. `pause` and `resume` send the bearer token only to
//! a daemon that first proves it knows it (see `manual.rs`). None of them
//! acts alone: without a daemon `status`, `pause` and `resume` fail with
//! [`OrderError::NoDaemon`]; `history` reads the history itself (the file,
//! or etcd with `[ha]`).

use std::time::Duration;

use super::manual::{self, OrderError, Sent};
use super::owners::Reply;
use crate::config::Config;
use crate::history::{Event, Query};

/// How long a read of the daemon may take.
const READ_WITHIN: Duration = Duration::from_secs(10);

/// Where the history came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// The running daemon's `/api/v1/history`.
    Daemon,
    /// The file or etcd, read directly: no daemon answered.
    Store,
}

/// The running daemon's admin URL, or why none answers.
async fn daemon(config: &Config) -> Result<url::Url, OrderError> {
    if let Some(ha) = &config.ha {
        return manual::leader(ha).await.map(|(_, url)| url);
    }
    let file = config.daemon.state_dir.join(super::ADMIN_ADDR_FILE);
    let addr = manual::recorded_address(config).ok_or_else(|| OrderError::NoDaemon {
        why: format!("{} does not exist or cannot be read", file.display()),
    })?;
    url::Url::parse(&format!("http://{addr}")).map_err(OrderError::Address)
}

/// GETs `path` (with `query`) from the daemon at `base`.
async fn get(
    base: &url::Url,
    path: &str,
    query: &[(&str, String)],
) -> Result<serde_json::Value, OrderError> {
    let http = crate::http::http_client(Duration::from_secs(3), READ_WITHIN)?;
    let mut url = base.clone();
    url.set_path(path);
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| OrderError::NoDaemon {
            why: format!("nothing answers at {base} ({})", e.without_url()),
        })?;
    let status = resp.status();
    let body = crate::http::read_capped(resp, 64 * 1024 * 1024)
        .await
        .map_err(|e| OrderError::NoDaemon {
            why: format!("{base} did not answer in full ({e})"),
        })?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| OrderError::NoDaemon {
            why: format!("{base} answered {status} with something other than JSON ({e})"),
        })?;
    if !status.is_success() {
        return Err(OrderError::Refused {
            status: status.as_u16(),
            error: value["error"].as_str().unwrap_or_default().to_string(),
        });
    }
    Ok(value)
}

/// `/api/v1/status` of the running daemon.
pub(crate) async fn status(config: &Config) -> Result<serde_json::Value, OrderError> {
    let base = daemon(config).await?;
    get(&base, "/api/v1/status", &[]).await
}

/// Pauses (or resumes) `instance_id` through the running daemon.
pub(crate) async fn switch(
    config: &Config,
    instance_id: &str,
    pause: bool,
) -> Result<Reply, OrderError> {
    let base = daemon(config).await?;
    let verb = if pause { "pause" } else { "resume" };
    match manual::post(config, &base, instance_id, (verb, serde_json::json!({}))).await? {
        Ok(reply) => Ok(reply),
        Err(Sent::NoAnswer) => Err(OrderError::NoDaemon {
            why: format!("nothing answers at {base}"),
        }),
        Err(Sent::Unproven(why)) => Err(OrderError::UnprovenAt {
            url: base.to_string(),
            why,
        }),
        Err(Sent::Lost(error)) => Err(OrderError::NoDaemon {
            why: format!(
                "{base} did not answer ({}); the {verb} may have been applied: run `status`",
                error.without_url()
            ),
        }),
    }
}

/// The events `query` asks for, newest first: from the running daemon, or
/// when none answers from the history itself.
pub(crate) async fn history(
    config: &Config,
    query: &Query,
) -> Result<(Vec<Event>, Source), OrderError> {
    let mut pairs = Vec::new();
    if let Some(c) = &query.cluster {
        pairs.push(("cluster", c.clone()));
    }
    if let Some(n) = query.limit {
        pairs.push(("limit", n.to_string()));
    }
    if let Some(t) = query.since {
        pairs.push(("since", t.to_rfc3339()));
    }
    let asked = match daemon(config).await {
        Ok(base) => get(&base, "/api/v1/history", &pairs).await,
        Err(e) => Err(e),
    };
    match asked {
        Ok(value) => {
            let events = serde_json::from_value(value["events"].clone()).map_err(|e| {
                OrderError::NoDaemon {
                    why: format!("the daemon's history cannot be read ({e})"),
                }
            })?;
            Ok((events, Source::Daemon))
        }
        Err(e @ OrderError::Refused { .. }) => Err(e),
        Err(e) => {
            tracing::info!(message = "No daemon answers; reading the history directly.", why = %e);
            let events = read_store(config).await?;
            Ok((query.select(events.iter()), Source::Store))
        }
    }
}

/// Every event kept in the file (or, with `[ha]`, in etcd), oldest first,
/// read without changing anything.
async fn read_store(config: &Config) -> Result<Vec<Event>, OrderError> {
    let max = config.daemon.history_max;
    match &config.ha {
        None => crate::history::log::FileLog::new(&config.daemon.state_dir, max)
            .read(max)
            .map_err(OrderError::History),
        Some(ha) => {
            let etcd =
                crate::etcd::Etcd::new(ha, Duration::from_secs(3)).map_err(OrderError::Etcd)?;
            std::sync::Arc::new(crate::history::Log::Etcd(
                crate::history::log::EtcdLog::new(etcd, &ha.prefix, max),
            ))
            .load(max)
            .await
            .map_err(OrderError::History)
        }
    }
}
