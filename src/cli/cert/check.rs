//! `pairgate cert check`: dates, readability and the pairing certificate
//! profile of every certificate in the given files; exit 1 on any problem.

use std::path::Path;

use pairgate::pki::{self, CertInfo, Expiry};
use pairgate::tls::profile;
use serde::Serialize;
use time::OffsetDateTime;

use super::{rfc3339, CheckArgs, Failure};

pub(super) fn cert_check(args: CheckArgs) -> Result<(), Failure> {
    let now = OffsetDateTime::now_utc();
    let bundle = match &args.ca {
        Some(path) => Some(pairgate::tls::load_certs(path)?),
        None => None,
    };
    let rows: Vec<CheckRow> = args
        .files
        .iter()
        .flat_map(|file| check_file(file, now, args.warn_days, bundle.as_deref()))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for row in &rows {
            match row.index {
                Some(i) => println!("{} [{i}] {}: {}", row.file, row.subject, row.text),
                None => println!("{}: {}", row.file, row.text),
            }
        }
    }
    let mut bad: Vec<&str> = rows
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.file.as_str())
        .collect();
    bad.dedup();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Failure::problem(format!(
        "certificate problem in {}: renew with `pairgate cert rotate` (or `pairgate cert issue`) \
         before it expires or when it breaks the pairing profile, fix the clock if a \
         certificate is not yet valid, and check that unreadable files are PEM certificates",
        bad.join(", ")
    )))
}

/// One line of `cert check`: a certificate, or a file that could not be read.
#[derive(Debug, Serialize)]
struct CheckRow {
    file: String,
    /// 1-based position in the file; none for an unreadable file.
    index: Option<usize>,
    subject: String,
    /// `ok`, `expires_soon`, `expired`, `not_yet_valid`, `profile_violation`
    /// or `unreadable`.
    verdict: &'static str,
    days_left: Option<i64>,
    ok: bool,
    /// For `profile_violation`: the rule that failed and what was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    #[serde(skip)]
    text: String,
}

/// The pairing profile verdict on the first certificate of `file` (the
/// leaf, by the `PREFIX.crt` convention), against `bundle` or else the CA
/// certificates that follow it. `None` when there is nothing to check: the
/// file holds a self-signed CA (a `ca.crt` or `bundle.crt`), or cannot be read.
fn profile_of(
    file: &Path,
    infos: &[CertInfo],
    bundle: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Option<Result<(), profile::ProfileViolation>> {
    let first = infos.first()?;
    if first.is_ca && first.subject == first.issuer {
        return None;
    }
    let ders = pairgate::tls::load_certs(file).ok()?;
    let (leaf, rest) = ders.split_first()?;
    let cas = bundle.unwrap_or(rest);
    Some(if cas.is_empty() {
        profile::check_leaf_alone(leaf)
    } else {
        profile::Issuers::new(cas).check(leaf)
    })
}

/// Checks every certificate of `file`.
fn check_file(
    file: &Path,
    now: OffsetDateTime,
    warn_days: u32,
    bundle: Option<&[rustls::pki_types::CertificateDer<'static>]>,
) -> Vec<CheckRow> {
    let name = file.display().to_string();
    let infos = match pki::inspect_file(file, now) {
        Ok(infos) => infos,
        Err(e) => {
            return vec![CheckRow {
                file: name,
                index: None,
                subject: String::new(),
                verdict: "unreadable",
                days_left: None,
                ok: false,
                detail: None,
                text: format!("unreadable: {e}"),
            }]
        }
    };
    let profile = profile_of(file, &infos, bundle);
    infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let expiry = Expiry::of(info.not_before, info.not_after, now, i64::from(warn_days));
            let text = match expiry {
                Expiry::Valid => format!("ok, expires in {} days", info.days_left),
                Expiry::ExpiresSoon => format!(
                    "expires in {} days ({})",
                    info.days_left,
                    rfc3339(info.not_after)
                ),
                Expiry::Expired => format!("EXPIRED on {}", rfc3339(info.not_after)),
                Expiry::NotYetValid => format!("not yet valid (from {})", rfc3339(info.not_before)),
            };
            let (verdict, ok) = (expiry.as_str(), !expiry.needs_attention());
            // A profile violation outranks the dates: such a certificate
            // is refused by the peer whatever its validity.
            let (verdict, ok, text, detail) = match (&profile, i) {
                (Some(Err(v)), 0) => (
                    "profile_violation",
                    false,
                    format!("PROFILE VIOLATION: {v}; a peer gateway refuses it"),
                    Some(v.to_string()),
                ),
                _ => (verdict, ok, text, None),
            };
            CheckRow {
                file: name.clone(),
                index: Some(i + 1),
                subject: info.subject.clone(),
                verdict,
                days_left: Some(info.days_left),
                ok,
                detail,
                text,
            }
        })
        .collect()
}
