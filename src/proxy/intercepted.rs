//! One intercepted connection, at the site where the Front End is: original
//! destination → [`decide`] → source check → the peer gateway, with the
//! destination in the PROXY v2 header (`proxy::preamble`) → relay.
//!
//! Everything after the decision is the tunnel's path (`proxy::forward`):
//! the same dial, status frame and audit, so an intercepted connection and
//! a tunnelled one differ only in what the header says and in `orig_dst`.

use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::{preamble, Admission, Context};
use crate::audit::Direction;
use crate::intercept::destination::{decide, unmapped, Destinations};
use crate::intercept::socket::{self, Capture};
use crate::peer::Track;
use crate::policy::{Decision, DenyReason};

/// What one `[[intercept]]` listener decides with.
#[derive(Debug, Clone)]
pub struct InterceptSpec {
    /// The listener's configured address (its identity across reloads).
    pub listen: SocketAddr,
    pub service: crate::names::ServiceName,
    pub allow_sources: Vec<IpNet>,
    pub destinations: Destinations,
    pub capture: Capture,
    /// Every address this gateway listens on (a destination among them
    /// would connect the gateway to itself).
    pub own: Vec<SocketAddr>,
}

/// Handles one connection of an intercept listener to its end.
pub async fn handle(
    ctx: Arc<Context>,
    spec: Arc<InterceptSpec>,
    client: TcpStream,
    addr: SocketAddr,
    _admission: Admission,
) {
    let mut track = Track::new(&ctx.peer, Direction::Outbound, addr);
    track.service = Some(spec.service.clone());
    track.listener = Some(spec.listen);
    let span = tracing::info_span!("intercept", conn = track.id, peer_addr = %addr, service = %spec.service);
    let _active = ctx.peer.metrics.active(Direction::Outbound);
    intercepted(&ctx, &spec, client, addr, &mut track)
        .instrument(span)
        .await;
}

async fn intercepted(
    ctx: &Context,
    spec: &InterceptSpec,
    client: TcpStream,
    addr: SocketAddr,
    track: &mut Track,
) {
    let addr = unmapped(addr);
    track.client_addr = Some(addr);
    // The destination first: a looped gateway connection is named as the
    // loop it is, whatever its source.
    let arrival = match socket::arrival(&client, spec.capture) {
        Ok(arrival) => arrival,
        Err(e) => {
            let detail = format!("reading the original destination: {e}");
            return track.decide(
                &ctx.peer,
                Decision::Deny(DenyReason::DestinationNotAllowed),
                Some(detail),
            );
        }
    };
    track.orig_dst = arrival.original.map(unmapped);
    match decide(arrival, &spec.destinations, &spec.own, ctx.peer.mark()) {
        Err(refusal) => track.decide(
            &ctx.peer,
            Decision::Deny(DenyReason::DestinationNotAllowed),
            Some(refusal.to_string()),
        ),
        Ok(_) if !super::source_allowed(&spec.allow_sources, addr.ip()) => {
            track.decide(
                &ctx.peer,
                Decision::Deny(DenyReason::SourceNotAllowed),
                None,
            );
        }
        Ok(destination) => {
            tracing::debug!(%destination, "intercepted");
            let header = preamble::encode_intercepted(addr, destination);
            super::forward(ctx, &spec.service, client, header, false, track).await;
        }
    }
}
