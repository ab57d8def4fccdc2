//! `pairgate cert rotate`: a fresh key and certificate with the same SANs.
//!
//! Rotation must work exactly when operators need it most: after the
//! certificate has expired, or when the key file is lost or damaged. So the
//! old certificate is only parsed for its SANs (never validated) and the old
//! key is never read. The new certificate is signed by the CA currently in
//! the CA directory, which is also how gateways move to a new CA during a
//! rollover.
//!
//! [`Issued::write`](super::Issued::write) replaces `PREFIX.key` first, then
//! `PREFIX.crt`, each tmp + fsync + rename: a gateway that reloads when the
//! certificate changes always finds the matching key already in place.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::files::suffixed;
use super::{Ca, LeafRequest, PkiError, Validity};

/// The outcome of [`rotate_leaf`].
#[derive(Debug, Clone)]
pub struct LeafRotation {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The pool (first DNS SAN), unchanged.
    pub pool: String,
    /// All SANs of the new certificate, in certificate order.
    pub sans: Vec<String>,
    /// Lower-case hex SHA-256 of the replaced certificate.
    pub old_sha256: String,
    /// Lower-case hex SHA-256 of the new certificate.
    pub new_sha256: String,
    pub old_not_after: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub old_issuer: String,
    pub new_issuer: String,
}

/// Issues a new key and certificate with the SANs of `PREFIX.crt`, signed by
/// `ca`, and atomically replaces `PREFIX.key` then `PREFIX.crt`.
///
/// A `prefix` that names the certificate itself (`site1.crt`) is accepted
/// too. The current key is not read: it may be missing or corrupt.
///
/// # Errors
/// [`PkiError::NothingToRotate`] when there is no `PREFIX.crt`, the errors
/// of [`LeafRequest::from_cert_file`] for an unreadable certificate, and
/// those of [`Ca::issue`] and [`super::Issued::write`].
pub fn rotate_leaf(ca: &Ca, prefix: &Path, validity: Validity) -> Result<LeafRotation, PkiError> {
    let prefix = resolve_prefix(prefix);
    let cert_path = suffixed(&prefix, ".crt");
    if !cert_path.exists() {
        return Err(PkiError::NothingToRotate { path: cert_path });
    }
    let now = OffsetDateTime::now_utc();
    let old = super::inspect_file(&cert_path, now)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::NoCertificate {
            path: cert_path.clone(),
        })?;
    let request = LeafRequest::from_cert_file(&cert_path, validity)?;
    let issued = ca.issue(&request)?;
    let (cert_path, key_path) = issued.write(&prefix)?;
    let new = super::inspect_pem(&cert_path, issued.chain_pem.as_bytes(), now)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::NoCertificate {
            path: cert_path.clone(),
        })?;
    Ok(LeafRotation {
        cert_path,
        key_path,
        pool: request.pool,
        sans: new.sans,
        old_sha256: old.sha256,
        new_sha256: issued.sha256,
        old_not_after: old.not_after,
        not_after: new.not_after,
        old_issuer: old.issuer,
        new_issuer: new.issuer,
    })
}

/// `site1` stays `site1`; `site1.crt` becomes `site1` unless `site1.crt.crt` exists.
fn resolve_prefix(prefix: &Path) -> PathBuf {
    let as_given = suffixed(prefix, ".crt");
    match prefix.to_str().and_then(|s| s.strip_suffix(".crt")) {
        Some(stripped) if !as_given.exists() && prefix.exists() => PathBuf::from(stripped),
        _ => prefix.to_path_buf(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::pki::revoke::tests::verify;
    use crate::pki::{inspect_file, CA_CERT_FILE};
    use rcgen::KeyPair;
    use time::Duration;

    fn setup() -> (tempfile::TempDir, Ca) {
        let dir = tempfile::tempdir().unwrap();
        Ca::generate("rotate CA", Validity::days_from_now(365))
            .unwrap()
            .write_new(dir.path())
            .unwrap();
        let ca = Ca::load(dir.path()).unwrap();
        (dir, ca)
    }

    fn issue(ca: &Ca, prefix: &Path, validity: Validity) {
        let req = LeafRequest {
            pool: "pool01.site1.example".into(),
            dns: vec!["gw1.site1.example".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            validity,
        };
        ca.issue(&req).unwrap().write(prefix).unwrap();
    }

    /// The key file's public half equals the certificate's.
    fn key_matches(prefix: &Path) -> bool {
        let key = std::fs::read_to_string(suffixed(prefix, ".key")).unwrap();
        let key = KeyPair::from_pem(&key).unwrap();
        let crt = crate::pki::revoke::first_certificate(&suffixed(prefix, ".crt")).unwrap();
        let (_, x509) = x509_parser::parse_x509_certificate(&crt).unwrap();
        key.public_key_der() == x509.public_key().raw
    }

    #[test]
    fn rotation_keeps_sans_and_changes_key_and_fingerprint() {
        let (dir, ca) = setup();
        let prefix = dir.path().join("site1");
        issue(&ca, &prefix, Validity::days_from_now(5));
        let now = OffsetDateTime::now_utc();
        let before = inspect_file(&suffixed(&prefix, ".crt"), now).unwrap();
        let old_key = std::fs::read(suffixed(&prefix, ".key")).unwrap();

        let done = rotate_leaf(&ca, &prefix, Validity::days_from_now(90)).unwrap();
        let after = inspect_file(&done.cert_path, now).unwrap();
        assert_eq!(after[0].sans, before[0].sans);
        assert_eq!(done.sans, before[0].sans);
        assert_eq!(done.pool, "pool01.site1.example");
        assert_eq!(done.old_sha256, before[0].sha256);
        assert_ne!(done.new_sha256, done.old_sha256);
        assert_eq!(after[0].sha256, done.new_sha256);
        assert_ne!(after[0].serial, before[0].serial);
        assert!((89..=90).contains(&after[0].days_left));
        assert_ne!(std::fs::read(&done.key_path).unwrap(), old_key);
        assert!(key_matches(&prefix));
        crate::pki::check_key_permissions(&done.key_path).unwrap();
        verify(&dir.path().join(CA_CERT_FILE), None, &done.cert_path).unwrap();
        // No temporary files left next to the certificate.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn expired_certificate_with_missing_key_is_rotated() {
        let (dir, ca) = setup();
        let prefix = dir.path().join("site1");
        let now = OffsetDateTime::now_utc();
        let expired = Validity {
            not_before: now - Duration::days(30),
            not_after: now - Duration::days(1),
        };
        issue(&ca, &prefix, expired);
        let ca_crt = dir.path().join(CA_CERT_FILE);
        assert!(verify(&ca_crt, None, &suffixed(&prefix, ".crt")).is_err());
        std::fs::remove_file(suffixed(&prefix, ".key")).unwrap();

        let done = rotate_leaf(&ca, &prefix, Validity::days_from_now(30)).unwrap();
        assert!(done.old_not_after < now && done.not_after > now);
        assert!(key_matches(&prefix));
        verify(&ca_crt, None, &done.cert_path).unwrap();
    }

    #[test]
    fn corrupt_key_is_replaced_and_crt_suffix_is_accepted() {
        let (dir, ca) = setup();
        let prefix = dir.path().join("pool01.site1.example");
        issue(&ca, &prefix, Validity::days_from_now(5));
        std::fs::write(suffixed(&prefix, ".key"), b"not a key").unwrap();
        let done =
            rotate_leaf(&ca, &suffixed(&prefix, ".crt"), Validity::days_from_now(5)).unwrap();
        assert_eq!(done.cert_path, suffixed(&prefix, ".crt"));
        assert!(key_matches(&prefix));
    }

    #[test]
    fn missing_certificate_says_issue_first() {
        let (dir, ca) = setup();
        let err =
            rotate_leaf(&ca, &dir.path().join("nope"), Validity::days_from_now(5)).unwrap_err();
        assert!(matches!(err, PkiError::NothingToRotate { .. }), "{err}");
        assert!(err.to_string().contains("pairgate cert issue"));
        assert!(!dir.path().join("nope.key").exists());
    }
}
