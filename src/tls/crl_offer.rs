//! CRLs carried over the pair's control channel, so a revocation reaches
//! the other site within one heartbeat instead of waiting for someone to
//! copy a file.
//!
//! Each heartbeat (`proxy::control`) tells the answering gateway which CRL
//! number it enforces per CA ([`CrlNumber`]). The answering gateway puts
//! those of its CRLs in force that are newer (a higher number, or a CA the
//! dialler has no CRL of) into its answer, as PEM ([`Material::crl_offer_for`]).
//! Both gateways dial heartbeats, so either site's newer CRL reaches the
//! other within one heartbeat interval of the other's.
//!
//! The receiving side trusts nothing in the offer but the signatures:
//! [`Material::take_crl_offer`] parses it (bounded: [`MAX_OFFER_BYTES`],
//! [`MAX_OFFER_CRLS`]), keeps only CRLs a CA of its own `tls.ca` signed
//! (refusing the offer otherwise), applies the rollback rules of
//! `tls::crl` (never older than the CRL in force, never the same number
//! with other content), and writes the resulting set atomically to its
//! `tls.crl` file — or, without `tls.crl`, to the kept copy beside the
//! audit log, which a gateway without `tls.crl` then enforces. The file
//! watcher applies it through the normal reload path, which closes
//! established connections of a now-revoked peer. Only pairgate's
//! numbered CRLs travel; unnumbered ones stay a local matter.

use std::path::PathBuf;

use rustls::pki_types::CertificateRevocationListDer;
use serde::{Deserialize, Serialize};

use super::crl::{pem, successor, trusted, CrlState};
use super::material::Material;

/// Largest CRL offer accepted or sent, in bytes of PEM text.
pub const MAX_OFFER_BYTES: usize = 192 * 1024;
/// Most CRLs in one offer (one per CA of the bundle: two during a rollover).
pub const MAX_OFFER_CRLS: usize = 8;

/// The CRL a gateway enforces for one CA, as the heartbeat carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrlNumber {
    /// The CRL issuer's distinguished name.
    pub issuer: String,
    pub number: u64,
}

/// Why an offered CRL was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("the CRL offer is {0} bytes, more than {MAX_OFFER_BYTES}")]
    TooLarge(usize),
    #[error("the CRL offer holds {0} CRLs, more than {MAX_OFFER_CRLS}")]
    TooMany(usize),
    #[error("the CRL offer is not PEM CRLs: {0}")]
    Malformed(String),
    #[error("the CRL offer holds no CRL")]
    Empty,
    #[error("an offered CRL is not signed by a CA of tls.ca (or does not parse)")]
    Untrusted,
    #[error("an offered CRL carries no CRL number; only pairgate's numbered CRLs travel")]
    Unnumbered,
    #[error("{0}")]
    Rollback(String),
    #[error("the offered CRLs are not newer than those in force")]
    NothingNewer,
    #[error("cannot write {path}: {detail}")]
    Write { path: PathBuf, detail: String },
}

/// The CRLs of an offer, parsed, not yet trusted. Pure and bounded; never
/// panics (a fuzz target).
///
/// # Errors
/// [`OfferError::TooLarge`], [`OfferError::TooMany`],
/// [`OfferError::Malformed`], [`OfferError::Empty`].
pub fn parse_offer(text: &str) -> Result<Vec<CertificateRevocationListDer<'static>>, OfferError> {
    if text.len() > MAX_OFFER_BYTES {
        return Err(OfferError::TooLarge(text.len()));
    }
    let mut out = Vec::new();
    for item in rustls_pemfile::read_all(&mut text.as_bytes()) {
        match item {
            Ok(rustls_pemfile::Item::Crl(der)) => out.push(der),
            Ok(_) => {
                return Err(OfferError::Malformed(
                    "a PEM block other than X509 CRL".into(),
                ))
            }
            Err(e) => return Err(OfferError::Malformed(format!("{e:?}"))),
        }
        if out.len() > MAX_OFFER_CRLS {
            return Err(OfferError::TooMany(out.len()));
        }
    }
    if out.is_empty() {
        return Err(OfferError::Empty);
    }
    Ok(out)
}

/// The set to enforce after taking `offered` (trusted, parsed) on top of
/// `in_force`: each offered CRL replaces the one of its issuer. Pure.
///
/// # Errors
/// [`OfferError::Unnumbered`], [`OfferError::Rollback`] (older, or the same
/// number with other content), [`OfferError::NothingNewer`].
pub fn merge(in_force: &[CrlState], offered: &[CrlState]) -> Result<Vec<CrlState>, OfferError> {
    if offered.iter().any(|c| c.number == 0) {
        return Err(OfferError::Unnumbered);
    }
    let mut candidate: Vec<CrlState> = in_force.to_vec();
    for crl in offered {
        match candidate.iter_mut().find(|c| c.issuer == crl.issuer) {
            Some(slot) => *slot = crl.clone(),
            None => candidate.push(crl.clone()),
        }
    }
    match successor(in_force, &candidate) {
        (Some(rollback), _) => Err(OfferError::Rollback(rollback.to_string())),
        (None, chosen) if chosen == in_force => Err(OfferError::NothingNewer),
        (None, chosen) => Ok(chosen),
    }
}

/// The CRLs of `in_force` newer than what the peer reports enforcing. Pure.
pub fn newer_than<'a>(in_force: &'a [CrlState], peer: &[CrlNumber]) -> Vec<&'a CrlState> {
    in_force
        .iter()
        .filter(|c| c.number > 0)
        .filter(|c| {
            peer.iter()
                .find(|p| p.issuer == c.issuer)
                .is_none_or(|p| p.number < c.number)
        })
        .collect()
}

/// What a taken offer changed.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The file written (`tls.crl`, or the kept copy without it).
    pub path: PathBuf,
    /// The CRLs it now holds.
    pub crls: Vec<crate::audit::CrlRecord>,
}

impl Material {
    /// The CRL numbers in force, for the heartbeat.
    pub fn crl_numbers(&self) -> Vec<CrlNumber> {
        self.crls
            .iter()
            .map(|c| CrlNumber {
                issuer: c.issuer.clone(),
                number: c.number,
            })
            .collect()
    }

    /// PEM of the CRLs in force newer than `peer` enforces, with their
    /// audit records; `None` when there is nothing newer or it would not
    /// fit in an offer.
    pub fn crl_offer_for(
        &self,
        peer: &[CrlNumber],
    ) -> Option<(String, Vec<crate::audit::CrlRecord>)> {
        let newer: Vec<CrlState> = newer_than(&self.crls, peer).into_iter().cloned().collect();
        if newer.is_empty() {
            return None;
        }
        let text = pem(&newer);
        if text.len() > MAX_OFFER_BYTES || newer.len() > MAX_OFFER_CRLS {
            tracing::warn!(
                bytes = text.len(),
                "the CRLs in force are too large to offer to the peer; copy ca.crl there by hand"
            );
            return None;
        }
        Some((text, newer.iter().map(Into::into).collect()))
    }

    /// Takes a CRL offer from the peer: verifies, checks for rollback and
    /// writes the new set atomically where this gateway reads its CRLs
    /// (`tls.crl`, else the kept copy); the file watcher applies it.
    /// Blocking (file I/O).
    ///
    /// # Errors
    /// [`OfferError`] saying why nothing was written.
    pub fn take_crl_offer(&self, text: &str) -> Result<Taken, OfferError> {
        let ders = parse_offer(text)?;
        let offered = trusted(&ders, &self.cas);
        if offered.len() != ders.len() {
            return Err(OfferError::Untrusted);
        }
        let set = merge(&self.crls, &offered)?;
        let path = self
            .crl_path
            .clone()
            .or_else(|| self.crl_kept.clone())
            .ok_or_else(|| OfferError::Write {
                path: PathBuf::from("tls.crl"),
                detail: "no CRL file and no kept copy configured".into(),
            })?;
        crate::pki::write_public_file(&path, pem(&set).as_bytes()).map_err(|e| {
            OfferError::Write {
                path: path.clone(),
                detail: e.to_string(),
            }
        })?;
        Ok(Taken {
            path,
            crls: set.iter().map(Into::into).collect(),
        })
    }

    /// Whether `key` (a digest of an offer sent or refused) was already
    /// audited with this material; remembers it. Keeps a peer that
    /// cannot take an offer from filling the audit log every heartbeat.
    pub fn crl_offer_noted(&self, key: &str) -> bool {
        let mut last = self
            .crl_offer_last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.as_deref() == Some(key) {
            return true;
        }
        *last = Some(key.to_owned());
        false
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cloned_ref_to_slice_refs)] // tests: terse fixtures
mod tests {
    use super::*;
    use time::{Duration, OffsetDateTime};

    fn crl(issuer: &str, number: u64, der: &[u8]) -> CrlState {
        let now = OffsetDateTime::now_utc();
        CrlState {
            issuer: issuer.into(),
            number,
            this_update: now,
            next_update: Some(now + Duration::days(30)),
            der: der.to_vec().into(),
        }
    }

    #[test]
    fn only_newer_numbered_crls_are_offered() {
        let a2 = crl("CN=a", 2, b"a2");
        let b1 = crl("CN=b", 1, b"b1");
        let local = crl("CN=c", 0, b"c");
        let ours = [a2.clone(), b1.clone(), local];
        let peer = |issuer: &str, number| CrlNumber {
            issuer: issuer.into(),
            number,
        };
        assert_eq!(
            newer_than(&ours, &[peer("CN=a", 2), peer("CN=b", 1)]).len(),
            0
        );
        assert_eq!(
            newer_than(&ours, &[peer("CN=a", 1), peer("CN=b", 1)]),
            [&a2]
        );
        assert_eq!(
            newer_than(&ours, &[peer("CN=a", 3)]),
            [&b1],
            "b unknown there"
        );
    }

    #[test]
    fn merge_takes_newer_and_refuses_older_forged_and_stale() {
        let a1 = crl("CN=a", 1, b"a1");
        let a2 = crl("CN=a", 2, b"a2");
        let b1 = crl("CN=b", 1, b"b1");
        assert_eq!(
            merge(&[a1.clone(), b1.clone()], &[a2.clone()]).unwrap(),
            [a2.clone(), b1.clone()]
        );
        assert_eq!(merge(&[], &[a1.clone()]).unwrap(), [a1.clone()]);
        assert!(matches!(
            merge(&[a2.clone()], &[a1.clone()]),
            Err(OfferError::Rollback(_))
        ));
        let forged = crl("CN=a", 2, b"forged");
        assert!(matches!(
            merge(&[a2.clone()], &[forged]),
            Err(OfferError::Rollback(_))
        ));
        assert_eq!(
            merge(&[a2.clone()], &[a2.clone()]),
            Err(OfferError::NothingNewer)
        );
        assert_eq!(
            merge(&[], &[crl("CN=x", 0, b"x")]),
            Err(OfferError::Unnumbered)
        );
    }

    /// A CA in `dir` with site1 and site2 certificates; site1's material
    /// (no CRL yet, its CRL file at `dir/site1.crl`).
    fn site(dir: &std::path::Path, name: &str) -> (crate::pki::Ca, Material) {
        use crate::pki::revoke::tests::issue_to;
        let ca = crate::pki::Ca::generate(name, crate::pki::Validity::days_from_now(60)).unwrap();
        ca.write_new(dir).unwrap();
        let site1 = issue_to(dir, &ca, "pool01.site1.example", "site1");
        issue_to(dir, &ca, "pool02.site2.example", "site2");
        std::fs::write(dir.join("site1.crl"), b"").unwrap();
        let src = super::super::Sources {
            cert: site1,
            key: dir.join("site1.key"),
            ca: dir.join(crate::pki::CA_CERT_FILE),
            crl: Some(dir.join("site1.crl")),
            crl_kept: Some(dir.join("kept.pem")),
            crl_overdue: super::super::crl::CrlOverdue::Warn,
        };
        (ca, Material::load(&src, "pool01.site1.example").unwrap())
    }

    #[test]
    fn an_offer_is_taken_only_when_signed_by_our_ca_and_newer() {
        use crate::pki::revoke::tests::request;
        let ours = tempfile::tempdir().unwrap();
        let (_, material) = site(ours.path(), "our CA");
        let now = OffsetDateTime::now_utc();
        let site2 = ours.path().join("site2.crt");
        crate::pki::revoke(&request(ours.path(), &site2), now).unwrap();
        let crl = std::fs::read_to_string(ours.path().join(crate::pki::CRL_FILE)).unwrap();

        // A CRL of another CA, with a higher number: not ours to take.
        let theirs = tempfile::tempdir().unwrap();
        let (_, _) = site(theirs.path(), "other CA");
        let other2 = theirs.path().join("site2.crt");
        crate::pki::revoke(&request(theirs.path(), &other2), now).unwrap();
        crate::pki::refresh_crl(theirs.path(), 30, now).unwrap();
        let foreign = std::fs::read_to_string(theirs.path().join(crate::pki::CRL_FILE)).unwrap();
        assert_eq!(
            material.take_crl_offer(&foreign).unwrap_err(),
            OfferError::Untrusted
        );
        assert_eq!(std::fs::read(ours.path().join("site1.crl")).unwrap(), b"");

        // Ours: written where tls.crl points, newest set.
        let taken = material.take_crl_offer(&crl).unwrap();
        assert_eq!(taken.path, ours.path().join("site1.crl"));
        assert_eq!(taken.crls.len(), 1);
        let reloaded = Material::load_after(
            &super::super::Sources {
                cert: ours.path().join("site1.crt"),
                key: ours.path().join("site1.key"),
                ca: ours.path().join(crate::pki::CA_CERT_FILE),
                crl: Some(ours.path().join("site1.crl")),
                crl_kept: Some(ours.path().join("kept.pem")),
                crl_overdue: super::super::crl::CrlOverdue::Warn,
            },
            "pool01.site1.example",
            Some(&material),
        )
        .unwrap();
        let chain = super::super::load_certs(&site2).unwrap();
        assert!(reloaded.is_revoked(&chain, false, "pool02.site2.example"));
        // The same offer again is nothing newer.
        assert_eq!(
            reloaded.take_crl_offer(&crl).unwrap_err(),
            OfferError::NothingNewer
        );
    }

    #[test]
    fn offers_are_bounded_and_must_be_crls() {
        assert_eq!(parse_offer(""), Err(OfferError::Empty));
        let big = "x".repeat(MAX_OFFER_BYTES + 1);
        assert_eq!(
            parse_offer(&big),
            Err(OfferError::TooLarge(MAX_OFFER_BYTES + 1))
        );
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(parse_offer(cert), Err(OfferError::Malformed(_))));
        let one = "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        assert_eq!(parse_offer(one).unwrap().len(), 1);
        let many = one.repeat(MAX_OFFER_CRLS + 1);
        assert_eq!(
            parse_offer(&many),
            Err(OfferError::TooMany(MAX_OFFER_CRLS + 1))
        );
    }
}
