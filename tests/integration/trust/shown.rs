//! Status only shows what was trusted: certificates of refused connections
//! (self-signed, a pool that is not paired, the site's own) leave no `peer`
//! row in `/status` and no expiry series, and the audit never records an
//! unverified certificate's pool as `peer_pool`.

use std::net::SocketAddr;

use pairgate::pki::Validity;
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use serde_json::Value;

use super::{denial, mint};
use crate::harness::*;

/// A self-signed certificate claiming `pool`, as `dir/<file>.crt`/`.key`.
fn self_signed(
    dir: &std::path::Path,
    file: &str,
    pool: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut params = CertificateParams::new(vec![pool.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, pool);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let crt = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    std::fs::write(&crt, cert.pem()).unwrap();
    pairgate::pki::write_secret_file(&key_path, key.serialize_pem().as_bytes()).unwrap();
    (crt, key_path)
}

fn sha256_of(crt: &std::path::Path) -> String {
    let der = pairgate::tls::load_certs(crt).unwrap().remove(0);
    pairgate::tls::fingerprint(&der)
}

async fn status(admin: SocketAddr) -> Value {
    let reply = pairgate::admin::client::get(admin, "/status")
        .await
        .unwrap();
    serde_json::from_str(&reply.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_certificates_leave_no_rows_and_unverified_claims_stay_claims() {
    let admin_port = free_port();
    let pair = Pairing::start_with(|_, site2| {
        site2.extra = format!("\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n");
    })
    .await;
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let ca_dir = pair.pki.0.dir.clone();
    let dir = pair.dir.path();
    // The genuine peer works, and is shown.
    let back = round_trip(pair.tunnel, b"genuine").await.unwrap();
    assert_eq!(back, b"genuine");
    let genuine = sha256_of(&pair.site1_spec.cert.0);

    // 1. Self-signed, claiming the paired pool: unknown_ca; the claim is a claim.
    let forged = self_signed(dir, "forged", POOL1);
    let peer = |cert| RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(cert),
    };
    assert!(
        !peer(forged.clone())
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "unknown_ca");
    assert_eq!(v["peer_pool"], Value::Null, "{v}");
    assert_eq!(v["claimed_pool"], POOL1, "{v}");
    assert_eq!(v["cert_sha256"], sha256_of(&forged.0));

    // 2. A certificate of the pairing CA for a pool that is not paired.
    let stranger = pair
        .pki
        .issue("stranger", POOL3, Validity::days_from_now(30));
    assert!(
        !peer(stranger.clone())
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    denial(&pair.site2, "not_paired");
    // 3. The site's own certificate, presented back to it.
    let own = pair.site2_spec.cert.clone();
    assert!(
        !peer(own.clone())
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    // 4. Outside the profile: the detail reads as a sentence, not a debug dump.
    let rogue = mint(&ca_dir, "rogue", POOL1, |p| {
        p.key_usages.push(rcgen::KeyUsagePurpose::KeyCertSign);
    });
    assert!(
        !peer(rogue.clone())
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "profile_violation");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("key_usage"), "{detail}");
    assert!(
        !detail.contains("Other(") && !detail.contains("OtherError"),
        "{detail}"
    );
    assert_eq!(v["peer_pool"], Value::Null, "unverified: {v}");
    assert_eq!(v["claimed_pool"], POOL1, "{v}");

    // Only the genuine peer's certificate is a `peer` row or series.
    let doc = status(admin).await;
    let peers: Vec<&str> = doc["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "peer")
        .map(|c| c["sha256"].as_str().unwrap())
        .collect();
    assert_eq!(peers, [genuine.as_str()], "{doc:#}");
    let reply = pairgate::admin::client::get(admin, "/metrics")
        .await
        .unwrap();
    for refused in [&forged.0, &stranger.0, &own.0, &rogue.0] {
        let sha = sha256_of(refused);
        let shown = reply
            .body
            .lines()
            .any(|l| l.contains("kind=\"peer\"") && l.contains(&sha));
        assert!(!shown, "a refused certificate has an expiry series: {sha}");
    }
    // `/status` also tells whether the audit log is written.
    assert_eq!(doc["audit"]["failing"], false, "{doc:#}");
    assert_eq!(doc["audit"]["on_failure"], "refuse");
}
