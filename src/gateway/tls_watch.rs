//! Watching the TLS files (certificate, key, CA bundle, CRLs) for change.
//!
//! An idle gateway must cost next to nothing (issue 17), so the files are
//! not hashed every second: inotify (through the `notify` crate) on the
//! folders that hold them says when something there changed, and only then
//! are the files hashed and compared. Folders, not files: rotation replaces
//! files by rename (which detaches a watch on the file itself), and secrets
//! may sit behind symlinks swapped atomically (the folder of the link and
//! the folder of its target are both watched). A slow poll stays as a
//! safety net for what inotify cannot see (network file systems, a symlink
//! retargeted to a third folder) and the only mode when no watch can be
//! set up.
//!
//! The comparison itself is unchanged: digests of the files' bytes, acted on
//! once they stop changing, so a key and certificate written one after the
//! other are picked up together.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, EventKind};
use tokio::sync::Notify;

/// How often the files are hashed when no watch could be set up.
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(1000);
/// How often they are hashed anyway while watched: the safety net.
pub(super) const SAFETY_NET: Duration = Duration::from_secs(30);

/// The folders and names to watch for `files`: each file's own folder and
/// name, and, for a symlink, its target's folder and name too.
fn targets(files: &[PathBuf]) -> (BTreeSet<PathBuf>, BTreeSet<OsString>) {
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut add = |path: &Path| {
        if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            dirs.insert(dir.to_owned());
            names.insert(name.to_owned());
        }
    };
    for file in files {
        add(file);
        if let Ok(real) = std::fs::canonicalize(file) {
            if &real != file {
                add(&real);
            }
        }
    }
    (dirs, names)
}

/// Whether `event` may mean one of `names` changed. Reads (including our
/// own hashing) never do; a rescan request or an error always may. Entries
/// whose names start with `.` count too: that is how atomically swapped
/// secret folders (`..data` → `..2024_…`) show up.
pub(super) fn relevant(event: &notify::Event, names: &BTreeSet<OsString>) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    if event.need_rescan() || event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|p| {
        p.file_name()
            .is_some_and(|n| names.contains(n) || n.as_encoded_bytes().starts_with(b"."))
    })
}

/// Watches the folders of `files`, waking `wake` when one of them may have
/// changed. `None` (and a warning) when no watch can be set up: the caller
/// then polls every [`POLL_INTERVAL`].
pub(super) fn watch(files: &[PathBuf], wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let (dirs, names) = targets(files);
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if !relevant(&event, &names) => {}
        // A change, or an error from the watch itself: look, to be safe.
        _ => wake.notify_one(),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the TLS files; checking them every second instead");
            return None;
        }
    };
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the TLS files' folder; checking them every second instead");
            return None;
        }
    }
    Some(watcher)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn woken(wake: &Notify) -> bool {
        tokio::time::timeout(Duration::from_secs(10), wake.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_rename_into_place_wakes_and_reading_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("site.crt");
        let other = dir.path().join("audit.log");
        std::fs::write(&cert, b"one").unwrap();
        std::fs::write(&other, b"x").unwrap();
        let wake = Arc::new(Notify::new());
        let _watcher = watch(std::slice::from_ref(&cert), wake.clone()).unwrap();
        // Reading the file (as the digest does) and writing an unrelated
        // file in the same folder: no wake-up.
        std::fs::read(&cert).unwrap();
        std::fs::write(&other, b"y").unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(300), wake.notified()).await;
        assert!(quiet.is_err(), "woken by a read or an unrelated file");
        // Rotation: a new file renamed over the old one.
        let tmp = dir.path().join("site.crt.tmp");
        std::fs::write(&tmp, b"two").unwrap();
        std::fs::rename(&tmp, &cert).unwrap();
        assert!(woken(&wake).await, "no wake-up for a rename into place");
    }

    #[tokio::test]
    async fn the_target_folder_of_a_symlink_is_watched_too() {
        let links = tempfile::tempdir().unwrap();
        let real = tempfile::tempdir().unwrap();
        let key = real.path().join("site.key");
        std::fs::write(&key, b"one").unwrap();
        let link = links.path().join("site.key");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        let wake = Arc::new(Notify::new());
        let _watcher = watch(std::slice::from_ref(&link), wake.clone()).unwrap();
        std::fs::write(&key, b"two").unwrap();
        assert!(
            woken(&wake).await,
            "no wake-up for a write through the link"
        );
    }
}
