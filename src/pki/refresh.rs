//! The CA's CRL without a revocation: the first, empty CRL that `ca init`
//! writes, and `ca crl --refresh`, which re-signs it before its next update.
//!
//! `tls.crl` is optional, but a site that names it must find the file, and
//! the gateway watches that file: if `ca init` leaves it out, the first
//! revocation is also the first time each site has to change its config. So
//! every new CA comes with an empty CRL ("nothing revoked") from the start,
//! and an older CA without one gets it from `ca crl --refresh`.
//!
//! A refresh keeps every entry, takes the next CRL number and fresh dates.
//! During a CA rollover the previous CA's CRL is re-signed too when its key
//! is still in `DIR/previous/`, otherwise carried over unchanged; `DIR/ca.crl`
//! is written as in [`super::revoke`]: the current CA's CRL, then the
//! previous CA's.

use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;

use super::crl::{self, CrlInfo, CRL_FILE};
use super::files::write_public_file;
use super::revoke::{previous_crl, write_combined_crl};
use super::{Ca, PkiError, CA_KEY_FILE, PREVIOUS_DIR};

/// The outcome of [`refresh_crl`].
#[derive(Debug, Clone)]
pub struct CrlRefresh {
    /// `DIR/ca.crl`, to be copied to both sites (`tls.crl`).
    pub crl_path: PathBuf,
    /// There was no `DIR/ca.crl` before.
    pub created: bool,
    /// The current CA's new CRL.
    pub crl: CrlInfo,
    /// The previous CA's CRL when it was re-signed (rollover, key present).
    pub previous: Option<CrlInfo>,
}

/// Re-signs the CRL of the CA in `dir` (creating an empty one if there is
/// none) with the next number, `thisUpdate` = `now` and `nextUpdate` in
/// `next_update_days`; see the module docs.
///
/// # Errors
/// The errors of [`Ca::load`], [`PkiError::BadCrl`] for an existing CRL that
/// does not parse (never replaced: that would un-revoke its entries),
/// [`PkiError::Rcgen`] and [`PkiError::Io`].
pub fn refresh_crl(
    dir: &Path,
    next_update_days: u32,
    now: OffsetDateTime,
) -> Result<CrlRefresh, PkiError> {
    refresh_crl_with(dir, next_update_days, now, &super::NoPassphrase)
}

/// Like [`refresh_crl`], opening encrypted CA keys with `passphrase`.
///
/// # Errors
/// As [`refresh_crl`], and those of [`Ca::load_with`].
pub fn refresh_crl_with(
    dir: &Path,
    next_update_days: u32,
    now: OffsetDateTime,
    passphrase: &dyn super::Passphrase,
) -> Result<CrlRefresh, PkiError> {
    let current = Ca::load_with(dir, passphrase)?;
    let crl_path = dir.join(CRL_FILE);
    let created = !crl_path.exists();
    let fresh = resign(&current, &[&crl_path], next_update_days, now)?;

    let prev_dir = dir.join(PREVIOUS_DIR);
    let (previous_der, previous) = if prev_dir.join(CA_KEY_FILE).exists() {
        let prev = Ca::load_with(&prev_dir, passphrase)?;
        let prev_crl_path = prev_dir.join(CRL_FILE);
        let der = resign(&prev, &[&prev_crl_path, &crl_path], next_update_days, now)?;
        write_public_file(&prev_crl_path, crl::pem_encode(&[&der]).as_bytes())?;
        let info = describe(&prev_crl_path, &der)?;
        (Some(der), Some(info))
    } else {
        (previous_crl(dir)?, None)
    };
    write_combined_crl(dir, Some(&fresh), previous_der.as_ref())?;
    Ok(CrlRefresh {
        crl: describe(&crl_path, &fresh)?,
        crl_path,
        created,
        previous,
    })
}

/// `ca`'s latest CRL among `sources` with the next number and fresh dates
/// (number 1 and no entries when it has none yet).
fn resign(
    ca: &Ca,
    sources: &[&Path],
    next_update_days: u32,
    now: OffsetDateTime,
) -> Result<CertificateRevocationListDer<'static>, PkiError> {
    let (number, entries) = match crl::latest_crl(sources, ca.cert_der())? {
        Some((number, der)) => {
            let entries = crl::entries(&der).map_err(|reason| PkiError::BadCrl {
                path: sources.first().map(|p| p.to_path_buf()).unwrap_or_default(),
                reason,
            })?;
            (number, entries)
        }
        None => (0, Vec::new()),
    };
    crl::sign(ca, number.saturating_add(1), entries, now, next_update_days)
}

fn describe(path: &Path, der: &[u8]) -> Result<CrlInfo, PkiError> {
    crl::inspect_crl_der(der).map_err(|reason| PkiError::BadCrl {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::pki::revoke::tests::{issue_to, request, verify};
    use crate::pki::{revoke, revoked_serials, rotate_ca, CaRotateOptions, Validity};
    use rustls::{CertificateError, Error};

    const REVOKED: Result<(), Error> = Err(Error::InvalidCertificate(CertificateError::Revoked));

    fn init(dir: &Path) -> Ca {
        let ca = Ca::generate("refresh test CA", Validity::days_from_now(30)).unwrap();
        ca.write_new(dir).unwrap();
        ca
    }

    #[test]
    fn first_refresh_creates_an_empty_crl_that_verifiers_accept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ca = init(dir);
        let leaf = issue_to(dir, &ca, "pool01.site1.example", "a");
        let now = OffsetDateTime::now_utc();
        let done = refresh_crl(dir, 30, now).unwrap();
        assert!(done.created && done.previous.is_none());
        assert_eq!((done.crl.number, done.crl.revoked.len()), (1, 0));
        assert_eq!(done.crl_path, dir.join(CRL_FILE));
        verify(&dir.join("ca.crt"), Some(&done.crl_path), &leaf).unwrap();
        // Revocation takes the next number and the refresh after it keeps the entry.
        let revoked = revoke(&request(dir, &leaf), now).unwrap();
        assert_eq!(revoked.crl.number, 2);
        let again = refresh_crl(dir, 7, now).unwrap();
        assert!(!again.created);
        assert_eq!((again.crl.number, again.crl.revoked.len()), (3, 1));
        assert_eq!(
            REVOKED,
            verify(&dir.join("ca.crt"), Some(&again.crl_path), &leaf)
        );
    }

    #[test]
    fn a_corrupt_crl_is_refused_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init(dir);
        let garbage = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        std::fs::write(dir.join(CRL_FILE), garbage).unwrap();
        let err = refresh_crl(dir, 30, OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, PkiError::BadCrl { .. }), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.join(CRL_FILE)).unwrap(),
            garbage
        );
    }

    #[test]
    fn during_a_rollover_both_crls_are_refreshed_and_keep_their_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let old = init(dir);
        let a = issue_to(dir, &old, "pool01.site1.example", "a");
        refresh_crl(dir, 30, OffsetDateTime::now_utc()).unwrap();
        let options = CaRotateOptions {
            name: None,
            validity: Validity::days_from_now(30),
            force_drop_previous: false,
        };
        let rotated = rotate_ca(dir, &options).unwrap();
        revoke(&request(dir, &a), OffsetDateTime::now_utc()).unwrap();
        let done = refresh_crl(dir, 30, OffsetDateTime::now_utc()).unwrap();
        let previous = done.previous.unwrap();
        assert_eq!(previous.revoked.len(), 1);
        assert_eq!(done.crl.revoked.len(), 0);
        assert_eq!(revoked_serials(&done.crl_path).unwrap().len(), 1);
        assert_eq!(
            REVOKED,
            verify(&rotated.bundle_path, Some(&done.crl_path), &a)
        );
    }
}
