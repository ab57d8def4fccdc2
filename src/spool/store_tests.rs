//! Unit tests of [`super`] (store.rs), and the helpers other spool tests
//! share: a store in a temp folder, and sealing a file straight into an area.

#![allow(clippy::unwrap_used)]

use super::*;
use crate::spool::stream::encrypt_seekable;
use std::sync::atomic::Ordering;

pub(crate) fn store(dir: &Path) -> Store {
    Store::new(
        &dir.join("spool"),
        MasterKey::from_bytes([7; 32]),
        &dir.join("outbox"),
        &dir.join("inbox"),
        None,
        None,
    )
    .unwrap()
}

/// Seals `data` as `name` straight into `area`; returns the metadata.
pub(crate) fn put(store: &Store, area: Area, name: &str, data: &[u8]) -> Metadata {
    let tmp = store.tmp_path("test");
    let meta = encrypt_seekable(
        io::Cursor::new(data),
        File::create(&tmp).unwrap(),
        &store.key,
        name,
    )
    .unwrap();
    durable_rename(&tmp, &store.path(area, &meta.id)).unwrap();
    meta
}

#[test]
fn entries_depth_and_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let a = put(&s, Area::Outgoing, "a", b"hello");
    put(&s, Area::Outgoing, "b", &[1; 70_000]);
    put(&s, Area::Incoming, "c", b"x");
    let out = s.entries(Area::Outgoing).unwrap();
    assert_eq!(out.len(), 2);
    let d = s.depth();
    assert_eq!((d.outbound.files, d.outbound.bytes), (2, 70_005));
    assert_eq!((d.inbound.files, d.inbound.bytes), (1, 1));
    assert!(d.outbound.oldest_since.is_some());
    assert!(s.used_bytes() > 70_006);

    // A garbage file sorts first, with its problem; quarantine moves it.
    let bad = s.dirs.root.join(OUTGOING).join("junk.pgs");
    fs::write(&bad, [b'x'; 80]).unwrap();
    let out = s.entries(Area::Outgoing).unwrap();
    assert_eq!(out[0].id, "junk");
    assert!(out[0].meta.as_ref().unwrap_err().contains("magic"));
    crate::spool::quarantine::quarantine(&s, &bad, None, "bad magic");
    assert!(!bad.exists());
    assert!(s.dirs.root.join(QUARANTINE).join("junk.pgs").exists());
    assert_eq!(s.entries(Area::Outgoing).unwrap().len(), 2);
    assert_eq!(s.entries(Area::Quarantine).unwrap().len(), 1);
    assert_eq!(s.counters.quarantined.load(Ordering::Relaxed), 1);

    assert!(!s.is_known(&a.id));
    s.mark_delivered(&a.id).unwrap();
    assert!(s.is_known(&a.id));
}
