//! The audit log: every connection and decision as hash-chained JSON lines.
//!
//! SKELETON — the audit helper replaces the bodies; keep these signatures.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::policy::{DenyReason, Verdict};

/// Which way a connection goes, seen from this gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the peer gateway, over mTLS, towards a local export.
    Inbound,
    /// From a local client into a tunnel towards the peer.
    Outbound,
}

/// One audited event. The tag becomes the line's `event` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    GatewayStart { pool: String, peer_pool: String, version: String },
    GatewayStop { reason: String },
    Connection(Connection),
    Close(Close),
}

/// A decision about one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub conn_id: u64,
    pub direction: Direction,
    pub peer_addr: String,
    pub peer_pool: Option<String>,
    pub cert_sha256: Option<String>,
    pub service: Option<String>,
    pub decision: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenyReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The end of an allowed connection. `bytes_in` were received from
/// `peer_addr`, `bytes_out` sent to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Close {
    pub conn_id: u64,
    pub direction: Direction,
    pub peer_addr: String,
    pub peer_pool: Option<String>,
    pub cert_sha256: Option<String>,
    pub service: Option<String>,
    pub decision: Verdict,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("placeholder")]
    Placeholder,
}

/// A cheap, cloneable handle to the append-only, hash-chained log.
#[derive(Clone)]
pub struct AuditLog {
    _private: (),
}

impl AuditLog {
    /// Opens (or creates) the log, continuing the chain of an existing file.
    pub fn open(_path: &Path) -> Result<AuditLog, AuditError> {
        unimplemented!()
    }
    /// Queues one event; never blocks on disk.
    pub fn record(&self, _event: Event) {
        unimplemented!()
    }
    /// Waits until every event recorded before this call is written and synced.
    pub fn flush(&self) -> Result<(), AuditError> {
        unimplemented!()
    }
}
