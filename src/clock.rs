//! Injected time.
//!
//! Every component that needs "now" takes a [`Clock`], so tests can run on a
//! manual clock and the demo on an accelerated one. Two things deliberately
//! bypass it and read the wall clock: request signing (the server checks the
//! timestamp against its own clock) and ClientToken age (the server's 5-minute
//! deduplication window is wall time too).

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current instant, as seen by this clock.
    fn now(&self) -> DateTime<Utc>;

    /// How long to really wait for `d` to pass on this clock.
    fn real(&self, d: std::time::Duration) -> std::time::Duration {
        d
    }
}

/// A shared, dynamically typed clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        wall_now()
    }
}

/// The wall clock, for the two places that must never use an injected clock.
#[allow(clippy::disallowed_methods)] // The one place the wall clock is read.
pub fn wall_now() -> DateTime<Utc> {
    Utc::now()
}

/// A clock that only moves when told to. For tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A clock that runs `speed` times faster than the wall clock from `start`.
/// The demo uses it to show hours of cluster life in a minute.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
    speed: f64,
}

impl ScaledClock {
    /// A clock that reads `start` now and then runs `speed` times faster than real time.
    pub fn new(start: DateTime<Utc>, speed: f64) -> Self {
        Self {
            start,
            origin: tokio::time::Instant::now(),
            speed: speed.max(f64::MIN_POSITIVE),
        }
    }
}

impl Clock for ScaledClock {
    fn real(&self, d: std::time::Duration) -> std::time::Duration {
        d.div_f64(self.speed)
    }

    fn now(&self) -> DateTime<Utc> {
        let real = self.origin.elapsed().as_secs_f64() * self.speed;
        let scaled =
            std::time::Duration::try_from_secs_f64(real).unwrap_or(std::time::Duration::ZERO);
        self.start + chrono::Duration::from_std(scaled).unwrap_or(chrono::Duration::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(std::time::Duration::from_secs(90));
        assert_eq!(clock.now().timestamp(), 1_700_000_090);
    }

    #[tokio::test(start_paused = true)]
    async fn scaled_clock_runs_faster() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = ScaledClock::new(start, 60.0);
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(clock.now().timestamp(), 1_700_000_120);
    }
}
