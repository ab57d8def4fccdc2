//! Unit tests of `status.rs`.

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
