//! Group commit of outbox intake: a batch of files sealed into `tmp/` is
//! made durable together, then its plaintexts are deleted together.
//!
//! Durability needs every sealed copy on disk before its plaintext is
//! deleted — not one fsync per file in sequence. Intake seals what the
//! outbox holds now (at most [`MAX_BATCH_FILES`] files or
//! [`MAX_BATCH_BYTES`] of plaintext, so the first file of a large backlog
//! is not held back by the last), then ([`Store::commit_batch`]):
//!
//! 1. fdatasync each sealed copy. The copies were all written first, so the
//!    kernel writes them back together and the file system commits their
//!    allocations in one journal transaction: the first fdatasync waits for
//!    the disk, the others find little or nothing left to do;
//! 2. re-stat each source; still the version that was read? mark its id
//!    *pending* (the forwarder skips it) and rename its copy into
//!    `outgoing/`; fsync `outgoing/` once;
//! 3. re-stat each source again: unchanged → unlink the plaintext; changed
//!    (a writer came back) → remove the sealed copy, the file settles again;
//! 4. fsync the outbox once (and `outgoing/` again if a copy was removed),
//!    then the ids stop being pending and are reported spooled.
//!
//! A crash anywhere in a batch leaves each of its files in one of the
//! states of the crash table in [`crate::spool`]: in the outbox with a
//! leftover in `tmp/`, or in the outbox and in `outgoing/` (recovery
//! verifies the sealed copy and deletes the plaintext).

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use super::error::SpoolError;
use super::intake::Intake;
use super::metadata::Metadata;
use super::settle::Stamp;
use super::store::{lock, sync_dir, Area, Store, OUTGOING};

/// Most files sealed before they are committed together.
pub const MAX_BATCH_FILES: usize = 64;
/// Most plaintext bytes sealed before they are committed together.
pub const MAX_BATCH_BYTES: u64 = 256 << 20;

/// An outbox file sealed into `tmp/`: complete, not yet durable.
pub(crate) struct Sealed {
    /// The outbox name.
    pub(crate) name: OsString,
    /// The outbox path.
    pub(crate) path: PathBuf,
    /// The source, still open: its stamp is compared with `at_open`.
    pub(crate) source: File,
    /// The source's stamp when it was opened (and after it was read).
    pub(crate) at_open: Stamp,
    /// The sealed copy in `tmp/`, and its open handle for the fdatasync.
    pub(crate) tmp: PathBuf,
    pub(crate) out: File,
    pub(crate) meta: Metadata,
}

impl Sealed {
    /// Whether the source is still the version that was sealed, both the
    /// open file and whatever the name now points to.
    pub(crate) fn unchanged(&self) -> bool {
        let open = self.source.metadata().map(|m| Stamp::of(&m)).ok();
        let named = fs::symlink_metadata(&self.path).map(|m| Stamp::of(&m)).ok();
        open == Some(self.at_open) && named == Some(self.at_open)
    }

    fn discard(&self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// The outcome for each outbox name of a batch.
pub(crate) type Outcomes = Vec<(OsString, PathBuf, Result<Intake, SpoolError>)>;

impl Store {
    /// Makes a batch of sealed files durable in `outgoing/` and deletes
    /// their plaintexts (the steps are in the module doc). Every file of
    /// the batch gets an outcome; a failure of one leaves the others alone.
    pub(crate) fn commit_batch(&self, batch: Vec<Sealed>) -> Outcomes {
        let mut outcomes = Outcomes::new();
        let mut done = |s: &Sealed, r: Result<Intake, SpoolError>| {
            outcomes.push((s.name.clone(), s.path.clone(), r));
        };

        // 1. Every sealed copy durable.
        let mut synced = Vec::with_capacity(batch.len());
        for s in batch {
            match s.out.sync_data() {
                Ok(()) => synced.push(s),
                Err(e) => {
                    s.discard();
                    done(&s, Err(SpoolError::io("fsync", &s.tmp)(e)));
                }
            }
        }

        // 2. Into outgoing/, pending until the plaintext is gone.
        let mut moved = Vec::with_capacity(synced.len());
        for s in synced {
            if !s.unchanged() {
                s.discard();
                done(&s, Ok(Intake::Changed));
                continue;
            }
            let dest = self.path(Area::Outgoing, &s.meta.id);
            lock(&self.pending).insert(s.meta.id.clone());
            match fs::rename(&s.tmp, &dest) {
                Ok(()) => moved.push((s, dest)),
                Err(e) => {
                    s.discard();
                    lock(&self.pending).remove(&s.meta.id);
                    done(&s, Err(SpoolError::io("rename into", &dest)(e)));
                }
            }
        }
        let outgoing = self.root.join(OUTGOING);
        if moved.is_empty() {
            return outcomes;
        }
        if let Err(e) = sync_dir(&outgoing) {
            // Not known to be durable: keep every plaintext.
            for (s, dest) in &moved {
                let _ = fs::remove_file(dest);
                lock(&self.pending).remove(&s.meta.id);
                done(s, Err(SpoolError::io("sync", &outgoing)(io_copy(&e))));
            }
            return outcomes;
        }

        // 3. The plaintexts still unchanged are deleted.
        let (mut unlinked, mut removed) = (Vec::new(), false);
        for (s, dest) in moved {
            let gone = if s.unchanged() {
                match fs::remove_file(&s.path) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                    Err(e) => Err(SpoolError::io("delete", &s.path)(e)),
                }
            } else {
                Ok(false)
            };
            match gone {
                Ok(true) => unlinked.push(s),
                Ok(false) | Err(_) => {
                    // Changed at the last moment, or the plaintext cannot be
                    // deleted: the sealed copy goes, the file stays.
                    let _ = fs::remove_file(&dest);
                    removed = true;
                    lock(&self.pending).remove(&s.meta.id);
                    done(&s, gone.map(|_| Intake::Changed));
                }
            }
        }

        // 4. One fsync of each folder.
        if removed {
            if let Err(e) = sync_dir(&outgoing) {
                tracing::warn!(error = %e, folder = %outgoing.display(), "cannot sync the spool folder after removing a sealed copy");
            }
        }
        if !unlinked.is_empty() {
            if let Err(e) = sync_dir(&self.outbox) {
                // The sealed copies are durable; a lost unlink is undone by
                // recovery (verify the copy, delete the plaintext).
                tracing::warn!(error = %e, outbox = %self.outbox.display(), "cannot sync the outbox after deleting spooled files");
            }
        }
        for s in unlinked {
            lock(&self.pending).remove(&s.meta.id);
            self.spooled(&s.name, &s.meta);
            done(&s, Ok(Intake::Spooled(s.meta.id.clone())));
        }
        outcomes
    }
}

/// `io::Error` is not `Clone`; one sync failure is reported for each file.
fn io_copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::spool::intake::Taken;
    use crate::spool::store::tests::store;
    use crate::spool::stream::decrypt_stream;
    use std::io::Write as _;

    fn seal(s: &Store, name: &str, data: &[u8]) -> Sealed {
        let path = s.outbox.join(name);
        fs::write(&path, data).unwrap();
        match s.seal_source(&path, None).unwrap() {
            Taken::Sealed(sealed) => *sealed,
            Taken::Left(why) => panic!("{name} left: {why:?}"),
        }
    }

    fn count(dir: &std::path::Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    /// A batch is committed together: all sealed copies land in
    /// `outgoing/` and all plaintexts go; one whose writer came back
    /// between sealing and commit is kept (its copy discarded) while the
    /// others go on.
    #[test]
    fn a_batch_commits_together_and_a_changed_file_stays_alone() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let batch: Vec<Sealed> = (0..5)
            .map(|i| seal(&s, &format!("f{i}"), &vec![i; 100_000 + usize::from(i)]))
            .collect();
        assert_eq!(count(&s.root.join("tmp")), 5, "sealed, not committed");
        assert_eq!(count(&s.outbox), 5);
        // f3's writer appends after it was sealed.
        fs::OpenOptions::new()
            .append(true)
            .open(s.outbox.join("f3"))
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let outcomes = s.commit_batch(batch);
        assert_eq!(outcomes.len(), 5);
        for (name, _, r) in &outcomes {
            match (name.to_str().unwrap(), r) {
                ("f3", Ok(Intake::Changed)) => {}
                (n, Ok(Intake::Spooled(_))) if n != "f3" => {}
                other => panic!("{other:?}"),
            }
        }
        let names: Vec<_> = fs::read_dir(&s.outbox)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["f3"]);
        assert_eq!(fs::metadata(s.outbox.join("f3")).unwrap().len(), 100_007);
        assert_eq!(count(&s.root.join("tmp")), 0);
        assert!(lock(&s.pending).is_empty());
        let out = s.entries(Area::Outgoing).unwrap();
        assert_eq!(out.len(), 4);
        for e in out {
            let meta = e.meta.unwrap();
            let mut plain = Vec::new();
            let opened = decrypt_stream(File::open(&e.path).unwrap(), &mut plain, &s.key).unwrap();
            assert_eq!(opened, meta);
            let i: u8 = meta.name[1..].parse().unwrap();
            assert!(plain == vec![i; 100_000 + usize::from(i)], "{}", meta.name);
        }
    }

    /// A sealed copy that cannot be put in `outgoing/` is dropped and its
    /// plaintext kept, while the rest of the batch goes on.
    #[test]
    fn a_copy_that_vanished_before_the_commit_keeps_its_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let a = seal(&s, "a", b"alpha");
        let b = seal(&s, "b", b"beta");
        fs::remove_file(&a.tmp).unwrap();
        let outcomes = s.commit_batch(vec![a, b]);
        assert!(
            matches!(outcomes[0].2, Err(SpoolError::Io { .. })),
            "{outcomes:?}"
        );
        assert!(
            matches!(outcomes[1].2, Ok(Intake::Spooled(_))),
            "{outcomes:?}"
        );
        assert!(s.outbox.join("a").exists());
        assert!(!s.outbox.join("b").exists());
        assert!(lock(&s.pending).is_empty());
    }
}
