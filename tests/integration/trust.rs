//! Trust that holds under attack (issue 15): certificates of the pairing CA
//! outside the pairing profile, CRL rollback and freshness, keys at rest.
//! Real gateways, real TLS, certificates minted here with rcgen directly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use pairgate::pki::Validity;
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::harness::*;

mod audit_full;
mod crl;
mod crl_pair;
mod keys;
mod replay;
mod shown;

/// A certificate for `pool` signed by the pairing CA in `ca_dir` the way
/// `pairgate cert issue` does, except for what `change` alters; written as
/// `dir/<file>.crt` (leaf, then CA) and `.key` (0600).
pub fn mint(
    ca_dir: &Path,
    file: &str,
    pool: &str,
    change: impl FnOnce(&mut CertificateParams),
) -> (PathBuf, PathBuf) {
    let ca_pem = std::fs::read_to_string(ca_dir.join("ca.crt")).unwrap();
    let ca_der = pem::parse(&ca_pem).unwrap().into_contents();
    let ca_key =
        KeyPair::from_pem(&std::fs::read_to_string(ca_dir.join("ca.key")).unwrap()).unwrap();
    let issuer = CertificateParams::from_ca_cert_der(&ca_der.into())
        .unwrap()
        .self_signed(&ca_key)
        .unwrap();

    let mut params = CertificateParams::new(vec![pool.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, pool);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let v = Validity::days_from_now(10);
    params.not_before = v.not_before;
    params.not_after = v.not_after;
    change(&mut params);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = params.signed_by(&key, &issuer, &ca_key).unwrap();
    let dir = ca_dir.parent().unwrap();
    let crt = dir.join(format!("{file}.crt"));
    let key_path = dir.join(format!("{file}.key"));
    std::fs::write(&crt, format!("{}{ca_pem}", cert.pem())).unwrap();
    pairgate::pki::write_secret_file(&key_path, key.serialize_pem().as_bytes()).unwrap();
    (crt, key_path)
}

/// A leaf that may sign certificates: webpki accepts it as an end entity.
fn key_cert_sign(p: &mut CertificateParams) {
    p.key_usages.push(KeyUsagePurpose::KeyCertSign);
}

pub fn pairgate(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().unwrap()
}

pub fn json_of(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn denial(gw: &Gateway, reason: &str) -> Value {
    let v = gw.wait_audit(reason, |v| {
        v["event"] == "connection" && v["reason"] == reason
    });
    assert_eq!(v["decision"], "deny");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_outside_the_profile_is_refused_and_cert_check_flags_it() {
    let pair = Pairing::start().await;
    let ca_dir = pair.pki.0.dir.clone();
    let rogue = mint(&ca_dir, "rogue-site1", POOL1, key_cert_sign);
    let peer = RawPeer {
        ca: pair.pki.ca_path(),
        client_cert: Some(rogue.clone()),
    };
    assert!(
        !peer
            .relays(pair.site2_peer(), POOL2, b"pg1/backup-smb")
            .await
    );
    let v = denial(&pair.site2, "profile_violation");
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.contains("key_usage"), "{detail}");
    assert_eq!(v["cert_sha256"].as_str().map(str::len), Some(64));
    // The genuine peer is unaffected.
    let back = round_trip(pair.tunnel, b"still here").await.unwrap();
    assert_eq!(back, b"still here");

    // `cert check` flags the same certificate (issuer taken from the file).
    let out = pairgate(&[
        "cert",
        "check",
        "--warn-days",
        "5",
        "--json",
        rogue.0.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let rows = json_of(&out);
    assert_eq!(rows[0]["verdict"], "profile_violation");
    assert!(rows[0]["detail"].as_str().unwrap().contains("key_usage"));
    assert_eq!(rows[1]["verdict"], "ok", "the CA itself is fine");
    // …and a certificate `cert issue` made passes, also against --ca.
    let good = pair.site1_spec.cert.0.to_str().unwrap().to_owned();
    let ca = pair.pki.ca_path().to_str().unwrap().to_owned();
    let out = pairgate(&["cert", "check", "--warn-days", "5", "--ca", &ca, &good]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_outside_the_profile_is_refused_when_dialling() {
    // A listener posing as site2 with a certificate of the pairing CA whose
    // first SAN is an IP address: webpki finds the pool among the SANs, the
    // profile wants it first.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rogue_addr: SocketAddr = listener.local_addr().unwrap();
    let pair = Pairing::start_with(|site1, _| site1.peer_connect = rogue_addr.port()).await;
    let ca_dir = pair.pki.0.dir.clone();
    let (crt, key) = mint(&ca_dir, "rogue-site2", POOL2, |p| {
        p.subject_alt_names
            .insert(0, rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    });
    let chain = pairgate::tls::load_certs(&crt).unwrap();
    let key_bytes = std::fs::read(&key).unwrap();
    let key = rustls_pemfile::private_key(&mut key_bytes.as_slice())
        .unwrap()
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"pg1/backup-smb".to_vec(), b"pg1-control".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let _ = tls.shutdown().await;
            }
        }
    });

    let back = round_trip(pair.tunnel, b"to the rogue")
        .await
        .unwrap_or_default();
    assert!(back.is_empty(), "nothing may pass to a rogue server");
    let v = pair.site1.wait_audit("outbound profile_violation", |v| {
        v["event"] == "connection"
            && v["direction"] == "outbound"
            && v["reason"] == "profile_violation"
    });
    assert!(
        v["detail"].as_str().unwrap().contains("pool_first_san"),
        "{v}"
    );
}
