//! Leaving: how a running gateway stops. First out of rotation (`/readyz`
//! 503, and for `limits.shutdown_delay_secs` still accepting while a load
//! balancer or keepalived moves new connections away), then the graceful
//! stop: listeners closed, open connections given the grace period, the
//! stop audited and the log flushed.

use crate::audit::Event;

use super::Running;

impl Running {
    /// Before a stop (not a handover, whose sockets live on in the new
    /// instance): `/readyz` answers 503 from now on, and for
    /// `limits.shutdown_delay_secs` the gateway keeps accepting, so a load
    /// balancer or keepalived sees it leave and moves new connections away
    /// before its listeners close. `stop_now` (the next stop signal) cuts
    /// the wait.
    pub async fn leave_rotation(&self, stop_now: impl std::future::Future) {
        self.serving.stop();
        let delay = self.config().limits.shutdown_delay;
        if delay.is_zero() {
            return;
        }
        tracing::info!(
            delay_secs = delay.as_secs(),
            "not ready; accepting a little longer so the load balancer moves traffic away"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop_now => tracing::info!("second signal: stopping now"),
        }
    }

    /// Graceful stop: stop accepting, let connections finish within the
    /// grace period, record the stop and flush the audit log.
    pub async fn stop(&self, reason: &str) {
        self.serving.stop();
        self.offer.withdraw();
        let clean = self
            .ctx
            .peer
            .shutdown
            .drain(self.config().limits.shutdown_grace)
            .await;
        if !clean {
            tracing::warn!("grace period over; remaining connections were closed");
        }
        self.ctx.peer.audit.record(Event::GatewayStop {
            reason: reason.to_owned(),
        });
        let audit = self.ctx.peer.audit.clone();
        let _ = tokio::task::spawn_blocking(move || audit.flush()).await;
    }
}
