//! Dialling the peer gateway: TCP to `peer.connect`, then mTLS 1.3 naming a
//! service by ALPN, within the handshake timeout. Shared by tunnels, the
//! spool forwarder and the control heartbeat, so all three verify, time,
//! count and track the link the same way.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Context, Track};
use crate::admin::CertKind;
use crate::audit::Direction;
use crate::policy::DenyReason;
use crate::tls::{self, Observed};

/// Connects to the peer gateway for `alpn`. Fills `track` with the
/// identity and fingerprint the server presented (even when refused),
/// marks the link up or down, and records handshake latency and the peer
/// certificate's expiry on success.
///
/// # Errors
/// The audit reason and a detail naming the peer address.
pub(crate) async fn dial_peer(
    ctx: &Context,
    alpn: Vec<u8>,
    track: &mut Track,
) -> Result<TlsStream<super::PeerTcp>, (DenyReason, String)> {
    let live = ctx.snapshot();
    let seen = Arc::new(Observed::default());
    let config = tls::client_config(&live.material, alpn, &ctx.peer_pool, &seen);
    let attempt = async {
        let tcp = TcpStream::connect(&ctx.peer_connect)
            .await
            .map_err(|e| (DenyReason::PeerUnreachable, e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        super::keepalive::enable(&tcp);
        let name = ServerName::try_from(ctx.peer_pool.clone())
            .map_err(|e| (DenyReason::BadCertificate, e.to_string()))?;
        TlsConnector::from(config)
            .connect(name, super::ReadAhead::new(tcp))
            .await
            .map_err(|e| {
                let reason =
                    tls::rustls_error(&e).map_or(DenyReason::PeerUnreachable, tls::deny_reason);
                (reason, e.to_string())
            })
    };
    let started = Instant::now();
    let result = tokio::time::timeout(ctx.limits.handshake_timeout, attempt).await;
    let identity = seen.identity();
    if let Some(id) = &identity {
        track.peer_pool = Some(id.pool.clone());
    }
    track.cert_sha256 = seen.fingerprint();
    let result = match result {
        Err(_elapsed) => Err((
            DenyReason::HandshakeTimeout,
            "handshake timed out".to_owned(),
        )),
        Ok(r) => r,
    };
    match result {
        Ok(stream) => {
            ctx.metrics
                .handshake(Direction::Outbound, started.elapsed());
            ctx.link.up();
            if let Some(id) = identity {
                ctx.metrics
                    .cert_expiry(CertKind::Peer, Some(&id.pool), &id.sha256, id.not_after);
            }
            Ok(stream)
        }
        Err((reason, e)) => {
            let detail = format!("peer gateway {}: {e}", ctx.peer_connect);
            ctx.link.down(detail.clone());
            Err((reason, detail))
        }
    }
}
