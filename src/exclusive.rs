//! One process owns a file at a time: the audit log (two writers would fork
//! its hash chain) and a spool dir (two recoveries would undo each other's
//! work). Ownership is an advisory `flock(LOCK_EX)` on an open file: the
//! kernel drops it when the process exits however it exits, so a crash
//! never leaves a stale lock behind.
//!
//! A new instance that takes over a running one (`pairgate run --takeover`)
//! waits for the lock ([`Wait::Block`]): the old instance holds it until it
//! has drained and exits. Every other start refuses to wait
//! ([`Wait::No`]) and names the file, so two gateways started on one
//! config fail loudly instead of corrupting each other.

use std::fs::File;
use std::io;

/// Whether to wait for a lock another process holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once with `WouldBlock`.
    No,
    /// Block until the other process lets go.
    Block,
}

/// Takes the exclusive lock on `file` (kept until the file is closed).
///
/// # Errors
/// `WouldBlock` when another process holds it and `wait` is [`Wait::No`];
/// any other `flock` error.
pub fn lock(file: &File, wait: Wait) -> io::Result<()> {
    #[cfg(unix)]
    {
        use rustix::fs::{flock, FlockOperation};
        let op = match wait {
            Wait::No => FlockOperation::NonBlockingLockExclusive,
            Wait::Block => FlockOperation::LockExclusive,
        };
        flock(file, op).map_err(io::Error::from)
    }
    #[cfg(not(unix))]
    {
        let _ = (file, wait);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = File::create(&path).unwrap();
        lock(&first, Wait::No).unwrap();
        let second = File::open(&path).unwrap();
        let err = lock(&second, Wait::No).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(first);
        lock(&second, Wait::No).unwrap();
    }
}
