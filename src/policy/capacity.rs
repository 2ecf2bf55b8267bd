//! The capacity rule, pure: size a cluster from demand, keep headroom above
//! it, and look ahead by the demand's recent growth.
//!
//! Demand `D` is work that wants capacity whatever capacity exists (YARN
//! allocated plus pending memory), so it does not fall when nodes arrive and
//! needs no settle window. The rule wants
//! `ceil((D + max(headroom, horizon × growth) − reserved) / per_node)` task
//! nodes, in both directions.
//!
//! Why look ahead by twice a scale-out: the cluster runs one operation at a
//! time, so a correction ordered now serves one flow later, and the next one
//! can only be ordered after that. Growth that lasts must be covered for two
//! flows, or the second order arrives late. A burst that ramps over a few
//! minutes shows in the slope long before it shows as pending work.
//!
//! When is a scale-out due? An order placed now serves one flow later, so
//! the rule orders once demand plus the larger of the headroom and **one
//! flow's** projected growth (half the horizon) outgrows the task nodes
//! running and in flight: the deficit an order placed now could still
//! prevent. It then sizes the order for the whole horizon. Ordering on the
//! full horizon's projection (the contract's "the difference at once") spends
//! the cluster's one operation on every short rise: a single job's arrival
//! reads as a slope for a whole window, and the order is sized for two flows
//! of it. Waiting for demand plus headroom alone orders a ramp late, once its
//! first minutes already wait. Measured on `docs/demand-week.csv` (README,
//! "Evidence on a synthetic week"): the one-flow trigger bills fewer
//! node-hours and leaves less unmet demand than ordering on the full
//! projection, and leaves a third less unmet demand than waiting.
//!
//! # Rules
//! - A capacity rule sizes from demand (allocated plus pending, which does not fall when
//!   nodes arrive): `desired = ceil((D + max(headroom, horizon x growth) - reserved) /
//!   per_node)` against running plus in flight. A scale-out is due once demand plus
//!   `max(headroom, horizon/2 x growth)` (one flow's look-ahead when the horizon is
//!   "auto") outgrows running plus in flight; it is then sized for the whole horizon.
//!   The automatic horizon reads `scale_out_secs` in the state (the last
//!   10 flows, recorded when a chunk's nodes arrive).

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Reading, Sample};

/// How long a scale-out takes until one has been observed: Tencent
/// documents 10 to 20 minutes.
pub(crate) const DEFAULT_SCALE_OUT: Duration = Duration::from_secs(600);

/// The default `trend_window`: chosen on four days of
/// `docs/demand-week.csv` from the grid of `scripts/capacity-evidence.sh
/// --sweep` (the fewest node-hours among the settings that leave less unmet
/// demand than every reactive policy compared there) and judged on the other
/// three. Two minutes read single job arrivals as growth more often.
pub(crate) const DEFAULT_TREND_WINDOW: Duration = Duration::from_secs(180);

/// How many completed scale-out flows the automatic horizon reads.
pub(crate) const SCALE_OUT_MEMORY: usize = 10;

/// How far ahead a capacity rule projects growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Horizon {
    /// Twice the cluster's median scale-out duration.
    Auto,
    /// A fixed span.
    Fixed(Duration),
}

/// A capacity rule's parameters, in the query's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    /// What one task node gives YARN.
    pub per_node: f64,
    /// What the nodes that are not task nodes give YARN.
    pub reserved: f64,
    /// Kept free above demand.
    pub headroom: f64,
    /// Growth is measured over this window; zero turns the trend off.
    pub trend_window: Duration,
    /// Growth is projected this far ahead.
    pub trend_horizon: Horizon,
}

/// How a capacity rule sized the cluster at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Demand, the query's value.
    pub demand: f64,
    /// Growth of demand per second over the trend window (0 when falling or
    /// with too few samples).
    pub growth: f64,
    /// The horizon in use.
    pub horizon: Duration,
    /// `horizon × growth`.
    pub trend: f64,
    /// The configured headroom.
    pub headroom: f64,
    /// The rule's `reserved`.
    pub reserved: f64,
    /// The rule's `per_node`.
    pub per_node: f64,
    /// Task nodes wanted, before the cluster's bounds.
    pub raw: u32,
    /// Task nodes demand plus the larger of the headroom and half the
    /// trend want, before the bounds: a scale-out is due only above what
    /// runs and comes.
    pub due: u32,
}

impl Sizing {
    /// What is kept above demand: the headroom or the projected growth,
    /// whichever is larger.
    pub(crate) fn margin(&self) -> f64 {
        self.headroom.max(self.trend)
    }

    /// What a scale-out must foresee to be due: the headroom or the growth
    /// projected over half the horizon (one flow, when it is "auto"),
    /// whichever is larger.
    pub(crate) fn lead(&self) -> f64 {
        self.headroom.max(self.trend / 2.0)
    }
}

impl Capacity {
    /// The horizon in use: fixed, or twice `scale_out` (the cluster's
    /// median scale-out duration; [`DEFAULT_SCALE_OUT`] when none is known).
    pub(crate) fn horizon(&self, scale_out: Option<Duration>) -> Duration {
        match self.trend_horizon {
            Horizon::Fixed(d) => d,
            Horizon::Auto => scale_out.unwrap_or(DEFAULT_SCALE_OUT).saturating_mul(2),
        }
    }

    /// Sizes the cluster for `demand`, with growth from `samples` (the
    /// rule's own observations, newest last).
    pub(crate) fn size(
        &self,
        demand: f64,
        samples: &[Sample],
        now: DateTime<Utc>,
        scale_out: Option<Duration>,
    ) -> Sizing {
        let growth = growth(samples, now, self.trend_window);
        let horizon = self.horizon(scale_out);
        let trend = growth * horizon.as_secs_f64();
        let mut sizing = Sizing {
            demand,
            growth,
            horizon,
            trend,
            headroom: self.headroom,
            reserved: self.reserved,
            per_node: self.per_node,
            raw: 0,
            due: 0,
        };
        let nodes = |margin: f64| {
            super::ceil_u32((demand.max(0.0) + margin - self.reserved) / self.per_node)
        };
        sizing.raw = nodes(sizing.margin());
        sizing.due = nodes(sizing.lead());
        sizing
    }
}

/// The slope of the readings over `window` before `now`, per second: the
/// newest value against the oldest one at or after `now − window`. Zero when
/// the values fall, when `window` is zero, or while fewer than two readings
/// span at least half the window. `samples` are in time order.
pub(crate) fn growth(samples: &[Sample], now: DateTime<Utc>, window: Duration) -> f64 {
    let Ok(span) = chrono::Duration::from_std(window) else {
        return 0.0;
    };
    if span.is_zero() {
        return 0.0;
    }
    let Some(start) = now.checked_sub_signed(span) else {
        return 0.0;
    };
    // Samples are in time order: the window is one slice.
    let from = samples.partition_point(|s| s.at < start);
    let to = samples.partition_point(|s| s.at <= now);
    let window = samples.get(from..to).unwrap_or(&[]);
    let value = |s: &Sample| match s.value {
        Reading::Value(v) => Some((s.at, v)),
        Reading::Missing(_) => None,
    };
    let Some(oldest) = window.iter().find_map(value) else {
        return 0.0;
    };
    let Some(newest) = window.iter().rev().find_map(value) else {
        return 0.0;
    };
    let covered = (newest.0 - oldest.0).as_seconds_f64();
    if covered <= 0.0 || covered < span.as_seconds_f64() / 2.0 {
        return 0.0;
    }
    let g = (newest.1 - oldest.1) / covered;
    if g.is_finite() && g > 0.0 { g } else { 0.0 }
}

/// The median of recent scale-out durations, whole seconds (the newest
/// [`SCALE_OUT_MEMORY`] at most); `None` when there are none.
pub(crate) fn median_scale_out(durations_secs: &[u64]) -> Option<Duration> {
    let recent = &durations_secs[durations_secs.len().saturating_sub(SCALE_OUT_MEMORY)..];
    if recent.is_empty() {
        return None;
    }
    let mut sorted = recent.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    let secs = if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        sorted[mid - 1] / 2 + sorted[mid] / 2 + (sorted[mid - 1] % 2 + sorted[mid] % 2) / 2
    };
    Some(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DataIssue;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn series(values: &[(i64, f64)]) -> Vec<Sample> {
        values
            .iter()
            .map(|&(at, v)| Sample {
                at: t(at),
                value: Reading::Value(v),
            })
            .collect()
    }

    const TWO_MIN: Duration = Duration::from_secs(120);

    #[test]
    fn growth_is_the_slope_of_the_window_end_points() {
        let s = series(&[(-300, 0.0), (-120, 100.0), (-60, 130.0), (0, 220.0)]);
        // 100 -> 220 over 120 s; the sample before the window is not read.
        assert_eq!(growth(&s, t(0), TWO_MIN), 1.0);
    }

    #[test]
    fn growth_is_zero_with_too_few_samples() {
        assert_eq!(growth(&[], t(0), TWO_MIN), 0.0);
        assert_eq!(growth(&series(&[(0, 500.0)]), t(0), TWO_MIN), 0.0);
        // Two samples 45 s apart do not span half of 2 minutes.
        assert_eq!(
            growth(&series(&[(-45, 0.0), (0, 500.0)]), t(0), TWO_MIN),
            0.0
        );
        // 60 s does.
        assert_eq!(
            growth(&series(&[(-60, 0.0), (0, 600.0)]), t(0), TWO_MIN),
            10.0
        );
    }

    #[test]
    fn only_growth_counts_and_missing_readings_are_skipped() {
        assert_eq!(
            growth(&series(&[(-120, 900.0), (0, 100.0)]), t(0), TWO_MIN),
            0.0
        );
        let mut s = series(&[(-120, 0.0), (0, 240.0)]);
        s.insert(
            1,
            Sample {
                at: t(-60),
                value: Reading::Missing(DataIssue::Error),
            },
        );
        assert_eq!(growth(&s, t(0), TWO_MIN), 2.0);
        assert_eq!(growth(&s, t(0), Duration::ZERO), 0.0);
    }

    #[test]
    fn auto_horizon_is_twice_the_median_scale_out() {
        let c = Capacity {
            per_node: 1.0,
            reserved: 0.0,
            headroom: 0.0,
            trend_window: TWO_MIN,
            trend_horizon: Horizon::Auto,
        };
        assert_eq!(c.horizon(None), Duration::from_secs(1200));
        let median = median_scale_out(&[9999, 1, 300, 240, 200, 260, 250, 270, 230, 220, 210]);
        // The oldest (9999) is beyond the last ten.
        assert_eq!(median, Some(Duration::from_secs(235)));
        assert_eq!(c.horizon(median), Duration::from_secs(470));
        assert_eq!(median_scale_out(&[]), None);
        assert_eq!(median_scale_out(&[7]), Some(Duration::from_secs(7)));
    }

    #[test]
    fn sizing_follows_the_formula() {
        let c = Capacity {
            per_node: 57344.0,
            reserved: 229_376.0,
            headroom: 28672.0,
            trend_window: TWO_MIN,
            trend_horizon: Horizon::Fixed(Duration::from_secs(240)),
        };
        // Demand grows 6 GiB a minute: 24 GiB over 4 minutes, below headroom.
        let gib = 1024.0;
        let s = series(&[(-120, 288.0 * gib), (0, 300.0 * gib)]);
        let z = c.size(300.0 * gib, &s, t(0), None);
        assert_eq!(z.growth, 6.0 * gib / 60.0);
        assert!((z.trend - 24.0 * gib).abs() < 1e-6);
        assert_eq!(z.margin(), 28672.0);
        // (300 + 28 - 224) / 56 = 1.86 -> 2.
        assert_eq!(z.raw, 2);
        // Growth of 30 GiB a minute: 120 GiB over the horizon sizes the
        // order, 60 GiB (half of it, one flow) decides whether it is due.
        let s = series(&[(-120, 240.0 * gib), (0, 300.0 * gib)]);
        let z = c.size(300.0 * gib, &s, t(0), None);
        assert_eq!(z.lead(), 60.0 * gib);
        // (300 + 120 - 224) / 56 = 3.5 -> 4; (300 + 60 - 224) / 56 = 2.4 -> 3.
        assert_eq!((z.raw, z.due), (4, 3));
        // Demand below what the core nodes give: no task node.
        assert_eq!(c.size(10.0, &[], t(0), None).raw, 0);
        // Negative demand reads as none.
        assert_eq!(c.size(-1e9, &[], t(0), None).raw, 0);
    }
}
