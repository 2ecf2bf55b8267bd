//! The file store: one JSON file in `state_dir`, written atomically under an
//! exclusive lock, with the schema version checked and older versions
//! migrated on read.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::records::*;

/// The schema version this build writes.
///
/// History:
/// - `1`: no `schedule_done`; the operation in flight of a cluster was stored
///   under the key `inflight`.
/// - `2`: `schedule_done` added; `inflight` renamed to `operation`.
pub const SCHEMA_VERSION: u32 = 2;

/// The state file's name inside `state_dir`.
pub(crate) const STATE_FILE: &str = "state.json";

/// The lock file's name inside `state_dir`.
pub(crate) const LOCK_FILE: &str = "lock";

pub(super) const TMP_FILE: &str = "state.json.tmp";

/// The largest state file read; a bigger one is refused as corrupt (a real
/// state of a hundred clusters is well under a megabyte).
pub(crate) const MAX_STATE_BYTES: u64 = 64 * 1024 * 1024;

/// Why the state could not be opened, read or saved. Every variant names the
/// file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process (or another [`StateStore`] in this one) holds the lock.
    #[error(
        "{path} is locked: another emr-autoscaler holds this state directory; \
         stop it or give this one its own state_dir"
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The state file cannot be read, is not valid state, or was written by a
    /// newer release.
    #[error(
        "state file {path} cannot be used: {reason}; fix or remove it, or start with \
         --reset-state to move it aside and begin with an empty state"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "fsync".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The lock file this store holds is no longer the one at its path: the
    /// state directory was deleted or replaced under the daemon, so another
    /// process may own the path now. Nothing more may be written or sent.
    #[error(
        "the state directory {dir} was deleted or replaced under this process \
         (its lock file is gone or is another file); nothing more is written or sent. \
         Restart the daemon so it takes a fresh lock, and keep state_dir out of cleanup jobs"
    )]
    Lost {
        /// The state directory.
        dir: PathBuf,
    },
    /// With `[ha]`: this daemon is not the leader (or no longer), so the
    /// write was refused.
    #[error("not written: this daemon does not hold the leader lease")]
    Fenced,
    /// With `[ha]`: etcd could not be reached.
    #[error("cannot write the state to etcd: {0}")]
    Etcd(String),
    /// The state could not be turned into JSON.
    #[error("cannot serialize the state for {path}: {source}")]
    Serialize {
        /// The file that was to be written.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Schema version 1, kept only to migrate it.
mod v1 {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct State {
        pub clusters: BTreeMap<String, ClusterState>,
    }

    #[derive(Deserialize, Default)]
    #[serde(default)]
    pub(super) struct ClusterState {
        pub cooldown_until: Option<DateTime<Utc>>,
        pub rule_last_fired: BTreeMap<String, DateTime<Utc>>,
        pub orders: Vec<OrderRecord>,
        pub inflight: Option<Operation>,
        pub paused: bool,
        pub breaker_open: Option<BreakerTrip>,
        pub sold_out_until: Option<DateTime<Utc>>,
    }

    impl From<State> for super::State {
        fn from(old: State) -> Self {
            let clusters = old
                .clusters
                .into_iter()
                .map(|(id, c)| {
                    let c = super::ClusterState {
                        cooldown_until: c.cooldown_until,
                        rule_last_fired: c.rule_last_fired,
                        orders: c.orders,
                        operation: c.inflight,
                        paused: c.paused,
                        breaker_open: c.breaker_open,
                        schedule_done: BTreeMap::new(),
                        backoff_until: c.sold_out_until,
                        unavailable: BTreeMap::new(),
                        node_offerings: BTreeMap::new(),
                        unmatched: Vec::new(),
                        arrivals: Vec::new(),
                        last_operation_end: None,
                        scale_out_secs: Vec::new(),
                    };
                    (id, c)
                })
                .collect();
            super::State {
                schema_version: SCHEMA_VERSION,
                clusters,
            }
        }
    }
}

/// The owner of `state_dir`: holds its lock and writes its state file.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
    state_path: PathBuf,
    tmp_path: PathBuf,
    lock_path: PathBuf,
    /// Held for the store's lifetime; closing it on drop releases the `flock`.
    lock: File,
}

impl StateStore {
    /// Opens `dir`: creates it if missing (mode 0700), locks it, and reads its
    /// state.
    ///
    /// A missing state file gives [`State::default`]. A file that cannot be
    /// read or parsed, or has an unknown schema version, is
    /// [`StateError::Corrupt`], unless `reset` is set: then it is renamed to
    /// `state.json.corrupt-<unix-seconds>` and an empty state is returned. A
    /// good file is loaded whatever `reset` says. Older schema versions are
    /// migrated in memory; the next [`save`](Self::save) writes the current one.
    pub fn open(dir: &Path, reset: bool) -> Result<(StateStore, State), StateError> {
        Self::open_at(dir, reset, crate::clock::wall_now())
    }

    /// [`open`](Self::open) with the instant that names a file moved aside.
    pub(super) fn open_at(
        dir: &Path,
        reset: bool,
        now: DateTime<Utc>,
    ) -> Result<(StateStore, State), StateError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;

        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked { path: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err("lock", &lock_path)(e)),
        }

        let store = StateStore {
            dir: dir.to_path_buf(),
            state_path: dir.join(STATE_FILE),
            tmp_path: dir.join(TMP_FILE),
            lock_path,
            lock,
        };

        // A leftover temporary file is a save that crashed before its rename:
        // the state file still holds the previous state. We hold the lock, so
        // nobody else is writing it.
        match fs::remove_file(&store.tmp_path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove leftover", &store.tmp_path)(e)),
        }

        let state = match load(&store.state_path) {
            Ok(state) => state,
            Err(StateError::Corrupt { reason, .. }) if reset => {
                let aside = store.move_aside(now)?;
                tracing::warn!(
                    path = %store.state_path.display(),
                    moved_to = %aside.display(),
                    %reason,
                    "state file unusable; moved aside, starting with an empty state"
                );
                State::default()
            }
            Err(e) => return Err(e),
        };
        Ok((store, state))
    }

    /// Renames the bad state file to `state.json.corrupt-<unix-seconds>`,
    /// adding `.1`, `.2`, ... rather than replacing an earlier one.
    fn move_aside(&self, now: DateTime<Utc>) -> Result<PathBuf, StateError> {
        let base = format!("{STATE_FILE}.corrupt-{}", now.timestamp());
        for n in 0u32..1000 {
            let name = if n == 0 {
                base.clone()
            } else {
                format!("{base}.{n}")
            };
            let target = self.dir.join(name);
            match fs::symlink_metadata(&target) {
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("inspect", &target)(e)),
            }
            fs::rename(&self.state_path, &target)
                .map_err(io_err("move aside", &self.state_path))?;
            sync_dir(&self.dir)?;
            return Ok(target);
        }
        Err(StateError::Io {
            action: "move aside",
            path: self.state_path.clone(),
            source: io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("too many {base}.* files already"),
            ),
        })
    }

    /// Writes `state` atomically: `state.json.tmp`, fsync, rename over
    /// `state.json`, fsync of the directory. The file is pretty JSON with
    /// `schema_version` set to [`SCHEMA_VERSION`].
    ///
    /// First it checks that the lock it holds is still the lock file at its
    /// path ([`check_lock`](Self::check_lock)); if not, nothing is written.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        self.check_lock()?;
        let mut bytes = if state.schema_version == SCHEMA_VERSION {
            serde_json::to_vec_pretty(state)
        } else {
            let mut current = state.clone();
            current.schema_version = SCHEMA_VERSION;
            serde_json::to_vec_pretty(&current)
        }
        .map_err(|source| StateError::Serialize {
            path: self.state_path.clone(),
            source,
        })?;
        bytes.push(b'\n');

        if let Err(e) = self.write_tmp(&bytes) {
            // Best effort: the next open removes it anyway.
            let _ = fs::remove_file(&self.tmp_path);
            return Err(e);
        }
        if let Err(e) = fs::rename(&self.tmp_path, &self.state_path) {
            let _ = fs::remove_file(&self.tmp_path);
            return Err(io_err("rename into place", &self.state_path)(e));
        }
        sync_dir(&self.dir)
    }

    fn write_tmp(&self, bytes: &[u8]) -> Result<(), StateError> {
        let path = &self.tmp_path;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err("create", path))?;
        file.write_all(bytes).map_err(io_err("write", path))?;
        file.sync_all().map_err(io_err("fsync", path))
    }

    /// Whether the lock file this store holds is still the file at
    /// `state_dir/lock` (same device and inode). When the directory was
    /// deleted or replaced, another process may lock the new one:
    /// [`StateError::Lost`].
    pub(crate) fn check_lock(&self) -> Result<(), StateError> {
        use std::os::unix::fs::MetadataExt;
        let lost = || StateError::Lost {
            dir: self.dir.clone(),
        };
        let held = self.lock.metadata().map_err(|_| lost())?;
        let there = fs::metadata(&self.lock_path).map_err(|_| lost())?;
        if (held.dev(), held.ino()) == (there.dev(), there.ino()) {
            Ok(())
        } else {
            Err(lost())
        }
    }

    /// The state file, `state_dir/state.json`.
    pub fn path(&self) -> &Path {
        &self.state_path
    }

    #[cfg(test)]
    /// The state directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads the state in `dir` without taking the lock, for status tools and
/// tests. A missing file (or directory) gives [`State::default`]; a bad one is
/// [`StateError::Corrupt`]. The result may be one save behind a running daemon.
pub fn read_only(dir: &Path) -> Result<State, StateError> {
    load(&dir.join(STATE_FILE))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn load(path: &Path) -> Result<State, StateError> {
    match crate::files::read_capped(path, MAX_STATE_BYTES) {
        Ok(bytes) => parse(path, &bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(StateError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("it cannot be read: {e}"),
        }),
    }
}

pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<State, StateError> {
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };

    // First the version, to choose how to read the rest.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(json_reason(&e)))?;
    let Some(object) = value.as_object() else {
        return Err(corrupt(format!(
            "it holds a JSON {}, not an object",
            json_kind(&value)
        )));
    };
    let version = match object.get("schema_version") {
        None => return Err(corrupt("it has no schema_version".to_owned())),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| corrupt(format!("schema_version must be a whole number, found {v}")))?,
    };

    let state = match version {
        1 => State::from(typed::<v1::State>(bytes).map_err(|e| corrupt(e.to_string()))?),
        v if v == u64::from(SCHEMA_VERSION) => {
            let mut state = typed::<State>(bytes).map_err(|e| corrupt(e.to_string()))?;
            state.schema_version = SCHEMA_VERSION;
            state
        }
        v if v > u64::from(SCHEMA_VERSION) => {
            return Err(corrupt(format!(
                "schema_version {v} was written by a newer emr-autoscaler; \
                 this one reads versions 1 to {SCHEMA_VERSION}"
            )));
        }
        v => {
            return Err(corrupt(format!(
                "schema_version {v} is not a known version (1 to {SCHEMA_VERSION})"
            )));
        }
    };

    for (id, cluster) in &state.clusters {
        if let Some(op) = &cluster.operation {
            op.check()
                .map_err(|why| corrupt(format!("clusters.{id}.operation: {why}")))?;
        }
    }
    Ok(state)
}

/// Why a state file's JSON does not decode into the records of its schema
/// version. It becomes the `reason` of [`StateError::Corrupt`].
#[derive(Debug, thiserror::Error)]
enum DecodeError {
    /// A value inside the document has the wrong shape.
    #[error("at {path}: {}", json_reason(source))]
    At {
        /// The key path of the first bad value, e.g. `clusters.c1.orders[0].nodes`.
        path: String,
        /// What the parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The document as a whole is wrong: its root, an early end, or data
    /// after it.
    #[error("{}", json_reason(.0))]
    Document(#[source] serde_json::Error),
}

/// Deserializes `bytes`, naming the key path of the first problem.
fn typed<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            DecodeError::Document(e.into_inner())
        } else {
            DecodeError::At {
                path,
                source: e.into_inner(),
            }
        }
    })?;
    de.end().map_err(DecodeError::Document)?;
    Ok(value)
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

fn json_reason(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => format!(
            "it is truncated (JSON ends early at line {} column {})",
            e.line(),
            e.column()
        ),
        Category::Syntax => format!("it is not valid JSON: {e}"),
        Category::Data | Category::Io => e.to_string(),
    }
}
