//! `/status`: the gateway's state for a person, as JSON.
//!
//! The Backup Service replicates on a sync interval (2 minutes by default)
//! and reports each direction as *steady* when changes are replicated within
//! that interval. pairgate judges each direction of its own part the same
//! way, from the oldest file waiting in its spool and the state of the link
//! to the peer gateway ([`replication_state`]):
//!
//! - `steady`: the link is up and nothing has waited longer than the sync interval;
//! - `lagging`: the link is up but the oldest file has waited longer; `lag_secs`
//!   is its age, and it eats into the recovery point objective (5 min for Skype
//!   for Business 2015/2019 and CMS, 30 min for Lync 2013);
//! - `disconnected`: the peer gateway cannot be reached; `lag_secs` is the age
//!   of the oldest waiting file (0 if none waits) and grows until the link returns.
//!
//! `outbound` is this site → the peer (files in our spool not yet acknowledged
//! by the peer); `inbound` is the peer → this site (files received but not yet
//! delivered into the inbox). The peer's own `/status` shows the other half.
//!
//! These states judge the **spool only**. Tunnelled traffic (the Backup
//! Service's SMB on 445, CMS over HTTPS) never waits in the spool, so each
//! configured tunnel and export has its own row in `services`
//! ([`super::sessions`]): `ok` / `failing` / `idle`, its last success and
//! last failure with the audit reason, and the sessions of the last interval.
//! `peer_link.clock_skew_secs` is the peer's clock minus ours from the
//! control-channel heartbeat; lag figures are computed on our clock alone.
//!
//! The shape here is a public interface (`pairgate status --json`, scripts):
//! add fields, never rename or remove one. [`LinkTracker`] records the peer
//! link's state; the gateway assembles a [`Status`] through [`StatusSource`].

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::labels::CertKind;
use super::metrics::{CertEntry, ConnectionCounts};
use super::sessions::ServiceStatus;
use crate::audit::Direction;

/// The Backup Service's default sync interval.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(120);

/// Everything `/status` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The local pool (`gateway.pool`).
    pub pool: String,
    /// Its pair (`gateway.peer_pool`).
    pub peer_pool: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
    pub uptime_secs: u64,
    pub peer_link: PeerLink,
    /// `outbound` first, then `inbound`.
    pub directions: Vec<DirectionStatus>,
    pub sync_interval_secs: u64,
    pub certificates: Vec<CertificateStatus>,
    pub connections: ConnectionCounts,
    /// Each configured tunnel (outbound) and export (inbound): whether its
    /// sessions work. `directions` judge the spool only; this is the
    /// tunnelled traffic (SMB, HTTPS).
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
    /// Persistent spool conditions now (files waiting for a key, refused
    /// by the peer, not deliverable, a stalled link, …); empty when all is
    /// well or there is no spool.
    #[serde(default)]
    pub spool_conditions: Vec<SpoolConditionStatus>,
    /// The last config reload (SIGHUP): refused ones say why; `None` until
    /// the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_config_reload: Option<ConfigReloadStatus>,
    /// Whether the audit log is written (`null` until first measured).
    #[serde(default)]
    pub audit: Option<AuditStatus>,
    /// The CRLs in force (`null`: none).
    #[serde(default)]
    pub crl: Option<CrlStatus>,
}

/// The outcome of a config reload, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigReloadStatus {
    /// Whether the re-read config was applied (else the running one stays).
    pub ok: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The changed keys only a restart (or a takeover) applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
}

/// The audit log's health, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditStatus {
    /// The log cannot be written or cannot keep up (its queue is full).
    pub failing: bool,
    /// Why, when failing.
    #[serde(default)]
    pub detail: Option<String>,
    /// `audit.on_failure`: `refuse` (new connections are refused while
    /// failing) or `continue`.
    pub on_failure: String,
}

/// The CRLs a gateway enforces, as `/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlStatus {
    /// `tls.crl_overdue`: `warn` or `deny`.
    pub crl_overdue: String,
    /// Some CRL in force is past its `nextUpdate`.
    pub overdue: bool,
    /// Why the configured `tls.crl` was not taken (a rollback), if so.
    #[serde(default)]
    pub refused: Option<String>,
    pub crls: Vec<CrlRow>,
}

/// One CRL in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlRow {
    pub issuer: String,
    /// The CRL number (0 when it carries none).
    pub number: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    pub overdue: bool,
}

/// One persistent spool condition, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolConditionStatus {
    /// `waiting_for_key`, `too_large`, `bad_name`, `peer_refused`,
    /// `outbox_refused`, `spool_full`, `inbox_failing`, `link_stalled`.
    pub condition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The key the files wait for (`waiting_for_key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Files it holds back.
    pub files: u64,
    /// What is wrong and what to do.
    pub detail: String,
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// Whether the peer gateway is reachable (defined with the audit vocabulary,
/// whose `peer_link` records carry it too).
pub use crate::audit::LinkState;

/// The peer link as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLink {
    pub state: LinkState,
    /// When the link entered `state`; `None` while `unknown`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// The last reason the link was down (kept after it comes back up).
    #[serde(default)]
    pub last_error: Option<String>,
    /// The peer gateway's clock minus ours, in seconds, measured on the
    /// control channel's heartbeat (`None` until measured). Certificates
    /// look not yet valid or expired to a clock that is off.
    #[serde(default)]
    pub clock_skew_secs: Option<f64>,
    /// When `clock_skew_secs` was measured (our clock).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub clock_skew_measured: Option<OffsetDateTime>,
}

/// A peer clock further off than this is logged (once, and once when it is
/// back within it) and flagged by `pairgate status`.
pub const CLOCK_SKEW_WARN_SECS: f64 = 30.0;

/// Replication state of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationState {
    Steady,
    Lagging,
    Disconnected,
}

impl ReplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationState::Steady => "steady",
            ReplicationState::Lagging => "lagging",
            ReplicationState::Disconnected => "disconnected",
        }
    }
}

/// One direction's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectionStatus {
    pub direction: Direction,
    pub state: ReplicationState,
    pub lag_secs: u64,
    pub waiting_files: u64,
    pub waiting_bytes: u64,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub oldest_waiting_since: Option<OffsetDateTime>,
}

/// What waits in one direction of the spool: the one depth type, from the
/// spool's folders (`spool::Store::depth`) and the peer's heartbeat report
/// to `/status` and the `pairgate_spool_*` gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpoolDepth {
    pub files: u64,
    pub bytes: u64,
    /// When the oldest waiting file entered the spool; `None` if none waits.
    pub oldest_since: Option<OffsetDateTime>,
}

impl SpoolDepth {
    /// A depth reported as an age (the control channel carries ages, which
    /// no clock offset distorts), placed on our clock at `measured_at`.
    pub fn aged(
        files: u64,
        bytes: u64,
        oldest_age: Option<Duration>,
        measured_at: OffsetDateTime,
    ) -> SpoolDepth {
        SpoolDepth {
            files,
            bytes,
            oldest_since: oldest_age.and_then(|age| {
                time::Duration::try_from(age)
                    .ok()
                    .map(|age| measured_at - age)
            }),
        }
    }

    /// Age of the oldest waiting file at `now` (0 if it claims the future).
    pub fn oldest_age(&self, now: OffsetDateTime) -> Option<Duration> {
        self.oldest_since
            .map(|since| Duration::try_from(now - since).unwrap_or(Duration::ZERO))
    }
}

impl DirectionStatus {
    /// The row for `direction` at `now`.
    pub fn new(
        direction: Direction,
        link_up: bool,
        depth: &SpoolDepth,
        sync_interval: Duration,
        now: OffsetDateTime,
    ) -> DirectionStatus {
        let (state, lag_secs) = replication_state(link_up, depth.oldest_age(now), sync_interval);
        DirectionStatus {
            direction,
            state,
            lag_secs,
            waiting_files: depth.files,
            waiting_bytes: depth.bytes,
            oldest_waiting_since: depth.oldest_since,
        }
    }
}

/// A certificate and how long it has left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateStatus {
    pub kind: CertKind,
    /// The pool a gateway certificate names (first DNS SAN); `None` for a CA.
    #[serde(default)]
    pub pool: Option<String>,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whole days until `not_after`, rounded down; negative once expired.
    pub days_left: i64,
}

impl CertificateStatus {
    /// The row for a published certificate at `now`.
    pub fn new(kind: CertKind, entry: &CertEntry, now: OffsetDateTime) -> CertificateStatus {
        let not_after = OffsetDateTime::from_unix_timestamp(entry.not_after)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        CertificateStatus {
            kind,
            pool: entry.pool.clone(),
            sha256: entry.sha256.clone(),
            not_after,
            days_left: crate::pki::days_left_unix(entry.not_after, now.unix_timestamp()),
        }
    }
}

/// The replication state of one direction and its lag in whole seconds
/// (rounded up, so a `lagging` lag always exceeds the interval):
/// `disconnected` when the link is down (lag = age of the oldest waiting
/// item, or 0), `steady` (lag 0) when nothing waits longer than
/// `sync_interval`, `lagging` otherwise.
pub fn replication_state(
    link_up: bool,
    oldest_waiting_age: Option<Duration>,
    sync_interval: Duration,
) -> (ReplicationState, u64) {
    let age_secs = |age: Duration| age.as_secs() + u64::from(age.subsec_nanos() > 0);
    match (link_up, oldest_waiting_age) {
        (false, age) => (ReplicationState::Disconnected, age.map_or(0, age_secs)),
        (true, Some(age)) if age > sync_interval => (ReplicationState::Lagging, age_secs(age)),
        (true, _) => (ReplicationState::Steady, 0),
    }
}

/// Whatever can report the gateway's status; the gateway implements it.
pub trait StatusSource: Send + Sync {
    fn status(&self) -> Status;

    /// Why the instance should not receive traffic now, one reason per
    /// failed check (empty: ready); see [`super::ready`]. Ready by default.
    fn not_ready(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Tracks whether the peer gateway is reachable and since when. Shared as
/// `Arc<LinkTracker>`; call [`LinkTracker::up`] on every successful handshake
/// with the peer (either direction) and [`LinkTracker::down`] when reaching it
/// fails.
#[derive(Debug)]
pub struct LinkTracker {
    inner: Mutex<PeerLink>,
}

impl Default for LinkTracker {
    fn default() -> LinkTracker {
        LinkTracker::new()
    }
}

impl LinkTracker {
    /// A tracker in state `unknown`.
    pub fn new() -> LinkTracker {
        LinkTracker {
            inner: Mutex::new(PeerLink {
                state: LinkState::Unknown,
                since: None,
                last_error: None,
                clock_skew_secs: None,
                clock_skew_measured: None,
            }),
        }
    }

    /// The peer was reached now.
    pub fn up(&self) {
        self.up_at(OffsetDateTime::now_utc());
    }

    /// The peer could not be reached now, because of `error`.
    pub fn down(&self, error: String) {
        self.down_at(OffsetDateTime::now_utc(), error);
    }

    /// The peer was reached at `now`; `since` moves only on a change of state.
    pub fn up_at(&self, now: OffsetDateTime) {
        let mut link = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if link.state != LinkState::Up {
            link.state = LinkState::Up;
            link.since = Some(now);
        }
    }

    /// The peer could not be reached at `now`; the error is always kept,
    /// `since` moves only on a change of state.
    pub fn down_at(&self, now: OffsetDateTime, error: String) {
        let mut link = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if link.state != LinkState::Down {
            link.state = LinkState::Down;
            link.since = Some(now);
        }
        link.last_error = Some(error);
    }

    /// Records the peer's clock offset (peer minus ours, seconds) measured
    /// at `now`. Returns `Some(too_far)` when the offset crossed
    /// [`CLOCK_SKEW_WARN_SECS`] either way (or is the first measurement and
    /// too far), so the caller logs the change once.
    pub fn clock_skew(&self, skew_secs: f64, now: OffsetDateTime) -> Option<bool> {
        let mut link = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let was = link.clock_skew_secs.map(|s| s.abs() > CLOCK_SKEW_WARN_SECS);
        let is = skew_secs.abs() > CLOCK_SKEW_WARN_SECS;
        link.clock_skew_secs = Some(skew_secs);
        link.clock_skew_measured = Some(now);
        match was {
            Some(was) if was != is => Some(is),
            None if is => Some(true),
            _ => None,
        }
    }

    /// The last measured peer clock offset (peer minus ours), in seconds.
    pub fn skew_secs(&self) -> Option<f64> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clock_skew_secs
    }

    /// The link as `/status` shows it.
    pub fn state(&self) -> PeerLink {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether the link counts as up for [`replication_state`]. `unknown`
    /// (nothing tried yet) counts as up, so a fresh gateway with nothing to
    /// send reports `steady` rather than `disconnected`.
    pub fn is_up(&self) -> bool {
        self.state().state != LinkState::Down
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
