//! Observability: logging now; metrics and the admin server live here too.

pub mod logging;
