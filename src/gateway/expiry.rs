//! Certificate expiry as a running gateway shows it: our own and the
//! trusted CA certificates published to metrics and `/status`, and a log
//! warning from [`EXPIRY_WARNING_DAYS`] before either expires — the same
//! [`Expiry`] verdict `pairgate cert check` and `pairgate status` use.

use crate::admin::{CertEntry, CertKind, Metrics};
use crate::pki::{self, Expiry, EXPIRY_WARNING_DAYS};
use crate::tls::Material;

/// Publishes our own and the trusted CA certificates' expiry (metrics and
/// `/status`), and warns in the log from 30 days before either expires.
pub(super) fn publish_cert_expiry(metrics: &Metrics, material: &Material) {
    let own = CertEntry {
        pool: Some(material.identity.pool.clone()),
        sha256: material.identity.sha256.clone(),
        not_after: material.identity.not_after,
    };
    metrics.replace_certs(CertKind::Own, &[own]);
    let cas: Vec<CertEntry> = material
        .ca_expiry
        .iter()
        .map(|(sha256, not_after)| CertEntry {
            pool: None,
            sha256: sha256.clone(),
            not_after: *not_after,
        })
        .collect();
    metrics.replace_certs(CertKind::Ca, &cas);
    metrics.replace_crls(&material.crl_next_updates());
    metrics.publish_crls(crl_status(material));
    warn_expiry(material);
}

/// The CRL row of `/status` (overdue flags are judged when it is read).
fn crl_status(material: &Material) -> Option<crate::admin::CrlStatus> {
    if material.crls.is_empty() && material.crl_refused.is_none() {
        return None;
    }
    Some(crate::admin::CrlStatus {
        crl_overdue: material.crl_overdue.as_str().to_owned(),
        overdue: false,
        refused: material.crl_refused.clone(),
        crls: material
            .crls
            .iter()
            .map(|c| crate::admin::CrlRow {
                issuer: c.issuer.clone(),
                number: c.number,
                next_update: c.next_update,
                overdue: false,
            })
            .collect(),
    })
}

/// Warns in the log about our own and the trusted CA certificates when they
/// expire within [`EXPIRY_WARNING_DAYS`] (or have expired).
pub(super) fn warn_expiry(material: &Material) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let judge = |not_after: i64| {
        let days_left = pki::days_left_unix(not_after, now);
        let soon = Expiry::of_days_left(days_left, EXPIRY_WARNING_DAYS).needs_attention();
        soon.then_some(days_left)
    };
    if let Some(own) = judge(material.identity.not_after) {
        tracing::warn!(days_left = own, sha256 = %material.identity.sha256, "own certificate expires soon: run `pairgate cert rotate`");
    }
    for (sha256, not_after) in &material.ca_expiry {
        if let Some(left) = judge(*not_after) {
            tracing::warn!(days_left = left, %sha256, "trusted CA certificate expires soon: run `pairgate ca rotate`");
        }
    }
}
