//! Cross-checking a config against its policy file.
//!
//! A config can be valid on its own and still useless: if the policy does not pair
//! `gateway.pool` with `gateway.peer_pool`, or does not allow a tunnelled or exported
//! service, every connection would be denied at run time. `pairgate check` and
//! `pairgate run` catch that at start-up instead, naming both files.

use std::path::Path;

use std::path::PathBuf;

use super::{Config, ConfigError};
use crate::policy::{Pair, Policy};
use crate::source::at;

/// How a config disagrees with its policy; reached through [`ConfigError::Pairing`].
#[derive(Debug, thiserror::Error)]
pub enum PairingError {
    /// The policy has no pair containing `gateway.pool`. `advice` depends on
    /// what else is known: most often a typo in `gateway.pool`, which the
    /// certificate's pool or the pair of `gateway.peer_pool` reveals.
    #[error("{}: gateway.pool: {} has no pair for \"{pool}\" — {advice}", at(config, *line), policy.display())]
    NotInPolicy {
        config: PathBuf,
        line: usize,
        policy: PathBuf,
        pool: String,
        peer_pool: String,
        advice: String,
    },

    /// The policy pairs `gateway.pool` with a pool other than `gateway.peer_pool`.
    #[error("{}: gateway.peer_pool: \"{peer_pool}\" is not the pair of \"{pool}\": {} pairs \"{pool}\" with \"{paired_with}\" — set peer_pool = \"{paired_with}\", or fix the pair in {}", at(config, *line), policy.display(), policy.display())]
    PairedElsewhere {
        config: PathBuf,
        line: usize,
        policy: PathBuf,
        pool: String,
        peer_pool: String,
        paired_with: String,
    },

    /// A tunnel, export or the spool uses a service the pair does not allow.
    #[error("{}: {key}: service \"{service}\" is not allowed between {} and {} by {} (allowed: {}) — add \"{service}\" to that pair's services in {}, or remove {what}", at(config, *line), pools[0], pools[1], policy.display(), .allowed.join(", "), policy.display())]
    ServiceNotInPair {
        config: PathBuf,
        line: usize,
        key: String,
        service: String,
        policy: PathBuf,
        pools: [String; 2],
        allowed: Vec<String>,
        /// What to remove instead, e.g. `this [[tunnel]]`.
        what: String,
    },
}

impl From<PairingError> for ConfigError {
    fn from(error: PairingError) -> ConfigError {
        ConfigError::Pairing(Box::new(error))
    }
}

/// Checks that the policy pairs `gateway.pool` with `gateway.peer_pool` and allows every
/// service this config tunnels, exports or spools.
///
/// # Errors
/// [`ConfigError::Pairing`] with [`PairingError::NotInPolicy`] / [`PairingError::PairedElsewhere`]
/// when the pools are not a pair, [`PairingError::ServiceNotInPair`] for the first service
/// the pair does not allow.
pub fn check_against_policy(config: &Config, policy: &Policy) -> Result<(), ConfigError> {
    let pair = paired(config, policy)?;
    let check = |service: &str, line: usize, key: String, what: &str| {
        if pair.services.contains(service) {
            Ok(())
        } else {
            Err(not_allowed(config, policy, pair, service, line, key, what))
        }
    };
    check_services(config, check)
}

/// Checks only that the policy pairs `gateway.pool` with
/// `gateway.peer_pool` (a policy reload: a service the policy stops
/// allowing is denied from then on, and its open connections closed, rather
/// than the reload refused).
///
/// # Errors
/// As [`check_against_policy`], without the services.
pub fn check_pairing(config: &Config, policy: &Policy) -> Result<(), ConfigError> {
    paired(config, policy).map(|_| ())
}

/// The pair of `gateway.pool`, which must be with `gateway.peer_pool`.
fn paired<'p>(config: &Config, policy: &'p Policy) -> Result<&'p crate::policy::Pair, ConfigError> {
    let gateway = &config.gateway;
    let Some(pair) = policy.pair_of(&gateway.pool) else {
        return Err(PairingError::NotInPolicy {
            config: config.path.clone(),
            line: config.lines.pool,
            policy: policy.path.clone(),
            pool: gateway.pool.to_string(),
            peer_pool: gateway.peer_pool.to_string(),
            advice: unpaired_advice(config, policy, certificate_pool(config).as_deref()),
        }
        .into());
    };
    let paired_with = pair.peer_of(&gateway.pool);
    if *paired_with != gateway.peer_pool {
        return Err(PairingError::PairedElsewhere {
            config: config.path.clone(),
            line: config.lines.peer_pool,
            policy: policy.path.clone(),
            pool: gateway.pool.to_string(),
            peer_pool: gateway.peer_pool.to_string(),
            paired_with: paired_with.to_string(),
        }
        .into());
    }
    Ok(pair)
}

/// Runs `check` on every service the config tunnels, exports, intercepts or spools.
fn check_services(
    config: &Config,
    check: impl Fn(&str, usize, String, &str) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    for (i, tunnel) in config.tunnels.iter().enumerate() {
        let line = config.lines.tunnels.get(i).copied().unwrap_or(0);
        check(
            &tunnel.service,
            line,
            format!("tunnel[{i}].service"),
            "this [[tunnel]]",
        )?;
    }
    for (i, export) in config.exports.iter().enumerate() {
        let line = config.lines.exports.get(i).copied().unwrap_or(0);
        check(
            &export.service,
            line,
            format!("export[{i}].service"),
            "this [[export]]",
        )?;
    }
    for (i, intercept) in config.intercepts.iter().enumerate() {
        let line = config.lines.intercepts.get(i).copied().unwrap_or(0);
        check(
            &intercept.service,
            line,
            format!("intercept[{i}].service"),
            "this [[intercept]]",
        )?;
    }
    if config.spool.is_some() {
        check(
            "spool",
            config.lines.spool,
            "spool".to_owned(),
            "the [spool] section",
        )?;
    }
    Ok(())
}

/// The pool the certificate at `tls.cert` identifies (its first DNS SAN),
/// if it can be read; only for advice.
fn certificate_pool(config: &Config) -> Option<String> {
    let chain = crate::tls::load_certs(&config.tls.cert).ok()?;
    let leaf = chain.first()?;
    crate::tls::identity_of(leaf).ok().map(|id| id.pool)
}

/// What to do when `gateway.pool` is in no pair. Adding a pair is the
/// answer only when neither pool is paired yet: a pool is in at most one
/// pair, so with `peer_pool` already paired the policy would refuse it.
fn unpaired_advice(config: &Config, policy: &Policy, cert_pool: Option<&str>) -> String {
    let gateway = &config.gateway;
    let cert_pair = cert_pool
        .filter(|c| !gateway.pool.is(c))
        .and_then(|c| policy.peer_of(c).map(|peer| (c, peer)));
    if let Some((cert_pool, its_peer)) = cert_pair {
        let peer = if gateway.peer_pool.is(its_peer) {
            String::new()
        } else {
            format!(" and peer_pool = \"{its_peer}\"")
        };
        return format!(
            "the certificate {} (tls.cert) is for \"{cert_pool}\", which the policy pairs with \
             \"{its_peer}\": set pool = \"{cert_pool}\"{peer}",
            config.tls.cert.display()
        );
    }
    if let Some(partner) = policy.peer_of(&gateway.peer_pool) {
        return format!(
            "it pairs peer_pool \"{}\" with \"{partner}\" (a pool is in at most one pair): set \
             pool = \"{partner}\" if that is this site's pool, or correct peer_pool",
            gateway.peer_pool
        );
    }
    format!(
        "add [[pair]] pools = [\"{}\", \"{}\"] to {}, or correct gateway.pool",
        gateway.pool,
        gateway.peer_pool,
        policy.path.display()
    )
}

fn not_allowed(
    config: &Config,
    policy: &Policy,
    pair: &Pair,
    service: &str,
    line: usize,
    key: String,
    what: &str,
) -> ConfigError {
    PairingError::ServiceNotInPair {
        config: config.path.clone(),
        line,
        key,
        service: service.to_owned(),
        policy: policy.path.clone(),
        pools: pair.pools.clone().map(|p| p.to_string()),
        allowed: pair.services.iter().map(ToString::to_string).collect(),
        what: what.to_owned(),
    }
    .into()
}

/// Loads a config, checks that the files it names are there, loads the
/// policy it names (`gateway.policy`), then cross-checks them. Certificates
/// are not validated; that is the `tls` module's job.
///
/// # Errors
/// Any [`ConfigError`]: [`ConfigError::File`] for a missing file, an invalid
/// policy file is [`ConfigError::Policy`].
pub fn load_with_policy(path: &Path) -> Result<(Config, Policy), ConfigError> {
    let config = Config::load(path)?;
    super::check_files(&config)?;
    let policy = Policy::load(&config.gateway.policy)?;
    check_against_policy(&config, &policy)?;
    Ok((config, policy))
}

#[cfg(test)]
#[path = "pairing_tests.rs"]
mod tests;
