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
//! Every decision and every close is audited; one connection's failure never
//! touches another's task.

pub mod control;
mod dial;
mod fds;
mod inbound;
pub mod keepalive;
mod listener;
mod outbound;
mod pending;
pub mod preamble;
mod readahead;
mod registry;
pub mod relay;

pub(crate) use dial::dial_peer;
pub use inbound::handle_inbound;
pub use readahead::ReadAhead;

/// The transport under every TLS connection between the gateways.
pub type PeerTcp = ReadAhead<tokio::net::TcpStream>;
pub use listener::{bind, serve, Admission};
pub(crate) use outbound::forward;
pub use outbound::{handle_outbound, source_allowed, TunnelSpec};
pub use registry::{Registration, Registry};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{watch, Semaphore};

use crate::admin::{LinkTracker, Metrics};
use crate::audit::{self, AuditLog, Direction, Event};
use crate::config::Limits;
use crate::policy::{Decision, Policy};
use crate::shutdown::Shutdown;
use crate::tls::Material;

/// What a connection decides with: one consistent snapshot of policy and TLS
/// material, swapped as a whole on reload.
#[derive(Debug)]
pub struct Live {
    pub policy: Arc<Policy>,
    pub material: Arc<Material>,
}

/// Everything a connection handler needs, shared by all connections of a gateway.
pub struct Context {
    pub local_pool: String,
    pub peer_pool: String,
    /// `host:port` of the peer gateway.
    pub peer_connect: String,
    /// Exported service → local target `host:port`.
    pub exports: HashMap<String, String>,
    pub limits: Limits,
    pub live: watch::Sender<Arc<Live>>,
    pub audit: AuditLog,
    pub shutdown: Shutdown,
    /// Caps concurrent connections across all listeners.
    pub slots: Arc<Semaphore>,
    /// Turns for handshakes to the peer gateway ([`dial::DialQueue`]).
    dials: dial::DialQueue,
    /// Established connections and their peers' certificates.
    pub registry: Registry,
    /// Handshakes in progress per source on the peer listener.
    pub pending: pending::Pending,
    /// Whether the peer gateway is reachable (heartbeats and tunnels).
    pub link: Arc<LinkTracker>,
    pub metrics: Arc<Metrics>,
    /// What the peer last reported waiting in its spool for us.
    pub peer_backlog: control::PeerBacklog,
    /// The store-and-forward spool, when `[spool]` is configured — set
    /// once it runs (after start, or once a previous instance let go of
    /// it on a takeover).
    pub spool: std::sync::OnceLock<Arc<crate::spool::Spool>>,
    /// Exported service → the destinations the peer may carry (`[[export]]`
    /// with `destinations`/`ports`; see `crate::intercept`).
    pub carried: HashMap<String, crate::intercept::Destinations>,
    /// `SO_MARK` of the sockets the gateway opens itself (0: none).
    pub mark: u32,
    next_id: AtomicU64,
}

impl Context {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        local_pool: String,
        peer_pool: String,
        peer_connect: String,
        exports: HashMap<String, String>,
        limits: Limits,
        live: Live,
        audit: AuditLog,
        shutdown: Shutdown,
        metrics: Arc<Metrics>,
    ) -> Context {
        // The cap is only real with descriptors for both sockets of each connection.
        fds::ensure_for(limits.max_connections);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let pending = pending::Pending::new(
            limits.max_handshakes_per_source,
            limits.max_handshakes_per_peer,
        );
        Context {
            local_pool,
            peer_pool,
            peer_connect,
            exports,
            limits,
            live: watch::Sender::new(Arc::new(live)),
            audit,
            shutdown,
            slots,
            dials: dial::DialQueue::default(),
            registry: Registry::default(),
            pending,
            link: Arc::new(LinkTracker::new()),
            metrics,
            peer_backlog: control::PeerBacklog::default(),
            spool: std::sync::OnceLock::new(),
            carried: HashMap::new(),
            mark: 0,
            next_id: AtomicU64::new(1),
        }
    }

    /// The current policy and TLS material.
    pub fn snapshot(&self) -> Arc<Live> {
        self.live.borrow().clone()
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
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
    ctx: &Context,
    track: &Track,
    leaf: Vec<rustls::pki_types::CertificateDer<'static>>,
    a: A,
    b: B,
) where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reg = ctx.registry.register(
        track.id,
        track.direction,
        leaf,
        track.service.as_deref(),
        ctx.shutdown.hard_token(),
    );
    let counters = relay::Counters::default();
    let end = relay::relay(a, b, ctx.limits.idle_timeout, &reg.token, &counters).await;
    track.finish(ctx, &reg, &counters, end);
}

/// The audit facts of one connection, filled in as they become known.
pub(crate) struct Track {
    pub(crate) id: u64,
    direction: Direction,
    peer_addr: String,
    pub(crate) peer_pool: Option<String>,
    pub(crate) cert_sha256: Option<String>,
    pub(crate) service: Option<String>,
    /// The local client of a tunnelled connection (see `audit::Connection`).
    pub(crate) client_addr: Option<String>,
    /// The original destination of an intercepted connection.
    pub(crate) orig_dst: Option<String>,
    started: Instant,
}

impl Track {
    pub(crate) fn new(
        ctx: &Context,
        direction: Direction,
        peer_addr: std::net::SocketAddr,
    ) -> Track {
        Track {
            id: ctx.next_id(),
            direction,
            peer_addr: peer_addr.to_string(),
            peer_pool: None,
            cert_sha256: None,
            service: None,
            client_addr: None,
            orig_dst: None,
            started: Instant::now(),
        }
    }

    pub(crate) fn decide(&self, ctx: &Context, decision: Decision, detail: Option<String>) {
        ctx.metrics
            .connection(self.direction, self.service.as_deref(), decision);
        if self.orig_dst.is_some() {
            ctx.metrics
                .intercepted(self.direction, self.service.as_deref(), decision);
        }
        if let Decision::Deny(reason) = decision {
            let (reason, detail) = (reason.as_str(), detail.as_deref());
            let outcome = crate::admin::SessionOutcome::Failed { reason, detail };
            ctx.metrics
                .session_ended(self.direction, self.service.as_deref(), outcome);
        }
        match decision {
            Decision::Allow => tracing::info!(
                service = self.service.as_deref(),
                peer_pool = self.peer_pool.as_deref(),
                "allowed"
            ),
            Decision::Deny(reason) => {
                tracing::warn!(%reason, service = self.service.as_deref(), peer_pool = self.peer_pool.as_deref(), detail = detail.as_deref(), "denied")
            }
        }
        ctx.audit.record(Event::Connection(audit::Connection {
            conn_id: self.id,
            direction: self.direction,
            peer_addr: self.peer_addr.clone(),
            peer_pool: self.peer_pool.clone(),
            cert_sha256: self.cert_sha256.clone(),
            service: self.service.clone(),
            decision: decision.verdict(),
            reason: decision.reason(),
            detail,
            client_addr: self.client_addr.clone(),
            orig_dst: self.orig_dst.clone(),
        }));
    }

    /// Audits the close of a relayed connection; a connection cut because
    /// its peer was revoked gets a `revoked` denial first, one cut because
    /// the policy no longer allows its service a `policy_changed` denial.
    fn finish(
        &self,
        ctx: &Context,
        reg: &Registration<'_>,
        counters: &relay::Counters,
        end: relay::End,
    ) {
        let error = if reg.was_revoked() {
            self.decide(
                ctx,
                Decision::Deny(crate::policy::DenyReason::Revoked),
                Some("established connection closed: peer certificate revoked".to_owned()),
            );
            Some("peer certificate revoked".to_owned())
        } else if reg.was_disallowed() {
            let service = self.service.as_deref().unwrap_or("?");
            self.decide(
                ctx,
                Decision::Deny(crate::policy::DenyReason::PolicyChanged),
                Some(format!(
                    "established connection closed: the reloaded policy no longer allows {service}"
                )),
            );
            Some("the reloaded policy no longer allows the service".to_owned())
        } else {
            end.error_text()
        };
        self.close(
            ctx,
            counters.forward.load(Ordering::Relaxed),
            counters.backward.load(Ordering::Relaxed),
            error,
        );
    }

    pub(crate) fn close(
        &self,
        ctx: &Context,
        bytes_in: u64,
        bytes_out: u64,
        error: Option<String>,
    ) {
        self.close_for(ctx, bytes_in, bytes_out, error, None);
    }

    /// [`Track::close`] of a connection that failed for an audit `reason`
    /// (e.g. `export_unreachable`).
    pub(crate) fn close_for(
        &self,
        ctx: &Context,
        bytes_in: u64,
        bytes_out: u64,
        error: Option<String>,
        reason: Option<crate::policy::DenyReason>,
    ) {
        if reason == Some(crate::policy::DenyReason::ExportUnreachable) {
            ctx.metrics
                .export_failure(self.direction, self.service.as_deref());
        }
        ctx.metrics
            .closed(self.direction, self.service.as_deref(), bytes_in, bytes_out);
        let outcome = match error.as_deref() {
            None => crate::admin::SessionOutcome::Ok {
                bytes_in,
                bytes_out,
            },
            Some(detail) => crate::admin::SessionOutcome::Failed {
                reason: "closed_with_error",
                detail: Some(detail),
            },
        };
        ctx.metrics
            .session_ended(self.direction, self.service.as_deref(), outcome);
        let duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(
            bytes_in,
            bytes_out,
            duration_ms,
            error = error.as_deref(),
            reason = reason.map(|r| r.as_str()),
            "closed"
        );
        ctx.audit.record(Event::Close(audit::Close {
            conn_id: self.id,
            direction: self.direction,
            peer_addr: self.peer_addr.clone(),
            peer_pool: self.peer_pool.clone(),
            cert_sha256: self.cert_sha256.clone(),
            service: self.service.clone(),
            decision: crate::policy::Verdict::Allow,
            bytes_in,
            bytes_out,
            duration_ms,
            error,
            reason,
            client_addr: self.client_addr.clone(),
            orig_dst: self.orig_dst.clone(),
        }));
    }
}
