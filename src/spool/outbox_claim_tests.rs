//! Unit tests of [`super`] (outbox_claim.rs): the outbox claim folder.

#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn one_claim_wins_and_release_never_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    for sub in ["outbox", "a", "b"] {
        fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    let a = OutboxClaims::open(&dir.path().join("a"), &outbox).unwrap();
    let b = OutboxClaims::open(&dir.path().join("b"), &outbox).unwrap();
    assert_ne!(a.dir(), b.dir(), "each spool has its own claim folder");
    let again = OutboxClaims::open(&dir.path().join("a"), &outbox).unwrap();
    assert_eq!(a.dir(), again.dir(), "the instance id is kept");

    fs::write(outbox.join("f.zip"), b"v1").unwrap();
    let name = OsStr::new("f.zip");
    assert!(a.claim(name).unwrap().is_some());
    assert!(b.claim(name).unwrap().is_none(), "the second claim loses");
    assert!(!outbox.join("f.zip").exists());

    // A new file of the name arrived: the claimed one is not put over it.
    fs::write(outbox.join("f.zip"), b"v2").unwrap();
    assert!(!a.release(name).unwrap());
    assert_eq!(fs::read(outbox.join("f.zip")).unwrap(), b"v2");
    assert_eq!(a.held().unwrap(), vec![OsString::from("f.zip")]);
    fs::remove_file(outbox.join("f.zip")).unwrap();
    assert_eq!(a.release_all().unwrap(), 1);
    assert_eq!(fs::read(outbox.join("f.zip")).unwrap(), b"v1");
    assert!(a.held().unwrap().is_empty());
}
