//! The facts of one connection an audit record is made of, filled in as
//! they become known (address, pool and certificate of the peer, service,
//! client, original destination), and the records made of them: one
//! decision, then one close for an allowed connection.

use std::time::Instant;

use super::Peer;
use crate::audit::{self, Direction, Event};
use crate::names::ServiceName;
use crate::policy::Decision;

/// The audit facts of one connection, filled in as they become known.
pub struct Track {
    pub id: u64,
    pub direction: Direction,
    pub peer_addr: String,
    pub peer_pool: Option<String>,
    pub cert_sha256: Option<String>,
    pub service: Option<ServiceName>,
    /// The local client of a tunnelled connection (see `audit::Connection`).
    pub client_addr: Option<std::net::SocketAddr>,
    /// The original destination of an intercepted connection.
    pub orig_dst: Option<std::net::SocketAddr>,
    /// What an unverified certificate claimed (see `audit::Connection`).
    pub claimed_pool: Option<String>,
    /// The tunnel or intercept listener that accepted an outbound
    /// connection (not audited: a reload drains a removed listener's).
    pub listener: Option<std::net::SocketAddr>,
    started: Instant,
}

impl Track {
    pub fn new(peer: &Peer, direction: Direction, peer_addr: std::net::SocketAddr) -> Track {
        Track {
            id: peer.next_id(),
            direction,
            peer_addr: peer_addr.to_string(),
            peer_pool: None,
            cert_sha256: None,
            service: None,
            client_addr: None,
            orig_dst: None,
            claimed_pool: None,
            listener: None,
            started: Instant::now(),
        }
    }

    /// What a reload judges the connection by, once it is established.
    pub fn origin(&self) -> super::Origin {
        super::Origin {
            direction: self.direction,
            service: self.service.as_ref().map(ToString::to_string),
            listener: self.listener,
            client: self.client_addr.map(|a| a.ip()),
            destination: self.orig_dst,
        }
    }

    pub fn decide(&self, peer: &Peer, decision: Decision, detail: Option<String>) {
        peer.metrics
            .connection(self.direction, self.service.as_deref(), decision);
        if self.orig_dst.is_some() {
            peer.metrics
                .intercepted(self.direction, self.service.as_deref(), decision);
        }
        if let Decision::Deny(reason) = decision {
            let (reason, detail) = (reason.as_str(), detail.as_deref());
            let outcome = crate::admin::SessionOutcome::Failed { reason, detail };
            peer.metrics
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
        peer.audit.record(Event::Connection(audit::Connection {
            conn_id: self.id,
            direction: self.direction,
            peer_addr: self.peer_addr.clone(),
            peer_pool: self.peer_pool.clone(),
            cert_sha256: self.cert_sha256.clone(),
            service: self.service.as_ref().map(ToString::to_string),
            decision: decision.verdict(),
            reason: decision.reason(),
            detail,
            client_addr: self.client_addr.map(|a| a.to_string()),
            orig_dst: self.orig_dst.map(|a| a.to_string()),
            claimed_pool: self.claimed_pool.clone(),
        }));
    }

    pub fn close(&self, peer: &Peer, bytes_in: u64, bytes_out: u64, error: Option<String>) {
        self.close_for(peer, bytes_in, bytes_out, error, None);
    }

    /// [`Track::close`] of a connection that failed for an audit `reason`
    /// (e.g. `export_unreachable`).
    pub fn close_for(
        &self,
        peer: &Peer,
        bytes_in: u64,
        bytes_out: u64,
        error: Option<String>,
        reason: Option<crate::policy::DenyReason>,
    ) {
        if reason == Some(crate::policy::DenyReason::ExportUnreachable) {
            peer.metrics
                .export_failure(self.direction, self.service.as_deref());
        }
        peer.metrics
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
        peer.metrics
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
        peer.audit.record(Event::Close(audit::Close {
            conn_id: self.id,
            direction: self.direction,
            peer_addr: self.peer_addr.clone(),
            peer_pool: self.peer_pool.clone(),
            cert_sha256: self.cert_sha256.clone(),
            service: self.service.as_ref().map(ToString::to_string),
            decision: crate::policy::Verdict::Allow,
            bytes_in,
            bytes_out,
            duration_ms,
            error,
            reason,
            client_addr: self.client_addr.map(|a| a.to_string()),
            orig_dst: self.orig_dst.map(|a| a.to_string()),
        }));
    }
}
