//! Unit tests of `status.rs`.

use super::*;
use pairgate::admin::{
    CertificateStatus, ConnectionCounts, DirectionStatus, LastFailure, LastSuccess, PeerLink,
    SessionCounts, SpoolDepth,
};
use std::time::Duration;
use time::macros::datetime;

fn sample() -> Status {
    let now = datetime!(2025-01-01 01:00:00 UTC);
    let waiting = SpoolDepth {
        files: 3,
        bytes: 1234,
        oldest_since: Some(datetime!(2025-01-01 00:50:00 UTC)),
    };
    let interval = Duration::from_secs(120);
    Status {
        pool: "pool01.site1.example".into(),
        peer_pool: "pool02.site2.example".into(),
        version: "0.1.0".into(),
        started: datetime!(2025-01-01 00:00:00 UTC),
        uptime_secs: 3600,
        peer_link: PeerLink {
            state: LinkState::Up,
            since: Some(datetime!(2025-01-01 00:30:00 UTC)),
            last_error: Some("handshake timed out".into()),
            clock_skew_secs: Some(-7200.4),
            clock_skew_measured: Some(datetime!(2025-01-01 00:59:30 UTC)),
        },
        directions: vec![
            DirectionStatus::new(Direction::Outbound, true, &waiting, interval, now),
            DirectionStatus::new(
                Direction::Inbound,
                true,
                &SpoolDepth::default(),
                interval,
                now,
            ),
        ],
        sync_interval_secs: 120,
        certificates: vec![CertificateStatus {
            kind: CertKind::Own,
            pool: Some("pool01.site1.example".into()),
            sha256: "0123456789abcdef0123".into(),
            not_after: datetime!(2025-01-20 00:00:00 UTC),
            days_left: 18,
        }],
        connections: ConnectionCounts {
            active: 1,
            allowed_total: 7,
            denied_total: 2,
        },
        services: vec![
            ServiceStatus {
                service: "backup-smb".into(),
                role: ServiceRole::Tunnel,
                direction: Direction::Outbound,
                state: ServiceState::Failing,
                last_success: Some(LastSuccess {
                    at: datetime!(2025-01-01 00:40:00 UTC),
                    bytes_in: 1_500_000,
                    bytes_out: 2000,
                }),
                last_failure: Some(LastFailure {
                    at: datetime!(2025-01-01 00:59:00 UTC),
                    reason: "peer_unreachable".into(),
                    detail: Some("peer gateway 127.0.0.1:7444: connection refused".into()),
                }),
                sessions_in_interval: SessionCounts { ok: 0, failed: 2 },
                sessions_total: SessionCounts { ok: 9, failed: 2 },
            },
            ServiceStatus {
                service: "cms-smb".into(),
                role: ServiceRole::Export,
                direction: Direction::Inbound,
                state: ServiceState::Idle,
                last_success: None,
                last_failure: None,
                sessions_in_interval: SessionCounts::default(),
                sessions_total: SessionCounts::default(),
            },
        ],
        spool_conditions: vec![pairgate::admin::SpoolConditionStatus {
            condition: "waiting_for_key".into(),
            name: None,
            id: None,
            size: None,
            key_id: Some("0011223344556677".into()),
            files: 3,
            detail: "add that key file to spool.old_keys".into(),
            since: datetime!(2025-01-01 00:40:00 UTC),
        }],
        last_config_reload: None,
        audit: Some(pairgate::admin::AuditStatus {
            failing: true,
            detail: Some("the audit log cannot be written: No space left on device".into()),
            on_failure: "refuse".into(),
        }),
        crl: Some(pairgate::admin::CrlStatus {
            crl_overdue: "warn".into(),
            overdue: true,
            refused: None,
            crls: vec![pairgate::admin::CrlRow {
                issuer: "CN=pairing CA".into(),
                number: 7,
                next_update: Some(datetime!(2024-12-01 00:00:00 UTC)),
                overdue: true,
            }],
        }),
    }
}

#[test]
fn report_shows_the_audit_and_crl_rows() {
    let text = render(&sample());
    assert!(text.contains("audit log: FAILING"), "{text}");
    assert!(text.contains("No space left on device"), "{text}");
    assert!(text.contains("new connections are refused"), "{text}");
    assert!(text.contains("CRL of CN=pairing CA: number 7"), "{text}");
    assert!(text.contains("OVERDUE"), "{text}");
}

#[test]
fn report_shows_link_directions_and_certificates() {
    let text = render(&sample());
    assert!(
        text.contains("waiting_for_key key 0011223344556677 (3 file(s)"),
        "{text}"
    );
    assert!(
        text.contains("peer link: up since 2025-01-01 00:30:00 UTC"),
        "{text}"
    );
    assert!(
        !text.contains("handshake timed out"),
        "an old link error is not shown while the link is up: {text}"
    );
    assert!(
        text.contains("outbound (pool01.site1.example → pool02.site2.example)"),
        "{text}"
    );
    assert!(text.contains("LAGGING"), "{text}");
    assert!(text.contains("10 min 0 s"), "{text}");
    assert!(text.contains("steady"), "{text}");
    assert!(text.contains("18 RENEW"), "{text}");
    assert!(text.contains("0123456789abcdef"), "{text}");
    assert!(
        !text.contains("0123456789abcdef0123"),
        "fingerprint is shortened: {text}"
    );
    assert!(text.contains("1 active, 7 allowed, 2 denied"), "{text}");
    assert!(
        text.contains("peer clock: 2 h 0 min behind ours — OFF"),
        "{text}"
    );
    assert!(
        text.contains("store-and-forward spool only"),
        "the footer says what steady covers: {text}"
    );
    assert!(
        text.contains("backup-smb (tunnel → pool02.site2.example)"),
        "{text}"
    );
    assert!(text.contains("FAILING"), "{text}");
    assert!(
        text.contains("2025-01-01 00:59:00 UTC: peer_unreachable"),
        "{text}"
    );
    assert!(text.contains("1500 kB in / 2000 B out"), "{text}");
    assert!(text.contains("0 ok, 2 failed"), "{text}");
    assert!(text.contains("idle (no session yet)"), "{text}");
    assert!(
        text.contains("backup-smb failing: peer gateway 127.0.0.1:7444: connection refused"),
        "{text}"
    );
}

#[test]
fn a_link_that_is_down_shows_its_error() {
    let mut status = sample();
    status.peer_link.state = LinkState::Down;
    let text = render(&status);
    assert!(text.contains("peer link: DOWN since"), "{text}");
    assert!(text.contains("— handshake timed out"), "{text}");
}

fn write_config(dir: &std::path::Path, admin: Option<std::net::SocketAddr>) -> PathBuf {
    let config = dir.join("site1.toml");
    let admin = admin.map_or(String::new(), |a| format!("[admin]\nlisten = \"{a}\"\n"));
    std::fs::write(
        &config,
        format!(
            "[gateway]\npool = \"a.x\"\npeer_pool = \"b.x\"\npolicy = \"p.toml\"\n\
             [tls]\ncert = \"c.crt\"\nkey = \"c.key\"\nca = \"ca.crt\"\n\
             [peer]\nlisten = \"127.0.0.1:7443\"\nconnect = \"127.0.0.1:7444\"\n\
             {admin}[audit]\npath = \"audit.jsonl\"\n"
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    config
}

#[test]
fn reads_a_running_endpoint_in_both_modes() {
    use std::sync::Arc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let metrics = Arc::new(pairgate::admin::Metrics::new());
    let board = pairgate::admin::Board::new(
        "a.x".into(),
        "b.x".into(),
        pairgate::admin::DEFAULT_SYNC_INTERVAL,
        Arc::new(pairgate::admin::LinkTracker::new()),
        metrics.clone(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let served = runtime.spawn(pairgate::admin::serve(
        listener,
        metrics,
        Arc::new(board),
        stop.clone(),
    ));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(dir.path(), Some(addr));
    for json in [false, true] {
        let result = status(StatusArgs {
            config: config.clone(),
            json,
            ready: false,
        });
        assert!(
            result.is_ok(),
            "{:?}",
            result.err().map(|f| f.error().to_string())
        );
    }
    stop.cancel();
    let _ = runtime.block_on(served);
}

#[test]
fn config_without_admin_is_exit_2_and_says_what_to_add() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(dir.path(), None);
    let failure = status(StatusArgs {
        config,
        json: false,
        ready: false,
    })
    .err()
    .unwrap_or_else(|| panic!("a config without [admin] must fail"));
    assert_eq!(failure.code(), 2, "{}", failure.error());
    assert!(
        failure.error().to_string().contains("add `[admin]`"),
        "{}",
        failure.error()
    );
}

#[test]
fn unreachable_endpoint_is_exit_1() {
    // A port that was just free: bind, note, release.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let config = write_config(dir.path(), Some(addr));
    for (json, ready) in [(false, false), (true, false), (false, true)] {
        let failure = status(StatusArgs {
            config: config.clone(),
            json,
            ready,
        })
        .err()
        .unwrap_or_else(|| panic!("nothing listens on {addr}"));
        assert_eq!(failure.code(), 1, "{}", failure.error());
        let message = failure.error().to_string();
        assert!(message.contains("is the gateway running"), "{message}");
    }
}
