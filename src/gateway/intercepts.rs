//! The `[[intercept]]` listeners, applied live on SIGHUP the way
//! [`super::tunnels`] applies tunnels: an intercept added is bound first
//! (a bind failure changes nothing), one removed stops accepting, and a
//! changed `allow_sources`, `destinations` or `ports` applies to the next
//! connection. Established connections keep the spec they were accepted
//! with. An intercept is known by its `listen` address, service and
//! `capture` mode: another of them is a removal and an addition.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::handover::Offer;
use super::served::{Applied, ServedSet};
use crate::config::Intercept;
use crate::proxy::{self, Context, InterceptSpec};

/// The intercept listeners of a running gateway.
#[derive(Default)]
pub(crate) struct Intercepts {
    served: ServedSet<InterceptSpec>,
}

fn spec_of(intercept: &Intercept, own: &[SocketAddr]) -> Arc<InterceptSpec> {
    Arc::new(InterceptSpec {
        listen: intercept.listen,
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
        self.served.serve(
            ctx,
            listen,
            listener,
            spec_of(intercept, own),
            proxy::handle_intercepted,
        );
    }

    /// Binds the intercepts of `wanted` that are not served yet (as they
    /// are), changing nothing: a failure drops what was bound so far.
    ///
    /// # Errors
    /// The address and error of the first new intercept that cannot bind.
    pub(crate) fn prepare(
        &self,
        wanted: &[Intercept],
        backlog: usize,
    ) -> Result<Vec<(Intercept, TcpListener)>, (SocketAddr, std::io::Error)> {
        let current = self.served.current();
        let mut bound = Vec::new();
        for intercept in wanted
            .iter()
            .filter(|i| !current.iter().any(|(l, s)| same(s, *l, i)))
        {
            let listener =
                crate::intercept::bind_listener(intercept.listen, backlog, intercept.capture)
                    .map_err(|e| (intercept.listen, e))?;
            bound.push((intercept.clone(), listener));
        }
        Ok(bound)
    }

    /// Makes the served intercepts those of `wanted`, with the listeners
    /// [`Self::prepare`] bound: stops the removed ones, updates the changed
    /// specs, serves the new ones. `own`: the gateway's other listening
    /// addresses.
    pub(crate) fn commit(
        &self,
        ctx: &Arc<Context>,
        offer: &Offer,
        wanted: &[Intercept],
        bound: Vec<(Intercept, TcpListener)>,
        mut own: Vec<SocketAddr>,
    ) -> Applied {
        own.extend(wanted.iter().map(|i| i.listen));
        let added = bound
            .into_iter()
            .map(|(i, listener)| (i.listen, listener, spec_of(&i, &own)))
            .collect();
        self.served.commit(
            ctx,
            offer,
            |listen, spec| wanted.iter().any(|i| same(spec, listen, i)),
            |listen, now| {
                let intercept = wanted.iter().find(|i| i.listen == listen)?;
                let spec = spec_of(intercept, &own);
                (now.allow_sources != spec.allow_sources
                    || now.destinations != spec.destinations
                    || now.own != spec.own)
                    .then_some(spec)
            },
            added,
            proxy::handle_intercepted,
        )
    }
}
