//! Observability: logging, metrics, the admin HTTP server and systemd notifications.

pub mod admin;
pub mod logging;
pub mod metrics;
pub mod notify;
