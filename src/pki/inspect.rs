//! Reading certificates back: what `pairgate cert inspect|check` print and
//! what the gateway checks before it trusts its own files.
//!
//! [`inspect_der`] is a pure function over untrusted bytes (fuzzed): it
//! never panics and returns an error for anything that is not exactly one
//! DER certificate.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rustls::pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::extensions::GeneralName;

use super::{sha256_hex, PkiError};

/// What `pairgate cert inspect --json` prints for one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Lower-case hex of the serial number's bytes, no separators.
    pub serial: String,
    /// DNS names and IP addresses (bare, e.g. `pool01.site1.example`,
    /// `127.0.0.1`), in certificate order; the first DNS name is the pool.
    pub sans: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Whole days until `not_after` (rounded down; negative once expired).
    pub days_left: i64,
    /// Lower-case hex SHA-256 of the DER.
    pub sha256: String,
    pub is_ca: bool,
}

impl CertInfo {
    /// Whether `now` lies inside the validity window.
    pub fn is_valid_at(&self, now: OffsetDateTime) -> bool {
        self.not_before <= now && now <= self.not_after
    }
}

/// Every certificate in a PEM file, in file order.
///
/// # Errors
/// [`PkiError::Io`] when the file cannot be read, [`PkiError::BadPem`],
/// [`PkiError::NoCertificate`] when it holds no certificate, and
/// [`PkiError::BadCertificate`] (with the 1-based position) for the first
/// certificate that does not parse.
pub fn inspect_file(path: &Path, now: OffsetDateTime) -> Result<Vec<CertInfo>, PkiError> {
    let bytes = std::fs::read(path).map_err(PkiError::io(path, "read"))?;
    inspect_pem(path, &bytes, now)
}

/// Like [`inspect_file`] over bytes already read; `path` only labels errors.
///
/// # Errors
/// As [`inspect_file`], except [`PkiError::Io`].
pub fn inspect_pem(
    path: &Path,
    pem: &[u8],
    now: OffsetDateTime,
) -> Result<Vec<CertInfo>, PkiError> {
    pem_certificates(path, pem)?
        .iter()
        .enumerate()
        .map(|(i, der)| {
            inspect_der(der, now).map_err(|e| PkiError::BadCertificate {
                path: path.to_path_buf(),
                index: i + 1,
                reason: match e {
                    PkiError::BadDer { reason } => reason,
                    other => other.to_string(),
                },
            })
        })
        .collect()
}

/// One DER certificate → [`CertInfo`]. Pure; never panics.
///
/// # Errors
/// [`PkiError::BadDer`] when the bytes are not exactly one X.509 certificate
/// or one of its extensions is malformed.
pub fn inspect_der(der: &[u8], now: OffsetDateTime) -> Result<CertInfo, PkiError> {
    let bad = |reason: String| PkiError::BadDer { reason };
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    let mut sans = Vec::new();
    let san_ext = cert
        .subject_alternative_name()
        .map_err(|e| bad(format!("subjectAltName: {e}")))?;
    if let Some(ext) = san_ext {
        for name in &ext.value.general_names {
            sans.push(general_name_string(name));
        }
    }
    // Reject malformed basicConstraints instead of calling it "not a CA".
    let is_ca = cert
        .basic_constraints()
        .map_err(|e| bad(format!("basicConstraints: {e}")))?
        .is_some_and(|bc| bc.value.ca);
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: serial_hex(cert.raw_serial()),
        sans,
        not_before,
        not_after,
        days_left: super::days_left(not_after, now),
        sha256: sha256_hex(der),
        is_ca,
    })
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order; other
/// blocks (keys, CRLs) are skipped.
///
/// # Errors
/// [`PkiError::BadPem`] for broken PEM, [`PkiError::NoCertificate`] when
/// there is no certificate block.
pub(crate) fn pem_certificates(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let mut reader = pem;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::BadPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Serial bytes as lower-case hex, without the sign-padding zero byte.
pub(super) fn serial_hex(raw: &[u8]) -> String {
    let trimmed = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => raw,
    };
    hex::encode(trimmed)
}

/// floor((later − earlier) / 1 day).
fn general_name_string(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
            (*s).to_string()
        }
        GeneralName::IPAddress(octets) => ip_string(octets),
        other => other.to_string(),
    }
}

fn ip_string(octets: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        IpAddr::V4(Ipv4Addr::from(v4)).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(octets) {
        IpAddr::V6(Ipv6Addr::from(v6)).to_string()
    } else {
        format!("ip:{}", hex::encode(octets))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let now = OffsetDateTime::now_utc();
        for bytes in [
            &b""[..],
            b"\x30",
            b"\x30\x82\xff\xff",
            b"\x30\x03\x02\x01\x00",
            b"hello world",
            &[0xffu8; 300][..],
        ] {
            assert!(matches!(
                inspect_der(bytes, now),
                Err(PkiError::BadDer { .. })
            ));
        }
    }

    #[test]
    fn non_pem_text_names_the_file() {
        let err = inspect_pem(
            Path::new("x.crt"),
            b"not pem at all",
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string().split(';').next(),
            Some("no PEM certificate found in x.crt")
        );
    }

    #[test]
    fn bad_second_certificate_is_numbered() {
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        let err = inspect_pem(
            Path::new("c.pem"),
            pem.as_bytes(),
            OffsetDateTime::now_utc(),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("c.pem: certificate 1 is not valid DER: "));
    }

    #[test]
    fn serial_drops_sign_padding_only() {
        assert_eq!(serial_hex(&[0x00, 0x80, 0x01]), "8001");
        assert_eq!(serial_hex(&[0x00]), "00");
        assert_eq!(serial_hex(&[0x4a, 0x00]), "4a00");
    }

    #[test]
    fn ip_strings() {
        assert_eq!(ip_string(&[127, 0, 0, 1]), "127.0.0.1");
        assert_eq!(ip_string(&[0; 16]), "::");
        assert_eq!(ip_string(&[1, 2]), "ip:0102");
    }
}
