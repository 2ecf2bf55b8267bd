//! Observability: logging, metrics and systemd notifications. (The admin
//! HTTP server serving the metrics is the daemon's: `daemon::admin`.)

pub(crate) mod logging;
pub mod metrics;
pub(crate) mod notify;
