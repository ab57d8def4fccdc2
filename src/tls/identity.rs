//! Who a peer is: the first DNS SAN of its leaf certificate, and the leaf's
//! SHA-256 fingerprint for the audit log. A pure function of the DER bytes,
//! so it can be fuzzed; it never panics on hostile input.

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The identity a certificate claims. Only meaningful once its chain was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// First DNS SAN: the pool the gateway fronts.
    pub pool: String,
    /// Lower-case hex SHA-256 of the certificate DER.
    pub sha256: String,
    /// End of validity, seconds since the Unix epoch.
    pub not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("certificate is not valid X.509 DER: {0}")]
    Malformed(String),
    #[error("certificate has no DNS subject alternative name; issue it with `pairgate cert issue --pool FQDN`")]
    NoDnsSan,
}

/// Lower-case hex SHA-256 of `der`.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der))
}

/// Extracts the identity of a leaf certificate.
///
/// # Errors
/// [`IdentityError`] when the bytes are not a certificate or it carries no DNS SAN.
pub fn identity_of(der: &[u8]) -> Result<PeerIdentity, IdentityError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Malformed(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Malformed(e.to_string()))?
        .ok_or(IdentityError::NoDnsSan)?;
    let pool = san
        .value
        .general_names
        .iter()
        .find_map(|name| match name {
            GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
            _ => None,
        })
        .ok_or(IdentityError::NoDnsSan)?;
    Ok(PeerIdentity {
        pool,
        sha256: fingerprint(der),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            assert!(identity_of(&bytes).is_err());
        }
        assert!(identity_of(&[0x30, 0x82, 0xff, 0xff]).is_err());
    }

    #[test]
    fn fingerprint_is_lower_hex_sha256() {
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
