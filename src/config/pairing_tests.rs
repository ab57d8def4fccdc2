//! Unit tests of `pairing.rs`.

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
        assert!(config.spool.is_some() && !config.tunnels.is_empty() && !config.exports.is_empty());
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
    let message = cross_error(&CONFIG.replace("service = \"cms-smb\"", "service = \"cms-https\""));
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
    let write =
        |path: PathBuf, text: &str| std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
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
