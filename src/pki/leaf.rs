//! Gateway (leaf) certificates: validate the request, sign, write.
//!
//! A gateway's identity is the FIRST DNS SAN of its certificate: the pool it
//! fronts. The same certificate serves as TLS server certificate (inbound
//! from the peer gateway) and as client certificate (outbound to it), hence
//! both EKUs. Extra `--dns`/`--ip` SANs follow the pool name and are only
//! for reaching the gateway by other names.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    Certificate, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use ring::rand::SecureRandom;

use super::files::{self, suffixed};
use super::{Issued, LeafRequest, PkiError, Validity};

/// A random 128-bit positive certificate serial number.
///
/// # Errors
/// [`PkiError::Random`] when the system RNG fails.
pub(super) fn random_serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f; // positive INTEGER without a leading zero byte
    bytes[0] |= 0x40; // and always 16 bytes long
    Ok(SerialNumber::from_slice(&bytes))
}

/// Checks that `name` is a syntactically valid DNS host name (no wildcard,
/// no IP address literal).
///
/// # Errors
/// [`PkiError::InvalidName`] saying what is wrong.
pub fn validate_dns_name(name: &str) -> Result<(), PkiError> {
    let invalid = |reason: &str| PkiError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(invalid(
            "an IP address is not a DNS name (use --ip for addresses)",
        ));
    }
    if name.contains('*') {
        return Err(invalid("wildcards are not allowed in pairing certificates"));
    }
    rustls::pki_types::DnsName::try_from(name)
        .map_err(|_| invalid("not a valid host name (letters, digits, '-' and '.' only)"))?;
    Ok(())
}

impl LeafRequest {
    /// A request with the same SANs as an existing gateway certificate file
    /// (its first certificate), for `pairgate cert rotate`.
    ///
    /// # Errors
    /// Those of [`super::inspect_file`], and [`PkiError::InvalidName`] when
    /// the certificate has no DNS SAN to take the pool name from.
    pub fn from_cert_file(path: &Path, validity: Validity) -> Result<LeafRequest, PkiError> {
        let info = super::inspect_file(path, validity.not_before)?;
        let first = info
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::NoCertificate {
                path: path.to_path_buf(),
            })?;
        let mut ips = Vec::new();
        let mut dns = Vec::new();
        for san in first.sans {
            match san.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(san),
            }
        }
        if dns.is_empty() {
            return Err(PkiError::InvalidName {
                name: path.display().to_string(),
                reason: "the certificate has no DNS SAN naming its pool".into(),
            });
        }
        let pool = dns.remove(0);
        Ok(LeafRequest {
            pool,
            dns,
            ips,
            validity,
        })
    }

    /// The SANs in certificate order: pool first, then DNS names, then IPs.
    ///
    /// # Errors
    /// [`PkiError::InvalidName`] for any invalid DNS name.
    fn subject_alt_names(&self) -> Result<Vec<SanType>, PkiError> {
        let mut sans = Vec::with_capacity(1 + self.dns.len() + self.ips.len());
        for name in std::iter::once(&self.pool).chain(&self.dns) {
            validate_dns_name(name)?;
            let ia5 =
                name.as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| PkiError::InvalidName {
                        name: name.clone(),
                        reason: e.to_string(),
                    })?;
            let san = SanType::DnsName(ia5);
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        for ip in &self.ips {
            let san = SanType::IpAddress(*ip);
            if !sans.contains(&san) {
                sans.push(san);
            }
        }
        Ok(sans)
    }
}

/// Generates a key and signs its certificate for `req` with `issuer`.
pub(super) fn sign(
    req: &LeafRequest,
    issuer: &Certificate,
    issuer_key: &KeyPair,
) -> Result<(Certificate, KeyPair), PkiError> {
    let mut params = CertificateParams::default();
    params.subject_alt_names = req.subject_alt_names()?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, req.pool.as_str());
    dn.push(DnType::OrganizationName, "pairgate");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial()?);
    params.not_before = req.validity.not_before;
    params.not_after = req.validity.not_after;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(PkiError::rcgen("generate the gateway key"))?;
    let cert = params
        .signed_by(&key, issuer, issuer_key)
        .map_err(PkiError::rcgen("sign the gateway certificate"))?;
    Ok((cert, key))
}

impl Issued {
    /// Writes `PREFIX.crt` and `PREFIX.key` (0600) and returns their paths.
    ///
    /// Each file is replaced atomically (tmp + fsync + rename, then the
    /// directory is fsynced); the parent directory is created if missing.
    /// The key is written first, so a watcher that reloads when the
    /// certificate changes finds the matching key already in place.
    ///
    /// # Errors
    /// [`PkiError::Io`] naming the file.
    pub fn write(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert_path = suffixed(prefix, ".crt");
        let key_path = suffixed(prefix, ".key");
        files::write_secret_file(&key_path, self.key_pem.as_bytes())?;
        files::write_public_file(&cert_path, self.chain_pem.as_bytes())?;
        Ok((cert_path, key_path))
    }
}
