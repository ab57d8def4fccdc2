//! The CRLs a gateway enforces: which ones count, how fresh they are, and
//! never an older one than before.
//!
//! # Rollback
//!
//! A CRL un-revokes nothing by being newer, but an *older* CRL does: putting
//! CRL #1 back after #2 revoked a stolen gateway key lets that key in again.
//! So for each CA the gateway remembers the CRL in force — in memory, and in
//! a copy next to the audit log ([`kept_path`]) so a restart remembers too —
//! and refuses a candidate that is older:
//!
//! - a lower CRL number than the one in force: refused;
//! - the same number with different content: refused as well. A CA never
//!   signs two different lists under one number (`pairgate` increments it
//!   on every change), so this is a forgery with a stolen CA key or a CA
//!   restored from a backup; either way a person must look. The fix is to
//!   re-sign with a higher number (`pairgate ca crl --refresh`);
//! - no CRL at all for a CA still in the trust bundle, where one was in
//!   force: refused (deleting the list un-revokes as well as rolling it back);
//! - CRLs without a number (not pairgate's) compare by `thisUpdate` instead.
//!
//! Only CRLs whose signature verifies with a CA of the trust bundle count:
//! anyone could write a file with a huge CRL number otherwise, and pin the
//! gateway to it.
//!
//! # Freshness
//!
//! A CRL past its `nextUpdate` is *overdue*: its CA promised a newer one.
//! `tls.crl_overdue` decides what that means ([`CrlOverdue`]); either way it
//! is visible (`check`, metrics, one log line).

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use serde::Serialize;
use time::OffsetDateTime;

/// `tls.crl_overdue`: what a CRL past its `nextUpdate` means.
///
/// The trade-off (see `docs/security.md`): `deny` makes sure a revocation
/// cannot be outrun by keeping an old CRL around, but then a CA host that is
/// gone — the very disaster the pairing exists for — stops replication once
/// the last CRL runs out. `warn` keeps the pair working on the last CRL and
/// says so loudly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrlOverdue {
    /// Keep enforcing the overdue CRL; log once, show in `check` and metrics.
    #[default]
    Warn,
    /// Refuse peers whose CA's CRL is overdue (`crl_overdue`).
    Deny,
}

impl CrlOverdue {
    pub fn as_str(self) -> &'static str {
        match self {
            CrlOverdue::Warn => "warn",
            CrlOverdue::Deny => "deny",
        }
    }
}

/// One CRL in force, signed by a CA of the trust bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CrlState {
    /// The issuer's distinguished name (`CN=…, O=…`).
    pub issuer: String,
    /// The CRL number (0 when the CRL carries none).
    pub number: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_update: Option<OffsetDateTime>,
    #[serde(skip)]
    pub der: CertificateRevocationListDer<'static>,
}

impl CrlState {
    /// Whether the CRL is past its `nextUpdate` at `now`.
    pub fn overdue(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|next| next < now)
    }
}

/// Where the copy of the CRLs in force is kept: beside the audit log, named
/// after it (`audit/site1.jsonl` → `audit/site1.crl-in-force.pem`), because
/// that folder is the gateway's own and written anyway.
pub fn kept_path(audit_log: &Path) -> PathBuf {
    let stem = audit_log
        .file_stem()
        .map_or_else(|| "audit".into(), |s| s.to_string_lossy().into_owned());
    audit_log.with_file_name(format!("{stem}.crl-in-force.pem"))
}

/// The CRLs of `crls` signed by a CA of `cas`, parsed, in order. CRLs that
/// do not parse or that no trusted CA signed are left out (webpki ignores
/// them as well, or fails closed on them).
pub fn trusted(
    crls: &[CertificateRevocationListDer<'static>],
    cas: &[CertificateDer<'static>],
) -> Vec<CrlState> {
    crls.iter()
        .filter(|der| cas.iter().any(|ca| crate::pki::crl_signed_by(der, ca)))
        .filter_map(|der| {
            let info = crate::pki::inspect_crl_der(der).ok()?;
            Some(CrlState {
                issuer: info.issuer,
                number: info.number,
                this_update: info.this_update,
                next_update: info.next_update,
                der: der.clone(),
            })
        })
        .collect()
}

/// Why a candidate CRL set is older than the one in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollback {
    /// A lower CRL number (or an older `thisUpdate`, without numbers).
    Older {
        issuer: String,
        number: u64,
        in_force: u64,
    },
    /// The same number, different content.
    Replaced { issuer: String, number: u64 },
    /// No CRL at all for a CA whose CRL is in force.
    Dropped { issuer: String, in_force: u64 },
}

impl std::fmt::Display for Rollback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rollback::Older {
                issuer,
                number,
                in_force,
            } => write!(
                f,
                "CRL number {number} of {issuer} is older than the CRL number {in_force} in force"
            ),
            Rollback::Replaced { issuer, number } => write!(
                f,
                "CRL number {number} of {issuer} differs from the CRL number {number} in force \
                 (a CA never signs two lists under one number)"
            ),
            Rollback::Dropped { issuer, in_force } => write!(
                f,
                "no CRL of {issuer} although its CRL number {in_force} is in force and the CA \
                 is still trusted"
            ),
        }
    }
}

/// Compares one candidate CRL with the one in force for the same issuer.
fn compare(candidate: &CrlState, in_force: &CrlState) -> Result<(), Rollback> {
    if candidate.der == in_force.der {
        return Ok(());
    }
    let order = if candidate.number == 0 && in_force.number == 0 {
        candidate.this_update.cmp(&in_force.this_update)
    } else {
        candidate.number.cmp(&in_force.number)
    };
    match order {
        std::cmp::Ordering::Greater => Ok(()),
        std::cmp::Ordering::Less => Err(Rollback::Older {
            issuer: candidate.issuer.clone(),
            number: candidate.number,
            in_force: in_force.number,
        }),
        std::cmp::Ordering::Equal => Err(Rollback::Replaced {
            issuer: candidate.issuer.clone(),
            number: candidate.number,
        }),
    }
}

/// The newest CRL per issuer of `a` and `b` (both already [`trusted`]):
/// what is in force when both the kept copy and memory speak.
pub fn newest(a: &[CrlState], b: &[CrlState]) -> Vec<CrlState> {
    let mut out: Vec<CrlState> = Vec::new();
    for crl in a.iter().chain(b) {
        match out.iter_mut().find(|c| c.issuer == crl.issuer) {
            Some(slot) => {
                if matches!(compare(slot, crl), Err(Rollback::Older { .. })) {
                    *slot = crl.clone();
                }
            }
            None => out.push(crl.clone()),
        }
    }
    out
}

/// Checks a candidate CRL set against the one in force. Pure.
///
/// Returns the first rollback found, and the set to enforce: per issuer the
/// candidate where it is not older, else the CRL in force (old CRL kept),
/// in the candidate's order followed by issuers only in force.
pub fn successor(
    in_force: &[CrlState],
    candidate: &[CrlState],
) -> (Option<Rollback>, Vec<CrlState>) {
    let mut first: Option<Rollback> = None;
    let mut chosen: Vec<CrlState> = Vec::new();
    for cand in candidate {
        if chosen.iter().any(|c| c.issuer == cand.issuer) {
            continue; // webpki uses the first CRL per issuer, so do we
        }
        match in_force.iter().find(|c| c.issuer == cand.issuer) {
            Some(old) => match compare(cand, old) {
                Ok(()) => chosen.push(cand.clone()),
                Err(rollback) => {
                    first.get_or_insert(rollback);
                    chosen.push(old.clone());
                }
            },
            None => chosen.push(cand.clone()),
        }
    }
    for old in in_force {
        if !chosen.iter().any(|c| c.issuer == old.issuer) {
            first.get_or_insert(Rollback::Dropped {
                issuer: old.issuer.clone(),
                in_force: old.number,
            });
            chosen.push(old.clone());
        }
    }
    (first, chosen)
}

/// PEM text of the CRLs, for the kept copy.
pub(super) fn pem(crls: &[CrlState]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    crls.iter()
        .map(|c| pem::encode_config(&pem::Pem::new("X509 CRL", c.der.to_vec()), config))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cloned_ref_to_slice_refs)] // tests: terse fixtures
mod tests {
    use super::*;
    use time::Duration;

    fn crl(issuer: &str, number: u64, der: &[u8]) -> CrlState {
        let now = OffsetDateTime::now_utc();
        CrlState {
            issuer: issuer.into(),
            number,
            this_update: now + Duration::seconds(i64::try_from(number).unwrap()),
            next_update: Some(now + Duration::days(30)),
            der: der.to_vec().into(),
        }
    }

    #[test]
    fn newer_and_same_are_accepted() {
        let one = crl("CN=a", 1, b"one");
        let two = crl("CN=a", 2, b"two");
        assert_eq!(successor(&[one.clone()], &[two.clone()]), (None, vec![two]));
        assert_eq!(
            successor(&[one.clone()], &[one.clone()]),
            (None, vec![one.clone()])
        );
        // Nothing in force yet: anything goes.
        assert_eq!(successor(&[], &[one.clone()]), (None, vec![one]));
    }

    #[test]
    fn older_replaced_and_dropped_are_refused_and_the_old_kept() {
        let one = crl("CN=a", 1, b"one");
        let two = crl("CN=a", 2, b"two");
        let (why, kept) = successor(&[two.clone()], &[one]);
        assert_eq!(
            why,
            Some(Rollback::Older {
                issuer: "CN=a".into(),
                number: 1,
                in_force: 2
            })
        );
        assert_eq!(kept, vec![two.clone()]);

        let forged = crl("CN=a", 2, b"forged");
        let (why, kept) = successor(&[two.clone()], &[forged]);
        assert!(matches!(why, Some(Rollback::Replaced { number: 2, .. })));
        assert_eq!(kept, vec![two.clone()]);

        let (why, kept) = successor(&[two.clone()], &[]);
        assert!(matches!(why, Some(Rollback::Dropped { in_force: 2, .. })));
        assert_eq!(kept, vec![two.clone()]);
        assert!(why.unwrap().to_string().contains("still trusted"));
    }

    #[test]
    fn one_issuer_rolled_back_does_not_hold_back_another() {
        let a2 = crl("CN=a", 2, b"a2");
        let b1 = crl("CN=b", 1, b"b1");
        let (why, chosen) = successor(
            &[a2.clone(), b1],
            &[crl("CN=a", 1, b"a1"), crl("CN=b", 5, b"b5")],
        );
        assert!(matches!(why, Some(Rollback::Older { in_force: 2, .. })));
        assert_eq!(chosen[0], a2);
        assert_eq!(chosen[1].number, 5);
    }

    #[test]
    fn unnumbered_crls_compare_by_this_update() {
        let old = crl("CN=x", 0, b"old");
        let mut new = crl("CN=x", 0, b"new");
        new.this_update = old.this_update + Duration::hours(1);
        assert_eq!(successor(&[old.clone()], &[new.clone()]).0, None);
        assert!(matches!(
            successor(&[new], &[old]).0,
            Some(Rollback::Older { .. })
        ));
    }

    #[test]
    fn newest_merges_memory_and_the_kept_copy() {
        let one = crl("CN=a", 1, b"one");
        let two = crl("CN=a", 2, b"two");
        let b = crl("CN=b", 3, b"b");
        assert_eq!(
            newest(&[one.clone()], &[two.clone(), b.clone()]),
            vec![two.clone(), b]
        );
        assert_eq!(newest(&[two.clone()], &[one]), vec![two]);
    }

    #[test]
    fn kept_copy_sits_beside_the_audit_log() {
        assert_eq!(
            kept_path(Path::new("/srv/pg/audit/site1.jsonl")),
            Path::new("/srv/pg/audit/site1.crl-in-force.pem")
        );
    }

    #[test]
    fn overdue_is_past_next_update() {
        let mut c = crl("CN=a", 1, b"x");
        let now = OffsetDateTime::now_utc();
        assert!(!c.overdue(now));
        c.next_update = Some(now - Duration::seconds(1));
        assert!(c.overdue(now));
        c.next_update = None;
        assert!(!c.overdue(now));
    }
}
