//! The gateway's Prometheus metrics: one [`Metrics`] per gateway, shared as
//! `Arc<Metrics>`, with typed recording methods so no caller spells a label.
//!
//! All names start with `pairgate_`. What each family tells an operator:
//!
//! | family | meaning | alert on |
//! | --- | --- | --- |
//! | `connections_total{direction,service,decision}` | every connection decision | a sudden drop of `allow` for a service |
//! | `denials_total{direction,reason}` | every refusal, by audit reason | any `not_paired`, `unknown_ca`, `revoked`, `bad_certificate` (someone who is not the pair is knocking); a rising `too_many_connections` |
//! | `bytes_total{direction,service,flow}` | bytes relayed, `flow="in"` towards the connection's initiator side, `"out"` away from it, counted at close | failback throughput |
//! | `export_failures_total{direction,service}` | connections whose export target did not answer: `inbound` = our export, `outbound` = the peer's, as its `pg2` status frame said | any: the service behind the tunnel is down |
//! | `intercepted_connections_total{direction,service,decision}` | decisions about intercepted connections (those with an original destination): `outbound` at the intercepting site, `inbound` at the exporting one; a subset of `connections_total` | `decision="deny"` rising: look for `destination_not_allowed` in the audit log (an nftables set wider than `destinations`, or a loop) |
//! | `handshake_failures_total{direction,reason}` | TLS handshakes that failed (a subset of denials) | outbound `peer_unreachable`: the WAN or the peer is down |
//! | `handshake_seconds{direction}` | TLS handshake latency | p99 above a few seconds |
//! | `active_connections{direction}` | connections open now | near `limits.max_connections` |
//! | `certificate_expiry_timestamp_seconds{kind,sha256}` | `not_after` (Unix seconds) of our certificate (`own`), each trusted CA (`ca`), and each peer certificate seen (`peer`) | `min(...) - time() < 30 * 86400`: rotate within 30 days |
//! | `spool_files{direction}`, `spool_bytes{direction}` | files (and bytes) waiting in the encrypted spool, `outbound` = to the peer, `inbound` = from the peer, not yet in the inbox | a cap being approached |
//! | `spool_oldest_age_seconds{direction}` | age of the oldest waiting file: the replication lag this gateway adds | above the recovery point objective: 300 s (Skype for Business 2015/2019, CMS) or 1800 s (Lync 2013); warn well before, e.g. at half |
//! | `spool_held_files{condition}` | spool files held back now, by condition: `waiting_for_key` (sealed under a key not configured), `too_large` / `bad_name` (the peer can never take them), `peer_refused` (refused for now), `outbox_refused` (unreadable, symlink, …), `spool_full`, `inbox_failing` (cannot be placed in the inbox) | any `waiting_for_key`, `too_large` or `bad_name` above 0 (needs an operator); `inbox_failing` or `spool_full` above 0 for minutes |
//! | `spool_link_stalls_total` | spool transfers torn down because the link made no progress for `stall_secs` | a rising rate: a firewall or WAN path that black-holes flows |
//! | `reloads_total{what,result}` | reloads of certificates/CRL/policy/config file | any `result="error"`: the gateway still runs the previous configuration |
//! | `sessions_total{direction,service,result}` | sessions of each configured tunnel (`outbound`) and export (`inbound`) that ended `ok` or `failed` | any increase of `result="failed"` for `backup-smb`: the Backup Service's SMB path is broken, whatever the spool says |
//! | `session_last_success_timestamp_seconds{direction,service}`, `session_last_failure_timestamp_seconds{…}` | when a session of the service last ended well / failed (0: never since start) | `time() - last_success > 2 * sync interval` while sessions are expected |
//! | `session_last_success_bytes{direction,service}` | bytes (both ways) of that last good session | |
//! | `peer_clock_skew_seconds` | the peer gateway's clock minus ours, from the control-channel heartbeat (0 until measured) | `abs(...) > 30`: certificates will look not yet valid or expired to one side; fix NTP |
//! | `audit_events_total` | records written and synced to the audit log | flat while connections rise: the audit writer is stuck or the disk is full |
//! | `audit_failing` | 1 while the audit log cannot be written or keep up (its queue is full), else 0; with `audit.on_failure = "refuse"` new connections are refused meanwhile (`denials_total{reason="audit_failing"}`) | `== 1` for a minute |
//! | `crl_next_update_seconds{issuer}` | `nextUpdate` (Unix seconds) of each CRL in force | `... - time() < 7 * 86400`: refresh the CRL; `< 0`: overdue |
//! | `up`, `build_info{version}` | always 1 | `absent(pairgate_up)` |
//!
//! Every series whose labels can be known at start exists from start, at 0
//! ([`Metrics::new`] and [`Metrics::declare_services`]): each denial reason
//! per direction (from `DenyReason::iter()`, so a new reason is included
//! without a list to keep in step), each reload kind and outcome, each
//! configured service's connections, bytes and sessions. An `increase()`
//! alert then sees the first event, not the birth of a series; a unit test
//! fails for a family that is empty on a fresh registry.
//!
//! The exposition is OpenMetrics text ([`CONTENT_TYPE`]), which Prometheus
//! scrapes natively; counters carry the `_total` suffix there.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use super::labels::{
    decision_label, direction_label, CertKind, CertLabels, ConnLabels, DenyLabels, DirLabels,
    FlowLabels, ReloadLabels, Reloaded, ServiceLabels, SessionLabels, SpoolConditionLabels,
    SpoolEventLabels, VersionLabels,
};
use super::sessions::Sessions;
use crate::audit::Direction;
use crate::names::is_valid_service_name;
use crate::policy::{Decision, DenyReason};

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Handshake latency buckets, in seconds: 0.5 ms … 10 s.
const HANDSHAKE_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many distinct service names get their own label value; later ones
/// (and over-long ones) are counted as `other`, so a peer offering random
/// ALPN names cannot grow the registry without bound.
const MAX_SERVICES: usize = 64;
/// How many peer certificates keep an expiry series; the oldest seen goes first.
const MAX_PEER_CERTS: usize = 16;

/// One certificate whose expiry is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertEntry {
    /// The first DNS SAN (the pool a gateway fronts); `None` for a CA.
    pub pool: Option<String>,
    /// Lower-case hex SHA-256 of the DER.
    pub sha256: String,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

/// Connection totals for `/status`, read without walking the registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    pub active: u64,
    pub allowed_total: u64,
    pub denied_total: u64,
}

/// The registry and its families. Create once with [`Metrics::new`] and share.
pub struct Metrics {
    registry: Registry,
    connections: Family<ConnLabels, Counter>,
    denials: Family<DenyLabels, Counter>,
    bytes: Family<FlowLabels, Counter>,
    handshake_failures: Family<DenyLabels, Counter>,
    export_failures: Family<ServiceLabels, Counter>,
    intercepted: Family<ConnLabels, Counter>,
    handshake_seconds: Family<DirLabels, Histogram, fn() -> Histogram>,
    active: Family<DirLabels, Gauge>,
    cert_expiry: Family<CertLabels, Gauge>,
    spool_files: Family<DirLabels, Gauge>,
    spool_bytes: Family<DirLabels, Gauge>,
    spool_oldest: Family<DirLabels, Gauge<f64, AtomicU64>>,
    reloads: Family<ReloadLabels, Counter>,
    sessions_total: Family<SessionLabels, Counter>,
    session_last_success: Family<ServiceLabels, Gauge>,
    session_last_success_bytes: Family<ServiceLabels, Gauge>,
    session_last_failure: Family<ServiceLabels, Gauge>,
    /// Per-service session records for `/status`.
    sessions: Sessions,
    spool_events: Family<SpoolEventLabels, Counter>,
    /// Last totals seen per spool event, to turn totals into increments.
    spool_seen: Mutex<HashMap<&'static str, u64>>,
    spool_held: Family<SpoolConditionLabels, Gauge>,
    spool_stalls: Counter,
    audit_events: Counter,
    audit_failing: Gauge,
    /// What `/status` shows of the audit log (see [`Metrics::audit_state`]).
    audit_state: Mutex<Option<super::status::AuditStatus>>,
    /// The CRLs in force, for `/status` (see [`Metrics::publish_crls`]).
    crl_state: Mutex<Option<super::status::CrlStatus>>,
    peer_link_up: Gauge,
    peer_clock_skew: Gauge<f64, AtomicU64>,
    /// nextUpdate (Unix seconds) of each CRL in force, by issuer.
    crl_next_update: Family<Vec<(String, String)>, Gauge>,
    services: Mutex<HashSet<String>>,
    /// sha256 series currently published per certificate kind, oldest first.
    cert_series: Mutex<HashMap<CertKind, Vec<CertEntry>>>,
    /// The leaf (DER) of each published `peer` certificate, so a CRL that
    /// revokes it later removes its row ([`Metrics::drop_peer_certs`]).
    peer_leaves: Mutex<HashMap<String, Vec<u8>>>,
    allowed_total: AtomicU64,
    denied_total: AtomicU64,
    active_now: AtomicI64,
    /// See [`Metrics::on_scrape`].
    refresh: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The outcome of the last config reload, for `/status`.
    last_config_reload: Mutex<Option<super::status::ConfigReloadStatus>>,
}

impl Metrics {
    /// Records the outcome of a config reload (`/status` shows the last).
    pub fn config_reloaded(&self, status: super::status::ConfigReloadStatus) {
        if let Ok(mut last) = self.last_config_reload.lock() {
            *last = Some(status);
        }
    }

    /// The outcome of the last config reload, if there was one.
    pub fn last_config_reload(&self) -> Option<super::status::ConfigReloadStatus> {
        self.last_config_reload.lock().ok().and_then(|l| l.clone())
    }

    /// The label value for a service: itself, or `unknown` (not yet known,
    /// e.g. a handshake that failed before ALPN) or `other` (past the cap).
    fn service_label(&self, service: Option<&str>) -> String {
        let Some(service) = service else {
            return "unknown".to_owned();
        };
        // Services come from ALPN, the config and the policy, all checked
        // with the same rule; anything else is not a label we keep.
        if !is_valid_service_name(service) {
            return "other".to_owned();
        }
        let mut known = self.services.lock().unwrap_or_else(PoisonError::into_inner);
        if known.contains(service) {
            return service.to_owned();
        }
        if known.len() < MAX_SERVICES {
            known.insert(service.to_owned());
            return service.to_owned();
        }
        "other".to_owned()
    }

    /// Records one connection decision. A denial also counts in
    /// `denials_total`, and a denial for a TLS-level reason (see
    /// [`is_handshake_failure`]) also in `handshake_failures_total`, so call
    /// this once per decision and nothing else.
    pub fn connection(&self, direction: Direction, service: Option<&str>, decision: Decision) {
        let direction = direction_label(direction);
        self.connections
            .get_or_create(&ConnLabels {
                direction,
                service: self.service_label(service),
                decision: decision_label(decision),
            })
            .inc();
        match decision {
            Decision::Allow => {
                self.allowed_total.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Deny(reason) => {
                self.denied_total.fetch_add(1, Ordering::Relaxed);
                let labels = DenyLabels {
                    direction,
                    reason: reason.as_str(),
                };
                self.denials.get_or_create(&labels).inc();
                if is_handshake_failure(reason) {
                    self.handshake_failures.get_or_create(&labels).inc();
                }
            }
        }
    }

    /// Records the bytes of a closed connection: `bytes_in` as `flow="in"`,
    /// `bytes_out` as `flow="out"` (the same meaning as in the audit `close`).
    pub fn closed(
        &self,
        direction: Direction,
        service: Option<&str>,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let direction = direction_label(direction);
        let service = self.service_label(service);
        for (flow, n) in [("in", bytes_in), ("out", bytes_out)] {
            self.bytes
                .get_or_create(&FlowLabels {
                    direction,
                    service: service.clone(),
                    flow,
                })
                .inc_by(n);
        }
    }

    /// Counts a connection whose export target did not answer (ours for
    /// `inbound`, the peer's for `outbound`).
    pub fn export_failure(&self, direction: Direction, service: Option<&str>) {
        self.export_failures
            .get_or_create(&ServiceLabels {
                direction: direction_label(direction),
                service: self.service_label(service),
            })
            .inc();
    }

    /// Counts a decision about an intercepted connection (one with an
    /// original destination).
    pub fn intercepted(&self, direction: Direction, service: Option<&str>, decision: Decision) {
        self.intercepted
            .get_or_create(&ConnLabels {
                direction: direction_label(direction),
                service: self.service_label(service),
                decision: decision_label(decision),
            })
            .inc();
    }

    /// Records the duration of a completed TLS handshake.
    pub fn handshake(&self, direction: Direction, elapsed: Duration) {
        self.handshake_seconds
            .get_or_create(&DirLabels {
                direction: direction_label(direction),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn active(self: &Arc<Self>, direction: Direction) -> ActiveGuard {
        self.active
            .get_or_create(&DirLabels {
                direction: direction_label(direction),
            })
            .inc();
        self.active_now.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            metrics: Arc::clone(self),
            direction,
        }
    }

    /// Totals for `/status`.
    pub fn connection_counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            active: u64::try_from(self.active_now.load(Ordering::Relaxed)).unwrap_or(0),
            allowed_total: self.allowed_total.load(Ordering::Relaxed),
            denied_total: self.denied_total.load(Ordering::Relaxed),
        }
    }

    /// Sets what brings the sampled gauges (spool depth, peer link, …) up
    /// to date before a scrape: sampled on demand instead of on a timer,
    /// an idle gateway that nobody scrapes does no work for them. The first
    /// call wins.
    pub fn on_scrape(&self, refresh: impl Fn() + Send + Sync + 'static) {
        let _ = self.refresh.set(Box::new(refresh));
    }

    /// Runs the [`Metrics::on_scrape`] refresh, if any. May read the disk:
    /// call off the reactor.
    pub fn refresh(&self) {
        if let Some(refresh) = self.refresh.get() {
            refresh();
        }
    }

    /// The whole registry as OpenMetrics text (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; keep the scrape well-formed anyway.
            tracing::error!(error = %e, "encoding metrics failed");
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }
}

/// Whether a denial reason means the TLS handshake itself failed.
pub fn is_handshake_failure(reason: DenyReason) -> bool {
    matches!(
        reason,
        DenyReason::NoClientCert
            | DenyReason::BadCertificate
            | DenyReason::UnknownCa
            | DenyReason::Expired
            | DenyReason::NotYetValid
            | DenyReason::Revoked
            | DenyReason::HandshakeTimeout
            | DenyReason::HandshakeFailed
            | DenyReason::PeerUnreachable
            | DenyReason::ProfileViolation
            | DenyReason::CrlOverdue
    )
}

/// Decrements `active_connections` when dropped.
#[must_use = "the connection counts as active only while the guard lives"]
pub struct ActiveGuard {
    metrics: Arc<Metrics>,
    direction: Direction,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.metrics
            .active
            .get_or_create(&DirLabels {
                direction: direction_label(self.direction),
            })
            .dec();
        self.metrics.active_now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[path = "metrics_gauges.rs"]
mod gauges;
#[path = "metrics_known.rs"]
mod known;
#[path = "metrics_register.rs"]
mod register;
#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
