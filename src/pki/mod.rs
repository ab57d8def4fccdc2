//! The private pairing PKI: mint the CA and gateway certificates (rcgen) and
//! inspect them (x509-parser). Shared by the CLI, the demo and the tests.
//!
//! # Why a private CA
//!
//! The two gateways of a pairing authenticate each other with mutual TLS 1.3.
//! Nothing outside the pair needs to trust these certificates, so a small
//! private CA is enough and keeps the trust decision entirely in the
//! operator's hands: a certificate from a public or corporate CA would let
//! anybody else that CA certifies knock on the gateway's door.
//!
//! # Flow
//!
//! - [`Ca::generate`] + [`Ca::write_new`] (`pairgate ca init`) create
//!   `DIR/ca.crt` and `DIR/ca.key` (0600, never overwritten).
//! - [`Ca::load`] reads them back (refusing a group/world-readable key) and
//!   [`Ca::issue`] signs a gateway certificate for one pool ([`LeafRequest`]);
//!   [`Issued::write`] atomically replaces `PREFIX.crt`/`PREFIX.key`, so
//!   rotation can reuse it.
//! - [`inspect_file`] / [`inspect_der`] turn certificates into [`CertInfo`]
//!   for `pairgate cert inspect|check` and the gateway's own checks.
//! - Lifecycle: [`rotate_leaf`] (`cert rotate`: same SANs, fresh key, works
//!   on expired certificates and lost keys), [`revoke`] (`cert revoke`: the
//!   issuing CA's CRL in `DIR/ca.crl`), [`rotate_ca`] (`ca rotate`: new CA,
//!   `bundle.crt` and `previous/` for the overlap), [`inspect_crl_file`] /
//!   [`revoked_serials`] to read CRLs back, [`refresh_crl`] (`ca init`'s
//!   first, empty CRL and `ca crl --refresh`).
//!
//! # Files and secrets
//!
//! Every private key goes through [`write_secret_file`] (0600, tmp + fsync +
//! rename + directory fsync) or, for the CA key, a create-new write. Every
//! reader of a key calls [`check_key_permissions`] first. Layout and
//! operating advice live in `certs/README.md`.

mod ca;
mod crl;
mod error;
mod expiry;
mod files;
mod inspect;
mod leaf;
mod refresh;
pub(crate) mod revoke;
mod rollover;
mod rotate;
mod sealed;

use std::net::IpAddr;

use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

pub use ca::{Ca, CA_CERT_FILE, CA_KEY_FILE};
pub(crate) use crl::{crl_signed_by, issued_by};
pub use crl::{
    inspect_crl_der, inspect_crl_file, read_crl_file, revoked_serials, CrlInfo, RevokeReason,
    RevokedEntry, CRL_FILE,
};
pub use error::PkiError;
pub use expiry::{days_left, days_left_unix, Expiry, EXPIRY_WARNING_DAYS};
pub use files::{
    check_key_permissions, create_dir_private, read_text, suffixed, write_public_file,
    write_secret_file,
};
pub use inspect::{inspect_der, inspect_file, inspect_pem, CertInfo};
pub use leaf::validate_dns_name;
pub use refresh::{refresh_crl, refresh_crl_with, CrlRefresh};
pub use revoke::{revoke, revoke_with, Revocation, RevokeRequest, DEFAULT_NEXT_UPDATE_DAYS};
pub use rollover::{
    rotate_ca, rotate_ca_with, CaRotateOptions, CaRotation, BUNDLE_FILE, PREVIOUS_DIR,
};
pub use rotate::{rotate_leaf, LeafRotation};
pub use sealed::{is_encrypted, Given, NoPassphrase, Passphrase, MIN_PASSPHRASE_LEN};

/// How long before "now" a new certificate starts to be valid, to tolerate
/// clock skew between the two sites.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// A certificate's validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From a few minutes ago (clock skew between sites) to `days` days from now.
    ///
    /// A `days` so large that the date would leave the representable range is
    /// clamped to the end of year 9999.
    pub fn days_from_now(days: u32) -> Validity {
        Validity::days_from(OffsetDateTime::now_utc(), days)
    }

    /// Like [`Validity::days_from_now`] with an explicit `now` (for tests and
    /// reproducible tooling).
    pub fn days_from(now: OffsetDateTime, days: u32) -> Validity {
        let not_after = now
            .checked_add(Duration::days(i64::from(days)))
            .unwrap_or_else(far_future);
        let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
        Validity {
            not_before,
            not_after,
        }
    }
}

/// 9999-12-31T23:59:59Z, the last instant X.509 GeneralizedTime can carry.
fn far_future() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 23:59:59 UTC)
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
    /// Lower-case hex SHA-256 of the leaf certificate's DER.
    pub sha256: String,
    /// The end of its validity: as requested, or the CA's end if that comes first.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("sha256", &self.sha256)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// Lower-case hex SHA-256 of `bytes` (certificate fingerprints).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn days_from_now_allows_for_clock_skew() {
        let now = OffsetDateTime::now_utc();
        let v = Validity::days_from(now, 10);
        assert_eq!(v.not_before, now - Duration::minutes(5));
        assert_eq!(v.not_after, now + Duration::days(10));
    }

    #[test]
    fn huge_days_are_clamped_not_panicking() {
        let v = Validity::days_from_now(u32::MAX);
        assert_eq!(v.not_after, far_future());
    }

    #[test]
    fn sha256_hex_is_lower_case() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
