//! Certificate revocation lists: read them back (x509-parser), sign new ones
//! (rcgen), and tell which CA signed which.
//!
//! # Why CRLs and not OCSP
//!
//! The two gateways talk only to each other and must keep working when the
//! other site (or the administration workstation) is gone; a CRL is a plain
//! file both sites hold, checked locally, with no responder to reach.
//!
//! # One file, one CRL per CA
//!
//! The gateway loads every CRL from the one `tls.crl` file. Normally that is
//! the current CA's CRL; during a CA rollover it is the current CA's CRL
//! followed by the previous CA's (see `rollover.rs`). webpki picks the first
//! CRL whose issuer NAME matches the certificate's issuer, so two CAs in one
//! rollover must never share a name (`pairgate ca rotate` enforces that).
//!
//! A CRL is never edited in place: every update re-signs the full list with
//! the next CRL number, and the previous entries (serial, date, reason,
//! invalidity date) are carried over from the parsed old CRL.

use std::path::Path;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, RevocationReason, RevokedCertParams, SerialNumber};
use rustls::pki_types::CertificateRevocationListDer;
use serde::Serialize;
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::inspect::serial_hex;
use super::{Ca, PkiError};

/// File name of the CRL inside the CA directory (and inside `previous/`).
pub const CRL_FILE: &str = "ca.crl";

/// Why a certificate is revoked (RFC 5280 §5.3.1 reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

/// Every reason with its command-line name and RFC 5280 code.
const REASONS: [(RevokeReason, &str, u8); 7] = [
    (RevokeReason::Unspecified, "unspecified", 0),
    (RevokeReason::KeyCompromise, "key-compromise", 1),
    (RevokeReason::CaCompromise, "ca-compromise", 2),
    (RevokeReason::AffiliationChanged, "affiliation-changed", 3),
    (RevokeReason::Superseded, "superseded", 4),
    (
        RevokeReason::CessationOfOperation,
        "cessation-of-operation",
        5,
    ),
    (RevokeReason::PrivilegeWithdrawn, "privilege-withdrawn", 9),
];

impl RevokeReason {
    /// The command-line name (`key-compromise`, …).
    pub fn as_str(self) -> &'static str {
        REASONS
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or("unspecified", |(_, name, _)| name)
    }

    fn code(self) -> u8 {
        REASONS
            .iter()
            .find(|(r, _, _)| *r == self)
            .map_or(0, |(_, _, code)| *code)
    }
}

impl std::fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RevokeReason {
    type Err = String;

    fn from_str(s: &str) -> Result<RevokeReason, String> {
        REASONS
            .iter()
            .find(|(_, name, _)| name.eq_ignore_ascii_case(s))
            .map(|(r, _, _)| *r)
            .ok_or_else(|| {
                let names: Vec<&str> = REASONS.iter().map(|(_, n, _)| *n).collect();
                format!("unknown reason {s:?}; use one of: {}", names.join(", "))
            })
    }
}

/// An RFC 5280 reason code as rcgen's enum (codes 7 and > 10 do not exist).
fn rcgen_reason(code: u8) -> Option<RevocationReason> {
    use RevocationReason::*;
    Some(match code {
        0 => Unspecified,
        1 => KeyCompromise,
        2 => CaCompromise,
        3 => AffiliationChanged,
        4 => Superseded,
        5 => CessationOfOperation,
        6 => CertificateHold,
        8 => RemoveFromCrl,
        9 => PrivilegeWithdrawn,
        10 => AaCompromise,
        _ => return None,
    })
}

fn reason_name(code: u8) -> String {
    match REASONS.iter().find(|(_, _, c)| *c == code) {
        Some((_, name, _)) => (*name).to_string(),
        None => format!("code {code}"),
    }
}

/// One revoked certificate of a CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevokedEntry {
    /// Lower-case hex, as `pairgate cert inspect` prints serials.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub revoked_at: OffsetDateTime,
    /// `key-compromise`, …; `None` when the CRL gives no reason.
    pub reason: Option<String>,
}

/// What `pairgate ca crl` shows for one CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlInfo {
    pub issuer: String,
    /// The CRL number (0 when the CRL carries none).
    pub number: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    pub revoked: Vec<RevokedEntry>,
}

/// Every CRL in a file: PEM `X509 CRL` blocks, or else the whole file as
/// one DER CRL (what the gateway's loader accepts too). An empty file holds none.
///
/// # Errors
/// [`PkiError::Io`] when the file cannot be read, [`PkiError::BadCrl`] for
/// broken PEM.
pub fn read_crl_file(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PkiError> {
    let bytes = std::fs::read(path).map_err(PkiError::io(path, "read"))?;
    let crls: Vec<_> = rustls_pemfile::crls(&mut bytes.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad_crl(path, e.to_string()))?;
    if crls.is_empty() && !bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(vec![CertificateRevocationListDer::from(bytes)]);
    }
    Ok(crls)
}

/// Every CRL of a file, parsed, in file order.
///
/// # Errors
/// As [`read_crl_file`], and [`PkiError::BadCrl`] for a CRL that does not parse.
pub fn inspect_crl_file(path: &Path) -> Result<Vec<CrlInfo>, PkiError> {
    read_crl_file(path)?
        .iter()
        .map(|der| inspect_crl_der(der).map_err(|e| bad_crl(path, e)))
        .collect()
}

/// The revoked serials (lower-case hex) of every CRL in `crl_path`, in file
/// order, without duplicates.
///
/// # Errors
/// As [`inspect_crl_file`].
pub fn revoked_serials(crl_path: &Path) -> Result<Vec<String>, PkiError> {
    let mut serials: Vec<String> = Vec::new();
    for crl in inspect_crl_file(crl_path)? {
        for entry in crl.revoked {
            if !serials.contains(&entry.serial) {
                serials.push(entry.serial);
            }
        }
    }
    Ok(serials)
}

/// One DER CRL → [`CrlInfo`]. Pure; never panics.
///
/// # Errors
/// A description of what does not parse.
pub fn inspect_crl_der(der: &[u8]) -> Result<CrlInfo, String> {
    let crl = parse(der)?;
    let revoked = crl
        .iter_revoked_certificates()
        .map(|r| RevokedEntry {
            serial: serial_hex(r.raw_serial()),
            revoked_at: r.revocation_date.to_datetime(),
            reason: r.reason_code().map(|(_, code)| reason_name(code.0)),
        })
        .collect();
    Ok(CrlInfo {
        issuer: crl.issuer().to_string(),
        number: crl_number(&crl)?,
        this_update: crl.last_update().to_datetime(),
        next_update: crl.next_update().map(|t| t.to_datetime()),
        revoked,
    })
}

fn parse(der: &[u8]) -> Result<CertificateRevocationList<'_>, String> {
    let (rest, crl) = CertificateRevocationList::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} trailing bytes after the CRL", rest.len()));
    }
    Ok(crl)
}

fn crl_number(crl: &CertificateRevocationList<'_>) -> Result<u64, String> {
    let Some(number) = crl.crl_number() else {
        return Ok(0);
    };
    let bytes = number.to_bytes_be();
    let bytes = bytes.as_slice();
    if bytes.len() > 8 {
        return Err("the CRL number does not fit in 64 bits".into());
    }
    Ok(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

fn bad_crl(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::BadCrl {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Whether `cert_der`'s issuer is `ca_der`'s subject and its signature
/// verifies with `ca_der`'s key. False for anything that does not parse.
pub(crate) fn issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        x509_parser::parse_x509_certificate(cert_der),
        x509_parser::parse_x509_certificate(ca_der),
    ) else {
        return false;
    };
    // verify_signature needs x509-parser's `verify` feature, which rcgen's
    // `x509-parser` feature turns on.
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Whether `crl_der` is a CRL whose signature verifies with `ca_der`'s key.
pub(crate) fn crl_signed_by(crl_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok(crl), Ok((_, ca))) = (parse(crl_der), x509_parser::parse_x509_certificate(ca_der))
    else {
        return false;
    };
    crl.issuer().as_raw() == ca.subject().as_raw() && crl.verify_signature(ca.public_key()).is_ok()
}

/// A CA's current CRL: the highest-numbered CRL in `files` (those that
/// exist) signed by `ca_der`, with its number.
///
/// # Errors
/// As [`read_crl_file`], and [`PkiError::BadCrl`] for a CRL that does not
/// parse; CRLs signed by other CAs are skipped.
pub(crate) fn latest_crl(
    files: &[&Path],
    ca_der: &[u8],
) -> Result<Option<(u64, CertificateRevocationListDer<'static>)>, PkiError> {
    let mut best: Option<(u64, CertificateRevocationListDer<'static>)> = None;
    for path in files.iter().filter(|p| p.exists()) {
        for der in read_crl_file(path)? {
            // A CRL that does not parse is an error, never skipped: re-signing
            // without it would silently un-revoke its certificates.
            let number = parse(&der)
                .and_then(|crl| crl_number(&crl))
                .map_err(|e| bad_crl(path, e))?;
            if !crl_signed_by(&der, ca_der) {
                continue;
            }
            if best.as_ref().is_none_or(|(n, _)| number > *n) {
                best = Some((number, der));
            }
        }
    }
    Ok(best)
}

/// The entries of a CRL as rcgen parameters, to be signed again.
///
/// # Errors
/// A description of what does not parse.
pub(crate) fn entries(der: &[u8]) -> Result<Vec<RevokedCertParams>, String> {
    let crl = parse(der)?;
    Ok(crl
        .iter_revoked_certificates()
        .map(|r| RevokedCertParams {
            serial_number: SerialNumber::from_slice(r.raw_serial()),
            revocation_time: r.revocation_date.to_datetime(),
            reason_code: r.reason_code().and_then(|(_, code)| rcgen_reason(code.0)),
            invalidity_date: r.invalidity_date().map(|(_, t)| t.to_datetime()),
        })
        .collect())
}

/// A new entry for the certificate serial `raw_serial` (DER INTEGER bytes).
pub(crate) fn new_entry(
    raw_serial: &[u8],
    reason: RevokeReason,
    now: OffsetDateTime,
) -> RevokedCertParams {
    RevokedCertParams {
        serial_number: SerialNumber::from_slice(raw_serial),
        revocation_time: now,
        reason_code: rcgen_reason(reason.code()),
        invalidity_date: None,
    }
}

/// Whether `entries` already revokes `raw_serial` (sign padding ignored).
pub(crate) fn contains_serial(entries: &[RevokedCertParams], raw_serial: &[u8]) -> bool {
    let wanted = serial_hex(raw_serial);
    entries
        .iter()
        .any(|e| serial_hex(e.serial_number.as_ref()) == wanted)
}

/// Signs a full CRL for `ca`: number `number`, issued `now`, next update in
/// `next_update_days` days.
///
/// # Errors
/// [`PkiError::Rcgen`] when rcgen cannot sign (e.g. a CA without cRLSign).
pub(crate) fn sign(
    ca: &Ca,
    number: u64,
    revoked_certs: Vec<RevokedCertParams>,
    now: OffsetDateTime,
    next_update_days: u32,
) -> Result<CertificateRevocationListDer<'static>, PkiError> {
    let (issuer, key) = ca.signer();
    let next_update = now
        .checked_add(Duration::days(i64::from(next_update_days.max(1))))
        .unwrap_or(now + Duration::days(1));
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        // The AKI must be the CA certificate's own SKI.
        key_identifier_method: issuer.params().key_identifier_method.clone(),
    };
    let crl = params
        .signed_by(issuer, key)
        .map_err(PkiError::rcgen("sign the CRL"))?;
    Ok(crl.der().clone())
}

/// PEM text of CRLs, concatenated in order.
pub(crate) fn pem_encode(crls: &[&CertificateRevocationListDer<'_>]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    crls.iter()
        .map(|der| pem::encode_config(&pem::Pem::new("X509 CRL", der.to_vec()), config))
        .collect()
}
