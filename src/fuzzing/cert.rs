//! Certificate bytes from a peer or an operator: the peer identity the proxy
//! pins to the pair ([`crate::tls::identity_of`]) and what `cert inspect`
//! prints ([`crate::pki::inspect_der`], [`crate::pki::inspect_pem`]).
//!
//! The two parsers are independent reads of the same DER, so the targets
//! cross-check them: whatever `inspect_der` accepts as exactly one
//! certificate, `identity_of` must read with the same fingerprint and expiry.

use std::path::Path;

use time::OffsetDateTime;

use crate::pki::{inspect_der, inspect_pem, sha256_hex, CertInfo};
use crate::tls::{fingerprint, identity_of, IdentityError};

/// The fixed "now" of the certificate targets (2026-01-01T00:00:00Z), so a
/// finding replays the same way on any day.
pub const FUZZ_NOW: i64 = 1_767_225_600;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(FUZZ_NOW).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Reads `data` as a peer's leaf certificate. Never panics.
pub fn fuzz_identity(data: &[u8]) {
    let identity = identity_of(data);
    if let Ok(id) = &identity {
        assert_eq!(id.sha256, fingerprint(data));
        assert_eq!(
            id.pool,
            id.pool.to_ascii_lowercase(),
            "identity not lower-cased"
        );
    }
    // Cross-check with the independent inspection of the same bytes.
    if let Ok(info) = inspect_der(data, now()) {
        match &identity {
            Ok(id) => {
                assert_eq!(id.not_after, info.not_after.unix_timestamp());
                assert!(
                    info.sans.iter().any(|s| s.eq_ignore_ascii_case(&id.pool)),
                    "identity {} is not among the SANs {:?}",
                    id.pool,
                    info.sans
                );
            }
            Err(IdentityError::NoDnsSan) => {}
            Err(e) => panic!("inspect_der accepts a certificate identity_of rejects: {e}"),
        }
    }
}

/// Reads `data` as one DER certificate and as a PEM file, as
/// `pairgate cert inspect` does. Never panics.
pub fn fuzz_cert_inspect(data: &[u8]) {
    let now = now();
    if let Ok(info) = inspect_der(data, now) {
        check_info(&info, data, now);
    }
    match inspect_pem(Path::new("/fuzz/cert.pem"), data, now) {
        Ok(infos) => assert!(!infos.is_empty()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("/fuzz/cert.pem"),
                "error does not name the file: {msg}"
            );
        }
    }
}

/// Reads `data` as a peer leaf and its issuing CA, as the TLS verifiers'
/// profile check does: a big-endian u16 length, that many bytes of leaf
/// DER, the rest the CA's DER. Never panics.
///
/// Property: a leaf the profile accepts is a gateway certificate as the
/// rest of pairgate reads it — `identity_of` names the first SAN as its
/// pool, `inspect_der` sees no CA and an end no later than the CA's — and
/// it passes the issuer-free half of the profile too.
pub fn fuzz_profile(data: &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        let _ = crate::tls::profile::check_leaf_alone(data);
        return;
    };
    let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
    let (leaf, ca) = rest.split_at(len);
    let verdict = crate::tls::profile::check(leaf, ca);
    let alone = crate::tls::profile::check_leaf_alone(leaf);
    if let Err(v) = &verdict {
        assert!(!v.rule.is_empty() && !v.to_string().contains('\n'));
    }
    if verdict.is_err() {
        return;
    }
    assert!(
        alone.is_ok(),
        "the full profile passes, its half fails: {alone:?}"
    );
    let id = identity_of(leaf).unwrap_or_else(|e| panic!("profile passes, identity fails: {e}"));
    let info =
        inspect_der(leaf, now()).unwrap_or_else(|e| panic!("profile passes, inspect fails: {e}"));
    let ca_info =
        inspect_der(ca, now()).unwrap_or_else(|e| panic!("profile passes, CA inspect fails: {e}"));
    assert!(!info.is_ca, "the profile accepted a CA certificate");
    assert!(
        info.not_after <= ca_info.not_after,
        "the leaf outlives its CA"
    );
    assert!(
        info.sans
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case(&id.pool)),
        "identity {} is not the first SAN of {:?}",
        id.pool,
        info.sans
    );
}

fn check_info(info: &CertInfo, der: &[u8], now: OffsetDateTime) {
    assert_eq!(info.sha256, sha256_hex(der));
    assert_eq!(info.sha256, fingerprint(der));
    let expected_days = (info.not_after - now).whole_seconds().div_euclid(86_400);
    assert_eq!(info.days_left, expected_days);
    let _ = info.is_valid_at(now);
    // What `cert inspect --json` prints must print.
    if let Err(e) = serde_json::to_string(info) {
        panic!("an inspected certificate does not serialize: {e}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::pki::{Ca, LeafRequest, Validity};

    #[test]
    fn issued_certificate_passes_both_targets_and_cross_checks() {
        let ca = Ca::generate("fuzz test CA", Validity::days_from_now(30)).unwrap();
        let req = LeafRequest {
            pool: "Pool01.Site1.example".into(),
            dns: vec!["gw1.site1.example".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Validity::days_from_now(10),
        };
        let issued = ca.issue(&req).unwrap();
        let pem = issued.chain_pem.as_bytes();
        let leaf = rustls_pemfile::certs(&mut &pem[..])
            .next()
            .unwrap()
            .unwrap();
        let der = leaf.to_vec();
        fuzz_cert_inspect(pem);
        let id = identity_of(&der).unwrap();
        assert_eq!(id.pool, "pool01.site1.example");
        fuzz_identity(&der);
        fuzz_cert_inspect(&der);
        // One byte more: inspect refuses trailing bytes, identity tolerates them.
        let mut longer = der.clone();
        longer.push(0);
        assert!(inspect_der(&longer, now()).is_err());
        fuzz_identity(&longer);
    }

    #[test]
    fn issued_certificate_passes_the_profile_target() {
        let ca = Ca::generate("fuzz test CA", Validity::days_from_now(30)).unwrap();
        let req = LeafRequest {
            pool: "pool01.site1.example".into(),
            dns: vec![],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Validity::days_from_now(10),
        };
        let issued = ca.issue(&req).unwrap();
        let pem = issued.chain_pem.as_bytes();
        let leaf = rustls_pemfile::certs(&mut &pem[..])
            .next()
            .unwrap()
            .unwrap();
        let input = profile_input(&leaf, ca.cert_der());
        assert!(crate::tls::profile::check(&leaf, ca.cert_der()).is_ok());
        fuzz_profile(&input);
        fuzz_profile(&input[..input.len() / 2]);
        fuzz_profile(&[]);
        // The committed seed reaches the accepting branch (the property).
        let seed = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/cert_profile/site1-and-ca.bin"),
        )
        .unwrap();
        let (len, rest) = seed.split_at(2);
        let (leaf, ca) = rest.split_at(usize::from(u16::from_be_bytes([len[0], len[1]])));
        crate::tls::profile::check(leaf, ca).unwrap();
    }

    /// The committed `cert_profile` seed: a leaf `cert issue` made, then its CA.
    pub(crate) fn profile_input(leaf: &[u8], ca: &[u8]) -> Vec<u8> {
        let mut input = u16::try_from(leaf.len()).unwrap().to_be_bytes().to_vec();
        input.extend_from_slice(leaf);
        input.extend_from_slice(ca);
        input
    }
}
