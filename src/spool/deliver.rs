//! Delivery: `incoming/<id>.pgs` → the inbox, atomically, never over a
//! different file, exactly once.
//!
//! Order: decrypt into `inbox/.pg-<id>.tmp` (the leading dot tells the
//! consumer to ignore it), fsync; hard-link it to its final name (a link
//! fails instead of replacing an existing file, so a file the consumer put
//! there is never overwritten), unlink the tmp name, fsync the inbox; write
//! the `delivered/<id>` marker durably; delete `incoming/<id>.pgs`.
//!
//! If the final name is taken by a file with the same SHA-256 the earlier
//! delivery already happened (a crash before the marker): nothing is
//! written twice. If it is taken by a different file, the new one arrives as
//! `<name>.<id>` (shortened when too long, see [`super::names`]) and the
//! audit line says so. A name that is not UTF-8 is restored from its raw
//! bytes.
//!
//! A file the inbox cannot take (full, unwritable) is set aside with its
//! own backoff while the others are delivered; the condition is audited
//! once (`spool_condition` `inbox_failing`) and once when it clears.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::conditions::{Audited, Condition, Report, Subject};
use super::error::{SpoolCodecError, SpoolError};
use super::hold::Holds;
use super::intake::finish_file;
use super::metadata::Metadata;
use super::names::{self, NAME_MAX, NAME_MAX_SMALL};
use super::store::{age_ms, durable_remove, sync_dir, Area, Entry, Store};
use super::stream::{decrypt_stream, digest_stream};
use crate::audit::{Event, SpoolFile};

/// First retry of a file the inbox could not take; doubles up to the cap.
pub const RETRY_START: Duration = Duration::from_secs(2);
pub const RETRY_CAP: Duration = Duration::from_secs(120);

/// Prefix of delivery temp files in the inbox.
pub const INBOX_TMP_PREFIX: &str = ".pg-";

/// Delivers every file waiting in `incoming/`, oldest first; bad ones
/// are quarantined. Returns how many were delivered.
///
/// # Errors
/// [`SpoolError::Io`] when `incoming/` cannot be listed; a file that
/// fails for an I/O reason stays for the next round.
pub fn deliver_all(store: &Store) -> Result<usize, SpoolError> {
    deliver_due(store, &mut Holds::default(), Instant::now())
}

/// Delivers the files of `incoming/` that are not set aside in `holds`;
/// a file that fails is set aside (reported once) and the others go on.
/// Files waiting for a key are left alone and reported.
///
/// # Errors
/// [`SpoolError::Io`] when `incoming/` cannot be listed.
pub fn deliver_due(
    store: &Store,
    holds: &mut Holds<String>,
    now: Instant,
) -> Result<usize, SpoolError> {
    let entries = store.entries(Area::Incoming)?;
    super::keys::note_waiting(store, Area::Incoming, &entries);
    let ids: std::collections::HashSet<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    holds.retain(|id| ids.contains(id.as_str()));
    let present: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    store
        .conditions
        .clear_others(Condition::InboxFailing, &present);
    let mut done = 0;
    for entry in entries {
        if entry.waiting_key.is_some() || holds.is_held(&entry.id, now) {
            continue;
        }
        match deliver_one(store, &entry) {
            Ok(true) => {
                done += 1;
                holds.release(&entry.id);
                store.conditions.clear(Condition::InboxFailing, &entry.id);
            }
            Ok(false) => {}
            Err(e) => {
                let (first, _) = holds.hold(&entry.id, RETRY_START, RETRY_CAP, now);
                if !first {
                    tracing::debug!(id = %entry.id, error = %e, "delivery failed again");
                }
                let meta = entry.meta.as_ref().ok();
                store.conditions.raise(Report {
                    condition: Condition::InboxFailing,
                    key: entry.id.clone(),
                    subject: Subject {
                        name: meta.map(|m| m.name.clone()),
                        id: Some(entry.id.clone()),
                        size: meta.map(|m| m.size),
                        key_id: None,
                    },
                    files: 1,
                    detail: format!(
                        "cannot place it in the inbox {}: {e}; it waits in the spool and is \
                         retried with backoff (the other files go on)",
                        store.dirs.inbox.display()
                    ),
                    audited: Audited::Condition,
                });
            }
        }
    }
    Ok(done)
}

/// Delivers one entry. `Ok(false)` if it was quarantined.
///
/// # Errors
/// [`SpoolError::Io`] (the entry stays in `incoming/`).
pub fn deliver_one(store: &Store, entry: &Entry) -> Result<bool, SpoolError> {
    if entry.waiting_key.is_some() {
        return Ok(false);
    }
    let meta = match &entry.meta {
        Ok(m) => m.clone(),
        Err(reason) => {
            super::quarantine::quarantine(store, &entry.path, None, reason);
            return Ok(false);
        }
    };
    let tmp = store
        .dirs
        .inbox
        .join(format!("{INBOX_TMP_PREFIX}{}.tmp", meta.id));
    match decrypt_to(store, &entry.path, &tmp) {
        Ok(()) => {}
        Err(SpoolError::Codec { source, .. }) if !matches!(source, SpoolCodecError::Io { .. }) => {
            let _ = fs::remove_file(&tmp);
            super::quarantine::quarantine(store, &entry.path, Some(&meta), &source.to_string());
            return Ok(false);
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    let placed = place(store, &tmp, &meta);
    let _ = fs::remove_file(&tmp);
    let placed = placed?;
    sync_dir(&store.dirs.inbox).map_err(SpoolError::io("sync", &store.dirs.inbox))?;
    store.mark_delivered(&meta.id)?;
    store.forget(&entry.path);
    durable_remove(&entry.path)?;
    store.counters.delivered.fetch_add(1, Ordering::Relaxed);
    let wanted = names::delivery_name(&meta);
    let renamed = placed.file_name().map(names::bytes_of) != Some(wanted);
    tracing::info!(id = %meta.id, size = meta.size, "delivered");
    store.audit(Event::SpoolDelivered(SpoolFile {
        id: meta.id.clone(),
        name: meta.name.clone(),
        size: meta.size,
        peer_pool: meta
            .extra
            .get("from_pool")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        age_ms: Some(age_ms(&meta)),
        reason: renamed.then(|| "name taken by a different file".to_owned()),
        path: renamed.then(|| placed.to_string_lossy().into_owned()),
    }));
    Ok(true)
}

pub(crate) fn decrypt_to(store: &Store, sealed: &Path, tmp: &Path) -> Result<(), SpoolError> {
    let src = File::open(sealed).map_err(SpoolError::io("open", sealed))?;
    let out = File::create(tmp).map_err(SpoolError::io("create", tmp))?;
    let mut w = BufWriter::with_capacity(256 * 1024, out);
    decrypt_stream(
        BufReader::with_capacity(256 * 1024, src),
        &mut w,
        &super::keys::key_for(store, sealed),
    )
    .map_err(SpoolError::codec(sealed))?;
    finish_file(w, tmp).map(drop)
}

/// Links `tmp` to the first free name (`name`, `name.<id>`,
/// `name.<id>.2`, …, shortened to the filesystem's limit), or finds
/// that an identical copy is there already.
pub(crate) fn place(store: &Store, tmp: &Path, meta: &Metadata) -> Result<PathBuf, SpoolError> {
    let wanted = names::delivery_name(meta);
    let mut limit = NAME_MAX;
    let mut n = 0;
    while n < 100 {
        let dest = store
            .dirs
            .inbox
            .join(names::candidate(&wanted, &meta.id, n, limit));
        match fs::hard_link(tmp, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if same_content(&dest, meta) {
                    return Ok(dest);
                }
            }
            // The inbox's filesystem takes shorter names (eCryptfs):
            // the same candidate, cut to the smaller limit.
            Err(e) if e.raw_os_error() == Some(36) && limit > NAME_MAX_SMALL => {
                limit = NAME_MAX_SMALL;
                continue;
            }
            Err(_) if !dest.exists() => {
                // A filesystem without hard links: rename (the check
                // above narrows the overwrite window to a consumer race).
                fs::rename(tmp, &dest).map_err(SpoolError::io("rename into", &dest))?;
                return Ok(dest);
            }
            Err(e) => return Err(SpoolError::io("link into", &dest)(e)),
        }
        n += 1;
    }
    Err(SpoolError::io("find a free name in", &store.dirs.inbox)(
        io::Error::other("100 names taken"),
    ))
}

fn same_content(path: &Path, meta: &Metadata) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.metadata() {
        Ok(m) if m.len() == meta.size => {}
        _ => return false,
    }
    digest_stream(BufReader::new(file)).is_ok_and(|(_, sha)| sha == meta.sha256)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::store::tests::{put, store};
    use crate::spool::store::INCOMING;

    #[test]
    fn delivers_atomically_dedupes_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = put(&s, Area::Incoming, "report.zip", b"first");
        assert_eq!(deliver_all(&s).unwrap(), 1);
        assert_eq!(fs::read(s.dirs.inbox.join("report.zip")).unwrap(), b"first");
        assert!(s.is_known(&a.id));
        assert!(!s.path(Area::Incoming, &a.id).exists());

        // Same name, different content: delivered beside it, audited path.
        let b = put(&s, Area::Incoming, "report.zip", b"second");
        assert_eq!(deliver_all(&s).unwrap(), 1);
        assert_eq!(fs::read(s.dirs.inbox.join("report.zip")).unwrap(), b"first");
        let other = s.dirs.inbox.join(format!("report.zip.{}", b.id));
        assert_eq!(fs::read(other).unwrap(), b"second");

        // Crash after linking, before the marker: redelivery finds the
        // identical file and does not make a second copy.
        let c = put(&s, Area::Incoming, "same.txt", b"x");
        fs::write(s.dirs.inbox.join("same.txt"), b"x").unwrap();
        assert_eq!(deliver_all(&s).unwrap(), 1);
        let names: Vec<_> = fs::read_dir(&s.dirs.inbox).unwrap().collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(s.is_known(&c.id));
    }

    #[test]
    fn a_long_name_that_clashes_is_shortened_keeping_extension_and_id() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let long = format!("{}.bak", "n".repeat(246));
        put(&s, Area::Incoming, &long, b"first");
        assert_eq!(deliver_all(&s).unwrap(), 1);
        let b = put(&s, Area::Incoming, &long, b"second");
        assert_eq!(deliver_all(&s).unwrap(), 1, "not stuck in incoming/");
        assert_eq!(fs::read(s.dirs.inbox.join(&long)).unwrap(), b"first");
        let names: Vec<String> = fs::read_dir(&s.dirs.inbox)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != &long)
            .collect();
        assert_eq!(names.len(), 1);
        assert!(names[0].len() <= 255);
        assert!(names[0].ends_with(&format!(".{}.bak", b.id)), "{names:?}");
        assert_eq!(fs::read(s.dirs.inbox.join(&names[0])).unwrap(), b"second");
    }

    #[test]
    fn a_file_the_inbox_cannot_take_is_set_aside_and_the_others_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = put(&s, Area::Incoming, "a.txt", b"a");
        // A directory squats the name and the clash names cannot be linked
        // either: the inbox cannot take "a.txt" (as when it is full).
        fs::create_dir(s.dirs.inbox.join("a.txt")).unwrap();
        for n in 1..100 {
            let name = names::candidate(b"a.txt", &a.id, n, NAME_MAX);
            fs::create_dir(s.dirs.inbox.join(name)).unwrap();
        }
        let b = put(&s, Area::Incoming, "b.txt", b"b");
        let mut holds = Holds::default();
        let t0 = Instant::now();
        assert_eq!(deliver_due(&s, &mut holds, t0).unwrap(), 1);
        assert!(s.dirs.inbox.join("b.txt").is_file());
        assert!(!s.path(Area::Incoming, &b.id).exists(), "b delivered");
        assert!(s.path(Area::Incoming, &a.id).exists(), "a waits");
        assert!(holds.is_held(&a.id, t0));
        let held = s.conditions.snapshot();
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].condition, Condition::InboxFailing);
        // Held: no retry before its time, however often we look.
        for _ in 0..5 {
            assert_eq!(deliver_due(&s, &mut holds, t0).unwrap(), 0);
        }
        fs::remove_dir(s.dirs.inbox.join("a.txt")).unwrap();
        assert_eq!(deliver_due(&s, &mut holds, t0 + RETRY_START).unwrap(), 1);
        assert!(s.conditions.snapshot().is_empty());
        assert_eq!(fs::read(s.dirs.inbox.join("a.txt")).unwrap(), b"a");
    }

    #[test]
    fn tampered_incoming_file_is_quarantined_and_others_still_go() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let bad = put(&s, Area::Incoming, "bad", &[5; 100_000]);
        let good = put(&s, Area::Incoming, "good", b"fine");
        let path = s.path(Area::Incoming, &bad.id);
        let mut bytes = fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 1;
        fs::write(&path, bytes).unwrap();
        s.forget(&path);
        assert_eq!(deliver_all(&s).unwrap(), 1);
        assert!(s.dirs.inbox.join("good").exists());
        assert!(!s.dirs.inbox.join("bad").exists());
        assert!(s.is_known(&good.id));
        assert_eq!(fs::read_dir(s.dirs.root.join(INCOMING)).unwrap().count(), 0);
        assert_eq!(s.entries(Area::Quarantine).unwrap().len(), 1);
        let leftovers: Vec<_> = fs::read_dir(&s.dirs.inbox)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }
}
