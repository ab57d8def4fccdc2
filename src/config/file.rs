//! The config file exactly as written: serde structs, no logic.
//!
//! Values an error may point at are `Spanned` so validation can name their line.
//! Addresses and networks stay strings here: parsing them ourselves gives better
//! messages than serde's generic "invalid socket address syntax".

use serde::Deserialize;
use toml::Spanned;

/// The whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub gateway: Spanned<RawGateway>,
    pub tls: Spanned<RawTls>,
    pub peer: Spanned<RawPeer>,
    pub admin: Option<Spanned<RawAdmin>>,
    pub audit: Spanned<RawAudit>,
    pub spool: Option<Spanned<RawSpool>>,
    #[serde(default)]
    pub tunnel: Vec<Spanned<RawTunnel>>,
    #[serde(default)]
    pub export: Vec<Spanned<RawExport>>,
    #[serde(default)]
    pub intercept: Vec<Spanned<RawIntercept>>,
    pub limits: Option<Spanned<RawLimits>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub pool: Spanned<String>,
    pub peer_pool: Spanned<String>,
    pub policy: Spanned<String>,
    pub mark: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
    pub ca: Spanned<String>,
    pub crl: Option<Spanned<String>>,
    pub crl_overdue: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeer {
    pub listen: Spanned<String>,
    pub connect: Spanned<String>,
    pub heartbeat_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Spanned<String>,
    pub sync_interval_secs: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    pub path: Spanned<String>,
    pub on_failure: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpool {
    pub dir: Spanned<String>,
    pub key: Spanned<String>,
    pub outbox: Spanned<String>,
    pub inbox: Spanned<String>,
    pub max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub old_keys: Vec<Spanned<String>>,
    pub settle_ms: Option<Spanned<u64>>,
    pub stall_secs: Option<Spanned<u64>>,
    pub max_age_days: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTunnel {
    pub service: Spanned<String>,
    pub listen: Spanned<String>,
    pub allow_sources: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExport {
    pub service: Spanned<String>,
    /// Either `target`, or `destinations` and `ports` (see `config::intercept`).
    pub target: Option<Spanned<String>>,
    pub destinations: Option<Spanned<Vec<Spanned<String>>>>,
    pub ports: Option<Spanned<Vec<Spanned<u16>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIntercept {
    pub service: Spanned<String>,
    pub listen: Spanned<String>,
    pub allow_sources: Spanned<Vec<Spanned<String>>>,
    pub destinations: Spanned<Vec<Spanned<String>>>,
    pub ports: Spanned<Vec<Spanned<u16>>>,
    pub capture: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub handshake_timeout_secs: Option<Spanned<u64>>,
    pub idle_timeout_secs: Option<Spanned<u64>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_handshakes_per_source: Option<Spanned<u64>>,
    pub max_handshakes_per_peer: Option<Spanned<u64>>,
    pub shutdown_grace_secs: Option<Spanned<u64>>,
    pub shutdown_delay_secs: Option<Spanned<u64>>,
}
