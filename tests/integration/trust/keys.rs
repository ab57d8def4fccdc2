//! Keys at rest: owner and folder checks on every private key the gateway
//! reads, and `check`'s warning on tunnels open wider than a private range.

use std::os::unix::fs::PermissionsExt;

use super::{json_of, pairgate};
use crate::harness::*;

fn check(config: &std::path::Path) -> std::process::Output {
    pairgate(&["check", "--config", config.to_str().unwrap()])
}

#[test]
fn key_in_a_folder_others_may_write_or_of_another_user_is_refused() {
    let (dir, _pki, spec) = site_on_disk();
    let config = dir.path().join("site1.toml");
    let out = check(&config);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let key_dir = spec.cert.1.parent().unwrap().to_path_buf();
    let mode = std::fs::metadata(&key_dir).unwrap().permissions().mode();
    std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let out = check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod go-w {}", key_dir.display())),
        "{stderr}"
    );
    std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(mode)).unwrap();

    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid()
    });
    if uid.ok() != Some(0) {
        eprintln!("skipped the owner half: giving a key to another user needs root");
        return;
    }
    std::os::unix::fs::chown(&spec.cert.1, Some(4242), None).unwrap();
    let out = check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("belongs to uid 4242"), "{stderr}");
    assert!(
        stderr.contains(&format!("chown 0 {}", spec.cert.1.display())),
        "{stderr}"
    );
}

#[test]
fn check_warns_loudly_on_allow_sources_wider_than_a_private_range() {
    let (dir, _pki, mut spec) = site_on_disk();
    let out = check(&spec.write(dir.path()).unwrap());
    assert_eq!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("WARNING"));

    spec.tunnels[0].2 = vec!["127.1.0.0/16".into(), "0.0.0.0/0".into()];
    let config = spec.write(dir.path()).unwrap();
    let out = check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a warning, not an error: {stderr}"
    );
    assert!(
        stderr.contains(
            "WARNING: tunnel[0].allow_sources (backup-smb): 0.0.0.0/0 admits every address"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("127.1.0.0/16"), "{stderr}");

    spec.tunnels[0].2 = vec!["203.0.113.0/24".into()];
    let config = spec.write(dir.path()).unwrap();
    let out = pairgate(&["check", "--json", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let warnings = json_of(&out)["warnings"].clone();
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .contains("203.0.113.0/24 is not inside a private range"),
        "{warnings}"
    );
}

fn pairgate_env(args: &[&str], passphrase: Option<&str>) -> std::process::Output {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args)
        .env_remove("PAIRGATE_CA_PASSPHRASE")
        .stdin(std::process::Stdio::null());
    if let Some(p) = passphrase {
        cmd.env("PAIRGATE_CA_PASSPHRASE", p);
    }
    cmd.output().unwrap()
}

#[test]
fn an_encrypted_ca_key_is_useless_without_its_passphrase_and_works_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let ca_s = ca.to_str().unwrap();
    let pass = dir.path().join("ca.pass");
    pairgate::pki::write_secret_file(&pass, b"correct horse battery\n").unwrap();
    let pass_s = pass.to_str().unwrap();

    let out = pairgate_env(
        &[
            "ca",
            "init",
            "--dir",
            ca_s,
            "--encrypt",
            "--passphrase-file",
            pass_s,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("encrypted under your passphrase"));

    // At rest: an encrypted PKCS#8 key, not a plain one.
    let key = std::fs::read_to_string(ca.join("ca.key")).unwrap();
    assert!(
        key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{key}"
    );
    assert!(!key.contains("BEGIN PRIVATE KEY"));
    assert!(rcgen::KeyPair::from_pem(&key).is_err());
    assert!(pem::parse(&key)
        .map(|p| pkcs8::PrivateKeyInfo::try_from(p.contents()).is_err())
        .unwrap());
    // The standard format: OpenSSL opens it with the passphrase, not without.
    let openssl = |passin: &str| {
        std::process::Command::new("openssl")
            .args(["pkey", "-noout", "-in", ca.join("ca.key").to_str().unwrap()])
            .args(["-passin", passin])
            .output()
    };
    match openssl("pass:correct horse battery") {
        Ok(o) => {
            assert!(o.status.success(), "openssl: {o:?}");
            assert!(!openssl("pass:wrong passphrase").unwrap().status.success());
        }
        Err(e) => eprintln!("skipped the OpenSSL cross-check: {e}"),
    }

    // Every command that uses the key needs the passphrase…
    let site1 = dir.path().join("site1");
    let site1_s = site1.to_str().unwrap();
    let issue = [
        "cert", "issue", "--ca-dir", ca_s, "--pool", POOL1, "--out", site1_s,
    ];
    let out = pairgate_env(&issue, None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is encrypted") && stderr.contains("--passphrase-file"),
        "{stderr}"
    );
    assert!(!site1.with_extension("crt").exists());
    let out = pairgate_env(&issue, Some("not the passphrase"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not open"), "{stderr}");

    // …and works with it: from the environment, or from the file.
    let out = pairgate_env(&issue, Some("correct horse battery"));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let crt = format!("{site1_s}.crt");
    let ca_crt = ca.join("ca.crt");
    let out = pairgate_env(
        &[
            "cert",
            "check",
            "--warn-days",
            "5",
            "--ca",
            ca_crt.to_str().unwrap(),
            &crt,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for args in [
        vec!["cert", "revoke", "--ca-dir", ca_s, "--cert", &crt],
        vec!["ca", "crl", "--dir", ca_s, "--refresh"],
        vec!["ca", "rotate", "--dir", ca_s],
    ] {
        let out = pairgate_env(&args, None);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} without passphrase: {out:?}"
        );
        let mut with_file = args.clone();
        with_file.extend(["--passphrase-file", pass_s]);
        let out = pairgate_env(&with_file, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
    }
    // The rotated CA's key and the previous one stay encrypted.
    for key in [ca.join("ca.key"), ca.join("previous/ca.key")] {
        let text = std::fs::read_to_string(&key).unwrap();
        assert!(
            text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
            "{}",
            key.display()
        );
    }
    let out = pairgate_env(&["ca", "crl", "--dir", ca_s, "--json"], None);
    assert_eq!(json_of(&out)["crls"].as_array().map(Vec::len), Some(2));
}
