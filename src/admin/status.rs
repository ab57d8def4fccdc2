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

/// What waits in one direction of the spool (from the spool module).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolDepth {
    pub files: u64,
    pub bytes: u64,
    /// When the oldest waiting file entered the spool; `None` if none waits.
    pub oldest_since: Option<OffsetDateTime>,
}

impl SpoolDepth {
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
mod tests {
    use super::*;
    use time::macros::datetime;

    const SYNC: Duration = Duration::from_secs(120);

    fn secs(s: u64) -> Option<Duration> {
        Some(Duration::from_secs(s))
    }

    #[test]
    fn steady_while_nothing_waits_longer_than_the_interval() {
        use ReplicationState::Steady;
        assert_eq!(replication_state(true, None, SYNC), (Steady, 0));
        assert_eq!(replication_state(true, secs(0), SYNC), (Steady, 0));
        assert_eq!(replication_state(true, secs(1), SYNC), (Steady, 0));
        assert_eq!(replication_state(true, secs(119), SYNC), (Steady, 0));
        // Exactly the interval is still within it.
        assert_eq!(replication_state(true, secs(120), SYNC), (Steady, 0));
    }

    #[test]
    fn lagging_just_past_the_interval_with_the_age_rounded_up() {
        use ReplicationState::Lagging;
        let just_over = Some(SYNC + Duration::from_nanos(1));
        assert_eq!(replication_state(true, just_over, SYNC), (Lagging, 121));
        assert_eq!(replication_state(true, secs(121), SYNC), (Lagging, 121));
        let rpo = Some(Duration::from_millis(300_500));
        assert_eq!(replication_state(true, rpo, SYNC), (Lagging, 301));
        let huge = secs(u64::MAX / 2);
        assert_eq!(replication_state(true, huge, SYNC), (Lagging, u64::MAX / 2));
    }

    #[test]
    fn disconnected_whenever_the_link_is_down() {
        use ReplicationState::Disconnected;
        assert_eq!(replication_state(false, None, SYNC), (Disconnected, 0));
        assert_eq!(replication_state(false, secs(0), SYNC), (Disconnected, 0));
        assert_eq!(replication_state(false, secs(5), SYNC), (Disconnected, 5));
        assert_eq!(
            replication_state(false, secs(120), SYNC),
            (Disconnected, 120)
        );
        assert_eq!(
            replication_state(false, secs(4000), SYNC),
            (Disconnected, 4000)
        );
    }

    #[test]
    fn the_shortest_and_longest_intervals_work() {
        use ReplicationState::{Lagging, Steady};
        let short = Duration::from_secs(5);
        assert_eq!(replication_state(true, secs(5), short), (Steady, 0));
        assert_eq!(replication_state(true, secs(6), short), (Lagging, 6));
        let long = Duration::from_secs(3 * 3600);
        assert_eq!(replication_state(true, secs(10_800), long), (Steady, 0));
        assert_eq!(
            replication_state(true, secs(10_801), long),
            (Lagging, 10_801)
        );
    }

    #[test]
    fn direction_status_ages_from_now_and_clamps_the_future() {
        let now = datetime!(2025-01-01 12:00:00 UTC);
        let depth = SpoolDepth {
            files: 3,
            bytes: 300,
            oldest_since: Some(datetime!(2025-01-01 11:55:00 UTC)),
        };
        let row = DirectionStatus::new(Direction::Outbound, true, &depth, SYNC, now);
        assert_eq!((row.state, row.lag_secs), (ReplicationState::Lagging, 300));
        assert_eq!((row.waiting_files, row.waiting_bytes), (3, 300));
        let future = SpoolDepth {
            oldest_since: Some(datetime!(2025-01-01 12:01:00 UTC)),
            ..depth
        };
        let row = DirectionStatus::new(Direction::Inbound, true, &future, SYNC, now);
        assert_eq!((row.state, row.lag_secs), (ReplicationState::Steady, 0));
    }

    #[test]
    fn link_tracker_moves_since_only_on_a_change() {
        let t0 = datetime!(2025-01-01 00:00:00 UTC);
        let t1 = datetime!(2025-01-01 00:01:00 UTC);
        let t2 = datetime!(2025-01-01 00:02:00 UTC);
        let t3 = datetime!(2025-01-01 00:03:00 UTC);
        let link = LinkTracker::new();
        assert_eq!(link.state().state, LinkState::Unknown);
        assert_eq!(link.state().since, None);
        assert!(link.is_up(), "unknown counts as up");
        link.up_at(t0);
        link.up_at(t1);
        assert_eq!(
            (link.state().state, link.state().since),
            (LinkState::Up, Some(t0))
        );
        link.down_at(t1, "connection refused".into());
        link.down_at(t2, "timed out".into());
        let state = link.state();
        assert_eq!((state.state, state.since), (LinkState::Down, Some(t1)));
        assert_eq!(state.last_error.as_deref(), Some("timed out"));
        assert!(!link.is_up());
        link.up_at(t3);
        let state = link.state();
        assert_eq!((state.state, state.since), (LinkState::Up, Some(t3)));
        assert_eq!(
            state.last_error.as_deref(),
            Some("timed out"),
            "last error is kept"
        );
    }

    #[test]
    fn clock_skew_reports_crossing_the_warning_threshold_once() {
        let t = datetime!(2025-01-01 00:00:00 UTC);
        let link = LinkTracker::new();
        assert_eq!(
            link.clock_skew(0.2, t),
            None,
            "fine from the start: nothing to log"
        );
        assert_eq!(link.clock_skew(-7200.0, t), Some(true));
        assert_eq!(
            link.clock_skew(-7199.0, t),
            None,
            "still off: logged already"
        );
        assert_eq!(link.clock_skew(1.0, t), Some(false), "back in step");
        assert_eq!(link.skew_secs(), Some(1.0));
        let fresh = LinkTracker::new();
        assert_eq!(
            fresh.clock_skew(90.0, t),
            Some(true),
            "first measurement already off"
        );
    }

    #[test]
    fn certificate_days_left_round_down_and_go_negative() {
        let now = datetime!(2025-01-01 00:00:00 UTC);
        let entry = |not_after: OffsetDateTime| CertEntry {
            pool: None,
            sha256: "ab".into(),
            not_after: not_after.unix_timestamp(),
        };
        let c = CertificateStatus::new(
            CertKind::Ca,
            &entry(datetime!(2025-01-31 23:59:59 UTC)),
            now,
        );
        assert_eq!(c.days_left, 30);
        let c = CertificateStatus::new(
            CertKind::Ca,
            &entry(datetime!(2024-12-31 23:00:00 UTC)),
            now,
        );
        assert_eq!(c.days_left, -1);
    }

    #[test]
    fn json_shape_is_the_documented_one() {
        let status = Status {
            pool: "pool01.site1.example".into(),
            peer_pool: "pool02.site2.example".into(),
            version: "0.1.0".into(),
            started: datetime!(2025-01-01 00:00:00 UTC),
            uptime_secs: 60,
            peer_link: PeerLink {
                state: LinkState::Down,
                since: Some(datetime!(2025-01-01 00:00:30 UTC)),
                last_error: Some("refused".into()),
                clock_skew_secs: Some(-7200.5),
                clock_skew_measured: Some(datetime!(2025-01-01 00:00:10 UTC)),
            },
            directions: vec![DirectionStatus::new(
                Direction::Outbound,
                false,
                &SpoolDepth::default(),
                SYNC,
                datetime!(2025-01-01 00:01:00 UTC),
            )],
            sync_interval_secs: 120,
            certificates: vec![],
            connections: ConnectionCounts::default(),
            services: vec![],
            spool_conditions: vec![],
            last_config_reload: None,
            audit: None,
            crl: None,
        };
        let json = serde_json::to_value(&status).unwrap_or_default();
        assert_eq!(json["started"], "2025-01-01T00:00:00Z");
        assert_eq!(json["peer_link"]["state"], "down");
        assert_eq!(json["peer_link"]["since"], "2025-01-01T00:00:30Z");
        assert_eq!(json["peer_link"]["clock_skew_secs"], -7200.5);
        assert_eq!(json["directions"][0]["direction"], "outbound");
        assert_eq!(json["directions"][0]["state"], "disconnected");
        assert_eq!(json["directions"][0]["lag_secs"], 0);
        assert!(json["directions"][0]["oldest_waiting_since"].is_null());
        assert_eq!(json["connections"]["denied_total"], 0);
        let back: Status = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, status);
    }
}
