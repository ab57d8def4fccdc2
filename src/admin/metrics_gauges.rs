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
}
