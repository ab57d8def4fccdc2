//! Label vocabularies of the metrics and `/status`: the typed values callers
//! pass, and the label sets they become. The spellings here are what
//! dashboards and alerts match on; never rename one.

use prometheus_client::encoding::EncodeLabelSet;
use serde::{Deserialize, Serialize};

use crate::audit::Direction;
use crate::policy::Decision;

/// Both directions, in the order reports show them.
pub(crate) const DIRECTIONS: [&str; 2] = ["outbound", "inbound"];

/// The label (and audit) spelling of a direction.
pub fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Outbound => "outbound",
        Direction::Inbound => "inbound",
    }
}

/// The label (and audit) spelling of a decision: `allow` / `deny`.
pub fn decision_label(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny(_) => "deny",
    }
}

/// Whose certificate an expiry belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    /// This gateway's own certificate (`tls.cert`).
    Own,
    /// A peer gateway's certificate, as seen in a handshake.
    Peer,
    /// A trusted pairing CA (`tls.ca`).
    Ca,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CertKind::Own => "own",
            CertKind::Peer => "peer",
            CertKind::Ca => "ca",
        }
    }
}

/// What a reload touched, for `reloads_total{what}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum Reloaded {
    /// Policy, certificates and CRL together (SIGHUP).
    All,
    Policy,
    /// The gateway's certificate and key, or the CA bundle.
    Certificates,
    Crl,
    /// The config file itself (SIGHUP re-reads it first).
    Config,
}

impl Reloaded {
    pub fn as_str(self) -> &'static str {
        match self {
            Reloaded::All => "all",
            Reloaded::Policy => "policy",
            Reloaded::Certificates => "certificates",
            Reloaded::Crl => "crl",
            Reloaded::Config => "config",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnLabels {
    pub direction: &'static str,
    pub service: String,
    pub decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ServiceLabels {
    pub direction: &'static str,
    pub service: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DenyLabels {
    pub direction: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FlowLabels {
    pub direction: &'static str,
    pub service: String,
    pub flow: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirLabels {
    pub direction: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CertLabels {
    pub kind: &'static str,
    pub sha256: String,
}

impl CertLabels {
    pub(crate) fn new(kind: CertKind, sha256: String) -> CertLabels {
        CertLabels {
            kind: kind.as_str(),
            sha256,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReloadLabels {
    pub what: &'static str,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SpoolEventLabels {
    pub event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SessionLabels {
    pub direction: &'static str,
    pub service: String,
    pub result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SpoolConditionLabels {
    pub condition: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct VersionLabels {
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::DenyReason;

    #[test]
    fn spellings_match_the_audit_serde_names() {
        for d in [Direction::Inbound, Direction::Outbound] {
            let json = serde_json::to_string(&d).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", direction_label(d)));
        }
        for (decision, verdict) in [
            (Decision::Allow, Decision::Allow.verdict()),
            (
                Decision::Deny(DenyReason::NotPaired),
                Decision::Deny(DenyReason::NotPaired).verdict(),
            ),
        ] {
            let json = serde_json::to_string(&verdict).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", decision_label(decision)));
        }
        for k in [CertKind::Own, CertKind::Peer, CertKind::Ca] {
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }
}
