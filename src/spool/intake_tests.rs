//! Unit tests of outbox intake (real files in a temp folder).

#![allow(clippy::unwrap_used)]

use std::fs;
use std::io::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::spool::settle::Seen;
use crate::spool::store::tests::store;
use crate::spool::store::Area;
use crate::spool::stream::decrypt_stream;

#[test]
fn intake_seals_deletes_plaintext_and_ignores_dotfiles_tmp_and_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(s.dirs.outbox.join("backup.bak"), &data).unwrap();
    fs::write(s.dirs.outbox.join(".inprogress"), b"partial").unwrap();
    fs::write(s.dirs.outbox.join("export.TMP"), b"partial").unwrap();
    fs::write(s.dirs.outbox.join("copy.partial"), b"partial").unwrap();
    fs::create_dir(s.dirs.outbox.join("sub")).unwrap();
    let r = scan_outbox(&s).unwrap();
    assert_eq!(r.len(), 1);
    let Intake::Spooled(id) = &r[0] else {
        panic!("{r:?}")
    };
    assert!(!s.dirs.outbox.join("backup.bak").exists());
    for kept in [".inprogress", "export.TMP", "copy.partial"] {
        assert!(s.dirs.outbox.join(kept).exists(), "{kept}");
    }
    let sealed = fs::read(s.path(Area::Outgoing, id)).unwrap();
    assert!(!sealed.windows(32).any(|w| w == &data[1000..1032]));
    let mut out = Vec::new();
    let meta = decrypt_stream(&sealed[..], &mut out, &s.key).unwrap();
    assert!(out == data);
    assert_eq!(meta.name, "backup.bak");
    assert!(meta.extra.contains_key("source"));
    assert_eq!(fs::read_dir(s.dirs.root.join("tmp")).unwrap().count(), 0);
    assert!(s.claims.none_pending());
}

#[test]
fn cap_refuses_once_and_keeps_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.max_bytes = Some(10_000);
    fs::write(s.dirs.outbox.join("big"), vec![0u8; 20_000]).unwrap();
    fs::write(s.dirs.outbox.join("small"), b"ok").unwrap();
    let r = scan_outbox(&s).unwrap();
    assert!(r.contains(&Intake::Full));
    assert_eq!(
        r.iter().filter(|x| matches!(x, Intake::Spooled(_))).count(),
        1
    );
    scan_outbox(&s).unwrap();
    assert!(s.dirs.outbox.join("big").exists());
    assert_eq!(s.counters.refused.load(Ordering::Relaxed), 1);
    let held = s.conditions.snapshot();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].condition, Condition::SpoolFull);
}

/// The settle-aware scan: a file written in place is not taken while its
/// writer still writes, however long it pauses, and never as 0 bytes.
#[test]
fn a_file_written_in_place_is_taken_only_once_finished_and_settled() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    s.settle = Duration::from_millis(500);
    let tracker = Mutex::new(Tracker::new(s.settle));
    let path = s.dirs.outbox.join("a.bin");
    let t0 = Instant::now();
    // The writer created it (as inotify reports) and wrote nothing yet.
    let mut w = fs::File::create(&path).unwrap();
    lock(&tracker).on_event(OsStr::new("a.bin"), Seen::Written, t0);
    let scan = scan_tracked(&s, &tracker, t0 + Duration::from_secs(30));
    assert!(scan.done.is_empty(), "an open, empty file is not taken");
    w.write_all(&[7; 100_000]).unwrap();
    drop(w);
    let t1 = t0 + Duration::from_secs(31);
    lock(&tracker).on_event(OsStr::new("a.bin"), Seen::Finished, t1);
    let scan = scan_tracked(&s, &tracker, t1);
    assert!(scan.done.is_empty(), "not settled yet");
    assert_eq!(scan.next_look, Some(t1 + s.settle));
    let scan = scan_tracked(&s, &tracker, t1 + s.settle);
    assert!(
        matches!(scan.done[..], [Intake::Spooled(_)]),
        "{:?}",
        scan.done
    );
    assert!(!path.exists());
    let out = s.entries(Area::Outgoing).unwrap();
    assert_eq!(out[0].meta.as_ref().unwrap().size, 100_000);
}

/// A file that changes between the look that found it settled and the
/// delete is not deleted: the sealed copy is discarded, the file waits.
#[test]
fn a_file_that_changes_under_intake_is_kept_and_its_sealed_copy_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let path = s.dirs.outbox.join("grows.bin");
    fs::write(&path, [1u8; 1000]).unwrap();
    let settled = Stamp::of(&fs::metadata(&path).unwrap());
    // It grew after it looked settled.
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[2u8; 10])
        .unwrap();
    assert_eq!(
        intake_file_at(&s, &path, Some(settled)).unwrap(),
        Intake::Changed
    );
    assert_eq!(fs::metadata(&path).unwrap().len(), 1010);
    assert!(s.entries(Area::Outgoing).unwrap().is_empty());
    assert_eq!(fs::read_dir(s.dirs.root.join("tmp")).unwrap().count(), 0);
    // Unchanged since: taken whole.
    let now = Stamp::of(&fs::metadata(&path).unwrap());
    assert!(matches!(
        intake_file_at(&s, &path, Some(now)).unwrap(),
        Intake::Spooled(_)
    ));
}

#[cfg(unix)]
#[test]
fn symlinks_and_fifos_are_refused_once_and_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let secret = dir.path().join("secret.txt");
    fs::write(&secret, b"not for the peer").unwrap();
    std::os::unix::fs::symlink(&secret, s.dirs.outbox.join("link.txt")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(s.dirs.outbox.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    for _ in 0..3 {
        let r = scan_outbox(&s).unwrap();
        assert!(r.is_empty(), "{r:?}");
    }
    assert!(secret.exists() && s.dirs.outbox.join("link.txt").exists());
    assert_eq!(s.counters.refused.load(Ordering::Relaxed), 2);
    let held = s.conditions.snapshot();
    assert_eq!(held.len(), 2);
    assert!(held.iter().any(|a| a.detail.contains("symbolic link")));
    // The link removed: its condition clears at the next look.
    fs::remove_file(s.dirs.outbox.join("link.txt")).unwrap();
    scan_outbox(&s).unwrap();
    assert_eq!(s.conditions.snapshot().len(), 1);
}

#[cfg(unix)]
#[test]
fn a_name_that_is_not_utf8_keeps_its_bytes_in_the_metadata() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let name = OsStr::from_bytes(b"r\xe9sum\xe9.txt");
    fs::write(s.dirs.outbox.join(name), b"latin-1").unwrap();
    let r = scan_outbox(&s).unwrap();
    let Intake::Spooled(id) = &r[0] else {
        panic!("{r:?}")
    };
    let meta = s.metadata(&s.path(Area::Outgoing, id)).unwrap();
    assert_eq!(meta.name, "r\u{fffd}sum\u{fffd}.txt");
    assert_eq!(names::delivery_name(&meta), name.as_bytes());
}

#[cfg(unix)]
#[test]
fn a_link_or_fifo_swapped_in_after_listing_is_neither_followed_nor_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let secret = dir.path().join("secret");
    fs::write(&secret, b"secret").unwrap();
    let path = s.dirs.outbox.join("swapped");
    std::os::unix::fs::symlink(&secret, &path).unwrap();
    assert!(intake_file(&s, &path).is_err(), "a link is not opened");
    fs::remove_file(&path).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    // Opening a FIFO nobody writes would block forever.
    assert_eq!(intake_file(&s, &path).unwrap(), Intake::Changed);
    assert!(s.entries(Area::Outgoing).unwrap().is_empty());
}

#[test]
fn an_outbox_scan_clears_only_outbox_conditions() {
    use crate::spool::conditions::{Audited, Report, Subject};
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.conditions.raise(Report {
        condition: Condition::SpoolFull,
        key: crate::spool::receive::RECEIVE_FULL.to_owned(),
        subject: Subject::default(),
        files: 0,
        detail: "refusing files from the peer".into(),
        audited: Audited::Condition,
    });
    s.conditions.raise(Report {
        condition: Condition::SpoolFull,
        key: "gone.bin".into(),
        subject: Subject::default(),
        files: 1,
        detail: "spool full".into(),
        audited: Audited::ByCaller,
    });
    scan_outbox(&s).unwrap();
    let left = s.conditions.snapshot();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].detail.contains("from the peer"));
}

/// A reader that lets a writer at the file after the first chunk was read.
struct Meddling<R> {
    inner: R,
    read: u64,
    meddle: Option<Box<dyn FnOnce()>>,
}

impl<R: io::Read> io::Read for Meddling<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read >= CHUNK_LEN as u64 {
            if let Some(f) = self.meddle.take() {
                f();
            }
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// Intake reads each file once; a file written while it is read (grown,
/// overwritten in place with the same size, replaced under its name) is
/// not spooled: the sealed copy is discarded and the file settles again.
#[test]
fn a_file_that_changes_while_it_is_read_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let path = s.dirs.outbox.join("live.bin");
    let data = vec![5u8; 3 * CHUNK_LEN];
    type Meddle = fn(&Path);
    let cases: [(&str, Meddle); 3] = [
        ("appended", |p| {
            let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(b"tail").unwrap();
        }),
        ("overwritten in place", |p| {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new().write(true).open(p).unwrap();
            // Ahead of the reader: what is read differs from the start.
            f.write_all_at(&[6u8; 10], 2 * CHUNK_LEN as u64).unwrap();
        }),
        ("replaced", |p| {
            let new = p.with_extension("new");
            fs::write(&new, vec![5u8; 3 * CHUNK_LEN]).unwrap();
            fs::rename(&new, p).unwrap();
        }),
    ];
    for (what, meddle) in cases {
        fs::write(&path, &data).unwrap();
        let settled = Stamp::of(&fs::metadata(&path).unwrap());
        let file = fs::File::open(&path).unwrap();
        let p = path.clone();
        let taken = seal_opened(&s, &path, file, Some(settled), |r| Meddling {
            inner: r,
            read: 0,
            meddle: Some(Box::new(move || meddle(&p))),
        })
        .unwrap();
        assert!(matches!(taken, Taken::Left(Intake::Changed)), "{what}");
        assert_eq!(
            fs::read_dir(s.dirs.root.join("tmp")).unwrap().count(),
            0,
            "{what}"
        );
        assert!(s.entries(Area::Outgoing).unwrap().is_empty(), "{what}");
        assert!(path.exists(), "{what}");
    }
    // Left alone, the last version is taken whole.
    let Intake::Spooled(id) = intake_file(&s, &path).unwrap() else {
        panic!()
    };
    let mut out = Vec::new();
    let sealed = fs::File::open(s.path(Area::Outgoing, &id)).unwrap();
    decrypt_stream(sealed, &mut out, &s.key).unwrap();
    assert!(out == data);
}

/// Intake reads each byte of a file once (it used to read it twice: a
/// hashing pass, then a sealing pass).
#[test]
fn intake_reads_each_file_once() {
    struct Counting<R>(R, std::rc::Rc<std::cell::Cell<u64>>);
    impl<R: io::Read> io::Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n as u64);
            Ok(n)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let path = s.dirs.outbox.join("once.bin");
    let size = 5 * CHUNK_LEN + 17;
    fs::write(&path, vec![9u8; size]).unwrap();
    let read = std::rc::Rc::new(std::cell::Cell::new(0));
    let file = fs::File::open(&path).unwrap();
    let taken = seal_opened(&s, &path, file, None, |r| Counting(r, read.clone())).unwrap();
    let Taken::Sealed(sealed) = taken else {
        panic!("not sealed")
    };
    assert_eq!(read.get(), size as u64);
    assert_eq!(sealed.meta.size, size as u64);
    let outcomes = crate::spool::batch::commit_batch(&s, vec![*sealed]);
    assert!(matches!(outcomes[0].2, Ok(Intake::Spooled(_))));
}

/// Two instances of a site share one outbox, each with its own spool: a
/// file both found ready is sealed by exactly one of them, whatever the
/// interleaving (both seal before either commits).
#[test]
fn two_spools_on_one_outbox_never_both_seal_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path());
    let b = Store::new(
        &dir.path().join("spool-b"),
        crate::spool::MasterKey::from_bytes([7; 32]),
        &a.dirs.outbox,
        &a.dirs.inbox,
        None,
        None,
    )
    .unwrap();
    let path = a.dirs.outbox.join("package.zip");
    fs::write(&path, vec![5u8; 100_000]).unwrap();
    let stamp = Stamp::of(&fs::metadata(&path).unwrap());
    let first = seal_source(&a, &path, Some(stamp)).unwrap();
    let second = seal_source(&b, &path, Some(stamp)).unwrap();
    assert!(matches!(first, Taken::Sealed(_)));
    assert!(
        matches!(second, Taken::Left(Intake::Elsewhere)),
        "the second instance must not seal the file too"
    );
    let Taken::Sealed(sealed) = first else {
        unreachable!()
    };
    let outcomes = crate::spool::batch::commit_batch(&a, vec![*sealed]);
    assert!(matches!(outcomes[0].2, Ok(Intake::Spooled(_))));
    assert_eq!(a.entries(Area::Outgoing).unwrap().len(), 1);
    assert!(b.entries(Area::Outgoing).unwrap().is_empty());
    assert!(
        a.outbox_claims.held().unwrap().is_empty(),
        "the claimed plaintext is gone"
    );
}

/// A claimed file that is not taken (it changed while sealed) goes back to
/// the outbox under its name.
#[test]
fn a_claimed_file_that_changed_returns_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let path = s.dirs.outbox.join("report.csv");
    fs::write(&path, b"version 1").unwrap();
    let stamp = Stamp::of(&fs::metadata(&path).unwrap());
    let Taken::Sealed(sealed) = seal_source(&s, &path, Some(stamp)).unwrap() else {
        panic!("not sealed")
    };
    // The producer writes again (to the file it still has open).
    fs::OpenOptions::new()
        .append(true)
        .open(s.outbox_claims.path(std::ffi::OsStr::new("report.csv")))
        .unwrap()
        .write_all(b" and more")
        .unwrap();
    let mut outcomes = crate::spool::batch::commit_batch(&s, vec![*sealed]);
    crate::spool::batch::release_untaken(&s, &mut outcomes);
    assert!(matches!(outcomes[0].2, Ok(Intake::Changed)));
    assert_eq!(outcomes[0].1, path);
    assert_eq!(fs::read(&path).unwrap(), b"version 1 and more");
    assert!(s.outbox_claims.held().unwrap().is_empty());
    assert!(s.entries(Area::Outgoing).unwrap().is_empty());
}
