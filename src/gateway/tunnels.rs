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
use super::served::ServedSet;
use crate::config::Tunnel;
use crate::proxy::{self, Context, TunnelSpec};

/// What one live apply changed, for the log and the audit.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub added: Vec<SocketAddr>,
    pub removed: Vec<SocketAddr>,
    pub changed: Vec<SocketAddr>,
}

/// The tunnel listeners of a running gateway.
#[derive(Default)]
pub(crate) struct Tunnels {
    served: ServedSet<TunnelSpec>,
}

fn spec_of(tunnel: &Tunnel) -> Arc<TunnelSpec> {
    Arc::new(TunnelSpec {
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

    /// Makes the served tunnels those of `wanted`: binds the new ones first
    /// (a bind failure changes nothing and is returned), then stops the
    /// removed ones and updates the changed specs. Must run inside the
    /// runtime (it binds).
    ///
    /// # Errors
    /// The address and error of the first new tunnel that cannot bind.
    pub(crate) async fn apply(
        &self,
        ctx: &Arc<Context>,
        offer: &Offer,
        wanted: &[Tunnel],
    ) -> Result<Applied, (SocketAddr, std::io::Error)> {
        let current = self.served.current();
        let same = |t: &Tunnel| {
            current
                .iter()
                .any(|(addr, spec)| *addr == t.listen && spec.service == t.service)
        };
        let mut bound = Vec::new();
        for tunnel in wanted.iter().filter(|t| !same(t)) {
            let listener = proxy::bind(tunnel.listen, ctx.peer.limits().max_connections)
                .await
                .map_err(|e| (tunnel.listen, e))?;
            bound.push((tunnel, listener));
        }
        let (removed, changed) = self.served.reconcile(
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
        );
        let mut applied = Applied {
            removed,
            changed,
            ..Applied::default()
        };
        for (tunnel, listener) in bound {
            if let Err(e) = offer.add(&listener) {
                tracing::warn!(error = %e, listen = %tunnel.listen, "a new tunnel cannot be offered to a takeover");
            }
            self.serve(ctx, tunnel, listener);
            applied.added.push(tunnel.listen);
        }
        Ok(applied)
    }
}

impl super::Running {
    /// Applies the `[[intercept]]` and `[[tunnel]]` lists of a re-read
    /// config live (see `gateway::intercepts`, `gateway::tunnels`), after
    /// checking its services against the running policy. (A tunnel that
    /// cannot bind after the intercepts were applied leaves them applied.) Blocking: call off the reactor, inside the runtime.
    ///
    /// # Errors
    /// What refused the change (nothing was changed then).
    pub(super) fn apply_tunnels(&self, new: &crate::config::Config) -> Result<(), String> {
        let policy = self.ctx.peer.snapshot().policy.clone();
        crate::config::check_against_policy(new, &policy).map_err(|e| e.to_string())?;
        let mut own = vec![self.peer_addr];
        own.extend(self.admin_addr);
        own.extend(new.tunnels.iter().map(|t| t.listen));
        let runtime = tokio::runtime::Handle::current();
        let intercepts = {
            let _inside = runtime.enter();
            self.intercepts
                .apply(&self.ctx, &self.offer, &new.intercepts, own.clone())
                .map_err(|(addr, e)| {
                    format!(
                        "{}: a new [[intercept]] cannot listen on {addr}: {e} — nothing was reloaded",
                        new.path.display()
                    )
                })?
        };
        if intercepts {
            tracing::info!("intercepts applied live");
        }
        let applied = runtime
            .block_on(self.tunnels.apply(&self.ctx, &self.offer, &new.tunnels))
            .map_err(|(addr, e)| {
                format!(
                    "{}: a new [[tunnel]] cannot listen on {addr}: {e} — nothing was reloaded",
                    new.path.display()
                )
            })?;
        if applied != Applied::default() {
            tracing::info!(added = ?applied.added, removed = ?applied.removed, changed = ?applied.changed, "tunnels applied live");
        }
        Ok(())
    }
}
