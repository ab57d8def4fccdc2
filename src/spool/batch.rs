//! Group commit of outbox intake: the files found ready in one look are
//! sealed side by side, made durable as they are written, and committed
//! together.
//!
//! Durability needs every sealed copy on disk before its plaintext is
//! deleted — not a chain of fsyncs per file. Intake takes what the outbox
//! holds now (at most [`MAX_BATCH_FILES`] files or [`MAX_BATCH_BYTES`] of
//! plaintext, so the first file of a large backlog is not held back by the
//! last) and (`Store::take_batch`):
//!
//! 1. seals the files into `tmp/` on up to [`SEAL_WORKERS`] threads (one
//!    per core: SHA-256 and AES-GCM are per-file sequential, files are
//!    not), each reading its file once;
//! 2. fdatasyncs each sealed copy as soon as it is written, on the calling
//!    thread, while the workers seal the next files: the disk writes one
//!    file back while the CPUs seal the others;
//! 3. re-stats each source; still the version that was read? marks its id
//!    *pending* (the forwarder skips it) and renames its copy into
//!    `outgoing/`; one fsync of `outgoing/`;
//! 4. re-stats each source again: unchanged → unlinks the plaintext;
//!    changed (a writer came back) → removes the sealed copy, and the file
//!    settles again;
//! 5. one fsync of the outbox (and of `outgoing/` again if a copy was
//!    removed); then the ids stop being pending and are reported spooled.
//!
//! Before step 1 each file is claimed: renamed into this instance's claim
//! folder in the outbox ([`super::outbox_claim`]), so that another instance
//! sharing the outbox cannot take it too; the steps work on the claimed
//! path, and a file that is not taken goes back under its name.
//!
//! A crash anywhere in a batch leaves each of its files in one of the
//! states of the crash table in [`crate::spool`]: in the outbox with a
//! leftover in `tmp/`, or in the outbox and in `outgoing/` (recovery
//! verifies the sealed copy and deletes the plaintext).

use super::intake::{refuse_full, seal_source, spooled};
use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use super::error::SpoolError;
use super::intake::{sealed_estimate, Intake, Taken};
use super::metadata::Metadata;
use super::settle::Stamp;
use super::store::{sync_dir, Area, Store, OUTGOING};

/// Most files sealed before they are committed together.
pub const MAX_BATCH_FILES: usize = 64;
/// Most plaintext bytes sealed before they are committed together.
pub const MAX_BATCH_BYTES: u64 = 256 << 20;
/// Most files sealed at once, each on its own thread (fewer on a machine
/// with fewer cores).
pub const SEAL_WORKERS: usize = 4;

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

/// One outbox file after [`Store::seal_source`], with its place in the batch.
type Step = (usize, Result<Taken, SpoolError>);

/// Threads to seal `files` files with.
fn workers(files: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    cores.min(SEAL_WORKERS).min(files).max(1)
}

/// Takes the outbox files `files` (each name with the stamp that
/// settled, if any): steps 1–5 of the module doc. Every file gets an
/// outcome; a failure of one leaves the others alone.
pub(crate) fn take_batch(store: &Store, files: &[(OsString, Option<Stamp>)]) -> Outcomes {
    let mut steps: Vec<Step> = Vec::with_capacity(files.len());
    let todo = within_max_bytes(store, files, &mut steps);
    let seal = |i: usize| -> Step {
        let (name, stamp) = &files[i];
        (i, seal_source(store, &store.dirs.outbox.join(name), *stamp))
    };
    let workers = workers(todo.len());
    if workers == 1 {
        for &i in &todo {
            steps.push(synced(seal(i)));
        }
    } else {
        let next = AtomicUsize::new(0);
        let claim = || todo.get(next.fetch_add(1, Ordering::Relaxed)).copied();
        let (tx, rx) = mpsc::channel::<Step>();
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let (tx, claim, seal) = (tx.clone(), &claim, &seal);
                let spawned = std::thread::Builder::new()
                    .name("pairgate-seal".into())
                    .spawn_scoped(scope, move || {
                        while let Some(i) = claim() {
                            if tx.send(seal(i)).is_err() {
                                return;
                            }
                        }
                    });
                if let Err(e) = spawned {
                    tracing::debug!(error = %e, "cannot start a sealing thread; sealing on fewer");
                }
            }
            drop(tx);
            // Each copy is synced as soon as it is written.
            for step in rx {
                steps.push(synced(step));
            }
        });
        // Whatever no thread took (none could be started) is sealed here.
        while let Some(i) = claim() {
            steps.push(synced(seal(i)));
        }
    }
    steps.sort_by_key(|s| s.0);
    let mut outcomes = Outcomes::new();
    let mut batch = Vec::new();
    for (i, step) in steps {
        let (name, _) = &files[i];
        match step {
            Ok(Taken::Sealed(sealed)) => batch.push(*sealed),
            Ok(Taken::Left(intake)) => {
                outcomes.push((name.clone(), store.dirs.outbox.join(name), Ok(intake)));
            }
            Err(e) => outcomes.push((name.clone(), store.dirs.outbox.join(name), Err(e))),
        }
    }
    outcomes.extend(commit_batch(store, batch));
    release_untaken(store, &mut outcomes);
    outcomes
}

/// Returns each claimed file that was not taken (changed, unreadable,
/// not committed) to the outbox under its name ([`super::outbox_claim`]).
pub(crate) fn release_untaken(store: &Store, outcomes: &mut Outcomes) {
    let mut released = false;
    for (name, path, result) in outcomes.iter_mut() {
        if matches!(result, Ok(Intake::Spooled(_) | Intake::Elsewhere)) {
            continue;
        }
        match store.outbox_claims.release(name) {
            Ok(_) => released = true,
            Err(e) => {
                tracing::warn!(file = %store.outbox_claims.path(name).display(), error = %e, "cannot return a claimed file to the outbox; it is returned at the next start");
            }
        }
        *path = store.dirs.outbox.join(name.as_os_str());
    }
    if released {
        if let Err(e) = sync_dir(&store.dirs.outbox) {
            tracing::debug!(error = %e, "cannot sync the outbox after returning claimed files");
        }
    }
}

/// The files of the batch that fit under `max_bytes` together, in
/// order (decided before any is sealed: files sealed side by side
/// cannot see each other's room). The others are left in the outbox,
/// refused once (`spool full`), their steps added to `steps`.
pub(crate) fn within_max_bytes(
    store: &Store,
    files: &[(OsString, Option<Stamp>)],
    steps: &mut Vec<Step>,
) -> Vec<usize> {
    let Some(max) = store.max_bytes else {
        return (0..files.len()).collect();
    };
    let mut used = store.used_bytes();
    let mut todo = Vec::with_capacity(files.len());
    for (i, (name, _)) in files.iter().enumerate() {
        // A file that cannot be stat'ed is left to `seal_source` to report.
        if let Ok(stat) = fs::symlink_metadata(store.dirs.outbox.join(name)) {
            let need = sealed_estimate(stat.len());
            if used + need > max {
                refuse_full(store, name, &stat, max);
                steps.push((i, Ok(Taken::Left(Intake::Full))));
                continue;
            }
            used += need;
        }
        todo.push(i);
    }
    todo
}

/// Makes a sealed copy durable (fdatasync); on failure it is discarded.
pub(crate) fn synced(step: Step) -> Step {
    match step {
        (i, Ok(Taken::Sealed(s))) => match s.out.sync_data() {
            Ok(()) => (i, Ok(Taken::Sealed(s))),
            Err(e) => {
                s.discard();
                (i, Err(SpoolError::io("fsync", &s.tmp)(e)))
            }
        },
        other => other,
    }
}

/// Steps 3–5 for copies already synced: into `outgoing/`, plaintexts
/// deleted, one fsync per folder.
pub(crate) fn commit_batch(store: &Store, batch: Vec<Sealed>) -> Outcomes {
    let mut outcomes = Outcomes::new();
    let mut done = |s: &Sealed, r: Result<Intake, SpoolError>| {
        outcomes.push((s.name.clone(), s.path.clone(), r));
    };

    // 3. Into outgoing/, pending until the plaintext is gone.
    let mut moved = Vec::with_capacity(batch.len());
    for s in batch {
        if !s.unchanged() {
            s.discard();
            done(&s, Ok(Intake::Changed));
            continue;
        }
        let dest = store.path(Area::Outgoing, &s.meta.id);
        store.claims.hold_pending(&s.meta.id);
        match fs::rename(&s.tmp, &dest) {
            Ok(()) => moved.push((s, dest)),
            Err(e) => {
                s.discard();
                store.claims.release_pending(&s.meta.id);
                done(&s, Err(SpoolError::io("rename into", &dest)(e)));
            }
        }
    }
    let outgoing = store.dirs.root.join(OUTGOING);
    if moved.is_empty() {
        return outcomes;
    }
    if let Err(e) = sync_dir(&outgoing) {
        // Not known to be durable: keep every plaintext.
        for (s, dest) in &moved {
            let _ = fs::remove_file(dest);
            store.claims.release_pending(&s.meta.id);
            done(s, Err(SpoolError::io("sync", &outgoing)(io_copy(&e))));
        }
        return outcomes;
    }

    // 4. The plaintexts still unchanged are deleted.
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
                store.claims.release_pending(&s.meta.id);
                done(&s, gone.map(|_| Intake::Changed));
            }
        }
    }

    // 5. One fsync of each folder.
    if removed {
        if let Err(e) = sync_dir(&outgoing) {
            tracing::warn!(error = %e, folder = %outgoing.display(), "cannot sync the spool folder after removing a sealed copy");
        }
    }
    if !unlinked.is_empty() {
        // The plaintexts were unlinked in this instance's claim folder,
        // after the claim renamed them out of the outbox: both folders.
        for dir in [store.outbox_claims.dir(), store.dirs.outbox.as_path()] {
            if let Err(e) = sync_dir(dir) {
                // The sealed copies are durable; a lost unlink is undone by
                // recovery (verify the copy, delete the plaintext).
                tracing::warn!(error = %e, folder = %dir.display(), "cannot sync the outbox after deleting spooled files");
            }
        }
    }
    for s in unlinked {
        store.claims.release_pending(&s.meta.id);
        spooled(store, &s.name, &s.meta);
        done(&s, Ok(Intake::Spooled(s.meta.id.clone())));
    }
    outcomes
}

/// `io::Error` is not `Clone`; one sync failure is reported for each file.
fn io_copy(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
