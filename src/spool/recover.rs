//! Start-up recovery: finish or roll back what a crash interrupted, before
//! any task runs (the crash table is in [`crate::spool`]).

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::deliver::INBOX_TMP_PREFIX;
use super::error::SpoolError;
use super::intake::source_tag;
use super::store::{durable_remove, sync_dir, Area, Store, DELIVERED, TMP};
use super::stream::decrypt_stream;

/// Delivery markers older than this are pruned by default: a resend of an
/// id can only follow a sender crash between ACK and delete, i.e. minutes
/// later; an older copy is refused as a replay (`spool::replay`), so
/// markers are kept longer than `spool.max_age_days`
/// ([`Store::marker_ttl`]).
pub const MARKER_TTL: Duration = super::replay::MIN_MARKER_TTL;

/// What recovery did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Partial files removed from `tmp/` and the inbox.
    pub tmp_removed: usize,
    /// Outbox plaintexts deleted because their sealed copy verified.
    pub plaintexts_removed: usize,
    /// `incoming/` files dropped because they were already delivered.
    pub delivered_removed: usize,
    /// Unreadable files moved to quarantine.
    pub quarantined: usize,
    /// Files claimed from the outbox but not sealed, returned to it.
    pub claims_returned: usize,
}

/// Cleans up after a crash. Call once at start, before intake, the
/// forwarder, the receiver and delivery run.
///
/// # Errors
/// [`SpoolError::Io`] when a folder cannot be listed or cleaned.
pub fn recover(store: &Store) -> Result<Recovery, SpoolError> {
    let mut r = Recovery::default();
    let tmp = store.dirs.root.join(TMP);
    r.tmp_removed += remove_matching(&tmp, |_| true)?;
    r.tmp_removed += remove_matching(&store.dirs.inbox, |n| n.starts_with(INBOX_TMP_PREFIX))?;

    for entry in store.entries(Area::Incoming)? {
        if store.dirs.root.join(DELIVERED).join(&entry.id).exists() {
            store.forget(&entry.path);
            durable_remove(&entry.path)?;
            r.delivered_removed += 1;
        } else if entry.waiting_key.is_some() {
            // Sealed under a key we do not have: not damage. It waits.
        } else if let Err(reason) = &entry.meta {
            super::quarantine::quarantine(store, &entry.path, None, reason);
            r.quarantined += 1;
        }
    }

    for entry in store.entries(Area::Outgoing)? {
        let meta = match &entry.meta {
            Ok(m) => m,
            Err(_) if entry.waiting_key.is_some() => continue,
            Err(reason) => {
                super::quarantine::quarantine(store, &entry.path, None, reason);
                r.quarantined += 1;
                continue;
            }
        };
        let name = super::names::os_name(&super::names::delivery_name(meta));
        let Some(tag) = meta.extra.get("source") else {
            continue;
        };
        // The plaintext is in our claim folder (claimed, sealed, not yet
        // deleted) or, from a run before claims, in the outbox.
        let matches = |plain: &Path| {
            fs::symlink_metadata(plain)
                .is_ok_and(|stat| stat.is_file() && &source_tag(&stat) == tag)
        };
        let Some(plain) = [
            store.outbox_claims.path(&name),
            store.dirs.outbox.join(&name),
        ]
        .into_iter()
        .find(|p| matches(p)) else {
            continue;
        };
        // Crash between the rename into outgoing/ and the unlink of the
        // plaintext: keep whichever copy is sound.
        let verified = File::open(&entry.path)
            .map_err(|e| e.to_string())
            .and_then(|f| {
                decrypt_stream(
                    BufReader::new(f),
                    io::sink(),
                    &super::keys::key_for(store, &entry.path),
                )
                .map_err(|e| e.to_string())
            });
        match verified {
            Ok(_) => {
                durable_remove(&plain)?;
                r.plaintexts_removed += 1;
            }
            Err(reason) => {
                super::quarantine::quarantine(store, &entry.path, Some(meta), &reason);
                r.quarantined += 1;
            }
        }
    }
    // Claimed files not sealed (or whose copy was bad) go back to the outbox.
    r.claims_returned += store.outbox_claims.release_all()?;
    prune_markers(store);
    if r != Recovery::default() {
        tracing::info!(?r, "spool recovered after an interrupted run");
    }
    Ok(r)
}

pub(crate) fn prune_markers(store: &Store) {
    let dir = store.dirs.root.join(DELIVERED);
    let now = SystemTime::now();
    let ttl = store.marker_ttl();
    let Ok(rd) = fs::read_dir(&dir) else { return };
    for e in rd.filter_map(Result::ok) {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > ttl);
        if old {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Removes the regular files of `dir` whose name passes `pred`.
fn remove_matching(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<usize, SpoolError> {
    let mut n = 0;
    for e in fs::read_dir(dir)
        .map_err(SpoolError::io("list", dir))?
        .filter_map(Result::ok)
    {
        let name = e.file_name();
        if e.file_type().is_ok_and(|t| t.is_file()) && pred(&name.to_string_lossy()) {
            fs::remove_file(e.path()).map_err(SpoolError::io("delete", &e.path()))?;
            n += 1;
        }
    }
    if n > 0 {
        sync_dir(dir).map_err(SpoolError::io("sync", dir))?;
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::intake::Intake;
    use crate::spool::store::tests::{put, store};

    /// Simulates a crash after the rename into outgoing/ and before the
    /// plaintext was deleted, by putting the plaintext back (a hard link
    /// keeps inode and mtime, as if it had never been unlinked).
    #[test]
    fn crash_between_rename_and_unlink_deletes_the_plaintext_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let src = s.dirs.outbox.join("f.bak");
        fs::write(&src, b"payload").unwrap();
        let keep = dir.path().join("keep");
        fs::hard_link(&src, &keep).unwrap();
        assert!(matches!(
            crate::spool::intake::intake_file(&s, &src).unwrap(),
            Intake::Spooled(_)
        ));
        fs::hard_link(&keep, &src).unwrap();
        let r = recover(&s).unwrap();
        assert_eq!(r.plaintexts_removed, 1);
        assert!(!src.exists());
        assert_eq!(s.entries(Area::Outgoing).unwrap().len(), 1);

        // A new file dropped under the same name is not touched.
        fs::write(&src, b"another payload").unwrap();
        assert_eq!(recover(&s).unwrap().plaintexts_removed, 0);
        assert!(src.exists());
    }

    #[test]
    fn sealed_copy_that_does_not_verify_is_quarantined_and_plaintext_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let src = s.dirs.outbox.join("g");
        fs::write(&src, vec![3u8; 200_000]).unwrap();
        let keep = dir.path().join("keep");
        fs::hard_link(&src, &keep).unwrap();
        let Intake::Spooled(id) = crate::spool::intake::intake_file(&s, &src).unwrap() else {
            panic!()
        };
        fs::hard_link(&keep, &src).unwrap();
        let sealed = s.path(Area::Outgoing, &id);
        let len = fs::metadata(&sealed).unwrap().len();
        File::options()
            .write(true)
            .open(&sealed)
            .unwrap()
            .set_len(len - 100)
            .unwrap();
        let r = recover(&s).unwrap();
        assert_eq!((r.quarantined, r.plaintexts_removed), (1, 0));
        assert!(src.exists());
    }

    #[test]
    fn tmp_leftovers_and_already_delivered_incoming_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        fs::write(s.dirs.root.join(TMP).join("x.part"), b"half").unwrap();
        fs::write(s.dirs.inbox.join(".pg-abc.tmp"), b"half").unwrap();
        fs::write(s.dirs.inbox.join(".consumer-tmp"), b"theirs").unwrap();
        let done = put(&s, Area::Incoming, "d", b"d");
        s.mark_delivered(&done.id).unwrap();
        let waiting = put(&s, Area::Incoming, "w", b"w");
        fs::write(s.path(Area::Incoming, "junk"), b"junk").unwrap();
        let r = recover(&s).unwrap();
        assert_eq!(r.tmp_removed, 2);
        assert_eq!(r.delivered_removed, 1);
        assert_eq!(r.quarantined, 1);
        assert!(s.dirs.inbox.join(".consumer-tmp").exists());
        assert!(s.path(Area::Incoming, &waiting.id).exists());
        assert_eq!(recover(&s).unwrap(), Recovery::default());
    }

    /// Crash after a claim: a claimed file with no sealed copy goes back to
    /// the outbox; one whose sealed copy is in `outgoing/` is deleted.
    #[test]
    fn claimed_files_are_returned_or_deleted_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        // Claimed, then the crash (nothing sealed).
        fs::write(s.dirs.outbox.join("a.zip"), b"aaa").unwrap();
        s.outbox_claims
            .claim(std::ffi::OsStr::new("a.zip"))
            .unwrap()
            .unwrap();
        // Claimed, sealed into outgoing/, the crash before the unlink.
        let src = s.dirs.outbox.join("b.zip");
        fs::write(&src, b"bbb").unwrap();
        let keep = dir.path().join("keep");
        fs::hard_link(&src, &keep).unwrap();
        assert!(matches!(
            crate::spool::intake::intake_file(&s, &src).unwrap(),
            Intake::Spooled(_)
        ));
        fs::hard_link(&keep, s.outbox_claims.path(std::ffi::OsStr::new("b.zip"))).unwrap();

        let r = recover(&s).unwrap();
        assert_eq!((r.claims_returned, r.plaintexts_removed), (1, 1), "{r:?}");
        assert_eq!(fs::read(s.dirs.outbox.join("a.zip")).unwrap(), b"aaa");
        assert!(!src.exists());
        assert!(s.outbox_claims.held().unwrap().is_empty());
        assert_eq!(s.entries(Area::Outgoing).unwrap().len(), 1);
    }
}
