//! The admin endpoint (`/metrics`, `/status`, `/readyz`, `/healthz`) of a
//! running gateway, applied live on SIGHUP like the tunnels: `[admin]`
//! added binds and serves, removed stops, a new `admin.listen` is bound
//! before the old one stops (a failed bind changes nothing), and a new
//! `admin.sync_interval_secs` applies to the next `/status` and to the
//! "sessions in the last interval" counts. The [`Board`] behind it lives as
//! long as the gateway, so a moved endpoint shows the same status.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::handover::Offer;
use crate::admin::{self, Board, Metrics};
use crate::config::Admin;
use crate::shutdown::Shutdown;

/// The endpoint being served now.
struct Served {
    /// `admin.listen` as configured (the identity of the listener).
    listen: SocketAddr,
    /// The address actually bound (differs for port 0).
    bound: SocketAddr,
    stop: CancellationToken,
}

/// The admin endpoint of a running gateway.
pub(crate) struct AdminEndpoint {
    board: Arc<Board>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    served: Mutex<Option<Served>>,
}

/// What a reload binds for the endpoint before anything is published.
pub(crate) enum Prepared {
    /// Same address (or none before and after): nothing to bind.
    Keep,
    /// A new address, bound.
    Bind(TcpListener),
}

impl AdminEndpoint {
    pub(crate) fn new(board: Arc<Board>, metrics: Arc<Metrics>, shutdown: Shutdown) -> Self {
        AdminEndpoint {
            board,
            metrics,
            shutdown,
            served: Mutex::new(None),
        }
    }

    /// The address the endpoint is served on now, if any.
    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.lock().as_ref().map(|s| s.bound)
    }

    /// Serves `listener` as the endpoint configured at `listen`, replacing
    /// (stopping) the one served before.
    ///
    /// # Errors
    /// The listener's address cannot be read.
    pub(crate) fn serve(&self, listen: SocketAddr, listener: TcpListener) -> std::io::Result<()> {
        let bound = listener.local_addr()?;
        let stop = self.shutdown.stop_token().child_token();
        self.shutdown.spawn(admin::serve(
            listener,
            self.metrics.clone(),
            self.board.clone(),
            stop.clone(),
        ));
        let old = self.lock().replace(Served {
            listen,
            bound,
            stop,
        });
        if let Some(old) = old {
            old.stop.cancel();
        }
        Ok(())
    }

    /// Binds the endpoint `wanted` asks for if it is not served yet.
    ///
    /// # Errors
    /// `admin.listen` and the error when the new address cannot bind.
    pub(crate) async fn prepare(
        &self,
        wanted: Option<&Admin>,
    ) -> Result<Prepared, (SocketAddr, std::io::Error)> {
        let current = self.lock().as_ref().map(|s| s.listen);
        match wanted {
            Some(admin) if current != Some(admin.listen) => {
                // The admin listener's own cap, not the tunnels' backlog.
                let listener = crate::proxy::bind(admin.listen, admin::server::MAX_CONNECTIONS)
                    .await
                    .map_err(|e| (admin.listen, e))?;
                Ok(Prepared::Bind(listener))
            }
            _ => Ok(Prepared::Keep),
        }
    }

    /// Makes the endpoint what `wanted` asks for, with what
    /// [`Self::prepare`] bound; the takeover offer follows. Returns whether
    /// the address changed.
    pub(crate) fn commit(&self, offer: &Offer, wanted: Option<&Admin>, prepared: Prepared) -> bool {
        let interval = wanted.map_or(admin::DEFAULT_SYNC_INTERVAL, |a| a.sync_interval);
        self.set_sync_interval(interval);
        let old = self.lock().as_ref().map(|s| s.bound);
        match (wanted, prepared) {
            (Some(admin), Prepared::Bind(listener)) => {
                if let Err(e) = offer.add(&listener) {
                    tracing::warn!(error = %e, listen = %admin.listen, "the new admin endpoint cannot be offered to a takeover");
                }
                if let Err(e) = self.serve(admin.listen, listener) {
                    tracing::error!(error = %e, listen = %admin.listen, "the new admin endpoint cannot be served; the old one stays");
                    return false;
                }
            }
            (Some(_), Prepared::Keep) => return false,
            (None, _) => {
                let Some(served) = self.lock().take() else {
                    return false;
                };
                served.stop.cancel();
            }
        }
        if let Some(old) = old {
            offer.remove(old);
        }
        tracing::info!(old = ?old, new = ?self.addr(), "admin endpoint applied live");
        true
    }

    fn set_sync_interval(&self, interval: Duration) {
        if self.board.sync_interval() != interval {
            self.board.set_sync_interval(interval);
            tracing::info!(
                sync_interval_secs = interval.as_secs(),
                "admin.sync_interval_secs applied live"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Served>> {
        // Every change is a single replace or take.
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
