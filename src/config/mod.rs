//! The gateway's config file: serde structs → a validated [`Config`].
//!
//! "Parse, don't validate": `file` holds the TOML exactly as written (unknown keys are
//! errors), `validate` turns it into a [`Config`] whose values are already typed
//! (socket addresses, CIDR networks, absolute paths, durations), so nothing downstream
//! re-checks them. `files` checks that the files the config names are there
//! (naming the key and the command that makes each one), and `pairing`
//! cross-checks a config against its policy file: the gateway's pool must be
//! paired with `gateway.peer_pool`, and every tunnelled, exported or spooled
//! service must be allowed for that pair.
//!
//! Every error is one line, `FILE:LINE: KEY: WHAT IS WRONG — WHAT TO DO`, because an
//! operator at 3 a.m. during a failover should not have to guess.
//!
//! Every key, its default and its rules are listed in `docs/reference.md`
//! ("Config file"); `tests/integration/reference.rs` fails when a key of
//! `file.rs` is missing there.

mod file;
mod files;
mod intercept;
mod pairing;
mod validate;
mod values;

pub use files::{check_files, FileError};
pub use intercept::{ExportTarget, Intercept};
pub use pairing::{check_against_policy, check_pairing, load_with_policy, PairingError};
pub use values::wide_source;

/// `tls.crl_overdue` (defined where it is enforced, in `tls`).
pub use crate::tls::CrlOverdue;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::names::{PoolName, ServiceName};
use crate::policy::PolicyError;
use crate::source::{self, at, at_column, TomlFile, TomlProblem};

/// A validated gateway configuration. All paths are absolute (resolved
/// against the config file's folder).
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file itself (absolute).
    pub path: PathBuf,
    pub gateway: Gateway,
    pub tls: Tls,
    pub peer: Peer,
    pub admin: Option<Admin>,
    pub audit: Audit,
    pub spool: Option<Spool>,
    pub tunnels: Vec<Tunnel>,
    pub exports: Vec<Export>,
    /// `[[intercept]]` listeners (transparent interception, see `crate::intercept`).
    pub intercepts: Vec<Intercept>,
    pub limits: Limits,
    /// Where things were written, for messages after parsing.
    pub lines: ConfigLines,
}

#[derive(Debug, Clone)]
pub struct Gateway {
    pub pool: PoolName,
    pub peer_pool: PoolName,
    pub policy: PathBuf,
    /// `SO_MARK` of the gateway's own sockets when it intercepts
    /// (`gateway.mark`, default [`crate::intercept::DEFAULT_MARK`]; 0: none).
    pub mark: u32,
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
    /// What an overdue CRL (past its nextUpdate) means (`tls.crl_overdue`).
    pub crl_overdue: CrlOverdue,
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub listen: SocketAddr,
    /// `host:port` of the peer gateway's `peer.listen`.
    pub connect: String,
    /// How often this gateway checks the link and sends its audit chain head
    /// to the peer (`peer.heartbeat_secs`, default 30).
    pub heartbeat: Duration,
}

impl Config {
    /// One warning per `allow_sources` entry wider than a private range (or
    /// `0.0.0.0/0`): `tunnel[i] (service): why — what to do`. `check` prints
    /// them; they do not make the config invalid (a front end in public
    /// address space is unusual, not wrong).
    pub fn wide_sources(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, tunnel) in self.tunnels.iter().enumerate() {
            for net in &tunnel.allow_sources {
                if let Some(why) = wide_source(net) {
                    out.push(format!(
                        "tunnel[{i}].allow_sources ({}): {why} — the tunnel listener is \
                         plaintext, so everyone it admits reaches the peer's {} through this \
                         gateway; list only the front end servers' networks",
                        tunnel.service, tunnel.service
                    ));
                }
            }
        }
        out
    }
}

impl Peer {
    pub const DEFAULT_HEARTBEAT_SECS: u64 = 30;
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub listen: SocketAddr,
    /// The Backup Service's sync interval (`admin.sync_interval_secs`,
    /// default 120): a direction whose oldest waiting item is older than this
    /// is reported `lagging`.
    pub sync_interval: Duration,
}

impl Admin {
    pub const DEFAULT_SYNC_INTERVAL_SECS: u64 = 120;
}

#[derive(Debug, Clone)]
pub struct Audit {
    pub path: PathBuf,
    /// What happens while the log cannot be written or keep up
    /// (`audit.on_failure`, default `refuse`; see `audit::health`).
    pub on_failure: crate::audit::OnFailure,
}

#[derive(Debug, Clone)]
pub struct Spool {
    pub dir: PathBuf,
    pub key: PathBuf,
    pub outbox: PathBuf,
    pub inbox: PathBuf,
    pub max_bytes: Option<u64>,
    /// Previous master keys: files sealed under them (key id in each header)
    /// still drain after `spool.key` moved to a new key.
    pub old_keys: Vec<PathBuf>,
    /// How long an outbox file must look unchanged (size, mtime, ctime,
    /// inode) before it is taken (`spool.settle_ms`, default 1000).
    pub settle: Duration,
    /// A spool transfer that makes no progress this long is torn down and
    /// resumed on a new connection (`spool.stall_secs`, default 30).
    pub stall: Duration,
    /// The replay window (`spool.max_age_days`, default 30): a received
    /// file created longer ago than this at its origin is refused; delivery
    /// markers are kept longer than this.
    pub max_age: Duration,
}

impl Spool {
    pub const DEFAULT_SETTLE_MS: u64 = 1000;
    pub const MAX_SETTLE_MS: u64 = 600_000;
    pub const DEFAULT_STALL_SECS: u64 = 30;
    /// `spool.max_age_days` default: a file older than this at its origin
    /// is refused as a replay (see `spool::replay`).
    pub const DEFAULT_MAX_AGE_DAYS: u64 = 30;
    pub const MAX_MAX_AGE_DAYS: u64 = 3650;
    pub const MAX_STALL_SECS: u64 = 3600;
}

#[derive(Debug, Clone)]
pub struct Tunnel {
    pub service: ServiceName,
    pub listen: SocketAddr,
    pub allow_sources: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct Export {
    pub service: ServiceName,
    /// A fixed `host:port`, or the destinations the peer may carry.
    pub target: ExportTarget,
}

/// Optional `[limits]` section.
#[derive(Debug, Clone)]
pub struct Limits {
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    /// Connections from one source address that may be in the TLS handshake
    /// at once on the peer listener. Bounds what idle or half-open sockets
    /// from one host can hold, without limiting the authenticated peer's
    /// concurrency (that is `max_connections`).
    pub max_handshakes_per_source: usize,
    /// The same allowance for an address the paired peer gateway recently
    /// proved to be at (see `peer::pending`): its tunnelled connections all
    /// handshake from there, as many at once as local clients open.
    pub max_handshakes_per_peer: usize,
    pub shutdown_grace: Duration,
    /// On SIGTERM, how long the gateway keeps accepting while `/readyz`
    /// already answers 503, so that a load balancer or keepalived moves new
    /// connections away before the listeners close (0: close at once).
    pub shutdown_delay: Duration,
}

impl Limits {
    pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
    pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 1800;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
    pub const DEFAULT_MAX_HANDSHAKES_PER_SOURCE: usize = 64;
    pub const DEFAULT_MAX_HANDSHAKES_PER_PEER: usize = 2048;
    pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            handshake_timeout: Duration::from_secs(Limits::DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            idle_timeout: Duration::from_secs(Limits::DEFAULT_IDLE_TIMEOUT_SECS),
            max_connections: Limits::DEFAULT_MAX_CONNECTIONS,
            max_handshakes_per_source: Limits::DEFAULT_MAX_HANDSHAKES_PER_SOURCE,
            max_handshakes_per_peer: Limits::DEFAULT_MAX_HANDSHAKES_PER_PEER,
            shutdown_grace: Duration::from_secs(Limits::DEFAULT_SHUTDOWN_GRACE_SECS),
            shutdown_delay: Duration::ZERO,
        }
    }
}

/// 1-based lines of the config items later checks point at; 0 means unknown
/// (e.g. a `Config` built in code), and messages then name only the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigLines {
    /// `gateway.pool`.
    pub pool: usize,
    /// `gateway.peer_pool`.
    pub peer_pool: usize,
    /// The `[spool]` header.
    pub spool: usize,
    /// Each `[[tunnel]]`'s `service`, in order.
    pub tunnels: Vec<usize>,
    /// Each `[[export]]`'s `service`, in order.
    pub exports: Vec<usize>,
    /// Each `[[intercept]]`'s `service`, in order.
    pub intercepts: Vec<usize>,
    /// Each path key as written (`tls.cert`, `spool.old_keys[0]`, …).
    pub paths: std::collections::BTreeMap<String, usize>,
}

/// Why a config file was rejected. Every message is one line naming the file (and
/// line), the key, what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {error} — check the path and that pairgate may read it", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },

    /// TOML syntax, unknown keys, wrong types, missing keys (toml's message).
    #[error("{}: {message}", at_column(path, *line, *column))]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A file the config names is missing or unreadable (boxed: it names two files).
    #[error(transparent)]
    File(Box<FileError>),

    /// A value that parses as TOML but is not acceptable.
    #[error("{}: {key}: {problem} — {fix}", at(path, *line))]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        problem: String,
        fix: String,
    },

    /// The config and its policy disagree (boxed: it names two files and a pair).
    #[error(transparent)]
    Pairing(Box<PairingError>),

    /// The policy file named by `gateway.policy` is itself invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl TomlFile for Config {
    type Raw = file::RawConfig;
    type Error = ConfigError;

    fn read_error(path: &Path, error: std::io::Error) -> ConfigError {
        ConfigError::Read {
            path: path.to_path_buf(),
            error,
        }
    }

    fn syntax_error(path: &Path, problem: TomlProblem) -> ConfigError {
        ConfigError::Syntax {
            path: path.to_path_buf(),
            line: problem.line,
            column: problem.column,
            message: problem.message,
        }
    }

    fn validate(raw: file::RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
        validate::validate(raw, text, path)
    }
}

impl Config {
    /// Reads and validates a config file. Does not read the policy or any
    /// certificate; see [`load_with_policy`].
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read, otherwise as [`Config::parse`].
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        source::load(path)
    }

    /// Parses and validates config text. `path` names the file in messages, and its
    /// folder is the base for relative paths.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for TOML problems (including unknown keys) and
    /// [`ConfigError::Invalid`] for unacceptable values.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        source::parse(text, path)
    }

    /// Whether this gateway exports `service` to its peer: an `[[export]]` for it,
    /// or a `[spool]` section for `spool`. This is [`crate::policy::Request::exported`].
    pub fn exports_service(&self, service: &str) -> bool {
        if service == "spool" {
            return self.spool.is_some();
        }
        self.exports.iter().any(|e| e.service == service)
    }

    /// Whether this gateway intercepts (an `[[intercept]]`, or an
    /// `[[export]]` that connects carried destinations): then its own
    /// sockets carry `gateway.mark`, which needs `CAP_NET_ADMIN`.
    pub fn intercepting(&self) -> bool {
        !self.intercepts.is_empty()
            || self
                .exports
                .iter()
                .any(|e| matches!(e.target, ExportTarget::Carried(_)))
    }

    /// The mark the gateway puts on its own sockets: `gateway.mark` when
    /// [`Config::intercepting`], else 0 (a plain gateway needs no capability).
    pub fn socket_mark(&self) -> u32 {
        if self.intercepting() {
            self.gateway.mark
        } else {
            0
        }
    }

    /// The export for `service`, if any.
    pub fn export(&self, service: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.service == service)
    }
}
