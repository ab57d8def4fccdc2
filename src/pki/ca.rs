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
mod tests {
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
            crate::pki::inspect::pem_certificates(Path::new("t"), issued.chain_pem.as_bytes())
                .unwrap();
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
            "10.0.0.1",
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
}
