//! What a live reload does to connections that are already open when it
//! takes away the ground they stand on (see `gateway::apply`):
//! - a tunnel's or intercept's `allow_sources` narrowed (or an intercept's
//!   `destinations`): its connections from clients (to destinations) no
//!   longer admitted close at once — these lists are policy, and a narrowed
//!   policy is an operator saying "not them, now" (audited `policy_changed`,
//!   as when the pairing policy drops a service);
//! - a tunnel or intercept listener removed, or an export: its connections
//!   go on for `limits.shutdown_grace_secs` (an SMB copy in flight may
//!   finish), then those still open close (audited `listener_removed`).
//!   Only connections accepted before the reload are drained: a listener
//!   added back at the same address meanwhile keeps its new ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::audit::Direction;
use crate::intercept::Destinations;
use crate::names::ServiceName;
use crate::peer::{Closed, Origin, Peer};
use crate::proxy::source_allowed;

/// Closes the open connections of `listener` whose client `allow` no
/// longer admits, or (an intercept) whose original destination
/// `destinations` no longer admit; returns how many.
pub(super) fn close_refused(
    peer: &Peer,
    listener: SocketAddr,
    allow: &[IpNet],
    destinations: Option<&Destinations>,
) -> u64 {
    let ours = |o: &Origin| o.listener == Some(listener);
    let mut closed = peer.registry.close_where(Closed::SourceRefused, |_, o| {
        ours(o) && o.client.is_some_and(|c| !source_allowed(allow, c))
    });
    if let Some(destinations) = destinations {
        closed += peer
            .registry
            .close_where(Closed::DestinationRefused, |_, o| {
                ours(o)
                    && o.destination
                        .is_some_and(|d| destinations.admit(d).is_err())
            });
    }
    if closed > 0 {
        tracing::warn!(%listener, closed, "closed established connections the reloaded allow_sources or destinations no longer admit");
    }
    closed
}

/// Closes, after `grace`, the connections still open that the removed
/// `listeners` accepted or that were connected to the removed `exports`
/// (unless the gateway stops first: its own shutdown drains them then).
pub(super) fn after_grace(
    peer: &Arc<Peer>,
    listeners: Vec<SocketAddr>,
    exports: Vec<ServiceName>,
    grace: Duration,
) {
    if listeners.is_empty() && exports.is_empty() {
        return;
    }
    let cutoff = peer.last_id();
    let removed = move |id: u64, o: &Origin| {
        id <= cutoff
            && match o.direction {
                Direction::Outbound => o.listener.is_some_and(|l| listeners.contains(&l)),
                Direction::Inbound => o
                    .service
                    .as_deref()
                    .is_some_and(|s| exports.iter().any(|e| e.as_str() == s)),
            }
    };
    let open = peer.registry.count_where(&removed);
    if open == 0 {
        return;
    }
    tracing::info!(
        open,
        grace_secs = grace.as_secs(),
        "connections of removed listeners or exports drain: closed when the grace period ends"
    );
    let stop = peer.shutdown.stop_token().clone();
    let peer_ = peer.clone();
    peer.shutdown.spawn(async move {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(grace) => {}
        }
        let closed = peer_.registry.close_where(Closed::Drained, removed);
        if closed > 0 {
            tracing::warn!(
                closed,
                "grace period over: closed the connections of removed listeners or exports"
            );
        }
    });
}
