//! The `[[intercept]]` listeners, applied live on SIGHUP the way
//! [`super::tunnels`] applies tunnels: an intercept added is bound first
//! (a bind failure changes nothing), one removed stops accepting, and a
//! changed `allow_sources`, `destinations` or `ports` applies to the next
//! connection. Established connections keep the spec they were accepted
//! with. An intercept is known by its `listen` address, service and
//! `capture` mode: another of them is a removal and an addition.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::handover::Offer;
use crate::audit::Direction;
use crate::config::Intercept;
use crate::proxy::{self, Context, InterceptSpec};

/// One served intercept listener.
struct Served {
    listen: SocketAddr,
    spec: watch::Sender<Arc<InterceptSpec>>,
    stop: CancellationToken,
}

/// The intercept listeners of a running gateway.
#[derive(Default)]
pub(crate) struct Intercepts {
    served: Mutex<Vec<Served>>,
}

fn spec_of(intercept: &Intercept, own: &[SocketAddr]) -> Arc<InterceptSpec> {
    Arc::new(InterceptSpec {
        service: intercept.service.clone(),
        allow_sources: intercept.allow_sources.clone(),
        destinations: intercept.destinations.clone(),
        capture: intercept.capture,
        own: own.to_vec(),
    })
}

fn same(spec: &InterceptSpec, listen: SocketAddr, i: &Intercept) -> bool {
    listen == i.listen && spec.service == i.service && spec.capture == i.capture
}

impl Intercepts {
    /// Serves `listener` for `intercept` until the gateway stops or the
    /// intercept is removed.
    pub(crate) fn serve(
        &self,
        ctx: &Arc<Context>,
        intercept: &Intercept,
        listen: SocketAddr,
        listener: TcpListener,
        own: &[SocketAddr],
    ) {
        let (tx, rx) = watch::channel(spec_of(intercept, own));
        let stop = ctx.peer.shutdown.stop_token().child_token();
        ctx.peer.shutdown.spawn(proxy::serve_until(
            listener,
            ctx.clone(),
            Direction::Outbound,
            stop.clone(),
            move |ctx, tcp, addr, slot| {
                let spec = rx.borrow().clone();
                proxy::handle_intercepted(ctx, spec, tcp, addr, slot)
            },
        ));
        if let Ok(mut served) = self.served.lock() {
            served.push(Served {
                listen,
                spec: tx,
                stop,
            });
        }
    }

    /// Makes the served intercepts those of `wanted`: binds the new ones
    /// first (a bind failure changes nothing and is returned), then stops
    /// the removed ones and updates the changed specs. `own`: the gateway's
    /// other listening addresses.
    ///
    /// # Errors
    /// The address and error of the first new intercept that cannot bind.
    pub(crate) fn apply(
        &self,
        ctx: &Arc<Context>,
        offer: &Offer,
        wanted: &[Intercept],
        mut own: Vec<SocketAddr>,
    ) -> Result<bool, (SocketAddr, std::io::Error)> {
        let current: Vec<(SocketAddr, Arc<InterceptSpec>)> = self
            .served
            .lock()
            .map(|s| {
                s.iter()
                    .map(|t| (t.listen, t.spec.borrow().clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut bound = Vec::new();
        for intercept in wanted
            .iter()
            .filter(|i| !current.iter().any(|(l, s)| same(s, *l, i)))
        {
            let listener = crate::intercept::bind_listener(
                intercept.listen,
                ctx.peer.limits.max_connections,
                intercept.capture,
            )
            .map_err(|e| (intercept.listen, e))?;
            bound.push((intercept, listener));
        }
        own.extend(wanted.iter().map(|i| i.listen));
        let mut changed = !bound.is_empty();
        if let Ok(mut served) = self.served.lock() {
            served.retain(|s| {
                let kept = wanted.iter().any(|i| same(&s.spec.borrow(), s.listen, i));
                if !kept {
                    s.stop.cancel();
                    offer.remove(s.listen);
                    changed = true;
                }
                kept
            });
            for s in served.iter() {
                let Some(intercept) = wanted.iter().find(|i| i.listen == s.listen) else {
                    continue;
                };
                let spec = spec_of(intercept, &own);
                let now = s.spec.borrow().clone();
                if now.allow_sources != spec.allow_sources
                    || now.destinations != spec.destinations
                    || now.own != spec.own
                {
                    s.spec.send_replace(spec);
                    changed = true;
                }
            }
        }
        for (intercept, listener) in bound {
            if let Err(e) = offer.add(&listener) {
                tracing::warn!(error = %e, listen = %intercept.listen, "a new intercept cannot be offered to a takeover");
            }
            self.serve(ctx, intercept, intercept.listen, listener, &own);
        }
        Ok(changed)
    }
}
