//! A set of served listeners whose specs change live: what
//! [`super::tunnels`] and [`super::intercepts`] share. Each listener has a
//! spec (read once per accepted connection, so established connections
//! keep the one they were accepted with) and a stop token of its own (a
//! removed listener stops accepting; its open connections go on).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::handover::Offer;
use crate::audit::Direction;
use crate::proxy::{self, Admission, Context};

/// What one live apply of a listener kind changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
    /// Listeners whose spec changed (e.g. `allow_sources`).
    pub changed: Vec<SocketAddr>,
}

impl Applied {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One served listener.
struct Entry<S> {
    listen: SocketAddr,
    spec: watch::Sender<Arc<S>>,
    /// Stops this listener's accept loop only.
    stop: CancellationToken,
}

/// The listeners of one kind (tunnels, intercepts) of a running gateway.
pub(crate) struct ServedSet<S> {
    entries: Mutex<Vec<Entry<S>>>,
}

impl<S> Default for ServedSet<S> {
    fn default() -> Self {
        ServedSet {
            entries: Mutex::default(),
        }
    }
}

impl<S: Send + Sync + 'static> ServedSet<S> {
    /// Serves `listener` with `spec` until the gateway stops or the
    /// listener is removed; `handle` takes each accepted connection with
    /// the spec current at its arrival.
    pub(crate) fn serve<H, Fut>(
        &self,
        ctx: &Arc<Context>,
        listen: SocketAddr,
        listener: TcpListener,
        spec: Arc<S>,
        handle: H,
    ) where
        H: Fn(Arc<Context>, Arc<S>, TcpStream, SocketAddr, Admission) -> Fut
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = watch::channel(spec);
        let stop = ctx.peer.shutdown.stop_token().child_token();
        ctx.peer.shutdown.spawn(proxy::serve_until(
            listener,
            ctx.clone(),
            Direction::Outbound,
            stop.clone(),
            move |ctx, tcp, addr, slot| {
                let spec = rx.borrow().clone();
                handle(ctx, spec, tcp, addr, slot)
            },
        ));
        self.lock().push(Entry {
            listen,
            spec: tx,
            stop,
        });
    }

    /// The listen address and current spec of each served listener.
    pub(crate) fn current(&self) -> Vec<(SocketAddr, Arc<S>)> {
        self.lock()
            .iter()
            .map(|e| (e.listen, e.spec.borrow().clone()))
            .collect()
    }

    /// Makes the set what a reload asks for: stops the listeners `keep`
    /// refuses (and withdraws them from the takeover offer), replaces the
    /// spec of each kept one for which `update` returns a new spec, then
    /// offers and serves each `added` (listen address, bound listener,
    /// spec) with `handle`.
    pub(crate) fn commit<H, Fut>(
        &self,
        ctx: &Arc<Context>,
        offer: &Offer,
        keep: impl Fn(SocketAddr, &S) -> bool,
        update: impl Fn(SocketAddr, &S) -> Option<Arc<S>>,
        added: Vec<(SocketAddr, TcpListener, Arc<S>)>,
        handle: H,
    ) -> Applied
    where
        H: Fn(Arc<Context>, Arc<S>, TcpStream, SocketAddr, Admission) -> Fut
            + Clone
            + Send
            + Sync
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut applied = Applied::default();
        {
            let mut entries = self.lock();
            entries.retain(|e| {
                let kept = keep(e.listen, &e.spec.borrow());
                if !kept {
                    e.stop.cancel();
                    offer.remove(e.listen);
                    applied.removed.push(e.listen);
                }
                kept
            });
            for e in entries.iter() {
                let new = update(e.listen, &e.spec.borrow());
                if let Some(new) = new {
                    e.spec.send_replace(new);
                    applied.changed.push(e.listen);
                }
            }
        }
        for (listen, listener, spec) in added {
            if let Err(e) = offer.add(&listener) {
                tracing::warn!(error = %e, %listen, "a new listener cannot be offered to a takeover");
            }
            self.serve(ctx, listen, listener, spec, handle.clone());
            applied.added.push(listen);
        }
        applied
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry<S>>> {
        // The list stays consistent under a panic elsewhere: every change
        // is a single push, retain or send.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
