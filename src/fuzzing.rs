//! Fuzz entry points for everything pairgate reads from outside: the config
//! and policy files, certificate DER (peer identity and `cert inspect`),
//! spool key files and the audit log.
//!
//! Why here and not in the fuzz crate: the targets in `fuzz/fuzz_targets/`
//! are one-liners, so the properties live in the library where `cargo test`
//! can run every committed seed through them (`tests::seed_corpora_run_clean`)
//! and `cargo clippy` checks them. Each `fuzz_*` function takes arbitrary
//! bytes, must never panic, and asserts a property beyond "no panic" — a
//! failed assertion is a fuzzing finding, which is why they `assert!`
//! deliberately. The spool codec has its own entry point,
//! [`crate::spool::fuzz_decode`].
//!
//! | target | entry point | property |
//! | --- | --- | --- |
//! | `config_parse` | [`fuzz_config`] | an accepted config is fully typed (absolute paths, valid distinct pools, valid services, positive limits); every error is one line |
//! | `policy_parse` | [`fuzz_policy`] | an accepted policy is 1:1 and reciprocal with no self-pair; `evaluate` allows exactly paired + listed + exported; every error is one line |
//! | `peer_identity` | [`fuzz_identity`] | `tls::identity_of` agrees with `pki::inspect_der` (fingerprint, expiry) |
//! | `cert_inspect` | [`fuzz_cert_inspect`] | `inspect_der`/`inspect_pem` never panic; an inspected certificate prints as JSON |
//! | `cert_profile` | [`fuzz_profile`] | `tls::profile::check` never panics; a leaf it accepts is no CA, ends before its CA, and names its pool first (as `identity_of` and `inspect_der` read it) |
//! | `spool_key` | [`fuzz_spool_key`] | a key file is accepted only as 64 hex digits (+ one newline) and decodes to them |
//! | `audit_verify` | [`fuzz_audit_verify`] | `verify` names the first bad line, the lines before it verify alone; summary and query survive anything |
//! | `audit_round_trip` | [`fuzz_audit_round_trip`] | `render_line` of any event checks against its `prev`, chains, and parses back to the same event |
//! | `control_crl` | [`fuzz_control_crl`] | a control-channel line and a CRL offer (`tls::crl_offer`) never panic; an accepted offer holds 1..=`MAX_OFFER_CRLS` CRLs, none of them trusted by an empty bundle, and re-encodes to PEM that parses to the same CRLs |
//! | `preamble` | [`fuzz_preamble`] | the `pg2` PROXY v2 header (with the original-destination TLV of intercepted connections) and status frame decoders never panic; what they accept re-encodes to the same bytes (addresses, original destination) or decodes the same (status) |

mod audit;
mod cert;

pub use audit::{fuzz_audit_round_trip, fuzz_audit_verify};
pub use cert::{fuzz_cert_inspect, fuzz_identity, fuzz_profile, FUZZ_NOW};

use std::path::Path;

use crate::config::Config;
use crate::names::{is_valid_pool_name, is_valid_service_name};
use crate::policy::{evaluate, Decision, Policy, Request};
use crate::spool::MasterKey;

/// The path fuzzed config and policy text claim to come from.
const FUZZ_DIR: &str = "/fuzz";

/// Most pools and services combined in the policy target's `evaluate` sweep.
const MAX_SWEEP: usize = 8;

/// Parses `data` as a control-channel line and, where it carries one (or
/// as plain text), as a CRL offer. Never panics; what `parse_offer`
/// accepts is bounded and round-trips through PEM; no CRL is trusted
/// without a CA.
pub fn fuzz_control_crl(data: &[u8]) {
    use crate::tls::crl_offer::{parse_offer, MAX_OFFER_CRLS};
    let offer = match crate::proxy::control::parse_line(data) {
        Ok(crate::proxy::control::Message::Ok { crl: Some(crl), .. }) => crl,
        _ => String::from_utf8_lossy(data).into_owned(),
    };
    if let Ok(ders) = parse_offer(&offer) {
        assert!(!ders.is_empty() && ders.len() <= MAX_OFFER_CRLS);
        assert!(crate::tls::crl::trusted(&ders, &[]).is_empty());
        let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        let again: String = ders
            .iter()
            .map(|d| pem::encode_config(&pem::Pem::new("X509 CRL", d.to_vec()), config))
            .collect();
        assert_eq!(parse_offer(&again).ok(), Some(ders), "re-encodes");
    }
}

/// Decodes `data` as a `pg2` PROXY v2 header and as a status frame (see
/// [`crate::proxy::preamble`]). Never panics; an accepted header with
/// addresses and no TLVs re-encodes to the same bytes, and an accepted
/// status re-encodes to a frame that decodes to the same status.
pub fn fuzz_preamble(data: &[u8]) {
    use crate::proxy::preamble::{
        decode_origin, decode_status, encode_intercepted, encode_origin, encode_status, Origin,
    };
    match decode_origin(data) {
        Ok(Origin::Proxied {
            source,
            destination,
        }) => {
            let again = encode_origin(Some(source), Some(destination));
            if data.len() == again.len() {
                assert_eq!(data[14..], again[14..], "addresses re-encode");
            }
        }
        Ok(Origin::Intercepted {
            source,
            destination,
        }) => {
            // The original destination an export would connect: it must
            // re-encode exactly when the header holds nothing but it.
            let again = encode_intercepted(source, destination);
            if data.len() == again.len() {
                assert_eq!(data[14..], again[14..], "original destination re-encodes");
            }
            assert_eq!(
                decode_origin(&again)
                    .ok()
                    .and_then(|o| o.original_destination()),
                Some(destination)
            );
        }
        _ => {}
    }
    if let Ok(Some((status, used))) = decode_status(data) {
        assert!(used <= data.len());
        let again = encode_status(&status.outcome, &status.detail);
        let back = decode_status(&again).ok().flatten().map(|(s, _)| s);
        assert_eq!(back.as_ref().map(|s| &s.outcome), Some(&status.outcome));
    }
}

/// Parses `data` as a gateway config. Never panics.
pub fn fuzz_config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new(FUZZ_DIR).join("site.toml");
    let config = match Config::parse(&text, &path) {
        Ok(config) => config,
        Err(e) => return assert_one_line(&e.to_string()),
    };
    let g = &config.gateway;
    assert!(is_valid_pool_name(&g.pool) && is_valid_pool_name(&g.peer_pool));
    assert!(g.pool != g.peer_pool, "self-paired");
    let mut paths = vec![&g.policy, &config.tls.cert, &config.tls.key, &config.tls.ca];
    paths.extend(config.tls.crl.as_ref());
    paths.push(&config.audit.path);
    if let Some(s) = &config.spool {
        paths.extend([&s.dir, &s.key, &s.outbox, &s.inbox]);
        assert_ne!(s.max_bytes, Some(0));
    }
    for p in paths {
        assert!(p.is_absolute(), "relative path {} accepted", p.display());
    }
    for service in config.tunnels.iter().map(|t| &t.service) {
        assert!(is_valid_service_name(service) && service != "spool");
        assert!(!config.exports_service(service) || config.export(service).is_some());
    }
    for e in &config.exports {
        assert!(is_valid_service_name(&e.service) && e.service != "spool");
        assert!(config.exports_service(&e.service));
    }
    assert!(config.tunnels.iter().all(|t| !t.allow_sources.is_empty()));
    let l = &config.limits;
    assert!(!l.handshake_timeout.is_zero() && !l.idle_timeout.is_zero());
    assert!(l.max_connections > 0);
}

/// Parses `data` as a pairing policy and sweeps `evaluate` over its pools,
/// the built-in services and names taken from the input. Never panics.
pub fn fuzz_policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let policy = match Policy::parse(&text, &Path::new(FUZZ_DIR).join("pairing.toml")) {
        Ok(policy) => policy,
        Err(e) => return assert_one_line(&e.to_string()),
    };
    // 1:1 and reciprocal: a pool in at most one pair, never with itself.
    let pools: Vec<&str> = policy
        .pairs
        .iter()
        .flat_map(|p| p.pools.iter())
        .map(|p| p.as_str())
        .collect();
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            assert!(!a.eq_ignore_ascii_case(b), "pool {a} appears twice");
        }
    }
    // Requests: real pools (also in other case), junk from the input.
    let junk = text.get(..text.len().min(40)).unwrap_or_default();
    let mut names: Vec<String> = pools
        .iter()
        .take(MAX_SWEEP)
        .map(|p| p.to_string())
        .collect();
    names.extend(pools.first().map(|p| p.to_ascii_uppercase()));
    names.extend([String::new(), junk.to_owned()]);
    let mut services: Vec<String> = crate::policy::BUILTIN_SERVICES
        .iter()
        .map(|s| s.to_string())
        .collect();
    services.extend(
        policy
            .services()
            .into_iter()
            .take(MAX_SWEEP)
            .map(str::to_owned),
    );
    services.push(junk.to_owned());
    for local in &names {
        for peer in &names {
            for service in &services {
                for exported in [false, true] {
                    check_decision(&policy, local, peer, service, exported);
                }
            }
        }
    }
}

/// `evaluate` allows exactly: local and peer are the two (distinct) pools of
/// one pair, the pair lists the service, and it is exported.
fn check_decision(policy: &Policy, local: &str, peer: &str, service: &str, exported: bool) {
    let req = Request {
        local_pool: local,
        peer_pool: peer,
        service,
        exported,
    };
    let decision = evaluate(policy, &req);
    let expected = policy.pair_of(local).is_some_and(|pair| {
        pair.contains(peer)
            && !local.eq_ignore_ascii_case(peer)
            && pair.services.contains(service)
            && exported
    });
    assert_eq!(
        decision == Decision::Allow,
        expected,
        "evaluate({local:?} <- {peer:?}, {service:?}, exported={exported}) = {decision:?}"
    );
}

/// Parses `data` as a spool key file. Never panics; an accepted key is
/// exactly the 64 hex digits of the file.
pub fn fuzz_spool_key(data: &[u8]) {
    let path = Path::new(FUZZ_DIR).join("spool.key");
    match MasterKey::parse_key_file(data, &path) {
        Ok(key) => {
            let body = data.strip_suffix(b"\n").unwrap_or(data);
            assert_eq!(body.len(), 64);
            assert_eq!(
                hex::encode(key.expose()).as_bytes(),
                body.to_ascii_lowercase()
            );
        }
        Err(e) => {
            let msg = e.to_string();
            assert_one_line(&msg);
            assert!(
                msg.contains("spool.key"),
                "error does not name the file: {msg}"
            );
        }
    }
}

/// The contract: every error is one line on stderr.
fn assert_one_line(msg: &str) {
    assert!(!msg.contains('\n'), "error message spans lines: {msg:?}");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;

    type Entry = fn(&[u8]);

    const TARGETS: &[(&str, Entry)] = &[
        ("config_parse", fuzz_config),
        ("policy_parse", fuzz_policy),
        ("peer_identity", fuzz_identity),
        ("cert_inspect", fuzz_cert_inspect),
        ("spool_key", fuzz_spool_key),
        ("audit_verify", fuzz_audit_verify),
        ("audit_round_trip", fuzz_audit_round_trip),
        ("preamble", fuzz_preamble),
        ("cert_profile", fuzz_profile),
        ("control_crl", fuzz_control_crl),
    ];

    /// Every committed seed of every target runs through its entry point
    /// (regression test for past findings).
    #[test]
    fn seed_corpora_run_clean() {
        for (target, entry) in TARGETS {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fuzz/corpus")
                .join(target);
            let mut count = 0;
            for file in std::fs::read_dir(&dir).unwrap() {
                let path = file.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let run = std::panic::catch_unwind(|| entry(&bytes));
                assert!(run.is_ok(), "{target}: seed {} fails", path.display());
                count += 1;
            }
            assert!(count >= 3, "expected seed files in {}", dir.display());
        }
    }

    #[test]
    fn control_crl_seeds_reach_the_offer_parser() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/control_crl");
        let line = std::fs::read(dir.join("ok-with-crl.bin")).unwrap();
        let crate::proxy::control::Message::Ok { crl: Some(crl), .. } =
            crate::proxy::control::parse_line(&line).unwrap()
        else {
            panic!("the seed is an ok answer with a CRL");
        };
        assert_eq!(crate::tls::crl_offer::parse_offer(&crl).unwrap().len(), 1);
        let two = std::fs::read_to_string(dir.join("two-crls.bin")).unwrap();
        assert_eq!(crate::tls::crl_offer::parse_offer(&two).unwrap().len(), 2);
    }

    #[test]
    fn example_config_and_policy_are_accepted() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let policy = std::fs::read(root.join("policy/pairing.toml")).unwrap();
        assert!(Policy::parse(std::str::from_utf8(&policy).unwrap(), Path::new("p")).is_ok());
        fuzz_policy(&policy);
    }

    #[test]
    fn spool_key_accepts_hex_either_case() {
        let key = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
        fuzz_spool_key(key.as_bytes());
        assert!(MasterKey::parse_key_file(key.as_bytes(), Path::new("k")).is_ok());
        fuzz_spool_key(b"00\n");
        fuzz_spool_key(&key.as_bytes()[..64]);
    }

    #[test]
    fn policy_oracle_matches_evaluate_on_a_known_pair() {
        let text = "[[pair]]\npools = [\"a.x\", \"b.x\"]\nservices = [\"spool\"]\n";
        let policy = Policy::parse(text, Path::new("p")).unwrap();
        for (local, peer, service, exported) in [
            ("a.x", "B.X", "spool", true),
            ("a.x", "a.x", "spool", true),
            ("b.x", "a.x", "backup-smb", true),
            ("b.x", "a.x", "spool", false),
            ("c.x", "a.x", "spool", true),
        ] {
            check_decision(&policy, local, peer, service, exported);
        }
        let req = Request {
            local_pool: "a.x",
            peer_pool: "B.X",
            service: "spool",
            exported: true,
        };
        assert_eq!(evaluate(&policy, &req), Decision::Allow);
        fuzz_policy(text.as_bytes());
    }

    #[test]
    fn config_messages_stay_on_one_line_even_for_crafted_values() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let good = std::fs::read_to_string(root.join("policy/site1.toml")).unwrap();
        assert!(Config::parse(&good, Path::new("/x/site1.toml")).is_ok());
        let text = good.replacen("\"pool01.site1.example\"", "\"pool01\\u001b[2J\\nx\"", 1);
        let err = Config::parse(&text, Path::new("/x/site1.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#""pool01\u{1b}[2J\nx" is not a valid pool name"#),
            "{err}"
        );
        fuzz_config(text.as_bytes());
        let policy = "[[pair]]\npools = [\"a\\nb.x\", \"c.x\"]\nservices = [\"spool\"]\n";
        let err = Policy::parse(policy, Path::new("p.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(r#""a\nb.x" is not a valid pool name"#),
            "{err}"
        );
    }
}
