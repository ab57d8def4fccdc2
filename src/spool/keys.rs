//! Files sealed under a key the gateway does not have.
//!
//! Every spool file names its key in its header (`key_id`). A file whose
//! key id is neither `spool.key` nor one of `spool.old_keys` is not
//! damaged — the gateway was started with the wrong key, or the key that
//! sealed it was dropped from the config — so it is **not** quarantined:
//! it waits. The condition is reported once per (area, key id) with the
//! number of files (`spool_condition` `waiting_for_key`, `/status`,
//! `pairgate_spool_held_files{condition="waiting_for_key"}`), and clears
//! by itself when a reload (SIGHUP) or restart configures that key.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use super::conditions::{Audited, Condition, Report, Subject};
use super::error::SpoolError;
use super::key::{KeyId, MasterKey};
use super::store::{Area, Entry, Store};
use super::Spool;

/// Loads the keys of `spool.old_keys`.
///
/// # Errors
/// [`SpoolError::Key`] naming the file.
pub fn load_old_keys(cfg: &crate::config::Spool) -> Result<Vec<MasterKey>, SpoolError> {
    cfg.old_keys
        .iter()
        .map(|p| MasterKey::load_key_file(p).map_err(SpoolError::from))
        .collect()
}

/// Replaces the previous keys (a reload that changed `spool.old_keys`).
pub fn set_old_keys(store: &Store, keys: Vec<MasterKey>) {
    *store
        .old_keys
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    store.cache.clear();
}

/// The ids of every configured key, current first.
pub fn key_ids(store: &Store) -> Vec<KeyId> {
    let old = store
        .old_keys
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::iter::once(store.key.key_id())
        .chain(old.iter().map(MasterKey::key_id))
        .collect()
}

/// The key that sealed the file at `path`, chosen by the key id in its
/// header: the current key, or one of `old_keys`. When none matches (or
/// the header is unreadable) the current key is returned, so opening the
/// file reports the problem (`WrongKey`, tampering) as usual.
pub(crate) fn key_for(store: &Store, path: &Path) -> MasterKey {
    let mut header = [0u8; 16];
    let read = File::open(path).and_then(|mut f| io::Read::read_exact(&mut f, &mut header));
    if read.is_err() {
        return store.key.clone();
    }
    let id = &header[8..16];
    if store.key.key_id().0 == id {
        return store.key.clone();
    }
    let old = store
        .old_keys
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    old.iter()
        .find(|k| k.key_id().0 == id)
        .unwrap_or(&store.key)
        .clone()
}

/// Reports the files of `area` waiting for a key (from a fresh listing)
/// and clears what no longer waits.
pub(crate) fn note_waiting(store: &Store, area: Area, entries: &[Entry]) {
    let mut by_key: BTreeMap<KeyId, u64> = BTreeMap::new();
    for e in entries {
        if let Some(id) = e.waiting_key {
            *by_key.entry(id).or_default() += 1;
        }
    }
    let keys: Vec<String> = by_key
        .iter()
        .map(|(id, files)| {
            let key = format!("{}:{id}", area.dir());
            store.conditions.raise(Report {
                condition: Condition::WaitingForKey,
                key: key.clone(),
                subject: Subject {
                    key_id: Some(id.to_string()),
                    ..Subject::default()
                },
                files: *files,
                detail: format!(
                    "{files} file(s) in {}/ are sealed under key {id}, which is neither \
                     spool.key nor in spool.old_keys; they wait (nothing is lost): add that \
                     key file to spool.old_keys and reload (SIGHUP) or restart",
                    area.dir()
                ),
                audited: Audited::Condition,
            });
            key
        })
        .collect();
    let prefix = format!("{}:", area.dir());
    let others: Vec<String> = store
        .conditions
        .snapshot()
        .into_iter()
        .filter(|a| a.condition == Condition::WaitingForKey)
        .filter_map(|a| a.subject.key_id.map(|k| format!("{prefix}{k}")))
        .filter(|k| !keys.contains(k))
        .collect();
    for key in others {
        store.conditions.clear(Condition::WaitingForKey, &key);
    }
}

impl Spool {
    /// Re-reads `spool.old_keys` (a reload): files waiting for one of them
    /// go on. `spool.key` itself changes only with a restart.
    ///
    /// # Errors
    /// [`SpoolError::Key`] naming the bad key file; the keys in use stay.
    pub fn reload_keys(&self, cfg: &crate::config::Spool) -> Result<Vec<KeyId>, SpoolError> {
        let keys = load_old_keys(cfg)?;
        if cfg.key.as_path() != self.key_path.as_path() {
            tracing::warn!(
                new = %cfg.key.display(),
                running = %self.key_path.display(),
                "spool.key changed: it takes effect at the next restart (add the running key to spool.old_keys then)"
            );
        }
        set_old_keys(&self.store, keys);
        self.wake_forward.notify_one();
        self.wake_deliver.notify_one();
        Ok(key_ids(&self.store))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spool::store::tests::{put, store};
    use std::sync::atomic::Ordering;

    #[test]
    fn files_under_an_old_key_drain_when_it_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let old = store(dir.path());
        let meta = put(&old, Area::Incoming, "before-the-key-change", b"payload");
        let path = old.path(Area::Incoming, &meta.id);
        let reopen = |old_keys: Vec<MasterKey>| {
            let s = Store::new(
                &dir.path().join("spool"),
                MasterKey::from_bytes([8; 32]),
                &dir.path().join("outbox"),
                &dir.path().join("inbox"),
                None,
                None,
            )
            .unwrap();
            set_old_keys(&s, old_keys);
            s
        };
        let without = reopen(vec![]);
        assert!(matches!(
            without.metadata(&path),
            Err(SpoolError::Codec { .. })
        ));
        // Without its key the file waits: named, not quarantined, and
        // recovery, delivery and listing all leave it alone.
        let entries = without.entries(Area::Incoming).unwrap();
        assert_eq!(entries[0].waiting_key, Some(old.key.key_id()));
        assert!(entries[0]
            .meta
            .as_ref()
            .unwrap_err()
            .contains("waiting for key"));
        crate::spool::recover::recover(&without).unwrap();
        assert_eq!(crate::spool::deliver::deliver_all(&without).unwrap(), 0);
        crate::spool::deliver::deliver_all(&without).unwrap();
        assert!(path.exists());
        assert_eq!(without.entries(Area::Quarantine).unwrap().len(), 0);
        assert_eq!(without.counters.quarantined.load(Ordering::Relaxed), 0);
        let waiting = without.conditions.snapshot();
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        assert_eq!(
            waiting[0].subject.key_id,
            Some(old.key.key_id().to_string())
        );
        assert_eq!(waiting[0].files, 1);
        // A reload that adds the key: delivered, the condition clears.
        set_old_keys(&without, vec![MasterKey::from_bytes([7; 32])]);
        assert_eq!(crate::spool::deliver::deliver_all(&without).unwrap(), 1);
        assert!(without.conditions.snapshot().is_empty());
        let delivered = std::fs::read(dir.path().join("inbox/before-the-key-change")).unwrap();
        assert_eq!(delivered, b"payload");
        // And a fresh start with the key configured reads it too.
        let meta2 = put(&old, Area::Incoming, "second", b"two");
        let with = reopen(vec![MasterKey::from_bytes([7; 32])]);
        assert_eq!(
            with.metadata(&old.path(Area::Incoming, &meta2.id))
                .unwrap()
                .id,
            meta2.id
        );
    }
}
