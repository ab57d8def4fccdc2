//! Unit tests of `forward.rs`.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::spool::store::tests::{put, store};

#[tokio::test]
async fn an_outgoing_folder_that_cannot_be_listed_is_an_error_not_an_empty_spool() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    put(&s, Area::Outgoing, "a", b"hello");
    let spool = Spool::from_store(s);
    assert_eq!(spool.sendable().await.unwrap().len(), 1);
    let outgoing = spool.store.root().join(Area::Outgoing.dir());
    std::fs::remove_dir_all(&outgoing).unwrap();
    std::fs::write(&outgoing, b"not a folder").unwrap();
    let err = spool.sendable().await.unwrap_err();
    assert!(matches!(err, SpoolError::Io { .. }), "{err}");
    assert!(err.to_string().contains("outgoing"), "{err}");
}
