//! Dialling the peer gateway: TCP to `peer.connect`, then mTLS 1.3 naming a
//! service by ALPN, within the handshake timeout. Shared by tunnels, the
//! spool forwarder and the control heartbeat, so all three verify, time,
//! count and track the link the same way.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::ServerName;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{Peer, PeerTcp, Track};
use crate::audit::Direction;
use crate::policy::DenyReason;
use crate::tls::{self, Observed};

/// Handshakes to the peer gateway in flight at once; further connections
/// wait their turn. A burst of 2,000 local clients then costs the peer 48
/// concurrent handshakes instead of 2,000: each is answered within the
/// handshake timeout instead of queueing behind the others until it runs
/// out, and the peer's per-source handshake cap for strangers (64) is not
/// reached even by a peer that predates its larger allowance for the
/// paired peer (`limits.max_handshakes_per_peer`). On a 50 ms WAN this
/// still opens several hundred connections per second.
pub const DIALS_IN_FLIGHT: usize = 48;

/// Why a dial to the peer gateway failed: the audit reason, and a detail
/// naming the peer address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct DialError {
    pub reason: DenyReason,
    pub detail: String,
}

impl DialError {
    fn new(reason: DenyReason, detail: impl Into<String>) -> DialError {
        DialError {
            reason,
            detail: detail.into(),
        }
    }
}

/// The turn-taking of dials to the peer.
///
/// Waiting for a turn has no timeout of its own: while the peer answers,
/// waiting is only latency (a burst drains at the peer's handshake rate),
/// and when it does not, each dial in flight fails within the handshake
/// timeout — and every connection that queued behind a failed dial fails
/// with it at once instead of trying again, so a dead peer costs the
/// queue one handshake timeout, not one per 48 connections.
pub(crate) struct DialQueue {
    turns: Semaphore,
    state: Mutex<DialState>,
}

#[derive(Default)]
struct DialState {
    /// Dials that failed so far.
    failures: u64,
    /// The last dial's failure, until a dial succeeds.
    failing: Option<DialError>,
}

impl Default for DialQueue {
    fn default() -> DialQueue {
        DialQueue {
            turns: Semaphore::new(DIALS_IN_FLIGHT),
            state: Mutex::default(),
        }
    }
}

impl DialQueue {
    fn failures(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.failures)
    }

    /// The failure to share if a dial failed since `seen` and none succeeded after.
    fn failed_since(&self, seen: u64) -> Option<DialError> {
        let state = self.state.lock().ok()?;
        (state.failures != seen).then(|| state.failing.clone())?
    }

    fn record(&self, outcome: Result<(), &DialError>) {
        if let Ok(mut state) = self.state.lock() {
            match outcome {
                Ok(()) => state.failing = None,
                Err(failure) => {
                    state.failures += 1;
                    state.failing = Some(failure.clone());
                }
            }
        }
    }
}

impl Peer {
    /// Connects to the peer gateway for `alpn`. Fills `track` with the
    /// identity and fingerprint the server presented (even when refused),
    /// marks the link up or down, and records handshake latency and the
    /// peer certificate's expiry on success.
    ///
    /// # Errors
    /// The audit reason and a detail naming the peer address.
    pub async fn dial(
        &self,
        alpn: Vec<u8>,
        track: &mut Track,
    ) -> Result<TlsStream<PeerTcp>, DialError> {
        self.dial_offering(vec![alpn], track).await
    }

    /// [`Peer::dial`] offering several ALPN ids, preferred first (a tunnel
    /// offers `pg2/<service>` and `pg1/<service>`).
    ///
    /// # Errors
    /// As [`Peer::dial`].
    pub async fn dial_offering(
        &self,
        alpn: Vec<Vec<u8>>,
        track: &mut Track,
    ) -> Result<TlsStream<PeerTcp>, DialError> {
        // No new connection the audit log cannot record (`audit.on_failure`);
        // the heartbeat goes on, so the pair still sees each other.
        if !alpn.iter().any(|a| a == tls::ALPN_CONTROL) {
            if let Some(detail) = self.audit.health().refusal() {
                return Err(DialError::new(DenyReason::AuditFailing, detail));
            }
        }
        // Wait for a turn among the handshakes in flight (see DialQueue).
        let seen_failures = self.dials.failures();
        let Ok(_turn) = self.dials.turns.acquire().await else {
            return Err(DialError::new(
                DenyReason::PeerUnreachable,
                "dial queue closed",
            ));
        };
        if let Some(failed) = self.dials.failed_since(seen_failures) {
            return Err(DialError::new(
                failed.reason,
                format!("{} (a dial queued before this one failed)", failed.detail),
            ));
        }
        let live = self.snapshot();
        let seen = Arc::new(Observed::default());
        let config = tls::client_config(&live.material, alpn, &self.peer_pool, &seen);
        let attempt = async {
            // Marked: the operator's nftables rules must never intercept this.
            let tcp = crate::intercept::socket::connect(&self.peer_connect, self.mark())
                .await
                .map_err(|e| DialError::new(DenyReason::PeerUnreachable, e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            super::keepalive::enable(&tcp);
            let remote = tcp.peer_addr().ok();
            let name = ServerName::try_from(self.peer_pool.to_string())
                .map_err(|e| DialError::new(DenyReason::BadCertificate, e.to_string()))?;
            TlsConnector::from(config)
                .connect(name, super::ReadAhead::new(tcp))
                .await
                .map(|stream| (stream, remote))
                .map_err(|e| {
                    let reason =
                        tls::rustls_error(&e).map_or(DenyReason::PeerUnreachable, tls::deny_reason);
                    DialError::new(reason, e.to_string())
                })
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.limits().handshake_timeout, attempt).await;
        let identity = seen.identity();
        // The verifier pinned the pool: a verified identity is the peer's.
        // An unverified one is only what the certificate claims.
        match (&result, &identity) {
            (Ok(Ok(_)), Some(id)) => track.peer_pool = Some(id.pool.clone()),
            (_, Some(id)) => track.claimed_pool = Some(id.pool.clone()),
            (_, None) => {}
        }
        track.cert_sha256 = seen.fingerprint();
        let result = match result {
            Err(_elapsed) => Err(DialError::new(
                DenyReason::HandshakeTimeout,
                "handshake timed out",
            )),
            Ok(r) => r,
        };
        match result {
            Ok((stream, remote)) => {
                if let Some(remote) = remote {
                    // The verifier pinned the paired pool: the peer is at this
                    // address, and its connections to us will come from it.
                    self.pending.vouch(remote.ip(), Instant::now());
                }
                self.metrics
                    .handshake(Direction::Outbound, started.elapsed());
                self.link.up();
                self.dials.record(Ok(()));
                let leaf = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first());
                if let (Some(id), Some(leaf)) = (identity, leaf) {
                    self.metrics
                        .peer_cert(&id.pool, &id.sha256, id.not_after, leaf.as_ref());
                }
                Ok(stream)
            }
            Err(failed) => {
                let detail = format!("peer gateway {}: {}", self.peer_connect, failed.detail);
                self.link.down(detail.clone());
                let failure = DialError::new(failed.reason, detail);
                self.dials.record(Err(&failure));
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_shared_with_the_dials_queued_before_it_until_one_succeeds() {
        let q = DialQueue::default();
        let before = q.failures();
        assert_eq!(q.failed_since(before), None);
        let failure = DialError::new(DenyReason::PeerUnreachable, "refused");
        q.record(Err(&failure));
        assert_eq!(
            q.failed_since(before),
            Some(failure.clone()),
            "queued before: fails"
        );
        assert_eq!(q.failed_since(q.failures()), None, "queued after: tries");
        q.record(Ok(()));
        assert_eq!(q.failed_since(before), None, "a success ends the failure");
    }
}
