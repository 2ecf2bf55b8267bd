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
//!
//! With `[ha]` the same [`State`] lives in etcd instead ([`etcd`]), and every
//! write is fenced on holding the leader lease; [`Store`] is the one
//! interface the daemon writes through.
//!
//! The records (what is remembered) are in [`records`]; the file store (how
//! it is kept: lock, atomic writes, schema migration) in [`store`]; the one
//! projection of a record into what the policy judges in [`view`].

pub(crate) mod etcd;
pub(crate) mod records;
pub(crate) mod store;
pub(crate) mod view;

pub use records::*;
pub use store::*;
pub(crate) use view::{Circumstances, Projection, Snapshot};

/// Where the state is kept: the file in `state_dir`, or (with `[ha]`) etcd.
#[derive(Debug)]
pub(crate) enum Store {
    /// Single host: `state_dir/state.json` under its lock.
    File(StateStore),
    /// High availability: `<prefix>state` in etcd, fenced on leadership.
    Etcd(Box<etcd::EtcdStore>),
}

impl Store {
    /// Checks that this process still owns the store: for the file, that its
    /// lock is still the lock file at its path ([`StateError::Lost`] if not);
    /// etcd writes are fenced on every save instead.
    pub(crate) fn check(&self) -> Result<(), StateError> {
        match self {
            Store::File(f) => f.check_lock(),
            Store::Etcd(_) => Ok(()),
        }
    }

    /// Writes `state` durably: atomically to the file, or fenced to etcd.
    pub(crate) async fn save(&self, state: &State) -> Result<(), StateError> {
        match self {
            Store::File(f) => tokio::task::block_in_place(|| f.save(state)),
            Store::Etcd(e) => e.save(state).await,
        }
    }
}

#[cfg(test)]
mod tests;
