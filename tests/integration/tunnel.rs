//! Bytes through the pair: site1 tunnel → mTLS → site2 → backend, and back.

use serde_json::Value;

use crate::harness::*;

fn events<'a>(lines: &'a [Value], event: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    lines.iter().filter(move |v| v["event"] == event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_megabyte_round_trip_is_identical_and_audited() {
    let pair = Pairing::start().await;
    let payload = pattern(8 * 1024 * 1024 + 17);
    let back = round_trip(pair.tunnel, &payload).await.expect("round trip");
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "echoed bytes differ");

    // site1 audits the outbound connection, site2 the inbound one, both with
    // the other's identity and the exact byte counts.
    let close1 = pair
        .site1
        .wait_audit("site1 close", |v| v["event"] == "close");
    assert_eq!(close1["direction"], "outbound");
    assert_eq!(close1["peer_pool"], POOL2);
    assert_eq!(close1["service"], "backup-smb");
    assert_eq!(close1["bytes_in"], payload.len() as u64);
    assert_eq!(close1["bytes_out"], payload.len() as u64);
    let close2 = pair
        .site2
        .wait_audit("site2 close", |v| v["event"] == "close");
    assert_eq!(close2["direction"], "inbound");
    assert_eq!(close2["peer_pool"], POOL1);
    assert_eq!(close2["bytes_in"], payload.len() as u64);
    let allow2 = pair.site2.wait_audit("site2 allow", |v| {
        v["event"] == "connection" && v["decision"] == "allow"
    });
    let site1_sha =
        pairgate::pki::inspect_file(&pair.site1_spec.cert.0, time::OffsetDateTime::now_utc())
            .unwrap()[0]
            .sha256
            .clone();
    assert_eq!(allow2["cert_sha256"], site1_sha.as_str());
    assert!(allow2["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(allow2["prev"].as_str().unwrap().len(), 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_close_reaches_the_backend_and_the_answer_comes_back() {
    let digest = digest_backend().await.unwrap();
    let pair = Pairing::start_with(|_, site2| {
        site2.exports = vec![("backup-smb".into(), digest), ("cms-smb".into(), digest)];
    })
    .await;
    for len in [0usize, 1, 16 * 1024, 3 * 1024 * 1024 + 5] {
        let payload = pattern(len);
        let back = round_trip(pair.tunnel, &payload).await.expect("round trip");
        let want = ring::digest::digest(&ring::digest::SHA256, &payload);
        assert_eq!(back, want.as_ref(), "digest of {len} bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections_on_two_services() {
    let pair = Pairing::start().await;
    let mut tasks = Vec::new();
    for i in 0..24usize {
        let addr = if i % 2 == 0 {
            pair.tunnel
        } else {
            pair.cms_tunnel
        };
        tasks.push(tokio::spawn(async move {
            let payload = pattern(50_000 + i * 1000);
            let back = round_trip(addr, &payload).await.expect("round trip");
            assert!(back == payload);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let lines = pair
        .site2
        .wait_audit_count("24 allowed connections", 24, |v| {
            v["event"] == "connection" && v["decision"] == "allow"
        });
    let allowed = events(&lines, "connection")
        .filter(|v| v["decision"] == "allow")
        .count();
    assert_eq!(allowed, 24);
    let cms = events(&lines, "connection")
        .filter(|v| v["service"] == "cms-smb")
        .count();
    assert_eq!(cms, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_and_the_chain_verifies() {
    let mut pair = Pairing::start().await;
    let back = round_trip(pair.tunnel, b"hello").await.unwrap();
    assert_eq!(back, b"hello");
    let status = pair.site1.terminate();
    assert!(status.success(), "{status:?}");
    let lines = pair.site1.audit_lines();
    assert_eq!(lines.first().unwrap()["event"], "gateway_start");
    assert_eq!(lines.last().unwrap()["event"], "gateway_stop");
    assert_eq!(lines.first().unwrap()["prev"], "0".repeat(64));
    let verify = std::process::Command::new(bin())
        .args(["audit", "verify", "--log"])
        .arg(pair.site1.audit_path())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // With site1 gone its tunnel is closed: nothing listens there any more.
    assert!(tokio::net::TcpStream::connect(pair.tunnel).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_down_is_refused_and_audited_then_recovers() {
    let mut pair = Pairing::start().await;
    pair.site2.terminate();
    // The tunnel accepts, but cannot reach the peer: the client sees a close.
    let back = round_trip(pair.tunnel, b"lost?").await.unwrap_or_default();
    assert!(back.is_empty());
    let deny = pair
        .site1
        .wait_audit("peer unreachable", |v| v["reason"] == "peer_unreachable");
    assert_eq!(deny["decision"], "deny");
    // The peer comes back; the same tunnel works again without a restart.
    pair.site2 = Gateway::start(&pair.site2.config());
    let back = round_trip(pair.tunnel, b"back again").await.unwrap();
    assert_eq!(back, b"back again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_anchors_the_peers_audit_chain_head() {
    let pair = Pairing::start().await;
    // site1 starts second, so its first heartbeat finds site2 up.
    let anchored = pair
        .site2
        .wait_audit("peer_audit_head", |v| v["event"] == "peer_audit_head");
    assert_eq!(anchored["peer_pool"], POOL1);
    // The head is the hash of a line that really is in site1's log.
    let text = std::fs::read_to_string(pair.site1.audit_path()).unwrap();
    let heads: Vec<String> = text
        .lines()
        .map(|l| hex::encode(ring::digest::digest(&ring::digest::SHA256, l.as_bytes())))
        .collect();
    assert!(
        heads.contains(&anchored["head"].as_str().unwrap().to_owned()),
        "{anchored}"
    );
    pair.site1.wait_audit("link up", |v| {
        v["event"] == "peer_link" && v["state"] == "up"
    });
}

/// A link that freezes mid-session without a FIN (a relay in the path stops
/// forwarding but keeps both its sockets open — what a stuck firewall or a
/// cut WAN circuit looks like from the gateway): the tunnelled session does
/// not hang forever. Once nothing moves for `limits.idle_timeout_secs` the
/// gateway closes it, the client sees the end, and the close is audited
/// with its reason; the next connection goes through on a fresh link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_on_a_frozen_link_is_closed_and_audited_and_the_next_one_works() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay_port = free_port();
    let pair = Pairing::start_with(move |s1, s2| {
        s1.peer_connect = relay_port;
        s1.extra = "\n[limits]\nidle_timeout_secs = 3\n".into();
        s2.extra = "\n[limits]\nidle_timeout_secs = 3\n".into();
    })
    .await;
    let relay = crate::fieldkit::Relay::start(relay_port, pair.site2_peer(), 256 << 10).await;
    let client = tokio::net::TcpStream::connect(pair.tunnel).await.unwrap();
    let (mut read, mut write) = client.into_split();
    // Upload more than the relay lets through, reading the echo meanwhile.
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5a_u8; 64 << 10];
        for _ in 0..64 {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
        }
    });
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    let ended = tokio::time::timeout(std::time::Duration::from_secs(120), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the session on the frozen link never ended");
    assert!(
        relay.frozen.load(std::sync::atomic::Ordering::SeqCst),
        "the relay never froze"
    );
    eprintln!(
        "the session ended {:.1} s after it started (idle_timeout_secs = 3)",
        started.elapsed().as_secs_f64()
    );
    writer.abort();
    let closed = pair.site1.wait_audit("the idle close", |v| {
        v["event"] == "close" && v["error"] == "idle timeout"
    });
    assert_eq!(closed["direction"], "outbound", "{closed}");
    // (An open session: the test's relay does not pass a half-close.)
    let mut next = crate::ha::LongSession::open(pair.tunnel).await;
    next.echo().await.expect("the next session on a fresh link");
    drop(relay);
}
