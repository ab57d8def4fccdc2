//! The pairing manifest: which pools are paired and which services each pair may use.
//!
//! Lync / Skype for Business pool pairing is 1:1 and reciprocal: a pool backs up exactly
//! one other pool, and that pool backs it up. The Topology Builder does not enforce this,
//! so the policy file does: every `[[pair]]` names exactly two distinct pools, a pool
//! appears in at most one pair (names compared case-insensitively, as DNS does), and each
//! pair lists the services its gateways may carry. The same file is deployed at both sites.
//!
//! Flow: [`Policy::load`] reads the file, `file` deserializes it (unknown keys are errors),
//! `validate` enforces the rules above with `file:line` messages, and [`evaluate`] is the
//! pure, default-deny decision the proxy asks for every authenticated connection.

mod decision;
mod file;
mod validate;

pub use decision::{Decision, DenyReason, Verdict};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::source::{self, at, at_column, TomlFile, TomlProblem};

use crate::names::{PoolName, ServiceName};

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
    pub pools: [PoolName; 2],
    pub services: BTreeSet<ServiceName>,
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

/// Why a policy file was rejected. Every message is one line naming the file (and
/// line), what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{}: cannot read the policy file: {error} — check the path (gateway.policy in the config) and that pairgate may read it", path.display())]
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

    #[error("{}: {key}: {problem} — {fix}", at(path, *line))]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        problem: String,
        fix: String,
    },

    #[error("{}: pair[{pair}].services: unknown service \"{service}\" — use one of {} or declare it with [[service]] name = \"{service}\"", at(path, *line), .known.join(", "))]
    UnknownService {
        path: PathBuf,
        line: usize,
        pair: usize,
        service: String,
        known: Vec<String>,
    },

    #[error("{}: pair[{pair}] repeats pair[{first}] (line {first_line}): {} <-> {} — pairs are unordered; merge their services into one [[pair]]", at(path, *line), pools[0], pools[1])]
    DuplicatePair {
        path: PathBuf,
        line: usize,
        pair: usize,
        first: usize,
        first_line: usize,
        pools: [String; 2],
    },

    #[error("{}: pool \"{pool}\" is in two pairs: {first} and {second} — pairing is 1:1; keep \"{pool}\" in one pair only", at(path, second.line))]
    PoolInTwoPairs {
        path: PathBuf,
        pool: String,
        first: Box<PairAt>,
        second: Box<PairAt>,
    },
}

/// Where a pair was written, for messages: `pair[0] at line 2 (a <-> b)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairAt {
    /// 0-based index among the `[[pair]]` tables.
    pub index: usize,
    /// 1-based line of its `[[pair]]` header.
    pub line: usize,
    pub pools: [String; 2],
}

impl std::fmt::Display for PairAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b] = &self.pools;
        write!(
            f,
            "pair[{}] at line {} ({a} <-> {b})",
            self.index, self.line
        )
    }
}

impl TomlFile for Policy {
    type Raw = file::RawPolicy;
    type Error = PolicyError;

    fn read_error(path: &Path, error: std::io::Error) -> PolicyError {
        PolicyError::Read {
            path: path.to_path_buf(),
            error,
        }
    }

    fn syntax_error(path: &Path, problem: TomlProblem) -> PolicyError {
        PolicyError::Syntax {
            path: path.to_path_buf(),
            line: problem.line,
            column: problem.column,
            message: problem.message,
        }
    }

    fn validate(raw: file::RawPolicy, text: &str, path: &Path) -> Result<Policy, PolicyError> {
        validate::validate(raw, text, path)
    }
}

impl Policy {
    /// Reads and validates a policy file.
    ///
    /// # Errors
    /// [`PolicyError::Read`] if the file cannot be read, otherwise as [`Policy::parse`].
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        source::load(path)
    }

    /// Parses and validates policy text; `path` is only used in messages.
    ///
    /// # Errors
    /// [`PolicyError::Syntax`] for TOML problems (including unknown keys), and the other
    /// variants for a policy that breaks the pairing rules.
    pub fn parse(text: &str, path: &Path) -> Result<Policy, PolicyError> {
        source::parse(text, path)
    }

    /// The pair `pool` belongs to, if any (pool names compare case-insensitively).
    pub fn pair_of(&self, pool: &str) -> Option<&Pair> {
        self.pairs.iter().find(|pair| pair.contains(pool))
    }

    /// The pool paired with `pool`, if any, as written in the file.
    pub fn peer_of(&self, pool: &str) -> Option<&str> {
        self.pair_of(pool).map(|pair| pair.peer_of(pool).as_str())
    }

    /// Every service some pair allows.
    pub fn services(&self) -> BTreeSet<&str> {
        self.pairs
            .iter()
            .flat_map(|pair| pair.services.iter().map(ServiceName::as_str))
            .collect()
    }
}

impl Pair {
    /// The other pool of this pair. If `pool` is not in the pair, the first pool is
    /// returned; call it only with a pool found through [`Policy::pair_of`].
    pub fn peer_of(&self, pool: &str) -> &PoolName {
        if self.pools[0].is(pool) {
            &self.pools[1]
        } else {
            &self.pools[0]
        }
    }

    /// Whether this pair contains `pool` (case-insensitively).
    pub fn contains(&self, pool: &str) -> bool {
        self.pools.iter().any(|p| p.is(pool))
    }
}

/// Pure, default-deny decision for an authenticated inbound request.
///
/// Allowed only if the local pool is paired with `req.peer_pool` (case-insensitively,
/// and never with itself), the pair lists `req.service`, and this gateway exports it.
pub fn evaluate(policy: &Policy, req: &Request<'_>) -> Decision {
    let Some(pair) = policy.pair_of(req.local_pool) else {
        return Decision::Deny(DenyReason::NotPaired);
    };
    let paired = pair.peer_of(req.local_pool).is(req.peer_pool)
        && !req.peer_pool.eq_ignore_ascii_case(req.local_pool);
    if !paired {
        return Decision::Deny(DenyReason::NotPaired);
    }
    if !pair.services.contains(req.service) || !req.exported {
        return Decision::Deny(DenyReason::ServiceNotAllowed);
    }
    Decision::Allow
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        let text = "[[pair]]\npools = [\"Pool01.Site1.example\", \"pool02.site2.example\"]\nservices = [\"backup-smb\", \"spool\"]\n\n[[pair]]\npools = [\"pool03.site1.example\", \"pool04.site2.example\"]\nservices = [\"cms-smb\"]\n";
        match Policy::parse(text, Path::new("pairing.toml")) {
            Ok(policy) => policy,
            Err(e) => panic!("test policy must parse: {e}"),
        }
    }

    fn pool(name: &str) -> PoolName {
        PoolName::new(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn decide(policy: &Policy, local: &str, peer: &str, service: &str, exported: bool) -> Decision {
        let req = Request {
            local_pool: local,
            peer_pool: peer,
            service,
            exported,
        };
        evaluate(policy, &req)
    }

    #[test]
    fn pair_of_and_peer_of_ignore_case() {
        let p = policy();
        assert_eq!(
            p.peer_of("pool01.site1.example"),
            Some("pool02.site2.example")
        );
        assert_eq!(
            p.peer_of("POOL02.site2.example"),
            Some("Pool01.Site1.example")
        );
        assert_eq!(p.peer_of("pool09.site9.example"), None);
        assert!(p
            .pair_of("pool04.site2.example")
            .is_some_and(|pair| pair.contains("POOL03.site1.example")));
    }

    #[test]
    fn evaluate_allows_only_the_pair_its_services_and_exports() {
        let p = policy();
        let (a, b) = ("pool01.site1.example", "pool02.site2.example");
        assert_eq!(decide(&p, a, b, "backup-smb", true), Decision::Allow);
        assert_eq!(
            decide(&p, b, "POOL01.site1.example", "spool", true),
            Decision::Allow
        );
        assert_eq!(
            decide(&p, a, b, "cms-smb", true),
            Decision::Deny(DenyReason::ServiceNotAllowed)
        );
        assert_eq!(
            decide(&p, a, b, "backup-smb", false),
            Decision::Deny(DenyReason::ServiceNotAllowed)
        );
        // Crossing between pairs is never allowed.
        assert_eq!(
            decide(&p, a, "pool04.site2.example", "backup-smb", true),
            Decision::Deny(DenyReason::NotPaired)
        );
        assert_eq!(
            decide(&p, "pool09.x", b, "backup-smb", true),
            Decision::Deny(DenyReason::NotPaired)
        );
        assert_eq!(
            decide(&p, a, "", "backup-smb", true),
            Decision::Deny(DenyReason::NotPaired)
        );
        assert_eq!(
            decide(&p, a, a, "backup-smb", true),
            Decision::Deny(DenyReason::NotPaired)
        );
    }

    #[test]
    fn evaluate_never_allows_a_self_pair_even_if_built_by_hand() {
        let p = Policy {
            path: PathBuf::from("x"),
            pairs: vec![Pair {
                pools: [pool("a"), pool("A")],
                services: BTreeSet::from([ServiceName::known("spool")]),
            }],
        };
        assert_eq!(
            decide(&p, "a", "a", "spool", true),
            Decision::Deny(DenyReason::NotPaired)
        );
    }

    /// Exhaustive: over every combination of pools, services and export flags, Allow
    /// happens exactly when the pools are a pair, the service is in it and it is exported.
    #[test]
    fn evaluate_is_default_deny_exhaustively() {
        let p = policy();
        let pools = [
            "pool01.site1.example",
            "POOL02.SITE2.EXAMPLE",
            "pool03.site1.example",
            "pool04.site2.example",
            "pool09.x",
            "",
        ];
        let services = ["backup-smb", "cms-smb", "cms-https", "spool", "other", ""];
        let pairs = [(0, 1), (1, 0), (2, 3), (3, 2)];
        let mut allowed = 0;
        for (i, local) in pools.iter().enumerate() {
            for (j, peer) in pools.iter().enumerate() {
                for service in services {
                    for exported in [false, true] {
                        let decision = decide(&p, local, peer, service, exported);
                        let in_pair = pairs.contains(&(i, j));
                        let listed = p
                            .pair_of(local)
                            .is_some_and(|pair| pair.services.contains(service));
                        let expect_allow = in_pair && listed && exported;
                        assert_eq!(
                            decision == Decision::Allow,
                            expect_allow,
                            "{local} {peer} {service} {exported}"
                        );
                        if !in_pair {
                            assert_eq!(decision, Decision::Deny(DenyReason::NotPaired));
                        }
                        allowed += usize::from(expect_allow);
                    }
                }
            }
        }
        assert_eq!(allowed, 6); // 2 directions x 2 services + 2 directions x 1 service
    }
}
