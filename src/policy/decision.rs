//! The vocabulary of decisions, shared by policy evaluation, the proxy and the audit log.

use serde::{Deserialize, Serialize};

/// Why a connection was refused. The serialized names are part of the public
/// audit contract (`reason` field, listed in `docs/reference.md`); never rename one. `DenyReason::iter()`
/// (strum) lists every variant, so metrics start each reason's series at 0
/// without a list to keep in step.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    NoClientCert,
    BadCertificate,
    UnknownCa,
    /// The certificate's validity window has ended (`not_after` passed).
    Expired,
    Revoked,
    NotPaired,
    ServiceNotAllowed,
    SourceNotAllowed,
    HandshakeTimeout,
    TooManyConnections,
    /// The TLS handshake failed for a reason other than the certificate
    /// (not TLS 1.3, garbage, no common parameters).
    HandshakeFailed,
    /// The peer gateway could not be reached (outbound tunnels only).
    PeerUnreachable,
    /// The certificate's validity window has not begun (`not_before` is in
    /// the future): usually a clock that is behind — the checking side's —
    /// not a bad certificate.
    NotYetValid,
    /// The export target did not accept the connection (refused, timed
    /// out). Audited on the `close` of an allowed connection, at the
    /// exporting site and — told by the `pg2` status frame — at the dialling
    /// site.
    ExportUnreachable,
    /// The `pg2` connection preamble was missing or malformed (PROXY v2
    /// header from the dialler, status frame from the acceptor).
    BadPreamble,
    /// A certificate that chains to the pairing CA but is not what
    /// `pairgate cert issue` makes (see `tls::profile`); `detail` names the rule.
    ProfileViolation,
    /// The CRL for the peer certificate's CA is past its nextUpdate and
    /// `tls.crl_overdue = "deny"`.
    CrlOverdue,
    /// An intercepted connection's original destination is missing, is
    /// the gateway itself, arrived with the gateway's own mark (a loop), or
    /// lies outside the `[[intercept]]`'s or `[[export]]`'s
    /// `destinations`/`ports`; `detail` says which.
    DestinationNotAllowed,
    /// An established connection closed because a reloaded policy no
    /// longer allows its service (audited on the connection, then its close).
    PolicyChanged,
    /// An established connection closed because a live reload removed the
    /// tunnel or intercept listener that accepted it, or the export it was
    /// connected to, and it was still open when `limits.shutdown_grace_secs`
    /// ran out.
    ListenerRemoved,
    /// The audit log cannot be written or keep up and `audit.on_failure =
    /// "refuse"`: new connections are refused until it is written again.
    AuditFailing,
}

impl DenyReason {
    /// The audit name of the reason, e.g. `not_paired`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoClientCert => "no_client_cert",
            DenyReason::BadCertificate => "bad_certificate",
            DenyReason::UnknownCa => "unknown_ca",
            DenyReason::Expired => "expired",
            DenyReason::Revoked => "revoked",
            DenyReason::NotPaired => "not_paired",
            DenyReason::ServiceNotAllowed => "service_not_allowed",
            DenyReason::SourceNotAllowed => "source_not_allowed",
            DenyReason::HandshakeTimeout => "handshake_timeout",
            DenyReason::TooManyConnections => "too_many_connections",
            DenyReason::HandshakeFailed => "handshake_failed",
            DenyReason::PeerUnreachable => "peer_unreachable",
            DenyReason::NotYetValid => "not_yet_valid",
            DenyReason::ExportUnreachable => "export_unreachable",
            DenyReason::BadPreamble => "bad_preamble",
            DenyReason::ProfileViolation => "profile_violation",
            DenyReason::CrlOverdue => "crl_overdue",
            DenyReason::DestinationNotAllowed => "destination_not_allowed",
            DenyReason::PolicyChanged => "policy_changed",
            DenyReason::ListenerRemoved => "listener_removed",
            DenyReason::AuditFailing => "audit_failing",
        }
    }

    /// The reason an audit name stands for (the inverse of [`Self::as_str`]).
    pub fn from_name(name: &str) -> Option<DenyReason> {
        <DenyReason as strum::IntoEnumIterator>::iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of evaluating a request against the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

/// The audit spelling of a decision: `allow` / `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

impl Decision {
    pub fn verdict(self) -> Verdict {
        match self {
            Decision::Allow => Verdict::Allow,
            Decision::Deny(_) => Verdict::Deny,
        }
    }
    pub fn reason(self) -> Option<DenyReason> {
        match self {
            Decision::Allow => None,
            Decision::Deny(r) => Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn every_reason_serializes_as_its_audit_name() {
        for reason in DenyReason::iter() {
            let json = serde_json::to_string(&reason).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
        assert!(DenyReason::iter().any(|r| r.as_str() == "not_yet_valid"));
    }
}
