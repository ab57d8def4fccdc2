//! Every refusal is refused, audited with its reason, and leaves the gateway
//! serving everyone else.

use std::net::SocketAddr;

use pairgate::pki::Validity;
use time::{Duration, OffsetDateTime};
use tokio::net::TcpSocket;

use crate::harness::*;

/// After a refusal, the legitimate path still carries traffic.
async fn still_serves(pair: &Pairing) {
    let back = round_trip(pair.tunnel, b"still here")
        .await
        .expect("legit round trip");
    assert_eq!(back, b"still here");
}

fn denial(gw: &Gateway, reason: &str) -> serde_json::Value {
    let v = gw.wait_audit(reason, |v| {
        v["event"] == "connection" && v["reason"] == reason
    });
    assert_eq!(v["decision"], "deny");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_client_certificate() {
    let pair = Pairing::start().await;
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: None,
    };
    assert!(
        !peer
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "no_client_cert");
    assert!(v["peer_pool"].is_null());
    assert!(v["cert_sha256"].is_null());
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_ca() {
    let pair = Pairing::start().await;
    let rogue = Pki::new(&pair.dir.path().join("rogue"), "rogue CA");
    let cert = rogue.issue("fake-site1", POOL1, Validity::days_from_now(30));
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(cert),
    };
    assert!(
        !peer
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "unknown_ca");
    assert_eq!(v["cert_sha256"].as_str().map(str::len), Some(64));
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_certificate_of_a_pool_that_is_not_the_pair() {
    let pair = Pairing::start().await;
    let cert = pair.pki.issue("site3", POOL3, Validity::days_from_now(30));
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(cert),
    };
    assert!(
        !peer
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "not_paired");
    assert_eq!(v["peer_pool"], POOL3);
    assert_eq!(v["service"], "backup-smb");
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_outside_the_pair() {
    let pair = Pairing::start().await;
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(pair.site1_spec.cert.clone()),
    };
    // The genuine peer gateway may use backup-smb…
    assert!(
        peer.relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    // …but not a service the pair does not list.
    assert!(
        !peer
            .relays(pair.site2_peer(), POOL2, b"pg1/cms-https")
            .await
    );
    let v = denial(&pair.site2, "service_not_allowed");
    assert_eq!(v["service"], "cms-https");
    assert_eq!(v["peer_pool"], POOL1);
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_outside_allow_sources() {
    let pair = Pairing::start().await;
    // The backup-smb tunnel allows 127.0.0.1/32 only; come from 127.0.0.2.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let stream = socket.connect(pair.tunnel).await.unwrap();
    let back = round_trip_on(stream, b"let me in")
        .await
        .unwrap_or_default();
    assert!(back.is_empty());
    let v = denial(&pair.site1, "source_not_allowed");
    assert!(v["peer_addr"].as_str().unwrap().starts_with("127.0.0.2:"));
    assert_eq!(v["service"], "backup-smb");
    // Nothing reached site2 for it.
    assert!(pair
        .site2
        .audit_lines()
        .iter()
        .all(|v| v["event"] != "connection"));
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate() {
    let pair = Pairing::start().await;
    let now = OffsetDateTime::now_utc();
    let expired = Validity {
        not_before: now - Duration::days(10),
        not_after: now - Duration::days(1),
    };
    let cert = pair.pki.issue("site1-expired", POOL1, expired);
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(cert),
    };
    assert!(
        !peer
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "expired");
    // Not verified: what it claims is kept apart from `peer_pool` (issue 15.3).
    assert_eq!(v["peer_pool"], serde_json::Value::Null);
    assert_eq!(v["claimed_pool"], POOL1);
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_silence_on_the_peer_port() {
    use tokio::io::AsyncWriteExt;
    let pair = Pairing::start_with(|_, site2| {
        site2.extra = "\n[limits]\nhandshake_timeout_secs = 1\n".into()
    })
    .await;
    // Not TLS at all.
    let mut s = tokio::net::TcpStream::connect(pair.site2_peer())
        .await
        .unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    denial(&pair.site2, "handshake_failed");
    // Connected, but never says anything.
    let _silent = tokio::net::TcpStream::connect(pair.site2_peer())
        .await
        .unwrap();
    denial(&pair.site2, "handshake_timeout");
    still_serves(&pair).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_of_the_wrong_pool_is_refused_by_the_tunnel() {
    // site1 believes its peer is POOL2, but the gateway answering presents
    // POOL3's certificate: the tunnel must refuse it.
    let pair = Pairing::start().await;
    let dir = pair.dir.path();
    let cert3 = pair.pki.issue("site3", POOL3, Validity::days_from_now(30));
    let impostor_port = free_port();
    let spec = SiteSpec {
        name: "impostor".into(),
        pool: POOL3.into(),
        peer_pool: "pool04.site4.example".into(),
        cert: cert3,
        ca: pair.pki.ca_path(),
        crl: None,
        peer_listen: impostor_port,
        peer_connect: free_port(),
        tunnels: vec![],
        exports: vec![("backup-smb".into(), pair.backend)],
        extra: String::new(),
    };
    let _impostor = Gateway::start(&spec.write(dir).unwrap());
    let mut site1 = pair.site1_spec;
    site1.name = "site1b".into();
    site1.peer_connect = impostor_port;
    site1.peer_listen = free_port();
    for t in &mut site1.tunnels {
        t.1 = free_port();
    }
    let gw = Gateway::start(&site1.write(dir).unwrap());
    let back = round_trip(site1.tunnel_addr(0).unwrap(), b"secret")
        .await
        .unwrap_or_default();
    assert!(back.is_empty());
    let v = denial(&gw, "bad_certificate");
    assert_eq!(v["peer_pool"], serde_json::Value::Null);
    assert_eq!(v["claimed_pool"], POOL3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_host_cannot_starve_the_peer() {
    let pair = Pairing::start_with(|_, site2| {
        site2.extra =
            "\n[limits]\nmax_handshakes_per_source = 8\nhandshake_timeout_secs = 30\n".into();
    })
    .await;
    // A host on the WAN opens 40 sockets to the peer port and says nothing.
    let mut idle = Vec::new();
    for _ in 0..40 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from(([127, 0, 0, 5], 0))).unwrap();
        idle.push(socket.connect(pair.site2_peer()).await.unwrap());
    }
    let v = denial(&pair.site2, "too_many_connections");
    assert!(v["peer_addr"].as_str().unwrap().starts_with("127.0.0.5:"));
    // The real peer gateway is still served at once.
    still_serves(&pair).await;
    drop(idle);
}
