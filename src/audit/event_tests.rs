//! Tests of the audit events' JSON shape.

use super::*;

#[test]
fn tag_comes_first_and_optional_fields_are_skipped() {
    let event = Event::Connection(Connection {
        conn_id: 7,
        direction: Direction::Inbound,
        peer_addr: "127.0.0.1:5000".into(),
        peer_pool: None,
        cert_sha256: None,
        service: Some("backup-smb".into()),
        decision: Verdict::Allow,
        reason: None,
        detail: None,
        client_addr: None,
        orig_dst: None,
        claimed_pool: None,
    });
    let json = serde_json::to_string(&event).expect("plain data serializes");
    assert!(
        json.starts_with(r#"{"event":"connection","conn_id":7,"#),
        "{json}"
    );
    assert!(json.contains(r#""peer_pool":null"#));
    assert!(!json.contains("reason"));
    let back: Event = serde_json::from_str(&json).expect("round trip");
    assert_eq!(back, event);
}

#[test]
fn deny_reason_uses_contract_names() {
    let event = Event::Connection(Connection {
        conn_id: 1,
        direction: Direction::Outbound,
        peer_addr: "127.0.0.1:1".into(),
        peer_pool: Some("pool02.site2.example".into()),
        cert_sha256: None,
        service: None,
        decision: Verdict::Deny,
        reason: Some(DenyReason::NotPaired),
        detail: None,
        client_addr: None,
        orig_dst: None,
        claimed_pool: None,
    });
    let json = serde_json::to_string(&event).expect("plain data serializes");
    assert!(
        json.contains(r#""decision":"deny","reason":"not_paired""#),
        "{json}"
    );
}

#[test]
fn log_repaired_hides_zero_lost_events() {
    let event = Event::LogRepaired(LogRepaired {
        truncated_bytes: 3,
        truncated_sha256: "ab".into(),
        lost_events: 0,
    });
    let json = serde_json::to_string(&event).expect("plain data serializes");
    assert_eq!(
        json,
        r#"{"event":"log_repaired","truncated_bytes":3,"truncated_sha256":"ab"}"#
    );
}
