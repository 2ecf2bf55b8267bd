//! Every benchmark of emr-autoscaler, in one binary that prints figures and
//! asserts nothing:
//!
//! - `policy`: one evaluation round of the pure decision core;
//! - `backtest`: the closed-loop replay of 30 days for 50 clusters;
//! - `daemon`: the real binary's idle RSS and CPU with 50 and with 500
//!   clusters, and the latency from a breach to the request at the simulator.
//!
//! `cargo bench --bench figures` runs them all; `cargo bench --bench figures
//! -- NAME` runs one. Under `cargo test --all-targets` each runs once on a
//! small input, as a smoke test.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Measures real time.

mod backtest;
mod daemon;
mod policy;

fn main() {
    // The first argument that is not a flag filters, as criterion's does.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wants = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    policy::benches();
    backtest::benches();
    if wants("daemon") {
        daemon::run();
    }
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
