//! Observability: logging, metrics and systemd notifications. (The admin
//! HTTP server serving the metrics is the daemon's: `daemon::admin`.)

pub mod logging;
pub mod metrics;
pub mod notify;
