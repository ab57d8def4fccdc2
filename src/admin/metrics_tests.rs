//! Unit tests of [`super::Metrics`], read back with a Prometheus text parser.

use super::*;
use crate::admin::sessions::{ServiceRole, SessionOutcome};
use crate::admin::testing::value;
use strum::IntoEnumIterator;

/// Parses an exposition with a Prometheus text parser; returns
/// (metric, sorted labels, value) for every scalar sample.
#[test]
fn fresh_registry_shows_up_build_info_and_zeroed_directions() {
    let m = Metrics::new();
    let text = m.encode();
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(value(&text, "pairgate_up", &[]), Some(1.0));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        value(&text, "pairgate_build_info", &[("version", version)]),
        Some(1.0)
    );
    for d in ["outbound", "inbound"] {
        assert_eq!(
            value(&text, "pairgate_spool_files", &[("direction", d)]),
            Some(0.0)
        );
        assert_eq!(
            value(&text, "pairgate_active_connections", &[("direction", d)]),
            Some(0.0)
        );
    }
    assert_eq!(value(&text, "pairgate_audit_events_total", &[]), Some(0.0));
}

#[test]
fn a_denial_counts_once_in_each_family_it_belongs_to() {
    let m = Metrics::new();
    m.connection(
        Direction::Inbound,
        Some("cms-smb"),
        Decision::Deny(DenyReason::NotPaired),
    );
    m.connection(
        Direction::Inbound,
        None,
        Decision::Deny(DenyReason::UnknownCa),
    );
    m.connection(Direction::Outbound, Some("backup-smb"), Decision::Allow);
    let text = m.encode();
    let deny = [
        ("direction", "inbound"),
        ("service", "cms-smb"),
        ("decision", "deny"),
    ];
    assert_eq!(value(&text, "pairgate_connections_total", &deny), Some(1.0));
    let unknown = [
        ("direction", "inbound"),
        ("service", "unknown"),
        ("decision", "deny"),
    ];
    assert_eq!(
        value(&text, "pairgate_connections_total", &unknown),
        Some(1.0)
    );
    let not_paired = [("direction", "inbound"), ("reason", "not_paired")];
    assert_eq!(
        value(&text, "pairgate_denials_total", &not_paired),
        Some(1.0)
    );
    // not_paired is a policy decision after a good handshake, unknown_ca is TLS.
    assert_eq!(
        value(&text, "pairgate_handshake_failures_total", &not_paired),
        None
    );
    let unknown_ca = [("direction", "inbound"), ("reason", "unknown_ca")];
    assert_eq!(
        value(&text, "pairgate_handshake_failures_total", &unknown_ca),
        Some(1.0)
    );
    let counts = m.connection_counts();
    assert_eq!((counts.allowed_total, counts.denied_total), (1, 2));
}

#[test]
fn active_guard_counts_while_alive() {
    let m = Arc::new(Metrics::new());
    let a = m.active(Direction::Outbound);
    let b = m.active(Direction::Outbound);
    let labels = [("direction", "outbound")];
    assert_eq!(
        value(&m.encode(), "pairgate_active_connections", &labels),
        Some(2.0)
    );
    assert_eq!(m.connection_counts().active, 2);
    drop(a);
    drop(b);
    assert_eq!(
        value(&m.encode(), "pairgate_active_connections", &labels),
        Some(0.0)
    );
    assert_eq!(m.connection_counts().active, 0);
}

#[test]
fn services_past_the_cap_or_too_long_become_other() {
    let m = Metrics::new();
    for i in 0..MAX_SERVICES + 5 {
        m.connection(Direction::Inbound, Some(&format!("s{i}")), Decision::Allow);
    }
    m.connection(Direction::Inbound, Some(&"x".repeat(65)), Decision::Allow);
    let text = m.encode();
    let other = [
        ("direction", "inbound"),
        ("service", "other"),
        ("decision", "allow"),
    ];
    assert_eq!(
        value(&text, "pairgate_connections_total", &other),
        Some(6.0)
    );
    let first = [
        ("direction", "inbound"),
        ("service", "s0"),
        ("decision", "allow"),
    ];
    assert_eq!(
        value(&text, "pairgate_connections_total", &first),
        Some(1.0)
    );
}

#[test]
fn replace_certs_drops_rotated_series_and_peers_are_capped() {
    let m = Metrics::new();
    let own = |sha: &str, t| CertEntry {
        pool: Some("pool01.site1.example".into()),
        sha256: sha.into(),
        not_after: t,
    };
    m.replace_certs(CertKind::Own, &[own("aa", 100)]);
    m.replace_certs(CertKind::Own, &[own("bb", 200)]);
    let text = m.encode();
    let metric = "pairgate_certificate_expiry_timestamp_seconds";
    assert_eq!(
        value(&text, metric, &[("kind", "own"), ("sha256", "aa")]),
        None
    );
    assert_eq!(
        value(&text, metric, &[("kind", "own"), ("sha256", "bb")]),
        Some(200.0)
    );
    for i in 0..=MAX_PEER_CERTS {
        m.cert_expiry(
            CertKind::Peer,
            Some("pool02"),
            &format!("p{i}"),
            1000 + i as i64,
        );
    }
    let text = m.encode();
    assert_eq!(
        value(&text, metric, &[("kind", "peer"), ("sha256", "p0")]),
        None
    );
    assert_eq!(
        value(&text, metric, &[("kind", "peer"), ("sha256", "p16")]),
        Some(1016.0)
    );
    let peers = m
        .certificates()
        .iter()
        .filter(|(k, _)| *k == CertKind::Peer)
        .count();
    assert_eq!(peers, MAX_PEER_CERTS);
    assert_eq!(m.certificates()[0], (CertKind::Own, own("bb", 200)));
}

#[test]
fn spool_bytes_reloads_and_handshakes_are_exposed() {
    let m = Metrics::new();
    m.spool(
        Direction::Outbound,
        2,
        2048,
        Some(Duration::from_millis(1500)),
    );
    m.spool(Direction::Inbound, 0, 0, None);
    m.closed(Direction::Outbound, Some("backup-smb"), 10, 20);
    m.reload(Reloaded::All, false);
    m.reload(Reloaded::Certificates, true);
    m.handshake(Direction::Outbound, Duration::from_millis(3));
    m.audit_total(1);
    let text = m.encode();
    let out = [("direction", "outbound")];
    assert_eq!(value(&text, "pairgate_spool_files", &out), Some(2.0));
    assert_eq!(value(&text, "pairgate_spool_bytes", &out), Some(2048.0));
    assert_eq!(
        value(&text, "pairgate_spool_oldest_age_seconds", &out),
        Some(1.5)
    );
    let inbound = [("direction", "inbound")];
    assert_eq!(
        value(&text, "pairgate_spool_oldest_age_seconds", &inbound),
        Some(0.0)
    );
    let flow = |f| {
        [
            ("direction", "outbound"),
            ("service", "backup-smb"),
            ("flow", f),
        ]
    };
    assert_eq!(
        value(&text, "pairgate_bytes_total", &flow("in")),
        Some(10.0)
    );
    assert_eq!(
        value(&text, "pairgate_bytes_total", &flow("out")),
        Some(20.0)
    );
    let failed = [("what", "all"), ("result", "error")];
    assert_eq!(value(&text, "pairgate_reloads_total", &failed), Some(1.0));
    let ok = [("what", "certificates"), ("result", "ok")];
    assert_eq!(value(&text, "pairgate_reloads_total", &ok), Some(1.0));
    assert_eq!(
        value(&text, "pairgate_handshake_seconds_count", &out),
        Some(1.0)
    );
    assert_eq!(value(&text, "pairgate_audit_events_total", &[]), Some(1.0));
}

/// The mechanism behind "every series known at start exists at 0": a family
/// registered without creating its known series fails here.
#[test]
fn no_family_is_empty_on_a_fresh_registry_with_declared_services() {
    let m = Metrics::new();
    m.declare_services(
        Duration::from_secs(120),
        &[
            (ServiceRole::Tunnel, "backup-smb".to_owned()),
            (ServiceRole::Export, "cms-smb".to_owned()),
        ],
    );
    let text = m.encode();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(families.len() >= 15, "{text}");
    for family in families {
        let has_sample = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .any(|l| l.starts_with(family));
        assert!(
            has_sample,
            "family {family} is empty on a fresh registry:\n{text}"
        );
    }
    for direction in ["outbound", "inbound"] {
        for reason in DenyReason::iter() {
            let labels = [("direction", direction), ("reason", reason.as_str())];
            assert_eq!(value(&text, "pairgate_denials_total", &labels), Some(0.0));
            let handshake = value(&text, "pairgate_handshake_failures_total", &labels);
            assert_eq!(handshake.is_some(), is_handshake_failure(reason));
        }
    }
    for what in Reloaded::iter() {
        let labels = [("what", what.as_str()), ("result", "error")];
        assert_eq!(value(&text, "pairgate_reloads_total", &labels), Some(0.0));
    }
    let tunnel = [("direction", "outbound"), ("service", "backup-smb")];
    assert_eq!(
        value(
            &text,
            "pairgate_session_last_success_timestamp_seconds",
            &tunnel
        ),
        Some(0.0)
    );
    let export = [
        ("direction", "inbound"),
        ("service", "cms-smb"),
        ("result", "failed"),
    ];
    assert_eq!(value(&text, "pairgate_sessions_total", &export), Some(0.0));
    assert_eq!(value(&text, "pairgate_peer_link_up", &[]), Some(-1.0));
}

#[test]
fn sessions_of_declared_services_count_and_others_are_ignored() {
    let m = Metrics::new();
    m.declare_services(
        Duration::from_secs(120),
        &[(ServiceRole::Tunnel, "backup-smb".to_owned())],
    );
    let failed = SessionOutcome::Failed {
        reason: "peer_unreachable",
        detail: None,
    };
    m.session_ended(Direction::Outbound, Some("backup-smb"), failed);
    let ok = SessionOutcome::Ok {
        bytes_in: 100,
        bytes_out: 23,
    };
    m.session_ended(Direction::Outbound, Some("backup-smb"), ok);
    m.session_ended(Direction::Inbound, Some("backup-smb"), failed);
    m.session_ended(Direction::Outbound, Some("made-up"), failed);
    m.session_ended(Direction::Outbound, None, failed);
    let text = m.encode();
    let labels = [
        ("direction", "outbound"),
        ("service", "backup-smb"),
        ("result", "failed"),
    ];
    assert_eq!(value(&text, "pairgate_sessions_total", &labels), Some(1.0));
    let service = [("direction", "outbound"), ("service", "backup-smb")];
    assert_eq!(
        value(&text, "pairgate_session_last_success_bytes", &service),
        Some(123.0)
    );
    assert!(!text.contains("made-up"), "{text}");
    let rows = m.services(time::OffsetDateTime::now_utc());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].sessions_total.failed, 1);
}

/// A spool event reported with a total of 0 has its series at once.
#[test]
fn spool_events_exist_from_their_first_report() {
    let m = Metrics::new();
    m.spool_totals(&[("quarantined", 0), ("sent", 2)]);
    let text = m.encode();
    let q = [("event", "quarantined")];
    assert_eq!(
        value(&text, "pairgate_spool_files_events_total", &q),
        Some(0.0)
    );
    let sent = [("event", "sent")];
    assert_eq!(
        value(&text, "pairgate_spool_files_events_total", &sent),
        Some(2.0)
    );
}

#[test]
fn spool_conditions_and_stalls_are_exposed() {
    let m = Metrics::new();
    m.spool_conditions(&[("waiting_for_key", 3), ("too_large", 0)], 2);
    m.spool_conditions(&[("waiting_for_key", 1), ("too_large", 0)], 2);
    let text = m.encode();
    let held = |c| value(&text, "pairgate_spool_held_files", &[("condition", c)]);
    assert_eq!(held("waiting_for_key"), Some(1.0));
    assert_eq!(held("too_large"), Some(0.0));
    assert_eq!(held("inbox_failing"), Some(0.0));
    assert_eq!(
        value(&text, "pairgate_spool_link_stalls_total", &[]),
        Some(2.0)
    );
}

#[test]
fn export_failures_count_by_direction_and_service() {
    let m = Metrics::new();
    m.export_failure(Direction::Outbound, Some("backup-smb"));
    m.export_failure(Direction::Outbound, Some("backup-smb"));
    m.export_failure(Direction::Inbound, Some("cms-smb"));
    let text = m.encode();
    let out = [("direction", "outbound"), ("service", "backup-smb")];
    let inb = [("direction", "inbound"), ("service", "cms-smb")];
    assert_eq!(
        value(&text, "pairgate_export_failures_total", &out),
        Some(2.0)
    );
    assert_eq!(
        value(&text, "pairgate_export_failures_total", &inb),
        Some(1.0)
    );
}
