//! The integration tests, one binary: a module per area and one `support`
//! harness (the fake EMR endpoint and fake Prometheus, the real Prometheus
//! and etcd launchers, the daemon process). Run one area with
//! `cargo test --test it <module>::`.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // Tests measure real time.

mod support;

mod backtest;
mod capacity;
mod cli_scale_in;
mod cli_scale_out;
mod cli_sim;
mod client_http;
mod credentials_role;
mod daemon;
mod dashboard;
mod demo;
mod docs;
mod e2e_prometheus;
mod etcd_gateway;
mod ha;
mod history;
mod metrics_promtool;
mod offerings;
mod plan;
mod prom_client;
mod ready_file;
mod sim_client;
mod sim_scale_in;
mod sim_server;
mod state_files;
mod trust;
mod yarn_client;
