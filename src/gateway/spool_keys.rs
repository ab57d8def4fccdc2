//! Reloading the spool's previous keys (`spool.old_keys`) on SIGHUP, so
//! files waiting for a key go on without a restart.

use crate::audit::{Event, SpoolKeyReload};
use crate::config::Config;

use super::Running;

impl Running {
    /// Re-reads the config file's `[spool]` section and takes its
    /// `old_keys`; a config or key file that does not load keeps the keys
    /// in use (logged and audited either way).
    pub fn reload_spool_keys(&self, trigger: &str) {
        let Some(spool) = &self.spool else {
            return;
        };
        let result = Config::load(&self.config().path)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                c.spool.ok_or_else(|| {
                    "the [spool] section is gone; removing the spool needs a restart".to_owned()
                })
            })
            .and_then(|cfg| spool.reload_keys(&cfg).map_err(|e| e.to_string()));
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
