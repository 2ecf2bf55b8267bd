//! Saturating time arithmetic. Instants come from the clock, the state file
//! and the API; durations from the config. Adding them never panics: a sum
//! past the calendar's end is the end (a cooldown that never ends), and one
//! before its start is the start.

use chrono::{DateTime, Utc};

/// `t + d`, saturating at the calendar's end.
pub(crate) fn after(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating at the calendar's start.
pub(crate) fn before(t: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sums_saturate_instead_of_panicking() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(after(now, Duration::from_secs(60)).timestamp(), 60);
        assert_eq!(before(now, Duration::from_secs(60)).timestamp(), -60);
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            after(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(before(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(
            before(DateTime::<Utc>::MIN_UTC, Duration::from_secs(1)),
            DateTime::<Utc>::MIN_UTC
        );
    }
}
