//! The append-only sink: one writer thread per log, group commit, crash repair.
//!
//! `record` stamps the event with the current time and hands it to a
//! dedicated `std::thread` over a bounded `std::sync::mpsc` channel
//! ([`QUEUE_CAPACITY`]), so it never waits for the disk and works inside or
//! outside a tokio runtime; when the queue is full the event is dropped,
//! counted, and the log is marked failing (see [`super::health`]). The
//! writer takes one message, drains whatever else is queued (up to
//! [`MAX_BATCH`]), renders the lines (each chained to the one before), writes
//! them with one `write` and calls `sync_data` once per batch. `flush` queues a
//! marker and waits for the writer to reach it.
//!
//! Crash repair: on open the writer reads the end of the file backwards. A
//! file that does not end with a newline holds a torn write; that tail is cut
//! off and a `log_repaired` record (bytes and SHA-256 of what was cut) becomes
//! the first new line, chained to the last complete line. After a failed
//! write the same repair runs before the next batch: lines that did reach the
//! disk are kept (found by their hashes), the rest are counted in the next
//! `log_repaired` record's `lost_events` (with the events dropped on a full
//! queue). Errors are reported once per failing spell (see
//! [`super::health`]) and returned by the next `flush`; while failing, the
//! writer retries every [`RETRY_EVERY`] even without new events, so the
//! condition clears when the disk does. The writer never panics.
//!
//! One process must own a log at a time: two writers would fork the chain.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use time::OffsetDateTime;

use crate::fsutil;

use super::chain::GENESIS;
use super::event::Event;
use super::health::Health;
use super::AuditError;
use crate::exclusive::{self, Wait};
use writer::Writer;

/// Mode of the audit log: the owner writes, its group (auditors) reads.
const LOG_MODE: u32 = 0o640;
/// Most messages the writer takes into one write + `sync_data`.
pub const MAX_BATCH: usize = 1024;

/// Most events waiting for the writer: about 1.5 MB of events. Beyond it
/// events are dropped (and counted), never queued without bound.
pub const QUEUE_CAPACITY: usize = 4096;

/// How often a failing writer retries without new events.
pub const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

enum Msg {
    /// Boxed: connection events are large, and most messages are records.
    Record(OffsetDateTime, Box<Event>),
    Flush(mpsc::SyncSender<Result<(), (io::ErrorKind, String)>>),
    /// Reopen the path if the file was rotated away by an external tool.
    Reopen,
    /// Tests: the writer blocks until the sender side is dropped (a disk
    /// that hangs).
    #[cfg(test)]
    Stall(mpsc::Receiver<()>),
}

/// A cheap, cloneable handle to the append-only, hash-chained log. The writer
/// thread drains the queue and exits when the last handle is dropped (the drop
/// waits for it).
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// Hash of the last line known to be on disk (the chain head).
    head: Arc<std::sync::Mutex<[u8; 32]>>,
    tx: Option<mpsc::SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// Events handed to the writer since open, whoever recorded them.
    recorded: std::sync::atomic::AtomicU64,
    health: Arc<Health>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(path = %self.path.display(), "audit writer thread panicked");
            }
        }
    }
}

impl AuditLog {
    /// Opens (or creates, mode 0640, with its parent folders) the log at
    /// `path`, repairs a torn last line and continues the chain from the last
    /// complete line.
    ///
    /// # Errors
    /// Creating the folder, opening, reading or repairing the file, or
    /// starting the writer thread.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        AuditLog::open_with(path, Wait::No)
    }

    /// [`AuditLog::open`], owning the file exclusively ([`crate::exclusive`]).
    /// With [`Wait::Block`] (taking over from a running instance) it returns
    /// at once and the writer thread waits for the other process to let go:
    /// events recorded meanwhile queue in memory (up to the queue's
    /// capacity; beyond it they are counted as lost) and are written,
    /// chained to the other process's last line, once it has exited.
    ///
    /// # Errors
    /// As [`AuditLog::open`]; [`AuditError::Locked`] when another process
    /// owns the log and `wait` is [`Wait::No`].
    pub fn open_with(path: &Path, wait: Wait) -> Result<AuditLog, AuditError> {
        let path = path.to_path_buf();
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            std::fs::create_dir_all(parent).map_err(|source| AuditError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let existed = path.exists();
        let open_err = |source| AuditError::Open {
            path: path.clone(),
            source,
        };
        let file = fsutil::open_append(&path, LOG_MODE).map_err(open_err)?;
        if !existed {
            if let Some(parent) = parent {
                fsutil::sync_dir(parent).map_err(open_err)?;
            }
        }
        let head = Arc::new(std::sync::Mutex::new(GENESIS));
        let owned = match exclusive::lock(&file, Wait::No) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && wait == Wait::Block => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(AuditError::Locked { path: path.clone() })
            }
            Err(source) => return Err(AuditError::Open { path, source }),
        };
        let health = Arc::new(Health::default());
        let mut writer = Writer::new(file, path.clone(), head.clone());
        writer.health = health.clone();
        if owned {
            writer.resync().map_err(|source| AuditError::Recover {
                path: path.clone(),
                source,
            })?;
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                if !owned && writer.take_over() {
                    return;
                }
                writer.run(rx);
            })
            .map_err(|source| AuditError::Spawn { source })?;
        Ok(AuditLog {
            inner: Arc::new(Inner {
                path,
                head,
                tx: Some(tx),
                thread: Some(thread),
                recorded: std::sync::atomic::AtomicU64::new(0),
                health,
            }),
        })
    }

    /// Whether the log is being written: `Err` with the error while writes
    /// fail (disk full, file gone read-only), `Ok` again once one succeeds.
    /// `/readyz` reports it.
    ///
    /// # Errors
    /// Why the log is failing, naming the file.
    pub fn writable(&self) -> Result<(), String> {
        match self.inner.health.failing() {
            Some(e) => Err(format!("{}: {e}", self.inner.path.display())),
            None => Ok(()),
        }
    }

    /// The file this handle writes to.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The chain head: the hash of the last line written and synced (64
    /// zeros for an empty log). Sent to the peer, which records it, so that
    /// rewriting this log's history would need both sites.
    pub fn head(&self) -> [u8; 32] {
        self.inner.head.lock().map(|h| *h).unwrap_or(GENESIS)
    }

    /// The log's health: whether it is failing, and what the gateway does
    /// then (`audit.on_failure`).
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// Events written and synced since open (by every handle): flat while
    /// the log cannot be written, whatever is recorded.
    pub fn written(&self) -> u64 {
        self.inner
            .health
            .written
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues one event, stamped with the current time; never blocks on
    /// disk. A full queue drops the event (counted, see [`super::health`]).
    pub fn record(&self, event: Event) {
        self.record_at(OffsetDateTime::now_utc(), event);
    }

    /// Queues one event with an explicit timestamp.
    pub fn record_at(&self, ts: OffsetDateTime, event: Event) {
        let sent = match &self.inner.tx {
            Some(tx) => tx.try_send(Msg::Record(ts, Box::new(event))),
            None => Err(mpsc::TrySendError::Disconnected(Msg::Reopen)),
        };
        match sent {
            Ok(()) => {
                self.inner
                    .recorded
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(mpsc::TrySendError::Full(_)) => self.inner.health.overflowed(&self.inner.path),
            Err(mpsc::TrySendError::Disconnected(_)) => {
                tracing::error!(path = %self.inner.path.display(), "audit writer gone, event dropped");
            }
        }
    }

    /// How many events were handed to the writer since the log was opened
    /// (by every handle: gateway, proxy, spool).
    pub fn recorded(&self) -> u64 {
        self.inner
            .recorded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reopens the log if an external tool rotated it away (call on
    /// SIGHUP): later events go to a new file at the same path, whose first
    /// record names the previous file's chain head. A no-op otherwise.
    pub fn reopen(&self) {
        if let Some(tx) = &self.inner.tx {
            let _ = tx.send(Msg::Reopen);
        }
    }

    /// Waits until every event recorded before this call is written and synced.
    ///
    /// # Errors
    /// [`AuditError::Write`] if any write or sync failed since the last flush
    /// (events were lost), [`AuditError::WriterGone`] if the writer stopped.
    pub fn flush(&self) -> Result<(), AuditError> {
        let gone = || AuditError::WriterGone {
            path: self.inner.path.clone(),
        };
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let tx = self.inner.tx.as_ref().ok_or_else(gone)?;
        tx.send(Msg::Flush(done_tx)).map_err(|_| gone())?;
        match done_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, message))) => Err(AuditError::Write {
                path: self.inner.path.clone(),
                source: io::Error::new(kind, message),
            }),
            Err(_) => Err(gone()),
        }
    }
}

#[path = "sink_writer.rs"]
mod writer;

#[cfg(test)]
#[path = "sink_tests.rs"]
mod tests;
