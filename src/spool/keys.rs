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

use super::conditions::{Audited, Condition, Report, Subject};
use super::error::SpoolError;
use super::key::KeyId;
use super::store::{load_old_keys, Area, Entry, Store};
use super::Spool;

impl Store {
    /// Reports the files of `area` waiting for a key (from a fresh listing)
    /// and clears what no longer waits.
    pub(crate) fn note_waiting(&self, area: Area, entries: &[Entry]) {
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
                self.conditions.raise(Report {
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
        let others: Vec<String> = self
            .conditions
            .snapshot()
            .into_iter()
            .filter(|a| a.condition == Condition::WaitingForKey)
            .filter_map(|a| a.subject.key_id.map(|k| format!("{prefix}{k}")))
            .filter(|k| !keys.contains(k))
            .collect();
        for key in others {
            self.conditions.clear(Condition::WaitingForKey, &key);
        }
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
        self.store.set_old_keys(keys);
        self.wake_forward.notify_one();
        self.wake_deliver.notify_one();
        Ok(self.store.key_ids())
    }
}
