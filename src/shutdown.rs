//! Graceful shutdown: a `stop` token every accept loop selects on, a `hard`
//! token every relay selects on, and one `TaskTracker` every spawned task is
//! registered with. `drain` stops accepting, gives open connections a grace
//! period to finish on their own, then closes what is left.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    stop: CancellationToken,
    hard: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Cancelled when the gateway stops accepting new connections.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Cancelled when open connections must close now (grace period over).
    pub fn hard_token(&self) -> &CancellationToken {
        &self.hard
    }

    /// Spawns a task that shutdown will wait for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Stops accepting; open connections go on.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Stops accepting and waits up to `grace` for tracked tasks to finish,
    /// then closes the rest. Returns false when the grace period ran out.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
        {
            return true;
        }
        self.hard.cancel();
        // Relays notice `hard` at once; give them a moment to audit their close.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_tasks_then_forces() {
        let s = Shutdown::new();
        let hard = s.hard_token().clone();
        s.spawn(async move { hard.cancelled().await });
        assert!(!s.drain(Duration::from_secs(30)).await);
        assert!(s.hard_token().is_cancelled());

        let s = Shutdown::new();
        s.spawn(tokio::time::sleep(Duration::from_secs(1)));
        assert!(s.drain(Duration::from_secs(30)).await);
        assert!(!s.hard_token().is_cancelled());
    }
}
