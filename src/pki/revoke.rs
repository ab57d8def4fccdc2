//! `pairgate cert revoke`: add a gateway certificate to the CA's CRL.
//!
//! A lost or stolen gateway key must stop working at the peer as soon as the
//! new `ca.crl` reaches it (the gateway reloads `tls.crl` when it changes).
//!
//! # Which CA signs
//!
//! A CRL is only authoritative when signed by the CA that issued the
//! certificate. Normally that is the CA in `DIR`. During a CA rollover the
//! certificate may come from the previous CA, kept (key included) in
//! `DIR/previous/` until the overlap ends; its CRL is `DIR/previous/ca.crl`.
//!
//! # Files written
//!
//! - `DIR/previous/ca.crl` when the previous CA signed (its CRL alone);
//! - always `DIR/ca.crl`: the current CA's CRL, then (during a rollover) the
//!   previous CA's, as PEM. That one file is what both sites load as `tls.crl`.
//!
//! Each write is tmp + fsync + rename (0644). Revoking an already revoked
//! certificate changes no entry but still re-signs the CRL with the next
//! number and fresh dates, which is also how an operator refreshes a CRL.

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use super::crl::{self, CrlInfo, RevokeReason, CRL_FILE};
use super::files::write_public_file;
use super::inspect::pem_certificates;
use super::{Ca, PkiError, CA_CERT_FILE, PREVIOUS_DIR};

/// Default `--next-update-days`: the CRL's promised next update.
pub const DEFAULT_NEXT_UPDATE_DAYS: u32 = 30;

/// What to revoke, and how.
#[derive(Debug, Clone)]
pub struct RevokeRequest<'a> {
    /// The CA directory (`ca.crt`, `ca.key`, maybe `previous/`).
    pub ca_dir: &'a Path,
    /// A PEM file whose first certificate is the gateway certificate.
    pub cert: &'a Path,
    pub reason: RevokeReason,
    /// Days from now to the CRL's `nextUpdate`.
    pub next_update_days: u32,
}

/// The outcome of [`revoke`].
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Lower-case hex serial of the revoked certificate.
    pub serial: String,
    pub subject: String,
    /// The certificate was already on the CRL (no entry added).
    pub already_revoked: bool,
    /// The previous CA (in `DIR/previous`) issued it and signed the CRL.
    pub by_previous_ca: bool,
    /// The signing CA's new CRL.
    pub crl: CrlInfo,
    /// `DIR/ca.crl`, to be copied to both sites.
    pub crl_path: PathBuf,
}

/// Adds the first certificate of `req.cert` to the issuing CA's CRL and
/// rewrites `DIR/ca.crl` (created if missing); see the module docs.
///
/// # Errors
/// [`PkiError::RevokeCa`] for a CA certificate, [`PkiError::NotIssuedByCa`]
/// when neither the current nor the previous CA issued it, the errors of
/// [`Ca::load`], [`PkiError::BadCrl`] for an existing CRL that does not
/// parse, [`PkiError::Rcgen`] and [`PkiError::Io`].
pub fn revoke(req: &RevokeRequest<'_>, now: OffsetDateTime) -> Result<Revocation, PkiError> {
    revoke_with(req, now, &super::NoPassphrase)
}

/// Like [`revoke`], opening encrypted CA keys with `passphrase`.
///
/// # Errors
/// As [`revoke`], and those of [`Ca::load_with`].
pub fn revoke_with(
    req: &RevokeRequest<'_>,
    now: OffsetDateTime,
    passphrase: &dyn super::Passphrase,
) -> Result<Revocation, PkiError> {
    let leaf = first_certificate(req.cert)?;
    let (raw_serial, subject, issuer) = describe_leaf(req.cert, &leaf)?;

    let current = Ca::load_with(req.ca_dir, passphrase)?;
    let prev_dir = req.ca_dir.join(PREVIOUS_DIR);
    let previous = if crl::issued_by(&leaf, current.cert_der()) {
        None
    } else if prev_dir.join(CA_CERT_FILE).exists() {
        Some(Ca::load_with(&prev_dir, passphrase)?)
    } else {
        None
    };
    let authority = match &previous {
        Some(prev) if crl::issued_by(&leaf, prev.cert_der()) => prev,
        None if crl::issued_by(&leaf, current.cert_der()) => &current,
        _ => {
            return Err(PkiError::NotIssuedByCa {
                cert: req.cert.to_path_buf(),
                dir: req.ca_dir.to_path_buf(),
                issuer,
            })
        }
    };
    let by_previous_ca = previous.is_some();

    let crl_path = req.ca_dir.join(CRL_FILE);
    let prev_crl_path = prev_dir.join(CRL_FILE);
    let sources: Vec<&Path> = if by_previous_ca {
        vec![&prev_crl_path, &crl_path]
    } else {
        vec![&crl_path]
    };
    let (number, mut entries) = match crl::latest_crl(&sources, authority.cert_der())? {
        Some((number, der)) => {
            let entries = crl::entries(&der).map_err(|reason| PkiError::BadCrl {
                path: crl_path.clone(),
                reason,
            })?;
            (number, entries)
        }
        None => (0, Vec::new()),
    };
    let already_revoked = crl::contains_serial(&entries, &raw_serial);
    if !already_revoked {
        entries.push(crl::new_entry(&raw_serial, req.reason, now));
    }
    let fresh = crl::sign(
        authority,
        number.saturating_add(1),
        entries,
        now,
        req.next_update_days,
    )?;

    let (current_part, previous_part) = if by_previous_ca {
        write_public_file(&prev_crl_path, crl::pem_encode(&[&fresh]).as_bytes())?;
        let current_part = crl::latest_crl(&[&crl_path], current.cert_der())?.map(|(_, d)| d);
        (current_part, Some(fresh.clone()))
    } else {
        (Some(fresh.clone()), previous_crl(req.ca_dir)?)
    };
    write_combined_crl(req.ca_dir, current_part.as_ref(), previous_part.as_ref())?;

    let crl = crl::inspect_crl_der(&fresh).map_err(|reason| PkiError::BadCrl {
        path: crl_path.clone(),
        reason,
    })?;
    Ok(Revocation {
        serial: super::inspect::serial_hex(&raw_serial),
        subject,
        already_revoked,
        by_previous_ca,
        crl,
        crl_path,
    })
}

/// The previous CA's latest CRL (from `DIR/previous/ca.crl` or `DIR/ca.crl`),
/// or `None` outside a rollover or when it has none. Needs no key.
///
/// # Errors
/// [`PkiError::Io`], [`PkiError::BadPem`], [`PkiError::NoCertificate`] for
/// an unreadable `previous/ca.crt`, [`PkiError::BadCrl`].
pub(crate) fn previous_crl(
    dir: &Path,
) -> Result<Option<CertificateRevocationListDer<'static>>, PkiError> {
    let prev_dir = dir.join(PREVIOUS_DIR);
    let prev_cert = prev_dir.join(CA_CERT_FILE);
    if !prev_cert.exists() {
        return Ok(None);
    }
    let prev_der = first_certificate(&prev_cert)?;
    let files = [prev_dir.join(CRL_FILE), dir.join(CRL_FILE)];
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    Ok(crl::latest_crl(&files, &prev_der)?.map(|(_, der)| der))
}

/// Writes `DIR/ca.crl` as the current CA's CRL followed by the previous
/// CA's (PEM, 0644, atomic). Writes nothing when both are `None`.
///
/// # Errors
/// [`PkiError::Io`].
pub(crate) fn write_combined_crl(
    dir: &Path,
    current: Option<&CertificateRevocationListDer<'_>>,
    previous: Option<&CertificateRevocationListDer<'_>>,
) -> Result<(), PkiError> {
    let parts: Vec<&CertificateRevocationListDer<'_>> =
        current.into_iter().chain(previous).collect();
    if parts.is_empty() {
        return Ok(());
    }
    write_public_file(&dir.join(CRL_FILE), crl::pem_encode(&parts).as_bytes())
}

/// The first certificate of a PEM file.
pub(crate) fn first_certificate(path: &Path) -> Result<CertificateDer<'static>, PkiError> {
    let bytes = std::fs::read(path).map_err(PkiError::io(path, "read"))?;
    pem_certificates(path, &bytes)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::NoCertificate {
            path: path.to_path_buf(),
        })
}

/// Raw serial, subject and issuer of a gateway certificate; refuses a CA.
fn describe_leaf(path: &Path, der: &[u8]) -> Result<(Vec<u8>, String, String), PkiError> {
    let (_, x509) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::BadCertificate {
            path: path.to_path_buf(),
            index: 1,
            reason: e.to_string(),
        })?;
    if x509.is_ca() {
        return Err(PkiError::RevokeCa {
            path: path.to_path_buf(),
        });
    }
    Ok((
        x509.raw_serial().to_vec(),
        x509.subject().to_string(),
        x509.issuer().to_string(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
pub(crate) mod tests {
    use super::*;
    use crate::pki::{inspect_file, LeafRequest, Validity};
    use rustls::pki_types::UnixTime;
    use rustls::{CertificateError, Error};
    use std::sync::Arc;

    /// A CA in `dir` and a leaf for `pool` written to `dir/<name>.crt|key`.
    pub(crate) fn issue_to(dir: &Path, ca: &Ca, pool: &str, name: &str) -> PathBuf {
        let req = LeafRequest {
            pool: pool.into(),
            dns: vec![],
            ips: vec!["127.0.0.1".parse().unwrap()],
            validity: Validity::days_from_now(10),
        };
        ca.issue(&req).unwrap().write(&dir.join(name)).unwrap().0
    }

    /// What the gateway does: all CAs of `bundle`, all CRLs of `crl`,
    /// end-entity revocation only, unknown status allowed.
    pub(crate) fn verify(bundle: &Path, crl: Option<&Path>, leaf: &Path) -> Result<(), Error> {
        let mut roots = rustls::RootCertStore::empty();
        let bytes = std::fs::read(bundle).unwrap();
        for ca in pem_certificates(bundle, &bytes).unwrap() {
            roots.add(ca).unwrap();
        }
        let crls = crl
            .map(|p| crl::read_crl_file(p).unwrap())
            .unwrap_or_default();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .with_crls(crls)
        .only_check_end_entity_revocation()
        .allow_unknown_revocation_status()
        .build()
        .unwrap();
        let leaf = first_certificate(leaf).unwrap();
        verifier
            .verify_client_cert(&leaf, &[], UnixTime::now())
            .map(|_| ())
    }

    pub(crate) fn request<'a>(dir: &'a Path, cert: &'a Path) -> RevokeRequest<'a> {
        RevokeRequest {
            ca_dir: dir,
            cert,
            reason: RevokeReason::KeyCompromise,
            next_update_days: DEFAULT_NEXT_UPDATE_DAYS,
        }
    }

    fn new_ca(dir: &Path) -> Ca {
        let ca = Ca::generate("revoke CA", Validity::days_from_now(30)).unwrap();
        ca.write_new(dir).unwrap();
        Ca::load(dir).unwrap()
    }

    #[test]
    fn revoked_leaf_is_refused_by_rustls_and_the_other_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let site1 = issue_to(dir.path(), &ca, "pool01.site1.example", "site1");
        let site2 = issue_to(dir.path(), &ca, "pool02.site2.example", "site2");
        let ca_crt = dir.path().join(CA_CERT_FILE);
        let now = OffsetDateTime::now_utc();
        let done = revoke(&request(dir.path(), &site1), now).unwrap();
        assert!(!done.already_revoked && !done.by_previous_ca);
        assert_eq!(done.crl.number, 1);
        assert_eq!(done.crl.revoked.len(), 1);
        assert_eq!(
            done.crl.revoked[0].reason.as_deref(),
            Some("key-compromise")
        );
        let serial = &inspect_file(&site1, now).unwrap()[0].serial;
        assert_eq!(&done.serial, serial);
        assert_eq!(crl::revoked_serials(&done.crl_path).unwrap(), [&serial[..]]);

        let crl_path = dir.path().join(CRL_FILE);
        assert_eq!(
            verify(&ca_crt, Some(&crl_path), &site1),
            Err(Error::InvalidCertificate(CertificateError::Revoked))
        );
        verify(&ca_crt, Some(&crl_path), &site2).unwrap();
        verify(&ca_crt, None, &site1).unwrap();
        let text = std::fs::read_to_string(&crl_path).unwrap();
        assert!(text.starts_with("-----BEGIN X509 CRL-----"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&crl_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o644);
        }
    }

    #[test]
    fn revoking_twice_keeps_one_entry_and_counts_up() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let site1 = issue_to(dir.path(), &ca, "pool01.site1.example", "site1");
        let site2 = issue_to(dir.path(), &ca, "pool02.site2.example", "site2");
        let now = OffsetDateTime::now_utc();
        let first = revoke(&request(dir.path(), &site1), now).unwrap();
        let second = revoke(&request(dir.path(), &site1), now).unwrap();
        assert!(second.already_revoked);
        assert_eq!(second.crl.number, first.crl.number + 1);
        assert_eq!(second.crl.revoked, first.crl.revoked);
        let mut req = request(dir.path(), &site2);
        req.reason = RevokeReason::Superseded;
        req.next_update_days = 7;
        let third = revoke(&req, now).unwrap();
        assert_eq!(third.crl.number, 3);
        let reasons: Vec<_> = third.crl.revoked.iter().map(|e| e.reason.clone()).collect();
        assert_eq!(
            reasons,
            [Some("key-compromise".into()), Some("superseded".into())]
        );
        let window = third.crl.next_update.unwrap() - third.crl.this_update;
        assert_eq!(window, time::Duration::days(7));
        // Still exactly one CRL in the file (no rollover).
        assert_eq!(crl::inspect_crl_file(&third.crl_path).unwrap().len(), 1);
    }

    #[test]
    fn foreign_and_ca_certificates_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let other_dir = tempfile::tempdir().unwrap();
        let other = new_ca(other_dir.path());
        let foreign = issue_to(other_dir.path(), &other, "pool09.x.example", "x");
        let err = revoke(&request(dir.path(), &foreign), OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, PkiError::NotIssuedByCa { .. }), "{err}");
        assert!(err.to_string().contains("not issued by the pairing CA"));
        let ca_crt = dir.path().join(CA_CERT_FILE);
        let err = revoke(&request(dir.path(), &ca_crt), OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, PkiError::RevokeCa { .. }), "{err}");
        assert!(!dir.path().join(CRL_FILE).exists());
        drop(ca);
    }

    #[test]
    fn corrupt_crl_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca(dir.path());
        let site1 = issue_to(dir.path(), &ca, "pool01.site1.example", "site1");
        let crl_path = dir.path().join(CRL_FILE);
        std::fs::write(&crl_path, b"garbage, not a CRL").unwrap();
        let err = revoke(&request(dir.path(), &site1), OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, PkiError::BadCrl { .. }), "{err}");
        assert_eq!(std::fs::read(&crl_path).unwrap(), b"garbage, not a CRL");
    }

    #[test]
    fn reasons_parse_and_print() {
        for name in [
            "unspecified",
            "key-compromise",
            "superseded",
            "privilege-withdrawn",
        ] {
            let reason: RevokeReason = name.parse().unwrap();
            assert_eq!(reason.to_string(), name);
        }
        let err = "stolen".parse::<RevokeReason>().unwrap_err();
        assert!(err.contains("key-compromise"), "{err}");
    }

    #[test]
    fn crl_garbage_never_panics() {
        for bytes in [&b""[..], b"\x30", b"\x30\x03\x02\x01\x00", &[0xff; 64][..]] {
            assert!(crl::inspect_crl_der(bytes).is_err());
        }
    }
}
