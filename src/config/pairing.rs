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
mod tests {
    use std::path::PathBuf;

    use super::*;

    const POLICY: &str = "[[pair]]\npools = [\"pool01.site1.example\", \"pool02.site2.example\"]\nservices = [\"backup-smb\", \"cms-smb\"]\n\n[[pair]]\npools = [\"pool03.site1.example\", \"pool04.site2.example\"]\nservices = [\"backup-smb\"]\n";

    const CONFIG: &str = r#"[gateway]
pool = "pool01.site1.example"
peer_pool = "pool02.site2.example"
policy = "pairing.toml"

[tls]
cert = "c.crt"
key = "c.key"
ca = "ca.crt"

[peer]
listen = "127.0.0.1:7443"
connect = "127.0.0.1:7444"

[audit]
path = "audit.jsonl"

[[tunnel]]
service = "backup-smb"
listen = "127.0.0.1:8445"
allow_sources = ["127.0.0.0/8"]

[[export]]
service = "cms-smb"
target = "127.0.0.1:4450"
"#;

    fn example(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("policy")
            .join(name)
    }

    fn policy() -> Policy {
        Policy::parse(POLICY, Path::new("/srv/pg/pairing.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The cross-check error for `config_text` against [`POLICY`], as one line.
    fn cross_error(config_text: &str) -> String {
        let config = Config::parse(config_text, Path::new("/srv/pg/site1.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        match check_against_policy(&config, &policy()) {
            Ok(()) => panic!("cross-check should fail:\n{config_text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn example_site_configs_agree_with_their_policy() {
        for (name, pool, peer) in [
            ("site1.toml", "pool01.site1.example", "pool02.site2.example"),
            ("site2.toml", "pool02.site2.example", "pool01.site1.example"),
        ] {
            // Not `load_with_policy`: the certificates and keys these name
            // are made by the README's quick start, not kept in the repository.
            let config = Config::load(&example(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            let policy = Policy::load(&config.gateway.policy).unwrap_or_else(|e| panic!("{e}"));
            check_against_policy(&config, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                (
                    config.gateway.pool.as_str(),
                    config.gateway.peer_pool.as_str()
                ),
                (pool, peer)
            );
            assert_eq!(policy.peer_of(pool), Some(peer));
            assert_eq!(config.gateway.policy, example("pairing.toml"));
            assert!(
                config.tls.ca.ends_with("policy/../certs/ca/ca.crt"),
                "{}",
                config.tls.ca.display()
            );
            assert!(
                config.spool.is_some() && !config.tunnels.is_empty() && !config.exports.is_empty()
            );
        }
    }

    #[test]
    fn matching_config_passes_case_insensitively() {
        let config = Config::parse(
            &CONFIG.replace("pool01.site1", "POOL01.Site1"),
            Path::new("/srv/pg/site1.toml"),
        );
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert!(check_against_policy(&config, &policy()).is_ok());
    }

    #[test]
    fn pool_paired_with_another_pool_names_both_files_and_the_real_pair() {
        let message = cross_error(&CONFIG.replace(
            "peer_pool = \"pool02.site2.example\"",
            "peer_pool = \"pool04.site2.example\"",
        ));
        assert_eq!(
            message,
            "/srv/pg/site1.toml:3: gateway.peer_pool: \"pool04.site2.example\" is not the pair of \"pool01.site1.example\": /srv/pg/pairing.toml pairs \"pool01.site1.example\" with \"pool02.site2.example\" — set peer_pool = \"pool02.site2.example\", or fix the pair in /srv/pg/pairing.toml"
        );
    }

    #[test]
    fn pool_missing_from_policy_says_what_to_add_only_when_the_policy_would_take_it() {
        // Neither pool is paired: adding the pair is the fix.
        let message = cross_error(
            &CONFIG
                .replace(
                    "pool = \"pool01.site1.example\"",
                    "pool = \"pool09.site1.example\"",
                )
                .replace(
                    "peer_pool = \"pool02.site2.example\"",
                    "peer_pool = \"pool08.site2.example\"",
                ),
        );
        assert!(message.starts_with("/srv/pg/site1.toml:2: gateway.pool: /srv/pg/pairing.toml has no pair for \"pool09.site1.example\" — add [[pair]] pools = [\"pool09.site1.example\", \"pool08.site2.example\"]"), "{message}");
        // peer_pool is paired already: a pair with it would be refused (1:1).
        let message = cross_error(&CONFIG.replace(
            "pool = \"pool01.site1.example\"",
            "pool = \"pool01.site1.exmaple\"",
        ));
        assert!(message.ends_with("has no pair for \"pool01.site1.exmaple\" — it pairs peer_pool \"pool02.site2.example\" with \"pool01.site1.example\" (a pool is in at most one pair): set pool = \"pool01.site1.example\" if that is this site's pool, or correct peer_pool"), "{message}");
    }

    #[test]
    fn a_typo_in_the_pool_is_named_from_the_certificate() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ca = crate::pki::Ca::generate("t", crate::pki::Validity::days_from_now(2))
            .unwrap_or_else(|e| panic!("{e}"));
        let request = crate::pki::LeafRequest {
            pool: "pool03.site1.example".into(),
            dns: vec![],
            ips: vec![],
            validity: crate::pki::Validity::days_from_now(2),
        };
        let issued = ca.issue(&request).unwrap_or_else(|e| panic!("{e}"));
        issued
            .write(&dir.path().join("c"))
            .unwrap_or_else(|e| panic!("{e}"));
        let text = CONFIG.replace(
            "pool = \"pool01.site1.example\"",
            "pool = \"pool03.site1.exmaple\"",
        );
        let config =
            Config::parse(&text, &dir.path().join("site1.toml")).unwrap_or_else(|e| panic!("{e}"));
        let message = check_against_policy(&config, &policy())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.ends_with(&format!("the certificate {} (tls.cert) is for \"pool03.site1.example\", which the policy pairs with \"pool04.site2.example\": set pool = \"pool03.site1.example\" and peer_pool = \"pool04.site2.example\"", dir.path().join("c.crt").display())), "{message}");
    }

    #[test]
    fn tunnel_export_and_spool_services_must_be_in_the_pair() {
        let message =
            cross_error(&CONFIG.replace("service = \"backup-smb\"", "service = \"cms-https\""));
        assert!(message.starts_with("/srv/pg/site1.toml:19: tunnel[0].service: service \"cms-https\" is not allowed between pool01.site1.example and pool02.site2.example by /srv/pg/pairing.toml (allowed: backup-smb, cms-smb) — add \"cms-https\""), "{message}");
        assert!(message.ends_with("or remove this [[tunnel]]"), "{message}");
        let message =
            cross_error(&CONFIG.replace("service = \"cms-smb\"", "service = \"cms-https\""));
        assert!(
            message.starts_with("/srv/pg/site1.toml:24: export[0].service: service \"cms-https\""),
            "{message}"
        );
        let spool =
            format!("{CONFIG}\n[spool]\ndir = \"s\"\nkey = \"k\"\noutbox = \"o\"\ninbox = \"i\"\n");
        let message = cross_error(&spool);
        assert!(
            message.starts_with("/srv/pg/site1.toml:27: spool: service \"spool\" is not allowed"),
            "{message}"
        );
        assert!(
            message.ends_with("or remove the [spool] section"),
            "{message}"
        );
    }

    #[test]
    fn load_with_policy_reports_the_policy_file_and_cross_check() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let config_path = dir.path().join("site1.toml");
        let write = |path: PathBuf, text: &str| {
            std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"))
        };
        write(config_path.clone(), CONFIG);
        // Files are checked for presence only (their content is the tls loader's).
        for file in ["c.crt", "c.key", "ca.crt"] {
            write(dir.path().join(file), "x");
        }
        // Missing policy file: the key that names it.
        let message = load_with_policy(&config_path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("site1.toml:4: gateway.policy: ")
                && message.contains("pairing.toml does not exist"),
            "{message}"
        );
        // Invalid policy file: its own error, naming it.
        write(
            dir.path().join("pairing.toml"),
            "[[pair]]\npools = [\"a\"]\nservices = [\"spool\"]\n",
        );
        let message = load_with_policy(&config_path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            message.contains("pairing.toml:2: pair[0].pools: lists 1 pool(s)"),
            "{message}"
        );
        // Valid policy, but the export is not allowed.
        write(
            dir.path().join("pairing.toml"),
            &POLICY.replace(", \"cms-smb\"", ""),
        );
        match load_with_policy(&config_path) {
            Err(ConfigError::Pairing(e)) => match *e {
                PairingError::ServiceNotInPair { service, line, .. } => {
                    assert_eq!((service.as_str(), line), ("cms-smb", 24))
                }
                other => panic!("expected ServiceNotInPair, got {other:?}"),
            },
            other => panic!("expected ServiceNotInPair, got {other:?}"),
        }
        write(dir.path().join("pairing.toml"), POLICY);
        assert!(load_with_policy(&config_path).is_ok());
    }
}
