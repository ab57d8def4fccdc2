//! The admin endpoint: what an operator (and Prometheus) can ask a running
//! gateway on `admin.listen`.
//!
//! - `GET /metrics` — [`Metrics`] as OpenMetrics text. The families and what
//!   to alert on are listed in [`metrics`]. The three alerts that matter most:
//!   1. **replication lag**: `pairgate_spool_oldest_age_seconds` against the
//!      recovery point objective — 300 s for Skype for Business 2015/2019
//!      (and CMS), 1800 s for Lync 2013; warn at half of it;
//!   2. **certificate expiry**:
//!      `pairgate_certificate_expiry_timestamp_seconds - time() < 30 * 86400`
//!      for any `kind` (own, ca, peer) — rotate now, a failover is no time to
//!      discover an expired pairing;
//!   3. **denials**: any increase of `pairgate_denials_total` with a reason
//!      other than `peer_unreachable` or `handshake_timeout` means something
//!      that is not the pair (or a misissued certificate) is knocking.
//! - `GET /healthz` — `ok` while the gateway runs (liveness only).
//! - `GET /readyz` — `200 ready` when this instance should get traffic:
//!   config served, own certificate valid, audit writable, peer link up;
//!   else `503` naming each failed check (see [`ready`]).
//! - `GET /status` — [`Status`] JSON: the peer link, each replication
//!   direction as `steady` / `lagging` / `disconnected` (see [`status`]),
//!   certificates with days left, connection totals, and each tunnelled or
//!   exported service's last success and failure (see [`sessions`]).
//!   `pairgate status` renders it.
//!
//! Wiring, for the gateway: create one `Arc<Metrics>` and one
//! `Arc<LinkTracker>`; record with the typed methods (no label strings);
//! build a [`Board`] (or implement [`StatusSource`]); bind `admin.listen`
//! and spawn [`serve`] with the gateway's stop token.

pub mod board;
pub mod client;
pub mod labels;
pub mod metrics;
pub mod ready;
pub mod server;
pub mod sessions;
pub mod status;
#[cfg(test)]
pub(crate) mod testing;

pub use board::{Board, SpoolGauge};
pub use labels::{CertKind, Reloaded};
pub use metrics::{ActiveGuard, CertEntry, ConnectionCounts, Metrics, CONTENT_TYPE};
pub use ready::Serving;
pub use server::serve;
pub use sessions::{
    LastFailure, LastSuccess, ServiceRole, ServiceState, ServiceStatus, SessionCounts,
    SessionOutcome,
};
pub use status::{
    replication_state, AuditStatus, CertificateStatus, ConfigReloadStatus, CrlRow, CrlStatus,
    DirectionStatus, LinkState, LinkTracker, PeerLink, ReplicationState, SpoolConditionStatus,
    SpoolDepth, Status, StatusSource, CLOCK_SKEW_WARN_SECS, DEFAULT_SYNC_INTERVAL,
};
