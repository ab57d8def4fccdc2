//! The outbox watch: inotify (through `notify`) events → the intake
//! [`Tracker`], waking intake only when a file may have become finished.
//!
//! Only a close after writing (`IN_CLOSE_WRITE`) or a rename into the
//! outbox (`IN_MOVED_TO`) wakes intake. Opens, reads and closes without
//! writing — which intake's own scan causes on the outbox and its files —
//! are ignored: waking on them made an idle gateway scan its outbox in a
//! loop that fed itself (issue 12). Creates and writes mark the name as
//! being written (a create also asks for one look, which refuses a link at
//! once and leaves a file being written alone); an attribute change wakes intake only for a file
//! that failed before (its permissions may have been fixed). A queue
//! overflow wakes intake for a full rescan.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RenameMode};
use tokio::sync::Notify;

use super::settle::{Seen, Tracker};
use super::store::lock;

/// What one event means for intake: names and what was seen of each, and
/// whether a full rescan is needed (events were lost).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Meaning {
    pub seen: Vec<(PathBuf, Seen)>,
    pub rescan: bool,
}

/// Classifies one event about entries of `outbox`.
pub fn meaning(outbox: &Path, event: &notify::Event) -> Meaning {
    let mut m = Meaning {
        rescan: event.need_rescan(),
        ..Meaning::default()
    };
    let inside = |p: &&PathBuf| p.parent() == Some(outbox);
    let mut each = |seen: Seen| {
        for p in event.paths.iter().filter(inside) {
            m.seen.push((p.clone(), seen));
        }
    };
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => each(Seen::Finished),
        EventKind::Create(CreateKind::File | CreateKind::Any | CreateKind::Other) => {
            each(Seen::Created);
        }
        EventKind::Modify(ModifyKind::Data(_)) => each(Seen::Written),
        EventKind::Modify(ModifyKind::Metadata(_)) => each(Seen::Attrib),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => each(Seen::Finished),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
            each(Seen::Gone);
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            // paths = [from, to]
            let mut it = event.paths.iter();
            if let Some(from) = it.next().filter(|p| p.parent() == Some(outbox)) {
                m.seen.push((from.clone(), Seen::Gone));
            }
            if let Some(to) = it.next().filter(|p| p.parent() == Some(outbox)) {
                m.seen.push((to.clone(), Seen::Finished));
            }
        }
        // Opens, reads, closes without writing, attribute changes, and
        // anything about the outbox folder itself: nothing finished.
        _ => {}
    }
    m
}

/// Watches `outbox`, feeding `tracker` and waking `wake` when intake
/// should look. `None` (and a warning) when no watch can be set up; the
/// caller then polls.
pub fn watch_outbox(
    outbox: &Path,
    tracker: Arc<Mutex<Tracker>>,
    wake: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let dir = outbox.to_owned();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            // An error from the watch itself: look, to be safe.
            wake.notify_one();
            return;
        };
        let m = meaning(&dir, &event);
        let now = Instant::now();
        let mut look = m.rescan;
        {
            let mut t = lock(&tracker);
            for (path, seen) in &m.seen {
                if let Some(name) = path.file_name() {
                    look |= t.on_event(name, *seen, now);
                }
            }
        }
        if look {
            wake.notify_one();
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the outbox; polling it instead");
            return None;
        }
    };
    match watcher.watch(outbox, notify::RecursiveMode::NonRecursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::warn!(error = %e, outbox = %outbox.display(), "cannot watch the outbox; polling it instead");
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use notify::event::{DataChange, Flag, MetadataKind, RemoveKind};
    use notify::Event;

    fn ev(kind: EventKind, paths: &[&str]) -> Event {
        let mut e = Event::new(kind);
        for p in paths {
            e = e.add_path(PathBuf::from(p));
        }
        e
    }

    #[test]
    fn only_close_after_write_and_rename_in_mean_finished() {
        let out = Path::new("/o");
        let seen = |kind, paths: &[&str]| meaning(out, &ev(kind, paths)).seen;
        let f = PathBuf::from("/o/a.bin");
        assert_eq!(
            seen(
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                &["/o/a.bin"]
            ),
            vec![(f.clone(), Seen::Finished)]
        );
        assert_eq!(
            seen(
                EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                &["/o/a.bin"]
            ),
            vec![(f.clone(), Seen::Finished)]
        );
        assert_eq!(
            seen(EventKind::Create(CreateKind::File), &["/o/a.bin"]),
            vec![(f.clone(), Seen::Created)]
        );
        assert_eq!(
            seen(
                EventKind::Modify(ModifyKind::Data(DataChange::Any)),
                &["/o/a.bin"]
            ),
            vec![(f.clone(), Seen::Written)]
        );
        assert_eq!(
            seen(EventKind::Remove(RemoveKind::File), &["/o/a.bin"]),
            vec![(f.clone(), Seen::Gone)]
        );
        assert_eq!(
            seen(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &["/o/.a.partial", "/o/a.bin"]
            ),
            vec![
                (PathBuf::from("/o/.a.partial"), Seen::Gone),
                (f.clone(), Seen::Finished)
            ]
        );
    }

    #[test]
    fn the_scans_own_opens_and_reads_mean_nothing() {
        let out = Path::new("/o");
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Create(CreateKind::Folder),
        ] {
            for paths in [&["/o"][..], &["/o/a.bin"][..]] {
                assert_eq!(
                    meaning(out, &ev(kind, paths)),
                    Meaning::default(),
                    "{kind:?}"
                );
            }
        }
        assert_eq!(
            meaning(
                out,
                &ev(
                    EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                    &["/o/a.bin"]
                )
            )
            .seen,
            vec![(PathBuf::from("/o/a.bin"), Seen::Attrib)]
        );
        // Not inside the outbox (the folder itself, or elsewhere).
        let close = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert_eq!(meaning(out, &ev(close, &["/o"])), Meaning::default());
        assert_eq!(meaning(out, &ev(close, &["/x/a"])), Meaning::default());
        // An overflow asks for a rescan.
        let overflow = Event::new(EventKind::Other).set_flag(Flag::Rescan);
        assert!(meaning(out, &overflow).rescan);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_real_watch_wakes_on_close_write_but_not_on_reads() {
        let dir = tempfile::tempdir().unwrap();
        let tracker = Arc::new(Mutex::new(Tracker::new(std::time::Duration::ZERO)));
        let wake = Arc::new(Notify::new());
        let _w = watch_outbox(dir.path(), tracker.clone(), wake.clone()).unwrap();
        let woke = |ms| {
            let wake = wake.clone();
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(ms), wake.notified())
                    .await
                    .is_ok()
            }
        };
        std::fs::write(dir.path().join("a.bin"), b"hello").unwrap();
        assert!(woke(5000).await, "create and close after write wake intake");
        // Take a wake-up left pending by the second of those events.
        woke(300).await;
        // Reading the folder and the file (what a scan does) wakes nothing.
        for _ in 0..20 {
            let _ = std::fs::read_dir(dir.path()).unwrap().count();
            let _ = std::fs::read(dir.path().join("a.bin")).unwrap();
        }
        assert!(!woke(300).await, "reads must not wake intake");
    }
}
