//! Per-action rate limiters with a FIFO queue in front.
//!
//! Every EMR call waits here first. Each action has its own `governor`
//! limiter with a burst of one and a period of `1000/rps + 2` ms (52 ms at the
//! API's 20 requests per second). On top, no more than `rps` grants fall in
//! any 1.1 s window, so jitter between a grant and the request's arrival (a
//! busy CPU, a new connection) cannot put `rps + 1` requests into one second
//! at the server. Measured: without the window, 21 in one second under load. A fair
//! (`tokio::sync::Mutex`) queue in front of each limiter serves waiters in
//! arrival order, so no request starves. Waiting is async and never blocks
//! other work.
//!
//! governor runs on its own real clock; tokio's paused time does not move it.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};

use crate::tencent::emr::Action;

/// The documented EMR limit, per action.
pub(crate) const API_REQUESTS_PER_SECOND: u32 = 20;

/// One action's queue and limiter.
#[derive(Debug)]
pub(crate) struct ActionLimiter {
    /// The FIFO queue; holds the quota and the grant times of the last `rps` calls.
    queue: tokio::sync::Mutex<Window>,
}

/// What the queue guards.
#[derive(Debug)]
struct Window {
    #[allow(clippy::disallowed_types)] // governor runs on real time, and so does this window.
    recent: std::collections::VecDeque<std::time::Instant>,
    limiter: DefaultDirectRateLimiter,
    period: Duration,
    rps: usize,
}

/// No more than `rps` grants fall in any window this long. The extra 100 ms
/// over a second absorbs scheduling and network jitter between the grant and
/// the request's arrival, so the server never sees `rps + 1` in one second.
pub(crate) const WINDOW: Duration = Duration::from_millis(1100);

fn governor_for(period: Duration) -> DefaultDirectRateLimiter {
    let quota = Quota::with_period(period)
        .expect("spacing is at least 2 ms")
        .allow_burst(NonZeroU32::MIN);
    governor::RateLimiter::direct(quota)
}

impl ActionLimiter {
    /// A limiter for `rps` requests per second, spaced evenly with no burst.
    pub(crate) fn new(rps: NonZeroU32) -> Self {
        let period = spacing(rps);
        Self {
            queue: tokio::sync::Mutex::new(Window {
                recent: std::collections::VecDeque::new(),
                limiter: governor_for(period),
                period,
                rps: rps.get() as usize,
            }),
        }
    }

    /// Changes the rate to `rps`, keeping the recent grant times: the
    /// window and the spacing from the last grant still hold across the
    /// change, so a re-quota never lets a burst through.
    pub(crate) async fn requota(&self, rps: NonZeroU32) {
        let mut w = self.queue.lock().await;
        if w.rps == rps.get() as usize {
            return;
        }
        w.period = spacing(rps);
        w.limiter = governor_for(w.period);
        w.rps = rps.get() as usize;
        while w.recent.len() > w.rps {
            w.recent.pop_front();
        }
    }

    /// Waits for this caller's turn; returns how long it waited.
    #[allow(clippy::disallowed_types)] // governor runs on real time, so this window does too.
    pub(crate) async fn acquire(&self) -> Duration {
        let start = std::time::Instant::now();
        let mut w = self.queue.lock().await;
        w.limiter.until_ready().await;
        // A limiter re-quota'd moments ago knows no history: keep the gap
        // from the last grant ourselves.
        if let Some(last) = w.recent.back() {
            sleep_until(*last + w.period).await;
        }
        if w.recent.len() >= w.rps
            && let Some(oldest) = w.recent.front()
        {
            sleep_until(*oldest + WINDOW).await;
        }
        w.recent.push_back(std::time::Instant::now());
        while w.recent.len() > w.rps {
            w.recent.pop_front();
        }
        start.elapsed()
    }

    #[cfg(test)]
    /// The minimum gap between two calls.
    pub async fn period(&self) -> Duration {
        self.queue.lock().await.period
    }
}

/// Sleeps until the real-clock instant `at`, if it is still ahead.
#[allow(clippy::disallowed_types)] // governor runs on real time, so this window does too.
async fn sleep_until(at: std::time::Instant) {
    let now = std::time::Instant::now();
    if at > now {
        tokio::time::sleep(at - now).await;
    }
}

/// The gap between calls for `rps` requests per second: `1000/rps + 2` ms.
pub(crate) fn spacing(rps: NonZeroU32) -> Duration {
    Duration::from_millis(1000 / u64::from(rps.get()) + 2)
}

/// One limiter per EMR action.
#[derive(Debug)]
pub struct Limiters {
    by_action: BTreeMap<Action, ActionLimiter>,
}

impl Limiters {
    /// ScaleOutInstance at `scale_out_rps`; every other action gets its own
    /// limiter at the API's 20 per second.
    pub fn new(scale_out_rps: NonZeroU32) -> Self {
        let default = NonZeroU32::new(API_REQUESTS_PER_SECOND).expect("20 is not zero");
        let by_action = Action::ALL
            .into_iter()
            .map(|a| {
                let rps = if a == Action::ScaleOutInstance {
                    scale_out_rps
                } else {
                    default
                };
                (a, ActionLimiter::new(rps))
            })
            .collect();
        Self { by_action }
    }

    /// The limiter of `action`.
    pub(crate) fn get(&self, action: Action) -> &ActionLimiter {
        &self.by_action[&action]
    }

    /// Re-quotas ScaleOutInstance's limiter (a reload changed
    /// `requests_per_second`), keeping its recent grants.
    pub(crate) async fn requota_scale_out(&self, rps: NonZeroU32) {
        self.get(Action::ScaleOutInstance).requota(rps).await;
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_types)] // governor runs on real time; these tests measure it.
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn spacing_is_52ms_at_20_per_second() {
        assert_eq!(
            spacing(NonZeroU32::new(20).unwrap()),
            Duration::from_millis(52)
        );
        assert_eq!(
            spacing(NonZeroU32::new(1).unwrap()),
            Duration::from_millis(1002)
        );
    }

    #[tokio::test]
    async fn no_burst_and_fifo_order() {
        let limiter = Arc::new(ActionLimiter::new(NonZeroU32::new(20).unwrap()));
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for i in 0..25u32 {
            let limiter = limiter.clone();
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                limiter.acquire().await;
                tx.send((i, start.elapsed())).unwrap();
            }));
            // Make arrival order well defined.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(x) = rx.recv().await {
            got.push(x);
        }
        let order: Vec<u32> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(
            order,
            (0..25).collect::<Vec<_>>(),
            "served out of arrival order"
        );
        // No two grants closer than the period (governor may round by < 1 ms).
        for w in got.windows(2) {
            let gap = w[1].1 - w[0].1;
            assert!(gap >= Duration::from_millis(51), "gap {gap:?}");
        }
        // So no 1-second window holds more than 20 grants.
        let times: Vec<Duration> = got.iter().map(|(_, t)| *t).collect();
        for (i, t) in times.iter().enumerate() {
            let n = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(n <= 20, "{n} grants in one second");
        }
    }

    #[tokio::test]
    async fn actions_do_not_share_a_limiter() {
        let limiters = Limiters::new(NonZeroU32::new(1).unwrap());
        limiters.get(Action::ScaleOutInstance).acquire().await;
        let start = Instant::now();
        limiters.get(Action::DescribeInstances).acquire().await;
        assert!(start.elapsed() < Duration::from_millis(500));
        assert_eq!(
            limiters.get(Action::ScaleOutInstance).period().await,
            Duration::from_millis(1002)
        );
    }

    #[tokio::test]
    async fn a_requota_keeps_the_window_and_the_spacing() {
        let limiter = ActionLimiter::new(NonZeroU32::new(20).unwrap());
        let start = Instant::now();
        let mut times = Vec::new();
        for i in 0..30 {
            if i == 10 {
                // A reload raises nothing past 20/s, but a fresh governor
                // limiter would grant at once: the kept history must not.
                limiter.requota(NonZeroU32::new(10).unwrap()).await;
                assert_eq!(limiter.period().await, Duration::from_millis(102));
            }
            limiter.acquire().await;
            times.push(start.elapsed());
        }
        for w in times.windows(2).skip(10) {
            assert!(
                w[1] - w[0] >= Duration::from_millis(101),
                "gap {:?}",
                w[1] - w[0]
            );
        }
        for (i, t) in times.iter().enumerate() {
            let n = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_secs(1))
                .count();
            assert!(n <= 20, "{n} grants in one second");
        }
    }
}
