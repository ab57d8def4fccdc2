//! `pairgate ca rotate`: replace the pairing CA without an outage.
//!
//! # The overlap
//!
//! Both sites must trust the old and the new CA until BOTH gateways run on
//! certificates from the new CA, in whatever order the sites are updated.
//! So after a rotation:
//!
//! - `DIR/ca.crt`, `DIR/ca.key`: the new CA (it signs from now on);
//! - `DIR/bundle.crt`: new CA, then previous CA — both sites' `tls.ca`
//!   during the overlap;
//! - `DIR/previous/ca.crt`, `ca.key` (0600), `ca.crl`: the previous CA, kept
//!   so that its certificates can still be revoked during the overlap;
//! - `DIR/ca.crl` (if a CRL existed): the new CA's CRL, then the previous
//!   CA's, so one `tls.crl` file covers both.
//!
//! The new CA gets a different name (`NAME #2`, `#3`, …): webpki selects a
//! CRL by issuer name, and two trusted CAs with one name would make it check
//! one CA's certificates against the other CA's CRL and fail.
//!
//! A second rotation while `previous/` exists is refused unless the operator
//! says `--force-drop-previous`: dropping the old CA before every gateway has
//! left it is exactly the outage other meshes have had.
//!
//! # Crash safety
//!
//! The old key must never be lost. Order: (1) copy the old CA into
//! `DIR/.previous.tmp/` (create-new, fsync), rename it to `DIR/previous/`,
//! fsync `DIR`; only then (2) `bundle.crt`, (3) `ca.key`, (4) `ca.crt`, each
//! tmp + fsync + rename, (5) `ca.crl`. A re-run finds one of: a stale
//! `.previous.tmp` (crash in 1: `DIR` untouched, the staging copy is removed
//! and the rotation starts over); `previous/` whose certificate is still
//! `DIR/ca.crt` (crash in 2–4: the rotation resumes from the old CA in
//! `previous/`, with a fresh new CA); or a finished rotation (refused as above).

use std::fs;
use std::path::{Path, PathBuf};

use rustls::pki_types::CertificateRevocationListDer;
use time::OffsetDateTime;

use super::crl::{self, CRL_FILE};
use super::files::{self, write_public_file, write_secret_file, PUBLIC_MODE, SECRET_MODE};
use super::revoke::DEFAULT_NEXT_UPDATE_DAYS;
use super::revoke::{first_certificate, previous_crl, write_combined_crl};
use super::{sha256_hex, Ca, PkiError, Validity, CA_CERT_FILE, CA_KEY_FILE};

/// Folder of the previous CA inside the CA directory, during an overlap.
pub const PREVIOUS_DIR: &str = "previous";
/// Trust bundle (new CA, then previous CA) for the overlap.
pub const BUNDLE_FILE: &str = "bundle.crt";
const STAGING_DIR: &str = ".previous.tmp";
const DROPPING_DIR: &str = ".previous.drop";

/// How to rotate.
#[derive(Debug, Clone)]
pub struct CaRotateOptions {
    /// Name of the new CA; `None`: the old name with the next generation number.
    pub name: Option<String>,
    pub validity: Validity,
    /// Delete an existing `previous/` CA (ends its overlap) before rotating.
    pub force_drop_previous: bool,
}

/// The outcome of [`rotate_ca`].
#[derive(Debug, Clone)]
pub struct CaRotation {
    pub name: String,
    pub old_name: String,
    pub old_sha256: String,
    pub new_sha256: String,
    pub not_after: OffsetDateTime,
    pub bundle_path: PathBuf,
    pub previous_dir: PathBuf,
    /// `DIR/ca.crl` when it was (re)written.
    pub crl_path: Option<PathBuf>,
    /// An interrupted rotation was finished.
    pub resumed: bool,
    /// Fingerprint of the CA dropped by `force_drop_previous`.
    pub dropped_sha256: Option<String>,
}

/// Replaces the CA in `dir` by a new one; see the module docs.
///
/// # Errors
/// [`PkiError::PreviousCaExists`] when `previous/` holds a CA and
/// `force_drop_previous` is false, [`PkiError::SameCaName`], the errors of
/// [`Ca::load`] and [`Ca::generate`], [`PkiError::BadCrl`], [`PkiError::Io`].
pub fn rotate_ca(dir: &Path, opts: &CaRotateOptions) -> Result<CaRotation, PkiError> {
    rotate_ca_with(dir, opts, &super::NoPassphrase)
}

/// Like [`rotate_ca`], opening encrypted CA keys with `passphrase`; the new
/// CA key (and the previous one, moved) stay encrypted under the current
/// CA's passphrase.
///
/// # Errors
/// As [`rotate_ca`], and those of [`Ca::load_with`].
pub fn rotate_ca_with(
    dir: &Path,
    opts: &CaRotateOptions,
    passphrase: &dyn super::Passphrase,
) -> Result<CaRotation, PkiError> {
    let prev_dir = dir.join(PREVIOUS_DIR);
    remove_dir_if_exists(&dir.join(STAGING_DIR))?;
    remove_dir_if_exists(&dir.join(DROPPING_DIR))?;

    let mut resumed = false;
    let mut dropped_sha256 = None;
    let old = if prev_dir.exists() {
        let previous = Ca::load_with(&prev_dir, passphrase)?;
        let on_disk = first_certificate(&dir.join(CA_CERT_FILE))?;
        if on_disk == *previous.cert_der() {
            resumed = true;
            previous
        } else if opts.force_drop_previous {
            let current = Ca::load_with(dir, passphrase)?;
            dropped_sha256 = Some(sha256_hex(previous.cert_der()));
            drop_previous(dir)?;
            current
        } else {
            return Err(PkiError::PreviousCaExists {
                dir: dir.to_path_buf(),
                previous: prev_dir,
            });
        }
    } else {
        Ca::load_with(dir, passphrase)?
    };

    let old_name = common_name(old.cert_der()).unwrap_or_default();
    let name = match &opts.name {
        Some(name) => name.clone(),
        None => next_generation(&old_name),
    };
    if name.trim() == old_name.trim() {
        return Err(PkiError::SameCaName { name });
    }
    let new = Ca::generate(&name, opts.validity)?.protected_like(&old);

    if !resumed {
        let old_crl = crl::latest_crl(&[&dir.join(CRL_FILE)], old.cert_der())?;
        stage_previous(dir, &old, old_crl.as_ref().map(|(_, der)| der))?;
    }
    let mut bundle = new.cert_pem().to_string();
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(old.cert_pem());
    write_public_file(&dir.join(BUNDLE_FILE), bundle.as_bytes())?;
    let key_path = dir.join(CA_KEY_FILE);
    write_secret_file(&key_path, new.key_file_pem(&key_path)?.as_bytes())?;
    write_public_file(&dir.join(CA_CERT_FILE), new.cert_pem().as_bytes())?;

    let crl_path = dir.join(CRL_FILE);
    let crl_path = if crl_path.exists() || prev_dir.join(CRL_FILE).exists() {
        // An empty first CRL for the new CA keeps `tls.crl` covering both CAs.
        let now = OffsetDateTime::now_utc();
        let first = crl::sign(&new, 1, Vec::new(), now, DEFAULT_NEXT_UPDATE_DAYS)?;
        write_combined_crl(dir, Some(&first), previous_crl(dir)?.as_ref())?;
        Some(crl_path)
    } else {
        None
    };

    let new_info = super::inspect_der(new.cert_der(), OffsetDateTime::now_utc())?;
    Ok(CaRotation {
        name,
        old_name,
        old_sha256: sha256_hex(old.cert_der()),
        new_sha256: new_info.sha256,
        not_after: new_info.not_after,
        bundle_path: dir.join(BUNDLE_FILE),
        previous_dir: prev_dir,
        crl_path,
        resumed,
        dropped_sha256,
    })
}

/// Copies the old CA into `DIR/.previous.tmp/` and renames that to `DIR/previous/`.
fn stage_previous(
    dir: &Path,
    old: &Ca,
    old_crl: Option<&CertificateRevocationListDer<'_>>,
) -> Result<(), PkiError> {
    let staging = dir.join(STAGING_DIR);
    files::create_dir_private(&staging)?;
    let key_path = staging.join(CA_KEY_FILE);
    files::write_new(
        &key_path,
        old.key_file_pem(&key_path)?.as_bytes(),
        SECRET_MODE,
    )?;
    files::write_new(
        &staging.join(CA_CERT_FILE),
        old.cert_pem().as_bytes(),
        PUBLIC_MODE,
    )?;
    if let Some(der) = old_crl {
        let pem = crl::pem_encode(&[der]);
        files::write_new(&staging.join(CRL_FILE), pem.as_bytes(), PUBLIC_MODE)?;
    }
    files::sync_dir(&staging)?;
    let prev_dir = dir.join(PREVIOUS_DIR);
    fs::rename(&staging, &prev_dir).map_err(PkiError::io(&prev_dir, "create"))?;
    files::sync_dir(dir)
}

/// Ends the overlap of the previous rotation: deletes `DIR/previous/`.
fn drop_previous(dir: &Path) -> Result<(), PkiError> {
    let dropping = dir.join(DROPPING_DIR);
    let prev_dir = dir.join(PREVIOUS_DIR);
    fs::rename(&prev_dir, &dropping).map_err(PkiError::io(&prev_dir, "remove"))?;
    files::sync_dir(dir)?;
    remove_dir_if_exists(&dropping)
}

fn remove_dir_if_exists(path: &Path) -> Result<(), PkiError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(PkiError::io(path, "remove the leftover directory")(e))
        }
        _ => Ok(()),
    }
}

/// The first common name of a certificate's subject.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = x509.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_string)
}

/// `NAME` → `NAME #2`, `NAME #2` → `NAME #3`.
fn next_generation(name: &str) -> String {
    if let Some((base, n)) = name.rsplit_once(" #") {
        if let Ok(n) = n.parse::<u32>() {
            return format!("{base} #{}", n.saturating_add(1));
        }
    }
    let base = if name.trim().is_empty() {
        "pairgate pairing CA"
    } else {
        name
    };
    format!("{base} #2")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
#[path = "rollover_tests.rs"]
mod tests;
