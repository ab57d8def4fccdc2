//! The audited events and their JSON shape.
//!
//! An [`Event`] serializes as one JSON object whose `event` field is the
//! variant name in snake case; [`chain::render_line`](super::chain::render_line)
//! wraps it with `ts` in front and `prev` at the end. The field names are part of
//! the public audit contract, documented in `docs/reference.md` ("Audit log";
//! `tests/integration/reference.rs` checks every event and field is there):
//! add fields (with `#[serde(default)]` so old lines still parse) and
//! variants freely, but never rename or remove one.

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
    /// The gateway started serving `pool`, paired with `peer_pool`.
    GatewayStart {
        pool: String,
        peer_pool: String,
        version: String,
    },
    /// The gateway stopped (signal, fatal error, …).
    GatewayStop { reason: String },
    /// A decision about one connection.
    Connection(Connection),
    /// The end of an allowed connection, with its byte counts.
    Close(Close),
    /// The log itself was repaired when it was (re)opened: a torn last line
    /// left by a crash was cut off, or a failed write lost events. Always the
    /// first record written after the repair, so the gap is visible.
    LogRepaired(LogRepaired),
    /// Certificate, key, CA bundle or CRL files were reloaded (or a reload
    /// was refused and the running material kept).
    CertReload(CertReload),
    /// The policy was reloaded (or a reload was refused).
    PolicyReload(PolicyReload),
    /// SIGHUP re-read the config file: `ok` when it is valid and changes
    /// nothing that needs a restart (then policy and certificates reload);
    /// otherwise nothing was reloaded and `error` / `restart_needed` say why.
    ConfigReload(ConfigReload),
    /// A file from the outbox is now encrypted and durable in the spool.
    SpoolIn(SpoolFile),
    /// The peer acknowledged a spooled file; the local copy was deleted.
    SpoolSent(SpoolFile),
    /// A received file was placed in the inbox.
    SpoolDelivered(SpoolFile),
    /// A spool file failed authentication (or could not be read) and was
    /// moved to `quarantine/`.
    SpoolQuarantined(SpoolFile),
    /// A file was left in the outbox because the spool is full (`max_bytes`)
    /// or the file cannot be spooled (bad name).
    SpoolRefused(SpoolFile),
    /// The peer offered a file created longer ago than `spool.max_age_days`
    /// (a replay of an old sealed file): refused for good, never delivered.
    SpoolReplayed(SpoolFile),
    /// A persistent spool condition started or cleared (a file waiting
    /// for a key, refused by the peer, not deliverable into the inbox, a
    /// stalled link, …): one record at start, one at clear, never one per
    /// retry.
    SpoolCondition(SpoolCondition),
    /// `spool.old_keys` was re-read on reload (or the reload was refused
    /// and the keys in use kept).
    SpoolKeyReload(SpoolKeyReload),
    /// The peer gateway's audit chain head, as it reported it over the
    /// authenticated control channel: anchors the peer's log in ours, so
    /// rewriting either log's history needs both sites.
    PeerAuditHead(PeerAuditHead),
    /// The link to the peer gateway changed state (`up` / `down`).
    PeerLink(PeerLink),
    /// First record of a log file that replaced a rotated one: its chain
    /// starts afresh (`prev` = 64 zeros) and names the previous file's head.
    LogContinued(LogContinued),
    /// CRLs newer than those the peer enforces were sent to it over the
    /// control channel (once per CRL set and peer state).
    CrlSent(CrlExchange),
    /// CRLs the peer sent over the control channel were taken (written to
    /// `path`; the file watcher applies them) or refused (`error`).
    CrlReceived(CrlExchange),
    /// The paired peer sent something the control channel does not accept.
    PeerControlError(PeerControlError),
}

/// See [`Event::CrlSent`] and [`Event::CrlReceived`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrlExchange {
    pub peer_pool: String,
    pub ok: bool,
    /// The CRLs sent, or (received) the set now written.
    #[serde(default)]
    pub crls: Vec<CrlRecord>,
    /// The file written (received, `ok`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// See [`Event::PeerControlError`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerControlError {
    pub peer_addr: String,
    pub peer_pool: Option<String>,
    pub cert_sha256: Option<String>,
    pub error: String,
}

/// See [`Event::LogContinued`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogContinued {
    /// Hash of the last line of the previous file.
    pub previous_head: String,
}

/// See [`Event::PeerAuditHead`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerAuditHead {
    pub peer_addr: String,
    pub peer_pool: String,
    pub cert_sha256: String,
    /// Lower-case hex SHA-256 of the last line of the peer's audit log.
    pub head: String,
    /// The peer's clock when it sent the head.
    pub peer_ts: String,
}

/// Whether the peer gateway is reachable: the `state` of `peer_link`
/// records and of `/status`'s `peer_link`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Up,
    Down,
    /// Nothing has been tried since start (`/status` only).
    Unknown,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Unknown => "unknown",
        }
    }
}

/// See [`Event::PeerLink`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLink {
    pub state: LinkState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One spool file event. `id` is empty when no id was assigned yet (refusals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolFile {
    pub id: String,
    pub name: String,
    /// Plaintext size in bytes.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_pool: Option<String>,
    /// Milliseconds since the file entered the spool at its origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    /// Why (quarantine, refusal, renamed delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The inbox name used when it differs from `name`, or the quarantine path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The kinds of persistent spool condition ([`Event::SpoolCondition`]).
/// The snake-case names are the `condition` of audit records, `/status`
/// entries and the `pairgate_spool_held_files` label; defined here, with
/// the audit vocabulary, so that `admin` and `spool` share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// Sealed under a key id that is neither `spool.key` nor in
    /// `spool.old_keys`: waits until that key is configured.
    WaitingForKey,
    /// The peer can never take the file (larger than its `max_bytes`).
    TooLarge,
    /// The peer refuses the file's name or metadata.
    BadName,
    /// The peer refused the file for now (its spool is full, the file is
    /// being received on another connection, it could not store it).
    PeerRefused,
    /// An outbox file cannot be spooled: unreadable, a symbolic link or
    /// other non-regular file, a name the spool cannot carry.
    OutboxRefused,
    /// The local spool has no room (`max_bytes` or a full disk).
    SpoolFull,
    /// A received file cannot be placed in the inbox (full, unwritable).
    InboxFailing,
    /// The spool link made no progress for `stall_secs` and was torn down;
    /// clears when a transfer completes again.
    LinkStalled,
}

impl Condition {
    pub const ALL: [Condition; 8] = [
        Condition::WaitingForKey,
        Condition::TooLarge,
        Condition::BadName,
        Condition::PeerRefused,
        Condition::OutboxRefused,
        Condition::SpoolFull,
        Condition::InboxFailing,
        Condition::LinkStalled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::WaitingForKey => "waiting_for_key",
            Condition::TooLarge => "too_large",
            Condition::BadName => "bad_name",
            Condition::PeerRefused => "peer_refused",
            Condition::OutboxRefused => "outbox_refused",
            Condition::SpoolFull => "spool_full",
            Condition::InboxFailing => "inbox_failing",
            Condition::LinkStalled => "link_stalled",
        }
    }
}

/// See [`Event::SpoolCondition`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolCondition {
    /// `waiting_for_key`, `too_large`, `bad_name`, `peer_refused`,
    /// `outbox_refused`, `spool_full`, `inbox_failing`, `link_stalled`.
    pub condition: String,
    /// `start` or `clear`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The missing key's id (`waiting_for_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Files the condition holds back.
    #[serde(default)]
    pub files: u64,
    /// What is wrong and what to do.
    #[serde(default)]
    pub detail: String,
}

/// See [`Event::SpoolKeyReload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpoolKeyReload {
    pub trigger: String,
    pub ok: bool,
    /// The ids of every key in use after the reload, `spool.key` first.
    #[serde(default)]
    pub key_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Outcome of a TLS material reload. Fingerprints are of our own leaf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertReload {
    /// `signal` (SIGHUP) or `watch` (a file changed).
    pub trigger: String,
    pub ok: bool,
    pub old_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Established connections closed because their peer is now revoked.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revoked_closed: u64,
    /// The CRLs in force after this reload (the old ones when it was
    /// refused): issuer, number, next update. Omitted without `tls.crl`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<CrlRecord>,
}

/// One CRL in force, as `cert_reload` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlRecord {
    /// The CRL issuer's distinguished name.
    pub issuer: String,
    /// The CRL number (0 when the CRL carries none).
    pub number: u64,
    /// `nextUpdate`, RFC 3339; absent when the CRL names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
}

/// Outcome of a policy reload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyReload {
    pub trigger: String,
    pub ok: bool,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Outcome of re-reading the config file (SIGHUP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigReload {
    pub trigger: String,
    pub ok: bool,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Keys whose new values only a restart would apply (e.g.
    /// `tunnel[0].listen`); the running configuration stays in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
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
    /// The local client (Front End) of a tunnelled connection, `ip:port`:
    /// at the dialling site the client of the tunnel listener, at the
    /// accepting site as the `pg2` PROXY header carried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// The original destination of an intercepted connection, `ip:port`:
    /// the server the client addressed (`SO_ORIGINAL_DST` at the
    /// intercepting site, the PROXY header at the exporting site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_dst: Option<String>,
    /// The pool an *unverified* certificate claimed (first DNS SAN) when
    /// the handshake failed: never in `peer_pool`, which only ever holds
    /// an identity whose chain verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_pool: Option<String>,
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
    /// Why the connection ended abnormally, when it is one of the audit
    /// reasons: `export_unreachable` (at both sites of a `pg2` tunnel), or
    /// the peer's refusal read from the `pg2` status frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DenyReason>,
    /// As in [`Connection::client_addr`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// As in [`Connection::orig_dst`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orig_dst: Option<String>,
}

/// What a repair of the log's tail removed or lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRepaired {
    /// Bytes of an incomplete last line that were cut off (0 if none).
    pub truncated_bytes: u64,
    /// Lower-case hex SHA-256 of the bytes cut off (of the empty string if none),
    /// so the removed fragment can be matched against a backup copy.
    pub truncated_sha256: String,
    /// Events that were recorded but could not be written (disk full, I/O error).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub lost_events: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
#[path = "event_tests.rs"]
mod tests;
