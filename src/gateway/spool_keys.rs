//! Reloading the spool's previous keys (`spool.old_keys`) on SIGHUP, so
//! files waiting for a key go on without a restart.

use crate::audit::{Event, SpoolKeyReload};

use super::Running;

impl Running {
    /// Takes the `old_keys` of the running config's `[spool]` section (the
    /// config reload that runs first has just made the re-read file the
    /// running config); a key file that does not load keeps the keys in use
    /// (logged and audited either way).
    pub fn reload_spool_keys(&self, trigger: &str) {
        let Some(spool) = &self.spool else {
            return;
        };
        // The section cannot be gone: removing it needs a restart, and
        // such a reload never gets here.
        let result = match &self.config().spool {
            Some(cfg) => spool.reload_keys(cfg).map_err(|e| e.to_string()),
            None => {
                Err("the [spool] section is gone; removing the spool needs a restart".to_owned())
            }
        };
        let event = match result {
            Ok(ids) => {
                let key_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                tracing::info!(trigger, keys = ?key_ids, "spool keys reloaded");
                SpoolKeyReload {
                    trigger: trigger.to_owned(),
                    ok: true,
                    key_ids,
                    error: None,
                }
            }
            Err(e) => {
                tracing::error!(trigger, error = %e, "spool key reload refused; keeping the keys in use");
                SpoolKeyReload {
                    trigger: trigger.to_owned(),
                    ok: false,
                    key_ids: crate::spool::keys::key_ids(&spool.store)
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    error: Some(e),
                }
            }
        };
        self.ctx.peer.audit.record(Event::SpoolKeyReload(event));
    }
}
