//! The spool's coordination state, behind methods: which files a task is
//! working on right now, so that the others leave them alone, and what was
//! already reported once. Kept apart from the filesystem layer
//! ([`super::store`]): none of it is on disk, all of it is rebuilt by
//! looking at the folders after a restart.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::key::KeyId;
use super::metadata::Metadata;
use super::store::lock;

/// Files claimed by one task against the others.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// Ids intake has placed in `outgoing/` whose outbox copy is not yet
    /// durably gone: the forwarder must not send them yet.
    pending: Mutex<HashSet<String>>,
    /// Ids being received on some connection (a second offer is `busy`).
    receiving: Mutex<HashSet<String>>,
    /// Outbox files refused and reported: (name, size, mtime ns), so each
    /// version is reported once.
    refused: Mutex<HashSet<(String, u64, i128)>>,
}

impl Claims {
    /// Marks `id` as being spooled by intake.
    pub(crate) fn hold_pending(&self, id: &str) {
        lock(&self.pending).insert(id.to_owned());
    }

    /// `id` is durably spooled (or given up): the forwarder may send it.
    pub(crate) fn release_pending(&self, id: &str) {
        lock(&self.pending).remove(id);
    }

    /// The ids intake still holds.
    pub(crate) fn pending_ids(&self) -> HashSet<String> {
        lock(&self.pending).clone()
    }

    /// Claims `id` for one receiving connection; `false` if another has it.
    pub(crate) fn start_receiving(&self, id: &str) -> bool {
        lock(&self.receiving).insert(id.to_owned())
    }

    pub(crate) fn stop_receiving(&self, id: &str) {
        lock(&self.receiving).remove(id);
    }

    /// Whether no file is being received.
    #[cfg(test)]
    pub(crate) fn none_receiving(&self) -> bool {
        lock(&self.receiving).is_empty()
    }

    /// Whether no file is held by intake.
    #[cfg(test)]
    pub(crate) fn none_pending(&self) -> bool {
        lock(&self.pending).is_empty()
    }

    /// Notes this version of an outbox file as refused; `false` if it was
    /// refused (and reported) before.
    pub(crate) fn note_refused(&self, name: String, size: u64, mtime_ns: i128) -> bool {
        lock(&self.refused).insert((name, size, mtime_ns))
    }

    /// The file `name` was spooled after all: a new refusal is news again.
    pub(crate) fn forget_refused(&self, name: &str) {
        lock(&self.refused).retain(|(n, _, _)| n != name);
    }

    /// Forgets the refusals of files no longer in the outbox.
    pub(crate) fn keep_refused(&self, names: &HashSet<String>) {
        lock(&self.refused).retain(|(n, _, _)| names.contains(n));
    }
}

/// What reading a sealed file's header found, kept so that a listing does
/// not open every file again.
#[derive(Debug, Default)]
pub(crate) struct MetaCache {
    /// Authenticated metadata per file.
    known: Mutex<HashMap<PathBuf, Metadata>>,
    /// Files sealed under a key id that is not configured (yet).
    waiting: Mutex<HashMap<PathBuf, KeyId>>,
}

impl MetaCache {
    pub(crate) fn get(&self, path: &Path) -> Option<Metadata> {
        lock(&self.known).get(path).cloned()
    }

    pub(crate) fn insert(&self, path: &Path, meta: Metadata) {
        lock(&self.known).insert(path.to_owned(), meta);
    }

    /// The key id `path` waits for, if it was found waiting.
    pub(crate) fn waiting_for(&self, path: &Path) -> Option<KeyId> {
        lock(&self.waiting).get(path).copied()
    }

    pub(crate) fn note_waiting(&self, path: &Path, key: KeyId) {
        lock(&self.waiting).insert(path.to_owned(), key);
    }

    /// The file is gone (sent, delivered, quarantined).
    pub(crate) fn forget(&self, path: &Path) {
        lock(&self.known).remove(path);
        lock(&self.waiting).remove(path);
    }

    /// The keys changed: every file is read again.
    pub(crate) fn clear(&self) {
        lock(&self.known).clear();
        lock(&self.waiting).clear();
    }
}
