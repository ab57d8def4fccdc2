//! Unit tests of `lifecycle.rs`.

use super::super::{ca, cert, CaCommand, CertCommand, CheckArgs, IssueArgs};
use super::*;
use std::path::Path;

fn setup(dir: &Path) {
    ca(CaCommand::Init(super::super::CaInitArgs {
        dir: dir.join("ca"),
        name: "cli CA".into(),
        days: 30,
        encrypt: false,
        passphrase: Default::default(),
    }))
    .unwrap();
    for (pool, out) in [
        ("pool01.site1.example", "site1"),
        ("pool02.site2.example", "site2"),
    ] {
        cert(CertCommand::Issue(IssueArgs {
            ca_dir: dir.join("ca"),
            pool: pool.into(),
            out: dir.join(out),
            dns: vec![],
            ip: vec![],
            days: 10,
            passphrase: Default::default(),
        }))
        .unwrap();
    }
}

fn revoke_args(dir: &Path, file: &str) -> RevokeArgs {
    RevokeArgs {
        ca_dir: dir.join("ca"),
        cert: dir.join(file),
        reason: RevokeReason::KeyCompromise,
        next_update_days: 30,
        passphrase: Default::default(),
    }
}

#[test]
fn rotate_replaces_key_and_missing_cert_is_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let key_before = std::fs::read(dir.join("site1.key")).unwrap();
    std::fs::remove_file(dir.join("site1.key")).unwrap();
    let args = |cert: &str| RotateArgs {
        ca_dir: dir.join("ca"),
        cert: dir.join(cert),
        days: 5,
        passphrase: Default::default(),
    };
    cert(CertCommand::Rotate(args("site1"))).unwrap();
    assert_ne!(std::fs::read(dir.join("site1.key")).unwrap(), key_before);
    let failure = cert(CertCommand::Rotate(args("site9"))).unwrap_err();
    assert_eq!(failure.code(), 2);
    assert!(failure.error().to_string().contains("nothing to rotate"));
}

#[test]
fn revoke_is_idempotent_and_foreign_certificates_are_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    cert(CertCommand::Revoke(revoke_args(dir, "site1.crt"))).unwrap();
    cert(CertCommand::Revoke(revoke_args(dir, "site1.crt"))).unwrap();
    let crl = dir.join("ca").join(pki::CRL_FILE);
    assert_eq!(pki::revoked_serials(&crl).unwrap().len(), 1);
    // `ca init` wrote CRL 1 (empty); each revocation re-signed it.
    assert_eq!(pki::inspect_crl_file(&crl).unwrap()[0].number, 3);
    ca(CaCommand::Crl(CaCrlArgs {
        dir: dir.join("ca"),
        json: true,
        refresh: true,
        next_update_days: 7,
        passphrase: Default::default(),
    }))
    .unwrap();
    let refreshed = pki::inspect_crl_file(&crl).unwrap();
    assert_eq!((refreshed[0].number, refreshed[0].revoked.len()), (4, 1));

    let other = tempfile::tempdir().unwrap();
    setup(other.path());
    let mut args = revoke_args(dir, "site1.crt");
    args.cert = other.path().join("site2.crt");
    let failure = cert(CertCommand::Revoke(args)).unwrap_err();
    assert_eq!(failure.code(), 2);
    assert!(failure.error().to_string().contains("not issued by"));
}

#[test]
fn ca_rotate_twice_is_exit_2_and_bundle_passes_cert_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let rotate = |force| {
        ca(CaCommand::Rotate(CaRotateArgs {
            dir: dir.join("ca"),
            days: 60,
            name: None,
            force_drop_previous: force,
            passphrase: Default::default(),
        }))
    };
    rotate(false).unwrap();
    let bundle = dir.join("ca").join(pki::BUNDLE_FILE);
    cert(CertCommand::Check(CheckArgs {
        warn_days: 5,
        files: vec![bundle.clone()],
        json: false,
        ca: None,
    }))
    .unwrap();
    assert_eq!(
        pki::inspect_file(&bundle, OffsetDateTime::now_utc())
            .unwrap()
            .len(),
        2
    );
    let failure = rotate(false).unwrap_err();
    assert_eq!(failure.code(), 2);
    assert!(failure
        .error()
        .to_string()
        .contains("--force-drop-previous"));
    rotate(true).unwrap();
}
