//! When is an outbox file finished? The sans-IO core of outbox intake.
//!
//! Producers write into the outbox in place (`cp`, `head > file`, export
//! tools writing in chunks); a file must not be taken while anyone still
//! writes it. Linux cannot tell us cheaply and reliably "nobody has this
//! file open for writing", so intake combines three signals:
//!
//! 1. **Events** (inotify through [`super::watch`]): a create or a write
//!    marks the name *writing* (a create also asks for a look, so a
//!    symbolic link is refused at once); `IN_CLOSE_WRITE` (a writer closed it) or
//!    `IN_MOVED_TO` (renamed in, complete) clears that and wakes intake.
//!    A name marked writing is not taken, however quiet it looks, until a
//!    close or rename arrives — or, if that event was lost (queue
//!    overflow, a hard link, a writer on another host), until it has been
//!    quiet for [`UNCLOSED_QUIET`].
//! 2. **Quiescence**: the file's [`Stamp`] (size, mtime, ctime, inode) must
//!    be seen unchanged by two looks at least `settle` apart
//!    (`[spool] settle_ms`). Events we never see (network filesystems)
//!    are caught here.
//! 3. **Re-stat before delete** (in [`super::intake`]): the stamp at the
//!    moment of the unlink must still be the one that was sealed.
//!
//! Failures of one file (unreadable, spool full) put that name on its own
//! backoff so it neither floods the log nor delays the others.
//!
//! Everything here takes `now` as an argument: no clock, no I/O.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// Default `[spool] settle_ms`: how long a file must look unchanged.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(1000);
/// A file marked *writing* whose close we never saw is taken anyway once
/// it has been quiet this long.
pub const UNCLOSED_QUIET: Duration = Duration::from_secs(60);
/// First retry of a file whose intake failed; doubles up to [`RETRY_CAP`].
pub const RETRY_START: Duration = Duration::from_secs(2);
/// Longest wait between two tries of one failing file.
pub const RETRY_CAP: Duration = Duration::from_secs(60);

/// What identifies one version of a file's contents. Any write changes
/// size, mtime or ctime; a replacement changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

impl Stamp {
    /// The same file and version apart from the ctime, which a rename moves
    /// (an outbox claim, [`super::outbox_claim`]).
    pub fn same_content(&self, other: &Stamp) -> bool {
        (self.size, self.mtime_ns, self.ino, self.dev)
            == (other.size, other.mtime_ns, other.ino, other.dev)
    }

    /// The stamp of a file's metadata.
    pub fn of(stat: &std::fs::Metadata) -> Stamp {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            Stamp {
                size: stat.len(),
                mtime_ns: ns(stat.mtime(), stat.mtime_nsec()),
                ctime_ns: ns(stat.ctime(), stat.ctime_nsec()),
                ino: stat.ino(),
                dev: stat.dev(),
            }
        }
        #[cfg(not(unix))]
        {
            let mtime_ns = stat
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(0));
            Stamp {
                size: stat.len(),
                mtime_ns,
                ctime_ns: 0,
                ino: 0,
                dev: 0,
            }
        }
    }
}

/// What a filesystem event says about one outbox name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Created: someone is writing it, or it is a link or special file
    /// (which intake refuses at once).
    Created,
    /// Written: someone is writing it.
    Written,
    /// A writer closed it, or it was renamed in: maybe finished.
    Finished,
    /// Deleted or renamed away.
    Gone,
    /// Its attributes changed (e.g. an operator fixed its permissions).
    Attrib,
}

/// Whether a file may be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Finished and quiet: take it (and expect this stamp at delete time).
    Ready,
    /// Look again at this time.
    WaitUntil(Instant),
    /// Someone is writing it; a close or rename event will wake intake.
    Writing { quiet_until: Instant },
}

#[derive(Debug, Clone)]
struct Watched {
    stamp: Option<Stamp>,
    /// When `stamp` was first seen.
    since: Instant,
    /// Set by a create/write event, cleared by close or rename-in.
    writing: bool,
    failure: Option<Failure>,
}

/// A file whose intake failed: when to try it again.
#[derive(Debug, Clone)]
struct Failure {
    next: Instant,
    backoff: Backoff,
}

/// The intake's memory of the outbox, per name.
#[derive(Debug)]
pub struct Tracker {
    settle: Duration,
    files: HashMap<OsString, Watched>,
}

impl Tracker {
    pub fn new(settle: Duration) -> Tracker {
        Tracker {
            settle,
            files: HashMap::new(),
        }
    }

    /// Records what an event says about `name`. Returns whether intake
    /// should look now (a file may have become finished).
    pub fn on_event(&mut self, name: &OsStr, seen: Seen, now: Instant) -> bool {
        match seen {
            Seen::Gone => {
                self.files.remove(name);
                false
            }
            Seen::Written | Seen::Created => {
                let w = self.entry(name, now);
                w.writing = true;
                w.stamp = None;
                w.since = now;
                seen == Seen::Created
            }
            Seen::Attrib => {
                // Only a file that failed is worth a look: maybe it is
                // readable now.
                match self.files.get_mut(name).and_then(|w| w.failure.as_mut()) {
                    Some(f) => {
                        f.next = now;
                        true
                    }
                    None => false,
                }
            }
            Seen::Finished => {
                let w = self.entry(name, now);
                w.writing = false;
                // A finished writer is worth a prompt retry.
                if let Some(f) = &mut w.failure {
                    f.next = now;
                }
                true
            }
        }
    }

    fn entry(&mut self, name: &OsStr, now: Instant) -> &mut Watched {
        self.files.entry(name.to_owned()).or_insert(Watched {
            stamp: None,
            since: now,
            writing: false,
            failure: None,
        })
    }

    /// Decides about `name` whose current stamp is `stamp`.
    pub fn check(&mut self, name: &OsStr, stamp: Stamp, now: Instant) -> Readiness {
        let settle = self.settle;
        let w = self.entry(name, now);
        if w.stamp != Some(stamp) {
            w.stamp = Some(stamp);
            w.since = now;
        }
        if let Some(f) = &w.failure {
            if f.next > now {
                return Readiness::WaitUntil(f.next);
            }
        }
        let quiet_for = now.saturating_duration_since(w.since);
        if w.writing {
            if quiet_for >= UNCLOSED_QUIET {
                return Readiness::Ready;
            }
            return Readiness::Writing {
                quiet_until: w.since + UNCLOSED_QUIET,
            };
        }
        if quiet_for >= settle {
            Readiness::Ready
        } else {
            Readiness::WaitUntil(w.since + settle)
        }
    }

    /// Intake of `name` failed: back off (2 s doubling to 60 s). Returns
    /// true the first time, when the failure should be reported.
    pub fn failed(&mut self, name: &OsStr, now: Instant) -> bool {
        let w = self.entry(name, now);
        match &mut w.failure {
            None => {
                let mut backoff = Backoff::new(RETRY_START, RETRY_CAP);
                w.failure = Some(Failure {
                    next: now + backoff.next_delay(),
                    backoff,
                });
                true
            }
            Some(f) => {
                f.next = now + f.backoff.next_delay();
                false
            }
        }
    }

    /// The file changed under intake (re-stat mismatch): start settling again.
    pub fn changed(&mut self, name: &OsStr, now: Instant) {
        let w = self.entry(name, now);
        w.stamp = None;
        w.since = now;
    }

    /// Whether `name` is under a failure backoff (it was reported).
    pub fn is_failing(&self, name: &OsStr) -> bool {
        self.files.get(name).is_some_and(|w| w.failure.is_some())
    }

    /// When the next failing file is due again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.files
            .values()
            .filter_map(|w| w.failure.as_ref().map(|f| f.next))
            .min()
    }

    /// Every failing file becomes due now (e.g. the spool got room).
    pub fn retry_failures_now(&mut self, now: Instant) {
        for w in self.files.values_mut() {
            if let Some(f) = &mut w.failure {
                f.next = now;
            }
        }
    }

    /// `name` was taken (or refused for good): forget it.
    pub fn done(&mut self, name: &OsStr) {
        self.files.remove(name);
    }

    /// Forgets names no longer in the outbox.
    pub fn retain(&mut self, present: &std::collections::HashSet<OsString>) {
        self.files.retain(|name, _| present.contains(name));
    }

    /// Names this tracker remembers (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(size: u64, mtime: i128) -> Stamp {
        Stamp {
            size,
            mtime_ns: mtime,
            ctime_ns: mtime,
            ino: 7,
            dev: 1,
        }
    }

    #[test]
    fn a_file_is_ready_only_after_looking_unchanged_for_the_settle_time() {
        let t0 = Instant::now();
        let settle = Duration::from_millis(1000);
        let mut t = Tracker::new(settle);
        let name = OsStr::new("a.bin");
        assert_eq!(
            t.check(name, stamp(10, 1), t0),
            Readiness::WaitUntil(t0 + settle)
        );
        // Still growing: the clock restarts.
        let t1 = t0 + Duration::from_millis(900);
        assert_eq!(
            t.check(name, stamp(20, 2), t1),
            Readiness::WaitUntil(t1 + settle)
        );
        let t2 = t1 + Duration::from_millis(999);
        assert_eq!(
            t.check(name, stamp(20, 2), t2),
            Readiness::WaitUntil(t1 + settle)
        );
        assert_eq!(t.check(name, stamp(20, 2), t1 + settle), Readiness::Ready);
    }

    #[test]
    fn a_file_being_written_waits_for_its_close_however_quiet_it_looks() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_millis(100));
        let name = OsStr::new("export.zip");
        assert!(
            t.on_event(name, Seen::Created, t0),
            "a look: links are refused at once"
        );
        assert!(!t.on_event(name, Seen::Written, t0));
        t.check(name, stamp(0, 1), t0);
        // Quiet for 10 s, 0 bytes, never closed: not taken.
        let later = t0 + Duration::from_secs(10);
        assert!(matches!(
            t.check(name, stamp(0, 1), later),
            Readiness::Writing { .. }
        ));
        // The writer closes it: settle from the last change, then ready.
        assert!(t.on_event(name, Seen::Finished, later));
        assert_eq!(t.check(name, stamp(0, 1), later), Readiness::Ready);
        // A lost close: taken after UNCLOSED_QUIET of quiet.
        let other = OsStr::new("hardlinked");
        t.on_event(other, Seen::Written, t0);
        let Readiness::Writing { quiet_until } = t.check(other, stamp(5, 1), t0) else {
            panic!()
        };
        assert_eq!(quiet_until, t0 + UNCLOSED_QUIET);
        assert_eq!(t.check(other, stamp(5, 1), quiet_until), Readiness::Ready);
    }

    #[test]
    fn failures_back_off_per_file_and_are_reported_once() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::ZERO);
        let bad = OsStr::new("unreadable");
        let good = OsStr::new("fine");
        assert_eq!(t.check(bad, stamp(1, 1), t0), Readiness::Ready);
        assert!(t.failed(bad, t0));
        assert!(t.is_failing(bad));
        assert_eq!(
            t.check(bad, stamp(1, 1), t0),
            Readiness::WaitUntil(t0 + RETRY_START)
        );
        // The other file is not held up, and its attribute changes are no
        // reason to look.
        assert_eq!(t.check(good, stamp(1, 1), t0), Readiness::Ready);
        assert!(!t.on_event(good, Seen::Attrib, t0));
        let mut at = t0;
        for _ in 0..10 {
            at += RETRY_CAP;
            assert_eq!(t.check(bad, stamp(1, 1), at), Readiness::Ready);
            assert!(!t.failed(bad, at), "reported once");
        }
        assert_eq!(
            t.check(bad, stamp(1, 1), at),
            Readiness::WaitUntil(at + RETRY_CAP)
        );
        t.retry_failures_now(at);
        assert_eq!(t.check(bad, stamp(1, 1), at), Readiness::Ready);
        // A chmod of the failing file (an operator fixing it): look now.
        t.failed(bad, at);
        assert!(t.on_event(bad, Seen::Attrib, at));
        assert_eq!(t.check(bad, stamp(1, 1), at), Readiness::Ready);
        t.done(bad);
        assert!(!t.is_failing(bad));
    }

    #[test]
    fn gone_and_retain_forget_names() {
        let t0 = Instant::now();
        let mut t = Tracker::new(Duration::from_secs(1));
        t.check(OsStr::new("a"), stamp(1, 1), t0);
        t.check(OsStr::new("b"), stamp(1, 1), t0);
        t.on_event(OsStr::new("a"), Seen::Gone, t0);
        assert_eq!(t.len(), 1);
        t.retain(&std::collections::HashSet::new());
        assert!(t.is_empty());
    }
}
