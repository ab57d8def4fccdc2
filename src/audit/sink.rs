//! The append-only sink: one writer thread per log, group commit, crash repair.
//!
//! `record` stamps the event with the current time and hands it to a
//! dedicated `std::thread` over an unbounded `std::sync::mpsc` channel, so it
//! never waits for the disk and works inside or outside a tokio runtime. The
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
//! `log_repaired` record's `lost_events`. Errors are reported with
//! `tracing::error!` and returned by the next `flush`; the writer never panics.
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
use super::tail::recover_tail;
use super::AuditError;
use crate::exclusive::{self, Wait};

/// Mode of the audit log: the owner writes, its group (auditors) reads.
const LOG_MODE: u32 = 0o640;
/// Most messages the writer takes into one write + `sync_data`.
pub const MAX_BATCH: usize = 1024;

enum Msg {
    /// Boxed: connection events are large, and most messages are records.
    Record(OffsetDateTime, Box<Event>),
    Flush(mpsc::SyncSender<Result<(), (io::ErrorKind, String)>>),
    /// Reopen the path if the file was rotated away by an external tool.
    Reopen,
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
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    /// Events handed to the writer since open, whoever recorded them.
    recorded: std::sync::atomic::AtomicU64,
    /// The error of the last write, `None` once a write succeeds again.
    failing: Failing,
}

/// The writer's last write error, shared with the handles (readiness).
type Failing = Arc<std::sync::Mutex<Option<String>>>;

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
    /// events recorded meanwhile queue in memory and are written, chained
    /// to the other process's last line, once it has exited.
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
        let mut writer = Writer::new(file, path.clone(), head.clone());
        let failing = writer.failing.clone();
        if owned {
            writer.resync().map_err(|source| AuditError::Recover {
                path: path.clone(),
                source,
            })?;
        }
        let (tx, rx) = mpsc::channel();
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
                failing,
            }),
        })
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

    /// Queues one event, stamped with the current time; never blocks on disk.
    pub fn record(&self, event: Event) {
        self.record_at(OffsetDateTime::now_utc(), event);
    }

    /// Queues one event with an explicit timestamp.
    pub fn record_at(&self, ts: OffsetDateTime, event: Event) {
        let sent = match &self.inner.tx {
            Some(tx) => tx.send(Msg::Record(ts, Box::new(event))).is_ok(),
            None => false,
        };
        if sent {
            self.inner
                .recorded
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            tracing::error!(path = %self.inner.path.display(), "audit writer gone, event dropped");
        }
    }

    /// How many events were handed to the writer since the log was opened
    /// (by every handle: gateway, proxy, spool).
    pub fn recorded(&self) -> u64 {
        self.inner
            .recorded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the last write reached the disk: `Err` with the error while
    /// writes fail (disk full, file gone read-only), `Ok` again once one
    /// succeeds. `/readyz` reports it.
    ///
    /// # Errors
    /// The last write's error, naming the file.
    pub fn writable(&self) -> Result<(), String> {
        let failing = self
            .inner
            .failing
            .lock()
            .map_or_else(|_| None, |f| f.clone());
        match failing {
            Some(e) => Err(format!("{}: {e}", self.inner.path.display())),
            None => Ok(()),
        }
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
    /// The last write's error for [`AuditLog::writable`].
    failing: Failing,
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
            failing: Failing::default(),
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
                self.note(&Err(io::Error::new(e.kind(), e.to_string())));
                true
            }
        }
    }

    /// Records the outcome of a write for [`AuditLog::writable`].
    fn note(&self, result: &io::Result<()>) {
        if let Ok(mut failing) = self.failing.lock() {
            *failing = result.as_ref().err().map(ToString::to_string);
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Ok(first) = rx.recv() {
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
                Msg::Reopen => {
                    // Everything recorded before the reopen goes to the old file.
                    if !events.is_empty() {
                        let result = self.write(&events);
                        self.note(&result);
                        if let Err(e) = result {
                            tracing::error!(path = %self.path.display(), error = %e, "audit write failed");
                            self.error.get_or_insert((e.kind(), e.to_string()));
                        }
                        events.clear();
                    }
                    if let Err(e) = self.reopen() {
                        tracing::error!(path = %self.path.display(), error = %e, "audit reopen failed");
                        self.error.get_or_insert((e.kind(), e.to_string()));
                    }
                }
            }
        }
        if !events.is_empty() || self.needs_resync {
            let result = self.write(&events);
            self.note(&result);
            if let Err(e) = result {
                tracing::error!(path = %self.path.display(), error = %e, lost = self.lost, "audit write failed");
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

    fn write(&mut self, events: &[(OffsetDateTime, Event)]) -> io::Result<()> {
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
                Ok(())
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
        let failing = writer.failing.clone();
        assert!(
            failing.lock().expect("lock").is_some(),
            "a failed write is not writable"
        );

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
        assert!(failing.lock().expect("lock").is_none(), "writable again");
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
