//! Building [`Metrics`]: every family registered under the `pairgate_`
//! prefix with its help text, `up` and `build_info` set, the series known
//! without config started at 0 (`metrics_known.rs`).

use super::*;

fn handshake_histogram() -> Histogram {
    Histogram::new(HANDSHAKE_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered, `up` = 1, `build_info` set,
    /// and the per-direction gauges present at 0.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("pairgate");
        let m = Metrics {
            registry: Registry::default(),
            connections: Family::default(),
            denials: Family::default(),
            bytes: Family::default(),
            handshake_failures: Family::default(),
            export_failures: Family::default(),
            intercepted: Family::default(),
            handshake_seconds: Family::new_with_constructor(handshake_histogram as fn() -> _),
            active: Family::default(),
            cert_expiry: Family::default(),
            spool_files: Family::default(),
            spool_bytes: Family::default(),
            spool_oldest: Family::default(),
            reloads: Family::default(),
            sessions_total: Family::default(),
            session_last_success: Family::default(),
            session_last_success_bytes: Family::default(),
            session_last_failure: Family::default(),
            sessions: Sessions::default(),
            spool_events: Family::default(),
            spool_seen: Mutex::new(HashMap::new()),
            spool_held: Family::default(),
            spool_stalls: Counter::default(),
            audit_events: Counter::default(),
            audit_failing: Gauge::default(),
            audit_state: Mutex::new(None),
            crl_state: Mutex::new(None),
            peer_link_up: Gauge::default(),
            peer_clock_skew: Gauge::default(),
            crl_next_update: Family::default(),
            services: Mutex::new(HashSet::new()),
            cert_series: Mutex::new(HashMap::new()),
            last_config_reload: Mutex::new(None),
            peer_leaves: Mutex::new(HashMap::new()),
            allowed_total: AtomicU64::new(0),
            denied_total: AtomicU64::new(0),
            active_now: AtomicI64::new(0),
            refresh: std::sync::OnceLock::new(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Connection decisions by direction, service and decision",
            m.connections.clone(),
        );
        r.register(
            "denials",
            "Refused connections by direction and audit reason",
            m.denials.clone(),
        );
        r.register(
            "bytes",
            "Bytes relayed by direction, service and flow (in/out), counted at close",
            m.bytes.clone(),
        );
        r.register(
            "handshake_failures",
            "Failed TLS handshakes by direction and reason",
            m.handshake_failures.clone(),
        );
        r.register(
            "export_failures",
            "Connections whose export target did not answer, by direction and service",
            m.export_failures.clone(),
        );
        r.register(
            "intercepted_connections",
            "Decisions about intercepted connections (with an original destination), by direction, service and decision",
            m.intercepted.clone(),
        );
        r.register(
            "handshake_seconds",
            "TLS handshake duration in seconds",
            m.handshake_seconds.clone(),
        );
        r.register(
            "active_connections",
            "Connections open now",
            m.active.clone(),
        );
        r.register(
            "certificate_expiry_timestamp_seconds",
            "Certificate not_after as a Unix timestamp, by kind (own, peer, ca) and SHA-256",
            m.cert_expiry.clone(),
        );
        r.register(
            "spool_files",
            "Files waiting in the encrypted spool, by direction",
            m.spool_files.clone(),
        );
        r.register(
            "spool_bytes",
            "Bytes waiting in the encrypted spool, by direction",
            m.spool_bytes.clone(),
        );
        r.register(
            "spool_oldest_age_seconds",
            "Age of the oldest waiting spool file in seconds (0 when none waits)",
            m.spool_oldest.clone(),
        );
        r.register(
            "reloads",
            "Reloads of certificates, CRL and policy, by result",
            m.reloads.clone(),
        );
        r.register(
            "sessions",
            "Sessions of each configured tunnel (outbound) and export (inbound) that ended, by result (ok, failed)",
            m.sessions_total.clone(),
        );
        r.register(
            "session_last_success_timestamp_seconds",
            "When a session of the service last ended well, Unix seconds (0: not since start)",
            m.session_last_success.clone(),
        );
        r.register(
            "session_last_success_bytes",
            "Bytes (both ways) of the service's last session that ended well (0: none since start)",
            m.session_last_success_bytes.clone(),
        );
        r.register(
            "session_last_failure_timestamp_seconds",
            "When a session of the service last failed, Unix seconds (0: not since start)",
            m.session_last_failure.clone(),
        );
        r.register(
            "spool_files_events",
            "Spool files by event: ingested, sent, received, delivered, quarantined, refused (cap)",
            m.spool_events.clone(),
        );
        r.register(
            "spool_held_files",
            "Spool files held back now, by condition (waiting for a key, refused by the peer, not deliverable, ...)",
            m.spool_held.clone(),
        );
        r.register(
            "spool_link_stalls",
            "Spool transfers torn down because the link made no progress for stall_secs",
            m.spool_stalls.clone(),
        );
        r.register(
            "peer_link_up",
            "1 when the peer gateway answered the last attempt, 0 when it did not, -1 before any attempt",
            m.peer_link_up.clone(),
        );
        r.register(
            "peer_clock_skew_seconds",
            "The peer gateway's clock minus ours, measured on the control channel heartbeat (0 until measured)",
            m.peer_clock_skew.clone(),
        );
        r.register(
            "crl_next_update_seconds",
            "nextUpdate of each CRL in force as a Unix timestamp, by issuer (past: overdue)",
            m.crl_next_update.clone(),
        );
        r.register(
            "audit_events",
            "Records written and synced to the audit log",
            m.audit_events.clone(),
        );
        r.register(
            "audit_failing",
            "1 while the audit log cannot be written or keep up, else 0",
            m.audit_failing.clone(),
        );
        let up: Gauge = Gauge::default();
        up.set(1);
        r.register("up", "1 while the gateway runs", up);
        let build: Family<VersionLabels, Gauge> = Family::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        r.register(
            "build_info",
            "The running pairgate version (value always 1)",
            build,
        );
        m.peer_link_up.set(-1);
        m.start_known_series();
        Metrics { registry, ..m }
    }
}
