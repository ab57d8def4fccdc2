//! Per-service session outcomes: is the Backup Service's SMB path alive?
//!
//! `steady`/`lagging` judge the spool, but tunnelled services (SMB 445,
//! HTTPS 4443) never touch it: a dead export target left `/status` saying
//! `steady`. So every tunnelled (outbound) and exported (inbound) service of
//! the config is tracked here: its last successful session (when, bytes),
//! its last failure (when, audit reason, detail), and how many sessions
//! ended ok / failed within the last sync interval and since start.
//!
//! Only services declared at start are tracked, so a peer naming random
//! services cannot grow this. The proxy reports each session's end once,
//! through [`super::Metrics::session_ended`]; this module is the sans-IO
//! core (every method takes `now`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::Direction;

/// How a session ended, as the proxy reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOutcome<'a> {
    /// Relayed to its end without an error.
    Ok { bytes_in: u64, bytes_out: u64 },
    /// Refused or broken: `reason` is the audit reason (e.g.
    /// `peer_unreachable`), `detail` the words an operator acts on.
    Failed {
        reason: &'a str,
        detail: Option<&'a str>,
    },
}

/// Which side of the tunnel a service row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceRole {
    /// `[[tunnel]]`: local clients → the peer's export (direction outbound).
    Tunnel,
    /// `[[export]]`: the peer → a local target (direction inbound).
    Export,
}

impl ServiceRole {
    pub fn direction(self) -> Direction {
        match self {
            ServiceRole::Tunnel => Direction::Outbound,
            ServiceRole::Export => Direction::Inbound,
        }
    }
}

/// The state of a service's sessions at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// The last session that ended, ended well.
    Ok,
    /// The last session that ended, failed.
    Failing,
    /// No session has ended since start.
    Idle,
}

/// The last session that ended well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastSuccess {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The last session that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The audit reason (`peer_unreachable`, `closed_with_error`, …).
    pub reason: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// Session counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCounts {
    pub ok: u64,
    pub failed: u64,
}

/// One service's row in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    pub role: ServiceRole,
    pub direction: Direction,
    pub state: ServiceState,
    #[serde(default)]
    pub last_success: Option<LastSuccess>,
    #[serde(default)]
    pub last_failure: Option<LastFailure>,
    /// Sessions that ended within the last sync interval.
    pub sessions_in_interval: SessionCounts,
    /// Sessions that ended since start.
    pub sessions_total: SessionCounts,
}

/// Buckets per window: "the last interval" is exact to 1/60 of it.
const BUCKETS: u32 = 60;
/// Detail kept per failure, in bytes.
const MAX_DETAIL: usize = 512;

#[derive(Debug)]
struct Record {
    role: ServiceRole,
    totals: SessionCounts,
    last_success: Option<LastSuccess>,
    last_failure: Option<LastFailure>,
    /// (bucket index, counts) of the recent buckets, oldest first.
    recent: VecDeque<(i128, SessionCounts)>,
}

/// The session records of the declared services.
#[derive(Debug)]
pub struct Sessions {
    /// Nanoseconds per bucket (interval / 60, at least 100 ms).
    bucket_nanos: AtomicU64,
    records: Mutex<Vec<((Direction, String), Record)>>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(super::DEFAULT_SYNC_INTERVAL)
    }
}

impl Sessions {
    /// No services yet; "the last interval" is `interval` long.
    pub fn new(interval: Duration) -> Sessions {
        let sessions = Sessions {
            bucket_nanos: AtomicU64::new(1),
            records: Mutex::new(Vec::new()),
        };
        sessions.set_interval(interval);
        sessions
    }

    /// Sets how long "the last interval" is (the sync interval); call
    /// before sessions end.
    pub fn set_interval(&self, interval: Duration) {
        let bucket = (interval / BUCKETS).max(Duration::from_millis(100));
        let nanos = u64::try_from(bucket.as_nanos()).unwrap_or(u64::MAX);
        self.bucket_nanos.store(nanos, Ordering::Relaxed);
    }

    /// Tracks `service` in `role` (idempotent).
    pub fn declare(&self, role: ServiceRole, service: &str) {
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (role.direction(), service.to_owned());
        if !records.iter().any(|(k, _)| *k == key) {
            records.push((
                key,
                Record {
                    role,
                    totals: SessionCounts::default(),
                    last_success: None,
                    last_failure: None,
                    recent: VecDeque::new(),
                },
            ));
        }
    }

    /// Whether `service` is tracked in `direction`.
    pub fn is_declared(&self, direction: Direction, service: &str) -> bool {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records
            .iter()
            .any(|((d, s), _)| *d == direction && s == service)
    }

    /// The declared (direction, service) pairs, in declaration order.
    pub fn declared(&self) -> Vec<(Direction, String)> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records.iter().map(|(k, _)| k.clone()).collect()
    }

    fn index(&self, now: OffsetDateTime) -> i128 {
        let bucket = i128::from(self.bucket_nanos.load(Ordering::Relaxed).max(1));
        now.unix_timestamp_nanos().div_euclid(bucket)
    }

    /// Records the end of a session of a declared service at `now`; returns
    /// false (and records nothing) for a service that is not declared.
    pub fn ended(
        &self,
        direction: Direction,
        service: &str,
        outcome: SessionOutcome<'_>,
        now: OffsetDateTime,
    ) -> bool {
        let index = self.index(now);
        let mut records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((_, record)) = records
            .iter_mut()
            .find(|((d, s), _)| *d == direction && s == service)
        else {
            return false;
        };
        let bucket = match record.recent.back_mut() {
            Some((i, counts)) if *i == index => counts,
            _ => {
                record.recent.push_back((index, SessionCounts::default()));
                while record.recent.len() > BUCKETS as usize {
                    record.recent.pop_front();
                }
                #[expect(clippy::expect_used, reason = "a bucket was pushed just above")]
                let pushed = record.recent.back_mut().expect("just pushed");
                &mut pushed.1
            }
        };
        match outcome {
            SessionOutcome::Ok {
                bytes_in,
                bytes_out,
            } => {
                bucket.ok += 1;
                record.totals.ok += 1;
                record.last_success = Some(LastSuccess {
                    at: now,
                    bytes_in,
                    bytes_out,
                });
            }
            SessionOutcome::Failed { reason, detail } => {
                bucket.failed += 1;
                record.totals.failed += 1;
                record.last_failure = Some(LastFailure {
                    at: now,
                    reason: reason.to_owned(),
                    detail: detail.map(|d| truncate(d, MAX_DETAIL)),
                });
            }
        }
        true
    }

    /// Every declared service's row as of `now`.
    pub fn status_at(&self, now: OffsetDateTime) -> Vec<ServiceStatus> {
        let oldest = self.index(now) - i128::from(BUCKETS) + 1;
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        records
            .iter()
            .map(|((direction, service), r)| {
                let mut recent = SessionCounts::default();
                for (_, counts) in r.recent.iter().filter(|(i, _)| *i >= oldest) {
                    recent.ok += counts.ok;
                    recent.failed += counts.failed;
                }
                let state = match (&r.last_success, &r.last_failure) {
                    (None, None) => ServiceState::Idle,
                    (Some(_), None) => ServiceState::Ok,
                    (None, Some(_)) => ServiceState::Failing,
                    (Some(s), Some(f)) if s.at > f.at => ServiceState::Ok,
                    (Some(_), Some(_)) => ServiceState::Failing,
                };
                ServiceStatus {
                    service: service.clone(),
                    role: r.role,
                    direction: *direction,
                    state,
                    last_success: r.last_success.clone(),
                    last_failure: r.last_failure.clone(),
                    sessions_in_interval: recent,
                    sessions_total: r.totals,
                }
            })
            .collect()
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2025-01-01 12:00:00 UTC);

    fn secs(s: i64) -> OffsetDateTime {
        T0 + time::Duration::seconds(s)
    }

    fn sessions() -> Sessions {
        let s = Sessions::new(Duration::from_secs(120));
        s.declare(ServiceRole::Tunnel, "backup-smb");
        s.declare(ServiceRole::Export, "backup-smb");
        s
    }

    const OK: SessionOutcome<'static> = SessionOutcome::Ok {
        bytes_in: 10,
        bytes_out: 20,
    };
    const FAILED: SessionOutcome<'static> = SessionOutcome::Failed {
        reason: "peer_unreachable",
        detail: Some("connection refused"),
    };

    #[test]
    fn a_fresh_service_is_idle_and_unknown_services_are_not_tracked() {
        let s = sessions();
        let rows = s.status_at(T0);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].direction, Direction::Outbound);
        assert_eq!(rows[0].state, ServiceState::Idle);
        assert_eq!(rows[1].role, ServiceRole::Export);
        assert!(!s.ended(Direction::Outbound, "cms-smb", OK, T0));
        assert!(!s.ended(Direction::Inbound, "random", FAILED, T0));
        assert_eq!(s.status_at(T0)[0].sessions_total, SessionCounts::default());
    }

    #[test]
    fn the_state_follows_the_last_session_that_ended() {
        let s = sessions();
        s.ended(Direction::Outbound, "backup-smb", OK, secs(1));
        assert_eq!(s.status_at(secs(2))[0].state, ServiceState::Ok);
        s.ended(Direction::Outbound, "backup-smb", FAILED, secs(3));
        let row = &s.status_at(secs(4))[0];
        assert_eq!(row.state, ServiceState::Failing);
        let failure = row.last_failure.as_ref().unwrap_or_else(|| panic!("kept"));
        assert_eq!(
            (failure.at, failure.reason.as_str()),
            (secs(3), "peer_unreachable")
        );
        let success = row.last_success.as_ref().unwrap_or_else(|| panic!("kept"));
        assert_eq!((success.at, success.bytes_out), (secs(1), 20));
        s.ended(Direction::Outbound, "backup-smb", OK, secs(5));
        assert_eq!(s.status_at(secs(6))[0].state, ServiceState::Ok);
        // The other direction of the same service is its own row.
        assert_eq!(s.status_at(secs(6))[1].state, ServiceState::Idle);
    }

    #[test]
    fn the_interval_count_forgets_what_ended_before_the_last_interval() {
        let s = sessions();
        for t in [0, 1, 60] {
            s.ended(Direction::Inbound, "backup-smb", OK, secs(t));
        }
        s.ended(Direction::Inbound, "backup-smb", FAILED, secs(100));
        let row = |t| s.status_at(secs(t))[1].clone();
        assert_eq!(
            row(100).sessions_in_interval,
            SessionCounts { ok: 3, failed: 1 }
        );
        // 2 s per bucket: at 119 s everything is within the last 120 s…
        assert_eq!(
            row(119).sessions_in_interval,
            SessionCounts { ok: 3, failed: 1 }
        );
        // …at 121 s the bucket of 0–1 s has left the window…
        assert_eq!(
            row(121).sessions_in_interval,
            SessionCounts { ok: 1, failed: 1 }
        );
        // …and at 181 s the one of 60 s.
        assert_eq!(
            row(179).sessions_in_interval,
            SessionCounts { ok: 1, failed: 1 }
        );
        assert_eq!(
            row(181).sessions_in_interval,
            SessionCounts { ok: 0, failed: 1 }
        );
        assert_eq!(row(1000).sessions_in_interval, SessionCounts::default());
        assert_eq!(row(1000).sessions_total, SessionCounts { ok: 3, failed: 1 });
    }

    #[test]
    fn many_sessions_keep_bounded_memory_and_long_details_are_cut() {
        let s = sessions();
        for t in 0..10_000 {
            s.ended(Direction::Outbound, "backup-smb", OK, secs(t));
        }
        let long = "é".repeat(1000);
        let outcome = SessionOutcome::Failed {
            reason: "closed_with_error",
            detail: Some(&long),
        };
        s.ended(Direction::Outbound, "backup-smb", outcome, secs(10_000));
        let records = s.records.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(records[0].1.recent.len() <= BUCKETS as usize);
        drop(records);
        let row = &s.status_at(secs(10_000))[0];
        assert_eq!(row.sessions_total.ok, 10_000);
        let detail = row.last_failure.as_ref().and_then(|f| f.detail.clone());
        assert!(detail.is_some_and(|d| d.len() <= MAX_DETAIL + '…'.len_utf8()));
    }
}
