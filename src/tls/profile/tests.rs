//! The profile rule by rule, on certificates minted with rcgen.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
use super::*;
use crate::pki::{Ca, LeafRequest, Validity};
use rcgen::{
    CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    KeyPair, KeyUsagePurpose, NameConstraints, SanType, PKCS_ECDSA_P256_SHA256,
};

fn ca() -> Ca {
    Ca::generate("profile CA", Validity::days_from_now(30)).unwrap()
}

/// The parameters `pairgate cert issue` uses (see `pki::leaf::sign`).
fn issued_params() -> CertificateParams {
    let mut p = CertificateParams::new(vec!["pool01.site1.example".to_owned()]).unwrap();
    p.distinguished_name
        .push(DnType::CommonName, "pool01.site1.example");
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p.use_authority_key_identifier_extension = true;
    let v = Validity::days_from_now(10);
    p.not_before = v.not_before;
    p.not_after = v.not_after;
    p
}

fn mint(ca: &Ca, change: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
    let mut params = issued_params();
    change(&mut params);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let (issuer, issuer_key) = ca.signer();
    params
        .signed_by(&key, issuer, issuer_key)
        .unwrap()
        .der()
        .to_vec()
}

fn rule(ca: &Ca, change: impl FnOnce(&mut CertificateParams)) -> &'static str {
    let der = mint(ca, change);
    let err = check(&der, ca.cert_der()).unwrap_err();
    // The rustls form carries the same violation.
    let wrapped = Issuers::new(std::slice::from_ref(ca.cert_der()))
        .verify(&der)
        .unwrap_err();
    assert_eq!(violation_of(&wrapped), Some(&err));
    assert!(err.to_string().contains(err.rule), "{err}");
    err.rule
}

#[test]
fn what_cert_issue_makes_passes() {
    let ca = ca();
    let issued = ca
        .issue(&LeafRequest {
            pool: "pool01.site1.example".into(),
            dns: vec!["gw1.site1.example".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Validity::days_from_now(5),
        })
        .unwrap();
    let pem = pem::parse_many(issued.chain_pem.as_bytes()).unwrap();
    check(pem[0].contents(), ca.cert_der()).unwrap();
    check_leaf_alone(pem[0].contents()).unwrap();
    Issuers::new(std::slice::from_ref(ca.cert_der()))
        .check(pem[0].contents())
        .unwrap();
    // The same parameters minted here pass too (the test helper is faithful).
    check(&mint(&ca, |_| {}), ca.cert_der()).unwrap();
}

#[test]
fn each_rule_is_enforced() {
    let ca = ca();
    use rcgen::BasicConstraints;
    assert_eq!(
        rule(&ca, |p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)),
        "not_ca"
    );
    assert_eq!(
        rule(&ca, |p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)),
        "key_usage"
    );
    assert_eq!(rule(&ca, |p| p.key_usages.clear()), "key_usage");
    assert_eq!(
        rule(&ca, |p| p.extended_key_usages.truncate(1)),
        "extended_key_usage"
    );
    assert_eq!(
        rule(&ca, |p| p
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::CodeSigning)),
        "extended_key_usage"
    );
    assert_eq!(
        rule(&ca, |p| p
            .subject_alt_names
            .insert(0, SanType::IpAddress("127.0.0.9".parse().unwrap()))),
        "pool_first_san"
    );
    assert_eq!(rule(&ca, |p| p.subject_alt_names.clear()), "pool_first_san");
    assert_eq!(
        rule(&ca, |p| p.not_after += time::Duration::days(60)),
        "validity"
    );
    assert_eq!(
        rule(&ca, |p| {
            p.name_constraints = Some(NameConstraints {
                permitted_subtrees: vec![GeneralSubtree::DnsName("site1.example".into())],
                excluded_subtrees: vec![],
            })
        }),
        "name_constraints"
    );
    // policyConstraints (2.5.29.36): SEQUENCE { [0] requireExplicitPolicy 0 }.
    assert_eq!(
        rule(&ca, |p| p.custom_extensions.push(
            CustomExtension::from_oid_content(&[2, 5, 29, 36], vec![0x30, 0x03, 0x80, 0x01, 0x00])
        )),
        "policy_constraints"
    );
    assert_eq!(
        rule(&ca, |p| p.use_authority_key_identifier_extension = false),
        "authority_key_id"
    );
    // An AKI naming another key: keyIdentifier [0] of 20 bytes.
    let mut aki = vec![0x30, 22, 0x80, 20];
    aki.extend([0xab; 20]);
    assert_eq!(
        rule(&ca, |p| {
            p.use_authority_key_identifier_extension = false;
            p.custom_extensions
                .push(CustomExtension::from_oid_content(&[2, 5, 29, 35], aki));
        }),
        "authority_key_id"
    );
}

#[test]
fn a_leaf_of_another_ca_has_no_issuer_in_the_bundle() {
    let (ours, theirs) = (ca(), ca());
    let der = mint(&theirs, |_| {});
    let err = Issuers::new(std::slice::from_ref(ours.cert_der()))
        .check(&der)
        .unwrap_err();
    assert_eq!(err.rule, "issuer");
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let ca = ca();
    let der = mint(&ca, |_| {});
    for len in [0, 1, 10, der.len() / 2, der.len() - 1] {
        assert_eq!(
            check(&der[..len], ca.cert_der()).unwrap_err().rule,
            "malformed"
        );
    }
    let mut trailing = der.clone();
    trailing.push(0);
    assert_eq!(
        check(&trailing, ca.cert_der()).unwrap_err().rule,
        "malformed"
    );
}
