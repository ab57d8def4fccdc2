//! The state gauges of [`Metrics`]: certificate and CRL expiry, spool
//! depth and totals, reloads, the peer link and its clock, the audit log —
//! set from what the gateway knows, rather than counted per connection.

use super::*;

impl Metrics {
    /// Publishes a certificate's expiry (and remembers it for `/status`).
    /// `pool` is the certificate's first DNS SAN where it has one. For `own`
    /// and `ca`, prefer [`Metrics::replace_certs`] after a reload so
    /// rotated-out certificates disappear; `peer` series are kept for the
    /// last 16 peer certificates seen.
    pub fn cert_expiry(
        &self,
        kind: CertKind,
        pool: Option<&str>,
        sha256: &str,
        not_after_unix: i64,
    ) {
        let mut series = self
            .cert_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entries = series.entry(kind).or_default();
        entries.retain(|e| e.sha256 != sha256);
        entries.push(CertEntry {
            pool: pool.map(str::to_owned),
            sha256: sha256.to_owned(),
            not_after: not_after_unix,
        });
        if kind == CertKind::Peer && entries.len() > MAX_PEER_CERTS {
            let gone = entries.remove(0);
            self.cert_expiry.remove(&CertLabels::new(kind, gone.sha256));
        }
        self.cert_expiry
            .get_or_create(&CertLabels::new(kind, sha256.to_owned()))
            .set(not_after_unix);
    }

    /// Publishes the verified certificate of the pair's gateway (a `peer`
    /// row and series), remembering its leaf `der` so that a CRL revoking it
    /// later removes it again ([`Metrics::drop_peer_certs`]).
    pub fn peer_cert(&self, pool: &str, sha256: &str, not_after_unix: i64, der: &[u8]) {
        self.cert_expiry(CertKind::Peer, Some(pool), sha256, not_after_unix);
        let published: HashSet<String> = self
            .cert_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&CertKind::Peer)
            .map(|e| e.iter().map(|c| c.sha256.clone()).collect())
            .unwrap_or_default();
        let mut leaves = self
            .peer_leaves
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        leaves.insert(sha256.to_owned(), der.to_vec());
        leaves.retain(|sha, _| published.contains(sha));
    }

    /// Removes the `peer` rows and series of the certificates `revoked`
    /// says are revoked (call after a CRL reload); returns how many.
    pub fn drop_peer_certs(&self, revoked: impl Fn(&[u8]) -> bool) -> usize {
        let gone: Vec<String> = {
            let mut leaves = self
                .peer_leaves
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let gone: Vec<String> = leaves
                .iter()
                .filter(|(_, der)| revoked(der))
                .map(|(sha, _)| sha.clone())
                .collect();
            for sha in &gone {
                leaves.remove(sha);
            }
            gone
        };
        if gone.is_empty() {
            return 0;
        }
        let mut series = self
            .cert_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entries) = series.get_mut(&CertKind::Peer) {
            entries.retain(|e| !gone.contains(&e.sha256));
        }
        for sha in &gone {
            self.cert_expiry
                .remove(&CertLabels::new(CertKind::Peer, sha.clone()));
        }
        gone.len()
    }

    /// Replaces every `kind` series with `certs`: call after start and after
    /// each reload for `own` and `ca`.
    pub fn replace_certs(&self, kind: CertKind, certs: &[CertEntry]) {
        let mut series = self
            .cert_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entries = series.entry(kind).or_default();
        for old in entries.drain(..) {
            self.cert_expiry.remove(&CertLabels::new(kind, old.sha256));
        }
        for cert in certs {
            entries.push(cert.clone());
            self.cert_expiry
                .get_or_create(&CertLabels::new(kind, cert.sha256.clone()))
                .set(cert.not_after);
        }
    }

    /// Every certificate published, `own` first, then `ca`, then `peer`
    /// (most recently seen last).
    pub fn certificates(&self) -> Vec<(CertKind, CertEntry)> {
        let series = self
            .cert_series
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for kind in [CertKind::Own, CertKind::Ca, CertKind::Peer] {
            for entry in series.get(&kind).into_iter().flatten() {
                out.push((kind, entry.clone()));
            }
        }
        out
    }

    /// Publishes one spool direction's depth; `oldest_age` `None` (nothing
    /// waits) shows as 0.
    pub fn spool(
        &self,
        direction: Direction,
        files: u64,
        bytes: u64,
        oldest_age: Option<Duration>,
    ) {
        let labels = DirLabels {
            direction: direction_label(direction),
        };
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.spool_files.get_or_create(&labels).set(clamp(files));
        self.spool_bytes.get_or_create(&labels).set(clamp(bytes));
        self.spool_oldest
            .get_or_create(&labels)
            .set(oldest_age.map_or(0.0, |d| d.as_secs_f64()));
    }

    /// Counts a reload of `what`, successful or not.
    pub fn reload(&self, what: Reloaded, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                what: what.as_str(),
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Replaces the CRL series with `(issuer, nextUpdate Unix seconds)` of
    /// each CRL in force: call after start and after each reload.
    pub fn replace_crls(&self, crls: &[(String, i64)]) {
        self.crl_next_update.clear();
        for (issuer, next_update) in crls {
            self.crl_next_update
                .get_or_create(&vec![("issuer".to_owned(), issuer.clone())])
                .set(*next_update);
        }
    }

    /// Counts one record handed to the audit log.
    /// Publishes the peer link state: `Some(true)` up, `Some(false)` down,
    /// `None` not tried yet.
    pub fn peer_link(&self, up: Option<bool>) {
        self.peer_link_up.set(match up {
            Some(true) => 1,
            Some(false) => 0,
            None => -1,
        });
    }

    /// Publishes the measured offset of the peer's clock (peer minus ours).
    pub fn peer_clock_skew(&self, skew_secs: Option<f64>) {
        self.peer_clock_skew.set(skew_secs.unwrap_or(0.0));
    }

    /// Publishes the spool's running totals (e.g. `("refused", 3)`); each
    /// counter advances by what the total grew since the last call.
    pub fn spool_totals(&self, totals: &[(&'static str, u64)]) {
        let Ok(mut seen) = self.spool_seen.lock() else {
            return;
        };
        for (event, total) in totals {
            let last = seen.entry(event).or_insert(0);
            // Created at 0 on the first report, so an alert sees the first event.
            let counter = self.spool_events.get_or_create(&SpoolEventLabels { event });
            if *total > *last {
                counter.inc_by(*total - *last);
                *last = *total;
            }
        }
    }

    /// Publishes the spool's held files per condition (every condition,
    /// 0 included) and its running total of link stalls.
    pub fn spool_conditions(&self, held: &[(&'static str, u64)], stalls_total: u64) {
        for (condition, files) in held {
            self.spool_held
                .get_or_create(&SpoolConditionLabels { condition })
                .set(i64::try_from(*files).unwrap_or(i64::MAX));
        }
        let seen = self.spool_stalls.get();
        if stalls_total > seen {
            self.spool_stalls.inc_by(stalls_total - seen);
        }
    }

    /// Publishes the audit log's running total of recorded events; the
    /// counter advances by what the total grew since the last call.
    pub fn audit_total(&self, total: u64) {
        let seen = self.audit_events.get();
        if total > seen {
            self.audit_events.inc_by(total - seen);
        }
    }

    /// Publishes whether the audit log is failing (`pairgate_audit_failing`,
    /// `/status` `audit`): `failing` says why, `on_failure` what follows.
    pub fn audit_state(&self, failing: Option<String>, on_failure: crate::audit::OnFailure) {
        self.audit_failing.set(i64::from(failing.is_some()));
        *self
            .audit_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(super::super::status::AuditStatus {
            failing: failing.is_some(),
            detail: failing,
            on_failure: on_failure.as_str().to_owned(),
        });
    }

    /// The audit row of `/status` (None until first published).
    pub fn audit_status(&self) -> Option<super::super::status::AuditStatus> {
        self.audit_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Remembers the CRLs in force for `/status` (call with the gauge
    /// update, after start and each reload).
    pub fn publish_crls(&self, crls: Option<super::super::status::CrlStatus>) {
        *self
            .crl_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = crls;
    }

    /// The CRL row of `/status`, its `overdue` flags judged at `now`.
    pub fn crl_status(&self, now: time::OffsetDateTime) -> Option<super::super::status::CrlStatus> {
        let mut crl = self
            .crl_state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        for c in &mut crl.crls {
            c.overdue = c.next_update.is_some_and(|next| next < now);
        }
        crl.overdue = crl.crls.iter().any(|c| c.overdue);
        Some(crl)
    }
}
