//! Every kind of broken input file given to the command line: exit 2 (1 for
//! a tampered audit log) with one line on stderr naming the file, never a
//! panic. The spool key file and spool files have no command of their own on
//! this branch yet, so their loaders are checked through the library.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{junk, run_for, text};
use crate::harness::*;

fn pairgate(args: &[&str]) -> Output {
    run_for(Command::new(bin()).args(args), 60)
}

/// Exit `code`, exactly one line on stderr naming `file`, never a panic.
fn assert_clear_refusal(out: &Output, code: i32, file: &Path, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{what}: panic:\n{err}");
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit code; stderr:\n{err}"
    );
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{what}: not one line:\n{err}"
    );
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(name),
        "{what}: message does not name {name}:\n{err}"
    );
}

/// The junk every kind of file is replaced with.
fn broken_contents() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("empty", Vec::new()),
        ("binary", junk(4096, 3)),
        (
            "text",
            b"this is not the file you are looking for\n".to_vec(),
        ),
        (
            "truncated PEM",
            b"-----BEGIN CERTIFICATE-----\nMIIB".to_vec(),
        ),
        (
            "bad base64",
            b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        (
            "bad DER",
            b"-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ("TOML-ish", b"[gateway]\npool = \"a\nb\"\n[[[".to_vec()),
    ]
}

fn write_0600(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A valid site on disk (nothing running): its folder, spec and config path.
fn site() -> (tempfile::TempDir, SiteSpec, PathBuf) {
    let (dir, _pki, spec) = site_on_disk();
    let config = dir.path().join("site1.toml");
    (dir, spec, config)
}

#[test]
fn every_broken_input_file_is_one_clear_line() {
    let (dir, mut spec, config) = site();
    let config_s = config.to_str().unwrap().to_owned();
    let ok = pairgate(&["check", "--config", &config_s]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));

    for (what, bytes) in broken_contents() {
        // Config.
        let bad = dir.path().join("broken-config.toml");
        write_0600(&bad, &bytes);
        let out = pairgate(&["check", "--config", bad.to_str().unwrap()]);
        assert_clear_refusal(&out, 2, &bad, &format!("config ({what})"));

        // Policy, alone and through a config.
        let bad = dir.path().join("broken-policy.toml");
        write_0600(&bad, &bytes);
        if !bytes.is_empty() {
            // (An empty policy is valid: it denies everything, with a warning.)
            let out = pairgate(&["policy", "check", bad.to_str().unwrap()]);
            assert_clear_refusal(&out, 2, &bad, &format!("policy check ({what})"));
        }
        let policy = dir.path().join("policy.toml");
        std::fs::copy(&bad, &policy).unwrap();
        let out = pairgate(&["check", "--config", &config_s]);
        assert_clear_refusal(&out, 2, &policy, &format!("policy via config ({what})"));
        std::fs::write(&policy, POLICY).unwrap();

        // Certificate: cert inspect, and tls.cert / tls.ca of a config.
        let bad = dir.path().join("broken.crt");
        write_0600(&bad, &bytes);
        let out = pairgate(&["cert", "inspect", bad.to_str().unwrap()]);
        assert_clear_refusal(&out, 2, &bad, &format!("cert inspect ({what})"));
        let good = spec.clone();
        spec.cert.0 = bad.clone();
        spec.write(dir.path()).unwrap();
        let out = pairgate(&["check", "--config", &config_s]);
        assert_clear_refusal(&out, 2, &bad, &format!("tls.cert ({what})"));
        spec = good.clone();
        spec.ca = bad.clone();
        spec.write(dir.path()).unwrap();
        let out = pairgate(&["check", "--config", &config_s]);
        assert_clear_refusal(&out, 2, &bad, &format!("tls.ca ({what})"));

        // Key (0600, so only its contents are wrong).
        let bad = dir.path().join("broken.key");
        write_0600(&bad, &bytes);
        spec = good.clone();
        spec.cert.1 = bad.clone();
        spec.write(dir.path()).unwrap();
        let out = pairgate(&["check", "--config", &config_s]);
        assert_clear_refusal(&out, 2, &bad, &format!("tls.key ({what})"));

        // CRL (an empty CRL file means "no revocations" and is accepted).
        if !bytes.is_empty() {
            let bad = dir.path().join("broken.crl");
            write_0600(&bad, &bytes);
            spec = good.clone();
            spec.crl = Some(bad.clone());
            spec.write(dir.path()).unwrap();
            let out = pairgate(&["check", "--config", &config_s]);
            assert_clear_refusal(&out, 2, &bad, &format!("tls.crl ({what})"));
        }
        spec = good;
        spec.write(dir.path()).unwrap();

        // Audit log: not a valid chain → exit 1 naming the line.
        if !bytes.is_empty() {
            let bad = dir.path().join("broken-audit.jsonl");
            write_0600(&bad, &bytes);
            let out = pairgate(&["audit", "verify", "--log", bad.to_str().unwrap()]);
            assert_clear_refusal(&out, 1, &bad, &format!("audit verify ({what})"));
            for cmd in ["summary", "query"] {
                let out = pairgate(&["audit", cmd, "--log", bad.to_str().unwrap()]);
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(!err.contains("panicked"), "audit {cmd} ({what}): {err}");
                assert!(
                    out.status.code().is_some_and(|c| c <= 2),
                    "audit {cmd} ({what}): {err}"
                );
            }
        }
    }
    // Missing files name themselves too.
    let missing = dir.path().join("missing.toml");
    let out = pairgate(&["check", "--config", missing.to_str().unwrap()]);
    assert_clear_refusal(&out, 2, &missing, "missing config");
    let out = pairgate(&["audit", "verify", "--log", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && err.contains("missing.toml"),
        "{err}"
    );
}

#[test]
fn a_tampered_audit_log_is_exit_1_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("site-audit.jsonl");
    synthetic_log(&log, 20, time::OffsetDateTime::now_utc()).unwrap();
    let ok = pairgate(&["audit", "verify", "--log", log.to_str().unwrap()]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let mut bytes = std::fs::read(&log).unwrap();
    let line7 = bytes
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'\n')
        .nth(5)
        .unwrap()
        .0
        + 10;
    bytes[line7] ^= 0x01;
    std::fs::write(&log, &bytes).unwrap();
    let out = pairgate(&["audit", "verify", "--log", log.to_str().unwrap()]);
    assert_clear_refusal(&out, 1, &log, "tampered audit log");
    // Line 7 still parses, so the chain breaks at line 8, whose `prev` no
    // longer matches.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":8:"),
        "{}",
        text(&out)
    );
}

/// The spool key file and spool files have no command of their own on this
/// branch yet; their loaders are checked through the library.
#[test]
fn broken_spool_key_and_spool_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes) in broken_contents() {
        let path = dir.path().join("site1-spool.key");
        write_0600(&path, &bytes);
        let err = pairgate::spool::MasterKey::load_key_file(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("site1-spool.key"), "{what}: {err}");
        assert!(!err.contains('\n'), "{what}: {err}");
        // The same bytes as a spool file: refused, never a panic.
        let key = pairgate::spool::MasterKey::from_bytes([7; 32]);
        let res = pairgate::spool::decrypt_stream(&bytes[..], std::io::sink(), &key);
        assert!(res.is_err(), "{what}: junk accepted as a spool file");
    }
    // Group-readable key: refused with the chmod to run.
    use std::os::unix::fs::PermissionsExt;
    let path = dir.path().join("open.key");
    std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = pairgate::spool::MasterKey::load_key_file(&path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
}
