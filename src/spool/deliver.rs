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
//! `<name>.<id>` and the audit line says so.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::error::{SpoolCodecError, SpoolError};
use super::intake::finish_file;
use super::metadata::Metadata;
use super::store::{age_ms, durable_remove, sync_dir, Area, Entry, Store};
use super::stream::{decrypt_stream, digest_stream};
use crate::audit::{Event, SpoolFile};

/// Prefix of delivery temp files in the inbox.
pub const INBOX_TMP_PREFIX: &str = ".pg-";

impl Store {
    /// Delivers every file waiting in `incoming/`, oldest first; bad ones
    /// are quarantined. Returns how many were delivered.
    ///
    /// # Errors
    /// [`SpoolError::Io`] when `incoming/` cannot be listed; a file that
    /// fails for an I/O reason stays for the next round.
    pub fn deliver_all(&self) -> Result<usize, SpoolError> {
        let mut done = 0;
        for entry in self.entries(Area::Incoming)? {
            match self.deliver_one(&entry) {
                Ok(true) => done += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(id = %entry.id, error = %e, "delivery failed; will retry"),
            }
        }
        Ok(done)
    }

    /// Delivers one entry. `Ok(false)` if it was quarantined.
    ///
    /// # Errors
    /// [`SpoolError::Io`] (the entry stays in `incoming/`).
    pub fn deliver_one(&self, entry: &Entry) -> Result<bool, SpoolError> {
        let meta = match &entry.meta {
            Ok(m) => m.clone(),
            Err(reason) => {
                self.quarantine(&entry.path, None, reason);
                return Ok(false);
            }
        };
        let tmp = self
            .inbox
            .join(format!("{INBOX_TMP_PREFIX}{}.tmp", meta.id));
        match self.decrypt_to(&entry.path, &tmp) {
            Ok(()) => {}
            Err(SpoolError::Codec { source, .. })
                if !matches!(source, SpoolCodecError::Io { .. }) =>
            {
                let _ = fs::remove_file(&tmp);
                self.quarantine(&entry.path, Some(&meta), &source.to_string());
                return Ok(false);
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        let placed = self.place(&tmp, &meta);
        let _ = fs::remove_file(&tmp);
        let placed = placed?;
        sync_dir(&self.inbox).map_err(SpoolError::io("sync", &self.inbox))?;
        self.mark_delivered(&meta.id)?;
        self.forget(&entry.path);
        durable_remove(&entry.path)?;
        self.counters.delivered.fetch_add(1, Ordering::Relaxed);
        let renamed = placed.file_name().and_then(|n| n.to_str()) != Some(meta.name.as_str());
        tracing::info!(id = %meta.id, size = meta.size, "delivered");
        self.audit(Event::SpoolDelivered(SpoolFile {
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
            path: renamed.then(|| placed.display().to_string()),
        }));
        Ok(true)
    }

    fn decrypt_to(&self, sealed: &Path, tmp: &Path) -> Result<(), SpoolError> {
        let src = File::open(sealed).map_err(SpoolError::io("open", sealed))?;
        let out = File::create(tmp).map_err(SpoolError::io("create", tmp))?;
        let mut w = BufWriter::with_capacity(256 * 1024, out);
        decrypt_stream(
            BufReader::with_capacity(256 * 1024, src),
            &mut w,
            self.key_for(sealed),
        )
        .map_err(SpoolError::codec(sealed))?;
        finish_file(w, tmp).map(drop)
    }

    /// Links `tmp` to the first free name (`name`, `name.<id>`,
    /// `name.<id>.2`, …), or finds that an identical copy is there already.
    fn place(&self, tmp: &Path, meta: &Metadata) -> Result<PathBuf, SpoolError> {
        for n in 0..100 {
            let name = match n {
                0 => meta.name.clone(),
                1 => format!("{}.{}", meta.name, meta.id),
                n => format!("{}.{}.{n}", meta.name, meta.id),
            };
            let dest = self.inbox.join(name);
            match fs::hard_link(tmp, &dest) {
                Ok(()) => return Ok(dest),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if same_content(&dest, meta) {
                        return Ok(dest);
                    }
                }
                Err(_) if !dest.exists() => {
                    // A filesystem without hard links: rename (the check
                    // above narrows the overwrite window to a consumer race).
                    fs::rename(tmp, &dest).map_err(SpoolError::io("rename into", &dest))?;
                    return Ok(dest);
                }
                Err(e) => return Err(SpoolError::io("link into", &dest)(e)),
            }
        }
        Err(SpoolError::io("find a free name in", &self.inbox)(
            io::Error::other("100 names taken"),
        ))
    }
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
        assert_eq!(s.deliver_all().unwrap(), 1);
        assert_eq!(fs::read(s.inbox.join("report.zip")).unwrap(), b"first");
        assert!(s.is_known(&a.id));
        assert!(!s.path(Area::Incoming, &a.id).exists());

        // Same name, different content: delivered beside it, audited path.
        let b = put(&s, Area::Incoming, "report.zip", b"second");
        assert_eq!(s.deliver_all().unwrap(), 1);
        assert_eq!(fs::read(s.inbox.join("report.zip")).unwrap(), b"first");
        let other = s.inbox.join(format!("report.zip.{}", b.id));
        assert_eq!(fs::read(other).unwrap(), b"second");

        // Crash after linking, before the marker: redelivery finds the
        // identical file and does not make a second copy.
        let c = put(&s, Area::Incoming, "same.txt", b"x");
        fs::write(s.inbox.join("same.txt"), b"x").unwrap();
        assert_eq!(s.deliver_all().unwrap(), 1);
        let names: Vec<_> = fs::read_dir(&s.inbox).unwrap().collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(s.is_known(&c.id));
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
        assert_eq!(s.deliver_all().unwrap(), 1);
        assert!(s.inbox.join("good").exists());
        assert!(!s.inbox.join("bad").exists());
        assert!(s.is_known(&good.id));
        assert_eq!(fs::read_dir(s.root.join(INCOMING)).unwrap().count(), 0);
        assert_eq!(s.entries(Area::Quarantine).unwrap().len(), 1);
        let leftovers: Vec<_> = fs::read_dir(&s.inbox)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty());
    }
}
