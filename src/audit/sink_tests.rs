//! Unit tests of `sink.rs`.

use super::writer::Attempt;
use super::*;
use crate::audit::chain::{line_hash, render_line, verify, ChainSummary};
use crate::audit::synth::sample_event;
use std::fs::File;
use std::fs::OpenOptions;
use std::io::BufReader;
use std::io::Write;

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
