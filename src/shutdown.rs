//! Stop signals: SIGTERM and SIGINT.

/// Resolves on the first SIGTERM or SIGINT.
pub(crate) async fn signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => tracing::info!(message = "SIGTERM received; stopping."),
        _ = tokio::signal::ctrl_c() => tracing::info!(message = "SIGINT received; stopping."),
    }
}
