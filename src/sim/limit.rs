//! The simulator's own per-action rate limit.
//!
//! The real API allows 20 requests per second per action. The simulator keeps,
//! for each action, the arrival offsets of the requests it admitted during the
//! last window, and refuses a request when the window already holds `limit`
//! of them (a sliding log). Refused requests do not count against the quota.
//! Offsets are measured on a monotonic real-time clock, never the injected
//! simulation clock, because the limit is about real traffic.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// A sliding-log limiter for one action.
#[derive(Debug, Clone)]
pub(crate) struct SlidingWindow {
    limit: usize,
    window: Duration,
    admitted: VecDeque<Duration>,
}

impl SlidingWindow {
    /// At most `limit` admissions in any half-open interval of length `window`.
    pub(crate) fn new(limit: usize, window: Duration) -> Self {
        Self {
            limit,
            window,
            admitted: VecDeque::new(),
        }
    }

    /// Admits (and records) a request arriving at offset `at`, or refuses it.
    /// Offsets must not go backwards; a limit of 0 admits everything.
    pub(crate) fn try_admit(&mut self, at: Duration) -> bool {
        if self.limit == 0 {
            return true;
        }
        while let Some(&front) = self.admitted.front() {
            if front.saturating_add(self.window) <= at {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        if self.admitted.len() < self.limit {
            self.admitted.push_back(at);
            true
        } else {
            false
        }
    }
}

/// One [`SlidingWindow`] per action name.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    limit: usize,
    window: Duration,
    actions: HashMap<String, SlidingWindow>,
}

impl RateLimiter {
    /// A limiter allowing `limit` requests per `window` for every action.
    pub(crate) fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            actions: HashMap::new(),
        }
    }

    /// Admits a request for `action` arriving at offset `at`, or refuses it.
    pub(crate) fn try_admit(&mut self, action: &str, at: Duration) -> bool {
        let (limit, window) = (self.limit, self.window);
        self.actions
            .entry(action.to_owned())
            .or_insert_with(|| SlidingWindow::new(limit, window))
            .try_admit(at)
    }
}

/// The largest number of `arrivals` (sorted, ascending) that fall within any
/// half-open interval `[t, t + window)`.
pub(crate) fn max_in_any_window(arrivals: &[Duration], window: Duration) -> usize {
    let mut best = 0;
    let mut start = 0;
    for (end, &t) in arrivals.iter().enumerate() {
        while arrivals[start].saturating_add(window) <= t {
            start += 1;
        }
        best = best.max(end + 1 - start);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn window_admits_up_to_limit_then_slides() {
        let mut w = SlidingWindow::new(3, ms(1000));
        assert!(w.try_admit(ms(0)));
        assert!(w.try_admit(ms(10)));
        assert!(w.try_admit(ms(20)));
        assert!(!w.try_admit(ms(30)), "fourth within the second is refused");
        assert!(
            !w.try_admit(ms(999)),
            "still within the first admission's window"
        );
        assert!(
            w.try_admit(ms(1000)),
            "the first admission has left the window"
        );
        assert!(!w.try_admit(ms(1005)));
        assert!(w.try_admit(ms(1010)));
        assert!(w.try_admit(ms(1020)));
    }

    #[test]
    fn refused_requests_do_not_consume_quota() {
        let mut w = SlidingWindow::new(1, ms(100));
        assert!(w.try_admit(ms(0)));
        for t in 1..100 {
            assert!(!w.try_admit(ms(t)));
        }
        assert!(w.try_admit(ms(100)));
    }

    #[test]
    fn zero_limit_is_unlimited() {
        let mut w = SlidingWindow::new(0, ms(1000));
        assert!((0..1000).all(|_| w.try_admit(ms(0))));
    }

    #[test]
    fn limiter_is_per_action() {
        let mut l = RateLimiter::new(20, ms(1000));
        let admitted = (0..25)
            .filter(|i| l.try_admit("ScaleOutInstance", ms(*i)))
            .count();
        assert_eq!(admitted, 20);
        assert!(l.try_admit("DescribeInstances", ms(30)));
    }

    #[test]
    fn max_window_count() {
        assert_eq!(max_in_any_window(&[], ms(1000)), 0);
        assert_eq!(max_in_any_window(&[ms(5)], ms(1000)), 1);
        let paced: Vec<_> = (0..100).map(|i| ms(i * 52)).collect();
        assert_eq!(max_in_any_window(&paced, ms(1000)), 20);
        let tight: Vec<_> = (0..100).map(|i| ms(i * 50)).collect();
        assert_eq!(
            max_in_any_window(&tight, ms(1000)),
            20,
            "t and t+1000 are in different windows"
        );
        let burst = [ms(0), ms(1), ms(2), ms(2000), ms(2999), ms(3000)];
        assert_eq!(max_in_any_window(&burst, ms(1000)), 3);
        assert_eq!(max_in_any_window(&burst[3..], ms(1000)), 2);
    }
}
