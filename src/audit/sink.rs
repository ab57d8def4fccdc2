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

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use ring::digest;
use time::OffsetDateTime;

use crate::fsutil;

use super::chain::{line_hash, render_line, GENESIS};
use super::event::{Event, LogContinued, LogRepaired};
use super::health::Health;
use super::tail::recover_tail;
use super::AuditError;
use crate::exclusive::{self, Wait};

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

/// The lines of a batch whose write failed: which of them reached the disk is
/// found after the repair by matching the file's last line against them.
struct Attempt {
    hashes: Vec<[u8; 32]>,
    with_repair: bool,
}

struct Writer {
    file: File,
    path: PathBuf,
    prev: [u8; 32],
    head: Arc<std::sync::Mutex<[u8; 32]>>,
    /// A torn tail cut off at open, not yet reported in the log.
    repair: Option<LogRepaired>,
    lost: u64,
    needs_resync: bool,
    failed: Option<Attempt>,
    /// The first error since the last flush, reported to the next flush.
    error: Option<(io::ErrorKind, String)>,
    health: Arc<Health>,
}

impl Writer {
    fn new(file: File, path: PathBuf, head: Arc<std::sync::Mutex<[u8; 32]>>) -> Writer {
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
    fn take_over(&mut self) -> bool {
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

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
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

    fn commit(&mut self, batch: &mut Vec<Msg>) {
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
    fn resync(&mut self) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{verify, ChainSummary};
    use crate::audit::synth::sample_event;
    use std::fs::OpenOptions;
    use std::io::BufReader;

    fn verified(path: &Path) -> ChainSummary {
        let file = File::open(path).expect("open log");
        verify(BufReader::new(file)).expect("chain intact")
    }

    fn events(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .expect("read log")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    #[test]
    fn records_chain_and_reopen_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit/site1.jsonl");
        let log = AuditLog::open(&path).expect("open new");
        for i in 0..5 {
            log.clone().record(sample_event(i));
        }
        log.flush().expect("flush");
        assert_eq!(verified(&path).lines, 5);
        drop(log);

        let log = AuditLog::open(&path).expect("reopen");
        for i in 5..8 {
            log.record(sample_event(i));
        }
        drop(log); // no flush: the last drop drains the queue
        let summary = verified(&path);
        assert_eq!(summary.lines, 8);
        let kinds: Vec<_> = events(&path).iter().map(|v| v["event"].clone()).collect();
        assert!(!kinds.contains(&"log_repaired".into()), "{kinds:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o027, 0, "mode {mode:o}");
        }
    }

    /// One process owns a log: a second open is refused; one that takes
    /// over waits, queueing its events, and continues the chain once the
    /// first lets go.
    #[test]
    fn a_second_owner_is_refused_or_waits_and_continues_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let first = AuditLog::open(&path).expect("open");
        first.record(sample_event(0));
        first.flush().expect("flush");
        // flock is per open file: a second open in this process is a second owner.
        assert!(matches!(
            AuditLog::open(&path),
            Err(AuditError::Locked { .. })
        ));
        let next = AuditLog::open_with(&path, Wait::Block).expect("open waiting");
        next.record(sample_event(2));
        first.record(sample_event(1));
        first.flush().expect("flush");
        drop(first);
        next.flush().expect("flush after take-over");
        assert_eq!(verified(&path).lines, 3);
        // The first owner's lines first, then the queued one.
        let ids: Vec<_> = events(&path).iter().map(|v| v["conn_id"].clone()).collect();
        assert_eq!(ids, [0, 0, 1], "{ids:?}");
        assert!(next.writable().is_ok());
    }

    #[test]
    fn torn_tail_is_cut_and_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = AuditLog::open(&path).expect("open");
        log.record(sample_event(0));
        log.record(sample_event(1));
        drop(log);
        let torn = br#"{"ts":"2026-11-26T03:38:34.123456Z","event":"conn"#;
        let mut f = OpenOptions::new().append(true).open(&path).expect("append");
        f.write_all(torn).expect("write torn tail");
        drop(f);

        let log = AuditLog::open(&path).expect("reopen repairs");
        log.record(sample_event(2));
        log.flush().expect("flush");
        assert_eq!(verified(&path).lines, 4);
        let repaired = &events(&path)[2];
        assert_eq!(repaired["event"], "log_repaired");
        assert_eq!(repaired["truncated_bytes"], torn.len() as u64);
        assert_eq!(repaired["truncated_sha256"], hex::encode(line_hash(torn)));
        assert!(repaired.get("lost_events").is_none());
    }

    #[test]
    fn failed_write_is_counted_and_the_chain_resumes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = AuditLog::open(&path).expect("open");
        log.record(sample_event(0));
        drop(log);
        // A writer whose handle cannot write: the batch fails.
        let read_only = File::open(&path).expect("open read-only");
        let mut writer = Writer::new(read_only, path.clone(), Default::default());
        writer.resync().expect("resync");
        let ts = OffsetDateTime::now_utc();
        let mut batch = vec![
            Msg::Record(ts, Box::new(sample_event(1))),
            Msg::Record(ts, Box::new(sample_event(2))),
        ];
        let (done, result) = mpsc::sync_channel(1);
        batch.push(Msg::Flush(done));
        writer.commit(&mut batch);
        assert!(result.recv().expect("flush answered").is_err());
        assert!(writer.needs_resync);

        // The disk "recovers": the next batch repairs first and reports the loss.
        writer.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .expect("reopen");
        let (done, result) = mpsc::sync_channel(1);
        writer.commit(&mut vec![
            Msg::Record(ts, Box::new(sample_event(3))),
            Msg::Flush(done),
        ]);
        assert!(result.recv().expect("flush answered").is_ok());
        assert_eq!(verified(&path).lines, 3);
        let repaired = &events(&path)[1];
        assert_eq!(repaired["event"], "log_repaired");
        assert_eq!(repaired["lost_events"], 2);
        assert_eq!(repaired["truncated_bytes"], 0);
    }

    #[test]
    fn lines_of_a_failed_batch_that_reached_the_disk_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let file = || OpenOptions::new().read(true).append(true).open(&path);
        drop(AuditLog::open(&path).expect("create"));
        let mut writer = Writer::new(file().expect("open"), path.clone(), Default::default());
        writer.resync().expect("resync");
        let ts = OffsetDateTime::now_utc();
        // The batch 1..=3 failed after line 1 and half of line 2 were written.
        let mut prev = writer.prev;
        let mut hashes = Vec::new();
        let mut lines = Vec::new();
        for i in 1..=3 {
            let line = render_line(ts, &sample_event(i), &prev);
            prev = line_hash(line.as_bytes());
            hashes.push(prev);
            lines.push(line);
        }
        let partial = format!("{}\n{}", lines[0], &lines[1][..30]);
        file()
            .and_then(|mut f| f.write_all(partial.as_bytes()))
            .expect("partial write");
        writer.needs_resync = true;
        writer.failed = Some(Attempt {
            hashes,
            with_repair: false,
        });
        writer.commit(&mut vec![Msg::Record(ts, Box::new(sample_event(4)))]);
        assert_eq!(verified(&path).lines, 3);
        let all = events(&path);
        assert_eq!(all[0]["conn_id"], 0);
        assert_eq!(all[1]["event"], "log_repaired");
        assert_eq!(all[1]["lost_events"], 2);
        assert_eq!(all[2]["conn_id"], 2);
    }

    #[test]
    fn a_stalled_writer_queues_a_bounded_number_of_events_and_counts_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = AuditLog::open(&path).expect("open");
        let (release, until) = mpsc::channel();
        log.inner
            .tx
            .as_ref()
            .expect("writer")
            .send(Msg::Stall(until))
            .expect("stall");
        // The writer may take the first batch before it reaches the stall.
        let flood = QUEUE_CAPACITY as u64 * 3;
        for i in 0..flood {
            log.record(sample_event(i));
        }
        assert!(
            log.recorded() <= QUEUE_CAPACITY as u64 + MAX_BATCH as u64,
            "{} queued",
            log.recorded()
        );
        assert!(
            log.health().failing().is_some(),
            "a full queue is a failure"
        );
        assert!(log.health().refusal().is_some(), "refuse is the default");
        drop(release);
        log.flush().expect("flush");
        log.record(sample_event(flood));
        log.flush().expect("flush");
        assert!(log.health().failing().is_none(), "written again: cleared");
        let all = events(&path);
        let repaired: Vec<_> = all
            .iter()
            .filter(|v| v["event"] == "log_repaired")
            .collect();
        assert_eq!(repaired.len(), 1, "one record of the loss");
        let lost = repaired[0]["lost_events"].as_u64().expect("lost_events");
        let kept = all.len() as u64 - 1;
        assert_eq!(kept + lost, flood + 1, "every event is written or counted");
        assert_eq!(verified(&path).lines, all.len() as u64);
        assert_eq!(log.written(), all.len() as u64);
    }

    #[test]
    fn flush_after_nothing_and_many_handles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let log = AuditLog::open(&path).expect("open");
        log.flush().expect("empty flush");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..250 {
                        log.record(sample_event(t * 1000 + i));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("recorder thread");
        }
        log.flush().expect("flush");
        assert_eq!(verified(&path).lines, 1000);
    }

    #[test]
    fn reopen_after_external_rotation_links_the_chains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log.jsonl");
        let rotated = dir.path().join("log.jsonl.1");
        let log = AuditLog::open(&path).expect("open");
        for i in 0..3 {
            log.record(sample_event(i));
        }
        log.flush().expect("flush");
        log.reopen(); // not rotated: nothing happens
        log.flush().expect("flush");
        assert_eq!(verified(&path).lines, 3);

        std::fs::rename(&path, &rotated).expect("rotate");
        log.reopen();
        log.record(sample_event(3));
        log.flush().expect("flush");
        let old = verified(&rotated);
        assert_eq!(old.lines, 3);
        let new = verified(&path);
        assert_eq!(new.lines, 2);
        let text = std::fs::read_to_string(&path).expect("read");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("line")).expect("json");
        assert_eq!(first["event"], "log_continued");
        assert_eq!(first["previous_head"], hex::encode(old.head));
        assert_eq!(first["prev"], "0".repeat(64));
        assert_eq!(log.head(), new.head);
    }
}
