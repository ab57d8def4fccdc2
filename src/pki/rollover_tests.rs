//! Unit tests of `rollover.rs`.

use super::*;
use crate::pki::revoke::tests::{issue_to, request, verify};
use crate::pki::{inspect_file, revoke, revoked_serials, rotate_leaf};
use rustls::{CertificateError, Error};

const REVOKED: Result<(), Error> = Err(Error::InvalidCertificate(CertificateError::Revoked));

fn options(force: bool) -> CaRotateOptions {
    CaRotateOptions {
        name: None,
        validity: Validity::days_from_now(60),
        force_drop_previous: force,
    }
}

fn init(dir: &Path) -> Ca {
    Ca::generate("pairing CA", Validity::days_from_now(60))
        .unwrap()
        .write_new(dir)
        .unwrap();
    Ca::load(dir).unwrap()
}

#[test]
fn rotation_writes_bundle_and_previous_and_both_generations_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = init(dir);
    let old_leaf = issue_to(dir, &old, "pool01.site1.example", "site1");

    let done = rotate_ca(dir, &options(false)).unwrap();
    assert!(!done.resumed && done.dropped_sha256.is_none() && done.crl_path.is_none());
    assert_eq!(
        (done.old_name.as_str(), done.name.as_str()),
        ("pairing CA", "pairing CA #2")
    );
    let new = Ca::load(dir).unwrap();
    assert_eq!(
        new.cert_der(),
        &first_certificate(&dir.join(CA_CERT_FILE)).unwrap()
    );
    assert_eq!(done.new_sha256, sha256_hex(new.cert_der()));
    let kept = Ca::load(&dir.join(PREVIOUS_DIR)).unwrap();
    assert_eq!(kept.cert_der(), old.cert_der());
    crate::pki::check_key_permissions(&dir.join("previous/ca.key")).unwrap();

    let now = OffsetDateTime::now_utc();
    let bundle = inspect_file(&done.bundle_path, now).unwrap();
    let fingerprints: Vec<&str> = bundle.iter().map(|c| c.sha256.as_str()).collect();
    assert_eq!(
        fingerprints,
        [done.new_sha256.as_str(), done.old_sha256.as_str()]
    );

    // site 2 already moved to the new CA, site 1 not yet: both are trusted.
    let new_leaf = issue_to(dir, &new, "pool02.site2.example", "site2");
    verify(&done.bundle_path, None, &old_leaf).unwrap();
    verify(&done.bundle_path, None, &new_leaf).unwrap();
    assert!(verify(&dir.join(CA_CERT_FILE), None, &old_leaf).is_err());
    // cert rotate moves site 1 to the new CA.
    rotate_leaf(&new, &dir.join("site1"), Validity::days_from_now(5)).unwrap();
    verify(&dir.join(CA_CERT_FILE), None, &old_leaf).unwrap();
}

#[test]
fn old_ca_leaves_are_revoked_with_the_previous_key_after_rotation() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = init(dir);
    let a = issue_to(dir, &old, "pool01.site1.example", "a");
    let b = issue_to(dir, &old, "pool02.site2.example", "b");
    let now = OffsetDateTime::now_utc();
    revoke(&request(dir, &a), now).unwrap();

    let done = rotate_ca(dir, &options(false)).unwrap();
    let crl_path = done.crl_path.clone().unwrap();
    // The new CA's (empty) CRL first, then the previous CA's.
    let crls = crate::pki::inspect_crl_file(&crl_path).unwrap();
    assert_eq!(crls.len(), 2);
    assert!(crls[0].revoked.is_empty() && crls[0].issuer.contains("#2"));
    assert_eq!(crls[1].revoked.len(), 1);
    assert_eq!(REVOKED, verify(&done.bundle_path, Some(&crl_path), &a));
    verify(&done.bundle_path, Some(&crl_path), &b).unwrap();

    let new = Ca::load(dir).unwrap();
    let c = issue_to(dir, &new, "pool02.site2.example", "c");
    let revoked_b = revoke(&request(dir, &b), now).unwrap();
    assert!(revoked_b.by_previous_ca);
    assert_eq!(revoked_b.crl.number, 2);
    assert_eq!(REVOKED, verify(&done.bundle_path, Some(&crl_path), &b));
    assert_eq!(REVOKED, verify(&done.bundle_path, Some(&crl_path), &a));
    verify(&done.bundle_path, Some(&crl_path), &c).unwrap();
    let prev_crl = dir.join(PREVIOUS_DIR).join(CRL_FILE);
    assert_eq!(revoked_serials(&prev_crl).unwrap().len(), 2);

    let revoked_c = revoke(&request(dir, &c), now).unwrap();
    assert!(!revoked_c.by_previous_ca);
    assert_eq!(REVOKED, verify(&done.bundle_path, Some(&crl_path), &c));
    assert_eq!(REVOKED, verify(&done.bundle_path, Some(&crl_path), &b));
    assert_eq!(revoked_serials(&crl_path).unwrap().len(), 3);
}

#[test]
fn first_crl_after_rotation_comes_from_the_previous_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = init(dir);
    let a = issue_to(dir, &old, "pool01.site1.example", "a");
    let done = rotate_ca(dir, &options(false)).unwrap();
    let revoked = revoke(&request(dir, &a), OffsetDateTime::now_utc()).unwrap();
    assert!(revoked.by_previous_ca && revoked.crl.number == 1);
    assert_eq!(
        REVOKED,
        verify(&done.bundle_path, Some(&revoked.crl_path), &a)
    );
}

#[test]
fn second_rotation_needs_force_and_then_drops_the_oldest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let first = init(dir);
    let one = rotate_ca(dir, &options(false)).unwrap();
    let err = rotate_ca(dir, &options(false)).unwrap_err();
    assert!(matches!(err, PkiError::PreviousCaExists { .. }), "{err}");
    assert!(err.to_string().contains("--force-drop-previous"));
    assert_eq!(
        sha256_hex(Ca::load(dir).unwrap().cert_der()),
        one.new_sha256
    );

    let two = rotate_ca(dir, &options(true)).unwrap();
    assert_eq!(two.dropped_sha256, Some(sha256_hex(first.cert_der())));
    assert_eq!(two.name, "pairing CA #3");
    assert_eq!(two.old_sha256, one.new_sha256);
    let kept = Ca::load(&dir.join(PREVIOUS_DIR)).unwrap();
    assert_eq!(sha256_hex(kept.cert_der()), one.new_sha256);
    assert!(!dir.join(DROPPING_DIR).exists());

    let mut same = options(true);
    same.name = Some("pairing CA #3".into());
    let err = rotate_ca(dir, &same).unwrap_err();
    assert!(matches!(err, PkiError::SameCaName { .. }), "{err}");
}

#[test]
fn interrupted_rotation_resumes_without_losing_the_old_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = init(dir);
    let old_key = std::fs::read_to_string(dir.join(CA_KEY_FILE)).unwrap();
    // Crash after step 1 and a half-done step 3: previous/ staged,
    // ca.key already replaced, ca.crt still the old one.
    stage_previous(dir, &old, None).unwrap();
    let stray = Ca::generate("stray", Validity::days_from_now(1)).unwrap();
    write_secret_file(&dir.join(CA_KEY_FILE), stray.key_pem().as_bytes()).unwrap();
    assert!(Ca::load(dir).is_err());
    // And a stale staging folder from an even earlier crash.
    std::fs::create_dir(dir.join(STAGING_DIR)).unwrap();

    let done = rotate_ca(dir, &options(false)).unwrap();
    assert!(done.resumed);
    assert_eq!(done.old_sha256, sha256_hex(old.cert_der()));
    Ca::load(dir).unwrap();
    let kept = Ca::load(&dir.join(PREVIOUS_DIR)).unwrap();
    assert_eq!(kept.cert_der(), old.cert_der());
    let kept_key = std::fs::read_to_string(dir.join("previous/ca.key")).unwrap();
    assert_eq!(
        rcgen::KeyPair::from_pem(&kept_key)
            .unwrap()
            .public_key_der(),
        rcgen::KeyPair::from_pem(&old_key).unwrap().public_key_der()
    );
    assert!(!dir.join(STAGING_DIR).exists());
    // Finished now: a further run is refused.
    assert!(matches!(
        rotate_ca(dir, &options(false)),
        Err(PkiError::PreviousCaExists { .. })
    ));
}

#[test]
fn gateway_loader_accepts_the_overlap_files() {
    use crate::tls::{Material, Sources};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let old = init(dir);
    let site1 = issue_to(dir, &old, "pool01.site1.example", "site1");
    let site2 = issue_to(dir, &old, "pool02.site2.example", "site2");
    revoke(&request(dir, &site2), OffsetDateTime::now_utc()).unwrap();
    let done = rotate_ca(dir, &options(false)).unwrap();
    let sources = |name: &str| Sources {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
        ca: done.bundle_path.clone(),
        crl: done.crl_path.clone(),
        crl_kept: None,
        crl_overdue: Default::default(),
    };
    // Site 1 still on the old CA, then moved to the new one: both load.
    Material::load(&sources("site1"), "pool01.site1.example").unwrap();
    rotate_leaf(
        &Ca::load(dir).unwrap(),
        &dir.join("site1"),
        Validity::days_from_now(5),
    )
    .unwrap();
    Material::load(&sources("site1"), "pool01.site1.example").unwrap();
    // The revoked site 2 certificate is refused, its rotated successor is not.
    let err = Material::load(&sources("site2"), "pool02.site2.example").unwrap_err();
    assert!(err.to_string().to_lowercase().contains("revoked"), "{err}");
    rotate_leaf(
        &Ca::load(dir).unwrap(),
        &dir.join("site2"),
        Validity::days_from_now(5),
    )
    .unwrap();
    Material::load(&sources("site2"), "pool02.site2.example").unwrap();
    drop(site1);
}

/// Why `SameCaName` exists: with two same-named CAs, webpki checks a
/// leaf of the second against the first one's CRL and refuses it.
#[test]
fn same_named_cas_break_revocation_checks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let a = Ca::generate("twin", Validity::days_from_now(5)).unwrap();
    let b = Ca::generate("twin", Validity::days_from_now(5)).unwrap();
    let leaf_b = issue_to(dir, &b, "pool01.site1.example", "b");
    let bundle = dir.join("bundle.crt");
    std::fs::write(&bundle, format!("{}{}", a.cert_pem(), b.cert_pem())).unwrap();
    let now = OffsetDateTime::now_utc();
    let crl_a = crl::sign(&a, 1, Vec::new(), now, 5).unwrap();
    let crl_b = crl::sign(&b, 1, Vec::new(), now, 5).unwrap();
    let crl_path = dir.join(CRL_FILE);
    std::fs::write(&crl_path, crl::pem_encode(&[&crl_a, &crl_b])).unwrap();
    assert!(verify(&bundle, Some(&crl_path), &leaf_b).is_err());
    std::fs::write(&crl_path, crl::pem_encode(&[&crl_b, &crl_a])).unwrap();
    verify(&bundle, Some(&crl_path), &leaf_b).unwrap();
}

#[test]
fn generation_names() {
    assert_eq!(next_generation("pairing CA"), "pairing CA #2");
    assert_eq!(next_generation("pairing CA #2"), "pairing CA #3");
    assert_eq!(next_generation("a #b"), "a #b #2");
    assert_eq!(next_generation(""), "pairgate pairing CA #2");
}
