//! The only place the TLS versions, the crypto provider and the certificate
//! verifiers are chosen.
//!
//! Between the two gateways: TLS 1.3 only, ring provider, mutual
//! authentication with chains verified against the pairing CA bundle (and CRL),
//! the service named by ALPN (`pg1/<service>`, `pg1-spool`). Session
//! resumption is off on both sides: every connection presents and verifies a
//! full certificate chain, so a revocation or a rotation applies to the very
//! next connection.
//!
//! Configs are built per connection from the current [`Material`], with
//! verifiers that remember which certificate the peer presented, so even a
//! refused handshake is audited with the certificate's fingerprint.

pub mod crl;
pub mod crl_offer;
mod identity;
mod material;
pub mod profile;
mod revocation;
mod session;
mod validity;

pub use crl::CrlOverdue;
pub use identity::{fingerprint, identity_of, IdentityError, PeerIdentity};
pub use material::{load_certs, Material, Sources, TlsError};
pub use session::{client_config, server_config, Observed};
pub use validity::{local_detail, refusal, refusal_at};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::{AlertDescription, CertificateError, Error};

use crate::names::ServiceName;
use crate::policy::DenyReason;

/// ALPN of the spool transfer.
pub const ALPN_SPOOL: &[u8] = b"pg1-spool";
/// ALPN of the control channel between the two gateways of a pair
/// (heartbeat and audit chain head). Allowed for the paired pool only,
/// without a policy service entry: it is part of being paired.
pub const ALPN_CONTROL: &[u8] = b"pg1-control";
/// The service name the spool transfer is known by in the policy.
pub const SPOOL_SERVICE: &str = "spool";

/// The crypto provider for every TLS config pairgate builds.
///
/// One shared instance: configs are built per connection and keep their
/// provider alive as long as the connection lives.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// ALPN protocol id for a service: `pg1/<service>`, or `pg1-spool`.
pub fn alpn_for(service: &str) -> Vec<u8> {
    if service == SPOOL_SERVICE {
        ALPN_SPOOL.to_vec()
    } else {
        format!("pg1/{service}").into_bytes()
    }
}

/// ALPN of a tunnel that starts with the connection preamble
/// (`proxy::preamble`): `pg2/<service>`.
pub fn alpn_with_preamble(service: &str) -> Vec<u8> {
    format!("pg2/{service}").into_bytes()
}

/// What a tunnel's dialler offers, preferred first: `pg2/<service>`, then
/// `pg1/<service>` for a peer that predates the preamble.
pub fn tunnel_alpns(service: &str) -> Vec<Vec<u8>> {
    vec![alpn_with_preamble(service), alpn_for(service)]
}

/// Whether an ALPN protocol id is a tunnel with the connection preamble.
pub fn has_preamble(alpn: &[u8]) -> bool {
    alpn.starts_with(b"pg2/")
}

/// The service an ALPN protocol id names, if it is one of ours
/// (`pg1/<service>`, `pg2/<service>`, `pg1-spool`) and a valid name.
pub fn service_from_alpn(alpn: &[u8]) -> Option<ServiceName> {
    if alpn == ALPN_SPOOL {
        return Some(ServiceName::known(SPOOL_SERVICE));
    }
    let name = match alpn.strip_prefix(b"pg2/") {
        // The spool has its own ALPN and no preamble.
        Some(name) if name == SPOOL_SERVICE.as_bytes() => return None,
        Some(name) => name,
        None => alpn.strip_prefix(b"pg1/")?,
    };
    ServiceName::new(std::str::from_utf8(name).ok()?).ok()
}

/// The audit reason for a failed handshake, from the error rustls reported
/// (locally, or as an alert from the other side).
pub fn deny_reason(err: &Error) -> DenyReason {
    match err {
        Error::NoCertificatesPresented => DenyReason::NoClientCert,
        Error::InvalidCertificate(e) => match e {
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                DenyReason::UnknownCa
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                DenyReason::Expired
            }
            // A clock problem more often than a certificate problem: its own reason.
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                DenyReason::NotYetValid
            }
            CertificateError::Revoked => DenyReason::Revoked,
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. } => DenyReason::CrlOverdue,
            CertificateError::Other(_) if profile::violation_of(err).is_some() => {
                DenyReason::ProfileViolation
            }
            _ => DenyReason::BadCertificate,
        },
        Error::AlertReceived(alert) => match alert {
            AlertDescription::CertificateRequired => DenyReason::NoClientCert,
            AlertDescription::UnknownCA => DenyReason::UnknownCa,
            AlertDescription::CertificateExpired => DenyReason::Expired,
            AlertDescription::CertificateRevoked => DenyReason::Revoked,
            AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown => DenyReason::BadCertificate,
            _ => DenyReason::HandshakeFailed,
        },
        _ => DenyReason::HandshakeFailed,
    }
}

/// The rustls error inside an I/O error from tokio-rustls, if there is one.
pub fn rustls_error(err: &std::io::Error) -> Option<&Error> {
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
}

/// A certificate verification error in words an operator can act on.
pub fn verify_error_text(err: &Error) -> String {
    match err {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "certificate does not chain to the trusted CA bundle (wrong CA?)".to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "certificate has expired — issue a fresh one with `pairgate cert rotate`".to_owned(),
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "certificate is not valid yet — check the clocks of this host and the CA host"
            .to_owned(),
        Error::InvalidCertificate(CertificateError::Revoked) => {
            "certificate is revoked by the CRL — issue a new one with `pairgate cert issue`"
                .to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "certificate is not valid for the pool name".to_owned(),
        Error::InvalidCertificate(
            CertificateError::ExpiredRevocationList
            | CertificateError::ExpiredRevocationListContext { .. },
        ) => "the CRL for this certificate's CA is past its next update and tls.crl_overdue = \"deny\" \
              — refresh it with `pairgate ca crl --refresh` and copy it to both sites"
            .to_owned(),
        other if profile::violation_of(other).is_some() => profile::violation_of(other)
            .map(|v| format!("{v} — issue the certificate with `pairgate cert issue`"))
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_round_trip() {
        for service in ["backup-smb", "cms-https", "spool"] {
            assert_eq!(
                service_from_alpn(&alpn_for(service)).as_deref(),
                Some(service)
            );
        }
        assert_eq!(service_from_alpn(b"h2"), None);
        assert_eq!(
            service_from_alpn(&alpn_with_preamble("backup-smb")).as_deref(),
            Some("backup-smb")
        );
        assert!(has_preamble(&tunnel_alpns("cms-smb")[0]) && !has_preamble(b"pg1/cms-smb"));
        assert_eq!(tunnel_alpns("cms-smb")[1], b"pg1/cms-smb");
        assert_eq!(service_from_alpn(b"pg2/spool"), None);
        assert_eq!(service_from_alpn(b"pg3/x"), None);
        assert_eq!(service_from_alpn(b"pg1/"), None);
        assert_eq!(service_from_alpn(b"pg1/Bad"), None);
        assert_eq!(service_from_alpn(b"pg1/\xff"), None);
    }

    #[test]
    fn reasons_for_errors() {
        assert_eq!(
            deny_reason(&Error::NoCertificatesPresented),
            DenyReason::NoClientCert
        );
        assert_eq!(
            deny_reason(&Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            DenyReason::UnknownCa
        );
        assert_eq!(
            deny_reason(&Error::InvalidCertificate(CertificateError::Expired)),
            DenyReason::Expired
        );
        assert_eq!(
            deny_reason(&Error::InvalidCertificate(CertificateError::NotValidYet)),
            DenyReason::NotYetValid
        );
        assert_eq!(
            deny_reason(&Error::InvalidCertificate(CertificateError::Revoked)),
            DenyReason::Revoked
        );
        assert_eq!(
            deny_reason(&Error::HandshakeNotComplete),
            DenyReason::HandshakeFailed
        );
    }
}
