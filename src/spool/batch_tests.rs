//! Unit tests of batched intake and group commit (real files in a temp folder).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use super::*;
use crate::spool::store::tests::store;
use crate::spool::stream::decrypt_stream;
use std::io::Write as _;

fn seal(s: &Store, name: &str, data: &[u8]) -> Sealed {
    let path = s.dirs.outbox.join(name);
    fs::write(&path, data).unwrap();
    match crate::spool::intake::seal_source(s, &path, None).unwrap() {
        Taken::Sealed(sealed) => *sealed,
        Taken::Left(why) => panic!("{name} left: {why:?}"),
    }
}

/// Entries of `dir`, without dot-names (the outbox's claim folder).
fn count(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count()
}

/// A batch is committed together: all sealed copies land in
/// `outgoing/` and all plaintexts go; one whose writer came back
/// between sealing and commit is kept (its copy discarded) while the
/// others go on.
#[test]
fn a_batch_commits_together_and_a_changed_file_stays_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let batch: Vec<Sealed> = (0..5)
        .map(|i| seal(&s, &format!("f{i}"), &vec![i; 100_000 + usize::from(i)]))
        .collect();
    assert_eq!(count(&s.dirs.root.join("tmp")), 5, "sealed, not committed");
    assert_eq!(s.outbox_claims.held().unwrap().len(), 5, "claimed");
    assert_eq!(count(&s.dirs.outbox), 0, "claimed away from the outbox");
    // f3's writer appends after it was sealed.
    fs::OpenOptions::new()
        .append(true)
        .open(s.outbox_claims.path(std::ffi::OsStr::new("f3")))
        .unwrap()
        .write_all(b"more")
        .unwrap();
    let mut outcomes = commit_batch(&s, batch);
    release_untaken(&s, &mut outcomes);
    assert_eq!(outcomes.len(), 5);
    for (name, _, r) in &outcomes {
        match (name.to_str().unwrap(), r) {
            ("f3", Ok(Intake::Changed)) => {}
            (n, Ok(Intake::Spooled(_))) if n != "f3" => {}
            other => panic!("{other:?}"),
        }
    }
    let names: Vec<_> = fs::read_dir(&s.dirs.outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(names, ["f3"]);
    assert_eq!(
        fs::metadata(s.dirs.outbox.join("f3")).unwrap().len(),
        100_007
    );
    assert_eq!(count(&s.dirs.root.join("tmp")), 0);
    assert!(s.claims.none_pending());
    let out = s.entries(Area::Outgoing).unwrap();
    assert_eq!(out.len(), 4);
    for e in out {
        let meta = e.meta.unwrap();
        let mut plain = Vec::new();
        let opened = decrypt_stream(File::open(&e.path).unwrap(), &mut plain, &s.key).unwrap();
        assert_eq!(opened, meta);
        let i: u8 = meta.name[1..].parse().unwrap();
        assert!(plain == vec![i; 100_000 + usize::from(i)], "{}", meta.name);
    }
}

/// Files sealed side by side each get their own outcome: the good ones
/// are spooled whatever happens to the others (one vanished before it
/// was opened, one is a FIFO swapped in after the listing).
#[cfg(unix)]
#[test]
fn a_batch_sealed_side_by_side_gives_each_file_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let mut files = Vec::new();
    for i in 0..6u8 {
        let name = format!("g{i}");
        fs::write(s.dirs.outbox.join(&name), vec![i; 70_000 * usize::from(i)]).unwrap();
        files.push((OsString::from(name), None));
    }
    fs::remove_file(s.dirs.outbox.join("g2")).unwrap();
    fs::remove_file(s.dirs.outbox.join("g4")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(s.dirs.outbox.join("g4"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let outcomes = take_batch(&s, &files);
    assert_eq!(outcomes.len(), 6);
    for (name, _, r) in &outcomes {
        match (name.to_str().unwrap(), r) {
            ("g2", Ok(Intake::Elsewhere)) | ("g4", Ok(Intake::Changed)) => {}
            (_, Ok(Intake::Spooled(_))) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.entries(Area::Outgoing).unwrap().len(), 4);
    assert_eq!(count(&s.dirs.outbox), 1, "only the FIFO is left");
    assert_eq!(count(&s.dirs.root.join("tmp")), 0);
    assert!(s.claims.none_pending());
}

/// A crash after a batch's renames and before its unlinks were durable
/// (simulated by putting the plaintexts back, hard links keeping inode
/// and mtime): recovery verifies each sealed copy and deletes each
/// plaintext once; nothing is sent twice or lost.
#[test]
fn a_crash_between_a_batchs_renames_and_unlinks_is_recovered_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let keep = dir.path().join("keep");
    fs::create_dir(&keep).unwrap();
    let mut files = Vec::new();
    for i in 0..4u8 {
        let name = format!("h{i}");
        fs::write(s.dirs.outbox.join(&name), vec![i; 90_000]).unwrap();
        fs::hard_link(s.dirs.outbox.join(&name), keep.join(&name)).unwrap();
        files.push((OsString::from(name), None));
    }
    let outcomes = take_batch(&s, &files);
    assert!(outcomes
        .iter()
        .all(|o| matches!(o.2, Ok(Intake::Spooled(_)))));
    for (name, _) in &files {
        fs::hard_link(keep.join(name), s.dirs.outbox.join(name)).unwrap();
    }
    let r = crate::spool::recover::recover(&s).unwrap();
    assert_eq!((r.plaintexts_removed, r.quarantined), (4, 0));
    assert_eq!(count(&s.dirs.outbox), 0);
    assert_eq!(s.entries(Area::Outgoing).unwrap().len(), 4);
}

/// A sealed copy that cannot be put in `outgoing/` is dropped and its
/// plaintext kept, while the rest of the batch goes on.
#[test]
fn a_copy_that_vanished_before_the_commit_keeps_its_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    let a = seal(&s, "a", b"alpha");
    let b = seal(&s, "b", b"beta");
    fs::remove_file(&a.tmp).unwrap();
    let mut outcomes = commit_batch(&s, vec![a, b]);
    release_untaken(&s, &mut outcomes);
    assert!(
        matches!(outcomes[0].2, Err(SpoolError::Io { .. })),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1].2, Ok(Intake::Spooled(_))),
        "{outcomes:?}"
    );
    assert!(s.dirs.outbox.join("a").exists());
    assert!(!s.dirs.outbox.join("b").exists());
    assert!(s.claims.none_pending());
}

/// `max_bytes` holds for a batch sealed side by side: files that each fit
/// but not all together are taken only as far as they fit, in order (here
/// a small file would fit while a big one is still being sealed).
#[test]
fn max_bytes_holds_for_a_batch_sealed_side_by_side() {
    use crate::spool::intake::sealed_estimate;
    let dir = tempfile::tempdir().unwrap();
    let mut s = store(dir.path());
    let sizes = [64 << 10, 32 << 20, 1 << 20, 1 << 20];
    s.max_bytes = Some(sealed_estimate(sizes[0]) + sealed_estimate(sizes[1]) + 1000);
    let mut files = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let name = format!("c{i}");
        fs::write(s.dirs.outbox.join(&name), vec![i as u8; size as usize]).unwrap();
        files.push((OsString::from(name), None));
    }
    let outcomes = take_batch(&s, &files);
    let spooled: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o.2, Ok(Intake::Spooled(_))))
        .map(|o| o.0.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(spooled, ["c0", "c1"], "{outcomes:?}");
    assert!(s.used_bytes() <= s.max_bytes.unwrap());
    assert_eq!(count(&s.dirs.outbox), 2);
}
