//! The `[[tunnel]]` listeners, applied live on SIGHUP: a tunnel added to
//! the config is bound and served, one removed stops accepting, and a
//! changed `allow_sources` applies to the next connection — without
//! touching the established connections of any tunnel (they keep the spec
//! they were accepted with and end on their own or at shutdown).
//!
//! A tunnel is known by its `listen` address: the same address with
//! another service is a removal and an addition. The handover offer
//! ([`super::handover::Offer`]) follows, so a later `--takeover` inherits
//! the listeners that run now.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::handover::Offer;
use super::served::{Applied, ServedSet};
use crate::config::Tunnel;
use crate::proxy::{self, Context, TunnelSpec};

/// The tunnel listeners of a running gateway.
#[derive(Default)]
pub(crate) struct Tunnels {
    served: ServedSet<TunnelSpec>,
}

fn spec_of(tunnel: &Tunnel) -> Arc<TunnelSpec> {
    Arc::new(TunnelSpec {
        listen: tunnel.listen,
        service: tunnel.service.clone(),
        allow_sources: tunnel.allow_sources.clone(),
    })
}

impl Tunnels {
    /// Serves `listener` for `tunnel` until the gateway stops or the tunnel
    /// is removed.
    pub(crate) fn serve(&self, ctx: &Arc<Context>, tunnel: &Tunnel, listener: TcpListener) {
        self.served.serve(
            ctx,
            tunnel.listen,
            listener,
            spec_of(tunnel),
            proxy::handle_outbound,
        );
    }

    /// Binds the tunnels of `wanted` that are not served yet, changing
    /// nothing: a failure drops what was bound so far. Must run inside the
    /// runtime.
    ///
    /// # Errors
    /// The address and error of the first new tunnel that cannot bind.
    pub(crate) async fn prepare(
        &self,
        wanted: &[Tunnel],
        backlog: usize,
    ) -> Result<Vec<(Tunnel, TcpListener)>, (SocketAddr, std::io::Error)> {
        let current = self.served.current();
        let same = |t: &Tunnel| {
            current
                .iter()
                .any(|(addr, spec)| *addr == t.listen && spec.service == t.service)
        };
        let mut bound = Vec::new();
        for tunnel in wanted.iter().filter(|t| !same(t)) {
            let listener = proxy::bind(tunnel.listen, backlog)
                .await
                .map_err(|e| (tunnel.listen, e))?;
            bound.push((tunnel.clone(), listener));
        }
        Ok(bound)
    }

    /// Makes the served tunnels those of `wanted`, with the listeners
    /// [`Self::prepare`] bound: stops the removed ones (their established
    /// connections are left to the caller's drain), updates the changed
    /// specs and serves the new ones.
    pub(crate) fn commit(
        &self,
        ctx: &Arc<Context>,
        offer: &Offer,
        wanted: &[Tunnel],
        bound: Vec<(Tunnel, TcpListener)>,
    ) -> Applied {
        let added = bound
            .into_iter()
            .map(|(t, listener)| (t.listen, listener, spec_of(&t)))
            .collect();
        self.served.commit(
            ctx,
            offer,
            |listen, spec| {
                wanted
                    .iter()
                    .any(|t| t.listen == listen && t.service == spec.service)
            },
            |listen, spec| {
                let tunnel = wanted.iter().find(|t| t.listen == listen)?;
                (spec.allow_sources != tunnel.allow_sources).then(|| spec_of(tunnel))
            },
            added,
            proxy::handle_outbound,
        )
    }
}
