//! One connection from a local server into a tunnel: source check → TCP to
//! the peer gateway → mTLS handshake naming the service → (with `pg2`) the
//! PROXY header out and the peer's status back → relay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ipnet::IpNet;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing::Instrument;

use super::{preamble, relay, Admission, Context};
use crate::audit::Direction;
use crate::names::ServiceName;
use crate::peer::Track;
use crate::policy::{Decision, DenyReason};
use crate::tls::{self};

/// The tunnel a listener serves.
#[derive(Debug, Clone)]
pub struct TunnelSpec {
    /// The listener's configured address (its identity across reloads).
    pub listen: SocketAddr,
    pub service: ServiceName,
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
    let mut track = Track::new(&ctx.peer, Direction::Outbound, addr);
    track.service = Some(tunnel.service.clone());
    track.listener = Some(tunnel.listen);
    let span = tracing::info_span!("outbound", conn = track.id, peer_addr = %addr, service = %tunnel.service);
    let _active = ctx.peer.metrics.active(Direction::Outbound);
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
        return track.decide(
            &ctx.peer,
            Decision::Deny(DenyReason::SourceNotAllowed),
            None,
        );
    }
    track.client_addr = Some(addr);
    let header = preamble::encode_origin(Some(addr), client.local_addr().ok());
    forward(ctx, &tunnel.service, client, header, true, track).await;
}

/// Carries an admitted local client to the peer: dial naming `service`,
/// send `header` (the PROXY v2 preamble), relay after the peer's status.
/// `raw_ok`: whether a peer that predates the preamble (`pg1`, which
/// cannot learn the header's destination) may still get a raw relay.
pub(crate) async fn forward(
    ctx: &Context,
    service: &str,
    client: TcpStream,
    header: Vec<u8>,
    raw_ok: bool,
    track: &mut Track,
) {
    // Boxed: the handshake's state is large and short-lived (see inbound).
    let offer = tls::tunnel_alpns(service);
    let mut stream = match Box::pin(ctx.peer.dial_offering(offer, track)).await {
        // Boxed: see `handshake` in inbound.
        Ok(stream) => Box::new(stream),
        Err(failed) => {
            return track.decide(
                &ctx.peer,
                Decision::Deny(failed.reason),
                Some(failed.detail),
            )
        }
    };
    let (_, conn) = stream.get_ref();
    let leaf = super::peer_leaf(conn.peer_certificates());
    if !conn.alpn_protocol().is_some_and(tls::has_preamble) {
        if !raw_ok {
            let detail = format!(
                "peer gateway {} predates the pg2 preamble and cannot take the original \
                 destination: upgrade it",
                ctx.peer.peer_connect
            );
            let _ = stream.shutdown().await;
            return track.decide(
                &ctx.peer,
                Decision::Deny(DenyReason::DestinationNotAllowed),
                Some(detail),
            );
        }
        // A peer that predates the preamble: `pg1`, the raw relay.
        track.decide(&ctx.peer, Decision::Allow, None);
        return super::relay_allowed(&ctx.peer, track, leaf, client, stream).await;
    }
    if let Err(e) = async {
        stream.write_all(&header).await?;
        stream.flush().await
    }
    .await
    {
        let detail = format!(
            "peer gateway {}: sending the preamble: {e}",
            ctx.peer.peer_connect
        );
        return track.decide(
            &ctx.peer,
            Decision::Deny(DenyReason::PeerUnreachable),
            Some(detail),
        );
    }
    relay_after_status(ctx, track, leaf, client, stream).await;
}

/// What the acceptor said in its status frame (or instead of it), carried
/// out of the relay as its error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
struct PeerSaid {
    /// `None` for `ok`.
    reason: Option<DenyReason>,
    detail: String,
}

impl PeerSaid {
    fn from_status(status: preamble::Status) -> PeerSaid {
        if status.outcome == preamble::OK {
            return PeerSaid {
                reason: None,
                detail: status.detail,
            };
        }
        match DenyReason::from_name(&status.outcome) {
            Some(reason) => PeerSaid {
                reason: Some(reason),
                detail: status.detail,
            },
            // A reason newer than this gateway: keep its name in the detail.
            None => PeerSaid {
                reason: Some(DenyReason::HandshakeFailed),
                detail: format!("{}: {}", status.outcome, status.detail),
            },
        }
    }

    fn from_error(e: &std::io::Error) -> PeerSaid {
        let (reason, detail) = match tls::rustls_error(e) {
            // TLS 1.3: the acceptor checks our certificate after our side of
            // the handshake is done, so its refusal arrives here as an alert.
            Some(err) => (tls::deny_reason(err), format!("refused the handshake: {e}")),
            None if e.kind() == std::io::ErrorKind::InvalidData => (
                DenyReason::BadPreamble,
                format!("sent no valid status: {e}"),
            ),
            None if e.kind() == std::io::ErrorKind::UnexpectedEof => (
                DenyReason::PeerUnreachable,
                "closed the connection before its status".to_owned(),
            ),
            None => (DenyReason::PeerUnreachable, e.to_string()),
        };
        PeerSaid {
            reason: Some(reason),
            detail,
        }
    }
}

/// Relays a `pg2` tunnel: client bytes flow at once, the peer's only after
/// its status frame; the decision is audited when the status arrives —
/// `allow`, or the peer's own reason (see `proxy::preamble`).
async fn relay_after_status(
    ctx: &Context,
    track: &Track,
    leaf: Vec<rustls::pki_types::CertificateDer<'static>>,
    client: TcpStream,
    stream: Box<tokio_rustls::client::TlsStream<crate::peer::PeerTcp>>,
) {
    let reg = ctx.peer.registry.register(
        track.id,
        track.origin(),
        leaf,
        ctx.peer.shutdown.hard_token(),
    );
    let counters = relay::Counters::default();
    let decided = AtomicBool::new(false);
    // The acceptor may take a handshake timeout to connect its target.
    let wait = ctx.peer.limits().handshake_timeout.saturating_mul(2);
    let gate = |mut peer| async {
        let said = match tokio::time::timeout(wait, preamble::read_status(&mut peer)).await {
            Ok(Ok(status)) => PeerSaid::from_status(status),
            Ok(Err(e)) => PeerSaid::from_error(&e),
            Err(_) => PeerSaid {
                reason: Some(DenyReason::HandshakeTimeout),
                detail: format!("sent no status within {} s", wait.as_secs()),
            },
        };
        match said.reason {
            Some(DenyReason::ExportUnreachable) | None => {
                // The peer's policy allowed it, as ours did.
                track.decide(&ctx.peer, Decision::Allow, None);
                decided.store(true, Ordering::Relaxed);
            }
            Some(_) => {}
        }
        match said.reason {
            None => Ok(peer),
            Some(_) => Err(std::io::Error::other(said)),
        }
    };
    let end = relay::relay_gated(
        client,
        stream,
        ctx.peer.limits().idle_timeout,
        &reg.token,
        &counters,
        gate,
    )
    .await;
    let said = match &end {
        relay::End::Failed(e) => e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<PeerSaid>())
            .cloned(),
        _ => None,
    };
    let peer = |detail: &str| format!("peer gateway {}: {detail}", ctx.peer.peer_connect);
    match said {
        Some(PeerSaid {
            reason: Some(DenyReason::ExportUnreachable),
            detail,
        }) => track.close_for(
            &ctx.peer,
            counters.forward.load(Ordering::Relaxed),
            counters.backward.load(Ordering::Relaxed),
            Some(peer(&detail)),
            Some(DenyReason::ExportUnreachable),
        ),
        Some(PeerSaid {
            reason: Some(reason),
            detail,
        }) => track.decide(&ctx.peer, Decision::Deny(reason), Some(peer(&detail))),
        _ => {
            if !decided.load(Ordering::Relaxed) {
                // The relay ended (shutdown, idle, client gone) before the status.
                track.decide(&ctx.peer, Decision::Allow, None);
            }
            super::finish(&ctx.peer, track, &reg, &counters, end);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        let allow: Vec<IpNet> = vec![
            "127.1.0.0/16".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ];
        assert!(source_allowed(&allow, "127.1.2.3".parse().unwrap()));
        assert!(source_allowed(&allow, "127.0.0.1".parse().unwrap()));
        assert!(source_allowed(&allow, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!source_allowed(&allow, "127.0.0.2".parse().unwrap()));
        assert!(!source_allowed(&allow, "127.2.0.1".parse().unwrap()));
        assert!(!source_allowed(&[], "127.1.2.3".parse().unwrap()));
    }
}
