//! Where events are kept across restarts: `state_dir/history.jsonl` (one
//! JSON event per line, appended), or with `[ha]` one etcd key per event
//! under `<prefix>history/`, so a new leader shows the old leader's events.
//!
//! Both keep at most `history_max` events, the oldest dropped: the file is
//! rewritten (atomically) once it holds a tenth more, the etcd keys are
//! trimmed in the same way. A line or value that cannot be read (a write cut
//! by kill -9) is skipped with a warning, and the file is rewritten without
//! it before anything is appended.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::Event;
use crate::etcd::{Etcd, EtcdError};

/// The history file's name inside `state_dir`.
pub const HISTORY_FILE: &str = "history.jsonl";

/// The largest history file read (100,000 events of a kilobyte each).
const MAX_FILE_BYTES: u64 = 128 * 1024 * 1024;

/// How many etcd keys one read returns.
const PAGE: usize = 500;

/// Why the history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be read or written.
    #[error("history file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// etcd failed.
    #[error("history in etcd: {0}")]
    Etcd(#[from] EtcdError),
}

/// Where events are kept.
#[derive(Debug)]
pub enum Log {
    /// Nowhere (tests, `plan`).
    Memory,
    /// `state_dir/history.jsonl`.
    File(FileLog),
    /// `<prefix>history/` in etcd.
    Etcd(EtcdLog),
}

impl Log {
    /// The newest `max` events, oldest first. The file is read on a
    /// blocking thread, never on a runtime worker.
    pub async fn load(self: &Arc<Self>, max: usize) -> Result<Vec<Event>, HistoryError> {
        match &**self {
            Log::Memory => Ok(Vec::new()),
            Log::File(_) => {
                let log = self.clone();
                blocking(move || match &*log {
                    Log::File(f) => f.load(max),
                    _ => Ok(Vec::new()),
                })
                .await
            }
            Log::Etcd(e) => e.load(max).await,
        }
    }

    /// Appends `event` (the file on a blocking thread).
    pub async fn append(self: &Arc<Self>, event: &Event) -> Result<(), HistoryError> {
        match &**self {
            Log::Memory => Ok(()),
            Log::File(_) => {
                let (log, event) = (self.clone(), event.clone());
                blocking(move || match &*log {
                    Log::File(f) => f.append(&event),
                    _ => Ok(()),
                })
                .await
            }
            Log::Etcd(e) => e.append(event).await,
        }
    }
}

/// Runs file work on tokio's blocking pool: an fsync on a slow disk never
/// holds a runtime worker (the daemon has two).
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(HistoryError::File {
            path: PathBuf::from(HISTORY_FILE),
            source: std::io::Error::other(e.to_string()),
        })
    })
}

/// `state_dir/history.jsonl`.
#[derive(Debug)]
pub struct FileLog {
    path: PathBuf,
    max: usize,
    /// Lines in the file, once known; `None` until loaded (the file is then
    /// read and mended before the first append).
    lines: Mutex<Option<usize>>,
}

impl FileLog {
    /// The history file in `state_dir`, keeping `max` events.
    pub fn new(state_dir: &Path, max: usize) -> FileLog {
        FileLog {
            path: state_dir.join(HISTORY_FILE),
            max: max.max(1),
            lines: Mutex::new(None),
        }
    }

    fn err(&self, source: std::io::Error) -> HistoryError {
        HistoryError::File {
            path: self.path.clone(),
            source,
        }
    }

    /// Every readable event of the file, oldest first, and whether some
    /// line could not be read (or the last one was cut).
    fn read_all(&self) -> Result<(Vec<Event>, bool), HistoryError> {
        let bytes = match crate::files::read_capped(&self.path, MAX_FILE_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
            Err(e) => return Err(self.err(e)),
        };
        let mut damaged = !bytes.is_empty() && !bytes.ends_with(b"\n");
        let mut events = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Event>(line) {
                Ok(e) => events.push(e),
                Err(_) => damaged = true,
            }
        }
        Ok((events, damaged))
    }

    /// The newest `max` events, changing nothing (the command line's read
    /// while no daemon runs).
    pub fn read(&self, max: usize) -> Result<Vec<Event>, HistoryError> {
        let (mut events, _) = self.read_all()?;
        let skip = events.len().saturating_sub(max);
        events.drain(..skip);
        Ok(events)
    }

    /// The newest `max` events; a damaged or overlong file is rewritten.
    fn load(&self, max: usize) -> Result<Vec<Event>, HistoryError> {
        let (mut events, damaged) = self.read_all()?;
        let total = events.len();
        if damaged || total > self.max {
            if damaged {
                tracing::warn!(message = "Skipped unreadable lines of the history file.", path = %self.path.display());
            }
            let keep = total.saturating_sub(self.max);
            events.drain(..keep);
            self.rewrite(&events)?;
        }
        *self.lines.lock().unwrap_or_else(|e| e.into_inner()) = Some(events.len());
        let skip = events.len().saturating_sub(max);
        events.drain(..skip);
        Ok(events)
    }

    /// Replaces the file with `events`: a temporary file, fsync, rename.
    fn rewrite(&self, events: &[Event]) -> Result<(), HistoryError> {
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let written = (|| {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            for e in events {
                serde_json::to_writer(&mut file, e)?;
                file.write_all(b"\n")?;
            }
            let file = file.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err(e)
        })
    }

    /// Appends one line; rewrites the file once it holds a tenth more than
    /// `max` events.
    fn append(&self, event: &Event) -> Result<(), HistoryError> {
        let known = *self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if known.is_none() {
            self.load(self.max)?;
        }
        let mut line = serde_json::to_vec(event).map_err(|e| self.err(e.into()))?;
        line.push(b'\n');
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| {
                f.write_all(&line)?;
                f.sync_data()
            });
        if let Err(e) = appended {
            // A write cut short may leave half a line: the next append reads
            // the file and mends it first.
            *self.lines.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(self.err(e));
        }
        let lines = {
            let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
            let n = lines.unwrap_or(0) + 1;
            *lines = Some(n);
            n
        };
        // The event is written: a failed trim is logged, never retried as
        // a failed append (that would write the event again).
        if lines > self.max + self.max / 10
            && let Err(e) = self.load(self.max)
        {
            tracing::warn!(message = "Cannot trim the history file; trying at the next event.", error = %e);
        }
        Ok(())
    }
}

/// `<prefix>history/` in etcd: one key per event, named by its time, so
/// the keys sort oldest first.
#[derive(Debug)]
pub struct EtcdLog {
    etcd: Etcd,
    prefix: String,
    max: usize,
    /// Keys under the prefix, once counted.
    keys: Mutex<Option<usize>>,
}

impl EtcdLog {
    /// The history under `<prefix>history/`, keeping `max` events.
    pub fn new(etcd: Etcd, prefix: &str, max: usize) -> EtcdLog {
        EtcdLog {
            etcd,
            prefix: format!("{prefix}history/"),
            max: max.max(1),
            keys: Mutex::new(None),
        }
    }

    /// The key of `event`: its time in microseconds, zero-padded, and a
    /// digest of its content, so a retried put overwrites its own key (two
    /// different events in one microsecond stay two).
    fn key(&self, event: &Event, value: &[u8]) -> String {
        use sha2::Digest as _;
        format!(
            "{}{:020}-{}",
            self.prefix,
            event.at.timestamp_micros().max(0),
            &hex::encode(sha2::Sha256::digest(value))[..16]
        )
    }

    async fn load(&self, max: usize) -> Result<Vec<Event>, HistoryError> {
        let mut events = Vec::new();
        let mut before: Option<String> = None;
        let mut skipped = 0;
        while events.len() < max {
            let page = self
                .etcd
                .scan(
                    &self.prefix,
                    before.as_deref(),
                    PAGE.min(max - events.len()),
                )
                .await?;
            let done = page.len() < PAGE.min(max - events.len());
            for (key, value) in page {
                match serde_json::from_slice::<Event>(&value) {
                    Ok(e) => events.push(e),
                    Err(_) => skipped += 1,
                }
                before = Some(key);
            }
            if done {
                break;
            }
        }
        if skipped > 0 {
            tracing::warn!(
                message = "Skipped unreadable history events in etcd.",
                skipped
            );
        }
        events.reverse();
        Ok(events)
    }

    async fn append(&self, event: &Event) -> Result<(), HistoryError> {
        let value = serde_json::to_vec(event)
            .map_err(|e| HistoryError::Etcd(EtcdError::Unreachable(e.to_string())))?;
        let key = self.key(event, &value);
        self.etcd.put(&key, value).await?;
        // The event is stored: counting and trimming failures are logged,
        // never retried as a failed append.
        if let Err(e) = self.trim().await {
            *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = None;
            tracing::warn!(message = "Cannot trim the history in etcd; trying at the next event.", error = %e);
        }
        Ok(())
    }

    /// Counts the keys (once) and trims the oldest once a tenth over `max`.
    async fn trim(&self) -> Result<(), EtcdError> {
        let known = *self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let keys = match known {
            Some(n) => n + 1,
            None => self.etcd.count(&self.prefix).await?,
        };
        *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
        if keys > self.max + self.max / 10 {
            let trimmed = self.etcd.trim_oldest(&self.prefix, keys - self.max).await?;
            *self.keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys - trimmed);
        }
        Ok(())
    }
}
