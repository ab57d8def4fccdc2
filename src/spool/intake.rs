//! Outbox intake: a finished plaintext file in the outbox → sealed, durable
//! file in `outgoing/` → plaintext deleted.
//!
//! Which files are finished is decided in [`super::settle`] (events,
//! quiescence); this module does the taking. Each file is claimed (renamed into this
//! instance's claim folder, [`super::outbox_claim`]: another instance
//! sharing the outbox cannot take it too), opened, checked
//! to be the version that settled, and sealed into `tmp/` reading it once
//! ([`super::stream::encrypt_one_pass`]); the file must not have changed
//! while it was read (its stamp before and after, and the number of bytes
//! read: the SHA-256 sealed is of exactly those bytes). The files found
//! ready in one look are then committed together ([`super::batch`]):
//! fsync, rename into `outgoing/`, one fsync of the folder, re-stat, delete
//! the plaintexts, one fsync of the outbox. The sealed file's metadata
//! remembers the source's inode, mtime and size, so recovery can tell "the
//! plaintext of this sealed file" from a new file dropped under the same
//! name.
//!
//! Symbolic links and other non-regular files are refused with an audit
//! line (`spool_refused`), never followed. A file that cannot be taken
//! (unreadable, spool full) is audited once per version and retried with
//! its own backoff (`intake_report`).

use super::batch::take_batch;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::json;

use super::batch::{Outcomes, Sealed, MAX_BATCH_BYTES, MAX_BATCH_FILES};
use super::conditions::{Audited, Condition, Report, Subject};
use super::error::SpoolError;
pub(crate) use super::intake_report::{refuse, refuse_full, spooled};
use super::metadata::{Metadata, PLACEHOLDER_SHA256};
use super::names::{self, RAW_NAME_FIELD};
use super::settle::{Readiness, Stamp, Tracker};
use super::store::{lock, Store};
use super::stream::encrypt_one_pass;
use super::CHUNK_LEN;

/// One outbox file after the sealing step.
pub(crate) enum Taken {
    /// Sealed into `tmp/`, waiting for its batch to be committed.
    Sealed(Box<Sealed>),
    /// Left in the outbox, for this reason.
    Left(Intake),
}

/// What happened to one outbox file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Sealed into `outgoing/` with this id; the plaintext is gone.
    Spooled(String),
    /// Left in the outbox: the spool would exceed `max_bytes`.
    Full,
    /// Left in the outbox: not spoolable (bad name, not a regular file).
    Skipped,
    /// It changed while being taken: the sealed copy was discarded; it is
    /// taken once it has settled again.
    Changed,
    /// Gone from the outbox before this instance could claim it: another
    /// instance sharing the outbox took it (or its producer removed it).
    Elsewhere,
}

/// What one scan did, and when intake should look again.
#[derive(Debug, Default)]
pub struct Scan {
    pub done: Vec<Intake>,
    /// A file is settling or backing off: look again then.
    pub next_look: Option<Instant>,
}

/// The identity of a source file, stored in the sealed file's metadata.
pub(crate) fn source_tag(stat: &fs::Metadata) -> serde_json::Value {
    let s = Stamp::of(stat);
    json!({ "ino": s.ino, "mtime_ns": s.mtime_ns.to_string(), "size": s.size })
}

/// Sealed size of a plaintext of `size` bytes (upper bound).
pub fn sealed_estimate(size: u64) -> u64 {
    let chunks = size / CHUNK_LEN as u64 + 1;
    size + chunks * 20 + 70 + 4096
}

/// The condition key of "the outbox cannot be listed".
const OUTBOX_KEY: &str = "(outbox)";

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Takes every finished-looking file in the outbox now, oldest first,
/// without waiting for files to settle (offline tools, benchmarks; the
/// gateway runs [`scan_tracked`] with its settle time).
///
/// # Errors
/// [`SpoolError::Io`] if the outbox cannot be listed.
pub fn scan_outbox(store: &Store) -> Result<Vec<Intake>, SpoolError> {
    let tracker = Mutex::new(Tracker::new(std::time::Duration::ZERO));
    fs::read_dir(&store.dirs.outbox).map_err(SpoolError::io("list", &store.dirs.outbox))?;
    Ok(scan_tracked(store, &tracker, Instant::now()).done)
}

/// One look at the outbox: takes the files `tracker` finds finished,
/// oldest first; refuses links and special files (audited once).
pub fn scan_tracked(store: &Store, tracker: &Mutex<Tracker>, now: Instant) -> Scan {
    let mut scan = Scan::default();
    let listed = match fs::read_dir(&store.dirs.outbox) {
        Ok(rd) => {
            store.conditions.clear(Condition::OutboxRefused, OUTBOX_KEY);
            rd
        }
        Err(e) => {
            store.conditions.raise(Report {
                condition: Condition::OutboxRefused,
                key: OUTBOX_KEY.to_owned(),
                subject: Subject::default(),
                files: 0,
                detail: format!(
                    "cannot list the outbox {}: {e}; check that it exists and the gateway may read it",
                    store.dirs.outbox.display()
                ),
                audited: Audited::Condition,
            });
            return scan;
        }
    };
    let mut present = std::collections::HashSet::new();
    let mut ready = Vec::new();
    for item in listed.filter_map(Result::ok) {
        let name = item.file_name();
        if names::is_ignored(&name) {
            continue;
        }
        present.insert(name.clone());
        let Ok(stat) = fs::symlink_metadata(item.path()) else {
            continue;
        };
        let kind = stat.file_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() {
            let what = if kind.is_symlink() {
                "it is a symbolic link, which the spool never follows; put the file itself in the outbox"
            } else {
                "it is not a regular file (a FIFO, socket or device)"
            };
            refuse(
                store,
                &name,
                &stat,
                what.to_owned(),
                Condition::OutboxRefused,
            );
            continue;
        }
        let stamp = Stamp::of(&stat);
        match lock(tracker).check(&name, stamp, now) {
            Readiness::Ready => ready.push((stamp.mtime_ns, name, stamp)),
            Readiness::WaitUntil(t) | Readiness::Writing { quiet_until: t } => {
                scan.next_look = earliest(scan.next_look, t);
            }
        }
    }
    lock(tracker).retain(&present);
    // Refusals of files that left the outbox are over.
    let names: std::collections::HashSet<String> = present
        .iter()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    store.claims.keep_refused(&names);
    let mut keep: Vec<String> = names.into_iter().collect();
    keep.push(OUTBOX_KEY.to_owned());
    store
        .conditions
        .clear_others(Condition::OutboxRefused, &keep);
    // The receiver's own "full" is not about an outbox file.
    keep.push(super::receive::RECEIVE_FULL.to_owned());
    store.conditions.clear_others(Condition::SpoolFull, &keep);
    ready.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    // What the outbox holds now, in batches bounded by count and bytes.
    let mut batch = Vec::new();
    let mut batch_bytes = 0u64;
    for (_, name, stamp) in ready {
        batch_bytes += stamp.size;
        batch.push((name, Some(stamp)));
        if batch.len() >= MAX_BATCH_FILES || batch_bytes >= MAX_BATCH_BYTES {
            let outcomes = take_batch(store, &std::mem::take(&mut batch));
            settle_outcomes(store, tracker, &mut scan, now, outcomes);
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() {
        let outcomes = take_batch(store, &batch);
        settle_outcomes(store, tracker, &mut scan, now, outcomes);
    }
    if let Some(t) = lock(tracker).next_retry() {
        scan.next_look = earliest(scan.next_look, t);
    }
    scan
}

/// Tells the tracker and the scan how each file fared.
pub(crate) fn settle_outcomes(
    store: &Store,
    tracker: &Mutex<Tracker>,
    scan: &mut Scan,
    now: Instant,
    outcomes: Outcomes,
) {
    for (name, path, result) in outcomes {
        let mut t = lock(tracker);
        match result {
            Ok(Intake::Spooled(id)) => {
                t.done(&name);
                scan.done.push(Intake::Spooled(id));
            }
            Ok(Intake::Elsewhere) => {
                t.done(&name);
                scan.done.push(Intake::Elsewhere);
            }
            Ok(Intake::Changed) => {
                t.changed(&name, now);
                scan.next_look = earliest(scan.next_look, now + store.settle);
                scan.done.push(Intake::Changed);
            }
            Ok(other) => {
                t.failed(&name, now);
                scan.done.push(other);
            }
            Err(e) => {
                let first = t.failed(&name, now);
                drop(t);
                if first {
                    let condition = if e.is_storage_full() {
                        Condition::SpoolFull
                    } else {
                        Condition::OutboxRefused
                    };
                    if let Ok(stat) = fs::symlink_metadata(&path) {
                        refuse(store, &name, &stat, e.to_string(), condition);
                    }
                } else {
                    tracing::debug!(file = %path.display(), error = %e, "outbox intake failed again");
                }
                scan.done.push(Intake::Skipped);
            }
        }
    }
}

/// Seals one outbox file into `outgoing/` and deletes the plaintext,
/// without a settle check (tests, tools). Only the file name of `path`
/// is used: the file is the outbox's.
///
/// # Errors
/// [`SpoolError::Io`] / [`SpoolError::Codec`]; the plaintext then stays.
pub fn intake_file(store: &Store, path: &Path) -> Result<Intake, SpoolError> {
    intake_file_at(store, path, None)
}

/// Seals one outbox file, which must still have `expected` (the stamp
/// that settled), and commits it alone.
pub(crate) fn intake_file_at(
    store: &Store,
    path: &Path,
    expected: Option<Stamp>,
) -> Result<Intake, SpoolError> {
    let name = path.file_name().map(OsStr::to_owned).unwrap_or_default();
    take_batch(store, &[(name, expected)])
        .pop()
        .map_or(Ok(Intake::Skipped), |(_, _, r)| r)
}

/// Claims one outbox file ([`super::outbox_claim`]), checks it is still
/// `expected` (the stamp that settled) and seals it into `tmp/`, reading
/// it once. Not durable yet: [`take_batch`] syncs and commits a whole
/// batch, and returns the file to the outbox if it is not taken.
pub(crate) fn seal_source(
    store: &Store,
    path: &Path,
    expected: Option<Stamp>,
) -> Result<Taken, SpoolError> {
    let name = path.file_name().map(OsStr::to_owned).unwrap_or_default();
    let claimed = match store.outbox_claims.claim(&name) {
        Ok(Some(claimed)) => claimed,
        Ok(None) => return Ok(Taken::Left(Intake::Elsewhere)),
        Err(e) => return Err(SpoolError::io("claim", path)(e)),
    };
    let file = open_source(&claimed).map_err(SpoolError::io("open", &claimed))?;
    // The rename moved the ctime, nothing else: the version that settled
    // is the one with the same inode, size and mtime.
    let expected = match expected {
        Some(e) => {
            let now = file.metadata().map(|m| Stamp::of(&m)).ok();
            match now {
                Some(now) if now.same_content(&e) => Some(now),
                _ => return Ok(Taken::Left(Intake::Changed)),
            }
        }
        None => None,
    };
    seal_opened(store, &claimed, file, expected, |f| f)
}

/// [`seal_source`] once the file is open; `wrap` may wrap the
/// reader (tests use it to change the file while it is read).
pub(crate) fn seal_opened<R: Read>(
    store: &Store,
    path: &Path,
    file: File,
    expected: Option<Stamp>,
    wrap: impl FnOnce(io::Take<File>) -> R,
) -> Result<Taken, SpoolError> {
    let os_name = path.file_name().map(OsStr::to_owned).unwrap_or_default();
    let (name, raw_name) = names::describe(&os_name);
    let stat = file.metadata().map_err(SpoolError::io("stat", path))?;
    let at_open = Stamp::of(&stat);
    if !stat.is_file() || expected.is_some_and(|e| e != at_open) {
        return Ok(Taken::Left(Intake::Changed));
    }
    // (`max_bytes` was checked for the whole batch: `take_batch`.)
    // `size` and `sha256` are filled in from what is read.
    let mut meta = match Metadata::new(&name, 0, PLACEHOLDER_SHA256) {
        Ok(m) => m,
        Err(e) => {
            refuse(
                store,
                &os_name,
                &stat,
                e.to_string(),
                Condition::OutboxRefused,
            );
            return Ok(Taken::Left(Intake::Skipped));
        }
    };
    meta.extra.insert("source".into(), source_tag(&stat));
    if let Some(raw) = raw_name {
        meta.extra.insert(RAW_NAME_FIELD.into(), raw.into());
    }

    let tmp = store.tmp_path(&meta.id);
    let reader = file.try_clone().map_err(SpoolError::io("open", path))?;
    let mut out = File::create_new(&tmp).map_err(SpoolError::io("create", &tmp))?;
    // One byte beyond the size at open is enough to know it grew.
    let sealed = encrypt_one_pass(
        wrap(reader.take(at_open.size + 1)),
        &mut out,
        &store.key,
        meta,
    );
    let meta = match sealed {
        Ok((meta, _)) => meta,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(SpoolError::codec(path)(e));
        }
    };
    let now = file.metadata().map(|m| Stamp::of(&m)).ok();
    if meta.size != at_open.size || now != Some(at_open) {
        let _ = fs::remove_file(&tmp);
        return Ok(Taken::Left(Intake::Changed));
    }
    Ok(Taken::Sealed(Box::new(Sealed {
        name: os_name,
        path: path.to_owned(),
        source: file,
        at_open,
        tmp,
        out,
        meta,
    })))
}

/// Opens an outbox file for reading without following a symbolic link and
/// without blocking on a FIFO (either could be swapped in after the file
/// was listed; the caller then sees a non-regular file or a changed
/// stamp and leaves it).
fn open_source(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        Ok(File::from(rustix::fs::open(path, flags, Mode::empty())?))
    }
    #[cfg(not(unix))]
    {
        File::open(path)
    }
}

/// Flushes a writer (helper shared by tmp writers).
pub(crate) fn finish_file(w: BufWriter<File>, path: &Path) -> Result<File, SpoolError> {
    let mut w = w;
    w.flush().map_err(SpoolError::io("write", path))?;
    let f = w
        .into_inner()
        .map_err(|e| SpoolError::io("write", path)(e.into_error()))?;
    f.sync_all().map_err(SpoolError::io("fsync", path))?;
    Ok(f)
}

#[cfg(test)]
#[path = "intake_tests.rs"]
mod tests;
