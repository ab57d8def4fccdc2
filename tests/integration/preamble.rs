//! The `pg2` connection preamble (issue 12, item 4): the dialling site
//! learns why the peer closed a tunnelled connection and audits the same
//! reason, both sites audit the Front End's address, and a peer that
//! predates the preamble still gets the raw `pg1` relay.

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

/// Connects from a port of our own choosing, so the audit lines can be
/// matched to this client.
async fn client_of(tunnel: SocketAddr) -> (TcpStream, String) {
    let stream = TcpStream::connect(tunnel).await.unwrap();
    let local = stream.local_addr().unwrap().to_string();
    (stream, local)
}

fn line<'a>(lines: &'a [Value], event: &str, client: &str) -> Option<&'a Value> {
    lines
        .iter()
        .find(|v| v["event"] == event && v["client_addr"] == client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_export_is_audited_with_the_same_reason_at_both_sites() {
    let dead: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let pair = Pairing::start_with(|_, site2| {
        site2.exports = vec![("backup-smb".into(), dead)];
    })
    .await;
    let (stream, client) = client_of(pair.tunnel).await;
    let back = round_trip_on(stream, b"backup package")
        .await
        .unwrap_or_default();
    assert!(back.is_empty(), "nothing comes back from a dead export");

    let close1 = pair.site1.wait_audit("site1 close", |v| {
        v["event"] == "close" && v["client_addr"] == client.as_str()
    });
    assert_eq!(close1["reason"], "export_unreachable", "{close1}");
    let error = close1["error"].as_str().unwrap();
    assert!(
        error.starts_with("peer gateway")
            && error.contains(&format!("export target {dead} unreachable")),
        "{error}"
    );
    let lines1 = pair.site1.audit_lines();
    let allow1 = line(&lines1, "connection", &client).unwrap();
    assert_eq!(allow1["decision"], "allow");

    let close2 = pair.site2.wait_audit("site2 close", |v| {
        v["event"] == "close" && v["client_addr"] == client.as_str()
    });
    assert_eq!(close2["reason"], "export_unreachable", "{close2}");
    assert_eq!(close2["direction"], "inbound");
    let lines2 = pair.site2.audit_lines();
    let allow2 = line(&lines2, "connection", &client).unwrap();
    assert_eq!(allow2["decision"], "allow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_peers_policy_is_audited_as_that_denial_at_both_sites() {
    // site2 exports backup-smb only: site1's cms-smb tunnel is refused there.
    let pair = Pairing::start_with(|_, site2| {
        site2.exports.retain(|(service, _)| service == "backup-smb");
    })
    .await;
    let (stream, client) = client_of(pair.cms_tunnel).await;
    let back = round_trip_on(stream, b"cms").await.unwrap_or_default();
    assert!(back.is_empty());

    let deny1 = pair.site1.wait_audit("site1 denial", |v| {
        v["event"] == "connection" && v["client_addr"] == client.as_str()
    });
    assert_eq!(
        deny1["decision"], "deny",
        "site1 saw the peer's refusal: {deny1}"
    );
    assert_eq!(deny1["reason"], "service_not_allowed");
    assert!(deny1["detail"]
        .as_str()
        .unwrap()
        .contains("refused by pool02.site2.example"));
    let deny2 = pair.site2.wait_audit("site2 denial", |v| {
        v["event"] == "connection" && v["client_addr"] == client.as_str()
    });
    assert_eq!(
        (&deny2["decision"], &deny2["reason"]),
        (&Value::from("deny"), &Value::from("service_not_allowed"))
    );
    // One decision per connection at each site, and no close for a denial.
    let lines1 = pair.site1.audit_lines();
    let about_it = lines1
        .iter()
        .filter(|v| v["client_addr"] == client.as_str());
    assert_eq!(about_it.count(), 1, "{lines1:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_tunnel_audits_the_client_at_both_sites() {
    let pair = Pairing::start().await;
    let (stream, client) = client_of(pair.tunnel).await;
    let payload = pattern(300_000);
    assert!(round_trip_on(stream, &payload).await.unwrap() == payload);
    for gw in [&pair.site1, &pair.site2] {
        let close = gw.wait_audit("close", |v| {
            v["event"] == "close" && v["client_addr"] == client.as_str()
        });
        assert_eq!(close["bytes_in"], payload.len() as u64, "{close}");
        assert!(close.get("reason").is_none(), "{close}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_preamble_is_refused_and_the_dialler_is_told() {
    let pair = Pairing::start().await;
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(pair.site1_spec.cert.clone()),
    };
    let mut tls = peer
        .connect(pair.site2_peer(), POOL2, b"pg2/backup-smb")
        .await
        .unwrap();
    tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    assert!(answer.starts_with(b"PGS1\x0cbad_preamble"), "{answer:?}");
    let v = pair.site2.wait_audit("bad_preamble", |v| {
        v["event"] == "connection" && v["reason"] == "bad_preamble"
    });
    assert_eq!(v["decision"], "deny");
}

/// A peer gateway from before the preamble: it knows only `pg1/<service>`
/// and echoes raw bytes.
pub(crate) async fn old_acceptor(
    pair: &Pairing,
) -> (SocketAddr, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let chain = pairgate::tls::load_certs(&pair.site2_spec.cert.0).unwrap();
    let key_pem = std::fs::read(&pair.site2_spec.cert.1).unwrap();
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"pg1/backup-smb".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (first_bytes, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let first_bytes = first_bytes.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() != Some(b"pg1/backup-smb") {
                    return; // the heartbeat's pg1-control: not ours to serve
                }
                let (mut r, mut w) = tokio::io::split(tls);
                let mut all = Vec::new();
                let _ = r.read_to_end(&mut all).await;
                let _ = w.write_all(&all).await;
                let _ = w.shutdown().await;
                let _ = first_bytes.send(all).await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_preamble_still_gets_the_raw_pg1_relay() {
    let pair = Pairing::start().await;
    let (old, mut seen) = old_acceptor(&pair).await;
    // A second site1 that dials the old peer instead.
    let mut spec = pair.site1_spec.clone();
    spec.name = "site1-to-old".into();
    spec.peer_connect = old.port();
    spec.peer_listen = free_port();
    for t in &mut spec.tunnels {
        t.1 = free_port();
    }
    let _gw = Gateway::start(&spec.write(pair.dir.path()).unwrap());
    let payload = pattern(70_000);
    let back = round_trip(spec.tunnel_addr(0).unwrap(), &payload)
        .await
        .unwrap();
    assert!(back == payload, "raw relay through an old peer");
    let received = seen.recv().await.unwrap();
    assert!(
        received == payload,
        "the old peer got exactly the client's bytes"
    );
}
