//! The audit log's writer thread ([`super`]): takes batches off the queue,
//! renders and chains their lines, writes and syncs them, repairs the file
//! after a torn or failed write, follows an external rotation, and on a
//! takeover waits for the previous owner to let go of the file.

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use ring::digest;
use time::OffsetDateTime;

use super::super::chain::{line_hash, render_line, GENESIS};
use super::super::event::{Event, LogContinued, LogRepaired};
use super::super::health::Health;
use super::super::tail::recover_tail;
use super::{Msg, LOG_MODE, MAX_BATCH, RETRY_EVERY};
use crate::exclusive::{self, Wait};
use crate::fsutil;

/// The lines of a batch whose write failed: which of them reached the disk is
/// found after the repair by matching the file's last line against them.
pub(super) struct Attempt {
    pub(super) hashes: Vec<[u8; 32]>,
    pub(super) with_repair: bool,
}

pub(super) struct Writer {
    pub(super) file: File,
    pub(super) path: PathBuf,
    pub(super) prev: [u8; 32],
    pub(super) head: Arc<std::sync::Mutex<[u8; 32]>>,
    /// A torn tail cut off at open, not yet reported in the log.
    pub(super) repair: Option<LogRepaired>,
    pub(super) lost: u64,
    pub(super) needs_resync: bool,
    pub(super) failed: Option<Attempt>,
    /// The first error since the last flush, reported to the next flush.
    pub(super) error: Option<(io::ErrorKind, String)>,
    pub(super) health: Arc<Health>,
}

impl Writer {
    pub(super) fn new(file: File, path: PathBuf, head: Arc<std::sync::Mutex<[u8; 32]>>) -> Writer {
        Writer {
            file,
            path,
            prev: GENESIS,
            head,
            repair: None,
            lost: 0,
            needs_resync: true,
            failed: None,
            error: None,
            health: Arc::default(),
        }
    }

    /// Waits until the process that owned the log let go, then continues
    /// its chain. Returns true when the writer cannot go on.
    pub(super) fn take_over(&mut self) -> bool {
        tracing::info!(path = %self.path.display(), "waiting for the previous instance to release the audit log");
        // Open the path again (a rotation may have replaced the file since
        // our open), wait for its lock, then continue from its last line.
        let result = fsutil::open_append(&self.path, LOG_MODE).and_then(|file| {
            exclusive::lock(&file, Wait::Block)?;
            self.file = file;
            self.resync()
        });
        match result {
            Ok(()) => {
                tracing::info!(path = %self.path.display(), "audit log taken over");
                false
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "cannot take over the audit log; events are not written");
                self.health.write_failed(&self.path, &e);
                true
            }
        }
    }

    pub(super) fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            // While failing, retry now and then without new events, so the
            // condition clears when the disk does.
            let first = if self.needs_resync {
                match rx.recv_timeout(RETRY_EVERY) {
                    Ok(msg) => msg,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.commit(&mut batch);
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(msg) => msg,
                    Err(_) => return,
                }
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
    }

    pub(super) fn commit(&mut self, batch: &mut Vec<Msg>) {
        let mut events = Vec::with_capacity(batch.len());
        let mut waiters = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                Msg::Record(ts, event) => events.push((ts, *event)),
                Msg::Flush(done) => waiters.push(done),
                #[cfg(test)]
                Msg::Stall(until) => {
                    let _ = until.recv();
                }
                Msg::Reopen => {
                    // Everything recorded before the reopen goes to the old file.
                    if !events.is_empty() {
                        if let Err(e) = self.write(&events) {
                            self.error.get_or_insert((e.kind(), e.to_string()));
                        }
                        events.clear();
                    }
                    if let Err(e) = self.reopen() {
                        self.health.write_failed(&self.path, &e);
                        self.error.get_or_insert((e.kind(), e.to_string()));
                    }
                }
            }
        }
        // Events dropped on a full queue are lost like those of a failed
        // write: counted in the next `log_repaired` record.
        let dropped = self
            .health
            .dropped
            .swap(0, std::sync::atomic::Ordering::Relaxed);
        self.lost += dropped;
        if !events.is_empty() || self.needs_resync || dropped > 0 {
            if let Err(e) = self.write(&events) {
                self.error.get_or_insert((e.kind(), e.to_string()));
            }
        }
        if !waiters.is_empty() {
            let result = self.error.take().map_or(Ok(()), Err);
            for done in waiters {
                // A flusher that gave up waiting is not an error.
                let _ = done.send(result.clone());
            }
        }
    }

    /// After an external tool moved the log away (logrotate), opens a new
    /// file at the path. A fresh file starts a new chain whose first record
    /// names the previous file's last hash, so the two chains stay linked.
    fn reopen(&mut self) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let ours = self.file.metadata()?;
            if let Ok(now) = std::fs::metadata(&self.path) {
                if (now.dev(), now.ino()) == (ours.dev(), ours.ino()) {
                    return Ok(()); // not rotated
                }
            }
        }
        let previous_head = self.prev;
        self.file = fsutil::open_append(&self.path, LOG_MODE)?;
        self.needs_resync = true;
        self.resync()?;
        if self.prev == GENESIS {
            let event = Event::LogContinued(LogContinued {
                previous_head: hex::encode(previous_head),
            });
            self.write(&[(OffsetDateTime::now_utc(), event)])?;
        }
        Ok(())
    }

    /// [`Writer::write_lines`], reporting the outcome to the log's health.
    fn write(&mut self, events: &[(OffsetDateTime, Event)]) -> io::Result<()> {
        match self.write_lines(events) {
            Ok(0) => Ok(()),
            Ok(lines) => {
                self.health.wrote(&self.path, lines);
                Ok(())
            }
            Err(e) => {
                self.health.write_failed(&self.path, &e);
                Err(e)
            }
        }
    }

    /// Writes the events (after a repair record if one is due) and syncs;
    /// returns how many lines were written.
    fn write_lines(&mut self, events: &[(OffsetDateTime, Event)]) -> io::Result<u64> {
        if self.needs_resync {
            if let Err(e) = self.resync() {
                self.lost += events.len() as u64;
                return Err(e);
            }
        }
        let repair = (self.repair.is_some() || self.lost > 0).then(|| {
            let mut r = self.repair.clone().unwrap_or_else(|| LogRepaired {
                truncated_bytes: 0,
                truncated_sha256: hex::encode(digest::digest(&digest::SHA256, b"")),
                lost_events: 0,
            });
            r.lost_events = self.lost;
            (OffsetDateTime::now_utc(), Event::LogRepaired(r))
        });
        let mut buf = String::with_capacity(events.len() * 400 + 400);
        let mut hashes = Vec::with_capacity(events.len() + 1);
        let mut prev = self.prev;
        for (ts, event) in repair.iter().chain(events) {
            let line = render_line(*ts, event, &prev);
            prev = line_hash(line.as_bytes());
            hashes.push(prev);
            buf.push_str(&line);
            buf.push('\n');
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let written = self
            .file
            .write_all(buf.as_bytes())
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.prev = prev;
                self.publish_head();
                self.repair = None;
                self.lost = 0;
                Ok(hashes.len() as u64)
            }
            Err(e) => {
                self.needs_resync = true;
                self.failed = Some(Attempt {
                    hashes,
                    with_repair: repair.is_some(),
                });
                Err(e)
            }
        }
    }

    fn publish_head(&self) {
        if let Ok(mut head) = self.head.lock() {
            *head = self.prev;
        }
    }

    /// Cuts a torn tail, finds the chain head, and settles a failed attempt.
    pub(super) fn resync(&mut self) -> io::Result<()> {
        let tail = recover_tail(&mut self.file)?;
        self.prev = tail.head;
        self.publish_head();
        self.needs_resync = false;
        match self.failed.take() {
            Some(attempt) => {
                let reached = attempt.hashes.iter().position(|h| *h == tail.head);
                let mut written = reached.map_or(0, |p| p + 1) as u64;
                if attempt.with_repair && written > 0 {
                    self.repair = None;
                    self.lost = 0;
                    written -= 1;
                }
                let events = attempt.hashes.len() as u64 - u64::from(attempt.with_repair);
                self.lost += events - written;
            }
            None if tail.truncated_bytes > 0 => {
                tracing::warn!(path = %self.path.display(), bytes = tail.truncated_bytes, "audit log ended in a torn line, cut it off");
                self.repair = Some(LogRepaired {
                    truncated_bytes: tail.truncated_bytes,
                    truncated_sha256: hex::encode(tail.truncated_sha256),
                    lost_events: 0,
                });
            }
            None => {}
        }
        Ok(())
    }
}
