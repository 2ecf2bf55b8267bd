//! The closed-loop replay model shared by `demo` and `backtest`.
//!
//! Demand (YARN memory applications ask for: allocated plus pending) does not
//! depend on capacity. Capacity is simulated: base capacity from core nodes
//! plus task nodes, each ordered node serving after a provisioning delay.
//! Pending memory, available memory and utilisation are recomputed from the
//! two at every step, so a policy that adds nodes sees its own effect.

pub(crate) mod week;

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use crate::policy::ReplaySignal;

/// Sizes of the simulated cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    /// Memory the core nodes give YARN, MB.
    pub base_capacity_mb: f64,
    /// Memory one task node gives YARN, MB.
    pub node_memory_mb: f64,
    /// From order to serving.
    pub provisioning_delay: Duration,
}

impl Default for Model {
    fn default() -> Self {
        Self {
            base_capacity_mb: 64.0 * 1024.0,
            node_memory_mb: 16.0 * 1024.0,
            provisioning_delay: Duration::from_secs(240),
        }
    }
}

/// The derived signals at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Signals {
    /// Demand, MB.
    pub demand_mb: f64,
    /// Serving capacity, MB.
    pub capacity_mb: f64,
    /// Demand above capacity, MB.
    pub pending_mb: f64,
    /// Capacity above demand, MB.
    pub available_mb: f64,
    /// Allocated over capacity, 0..1.
    pub utilisation: f64,
}

impl Model {
    /// Serving capacity with `task_nodes` running.
    pub fn capacity_mb(&self, task_nodes: u32) -> f64 {
        self.base_capacity_mb + f64::from(task_nodes) * self.node_memory_mb
    }

    /// The derived signals for `demand_mb` and `task_nodes` running.
    pub(crate) fn signals(&self, demand_mb: f64, task_nodes: u32) -> Signals {
        let demand_mb = demand_mb.max(0.0);
        let capacity_mb = self.capacity_mb(task_nodes);
        let allocated = demand_mb.min(capacity_mb);
        Signals {
            demand_mb,
            capacity_mb,
            pending_mb: (demand_mb - capacity_mb).max(0.0),
            available_mb: (capacity_mb - demand_mb).max(0.0),
            utilisation: if capacity_mb > 0.0 {
                allocated / capacity_mb
            } else {
                1.0
            },
        }
    }
}

impl Signals {
    /// The value a rule declared with `replay_signal` sees.
    pub(crate) fn get(&self, signal: ReplaySignal) -> f64 {
        match signal {
            ReplaySignal::PendingMb => self.pending_mb,
            ReplaySignal::AvailableMb => self.available_mb,
            ReplaySignal::Utilisation => self.utilisation,
            ReplaySignal::DemandMb => self.demand_mb,
        }
    }
}

/// How long a synthetic burst takes to build up, and to go: bursts of YARN
/// demand ramp over a few minutes as their jobs are submitted.
pub(crate) const BURST_RAMP: Duration = Duration::from_secs(240);

/// A synthetic daily demand: a business-hours hump over a night floor, with
/// seeded bursts that ramp up and down over [`BURST_RAMP`]. Deterministic
/// for a seed.
#[derive(Debug, Clone)]
pub struct SyntheticDemand {
    /// Night-time demand, MB.
    pub floor_mb: f64,
    /// Extra demand at the daily peak, MB.
    pub peak_mb: f64,
    bursts: Vec<(DateTime<Utc>, Duration, f64)>,
}

impl SyntheticDemand {
    /// A day shape with bursts placed by `seed` between `start` and `end`.
    pub fn new(
        seed: u64,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        floor_mb: f64,
        peak_mb: f64,
    ) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let hours = ((end - start).num_minutes() as f64 / 60.0).max(1.0);
        let count = (hours / 4.0).ceil() as usize + 1;
        let bursts = (0..count)
            .map(|_| {
                let at = start + chrono::Duration::minutes((rng.f64() * hours * 60.0) as i64);
                let len = Duration::from_secs(60 * (20 + rng.u64(0..70)));
                let size = peak_mb * (0.3 + rng.f64() * 0.9);
                (at, len, size)
            })
            .collect();
        Self {
            floor_mb,
            peak_mb,
            bursts,
        }
    }

    /// Demand at `t`, MB.
    pub fn at(&self, t: DateTime<Utc>) -> f64 {
        let hour = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
        // A smooth hump from 07:00 to 21:00, peaking at 14:00.
        let day = if (7.0..21.0).contains(&hour) {
            (std::f64::consts::PI * (hour - 7.0) / 14.0).sin().powi(2)
        } else {
            0.0
        };
        // A burst ramps up over its first minutes and down over its last:
        // jobs are submitted, and finish, over a few minutes.
        let burst: f64 = self
            .bursts
            .iter()
            .map(|(at, len, size)| {
                let x = (t - *at).as_seconds_f64();
                let len = len.as_secs_f64();
                if x < 0.0 || x >= len {
                    return 0.0;
                }
                let ramp = BURST_RAMP.as_secs_f64().min(len / 2.0);
                size * (x / ramp).min((len - x) / ramp).min(1.0)
            })
            .sum();
        self.floor_mb + self.peak_mb * day + burst
    }
}

/// Costs of a run: node-hours and unmet demand, integrated step by step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Costs {
    /// Nodes ordered.
    pub nodes_added: u32,
    /// Hours billed for task nodes (each ordered one from its order).
    pub node_hours: f64,
    /// Minutes with demand above serving capacity.
    pub unmet_minutes: f64,
    /// GiB × minutes of demand above serving capacity.
    pub unmet_gib_minutes: f64,
}

impl Costs {
    /// Adds one step of `step` with `signals` and `billed_nodes` ordered so far.
    pub(crate) fn step(&mut self, signals: &Signals, billed_nodes: u32, step: Duration) {
        let minutes = step.as_secs_f64() / 60.0;
        self.node_hours += f64::from(billed_nodes) * minutes / 60.0;
        if signals.pending_mb > 0.0 {
            self.unmet_minutes += minutes;
            self.unmet_gib_minutes += signals.pending_mb / 1024.0 * minutes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_are_closed_loop() {
        let m = Model {
            base_capacity_mb: 1000.0,
            node_memory_mb: 500.0,
            provisioning_delay: Duration::from_secs(240),
        };
        let s = m.signals(2000.0, 0);
        assert_eq!(
            (s.pending_mb, s.available_mb, s.utilisation),
            (1000.0, 0.0, 1.0)
        );
        let s = m.signals(2000.0, 2);
        assert_eq!(
            (s.pending_mb, s.available_mb, s.utilisation),
            (0.0, 0.0, 1.0)
        );
        let s = m.signals(1000.0, 2);
        assert_eq!(
            (s.pending_mb, s.available_mb, s.utilisation),
            (0.0, 1000.0, 0.5)
        );
        assert_eq!(s.get(ReplaySignal::AvailableMb), 1000.0);
    }

    #[test]
    fn synthetic_demand_is_deterministic_and_shaped() {
        let start = DateTime::parse_from_rfc3339("2026-11-02T00:00:00Z")
            .unwrap()
            .to_utc();
        let end = start + chrono::Duration::days(1);
        let a = SyntheticDemand::new(7, start, end, 10_000.0, 100_000.0);
        let b = SyntheticDemand::new(7, start, end, 10_000.0, 100_000.0);
        for h in 0..24 {
            let t = start + chrono::Duration::hours(h);
            assert_eq!(a.at(t), b.at(t));
        }
        assert!(
            a.at(start + chrono::Duration::hours(14)) > a.at(start + chrono::Duration::hours(3))
        );
    }

    #[test]
    fn costs_integrate_steps() {
        let m = Model::default();
        let mut c = Costs::default();
        let s = m.signals(m.capacity_mb(0) + 2048.0, 0);
        c.step(&s, 3, Duration::from_secs(60));
        c.step(&m.signals(0.0, 0), 3, Duration::from_secs(60));
        assert_eq!(c.unmet_minutes, 1.0);
        assert!((c.unmet_gib_minutes - 2.0).abs() < 1e-9);
        assert!((c.node_hours - 0.1).abs() < 1e-9);
    }
}
