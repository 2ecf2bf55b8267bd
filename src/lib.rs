//! emr-autoscaler: keeps Tencent Cloud EMR clusters sized to their YARN load.
//!
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod backtest;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod daemon;
pub mod demo;
pub mod etcd;
pub mod files;
pub mod history;
pub mod http;
pub mod plan;
pub mod policy;
pub mod prom;
pub mod replay;
pub mod shutdown;
pub mod sim;
pub mod state;
pub mod telemetry;
pub mod tencent;
pub mod webhook;
pub mod yarn;
