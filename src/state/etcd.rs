//! The etcd store (`[ha]`): the whole [`State`] as one JSON value at
//! `<prefix>state`, in the file's schema, written only by the leader.
//!
//! Every save is one transaction fenced on the leader key (see
//! [`crate::etcd`]): a deposed leader's save fails with
//! [`StateError::Fenced`], so it cannot record an intent, and what it cannot
//! record it does not send. A value that cannot be parsed is
//! [`StateError::Corrupt`], exactly as for the file.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{State, StateError, store};
use crate::etcd::{Etcd, EtcdError, Fence};

/// The key of the state under the prefix.
pub(crate) const STATE_KEY: &str = "state";

/// The state in etcd, written under the current fence.
#[derive(Debug)]
pub(crate) struct EtcdStore {
    etcd: Etcd,
    key: String,
    fence: Arc<Mutex<Option<Fence>>>,
}

impl EtcdStore {
    /// The store at `<prefix>state`, writing under whatever fence `fence`
    /// holds at the time of each save (none: every save is refused).
    pub(crate) fn new(etcd: Etcd, prefix: &str, fence: Arc<Mutex<Option<Fence>>>) -> Self {
        Self {
            etcd,
            key: format!("{prefix}{STATE_KEY}"),
            fence,
        }
    }

    fn fence(&self) -> Result<Fence, StateError> {
        self.fence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(StateError::Fenced)
    }

    fn err(e: EtcdError) -> StateError {
        match e {
            EtcdError::Fenced => StateError::Fenced,
            other => StateError::Etcd(other.to_string()),
        }
    }

    /// The fence to write under and the state's JSON.
    fn prepare(&self, state: &State) -> Result<(Fence, Vec<u8>), StateError> {
        let fence = self.fence()?;
        let bytes = serde_json::to_vec(state).map_err(|source| StateError::Serialize {
            path: self.key.clone().into(),
            source,
        })?;
        Ok((fence, bytes))
    }

    /// Reads the state; `None` when the key does not exist yet.
    pub(crate) async fn load(&self) -> Result<Option<State>, StateError> {
        let value = self.etcd.get(&self.key).await.map_err(Self::err)?;
        match value {
            None => Ok(None),
            Some(v) => store::parse(Path::new(&self.key), &v.bytes).map(Some),
        }
    }

    /// Writes `state`, fenced.
    pub(crate) async fn save(&self, state: &State) -> Result<(), StateError> {
        let (fence, bytes) = self.prepare(state)?;
        self.etcd
            .fenced_put(&fence, &self.key, bytes)
            .await
            .map_err(Self::err)
    }

    /// Writes `state` only if no state exists yet (the one-time import of
    /// a `state_dir`); `Ok(false)` when one did.
    pub(crate) async fn create(&self, state: &State) -> Result<bool, StateError> {
        let (fence, bytes) = self.prepare(state)?;
        self.etcd
            .fenced_create(&fence, &self.key, bytes)
            .await
            .map_err(Self::err)
    }
}
