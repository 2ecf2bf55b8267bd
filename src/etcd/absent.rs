//! A build without the `ha` feature: the same interface, and every call
//! refuses with the one fix (rebuild with `--features ha`). `check` already
//! rejects `[ha]` in such a build, so a daemon never gets here.

use std::time::Duration;

use super::{Campaign, EtcdError, Fence, Lease, Value};
use crate::config::ha::HaConfig;

/// Why nothing here works.
pub const NO_HA: &str = "this emr-autoscaler was built without etcd support; rebuild it with `--features ha` (the build needs protoc)";

/// The etcd client of a build without the `ha` feature.
#[derive(Debug, Clone)]
pub struct Etcd;

fn refuse<T>() -> Result<T, EtcdError> {
    Err(EtcdError::Setup(NO_HA.into()))
}

impl Etcd {
    /// Refuses: this build has no etcd client.
    pub fn new(_: &HaConfig, _: Duration) -> Result<Etcd, EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn grant(&self, _: i64) -> Result<Lease, EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn keep_alive(&self, _: i64) -> Result<i64, EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn revoke(&self, _: i64) -> Result<(), EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn campaign(&self, _: &str, _: &[u8], _: i64) -> Result<Campaign, EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn get(&self, _: &str) -> Result<Option<Value>, EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn fenced_put(&self, _: &Fence, _: &str, _: Vec<u8>) -> Result<(), EtcdError> {
        refuse()
    }

    /// Refuses.
    pub async fn fenced_create(&self, _: &Fence, _: &str, _: Vec<u8>) -> Result<bool, EtcdError> {
        refuse()
    }
}
