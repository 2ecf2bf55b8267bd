//! A synthetic week of YARN demand, the data the capacity rule's evidence is
//! judged on (`docs/demand-week.csv`, written by `generate demand-week`).
//!
//! Demand (allocated plus pending memory) is the memory of the jobs that
//! run or wait, so the week is made of jobs: one sample a minute, in MB,
//! from a Monday 00:00 UTC, seeded and deterministic.
//! - Services hold 48 GiB at all hours.
//! - Office-hours jobs arrive at random (Poisson) at a rate that follows a
//!   hump from 08:00 to 20:00 peaking at 14:00, 0.65 jobs a minute at the
//!   weekday peak and 35% of that at weekends, with a trickle at night;
//!   each asks for 8 to 40 GiB and runs 5 to 45 minutes.
//! - A nightly ETL submits 20 jobs (weekends 16) over 10 minutes from 01:00,
//!   each 20 to 28 GiB for 80 to 110 minutes.
//! - Bursts (5 to 8 on weekdays, 1 or 2 at weekends, between 09:00 and
//!   19:00) are 6 to 14 jobs of 24 to 32 GiB submitted over 3 to 5 minutes,
//!   each running 10 to 40 minutes: about two 56 GiB nodes of demand a
//!   minute while they ramp. Yesterday's bursts say nothing about today's.
//!
//! The bursts are what reactive policies miss: they ramp faster than a
//! node can be provisioned, and they are not seasonal.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};

/// One GiB in MB.
const GIB: f64 = 1024.0;

/// The seed of `docs/demand-week.csv`.
pub(crate) const SEED: u64 = 2026;

/// The first minute of `docs/demand-week.csv`: Monday 2026-11-02 00:00 UTC.
pub(crate) const START: &str = "2026-11-02T00:00:00Z";

/// Minutes in the week.
const MINUTES: usize = 7 * 1440;

/// One job: from its submission minute, for `minutes`, `mb` of demand.
#[derive(Debug, Clone, Copy)]
struct Job {
    start: usize,
    minutes: usize,
    mb: f64,
}

/// A uniform draw in `[lo, hi)`.
fn uniform(rng: &mut fastrand::Rng, lo: f64, hi: f64) -> f64 {
    lo + rng.f64() * (hi - lo)
}

/// Office-hours arrivals per minute at `minute` of a day.
fn arrival_rate(minute: usize, weekend: bool) -> f64 {
    let hour = minute as f64 / 60.0;
    let hump = if (8.0..20.0).contains(&hour) {
        (std::f64::consts::PI * (hour - 8.0) / 12.0).sin().powi(2)
    } else {
        0.0
    };
    let peak = if weekend { 0.35 * 0.65 } else { 0.65 };
    0.01 + peak * hump
}

/// Seven days of demand from `start` (a Monday midnight for the documented
/// shape), one sample a minute: `(time, MB)`.
pub(crate) fn week(seed: u64, start: DateTime<Utc>) -> Vec<(DateTime<Utc>, f64)> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut jobs: Vec<Job> = Vec::new();
    for day in 0..7usize {
        let midnight = day * 1440;
        let date = start + Duration::days(day as i64);
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        // Office hours: one Bernoulli draw a minute is Poisson enough at
        // well under one arrival a minute (at most 0.66).
        for minute in 0..1440 {
            if rng.f64() < arrival_rate(minute, weekend) {
                jobs.push(Job {
                    start: midnight + minute,
                    minutes: rng.usize(5..46),
                    mb: uniform(&mut rng, 8.0, 40.0) * GIB,
                });
            }
        }
        let etl = if weekend { 16 } else { 20 };
        for _ in 0..etl {
            jobs.push(Job {
                start: midnight + 60 + rng.usize(0..10),
                minutes: rng.usize(80..111),
                mb: uniform(&mut rng, 20.0, 28.0) * GIB,
            });
        }
        let bursts = if weekend {
            1 + rng.usize(0..2)
        } else {
            5 + rng.usize(0..4)
        };
        for _ in 0..bursts {
            let at = midnight + 9 * 60 + rng.usize(0..600);
            let ramp = rng.usize(3..6);
            let runs = rng.usize(10..41);
            for _ in 0..rng.usize(6..15) {
                jobs.push(Job {
                    start: at + rng.usize(0..ramp),
                    minutes: runs + rng.usize(0..5),
                    mb: uniform(&mut rng, 24.0, 32.0) * GIB,
                });
            }
        }
    }
    // Demand per minute: services plus every job submitted and not done.
    let mut delta = vec![0.0f64; MINUTES + 1];
    for j in &jobs {
        let from = j.start.min(MINUTES);
        let to = (j.start + j.minutes).min(MINUTES);
        delta[from] += j.mb;
        delta[to] -= j.mb;
    }
    let mut level = 48.0 * GIB;
    (0..MINUTES)
        .map(|m| {
            level += delta[m];
            (start + Duration::minutes(m as i64), level.max(0.0).round())
        })
        .collect()
}

/// The week as the CSV `backtest --input` reads: `timestamp,demand_mb`.
pub(crate) fn csv(rows: &[(DateTime<Utc>, f64)]) -> String {
    let mut s = String::with_capacity(rows.len() * 32 + 32);
    s.push_str("timestamp,demand_mb\n");
    for (t, v) in rows {
        s.push_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        s.push(',');
        s.push_str(&format!("{v:.0}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(START).unwrap().to_utc()
    }

    #[test]
    fn the_committed_week_is_what_the_generator_makes() {
        let committed = include_str!("../../docs/demand-week.csv");
        assert!(
            committed == csv(&week(SEED, start())),
            "docs/demand-week.csv differs from `generate demand-week`; regenerate it"
        );
    }

    #[test]
    fn weekdays_are_busier_than_weekends_and_bursts_ramp() {
        let w = week(SEED, start());
        assert_eq!(w.len(), 7 * 1440);
        let day_total = |d: usize| -> f64 { w[d * 1440..(d + 1) * 1440].iter().map(|p| p.1).sum() };
        assert!(day_total(1) > day_total(5) * 1.3);
        // The steepest minute-on-minute rise is a ramp of a few minutes,
        // not a step: below 300 GiB a minute.
        let steepest = w.windows(2).map(|p| p[1].1 - p[0].1).fold(0.0f64, f64::max);
        assert!(steepest < 300.0 * GIB, "{steepest}");
        assert!(steepest > 30.0 * GIB, "{steepest}");
    }
}
