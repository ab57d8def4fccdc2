//! One connection from a local server into a tunnel: source check → TCP to
//! the peer gateway → mTLS handshake naming the service → relay.

use std::net::SocketAddr;
use std::sync::Arc;

use ipnet::IpNet;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::dial::dial_peer;
use super::{Admission, Context, Track};
use crate::audit::Direction;
use crate::policy::{Decision, DenyReason};
use crate::tls::{self};

/// The tunnel a listener serves.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    pub service: String,
    pub allow_sources: Vec<IpNet>,
}

/// Handles one local client of a tunnel to its end.
pub async fn handle_outbound(
    ctx: Arc<Context>,
    tunnel: Arc<TunnelSpec>,
    client: TcpStream,
    addr: SocketAddr,
    _admission: Admission,
) {
    let mut track = Track::new(&ctx, Direction::Outbound, addr);
    track.service = Some(tunnel.service.clone());
    let span = tracing::info_span!("outbound", conn = track.id, peer_addr = %addr, service = %tunnel.service);
    let _active = ctx.metrics.active(Direction::Outbound);
    outbound(&ctx, &tunnel, client, addr, &mut track)
        .instrument(span)
        .await;
}

/// Whether `addr` may use a tunnel with these source networks.
pub fn source_allowed(allow: &[IpNet], addr: std::net::IpAddr) -> bool {
    let addr = match addr {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, std::net::IpAddr::V4),
        v4 => v4,
    };
    allow.iter().any(|net| net.contains(&addr))
}

async fn outbound(
    ctx: &Context,
    tunnel: &TunnelSpec,
    client: TcpStream,
    addr: SocketAddr,
    track: &mut Track,
) {
    if !source_allowed(&tunnel.allow_sources, addr.ip()) {
        return track.decide(ctx, Decision::Deny(DenyReason::SourceNotAllowed), None);
    }
    // Boxed: the handshake's state is large and short-lived (see inbound).
    let stream = match Box::pin(dial_peer(ctx, tls::alpn_for(&tunnel.service), track)).await {
        Ok(stream) => stream,
        Err((reason, detail)) => return track.decide(ctx, Decision::Deny(reason), Some(detail)),
    };
    track.decide(ctx, Decision::Allow, None);
    let (_, conn) = stream.get_ref();
    let leaf = super::peer_leaf(conn.peer_certificates());
    super::relay_allowed(ctx, track, leaf, client, stream).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let allow: Vec<IpNet> = vec![
            "10.1.0.0/16".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        assert!(source_allowed(&allow, "10.1.2.3".parse().unwrap()));
        assert!(source_allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(source_allowed(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!source_allowed(&allow, "127.0.0.2".parse().unwrap()));
        assert!(!source_allowed(&allow, "10.2.0.1".parse().unwrap()));
        assert!(!source_allowed(&[], "10.1.2.3".parse().unwrap()));
    }
}
