//! Graceful shutdown: one `CancellationToken` every loop selects on, and one
//! `TaskTracker` every spawned task is registered with, so `run` can stop
//! accepting, give open connections a grace period, then flush and exit.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// The token every accept loop and relay selects on.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Spawns a task that shutdown will wait for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Stops new work and waits up to `grace` for tracked tasks to finish.
    /// Returns false when the grace period ran out first.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
