//! Metrics, `/status` and `pairgate status` on real gateways: the figures
//! follow the traffic, and the peer link follows the peer.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let reply = pairgate::admin::client::get(addr, path)
        .await
        .expect("admin endpoint");
    (reply.status, reply.body)
}

async fn status(addr: SocketAddr) -> Value {
    let (code, body) = get(addr, "/status").await;
    assert_eq!(code, 200);
    serde_json::from_str(&body).unwrap()
}

/// Polls /readyz until it answers `code`; returns the body.
async fn wait_ready(addr: SocketAddr, code: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (got, body) = get(addr, "/readyz").await;
        if got == code {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {code}: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls /status until `pred` holds.
async fn wait_status(addr: SocketAddr, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(addr).await;
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what}: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let lines = metrics.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_follow_traffic_and_the_peer() {
    let admin_port = free_port();
    let mut pair = Pairing::start_with(|site1, _| {
        site1.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n");
    })
    .await;
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    assert!(pair.site1.0.ready.contains(&format!("admin={admin}")));

    let payload = pattern(100_000);
    assert!(round_trip(pair.tunnel, &payload).await.unwrap() == payload);
    let client = std::net::TcpStream::connect(("127.0.0.2", 1)).err();
    drop(client);

    let (code, health) = get(admin, "/healthz").await;
    assert_eq!((code, health.trim()), (200, "ok"));
    let (code, _) = get(admin, "/nope").await;
    assert_eq!(code, 404);

    let (code, metrics) = get(admin, "/metrics").await;
    assert_eq!(code, 200);
    let allowed = [
        ("direction", "outbound"),
        ("service", "backup-smb"),
        ("decision", "allow"),
    ];
    assert_eq!(
        sample(&metrics, "pairgate_connections_total", &allowed),
        Some(1.0),
        "{metrics}"
    );
    let bytes_in = [
        ("direction", "outbound"),
        ("service", "backup-smb"),
        ("flow", "in"),
    ];
    assert_eq!(
        sample(&metrics, "pairgate_bytes_total", &bytes_in),
        Some(100_000.0)
    );
    assert!(
        sample(
            &metrics,
            "pairgate_certificate_expiry_timestamp_seconds",
            &[("kind", "own")]
        )
        .unwrap()
            > 1.7e9
    );
    assert!(sample(
        &metrics,
        "pairgate_certificate_expiry_timestamp_seconds",
        &[("kind", "peer")]
    )
    .is_some());

    let s = wait_status(admin, "link up", |s| s["peer_link"]["state"] == "up").await;
    assert_eq!(wait_ready(admin, 200).await, "ready\n");
    assert_eq!(s["pool"], POOL1);
    assert_eq!(s["directions"][0]["direction"], "outbound");
    assert_eq!(s["directions"][0]["state"], "steady");

    // The peer goes away: the next tunnel attempt finds it down.
    pair.site2.terminate();
    let _ = round_trip(pair.tunnel, b"anyone?").await;
    let s = wait_status(admin, "link down", |s| s["peer_link"]["state"] == "down").await;
    assert_eq!(s["directions"][0]["state"], "disconnected");
    // Not ready while the peer is away, and the body says why.
    let body = wait_ready(admin, 503).await;
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains("peer_link: down since "), "{body}");
    assert!(
        !body.contains("certificate:") && !body.contains("audit:"),
        "{body}"
    );
    // The same for a health-check script (keepalived's track_script).
    let out = Command::new(bin())
        .args(["status", "--ready", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("peer_link: down"));
    // The link gauge follows (refreshed every couple of seconds).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, metrics) = get(admin, "/metrics").await;
        if sample(&metrics, "pairgate_peer_link_up", &[]) == Some(0.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pairgate_peer_link_up never went to 0"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = get(admin, "/metrics").await;
    let unreachable = [("direction", "outbound"), ("reason", "peer_unreachable")];
    assert_eq!(
        sample(&metrics, "pairgate_denials_total", &unreachable),
        Some(1.0)
    );

    // `pairgate status` for a person, and as JSON.
    let out = Command::new(bin())
        .args(["status", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.to_lowercase().contains("disconnected") && text.contains(POOL2),
        "{text}"
    );
    let out = Command::new(bin())
        .args(["status", "--json", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["peer_link"]["state"], "down");

    // Back up: steady again.
    pair.site2 = Gateway::start(&pair.site2.config());
    assert_eq!(round_trip(pair.tunnel, b"back").await.unwrap(), b"back");
    let s = wait_status(admin, "link up again", |s| s["peer_link"]["state"] == "up").await;
    assert_eq!(s["directions"][0]["state"], "steady");
    assert_eq!(wait_ready(admin, 200).await, "ready\n");
    let out = Command::new(bin())
        .args(["status", "--ready", "--config"])
        .arg(pair.site1.config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
}
