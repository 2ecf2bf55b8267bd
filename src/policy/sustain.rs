//! The one sustain judgement: has a condition held long enough?
//!
//! The daemon feeds it the consecutive evaluations it observed; `plan` and
//! `backtest` feed it range-query samples. A gap between samples longer than
//! `max_gap` (a missed evaluation, a restart, a hole in the range) breaks the
//! run, so a restart can delay an action by one window but never skips it.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Reading, Sample};

/// How long, or how many times, a condition must hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sustain {
    /// Held continuously for at least this long (Prometheus `for` semantics:
    /// from the first breaching sample to now).
    For(Duration),
    /// Held in at least this many consecutive evaluations.
    Evaluations(u32),
}

/// The unbroken run of breaching samples that ends with the newest one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    /// Time of the run's first sample.
    pub since: DateTime<Utc>,
    /// Samples in the run.
    pub count: u32,
}

/// The run of samples (newest last) satisfying `breach`, ending at the newest
/// sample, or `None` if the newest does not breach or is older than `max_gap`.
pub(crate) fn current_run(
    samples: &[Sample],
    now: DateTime<Utc>,
    max_gap: Duration,
    breach: impl Fn(f64) -> bool,
) -> Option<Run> {
    let max_gap = chrono::Duration::from_std(max_gap).unwrap_or(chrono::Duration::MAX);
    let newest = samples.last()?;
    if now - newest.at > max_gap {
        return None;
    }
    let mut run: Option<Run> = None;
    let mut newer_at = newest.at;
    for s in samples.iter().rev() {
        let Reading::Value(v) = s.value else { break };
        if !breach(v) || newer_at - s.at > max_gap {
            break;
        }
        newer_at = s.at;
        run = Some(Run {
            since: s.at,
            count: run.map_or(1, |r| r.count + 1),
        });
    }
    run
}

impl Sustain {
    /// Whether `run` satisfies this requirement at `now`.
    pub(crate) fn is_met(&self, run: Option<Run>, now: DateTime<Utc>) -> bool {
        match (self, run) {
            (_, None) => false,
            (Sustain::For(d), Some(r)) => (now - r.since).to_std().is_ok_and(|held| held >= *d),
            (Sustain::Evaluations(n), Some(r)) => r.count >= *n,
        }
    }

    /// How long the run has held so far, for explanations.
    pub(crate) fn progress(run: Option<Run>, now: DateTime<Utc>) -> Duration {
        run.and_then(|r| (now - r.since).to_std().ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DataIssue;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn series(points: &[(i64, Option<f64>)]) -> Vec<Sample> {
        points
            .iter()
            .map(|(s, v)| Sample {
                at: t(*s),
                value: v.map_or(Reading::Missing(DataIssue::Empty), Reading::Value),
            })
            .collect()
    }

    const GAP: Duration = Duration::from_secs(30);

    #[test]
    fn for_window_counts_from_the_first_breach() {
        let s = series(&[
            (0, Some(1.0)),
            (15, Some(9.0)),
            (30, Some(9.0)),
            (45, Some(9.0)),
            (60, Some(9.0)),
            (75, Some(9.0)),
        ]);
        let need = Sustain::For(Duration::from_secs(60));
        let run = current_run(&s[..5], t(60), GAP, |v| v > 8.0);
        assert_eq!(
            run,
            Some(Run {
                since: t(15),
                count: 4
            })
        );
        assert!(!need.is_met(run, t(60)), "45 s is not 1 m");
        let run = current_run(&s, t(75), GAP, |v| v > 8.0);
        assert!(need.is_met(run, t(75)));
    }

    #[test]
    fn a_dip_a_gap_or_missing_data_restarts_the_window() {
        let need = Sustain::For(Duration::from_secs(30));
        let dip = series(&[
            (0, Some(9.0)),
            (15, Some(1.0)),
            (30, Some(9.0)),
            (45, Some(9.0)),
        ]);
        assert!(!need.is_met(current_run(&dip, t(45), GAP, |v| v > 8.0), t(45)));
        let gap = series(&[(0, Some(9.0)), (15, Some(9.0)), (120, Some(9.0))]);
        let run = current_run(&gap, t(120), GAP, |v| v > 8.0);
        assert_eq!(
            run.map(|r| r.since),
            Some(t(120)),
            "a restart never skips the window"
        );
        let missing = series(&[(0, Some(9.0)), (15, None), (30, Some(9.0))]);
        assert_eq!(
            current_run(&missing, t(30), GAP, |v| v > 8.0).map(|r| r.count),
            Some(1)
        );
    }

    #[test]
    fn stale_newest_sample_is_no_run() {
        let s = series(&[(0, Some(9.0))]);
        assert_eq!(current_run(&s, t(31), GAP, |v| v > 8.0), None);
        assert_eq!(current_run(&[], t(0), GAP, |v| v > 8.0), None);
    }

    #[test]
    fn evaluations_count_samples() {
        let s = series(&[(0, Some(9.0)), (15, Some(9.0)), (30, Some(9.0))]);
        let run = current_run(&s, t(30), GAP, |v| v > 8.0);
        assert!(Sustain::Evaluations(3).is_met(run, t(30)));
        assert!(!Sustain::Evaluations(4).is_met(run, t(30)));
        assert!(
            Sustain::For(Duration::ZERO).is_met(current_run(&s[..1], t(0), GAP, |v| v > 8.0), t(0))
        );
    }
}
