//! The pairing certificate profile: what a peer certificate must look like
//! beyond what path validation checks.
//!
//! # Why
//!
//! webpki (rustls) validates the path: signature, validity, EKU, revocation.
//! It is a general-purpose verifier and lets through shapes a strict X.509
//! verifier rejects: a leaf with `keyCertSign`, name or policy constraints in
//! an end-entity certificate, an Authority Key Identifier that names another
//! key. None of these lets a certificate in without a trusted CA key, but
//! the pairing CA is pairgate's own: it knows exactly what its certificates
//! look like, so anything else is refused — whoever produced it was not
//! `pairgate cert issue`.
//!
//! # The profile (what `pairgate cert issue` produces)
//!
//! | rule | requirement |
//! | --- | --- |
//! | `issuer` | issued directly by a CA certificate of `tls.ca` (no intermediates) |
//! | `not_ca` | basicConstraints absent or `cA` false |
//! | `key_usage` | keyUsage present, `digitalSignature` only |
//! | `extended_key_usage` | extendedKeyUsage exactly `serverAuth` + `clientAuth` |
//! | `pool_first_san` | the first subjectAltName is a DNS name that is a valid pool FQDN |
//! | `validity` | `notAfter` no later than the issuing CA's |
//! | `name_constraints` | no nameConstraints extension |
//! | `policy_constraints` | no policyConstraints, policyMappings or inhibitAnyPolicy |
//! | `authority_key_id` | an AKI key identifier equal to the issuing CA's SKI |
//! | `malformed` | the certificate (or an extension it carries) parses |
//!
//! [`check`] is a pure function of DER bytes (fuzzed as `cert_profile`); the
//! TLS verifiers call [`Issuers::check`] after path validation succeeded, in
//! both directions, and `pairgate cert check` calls it on files.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;

/// Which rule of the profile a certificate broke, and how.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("certificate profile rule `{rule}` failed: {detail}")]
pub struct ProfileViolation {
    /// One of the rule names of the module docs (`not_ca`, `key_usage`, …).
    pub rule: &'static str,
    /// What was found, in words.
    pub detail: String,
}

// rustls prints a certificate error's inner error with `{:?}`: keep it readable.
impl std::fmt::Debug for ProfileViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn violation(rule: &'static str, detail: impl Into<String>) -> ProfileViolation {
    ProfileViolation {
        rule,
        detail: detail.into(),
    }
}

/// The CA certificates of `tls.ca`, as the profile looks for a leaf's issuer.
#[derive(Debug, Default)]
pub struct Issuers {
    cas: Vec<CertificateDer<'static>>,
}

impl Issuers {
    pub fn new(cas: &[CertificateDer<'static>]) -> Issuers {
        Issuers { cas: cas.to_vec() }
    }

    /// Checks `leaf` against the profile, with its issuer taken from the
    /// trust bundle (subject name and signature must match).
    ///
    /// # Errors
    /// The first rule the certificate breaks.
    pub fn check(&self, leaf: &[u8]) -> Result<(), ProfileViolation> {
        let issuer = self
            .cas
            .iter()
            .find(|ca| crate::pki::issued_by(leaf, ca))
            .ok_or_else(|| {
                violation(
                    "issuer",
                    "not issued directly by a CA certificate of the trust bundle",
                )
            })?;
        check(leaf, issuer)
    }

    /// The same check as a rustls error, for the verifiers.
    ///
    /// # Errors
    /// `InvalidCertificate(Other(ProfileViolation))`; see [`violation_of`].
    pub fn verify(&self, leaf: &[u8]) -> Result<(), rustls::Error> {
        self.check(leaf).map_err(|v| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(v),
            )))
        })
    }
}

/// The profile violation inside a rustls error, if that is what it is.
pub fn violation_of(err: &rustls::Error) -> Option<&ProfileViolation> {
    match err {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
            other.0.downcast_ref::<ProfileViolation>()
        }
        _ => None,
    }
}

/// Checks `leaf_der` against the profile, `issuer_der` being the CA
/// certificate that issued it (the caller established that). Pure; never
/// panics.
///
/// # Errors
/// The first rule the certificate breaks, in the order of the module docs.
pub fn check(leaf_der: &[u8], issuer_der: &[u8]) -> Result<(), ProfileViolation> {
    let leaf = parse(leaf_der, "the certificate")?;
    let issuer = parse(issuer_der, "the issuing CA certificate")?;
    check_shape(&leaf)?;
    if leaf.validity().not_after > issuer.validity().not_after {
        return Err(violation(
            "validity",
            format!(
                "valid until {} but its CA only until {}",
                leaf.validity().not_after,
                issuer.validity().not_after
            ),
        ));
    }
    let ski = match key_identifier(&issuer, true)? {
        Some(ski) => ski,
        None => {
            return Err(violation(
                "authority_key_id",
                "the issuing CA has no subject key identifier",
            ))
        }
    };
    match key_identifier(&leaf, false)? {
        Some(aki) if aki == ski => Ok(()),
        Some(aki) => Err(violation(
            "authority_key_id",
            format!(
                "authority key identifier {} is not the CA's subject key identifier {}",
                hex::encode(aki),
                hex::encode(ski)
            ),
        )),
        None => Err(violation(
            "authority_key_id",
            "no authority key identifier naming the CA's key",
        )),
    }
}

/// The rules that need no issuer: everything but `validity` and
/// `authority_key_id` (what `pairgate cert check` can say about a leaf
/// without its CA).
///
/// # Errors
/// The first rule the certificate breaks.
pub fn check_leaf_alone(leaf_der: &[u8]) -> Result<(), ProfileViolation> {
    check_shape(&parse(leaf_der, "the certificate")?)
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, ProfileViolation> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(violation("malformed", format!("{what} has trailing bytes"))),
        Err(e) => Err(violation("malformed", format!("{what}: {e}"))),
    }
}

fn malformed(e: impl std::fmt::Display) -> ProfileViolation {
    violation("malformed", format!("an extension does not parse: {e}"))
}

/// Every issuer-independent rule, in order.
fn check_shape(leaf: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    if let Some(bc) = leaf.basic_constraints().map_err(malformed)? {
        if bc.value.ca {
            return Err(violation(
                "not_ca",
                "basicConstraints says cA: a CA certificate is not a gateway certificate",
            ));
        }
    }
    match leaf.key_usage().map_err(malformed)? {
        Some(ku) if ku.value.flags == 1 => {}
        Some(ku) => {
            return Err(violation(
                "key_usage",
                format!("key usage {} (only digitalSignature is issued)", ku.value),
            ))
        }
        None => {
            return Err(violation(
                "key_usage",
                "no keyUsage extension (digitalSignature only is issued)",
            ))
        }
    }
    match leaf.extended_key_usage().map_err(malformed)? {
        Some(eku)
            if eku.value.server_auth
                && eku.value.client_auth
                && !eku.value.any
                && !eku.value.code_signing
                && !eku.value.email_protection
                && !eku.value.time_stamping
                && !eku.value.ocsp_signing
                && eku.value.other.is_empty() => {}
        Some(_) => {
            return Err(violation(
                "extended_key_usage",
                "extended key usage is not exactly serverAuth + clientAuth",
            ))
        }
        None => {
            return Err(violation(
                "extended_key_usage",
                "no extendedKeyUsage extension (serverAuth + clientAuth are issued)",
            ))
        }
    }
    check_first_san(leaf)?;
    if leaf.name_constraints().map_err(malformed)?.is_some() {
        return Err(violation(
            "name_constraints",
            "name constraints in an end-entity certificate",
        ));
    }
    if leaf.policy_constraints().map_err(malformed)?.is_some()
        || leaf.policy_mappings().map_err(malformed)?.is_some()
        || leaf.inhibit_anypolicy().map_err(malformed)?.is_some()
    {
        return Err(violation(
            "policy_constraints",
            "policy constraints, mappings or inhibitAnyPolicy in an end-entity certificate",
        ));
    }
    Ok(())
}

fn check_first_san(leaf: &X509Certificate<'_>) -> Result<(), ProfileViolation> {
    let san = leaf.subject_alternative_name().map_err(malformed)?;
    let first = san.and_then(|s| s.value.general_names.first().cloned());
    match first {
        Some(GeneralName::DNSName(name)) if crate::names::is_valid_pool_name(name) => Ok(()),
        Some(GeneralName::DNSName(name)) => Err(violation(
            "pool_first_san",
            format!("the first subjectAltName {name:?} is not a pool FQDN"),
        )),
        Some(other) => Err(violation(
            "pool_first_san",
            format!("the first subjectAltName is {other}, not the pool's DNS name"),
        )),
        None => Err(violation(
            "pool_first_san",
            "no subjectAltName naming the pool",
        )),
    }
}

/// The SKI (`subject`) or the AKI's key identifier of a certificate.
fn key_identifier<'a>(
    cert: &'a X509Certificate<'_>,
    subject: bool,
) -> Result<Option<&'a [u8]>, ProfileViolation> {
    let oid = if subject {
        OID_X509_EXT_SUBJECT_KEY_IDENTIFIER
    } else {
        OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER
    };
    let Some(ext) = cert.get_extension_unique(&oid).map_err(malformed)? else {
        return Ok(None);
    };
    Ok(match ext.parsed_extension() {
        ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
        ParsedExtension::ParseError { error } => return Err(malformed(error)),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
