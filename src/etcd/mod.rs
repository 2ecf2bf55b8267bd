//! etcd, the coordination service of high availability (`[ha]`), through
//! the JSON gateway every etcd member serves (see `client.rs`): leases, the
//! leader key, and writes fenced on holding it.
//!
//! - **Bounded.** Every call carries a timeout; an unreachable etcd is an
//!   error in bounded time, never a hang.
//! - **Fencing.** A [`Fence`] is the leader key and the revision at which this
//!   daemon created it. [`Etcd::fenced_put`] is one transaction that writes
//!   only while the leader key still has that create revision: once the lease
//!   expires (the key is deleted) or another daemon holds the key, every
//!   write fails with [`EtcdError::Fenced`].
//! - **No consensus here.** The election is one etcd transaction (create the
//!   leader key with this daemon's lease if nobody holds it); etcd's own Raft
//!   decides which transaction wins.
//! - **Secrets.** The password is read from its file at connect and kept only
//!   inside the client; nothing here prints it.
//! - **Build.** Plain HTTP and JSON over the process's reqwest: every build
//!   has HA, and nothing beyond cargo is needed to build it.
//!
//! # Rules
//! - etcd calls: each attempt is bounded (a quarter of the TTL, 0.5 to 3 s) and tried
//!   on the next member when it fails (`Grpc-Metadata-hasleader: true` on every
//!   gateway request is etcd's require-leader metadata, so a member without quorum
//!   refuses at once with "no leader", reads included). The gateway's JSON is read
//!   as etcd writes it: 64-bit integers as strings, default values left out (a
//!   failed transaction has no `succeeded`, a lost lease's keep-alive no `TTL`). The elector renews and campaigns every round (TTL/4, at most
//!   1 s). A member's loss that costs a Raft election needs a TTL above the election
//!   time; the default 10 s rides it out (measured: 2 s does not, 5 s does).

use std::time::Duration;

mod client;

pub use client::Etcd;

/// Why an etcd call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// etcd could not be reached or answered with an error.
    #[error("etcd: {0}")]
    Unreachable(String),
    /// No answer within the call's timeout.
    #[error("etcd did not answer within {0:?}")]
    Timeout(Duration),
    /// The write was refused: this daemon no longer holds the leader key.
    #[error("fenced: this daemon no longer holds the leader key")]
    Fenced,
    /// The client could not be set up (a TLS or password file).
    #[error("{0}")]
    Setup(String),
}

/// The leader key and the revision this daemon created it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The full leader key.
    pub key: String,
    /// Its create revision.
    pub revision: i64,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease id.
    pub id: i64,
    /// The TTL etcd granted, in seconds.
    pub ttl: i64,
}

/// What a campaign found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Campaign {
    /// This daemon holds the leader key (just created, or already its own).
    Won(Fence),
    /// Another lease holds it, with this value.
    Held {
        /// The leader's published value.
        value: Vec<u8>,
        /// The lease holding it.
        lease: i64,
    },
}

/// One key's value and its create revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// The bytes stored.
    pub bytes: Vec<u8>,
    /// The key's create revision.
    pub create_revision: i64,
    /// The lease attached to the key (0 for none).
    pub lease: i64,
}
