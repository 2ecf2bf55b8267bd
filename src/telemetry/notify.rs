//! systemd notifications: READY, RELOADING, STOPPING and the watchdog.
//! Everything here is a no-op unless `NOTIFY_SOCKET` is set.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(message = "sd_notify failed.", error = %e);
    }
}

/// Config valid, state loaded, listener bound.
pub(crate) fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("evaluating")]);
}

/// A SIGHUP reload started.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutting down.
pub(crate) fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// One watchdog keep-alive.
pub(crate) fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send keep-alives: half of `WATCHDOG_USEC`, if set for this process.
pub(crate) fn watchdog_period() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
