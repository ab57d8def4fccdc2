//! Moving bytes between local clients, the peer gateway and local targets.
//!
//! Two kinds of listener share one accept loop ([`listener`]):
//! - a **tunnel** listener takes plaintext connections from local servers
//!   (only from `allow_sources`) and carries each over its own mTLS
//!   connection to the peer gateway ([`outbound`]);
//! - the **peer** listener takes mTLS connections from the peer gateway,
//!   identifies it, asks the policy, and connects the allowed ones to the
//!   local export target ([`inbound`]).
//!
//! An intercept listener ([`intercepted`]) takes what the packet filter
//! redirects and carries it like a tunnel, with the original destination.
//! On the peer listener a service this module does not relay itself (the
//! spool) goes to the [`Service`] registered for it at start.
//!
//! What the peer is, how to dial it and what a connection's audit record
//! holds is `crate::peer`, shared with the spool; this module knows nothing
//! of the spool.
//!
//! Every decision and every close is audited; one connection's failure never
//! touches another's task.

pub mod control;
mod crl_exchange;
mod fds;
#[cfg(test)]
mod footprint;
mod inbound;
mod intercepted;
mod listener;
mod live_limits;
mod outbound;
pub mod preamble;
pub mod relay;
mod slots;

pub use inbound::handle_inbound;
pub use intercepted::{handle as handle_intercepted, InterceptSpec};
pub use listener::{bind, serve, serve_until, Admission};
pub(crate) use outbound::forward;
pub use outbound::{handle_outbound, source_allowed, TunnelSpec};
pub use slots::Slots;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::watch;

use crate::intercept::Destinations;
use crate::names::ServiceName;
use crate::peer::{Backlog, Closed, Peer, Registration, Service, Track};
use crate::policy::{Decision, DenyReason};

/// The `[[export]]` routes: replaced whole when SIGHUP re-reads the config;
/// each inbound connection reads one snapshot when it is decided, so an
/// established connection keeps the target it was connected to.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Exports {
    /// Exported service → local target `host:port`.
    pub fixed: HashMap<ServiceName, String>,
    /// Exported service → the destinations the peer may carry (`[[export]]`
    /// with `destinations`/`ports`; see `crate::intercept`).
    pub carried: HashMap<ServiceName, Destinations>,
}

/// Where the connections of each service go.
#[derive(Default)]
pub struct Routes {
    /// The exports, live (see [`Exports`]).
    pub exports: watch::Sender<Arc<Exports>>,
    /// Services served by a handler of their own rather than relayed (the
    /// spool's receiver).
    pub services: HashMap<ServiceName, Arc<dyn Service>>,
    /// What waits here for the peer, reported on each heartbeat (the spool).
    pub backlog: Option<Arc<dyn Backlog>>,
}

/// Everything a connection handler needs, shared by all connections of a
/// gateway; built once at start, its routes and limits replaced live.
pub struct Context {
    /// The paired gateway: identity, dialer, link, audit.
    pub peer: Arc<Peer>,
    pub routes: Routes,
    /// Caps concurrent connections across all listeners; resized live
    /// ([`Context::apply_limits`]).
    pub slots: Slots,
    /// What the peer last reported waiting in its spool for us.
    pub peer_backlog: Arc<control::PeerBacklog>,
}

impl Context {
    pub fn new(peer: Arc<Peer>, routes: Routes) -> Context {
        // The cap is only real with descriptors for both sockets of each connection.
        let max_connections = peer.limits().max_connections;
        fds::ensure_for(max_connections);
        let slots = Slots::new(max_connections);
        Context {
            peer,
            routes,
            slots,
            peer_backlog: Arc::default(),
        }
    }

    /// The exports in force now (one snapshot per connection).
    pub fn exports(&self) -> Arc<Exports> {
        self.routes.exports.borrow().clone()
    }

    /// Whether a connection for `service` has somewhere to go here, with
    /// `exports` the snapshot the connection was decided with.
    fn serves(&self, exports: &Exports, service: &str) -> bool {
        exports.fixed.contains_key(service)
            || exports.carried.contains_key(service)
            || self.routes.services.contains_key(service)
    }
}

/// What a connection keeps of the certificates its peer presented, to
/// re-check revocation when the CRL changes: the leaf alone. Our chains are
/// leaf → pairing CA, and the CA is a trust anchor, so the leaf is enough to
/// verify again; rustls keeps the full chain for the handshake anyway.
fn peer_leaf(
    certs: Option<&[rustls::pki_types::CertificateDer<'_>]>,
) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    certs
        .and_then(|c| c.first())
        .map(|leaf| vec![leaf.clone().into_owned()])
        .unwrap_or_default()
}

/// Relays an allowed connection to its end, registered so that a CRL which
/// revokes the peer closes it, then audits the close.
async fn relay_allowed<A, B>(
    peer: &Peer,
    track: &Track,
    leaf: Vec<rustls::pki_types::CertificateDer<'static>>,
    a: A,
    b: B,
) where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reg = peer
        .registry
        .register(track.id, track.origin(), leaf, peer.shutdown.hard_token());
    let counters = relay::Counters::default();
    let end = relay::relay(a, b, peer.limits().idle_timeout, &reg.token, &counters).await;
    finish(peer, track, &reg, &counters, end);
}

/// Audits the close of a relayed connection; one the gateway closed itself
/// ([`Closed`]: revoked peer; policy, `allow_sources` or `destinations`
/// changed; listener removed) gets its denial first.
fn finish(
    peer: &Peer,
    track: &Track,
    reg: &Registration<'_>,
    counters: &relay::Counters,
    end: relay::End,
) {
    let service = track.service.as_ref().map_or("?", |s| s.as_str());
    let (reason, detail) = match reg.closed() {
        None => return close(peer, track, counters, end.error_text()),
        Some(Closed::Revoked) => (
            DenyReason::Revoked,
            "peer certificate revoked".to_owned(),
        ),
        Some(Closed::Disallowed) => (
            DenyReason::PolicyChanged,
            format!("the reloaded policy no longer allows {service}"),
        ),
        Some(Closed::SourceRefused) => (
            DenyReason::PolicyChanged,
            format!(
                "the reloaded allow_sources of the {service} listener no longer admit {}",
                track.client_addr.map_or("the client".to_owned(), |a| a.to_string())
            ),
        ),
        Some(Closed::DestinationRefused) => (
            DenyReason::PolicyChanged,
            format!(
                "the reloaded destinations of the {service} intercept no longer admit {}",
                track.orig_dst.map_or("its destination".to_owned(), |a| a.to_string())
            ),
        ),
        Some(Closed::Drained) => (
            DenyReason::ListenerRemoved,
            format!(
                "the reloaded config removed the {service} {}; still open when the grace period ran out",
                if track.direction == crate::audit::Direction::Inbound { "export" } else { "listener" }
            ),
        ),
    };
    track.decide(
        peer,
        Decision::Deny(reason),
        Some(format!("established connection closed: {detail}")),
    );
    close(peer, track, counters, Some(detail));
}

fn close(peer: &Peer, track: &Track, counters: &relay::Counters, error: Option<String>) {
    track.close(
        peer,
        counters.forward.load(Ordering::Relaxed),
        counters.backward.load(Ordering::Relaxed),
        error,
    );
}
