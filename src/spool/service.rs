//! The running spool of a gateway: the [`Store`] plus its three tasks
//! (outbox intake, forwarder, delivery), all tracked by the gateway's
//! shutdown and woken early by each other.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use super::error::SpoolError;
use super::intake::Intake;
use super::store::{Depth, Store};
use crate::audit::AuditLog;
use crate::proxy::Context;

/// How often the outbox is scanned.
pub const OUTBOX_POLL: Duration = Duration::from_millis(100);
/// With a file watch on the outbox, a scan still runs this often as a
/// safety net (events can be dropped, e.g. on an overflowing queue).
const OUTBOX_RESCAN: Duration = Duration::from_secs(2);
/// How often `incoming/` is looked at when no receive woke delivery.
const DELIVER_POLL: Duration = Duration::from_millis(500);

/// A gateway's spool.
pub struct Spool {
    pub store: Arc<Store>,
    pub(crate) wake_forward: Notify,
    pub(crate) wake_deliver: Notify,
}

impl Spool {
    /// Opens the spool of a `[spool]` section and recovers from any crash.
    /// Blocking (file I/O); call it before the gateway serves.
    ///
    /// # Errors
    /// [`SpoolError::Key`] (missing or non-private key), [`SpoolError::Io`].
    pub fn open(cfg: &crate::config::Spool, audit: AuditLog) -> Result<Arc<Spool>, SpoolError> {
        let store = Store::open(cfg, Some(audit))?;
        store.recover()?;
        Ok(Arc::new(Spool::from_store(store)))
    }

    /// Wraps an opened store (tests, tools).
    pub fn from_store(store: Store) -> Spool {
        Spool {
            store: Arc::new(store),
            wake_forward: Notify::new(),
            wake_deliver: Notify::new(),
        }
    }

    /// Waiting files per direction, for metrics and `/status`.
    pub fn depth(&self) -> Depth {
        self.store.depth()
    }

    /// Starts intake, forwarder and delivery on the gateway's tracker.
    pub fn spawn(self: &Arc<Self>, ctx: &Arc<Context>) {
        ctx.shutdown.spawn(self.clone().intake_loop(ctx.clone()));
        ctx.shutdown.spawn(self.clone().forward_loop(ctx.clone()));
        ctx.shutdown.spawn(self.clone().deliver_loop(ctx.clone()));
    }

    async fn intake_loop(self: Arc<Self>, ctx: Arc<Context>) {
        let stop = ctx.shutdown.stop_token().clone();
        // A file landing in the outbox wakes intake at once; without a
        // watch (inotify unavailable or exhausted) the outbox is polled.
        let woken = Arc::new(Notify::new());
        let watch = watch_outbox(&self.store.outbox, woken.clone());
        let every = if watch.is_some() {
            OUTBOX_RESCAN
        } else {
            OUTBOX_POLL
        };
        loop {
            let store = self.store.clone();
            let scanned = tokio::task::spawn_blocking(move || store.scan_outbox()).await;
            match scanned {
                Ok(Ok(done)) => {
                    if done.iter().any(|d| matches!(d, Intake::Spooled(_))) {
                        self.wake_forward.notify_one();
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "outbox scan failed"),
                Err(e) => tracing::error!(error = %e, "outbox scan task failed"),
            }
            tokio::select! {
                () = woken.notified() => {}
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    async fn deliver_loop(self: Arc<Self>, ctx: Arc<Context>) {
        let stop = ctx.shutdown.stop_token().clone();
        loop {
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.deliver_all()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "delivery scan failed"),
                Err(e) => tracing::error!(error = %e, "delivery task failed"),
            }
            tokio::select! {
                () = self.wake_deliver.notified() => {}
                () = tokio::time::sleep(DELIVER_POLL) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Watches `outbox` for new entries, waking `woken` on each; `None` (and a
/// warning) when the platform's watch cannot be set up.
fn watch_outbox(
    outbox: &std::path::Path,
    woken: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let handler = move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            woken.notify_one();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the outbox; polling it instead");
            return None;
        }
    };
    match watcher.watch(outbox, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, outbox = %outbox.display(), "cannot watch the outbox; polling it instead");
            None
        }
    }
}
