//! The pairing CA: generate, persist, load, sign.
//!
//! rcgen 0.13 signs only with an issuer `Certificate` plus its `KeyPair`.
//! After loading `ca.crt` from disk we rebuild the parameters from it
//! (`CertificateParams::from_ca_cert_der`, which keeps the subject's exact
//! string types and order and the Subject Key Identifier as given) and
//! self-sign them again. That throw-away certificate is only a carrier for
//! the issuer name and key identifier; the certificate we hand out and put in
//! chains is always the ORIGINAL `ca.crt` DER, and the issued leaves' issuer
//! name and Authority Key Identifier match it byte for byte (tested with
//! webpki below).

use std::path::Path;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateDer;
use zeroize::Zeroizing;

use super::files::{self, PUBLIC_MODE, SECRET_MODE};
use super::{leaf, Issued, LeafRequest, PkiError, Validity};

/// File name of the CA certificate inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// File name of the CA private key inside the CA directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// A pairing CA held in memory, able to sign.
pub struct Ca {
    /// The certificate as distributed (original DER when loaded from disk).
    der: CertificateDer<'static>,
    pem: String,
    /// Issuer carrier for rcgen: same subject, key identifier and key usages.
    signer: Certificate,
    key: KeyPair,
    /// The passphrase `ca.key` is stored under, if it is encrypted.
    seal: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("sha256", &super::sha256_hex(&self.der))
            .field("key", &"<redacted>")
            .field("encrypted", &self.seal.is_some())
            .finish()
    }
}

impl Ca {
    /// A new self-signed ECDSA P-256 CA named `name` (CN=name, O=pairgate),
    /// pathlen 0, allowed to sign certificates and CRLs.
    ///
    /// # Errors
    /// [`PkiError::InvalidCaName`] for an empty name,
    /// [`PkiError::InvalidValidity`], [`PkiError::Random`], or
    /// [`PkiError::Rcgen`] when rcgen cannot build the certificate.
    pub fn generate(name: &str, validity: Validity) -> Result<Ca, PkiError> {
        if name.trim().is_empty() {
            return Err(PkiError::InvalidCaName {
                name: name.to_string(),
                reason: "the name is empty".into(),
            });
        }
        check_validity(validity)?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(PkiError::rcgen("generate the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "pairgate");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(leaf::random_serial()?);
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let signer = params
            .self_signed(&key)
            .map_err(PkiError::rcgen("self-sign the CA certificate"))?;
        Ok(Ca {
            der: signer.der().clone(),
            pem: signer.pem(),
            signer,
            key,
            seal: None,
        })
    }

    /// This CA with its key to be stored under `passphrase` (`ca init
    /// --encrypt`, and `ca rotate` of an encrypted CA).
    ///
    /// # Errors
    /// [`PkiError::WeakPassphrase`] below [`super::MIN_PASSPHRASE_LEN`] characters.
    pub fn encrypted(mut self, passphrase: Zeroizing<String>) -> Result<Ca, PkiError> {
        if passphrase.chars().count() < super::MIN_PASSPHRASE_LEN {
            return Err(PkiError::WeakPassphrase {
                min: super::MIN_PASSPHRASE_LEN,
            });
        }
        self.seal = Some(passphrase);
        Ok(self)
    }

    /// The same key protection as `other` (encrypted under its passphrase, or plain).
    pub(crate) fn protected_like(mut self, other: &Ca) -> Ca {
        self.seal = other.seal.clone();
        self
    }

    /// A passphrase source that opens this CA's key again (the passphrase it
    /// holds, or none for a plain key).
    pub fn passphrase_source(&self) -> super::Given {
        super::Given(self.seal.clone().unwrap_or_default())
    }

    /// Whether `ca.key` is (to be) stored encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.seal.is_some()
    }

    /// The key as written to `ca.key`: encrypted PKCS#8 when the CA has a
    /// passphrase, else plain PKCS#8 PEM.
    ///
    /// # Errors
    /// Those of [`super::sealed::seal`].
    pub(crate) fn key_file_pem(&self, path: &Path) -> Result<Zeroizing<String>, PkiError> {
        let plain = self.key_pem();
        match &self.seal {
            Some(passphrase) => super::sealed::seal(&plain, passphrase, path),
            None => Ok(plain),
        }
    }

    /// Loads `DIR/ca.crt` and `DIR/ca.key`.
    ///
    /// # Errors
    /// [`PkiError::KeyPermissions`] for a group/world-readable key,
    /// [`PkiError::Io`], [`PkiError::NoCertificate`]/[`PkiError::BadPem`] for
    /// an unreadable certificate, [`PkiError::NotCa`], [`PkiError::BadKey`],
    /// [`PkiError::KeyMismatch`].
    pub fn load(dir: &Path) -> Result<Ca, PkiError> {
        Ca::load_with(dir, &super::NoPassphrase)
    }

    /// Like [`Ca::load`]; an encrypted `ca.key` is opened with the
    /// passphrase `passphrase` supplies (asked only when it is encrypted).
    ///
    /// # Errors
    /// As [`Ca::load`], and [`PkiError::KeyEncrypted`] /
    /// [`PkiError::WrongPassphrase`] for an encrypted key.
    pub fn load_with(dir: &Path, passphrase: &dyn super::Passphrase) -> Result<Ca, PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for path in [&cert_path, &key_path] {
            if !path.exists() {
                return Err(PkiError::NoCa {
                    dir: dir.to_path_buf(),
                    missing: path.clone(),
                });
            }
        }
        files::check_key_permissions(&key_path)?;

        let pem = files::read_text(&cert_path)?;
        let der = super::inspect::pem_certificates(&cert_path, pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::NoCertificate {
                path: cert_path.clone(),
            })?;
        let spki = check_ca_certificate(&cert_path, &der)?;

        let mut key_pem = Zeroizing::new(files::read_text(&key_path)?);
        let mut seal = None;
        if super::sealed::is_encrypted(&key_pem) {
            let secret = passphrase.passphrase(&key_path)?;
            key_pem = super::sealed::open(&key_pem, &secret, &key_path)?;
            seal = Some(secret);
        }
        let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadKey {
            path: key_path.clone(),
            reason: e.to_string(),
        })?;
        if key.public_key_der() != spki {
            return Err(PkiError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }

        let params = CertificateParams::from_ca_cert_der(&der).map_err(|e| PkiError::NotCa {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
        let signer = params
            .self_signed(&key)
            .map_err(PkiError::rcgen("prepare the loaded CA for signing"))?;
        Ok(Ca {
            pem: pem_encode(&der),
            der,
            signer,
            key,
            seal,
        })
    }

    /// Writes `DIR/ca.crt` (0644) and `DIR/ca.key` (0600); refuses to overwrite.
    ///
    /// Creates `DIR` (0700) if missing. Both files are created new and fsynced,
    /// then the directory is fsynced.
    ///
    /// # Errors
    /// [`PkiError::CaExists`] when either file exists (nothing is written);
    /// [`PkiError::Io`] otherwise.
    pub fn write_new(&self, dir: &Path) -> Result<(), PkiError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for path in [&cert_path, &key_path] {
            if path.symlink_metadata().is_ok() {
                return Err(PkiError::CaExists {
                    path: path.clone(),
                    dir: dir.to_path_buf(),
                });
            }
        }
        files::create_dir_private(dir)?;
        let exists = |e: PkiError, path: &Path| match e {
            PkiError::Io { ref err, .. } if err.kind() == std::io::ErrorKind::AlreadyExists => {
                PkiError::CaExists {
                    path: path.to_path_buf(),
                    dir: dir.to_path_buf(),
                }
            }
            other => other,
        };
        let key_text = self.key_file_pem(&key_path)?;
        files::write_new(&key_path, key_text.as_bytes(), SECRET_MODE)
            .map_err(|e| exists(e, &key_path))?;
        if let Err(e) = files::write_new(&cert_path, self.pem.as_bytes(), PUBLIC_MODE) {
            // Do not leave a key without its certificate behind.
            let _ = std::fs::remove_file(&key_path);
            return Err(exists(e, &cert_path));
        }
        files::sync_dir(dir)
    }

    /// The CA certificate (PEM), exactly as distributed.
    pub fn cert_pem(&self) -> &str {
        &self.pem
    }

    /// The CA certificate (DER), exactly as distributed.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// The CA private key (PKCS#8 PEM), wiped from memory on drop.
    pub fn key_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(self.key.serialize_pem())
    }

    /// Signs a gateway certificate for `req.pool`; see [`LeafRequest`].
    ///
    /// # Errors
    /// [`PkiError::InvalidName`] for a bad pool or DNS name,
    /// [`PkiError::InvalidValidity`], [`PkiError::Random`], [`PkiError::Rcgen`].
    pub fn issue(&self, req: &LeafRequest) -> Result<Issued, PkiError> {
        check_validity(req.validity)?;
        // A certificate never outlives its CA (a rule of the pairing
        // profile, `tls::profile`): the end is capped at the CA's.
        let mut req = req.clone();
        if let Some(ca_end) = self.not_after() {
            if req.validity.not_after > ca_end {
                req.validity.not_after = ca_end;
                check_validity(req.validity)?;
            }
        }
        let (cert, key) = leaf::sign(&req, &self.signer, &self.key)?;
        let mut chain_pem = cert.pem();
        if !chain_pem.ends_with('\n') {
            chain_pem.push('\n');
        }
        chain_pem.push_str(&self.pem);
        Ok(Issued {
            sha256: super::sha256_hex(cert.der()),
            chain_pem,
            key_pem: Zeroizing::new(key.serialize_pem()),
            not_after: req.validity.not_after,
        })
    }

    /// The end of the CA certificate's validity (`None` if it does not parse,
    /// which [`Ca::load`] and [`Ca::generate`] rule out).
    pub fn not_after(&self) -> Option<time::OffsetDateTime> {
        let (_, x509) = x509_parser::parse_x509_certificate(&self.der).ok()?;
        Some(x509.validity().not_after.to_datetime())
    }

    /// The rcgen issuer and key, for CRL signing and rotation in this module tree.
    pub(crate) fn signer(&self) -> (&Certificate, &KeyPair) {
        (&self.signer, &self.key)
    }
}

pub(super) fn check_validity(v: Validity) -> Result<(), PkiError> {
    if v.not_after <= v.not_before {
        return Err(PkiError::InvalidValidity {
            not_before: v.not_before,
            not_after: v.not_after,
        });
    }
    Ok(())
}

/// Checks that `der` is a CA certificate rcgen can re-read without
/// surprises, and returns its SubjectPublicKeyInfo DER.
fn check_ca_certificate(path: &Path, der: &[u8]) -> Result<Vec<u8>, PkiError> {
    let not_ca = |reason: String| PkiError::NotCa {
        path: path.to_path_buf(),
        reason,
    };
    let (_, x509) = x509_parser::parse_x509_certificate(der).map_err(|e| not_ca(e.to_string()))?;
    if !x509.is_ca() {
        return Err(not_ca("basicConstraints does not say CA".into()));
    }
    // rcgen's from_ca_cert_der panics on an empty RDN and refuses multi-valued ones.
    if x509.subject().iter().any(|rdn| rdn.iter().count() != 1) {
        return Err(not_ca(
            "the subject has an empty or multi-valued RDN".into(),
        ));
    }
    Ok(x509.public_key().raw.to_vec())
}

/// PEM text of a certificate, in the same layout rcgen writes (64-column, LF).
pub(super) fn pem_encode(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der.to_vec()), config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
#[path = "ca_tests.rs"]
mod tests;
