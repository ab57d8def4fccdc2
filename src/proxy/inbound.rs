//! One connection from the peer gateway: TLS handshake (bounded by the
//! handshake timeout) → identity → (with `pg2`) the dialler's PROXY header
//! → policy → audit → export target → (with `pg2`) our status → relay.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;
use tracing::Instrument;

use super::{preamble, Admission, Context};
use crate::audit::Direction;
use crate::names::ServiceName;
use crate::peer::pending::PendingGuard;
use crate::peer::{Accepted, PeerTcp, Track};
use crate::policy::{self, Decision, DenyReason, Request};
use crate::tls::{self, Observed};

/// Handles one inbound connection to its end. Never panics on peer input.
pub async fn handle_inbound(
    ctx: Arc<Context>,
    tcp: TcpStream,
    addr: SocketAddr,
    admission: Admission,
) {
    let mut track = Track::new(&ctx.peer, Direction::Inbound, addr);
    let span = tracing::info_span!("inbound", conn = track.id, peer_addr = %addr);
    let _active = ctx.peer.metrics.active(Direction::Inbound);
    let Admission {
        slot: _slot,
        pending,
    } = admission;
    // The accept loop always takes the place for the peer listener.
    let pending = pending.unwrap_or_else(|| {
        ctx.peer
            .pending
            .enter(addr.ip(), u64::MAX - track.id, std::time::Instant::now())
    });
    inbound(&ctx, tcp, &mut track, pending)
        .instrument(span)
        .await;
}

async fn inbound(ctx: &Context, tcp: TcpStream, track: &mut Track, pending: PendingGuard) {
    let live = ctx.peer.snapshot();
    // The limit in force when the connection arrived, for all its steps.
    let handshake_timeout = ctx.peer.limits().handshake_timeout;
    let seen = Arc::new(Observed::default());
    let started = std::time::Instant::now();
    let handshake = tokio::select! {
        // Boxed: the handshake's state is large and short-lived; kept
        // inline it would stay allocated in every idle connection's task.
        result = Box::pin(tokio::time::timeout(
            handshake_timeout,
            handshake(tcp, &live.material, &seen),
        )) => result,
        () = pending.evicted.cancelled() => {
            let detail = "evicted: too many handshakes in progress from this source".to_owned();
            return track.decide(&ctx.peer, Decision::Deny(DenyReason::TooManyConnections), Some(detail));
        }
    };
    // Whatever the outcome, the audit shows the certificate that was
    // presented; the pool it names only once its chain verified.
    track.cert_sha256 = seen.fingerprint();
    let identity = seen.identity();
    let mut stream = match handshake {
        Err(_elapsed) => {
            track.claimed_pool = identity.map(|id| id.pool);
            return track.decide(
                &ctx.peer,
                Decision::Deny(DenyReason::HandshakeTimeout),
                None,
            );
        }
        Ok(Err(e)) => {
            track.claimed_pool = identity.map(|id| id.pool);
            let (reason, detail) = tls::refusal(&e, &live.material, ctx.peer.link.skew_secs());
            return track.decide(&ctx.peer, Decision::Deny(reason), Some(detail));
        }
        Ok(Ok(stream)) => stream,
    };
    track.peer_pool = identity.as_ref().map(|id| id.pool.clone());
    ctx.peer
        .metrics
        .handshake(Direction::Inbound, started.elapsed());
    if let Some(id) = identity.filter(|id| ctx.peer.peer_pool.is(&id.pool)) {
        // A verified certificate of the paired pool: this address is the
        // peer's, and its certificate is the pair's — the only kind shown
        // as a `peer` row (a not-paired pool or our own certificate is
        // refused below and shown nowhere but the audit log).
        pending.vouch(std::time::Instant::now());
        if let Some(leaf) = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
        {
            ctx.peer
                .metrics
                .peer_cert(&id.pool, &id.sha256, id.not_after, leaf.as_ref());
        }
    }
    drop(pending);

    let (_, conn) = stream.get_ref();
    if conn.alpn_protocol() == Some(tls::ALPN_CONTROL) {
        return Box::pin(control(ctx, stream, track, &live.policy)).await;
    }
    // No new connection the audit log cannot record (`audit.on_failure`).
    if let Some(detail) = ctx.peer.audit.health().refusal() {
        track.service = conn.alpn_protocol().and_then(tls::service_from_alpn);
        track.decide(
            &ctx.peer,
            Decision::Deny(DenyReason::AuditFailing),
            Some(detail.clone()),
        );
        if conn.alpn_protocol().is_some_and(tls::has_preamble) {
            return refuse(&mut stream, DenyReason::AuditFailing, &detail).await;
        }
        let _ = stream.shutdown().await;
        return;
    }
    track.service = conn.alpn_protocol().and_then(tls::service_from_alpn);
    let with_preamble = conn.alpn_protocol().is_some_and(tls::has_preamble);
    let leaf = super::peer_leaf(conn.peer_certificates());
    let mut origin = preamble::Origin::Local;
    if with_preamble {
        // The dialler sends its PROXY header first (see proxy::preamble).
        let read = tokio::time::timeout(handshake_timeout, preamble::read_origin(&mut stream));
        let refusal = match read.await {
            Ok(Ok(read)) => {
                origin = read;
                track.client_addr = origin.source();
                track.orig_dst = origin.original_destination();
                None
            }
            Ok(Err(e)) => Some((DenyReason::BadPreamble, format!("PROXY v2 header: {e}"))),
            Err(_) => Some((
                DenyReason::HandshakeTimeout,
                format!(
                    "no PROXY v2 header within {} s",
                    handshake_timeout.as_secs()
                ),
            )),
        };
        if let Some((reason, detail)) = refusal {
            track.decide(&ctx.peer, Decision::Deny(reason), Some(detail.clone()));
            return refuse(&mut stream, reason, &detail).await;
        }
    }
    let exports = ctx.exports();
    let decision = match (&track.peer_pool, &track.service) {
        (Some(peer_pool), Some(service)) => policy::evaluate(
            &live.policy,
            &Request {
                local_pool: &ctx.peer.local_pool,
                peer_pool,
                service,
                exported: ctx.serves(&exports, service),
            },
        ),
        // A verified chain without a DNS SAN identifies no pool.
        (None, _) => Decision::Deny(DenyReason::BadCertificate),
        // No pg1 ALPN: the client did not name a service.
        (Some(_), None) => Decision::Deny(DenyReason::ServiceNotAllowed),
    };
    // Where an allowed connection would go: a destination outside the
    // export's lists is a denial, audited as such before anything connects.
    let (decision, plan, detail) = match (decision, track.service.as_deref()) {
        (Decision::Allow, Some(service)) if !ctx.routes.services.contains_key(service) => {
            let planned = crate::intercept::export::plan(
                service,
                exports.fixed.get(service),
                exports.carried.get(service),
                origin.original_destination(),
                handshake_timeout,
            )
            .await;
            match planned {
                Some(Err(detail)) => (
                    Decision::Deny(DenyReason::DestinationNotAllowed),
                    None,
                    Some(detail),
                ),
                Some(Ok(plan)) => (decision, Some(plan), None),
                None => (decision, None, None),
            }
        }
        _ => (decision, None, None),
    };
    track.decide(&ctx.peer, decision, detail.clone());
    if let Decision::Deny(reason) = decision {
        if with_preamble {
            let detail =
                detail.unwrap_or_else(|| format!("refused by {}: {reason}", ctx.peer.local_pool));
            return refuse(&mut stream, reason, &detail).await;
        }
        let _ = stream.shutdown().await;
        return;
    }

    // A service with a handler of its own (the spool) gets the connection.
    let handler = track
        .service
        .as_deref()
        .and_then(|service| ctx.routes.services.get(service));
    if let Some(handler) = handler {
        // No service: a policy reload governs the spool at connect only.
        let origin = crate::peer::Origin {
            service: None,
            ..track.origin()
        };
        let reg =
            ctx.peer
                .registry
                .register(track.id, origin, leaf, ctx.peer.shutdown.hard_token());
        let accepted = Accepted {
            peer_pool: track.peer_pool.clone().unwrap_or_default(),
            closed: reg.token.clone(),
        };
        let served = Box::pin(handler.serve(*stream, accepted)).await;
        return track.close(&ctx.peer, served.bytes_in, served.bytes_out, served.error);
    }

    let Some(target) = plan else {
        return track.close(&ctx.peer, 0, 0, Some("no export for service".to_owned()));
    };
    // Marked: the operator's nftables rules must never intercept this.
    let connect = tokio::time::timeout(
        handshake_timeout,
        crate::intercept::export::connect(&target, ctx.peer.mark()),
    );
    let failure = match connect.await {
        Ok(Ok(backend)) => {
            let _ = backend.set_nodelay(true);
            crate::peer::keepalive::enable(&backend);
            if with_preamble {
                if let Err(e) = send_status(&mut stream, preamble::OK, "").await {
                    return track.close(&ctx.peer, 0, 0, Some(format!("sending the status: {e}")));
                }
            }
            return super::relay_allowed(&ctx.peer, track, leaf, stream, backend).await;
        }
        Ok(Err(e)) => format!("export target {target} unreachable: {e}"),
        Err(_) => format!("export target {target} did not answer in time"),
    };
    let reason = DenyReason::ExportUnreachable;
    if with_preamble {
        refuse(&mut stream, reason, &failure).await;
    } else {
        let _ = stream.shutdown().await;
    }
    track.close_for(&ctx.peer, 0, 0, Some(failure), Some(reason));
}

/// Writes a `pg2` status frame.
async fn send_status<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    outcome: &str,
    detail: &str,
) -> std::io::Result<()> {
    stream
        .write_all(&preamble::encode_status(outcome, detail))
        .await?;
    stream.flush().await
}

/// Tells a `pg2` dialler why (best effort), then closes.
async fn refuse<S: tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    reason: DenyReason,
    detail: &str,
) {
    let _ = send_status(stream, reason.as_str(), detail).await;
    let _ = stream.shutdown().await;
}

/// Reads the ClientHello, answers with a config that offers the ALPN the
/// client asked for (if it is one of ours), and completes the handshake.
async fn handshake(
    tcp: TcpStream,
    material: &tls::Material,
    seen: &Arc<Observed>,
) -> std::io::Result<Box<TlsStream<PeerTcp>>> {
    let start = LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        crate::peer::ReadAhead::new(tcp),
    )
    .await?;
    let alpn = start.client_hello().alpn().and_then(|mut offered| {
        offered
            .find(|p| *p == tls::ALPN_CONTROL || tls::service_from_alpn(p).is_some())
            .map(<[u8]>::to_vec)
    });
    // Boxed: the connection state is large, and every future it passes
    // through by value would keep a slot of that size for the connection's
    // whole life (see `proxy::relay`).
    start
        .into_stream(tls::server_config(material, alpn, seen))
        .await
        .map(Box::new)
}

/// The control channel is part of being paired: allowed for the paired
/// pool only, audited through the `peer_audit_head` record it produces (and
/// as a denial when refused).
async fn control(
    ctx: &Context,
    mut stream: Box<TlsStream<PeerTcp>>,
    track: &mut Track,
    policy: &crate::policy::Policy,
) {
    let paired = match &track.peer_pool {
        Some(peer) => policy
            .peer_of(&ctx.peer.local_pool)
            .is_some_and(|p| p.eq_ignore_ascii_case(peer)),
        None => false,
    };
    if !paired {
        track.service = Some(ServiceName::known("control"));
        let reason = if track.peer_pool.is_some() {
            DenyReason::NotPaired
        } else {
            DenyReason::BadCertificate
        };
        track.decide(&ctx.peer, Decision::Deny(reason), None);
        let _ = stream.shutdown().await;
        return;
    }
    if let Err(e) = super::control::serve(ctx, stream, track).await {
        tracing::warn!(error = %e, "control exchange failed");
        // The paired peer, authenticated, sent what we do not accept:
        // evidence worth keeping, not only a log line.
        ctx.peer.audit.record(crate::audit::Event::PeerControlError(
            crate::audit::PeerControlError {
                peer_addr: track.peer_addr.clone(),
                peer_pool: track.peer_pool.clone(),
                cert_sha256: track.cert_sha256.clone(),
                error: e.to_string(),
            },
        ));
    }
}
