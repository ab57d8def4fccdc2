//! CRL distribution over the pair: a revocation installed at one site
//! reaches the other over the control channel (no one copies files) and
//! closes the other site's established session with the revoked peer.

use std::path::Path;
use std::time::{Duration, Instant};

use pairgate::pki::{self, Validity};
use serde_json::Value;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{json_of, pairgate};
use crate::harness::*;

fn numbers(v: &Value) -> Vec<u64> {
    v["crls"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["number"].as_u64()).collect())
        .unwrap_or_default()
}

/// Sets `peer.heartbeat_secs = 1` in a written site config.
fn fast_heartbeat(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let text = text.replacen("[peer]\n", "[peer]\nheartbeat_secs = 1\n", 1);
    std::fs::write(config, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_at_one_site_reaches_the_other_and_closes_its_session() {
    revocation_travels(true).await;
}

/// Without `tls.crl` at site2, the CRL it takes is kept beside its audit
/// log and enforced from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_without_tls_crl_takes_and_enforces_the_peers_crl() {
    revocation_travels(false).await;
}

async fn revocation_travels(site2_has_crl: bool) {
    let crl_dir = tempfile::tempdir().unwrap();
    let site1_crl = crl_dir.path().join("site1.crl");
    std::fs::write(&site1_crl, b"").unwrap();
    let site2_crl = if site2_has_crl {
        let path = crl_dir.path().join("site2.crl");
        std::fs::write(&path, b"").unwrap();
        Some(path)
    } else {
        None
    };
    let admin: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut pair = Pairing::start_with(|site1, site2| {
        site1.crl = Some(site1_crl.clone());
        site2.crl = site2_crl.clone();
        site2.extra = format!("\n[admin]\nlisten = \"{admin}\"\n");
    })
    .await;
    let site2_crl =
        site2_crl.unwrap_or_else(|| pair.dir.path().join("site2-audit.crl-in-force.pem"));
    pair.site2.terminate();
    let config = pair.site2_spec.write(pair.dir.path()).unwrap();
    fast_heartbeat(&config);
    pair.site2 = Gateway::start(&config);

    // A stolen certificate of site1's pool holds a session to site2.
    let ca_dir = pair.pki.0.dir.clone();
    let stolen = pair.pki.issue("stolen", POOL1, Validity::days_from_now(30));
    let thief = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(stolen.clone()),
    };
    let mut session = thief
        .connect(pair.site2_peer(), POOL2, b"pg1/backup-smb")
        .await
        .unwrap();
    let mut buf = [0u8; 5];
    session.write_all(b"hello").await.unwrap();
    session.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    let stolen_sha = pairgate::tls::fingerprint(&pairgate::tls::load_certs(&stolen.0).unwrap()[0]);
    assert!(
        peer_rows(admin).await.contains(&stolen_sha),
        "verified: shown"
    );

    // Site1's operator revokes it and installs the new CRL at site1 only.
    pki::revoke(
        &pki::RevokeRequest {
            ca_dir: &ca_dir,
            cert: &stolen.0,
            reason: pki::RevokeReason::KeyCompromise,
            next_update_days: 30,
        },
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    std::fs::copy(ca_dir.join(pki::CRL_FILE), &site1_crl).unwrap();
    let loaded = pair.site1.wait_audit("site1 loads the CRL", |v| {
        v["event"] == "cert_reload" && v["ok"] == true && !numbers(v).is_empty()
    });
    let number = numbers(&loaded);

    // Site2 takes it from site1's heartbeat answer, verified, and applies it.
    let received = pair.site2.wait_audit("crl_received", |v| {
        v["event"] == "crl_received" && v["ok"] == true
    });
    assert_eq!(numbers(&received), number, "{received}");
    assert_eq!(received["path"], site2_crl.display().to_string());
    pair.site1.wait_audit("crl_sent", |v| {
        v["event"] == "crl_sent" && numbers(v) == number
    });
    let reload = pair.site2.wait_audit("site2 applies it", |v| {
        v["event"] == "cert_reload" && v["ok"] == true && numbers(v) == number
    });
    assert_eq!(reload["revoked_closed"], 1, "{reload}");
    // `check` names the CRL in force, also one that came from the peer.
    let out = pairgate(&["check", "--json", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let doc = json_of(&out);
    assert_eq!(doc["crl"]["path"], site2_crl.display().to_string(), "{doc}");
    assert_eq!(doc["crl"]["from_peer"], !site2_has_crl, "{doc}");
    assert_eq!(numbers(&doc["crl"]), number, "{doc}");
    eprintln!(
        "crl_pair: site1 loaded the CRL at {}, site2 took it at {} and applied it at {} (heartbeat 1 s)",
        loaded["ts"], received["ts"], reload["ts"]
    );

    // The stolen session is closed, and audited as revoked.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let read = tokio::time::timeout(Duration::from_secs(5), session.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "the revoked session stayed open");
    }
    let v = pair.site2.wait_audit("revoked", |v| {
        v["event"] == "connection" && v["reason"] == "revoked"
    });
    assert_eq!(
        v["cert_sha256"],
        pairgate::tls::fingerprint(&pairgate::tls::load_certs(&stolen.0).unwrap()[0])
    );
    // Revoked: no longer shown as a peer.
    assert!(!peer_rows(admin).await.contains(&stolen_sha));
    // A new attempt with it is refused at the handshake.
    assert!(
        !thief
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    // The pair itself is unaffected.
    let back = round_trip(pair.tunnel, b"still paired").await.unwrap();
    assert_eq!(back, b"still paired");
    // Offered once, not every heartbeat.
    pause_ms(3_000).await;
    let sent = pair
        .site1
        .audit_lines()
        .iter()
        .filter(|v| v["event"] == "crl_sent")
        .count();
    assert_eq!(sent, 1);
}

/// The sha256 of each `peer` row of `/status`.
async fn peer_rows(admin: std::net::SocketAddr) -> Vec<String> {
    let reply = pairgate::admin::client::get(admin, "/status")
        .await
        .unwrap();
    let doc: Value = serde_json::from_str(&reply.body).unwrap();
    doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "peer")
        .filter_map(|c| c["sha256"].as_str().map(str::to_owned))
        .collect()
}

async fn pause_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
