//! The CRLs of one [`Material`]: chosen when it loads (never older than the
//! ones in force, see `crl.rs`), kept across restarts, audited, and watched
//! for freshness (`tls.crl_overdue`).

use std::path::Path;

use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};
use time::OffsetDateTime;

use super::crl::{newest, pem, successor, trusted, CrlOverdue, CrlState};
use super::material::{Material, Sources, TlsError};

/// The CRLs to enforce from `tls.crl` (`file`), given what is in force: the
/// kept copy and `previous`. Returns the DER list for webpki, the trusted
/// CRLs among it, and why `file` was not taken as is (a rollback).
pub(super) fn choose(
    src: &Sources,
    cas: &[CertificateDer<'static>],
    file: Vec<CertificateRevocationListDer<'static>>,
    previous: Option<&Material>,
) -> (
    Vec<CertificateRevocationListDer<'static>>,
    Vec<CrlState>,
    Option<String>,
) {
    let candidate = trusted(&file, cas);
    let kept = match src.crl_kept.as_deref().filter(|p| p.exists()) {
        Some(path) => match super::material::load_crls(path) {
            Ok(ders) => trusted(&ders, cas),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kept copy of the CRLs in force; comparing with memory only");
                Vec::new()
            }
        },
        None => Vec::new(),
    };
    // Re-filtered against the new bundle: a CA that left it has no say.
    let previous: Vec<CertificateRevocationListDer<'static>> = previous
        .map(|m| m.crls.iter().map(|c| c.der.clone()).collect())
        .unwrap_or_default();
    let in_force = newest(&kept, &trusted(&previous, cas));
    match successor(&in_force, &candidate) {
        (None, _) => (file, candidate, None),
        (Some(rollback), chosen) => {
            let crl = src.crl.as_deref().unwrap_or(Path::new("tls.crl"));
            let kept = src
                .crl_kept
                .as_deref()
                .map(|p| format!(", or delete {}", p.display()))
                .unwrap_or_default();
            let why = format!(
                "{}: {rollback}; refused, the CRL in force is kept — copy the newest ca.crl \
                 there, or if the CA really went back (restored from a backup) re-sign it \
                 with `pairgate ca crl --dir CA_DIR --refresh` until its number is above the \
                 one in force{kept} to accept it",
                crl.display()
            );
            let ders = chosen.iter().map(|c| c.der.clone()).collect();
            (ders, chosen, Some(why))
        }
    }
}

/// One CRL as the `cert_reload` audit record carries it.
impl From<&CrlState> for crate::audit::CrlRecord {
    fn from(c: &CrlState) -> Self {
        crate::audit::CrlRecord {
            issuer: c.issuer.clone(),
            number: c.number,
            next_update: c.next_update.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            }),
        }
    }
}

impl Material {
    /// For a reload: a material whose `tls.crl` was refused as a rollback is
    /// itself refused, so the running one (with its CRL) stays.
    ///
    /// # Errors
    /// [`TlsError::CrlRollback`] saying why.
    pub fn refuse_crl_rollback(self) -> Result<Material, TlsError> {
        match &self.crl_refused {
            Some(why) => Err(TlsError::CrlRollback(why.clone())),
            None => Ok(self),
        }
    }

    /// What follows publishing this material (start, reload): keep its CRLs
    /// across restarts and say whether one is overdue. A kept copy that
    /// cannot be written is logged; the gateway runs on.
    pub fn after_publish(&self) {
        if let Err(e) = self.keep_crls() {
            tracing::error!(error = %e, "cannot keep a copy of the CRLs in force: a restart could not detect an older CRL");
        }
        self.note_crl_freshness(OffsetDateTime::now_utc());
    }

    /// `(issuer, nextUpdate as Unix seconds)` of each CRL in force that
    /// names a next update, for the `crl_next_update_seconds` gauge.
    pub fn crl_next_updates(&self) -> Vec<(String, i64)> {
        self.crls
            .iter()
            .filter_map(|c| Some((c.issuer.clone(), c.next_update?.unix_timestamp())))
            .collect()
    }

    /// The CRLs in force, for the `cert_reload` audit record.
    pub fn crl_records(&self) -> Vec<crate::audit::CrlRecord> {
        self.crls.iter().map(Into::into).collect()
    }

    /// Whether a CRL in force is past its `nextUpdate` at `now`.
    pub fn crl_overdue_at(&self, now: OffsetDateTime) -> bool {
        self.crls.iter().any(|c| c.overdue(now))
    }

    /// Logs an overdue CRL, once per loaded material: call at start, after
    /// a reload and from the watcher's tick (it only compares times). A
    /// fresh CRL loaded later is a new material, which logs again only if
    /// it is overdue too.
    pub fn note_crl_freshness(&self, now: OffsetDateTime) {
        use std::sync::atomic::Ordering;
        let Some(late) = self.crls.iter().find(|c| c.overdue(now)) else {
            return;
        };
        if self.crl_overdue_logged.swap(true, Ordering::Relaxed) {
            return;
        }
        let next_update = late.next_update.map(|t| t.to_string()).unwrap_or_default();
        match self.crl_overdue {
            CrlOverdue::Warn => tracing::warn!(
                issuer = %late.issuer, number = late.number, %next_update,
                "the CRL is overdue (past its next update); still enforcing it \
                 (tls.crl_overdue = \"warn\"): refresh it with `pairgate ca crl --refresh`"
            ),
            CrlOverdue::Deny => tracing::error!(
                issuer = %late.issuer, number = late.number, %next_update,
                "the CRL is overdue (past its next update): peers of this CA are refused \
                 (tls.crl_overdue = \"deny\") until it is refreshed with `pairgate ca crl --refresh`"
            ),
        }
    }

    /// Writes the CRLs in force to the kept copy (when configured and
    /// changed), so a restart cannot go back to an older CRL.
    ///
    /// # Errors
    /// [`crate::pki::PkiError::Io`] naming the file.
    pub fn keep_crls(&self) -> Result<(), crate::pki::PkiError> {
        let Some(path) = &self.crl_kept else {
            return Ok(());
        };
        if self.crls.is_empty() && !path.exists() {
            return Ok(());
        }
        let text = pem(&self.crls);
        if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
            return Ok(());
        }
        crate::pki::write_public_file(path, text.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::pki::revoke::tests::{issue_to, request};
    use crate::pki::{Ca, Validity};

    /// Site 1's material with `crl` (revoking site 2, 10 days overdue).
    fn setup(overdue: CrlOverdue) -> (tempfile::TempDir, Material, Vec<CertificateDer<'static>>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let ca = Ca::generate("revocation CA", Validity::days_from_now(60)).unwrap();
        ca.write_new(dir).unwrap();
        let site1 = issue_to(dir, &ca, "pool01.site1.example", "site1");
        let site2 = issue_to(dir, &ca, "pool02.site2.example", "site2");
        let past = OffsetDateTime::now_utc() - time::Duration::days(40);
        crate::pki::revoke(&request(dir, &site2), past).unwrap();
        let src = Sources {
            cert: site1,
            key: dir.join("site1.key"),
            ca: dir.join(crate::pki::CA_CERT_FILE),
            crl: Some(dir.join(crate::pki::CRL_FILE)),
            crl_kept: Some(dir.join("audit.crl-in-force.pem")),
            crl_overdue: overdue,
        };
        let material = Material::load(&src, "pool01.site1.example").unwrap();
        let chain = super::super::load_certs(&site2).unwrap();
        (tmp, material, chain)
    }

    #[test]
    fn a_revoked_peer_is_revoked_even_when_the_crl_is_overdue() {
        for overdue in [CrlOverdue::Warn, CrlOverdue::Deny] {
            let (_tmp, material, chain) = setup(overdue);
            assert!(material.crl_overdue_at(OffsetDateTime::now_utc()));
            // Established connections of a revoked peer close on reload,
            // whatever the CRL's age (webpki checks the age first).
            assert!(
                material.is_revoked(&chain, true, "pool02.site2.example"),
                "{overdue:?}"
            );
            assert!(
                material.is_revoked(&chain, false, "pool02.site2.example"),
                "{overdue:?}"
            );
        }
    }

    #[test]
    fn the_crls_in_force_are_kept_once_and_recorded() {
        let (tmp, material, _) = setup(CrlOverdue::Warn);
        let kept = tmp.path().join("audit.crl-in-force.pem");
        assert!(!kept.exists());
        material.keep_crls().unwrap();
        let first = std::fs::read(&kept).unwrap();
        material.keep_crls().unwrap();
        assert_eq!(std::fs::read(&kept).unwrap(), first);
        let records = material.crl_records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].number, 1);
        assert!(records[0].next_update.is_some());
        assert_eq!(material.crl_next_updates().len(), 1);
    }
}
