//! Unit tests of `ca.rs`.

use super::*;
use crate::pki::{inspect_file, inspect_pem};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

fn request(validity: Validity) -> LeafRequest {
    LeafRequest {
        pool: "pool01.site1.example".into(),
        dns: vec!["gw1.site1.example".into()],
        ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
        validity,
    }
}

fn leaf_der(issued: &Issued) -> CertificateDer<'static> {
    let certs =
        crate::pki::inspect::pem_certificates(Path::new("t"), issued.chain_pem.as_bytes()).unwrap();
    assert_eq!(certs.len(), 2);
    certs[0].clone()
}

/// Verifies `leaf` against `ca_der` as both TLS server and client certificate.
fn webpki_verify(
    ca_der: &CertificateDer<'static>,
    leaf: &CertificateDer<'_>,
) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_der.clone()).unwrap();
    let roots = Arc::new(roots);
    let now = UnixTime::now();
    let server = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from("pool01.site1.example").unwrap();
    server.verify_server_cert(leaf, &[], &name, &[], now)?;
    let client = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();
    client.verify_client_cert(leaf, &[], now)?;
    Ok(())
}

#[test]
fn issue_and_inspect_round_trip() {
    let ca = Ca::generate("test CA", Validity::days_from_now(30)).unwrap();
    let issued = ca.issue(&request(Validity::days_from_now(10))).unwrap();
    let now = OffsetDateTime::now_utc();
    let infos = inspect_pem(Path::new("t.crt"), issued.chain_pem.as_bytes(), now).unwrap();
    assert_eq!(infos.len(), 2);
    let leaf = &infos[0];
    assert_eq!(
        leaf.sans,
        [
            "pool01.site1.example",
            "gw1.site1.example",
            "127.0.0.1",
            "::1"
        ]
    );
    assert_eq!(leaf.subject, "CN=pool01.site1.example, O=pairgate");
    assert_eq!(leaf.issuer, "CN=test CA, O=pairgate");
    assert!((9..=10).contains(&leaf.days_left), "{}", leaf.days_left);
    assert!(!leaf.is_ca);
    assert_eq!(leaf.serial.len(), 32);
    let der = leaf_der(&issued);
    assert_eq!(leaf.sha256, crate::pki::sha256_hex(&der));
    assert_eq!(leaf.sha256, issued.sha256);
    let ca_info = &infos[1];
    assert!(ca_info.is_ca);
    assert_eq!(ca_info.subject, ca_info.issuer);
    assert_eq!(ca_info.sha256, crate::pki::sha256_hex(ca.cert_der()));
    webpki_verify(ca.cert_der(), &der).unwrap();
}

#[test]
fn loaded_ca_signs_leaves_that_chain_to_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let original = Ca::generate("pairing CA", Validity::days_from_now(30)).unwrap();
    original.write_new(dir.path()).unwrap();
    let loaded = Ca::load(dir.path()).unwrap();
    assert_eq!(loaded.cert_der(), original.cert_der());
    assert_eq!(loaded.cert_pem(), original.cert_pem());
    let issued = loaded.issue(&request(Validity::days_from_now(5))).unwrap();
    // The chain's CA is the on-disk one.
    let on_disk = std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap();
    assert!(issued.chain_pem.ends_with(&on_disk));
    webpki_verify(original.cert_der(), &leaf_der(&issued)).unwrap();
    // The leaf's issuer and AKI are the original's subject and SKI, byte for byte.
    let leaf = leaf_der(&issued);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let (_, root) = x509_parser::parse_x509_certificate(original.cert_der()).unwrap();
    assert_eq!(leaf.issuer().as_raw(), root.subject().as_raw());
    let ski = root
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        });
    let aki = leaf
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0)
            }
            _ => None,
        });
    assert!(ski.is_some());
    assert_eq!(aki, ski);
    // And a different CA does not accept it.
    let other = Ca::generate("pairing CA", Validity::days_from_now(30)).unwrap();
    assert!(webpki_verify(other.cert_der(), &leaf_der(&issued)).is_err());
}

#[test]
fn write_new_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::generate("one", Validity::days_from_now(30)).unwrap();
    first.write_new(dir.path()).unwrap();
    let second = Ca::generate("two", Validity::days_from_now(30)).unwrap();
    let err = second.write_new(dir.path()).unwrap_err();
    assert!(matches!(err, PkiError::CaExists { .. }));
    assert!(err.to_string().contains("pairgate ca rotate"));
    let on_disk = std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap();
    assert_eq!(on_disk, first.cert_pem());
    // A lone ca.key also blocks, and is left untouched.
    let lone = tempfile::tempdir().unwrap();
    std::fs::write(lone.path().join(CA_KEY_FILE), "keep").unwrap();
    assert!(matches!(
        second.write_new(lone.path()),
        Err(PkiError::CaExists { .. })
    ));
    assert!(!lone.path().join(CA_CERT_FILE).exists());
}

#[cfg(unix)]
#[test]
fn ca_key_is_0600_and_readable_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("new/ca");
    Ca::generate("m", Validity::days_from_now(30))
        .unwrap()
        .write_new(&ca_dir)
        .unwrap();
    let key = ca_dir.join(CA_KEY_FILE);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&ca_dir.join(CA_CERT_FILE)), 0o644);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Ca::load(&ca_dir).unwrap_err();
    assert!(err
        .to_string()
        .contains(&format!("chmod 600 {}", key.display())));
}

#[test]
fn mismatched_key_is_refused() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    Ca::generate("a", Validity::days_from_now(30))
        .unwrap()
        .write_new(a.path())
        .unwrap();
    Ca::generate("b", Validity::days_from_now(30))
        .unwrap()
        .write_new(b.path())
        .unwrap();
    std::fs::copy(b.path().join(CA_CERT_FILE), a.path().join("other.crt")).unwrap();
    std::fs::rename(a.path().join("other.crt"), a.path().join(CA_CERT_FILE)).unwrap();
    assert!(matches!(
        Ca::load(a.path()),
        Err(PkiError::KeyMismatch { .. })
    ));
}

#[test]
fn leaf_written_to_disk_is_0600_and_inspectable() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::generate("w", Validity::days_from_now(30)).unwrap();
    let issued = ca.issue(&request(Validity::days_from_now(5))).unwrap();
    let (crt, key) = issued
        .write(&dir.path().join("certs/pool01.site1.example"))
        .unwrap();
    assert!(crt.ends_with("pool01.site1.example.crt"));
    crate::pki::check_key_permissions(&key).unwrap();
    let infos = inspect_file(&crt, OffsetDateTime::now_utc()).unwrap();
    assert_eq!(infos[0].sha256, issued.sha256);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    // The written key matches the certificate.
    let kp = KeyPair::from_pem(&key_pem).unwrap();
    let der = leaf_der(&issued);
    let (_, x509) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert_eq!(kp.public_key_der(), x509.public_key().raw);
    // Rotation input: same SANs.
    let again = LeafRequest::from_cert_file(&crt, Validity::days_from_now(1)).unwrap();
    assert_eq!(again.pool, "pool01.site1.example");
    assert_eq!(again.dns, ["gw1.site1.example"]);
    assert_eq!(again.ips.len(), 2);
}

#[test]
fn expired_and_future_windows_round_trip() {
    let ca = Ca::generate("t", Validity::days_from_now(60)).unwrap();
    let now = OffsetDateTime::now_utc();
    let past = Validity {
        not_before: now - Duration::days(20),
        not_after: now - Duration::days(10) - Duration::hours(1),
    };
    let issued = ca.issue(&request(past)).unwrap();
    let info = &inspect_pem(Path::new("p"), issued.chain_pem.as_bytes(), now).unwrap()[0];
    assert_eq!(info.days_left, -11);
    assert!(!info.is_valid_at(now));
    assert_eq!(
        info.not_after.unix_timestamp(),
        past.not_after.unix_timestamp()
    );
    let err = webpki_verify(ca.cert_der(), &leaf_der(&issued)).unwrap_err();
    assert!(format!("{err:?}").contains("Expired"), "{err:?}");

    let future = Validity {
        not_before: now + Duration::days(2),
        not_after: now + Duration::days(40),
    };
    let issued = ca.issue(&request(future)).unwrap();
    let info = &inspect_pem(Path::new("f"), issued.chain_pem.as_bytes(), now).unwrap()[0];
    assert!(!info.is_valid_at(now));
    assert!(info.days_left >= 39);
}

#[test]
fn a_leaf_never_outlives_its_ca() {
    let ca = Ca::generate("short", Validity::days_from_now(10)).unwrap();
    let issued = ca.issue(&request(Validity::days_from_now(397))).unwrap();
    assert_eq!(Some(issued.not_after), ca.not_after());
    let now = OffsetDateTime::now_utc();
    let leaf = &inspect_pem(Path::new("c"), issued.chain_pem.as_bytes(), now).unwrap()[0];
    assert_eq!(
        leaf.not_after.unix_timestamp(),
        ca.not_after().unwrap().unix_timestamp()
    );
    crate::tls::profile::check(&leaf_der(&issued), ca.cert_der()).unwrap();
}

#[test]
fn bad_requests_are_refused() {
    let ca = Ca::generate("t", Validity::days_from_now(30)).unwrap();
    for pool in [
        "",
        "not a name",
        "*.site1.example",
        "127.0.0.1",
        "ünï.example",
    ] {
        let mut req = request(Validity::days_from_now(1));
        req.pool = pool.into();
        let err = ca.issue(&req).unwrap_err();
        assert!(matches!(err, PkiError::InvalidName { .. }), "{pool}: {err}");
    }
    let mut req = request(Validity::days_from_now(1));
    req.dns.push("bad_name!".into());
    assert!(matches!(ca.issue(&req), Err(PkiError::InvalidName { .. })));
    let now = OffsetDateTime::now_utc();
    req = request(Validity {
        not_before: now,
        not_after: now,
    });
    assert!(matches!(
        ca.issue(&req),
        Err(PkiError::InvalidValidity { .. })
    ));
    assert!(Ca::generate(" ", Validity::days_from_now(1)).is_err());
}

#[test]
fn ca_certificate_has_the_required_shape() {
    let ca = Ca::generate("shape", Validity::days_from_now(30)).unwrap();
    let (_, x509) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
    let bc = x509.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = x509.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    assert_eq!(x509.subject().to_string(), "CN=shape, O=pairgate");
    assert_eq!(pem_encode(ca.cert_der()), ca.cert_pem());
    assert!(ca.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(!format!("{ca:?}").contains("PRIVATE"));
}

#[test]
fn truncated_and_mutated_certificates_never_panic() {
    let ca = Ca::generate("fuzz", Validity::days_from_now(30)).unwrap();
    let issued = ca.issue(&request(Validity::days_from_now(5))).unwrap();
    let der = leaf_der(&issued).to_vec();
    let now = OffsetDateTime::now_utc();
    for len in 0..der.len() {
        assert!(
            crate::pki::inspect_der(&der[..len], now).is_err(),
            "prefix {len}"
        );
    }
    // Deterministic byte flips (xorshift), every position several times.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..4 * der.len() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut bytes = der.clone();
        bytes[round % der.len()] ^= (state as u8) | 1;
        let _ = crate::pki::inspect_der(&bytes, now);
    }
}
