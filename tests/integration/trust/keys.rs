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

    spec.tunnels[0].2 = vec!["10.1.0.0/16".into(), "0.0.0.0/0".into()];
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
    assert!(!stderr.contains("10.1.0.0/16"), "{stderr}");

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
