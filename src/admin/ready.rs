//! `/readyz`: whether this instance should receive traffic now.
//!
//! `/healthz` says the process is alive; a load balancer, keepalived's
//! `track_script` or a supervisor needs more: an instance whose peer link is
//! down, whose certificate has expired or whose audit log cannot be written
//! accepts connections it cannot serve (or must not serve unaudited). With
//! two gateways per site, the healthy one should take the traffic.
//!
//! Ready means all of:
//! - `config`: a configuration is loaded and the instance serves it (false
//!   while it hands its listeners to a new instance and drains);
//! - `certificate`: our own certificate is within its validity period;
//! - `audit`: the last write to the audit log reached the disk;
//! - `peer_link`: the last attempt to reach the peer gateway succeeded
//!   (`unknown` until the first heartbeat counts as not ready).
//!
//! The answer is `200 ready` or `503` with one line per reason, each naming
//! its check first (`peer_link: down since … (connection refused)`), so a
//! person reading a failed health check sees what to fix.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use time::OffsetDateTime;

use super::labels::CertKind;
use super::metrics::CertEntry;
use super::status::{LinkState, PeerLink};

/// Whether this instance serves its configuration (shared flag, set by the
/// gateway once started, cleared when it hands over to a new instance).
#[derive(Debug, Clone, Default)]
pub struct Serving(Arc<AtomicBool>);

impl Serving {
    /// A flag that is not yet serving.
    pub fn new() -> Serving {
        Serving::default()
    }

    /// The configuration is loaded and every listener serves it.
    pub fn start(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// This instance stops taking new work (handover, shutdown).
    pub fn stop(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    pub fn is_serving(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the readiness checks see at one moment.
pub struct Facts<'a> {
    pub serving: bool,
    pub certificates: &'a [(CertKind, CertEntry)],
    pub audit: Result<(), String>,
    pub link: &'a PeerLink,
    pub now: OffsetDateTime,
}

/// The reasons this instance is not ready (empty: ready), one per failed
/// check, each starting with the check's name.
pub fn not_ready(facts: &Facts<'_>) -> Vec<String> {
    let mut reasons = Vec::new();
    if !facts.serving {
        reasons.push(
            "config: not serving (starting, or handing over to a new instance and draining)"
                .to_owned(),
        );
    }
    let now = facts.now.unix_timestamp();
    let own: Vec<&CertEntry> = facts
        .certificates
        .iter()
        .filter(|(kind, _)| *kind == CertKind::Own)
        .map(|(_, entry)| entry)
        .collect();
    match own.as_slice() {
        [] => reasons.push("certificate: no own certificate loaded".to_owned()),
        entries => {
            for entry in entries.iter().filter(|e| e.not_after <= now) {
                reasons.push(format!(
                    "certificate: own certificate {} expired at unix time {}: run `pairgate cert rotate`",
                    entry.sha256, entry.not_after
                ));
            }
        }
    }
    if let Err(e) = &facts.audit {
        reasons.push(format!("audit: last write failed: {e}"));
    }
    match facts.link.state {
        LinkState::Up => {}
        LinkState::Unknown => {
            reasons.push("peer_link: unknown (the peer gateway has not been reached yet)".into());
        }
        LinkState::Down => {
            let since = facts
                .link
                .since
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_else(|| "?".into());
            let error = facts
                .link
                .last_error
                .as_deref()
                .unwrap_or("no error recorded");
            reasons.push(format!("peer_link: down since {since} ({error})"));
        }
    }
    reasons
}

/// The `/readyz` body for `reasons`.
pub fn body(reasons: &[String]) -> String {
    if reasons.is_empty() {
        return "ready\n".to_owned();
    }
    let mut body = String::from("not ready\n");
    for reason in reasons {
        body.push_str(reason);
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(state: LinkState) -> PeerLink {
        PeerLink {
            state,
            since: Some(OffsetDateTime::UNIX_EPOCH),
            last_error: Some("connection refused".into()),
            clock_skew_secs: None,
            clock_skew_measured: None,
        }
    }

    fn own(not_after: i64) -> (CertKind, CertEntry) {
        let entry = CertEntry {
            pool: Some("pool01.site1.example".into()),
            sha256: "ab".repeat(32),
            not_after,
        };
        (CertKind::Own, entry)
    }

    #[test]
    fn ready_when_every_check_passes() {
        let now = OffsetDateTime::now_utc();
        let certs = [own(now.unix_timestamp() + 86_400)];
        let up = link(LinkState::Up);
        let facts = Facts {
            serving: true,
            certificates: &certs,
            audit: Ok(()),
            link: &up,
            now,
        };
        assert!(not_ready(&facts).is_empty());
        assert_eq!(body(&[]), "ready\n");
    }

    #[test]
    fn each_failed_check_is_named() {
        let now = OffsetDateTime::now_utc();
        let certs = [own(now.unix_timestamp() - 1)];
        let down = link(LinkState::Down);
        let facts = Facts {
            serving: false,
            certificates: &certs,
            audit: Err("/var/log/pairgate/audit.jsonl: No space left on device".into()),
            link: &down,
            now,
        };
        let reasons = not_ready(&facts);
        let checks: Vec<&str> = reasons.iter().filter_map(|r| r.split(':').next()).collect();
        assert_eq!(checks, ["config", "certificate", "audit", "peer_link"]);
        assert!(reasons[3].contains("connection refused"), "{reasons:?}");
        assert!(body(&reasons).starts_with("not ready\nconfig: "));
    }

    #[test]
    fn an_unknown_link_or_a_missing_certificate_is_not_ready() {
        let now = OffsetDateTime::now_utc();
        let unknown = link(LinkState::Unknown);
        let facts = Facts {
            serving: true,
            certificates: &[],
            audit: Ok(()),
            link: &unknown,
            now,
        };
        let reasons = not_ready(&facts);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(reasons[0].starts_with("certificate: "));
        assert!(reasons[1].starts_with("peer_link: unknown"));
    }
}
