//! The private pairing PKI: mint the CA and gateway certificates (rcgen) and
//! inspect them (x509-parser). Shared by the CLI, the demo and the tests.
//!
//! SKELETON — the pki helper replaces the bodies; keep these signatures.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a few minutes ago (clock skew between sites) to `days` days from now.
    pub fn days_from_now(_days: u32) -> Validity {
        unimplemented!()
    }
}

/// What a gateway certificate is for: the pool it fronts (first DNS SAN) and extra SANs.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    pub pool: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub validity: Validity,
}

/// A freshly issued gateway certificate.
pub struct Issued {
    /// Leaf certificate first, then the issuing CA certificate (PEM).
    pub chain_pem: String,
    /// PKCS#8 private key (PEM).
    pub key_pem: Zeroizing<String>,
}

/// A pairing CA held in memory, able to sign.
pub struct Ca {
    _private: (),
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("placeholder")]
    Placeholder,
}

impl Ca {
    pub fn generate(_name: &str, _validity: Validity) -> Result<Ca, PkiError> {
        unimplemented!()
    }
    /// Loads `DIR/ca.crt` and `DIR/ca.key`.
    pub fn load(_dir: &Path) -> Result<Ca, PkiError> {
        unimplemented!()
    }
    /// Writes `DIR/ca.crt` and `DIR/ca.key` (0600); refuses to overwrite.
    pub fn write_new(&self, _dir: &Path) -> Result<(), PkiError> {
        unimplemented!()
    }
    pub fn cert_pem(&self) -> &str {
        unimplemented!()
    }
    pub fn issue(&self, _req: &LeafRequest) -> Result<Issued, PkiError> {
        unimplemented!()
    }
}

impl Issued {
    /// Writes `PREFIX.crt` and `PREFIX.key` (0600) and returns their paths.
    pub fn write(&self, _prefix: &Path) -> Result<(PathBuf, PathBuf), PkiError> {
        unimplemented!()
    }
}

/// What `pairgate cert inspect --json` prints for one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sans: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub days_left: i64,
    pub sha256: String,
    pub is_ca: bool,
}

/// Every certificate in a PEM file, in file order.
pub fn inspect_file(_path: &Path, _now: OffsetDateTime) -> Result<Vec<CertInfo>, PkiError> {
    unimplemented!()
}
