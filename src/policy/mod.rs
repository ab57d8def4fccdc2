//! The pairing manifest: which pools are paired and which services each pair may use.
//!
//! SKELETON — the policy helper replaces the bodies; keep these signatures.

mod decision;

pub use decision::{Decision, DenyReason, Verdict};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Services every policy knows without declaring them. `spool` is the
/// store-and-forward transfer (ALPN `pg1-spool`).
pub const BUILTIN_SERVICES: &[&str] = &["backup-smb", "cms-smb", "cms-https", "spool"];

/// A validated policy: pairs are unordered, 1:1 and reciprocal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub path: PathBuf,
    pub pairs: Vec<Pair>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The two pools, as written in the file.
    pub pools: [String; 2],
    pub services: BTreeSet<String>,
}

/// What a connection asks for, as seen by the gateway that must decide.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The pool this gateway fronts (`gateway.pool`).
    pub local_pool: &'a str,
    /// The authenticated identity of the remote gateway (first DNS SAN), if any.
    pub peer_pool: &'a str,
    /// The service named by ALPN (`pg1/<service>`), or `spool`.
    pub service: &'a str,
    /// Whether this gateway exports that service (has an `[[export]]` for it,
    /// or a `[spool]` section for `spool`).
    pub exported: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("placeholder")]
    Placeholder,
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(_path: &Path) -> Result<Policy, PolicyError> {
        unimplemented!()
    }
    /// Parses and validates policy text; `path` is only used in messages.
    pub fn parse(_text: &str, _path: &Path) -> Result<Policy, PolicyError> {
        unimplemented!()
    }
    /// The pair `pool` belongs to, if any.
    pub fn pair_of(&self, _pool: &str) -> Option<&Pair> {
        unimplemented!()
    }
    /// The pool paired with `pool`, if any.
    pub fn peer_of(&self, _pool: &str) -> Option<&str> {
        unimplemented!()
    }
}

/// Pure, default-deny decision for an authenticated inbound request.
pub fn evaluate(_policy: &Policy, _req: &Request<'_>) -> Decision {
    unimplemented!()
}
